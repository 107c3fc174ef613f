package device

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"log/slog"
	"sync"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/indicator"
	"github.com/cxr-edge/cxr-edge/edge/intake"
	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// Thumbnails of the kiosk screen. They are made on the device from the decoded image, kept in
// memory (bounded) and served only on the local HTTP listener; they are never published.
const (
	// ThumbnailSize is the longest side of a thumbnail in pixels: sharp enough for the
	// 800×480 screen's image box, about 10–20 kB as a grey JPEG.
	ThumbnailSize = 320
	// ThumbnailsKept is how many thumbnails stay in memory; an older one is made again from
	// the stored input when the screen asks for it.
	ThumbnailsKept   = 16
	thumbnailQuality = 80
)

// Thumbnailer receives each decoded image of a scored input (PipelineOptions.Thumbnails).
type Thumbnailer interface {
	Thumbnail(id string, img image.Image)
}

// MakeThumbnail returns img as a grey JPEG whose longest side is at most size pixels
// (aspect ratio kept, never enlarged). 8-bit grey and JPEG (YCbCr) images are shrunk with a
// box filter on their luma; others (16-bit DICOM after its window, colour PNG) are converted
// by the model's own grey conversion, so a DICOM window looks as the model saw it.
func MakeThumbnail(img image.Image, size int) ([]byte, error) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 || size <= 0 {
		return nil, fmt.Errorf("thumbnail of a %d×%d image at size %d: nothing to draw", w, h, size)
	}
	if w > size || h > size {
		if w >= h {
			w, h = size, max(1, (h*size+w/2)/w)
		} else {
			w, h = max(1, (w*size+h/2)/h), size
		}
	}
	var pix []uint8
	switch src := img.(type) {
	case *image.Gray:
		pix = BoxShrink(src.Pix, src.Stride, src.Rect.Dx(), src.Rect.Dy(), w, h)
	case *image.YCbCr: // a JPEG: Y is the BT.601 luma the model's grey conversion computes
		pix = BoxShrink(src.Y, src.YStride, src.Rect.Dx(), src.Rect.Dy(), w, h)
	default: // 16-bit DICOM and PNG, colour PNG: the model's own conversion
		var err error
		if pix, err = imaging.Grey(img, w, h); err != nil {
			return nil, fmt.Errorf("thumbnail: %w", err)
		}
	}
	g := &image.Gray{Pix: pix, Stride: w, Rect: image.Rect(0, 0, w, h)}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, g, &jpeg.Options{Quality: thumbnailQuality}); err != nil {
		return nil, fmt.Errorf("thumbnail: %w", err)
	}
	return buf.Bytes(), nil
}

// BoxShrink averages an 8-bit plane of sw×sh pixels (rows stride bytes apart) down to w×h
// (w ≤ sw, h ≤ sh): each output pixel is the rounded mean of the source pixels it covers.
// One pass over the source, integer arithmetic: a few milliseconds for a full-resolution
// X-ray, where an antialiased Catmull-Rom resize takes several times longer. Good for a
// display; the model's input is made by imaging.Preprocess.
func BoxShrink(src []uint8, stride, sw, sh, w, h int) []uint8 {
	x0 := make([]int, w+1)
	for x := range x0 {
		x0[x] = x * sw / w
	}
	sum := make([]uint32, w)
	out := make([]uint8, w*h)
	for y := 0; y < h; y++ {
		ya, yb := y*sh/h, (y+1)*sh/h
		clear(sum)
		for sy := ya; sy < yb; sy++ {
			row := src[sy*stride : sy*stride+sw]
			for x := 0; x < w; x++ {
				var s uint32
				for _, v := range row[x0[x]:x0[x+1]] {
					s += uint32(v)
				}
				sum[x] += s
			}
		}
		for x := 0; x < w; x++ {
			n := uint32((x0[x+1] - x0[x]) * (yb - ya))
			out[y*w+x] = uint8((sum[x] + n/2) / n)
		}
	}
	return out
}

