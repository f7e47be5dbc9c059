// Elementwise kernels: broadcasting binary ops, comparisons, where, unary maths and the
// derivative kernels of the activations.
//
// The float unary maths (exp, log, tanh, sigmoid, erf, gelu, softplus, elu, ...) use the
// branch-free polynomial approximations of `namespace vm` below instead of libm, so that their
// loops vectorise. Each such loop is compiled three times -- for the portable baseline, for AVX2
// and for AVX-512 (GCC target attributes) -- and the variant is chosen at run time from the CPU's
// features (override with LAMINA_SIMD=generic|avx2|avx512, or set_simd_isa()).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "broadcast_loops.h"
#include "common.h"
#include "device.h"
#include "opcodes.h"
#include "simd.h"
#include "elementwise_shared.h"
#include "vmath.h"

namespace py = pybind11;


namespace lamina {

// ---- run-time choice of the SIMD variant ---------------------------------------------------
enum Isa : int { ISA_GENERIC = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };
static const char* kIsaNames[] = {"generic", "avx2", "avx512"};

static int hardware_isa() {
#if LAMINA_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("fma"))
    return ISA_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2")) return ISA_AVX2;
#endif
  return ISA_GENERIC;
}

static int isa_from_name(const std::string& s) {
  for (int i = 0; i < 3; ++i)
    if (s == kIsaNames[i]) return i;
  LAMINA_CHECK(false, "set_simd_isa: unknown instruction set '" << s << "'; expected generic, avx2 or avx512");
  return 0;
}

static int initial_isa() {
  int hw = hardware_isa();
  if (const char* env = std::getenv("LAMINA_SIMD")) {
    std::string s(env);
    for (int i = 0; i < 3; ++i)
      if (s == kIsaNames[i]) return i < hw ? i : hw;
  }
  return hw;
}

static int g_isa = initial_isa();

// The SIMD variant in use (Isa), for the other kernel files' own dispatch.
int simd_level() { return g_isa; }

static void set_simd_isa(const std::string& name) {
  int want = isa_from_name(name), hw = hardware_isa();
  LAMINA_CHECK(want <= hw, "set_simd_isa: this CPU does not support " << name << "; the best available is "
                                                                    << kIsaNames[hw]);
  g_isa = want;
}

// ---- vector maths (exp and the bit helpers are in vmath.h) --------------------------------
namespace vm {
// 2^x: exact reduction x = n + f, then e^(f ln 2).
LAMINA_INLINE float exp2(float x) {
  x = x > 129.f ? 129.f : x;
  x = x < -151.f ? -151.f : x;
  const float kShift = 12582912.f;
  float t = x + kShift;
  float nf = t - kShift;
  int32_t n = int32_t(as_bits(t) - as_bits(kShift));
  float r = (x - nf) * 0.693147180559945309f;
  return exp_reduced(r, n);
}
// e^x - 1, accurate near 0: Taylor series for |x| < 1/2, exp(x) - 1 elsewhere.
LAMINA_INLINE float expm1(float x) {
  float p = 2.755731922e-6f;  // 1/9!
  p = p * x + 2.480158730e-5f;
  p = p * x + 1.984126984e-4f;
  p = p * x + 1.388888889e-3f;
  p = p * x + 8.333333333e-3f;
  p = p * x + 4.166666667e-2f;
  p = p * x + 1.666666667e-1f;
  p = p * x + 0.5f;
  float small = p * (x * x) + x;
  float big = exp(x) - 1.f;
  return fabs_(x) < 0.5f ? small : big;
}
// Splits x > 0 as 2^e (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)) and returns log(1 + f) - f
// by the Cephes logf polynomial (so log(1 + f) = f + result); subnormals are scaled first.
LAMINA_INLINE float log_reduce(float x, float* e_out, float* f_out) {
  bool sub = x < 1.17549435e-38f;
  float xs = sub ? x * 8388608.f : x;  // 2^23
  uint32_t ix = as_bits(xs);
  float e = float(int32_t((ix >> 23) & 0xffu) - 126) - (sub ? 23.f : 0.f);
  float m = as_float((ix & 0x007fffffu) | 0x3f000000u);  // [0.5, 1)
  bool lo = m < 0.707106781186547524f;
  e = lo ? e - 1.f : e;
  m = lo ? m + m - 1.f : m - 1.f;
  float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z - 0.5f * z;
  *e_out = e;
  *f_out = m;
  return y;
}
// log, log2, log10 of special values: inf -> inf, 0 -> -inf, negative -> NaN, NaN -> NaN.
LAMINA_INLINE float log_special(float x, float r) {
  r = x == kInf ? kInf : r;
  r = x == 0.f ? -kInf : r;
  r = x < 0.f ? kNaN : r;
  return x != x ? x : r;
}
LAMINA_INLINE float log(float x) {
  float e, f;
  float y = log_reduce(x, &e, &f);
  float r = (f + (y - 2.12194440e-4f * e)) + 0.693359375f * e;
  return log_special(x, r);
}
LAMINA_INLINE float log2(float x) {
  float e, f;
  float y = log_reduce(x, &e, &f);
  // log2(1 + f) = (f + y) log2(e), with log2(e) = 1 + 0.44269504...: the leading f is exact
  float l = f + y;
  float r = e + (f + (y + l * 0.44269504088896341f));
  return log_special(x, r);
}
LAMINA_INLINE float log10(float x) {
  float e, f;
  float y = log_reduce(x, &e, &f);
  float l = f + y;
  // e log10(2) split in an exact head and a tail
  float r = e * 0.30078125f + (e * 2.48745663981195214e-4f + l * 0.434294481903251828f);
  return log_special(x, r);
}
// log(1 + x), accurate near 0 (Goldberg: log(1 + x) scaled by x / ((1 + x) - 1)).
LAMINA_INLINE float log1p(float x) {
  float w = 1.f + x;
  float d = w - 1.f;
  float r = log(w) * (x / (d == 0.f ? 1.f : d));
  r = d == 0.f ? x : r;
  return x == kInf ? kInf : r;
}
// 1 / (1 + e^-x), or e^x / (1 + e^x) for x < 0: no overflow, full relative accuracy in the tail.
// Numerical Recipes' Chebyshev-fitted exponent for erfc: erfc(t) = s exp(-t^2 + P(s)),
// s = 1 / (1 + t/2), relative error < 1.2e-7 for t >= 0.
LAMINA_INLINE float erfc_poly(float s) {
  float p = 0.17087277f;
  p = p * s - 0.82215223f;
  p = p * s + 1.48851587f;
  p = p * s - 1.13520398f;
  p = p * s + 0.27886807f;
  p = p * s - 0.18628806f;
  p = p * s + 0.09678418f;
  p = p * s + 0.37409196f;
  p = p * s + 1.00002368f;
  return p * s - 1.26551223f;
}
// erfc(t) for t >= 0 (or NaN). -t^2 is split into an exact head th^2 (th keeps 12 significant
// bits) and a small tail, so that its rounding error is not amplified by exp.
LAMINA_INLINE float erfc_pos(float t) {
  t = t > 10.5f ? 10.5f : t;
  float s = 1.f / (1.f + 0.5f * t);
  float th = as_float(as_bits(t) & 0xfffff000u);
  float tl = t - th;
  return s * exp_core(-(th * th), erfc_poly(s) - tl * (t + th));
}
// erfc(a / sqrt 2) for a >= 0 (or NaN), the exponent -a^2/2 formed exactly from a.
LAMINA_INLINE float erfc_pos_half(float a) {
  a = a > 14.8f ? 14.8f : a;
  float t = a * 0.70710678118654752f;
  float s = 1.f / (1.f + 0.5f * t);
  float ah = as_float(as_bits(a) & 0xfffff000u);
  float al = a - ah;
  return s * exp_core(-0.5f * (ah * ah), erfc_poly(s) - 0.5f * al * (a + ah));
}
LAMINA_INLINE float erf(float x) {
  float a = fabs_(x);
  float z = x * x;
  // 2/sqrt(pi) sum_k (-1)^k x^(2k+1) / (k! (2k+1)), k <= 7, for |x| < 1/2
  float q = -1.0f / 75600.f;
  q = q * z + 1.f / 9360.f;
  q = q * z - 1.f / 1320.f;
  q = q * z + 1.f / 216.f;
  q = q * z - 1.f / 42.f;
  q = q * z + 1.f / 10.f;
  q = q * z - 1.f / 3.f;
  float small = (q * z * x + x) * 1.1283791670955126f;
  float big = copysign_(1.f - erfc_pos(a), x);
  return a < 0.5f ? small : big;
}
// GELU, exact form: x Phi(x) = x/2 erfc(-x / sqrt 2), without cancellation for x < 0.
LAMINA_INLINE float gelu(float x) {
  float c = erfc_pos_half(fabs_(x));
  float r = 0.5f * x * (x >= 0.f ? 2.f - c : c);
  return x == -kInf ? -0.f : r;
}
// d/dx x Phi(x) = Phi(x) + x phi(x)
LAMINA_INLINE float gelu_grad(float x) {
  float a = fabs_(x);
  float c = erfc_pos_half(a);
  float cdf = 0.5f * (x >= 0.f ? 2.f - c : c);
  float ac = a > 14.8f ? 14.8f : a;
  float ah = as_float(as_bits(ac) & 0xfffff000u);
  float al = ac - ah;
  float pdf = 0.3989422804014327f * exp_core(-0.5f * (ah * ah), -0.5f * al * (ac + ah));
  float r = cdf + x * pdf;
  return a == kInf ? (x > 0.f ? 1.f : 0.f) : r;
}
// e^-|u| for u = sqrt(8/pi) (x + 0.044715 x^3), u formed in double so that its rounding is
// not amplified by exp in the tails; *pos tells whether u >= 0.
LAMINA_INLINE float gelu_tanh_e(float x, bool* pos) {
  double xd = x;
  double u = 1.5957691216057308 * xd * (1.0 + 0.044715 * xd * xd);
  double a = u < 0 ? u : -u;
  a = a < -150.0 ? -150.0 : a;
  float hi = float(a);
  float lo = float(a - double(hi));
  *pos = u >= 0;
  return exp_core(hi, lo);
}
// GELU, tanh approximation: x/2 (1 + tanh(u/2)) = x sigmoid(u).
LAMINA_INLINE float gelu_tanh(float x) {
  bool pos;
  float e = gelu_tanh_e(x, &pos);
  float r = 1.f / (1.f + e);
  float s = pos ? r : e * r;
  float y = x * s;
  return x == -kInf ? -0.f : y;
}
LAMINA_INLINE float gelu_tanh_grad(float x) {
  bool pos;
  float e = gelu_tanh_e(x, &pos);
  float r = 1.f / (1.f + e);
  float s = pos ? r : e * r;
  float sc = e * r * r;  // s (1 - s)
  float du = 1.5957691216057308f * (1.f + 0.134145f * x * x);
  float y = s + x * du * sc;
  return fabs_(x) > 1e4f ? (x > 0.f ? 1.f : 0.f) : y;
}
// log(1 + e^x) = max(x, 0) + log1p(e^-|x|)
LAMINA_INLINE float softplus(float x) { return (x < 0.f ? 0.f : x) + log1p(exp(-fabs_(x))); }
LAMINA_INLINE float silu(float x) {
  float r = x * sigmoid(x);
  return x == -kInf ? -0.f : r;
}
LAMINA_INLINE float silu_grad(float x) {
  float s = sigmoid(x);
  float r = s * (1.f + x * (1.f - s));
  return fabs_(x) == kInf ? (x > 0.f ? 1.f : 0.f) : r;
}
}  // namespace vm

// ---- binary ops ------------------------------------------------------------------------------

template <class T> struct Add { static T f(T a, T b) { return a + b; } };
template <class T> struct Sub { static T f(T a, T b) { return a - b; } };
template <class T> struct Mul { static T f(T a, T b) { return a * b; } };
// Integer division by zero (and INT_MIN / -1) must not trap: they give 0 (and INT_MIN).
template <class T> struct Div { static T f(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) return a / b;
  else return b == 0 ? T(0) : (b == T(-1) ? T(0 - std::make_unsigned_t<T>(a)) : a / b); } };
