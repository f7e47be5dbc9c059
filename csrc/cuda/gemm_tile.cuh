// The tile of lamina's own float32 product kernels (linalg.cu's sgemm_tiled, attention.cu's
// grid_gemm): a block of 256 threads computes a 64 x 64 tile of op(A) op(B), 16-deep slices of K
// staged in shared memory, 4 x 4 results a thread (rows ty + 16 i, columns tx + 16 j of the tile).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace lamina {
namespace gpu {

constexpr int kTileM = 64, kTileN = 64, kTileK = 16;

// The block's shared slices (declare them __shared__ in the kernel).
struct TileSlices {
  float a[kTileK][kTileM + 4];
  float b[kTileK][kTileN + 4];
};

// acc = the tile at (m0, n0) of op(A) op(B): A is M x K row-major (K x M when TA) with leading
// dimension lda, B is K x N (N x K when TB). Every thread of the block must call it (barriers).
template <bool TA, bool TB>
__device__ __forceinline__ void gemm_tile(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M,
                                          int64_t N, int64_t K, int64_t m0, int64_t n0, TileSlices& sh,
                                          float (&acc)[4][4]) {
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
  for (int64_t k0 = 0; k0 < K; k0 += kTileK) {
    for (int l = threadIdx.x; l < kTileM * kTileK; l += 256) {
      int mm, kk;
      if (TA) { mm = l % kTileM; kk = l / kTileM; } else { kk = l % kTileK; mm = l / kTileK; }
      const int64_t gm = m0 + mm, gk = k0 + kk;
      float v = 0.f;
      if (gm < M && gk < K) v = TA ? A[gk * lda + gm] : A[gm * lda + gk];
      sh.a[kk][mm] = v;
    }
    for (int l = threadIdx.x; l < kTileN * kTileK; l += 256) {
      int nn, kk;
      if (TB) { kk = l % kTileK; nn = l / kTileK; } else { nn = l % kTileN; kk = l / kTileN; }
      const int64_t gn = n0 + nn, gk = k0 + kk;
      float v = 0.f;
      if (gn < N && gk < K) v = TB ? B[gn * ldb + gk] : B[gk * ldb + gn];
      sh.b[kk][nn] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = sh.a[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = sh.b[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
}

}  // namespace gpu
}  // namespace lamina
