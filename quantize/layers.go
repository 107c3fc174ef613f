package quantize

import (
	"math"
	"math/rand/v2"
)

// The float32 training layers. Activations are batches of CHW images ([n][c][h][w], row-major),
// the layout im2col wants; the exporter transposes weights to TFLite's OHWI/NHWC.
//
// Each layer caches what its backward pass needs from the last forward pass, so a layer value
// belongs to one goroutine. Training runs one replica of the network per shard of the batch:
// replicas share the weights (read-only during a step) and own their gradients.

// tensor is a batch of n CHW images.
type tensor struct {
	n, c, h, w int
	d          []float32
}

func newTensor(n, c, h, w int) *tensor {
	return &tensor{n: n, c: c, h: h, w: w, d: make([]float32, n*c*h*w)}
}

// per is the number of values in one image of the batch.
func (t *tensor) per() int { return t.c * t.h * t.w }

// param is a weight array and, in a replica, its gradient. Non-trainable parameters (batch
// norm running statistics) have no gradient.
type param struct {
	name string
	w, g []float32
	// decay marks weights subject to weight decay (not biases or batch norm parameters).
	decay bool
}

type layer interface {
	forward(x *tensor, train bool) *tensor
	backward(dy *tensor) *tensor
	params() []*param
	// replica returns a layer sharing this layer's weights with its own gradients and caches.
	replica() layer
}

func newParam(name string, n int, decay bool) *param {
	return &param{name: name, w: make([]float32, n), g: make([]float32, n), decay: decay}
}

func (p *param) replica() *param {
	q := &param{name: p.name, w: p.w, decay: p.decay}
	if p.g != nil {
		q.g = make([]float32, len(p.w))
	}
	return q
}

// samePad returns TFLite's SAME padding: output ceil(in/stride), the extra row or column of
// padding going after (bottom/right), so the exported model computes the same values.
func samePad(in, k, stride int) (out, before int) {
	out = (in + stride - 1) / stride
	total := max((out-1)*stride+k-in, 0)
	return out, total / 2
}

// conv2d is a k×k convolution with SAME padding and no bias (batch norm follows it; the
// exporter folds both into one biased convolution).
type conv2d struct {
	cin, cout, k, stride int
	wt                   *param // [cout][cin][k][k]
	in                   *tensor
	col                  []float32 // [cin·k·k][n·oh·ow] of the last forward pass
	oh, ow, pt, pl       int
	// noInputGrad skips the input gradient of the first layer, which nothing uses.
	noInputGrad bool
}

func newConv2d(name string, cin, cout, k, stride int, rng *rand.Rand) *conv2d {
	c := &conv2d{cin: cin, cout: cout, k: k, stride: stride, wt: newParam(name+".w", cout*cin*k*k, true)}
	heInit(c.wt.w, cin*k*k, rng)
	return c
}

// heInit draws He-normal weights for a ReLU network.
func heInit(w []float32, fanIn int, rng *rand.Rand) {
	std := math.Sqrt(2 / float64(fanIn))
	for i := range w {
		w[i] = float32(rng.NormFloat64() * std)
	}
}

func (c *conv2d) params() []*param { return []*param{c.wt} }
func (c *conv2d) replica() layer {
	r := *c
	r.wt = c.wt.replica()
	r.in, r.col = nil, nil
	return &r
}

func (c *conv2d) im2col(x []float32, h, w int, col []float32) {
	n := c.oh * c.ow
	for ci := 0; ci < c.cin; ci++ {
		plane := x[ci*h*w : (ci+1)*h*w]
		for ky := 0; ky < c.k; ky++ {
			for kx := 0; kx < c.k; kx++ {
				row := col[((ci*c.k+ky)*c.k+kx)*n:][:n]
				i := 0
				for oy := 0; oy < c.oh; oy++ {
					iy := oy*c.stride + ky - c.pt
					if iy < 0 || iy >= h {
						clear(row[i : i+c.ow])
						i += c.ow
						continue
					}
					src := plane[iy*w : iy*w+w]
					for ox := 0; ox < c.ow; ox++ {
						ix := ox*c.stride + kx - c.pl
						if ix < 0 || ix >= w {
							row[i] = 0
						} else {
							row[i] = src[ix]
						}
						i++
					}
				}
			}
		}
	}
}

