// nn kernels: softmax / log_softmax, softmax cross-entropy (integer or dense labels, on logits or
// probabilities), binary cross-entropy, one_hot, batch and layer normalisation, embedding.
//
// Ops over one axis view their input as (outer, R, inner) and work on outer*inner "lanes" of R
// elements each (stride `inner`). Reductions across lanes (per-channel sums, dgamma) use a fixed
// number of blocks that depends only on the shape, so results do not change with the thread count.
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
#include "simd.h"
#include "vmath.h"

namespace py = pybind11;

namespace lamina {
namespace {

using Unit = std::integral_constant<int64_t, 1>;
constexpr int64_t kMaxBlocks = 64;

void check_labels(const char* op, const char* arg, const Buffer& b, int64_t n) {
  LAMINA_CHECK(b.numel == n, op << ": " << arg << " holds " << b.numel << " elements, expected " << n);
}

void require_int(const char* op, const char* arg, const Buffer& b) {
  if (b.dtype != I32 && b.dtype != I64) {
    Msg os;
    os << op << ": expected " << arg << " of dtype int32 or int64, received " << dtype_name(b.dtype);
    throw TypeError(os.str());
  }
}

// Index of the first value outside [0, hi), or -1.
template <class L>
int64_t first_out_of_range(const L* v, int64_t n, int64_t hi) {
  for (int64_t i = 0; i < n; ++i)
    if (v[i] < 0 || int64_t(v[i]) >= hi) return i;
  return -1;
}

int64_t label_at(const Buffer& b, int64_t i) {
  return b.dtype == I32 ? int64_t(b.data<int32_t>()[i]) : b.data<int64_t>()[i];
}

// Checks integer class ids / row ids lie in [0, hi) before any parallel work starts.
void check_range(const char* op, const char* what, const char* range_name, const Buffer& b, int64_t hi) {
  int64_t bad = b.dtype == I32 ? first_out_of_range(b.data<int32_t>(), b.numel, hi)
                               : first_out_of_range(b.data<int64_t>(), b.numel, hi);
  if (bad >= 0) {
    int64_t v = label_at(b, bad);
    LAMINA_CHECK(false, op << ": " << what << " " << v << " at flat index " << bad << " is out of range for "
                           << hi << " " << range_name << "; " << what << "s must lie in [0, " << hi << ")"
                           << (v < 0 ? " (negative values are not allowed)" : ""));
  }
}

// body(lane, base, stride) for each of the outer*inner lanes of an (outer, R, inner) view; the
// stride is a compile-time 1 when inner == 1 so contiguous rows vectorise.
template <class Body>
void for_each_lane(int64_t outer, int64_t R, int64_t inner, Body body) {
  const int64_t n = outer * inner;
  const bool par = n > 1 && n * std::max<int64_t>(R, 1) > kParallelGrain;
  if (inner == 1) parallel_for(n, par, [&](int64_t l) { body(l, l * R, Unit()); });
  else parallel_for(n, par, [&](int64_t l) { body(l, (l / inner) * R * inner + l % inner, inner); });
}


// Lane primitives, written once for any stride. Contiguous lanes (stride 1, the usual last-axis
// case) go through row_* functions compiled for AVX-512, AVX2 and the baseline and picked at load
// time (target_clones); they are separate functions because OpenMP's outlined loop bodies would
// not inherit a clone's target.
template <class St>
LAMINA_INLINE float max_impl(const float* x, int64_t R, St st) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t r = 0; r < R; ++r) m = std::max(m, x[r * st]);
  return m;
}
// y = exp(x - shift) (y may be null); returns the sum.
template <class St>
LAMINA_INLINE float exp_sum_impl(const float* x, float shift, float* y, int64_t R, St st) {
  float s = 0.f;
  if (y) {
#pragma omp simd reduction(+ : s)
    for (int64_t r = 0; r < R; ++r) {
      const float e = vm::exp(x[r * st] - shift);
      y[r * st] = e;
      s += e;
    }
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t r = 0; r < R; ++r) s += vm::exp(x[r * st] - shift);
  }
  return s;
}
// y = a * (x - c) + b (log_softmax: (x - max) - log(sum), which keeps precision for large x)
template <class St>
LAMINA_INLINE void affine_impl(const float* x, float a, float c, float b, float* y, int64_t R, St st) {
#pragma omp simd
  for (int64_t r = 0; r < R; ++r) y[r * st] = a * (x[r * st] - c) + b;
}
// o = a * exp(x - shift)
template <class St>
LAMINA_INLINE void exp_scaled_impl(const float* x, float shift, float a, float* o, int64_t R, St st) {
#pragma omp simd
  for (int64_t r = 0; r < R; ++r) o[r * st] = a * vm::exp(x[r * st] - shift);
}
// softmax backward from the output y: o = y * (g - sum(g y)), or for log_softmax g - exp(y) sum(g).
template <class St>
LAMINA_INLINE void softmax_grad_impl(const float* y, const float* g, float* o, int64_t R, bool log, St st) {
  float d = 0.f;
  if (log) {
#pragma omp simd reduction(+ : d)
    for (int64_t r = 0; r < R; ++r) d += g[r * st];
#pragma omp simd
    for (int64_t r = 0; r < R; ++r) o[r * st] = g[r * st] - vm::exp(y[r * st]) * d;
  } else {
#pragma omp simd reduction(+ : d)
    for (int64_t r = 0; r < R; ++r) d += g[r * st] * y[r * st];
#pragma omp simd
    for (int64_t r = 0; r < R; ++r) o[r * st] = y[r * st] * (g[r * st] - d);
  }
}