// maximum / minimum propagate NaN from either side, like numpy.
template <class T> struct Max { static T f(T a, T b) { return (a > b || a != a) ? a : b; } };
template <class T> struct Min { static T f(T a, T b) { return (a < b || a != a) ? a : b; } };
template <class T> struct Pow { static T f(T a, T b) {
  // integer power by squaring, wrapping on overflow; negative exponents truncate like 1 / a^-b
  using U = std::make_unsigned_t<T>;
  if (b < 0) return a == 1 ? T(1) : (a == -1 ? ((b & 1) ? T(-1) : T(1)) : T(0));
  U r = 1, base = U(a);
  for (T e = b; e; e >>= 1) { if (e & 1) r *= base; base *= base; }
  return T(r); } };
template <> struct Pow<float> { static float f(float a, float b) { return std::pow(a, b); } };
// numpy's floor_divide / remainder (npy_divmod): the quotient rounds toward -inf, the remainder
// takes the divisor's sign; integer division by zero gives 0.
template <class T> struct FloorDiv { static T f(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (b == 0) return a / b;
    T mod = std::fmod(a, b);
    T div = (a - mod) / b;
    if (mod != 0 && ((b < 0) != (mod < 0))) div -= T(1);
    if (div == 0) return std::copysign(T(0), a / b);
    T fl = std::floor(div);
    if (div - fl > T(0.5)) fl += T(1);
    return fl;
  } else {
    if (b == 0) return 0;
    if (b == T(-1)) return T(0 - std::make_unsigned_t<T>(a));
    T q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
  } } };
template <class T> struct Mod { static T f(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    T mod = std::fmod(a, b);
    if (b == 0) return mod;
    if (mod != 0) { if ((b < 0) != (mod < 0)) mod += b; }
    else mod = std::copysign(T(0), b);
    return mod;
  } else {
    if (b == 0 || b == T(-1)) return 0;
    T r = a % b;
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return r;
  } } };
template <class T> struct Eq { static uint8_t f(T a, T b) { return a == b; } };
template <class T> struct Ne { static uint8_t f(T a, T b) { return a != b; } };
template <class T> struct Lt { static uint8_t f(T a, T b) { return a < b; } };
template <class T> struct Le { static uint8_t f(T a, T b) { return a <= b; } };
template <class T> struct Gt { static uint8_t f(T a, T b) { return a > b; } };
template <class T> struct Ge { static uint8_t f(T a, T b) { return a >= b; } };
// ---- numpy's further binary float maths (arctan2, hypot, fmod, copysign, ...) ----------------
struct Arctan2 { static float f(float a, float b) { return std::atan2(a, b); } };
// sqrt(a^2 + b^2) in double: no overflow or underflow for float operands; inf wins over NaN.
struct Hypot { static float f(float a, float b) {
  double r = std::sqrt(double(a) * double(a) + double(b) * double(b));
  return (vm::fabs_(a) == vm::kInf || vm::fabs_(b) == vm::kInf) ? vm::kInf : float(r); } };
