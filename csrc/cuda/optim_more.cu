// Fused optimizer updates in place, the CPU module's rules (csrc/cpu/optim.cpp) with the same
// float operations in the same order, bit for bit: every product and sum is rounded on its own
// (__fmul_rn / __fadd_rn / __fsub_rn keep nvcc from fusing them into FMAs, which the CPU's
// x86-64 baseline build does not have either), and `/` and sqrtf are IEEE-rounded as on the CPU.
//
// Gradient sources: DenseSrc reads g[pos]; RowSrc reads a row gradient (sorted distinct row ids,
// one gradient row each, backend/sparse.py's deduplicate) by a binary search of the row id, a
// zero where the row has no gradient, as the CPU's RowGrad. One kernel template per rule serves
// the dense and the sparse call, so a sparse step equals the dense step with the densified
// gradient. Rules that leave rows without gradient unchanged (SGD without momentum, Adagrad) run
// over the gradient's rows only.
//
// Row ids are checked on the device before any update: the first position whose id is out of
// range or not above its predecessor is found with atomicMin and read by the host (one wait on
// the stream), which raises the CPU's error for that position (csrc/optim_checks.h).
//
// Lamb's and Adafactor's norms: the CPU's block_sums. Each block of kSumBlock positions writes its
// float terms to shared memory; 8 lanes by position are summed in double in position order, the
// lanes combined as the CPU combines them, and the block sums added in block order by one thread:
// the CPU's double sums bit for bit. Adafactor's row and column means are sums in double, in the
// CPU's order (one thread per line or per column). The scalars derived from the sums (Lamb's
// trust ratio, Adafactor's step size and clipping divisor) stay on the device.
#include <cmath>

#include "../optim_checks.h"
#include "optim_more.h"