LAMINA_CLONES float row_max(const float* x, int64_t R) { return max_impl(x, R, Unit()); }
LAMINA_CLONES float row_exp_sum(const float* x, float shift, float* y, int64_t R) {
  return exp_sum_impl(x, shift, y, R, Unit());
}
LAMINA_CLONES void row_affine(const float* x, float a, float c, float b, float* y, int64_t R) {
  affine_impl(x, a, c, b, y, R, Unit());
}
LAMINA_CLONES void row_exp_scaled(const float* x, float shift, float a, float* o, int64_t R) {
  exp_scaled_impl(x, shift, a, o, R, Unit());
}
LAMINA_CLONES void row_softmax_grad(const float* y, const float* g, float* o, int64_t R, bool log) {
  softmax_grad_impl(y, g, o, R, log, Unit());
}

template <class St>
constexpr bool kUnit = std::is_same_v<St, Unit>;

template <class St>
inline float lane_max(const float* x, int64_t R, St st) {
  if constexpr (kUnit<St>) return row_max(x, R);
  else return max_impl(x, R, st);
}
template <class St>
inline float lane_exp_sum(const float* x, float shift, float* y, int64_t R, St st) {
  if constexpr (kUnit<St>) return row_exp_sum(x, shift, y, R);
  else return exp_sum_impl(x, shift, y, R, st);
}
template <class St>
inline void lane_affine(const float* x, float a, float c, float b, float* y, int64_t R, St st) {
  if constexpr (kUnit<St>) row_affine(x, a, c, b, y, R);
  else affine_impl(x, a, c, b, y, R, st);
}
template <class St>
inline void lane_exp_scaled(const float* x, float shift, float a, float* o, int64_t R, St st) {
  if constexpr (kUnit<St>) row_exp_scaled(x, shift, a, o, R);
  else exp_scaled_impl(x, shift, a, o, R, st);
}

// log(sum(exp(x))) computed stably.
template <class St>
inline float lane_lse(const float* x, int64_t R, St st) {
  const float m = lane_max(x, R, st);
  return m + std::log(lane_exp_sum(x, m, nullptr, R, st));
}

inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

// ---- softmax ----------------------------------------------------------------------------------

void softmax(const Buffer& xb, int64_t outer, int64_t R, int64_t inner, bool log, Buffer& yb) {
  const char* op = log ? "log_softmax" : "softmax";
  check_view(op, "x", xb, outer, R, inner, F32);
  check_view(op, "out", yb, outer, R, inner, F32);
  const float* x = xb.data<float>();
  float* y = yb.data<float>();
  for_each_lane(outer, R, inner, [&](int64_t, int64_t base, auto st) {
    const float* xr = x + base;
    float* yr = y + base;
    const float m = lane_max(xr, R, st);
    if (log) {
      const float ls = std::log(lane_exp_sum(xr, m, nullptr, R, st));
      lane_affine(xr, 1.f, m, -ls, yr, R, st);
    } else {
      const float s = lane_exp_sum(xr, m, yr, R, st);
      lane_affine(yr, 1.f / s, 0.f, 0.f, yr, R, st);
    }
  });
}

// softmax: dx = y * (g - sum(g * y)); log_softmax: dx = g - exp(y) * sum(g). `y` is the output.
void softmax_grad(const Buffer& yb, const Buffer& gb, int64_t outer, int64_t R, int64_t inner, bool log, Buffer& ob) {
  const char* op = log ? "log_softmax_grad" : "softmax_grad";
  check_view(op, "y", yb, outer, R, inner, F32);
  check_view(op, "grad", gb, outer, R, inner, F32);
  check_view(op, "out", ob, outer, R, inner, F32);
  const float* y = yb.data<float>();
  const float* g = gb.data<float>();
  float* o = ob.data<float>();
  for_each_lane(outer, R, inner, [&](int64_t, int64_t base, auto st) {
    if constexpr (kUnit<decltype(st)>) row_softmax_grad(y + base, g + base, o + base, R, log);
    else softmax_grad_impl(y + base, g + base, o + base, R, log, st);
  });
}

// ---- categorical cross-entropy ----------------------------------------------------------------
// x: (outer, K, inner) logits or probabilities; loss and aux: one value per lane. aux keeps
// log-sum-exp (logits) or the row sum (probabilities) for the backward pass. Probabilities are
// normalised by their sum and clipped to [eps, 1 - eps] as Keras does.

template <class L>
void xent_sparse_impl(const float* x, const L* lab, int64_t outer, int64_t K, int64_t inner, bool logits,
                      float eps, float* loss, float* aux) {
  for_each_lane(outer, K, inner, [&](int64_t l, int64_t base, auto st) {
    const float* xr = x + base;
    const int64_t y = int64_t(lab[l]);
    if (logits) {
      const float lse = lane_lse(xr, K, st);
      aux[l] = lse;
      loss[l] = lse - xr[y * st];
    } else {
      float s = 0.f;
      for (int64_t k = 0; k < K; ++k) s += xr[k * st];
      aux[l] = s;
      loss[l] = -std::log(clampf(xr[y * st] / s, eps, 1.f - eps));
    }
  });
}

void xent_sparse(const Buffer& xb, const Buffer& lb, int64_t outer, int64_t K, int64_t inner, bool logits,
                 double eps, Buffer& loss, Buffer& aux) {
  const char* op = "sparse_categorical_crossentropy";
  check_view(op, "output", xb, outer, K, inner, F32);
  require_int(op, "target", lb);
  check_labels(op, "target", lb, outer * inner);
  check_count(op, "loss", loss, outer * inner, F32);
  check_count(op, "aux", aux, outer * inner, F32);
  check_range(op, "label", "classes", lb, K);
  if (lb.dtype == I32)
    xent_sparse_impl(xb.data<float>(), lb.data<int32_t>(), outer, K, inner, logits, float(eps), loss.data<float>(), aux.data<float>());
  else
    xent_sparse_impl(xb.data<float>(), lb.data<int64_t>(), outer, K, inner, logits, float(eps), loss.data<float>(), aux.data<float>());
}

