package device

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/dicom"
	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/intake"
	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// Scorer runs the model on one preprocessed input tensor (EngineModel implements it).
type Scorer interface {
	// Spec is the input tensor imaging.Preprocess writes for this model.
	Spec() imaging.InputSpec
	// Score returns the probability of the positive class (pneumonia).
	Score(ctx context.Context, input []byte) (float64, error)
	// Ref identifies the model in results.
	Ref() telemetry.ModelRef
	// Threshold is the model's own operating point.
	Threshold() float64
}

// Store keeps inputs and results durably (*store.Store implements it).
type Store interface {
	Submit(source, name string, data []byte, receivedAt time.Time) (store.Input, bool, error)
	Commit(r telemetry.Result) (uint64, error)
	Result(id string) (telemetry.Result, error)
	Pending() ([]store.Input, error)
	Data(id string) ([]byte, error)
}

// Publisher is told when the outbox has a new result (*telemetry.Publisher implements it).
type Publisher interface{ Notify() }

// Indicator shows a result to the clinician (LEDs, screen, console).
type Indicator interface{ Show(r telemetry.Result) }

// PipelineOptions configure a Pipeline. Zero fields take the documented defaults.
type PipelineOptions struct {
	// Scorer is the model. Required.
	Scorer Scorer
	// Store records inputs before processing and results with their outbox entries, and
	// gives their ids. nil scores without recording (the one-shot `cxr-edge score`), with ids
	// keyed by a random key of this pipeline's own.
	Store Store
	// Publisher and Indicator are optional.
	Publisher Publisher
	Indicator Indicator
	// Threshold overrides the model's own operating point (model.threshold); nil = the model's.
	// SetModel replaces it on a reload.
	Threshold *float64
	// MaxBytes and MaxPixels bound decoding (intake.max_bytes, intake.max_pixels); 0 = the
	// imaging package's defaults.
	MaxBytes  int64
	MaxPixels int64
	// DecodeTimeout bounds decoding and preprocessing of one image. Default 30 s.
	DecodeTimeout time.Duration
	// StudyKey keys the hash of DICOM study UIDs in results (see dicom.KeyedHash).
	StudyKey []byte
	// Metrics, optional.
	Metrics *Metrics
	// Thumbnails, optional, receives each decoded image (for the screen). It runs beside
	// preprocessing and inference; the result is shown only once it returned, so the screen
	// never shows a result without its image.
	Thumbnails Thumbnailer
	// Logger defaults to slog.Default(); Now to time.Now.
	Logger *slog.Logger
	Now    func() time.Time
}

// DefaultDecodeTimeout is PipelineOptions.DecodeTimeout's default.
const DefaultDecodeTimeout = 30 * time.Second

// Pipeline turns inputs into committed results: record → decode → preprocess → infer →
// decide → commit → indicator and publisher. It implements intake.Processor and is safe for
// concurrent use; the same image (by content hash) is scored once.
type Pipeline struct {
	opts   PipelineOptions
	scorer atomic.Pointer[scorerBox]

	mu       sync.Mutex
	inflight map[string]chan struct{} // ids being processed; closed when done
	runKey   []byte                   // keys result ids when there is no store

	scored, failed atomic.Uint64
	lat            latencies
}

// scorerBox is the model in use with the operating point that goes with it, swapped as one so
// that a result never pairs one model's score with another's threshold.
type scorerBox struct {
	s         Scorer
	threshold *float64 // model.threshold; nil = the model's own
}

func (b *scorerBox) operatingPoint() float64 {
	if b.threshold != nil {
		return *b.threshold
	}
	return b.s.Threshold()
}

