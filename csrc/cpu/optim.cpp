// Fused optimizer updates, in place, one pass over each variable (Keras 3 update rules).
//
// Each rule is one inline "span" function over n contiguous elements. The dense kernels run it
// over chunks of the flat variable; the sparse kernels (a row gradient: sorted distinct row ids
// and one summed gradient row per id, see backend/sparse.py) run the same function row by row,
// either over the gradient's rows only (SGD without momentum, Adagrad: a zero gradient leaves
// those rows unchanged) or over every row with a zero row standing in for rows without gradient
// (Adam, RMSprop, SGD with momentum: their moments decay everywhere). Same function, same
// float operations: a sparse step equals the dense step with the densified gradient bit for bit.
// Adadelta, Adamax, Nadam, Ftrl, Lion, Lamb and Adafactor (further down) write each rule once,
// as a template over the gradient source, which the dense and the sparse kernel instantiate.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "broadcast_loops.h"
#include "common.h"
#include "simd.h"
#include "device.h"
#include "optim_checks.h"

namespace py = pybind11;

namespace lamina {

using optim_args::check_same;

// ---- the update rules ---------------------------------------------------------------------------
// The dense rules below (SGD, RMSprop, Adagrad, Adam) are compiled for AVX-512 and AVX2 as well as
// the module's baseline ISA (SSE2), without contraction into FMAs, so that every variant -- and a row
// of a sparse update, which runs the same function on D elements -- rounds alike.
#define LAMINA_NO_CONTRACT __attribute__((optimize("fp-contract=off")))

// var -= lr * g
LAMINA_CLONES LAMINA_NO_CONTRACT static void sgd_plain_span(float* w, const float* g, int64_t n, float lr) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) w[i] -= lr * g[i];
}

