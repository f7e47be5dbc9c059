// Batch normalisation (training: batch statistics; inference: given mean and variance) and layer
// normalisation, forward and backward. An (outer, C, inner) view with the channel in the middle;
// per-channel sums in double over a fixed number of blocks, so results do not depend on the thread
// count. bfloat16 data (training batch norm) is read and written through ld / st, statistics float32.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common.h"
#include "device.h"
#include "nn_common.h"
#include "simd.h"
#include "vmath.h"

namespace py = pybind11;

namespace lamina {
namespace {

using namespace nn_common;

// ---- per-channel helpers (batch normalisation) ------------------------------------------------
// An (outer, C, inner) view with the channel in the middle: channels-last is inner == 1.

// One row of channel_sums' channels-last case: q1[c] += a[c], q2[c] += a[c] * b[c] for c < C, in
// double (compiled for AVX-512, AVX2 and the baseline: the channels are the vector lanes; each
// channel's sum keeps its order).
template <class T>
LAMINA_INLINE void sums_row_t(const T* ar, const T* br, int64_t C, double* q1, double* q2) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    const double v = ld(ar, c);
    q1[c] += v;
    q2[c] += v * ld(br, c);
  }
}
LAMINA_CLONES void sums_row(const float* ar, const float* br, int64_t C, double* q1, double* q2) {
  sums_row_t(ar, br, C, q1, q2);
}
LAMINA_CLONES void sums_row(const uint16_t* ar, const uint16_t* br, int64_t C, double* q1, double* q2) {
  sums_row_t(ar, br, C, q1, q2);
}

// s1[c] = sum(a), s2[c] = sum(a * b) (b == nullptr: sum(a * a)), in double, over fixed blocks of
// `outer` so that the result does not depend on the thread count.
// T: float, or uint16_t for bfloat16 data (read through ld).
template <class T>
void channel_sums(const T* a, const T* b, int64_t outer, int64_t C, int64_t inner, double* s1, double* s2) {
  std::fill(s1, s1 + C, 0.0);
  std::fill(s2, s2 + C, 0.0);
  const int64_t P = std::min(outer, kMaxBlocks);
  if (P == 0 || C == 0 || inner == 0) return;
  std::vector<double> p1(size_t(P * C), 0.0), p2(size_t(P * C), 0.0);
  const bool par = outer * C * inner > kParallelGrain;
  if (inner == 1) {
#pragma omp parallel for if (par && P > 1) schedule(static)
    for (int64_t blk = 0; blk < P; ++blk) {
      const int64_t o0 = outer * blk / P, o1 = outer * (blk + 1) / P;
      double* q1 = p1.data() + blk * C;
      double* q2 = p2.data() + blk * C;
      for (int64_t o = o0; o < o1; ++o) sums_row(a + o * C, b ? b + o * C : a + o * C, C, q1, q2);
    }
  } else {
#pragma omp parallel for if (par) schedule(static)
    for (int64_t task = 0; task < P * C; ++task) {
      const int64_t blk = task / C, c = task % C;
      const int64_t o0 = outer * blk / P, o1 = outer * (blk + 1) / P;
      double u = 0.0, w = 0.0;
      for (int64_t o = o0; o < o1; ++o) {
        const T* ar = a + (o * C + c) * inner;
        const T* br = b ? b + (o * C + c) * inner : ar;
        for (int64_t i = 0; i < inner; ++i) {
          const double v = ld(ar, i);
          u += v;
          w += v * ld(br, i);
        }
      }
      p1[size_t(task)] = u;
      p2[size_t(task)] = w;
    }
  }
  for (int64_t blk = 0; blk < P; ++blk)
    for (int64_t c = 0; c < C; ++c) {
      s1[c] += p1[size_t(blk * C + c)];
      s2[c] += p2[size_t(blk * C + c)];
    }
}

