"""numpy's further elementwise functions under keras.ops's names: trigonometric and hyperbolic
functions and their inverses, cbrt, erfc, erfinv, i0, trunc, signbit; the binary float
functions arctan2, hypot, fmod, copysign, nextafter, fmax, fmin, heaviside, ldexp, logaddexp2;
and the integer functions bitwise_and / or / xor / invert, left_shift / right_shift, gcd, lcm.

Each is one elementwise kernel (csrc/cpu/elementwise.cpp, op codes from csrc/opcodes.h) plus a
backward rule where the function has a derivative. Dtypes follow backend/math.py: integer and
bool inputs of the float functions compute in float32; the integer functions take int32 / int64
tensors (bool where numpy takes bool) and refuse float32 with a TypeError.
"""
import math as _pymath

import numpy as np

from . import _cpu, dtypes
from .autodiff import needs_grad, record
from .math import (_as_tensor, _binary_forward, _float_unary, _operands, _piecewise_unary, _record_zero_grad,
                   _to_float, _unary_forward, add, cast, divide, equal, exp, exp2, greater_equal, isnan,
                   less_equal, logical_or, multiply, negative, not_equal, rsqrt, square, subtract, unbroadcast,
                   where, zeros_like)
from .tensor import Tensor

__all__ = [
    # unary float functions
    "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "arcsinh", "arccosh", "arctanh", "cbrt", "erfc",
    "erfinv", "i0", "trunc", "signbit",
    # binary float functions
    "arctan2", "hypot", "fmod", "copysign", "nextafter", "fmax", "fmin", "heaviside", "ldexp", "logaddexp2",
    # integer functions
    "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_invert", "bitwise_not", "left_shift", "right_shift",
    "bitwise_left_shift", "bitwise_right_shift", "gcd", "lcm",
]

_U = _cpu.UNARY_OPS
_B = _cpu.BINARY_OPS
_TWO_OVER_SQRT_PI = 2.0 / _pymath.sqrt(_pymath.pi)
_SQRT_PI_OVER_TWO = _pymath.sqrt(_pymath.pi) / 2.0
_LN2 = _pymath.log(2.0)


# ---- unary float functions ----------------------------------------------------------------------

tan = _float_unary(_U["TAN"], "tan", lambda x, y, g: multiply(g, add(square(y), 1.0)), "Tangent (radians).")
arcsin = _float_unary(_U["ARCSIN"], "arcsin", lambda x, y, g: multiply(g, rsqrt(subtract(1.0, square(x)))),
                      "Inverse sine, in [-pi/2, pi/2]; NaN outside [-1, 1].")
arccos = _float_unary(_U["ARCCOS"], "arccos",
                      lambda x, y, g: negative(multiply(g, rsqrt(subtract(1.0, square(x))))),
                      "Inverse cosine, in [0, pi]; NaN outside [-1, 1].")
arctan = _float_unary(_U["ARCTAN"], "arctan", lambda x, y, g: divide(g, add(square(x), 1.0)),
                      "Inverse tangent, in [-pi/2, pi/2].")
sinh = _float_unary(_U["SINH"], "sinh", lambda x, y, g: multiply(g, cosh(x)), "Hyperbolic sine.")
cosh = _float_unary(_U["COSH"], "cosh", lambda x, y, g: multiply(g, sinh(x)), "Hyperbolic cosine.")
arcsinh = _float_unary(_U["ARCSINH"], "arcsinh", lambda x, y, g: multiply(g, rsqrt(add(square(x), 1.0))),
                       "Inverse hyperbolic sine.")
arccosh = _float_unary(_U["ARCCOSH"], "arccosh", lambda x, y, g: multiply(g, rsqrt(subtract(square(x), 1.0))),
                       "Inverse hyperbolic cosine; NaN below 1.")
arctanh = _float_unary(_U["ARCTANH"], "arctanh", lambda x, y, g: divide(g, subtract(1.0, square(x))),
                       "Inverse hyperbolic tangent; +-inf at +-1, NaN outside [-1, 1].")
