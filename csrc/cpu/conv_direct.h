// Direct float32 convolution on AVX-512 or AVX2 for layers with many input channels
// (conv_direct.cpp): no im2col matrix, the register tiles read a zero-padded copy of the image's rows.
#pragma once
#include <cstdint>

#include "../conv_geom.h"

namespace lamina {
namespace convdirect {

// The CPU runs AVX-512 or AVX2 (simd_level() >= 1), O is a multiple of 16, C >= 16, and the product is
// not a plain GEMM (1x1, stride 1, unpadded): forward and filter_grad apply.
bool usable(const ConvGeom& g);
// The input gradient as a convolution (stride 1, padding at most the window's reach): see
// transposed(); usable() holds for that geometry.
bool usable_for_input_grad(const ConvGeom& g);
// The geometry of dx = conv(dout, flip_kernel(w)) for a stride-1 convolution: dout's rows padded
// by (KH - 1) * dh - pt on top (and as needed below), the kernel flipped with in/out swapped.
ConvGeom transposed(const ConvGeom& g);
// wt[kh, kw, o, c] = w[KH - 1 - kh, KW - 1 - kw, c, o]  (w: g's kernel, KH*KW*C*O floats).
void flip_kernel(const ConvGeom& g, const float* w, float* wt);

// Whether forward() and filter_grad() take the Winograd path (conv_direct.cpp): 3 x 3 or 5 x 5,
// stride 1, no dilation, C a multiple of 16, 16 tiles an image or more, C O at most 256 * 256;
// g_winograd switches it off for comparisons.
extern bool g_winograd;
bool winograd_usable(const ConvGeom& g);
// out (N, OH, OW, O) = conv(x (N, H, W, C), w (KH, KW, C, O)).
void forward(const ConvGeom& g, const float* x, const float* w, float* out);
// dw (KH, KW, C, O) = the filter gradient for dout (N, OH, OW, O); overwrites dw.
void filter_grad(const ConvGeom& g, const float* x, const float* dout, float* dw);

}  // namespace convdirect
}  // namespace lamina
