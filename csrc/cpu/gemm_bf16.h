// bfloat16 GEMM with float32 accumulation (gemm_bf16.cpp): C[M,N] = op(A) @ op(B) (+ C when
// accumulate) with A, B bfloat16 (uint16 bits, row-major, lda / ldb row strides), C float32.
#pragma once
#include <cstdint>
#include <vector>

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
// op(B) (K x N; op(B)(k, j) = trans_b ? b[j*ldb + k] : b[k*ldb + j], bfloat16) packed once for many
// products with few rows each, as the recurrences (rnn.cpp) multiply their recurrent kernel at
// every step: gemm() then runs C[0:M, 0:N] (=|+=) A[0:M, 0:K] @ op(B) on the calling thread (no
// thread team of its own, so it may run inside a parallel region), packing only A. Without
// AVX512-BF16 it keeps op(B) widened to float32 and widens A's rows for sgemm: the same products,
// float32 sums. On AMX (bf16gemm's path when it is made) the products run on its tiles; the path is
// fixed when it is made.
class BF16PackedB {
 public:
  BF16PackedB(bool trans_b, const uint16_t* b, int64_t ldb, int64_t K, int64_t N);
  ~BF16PackedB();
  BF16PackedB(const BF16PackedB&) = delete;
  BF16PackedB& operator=(const BF16PackedB&) = delete;
  // A row-major bfloat16 with row stride lda; C float32, row stride ldc; accumulate adds into C.
  void gemm(int64_t M, const uint16_t* A, int64_t lda, bool accumulate, float* C, int64_t ldc) const;
  bool native() const { return native_; }

 private:
  int64_t K_, N_;
  int path_;     // bf16gemm's path when made: 0 widened, 1 AVX512-BF16, 2 AMX
  bool native_;
  std::vector<int64_t> offs_;  // AVX512-BF16: each (NC, KC) block's start in buf_ (uint16 elements)
  void* buf_ = nullptr;        // the packed blocks (bfloat16; AMX: one block); widened: op(B) (K x N) in float32
  size_t cap_ = 0;             // from the caching allocator (host_alloc)
};
// Whether bf16gemm runs on bfloat16 instructions, AMX or AVX512-BF16 (else it widens to float32 and
// calls sgemm).
bool bf16_gemm_native();
// bf16gemm's path now: "amx", "avx512bf16" or "widened".
const char* bf16_gemm_path();
// -1: the best the CPU has, AMX, else AVX512-BF16, else widened (the default); 0: always widen;
// 1: AVX512-BF16 if present (not AMX); 2: AMX if present (as -1).
void set_bf16_gemm(int mode);
}  // namespace lamina