func (c *conv2d) col2im(col []float32, h, w int, dx []float32) {
	n := c.oh * c.ow
	for ci := 0; ci < c.cin; ci++ {
		plane := dx[ci*h*w : (ci+1)*h*w]
		for ky := 0; ky < c.k; ky++ {
			for kx := 0; kx < c.k; kx++ {
				row := col[((ci*c.k+ky)*c.k+kx)*n:][:n]
				i := 0
				for oy := 0; oy < c.oh; oy++ {
					iy := oy*c.stride + ky - c.pt
					if iy < 0 || iy >= h {
						i += c.ow
						continue
					}
					dst := plane[iy*w : iy*w+w]
					for ox := 0; ox < c.ow; ox++ {
						ix := ox*c.stride + kx - c.pl
						if ix >= 0 && ix < w {
							dst[ix] += row[i]
						}
						i++
					}
				}
			}
		}
	}
}

// forward lowers the whole batch to one matrix product: col [cin·k·k][n·oh·ow] (images side by
// side) times the weights gives [cout][n·oh·ow], which is then reordered to [n][cout][oh·ow].
// One large product keeps the GEMM efficient on the small deep feature maps.
func (c *conv2d) forward(x *tensor, train bool) *tensor {
	c.oh, c.pt = samePad(x.h, c.k, c.stride)
	c.ow, c.pl = samePad(x.w, c.k, c.stride)
	kk, hw := c.cin*c.k*c.k, c.oh*c.ow
	nhw := x.n * hw
	if len(c.col) != kk*nhw {
		c.col = make([]float32, kk*nhw)
	}
	per := make([]float32, kk*hw)
	for i := 0; i < x.n; i++ {
		c.im2col(x.d[i*x.per():(i+1)*x.per()], x.h, x.w, per)
		for r := 0; r < kk; r++ {
			copy(c.col[r*nhw+i*hw:r*nhw+(i+1)*hw], per[r*hw:(r+1)*hw])
		}
	}
	out := make([]float32, c.cout*nhw)
	sgemm(false, false, c.cout, nhw, kk, 1, c.wt.w, c.col, 0, out)
	y := newTensor(x.n, c.cout, c.oh, c.ow)
	for o := 0; o < c.cout; o++ {
		for i := 0; i < x.n; i++ {
			copy(y.d[(i*c.cout+o)*hw:(i*c.cout+o+1)*hw], out[o*nhw+i*hw:o*nhw+(i+1)*hw])
		}
	}
	c.in = x
	return y
}

func (c *conv2d) backward(dy *tensor) *tensor {
	x := c.in
	kk, hw := c.cin*c.k*c.k, c.oh*c.ow
	nhw := x.n * hw
	g := make([]float32, c.cout*nhw)
	for o := 0; o < c.cout; o++ {
		for i := 0; i < x.n; i++ {
			copy(g[o*nhw+i*hw:o*nhw+(i+1)*hw], dy.d[(i*c.cout+o)*hw:(i*c.cout+o+1)*hw])
		}
	}
	sgemm(false, true, c.cout, kk, nhw, 1, g, c.col, 1, c.wt.g)
	dx := newTensor(x.n, x.c, x.h, x.w)
	if c.noInputGrad {
		return dx
	}
	dcol := make([]float32, kk*nhw)
	sgemm(true, false, kk, nhw, c.cout, 1, c.wt.w, g, 0, dcol)
	per := make([]float32, kk*hw)
	for i := 0; i < x.n; i++ {
		for r := 0; r < kk; r++ {
			copy(per[r*hw:(r+1)*hw], dcol[r*nhw+i*hw:r*nhw+(i+1)*hw])
		}
		c.col2im(per, x.h, x.w, dx.d[i*x.per():(i+1)*x.per()])
	}
	return dx
}

// depthwise is a k×k depthwise convolution (one filter per channel), SAME padding, no bias.
type depthwise struct {
	ch, k, stride  int
	wt             *param // [ch][k][k]
	in             *tensor
	oh, ow, pt, pl int
}

func newDepthwise(name string, ch, k, stride int, rng *rand.Rand) *depthwise {
	d := &depthwise{ch: ch, k: k, stride: stride, wt: newParam(name+".w", ch*k*k, true)}
	heInit(d.wt.w, k*k, rng)
	return d
}

func (d *depthwise) params() []*param { return []*param{d.wt} }
func (d *depthwise) replica() layer {
	r := *d
	r.wt = d.wt.replica()
	r.in = nil
	return &r
}

