// Fused scaled dot-product attention (keras.ops.dot_product_attention), forward and backward.
//
// Q (B, Tq, N, H), K (B, Tk, Nkv, H), V (B, Tk, Nkv, Hv), O (B, Tq, N, Hv) are read and written
// in place through element strides (batch, time, head; the last dimension is contiguous), so the
// Keras layout needs no transposes. Query head n uses key/value head n / (N / Nkv) (grouped-query
// attention when Nkv < N). For each (batch, head) and block of query rows:
//   S = scale * Q K^T (+ bias)                    one sgemm, the block's rows x the keys
//   S = keep ? S : -0.7 * float32 max             keep = mask & (causal: key <= query position)
//   P = softmax(S) over the keys (max, exp, sum)  each row's max and 1 / sum saved for the backward
//   O = P V                                       one sgemm, written straight into O's rows
// A masked logit is Keras's finite -0.7 * float32 max, so a fully masked row averages all values.
// Under `causal`, a block of rows [r0, r1) computes only the keys below min(r1, Tk): the others
// are masked, and their probability exp(masked - max) is exactly 0 unless the row's max is itself
// near the masked value (a fully masked row); such a block computes every key, so the result is
// the full-width computation's. The statistics are the max and 1 / sum rather than one log-sum-exp:
// max + log(sum) rounds to max when max is the masked value (a fully masked row), and P would
// come out 1 instead of 1 / Tk; recomputed from both, P is bit for bit the forward's.
//
// Backward (flash-attention's, P recomputed from the saved statistics), for the same blocks:
//   P = exp(S - max) / sum, dP = dO V^T, dS = keep ? P * (dP - rowsum(dO * O)) : 0
//   dQ = scale dS K,   dK += scale dS^T Q,   dV += P^T dO,   dlogits (for a bias) = dS
// A task is (batch, key/value head, part of its query rows): it owns the dQ rows of those query
// rows and accumulates dK / dV of its key/value head (over the grouped query heads), straight
// into dK / dV when one part covers them all, else into its own buffer, summed afterwards.
//
// Threads: tasks run in one parallel region, each on one thread (the sgemm calls inside run
// serially); blocks are made small enough that there are at least as many tasks as threads.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <vector>

#include "common.h"
#include "conv_common.h"
#include "device.h"
#include "gemm.h"
#include "simd.h"
#include "vmath.h"

namespace py = pybind11;

namespace lamina {

namespace {

// Keras's (jax.nn.dot_product_attention's) masked logit: -0.7 * the float32 maximum.
const float kMasked = float(-0.7 * double(std::numeric_limits<float>::max()));

// Work (multiply-adds) below which the kernel runs on the calling thread alone.
constexpr double kMinParallelFma = 1 << 18;

// ---- row kernels, compiled per ISA -------------------------------------------------------------

// s[j] = keep ? s[j] + bias[j] : masked for j < n, keep = (j <= lim) && mask[j]; bias and mask
// may be null, with element strides bst / mst (0: one value broadcast along the keys).
template <bool HasBias, bool HasMask>
LAMINA_INLINE void logits_impl(float* s, int64_t n, const float* bias, int64_t bst, const uint8_t* mask,
                               int64_t mst, int64_t lim) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    bool keep = j <= lim;
    if constexpr (HasMask) keep = keep && mask[j * mst] != 0;
    float v = s[j];
    if constexpr (HasBias) v += bias[j * bst];
    s[j] = keep ? v : kMasked;
  }
}
LAMINA_CLONES void row_logits(float* s, int64_t n, const float* bias, int64_t bst, const uint8_t* mask, int64_t mst,
                              int64_t lim) {
  if (bias && mask) logits_impl<true, true>(s, n, bias, bst, mask, mst, lim);
  else if (bias) logits_impl<true, false>(s, n, bias, bst, mask, mst, lim);
  else if (mask) logits_impl<false, true>(s, n, bias, bst, mask, mst, lim);
  else logits_impl<false, false>(s, n, bias, bst, mask, mst, lim);
}

LAMINA_CLONES float row_max(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

// x = exp(x - shift); returns the sum.
LAMINA_CLONES float row_exp_sum(float* x, float shift, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) {
    const float e = vm::exp(x[j] - shift);
    x[j] = e;
    s += e;
  }
  return s;
}

