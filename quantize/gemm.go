package quantize

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Tile of the packed float32 kernel: mr rows of op(A) by nr columns of op(B). 6×16 keeps 12
// AVX2 accumulators busy (two FMA ports, four-cycle latency) with registers to spare.
const (
	gemmMR = 6
	gemmNR = 16
	gemmKC = 256 // k per block
)

// sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices: op(A) is m×k, op(B)
// k×n, C m×n. With AVX2 and FMA it packs the operands into tiles for an assembly kernel
// (BenchmarkSgemm compares it with gonum in the same run); elsewhere it calls gonum. The two
// round differently (FMA, summation order), so a model trained with one is not bit-identical
// to one trained with the other; each is reproducible.
func sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, b []float32, beta float32, c []float32) {
	if m == 0 || n == 0 {
		return
	}
	if !haveKernel || k == 0 {
		gonumSgemm(tA, tB, m, n, k, alpha, a, b, beta, c)
		return
	}
	if beta != 0 && beta != 1 {
		for i := range c[:m*n] {
			c[i] *= beta
		}
		beta = 1
	}
	// op(B) is read in place when its rows are rows of b (no transpose); only a last,
	// narrower column panel is copied (padded with zeros). A transposed B is packed whole.
	var pb, edge []float32
	if tB {
		pb = packBT(n, k, b)
	} else if n%gemmNR != 0 {
		edge = packEdge(n, k, b)
	}
	pa := packA(tA, m, k, alpha, a)
	var tile [gemmMR * gemmNR]float32
	// Blocks of gemmKC along k keep a B slice (16 KB) in L1 and the A slices in L2 while the
	// tiles cycle; every block after the first adds to C.
	for k0 := 0; k0 < k; k0 += gemmKC {
		kc := min(gemmKC, k-k0)
		add := beta == 1 || k0 > 0
		for j0 := 0; j0 < n; j0 += gemmNR {
			cols := min(gemmNR, n-j0)
			var bp *float32
			ldb := gemmNR
			switch {
			case tB:
				bp = &pb[((j0/gemmNR)*k+k0)*gemmNR]
			case cols < gemmNR:
				bp = &edge[k0*gemmNR]
			default:
				bp, ldb = &b[k0*n+j0], n
			}
			for i0 := 0; i0 < m; i0 += gemmMR {
				ap := &pa[((i0/gemmMR)*k+k0)*gemmMR]
				rows := min(gemmMR, m-i0)
				if rows == gemmMR && cols == gemmNR {
					kernel6x16(kc, ap, bp, ldb, &c[i0*n+j0], n, add)
					continue
				}
				// An edge tile: computed whole into tile, then only its part inside C kept.
				kernel6x16(kc, ap, bp, ldb, &tile[0], gemmNR, false)
				for r := range rows {
					row := c[(i0+r)*n+j0 : (i0+r)*n+j0+cols]
					t := tile[r*gemmNR : r*gemmNR+cols]
					if add {
						for j, v := range t {
							row[j] += v
						}
					} else {
						copy(row, t)
					}
				}
			}
		}
	}
}

// packA lays op(A)·alpha out as panels of gemmMR rows, column by column (a panel's k-th
// column is gemmMR consecutive values), padding the last panel with zeros.
func packA(tA bool, m, k int, alpha float32, a []float32) []float32 {
	panels := (m + gemmMR - 1) / gemmMR
	p := make([]float32, panels*k*gemmMR)
	for i := range m {
		dst := p[(i/gemmMR)*k*gemmMR+i%gemmMR:]
		if tA { // op(A)[i][l] = a[l*m+i]
			for l := range k {
				dst[l*gemmMR] = alpha * a[l*m+i]
			}
		} else {
			for l, v := range a[i*k : (i+1)*k] {
				dst[l*gemmMR] = alpha * v
			}
		}
	}
	return p
}

// packBT lays op(B) = bᵀ (b is n×k) out as panels of gemmNR columns, row by row (a panel's
// l-th row is gemmNR consecutive values), padding the last panel with zeros.
func packBT(n, k int, b []float32) []float32 {
	panels := (n + gemmNR - 1) / gemmNR
	p := make([]float32, panels*k*gemmNR)
	for jp := range panels {
		j0 := jp * gemmNR
		cols := min(gemmNR, n-j0)
		dst, src := p[jp*k*gemmNR:], b[j0*k:]
		for l := range k { // written in order, read from cols rows of b at once
			row := dst[l*gemmNR : l*gemmNR+cols]
			for j := range row {
				row[j] = src[j*k+l]
			}
		}
	}
	return p
}

// packEdge copies the last, partial column panel of op(B) = b (k×n) into k rows of gemmNR
// values, padded with zeros; the full panels are read from b in place.
func packEdge(n, k int, b []float32) []float32 {
	j0 := n / gemmNR * gemmNR
	p := make([]float32, k*gemmNR)
	for l := range k {
		copy(p[l*gemmNR:], b[l*n+j0:(l+1)*n])
	}
	return p
}

// gonumSgemm is sgemm through gonum's pure-Go BLAS: the path without the kernel, and the
// reference the kernel is tested against.
func gonumSgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, b []float32, beta float32, c []float32) {
	ta, tb := blas.NoTrans, blas.NoTrans
	lda, ldb := k, n
	if tA {
		ta, lda = blas.Trans, m
	}
	if tB {
		tb, ldb = blas.Trans, k
	}
	gonum.Implementation{}.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, n)
}