// visit calls f(outIndex, inIndex, weightIndex) for every valid tap of image i.
func (d *depthwise) visit(x *tensor, i int, f func(o, in, w int)) {
	for c := 0; c < d.ch; c++ {
		ib := (i*x.c + c) * x.h * x.w
		ob := (i*x.c + c) * d.oh * d.ow
		for oy := 0; oy < d.oh; oy++ {
			for ox := 0; ox < d.ow; ox++ {
				o := ob + oy*d.ow + ox
				for ky := 0; ky < d.k; ky++ {
					iy := oy*d.stride + ky - d.pt
					if iy < 0 || iy >= x.h {
						continue
					}
					for kx := 0; kx < d.k; kx++ {
						ix := ox*d.stride + kx - d.pl
						if ix < 0 || ix >= x.w {
							continue
						}
						f(o, ib+iy*x.w+ix, (c*d.k+ky)*d.k+kx)
					}
				}
			}
		}
	}
}

func (d *depthwise) forward(x *tensor, train bool) *tensor {
	d.oh, d.pt = samePad(x.h, d.k, d.stride)
	d.ow, d.pl = samePad(x.w, d.k, d.stride)
	y := newTensor(x.n, x.c, d.oh, d.ow)
	w := d.wt.w
	for i := 0; i < x.n; i++ {
		d.visit(x, i, func(o, in, k int) { y.d[o] += x.d[in] * w[k] })
	}
	d.in = x
	return y
}

func (d *depthwise) backward(dy *tensor) *tensor {
	x := d.in
	dx := newTensor(x.n, x.c, x.h, x.w)
	w, g := d.wt.w, d.wt.g
	for i := 0; i < x.n; i++ {
		d.visit(x, i, func(o, in, k int) {
			g[k] += dy.d[o] * x.d[in]
			dx.d[in] += dy.d[o] * w[k]
		})
	}
	return dx
}

// batchNorm normalises each channel over the batch and the image (training) or with running
// statistics (inference), then scales and shifts.
type batchNorm struct {
	ch             int
	gamma, beta    *param
	mean, vari     *param // running statistics, not trained
	momentum, eps  float32
	xhat           []float32
	invStd         []float32
	batchMean, bv  []float32 // statistics of the last training batch
	n, spatial     int
	lastWasTrained bool
}

func newBatchNorm(name string, ch int) *batchNorm {
	b := &batchNorm{ch: ch, momentum: 0.1, eps: 1e-3,
		gamma: newParam(name+".gamma", ch, false), beta: newParam(name+".beta", ch, false),
		mean: &param{name: name + ".mean", w: make([]float32, ch)},
		vari: &param{name: name + ".var", w: make([]float32, ch)}}
	for i := range ch {
		b.gamma.w[i] = 1
		b.vari.w[i] = 1
	}
	return b
}

func (b *batchNorm) params() []*param { return []*param{b.gamma, b.beta, b.mean, b.vari} }
func (b *batchNorm) replica() layer {
	r := *b
	r.gamma, r.beta, r.mean, r.vari = b.gamma.replica(), b.beta.replica(), b.mean.replica(), b.vari.replica()
	r.xhat, r.invStd, r.batchMean, r.bv = nil, nil, nil, nil
	return &r
}

func (b *batchNorm) forward(x *tensor, train bool) *tensor {
	y := newTensor(x.n, x.c, x.h, x.w)
	hw := x.h * x.w
	b.n, b.spatial, b.lastWasTrained = x.n, hw, train
	if !train {
		for c := 0; c < b.ch; c++ {
			s := b.gamma.w[c] / float32(math.Sqrt(float64(b.vari.w[c]+b.eps)))
			t := b.beta.w[c] - s*b.mean.w[c]
			for i := 0; i < x.n; i++ {
				off := (i*x.c + c) * hw
				for j, v := range x.d[off : off+hw] {
					y.d[off+j] = s*v + t
				}
			}
		}
		return y
	}
	b.xhat = make([]float32, len(x.d))
	b.invStd = make([]float32, b.ch)
	b.batchMean = make([]float32, b.ch)
	b.bv = make([]float32, b.ch)
	cnt := float64(x.n * hw)
	for c := 0; c < b.ch; c++ {
		var s, ss float64
		for i := 0; i < x.n; i++ {
			off := (i*x.c + c) * hw
			for _, v := range x.d[off : off+hw] {
				s += float64(v)
				ss += float64(v) * float64(v)
			}
		}
		mean := s / cnt
		vari := max(ss/cnt-mean*mean, 0)
		inv := 1 / math.Sqrt(vari+float64(b.eps))
		b.batchMean[c], b.bv[c], b.invStd[c] = float32(mean), float32(vari), float32(inv)
		g, bt := b.gamma.w[c], b.beta.w[c]
		for i := 0; i < x.n; i++ {
			off := (i*x.c + c) * hw
			for j, v := range x.d[off : off+hw] {
				xh := (v - float32(mean)) * float32(inv)
				b.xhat[off+j] = xh
				y.d[off+j] = g*xh + bt
			}
		}
	}
	return y
}

