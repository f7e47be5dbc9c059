// Single-precision GEMM on row-major matrices:
//   C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
// op(A) = A (lda = row stride of A, A is M x K) or A^T (A stored K x M); likewise B.
// beta == 0 overwrites C without reading it (C may hold NaN/garbage).
#pragma once
#include <cstdint>

namespace lamina {
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
}
