package engine

import (
	"fmt"
	"math"

	"github.com/cxr-edge/cxr-edge/edge/tflite"
)

// ---------------------------------------------------------------- pooling

type pool2d struct {
	w       window
	in, out int
	avg     bool
	typ     tflite.TensorType
	lo, hi  int32
	flo     float32
	fhi     float32
}

func prepMaxPool(l *loader) (kernel, error) { return prepPool(l, false) }
func prepAvgPool(l *loader) (kernel, error) { return prepPool(l, true) }

func prepPool(l *loader, avg bool) (kernel, error) {
	in, it, out, ot, err := l.io()
	if err != nil {
		return nil, err
	}
	o, _ := l.op.Options.(*tflite.Pool2DOptions)
	if o == nil {
		return nil, fmt.Errorf("%w: missing Pool2DOptions", ErrInvalidModel)
	}
	w := window{fH: int(o.FilterH), fW: int(o.FilterW), strideH: int(o.StrideH), strideW: int(o.StrideW), padding: o.Padding}
	if err := w.setup(it.info.Shape); err != nil {
		return nil, err
	}
	if want := w.outShape(w.inC); !sameShape(ot.info.Shape, want) {
		return nil, shapeErr("output", ot.info.Shape, want)
	}
	if ot.info.Type != it.info.Type {
		return nil, fmt.Errorf("%w: %s input with %s output", ErrUnsupported, it.info.Type.String(), ot.info.Type.String())
	}
	k := &pool2d{w: w, in: in, out: out, avg: avg, typ: it.info.Type}
	var ok bool
	switch it.info.Type {
	case tflite.Float32:
		k.flo, k.fhi, ok = actRangeFloat(int8(o.Activation))
	case tflite.Int8, tflite.Uint8:
		if err := needQuant(it, ot); err != nil {
			return nil, err
		}
		if it.scale() != ot.scale() || it.zp() != ot.zp() {
			return nil, fmt.Errorf("%w: input and output quantization differ", ErrUnsupported)
		}
		qmin, qmax := qrange(ot.info.Type)
		k.lo, k.hi, ok = actRange(int8(o.Activation), ot.scale(), ot.zp(), qmin, qmax)
	default:
		return nil, unsupportedType("input", it)
	}
	if !ok {
		return nil, fmt.Errorf("%w: fused activation %d", ErrUnsupported, o.Activation)
	}
	return k, nil
}

func (k *pool2d) eval(ip *Interpreter) { ip.parallel(k, k.w.batch*k.w.outH, 1) }

func (k *pool2d) rows(ip *Interpreter, _, lo, hi int) {
	w := &k.w
	c := w.inC
	for r := lo; r < hi; r++ {
		b, oy := r/w.outH, r%w.outH
		y0 := max(0, oy*w.strideH-w.padTop)
		y1 := min(w.inH, oy*w.strideH-w.padTop+w.fH)
		for ox := range w.outW {
			x0 := max(0, ox*w.strideW-w.padLeft)
			x1 := min(w.inW, ox*w.strideW-w.padLeft+w.fW)
			count := int32((y1 - y0) * (x1 - x0))
			obase := ((b*w.outH+oy)*w.outW + ox) * c
			for ch := range c {
				switch k.typ {
				case tflite.Float32:
					src := ip.f32(k.in)
					var acc float32
					if !k.avg {
						acc = float32(math.Inf(-1))
					}
					for y := y0; y < y1; y++ {
						for x := x0; x < x1; x++ {
							v := src[((b*w.inH+y)*w.inW+x)*c+ch]
							if k.avg {
								acc += v
							} else if v > acc {
								acc = v
							}
						}
					}
					if k.avg {
						acc /= float32(count)
					}
					ip.f32(k.out)[obase+ch] = clampF(acc, k.flo, k.fhi)
				default:
					src := ip.u8(k.in)
					var acc int32
					if !k.avg {
						acc = math.MinInt32
					}
					for y := y0; y < y1; y++ {
						for x := x0; x < x1; x++ {
							b8 := src[((b*w.inH+y)*w.inW+x)*c+ch]
							v := int32(int8(b8))
							if k.typ == tflite.Uint8 {
								v = int32(b8)
							}
							if k.avg {
								acc += v
							} else if v > acc {
								acc = v
							}
						}
					}
					if k.avg {
						// Rounded division, ties away from zero, as in the reference kernel.
						if acc > 0 {
							acc = (acc + count/2) / count
						} else {
							acc = (acc - count/2) / count
						}
					}
					ip.u8(k.out)[obase+ch] = byte(clamp32(acc, k.lo, k.hi))
				}
			}
		}
	}
}

// ---------------------------------------------------------------- MEAN

type mean struct {
	in, out int
	typ     tflite.TensorType
	shape   [6]int // input shape, left-padded with 1s
	ostride [6]int // output stride per input dim (0 on reduced dims)
	count   int32
	nOut    int
	inZp    int32
	outZp   int32
	fscale  float32 // input scale / (output scale × count)
	qmin    int32
	qmax    int32
}

