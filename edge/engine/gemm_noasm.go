//go:build !amd64 || purego

package engine

func (k gemmKernel) available() bool { return k == kernGo }

func bestKernel() gemmKernel { return kernGo }

// panelAsm reports that this architecture has no SIMD kernel yet: panelGo runs instead.
func panelAsm(gemmKernel, []int32, int, []int8, int, int, []int8, int, []int32) bool {
	return false
}

func requantAsm(*requantChannels, []byte, []int32, int, []int32) int { return 0 }

func dwPixelsAsm([]int32, []byte, []int, []int, []int32, int, int32, bool, int, int) int {
	return 0
}

func addQ8Asm(*addQ8, []byte, []byte, []byte, bool) int { return 0 }