// out[i] = f(i) for i < n, clamped to [lo, hi] when `clamp`, the way relu / relu6 clamp (NaN
// passes through).
template <class F, class T>
LAMINA_INLINE void apply_n(int64_t n, T* out, bool clamp, float lo, float hi, const F& f) {
  if (clamp) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float r = f(i);
      st(out, i, r < lo ? lo : (r > hi ? hi : r));
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) st(out, i, f(i));
  }
}

// The rows of channel_apply, compiled for AVX-512, AVX2 and the baseline and picked at load time
// (target_clones; OpenMP's outlined loop bodies would not inherit a clone's target).
// Channels last (inner == 1): out[c] = A[c] * u[c] + B[c] * v[c] + D[c] for c < C.
template <class T>
LAMINA_INLINE void apply_channels_t(const T* u, const T* v, const float* A, const float* B, const float* D, int64_t C,
                                    T* out, bool clamp, float lo, float hi) {
  if (v) apply_n(C, out, clamp, lo, hi, [&](int64_t c) LAMINA_LAMBDA { return A[c] * ld(u, c) + B[c] * ld(v, c) + D[c]; });
  else apply_n(C, out, clamp, lo, hi, [&](int64_t c) LAMINA_LAMBDA { return A[c] * ld(u, c) + D[c]; });
}
LAMINA_CLONES void apply_channels(const float* u, const float* v, const float* A, const float* B, const float* D,
                                  int64_t C, float* out, bool clamp, float lo, float hi) {
  apply_channels_t(u, v, A, B, D, C, out, clamp, lo, hi);
}
// bfloat16 data (uint16 bits), the coefficients float32, each result rounded once.
LAMINA_CLONES void apply_channels(const uint16_t* u, const uint16_t* v, const float* A, const float* B, const float* D,
                                  int64_t C, uint16_t* out, bool clamp, float lo, float hi) {
  apply_channels_t(u, v, A, B, D, C, out, clamp, lo, hi);
}

// One lane of a channel (inner > 1): out[i] = a * u[i] + b * v[i] + d for i < n.
template <class T>
LAMINA_INLINE void apply_lane_t(const T* u, const T* v, float a, float b, float d, int64_t n, T* out, bool clamp,
                                float lo, float hi) {
  if (v) apply_n(n, out, clamp, lo, hi, [&](int64_t i) LAMINA_LAMBDA { return a * ld(u, i) + b * ld(v, i) + d; });
  else apply_n(n, out, clamp, lo, hi, [&](int64_t i) LAMINA_LAMBDA { return a * ld(u, i) + d; });
}
LAMINA_CLONES void apply_lane(const float* u, const float* v, float a, float b, float d, int64_t n, float* out,
                              bool clamp, float lo, float hi) {
  apply_lane_t(u, v, a, b, d, n, out, clamp, lo, hi);
}
LAMINA_CLONES void apply_lane(const uint16_t* u, const uint16_t* v, float a, float b, float d, int64_t n,
                              uint16_t* out, bool clamp, float lo, float hi) {
  apply_lane_t(u, v, a, b, d, n, out, clamp, lo, hi);
}

// out = A[c] * u + B[c] * v + D[c] (v may be null: no B term), then clamped to [lo, hi] (the
// default infinite bounds clamp nothing).
template <class T>
void channel_apply(const T* u, const T* v, const float* A, const float* B, const float* D, int64_t outer,
                   int64_t C, int64_t inner, T* out, float lo = -INFINITY, float hi = INFINITY) {
  const int64_t total = outer * C * inner;
  const bool par = total > kParallelGrain;
  const bool clamp = lo > -INFINITY || hi < INFINITY;
  if (inner == 1) {
#pragma omp parallel for if (par && outer > 1) schedule(static)
    for (int64_t o = 0; o < outer; ++o)
      apply_channels(u + o * C, v ? v + o * C : nullptr, A, B, D, C, out + o * C, clamp, lo, hi);
  } else {
#pragma omp parallel for if (par && outer * C > 1) schedule(static)
    for (int64_t oc = 0; oc < outer * C; ++oc) {
      const int64_t c = oc % C;
      apply_lane(u + oc * inner, v ? v + oc * inner : nullptr, A[c], B ? B[c] : 0.f, D[c], inner, out + oc * inner,
                 clamp, lo, hi);
    }
  }
}

