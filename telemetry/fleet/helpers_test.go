package fleet

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// testOptions are fast-reacting options for tests: every health report is stored.
func testOptions(t *testing.T, broker string) Options {
	o := DefaultOptions()
	o.StoreDir = t.TempDir()
	o.MQTT.Broker = broker
	o.MQTT.ClientID = "dash-" + t.Name()
	o.Retention.HealthMinInterval = time.Nanosecond
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	return o
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// running is a Service whose Run loop and HTTP server live until stop or the test's end.
type running struct {
	*Service
	http *httptest.Server
	stop func()
}

func start(t *testing.T, o Options) *running {
	t.Helper()
	svc, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(done) }()
	srv := httptest.NewServer(svc.Handler())
	var once sync.Once
	r := &running{Service: svc, http: srv}
	r.stop = func() {
		once.Do(func() {
			srv.Close()
			cancel()
			<-done
			if err := svc.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(r.stop)
	if o.MQTT.Broker != "" {
		testenv.WaitFor(t, "dashboard subscribed", svc.Connected)
	}
	return r
}

// publisher is a plain MQTT client for publishing raw payloads.
func publisher(t *testing.T, broker, id string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(id).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(testenv.WaitLimit) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

func publish(t *testing.T, c mqtt.Client, topic string, retained bool, payload any) {
	t.Helper()
	var b []byte
	switch p := payload.(type) {
	case []byte:
		b = p
	case string:
		b = []byte(p)
	default:
		var err error
		if b, err = json.Marshal(p); err != nil {
			t.Fatal(err)
		}
	}
	if tok := c.Publish(topic, 1, retained, b); !tok.WaitTimeout(testenv.WaitLimit) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// device is a simulated device as real ones connect: a Last Will (retained offline) on its
// status topic, an online status on connect. Its TCP connection can be cut without a
// DISCONNECT, which makes the broker publish the will.
type device struct {
	t      *testing.T
	c      mqtt.Client
	topics telemetry.Topics
	mu     sync.Mutex
	conn   net.Conn
	model  telemetry.ModelRef
}

var testModel = telemetry.ModelRef{Name: "cxr-pneumonia", Version: "3", SHA256: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"}

func connectDevice(t *testing.T, broker, site, id string) *device {
	t.Helper()
	tp, err := telemetry.NewTopics("cxr", site, id)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{t: t, topics: tp, model: testModel}
	connectTS := time.Now().UTC()
	will, _ := json.Marshal(telemetry.Status{Schema: telemetry.SchemaStatus, State: telemetry.StateOffline, TS: connectTS, Version: "test", Model: d.model})
	co := mqtt.NewClientOptions().AddBroker(broker).SetClientID("dev-"+site+"-"+id).
		SetAutoReconnect(false).SetKeepAlive(30*time.Second).
		SetBinaryWill(tp.Status(), will, 1, true).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			conn, err := net.Dial("tcp", u.Host)
			d.mu.Lock()
			d.conn = conn
			d.mu.Unlock()
			return conn, err
		})
	d.c = mqtt.NewClient(co)
	if tok := d.c.Connect(); !tok.WaitTimeout(testenv.WaitLimit) || tok.Error() != nil {
		t.Fatalf("device %s/%s connect: %v", site, id, tok.Error())
	}
	t.Cleanup(func() { d.c.Disconnect(50) })
	publish(t, d.c, tp.Status(), true, telemetry.Status{Schema: telemetry.SchemaStatus, State: telemetry.StateOnline, TS: time.Now().UTC(), Version: "test", Model: d.model})
	return d
}

// cut closes the TCP connection under the client: no DISCONNECT, so the broker fires the will.
func (d *device) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.Close()
	}
}

func healthAt(ts time.Time, temp float64, outbox int) telemetry.Health {
	return telemetry.Health{Schema: telemetry.SchemaHealth, TS: ts.UTC(), UptimeS: 100, CPUPct: 12, MemUsed: 1 << 30, MemTotal: 4 << 30,
		DiskFree: 12 << 30, TempC: &temp, Queue: 1, Outbox: outbox, Scored: 10, InferMsP50: 150, InferMsP95: 210, Indicator: "green"}
}

func (d *device) health(ts time.Time, temp float64, outbox int) {
	publish(d.t, d.c, d.topics.Health(), true, healthAt(ts, temp, outbox))
}

func resultMsg(id, label string, score float64, ts time.Time) telemetry.Result {
	return telemetry.Result{Schema: telemetry.SchemaResult, ID: id, ReceivedAt: ts.Add(-time.Second).UTC(), ScoredAt: ts.UTC(),
		Source: "folder", Study: "k:3f9a", Label: label, Score: score, Threshold: 0.42, Model: testModel,
		TimingsMs: telemetry.Timings{Decode: 30, Preprocess: 10, Infer: 180, Total: 220}, Image: telemetry.ImageInfo{Format: "jpeg", Width: 2048, Height: 2048}}
}

func (d *device) result(id, label string, score float64) {
	publish(d.t, d.c, d.topics.Result(), false, resultMsg(id, label, score, time.Now()))
}

// count returns the number of messages with the given "kind/outcome".
func (r *running) count(key string) uint64 { return r.snapshotStats().Messages[key] }

// broker starts a real Mosquitto for the test.
func broker(t *testing.T) *testenv.Broker { return testenv.Mosquitto(t, testenv.BrokerOptions{}) }