// logits: dx = g * (softmax(x) - onehot); probabilities: through the normalisation and the clip.
template <class L>
void xent_sparse_grad_impl(const float* x, const L* lab, const float* aux, const float* g, int64_t outer, int64_t K,
                           int64_t inner, bool logits, float eps, float* dx) {
  for_each_lane(outer, K, inner, [&](int64_t l, int64_t base, auto st) {
    const float* xr = x + base;
    float* dr = dx + base;
    const int64_t y = int64_t(lab[l]);
    const float gl = g[l];
    if (logits) {
      const float lse = aux[l];
      lane_exp_scaled(xr, lse, gl, dr, K, st);
      dr[y * st] -= gl;
    } else {
      const float s = aux[l];
      const float q = xr[y * st] / s;
      const float d = (q >= eps && q <= 1.f - eps) ? -1.f / q : 0.f;  // d loss / d q_y
      const float f = gl * d / s;
      for (int64_t k = 0; k < K; ++k) dr[k * st] = -f * q;
      dr[y * st] += f;
    }
  });
}

void xent_sparse_grad(const Buffer& xb, const Buffer& lb, const Buffer& aux, const Buffer& gb, int64_t outer, int64_t K,
                      int64_t inner, bool logits, double eps, Buffer& dx) {
  const char* op = "sparse_categorical_crossentropy_grad";
  check_view(op, "output", xb, outer, K, inner, F32);
  require_int(op, "target", lb);
  check_labels(op, "target", lb, outer * inner);
  check_count(op, "aux", aux, outer * inner, F32);
  check_count(op, "grad", gb, outer * inner, F32);
  check_view(op, "out", dx, outer, K, inner, F32);
  check_range(op, "label", "classes", lb, K);
  if (lb.dtype == I32)
    xent_sparse_grad_impl(xb.data<float>(), lb.data<int32_t>(), aux.data<float>(), gb.data<float>(), outer, K, inner, logits, float(eps), dx.data<float>());
  else
    xent_sparse_grad_impl(xb.data<float>(), lb.data<int64_t>(), aux.data<float>(), gb.data<float>(), outer, K, inner, logits, float(eps), dx.data<float>());
}

void xent_dense(const Buffer& xb, const Buffer& tb, int64_t outer, int64_t K, int64_t inner, bool logits, double eps_d,
                Buffer& lossb, Buffer& auxb) {
  const char* op = "categorical_crossentropy";
  check_view(op, "output", xb, outer, K, inner, F32);
  check_view(op, "target", tb, outer, K, inner, F32);
  check_count(op, "loss", lossb, outer * inner, F32);
  check_count(op, "aux", auxb, outer * inner, F32);
  const float* x = xb.data<float>();
  const float* t = tb.data<float>();
  float* loss = lossb.data<float>();
  float* aux = auxb.data<float>();
  const float eps = float(eps_d);
  for_each_lane(outer, K, inner, [&](int64_t l, int64_t base, auto st) {
    const float* xr = x + base;
    const float* tr = t + base;
    float acc = 0.f;
    if (logits) {
      const float lse = lane_lse(xr, K, st);
      aux[l] = lse;
#pragma omp simd reduction(+ : acc)
      for (int64_t k = 0; k < K; ++k) acc += tr[k * st] * (lse - xr[k * st]);
    } else {
      float s = 0.f;
      for (int64_t k = 0; k < K; ++k) s += xr[k * st];
      aux[l] = s;
      const float inv = 1.f / s;
      for (int64_t k = 0; k < K; ++k) acc -= tr[k * st] * std::log(clampf(xr[k * st] * inv, eps, 1.f - eps));
    }
    loss[l] = acc;
  });
}

// Gradients with respect to the output (dx) and the target (dt); either may be None.
void xent_dense_grad(const Buffer& xb, const Buffer& tb, const Buffer& auxb, const Buffer& gb, int64_t outer, int64_t K,
                     int64_t inner, bool logits, double eps_d, Buffer* dxb, Buffer* dtb) {
  const char* op = "categorical_crossentropy_grad";
  check_view(op, "output", xb, outer, K, inner, F32);
  check_view(op, "target", tb, outer, K, inner, F32);
  check_count(op, "aux", auxb, outer * inner, F32);
  check_count(op, "grad", gb, outer * inner, F32);
  if (dxb) check_view(op, "dx", *dxb, outer, K, inner, F32);
  if (dtb) check_view(op, "dt", *dtb, outer, K, inner, F32);
  const float* x = xb.data<float>();
  const float* t = tb.data<float>();
  const float* aux = auxb.data<float>();
  const float* g = gb.data<float>();
  float* dx = dxb ? dxb->data<float>() : nullptr;
  float* dt = dtb ? dtb->data<float>() : nullptr;
  const float eps = float(eps_d);
  for_each_lane(outer, K, inner, [&](int64_t l, int64_t base, auto st) {
    const float* xr = x + base;
    const float* tr = t + base;
    const float gl = g[l];
    if (logits) {
      const float lse = aux[l];
      if (dx) {
        float tsum = 0.f;
#pragma omp simd reduction(+ : tsum)
        for (int64_t k = 0; k < K; ++k) tsum += tr[k * st];
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) dx[base + k * st] = gl * (vm::exp(xr[k * st] - lse) * tsum - tr[k * st]);
      }
      if (dt)
        for (int64_t k = 0; k < K; ++k) dt[base + k * st] = gl * (lse - xr[k * st]);
    } else {
      const float inv = 1.f / aux[l];
      if (dx) {
        // loss = -sum t log(clip(q)), q = x / sum(x): d/dq_k = -t_k / q_k inside the clip range.
        float dot = 0.f;
        for (int64_t k = 0; k < K; ++k) {
          const float q = xr[k * st] * inv;
          const float d = (q >= eps && q <= 1.f - eps) ? -tr[k * st] / q : 0.f;
          dx[base + k * st] = d;
          dot += d * q;
        }
        for (int64_t k = 0; k < K; ++k) dx[base + k * st] = gl * inv * (dx[base + k * st] - dot);
      }
      if (dt)
        for (int64_t k = 0; k < K; ++k) dt[base + k * st] = -gl * std::log(clampf(xr[k * st] * inv, eps, 1.f - eps));
    }
  });
}

