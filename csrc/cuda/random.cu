// Random kernels and dropout on the device, drawing the CPU module's Philox streams
// (csrc/cpu/random.cpp): element e of a draw always comes from block e / 4, lane e % 4 (randint:
// block e / 2, lanes 2 (e % 2) and the next), so a seed gives the same numbers on every device.
// One thread computes one Philox block and writes the elements it feeds. The float arithmetic
// is spelled out unfused (philox.cuh) to round as the CPU's does. Gamma and binomial draws run
// the CPU's own per-element code (csrc/random_dists.h), one thread an element; categorical draws
// and shuffles are in sort.cu.
#include <cmath>
#include <vector>

#include "bf16.cuh"
#include "gpu.h"
#include "philox.cuh"
#include "../random_dists.h"

namespace lamina {
namespace gpu {

using philox::Block;
using philox::Stream;

namespace {

// Standard normal for element e (lane e % 4 of block `blk` = block e / 4), redrawn from retry
// blocks while beyond two standard deviations when truncated: random.cpp's loop.
PHILOX_HD float normal_value(const Stream& s, int64_t e, float z, bool truncated) {
  float v = z;
  for (uint32_t attempt = 1; truncated && fabsf(v) >= 2.f && attempt < (1u << 24); ++attempt) {
    const int lane = int(e & 3);
    const Block r = s.block(uint64_t(e / 4), attempt);
    float a0, a1;
    philox::box_muller(r.v[lane & 2], r.v[(lane & 2) + 1], a0, a1);
    v = (lane & 1) ? a1 : a0;
  }
  return v;
}

// The elements of block b (those below n): one thread's work in the kernels below, and the host's
// in host_random_* (the tests' check, on any machine, that these are the CPU module's numbers).
PHILOX_HD void uniform_block(const Stream& s, int64_t b, int64_t n, float lo, float width, float hi, float below,
                             float* o) {
  const Block w = s.block(uint64_t(b));
  for (int l = 0; l < 4; ++l) {
    const int64_t e = 4 * b + l;
    if (e < n) {
      const float v = philox::fadd(lo, philox::fmul(width, philox::unit_float(w.v[l])));
      o[e] = v >= hi ? below : v;
    }
  }
}

PHILOX_HD void normal_block(const Stream& s, int64_t b, int64_t n, float mean, float stddev, bool truncated, float* o) {
  const Block w = s.block(uint64_t(b));
  float z[4];
  philox::box_muller(w.v[0], w.v[1], z[0], z[1]);
  philox::box_muller(w.v[2], w.v[3], z[2], z[3]);
  for (int l = 0; l < 4; ++l) {
    const int64_t e = 4 * b + l;
    if (e < n) o[e] = philox::fadd(mean, philox::fmul(stddev, normal_value(s, e, z[l], truncated)));
  }
}

__global__ void uniform_kernel(Stream s, int64_t n, float lo, float width, float hi, float below, float* o) {
  GRID_STRIDE(b, (n + 3) / 4) uniform_block(s, b, n, lo, width, hi, below, o);
}

__global__ void normal_kernel(Stream s, int64_t n, float mean, float stddev, bool truncated, float* o) {
  GRID_STRIDE(b, (n + 3) / 4) normal_block(s, b, n, mean, stddev, truncated, o);
}

// Two elements a block: a 64-bit draw each, mapped to [lo, lo + range) by a 128-bit product.
template <class T>
__global__ void randint_kernel(Stream s, int64_t n, int64_t lo, uint64_t range, T* o) {
  GRID_STRIDE(b, (n + 1) / 2) {
    const Block w = s.block(uint64_t(b));
#pragma unroll
    for (int l = 0; l < 2; ++l) {
      const int64_t e = 2 * b + l;
      if (e < n) {
        const uint64_t r = (uint64_t(w.v[2 * l]) << 32) | w.v[2 * l + 1];
        o[e] = T(int64_t(uint64_t(lo) + philox::mulhi64(r, range)));
      }
    }
  }
}

// A: F32Acc, or AnyAcc where x or out is bfloat16 (bf16.cuh: the float32 maths, rounded once)
template <class A>
__global__ void dropout_kernel(Stream s, int64_t n, float keep, float scale, const A x, const A o, uint8_t* mk) {
  GRID_STRIDE(b, (n + 3) / 4) {
    const Block w = s.block(uint64_t(b));
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const int64_t e = 4 * b + l;
      if (e < n) {
        const float k = float(philox::unit_float(w.v[l]) < keep);
        mk[e] = uint8_t(k);
        o.st(e, philox::fmul(x.ld(e), philox::fmul(k, scale)));
      }
    }
  }
}

template <class A>
__global__ void dropout_mask_kernel(Stream s, int64_t n, float keep, float scale, const A mk) {
  GRID_STRIDE(b, (n + 3) / 4) {
    const Block w = s.block(uint64_t(b));
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const int64_t e = 4 * b + l;
      if (e < n) mk.st(e, philox::fmul(float(philox::unit_float(w.v[l]) < keep), scale));
    }
  }
}

// One thread an element: each draws its own retry blocks (csrc/random_dists.h), as the CPU's loop.
__global__ void gamma_kernel(Stream s, int64_t n, uint32_t salt, const float* alpha, bool log_space, float* o) {
  GRID_STRIDE(e, n) {
    const double lg = dists::log_gamma_sample(s, uint64_t(e), salt, double(alpha[e]));
    o[e] = float(log_space ? lg : exp(lg));
  }
}

__global__ void binomial_kernel(Stream s, int64_t n, const float* counts, const float* probs, float* o) {
  GRID_STRIDE(e, n) o[e] = float(dists::binomial_sample(s, uint64_t(e), counts[e], probs[e]));
}

template <class A>
__global__ void dropout_grad_kernel(const A g, const uint8_t* mk, float scale, const A o, int64_t n) {
  GRID_STRIDE(i, n)
    o.st(i, philox::fmul(g.ld(i), philox::fmul(float(mk[i]), scale)));
}

}  // namespace