func (b *batchNorm) backward(dy *tensor) *tensor {
	dx := newTensor(dy.n, dy.c, dy.h, dy.w)
	hw := b.spatial
	cnt := float32(b.n * hw)
	for c := 0; c < b.ch; c++ {
		var sdy, sdyx float64
		for i := 0; i < dy.n; i++ {
			off := (i*dy.c + c) * hw
			for j, g := range dy.d[off : off+hw] {
				sdy += float64(g)
				sdyx += float64(g) * float64(b.xhat[off+j])
			}
		}
		b.gamma.g[c] += float32(sdyx)
		b.beta.g[c] += float32(sdy)
		k := b.gamma.w[c] * b.invStd[c] / cnt
		m1, m2 := float32(sdy), float32(sdyx)
		for i := 0; i < dy.n; i++ {
			off := (i*dy.c + c) * hw
			for j, g := range dy.d[off : off+hw] {
				dx.d[off+j] = k * (cnt*g - m1 - b.xhat[off+j]*m2)
			}
		}
	}
	return dx
}

// relu is max(x, 0), or min(max(x, 0), 6) when six is set (TFLite's fused RELU / RELU6).
type relu struct {
	six bool
	in  *tensor
}

func (r *relu) params() []*param { return nil }
func (r *relu) replica() layer   { return &relu{six: r.six} }
func (r *relu) forward(x *tensor, train bool) *tensor {
	y := newTensor(x.n, x.c, x.h, x.w)
	for i, v := range x.d {
		v = max(v, 0)
		if r.six {
			v = min(v, 6)
		}
		y.d[i] = v
	}
	r.in = x
	return y
}
func (r *relu) backward(dy *tensor) *tensor {
	dx := newTensor(dy.n, dy.c, dy.h, dy.w)
	for i, v := range r.in.d {
		if v > 0 && (!r.six || v < 6) {
			dx.d[i] = dy.d[i]
		}
	}
	return dx
}

// pool is a k×k pooling with stride k and VALID padding (TFLite AVERAGE_POOL_2D /
// MAX_POOL_2D); inputs must be multiples of k.
type pool struct {
	k      int
	isMax  bool
	in     *tensor
	argmax []int32
}

func (p *pool) params() []*param { return nil }
func (p *pool) replica() layer   { return &pool{k: p.k, isMax: p.isMax} }
func (p *pool) forward(x *tensor, train bool) *tensor {
	oh, ow := x.h/p.k, x.w/p.k
	y := newTensor(x.n, x.c, oh, ow)
	if p.isMax {
		p.argmax = make([]int32, len(y.d))
	}
	inv := 1 / float32(p.k*p.k)
	for pl := 0; pl < x.n*x.c; pl++ {
		ib, ob := pl*x.h*x.w, pl*oh*ow
		for oy := 0; oy < oh; oy++ {
			for ox := 0; ox < ow; ox++ {
				var s float32
				best, bi := float32(math.Inf(-1)), 0
				for ky := 0; ky < p.k; ky++ {
					for kx := 0; kx < p.k; kx++ {
						i := ib + (oy*p.k+ky)*x.w + ox*p.k + kx
						v := x.d[i]
						s += v
						if v > best {
							best, bi = v, i
						}
					}
				}
				o := ob + oy*ow + ox
				if p.isMax {
					y.d[o], p.argmax[o] = best, int32(bi)
				} else {
					y.d[o] = s * inv
				}
			}
		}
	}
	p.in = x
	return y
}
func (p *pool) backward(dy *tensor) *tensor {
	x := p.in
	dx := newTensor(x.n, x.c, x.h, x.w)
	if p.isMax {
		for o, g := range dy.d {
			dx.d[p.argmax[o]] += g
		}
		return dx
	}
	inv := 1 / float32(p.k*p.k)
	oh, ow := dy.h, dy.w
	for pl := 0; pl < x.n*x.c; pl++ {
		ib, ob := pl*x.h*x.w, pl*oh*ow
		for y := 0; y < oh*p.k; y++ {
			for xx := 0; xx < ow*p.k; xx++ {
				dx.d[ib+y*x.w+xx] = dy.d[ob+(y/p.k)*ow+xx/p.k] * inv
			}
		}
	}
	return dx
}

// globalAvg averages each channel over the image (TFLite MEAN over H, W): [n][c][h][w] →
// [n][c][1][1].
type globalAvg struct{ h, w int }

