package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/cxr-edge/cxr-edge/edge/intake"
	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// e2eInput is one file of the end-to-end batch.
type e2eInput struct {
	name string
	path string
	id   string // the result id: the daemon's keyed hash of the bytes (known once its store is closed)
	data []byte
}

// e2eInputs gathers the batch: the 24 full-resolution JPEGs, two DICOM files made from two of
// them with dcmtk (JPEG baseline encapsulated by img2dcm, and the same decompressed to native
// pixels by dcmdjpeg) and the real CR chest DICOM file.
func e2eInputs(t *testing.T) []e2eInput {
	t.Helper()
	var paths []string
	for _, class := range []string{"NORMAL", "PNEUMONIA"} {
		dir := testenv.SharedPath(t, "data", "fullres", class)
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Type().IsRegular() {
				paths = append(paths, filepath.Join(dir, e.Name()))
			}
		}
	}
	if len(paths) != 24 {
		t.Fatalf("%d full-resolution images, want 24", len(paths))
	}
	tmp := t.TempDir()
	encap, native := filepath.Join(tmp, "sc-jpeg.dcm"), filepath.Join(tmp, "sc-native.dcm")
	testenv.DCMTK(t, "img2dcm", paths[0], encap)
	testenv.DCMTK(t, "img2dcm", paths[len(paths)-1], filepath.Join(tmp, "sc2-jpeg.dcm"))
	testenv.DCMTK(t, "dcmdjpeg", filepath.Join(tmp, "sc2-jpeg.dcm"), native)
	paths = append(paths, encap, native, testenv.SharedPath(t, "data", "dicom", "CR-MONO1-10-chest.dcm"))

	var ins []e2eInput
	seen := map[[sha256.Size]byte]bool{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if seen[sum] {
			t.Fatalf("%s duplicates another input", p)
		}
		seen[sum] = true
		ins = append(ins, e2eInput{name: filepath.Base(p), path: p, data: data})
	}
	return ins
}

// dropFile puts data into the hot folder the way producers must: written under a temporary
// name, then renamed in.
func dropFile(t *testing.T, inbox, name string, data []byte) {
	t.Helper()
	tmp := filepath.Join(inbox, "."+name+".part")
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(inbox, name)); err != nil {
		t.Fatal(err)
	}
}

// durableSubscriber receives results with a persistent session (clean session off, fixed
// client id), so that results the broker accepted while the subscriber was cut off by an
// outage are still delivered to it afterwards.
type durableSubscriber struct {
	mu       sync.Mutex
	received int
	byID     map[string][]telemetry.Result
	bad      []string
}

func subscribeDurable(t *testing.T, brokerURL, topic string) *durableSubscriber {
	t.Helper()
	s := &durableSubscriber{byID: map[string][]telemetry.Result{}}
	handler := func(_ paho.Client, m paho.Message) {
		var r telemetry.Result
		err := json.Unmarshal(m.Payload(), &r)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.received++
		if err != nil || r.ID == "" {
			s.bad = append(s.bad, string(m.Payload()))
			return
		}
		s.byID[r.ID] = append(s.byID[r.ID], r)
	}
	opts := paho.NewClientOptions().AddBroker(brokerURL).SetClientID(fmt.Sprintf("e2e-sub-%d", time.Now().UnixNano())).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(500 * time.Millisecond).
		SetDefaultPublishHandler(handler) // messages of the persisted subscription before Subscribe returns
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", brokerURL, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	if tok := c.Subscribe(topic, 1, handler); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return s
}

// counts returns messages received, distinct result ids and duplicate deliveries.
func (s *durableSubscriber) counts() (received, distinct, duplicates int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received, len(s.byID), s.received - len(s.byID) - len(s.bad)
}

