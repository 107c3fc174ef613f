package intake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

// Names of the subfolders of the hot folder.
const (
	DoneDir   = "done"
	FailedDir = "failed"
)

// FolderOptions configure a Folder. Zero fields take the documented defaults.
type FolderOptions struct {
	// Dir is the hot folder; it, done/ and failed/ are created if missing. Required.
	Dir string
	// Settle is how long size and mtime must stay unchanged before a file is read. Default 500ms.
	Settle time.Duration
	// Rescan is the period of a full listing, a safety net for lost events. Default 10s.
	Rescan time.Duration
	// MaxBytes rejects larger files into failed/. Default 64 MiB.
	MaxBytes int64
	// KeepDone keeps processed files in done/; false deletes them once their result is committed.
	KeepDone bool
	// Done and Failed bound done/ and failed/ (oldest removed first).
	Done, Failed Retention
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Metrics, optional.
	Metrics *Metrics
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Retention bounds a folder: files older than MaxAge are deleted (0 = no age limit), then the
// oldest until the total is at most MaxBytes (0 = no size limit).
type Retention struct {
	MaxAge   time.Duration
	MaxBytes int64
}

// Default FolderOptions values.
const (
	DefaultSettle   = 500 * time.Millisecond
	DefaultRescan   = 10 * time.Second
	DefaultMaxBytes = 64 << 20
)

func (o FolderOptions) withDefaults() FolderOptions {
	if o.Settle <= 0 {
		o.Settle = DefaultSettle
	}
	if o.Rescan <= 0 {
		o.Rescan = DefaultRescan
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Folder is a hot folder. Run it once.
type Folder struct {
	opts FolderOptions
	proc Processor
	// candidates maps a file name to its last observation; only Run's goroutine touches it.
	candidates map[string]observation
	// stuck holds files that could be neither moved nor removed (permissions); they are left
	// alone until the daemon restarts rather than processed again and again.
	stuck map[string]bool
}

type observation struct {
	size  int64
	mtime time.Time
	since time.Time // when this size+mtime was first seen
}

// NewFolder prepares a hot folder that hands files to proc.
func NewFolder(opts FolderOptions, proc Processor) (*Folder, error) {
	opts = opts.withDefaults()
	if opts.Dir == "" {
		return nil, errors.New("intake: hot folder: no directory given")
	}
	if proc == nil {
		return nil, errors.New("intake: hot folder: no processor")
	}
	for _, d := range []string{opts.Dir, filepath.Join(opts.Dir, DoneDir), filepath.Join(opts.Dir, FailedDir)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("intake: hot folder: %w", err)
		}
	}
	return &Folder{opts: opts, proc: proc, candidates: map[string]observation{}, stuck: map[string]bool{}}, nil
}

// Ignored reports whether the hot folder skips a file name: dotfiles and names ending in
// .tmp, .part or .partial (files still being written under a temporary name).
func Ignored(name string) bool {
	l := strings.ToLower(name)
	return strings.HasPrefix(name, ".") || strings.HasSuffix(l, ".tmp") ||
		strings.HasSuffix(l, ".part") || strings.HasSuffix(l, ".partial") || strings.HasSuffix(l, ".reason")
}

// Run watches the folder until ctx is done. Files present at start are processed too (inputs
// left by a crash or written while the daemon was down). It returns nil on cancellation.
func (f *Folder) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("intake: hot folder: %w", err)
	}
	defer w.Close()
	if err := w.Add(f.opts.Dir); err != nil {
		return fmt.Errorf("intake: hot folder %s: %w", f.opts.Dir, err)
	}
	f.rescan()
	f.prune()
	// Checks run at a fraction of the settle interval, so a file is read between one and
	// about 1.25 settle intervals after its last change.
	tick := time.NewTicker(max(f.opts.Settle/4, 5*time.Millisecond))
	defer tick.Stop()
	rescan := time.NewTicker(f.opts.Rescan)
	defer rescan.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("intake: hot folder: watcher closed")
			}
			if filepath.Dir(ev.Name) == filepath.Clean(f.opts.Dir) && ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Rename|fsnotify.Chmod) != 0 {
				f.consider(filepath.Base(ev.Name))
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("intake: hot folder: watcher closed")
			}
			// An overflow loses events; the rescan finds the files.
			f.opts.Logger.Warn("hot folder watcher", "err", err)
			f.rescan()
		case <-rescan.C:
			f.rescan()
			f.prune()
		case <-tick.C:
			f.check(ctx)
		}
	}
}

