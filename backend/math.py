"""Elementwise maths, comparisons, reductions and scans (numpy's math family), with gradients.

Every op: check inputs, allocate the output, call the device's kernel, and record a backward
rule when a GradientTape needs it. Operands follow numpy's broadcasting; a Python number or a
numpy array on either side takes the tensor's dtype (an integer tensor with a float operand
computes in float32). Two tensors must share a dtype (TypeError) and a device (ValueError).
"""
import builtins
import functools
import math as _pymath
import numbers
import sys

import numpy as np

from . import _cpu, dtypes, validation
from .autodiff import needs_grad, record
from .tensor import Tensor, convert_to_tensor, empty

__all__ = [
    # arithmetic
    "add", "subtract", "multiply", "divide", "true_divide", "power", "negative", "maximum", "minimum",
    "floor_divide", "mod", "logaddexp",
    # comparisons and logic
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
    "logical_and", "logical_or", "logical_xor", "logical_not", "where",
    # unary maths
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "square", "abs", "absolute",
    "sign", "floor", "ceil", "round", "reciprocal", "sin", "cos", "tanh", "sigmoid", "erf",
    "isnan", "isfinite", "isinf", "clip", "cast",
    # constructors
    "full", "zeros", "ones", "zeros_like", "ones_like", "full_like", "broadcast_to",
    # reductions and scans
    "sum", "mean", "max", "min", "amax", "amin", "prod", "any", "all", "argmax", "argmin", "var", "std",
    "logsumexp", "count_nonzero", "cumsum", "cumprod",
]

# Kernel op codes (ADD, EXP, RELU_GRAD, R_SUM, S_SUM, ...): defined once in csrc/opcodes.h and
# exported by the kernel module as {name: code} tables.
for _table in ("BINARY_OPS", "UNARY_OPS", "GRAD_OPS", "REDUCE_OPS", "SCAN_OPS"):
    globals().update(getattr(_cpu, _table))
del _table

_LN2 = _pymath.log(2.0)
_LN10 = _pymath.log(10.0)


# ---- helpers ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def broadcast_shapes(a, b, op="broadcast"):
    """numpy broadcasting of two shapes; ValueError naming the op and both shapes."""
    n = builtins.max(len(a), len(b))
    pa, pb = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(pa, pb):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ValueError(f"{op}: shapes {a} and {b} cannot be broadcast together "
                             f"(dimension {x} vs {y}); aligned from the right, each dimension must "
                             f"match or be 1 -- reshape one operand, e.g. to add a size-1 axis")
    return tuple(out)


def check_same_device(op, *tensors):
    d = tensors[0].device
    for t in tensors[1:]:
        if t.device is not d:
            raise ValueError(f"{op}: inputs are on different devices ({d.name} with shape "
                             f"{tensors[0].shape}, {t.device.name} with shape {t.shape}); move one "
                             f"with x.to('{d.name}')")


def _numeric_array(x, op):
    """np.asarray(x), or a TypeError naming the op when x is not numeric."""
    try:
        a = np.asarray(x)
    except (ValueError, TypeError):
        a = None
    if a is None or a.dtype.kind not in "biuf":
        of = f" of dtype {a.dtype}" if a is not None and isinstance(x, np.ndarray) else ""
        raise TypeError(f"{op}: cannot use {type(x).__name__} {_short_repr(x)}{of} as an operand; expected a "
                        f"tensor, a number, or a (nested list of / numpy array of) numbers (lamina's dtypes are "
                        f"float32, int32, int64 and bool)")
    return a


def _short_repr(x):
    r = repr(x)
    return r if len(r) <= 40 else r[:37] + "..."


def _operands(x, y, op):
    """Converts a binary op's operands to tensors of one dtype on one device."""
    xt, yt = isinstance(x, Tensor), isinstance(y, Tensor)
    if xt and yt:
        if x.dtype != y.dtype and x.dtype in dtypes.FLOATS and y.dtype in dtypes.FLOATS:
            dt = dtypes.FLOAT32  # bfloat16 with float32 computes in float32, as Keras / JAX promote
            x, y = cast(x, dt), cast(y, dt)
        if x.dtype != y.dtype:
            raise TypeError(f"{op}: dtypes differ: {x.dtype} with shape {x.shape} and {y.dtype} with "
                            f"shape {y.shape}; cast one first, e.g. ops.cast(x, '{y.dtype}')")
        check_same_device(op, x, y)
        return x, y
    if not xt and not yt:
        x = convert_to_tensor(_numeric_array(x, op))
        return _operands(x, y, op)
    t, other = (x, y) if xt else (y, x)
    a = _numeric_array(other, op)
    dt = t.dtype
    kind = a.dtype.kind
    if kind == "f" and dt not in dtypes.FLOATS:  # a float with a bfloat16 tensor stays bfloat16 (weak type)
        dt = dtypes.FLOAT32
        t = cast(t, dt)
    elif kind in "iu" and dt == dtypes.BOOL:
        # bool tensor with integers: numpy promotes to the integer type (Python int -> int64)
        dt = dtypes.INT64 if not isinstance(other, np.ndarray) else dtypes.standardize(a.dtype)
        t = cast(t, dt)
    o = _scalar_tensor(a, dt, t.device) if a.ndim == 0 else convert_to_tensor(a, dt, t.device)
    return (t, o) if xt else (o, t)


_scalar_cache = {}


def _scalar_tensor(a, dt, device):
    """Small cache of 0-d constants (1.0, 0.5, 2 ...) so scalar arithmetic allocates nothing."""
    v = a.item()
    if v != v:  # NaN: not a usable dict key
        return convert_to_tensor(a, dt, device)
    key = (v, bool(np.signbit(a)) if a.dtype.kind == "f" else False, dt, device)
    t = _scalar_cache.get(key)
    if t is None:
        t = convert_to_tensor(a, dt, device)
        if len(_scalar_cache) < 1024:
            _scalar_cache[key] = t
    return t


