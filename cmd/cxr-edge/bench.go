package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/device"
	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/intake"
	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// Defaults of `cxr-edge bench`.
const (
	defaultBenchRuns = 3
	maxBenchRuns     = 1000
)

// cmdBench scores files through the daemon's pipeline (temporary store, thumbnails for the
// screen as the daemon makes them) and prints per-stage latency, throughput and memory as a
// Markdown table, with plain image/jpeg decoding of the same files as the peer.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bench")
	runs := fs.Int("runs", defaultBenchRuns, "passes over the files; each pass uses a fresh store so every image is scored")
	thumbs := fs.Bool("thumbnails", true, "make the screen's thumbnails as the daemon does (--thumbnails=false: without a screen)")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	if *runs < 1 || *runs > maxBenchRuns {
		fmt.Fprintf(stderr, "cxr-edge bench: --runs %d: want 1 to %d\n", *runs, maxBenchRuns)
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "cxr-edge bench: no files or folders given")
		return exitUsage
	}
	files, err := benchFiles(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "cxr-edge bench:", err)
		return exitUsage
	}
	cfg, err := loadConfig(fs)
	if err != nil {
		fmt.Fprintln(stderr, "cxr-edge:", err)
		return exitUsage
	}
	model, err := device.LoadModel(cfg.Model)
	if err != nil {
		fmt.Fprintln(stderr, "cxr-edge:", err)
		return exitUsage
	}
	b := &bench{thumbs: &timedThumbnails{}, withThumbs: *thumbs}
	for run := 0; run < *runs && ctx.Err() == nil; run++ {
		if err := b.pass(ctx, files, model, cfg, run == 0); err != nil {
			fmt.Fprintln(stderr, "cxr-edge bench:", err)
			return exitFailed
		}
	}
	if ctx.Err() != nil {
		return exitFailed
	}
	b.report(stdout, model, len(files), *runs)
	if b.unreadable > 0 {
		return exitUnreadable
	}
	return exitOK
}

// benchFiles expands folders (recursively; dotfiles and hot-folder temporaries skipped) into
// a sorted list of files.
func benchFiles(args []string) ([]string, error) {
	var files []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && !intake.Ignored(d.Name()) {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no files in %q", args)
	}
	sort.Strings(files)
	return files, nil
}

// timedThumbnails makes the screen's thumbnails like the daemon and times them.
type timedThumbnails struct {
	mu  sync.Mutex
	ms  []float64
	err error
}

