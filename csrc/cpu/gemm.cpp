// Reference GEMM (blocked loops). Replaced by the packed, AVX2/AVX-512 kernel.
#include "gemm.h"

#include <algorithm>
#include <vector>

namespace lamina {

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
#pragma omp parallel for if (M * N * K > (1 << 18))
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.f) std::fill(c, c + N, 0.f);
    else if (beta != 1.f) for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    for (int64_t k = 0; k < K; ++k) {
      float a = alpha * (ta ? A[k * lda + i] : A[i * lda + k]);
      if (!tb) { const float* b = B + k * ldb; for (int64_t j = 0; j < N; ++j) c[j] += a * b[j]; }
      else { for (int64_t j = 0; j < N; ++j) c[j] += a * B[j * ldb + k]; }
    }
  }
}

}  // namespace lamina
