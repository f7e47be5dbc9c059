"""Further keras.ops names composed from the core ops or one small kernel: sorting and top-k,
stop_gradient, shape helpers, tensordot/outer, norms, stacking."""
import numpy as np

from . import dtypes, validation
from . import settings
from .autodiff import needs_grad, record
from .linalg import matmul
from .manipulation import concatenate, expand_dims, moveaxis, reshape, stack, take_along_axis, transpose
from .math import _as_tensor, abs, cast, divide, maximum, max as _max, min as _min, multiply, power, sqrt, square, sum
from .math import zeros
from .tensor import Tensor, empty

__all__ = ["sort", "argsort", "top_k", "in_top_k", "stop_gradient", "shape", "ndim", "size", "dtype",
           "tensordot", "outer", "norm", "normalize", "hstack", "vstack", "average", "trace"]


def _sorted_last(x, k, descending, op):
    n = x.shape[-1] if x.ndim else 1
    outer = x.size // n if n else 0
    vals = empty(x.shape[:-1] + (k,), x.dtype, x.device)
    idx = empty(x.shape[:-1] + (k,), dtypes.INT64, x.device)
    x.device.kernels.sort_rows(x._buf, outer, n, k, descending, vals._buf, idx._buf)
    return vals, idx


def _values_with_grad(x, vals, idx, axis):
    """Values gathered from x at idx along axis, differentiable (the gradient scatters back)."""
    if needs_grad(x):
        return take_along_axis(x, idx, axis=axis)
    return vals


def sort(x, axis=-1):
    """Sorted copy along `axis` (ascending, NaN last); axis=None sorts the flattened tensor."""
    x = _as_tensor(x, "sort")
    if x.dtype == dtypes.BOOL:
        return cast(sort(cast(x, dtypes.INT32), axis), dtypes.BOOL)
    if axis is None:
        x, axis = reshape(x, (x.size,)), 0
    if x.ndim == 0:
        validation.axis(axis, 1, "sort", shape=x.shape)
        return x
    a = validation.axis(axis, x.ndim, "sort", shape=x.shape)
    xm = moveaxis(x, a, -1) if a != x.ndim - 1 else x
    vals, idx = _sorted_last(xm, xm.shape[-1], False, "sort")
    vals = _values_with_grad(xm, vals, idx, -1)
    return moveaxis(vals, -1, a) if a != x.ndim - 1 else vals


def argsort(x, axis=-1):
    """Indices that sort `x` along `axis` (stable), as int64; axis=None: of the flattened tensor."""
    x = _as_tensor(x, "argsort")
    if x.dtype == dtypes.BOOL:   # the sort kernel takes numbers (False < True, as numpy orders them)
        x = cast(x, dtypes.INT32)
    if axis is None:
        x, axis = reshape(x, (x.size,)), 0
    a = validation.axis(axis, max(x.ndim, 1), "argsort", shape=x.shape)
    if x.ndim == 0:
        return zeros((), dtypes.INT64, x.device)
    xm = moveaxis(x, a, -1) if a != x.ndim - 1 else x
    _, idx = _sorted_last(xm, xm.shape[-1], False, "argsort")
    return moveaxis(idx, -1, a) if a != x.ndim - 1 else idx


def top_k(x, k, sorted=True):
    """The k largest entries along the last axis and their indices: (values, indices)."""
    x = _as_tensor(x, "top_k")
    if x.dtype == dtypes.BOOL:
        vals, idx = top_k(cast(x, dtypes.INT32), k, sorted)
        return cast(vals, dtypes.BOOL), idx
    if x.ndim == 0:
        raise ValueError("top_k: expected a tensor with at least 1 dimension, received a scalar")
    k = validation.integer(k, "top_k", "k")
    if not 0 <= k <= x.shape[-1]:
        raise ValueError(f"top_k: k={k} must be between 0 and the last dimension of x, whose shape is {x.shape}")
    vals, idx = _sorted_last(x, k, True, "top_k")
    return _values_with_grad(x, vals, idx, -1), idx