// ---- binary cross-entropy (elementwise) ------------------------------------------------------

void bce(const Buffer& tb, const Buffer& xb, bool logits, double eps_d, Buffer& ob) {
  const char* op = "binary_crossentropy";
  check_dtype(op, "target", tb, F32);
  check_count(op, "output", xb, tb.numel, F32);
  check_count(op, "loss", ob, tb.numel, F32);
  const float* t = tb.data<float>();
  const float* x = xb.data<float>();
  float* o = ob.data<float>();
  const float eps = float(eps_d);
  const int64_t n = tb.numel;
#pragma omp parallel for if (n > kParallelGrain) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i], tv = t[i];
    if (logits) {
      o[i] = std::max(v, 0.f) - v * tv + std::log1p(std::exp(-std::fabs(v)));
    } else {
      const float c = clampf(v, eps, 1.f - eps);
      o[i] = -(tv * std::log(c) + (1.f - tv) * std::log(1.f - c));
    }
  }
}

void bce_grad(const Buffer& tb, const Buffer& xb, const Buffer& gb, bool logits, double eps_d, Buffer* dxb, Buffer* dtb) {
  const char* op = "binary_crossentropy_grad";
  check_dtype(op, "target", tb, F32);
  const int64_t n = tb.numel;
  check_count(op, "output", xb, n, F32);
  check_count(op, "grad", gb, n, F32);
  if (dxb) check_count(op, "dx", *dxb, n, F32);
  if (dtb) check_count(op, "dt", *dtb, n, F32);
  const float* t = tb.data<float>();
  const float* x = xb.data<float>();
  const float* g = gb.data<float>();
  float* dx = dxb ? dxb->data<float>() : nullptr;
  float* dt = dtb ? dtb->data<float>() : nullptr;
  const float eps = float(eps_d);
#pragma omp parallel for if (n > kParallelGrain) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i], tv = t[i], gv = g[i];
    if (logits) {
      if (dx) dx[i] = gv * (1.f / (1.f + std::exp(-v)) - tv);
      if (dt) dt[i] = -gv * v;
    } else {
      const float c = clampf(v, eps, 1.f - eps);
      if (dx) dx[i] = (v >= eps && v <= 1.f - eps) ? gv * ((1.f - tv) / (1.f - c) - tv / c) : 0.f;
      if (dt) dt[i] = -gv * (std::log(c) - std::log(1.f - c));
    }
  }
}

// ---- one_hot ------------------------------------------------------------------------------------
// out: (outer, K, inner) of any dtype; out[o, ids[o, i], i] = 1. Ids outside [0, K) give a zero row.
template <class T, class L>
void one_hot_impl(const L* ids, int64_t outer, int64_t K, int64_t inner, T* out) {
  const int64_t n = outer * inner;
  for (int64_t l = 0; l < n; ++l) {
    const int64_t v = int64_t(ids[l]);
    if (v >= 0 && v < K) out[((l / inner) * K + v) * inner + l % inner] = T(1);
  }
}

void one_hot(const Buffer& ib, int64_t outer, int64_t K, int64_t inner, Buffer& ob) {
  require_int("one_hot", "x", ib);
  check_labels("one_hot", "x", ib, outer * inner);
  LAMINA_CHECK(K >= 0, "one_hot: num_classes must be >= 0, received " << K);
  LAMINA_CHECK(ob.numel == outer * K * inner, "one_hot: out holds " << ob.numel << " elements, expected "
                                                                     << outer * K * inner);
  if (ob.numel) std::memset(ob.ptr, 0, size_t(ob.numel) * dtype_size(ob.dtype));
  auto run = [&](auto* out) {
    if (ib.dtype == I32) one_hot_impl(ib.data<int32_t>(), outer, K, inner, out);
    else one_hot_impl(ib.data<int64_t>(), outer, K, inner, out);
  };
  switch (ob.dtype) {
    case F32: run(ob.data<float>()); break;
    case I32: run(ob.data<int32_t>()); break;
    case I64: run(ob.data<int64_t>()); break;
    case BOOL: run(ob.data<uint8_t>()); break;
    case I8: case BF16: throw TypeError(std::string("one_hot: expected an output of dtype float32, int32, int64 or bool, received ") + dtype_name(ob.dtype));
  }
}

