//go:build !purego

#include "textflag.h"

// Register use (both kernels): SI packed panel, CX groups, DI activations (row tile), R8 lda,
// R13 3*lda, R9 rows left, R10 out (row tile), R11 ldo in bytes; AX, BX, R14 walk one tile's
// weights and activation rows, DX counts groups.

// func gemmPanelAVX2(w *int8, groups int, a *int8, lda int, rows int, out *int32, ldo int)
TEXT ·gemmPanelAVX2(SB), NOSPLIT, $0-56
	MOVQ w+0(FP), SI
	MOVQ groups+8(FP), CX
	MOVQ a+16(FP), DI
	MOVQ lda+24(FP), R8
	MOVQ rows+32(FP), R9
	MOVQ out+40(FP), R10
	MOVQ ldo+48(FP), R11
	SHLQ $2, R11
	LEAQ (R8)(R8*2), R13

avx2_rows4:
	// Tiles of 4 rows: Y(2r) holds channels 0-3 and Y(2r+1) channels 4-7 of row r, as pairs
	// of partial sums (k0+k1, k2+k3) folded by VPHADDD at the end.
	CMPQ R9, $4
	JLT  avx2_rows1
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	VPXOR Y4, Y4, Y4
	VPXOR Y5, Y5, Y5
	VPXOR Y6, Y6, Y6
	VPXOR Y7, Y7, Y7
	MOVQ  SI, AX
	MOVQ  DI, BX
	MOVQ  CX, DX

avx2_loop4:
	VPMOVSXBW (AX), Y8
	VPMOVSXBW 16(AX), Y9
	VPBROADCASTD (BX), X10
	VPMOVSXBW    X10, Y10
	VPMADDWD     Y8, Y10, Y11
	VPADDD       Y11, Y0, Y0
	VPMADDWD     Y9, Y10, Y11
	VPADDD       Y11, Y1, Y1
	VPBROADCASTD (BX)(R8*1), X10
	VPMOVSXBW    X10, Y10
	VPMADDWD     Y8, Y10, Y11
	VPADDD       Y11, Y2, Y2
	VPMADDWD     Y9, Y10, Y11
	VPADDD       Y11, Y3, Y3
	VPBROADCASTD (BX)(R8*2), X10
	VPMOVSXBW    X10, Y10
	VPMADDWD     Y8, Y10, Y11
	VPADDD       Y11, Y4, Y4
	VPMADDWD     Y9, Y10, Y11
	VPADDD       Y11, Y5, Y5
	VPBROADCASTD (BX)(R13*1), X10
	VPMOVSXBW    X10, Y10
	VPMADDWD     Y8, Y10, Y11
	VPADDD       Y11, Y6, Y6
	VPMADDWD     Y9, Y10, Y11
	VPADDD       Y11, Y7, Y7
	ADDQ $32, AX
	ADDQ $4, BX
	DECQ DX
	JNZ  avx2_loop4

	LEAQ (R11)(R11*2), R12
	VPHADDD Y1, Y0, Y0
	VPERMQ  $0xD8, Y0, Y0
	VMOVDQU Y0, (R10)
	VPHADDD Y3, Y2, Y2
	VPERMQ  $0xD8, Y2, Y2
	VMOVDQU Y2, (R10)(R11*1)
	VPHADDD Y5, Y4, Y4
	VPERMQ  $0xD8, Y4, Y4
	VMOVDQU Y4, (R10)(R11*2)
	VPHADDD Y7, Y6, Y6
	VPERMQ  $0xD8, Y6, Y6
	VMOVDQU Y6, (R10)(R12*1)
	LEAQ (DI)(R8*4), DI
	LEAQ (R10)(R11*4), R10
	SUBQ $4, R9
	JMP  avx2_rows4

avx2_rows1:
	TESTQ R9, R9
	JZ    avx2_done
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	MOVQ  SI, AX
	MOVQ  DI, BX
	MOVQ  CX, DX

