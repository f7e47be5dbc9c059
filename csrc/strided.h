// Strided views, shared by every device module's strided_copy: overflow-checked size arithmetic,
// the bounds check of a view, the plan that drops size-1 dimensions and merges contiguous ones,
// and whether a view touches any element twice.
#pragma once
#include <algorithm>
#include <utility>
#include <vector>

#include "types.h"

namespace lamina {

// ---- checked integer arithmetic ------------------------------------------------------------------
inline int64_t mul_checked(const char* op, int64_t a, int64_t b) {
  int64_t r;
  LAMINA_CHECK(!__builtin_mul_overflow(a, b, &r), op << ": size arithmetic overflows (" << a << " * " << b << ")");
  return r;
}
inline int64_t add_checked(const char* op, int64_t a, int64_t b) {
  int64_t r;
  LAMINA_CHECK(!__builtin_add_overflow(a, b, &r), op << ": size arithmetic overflows (" << a << " + " << b << ")");
  return r;
}
inline int64_t numel_checked(const char* op, const Shape& s) {
  int64_t n = 1;
  for (auto d : s) {
    LAMINA_CHECK(d >= 0, op << ": negative dimension in shape " << shape_str(s));
    n = mul_checked(op, n, d);
  }
  return n;
}

// Every element of the view (offset, strides, shape) must lie inside a buffer of n elements.
inline void check_view(const char* op, const char* arg, int64_t n, int64_t off, const Shape& st, const Shape& shape) {
  for (auto d : shape)
    if (d == 0) return;  // an empty view touches nothing
  int64_t lo = off, hi = off;
  for (size_t k = 0; k < shape.size(); ++k) {
    int64_t e = mul_checked(op, shape[k] - 1, st[k]);
    if (e < 0) lo = add_checked(op, lo, e);
    else hi = add_checked(op, hi, e);
  }
  LAMINA_CHECK(lo >= 0 && hi < n, op << ": the " << arg << " view (offset " << off << ", shape " << shape_str(shape)
                                     << ", strides " << shape_str(st) << ") reaches elements [" << lo << ", " << hi
                                     << "], outside its buffer of " << n << " elements");
}

// ---- strided copy ------------------------------------------------------------------------------
struct StridedPlan {
  Shape dims, ss, ds;  // sizes and strides (elements) after dropping size-1 dims and merging
  int64_t total = 1;
};

inline StridedPlan make_strided_plan(const Shape& shape, const Shape& ss, const Shape& ds) {
  StridedPlan p;
  for (auto d : shape) p.total *= d;
  for (size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == 1) continue;
    if (!p.dims.empty() && p.ss.back() == ss[k] * shape[k] && p.ds.back() == ds[k] * shape[k]) {
      p.dims.back() *= shape[k];
      p.ss.back() = ss[k];
      p.ds.back() = ds[k];
      continue;
    }
    p.dims.push_back(shape[k]);
    p.ss.push_back(ss[k]);
    p.ds.push_back(ds[k]);
  }
  if (p.dims.empty()) { p.dims = {1}; p.ss = {0}; p.ds = {0}; }
  return p;
}

// True when no two positions of the view coincide (so threads may write it concurrently).
inline bool non_overlapping(const Shape& dims, const Shape& st) {
  std::vector<std::pair<int64_t, int64_t>> v;
  for (size_t k = 0; k < dims.size(); ++k)
    if (dims[k] > 1) v.push_back({st[k] < 0 ? -st[k] : st[k], dims[k]});
  std::sort(v.begin(), v.end());
  int64_t extent = 1;
  for (auto& e : v) {
    if (e.first < extent) return false;
    extent += e.first * (e.second - 1);
  }
  return true;
}

}  // namespace lamina
