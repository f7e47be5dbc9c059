// Helpers shared by the convolution kernel files (csrc/cpu/conv.cpp, csrc/cpu/depthwise.cpp).
#pragma once
#include <algorithm>
#include <cstdint>

#include "common.h"

namespace lamina {

// A float scratch block from the caching allocator: steady-state calls get the same block back.
struct Scratch {
  float* p = nullptr;
  size_t cap = 0;
  explicit Scratch(int64_t n) {
    p = static_cast<float*>(host_alloc(size_t(std::max<int64_t>(n, 1)) * sizeof(float), &cap));
  }
  ~Scratch() { host_free(p, cap); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// Checks a (height, width) argument such as strides or dilation: 2 values, each >= lo.
inline void check_pair(const char* op, const char* what, const Shape& v, int64_t lo) {
  LAMINA_CHECK(v.size() == 2, op << ": expected 2 " << what << " values (height, width), received " << v.size());
  LAMINA_CHECK(v[0] >= lo && v[1] >= lo, op << ": " << what << " must be >= " << lo << ", received "
                                            << shape_str(v));
}

// p[0:n] = 0, split across threads when `par` and n is large.
inline void zero_fill(float* p, int64_t n, bool par = true) {
#pragma omp parallel for schedule(static) if (par && n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) p[i] = 0.f;
}

// Output length of a window of k taps spaced `dilation` apart, sliding by `stride` over an input
// of `padded` elements (padding included); 0 when the window is longer than the input.
inline int64_t window_out_len(int64_t padded, int64_t k, int64_t stride, int64_t dilation) {
  const int64_t eff = (k - 1) * dilation + 1;
  return padded >= eff ? (padded - eff) / stride + 1 : 0;
}

}  // namespace lamina
