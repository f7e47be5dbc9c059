// Elementwise kernels: broadcasting binary ops and comparisons, where, broadcast_to, unary maths,
// the activations' derivatives, clip and axpby: every op code and dtype the CPU's kernels take
// (csrc/cpu/elementwise.cpp), with the CPU's errors for the others. Integer results are the CPU's
// bit for bit; the float maths use CUDA's libdevice functions (within a few ulps of the CPU's
// polynomials and libm), and double where the CPU computes in double (hypot, erfc, erfinv, i0, i1).
// bfloat16 (binary, unary, unary_grad): the float32 maths on the widened values, each result
// rounded once (bf16.cuh).
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "../elementwise_shared.h"
#include "bf16.cuh"
#include "gpu.h"

namespace lamina {
namespace gpu {

// Offsets of output element i in up to three broadcast operands.
template <int K>
__device__ __forceinline__ void bcast_offsets(const Bcast& p, int64_t i, int64_t* off) {
  for (int k = 0; k < K; ++k) off[k] = 0;
  for (int d = p.ndim - 1; d >= 0; --d) {
    const int64_t n = p.dims[d];
    const int64_t c = i % n;
    i /= n;
    for (int k = 0; k < K; ++k) off[k] += c * p.st[k][d];
  }
}

// ---- binary ------------------------------------------------------------------------------------
// |a| as unsigned (INT_MIN's too), and gcd(|a|, |b|) by Euclid on those (so INT_MIN cannot trap).
template <class T>
__device__ __forceinline__ std::make_unsigned_t<T> abs_u(T a) {
  using U = std::make_unsigned_t<T>;
  return a < 0 ? U(0) - U(a) : U(a);
}
template <class T>
__device__ __forceinline__ std::make_unsigned_t<T> gcd_abs(T a, T b) {
  using U = std::make_unsigned_t<T>;
  U x = abs_u(a), y = abs_u(b);
  while (y) { const U t = x % y; x = y; y = t; }
  return x;
}

// The CPU's binary ops (Div, Pow, FloorDiv, Mod, Fmod, shifts, ... in csrc/cpu/elementwise.cpp).
template <class T>
__device__ __forceinline__ T bin_arith(int op, T a, T b) {
  if constexpr (std::is_integral<T>::value && std::is_signed<T>::value) {
    using U = std::make_unsigned_t<T>;  // integers wrap on overflow (in unsigned arithmetic: no UB)
    switch (op) {
      case ADD: return T(U(a) + U(b));
      case SUB: return T(U(a) - U(b));
      case MUL: return T(U(a) * U(b));
    }
  }
  switch (op) {
    case ADD: return a + b;
    case SUB: return a - b;
    case MUL: return a * b;
    case MAXIMUM: return (a > b || a != a) ? a : b;
    case MINIMUM: return (a < b || a != a) ? a : b;
    case FMAX: return (a >= b || b != b) ? a : b;
    case FMIN: return (a <= b || b != b) ? a : b;
  }
  if constexpr (std::is_floating_point<T>::value) {
    switch (op) {
      case DIV: return a / b;
      case POW: return b == 2.f ? a * a : powf(a, b);
      case ARCTAN2: return atan2f(a, b);
      case HYPOT: {  // in double, as the CPU: no overflow or underflow for float operands; inf wins over NaN
        const double r = sqrt(double(a) * double(a) + double(b) * double(b));
        return (isinf(a) || isinf(b)) ? INFINITY : float(r);
      }
      case COPYSIGN: return copysignf(a, b);
      case FMOD: return fmodf(a, b);
      case MOD: {  // numpy's remainder: the divisor's sign
        T mod = fmodf(a, b);
        if (b == 0) return mod;
        if (mod != 0) { if ((b < 0) != (mod < 0)) mod += b; }
        else mod = copysignf(0.f, b);
        return mod;
      }
      case FLOORDIV: {  // numpy's floor_divide (npy_divmod): rounds toward -inf
        if (b == 0) return a / b;
        const T mod = fmodf(a, b);
        T div = (a - mod) / b;
        if (mod != 0 && ((b < 0) != (mod < 0))) div -= 1.f;
        if (div == 0) return copysignf(0.f, a / b);
        T fl = floorf(div);
        if (div - fl > 0.5f) fl += 1.f;
        return fl;
      }
      case NEXTAFTER: return nextafterf(a, b);
      case HEAVISIDE: return a != a ? a : (a < 0.f ? 0.f : (a > 0.f ? 1.f : b));
      case LDEXP: {  // b integral, held as float; clamped so that int(b) cannot overflow
        if (b != b) return b;
        const T e = b > 400.f ? 400.f : (b < -400.f ? -400.f : b);
        return ldexpf(a, int(e));
      }
      case LOGADDEXP2: {  // max + log2(1 + 2^-|a - b|); equal operands (equal infinities too) give a + 1
        const T m = a > b ? a : b;
        T r = m + log1pf(exp2f(-fabsf(a - b))) * 1.44269504088896341f;
        r = a == b ? a + 1.f : r;
        return (a != a || b != b) ? a + b : r;
      }
    }
  } else if constexpr (std::is_signed<T>::value) {  // (bool's bytes take only the ops above)
    using U = std::make_unsigned_t<T>;
    constexpr U kBits = U(sizeof(T) * 8);
    switch (op) {
      // division by zero (and INT_MIN / -1) must not trap: 0 (and INT_MIN), as the CPU
      case DIV: return b == 0 ? T(0) : (b == T(-1) ? T(U(0) - U(a)) : a / b);
      case POW: {  // by squaring, wrapping on overflow; negative exponents truncate like 1 / a^-b
        if (b < 0) return a == 1 ? T(1) : (a == -1 ? ((b & 1) ? T(-1) : T(1)) : T(0));
        U r = 1, base = U(a);
        for (T e = b; e; e >>= 1) {
          if (e & 1) r *= base;
          base *= base;
        }
        return T(r);
      }
      case FLOORDIV: {
        if (b == 0) return T(0);
        if (b == T(-1)) return T(U(0) - U(a));
        T q = a / b;
        if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
        return q;
      }
      case MOD: {  // the divisor's sign; by 0 (and -1) gives 0
        if (b == 0 || b == T(-1)) return T(0);
        T r = a % b;
        if (r != 0 && ((r < 0) != (b < 0))) r += b;
        return r;
      }
      case FMOD: return (b == 0 || b == T(-1)) ? T(0) : T(a % b);
      case AND: return a & b;
      case OR: return a | b;
      case XOR: return a ^ b;
      // a count below 0 or of at least the width shifts everything out (numpy)
      case LEFT_SHIFT: return U(b) < kBits ? T(U(a) << U(b)) : T(0);
      case RIGHT_SHIFT: return U(b) < kBits ? T(a >> U(b)) : (a < 0 ? T(-1) : T(0));
      case GCD: return T(gcd_abs(a, b));
      case LCM: {  // wraps on overflow, as numpy's
        const U g = gcd_abs(a, b);
        return g == 0 ? T(0) : T((abs_u(a) / g) * abs_u(b));
      }
    }
  }
  return T(0);
}

template <class T>
__device__ __forceinline__ bool bin_compare(int op, T a, T b) {
  switch (op) {
    case EQ: return a == b;
    case NE: return a != b;
    case LT: return a < b;
    case LE: return a <= b;
    case GT: return a > b;
    default: return a >= b;
  }
}

// The arithmetic op codes the CPU defines for float32 (bfloat16: all but nextafter) and for integers.
static bool float_op(int op) {
  switch (op) {
    case ADD: case SUB: case MUL: case DIV: case POW: case MAXIMUM: case MINIMUM: case FLOORDIV: case MOD:
    case FMOD: case FMAX: case FMIN: case ARCTAN2: case HYPOT: case COPYSIGN: case NEXTAFTER: case HEAVISIDE:
    case LDEXP: case LOGADDEXP2:
      return true;
  }
  return false;
}
static bool int_op(int op) {
  switch (op) {
    case ADD: case SUB: case MUL: case DIV: case POW: case MAXIMUM: case MINIMUM: case FLOORDIV: case MOD:
    case FMOD: case FMAX: case FMIN: case AND: case OR: case XOR: case LEFT_SHIFT: case RIGHT_SHIFT: case GCD:
    case LCM:
      return true;
  }
  return false;
}

// S: the operands' storage (uint16_t: bfloat16, compared and computed as float32, rounded once).
template <class S, class R, bool CMP>
__global__ void binary_same(int op, const S* a, const S* b, R* o, int64_t n, int sa, int sb) {
  GRID_STRIDE(i, n) {
    const compute_t<S> x = wide(a[sa ? i : 0]), y = wide(b[sb ? i : 0]);
    if constexpr (CMP) o[i] = bin_compare(op, x, y);
    else o[i] = narrow<R>(bin_arith(op, x, y));
  }
}

template <class S, class R, bool CMP>
__global__ void binary_bcast(int op, const S* a, const S* b, R* o, int64_t n, Bcast p) {
  GRID_STRIDE(i, n) {
    int64_t off[2];
    bcast_offsets<2>(p, i, off);
    const compute_t<S> x = wide(a[off[0]]), y = wide(b[off[1]]);
    if constexpr (CMP) o[i] = bin_compare(op, x, y);
    else o[i] = narrow<R>(bin_arith(op, x, y));
  }
}

template <class S, class R, bool CMP>
static void run_binary(Context& c, int op, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, R* o,
                       const Shape& os) {
  const int64_t n = numel_of(os);
  if (n == 0) return;
  const S* x = a.data<S>();
  const S* y = b.data<S>();
  const bool a_full = as == os, b_full = bs == os;
  if ((a_full || a.numel == 1) && (b_full || b.numel == 1)) {
    binary_same<S, R, CMP><<<grid_for(n), 256, 0, c.stream>>>(op, x, y, o, n, a.numel == n, b.numel == n);
  } else {
    Bcast p = make_bcast("binary", {&as, &bs}, os);
    binary_bcast<S, R, CMP><<<grid_for(n), 256, 0, c.stream>>>(op, x, y, o, n, p);
  }
}

// S: float, int32_t, int64_t, or uint16_t (bfloat16: float32's op codes but nextafter).
template <class S>
static void binary_typed(Context& c, int op, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs,
                         Buffer& o, const Shape& os) {
  if (op >= EQ && op <= GE) {
    check_buffer("compare", "out", o, os, BOOL);
    return run_binary<S, bool, true>(c, op, a, as, b, bs, o.data<bool>(), os);
  }
  check_buffer("binary", "out", o, os, a.dtype);
  if constexpr (std::is_same<S, uint16_t>::value) {
    if (op == NEXTAFTER || !float_op(op))
      throw TypeError("binary: op code " + std::to_string(op) + " is not defined for bfloat16 tensors (nextafter "
                      "and the integer ops); cast to float32 first");
  } else {
    LAMINA_CHECK(std::is_floating_point<S>::value ? float_op(op) : int_op(op),
                 "binary: op code " << op << " is not defined for " << dtype_name(a.dtype) << " tensors");
  }
  run_binary<S, S, false>(c, op, a, as, b, bs, o.data<S>(), os);
}

void binary(int op, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os) {
  LAMINA_CHECK(op >= 0 && op < BINARY_COUNT, "binary: unknown op code " << op);
  check_buffer("binary", "a", a, as, a.dtype);
  check_buffer("binary", "b", b, bs, a.dtype);
  Context& c = op_device("binary", {&a, &b, &o});
  switch (a.dtype) {
    case F32: binary_typed<float>(c, op, a, as, b, bs, o, os); break;
    case I32: binary_typed<int32_t>(c, op, a, as, b, bs, o, os); break;
    case I64: binary_typed<int64_t>(c, op, a, as, b, bs, o, os); break;
    case BF16: binary_typed<uint16_t>(c, op, a, as, b, bs, o, os); break;
    case I8: throw TypeError("binary: int8 tensors hold quantized weights and take no arithmetic");
    case BOOL: {
      check_buffer("logical", "out", o, os, BOOL);
      // bools are 0 / 1 bytes: and = min, or = max, xor = not equal
      int code;
      switch (op) {
        case AND: case MUL: case MINIMUM: code = MINIMUM; break;
        case OR: case ADD: case MAXIMUM: code = MAXIMUM; break;
        case XOR: code = NE; break;
        case EQ: case NE: case LT: case LE: case GT: case GE: code = op; break;
        default:
          LAMINA_CHECK(false, "binary: op code " << op << " is not defined for bool tensors; cast to int32 or float32 first");
      }
      if (code >= EQ && code <= GE) run_binary<uint8_t, bool, true>(c, code, a, as, b, bs, o.data<bool>(), os);
      else run_binary<uint8_t, uint8_t, false>(c, code, a, as, b, bs, o.data<uint8_t>(), os);
    }
  }
  launched(c, "binary");
}

// ---- where, broadcast_to ---------------------------------------------------------------------------
template <class T>
__global__ void where_kernel(const bool* cond, const T* a, const T* b, T* o, int64_t n, Bcast p) {
  GRID_STRIDE(i, n) {
    int64_t off[3];
    bcast_offsets<3>(p, i, off);
    o[i] = cond[off[0]] ? a[off[1]] : b[off[2]];
  }
}

template <class T>
__global__ void bcast_kernel(const T* x, T* o, int64_t n, Bcast p) {
  GRID_STRIDE(i, n) {
    int64_t off[1];
    bcast_offsets<1>(p, i, off);
    o[i] = x[off[0]];
  }
}

template <class T>
static void where_typed(Context& c, const Buffer& cb, const Buffer& a, const Buffer& b, Buffer& o, int64_t n, const Bcast& p) {
  where_kernel<T><<<grid_for(n), 256, 0, c.stream>>>(cb.data<bool>(), a.data<T>(), b.data<T>(), o.data<T>(), n, p);
}

void where(const Buffer& cb, const Shape& cs, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs,
           Buffer& o, const Shape& os) {
  check_buffer("where", "condition", cb, cs, BOOL);
  check_buffer("where", "x1", a, as, a.dtype);
  check_buffer("where", "x2", b, bs, a.dtype);
  check_buffer("where", "out", o, os, a.dtype);
  if (a.dtype == I8) throw TypeError("where: int8 tensors hold quantized weights and take no arithmetic");
  Context& c = op_device("where", {&cb, &a, &b, &o});
  const int64_t n = numel_of(os);
  if (n == 0) return;
  Bcast p = make_bcast("where", {&cs, &as, &bs}, os);
  switch (dtype_size(a.dtype)) {
    case 1: where_typed<uint8_t>(c, cb, a, b, o, n, p); break;
    case 2: where_typed<uint16_t>(c, cb, a, b, o, n, p); break;
    case 4: where_typed<uint32_t>(c, cb, a, b, o, n, p); break;
    default: where_typed<uint64_t>(c, cb, a, b, o, n, p); break;
  }
  launched(c, "where");
}

void broadcast_to(const Buffer& x, const Shape& xs, Buffer& o, const Shape& os) {
  check_buffer("broadcast_to", "x", x, xs, x.dtype);
  check_buffer("broadcast_to", "out", o, os, x.dtype);
  Context& c = op_device("broadcast_to", {&x, &o});
  const int64_t n = numel_of(os);
  if (n == 0) return;
  Bcast p = make_bcast("broadcast_to", {&xs}, os);
  switch (dtype_size(x.dtype)) {
    case 1: bcast_kernel<<<grid_for(n), 256, 0, c.stream>>>(x.data<uint8_t>(), o.data<uint8_t>(), n, p); break;
    case 2: bcast_kernel<<<grid_for(n), 256, 0, c.stream>>>(x.data<uint16_t>(), o.data<uint16_t>(), n, p); break;
    case 4: bcast_kernel<<<grid_for(n), 256, 0, c.stream>>>(x.data<uint32_t>(), o.data<uint32_t>(), n, p); break;
    default: bcast_kernel<<<grid_for(n), 256, 0, c.stream>>>(x.data<uint64_t>(), o.data<uint64_t>(), n, p); break;
  }
  launched(c, "broadcast_to");
}

// ---- unary -------------------------------------------------------------------------------------
__device__ const float kSeluAlpha = 1.6732632423543772f, kSeluScale = 1.0507009873554805f;

__device__ __forceinline__ float sigmoidf(float v) { return v >= 0.f ? 1.f / (1.f + expf(-v)) : expf(v) / (1.f + expf(v)); }
__device__ __forceinline__ float gelu_cdf(float v) { return 0.5f * erfcf(-v * 0.70710678118654752f); }
__device__ __forceinline__ float gelu_tanh_s(float v) {  // sigmoid(sqrt(8/pi)(v + 0.044715 v^3))
  const double u = 1.5957691216057308 * double(v) * (1.0 + 0.044715 * double(v) * double(v));
  return float(u >= 0 ? 1.0 / (1.0 + exp(-u)) : exp(u) / (1.0 + exp(u)));
}

__device__ __forceinline__ float unary_f32(int op, float v, float alpha) {
  switch (op) {
    case NEG: return -v;
    case EXP: return expf(v);
    case EXP2: return exp2f(v);
    case EXPM1: return expm1f(v);
    case LOG: return logf(v);
    case LOG2: return log2f(v);
    case LOG10: return log10f(v);
    case LOG1P: return log1pf(v);
    case SQRT: return sqrtf(v);
    case RSQRT: return 1.f / sqrtf(v);
    case ABS: return fabsf(v);
    case TANH: return tanhf(v);
    case SIGMOID: return sigmoidf(v);
    case RELU: return v < 0.f ? 0.f : v;
    case RELU6: return v < 0.f ? 0.f : (v > 6.f ? 6.f : v);
    case LEAKY_RELU: return v > 0.f ? v : alpha * v;
    case SOFTPLUS: return (v < 0.f ? 0.f : v) + log1pf(expf(-fabsf(v)));
    case SOFTSIGN: return isinf(v) ? copysignf(1.f, v) : v / (1.f + fabsf(v));
    case ELU: return v > 0.f ? v : alpha * expm1f(v);
    case SELU: return kSeluScale * (v > 0.f ? v : kSeluAlpha * expm1f(v));
    case GELU: return v == -INFINITY ? -0.f : v * gelu_cdf(v);
    case GELU_TANH: return v == -INFINITY ? -0.f : v * gelu_tanh_s(v);
    case SILU: return v == -INFINITY ? -0.f : v * sigmoidf(v);
    case HARD_SIGMOID: { float h = v / 6.f + 0.5f; return h < 0.f ? 0.f : (h > 1.f ? 1.f : h); }
    case SQUARE: return v * v;
    case SIGN: return v != v ? v : float((v > 0.f) - (v < 0.f));
    case RECIPROCAL: return 1.f / v;
    case ERF: return erff(v);
    case FLOOR: return floorf(v);
    case CEIL: return ceilf(v);
    case ROUND: return rintf(v);
    case TRUNC: return truncf(v);
    case SIN: return sinf(v);
    case COS: return cosf(v);
    case TAN: return tanf(v);
    case ARCSIN: return asinf(v);
    case ARCCOS: return acosf(v);
    case ARCTAN: return atanf(v);
    case SINH: return sinhf(v);
    case COSH: return coshf(v);
    case ARCSINH: return asinhf(v);
    case ARCCOSH: return acoshf(v);
    case ARCTANH: return atanhf(v);
    case CBRT: return cbrtf(v);
  }
  return 0.f;
}

// ---- the ops the CPU computes in double (its unary_f32_scalar): erfc, erfinv, i0, i1 ----------------
// erfinv_f and bessel_i: elementwise_shared.h, the CPU's own code compiled for the device.
static bool unary_in_double(int op) { return op == ERFC || op == ERFINV || op == I0 || op == I1; }

// A kernel of their own, so that their double registers and loops do not weigh on unary_kernel's.
template <class S>  // float, or uint16_t (bfloat16)
__global__ void unary_double_kernel(int op, const S* x, S* y, int64_t n) {
  GRID_STRIDE(i, n) {
    const float v = wide(x[i]);
    const float r = op == ERFC ? float(erfc(double(v))) : op == ERFINV ? erfinv_f(v) : bessel_i(v, op == I1);
    y[i] = narrow<S>(r);
  }
}

template <class S>  // float, or uint16_t (bfloat16)
__global__ void unary_kernel(int op, const S* x, S* y, int64_t n, float alpha) {
  GRID_STRIDE(i, n) y[i] = narrow<S>(unary_f32(op, wide(x[i]), alpha));
}

// isnan / isinf / isfinite / signbit: classified by bits, as the CPU does.
__global__ void classify_kernel(int op, const uint32_t* x, bool* o, int64_t n) {
  GRID_STRIDE(i, n) {
    const uint32_t a = x[i] & 0x7fffffffu;
    o[i] = op == ISNAN ? a > 0x7f800000u : op == ISINF ? a == 0x7f800000u : op == ISFINITE ? a < 0x7f800000u
                                                                                              : (x[i] >> 31) != 0;
  }
}

// bfloat16 by its bits, as the CPU (the same answers as its widened float32 value's)
__global__ void classify_bf16_kernel(int op, const uint16_t* x, bool* o, int64_t n) {
  GRID_STRIDE(i, n) {
    const uint16_t e = x[i] & 0x7fffu;
    o[i] = op == ISNAN ? e > 0x7f80u : op == ISINF ? e == 0x7f80u : op == ISFINITE ? e < 0x7f80u : (x[i] >> 15) != 0;
  }
}

template <class T>
__global__ void negative_kernel(const T* x, bool* o, int64_t n) {
  GRID_STRIDE(i, n) o[i] = x[i] < 0;
}

__global__ void fill_bool_kernel(bool v, bool* o, int64_t n) {
  GRID_STRIDE(i, n) o[i] = v;
}

__global__ void not_kernel(const uint8_t* x, uint8_t* o, int64_t n) {
  GRID_STRIDE(i, n) o[i] = !x[i];
}

// The CPU's unary_int: integers are their own floor / ceil / round / trunc; negation, abs and
// squares wrap (abs(INT_MIN) is INT_MIN).
static bool unary_int_op(int op) {
  switch (op) {
    case NEG: case ABS: case SQUARE: case SIGN: case RELU: case FLOOR: case CEIL: case ROUND: case TRUNC:
    case BITWISE_NOT:
      return true;
  }
  return false;
}

template <class T>
__global__ void unary_int_kernel(int op, const T* x, T* o, int64_t n) {
  using U = std::make_unsigned_t<T>;
  GRID_STRIDE(i, n) {
    const T v = x[i];
    T r = v;
    switch (op) {
      case NEG: r = T(U(0) - U(v)); break;
      case ABS: r = v < 0 ? T(U(0) - U(v)) : v; break;
      case SQUARE: r = T(U(v) * U(v)); break;
      case SIGN: r = T((v > 0) - (v < 0)); break;
      case RELU: r = v > 0 ? v : T(0); break;
      case BITWISE_NOT: r = T(~v); break;
    }
    o[i] = r;
  }
}

void unary(int op, const Buffer& xb, Buffer& ob, double alpha) {
  LAMINA_CHECK(op >= 0 && op < UNARY_COUNT, "unary: unknown op code " << op);
  LAMINA_CHECK(xb.numel == ob.numel, "unary: input has " << xb.numel << " elements, output " << ob.numel);
  Context& c = op_device("unary", {&xb, &ob});
  const int64_t n = xb.numel;
  const unsigned g = grid_for(n);
  if (op == ISNAN || op == ISINF || op == ISFINITE || op == SIGNBIT) {
    check_dtype("unary", "out", ob, BOOL);
    if (op == SIGNBIT && xb.dtype == I8)
      throw TypeError(std::string("unary: signbit of ") + dtype_name(xb.dtype) + " tensors is not a kernel here");
    if (n == 0) return launched(c, "unary");
    bool* o = ob.data<bool>();
    switch (xb.dtype) {
      case F32: classify_kernel<<<g, 256, 0, c.stream>>>(op, xb.data<uint32_t>(), o, n); break;
      case BF16: classify_bf16_kernel<<<g, 256, 0, c.stream>>>(op, xb.data<uint16_t>(), o, n); break;
      case I32:
        if (op == SIGNBIT) negative_kernel<<<g, 256, 0, c.stream>>>(xb.data<int32_t>(), o, n);
        else fill_bool_kernel<<<g, 256, 0, c.stream>>>(op == ISFINITE, o, n);
        break;
      case I64:
        if (op == SIGNBIT) negative_kernel<<<g, 256, 0, c.stream>>>(xb.data<int64_t>(), o, n);
        else fill_bool_kernel<<<g, 256, 0, c.stream>>>(op == ISFINITE, o, n);
        break;
      default:  // bool (int8: not signbit): never NaN or infinite, never negative
        fill_bool_kernel<<<g, 256, 0, c.stream>>>(op == ISFINITE, o, n);
    }
    return launched(c, "unary");
  }
  check_dtype("unary", "out", ob, xb.dtype);
  if (xb.dtype == BOOL) {
    LAMINA_CHECK(op == LOGICAL_NOT || op == BITWISE_NOT, "unary: op code " << op << " is not defined for bool tensors");
    if (n) not_kernel<<<g, 256, 0, c.stream>>>(xb.data<uint8_t>(), ob.data<uint8_t>(), n);
    return launched(c, "unary");
  }
  LAMINA_CHECK(op != LOGICAL_NOT, "unary: logical_not needs a bool tensor, received " << dtype_name(xb.dtype));
  if (xb.dtype == I32 || xb.dtype == I64) {
    LAMINA_CHECK(unary_int_op(op),
                 "unary: op code " << op << " needs a float tensor, received " << dtype_name(xb.dtype));
    if (n && xb.dtype == I32) unary_int_kernel<<<g, 256, 0, c.stream>>>(op, xb.data<int32_t>(), ob.data<int32_t>(), n);
    else if (n) unary_int_kernel<<<g, 256, 0, c.stream>>>(op, xb.data<int64_t>(), ob.data<int64_t>(), n);
    return launched(c, "unary");
  }
  // (the CPU's kernel would read int8 data as float32, past the buffer's end)
  if (xb.dtype == I8) throw TypeError("unary: int8 tensors hold quantized weights and take no arithmetic");
  LAMINA_CHECK(op != BITWISE_NOT,
               "unary: bitwise_not needs an integer or bool tensor, received " << dtype_name(xb.dtype));
  if (n == 0) return launched(c, "unary");
  with_float_type(xb.dtype, [&](auto s) {
    using S = decltype(s);
    if (unary_in_double(op)) unary_double_kernel<S><<<g, 256, 0, c.stream>>>(op, xb.data<S>(), ob.data<S>(), n);
    else unary_kernel<S><<<g, 256, 0, c.stream>>>(op, xb.data<S>(), ob.data<S>(), n, float(alpha));
  });
  launched(c, "unary");
}

__device__ __forceinline__ float grad_f32(int op, float v, float d, float alpha) {
  switch (op) {
    case RELU_GRAD: return v > 0.f ? d : 0.f;
    case SIGMOID_GRAD_Y: return d * v * (1.f - v);
    case TANH_GRAD_Y: return d * (1.f - v * v);
    case ELU_GRAD_X: return v > 0.f ? d : d * alpha * expf(v);
    case SELU_GRAD_X: return d * kSeluScale * (v > 0.f ? 1.f : kSeluAlpha * expf(v));
    // at +-inf (beyond 1e4 for the tanh form) the derivative is 1 or 0, times d as the CPU (NaN * 0 is NaN)
    case GELU_GRAD_X: {
      if (isinf(v)) return d * (v > 0.f ? 1.f : 0.f);
      return d * (gelu_cdf(v) + v * 0.3989422804014327f * expf(-0.5f * v * v));
    }
    case GELU_TANH_GRAD_X: {
      if (fabsf(v) > 1e4f) return d * (v > 0.f ? 1.f : 0.f);
      const float s = gelu_tanh_s(v);
      const float du = 1.5957691216057308f * (1.f + 0.134145f * v * v);
      return d * (s + v * du * s * (1.f - s));
    }
    case SOFTPLUS_GRAD_X: return d * sigmoidf(v);
    case LEAKY_RELU_GRAD_X: return v > 0.f ? d : alpha * d;
    case RELU6_GRAD_X: return (v > 0.f && v < 6.f) ? d : 0.f;
    case SILU_GRAD_X: {
      if (isinf(v)) return d * (v > 0.f ? 1.f : 0.f);
      const float s = sigmoidf(v);
      return d * s * (1.f + v * (1.f - s));
    }
    case HARD_SIGMOID_GRAD_X: return (v > -3.f && v < 3.f) ? d * (1.f / 6.f) : 0.f;
    case SOFTSIGN_GRAD_X: return d / ((1.f + fabsf(v)) * (1.f + fabsf(v)));
  }
  return 0.f;
}

template <class S>  // float, or uint16_t (bfloat16)
__global__ void grad_kernel(int op, const S* s, const S* g, S* o, int64_t n, float alpha) {
  GRID_STRIDE(i, n) o[i] = narrow<S>(grad_f32(op, wide(s[i]), wide(g[i]), alpha));
}

// float32, or bfloat16 throughout (as the CPU's)
void unary_grad(int op, const Buffer& sb, const Buffer& gb, Buffer& ob, double alpha) {
  LAMINA_CHECK(op >= 0 && op < GRAD_COUNT, "unary_grad: unknown op code " << op);
  const DType dt = float_dtype(sb);
  check_dtype("unary_grad", "saved", sb, dt);
  check_dtype("unary_grad", "grad", gb, dt);
  check_dtype("unary_grad", "out", ob, dt);
  LAMINA_CHECK(sb.numel == gb.numel && gb.numel == ob.numel, "unary_grad: element counts differ: saved "
                   << sb.numel << ", grad " << gb.numel << ", out " << ob.numel);
  Context& c = op_device("unary_grad", {&sb, &gb, &ob});
  const int64_t n = sb.numel;
  if (n && dt == BF16)
    grad_kernel<uint16_t><<<grid_for(n), 256, 0, c.stream>>>(op, sb.data<uint16_t>(), gb.data<uint16_t>(),
                                                             ob.data<uint16_t>(), n, float(alpha));
  else if (n)
    grad_kernel<float><<<grid_for(n), 256, 0, c.stream>>>(op, sb.data<float>(), gb.data<float>(), ob.data<float>(), n,
                                                          float(alpha));
  launched(c, "unary_grad");
}

// ---- clip, axpby ---------------------------------------------------------------------------------
template <class T>  // float (NaN stays NaN), int32_t or int64_t
__global__ void clip_kernel(const T* x, T lo, T hi, T* o, int64_t n) {
  GRID_STRIDE(i, n) { T v = x[i]; v = v < lo ? lo : v; o[i] = v > hi ? hi : v; }
}
__global__ void clip_grad_kernel(const float* x, float lo, float hi, const float* g, float* o, int64_t n) {
  GRID_STRIDE(i, n) o[i] = (x[i] >= lo && x[i] <= hi) ? g[i] : 0.f;
}
__global__ void axpby_kernel(float a, const float* x, float b, float* y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = a * x[i] + b * y[i];
}


template <class T>
static void clip_typed(Context& c, const Buffer& xb, double lo, double hi, Buffer& ob) {
  if (xb.numel)
    clip_kernel<T><<<grid_for(xb.numel), 256, 0, c.stream>>>(xb.data<T>(), clip_bound<T>(lo, true),
                                                             clip_bound<T>(hi, false), ob.data<T>(), xb.numel);
}

void clip(const Buffer& xb, double lo, double hi, Buffer& ob) {
  LAMINA_CHECK(xb.numel == ob.numel, "clip: input has " << xb.numel << " elements, output " << ob.numel);
  check_dtype("clip", "out", ob, xb.dtype);
  LAMINA_CHECK(xb.dtype != BOOL, "clip: bool tensors cannot be clipped; cast to int32 or float32 first");
  LAMINA_CHECK(xb.dtype == F32 || xb.dtype == I32 || xb.dtype == I64,
               "clip: expected a float32, int32 or int64 tensor, received " << dtype_name(xb.dtype)
                                                                             << "; cast to float32 first");
  Context& c = op_device("clip", {&xb, &ob});
  switch (xb.dtype) {
    case F32: clip_typed<float>(c, xb, lo, hi, ob); break;
    case I32: clip_typed<int32_t>(c, xb, lo, hi, ob); break;
    default: clip_typed<int64_t>(c, xb, lo, hi, ob); break;
  }
  launched(c, "clip");
}

void clip_grad(const Buffer& xb, double lo, double hi, const Buffer& gb, Buffer& ob) {
  check_dtype("clip_grad", "x", xb, F32);
  check_dtype("clip_grad", "grad", gb, F32);
  check_dtype("clip_grad", "out", ob, F32);
  LAMINA_CHECK(xb.numel == gb.numel && gb.numel == ob.numel, "clip_grad: element counts differ: x "
                   << xb.numel << ", grad " << gb.numel << ", out " << ob.numel);
  Context& c = op_device("clip_grad", {&xb, &gb, &ob});
  if (xb.numel) clip_grad_kernel<<<grid_for(xb.numel), 256, 0, c.stream>>>(xb.data<float>(), float(lo), float(hi),
                                                                             gb.data<float>(), ob.data<float>(), xb.numel);
  launched(c, "clip_grad");
}

void axpby(double a, const Buffer& xb, double b, Buffer& yb) {
  check_dtype("axpby", "x", xb, F32);
  check_dtype("axpby", "y", yb, F32);
  LAMINA_CHECK(xb.numel == yb.numel, "axpby: x holds " << xb.numel << " elements, y " << yb.numel);
  Context& c = op_device("axpby", {&xb, &yb});
  if (xb.numel) axpby_kernel<<<grid_for(xb.numel), 256, 0, c.stream>>>(float(a), xb.data<float>(), float(b),
                                                                         yb.data<float>(), xb.numel);
  launched(c, "axpby");
}

}  // namespace gpu
}  // namespace lamina