def _as_tensor(x, op=None):
    """x as a Tensor; a value that cannot be one is a TypeError naming the op that received it
    (`op`, else the caller's, found only on this error path)."""
    if isinstance(x, Tensor):
        return x
    try:
        return convert_to_tensor(x)
    except TypeError as e:
        raise TypeError(f"{op or validation.op_name(sys._getframe(1))}: {e}") from e
    except ValueError as e:   # numpy's message for a ragged list names neither the op nor the problem
        op = op or validation.op_name(sys._getframe(1))
        if "inhomogeneous" in str(e):
            raise ValueError(f"{op}: cannot convert {type(x).__name__} {_short_repr(x)} to a tensor: its nested "
                             "sequences have different lengths (a ragged list); make every row the same length "
                             "(pad it)") from e
        raise ValueError(f"{op}: {e}") from e


def _detached(x):
    """A view of x that ops do not record (for forward passes with a hand-written gradient)."""
    return Tensor(x._buf, x.shape, x.dtype, x.device)


def _view(x, shape):
    return Tensor(x._buf, tuple(shape), x.dtype, x.device)


def _to_float(x):
    return x if x.dtype in dtypes.FLOATS else cast(x, dtypes.FLOAT32)


def unbroadcast(g, shape):
    """Sums a gradient of a broadcast result back down to an operand's shape."""
    if g.shape == shape:
        return g
    nd = len(g.shape)
    lead = nd - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, d in enumerate(shape) if d == 1 and g.shape[i + lead] != 1)
    s = sum(g, axis=axes, keepdims=True) if axes else g
    from .manipulation import reshape
    return reshape(s, shape)


def _record_zero_grad(out, inputs):
    """Piecewise-constant ops (floor, sign, floor_divide ...): the gradient is zero, not None."""
    record(out, inputs, lambda g, n: tuple(zeros_like(t) if need else None for t, need in zip(inputs, n)))


# ---- binary ops ---------------------------------------------------------------------------------

def _binary_forward(code, op, x, y, out_dtype=None):
    shape = x.shape if x.shape == y.shape else broadcast_shapes(x.shape, y.shape, op)
    out = empty(shape, out_dtype or x.dtype, x.device, op=op)
    x.device.kernels.binary(code, x._buf, x.shape, y._buf, y.shape, out._buf, shape)
    return out


def add(x1, x2):
    """x1 + x2 with broadcasting."""
    x, y = _operands(x1, x2, "add")
    out = _binary_forward(ADD, "add", x, y)
    if needs_grad(x, y):
        record(out, (x, y), lambda g, n: (unbroadcast(g, x.shape) if n[0] else None,
                                          unbroadcast(g, y.shape) if n[1] else None))
    return out


def subtract(x1, x2):
    """x1 - x2 with broadcasting."""
    x, y = _operands(x1, x2, "subtract")
    if x.dtype == dtypes.BOOL:
        raise TypeError(f"subtract: bool tensors cannot be subtracted (shapes {x.shape} and {y.shape}); "
                        "use ops.logical_xor, or cast to int32 first")
    out = _binary_forward(SUB, "subtract", x, y)
    if needs_grad(x, y):
        record(out, (x, y), lambda g, n: (unbroadcast(g, x.shape) if n[0] else None,
                                          unbroadcast(negative(g), y.shape) if n[1] else None))
    return out


def multiply(x1, x2):
    """x1 * x2 with broadcasting."""
    x, y = _operands(x1, x2, "multiply")
    out = _binary_forward(MUL, "multiply", x, y)
    if needs_grad(x, y):
        record(out, (x, y), lambda g, n: (unbroadcast(multiply(g, y), x.shape) if n[0] else None,
                                          unbroadcast(multiply(g, x), y.shape) if n[1] else None))
    return out


def divide(x1, x2):
    """True division x1 / x2 (integer operands give float32)."""
    x, y = _operands(x1, x2, "divide")
    if x.dtype not in dtypes.FLOATS:
        x, y = cast(x, dtypes.FLOAT32), cast(y, dtypes.FLOAT32)
    out = _binary_forward(DIV, "divide", x, y)
    if needs_grad(x, y):
        def bw(g, n):
            gx = divide(g, y)
            return (unbroadcast(gx, x.shape) if n[0] else None,
                    unbroadcast(negative(multiply(gx, out)), y.shape) if n[1] else None)
        record(out, (x, y), bw)
    return out


true_divide = divide


def power(x1, x2):
    """x1 ** x2 with broadcasting. Integer powers stay integers (negative exponents truncate)."""
    x, y = _operands(x1, x2, "power")
    if x.dtype == dtypes.BOOL:
        x, y = cast(x, dtypes.INT64), cast(y, dtypes.INT64)
    out = _binary_forward(POW, "power", x, y)
    if needs_grad(x, y):
        def bw(g, n):
            gx = gy = None
            if n[0]:  # y x^(y-1), taken as 0 where y == 0 (also at x == 0)
                d = where(equal(y, 0.0), 0.0, multiply(y, power(x, subtract(y, 1.0))))
                gx = unbroadcast(multiply(g, d), x.shape)
            if n[1]:  # x^y log x, taken as 0 where x <= 0
                safe = where(greater(x, 0.0), x, 1.0)
                gy = unbroadcast(multiply(g, multiply(out, log(safe))), y.shape)
            return gx, gy
        record(out, (x, y), bw)
    return out


def _minmax(code, op, x1, x2):
    x, y = _operands(x1, x2, op)
    out = _binary_forward(code, op, x, y)
    if needs_grad(x, y):
        def bw(g, n):
            # ties send the gradient to the first operand (like TensorFlow)
            pick_x = (greater_equal if code == MAXIMUM else less_equal)(x, y)
            return (unbroadcast(where(pick_x, g, 0.0), x.shape) if n[0] else None,
                    unbroadcast(where(pick_x, 0.0, g), y.shape) if n[1] else None)
        record(out, (x, y), bw)
    return out


