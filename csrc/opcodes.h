// Op codes shared by every device module and exported to Python (backend/math.py and
// backend/special.py read them from the module as dicts, so the codes are written once). Each
// list is an X-macro: the enum and the exported names come from the same line. AND / OR / XOR
// are logical on bool tensors and bitwise on integer ones.
#pragma once

#define LAMINA_BINARY_OPS(X) \
  X(ADD) X(SUB) X(MUL) X(DIV) X(POW) X(MAXIMUM) X(MINIMUM) X(EQ) X(NE) X(LT) X(LE) X(GT) X(GE) \
  X(AND) X(OR) X(XOR) X(FLOORDIV) X(MOD) X(ARCTAN2) X(HYPOT) X(FMOD) X(COPYSIGN) X(NEXTAFTER) X(FMAX) \
  X(FMIN) X(HEAVISIDE) X(LDEXP) X(LOGADDEXP2) X(LEFT_SHIFT) X(RIGHT_SHIFT) X(GCD) X(LCM)

#define LAMINA_UNARY_OPS(X) \
  X(NEG) X(EXP) X(LOG) X(SQRT) X(ABS) X(TANH) X(SIGMOID) X(RELU) X(SOFTPLUS) X(ELU) X(SELU) \
  X(GELU) X(GELU_TANH) X(SQUARE) X(SIGN) X(RECIPROCAL) X(LOG1P) X(EXPM1) X(SIN) X(COS) X(FLOOR) \
  X(CEIL) X(ROUND) X(RSQRT) X(ERF) X(LEAKY_RELU) X(RELU6) X(SILU) X(HARD_SIGMOID) X(LOGICAL_NOT) \
  X(ISNAN) X(ISFINITE) X(SOFTSIGN) X(LOG2) X(LOG10) X(EXP2) X(ISINF) X(TAN) X(ARCSIN) X(ARCCOS) \
  X(ARCTAN) X(SINH) X(COSH) X(ARCSINH) X(ARCCOSH) X(ARCTANH) X(CBRT) X(ERFC) X(ERFINV) X(TRUNC) X(I0) \
  X(I1) X(SIGNBIT) X(BITWISE_NOT)

// Derivatives of unary ops: out = grad * f'(.), from the saved input (_X) or output (_Y).
#define LAMINA_GRAD_OPS(X) \
  X(RELU_GRAD) X(SIGMOID_GRAD_Y) X(TANH_GRAD_Y) X(ELU_GRAD_X) X(SELU_GRAD_X) X(GELU_GRAD_X) \
  X(GELU_TANH_GRAD_X) X(SOFTPLUS_GRAD_X) X(LEAKY_RELU_GRAD_X) X(RELU6_GRAD_X) X(SILU_GRAD_X) \
  X(HARD_SIGMOID_GRAD_X) X(SOFTSIGN_GRAD_X)

#define LAMINA_REDUCE_OPS(X) X(R_SUM) X(R_MEAN) X(R_MAX) X(R_MIN) X(R_PROD) X(R_ANY) X(R_ALL)

#define LAMINA_SCAN_OPS(X) X(S_SUM) X(S_PROD)

namespace lamina {
#define LAMINA_ENUM_ITEM(name) name,
enum BinaryOp : int { LAMINA_BINARY_OPS(LAMINA_ENUM_ITEM) BINARY_COUNT };
enum UnaryOp : int { LAMINA_UNARY_OPS(LAMINA_ENUM_ITEM) UNARY_COUNT };
enum GradOp : int { LAMINA_GRAD_OPS(LAMINA_ENUM_ITEM) GRAD_COUNT };
enum ReduceOp : int { LAMINA_REDUCE_OPS(LAMINA_ENUM_ITEM) REDUCE_COUNT };
enum ScanOp : int { LAMINA_SCAN_OPS(LAMINA_ENUM_ITEM) SCAN_COUNT };
#undef LAMINA_ENUM_ITEM
}  // namespace lamina
