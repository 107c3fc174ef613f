package quantize

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// lossOf is Σ y·r accumulated in float64: its gradient with respect to y is r.
func lossOf(y *tensor, r []float32) float64 {
	var s float64
	for i, v := range y.d {
		s += float64(v) * float64(r[i])
	}
	return s
}

// checkGrad compares the analytic gradients of a layer (input and parameters) with central
// finite differences of lossOf. mk builds the layer; it is called once and reused, forward
// being deterministic (dropout gets the same seed each time).
func checkGrad(t *testing.T, l layer, x *tensor, reset func(), eps, tol float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	reset()
	y := l.forward(x, true)
	r := make([]float32, len(y.d))
	for i := range r {
		r[i] = float32(rng.NormFloat64())
	}
	for _, p := range l.params() {
		if p.g != nil {
			clear(p.g)
		}
	}
	dy := &tensor{n: y.n, c: y.c, h: y.h, w: y.w, d: append([]float32(nil), r...)}
	dx := l.backward(dy)
	f := func() float64 { reset(); return lossOf(l.forward(x, true), r) }
	compare := func(what string, vals []float32, grad []float32) {
		t.Helper()
		var worst float64
		for i := range vals {
			old := vals[i]
			vals[i] = old + float32(eps)
			up := f()
			vals[i] = old - float32(eps)
			down := f()
			vals[i] = old
			num := (up - down) / (2 * eps)
			d := math.Abs(num-float64(grad[i])) / math.Max(1, math.Abs(num))
			worst = math.Max(worst, d)
			if d > tol {
				t.Fatalf("%s[%d]: analytic %.6g, numeric %.6g", what, i, grad[i], num)
			}
		}
		t.Logf("%s: %d values, worst relative error %.2g", what, len(vals), worst)
	}
	compare("dx", x.d, dx.d)
	for _, p := range l.params() {
		if p.g != nil {
			compare(p.name, p.w, p.g)
		}
	}
}

func randTensor(rng *rand.Rand, n, c, h, w int, awayFromZero bool) *tensor {
	t := newTensor(n, c, h, w)
	for i := range t.d {
		v := rng.NormFloat64()
		if awayFromZero && math.Abs(v) < 0.1 {
			v = math.Copysign(0.1+math.Abs(v), v)
		}
		t.d[i] = float32(v)
	}
	return t
}

func TestLayerGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Max pooling needs distinct values in each window, so a permutation is used as input.
	perm := newTensor(2, 2, 4, 4)
	for i, p := range rng.Perm(len(perm.d)) {
		perm.d[i] = float32(p) * 0.1
	}
	// ReLU6 needs inputs away from 0 and 6.
	r6 := randTensor(rng, 2, 3, 3, 3, true)
	for i := range r6.d {
		r6.d[i] *= 4
		if math.Abs(float64(r6.d[i])-6) < 0.1 {
			r6.d[i] = 5
		}
	}
	gamma := newBatchNorm("bn", 3)
	for i := range gamma.gamma.w {
		gamma.gamma.w[i] = 0.5 + float32(i)
		gamma.beta.w[i] = float32(i) - 1
	}
	drop := &dropout{rate: 0.4}
	tests := []struct {
		name  string
		l     layer
		x     *tensor
		reset func()
		eps   float64
		tol   float64
	}{
		{"conv3x3 s1", newConv2d("c", 2, 3, 3, 1, rng), randTensor(rng, 2, 2, 5, 5, false), nil, 1e-2, 2e-3},
		{"conv3x3 s2 even", newConv2d("c", 2, 3, 3, 2, rng), randTensor(rng, 2, 2, 6, 6, false), nil, 1e-2, 2e-3},
		{"conv3x3 s2 odd", newConv2d("c", 3, 2, 3, 2, rng), randTensor(rng, 1, 3, 7, 5, false), nil, 1e-2, 2e-3},
		{"conv1x1", newConv2d("c", 4, 3, 1, 1, rng), randTensor(rng, 2, 4, 3, 3, false), nil, 1e-2, 2e-3},
		{"conv5x5 s2", newConv2d("c", 1, 2, 5, 2, rng), randTensor(rng, 2, 1, 8, 8, false), nil, 1e-2, 2e-3},
		{"depthwise s1", newDepthwise("d", 3, 3, 1, rng), randTensor(rng, 2, 3, 5, 5, false), nil, 1e-2, 2e-3},
		{"depthwise s2", newDepthwise("d", 2, 3, 2, rng), randTensor(rng, 2, 2, 6, 6, false), nil, 1e-2, 2e-3},
		{"batchnorm", gamma, randTensor(rng, 3, 3, 2, 2, false), nil, 1e-2, 5e-3},
		{"relu", &relu{}, randTensor(rng, 2, 3, 3, 3, true), nil, 1e-2, 1e-3},
		{"relu6", &relu{six: true}, r6, nil, 1e-2, 1e-3},
		{"maxpool2", &pool{k: 2, isMax: true}, perm, nil, 1e-2, 1e-3},
		{"avgpool2", &pool{k: 2}, randTensor(rng, 2, 2, 4, 4, false), nil, 1e-2, 1e-3},
		{"global average", &globalAvg{}, randTensor(rng, 2, 3, 3, 2, false), nil, 1e-2, 1e-3},
		{"dense", newDense("fc", 6, 3, rng), randTensor(rng, 4, 6, 1, 1, false), nil, 1e-2, 2e-3},
		{"dropout", drop, randTensor(rng, 2, 8, 1, 1, false), func() { drop.rng = rand.New(rand.NewPCG(3, 3)) }, 1e-2, 1e-3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reset := tt.reset
			if reset == nil {
				reset = func() {}
			}
			checkGrad(t, tt.l, tt.x, reset, tt.eps, tt.tol)
		})
	}
}