// v = momentum * v - lr * g;  var += v  (nesterov: var += momentum * v - lr * g)
LAMINA_CLONES LAMINA_NO_CONTRACT static void sgd_momentum_span(float* w, const float* g, float* v, int64_t n, float lr,
                                                               float mom, bool nesterov) {
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
// (At the baseline ISA alone its square roots and divisions made it compute-bound: the MNIST
// convnet's 3.3M parameters took ~3 ms, ~1.5 ms with AVX-512, on Zen 4.)
LAMINA_CLONES LAMINA_NO_CONTRACT static void adam_span(float* w, const float* g, float* m, float* v, float* vh,
                                                       int64_t n, const AdamP& p) {
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
LAMINA_CLONES LAMINA_NO_CONTRACT static void rmsprop_span(float* w, const float* g, float* vel, float* ag, float* mo,
                                                          int64_t n, const RmsP& p) {
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
LAMINA_CLONES LAMINA_NO_CONTRACT static void adagrad_span(float* w, const float* g, float* a, int64_t n, float lr,
                                                          float eps) {
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

using optim_args::check_adam;

static void adam(Buffer& var, const Buffer& grad, Buffer& mb, Buffer& vb, Buffer& vhatb, double lr_t, double b1,
                 double b2, double eps, bool amsgrad, double wd_lr) {
  check_adam("adam", var, mb, vb, vhatb, amsgrad);
  check_same("adam", var, grad, "gradient");
  float* w = var.data<float>(); const float* g = grad.data<float>(); float* m = mb.data<float>();
  float* v = vb.data<float>(); float* vh = vhatb.data<float>();
  const AdamP p = adam_params(lr_t, b1, b2, eps, amsgrad, wd_lr);
  for_each_chunk(var.numel, [&](int64_t s, int64_t n) { adam_span(w + s, g + s, m + s, v + s, vh + s, n, p); });
}

// Adam over several variables in one call: an optimizer's step, one call from Python rather than
// one per variable; each variable updated as adam updates it.
static void adam_multi(const std::vector<BufferPtr>& vars, const std::vector<BufferPtr>& grads,
                       const std::vector<BufferPtr>& ms, const std::vector<BufferPtr>& vs,
                       const std::vector<BufferPtr>& vhats, double lr_t, double b1, double b2, double eps, bool amsgrad,
                       const std::vector<double>& wd_lrs) {
  optim_args::check_adam_multi("adam_multi", vars, grads, ms, vs, vhats, wd_lrs, amsgrad);
  for (size_t i = 0; i < vars.size(); ++i)
    adam(*vars[i], *grads[i], *ms[i], *vs[i], *vhats[i], lr_t, b1, b2, eps, amsgrad, wd_lrs[i]);
}

// SGD over several variables in one call, each updated as sgd updates it.
static void sgd_multi(const std::vector<BufferPtr>& vars, const std::vector<BufferPtr>& grads,
                      const std::vector<BufferPtr>& vels, double lr, double momentum, bool nesterov) {
  optim_args::check_sgd_multi("sgd_multi", vars, grads, vels, momentum);
  for (size_t i = 0; i < vars.size(); ++i) sgd(*vars[i], *grads[i], *vels[i], lr, momentum, nesterov);
}

using optim_args::check_rmsprop;

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
  const int64_t V = optim_args::check_row_shapes(op, var, D, ib, gb), u = ib.numel;
  const int64_t* idx = ib.data<int64_t>();
  for (int64_t j = 0; j < u; ++j) optim_args::check_row_index(op, j, idx[j], j ? idx[j - 1] : 0, V);
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

// ---- Adadelta, Adamax, Nadam, Ftrl, Lion, Lamb, Adafactor: one body for dense and row gradients --
//
// Each of these kernels is a template over a gradient source: DenseGrad reads g[pos], RowGrad
// reads a row gradient (a zero row where it has none; every one of these rules changes rows
// without gradient too). The body walks the flat variable in pieces that never cross a row, so
// the dense and the row kernel run the same float operations on every element. Lamb's and
// Adafactor's norms are summed (in double) over fixed blocks of the flat variable and the block
// sums then added in order: the result depends neither on the thread count nor on the gradient's
// kind, and a row step equals the dense step with the densified gradient bit for bit.
// (Each squared term is rounded to float before it is summed in double: Keras sums in float32.)

struct DenseGrad {
  const float* g;
  const float* at(int64_t pos) const { return g + pos; }
  // span(pos, g, n) over [begin, end)
  template <class Span>
  void walk(int64_t begin, int64_t end, Span span) const { if (end > begin) span(begin, g + begin, end - begin); }
};

struct RowGrad {
  Rows r;
  const float* zeros;  // r.D zeros
  // the gradient at flat position pos, valid to the end of its row
  const float* at(int64_t pos) const {
    const int64_t row = pos / r.D, j = std::lower_bound(r.idx, r.idx + r.u, row) - r.idx;
    return (j < r.u && r.idx[j] == row ? r.gv + j * r.D : zeros) + (pos - row * r.D);
  }
  // span(pos, g, n) over [begin, end) in pieces within one row, a cursor following the sorted rows
  template <class Span>
  void walk(int64_t begin, int64_t end, Span span) const {
    if (end <= begin) return;
    int64_t j = std::lower_bound(r.idx, r.idx + r.u, begin / r.D) - r.idx;
    for (int64_t pos = begin; pos < end;) {
      const int64_t row = pos / r.D, e = std::min(end, (row + 1) * r.D);
      while (j < r.u && r.idx[j] < row) ++j;
      const float* g = j < r.u && r.idx[j] == row ? r.gv + j * r.D : zeros;
      span(pos, g + (pos - row * r.D), e - pos);
      pos = e;
    }
  }
};

// span over the whole variable, threads splitting it.
template <class G, class Span>
static void for_each_piece(int64_t numel, const G& src, Span span) {
  for_each_chunk(numel, [&](int64_t s, int64_t n) { src.walk(s, s + n, span); });
}

constexpr int64_t kSumBlock = 4096;

// K sums over the variable. span(pos, g, n, terms) runs the update on its piece and writes each
// element's K terms to terms[k][0..n); the terms of a block of kSumBlock positions are then added
// (in double, 8 lanes by position), and the blocks' sums in block order: the same bits whatever
// the pieces (dense or row gradient) and the thread count.
template <int K, class G, class Span>
static std::array<double, K> block_sums(int64_t numel, const G& src, Span span) {
  const int64_t nb = (numel + kSumBlock - 1) / kSumBlock;
  std::vector<std::array<double, K>> part(size_t(std::max<int64_t>(nb, 1)));
#pragma omp parallel for if (numel > kParallelGrain && nb > 1) schedule(static)
  for (int64_t b = 0; b < nb; ++b) {
    alignas(64) float buf[K][kSumBlock];
    const int64_t b0 = b * kSumBlock, n = std::min(numel, b0 + kSumBlock) - b0;
    src.walk(b0, b0 + n, [&](int64_t pos, const float* g, int64_t len) {
      float* terms[K];
      for (int k = 0; k < K; ++k) terms[k] = buf[k] + (pos - b0);
      span(pos, g, len, terms);
    });
    for (int k = 0; k < K; ++k) {
      double lane[8] = {};
      int64_t i = 0;
      for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; ++l) lane[l] += double(buf[k][i + l]);
      for (; i < n; ++i) lane[i & 7] += double(buf[k][i]);
      part[size_t(b)][k] = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    }
  }
  std::array<double, K> total{};
  for (int64_t b = 0; b < nb; ++b)
    for (int k = 0; k < K; ++k) total[k] += part[size_t(b)][k];
  return total;
}

// Runs body(src) with the dense gradient or the checked row gradient.
template <class Body>
static void with_dense(const char* op, const Buffer& var, const Buffer& grad, Body body) {
  check_dtype(op, "variable", var, F32);
  check_same(op, var, grad, "gradient");
  body(DenseGrad{grad.data<float>()});
}

template <class Body>
static void with_rows(const char* op, const Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Body body) {
  const Rows r = check_rows(op, var, D, ib, gb);
  const std::vector<float> zeros(size_t(D), 0.f);
  body(RowGrad{r, zeros.data()});
}

// Adadelta. ag = rho ag + (1 - rho) g^2; delta = -sqrt(ad + eps) g / sqrt(ag + eps);
// ad = rho ad + (1 - rho) delta^2; var += lr delta.
struct AdadeltaP { float lr, rho, one_m_rho, eps; };

template <class G>
static void adadelta_impl(const char* op, Buffer& var, const G& src, Buffer& agb, Buffer& adb, const AdadeltaP& p) {
  check_same(op, var, agb, "accumulated_grad");
  check_same(op, var, adb, "accumulated_delta_var");
  float* w = var.data<float>(); float* ag = agb.data<float>(); float* ad = adb.data<float>();
  for_each_piece(var.numel, src, [&](int64_t o, const float* g, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float gi = g[i];
      const float a = p.rho * ag[o + i] + p.one_m_rho * (gi * gi);
      ag[o + i] = a;
      const float delta = -((std::sqrt(ad[o + i] + p.eps) * gi) / std::sqrt(a + p.eps));
      ad[o + i] = p.rho * ad[o + i] + p.one_m_rho * (delta * delta);
      w[o + i] += p.lr * delta;
    }
  });
}

static void adadelta(Buffer& var, const Buffer& grad, Buffer& ag, Buffer& ad, double lr, double rho, double one_m_rho,
                     double eps) {
  const AdadeltaP p{float(lr), float(rho), float(one_m_rho), float(eps)};
  with_dense("adadelta", var, grad, [&](const auto& s) { adadelta_impl("adadelta", var, s, ag, ad, p); });
}

static void adadelta_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& ag, Buffer& ad,
                            double lr, double rho, double one_m_rho, double eps) {
  const AdadeltaP p{float(lr), float(rho), float(one_m_rho), float(eps)};
  with_rows("adadelta_sparse", var, D, ib, gb,
            [&](const auto& s) { adadelta_impl("adadelta_sparse", var, s, ag, ad, p); });
}

// Adamax. m += (g - m)(1 - b1); u = max(b2 u, |g|); var -= lr m / ((1 - b1^t)(u + eps)).
struct AdamaxP { float lr, one_m_b1, b2, eps, one_m_b1p; };

template <class G>
static void adamax_impl(const char* op, Buffer& var, const G& src, Buffer& mb, Buffer& ub, const AdamaxP& p) {
  check_same(op, var, mb, "momentum");
  check_same(op, var, ub, "norm");
  float* w = var.data<float>(); float* m = mb.data<float>(); float* u = ub.data<float>();
  for_each_piece(var.numel, src, [&](int64_t o, const float* g, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float gi = g[i];
      const float mi = m[o + i] + (gi - m[o + i]) * p.one_m_b1;
      const float bu = p.b2 * u[o + i], ag = std::fabs(gi);
      const float ui = bu > ag ? bu : ag;
      m[o + i] = mi; u[o + i] = ui;
      w[o + i] -= (p.lr * mi) / (p.one_m_b1p * (ui + p.eps));
    }
  });
}

