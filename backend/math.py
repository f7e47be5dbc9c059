"""Elementwise maths, comparisons and reductions (numpy's math family), with gradients.

Every op: check inputs, allocate the output, call the device's kernel, and record a backward
rule when a GradientTape needs it.
"""
import builtins
import functools

import numpy as np

from . import dtypes
from .autodiff import needs_grad, record
from .tensor import Tensor, convert_to_tensor, empty

# kernel op codes (csrc/cpu/elementwise.cpp, reduce.cpp)
ADD, SUB, MUL, DIV, POW, MAXIMUM, MINIMUM, EQ, NE, LT, LE, GT, GE, AND, OR, XOR, FLOORDIV, MOD = range(18)
(NEG, EXP, LOG, SQRT, ABS, TANH, SIGMOID, RELU, SOFTPLUS, ELU, SELU, GELU, GELU_TANH, SQUARE, SIGN,
 RECIPROCAL, LOG1P, EXPM1, SIN, COS, FLOOR, CEIL, ROUND, RSQRT, ERF, LEAKY_RELU, RELU6, SILU,
 HARD_SIGMOID, LOGICAL_NOT, ISNAN, ISFINITE, SOFTSIGN) = range(33)
(RELU_GRAD, SIGMOID_GRAD_Y, TANH_GRAD_Y, ELU_GRAD_X, SELU_GRAD_X, GELU_GRAD_X, GELU_TANH_GRAD_X,
 SOFTPLUS_GRAD_X, LEAKY_RELU_GRAD_X, RELU6_GRAD_X, SILU_GRAD_X, HARD_SIGMOID_GRAD_X,
 SOFTSIGN_GRAD_X) = range(13)
R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD, R_ANY, R_ALL = range(7)


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
                             f"(dimension {x} vs {y}); they must be equal or one of them 1")
    return tuple(out)


def check_same_device(op, *tensors):
    d = tensors[0].device
    for t in tensors[1:]:
        if t.device is not d:
            raise ValueError(f"{op}: inputs are on different devices ({d.name} with shape "
                             f"{tensors[0].shape}, {t.device.name} with shape {t.shape}); move one "
                             f"with x.to('{d.name}')")


def _operands(x, y, op):
    """Converts a binary op's operands to tensors of one dtype on one device."""
    xt, yt = isinstance(x, Tensor), isinstance(y, Tensor)
    if xt and yt:
        if x.dtype != y.dtype:
            raise TypeError(f"{op}: dtypes differ: {x.dtype} with shape {x.shape} and {y.dtype} with "
                            f"shape {y.shape}; cast one first, e.g. ops.cast(x, '{y.dtype}')")
        check_same_device(op, x, y)
        return x, y
    if not xt and not yt:
        x = convert_to_tensor(x)
        return _operands(x, y, op)
    t, other = (x, y) if xt else (y, x)
    a = np.asarray(other)
    dt = t.dtype
    if a.dtype.kind == "f" and not dtypes.is_float(dt):
        dt = dtypes.FLOAT32
        t = cast(t, dt)
    elif a.dtype.kind == "b" and dt == dtypes.BOOL:
        pass
    o = _scalar_tensor(a, dt, t.device) if a.ndim == 0 else convert_to_tensor(a, dt, t.device)
    return (t, o) if xt else (o, t)


_scalar_cache = {}


def _scalar_tensor(a, dt, device):
    """Small cache of 0-d constants (1.0, 0.5, 2 ...) so scalar arithmetic allocates nothing."""
    key = (a.item(), dt, device)
    t = _scalar_cache.get(key)
    if t is None:
        t = convert_to_tensor(a, dt, device)
        if len(_scalar_cache) < 1024:
            _scalar_cache[key] = t
    return t


def _as_tensor(x):
    return x if isinstance(x, Tensor) else convert_to_tensor(x)


def _require_float(op, x):
    if x.dtype != dtypes.FLOAT32:
        raise TypeError(f"{op}: expected a float32 tensor, received {x.dtype} with shape {x.shape}; "
                        f"cast it with ops.cast(x, 'float32')")


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


# ---- binary ops ---------------------------------------------------------------------------------

def _binary_forward(code, op, x, y, out_dtype=None):
    shape = x.shape if x.shape == y.shape else broadcast_shapes(x.shape, y.shape, op)
    out = empty(shape, out_dtype or x.dtype, x.device)
    x.device.kernels.binary(code, x._buf, x.shape, y._buf, y.shape, out._buf, shape)
    return out