// rescan adds every regular file of the folder as a candidate.
func (f *Folder) rescan() {
	ents, err := os.ReadDir(f.opts.Dir)
	if err != nil {
		f.opts.Logger.Error("hot folder rescan", "err", err)
		return
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			f.consider(e.Name())
		}
	}
}

// consider records a (possibly changed) file; check decides when it is ready.
func (f *Folder) consider(name string) {
	if Ignored(name) || f.stuck[name] {
		return
	}
	if _, ok := f.candidates[name]; !ok {
		f.candidates[name] = observation{size: -1}
	}
}

// check reads the candidates whose size and mtime stayed the same for the settle interval.
func (f *Folder) check(ctx context.Context) {
	if len(f.candidates) == 0 {
		return
	}
	names := make([]string, 0, len(f.candidates))
	for n := range f.candidates {
		names = append(names, n)
	}
	sort.Strings(names) // deterministic order: producers often name files in sequence
	now := f.opts.Now()
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		path := filepath.Join(f.opts.Dir, name)
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			delete(f.candidates, name) // gone (renamed away, deleted) or not a plain file
			continue
		}
		prev := f.candidates[name]
		if fi.Size() != prev.size || !fi.ModTime().Equal(prev.mtime) {
			f.candidates[name] = observation{size: fi.Size(), mtime: fi.ModTime(), since: now}
			continue
		}
		if now.Sub(prev.since) < f.opts.Settle {
			continue
		}
		if f.handle(ctx, name, fi) {
			delete(f.candidates, name)
		}
	}
}

// handle reads, processes and files away one settled file. It returns false when the file
// must be looked at again (it changed while being read, or processing failed transiently).
func (f *Folder) handle(ctx context.Context, name string, fi os.FileInfo) bool {
	path := filepath.Join(f.opts.Dir, name)
	log := f.opts.Logger.With("file", name)
	if fi.Size() > f.opts.MaxBytes {
		f.reject(name, fmt.Errorf("%w: %d bytes, the limit is %d (intake.max_bytes)", ErrTooLarge, fi.Size(), f.opts.MaxBytes))
		return true
	}
	if fi.Size() == 0 {
		f.reject(name, ErrEmpty)
		return true
	}
	data, err := readStable(path, fi, f.opts.MaxBytes)
	if errors.Is(err, errChanged) {
		log.Debug("file changed while reading; waiting for it to settle")
		f.candidates[name] = observation{size: -1}
		return false
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return true
		}
		// Retried after the rescan interval like a processing failure: an unreadable file
		// (permissions) must not be logged at every check tick.
		log.Error("hot folder read; will retry", "err", err, "retry_in", f.opts.Rescan)
		f.candidates[name] = observation{size: fi.Size(), mtime: fi.ModTime(), since: f.opts.Now().Add(f.opts.Rescan)}
		return false
	}
	format := Sniff(data)
	if format == "" {
		f.reject(name, ErrUnsupported)
		return true
	}
	f.opts.Metrics.received(SourceFolder)
	res, err := f.proc.Process(ctx, Input{Source: SourceFolder, Name: name, Format: format, Data: data, ReceivedAt: f.opts.Now()})
	if err != nil {
		// Left in place and tried again after the rescan interval (not at the next tick: a
		// full disk must not turn into a busy loop). The store already holds the bytes if
		// they were recorded, so nothing is lost either way.
		if ctx.Err() == nil {
			log.Error("processing failed; will retry", "err", err, "retry_in", f.opts.Rescan)
		}
		f.candidates[name] = observation{size: fi.Size(), mtime: fi.ModTime(), since: f.opts.Now().Add(f.opts.Rescan)}
		return false
	}
	if res.Label == telemetry.LabelUnreadable {
		f.moveTo(name, FailedDir, res.Reason)
		return true
	}
	if f.opts.KeepDone {
		f.moveTo(name, DoneDir, "")
	} else if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Error("cannot remove processed file; leaving it until restart", "err", err)
		f.stuck[name] = true
	}
	log.Info("processed", "id", res.ID, "label", res.Label, "score", res.Score)
	return true
}