LAMINA_CLONES void row_scale(float* x, float a, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) x[j] *= a;
}

// x = exp(x - shift) * a
LAMINA_CLONES void row_exp_scaled(float* x, float shift, float a, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) x[j] = vm::exp(x[j] - shift) * a;
}

LAMINA_CLONES float row_dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += a[j] * b[j];
  return s;
}

// dp[j] = keep ? p[j] * (dp[j] - d) : 0, keep as in row_logits.
template <bool HasMask>
LAMINA_INLINE void dsoftmax_impl(const float* p, float* dp, int64_t n, float d, const uint8_t* mask, int64_t mst,
                                 int64_t lim) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    bool keep = j <= lim;
    if constexpr (HasMask) keep = keep && mask[j * mst] != 0;
    const float v = p[j] * (dp[j] - d);
    dp[j] = keep ? v : 0.f;
  }
}
LAMINA_CLONES void row_dsoftmax(const float* p, float* dp, int64_t n, float d, const uint8_t* mask, int64_t mst,
                                int64_t lim) {
  if (mask) dsoftmax_impl<true>(p, dp, n, d, mask, mst, lim);
  else dsoftmax_impl<false>(p, dp, n, d, mask, mst, lim);
}

LAMINA_CLONES void row_add(float* dst, const float* src, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dst[j] += src[j];
}

// ---- geometry ------------------------------------------------------------------------------------

struct Strides3 {
  int64_t b = 0, t = 0, n = 0;
};

// (B, T, heads, D) operand through (batch, time, head) strides, last dimension contiguous.
struct Operand {
  const float* p = nullptr;
  Strides3 s;
  const float* at(int64_t b, int64_t t, int64_t n) const { return p + b * s.b + t * s.t + n * s.n; }
};
struct OutOperand {
  float* p = nullptr;
  Strides3 s;
  float* at(int64_t b, int64_t t, int64_t n) const { return p + b * s.b + t * s.t + n * s.n; }
};

struct Geom {
  int64_t B, Tq, Tk, N, Nkv, H, Hv, G;  // G = N / Nkv query heads per key/value head
  float scale;
  bool causal;
  Operand q, k, v;
  const float* bias = nullptr;
  int64_t bs[4] = {0, 0, 0, 0};  // bias strides over (B, N, Tq, Tk); 0 = broadcast
  const uint8_t* mask = nullptr;
  int64_t ms[4] = {0, 0, 0, 0};
  int64_t rb = 1;  // query rows per block

  int64_t blocks() const { return (Tq + rb - 1) / rb; }
  // keys a block of rows [r0, r1) computes: under `causal`, those not masked for its last row
  int64_t key_end(int64_t r1) const { return causal ? std::min(r1, Tk) : Tk; }
};

Strides3 strides3(const char* op, const char* name, const Shape& s) {
  LAMINA_CHECK(s.size() == 3, op << ": expected 3 element strides (batch, time, head) for " << name << ", received "
                                 << shape_str(s));
  LAMINA_CHECK(s[0] >= 0 && s[1] >= 0 && s[2] >= 0,
               op << ": the strides of " << name << " must be >= 0, received " << shape_str(s));
  return {s[0], s[1], s[2]};
}

// Checks that a (B, T, heads, D) operand with these strides lies inside its buffer and, when it
// is written, that no two elements share a place.
void check_operand(const char* op, const char* name, const Buffer& buf, int64_t B, int64_t T, int64_t heads,
                   int64_t D, const Strides3& s, bool written) {
  check_dtype(op, name, buf, F32);
  if (B == 0 || T == 0 || heads == 0 || D == 0) return;
  const int64_t last = (B - 1) * s.b + (T - 1) * s.t + (heads - 1) * s.n + (D - 1);
  LAMINA_CHECK(last < buf.numel, op << ": " << name << " of shape (" << B << ", " << T << ", " << heads << ", " << D
                                    << ") with strides (" << s.b << ", " << s.t << ", " << s.n << ", 1) reaches element "
                                    << last << " of a buffer of " << buf.numel);
  if (!written) return;
  // dimensions of size > 1 sorted by stride: each stride must pass the extent of the smaller ones
  std::vector<std::pair<int64_t, int64_t>> dims = {{1, D}, {s.n, heads}, {s.t, T}, {s.b, B}};
  std::sort(dims.begin(), dims.end());
  int64_t extent = 0;
  for (auto [stride, size] : dims) {
    if (size == 1) continue;
    LAMINA_CHECK(stride > extent,
                 op << ": the output " << name << " of shape (" << B << ", " << T << ", " << heads << ", " << D
                    << ") with strides (" << s.b << ", " << s.t << ", " << s.n << ", 1) has overlapping elements");
    extent += (size - 1) * stride;
  }
}