static void adamax(Buffer& var, const Buffer& grad, Buffer& m, Buffer& u, double lr, double one_m_b1, double b2,
                   double eps, double one_m_b1p) {
  const AdamaxP p{float(lr), float(one_m_b1), float(b2), float(eps), float(one_m_b1p)};
  with_dense("adamax", var, grad, [&](const auto& s) { adamax_impl("adamax", var, s, m, u, p); });
}

static void adamax_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, Buffer& u, double lr,
                          double one_m_b1, double b2, double eps, double one_m_b1p) {
  const AdamaxP p{float(lr), float(one_m_b1), float(b2), float(eps), float(one_m_b1p)};
  with_rows("adamax_sparse", var, D, ib, gb, [&](const auto& s) { adamax_impl("adamax_sparse", var, s, m, u, p); });
}

// Nadam (Keras's schedule of momentum products, computed per step by the caller).
// m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
// m_hat = u_t1 m / (1 - uprod_t1) + (1 - u_t) g / (1 - uprod_t); v_hat = v / (1 - b2^t);
// var -= m_hat lr / (sqrt(v_hat) + eps).
struct NadamP { float lr, one_m_b1, one_m_b2, eps, u_t1, one_m_uprod_t1, one_m_u_t, one_m_uprod_t, one_m_b2p; };