namespace lamina {
namespace gpu {

using optim_args::check_same;

namespace {

__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float sub(float a, float b) { return __fsub_rn(a, b); }

// ---- gradient sources ----------------------------------------------------------------------------

struct DenseSrc {
  const float* g;
  __device__ float at(int64_t pos) const { return g[pos]; }
  // the gradient from pos to the end of its row (nullptr: zeros)
  __device__ const float* line(int64_t pos) const { return g + pos; }
  // reads at increasing positions (a cursor, for the row source)
  __device__ int64_t cursor(int64_t) const { return 0; }
  __device__ float at_from(int64_t pos, int64_t&) const { return g[pos]; }
};

struct RowSrc {
  const int64_t* idx;  // u distinct increasing row ids
  const float* gv;     // u rows of D
  int64_t u, D;
  // the first position in idx whose row id is >= row
  __device__ int64_t lower(int64_t row) const {
    int64_t lo = 0, hi = u;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (idx[mid] < row) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  // the position of row `row` in idx, or -1
  __device__ int64_t find(int64_t row) const {
    const int64_t j = lower(row);
    return j < u && idx[j] == row ? j : -1;
  }
  __device__ float at(int64_t pos) const {
    const int64_t row = pos / D, j = find(row);
    return j >= 0 ? gv[j * D + (pos - row * D)] : 0.f;
  }
  __device__ const float* line(int64_t pos) const {
    const int64_t row = pos / D, j = find(row);
    return j >= 0 ? gv + j * D + (pos - row * D) : nullptr;
  }
  // reads at increasing positions from pos: cur = cursor(pos), then at_from(p, cur) for p >= pos
  __device__ int64_t cursor(int64_t pos) const { return lower(pos / D); }
  __device__ float at_from(int64_t pos, int64_t& cur) const {
    const int64_t row = pos / D;
    while (cur < u && idx[cur] < row) ++cur;
    return cur < u && idx[cur] == row ? gv[cur * D + (pos - row * D)] : 0.f;
  }
};

// ---- row ids --------------------------------------------------------------------------------------

__global__ void row_ids_kernel(const int64_t* idx, int64_t u, int64_t V, unsigned long long* bad) {
  GRID_STRIDE(j, u) {
    const int64_t r = idx[j];
    if (r < 0 || r >= V || (j > 0 && r <= idx[j - 1])) atomicMin(bad, (unsigned long long)j);
  }
}

// The CPU's check_rows on the device: the first bad position raises its error (waits for the device).
void check_row_ids(Context& c, const char* op, const Buffer& ib, int64_t V) {
  const int64_t u = ib.numel;
  if (u == 0) return;
  Buffer flag(1, I64, ib.device);
  LAMINA_CUDA_CHECK(cudaMemsetAsync(flag.ptr, 0xff, 8, c.stream));
  row_ids_kernel<<<grid_for(u), 256, 0, c.stream>>>(ib.data<int64_t>(), u, V, flag.data<unsigned long long>());
  launched(c, op);
  unsigned long long bad = 0;
  LAMINA_CUDA_CHECK(cudaMemcpyAsync(&bad, flag.ptr, 8, cudaMemcpyDeviceToHost, c.stream));
  LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  if (bad == ~0ull) return;
  const int64_t j = int64_t(bad);
  int64_t ids[2] = {0, 0};  // idx[j - 1], idx[j]
  const int64_t first = j > 0 ? j - 1 : j;
  LAMINA_CUDA_CHECK(cudaMemcpyAsync(ids + (j > 0 ? 0 : 1), ib.data<int64_t>() + first, size_t(j - first + 1) * 8,
                                    cudaMemcpyDeviceToHost, c.stream));
  LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  optim_args::check_row_index(op, j, ids[1], ids[0], V);
}

// A row gradient's shapes, then (on its device) its row ids; returns the source.
RowSrc checked_rows(Context& c, const char* op, int64_t D, const Buffer& ib, const Buffer& gb, int64_t V) {
  check_row_ids(c, op, ib, V);
  return RowSrc{ib.data<int64_t>(), gb.data<float>(), ib.numel, D};
}

void check_dense(const char* op, const Buffer& var, const Buffer& grad) {
  check_dtype(op, "variable", var, F32);
  check_same(op, var, grad, "gradient");
}

// ---- SGD, Adam, RMSprop, Adagrad (csrc/cpu/optim.cpp's spans) --------------------------------------

// var -= lr g, over the gradient's rows only
__global__ void sgd_rows_kernel(float* w, RowSrc s, float lr) {
  GRID_STRIDE(k, s.u * s.D) {
    const int64_t j = k / s.D, pos = s.idx[j] * s.D + (k - j * s.D);
    w[pos] = sub(w[pos], mul(lr, s.gv[k]));
  }
}

// v = momentum v - lr g; var += v (nesterov: var += momentum v - lr g)
template <class Src>
__global__ void sgd_momentum_kernel(float* w, Src s, float* v, int64_t n, float lr, float mom, bool nesterov) {
  GRID_STRIDE(i, n) {
    const float gi = s.at(i);
    const float vi = sub(mul(mom, v[i]), mul(lr, gi));
    v[i] = vi;
    w[i] = add(w[i], nesterov ? sub(mul(mom, vi), mul(lr, gi)) : vi);
  }
}

struct AdamP { float lr_t, c1, c2, eps, wd; bool amsgrad; };

template <class Src>
__global__ void adam_kernel(float* w, Src s, float* m, float* v, float* vh, int64_t n, AdamP p) {
  GRID_STRIDE(i, n) {
    const float gi = s.at(i);
    const float wi = sub(w[i], mul(w[i], p.wd));
    const float mi = add(m[i], mul(sub(gi, m[i]), p.c1));
    const float vi = add(v[i], mul(sub(mul(gi, gi), v[i]), p.c2));
    m[i] = mi;
    v[i] = vi;
    float d = vi;
    if (p.amsgrad) { d = vh[i] > vi ? vh[i] : vi; vh[i] = d; }
    w[i] = sub(wi, mul(p.lr_t, mi) / add(sqrtf(d), p.eps));
  }
}

struct RmsP { float lr, rho, momentum, eps; bool centered; };

template <class Src>
__global__ void rmsprop_kernel(float* w, Src s, float* vel, float* ag, float* mo, int64_t n, RmsP p) {
  GRID_STRIDE(i, n) {
    const float gi = s.at(i);
    const float v = add(mul(p.rho, vel[i]), mul(mul(1.f - p.rho, gi), gi));
    vel[i] = v;
    float denom = add(v, p.eps);
    if (p.centered) {
      const float a = add(mul(p.rho, ag[i]), mul(1.f - p.rho, gi));
      ag[i] = a;
      denom = add(sub(v, mul(a, a)), p.eps);
    }
    const float inc = mul(p.lr, gi) / sqrtf(denom);
    if (p.momentum > 0.f) {
      const float mi = add(mul(p.momentum, mo[i]), inc);
      mo[i] = mi;
      w[i] = sub(w[i], mi);
    } else {
      w[i] = sub(w[i], inc);
    }
  }
}

// acc += g^2; var -= lr g / sqrt(acc + eps), over the gradient's rows only
__global__ void adagrad_rows_kernel(float* w, RowSrc s, float* a, float lr, float eps) {
  GRID_STRIDE(k, s.u * s.D) {
    const int64_t j = k / s.D, pos = s.idx[j] * s.D + (k - j * s.D);
    const float g = s.gv[k];
    const float ai = add(a[pos], mul(g, g));
    a[pos] = ai;
    w[pos] = sub(w[pos], mul(lr, g) / sqrtf(add(ai, eps)));
  }
}

// ---- Adadelta, Adamax, Nadam, Ftrl, Lion ---------------------------------------------------------

struct AdadeltaP { float lr, rho, one_m_rho, eps; };

template <class Src>
__global__ void adadelta_kernel(float* w, Src s, float* ag, float* ad, int64_t n, AdadeltaP p) {
  GRID_STRIDE(i, n) {
    const float gi = s.at(i);
    const float a = add(mul(p.rho, ag[i]), mul(p.one_m_rho, mul(gi, gi)));
    ag[i] = a;
    const float delta = -(mul(sqrtf(add(ad[i], p.eps)), gi) / sqrtf(add(a, p.eps)));
    ad[i] = add(mul(p.rho, ad[i]), mul(p.one_m_rho, mul(delta, delta)));
    w[i] = add(w[i], mul(p.lr, delta));
  }
}

struct AdamaxP { float lr, one_m_b1, b2, eps, one_m_b1p; };

template <class Src>
__global__ void adamax_kernel(float* w, Src s, float* m, float* u, int64_t n, AdamaxP p) {
  GRID_STRIDE(i, n) {
    const float gi = s.at(i);
    const float mi = add(m[i], mul(sub(gi, m[i]), p.one_m_b1));
    const float bu = mul(p.b2, u[i]), ag = fabsf(gi);
    const float ui = bu > ag ? bu : ag;
    m[i] = mi;
    u[i] = ui;
    w[i] = sub(w[i], mul(p.lr, mi) / mul(p.one_m_b1p, add(ui, p.eps)));
  }
}

struct NadamP { float lr, one_m_b1, one_m_b2, eps, u_t1, one_m_uprod_t1, one_m_u_t, one_m_uprod_t, one_m_b2p; };

template <class Src>
__global__ void nadam_kernel(float* w, Src s, float* m, float* v, int64_t n, NadamP p) {
  GRID_STRIDE(i, n) {
    const float gi = s.at(i);
    const float mi = add(m[i], mul(sub(gi, m[i]), p.one_m_b1));
    const float vi = add(v[i], mul(sub(mul(gi, gi), v[i]), p.one_m_b2));
    m[i] = mi;
    v[i] = vi;
    const float m_hat = add(mul(p.u_t1, mi) / p.one_m_uprod_t1, mul(p.one_m_u_t, gi) / p.one_m_uprod_t);
    const float v_hat = vi / p.one_m_b2p;
    w[i] = sub(w[i], mul(m_hat, p.lr) / add(sqrtf(v_hat), p.eps));
  }
}

struct FtrlP { float lr, neg_power, l1, two_l2, two_shrinkage; };

// x^p as the CPU's powf (glibc's, computed in double and rounded once); sqrt for the default p = 0.5
__device__ __forceinline__ float ftrl_pow(float x, float p, bool sqrt_path) {
  return sqrt_path ? sqrtf(x) : float(pow(double(x), double(p)));
}

template <class Src>
__global__ void ftrl_kernel(float* w, Src s, float* acc, float* lin, int64_t n, FtrlP p, bool sqrt_path) {
  GRID_STRIDE(i, n) {
    const float g = s.at(i);
    const float wi = w[i], ai = acc[i];
    const float g_use = add(g, mul(p.two_shrinkage, wi));
    const float na = add(ai, mul(g, g));
    const float pn = ftrl_pow(na, p.neg_power, sqrt_path);
    const float po = ftrl_pow(ai, p.neg_power, sqrt_path);
    const float li = add(lin[i], sub(g_use, mul(sub(pn, po) / p.lr, wi)));
    const float quadratic = add(pn / p.lr, p.two_l2);
    const float lc = li < -p.l1 ? -p.l1 : (li > p.l1 ? p.l1 : li);
    lin[i] = li;
    w[i] = sub(lc, li) / quadratic;
    acc[i] = na;
  }
}

struct LionP { float lr, b1, one_m_b1, b2, one_m_b2; };

template <class Src>
__global__ void lion_kernel(float* w, Src s, float* m, int64_t n, LionP p) {
  GRID_STRIDE(i, n) {
    const float gi = s.at(i), mi = m[i];
    const float c = add(mul(mi, p.b1), mul(gi, p.one_m_b1));
    const float sg = c > 0.f ? 1.f : (c < 0.f ? -1.f : c);  // sign; 0 and NaN pass through
    w[i] = sub(w[i], mul(p.lr, sg));
    m[i] = add(mul(mi, p.b2), mul(gi, p.one_m_b2));
  }
}

// ---- block sums (csrc/cpu/optim.cpp's block_sums) --------------------------------------------------

constexpr int kSumBlock = 4096;
constexpr int kSumThreads = 256;

int64_t sum_blocks(int64_t numel) { return (numel + kSumBlock - 1) / kSumBlock; }

// Block b of kSumBlock positions: terms(pos, t) writes the K float terms of each position (and
// may update the slots there); part[b * K + k] = the block's sum of term k, as the CPU adds it.
template <int K, class Terms>
__global__ void __launch_bounds__(kSumThreads) block_sums_kernel(int64_t numel, Terms terms, double* part) {
  __shared__ float buf[K][kSumBlock];
  __shared__ double lanes[K][8];
  const int64_t b0 = int64_t(blockIdx.x) * kSumBlock;
  const int n = numel - b0 < kSumBlock ? int(numel - b0) : kSumBlock;
  for (int t = threadIdx.x; t < n; t += blockDim.x) {
    float v[K];
    terms(b0 + t, v);
    for (int k = 0; k < K; ++k) buf[k][t] = v[k];
  }
  __syncthreads();
  if (int(threadIdx.x) < 8 * K) {
    const int k = threadIdx.x / 8, l = threadIdx.x % 8;
    double s = 0.0;
    for (int i = l; i < n; i += 8) s += double(buf[k][i]);
    lanes[k][l] = s;
  }
  __syncthreads();
  if (int(threadIdx.x) < K) {
    const double* L = lanes[threadIdx.x];
    part[int64_t(blockIdx.x) * K + threadIdx.x] = ((L[0] + L[1]) + (L[2] + L[3])) + ((L[4] + L[5]) + (L[6] + L[7]));
  }
}

// The total of term k over the nb blocks, added in block order.
__device__ double total_of(const double* part, int64_t nb, int K, int k) {
  double t = 0.0;
  for (int64_t b = 0; b < nb; ++b) t += part[b * K + k];
  return t;
}

template <int K, class Terms>
void launch_block_sums(Context& c, int64_t numel, Terms terms, double* part) {
  const int64_t nb = sum_blocks(numel);
  if (nb > 0) block_sums_kernel<K, Terms><<<unsigned(nb), kSumThreads, 0, c.stream>>>(numel, terms, part);
}

// ---- Lamb ----------------------------------------------------------------------------------------

struct LambP { float lr, one_m_b1, one_m_b2, eps, one_m_b1p, one_m_b2p; };

__device__ __forceinline__ float lamb_update(float m, float v, const LambP& p) {
  return (m / p.one_m_b1p) / add(sqrtf(v / p.one_m_b2p), p.eps);
}

// the moments, then the terms var^2 and update^2
template <class Src>
struct LambTerms {
  float* w;
  float* m;
  float* v;
  Src s;
  LambP p;
  __device__ void operator()(int64_t i, float* t) const {
    const float gi = s.at(i);
    const float mi = add(m[i], mul(sub(gi, m[i]), p.one_m_b1));
    const float vi = add(v[i], mul(sub(mul(gi, gi), v[i]), p.one_m_b2));
    m[i] = mi;
    v[i] = vi;
    const float u = lamb_update(mi, vi, p);
    t[0] = mul(w[i], w[i]);
    t[1] = mul(u, u);
  }
};

// scale = trust ratio x lr, from the two norms
__global__ void lamb_scale_kernel(const double* part, int64_t nb, float lr, float* scale) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  const float w_norm = sqrtf(float(total_of(part, nb, 2, 0))), u_norm = sqrtf(float(total_of(part, nb, 2, 1)));
  const float ratio = w_norm > 0.f ? (u_norm > 0.f ? w_norm / u_norm : 1.f) : 1.f;
  *scale = mul(ratio, lr);
}

__global__ void lamb_step_kernel(float* w, const float* m, const float* v, int64_t n, LambP p, const float* scale) {
  const float sc = *scale;
  GRID_STRIDE(i, n) w[i] = sub(w[i], mul(sc, lamb_update(m[i], v[i], p)));
}

template <class Src>
void run_lamb(Context& c, Buffer& var, Src s, Buffer& m, Buffer& v, const LambP& p) {
  const int64_t n = var.numel, nb = sum_blocks(n);
  if (n == 0) return;
  Buffer part(nb * 2, I64, var.device);  // doubles
  Buffer scale(1, F32, var.device);
  launch_block_sums<2>(c, n, LambTerms<Src>{var.data<float>(), m.data<float>(), v.data<float>(), s, p},
                       part.data<double>());
  lamb_scale_kernel<<<1, 1, 0, c.stream>>>(part.data<double>(), nb, p.lr, scale.data<float>());
  lamb_step_kernel<<<grid_for(n), 256, 0, c.stream>>>(var.data<float>(), m.data<float>(), v.data<float>(), n, p,
                                                      scale.data<float>());
}

// ---- Adafactor -----------------------------------------------------------------------------------

struct AdafactorP { int64_t B, R, C; bool factored; float rho_t, beta, one_m_beta, eps1, eps2, clip; };

struct SquareTerms {
  const float* x;
  __device__ void operator()(int64_t i, float* t) const { t[0] = mul(x[i], x[i]); }
};

// u = g / sqrt(v), term u^2
template <class Src>
struct UpdateTerms {
  Src s;
  const float* v;
  __device__ void operator()(int64_t i, float* t) const {
    const float u = s.at(i) / sqrtf(v[i]);
    t[0] = mul(u, u);
  }
};

// r: the moving mean of g^2 + eps1 over each line of C (one thread a line, summed in double in order)
template <class Src>
__global__ void adafactor_r_kernel(Src s, float* r, int64_t lines, int64_t C, AdafactorP p) {
  GRID_STRIDE(l, lines) {
    const float* g = s.line(l * C);
    double sum = 0.0;
    for (int64_t j = 0; j < C; ++j) {
      const float gj = g ? g[j] : 0.f;
      sum += double(add(mul(gj, gj), p.eps1));
    }
    r[l] = add(mul(p.beta, r[l]), mul(p.one_m_beta, float(sum / double(C))));
  }
}

// c: the moving mean of g^2 + eps1 over the R lines of each b (one thread a column, its rows in order)
template <class Src>
__global__ void adafactor_c_kernel(Src s, float* c, AdafactorP p) {
  GRID_STRIDE(t, p.B * p.C) {
    const int64_t b = t / p.C, j = t - b * p.C;
    int64_t cur = s.cursor(b * p.R * p.C + j);
    double sum = 0.0;
    for (int64_t i = 0; i < p.R; ++i) {
      const float gj = s.at_from((b * p.R + i) * p.C + j, cur);
      sum += double(add(mul(gj, gj), p.eps1));
    }
    c[t] = add(mul(p.beta, c[t]), mul(p.one_m_beta, float(sum / double(p.R))));
  }
}

// mean(r) over each b's R lines
__global__ void adafactor_r_mean_kernel(const float* r, float* r_mean, int64_t B, int64_t R) {
  GRID_STRIDE(b, B) {
    double sum = 0.0;
    for (int64_t i = 0; i < R; ++i) sum += double(r[b * R + i]);
    r_mean[b] = float(sum / double(R));
  }
}

// v = (r / mean(r)) (x) c
__global__ void adafactor_v_kernel(const float* r, const float* r_mean, const float* c, float* v, int64_t n,
                                   int64_t R, int64_t C) {
  GRID_STRIDE(i, n) {
    const int64_t l = i / C, j = i - l * C, b = l / R;
    v[i] = mul(r[l] / r_mean[b], c[b * C + j]);
  }
}

// unfactored: v = beta v + (1 - beta)(g^2 + eps1)
template <class Src>
__global__ void adafactor_v_plain_kernel(Src s, float* v, int64_t n, AdafactorP p) {
  GRID_STRIDE(i, n) {
    const float g = s.at(i);
    v[i] = add(mul(p.beta, v[i]), mul(p.one_m_beta, add(mul(g, g), p.eps1)));
  }
}

// alpha = max(eps2, rms(var)) rho_t; denom = max(1, rms(u) / clip)
__global__ void adafactor_scalars_kernel(const double* w_part, const double* u_part, int64_t nb, int64_t numel,
                                         AdafactorP p, float* scalars) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  const float w_rms = sqrtf(float(total_of(w_part, nb, 1, 0) / double(numel)));
  scalars[0] = mul(p.eps2 > w_rms ? p.eps2 : w_rms, p.rho_t);
  const float u_rms_c = sqrtf(float(total_of(u_part, nb, 1, 0) / double(numel))) / p.clip;
  scalars[1] = u_rms_c > 1.f ? u_rms_c : 1.f;
}

template <class Src>
__global__ void adafactor_step_kernel(float* w, Src s, const float* v, int64_t n, const float* scalars) {
  const float alpha = scalars[0], denom = scalars[1];
  GRID_STRIDE(i, n) w[i] = sub(w[i], mul(alpha, (s.at(i) / sqrtf(v[i])) / denom));
}

template <class Src>
void run_adafactor(Context& c, Buffer& var, Src s, Buffer* rb, Buffer* cb, Buffer& vb, const AdafactorP& p) {
  const int64_t n = var.numel, nb = sum_blocks(n);
  float* w = var.data<float>();
  float* v = vb.data<float>();
  Buffer w_part(nb > 0 ? nb : 1, I64, var.device), u_part(nb > 0 ? nb : 1, I64, var.device);  // doubles
  launch_block_sums<1>(c, n, SquareTerms{w}, w_part.data<double>());  // rms(var), before the step
  if (p.factored) {
    float* r = rb->data<float>();
    float* cc = cb->data<float>();
    const int64_t lines = p.B * p.R;
    // (as the CPU, r and c are updated even where the variable holds no element: C = 0 or R = 0)
    if (lines > 0) adafactor_r_kernel<Src><<<grid_for(lines), 256, 0, c.stream>>>(s, r, lines, p.C, p);
    if (p.B * p.C > 0) adafactor_c_kernel<Src><<<grid_for(p.B * p.C), 256, 0, c.stream>>>(s, cc, p);
    if (n > 0) {
      Buffer r_mean(p.B, F32, var.device);
      adafactor_r_mean_kernel<<<grid_for(p.B), 256, 0, c.stream>>>(r, r_mean.data<float>(), p.B, p.R);
      adafactor_v_kernel<<<grid_for(n), 256, 0, c.stream>>>(r, r_mean.data<float>(), cc, v, n, p.R, p.C);
    }
  } else if (n > 0) {
    adafactor_v_plain_kernel<Src><<<grid_for(n), 256, 0, c.stream>>>(s, v, n, p);
  }
  if (n == 0) return;
  launch_block_sums<1>(c, n, UpdateTerms<Src>{s, v}, u_part.data<double>());
  Buffer scalars(2, F32, var.device);
  adafactor_scalars_kernel<<<1, 1, 0, c.stream>>>(w_part.data<double>(), u_part.data<double>(), nb, n, p,
                                                  scalars.data<float>());
  adafactor_step_kernel<Src><<<grid_for(n), 256, 0, c.stream>>>(w, s, v, n, scalars.data<float>());
}

AdafactorP adafactor_params(int64_t B, int64_t R, int64_t C, bool factored, double rho_t, double beta,
                            double one_m_beta, double eps1, double eps2, double clip) {
  return AdafactorP{B, R, C, factored, float(rho_t), float(beta), float(one_m_beta), float(eps1), float(eps2),
                    float(clip)};
}

// adafactor_impl's checks: the velocity, then the factored slots
void check_adafactor(const char* op, const Buffer& var, const Buffer* r, const Buffer* c, const Buffer& v,
                     const AdafactorP& p) {
  check_same(op, var, v, "velocity");
  if (p.factored) optim_args::check_adafactor_factored(op, var.numel, r, c, p.B, p.R, p.C);
}

NadamP nadam_params(double lr, double one_m_b1, double one_m_b2, double eps, double u_t1, double one_m_uprod_t1,
                    double one_m_u_t, double one_m_uprod_t, double one_m_b2p) {
  return NadamP{float(lr), float(one_m_b1), float(one_m_b2), float(eps), float(u_t1), float(one_m_uprod_t1),
                float(one_m_u_t), float(one_m_uprod_t), float(one_m_b2p)};
}

AdamP adam_params(double lr_t, double b1, double b2, double eps, bool amsgrad, double wd_lr) {
  return AdamP{float(lr_t), 1.f - float(b1), 1.f - float(b2), float(eps), float(wd_lr), amsgrad};
}

}  // namespace

// ---- SGD, Adam, RMSprop, Adagrad with a row gradient ---------------------------------------------

void sgd_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& vel, double lr_d, double mom_d,
                bool nesterov) {
  const char* op = "sgd_sparse";
  const int64_t V = optim_args::check_row_shapes(op, var, D, ib, gb);
  const float lr = float(lr_d), mom = float(mom_d);
  Context& c = op_device(op, {&var, &ib, &gb, mom != 0.f ? &vel : nullptr});
  const RowSrc s = checked_rows(c, op, D, ib, gb, V);
  if (mom == 0.f) {
    if (s.u > 0) sgd_rows_kernel<<<grid_for(s.u * D), 256, 0, c.stream>>>(var.data<float>(), s, lr);
  } else {
    check_same(op, var, vel, "velocity");
    if (var.numel)
      sgd_momentum_kernel<RowSrc><<<grid_for(var.numel), 256, 0, c.stream>>>(var.data<float>(), s, vel.data<float>(),
                                                                            var.numel, lr, mom, nesterov);
  }
  launched(c, op);
}

