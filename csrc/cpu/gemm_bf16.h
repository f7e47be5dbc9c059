// bfloat16 GEMM with float32 accumulation (gemm_bf16.cpp): C[M,N] = op(A) @ op(B) (+ C when
// accumulate) with A, B bfloat16 (uint16 bits, row-major, lda / ldb row strides), C float32.
#pragma once
#include <cstdint>

namespace lamina {
void bf16gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
              const uint16_t* B, int64_t ldb, bool accumulate, float* C, int64_t ldc);
// A bfloat16 destination: the product (plus its own values when accumulating, plus a bias per
// column) rounded once into d (row stride ldd).
struct BF16Output {
  uint16_t* d = nullptr;
  int64_t ldd = 0;
  const float* bias_f = nullptr;     // a float32 bias, or
  const uint16_t* bias_b = nullptr;  // a bfloat16 one (or neither)
};
// bf16gemm with the result in `out` (bfloat16) when given: C is then scratch for partial sums (may
// be null: allocated when needed), and `accumulate` adds out's own values.
void bf16gemm_out(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
                  const uint16_t* B, int64_t ldb, bool accumulate, float* C, int64_t ldc, const BF16Output* out);
// Whether bf16gemm runs on AVX512-BF16 (else it widens to float32 and calls sgemm).
bool bf16_gemm_native();
// -1: AVX512-BF16 where the CPU has it (the default); 0: always widen; 1: AVX512-BF16 if present.
void set_bf16_gemm(int mode);
}  // namespace lamina