// C fmod: the remainder of truncated division, with the dividend's sign; integer fmod by zero
// (and by -1, whose INT_MIN case would trap) gives 0, as numpy.
template <class T> struct Fmod { static T f(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) return std::fmod(a, b);
  else return (b == 0 || b == T(-1)) ? T(0) : T(a % b); } };
struct Copysign { static float f(float a, float b) { return vm::copysign_(a, b); } };
struct Nextafter { static float f(float a, float b) { return std::nextafter(a, b); } };
// fmax / fmin ignore a NaN operand (NaN only when both are NaN), unlike maximum / minimum.
template <class T> struct Fmax { static T f(T a, T b) { return (a >= b || b != b) ? a : b; } };
template <class T> struct Fmin { static T f(T a, T b) { return (a <= b || b != b) ? a : b; } };
// 0 for a < 0, 1 for a > 0, b at a == 0, NaN for NaN a.
struct Heaviside { static float f(float a, float b) { return a != a ? a : (a < 0.f ? 0.f : (a > 0.f ? 1.f : b)); } };
// a * 2^b for an integral b (held as float): exact, overflow to inf and underflow to 0 as libm.
struct Ldexp { static float f(float a, float b) {
  if (b != b) return b;
  float e = b > 400.f ? 400.f : (b < -400.f ? -400.f : b);
  return std::ldexp(a, int(e)); } };
// log2(2^a + 2^b) = max + log2(1 + 2^-|a - b|); equal operands (also equal infinities) give a + 1.
struct Logaddexp2 { static float f(float a, float b) {
  float m = a > b ? a : b;
  float d = vm::fabs_(a - b);
  float r = m + vm::log1p(vm::exp2(-d)) * 1.44269504088896341f;
  r = a == b ? a + 1.f : r;
  return (a != a || b != b) ? a + b : r; } };
// Shifts as numpy: a shift by a negative count or by at least the width gives 0 (and -1 for a
// negative value shifted right); left shifts wrap.
template <class T> struct LeftShift { static T f(T a, T b) {
  using U = std::make_unsigned_t<T>;
  return U(b) < U(sizeof(T) * 8) ? T(U(a) << U(b)) : T(0); } };
template <class T> struct RightShift { static T f(T a, T b) {
  using U = std::make_unsigned_t<T>;
  return U(b) < U(sizeof(T) * 8) ? T(a >> U(b)) : (a < 0 ? T(-1) : T(0)); } };
template <class T> struct BitAnd { static T f(T a, T b) { return a & b; } };
template <class T> struct BitOr { static T f(T a, T b) { return a | b; } };
template <class T> struct BitXor { static T f(T a, T b) { return a ^ b; } };
// gcd / lcm of the magnitudes (Euclid on unsigned values, so INT_MIN cannot trap); lcm wraps on
// overflow like numpy's.
template <class T> static std::make_unsigned_t<T> gcd_abs(T a, T b) {
  using U = std::make_unsigned_t<T>;
  U x = a < 0 ? U(0) - U(a) : U(a), y = b < 0 ? U(0) - U(b) : U(b);
  while (y) { U t = x % y; x = y; y = t; }
  return x;
}
template <class T> struct Gcd { static T f(T a, T b) { return T(gcd_abs(a, b)); } };
template <class T> struct Lcm { static T f(T a, T b) {
  using U = std::make_unsigned_t<T>;
  U g = gcd_abs(a, b);
  if (g == 0) return 0;
  U x = a < 0 ? U(0) - U(a) : U(a), y = b < 0 ? U(0) - U(b) : U(b);
  return T((x / g) * y); } };
struct And { static uint8_t f(uint8_t a, uint8_t b) { return (a != 0) & (b != 0); } };
struct Or { static uint8_t f(uint8_t a, uint8_t b) { return (a != 0) | (b != 0); } };
struct Xor { static uint8_t f(uint8_t a, uint8_t b) { return (a != 0) != (b != 0); } };

// One run of a broadcast binary op: x and y advance by sx / sy (1, or 0 for a broadcast operand).
template <class F, class T, class R>
LAMINA_INLINE void binary_run_body(const T* x, int64_t sx, const T* y, int64_t sy, R* z, int64_t n) {
  if (sx == 1 && sy == 1) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) z[i] = F::f(x[i], y[i]);
  } else if (sx == 1) {
    const T v = y[0];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) z[i] = F::f(x[i], v);
  } else if (sy == 1) {
    const T v = x[0];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) z[i] = F::f(v, y[i]);
  } else {
    const R v = F::f(x[0], y[0]);
    for (int64_t i = 0; i < n; ++i) z[i] = v;
  }
}

// out = a (op) b with broadcasting. The inner loops of the common layouts -- same shape,
// tensor (op) scalar, (N, C) (op) (C,) -- are unit-stride and vectorise; the element range is
// split across threads.
template <class F, class T, class R>
static void run_binary(const T* a, const Shape& as, const T* b, const Shape& bs, R* o, const Shape& os, const char* name) {
  BroadcastPlan p = make_plan({&as, &bs}, os, name);
  for_each_run(p, [&](const int64_t* off, int64_t oo, int64_t n, const int64_t* st) {
    binary_run_body<F>(a + off[0], st[0], b + off[1], st[1], o + oo, n);
  });
}

// float32 add, subtract, multiply, divide, maximum and minimum: run_binary's unit-stride runs
// compiled for AVX2 and AVX-512 as well, chosen by the SIMD variant in use (at the module's baseline
// ISA, SSE2, they ran at up to half the speed on data in cache). One operation an element, so
// every variant rounds alike.
template <class F>
static void binary_run_generic(const float* x, int64_t sx, const float* y, int64_t sy, float* z, int64_t n) {
  binary_run_body<F>(x, sx, y, sy, z, n);
}
#if LAMINA_X86
template <class F>
LAMINA_TARGET_AVX2 static void binary_run_avx2(const float* x, int64_t sx, const float* y, int64_t sy, float* z,
                                               int64_t n) {
  binary_run_body<F>(x, sx, y, sy, z, n);
}
template <class F>
LAMINA_TARGET_AVX512 static void binary_run_avx512(const float* x, int64_t sx, const float* y, int64_t sy, float* z,
                                                   int64_t n) {
  binary_run_body<F>(x, sx, y, sy, z, n);
}
#endif

template <class F>
static void run_binary_f32(const float* a, const Shape& as, const float* b, const Shape& bs, float* o, const Shape& os,
                           const char* name) {
  BroadcastPlan p = make_plan({&as, &bs}, os, name);
  auto run = binary_run_generic<F>;
#if LAMINA_X86
  if (g_isa == ISA_AVX512) run = binary_run_avx512<F>;
  else if (g_isa == ISA_AVX2) run = binary_run_avx2<F>;
#endif
  for_each_run(p, [&](const int64_t* off, int64_t oo, int64_t n, const int64_t* st) {
    run(a + off[0], st[0], b + off[1], st[1], o + oo, n);
  });
}

// The float32 ops above through run_binary_f32, everything else through run_binary.
template <template <class> class Op, class T>
static void run_binary_op(const T* a, const Shape& as, const T* b, const Shape& bs, T* o, const Shape& os,
                          const char* name) {
  if constexpr (std::is_same_v<T, float>) run_binary_f32<Op<float>>(a, as, b, bs, o, os, name);
  else run_binary<Op<T>>(a, as, b, bs, o, os, name);
}

