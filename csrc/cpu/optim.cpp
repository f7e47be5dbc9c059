// Fused optimizer updates, in place, one pass over each variable (Keras 3 update rules).
//
// Each rule is one inline "span" function over n contiguous elements. The dense kernels run it
// over chunks of the flat variable; the sparse kernels (a row gradient: sorted distinct row ids
// and one summed gradient row per id, see backend/sparse.py) run the same function row by row,
// either over the gradient's rows only (SGD without momentum, Adagrad: a zero gradient leaves
// those rows unchanged) or over every row with a zero row standing in for rows without gradient
// (Adam, RMSprop, SGD with momentum: their moments decay everywhere). Same function, same
// float operations: a sparse step equals the dense step with the densified gradient bit for bit.
#include <pybind11/pybind11.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "broadcast_loops.h"
#include "common.h"
#include "device.h"

namespace py = pybind11;

namespace lamina {

static void check_same(const char* op, const Buffer& var, const Buffer& other, const char* what) {
  check_dtype(op, what, other, F32);
  LAMINA_CHECK(other.numel == var.numel, op << ": " << what << " holds " << other.numel
                                            << " elements, the variable " << var.numel);
}

// ---- the update rules ---------------------------------------------------------------------------

// var -= lr * g
static inline void sgd_plain_span(float* w, const float* g, int64_t n, float lr) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) w[i] -= lr * g[i];
}

// v = momentum * v - lr * g;  var += v  (nesterov: var += momentum * v - lr * g)
static inline void sgd_momentum_span(float* w, const float* g, float* v, int64_t n, float lr, float mom, bool nesterov) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float vi = mom * v[i] - lr * g[i];
    v[i] = vi;
    w[i] += nesterov ? mom * vi - lr * g[i] : vi;
  }
}

struct AdamP { float lr_t, c1, c2, eps, wd; bool amsgrad; };

// m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); vhat = max(vhat, v) (amsgrad);
// var -= lr_t * m / (sqrt(v or vhat) + eps); decoupled weight decay first: var -= var * wd_lr.
static inline void adam_span(float* w, const float* g, float* m, float* v, float* vh, int64_t n, const AdamP& p) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    float wi = w[i] - w[i] * p.wd;
    float mi = m[i] + (gi - m[i]) * p.c1;
    float vi = v[i] + (gi * gi - v[i]) * p.c2;
    m[i] = mi; v[i] = vi;
    float d = vi;
    if (p.amsgrad) { d = vh[i] > vi ? vh[i] : vi; vh[i] = d; }
    w[i] = wi - p.lr_t * mi / (std::sqrt(d) + p.eps);
  }
}

struct RmsP { float lr, rho, momentum, eps; bool centered; };

// velocity = rho v + (1 - rho) g^2; centered: ag = rho ag + (1 - rho) g, denom = velocity - ag^2 + eps;
// else denom = velocity + eps. inc = lr g / sqrt(denom); momentum: mom = momentum * mom + inc; var -= mom.
static inline void rmsprop_span(float* w, const float* g, float* vel, float* ag, float* mo, int64_t n, const RmsP& p) {
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    float v = p.rho * vel[i] + (1.f - p.rho) * gi * gi;
    vel[i] = v;
    float denom = v + p.eps;
    if (p.centered) { float a = p.rho * ag[i] + (1.f - p.rho) * gi; ag[i] = a; denom = v - a * a + p.eps; }
    float inc = p.lr * gi / std::sqrt(denom);
    if (p.momentum > 0.f) { float mi = p.momentum * mo[i] + inc; mo[i] = mi; w[i] -= mi; }
    else w[i] -= inc;
  }
}

// acc += g^2; var -= lr g / sqrt(acc + eps)
static inline void adagrad_span(float* w, const float* g, float* a, int64_t n, float lr, float eps) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float ai = a[i] + g[i] * g[i];
    a[i] = ai;
    w[i] -= lr * g[i] / std::sqrt(ai + eps);
  }
}

// ---- dense kernels ------------------------------------------------------------------------------

static void sgd(Buffer& var, const Buffer& grad, Buffer& vel, double lr_d, double mom_d, bool nesterov) {
  check_dtype("sgd", "variable", var, F32);
  check_same("sgd", var, grad, "gradient");
  float* w = var.data<float>(); const float* g = grad.data<float>();
  const float lr = float(lr_d), mom = float(mom_d);
  if (mom == 0.f) {
    for_each_chunk(var.numel, [&](int64_t s, int64_t n) { sgd_plain_span(w + s, g + s, n, lr); });
    return;
  }
  check_same("sgd", var, vel, "velocity");
  float* v = vel.data<float>();
  for_each_chunk(var.numel, [&](int64_t s, int64_t n) { sgd_momentum_span(w + s, g + s, v + s, n, lr, mom, nesterov); });
}

static AdamP adam_params(double lr_t, double b1, double b2, double eps, bool amsgrad, double wd_lr) {
  return AdamP{float(lr_t), 1.f - float(b1), 1.f - float(b2), float(eps), float(wd_lr), amsgrad};
}