// ---- per-channel helpers (batch normalisation) ------------------------------------------------
// An (outer, C, inner) view with the channel in the middle: channels-last is inner == 1.

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
      for (int64_t o = o0; o < o1; ++o) {
        const T* ar = a + o * C;
        const T* br = b ? b + o * C : ar;
        for (int64_t c = 0; c < C; ++c) {
          const double v = ld(ar, c);
          q1[c] += v;
          q2[c] += v * ld(br, c);
        }
      }
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
// Saves the lane mean and 1/std for the backward pass.
void layer_norm(const Buffer& xb, const Buffer* gamma, const Buffer* beta, int64_t outer, int64_t R, int64_t inner,
                double eps, Buffer& yb, Buffer& meanb, Buffer& rstdb) {
  const char* op = "layer_norm";
  check_view(op, "x", xb, outer, R, inner, F32);
  check_opt_channel(op, "gamma", gamma, R);
  check_opt_channel(op, "beta", beta, R);
  check_view(op, "y", yb, outer, R, inner, F32);
  check_count(op, "mean", meanb, outer * inner, F32);
  check_count(op, "rstd", rstdb, outer * inner, F32);
  const float* x = xb.data<float>();
  const float* gm = opt_data(gamma);
  const float* bt = opt_data(beta);
  float* y = yb.data<float>();
  float* mean = meanb.data<float>();
  float* rstd = rstdb.data<float>();
  for_each_lane(outer, R, inner, [&](int64_t l, int64_t base, auto st) {
    const float* xr = x + base;
    float* yr = y + base;
    double s = 0.0;
    for (int64_t r = 0; r < R; ++r) s += xr[r * st];
    const float m = R ? float(s / double(R)) : std::numeric_limits<float>::quiet_NaN();
    double ss = 0.0;
    for (int64_t r = 0; r < R; ++r) {
      const double d = double(xr[r * st]) - m;
      ss += d * d;
    }
    const float rs = float(1.0 / std::sqrt((R ? ss / double(R) : 0.0) + eps));
    mean[l] = m;
    rstd[l] = rs;
    for (int64_t r = 0; r < R; ++r) {
      const float xh = (xr[r * st] - m) * rs;
      yr[r * st] = (gm ? xh * gm[r] : xh) + (bt ? bt[r] : 0.f);
    }
  });
}

// dx = rstd * (dyg - mean(dyg) - xhat * mean(dyg * xhat)), dyg = g * gamma;
// dgamma = sum over lanes of g * xhat, dbeta = sum of g (fixed blocks of lanes, then in order).
void layer_norm_grad(const Buffer& xb, const Buffer* gamma, const Buffer& meanb, const Buffer& rstdb, const Buffer& gb,
                     int64_t outer, int64_t R, int64_t inner, Buffer* dxb, Buffer* dgamma, Buffer* dbeta) {
  const char* op = "layer_norm_grad";
  check_view(op, "x", xb, outer, R, inner, F32);
  check_opt_channel(op, "gamma", gamma, R);
  check_count(op, "mean", meanb, outer * inner, F32);
  check_count(op, "rstd", rstdb, outer * inner, F32);
  check_view(op, "grad", gb, outer, R, inner, F32);
  if (dxb) check_view(op, "dx", *dxb, outer, R, inner, F32);
  check_opt_channel(op, "dgamma", dgamma, R);
  check_opt_channel(op, "dbeta", dbeta, R);
  const float* x = xb.data<float>();
  const float* gm = opt_data(gamma);
  const float* mean = meanb.data<float>();
  const float* rstd = rstdb.data<float>();
  const float* g = gb.data<float>();
  float* dx = dxb ? dxb->data<float>() : nullptr;
  const int64_t lanes = outer * inner;
  const bool want_params = dgamma || dbeta;
  int64_t P = std::min(lanes, kMaxBlocks);
  if (want_params) P = std::min(P, std::max<int64_t>(1, (int64_t(1) << 17) / std::max<int64_t>(R, 1)));
  if (dgamma) std::fill(dgamma->data<float>(), dgamma->data<float>() + R, 0.f);
  if (dbeta) std::fill(dbeta->data<float>(), dbeta->data<float>() + R, 0.f);
  if (P == 0 || R == 0) return;
  std::vector<double> pg(want_params ? size_t(P * R) : 0, 0.0), pb(want_params ? size_t(P * R) : 0, 0.0);
  auto lane = [&](int64_t l, int64_t base, auto st, double* qg, double* qb) {
    const float* xr = x + base;
    const float* gr = g + base;
    const float m = mean[l], rs = rstd[l];
    float a = 0.f, b = 0.f;
    for (int64_t r = 0; r < R; ++r) {
      const float xh = (xr[r * st] - m) * rs;
      const float dyg = gm ? gr[r * st] * gm[r] : gr[r * st];
      a += dyg;
      b += dyg * xh;
      if (qg) {
        qg[r] += double(gr[r * st]) * xh;
        qb[r] += gr[r * st];
      }
    }
    if (!dx) return;
    a /= float(R);
    b /= float(R);
    for (int64_t r = 0; r < R; ++r) {
      const float xh = (xr[r * st] - m) * rs;
      const float dyg = gm ? gr[r * st] * gm[r] : gr[r * st];
      dx[base + r * st] = rs * (dyg - a - xh * b);
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
      if (dgamma) dgamma->data<float>()[r] = float(sg);
      if (dbeta) dbeta->data<float>()[r] = float(sb);
    }
  }
}

// ---- embedding ------------------------------------------------------------------------------

