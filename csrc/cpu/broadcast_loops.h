// The CPU loops that walk a BroadcastPlan (csrc/broadcast.h) across OpenMP threads.
#pragma once
#include <omp.h>

#include "broadcast.h"

namespace lamina {

// Walks the output in runs along the innermost dimension, calling
// row(in_offsets, out_offset, n, inner_strides): `in_offsets[j]` is where input j's run starts,
// `inner_strides[j]` is 0 or 1, and the run writes out[out_offset .. out_offset + n). Threads
// walk their rows with an odometer (no division per row). With `whole_rows`, threads get whole
// rows and each call covers one full row; otherwise the element range is split evenly (at
// multiples of 16 elements), so a single long row uses every thread too.
template <class Row>
void for_each_run_impl(const BroadcastPlan& p, Row& row, bool whole_rows) {
  if (p.total == 0) return;
  const int64_t nd = int64_t(p.dims.size());
  const int64_t inner = p.dims[nd - 1];
  const size_t ni = p.strides.size();
  int64_t istr[8];
  std::vector<int64_t> istr_v;
  int64_t* is = istr;
  if (ni > 8) { istr_v.resize(ni); is = istr_v.data(); }
  for (size_t j = 0; j < ni; ++j) is[j] = p.strides[j][nd - 1];
  const bool par = p.total > kParallelGrain && (!whole_rows || p.total / inner > 1);
  run_parallel(par, [&](const int nt, const int tid) {
    int64_t e0, e1;
    if (whole_rows) {
      const int64_t rows = p.total / inner;
      e0 = rows * tid / nt * inner;
      e1 = rows * (tid + 1) / nt * inner;
    } else {
      e0 = (p.total * tid / nt) & ~int64_t(15);
      e1 = tid + 1 == nt ? p.total : ((p.total * (tid + 1) / nt) & ~int64_t(15));
    }
    if (e1 > e0) {
      int64_t idx_s[8], off_s[8];
      std::vector<int64_t> idx_v, off_v;
      int64_t* idx = idx_s;
      int64_t* off = off_s;
      if (nd > 8) { idx_v.resize(nd); idx = idx_v.data(); }
      if (ni > 8) { off_v.resize(ni); off = off_v.data(); }
      // multi-index of the first row and the position inside it
      int64_t r = e0 / inner, c = e0 % inner;
      for (size_t j = 0; j < ni; ++j) off[j] = 0;
      for (int64_t k = nd - 2, rem = r; k >= 0; --k) {
        idx[k] = rem % p.dims[k];
        rem /= p.dims[k];
        for (size_t j = 0; j < ni; ++j) off[j] += idx[k] * p.strides[j][k];
      }
      int64_t e = e0;
      int64_t start_off[8];
      std::vector<int64_t> start_v;
      int64_t* so = start_off;
      if (ni > 8) { start_v.resize(ni); so = start_v.data(); }
      while (e < e1) {
        int64_t n = std::min(inner - c, e1 - e);
        for (size_t j = 0; j < ni; ++j) so[j] = off[j] + c * is[j];
        row(static_cast<const int64_t*>(so), e, n, static_cast<const int64_t*>(is));
        e += n;
        c = 0;
        // advance the odometer over the outer dims
        for (int64_t k = nd - 2; k >= 0; --k) {
          for (size_t j = 0; j < ni; ++j) off[j] += p.strides[j][k];
          if (++idx[k] < p.dims[k]) break;
          for (size_t j = 0; j < ni; ++j) off[j] -= p.strides[j][k] * p.dims[k];
          idx[k] = 0;
        }
      }
    }
  });
}

// Calls row(...) once per innermost row (n == inner, out_offset == row * inner), rows split
// across threads.
template <class Row>
void for_each_row(const BroadcastPlan& p, Row row) { for_each_run_impl(p, row, true); }

// Calls row(...) on runs of at most one row, the elements split evenly across threads.
template <class Row>
void for_each_run(const BroadcastPlan& p, Row row) { for_each_run_impl(p, row, false); }

// One-row fast path for large contiguous 1-D work: split the row itself across threads.
template <class Row>
void for_each_chunk(int64_t n, Row row) {
  run_parallel(n > kParallelGrain, [&](const int nt, const int tid) {
    int64_t a = (n * tid / nt) & ~int64_t(15), b = tid + 1 == nt ? n : (n * (tid + 1) / nt) & ~int64_t(15);
    if (b > a) row(a, b - a);
  });
}

}  // namespace lamina