func prepMean(l *loader) (kernel, error) {
	in, it, out, ot, err := l.io()
	if err != nil {
		return nil, err
	}
	axes, err := l.constInput(1)
	if err != nil {
		return nil, err
	}
	rank := len(it.info.Shape)
	if rank > 6 {
		return nil, fmt.Errorf("%w: rank %d", ErrUnsupported, rank)
	}
	reduced := make([]bool, rank)
	for _, a := range axes {
		if a < 0 {
			a += rank
		}
		if a < 0 || a >= rank {
			return nil, fmt.Errorf("%w: axis %d for rank %d", ErrInvalidModel, a, rank)
		}
		reduced[a] = true
	}
	k := &mean{in: in, out: out, typ: it.info.Type, count: 1}
	pad := 6 - rank
	for i := range pad {
		k.shape[i] = 1
	}
	stride := 1
	nOut := 1
	for d := rank - 1; d >= 0; d-- {
		k.shape[pad+d] = it.info.Shape[d]
		if reduced[d] {
			k.count *= int32(it.info.Shape[d])
			continue
		}
		k.ostride[pad+d] = stride
		stride *= it.info.Shape[d]
		nOut *= it.info.Shape[d]
	}
	k.nOut = nOut
	if ot.n != nOut || k.count == 0 {
		return nil, fmt.Errorf("%w: output shape %v for input %v reduced over %v", ErrInvalidModel, ot.info.Shape, it.info.Shape, axes)
	}
	if ot.info.Type != it.info.Type {
		return nil, fmt.Errorf("%w: %s input with %s output", ErrUnsupported, it.info.Type.String(), ot.info.Type.String())
	}
	switch it.info.Type {
	case tflite.Float32:
		l.m.scratch.grow(0, 0, int64(nOut))
	case tflite.Int8, tflite.Uint8:
		if err := needQuant(it, ot); err != nil {
			return nil, err
		}
		k.inZp, k.outZp = it.zp(), ot.zp()
		k.fscale = float32(float64(it.scale()) / (float64(ot.scale()) * float64(k.count)))
		k.qmin, k.qmax = qrange(ot.info.Type)
		l.m.scratch.grow(0, int64(nOut), 0)
	default:
		return nil, unsupportedType("input", it)
	}
	return k, nil
}

func (k *mean) eval(ip *Interpreter) {
	s := &ip.scratch[0]
	var accI []int32
	var accF []float32
	if k.typ == tflite.Float32 {
		accF = s.f32[:k.nOut]
		clear(accF)
	} else {
		accI = s.i32[:k.nOut]
		clear(accI)
	}
	sh := &k.shape
	src8 := ip.u8(k.in)
	srcF := ip.f32(k.in)
	i := 0
	for a := range sh[0] {
		for b := range sh[1] {
			for c := range sh[2] {
				for d := range sh[3] {
					for e := range sh[4] {
						base := a*k.ostride[0] + b*k.ostride[1] + c*k.ostride[2] + d*k.ostride[3] + e*k.ostride[4]
						for f := range sh[5] {
							o := base + f*k.ostride[5]
							switch k.typ {
							case tflite.Float32:
								accF[o] += srcF[i]
							case tflite.Int8:
								accI[o] += int32(int8(src8[i])) - k.inZp
							default:
								accI[o] += int32(src8[i]) - k.inZp
							}
							i++
						}
					}
				}
			}
		}
	}
	if k.typ == tflite.Float32 {
		dst := ip.f32(k.out)
		for o, v := range accF {
			dst[o] = v / float32(k.count)
		}
		return
	}
	// LiteRT (XNNPACK) rescales the mean in float32, adds the output zero point and rounds
	// half to even; the fixed-point reference kernel differs from it by one on ties.
	dst := ip.u8(k.out)
	for o, v := range accI {
		// float32(…) rounds the product before the add: without it arm64 (and amd64 built
		// with GOAMD64=v3) fuses them into one FMA and can round differently from LiteRT.
		r := sat32(math.RoundToEven(float64(float32(float32(v)*k.fscale) + float32(k.outZp))))
		dst[o] = byte(clamp32(r, k.qmin, k.qmax))
	}
}

// ---------------------------------------------------------------- element-wise binary

// bcast iterates two inputs broadcast to an output shape (rank ≤ 6).
type bcast struct {
	rank   int
	shape  [6]int
	sa, sb [6]int // strides of a and b per output dim (0 where broadcast)
	n      int
	same   bool // no broadcasting: flat loop
}

func newBcast(a, b, out []int) (bcast, error) {
	var bc bcast
	r := len(out)
	if r > 6 || len(a) > r || len(b) > r {
		return bc, fmt.Errorf("%w: broadcast of %v and %v to %v", ErrUnsupported, a, b, out)
	}
	bc.rank = r
	bc.n = 1
	for _, d := range out {
		bc.n *= d
	}
	bc.same = sameShape(a, out) && sameShape(b, out)
	strides := func(s []int, dst *[6]int) error {
		st := 1
		for d := r - 1; d >= 0; d-- {
			sd := d - (r - len(s))
			dim := 1
			if sd >= 0 {
				dim = s[sd]
			}
			switch dim {
			case out[d]:
				dst[d] = st
			case 1:
				dst[d] = 0
			default:
				return fmt.Errorf("%w: cannot broadcast %v to %v", ErrInvalidModel, s, out)
			}
			st *= dim
		}
		return nil
	}
	if err := strides(a, &bc.sa); err != nil {
		return bc, err
	}
	if err := strides(b, &bc.sb); err != nil {
		return bc, err
	}
	copy(bc.shape[:], out)
	return bc, nil
}