const float* opt_data(const Buffer* b) { return b ? b->data<float>() : nullptr; }

void check_opt_channel(const char* op, const char* arg, const Buffer* b, int64_t C) {
  if (b) check_count(op, arg, *b, C, F32);
}

// Training-mode batch norm: statistics over every axis but the channel one. Writes y, the batch
// mean and the (biased) batch variance. gamma / beta may be None (scale 1, offset 0).
void batch_norm_train(const Buffer& xb, const Buffer* gamma, const Buffer* beta, int64_t outer, int64_t C, int64_t inner,
                      double eps, Buffer& yb, Buffer& meanb, Buffer& varb) {
  const char* op = "batch_norm_train";
  const DType dt = xb.dtype == BF16 ? BF16 : F32;  // the data: float32, or bfloat16 (statistics float32)
  check_view(op, "x", xb, outer, C, inner, dt);
  check_opt_channel(op, "gamma", gamma, C);
  check_opt_channel(op, "beta", beta, C);
  check_view(op, "y", yb, outer, C, inner, dt);
  check_count(op, "mean", meanb, C, F32);
  check_count(op, "variance", varb, C, F32);
  std::vector<double> s1(static_cast<size_t>(C)), s2(static_cast<size_t>(C));
  if (dt == BF16) channel_sums<uint16_t>(xb.data<uint16_t>(), nullptr, outer, C, inner, s1.data(), s2.data());
  else channel_sums<float>(xb.data<float>(), nullptr, outer, C, inner, s1.data(), s2.data());
  const double N = double(outer * inner);
  const float* gm = opt_data(gamma);
  const float* bt = opt_data(beta);
  std::vector<float> A(static_cast<size_t>(C)), D(static_cast<size_t>(C));
  float* mean = meanb.data<float>();
  float* var = varb.data<float>();
  for (int64_t c = 0; c < C; ++c) {
    const double m = N > 0 ? s1[c] / N : std::numeric_limits<double>::quiet_NaN();
    const double v = N > 0 ? std::max(s2[c] / N - m * m, 0.0) : std::numeric_limits<double>::quiet_NaN();
    mean[c] = float(m);
    var[c] = float(v);
    const double r = 1.0 / std::sqrt(double(var[c]) + eps);
    const double a = (gm ? gm[c] : 1.0) * r;
    A[c] = float(a);
    D[c] = float((bt ? bt[c] : 0.0) - double(mean[c]) * a);
  }
  if (dt == BF16)
    channel_apply<uint16_t>(xb.data<uint16_t>(), nullptr, A.data(), nullptr, D.data(), outer, C, inner, yb.data<uint16_t>());
  else
    channel_apply<float>(xb.data<float>(), nullptr, A.data(), nullptr, D.data(), outer, C, inner, yb.data<float>());
}