avx2_loop1:
	VPMOVSXBW (AX), Y8
	VPMOVSXBW 16(AX), Y9
	VPBROADCASTD (BX), X10
	VPMOVSXBW    X10, Y10
	VPMADDWD     Y8, Y10, Y11
	VPADDD       Y11, Y0, Y0
	VPMADDWD     Y9, Y10, Y11
	VPADDD       Y11, Y1, Y1
	ADDQ $32, AX
	ADDQ $4, BX
	DECQ DX
	JNZ  avx2_loop1
	VPHADDD Y1, Y0, Y0
	VPERMQ  $0xD8, Y0, Y0
	VMOVDQU Y0, (R10)
	ADDQ R8, DI
	ADDQ R11, R10
	DECQ R9
	JMP  avx2_rows1

avx2_done:
	VZEROUPPER
	RET

// func gemmPanelVNNI(w *int8, groups int, a *int8, lda int, rows int, out *int32, ldo int, corr *int32)
TEXT ·gemmPanelVNNI(SB), NOSPLIT, $0-64
	MOVQ w+0(FP), SI
	MOVQ groups+8(FP), CX
	MOVQ a+16(FP), DI
	MOVQ lda+24(FP), R8
	MOVQ rows+32(FP), R9
	MOVQ out+40(FP), R10
	MOVQ ldo+48(FP), R11
	MOVQ corr+56(FP), AX
	VMOVDQU (AX), Y14
	SHLQ $2, R11
	LEAQ (R8)(R8*2), R13
	MOVL $0x80808080, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15

vnni_rows8:
	// Tiles of 8 rows, one accumulator (8 channels) per row.
	CMPQ R9, $8
	JLT  vnni_rows1
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	VPXOR Y4, Y4, Y4
	VPXOR Y5, Y5, Y5
	VPXOR Y6, Y6, Y6
	VPXOR Y7, Y7, Y7
	MOVQ  SI, AX
	MOVQ  DI, BX
	LEAQ  (DI)(R8*4), R14
	MOVQ  CX, DX

vnni_loop8:
	VMOVDQU (AX), Y8
	VPBROADCASTD (BX), Y9
	VPXOR        Y15, Y9, Y9
	VPDPBUSD     Y8, Y9, Y0
	VPBROADCASTD (BX)(R8*1), Y9
	VPXOR        Y15, Y9, Y9
	VPDPBUSD     Y8, Y9, Y1
	VPBROADCASTD (BX)(R8*2), Y9
	VPXOR        Y15, Y9, Y9
	VPDPBUSD     Y8, Y9, Y2
	VPBROADCASTD (BX)(R13*1), Y9
	VPXOR        Y15, Y9, Y9
	VPDPBUSD     Y8, Y9, Y3
	VPBROADCASTD (R14), Y9
	VPXOR        Y15, Y9, Y9
	VPDPBUSD     Y8, Y9, Y4
	VPBROADCASTD (R14)(R8*1), Y9
	VPXOR        Y15, Y9, Y9
	VPDPBUSD     Y8, Y9, Y5
	VPBROADCASTD (R14)(R8*2), Y9
	VPXOR        Y15, Y9, Y9
	VPDPBUSD     Y8, Y9, Y6
	VPBROADCASTD (R14)(R13*1), Y9
	VPXOR        Y15, Y9, Y9
	VPDPBUSD     Y8, Y9, Y7
	ADDQ $32, AX
	ADDQ $4, BX
	ADDQ $4, R14
	DECQ DX
	JNZ  vnni_loop8

	LEAQ (R11)(R11*2), R12
	VPSUBD  Y14, Y0, Y0
	VMOVDQU Y0, (R10)
	VPSUBD  Y14, Y1, Y1
	VMOVDQU Y1, (R10)(R11*1)
	VPSUBD  Y14, Y2, Y2
	VMOVDQU Y2, (R10)(R11*2)
	VPSUBD  Y14, Y3, Y3
	VMOVDQU Y3, (R10)(R12*1)
	LEAQ (R10)(R11*4), R10
	VPSUBD  Y14, Y4, Y4
	VMOVDQU Y4, (R10)
	VPSUBD  Y14, Y5, Y5
	VMOVDQU Y5, (R10)(R11*1)
	VPSUBD  Y14, Y6, Y6
	VMOVDQU Y6, (R10)(R11*2)
	VPSUBD  Y14, Y7, Y7
	VMOVDQU Y7, (R10)(R12*1)
	LEAQ (R10)(R11*4), R10
	LEAQ (DI)(R8*8), DI
	SUBQ $8, R9
	JMP  vnni_rows8

