package telemetry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/cxr-edge/cxr-edge/edge/store"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

var quiet = slog.New(slog.DiscardHandler)

func topics(t *testing.T) telemetry.Topics {
	t.Helper()
	tp, err := telemetry.NewTopics("", "clinic-7", "dev_1")
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// msg is one message a test subscriber received.
type msg struct {
	topic    string
	payload  []byte
	retained bool
}

// sub is a real paho subscriber recording everything it receives.
type sub struct {
	mu   sync.Mutex
	msgs []msg
	c    paho.Client
}

// subscribe connects a subscriber. persistent gives it a non-clean session so QoS 1
// messages sent while it is disconnected (broker restart) are kept for it.
func subscribe(t *testing.T, broker, clientID string, persistent bool, filters ...string) *sub {
	t.Helper()
	s := &sub{}
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(clientID).SetCleanSession(!persistent).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).SetOrderMatters(true)
	f := map[string]byte{}
	for _, x := range filters {
		f[x] = 1
	}
	subscribed := make(chan struct{})
	var once sync.Once
	o.SetOnConnectHandler(func(c paho.Client) {
		tok := c.SubscribeMultiple(f, func(_ paho.Client, m paho.Message) {
			s.mu.Lock()
			s.msgs = append(s.msgs, msg{m.Topic(), append([]byte(nil), m.Payload()...), m.Retained()})
			s.mu.Unlock()
		})
		if tok.Wait() && tok.Error() == nil {
			once.Do(func() { close(subscribed) })
		}
	})
	s.c = paho.NewClient(o)
	if tok := s.c.Connect(); !tok.WaitTimeout(testenv.WaitLimit) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	// The subscription is made in the connect handler, after Connect's token completed:
	// wait for its SUBACK, or messages published right away would not reach this subscriber.
	select {
	case <-subscribed:
	case <-time.After(testenv.WaitLimit):
		s.c.Disconnect(0)
		t.Fatalf("subscriber %s: no SUBACK for %v", clientID, filters)
	}
	t.Cleanup(func() { s.c.Disconnect(100) })
	return s
}

func (s *sub) all(topic string) []msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []msg
	for _, m := range s.msgs {
		if topic == "" || m.topic == topic {
			out = append(out, m)
		}
	}
	return out
}

