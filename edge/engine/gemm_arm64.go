//go:build arm64 && !purego

package engine

// gemmPanelNEON computes out[r*ldo+c] = Σ_{kk<4·groups} a[r*lda+kk]·W[c][kk] for r < rows,
// c < 8, from one packed panel w: weights and activations sign extended to int16 (SXTL),
// products accumulated in int32 lanes (SMLAL, SMLAL2), so nothing saturates. Advanced SIMD
// is part of every arm64 CPU.
//
//go:noescape
func gemmPanelNEON(w *int8, groups int, a *int8, lda int, rows int, out *int32, ldo int)

func (k gemmKernel) available() bool { return k == kernGo || k == kernNEON }

func bestKernel() gemmKernel { return kernNEON }

func panelAsm(kern gemmKernel, out []int32, ldo int, a []int8, lda, rows int, pw []int8, groups int, _ []int32) bool {
	if kern != kernNEON {
		return false
	}
	if groups == 0 {
		for r := 0; r < rows; r++ {
			clear(out[r*ldo : r*ldo+panelN])
		}
		return true
	}
	gemmPanelNEON(&pw[0], groups, &a[0], lda, rows, &out[0], ldo)
	return true
}