template <class G>
static void nadam_impl(const char* op, Buffer& var, const G& src, Buffer& mb, Buffer& vb, const NadamP& p) {
  check_same(op, var, mb, "momentum");
  check_same(op, var, vb, "velocity");
  float* w = var.data<float>(); float* m = mb.data<float>(); float* v = vb.data<float>();
  for_each_piece(var.numel, src, [&](int64_t o, const float* g, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float gi = g[i];
      const float mi = m[o + i] + (gi - m[o + i]) * p.one_m_b1;
      const float vi = v[o + i] + (gi * gi - v[o + i]) * p.one_m_b2;
      m[o + i] = mi; v[o + i] = vi;
      const float m_hat = (p.u_t1 * mi) / p.one_m_uprod_t1 + (p.one_m_u_t * gi) / p.one_m_uprod_t;
      const float v_hat = vi / p.one_m_b2p;
      w[o + i] -= (m_hat * p.lr) / (std::sqrt(v_hat) + p.eps);
    }
  });
}

static NadamP nadam_params(double lr, double one_m_b1, double one_m_b2, double eps, double u_t1,
                           double one_m_uprod_t1, double one_m_u_t, double one_m_uprod_t, double one_m_b2p) {
  return NadamP{float(lr), float(one_m_b1), float(one_m_b2), float(eps), float(u_t1), float(one_m_uprod_t1),
                float(one_m_u_t), float(one_m_uprod_t), float(one_m_b2p)};
}

