// Reductions over one contiguous block of axes: the input is viewed as (outer, R, inner) and
// reduced over R. The Python side reduces non-adjacent axis groups one block at a time.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <cmath>
#include <limits>

#include "common.h"

namespace py = pybind11;

namespace lamina {

enum ReduceOp : int { R_SUM = 0, R_MEAN, R_MAX, R_MIN, R_PROD, R_ANY, R_ALL };

template <class T, class Acc, int OP>
static void reduce_typed(const T* x, T* y, int64_t outer, int64_t R, int64_t inner) {
  auto init = []() -> Acc {
    if (OP == R_MAX) return std::numeric_limits<Acc>::has_infinity ? -std::numeric_limits<Acc>::infinity() : std::numeric_limits<Acc>::lowest();
    if (OP == R_MIN) return std::numeric_limits<Acc>::has_infinity ? std::numeric_limits<Acc>::infinity() : std::numeric_limits<Acc>::max();
    if (OP == R_PROD) return Acc(1);
    return Acc(0);
  };
  auto comb = [](Acc a, Acc b) -> Acc {
    if (OP == R_MAX) return (b > a || b != b) ? b : a;   // NaN propagates
    if (OP == R_MIN) return (b < a || b != b) ? b : a;
    if (OP == R_PROD) return a * b;
    return a + b;
  };
  const int64_t total = outer * R * inner;
  if (inner == 1) {
    // Row reductions: several partial accumulators so the loop vectorises and sums stay accurate.
#pragma omp parallel for if (total > kParallelGrain && outer > 1)
    for (int64_t o = 0; o < outer; ++o) {
      const T* row = x + o * R;
      Acc acc[16];
      for (int k = 0; k < 16; ++k) acc[k] = init();
      int64_t r = 0;
      for (; r + 16 <= R; r += 16)
        for (int k = 0; k < 16; ++k) acc[k] = comb(acc[k], Acc(row[r + k]));
      for (; r < R; ++r) acc[0] = comb(acc[0], Acc(row[r]));
      for (int w = 8; w >= 1; w /= 2)
        for (int k = 0; k < w; ++k) acc[k] = comb(acc[k], acc[k + w]);
      Acc v = acc[0];
      if (OP == R_MEAN) v = R ? v / Acc(R) : std::numeric_limits<Acc>::quiet_NaN();
      y[o] = T(v);
    }
    return;
  }
  // Column reductions: accumulate whole rows of `inner` elements.
  const int64_t blocks = outer * ((inner + 255) / 256);
#pragma omp parallel for if (total > kParallelGrain && blocks > 1)
  for (int64_t bi = 0; bi < blocks; ++bi) {
    int64_t nb = (inner + 255) / 256;
    int64_t o = bi / nb, i0 = (bi % nb) * 256, i1 = std::min(inner, i0 + 256);
    Acc acc[256];
    for (int64_t i = i0; i < i1; ++i) acc[i - i0] = init();
    for (int64_t r = 0; r < R; ++r) {
      const T* row = x + (o * R + r) * inner;
      for (int64_t i = i0; i < i1; ++i) acc[i - i0] = comb(acc[i - i0], Acc(row[i]));
    }
    for (int64_t i = i0; i < i1; ++i) {
      Acc v = acc[i - i0];
      if (OP == R_MEAN) v = R ? v / Acc(R) : std::numeric_limits<Acc>::quiet_NaN();
      y[o * inner + i] = T(v);
    }
  }
}

template <class T, class Acc>
static void reduce_dispatch(int op, const T* x, T* y, int64_t outer, int64_t R, int64_t inner) {
  switch (op) {
    case R_SUM: reduce_typed<T, Acc, R_SUM>(x, y, outer, R, inner); break;
    case R_MEAN: reduce_typed<T, Acc, R_MEAN>(x, y, outer, R, inner); break;
    case R_MAX: reduce_typed<T, Acc, R_MAX>(x, y, outer, R, inner); break;
    case R_MIN: reduce_typed<T, Acc, R_MIN>(x, y, outer, R, inner); break;
    case R_PROD: reduce_typed<T, Acc, R_PROD>(x, y, outer, R, inner); break;
    default: LAMINA_CHECK(false, "reduce: unknown op code " << op);
  }
}

// y[o, i] = reduce_r x[o, r, i]
static void reduce(int op, const Buffer& xb, int64_t outer, int64_t R, int64_t inner, Buffer& yb) {
  LAMINA_CHECK(outer >= 0 && R >= 0 && inner >= 0, "reduce: negative extent");
  LAMINA_CHECK(xb.numel == outer * R * inner, "reduce: input holds " << xb.numel << " elements, expected " << outer * R * inner);
  LAMINA_CHECK(yb.numel == outer * inner, "reduce: output holds " << yb.numel << " elements, expected " << outer * inner);
  if ((op == R_MAX || op == R_MIN) && R == 0 && outer * inner > 0)
    LAMINA_CHECK(false, "reduce: cannot take the max/min of an empty axis (zero-size reduction has no identity)");
  if (op == R_ANY || op == R_ALL) {
    check_dtype("reduce", "x", xb, BOOL);
    check_dtype("reduce", "out", yb, BOOL);
    const uint8_t* x = xb.data<uint8_t>(); uint8_t* y = yb.data<uint8_t>();
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        uint8_t acc = op == R_ALL;
        for (int64_t r = 0; r < R; ++r) {
          uint8_t v = x[(o * R + r) * inner + i] != 0;
          acc = op == R_ALL ? (acc && v) : (acc || v);
        }
        y[o * inner + i] = acc;
      }
    return;
  }
  check_dtype("reduce", "out", yb, xb.dtype);
  switch (xb.dtype) {
    case F32: reduce_dispatch<float, float>(op, xb.data<float>(), yb.data<float>(), outer, R, inner); break;
    case I32: reduce_dispatch<int32_t, int64_t>(op, xb.data<int32_t>(), yb.data<int32_t>(), outer, R, inner); break;
    case I64: reduce_dispatch<int64_t, int64_t>(op, xb.data<int64_t>(), yb.data<int64_t>(), outer, R, inner); break;
    default: LAMINA_CHECK(false, "reduce: use any/all for bool tensors, or cast to int32 first");
  }
}