void adam_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, Buffer& v, Buffer& vhat,
                 double lr_t, double b1, double b2, double eps, bool amsgrad, double wd_lr) {
  const char* op = "adam_sparse";
  const int64_t V = optim_args::check_row_shapes(op, var, D, ib, gb);
  Context& c = op_device(op, {&var, &ib, &gb, &m, &v, amsgrad ? &vhat : nullptr});
  const RowSrc s = checked_rows(c, op, D, ib, gb, V);
  optim_args::check_adam(op, var, m, v, vhat, amsgrad);
  if (var.numel)
    adam_kernel<RowSrc><<<grid_for(var.numel), 256, 0, c.stream>>>(
        var.data<float>(), s, m.data<float>(), v.data<float>(), amsgrad ? vhat.data<float>() : nullptr, var.numel,
        adam_params(lr_t, b1, b2, eps, amsgrad, wd_lr));
  launched(c, op);
}

void rmsprop_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& vel, Buffer& avg_grad,
                    Buffer& mom, double lr, double rho, double momentum, double eps, bool centered) {
  const char* op = "rmsprop_sparse";
  const int64_t V = optim_args::check_row_shapes(op, var, D, ib, gb);
  Context& c = op_device(op, {&var, &ib, &gb, &vel, centered ? &avg_grad : nullptr, momentum > 0 ? &mom : nullptr});
  const RowSrc s = checked_rows(c, op, D, ib, gb, V);
  optim_args::check_rmsprop(op, var, vel, avg_grad, mom, centered, momentum);
  const RmsP p{float(lr), float(rho), float(momentum), float(eps), centered};
  if (var.numel)
    rmsprop_kernel<RowSrc><<<grid_for(var.numel), 256, 0, c.stream>>>(
        var.data<float>(), s, vel.data<float>(), centered ? avg_grad.data<float>() : nullptr,
        p.momentum > 0.f ? mom.data<float>() : nullptr, var.numel, p);
  launched(c, op);
}

