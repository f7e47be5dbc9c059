// Batch and layer normalisation: the same statistics, formulas and roundings as csrc/cpu/norm.cpp.
//
// Ops over one axis view their input as (outer, C, inner). Per-channel (batch norm) and
// per-position (layer norm's dgamma / dbeta) sums accumulate in double, as the CPU's do: P blocks
// per channel each write a partial pair, and one thread per channel adds its P partials in order,
// so the results do not depend on scheduling (no atomics). The per-channel coefficients are then
// applied in one elementwise pass: out = A[c] * u + B[c] * v + D[c].
// Layer norm lanes: one warp per row (a block of 256 threads per row when R > 1024) where the
// axis is the last (inner == 1), one thread per lane otherwise (coalesced across lanes).
// bfloat16 data (as the CPU's: batch norm's x, y, grad and dx all bfloat16 or all float32; layer
// norm's x, y, grad and dx each on its own; the parameters and statistics float32) is widened as
// read and rounded once as written (bf16.cuh): the float32 kernels' results on the widened values.
#include "bf16.cuh"
#include "gpu.h"
#include "warp.cuh"

namespace lamina {
namespace gpu {
namespace {

constexpr int kParts = 1024;  // most partial sums per channel

__device__ __forceinline__ double nan_d() { return __longlong_as_double(0x7ff8000000000000LL); }


// Blocks of 256 threads for `rows` items, per_block of them to a block (grid-stride beyond the cap).
unsigned row_grid(int64_t rows, int per_block) {
  const int64_t b = (rows + per_block - 1) / per_block;
  return unsigned(b < 1 ? 1 : (b > 65535 * 4 ? 65535 * 4 : b));
}

// ---- per-channel double sums -------------------------------------------------------------------
// A functor adds one element's contributions to (a, b); k is the flat index, lane = o * inner + i.
// S, X, G: a buffer's storage, float or uint16_t (bfloat16).
template <class S>
struct SumsX {  // sum x, sum x * x
  const S* x;
  __device__ void operator()(int64_t k, int64_t, double& a, double& b) const {
    const double v = wide(x[k]);
    a += v;
    b += v * v;
  }
};
template <class S>
struct SumsGX {  // sum g, sum g * x
  const S* g;
  const S* x;
  __device__ void operator()(int64_t k, int64_t, double& a, double& b) const {
    const double v = wide(g[k]);
    a += v;
    b += v * double(wide(x[k]));
  }
};
template <class X, class G>
struct SumsLN {  // layer norm's dgamma = sum g * xhat, dbeta = sum g
  const X* x;
  const G* g;
  const float* mean;
  const float* rstd;
  __device__ void operator()(int64_t k, int64_t lane, double& a, double& b) const {
    const float xh = (wide(x[k]) - mean[lane]) * rstd[lane];
    const float gv = wide(g[k]);
    a += double(gv) * xh;
    b += gv;
  }
};

// inner == 1: rows of C. Block (32, 8): 32 channels, 8 rows at a time; grid (ceil(C / 32), P),
// block y = p covers rows [outer * p / P, outer * (p + 1) / P).
template <class F>
__global__ void sums_rows(F f, int64_t outer, int64_t C, int P, double* p1, double* p2) {
  __shared__ double s1[8][32], s2[8][32];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = int64_t(blockIdx.x) * 32 + tx;
  const int64_t p = blockIdx.y;
  const int64_t o0 = outer * p / P, o1 = outer * (p + 1) / P;
  double a = 0.0, b = 0.0;
  if (c < C)
    for (int64_t o = o0 + ty; o < o1; o += 8) f(o * C + c, o, a, b);
  s1[ty][tx] = a;
  s2[ty][tx] = b;
  __syncthreads();
  if (ty == 0 && c < C) {
    for (int j = 1; j < 8; ++j) {
      a += s1[j][tx];
      b += s2[j][tx];
    }
    p1[p * C + c] = a;
    p2[p * C + c] = b;
  }
}

// inner > 1: grid (C, P), 256 threads; block (c, p) covers the channel's elements t in
// [n * p / P, n * (p + 1) / P) of n = outer * inner, t = o * inner + i.
template <class F>
__global__ void sums_lanes(F f, int64_t outer, int64_t C, int64_t inner, int P, double* p1, double* p2) {
  __shared__ double s1[256], s2[256];
  const int64_t c = blockIdx.x, p = blockIdx.y;
  const int64_t n = outer * inner;
  const int64_t t0 = n * p / P, t1 = n * (p + 1) / P;
  double a = 0.0, b = 0.0;
  int64_t t = t0 + threadIdx.x;
  if (t < t1) {
    int64_t o = t / inner, i = t % inner;
    const int64_t qo = blockDim.x / inner, qi = blockDim.x % inner;  // the step, as (o, i)
    for (; t < t1; t += blockDim.x) {
      f((o * C + c) * inner + i, o * inner + i, a, b);
      o += qo;
      i += qi;
      if (i >= inner) { i -= inner; ++o; }
    }
  }
  s1[threadIdx.x] = a;
  s2[threadIdx.x] = b;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) {
      s1[threadIdx.x] += s1[threadIdx.x + s];
      s2[threadIdx.x] += s2[threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    p1[p * C + c] = s1[0];
    p2[p * C + c] = s2[0];
  }
}

// One warp per channel c (blocks of 256 threads, row_grid(C, 8) of them); _lane: the thread's lane.
#define CHANNEL_WARPS(c, C)                                                                         \
  const int _lane = threadIdx.x % 32;                                                               \
  for (int64_t c = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; c < (C);                  \
       c += int64_t(gridDim.x) * (blockDim.x / 32))

// Channel c's two sums of its P partials, for every lane of the warp: lane j adds p = j, j + 32,
// ... in order, then a fixed tree adds the 32 (the same order on every run).
__device__ __forceinline__ void add_parts(const double* p1, const double* p2, int P, int64_t C, int64_t c, int lane,
                                          double& s1, double& s2) {
  s1 = 0.0;
  s2 = 0.0;
  for (int p = lane; p < P; p += 32) {
    s1 += p1[p * C + c];
    s2 += p2[p * C + c];
  }
  s1 = warp_sum(s1);
  s2 = warp_sum(s2);
}

// Partial sums of f over each channel of an (outer, C, inner) view; returns P, the partials per
// channel in p1 / p2 (P * C doubles each; 0 when there are no elements).
struct Parts {
  int P = 0;
  int64_t C = 0;
  Buffer buf;  // 2 * P * C doubles (8-byte elements)
  Parts(int P_, int64_t C_, int device) : P(P_), C(C_), buf(2 * std::max<int64_t>(int64_t(P_) * C_, 1), I64, device) {}
  double* p1() const { return buf.data<double>(); }
  double* p2() const { return buf.data<double>() + int64_t(P) * C; }
};

int pick_parts(int64_t outer, int64_t C, int64_t inner) {
  const int64_t n = outer * inner;
  if (n == 0 || C == 0) return 0;
  int64_t P;
  if (inner == 1) {
    const int64_t cb = (C + 31) / 32;
    P = std::min<int64_t>((outer + 63) / 64, 2048 / cb);
  } else {
    P = std::min<int64_t>((n + 2047) / 2048, 2048 / C);
  }
  return int(std::max<int64_t>(1, std::min<int64_t>(P, kParts)));
}

template <class F>
void channel_sums(Context& c, const F& f, int64_t outer, int64_t C, int64_t inner, Parts& parts) {
  const int P = parts.P;
  if (P == 0) return;
  if (inner == 1) {
    const dim3 grid{unsigned((C + 31) / 32), unsigned(P)}, block{32, 8};
    sums_rows<F><<<grid, block, 0, c.stream>>>(f, outer, C, P, parts.p1(), parts.p2());
  } else {
    const dim3 grid{unsigned(C), unsigned(P)};
    sums_lanes<F><<<grid, 256, 0, c.stream>>>(f, outer, C, inner, P, parts.p1(), parts.p2());
  }
}

// ---- per-channel coefficients ------------------------------------------------------------------
__global__ void bn_train_coef(const double* p1, const double* p2, int P, int64_t C, double N, const float* gm,
                              const float* bt, double eps, float* mean, float* var, float* A, float* D) {
  CHANNEL_WARPS(c, C) {
    double s1, s2;
    add_parts(p1, p2, P, C, c, _lane, s1, s2);
    if (_lane) continue;
    const double m = N > 0 ? s1 / N : nan_d();
    double v = N > 0 ? s2 / N - m * m : nan_d();
    v = v < 0.0 ? 0.0 : v;
    mean[c] = float(m);
    var[c] = float(v);
    const double r = 1.0 / sqrt(double(var[c]) + eps);
    const double a = (gm ? gm[c] : 1.0) * r;
    A[c] = float(a);
    D[c] = float((bt ? bt[c] : 0.0) - double(mean[c]) * a);
  }
}

__global__ void bn_train_grad_coef(const double* p1, const double* p2, int P, int64_t C, double N, const float* gm,
                                   const float* mean, const float* var, double eps, float* dgamma, float* dbeta,
                                   float* A, float* B, float* D) {
  CHANNEL_WARPS(c, C) {
    double sg, sgx;
    add_parts(p1, p2, P, C, c, _lane, sg, sgx);
    if (_lane) continue;
    const double m = mean[c], r = 1.0 / sqrt(double(var[c]) + eps);
    const double sgxhat = (sgx - m * sg) * r;  // sum(g * xhat)
    if (dgamma) dgamma[c] = float(sgxhat);
    if (dbeta) dbeta[c] = float(sg);
    const double gr = (gm ? gm[c] : 1.0) * r;
    const double k = N > 0 ? gr * r * sgxhat / N : 0.0;
    A[c] = float(gr);
    B[c] = float(-k);
    D[c] = float(N > 0 ? -gr * sg / N + k * m : 0.0);
  }
}

__global__ void bn_infer_coef(const float* mean, const float* var, const float* sc, const float* of, int64_t C,
                              double eps, float* A, float* D) {
  GRID_STRIDE(c, C) {
    const double a = (sc ? sc[c] : 1.0) / sqrt(double(var[c]) + eps);
    A[c] = float(a);
    D[c] = float((of ? of[c] : 0.0) - double(mean[c]) * a);
  }
}

__global__ void bn_infer_grad_coef(const double* p1, const double* p2, int P, int64_t C, const float* mean,
                                   const float* var, const float* sc, double eps, float* dmean, float* dvar,
                                   float* dscale, float* doffset) {
  CHANNEL_WARPS(c, C) {
    double sg, sgx;
    add_parts(p1, p2, P, C, c, _lane, sg, sgx);
    if (_lane) continue;
    const double m = mean[c], s = sc ? sc[c] : 1.0, r = 1.0 / sqrt(double(var[c]) + eps);
    const double sgxm = sgx - m * sg;  // sum(g * (x - mean))
    if (dmean) dmean[c] = float(-r * s * sg);
    if (dvar) dvar[c] = float(-0.5 * s * sgxm * r * r * r);
    if (dscale) dscale[c] = float(r * sgxm);
    if (doffset) doffset[c] = float(sg);
  }
}

__global__ void bn_infer_dx_coef(const float* var, const float* sc, int64_t C, double eps, float* A, float* D) {
  GRID_STRIDE(c, C) {
    A[c] = float((sc ? sc[c] : 1.0) / sqrt(double(var[c]) + eps));
    D[c] = 0.f;
  }
}

__global__ void ln_param_sums(const double* p1, const double* p2, int P, int64_t R, float* dgamma, float* dbeta) {
  CHANNEL_WARPS(r, R) {
    double sg, sb;
    add_parts(p1, p2, P, R, r, _lane, sg, sb);
    if (_lane) continue;
    if (dgamma) dgamma[r] = float(sg);
    if (dbeta) dbeta[r] = float(sb);
  }
}

// ---- out = A[c] * u + B[c] * v + D[c] (v may be null), clamped to [lo, hi] when `clamp` ---------
// I: uint32_t where n < 2^31 (cheaper divisions), else int64_t. S: the data's storage (u, v, out).
template <class I, class S>
__global__ void channel_apply(const S* u, const S* v, const float* A, const float* B, const float* D, I n, I C, I inner,
                              S* out, bool clamp, float lo, float hi) {
  for (I k = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); k < n; k += I(gridDim.x) * I(blockDim.x)) {
    const I c = inner == 1 ? k % C : (k / inner) % C;
    float r = v ? A[c] * wide(u[k]) + B[c] * wide(v[k]) + D[c] : A[c] * wide(u[k]) + D[c];
    if (clamp) r = r < lo ? lo : (r > hi ? hi : r);
    out[k] = narrow<S>(r);
  }
}

template <class S>
void apply(Context& c, const S* u, const S* v, const float* A, const float* B, const float* D, int64_t outer,
           int64_t C, int64_t inner, S* out, float lo = -INFINITY, float hi = INFINITY) {
  const int64_t n = outer * C * inner;
  if (n == 0) return;
  const bool clamp = lo > -INFINITY || hi < INFINITY;
  if (n < (int64_t(1) << 31))
    channel_apply<uint32_t, S><<<grid_for(n), 256, 0, c.stream>>>(u, v, A, B, D, uint32_t(n), uint32_t(C),
                                                                   uint32_t(inner), out, clamp, lo, hi);
  else
    channel_apply<int64_t, S><<<grid_for(n), 256, 0, c.stream>>>(u, v, A, B, D, n, C, inner, out, clamp, lo, hi);
}

template <class B>
void check_opt(const char* op, const char* arg, const B* b, int64_t C) {
  if (b) check_count(op, arg, *b, C, F32);
}
const float* fptr(const Buffer* b) { return b ? b->data<float>() : nullptr; }
float* fptr(Buffer* b) { return b ? b->data<float>() : nullptr; }

// ---- layer norm lanes --------------------------------------------------------------------------
// The sum over a group of G threads (32: a warp; 256: the block), in the same order for every
// thread, which all get it. Every thread of the group must call it.
template <int G, class T>
__device__ __forceinline__ T group_sum(T v) {
  v = warp_sum(v);
  if (G == 32) return v;
  __shared__ T sh[G / 32];
  __syncthreads();  // the previous call's reads are done
  if (threadIdx.x % 32 == 0) sh[threadIdx.x / 32] = v;
  __syncthreads();
  T t = 0;
  for (int j = 0; j < G / 32; ++j) t += sh[j];
  return t;
}

// One group of G threads per row of R (inner == 1); blocks of 256 threads. X, Y (and TG, D below):
// each buffer's storage, float or uint16_t (bfloat16).
template <int G, class X, class Y>
__global__ void ln_rows(const X* x, const float* gm, const float* bt, int64_t rows, int64_t R, double eps, Y* y,
                        float* mean, float* rstd) {
  const int per = 256 / G, t = threadIdx.x % G;
  for (int64_t row = int64_t(blockIdx.x) * per + threadIdx.x / G; row < rows; row += int64_t(gridDim.x) * per) {
    const X* xr = x + row * R;
    Y* yr = y + row * R;
    double s = 0.0;
    for (int64_t r = t; r < R; r += G) s += wide(xr[r]);
    s = group_sum<G>(s);
    const float m = R ? float(s / double(R)) : float(nan_d());
    double ss = 0.0;
    for (int64_t r = t; r < R; r += G) {
      const double d = double(wide(xr[r])) - m;
      ss += d * d;
    }
    ss = group_sum<G>(ss);
    const float rs = float(1.0 / sqrt((R ? ss / double(R) : 0.0) + eps));
    if (t == 0) {
      mean[row] = m;
      rstd[row] = rs;
    }
    for (int64_t r = t; r < R; r += G) {
      const float xh = (wide(xr[r]) - m) * rs;
      yr[r] = narrow<Y>((gm ? xh * gm[r] : xh) + (bt ? bt[r] : 0.f));
    }
  }
}

// One thread per lane of stride inner > 1.
template <class X, class Y>
__global__ void ln_lanes(const X* x, const float* gm, const float* bt, int64_t outer, int64_t R, int64_t inner,
                         double eps, Y* y, float* mean, float* rstd) {
  GRID_STRIDE(l, outer * inner) {
    const int64_t base = (l / inner) * R * inner + l % inner;
    const X* xr = x + base;
    Y* yr = y + base;
    double s = 0.0;
    for (int64_t r = 0; r < R; ++r) s += wide(xr[r * inner]);
    const float m = R ? float(s / double(R)) : float(nan_d());
    double ss = 0.0;
    for (int64_t r = 0; r < R; ++r) {
      const double d = double(wide(xr[r * inner])) - m;
      ss += d * d;
    }
    const float rs = float(1.0 / sqrt((R ? ss / double(R) : 0.0) + eps));
    mean[l] = m;
    rstd[l] = rs;
    for (int64_t r = 0; r < R; ++r) {
      const float xh = (wide(xr[r * inner]) - m) * rs;
      yr[r * inner] = narrow<Y>((gm ? xh * gm[r] : xh) + (bt ? bt[r] : 0.f));
    }
  }
}

// dx = rstd * (dyg - mean(dyg) - xhat * mean(dyg * xhat)), dyg = g * gamma.
template <int G, class X, class TG, class D>
__global__ void ln_grad_rows(const X* x, const float* gm, const float* mean, const float* rstd, const TG* g,
                             int64_t rows, int64_t R, D* dx) {
  const int per = 256 / G, t = threadIdx.x % G;
  for (int64_t row = int64_t(blockIdx.x) * per + threadIdx.x / G; row < rows; row += int64_t(gridDim.x) * per) {
    const X* xr = x + row * R;
    const TG* gr = g + row * R;
    const float m = mean[row], rs = rstd[row];
    float a = 0.f, b = 0.f;
    for (int64_t r = t; r < R; r += G) {
      const float xh = (wide(xr[r]) - m) * rs;
      const float gv = wide(gr[r]);
      const float dyg = gm ? gv * gm[r] : gv;
      a += dyg;
      b += dyg * xh;
    }
    a = group_sum<G>(a) / float(R);
    b = group_sum<G>(b) / float(R);
    for (int64_t r = t; r < R; r += G) {
      const float xh = (wide(xr[r]) - m) * rs;
      const float gv = wide(gr[r]);
      const float dyg = gm ? gv * gm[r] : gv;
      dx[row * R + r] = narrow<D>(rs * (dyg - a - xh * b));
    }
  }
}

template <class X, class TG, class D>
__global__ void ln_grad_lanes(const X* x, const float* gm, const float* mean, const float* rstd, const TG* g,
                              int64_t outer, int64_t R, int64_t inner, D* dx) {
  GRID_STRIDE(l, outer * inner) {
    const int64_t base = (l / inner) * R * inner + l % inner;
    const float m = mean[l], rs = rstd[l];
    float a = 0.f, b = 0.f;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t k = base + r * inner;
      const float xh = (wide(x[k]) - m) * rs;
      const float gv = wide(g[k]);
      const float dyg = gm ? gv * gm[r] : gv;
      a += dyg;
      b += dyg * xh;
    }
    a /= float(R);
    b /= float(R);
    for (int64_t r = 0; r < R; ++r) {
      const int64_t k = base + r * inner;
      const float xh = (wide(x[k]) - m) * rs;
      const float gv = wide(g[k]);
      const float dyg = gm ? gv * gm[r] : gv;
      dx[k] = narrow<D>(rs * (dyg - a - xh * b));
    }
  }
}

}  // namespace