// x ** c for a scalar exponent c in {0, 1, 2, -1}: exact shortcuts of pow that vectorise.
static bool pow_scalar_shortcut(const float* x, const Shape& xs, float c, float* o) {
  if (!(c == 0.f || c == 1.f || c == 2.f || c == -1.f)) return false;
  for_each_chunk(numel_of(xs), [&](int64_t s, int64_t m) {
    const float* a = x + s;
    float* z = o + s;
    if (c == 2.f) {
#pragma omp simd
      for (int64_t i = 0; i < m; ++i) z[i] = a[i] * a[i];
    } else if (c == 1.f) {
#pragma omp simd
      for (int64_t i = 0; i < m; ++i) z[i] = a[i];
    } else if (c == -1.f) {
#pragma omp simd
      for (int64_t i = 0; i < m; ++i) z[i] = 1.f / a[i];
    } else {
      for (int64_t i = 0; i < m; ++i) z[i] = 1.f;
    }
  });
  return true;
}

// Comparisons into the bool o: T's comparison ops, applied to elements E through Wrap (Direct:
// as they are; Widened: bfloat16 elements compared as float32).
struct Direct { template <class F> using W = F; };
template <class F> struct BFTest {
  static uint8_t f(uint16_t a, uint16_t b) { return F::f(bf16_to_f32(a), bf16_to_f32(b)); }
};
struct Widened { template <class F> using W = BFTest<F>; };
template <class T, class E, class Wrap>
static void compare(int op, const E* x, const Shape& as, const E* y, const Shape& bs, Buffer& o, const Shape& os) {
  check_buffer("compare", "out", o, os, BOOL);
  uint8_t* z = o.data<uint8_t>();
  switch (op) {
    case EQ: run_binary<typename Wrap::template W<Eq<T>>>(x, as, y, bs, z, os, "equal"); break;
    case NE: run_binary<typename Wrap::template W<Ne<T>>>(x, as, y, bs, z, os, "not_equal"); break;
    case LT: run_binary<typename Wrap::template W<Lt<T>>>(x, as, y, bs, z, os, "less"); break;
    case LE: run_binary<typename Wrap::template W<Le<T>>>(x, as, y, bs, z, os, "less_equal"); break;
    case GT: run_binary<typename Wrap::template W<Gt<T>>>(x, as, y, bs, z, os, "greater"); break;
    case GE: run_binary<typename Wrap::template W<Ge<T>>>(x, as, y, bs, z, os, "greater_equal"); break;
  }
}

template <class T>
static void binary_typed(int op, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os) {
  const T* x = a.data<T>();
  const T* y = b.data<T>();
  if (op >= EQ && op <= GE) return compare<T, T, Direct>(op, x, as, y, bs, o, os);
  check_buffer("binary", "out", o, os, a.dtype);
  T* z = o.data<T>();
  switch (op) {
    case ADD: run_binary_op<Add>(x, as, y, bs, z, os, "add"); break;
    case SUB: run_binary_op<Sub>(x, as, y, bs, z, os, "subtract"); break;
    case MUL: run_binary_op<Mul>(x, as, y, bs, z, os, "multiply"); break;
    case DIV: run_binary_op<Div>(x, as, y, bs, z, os, "divide"); break;
    case POW:
      if constexpr (std::is_same_v<T, float>)
        if (b.numel == 1 && as == os && pow_scalar_shortcut(x, as, y[0], z)) break;
      run_binary<Pow<T>>(x, as, y, bs, z, os, "power");
      break;
    case MAXIMUM: run_binary_op<Max>(x, as, y, bs, z, os, "maximum"); break;
    case MINIMUM: run_binary_op<Min>(x, as, y, bs, z, os, "minimum"); break;
    case FLOORDIV: run_binary<FloorDiv<T>>(x, as, y, bs, z, os, "floor_divide"); break;
    case MOD: run_binary<Mod<T>>(x, as, y, bs, z, os, "mod"); break;
    case FMOD: run_binary<Fmod<T>>(x, as, y, bs, z, os, "fmod"); break;
    case FMAX: run_binary<Fmax<T>>(x, as, y, bs, z, os, "fmax"); break;
    case FMIN: run_binary<Fmin<T>>(x, as, y, bs, z, os, "fmin"); break;
    default:
      if constexpr (std::is_floating_point_v<T>) {
        switch (op) {
          case ARCTAN2: run_binary<Arctan2>(x, as, y, bs, z, os, "arctan2"); return;
          case HYPOT: run_binary<Hypot>(x, as, y, bs, z, os, "hypot"); return;
          case COPYSIGN: run_binary<Copysign>(x, as, y, bs, z, os, "copysign"); return;
          case NEXTAFTER: run_binary<Nextafter>(x, as, y, bs, z, os, "nextafter"); return;
          case HEAVISIDE: run_binary<Heaviside>(x, as, y, bs, z, os, "heaviside"); return;
          case LDEXP: run_binary<Ldexp>(x, as, y, bs, z, os, "ldexp"); return;
          case LOGADDEXP2: run_binary<Logaddexp2>(x, as, y, bs, z, os, "logaddexp2"); return;
        }
      } else {
        switch (op) {
          case AND: run_binary<BitAnd<T>>(x, as, y, bs, z, os, "bitwise_and"); return;
          case OR: run_binary<BitOr<T>>(x, as, y, bs, z, os, "bitwise_or"); return;
          case XOR: run_binary<BitXor<T>>(x, as, y, bs, z, os, "bitwise_xor"); return;
          case LEFT_SHIFT: run_binary<LeftShift<T>>(x, as, y, bs, z, os, "left_shift"); return;
          case RIGHT_SHIFT: run_binary<RightShift<T>>(x, as, y, bs, z, os, "right_shift"); return;
          case GCD: run_binary<Gcd<T>>(x, as, y, bs, z, os, "gcd"); return;
          case LCM: run_binary<Lcm<T>>(x, as, y, bs, z, os, "lcm"); return;
        }
      }
      LAMINA_CHECK(false, "binary: op code " << op << " is not defined for " << dtype_name(a.dtype) << " tensors");
  }
}

// bfloat16 operands (mixed precision): each of float32's ops on the widened values, the result
// rounded once; comparisons of the values themselves.
// bfloat16 (mixed precision) elementwise kernels: blocks of the elements widened to float32 on the
// stack, the float32 kernel run on each block, its results rounded once into the output.
constexpr int64_t kBF16Block = 1024;
static void widen_block(const uint16_t* s, float* d, int64_t n) { bf16_widen_row(s, d, n); }
static void round_block(const float* s, uint16_t* d, int64_t n) { bf16_round_row(s, d, n); }
template <class F> struct BF {
  static uint16_t f(uint16_t a, uint16_t b) { return f32_to_bf16(F::f(bf16_to_f32(a), bf16_to_f32(b))); }
};
// a and b of the output's shape: blocks of both widened (vectorized), F on float32, rounded once
// (as BF<F> element by element).
template <class F>
static void binary_bf16_same(const uint16_t* x, const uint16_t* y, uint16_t* z, int64_t n) {
  for_each_chunk(n, [&](int64_t s, int64_t m) {
    float u[kBF16Block], v[kBF16Block];
    for (int64_t o = s; o < s + m; o += kBF16Block) {
      const int64_t k = std::min(kBF16Block, s + m - o);
      widen_block(x + o, u, k);
      widen_block(y + o, v, k);
#pragma omp simd
      for (int64_t i = 0; i < k; ++i) u[i] = F::f(u[i], v[i]);
      round_block(u, z + o, k);
    }
  });
}
// z[r, c] = F(x[r, c], y[c]): y (C values, C <= kBF16Block) widened once, x by blocks of whole rows.
template <class F>
static void binary_bf16_rows(const uint16_t* x, const uint16_t* y, uint16_t* z, int64_t rows, int64_t C) {
  const int64_t per = std::max<int64_t>(1, kBF16Block / C);  // rows per block
  run_parallel(rows * C > kParallelGrain && rows > 1, [&](int nt, int tid) {
    const int64_t r0 = rows * tid / nt, r1 = rows * (tid + 1) / nt;
    float u[kBF16Block], v[kBF16Block];
    widen_block(y, v, C);
    for (int64_t r = r0; r < r1; r += per) {
      const int64_t m = std::min(per, r1 - r);
      widen_block(x + r * C, u, m * C);
      for (int64_t i = 0; i < m; ++i) {
        float* ui = u + i * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) ui[c] = F::f(ui[c], v[c]);
      }
      round_block(u, z + r * C, m * C);
    }
  });
}

