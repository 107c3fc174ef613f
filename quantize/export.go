package quantize

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/cxr-edge/cxr-edge/edge/imaging"
	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// Export to an int8 TFLite model: batch norm is folded into the convolutions, activation ranges
// are calibrated on float forward passes, weights are quantized symmetrically per output
// channel and activations asymmetrically per tensor, as TensorFlow's post-training integer
// quantization does. The graph is CONV_2D (fused ReLU) × blocks → MEAN → DEQUANTIZE →
// FULLY_CONNECTED → LOGISTIC (the head in float32), with the int8 input of Arch.Input
// (q = p − 128, after the optional grey-level window). An ensemble runs one such branch per
// member on the same input and ADDs their logits before the LOGISTIC.

// ErrExport: the model cannot be exported (an architecture the exporter does not handle, no
// calibration images).
var ErrExport = errors.New("quantize: cannot export")

// foldedConv is a convolution with batch norm folded in: weights OHWI, per-channel bias.
type foldedConv struct {
	cout, cin, k, stride int
	w                    []float32 // [cout][k][k][cin]
	b                    []float32
}

// apply runs the convolution (SAME padding) on x (h×h×cin, HWC) and returns its output
// (oh×oh×cout) and oh, after ReLU when relu is set.
func (cv foldedConv) apply(x []float32, h int, relu bool) ([]float32, int) {
	oh, pt := samePad(h, cv.k, cv.stride)
	c := cv.cin
	y := make([]float32, oh*oh*cv.cout)
	for oy := 0; oy < oh; oy++ {
		for ox := 0; ox < oh; ox++ {
			for o := 0; o < cv.cout; o++ {
				acc := cv.b[o]
				for ky := 0; ky < cv.k; ky++ {
					iy := oy*cv.stride + ky - pt
					if iy < 0 || iy >= h {
						continue
					}
					for kx := 0; kx < cv.k; kx++ {
						ix := ox*cv.stride + kx - pt
						if ix < 0 || ix >= h {
							continue
						}
						wr := cv.w[((o*cv.k+ky)*cv.k+kx)*c:][:c]
						xr := x[(iy*h+ix)*c:][:c]
						for ci, wv := range wr {
							acc += wv * xr[ci]
						}
					}
				}
				if relu {
					acc = max(acc, 0)
				}
				y[(oy*oh+ox)*cv.cout+o] = acc
			}
		}
	}
	return y, oh
}

// fold returns the model's convolutions with their batch norms folded, and the dense head.
func (m *Model) fold() ([]foldedConv, []float32, float32, error) {
	var convs []foldedConv
	cin := 1
	for i, b := range m.Arch.Blocks {
		if b.Kind != "conv" {
			return nil, nil, 0, fmt.Errorf("%w: block %d is %q; only conv blocks are exported so far", ErrExport, i, b.Kind)
		}
		name := fmt.Sprintf("b%d", i)
		w := m.Params[name+".conv.w"]
		gamma, beta := m.Params[name+".bn.gamma"], m.Params[name+".bn.beta"]
		mean, vari := m.Params[name+".bn.mean"], m.Params[name+".bn.var"]
		k := b.Kernel
		fc := foldedConv{cout: b.Out, cin: cin, k: k, stride: b.Stride, w: make([]float32, len(w)), b: make([]float32, b.Out)}
		const eps = 1e-3 // batchNorm.eps
		for o := 0; o < b.Out; o++ {
			s := float64(gamma[o]) / math.Sqrt(float64(vari[o])+eps)
			fc.b[o] = float32(float64(beta[o]) - float64(mean[o])*s)
			for c := 0; c < cin; c++ {
				for ky := 0; ky < k; ky++ {
					for kx := 0; kx < k; kx++ {
						fc.w[((o*k+ky)*k+kx)*cin+c] = float32(float64(w[((o*cin+c)*k+ky)*k+kx]) * s)
					}
				}
			}
		}
		convs = append(convs, fc)
		cin = b.Out
	}
	return convs, m.Params["head.w"], m.Params["head.b"][0], nil
}