void adagrad_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& acc, double lr, double eps) {
  const char* op = "adagrad_sparse";
  const int64_t V = optim_args::check_row_shapes(op, var, D, ib, gb);
  Context& c = op_device(op, {&var, &ib, &gb, &acc});
  const RowSrc s = checked_rows(c, op, D, ib, gb, V);
  check_same(op, var, acc, "accumulator");
  if (s.u > 0)
    adagrad_rows_kernel<<<grid_for(s.u * D), 256, 0, c.stream>>>(var.data<float>(), s, acc.data<float>(), float(lr),
                                                                 float(eps));
  launched(c, op);
}

// ---- Adadelta ------------------------------------------------------------------------------------

namespace {
template <class Src>
void run_adadelta(Context& c, Buffer& var, Src s, Buffer& ag, Buffer& ad, const AdadeltaP& p) {
  if (var.numel)
    adadelta_kernel<Src><<<grid_for(var.numel), 256, 0, c.stream>>>(var.data<float>(), s, ag.data<float>(),
                                                                    ad.data<float>(), var.numel, p);
}
void check_adadelta(const char* op, const Buffer& var, const Buffer& ag, const Buffer& ad) {
  check_same(op, var, ag, "accumulated_grad");
  check_same(op, var, ad, "accumulated_delta_var");
}
}  // namespace

