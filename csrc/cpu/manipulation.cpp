// Array manipulation kernels.
//
// - strided_copy: dst view (=|+=) src view, both given as (offset, strides) in elements over one
//   shape. One kernel serves transpose, slicing (any step), flip, diagonals, concatenate, split,
//   pad, roll and the gradients of all of them (scatter into zeros = copy into a strided view).
//   Transposes get a cache-blocked path.
// - take / take_grad: gather along an axis of x viewed as (outer, n, inner), and its scatter-add.
// - take_along_axis / take_along_axis_grad: per-position gather and its scatter-add.
// - count_nonzero / nonzero: coordinates of the non-zero elements.
// - tri: lower / upper triangle masks over the last two dimensions.
// - arange / linspace: ranges.
// Every kernel checks sizes, views and indices before touching memory: bad input raises
// ValueError / TypeError / IndexError in Python, never a crash.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "common.h"
#include "device.h"
#include "misc_checks.h"
#include "strided.h"

namespace py = pybind11;

namespace lamina {

namespace {

// A bfloat16 element, for the accumulating strided copy (the sum rounds to bfloat16 once).
struct BF16Acc {
  uint16_t bits;
  BF16Acc& operator+=(BF16Acc o) {
    bits = f32_to_bf16(bf16_to_f32(bits) + bf16_to_f32(o.bits));
    return *this;
  }
};

template <class T, bool ACC>
inline void put(T* d, T v) {
  if constexpr (ACC) *d += v;
  else *d = v;
}

template <class T, bool ACC>
inline void copy_row(const T* s, T* d, int64_t n, int64_t ss, int64_t ds) {
  if (ss == 1 && ds == 1) {
    if constexpr (ACC) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) d[i] += s[i];
    } else {
      std::memcpy(d, s, size_t(n) * sizeof(T));
    }
  } else if (ds == 1) {
    for (int64_t i = 0; i < n; ++i) put<T, ACC>(d + i, s[i * ss]);
  } else if (ss == 1) {
    for (int64_t i = 0; i < n; ++i) put<T, ACC>(d + i * ds, s[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) put<T, ACC>(d + i * ds, s[i * ss]);
  }
}

constexpr int64_t kTile = 32;

template <class T, bool ACC>
void run_strided(const T* S, T* D, const StridedPlan& p, bool may_parallel) {
  if (p.total == 0) return;
  const int nd = int(p.dims.size());
  const bool par = may_parallel && p.total > kParallelGrain;
  const int a = nd - 1;
  auto abs1 = [](int64_t s) { return s == 1 || s == -1; };
  // Transposes: the innermost dimension is contiguous on one side only and another dimension is
  // contiguous on the other. Copy in kTile x kTile tiles so both sides stay in cache.
  int b = -1;
  if (nd >= 2 && p.dims[a] >= 8) {
    const Shape* other = nullptr;
    if (!abs1(p.ss[a]) && abs1(p.ds[a])) other = &p.ss;
    else if (!abs1(p.ds[a]) && abs1(p.ss[a])) other = &p.ds;
    if (other)
      for (int k = nd - 2; k >= 0; --k)
        if (abs1((*other)[k]) && p.dims[k] >= 8) { b = k; break; }
  }
  if (b >= 0) {
    const int64_t na = p.dims[a], nb = p.dims[b];
    const int64_t ta = (na + kTile - 1) / kTile, tb = (nb + kTile - 1) / kTile;
    std::vector<int> od;
    for (int k = 0; k < nd; ++k)
      if (k != a && k != b) od.push_back(k);
    const int64_t outer = p.total / (na * nb);
    const int64_t units = outer * tb * ta;
    const int64_t ssa = p.ss[a], dsa = p.ds[a], ssb = p.ss[b], dsb = p.ds[b];
#pragma omp parallel for if (par && units > 1) schedule(static)
    for (int64_t u = 0; u < units; ++u) {
      int64_t rem = u;
      const int64_t ja = rem % ta; rem /= ta;
      const int64_t jb = rem % tb; rem /= tb;
      int64_t so = 0, dof = 0;
      for (int q = int(od.size()) - 1; q >= 0; --q) {
        const int k = od[q];
        const int64_t i = rem % p.dims[k];
        rem /= p.dims[k];
        so += i * p.ss[k];
        dof += i * p.ds[k];
      }
      const int64_t a0 = ja * kTile, a1 = std::min(na, a0 + kTile);
      const int64_t b0 = jb * kTile, b1 = std::min(nb, b0 + kTile);
      for (int64_t ib = b0; ib < b1; ++ib) {
        const T* s = S + so + ib * ssb + a0 * ssa;
        T* d = D + dof + ib * dsb + a0 * dsa;
        for (int64_t ia = 0; ia < a1 - a0; ++ia) put<T, ACC>(d + ia * dsa, s[ia * ssa]);
      }
    }
    return;
  }
  const int64_t inner = p.dims[a];
  const int64_t rows = p.total / inner;
  const int64_t iss = p.ss[a], ids = p.ds[a];
  if (rows == 1) {  // one long row: split it across threads
    const int64_t n = inner;
#pragma omp parallel if (par)
    {
      const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
      const int64_t s0 = n * tid / nt, s1 = n * (tid + 1) / nt;
      if (s1 > s0) copy_row<T, ACC>(S + s0 * iss, D + s0 * ids, s1 - s0, iss, ids);
    }
    return;
  }
#pragma omp parallel if (par)
  {
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t r0 = rows * tid / nt, r1 = rows * (tid + 1) / nt;
    if (r1 > r0) {
      std::vector<int64_t> idx(size_t(nd), 0);
      int64_t so = 0, dof = 0, rem = r0;
      for (int k = nd - 2; k >= 0; --k) {
        idx[k] = rem % p.dims[k];
        rem /= p.dims[k];
        so += idx[k] * p.ss[k];
        dof += idx[k] * p.ds[k];
      }
      for (int64_t r = r0; r < r1; ++r) {
        copy_row<T, ACC>(S + so, D + dof, inner, iss, ids);
        for (int k = nd - 2; k >= 0; --k) {  // odometer step
          so += p.ss[k];
          dof += p.ds[k];
          if (++idx[k] < p.dims[k]) break;
          so -= p.ss[k] * p.dims[k];
          dof -= p.ds[k] * p.dims[k];
          idx[k] = 0;
        }
      }
    }
  }
}

// dst[doff + i . dst_strides] = src[soff + i . src_strides] for every index i of `shape`
// (`accumulate`: += instead of =). Strides may be negative or zero (zero on the source side
// repeats one element: a fill). Where the destination view overlaps itself, accumulation runs on
// one thread so that every contribution lands.
void strided_copy(const Buffer& src, int64_t soff, const Shape& sst, Buffer& dst, int64_t doff, const Shape& dst_st,
                  const Shape& shape, bool accumulate) {
  const char* op = "strided_copy";
  LAMINA_CHECK(sst.size() == shape.size() && dst_st.size() == shape.size(),
               op << ": shape " << shape_str(shape) << " needs " << shape.size() << " strides per side, received source strides "
                  << shape_str(sst) << " and destination strides " << shape_str(dst_st));
  check_dtype(op, "destination", dst, src.dtype);
  numel_checked(op, shape);
  check_view(op, "source", src.numel, soff, sst, shape);
  check_view(op, "destination", dst.numel, doff, dst_st, shape);
  StridedPlan p = make_strided_plan(shape, sst, dst_st);
  if (p.total == 0) return;
  LAMINA_CHECK(src.ptr != dst.ptr, op << ": source and destination are the same buffer");
  if (accumulate) {
    const bool par_ok = non_overlapping(p.dims, p.ds);
    switch (src.dtype) {
      case F32: run_strided<float, true>(src.data<float>() + soff, dst.data<float>() + doff, p, par_ok); break;
      case I32: run_strided<int32_t, true>(src.data<int32_t>() + soff, dst.data<int32_t>() + doff, p, par_ok); break;
      case I64: run_strided<int64_t, true>(src.data<int64_t>() + soff, dst.data<int64_t>() + doff, p, par_ok); break;
      case BF16: run_strided<BF16Acc, true>(src.data<BF16Acc>() + soff, dst.data<BF16Acc>() + doff, p, par_ok); break;
      case BOOL: throw TypeError("strided_copy: cannot accumulate bool tensors; expected float32, int32 or int64");
      case I8: throw TypeError("strided_copy: cannot accumulate int8 tensors; expected float32, int32 or int64");
    }
    return;
  }
  switch (dtype_size(src.dtype)) {
    case 1: run_strided<uint8_t, false>(src.data<uint8_t>() + soff, dst.data<uint8_t>() + doff, p, true); break;
    case 2: run_strided<uint16_t, false>(src.data<uint16_t>() + soff, dst.data<uint16_t>() + doff, p, true); break;
    case 4: run_strided<uint32_t, false>(src.data<uint32_t>() + soff, dst.data<uint32_t>() + doff, p, true); break;
    default: run_strided<uint64_t, false>(src.data<uint64_t>() + soff, dst.data<uint64_t>() + doff, p, true); break;
  }
}

// ---- indices -----------------------------------------------------------------------------------
// The argument checks shared with csrc/cuda/misc.cu (csrc/misc_checks.h).
using misc_checks::check_index_dtype;

template <class I>
void check_indices_typed(const char* op, const I* idx, int64_t m, int64_t n) {
  I lo = 0, hi = 0;
  if (m) { lo = idx[0]; hi = idx[0]; }
#pragma omp simd reduction(min : lo) reduction(max : hi)
  for (int64_t j = 0; j < m; ++j) {
    lo = idx[j] < lo ? idx[j] : lo;
    hi = idx[j] > hi ? idx[j] : hi;
  }
  if (m == 0 || (int64_t(lo) >= -n && int64_t(hi) < n)) return;
  for (int64_t j = 0; j < m; ++j) {
    if (int64_t(idx[j]) < -n || int64_t(idx[j]) >= n)
      throw py::index_error(misc_checks::index_out_of_bounds(op, int64_t(idx[j]), j, n));
  }
}

void check_indices(const char* op, const Buffer& idx, int64_t n) {
  check_index_dtype(op, idx);
  if (idx.dtype == I32) check_indices_typed(op, idx.data<int32_t>(), idx.numel, n);
  else check_indices_typed(op, idx.data<int64_t>(), idx.numel, n);
}

inline int64_t index_at(const Buffer& idx, int64_t j, int64_t n) {
  int64_t i = idx.dtype == I32 ? int64_t(idx.data<int32_t>()[j]) : idx.data<int64_t>()[j];
  return i < 0 ? i + n : i;
}

// ---- take: out[o, j, :] = x[o, idx[j], :] ------------------------------------------------------------
template <class T>
void take_typed(const T* x, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, T* out) {
  const int64_t m = idx.numel, rows = outer * m;
  if (inner == 1) {
#pragma omp parallel for if (rows > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t o = r / m, j = r % m;
      out[r] = x[o * n + index_at(idx, j, n)];
    }
    return;
  }
#pragma omp parallel for if (rows * inner > kParallelGrain && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r / m, j = r % m;
    std::memcpy(out + r * inner, x + (o * n + index_at(idx, j, n)) * inner, size_t(inner) * sizeof(T));
  }
}

