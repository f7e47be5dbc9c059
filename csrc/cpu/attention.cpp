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
// dtypes: float32 throughout, or bfloat16 compute (mixed precision) when Q is bfloat16 (K, V, O,
// dO, dQ, dK, dV must then be too; a TypeError else; module.cpp lists both kernels in
// BF16_KERNELS so that backend/device.py passes bfloat16 buffers through): every product takes
// bfloat16 operands with float32 sums (bf16gemm / bf16gemm_out, gemm_bf16.cpp; AVX512-BF16 where
// the CPU has it, else widened to float32) -- Q K^T (scaled after, in float32), P V and P^T dO
// with P rounded, dO V^T, dS K and dS^T Q with dS rounded -- while the logits, the softmax, its
// statistics, dP, dS and rowsum(dO * O) stay float32. O is rounded once from the product's sums,
// dQ once from scale * dS K; dK and dV accumulate in float32 (per thread, or per task when a
// key/value head is split over parts, summed afterwards) and are rounded once at the end. The
// bias, the statistics and dlogits are float32 in both.
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
#include <type_traits>
#include <vector>

#include "attention_checks.h"
#include "common.h"
#include "conv_common.h"
#include "device.h"
#include "gemm.h"
#include "gemm_bf16.h"
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

// bfloat16 compute: the rounded product operands and outputs, and the dot of two bfloat16 rows.
LAMINA_CLONES void row_round(uint16_t* dst, const float* src, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dst[j] = f32_to_bf16(src[j]);
}
// dst = bf16(src * a)
LAMINA_CLONES void row_round_scaled(uint16_t* dst, const float* src, float a, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dst[j] = f32_to_bf16(src[j] * a);
}
LAMINA_CLONES float row_dot(const uint16_t* a, const uint16_t* b, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += bf16_to_f32(a[j]) * bf16_to_f32(b[j]);
  return s;
}

// ---- geometry ------------------------------------------------------------------------------------

using attention_args::Strides3;

// (B, T, heads, D) operand through (batch, time, head) strides, last dimension contiguous; E is
// float (float32) or uint16_t (bfloat16 bits).
template <class E>
struct Operand {
  const E* p = nullptr;
  Strides3 s;
  const E* at(int64_t b, int64_t t, int64_t n) const { return p + b * s.b + t * s.t + n * s.n; }
};
template <class E>
struct OutOperand {
  E* p = nullptr;
  Strides3 s;
  E* at(int64_t b, int64_t t, int64_t n) const { return p + b * s.b + t * s.t + n * s.n; }
};

template <class E>
struct Geom {
  int64_t B, Tq, Tk, N, Nkv, H, Hv, G;  // G = N / Nkv query heads per key/value head
  float scale;
  bool causal;
  Operand<E> q, k, v;
  const float* bias = nullptr;
  int64_t bs[4] = {0, 0, 0, 0};  // bias strides over (B, N, Tq, Tk); 0 = broadcast
  const uint8_t* mask = nullptr;
  int64_t ms[4] = {0, 0, 0, 0};
  int64_t rb = 1;  // query rows per block

  int64_t blocks() const { return (Tq + rb - 1) / rb; }
  // keys a block of rows [r0, r1) computes: under `causal`, those not masked for its last row
  int64_t key_end(int64_t r1) const { return causal ? std::min(r1, Tk) : Tk; }
};

// The geometry of a call whose arguments check_forward / check_backward (attention_checks.h) passed.
template <class E>
Geom<E> make_geom(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* bias, const Buffer* mask,
                  int64_t B, int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H, int64_t Hv, double scale,
                  bool causal, const attention_args::Layout& L) {
  Geom<E> g{B, Tq, Tk, N, Nkv, H, Hv, Nkv ? N / Nkv : 1, float(scale), causal, {}, {}, {}};
  g.q = {q.data<E>(), L.q};
  g.k = {k.data<E>(), L.k};
  g.v = {v.data<E>(), L.v};
  if (bias) {
    std::copy(L.bs, L.bs + 4, g.bs);
    g.bias = bias->data<float>();
  }
  if (mask) {
    std::copy(L.ms, L.ms + 4, g.ms);
    g.mask = mask->data<uint8_t>();
  }
  return g;
}