func (g *globalAvg) params() []*param { return nil }
func (g *globalAvg) replica() layer   { return &globalAvg{} }
func (g *globalAvg) forward(x *tensor, train bool) *tensor {
	g.h, g.w = x.h, x.w
	y := newTensor(x.n, x.c, 1, 1)
	hw := x.h * x.w
	for i := range y.d {
		var s float32
		for _, v := range x.d[i*hw : (i+1)*hw] {
			s += v
		}
		y.d[i] = s / float32(hw)
	}
	return y
}
func (g *globalAvg) backward(dy *tensor) *tensor {
	dx := newTensor(dy.n, dy.c, g.h, g.w)
	hw := g.h * g.w
	for i, v := range dy.d {
		v /= float32(hw)
		for j := range dx.d[i*hw : (i+1)*hw] {
			dx.d[i*hw+j] = v
		}
	}
	return dx
}

// dense is a fully connected layer on [n][in][1][1] (or any flattened shape).
type dense struct {
	in, out int
	wt, b   *param // wt [out][in]
	x       *tensor
}

func newDense(name string, in, out int, rng *rand.Rand) *dense {
	d := &dense{in: in, out: out, wt: newParam(name+".w", in*out, true), b: newParam(name+".b", out, false)}
	std := math.Sqrt(1 / float64(in))
	for i := range d.wt.w {
		d.wt.w[i] = float32(rng.NormFloat64() * std)
	}
	return d
}

func (d *dense) params() []*param { return []*param{d.wt, d.b} }
func (d *dense) replica() layer {
	r := *d
	r.wt, r.b, r.x = d.wt.replica(), d.b.replica(), nil
	return &r
}
func (d *dense) forward(x *tensor, train bool) *tensor {
	y := newTensor(x.n, d.out, 1, 1)
	for i := 0; i < x.n; i++ {
		copy(y.d[i*d.out:(i+1)*d.out], d.b.w)
	}
	sgemm(false, true, x.n, d.out, d.in, 1, x.d, d.wt.w, 1, y.d)
	d.x = x
	return y
}
func (d *dense) backward(dy *tensor) *tensor {
	x := d.x
	dx := newTensor(x.n, x.c, x.h, x.w)
	sgemm(true, false, d.out, d.in, x.n, 1, dy.d, x.d, 1, d.wt.g)
	for i := 0; i < dy.n; i++ {
		for j := 0; j < d.out; j++ {
			d.b.g[j] += dy.d[i*d.out+j]
		}
	}
	sgemm(false, false, x.n, d.in, d.out, 1, dy.d, d.wt.w, 0, dx.d)
	return dx
}

// dropout zeroes a fraction of activations in training (inverted dropout: survivors are scaled
// so inference is the identity). rng is set by the trainer for each step.
type dropout struct {
	rate float32
	rng  *rand.Rand
	mask []float32
}

func (d *dropout) params() []*param { return nil }
func (d *dropout) replica() layer   { return &dropout{rate: d.rate} }
func (d *dropout) forward(x *tensor, train bool) *tensor {
	if !train || d.rate == 0 || d.rng == nil {
		d.mask = nil
		return x
	}
	y := newTensor(x.n, x.c, x.h, x.w)
	d.mask = make([]float32, len(x.d))
	keep := 1 / (1 - d.rate)
	for i, v := range x.d {
		if d.rng.Float32() >= d.rate {
			d.mask[i] = keep
			y.d[i] = v * keep
		}
	}
	return y
}
func (d *dropout) backward(dy *tensor) *tensor {
	if d.mask == nil {
		return dy
	}
	dx := newTensor(dy.n, dy.c, dy.h, dy.w)
	for i, g := range dy.d {
		dx.d[i] = g * d.mask[i]
	}
	return dx
}

// sigmoidBCE returns the weighted binary cross-entropy of logits z against labels y (0/1), summed
// (the trainer divides by the batch weight), and its gradient with respect to z.
func sigmoidBCE(z, y, wt []float32, dz []float32) float64 {
	var loss float64
	for i, zi := range z {
		x := float64(zi)
		// log(1+e^x) − y·x, computed without overflow.
		l := math.Max(x, 0) - x*float64(y[i]) + math.Log1p(math.Exp(-math.Abs(x)))
		loss += float64(wt[i]) * l
		dz[i] = wt[i] * (sigmoid(zi) - y[i])
	}
	return loss
}

func sigmoid(z float32) float32 { return float32(1 / (1 + math.Exp(-float64(z)))) }