// Whether `s` (leading ones aside) is the trailing part of `os`: a row broadcast along os's last dims.
static bool trailing_of(const Shape& s, const Shape& os) {
  size_t lead = 0;
  while (lead < s.size() && s[lead] == 1) ++lead;
  const size_t n = s.size() - lead;
  if (n > os.size()) return false;
  for (size_t i = 0; i < n; ++i)
    if (s[lead + i] != os[os.size() - n + i]) return false;
  return true;
}

static void binary_bf16(int op, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o,
                        const Shape& os) {
  const uint16_t* x = a.data<uint16_t>();
  const uint16_t* y = b.data<uint16_t>();
  if (op >= EQ && op <= GE) return compare<float, uint16_t, Widened>(op, x, as, y, bs, o, os);
  check_buffer("binary", "out", o, os, BF16);
  uint16_t* z = o.data<uint16_t>();
  if (as == os && bs == os) {
    const int64_t n = numel_of(os);
    switch (op) {
      case ADD: return binary_bf16_same<Add<float>>(x, y, z, n);
      case SUB: return binary_bf16_same<Sub<float>>(x, y, z, n);
      case MUL: return binary_bf16_same<Mul<float>>(x, y, z, n);
      case MAXIMUM: return binary_bf16_same<Max<float>>(x, y, z, n);
      case MINIMUM: return binary_bf16_same<Min<float>>(x, y, z, n);
      default: break;
    }
  }
  const int64_t C = numel_of(bs), n = numel_of(os);
  if (as == os && C > 0 && C <= kBF16Block && n % C == 0 && trailing_of(bs, os)) {  // x (op) a row, e.g. a bias
    switch (op) {
      case ADD: return binary_bf16_rows<Add<float>>(x, y, z, n / C, C);
      case SUB: return binary_bf16_rows<Sub<float>>(x, y, z, n / C, C);
      case MUL: return binary_bf16_rows<Mul<float>>(x, y, z, n / C, C);
      default: break;
    }
  }
  switch (op) {
    case ADD: return run_binary<BF<Add<float>>>(x, as, y, bs, z, os, "add");
    case SUB: return run_binary<BF<Sub<float>>>(x, as, y, bs, z, os, "subtract");
    case MUL: return run_binary<BF<Mul<float>>>(x, as, y, bs, z, os, "multiply");
    case DIV: return run_binary<BF<Div<float>>>(x, as, y, bs, z, os, "divide");
    case POW: return run_binary<BF<Pow<float>>>(x, as, y, bs, z, os, "power");
    case MAXIMUM: return run_binary<BF<Max<float>>>(x, as, y, bs, z, os, "maximum");
    case MINIMUM: return run_binary<BF<Min<float>>>(x, as, y, bs, z, os, "minimum");
    case FLOORDIV: return run_binary<BF<FloorDiv<float>>>(x, as, y, bs, z, os, "floor_divide");
    case MOD: return run_binary<BF<Mod<float>>>(x, as, y, bs, z, os, "mod");
    case FMOD: return run_binary<BF<Fmod<float>>>(x, as, y, bs, z, os, "fmod");
    case FMAX: return run_binary<BF<Fmax<float>>>(x, as, y, bs, z, os, "fmax");
    case FMIN: return run_binary<BF<Fmin<float>>>(x, as, y, bs, z, os, "fmin");
    case ARCTAN2: return run_binary<BF<Arctan2>>(x, as, y, bs, z, os, "arctan2");
    case HYPOT: return run_binary<BF<Hypot>>(x, as, y, bs, z, os, "hypot");
    case COPYSIGN: return run_binary<BF<Copysign>>(x, as, y, bs, z, os, "copysign");
    case HEAVISIDE: return run_binary<BF<Heaviside>>(x, as, y, bs, z, os, "heaviside");
    case LDEXP: return run_binary<BF<Ldexp>>(x, as, y, bs, z, os, "ldexp");
    case LOGADDEXP2: return run_binary<BF<Logaddexp2>>(x, as, y, bs, z, os, "logaddexp2");
  }
  throw TypeError("binary: op code " + std::to_string(op) + " is not defined for bfloat16 tensors (nextafter and "
                  "the integer ops); cast to float32 first");
}

// out = a (op) b with numpy broadcasting. a and b share a dtype; comparisons write bool.
static void binary(int op, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os) {
  LAMINA_CHECK(op >= 0 && op < BINARY_COUNT, "binary: unknown op code " << op);
  check_buffer("binary", "a", a, as, a.dtype);
  check_buffer("binary", "b", b, bs, a.dtype);
  switch (a.dtype) {
    case F32: binary_typed<float>(op, a, as, b, bs, o, os); break;
    case I32: binary_typed<int32_t>(op, a, as, b, bs, o, os); break;
    case I8: throw TypeError("binary: int8 tensors hold quantized weights and take no arithmetic");
    case BF16: binary_bf16(op, a, as, b, bs, o, os); break;
    case I64: binary_typed<int64_t>(op, a, as, b, bs, o, os); break;
    case BOOL: {
      check_buffer("logical", "out", o, os, BOOL);
      const uint8_t* x = a.data<uint8_t>();
      const uint8_t* y = b.data<uint8_t>();
      uint8_t* z = o.data<uint8_t>();
      switch (op) {
        case AND: case MUL: case MINIMUM: run_binary<And>(x, as, y, bs, z, os, "logical_and"); break;
        case OR: case ADD: case MAXIMUM: run_binary<Or>(x, as, y, bs, z, os, "logical_or"); break;
        case XOR: case NE: run_binary<Xor>(x, as, y, bs, z, os, "logical_xor"); break;
        case EQ: run_binary<Eq<uint8_t>>(x, as, y, bs, z, os, "equal"); break;
        case LT: run_binary<Lt<uint8_t>>(x, as, y, bs, z, os, "less"); break;
        case LE: run_binary<Le<uint8_t>>(x, as, y, bs, z, os, "less_equal"); break;
        case GT: run_binary<Gt<uint8_t>>(x, as, y, bs, z, os, "greater"); break;
        case GE: run_binary<Ge<uint8_t>>(x, as, y, bs, z, os, "greater_equal"); break;
        default: LAMINA_CHECK(false, "binary: op code " << op << " is not defined for bool tensors; cast to int32 or float32 first");
      }
    }
  }
}