void adadelta(Buffer& var, const Buffer& grad, Buffer& ag, Buffer& ad, double lr, double rho, double one_m_rho,
              double eps) {
  const char* op = "adadelta";
  check_dense(op, var, grad);
  check_adadelta(op, var, ag, ad);
  Context& c = op_device(op, {&var, &grad, &ag, &ad});
  run_adadelta(c, var, DenseSrc{grad.data<float>()}, ag, ad,
               AdadeltaP{float(lr), float(rho), float(one_m_rho), float(eps)});
  launched(c, op);
}

void adadelta_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& ag, Buffer& ad, double lr,
                     double rho, double one_m_rho, double eps) {
  const char* op = "adadelta_sparse";
  const int64_t V = optim_args::check_row_shapes(op, var, D, ib, gb);
  Context& c = op_device(op, {&var, &ib, &gb, &ag, &ad});
  const RowSrc s = checked_rows(c, op, D, ib, gb, V);
  check_adadelta(op, var, ag, ad);
  run_adadelta(c, var, s, ag, ad, AdadeltaP{float(lr), float(rho), float(one_m_rho), float(eps)});
  launched(c, op);
}

// ---- Adamax --------------------------------------------------------------------------------------

namespace {
template <class Src>
void run_adamax(Context& c, Buffer& var, Src s, Buffer& m, Buffer& u, const AdamaxP& p) {
  if (var.numel)
    adamax_kernel<Src><<<grid_for(var.numel), 256, 0, c.stream>>>(var.data<float>(), s, m.data<float>(),
                                                                  u.data<float>(), var.numel, p);
}
void check_adamax(const char* op, const Buffer& var, const Buffer& m, const Buffer& u) {
  check_same(op, var, m, "momentum");
  check_same(op, var, u, "norm");
}
}  // namespace