// bias (float32) or mask (bool) read through strides over (B, N, Tq, Tk).
void check_scores_operand(const char* op, const char* name, const Buffer& buf, DType dt, const Geom& g,
                          const Shape& st, int64_t* out) {
  check_dtype(op, name, buf, dt);
  LAMINA_CHECK(st.size() == 4, op << ": expected 4 element strides (batch, head, query, key) for the " << name
                                  << ", received " << shape_str(st));
  const int64_t dims[4] = {g.B, g.N, g.Tq, g.Tk};
  int64_t last = 0;
  bool empty = false;
  for (int i = 0; i < 4; ++i) {
    LAMINA_CHECK(st[i] >= 0, op << ": the " << name << " strides must be >= 0, received " << shape_str(st));
    out[i] = st[i];
    empty = empty || dims[i] == 0;
    last += dims[i] > 0 ? (dims[i] - 1) * st[i] : 0;
  }
  LAMINA_CHECK(empty || last < buf.numel, op << ": the " << name << " read with strides " << shape_str(st)
                                             << " over the scores' shape (" << g.B << ", " << g.N << ", " << g.Tq
                                             << ", " << g.Tk << ") reaches element " << last << " of a buffer of "
                                             << buf.numel);
}

Geom make_geom(const char* op, const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* bias,
               const Buffer* mask, int64_t B, int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H, int64_t Hv,
               double scale, bool causal, const Shape& q_st, const Shape& k_st, const Shape& v_st,
               const Shape& bias_st, const Shape& mask_st) {
  LAMINA_CHECK(B >= 0 && Tq >= 0 && Tk >= 0 && N >= 0 && Nkv >= 0 && H >= 0 && Hv >= 0,
               op << ": sizes must be >= 0, received B=" << B << ", Tq=" << Tq << ", Tk=" << Tk << ", N=" << N
                  << ", Nkv=" << Nkv << ", H=" << H << ", Hv=" << Hv);
  LAMINA_CHECK((N == 0 && Nkv == 0) || (Nkv > 0 && N % Nkv == 0),
               op << ": the query's " << N << " heads must be a multiple of the key/value's " << Nkv << " heads");
  Geom g{B, Tq, Tk, N, Nkv, H, Hv, Nkv ? N / Nkv : 1, float(scale), causal, {}, {}, {}};
  g.q = {q.data<float>(), strides3(op, "query", q_st)};
  g.k = {k.data<float>(), strides3(op, "key", k_st)};
  g.v = {v.data<float>(), strides3(op, "value", v_st)};
  check_operand(op, "query", q, B, Tq, N, H, g.q.s, false);
  check_operand(op, "key", k, B, Tk, Nkv, H, g.k.s, false);
  check_operand(op, "value", v, B, Tk, Nkv, Hv, g.v.s, false);
  if (bias) {
    check_scores_operand(op, "bias", *bias, F32, g, bias_st, g.bs);
    g.bias = bias->data<float>();
  }
  if (mask) {
    check_scores_operand(op, "mask", *mask, BOOL, g, mask_st, g.ms);
    g.mask = mask->data<uint8_t>();
  }
  return g;
}

