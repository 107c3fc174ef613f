package quantize

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/cxr-edge/cxr-edge/edge/engine"
	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/testenv"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// exportFixture returns a model with random weights whose batch norm statistics are those of
// real images (so activations have realistic ranges), and grey images of its size.
func exportFixture(t *testing.T, size int) (*Model, [][]uint8) {
	t.Helper()
	samples, err := ListSplit(testenv.SharedPath(t, "data", "chest_xray"), "val")
	if err != nil {
		t.Fatal(err)
	}
	if err := LoadGrey(context.Background(), samples, imaging.ModelInput(size), 2); err != nil {
		t.Fatal(err)
	}
	grey := make([][]uint8, len(samples))
	x := newTensor(len(samples), 1, size, size)
	for i, s := range samples {
		grey[i] = s.Grey
		toInput(s.Grey, x.d[i*size*size:(i+1)*size*size])
	}
	arch := DefaultArch(size)
	net := build(arch, rand.New(rand.NewPCG(5, 5)))
	net.forward(x, true)
	rng := rand.New(rand.NewPCG(6, 6))
	for _, l := range net.layers {
		if bn, ok := l.(*batchNorm); ok {
			copy(bn.mean.w, bn.batchMean)
			copy(bn.vari.w, bn.bv)
			for c := range bn.gamma.w {
				bn.gamma.w[c] = float32(0.5 + rng.Float64())
				bn.beta.w[c] = float32(rng.NormFloat64() * 0.3)
			}
		}
	}
	return &Model{Arch: arch, Params: snapshot(net), Threshold: 0.42, Epoch: 1}, grey
}