def in_top_k(targets, predictions, k):
    """Whether each target class is among the k highest predictions (ties count as in)."""
    from .math import greater, less
    p = _as_tensor(predictions, "in_top_k")
    t = _as_tensor(targets, "in_top_k")
    k = validation.size(k, "in_top_k", "k")
    if p.ndim != 2 or t.shape != p.shape[:1]:
        raise ValueError(f"in_top_k: expected predictions of shape (batch, classes) and targets of shape (batch,), "
                         f"received predictions of shape {p.shape} and targets of shape {t.shape}")
    if not dtypes.is_int(t.dtype):
        raise TypeError(f"in_top_k: targets must be integer class ids, received {t.dtype} with shape {t.shape}")
    t = cast(t, "int64")
    if t.size:
        lo, hi = int(_min(t).item()), int(_max(t).item())
        if lo < 0 or hi >= p.shape[1]:
            bad = lo if lo < 0 else hi
            raise ValueError(f"in_top_k: target class {bad} is out of range for predictions of shape {p.shape}; "
                             f"targets must lie in [0, {p.shape[1]})")
    score = take_along_axis(p, expand_dims(t, -1), axis=-1)
    better = sum(cast(greater(p, score), "int32"), axis=-1)
    return less(better, k)


def stop_gradient(variable):
    """The same values, treated as a constant by GradientTape (Keras's parameter name)."""
    x = _as_tensor(variable)
    return Tensor(x._buf, x.shape, x.dtype, x.device)


def shape(x):
    return tuple(_as_tensor(x).shape)


def ndim(x):
    return _as_tensor(x).ndim


def size(x):
    return _as_tensor(x).size


def dtype(x):
    return _as_tensor(x).dtype


def tensordot(x1, x2, axes=2):
    """Sum over the last `axes` dims of x1 and the first of x2 (or explicit axis lists)."""
    a, b = _as_tensor(x1, "tensordot"), _as_tensor(x2, "tensordot")
    if not isinstance(axes, (list, tuple)):
        n = validation.integer(axes, "tensordot", "axes")
        if not 0 <= n <= min(a.ndim, b.ndim):
            raise ValueError(f"tensordot: axes={n} must be between 0 and the rank of both inputs, whose shapes are "
                             f"{a.shape} and {b.shape}")
        ax_a, ax_b = list(range(a.ndim - n, a.ndim)), list(range(n))
    else:
        if len(axes) != 2:
            raise ValueError(f"tensordot: axes must be an integer or a pair of axis lists, received {axes!r}")
        ax_a = list(validation.axes(axes[0], a.ndim, "tensordot", "axes[0]", a.shape))
        ax_b = list(validation.axes(axes[1], b.ndim, "tensordot", "axes[1]", b.shape))
    if [a.shape[i] for i in ax_a] != [b.shape[i] for i in ax_b]:
        raise ValueError(f"tensordot: contracted dimensions differ: {a.shape} axes {ax_a} vs {b.shape} axes {ax_b}")
    free_a = [i for i in range(a.ndim) if i not in ax_a]
    free_b = [i for i in range(b.ndim) if i not in ax_b]
    k = int(np.prod([a.shape[i] for i in ax_a], dtype=np.int64))
    m = int(np.prod([a.shape[i] for i in free_a], dtype=np.int64))
    n = int(np.prod([b.shape[i] for i in free_b], dtype=np.int64))
    validation.check_alloc("tensordot", (m, n), a.dtype, a.device)
    at = reshape(transpose(a, free_a + ax_a), (m, k))   # no -1: a zero-size k leaves it undefined
    bt = reshape(transpose(b, ax_b + free_b), (k, n))
    return reshape(matmul(at, bt), tuple(a.shape[i] for i in free_a) + tuple(b.shape[i] for i in free_b))


def outer(x1, x2):
    """numpy.outer: the flattened x1 as a column times the flattened x2 as a row (operand dtypes as
    in multiply: a number or array takes a tensor's dtype)."""
    from .math import _operands
    a, b = _operands(x1, x2, "outer")
    validation.check_alloc("outer", (a.size, b.size), a.dtype, a.device)
    return multiply(reshape(a, (a.size, 1)), reshape(b, (1, b.size)))


def norm(x, ord=None, axis=None, keepdims=False):
    """Vector 2-norm / Frobenius norm by default; ord may be 1, 2, inf or 'fro'."""
    x = _as_tensor(x, "norm")
    axis = _norm_axes(axis, x, "norm")
    from .math import _check_reduced
    _check_reduced("norm", x, axis if axis is not None else tuple(range(x.ndim)))
    if isinstance(ord, (bool, np.bool_)) or not (ord is None or isinstance(ord, (str, int, float, np.number))):
        raise ValueError(f"norm: unsupported ord={ord!r}; use None, 1, 2, inf or a positive number")
    if ord in (None, 2, "fro", "euclidean"):
        return sqrt(sum(square(x), axis=axis, keepdims=keepdims))
    if ord == 1:
        return sum(abs(x), axis=axis, keepdims=keepdims)
    if ord in (np.inf, float("inf")):
        axes = tuple(range(x.ndim)) if axis is None else axis
        if any(x.shape[a] == 0 for a in axes) and all(d for i, d in enumerate(x.shape) if i not in axes):
            raise ValueError(f"norm: the inf-norm over an empty axis (shape {x.shape}, axis={axis}) has no value: "
                             "it is the maximum of no elements")
        return _max(abs(x), axis=axis, keepdims=keepdims)
    if isinstance(ord, (int, float)) and ord > 0:
        return power(sum(power(abs(x), float(ord)), axis=axis, keepdims=keepdims), 1.0 / ord)
    raise ValueError(f"norm: unsupported ord={ord!r}; use None, 1, 2, inf or a positive number")


