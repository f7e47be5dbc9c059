// Argument checks of the fused optimizer updates, shared by the CPU module (csrc/cpu/optim.cpp)
// and the CUDA module (csrc/cuda/optim_more.cu): the same checks and messages on every device,
// over any buffer type with `numel` and `dtype`.
//
// A row gradient for a variable of `var.numel` elements viewed as (V, D): `indices` int64 (u,)
// distinct row ids in increasing order, `values` float32 (u, D) (backend/sparse.py's deduplicate).
#pragma once
#include <cstdint>
#include <vector>

#include "checks.h"

namespace lamina {
namespace optim_args {

// `other` (a gradient or a slot) is float32 and holds as many elements as the variable.
template <class B>
void check_same(const char* op, const B& var, const B& other, const char* what) {
  check_dtype(op, what, other, F32);
  LAMINA_CHECK(other.numel == var.numel, op << ": " << what << " holds " << other.numel
                                            << " elements, the variable " << var.numel);
}

// A row gradient's dtypes and sizes (everything but the row ids' values); returns V, the rows.
template <class B>
int64_t check_row_shapes(const char* op, const B& var, int64_t D, const B& ib, const B& gb) {
  check_dtype(op, "variable", var, F32);
  LAMINA_CHECK(D > 0 && var.numel % D == 0, op << ": row size " << D << " does not divide the variable's "
                                              << var.numel << " elements");
  check_dtype(op, "indices", ib, I64);
  check_dtype(op, "values", gb, F32);
  const int64_t u = ib.numel;
  LAMINA_CHECK(gb.numel == u * D, op << ": values hold " << gb.numel << " elements, expected " << u << " rows of "
                                     << D << " for " << u << " indices");
  return var.numel / D;
}

// The row id `cur` at position j (`prev` the one before it, unused at j = 0): in [0, V), and
// greater than the previous one. Every position is checked, in order, before any update.
inline void check_row_index(const char* op, int64_t j, int64_t cur, int64_t prev, int64_t V) {
  LAMINA_CHECK(cur >= 0 && cur < V, op << ": row index " << cur << " at position " << j
                                       << " is out of range for a variable of " << V << " rows");
  LAMINA_CHECK(j == 0 || cur > prev, op << ": row indices must be distinct and increasing (found " << prev
                                        << " then " << cur << "); deduplicate the gradient first");
}

// Adam's slots (vhat only with amsgrad).
template <class B>
void check_adam(const char* op, const B& var, const B& m, const B& v, const B& vhat, bool amsgrad) {
  check_dtype(op, "variable", var, F32);
  check_same(op, var, m, "m");
  check_same(op, var, v, "v");
  if (amsgrad) check_same(op, var, vhat, "vhat");
}

// adam_multi's lists: one entry per variable in each (vhats: the v's again without amsgrad), each
// variable checked as adam checks it; every check before any update.
template <class P, class D>
void check_adam_multi(const char* op, const std::vector<P>& vars, const std::vector<P>& grads,
                      const std::vector<P>& ms, const std::vector<P>& vs, const std::vector<P>& vhats,
                      const std::vector<D>& wd_lrs, bool amsgrad) {
  const size_t n = vars.size();
  LAMINA_CHECK(grads.size() == n && ms.size() == n && vs.size() == n && vhats.size() == n && wd_lrs.size() == n,
               op << ": expected one gradient, m, v, vhat and weight decay per variable for " << n
                  << " variables, received " << grads.size() << ", " << ms.size() << ", " << vs.size() << ", "
                  << vhats.size() << " and " << wd_lrs.size());
  for (size_t i = 0; i < n; ++i) {
    check_adam(op, *vars[i], *ms[i], *vs[i], *vhats[i], amsgrad);
    check_same(op, *vars[i], *grads[i], "gradient");
  }
}

// sgd_multi's lists: one entry per variable in each (vels: the variables again without momentum),
// each variable checked as sgd checks it; every check before any update.
template <class P>
void check_sgd_multi(const char* op, const std::vector<P>& vars, const std::vector<P>& grads,
                     const std::vector<P>& vels, double momentum) {
  const size_t n = vars.size();
  LAMINA_CHECK(grads.size() == n && vels.size() == n, op << ": expected one gradient and velocity per variable for "
                                                          << n << " variables, received " << grads.size() << " and "
                                                          << vels.size());
  for (size_t i = 0; i < n; ++i) {
    check_dtype(op, "variable", *vars[i], F32);
    check_same(op, *vars[i], *grads[i], "gradient");
    if (float(momentum) != 0.f) check_same(op, *vars[i], *vels[i], "velocity");
  }
}

// RMSprop's slots (average_gradient only when centered, momentum only with momentum > 0).
template <class B>
void check_rmsprop(const char* op, const B& var, const B& vel, const B& ag, const B& mom, bool centered,
                   double momentum) {
  check_dtype(op, "variable", var, F32);
  check_same(op, var, vel, "velocity");
  if (centered) check_same(op, var, ag, "average_gradient");
  if (momentum > 0) check_same(op, var, mom, "momentum");
}

// A row gradient's rows must hold whole lines of Adafactor's last axis C.
inline void check_adafactor_rows(bool factored, int64_t D, int64_t C) {
  LAMINA_CHECK(!factored || (C > 0 && D % C == 0), "adafactor_sparse: row size " << D
                                                       << " is not a multiple of the last axis " << C);
}

// Adafactor's factored slots: r (B, R) and c (B, C) for the variable viewed as (B, R, C).
template <class B>
void check_adafactor_factored(const char* op, int64_t numel, const B* rb, const B* cb, int64_t Bn, int64_t R,
                              int64_t C) {
  LAMINA_CHECK(rb && cb, op << ": a factored update needs the r and c slots");
  LAMINA_CHECK(Bn * R * C == numel, op << ": the factored shape (" << Bn << ", " << R << ", " << C
                                       << ") does not hold the variable's " << numel << " elements");
  check_dtype(op, "r", *rb, F32);
  check_dtype(op, "c", *cb, F32);
  LAMINA_CHECK(rb->numel == Bn * R && cb->numel == Bn * C,
               op << ": r holds " << rb->numel << " elements and c " << cb->numel << ", expected " << Bn * R
                  << " and " << Bn * C);
}

}  // namespace optim_args
}  // namespace lamina