func TestExportInt8MatchesFloat(t *testing.T) {
	const size = 48
	m, grey := exportFixture(t, size)
	// Folding batch norm and reordering weights to OHWI must not change the float function.
	pred, err := m.NewPredictor()
	if err != nil {
		t.Fatal(err)
	}
	want, err := pred.Predict(grey)
	if err != nil {
		t.Fatal(err)
	}
	convs, hw, hb, err := m.fold()
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range grey {
		z := forwardFolded(convs, hw, hb, size, g, func(int, []float32) {})
		if d := math.Abs(float64(sigmoid(z) - want[i])); d > 1e-5 {
			t.Fatalf("image %d: folded %v, float model %v", i, sigmoid(z), want[i])
		}
	}

	tm, err := ExportInt8(m, grey, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := tflite.Write(tm)
	if err != nil {
		t.Fatal(err)
	}
	back, err := tflite.Read(data)
	if err != nil {
		t.Fatalf("written model does not read back: %v", err)
	}
	if th, ok, err := imaging.ModelThreshold(back); err != nil || !ok || th != float64(float32(0.42)) { // stored exactly, as the float32 it is
		t.Fatalf("threshold metadata %v, %v", th, ok)
	}
	if spec, err := imaging.SpecFromModel(back); err != nil || spec != m.Arch.Input() {
		t.Fatalf("input spec read back %+v, %v; want %+v", spec, err, m.Arch.Input())
	}
	// The grey-level window travels in the model too (and only when set).
	if _, ok := back.MetadataByName(imaging.WindowMetadata); ok != (m.Arch.Window > 0) {
		t.Fatalf("window metadata present %v for window %v", ok, m.Arch.Window)
	}
	wm := *m
	wm.Arch.Window = 0.01
	wtm, err := ExportInt8(&wm, grey, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if spec, err := imaging.SpecFromModel(wtm); err != nil || spec.Window != 0.01 || spec.Equalize {
		t.Fatalf("windowed model's spec %+v, %v", spec, err)
	}
	// So does equalization (and only when set).
	if _, ok := wtm.MetadataByName(imaging.EqualizeMetadata); ok {
		t.Fatal("equalize metadata in a model without equalization")
	}
	wm.Arch.Equalize = true
	etm, err := ExportInt8(&wm, grey, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if spec, err := imaging.SpecFromModel(etm); err != nil || spec != wm.Arch.Input() || !spec.Equalize {
		t.Fatalf("equalized model's spec %+v, %v; want %+v", spec, err, wm.Arch.Input())
	}
	em, err := engine.LoadBytes(data, engine.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if in := em.Inputs()[0]; in.Type != tflite.Int8 || in.Scale[0] != float32(1.0/255) || in.ZeroPoint[0] != -128 {
		t.Fatalf("input %+v", in)
	}
	ip := em.NewInterpreter()
	spec := imaging.ModelInput(size)
	got := make([]float32, len(grey))
	var sum, worst float64
	for i, g := range grey {
		imaging.Quantize(g, spec, ip.Input(0).Bytes())
		if err := ip.Invoke(context.Background()); err != nil {
			t.Fatal(err)
		}
		got[i] = ip.Output(0).Float32()[0]
		d := math.Abs(float64(got[i] - want[i]))
		sum += d
		worst = math.Max(worst, d)
	}
	t.Logf("int8 vs float probability over %d images: mean |Δ| %.4f, max %.4f", len(grey), sum/float64(len(grey)), worst)
	// Weight and activation rounding only: the head after the int8 MEAN is float32.
	if sum/float64(len(grey)) > 0.02 || worst > 0.06 {
		t.Fatalf("int8 model differs from float: mean |Δ| %.4f, max %.4f", sum/float64(len(grey)), worst)
	}

	// Google's runtime loads the file and computes the same outputs. The int8 layers are
	// bit-exact; the float32 head may differ in the last bits of its sum and of exp().
	for i := 0; i < 2; i++ { // each call starts Node: two images suffice to show agreement
		buf := make([]byte, spec.Bytes())
		imaging.Quantize(grey[i], spec, buf)
		if lq := liteRTScore(t, data, buf); math.Abs(lq-float64(got[i])) > 1e-5 {
			t.Errorf("image %d: LiteRT.js %v, engine %v", i, lq, got[i])
		}
	}
}

// A percentile below 100 narrows the convolutions' activation ranges; the head after the int8
// MEAN is float32, so confident scores keep their order instead of saturating at 255/256.
func TestExportPercentile(t *testing.T) {
	m, grey := exportFixture(t, 32)
	full, err := ExportInt8(m, grey, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clipped, err := ExportInt8(m, grey, ExportOptions{Percentile: 99})
	if err != nil {
		t.Fatal(err)
	}
	scale := func(tm *tflite.Model, name string) float32 {
		for _, tn := range tm.Subgraphs[0].Tensors {
			if tn.Name == name {
				return tn.Quantization.Scale[0]
			}
		}
		t.Fatalf("no tensor %s", name)
		return 0
	}
	for i := range m.Arch.Blocks {
		name := "block" + strconv.Itoa(i) + "/relu"
		if a, b := scale(full, name), scale(clipped, name); !(b < a) {
			t.Errorf("%s: scale %v with the 99th percentile, %v with the maximum", name, b, a)
		}
	}
	sg := full.Subgraphs[0]
	var tail []string
	for _, op := range sg.Operators[len(sg.Operators)-4:] {
		oc, err := full.OpCode(&op)
		if err != nil {
			t.Fatal(err)
		}
		tail = append(tail, oc.Builtin.String())
	}
	if got, want := strings.Join(tail, " "), "MEAN DEQUANTIZE FULLY_CONNECTED LOGISTIC"; got != want {
		t.Errorf("graph ends with %s, want %s", got, want)
	}
	if out := sg.Tensors[sg.Outputs[0]]; out.Type != tflite.Float32 {
		t.Errorf("output type %v, want float32", out.Type)
	}
}

func TestExportErrors(t *testing.T) {
	net := build(DefaultArch(16), rand.New(rand.NewPCG(1, 1)))
	m := &Model{Arch: DefaultArch(16), Params: snapshot(net)}
	if _, err := ExportInt8(m, nil, ExportOptions{}); err == nil {
		t.Fatal("export without calibration images accepted")
	}
	if _, err := ExportInt8(m, [][]uint8{make([]uint8, 10)}, ExportOptions{}); err == nil {
		t.Fatal("calibration image of the wrong size accepted")
	}
	dw := Arch{Size: 16, Blocks: []Block{{Kind: "dwsep", Out: 4, Stride: 2}}}
	m = &Model{Arch: dw, Params: snapshot(build(dw, rand.New(rand.NewPCG(1, 1))))}
	if _, err := ExportInt8(m, [][]uint8{make([]uint8, 256)}, ExportOptions{}); err == nil {
		t.Fatal("dwsep block exported though unsupported")
	}
}

// Bias correction removes the mean error int8 rounding adds: the corrected model's logits are
// closer to the float model's (on this random-weight fixture by about a third; on a trained
// member the mean logit shift fell from +1.25 to +0.07).
func TestBiasCorrection(t *testing.T) {
	m, grey := exportFixture(t, 48)
	p, err := m.NewPredictor()
	if err != nil {
		t.Fatal(err)
	}
	want, err := p.Logits(grey)
	if err != nil {
		t.Fatal(err)
	}
	bias := func(opts ExportOptions) (meanAbs, meanSigned float64) {
		tm, err := ExportInt8(m, grey, opts)
		if err != nil {
			t.Fatal(err)
		}
		data, err := tflite.Write(tm)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ScoreTFLite(context.Background(), data, grey, 2)
		if err != nil {
			t.Fatal(err)
		}
		for i, pr := range got {
			z := math.Log(float64(pr) / (1 - float64(pr)))
			meanAbs += math.Abs(z - float64(want[i]))
			meanSigned += z - float64(want[i])
		}
		return meanAbs / float64(len(got)), meanSigned / float64(len(got))
	}
	rawAbs, rawSigned := bias(ExportOptions{NoBiasCorrection: true})
	corAbs, corSigned := bias(ExportOptions{})
	t.Logf("logit error, mean |Δ| / mean Δ: without correction %.4f / %+.4f, with %.4f / %+.4f", rawAbs, rawSigned, corAbs, corSigned)
	if !(corAbs < 0.8*rawAbs) {
		t.Errorf("bias correction did not reduce the int8 logit error: %.4f/%+.4f → %.4f/%+.4f", rawAbs, rawSigned, corAbs, corSigned)
	}
}

// The stored operating point is the chosen film's score exactly: read back by the device, it
// flags every film the threshold was chosen to flag (6 rounded decimals once lifted it above
// the film that set it).
func TestSetThresholdExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tm := &tflite.Model{Buffers: []tflite.Buffer{{}}}
	for range 20000 {
		th := rng.Float32()
		if th == 0 {
			continue
		}
		SetThreshold(tm, th)
		got, ok, err := imaging.ModelThreshold(tm)
		if err != nil || !ok || got != float64(th) {
			raw, _ := tm.MetadataByName(imaging.ThresholdMetadata)
			t.Fatalf("threshold %v stored as %q, read back as %v (%v, %v)", th, raw, got, ok, err)
		}
	}
}