void take(const Buffer& x, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, Buffer& out) {
  const char* op = "take";
  misc_checks::check_take(x, outer, n, inner, idx, out);
  check_indices(op, idx, n);
  if (out.numel == 0) return;
  switch (dtype_size(x.dtype)) {
    case 1: take_typed(x.data<uint8_t>(), outer, n, inner, idx, out.data<uint8_t>()); break;
    case 2: take_typed(x.data<uint16_t>(), outer, n, inner, idx, out.data<uint16_t>()); break;
    case 4: take_typed(x.data<uint32_t>(), outer, n, inner, idx, out.data<uint32_t>()); break;
    default: take_typed(x.data<uint64_t>(), outer, n, inner, idx, out.data<uint64_t>()); break;
  }
}

// gx = 0; gx[o, idx[j], :] += g[o, j, :]. Threads own disjoint ranges of the axis (each scans all
// indices), or disjoint column blocks when the axis is short: no atomics, and the sum order
// (ascending j) does not depend on the number of threads.
void take_grad(const Buffer& g, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, Buffer& gx) {
  const char* op = "take_grad";
  misc_checks::check_take_grad(g, outer, n, inner, idx, gx);
  const int64_t m = idx.numel;
  check_indices(op, idx, n);
  float* GX = gx.data<float>();
  const float* G = g.data<float>();
  if (gx.numel) std::memset(GX, 0, size_t(gx.numel) * sizeof(float));
  if (g.numel == 0) return;
  const bool par = g.numel > kParallelGrain;
  const int maxt = par ? omp_get_max_threads() : 1;
  const bool by_columns = n < 4 * maxt && inner >= 64 * maxt;
#pragma omp parallel if (par)
  {
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    if (by_columns) {
      const int64_t c0 = inner * tid / nt, c1 = inner * (tid + 1) / nt;
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < m; ++j) {
          const float* s = G + (o * m + j) * inner;
          float* d = GX + (o * n + index_at(idx, j, n)) * inner;
#pragma omp simd
          for (int64_t c = c0; c < c1; ++c) d[c] += s[c];
        }
    } else {
      const int64_t i0 = n * tid / nt, i1 = n * (tid + 1) / nt;
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < m; ++j) {
          const int64_t i = index_at(idx, j, n);
          if (i < i0 || i >= i1) continue;
          const float* s = G + (o * m + j) * inner;
          float* d = GX + (o * n + i) * inner;
#pragma omp simd
          for (int64_t c = 0; c < inner; ++c) d[c] += s[c];
        }
    }
  }
}