// ---- batch norm ----------------------------------------------------------------------------------
// x and y: float32, or bfloat16 both (statistics and parameters float32), as the CPU's.
void batch_norm_train(const Buffer& x, const Buffer* gamma, const Buffer* beta, int64_t outer, int64_t C, int64_t inner,
                      double eps, Buffer& y, Buffer& mean, Buffer& var) {
  const char* op = "batch_norm_train";
  const DType dt = float_dtype(x);
  check_view(op, "x", x, outer, C, inner, dt);
  check_opt(op, "gamma", gamma, C);
  check_opt(op, "beta", beta, C);
  check_view(op, "y", y, outer, C, inner, dt);
  check_count(op, "mean", mean, C, F32);
  check_count(op, "variance", var, C, F32);
  Context& c = op_device(op, {&x, gamma, beta, &y, &mean, &var});
  if (C == 0) return;
  with_float_type(dt, [&](auto ts) {
    using S = decltype(ts);
    Parts parts(pick_parts(outer, C, inner), C, c.index);
    channel_sums(c, SumsX<S>{x.data<S>()}, outer, C, inner, parts);
    Buffer coef(2 * C, F32, c.index);
    float* A = coef.data<float>();
    float* D = A + C;
    bn_train_coef<<<row_grid(C, 8), 256, 0, c.stream>>>(parts.p1(), parts.p2(), parts.P, C, double(outer * inner),
                                                     fptr(gamma), fptr(beta), eps, mean.data<float>(),
                                                     var.data<float>(), A, D);
    apply<S>(c, x.data<S>(), nullptr, A, nullptr, D, outer, C, inner, y.data<S>());
  });
  launched(c, op);
}

