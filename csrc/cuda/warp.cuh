// Warp-level helpers of the row kernels (nn.cu, misc.cu, norm.cu, attention.cu): one warp works
// on each lane (an (outer, inner) position of an (outer, R, inner) view) and reduces across its 32
// threads with shuffles. Every thread of a warp must call them (full-mask shuffles).
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

namespace lamina {
namespace gpu {

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The warp's largest value; NaN if any thread's is NaN.
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = (w > v || w != w) ? w : v;
  }
  return v;
}

// log-sum-exp of a lane of R elements with stride st; l: the thread's place in its warp (every
// thread of the warp gets the result).
__device__ __forceinline__ float lane_lse(const float* x, int64_t R, int64_t st, int l) {
  float m = -INFINITY;
  for (int64_t r = l; r < R; r += 32) {
    const float v = x[r * st];
    m = (v > m || v != v) ? v : m;
  }
  m = warp_max(m);
  float s = 0.f;
  for (int64_t r = l; r < R; r += 32) s += expf(x[r * st] - m);
  return m + logf(warp_sum(s));
}

// One warp per lane of nlanes, grid-stride; `_l` is the thread's place in its warp. Every thread
// of a warp runs the same iterations (the warp-wide sums inside need all 32).
#define WARP_LANES(lane, nlanes)                                                                     \
  const int _w = threadIdx.x / 32, _l = threadIdx.x % 32;                                            \
  for (int64_t lane = int64_t(blockIdx.x) * (blockDim.x / 32) + _w; lane < (nlanes);                 \
       lane += int64_t(gridDim.x) * (blockDim.x / 32))

// Blocks of 256 threads (8 warps) for `lanes` lanes, capped (the lanes loop covers the rest).
inline unsigned warp_grid(int64_t lanes) {
  const int64_t b = (lanes + 7) / 8;
  return unsigned(b < 1 ? 1 : (b > 65535 * 4 ? 65535 * 4 : b));
}

}  // namespace gpu
}  // namespace lamina