// ---- take_along_axis: out[o, j, c] = x[o, idx[o, j, c], c] ------------------------------------------------
template <class T>
void take_along_typed(const T* x, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, int64_t m, T* out) {
  const int64_t rows = outer * m;
#pragma omp parallel for if (rows * inner > kParallelGrain && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r / m;
    const T* xs = x + o * n * inner;
    T* d = out + r * inner;
    for (int64_t c = 0; c < inner; ++c) d[c] = xs[index_at(idx, r * inner + c, n) * inner + c];
  }
}

void take_along_axis(const Buffer& x, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, int64_t m, Buffer& out) {
  const char* op = "take_along_axis";
  misc_checks::check_take_along(x, outer, n, inner, idx, m, out);
  check_indices(op, idx, n);
  if (out.numel == 0) return;
  switch (dtype_size(x.dtype)) {
    case 1: take_along_typed(x.data<uint8_t>(), outer, n, inner, idx, m, out.data<uint8_t>()); break;
    case 2: take_along_typed(x.data<uint16_t>(), outer, n, inner, idx, m, out.data<uint16_t>()); break;
    case 4: take_along_typed(x.data<uint32_t>(), outer, n, inner, idx, m, out.data<uint32_t>()); break;
    default: take_along_typed(x.data<uint64_t>(), outer, n, inner, idx, m, out.data<uint64_t>()); break;
  }
}