cbrt = _float_unary(_U["CBRT"], "cbrt", lambda x, y, g: divide(g, multiply(square(y), 3.0)),
                    "Cube root (real, negative for negative x).")
erfc = _float_unary(_U["ERFC"], "erfc",
                    lambda x, y, g: negative(multiply(g, multiply(_TWO_OVER_SQRT_PI, exp(negative(square(x)))))),
                    "The complementary error function 1 - erf(x), accurate where erf(x) is near 1.")
erfinv = _float_unary(_U["ERFINV"], "erfinv",
                      lambda x, y, g: multiply(g, multiply(_SQRT_PI_OVER_TWO, exp(square(y)))),
                      "The inverse error function: erf(erfinv(x)) = x on (-1, 1); +-inf at +-1, NaN outside.")
_i1 = _float_unary(_U["I1"], "i1", lambda x, y, g: multiply(g, subtract(i0(x), divide(y, x))),
                   "The modified Bessel function of the first kind of order 1.")
i0 = _float_unary(_U["I0"], "i0", lambda x, y, g: multiply(g, _i1(x)),
                  "The modified Bessel function of the first kind of order 0.")

trunc = _piecewise_unary(_U["TRUNC"], "trunc",
                         "Rounds toward zero (integer tensors are returned as they are).")


def signbit(x):
    """True where the sign bit is set: negative numbers, -0.0 and NaNs with the sign bit."""
    x = _as_tensor(x, "signbit")
    return _unary_forward(_U["SIGNBIT"], x, out_dtype=dtypes.BOOL)


# ---- binary float functions ---------------------------------------------------------------------

def _float_pair(x1, x2, op):
    x, y = _operands(x1, x2, op)
    return _to_float(x), _to_float(y)


def arctan2(x1, x2):
    """The angle of the point (x2, x1) in radians, in [-pi, pi], with numpy's signed-zero and
    infinity conventions. The gradient at the origin is taken as 0."""
    y, x = _float_pair(x1, x2, "arctan2")
    out = _binary_forward(_B["ARCTAN2"], "arctan2", y, x)
    if needs_grad(y, x):
        def bw(g, n):
            r2 = add(square(x), square(y))
            scale = where(equal(r2, 0.0), 0.0, divide(g, where(equal(r2, 0.0), 1.0, r2)))
            return (unbroadcast(multiply(scale, x), y.shape) if n[0] else None,
                    unbroadcast(negative(multiply(scale, y)), x.shape) if n[1] else None)
        record(out, (y, x), bw)
    return out


def hypot(x1, x2):
    """sqrt(x1 ** 2 + x2 ** 2) without overflow or underflow; inf if either is infinite (even
    with a NaN). The gradient at the origin is taken as 0."""
    a, b = _float_pair(x1, x2, "hypot")
    out = _binary_forward(_B["HYPOT"], "hypot", a, b)
    if needs_grad(a, b):
        def bw(g, n):
            zero = equal(out, 0.0)
            scale = divide(g, where(zero, 1.0, out))
            return (unbroadcast(where(zero, 0.0, multiply(scale, a)), a.shape) if n[0] else None,
                    unbroadcast(where(zero, 0.0, multiply(scale, b)), b.shape) if n[1] else None)
        record(out, (a, b), bw)
    return out


def fmod(x1, x2):
    """C's fmod: the remainder of division truncated toward zero, with the sign of x1 (unlike
    mod, whose result takes the sign of x2). Integer fmod by zero gives 0, as numpy."""
    x, y = _operands(x1, x2, "fmod")
    if x.dtype == dtypes.BOOL:
        x, y = cast(x, dtypes.INT32), cast(y, dtypes.INT32)
    out = _binary_forward(_B["FMOD"], "fmod", x, y)
    if needs_grad(x, y):
        def bw(g, n):
            gy = None
            if n[1]:
                q = _unary_forward(_U["TRUNC"], divide(x, y))
                gy = unbroadcast(negative(multiply(g, q)), y.shape)
            return (unbroadcast(g, x.shape) if n[0] else None, gy)
        record(out, (x, y), bw)
    return out