void batch_norm_train_grad(const Buffer& x, const Buffer* gamma, const Buffer& mean, const Buffer& var, const Buffer& g,
                           int64_t outer, int64_t C, int64_t inner, double eps, Buffer* dx, Buffer* dgamma,
                           Buffer* dbeta) {
  const char* op = "batch_norm_train_grad";
  const DType dt = float_dtype(x);  // x, grad, dx: float32, or bfloat16 all three
  check_view(op, "x", x, outer, C, inner, dt);
  check_opt(op, "gamma", gamma, C);
  check_count(op, "mean", mean, C, F32);
  check_count(op, "variance", var, C, F32);
  check_view(op, "grad", g, outer, C, inner, dt);
  if (dx) check_view(op, "dx", *dx, outer, C, inner, dt);
  check_opt(op, "dgamma", dgamma, C);
  check_opt(op, "dbeta", dbeta, C);
  Context& c = op_device(op, {&x, gamma, &mean, &var, &g, dx, dgamma, dbeta});
  if (C == 0 || (!dx && !dgamma && !dbeta)) return;
  with_float_type(dt, [&](auto ts) {
    using S = decltype(ts);
    Parts parts(pick_parts(outer, C, inner), C, c.index);
    channel_sums(c, SumsGX<S>{g.data<S>(), x.data<S>()}, outer, C, inner, parts);
    Buffer coef(3 * C, F32, c.index);
    float* A = coef.data<float>();
    float* B = A + C;
    float* D = B + C;
    bn_train_grad_coef<<<row_grid(C, 8), 256, 0, c.stream>>>(parts.p1(), parts.p2(), parts.P, C,
                                                          double(outer * inner), fptr(gamma), mean.data<float>(),
                                                          var.data<float>(), eps, fptr(dgamma), fptr(dbeta), A, B, D);
    if (dx) apply<S>(c, g.data<S>(), x.data<S>(), A, B, D, outer, C, inner, dx->data<S>());
  });
  launched(c, op);
}

