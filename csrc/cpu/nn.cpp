// nn kernels: softmax / log_softmax, softmax cross-entropy (integer or dense labels, on logits or
// probabilities), binary cross-entropy, one_hot, bias + ReLU. Batch and layer normalisation are in
// norm.cpp, embedding in embedding.cpp (as csrc/cuda/'s files).
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
#include "misc_checks.h"
#include "nn_common.h"
#include "simd.h"
#include "vmath.h"

namespace py = pybind11;

namespace lamina {
namespace {

using namespace nn_common;

void check_labels(const char* op, const char* arg, const Buffer& b, int64_t n) {
  LAMINA_CHECK(b.numel == n, op << ": " << arg << " holds " << b.numel << " elements, expected " << n);
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

// x, out: float32 or bfloat16 (each on its own; bfloat16 lanes go through float32 scratch,
// for_each_float_lane, so they give the float32 kernel's results on the widened values, rounded once).
void softmax(const Buffer& xb, int64_t outer, int64_t R, int64_t inner, bool log, Buffer& yb) {
  const char* op = log ? "log_softmax" : "softmax";
  check_view(op, "x", xb, outer, R, inner, float_dtype(xb));
  check_view(op, "out", yb, outer, R, inner, float_dtype(yb));
  for_each_float_lane<1, 1>(outer, R, inner, {&xb}, {&yb}, [&](const auto& in, const auto& out, auto st) {
    const float* xr = in[0];
    float* yr = out[0];
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
// y, grad, out: float32 or bfloat16, as softmax's.
void softmax_grad(const Buffer& yb, const Buffer& gb, int64_t outer, int64_t R, int64_t inner, bool log, Buffer& ob) {
  const char* op = log ? "log_softmax_grad" : "softmax_grad";
  check_view(op, "y", yb, outer, R, inner, float_dtype(yb));
  check_view(op, "grad", gb, outer, R, inner, float_dtype(gb));
  check_view(op, "out", ob, outer, R, inner, float_dtype(ob));
  for_each_float_lane<2, 1>(outer, R, inner, {&yb, &gb}, {&ob}, [&](const auto& in, const auto& out, auto st) {
    if constexpr (kUnit<decltype(st)>) row_softmax_grad(in[0], in[1], out[0], R, log);
    else softmax_grad_impl(in[0], in[1], out[0], R, log, st);
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
  misc_checks::check_xent_dense(xb, tb, outer, K, inner, lossb, auxb);
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
  misc_checks::check_xent_dense_grad(xb, tb, auxb, gb, outer, K, inner, dxb, dtb);
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
  misc_checks::check_bce(tb, xb, ob);
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
  misc_checks::check_bce_grad(tb, xb, gb, dxb, dtb);
  const int64_t n = tb.numel;
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
  misc_checks::check_one_hot(ib, outer, K, inner, ob);
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
    case I8: case BF16: misc_checks::one_hot_dtype_error(ob.dtype);
  }
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
// The float32 rows, several rows a call, compiled for AVX-512 and AVX2 as well (out of the clones,
// the module's baseline ISA, SSE2, runs them: the MNIST convnet's bias_relu_grad took ~1.5 ms a
// step on Zen 4).
LAMINA_CLONES void bias_relu_rows_f32(const float* x, const float* b, float* o, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) bias_relu_row(x + r * C, b, o + r * C, C);
}
LAMINA_CLONES void relu_grad_rows_f32(const float* y, const float* g, float* dx, float* acc, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) relu_grad_row(y + r * C, g + r * C, dx ? dx + r * C : nullptr, acc, C);
}
inline void bias_relu_rows_any(const float* x, const float* b, float* o, int64_t rows, int64_t C) {
  bias_relu_rows_f32(x, b, o, rows, C);
}
inline void bias_relu_rows_any(const uint16_t* x, const uint16_t* b, uint16_t* o, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) bias_relu_row_bf16(x + r * C, b, o + r * C, C);
}
inline void relu_grad_rows_any(const float* y, const float* g, float* dx, float* acc, int64_t rows, int64_t C) {
  relu_grad_rows_f32(y, g, dx, acc, rows, C);
}
inline void relu_grad_rows_any(const uint16_t* y, const uint16_t* g, uint16_t* dx, float* acc, int64_t rows,
                               int64_t C) {
  for (int64_t r = 0; r < rows; ++r) relu_grad_row_bf16(y + r * C, g + r * C, dx ? dx + r * C : nullptr, acc, C);
}

// Rows per call of the row kernels above.
constexpr int64_t kRowBlock = 64;

template <class T>
static void bias_relu_t(const T* x, const T* b, T* o, int64_t R, int64_t C, bool par) {
  parallel_for((R + kRowBlock - 1) / kRowBlock, par, [&](int64_t k) {
    const int64_t r0 = k * kRowBlock;
    bias_relu_rows_any(x + r0 * C, b, o + r0 * C, std::min(kRowBlock, R - r0), C);
  });
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
    const int64_t blocks = (R + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for if (n > kParallelGrain) schedule(static)
    for (int64_t k = 0; k < blocks; ++k) {
      const int64_t r0 = k * kRowBlock;
      relu_grad_rows_any(y + r0 * C, g + r0 * C, dx + r0 * C, nullptr, std::min(kRowBlock, R - r0), C);
    }
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
      relu_grad_rows_any(y + r * C, g + r * C, dx ? dx + r * C : nullptr, acc, std::min(r1, r + 64) - r, C);
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
}

}  // namespace lamina