def maximum(x1, x2):
    """Elementwise maximum (NaN wins); on ties the gradient goes to x1."""
    return _minmax(MAXIMUM, "maximum", x1, x2)


def minimum(x1, x2):
    """Elementwise minimum (NaN wins); on ties the gradient goes to x1."""
    return _minmax(MINIMUM, "minimum", x1, x2)


def floor_divide(x1, x2):
    """x1 // x2 rounding toward -inf (numpy semantics; integer division by zero gives 0)."""
    x, y = _operands(x1, x2, "floor_divide")
    if x.dtype == dtypes.BOOL:
        x, y = cast(x, dtypes.INT64), cast(y, dtypes.INT64)
    out = _binary_forward(FLOORDIV, "floor_divide", x, y)
    if needs_grad(x, y):
        _record_zero_grad(out, (x, y))
    return out


def mod(x1, x2):
    """Remainder with the sign of the divisor (numpy's mod; integer mod by zero gives 0)."""
    x, y = _operands(x1, x2, "mod")
    if x.dtype == dtypes.BOOL:
        x, y = cast(x, dtypes.INT64), cast(y, dtypes.INT64)
    out = _binary_forward(MOD, "mod", x, y)
    if needs_grad(x, y):
        record(out, (x, y), lambda g, n: (unbroadcast(g, x.shape) if n[0] else None,
                                          unbroadcast(negative(multiply(g, floor_divide(x, y))), y.shape) if n[1] else None))
    return out


def logaddexp(x1, x2):
    """log(exp(x1) + exp(x2)) without overflow."""
    x, y = _operands(x1, x2, "logaddexp")
    x, y = _to_float(x), _to_float(y)
    broadcast_shapes(x.shape, y.shape, "logaddexp")
    xd, yd = _detached(x), _detached(y)
    m = maximum(xd, yd)
    d = where(equal(xd, yd), 0.0, abs(subtract(xd, yd)))  # equal infinities: no inf - inf
    out = add(m, log1p(exp(negative(d))))
    if needs_grad(x, y):
        def bw(g, n):
            return (unbroadcast(multiply(g, exp(subtract(x, out))), x.shape) if n[0] else None,
                    unbroadcast(multiply(g, exp(subtract(y, out))), y.shape) if n[1] else None)
        record(out, (x, y), bw)
    return out


def _compare(code, op):
    def f(x1, x2):
        x, y = _operands(x1, x2, op)
        return _binary_forward(code, op, x, y, dtypes.BOOL)
    f.__name__ = op
    f.__doc__ = f"Elementwise {op} with broadcasting; returns a bool tensor."
    return f


equal = _compare(EQ, "equal")
not_equal = _compare(NE, "not_equal")
less = _compare(LT, "less")
less_equal = _compare(LE, "less_equal")
greater = _compare(GT, "greater")
greater_equal = _compare(GE, "greater_equal")


def _logical(code, op):
    def f(x1, x2):
        x, y = _operands(cast(_as_tensor(x1), "bool"), cast(_as_tensor(x2), "bool"), op)
        return _binary_forward(code, op, x, y, dtypes.BOOL)
    f.__name__ = op
    f.__doc__ = f"Elementwise {op} of the operands' truth values; returns a bool tensor."
    return f


logical_and = _logical(AND, "logical_and")
logical_or = _logical(OR, "logical_or")
logical_xor = _logical(XOR, "logical_xor")


def logical_not(x):
    """Elementwise not of x's truth values; returns a bool tensor."""
    x = cast(_as_tensor(x), "bool")
    out = empty(x.shape, dtypes.BOOL, x.device)
    x.device.kernels.unary(LOGICAL_NOT, x._buf, out._buf)
    return out


def where(condition, x1=None, x2=None):
    """Elements of x1 where condition holds, else of x2 (all three broadcast together)."""
    if x1 is None and x2 is None:
        try:
            from .manipulation import nonzero
        except ImportError:
            raise NotImplementedError("where(condition) with one argument needs manipulation.nonzero; "
                                      "pass x1 and x2") from None
        return nonzero(condition)
    if x1 is None or x2 is None:
        raise ValueError("where: pass both x1 and x2, or neither (to get the indices where condition holds)")
    x, y = _operands(x1, x2, "where")
    c = condition if isinstance(condition, Tensor) else convert_to_tensor(_numeric_array(condition, "where"),
                                                                          device=x.device)
    c = cast(c, "bool")
    check_same_device("where", c, x)
    shape = broadcast_shapes(broadcast_shapes(c.shape, x.shape, "where"), y.shape, "where")
    out = empty(shape, x.dtype, x.device, op="where")
    x.device.kernels.where(c._buf, c.shape, x._buf, x.shape, y._buf, y.shape, out._buf, shape)
    if needs_grad(x, y):
        def bw(g, n):
            return (unbroadcast(where(c, g, 0.0), x.shape) if n[0] else None,
                    unbroadcast(where(c, 0.0, g), y.shape) if n[1] else None)
        record(out, (x, y), bw)
    return out


# ---- unary ops ----------------------------------------------------------------------------------

def _unary_forward(code, x, alpha=0.0, out_dtype=None):
    out = empty(x.shape, out_dtype or x.dtype, x.device)
    x.device.kernels.unary(code, x._buf, out._buf, alpha)
    return out


def grad_kernel(code, saved, g, alpha=0.0):
    """g * f'(.) through one of the activation derivative kernels."""
    out = empty(g.shape, g.dtype, g.device)
    g.device.kernels.unary_grad(code, saved._buf, g._buf, out._buf, alpha)
    return out


