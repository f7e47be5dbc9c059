// The CPU module's random streams (csrc/cpu/random.cpp) on the device: Philox-4x32-10 with the
// same key / counter layout, and the same mapping from 32-bit words to numbers, so a seed gives
// the same numbers on gpu:N as on cpu:N.
//
// Normals: the CPU's Box-Muller calls glibc's logf and sincosf (GCC merges its sin and cos of one
// angle into sincosf), whose results differ from CUDA's logf / sincosf in the last bit now and
// then. The two functions below follow glibc's algorithms (Arm's optimized routines, glibc 2.28
// and later, as x86-64 runs them on a CPU with FMA: the *-fma variants, where GCC fuses a
// product and the sum that follows) with the same constants and the same operations, each
// rounded as there, so the floats are glibc's. Every operation is spelled out (fma, or a product
// or sum the CUDA compiler may not fuse) because nvcc would otherwise fuse other pairs.
// Usable on the host too: _host_random_normal runs them there, and a test compares its numbers
// with the CPU module's bit for bit (tests/gpu/test_device_ops.py).
#pragma once
#include <cstdint>
#include <cstring>

#include "../philox.h"  // the generator itself (Block, Stream), shared with the CPU module

namespace lamina {
namespace philox {

// Unfused double / float arithmetic (nvcc fuses a * b + c into an fma unless told not to).
#if defined(__CUDA_ARCH__)
PHILOX_HD double dmul(double a, double b) { return __dmul_rn(a, b); }
PHILOX_HD double dadd(double a, double b) { return __dadd_rn(a, b); }
PHILOX_HD double dfma(double a, double b, double c) { return __fma_rn(a, b, c); }
PHILOX_HD float fmul(float a, float b) { return __fmul_rn(a, b); }
PHILOX_HD float fadd(float a, float b) { return __fadd_rn(a, b); }
PHILOX_HD float fsqrt(float a) { return __fsqrt_rn(a); }
PHILOX_HD uint64_t mulhi64(uint64_t a, uint64_t b) { return __umul64hi(a, b); }
#else
PHILOX_HD double dmul(double a, double b) { return a * b; }
PHILOX_HD double dadd(double a, double b) { return a + b; }
PHILOX_HD double dfma(double a, double b, double c) { return __builtin_fma(a, b, c); }
PHILOX_HD float fmul(float a, float b) { return a * b; }
PHILOX_HD float fadd(float a, float b) { return a + b; }
PHILOX_HD float fsqrt(float a) { return __builtin_sqrtf(a); }
PHILOX_HD uint64_t mulhi64(uint64_t a, uint64_t b) { return uint64_t((static_cast<unsigned __int128>(a) * b) >> 64); }
#endif

PHILOX_HD uint32_t as_uint(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
PHILOX_HD float as_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}


// float in [0, 1) with 24 random bits (exact)
PHILOX_HD float unit_float(uint32_t w) { return float(w >> 8) * 5.9604644775390625e-08f; }

// ---- glibc's logf (sysdeps/ieee754/flt-32/e_logf.c, FMA build), for x in [2^-126, 1] -------------
struct LogfEntry {
  double invc, logc;
};

#define LAMINA_LOGF_ENTRIES                                                                          \
  {0x1.661ec79f8f3bep+0, -0x1.57bf7808caadep-2}, {0x1.571ed4aaf883dp+0, -0x1.2bef0a7c06ddbp-2},      \
  {0x1.49539f0f010bp+0, -0x1.01eae7f513a67p-2}, {0x1.3c995b0b80385p+0, -0x1.b31d8a68224e9p-3},       \
  {0x1.30d190c8864a5p+0, -0x1.6574f0ac07758p-3}, {0x1.25e227b0b8eap+0, -0x1.1aa2bc79c81p-3},         \
  {0x1.1bb4a4a1a343fp+0, -0x1.a4e76ce8c0e5ep-4}, {0x1.12358f08ae5bap+0, -0x1.1973c5a611cccp-4},      \
  {0x1.0953f419900a7p+0, -0x1.252f438e10c1ep-5}, {0x1p+0, 0x0p+0},                                   \
  {0x1.e608cfd9a47acp-1, 0x1.aa5aa5df25984p-5}, {0x1.ca4b31f026aap-1, 0x1.c5e53aa362eb4p-4},         \
  {0x1.b2036576afce6p-1, 0x1.526e57720db08p-3}, {0x1.9c2d163a1aa2dp-1, 0x1.bc2860d22477p-3},         \
  {0x1.886e6037841edp-1, 0x1.1058bc8a07ee1p-2}, {0x1.767dcf5534862p-1, 0x1.4043057b6ee09p-2}
#if defined(__CUDACC__)
__constant__ LogfEntry kLogfTabDev[16] = {LAMINA_LOGF_ENTRIES};
#endif
static const LogfEntry kLogfTabHost[16] = {LAMINA_LOGF_ENTRIES};
#undef LAMINA_LOGF_ENTRIES

PHILOX_HD float glibc_logf(float x) {
  constexpr double kLn2 = 0x1.62e42fefa39efp-1;
  constexpr double A0 = -0x1.00ea348b88334p-2, A1 = 0x1.5575b0be00b6ap-2, A2 = -0x1.ffffef20a4123p-2;
  const uint32_t ix = as_uint(x);
  if (ix == 0x3f800000u) return 0.f;
  // x = 2^k z, z in [OFF, 2 OFF) (exact), in one of 16 subintervals whose centre is near c
  const uint32_t tmp = ix - 0x3f330000u;
  const int i = int((tmp >> (23 - 4)) % 16);
  const int k = int32_t(tmp) >> 23;
  const uint32_t iz = ix - (tmp & (0x1ffu << 23));
#if defined(__CUDA_ARCH__)
  const LogfEntry e = kLogfTabDev[i];
#else
  const LogfEntry e = kLogfTabHost[i];
#endif
  const double z = double(as_float(iz));
  // log(x) = log1p(z / c - 1) + log(c) + k ln2
  const double r = dfma(z, e.invc, -1.0);
  const double y0 = dfma(double(k), kLn2, e.logc);
  const double r2 = dmul(r, r);
  double y = dfma(A1, r, A2);
  y = dfma(A0, r2, y);
  y = dfma(y, r2, dadd(y0, r));
  return float(y);
}

// ---- glibc's sincosf (sysdeps/ieee754/flt-32/s_sincosf.c, FMA build), for |x| < 120 ------------
struct SincosCoef {
  double c0, c1, c2, c3, c4, s1, s2, s3;
};

PHILOX_HD void glibc_sincosf(float y, float* sinp, float* cosp) {
  // table 0: cos; table 1 (quadrants 2 and 3) computes -cos
  constexpr double kHpiInv = 0x1.45F306DC9C883p+23, kHpi = 0x1.921FB54442D18p0;
  constexpr double kC1 = -0x1.ffffffd0c621cp-2, kC2 = 0x1.55553e1068f19p-5, kC3 = -0x1.6c087e89a359dp-10,
                   kC4 = 0x1.99343027bf8c3p-16, kS1 = -0x1.555545995a603p-3, kS2 = 0x1.1107605230bc4p-7,
                   kS3 = -0x1.994eb3774cf24p-13;
  const uint32_t top = (as_uint(y) >> 20) & 0x7ff;  // abstop12
  double x = y;
  int n = 0;
  double sign = 1.0;
  bool neg = false;
  if (top < ((as_uint(0.785398185253143310546875f) >> 20) & 0x7ff)) {  // |y| < pi / 4
    if (top < ((as_uint(0x1p-12f) >> 20) & 0x7ff)) {
      *sinp = y;
      *cosp = 1.0f;
      return;
    }
  } else {  // reduce_fast (|y| < 120)
    const double r = dmul(x, kHpiInv);
    n = (int32_t(r) + 0x800000) >> 24;
    x = dfma(-double(n), kHpi, x);
    const int q = n & 3;
    sign = (q == 1 || q == 2) ? -1.0 : 1.0;
    neg = (n & 2) != 0;
    x = dmul(x, sign);
  }
  const SincosCoef p = neg ? SincosCoef{-1.0, -kC1, -kC2, -kC3, -kC4, kS1, kS2, kS3}
                           : SincosCoef{1.0, kC1, kC2, kC3, kC4, kS1, kS2, kS3};
  const double x2 = dmul(x, x);
  const double x4 = dmul(x2, x2);
  const double x3 = dmul(x2, x);
  const double c2 = dfma(x2, p.c4, p.c3);
  const double s1 = dfma(x2, p.s3, p.s2);
  const double c1 = dfma(x2, p.c1, p.c0);
  const double x5 = dmul(x3, x2);
  const double x6 = dmul(x4, x2);
  const double s = dfma(x3, p.s1, x);
  const double c = dfma(x4, p.c2, c1);
  const float sv = float(dfma(x5, s1, s)), cv = float(dfma(x6, c2, c));
  // odd quadrants swap sin and cos
  if (n & 1) {
    *sinp = cv;
    *cosp = sv;
  } else {
    *sinp = sv;
    *cosp = cv;
  }
}

// random.cpp's box_muller: two standard normals from two 32-bit words.
PHILOX_HD void box_muller(uint32_t a, uint32_t b, float& z0, float& z1) {
  const float u1 = fmul(fadd(float(a), 1.f), 2.3283064365386963e-10f);
  const float u2 = fmul(float(b), 2.3283064365386963e-10f);
  const float r = fsqrt(fmul(-2.f, glibc_logf(u1)));
  const float t = fmul(6.283185307179586f, u2);
  float s, c;
  glibc_sincosf(t, &s, &c);
  z0 = fmul(r, c);
  z1 = fmul(r, s);
}

}  // namespace philox
}  // namespace lamina
