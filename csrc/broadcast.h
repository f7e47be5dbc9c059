// Broadcasting iteration: inputs are aligned to the output shape (numpy rules), adjacent
// dimensions are merged where possible, and the innermost loop gets stride 0 or 1 per input.
#pragma once
#include <omp.h>

#include "common.h"

namespace lamina {

struct BroadcastPlan {
  // After merging: dims[k] and, for each input j, strides[j][k] (in elements, 0 = broadcast).
  std::vector<int64_t> dims;
  std::vector<std::vector<int64_t>> strides;
  int64_t total = 1;
};

inline BroadcastPlan make_plan(const std::vector<const Shape*>& ins, const Shape& out, const char* op) {
  const size_t nd = out.size();
  const size_t ni = ins.size();
  std::vector<std::vector<int64_t>> st(ni, std::vector<int64_t>(nd, 0));
  for (size_t j = 0; j < ni; ++j) {
    const Shape& s = *ins[j];
    LAMINA_CHECK(s.size() <= nd, op << ": operand of shape " << shape_str(s) << " cannot broadcast to "
                                    << shape_str(out));
    int64_t stride = 1;
    for (size_t k = 0; k < s.size(); ++k) {
      size_t ok = nd - 1 - k, sk = s.size() - 1 - k;
      int64_t d = s[sk];
      LAMINA_CHECK(d == out[ok] || d == 1, op << ": operand of shape " << shape_str(s)
                                              << " cannot broadcast to " << shape_str(out));
      st[j][ok] = (d == 1 && out[ok] != 1) ? 0 : stride;
      stride *= d;
    }
  }
  BroadcastPlan p;
  for (auto d : out) p.total *= d;
  // Drop size-1 dims, then merge dim k into k+1 when every input is contiguous across them.
  std::vector<int64_t> dims;
  std::vector<std::vector<int64_t>> strides(ni);
  for (size_t k = 0; k < nd; ++k) {
    if (out[k] == 1) continue;
    if (!dims.empty()) {
      bool merge = true;
      for (size_t j = 0; j < ni; ++j)
        if (strides[j].back() != st[j][k] * out[k]) { merge = false; break; }
      if (merge) {
        dims.back() *= out[k];
        for (size_t j = 0; j < ni; ++j) strides[j].back() = st[j][k];
        continue;
      }
    }
    dims.push_back(out[k]);
    for (size_t j = 0; j < ni; ++j) strides[j].push_back(st[j][k]);
  }
  if (dims.empty()) {
    dims.push_back(1);
    for (size_t j = 0; j < ni; ++j) strides[j].push_back(0);
  }
  p.dims = dims;
  p.strides = strides;
  return p;
}

// Calls body(offsets..., out_offset, n, inner_strides...) once per innermost row.
// `Row` receives (const int64_t* in_offsets, int64_t out_offset, int64_t n, const int64_t* in_strides).
template <class Row>
void for_each_row(const BroadcastPlan& p, Row row) {
  const int64_t nd = int64_t(p.dims.size());
  const int64_t inner = p.dims[nd - 1];
  const int64_t rows = p.total / (inner ? inner : 1);
  const size_t ni = p.strides.size();
  if (p.total == 0) return;
  std::vector<int64_t> istr(ni);
  for (size_t j = 0; j < ni; ++j) istr[j] = p.strides[j][nd - 1];
  const bool par = p.total > kParallelGrain && rows > 1;
#pragma omp parallel if (par)
  {
    int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    int64_t r0 = rows * tid / nt, r1 = rows * (tid + 1) / nt;
    std::vector<int64_t> off(ni);
    for (int64_t r = r0; r < r1; ++r) {
      int64_t rem = r;
      for (size_t j = 0; j < ni; ++j) off[j] = 0;
      for (int64_t k = nd - 2; k >= 0; --k) {
        int64_t idx = rem % p.dims[k];
        rem /= p.dims[k];
        for (size_t j = 0; j < ni; ++j) off[j] += idx * p.strides[j][k];
      }
      row(off.data(), r * inner, inner, istr.data());
    }
  }
}

// One-row fast path for large contiguous 1-D work: split the row itself across threads.
template <class Row>
void for_each_chunk(int64_t n, Row row) {
  const bool par = n > kParallelGrain;
#pragma omp parallel if (par)
  {
    int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    int64_t a = (n * tid / nt) & ~int64_t(15), b = tid + 1 == nt ? n : (n * (tid + 1) / nt) & ~int64_t(15);
    if (b > a) row(a, b - a);
  }
}

}  // namespace lamina