void batch_norm_infer(const Buffer& x, const Buffer& mean, const Buffer& var, const Buffer* scale, const Buffer* offset,
                      int64_t outer, int64_t C, int64_t inner, double eps, Buffer& y, double lo, double hi) {
  const char* op = "batch_normalization";
  check_view(op, "x", x, outer, C, inner, F32);
  check_count(op, "mean", mean, C, F32);
  check_count(op, "variance", var, C, F32);
  check_opt(op, "scale", scale, C);
  check_opt(op, "offset", offset, C);
  check_view(op, "out", y, outer, C, inner, F32);
  Context& c = op_device(op, {&x, &mean, &var, scale, offset, &y});
  if (C == 0 || outer * inner == 0) return;
  Buffer coef(2 * C, F32, c.index);
  float* A = coef.data<float>();
  float* D = A + C;
  bn_infer_coef<<<grid_for(C), 256, 0, c.stream>>>(mean.data<float>(), var.data<float>(), fptr(scale), fptr(offset), C,
                                                   eps, A, D);
  apply<float>(c, x.data<float>(), nullptr, A, nullptr, D, outer, C, inner, y.data<float>(), float(lo), float(hi));
  launched(c, op);
}

void batch_norm_infer_grad(const Buffer& x, const Buffer& mean, const Buffer& var, const Buffer* scale, const Buffer& g,
                           int64_t outer, int64_t C, int64_t inner, double eps, Buffer* dx, Buffer* dmean,
                           Buffer* dvar, Buffer* dscale, Buffer* doffset) {
  const char* op = "batch_normalization_grad";
  check_view(op, "x", x, outer, C, inner, F32);
  check_count(op, "mean", mean, C, F32);
  check_count(op, "variance", var, C, F32);
  check_opt(op, "scale", scale, C);
  check_view(op, "grad", g, outer, C, inner, F32);
  if (dx) check_view(op, "dx", *dx, outer, C, inner, F32);
  check_opt(op, "dmean", dmean, C);
  check_opt(op, "dvariance", dvar, C);
  check_opt(op, "dscale", dscale, C);
  check_opt(op, "doffset", doffset, C);
  Context& c = op_device(op, {&x, &mean, &var, scale, &g, dx, dmean, dvar, dscale, doffset});
  if (C == 0) return;
  if (dmean || dvar || dscale || doffset) {
    Parts parts(pick_parts(outer, C, inner), C, c.index);
    channel_sums(c, SumsGX<float>{g.data<float>(), x.data<float>()}, outer, C, inner, parts);
    bn_infer_grad_coef<<<row_grid(C, 8), 256, 0, c.stream>>>(parts.p1(), parts.p2(), parts.P, C, mean.data<float>(),
                                                          var.data<float>(), fptr(scale), eps, fptr(dmean), fptr(dvar),
                                                          fptr(dscale), fptr(doffset));
  }
  if (dx && outer * inner > 0) {
    Buffer coef(2 * C, F32, c.index);
    float* A = coef.data<float>();
    float* D = A + C;
    bn_infer_dx_coef<<<grid_for(C), 256, 0, c.stream>>>(var.data<float>(), fptr(scale), C, eps, A, D);
    apply<float>(c, g.data<float>(), nullptr, A, nullptr, D, outer, C, inner, dx->data<float>());
  }
  launched(c, op);
}

