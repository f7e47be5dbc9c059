// Branch-free float32 maths that auto-vectorises (libm's calls do not), shared by the kernel
// files; the remaining functions (log, erf, gelu, ...) live in elementwise.cpp.
#pragma once
#include <cstdint>
#include <limits>

#include "simd.h"

namespace lamina {
// ---- vector maths: branch-free float32 approximations that auto-vectorise -------------------
// Accuracy (measured against double-precision libm over a dense sweep of all floats, each SIMD
// variant): relative error below 2e-7 for exp, exp2, expm1, log, log1p, sigmoid, softplus;
// below 5e-7 for tanh, erf, gelu and the gelu derivatives. +-inf, NaN, overflow to inf and gradual
// underflow to subnormals and zero follow IEEE / libm.
namespace vm {
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
LAMINA_INLINE float as_float(uint32_t i) { return __builtin_bit_cast(float, i); }
LAMINA_INLINE uint32_t as_bits(float f) { return __builtin_bit_cast(uint32_t, f); }
LAMINA_INLINE float fabs_(float x) { return as_float(as_bits(x) & 0x7fffffffu); }
// |m| with the sign of s
LAMINA_INLINE float copysign_(float m, float s) {
  return as_float((as_bits(m) & 0x7fffffffu) | (as_bits(s) & 0x80000000u));
}

// e^r * 2^n for |r| <= ln2/2: a degree-7 polynomial for e^r (Cephes expf), and 2^n applied as
// two factors, so that results in the subnormal range round once and n = 128 overflows to inf.
LAMINA_INLINE float exp_reduced(float r, int32_t n) {
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.f;
  int32_t n1 = n >> 1, n2 = n - n1;
  return p * as_float(uint32_t(n1 + 127) << 23) * as_float(uint32_t(n2 + 127) << 23);
}

// e^(hi + lo), where hi is in [-150, 89] (or NaN) and |lo| is small: Cody-Waite reduction
// x = n ln2 + r, |r| <= ln2/2, then exp_reduced.
LAMINA_INLINE float exp_core(float hi, float lo) {
  const float kLog2e = 1.44269504088896341f, kC1 = 0.693359375f, kC2 = -2.12194440e-4f;
  const float kShift = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  float t = (hi + lo) * kLog2e + kShift;
  float nf = t - kShift;
  int32_t n = int32_t(as_bits(t) - as_bits(kShift));
  float r = hi - nf * kC1;
  r = r - nf * kC2;
  r = r + lo;
  return exp_reduced(r, n);
}
LAMINA_INLINE float exp(float x) {
  x = x > 89.f ? 89.f : x;
  x = x < -104.f ? -104.f : x;  // NaN passes both
  return exp_core(x, 0.f);
}

// tanh(x) = x P(x^2) / Q(x^2) on |x| < 9 (+-1 beyond, where tanh rounds to +-1 in float32):
// a degree (5, 4) rational minimax fit of tanh(x)/x in x^2 on [0, 9] (differential-correction
// algorithm, fitted for lamina), relative error < 4e-7 in float32 arithmetic. No exp, one division.
LAMINA_INLINE float tanh(float x) {
  float c = x > 9.f ? 9.f : (x < -9.f ? -9.f : x);  // NaN passes
  float z = c * c;
  float p = -1.004522373485732e-11f;
  p = p * z + 2.7305947761519078e-08f;
  p = p * z + 2.6511808478756697e-05f;
  p = p * z + 3.790113334806699e-03f;
  p = p * z + 1.3616383768541987e-01f;
  p = p * z + 1.f;
  float q = 1.1871549643412246e-06f;
  q = q * z + 3.803696173940079e-04f;
  q = q * z + 2.6955993190156145e-02f;
  q = q * z + 4.6949699480010587e-01f;
  q = q * z + 1.f;
  float r = c * p / q;
  return fabs_(x) >= 9.f ? copysign_(1.f, x) : r;
}
// 1 / (1 + e^-x) without overflow for either sign of x.
LAMINA_INLINE float sigmoid(float x) {
  float e = exp(-fabs_(x));
  float r = 1.f / (1.f + e);
  return x >= 0.f ? r : e * r;
}
}  // namespace vm
}  // namespace lamina