def negative(x):
    """-x."""
    x = _as_tensor(x)
    if x.dtype == dtypes.BOOL:
        raise TypeError(f"negative: bool tensors cannot be negated (shape {x.shape}); use ops.logical_not")
    out = _unary_forward(NEG, x)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (negative(g),))
    return out


def _float_unary(code, op, backward, doc):
    def f(x):
        x = _to_float(_as_tensor(x, op))
        out = _unary_forward(code, x)
        if needs_grad(x):
            record(out, (x,), lambda g, n: (backward(x, out, g),))
        return out
    f.__name__ = op
    f.__doc__ = doc + " Integer and bool inputs compute in float32."
    return f


exp = _float_unary(EXP, "exp", lambda x, y, g: multiply(g, y), "e ** x.")
exp2 = _float_unary(EXP2, "exp2", lambda x, y, g: multiply(g, multiply(y, _LN2)), "2 ** x.")
expm1 = _float_unary(EXPM1, "expm1", lambda x, y, g: multiply(g, add(y, 1.0)), "e ** x - 1, accurate near 0.")
log = _float_unary(LOG, "log", lambda x, y, g: divide(g, x), "Natural logarithm.")
log2 = _float_unary(LOG2, "log2", lambda x, y, g: divide(g, multiply(x, _LN2)), "Base-2 logarithm.")
log10 = _float_unary(LOG10, "log10", lambda x, y, g: divide(g, multiply(x, _LN10)), "Base-10 logarithm.")
log1p = _float_unary(LOG1P, "log1p", lambda x, y, g: divide(g, add(x, 1.0)), "log(1 + x), accurate near 0.")
sqrt = _float_unary(SQRT, "sqrt", lambda x, y, g: divide(multiply(g, 0.5), y), "Square root.")
rsqrt = _float_unary(RSQRT, "rsqrt", lambda x, y, g: multiply(g, multiply(-0.5, divide(y, x))), "1 / sqrt(x).")
tanh = _float_unary(TANH, "tanh", lambda x, y, g: grad_kernel(TANH_GRAD_Y, y, g), "Hyperbolic tangent.")
sigmoid = _float_unary(SIGMOID, "sigmoid", lambda x, y, g: grad_kernel(SIGMOID_GRAD_Y, y, g), "1 / (1 + e ** -x).")
sin = _float_unary(SIN, "sin", lambda x, y, g: multiply(g, cos(x)), "Sine (radians).")
cos = _float_unary(COS, "cos", lambda x, y, g: negative(multiply(g, sin(x))), "Cosine (radians).")
reciprocal = _float_unary(RECIPROCAL, "reciprocal", lambda x, y, g: negative(multiply(g, square(y))), "1 / x.")
erf = _float_unary(ERF, "erf", lambda x, y, g: multiply(g, multiply(1.1283791670955126, exp(negative(square(x))))),
                   "The error function.")


def _piecewise_unary(code, op, doc):
    def f(x):
        x = _as_tensor(x, op)
        if x.dtype == dtypes.BOOL:
            x = cast(x, dtypes.INT32)
        out = _unary_forward(code, x)
        if needs_grad(x):
            _record_zero_grad(out, (x,))
        return out
    f.__name__ = op
    f.__doc__ = doc + " The gradient is zero."
    return f


floor = _piecewise_unary(FLOOR, "floor", "Largest integer <= x (integer tensors are returned as they are).")
ceil = _piecewise_unary(CEIL, "ceil", "Smallest integer >= x (integer tensors are returned as they are).")
sign = _piecewise_unary(SIGN, "sign", "-1, 0 or 1 by the sign of x (NaN stays NaN).")


def round(x, decimals=0):
    """Rounds half to even, to `decimals` decimal places (numpy semantics); zero gradient."""
    x = _as_tensor(x)
    decimals = validation.integer(decimals, "round", "decimals")
    if x.dtype == dtypes.BOOL:
        x = cast(x, dtypes.INT32)
    if x.dtype not in dtypes.FLOATS:
        if decimals >= 0:
            return _piecewise_unary(ROUND, "round", "")(x)
        return cast(round(cast(x, dtypes.FLOAT32), decimals), x.dtype)
    if decimals:
        # 10 ** decimals is inf in float32 from 39 on (NaN results, as numpy's), in Python's float from 309
        s = 10.0 ** decimals if decimals <= 308 else _pymath.inf
        xd = _detached(x)
        out = divide(_unary_forward(ROUND, multiply(xd, s)), s)
    else:
        out = _unary_forward(ROUND, x)
    if needs_grad(x):
        _record_zero_grad(out, (x,))
    return out


def abs(x):
    """|x|; the gradient at 0 is 0."""
    x = _as_tensor(x)
    if x.dtype == dtypes.BOOL:
        return x
    out = _unary_forward(ABS, x)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (multiply(g, sign(x)),))
    return out


absolute = abs


def square(x):
    """x * x."""
    x = _as_tensor(x)
    if x.dtype == dtypes.BOOL:
        x = cast(x, dtypes.INT32)
    out = _unary_forward(SQUARE, x)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (multiply(g, multiply(x, 2.0)),))
    return out


def isnan(x):
    """True where x is NaN."""
    x = _as_tensor(x)
    return _unary_forward(ISNAN, x, out_dtype=dtypes.BOOL)


def isfinite(x):
    """True where x is neither infinite nor NaN."""
    x = _as_tensor(x)
    return _unary_forward(ISFINITE, x, out_dtype=dtypes.BOOL)


def isinf(x):
    """True where x is +inf or -inf."""
    x = _as_tensor(x)
    return _unary_forward(ISINF, x, out_dtype=dtypes.BOOL)


def _scalar_bound(v):
    """A clip bound as a float, or None when it is a tensor/array with several elements."""
    if v is None:
        return None
    if isinstance(v, Tensor):
        return float(v.item()) if v.size == 1 and v.ndim == 0 else None
    a = _numeric_array(v, "clip")
    return float(a) if a.ndim == 0 else None


