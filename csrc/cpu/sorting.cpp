// Sorting along the last axis of an (outer, n) view: full sorts (values and indices) and top-k.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "common.h"
#include "device.h"
#include "sort_checks.h"

namespace py = pybind11;

namespace lamina {

// Orders indices of one row: descending puts larger values first; ties keep the lower index
// first (stable), and NaN sorts as the largest value, as numpy does.
template <class T>
static void order_row(const T* x, int64_t n, int64_t k, bool descending, int64_t* idx) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t(0));
  auto less = [&](int64_t a, int64_t b) {
    T va = x[a], vb = x[b];
    bool na = va != va, nb = vb != vb;
    if (descending) {
      if (na != nb) return na;               // NaN first
      if (va != vb && !na) return va > vb;
    } else {
      if (na != nb) return nb;               // NaN last
      if (va != vb && !na) return va < vb;
    }
    return a < b;
  };
  if (k < n) std::partial_sort(order.begin(), order.begin() + k, order.end(), less);
  else std::sort(order.begin(), order.end(), less);
  std::copy(order.begin(), order.begin() + k, idx);
}

template <class T>
static void sort_typed(const Buffer& xb, int64_t outer, int64_t n, int64_t k, bool descending, Buffer& vb, Buffer& ib) {
  const T* x = xb.data<T>(); T* v = vb.data<T>(); int64_t* ix = ib.data<int64_t>();
#pragma omp parallel for if (outer * n > kParallelGrain && outer > 1)
  for (int64_t o = 0; o < outer; ++o) {
    order_row(x + o * n, n, k, descending, ix + o * k);
    for (int64_t j = 0; j < k; ++j) v[o * k + j] = x[o * n + ix[o * k + j]];
  }
}

// values/indices (outer, k) of the k first elements of each row of x (outer, n) in sorted order
// (descending for top-k, ascending for sort).
static void sort_rows(const Buffer& xb, int64_t outer, int64_t n, int64_t k, bool descending, Buffer& vb, Buffer& ib) {
  sort_args::check_sort_rows(xb, outer, n, k, vb, ib);
  switch (xb.dtype) {
    case F32: sort_typed<float>(xb, outer, n, k, descending, vb, ib); break;
    case I32: sort_typed<int32_t>(xb, outer, n, k, descending, vb, ib); break;
    case I64: sort_typed<int64_t>(xb, outer, n, k, descending, vb, ib); break;
    default: LAMINA_CHECK(false, "sort: bool tensors cannot be sorted; cast to int32 first");
  }
}

void bind_sorting(py::module_& m) { def_kernel(m, "sort_rows", &sort_rows); }

}  // namespace lamina
