// Random kernels on a counter-based generator: Philox-4x32-10 (Salmon et al., "Parallel random
// numbers: as easy as 1, 2, 3", SC'11).
//
// A draw is keyed by (seed, counter): the 64-bit seed is the Philox key, the 64-bit counter (one
// per call, from a SeedGenerator) fills two counter words, and the other two hold the index of a
// block of four outputs (plus a retry number for truncated_normal). Element i always comes from
// block i / 4, lane i % 4, whatever thread computes it, so a draw depends only on the seed, the
// counter and the shape: not on the thread count.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "broadcast_loops.h"
#include "common.h"
#include "device.h"
#include "philox.h"
#include "random_dists.h"
#include "simd.h"
#include "sort_checks.h"

namespace py = pybind11;

namespace lamina {
namespace {

using philox::Block;  // the generator (csrc/philox.h), shared with the CUDA module
using philox::philox4x32_10;
using philox::Stream;

constexpr double k2pow32inv = 2.3283064365386963e-10;  // 2^-32

// ---- batched Philox ------------------------------------------------------------------------------
// The kernels draw 16 blocks (64 words) at a time in structure-of-arrays form, which vectorises
// (pmuludq); the batch function is compiled for AVX-512, AVX2 and the baseline, picked at load
// time. The word stream is in element order: word 4 * b + lane is lane `lane` of block b.
constexpr int kBatchBlocks = 16, kBatchWords = 4 * kBatchBlocks;

LAMINA_CLONES void philox_batch(const Stream& s, uint64_t b0, uint32_t attempt, uint32_t* words) {
  uint32_t c0[kBatchBlocks], c1[kBatchBlocks], c2[kBatchBlocks], c3[kBatchBlocks];
  for (int i = 0; i < kBatchBlocks; ++i) {
    const uint64_t b = b0 + uint64_t(i);
    c0[i] = uint32_t(b);
    c1[i] = uint32_t(b >> 32) | (attempt << 8);
    c2[i] = s.c2;
    c3[i] = s.c3;
  }
  uint32_t k0 = s.k0, k1 = s.k1;
  for (int round = 0; round < 10; ++round) {
#pragma omp simd
    for (int i = 0; i < kBatchBlocks; ++i) {
      const uint64_t p0 = uint64_t(0xD2511F53u) * c0[i];
      const uint64_t p1 = uint64_t(0xCD9E8D57u) * c2[i];
      const uint32_t n0 = uint32_t(p1 >> 32) ^ c1[i] ^ k0;
      const uint32_t n2 = uint32_t(p0 >> 32) ^ c3[i] ^ k1;
      c1[i] = uint32_t(p1);
      c3[i] = uint32_t(p0);
      c0[i] = n0;
      c2[i] = n2;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  for (int i = 0; i < kBatchBlocks; ++i) {
    words[4 * i] = c0[i];
    words[4 * i + 1] = c1[i];
    words[4 * i + 2] = c2[i];
    words[4 * i + 3] = c3[i];
  }
}

// Calls f(e0, e1, words, base) for consecutive ranges of the n elements, element e using words
// [(e - base) * WPE, (e - base + 1) * WPE) of `words` (WPE = 32-bit words per element, 1 or 2).
// Threads get chunks starting at multiples of 16 elements; values depend only on e.
template <int WPE, class F>
void for_each_batch(const Stream& s, int64_t n, F f) {
  static_assert(WPE == 1 || WPE == 2, "1 or 2 words per element");
  constexpr int64_t per_batch = kBatchWords / WPE;
  for_each_chunk(n, [&](int64_t start, int64_t m) {
    alignas(64) uint32_t words[kBatchWords];
    const int64_t end = start + m;
    for (int64_t base = start; base < end; base += per_batch) {
      philox_batch(s, uint64_t(base * WPE / 4), 0, words);
      f(base, std::min(end, base + per_batch), words, base);
    }
  });
}

// float in [0, 1) with 24 random bits
inline float unit_float(uint32_t w) { return float(w >> 8) * 5.9604644775390625e-08f; }

// Two standard normals from two 32-bit words (Box-Muller; u1 in (0, 1] so log never sees 0;
// the tails reach sqrt(2 * 32 ln 2) = 6.66 standard deviations).
inline void box_muller(uint32_t a, uint32_t b, float& z0, float& z1) {
  const float u1 = (float(a) + 1.f) * 2.3283064365386963e-10f;
  const float u2 = float(b) * 2.3283064365386963e-10f;
  const float r = std::sqrt(-2.f * std::log(u1));
  const float t = 6.283185307179586f * u2;
  z0 = r * std::cos(t);
  z1 = r * std::sin(t);
}

void random_uniform(uint64_t seed, uint64_t counter, double lo, double hi, Buffer& out) {
  check_dtype("uniform", "out", out, F32);
  LAMINA_CHECK(lo < hi, "uniform: minval must be below maxval, received minval=" << lo << ", maxval=" << hi);
  const Stream s(seed, counter);
  float* o = out.data<float>();
  const float flo = float(lo), fhi = float(hi), width = float(hi - lo);
  const float below = std::nextafter(fhi, flo);
  for_each_batch<1>(s, out.numel, [&](int64_t e0, int64_t e1, const uint32_t* w, int64_t base) {
#pragma omp simd
    for (int64_t e = e0; e < e1; ++e) {
      const float v = flo + width * unit_float(w[e - base]);
      o[e] = v >= fhi ? below : v;  // [minval, maxval) even after rounding
    }
  });
}

void random_normal(uint64_t seed, uint64_t counter, double mean, double stddev, bool truncated, Buffer& out) {
  const char* op = truncated ? "truncated_normal" : "normal";
  check_dtype(op, "out", out, F32);
  const Stream s(seed, counter);
  float* o = out.data<float>();
  const float fm = float(mean), fs = float(stddev);
  for_each_batch<1>(s, out.numel, [&](int64_t e0, int64_t e1, const uint32_t* w, int64_t base) {
    float z[kBatchWords];
    for (int j = 0; j < kBatchWords; j += 2) box_muller(w[j], w[j + 1], z[j], z[j + 1]);
    for (int64_t e = e0; e < e1; ++e) {
      float v = z[e - base];
      // truncated: a value beyond two standard deviations is drawn again from retry k of its
      // block (same lane), until one falls inside
      for (uint32_t attempt = 1; truncated && std::fabs(v) >= 2.f && attempt < (1u << 24); ++attempt) {
        const int lane = int(e & 3);
        const Block r = s.block(uint64_t(e / 4), attempt);
        float a0, a1;
        box_muller(r.v[lane & 2], r.v[(lane & 2) + 1], a0, a1);
        v = (lane & 1) ? a1 : a0;
      }
      o[e] = fm + fs * v;
    }
  });
}

// Integers uniform in [lo, hi): a 64-bit draw (two words) mapped by a 128-bit multiply
// (bias below range / 2^64).
void random_randint(uint64_t seed, uint64_t counter, int64_t lo, int64_t hi, Buffer& out) {
  LAMINA_CHECK(lo < hi, "randint: minval must be below maxval, received minval=" << lo << ", maxval=" << hi);
  LAMINA_CHECK(out.dtype == I32 || out.dtype == I64, "randint: output must be int32 or int64");
  if (out.dtype == I32)
    LAMINA_CHECK(lo >= INT32_MIN && hi - 1 <= INT32_MAX, "randint: range [" << lo << ", " << hi << ") does not fit int32");
  const Stream s(seed, counter);
  const uint64_t range = uint64_t(hi) - uint64_t(lo);
  auto run = [&](auto* o) {
    using T = std::remove_pointer_t<decltype(o)>;
    for_each_batch<2>(s, out.numel, [&](int64_t e0, int64_t e1, const uint32_t* w, int64_t base) {
      for (int64_t e = e0; e < e1; ++e) {
        const uint64_t r = (uint64_t(w[2 * (e - base)]) << 32) | w[2 * (e - base) + 1];
        const uint64_t off = uint64_t((static_cast<unsigned __int128>(r) * range) >> 64);
        o[e] = T(int64_t(uint64_t(lo) + off));
      }
    });
  };
  if (out.dtype == I32) run(out.data<int32_t>());
  else run(out.data<int64_t>());
}

// ---- gamma and binomial (csrc/random_dists.h: each element its own retry blocks) -----------------

// out = a Gamma(alpha, 1) sample per element (its log with log_space), alpha of out's size.
void random_gamma(uint64_t seed, uint64_t counter, uint32_t salt, const Buffer& ab, bool log_space, Buffer& out) {
  check_dtype("gamma", "alpha", ab, F32);
  check_dtype("gamma", "out", out, F32);
  LAMINA_CHECK(ab.numel == out.numel, "gamma: alpha has " << ab.numel << " values for " << out.numel << " outputs");
  LAMINA_CHECK(salt < 2, "gamma: salt must be 0 or 1, received " << salt);
  const Stream s(seed, counter);
  const float* a = ab.data<float>();
  float* o = out.data<float>();
  for_each_chunk(out.numel, [&](int64_t st, int64_t m) {
    for (int64_t e = st; e < st + m; ++e) {
      const double lg = dists::log_gamma_sample(s, uint64_t(e), salt, double(a[e]));
      o[e] = float(log_space ? lg : std::exp(lg));
    }
  });
}

// out = a Binomial(counts, probs) sample per element, as float32; counts and probs of out's size.
void random_binomial(uint64_t seed, uint64_t counter, const Buffer& nb, const Buffer& pb, Buffer& out) {
  check_dtype("binomial", "counts", nb, F32);
  check_dtype("binomial", "probabilities", pb, F32);
  check_dtype("binomial", "out", out, F32);
  LAMINA_CHECK(nb.numel == out.numel && pb.numel == out.numel,
               "binomial: counts and probabilities need one value per output");
  const Stream s(seed, counter);
  const float* n = nb.data<float>();
  const float* p = pb.data<float>();
  float* o = out.data<float>();
  for_each_chunk(out.numel, [&](int64_t st, int64_t m) {
    for (int64_t e = st; e < st + m; ++e) o[e] = float(dists::binomial_sample(s, uint64_t(e), n[e], p[e]));
  });
}

// ---- dropout ------------------------------------------------------------------------------------
// Keeps an element when its uniform draw is below 1 - rate (Keras), scaling it by 1 / (1 - rate).

void dropout(const Buffer& xb, uint64_t seed, uint64_t counter, double rate, Buffer& ob, Buffer& mb) {
  check_dtype("dropout", "x", xb, F32);
  check_dtype("dropout", "out", ob, F32);
  check_dtype("dropout", "mask", mb, BOOL);
  LAMINA_CHECK(ob.numel == xb.numel && mb.numel == xb.numel, "dropout: x, out and mask sizes differ");
  LAMINA_CHECK(rate >= 0.0 && rate < 1.0, "dropout: rate must be in [0, 1), received " << rate);
  const Stream s(seed, counter);
  const float keep = float(1.0 - rate), scale = float(1.0 / (1.0 - rate));
  const float* x = xb.data<float>();
  float* o = ob.data<float>();
  uint8_t* mk = mb.data<uint8_t>();
  for_each_batch<1>(s, xb.numel, [&](int64_t e0, int64_t e1, const uint32_t* w, int64_t base) {
#pragma omp simd
    for (int64_t e = e0; e < e1; ++e) {
      // branch-free: a random 50% branch would mispredict half the time
      const float k = float(unit_float(w[e - base]) < keep);
      mk[e] = uint8_t(k);
      o[e] = x[e] * (k * scale);
    }
  });
}

// mask = keep ? 1 / (1 - rate) : 0, for noise shapes that broadcast against x.
void dropout_mask(uint64_t seed, uint64_t counter, double rate, Buffer& mb) {
  check_dtype("dropout", "mask", mb, F32);
  LAMINA_CHECK(rate >= 0.0 && rate < 1.0, "dropout: rate must be in [0, 1), received " << rate);
  const Stream s(seed, counter);
  const float keep = float(1.0 - rate), scale = float(1.0 / (1.0 - rate));
  float* mk = mb.data<float>();
  for_each_batch<1>(s, mb.numel, [&](int64_t e0, int64_t e1, const uint32_t* w, int64_t base) {
#pragma omp simd
    for (int64_t e = e0; e < e1; ++e) mk[e] = float(unit_float(w[e - base]) < keep) * scale;
  });
}

void dropout_grad(const Buffer& gb, const Buffer& mb, double scale_d, Buffer& ob) {
  check_dtype("dropout_grad", "grad", gb, F32);
  check_dtype("dropout_grad", "mask", mb, BOOL);
  check_dtype("dropout_grad", "out", ob, F32);
  LAMINA_CHECK(gb.numel == mb.numel && ob.numel == mb.numel, "dropout_grad: grad, mask and out sizes differ");
  const float* g = gb.data<float>();
  const uint8_t* mk = mb.data<uint8_t>();
  float* o = ob.data<float>();
  const float scale = float(scale_d);
  for_each_chunk(gb.numel, [&](int64_t st, int64_t m) {
#pragma omp simd
    for (int64_t i = st; i < st + m; ++i) o[i] = g[i] * (float(mk[i]) * scale);
  });
}

// ---- categorical sampling and shuffling --------------------------------------------------------

// out (B, S): class ids drawn from softmax(logits[b]) by inverse CDF. Rows without any positive
// probability (all -inf or NaN) give 0.
void random_categorical(const Buffer& lb, int64_t B, int64_t K, uint64_t seed, uint64_t counter, int64_t S, Buffer& out) {
  sort_args::check_categorical(lb, B, K, S, out);
  const Stream s(seed, counter);
  const float* x = lb.data<float>();
  auto run = [&](auto* o) {
    using T = std::remove_pointer_t<decltype(o)>;
#pragma omp parallel if (B * std::max(K, S) > kParallelGrain && B > 1)
    {
      std::vector<double> cum(static_cast<size_t>(K));
#pragma omp for schedule(static)
      for (int64_t b = 0; b < B; ++b) {
        const float* row = x + b * K;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t k = 0; k < K; ++k) m = std::max(m, row[k]);
        double acc = 0.0;
        int64_t last = -1;
        for (int64_t k = 0; k < K; ++k) {
          const double p = std::isfinite(m) ? std::exp(double(row[k]) - m) : 0.0;
          if (p > 0.0) { acc += p; last = k; }
          cum[size_t(k)] = acc;
        }
        for (int64_t j = 0; j < S; ++j) {
          const int64_t e = b * S + j;
          const double u = double(s.block(uint64_t(e / 4)).v[e % 4]) * k2pow32inv;
          int64_t k = 0;
          if (last < 0 || !(acc > 0.0)) {
            k = 0;
          } else {
            k = int64_t(std::upper_bound(cum.begin(), cum.end(), u * acc) - cum.begin());
            if (k > last) k = last;
          }
          o[e] = T(k);
        }
      }
    }
  };
  if (out.dtype == I32) run(out.data<int32_t>());
  else run(out.data<int64_t>());
}

// out[o, r, :] = x[o, perm[r], :] with one random permutation of R (sort by 64-bit random keys).
void random_shuffle(const Buffer& xb, int64_t outer, int64_t R, int64_t inner, uint64_t seed, uint64_t counter, Buffer& ob) {
  sort_args::check_shuffle(xb, outer, R, inner, ob);
  const Stream s(seed, counter);
  std::vector<uint64_t> keys(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) {
    const Block w = s.block(uint64_t(r / 2));
    const int j = int(r & 1) * 2;
    keys[size_t(r)] = (uint64_t(w.v[j]) << 32) | w.v[j + 1];
  }
  std::vector<int64_t> perm(static_cast<size_t>(R));
  std::iota(perm.begin(), perm.end(), int64_t(0));
  std::sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) {
    return keys[size_t(a)] < keys[size_t(b)] || (keys[size_t(a)] == keys[size_t(b)] && a < b);
  });
  const size_t es = dtype_size(xb.dtype), row = size_t(inner) * es;
  const char* x = static_cast<const char*>(xb.ptr);
  char* o = static_cast<char*>(ob.ptr);
#pragma omp parallel for if (xb.numel > kParallelGrain && outer * R > 1) schedule(static)
  for (int64_t t = 0; t < outer * R; ++t) {
    const int64_t oi = t / R, r = t % R;
    std::memcpy(o + size_t(t) * row, x + size_t(oi * R + perm[size_t(r)]) * row, row);
  }
}

}  // namespace

void bind_random(py::module_& m) {
  m.def("philox4x32", [](uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
    Block b = philox4x32_10(c0, c1, c2, c3, k0, k1);
    return py::make_tuple(b.v[0], b.v[1], b.v[2], b.v[3]);
  });
  def_kernel(m, "random_uniform", &random_uniform);
  def_kernel(m, "random_normal", &random_normal);
  def_kernel(m, "random_randint", &random_randint);
  def_kernel(m, "random_categorical", &random_categorical);
  def_kernel(m, "random_shuffle", &random_shuffle);
  def_kernel(m, "random_gamma", &random_gamma);
  def_kernel(m, "random_binomial", &random_binomial);
  def_kernel(m, "dropout", &dropout);
  def_kernel(m, "dropout_mask", &dropout_mask);
  def_kernel(m, "dropout_grad", &dropout_grad);
}

}  // namespace lamina