// forwardFolded runs the folded float network on one image (x = p/255, HWC) and calls
// record(stage, values) after each convolution (post-ReLU), the mean and the logit.
func forwardFolded(convs []foldedConv, hw []float32, hb float32, size int, grey []uint8, record func(stage int, v []float32)) float32 {
	h, c := size, 1
	x := make([]float32, size*size)
	for i, p := range grey {
		x[i] = float32(p) / 255
	}
	for li, cv := range convs {
		y, oh := cv.apply(x, h, true)
		record(li, y)
		x, h, c = y, oh, cv.cout
	}
	mean := make([]float32, c)
	for i := 0; i < h*h; i++ {
		for ch := 0; ch < c; ch++ {
			mean[ch] += x[i*c+ch]
		}
	}
	for ch := range mean {
		mean[ch] /= float32(h * h)
	}
	record(len(convs), mean)
	logit := hb
	for ch, v := range mean {
		logit += hw[ch] * v
	}
	record(len(convs)+1, []float32{logit})
	return logit
}

// qparams returns TFLite's asymmetric int8 parameters for the range [lo, hi] (widened to hold 0).
func qparams(lo, hi float64) (float32, int64) {
	lo, hi = math.Min(lo, 0), math.Max(hi, 0)
	if hi-lo < 1e-8 {
		hi = lo + 1e-8
	}
	scale := (hi - lo) / 255
	zp := int64(math.Round(-128 - lo/scale))
	return float32(scale), min(max(zp, -128), 127)
}

// ExportOptions tune the int8 export.
type ExportOptions struct {
	// Percentile, if in (0, 100), sets each convolution's activation range to that percentile
	// of its calibration values instead of their maximum, trading rare clipped outliers for
	// finer steps everywhere else. 0 means the maximum (TensorFlow's default min/max).
	Percentile float64
	// NoBiasCorrection turns off the empirical bias correction (biasCorrected).
	NoBiasCorrection bool
}

// biasCorrectionImages bounds the calibration images bias correction runs (two float chains
// per image through every layer).
const biasCorrectionImages = 100

// biasCorrected returns convs with biases corrected for the mean error int8 rounding adds to
// each output channel. Rounding ReLU outputs (densest near zero) loses a little mass in every
// layer, and each layer sums hundreds of such inputs, so the error compounds into a shift of
// the logit: on one trained network it moved the logit by +1.25 on average, scoring every image
// higher. As in Nagel et al. 2019 ("Data-Free Quantization Through Weight Equalization and Bias
// Correction"), empirically: layer by layer, the float network and a chain with int8 weights
// and int8-rounded activations (the export's own scales) run on the calibration images, and the
// mean difference of each channel's pre-activation is added to its bias before the next layer.
func biasCorrected(convs []foldedConv, lo, hi []float64, size int, calib [][]uint8) []foldedConv {
	out := make([]foldedConv, len(convs))
	n := min(len(calib), biasCorrectionImages)
	xf, xq := make([][]float32, n), make([][]float32, n)
	for j := range n {
		xf[j] = make([]float32, size*size)
		for i, p := range calib[j] {
			xf[j][i] = float32(p) / 255 // the int8 input represents these exactly
		}
		xq[j] = xf[j]
	}
	h := size
	for li, cv := range convs {
		q := cv
		q.w = dequantizedWeights(cv)
		q.b = append([]float32(nil), cv.b...)
		yq := make([][]float32, n)
		corr := make([]float64, cv.cout)
		oh := h
		for j := range n {
			var yf []float32
			yf, oh = cv.apply(xf[j], h, false)
			yq[j], _ = q.apply(xq[j], h, false)
			for i, v := range yf {
				corr[i%cv.cout] += float64(v - yq[j][i])
			}
			for i, v := range yf {
				yf[i] = max(v, 0)
			}
			xf[j] = yf
		}
		for o := range corr {
			q.b[o] += float32(corr[o] / float64(n*oh*oh))
		}
		scale, zp := qparams(lo[li], hi[li])
		for j := range n {
			for i, v := range yq[j] {
				// The corrected pre-activation, ReLU, then the int8 output's rounding and clipping.
				v += float32(corr[i%cv.cout] / float64(n*oh*oh))
				r := math.Round(float64(max(v, 0))/float64(scale)) + float64(zp)
				yq[j][i] = float32((min(max(r, -128), 127) - float64(zp)) * float64(scale))
			}
			xq[j] = yq[j]
		}
		out[li] = foldedConv{cout: cv.cout, cin: cv.cin, k: cv.k, stride: cv.stride, w: cv.w, b: q.b}
		h = oh
	}
	return out
}