// NewPipeline checks the options and returns a pipeline.
func NewPipeline(opts PipelineOptions) (*Pipeline, error) {
	if opts.Scorer == nil {
		return nil, errors.New("device: pipeline needs a Scorer")
	}
	if err := opts.Scorer.Spec().Validate(); err != nil {
		return nil, fmt.Errorf("device: model input: %w", err)
	}
	if opts.DecodeTimeout <= 0 {
		opts.DecodeTimeout = DefaultDecodeTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Pipeline{opts: opts, inflight: map[string]chan struct{}{}}
	if opts.Store == nil {
		p.runKey = store.NewIDKey()
	}
	p.scorer.Store(&scorerBox{opts.Scorer, opts.Threshold})
	return p, nil
}

// SetModel switches to another model and threshold override (nil: the model's own) at once,
// as a reload does; inputs already being scored finish with the old pair.
func (p *Pipeline) SetModel(s Scorer, threshold *float64) error {
	if err := s.Spec().Validate(); err != nil {
		return fmt.Errorf("device: model input: %w", err)
	}
	if threshold != nil && !(*threshold > 0 && *threshold < 1) {
		return fmt.Errorf("device: threshold %v: want a number in (0, 1)", *threshold)
	}
	p.scorer.Store(&scorerBox{s, threshold})
	return nil
}

// Scorer returns the model in use.
func (p *Pipeline) Scorer() Scorer { return p.scorer.Load().s }

// Threshold is the operating point in use: model.threshold, else the model's own.
func (p *Pipeline) Threshold() float64 { return p.scorer.Load().operatingPoint() }

// Process records the input, scores it and commits the result (intake.Processor). An
// unreadable image gives a result labelled "unreadable" with a reason, not an error. An error
// means nothing was committed: the input stays pending in the store and is processed again
// by Recover (after a restart) or when it arrives again.
func (p *Pipeline) Process(ctx context.Context, in intake.Input) (telemetry.Result, error) {
	if p.opts.Store == nil {
		if b, ok := p.opts.Indicator.(busyIndicator); ok {
			b.Busy()
		}
		res, err := p.evaluate(ctx, store.KeyedID(p.runKey, in.Data), in)
		if err == nil && p.opts.Indicator != nil {
			p.opts.Indicator.Show(res)
		}
		return res, err
	}
	// A duplicate (same bytes as an earlier input) is answered from the store below.
	rec, _, err := p.opts.Store.Submit(in.Source, in.Name, in.Data, in.ReceivedAt)
	if err != nil {
		return telemetry.Result{}, fmt.Errorf("recording input: %w", err)
	}
	return p.processRecorded(ctx, rec, in)
}

func (p *Pipeline) processRecorded(ctx context.Context, rec store.Input, in intake.Input) (telemetry.Result, error) {
	// One goroutine per id: a second arrival of the same image waits for the first.
	for {
		p.mu.Lock()
		wait, busy := p.inflight[rec.ID]
		if !busy {
			p.inflight[rec.ID] = make(chan struct{})
			p.mu.Unlock()
			break
		}
		p.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return telemetry.Result{}, ctx.Err()
		}
	}
	defer func() {
		p.mu.Lock()
		close(p.inflight[rec.ID])
		delete(p.inflight, rec.ID)
		p.mu.Unlock()
	}()
	// Already scored (a duplicate, or scored by Recover meanwhile): answer with the committed
	// result, score nothing.
	{
		r, err := p.opts.Store.Result(rec.ID)
		if err == nil {
			p.opts.Logger.Info("duplicate input, returning its result", "id", rec.ID, "source", in.Source)
			if p.opts.Indicator != nil {
				p.opts.Indicator.Show(r)
			}
			return r, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return telemetry.Result{}, fmt.Errorf("reading result: %w", err)
		}
		// Recorded but not scored (a crash, or an earlier failure): score it now.
	}
	in.ReceivedAt = rec.ReceivedAt
	if b, ok := p.opts.Indicator.(busyIndicator); ok {
		b.Busy()
	}
	res, err := p.evaluate(ctx, rec.ID, in)
	if err != nil {
		// Shutting down mid-image: leave the input pending; it is scored after restart.
		return telemetry.Result{}, fmt.Errorf("not scored, re-queued: %w", err)
	}
	if _, err := p.opts.Store.Commit(res); err != nil {
		if errors.Is(err, store.ErrNotPending) {
			if r, rerr := p.opts.Store.Result(rec.ID); rerr == nil {
				return r, nil
			}
		}
		return telemetry.Result{}, fmt.Errorf("committing result: %w", err)
	}
	if p.opts.Publisher != nil {
		p.opts.Publisher.Notify()
	}
	if p.opts.Indicator != nil {
		p.opts.Indicator.Show(res)
	}
	return res, nil
}

