package store_test

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

const crashEnv = "CXR_STORE_CRASH_CHILD_DIR"

// TestCrashChild is the child half of TestCrashSafety: it works on the store like the
// daemon does until it is killed. It does nothing when run normally.
// TestMain turns the test binary into TestCrashSafety's child when it is started as one, so
// the child is no test that a normal run would have to skip.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir) // never returns: it works until the parent kills it
	}
	os.Exit(m.Run())
}

// crashChild writes to the store in dir without end: submits, commits, acks, prunes.
func crashChild(dir string) {
	s, err := store.Open(dir, store.Options{OpenTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	// The log records what the store confirmed, after it returned, fsynced so the parent
	// can hold the store to it.
	logf, err := os.OpenFile(filepath.Join(dir, "child.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		os.Exit(2)
	}
	note := func(format string, args ...any) {
		fmt.Fprintf(logf, format+"\n", args...)
		logf.Sync()
	}
	must := func(err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
	}
	// Recover first, as the daemon does: score what a crash left pending.
	pend, err := s.Pending()
	must(err)
	for _, in := range pend {
		_, err := s.Commit(result(in.ID, telemetry.LabelNormal))
		must(err)
		note("C %s", in.ID)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	for {
		data := make([]byte, 1+rng.IntN(64<<10))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		in, _, err := s.Submit("folder", "img.png", data, time.Time{})
		must(err)
		note("S %s", in.ID)
		if rng.IntN(4) != 0 { // leave some pending
			label := telemetry.LabelPneumonia
			if rng.IntN(5) == 0 {
				label = telemetry.LabelUnreadable
			}
			_, err := s.Commit(result(in.ID, label))
			must(err)
			note("C %s", in.ID)
		}
		if rng.IntN(3) == 0 {
			ob, err := s.Outbox(1 + rng.IntN(3))
			must(err)
			for _, e := range ob {
				must(s.Ack(e.Seq))
				note("A %d", e.Seq)
			}
		}
		if rng.IntN(10) == 0 {
			_, err := s.Prune(time.Now())
			must(err)
		}
	}
}

// TestCrashSafety kills a process writing to the store with SIGKILL at random moments and
// checks, after each kill, that every input is either pending or done with its result and
// (outbox entry or acknowledgement) — never half — and that what the store confirmed stays.
func TestCrashSafety(t *testing.T) {
	rounds := 30
	if testing.Short() {
		rounds = 8
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^$") // TestMain makes it the child
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill at a random moment after the child has started working (its start-up under
		// -race on a loaded machine can take longer than the whole random delay).
		logPath := filepath.Join(dir, "child.log")
		before := fileSize(logPath)
		deadline := time.Now().Add(30 * time.Second)
		for fileSize(logPath) <= before {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: child made no progress: %s", round, stderr.String())
			}
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended on its own (%v): %s", round, err, stderr.String())
		}
		checkInvariants(t, round, dir)
	}
	s := open(t, dir, store.Options{})
	st, _ := s.Stats()
	t.Logf("%d kills; store holds %d inputs (%d pending, %d in outbox)", rounds, st.Inputs, st.Pending, st.Outbox)
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return st.Size()
}

func checkInvariants(t *testing.T, round int, dir string) {
	t.Helper()
	// Orphan blobs (a kill between blob and record) are expected here; keep the log quiet.
	s, err := store.Open(dir, store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("round %d: reopen after kill: %v", round, err)
	}
	defer s.Close()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("round %d: "+format, append([]any{round}, args...)...)
	}
	st, err := s.Stats()
	if err != nil {
		fail("stats: %v", err)
	}
	pend, err := s.Pending()
	if err != nil {
		fail("pending: %v", err)
	}
	results, err := s.Results(1 << 30)
	if err != nil {
		fail("results: %v", err)
	}
	outbox, err := s.Outbox(0)
	if err != nil {
		fail("outbox: %v", err)
	}
	if st.Pending != len(pend) || st.Outbox != len(outbox) || st.Inputs != len(pend)+len(results) {
		fail("counters %+v disagree with records: %d pending, %d results, %d outbox", st, len(pend), len(results), len(outbox))
	}
	inOutbox := map[string]bool{}
	for _, e := range outbox {
		inOutbox[e.ResultID] = true
	}
	for _, in := range pend {
		if in.State != store.StatePending {
			fail("pending list holds %s in state %s", in.ID, in.State)
		}
		if _, err := s.Data(in.ID); err != nil {
			fail("pending input without its bytes: %v", err)
		}
	}
	for _, r := range results {
		in, err := s.Input(r.ID)
		if err != nil {
			fail("result without input: %v", err)
		}
		if in.State == store.StatePending {
			fail("input %s has a result but is pending", r.ID)
		}
		if in.Acked == inOutbox[r.ID] {
			fail("input %s: acked=%v but in outbox=%v", r.ID, in.Acked, inOutbox[r.ID])
		}
	}
	// What the store confirmed to the child must hold.
	f, err := os.Open(filepath.Join(dir, "child.log"))
	if err != nil {
		fail("child log: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kind, arg, _ := strings.Cut(sc.Text(), " ")
		switch kind {
		case "S", "C":
			// The child's retention bounds (defaults) are never reached, so nothing may go.
			in, err := s.Input(arg)
			if err != nil {
				fail("confirmed input %s: %v", arg, err)
			}
			if kind == "C" && in.State == store.StatePending {
				fail("committed input %s is pending again", arg)
			}
		case "A":
			seq, _ := strconv.ParseUint(arg, 10, 64)
			for _, e := range outbox {
				if e.Seq == seq {
					fail("acked outbox entry %d is back", seq)
				}
			}
		}
	}
	// Every blob on disk belongs to a record (orphans are swept on Open).
	filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if _, err := s.Input(d.Name()); err != nil {
				fail("blob %s without record after open: %v", p, err)
			}
		}
		return nil
	})
}