// Query rows per block: the block's scores (rows x Tk) about 256 KB, at most 128 rows (64 under
// `causal`, so that blocks skip more of the masked keys), and down to 8 rows while `head_tasks`
// (batch, head) pairs times the blocks are fewer than the threads.
int64_t rows_per_block(const Geom& g, int64_t head_tasks, int threads) {
  int64_t rb = std::clamp<int64_t>((int64_t(1) << 16) / std::max<int64_t>(g.Tk, 1), 1, g.causal ? 64 : 128);
  if (rb >= 8) rb -= rb % 8;
  while (rb > 8 && head_tasks * ((g.Tq + rb - 1) / rb) < threads) rb = std::max<int64_t>(8, rb / 2);
  return std::max<int64_t>(1, std::min(rb, std::max<int64_t>(g.Tq, 1)));
}

int team_size(double fma, int64_t tasks) {
  if (fma < kMinParallelFma || tasks < 2) return 1;
  return int(std::max<int64_t>(1, std::min<int64_t>(num_threads(), tasks)));
}

// Runs body(task, thread) for task in [0, tasks) on `team` threads, dynamically scheduled (causal
// blocks differ in cost); the first exception is raised again once the loop has finished.
template <class Body>
void run_tasks(int64_t tasks, int team, Body body) {
  std::exception_ptr err;
  std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1) num_threads(team) if (team > 1)
  for (int64_t t = 0; t < tasks; ++t) {
    if (failed.load(std::memory_order_relaxed)) continue;
    try {
      body(t, omp_get_thread_num());
    } catch (...) {
#pragma omp critical(lamina_attention_error)
      if (!failed.exchange(true)) err = std::current_exception();
    }
  }
  if (err) std::rethrow_exception(err);
}

// Logits of query rows [r0, r1) of head n of batch b over keys [0, kend), into s (row stride Tk):
// scale * Q K^T, then the bias, the mask and the causal mask.
void block_logits(const Geom& g, int64_t b, int64_t n, int64_t r0, int64_t r1, int64_t kend, float* s) {
  const int64_t rows = r1 - r0, kvh = n / g.G;
  sgemm(false, true, rows, kend, g.H, g.scale, g.q.at(b, r0, n), g.q.s.t, g.k.at(b, 0, kvh), g.k.s.t, 0.f, s, g.Tk);
  const bool any_causal = g.causal && r0 < kend - 1;  // some row of the block masks some computed key
  if (!g.bias && !g.mask && !any_causal) return;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t t = r0 + i;
    const float* br = g.bias ? g.bias + b * g.bs[0] + n * g.bs[1] + t * g.bs[2] : nullptr;
    const uint8_t* mr = g.mask ? g.mask + b * g.ms[0] + n * g.ms[1] + t * g.ms[2] : nullptr;
    row_logits(s + i * g.Tk, kend, br, g.bs[3], mr, g.ms[3], g.causal ? t : kend);
  }
}

// The keys a block's softmax and P V must cover: kend, or all Tk when a row's probability of the
// causally masked keys beyond kend, exp(masked - shift), is not 0 (its masked tail is then filled in).
int64_t block_width(const Geom& g, int64_t rows, int64_t kend, float* s, const float* shift) {
  if (kend == g.Tk) return kend;
  bool tail = false;
  for (int64_t i = 0; i < rows && !tail; ++i) tail = vm::exp(kMasked - shift[i]) != 0.f;
  if (!tail) return kend;
  for (int64_t i = 0; i < rows; ++i) std::fill(s + i * g.Tk + kend, s + (i + 1) * g.Tk, kMasked);
  return g.Tk;
}

}  // namespace

// ---- forward ---------------------------------------------------------------------------------