// ---- layer norm ----------------------------------------------------------------------------------
void layer_norm(const Buffer& x, const Buffer* gamma, const Buffer* beta, int64_t outer, int64_t R, int64_t inner,
                double eps, Buffer& y, Buffer& mean, Buffer& rstd) {
  const char* op = "layer_norm";
  check_view(op, "x", x, outer, R, inner, float_dtype(x));  // x, y: float32 or bfloat16, each on its own
  check_opt(op, "gamma", gamma, R);
  check_opt(op, "beta", beta, R);
  check_view(op, "y", y, outer, R, inner, float_dtype(y));
  check_count(op, "mean", mean, outer * inner, F32);
  check_count(op, "rstd", rstd, outer * inner, F32);
  Context& c = op_device(op, {&x, gamma, beta, &y, &mean, &rstd});
  const int64_t lanes = outer * inner;
  if (lanes == 0) return;
  const float *gp = fptr(gamma), *bp = fptr(beta);
  float *mp = mean.data<float>(), *rp = rstd.data<float>();
  with_float_type(x.dtype, [&](auto tx) {
    with_float_type(y.dtype, [&](auto ty) {
      using X = decltype(tx);
      using Y = decltype(ty);
      const X* xp = x.data<X>();
      Y* yp = y.data<Y>();
      if (inner == 1 && R > 1024)
        ln_rows<256, X, Y><<<row_grid(lanes, 1), 256, 0, c.stream>>>(xp, gp, bp, lanes, R, eps, yp, mp, rp);
      else if (inner == 1)
        ln_rows<32, X, Y><<<row_grid(lanes, 8), 256, 0, c.stream>>>(xp, gp, bp, lanes, R, eps, yp, mp, rp);
      else
        ln_lanes<X, Y><<<grid_for(lanes), 256, 0, c.stream>>>(xp, gp, bp, outer, R, inner, eps, yp, mp, rp);
    });
  });
  launched(c, op);
}