vnni_rows1:
	TESTQ R9, R9
	JZ    vnni_done
	VPXOR Y0, Y0, Y0
	MOVQ  SI, AX
	MOVQ  DI, BX
	MOVQ  CX, DX

vnni_loop1:
	VMOVDQU (AX), Y8
	VPBROADCASTD (BX), Y9
	VPXOR        Y15, Y9, Y9
	VPDPBUSD     Y8, Y9, Y0
	ADDQ $32, AX
	ADDQ $4, BX
	DECQ DX
	JNZ  vnni_loop1
	VPSUBD  Y14, Y0, Y0
	VMOVDQU Y0, (R10)
	ADDQ R8, DI
	ADDQ R11, R10
	DECQ R9
	JMP  vnni_rows1

vnni_done:
	VZEROUPPER
	RET

// Byte 0 of each dword of a 128-bit lane into the lane's first 4 bytes.
DATA requantShuf<>+0(SB)/8, $0x808080800c080400
DATA requantShuf<>+8(SB)/8, $0x8080808080808080
DATA requantShuf<>+16(SB)/8, $0x808080800c080400
DATA requantShuf<>+24(SB)/8, $0x8080808080808080
GLOBL requantShuf<>(SB), RODATA|NOPTR, $32

// Dwords 0 and 4: the two lanes' 4 bytes side by side.
DATA requantPerm<>+0(SB)/8, $0x0000000400000000
DATA requantPerm<>+8(SB)/8, $0
DATA requantPerm<>+16(SB)/8, $0
DATA requantPerm<>+24(SB)/8, $0
GLOBL requantPerm<>(SB), RODATA|NOPTR, $32

// func requantAVX2(dst *byte, acc *int32, n, m int, bias, mult, lshift, rshift, rmask, rhalf *int32, p *[4]int32, adds *int32)
TEXT ·requantAVX2(SB), NOSPLIT, $0-96
	MOVQ dst+0(FP), DI
	MOVQ acc+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ bias+32(FP), R8
	MOVQ mult+40(FP), R9
	MOVQ lshift+48(FP), R10
	MOVQ rshift+56(FP), R11
	MOVQ rmask+64(FP), R12
	MOVQ rhalf+72(FP), R13
	MOVQ p+80(FP), AX
	VPBROADCASTD 0(AX), Y10  // add
	VPBROADCASTD 4(AX), Y11  // zp
	VPBROADCASTD 8(AX), Y12  // lo
	VPBROADCASTD 12(AX), Y13 // hi
	MOVQ $0x40000000, AX
	VMOVQ AX, X9
	VPBROADCASTQ X9, Y9      // 2^30 in each qword: the rounding of srdhm
	VMOVDQU requantShuf<>(SB), Y14
	VMOVDQU requantPerm<>(SB), Y15
	MOVQ n+16(FP), AX        // row stride
	MOVQ m+24(FP), DX        // rows left
	MOVQ adds+88(FP), R14    // per-row adds, or nil
	ANDQ $-8, CX

requant_row:
	TESTQ DX, DX
	JZ    requant_end
	TESTQ R14, R14
	JZ    requant_noadd
	VPBROADCASTD (R14), Y10
	ADDQ  $4, R14

requant_noadd:
	XORQ BX, BX              // channel index