// next advances the index idx and the offsets ia, ib by one output element.
func (bc *bcast) next(idx *[6]int, ia, ib *int) {
	for d := bc.rank - 1; d >= 0; d-- {
		idx[d]++
		*ia += bc.sa[d]
		*ib += bc.sb[d]
		if idx[d] < bc.shape[d] {
			return
		}
		*ia -= bc.sa[d] * bc.shape[d]
		*ib -= bc.sb[d] * bc.shape[d]
		idx[d] = 0
	}
}

type binKind int

const (
	binAdd binKind = iota
	binSub
	binMul
)

type binop struct {
	a, b, out int
	kind      binKind
	typ       tflite.TensorType
	bc        bcast
	// quantized
	offA, offB, offOut int32
	mA, mB, mOut       requant
	leftShift          int
	lo, hi             int32
	add                *addQ8 // same-shape quantized ADD/SUB
	// float
	flo, fhi float32
}

func prepAdd(l *loader) (kernel, error) { return prepBinary(l, binAdd) }
func prepSub(l *loader) (kernel, error) { return prepBinary(l, binSub) }
func prepMul(l *loader) (kernel, error) { return prepBinary(l, binMul) }

func prepBinary(l *loader, kind binKind) (kernel, error) {
	a, at, err := l.input(0)
	if err != nil {
		return nil, err
	}
	b, bt, err := l.input(1)
	if err != nil {
		return nil, err
	}
	out, ot, err := l.output(0)
	if err != nil {
		return nil, err
	}
	var act tflite.Activation
	switch o := l.op.Options.(type) {
	case *tflite.AddOptions:
		act = o.Activation
	case *tflite.SubOptions:
		act = o.Activation
	case *tflite.MulOptions:
		act = o.Activation
	}
	if at.info.Type != ot.info.Type || bt.info.Type != ot.info.Type {
		return nil, fmt.Errorf("%w: %s and %s inputs with %s output", ErrUnsupported, at.info.Type.String(), bt.info.Type.String(), ot.info.Type.String())
	}
	bc, err := newBcast(at.info.Shape, bt.info.Shape, ot.info.Shape)
	if err != nil {
		return nil, err
	}
	k := &binop{a: a, b: b, out: out, kind: kind, typ: ot.info.Type, bc: bc}
	var ok bool
	switch ot.info.Type {
	case tflite.Float32:
		k.flo, k.fhi, ok = actRangeFloat(int8(act))
	case tflite.Int8, tflite.Uint8:
		if err := needQuant(at, bt, ot); err != nil {
			return nil, err
		}
		k.offA, k.offB, k.offOut = -at.zp(), -bt.zp(), ot.zp()
		sa, sb, so := float64(at.scale()), float64(bt.scale()), float64(ot.scale())
		if kind == binMul {
			k.mOut = l.newRequant(sa * sb / so)
		} else {
			k.leftShift = 20
			twiceMax := 2 * max(sa, sb)
			k.mA = l.newRequant(sa / twiceMax)
			k.mB = l.newRequant(sb / twiceMax)
			k.mOut = l.newRequant(twiceMax / (float64(int(1)<<k.leftShift) * so))
		}
		qmin, qmax := qrange(ot.info.Type)
		k.lo, k.hi, ok = actRange(int8(act), ot.scale(), ot.zp(), qmin, qmax)
		if kind != binMul && bc.same {
			k.add = newAddQ8(k.offA, k.offB, k.offOut, k.mA.q, k.mB.q, k.mOut.q, k.mA.shift, k.mB.shift, k.mOut.shift,
				k.leftShift, k.lo, k.hi, kind == binSub, k.mOut.double)
		}
	default:
		return nil, unsupportedType("output", ot)
	}
	if !ok {
		return nil, fmt.Errorf("%w: fused activation %d", ErrUnsupported, act)
	}
	return k, nil
}

func (k *binop) q(x, y int32) int32 {
	x += k.offA
	y += k.offB
	var r int32
	if k.kind == binMul {
		r = k.mOut.apply(x*y) + k.offOut
	} else {
		sx := k.mA.apply(x << k.leftShift)
		sy := k.mB.apply(y << k.leftShift)
		if k.kind == binSub {
			sy = -sy
		}
		r = k.mOut.apply(sx+sy) + k.offOut
	}
	return clamp32(r, k.lo, k.hi)
}

func (k *binop) f(x, y float32) float32 {
	switch k.kind {
	case binAdd:
		x += y
	case binSub:
		x -= y
	default:
		x *= y
	}
	return clampF(x, k.flo, k.fhi)
}

func (k *binop) eval(ip *Interpreter) {
	if k.add != nil {
		k.add.run(ip.u8(k.out), ip.u8(k.a), ip.u8(k.b), k.typ == tflite.Uint8)
		return
	}
	var idx [6]int
	ia, ib := 0, 0
	switch k.typ {
	case tflite.Float32:
		a, b, o := ip.f32(k.a), ip.f32(k.b), ip.f32(k.out)
		for i := range k.bc.n {
			if k.bc.same {
				ia, ib = i, i
			}
			o[i] = k.f(a[ia], b[ib])
			if !k.bc.same {
				k.bc.next(&idx, &ia, &ib)
			}
		}
	case tflite.Int8:
		a, b, o := ip.i8(k.a), ip.i8(k.b), ip.u8(k.out)
		for i := range k.bc.n {
			if k.bc.same {
				ia, ib = i, i
			}
			o[i] = byte(k.q(int32(a[ia]), int32(b[ib])))
			if !k.bc.same {
				k.bc.next(&idx, &ia, &ib)
			}
		}
	default:
		a, b, o := ip.u8(k.a), ip.u8(k.b), ip.u8(k.out)
		for i := range k.bc.n {
			if k.bc.same {
				ia, ib = i, i
			}
			o[i] = byte(k.q(int32(a[ia]), int32(b[ib])))
			if !k.bc.same {
				k.bc.next(&idx, &ia, &ib)
			}
		}
	}
}