// Query rows per block: the block's scores (rows x Tk) about 256 KB, at most 128 rows (64 under
// `causal`, so that blocks skip more of the masked keys), and down to 8 rows while `head_tasks`
// (batch, head) pairs times the blocks are fewer than the threads.
template <class E>
int64_t rows_per_block(const Geom<E>& g, int64_t head_tasks, int threads) {
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
// scale * Q K^T (bfloat16: the product's float32 sums, then scaled), then the bias, the mask and
// the causal mask.
template <class E>
void block_logits(const Geom<E>& g, int64_t b, int64_t n, int64_t r0, int64_t r1, int64_t kend, float* s) {
  const int64_t rows = r1 - r0, kvh = n / g.G;
  if constexpr (std::is_same_v<E, float>) {
    sgemm(false, true, rows, kend, g.H, g.scale, g.q.at(b, r0, n), g.q.s.t, g.k.at(b, 0, kvh), g.k.s.t, 0.f, s,
          g.Tk);
  } else {
    bf16gemm(false, true, rows, kend, g.H, g.q.at(b, r0, n), g.q.s.t, g.k.at(b, 0, kvh), g.k.s.t, false, s, g.Tk);
    for (int64_t i = 0; i < rows; ++i) row_scale(s + i * g.Tk, g.scale, kend);
  }
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
template <class E>
int64_t block_width(const Geom<E>& g, int64_t rows, int64_t kend, float* s, const float* shift) {
  if (kend == g.Tk) return kend;
  bool tail = false;
  for (int64_t i = 0; i < rows && !tail; ++i) tail = vm::exp(kMasked - shift[i]) != 0.f;
  if (!tail) return kend;
  for (int64_t i = 0; i < rows; ++i) std::fill(s + i * g.Tk + kend, s + (i + 1) * g.Tk, kMasked);
  return g.Tk;
}

}  // namespace

// ---- forward ---------------------------------------------------------------------------------

namespace {

template <class E>
void forward_impl(Geom<E>& g, const OutOperand<E>& o, float* st) {
  constexpr bool kBf = std::is_same_v<E, uint16_t>;
  const int64_t B = g.B, Tq = g.Tq, Tk = g.Tk, N = g.N, Hv = g.Hv;
  if (B == 0 || N == 0 || Tq == 0) return;
  const double fma = double(B) * N * Tq * Tk * double(g.H + Hv);
  g.rb = rows_per_block(g, B * N, fma < kMinParallelFma ? 1 : num_threads());
  const int64_t nblk = g.blocks(), tasks = B * N * nblk;
  const int team = team_size(fma, tasks);
  const int64_t Tk1 = std::max<int64_t>(Tk, 1);
  // float32: the logits / P and the rows' max; bfloat16 also P rounded (rb x Tk1 bfloat16) and
  // the float32 sums of P V (rb x Hv)
  const int64_t per_thread = g.rb * Tk1 + g.rb + (kBf ? (g.rb * Tk1 + 1) / 2 + g.rb * Hv : 0);
  Scratch scratch(per_thread * team);  // allocated outside the region: nothing may throw inside

  run_tasks(tasks, team, [&](int64_t task, int tid) {
    const int64_t b = task / (N * nblk), n = task / nblk % N, blk = task % nblk;
    const int64_t r0 = blk * g.rb, r1 = std::min(Tq, r0 + g.rb), rows = r1 - r0;
    float* s = scratch.p + tid * per_thread;
    float* mx = s + g.rb * Tk1;
    if (Tk == 0) {  // softmax over no keys: the output is zeros (as the empty contraction)
      for (int64_t t = r0; t < r1; ++t) std::fill(o.at(b, t, n), o.at(b, t, n) + Hv, E{});
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
    [[maybe_unused]] uint16_t* pb = reinterpret_cast<uint16_t*>(mx + g.rb);  // bfloat16: P rounded
    for (int64_t i = 0; i < rows; ++i) {
      float* si = s + i * Tk;
      const float inv = 1.f / row_exp_sum(si, mx[i], kw);
      if constexpr (kBf) row_round_scaled(pb + i * Tk, si, inv, kw);
      else row_scale(si, inv, kw);
      if (st) {
        st[((b * N + n) * Tq + r0 + i) * 2] = mx[i];
        st[((b * N + n) * Tq + r0 + i) * 2 + 1] = inv;
      }
    }
    if constexpr (kBf) {
      float* c = mx + g.rb + (g.rb * Tk1 + 1) / 2;
      const BF16Output out{o.at(b, r0, n), o.s.t};
      bf16gemm_out(false, false, rows, Hv, kw, pb, Tk, g.v.at(b, 0, n / g.G), g.v.s.t, false, c, Hv, &out);
    } else {
      sgemm(false, false, rows, Hv, kw, 1.f, s, Tk, g.v.at(b, 0, n / g.G), g.v.s.t, 0.f, o.at(b, r0, n), o.s.t);
    }
  });
}

}  // namespace

// out = softmax(scale Q K^T + bias, masked) V; stats (B, N, Tq, 2), when given, receives each
// row's softmax max and 1 / sum for attention_backward. q, k, v and out float32, or all bfloat16.
void attention_forward(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* bias, const Buffer* mask,
                       Buffer& out, Buffer* stats, int64_t B, int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H,
                       int64_t Hv, double scale, bool causal, const Shape& q_strides, const Shape& k_strides,
                       const Shape& v_strides, const Shape& out_strides, const Shape& bias_strides,
                       const Shape& mask_strides) {
  const attention_args::Layout L =
      attention_args::check_forward<Buffer>(q, k, v, bias, mask, out, stats, B, Tq, Tk, N, Nkv, H, Hv, q_strides,
                                            k_strides, v_strides, out_strides, bias_strides, mask_strides);
  auto run = [&](auto tag) {
    using E = decltype(tag);
    Geom<E> g = make_geom<E>(q, k, v, bias, mask, B, Tq, Tk, N, Nkv, H, Hv, scale, causal, L);
    forward_impl<E>(g, OutOperand<E>{out.data<E>(), L.o}, stats ? stats->data<float>() : nullptr);
  };
  if (L.dt == BF16) run(uint16_t{});
  else run(float{});
}

// ---- backward --------------------------------------------------------------------------------

namespace {

template <class E>
void backward_impl(Geom<E>& g, const Operand<E>& o, const Operand<E>& dO, const float* st, const OutOperand<E>& dQ,
                   const OutOperand<E>& dK, const OutOperand<E>& dV, float* dl) {
  constexpr bool kBf = std::is_same_v<E, uint16_t>;
  const int64_t B = g.B, Tq = g.Tq, Tk = g.Tk, N = g.N, Nkv = g.Nkv, H = g.H, Hv = g.Hv;
  const bool dq = dQ.p != nullptr, dk = dK.p != nullptr, dv = dV.p != nullptr;
  if (B == 0 || Nkv == 0) return;

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
  // float32: logits / P, dP / dS, and three per-row values; bfloat16 also P and dS rounded
  // (2 x rb x Tk1 bfloat16) and the float32 sums of dS K (rb x H)
  const int64_t per_thread = 2 * g.rb * Tk1 + 3 * g.rb + (kBf ? g.rb * Tk1 + g.rb * H : 0);
  Scratch scratch(per_thread * team);
  // dK / dV accumulators (float32), per task when a key/value head's items are split over parts;
  // in bfloat16 always (per thread when parts == 1), rounded into dK / dV once at the end (dK
  // then also scaled: the accumulators hold sum dS^T Q)
  const bool own = parts > 1 || kBf;
  const int64_t acc_k = dk ? Tk * H : 0, acc_v = dv ? Tk * Hv : 0, acc = own ? acc_k + acc_v : 0;
  Scratch accs(acc * (parts > 1 ? tasks : team));

  run_tasks(tasks, team, [&](int64_t task, int tid) {
    const int64_t bh = task / parts, part = task % parts, b = bh / Nkv, kvh = bh % Nkv;
    const int64_t i0 = items * part / parts, i1 = items * (part + 1) / parts;
    float* s = scratch.p + tid * per_thread;  // logits, then P
    float* dp = s + g.rb * Tk1;               // dP, then dS
    float* dsum = dp + g.rb * Tk1;            // rowsum(dO * O)
    float* shift = dsum + g.rb;               // the rows' softmax max
    float* inv = shift + g.rb;                // and 1 / sum
    [[maybe_unused]] uint16_t* pb = reinterpret_cast<uint16_t*>(inv + g.rb);  // bfloat16: P rounded
    [[maybe_unused]] uint16_t* dsb = pb + g.rb * Tk1;                          // and dS rounded
    [[maybe_unused]] float* dqc = inv + g.rb + g.rb * Tk1;                     // and dS K's sums
    // where this task's dK / dV go: (rows of Tk, stride) of its own accumulators or dK / dV
    float* kacc = nullptr;
    float* vacc = nullptr;
    int64_t kld = 0, vld = 0;
    if (own) {
      float* a = accs.p + (parts > 1 ? task : tid) * acc;
      kacc = dk ? a : nullptr;
      vacc = dv ? a + acc_k : nullptr;
      kld = H, vld = Hv;
      if (kacc) std::fill(kacc, kacc + acc_k, 0.f);
      if (vacc) std::fill(vacc, vacc + acc_v, 0.f);
    } else if constexpr (!kBf) {
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
        if (dq) for (int64_t t = r0; t < r1; ++t) std::fill(dQ.at(b, t, n), dQ.at(b, t, n) + H, E{});
        continue;
      }
      const int64_t kend = g.key_end(r1);
      block_logits(g, b, n, r0, r1, kend, s);
      const float* srow = st + ((b * N + n) * Tq + r0) * 2;
      for (int64_t i = 0; i < rows; ++i) shift[i] = srow[2 * i], inv[i] = srow[2 * i + 1];
      const int64_t kw = block_width(g, rows, kend, s, shift);
      for (int64_t i = 0; i < rows; ++i) {
        row_exp_scaled(s + i * Tk, shift[i], inv[i], kw);  // P
        if constexpr (kBf) row_round(pb + i * Tk, s + i * Tk, kw);
        dsum[i] = row_dot(dO.at(b, r0 + i, n), o.at(b, r0 + i, n), Hv);
      }
      if constexpr (kBf) {
        // dP = dO V^T over the keys kw; dV += P^T dO
        bf16gemm(false, true, rows, kw, Hv, dO.at(b, r0, n), o.s.t, g.v.at(b, 0, kvh), g.v.s.t, false, dp, Tk);
        if (vacc) bf16gemm(true, false, kw, Hv, rows, pb, Tk, dO.at(b, r0, n), o.s.t, true, vacc, vld);
      } else {
        // dP = dO V^T over the keys kw
        sgemm(false, true, rows, kw, Hv, 1.f, dO.at(b, r0, n), o.s.t, g.v.at(b, 0, kvh), g.v.s.t, 0.f, dp, Tk);
        // dV += P^T dO
        if (vacc) sgemm(true, false, kw, Hv, rows, 1.f, s, Tk, dO.at(b, r0, n), o.s.t, 1.f, vacc, vld);
      }
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t t = r0 + i;
        const uint8_t* mr = g.mask ? g.mask + b * g.ms[0] + n * g.ms[1] + t * g.ms[2] : nullptr;
        row_dsoftmax(s + i * Tk, dp + i * Tk, kw, dsum[i], mr, g.ms[3], g.causal ? t : kw);
        if constexpr (kBf) row_round(dsb + i * Tk, dp + i * Tk, kend);
        if (dl) {
          float* d = dl + ((b * N + n) * Tq + t) * Tk;
          std::copy(dp + i * Tk, dp + i * Tk + kw, d);
          std::fill(d + kw, d + Tk, 0.f);
        }
      }
      // dS is 0 beyond kend (those keys are causally masked)
      if constexpr (kBf) {
        // dK += dS^T Q (scaled at the end); dQ = scale dS K, rounded
        if (kacc) bf16gemm(true, false, kend, H, rows, dsb, Tk, g.q.at(b, r0, n), g.q.s.t, true, kacc, kld);
        if (dq) {
          bf16gemm(false, false, rows, H, kend, dsb, Tk, g.k.at(b, 0, kvh), g.k.s.t, false, dqc, H);
          for (int64_t i = 0; i < rows; ++i) row_round_scaled(dQ.at(b, r0 + i, n), dqc + i * H, g.scale, H);
        }
      } else {
        if (kacc) sgemm(true, false, kend, H, rows, g.scale, dp, Tk, g.q.at(b, r0, n), g.q.s.t, 1.f, kacc, kld);
        if (dq) sgemm(false, false, rows, H, kend, g.scale, dp, Tk, g.k.at(b, 0, kvh), g.k.s.t, 0.f, dQ.at(b, r0, n),
                      dQ.s.t);
      }
    }
    if constexpr (kBf) {  // one key/value head's whole sums: rounded into dK / dV
      if (parts == 1)
        for (int64_t t = 0; t < Tk; ++t) {
          if (kacc) row_round_scaled(dK.at(b, t, kvh), kacc + t * H, g.scale, H);
          if (vacc) row_round(dV.at(b, t, kvh), vacc + t * Hv, Hv);
        }
    }
  });
  if (parts == 1 || !(dk || dv)) return;
  // sum the parts' accumulators into dK / dV, one (batch, head, key) row at a time (bfloat16: in
  // the first part's accumulator, then rounded)
  const int team2 = team_size(double(heads) * parts * (acc_k + acc_v), heads * Tk);
  run_tasks(heads * Tk, team2, [&](int64_t row, int) {
    const int64_t bh = row / Tk, t = row % Tk, b = bh / Nkv, kvh = bh % Nkv;
    float* a0 = accs.p + bh * parts * acc;
    for (int64_t p = 0; p < parts; ++p) {
      const float* a = accs.p + (bh * parts + p) * acc;
      if constexpr (kBf) {
        if (p == 0) continue;
        if (dk) row_add(a0 + t * H, a + t * H, H);
        if (dv) row_add(a0 + acc_k + t * Hv, a + acc_k + t * Hv, Hv);
      } else {
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
    }
    if constexpr (kBf) {
      if (dk) row_round_scaled(dK.at(b, t, kvh), a0 + t * H, g.scale, H);
      if (dv) row_round(dV.at(b, t, kvh), a0 + acc_k + t * Hv, Hv);
    }
  });
}

}  // namespace

// From dout (the gradient of out, out's strides): dq, dk, dv (each optional, with q's, k's and v's
// strides) and dlogits (optional, contiguous (B, N, Tq, Tk): the gradient of the masked, biased
// logits, which a bias's gradient sums over its broadcast dimensions). out and stats are the
// forward's. q, k, v, out, dout, dq, dk, dv float32, or all bfloat16; stats and dlogits float32.
void attention_backward(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* bias, const Buffer* mask,
                        const Buffer& out, const Buffer& stats, const Buffer& dout, Buffer* dq, Buffer* dk, Buffer* dv,
                        Buffer* dlogits, int64_t B, int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H,
                        int64_t Hv, double scale, bool causal, const Shape& q_strides, const Shape& k_strides,
                        const Shape& v_strides, const Shape& out_strides, const Shape& bias_strides,
                        const Shape& mask_strides) {
  const attention_args::Layout L = attention_args::check_backward<Buffer>(
      q, k, v, bias, mask, out, stats, dout, dq, dk, dv, dlogits, B, Tq, Tk, N, Nkv, H, Hv, q_strides, k_strides,
      v_strides, out_strides, bias_strides, mask_strides);
  auto run = [&](auto tag) {
    using E = decltype(tag);
    Geom<E> g = make_geom<E>(q, k, v, bias, mask, B, Tq, Tk, N, Nkv, H, Hv, scale, causal, L);
    const Strides3& os = L.o;
    const OutOperand<E> dQ{dq ? dq->data<E>() : nullptr, g.q.s}, dK{dk ? dk->data<E>() : nullptr, g.k.s},
        dV{dv ? dv->data<E>() : nullptr, g.v.s};
    backward_impl<E>(g, Operand<E>{out.data<E>(), os}, Operand<E>{dout.data<E>(), os}, stats.data<float>(), dQ, dK,
                     dV, dlogits ? dlogits->data<float>() : nullptr);
  };
  if (L.dt == BF16) run(uint16_t{});
  else run(float{});
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