requant_loop:
	CMPQ BX, CX
	JGE  requant_done
	VMOVDQU  (SI)(BX*4), Y0
	VPADDD   (R8)(BX*4), Y0, Y0
	VPADDD   Y10, Y0, Y0
	VMOVDQU  (R10)(BX*4), Y5
	VPSLLVD  Y5, Y0, Y0       // x << lshift, wrapping like int32 multiplication
	VMOVDQU  (R9)(BX*4), Y1
	VPMULDQ  Y1, Y0, Y2       // even lanes: x·q as int64
	VPADDQ   Y9, Y2, Y2
	VPSRLQ   $31, Y2, Y2      // low dword = (x·q + 2^30) >> 31
	VPSRLQ   $32, Y0, Y3
	VPSRLQ   $32, Y1, Y4
	VPMULDQ  Y4, Y3, Y3       // odd lanes
	VPADDQ   Y9, Y3, Y3
	VPSLLQ   $1, Y3, Y3       // high dword = (x·q + 2^30) >> 31
	VPBLENDD $0xAA, Y3, Y2, Y2
	// RoundingDivideByPOT: v>>rshift, +1 when the remainder exceeds half (ties away from 0).
	VPAND    (R12)(BX*4), Y2, Y6   // remainder
	VPSRAD   $31, Y2, Y7           // −1 where v < 0
	VMOVDQU  (R13)(BX*4), Y8
	VPSUBD   Y7, Y8, Y8            // threshold = half + (v < 0)
	VMOVDQU  (R11)(BX*4), Y5
	VPSRAVD  Y5, Y2, Y2
	VPCMPGTD Y8, Y6, Y6            // −1 where remainder > threshold
	VPSUBD   Y6, Y2, Y2
	VPADDD   Y11, Y2, Y2
	VPMAXSD  Y12, Y2, Y2
	VPMINSD  Y13, Y2, Y2
	VPSHUFB  Y14, Y2, Y2
	VPERMD   Y2, Y15, Y2
	VMOVQ    X2, (DI)(BX*1)
	ADDQ     $8, BX
	JMP      requant_loop

requant_done:
	ADDQ AX, DI
	LEAQ (SI)(AX*4), SI
	DECQ DX
	JMP  requant_row

requant_end:
	VZEROUPPER
	RET


// DWPIXELS_LOOP is the loop of dwPixelsS8AVX2 and dwPixelsU8AVX2, which differ only in how
// LOAD widens 8 bytes to int32 lanes (sign or zero extension). Per pixel, per 8 channels, per
// tap: acc += (x−zp)·w with VPMADDWD (the high halves of the weights are 0); after each pixel
// the same taps move pixStride bytes further and acc to its next row. N is the argument n,
// passed in so that vet's asmdecl checks its offset at each use.
#define DWPIXELS_LOOP(LOAD, N) \
pix: \
	TESTQ DX, DX; \
	JZ    end; \
	XORQ  BX, BX; \
chan: \
	CMPQ BX, CX; \
	JGE  pixdone; \
	VPXOR Y0, Y0, Y0; \
	XORQ  R12, R12; \
tap: \
	MOVQ    (R8)(R12*8), R13; \
	ADDQ    BX, R13; \
	LOAD   (SI)(R13*1), Y1; \
	VPSUBD  Y15, Y1, Y1; \
	MOVQ    (R9)(R12*8), R14; \
	ADDQ    BX, R14; \
	VPMADDWD (R11)(R14*4), Y1, Y1; \
	VPADDD  Y1, Y0, Y0; \
	INCQ    R12; \
	CMPQ    R12, R10; \
	JLT     tap; \
	VMOVDQU Y0, (DI)(BX*4); \
	ADDQ    $8, BX; \
	JMP     chan; \
pixdone: \
	MOVQ N, R12; \
	LEAQ (DI)(R12*4), DI; \
	ADDQ AX, SI; \
	DECQ DX; \
	JMP  pix; \
end: \
	VZEROUPPER; \
	RET

// func dwPixelsS8AVX2(acc *int32, src *byte, soff, woff *int, ntaps int, f *int32, n int, zp int32, npix, pixStride int)
TEXT ·dwPixelsS8AVX2(SB), NOSPLIT, $0-80
	MOVQ acc+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ soff+16(FP), R8
	MOVQ woff+24(FP), R9
	MOVQ ntaps+32(FP), R10
	MOVQ f+40(FP), R11
	MOVQ n+48(FP), CX
	MOVL zp+56(FP), AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	MOVQ npix+64(FP), DX
	MOVQ pixStride+72(FP), AX
	ANDQ $-8, CX

	DWPIXELS_LOOP(VPMOVSXBD, n+48(FP))

