package engine

import "fmt"

// The int8 matrix kernel behind CONV_2D (via im2col) and FULLY_CONNECTED.
//
// Callers fold zero points and bias into per-row/per-column constants and requantise the
// int32 sums themselves, so the kernel is a plain int8×int8→int32 product. Its layout (weights
// packed once at load, activations row-major) lets SIMD versions for amd64 and arm64 replace
// the body of gemm without changing any caller.
//
// Packed layout: output channels are grouped into panels of panelN (8) channels and k into
// groups of groupK (4) values, zero padded at both ends. A panel is stored as
// [groups][8 channels][4 k] bytes, so one group of one panel is 32 contiguous bytes: one AVX2
// register, or eight 32-bit lanes each holding the four weights of one channel. Every kernel
// (pure Go, AVX2, AVX-512 VNNI) reads the same packing, so the choice of kernel is made per
// packed matrix and tests can run each one against the same reference.

const (
	panelN     = 8               // output channels per packed panel
	groupK     = 4               // k values per group
	groupBytes = panelN * groupK // bytes of one group of one panel
	// blockRowsMax bounds the rows of a cache block; blockRows picks fewer for large k so that
	// a block of activations stays in L1 while every panel passes over it.
	blockRowsMax = 64
)

// packedInt8 is a weight matrix W[n][k] (row j = output channel j), prepared at load time and
// shared read-only by every interpreter of a model.
type packedInt8 struct {
	n, k    int
	groups  int    // ⌈k/4⌉ groups per panel; the last one is zero padded when k%4 != 0
	full    int    // ⌊k/4⌋ complete groups: the SIMD kernels run over these only
	npanels int    // ⌈n/8⌉
	w       []int8 // [npanels][groups][8][4]
	// corr[j] = 128·Σ W[j][kk] over the complete groups, corrAll over all k: the VNNI kernel
	// multiplies unsigned bytes, so it feeds a+128 and subtracts this (exactly, in wrapping
	// int32) afterwards.
	corr, corrAll []int32
	kern          gemmKernel
}

// gemmKernel names the inner kernel a packed matrix runs with.
type gemmKernel int

const (
	kernGo   gemmKernel = iota // portable Go, every architecture
	kernAVX2                   // amd64 AVX2: VPMOVSXBW + VPMADDWD
	kernVNNI                   // amd64 AVX-512 VNNI (256-bit): VPDPBUSD with the +128 offset
	kernNEON                   // arm64 Advanced SIMD: SXTL to int16, SMLAL/SMLAL2 into int32
)

func (k gemmKernel) String() string {
	switch k {
	case kernGo:
		return "go"
	case kernAVX2:
		return "avx2"
	case kernVNNI:
		return "vnni"
	case kernNEON:
		return "neon"
	}
	return fmt.Sprintf("gemmKernel(%d)", int(k))
}

// packInt8 prepares the row-major weight matrix w[n][k] for the fastest kernel this CPU runs.
func packInt8(w []int8, n, k int) *packedInt8 {
	return packInt8With(w, n, k, bestKernel())
}

// packInt8With packs for a given kernel; an unavailable kernel falls back to kernGo.
func packInt8With(w []int8, n, k int, kern gemmKernel) *packedInt8 {
	if !kern.available() {
		kern = kernGo
	}
	groups := (k + groupK - 1) / groupK
	np := (n + panelN - 1) / panelN
	p := &packedInt8{
		n: n, k: k, groups: groups, full: k / groupK, npanels: np,
		w:       make([]int8, np*groups*groupBytes),
		corr:    make([]int32, np*panelN),
		corrAll: make([]int32, np*panelN),
		kern:    kern,
	}
	for j := 0; j < n; j++ {
		row := w[j*k : j*k+k]
		base := (j/panelN)*groups*groupBytes + (j%panelN)*groupK
		var sum, sumAll int32
		for kk, v := range row {
			p.w[base+(kk/groupK)*groupBytes+kk%groupK] = v
			if kk < p.full*groupK {
				sum += int32(v)
			}
			sumAll += int32(v)
		}
		p.corr[j], p.corrAll[j] = 128*sum, 128*sumAll
	}
	return p
}

