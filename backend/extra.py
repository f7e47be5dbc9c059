"""Further keras.ops names composed from the core ops or one small kernel: sorting and top-k,
stop_gradient, shape helpers, tensordot/outer, norms, stacking."""
import numpy as np

from . import dtypes, validation
from .autodiff import needs_grad, record
from .linalg import matmul
from .manipulation import concatenate, expand_dims, moveaxis, reshape, stack, take_along_axis, transpose
from .math import _as_tensor, abs, divide, maximum, max as _max, multiply, power, sqrt, square, sum
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
    x = _as_tensor(x)
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
    x = _as_tensor(x)
    if axis is None:
        x, axis = reshape(x, (x.size,)), 0
    a = validation.axis(axis, max(x.ndim, 1), "argsort", shape=x.shape)
    xm = moveaxis(x, a, -1) if a != x.ndim - 1 else x
    _, idx = _sorted_last(xm, xm.shape[-1], False, "argsort")
    return moveaxis(idx, -1, a) if a != x.ndim - 1 else idx


def top_k(x, k, sorted=True):
    """The k largest entries along the last axis and their indices: (values, indices)."""
    x = _as_tensor(x)
    if x.ndim == 0:
        raise ValueError("top_k: expected a tensor with at least 1 dimension, received a scalar")
    k = validation.integer(k, "top_k", "k")
    if not 0 <= k <= x.shape[-1]:
        raise ValueError(f"top_k: k={k} must be between 0 and the last dimension of x, whose shape is {x.shape}")
    vals, idx = _sorted_last(x, k, True, "top_k")
    return _values_with_grad(x, vals, idx, -1), idx


def in_top_k(targets, predictions, k):
    """Whether each target class is among the k highest predictions (ties count as in)."""
    from .math import cast, greater, less
    p = _as_tensor(predictions)
    t = cast(_as_tensor(targets), "int64")
    score = take_along_axis(p, expand_dims(t, -1), axis=-1)
    better = sum(cast(greater(p, score), "int32"), axis=-1)
    return less(better, validation.integer(k, "in_top_k", "k"))


def stop_gradient(x):
    """The same values, treated as a constant by GradientTape."""
    x = _as_tensor(x)
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
    a, b = _as_tensor(x1), _as_tensor(x2)
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
    at = reshape(transpose(a, free_a + ax_a), (-1, k))
    bt = reshape(transpose(b, ax_b + free_b), (k, -1))
    return reshape(matmul(at, bt), tuple(a.shape[i] for i in free_a) + tuple(b.shape[i] for i in free_b))


def outer(x1, x2):
    a, b = reshape(_as_tensor(x1), (-1, 1)), reshape(_as_tensor(x2), (1, -1))
    return multiply(a, b)


def norm(x, ord=None, axis=None, keepdims=False):
    """Vector 2-norm / Frobenius norm by default; ord may be 1, 2, inf or 'fro'."""
    x = _as_tensor(x)
    if ord in (None, 2, "fro", "euclidean"):
        return sqrt(sum(square(x), axis=axis, keepdims=keepdims))
    if ord == 1:
        return sum(abs(x), axis=axis, keepdims=keepdims)
    if ord in (np.inf, float("inf")):
        return _max(abs(x), axis=axis, keepdims=keepdims)
    if isinstance(ord, (int, float)) and ord > 0:
        return power(sum(power(abs(x), float(ord)), axis=axis, keepdims=keepdims), 1.0 / ord)
    raise ValueError(f"norm: unsupported ord={ord!r}; use None, 1, 2, inf or a positive number")


def normalize(x, axis=-1, order=2, epsilon=None):
    """x divided by its `order`-norm along `axis` (keras.ops.normalize)."""
    x = _as_tensor(x)
    n = norm(x, ord=order, axis=axis, keepdims=True)
    return divide(x, maximum(n, 1e-12 if epsilon is None else epsilon))


def hstack(xs):
    xs = [_as_tensor(x) for x in xs]
    return concatenate(xs, axis=0 if xs[0].ndim == 1 else 1)


def vstack(xs):
    xs = [_as_tensor(x) for x in xs]
    return concatenate([reshape(x, (1, -1)) if x.ndim == 1 else x for x in xs], axis=0)


def average(x, axis=None, weights=None):
    from .math import mean
    x = _as_tensor(x)
    if weights is None:
        return mean(x, axis=axis)
    w = _as_tensor(weights)
    if axis is not None and w.ndim == 1 and x.ndim > 1:
        shape = [1] * x.ndim
        shape[validation.axis(axis, x.ndim, "average", shape=x.shape)] = w.shape[0]
        w = reshape(w, tuple(shape))
    return divide(sum(multiply(x, w), axis=axis), sum(w * (x * 0.0 + 1.0), axis=axis))


def trace(x, offset=0, axis1=0, axis2=1):
    from .manipulation import diagonal
    return sum(diagonal(_as_tensor(x), offset=offset, axis1=axis1, axis2=axis2), axis=-1)
