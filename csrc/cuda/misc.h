// The CUDA module's losses on dense targets, one_hot, take_along_axis, nonzero, triangles, ranges
// and batch_transpose (misc.cu): the CPU kernels' names, arguments and checks (csrc/misc_checks.h).
#pragma once
#include <vector>

#include "gpu.h"

namespace lamina {
namespace gpu {

// categorical cross-entropy on dense (probability) targets, binary cross-entropy (nn.cpp)
void xent_dense(const Buffer& x, const Buffer& t, int64_t outer, int64_t K, int64_t inner, bool logits, double eps,
                Buffer& loss, Buffer& aux);
void xent_dense_grad(const Buffer& x, const Buffer& t, const Buffer& aux, const Buffer& g, int64_t outer, int64_t K,
                     int64_t inner, bool logits, double eps, Buffer* dx, Buffer* dt);
void bce(const Buffer& t, const Buffer& x, bool logits, double eps, Buffer& out);
void bce_grad(const Buffer& t, const Buffer& x, const Buffer& g, bool logits, double eps, Buffer* dx, Buffer* dt);
void one_hot(const Buffer& ids, int64_t outer, int64_t K, int64_t inner, Buffer& out);

// manipulation.cpp's per-position gather and its (deterministic) scatter-add, nonzero, triangles, ranges
void take_along_axis(const Buffer& x, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, int64_t m,
                     Buffer& out);
void take_along_axis_grad(const Buffer& g, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, int64_t m,
                          Buffer& gx);
int64_t count_nonzero(const Buffer& x);
void nonzero(const Buffer& x, const Shape& shape, const std::vector<BufferPtr>& outs);
void tri(const Buffer& x, int64_t batch, int64_t rows, int64_t cols, int64_t k, bool upper, Buffer& out);
void arange(Buffer& out, double start, double step);
void linspace(Buffer& out, double start, double stop, bool endpoint);

// conv.cpp's layout change between channels_first and channels_last: out[b, s, r] = x[b, r, s]
void batch_transpose(const Buffer& x, int64_t B, int64_t R, int64_t S, Buffer& out);

}  // namespace gpu
}  // namespace lamina