def clip(x, x_min, x_max):
    """Limits values to [x_min, x_max] (None: no bound on that side); NaN stays NaN, and a NaN
    bound makes every value NaN, as in numpy. The gradient
    flows where x_min <= x <= x_max. Integer tensors keep their dtype."""
    x = _as_tensor(x)
    if x_min is None and x_max is None:
        raise ValueError("clip: give x_min, x_max or both (received None for both)")
    if x.dtype == dtypes.BOOL:
        raise TypeError(f"clip: bool tensors cannot be clipped (shape {x.shape}); cast to int32 or float32 first")
    lo, hi = _scalar_bound(x_min), _scalar_bound(x_max)
    for name, b in (("x_min", x_min), ("x_max", x_max)):
        if isinstance(b, Tensor) and b.dtype != x.dtype:
            raise TypeError(f"clip: {name} is a {b.dtype} tensor of shape {b.shape} but x is {x.dtype} with shape "
                            f"{x.shape}; cast the bound with ops.cast({name}, '{x.dtype}')")
        if b is not None:
            broadcast_shapes(x.shape, tuple(b.shape if isinstance(b, Tensor) else np.shape(b)), "clip")
    if (x_min is not None and lo is None) or (x_max is not None and hi is None) or lo != lo or hi != hi:
        # tensor bounds, or a NaN bound (numpy: NaN everywhere): broadcasting maximum / minimum
        out = x if x_min is None else maximum(x, x_min)
        return out if x_max is None else minimum(out, x_max)
    lo = -_pymath.inf if lo is None else lo
    hi = _pymath.inf if hi is None else hi
    out = empty(x.shape, x.dtype, x.device)
    x.device.kernels.clip(x._buf, lo, hi, out._buf)
    if needs_grad(x):
        def bw(g, n):
            r = empty(g.shape, g.dtype, g.device)
            g.device.kernels.clip_grad(x._buf, lo, hi, g._buf, r._buf)
            return (r,)
        record(out, (x,), bw)
    return out


def cast(x, dtype):
    """Converts to another dtype (float -> int truncates toward zero, -> bool tests != 0).
    Casting to the same dtype returns x."""
    x = _as_tensor(x)
    dt = dtypes.standardize(dtype, "cast")
    if dt == x.dtype:
        return x
    out = empty(x.shape, dt, x.device)
    x.device.kernels.cast(x._buf, out._buf)
    if dt in dtypes.FLOATS and x.dtype in dtypes.FLOATS and needs_grad(x):  # float32 <-> bfloat16
        src = x.dtype
        record(out, (x,), lambda g, n: (cast(g, src),))
    return out


# ---- constructors -------------------------------------------------------------------------------

def full(shape, fill_value, dtype=None, device=None):
    """A new tensor of `shape` filled with fill_value (dtype from the value when not given)."""
    return _filled(shape, fill_value, dtype, device, "full")


def _filled(shape, fill_value, dtype, device, op):
    """full(), with errors naming `op` (zeros, ones, tri...)."""
    shape = validation.shape(shape, op)
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    dt = dtypes.standardize(dtype, op) if dtype is not None else (
        dtypes.BOOL if isinstance(fill_value, (bool, np.bool_)) else
        dtypes.INT64 if isinstance(fill_value, (int, np.integer)) else dtypes.FLOAT32)
    value = _fill_value(fill_value, dt, op)
    from .device import get_device
    dev = get_device(device) if device is not None else None
    validation.check_alloc(op, shape, dt, dev)
    if dtypes.is_int(dt) and float(value) != value:
        # the fill kernel takes a double: an int64 beyond 2**53 would lose its low bits
        return broadcast_to(convert_to_tensor(np.array(value, np.int64), dt, dev), shape)
    out = empty(shape, dt, dev, op=op)
    out.device.kernels.fill(out._buf, float(value))
    return out


_INT_RANGE = {dtypes.INT32: (-2 ** 31, 2 ** 31 - 1), dtypes.INT64: (-2 ** 63, 2 ** 63 - 1)}


def _fill_value(v, dt, op):
    """A fill value as a Python number that `dt` holds: TypeError for a non-number, ValueError
    for NaN, an infinity or an integer out of range for an integer dtype (numpy refuses them too)."""
    if type(v) is float and not dtypes.is_int(dt):
        return v   # the common case (zeros, ones, full of a float)
    a = np.asarray(v) if not isinstance(v, (str, bytes)) else None
    if a is None or a.ndim != 0 or a.dtype.kind not in "biuf":
        raise TypeError(f"{op}: fill_value must be a number or a bool, received {_short_repr(v)} of type "
                        f"{type(v).__name__}")
    v = a.item()
    if dtypes.is_int(dt):
        if isinstance(v, float):
            if not _pymath.isfinite(v):
                raise ValueError(f"{op}: cannot fill an {dt} tensor with {v}; integers have no NaN or infinity")
            v = int(v)   # truncated, as numpy converts it
        lo, hi = _INT_RANGE[dt]
        if not lo <= v <= hi:
            raise ValueError(f"{op}: fill_value {v} is out of range for {dt} ([{lo}, {hi}])"
                             + ("; use dtype='int64'" if dt == dtypes.INT32 else ""))
    return v


def zeros(shape, dtype="float32", device=None):
    return _filled(shape, 0.0, dtype or "float32", device, "zeros")


def ones(shape, dtype="float32", device=None):
    return _filled(shape, 1.0, dtype or "float32", device, "ones")


def zeros_like(x, dtype=None):
    x = _as_tensor(x)
    return _filled(x.shape, 0.0, dtype or x.dtype, x.device, "zeros_like")


def ones_like(x, dtype=None):
    x = _as_tensor(x)
    return _filled(x.shape, 1.0, dtype or x.dtype, x.device, "ones_like")


