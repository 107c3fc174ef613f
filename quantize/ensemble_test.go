package quantize

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/engine"
	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// perturbed returns a copy of m whose weights are moved by relative noise, a stand-in for a
// second independently trained member.
func perturbed(m *Model, seed uint64) *Model {
	rng := rand.New(rand.NewPCG(seed, seed))
	c := *m
	c.Params = make(map[string][]float32, len(m.Params))
	for _, k := range slices.Sorted(maps.Keys(m.Params)) { // a fixed order: the same noise every run
		w := append([]float32(nil), m.Params[k]...)
		for i := range w {
			w[i] *= float32(math.Exp(0.3 * rng.NormFloat64())) // positive: variances stay variances
		}
		c.Params[k] = w
	}
	return &c
}

// The ensemble model computes the sigmoid of the members' mean logit (EnsembleScores), in our
// engine and in LiteRT.js alike.
func TestExportEnsemble(t *testing.T) {
	const size = 32
	m1, grey := exportFixture(t, size)
	members := []*Model{m1, perturbed(m1, 7), perturbed(m1, 8)}
	want, err := EnsembleScores(members, grey)
	if err != nil {
		t.Fatal(err)
	}
	// A one-member "ensemble" is the model itself.
	one, err := EnsembleScores(members[:1], grey)
	if err != nil {
		t.Fatal(err)
	}
	p, err := m1.NewPredictor()
	if err != nil {
		t.Fatal(err)
	}
	single, err := p.Predict(grey)
	if err != nil {
		t.Fatal(err)
	}
	for i := range single {
		if math.Abs(float64(single[i]-one[i])) > 1e-6 {
			t.Fatalf("image %d: one-member ensemble %v, model %v", i, one[i], single[i])
		}
	}
	tm, err := ExportEnsemble(members, grey, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := tm.Description; !strings.Contains(d, "ensemble of 3 classifiers") || !strings.Contains(d, "epochs 1/1/1") {
		t.Errorf("description %q does not say what the model is", d)
	}
	data, err := tflite.Write(tm)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ScoreTFLite(context.Background(), data, grey, 2)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for i := range got {
		sum += math.Abs(float64(got[i] - want[i]))
	}
	if mean := sum / float64(len(got)); mean > 0.02 {
		t.Fatalf("int8 ensemble differs from the float ensemble: mean |Δ| %.4f", mean)
	}
	em, err := engine.LoadBytes(data, engine.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(em.Inputs()); n != 1 {
		t.Fatalf("%d inputs", n)
	}

	buf := make([]byte, size*size)
	imaging.Quantize(grey[0], imaging.ModelInput(size), buf)
	if lq := liteRTScore(t, data, buf); math.Abs(lq-float64(got[0])) > 1e-5 {
		t.Errorf("LiteRT.js %v, engine %v", lq, got[0])
	}
}

// liteRTScore runs a one-output model on one input tensor in LiteRT.js (Google's TFLite
// runtime) and returns its single output value.
func liteRTScore(t *testing.T, model, input []byte) float64 {
	t.Helper()
	cmd := testenv.LiteRT(t)
	dir := t.TempDir()
	mp, ip := filepath.Join(dir, "m.tflite"), filepath.Join(dir, "in.bin")
	if err := os.WriteFile(mp, model, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ip, input, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(cmd[0], append(cmd[1:], "--model", mp, "--input", ip)...).Output()
	if err != nil {
		t.Fatalf("LiteRT.js refused the model: %v", err)
	}
	var res struct {
		Outputs []struct{ Data []float64 }
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Outputs) != 1 || len(res.Outputs[0].Data) != 1 {
		t.Fatalf("LiteRT.js output %s: %v", out, err)
	}
	return res.Outputs[0].Data[0]
}

func TestExportEnsembleErrors(t *testing.T) {
	m1, grey := exportFixture(t, 16)
	other := *m1
	other.Arch.Window = 0.01
	if _, err := ExportEnsemble([]*Model{m1, &other}, grey, ExportOptions{}); !errors.Is(err, ErrExport) {
		t.Errorf("members with different windows: %v", err)
	}
	eq := *m1
	eq.Arch.Equalize = true
	if _, err := ExportEnsemble([]*Model{m1, &eq}, grey, ExportOptions{}); !errors.Is(err, ErrExport) {
		t.Errorf("members with and without equalization: %v", err)
	}
	// A diverged model (NaN weights) is refused instead of written with NaN scales.
	bad := perturbed(m1, 9)
	nan := 0
	for k, w := range bad.Params {
		if strings.HasSuffix(k, ".w") { // every convolution's and the head's weights
			w[0] = float32(math.NaN())
			nan++
		}
	}
	if nan == 0 {
		t.Fatal("no weights to spoil")
	}
	if _, err := ExportInt8(bad, grey, ExportOptions{}); !errors.Is(err, ErrExport) {
		t.Errorf("model with NaN weights: %v", err)
	}
	if _, err := ExportEnsemble(nil, grey, ExportOptions{}); !errors.Is(err, ErrExport) {
		t.Errorf("no members: %v", err)
	}
	if _, err := Ensemble(context.Background(), EnsembleConfig{Out: t.TempDir()}); !errors.Is(err, ErrExport) {
		t.Errorf("ensemble without members: %v", err)
	}
}
