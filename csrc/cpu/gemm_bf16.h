// bfloat16 GEMM with float32 accumulation (gemm_bf16.cpp): C[M,N] = op(A) @ op(B) (+ C when
// accumulate) with A, B bfloat16 (uint16 bits, row-major, lda / ldb row strides), C float32.
#pragma once
#include <cstdint>

namespace lamina {
void bf16gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
              const uint16_t* B, int64_t ldb, bool accumulate, float* C, int64_t ldc);
// Whether bf16gemm runs on AVX512-BF16 (else it widens to float32 and calls sgemm).
bool bf16_gemm_native();
// -1: AVX512-BF16 where the CPU has it (the default); 0: always widen; 1: AVX512-BF16 if present.
void set_bf16_gemm(int mode);
}  // namespace lamina