func (t *timedThumbnails) Thumbnail(id string, img image.Image) {
	t0 := time.Now()
	_, err := device.MakeThumbnail(img, device.ThumbnailSize)
	d := time.Since(t0)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ms = append(t.ms, msOf(d))
	if err != nil && t.err == nil {
		t.err = err
	}
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type bench struct {
	decode, preprocess, infer, store, total, peer []float64
	boxPre                                        []float64
	thumbs                                        *timedThumbnails
	withThumbs                                    bool
	wall                                          time.Duration
	images, unreadable                            int
	heapPeak, allocated                           uint64
	sizes                                         map[string]bool
}

// pass scores every file once into a fresh temporary store. The first image of the first
// pass is scored once more beforehand and not counted (interpreter pool, page faults).
func (b *bench) pass(ctx context.Context, files []string, model *device.EngineModel, cfg *device.Config, warm bool) error {
	dir, err := os.MkdirTemp("", "cxr-edge-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(dir, store.Options{MaxInputBytes: int64(cfg.Intake.MaxBytes)})
	if err != nil {
		return err
	}
	defer st.Close()
	var thumbnailer device.Thumbnailer
	if b.withThumbs {
		thumbnailer = b.thumbs
	}
	pipe, err := device.NewPipeline(device.PipelineOptions{
		Scorer: model, Store: st, Threshold: cfg.Model.Threshold, MaxBytes: int64(cfg.Intake.MaxBytes),
		MaxPixels: cfg.Intake.MaxPixels, DecodeTimeout: cfg.Intake.DecodeTimeout, Thumbnails: thumbnailer,
		Logger: device.NewLogger(device.LogConfig{Level: "error"}, io.Discard),
	})
	if err != nil {
		return err
	}
	if warm {
		data, err := os.ReadFile(files[0])
		if err != nil {
			return err
		}
		if _, err := pipe.Process(ctx, intake.Input{Source: "bench", Data: data, ReceivedAt: time.Now()}); err != nil {
			return err
		}
		st.Close()
		os.RemoveAll(dir)
		b.thumbs.mu.Lock()
		b.thumbs.ms = nil
		b.thumbs.mu.Unlock()
		return b.pass(ctx, files, model, cfg, false)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	alloc0 := ms.TotalAlloc
	for _, f := range files {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		t0 := time.Now()
		res, err := pipe.Process(ctx, intake.Input{Source: "bench", Name: filepath.Base(f), Format: intake.Sniff(data), Data: data, ReceivedAt: time.Now()})
		d := time.Since(t0)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		b.wall += d
		b.images++
		if res.Label == telemetry.LabelUnreadable {
			b.unreadable++
			fmt.Fprintf(os.Stderr, "cxr-edge bench: %s unreadable: %s\n", f, res.Reason)
			continue
		}
		t := res.TimingsMs
		b.decode = append(b.decode, t.Decode)
		b.preprocess = append(b.preprocess, t.Preprocess)
		b.infer = append(b.infer, t.Infer)
		b.total = append(b.total, msOf(d))
		// What Process spent outside evaluation: recording the input (blob written and
		// fsynced), the duplicate check and the commit of result and outbox entry.
		b.store = append(b.store, max(0, msOf(d)-t.Total))
		if b.sizes == nil {
			b.sizes = map[string]bool{}
		}
		b.sizes[fmt.Sprintf("%dx%d", res.Image.Width, res.Image.Height)] = true

		// The peer, same file, same moment: the standard library's JPEG decoder alone.
		if intake.Sniff(data) == intake.FormatJPEG {
			p0 := time.Now()
			img, err := jpeg.Decode(bytes.NewReader(data))
			if err == nil {
				b.peer = append(b.peer, msOf(time.Since(p0)))
			}
			// A proposal for preprocessing, timed on the same image: box-shrink the luma to
			// twice the model's input first, then the antialiased resize of that small image.
			var plane []uint8
			var stride int
			switch y := img.(type) {
			case *image.YCbCr:
				plane, stride = y.Y, y.YStride
			case *image.Gray:
				plane, stride = y.Pix, y.Stride
			}
			if plane != nil {
				spec := model.Spec()
				sw, sh := img.Bounds().Dx(), img.Bounds().Dy()
				w, h := min(2*spec.Width, sw), min(2*spec.Height, sh)
				p1 := time.Now()
				small := device.BoxShrink(plane, stride, sw, sh, w, h)
				if _, err := imaging.Grey(&image.Gray{Pix: small, Stride: w, Rect: image.Rect(0, 0, w, h)}, spec.Width, spec.Height); err == nil {
					b.boxPre = append(b.boxPre, msOf(time.Since(p1)))
				}
			}
		}
		runtime.ReadMemStats(&ms)
		b.heapPeak = max(b.heapPeak, ms.HeapInuse)
	}
	b.allocated += ms.TotalAlloc - alloc0
	return nil
}

func pct(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(q*float64(len(s)) + 0.5)
	return s[min(max(i-1, 0), len(s)-1)]
}

// peakRSS reads the process's peak resident set size (VmHWM) in bytes; 0 when unknown.
func peakRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

const mib = 1 << 20

func (b *bench) report(w io.Writer, model *device.EngineModel, nfiles, runs int) {
	spec := model.Spec()
	sizes := make([]string, 0, len(b.sizes))
	for s := range b.sizes {
		sizes = append(sizes, s)
	}
	sort.Slice(sizes, func(i, j int) bool { return pixels(sizes[i]) < pixels(sizes[j]) })
	sizeNote := strings.Join(sizes, ", ")
	if len(sizes) > 4 {
		sizeNote = fmt.Sprintf("%d sizes, %s … %s", len(sizes), sizes[0], sizes[len(sizes)-1])
	}
	fmt.Fprintf(w, "cxr-edge bench: %d files × %d runs = %d images (%s); model %s (%d×%d×%d); GOMAXPROCS %d, %s %s/%s\n\n",
		nfiles, runs, b.images, sizeNote, model.Ref().Name, spec.Width, spec.Height, spec.Channels,
		runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintln(w, "| stage | p50 ms | p95 ms | max ms |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	row := func(name string, v []float64) {
		fmt.Fprintf(w, "| %s | %.1f | %.1f | %.1f |\n", name, pct(v, .5), pct(v, .95), pct(v, 1))
	}
	row("decode", b.decode)
	row("preprocess", b.preprocess)
	row("infer", b.infer)
	if b.withThumbs {
		b.thumbs.mu.Lock()
		row("thumbnail (beside preprocess + infer)", b.thumbs.ms)
		b.thumbs.mu.Unlock()
	}
	row("store (record + commit, fsync)", b.store)
	row("**end-to-end**", b.total)
	row("peer: image/jpeg decode alone", b.peer)
	row("proposal: box shrink to 2× input, then Grey (vs preprocess)", b.boxPre)
	fmt.Fprintln(w)
	if b.wall > 0 {
		fmt.Fprintf(w, "- throughput: %.1f images/s, one at a time as the daemon scores them\n", float64(b.images)/b.wall.Seconds())
	}
	if p := pct(b.peer, .5); p > 0 {
		fmt.Fprintf(w, "- decode p50 / peer p50 = %.2f; end-to-end p50 / peer p50 = %.2f\n", pct(b.decode, .5)/p, pct(b.total, .5)/p)
	}
	rss := peakRSS()
	fmt.Fprintf(w, "- peak RSS (VmHWM): %.1f MiB; Go heap in use, peak: %.1f MiB; allocated per image: %.1f MiB\n",
		float64(rss)/mib, float64(b.heapPeak)/mib, float64(b.allocated)/float64(max(1, b.images))/mib)
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(w, "- bars: end-to-end p95 ≤ 150 ms %s; peak RSS ≤ 100 MB %s\n",
		verdict(pct(b.total, .95) <= 150), verdict(rss > 0 && rss <= 100_000_000))
	if b.unreadable > 0 {
		fmt.Fprintf(w, "- %d unreadable inputs were not timed\n", b.unreadable)
	}
}

// pixels of a "WxH" size, for sorting.
func pixels(size string) int {
	w, h, _ := strings.Cut(size, "x")
	a, _ := strconv.Atoi(w)
	c, _ := strconv.Atoi(h)
	return a * c
}