// gx = 0; gx[o, idx[o, j, c], c] += g[o, j, c]. Work is split over (o, column block): disjoint
// outputs, ascending-j sum order.
void take_along_axis_grad(const Buffer& g, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, int64_t m, Buffer& gx) {
  const char* op = "take_along_axis_grad";
  misc_checks::check_take_along_grad(g, outer, n, inner, idx, m, gx);
  check_indices(op, idx, n);
  float* GX = gx.data<float>();
  const float* G = g.data<float>();
  if (gx.numel) std::memset(GX, 0, size_t(gx.numel) * sizeof(float));
  if (g.numel == 0) return;
  constexpr int64_t B = 64;
  const int64_t nb = (inner + B - 1) / B, units = outer * nb;
#pragma omp parallel for if (g.numel > kParallelGrain && units > 1)
  for (int64_t u = 0; u < units; ++u) {
    const int64_t o = u / nb, c0 = (u % nb) * B, c1 = std::min(inner, c0 + B);
    for (int64_t j = 0; j < m; ++j) {
      const int64_t base = (o * m + j) * inner;
      for (int64_t c = c0; c < c1; ++c) GX[(o * n + index_at(idx, base + c, n)) * inner + c] += G[base + c];
    }
  }
}

// ---- nonzero -------------------------------------------------------------------------------------------
struct BF16Bits {
  uint16_t bits;
};
template <class T>
inline bool is_nonzero(T v) { return v != T(0); }
// bfloat16 by its bits: nonzero as its float32 value (-0 is zero, NaN is not)
inline bool is_nonzero(BF16Bits v) { return (v.bits & 0x7fffu) != 0; }

