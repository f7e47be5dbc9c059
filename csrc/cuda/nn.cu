// Softmax, sparse categorical cross-entropy (fused with its softmax) and bias + relu. A lane is
// one (outer, inner) position of an (outer, R, inner) view; one warp works on each lane.
// softmax, softmax_grad and bias + relu take bfloat16 buffers too (as the CPU's: softmax's each on
// its own, bias_relu's all or none): float32 maths on the widened values, rounded once (bf16.cuh).
#include "bf16.cuh"
#include "gpu.h"
#include "warp.cuh"

namespace lamina {
namespace gpu {

// X, Y (and G, O): each buffer's storage, float or uint16_t (bfloat16, widened as read, rounded once
// as written).
template <class X, class Y>
__global__ void softmax_kernel(const X* x, Y* y, int64_t outer, int64_t R, int64_t inner, bool log) {
  WARP_LANES(lane, outer * inner) {
    const int64_t base = (lane / inner) * R * inner + lane % inner;
    const X* xr = x + base;
    Y* yr = y + base;
    float m = -INFINITY;
    for (int64_t r = _l; r < R; r += 32) { float v = wide(xr[r * inner]); m = (v > m || v != v) ? v : m; }
    m = warp_max(m);
    float s = 0.f;
    for (int64_t r = _l; r < R; r += 32) s += expf(wide(xr[r * inner]) - m);
    s = warp_sum(s);
    if (log) {
      const float ls = logf(s);
      for (int64_t r = _l; r < R; r += 32) yr[r * inner] = narrow<Y>(wide(xr[r * inner]) - m - ls);
    } else {
      const float inv = 1.f / s;
      for (int64_t r = _l; r < R; r += 32) yr[r * inner] = narrow<Y>(expf(wide(xr[r * inner]) - m) * inv);
    }
  }
}

template <class Y, class G, class O>
__global__ void softmax_grad_kernel(const Y* y, const G* g, O* o, int64_t outer, int64_t R, int64_t inner, bool log) {
  WARP_LANES(lane, outer * inner) {
    const int64_t base = (lane / inner) * R * inner + lane % inner;
    float s = 0.f;
    for (int64_t r = _l; r < R; r += 32) {
      const int64_t k = base + r * inner;
      s += log ? wide(g[k]) : wide(g[k]) * wide(y[k]);
    }
    s = warp_sum(s);
    for (int64_t r = _l; r < R; r += 32) {
      const int64_t k = base + r * inner;
      const float yv = wide(y[k]), gv = wide(g[k]);
      o[k] = narrow<O>(log ? gv - expf(yv) * s : yv * (gv - s));
    }
  }
}

// A float32 (outer, R, inner) view (the losses'): the CPU's check (checks.h).
static void check_view(const char* op, const char* arg, const Buffer& b, int64_t outer, int64_t R, int64_t inner) {
  ::lamina::check_view(op, arg, b, outer, R, inner, F32);
}

// x, out: float32 or bfloat16, each on its own (as the CPU's).
void softmax(const Buffer& x, int64_t outer, int64_t R, int64_t inner, bool log, Buffer& y) {
  const char* op = log ? "log_softmax" : "softmax";
  ::lamina::check_view(op, "x", x, outer, R, inner, float_dtype(x));
  ::lamina::check_view(op, "out", y, outer, R, inner, float_dtype(y));
  Context& c = op_device(op, {&x, &y});
  if (outer * inner == 0) return;
  with_float_type(x.dtype, [&](auto tx) {
    with_float_type(y.dtype, [&](auto ty) {
      using X = decltype(tx);
      using Y = decltype(ty);
      softmax_kernel<X, Y><<<warp_grid(outer * inner), 256, 0, c.stream>>>(x.data<X>(), y.data<Y>(), outer, R, inner,
                                                                          log);
    });
  });
  launched(c, op);
}

// y, grad, out: float32 or bfloat16, each on its own (as the CPU's).
void softmax_grad(const Buffer& y, const Buffer& g, int64_t outer, int64_t R, int64_t inner, bool log, Buffer& o) {
  const char* op = log ? "log_softmax_grad" : "softmax_grad";
  ::lamina::check_view(op, "y", y, outer, R, inner, float_dtype(y));
  ::lamina::check_view(op, "grad", g, outer, R, inner, float_dtype(g));
  ::lamina::check_view(op, "out", o, outer, R, inner, float_dtype(o));
  Context& c = op_device(op, {&y, &g, &o});
  if (outer * inner == 0) return;
  with_float_type(y.dtype, [&](auto ty) {
    with_float_type(g.dtype, [&](auto tg) {
      with_float_type(o.dtype, [&](auto to) {
        using Y = decltype(ty);
        using G = decltype(tg);
        using O = decltype(to);
        softmax_grad_kernel<Y, G, O><<<warp_grid(outer * inner), 256, 0, c.stream>>>(
            y.data<Y>(), g.data<G>(), o.data<O>(), outer, R, inner, log);
      });
    });
  });
  launched(c, op);
}

// ---- sparse categorical cross-entropy ------------------------------------------------------------
// Labels outside [0, K) are found on the device without a wait (gpu.h's deferred checks): the host's
// next wait raises the CPU's ValueError naming the first such label and its flat index; meanwhile
// the kernels read no logit through it (its loss is NaN, its gradient row plain softmax).
static void check_labels_dtype(const char* op, const Buffer& lb, int64_t n) {
  if (lb.dtype != I32 && lb.dtype != I64) {
    Msg os;
    os << op << ": expected target of dtype int32 or int64, received " << dtype_name(lb.dtype);
    throw TypeError(os.str());
  }
  LAMINA_CHECK(lb.numel == n, op << ": target holds " << lb.numel << " elements, expected " << n);
}

static void check_labels(Context& c, const char* op, const Buffer& lb, int64_t n, int64_t K) {
  check_labels_dtype(op, lb, n);
  defer_range_check(c, lb, 0, K, [op = std::string(op), K](int64_t idx, int64_t v) {
    Msg os;
    os << op << ": label " << v << " at flat index " << idx << " is out of range for " << K
       << " classes; labels must lie in [0, " << K << ")" << (v < 0 ? " (negative values are not allowed)" : "");
    return os.str();
  });
}

template <class L>
__global__ void xent_kernel(const float* x, const L* lab, int64_t outer, int64_t K, int64_t inner, bool logits, float eps,
                            float* loss, float* aux) {
  WARP_LANES(lane, outer * inner) {
    const int64_t base = (lane / inner) * K * inner + lane % inner;
    const float* xr = x + base;
    const int64_t y = int64_t(lab[lane]);
    const bool in_range = y >= 0 && y < K;  // else its deferred check raises: NaN, no read through it
    if (logits) {
      const float lse = lane_lse(xr, K, inner, _l);
      if (_l == 0) { aux[lane] = lse; loss[lane] = in_range ? lse - xr[y * inner] : NAN; }
    } else {
      float s = 0.f;
      for (int64_t k = _l; k < K; k += 32) s += xr[k * inner];
      s = warp_sum(s);
      if (_l == 0) {
        float q = in_range ? xr[y * inner] / s : NAN;
        q = q < eps ? eps : (q > 1.f - eps ? 1.f - eps : q);
        aux[lane] = s;
        loss[lane] = -logf(q);
      }
    }
  }
}

template <class L>
__global__ void xent_grad_kernel(const float* x, const L* lab, const float* aux, const float* g, int64_t outer, int64_t K,
                                 int64_t inner, bool logits, float eps, float* dx) {
  WARP_LANES(lane, outer * inner) {
    const int64_t base = (lane / inner) * K * inner + lane % inner;
    const float* xr = x + base;
    float* dr = dx + base;
    const int64_t y = int64_t(lab[lane]);  // checked by the forward pass; one outside [0, K) reads nothing
    const bool in_range = y >= 0 && y < K;
    const float gl = g[lane];
    if (logits) {
      const float lse = aux[lane];
      for (int64_t k = _l; k < K; k += 32) dr[k * inner] = gl * expf(xr[k * inner] - lse) - (k == y ? gl : 0.f);
    } else {
      const float s = aux[lane];
      const float q = in_range ? xr[y * inner] / s : 0.f;
      const float d = (q >= eps && q <= 1.f - eps) ? -1.f / q : 0.f;
      const float f = gl * d / s;
      for (int64_t k = _l; k < K; k += 32) dr[k * inner] = -f * q + (k == y ? f : 0.f);
    }
  }
}

void xent_sparse(const Buffer& x, const Buffer& labels, int64_t outer, int64_t K, int64_t inner, bool logits,
                 double eps, Buffer& loss, Buffer& aux) {
  const char* op = "sparse_categorical_crossentropy";
  check_view(op, "output", x, outer, K, inner);
  check_count(op, "loss", loss, outer * inner, F32);
  check_count(op, "aux", aux, outer * inner, F32);
  Context& c = op_device(op, {&x, &labels, &loss, &aux});
  check_labels(c, op, labels, outer * inner, K);
  if (outer * inner == 0) return;
  const unsigned g = warp_grid(outer * inner);
  if (labels.dtype == I32)
    xent_kernel<<<g, 256, 0, c.stream>>>(x.data<float>(), labels.data<int32_t>(), outer, K, inner, logits, float(eps),
                                         loss.data<float>(), aux.data<float>());
  else
    xent_kernel<<<g, 256, 0, c.stream>>>(x.data<float>(), labels.data<int64_t>(), outer, K, inner, logits, float(eps),
                                         loss.data<float>(), aux.data<float>());
  launched(c, op);
}

void xent_sparse_grad(const Buffer& x, const Buffer& labels, const Buffer& aux, const Buffer& g, int64_t outer,
                      int64_t K, int64_t inner, bool logits, double eps, Buffer& dx) {
  const char* op = "sparse_categorical_crossentropy_grad";
  check_view(op, "output", x, outer, K, inner);
  check_count(op, "aux", aux, outer * inner, F32);
  check_count(op, "grad", g, outer * inner, F32);
  check_view(op, "out", dx, outer, K, inner);
  Context& c = op_device(op, {&x, &labels, &aux, &g, &dx});
  // The labels' range was checked by xent_sparse (deferred), which made aux; the kernel reads no
  // logit through a label outside [0, K).
  check_labels_dtype(op, labels, outer * inner);
  if (outer * inner == 0) return;
  const unsigned gr = warp_grid(outer * inner);
  if (labels.dtype == I32)
    xent_grad_kernel<<<gr, 256, 0, c.stream>>>(x.data<float>(), labels.data<int32_t>(), aux.data<float>(), g.data<float>(),
                                               outer, K, inner, logits, float(eps), dx.data<float>());
  else
    xent_grad_kernel<<<gr, 256, 0, c.stream>>>(x.data<float>(), labels.data<int64_t>(), aux.data<float>(), g.data<float>(),
                                               outer, K, inner, logits, float(eps), dx.data<float>());
  launched(c, op);
}

// ---- bias + relu ----------------------------------------------------------------------------------
// S: float, or uint16_t (bfloat16 throughout)
template <class S>
__global__ void bias_relu_kernel(const S* x, const S* b, S* o, int64_t n, int64_t C) {
  GRID_STRIDE(i, n) {
    const float v = wide(x[i]) + wide(b[i % C]);
    o[i] = narrow<S>(v < 0.f ? 0.f : v);
  }
}

template <class S>
__global__ void relu_mask_kernel(const S* y, const S* g, S* dx, int64_t n) {
  GRID_STRIDE(i, n)
    dx[i] = narrow<S>(wide(y[i]) > 0.f ? wide(g[i]) : 0.f);
}

// db[c] = sum over rows of (y > 0 ? g : 0), in double. The rows are cut into P parts, one thread
// per (part, column), coalesced over columns; then the parts are added in order (deterministic).
// (One thread per column walking every row left a convnet's first bias gradient -- 32 columns,
// 100k rows -- to 32 threads.)
template <class S>
__global__ void relu_colsum_parts(const S* y, const S* g, double* part, int64_t R, int64_t C, int64_t P, int64_t per) {
  GRID_STRIDE(t, C * P) {
    const int64_t p = t / C, c = t % C;
    const int64_t r1 = (p + 1) * per < R ? (p + 1) * per : R;
    double s = 0.0;
    for (int64_t r = p * per; r < r1; ++r) s += wide(y[r * C + c]) > 0.f ? wide(g[r * C + c]) : 0.f;
    part[t] = s;
  }
}
template <class S>
__global__ void relu_colsum_finish(const double* part, S* db, int64_t C, int64_t P) {
  GRID_STRIDE(c, C) {
    double s = 0.0;
    for (int64_t p = 0; p < P; ++p) s += part[p * C + c];
    db[c] = narrow<S>(float(s));
  }
}

// x, bias, out: float32, or bfloat16 throughout (as the CPU's).
void bias_relu(const Buffer& x, const Buffer& b, Buffer& o) {
  const char* op = "bias_relu";
  const DType dt = float_dtype(x);
  check_dtype(op, "x", x, dt);
  check_dtype(op, "bias", b, dt);
  const int64_t C = b.numel;
  LAMINA_CHECK(C > 0 ? x.numel % C == 0 : x.numel == 0,
               op << ": x holds " << x.numel << " elements, not a whole number of rows of the bias's " << C);
  check_count(op, "out", o, x.numel, dt);
  Context& c = op_device(op, {&x, &b, &o});
  if (x.numel == 0) return;
  with_float_type(dt, [&](auto ts) {
    using S = decltype(ts);
    bias_relu_kernel<S><<<grid_for(x.numel), 256, 0, c.stream>>>(x.data<S>(), b.data<S>(), o.data<S>(), x.numel, C);
  });
  launched(c, op);
}

// y, gradient, dx, db: float32, or bfloat16 throughout (db summed in double, rounded once).
void bias_relu_grad(const Buffer& y, const Buffer& g, Buffer* dx, Buffer* db, int64_t C) {
  const char* op = "bias_relu_grad";
  const DType dt = float_dtype(y);
  check_dtype(op, "y", y, dt);
  check_count(op, "gradient", g, y.numel, dt);
  LAMINA_CHECK(C > 0 ? y.numel % C == 0 : y.numel == 0,
               op << ": y holds " << y.numel << " elements, not a whole number of rows of " << C);
  if (dx) check_count(op, "dx", *dx, y.numel, dt);
  if (db) check_count(op, "db", *db, C, dt);
  Context& c = op_device(op, {&y, &g, dx, db});
  const int64_t R = C > 0 ? y.numel / C : 0;
  with_float_type(dt, [&](auto ts) {
    using S = decltype(ts);
    if (dx && y.numel)
      relu_mask_kernel<S><<<grid_for(y.numel), 256, 0, c.stream>>>(y.data<S>(), g.data<S>(), dx->data<S>(), y.numel);
    if (db && C) {
      // parts of at least 64 rows, at most 1024 parts and 4M partial sums
      int64_t P = R / 64 > 1024 ? 1024 : (R / 64 < 1 ? 1 : R / 64);
      while (P > 1 && C * P > (int64_t(1) << 22)) P /= 2;
      const int64_t per = R > 0 ? (R + P - 1) / P : 1;
      P = R > 0 ? (R + per - 1) / per : 1;
      Buffer part(C * P, I64, c.index);  // 8-byte elements holding doubles
      relu_colsum_parts<S><<<grid_for(C * P), 256, 0, c.stream>>>(y.data<S>(), g.data<S>(), part.data<double>(), R, C,
                                                                 P, per);
      relu_colsum_finish<S><<<grid_for(C), 256, 0, c.stream>>>(part.data<double>(), db->data<S>(), C, P);
    }
  });
  launched(c, op);
}

}  // namespace gpu
}  // namespace lamina