def _norm_axes(axis, x, op):
    """`axis` checked against x (errors name `op`), as norm's reductions take it."""
    if axis is None:
        return None
    from .math import normalize_axes
    lim = x.ndim if x.ndim else 1
    axes = normalize_axes(axis, lim, op, x.shape)
    return axes if x.ndim else None


def normalize(x, axis=-1, order=2, epsilon=None):
    """x divided by its `order`-norm along `axis` (keras.ops.normalize)."""
    x = _as_tensor(x, "normalize")
    axis = _norm_axes(axis, x, "normalize")
    if isinstance(order, bool) or not isinstance(order, (int, float, np.integer, np.floating)) or not order > 0:
        raise ValueError(f"normalize: order must be a positive number, received order={order!r}")
    n = norm(x, ord=order, axis=axis, keepdims=True)
    return divide(x, maximum(n, settings.epsilon() if epsilon is None else epsilon))


def _stack_inputs(xs, op):
    if isinstance(xs, Tensor) or not isinstance(xs, (list, tuple)):
        raise TypeError(f"{op}: expected a list or tuple of tensors, received {type(xs).__name__}")
    if not xs:
        raise ValueError(f"{op}: needs at least one tensor, received an empty sequence")
    return [_as_tensor(x, op) for x in xs]


def hstack(xs):
    """numpy.hstack: joins along axis 1 (axis 0 for 1-D tensors)."""
    xs = _stack_inputs(xs, "hstack")
    return concatenate(xs, axis=0 if xs[0].ndim <= 1 else 1)


def vstack(xs):
    """numpy.vstack: joins along axis 0, 1-D tensors as rows."""
    xs = _stack_inputs(xs, "vstack")
    return concatenate([reshape(x, (1, x.size)) if x.ndim <= 1 else x for x in xs], axis=0)


def average(x, axis=None, weights=None):
    from .math import mean, normalize_axes
    x = _as_tensor(x, "average")
    if axis is not None:
        normalize_axes(axis, x.ndim, "average", x.shape)
    if weights is None:
        return mean(x, axis=axis)
    w = _as_tensor(weights, "average")
    if axis is not None and w.ndim == 1 and x.ndim > 1:
        a = validation.axis(axis, x.ndim, "average", shape=x.shape)
        if w.shape[0] != x.shape[a]:
            raise ValueError(f"average: 1-D weights of length {w.shape[0]} do not match axis {a} (size "
                             f"{x.shape[a]}) of x with shape {x.shape}")
        shape = [1] * x.ndim
        shape[a] = w.shape[0]
        w = reshape(w, tuple(shape))
    elif w.shape != x.shape:
        raise ValueError(f"average: weights of shape {w.shape} must have x's shape {x.shape}, or be 1-D with the "
                         "length of the averaged axis")
    return divide(sum(multiply(x, w), axis=axis), sum(w * (x * 0.0 + 1.0), axis=axis))


def trace(x, offset=0, axis1=0, axis2=1):
    """numpy.trace: the sum of diagonal `offset` of the (axis1, axis2) planes."""
    from .manipulation import diagonal
    x = _as_tensor(x, "trace")
    if x.ndim < 2:
        raise ValueError(f"trace: expected a tensor with at least 2 dimensions, received shape {x.shape}")
    a1 = validation.axis(axis1, x.ndim, "trace", "axis1", x.shape)
    a2 = validation.axis(axis2, x.ndim, "trace", "axis2", x.shape)
    if a1 == a2:
        raise ValueError(f"trace: axis1 and axis2 must differ, both are {a1} (shape {x.shape})")
    offset = validation.integer(offset, "trace", "offset")
    return sum(diagonal(x, offset=offset, axis1=a1, axis2=a2), axis=-1)