// func dwPixelsU8AVX2(acc *int32, src *byte, soff, woff *int, ntaps int, f *int32, n int, zp int32, npix, pixStride int)
TEXT ·dwPixelsU8AVX2(SB), NOSPLIT, $0-80
	MOVQ acc+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ soff+16(FP), R8
	MOVQ woff+24(FP), R9
	MOVQ ntaps+32(FP), R10
	MOVQ f+40(FP), R11
	MOVQ n+48(FP), CX
	MOVL zp+56(FP), AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	MOVQ npix+64(FP), DX
	MOVQ pixStride+72(FP), AX
	ANDQ $-8, CX

	DWPIXELS_LOOP(VPMOVZXBD, n+48(FP))

// func requantSingleAVX2(dst *byte, acc *int32, n, m int, bias, mult, ts, tsm1 *int32, p *[4]int32, adds *int32)
TEXT ·requantSingleAVX2(SB), NOSPLIT, $0-80
	MOVQ dst+0(FP), DI
	MOVQ acc+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ bias+32(FP), R8
	MOVQ mult+40(FP), R9
	MOVQ ts+48(FP), R10
	MOVQ tsm1+56(FP), R11
	MOVQ p+64(FP), AX
	VPBROADCASTD 0(AX), Y10  // add
	VPBROADCASTD 4(AX), Y11  // zp
	VPBROADCASTD 8(AX), Y12  // lo
	VPBROADCASTD 12(AX), Y13 // hi
	MOVQ $1, AX
	VMOVQ AX, X9
	VPBROADCASTQ X9, Y9      // 1 in each qword
	MOVQ $0xffffffff, AX
	VMOVQ AX, X8
	VPBROADCASTQ X8, Y8      // low-dword mask of each qword
	VMOVDQU requantShuf<>(SB), Y14
	VMOVDQU requantPerm<>(SB), Y15
	MOVQ n+16(FP), AX        // row stride
	MOVQ m+24(FP), DX        // rows left
	MOVQ adds+72(FP), R14    // per-row adds, or nil
	ANDQ $-8, CX

single_row:
	TESTQ DX, DX
	JZ    single_end
	TESTQ R14, R14
	JZ    single_noadd
	VPBROADCASTD (R14), Y10
	ADDQ  $4, R14

single_noadd:
	XORQ BX, BX

single_loop:
	CMPQ BX, CX
	JGE  single_done
	VMOVDQU (SI)(BX*4), Y0
	VPADDD  (R8)(BX*4), Y0, Y0
	VPADDD  Y10, Y0, Y0
	VMOVDQU (R9)(BX*4), Y1
	VMOVDQU (R10)(BX*4), Y5 // ts
	VMOVDQU (R11)(BX*4), Y6 // ts−1

	// Even lanes: t = x·q + 1<<(ts−1); arithmetic t >> ts as (t^s >> ts)^s, s = sign of t.
	VPMULDQ Y1, Y0, Y2
	VPAND   Y8, Y6, Y7
	VPSLLVQ Y7, Y9, Y7
	VPADDQ  Y7, Y2, Y2
	VPXOR   Y7, Y7, Y7
	VPCMPGTQ Y2, Y7, Y7
	VPXOR   Y7, Y2, Y2
	VPAND   Y8, Y5, Y4
	VPSRLVQ Y4, Y2, Y2
	VPXOR   Y7, Y2, Y2       // result in the low dword

	// Odd lanes, moved down to the even positions.
	VPSRLQ  $32, Y0, Y3
	VPSRLQ  $32, Y1, Y4
	VPMULDQ Y4, Y3, Y3
	VPSRLQ  $32, Y6, Y7
	VPSLLVQ Y7, Y9, Y7
	VPADDQ  Y7, Y3, Y3
	VPXOR   Y7, Y7, Y7
	VPCMPGTQ Y3, Y7, Y7
	VPXOR   Y7, Y3, Y3
	VPSRLQ  $32, Y5, Y4
	VPSRLVQ Y4, Y3, Y3
	VPXOR   Y7, Y3, Y3
	VPSLLQ  $32, Y3, Y3
	VPBLENDD $0xAA, Y3, Y2, Y2

	VPADDD   Y11, Y2, Y2
	VPMAXSD  Y12, Y2, Y2
	VPMINSD  Y13, Y2, Y2
	VPSHUFB  Y14, Y2, Y2
	VPERMD   Y2, Y15, Y2
	VMOVQ    X2, (DI)(BX*1)
	ADDQ     $8, BX
	JMP      single_loop

