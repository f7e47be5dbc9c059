// Elementwise kernels: broadcasting binary ops, comparisons, where, unary maths and the
// derivative kernels of the activations.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>

#include "broadcast.h"
#include "common.h"

namespace py = pybind11;

namespace lamina {

enum BinaryOp : int { ADD = 0, SUB, MUL, DIV, POW, MAXIMUM, MINIMUM, EQ, NE, LT, LE, GT, GE, AND, OR, XOR, FLOORDIV, MOD };

template <class T> struct Add { static T f(T a, T b) { return a + b; } };
template <class T> struct Sub { static T f(T a, T b) { return a - b; } };
template <class T> struct Mul { static T f(T a, T b) { return a * b; } };
template <class T> struct Div { static T f(T a, T b) { return a / b; } };
template <class T> struct Max { static T f(T a, T b) { return a > b ? a : b; } };
template <class T> struct Min { static T f(T a, T b) { return a < b ? a : b; } };
template <class T> struct Pow { static T f(T a, T b) { return T(std::pow(double(a), double(b))); } };
template <> struct Pow<float> { static float f(float a, float b) { return std::pow(a, b); } };
template <class T> struct FloorDiv { static T f(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) return std::floor(a / b);
  else { if (b == 0) return 0; T q = a / b; if ((a % b != 0) && ((a < 0) != (b < 0))) --q; return q; } } };
template <class T> struct Mod { static T f(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) { T r = std::fmod(a, b); if (r != 0 && ((r < 0) != (b < 0))) r += b; return r; }
  else { if (b == 0) return 0; T r = a % b; if (r != 0 && ((r < 0) != (b < 0))) r += b; return r; } } };
template <class T> struct Eq { static uint8_t f(T a, T b) { return a == b; } };
template <class T> struct Ne { static uint8_t f(T a, T b) { return a != b; } };
template <class T> struct Lt { static uint8_t f(T a, T b) { return a < b; } };
template <class T> struct Le { static uint8_t f(T a, T b) { return a <= b; } };
template <class T> struct Gt { static uint8_t f(T a, T b) { return a > b; } };
template <class T> struct Ge { static uint8_t f(T a, T b) { return a >= b; } };
struct And { static uint8_t f(uint8_t a, uint8_t b) { return a && b; } };
struct Or { static uint8_t f(uint8_t a, uint8_t b) { return a || b; } };
struct Xor { static uint8_t f(uint8_t a, uint8_t b) { return (a != 0) != (b != 0); } };

template <class F, class T, class R>
static void run_binary(const T* a, const Shape& as, const T* b, const Shape& bs, R* o, const Shape& os, const char* name) {
  BroadcastPlan p = make_plan({&as, &bs}, os, name);
  auto row = [&](int64_t ao, int64_t bo, int64_t oo, int64_t n, int64_t sa, int64_t sb) {
    const T* x = a + ao; const T* y = b + bo; R* z = o + oo;
    if (sa == 1 && sb == 1) { for (int64_t i = 0; i < n; ++i) z[i] = F::f(x[i], y[i]); }
    else if (sa == 1) { T v = y[0]; for (int64_t i = 0; i < n; ++i) z[i] = F::f(x[i], v); }
    else if (sb == 1) { T v = x[0]; for (int64_t i = 0; i < n; ++i) z[i] = F::f(v, y[i]); }
    else { for (int64_t i = 0; i < n; ++i) z[i] = F::f(x[i * sa], y[i * sb]); }
  };
  if (p.dims.size() == 1) {  // one long row: split it across threads
    int64_t sa = p.strides[0][0], sb = p.strides[1][0];
    for_each_chunk(p.total, [&](int64_t start, int64_t n) { row(start * sa, start * sb, start, n, sa, sb); });
  } else {
    for_each_row(p, [&](const int64_t* off, int64_t oo, int64_t n, const int64_t* st) { row(off[0], off[1], oo, n, st[0], st[1]); });
  }
}