def full_like(x, fill_value, dtype=None):
    x = _as_tensor(x)
    return _filled(x.shape, fill_value, dtype or x.dtype, x.device, "full_like")


def broadcast_to(x, shape):
    """Repeats x along size-1 / missing leading dimensions to `shape` (a copy)."""
    x = _as_tensor(x)
    shape = validation.shape(shape, "broadcast_to")
    if x.shape == shape:
        return x
    if len(shape) < x.ndim or builtins.any(d != s and d != 1 for d, s in zip(x.shape[::-1], shape[::-1])):
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}; only size-1 and "
                         "missing leading dimensions can grow")
    validation.check_alloc("broadcast_to", shape, x.dtype, x.device)
    out = empty(shape, x.dtype, x.device, op="broadcast_to")
    x.device.kernels.broadcast_to(x._buf, x.shape, out._buf, shape)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (unbroadcast(g, x.shape),))
    return out


# ---- reductions ---------------------------------------------------------------------------------

def normalize_axes(axis, ndim, op, shape=None):
    """Sorted tuple of non-negative axes; None means all axes. TypeError for a non-integer axis,
    ValueError for one out of range or repeated."""
    if axis is None:
        return tuple(range(ndim))
    what = f"a tensor of shape {shape}" if shape is not None else f"a tensor with {ndim} dimensions"
    seq = tuple(axis) if isinstance(axis, (list, tuple)) or isinstance(axis, np.ndarray) and axis.ndim == 1 \
        else (axis,)
    lim = builtins.max(ndim, 1)   # a 0-d tensor takes axis 0 / -1, as numpy's reductions do
    out = []
    for a in seq:
        a = validation.axis(a, lim, op, "axis", shape)
        a = a if ndim else 0
        if a in out:
            raise ValueError(f"{op}: axis {a} is repeated in axis={axis} for {what}")
        out.append(a)
    return tuple(sorted(out)) if ndim else ()


def _reduce_raw(code, x, axes, out_dtype=None):
    """Reduces over `axes` (sorted) keeping dims; groups of adjacent axes go in one kernel call."""
    shape = list(x.shape)
    cur = x
    groups = []
    for a in axes:
        if groups and groups[-1][1] == a - 1:
            groups[-1][1] = a
        else:
            groups.append([a, a])
    for lo, hi in reversed(groups):
        outer = _prod(shape[:lo])
        R = _prod(shape[lo:hi + 1])
        inner = _prod(shape[hi + 1:])
        new_shape = shape[:lo] + [1] * (hi + 1 - lo) + shape[hi + 1:]
        out = empty(tuple(new_shape), out_dtype or cur.dtype, x.device)
        x.device.kernels.reduce(code, cur._buf, outer, R, inner, out._buf)
        cur, shape = out, new_shape
    return cur


def _prod(dims):
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _finish(out, x, axes, keepdims):
    """The reduction result as a new tensor object, with the reduced axes kept or dropped."""
    if keepdims:
        shape = _kept_shape(x, axes)
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return Tensor(out._buf, shape, out.dtype, out.device)


def _kept_shape(x, axes):
    return tuple(1 if i in axes else d for i, d in enumerate(x.shape))


def _check_reduced(op, x, axes, dtype=dtypes.FLOAT32):
    """check_alloc for the result of reducing x over `axes`, naming `op` (for the reductions
    made of other ops, whose own checks would name those)."""
    validation.check_alloc(op, _kept_shape(x, axes), dtype, x.device)


def _count(x, axes):
    return _prod(x.shape[a] for a in axes)


def sum(x, axis=None, keepdims=False):
    """Sum over axes (None: all). Bool tensors sum to int64; integer sums keep their dtype."""
    x = _as_tensor(x)
    axes = normalize_axes(axis, x.ndim, "sum", x.shape)
    xs = cast(x, dtypes.INT64) if x.dtype == dtypes.BOOL else x
    out = _finish(_reduce_raw(R_SUM, xs, axes) if axes else xs, x, axes, keepdims)
    if needs_grad(x):
        kept = _kept_shape(x, axes)
        record(out, (x,), lambda g, n: (broadcast_to(_view(g, kept), x.shape),))
    return out


def mean(x, axis=None, keepdims=False):
    """Arithmetic mean over axes (None: all); integer inputs give float32. Empty: NaN."""
    x = _to_float(_as_tensor(x))
    axes = normalize_axes(axis, x.ndim, "mean", x.shape)
    out = _finish(_reduce_raw(R_MEAN, x, axes) if axes else x, x, axes, keepdims)
    if needs_grad(x):
        kept = _kept_shape(x, axes)
        count = float(builtins.max(_count(x, axes), 1))
        record(out, (x,), lambda g, n: (broadcast_to(_view(divide(g, count), kept), x.shape),))
    return out


def _extreme(code, op):
    def f(x, axis=None, keepdims=False, initial=None):
        x = _as_tensor(x)
        axes = normalize_axes(axis, x.ndim, op, x.shape)
        if initial is not None:   # a scalar in x's dtype, as numpy converts it (bool(-3) is True)
            a = initial.numpy() if isinstance(initial, Tensor) else _numeric_array(initial, op)
            if a.ndim:
                raise ValueError(f"{op}: initial must be a scalar, received {_short_repr(initial)}")
            initial = bool(a) if x.dtype == dtypes.BOOL else _fill_value(a.item(), x.dtype, op)
        if x.size == 0:
            shape = _finish(x, x, axes, keepdims).shape
            if _prod(shape) == 0:
                return empty(shape, x.dtype, x.device)
            if initial is None:
                raise ValueError(f"{op}: zero-size tensor of shape {x.shape} has no {op}imum over axis={axis}; "
                                 "pass initial= to give empty reductions a value")
            return full(shape, initial, x.dtype, x.device)
        if x.dtype == dtypes.BOOL:
            return cast(f(cast(x, dtypes.INT32), axis, keepdims, initial), dtypes.BOOL)
        kept_out = _reduce_raw(code, x, axes) if axes else x
        out = _finish(kept_out, x, axes, keepdims)
        if needs_grad(x):
            kept = _kept_shape(x, axes)

            def bw(g, n):
                # ties share the gradient equally (like TensorFlow)
                mask = cast(equal(x, _view(kept_out, kept)), x.dtype)
                count = sum(mask, axis=axes, keepdims=True)
                return (multiply(mask, divide(_view(g, kept), count)),)
            record(out, (x,), bw)
        if initial is not None:
            out = (maximum if code == R_MAX else minimum)(out, initial)
        return out
    f.__name__ = op
    f.__doc__ = (f"{op.capitalize()}imum over axes (None: all); NaN propagates. `initial` bounds the "
                 f"result and gives empty reductions a value. Ties share the gradient equally.")
    return f