void random_uniform(uint64_t seed, uint64_t counter, double lo, double hi, Buffer& out) {
  const char* op = "uniform";
  check_dtype(op, "out", out, F32);
  LAMINA_CHECK(lo < hi, "uniform: minval must be below maxval, received minval=" << lo << ", maxval=" << hi);
  Context& c = op_device(op, {&out});
  const int64_t n = out.numel;
  if (n == 0) return;
  const float flo = float(lo), fhi = float(hi), width = float(hi - lo);
  const float below = std::nextafter(fhi, flo);
  uniform_kernel<<<grid_for((n + 3) / 4), 256, 0, c.stream>>>(Stream(seed, counter), n, flo, width, fhi,
                                                               below, out.data<float>());
  launched(c, op);
}

void random_normal(uint64_t seed, uint64_t counter, double mean, double stddev, bool truncated, Buffer& out) {
  const char* op = truncated ? "truncated_normal" : "normal";
  check_dtype(op, "out", out, F32);
  Context& c = op_device(op, {&out});
  const int64_t n = out.numel;
  if (n == 0) return;
  normal_kernel<<<grid_for((n + 3) / 4), 256, 0, c.stream>>>(Stream(seed, counter), n, float(mean),
                                                              float(stddev), truncated, out.data<float>());
  launched(c, op);
}

std::vector<float> host_random_uniform(uint64_t seed, uint64_t counter, double lo, double hi, int64_t n) {
  LAMINA_CHECK(lo < hi && n >= 0, "host_random_uniform: needs minval < maxval and n >= 0");
  std::vector<float> o(static_cast<size_t>(n));
  const float flo = float(lo), fhi = float(hi), width = float(hi - lo), below = std::nextafter(fhi, flo);
  const Stream s(seed, counter);
  for (int64_t b = 0; b < (n + 3) / 4; ++b) uniform_block(s, b, n, flo, width, fhi, below, o.data());
  return o;
}

std::vector<float> host_random_normal(uint64_t seed, uint64_t counter, double mean, double stddev, bool truncated,
                                      int64_t n) {
  LAMINA_CHECK(n >= 0, "host_random_normal: n must be >= 0");
  std::vector<float> o(static_cast<size_t>(n));
  const Stream s(seed, counter);
  for (int64_t b = 0; b < (n + 3) / 4; ++b) normal_block(s, b, n, float(mean), float(stddev), truncated, o.data());
  return o;
}

void random_randint(uint64_t seed, uint64_t counter, int64_t lo, int64_t hi, Buffer& out) {
  const char* op = "randint";
  LAMINA_CHECK(lo < hi, "randint: minval must be below maxval, received minval=" << lo << ", maxval=" << hi);
  LAMINA_CHECK(out.dtype == I32 || out.dtype == I64, "randint: output must be int32 or int64");
  if (out.dtype == I32)
    LAMINA_CHECK(lo >= INT32_MIN && hi - 1 <= INT32_MAX, "randint: range [" << lo << ", " << hi << ") does not fit int32");
  Context& c = op_device(op, {&out});
  const int64_t n = out.numel;
  if (n == 0) return;
  const Stream s = Stream(seed, counter);
  const uint64_t range = uint64_t(hi) - uint64_t(lo);
  if (out.dtype == I32)
    randint_kernel<<<grid_for((n + 1) / 2), 256, 0, c.stream>>>(s, n, lo, range, out.data<int32_t>());
  else
    randint_kernel<<<grid_for((n + 1) / 2), 256, 0, c.stream>>>(s, n, lo, range, out.data<int64_t>());
  launched(c, op);
}