static void nadam(Buffer& var, const Buffer& grad, Buffer& m, Buffer& v, double lr, double one_m_b1, double one_m_b2,
                  double eps, double u_t1, double one_m_uprod_t1, double one_m_u_t, double one_m_uprod_t,
                  double one_m_b2p) {
  const NadamP p = nadam_params(lr, one_m_b1, one_m_b2, eps, u_t1, one_m_uprod_t1, one_m_u_t, one_m_uprod_t, one_m_b2p);
  with_dense("nadam", var, grad, [&](const auto& s) { nadam_impl("nadam", var, s, m, v, p); });
}

static void nadam_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, Buffer& v, double lr,
                         double one_m_b1, double one_m_b2, double eps, double u_t1, double one_m_uprod_t1,
                         double one_m_u_t, double one_m_uprod_t, double one_m_b2p) {
  const NadamP p = nadam_params(lr, one_m_b1, one_m_b2, eps, u_t1, one_m_uprod_t1, one_m_u_t, one_m_uprod_t, one_m_b2p);
  with_rows("nadam_sparse", var, D, ib, gb, [&](const auto& s) { nadam_impl("nadam_sparse", var, s, m, v, p); });
}

// FTRL-proximal. g' = g + 2 shrinkage var; acc' = acc + g^2;
// linear += g' - (acc'^-p - acc^-p) / lr var; quadratic = acc'^-p / lr + 2 l2;
// var = (clip(linear, -l1, l1) - linear) / quadratic; acc = acc'. (p = learning_rate_power; the
// caller folds beta / (2 lr) into l2.)
struct FtrlP { float lr, neg_power, l1, two_l2, two_shrinkage; };

// One element of the rule; Sqrt: learning_rate_power = -0.5 (the default), x^0.5 as sqrt(x).
template <bool Sqrt>
static inline void ftrl_element(float* w, const float g, float* acc, float* lin, const FtrlP& p) {
  const float wi = *w, ai = *acc;
  const float g_use = g + p.two_shrinkage * wi;
  const float na = ai + g * g;
  const float pn = Sqrt ? std::sqrt(na) : std::pow(na, p.neg_power);
  const float po = Sqrt ? std::sqrt(ai) : std::pow(ai, p.neg_power);
  const float li = *lin + (g_use - ((pn - po) / p.lr) * wi);
  const float quadratic = pn / p.lr + p.two_l2;
  const float lc = li < -p.l1 ? -p.l1 : (li > p.l1 ? p.l1 : li);
  *lin = li;
  *w = (lc - li) / quadratic;
  *acc = na;
}

template <class G>
static void ftrl_impl(const char* op, Buffer& var, const G& src, Buffer& accb, Buffer& linb, const FtrlP& p) {
  check_same(op, var, accb, "accumulator");
  check_same(op, var, linb, "linear");
  float* w = var.data<float>(); float* acc = accb.data<float>(); float* lin = linb.data<float>();
  if (p.neg_power == 0.5f) {
    for_each_piece(var.numel, src, [&](int64_t o, const float* g, int64_t n) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) ftrl_element<true>(w + o + i, g[i], acc + o + i, lin + o + i, p);
    });
  } else {
    for_each_piece(var.numel, src, [&](int64_t o, const float* g, int64_t n) {
      for (int64_t i = 0; i < n; ++i) ftrl_element<false>(w + o + i, g[i], acc + o + i, lin + o + i, p);
    });
  }
}

static void ftrl(Buffer& var, const Buffer& grad, Buffer& acc, Buffer& lin, double lr, double neg_power, double l1,
                 double two_l2, double two_shrinkage) {
  const FtrlP p{float(lr), float(neg_power), float(l1), float(two_l2), float(two_shrinkage)};
  with_dense("ftrl", var, grad, [&](const auto& s) { ftrl_impl("ftrl", var, s, acc, lin, p); });
}

static void ftrl_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& acc, Buffer& lin, double lr,
                        double neg_power, double l1, double two_l2, double two_shrinkage) {
  const FtrlP p{float(lr), float(neg_power), float(l1), float(two_l2), float(two_shrinkage)};
  with_rows("ftrl_sparse", var, D, ib, gb, [&](const auto& s) { ftrl_impl("ftrl_sparse", var, s, acc, lin, p); });
}