// out = cond ? a : b, all three broadcast to the output shape.
template <class T>
static void where_typed(const Buffer& c, const Shape& cs, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os) {
  BroadcastPlan p = make_plan({&cs, &as, &bs}, os, "where");
  const uint8_t* C = c.data<uint8_t>();
  const T* A = a.data<T>();
  const T* B = b.data<T>();
  T* O = o.data<T>();
  for_each_run(p, [&](const int64_t* off, int64_t oo, int64_t n, const int64_t* st) {
    const uint8_t* cc = C + off[0];
    const T* x = A + off[1];
    const T* y = B + off[2];
    T* z = O + oo;
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) z[i] = cc[i] ? x[i] : y[i];
    } else {
      const int64_t s0 = st[0], s1 = st[1], s2 = st[2];
      for (int64_t i = 0; i < n; ++i) z[i] = cc[i * s0] ? x[i * s1] : y[i * s2];
    }
  });
}
static void where(const Buffer& c, const Shape& cs, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os) {
  check_buffer("where", "condition", c, cs, BOOL);
  check_buffer("where", "x1", a, as, a.dtype);
  check_buffer("where", "x2", b, bs, a.dtype);
  check_buffer("where", "out", o, os, a.dtype);
  switch (a.dtype) {
    case F32: where_typed<float>(c, cs, a, as, b, bs, o, os); break;
    case I32: where_typed<int32_t>(c, cs, a, as, b, bs, o, os); break;
    case I64: where_typed<int64_t>(c, cs, a, as, b, bs, o, os); break;
    case BOOL: where_typed<uint8_t>(c, cs, a, as, b, bs, o, os); break;
    case BF16: where_typed<uint16_t>(c, cs, a, as, b, bs, o, os); break;
    case I8: throw TypeError("where: int8 tensors hold quantized weights and take no arithmetic");
  }
}

// The float ops computed one element at a time through libm or the double helpers of
// elementwise_shared.h (erfinv_f, bessel_i, shared with the GPU).
static bool unary_f32_scalar(int op, const float* x, float* y, int64_t n) {
  auto run = [&](auto f) {
    for_each_chunk(n, [&](int64_t s, int64_t m) {
      for (int64_t i = s; i < s + m; ++i) y[i] = f(x[i]);
    });
  };
  switch (op) {
    case SIN: run([](float v) { return std::sin(v); }); return true;
    case COS: run([](float v) { return std::cos(v); }); return true;
    case TAN: run([](float v) { return std::tan(v); }); return true;
    case ARCSIN: run([](float v) { return std::asin(v); }); return true;
    case ARCCOS: run([](float v) { return std::acos(v); }); return true;
    case ARCTAN: run([](float v) { return std::atan(v); }); return true;
    case SINH: run([](float v) { return std::sinh(v); }); return true;
    case COSH: run([](float v) { return std::cosh(v); }); return true;
    case ARCSINH: run([](float v) { return std::asinh(v); }); return true;
    case ARCCOSH: run([](float v) { return std::acosh(v); }); return true;
    case ARCTANH: run([](float v) { return std::atanh(v); }); return true;
    case CBRT: run([](float v) { return std::cbrt(v); }); return true;
    case ERFC: run([](float v) { return float(std::erfc(double(v))); }); return true;  // < 1 ulp
    case ERFINV: run([](float v) { return erfinv_f(v); }); return true;
    case I0: run([](float v) { return bessel_i(v, 0); }); return true;
    case I1: run([](float v) { return bessel_i(v, 1); }); return true;
    default: return false;
  }
}

// ---- unary maths -----------------------------------------------------------------------------

static constexpr float kSeluAlpha = 1.6732632423543772f, kSeluScale = 1.0507009873554805f;

template <class F>
LAMINA_INLINE void map1(const float* x, float* y, int64_t n, F f) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
}
template <class F>
LAMINA_INLINE void map2(const float* s, const float* g, float* y, int64_t n, F f) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = f(s[i], g[i]);
}

// y = f(x) for the float ops; returns false for an op it does not handle. Compiled once per ISA.
LAMINA_INLINE bool unary_f32_body(int op, const float* x, float* y, int64_t n, float alpha) {
#define U(CODE, EXPR) \
  case CODE: map1(x, y, n, [alpha](float v) LAMINA_LAMBDA { (void)alpha; return (EXPR); }); return true;
  switch (op) {
    U(NEG, -v)
    U(EXP, vm::exp(v))
    U(EXP2, vm::exp2(v))
    U(EXPM1, vm::expm1(v))
    U(LOG, vm::log(v))
    U(LOG2, vm::log2(v))
    U(LOG10, vm::log10(v))
    U(LOG1P, vm::log1p(v))
    U(SQRT, std::sqrt(v))
    U(RSQRT, 1.f / std::sqrt(v))
    U(ABS, vm::fabs_(v))
    U(TANH, vm::tanh(v))
    U(SIGMOID, vm::sigmoid(v))
    U(RELU, v < 0.f ? 0.f : v)
    U(RELU6, v < 0.f ? 0.f : (v > 6.f ? 6.f : v))
    U(LEAKY_RELU, v > 0.f ? v : alpha * v)
    U(SOFTPLUS, vm::softplus(v))
    U(SOFTSIGN, vm::fabs_(v) == vm::kInf ? vm::copysign_(1.f, v) : v / (1.f + vm::fabs_(v)))
    U(ELU, v > 0.f ? v : alpha * vm::expm1(v))
    U(SELU, kSeluScale * (v > 0.f ? v : kSeluAlpha * vm::expm1(v)))
    U(GELU, vm::gelu(v))
    U(GELU_TANH, vm::gelu_tanh(v))
    U(SILU, vm::silu(v))
    U(HARD_SIGMOID, v / 6.f + 0.5f < 0.f ? 0.f : (v / 6.f + 0.5f > 1.f ? 1.f : v / 6.f + 0.5f))
    U(SQUARE, v * v)
    U(SIGN, v != v ? v : float((v > 0.f) - (v < 0.f)))
    U(RECIPROCAL, 1.f / v)
    U(ERF, vm::erf(v))
    U(FLOOR, std::floor(v))
    U(CEIL, std::ceil(v))
    U(ROUND, std::rint(v))
    U(TRUNC, std::trunc(v))
    default: return false;
  }
#undef U
}

static void unary_f32_generic(int op, const float* x, float* y, int64_t n, float a) { unary_f32_body(op, x, y, n, a); }
#if LAMINA_X86
LAMINA_TARGET_AVX2 static void unary_f32_avx2(int op, const float* x, float* y, int64_t n, float a) { unary_f32_body(op, x, y, n, a); }
LAMINA_TARGET_AVX512 static void unary_f32_avx512(int op, const float* x, float* y, int64_t n, float a) { unary_f32_body(op, x, y, n, a); }
#endif

static void unary_f32(int op, const float* x, float* y, int64_t n, float a) {
#if LAMINA_X86
  if (g_isa == ISA_AVX512) return unary_f32_avx512(op, x, y, n, a);
  if (g_isa == ISA_AVX2) return unary_f32_avx2(op, x, y, n, a);
#endif
  unary_f32_generic(op, x, y, n, a);
}

template <class T>
static void unary_int(int op, const T* x, T* o, int64_t n, DType dt) {
  auto run = [&](auto f) {
    for_each_chunk(n, [&](int64_t s, int64_t m) {
#pragma omp simd
      for (int64_t i = s; i < s + m; ++i) o[i] = f(x[i]);
    });
  };
  using U = std::make_unsigned_t<T>;
  switch (op) {
    case NEG: run([](T v) { return T(U(0) - U(v)); }); break;
    case ABS: run([](T v) { return v < 0 ? T(U(0) - U(v)) : v; }); break;
    case SQUARE: run([](T v) { return T(U(v) * U(v)); }); break;
    case SIGN: run([](T v) { return T((v > 0) - (v < 0)); }); break;
    case RELU: run([](T v) { return v > 0 ? v : T(0); }); break;
    case FLOOR: case CEIL: case ROUND: case TRUNC: run([](T v) { return v; }); break;
    case BITWISE_NOT: run([](T v) { return T(~v); }); break;
    default: LAMINA_CHECK(false, "unary: op code " << op << " needs a float tensor, received " << dtype_name(dt));
  }
}