void adamax(Buffer& var, const Buffer& grad, Buffer& m, Buffer& u, double lr, double one_m_b1, double b2, double eps,
            double one_m_b1p) {
  const char* op = "adamax";
  check_dense(op, var, grad);
  check_adamax(op, var, m, u);
  Context& c = op_device(op, {&var, &grad, &m, &u});
  run_adamax(c, var, DenseSrc{grad.data<float>()}, m, u,
             AdamaxP{float(lr), float(one_m_b1), float(b2), float(eps), float(one_m_b1p)});
  launched(c, op);
}

void adamax_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, Buffer& u, double lr,
                   double one_m_b1, double b2, double eps, double one_m_b1p) {
  const char* op = "adamax_sparse";
  const int64_t V = optim_args::check_row_shapes(op, var, D, ib, gb);
  Context& c = op_device(op, {&var, &ib, &gb, &m, &u});
  const RowSrc s = checked_rows(c, op, D, ib, gb, V);
  check_adamax(op, var, m, u);
  run_adamax(c, var, s, m, u, AdamaxP{float(lr), float(one_m_b1), float(b2), float(eps), float(one_m_b1p)});
  launched(c, op);
}

// ---- Nadam ---------------------------------------------------------------------------------------

namespace {
template <class Src>
void run_nadam(Context& c, Buffer& var, Src s, Buffer& m, Buffer& v, const NadamP& p) {
  if (var.numel)
    nadam_kernel<Src><<<grid_for(var.numel), 256, 0, c.stream>>>(var.data<float>(), s, m.data<float>(),
                                                                 v.data<float>(), var.numel, p);
}
void check_moments(const char* op, const Buffer& var, const Buffer& m, const Buffer& v) {
  check_same(op, var, m, "momentum");
  check_same(op, var, v, "velocity");
}
}  // namespace