var errChanged = errors.New("file changed while reading")

// readStable reads path and checks that it still has the size and mtime it had when it settled.
func readStable(path string, settled os.FileInfo, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	after, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != settled.Size() || after.Size() != settled.Size() || !after.ModTime().Equal(settled.ModTime()) {
		return nil, errChanged
	}
	return data, nil
}

// reject moves a file that was not processed to failed/ with the reason.
func (f *Folder) reject(name string, why error) {
	f.opts.Metrics.rejected(SourceFolder, why)
	f.opts.Logger.Warn("rejected", "file", name, "reason", why.Error())
	f.moveTo(name, FailedDir, why.Error())
}

// moveTo renames the file into sub (done/ or failed/), never overwriting an earlier file of the
// same name, and writes <name>.reason beside it when reason is not empty.
func (f *Folder) moveTo(name, sub, reason string) {
	src := filepath.Join(f.opts.Dir, name)
	dstDir := filepath.Join(f.opts.Dir, sub)
	dst := filepath.Join(dstDir, name)
	for i := 1; ; i++ {
		// Only an existing file means "try the next name": any other error (a name made too
		// long by the suffix, ENAMETOOLONG) would repeat forever; the rename below then fails
		// and the input stays in the hot folder.
		if _, err := os.Lstat(dst); err != nil {
			break
		}
		ext := filepath.Ext(name)
		dst = filepath.Join(dstDir, fmt.Sprintf("%s.%d%s", strings.TrimSuffix(name, ext), i, ext))
	}
	if reason != "" {
		if err := os.WriteFile(dst+".reason", []byte(reason+"\n"), 0o640); err != nil {
			f.opts.Logger.Error("writing reason", "file", name, "err", err)
		}
	}
	if err := os.Rename(src, dst); err != nil {
		// Leave the input where it is (never lose it) and stop looking at it until restart.
		f.opts.Logger.Error("cannot move file; leaving it in the hot folder until restart", "file", name, "to", sub, "err", err)
		f.stuck[name] = true
	}
	f.prune()
}

// prune applies the retention of done/ and failed/.
func (f *Folder) prune() {
	now := f.opts.Now()
	if f.opts.KeepDone {
		if err := PruneDir(filepath.Join(f.opts.Dir, DoneDir), f.opts.Done, now); err != nil {
			f.opts.Logger.Error("pruning done/", "err", err)
		}
	}
	if err := PruneDir(filepath.Join(f.opts.Dir, FailedDir), f.opts.Failed, now); err != nil {
		f.opts.Logger.Error("pruning failed/", "err", err)
	}
}

// PruneDir deletes regular files of dir older than r.MaxAge, then the oldest until their total
// size is at most r.MaxBytes. A file's "<name>.reason" companion goes with it.
func PruneDir(dir string, r Retention, now time.Time) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	type file struct {
		name  string
		size  int64
		mtime time.Time
	}
	var files []file
	sizes := map[string]int64{}
	var total int64
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		total += fi.Size()
		sizes[e.Name()] = fi.Size()
		if !strings.HasSuffix(e.Name(), ".reason") {
			files = append(files, file{e.Name(), fi.Size(), fi.ModTime()})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mtime.Before(files[j].mtime) })
	var errs []error
	for _, fl := range files {
		old := r.MaxAge > 0 && now.Sub(fl.mtime) > r.MaxAge
		over := r.MaxBytes > 0 && total > r.MaxBytes
		if !old && !over {
			continue
		}
		for _, n := range []string{fl.name, fl.name + ".reason"} {
			sz, ok := sizes[n]
			if !ok {
				continue
			}
			if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
				continue
			}
			total -= sz
		}
	}
	return errors.Join(errs...)
}