// out[n, :] = table[ids[n], :]
void embedding(const Buffer& tb, int64_t V, int64_t D, const Buffer& ib, Buffer& ob) {
  const char* op = "embedding_lookup";
  LAMINA_CHECK(V >= 0 && D >= 0, op << ": invalid table size " << V << " x " << D);
  check_count(op, "table", tb, V * D, F32);
  require_int(op, "ids", ib);
  const int64_t n = ib.numel;
  check_count(op, "out", ob, n * D, F32);
  check_range(op, "id", "rows in the embedding table", ib, V);
  const float* t = tb.data<float>();
  float* o = ob.data<float>();
  auto copy_rows = [&](auto* ids) {
#pragma omp parallel for if (n * D > kParallelGrain && n > 1) schedule(static)
    for (int64_t i = 0; i < n; ++i) std::memcpy(o + i * D, t + int64_t(ids[i]) * D, size_t(D) * sizeof(float));
  };
  if (ib.dtype == I32) copy_rows(ib.data<int32_t>());
  else copy_rows(ib.data<int64_t>());
}

// out[ids[n], :] += g[n, :] for every n (out zeroed first when `zero`). Each thread owns a range of
// table rows and adds its rows in the order of n: no races, and the same sums for any thread count.
template <class I>
void scatter_rows(const I* ids, int64_t n, const float* g, int64_t V, int64_t D, float* o, bool zero) {
  const bool par = (n * D > kParallelGrain || (zero && V * D > kParallelGrain)) && V > 1;
#pragma omp parallel if (par)
  {
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t v0 = V * tid / nt, v1 = V * (tid + 1) / nt;
    if (zero && v1 > v0) std::memset(o + v0 * D, 0, size_t((v1 - v0) * D) * sizeof(float));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = int64_t(ids[i]);
      if (v < v0 || v >= v1) continue;
      float* dst = o + v * D;
      const float* src = g + i * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
    }
  }
}

// The names a caller of checked_scatter_add uses in its errors.
struct ScatterNames {
  const char *op, *shape, *ids, *values, *rows;
};

// out (V, D)[ids[n], :] += values[n, :] (out zeroed first when `zero`), after checking the
// buffers, with the caller's names in the errors.
static void checked_scatter_add(const ScatterNames& nm, Buffer& ob, int64_t V, int64_t D, const Buffer& ib,
                                const Buffer& vb, bool zero) {
  const char* op = nm.op;
  LAMINA_CHECK(V >= 0 && D >= 0, op << ": invalid " << nm.shape << " " << V << " x " << D);
  require_int(op, nm.ids, ib);
  const int64_t n = ib.numel;
  check_count(op, nm.values, vb, n * D, F32);
  check_count(op, "out", ob, V * D, F32);
  check_range(op, "id", nm.rows, ib, V);
  if (ib.dtype == I32) scatter_rows(ib.data<int32_t>(), n, vb.data<float>(), V, D, ob.data<float>(), zero);
  else scatter_rows(ib.data<int64_t>(), n, vb.data<float>(), V, D, ob.data<float>(), zero);
}

// out (V, D) = zeros, then out[ids[n], :] += g[n, :]: the dense gradient of a lookup.
void embedding_grad(const Buffer& gb, const Buffer& ib, int64_t V, int64_t D, Buffer& ob) {
  static const ScatterNames names{"embedding_lookup_grad", "table size", "ids", "grad", "rows in the embedding table"};
  checked_scatter_add(names, ob, V, D, ib, gb, true);
}

// out (V, D)[ids[n], :] += values[n, :] in place (out zeroed first when `zero`): a sparse row
// gradient (IndexedSlices) densified, or added to a dense one.
void embedding_scatter_add(Buffer& ob, int64_t V, int64_t D, const Buffer& ib, const Buffer& vb, bool zero) {
  static const ScatterNames names{"IndexedSlices", "dense shape", "indices", "values", "rows (dense_shape[0])"};
  checked_scatter_add(names, ob, V, D, ib, vb, zero);
}