// gemm computes dst[i*n+j] = Σ_kk a[i*k+kk] × W[j][kk] for rows i in [0,m).
// a is row-major [m][k]; dst must hold m*n values.
func (p *packedInt8) gemm(dst []int32, a []int8, m int) {
	p.gemmBlock(dst, a, m, 0, m, 0, p.npanels)
}

// gemmBlock computes the rows [r0,r1) and the output channels of panels [p0,p1) (channels
// 8·p0 up to 8·p1) of gemm's result. Disjoint blocks write disjoint parts of dst, so workers
// can share one product: by rows for convolutions, by panels for FULLY_CONNECTED (m = 1).
// Each element is computed the same way whatever the split: results do not depend on it.
func (p *packedInt8) gemmBlock(dst []int32, a []int8, m, r0, r1, p0, p1 int) {
	n, k := p.n, p.k
	if m <= 0 || n == 0 || r0 >= r1 || p0 >= p1 {
		return
	}
	if len(a) < m*k || len(dst) < m*n {
		panic(fmt.Sprintf("engine: gemm of %d×%d by %d×%d with len(a)=%d len(dst)=%d", m, k, k, n, len(a), len(dst)))
	}
	if k == 0 {
		for i := r0; i < r1; i++ {
			for j := p0 * panelN; j < min(n, p1*panelN); j++ {
				dst[i*n+j] = 0
			}
		}
		return
	}
	mc := blockRows(k)
	var tmp [blockRowsMax * panelN]int32
	for i0 := r0; i0 < r1; i0 += mc {
		rows := min(mc, r1-i0)
		ab := a[i0*k : (i0+rows)*k]
		for pi := p0; pi < p1; pi++ {
			j0 := pi * panelN
			if cols := n - j0; cols >= panelN {
				p.panel(dst[i0*n+j0:], n, ab, rows, pi)
			} else {
				p.panel(tmp[:], panelN, ab, rows, pi)
				for r := 0; r < rows; r++ {
					copy(dst[(i0+r)*n+j0:(i0+r)*n+n], tmp[r*panelN:r*panelN+cols])
				}
			}
		}
	}
}

// blockRows is the number of activation rows processed against all panels before moving on:
// about 16 KiB of activations, a multiple of 4 (the SIMD row tile).
func blockRows(k int) int {
	r := (16 << 10) / k
	r &^= 3
	return max(4, min(blockRowsMax, r))
}

// panel computes out[r*ldo+c] = Σ_kk a[r*k+kk]·W[c][kk] for rows r < rows and the 8 channels
// c of panel pi; out must hold (rows-1)*ldo+8 values.
func (p *packedInt8) panel(out []int32, ldo int, a []int8, rows int, pi int) {
	k := p.k
	pw := p.w[pi*p.groups*groupBytes : (pi+1)*p.groups*groupBytes]
	j0 := pi * panelN
	_ = out[(rows-1)*ldo+panelN-1]
	_ = a[rows*k-1]
	tail := k - p.full*groupK
	r0 := 0
	if tail > 0 && p.kern != kernGo {
		// The SIMD kernels read whole 4-byte groups. Over the last, partial group they read up
		// to 3 bytes of the next row, multiplied by zero padding, so all rows whose over-read
		// stays inside a run with every group; the rest run the complete groups below.
		if safe := (rows*k-p.groups*groupK)/k + 1; rows*k >= p.groups*groupK {
			r0 = min(rows, safe)
			panelAsm(p.kern, out, ldo, a, k, r0, pw, p.groups, p.corrAll[j0:j0+panelN])
		}
		if r0 == rows {
			return
		}
	}
	out, a, rows = out[r0*ldo:], a[r0*k:], rows-r0
	if !panelAsm(p.kern, out, ldo, a, k, rows, pw, p.full, p.corr[j0:j0+panelN]) {
		panelGo(out, ldo, a, k, rows, pw, p.full)
	}
	if tail == 0 {
		return
	}
	// The up to 3 products of the partial group, for the rows not done above.
	w := pw[p.full*groupBytes : p.full*groupBytes+groupBytes]
	for r := 0; r < rows; r++ {
		x := a[r*k+p.full*groupK : r*k+k]
		o := out[r*ldo : r*ldo+panelN]
		for c := range panelN {
			s := o[c]
			for t, v := range x {
				s += int32(v) * int32(w[c*groupK+t])
			}
			o[c] = s
		}
	}
}