template <class T>
int64_t count_range(const T* x, int64_t a, int64_t b) {
  int64_t c = 0;
#pragma omp simd reduction(+ : c)
  for (int64_t i = a; i < b; ++i) c += is_nonzero(x[i]);
  return c;
}

template <class T>
int64_t count_typed(const T* x, int64_t n) {
  int64_t c = 0;
#pragma omp parallel for reduction(+ : c) if (n > kParallelGrain)
  for (int64_t t = 0; t < (n + 4095) / 4096; ++t) c += count_range(x, t * 4096, std::min(n, t * 4096 + 4096));
  return c;
}

int64_t count_nonzero(const Buffer& x) {
  switch (x.dtype) {
    case F32: return count_typed(x.data<float>(), x.numel);
    case I32: return count_typed(x.data<int32_t>(), x.numel);
    case I64: return count_typed(x.data<int64_t>(), x.numel);
    case BF16: return count_typed(x.data<BF16Bits>(), x.numel);
    default: return count_typed(x.data<uint8_t>(), x.numel);
  }
}

// outs[k][c] = k-th coordinate (in `shape`) of the c-th non-zero element, in row-major order.
template <class T>
void nonzero_typed(const T* x, const Shape& shape, std::vector<int64_t*>& outs) {
  const int64_t n = numel_of(shape);
  const int nd = int(shape.size());
  const bool par = n > kParallelGrain;
  const int maxt = par ? omp_get_max_threads() : 1;
  std::vector<int64_t> counts(size_t(maxt) + 1, 0);
#pragma omp parallel num_threads(maxt) if (par)
  {
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t a = n * tid / nt, b = n * (tid + 1) / nt;
    counts[size_t(tid) + 1] = count_range(x, a, b);
#pragma omp barrier
#pragma omp single
    for (int t = 1; t <= nt; ++t) counts[size_t(t)] += counts[size_t(t) - 1];
    int64_t c = counts[size_t(tid)];
    std::vector<int64_t> idx(size_t(nd), 0);
    int64_t rem = a;
    for (int k = nd - 1; k >= 0; --k) { idx[k] = rem % shape[k]; rem /= shape[k]; }
    for (int64_t i = a; i < b; ++i) {
      if (is_nonzero(x[i])) {
        for (int k = 0; k < nd; ++k) outs[size_t(k)][c] = idx[size_t(k)];
        ++c;
      }
      for (int k = nd - 1; k >= 0; --k) {
        if (++idx[size_t(k)] < shape[k]) break;
        idx[size_t(k)] = 0;
      }
    }
  }
}

void nonzero(const Buffer& x, const Shape& shape, const std::vector<BufferPtr>& outs) {
  misc_checks::check_nonzero(x, shape, outs.size());
  const int64_t c = count_nonzero(x);
  std::vector<int64_t*> ptrs;
  for (auto& o : outs) {
    misc_checks::check_nonzero_out(o.get(), c);
    ptrs.push_back(o->data<int64_t>());
  }
  if (c == 0) return;
  switch (x.dtype) {
    case F32: nonzero_typed(x.data<float>(), shape, ptrs); break;
    case I32: nonzero_typed(x.data<int32_t>(), shape, ptrs); break;
    case I64: nonzero_typed(x.data<int64_t>(), shape, ptrs); break;
    case BF16: nonzero_typed(x.data<BF16Bits>(), shape, ptrs); break;
    default: nonzero_typed(x.data<uint8_t>(), shape, ptrs); break;
  }
}

// ---- triangles: out[b, i, j] = x[b, i, j] where j - i <= k (lower) / j - i >= k (upper), else 0 ------
template <class T>
void tri_typed(const T* x, int64_t batch, int64_t rows, int64_t cols, int64_t k, bool upper, T* out) {
  const int64_t total_rows = batch * rows;
#pragma omp parallel for if (total_rows * cols > kParallelGrain)
  for (int64_t r = 0; r < total_rows; ++r) {
    const int64_t i = r % rows;
    const T* s = x + r * cols;
    T* d = out + r * cols;
    // lower keeps j <= i + k; upper keeps j >= i + k
    const int64_t edge = upper ? std::max<int64_t>(0, std::min(cols, i + k)) : std::max<int64_t>(0, std::min(cols, i + k + 1));
    if (upper) {
      for (int64_t j = 0; j < edge; ++j) d[j] = T(0);
      for (int64_t j = edge; j < cols; ++j) d[j] = s[j];
    } else {
      for (int64_t j = 0; j < edge; ++j) d[j] = s[j];
      for (int64_t j = edge; j < cols; ++j) d[j] = T(0);
    }
  }
}

