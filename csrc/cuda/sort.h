// Sorting on the device (sort.cu): full sorts and top-k along the last axis, the sort and segment
// sums of IndexedSlices, and the random kernels built on a sort or an inverse CDF (categorical
// draws, shuffles). Same names, arguments, checks and results as the CPU module's
// (csrc/cpu/sorting.cpp, embedding.cpp, random.cpp).
#pragma once
#include <cstdint>

#include "gpu.h"

namespace lamina {
namespace gpu {

void sort_rows(const Buffer& x, int64_t outer, int64_t n, int64_t k, bool descending, Buffer& values, Buffer& indices);
int64_t sparse_sort(const Buffer& ids, int64_t V, Buffer& perm);
void sparse_segment_sum(const Buffer& ids, const Buffer& values, int64_t D, const Buffer& perm, Buffer& out_ids,
                        Buffer& out_values);
void random_categorical(const Buffer& logits, int64_t B, int64_t K, uint64_t seed, uint64_t counter, int64_t S,
                        Buffer& out);
void random_shuffle(const Buffer& x, int64_t outer, int64_t R, int64_t inner, uint64_t seed, uint64_t counter,
                    Buffer& out);
// Test hook: out = glibc's exp (exp_glibc.cuh, random_categorical's weights) of x, computed on the
// device; float64 values held in int64 buffers.
void glibc_exp(const Buffer& x, Buffer& out);

}  // namespace gpu
}  // namespace lamina