// Backward of batch_norm_train's y (including the dependence of the batch statistics on x):
// dx = gamma * r * (g - mean(g) - xhat * mean(g * xhat)), dgamma = sum(g * xhat), dbeta = sum(g).
void batch_norm_train_grad(const Buffer& xb, const Buffer* gamma, const Buffer& meanb, const Buffer& varb, const Buffer& gb,
                           int64_t outer, int64_t C, int64_t inner, double eps, Buffer* dx, Buffer* dgamma, Buffer* dbeta) {
  const char* op = "batch_norm_train_grad";
  const DType dt = xb.dtype == BF16 ? BF16 : F32;
  check_view(op, "x", xb, outer, C, inner, dt);
  check_opt_channel(op, "gamma", gamma, C);
  check_count(op, "mean", meanb, C, F32);
  check_count(op, "variance", varb, C, F32);
  check_view(op, "grad", gb, outer, C, inner, dt);
  if (dx) check_view(op, "dx", *dx, outer, C, inner, dt);
  check_opt_channel(op, "dgamma", dgamma, C);
  check_opt_channel(op, "dbeta", dbeta, C);
  std::vector<double> sg(static_cast<size_t>(C)), sgx(static_cast<size_t>(C));
  if (dt == BF16) channel_sums<uint16_t>(gb.data<uint16_t>(), xb.data<uint16_t>(), outer, C, inner, sg.data(), sgx.data());
  else channel_sums<float>(gb.data<float>(), xb.data<float>(), outer, C, inner, sg.data(), sgx.data());
  const double N = double(outer * inner);
  const float* gm = opt_data(gamma);
  const float* mean = meanb.data<float>();
  const float* var = varb.data<float>();
  std::vector<float> A(static_cast<size_t>(C)), B(static_cast<size_t>(C)), D(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double m = mean[c], r = 1.0 / std::sqrt(double(var[c]) + eps);
    const double sgxhat = (sgx[c] - m * sg[c]) * r;  // sum(g * xhat)
    if (dgamma) dgamma->data<float>()[c] = float(sgxhat);
    if (dbeta) dbeta->data<float>()[c] = float(sg[c]);
    const double gr = (gm ? gm[c] : 1.0) * r;
    const double k = N > 0 ? gr * r * sgxhat / N : 0.0;
    A[c] = float(gr);
    B[c] = float(-k);
    D[c] = float(N > 0 ? -gr * sg[c] / N + k * m : 0.0);
  }
  if (dx && dt == BF16)
    channel_apply<uint16_t>(gb.data<uint16_t>(), xb.data<uint16_t>(), A.data(), B.data(), D.data(), outer, C, inner,
                            dx->data<uint16_t>());
  else if (dx)
    channel_apply<float>(gb.data<float>(), xb.data<float>(), A.data(), B.data(), D.data(), outer, C, inner,
                         dx->data<float>());
}

// Inference batch norm: y = (x - mean) * rsqrt(var + eps) * scale + offset, optionally clamped to
// [lo, hi] in the same pass (the activation that follows: relu is [0, inf), relu6 [0, 6]).
void batch_norm_infer(const Buffer& xb, const Buffer& meanb, const Buffer& varb, const Buffer* scale, const Buffer* offset,
                      int64_t outer, int64_t C, int64_t inner, double eps, Buffer& yb, double lo, double hi) {
  const char* op = "batch_normalization";
  check_view(op, "x", xb, outer, C, inner, F32);
  check_count(op, "mean", meanb, C, F32);
  check_count(op, "variance", varb, C, F32);
  check_opt_channel(op, "scale", scale, C);
  check_opt_channel(op, "offset", offset, C);
  check_view(op, "out", yb, outer, C, inner, F32);
  const float* sc = opt_data(scale);
  const float* of = opt_data(offset);
  const float* mean = meanb.data<float>();
  const float* var = varb.data<float>();
  std::vector<float> A(static_cast<size_t>(C)), D(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double a = (sc ? sc[c] : 1.0) / std::sqrt(double(var[c]) + eps);
    A[c] = float(a);
    D[c] = float((of ? of[c] : 0.0) - double(mean[c]) * a);
  }
  channel_apply<float>(xb.data<float>(), nullptr, A.data(), nullptr, D.data(), outer, C, inner, yb.data<float>(),
                       float(lo), float(hi));
}

