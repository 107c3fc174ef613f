package store_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/telemetry"
	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T, dir string, opts store.Options) *store.Store {
	t.Helper()
	s, err := store.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func result(id, label string) telemetry.Result {
	return telemetry.Result{ID: id, Label: label, Score: 0.7, Threshold: 0.5, Source: "folder",
		ReceivedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), ScoredAt: time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC),
		Model: telemetry.ModelRef{Name: "cxr", Version: "1", SHA256: "ab"}}
}

func TestOptionsDefaults(t *testing.T) {
	d := store.Options{}.WithDefaults()
	if d.MaxAge != 30*24*time.Hour || d.MaxBytes != 2<<30 || d.MaxInputBytes != 256<<20 ||
		d.OpenTimeout != 2*time.Second || d.Logger == nil {
		t.Fatalf("defaults %+v differ from the documented ones", d)
	}
	set := store.Options{MaxAge: time.Minute, MaxBytes: 5, MaxInputBytes: 6, OpenTimeout: time.Second}.WithDefaults()
	if set.MaxAge != time.Minute || set.MaxBytes != 5 || set.MaxInputBytes != 6 || set.OpenTimeout != time.Second {
		t.Fatalf("explicit options overridden: %+v", set)
	}
}

func TestSubmitDedupAndData(t *testing.T) {
	s := open(t, t.TempDir(), store.Options{})
	img := []byte("fake image bytes")
	in, dup, err := s.Submit("folder", "a.png", img, time.Unix(100, 0))
	if err != nil || dup {
		t.Fatalf("first submit: dup=%v err=%v", dup, err)
	}
	if in.ID != s.ID(img) || in.State != store.StatePending || in.Size != int64(len(img)) || in.Name != "a.png" {
		t.Fatalf("record %+v", in)
	}
	again, dup, err := s.Submit("http", "b.png", img, time.Unix(200, 0))
	if err != nil || !dup || again.Seq != in.Seq || again.Source != "folder" {
		t.Fatalf("duplicate submit: %+v dup=%v err=%v", again, dup, err)
	}
	got, err := s.Data(in.ID)
	if err != nil || string(got) != string(img) {
		t.Fatalf("data %q %v", got, err)
	}
	// A corrupted blob is detected, not silently scored.
	if err := os.WriteFile(s.BlobPath(in.ID), []byte("tampered"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Data(in.ID); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("tampered blob: %v", err)
	}
	st, _ := s.Stats()
	if st.Inputs != 1 || st.Pending != 1 || st.Bytes != int64(len(img)) {
		t.Fatalf("stats %+v", st)
	}
}

func TestBadInput(t *testing.T) {
	s := open(t, t.TempDir(), store.Options{MaxInputBytes: 10})
	cases := []struct {
		name   string
		source string
		data   []byte
		want   error
	}{
		{"empty", "folder", nil, store.ErrEmpty},
		{"too large", "folder", make([]byte, 11), store.ErrTooLarge},
		{"no source", "", []byte("x"), store.ErrInvalid},
	}
	for _, c := range cases {
		if _, _, err := s.Submit(c.source, "n", c.data, time.Time{}); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := s.Commit(result("nope", telemetry.LabelNormal)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("commit unknown: %v", err)
	}
	in, _, _ := s.Submit("folder", "", []byte("ok"), time.Time{})
	if _, err := s.Commit(result(in.ID, "maybe")); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("bad label: %v", err)
	}
	for _, id := range []string{"", "x", "../../etc/passwd", strings.Repeat("AB", 32)} {
		if p := s.BlobPath(id); p != "" {
			t.Errorf("BlobPath(%q) = %q, want \"\" for a non-id", id, p)
		}
	}
	if _, err := s.Input("missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("input missing: %v", err)
	}
	if _, err := s.Result(in.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("result of pending: %v", err)
	}
	if st, _ := s.Stats(); st.Inputs != 1 || st.Pending != 1 || st.Outbox != 0 {
		t.Errorf("bad input changed the store: %+v", st)
	}
}

func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, store.Options{})
	var ids []string
	for i := range 5 {
		in, _, err := s.Submit("folder", fmt.Sprint(i), []byte(fmt.Sprintf("image %d", i)), time.Unix(int64(i), 0))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.ID)
	}
	pend, err := s.Pending()
	if err != nil || len(pend) != 5 {
		t.Fatalf("pending %d %v", len(pend), err)
	}
	for i, p := range pend {
		if p.ID != ids[i] {
			t.Fatalf("pending not in arrival order at %d", i)
		}
	}
	// Score 3 of them (one unreadable), out of arrival order.
	for _, i := range []int{2, 0, 4} {
		label := telemetry.LabelNormal
		if i == 4 {
			label = telemetry.LabelUnreadable
		}
		if _, err := s.Commit(result(ids[i], label)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Commit(result(ids[2], telemetry.LabelNormal)); !errors.Is(err, store.ErrNotPending) {
		t.Fatalf("double commit: %v", err)
	}
	if in, _ := s.Input(ids[4]); in.State != store.StateFailed {
		t.Fatalf("unreadable input state %s", in.State)
	}
	pend, _ = s.Pending()
	if len(pend) != 2 || pend[0].ID != ids[1] || pend[1].ID != ids[3] {
		t.Fatalf("pending after commits: %+v", pend)
	}
	ob, err := s.Outbox(2)
	if err != nil || len(ob) != 2 || ob[0].ResultID != ids[2] || ob[1].ResultID != ids[0] || ob[0].Seq >= ob[1].Seq {
		t.Fatalf("outbox peek %+v %v", ob, err)
	}
	var r telemetry.Result
	if err := json.Unmarshal(ob[0].Payload, &r); err != nil || r.Schema != telemetry.SchemaResult || r.ID != ids[2] {
		t.Fatalf("payload %s: %v", ob[0].Payload, err)
	}
	if err := s.Ack(ob[0].Seq); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ob[0].Seq); err != nil {
		t.Fatalf("repeated ack: %v", err)
	}
	newest, err := s.Results(2)
	if err != nil || len(newest) != 2 || newest[0].ID != ids[4] || newest[1].ID != ids[0] {
		t.Fatalf("newest results %+v %v", newest, err)
	}
	st, _ := s.Stats()
	if st != (store.Stats{Inputs: 5, Pending: 2, Outbox: 2, Bytes: st.Bytes}) {
		t.Fatalf("stats %+v", st)
	}
	// Reopen: everything survives.
	s.Close()
	s2 := open(t, dir, store.Options{})
	ob, _ = s2.Outbox(0)
	if len(ob) != 2 || ob[0].ResultID != ids[0] {
		t.Fatalf("outbox after reopen %+v", ob)
	}
	if in, _ := s2.Input(ids[2]); !in.Acked || in.State != store.StateDone {
		t.Fatalf("acked input after reopen %+v", in)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, store.Options{})
	start := time.Now()
	_, err := store.Open(dir, store.Options{OpenTimeout: 100 * time.Millisecond})
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("OpenTimeout ignored")
	}
}