def copysign(x1, x2):
    """|x1| with the sign (bit) of x2."""
    a, b = _float_pair(x1, x2, "copysign")
    out = _binary_forward(_B["COPYSIGN"], "copysign", a, b)
    if needs_grad(a, b):
        def bw(g, n):
            flip = not_equal(signbit(a), signbit(b))
            return (unbroadcast(where(flip, negative(g), g), a.shape) if n[0] else None,
                    zeros_like(b) if n[1] else None)
        record(out, (a, b), bw)
    return out


def nextafter(x1, x2):
    """The next float32 after x1 toward x2 (x2 itself when they are equal). Not differentiable."""
    a, b = _float_pair(x1, x2, "nextafter")
    return _binary_forward(_B["NEXTAFTER"], "nextafter", a, b)


def _fminmax(code, bool_code, op, x1, x2):
    x, y = _operands(x1, x2, op)
    if x.dtype == dtypes.BOOL:
        return _binary_forward(bool_code, op, x, y)
    out = _binary_forward(code, op, x, y)
    if needs_grad(x, y):
        def bw(g, n):
            # the gradient follows the operand the result came from (x1 on ties)
            pick_x = logical_or((greater_equal if op == "fmax" else less_equal)(x, y), isnan(y))
            return (unbroadcast(where(pick_x, g, 0.0), x.shape) if n[0] else None,
                    unbroadcast(where(pick_x, 0.0, g), y.shape) if n[1] else None)
        record(out, (x, y), bw)
    return out


def fmax(x1, x2):
    """Elementwise maximum that ignores NaN: NaN only where both are NaN (maximum propagates it)."""
    return _fminmax(_B["FMAX"], _B["MAXIMUM"], "fmax", x1, x2)


def fmin(x1, x2):
    """Elementwise minimum that ignores NaN: NaN only where both are NaN (minimum propagates it)."""
    return _fminmax(_B["FMIN"], _B["MINIMUM"], "fmin", x1, x2)


def heaviside(x1, x2):
    """The step function: 0 where x1 < 0, x2 where x1 == 0, 1 where x1 > 0 (NaN stays NaN).
    The gradient is zero."""
    a, b = _float_pair(x1, x2, "heaviside")
    out = _binary_forward(_B["HEAVISIDE"], "heaviside", a, b)
    if needs_grad(a, b):
        _record_zero_grad(out, (a, b))
    return out


def ldexp(x1, x2):
    """x1 * 2 ** x2 for integer exponents x2, exact (overflow gives inf, underflow 0)."""
    a = _to_float(_as_tensor(x1, "ldexp"))
    if isinstance(x2, Tensor):
        e = x2
    else:
        arr = _as_tensor(x2, "ldexp").numpy() if isinstance(x2, (list, tuple)) else np.asarray(x2)
        if arr.dtype.kind not in "biu":
            raise TypeError(f"ldexp: the exponent x2 must hold integers, received {arr.dtype} values {x2!r:.60} "
                            f"(x1 has shape {a.shape}); round and cast them first, e.g. "
                            "ops.cast(ops.round(x2), 'int32')")
        e = _as_tensor(arr.astype(np.int64), "ldexp")
    if e.dtype == dtypes.FLOAT32:
        raise TypeError(f"ldexp: the exponent x2 must be an integer tensor, received float32 with shape {e.shape} "
                        f"(x1 has shape {a.shape}); cast it with ops.cast(x2, 'int32')")
    a, ef = _operands(a, cast(e, dtypes.FLOAT32), "ldexp")   # exact for every exponent that matters
    out = _binary_forward(_B["LDEXP"], "ldexp", a, ef)
    if needs_grad(a):
        record(out, (a,), lambda g, n: (unbroadcast(_binary_forward(_B["LDEXP"], "ldexp", g, ef), a.shape),))
    return out