void batch_norm_infer_grad(const Buffer& xb, const Buffer& meanb, const Buffer& varb, const Buffer* scale, const Buffer& gb,
                           int64_t outer, int64_t C, int64_t inner, double eps, Buffer* dx, Buffer* dmean, Buffer* dvar,
                           Buffer* dscale, Buffer* doffset) {
  const char* op = "batch_normalization_grad";
  check_view(op, "x", xb, outer, C, inner, F32);
  check_count(op, "mean", meanb, C, F32);
  check_count(op, "variance", varb, C, F32);
  check_opt_channel(op, "scale", scale, C);
  check_view(op, "grad", gb, outer, C, inner, F32);
  if (dx) check_view(op, "dx", *dx, outer, C, inner, F32);
  check_opt_channel(op, "dmean", dmean, C);
  check_opt_channel(op, "dvariance", dvar, C);
  check_opt_channel(op, "dscale", dscale, C);
  check_opt_channel(op, "doffset", doffset, C);
  const float* sc = opt_data(scale);
  const float* mean = meanb.data<float>();
  const float* var = varb.data<float>();
  if (dmean || dvar || dscale || doffset) {
    std::vector<double> sg(static_cast<size_t>(C)), sgx(static_cast<size_t>(C));
    channel_sums<float>(gb.data<float>(), xb.data<float>(), outer, C, inner, sg.data(), sgx.data());
    for (int64_t c = 0; c < C; ++c) {
      const double m = mean[c], s = sc ? sc[c] : 1.0, r = 1.0 / std::sqrt(double(var[c]) + eps);
      const double sgxm = sgx[c] - m * sg[c];  // sum(g * (x - mean))
      if (dmean) dmean->data<float>()[c] = float(-r * s * sg[c]);
      if (dvar) dvar->data<float>()[c] = float(-0.5 * s * sgxm * r * r * r);
      if (dscale) dscale->data<float>()[c] = float(r * sgxm);
      if (doffset) doffset->data<float>()[c] = float(sg[c]);
    }
  }
  if (dx) {
    std::vector<float> A(static_cast<size_t>(C)), D(size_t(C), 0.f);
    for (int64_t c = 0; c < C; ++c) A[c] = float((sc ? sc[c] : 1.0) / std::sqrt(double(var[c]) + eps));
    channel_apply<float>(gb.data<float>(), nullptr, A.data(), nullptr, D.data(), outer, C, inner, dx->data<float>());
  }
}

// ---- layer normalisation ----------------------------------------------------------------------
// Normalises each lane of R elements of an (outer, R, inner) view; gamma / beta (R,) or None.
// Saves the lane mean and 1/std for the backward pass. x, y (and the gradient's grad, dx):
// float32 or bfloat16, each on its own (TX, TY, ...: float or uint16_t, read and written
// through ld / st); the lane code is the same for every type and sums in order, so bfloat16 data
// gives the float32 results on its values, rounded once. gamma, beta, mean, rstd and the
// parameter gradients are float32.
template <class TX, class TY, class St>
LAMINA_INLINE void layer_norm_lane(const TX* xr, const float* gm, const float* bt, int64_t R, double eps, TY* yr,
                                   float& mean, float& rstd, St st) {
  double s = 0.0;
  for (int64_t r = 0; r < R; ++r) s += ld(xr, r * st);
  const float m = R ? float(s / double(R)) : std::numeric_limits<float>::quiet_NaN();
  double ss = 0.0;
  for (int64_t r = 0; r < R; ++r) {
    const double d = double(ld(xr, r * st)) - m;
    ss += d * d;
  }
  const float rs = float(1.0 / std::sqrt((R ? ss / double(R) : 0.0) + eps));
  mean = m;
  rstd = rs;
  for (int64_t r = 0; r < R; ++r) {
    const float xh = (ld(xr, r * st) - m) * rs;
    lamina::st(yr, r * st, (gm ? xh * gm[r] : xh) + (bt ? bt[r] : 0.f));
  }
}