def add(x1, x2):
    x, y = _operands(x1, x2, "add")
    out = _binary_forward(ADD, "add", x, y)
    if needs_grad(x, y):
        record(out, (x, y), lambda g, n: (unbroadcast(g, x.shape) if n[0] else None,
                                          unbroadcast(g, y.shape) if n[1] else None))
    return out


def subtract(x1, x2):
    x, y = _operands(x1, x2, "subtract")
    out = _binary_forward(SUB, "subtract", x, y)
    if needs_grad(x, y):
        record(out, (x, y), lambda g, n: (unbroadcast(g, x.shape) if n[0] else None,
                                          unbroadcast(negative(g), y.shape) if n[1] else None))
    return out


def multiply(x1, x2):
    x, y = _operands(x1, x2, "multiply")
    out = _binary_forward(MUL, "multiply", x, y)
    if needs_grad(x, y):
        record(out, (x, y), lambda g, n: (unbroadcast(multiply(g, y), x.shape) if n[0] else None,
                                          unbroadcast(multiply(g, x), y.shape) if n[1] else None))
    return out


def divide(x1, x2):
    x, y = _operands(x1, x2, "divide")
    if not dtypes.is_float(x.dtype):
        x, y = cast(x, "float32"), cast(y, "float32")
    out = _binary_forward(DIV, "divide", x, y)
    if needs_grad(x, y):
        def bw(g, n):
            gx = divide(g, y) if n[0] or n[1] else None
            return (unbroadcast(gx, x.shape) if n[0] else None,
                    unbroadcast(negative(multiply(gx, out)), y.shape) if n[1] else None)
        record(out, (x, y), bw)
    return out


true_divide = divide


def power(x1, x2):
    x, y = _operands(x1, x2, "power")
    out = _binary_forward(POW, "power", x, y)
    if needs_grad(x, y):
        def bw(g, n):
            gx = gy = None
            if n[0]:
                gx = unbroadcast(multiply(g, multiply(y, power(x, subtract(y, 1.0)))), x.shape)
            if n[1]:
                safe = where(greater(x, 0.0), x, ones_like(x))
                gy = unbroadcast(multiply(g, multiply(out, log(safe))), y.shape)
            return gx, gy
        record(out, (x, y), bw)
    return out


def _minmax(code, op, x1, x2):
    x, y = _operands(x1, x2, op)
    out = _binary_forward(code, op, x, y)
    if needs_grad(x, y):
        def bw(g, n):
            # ties send the gradient to the first operand
            pick_x = (greater_equal if code == MAXIMUM else less_equal)(x, y)
            zero = zeros_like(g)
            return (unbroadcast(where(pick_x, g, zero), x.shape) if n[0] else None,
                    unbroadcast(where(pick_x, zero, g), y.shape) if n[1] else None)
        record(out, (x, y), bw)
    return out


def maximum(x1, x2):
    return _minmax(MAXIMUM, "maximum", x1, x2)


def minimum(x1, x2):
    return _minmax(MINIMUM, "minimum", x1, x2)


def floor_divide(x1, x2):
    x, y = _operands(x1, x2, "floor_divide")
    return _binary_forward(FLOORDIV, "floor_divide", x, y)


def mod(x1, x2):
    x, y = _operands(x1, x2, "mod")
    out = _binary_forward(MOD, "mod", x, y)
    if needs_grad(x, y):
        record(out, (x, y), lambda g, n: (unbroadcast(g, x.shape) if n[0] else None,
                                          unbroadcast(negative(multiply(g, floor_divide(x, y))), y.shape) if n[1] else None))
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
    return f


logical_and = _logical(AND, "logical_and")
logical_or = _logical(OR, "logical_or")
logical_xor = _logical(XOR, "logical_xor")


def logical_not(x):
    x = cast(_as_tensor(x), "bool")
    out = empty(x.shape, dtypes.BOOL, x.device)
    x.device.kernels.unary(LOGICAL_NOT, x._buf, out._buf)
    return out