// Sorts the positions 0..n-1 of `ids` by (id, position) into perm (int64, n) and returns the
// number of distinct ids. Ids are checked against [0, V) first.
template <class I>
int64_t sort_positions(const I* ids, int64_t n, int64_t V, int64_t* perm) {
  if (n < (int64_t(1) << 32) && V < (int64_t(1) << 31)) {
    // one 64-bit key per position: id in the high half, position in the low half
    std::vector<uint64_t> keys(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) keys[size_t(i)] = (uint64_t(ids[i]) << 32) | uint64_t(i);
    std::sort(keys.begin(), keys.end());
    for (int64_t i = 0; i < n; ++i) perm[i] = int64_t(keys[size_t(i)] & 0xffffffffu);
  } else {
    for (int64_t i = 0; i < n; ++i) perm[i] = i;
    std::stable_sort(perm, perm + n, [&](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  }
  int64_t u = 0;
  for (int64_t k = 0; k < n; ++k)
    if (k == 0 || ids[perm[k]] != ids[perm[k - 1]]) ++u;
  return u;
}

int64_t sparse_sort(const Buffer& ib, int64_t V, Buffer& pb) {
  const char* op = "IndexedSlices";
  require_int(op, "indices", ib);
  LAMINA_CHECK(V >= 0, op << ": invalid number of rows " << V);
  check_count(op, "perm", pb, ib.numel, I64);
  check_range(op, "id", "rows (dense_shape[0])", ib, V);
  if (ib.dtype == I32) return sort_positions(ib.data<int32_t>(), ib.numel, V, pb.data<int64_t>());
  return sort_positions(ib.data<int64_t>(), ib.numel, V, pb.data<int64_t>());
}

// out_ids[j] = the j-th distinct id in ascending order; out_vals[j, :] = the sum of the rows of
// values (n, D) with that id, added in position order (the order of the dense scatter-add, so
// the sums are bitwise those of embedding_grad). `perm` comes from sparse_sort and is re-checked.
template <class I>
void segment_sum(const I* ids, int64_t n, const float* vals, int64_t D, const int64_t* perm, int64_t u,
                 int64_t* out_ids, float* out_vals) {
  const char* op = "sparse_deduplicate";
  std::vector<int64_t> starts;
  starts.reserve(size_t(u) + 1);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t p = perm[k];
    LAMINA_CHECK(p >= 0 && p < n, op << ": perm[" << k << "] = " << p << " is not a position in [0, " << n << ")");
    if (k > 0) {
      const int64_t q = perm[k - 1];
      LAMINA_CHECK(ids[q] < ids[p] || (ids[q] == ids[p] && q < p),
                   op << ": perm is not sorted by (id, position) at " << k << "; build it with sparse_sort");
      if (ids[q] == ids[p]) continue;
    }
    LAMINA_CHECK(int64_t(starts.size()) < u, op << ": more than " << u << " distinct ids");
    starts.push_back(k);
  }
  LAMINA_CHECK(int64_t(starts.size()) == u, op << ": " << starts.size() << " distinct ids, outputs sized for " << u);
  starts.push_back(n);
#pragma omp parallel for if (n * D > kParallelGrain && u > 1) schedule(static)
  for (int64_t j = 0; j < u; ++j) {
    out_ids[j] = int64_t(ids[perm[starts[size_t(j)]]]);
    float* dst = out_vals + j * D;
    for (int64_t d = 0; d < D; ++d) dst[d] = 0.f;
    for (int64_t k = starts[size_t(j)]; k < starts[size_t(j) + 1]; ++k) {
      const float* src = vals + perm[k] * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
    }
  }
}

void sparse_segment_sum(const Buffer& ib, const Buffer& vb, int64_t D, const Buffer& pb, Buffer& oib, Buffer& ovb) {
  const char* op = "sparse_deduplicate";
  require_int(op, "indices", ib);
  LAMINA_CHECK(D >= 0, op << ": invalid row size " << D);
  const int64_t n = ib.numel;
  check_count(op, "values", vb, n * D, F32);
  check_count(op, "perm", pb, n, I64);
  check_dtype(op, "out_indices", oib, I64);
  const int64_t u = oib.numel;
  check_count(op, "out_values", ovb, u * D, F32);
  if (ib.dtype == I32)
    segment_sum(ib.data<int32_t>(), n, vb.data<float>(), D, pb.data<int64_t>(), u, oib.data<int64_t>(), ovb.data<float>());
  else
    segment_sum(ib.data<int64_t>(), n, vb.data<float>(), D, pb.data<int64_t>(), u, oib.data<int64_t>(), ovb.data<float>());
}


// ---- bias + relu (Dense and convolution layers with activation='relu') --------------------------
// out[r, c] = relu(x[r, c] + b[c]) over the rows of an (R, C) view, one pass (relu as the unary
// kernel's: NaN passes through, -0 stays). x and out may be the same buffer.

template <class T>
inline void bias_relu_row(const T* xr, const T* b, T* orow, int64_t C) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    const float v = ld(xr, c) + ld(b, c);
    st(orow, c, v < 0.f ? 0.f : v);
  }
}
// y > 0 ? g : 0 into dr (when given) and added to acc (when given): a row of bias_relu_grad.
template <class T>
inline void relu_grad_row(const T* yr, const T* gr, T* dr, float* acc, int64_t C) {
  if (dr && acc) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float gv = ld(gr, c);  // loaded unconditionally: a select, not a branch
      const float v = ld(yr, c) > 0.f ? gv : 0.f;
      st(dr, c, v);
      acc[c] += v;
    }
  } else if (dr) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float gv = ld(gr, c);
      st(dr, c, ld(yr, c) > 0.f ? gv : 0.f);
    }
  } else {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float gv = ld(gr, c);
      acc[c] += ld(yr, c) > 0.f ? gv : 0.f;
    }
  }
}
// The bfloat16 rows compiled for AVX-512 and AVX2 too (the conversions are several instructions).
LAMINA_CLONES void bias_relu_row_bf16(const uint16_t* xr, const uint16_t* b, uint16_t* orow, int64_t C) {
  bias_relu_row(xr, b, orow, C);
}
LAMINA_CLONES void relu_grad_row_bf16(const uint16_t* yr, const uint16_t* gr, uint16_t* dr, float* acc, int64_t C) {
  relu_grad_row(yr, gr, dr, acc, C);
}
inline void bias_relu_row_any(const float* xr, const float* b, float* orow, int64_t C) { bias_relu_row(xr, b, orow, C); }
inline void bias_relu_row_any(const uint16_t* xr, const uint16_t* b, uint16_t* orow, int64_t C) {
  bias_relu_row_bf16(xr, b, orow, C);
}
inline void relu_grad_row_any(const float* yr, const float* gr, float* dr, float* acc, int64_t C) {
  relu_grad_row(yr, gr, dr, acc, C);
}
inline void relu_grad_row_any(const uint16_t* yr, const uint16_t* gr, uint16_t* dr, float* acc, int64_t C) {
  relu_grad_row_bf16(yr, gr, dr, acc, C);
}

template <class T>
static void bias_relu_t(const T* x, const T* b, T* o, int64_t R, int64_t C, bool par) {
  parallel_for(R, par, [&](int64_t r) { bias_relu_row_any(x + r * C, b, o + r * C, C); });
}