void tri(const Buffer& x, int64_t batch, int64_t rows, int64_t cols, int64_t k, bool upper, Buffer& out) {
  misc_checks::check_tri(x, batch, rows, cols, upper, out);
  if (x.numel == 0) return;
  k = misc_checks::tri_clamped_k(k, rows, cols);  // beyond these every row is all kept / all zero
  switch (dtype_size(x.dtype)) {
    case 1: tri_typed(x.data<uint8_t>(), batch, rows, cols, k, upper, out.data<uint8_t>()); break;
    case 2: tri_typed(x.data<uint16_t>(), batch, rows, cols, k, upper, out.data<uint16_t>()); break;
    case 4: tri_typed(x.data<uint32_t>(), batch, rows, cols, k, upper, out.data<uint32_t>()); break;
    default: tri_typed(x.data<uint64_t>(), batch, rows, cols, k, upper, out.data<uint64_t>()); break;
  }
}

// ---- ranges --------------------------------------------------------------------------------------------
template <class T, class F>
void fill_index(T* o, int64_t n, F f) {
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) o[i] = f(i);
}

// out[i] = start + i * step, computed in double and converted to out's dtype (toward zero for ints).
void arange(Buffer& out, double start, double step) {
  const int64_t n = out.numel;
  switch (out.dtype) {
    case F32: fill_index(out.data<float>(), n, [&](int64_t i) { return float(start + double(i) * step); }); break;
    case I32: fill_index(out.data<int32_t>(), n, [&](int64_t i) { return int32_t(start + double(i) * step); }); break;
    case I64: fill_index(out.data<int64_t>(), n, [&](int64_t i) { return int64_t(start + double(i) * step); }); break;
    case BOOL: case I8: case BF16: misc_checks::range_dtype_error("arange", out.dtype);
  }
}

// numpy.linspace: out[i] = start + i * step with step = (stop - start) / (num - 1 or num); the last
// element is exactly `stop` when `endpoint`. Integer outputs are floored (numpy 2).
void linspace(Buffer& out, double start, double stop, bool endpoint) {
  const int64_t n = out.numel;
  if (n == 0) return;
  const double step = misc_checks::linspace_step(n, start, stop, endpoint);
  auto val = [&](int64_t i) { return (endpoint && n > 1 && i == n - 1) ? stop : start + double(i) * step; };
  switch (out.dtype) {
    case F32: fill_index(out.data<float>(), n, [&](int64_t i) { return float(val(i)); }); break;
    case I32: fill_index(out.data<int32_t>(), n, [&](int64_t i) { return int32_t(std::floor(val(i))); }); break;
    case I64: fill_index(out.data<int64_t>(), n, [&](int64_t i) { return int64_t(std::floor(val(i))); }); break;
    case BOOL: case I8: case BF16: misc_checks::range_dtype_error("linspace", out.dtype);
  }
}

}  // namespace

void bind_manipulation(py::module_& m) {
  def_kernel(m, "strided_copy", &strided_copy, py::arg("src"), py::arg("src_offset"), py::arg("src_strides"), py::arg("dst"),
        py::arg("dst_offset"), py::arg("dst_strides"), py::arg("shape"), py::arg("accumulate") = false);
  def_kernel(m, "take", &take);
  def_kernel(m, "take_grad", &take_grad);
  def_kernel(m, "take_along_axis", &take_along_axis);
  def_kernel(m, "take_along_axis_grad", &take_along_axis_grad);
  def_kernel(m, "count_nonzero", &count_nonzero);
  def_kernel(m, "nonzero", &nonzero);
  def_kernel(m, "tri", &tri);
  def_kernel(m, "arange", &arange);
  def_kernel(m, "linspace", &linspace);
}

}  // namespace lamina