def where(condition, x1=None, x2=None):
    """Elements of x1 where condition holds, else of x2 (all broadcast together)."""
    if x1 is None and x2 is None:
        from .manipulation import nonzero
        return nonzero(condition)
    c = cast(_as_tensor(condition), "bool")
    x, y = _operands(x1, x2, "where")
    check_same_device("where", c, x)
    shape = broadcast_shapes(broadcast_shapes(c.shape, x.shape, "where"), y.shape, "where")
    out = empty(shape, x.dtype, x.device)
    x.device.kernels.where(c._buf, c.shape, x._buf, x.shape, y._buf, y.shape, out._buf, shape)
    if needs_grad(x, y):
        def bw(g, n):
            zero = zeros_like(g)
            return (unbroadcast(where(c, g, zero), x.shape) if n[0] else None,
                    unbroadcast(where(c, zero, g), y.shape) if n[1] else None)
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
    x = _as_tensor(x)
    out = _unary_forward(NEG, x)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (negative(g),))
    return out


def _float_unary(code, op, backward):
    def f(x):
        x = _as_tensor(x)
        if not dtypes.is_float(x.dtype):
            x = cast(x, "float32")
        out = _unary_forward(code, x)
        if needs_grad(x):
            record(out, (x,), lambda g, n: (backward(x, out, g),))
        return out
    f.__name__ = op
    f.__doc__ = f"Elementwise {op}."
    return f


exp = _float_unary(EXP, "exp", lambda x, y, g: multiply(g, y))
log = _float_unary(LOG, "log", lambda x, y, g: divide(g, x))
sqrt = _float_unary(SQRT, "sqrt", lambda x, y, g: divide(multiply(g, 0.5), y))
rsqrt = _float_unary(RSQRT, "rsqrt", lambda x, y, g: multiply(g, multiply(-0.5, divide(y, x))))
tanh = _float_unary(TANH, "tanh", lambda x, y, g: grad_kernel(TANH_GRAD_Y, y, g))
sigmoid = _float_unary(SIGMOID, "sigmoid", lambda x, y, g: grad_kernel(SIGMOID_GRAD_Y, y, g))
log1p = _float_unary(LOG1P, "log1p", lambda x, y, g: divide(g, add(x, 1.0)))
expm1 = _float_unary(EXPM1, "expm1", lambda x, y, g: multiply(g, add(y, 1.0)))
sin = _float_unary(SIN, "sin", lambda x, y, g: multiply(g, cos(x)))
cos = _float_unary(COS, "cos", lambda x, y, g: negative(multiply(g, sin(x))))
reciprocal = _float_unary(RECIPROCAL, "reciprocal", lambda x, y, g: negative(multiply(g, square(y))))
erf = _float_unary(ERF, "erf", lambda x, y, g: multiply(g, multiply(1.1283791670955126, exp(negative(square(x))))))


def _piecewise_unary(code, op):
    def f(x):
        x = _as_tensor(x)
        return _unary_forward(code, x)  # zero gradient almost everywhere: not recorded
    f.__name__ = op
    return f


floor = _piecewise_unary(FLOOR, "floor")
ceil = _piecewise_unary(CEIL, "ceil")
sign = _piecewise_unary(SIGN, "sign")


def round(x, decimals=0):
    x = _as_tensor(x)
    if decimals:
        s = 10.0 ** decimals
        return divide(_unary_forward(ROUND, multiply(x, s)), s)
    return _unary_forward(ROUND, x)


def abs(x):
    x = _as_tensor(x)
    out = _unary_forward(ABS, x)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (multiply(g, sign(x)),))
    return out


absolute = abs


def square(x):
    x = _as_tensor(x)
    out = _unary_forward(SQUARE, x)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (multiply(g, multiply(x, 2.0)),))
    return out


def isnan(x):
    x = _as_tensor(x)
    return _unary_forward(ISNAN, x, out_dtype=dtypes.BOOL)


def isfinite(x):
    x = _as_tensor(x)
    return _unary_forward(ISFINITE, x, out_dtype=dtypes.BOOL)


def clip(x, x_min, x_max):
    """Limits values to [x_min, x_max]; the gradient flows where x lies inside."""
    x = _as_tensor(x)
    lo, hi = float(x_min), float(x_max)
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
    """Converts to another dtype (float->int truncates toward zero); differentiable float->float."""
    x = _as_tensor(x)
    dt = dtypes.standardize(dtype)
    if dt == x.dtype:
        return x
    out = empty(x.shape, dt, x.device)
    x.device.kernels.cast(x._buf, out._buf)
    return out