def logaddexp2(x1, x2):
    """log2(2 ** x1 + 2 ** x2) without overflow."""
    a, b = _float_pair(x1, x2, "logaddexp2")
    out = _binary_forward(_B["LOGADDEXP2"], "logaddexp2", a, b)
    if needs_grad(a, b):
        def bw(g, n):
            return (unbroadcast(multiply(g, exp2(subtract(a, out))), a.shape) if n[0] else None,
                    unbroadcast(multiply(g, exp2(subtract(b, out))), b.shape) if n[1] else None)
        record(out, (a, b), bw)
    return out


# ---- integer functions --------------------------------------------------------------------------

def _int_pair(x1, x2, op, allow_bool):
    x, y = _operands(x1, x2, op)
    if x.dtype == dtypes.FLOAT32:
        raise TypeError(f"{op}: expected integer{' or bool' if allow_bool else ''} operands, received float32 "
                        f"with shapes {x.shape} and {y.shape}; cast them first, e.g. ops.cast(x, 'int32')")
    if x.dtype == dtypes.BOOL and not allow_bool:
        x, y = cast(x, dtypes.INT32), cast(y, dtypes.INT32)
    return x, y


def _bitwise(code, op, doc):
    def f(x, y):   # Keras's parameter names
        x, y = _int_pair(x, y, op, True)
        return _binary_forward(code, op, x, y)
    f.__name__ = op
    f.__doc__ = doc
    return f


bitwise_and = _bitwise(_B["AND"], "bitwise_and", "Bitwise AND of integer tensors (logical AND of bool tensors).")
bitwise_or = _bitwise(_B["OR"], "bitwise_or", "Bitwise OR of integer tensors (logical OR of bool tensors).")
bitwise_xor = _bitwise(_B["XOR"], "bitwise_xor", "Bitwise XOR of integer tensors (logical XOR of bool tensors).")


def bitwise_invert(x):
    """Bitwise NOT (~x) of an integer tensor; logical NOT of a bool tensor."""
    x = _as_tensor(x, "bitwise_invert")
    if x.dtype == dtypes.FLOAT32:
        raise TypeError(f"bitwise_invert: expected an integer or bool tensor, received float32 with shape {x.shape}; "
                        "cast it first, e.g. ops.cast(x, 'int32')")
    return _unary_forward(_U["BITWISE_NOT"], x)


bitwise_not = bitwise_invert


def _integer_binary(code, op, doc, keras_names_x1_x2=False):
    if keras_names_x1_x2:   # Keras's parameter names: (x1, x2) for gcd / lcm, (x, y) for the shifts
        def f(x1, x2):
            x, y = _int_pair(x1, x2, op, False)
            return _binary_forward(code, op, x, y)
    else:
        def f(x, y):
            x, y = _int_pair(x, y, op, False)
            return _binary_forward(code, op, x, y)
    f.__name__ = op
    f.__doc__ = doc
    return f


left_shift = _integer_binary(_B["LEFT_SHIFT"], "left_shift",
                             "x1 << x2 on integers, wrapping; a shift by a negative count or by the width or "
                             "more gives 0, as numpy.")
right_shift = _integer_binary(_B["RIGHT_SHIFT"], "right_shift",
                              "x1 >> x2 on integers (arithmetic: the sign is kept); a shift by a negative count "
                              "or by the width or more gives 0, or -1 for a negative x1, as numpy.")
bitwise_left_shift = left_shift
bitwise_right_shift = right_shift
gcd = _integer_binary(_B["GCD"], "gcd", "Greatest common divisor of |x1| and |x2| (gcd(0, 0) = 0).", True)
lcm = _integer_binary(_B["LCM"], "lcm", "Least common multiple of |x1| and |x2| (0 when either is 0); wraps on "
                                        "overflow, as numpy.", True)