// dequantizedWeights returns cv's weights after the export's int8 rounding (symmetric per
// output channel, [-127, 127]).
func dequantizedWeights(cv foldedConv) []float32 {
	w := make([]float32, len(cv.w))
	per := cv.k * cv.k * cv.cin
	for o := 0; o < cv.cout; o++ {
		s := weightScale(cv.w[o*per : (o+1)*per])
		for j, v := range cv.w[o*per : (o+1)*per] {
			w[o*per+j] = float32(math.Max(-127, math.Min(127, math.Round(float64(v)/s))) * s)
		}
	}
	return w
}

// weightScale is the symmetric int8 scale of one output channel's weights.
func weightScale(w []float32) float64 {
	var mx float64
	for _, v := range w {
		mx = math.Max(mx, math.Abs(float64(v)))
	}
	if mx == 0 {
		return 1
	}
	return mx / 127
}

// ExportInt8 quantizes the model with activation ranges measured on calib (grey images of the
// model's size, typically a few hundred training images) and returns the TFLite model, with the
// model's threshold stored as metadata imaging.ThresholdMetadata (callers re-choose it on the int8
// model's validation scores with SetThreshold).
func ExportInt8(m *Model, calib [][]uint8, opts ExportOptions) (*tflite.Model, error) {
	return ExportEnsemble([]*Model{m}, calib, opts)
}

// ExportEnsemble writes one int8 model that runs every member on the same input and averages
// their logits (members must share input size and window; the threshold is the first member's,
// for callers to re-choose on the ensemble's validation scores). Independently trained networks
// err on different images, most of all on images unlike the training data, so their average
// ranks such images better than any one of them.
func ExportEnsemble(ms []*Model, calib [][]uint8, opts ExportOptions) (*tflite.Model, error) {
	if len(ms) == 0 {
		return nil, fmt.Errorf("%w: no model", ErrExport)
	}
	if len(calib) == 0 {
		return nil, fmt.Errorf("%w: no calibration images", ErrExport)
	}
	in := ms[0].Arch.Input()
	for i, m := range ms[1:] {
		if m.Arch.Input() != in {
			return nil, fmt.Errorf("%w: member %d input %+v differs from member 0's %+v", ErrExport, i+1, m.Arch.Input(), in)
		}
	}
	size := in.Width
	for i, g := range calib {
		if len(g) != size*size {
			return nil, fmt.Errorf("%w: calibration image %d has %d pixels, want %d", ErrExport, i, len(g), size*size)
		}
	}
	b := newTFLBuilder()
	x := b.tensor("input", tflite.Int8, []int32{1, int32(size), int32(size), 1}, q8(in.Scale, int64(in.ZeroPoint)), nil)
	var sum int32 = -1
	for i, m := range ms {
		prefix := ""
		if len(ms) > 1 {
			prefix = fmt.Sprintf("member%d/", i)
		}
		logit, err := b.branch(m, x, calib, opts, prefix, float32(len(ms)))
		if err != nil {
			return nil, err
		}
		if sum < 0 {
			sum = logit
			continue
		}
		next := b.tensor(fmt.Sprintf("logit_sum%d", i), tflite.Float32, []int32{1, 1}, nil, nil)
		b.op(tflite.OpAdd, 1, &tflite.AddOptions{}, []int32{sum, logit}, []int32{next})
		sum = next
	}
	prob := b.tensor("pneumonia_probability", tflite.Float32, []int32{1, 1}, nil, nil)
	b.op(tflite.OpLogistic, 1, nil, []int32{sum}, []int32{prob})
	b.m.Subgraphs[0].Inputs, b.m.Subgraphs[0].Outputs = []int32{0}, []int32{prob}
	kind, epochs := "classifier", fmt.Sprintf("epoch %d", ms[0].Epoch)
	if len(ms) > 1 {
		kind, epochs = fmt.Sprintf("ensemble of %d classifiers", len(ms)), "epochs "
		for i, m := range ms {
			if i > 0 {
				epochs += "/"
			}
			epochs += strconv.Itoa(m.Epoch)
		}
	}
	b.m.Description = fmt.Sprintf("cxr-edge pneumonia %s, int8, %dx%d grey input (trained by cxr-quantize, %s)", kind, size, size, epochs)
	SetThreshold(b.m, ms[0].Threshold)
	if in.Window > 0 {
		imaging.SetMetadataFloat(b.m, imaging.WindowMetadata, float64(in.Window))
	}
	if in.Equalize {
		b.m.SetMetadata(imaging.EqualizeMetadata, []byte("1"))
	}
	return b.m, nil
}

