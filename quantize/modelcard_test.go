package quantize

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/testenv"
)

// committedModel is the int8 model the device embeds, relative to the repository root.
const committedModel = "edge/device/model/cxr-pneumonia-int8.tflite"

// modelCardMetrics is the eval output the model card (MODEL.md) quotes.
const modelCardMetrics = "quantize/model-card/metrics.json"

// guardTolerance: the guard allows this much below the recorded AUC and accuracy (the
// computation is deterministic, so only a changed model, engine or preprocessing moves it).
const guardTolerance = 0.005

// TestCommittedModelMatchesCard is the regression guard of the shipped model: it evaluates the
// committed int8 model on the full 624-image test split, through the device's preprocessing
// and engine, and requires AUC and accuracy at least those recorded in the model card, and
// every one of the bars (AUC, accuracy, sensitivity) that the card records as met to
// stay met. Bars the card records as missed are logged (see MODEL.md).
func TestCommittedModelMatchesCard(t *testing.T) {
	root := testenv.RepoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, modelCardMetrics))
	if err != nil {
		t.Fatal(err)
	}
	var card EvalReport
	if err := json.Unmarshal(raw, &card); err != nil {
		t.Fatalf("%s: %v", modelCardMetrics, err)
	}
	model, err := os.ReadFile(filepath.Join(root, committedModel))
	if err != nil {
		t.Fatal(err)
	}
	data := testenv.SharedPath(t, "data", "chest_xray")
	samples, err := ListSplit(data, "test")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := EvaluateTFLite(context.Background(), committedModel, model, samples, EvalOptions{Bootstrap: -1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Images != 624 || rep.Positives != 390 {
		t.Fatalf("test split has %d images (%d pneumonia), want the official 624 (390)", rep.Images, rep.Positives)
	}
	if rep.ModelSHA256 != card.ModelSHA256 {
		t.Errorf("committed model sha256 %s, the model card describes %s: re-run cxr-quantize eval --out quantize/model-card and update MODEL.md",
			rep.ModelSHA256, card.ModelSHA256)
	}
	got, want := rep.Int8, card.Int8
	if got.AUC.Value < want.AUC.Value-guardTolerance {
		t.Errorf("test AUC %.4f, model card records %.4f", got.AUC.Value, want.AUC.Value)
	}
	if got.Accuracy.Value < want.Accuracy.Value-guardTolerance {
		t.Errorf("test accuracy %.4f, model card records %.4f", got.Accuracy.Value, want.Accuracy.Value)
	}
	if got.Threshold != want.Threshold {
		t.Errorf("operating threshold %v, model card records %v", got.Threshold, want.Threshold)
	}
	t.Logf("committed model on the test split: AUC %.4f (bar %.2f), accuracy %.4f (bar %.2f), sensitivity %.4f, specificity %.4f at %.4g",
		got.AUC.Value, BarAUC, got.Accuracy.Value, BarAccuracy, got.Sensitivity.Value, got.Specificity.Value, got.Threshold)
	bars := []struct {
		name           string
		bar, got, card float64
	}{
		{"AUC", BarAUC, got.AUC.Value, want.AUC.Value},
		{"accuracy", BarAccuracy, got.Accuracy.Value, want.Accuracy.Value},
		{"sensitivity", BarSensitivity, got.Sensitivity.Value, want.Sensitivity.Value},
	}
	for _, b := range bars {
		switch {
		case b.card >= b.bar && b.got < b.bar:
			t.Errorf("test %s %.4f is below the bar %.2f that the model card records as met", b.name, b.got, b.bar)
		case b.got < b.bar:
			t.Logf("bar NOT met (as the model card records): %s %.4f < %.2f", b.name, b.got, b.bar)
		default:
			t.Logf("bar met: %s %.4f ≥ %.2f", b.name, b.got, b.bar)
		}
	}
}