// out = softmax(scale Q K^T + bias, masked) V; stats (B, N, Tq, 2), when given, receives each
// row's softmax max and 1 / sum for attention_backward.
void attention_forward(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* bias, const Buffer* mask,
                       Buffer& out, Buffer* stats, int64_t B, int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H,
                       int64_t Hv, double scale, bool causal, const Shape& q_strides, const Shape& k_strides,
                       const Shape& v_strides, const Shape& out_strides, const Shape& bias_strides,
                       const Shape& mask_strides) {
  const char* op = "attention_forward";
  Geom g = make_geom(op, q, k, v, bias, mask, B, Tq, Tk, N, Nkv, H, Hv, scale, causal, q_strides, k_strides,
                     v_strides, bias_strides, mask_strides);
  const OutOperand o{out.data<float>(), strides3(op, "output", out_strides)};
  check_operand(op, "output", out, B, Tq, N, Hv, o.s, true);
  if (stats) check_buffer(op, "stats", *stats, {B, N, Tq, 2}, F32);
  float* st = stats ? stats->data<float>() : nullptr;
  if (B == 0 || N == 0 || Tq == 0) return;

  const double fma = double(B) * N * Tq * Tk * double(H + Hv);
  g.rb = rows_per_block(g, B * N, fma < kMinParallelFma ? 1 : num_threads());
  const int64_t nblk = g.blocks(), tasks = B * N * nblk;
  const int team = team_size(fma, tasks);
  const int64_t per_thread = g.rb * std::max<int64_t>(Tk, 1) + g.rb;
  Scratch scratch(per_thread * team);  // allocated outside the region: nothing may throw inside

  run_tasks(tasks, team, [&](int64_t task, int tid) {
    const int64_t b = task / (N * nblk), n = task / nblk % N, blk = task % nblk;
    const int64_t r0 = blk * g.rb, r1 = std::min(Tq, r0 + g.rb), rows = r1 - r0;
    float* s = scratch.p + tid * per_thread;
    float* mx = s + g.rb * std::max<int64_t>(Tk, 1);
    if (Tk == 0) {  // softmax over no keys: the output is zeros (as the empty contraction)
      for (int64_t t = r0; t < r1; ++t) std::fill(o.at(b, t, n), o.at(b, t, n) + Hv, 0.f);
      if (st) std::fill(st + ((b * N + n) * Tq + r0) * 2, st + ((b * N + n) * Tq + r1) * 2, 0.f);
      return;
    }
    const int64_t kend = g.key_end(r1);
    block_logits(g, b, n, r0, r1, kend, s);
    for (int64_t i = 0; i < rows; ++i) {
      const float m = row_max(s + i * Tk, kend);
      mx[i] = kend < Tk ? std::max(m, kMasked) : m;
    }
    const int64_t kw = block_width(g, rows, kend, s, mx);
    for (int64_t i = 0; i < rows; ++i) {
      float* si = s + i * Tk;
      const float inv = 1.f / row_exp_sum(si, mx[i], kw);
      row_scale(si, inv, kw);
      if (st) {
        st[((b * N + n) * Tq + r0 + i) * 2] = mx[i];
        st[((b * N + n) * Tq + r0 + i) * 2 + 1] = inv;
      }
    }
    sgemm(false, false, rows, Hv, kw, 1.f, s, Tk, g.v.at(b, 0, n / g.G), g.v.s.t, 0.f, o.at(b, r0, n), o.s.t);
  });
}

// ---- backward --------------------------------------------------------------------------------