// y[o, i] = argmax_r x[o, r, i] (first index on ties), as int64.
template <class T>
static void arg_typed(bool is_max, const T* x, int64_t* y, int64_t outer, int64_t R, int64_t inner) {
#pragma omp parallel for if (outer * R * inner > kParallelGrain && outer > 1)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const T* p = x + o * R * inner + i;
      T best = p[0]; int64_t bi = 0;
      for (int64_t r = 1; r < R; ++r) {
        T v = p[r * inner];
        if (best != best) break;  // NaN wins, like numpy
        if (is_max ? (v > best || v != v) : (v < best || v != v)) { best = v; bi = r; }
      }
      y[o * inner + i] = bi;
    }
}
static void argreduce(bool is_max, const Buffer& xb, int64_t outer, int64_t R, int64_t inner, Buffer& yb) {
  LAMINA_CHECK(R > 0, (is_max ? "argmax" : "argmin") << ": cannot reduce an empty axis");
  LAMINA_CHECK(xb.numel == outer * R * inner && yb.numel == outer * inner, "argreduce: element counts do not match");
  check_dtype("argreduce", "out", yb, I64);
  switch (xb.dtype) {
    case F32: arg_typed(is_max, xb.data<float>(), yb.data<int64_t>(), outer, R, inner); break;
    case I32: arg_typed(is_max, xb.data<int32_t>(), yb.data<int64_t>(), outer, R, inner); break;
    case I64: arg_typed(is_max, xb.data<int64_t>(), yb.data<int64_t>(), outer, R, inner); break;
    case BOOL: arg_typed(is_max, xb.data<uint8_t>(), yb.data<int64_t>(), outer, R, inner); break;
  }
}

void bind_reduce(py::module_& m) {
  m.def("reduce", &reduce);
  m.def("argreduce", &argreduce);
}

}  // namespace lamina