template <class T>
static void binary_typed(int op, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os) {
  const T* x = a.data<T>(); const T* y = b.data<T>();
  if (op >= EQ && op <= GE) {
    check_buffer("compare", "out", o, os, BOOL);
    uint8_t* z = o.data<uint8_t>();
    switch (op) {
      case EQ: run_binary<Eq<T>>(x, as, y, bs, z, os, "equal"); break;
      case NE: run_binary<Ne<T>>(x, as, y, bs, z, os, "not_equal"); break;
      case LT: run_binary<Lt<T>>(x, as, y, bs, z, os, "less"); break;
      case LE: run_binary<Le<T>>(x, as, y, bs, z, os, "less_equal"); break;
      case GT: run_binary<Gt<T>>(x, as, y, bs, z, os, "greater"); break;
      case GE: run_binary<Ge<T>>(x, as, y, bs, z, os, "greater_equal"); break;
    }
    return;
  }
  check_buffer("binary", "out", o, os, a.dtype);
  T* z = o.data<T>();
  switch (op) {
    case ADD: run_binary<Add<T>>(x, as, y, bs, z, os, "add"); break;
    case SUB: run_binary<Sub<T>>(x, as, y, bs, z, os, "subtract"); break;
    case MUL: run_binary<Mul<T>>(x, as, y, bs, z, os, "multiply"); break;
    case DIV: run_binary<Div<T>>(x, as, y, bs, z, os, "divide"); break;
    case POW: run_binary<Pow<T>>(x, as, y, bs, z, os, "power"); break;
    case MAXIMUM: run_binary<Max<T>>(x, as, y, bs, z, os, "maximum"); break;
    case MINIMUM: run_binary<Min<T>>(x, as, y, bs, z, os, "minimum"); break;
    case FLOORDIV: run_binary<FloorDiv<T>>(x, as, y, bs, z, os, "floor_divide"); break;
    case MOD: run_binary<Mod<T>>(x, as, y, bs, z, os, "mod"); break;
    default: LAMINA_CHECK(false, "binary: op code " << op << " is not defined for " << dtype_name(a.dtype));
  }
}

// out = a (op) b with numpy broadcasting. a and b share a dtype; comparisons write bool.
static void binary(int op, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os) {
  check_buffer("binary", "a", a, as, a.dtype);
  check_buffer("binary", "b", b, bs, a.dtype);
  switch (a.dtype) {
    case F32: binary_typed<float>(op, a, as, b, bs, o, os); break;
    case I32: binary_typed<int32_t>(op, a, as, b, bs, o, os); break;
    case I64: binary_typed<int64_t>(op, a, as, b, bs, o, os); break;
    case BOOL: {
      check_buffer("logical", "out", o, os, BOOL);
      const uint8_t* x = a.data<uint8_t>(); const uint8_t* y = b.data<uint8_t>(); uint8_t* z = o.data<uint8_t>();
      switch (op) {
        case AND: case MUL: case MINIMUM: run_binary<And>(x, as, y, bs, z, os, "logical_and"); break;
        case OR: case ADD: case MAXIMUM: run_binary<Or>(x, as, y, bs, z, os, "logical_or"); break;
        case XOR: case NE: run_binary<Xor>(x, as, y, bs, z, os, "logical_xor"); break;
        case EQ: run_binary<Eq<uint8_t>>(x, as, y, bs, z, os, "equal"); break;
        default: LAMINA_CHECK(false, "binary: op code " << op << " is not defined for bool tensors");
      }
    }
  }
}

