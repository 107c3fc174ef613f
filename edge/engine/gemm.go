package engine

// The int8 matrix kernel behind CONV_2D (via im2col) and FULLY_CONNECTED.
//
// Callers fold zero points and bias into per-row/per-column constants and requantise the
// int32 sums themselves, so the kernel is a plain int8×int8→int32 product. Its layout (weights
// packed once at load, activations row-major) lets SIMD versions for amd64 and arm64 replace
// the body of gemm without changing any caller.

// packedInt8 is a weight matrix W[n][k] (row j = output channel j), prepared at load time and
// shared read-only by every interpreter of a model.
type packedInt8 struct {
	n, k int
	w    []int8 // row-major [n][k]; packing for SIMD may change this layout
}

// packInt8 prepares the row-major weight matrix w[n][k].
func packInt8(w []int8, n, k int) *packedInt8 {
	p := &packedInt8{n: n, k: k, w: make([]int8, n*k)}
	copy(p.w, w[:n*k])
	return p
}

// gemm computes dst[i*n+j] = Σ_kk a[i*k+kk] × W[j][kk] for rows i in [0,m).
// a is row-major [m][k]; dst must hold m*n values.
func (p *packedInt8) gemm(dst []int32, a []int8, m int) {
	n, k := p.n, p.k
	for i := 0; i < m; i++ {
		row := a[i*k : i*k+k]
		out := dst[i*n : i*n+n]
		for j := 0; j < n; j++ {
			w := p.w[j*k : j*k+k]
			var s int32
			for kk, x := range row {
				s += int32(x) * int32(w[kk])
			}
			out[j] = s
		}
	}
}