void bias_relu(const Buffer& xb, const Buffer& bb, Buffer& ob) {
  const char* op = "bias_relu";
  const DType dt = xb.dtype == BF16 ? BF16 : F32;  // float32, or bfloat16 throughout
  check_dtype(op, "x", xb, dt);
  check_dtype(op, "bias", bb, dt);
  const int64_t C = bb.numel;
  LAMINA_CHECK(C > 0 ? xb.numel % C == 0 : xb.numel == 0,
               op << ": x holds " << xb.numel << " elements, not a whole number of rows of the bias's " << C);
  check_count(op, "out", ob, xb.numel, dt);
  if (xb.numel == 0) return;
  const int64_t R = xb.numel / C;
  const bool par = xb.numel > kParallelGrain;
  if (dt == BF16) bias_relu_t(xb.data<uint16_t>(), bb.data<uint16_t>(), ob.data<uint16_t>(), R, C, par);
  else bias_relu_t(xb.data<float>(), bb.data<float>(), ob.data<float>(), R, C, par);
}

template <class T>
static void bias_relu_grad_t(const T* y, const T* g, T* dx, T* db, int64_t R, int64_t C, int64_t n) {
  if (!db) {
    if (!dx) return;
#pragma omp parallel for if (n > kParallelGrain) schedule(static)
    for (int64_t r = 0; r < R; ++r) relu_grad_row_any(y + r * C, g + r * C, dx + r * C, nullptr, C);
    return;
  }
  if (R == 0) {
    for (int64_t c = 0; c < C; ++c) st(db, c, 0.f);
    return;
  }
  const int64_t P = std::max<int64_t>(1, std::min(R / 64, kMaxBlocks));  // blocks of at least 64 rows
  std::vector<double> part(size_t(P * C), 0.0);
  std::vector<float> rowsum(size_t(P * C));
#pragma omp parallel for if (n > kParallelGrain && P > 1) schedule(static)
  for (int64_t blk = 0; blk < P; ++blk) {
    const int64_t r0 = R * blk / P, r1 = R * (blk + 1) / P;
    double* q = part.data() + blk * C;
    float* acc = rowsum.data() + blk * C;  // float sums of up to 64 rows, then added in double
    for (int64_t r = r0; r < r1; r += 64) {
      std::fill(acc, acc + C, 0.f);
      for (int64_t i = r; i < std::min(r1, r + 64); ++i)
        relu_grad_row_any(y + i * C, g + i * C, dx ? dx + i * C : nullptr, acc, C);
      for (int64_t c = 0; c < C; ++c) q[c] += acc[c];
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    double t = 0.0;
    for (int64_t blk = 0; blk < P; ++blk) t += part[size_t(blk * C + c)];
    st(db, c, float(t));
  }
}

void bias_relu_grad(const Buffer& yb, const Buffer& gb, Buffer* dxb, Buffer* dbb, int64_t C) {
  const char* op = "bias_relu_grad";
  const DType dt = yb.dtype == BF16 ? BF16 : F32;
  check_dtype(op, "y", yb, dt);
  check_count(op, "gradient", gb, yb.numel, dt);
  LAMINA_CHECK(C > 0 ? yb.numel % C == 0 : yb.numel == 0,
               op << ": y holds " << yb.numel << " elements, not a whole number of rows of " << C);
  if (dxb) check_count(op, "dx", *dxb, yb.numel, dt);
  if (dbb) check_count(op, "db", *dbb, C, dt);
  const int64_t R = C > 0 ? yb.numel / C : 0;
  if (dt == BF16)
    bias_relu_grad_t(yb.data<uint16_t>(), gb.data<uint16_t>(), dxb ? dxb->data<uint16_t>() : nullptr,
                     dbb ? dbb->data<uint16_t>() : nullptr, R, C, yb.numel);
  else
    bias_relu_grad_t(yb.data<float>(), gb.data<float>(), dxb ? dxb->data<float>() : nullptr,
                     dbb ? dbb->data<float>() : nullptr, R, C, yb.numel);
}

}  // namespace

void bind_nn(py::module_& m) {
  def_kernel(m, "softmax", &softmax);
  def_kernel(m, "softmax_grad", &softmax_grad);
  def_kernel(m, "xent_sparse", &xent_sparse);
  def_kernel(m, "xent_sparse_grad", &xent_sparse_grad);
  def_kernel(m, "xent_dense", &xent_dense);
  def_kernel(m, "xent_dense_grad", &xent_dense_grad);
  def_kernel(m, "bce", &bce);
  def_kernel(m, "bce_grad", &bce_grad);
  def_kernel(m, "one_hot", &one_hot);
  def_kernel(m, "bias_relu", &bias_relu);
  def_kernel(m, "bias_relu_grad", &bias_relu_grad);
  def_kernel(m, "batch_norm_train", &batch_norm_train);
  def_kernel(m, "batch_norm_train_grad", &batch_norm_train_grad);
  def_kernel(m, "batch_norm_infer", &batch_norm_infer, py::arg("x"), py::arg("mean"), py::arg("variance"),
        py::arg("scale").none(true), py::arg("offset").none(true), py::arg("outer"), py::arg("C"), py::arg("inner"),
        py::arg("eps"), py::arg("out"), py::arg("lo") = -INFINITY, py::arg("hi") = INFINITY);
  def_kernel(m, "batch_norm_infer_grad", &batch_norm_infer_grad);
  def_kernel(m, "layer_norm", &layer_norm);
  def_kernel(m, "layer_norm_grad", &layer_norm_grad);
  def_kernel(m, "embedding", &embedding);
  def_kernel(m, "embedding_grad", &embedding_grad);
  def_kernel(m, "embedding_scatter_add", &embedding_scatter_add);
  def_kernel(m, "sparse_sort", &sparse_sort);
  def_kernel(m, "sparse_segment_sum", &sparse_segment_sum);
}

}  // namespace lamina