// thumbnails is a bounded in-memory cache of thumbnails by input id (oldest dropped first).
type thumbnails struct {
	keep int
	log  *slog.Logger

	mu    sync.Mutex
	order []string
	data  map[string][]byte
}

func newThumbnails(keep int, log *slog.Logger) *thumbnails {
	return &thumbnails{keep: keep, log: log, data: map[string][]byte{}}
}

// Thumbnail implements Thumbnailer.
func (t *thumbnails) Thumbnail(id string, img image.Image) {
	data, err := MakeThumbnail(img, ThumbnailSize)
	if err != nil {
		t.log.Warn("no thumbnail for the screen", "id", id, "err", err)
		return
	}
	t.put(id, data)
}

func (t *thumbnails) put(id string, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.data[id]; !ok {
		t.order = append(t.order, id)
	}
	t.data[id] = data
	for len(t.order) > t.keep {
		delete(t.data, t.order[0])
		t.order = t.order[1:]
	}
}

func (t *thumbnails) get(id string) ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	d, ok := t.data[id]
	return d, ok
}

// screen is the daemon's side of the kiosk screen (intake.Screen).
type screen struct {
	ind    indicator.Indicator
	store  *store.Store
	pipe   *Pipeline
	broker func() string
	thumbs *thumbnails
	// remake serialises making thumbnails again from stored inputs (one decode at a time,
	// whatever the screen asks for).
	remake chan struct{}
	log    *slog.Logger
}

func newScreen(ind indicator.Indicator, st *store.Store, pipe *Pipeline, pub *telemetry.Publisher, thumbs *thumbnails, log *slog.Logger) *screen {
	broker := func() string { return intake.BrokerNone }
	if pub != nil {
		broker = func() string {
			if pub.Stats().Connected {
				return intake.BrokerConnected
			}
			return intake.BrokerDisconnected
		}
	}
	return &screen{ind: ind, store: st, pipe: pipe, broker: broker, thumbs: thumbs, remake: make(chan struct{}, 1), log: log}
}

func (s *screen) ScreenState(ctx context.Context) (intake.ScreenState, error) {
	st := intake.ScreenState{
		State: s.ind.State().String(), Model: s.pipe.Scorer().Ref(), Threshold: s.pipe.Threshold(),
		Broker: s.broker(), Time: time.Now(),
	}
	res, err := s.store.Results(1)
	if err != nil {
		return st, fmt.Errorf("latest result: %w", err)
	}
	if len(res) > 0 {
		st.Latest = &res[0]
	}
	stats, err := s.store.Stats()
	if err != nil {
		return st, fmt.Errorf("store: %w", err)
	}
	st.Pending, st.Outbox = stats.Pending, stats.Outbox
	return st, nil
}

func (s *screen) Acknowledge(context.Context) error {
	before := s.ind.State()
	s.ind.Acknowledge()
	s.log.Info("alert acknowledged on the screen", "was", before.String(), "now", s.ind.State().String())
	return nil
}

// Thumbnail returns the cached thumbnail, or makes it again from the stored input (after a
// restart, or once it left the cache). An input the store no longer holds is store.ErrNotFound.
func (s *screen) Thumbnail(ctx context.Context, id string) ([]byte, error) {
	if d, ok := s.thumbs.get(id); ok {
		return d, nil
	}
	select {
	case s.remake <- struct{}{}:
		defer func() { <-s.remake }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if d, ok := s.thumbs.get(id); ok { // made meanwhile
		return d, nil
	}
	data, err := s.store.Data(id)
	if err != nil {
		return nil, err
	}
	img, _, _, err := s.pipe.decode(intake.Input{Format: intake.Sniff(data), Data: data})
	if err != nil {
		return nil, fmt.Errorf("%w: input %s cannot be decoded: %v", store.ErrNotFound, id, err)
	}
	d, err := MakeThumbnail(img, ThumbnailSize)
	if err != nil {
		return nil, err
	}
	s.thumbs.put(id, d)
	return d, nil
}