max = _extreme(R_MAX, "max")
min = _extreme(R_MIN, "min")
amax, amin = max, min


def prod(x, axis=None, keepdims=False, dtype=None):
    """Product over axes (None: all), computed in `dtype` when given (x is cast to it first, as
    numpy's prod accumulates in it); the gradient is exact when x has zeros."""
    x = _as_tensor(x)
    if dtype is not None:
        x = cast(x, dtypes.standardize(dtype, "prod"))
    axes = normalize_axes(axis, x.ndim, "prod", x.shape)
    xs = cast(x, dtypes.INT64) if x.dtype == dtypes.BOOL else x
    out = _finish(_reduce_raw(R_PROD, xs, axes) if axes else xs, x, axes, keepdims)
    if needs_grad(x):
        kept = _kept_shape(x, axes)

        def bw(g, n):
            # d prod / d x_i = prod of the others: out / x_i without zeros; with one zero in the
            # group, the product of the non-zeros at the zero and 0 elsewhere; with more, 0.
            gk = _view(g, kept)
            is_zero = equal(x, 0.0)
            zeros_in = sum(cast(is_zero, dtypes.FLOAT32), axis=axes, keepdims=True)
            nonzero_prod = prod(where(is_zero, 1.0, x), axis=axes, keepdims=True)
            no_zero = divide(_view(out, kept), where(is_zero, 1.0, x))
            one_zero = where(logical_and(is_zero, equal(zeros_in, 1.0)), nonzero_prod, 0.0)
            d = where(equal(zeros_in, 0.0), no_zero, one_zero)
            return (multiply(gk, d),)
        record(out, (x,), bw)
    return out


def _bool_reduce(code, op, doc):
    def f(x, axis=None, keepdims=False):
        x = cast(_as_tensor(x), "bool")
        axes = normalize_axes(axis, x.ndim, op, x.shape)
        return _finish(_reduce_raw(code, x, axes) if axes else x, x, axes, keepdims)
    f.__name__ = op
    f.__doc__ = doc
    return f


any = _bool_reduce(R_ANY, "any", "True where any element over the axes is non-zero (None: all axes).")
all = _bool_reduce(R_ALL, "all", "True where every element over the axes is non-zero (None: all axes).")


def _single_axis(axis, x, op):
    axes = normalize_axes(axis, x.ndim, op, x.shape)
    if len(axes) != 1 or isinstance(axis, (tuple, list)) and len(axis) != 1:
        raise ValueError(f"{op}: expected a single integer axis for a tensor of shape {x.shape}, "
                         f"received axis={axis!r}")
    return axes[0]


def _arg(is_max, op):
    def f(x, axis=None, keepdims=False):
        x = _as_tensor(x)
        if axis is None:
            flat = _view(x, (x.size,))
            r = f(flat, 0)
            return _view(r, (1,) * x.ndim) if keepdims else r
        if x.ndim == 0:
            raise ValueError(f"{op}: a 0-d tensor has no axis {axis}; use axis=None")
        a = _single_axis(axis, x, op)
        if x.shape[a] == 0:
            raise ValueError(f"{op}: axis {a} of shape {x.shape} is empty; there is no {op[3:]}imum")
        outer, inner = _prod(x.shape[:a]), _prod(x.shape[a + 1:])
        shape = x.shape[:a] + ((1,) if keepdims else ()) + x.shape[a + 1:]
        out = empty(shape, dtypes.INT64, x.device)
        x.device.kernels.argreduce(is_max, x._buf, outer, x.shape[a], inner, out._buf)
        return out
    f.__name__ = op
    f.__doc__ = (f"Index (int64) of the {op[3:]}imum along an axis (None: of the flattened tensor); "
                 "the first on ties, the first NaN if there is one.")
    return f


argmax = _arg(True, "argmax")
argmin = _arg(False, "argmin")


def var(x, axis=None, keepdims=False):
    """Population variance (ddof=0) over axes; integer inputs give float32."""
    x = _to_float(_as_tensor(x))
    axes = normalize_axes(axis, x.ndim, "var", x.shape)
    _check_reduced("var", x, axes)
    m = mean(x, axis=axes, keepdims=True)
    return mean(square(subtract(x, m)), axis=axes, keepdims=keepdims)


