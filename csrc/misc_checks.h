// Argument checks shared by the CPU module and csrc/cuda/misc.cu for the losses on dense targets
// (xent_dense, bce and their gradients), one_hot, take_along_axis and its gradient, nonzero, tri,
// arange / linspace and batch_transpose: the same checks and messages on every device, over any
// buffer type with `numel` and `dtype`. Checks that read the data (take_along_axis's index
// values) stay with each device (the CPU reads them, the GPU checks them on the device).
#pragma once
#include <algorithm>
#include <string>

#include "checks.h"
#include "strided.h"

namespace lamina {
namespace misc_checks {

// Optional (pointer) buffer parameters are not deduced, so that callers may pass nullptr.
template <class T> struct NoDeduce { using type = T; };
template <class T> using Opt = const typename NoDeduce<T>::type*;

// ---- losses (nn.cpp) ------------------------------------------------------------------------------
template <class B>
void check_xent_dense(const B& x, const B& t, int64_t outer, int64_t K, int64_t inner, const B& loss, const B& aux) {
  const char* op = "categorical_crossentropy";
  check_view(op, "output", x, outer, K, inner, F32);
  check_view(op, "target", t, outer, K, inner, F32);
  check_count(op, "loss", loss, outer * inner, F32);
  check_count(op, "aux", aux, outer * inner, F32);
}

template <class B>
void check_xent_dense_grad(const B& x, const B& t, const B& aux, const B& g, int64_t outer, int64_t K, int64_t inner,
                           Opt<B> dx, Opt<B> dt) {
  const char* op = "categorical_crossentropy_grad";
  check_view(op, "output", x, outer, K, inner, F32);
  check_view(op, "target", t, outer, K, inner, F32);
  check_count(op, "aux", aux, outer * inner, F32);
  check_count(op, "grad", g, outer * inner, F32);
  if (dx) check_view(op, "dx", *dx, outer, K, inner, F32);
  if (dt) check_view(op, "dt", *dt, outer, K, inner, F32);
}

template <class B>
void check_bce(const B& t, const B& x, const B& out) {
  const char* op = "binary_crossentropy";
  check_dtype(op, "target", t, F32);
  check_count(op, "output", x, t.numel, F32);
  check_count(op, "loss", out, t.numel, F32);
}

template <class B>
void check_bce_grad(const B& t, const B& x, const B& g, Opt<B> dx, Opt<B> dt) {
  const char* op = "binary_crossentropy_grad";
  check_dtype(op, "target", t, F32);
  const int64_t n = t.numel;
  check_count(op, "output", x, n, F32);
  check_count(op, "grad", g, n, F32);
  if (dx) check_count(op, "dx", *dx, n, F32);
  if (dt) check_count(op, "dt", *dt, n, F32);
}

// ---- one_hot (nn.cpp): ids (outer, inner) of int32 / int64, out (outer, K, inner) -------------------
template <class B>
void check_one_hot(const B& ids, int64_t outer, int64_t K, int64_t inner, const B& out) {
  if (ids.dtype != I32 && ids.dtype != I64) {
    Msg os;
    os << "one_hot: expected x of dtype int32 or int64, received " << dtype_name(ids.dtype);
    throw TypeError(os.str());
  }
  LAMINA_CHECK(ids.numel == outer * inner, "one_hot: x holds " << ids.numel << " elements, expected " << outer * inner);
  LAMINA_CHECK(K >= 0, "one_hot: num_classes must be >= 0, received " << K);
  LAMINA_CHECK(out.numel == outer * K * inner, "one_hot: out holds " << out.numel << " elements, expected "
                                                                      << outer * K * inner);
}

// one_hot's outputs are float32, int32, int64 or bool (raised after the output is zeroed).
[[noreturn]] inline void one_hot_dtype_error(DType dt) {
  throw TypeError(std::string("one_hot: expected an output of dtype float32, int32, int64 or bool, received ") +
                  dtype_name(dt));
}

// ---- indexing (manipulation.cpp) ------------------------------------------------------------------
template <class B>
void check_index_dtype(const char* op, const B& idx) {
  if (idx.dtype != I32 && idx.dtype != I64) {
    Msg os;
    os << op << ": expected indices of dtype int32 or int64, received " << dtype_name(idx.dtype);
    throw TypeError(os.str());
  }
}

// The IndexError of take / take_along_axis for index `v` at flat position j, outside [-n, n).
inline std::string index_out_of_bounds(const char* op, int64_t v, int64_t j, int64_t n) {
  Msg os;
  os << op << ": index " << v << " (at flat position " << j << " of the indices) is out of bounds for an axis of size "
     << n;
  if (n) os << "; valid indices are " << -n << " to " << n - 1;
  else os << "; the axis is empty, so no index is valid";
  return os.str();
}

inline void check_outer_n_inner(const char* op, int64_t outer, int64_t n, int64_t inner) {
  LAMINA_CHECK(outer >= 0 && n >= 0 && inner >= 0,
               op << ": expected non-negative (outer, n, inner), received (" << outer << ", " << n << ", " << inner << ")");
}

// take: x (outer, n, inner), out (outer, idx.numel, inner) of x's dtype. The index values are
// checked by each device (the CPU reads them; the GPU on the device).
template <class B>
void check_take(const B& x, int64_t outer, int64_t n, int64_t inner, const B& idx, const B& out) {
  const char* op = "take";
  check_outer_n_inner(op, outer, n, inner);
  LAMINA_CHECK(x.numel == mul_checked(op, mul_checked(op, outer, n), inner),
               op << ": x holds " << x.numel << " elements, not outer*n*inner = " << outer << "*" << n << "*" << inner);
  check_dtype(op, "out", out, x.dtype);
  LAMINA_CHECK(out.numel == mul_checked(op, mul_checked(op, outer, idx.numel), inner),
               op << ": out holds " << out.numel << " elements, expected " << outer << "*" << idx.numel << "*" << inner);
}

// take_grad: g (outer, idx.numel, inner) and gx (outer, n, inner), float32.
template <class B>
void check_take_grad(const B& g, int64_t outer, int64_t n, int64_t inner, const B& idx, const B& gx) {
  const char* op = "take_grad";
  check_outer_n_inner(op, outer, n, inner);
  check_dtype(op, "grad", g, F32);
  check_dtype(op, "out", gx, F32);
  const int64_t m = idx.numel;
  LAMINA_CHECK(gx.numel == mul_checked(op, mul_checked(op, outer, n), inner),
               op << ": out holds " << gx.numel << " elements, not outer*n*inner = " << outer << "*" << n << "*" << inner);
  LAMINA_CHECK(g.numel == mul_checked(op, mul_checked(op, outer, m), inner),
               op << ": grad holds " << g.numel << " elements, expected " << outer << "*" << m << "*" << inner);
}

// x: (outer, n, inner); idx: (outer, m, inner).
template <class B>
void check_along_sizes(const char* op, const B& x, int64_t outer, int64_t n, int64_t inner, const B& idx, int64_t m) {
  check_outer_n_inner(op, outer, n, inner);
  LAMINA_CHECK(m >= 0, op << ": negative index length " << m);
  LAMINA_CHECK(x.numel == mul_checked(op, mul_checked(op, outer, n), inner),
               op << ": x holds " << x.numel << " elements, not outer*n*inner = " << outer << "*" << n << "*" << inner);
  LAMINA_CHECK(idx.numel == mul_checked(op, mul_checked(op, outer, m), inner),
               op << ": indices hold " << idx.numel << " elements, not outer*m*inner = " << outer << "*" << m << "*" << inner);
}

// take_along_axis's checks before the index values are read (those come last: check_index_dtype
// and the range of each index, on each device).
template <class B>
void check_take_along(const B& x, int64_t outer, int64_t n, int64_t inner, const B& idx, int64_t m, const B& out) {
  const char* op = "take_along_axis";
  check_along_sizes(op, x, outer, n, inner, idx, m);
  check_dtype(op, "out", out, x.dtype);
  LAMINA_CHECK(out.numel == idx.numel, op << ": out holds " << out.numel << " elements, indices " << idx.numel);
}

template <class B>
void check_take_along_grad(const B& g, int64_t outer, int64_t n, int64_t inner, const B& idx, int64_t m, const B& gx) {
  const char* op = "take_along_axis_grad";
  check_along_sizes(op, gx, outer, n, inner, idx, m);
  check_dtype(op, "grad", g, F32);
  check_dtype(op, "out", gx, F32);
  LAMINA_CHECK(g.numel == idx.numel, op << ": grad holds " << g.numel << " elements, indices " << idx.numel);
}

// ---- nonzero: x of `shape`, one int64 output per dimension holding `count` coordinates ------------
template <class B>
void check_nonzero(const B& x, const Shape& shape, size_t n_outs) {
  const char* op = "nonzero";
  check_buffer(op, "x", x, shape, x.dtype);
  LAMINA_CHECK(!shape.empty(), op << ": expected a tensor with at least one dimension, received shape ()");
  LAMINA_CHECK(n_outs == shape.size(), op << ": expected " << shape.size() << " output buffers for shape "
                                          << shape_str(shape) << ", received " << n_outs);
}

template <class B>
void check_nonzero_out(const B* o, int64_t count) {
  const char* op = "nonzero";
  LAMINA_CHECK(o, op << ": output buffer is None");
  check_dtype(op, "out", *o, I64);
  LAMINA_CHECK(o->numel == count, op << ": output buffers must hold " << count
                                     << " elements (the non-zero count), one holds " << o->numel);
}

// ---- triangles: x and out (batch, rows, cols) of one dtype ---------------------------------------
template <class B>
void check_tri(const B& x, int64_t batch, int64_t rows, int64_t cols, bool upper, const B& out) {
  const char* op = upper ? "triu" : "tril";
  check_outer_n_inner(op, batch, rows, cols);
  LAMINA_CHECK(x.numel == mul_checked(op, mul_checked(op, batch, rows), cols),
               op << ": x holds " << x.numel << " elements, not batch*rows*cols = " << batch << "*" << rows << "*" << cols);
  check_dtype(op, "out", out, x.dtype);
  LAMINA_CHECK(out.numel == x.numel, op << ": out holds " << out.numel << " elements, x " << x.numel);
}

// The diagonal offset clamped to the values that matter: beyond them every row is all kept / all zero.
inline int64_t tri_clamped_k(int64_t k, int64_t rows, int64_t cols) {
  return std::max(std::min(k, cols + 1), -rows - 1);
}

// ---- ranges: outputs of float32, int32 or int64 --------------------------------------------------
[[noreturn]] inline void range_dtype_error(const char* op, DType dt) {
  throw TypeError(std::string(op) + ": expected an output of dtype float32, int32 or int64, received " + dtype_name(dt));
}

// linspace's step: (stop - start) / (n - 1) with the endpoint, / n without (0 when that is 0).
inline double linspace_step(int64_t n, double start, double stop, bool endpoint) {
  const int64_t div = endpoint ? n - 1 : n;
  return div > 0 ? (stop - start) / double(div) : 0.0;
}

// ---- batch_transpose: x (B, R, S) -> out (B, S, R), float32 ----------------------------------------
template <class B>
void check_batch_transpose(const B& x, int64_t Bn, int64_t R, int64_t S, const B& out) {
  const char* op = "batch_transpose";
  LAMINA_CHECK(Bn >= 0 && R >= 0 && S >= 0, op << ": negative dimension in (" << Bn << ", " << R << ", " << S << ")");
  check_buffer(op, "input", x, Shape{Bn, R, S}, F32);
  check_buffer(op, "output", out, Shape{Bn, S, R}, F32);
}

}  // namespace misc_checks
}  // namespace lamina