// From dout (the gradient of out, out's strides): dq, dk, dv (each optional, with q's, k's and v's
// strides) and dlogits (optional, contiguous (B, N, Tq, Tk): the gradient of the masked, biased
// logits, which a bias's gradient sums over its broadcast dimensions). out and stats are the
// forward's.
void attention_backward(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* bias, const Buffer* mask,
                        const Buffer& out, const Buffer& stats, const Buffer& dout, Buffer* dq, Buffer* dk, Buffer* dv,
                        Buffer* dlogits, int64_t B, int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H,
                        int64_t Hv, double scale, bool causal, const Shape& q_strides, const Shape& k_strides,
                        const Shape& v_strides, const Shape& out_strides, const Shape& bias_strides,
                        const Shape& mask_strides) {
  const char* op = "attention_backward";
  Geom g = make_geom(op, q, k, v, bias, mask, B, Tq, Tk, N, Nkv, H, Hv, scale, causal, q_strides, k_strides,
                     v_strides, bias_strides, mask_strides);
  const Operand o{out.data<float>(), strides3(op, "output", out_strides)};
  const Operand dO{dout.data<float>(), o.s};
  check_operand(op, "output", out, B, Tq, N, Hv, o.s, false);
  check_operand(op, "output gradient", dout, B, Tq, N, Hv, o.s, false);
  check_buffer(op, "stats", stats, {B, N, Tq, 2}, F32);
  const OutOperand dQ{dq ? dq->data<float>() : nullptr, g.q.s}, dK{dk ? dk->data<float>() : nullptr, g.k.s},
      dV{dv ? dv->data<float>() : nullptr, g.v.s};
  if (dq) check_operand(op, "query gradient", *dq, B, Tq, N, H, g.q.s, true);
  if (dk) check_operand(op, "key gradient", *dk, B, Tk, Nkv, H, g.k.s, true);
  if (dv) check_operand(op, "value gradient", *dv, B, Tk, Nkv, Hv, g.v.s, true);
  if (dlogits) check_buffer(op, "logits gradient", *dlogits, {B, N, Tq, Tk}, F32);
  if (B == 0 || Nkv == 0) return;
  const float* st = stats.data<float>();
  float* dl = dlogits ? dlogits->data<float>() : nullptr;

  // Tasks: (batch, key/value head, part); a part is a contiguous run of the (head in group,
  // row block) items of its key/value head. Parts > 1 only when B * Nkv tasks leave threads idle.
  const double fma = double(B) * N * Tq * Tk * double(2 * H + 2 * Hv);
  const int threads = fma < kMinParallelFma ? 1 : num_threads();
  g.rb = rows_per_block(g, B * N, threads);
  const int64_t nblk = g.blocks(), items = g.G * nblk, heads = B * Nkv;
  const int64_t parts = heads < threads && items > 1 ? std::min<int64_t>(items, (threads + heads - 1) / heads) : 1;
  const int64_t tasks = heads * parts;
  const int team = team_size(fma, tasks);
  const int64_t Tk1 = std::max<int64_t>(Tk, 1);
  const int64_t per_thread = 2 * g.rb * Tk1 + 3 * g.rb;
  Scratch scratch(per_thread * team);
  // per-task dK / dV accumulators when a key/value head's items are split over parts
  const int64_t acc_k = dk ? Tk * H : 0, acc_v = dv ? Tk * Hv : 0, acc = parts > 1 ? acc_k + acc_v : 0;
  Scratch accs(acc * tasks);

  run_tasks(tasks, team, [&](int64_t task, int tid) {
    const int64_t bh = task / parts, part = task % parts, b = bh / Nkv, kvh = bh % Nkv;
    const int64_t i0 = items * part / parts, i1 = items * (part + 1) / parts;
    float* s = scratch.p + tid * per_thread;  // logits, then P
    float* dp = s + g.rb * Tk1;               // dP, then dS
    float* dsum = dp + g.rb * Tk1;            // rowsum(dO * O)
    float* shift = dsum + g.rb;               // the rows' softmax max
    float* inv = shift + g.rb;                // and 1 / sum
    // where this task's dK / dV go: (rows of Tk, stride) of its own accumulators or dK / dV
    float* kacc = nullptr;
    float* vacc = nullptr;
    int64_t kld = 0, vld = 0;
    if (parts > 1) {
      kacc = dk ? accs.p + task * acc : nullptr;
      vacc = dv ? accs.p + task * acc + acc_k : nullptr;
      kld = H, vld = Hv;
      if (kacc) std::fill(kacc, kacc + acc_k, 0.f);
      if (vacc) std::fill(vacc, vacc + acc_v, 0.f);
    } else {
      kacc = dk ? dK.at(b, 0, kvh) : nullptr;
      vacc = dv ? dV.at(b, 0, kvh) : nullptr;
      kld = g.k.s.t, vld = g.v.s.t;
      for (int64_t t = 0; t < Tk; ++t) {
        if (kacc) std::fill(kacc + t * kld, kacc + t * kld + H, 0.f);
        if (vacc) std::fill(vacc + t * vld, vacc + t * vld + Hv, 0.f);
      }
    }
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t n = kvh * g.G + it / nblk, blk = it % nblk;
      const int64_t r0 = blk * g.rb, r1 = std::min(Tq, r0 + g.rb), rows = r1 - r0;
      if (Tk == 0) {  // no keys: the output did not depend on the query
        if (dq) for (int64_t t = r0; t < r1; ++t) std::fill(dQ.at(b, t, n), dQ.at(b, t, n) + H, 0.f);
        continue;
      }
      const int64_t kend = g.key_end(r1);
      block_logits(g, b, n, r0, r1, kend, s);
      const float* srow = st + ((b * N + n) * Tq + r0) * 2;
      for (int64_t i = 0; i < rows; ++i) shift[i] = srow[2 * i], inv[i] = srow[2 * i + 1];
      const int64_t kw = block_width(g, rows, kend, s, shift);
      for (int64_t i = 0; i < rows; ++i) {
        row_exp_scaled(s + i * Tk, shift[i], inv[i], kw);  // P
        dsum[i] = row_dot(dO.at(b, r0 + i, n), o.at(b, r0 + i, n), Hv);
      }
      // dP = dO V^T over the keys kw
      sgemm(false, true, rows, kw, Hv, 1.f, dO.at(b, r0, n), o.s.t, g.v.at(b, 0, kvh), g.v.s.t, 0.f, dp, Tk);
      // dV += P^T dO
      if (vacc) sgemm(true, false, kw, Hv, rows, 1.f, s, Tk, dO.at(b, r0, n), o.s.t, 1.f, vacc, vld);
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t t = r0 + i;
        const uint8_t* mr = g.mask ? g.mask + b * g.ms[0] + n * g.ms[1] + t * g.ms[2] : nullptr;
        row_dsoftmax(s + i * Tk, dp + i * Tk, kw, dsum[i], mr, g.ms[3], g.causal ? t : kw);
        if (dl) {
          float* d = dl + ((b * N + n) * Tq + t) * Tk;
          std::copy(dp + i * Tk, dp + i * Tk + kw, d);
          std::fill(d + kw, d + Tk, 0.f);
        }
      }
      // dS is 0 beyond kend (those keys are causally masked)
      if (kacc) sgemm(true, false, kend, H, rows, g.scale, dp, Tk, g.q.at(b, r0, n), g.q.s.t, 1.f, kacc, kld);
      if (dq) sgemm(false, false, rows, H, kend, g.scale, dp, Tk, g.k.at(b, 0, kvh), g.k.s.t, 0.f, dQ.at(b, r0, n),
                    dQ.s.t);
    }
  });
  if (parts == 1 || !(dk || dv)) return;
  // sum the parts' accumulators into dK / dV, one (batch, head, key) row at a time
  const int team2 = team_size(double(heads) * parts * (acc_k + acc_v), heads * Tk);
  run_tasks(heads * Tk, team2, [&](int64_t row, int) {
    const int64_t bh = row / Tk, t = row % Tk, b = bh / Nkv, kvh = bh % Nkv;
    for (int64_t p = 0; p < parts; ++p) {
      const float* a = accs.p + (bh * parts + p) * acc;
      if (dk) {
        float* d = dK.at(b, t, kvh);
        if (p == 0) std::copy(a + t * H, a + (t + 1) * H, d);
        else row_add(d, a + t * H, H);
      }
      if (dv) {
        float* d = dV.at(b, t, kvh);
        const float* av = a + acc_k + t * Hv;
        if (p == 0) std::copy(av, av + Hv, d);
        else row_add(d, av, Hv);
      }
    }
  });
}

void bind_attention(py::module_& m) {
  def_kernel(m, "attention_forward", &attention_forward, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("bias"),
             py::arg("mask"), py::arg("out"), py::arg("stats"), py::arg("B"), py::arg("Tq"), py::arg("Tk"), py::arg("N"),
             py::arg("Nkv"), py::arg("H"), py::arg("Hv"), py::arg("scale"), py::arg("causal"), py::arg("q_strides"),
             py::arg("k_strides"), py::arg("v_strides"), py::arg("out_strides"), py::arg("bias_strides"),
             py::arg("mask_strides"));
  def_kernel(m, "attention_backward", &attention_backward, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("bias"),
             py::arg("mask"), py::arg("out"), py::arg("stats"), py::arg("dout"), py::arg("dq"), py::arg("dk"),
             py::arg("dv"), py::arg("dlogits"), py::arg("B"), py::arg("Tq"), py::arg("Tk"), py::arg("N"),
             py::arg("Nkv"), py::arg("H"), py::arg("Hv"), py::arg("scale"), py::arg("causal"), py::arg("q_strides"),
             py::arg("k_strides"), py::arg("v_strides"), py::arg("out_strides"), py::arg("bias_strides"),
             py::arg("mask_strides"));
}

}  // namespace lamina