// Recover scores the inputs a crash or shutdown left pending, oldest first.
func (p *Pipeline) Recover(ctx context.Context) (int, error) {
	if p.opts.Store == nil {
		return 0, nil
	}
	pend, err := p.opts.Store.Pending()
	if err != nil {
		return 0, fmt.Errorf("listing pending inputs: %w", err)
	}
	n := 0
	for _, rec := range pend {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		data, err := p.opts.Store.Data(rec.ID)
		if err != nil {
			// The bytes are damaged: commit an unreadable result so the input is not stuck.
			res := p.unreadable(rec.ID, intake.Input{Source: rec.Source, ReceivedAt: rec.ReceivedAt}, fmt.Sprintf("stored input unreadable: %v", err))
			if _, cerr := p.opts.Store.Commit(res); cerr != nil {
				return n, fmt.Errorf("committing result of damaged input %s: %w", rec.ID, cerr)
			}
			continue
		}
		in := intake.Input{Source: rec.Source, Name: rec.Name, Format: intake.Sniff(data), Data: data, ReceivedAt: rec.ReceivedAt}
		if _, err := p.processRecorded(ctx, rec, in); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Stats are the pipeline's counters since start.
type Stats struct {
	Scored, Failed         uint64
	InferMsP50, InferMsP95 float64
}

// Stats returns the counters and the inference latency percentiles of recent images.
func (p *Pipeline) Stats() Stats {
	p50, p95 := p.lat.percentiles()
	return Stats{Scored: p.scored.Load(), Failed: p.failed.Load(), InferMsP50: p50, InferMsP95: p95}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (p *Pipeline) unreadable(id string, in intake.Input, reason string) telemetry.Result {
	return p.unreadableBy(p.scorer.Load(), id, in, reason)
}

// unreadableBy is unreadable for the model and threshold in box.
func (p *Pipeline) unreadableBy(box *scorerBox, id string, in intake.Input, reason string) telemetry.Result {
	return telemetry.Result{
		Schema: telemetry.SchemaResult, ID: id, ReceivedAt: in.ReceivedAt, ScoredAt: p.opts.Now(),
		Source: in.Source, Label: telemetry.LabelUnreadable, Reason: reason,
		Threshold: box.operatingPoint(), Model: box.s.Ref(),
		Image: telemetry.ImageInfo{Format: in.Format},
	}
}

// evaluate decodes, preprocesses, scores and decides. Bad input and inference errors give an
// "unreadable" result with the reason; the only error is ctx's, when it was cancelled.
func (p *Pipeline) evaluate(ctx context.Context, id string, in intake.Input) (telemetry.Result, error) {
	start := time.Now()
	box := p.scorer.Load() // one model and threshold for the whole result
	sc := box.s
	res := p.unreadableBy(box, id, in, "")
	if res.ReceivedAt.IsZero() {
		res.ReceivedAt = p.opts.Now()
	}
	fail := func(reason string) (telemetry.Result, error) {
		res.Reason = reason
		res.ScoredAt = p.opts.Now()
		res.TimingsMs.Total = ms(time.Since(start))
		p.failed.Add(1)
		p.opts.Metrics.observe(res)
		p.opts.Logger.Warn("unreadable input", "id", id, "source", in.Source, "reason", reason)
		return res, nil
	}
	if in.Format == "" {
		in.Format = intake.Sniff(in.Data)
		res.Image.Format = in.Format
	}

	// Decode and preprocess under the decode timeout. The decoders bound their own memory;
	// the timeout bounds their time so that one pathological file cannot stall the queue.
	type prep struct {
		tensor      []byte
		thumb       <-chan struct{} // closed when the thumbnail is made; nil without one
		info        telemetry.ImageInfo
		study       string
		dec, pre    time.Duration
		err         error
		errIsDecode bool
	}
	ch := make(chan prep, 1)
	spec := sc.Spec()
	go func() {
		var r prep
		t0 := time.Now()
		img, info, study, err := p.decode(in)
		r.dec, r.info, r.study = time.Since(t0), info, study
		if err != nil {
			r.err, r.errIsDecode = err, true
			ch <- r
			return
		}
		if p.opts.Thumbnails != nil {
			done := make(chan struct{})
			r.thumb = done
			go func() {
				defer close(done)
				p.opts.Thumbnails.Thumbnail(id, img)
			}()
		}
		t1 := time.Now()
		r.tensor = make([]byte, spec.Bytes())
		r.err = imaging.Preprocess(img, spec, r.tensor)
		r.pre = time.Since(t1)
		ch <- r
	}()
	var pr prep
	timer := time.NewTimer(p.opts.DecodeTimeout)
	defer timer.Stop()
	select {
	case pr = <-ch:
	case <-timer.C:
		return fail(fmt.Sprintf("decoding took longer than %v (intake.decode_timeout)", p.opts.DecodeTimeout))
	case <-ctx.Done():
		return telemetry.Result{}, ctx.Err()
	}
	res.Image, res.Study = pr.info, pr.study
	res.TimingsMs.Decode, res.TimingsMs.Preprocess = ms(pr.dec), ms(pr.pre)
	if pr.err != nil {
		if pr.errIsDecode {
			return fail(pr.err.Error())
		}
		return fail("preprocessing: " + pr.err.Error())
	}

	t2 := time.Now()
	score, err := sc.Score(ctx, pr.tensor)
	inferDur := time.Since(t2)
	res.TimingsMs.Infer = ms(inferDur)
	if err != nil {
		if ctx.Err() != nil {
			return telemetry.Result{}, ctx.Err()
		}
		p.opts.Logger.Error("inference failed", "id", id, "err", err)
		return fail("inference failed: " + err.Error())
	}
	p.lat.add(ms(inferDur))
	if pr.thumb != nil {
		select {
		case <-pr.thumb:
		case <-ctx.Done():
			return telemetry.Result{}, ctx.Err()
		}
	}
	res.Score = score
	res.Label = telemetry.LabelNormal
	if score >= res.Threshold {
		res.Label = telemetry.LabelPneumonia
	}
	res.ScoredAt = p.opts.Now()
	res.TimingsMs.Total = ms(time.Since(start))
	p.scored.Add(1)
	p.opts.Metrics.observe(res)
	p.opts.Logger.Info("scored", "id", id, "source", in.Source, "label", res.Label, "score", res.Score,
		"threshold", res.Threshold, "total_ms", res.TimingsMs.Total)
	return res, nil
}

// decode turns the bytes into an image with the decoder of their format.
func (p *Pipeline) decode(in intake.Input) (image.Image, telemetry.ImageInfo, string, error) {
	info := telemetry.ImageInfo{Format: in.Format}
	switch in.Format {
	case intake.FormatJPEG, intake.FormatPNG:
		img, hdr, err := imaging.DecodeBytes(in.Data, imaging.Options{MaxFileBytes: p.opts.MaxBytes, MaxPixels: p.opts.MaxPixels})
		info.Width, info.Height = hdr.Width, hdr.Height
		return img, info, "", err
	case intake.FormatDICOM:
		im, err := dicom.Decode(in.Data, dicom.Options{MaxFileSize: p.opts.MaxBytes, MaxPixels: p.opts.MaxPixels})
		if err != nil {
			return nil, info, "", err
		}
		info.Width, info.Height = im.Info.Columns, im.Info.Rows
		study := ""
		if len(p.opts.StudyKey) > 0 { // without a key the hash could be confirmed by guessing
			study = dicom.KeyedHash(p.opts.StudyKey, im.Info.StudyInstanceUID)
		}
		return im.Gray, info, study, nil
	}
	return nil, info, "", intake.ErrUnsupported
}

// latencies keeps the last inference durations for the health percentiles.
type latencies struct {
	mu   sync.Mutex
	buf  [256]float64
	n, i int
}

func (l *latencies) add(v float64) {
	l.mu.Lock()
	l.buf[l.i] = v
	l.i = (l.i + 1) % len(l.buf)
	l.n = min(l.n+1, len(l.buf))
	l.mu.Unlock()
}

func (l *latencies) percentiles() (p50, p95 float64) {
	l.mu.Lock()
	s := append([]float64(nil), l.buf[:l.n]...)
	l.mu.Unlock()
	if len(s) == 0 {
		return 0, 0
	}
	sort.Float64s(s)
	at := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.95)
}