// Ids leave the device in every result, so they are keyed: the same bytes get the same id in
// one store across restarts, another id in another store, and never their plain sha256. A
// store made before keyed ids keeps plain ids while it holds inputs (its records and blobs are
// named by them) and gets a key at the first Open with no input; a damaged key is an error,
// not a silent change of every id.
func TestKeyedIDs(t *testing.T) {
	img := []byte("an image")
	plainSum := sha256.Sum256(img)
	plain := hex.EncodeToString(plainSum[:])
	quiet := store.Options{Logger: slog.New(slog.DiscardHandler)}
	// setKey rewrites the key of a closed store as an older or damaged store would hold it.
	setKey := func(t *testing.T, dir string, key []byte) {
		t.Helper()
		db, err := bolt.Open(filepath.Join(dir, "store.db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.Update(func(tx *bolt.Tx) error {
			if key == nil {
				return tx.Bucket([]byte("meta")).Delete([]byte("id_key"))
			}
			return tx.Bucket([]byte("meta")).Put([]byte("id_key"), key)
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// reopen opens a store that the test closes itself.
	reopen := func(dir string) *store.Store {
		t.Helper()
		s, err := store.Open(dir, quiet)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	dirA := t.TempDir()
	a := reopen(dirA)
	in, _, err := a.Submit("folder", "", img, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	idA := a.ID(img)
	if in.ID != idA || idA == plain || len(idA) != 64 || strings.ToLower(idA) != idA {
		t.Fatalf("id %q (record %q), plain sha256 %q", idA, in.ID, plain)
	}
	if b := open(t, t.TempDir(), quiet); b.ID(img) == idA {
		t.Error("two stores give the same id to the same bytes")
	}
	a.Close()
	a = reopen(dirA)
	if a.ID(img) != idA {
		t.Error("the id changed across a restart")
	}
	if _, dup, err := a.Submit("http", "", img, time.Time{}); err != nil || !dup {
		t.Errorf("same bytes after a restart: dup=%v err=%v", dup, err)
	}
	a.Close()

	// A store from before keyed ids: no key, inputs held.
	setKey(t, dirA, nil)
	old := reopen(dirA)
	if old.ID(img) != plain {
		t.Errorf("old store with inputs: id %q, want the plain sha256 its records are named by", old.ID(img))
	}
	old.Close()
	// One without inputs gets a key at the next start.
	empty := t.TempDir()
	reopen(empty).Close()
	setKey(t, empty, nil)
	e := reopen(empty)
	if got := e.ID(img); got == plain || len(got) != 64 {
		t.Errorf("old store without inputs: id %q, want a keyed one", got)
	}
	e.Close()

	setKey(t, empty, []byte("short"))
	if s, err := store.Open(empty, quiet); !errors.Is(err, store.ErrCorrupt) {
		if err == nil {
			s.Close()
		}
		t.Errorf("damaged id key: %v, want ErrCorrupt", err)
	}
}

func TestOrphanBlobsRemovedOnOpen(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in, _, _ := s.Submit("folder", "", []byte("kept"), time.Time{})
	orphanID := s.ID([]byte("orphan"))
	s.Close()
	orphan := filepath.Join(dir, "blobs", orphanID[:2], orphanID)
	tmp := filepath.Join(dir, "blobs", orphanID+".123.tmp")
	for _, p := range []string{orphan, tmp} {
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte("orphan"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s2 := open(t, dir, store.Options{Logger: slog.New(slog.DiscardHandler)})
	for _, p := range []string{orphan, tmp} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Open: %v", p, err)
		}
	}
	if _, err := s2.Data(in.ID); err != nil {
		t.Errorf("recorded blob removed: %v", err)
	}
}

func TestRetention(t *testing.T) {
	const size = 1000
	s := open(t, t.TempDir(), store.Options{MaxAge: time.Hour, MaxBytes: 3 * size})
	var ids []string
	var seqs []uint64
	for i := range 6 {
		data := make([]byte, size)
		data[0] = byte(i)
		in, _, err := s.Submit("folder", "", data, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		seq, err := s.Commit(result(in.ID, telemetry.LabelPneumonia))
		if err != nil {
			t.Fatal(err)
		}
		ids, seqs = append(ids, in.ID), append(seqs, seq)
	}
	now := time.Now()
	// Nothing acked: over the size bound, yet nothing may go.
	ps, err := s.Prune(now.Add(48 * time.Hour))
	if err != nil || ps.Removed != 0 {
		t.Fatalf("pruned unacked results: %+v %v", ps, err)
	}
	// Ack 0,1,2,4 (3 and 5 stay unacked). Size 6000 > 3000 → remove oldest acked until ≤ 3000.
	for _, i := range []int{0, 1, 2, 4} {
		if err := s.Ack(seqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	ps, err = s.Prune(now)
	if err != nil || ps.Removed != 3 || ps.Bytes != 3*size {
		t.Fatalf("size prune: %+v %v", ps, err)
	}
	for i, id := range ids {
		_, err := s.Input(id)
		gone := errors.Is(err, store.ErrNotFound)
		if want := i <= 2; gone != want {
			t.Errorf("input %d gone=%v want %v", i, gone, want)
		}
		if _, err := os.Stat(s.BlobPath(id)); errors.Is(err, os.ErrNotExist) != (i <= 2) {
			t.Errorf("blob %d: %v", i, err)
		}
	}
	// Age: after MaxAge the remaining acked one (4) goes; the unacked 3 and 5 stay.
	ps, err = s.Prune(now.Add(2 * time.Hour))
	if err != nil || ps.Removed != 1 {
		t.Fatalf("age prune: %+v %v", ps, err)
	}
	if _, err := s.Input(ids[4]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("aged acked input kept")
	}
	for _, i := range []int{3, 5} {
		if _, err := s.Result(ids[i]); err != nil {
			t.Errorf("unacked result %d deleted: %v", i, err)
		}
	}
	st, _ := s.Stats()
	if st.Inputs != 2 || st.Outbox != 2 || st.Bytes != 2*size {
		t.Fatalf("stats after prune %+v", st)
	}
	// A pruned image arriving again is a new input.
	data := make([]byte, size)
	if _, dup, err := s.Submit("folder", "", data, time.Time{}); err != nil || dup {
		t.Fatalf("resubmit pruned: dup=%v %v", dup, err)
	}
}

// TestResubmitWhilePruning races Prune removing an input against a Submit of the same
// bytes: whenever the record survives, its bytes must too (Submit must not reuse a blob
// that Prune is about to delete).
func TestResubmitWhilePruning(t *testing.T) {
	s := open(t, t.TempDir(), store.Options{MaxAge: time.Nanosecond})
	data := []byte("the same image, again and again")
	for i := range 50 {
		in, _, err := s.Submit("folder", "", data, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if in.State == store.StatePending {
			seq, err := s.Commit(result(in.ID, telemetry.LabelNormal))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Ack(seq); err != nil {
				t.Fatal(err)
			}
		}
		errs := make(chan error, 2)
		go func() { _, err := s.Prune(time.Now().Add(time.Hour)); errs <- err }()
		go func() { _, _, err := s.Submit("folder", "", data, time.Time{}); errs <- err }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Input(in.ID); err == nil {
			if _, err := s.Data(in.ID); err != nil {
				t.Fatalf("round %d: record kept but bytes lost: %v", i, err)
			}
		}
		// Clear the round: the next one starts from an acked, prunable input.
		if _, err := s.Prune(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
}