# ---- constructors -------------------------------------------------------------------------------

def full(shape, fill_value, dtype=None, device=None):
    shape = _shape_arg(shape, "full")
    dt = dtypes.standardize(dtype) if dtype is not None else (
        dtypes.FLOAT32 if isinstance(fill_value, float) else
        dtypes.BOOL if isinstance(fill_value, bool) else
        dtypes.INT64 if isinstance(fill_value, int) else dtypes.FLOAT32)
    from .device import get_device
    out = empty(shape, dt, get_device(device) if device is not None else None)
    out.device.kernels.fill(out._buf, float(fill_value))
    return out


def zeros(shape, dtype="float32", device=None):
    return full(shape, 0.0, dtype or "float32", device)


def ones(shape, dtype="float32", device=None):
    return full(shape, 1.0, dtype or "float32", device)


def zeros_like(x, dtype=None):
    x = _as_tensor(x)
    return full(x.shape, 0.0, dtype or x.dtype, x.device)


def ones_like(x, dtype=None):
    x = _as_tensor(x)
    return full(x.shape, 1.0, dtype or x.dtype, x.device)


def full_like(x, fill_value, dtype=None):
    x = _as_tensor(x)
    return full(x.shape, fill_value, dtype or x.dtype, x.device)


def _shape_arg(shape, op):
    if isinstance(shape, int):
        shape = (shape,)
    try:
        shape = tuple(int(d) for d in shape)
    except TypeError:
        raise TypeError(f"{op}: expected a shape (tuple of ints), received {shape!r}") from None
    if builtins.any(d < 0 for d in shape):
        raise ValueError(f"{op}: shape {shape} has a negative dimension")
    return shape


# ---- reductions ---------------------------------------------------------------------------------

