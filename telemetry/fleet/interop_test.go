package fleet

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/telemetry"
)

// memOutbox is the device outbox the publisher drains (the device keeps it in edge/store).
type memOutbox struct {
	mu      sync.Mutex
	entries []telemetry.OutboxEntry
}

func (o *memOutbox) Outbox(limit int) ([]telemetry.OutboxEntry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]telemetry.OutboxEntry(nil), o.entries[:min(limit, len(o.entries))]...), nil
}

func (o *memOutbox) Ack(seq uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, e := range o.entries {
		if e.Seq == seq {
			o.entries = append(o.entries[:i], o.entries[i+1:]...)
			break
		}
	}
	return nil
}

type fixedHealth struct{}

func (fixedHealth) Health(context.Context) (telemetry.Health, error) {
	return healthAt(time.Now(), 55, 0), nil
}

// TestDevicePublisherInterop runs the device's own telemetry.Publisher against the dashboard
// through Mosquitto: its status, health and results arrive; when its connection is cut the
// Last Will (whose ts is the connect time, older than the online status) turns it offline;
// it reconnects and is online again; a clean stop reports offline.
func TestDevicePublisherInterop(t *testing.T) {
	b := broker(t)
	r := start(t, testOptions(t, b.URL()))
	tp, _ := telemetry.NewTopics("cxr", "interop", "edge-1")
	res, _ := json.Marshal(resultMsg("dev-r1", telemetry.LabelPneumonia, 0.77, time.Now()))
	ob := &memOutbox{entries: []telemetry.OutboxEntry{{Seq: 1, ResultID: "dev-r1", Payload: res}}}
	link := &testenv.NetCutter{} // while blocked, the device cannot reach the broker
	pub, err := telemetry.NewPublisher(telemetry.PublisherOptions{
		Broker: b.URL(), Topics: tp, Version: "0.9.0", Model: testModel, HealthInterval: time.Hour,
		MinReconnectInterval: 2 * time.Second, MaxReconnectInterval: 2 * time.Second, Logger: r.opts.Logger,
		Dial: link.Dial,
	}, ob, fixedHealth{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = pub.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	dev := func() DeviceView { d, _ := r.state.Device("interop", "edge-1"); return d }
	testenv.WaitFor(t, "device online with health and its result", func() bool {
		d := dev()
		return d.State == telemetry.StateOnline && d.Health != nil && d.Results == 1
	})
	if d := dev(); d.Version != "0.9.0" || d.Model.SHA256 != testModel.SHA256 {
		t.Errorf("device %+v: version or model missing", d)
	}

	link.Block(true)
	link.CutAll() // no DISCONNECT: the broker publishes the Last Will
	testenv.WaitFor(t, "offline by Last Will", func() bool { return dev().State == telemetry.StateOffline })
	link.Block(false)
	testenv.WaitFor(t, "online again after reconnect", func() bool { return dev().State == telemetry.StateOnline })

	cancel()
	<-done
	testenv.WaitFor(t, "offline after a clean stop", func() bool { return dev().State == telemetry.StateOffline })
	if n := r.count("status/stale"); n != 0 {
		t.Errorf("%d status messages of the real publisher were judged stale", n)
	}
	if d := dev(); d.Results != 1 {
		t.Errorf("results %d, want 1 (a result resent after the reconnect is counted once)", d.Results)
	}
}