static void check_adam(const char* op, const Buffer& var, const Buffer& mb, const Buffer& vb, const Buffer& vhatb, bool amsgrad) {
  check_dtype(op, "variable", var, F32);
  check_same(op, var, mb, "m");
  check_same(op, var, vb, "v");
  if (amsgrad) check_same(op, var, vhatb, "vhat");
}

static void adam(Buffer& var, const Buffer& grad, Buffer& mb, Buffer& vb, Buffer& vhatb, double lr_t, double b1,
                 double b2, double eps, bool amsgrad, double wd_lr) {
  check_adam("adam", var, mb, vb, vhatb, amsgrad);
  check_same("adam", var, grad, "gradient");
  float* w = var.data<float>(); const float* g = grad.data<float>(); float* m = mb.data<float>();
  float* v = vb.data<float>(); float* vh = vhatb.data<float>();
  const AdamP p = adam_params(lr_t, b1, b2, eps, amsgrad, wd_lr);
  for_each_chunk(var.numel, [&](int64_t s, int64_t n) { adam_span(w + s, g + s, m + s, v + s, vh + s, n, p); });
}

static void check_rmsprop(const char* op, const Buffer& var, const Buffer& velb, const Buffer& agb, const Buffer& momb,
                          bool centered, double momentum) {
  check_dtype(op, "variable", var, F32);
  check_same(op, var, velb, "velocity");
  if (centered) check_same(op, var, agb, "average_gradient");
  if (momentum > 0) check_same(op, var, momb, "momentum");
}

static void rmsprop(Buffer& var, const Buffer& grad, Buffer& velb, Buffer& agb, Buffer& momb, double lr, double rho,
                    double momentum, double eps, bool centered) {
  check_rmsprop("rmsprop", var, velb, agb, momb, centered, momentum);
  check_same("rmsprop", var, grad, "gradient");
  float* w = var.data<float>(); const float* g = grad.data<float>(); float* vel = velb.data<float>();
  float* ag = agb.data<float>(); float* mo = momb.data<float>();
  const RmsP p{float(lr), float(rho), float(momentum), float(eps), centered};
  for_each_chunk(var.numel, [&](int64_t s, int64_t n) { rmsprop_span(w + s, g + s, vel + s, ag + s, mo + s, n, p); });
}

static void adagrad(Buffer& var, const Buffer& grad, Buffer& accb, double lr_d, double eps_d) {
  check_dtype("adagrad", "variable", var, F32);
  check_same("adagrad", var, grad, "gradient");
  check_same("adagrad", var, accb, "accumulator");
  float* w = var.data<float>(); const float* g = grad.data<float>(); float* a = accb.data<float>();
  const float lr = float(lr_d), eps = float(eps_d);
  for_each_chunk(var.numel, [&](int64_t s, int64_t n) { adagrad_span(w + s, g + s, a + s, n, lr, eps); });
}

// Keras's weight decay, before the update: var = var - var * wd * lr.
static void weight_decay(Buffer& var, double wd_d, double lr_d) {
  check_dtype("weight_decay", "variable", var, F32);
  float* w = var.data<float>();
  const float wd = float(wd_d), lr = float(lr_d);
  for_each_chunk(var.numel, [&](int64_t s, int64_t n) {
#pragma omp simd
    for (int64_t i = s; i < s + n; ++i) w[i] = w[i] - w[i] * wd * lr;
  });
}

// ---- sparse (row) kernels -----------------------------------------------------------------------

// A row gradient for a variable of `var.numel` elements viewed as (V, D): `idx` int64 (u,) distinct
// row ids in increasing order, `gv` float32 (u, D). Checked in full (O(u)) before any update.
struct Rows {
  int64_t V, D, u;
  const int64_t* idx;
  const float* gv;
};

static Rows check_rows(const char* op, const Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb) {
  check_dtype(op, "variable", var, F32);
  LAMINA_CHECK(D > 0 && var.numel % D == 0, op << ": row size " << D << " does not divide the variable's "
                                              << var.numel << " elements");
  check_dtype(op, "indices", ib, I64);
  check_dtype(op, "values", gb, F32);
  const int64_t V = var.numel / D, u = ib.numel;
  LAMINA_CHECK(gb.numel == u * D, op << ": values hold " << gb.numel << " elements, expected " << u << " rows of "
                                     << D << " for " << u << " indices");
  const int64_t* idx = ib.data<int64_t>();
  for (int64_t j = 0; j < u; ++j) {
    LAMINA_CHECK(idx[j] >= 0 && idx[j] < V, op << ": row index " << idx[j] << " at position " << j
                                                << " is out of range for a variable of " << V << " rows");
    LAMINA_CHECK(j == 0 || idx[j] > idx[j - 1], op << ": row indices must be distinct and increasing (found "
                                                   << idx[j - 1] << " then " << idx[j]
                                                   << "); deduplicate the gradient first");
  }
  return Rows{V, D, u, idx, gb.data<float>()};
}