void nadam(Buffer& var, const Buffer& grad, Buffer& m, Buffer& v, double lr, double one_m_b1, double one_m_b2,
           double eps, double u_t1, double one_m_uprod_t1, double one_m_u_t, double one_m_uprod_t, double one_m_b2p) {
  const char* op = "nadam";
  check_dense(op, var, grad);
  check_moments(op, var, m, v);
  Context& c = op_device(op, {&var, &grad, &m, &v});
  run_nadam(c, var, DenseSrc{grad.data<float>()}, m, v,
            nadam_params(lr, one_m_b1, one_m_b2, eps, u_t1, one_m_uprod_t1, one_m_u_t, one_m_uprod_t, one_m_b2p));
  launched(c, op);
}

void nadam_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, Buffer& v, double lr,
                  double one_m_b1, double one_m_b2, double eps, double u_t1, double one_m_uprod_t1, double one_m_u_t,
                  double one_m_uprod_t, double one_m_b2p) {
  const char* op = "nadam_sparse";
  const int64_t V = optim_args::check_row_shapes(op, var, D, ib, gb);
  Context& c = op_device(op, {&var, &ib, &gb, &m, &v});
  const RowSrc s = checked_rows(c, op, D, ib, gb, V);
  check_moments(op, var, m, v);
  run_nadam(c, var, s, m, v,
            nadam_params(lr, one_m_b1, one_m_b2, eps, u_t1, one_m_uprod_t1, one_m_u_t, one_m_uprod_t, one_m_b2p));
  launched(c, op);
}

// ---- Ftrl ----------------------------------------------------------------------------------------

namespace {
template <class Src>
void run_ftrl(Context& c, Buffer& var, Src s, Buffer& acc, Buffer& lin, const FtrlP& p) {
  if (var.numel)
    ftrl_kernel<Src><<<grid_for(var.numel), 256, 0, c.stream>>>(var.data<float>(), s, acc.data<float>(),
                                                                lin.data<float>(), var.numel, p, p.neg_power == 0.5f);
}
void check_ftrl(const char* op, const Buffer& var, const Buffer& acc, const Buffer& lin) {
  check_same(op, var, acc, "accumulator");
  check_same(op, var, lin, "linear");
}
}  // namespace

void ftrl(Buffer& var, const Buffer& grad, Buffer& acc, Buffer& lin, double lr, double neg_power, double l1,
          double two_l2, double two_shrinkage) {
  const char* op = "ftrl";
  check_dense(op, var, grad);
  check_ftrl(op, var, acc, lin);
  Context& c = op_device(op, {&var, &grad, &acc, &lin});
  run_ftrl(c, var, DenseSrc{grad.data<float>()}, acc, lin,
           FtrlP{float(lr), float(neg_power), float(l1), float(two_l2), float(two_shrinkage)});
  launched(c, op);
}