def std(x, axis=None, keepdims=False):
    """Population standard deviation (ddof=0) over axes."""
    x = _as_tensor(x)
    axes = normalize_axes(axis, x.ndim, "std", x.shape)
    _check_reduced("std", x, axes)
    return sqrt(var(x, axis=axes, keepdims=keepdims))


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) over axes, computed stably (the maximum is subtracted first). The gradient
    is softmax(x) along the axes."""
    x = _to_float(_as_tensor(x))
    axes = normalize_axes(axis, x.ndim, "logsumexp", x.shape)
    _check_reduced("logsumexp", x, axes)
    kept = _kept_shape(x, axes)
    xd = _detached(x)
    if x.size == 0:
        m = zeros(kept, device=x.device)
    else:
        m = max(xd, axis=axes, keepdims=True)
        m = where(isfinite(m), m, 0.0)  # all -inf (or an inf): no inf - inf
    s = sum(exp(subtract(xd, m)), axis=axes, keepdims=True)
    out = _finish(add(log(s), m), x, axes, keepdims)
    if needs_grad(x):
        # softmax as exp(x - m) / s: exp(x - out) would lose the bits of `out` that a large max eats
        record(out, (x,), lambda g, n: (multiply(divide(_view(g, kept), s), exp(subtract(x, m))),))
    return out


def count_nonzero(x, axis=None):
    """Number of non-zero (True, non-zero, NaN) elements over axes, as int64."""
    x = _as_tensor(x)
    axes = normalize_axes(axis, x.ndim, "count_nonzero", x.shape)
    _check_reduced("count_nonzero", x, axes, dtypes.INT64)
    return sum(cast(x, dtypes.BOOL), axis=axes)


def _scan_raw(code, x, a, reverse=False):
    outer, R, inner = _prod(x.shape[:a]), x.shape[a], _prod(x.shape[a + 1:])
    out = empty(x.shape, x.dtype, x.device)
    x.device.kernels.cumulative(code, x._buf, outer, R, inner, out._buf, reverse)
    return out


def _scan(code, op, x, axis, dtype):
    x = _as_tensor(x, op)
    if dtype is not None:
        dt = dtypes.standardize(dtype, op)
        if dt == dtypes.BOOL:
            raise TypeError(f"{op}: dtype bool is not supported (a running {op[3:]} of truth values); use int32 or "
                            "int64, or cast the result")
        x = cast(x, dt)
    elif x.dtype == dtypes.BOOL:
        x = cast(x, dtypes.INT64)
    if axis is None:
        from .manipulation import reshape
        x = reshape(x, (x.size,))
        axis = 0
    if x.ndim == 0:
        raise ValueError(f"{op}: a 0-d tensor has no axis {axis}; use axis=None")
    a = _single_axis(axis, x, op)
    out = _scan_raw(code, x, a)
    if needs_grad(x):
        if code == S_SUM:
            record(out, (x,), lambda g, n: (_scan_raw(S_SUM, g, a, reverse=True),))
        else:
            def bw(g, n):
                r = empty(x.shape, x.dtype, x.device)
                x.device.kernels.cumprod_grad(x._buf, g._buf, _prod(x.shape[:a]), x.shape[a],
                                              _prod(x.shape[a + 1:]), r._buf)
                return (r,)
            record(out, (x,), bw)
    return out


def cumsum(x, axis=None, dtype=None):
    """Cumulative sum along an axis (None: of the flattened tensor). Bool sums in int64."""
    return _scan(S_SUM, "cumsum", x, axis, dtype)


def cumprod(x, axis=None, dtype=None):
    """Cumulative product along an axis (None: of the flattened tensor); exact gradient with zeros."""
    return _scan(S_PROD, "cumprod", x, axis, dtype)


# ---- Tensor operators ---------------------------------------------------------------------------

def _r(f):
    return lambda self, other: f(other, self)


def _array_like(v):
    """True for what an elementwise comparison can take: tensors, numbers, numeric arrays/lists."""
    if isinstance(v, (Tensor, numbers.Number, np.bool_)):
        return not isinstance(v, complex)
    if isinstance(v, (np.ndarray, list, tuple)):
        try:
            return np.asarray(v).dtype.kind in "biuf"
        except (ValueError, TypeError):
            return False
    return False


def _eq(self, other):
    return equal(self, other) if _array_like(other) else NotImplemented


def _ne(self, other):
    return not_equal(self, other) if _array_like(other) else NotImplemented


def _bool_operator(f, symbol):
    def op(self, other):
        o = other if isinstance(other, Tensor) else convert_to_tensor(_numeric_array(other, symbol))
        if self.dtype != dtypes.BOOL or o.dtype != dtypes.BOOL:
            raise TypeError(f"operator {symbol}: lamina defines it for bool tensors only (logical), received "
                            f"{self.dtype} with shape {self.shape} and {o.dtype} with shape {o.shape}; "
                            f"use ops.logical_* or compare first")
        return f(self, o)
    return op


def _invert(self):
    if self.dtype != dtypes.BOOL:
        raise TypeError(f"operator ~: lamina defines it for bool tensors only (logical not), received "
                        f"{self.dtype} with shape {self.shape}")
    return logical_not(self)


Tensor.__add__ = add
Tensor.__radd__ = _r(add)
Tensor.__sub__ = subtract
Tensor.__rsub__ = _r(subtract)
Tensor.__mul__ = multiply
Tensor.__rmul__ = _r(multiply)
Tensor.__truediv__ = divide
Tensor.__rtruediv__ = _r(divide)
Tensor.__floordiv__ = floor_divide
Tensor.__rfloordiv__ = _r(floor_divide)
Tensor.__mod__ = mod
Tensor.__rmod__ = _r(mod)
Tensor.__pow__ = power
Tensor.__rpow__ = _r(power)
Tensor.__neg__ = negative
Tensor.__pos__ = lambda self: self
Tensor.__abs__ = abs
Tensor.__eq__ = _eq
Tensor.__ne__ = _ne
Tensor.__lt__ = less
Tensor.__le__ = less_equal
Tensor.__gt__ = greater
Tensor.__ge__ = greater_equal
Tensor.__and__ = _bool_operator(logical_and, "&")
Tensor.__rand__ = _bool_operator(lambda a, b: logical_and(b, a), "&")
Tensor.__or__ = _bool_operator(logical_or, "|")
Tensor.__ror__ = _bool_operator(lambda a, b: logical_or(b, a), "|")
Tensor.__xor__ = _bool_operator(logical_xor, "^")
Tensor.__rxor__ = _bool_operator(lambda a, b: logical_xor(b, a), "^")
Tensor.__invert__ = _invert