// ---------------------------------------------------------------- PAD, PADV2

type pad struct {
	in, out int
	es      int
	inSh    [5]int
	outSh   [5]int
	before  [5]int
	fill    [4]byte // one element of the pad value
}

func prepPad(l *loader) (kernel, error) {
	in, it, out, ot, err := l.io()
	if err != nil {
		return nil, err
	}
	p, err := l.constInput(1)
	if err != nil {
		return nil, err
	}
	rank := len(it.info.Shape)
	if rank > 5 || len(p) != 2*rank {
		return nil, fmt.Errorf("%w: paddings of %d values for rank %d", ErrUnsupported, len(p), rank)
	}
	if ot.info.Type != it.info.Type || len(ot.info.Shape) != rank {
		return nil, fmt.Errorf("%w: output %s %v for input %s %v", ErrInvalidModel, ot.info.Type.String(), ot.info.Shape, it.info.Type.String(), it.info.Shape)
	}
	k := &pad{in: in, out: out, es: elemSize(it.info.Type)}
	off := 5 - rank
	for d := range 5 {
		k.inSh[d], k.outSh[d] = 1, 1
	}
	for d := range rank {
		if p[2*d] < 0 || p[2*d+1] < 0 {
			return nil, fmt.Errorf("%w: negative padding", ErrInvalidModel)
		}
		k.inSh[off+d] = it.info.Shape[d]
		k.outSh[off+d] = ot.info.Shape[d]
		k.before[off+d] = p[2*d]
		// In int64: the sum of a hostile file's paddings could wrap an int to the output size.
		if int64(it.info.Shape[d])+int64(p[2*d])+int64(p[2*d+1]) != int64(ot.info.Shape[d]) {
			return nil, shapeErr("output", ot.info.Shape, nil)
		}
	}
	_, vt := l.optInput(2)
	switch it.info.Type {
	case tflite.Float32:
		if vt != nil {
			if vt.konst == nil || vt.info.Type != tflite.Float32 || vt.n != 1 {
				return nil, fmt.Errorf("%w: pad value must be a constant scalar", ErrUnsupported)
			}
			copy(k.fill[:], vt.konst)
		}
	case tflite.Int8, tflite.Uint8:
		if err := needQuant(it, ot); err != nil {
			return nil, err
		}
		if it.scale() != ot.scale() || it.zp() != ot.zp() {
			return nil, fmt.Errorf("%w: input and output quantization differ", ErrUnsupported)
		}
		// PAD fills with the zero point (real 0); PADV2 with its constant value.
		k.fill[0] = byte(ot.zp())
		if vt != nil {
			if vt.konst == nil || vt.info.Type != it.info.Type || vt.n != 1 {
				return nil, fmt.Errorf("%w: pad value must be a constant scalar", ErrUnsupported)
			}
			k.fill[0] = vt.konst[0]
		}
	case tflite.Int32:
		if vt != nil {
			return nil, fmt.Errorf("%w: PADV2 of int32", ErrUnsupported)
		}
	default:
		return nil, unsupportedType("input", it)
	}
	return k, nil
}

func (k *pad) eval(ip *Interpreter) {
	src, dst := ip.t[k.in].b, ip.t[k.out].b
	es := k.es
	// Fill by doubling: log2(len) copies instead of one per element.
	for n := copy(dst, k.fill[:es]); n < len(dst); {
		n += copy(dst[n:], dst[:n])
	}
	row := k.inSh[4] * es
	for a := range k.inSh[0] {
		for b := range k.inSh[1] {
			for c := range k.inSh[2] {
				for d := range k.inSh[3] {
					o := (((a+k.before[0])*k.outSh[1]+b+k.before[1])*k.outSh[2]+c+k.before[2])*k.outSh[3] + d + k.before[3]
					o = (o*k.outSh[4] + k.before[4]) * es
					i := (((a*k.inSh[1]+b)*k.inSh[2]+c)*k.inSh[3] + d) * row
					copy(dst[o:o+row], src[i:i+row])
				}
			}
		}
	}
}

// ---------------------------------------------------------------- RESHAPE, SQUEEZE

type copyOp struct{ in, out int }

func prepReshape(l *loader) (kernel, error) {
	in, it, out, ot, err := l.io()
	if err != nil {
		return nil, err
	}
	if it.info.Type != ot.info.Type || it.n != ot.n {
		return nil, fmt.Errorf("%w: %s %v reshaped to %s %v", ErrInvalidModel, it.info.Type.String(), it.info.Shape, ot.info.Type.String(), ot.info.Shape)
	}
	if isQ8(it.info.Type) && (it.scale() != ot.scale() || it.zp() != ot.zp()) {
		return nil, fmt.Errorf("%w: input and output quantization differ", ErrUnsupported)
	}
	return &copyOp{in, out}, nil
}

func (k *copyOp) eval(ip *Interpreter) { copy(ip.t[k.out].b, ip.t[k.in].b) }

// ---------------------------------------------------------------- TRANSPOSE

type transpose struct {
	in, out int
	es      int
	bc      bcast // shape = output shape, sa = input stride per output dim
}