// panelGo is the portable kernel for the complete groups: 2 rows × 4 channels of int32
// accumulators, the four k values of a group unrolled.
func panelGo(out []int32, ldo int, a []int8, lda, rows int, pw []int8, groups int) {
	kb := groups * groupK
	r := 0
	for ; r+2 <= rows; r += 2 {
		a0 := a[r*lda : r*lda+kb]
		a1 := a[(r+1)*lda : (r+1)*lda+kb]
		for h := 0; h < panelN; h += 4 {
			var s00, s01, s02, s03, s10, s11, s12, s13 int32
			for g := range groups {
				x := a0[g*4 : g*4+4 : g*4+4]
				y := a1[g*4 : g*4+4 : g*4+4]
				w := pw[g*groupBytes+h*4 : g*groupBytes+h*4+16 : g*groupBytes+h*4+16]
				x0, x1, x2, x3 := int32(x[0]), int32(x[1]), int32(x[2]), int32(x[3])
				y0, y1, y2, y3 := int32(y[0]), int32(y[1]), int32(y[2]), int32(y[3])
				c0, c1, c2, c3 := int32(w[0]), int32(w[1]), int32(w[2]), int32(w[3])
				s00 += x0*c0 + x1*c1 + x2*c2 + x3*c3
				s10 += y0*c0 + y1*c1 + y2*c2 + y3*c3
				c0, c1, c2, c3 = int32(w[4]), int32(w[5]), int32(w[6]), int32(w[7])
				s01 += x0*c0 + x1*c1 + x2*c2 + x3*c3
				s11 += y0*c0 + y1*c1 + y2*c2 + y3*c3
				c0, c1, c2, c3 = int32(w[8]), int32(w[9]), int32(w[10]), int32(w[11])
				s02 += x0*c0 + x1*c1 + x2*c2 + x3*c3
				s12 += y0*c0 + y1*c1 + y2*c2 + y3*c3
				c0, c1, c2, c3 = int32(w[12]), int32(w[13]), int32(w[14]), int32(w[15])
				s03 += x0*c0 + x1*c1 + x2*c2 + x3*c3
				s13 += y0*c0 + y1*c1 + y2*c2 + y3*c3
			}
			o := out[r*ldo+h : r*ldo+h+4 : r*ldo+h+4]
			o[0], o[1], o[2], o[3] = s00, s01, s02, s03
			o = out[(r+1)*ldo+h : (r+1)*ldo+h+4 : (r+1)*ldo+h+4]
			o[0], o[1], o[2], o[3] = s10, s11, s12, s13
		}
	}
	if r < rows {
		a0 := a[r*lda : r*lda+kb]
		for h := 0; h < panelN; h += 4 {
			var s0, s1, s2, s3 int32
			for g := range groups {
				x := a0[g*4 : g*4+4 : g*4+4]
				w := pw[g*groupBytes+h*4 : g*groupBytes+h*4+16 : g*groupBytes+h*4+16]
				x0, x1, x2, x3 := int32(x[0]), int32(x[1]), int32(x[2]), int32(x[3])
				s0 += x0*int32(w[0]) + x1*int32(w[1]) + x2*int32(w[2]) + x3*int32(w[3])
				s1 += x0*int32(w[4]) + x1*int32(w[5]) + x2*int32(w[6]) + x3*int32(w[7])
				s2 += x0*int32(w[8]) + x1*int32(w[9]) + x2*int32(w[10]) + x3*int32(w[11])
				s3 += x0*int32(w[12]) + x1*int32(w[13]) + x2*int32(w[14]) + x3*int32(w[15])
			}
			o := out[r*ldo+h : r*ldo+h+4 : r*ldo+h+4]
			o[0], o[1], o[2], o[3] = s0, s1, s2, s3
		}
	}
}
