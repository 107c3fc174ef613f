package device

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cxr-edge/cxr-edge/edge/indicator"
	"github.com/cxr-edge/cxr-edge/edge/intake"
)

// Results drive the lights: pneumonia latches amber until acknowledged, an unreadable image
// shows red, a normal one green.
func TestPipelineDrivesIndicator(t *testing.T) {
	var out bytes.Buffer
	lt, closeFn, err := openIndicator(context.Background(), IndicatorConfig{Kind: "console"}, &out, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if lt.State() != indicator.Ready.String() {
		t.Errorf("initial state %s", lt.State())
	}
	low, high := 0.000001, 0.999999
	model := testModel(t, "person_detect_int8_qdim0_DERIVED.tflite", ModelConfig{})
	jpeg := readShared(t, "data", "fullres", "NORMAL", "NORMAL2-IM-1111-0001.jpeg")
	run := func(thr *float64, data []byte) {
		t.Helper()
		p, err := NewPipeline(PipelineOptions{Scorer: model, Indicator: lt, Threshold: thr, Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Process(context.Background(), intake.Input{Source: "test", Data: data, ReceivedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	run(&low, jpeg) // every score ≥ 0.000001: pneumonia
	if lt.State() != indicator.Pneumonia.String() {
		t.Errorf("after pneumonia: %s", lt.State())
	}
	run(&high, jpeg) // normal, but the amber stays latched until acknowledged
	if lt.State() != indicator.Pneumonia.String() {
		t.Errorf("pneumonia not latched: %s", lt.State())
	}
	lt.ind.Acknowledge()
	if lt.State() != indicator.Normal.String() {
		t.Errorf("after acknowledge: %s", lt.State())
	}
	run(&high, jpeg[:100]) // truncated: unreadable
	if lt.State() != indicator.Fault.String() {
		t.Errorf("after unreadable: %s", lt.State())
	}
	if !strings.Contains(out.String(), "pneumonia") {
		t.Errorf("console shows nothing: %q", out.String())
	}
}