// branch adds m's network on input x and returns its float32 logit tensor divided by div (the
// ensemble's size, folded into the head so the sum of branches is the mean logit).
func (b *tflBuilder) branch(m *Model, x int32, calib [][]uint8, opts ExportOptions, prefix string, div float32) (int32, error) {
	convs, hw, hb, err := m.fold()
	if err != nil {
		return 0, err
	}
	size := m.Arch.Size
	lo, hi := calibrate(convs, hw, hb, size, calib, opts.Percentile)
	for s := range lo {
		if math.IsNaN(lo[s]+hi[s]) || math.IsInf(lo[s]+hi[s], 0) {
			return 0, fmt.Errorf("%w: %sstage %d: activations are not finite on the calibration images", ErrExport, prefix, s)
		}
	}
	if !opts.NoBiasCorrection {
		convs = biasCorrected(convs, lo, hi, size, calib)
	}
	inScale := float64(b.m.Subgraphs[0].Tensors[x].Quantization.Scale[0])
	h := size
	for li, cv := range convs {
		oh, _ := samePad(h, cv.k, cv.stride)
		// Weights: symmetric per output channel in [-127, 127].
		wq := make([]byte, len(cv.w))
		scales := make([]float32, cv.cout)
		bq := make([]int32, cv.cout)
		per := cv.k * cv.k * cv.cin
		for o := 0; o < cv.cout; o++ {
			s := weightScale(cv.w[o*per : (o+1)*per])
			scales[o] = float32(s)
			for j, v := range cv.w[o*per : (o+1)*per] {
				wq[o*per+j] = byte(int8(math.Max(-127, math.Min(127, math.Round(float64(v)/s)))))
			}
			bs := inScale * float64(scales[o])
			bq[o] = int32(math.Max(math.MinInt32, math.Min(math.MaxInt32, math.Round(float64(cv.b[o])/bs))))
		}
		biasScales := make([]float32, cv.cout)
		for o := range biasScales {
			biasScales[o] = float32(inScale * float64(scales[o]))
		}
		name := fmt.Sprintf("%sblock%d", prefix, li)
		wt := b.tensor(name+"/weights", tflite.Int8, []int32{int32(cv.cout), int32(cv.k), int32(cv.k), int32(cv.cin)},
			&tflite.Quantization{Scale: scales, ZeroPoint: make([]int64, cv.cout)}, wq)
		bt := b.tensor(name+"/bias", tflite.Int32, []int32{int32(cv.cout)},
			&tflite.Quantization{Scale: biasScales, ZeroPoint: make([]int64, cv.cout)}, tflite.Int32Data(bq))
		oScale, oz := qparams(lo[li], hi[li])
		y := b.tensor(name+"/relu", tflite.Int8, []int32{1, int32(oh), int32(oh), int32(cv.cout)}, q8(oScale, oz), nil)
		b.op(tflite.OpConv2D, 3, &tflite.Conv2DOptions{Padding: tflite.PaddingSame, StrideW: int32(cv.stride), StrideH: int32(cv.stride),
			Activation: tflite.ActRelu, DilationW: 1, DilationH: 1}, []int32{x, wt, bt}, []int32{y})
		x, h, inScale = y, oh, float64(oScale)
	}
	c := convs[len(convs)-1].cout
	axes := b.tensor(prefix+"mean/axes", tflite.Int32, []int32{2}, nil, tflite.Int32Data([]int32{1, 2}))
	ms, mz := qparams(lo[len(convs)], hi[len(convs)])
	mean := b.tensor(prefix+"mean", tflite.Int8, []int32{1, int32(c)}, q8(ms, mz), nil)
	b.op(tflite.OpMean, 2, &tflite.ReducerOptions{KeepDims: false}, []int32{x, axes}, []int32{mean})
	// The head runs in float32 (c+1 numbers): LOGISTIC's int8 output (scale 1/256) saturates
	// beyond |logit| ≈ 5.5, so an int8 head gave most confident images the same score, 255/256,
	// and lost their order (on the test split 331 of 390 pneumonia films and 16 normals tied
	// there, costing 1.5 points of AUC). DEQUANTIZE → FULLY_CONNECTED → LOGISTIC in float32
	// keeps the full score, so the int8 model ranks images as the float model does.
	feat := b.tensor(prefix+"mean/float", tflite.Float32, []int32{1, int32(c)}, nil, nil)
	b.op(tflite.OpDequantize, 2, nil, []int32{mean}, []int32{feat})
	w := make([]float32, len(hw))
	for i, v := range hw {
		w[i] = v / div
	}
	fwt := b.tensor(prefix+"head/weights", tflite.Float32, []int32{1, int32(c)}, nil, tflite.Float32Data(w))
	fbt := b.tensor(prefix+"head/bias", tflite.Float32, []int32{1}, nil, tflite.Float32Data([]float32{hb / div}))
	logit := b.tensor(prefix+"logit", tflite.Float32, []int32{1, 1}, nil, nil)
	b.op(tflite.OpFullyConnected, 1, &tflite.FullyConnectedOptions{}, []int32{feat, fwt, fbt}, []int32{logit})
	return logit, nil
}