void random_gamma(uint64_t seed, uint64_t counter, uint32_t salt, const Buffer& alpha, bool log_space, Buffer& out) {
  const char* op = "gamma";
  check_dtype(op, "alpha", alpha, F32);
  check_dtype(op, "out", out, F32);
  LAMINA_CHECK(alpha.numel == out.numel, "gamma: alpha has " << alpha.numel << " values for " << out.numel << " outputs");
  LAMINA_CHECK(salt < 2, "gamma: salt must be 0 or 1, received " << salt);
  Context& c = op_device(op, {&alpha, &out});
  const int64_t n = out.numel;
  if (n == 0) return;
  gamma_kernel<<<grid_for(n), 256, 0, c.stream>>>(Stream(seed, counter), n, salt, alpha.data<float>(), log_space,
                                                   out.data<float>());
  launched(c, op);
}

void random_binomial(uint64_t seed, uint64_t counter, const Buffer& counts, const Buffer& probs, Buffer& out) {
  const char* op = "binomial";
  check_dtype(op, "counts", counts, F32);
  check_dtype(op, "probabilities", probs, F32);
  check_dtype(op, "out", out, F32);
  LAMINA_CHECK(counts.numel == out.numel && probs.numel == out.numel,
               "binomial: counts and probabilities need one value per output");
  Context& c = op_device(op, {&counts, &probs, &out});
  const int64_t n = out.numel;
  if (n == 0) return;
  binomial_kernel<<<grid_for(n), 256, 0, c.stream>>>(Stream(seed, counter), n, counts.data<float>(),
                                                      probs.data<float>(), out.data<float>());
  launched(c, op);
}

void dropout(const Buffer& x, uint64_t seed, uint64_t counter, double rate, Buffer& out, Buffer& mask) {
  const char* op = "dropout";
  check_dtype(op, "x", x, float_dtype(x));  // float32 or bfloat16, in any mix
  check_dtype(op, "out", out, float_dtype(out));
  check_dtype(op, "mask", mask, BOOL);
  LAMINA_CHECK(out.numel == x.numel && mask.numel == x.numel, "dropout: x, out and mask sizes differ");
  LAMINA_CHECK(rate >= 0.0 && rate < 1.0, "dropout: rate must be in [0, 1), received " << rate);
  Context& c = op_device(op, {&x, &out, &mask});
  const int64_t n = x.numel;
  if (n == 0) return;
  const float keep = float(1.0 - rate), scale = float(1.0 / (1.0 - rate));
  with_float_access({&x, &out}, [&](auto a) {
    using A = decltype(a);
    dropout_kernel<A><<<grid_for((n + 3) / 4), 256, 0, c.stream>>>(Stream(seed, counter), n, keep, scale, acc_of<A>(x),
                                                                    acc_of<A>(out), mask.data<uint8_t>());
  });
  launched(c, op);
}

void dropout_mask(uint64_t seed, uint64_t counter, double rate, Buffer& mask) {
  const char* op = "dropout";
  check_dtype(op, "mask", mask, float_dtype(mask));
  LAMINA_CHECK(rate >= 0.0 && rate < 1.0, "dropout: rate must be in [0, 1), received " << rate);
  Context& c = op_device(op, {&mask});
  const int64_t n = mask.numel;
  if (n == 0) return;
  const float keep = float(1.0 - rate), scale = float(1.0 / (1.0 - rate));
  with_float_access({&mask}, [&](auto a) {
    using A = decltype(a);
    dropout_mask_kernel<A><<<grid_for((n + 3) / 4), 256, 0, c.stream>>>(Stream(seed, counter), n, keep, scale,
                                                                         acc_of<A>(mask));
  });
  launched(c, op);
}

void dropout_grad(const Buffer& g, const Buffer& mask, double scale, Buffer& out) {
  const char* op = "dropout_grad";
  check_dtype(op, "grad", g, float_dtype(g));
  check_dtype(op, "mask", mask, BOOL);
  check_dtype(op, "out", out, float_dtype(out));
  LAMINA_CHECK(g.numel == mask.numel && out.numel == mask.numel, "dropout_grad: grad, mask and out sizes differ");
  Context& c = op_device(op, {&g, &mask, &out});
  const int64_t n = g.numel;
  if (n == 0) return;
  with_float_access({&g, &out}, [&](auto a) {
    using A = decltype(a);
    dropout_grad_kernel<A><<<grid_for(n), 256, 0, c.stream>>>(acc_of<A>(g), mask.data<uint8_t>(), float(scale),
                                                              acc_of<A>(out), n);
  });
  launched(c, op);
}

}  // namespace gpu
}  // namespace lamina