// Lion. var -= lr sign(b1 m + (1 - b1) g); m = b2 m + (1 - b2) g.
struct LionP { float lr, b1, one_m_b1, b2, one_m_b2; };

template <class G>
static void lion_impl(const char* op, Buffer& var, const G& src, Buffer& mb, const LionP& p) {
  check_same(op, var, mb, "momentum");
  float* w = var.data<float>(); float* m = mb.data<float>();
  for_each_piece(var.numel, src, [&](int64_t o, const float* g, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float gi = g[i], mi = m[o + i];
      const float c = mi * p.b1 + gi * p.one_m_b1;
      const float s = c > 0.f ? 1.f : (c < 0.f ? -1.f : c);   // sign; 0 and NaN pass through
      w[o + i] -= p.lr * s;
      m[o + i] = mi * p.b2 + gi * p.one_m_b2;
    }
  });
}

static void lion(Buffer& var, const Buffer& grad, Buffer& m, double lr, double b1, double one_m_b1, double b2,
                 double one_m_b2) {
  const LionP p{float(lr), float(b1), float(one_m_b1), float(b2), float(one_m_b2)};
  with_dense("lion", var, grad, [&](const auto& s) { lion_impl("lion", var, s, m, p); });
}

static void lion_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, double lr, double b1,
                        double one_m_b1, double b2, double one_m_b2) {
  const LionP p{float(lr), float(b1), float(one_m_b1), float(b2), float(one_m_b2)};
  with_rows("lion_sparse", var, D, ib, gb, [&](const auto& s) { lion_impl("lion_sparse", var, s, m, p); });
}

// Lamb. m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
// update = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps);
// ratio = |var| / |update| (1 when either norm is 0); var -= ratio lr update.
// Two passes: moments and both norms, then the step (update recomputed from the new moments).
struct LambP { float lr, one_m_b1, one_m_b2, eps, one_m_b1p, one_m_b2p; };

static inline float lamb_update(float m, float v, const LambP& p) {
  return (m / p.one_m_b1p) / (std::sqrt(v / p.one_m_b2p) + p.eps);
}

template <class G>
static void lamb_impl(const char* op, Buffer& var, const G& src, Buffer& mb, Buffer& vb, const LambP& p) {
  check_same(op, var, mb, "momentum");
  check_same(op, var, vb, "velocity");
  float* w = var.data<float>(); float* m = mb.data<float>(); float* v = vb.data<float>();
  const auto sums = block_sums<2>(var.numel, src, [&](int64_t o, const float* g, int64_t n, float* const* t) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float gi = g[i];
      const float mi = m[o + i] + (gi - m[o + i]) * p.one_m_b1;
      const float vi = v[o + i] + (gi * gi - v[o + i]) * p.one_m_b2;
      m[o + i] = mi; v[o + i] = vi;
      const float u = lamb_update(mi, vi, p);
      t[0][i] = w[o + i] * w[o + i];
      t[1][i] = u * u;
    }
  });
  const float w_norm = std::sqrt(float(sums[0])), u_norm = std::sqrt(float(sums[1]));
  const float ratio = w_norm > 0.f ? (u_norm > 0.f ? w_norm / u_norm : 1.f) : 1.f;
  const float scale = ratio * p.lr;
  for_each_chunk(var.numel, [&](int64_t s, int64_t n) {
#pragma omp simd
    for (int64_t i = s; i < s + n; ++i) w[i] -= scale * lamb_update(m[i], v[i], p);
  });
}

static void lamb(Buffer& var, const Buffer& grad, Buffer& m, Buffer& v, double lr, double one_m_b1, double one_m_b2,
                 double eps, double one_m_b1p, double one_m_b2p) {
  const LambP p{float(lr), float(one_m_b1), float(one_m_b2), float(eps), float(one_m_b1p), float(one_m_b2p)};
  with_dense("lamb", var, grad, [&](const auto& s) { lamb_impl("lamb", var, s, m, v, p); });
}