single_done:
	ADDQ AX, DI
	LEAQ (SI)(AX*4), SI
	DECQ DX
	JMP  single_row

single_end:
	VZEROUPPER
	RET

// ADDQ8_LOOP is the loop of addQ8S8AVX2 and addQ8U8AVX2, which differ only in how LOAD
// widens 8 bytes to int32 lanes (sign or zero extension).
#define ADDQ8_LOOP(LOAD) \
loop: \
	CMPQ BX, CX; \
	JGE  done; \
	LOAD (SI)(BX*1), Y0; \
	VPADDD    0(R8), Y0, Y0; \
	VPSLLD    448(R8), Y0, Y0; \
	VPMULDQ  64(R8), Y0, Y4; \
	VPADDQ   96(R8), Y4, Y4; \
	VPCMPGTQ Y4, Y15, Y6; \
	VPXOR    Y6, Y4, Y4; \
	VPSRLQ   128(R8), Y4, Y4; \
	VPXOR    Y6, Y4, Y4; \
	VPSRLQ   $32, Y0, Y5; \
	VPMULDQ  64(R8), Y5, Y5; \
	VPADDQ   96(R8), Y5, Y5; \
	VPCMPGTQ Y5, Y15, Y6; \
	VPXOR    Y6, Y5, Y5; \
	VPSRLQ   128(R8), Y5, Y5; \
	VPXOR    Y6, Y5, Y5; \
	VPSLLQ   $32, Y5, Y5; \
	VPBLENDD $0xAA, Y5, Y4, Y0; \
	LOAD (DX)(BX*1), Y1; \
	VPADDD    32(R8), Y1, Y1; \
	VPSLLD    448(R8), Y1, Y1; \
	VPMULDQ  160(R8), Y1, Y4; \
	VPADDQ   192(R8), Y4, Y4; \
	VPCMPGTQ Y4, Y15, Y6; \
	VPXOR    Y6, Y4, Y4; \
	VPSRLQ   224(R8), Y4, Y4; \
	VPXOR    Y6, Y4, Y4; \
	VPSRLQ   $32, Y1, Y5; \
	VPMULDQ  160(R8), Y5, Y5; \
	VPADDQ   192(R8), Y5, Y5; \
	VPCMPGTQ Y5, Y15, Y6; \
	VPXOR    Y6, Y5, Y5; \
	VPSRLQ   224(R8), Y5, Y5; \
	VPXOR    Y6, Y5, Y5; \
	VPSLLQ   $32, Y5, Y5; \
	VPBLENDD $0xAA, Y5, Y4, Y1; \
	TESTQ R9, R9; \
	JZ    add; \
	VPSUBD Y1, Y15, Y1; \