// out = f(x) elementwise; `alpha` parametrises elu / leaky_relu. bfloat16: by blocks (above).
static void unary_bf16(int op, const uint16_t* x, uint16_t* y, int64_t n, float alpha) {
  for_each_chunk(n, [&](int64_t s, int64_t m) {
    float buf[kBF16Block];
    for (int64_t o = s; o < s + m; o += kBF16Block) {
      const int64_t k = std::min(kBF16Block, s + m - o);
      widen_block(x + o, buf, k);
      if (!unary_f32_scalar(op, buf, buf, k)) unary_f32(op, buf, buf, k, alpha);
      round_block(buf, y + o, k);
    }
  });
}

static void unary(int op, const Buffer& xb, Buffer& ob, double alpha_d) {
  LAMINA_CHECK(op >= 0 && op < UNARY_COUNT, "unary: unknown op code " << op);
  LAMINA_CHECK(xb.numel == ob.numel, "unary: input has " << xb.numel << " elements, output " << ob.numel);
  const int64_t n = xb.numel;
  if (op == SIGNBIT) {
    check_dtype("unary", "out", ob, BOOL);
    uint8_t* o = ob.data<uint8_t>();
    auto run = [&](auto* x, auto f) {
      for_each_chunk(n, [&](int64_t s, int64_t m) {
#pragma omp simd
        for (int64_t i = s; i < s + m; ++i) o[i] = f(x[i]);
      });
    };
    switch (xb.dtype) {
      case F32: run(xb.data<uint32_t>(), [](uint32_t v) { return uint8_t(v >> 31); }); break;  // -0.0 and -NaN too
      case I32: run(xb.data<int32_t>(), [](int32_t v) { return uint8_t(v < 0); }); break;
      case I64: run(xb.data<int64_t>(), [](int64_t v) { return uint8_t(v < 0); }); break;
      case BOOL: std::memset(o, 0, size_t(n)); break;
      case BF16: run(xb.data<uint16_t>(), [](uint16_t v) { return uint8_t(v >> 15); }); break;
      default: throw TypeError(std::string("unary: signbit of ") + dtype_name(xb.dtype) + " tensors is not a kernel here");
    }
    return;
  }
  if (op == ISNAN || op == ISFINITE || op == ISINF) {
    check_dtype("unary", "out", ob, BOOL);
    uint8_t* o = ob.data<uint8_t>();
    if (xb.dtype == BF16) {  // by bits, as float32's below
      const uint16_t* x = xb.data<uint16_t>();
      for_each_chunk(n, [&](int64_t s, int64_t m) {
        for (int64_t i = s; i < s + m; ++i) {
          const uint16_t e = x[i] & 0x7fffu;
          o[i] = op == ISNAN ? e > 0x7f80u : op == ISINF ? e == 0x7f80u : e < 0x7f80u;
        }
      });
      return;
    }
    if (xb.dtype != F32) { std::memset(o, op == ISFINITE, size_t(n)); return; }
    const uint32_t* x = xb.data<uint32_t>();  // classify by bits: immune to -ffast-math
    for_each_chunk(n, [&](int64_t s, int64_t m) {
      if (op == ISNAN) {
#pragma omp simd
        for (int64_t i = s; i < s + m; ++i) o[i] = (x[i] & 0x7fffffffu) > 0x7f800000u;
      } else if (op == ISINF) {
#pragma omp simd
        for (int64_t i = s; i < s + m; ++i) o[i] = (x[i] & 0x7fffffffu) == 0x7f800000u;
      } else {
#pragma omp simd
        for (int64_t i = s; i < s + m; ++i) o[i] = (x[i] & 0x7fffffffu) < 0x7f800000u;
      }
    });
    return;
  }
  check_dtype("unary", "out", ob, xb.dtype);
  if (xb.dtype == BOOL) {
    LAMINA_CHECK(op == LOGICAL_NOT || op == BITWISE_NOT, "unary: op code " << op << " is not defined for bool tensors");
    const uint8_t* x = xb.data<uint8_t>();
    uint8_t* o = ob.data<uint8_t>();
    for (int64_t i = 0; i < n; ++i) o[i] = !x[i];
    return;
  }
  LAMINA_CHECK(op != LOGICAL_NOT, "unary: logical_not needs a bool tensor, received " << dtype_name(xb.dtype));
  if (xb.dtype == BF16) {
    LAMINA_CHECK(op != BITWISE_NOT, "unary: bitwise_not needs an integer or bool tensor, received bfloat16");
    return unary_bf16(op, xb.data<uint16_t>(), ob.data<uint16_t>(), n, float(alpha_d));
  }
  if (xb.dtype == I32) return unary_int(op, xb.data<int32_t>(), ob.data<int32_t>(), n, xb.dtype);
  if (xb.dtype == I64) return unary_int(op, xb.data<int64_t>(), ob.data<int64_t>(), n, xb.dtype);
  if (xb.dtype == I8) throw TypeError("unary: int8 tensors hold quantized weights and take no arithmetic");
  const float* x = xb.data<float>();
  float* y = ob.data<float>();
  const float alpha = float(alpha_d);
  LAMINA_CHECK(op != BITWISE_NOT, "unary: bitwise_not needs an integer or bool tensor, received float32");
  if (unary_f32_scalar(op, x, y, n)) return;  // libm and double helpers: these do not vectorise
  for_each_chunk(n, [&](int64_t s, int64_t m) { unary_f32(op, x + s, y + s, m, alpha); });
}

// Derivative kernels: out = g * f'(.) where the saved value is x (the input) or y (the output).

LAMINA_INLINE void unary_grad_body(int op, const float* s, const float* g, float* o, int64_t n, float alpha) {
#define G(CODE, EXPR) \
  case CODE: map2(s, g, o, n, [alpha](float v, float d) LAMINA_LAMBDA { (void)alpha; return (EXPR); }); return;
  switch (op) {
    G(RELU_GRAD, v > 0.f ? d : 0.f)
    G(SIGMOID_GRAD_Y, d * v * (1.f - v))
    G(TANH_GRAD_Y, d * (1.f - v * v))
    G(ELU_GRAD_X, v > 0.f ? d : d * alpha * vm::exp(v))
    G(SELU_GRAD_X, d * kSeluScale * (v > 0.f ? 1.f : kSeluAlpha * vm::exp(v)))
    G(GELU_GRAD_X, d * vm::gelu_grad(v))
    G(GELU_TANH_GRAD_X, d * vm::gelu_tanh_grad(v))
    G(SOFTPLUS_GRAD_X, d * vm::sigmoid(v))
    G(LEAKY_RELU_GRAD_X, v > 0.f ? d : alpha * d)
    G(RELU6_GRAD_X, (v > 0.f && v < 6.f) ? d : 0.f)
    G(SILU_GRAD_X, d * vm::silu_grad(v))
    G(HARD_SIGMOID_GRAD_X, (v > -3.f && v < 3.f) ? d * (1.f / 6.f) : 0.f)
    G(SOFTSIGN_GRAD_X, d / ((1.f + vm::fabs_(v)) * (1.f + vm::fabs_(v))))
    default: return;
  }
#undef G
}
static void unary_grad_generic(int op, const float* s, const float* g, float* o, int64_t n, float a) { unary_grad_body(op, s, g, o, n, a); }
#if LAMINA_X86
LAMINA_TARGET_AVX2 static void unary_grad_avx2(int op, const float* s, const float* g, float* o, int64_t n, float a) { unary_grad_body(op, s, g, o, n, a); }
LAMINA_TARGET_AVX512 static void unary_grad_avx512(int op, const float* s, const float* g, float* o, int64_t n, float a) { unary_grad_body(op, s, g, o, n, a); }
#endif

