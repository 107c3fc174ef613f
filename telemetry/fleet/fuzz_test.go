package fleet

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/telemetry"
)

// FuzzDecode: no payload or topic makes the contract check panic, and whatever it accepts
// is a well-formed message of the topic's kind.
func FuzzDecode(f *testing.F) {
	f.Add("cxr/s/d/status", []byte(`{"schema":"cxr-edge/status/v1","state":"online","ts":"2026-05-01T12:00:00Z"}`))
	f.Add("cxr/s/d/health", []byte(`{"schema":"cxr-edge/health/v1","ts":"2026-05-01T12:00:00Z","temp_c":51.5,"throttled":false}`))
	f.Add("cxr/s/d/result", []byte(`{"schema":"cxr-edge/result/v1","id":"a","label":"normal","score":0.1,"scored_at":"2026-05-01T12:00:00Z"}`))
	f.Add("cxr/s/d/cmd/x", []byte(`{}`))
	f.Add("cxr//d/health", []byte(`null`))
	f.Add("cxr/s/d/cmd/ping/reply", []byte(`{"schema":"cxr-edge/reply/v1","id":"dash-1","ok":true}`))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		// A command reply reaches only the request waiting for exactly that device, command
		// and id.
		c := &commander{waiting: map[string]chan telemetry.Reply{}}
		ch := make(chan telemetry.Reply, 1)
		c.waiting[replyKey("s", "d", "ping", "dash-1")] = ch
		isReply := c.deliver("cxr", topic, payload)
		select {
		case r := <-ch:
			if !isReply || r.ID != "dash-1" || r.Schema != telemetry.SchemaReply || topic != "cxr/s/d/cmd/ping/reply" {
				t.Fatalf("reply %+v on %q delivered to the ping dash-1 of s/d", r, topic)
			}
		default:
		}
		d, err := decode("cxr", topic, payload, 64<<10)
		if err != nil {
			if outcomeOf(err) == "error" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		switch d.kind {
		case kindStatus:
			if d.status == nil || d.status.TS.Before(minTS) {
				t.Fatalf("accepted bad status %+v", d.status)
			}
		case kindHealth:
			if d.health == nil || d.health.Queue < 0 || d.health.Outbox < 0 {
				t.Fatalf("accepted bad health %+v", d.health)
			}
		case kindResult:
			if d.result == nil || d.result.ID == "" {
				t.Fatalf("accepted bad result %+v", d.result)
			}
		default:
			t.Fatalf("accepted kind %q", d.kind)
		}
	})
}

// FuzzIngest: any sequence of payloads on a device's topics leaves the service consistent —
// the stored state equals the in-memory state and every message is counted exactly once.
func FuzzIngest(f *testing.F) {
	f.Add([]byte(`{"schema":"cxr-edge/status/v1","state":"online","ts":"2026-05-01T12:00:00Z"}`),
		[]byte(`{"schema":"cxr-edge/health/v1","ts":"2026-05-01T12:00:01Z","outbox":3}`),
		[]byte(`{"schema":"cxr-edge/result/v1","id":"a","label":"pneumonia","score":0.9,"scored_at":"2026-05-01T12:00:02Z"}`))
	f.Add([]byte(`{"schema":"cxr-edge/status/v1","state":"offline","ts":"2099-05-01T12:00:00Z"}`), []byte(`{`), []byte(`[]`))
	o := DefaultOptions()
	o.StoreDir = f.TempDir()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := New(o)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { svc.Close() })
	f.Fuzz(func(t *testing.T, status, health, result []byte) {
		before := svc.snapshotStats().Processed
		recv := time.Date(2026, 5, 1, 12, 5, 0, 0, time.UTC)
		svc.ingest(inbound{topic: "cxr/s/d/status", payload: status, recv: recv},
			inbound{topic: "cxr/s/d/health", payload: health, recv: recv, retained: true},
			inbound{topic: "cxr/s/d/result", payload: result, recv: recv})
		if got := svc.snapshotStats().Processed - before; got != 3 {
			t.Fatalf("processed %d of 3 messages", got)
		}
		stored, err := svc.store.loadDevices()
		if err != nil {
			t.Fatal(err)
		}
		svc.state.mu.RLock()
		defer svc.state.mu.RUnlock()
		for _, d := range stored {
			mem := svc.state.devices[deviceKey(d.Site, d.ID)]
			a, _ := json.Marshal(d)
			b, _ := json.Marshal(mem)
			if string(a) != string(b) {
				t.Fatalf("stored state differs from memory:\n%s\n%s", a, b)
			}
		}
	})
}

func TestOutcomeOfWrapped(t *testing.T) {
	if got := outcomeOf(errors.Join(errors.New("x"), ErrOversized)); got != "oversized" {
		t.Errorf("outcome %q", got)
	}
}
