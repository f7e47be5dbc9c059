// The CUDA module's int8 inference kernels (quant.cu): the CPU module's qgemm_pack,
// qgemm_packed_bytes, qmatmul, qconv2d_forward, qconv2d_fused, qdepthwise2d, qdepthwise2d_fused and
// qembedding, with their arguments, checks (csrc/quant_checks.h) and packed weight layout.
#pragma once
#include "gpu.h"

namespace lamina {
namespace gpu {

// quantize.cpp / qgemm.cpp: the packed weights (csrc/quant_checks.h's layout) and the Dense product
int64_t qgemm_packed_bytes(int64_t K, int64_t N);
void qgemm_pack(const Buffer& w, int64_t K, int64_t N, Buffer& packed, Buffer& colsum);
void qmatmul(const Buffer& x, int64_t M, int64_t K, int64_t N, const Buffer& packed, const Buffer& colsum,
             const Buffer& w_scale, const Buffer* bias, Buffer& out, bool relu);

// conv.cpp: Conv2D, and a Conv2D (+ BatchNormalization + clamp) of a fused group
void qconv2d_forward(const Buffer& x, const Shape& xs, const Shape& ws, const Buffer& packed, const Buffer& colsum,
                     const Buffer& w_scale, const Buffer* bias, Buffer& out, const Shape& os, const Shape& strides,
                     const Shape& dilation, const Shape& pads, bool relu);
void qconv2d_fused(const Buffer& x, const Shape& xs, double x_step, const Shape& ws, const Buffer& packed,
                   const Buffer& colsum, const Buffer& w_scale, const Buffer* bias, const Buffer* bn_mean,
                   const Buffer* bn_var, const Buffer* bn_gamma, const Buffer* bn_beta, double bn_eps, double lo,
                   double hi, Buffer& out, const Shape& os, double out_step, Buffer* flags, const Shape& strides,
                   const Shape& dilation, const Shape& pads, const Shape& pool);

// quantize.cpp: DepthwiseConv2D (plain and fused) and Embedding
void qdepthwise2d(const Buffer& x, const Shape& xs, const Buffer& w, const Shape& ws, const Buffer& w_scale,
                  const Buffer* bias, Buffer& out, const Shape& os, const Shape& strides, const Shape& dilation,
                  const Shape& pads);
void qdepthwise2d_fused(const Buffer& x, const Shape& xs, double x_step, const Buffer& w, const Shape& ws,
                        const Buffer& w_scale, const Buffer* bias, const Buffer* bn_mean, const Buffer* bn_var,
                        const Buffer* bn_gamma, const Buffer* bn_beta, double bn_eps, double lo, double hi,
                        Buffer& out, const Shape& os, double out_step, Buffer* flags, const Shape& strides,
                        const Shape& dilation, const Shape& pads);
void qembedding(const Buffer& table, int64_t V, int64_t D, const Buffer& scale, const Buffer& ids, Buffer& out);

}  // namespace gpu
}  // namespace lamina