template <class TX, class TY>
void layer_norm_t(const TX* x, const float* gm, const float* bt, int64_t outer, int64_t R, int64_t inner, double eps,
                  TY* y, float* mean, float* rstd) {
  for_each_lane(outer, R, inner, [&](int64_t l, int64_t base, auto st) {
    if constexpr (!std::is_same_v<TX, float> && std::is_same_v<decltype(st), Unit>) {
      // a contiguous bfloat16 lane: its float32 values first (one vectorised pass; the sums
      // below run in order whatever the type, so the results are the same)
      thread_local std::vector<float> wide;
      if (int64_t(wide.size()) < R) wide.resize(size_t(R));
      for (int64_t r = 0; r < R; ++r) wide[size_t(r)] = ld(x + base, r);
      layer_norm_lane(wide.data(), gm, bt, R, eps, y + base, mean[l], rstd[l], st);
    } else {
      layer_norm_lane(x + base, gm, bt, R, eps, y + base, mean[l], rstd[l], st);
    }
  });
}

void layer_norm(const Buffer& xb, const Buffer* gamma, const Buffer* beta, int64_t outer, int64_t R, int64_t inner,
                double eps, Buffer& yb, Buffer& meanb, Buffer& rstdb) {
  const char* op = "layer_norm";
  check_view(op, "x", xb, outer, R, inner, float_dtype(xb));
  check_opt_channel(op, "gamma", gamma, R);
  check_opt_channel(op, "beta", beta, R);
  check_view(op, "y", yb, outer, R, inner, float_dtype(yb));
  check_count(op, "mean", meanb, outer * inner, F32);
  check_count(op, "rstd", rstdb, outer * inner, F32);
  with_float_type(xb.dtype, [&](auto tx) {
    with_float_type(yb.dtype, [&](auto ty) {
      using TX = decltype(tx);
      using TY = decltype(ty);
      layer_norm_t<TX, TY>(xb.data<TX>(), opt_data(gamma), opt_data(beta), outer, R, inner, eps, yb.data<TY>(),
                           meanb.data<float>(), rstdb.data<float>());
    });
  });
}

// dx = rstd * (dyg - mean(dyg) - xhat * mean(dyg * xhat)), dyg = g * gamma;
// dgamma = sum over lanes of g * xhat, dbeta = sum of g (fixed blocks of lanes, then in order).
template <class TX, class TG, class TD>
void layer_norm_grad_t(const TX* x, const float* gm, const float* mean, const float* rstd, const TG* g, int64_t outer,
                       int64_t R, int64_t inner, TD* dx, float* dgamma, float* dbeta) {
  const int64_t lanes = outer * inner;
  const bool want_params = dgamma || dbeta;
  int64_t P = std::min(lanes, kMaxBlocks);
  if (want_params) P = std::min(P, std::max<int64_t>(1, (int64_t(1) << 17) / std::max<int64_t>(R, 1)));
  if (dgamma) std::fill(dgamma, dgamma + R, 0.f);
  if (dbeta) std::fill(dbeta, dbeta + R, 0.f);
  if (P == 0 || R == 0) return;
  std::vector<double> pg(want_params ? size_t(P * R) : 0, 0.0), pb(want_params ? size_t(P * R) : 0, 0.0);
  auto lane = [&](int64_t l, int64_t base, auto st, double* qg, double* qb) {
    const TX* xr = x + base;
    const TG* gr = g + base;
    const float m = mean[l], rs = rstd[l];
    float a = 0.f, b = 0.f;
    for (int64_t r = 0; r < R; ++r) {
      const float xh = (ld(xr, r * st) - m) * rs;
      const float gv = ld(gr, r * st);
      const float dyg = gm ? gv * gm[r] : gv;
      a += dyg;
      b += dyg * xh;
      if (qg) {
        qg[r] += double(gv) * xh;
        qb[r] += gv;
      }
    }
    if (!dx) return;
    a /= float(R);
    b /= float(R);
    for (int64_t r = 0; r < R; ++r) {
      const float xh = (ld(xr, r * st) - m) * rs;
      const float gv = ld(gr, r * st);
      const float dyg = gm ? gv * gm[r] : gv;
      lamina::st(dx, base + r * st, rs * (dyg - a - xh * b));
    }
  };
  const bool par = P > 1 && lanes * R > kParallelGrain;
#pragma omp parallel for if (par) schedule(static)
  for (int64_t blk = 0; blk < P; ++blk) {
    const int64_t l0 = lanes * blk / P, l1 = lanes * (blk + 1) / P;
    double* qg = want_params ? pg.data() + blk * R : nullptr;
    double* qb = want_params ? pb.data() + blk * R : nullptr;
    for (int64_t l = l0; l < l1; ++l) {
      if (inner == 1) lane(l, l * R, Unit(), qg, qb);
      else lane(l, (l / inner) * R * inner + l % inner, inner, qg, qb);
    }
  }
  if (want_params) {
    for (int64_t r = 0; r < R; ++r) {
      double sg = 0.0, sb = 0.0;
      for (int64_t blk = 0; blk < P; ++blk) {
        sg += pg[size_t(blk * R + r)];
        sb += pb[size_t(blk * R + r)];
      }
      if (dgamma) dgamma[r] = float(sg);
      if (dbeta) dbeta[r] = float(sb);
    }
  }
}