static void lamb_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, Buffer& v, double lr,
                        double one_m_b1, double one_m_b2, double eps, double one_m_b1p, double one_m_b2p) {
  const LambP p{float(lr), float(one_m_b1), float(one_m_b2), float(eps), float(one_m_b1p), float(one_m_b2p)};
  with_rows("lamb_sparse", var, D, ib, gb, [&](const auto& s) { lamb_impl("lamb_sparse", var, s, m, v, p); });
}

// Adafactor (Keras 3's rule). The variable is viewed as (B, R, C) (C its last axis, R the one
// before): factored (rank >= 2) keeps r (B, R) and c (B, C), the moving means of g^2 + eps1 over
// the last and the second-last axis, and sets v = r / mean(r) (x) c; unfactored (rank < 2) keeps
// v = beta v + (1 - beta)(g^2 + eps1). Then u = g / sqrt(v) and
// var -= max(eps2, rms(var)) rho_t u / max(1, rms(u) / clip_threshold).
struct AdafactorP { int64_t B, R, C; bool factored; float rho_t, beta, one_m_beta, eps1, eps2, clip; };

template <class G>
static void adafactor_impl(const char* op, Buffer& var, const G& src, Buffer* rb, Buffer* cb, Buffer& vb,
                           const AdafactorP& p) {
  check_same(op, var, vb, "velocity");
  float* w = var.data<float>(); float* v = vb.data<float>();
  const int64_t numel = var.numel;
  // rms(var), before the step
  const float w_rms = std::sqrt(float(block_sums<1>(numel, DenseGrad{w}, [](int64_t, const float* x, int64_t n,
                                                                              float* const* t) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) t[0][i] = x[i] * x[i];
  })[0] / double(numel)));
  const float alpha = (p.eps2 > w_rms ? p.eps2 : w_rms) * p.rho_t;
  if (p.factored) {
    optim_args::check_adafactor_factored(op, numel, rb, cb, p.B, p.R, p.C);
    float* r = rb->data<float>(); float* c = cb->data<float>();
    const int64_t lines = p.B * p.R, C = p.C, R = p.R;
    // r: the mean over each line of C (a line never crosses a gradient row: rows hold whole lines)
#pragma omp parallel for if (numel > kParallelGrain && lines > 1) schedule(static)
    for (int64_t l = 0; l < lines; ++l) {
      const float* g = src.at(l * C);
      double s = 0.0;
      for (int64_t j = 0; j < C; ++j) s += double(g[j] * g[j] + p.eps1);
      r[l] = p.beta * r[l] + p.one_m_beta * float(s / double(C));
    }
    // c: the mean over the R lines of each b, column by column (chunks of columns in parallel)
    constexpr int64_t kCols = 64;
    const int64_t col_chunks = (C + kCols - 1) / kCols;
#pragma omp parallel for if (numel > kParallelGrain && p.B * col_chunks > 1) schedule(static)
    for (int64_t t = 0; t < p.B * col_chunks; ++t) {
      const int64_t b = t / col_chunks, j0 = (t % col_chunks) * kCols, nj = std::min(kCols, C - j0);
      double s[kCols] = {};
      for (int64_t i = 0; i < R; ++i) {
        const float* g = src.at((b * R + i) * C + j0);
        for (int64_t j = 0; j < nj; ++j) s[j] += double(g[j] * g[j] + p.eps1);
      }
      for (int64_t j = 0; j < nj; ++j)
        c[b * C + j0 + j] = p.beta * c[b * C + j0 + j] + p.one_m_beta * float(s[j] / double(R));
    }
    std::vector<float> r_mean(size_t(p.B));
    for (int64_t b = 0; b < p.B; ++b) {
      double s = 0.0;
      for (int64_t i = 0; i < R; ++i) s += double(r[b * R + i]);
      r_mean[size_t(b)] = float(s / double(R));
    }
    // v = (r / mean(r)) c
    for_each_chunk(numel, [&](int64_t s, int64_t n) {
      int64_t l = s / C, j = s - l * C;
      for (int64_t i = s; i < s + n; ++i) {
        v[i] = (r[l] / r_mean[size_t(l / R)]) * c[(l / R) * C + j];
        if (++j == C) { j = 0; ++l; }
      }
    });
  } else {
    for_each_piece(numel, src, [&](int64_t o, const float* g, int64_t n) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) v[o + i] = p.beta * v[o + i] + p.one_m_beta * (g[i] * g[i] + p.eps1);
    });
  }
  // rms(u), u = g / sqrt(v); then the step
  const double u_ss = block_sums<1>(numel, src, [&](int64_t o, const float* g, int64_t n, float* const* t) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float u = g[i] / std::sqrt(v[o + i]);
      t[0][i] = u * u;
    }
  })[0];
  const float u_rms_c = std::sqrt(float(u_ss / double(numel))) / p.clip;
  const float denom = u_rms_c > 1.f ? u_rms_c : 1.f;
  for_each_piece(numel, src, [&](int64_t o, const float* g, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) w[o + i] -= alpha * ((g[i] / std::sqrt(v[o + i])) / denom);
  });
}