// calibrate returns each stage's activation range over the calibration images: the
// convolutions' (maximum, or the given percentile when in (0, 100)), the mean's and the logit's.
func calibrate(convs []foldedConv, hw []float32, hb float32, size int, calib [][]uint8, p float64) (lo, hi []float64) {
	stages := len(convs) + 2
	lo, hi = make([]float64, stages), make([]float64, stages)
	for _, g := range calib {
		forwardFolded(convs, hw, hb, size, g, func(s int, v []float32) {
			for _, x := range v {
				lo[s], hi[s] = math.Min(lo[s], float64(x)), math.Max(hi[s], float64(x))
			}
		})
	}
	if p > 0 && p < 100 {
		// Second pass: a histogram of each convolution's (non-negative, post-ReLU) outputs.
		const bins = 1 << 14
		hist := make([][]int64, len(convs))
		total := make([]int64, len(convs))
		for i := range hist {
			hist[i] = make([]int64, bins)
		}
		for _, g := range calib {
			forwardFolded(convs, hw, hb, size, g, func(s int, v []float32) {
				if s >= len(convs) || hi[s] <= 0 {
					return
				}
				k := float64(bins-1) / hi[s]
				for _, x := range v {
					hist[s][int(float64(x)*k)]++
				}
				total[s] += int64(len(v))
			})
		}
		for s := range convs {
			want := int64(math.Ceil(p / 100 * float64(total[s])))
			var acc int64
			for bin, n := range hist[s] {
				acc += n
				if acc >= want {
					hi[s] = math.Min(hi[s], float64(bin+1)*hi[s]/float64(bins-1))
					break
				}
			}
		}
	}
	return lo, hi
}

// SetThreshold stores (or replaces) the operating threshold in the model's metadata, exactly
// (imaging.SetModelThreshold).
func SetThreshold(tm *tflite.Model, th float32) { imaging.SetModelThreshold(tm, th) }

type tflBuilder struct {
	m     *tflite.Model
	codes map[tflite.BuiltinOp]uint32
}

func newTFLBuilder() *tflBuilder {
	return &tflBuilder{m: &tflite.Model{Version: 3, Buffers: []tflite.Buffer{{}}, Subgraphs: []tflite.Subgraph{{Name: "main"}}},
		codes: map[tflite.BuiltinOp]uint32{}}
}

// tensor adds a tensor with its own buffer (empty for activations, as TFLite's converter does).
func (b *tflBuilder) tensor(name string, typ tflite.TensorType, shape []int32, q *tflite.Quantization, data []byte) int32 {
	b.m.Buffers = append(b.m.Buffers, tflite.Buffer{Data: data})
	sg := &b.m.Subgraphs[0]
	sg.Tensors = append(sg.Tensors, tflite.Tensor{Name: name, Type: typ, Shape: shape, Quantization: q, Buffer: uint32(len(b.m.Buffers) - 1)})
	return int32(len(sg.Tensors) - 1)
}

func (b *tflBuilder) op(code tflite.BuiltinOp, version int32, opts tflite.Options, ins, outs []int32) {
	idx, ok := b.codes[code]
	if !ok {
		b.m.OperatorCodes = append(b.m.OperatorCodes, tflite.OperatorCode{Builtin: code, Version: version})
		idx = uint32(len(b.m.OperatorCodes) - 1)
		b.codes[code] = idx
	}
	sg := &b.m.Subgraphs[0]
	sg.Operators = append(sg.Operators, tflite.Operator{OpcodeIndex: idx, Inputs: ins, Outputs: outs, Options: opts})
}

func q8(scale float32, zp int64) *tflite.Quantization {
	return &tflite.Quantization{Scale: []float32{scale}, ZeroPoint: []int64{zp}}
}