func prepTranspose(l *loader) (kernel, error) {
	in, it, out, ot, err := l.io()
	if err != nil {
		return nil, err
	}
	perm, err := l.constInput(1)
	if err != nil {
		return nil, err
	}
	rank := len(it.info.Shape)
	if rank > 6 || len(perm) != rank || ot.info.Type != it.info.Type || elemSize(it.info.Type) == 0 {
		return nil, fmt.Errorf("%w: transpose of %s %v by %v", ErrUnsupported, it.info.Type.String(), it.info.Shape, perm)
	}
	inStride := make([]int, rank)
	st := 1
	for d := rank - 1; d >= 0; d-- {
		inStride[d] = st
		st *= it.info.Shape[d]
	}
	k := &transpose{in: in, out: out, es: elemSize(it.info.Type)}
	k.bc.rank, k.bc.n = rank, it.n
	seen := make([]bool, rank)
	for d, p := range perm {
		if p < 0 || p >= rank || seen[p] {
			return nil, fmt.Errorf("%w: permutation %v", ErrInvalidModel, perm)
		}
		seen[p] = true
		if ot.info.Shape[d] != it.info.Shape[p] {
			return nil, shapeErr("output", ot.info.Shape, nil)
		}
		k.bc.shape[d] = ot.info.Shape[d]
		k.bc.sa[d] = inStride[p]
	}
	return k, nil
}

func (k *transpose) eval(ip *Interpreter) {
	src, dst := ip.t[k.in].b, ip.t[k.out].b
	var idx [6]int
	ia, ib := 0, 0
	es := k.es
	for o := range k.bc.n {
		copy(dst[o*es:o*es+es], src[ia*es:ia*es+es])
		k.bc.next(&idx, &ia, &ib)
	}
}

// ---------------------------------------------------------------- CONCATENATION

type concatIn struct {
	t     int
	inner int // bytes per outer step
	// uint8 requantisation (legacy models with per-input scales)
	rescale     bool
	scale, bias float32
}

type concat struct {
	out   int
	outer int
	ins   []concatIn
	outZp int32
}

func prepConcat(l *loader) (kernel, error) {
	out, ot, err := l.output(0)
	if err != nil {
		return nil, err
	}
	o, _ := l.op.Options.(*tflite.ConcatenationOptions)
	if o == nil {
		return nil, fmt.Errorf("%w: missing ConcatenationOptions", ErrInvalidModel)
	}
	if o.Activation != tflite.ActNone {
		return nil, fmt.Errorf("%w: fused activation %d on CONCATENATION", ErrUnsupported, o.Activation)
	}
	axis, outer, err := splitAxis(int(o.Axis), ot.info.Shape)
	if err != nil {
		return nil, err
	}
	es := elemSize(ot.info.Type)
	if es == 0 || ot.info.Type == tflite.Bool {
		return nil, unsupportedType("output", ot)
	}
	k := &concat{out: out, outer: outer, outZp: ot.zp()}
	sum := 0
	for j := range l.op.Inputs {
		t, it, err := l.input(j)
		if err != nil {
			return nil, err
		}
		if err := pieceOf(ot, it, axis); err != nil {
			return nil, fmt.Errorf("input %d: %w", j, err)
		}
		sum += it.info.Shape[axis]
		if sum > ot.info.Shape[axis] { // checked as it grows, so that it cannot wrap
			return nil, fmt.Errorf("%w: inputs give more than %d along axis %d", ErrInvalidModel, ot.info.Shape[axis], axis)
		}
		ci := concatIn{t: t, inner: it.n / max(1, k.outer) * es}
		if isQ8(ot.info.Type) {
			if err := needQuant(it, ot); err != nil {
				return nil, err
			}
			if it.scale() != ot.scale() || it.zp() != ot.zp() {
				if ot.info.Type == tflite.Int8 {
					// TFLite requires equal quantization for int8 (concatenation.cc).
					return nil, fmt.Errorf("%w: int8 input %d has scale %g zero point %d, output %g/%d; TFLite requires them equal", ErrInvalidModel, j, it.scale(), it.zp(), ot.scale(), ot.zp())
				}
				ci.rescale = true
				ci.scale = it.scale() / ot.scale()
				ci.bias = -float32(it.zp()) * ci.scale
			}
		}
		k.ins = append(k.ins, ci)
	}
	if sum != ot.info.Shape[axis] {
		return nil, fmt.Errorf("%w: inputs give %d along axis %d, output has %d", ErrInvalidModel, sum, axis, ot.info.Shape[axis])
	}
	return k, nil
}

func (k *concat) eval(ip *Interpreter) {
	dst := ip.t[k.out].b
	o := 0
	for i := range k.outer {
		for _, c := range k.ins {
			src := ip.t[c.t].b[i*c.inner : (i+1)*c.inner]
			if !c.rescale {
				copy(dst[o:], src)
			} else {
				for j, v := range src {
					// Rounded product, no FMA: see mean.eval.
					r := sat32(float64(tfRound32(float32(float32(v)*c.scale)+c.bias))) + k.outZp
					dst[o+j] = byte(clamp32(r, 0, 255))
				}
			}
			o += c.inner
		}
	}
}

// ---------------------------------------------------------------- 8-bit look-up tables

// lut8 applies a 256-entry table: every element-wise int8/uint8 function here (LOGISTIC,
// HARD_SWISH, RELU, LEAKY_RELU, requantising QUANTIZE) is exact as a table computed at load.
type lut8 struct {
	in, out int
	t       [256]byte
}

