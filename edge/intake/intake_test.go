package intake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// decodeProc is the Processor of these tests: it decodes with the real imaging package (no
// model) and remembers what it saw. It also serves as Results for the HTTP tests.
type decodeProc struct {
	mu      sync.Mutex
	seen    map[string][]byte // name or id → bytes
	calls   int
	results map[string]telemetry.Result
	order   []string
	failN   int // fail this many calls with a transient error first
}

func newDecodeProc() *decodeProc {
	return &decodeProc{seen: map[string][]byte{}, results: map[string]telemetry.Result{}}
}

func (p *decodeProc) Process(ctx context.Context, in Input) (telemetry.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.failN > 0 {
		p.failN--
		return telemetry.Result{}, errors.New("store unavailable")
	}
	sum := sha256.Sum256(in.Data)
	id := hex.EncodeToString(sum[:])
	key := in.Name
	if key == "" {
		key = id
	}
	p.seen[key] = bytes.Clone(in.Data)
	res := telemetry.Result{Schema: telemetry.SchemaResult, ID: id, Source: in.Source, ReceivedAt: in.ReceivedAt, Label: telemetry.LabelNormal}
	if in.Format == FormatDICOM {
		res.Image.Format = FormatDICOM
	} else {
		_, info, err := imaging.DecodeBytes(in.Data, imaging.Options{})
		if err != nil {
			res.Label, res.Reason = telemetry.LabelUnreadable, err.Error()
		}
		res.Image = telemetry.ImageInfo{Format: info.Format, Width: info.Width, Height: info.Height}
	}
	if _, dup := p.results[id]; !dup {
		p.order = append(p.order, id)
	}
	p.results[id] = res
	return res, nil
}

func (p *decodeProc) Result(id string) (telemetry.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.results[id]
	if !ok {
		return r, ErrNotFound
	}
	return r, nil
}

func (p *decodeProc) Results(n int) ([]telemetry.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []telemetry.Result
	for i := len(p.order) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, p.results[p.order[i]])
	}
	return out, nil
}

func (p *decodeProc) snapshot() (map[string][]byte, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string][]byte{}
	for k, v := range p.seen {
		m[k] = v
	}
	return m, p.calls
}