// span(offset, grad_row) for each row holding a gradient (distinct rows: no races).
template <class Span>
static void for_each_grad_row(const Rows& r, Span span) {
#pragma omp parallel for if (r.u * r.D > kParallelGrain && r.u > 1) schedule(static)
  for (int64_t j = 0; j < r.u; ++j) span(r.idx[j] * r.D, r.gv + j * r.D);
}

// span(offset, grad_row) for every row of the variable, a zero row where it has no gradient.
// Threads own ranges of rows and find their first gradient row by binary search.
template <class Span>
static void for_each_row(const Rows& r, Span span) {
  const std::vector<float> zeros(size_t(r.D), 0.f);
  const bool par = r.V * r.D > kParallelGrain && r.V > 1;
#pragma omp parallel if (par)
  {
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t r0 = r.V * tid / nt, r1 = r.V * (tid + 1) / nt;
    int64_t j = std::lower_bound(r.idx, r.idx + r.u, r0) - r.idx;
    for (int64_t row = r0; row < r1; ++row) {
      const float* g = zeros.data();
      if (j < r.u && r.idx[j] == row) g = r.gv + (j++) * r.D;
      span(row * r.D, g);
    }
  }
}

static void sgd_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& vel, double lr_d,
                       double mom_d, bool nesterov) {
  const Rows r = check_rows("sgd_sparse", var, D, ib, gb);
  float* w = var.data<float>();
  const float lr = float(lr_d), mom = float(mom_d);
  if (mom == 0.f) {
    for_each_grad_row(r, [&](int64_t o, const float* g) { sgd_plain_span(w + o, g, D, lr); });
    return;
  }
  check_same("sgd_sparse", var, vel, "velocity");
  float* v = vel.data<float>();
  for_each_row(r, [&](int64_t o, const float* g) { sgd_momentum_span(w + o, g, v + o, D, lr, mom, nesterov); });
}

static void adam_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& mb, Buffer& vb,
                        Buffer& vhatb, double lr_t, double b1, double b2, double eps, bool amsgrad, double wd_lr) {
  const Rows r = check_rows("adam_sparse", var, D, ib, gb);
  check_adam("adam_sparse", var, mb, vb, vhatb, amsgrad);
  float* w = var.data<float>(); float* m = mb.data<float>(); float* v = vb.data<float>(); float* vh = vhatb.data<float>();
  const AdamP p = adam_params(lr_t, b1, b2, eps, amsgrad, wd_lr);
  for_each_row(r, [&](int64_t o, const float* g) { adam_span(w + o, g, m + o, v + o, vh + o, D, p); });
}

static void rmsprop_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& velb, Buffer& agb,
                           Buffer& momb, double lr, double rho, double momentum, double eps, bool centered) {
  const Rows r = check_rows("rmsprop_sparse", var, D, ib, gb);
  check_rmsprop("rmsprop_sparse", var, velb, agb, momb, centered, momentum);
  float* w = var.data<float>(); float* vel = velb.data<float>(); float* ag = agb.data<float>(); float* mo = momb.data<float>();
  const RmsP p{float(lr), float(rho), float(momentum), float(eps), centered};
  for_each_row(r, [&](int64_t o, const float* g) { rmsprop_span(w + o, g, vel + o, ag + o, mo + o, D, p); });
}

static void adagrad_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& accb, double lr_d,
                           double eps_d) {
  const Rows r = check_rows("adagrad_sparse", var, D, ib, gb);
  check_same("adagrad_sparse", var, accb, "accumulator");
  float* w = var.data<float>(); float* a = accb.data<float>();
  const float lr = float(lr_d), eps = float(eps_d);
  for_each_grad_row(r, [&](int64_t o, const float* g) { adagrad_span(w + o, g, a + o, D, lr, eps); });
}

// Sum of squares of a float32 buffer (accumulated in double), for gradient norms.
static double sum_squares(const Buffer& b) {
  check_dtype("sum_squares", "x", b, F32);
  const float* x = b.data<float>();
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) if (b.numel > kParallelGrain)
  for (int64_t i = 0; i < b.numel; ++i) total += double(x[i]) * double(x[i]);
  return total;
}

void bind_optim(py::module_& m) {
  def_kernel(m, "sgd", &sgd);
  def_kernel(m, "adam", &adam);
  def_kernel(m, "rmsprop", &rmsprop);
  def_kernel(m, "adagrad", &adagrad);
  def_kernel(m, "weight_decay", &weight_decay);
  def_kernel(m, "sgd_sparse", &sgd_sparse);
  def_kernel(m, "adam_sparse", &adam_sparse);
  def_kernel(m, "rmsprop_sparse", &rmsprop_sparse);
  def_kernel(m, "adagrad_sparse", &adagrad_sparse);
  def_kernel(m, "sum_squares", &sum_squares);
}

}  // namespace lamina