func (k *lut8) eval(ip *Interpreter) {
	src, dst := ip.u8(k.in), ip.u8(k.out)
	for i, v := range src {
		dst[i] = k.t[v]
	}
}

// newLUT builds the table of f over every 8-bit input value (as an integer q).
func newLUT(in, out int, typ tflite.TensorType, f func(q int32) int32) *lut8 {
	k := &lut8{in: in, out: out}
	qmin, qmax := qrange(typ)
	for b := range 256 {
		q := int32(int8(b))
		if typ == tflite.Uint8 {
			q = int32(b)
		}
		k.t[b] = byte(clamp32(f(q), qmin, qmax))
	}
	return k
}

// floatLUT is TFLite's LUTPopulate for 8-bit LOGISTIC and similar: dequantize, apply f in
// float32, round half away from zero, add the output zero point.
func floatLUT(in, out int, it, ot *tensorMeta, f func(x float32) float32) *lut8 {
	is, iz, inv, oz := it.scale(), it.zp(), 1/ot.scale(), ot.zp()
	return newLUT(in, out, it.info.Type, func(q int32) int32 {
		x := is * float32(q-iz)
		return sat32(float64(tfRound32(f(x)*inv))) + oz
	})
}

type unaryF struct {
	in, out int
	f       func(float32) float32
}

func (k *unaryF) eval(ip *Interpreter) {
	src, dst := ip.f32(k.in), ip.f32(k.out)
	for i, v := range src {
		dst[i] = k.f(v)
	}
}

func prepUnary(l *loader, f func(float32) float32, q func(it, ot *tensorMeta) (func(int32) int32, error)) (kernel, error) {
	in, it, out, ot, err := l.io()
	if err != nil {
		return nil, err
	}
	if it.info.Type != ot.info.Type || it.n != ot.n {
		return nil, fmt.Errorf("%w: %s %v to %s %v", ErrInvalidModel, it.info.Type.String(), it.info.Shape, ot.info.Type.String(), ot.info.Shape)
	}
	switch it.info.Type {
	case tflite.Float32:
		return &unaryF{in: in, out: out, f: f}, nil
	case tflite.Int8, tflite.Uint8:
		if err := needQuant(it, ot); err != nil {
			return nil, err
		}
		fq, err := q(it, ot)
		if err != nil {
			return nil, err
		}
		return newLUT(in, out, it.info.Type, fq), nil
	}
	return nil, unsupportedType("input", it)
}

func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

func prepLogistic(l *loader) (kernel, error) {
	return prepUnary(l, sigmoid, func(it, ot *tensorMeta) (func(int32) int32, error) {
		lut := floatLUT(0, 0, it, ot, sigmoid)
		return func(q int32) int32 { return lutVal(lut, q, it.info.Type) }, nil
	})
}

func lutVal(k *lut8, q int32, typ tflite.TensorType) int32 {
	v := k.t[byte(q)]
	if typ == tflite.Uint8 {
		return int32(v)
	}
	return int32(int8(v))
}

func hardSwish(x float32) float32 { return x * min(max(x+3, 0), 6) / 6 }

func prepHardSwish(l *loader) (kernel, error) {
	return prepUnary(l, hardSwish, func(it, ot *tensorMeta) (func(int32) int32, error) {
		qmin, qmax := qrange(ot.info.Type)
		p := newHardSwishParams(it.scale(), ot.scale(), it.zp(), ot.zp(), qmin, qmax)
		return p.apply, nil
	})
}

func prepRelu(l *loader) (kernel, error) {
	top := float32(math.Inf(1))
	if l.src.OperatorCodes[l.op.OpcodeIndex].Builtin == tflite.OpRelu6 {
		top = 6
	}
	return prepUnary(l, func(x float32) float32 { return min(max(x, 0), top) }, func(it, ot *tensorMeta) (func(int32) int32, error) {
		m := l.newRequant(float64(it.scale()) / float64(ot.scale()))
		act := int8(tflite.ActRelu)
		if top == 6 {
			act = int8(tflite.ActRelu6)
		}
		qmin, qmax := qrange(ot.info.Type)
		lo, hi, _ := actRange(act, ot.scale(), ot.zp(), qmin, qmax)
		iz, oz := it.zp(), ot.zp()
		return func(q int32) int32 { return clamp32(oz+m.apply(q-iz), lo, hi) }, nil
	})
}

func prepLeakyRelu(l *loader) (kernel, error) {
	o, _ := l.op.Options.(*tflite.LeakyReluOptions)
	if o == nil {
		return nil, fmt.Errorf("%w: missing LeakyReluOptions", ErrInvalidModel)
	}
	alpha := o.Alpha
	if !finite(alpha) {
		return nil, fmt.Errorf("%w: LEAKY_RELU alpha %v", ErrInvalidModel, alpha)
	}
	return prepUnary(l, func(x float32) float32 {
		if x < 0 {
			return x * alpha
		}
		return x
	}, func(it, ot *tensorMeta) (func(int32) int32, error) {
		iz, oz := it.zp(), ot.zp()
		if l.rounding == RoundLiteRT {
			// XNNPACK's 8-bit leaky ReLU: the two scales as 8.8 fixed point.
			pos := it.scale() / ot.scale()
			mp := sat32(math.RoundToEven(float64(256 * pos)))
			mn := sat32(math.RoundToEven(float64(256 * (pos * alpha))))
			return func(q int32) int32 {
				x := q - iz
				m := mp
				if x < 0 {
					m = mn
				}
				return oz + (x*m+128)>>8
			}, nil
		}
		mi := l.newRequant(float64(it.scale()) / float64(ot.scale()))
		ma := l.newRequant(float64(it.scale()) * float64(alpha) / float64(ot.scale()))
		return func(q int32) int32 {
			x := q - iz
			if x >= 0 {
				return oz + mi.apply(x)
			}
			return oz + ma.apply(x)
		}, nil
	})
}