static void unary_grad_f32(int op, const float* s, const float* g, float* o, int64_t m, float alpha) {
#if LAMINA_X86
  if (g_isa == ISA_AVX512) return unary_grad_avx512(op, s, g, o, m, alpha);
  if (g_isa == ISA_AVX2) return unary_grad_avx2(op, s, g, o, m, alpha);
#endif
  unary_grad_generic(op, s, g, o, m, alpha);
}

// float32, or bfloat16 throughout (its blocks widened on the stack, as unary_bf16's).
static void unary_grad(int op, const Buffer& sb, const Buffer& gb, Buffer& ob, double alpha_d) {
  LAMINA_CHECK(op >= 0 && op < GRAD_COUNT, "unary_grad: unknown op code " << op);
  const DType dt = sb.dtype == BF16 ? BF16 : F32;
  check_dtype("unary_grad", "saved", sb, dt);
  check_dtype("unary_grad", "grad", gb, dt);
  check_dtype("unary_grad", "out", ob, dt);
  LAMINA_CHECK(sb.numel == gb.numel && gb.numel == ob.numel, "unary_grad: element counts differ: saved "
                   << sb.numel << ", grad " << gb.numel << ", out " << ob.numel);
  const float alpha = float(alpha_d);
  if (dt == BF16) {
    const uint16_t* s = sb.data<uint16_t>();
    const uint16_t* g = gb.data<uint16_t>();
    uint16_t* o = ob.data<uint16_t>();
    for_each_chunk(sb.numel, [&](int64_t st, int64_t m) {
      float sv[kBF16Block], gv[kBF16Block];
      for (int64_t p = st; p < st + m; p += kBF16Block) {
        const int64_t k = std::min(kBF16Block, st + m - p);
        widen_block(s + p, sv, k);
        widen_block(g + p, gv, k);
        unary_grad_f32(op, sv, gv, sv, k, alpha);
        round_block(sv, o + p, k);
      }
    });
    return;
  }
  const float* s = sb.data<float>();
  const float* g = gb.data<float>();
  float* o = ob.data<float>();
  for_each_chunk(sb.numel, [&](int64_t st, int64_t m) { unary_grad_f32(op, s + st, g + st, o + st, m, alpha); });
}


// out = clip(x, lo, hi) (NaN stays NaN); the gradient passes where lo <= x <= hi (clip_grad).
static void clip(const Buffer& xb, double lo, double hi, Buffer& ob) {
  LAMINA_CHECK(xb.numel == ob.numel, "clip: input has " << xb.numel << " elements, output " << ob.numel);
  check_dtype("clip", "out", ob, xb.dtype);
  const int64_t n = xb.numel;
  auto run = [&](auto* x, auto* o) {
    using T = std::remove_pointer_t<decltype(o)>;
    const T l = clip_bound<T>(lo, true), h = clip_bound<T>(hi, false);
    for_each_chunk(n, [&](int64_t s, int64_t m) {
#pragma omp simd
      for (int64_t i = s; i < s + m; ++i) { T v = x[i]; v = v < l ? l : v; o[i] = v > h ? h : v; }
    });
  };
  switch (xb.dtype) {
    case F32: run(xb.data<float>(), ob.data<float>()); break;
    case I32: run(xb.data<int32_t>(), ob.data<int32_t>()); break;
    case I64: run(xb.data<int64_t>(), ob.data<int64_t>()); break;
    case BOOL: LAMINA_CHECK(false, "clip: bool tensors cannot be clipped; cast to int32 or float32 first");
    default:
      LAMINA_CHECK(false, "clip: expected a float32, int32 or int64 tensor, received " << dtype_name(xb.dtype)
                                                                                        << "; cast to float32 first");
  }
}
static void clip_grad(const Buffer& xb, double lo, double hi, const Buffer& gb, Buffer& ob) {
  check_dtype("clip_grad", "x", xb, F32);
  check_dtype("clip_grad", "grad", gb, F32);
  check_dtype("clip_grad", "out", ob, F32);
  LAMINA_CHECK(xb.numel == gb.numel && gb.numel == ob.numel, "clip_grad: element counts differ: x "
                   << xb.numel << ", grad " << gb.numel << ", out " << ob.numel);
  const float* x = xb.data<float>();
  const float* g = gb.data<float>();
  float* o = ob.data<float>();
  const float l = float(lo), h = float(hi);
  for_each_chunk(xb.numel, [&](int64_t s, int64_t m) {
#pragma omp simd
    for (int64_t i = s; i < s + m; ++i) o[i] = (x[i] >= l && x[i] <= h) ? g[i] : 0.f;
  });
}

// y = a * x + b * y in place on float32 buffers of equal size (optimizer and accumulation helper).
static void axpby(double a, const Buffer& xb, double b, Buffer& yb) {
  check_dtype("axpby", "x", xb, F32);
  check_dtype("axpby", "y", yb, F32);
  LAMINA_CHECK(xb.numel == yb.numel, "axpby: x holds " << xb.numel << " elements, y " << yb.numel);
  const float* x = xb.data<float>();
  float* y = yb.data<float>();
  const float fa = float(a), fb = float(b);
  for_each_chunk(xb.numel, [&](int64_t s, int64_t m) {
#pragma omp simd
    for (int64_t i = s; i < s + m; ++i) y[i] = fa * x[i] + fb * y[i];
  });
}

// out = x broadcast to out's shape (numpy rules), any dtype.
template <class T>
static void broadcast_typed(const T* x, const Shape& xs, T* o, const Shape& os) {
  BroadcastPlan p = make_plan({&xs}, os, "broadcast_to");
  for_each_run(p, [&](const int64_t* off, int64_t oo, int64_t n, const int64_t* st) {
    const T* src = x + off[0];
    T* dst = o + oo;
    if (st[0] == 0) {
      const T v = src[0];
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) dst[i] = v;
    } else {
      std::memcpy(dst, src, size_t(n) * sizeof(T));
    }
  });
}
static void broadcast_to(const Buffer& x, const Shape& xs, Buffer& o, const Shape& os) {
  check_buffer("broadcast_to", "x", x, xs, x.dtype);
  check_buffer("broadcast_to", "out", o, os, x.dtype);
  switch (dtype_size(x.dtype)) {
    case 1: broadcast_typed(x.data<uint8_t>(), xs, o.data<uint8_t>(), os); break;
    case 2: broadcast_typed(x.data<uint16_t>(), xs, o.data<uint16_t>(), os); break;
    case 4: broadcast_typed(x.data<int32_t>(), xs, o.data<int32_t>(), os); break;
    default: broadcast_typed(x.data<int64_t>(), xs, o.data<int64_t>(), os); break;
  }
}

void bind_elementwise(py::module_& m) {
  def_kernel(m, "broadcast_to", &broadcast_to);
  def_kernel(m, "binary", &binary);
  def_kernel(m, "where", &where);
  def_kernel(m, "unary", &unary, py::arg("op"), py::arg("x"), py::arg("out"), py::arg("alpha") = 0.0);
  def_kernel(m, "unary_grad", &unary_grad, py::arg("op"), py::arg("saved"), py::arg("grad"), py::arg("out"), py::arg("alpha") = 0.0);
  def_kernel(m, "clip", &clip);
  def_kernel(m, "clip_grad", &clip_grad);
  def_kernel(m, "axpby", &axpby);
  m.def("simd_isa", []() { return std::string(kIsaNames[g_isa]); },
        "The SIMD variant the vectorised float kernels run: generic, avx2 or avx512.");
  m.def("hardware_simd_isa", []() { return std::string(kIsaNames[hardware_isa()]); },
        "The best SIMD variant this CPU supports.");
  m.def("set_simd_isa", &set_simd_isa, py::arg("name"),
        "Chooses the SIMD variant (generic, avx2 or avx512; at most what the CPU supports).");
}

}  // namespace lamina