func status(t *testing.T, m msg) telemetry.Status {
	t.Helper()
	var s telemetry.Status
	if err := json.Unmarshal(m.payload, &s); err != nil || s.Schema != telemetry.SchemaStatus {
		t.Fatalf("status payload %s: %v", m.payload, err)
	}
	return s
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// addResults submits and commits n distinct inputs, returning their ids in commit order.
func addResults(t *testing.T, s *store.Store, n int, tag string) []string {
	t.Helper()
	var ids []string
	for i := range n {
		in, _, err := s.Submit("folder", "DOE^JANE.dcm", []byte(fmt.Sprintf("%s image %d", tag, i)), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		r := telemetry.Result{ID: in.ID, ReceivedAt: in.ReceivedAt, ScoredAt: time.Now(), Source: "folder",
			Study: "k:3f2a", Label: telemetry.LabelNormal, Score: 0.2, Threshold: 0.5,
			Model: telemetry.ModelRef{Name: "cxr", Version: "1", SHA256: "00"}, Image: telemetry.ImageInfo{Format: "png", Width: 8, Height: 8}}
		if _, err := s.Commit(r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.ID)
	}
	return ids
}

type fixedHealth struct{ calls atomic.Int64 }

func (h *fixedHealth) Health(context.Context) (telemetry.Health, error) {
	n := h.calls.Add(1)
	return telemetry.Health{UptimeS: float64(n), Queue: 1, Outbox: 2, Indicator: "ready"}, nil
}

// run starts a publisher and returns a stop function that cancels it and waits for Run.
func run(t *testing.T, opts telemetry.PublisherOptions, ob telemetry.Outbox, h telemetry.HealthSource, cmds telemetry.CommandHandler) (*telemetry.Publisher, func()) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	p, err := telemetry.NewPublisher(opts, ob, h, cmds)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(testenv.WaitLimit):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return p, stop
}

func TestPublisherStatusWillAndShutdown(t *testing.T) {
	b := testenv.Mosquitto(t, testenv.BrokerOptions{})
	tp := topics(t)
	s := subscribe(t, b.URL(), "watch-status", false, tp.Status())
	cut := &testenv.NetCutter{}
	model := telemetry.ModelRef{Name: "cxr", Version: "3", SHA256: "ab12"}
	p, stop := run(t, telemetry.PublisherOptions{Broker: b.URL(), Topics: tp, Version: "1.2.3", Model: model, Dial: cut.Dial},
		openStore(t), nil, nil)

	testenv.WaitFor(t, "online status", func() bool { return len(s.all(tp.Status())) >= 1 })
	first := status(t, s.all(tp.Status())[0])
	if first.State != telemetry.StateOnline || first.Version != "1.2.3" || first.Model != model {
		t.Fatalf("first status %+v", first)
	}
	// Cut the TCP connection: the broker sends the Last Will (offline), the publisher
	// reconnects and says online again.
	cut.CutAll()
	testenv.WaitFor(t, "will then online", func() bool { return len(s.all(tp.Status())) >= 3 })
	got := s.all(tp.Status())
	if st := status(t, got[1]); st.State != telemetry.StateOffline || st.Model != model {
		t.Fatalf("after cut want the offline will, got %+v", st)
	}
	if st := status(t, got[2]); st.State != telemetry.StateOnline {
		t.Fatalf("after reconnect want online, got %+v", st)
	}
	if c := p.Stats().Connects; c != 2 {
		t.Fatalf("connects = %d, want 2", c)
	}
	// Graceful stop: offline, retained — a subscriber arriving later sees it.
	stop()
	late := subscribe(t, b.URL(), "late", false, tp.Status())
	testenv.WaitFor(t, "retained offline", func() bool { return len(late.all(tp.Status())) == 1 })
	m := late.all(tp.Status())[0]
	if st := status(t, m); !m.retained || st.State != telemetry.StateOffline {
		t.Fatalf("retained status after stop: retained=%v %+v", m.retained, st)
	}
}

func TestPublisherHealthRetainedAtInterval(t *testing.T) {
	b := testenv.Mosquitto(t, testenv.BrokerOptions{})
	tp := topics(t)
	h := &fixedHealth{}
	s := subscribe(t, b.URL(), "watch-health", false, tp.Health())
	run(t, telemetry.PublisherOptions{Broker: b.URL(), Topics: tp, HealthInterval: 150 * time.Millisecond}, openStore(t), h, nil)
	testenv.WaitFor(t, "4 health messages", func() bool { return len(s.all(tp.Health())) >= 4 })
	fresh := map[float64]bool{}
	for _, m := range s.all(tp.Health()) {
		var hp telemetry.Health
		if err := json.Unmarshal(m.payload, &hp); err != nil || hp.Schema != telemetry.SchemaHealth || hp.TS.IsZero() {
			t.Fatalf("health payload %s: %v", m.payload, err)
		}
		fresh[hp.UptimeS] = true
	}
	if len(fresh) < 4 {
		t.Fatalf("health not read afresh at each interval: %d distinct of %d", len(fresh), len(s.all(tp.Health())))
	}
	late := subscribe(t, b.URL(), "late-health", false, tp.Health())
	testenv.WaitFor(t, "retained health", func() bool { return len(late.all(tp.Health())) >= 1 })
	if !late.all(tp.Health())[0].retained {
		t.Fatal("health is not retained")
	}
}

// TestPublisherOutage publishes 200 results while the broker is stopped for a few seconds
// mid-batch and restarted: none may be lost, order is kept, duplicates are counted.
func TestPublisherOutage(t *testing.T) {
	b := testenv.Mosquitto(t, testenv.BrokerOptions{})
	tp := topics(t)
	st := openStore(t)
	recv := subscribe(t, b.URL(), "watch-results", true, tp.Result())
	ids := addResults(t, st, 100, "a")
	p, stop := run(t, telemetry.PublisherOptions{Broker: b.URL(), Topics: tp, InFlight: 8,
		MinReconnectInterval: 50 * time.Millisecond, MaxReconnectInterval: 500 * time.Millisecond,
		PollInterval: 50 * time.Millisecond}, st, nil, nil)

	// Feed the second half while the first drains; stop the broker once ~60 are through.
	fed := make(chan []string)
	go func() {
		var more []string
		defer func() { fed <- more }() // also when addResults fails the test
		for i := range 10 {
			more = append(more, addResults(t, st, 10, fmt.Sprint("b", i))...)
			p.Notify()
			time.Sleep(30 * time.Millisecond)
		}
	}()
	testenv.WaitFor(t, "60 acked", func() bool { return p.Stats().Acked >= 60 })
	stopStart := time.Now()
	b.Stop()
	stopTook := time.Since(stopStart)
	time.Sleep(3 * time.Second)
	b.Start()
	ids = append(ids, <-fed...)

	unique := func() map[string]int {
		seen := map[string]int{}
		for _, m := range recv.all(tp.Result()) {
			var r telemetry.Result
			if err := json.Unmarshal(m.payload, &r); err == nil {
				seen[r.ID]++
			}
		}
		return seen
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(unique()) != len(ids) {
		if time.Now().After(deadline) {
			got := unique()
			var missing []int
			for i, id := range ids {
				if got[id] == 0 {
					missing = append(missing, i)
				}
			}
			sst, _ := st.Stats()
			t.Fatalf("received %d of %d results; missing indices %v; outbox %d; publisher %+v; broker stop took %v",
				len(got), len(ids), missing, sst.Outbox, p.Stats(), stopTook)
		}
		time.Sleep(20 * time.Millisecond)
	}
	testenv.WaitFor(t, "outbox empty", func() bool { s, _ := st.Stats(); return s.Outbox == 0 })
	stop()

	msgs := recv.all(tp.Result())
	dups := len(msgs) - len(ids)
	// First occurrences must come in commit order: nothing overtakes an earlier result.
	seen := map[string]bool{}
	var order []string
	for _, m := range msgs {
		var r telemetry.Result
		if err := json.Unmarshal(m.payload, &r); err != nil {
			t.Fatalf("result payload: %v", err)
		}
		if !seen[r.ID] {
			seen[r.ID] = true
			order = append(order, r.ID)
		}
	}
	for i := range ids {
		if order[i] != ids[i] {
			t.Fatalf("result %d received out of order", i)
		}
	}
	ps := p.Stats()
	if ps.Acked != uint64(len(ids)) {
		t.Errorf("acked %d, want %d", ps.Acked, len(ids))
	}
	t.Logf("outage: results=%d sent=%d (resent %d) received=%d duplicates=%d connects=%d",
		len(ids), ps.Published, ps.Resent, len(msgs), dups, ps.Connects)
	if ps.Connects < 2 {
		t.Errorf("broker outage did not cause a reconnect (connects=%d)", ps.Connects)
	}
}

type reloader struct {
	mu         sync.Mutex
	got        []telemetry.ReloadModelCommand
	thresholds []telemetry.SetThresholdCommand
	fail       error
}

func (r *reloader) SetThreshold(_ context.Context, c telemetry.SetThresholdCommand) (telemetry.OperatingPoint, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.thresholds = append(r.thresholds, c)
	if c.Threshold == nil {
		return telemetry.OperatingPoint{Threshold: 0.5, Source: telemetry.ThresholdModel}, nil
	}
	return telemetry.OperatingPoint{Threshold: *c.Threshold, Source: telemetry.ThresholdSite}, nil
}

func (r *reloader) ReloadModel(_ context.Context, c telemetry.ReloadModelCommand) (telemetry.ModelRef, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, c)
	if r.fail != nil {
		return telemetry.ModelRef{}, r.fail
	}
	return telemetry.ModelRef{Name: "cxr", Version: "4", SHA256: c.SHA256}, nil
}

func TestPublisherCommands(t *testing.T) {
	b := testenv.Mosquitto(t, testenv.BrokerOptions{})
	tp := topics(t)
	rl := &reloader{}
	s := subscribe(t, b.URL(), "operator", false, tp.CommandReply("+"), tp.Status())
	p, _ := run(t, telemetry.PublisherOptions{Broker: b.URL(), Topics: tp, Version: "9"}, openStore(t), nil, rl)
	testenv.WaitFor(t, "connected", func() bool { return p.Stats().Connected })
	sha := strings.Repeat("ab", 32)
	cases := []struct {
		cmd, payload string
		ok           bool
		errHas       string
	}{
		{"ping", `{"id":"p1"}`, true, ""},
		{"ping", ``, true, ""},
		{"reload-model", `{"id":"r1","path":"/var/lib/cxr/m.tflite","sha256":"` + sha + `"}`, true, ""},
		{"reload-model", `{"id":"r2","path":"/a","url":"http://x/m","sha256":"` + sha + `"}`, false, "exactly one of url or path"},
		{"reload-model", `{"id":"r3","path":"/a","sha256":"zz"}`, false, "64 hex"},
		{"reload-model", `{not json`, false, "not valid JSON"},
		{"set-threshold", `{"id":"t1","threshold":0.31,"model_sha256":"` + sha + `"}`, true, ""},
		{"set-threshold", `{"id":"t2","threshold":null,"model_sha256":"` + sha + `"}`, true, ""},
		{"set-threshold", `{"id":"t3","threshold":1.5,"model_sha256":"` + sha + `"}`, false, "strictly between 0 and 1"},
		{"set-threshold", `{"id":"t4","threshold":0.3}`, false, "model_sha256"},
		{"selfdestruct", `{}`, false, "unknown command"},
	}
	for i, c := range cases {
		replyTopic := tp.CommandReply(c.cmd)
		before := len(s.all(replyTopic))
		if tok := s.c.Publish(tp.Command(c.cmd), 1, false, c.payload); !tok.WaitTimeout(testenv.WaitLimit) || tok.Error() != nil {
			t.Fatalf("publish command: %v", tok.Error())
		}
		testenv.WaitFor(t, "reply to "+c.cmd, func() bool { return len(s.all(replyTopic)) > before })
		var r telemetry.Reply
		if err := json.Unmarshal(s.all(replyTopic)[before].payload, &r); err != nil || r.Schema != telemetry.SchemaReply {
			t.Fatalf("case %d reply: %v", i, err)
		}
		if r.OK != c.ok || !strings.Contains(r.Error, c.errHas) {
			t.Errorf("case %d (%s %s): reply %+v", i, c.cmd, c.payload, r)
		}
		if c.ok && strings.Contains(c.payload, `"id"`) && r.ID == "" {
			t.Errorf("case %d: id not echoed", i)
		}
	}
	rl.mu.Lock()
	if len(rl.got) != 1 || rl.got[0].Path != "/var/lib/cxr/m.tflite" {
		t.Errorf("handler calls %+v, want only the valid one", rl.got)
	}
	if th := rl.thresholds; len(th) != 2 || th[0].Threshold == nil || *th[0].Threshold != 0.31 || th[1].Threshold != nil {
		t.Errorf("set-threshold calls %+v, want the set and the clear", th)
	}
	rl.mu.Unlock()
	// A successful reload republishes status with the new model.
	testenv.WaitFor(t, "status with new model", func() bool {
		all := s.all(tp.Status())
		return len(all) > 0 && status(t, all[len(all)-1]).Model.Version == "4"
	})
}

func TestPublisherTLS(t *testing.T) {
	b := testenv.MosquittoTLS(t)
	tp := topics(t)
	// The subscriber uses the plain listener; the device only TLS with its client cert.
	s := subscribe(t, b.URL(), "watch-tls", false, tp.Status())
	p, _ := run(t, telemetry.PublisherOptions{Broker: b.TLSURL(), Topics: tp, CAFile: b.CAFile, CertFile: b.ClientCert, KeyFile: b.ClientKey},
		openStore(t), nil, nil)
	testenv.WaitFor(t, "online over TLS", func() bool { return len(s.all(tp.Status())) >= 1 && p.Stats().Connected })
	// A certificate from another CA is refused (under TLS 1.3 the client sees the broker
	// reset the connection): the publisher keeps retrying and never connects.
	tp2, _ := telemetry.NewTopics("", "clinic-7", "intruder")
	var logs testenv.LogBuffer
	bad, _ := run(t, telemetry.PublisherOptions{Broker: b.TLSURL(), Topics: tp2, CAFile: b.CAFile, CertFile: b.OtherCert, KeyFile: b.OtherKey,
		MaxReconnectInterval: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, openStore(t), nil, nil)
	testenv.WaitFor(t, "refused attempts", func() bool { return strings.Count(logs.String(), "mqtt connect failed") >= 2 })
	if st := bad.Stats(); st.Connected || st.Connects != 0 {
		t.Fatalf("connected with a certificate from an unknown CA: %+v", st)
	}
}

// memOutbox is an in-memory Outbox to feed the publisher entries the store would never
// write (extra fields, garbage).
type memOutbox struct {
	mu      sync.Mutex
	entries []telemetry.OutboxEntry
}

func (m *memOutbox) Outbox(limit int) ([]telemetry.OutboxEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]telemetry.OutboxEntry(nil), m.entries[:min(limit, len(m.entries))]...), nil
}