// finite refuses NaN and ±Inf option values: the integer kernels would convert them to
// int32, which gives different garbage on amd64 and ARM.
func finite(x float32) bool { return !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0) }

// ---------------------------------------------------------------- SOFTMAX

type softmax struct {
	in, out  int
	typ      tflite.TensorType
	rows, n  int
	beta     float32
	table    [256]float32 // exp(−scale·β·d) for d = max − x
	outScale float32
	outZp    int32
}

func prepSoftmax(l *loader) (kernel, error) {
	in, it, out, ot, err := l.io()
	if err != nil {
		return nil, err
	}
	o, _ := l.op.Options.(*tflite.SoftmaxOptions)
	beta := float32(1)
	if o != nil {
		beta = o.Beta
	}
	if !finite(beta) {
		return nil, fmt.Errorf("%w: SOFTMAX beta %v", ErrInvalidModel, beta)
	}
	if it.info.Type != ot.info.Type || !sameShape(it.info.Shape, ot.info.Shape) || len(it.info.Shape) == 0 {
		return nil, fmt.Errorf("%w: %s %v to %s %v", ErrInvalidModel, it.info.Type.String(), it.info.Shape, ot.info.Type.String(), ot.info.Shape)
	}
	n := it.info.Shape[len(it.info.Shape)-1]
	k := &softmax{in: in, out: out, typ: it.info.Type, n: n, rows: it.n / max(1, n), beta: beta}
	switch it.info.Type {
	case tflite.Float32:
	case tflite.Int8, tflite.Uint8:
		if err := needQuant(it, ot); err != nil {
			return nil, err
		}
		// As TFLite's 8-bit softmax: a float table of exp over the 256 possible
		// differences from the row maximum.
		s := -it.scale() * beta
		for d := range 256 {
			k.table[d] = float32(math.Exp(float64(s * float32(d))))
		}
		k.outScale, k.outZp = ot.scale(), ot.zp()
	default:
		return nil, unsupportedType("input", it)
	}
	return k, nil
}

func (k *softmax) eval(ip *Interpreter) {
	if k.typ == tflite.Float32 {
		src, dst := ip.f32(k.in), ip.f32(k.out)
		for r := range k.rows {
			x, y := src[r*k.n:(r+1)*k.n], dst[r*k.n:(r+1)*k.n]
			mx := float32(math.Inf(-1))
			for _, v := range x {
				mx = max(mx, v)
			}
			var sum float32
			for i, v := range x {
				e := float32(math.Exp(float64((v - mx) * k.beta)))
				y[i] = e
				sum += e
			}
			for i := range y {
				y[i] /= sum
			}
		}
		return
	}
	src, dst := ip.u8(k.in), ip.u8(k.out)
	var flip byte
	if k.typ == tflite.Int8 {
		flip = 0x80 // compare int8 values as offset uint8
	}
	qmin, qmax := qrange(k.typ)
	for r := range k.rows {
		x, y := src[r*k.n:(r+1)*k.n], dst[r*k.n:(r+1)*k.n]
		var mx byte
		for _, v := range x {
			mx = max(mx, v^flip)
		}
		var sum float32
		for _, v := range x {
			sum += k.table[mx-(v^flip)]
		}
		inv := 1 / (sum * k.outScale)
		for i, v := range x {
			p := k.table[mx-(v^flip)] * inv
			y[i] = byte(clamp32(sat32(float64(tfRound32(p)))+k.outZp, qmin, qmax))
		}
	}
}

// ---------------------------------------------------------------- QUANTIZE, DEQUANTIZE

type quantizeF struct {
	in, out    int
	scale      float32
	zp         int32
	qmin, qmax int32
}

func (k *quantizeF) eval(ip *Interpreter) {
	src, dst := ip.f32(k.in), ip.u8(k.out)
	for i, v := range src {
		dst[i] = byte(clamp32(sat32(float64(tfRound32(v/k.scale)))+k.zp, k.qmin, k.qmax))
	}
}

func prepQuantize(l *loader) (kernel, error) {
	in, it, out, ot, err := l.io()
	if err != nil {
		return nil, err
	}
	if it.n != ot.n || !isQ8(ot.info.Type) {
		return nil, fmt.Errorf("%w: QUANTIZE %s %v to %s %v", ErrUnsupported, it.info.Type.String(), it.info.Shape, ot.info.Type.String(), ot.info.Shape)
	}
	if err := needQuant(ot); err != nil {
		return nil, err
	}
	if len(ot.info.Scale) > 1 {
		return nil, fmt.Errorf("%w: per-channel QUANTIZE output", ErrUnsupported)
	}
	qmin, qmax := qrange(ot.info.Type)
	switch it.info.Type {
	case tflite.Float32:
		return &quantizeF{in: in, out: out, scale: ot.scale(), zp: ot.zp(), qmin: qmin, qmax: qmax}, nil
	case tflite.Int8, tflite.Uint8:
		if err := needQuant(it); err != nil {
			return nil, err
		}
		m := l.newRequant(float64(it.scale()) / float64(ot.scale()))
		iz, oz := it.zp(), ot.zp()
		k := &lut8{in: in, out: out}
		for b := range 256 {
			q := int32(int8(b))
			if it.info.Type == tflite.Uint8 {
				q = int32(b)
			}
			k.t[b] = byte(clamp32(oz+m.apply(q-iz), qmin, qmax))
		}
		return k, nil
	}
	return nil, unsupportedType("input", it)
}

