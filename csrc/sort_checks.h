// Argument checks of the sorting kernels and of the kernels built on a sort (sort_rows;
// sparse_sort and sparse_segment_sum; random_categorical and random_shuffle), shared by the CPU
// module (csrc/cpu/sorting.cpp, embedding.cpp, random.cpp) and the CUDA module
// (csrc/cuda/sort.cu): the same checks and messages on every device, over any buffer type with
// `numel` and `dtype`. The checks that depend on the data (ids in range, a valid permutation)
// stay with each kernel.
#pragma once
#include "checks.h"

namespace lamina {
namespace sort_args {

template <class B>
void require_int(const char* op, const char* arg, const B& b) {
  if (b.dtype != I32 && b.dtype != I64) {
    Msg os;
    os << op << ": expected " << arg << " of dtype int32 or int64, received " << dtype_name(b.dtype);
    throw TypeError(os.str());
  }
}

// sort_rows: x (outer, n) of float32, int32 or int64; values and indices (outer, k).
template <class B>
void check_sort_rows(const B& xb, int64_t outer, int64_t n, int64_t k, const B& vb, const B& ib) {
  LAMINA_CHECK(outer >= 0 && n >= 0, "sort: negative extent");
  LAMINA_CHECK(k >= 0 && k <= n, "top_k: k must be between 0 and the axis size " << n << ", received " << k);
  LAMINA_CHECK(xb.numel == outer * n, "sort: input holds " << xb.numel << " elements, expected " << outer * n);
  LAMINA_CHECK(vb.numel == outer * k && ib.numel == outer * k, "sort: outputs must hold " << outer * k << " elements");
  check_dtype("sort", "values", vb, xb.dtype);
  check_dtype("sort", "indices", ib, I64);
  LAMINA_CHECK(xb.dtype == F32 || xb.dtype == I32 || xb.dtype == I64,
               "sort: bool tensors cannot be sorted; cast to int32 first");
}

// sparse_sort: ids (n) of int32 or int64, perm (n) int64, V rows.
template <class B>
void check_sparse_sort(const B& ib, int64_t V, const B& pb) {
  const char* op = "IndexedSlices";
  require_int(op, "indices", ib);
  LAMINA_CHECK(V >= 0, op << ": invalid number of rows " << V);
  check_count(op, "perm", pb, ib.numel, I64);
}

// sparse_segment_sum: ids (n), values (n, D) float32, perm (n) int64, out_ids (u) int64,
// out_values (u, D) float32. Returns u.
template <class B>
int64_t check_segment_sum(const B& ib, const B& vb, int64_t D, const B& pb, const B& oib, const B& ovb) {
  const char* op = "sparse_deduplicate";
  require_int(op, "indices", ib);
  LAMINA_CHECK(D >= 0, op << ": invalid row size " << D);
  const int64_t n = ib.numel;
  check_count(op, "values", vb, n * D, F32);
  check_count(op, "perm", pb, n, I64);
  check_dtype(op, "out_indices", oib, I64);
  const int64_t u = oib.numel;
  check_count(op, "out_values", ovb, u * D, F32);
  return u;
}

// random_categorical: logits (B, K) float32, out (B, S) int32 or int64.
template <class Buf>
void check_categorical(const Buf& lb, int64_t B, int64_t K, int64_t S, const Buf& out) {
  check_dtype("categorical", "logits", lb, F32);
  LAMINA_CHECK(B >= 0 && K >= 1 && S >= 0, "categorical: invalid sizes B=" << B << ", K=" << K << ", num_samples=" << S);
  LAMINA_CHECK(lb.numel == B * K, "categorical: logits hold " << lb.numel << " elements, expected " << B << " x " << K);
  LAMINA_CHECK(out.dtype == I32 || out.dtype == I64, "categorical: output must be int32 or int64");
  LAMINA_CHECK(out.numel == B * S, "categorical: out holds " << out.numel << " elements, expected " << B << " x " << S);
}

// random_shuffle: x and out (outer, R, inner) of one dtype.
template <class B>
void check_shuffle(const B& xb, int64_t outer, int64_t R, int64_t inner, const B& ob) {
  LAMINA_CHECK(outer >= 0 && R >= 0 && inner >= 0 && xb.numel == outer * R * inner,
               "shuffle: x holds " << xb.numel << " elements, expected " << outer << " x " << R << " x " << inner);
  check_dtype("shuffle", "out", ob, xb.dtype);
  LAMINA_CHECK(ob.numel == xb.numel, "shuffle: out holds " << ob.numel << " elements, expected " << xb.numel);
}

}  // namespace sort_args
}  // namespace lamina