func (m *memOutbox) Ack(seq uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, e := range m.entries {
		if e.Seq == seq {
			m.entries = append(m.entries[:i], m.entries[i+1:]...)
		}
	}
	return nil
}

func (m *memOutbox) len() int { m.mu.Lock(); defer m.mu.Unlock(); return len(m.entries) }

// TestPublisherPrivacy: every payload the device publishes holds only contract fields;
// the original file name, patient fields smuggled into an outbox entry, and image bytes
// never leave.
func TestPublisherPrivacy(t *testing.T) {
	b := testenv.Mosquitto(t, testenv.BrokerOptions{})
	tp := topics(t)
	st := openStore(t)
	addResults(t, st, 2, "priv")
	entries, _ := st.Outbox(0)
	ob := &memOutbox{entries: entries}
	smuggled := `{"schema":"cxr-edge/result/v1","id":"x1","label":"unreadable","patient_name":"DOE^JANE","patient_id":"12345","birth_date":"19700101","pixels":"iVBORw0KGgo=","reason":"` + strings.Repeat("r", 5000) + `"}`
	ob.entries = append(ob.entries,
		telemetry.OutboxEntry{Seq: 100, ResultID: "x1", Payload: []byte(smuggled)},
		telemetry.OutboxEntry{Seq: 101, ResultID: "junk", Payload: []byte("not json")})
	s := subscribe(t, b.URL(), "privacy", false, "#")
	p, stop := run(t, telemetry.PublisherOptions{Broker: b.URL(), Topics: tp, Discovery: true, HealthInterval: 100 * time.Millisecond},
		ob, &fixedHealth{}, nil)
	testenv.WaitFor(t, "outbox drained", func() bool { return ob.len() == 0 })
	// The broker's PUBACK to the device does not mean the subscriber has the message yet.
	testenv.WaitFor(t, "3 results at the subscriber", func() bool { return len(s.all(tp.Result())) >= 3 })
	testenv.WaitFor(t, "health", func() bool { return len(s.all(tp.Health())) > 0 })
	stop()
	if p.Stats().Rejected != 1 {
		t.Errorf("rejected = %d, want the one garbage entry", p.Stats().Rejected)
	}
	allowed := map[string][]string{
		tp.Result(): {"schema", "id", "received_at", "scored_at", "source", "study", "label", "score", "threshold", "reason", "model", "timings_ms", "image"},
		tp.Status(): {"schema", "state", "ts", "version", "model"},
		tp.Health(): {"schema", "ts", "uptime_s", "cpu_pct", "load1", "mem_used", "mem_total", "disk_free", "temp_c", "throttled",
			"queue", "outbox", "scored", "failed", "infer_ms_p50", "infer_ms_p95", "indicator"},
	}
	results := 0
	for _, m := range s.all("") {
		for _, bad := range []string{"DOE", "JANE", "12345", "19700101", "iVBOR", ".dcm"} {
			if strings.Contains(string(m.payload), bad) {
				t.Errorf("%s leaks %q: %s", m.topic, bad, m.payload)
			}
		}
		keys, ok := allowed[m.topic]
		if !ok {
			continue // discovery configs carry no device data besides topics
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(m.payload, &fields); err != nil {
			t.Fatalf("%s: %v", m.topic, err)
		}
		for k := range fields {
			if !contains(keys, k) {
				t.Errorf("%s carries field %q outside contract v1", m.topic, k)
			}
		}
		if m.topic == tp.Result() {
			results++
			var r telemetry.Result
			if err := json.Unmarshal(m.payload, &r); err != nil || len(r.Reason) > telemetry.MaxReasonBytes+len("…") {
				t.Errorf("result reason of %d bytes published (limit %d): %v", len(r.Reason), telemetry.MaxReasonBytes, err)
			}
		}
	}
	if results != 3 {
		t.Errorf("published %d results, want 3 (2 stored + 1 sanitised)", results)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestPublisherDiscovery(t *testing.T) {
	b := testenv.Mosquitto(t, testenv.BrokerOptions{})
	tp := topics(t)
	p, stop := run(t, telemetry.PublisherOptions{Broker: b.URL(), Topics: tp, Discovery: true}, openStore(t), nil, nil)
	testenv.WaitFor(t, "connected", func() bool { return p.Stats().Connected })
	stop()
	s := subscribe(t, b.URL(), "ha", false, "homeassistant/#")
	testenv.WaitFor(t, "6 retained configs", func() bool { return len(s.all("")) >= 6 })
	var temp map[string]any
	for _, m := range s.all("") {
		if !m.retained {
			t.Errorf("%s not retained", m.topic)
		}
		if m.topic == "homeassistant/sensor/clinic-7_dev_1/temperature/config" {
			if err := json.Unmarshal(m.payload, &temp); err != nil {
				t.Fatal(err)
			}
		}
	}
	if temp["state_topic"] != tp.Health() || temp["value_template"] != "{{ value_json.temp_c }}" || temp["availability_topic"] != tp.Status() {
		t.Fatalf("temperature config %v", temp)
	}
}

func TestPublisherOptions(t *testing.T) {
	tp := topics(t)
	d := telemetry.PublisherOptions{Topics: tp}.WithDefaults()
	if d.KeepAlive != 30*time.Second || d.ConnectTimeout != 10*time.Second || d.MinReconnectInterval != 500*time.Millisecond ||
		d.MaxReconnectInterval != time.Minute || d.HealthInterval != time.Minute || d.InFlight != 8 ||
		d.PublishTimeout != 30*time.Second || d.PollInterval != 2*time.Second || d.DiscoveryPrefix != "homeassistant" ||
		d.ClientID != "cxr-edge-clinic-7-dev_1" || d.Logger == nil || d.Now == nil {
		t.Fatalf("defaults %+v", d)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	ob := &memOutbox{}
	cases := []struct {
		name string
		o    telemetry.PublisherOptions
		err  string
	}{
		{"ok", telemetry.PublisherOptions{Broker: "tcp://127.0.0.1:1883", Topics: tp, PasswordFile: pw, Username: "u"}, ""},
		{"no broker", telemetry.PublisherOptions{Topics: tp}, "broker URL"},
		{"bad scheme", telemetry.PublisherOptions{Broker: "http://x:1", Topics: tp}, "scheme"},
		{"bad topics", telemetry.PublisherOptions{Broker: "tcp://x:1", Topics: telemetry.Topics{Site: "a b", Device: "d"}}, "site id"},
		{"window", telemetry.PublisherOptions{Broker: "tcp://x:1", Topics: tp, InFlight: 17}, "in-flight"},
		{"discovery prefix", telemetry.PublisherOptions{Broker: "tcp://x:1", Topics: tp, Discovery: true, DiscoveryPrefix: "ha/#"}, "discovery prefix"},
		{"tls on tcp", telemetry.PublisherOptions{Broker: "tcp://x:1", Topics: tp, CAFile: notPEM}, "not TLS"},
		{"bad CA", telemetry.PublisherOptions{Broker: "ssl://x:1", Topics: tp, CAFile: notPEM}, "no PEM"},
		{"cert without key", telemetry.PublisherOptions{Broker: "ssl://x:1", Topics: tp, CertFile: notPEM}, "both"},
		{"missing password file", telemetry.PublisherOptions{Broker: "tcp://x:1", Topics: tp, PasswordFile: filepath.Join(dir, "nope")}, "password file"},
	}
	for _, c := range cases {
		_, err := telemetry.NewPublisher(c.o, ob, nil, nil)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.err)
		}
	}
	if _, err := telemetry.NewPublisher(telemetry.PublisherOptions{Broker: "tcp://x:1", Topics: tp}, nil, nil, nil); err == nil {
		t.Error("nil outbox accepted")
	}
}

// TestPublisherPasswordAuth: a broker that refuses anonymous clients accepts the device
// with its username and password file, and refuses a wrong password.
func TestPublisherPasswordAuth(t *testing.T) {
	passwd := testenv.LookPath(t, "mosquitto_passwd")
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "broker.passwd")
	if out, err := exec.Command(passwd, "-b", "-c", pwFile, "dev-1", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	b := testenv.Mosquitto(t, testenv.BrokerOptions{ExtraConfig: "allow_anonymous false\npassword_file " + pwFile})
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	os.WriteFile(good, []byte("s3cret\n"), 0o600)
	os.WriteFile(bad, []byte("guess\n"), 0o600)
	tp := topics(t)
	p, _ := run(t, telemetry.PublisherOptions{Broker: b.URL(), Topics: tp, Username: "dev-1", PasswordFile: good}, openStore(t), nil, nil)
	testenv.WaitFor(t, "authenticated connection", func() bool { return p.Stats().Connected })

	tp2, _ := telemetry.NewTopics("", "clinic-7", "dev_2")
	var logs testenv.LogBuffer
	q, _ := run(t, telemetry.PublisherOptions{Broker: b.URL(), Topics: tp2, Username: "dev-1", PasswordFile: bad,
		MaxReconnectInterval: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, openStore(t), nil, nil)
	testenv.WaitFor(t, "refused attempts", func() bool { return strings.Count(logs.String(), "mqtt connect failed") >= 2 })
	if q.Stats().Connects != 0 {
		t.Fatal("connected with a wrong password")
	}
	if !strings.Contains(logs.String(), "not Authorized") && !strings.Contains(logs.String(), "bad user name or password") {
		t.Errorf("refusal does not say why:\n%s", logs.String())
	}
}
