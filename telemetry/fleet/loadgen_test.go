package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

// TestLoadGenSmall runs the load generator briefly against a real broker and an in-process
// dashboard: every published message is processed and delays are measured.
func TestLoadGenSmall(t *testing.T) {
	b := broker(t)
	r := start(t, testOptions(t, b.URL()))
	rep, err := RunLoad(context.Background(), LoadOptions{Broker: b.URL(), Devices: 20, Sites: 4, Duration: 2 * time.Second,
		HealthEvery: 500 * time.Millisecond, ResultEvery: 500 * time.Millisecond, Settle: testenv.WaitLimit, Logger: r.opts.Logger}, r.Stats)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep)
	if rep.Connected != 20 || rep.Published < 60 || rep.PublishFails != 0 {
		t.Fatalf("report %+v: want 20 devices publishing without failures", rep)
	}
	if rep.Processed != rep.Published || rep.Rejected != 0 {
		t.Errorf("dashboard processed %d of %d published (%d rejected)", rep.Processed, rep.Published, rep.Rejected)
	}
	if rep.Delay.Samples == 0 || rep.Delay.P95 <= 0 || rep.Delay.Max < rep.Delay.P95 {
		t.Errorf("delays not measured: %+v", rep.Delay)
	}
	if n := len(r.state.Devices()); n != 20 {
		t.Errorf("dashboard knows %d devices, want 20", n)
	}
}

func TestLoadOptionsValidate(t *testing.T) {
	for _, o := range []LoadOptions{
		{},
		{Broker: "tcp://x:1", Devices: 30000},
		{Broker: "tcp://x:1", Duration: time.Hour},
		{Broker: "tcp://x:1", Devices: 2, Sites: 3},
		{Broker: "tcp://x:1", HealthEvery: time.Millisecond},
	} {
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	o, err := LoadOptions{Broker: "tcp://x:1"}.withDefaults()
	if err != nil || o.Devices != 100 || o.HealthEvery != 10*time.Second || o.Duration != time.Minute {
		t.Errorf("defaults %+v %v", o, err)
	}
}