void ftrl_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& acc, Buffer& lin, double lr,
                 double neg_power, double l1, double two_l2, double two_shrinkage) {
  const char* op = "ftrl_sparse";
  const int64_t V = optim_args::check_row_shapes(op, var, D, ib, gb);
  Context& c = op_device(op, {&var, &ib, &gb, &acc, &lin});
  const RowSrc s = checked_rows(c, op, D, ib, gb, V);
  check_ftrl(op, var, acc, lin);
  run_ftrl(c, var, s, acc, lin, FtrlP{float(lr), float(neg_power), float(l1), float(two_l2), float(two_shrinkage)});
  launched(c, op);
}

// ---- Lion ----------------------------------------------------------------------------------------

namespace {
template <class Src>
void run_lion(Context& c, Buffer& var, Src s, Buffer& m, const LionP& p) {
  if (var.numel)
    lion_kernel<Src><<<grid_for(var.numel), 256, 0, c.stream>>>(var.data<float>(), s, m.data<float>(), var.numel, p);
}
}  // namespace

void lion(Buffer& var, const Buffer& grad, Buffer& m, double lr, double b1, double one_m_b1, double b2,
          double one_m_b2) {
  const char* op = "lion";
  check_dense(op, var, grad);
  check_same(op, var, m, "momentum");
  Context& c = op_device(op, {&var, &grad, &m});
  run_lion(c, var, DenseSrc{grad.data<float>()}, m,
           LionP{float(lr), float(b1), float(one_m_b1), float(b2), float(one_m_b2)});
  launched(c, op);
}

void lion_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, double lr, double b1,
                 double one_m_b1, double b2, double one_m_b2) {
  const char* op = "lion_sparse";
  const int64_t V = optim_args::check_row_shapes(op, var, D, ib, gb);
  Context& c = op_device(op, {&var, &ib, &gb, &m});
  const RowSrc s = checked_rows(c, op, D, ib, gb, V);
  check_same(op, var, m, "momentum");
  run_lion(c, var, s, m, LionP{float(lr), float(b1), float(one_m_b1), float(b2), float(one_m_b2)});
  launched(c, op);
}

// ---- Lamb ----------------------------------------------------------------------------------------

void lamb(Buffer& var, const Buffer& grad, Buffer& m, Buffer& v, double lr, double one_m_b1, double one_m_b2,
          double eps, double one_m_b1p, double one_m_b2p) {
  const char* op = "lamb";
  check_dense(op, var, grad);
  check_moments(op, var, m, v);
  Context& c = op_device(op, {&var, &grad, &m, &v});
  run_lamb(c, var, DenseSrc{grad.data<float>()}, m, v,
           LambP{float(lr), float(one_m_b1), float(one_m_b2), float(eps), float(one_m_b1p), float(one_m_b2p)});
  launched(c, op);
}

void lamb_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer& m, Buffer& v, double lr,
                 double one_m_b1, double one_m_b2, double eps, double one_m_b1p, double one_m_b2p) {
  const char* op = "lamb_sparse";
  const int64_t V = optim_args::check_row_shapes(op, var, D, ib, gb);
  Context& c = op_device(op, {&var, &ib, &gb, &m, &v});
  const RowSrc s = checked_rows(c, op, D, ib, gb, V);
  check_moments(op, var, m, v);
  run_lamb(c, var, s, m, v,
           LambP{float(lr), float(one_m_b1), float(one_m_b2), float(eps), float(one_m_b1p), float(one_m_b2p)});
  launched(c, op);
}

// ---- Adafactor -----------------------------------------------------------------------------------

void adafactor(Buffer& var, const Buffer& grad, Buffer* r, Buffer* c, Buffer& v, int64_t B, int64_t R, int64_t C,
               bool factored, double rho_t, double beta, double one_m_beta, double eps1, double eps2, double clip) {
  const char* op = "adafactor";
  const AdafactorP p = adafactor_params(B, R, C, factored, rho_t, beta, one_m_beta, eps1, eps2, clip);
  check_dense(op, var, grad);
  check_adafactor(op, var, r, c, v, p);
  Context& ctx = op_device(op, {&var, &grad, &v, factored ? r : nullptr, factored ? c : nullptr});
  run_adafactor(ctx, var, DenseSrc{grad.data<float>()}, r, c, v, p);
  launched(ctx, op);
}

void adafactor_sparse(Buffer& var, int64_t D, const Buffer& ib, const Buffer& gb, Buffer* r, Buffer* c, Buffer& v,
                      int64_t B, int64_t R, int64_t C, bool factored, double rho_t, double beta, double one_m_beta,
                      double eps1, double eps2, double clip) {
  const char* op = "adafactor_sparse";
  const AdafactorP p = adafactor_params(B, R, C, factored, rho_t, beta, one_m_beta, eps1, eps2, clip);
  optim_args::check_adafactor_rows(factored, D, C);
  const int64_t V = optim_args::check_row_shapes(op, var, D, ib, gb);
  Context& ctx = op_device(op, {&var, &ib, &gb, &v, factored ? r : nullptr, factored ? c : nullptr});
  const RowSrc s = checked_rows(ctx, op, D, ib, gb, V);
  check_adafactor(op, var, r, c, v, p);
  run_adafactor(ctx, var, s, r, c, v, p);
  launched(ctx, op);
}

}  // namespace gpu
}  // namespace lamina