type dequantize struct {
	in, out int
	t       [256]float32
}

func (k *dequantize) eval(ip *Interpreter) {
	src, dst := ip.u8(k.in), ip.f32(k.out)
	for i, v := range src {
		dst[i] = k.t[v]
	}
}

func prepDequantize(l *loader) (kernel, error) {
	in, it, out, ot, err := l.io()
	if err != nil {
		return nil, err
	}
	if it.n != ot.n || !isQ8(it.info.Type) || ot.info.Type != tflite.Float32 {
		return nil, fmt.Errorf("%w: DEQUANTIZE %s to %s", ErrUnsupported, it.info.Type.String(), ot.info.Type.String())
	}
	if err := needQuant(it); err != nil {
		return nil, err
	}
	if len(it.info.Scale) > 1 {
		return nil, fmt.Errorf("%w: per-channel DEQUANTIZE input", ErrUnsupported)
	}
	k := &dequantize{in: in, out: out}
	s, z := float64(it.scale()), it.zp()
	for b := range 256 {
		q := int32(int8(b))
		if it.info.Type == tflite.Uint8 {
			q = int32(b)
		}
		k.t[b] = float32(s * float64(q-z))
	}
	return k, nil
}

// pieceOf checks that part, one of the tensors CONCATENATION joins or SPLIT makes, has
// whole's type and shape except along axis.
func pieceOf(whole, part *tensorMeta, axis int) error {
	ok := part.info.Type == whole.info.Type && len(part.info.Shape) == len(whole.info.Shape)
	for d := range part.info.Shape {
		ok = ok && (d == axis || part.info.Shape[d] == whole.info.Shape[d])
	}
	if !ok {
		return fmt.Errorf("%w: %s %v does not fit %s %v along axis %d", ErrInvalidModel, part.info.Type, part.info.Shape, whole.info.Type, whole.info.Shape, axis)
	}
	return nil
}

// splitAxis resolves the possibly negative axis of a CONCATENATION or SPLIT over shape and
// returns it with the number of outer slices (the product of the dimensions before it).
func splitAxis(axis int, shape []int) (int, int, error) {
	rank := len(shape)
	a := axis
	if a < 0 {
		a += rank
	}
	if a < 0 || a >= rank {
		return 0, 0, fmt.Errorf("%w: axis %d for rank %d", ErrInvalidModel, axis, rank)
	}
	outer := 1
	for _, d := range shape[:a] {
		outer *= d
	}
	return a, outer, nil
}

// ---------------------------------------------------------------- SPLIT

// opSplit is SPLIT, which the legacy uint8 split/concat test model uses.
const opSplit tflite.BuiltinOp = 49

type split struct {
	in    int
	outer int
	outs  []int
	inner []int // bytes per outer step, per output
}

func prepSplit(l *loader) (kernel, error) {
	_, at, err := l.input(0)
	if err != nil {
		return nil, err
	}
	in, it, err := l.input(1)
	if err != nil {
		return nil, err
	}
	ax, err := constInts(at)
	if err != nil {
		return nil, err
	}
	if len(ax) != 1 {
		return nil, fmt.Errorf("%w: axis tensor has %d values", ErrInvalidModel, len(ax))
	}
	axis, outer, err := splitAxis(ax[0], it.info.Shape)
	if err != nil {
		return nil, err
	}
	es := elemSize(it.info.Type)
	if es == 0 {
		return nil, unsupportedType("input", it)
	}
	k := &split{in: in, outer: outer}
	sum := 0
	for j := range l.op.Outputs {
		o, ot, err := l.output(j)
		if err != nil {
			return nil, err
		}
		if err := pieceOf(it, ot, axis); err != nil {
			return nil, fmt.Errorf("output %d: %w", j, err)
		}
		if isQ8(it.info.Type) && (it.scale() != ot.scale() || it.zp() != ot.zp()) {
			return nil, fmt.Errorf("%w: output %d quantization differs from the input's", ErrUnsupported, j)
		}
		sum += ot.info.Shape[axis]
		if sum > it.info.Shape[axis] { // checked as it grows, so that it cannot wrap
			return nil, fmt.Errorf("%w: outputs give more than %d along axis %d", ErrInvalidModel, it.info.Shape[axis], axis)
		}
		k.outs = append(k.outs, o)
		k.inner = append(k.inner, ot.n/max(1, k.outer)*es)
	}
	if sum != it.info.Shape[axis] {
		return nil, fmt.Errorf("%w: outputs give %d along axis %d, input has %d", ErrInvalidModel, sum, axis, it.info.Shape[axis])
	}
	return k, nil
}

func (k *split) eval(ip *Interpreter) {
	src := ip.t[k.in].b
	p := 0
	for i := range k.outer {
		for j, o := range k.outs {
			n := k.inner[j]
			copy(ip.t[o].b[i*n:(i+1)*n], src[p:p+n])
			p += n
		}
	}
}