void layer_norm_grad(const Buffer& x, const Buffer* gamma, const Buffer& mean, const Buffer& rstd, const Buffer& g,
                     int64_t outer, int64_t R, int64_t inner, Buffer* dx, Buffer* dgamma, Buffer* dbeta) {
  const char* op = "layer_norm_grad";
  check_view(op, "x", x, outer, R, inner, float_dtype(x));  // x, grad, dx: float32 or bfloat16, each on its own
  check_opt(op, "gamma", gamma, R);
  check_count(op, "mean", mean, outer * inner, F32);
  check_count(op, "rstd", rstd, outer * inner, F32);
  check_view(op, "grad", g, outer, R, inner, float_dtype(g));
  if (dx) check_view(op, "dx", *dx, outer, R, inner, float_dtype(*dx));
  check_opt(op, "dgamma", dgamma, R);
  check_opt(op, "dbeta", dbeta, R);
  Context& c = op_device(op, {&x, gamma, &mean, &rstd, &g, dx, dgamma, dbeta});
  const int64_t lanes = outer * inner;
  if (R == 0) return;
  const float *gp = fptr(gamma), *mp = mean.data<float>(), *rp = rstd.data<float>();
  with_float_type(x.dtype, [&](auto tx) {
    with_float_type(g.dtype, [&](auto tg) {
      using X = decltype(tx);
      using TG = decltype(tg);
      const X* xp = x.data<X>();
      const TG* gr = g.data<TG>();
      if (dgamma || dbeta) {  // sums over lanes per position r: the channel sums with C = R
        Parts parts(pick_parts(outer, R, inner), R, c.index);
        channel_sums(c, SumsLN<X, TG>{xp, gr, mp, rp}, outer, R, inner, parts);
        ln_param_sums<<<row_grid(R, 8), 256, 0, c.stream>>>(parts.p1(), parts.p2(), parts.P, R, fptr(dgamma),
                                                            fptr(dbeta));
      }
      if (!dx || lanes == 0) return;
      with_float_type(dx->dtype, [&](auto td) {
        using D = decltype(td);
        D* dp = dx->data<D>();
        if (inner == 1 && R > 1024)
          ln_grad_rows<256, X, TG, D><<<row_grid(lanes, 1), 256, 0, c.stream>>>(xp, gp, mp, rp, gr, lanes, R, dp);
        else if (inner == 1)
          ln_grad_rows<32, X, TG, D><<<row_grid(lanes, 8), 256, 0, c.stream>>>(xp, gp, mp, rp, gr, lanes, R, dp);
        else
          ln_grad_lanes<X, TG, D><<<grid_for(lanes), 256, 0, c.stream>>>(xp, gp, mp, rp, gr, outer, R, inner, dp);
      });
    });
  });
  launched(c, op);
}

}  // namespace gpu
}  // namespace lamina
