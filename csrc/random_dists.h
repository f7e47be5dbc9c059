// Gamma and binomial samples from the Philox streams (philox.h), one element at a time: the one
// definition both device modules run (csrc/cpu/random.cpp, csrc/cuda/random.cu).
//
// Element e of a draw takes blocks (e + salt * 2^39, attempt) for attempt = 0, 1, ... until it
// is accepted, so its value depends only on (seed, counter, salt, e) and its parameters: never on
// the thread or the device that computes it. (salt 1 gives beta's second gamma a stream of its
// own under the same counter.) The arithmetic is in double, so that the two devices' logs and
// exps, which may differ in their last bit, round to the same float32 result and take the same
// accept / reject decisions but in vanishingly rare cases.
//
//   gamma:    Marsaglia and Tsang, "A simple method for generating gamma variables" (2000); for
//             alpha < 1, Gamma(alpha) = Gamma(alpha + 1) * U^(1 / alpha), kept in log space on
//             request (beta = sigmoid(log X - log Y) never divides 0 by 0).
//   binomial: the waiting-time method (sums of geometric gaps) when n * min(p, 1 - p) < 10, else
//             Hormann's BTRS, "The generation of binomial random variates" (1993), as TensorFlow
//             and JAX use; p > 1/2 draws n - Binomial(n, 1 - p).
#pragma once
#include <cmath>
#include <cstdint>

#include "philox.h"

namespace lamina {
namespace dists {

using philox::Block;
using philox::Stream;

constexpr uint32_t kMaxAttempts = 1u << 24;   // the retry field's width in philox::Stream::block

// (0, 1]: never 0, so its log is finite
PHILOX_HD double open_unit(uint32_t w) { return (double(w) + 1.0) * 2.3283064365386963e-10; }

PHILOX_HD double log_gamma_fn(double x) {
#if defined(__CUDA_ARCH__)
  return lgamma(x);
#else
  int sign;
  return lgamma_r(x, &sign);   // glibc's lgamma writes the global signgam: not thread-safe
#endif
}

// log of a Gamma(alpha, 1) sample for element `e` (NaN unless 0 < alpha < inf).
PHILOX_HD double log_gamma_sample(const Stream& s, uint64_t e, uint32_t salt, double alpha) {
  if (!(alpha > 0.0 && alpha <= 1.7976931348623157e308)) return NAN;
  const uint64_t b = e + (uint64_t(salt) << 39);
  double boost = 0.0;   // log of U^(1 / alpha), for alpha < 1
  if (alpha < 1.0) {
    boost = log(open_unit(s.block(b, 0).v[3])) / alpha;
    alpha += 1.0;
  }
  const double d = alpha - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
  double logv = 0.0;
  for (uint32_t attempt = 0; attempt < kMaxAttempts; ++attempt) {
    const Block w = s.block(b, attempt);
    const double x = sqrt(-2.0 * log(open_unit(w.v[0]))) *
                     cos(6.283185307179586 * double(w.v[1]) * 2.3283064365386963e-10);
    const double t = 1.0 + c * x;
    if (t <= 0.0) continue;
    const double v = t * t * t;
    logv = log(v);
    const double u = open_unit(w.v[2]);
    if (log(u) < 0.5 * x * x + d - d * v + d * logv) break;
  }
  return log(d) + logv + boost;
}

// Binomial(n, p) for element `e`, as a double (n a non-negative integer value, p in [0, 1];
// anything else gives NaN, as JAX's).
PHILOX_HD double binomial_sample(const Stream& s, uint64_t e, double n, double p) {
  if (!(n >= 0.0) || !(p >= 0.0) || !(p <= 1.0) || n != floor(n) || n > 9.007199254740992e15) return NAN;
  if (n == 0.0 || p == 0.0) return 0.0;
  if (p == 1.0) return n;
  const bool flip = p > 0.5;
  const double q0 = flip ? 1.0 - p : p;
  double k = 0.0;
  if (n * q0 < 10.0) {
    // waiting time: count the geometric gaps (each >= 1) that fit in n trials
    const double lq = log1p(-q0);
    double used = 0.0;
    uint32_t attempt = 0;
    for (; attempt < kMaxAttempts; ++attempt) {
      const Block w = s.block(e, attempt);
      bool done = false;
      for (int l = 0; l < 4 && !done; ++l) {
        used += fmax(ceil(log(open_unit(w.v[l])) / lq), 1.0);   // a gap of at least one trial
        if (used > n) done = true;
        else k += 1.0;
      }
      if (done) break;
    }
  } else {
    const double q = 1.0 - q0, spq = sqrt(n * q0 * q);
    const double b = 1.15 + 2.53 * spq, a = -0.0873 + 0.0248 * b + 0.01 * q0, c = n * q0 + 0.5;
    const double vr = 0.92 - 4.2 / b, alpha = (2.83 + 5.1 / b) * spq, lpq = log(q0 / q);
    const double m = floor((n + 1.0) * q0);
    const double h = log_gamma_fn(m + 1.0) + log_gamma_fn(n - m + 1.0);
    for (uint32_t attempt = 0; attempt < kMaxAttempts; ++attempt) {
      const Block w = s.block(e, attempt);
      bool accepted = false;
      for (int l = 0; l < 4 && !accepted; l += 2) {
        const double u = double(w.v[l]) * 2.3283064365386963e-10 - 0.5;
        double v = open_unit(w.v[l + 1]);
        const double us = 0.5 - fabs(u);
        const double kk = floor((2.0 * a / us + b) * u + c);
        if (!(kk >= 0.0 && kk <= n)) continue;   // also NaN, when u = -1/2
        if (us >= 0.07 && v <= vr) {
          k = kk;
          accepted = true;
          break;
        }
        v = log(v * alpha / (a / (us * us) + b));
        if (v <= h - log_gamma_fn(kk + 1.0) - log_gamma_fn(n - kk + 1.0) + (kk - m) * lpq) {
          k = kk;
          accepted = true;
        }
      }
      if (accepted) break;
    }
  }
  return flip ? n - k : k;
}

}  // namespace dists
}  // namespace lamina