func fullres(t *testing.T, class, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(testenv.SharedPath(t, "data", "fullres", class, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSniff(t *testing.T) {
	dcm, err := os.ReadFile(testenv.SharedPath(t, "data", "dicom", "CR-MONO1-10-chest.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	part10 := append(make([]byte, 128), []byte("DICM\x02\x00\x00\x00UL\x04\x00")...)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"jpeg", fullres(t, "NORMAL", "IM-0149-0001.jpeg"), FormatJPEG},
		{"png", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), FormatPNG},
		{"dicom part 10", part10, FormatDICOM},
		{"acr-nema dicom", dcm, FormatDICOM},
		{"text", []byte("hello, world\n"), ""},
		{"empty", nil, ""},
		{"jpeg prefix only", []byte{0xFF, 0xD8}, ""},
		{"pdf", []byte("%PDF-1.7\n"), ""},
	} {
		if got := Sniff(tc.data); got != tc.want {
			t.Errorf("%s: Sniff = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func FuzzSniff(f *testing.F) {
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xE0})
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Add(append(make([]byte, 128), "DICM"...))
	f.Add([]byte{0x08, 0x00, 0x05, 0x00, 'C', 'S', 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		switch Sniff(data) {
		case "", FormatJPEG, FormatPNG, FormatDICOM:
		default:
			t.Fatal("unknown format name")
		}
	})
}

// runFolder starts a hot folder on a fresh directory and stops it at the end of the test.
func runFolder(t *testing.T, opts FolderOptions, proc Processor) string {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Settle == 0 {
		opts.Settle = 150 * time.Millisecond
	}
	if opts.Rescan == 0 {
		opts.Rescan = time.Second
	}
	f, err := NewFolder(opts, proc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return opts.Dir
}

// waitFor polls cond up to testenv.WaitLimit: a loaded CI machine under -race can take
// seconds to decode one full-resolution image.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, cond)
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func TestFolderRenamedInAndPresentAtStart(t *testing.T) {
	dir := t.TempDir()
	a := fullres(t, "NORMAL", "IM-0149-0001.jpeg")
	b := fullres(t, "PNEUMONIA", "person23_bacteria_91.jpeg")
	// A file left from before start-up (e.g. written while the daemon was down).
	if err := os.WriteFile(filepath.Join(dir, "early.jpeg"), a, 0o640); err != nil {
		t.Fatal(err)
	}
	proc := newDecodeProc()
	runFolder(t, FolderOptions{Dir: dir, KeepDone: true, Done: Retention{MaxBytes: 1 << 30}, Failed: Retention{MaxBytes: 1 << 30}}, proc)
	// Written elsewhere on the same file system, then renamed in.
	staging := filepath.Join(dir, ".staging.part")
	if err := os.WriteFile(staging, b, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(staging, filepath.Join(dir, "study2.dat")); err != nil { // extension is irrelevant
		t.Fatal(err)
	}
	waitFor(t, "both files in done/", func() bool {
		return exists(filepath.Join(dir, DoneDir, "early.jpeg")) && exists(filepath.Join(dir, DoneDir, "study2.dat"))
	})
	seen, calls := proc.snapshot()
	if calls != 2 || !bytes.Equal(seen["early.jpeg"], a) || !bytes.Equal(seen["study2.dat"], b) {
		t.Errorf("calls = %d, seen %d files; want each file once and complete", calls, len(seen))
	}
	if exists(filepath.Join(dir, "early.jpeg")) || exists(filepath.Join(dir, "study2.dat")) {
		t.Error("processed files left in the inbox")
	}
}

func TestFolderSlowWriter(t *testing.T) {
	data := fullres(t, "PNEUMONIA", "person1306_bacteria_3277.jpeg")
	proc := newDecodeProc()
	// Settle far above the writer's 100 ms gaps: a loaded machine can stretch a gap several
	// times, and a gap longer than Settle would (rightly) read a half-written file.
	dir := runFolder(t, FolderOptions{Settle: 3 * time.Second, KeepDone: true, Done: Retention{MaxBytes: 1 << 30}, Failed: Retention{MaxBytes: 1 << 30}}, proc)
	fh, err := os.Create(filepath.Join(dir, "slow.jpeg"))
	if err != nil {
		t.Fatal(err)
	}
	// Ten chunks over about one second, written in place under the final name.
	chunk := (len(data) + 9) / 10
	for off := 0; off < len(data); off += chunk {
		if _, err := fh.Write(data[off:min(off+chunk, len(data))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "slow.jpeg in done/", func() bool { return exists(filepath.Join(dir, DoneDir, "slow.jpeg")) })
	seen, calls := proc.snapshot()
	if calls != 1 {
		t.Errorf("processed %d times, want once", calls)
	}
	if !bytes.Equal(seen["slow.jpeg"], data) {
		t.Errorf("read %d bytes, want the complete %d", len(seen["slow.jpeg"]), len(data))
	}
}

func TestFolderRejects(t *testing.T) {
	good := fullres(t, "NORMAL", "IM-0189-0001.jpeg")
	proc := newDecodeProc()
	dir := runFolder(t, FolderOptions{MaxBytes: int64(len(good)), KeepDone: true, Done: Retention{MaxBytes: 1 << 30}, Failed: Retention{MaxBytes: 1 << 30}}, proc)
	files := map[string][]byte{
		"notes.txt":     []byte("not an image\n"),
		"empty.jpeg":    {},
		"truncated.jpg": good[:len(good)/3],
		"big.jpeg":      append(bytes.Clone(good), 0),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	wantReason := map[string]string{
		"notes.txt":     "unsupported format",
		"empty.jpeg":    "empty input",
		"truncated.jpg": "imaging:",
		"big.jpeg":      "intake.max_bytes",
	}
	for name, want := range wantReason {
		reason := filepath.Join(dir, FailedDir, name+".reason")
		waitFor(t, reason, func() bool { return exists(reason) && exists(filepath.Join(dir, FailedDir, name)) })
		b, _ := os.ReadFile(reason)
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("%s: reason %q, want it to mention %q", name, b, want)
		}
	}
	_, calls := proc.snapshot()
	if calls != 1 { // only the truncated JPEG reaches the processor
		t.Errorf("processor called %d times, want 1", calls)
	}
}

func TestFolderIgnoresTemporaryNames(t *testing.T) {
	data := fullres(t, "NORMAL", "IM-0365-0001.jpeg")
	proc := newDecodeProc()
	dir := runFolder(t, FolderOptions{KeepDone: false, Failed: Retention{MaxBytes: 1 << 30}}, proc)
	for _, n := range []string{".hidden.jpeg", "a.jpeg.tmp", "b.jpeg.part", "c.PARTIAL"} {
		if err := os.WriteFile(filepath.Join(dir, n), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(600 * time.Millisecond) // four settle intervals
	if _, calls := proc.snapshot(); calls != 0 {
		t.Fatalf("temporary files processed (%d calls)", calls)
	}
	if err := os.Rename(filepath.Join(dir, "b.jpeg.part"), filepath.Join(dir, "b.jpeg")); err != nil {
		t.Fatal(err)
	}
	// keep_done=false: the processed file is deleted, not moved.
	waitFor(t, "b.jpeg processed and removed", func() bool {
		_, calls := proc.snapshot()
		return calls == 1 && !exists(filepath.Join(dir, "b.jpeg"))
	})
	if exists(filepath.Join(dir, DoneDir, "b.jpeg")) {
		t.Error("keep_done=false kept the file")
	}
	for _, n := range []string{".hidden.jpeg", "a.jpeg.tmp", "c.PARTIAL"} {
		if !exists(filepath.Join(dir, n)) {
			t.Errorf("%s was touched", n)
		}
	}
}

func TestFolderRetriesTransientFailure(t *testing.T) {
	data := fullres(t, "NORMAL", "IM-0636-0001.jpeg")
	proc := newDecodeProc()
	proc.failN = 2
	dir := runFolder(t, FolderOptions{Rescan: 200 * time.Millisecond, KeepDone: true, Done: Retention{MaxBytes: 1 << 30}, Failed: Retention{MaxBytes: 1 << 30}}, proc)
	if err := os.WriteFile(filepath.Join(dir, "x.jpeg"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, "x.jpeg in done/", func() bool { return exists(filepath.Join(dir, DoneDir, "x.jpeg")) })
	if _, calls := proc.snapshot(); calls != 3 {
		t.Errorf("calls = %d, want 2 failures then 1 success", calls)
	}
	// Retries wait for the rescan interval (200 ms here), not the 37 ms check tick.
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Errorf("two retries took %v: no back-off", took)
	}
}

func TestFolderNameCollisionInDone(t *testing.T) {
	a := fullres(t, "NORMAL", "NORMAL2-IM-0772-0001.jpeg")
	b := fullres(t, "NORMAL", "NORMAL2-IM-0816-0001.jpeg")
	proc := newDecodeProc()
	dir := runFolder(t, FolderOptions{KeepDone: true, Done: Retention{MaxBytes: 1 << 30}, Failed: Retention{MaxBytes: 1 << 30}}, proc)
	if err := os.WriteFile(filepath.Join(dir, "same.jpeg"), a, 0o640); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first in done/", func() bool { return exists(filepath.Join(dir, DoneDir, "same.jpeg")) })
	if err := os.WriteFile(filepath.Join(dir, "same.jpeg"), b, 0o640); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second in done/", func() bool { return exists(filepath.Join(dir, DoneDir, "same.1.jpeg")) })
	got, _ := os.ReadFile(filepath.Join(dir, DoneDir, "same.jpeg"))
	if !bytes.Equal(got, a) {
		t.Error("first file overwritten")
	}
}

// A collision on a name of the longest allowed length cannot get a ".1" suffix; the input
// must stay in the hot folder and the folder keep working (it used to loop forever).
func TestFolderCollisionOnLongestName(t *testing.T) {
	a := fullres(t, "NORMAL", "NORMAL2-IM-0772-0001.jpeg")
	b := fullres(t, "NORMAL", "NORMAL2-IM-0816-0001.jpeg")
	proc := newDecodeProc()
	dir := runFolder(t, FolderOptions{KeepDone: true, Done: Retention{MaxBytes: 1 << 30}, Failed: Retention{MaxBytes: 1 << 30}}, proc)
	long := strings.Repeat("n", 250) + ".jpeg" // 255 bytes, NAME_MAX on Linux
	if err := os.WriteFile(filepath.Join(dir, long), a, 0o640); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first in done/", func() bool { return exists(filepath.Join(dir, DoneDir, long)) })
	if err := os.WriteFile(filepath.Join(dir, long), b, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "after.jpeg"), b, 0o640); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "after.jpeg in done/", func() bool { return exists(filepath.Join(dir, DoneDir, "after.jpeg")) })
	if got, err := os.ReadFile(filepath.Join(dir, long)); err != nil || !bytes.Equal(got, b) {
		t.Errorf("second input with the longest name not kept in the hot folder: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, DoneDir, long)); !bytes.Equal(got, a) {
		t.Error("first file overwritten")
	}
}

func TestPruneDir(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	type f struct {
		name string
		size int
		age  time.Duration
	}
	files := []f{
		{"old.jpeg", 100, 48 * time.Hour}, {"old.jpeg.reason", 10, 48 * time.Hour},
		{"mid.jpeg", 100, 10 * time.Hour},
		{"new.jpeg", 100, time.Hour}, {"new.jpeg.reason", 10, time.Hour},
	}
	for _, tc := range []struct {
		name string
		r    Retention
		want []string
	}{
		{"no limits", Retention{}, []string{"mid.jpeg", "new.jpeg", "new.jpeg.reason", "old.jpeg", "old.jpeg.reason"}},
		{"age", Retention{MaxAge: 24 * time.Hour}, []string{"mid.jpeg", "new.jpeg", "new.jpeg.reason"}},
		{"bytes drop oldest", Retention{MaxBytes: 210}, []string{"mid.jpeg", "new.jpeg", "new.jpeg.reason"}},
		{"bytes tight", Retention{MaxBytes: 110}, []string{"new.jpeg", "new.jpeg.reason"}},
		{"both", Retention{MaxAge: 5 * time.Hour, MaxBytes: 1 << 20}, []string{"new.jpeg", "new.jpeg.reason"}},
		{"nothing fits", Retention{MaxBytes: 1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, fl := range files {
				p := filepath.Join(dir, fl.name)
				if err := os.WriteFile(p, make([]byte, fl.size), 0o640); err != nil {
					t.Fatal(err)
				}
				mt := now.Add(-fl.age)
				if err := os.Chtimes(p, mt, mt); err != nil {
					t.Fatal(err)
				}
			}
			if err := PruneDir(dir, tc.r, now); err != nil {
				t.Fatal(err)
			}
			ents, _ := os.ReadDir(dir)
			var got []string
			for _, e := range ents {
				got = append(got, e.Name())
			}
			sort.Strings(got)
			if len(got) != len(tc.want) {
				t.Fatalf("left %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("left %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestFolderDoneIsBounded(t *testing.T) {
	proc := newDecodeProc()
	a := fullres(t, "NORMAL", "NORMAL2-IM-0826-0001.jpeg")
	b := fullres(t, "NORMAL", "NORMAL2-IM-0974-0001.jpeg")
	dir := runFolder(t, FolderOptions{KeepDone: true, Done: Retention{MaxBytes: int64(max(len(a), len(b)))}, Failed: Retention{MaxBytes: 1 << 30}}, proc)
	if err := os.WriteFile(filepath.Join(dir, "a.jpeg"), a, 0o640); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a in done/", func() bool { return exists(filepath.Join(dir, DoneDir, "a.jpeg")) })
	// Make a clearly older than b, whatever the file system's timestamp granularity.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, DoneDir, "a.jpeg"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.jpeg"), b, 0o640); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b in done/ and a pruned", func() bool {
		return exists(filepath.Join(dir, DoneDir, "b.jpeg")) && !exists(filepath.Join(dir, DoneDir, "a.jpeg"))
	})
}

func TestIgnored(t *testing.T) {
	for name, want := range map[string]bool{
		"x.jpeg": false, "IM-0001.dcm": false, "noext": false,
		".x.jpeg": true, "x.tmp": true, "x.jpeg.part": true, "x.PART": true, "x.partial": true, "x.jpeg.reason": true,
	} {
		if Ignored(name) != want {
			t.Errorf("Ignored(%q) = %v", name, !want)
		}
	}
}

func TestNewFolderErrors(t *testing.T) {
	if _, err := NewFolder(FolderOptions{}, newDecodeProc()); err == nil {
		t.Error("no dir accepted")
	}
	if _, err := NewFolder(FolderOptions{Dir: t.TempDir()}, nil); err == nil {
		t.Error("no processor accepted")
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFolder(FolderOptions{Dir: file}, newDecodeProc()); err == nil {
		t.Error("a file as hot folder accepted")
	}
}
