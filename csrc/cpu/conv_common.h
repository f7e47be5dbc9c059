// Helpers shared by the convolution kernel files (csrc/cpu/conv.cpp, csrc/cpu/depthwise.cpp).
#pragma once
#include <algorithm>
#include <cstdint>

#include "../conv_geom.h"
#include "common.h"

namespace lamina {

// Rows and columns of an image zero-padded so that every window of every output pixel lies inside
// (the direct kernels of conv.cpp and conv_direct.cpp).
inline int64_t padded_rows(const ConvGeom& g) { return std::max(g.H + g.pt, (g.OH - 1) * g.sh + (g.KH - 1) * g.dh + 1); }
inline int64_t padded_cols(const ConvGeom& g) { return std::max(g.W + g.pl, (g.OW - 1) * g.sw + (g.KW - 1) * g.dw + 1); }

// p[0:n] = 0, split across threads when `par` and n is large.
inline void zero_fill(float* p, int64_t n, bool par = true) {
#pragma omp parallel for schedule(static) if (par && n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) p[i] = 0.f;
}

}  // namespace lamina