func TestSigmoidBCEGradient(t *testing.T) {
	z := []float32{-30, -2, -0.3, 0, 0.7, 3, 40}
	y := []float32{0, 1, 0.3, 1, 0.8, 0, 1} // mixup blends labels
	w := []float32{1, 2, 0.5, 1, 1, 3, 1}
	dz := make([]float32, len(z))
	loss := sigmoidBCE(z, y, w, dz)
	if math.IsInf(loss, 0) || math.IsNaN(loss) {
		t.Fatalf("loss %v on extreme logits", loss)
	}
	const eps = 1e-2
	for i := range z {
		old := z[i]
		z[i] = old + eps
		up := sigmoidBCE(z, y, w, make([]float32, len(z)))
		z[i] = old - eps
		down := sigmoidBCE(z, y, w, make([]float32, len(z)))
		z[i] = old
		if num := (up - down) / (2 * eps); math.Abs(num-float64(dz[i])) > 1e-3 {
			t.Errorf("dz[%d]: analytic %v, numeric %v", i, dz[i], num)
		}
	}
}

// The padding matches TFLite's SAME (extra row/column after), which the exporter relies on.
func TestSamePad(t *testing.T) {
	for _, c := range []struct{ in, k, s, out, before int }{
		{128, 3, 2, 64, 0}, {127, 3, 2, 64, 1}, {64, 3, 1, 64, 1}, {5, 5, 2, 3, 2}, {8, 1, 1, 8, 0}, {6, 5, 2, 3, 1},
	} {
		out, before := samePad(c.in, c.k, c.s)
		if out != c.out || before != c.before {
			t.Errorf("samePad(%d,%d,%d) = %d,%d want %d,%d", c.in, c.k, c.s, out, before, c.out, c.before)
		}
	}
}

// A replica shares weights and has its own gradients.
func TestReplicaSharesWeights(t *testing.T) {
	net := build(DefaultArch(16), rand.New(rand.NewPCG(1, 1)))
	r := net.replica()
	np, rp := net.params(), r.params()
	for i := range np {
		if &np[i].w[0] != &rp[i].w[0] {
			t.Fatalf("%s: weights not shared", np[i].name)
		}
		if np[i].g != nil && &np[i].g[0] == &rp[i].g[0] {
			t.Fatalf("%s: gradients shared", np[i].name)
		}
	}
}

func BenchmarkTrainStep(b *testing.B) {
	for _, size := range []int{96, 128} {
		for name, arch := range map[string]func(int) Arch{"default": DefaultArch, "wide": WideArch} {
			b.Run(fmt.Sprint(name, size), func(b *testing.B) {
				a := arch(size)
				net := build(a, rand.New(rand.NewPCG(1, 1)))
				rng := rand.New(rand.NewPCG(2, 2))
				x := randTensor(rng, 16, 1, size, size, false)
				macs, _ := a.Cost()
				for b.Loop() {
					z := net.forward(x, true)
					dz := newTensor(z.n, 1, 1, 1)
					sigmoidBCE(z.d, make([]float32, 16), make([]float32, 16), dz.d)
					net.backward(dz)
				}
				b.ReportMetric(float64(b.N*16)/b.Elapsed().Seconds(), "img/s")
				b.ReportMetric(3*2*float64(macs)*float64(b.N*16)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(float64(macs)/1e6, "MMAC")
			})
		}
	}
}