// out = cond ? a : b, all three broadcast to the output shape.
template <class T>
static void where_typed(const Buffer& c, const Shape& cs, const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os) {
  BroadcastPlan p = make_plan({&cs, &as, &bs}, os, "where");
  const uint8_t* C = c.data<uint8_t>(); const T* A = a.data<T>(); const T* B = b.data<T>(); T* O = o.data<T>();
  for_each_row(p, [&](const int64_t* off, int64_t oo, int64_t n, const int64_t* st) {
    for (int64_t i = 0; i < n; ++i) O[oo + i] = C[off[0] + i * st[0]] ? A[off[1] + i * st[1]] : B[off[2] + i * st[2]];
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
  }
}

// ---- unary maths -----------------------------------------------------------------------------
enum UnaryOp : int {
  NEG = 0, EXP, LOG, SQRT, ABS, TANH, SIGMOID, RELU, SOFTPLUS, ELU, SELU, GELU, GELU_TANH, SQUARE,
  SIGN, RECIPROCAL, LOG1P, EXPM1, SIN, COS, FLOOR, CEIL, ROUND, RSQRT, ERF, LEAKY_RELU, RELU6,
  SILU, HARD_SIGMOID, LOGICAL_NOT, ISNAN, ISFINITE, SOFTSIGN
};

static constexpr float kSeluAlpha = 1.6732632423543772f, kSeluScale = 1.0507009873554805f;

static inline float sigmoidf(float x) { return 1.0f / (1.0f + std::exp(-x)); }
static inline float softplusf(float x) { return x > 20.f ? x : (x < -20.f ? std::exp(x) : std::log1p(std::exp(x))); }
static inline float gelu_tanhf(float x) {
  const float c = 0.7978845608028654f;  // sqrt(2/pi)
  return 0.5f * x * (1.f + std::tanh(c * (x + 0.044715f * x * x * x)));
}

template <class F>
static void map_f32(const float* x, float* y, int64_t n, F f) {
  for_each_chunk(n, [&](int64_t s, int64_t m) {
    const float* xs = x + s; float* ys = y + s;
#pragma omp simd
    for (int64_t i = 0; i < m; ++i) ys[i] = f(xs[i]);
  });
}

// out = f(x) elementwise; `alpha` parametrises elu / leaky_relu.
static void unary(int op, const Buffer& xb, Buffer& ob, double alpha_d) {
  LAMINA_CHECK(xb.numel == ob.numel, "unary: input has " << xb.numel << " elements, output " << ob.numel);
  const int64_t n = xb.numel;
  if (op == ISNAN || op == ISFINITE) {
    check_dtype("unary", "out", ob, BOOL);
    uint8_t* o = ob.data<uint8_t>();
    if (xb.dtype != F32) { for (int64_t i = 0; i < n; ++i) o[i] = op == ISFINITE; return; }
    const float* x = xb.data<float>();
    for (int64_t i = 0; i < n; ++i) o[i] = op == ISNAN ? std::isnan(x[i]) : std::isfinite(x[i]);
    return;
  }
  check_dtype("unary", "out", ob, xb.dtype);
  if (xb.dtype == BOOL) {
    LAMINA_CHECK(op == LOGICAL_NOT, "unary: op code " << op << " is not defined for bool tensors");
    const uint8_t* x = xb.data<uint8_t>(); uint8_t* o = ob.data<uint8_t>();
    for (int64_t i = 0; i < n; ++i) o[i] = !x[i];
    return;
  }
  if (xb.dtype == I32 || xb.dtype == I64) {
    auto run = [&](auto* x, auto* o) {
      using T = std::remove_pointer_t<decltype(o)>;
      for (int64_t i = 0; i < n; ++i) {
        T v = x[i];
        switch (op) {
          case NEG: o[i] = -v; break;
          case ABS: o[i] = v < 0 ? -v : v; break;
          case SQUARE: o[i] = v * v; break;
          case SIGN: o[i] = (v > 0) - (v < 0); break;
          case RELU: o[i] = v > 0 ? v : 0; break;
          case FLOOR: case CEIL: case ROUND: o[i] = v; break;
          default: LAMINA_CHECK(false, "unary: op code " << op << " needs a float tensor, received " << dtype_name(xb.dtype));
        }
      }
    };
    if (xb.dtype == I32) run(xb.data<int32_t>(), ob.data<int32_t>());
    else run(xb.data<int64_t>(), ob.data<int64_t>());
    return;
  }
  const float* x = xb.data<float>(); float* y = ob.data<float>();
  const float alpha = float(alpha_d);
  switch (op) {
    case NEG: map_f32(x, y, n, [](float v) { return -v; }); break;
    case EXP: map_f32(x, y, n, [](float v) { return std::exp(v); }); break;
    case LOG: map_f32(x, y, n, [](float v) { return std::log(v); }); break;
    case SQRT: map_f32(x, y, n, [](float v) { return std::sqrt(v); }); break;
    case RSQRT: map_f32(x, y, n, [](float v) { return 1.f / std::sqrt(v); }); break;
    case ABS: map_f32(x, y, n, [](float v) { return std::fabs(v); }); break;
    case TANH: map_f32(x, y, n, [](float v) { return std::tanh(v); }); break;
    case SIGMOID: map_f32(x, y, n, [](float v) { return sigmoidf(v); }); break;
    case RELU: map_f32(x, y, n, [](float v) { return v > 0.f ? v : 0.f; }); break;
    case RELU6: map_f32(x, y, n, [](float v) { return v < 0.f ? 0.f : (v > 6.f ? 6.f : v); }); break;
    case LEAKY_RELU: map_f32(x, y, n, [alpha](float v) { return v > 0.f ? v : alpha * v; }); break;
    case SOFTPLUS: map_f32(x, y, n, [](float v) { return softplusf(v); }); break;
    case SOFTSIGN: map_f32(x, y, n, [](float v) { return v / (1.f + std::fabs(v)); }); break;
    case ELU: map_f32(x, y, n, [alpha](float v) { return v > 0.f ? v : alpha * std::expm1(v); }); break;
    case SELU: map_f32(x, y, n, [](float v) { return kSeluScale * (v > 0.f ? v : kSeluAlpha * std::expm1(v)); }); break;
    case GELU: map_f32(x, y, n, [](float v) { return 0.5f * v * (1.f + std::erf(v * 0.7071067811865476f)); }); break;
    case GELU_TANH: map_f32(x, y, n, [](float v) { return gelu_tanhf(v); }); break;
    case SILU: map_f32(x, y, n, [](float v) { return v * sigmoidf(v); }); break;
    case HARD_SIGMOID: map_f32(x, y, n, [](float v) { float t = v / 6.f + 0.5f; return t < 0.f ? 0.f : (t > 1.f ? 1.f : t); }); break;
    case SQUARE: map_f32(x, y, n, [](float v) { return v * v; }); break;
    case SIGN: map_f32(x, y, n, [](float v) { return float((v > 0.f) - (v < 0.f)); }); break;
    case RECIPROCAL: map_f32(x, y, n, [](float v) { return 1.f / v; }); break;
    case LOG1P: map_f32(x, y, n, [](float v) { return std::log1p(v); }); break;
    case EXPM1: map_f32(x, y, n, [](float v) { return std::expm1(v); }); break;
    case SIN: map_f32(x, y, n, [](float v) { return std::sin(v); }); break;
    case COS: map_f32(x, y, n, [](float v) { return std::cos(v); }); break;
    case FLOOR: map_f32(x, y, n, [](float v) { return std::floor(v); }); break;
    case CEIL: map_f32(x, y, n, [](float v) { return std::ceil(v); }); break;
    case ROUND: map_f32(x, y, n, [](float v) { return std::nearbyint(v); }); break;
    case ERF: map_f32(x, y, n, [](float v) { return std::erf(v); }); break;
    default: LAMINA_CHECK(false, "unary: unknown op code " << op);
  }
}

// Derivative kernels: out = g * f'(.) where the saved value is x (the input) or y (the output).
enum GradOp : int { RELU_GRAD = 0, SIGMOID_GRAD_Y, TANH_GRAD_Y, ELU_GRAD_X, SELU_GRAD_X, GELU_GRAD_X,
                    GELU_TANH_GRAD_X, SOFTPLUS_GRAD_X, LEAKY_RELU_GRAD_X, RELU6_GRAD_X, SILU_GRAD_X,
                    HARD_SIGMOID_GRAD_X, SOFTSIGN_GRAD_X };

static void unary_grad(int op, const Buffer& sb, const Buffer& gb, Buffer& ob, double alpha_d) {
  check_dtype("unary_grad", "saved", sb, F32);
  check_dtype("unary_grad", "grad", gb, F32);
  check_dtype("unary_grad", "out", ob, F32);
  LAMINA_CHECK(sb.numel == gb.numel && gb.numel == ob.numel, "unary_grad: element counts differ");
  const float* s = sb.data<float>(); const float* g = gb.data<float>(); float* o = ob.data<float>();
  const float alpha = float(alpha_d);
  const int64_t n = sb.numel;
  auto run = [&](auto f) {
    for_each_chunk(n, [&](int64_t st, int64_t m) {
#pragma omp simd
      for (int64_t i = st; i < st + m; ++i) o[i] = f(s[i], g[i]);
    });
  };
  switch (op) {
    case RELU_GRAD: run([](float v, float d) { return v > 0.f ? d : 0.f; }); break;
    case SIGMOID_GRAD_Y: run([](float y, float d) { return d * y * (1.f - y); }); break;
    case TANH_GRAD_Y: run([](float y, float d) { return d * (1.f - y * y); }); break;
    case ELU_GRAD_X: run([alpha](float v, float d) { return v > 0.f ? d : d * alpha * std::exp(v); }); break;
    case SELU_GRAD_X: run([](float v, float d) { return d * kSeluScale * (v > 0.f ? 1.f : kSeluAlpha * std::exp(v)); }); break;
    case GELU_GRAD_X: run([](float v, float d) {
      float cdf = 0.5f * (1.f + std::erf(v * 0.7071067811865476f));
      float pdf = 0.3989422804014327f * std::exp(-0.5f * v * v);
      return d * (cdf + v * pdf); }); break;
    case GELU_TANH_GRAD_X: run([](float v, float d) {
      const float c = 0.7978845608028654f;
      float u = c * (v + 0.044715f * v * v * v);
      float t = std::tanh(u);
      float du = c * (1.f + 3.f * 0.044715f * v * v);
      return d * (0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * du); }); break;
    case SOFTPLUS_GRAD_X: run([](float v, float d) { return d * sigmoidf(v); }); break;
    case LEAKY_RELU_GRAD_X: run([alpha](float v, float d) { return v > 0.f ? d : alpha * d; }); break;
    case RELU6_GRAD_X: run([](float v, float d) { return (v > 0.f && v < 6.f) ? d : 0.f; }); break;
    case SILU_GRAD_X: run([](float v, float d) { float sg = sigmoidf(v); return d * sg * (1.f + v * (1.f - sg)); }); break;
    case HARD_SIGMOID_GRAD_X: run([](float v, float d) { return (v > -3.f && v < 3.f) ? d / 6.f : 0.f; }); break;
    case SOFTSIGN_GRAD_X: run([](float v, float d) { float a = 1.f + std::fabs(v); return d / (a * a); }); break;
    default: LAMINA_CHECK(false, "unary_grad: unknown op code " << op);
  }
}

// out = clip(x, lo, hi); the gradient passes where lo <= x <= hi (clip_grad).
static void clip(const Buffer& xb, double lo, double hi, Buffer& ob) {
  LAMINA_CHECK(xb.numel == ob.numel, "clip: element counts differ");
  check_dtype("clip", "out", ob, xb.dtype);
  const int64_t n = xb.numel;
  auto run = [&](auto* x, auto* o) {
    using T = std::remove_pointer_t<decltype(o)>;
    T l = T(lo), h = T(hi);
    for_each_chunk(n, [&](int64_t s, int64_t m) {
      for (int64_t i = s; i < s + m; ++i) { T v = x[i]; o[i] = v < l ? l : (v > h ? h : v); }
    });
  };
  switch (xb.dtype) {
    case F32: run(xb.data<float>(), ob.data<float>()); break;
    case I32: run(xb.data<int32_t>(), ob.data<int32_t>()); break;
    case I64: run(xb.data<int64_t>(), ob.data<int64_t>()); break;
    default: LAMINA_CHECK(false, "clip: bool tensors cannot be clipped");
  }
}
static void clip_grad(const Buffer& xb, double lo, double hi, const Buffer& gb, Buffer& ob) {
  check_dtype("clip_grad", "x", xb, F32);
  LAMINA_CHECK(xb.numel == gb.numel && gb.numel == ob.numel, "clip_grad: element counts differ");
  const float* x = xb.data<float>(); const float* g = gb.data<float>(); float* o = ob.data<float>();
  float l = float(lo), h = float(hi);
  for_each_chunk(xb.numel, [&](int64_t s, int64_t m) {
    for (int64_t i = s; i < s + m; ++i) o[i] = (x[i] >= l && x[i] <= h) ? g[i] : 0.f;
  });
}

// y = a * x + b * y in place on float32 buffers of equal size (optimizer and accumulation helper).
static void axpby(double a, const Buffer& xb, double b, Buffer& yb) {
  check_dtype("axpby", "x", xb, F32);
  check_dtype("axpby", "y", yb, F32);
  LAMINA_CHECK(xb.numel == yb.numel, "axpby: x holds " << xb.numel << " elements, y " << yb.numel);
  const float* x = xb.data<float>(); float* y = yb.data<float>();
  float fa = float(a), fb = float(b);
  for_each_chunk(xb.numel, [&](int64_t s, int64_t m) {
#pragma omp simd
    for (int64_t i = s; i < s + m; ++i) y[i] = fa * x[i] + fb * y[i];
  });
}

// out = x broadcast to out's shape (numpy rules), any dtype.
template <class T>
static void broadcast_typed(const T* x, const Shape& xs, T* o, const Shape& os) {
  BroadcastPlan p = make_plan({&xs}, os, "broadcast_to");
  for_each_row(p, [&](const int64_t* off, int64_t oo, int64_t n, const int64_t* st) {
    const T* src = x + off[0];
    if (st[0] == 0) { T v = src[0]; for (int64_t i = 0; i < n; ++i) o[oo + i] = v; }
    else for (int64_t i = 0; i < n; ++i) o[oo + i] = src[i * st[0]];
  });
}
static void broadcast_to(const Buffer& x, const Shape& xs, Buffer& o, const Shape& os) {
  check_buffer("broadcast_to", "x", x, xs, x.dtype);
  check_buffer("broadcast_to", "out", o, os, x.dtype);
  switch (dtype_size(x.dtype)) {
    case 1: broadcast_typed(x.data<uint8_t>(), xs, o.data<uint8_t>(), os); break;
    case 4: broadcast_typed(x.data<int32_t>(), xs, o.data<int32_t>(), os); break;
    default: broadcast_typed(x.data<int64_t>(), xs, o.data<int64_t>(), os); break;
  }
}

void bind_elementwise(py::module_& m) {
  m.def("broadcast_to", &broadcast_to);
  m.def("binary", &binary);
  m.def("where", &where);
  m.def("unary", &unary, py::arg("op"), py::arg("x"), py::arg("out"), py::arg("alpha") = 0.0);
  m.def("unary_grad", &unary_grad, py::arg("op"), py::arg("saved"), py::arg("grad"), py::arg("out"), py::arg("alpha") = 0.0);
  m.def("clip", &clip);
  m.def("clip_grad", &clip_grad);
  m.def("axpby", &axpby);
}

}  // namespace lamina