// waitUntil is testenv.WaitFor with a limit of its own, for the batch-sized waits of the
// end-to-end test (a whole batch under -race on a loaded machine takes longer than WaitLimit).
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// The whole device with real parts: the 24 full-resolution images and 3 DICOM files dropped
// into the hot folder reach a real subscriber on Mosquitto with exactly the scores of
// `cxr-edge score --json`, although the broker is stopped for 3 s mid-batch and the daemon is
// killed with SIGKILL mid-batch and restarted. Every input is committed exactly once, every
// result is published at least once (duplicates are allowed by the contract and counted),
// every file ends in done/ and the outbox drains.
func TestEndToEndWithOutageAndSIGKILL(t *testing.T) {
	ins := e2eInputs(t)
	m := model(t)

	// The reference: the one-shot scorer on the same files.
	args := []string{"score", "--json", "--model", m}
	for _, in := range ins {
		args = append(args, in.path)
	}
	code, out, errs := runCLI(t, nil, args...)
	if code != 0 {
		t.Fatalf("cxr-edge score: exit %d\n%s", code, errs)
	}
	// One line per file, in the order given (its ids are keyed per run and match nothing).
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(ins) {
		t.Fatalf("score --json gave %d results for %d files", len(lines), len(ins))
	}
	wantByName := map[string]telemetry.Result{}
	for i, l := range lines {
		var r telemetry.Result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("score --json: %v\n%s", err, l)
		}
		if r.Label == telemetry.LabelUnreadable {
			t.Fatalf("score --json: unreadable %+v", r)
		}
		wantByName[ins[i].name] = r
	}

	b := testenv.Mosquitto(t, testenv.BrokerOptions{})
	topics, _ := telemetry.NewTopics("cxr", "ward-3", "cart-1")
	sub := subscribeDurable(t, b.URL(), topics.Result())
	state := t.TempDir()
	inbox := filepath.Join(state, "inbox")
	env := []string{
		"CXR_MODEL_PATH=" + m,
		"CXR_STORE_DIR=" + filepath.Join(state, "store"),
		"CXR_INTAKE_WATCH_DIR=" + inbox,
		"CXR_INTAKE_SETTLE=50ms",
		"CXR_INTAKE_RESCAN=1s",
		"CXR_MQTT_BROKER=" + b.URL(),
		"CXR_DEVICE_SITE=ward-3", "CXR_DEVICE_ID=cart-1",
		"CXR_INDICATOR_KIND=none",
	}
	d := startDaemon(t, env)
	results := func(url string) []telemetry.Result {
		var list struct{ Results []telemetry.Result }
		getJSON(t, url+"/v1/results?limit=100", &list)
		return list.Results
	}
	// The batch arrives in three parts, so that the faults fall mid-batch on any machine.
	third := len(ins) / 3
	drop := func(part []e2eInput) {
		for _, in := range part {
			dropFile(t, inbox, in.name, in.data)
		}
	}
	drop(ins[:third])

	// Broker outage mid-batch: the second part is scored and committed into the outbox while
	// the broker is down.
	waitUntil(t, 60*time.Second, "4 results", func() bool { return len(results(d.url)) >= 4 })
	b.Stop()
	stoppedAt := len(results(d.url))
	stopTime := time.Now()
	drop(ins[third : 2*third])
	screen := func(url string) intake.ScreenState {
		var s intake.ScreenState
		getJSON(t, url+"/v1/screen", &s)
		return s
	}
	// The screen shows the lost broker and the growing backlog.
	waitUntil(t, 30*time.Second, "the screen showing the broker disconnected", func() bool {
		return screen(d.url).Broker == intake.BrokerDisconnected
	})
	time.Sleep(3*time.Second - time.Since(stopTime))
	if s := screen(d.url); s.Outbox == 0 && len(results(d.url)) > stoppedAt {
		t.Errorf("results committed during the outage but the screen shows no backlog: %+v", s)
	}
	b.Start()
	t.Logf("broker stopped for 3 s with %d of %d results committed; %d committed when it came back", stoppedAt, len(ins), len(results(d.url)))

	// kill -9 mid-batch: as soon as the first result of the last part is committed.
	waitUntil(t, 60*time.Second, "the first two parts scored", func() bool { return len(results(d.url)) >= 2*third })
	drop(ins[2*third:])
	var killedAt int
	waitUntil(t, 60*time.Second, "a result of the last part", func() bool {
		killedAt = len(results(d.url))
		return killedAt > 2*third
	})
	if killedAt >= len(ins) {
		t.Fatalf("the batch finished before the kill (%d results): the machine is faster than this test assumes", killedAt)
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	t.Logf("daemon killed with SIGKILL with %d of %d results committed", killedAt, len(ins))

	d2 := startDaemon(t, env)
	waitUntil(t, 120*time.Second, "every file in done/", func() bool {
		for _, in := range ins {
			if _, err := os.Stat(filepath.Join(inbox, "done", in.name)); err != nil {
				return false
			}
		}
		return true
	})
	waitUntil(t, 60*time.Second, "every result at the subscriber", func() bool {
		_, distinct, _ := sub.counts()
		return distinct >= len(ins)
	})
	waitUntil(t, 30*time.Second, "an empty outbox and the broker connected on the screen", func() bool {
		s := screen(d2.url)
		return s.Outbox == 0 && s.Pending == 0 && s.Broker == intake.BrokerConnected
	})

	// Committed exactly once each, matching the one-shot scorer.
	rs := results(d2.url)
	scoredLines := strings.Count(d.logText(), "msg=scored ") + strings.Count(d2.logText(), "msg=scored ")
	d2.stop(t)
	if !strings.Contains(d2.logText(), "msg=stopped") {
		t.Errorf("second daemon did not stop cleanly")
	}
	// The result ids are the store's keyed hashes: ask the closed store which id each input got.
	st, err := store.Open(filepath.Join(state, "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]telemetry.Result{}
	for i := range ins {
		ins[i].id = st.ID(ins[i].data)
		want[ins[i].id] = wantByName[ins[i].name]
	}
	st.Close()
	committed := map[string]int{}
	for _, r := range rs {
		committed[r.ID]++
	}
	if len(rs) != len(ins) || len(committed) != len(ins) {
		t.Errorf("store: %d results for %d distinct ids, want %d each", len(rs), len(committed), len(ins))
	}
	sub.mu.Lock()
	for _, in := range ins {
		w := want[in.id]
		got := sub.byID[in.id]
		if committed[in.id] != 1 {
			t.Errorf("%s committed %d times", in.name, committed[in.id])
		}
		if len(got) == 0 {
			t.Errorf("%s: never received", in.name)
			continue
		}
		for _, g := range got {
			if g.Score != w.Score || g.Label != w.Label || g.Threshold != w.Threshold || g.Image != w.Image || g.Model != w.Model {
				t.Errorf("%s: received %s %v (%+v), cxr-edge score gave %s %v (%+v)", in.name, g.Label, g.Score, g.Image, w.Label, w.Score, w.Image)
			}
		}
	}
	var extra []string
	for id := range sub.byID {
		if _, ok := want[id]; !ok {
			extra = append(extra, id)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 || len(sub.bad) > 0 {
		t.Errorf("received results of no input sent: %v; malformed payloads: %q", extra, sub.bad)
	}
	sub.mu.Unlock()
	left, _ := os.ReadDir(inbox)
	for _, e := range left {
		if e.Type().IsRegular() {
			t.Errorf("left in the inbox: %s", e.Name())
		}
	}
	received, distinct, dups := sub.counts()
	t.Logf("sent %d inputs; received %d result messages, %d distinct, %d duplicates; store holds %d results; "+
		"%d inferences logged across both runs (an image in progress at the kill is scored again, committed once)",
		len(ins), received, distinct, dups, len(rs), scoredLines)
}

// logText is what the daemon logged so far (read under the writer's lock: the daemon may
// still be writing).
func (d *daemonProc) logText() string {
	w := d.cmd.Stderr.(*lockedWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return d.stderr.String()
}
