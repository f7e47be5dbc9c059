// The fused scaled dot-product attention on the GPU (attention.cu), forward and backward: the CPU
// module's attention_forward / attention_backward (csrc/cpu/attention.cpp), same arguments.
#pragma once
#include "gpu.h"

namespace lamina {
namespace gpu {

// out = softmax(scale Q K^T + bias, masked) V; stats (B, N, Tq, 2), when given, receives each
// row's softmax max and 1 / sum. float32, or bfloat16 (mixed precision, through cuBLAS's bfloat16
// products; Unsupported without them: the host runs the call).
void attention_forward(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* bias, const Buffer* mask,
                       Buffer& out, Buffer* stats, int64_t B, int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H,
                       int64_t Hv, double scale, bool causal, const Shape& q_strides, const Shape& k_strides,
                       const Shape& v_strides, const Shape& out_strides, const Shape& bias_strides,
                       const Shape& mask_strides);

// dq, dk, dv (each optional) and dlogits (optional, (B, N, Tq, Tk)) from dout and the forward's
// out and stats.
void attention_backward(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* bias, const Buffer* mask,
                        const Buffer& out, const Buffer& stats, const Buffer& dout, Buffer* dq, Buffer* dk, Buffer* dv,
                        Buffer* dlogits, int64_t B, int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H,
                        int64_t Hv, double scale, bool causal, const Shape& q_strides, const Shape& k_strides,
                        const Shape& v_strides, const Shape& out_strides, const Shape& bias_strides,
                        const Shape& mask_strides);

}  // namespace gpu
}  // namespace lamina