add: \
	VPADDD Y1, Y0, Y0; \
	VPMULDQ  256(R8), Y0, Y4; \
	VPADDQ   288(R8), Y4, Y4; \
	VPCMPGTQ Y4, Y15, Y6; \
	VPXOR    Y6, Y4, Y4; \
	VPSRLQ   320(R8), Y4, Y4; \
	VPXOR    Y6, Y4, Y4; \
	VPSRLQ   $32, Y0, Y5; \
	VPMULDQ  256(R8), Y5, Y5; \
	VPADDQ   288(R8), Y5, Y5; \
	VPCMPGTQ Y5, Y15, Y6; \
	VPXOR    Y6, Y5, Y5; \
	VPSRLQ   320(R8), Y5, Y5; \
	VPXOR    Y6, Y5, Y5; \
	VPSLLQ   $32, Y5, Y5; \
	VPBLENDD $0xAA, Y5, Y4, Y0; \
	VPADDD  352(R8), Y0, Y0; \
	VPMAXSD 384(R8), Y0, Y0; \
	VPMINSD 416(R8), Y0, Y0; \
	VPSHUFB Y14, Y0, Y0; \
	VPERMD  Y0, Y13, Y0; \
	VMOVQ   X0, (DI)(BX*1); \
	ADDQ    $8, BX; \
	JMP     loop; \
done: \
	VZEROUPPER; \
	RET

// func addQ8S8AVX2(dst, a, b *byte, n int, vec *[addQ8VecN][8]int32, sub bool)
TEXT ·addQ8S8AVX2(SB), NOSPLIT, $0-41
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ vec+32(FP), R8
	MOVBQZX sub+40(FP), R9
	ANDQ $-8, CX
	XORQ BX, BX
	VPXOR Y15, Y15, Y15
	VMOVDQU requantShuf<>(SB), Y14
	VMOVDQU requantPerm<>(SB), Y13

	ADDQ8_LOOP(VPMOVSXBD)

// func addQ8U8AVX2(dst, a, b *byte, n int, vec *[addQ8VecN][8]int32, sub bool)
TEXT ·addQ8U8AVX2(SB), NOSPLIT, $0-41
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ vec+32(FP), R8
	MOVBQZX sub+40(FP), R9
	ANDQ $-8, CX
	XORQ BX, BX
	VPXOR Y15, Y15, Y15
	VMOVDQU requantShuf<>(SB), Y14
	VMOVDQU requantPerm<>(SB), Y13

	ADDQ8_LOOP(VPMOVZXBD)

// func requantFloatAVX2(dst *byte, acc *int32, n, m int, bias *int32, fscale *float32, p *[4]int32, adds *int32)
TEXT ·requantFloatAVX2(SB), NOSPLIT, $0-64
	MOVQ dst+0(FP), DI
	MOVQ acc+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ bias+32(FP), R8
	MOVQ fscale+40(FP), R9
	MOVQ p+48(FP), AX
	VPBROADCASTD 0(AX), Y10  // add
	VPBROADCASTD 4(AX), Y11  // zp
	VPBROADCASTD 8(AX), Y12  // lo
	VPBROADCASTD 12(AX), Y13 // hi
	VMOVDQU requantShuf<>(SB), Y14
	VMOVDQU requantPerm<>(SB), Y15
	MOVQ n+16(FP), AX        // row stride
	MOVQ m+24(FP), DX        // rows left
	MOVQ adds+56(FP), R14    // per-row adds, or nil
	ANDQ $-8, CX

float_row:
	TESTQ DX, DX
	JZ    float_end
	TESTQ R14, R14
	JZ    float_noadd
	VPBROADCASTD (R14), Y10
	ADDQ  $4, R14

float_noadd:
	XORQ BX, BX

float_loop:
	CMPQ BX, CX
	JGE  float_done
	VMOVDQU   (SI)(BX*4), Y0
	VPADDD    (R8)(BX*4), Y0, Y0
	VPADDD    Y10, Y0, Y0
	VCVTDQ2PS Y0, Y0
	VMULPS    (R9)(BX*4), Y0, Y0
	VCVTPS2DQ Y0, Y0
	VPADDD    Y11, Y0, Y0
	VPMAXSD   Y12, Y0, Y0
	VPMINSD   Y13, Y0, Y0
	VPSHUFB   Y14, Y0, Y0
	VPERMD    Y0, Y15, Y0
	VMOVQ     X0, (DI)(BX*1)
	ADDQ      $8, BX
	JMP       float_loop

float_done:
	ADDQ AX, DI
	LEAQ (SI)(AX*4), SI
	DECQ DX
	JMP  float_row

float_end:
	VZEROUPPER
	RET
