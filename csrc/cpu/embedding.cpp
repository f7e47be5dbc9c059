// Embedding lookups, their gradients as row scatter-adds, and the sparse-row helpers of the
// optimizers (sort the ids, sum the rows of repeated ids).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common.h"
#include "device.h"
#include "nn_common.h"
#include "simd.h"
#include "sort_checks.h"
#include "vmath.h"

namespace py = pybind11;

namespace lamina {
namespace {

using namespace nn_common;

// ---- embedding ------------------------------------------------------------------------------

// out[n, :] = table[ids[n], :]
void embedding(const Buffer& tb, int64_t V, int64_t D, const Buffer& ib, Buffer& ob) {
  const char* op = "embedding_lookup";
  LAMINA_CHECK(V >= 0 && D >= 0, op << ": invalid table size " << V << " x " << D);
  check_count(op, "table", tb, V * D, F32);
  require_int(op, "ids", ib);
  const int64_t n = ib.numel;
  check_count(op, "out", ob, n * D, F32);
  check_range(op, "id", "rows in the embedding table", ib, V);
  const float* t = tb.data<float>();
  float* o = ob.data<float>();
  auto copy_rows = [&](auto* ids) {
#pragma omp parallel for if (n * D > kParallelGrain && n > 1) schedule(static)
    for (int64_t i = 0; i < n; ++i) std::memcpy(o + i * D, t + int64_t(ids[i]) * D, size_t(D) * sizeof(float));
  };
  if (ib.dtype == I32) copy_rows(ib.data<int32_t>());
  else copy_rows(ib.data<int64_t>());
}

// out[ids[n], :] += g[n, :] for every n (out zeroed first when `zero`). Each thread owns a range of
// table rows and adds its rows in the order of n: no races, and the same sums for any thread count.
template <class I>
void scatter_rows(const I* ids, int64_t n, const float* g, int64_t V, int64_t D, float* o, bool zero) {
  const bool par = (n * D > kParallelGrain || (zero && V * D > kParallelGrain)) && V > 1;
#pragma omp parallel if (par)
  {
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t v0 = V * tid / nt, v1 = V * (tid + 1) / nt;
    if (zero && v1 > v0) std::memset(o + v0 * D, 0, size_t((v1 - v0) * D) * sizeof(float));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = int64_t(ids[i]);
      if (v < v0 || v >= v1) continue;
      float* dst = o + v * D;
      const float* src = g + i * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
    }
  }
}

// The names a caller of checked_scatter_add uses in its errors.
struct ScatterNames {
  const char *op, *shape, *ids, *values, *rows;
};

// out (V, D)[ids[n], :] += values[n, :] (out zeroed first when `zero`), after checking the
// buffers, with the caller's names in the errors.
static void checked_scatter_add(const ScatterNames& nm, Buffer& ob, int64_t V, int64_t D, const Buffer& ib,
                                const Buffer& vb, bool zero) {
  const char* op = nm.op;
  LAMINA_CHECK(V >= 0 && D >= 0, op << ": invalid " << nm.shape << " " << V << " x " << D);
  require_int(op, nm.ids, ib);
  const int64_t n = ib.numel;
  check_count(op, nm.values, vb, n * D, F32);
  check_count(op, "out", ob, V * D, F32);
  check_range(op, "id", nm.rows, ib, V);
  if (ib.dtype == I32) scatter_rows(ib.data<int32_t>(), n, vb.data<float>(), V, D, ob.data<float>(), zero);
  else scatter_rows(ib.data<int64_t>(), n, vb.data<float>(), V, D, ob.data<float>(), zero);
}

// out (V, D) = zeros, then out[ids[n], :] += g[n, :]: the dense gradient of a lookup.
void embedding_grad(const Buffer& gb, const Buffer& ib, int64_t V, int64_t D, Buffer& ob) {
  static const ScatterNames names{"embedding_lookup_grad", "table size", "ids", "grad", "rows in the embedding table"};
  checked_scatter_add(names, ob, V, D, ib, gb, true);
}

// out (V, D)[ids[n], :] += values[n, :] in place (out zeroed first when `zero`): a sparse row
// gradient (IndexedSlices) densified, or added to a dense one.
void embedding_scatter_add(Buffer& ob, int64_t V, int64_t D, const Buffer& ib, const Buffer& vb, bool zero) {
  static const ScatterNames names{"IndexedSlices", "dense shape", "indices", "values", "rows (dense_shape[0])"};
  checked_scatter_add(names, ob, V, D, ib, vb, zero);
}

// Sorts the positions 0..n-1 of `ids` by (id, position) into perm (int64, n) and returns the
// number of distinct ids. Ids are checked against [0, V) first.
template <class I>
int64_t sort_positions(const I* ids, int64_t n, int64_t V, int64_t* perm) {
  if (n < (int64_t(1) << 32) && V < (int64_t(1) << 31)) {
    // one 64-bit key per position: id in the high half, position in the low half
    std::vector<uint64_t> keys(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) keys[size_t(i)] = (uint64_t(ids[i]) << 32) | uint64_t(i);
    std::sort(keys.begin(), keys.end());
    for (int64_t i = 0; i < n; ++i) perm[i] = int64_t(keys[size_t(i)] & 0xffffffffu);
  } else {
    for (int64_t i = 0; i < n; ++i) perm[i] = i;
    std::stable_sort(perm, perm + n, [&](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  }
  int64_t u = 0;
  for (int64_t k = 0; k < n; ++k)
    if (k == 0 || ids[perm[k]] != ids[perm[k - 1]]) ++u;
  return u;
}

int64_t sparse_sort(const Buffer& ib, int64_t V, Buffer& pb) {
  sort_args::check_sparse_sort(ib, V, pb);
  check_range("IndexedSlices", "id", "rows (dense_shape[0])", ib, V);
  if (ib.dtype == I32) return sort_positions(ib.data<int32_t>(), ib.numel, V, pb.data<int64_t>());
  return sort_positions(ib.data<int64_t>(), ib.numel, V, pb.data<int64_t>());
}

// out_ids[j] = the j-th distinct id in ascending order; out_vals[j, :] = the sum of the rows of
// values (n, D) with that id, added in position order (the order of the dense scatter-add, so
// the sums are bitwise those of embedding_grad). `perm` comes from sparse_sort and is re-checked.
template <class I>
void segment_sum(const I* ids, int64_t n, const float* vals, int64_t D, const int64_t* perm, int64_t u,
                 int64_t* out_ids, float* out_vals) {
  const char* op = "sparse_deduplicate";
  std::vector<int64_t> starts;
  starts.reserve(size_t(u) + 1);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t p = perm[k];
    LAMINA_CHECK(p >= 0 && p < n, op << ": perm[" << k << "] = " << p << " is not a position in [0, " << n << ")");
    if (k > 0) {
      const int64_t q = perm[k - 1];
      LAMINA_CHECK(ids[q] < ids[p] || (ids[q] == ids[p] && q < p),
                   op << ": perm is not sorted by (id, position) at " << k << "; build it with sparse_sort");
      if (ids[q] == ids[p]) continue;
    }
    LAMINA_CHECK(int64_t(starts.size()) < u, op << ": more than " << u << " distinct ids");
    starts.push_back(k);
  }
  LAMINA_CHECK(int64_t(starts.size()) == u, op << ": " << starts.size() << " distinct ids, outputs sized for " << u);
  starts.push_back(n);
#pragma omp parallel for if (n * D > kParallelGrain && u > 1) schedule(static)
  for (int64_t j = 0; j < u; ++j) {
    out_ids[j] = int64_t(ids[perm[starts[size_t(j)]]]);
    float* dst = out_vals + j * D;
    for (int64_t d = 0; d < D; ++d) dst[d] = 0.f;
    for (int64_t k = starts[size_t(j)]; k < starts[size_t(j) + 1]; ++k) {
      const float* src = vals + perm[k] * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
    }
  }
}

void sparse_segment_sum(const Buffer& ib, const Buffer& vb, int64_t D, const Buffer& pb, Buffer& oib, Buffer& ovb) {
  const int64_t u = sort_args::check_segment_sum(ib, vb, D, pb, oib, ovb);
  const int64_t n = ib.numel;
  if (ib.dtype == I32)
    segment_sum(ib.data<int32_t>(), n, vb.data<float>(), D, pb.data<int64_t>(), u, oib.data<int64_t>(), ovb.data<float>());
  else
    segment_sum(ib.data<int64_t>(), n, vb.data<float>(), D, pb.data<int64_t>(), u, oib.data<int64_t>(), ovb.data<float>());
}

}  // namespace

void bind_embedding(py::module_& m) {
  def_kernel(m, "embedding", &embedding);
  def_kernel(m, "embedding_grad", &embedding_grad);
  def_kernel(m, "embedding_scatter_add", &embedding_scatter_add);
  def_kernel(m, "sparse_sort", &sparse_sort);
  def_kernel(m, "sparse_segment_sum", &sparse_segment_sum);
}

}  // namespace lamina