void layer_norm_grad(const Buffer& xb, const Buffer* gamma, const Buffer& meanb, const Buffer& rstdb, const Buffer& gb,
                     int64_t outer, int64_t R, int64_t inner, Buffer* dxb, Buffer* dgamma, Buffer* dbeta) {
  const char* op = "layer_norm_grad";
  check_view(op, "x", xb, outer, R, inner, float_dtype(xb));
  check_opt_channel(op, "gamma", gamma, R);
  check_count(op, "mean", meanb, outer * inner, F32);
  check_count(op, "rstd", rstdb, outer * inner, F32);
  check_view(op, "grad", gb, outer, R, inner, float_dtype(gb));
  if (dxb) check_view(op, "dx", *dxb, outer, R, inner, float_dtype(*dxb));
  check_opt_channel(op, "dgamma", dgamma, R);
  check_opt_channel(op, "dbeta", dbeta, R);
  float* dg = dgamma ? dgamma->data<float>() : nullptr;
  float* db = dbeta ? dbeta->data<float>() : nullptr;
  with_float_type(xb.dtype, [&](auto tx) {
    with_float_type(gb.dtype, [&](auto tg) {
      with_float_type(dxb ? dxb->dtype : F32, [&](auto td) {
        using TX = decltype(tx);
        using TG = decltype(tg);
        using TD = decltype(td);
        layer_norm_grad_t<TX, TG, TD>(xb.data<TX>(), opt_data(gamma), meanb.data<float>(), rstdb.data<float>(),
                                      gb.data<TG>(), outer, R, inner, dxb ? dxb->data<TD>() : nullptr, dg, db);
      });
    });
  });
}

}  // namespace

void bind_norm(py::module_& m) {
  def_kernel(m, "batch_norm_train", &batch_norm_train);
  def_kernel(m, "batch_norm_train_grad", &batch_norm_train_grad);
  def_kernel(m, "batch_norm_infer", &batch_norm_infer, py::arg("x"), py::arg("mean"), py::arg("variance"),
        py::arg("scale").none(true), py::arg("offset").none(true), py::arg("outer"), py::arg("C"), py::arg("inner"),
        py::arg("eps"), py::arg("out"), py::arg("lo") = -INFINITY, py::arg("hi") = INFINITY);
  def_kernel(m, "batch_norm_infer_grad", &batch_norm_infer_grad);
  def_kernel(m, "layer_norm", &layer_norm);
  def_kernel(m, "layer_norm_grad", &layer_norm_grad);
}

}  // namespace lamina