static AdafactorP adafactor_params(int64_t B, int64_t R, int64_t C, bool factored, double rho_t, double beta,
                                   double one_m_beta, double eps1, double eps2, double clip) {
  return AdafactorP{B, R, C, factored, float(rho_t), float(beta), float(one_m_beta), float(eps1), float(eps2),
                    float(clip)};
}

static void adafactor(Buffer& var, const Buffer& grad, Buffer* r, Buffer* c, Buffer& v, int64_t B, int64_t R, int64_t C,
                      bool factored, double rho_t, double beta, double one_m_beta, double eps1, double eps2,
                      double clip) {
  const AdafactorP p = adafactor_params(B, R, C, factored, rho_t, beta, one_m_beta, eps1, eps2, clip);
  with_dense("adafactor", var, grad, [&](const auto& s) { adafactor_impl("adafactor", var, s, r, c, v, p); });
}

static void adafactor_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer* r, Buffer* c,
                             Buffer& v, int64_t B, int64_t R, int64_t C, bool factored, double rho_t, double beta,
                             double one_m_beta, double eps1, double eps2, double clip) {
  const AdafactorP p = adafactor_params(B, R, C, factored, rho_t, beta, one_m_beta, eps1, eps2, clip);
  optim_args::check_adafactor_rows(factored, D, C);
  with_rows("adafactor_sparse", var, D, ib, gb,
            [&](const auto& s) { adafactor_impl("adafactor_sparse", var, s, r, c, v, p); });
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
  def_kernel(m, "adam_multi", &adam_multi);
  def_kernel(m, "sgd_multi", &sgd_multi);
  def_kernel(m, "rmsprop", &rmsprop);
  def_kernel(m, "adagrad", &adagrad);
  def_kernel(m, "weight_decay", &weight_decay);
  def_kernel(m, "sgd_sparse", &sgd_sparse);
  def_kernel(m, "adam_sparse", &adam_sparse);
  def_kernel(m, "rmsprop_sparse", &rmsprop_sparse);
  def_kernel(m, "adagrad_sparse", &adagrad_sparse);
  def_kernel(m, "adadelta", &adadelta);
  def_kernel(m, "adadelta_sparse", &adadelta_sparse);
  def_kernel(m, "adamax", &adamax);
  def_kernel(m, "adamax_sparse", &adamax_sparse);
  def_kernel(m, "nadam", &nadam);
  def_kernel(m, "nadam_sparse", &nadam_sparse);
  def_kernel(m, "ftrl", &ftrl);
  def_kernel(m, "ftrl_sparse", &ftrl_sparse);
  def_kernel(m, "lion", &lion);
  def_kernel(m, "lion_sparse", &lion_sparse);
  def_kernel(m, "lamb", &lamb);
  def_kernel(m, "lamb_sparse", &lamb_sparse);
  def_kernel(m, "adafactor", &adafactor);
  def_kernel(m, "adafactor_sparse", &adafactor_sparse);
  def_kernel(m, "sum_squares", &sum_squares);
}

}  // namespace lamina