def normalize_axes(axis, ndim, op):
    """Sorted tuple of non-negative axes; None means all axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < builtins.max(ndim, 1) or (ndim == 0 and a not in (0, -1)):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dimensions")
        a = a % ndim if ndim else 0
        if a in out:
            raise ValueError(f"{op}: axis {a} repeated in {axis}")
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
        outer = int(np.prod(shape[:lo], dtype=np.int64))
        R = int(np.prod(shape[lo:hi + 1], dtype=np.int64))
        inner = int(np.prod(shape[hi + 1:], dtype=np.int64))
        new_shape = shape[:lo] + [1] * (hi + 1 - lo) + shape[hi + 1:]
        out = empty(tuple(new_shape), out_dtype or cur.dtype, x.device)
        x.device.kernels.reduce(code, cur._buf, outer, R, inner, out._buf)
        cur, shape = out, new_shape
    return cur


def _finish(out, x, axes, keepdims):
    if keepdims:
        return out
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return Tensor(out._buf, shape, out.dtype, out.device)


def _kept_shape(x, axes):
    return tuple(1 if i in axes else d for i, d in enumerate(x.shape))


def broadcast_to(x, shape):
    """Repeats x along size-1 / missing leading dimensions to `shape` (a copy)."""
    x = _as_tensor(x)
    shape = tuple(shape)
    if x.shape == shape:
        return x
    out_shape = broadcast_shapes(x.shape, shape, "broadcast_to")
    if out_shape != shape:
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}")
    out = empty(shape, x.dtype, x.device)
    x.device.kernels.broadcast_to(x._buf, x.shape, out._buf, shape)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (unbroadcast(g, x.shape),))
    return out


def sum(x, axis=None, keepdims=False):
    x = _as_tensor(x)
    axes = normalize_axes(axis, x.ndim, "sum")
    dt = dtypes.INT64 if x.dtype == dtypes.BOOL else x.dtype
    xs = cast(x, dt) if dt != x.dtype else x
    out = _finish(_reduce_raw(R_SUM, xs, axes) if axes else xs, x, axes, keepdims)
    if needs_grad(x):
        kept = _kept_shape(x, axes)
        from .manipulation import reshape
        record(out, (x,), lambda g, n: (broadcast_to(reshape(g, kept), x.shape),))
    return out


def mean(x, axis=None, keepdims=False):
    x = _as_tensor(x)
    if not dtypes.is_float(x.dtype):
        x = cast(x, "float32")
    axes = normalize_axes(axis, x.ndim, "mean")
    out = _finish(_reduce_raw(R_MEAN, x, axes) if axes else x, x, axes, keepdims)
    if needs_grad(x):
        kept = _kept_shape(x, axes)
        count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        from .manipulation import reshape
        record(out, (x,), lambda g, n: (broadcast_to(reshape(divide(g, float(builtins.max(count, 1))), kept), x.shape),))
    return out


def _extreme(code, op):
    def f(x, axis=None, keepdims=False, initial=None):
        x = _as_tensor(x)
        axes = normalize_axes(axis, x.ndim, op)
        if x.size == 0 and initial is None:
            raise ValueError(f"{op}: zero-size tensor of shape {x.shape} has no {op}imum; pass initial=")
        kept_out = _reduce_raw(code, x, axes) if axes else x
        out = _finish(kept_out, x, axes, keepdims)
        if initial is not None:
            out = (maximum if code == R_MAX else minimum)(out, initial)
        if needs_grad(x):
            kept = _kept_shape(x, axes)

            def bw(g, n):
                from .manipulation import reshape
                mask = cast(equal(x, reshape(kept_out, kept)), x.dtype)
                count = sum(mask, axis=axes, keepdims=True)
                return (multiply(mask, divide(reshape(g, kept), count)),)
            record(out, (x,), bw)
        return out
    f.__name__ = op
    f.__doc__ = f"{op.capitalize()}imum over axes; ties share the gradient equally."
    return f


max = _extreme(R_MAX, "max")
min = _extreme(R_MIN, "min")
amax, amin = max, min


def prod(x, axis=None, keepdims=False):
    x = _as_tensor(x)
    axes = normalize_axes(axis, x.ndim, "prod")
    out = _finish(_reduce_raw(R_PROD, x, axes) if axes else x, x, axes, keepdims)
    if needs_grad(x):
        kept = _kept_shape(x, axes)

        def bw(g, n):
            from .manipulation import reshape
            return (multiply(reshape(g, kept), divide(reshape(out, kept), x)),)
        record(out, (x,), bw)
    return out


def _bool_reduce(code, op):
    def f(x, axis=None, keepdims=False):
        x = cast(_as_tensor(x), "bool")
        axes = normalize_axes(axis, x.ndim, op)
        return _finish(_reduce_raw(code, x, axes) if axes else x, x, axes, keepdims)
    f.__name__ = op
    return f


any = _bool_reduce(R_ANY, "any")
all = _bool_reduce(R_ALL, "all")


def _arg(is_max, op):
    def f(x, axis=None, keepdims=False):
        x = _as_tensor(x)
        if axis is None:
            from .manipulation import reshape
            flat = reshape(x, (x.size,))
            r = f(flat, 0)
            return reshape(r, (1,) * x.ndim) if keepdims else r
        (a,) = normalize_axes(axis, x.ndim, op)
        if x.shape[a] == 0:
            raise ValueError(f"{op}: axis {a} of shape {x.shape} is empty")
        outer = int(np.prod(x.shape[:a], dtype=np.int64))
        inner = int(np.prod(x.shape[a + 1:], dtype=np.int64))
        shape = x.shape[:a] + ((1,) if keepdims else ()) + x.shape[a + 1:]
        out = empty(shape, dtypes.INT64, x.device)
        x.device.kernels.argreduce(is_max, x._buf, outer, x.shape[a], inner, out._buf)
        return out
    f.__name__ = op
    return f


argmax = _arg(True, "argmax")
argmin = _arg(False, "argmin")


def var(x, axis=None, keepdims=False):
    x = _as_tensor(x)
    m = mean(x, axis=axis, keepdims=True)
    return mean(square(subtract(x, m)), axis=axis, keepdims=keepdims)


def std(x, axis=None, keepdims=False):
    return sqrt(var(x, axis=axis, keepdims=keepdims))


# ---- Tensor operators ---------------------------------------------------------------------------

def _r(f):
    return lambda self, other: f(other, self)


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
Tensor.__eq__ = equal
Tensor.__ne__ = not_equal
Tensor.__lt__ = less
Tensor.__le__ = less_equal
Tensor.__gt__ = greater
Tensor.__ge__ = greater_equal
Tensor.__and__ = logical_and
Tensor.__or__ = logical_or
Tensor.__xor__ = logical_xor
Tensor.__invert__ = logical_not
