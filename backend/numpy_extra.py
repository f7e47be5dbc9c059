"""More of keras.ops's numpy family, composed from lamina's existing ops (no kernels of their own):
joining and splitting, products, predicates, NaN-aware reductions, quantiles, searching and
counting, scatters and segment reductions, window functions, sequence extraction, einops-style
`rearrange`.

Gradients flow through the ops each function is built from (take, where, sort, matmul ...).
Orderings (quantiles, unique, searchsorted, segment reductions, scatters) go through the
stable C++ sort: a scatter is a stable sort of the target positions followed by a segmented
scan within runs of equal positions, so it works for every dtype and is differentiable through
`take`. lamina tensors are real (float32, int32, int64, bool): `real`, `imag`, `conj` and
`angle` are those of real numbers. Integer results that keras.ops documents as int32
(searchsorted, digitize, argpartition, bincount counts, histogram counts) are int32; other index
results are int64, lamina's index dtype.
"""
import builtins
import contextlib
import functools
import math as _pymath
import re

import numpy as np

from . import dtypes, validation
from . import math as _m
from .autodiff import needs_grad
from .extra import argsort, sort, tensordot
from .linalg import matmul
from .manipulation import (concatenate, diag, expand_dims, flip, linspace, moveaxis, nonzero, pad, ravel, reshape,
                           split, take, take_along_axis, transpose)
from .manipulation import arange as _arange
from .math import _as_tensor, _operands, _record_zero_grad, normalize_axes
from .tensor import Tensor, convert_to_tensor

__all__ = [
    # joining, splitting, flipping
    "append", "array_split", "hsplit", "vsplit", "dsplit", "dstack", "fliplr", "flipud", "rot90",
    # differences and products
    "diff", "diagflat", "kron", "inner", "vdot", "vander", "meshgrid", "trapezoid", "ptp", "cross", "correlate",
    # predicates and elementwise helpers
    "isclose", "allclose", "isin", "isneginf", "isposinf", "isreal", "real", "imag", "conj", "conjugate",
    "angle", "deg2rad", "rad2deg", "sinc", "divide_no_nan", "nan_to_num",
    # NaN-aware reductions and scans
    "nansum", "nanmean", "nanmax", "nanmin", "nanprod", "nanstd", "nanvar", "nanargmax", "nanargmin",
    "nancumsum", "nancumprod",
    # order statistics
    "median", "quantile", "percentile", "nanmedian", "nanquantile", "nanpercentile",
    # counting and searching
    "bincount", "digitize", "searchsorted", "histogram", "unique", "unravel_index", "argpartition",
    # constructors and dtypes
    "geomspace", "logspace", "empty", "empty_like", "array", "view", "saturate_cast", "select",
    # scatters and segment reductions
    "scatter", "scatter_update", "segment_sum", "segment_max", "segment_min", "segment_prod",
    # window functions
    "bartlett", "blackman", "hamming", "hanning", "kaiser",
    # sequences and axes
    "extract_sequences", "rearrange",
]

_F32, _I32, _I64, _BOOL = dtypes.FLOAT32, dtypes.INT32, dtypes.INT64, dtypes.BOOL
_INT_RANGE = {_I32: (-2 ** 31, 2 ** 31 - 1), _I64: (-2 ** 63, 2 ** 63 - 1)}


# ---- helpers ------------------------------------------------------------------------------------

def _float(x):
    return x if x.dtype == _F32 else _m.cast(x, _F32)


def _axis_slice(x, ax, start=None, stop=None, step=None):
    """x[..., start:stop:step, ...] along axis `ax`."""
    key = [builtins.slice(None)] * x.ndim
    key[ax] = builtins.slice(start, stop, step)
    return x[tuple(key)]


def _same_dtype(op, ts):
    """Tensors of one dtype: TypeError naming `op` and every (dtype, shape) when they differ."""
    if len({t.dtype for t in ts}) > 1:
        raise TypeError(f"{op}: all inputs must have the same dtype, received "
                        f"{[(t.dtype, t.shape) for t in ts]}; cast them first with ops.cast(x, dtype)")
    _m.check_same_device(op, *ts)
    return ts


def _host_scalar(v, op, name):
    """A Python number from a number, a 0-d array or a one-element tensor (an argument, not data)."""
    if isinstance(v, Tensor):
        if v.size != 1:
            raise ValueError(f"{op}: {name} must be a scalar, received a tensor of shape {v.shape}")
        v = v.item()
    try:
        a = np.asarray(v)
    except (TypeError, ValueError):
        a = None
    if a is None or a.ndim != 0 or a.dtype.kind not in "biuf":
        raise TypeError(f"{op}: {name} must be a scalar number, received {v!r:.60}")
    return a.item()


def _int(v, op, name, minimum=None):
    """An integer argument (validation.integer / .size), with a tensor of several elements a
    TypeError naming the op rather than Tensor.item()'s error."""
    if isinstance(v, Tensor) and v.ndim != 0:
        raise TypeError(f"{op}: {name} must be an integer, received a tensor of shape {v.shape}")
    return validation.integer(v, op, name) if minimum is None else validation.size(v, op, name, minimum)


@contextlib.contextmanager
def _named(op, inner):
    """Errors of the op `inner` that this op calls, re-raised under this op's name (the check and
    its message are the same; only the name the user called differs)."""
    try:
        yield
    except (TypeError, ValueError) as e:
        msg = str(e)
        if not msg.startswith(inner + ":"):
            raise
        raise type(e)(op + msg[len(inner):]) from None


def _bool_arg(v, op, name):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be True or False, received {v!r:.60}")
    return bool(v)


def _int_tensor(x, op, name):
    """x as an int32/int64 tensor (bool and float tensors are a TypeError)."""
    t = _as_tensor(x, op)
    if not dtypes.is_int(t.dtype):
        raise TypeError(f"{op}: {name} must be integers (int32 or int64), received {t.dtype} with shape {t.shape}; "
                        f"cast them with ops.cast({name}, 'int32')")
    return t


def _any_true(mask):
    """Host bool: does any element of a bool tensor hold? (a check on arguments, one read)"""
    return mask.size > 0 and bool(_m.any(mask).item())


# ---- joining, splitting, flipping ---------------------------------------------------------------

def append(x1, x2, axis=None):
    """numpy.append: x2 appended to x1 along `axis` (both flattened when axis is None)."""
    a, b = _same_dtype("append", [_as_tensor(x1, "append"), _as_tensor(x2, "append")])
    if axis is None:
        return concatenate([ravel(a), ravel(b)], axis=0)
    if a.ndim != b.ndim:
        raise ValueError(f"append: with axis={axis}, x1 and x2 must have the same number of dimensions, received "
                         f"shapes {a.shape} and {b.shape}; use axis=None to append flattened")
    return concatenate([a, b], axis=axis)


def array_split(x, indices_or_sections, axis=0):
    """numpy.array_split: like split, but `sections` need not divide the axis (the first
    `size % sections` pieces get one element more)."""
    x = _as_tensor(x, "array_split")
    if x.ndim == 0:
        raise ValueError("array_split: cannot split a zero-dimensional tensor")
    ax = validation.axis(axis, x.ndim, "array_split", shape=x.shape)
    if isinstance(indices_or_sections, (list, tuple, np.ndarray, Tensor)):
        with _named("array_split", "split"):
            return split(x, indices_or_sections, axis=ax)
    k = _int(indices_or_sections, "array_split", "indices_or_sections")
    if k <= 0:
        raise ValueError(f"array_split: the number of sections must be positive, received {k}")
    n = x.shape[ax]
    each, extra = divmod(n, k)
    sizes = [each + 1] * extra + [each] * (k - extra)
    return split(x, np.cumsum(sizes)[:-1].tolist(), axis=ax)


def _split_along(op, x, indices_or_sections, ax, min_ndim):
    x = _as_tensor(x, op)
    if x.ndim < min_ndim:
        raise ValueError(f"{op}: expected a tensor with at least {min_ndim} dimensions, received shape {x.shape}")
    with _named(op, "split"):
        return split(x, indices_or_sections, axis=ax)


def hsplit(x, indices_or_sections):
    """numpy.hsplit: split along axis 1 (axis 0 for 1-D tensors); sections must divide the axis."""
    x = _as_tensor(x, "hsplit")
    return _split_along("hsplit", x, indices_or_sections, 1 if x.ndim > 1 else 0, 1)


def vsplit(x, indices_or_sections):
    """numpy.vsplit: split along axis 0 of a tensor with at least 2 dimensions."""
    return _split_along("vsplit", x, indices_or_sections, 0, 2)


def dsplit(x, indices_or_sections):
    """numpy.dsplit: split along axis 2 of a tensor with at least 3 dimensions."""
    return _split_along("dsplit", x, indices_or_sections, 2, 3)


def dstack(xs):
    """numpy.dstack: tensors made at least 3-D ((N,) -> (1, N, 1), (M, N) -> (M, N, 1)) and
    joined along axis 2."""
    if isinstance(xs, Tensor) or not isinstance(xs, (list, tuple)):
        raise TypeError(f"dstack: expected a list or tuple of tensors, received {type(xs).__name__}")
    ts = [_as_tensor(t, "dstack") for t in xs]
    out = []
    for t in ts:
        if t.ndim == 0:
            t = reshape(t, (1, 1, 1))
        elif t.ndim == 1:
            t = reshape(t, (1, t.shape[0], 1))
        elif t.ndim == 2:
            t = reshape(t, t.shape + (1,))
        out.append(t)
    return concatenate(out, axis=2)


def fliplr(x):
    """Reverses axis 1 (left/right) of a tensor with at least 2 dimensions."""
    x = _as_tensor(x, "fliplr")
    if x.ndim < 2:
        raise ValueError(f"fliplr: expected a tensor with at least 2 dimensions, received shape {x.shape}")
    return flip(x, 1)


def flipud(x):
    """Reverses axis 0 (up/down) of a tensor with at least 1 dimension."""
    x = _as_tensor(x, "flipud")
    if x.ndim < 1:
        raise ValueError("flipud: expected a tensor with at least 1 dimension, received shape ()")
    return flip(x, 0)


def rot90(array, k=1, axes=(0, 1)):
    """numpy.rot90: rotates by 90 degrees k times in the plane of `axes`, from the first axis
    towards the second."""
    x = _as_tensor(array, "rot90")
    k = _int(k, "rot90", "k") % 4
    if not isinstance(axes, (list, tuple)) or len(axes) != 2:
        raise ValueError(f"rot90: axes must be a pair of axes, received {axes!r}")
    if x.ndim < 2:
        raise ValueError(f"rot90: expected a tensor with at least 2 dimensions, received shape {x.shape}")
    a0 = validation.axis(axes[0], x.ndim, "rot90", "axes", x.shape)
    a1 = validation.axis(axes[1], x.ndim, "rot90", "axes", x.shape)
    if a0 == a1:
        raise ValueError(f"rot90: the two axes must differ, received axes={tuple(axes)} for shape {x.shape}")
    if k == 0:
        return x
    if k == 2:
        return flip(x, (a0, a1))
    perm = list(range(x.ndim))
    perm[a0], perm[a1] = perm[a1], perm[a0]
    if k == 1:
        return transpose(flip(x, a1), perm)
    return flip(transpose(x, perm), a1)


# ---- differences and products -------------------------------------------------------------------

def diff(a, n=1, axis=-1):
    """numpy.diff: the n-th discrete difference along `axis` (bool tensors: not_equal)."""
    x = _as_tensor(a, "diff")
    n = _int(n, "diff", "n")
    if n < 0:
        raise ValueError(f"diff: order n must be non-negative, received n={n}")
    if x.ndim == 0:
        raise ValueError("diff: expected a tensor with at least 1 dimension, received a scalar")
    ax = validation.axis(axis, x.ndim, "diff", shape=x.shape)
    for _ in range(n):
        hi, lo = _axis_slice(x, ax, 1, None), _axis_slice(x, ax, None, -1)
        x = _m.not_equal(hi, lo) if x.dtype == _BOOL else _m.subtract(hi, lo)
    return x


def diagflat(x, k=0):
    """numpy.diagflat: a 2-D tensor with the flattened x on diagonal k."""
    return diag(ravel(_as_tensor(x, "diagflat")), _int(k, "diagflat", "k"))


def kron(x1, x2):
    """numpy.kron: the Kronecker product (block i of the result is x1[i] * x2)."""
    a, b = _operands(x1, x2, "kron")
    nd = builtins.max(a.ndim, b.ndim)
    sa = (1,) * (nd - a.ndim) + a.shape
    sb = (1,) * (nd - b.ndim) + b.shape
    ar = reshape(a, tuple(v for d in sa for v in (d, 1)))
    br = reshape(b, tuple(v for d in sb for v in (1, d)))
    out = _m.multiply(ar, br)
    return reshape(out, tuple(p * q for p, q in zip(sa, sb)))


def _contract_last(a, b):
    """sum over the last axes of a and b: shape a.shape[:-1] + b.shape[:-1]."""
    if a.dtype == _F32:
        return tensordot(a, b, axes=([a.ndim - 1], [b.ndim - 1]))
    ar = reshape(a, a.shape[:-1] + (1,) * (b.ndim - 1) + a.shape[-1:])
    br = reshape(b, (1,) * (a.ndim - 1) + b.shape)
    s = _m.sum(_m.multiply(ar, br), axis=-1)
    return _m.cast(s, _BOOL) if a.dtype == _BOOL else s


def inner(x1, x2):
    """numpy.inner: sums products over the last axes (a scalar operand multiplies)."""
    a, b = _operands(x1, x2, "inner")
    if a.ndim == 0 or b.ndim == 0:
        return _m.multiply(a, b)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"inner: the last dimensions differ: x1 has shape {a.shape}, x2 has shape {b.shape}")
    return _contract_last(a, b)


def vdot(x1, x2):
    """numpy.vdot: the dot product of the flattened operands (real tensors: no conjugation)."""
    a, b = _operands(x1, x2, "vdot")
    if a.size != b.size:
        raise ValueError(f"vdot: the operands must have the same number of elements, received shapes {a.shape} "
                         f"({a.size} elements) and {b.shape} ({b.size} elements)")
    return _contract_last(ravel(a), ravel(b))


def vander(x, N=None, increasing=False):
    """numpy.vander: columns are powers of the 1-D x (x**(N-1), ..., x, 1; reversed when
    increasing). The result keeps x's dtype (bool computes in int64)."""
    x = _as_tensor(x, "vander")
    if x.ndim != 1:
        raise ValueError(f"vander: x must be 1-D, received shape {x.shape}")
    N = x.shape[0] if N is None else _int(N, "vander", "N", 0)
    increasing = _bool_arg(increasing, "vander", "increasing")
    if x.dtype == _BOOL:
        x = _m.cast(x, _I64)
    e = _arange(N, dtype=x.dtype)
    if not increasing:
        e = flip(e, 0)
    return _m.power(reshape(x, (-1, 1)), reshape(e, (1, -1)))


def meshgrid(*x, indexing="xy"):
    """numpy.meshgrid: coordinate tensors from 1-D coordinate vectors (inputs are flattened).
    indexing="xy" (Cartesian) swaps the first two output axes; "ij" (matrix) does not."""
    if indexing not in ("xy", "ij"):
        raise ValueError(f"meshgrid: indexing must be 'xy' or 'ij', received {indexing!r}")
    ts = [ravel(_as_tensor(t, "meshgrid")) for t in x]
    nd = len(ts)
    shape = [t.shape[0] for t in ts]
    if indexing == "xy" and nd > 1:
        shape[0], shape[1] = shape[1], shape[0]
    out = []
    for i, t in enumerate(ts):
        pos = i
        if indexing == "xy" and nd > 1 and i < 2:
            pos = 1 - i
        s = [1] * nd
        s[pos] = t.shape[0]
        out.append(_m.broadcast_to(reshape(t, tuple(s)), tuple(shape)))
    return out


def trapezoid(y, x=None, dx=1.0, axis=-1):
    """numpy.trapezoid: the integral of y along `axis` by the trapezoidal rule, with sample
    points x (1-D along the axis, or y's shape) or a constant spacing dx."""
    y = _float(_as_tensor(y, "trapezoid"))
    if y.ndim == 0:
        raise ValueError("trapezoid: y must have at least 1 dimension, received a scalar")
    ax = validation.axis(axis, y.ndim, "trapezoid", shape=y.shape)
    if x is None:
        d = _float(_as_tensor(dx, "trapezoid"))
    else:
        xt = _float(_as_tensor(x, "trapezoid"))
        if xt.ndim == 1:
            if xt.shape[0] != y.shape[ax]:
                raise ValueError(f"trapezoid: the 1-D sample points x have {xt.shape[0]} entries but axis {ax} of y "
                                 f"(shape {y.shape}) has {y.shape[ax]}")
            shape = [1] * y.ndim
            shape[ax] = builtins.max(xt.shape[0] - 1, 0)
            d = reshape(diff(xt), tuple(shape))
        else:
            if xt.ndim != y.ndim:
                raise ValueError(f"trapezoid: x must be 1-D or have y's number of dimensions, received x of shape "
                                 f"{xt.shape} and y of shape {y.shape}")
            d = diff(xt, axis=ax)
    mid = _m.multiply(_m.add(_axis_slice(y, ax, 1, None), _axis_slice(y, ax, None, -1)), 0.5)
    return _m.sum(_m.multiply(d, mid), axis=ax)


def _nonempty(op, x, axis, what):
    """ValueError naming `op` when reducing x over `axis` would reduce an empty slice."""
    axes = normalize_axes(axis, x.ndim, op, x.shape)
    if x.size == 0 and _pymath.prod(d for i, d in enumerate(x.shape) if i not in axes) > 0:
        raise ValueError(f"{op}: zero-size tensor of shape {x.shape} has no {what} over axis={axis}")


def ptp(x, axis=None, keepdims=False):
    """numpy.ptp: max - min ("peak to peak") over axes (None: all)."""
    x = _as_tensor(x, "ptp")
    if x.dtype == _BOOL:
        raise TypeError(f"ptp: bool tensors have no peak-to-peak range (shape {x.shape}); cast to int32 first")
    _nonempty("ptp", x, axis, "peak-to-peak range")
    return _m.subtract(_m.max(x, axis=axis, keepdims=keepdims), _m.min(x, axis=axis, keepdims=keepdims))


def cross(x1, x2, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """numpy.cross: cross products of 2- or 3-element vectors along axisa / axisb (`axis`
    overrides all three). Two 2-vectors give the z component only; a 2-vector with a
    3-vector is taken with z = 0."""
    a, b = _operands(x1, x2, "cross")
    if axis is not None:
        axisa = axisb = axisc = axis
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"cross: both operands must be vectors, received shapes {a.shape} and {b.shape}")
    a = moveaxis(a, validation.axis(axisa, a.ndim, "cross", "axisa", a.shape), -1)
    b = moveaxis(b, validation.axis(axisb, b.ndim, "cross", "axisb", b.shape), -1)
    na, nb = a.shape[-1], b.shape[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise ValueError(f"cross: incompatible vector dimensions {na} and {nb} along axisa / axisb (shapes "
                         f"{a.shape} and {b.shape} with the vector axis last); each must be 2 or 3")
    a0, a1 = a[..., 0], a[..., 1]
    b0, b1 = b[..., 0], b[..., 1]
    mul, sub = _m.multiply, _m.subtract
    cz = sub(mul(a0, b1), mul(a1, b0))
    if na == 2 and nb == 2:
        return cz
    if na == 3 and nb == 3:
        a2, b2 = a[..., 2], b[..., 2]
        cx, cy = sub(mul(a1, b2), mul(a2, b1)), sub(mul(a2, b0), mul(a0, b2))
    elif na == 2:
        b2 = b[..., 2]
        cx, cy = mul(a1, b2), _m.negative(mul(a0, b2))
    else:
        a2 = a[..., 2]
        cx, cy = _m.negative(mul(a2, b1)), mul(a2, b0)
    shape = _m.broadcast_shapes(_m.broadcast_shapes(cx.shape, cy.shape, "cross"), cz.shape, "cross")
    c = concatenate([expand_dims(_m.broadcast_to(t, shape), -1) for t in (cx, cy, cz)], axis=-1)
    return moveaxis(c, -1, validation.axis(axisc, c.ndim, "cross", "axisc", c.shape))


def correlate(x1, x2, mode="valid"):
    """numpy.correlate of two 1-D tensors: c[k] = sum_n x1[n + k] * x2[n], computed in float32,
    with mode "valid" (default), "same" or "full"."""
    if mode not in ("valid", "same", "full"):
        raise ValueError(f"correlate: mode must be 'valid', 'same' or 'full', received {mode!r}")
    a, b = _float(_as_tensor(x1, "correlate")), _float(_as_tensor(x2, "correlate"))
    _m.check_same_device("correlate", a, b)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"correlate: expected two 1-D tensors, received shapes {a.shape} and {b.shape}")
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError(f"correlate: the inputs must not be empty, received shapes {a.shape} and {b.shape}")
    if a.shape[0] < b.shape[0]:   # numpy: correlate(a, v) = correlate(v, a) reversed
        return flip(_correlate(b, a, mode), 0)
    return _correlate(a, b, mode)


def _correlate(a, v, mode):
    M, N = a.shape[0], v.shape[0]
    if mode == "valid":
        lead, length, ap = 0, M - N + 1, a
    else:
        ap = pad(a, [(N - 1, N - 1)])
        lead, length = (0, M + N - 1) if mode == "full" else (N - 1 - N // 2, M)
    rows = _m.add(reshape(_arange(lead, lead + length), (-1, 1)), reshape(_arange(N), (1, -1)))
    return matmul(take(ap, rows, axis=0), v)


# ---- predicates and elementwise helpers ---------------------------------------------------------

def isclose(x1, x2, rtol=1e-05, atol=1e-08, equal_nan=False):
    """numpy.isclose: |x1 - x2| <= atol + rtol * |x2| elementwise (equal infinities are close;
    NaNs only with equal_nan=True), computed in float32."""
    return _isclose("isclose", x1, x2, rtol, atol, equal_nan)


def _isclose(op, x1, x2, rtol, atol, equal_nan):
    a, b = _operands(_float(_as_tensor(x1, op)), _float(_as_tensor(x2, op)), op)
    rtol = _host_scalar(rtol, op, "rtol")
    atol = _host_scalar(atol, op, "atol")
    equal_nan = _bool_arg(equal_nan, op, "equal_nan")
    finite = _m.logical_and(_m.isfinite(a), _m.isfinite(b))
    near = _m.less_equal(_m.abs(_m.subtract(a, b)), _m.add(_m.multiply(_m.abs(b), float(rtol)), float(atol)))
    out = _m.where(finite, near, _m.equal(a, b))
    if equal_nan:
        out = _m.logical_or(out, _m.logical_and(_m.isnan(a), _m.isnan(b)))
    return out


def allclose(x1, x2, rtol=1e-05, atol=1e-08, equal_nan=False):
    """numpy.allclose: whether isclose holds everywhere, as a 0-d bool tensor."""
    return _m.all(_isclose("allclose", x1, x2, rtol, atol, equal_nan))


def isin(x1, x2, assume_unique=False, invert=False):
    """numpy.isin: whether each element of x1 occurs in x2 (any shape), via a sort of x2.
    `assume_unique` is numpy's speed hint; lamina's sort-based test gives the same, correct,
    result either way."""
    _bool_arg(assume_unique, "isin", "assume_unique")
    invert = _bool_arg(invert, "isin", "invert")
    a, b = _as_tensor(x1, "isin"), _as_tensor(x2, "isin")
    dt = dtypes.result_type(a.dtype, b.dtype)
    a, b = _m.cast(a, dt), ravel(_m.cast(b, dt))
    _m.check_same_device("isin", a, b)
    if b.size == 0:
        found = _m.zeros(a.shape, _BOOL, a.device)
    else:
        s = sort(_sortable(b))
        av = _sortable(ravel(a))
        pos = _m.minimum(_search(s, av, "left"), b.size - 1)
        found = reshape(_m.equal(take(s, pos), av), a.shape)
    return _m.logical_not(found) if invert else found


def isneginf(x):
    """True where x is -inf (never for integer and bool tensors)."""
    x = _as_tensor(x, "isneginf")
    if x.dtype != _F32:
        return _m.zeros(x.shape, _BOOL, x.device)
    return _m.logical_and(_m.isinf(x), _m.less(x, 0.0))


def isposinf(x):
    """True where x is +inf (never for integer and bool tensors)."""
    x = _as_tensor(x, "isposinf")
    if x.dtype != _F32:
        return _m.zeros(x.shape, _BOOL, x.device)
    return _m.logical_and(_m.isinf(x), _m.greater(x, 0.0))


def isreal(x):
    """True everywhere: lamina tensors are real (float32, int32, int64, bool)."""
    x = _as_tensor(x, "isreal")
    return _m.ones(x.shape, _BOOL, x.device)


def real(x):
    """The real part: x itself (lamina tensors are real)."""
    return _as_tensor(x, "real")


def imag(x):
    """The imaginary part: zeros of x's shape and dtype (lamina tensors are real)."""
    return _m.zeros_like(_as_tensor(x, "imag"))


def conj(x):
    """The complex conjugate: x itself (lamina tensors are real)."""
    return _as_tensor(x, "conj")


conjugate = conj


def angle(x):
    """The argument of x as a complex number, for real x: 0 for x >= +0, pi for x < 0 and -0.0;
    NaN stays NaN. Float32 result; the gradient is zero."""
    x = _float(_as_tensor(x, "angle"))
    xd = Tensor(x._buf, x.shape, x.dtype, x.device)   # piecewise constant: no gradient path
    neg = _m.logical_or(_m.less(xd, 0.0),
                        _m.logical_and(_m.equal(xd, 0.0), _m.less(_m.divide(1.0, xd), 0.0)))   # -0.0: 1/x = -inf
    out = _m.where(neg, _pymath.pi, _m.where(_m.isnan(xd), xd, 0.0))
    if needs_grad(x):
        _record_zero_grad(out, (x,))
    return out


def deg2rad(x):
    """Degrees to radians (float32)."""
    return _m.multiply(_float(_as_tensor(x, "deg2rad")), _pymath.pi / 180.0)


def rad2deg(x):
    """Radians to degrees (float32)."""
    return _m.multiply(_float(_as_tensor(x, "rad2deg")), 180.0 / _pymath.pi)


def sinc(x):
    """The normalized sinc sin(pi x) / (pi x), 1 at x = 0 (float32; the gradient at 0 is 0)."""
    x = _float(_as_tensor(x, "sinc"))
    zero = _m.equal(x, 0.0)
    px = _m.multiply(_m.where(zero, 1.0, x), _pymath.pi)   # no 0/0 in the value or the gradient
    return _m.where(zero, 1.0, _m.divide(_m.sin(px), px))


def divide_no_nan(x1, x2):
    """x1 / x2, and 0 where x2 == 0 (float32; no NaN or inf in the value or the gradient there)."""
    a, b = _operands(_float(_as_tensor(x1, "divide_no_nan")), _float(_as_tensor(x2, "divide_no_nan")), "divide_no_nan")
    zero = _m.equal(b, 0.0)
    return _m.where(zero, 0.0, _m.divide(a, _m.where(zero, 1.0, b)))


def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    """numpy.nan_to_num: NaN -> nan, +inf -> posinf (default: the largest float32), -inf ->
    neginf (default: the lowest float32). Integer and bool tensors are returned as they are."""
    x = _as_tensor(x, "nan_to_num")
    if x.dtype != _F32:
        return x
    big = float(np.finfo(np.float32).max)
    nan = _host_scalar(nan, "nan_to_num", "nan")
    posinf = big if posinf is None else _host_scalar(posinf, "nan_to_num", "posinf")
    neginf = -big if neginf is None else _host_scalar(neginf, "nan_to_num", "neginf")
    y = _m.where(_m.isnan(x), float(nan), x)
    y = _m.where(isposinf(x), float(posinf), y)
    return _m.where(isneginf(x), float(neginf), y)


# ---- NaN-aware reductions and scans -------------------------------------------------------------

def _nan_parts(x):
    """(x with NaN -> 0, bool mask of NaNs) for a float tensor."""
    nan = _m.isnan(x)
    return _m.where(nan, 0.0, x), nan


def nansum(x, axis=None, keepdims=False):
    """Sum over axes treating NaN as zero."""
    x = _as_tensor(x, "nansum")
    if x.dtype != _F32:
        return _m.sum(x, axis=axis, keepdims=keepdims)
    return _m.sum(_nan_parts(x)[0], axis=axis, keepdims=keepdims)


def _nan_count(nan, axis, keepdims):
    return _m.cast(_m.sum(_m.logical_not(nan), axis=axis, keepdims=keepdims), _F32)


def nanmean(x, axis=None, keepdims=False):
    """Mean over axes ignoring NaNs (NaN where every element is NaN)."""
    x = _as_tensor(x, "nanmean")
    if x.dtype != _F32:
        return _m.mean(x, axis=axis, keepdims=keepdims)
    z, nan = _nan_parts(x)
    return _m.divide(_m.sum(z, axis=axis, keepdims=keepdims), _nan_count(nan, axis, keepdims))


def _nan_extreme(op, x, axis, keepdims, is_max):
    x = _as_tensor(x, op)
    _nonempty(op, x, axis, "maximum" if is_max else "minimum")
    f = _m.max if is_max else _m.min
    if x.dtype != _F32:
        return f(x, axis=axis, keepdims=keepdims)
    nan = _m.isnan(x)
    out = f(_m.where(nan, -_pymath.inf if is_max else _pymath.inf, x), axis=axis, keepdims=keepdims)
    return _m.where(_m.all(nan, axis=axis, keepdims=keepdims), _pymath.nan, out)


def nanmax(x, axis=None, keepdims=False):
    """Maximum over axes ignoring NaNs (NaN where every element is NaN)."""
    return _nan_extreme("nanmax", x, axis, keepdims, True)


def nanmin(x, axis=None, keepdims=False):
    """Minimum over axes ignoring NaNs (NaN where every element is NaN)."""
    return _nan_extreme("nanmin", x, axis, keepdims, False)


def nanprod(x, axis=None, keepdims=False):
    """Product over axes treating NaN as one."""
    x = _as_tensor(x, "nanprod")
    if x.dtype != _F32:
        return _m.prod(x, axis=axis, keepdims=keepdims)
    return _m.prod(_m.where(_m.isnan(x), 1.0, x), axis=axis, keepdims=keepdims)


def nanvar(x, axis=None, keepdims=False):
    """Population variance (ddof=0) over axes ignoring NaNs (NaN where every element is NaN)."""
    x = _float(_as_tensor(x, "nanvar"))
    z, nan = _nan_parts(x)
    m = _m.divide(_m.sum(z, axis=axis, keepdims=True), _nan_count(nan, axis, True))
    dev = _m.where(nan, 0.0, _m.subtract(z, m))
    return _m.divide(_m.sum(_m.square(dev), axis=axis, keepdims=keepdims), _nan_count(nan, axis, keepdims))


def nanstd(x, axis=None, keepdims=False):
    """Population standard deviation (ddof=0) over axes ignoring NaNs."""
    return _m.sqrt(nanvar(_as_tensor(x, "nanstd"), axis=axis, keepdims=keepdims))


def _nan_arg(op, x, axis, keepdims, is_max):
    x = _as_tensor(x, op)
    f = _m.argmax if is_max else _m.argmin
    if x.dtype != _F32:
        return f(x, axis=axis, keepdims=keepdims)
    nan = _m.isnan(x)
    if axis is not None and x.ndim == 0:
        raise ValueError(f"{op}: a 0-d tensor has no axis {axis}; use axis=None")
    if _any_true(_m.all(nan, axis=axis)):
        raise ValueError(f"{op}: All-NaN slice encountered in a tensor of shape {x.shape} (axis={axis}); there is "
                         f"no {'max' if is_max else 'min'}imum to point to")
    return f(_m.where(nan, -_pymath.inf if is_max else _pymath.inf, x), axis=axis, keepdims=keepdims)


def nanargmax(x, axis=None, keepdims=False):
    """Index (int64) of the maximum ignoring NaNs; an all-NaN slice is a ValueError (numpy)."""
    return _nan_arg("nanargmax", x, axis, keepdims, True)


def nanargmin(x, axis=None, keepdims=False):
    """Index (int64) of the minimum ignoring NaNs; an all-NaN slice is a ValueError (numpy)."""
    return _nan_arg("nanargmin", x, axis, keepdims, False)


def nancumsum(x, axis=None, dtype=None):
    """Cumulative sum treating NaN as zero."""
    x = _as_tensor(x, "nancumsum")
    if x.dtype == _F32:
        x = _nan_parts(x)[0]
    return _m.cumsum(x, axis=axis, dtype=dtype)


def nancumprod(x, axis=None, dtype=None):
    """Cumulative product treating NaN as one."""
    x = _as_tensor(x, "nancumprod")
    if x.dtype == _F32:
        x = _m.where(_m.isnan(x), 1.0, x)
    return _m.cumprod(x, axis=axis, dtype=dtype)


# ---- order statistics ---------------------------------------------------------------------------

_METHODS = ("linear", "lower", "higher", "midpoint", "nearest")


def _quantile(op, x, q, axis, method, keepdims, ignore_nan, scale):
    """numpy.quantile / nanquantile through a sort of the reduced axes: q (scalar or 1-D, in
    [0, scale]) leads the result's shape, as in numpy; the result is float32."""
    x = _float(_as_tensor(x, op))
    if method not in _METHODS:
        raise ValueError(f"{op}: method must be one of {', '.join(repr(m) for m in _METHODS)}, received {method!r}")
    try:
        qa = np.asarray(q.numpy() if isinstance(q, Tensor) else q)
    except (TypeError, ValueError):
        qa = np.asarray(None)
    if qa.dtype.kind not in "biuf" or qa.ndim > 1:
        raise ValueError(f"{op}: q must be a number or a 1-D sequence of numbers, received {q!r:.60}")
    qa = qa.astype(np.float64)
    if np.any(np.isnan(qa)) or np.any(qa < 0) or np.any(qa > scale):
        what = "Percentiles must be in the range [0, 100]" if scale == 100 else "Quantiles must be in the range [0, 1]"
        raise ValueError(f"{op}: {what}, received q={q!r:.60}")
    qa = qa / scale
    axes = normalize_axes(axis, x.ndim, op, x.shape)
    keep = [i for i in range(x.ndim) if i not in axes]
    lanes = tuple(x.shape[i] for i in keep)
    n = _pymath.prod(x.shape[a] for a in axes)
    if n == 0:
        raise ValueError(f"{op}: cannot take a quantile over the empty axes {axes} of a tensor of shape {x.shape}")
    xr = reshape(transpose(x, keep + list(axes)), (_pymath.prod(lanes), n))
    s = sort(xr, axis=-1)
    nan = _m.isnan(xr)
    if ignore_nan:
        cnt = _m.cast(_m.sum(_m.logical_not(nan), axis=-1, keepdims=True), _F32)
    else:
        cnt = _m.full((xr.shape[0], 1), float(n), _F32, x.device)
    last = _m.maximum(_m.subtract(cnt, 1.0), 0.0)
    qt = reshape(convert_to_tensor(qa.reshape(-1).astype(np.float32), _F32, x.device), (1, -1))
    vidx = _m.multiply(qt, last)                                # (lanes, Q)
    if method in ("lower", "higher", "nearest"):
        f = {"lower": _m.floor, "higher": _m.ceil, "nearest": _m.round}[method]
        res = take_along_axis(s, _m.cast(_m.minimum(f(vidx), last), _I64), axis=-1)
    else:
        lo = _m.floor(vidx)
        hi = _m.minimum(_m.add(lo, 1.0), last)
        if method == "linear":
            gamma = _m.subtract(vidx, lo)
        else:
            gamma = _m.where(_m.equal(vidx, lo), 0.0, 0.5)
        a = take_along_axis(s, _m.cast(lo, _I64), axis=-1)
        b = take_along_axis(s, _m.cast(hi, _I64), axis=-1)
        d = _m.subtract(b, a)   # numpy's _lerp: from the nearer end
        res = _m.where(_m.greater_equal(gamma, 0.5), _m.subtract(b, _m.multiply(d, _m.subtract(1.0, gamma))),
                       _m.add(a, _m.multiply(d, gamma)))
    bad = _m.equal(cnt, 0.0) if ignore_nan else _m.any(nan, axis=-1, keepdims=True)
    res = _m.where(bad, _pymath.nan, res)
    res = transpose(res)                                        # (Q, lanes)
    out_lanes = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keepdims else lanes
    return reshape(res, qa.shape + out_lanes)


def quantile(x, q, axis=None, method="linear", keepdims=False):
    """numpy.quantile: the q-th quantiles (q in [0, 1], a number or 1-D) over axes (None: all);
    q's dimension comes first in the result. A NaN in a slice makes its quantiles NaN.
    method: "linear", "lower", "higher", "midpoint" or "nearest". Float32 result."""
    return _quantile("quantile", x, q, axis, method, keepdims, False, 1)


def percentile(x, q, axis=None, method="linear", keepdims=False):
    """numpy.percentile: quantile with q in [0, 100]."""
    return _quantile("percentile", x, q, axis, method, keepdims, False, 100)


def median(x, axis=None, keepdims=False):
    """numpy.median: the 0.5 quantile over axes (None: all); float32."""
    return _quantile("median", x, 0.5, axis, "linear", keepdims, False, 1)


def nanquantile(x, q, axis=None, method="linear", keepdims=False):
    """numpy.nanquantile: quantile ignoring NaNs (NaN where a slice is all NaN)."""
    return _quantile("nanquantile", x, q, axis, method, keepdims, True, 1)


def nanpercentile(x, q, axis=None, method="linear", keepdims=False):
    """numpy.nanpercentile: percentile ignoring NaNs."""
    return _quantile("nanpercentile", x, q, axis, method, keepdims, True, 100)


def nanmedian(x, axis=None, keepdims=False):
    """numpy.nanmedian: median ignoring NaNs."""
    return _quantile("nanmedian", x, 0.5, axis, "linear", keepdims, True, 1)


# ---- searching ----------------------------------------------------------------------------------

def _sortable(t):
    """bool tensors sort as int32 (the sort kernel takes numbers)."""
    return _m.cast(t, _I32) if t.dtype == _BOOL else t


def _search(seq, values, side):
    """numpy.searchsorted for a sorted 1-D `seq` and 1-D `values` of the same dtype (int64):
    one stable sort of seq and values together. With values placed before seq (side "left"),
    ties put each value before equal entries of seq; its position in the merged order less its
    rank among the values is the count of seq entries before it."""
    n, m = seq.shape[0], values.shape[0]
    if m == 0:
        return _m.zeros((0,), _I64, values.device)
    merged = concatenate([values, seq] if side == "left" else [seq, values])
    position = argsort(argsort(merged))             # inverse permutation of the stable order
    position = _axis_slice(position, 0, 0, m) if side == "left" else _axis_slice(position, 0, n, None)
    rank = argsort(argsort(values))
    return _m.subtract(position, rank)


def searchsorted(sorted_sequence, values, side="left"):
    """numpy.searchsorted: indices (int32) where `values` (any shape) would be inserted into the
    sorted 1-D `sorted_sequence` to keep it sorted ("left": before equal entries, "right":
    after). NaN sorts last. An unsorted sequence gives meaningless indices, as in numpy."""
    if side not in ("left", "right"):
        raise ValueError(f"searchsorted: side must be 'left' or 'right', received {side!r}")
    seq, v = _as_tensor(sorted_sequence, "searchsorted"), _as_tensor(values, "searchsorted")
    if seq.ndim != 1:
        raise ValueError(f"searchsorted: sorted_sequence must be 1-D, received shape {seq.shape}; use "
                         "ops.vectorized_map for a batch of sequences")
    dt = dtypes.result_type(seq.dtype, v.dtype)
    seq, v = _sortable(_m.cast(seq, dt)), _sortable(_m.cast(v, dt))
    _m.check_same_device("searchsorted", seq, v)
    return _m.cast(reshape(_search(seq, ravel(v), side), v.shape), _I32)


def digitize(x, bins):
    """numpy.digitize (right=False): for increasing bins, i with bins[i-1] <= x < bins[i]; for
    decreasing bins, i with bins[i-1] > x >= bins[i]. int32."""
    x, b = _as_tensor(x, "digitize"), _as_tensor(bins, "digitize")
    if b.ndim != 1:
        raise ValueError(f"digitize: bins must be 1-D, received shape {b.shape}")
    bn = b.numpy()
    if bn.size > 1:
        d = np.diff(bn.astype(np.float64))
        increasing, decreasing = bool(np.all(d >= 0)), bool(np.all(d <= 0))
        if not (increasing or decreasing):
            raise ValueError(f"digitize: bins must be monotonically increasing or decreasing, received {bn!r:.80}")
    else:
        increasing = True
    if increasing:
        return searchsorted(b, x, side="right")
    return _m.cast(_m.subtract(b.shape[0], _m.cast(searchsorted(flip(b, 0), x, side="right"), _I64)), _I32)


def argpartition(x, kth, axis=-1):
    """numpy.argpartition: indices (int32) that put the element of sorted rank kth (an int or
    a sequence) in its sorted place along `axis`, smaller ones before it and larger ones after.
    lamina returns a full stable argsort, which satisfies every kth at once."""
    x = _as_tensor(x, "argpartition")
    if x.ndim == 0:
        raise ValueError("argpartition: expected a tensor with at least 1 dimension, received a scalar")
    ax = validation.axis(axis, x.ndim, "argpartition", shape=x.shape)
    n = x.shape[ax]
    for k in validation.dims(kth, "argpartition", "kth"):
        if not -n <= k < n:
            raise ValueError(f"argpartition: kth={k} is out of bounds for axis {ax} of size {n} (shape {x.shape})")
    return _m.cast(argsort(_sortable(x), axis=ax), _I32)


def unravel_index(indices, shape):
    """numpy.unravel_index: flat indices into a tensor of `shape` as a tuple of coordinate
    tensors (indices' dtype), one per dimension. Out-of-range indices are a ValueError."""
    idx = _int_tensor(indices, "unravel_index", "indices")
    shape = validation.shape(shape, "unravel_index")
    total = _pymath.prod(shape)
    if _any_true(_m.logical_or(_m.less(idx, 0), _m.greater_equal(idx, total))):
        raise ValueError(f"unravel_index: indices must lie in [0, {total}) for shape {shape}, received values outside "
                         f"that range")
    coords = []
    rest = idx
    for d in reversed(shape):
        coords.append(_m.mod(rest, d))
        rest = _m.floor_divide(rest, d)
    return tuple(reversed(coords))


# ---- grouping: the engine of scatters, segment reductions and bincount --------------------------

def _identity(mode, dt):
    if mode == "sum":
        return 0
    if mode == "prod":
        return 1
    if dt == _BOOL:
        return mode == "min"
    if dt == _F32:
        return -_pymath.inf if mode == "max" else _pymath.inf
    lo, hi = _INT_RANGE[dt]
    return lo if mode == "max" else hi


def _combine(mode, dt):
    if dt == _BOOL:
        return _m.logical_and if mode in ("min", "prod") else _m.logical_or
    return {"sum": _m.add, "prod": _m.multiply, "max": _m.maximum, "min": _m.minimum}[mode]


def _segmented_scan(vals, keys, f):
    """Inclusive scan of f(earlier, later) along axis 0 within runs of equal (sorted) keys:
    log2(n) steps, each combining element i with element i - d when both share a key."""
    n = keys.shape[0]
    d = 1
    while d < n:
        same = _m.equal(_axis_slice(keys, 0, d, None), _axis_slice(keys, 0, None, n - d))
        same = reshape(same, (n - d,) + (1,) * (vals.ndim - 1))
        tail = _axis_slice(vals, 0, d, None)
        tail = _m.where(same, f(_axis_slice(vals, 0, None, n - d), tail), tail)
        vals = concatenate([_axis_slice(vals, 0, None, d), tail], axis=0)
        d *= 2
    return vals


def _group_reduce(keys, values, num_groups, mode, base=None):
    """Reduces rows of values (n, *row) into num_groups rows by int64 keys (n,): mode "sum",
    "prod", "max", "min" (combined with `base` rows, default the identity) or "last" (the last
    row of each key in order, else base). Keys outside [0, num_groups) are dropped.

    Base rows and keys go first, then one stable sort by key: each group is a run that starts
    with its base row, a segmented scan combines the run, and the last row of each run is the
    group's result. Everything is tensors and `take`, so gradients reach values and base."""
    row = values.shape[1:]
    dt = values.dtype
    if base is None:
        base = _m.full((num_groups,) + row, _identity(mode, dt), dt, values.device)
    valid = _m.logical_and(_m.greater_equal(keys, 0), _m.less(keys, num_groups))
    k = _m.where(valid, _m.cast(keys, _I64), num_groups)
    all_keys = concatenate([_arange(num_groups, dtype=_I64), k])
    all_vals = concatenate([base, values], axis=0)
    order = argsort(all_keys)
    sk = take(all_keys, order)
    sv = take(all_vals, order, axis=0)
    if mode != "last":
        sv = _segmented_scan(sv, sk, _combine(mode, dt))
    ends = concatenate([_m.not_equal(_axis_slice(sk, 0, 1, None), _axis_slice(sk, 0, None, -1)),
                        _m.ones((1,), _BOOL, sk.device)])
    (pos,) = nonzero(ends)
    return take(sv, _axis_slice(pos, 0, None, num_groups), axis=0)


def _linear_index(op, idx, shape):
    """(n, k) integer indices into the leading k dims of `shape` -> (n,) int64 row-major
    positions; negative indices wrap, out-of-range ones are an IndexError."""
    k = idx.shape[-1]
    dims = shape[:k]
    bound = convert_to_tensor(np.asarray(dims, np.int64), _I64, idx.device)
    idx = _m.cast(idx, _I64)
    if _any_true(_m.logical_or(_m.less(idx, _m.negative(bound)), _m.greater_equal(idx, bound))):
        raise IndexError(f"{op}: indices out of bounds for the leading {k} dimension(s) {tuple(dims)} of shape "
                         f"{tuple(shape)}")
    idx = _m.mod(idx, _m.maximum(bound, 1))
    strides = np.ones(k, np.int64)
    for j in range(k - 2, -1, -1):
        strides[j] = strides[j + 1] * dims[j + 1]
    st = convert_to_tensor(strides, _I64, idx.device)
    return _m.sum(_m.multiply(idx, st), axis=-1)


def _scatter_parts(op, indices, values, shape, dt=None):
    """Checked (positions (n,), rows (n, *shape[k:]), k) for indices (..., k)."""
    idx = _int_tensor(indices, op, "indices")
    if idx.ndim == 0:
        raise ValueError(f"{op}: indices must have at least 1 dimension (..., k), received a scalar")
    k = idx.shape[-1]
    if k > len(shape):
        raise ValueError(f"{op}: indices of shape {idx.shape} index {k} dimensions, but the target shape "
                         f"{tuple(shape)} has only {len(shape)}")
    lead = idx.shape[:-1]
    want = lead + tuple(shape[k:])
    if not isinstance(values, Tensor) and dt is not None:
        a = _as_tensor(values, op).numpy() if isinstance(values, (list, tuple)) else np.asarray(values)
        if a.dtype.kind not in "biuf" or not np.can_cast(a.dtype, dtypes.to_numpy_dtype(dt), "same_kind"):
            raise TypeError(f"{op}: updates of dtype {a.dtype} cannot be written into a {dt} tensor; cast them first")
        values = convert_to_tensor(a, dt, idx.device)
    v = _as_tensor(values, op)
    if dt is not None and v.dtype != dt:
        raise TypeError(f"{op}: updates have dtype {v.dtype} (shape {v.shape}) but inputs have {dt}; cast them first "
                        f"with ops.cast(updates, '{dt}')")
    if v.shape != want:
        try:
            v = _m.broadcast_to(v, want)
        except ValueError:
            raise ValueError(f"{op}: expected values of shape {want} (indices shape {idx.shape} without its last "
                             f"dimension, then the target shape {tuple(shape)} after the {k} indexed dimension(s)), "
                             f"received shape {v.shape}") from None
    n = _pymath.prod(lead)
    pos = _linear_index(op, reshape(idx, (n, k)), tuple(shape))
    return pos, reshape(v, (n,) + tuple(shape[k:])), k


def scatter(indices, values, shape):
    """keras.ops.scatter: zeros of `shape` with `values` added at `indices` (..., k) (indices
    into the first k dimensions; repeated indices add up). Differentiable in values."""
    shape = validation.shape(shape, "scatter")
    v = _as_tensor(values, "scatter")
    pos, rows, k = _scatter_parts("scatter", indices, v, shape)
    out = _group_reduce(pos, rows, _pymath.prod(shape[:k]), "sum")
    return reshape(out, shape)


def scatter_update(inputs, indices, updates, reduction=None):
    """keras.ops.scatter_update: a copy of `inputs` with `updates` written at `indices` (..., k)
    into its first k dimensions. reduction=None replaces (the last of repeated indices wins);
    "add", "max", "min" and "mul" combine the updates with the existing values."""
    x = _as_tensor(inputs, "scatter_update")
    if reduction is not None:
        if not isinstance(reduction, str) or reduction.lower() not in ("add", "max", "min", "mul"):
            raise ValueError(f"scatter_update: reduction must be None, 'add', 'max', 'min' or 'mul', received "
                             f"{reduction!r}")
        reduction = reduction.lower()
    pos, rows, k = _scatter_parts("scatter_update", indices, updates, x.shape, x.dtype)
    _m.check_same_device("scatter_update", x, rows)
    groups = _pymath.prod(x.shape[:k])
    mode = {None: "last", "add": "sum", "max": "max", "min": "min", "mul": "prod"}[reduction]
    out = _group_reduce(pos, rows, groups, mode, base=reshape(x, (groups,) + x.shape[k:]))
    return reshape(out, x.shape)


def _segment(op, mode, data, segment_ids, num_segments, sorted):
    x = _as_tensor(data, op)
    ids = _int_tensor(segment_ids, op, "segment_ids")
    _bool_arg(sorted, op, "sorted")
    if ids.shape != x.shape[:ids.ndim] or ids.ndim == 0:
        raise ValueError(f"{op}: segment_ids of shape {ids.shape} must match the leading dimensions of data of shape "
                         f"{x.shape} (one id per slice, at least 1-D)")
    _m.check_same_device(op, x, ids)
    n, lead = ids.size, ids.ndim
    ids = reshape(ids, (n,))
    if sorted and n > 1 and _any_true(_m.less(_axis_slice(ids, 0, 1, None), _axis_slice(ids, 0, None, -1))):
        raise ValueError(f"{op}: sorted=True but segment_ids are not sorted; pass sorted=False")
    if num_segments is None:
        num_segments = int(_m.max(ids).item()) + 1 if n else 0
        num_segments = builtins.max(num_segments, 0)
    else:
        num_segments = _int(num_segments, op, "num_segments", 0)
    rows = reshape(x, (n,) + x.shape[lead:])
    return _group_reduce(ids, rows, num_segments, mode)


_SEGMENT_DOC = """Keras's segment_{0}: the {1} of the slices data[i] over each segment id in
    [0, num_segments) -> (num_segments, *data.shape[segment_ids.ndim:]). Ids outside that range
    are dropped; an empty segment gives {2}. num_segments=None: the largest id + 1. sorted=True
    promises sorted ids (checked: unsorted ids are a ValueError); the result is the same."""


def segment_sum(data, segment_ids, num_segments=None, sorted=False):
    return _segment("segment_sum", "sum", data, segment_ids, num_segments, sorted)


def segment_max(data, segment_ids, num_segments=None, sorted=False):
    return _segment("segment_max", "max", data, segment_ids, num_segments, sorted)


def segment_min(data, segment_ids, num_segments=None, sorted=False):
    return _segment("segment_min", "min", data, segment_ids, num_segments, sorted)


def segment_prod(data, segment_ids, num_segments=None, sorted=False):
    return _segment("segment_prod", "prod", data, segment_ids, num_segments, sorted)


segment_sum.__doc__ = _SEGMENT_DOC.format("sum", "sum", "0")
segment_max.__doc__ = _SEGMENT_DOC.format("max", "maximum", "-inf (the lowest integer for integer data)")
segment_min.__doc__ = _SEGMENT_DOC.format("min", "minimum", "+inf (the largest integer for integer data)")
segment_prod.__doc__ = _SEGMENT_DOC.format("prod", "product", "1")


# ---- counting -----------------------------------------------------------------------------------

def bincount(x, weights=None, minlength=0, sparse=False):
    """numpy.bincount of non-negative integers x (1-D, or 2-D counted row by row): counts (int32)
    or sums of `weights`, of length max(max(x) + 1, minlength)."""
    if sparse:
        raise ValueError("bincount: sparse=True is not supported (lamina has no sparse tensors); use sparse=False")
    x = _int_tensor(x, "bincount", "x")
    if x.ndim not in (1, 2):
        raise ValueError(f"bincount: x must be 1-D or 2-D (a batch of rows), received shape {x.shape}")
    minlength = _int(minlength, "bincount", "minlength", 0)
    if x.size and _any_true(_m.less(x, 0)):
        raise ValueError("bincount: x must hold non-negative integers, received negative values")
    length = builtins.max(int(_m.max(x).item()) + 1 if x.size else 0, minlength)
    if weights is None:
        w = _m.ones(x.shape, _I32, x.device)
    else:
        w = _as_tensor(weights, "bincount")
        if w.shape != x.shape:
            raise ValueError(f"bincount: weights of shape {w.shape} must have the shape of x, {x.shape}")
        _m.check_same_device("bincount", x, w)
        if w.dtype == _BOOL:
            w = _m.cast(w, _I32)
    keys = _m.cast(x, _I64)
    rows = x.shape[0] if x.ndim == 2 else 1
    if x.ndim == 2:
        keys = _m.add(keys, reshape(_m.multiply(_arange(rows), length), (rows, 1)))
    out = _group_reduce(ravel(keys), ravel(w), rows * length, "sum")
    return reshape(out, (rows, length)) if x.ndim == 2 else out


def histogram(x, bins=10, range=None):
    """numpy.histogram of a 1-D x with `bins` equal-width bins over `range` (default: x's min
    and max): (counts (int32), edges (float32, bins + 1)). The last bin includes its right edge;
    values outside the range (and NaN) are not counted."""
    x = _float(_as_tensor(x, "histogram"))
    if x.ndim != 1:
        raise ValueError(f"histogram: x must be 1-D, received shape {x.shape}")
    bins = _int(bins, "histogram", "bins")
    if bins < 1:
        raise ValueError(f"histogram: bins must be a positive integer, received {bins}")
    if range is not None:
        if not isinstance(range, (tuple, list)) or len(range) != 2:
            raise ValueError(f"histogram: range must be a (lower, upper) pair, received {range!r}")
        lo, hi = (float(_host_scalar(v, "histogram", "range")) for v in range)
        if hi < lo:
            raise ValueError(f"histogram: range must have lower <= upper, received {range!r}")
    elif x.size:
        lo, hi = float(_m.min(x).item()), float(_m.max(x).item())
    else:
        lo, hi = 0.0, 1.0
    if not (_pymath.isfinite(lo) and _pymath.isfinite(hi)):
        raise ValueError(f"histogram: the range [{lo}, {hi}] is not finite; pass a finite range= or remove NaN / inf")
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = linspace(lo, hi, bins + 1)
    keep = _m.logical_and(_m.greater_equal(x, lo), _m.less_equal(x, hi))
    # numpy's binning: scaled position, then corrected against the edges it computed
    f = _m.multiply(_m.subtract(_m.where(keep, x, lo), lo), bins / (hi - lo))
    i = _m.minimum(_m.cast(_m.floor(f), _I64), bins - 1)
    i = _m.where(_m.less(x, take(edges, i)), _m.subtract(i, 1), i)
    up = _m.logical_and(_m.greater_equal(x, take(edges, _m.minimum(_m.add(i, 1), bins))), _m.not_equal(i, bins - 1))
    i = _m.where(up, _m.add(i, 1), i)
    counts = _group_reduce(_m.where(keep, i, -1), _m.ones(x.shape, _I32, x.device), bins, "sum")
    return counts, edges


def unique(x, sorted=True, return_index=False, return_inverse=False, return_counts=False, axis=None, size=None,
           fill_value=None):
    """numpy.unique (NaNs are all distinct, as Keras asks): the sorted distinct values of the
    flattened x, or the distinct slices along `axis`, with optionally the index of each one's
    first occurrence, the inverse (indices into the result that rebuild x; x's shape for
    axis=None) and the counts (int64 indices). sorted=False orders them by first occurrence.
    size pads (with fill_value, default 0; counts with 0, indices with 0) or truncates to a
    fixed length. Not differentiable: the values are a selection of x and carry no gradient."""
    op = "unique"
    for name, v in (("sorted", sorted), ("return_index", return_index), ("return_inverse", return_inverse),
                    ("return_counts", return_counts)):
        _bool_arg(v, op, name)
    x = _as_tensor(x, op)
    x = Tensor(x._buf, x.shape, x.dtype, x.device)   # no gradient (see the docstring)
    if axis is None:
        flat, ax = ravel(x), None
        rows = reshape(flat, (flat.shape[0], 1))
    else:
        if x.ndim == 0:
            raise ValueError(f"unique: axis={axis} given for a zero-dimensional tensor; use axis=None")
        ax = validation.axis(axis, x.ndim, op, shape=x.shape)
        moved = moveaxis(x, ax, 0)
        rows = reshape(moved, (moved.shape[0], _pymath.prod(moved.shape[1:])))
    n = rows.shape[0]
    srt = _sortable(rows)
    order = _arange(n, dtype=_I64)
    for c in builtins.range(rows.shape[1] - 1, -1, -1):   # lexicographic: stable sorts, last column first
        order = take(order, argsort(take(srt[:, c], order)))
    s = take(rows, order, axis=0)
    if n:
        differs = _m.any(_m.not_equal(_axis_slice(s, 0, 1, None), _axis_slice(s, 0, None, -1)), axis=1)
        first = concatenate([_m.ones((1,), _BOOL, x.device), differs])
    else:
        first = _m.zeros((0,), _BOOL, x.device)
    (starts,) = nonzero(first)
    index = take(order, starts)
    counts = _m.subtract(concatenate([_axis_slice(starts, 0, 1, None), _m.full((1,), n, _I64, x.device)]), starts)
    group = _m.subtract(_m.cumsum(first), 1)              # group of each sorted row
    if not sorted:                                       # groups in order of first occurrence
        by_first = argsort(index)
        index, counts = take(index, by_first), take(counts, by_first)
        starts = take(starts, by_first)
        group = take(argsort(by_first), group)
    values = take(s, starts, axis=0)
    inverse = take(group, argsort(order))
    if ax is None:
        values = reshape(values, (values.shape[0],))
        inverse = reshape(inverse, x.shape)
    else:
        values = moveaxis(reshape(values, (values.shape[0],) + moveaxis(x, ax, 0).shape[1:]), 0, ax)
    if size is not None:
        size = _int(size, op, "size", 0)
        values, index, counts = _fix_size(values, index, counts, size, 0 if ax is None else ax, fill_value)
    out = [values]
    if return_index:
        out.append(index)
    if return_inverse:
        out.append(inverse)
    if return_counts:
        out.append(counts)
    return out[0] if len(out) == 1 else tuple(out)


def _fix_size(values, index, counts, size, ax, fill_value):
    k = values.shape[ax]
    if k >= size:
        return _axis_slice(values, ax, 0, size), _axis_slice(index, 0, 0, size), _axis_slice(counts, 0, 0, size)
    widths = [(0, 0)] * values.ndim
    widths[ax] = (0, size - k)
    fill = 0 if fill_value is None else _host_scalar(fill_value, "unique", "fill_value")
    return (pad(values, widths, constant_values=fill), pad(index, [(0, size - k)]), pad(counts, [(0, size - k)]))


# ---- constructors and dtypes --------------------------------------------------------------------

def geomspace(start, stop, num=50, endpoint=True, dtype=None, axis=0):
    """numpy.geomspace for scalar start and stop (non-zero, of one sign): `num` values evenly
    spaced on a log scale, with start and stop exact."""
    start = _host_scalar(start, "geomspace", "start")
    stop = _host_scalar(stop, "geomspace", "stop")
    if start == 0 or stop == 0:
        raise ValueError(f"geomspace: a geometric sequence cannot include zero, received start={start}, stop={stop}")
    if (start < 0) != (stop < 0):
        raise ValueError(f"geomspace: start={start} and stop={stop} have different signs; the sequence would be "
                         "complex, which lamina does not support")
    num = _int(num, "geomspace", "num", 0)
    sign = -1.0 if start < 0 else 1.0
    y = logspace(_pymath.log10(builtins.abs(start)), _pymath.log10(builtins.abs(stop)), num, endpoint, 10.0,
                 None, axis)
    if num:
        ends = [float(builtins.abs(start))] + ([float(builtins.abs(stop))] if endpoint and num > 1 else [])
        mid = _axis_slice(y, 0, 1, num - 1 if endpoint and num > 1 else None)
        parts = [_m.full((1,), ends[0], _F32, y.device), mid] + ([_m.full((1,), ends[1], _F32, y.device)]
                                                                  if len(ends) > 1 else [])
        y = concatenate(parts)
    if sign < 0:
        y = _m.negative(y)
    return _m.cast(y, dtypes.standardize(dtype, "geomspace")) if dtype is not None else y


def logspace(start, stop, num=50, endpoint=True, base=10, dtype=None, axis=0):
    """numpy.logspace for scalar start and stop: base ** linspace(start, stop, num)."""
    base = _host_scalar(base, "logspace", "base")
    start, stop = _host_scalar(start, "logspace", "start"), _host_scalar(stop, "logspace", "stop")
    with _named("logspace", "linspace"):
        y = _m.power(float(base), linspace(start, stop, num, endpoint=endpoint, axis=axis))
    return _m.cast(y, dtypes.standardize(dtype, "logspace")) if dtype is not None else y


def empty(shape, dtype=None):
    """A new tensor of `shape` (float32 by default). lamina fills it with zeros rather than
    leaving memory uninitialised."""
    return _m._filled(shape, 0, dtypes.standardize(dtype, "empty"), None, "empty")


def empty_like(x, dtype=None):
    """A new tensor of x's shape (and dtype, unless given), filled with zeros (see `empty`)."""
    x = _as_tensor(x, "empty_like")
    return _m.zeros(x.shape, dtypes.standardize(dtype, "empty_like") if dtype is not None else x.dtype, x.device)


def array(x, dtype=None):
    """A tensor from array-like data (keras.ops.array; convert_to_tensor)."""
    if dtype is not None:
        dtypes.standardize(dtype, "array")
    try:
        return convert_to_tensor(x, dtype)
    except TypeError as e:
        raise TypeError(f"array: {e}") from e
    except ValueError:   # ragged nested lists
        raise ValueError(f"array: cannot make a tensor of {type(x).__name__} {x!r:.60}: its nested sequences have "
                         "different lengths; give every row the same length") from None


def view(x, dtype=None):
    """keras.ops.view: x's data under another dtype. Only the identity view (dtype None or x's
    own dtype) is supported: reinterpreting the bits of one dtype as another needs a kernel
    lamina does not have (use ops.cast to convert values)."""
    x = _as_tensor(x, "view")
    if dtype is None:
        return x
    if isinstance(dtype, Tensor) or not isinstance(dtype, (str, type, np.dtype)):
        raise TypeError(f"view: dtype must be a dtype name such as 'int32', received {type(dtype).__name__} "
                        f"{dtype!r:.60}")
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = dtypes.standardize(dtype, "view")
    if name == x.dtype:
        return x
    raise NotImplementedError(f"view: reinterpreting a {x.dtype} tensor (shape {x.shape}) as {name} is not supported: "
                              f"lamina has no bit-cast kernel. Use ops.cast(x, '{name}') to convert the values instead")


_NARROW = {"int8": (-128, 127), "int16": (-2 ** 15, 2 ** 15 - 1), "uint8": (0, 255), "uint16": (0, 2 ** 16 - 1),
           "uint32": (0, 2 ** 32 - 1), "int32": _INT_RANGE[_I32], "int64": _INT_RANGE[_I64], "bool": (0, 1)}


def saturate_cast(x, dtype):
    """keras.ops.saturate_cast: a cast that clips to the target's range first (e.g. to 'uint8':
    values below 0 become 0, above 255 become 255; float -> int saturates at the integer's
    limits instead of overflowing). NaN becomes 0 for integer targets. Narrow integer targets
    (int8, uint8, ...) are held in int32 / int64 with their own range."""
    x = _as_tensor(x, "saturate_cast")
    if isinstance(dtype, Tensor) or not isinstance(dtype, (str, type, np.dtype)):
        raise TypeError(f"saturate_cast: dtype must be a dtype name such as 'int32', received {type(dtype).__name__} "
                        f"{dtype!r:.60}")
    try:
        name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    except TypeError:
        name = str(dtype)
    target = dtypes.standardize(dtype, "saturate_cast")
    if target == dtypes.BFLOAT16 and x.dtype == _F32:  # float32 beyond bfloat16's largest finite value
        top = 3.3895313892515355e38  # would round to infinity: clipped to it
        return _m.cast(_m.clip(x, -top, top), target)
    if target in dtypes.FLOATS or x.dtype == _BOOL:
        return _m.cast(x, target)
    if x.dtype == dtypes.BFLOAT16:
        x = _m.cast(x, _F32)  # exact: then as float32
    lo, hi = _NARROW.get(name, _NARROW[target])
    if x.dtype == _F32:
        # float32 cannot hold every integer limit: clip to the nearest float inside the range, and
        # set values beyond it to the exact limit after the cast
        flo = float(np.float32(lo)) if float(np.float32(lo)) >= lo else float(np.nextafter(np.float32(lo), 0))
        fhi = float(np.float32(hi)) if float(np.float32(hi)) <= hi else float(np.nextafter(np.float32(hi), 0))
        y = _m.cast(_m.clip(_m.where(_m.isnan(x), 0.0, x), flo, fhi), target)
        y = _m.where(_m.greater(x, fhi), _m.full((), hi, target, x.device), y)
        return _m.where(_m.less(x, flo), _m.full((), lo, target, x.device), y)
    xlo, xhi = _INT_RANGE[x.dtype]
    y = _m.clip(x, builtins.max(lo, xlo), builtins.min(hi, xhi))
    return _m.cast(y, target)


def select(condlist, choicelist, default=0):
    """numpy.select: choicelist[i] where condlist[i] is the first condition to hold, else
    `default` (all broadcast together)."""
    if not isinstance(condlist, (list, tuple)) or not isinstance(choicelist, (list, tuple)):
        raise TypeError(f"select: condlist and choicelist must be lists, received {type(condlist).__name__} and "
                        f"{type(choicelist).__name__}")
    if len(condlist) != len(choicelist):
        raise ValueError(f"select: condlist and choicelist must have the same length, received {len(condlist)} "
                         f"conditions and {len(choicelist)} choices")
    if not condlist:
        raise ValueError("select: condlist must not be empty")
    conds = [_as_tensor(c, "select") for c in condlist]
    for i, c in enumerate(conds):
        if c.dtype != _BOOL:
            raise TypeError(f"select: condlist[{i}] must be a bool tensor, received {c.dtype} with shape {c.shape}")
    choices = [_as_tensor(c, "select") for c in choicelist]
    dt = functools.reduce(dtypes.result_type, [c.dtype for c in choices])
    choices = [_m.cast(c, dt) for c in choices]
    d = _as_tensor(default, "select") if isinstance(default, Tensor) else default
    if isinstance(d, Tensor):
        d = _m.cast(d, dtypes.result_type(dt, d.dtype))
        choices = [_m.cast(c, d.dtype) for c in choices]
    out = d
    for c, v in builtins.zip(reversed(conds), reversed(choices)):
        out = _m.where(c, v, out)
    return out


# ---- window functions ---------------------------------------------------------------------------

def _window_length(x, op):
    return _int(x, op, "x")


def _cosine_window(op, M, coeffs):
    M = _window_length(M, op)
    if M < 1:
        return _m.zeros((0,), _F32)
    if M == 1:
        return _m.ones((1,), _F32)
    n = _m.multiply(_arange(1 - M, M, 2, dtype=_F32), _pymath.pi / (M - 1))
    out = _m.full((M,), coeffs[0], _F32)
    for k, c in enumerate(coeffs[1:], start=1):
        out = _m.add(out, _m.multiply(_m.cos(_m.multiply(n, float(k))), c))
    return out


def bartlett(x):
    """numpy.bartlett: the triangular window of length x (float32)."""
    M = _window_length(x, "bartlett")
    if M < 1:
        return _m.zeros((0,), _F32)
    if M == 1:
        return _m.ones((1,), _F32)
    n = _arange(1 - M, M, 2, dtype=_F32)
    return _m.subtract(1.0, _m.divide(_m.abs(n), float(M - 1)))


def blackman(x):
    """numpy.blackman: 0.42 - 0.5 cos(2 pi n / (M-1)) + 0.08 cos(4 pi n / (M-1)) (float32)."""
    return _cosine_window("blackman", x, (0.42, 0.5, 0.08))


def hamming(x):
    """numpy.hamming: 0.54 - 0.46 cos(2 pi n / (M-1)) (float32)."""
    return _cosine_window("hamming", x, (0.54, 0.46))


def hanning(x):
    """numpy.hanning: 0.5 - 0.5 cos(2 pi n / (M-1)) (float32)."""
    return _cosine_window("hanning", x, (0.5, 0.5))


def _i0_series(t, top):
    """The modified Bessel function I0 by its power series sum_k ((t/2)^k / k!)^2, for
    |t| <= top: terms shrink at least fourfold past k = top, so top + 20 terms reach float32."""
    q = _m.square(_m.multiply(t, 0.5))
    term = _m.ones_like(t)
    total = term
    for k in range(1, int(_pymath.ceil(top)) + 21):
        term = _m.divide(_m.multiply(term, q), float(k * k))
        total = _m.add(total, term)
    return total


def kaiser(x, beta):
    """numpy.kaiser: I0(beta sqrt(1 - (2n/(M-1) - 1)^2)) / I0(beta), length x (float32). I0 is
    summed from its power series; |beta| above 80 would overflow float32 and is a ValueError."""
    M = _window_length(x, "kaiser")
    beta = float(_host_scalar(beta, "kaiser", "beta"))
    if not builtins.abs(beta) <= 80:
        raise ValueError(f"kaiser: |beta| must be at most 80 (I0(beta) overflows float32 beyond), received beta={beta}")
    if M < 1:
        return _m.zeros((0,), _F32)
    if M == 1:
        return _m.ones((1,), _F32)
    alpha = (M - 1) / 2.0
    r = _m.divide(_m.subtract(_arange(0, M, dtype=_F32), alpha), alpha)
    arg = _m.multiply(_m.sqrt(_m.maximum(_m.subtract(1.0, _m.square(r)), 0.0)), beta)
    top = builtins.abs(beta)
    return _m.divide(_i0_series(arg, top), _i0_series(_m.full((1,), beta, _F32), top))


# ---- sequences and axes -------------------------------------------------------------------------

def extract_sequences(x, sequence_length, sequence_stride):
    """keras.ops.extract_sequences: frames of `sequence_length` taken every `sequence_stride`
    along the last axis: (..., n) -> (..., num_frames, sequence_length)."""
    x = _as_tensor(x, "extract_sequences")
    if x.ndim == 0:
        raise ValueError("extract_sequences: x must have at least 1 dimension, received a scalar")
    L = _int(sequence_length, "extract_sequences", "sequence_length", 1)
    s = _int(sequence_stride, "extract_sequences", "sequence_stride", 1)
    n = x.shape[-1]
    frames = (n - L) // s + 1 if n >= L else 0
    idx = _m.add(reshape(_m.multiply(_arange(frames), s), (-1, 1)), reshape(_arange(L), (1, -1)))
    return take(x, idx, axis=x.ndim - 1)


_TOKEN = re.compile(r"\.\.\.|\(|\)|[A-Za-z_][A-Za-z0-9_]*|\d+|\S")


def _parse_side(text, pattern):
    """A side of an einops pattern -> list of groups: a bare axis name or '...' is a list of one,
    a parenthesised group a tuple of names (and '...'), a unit axis ("1" or "()") an empty list."""
    groups, cur = [], None
    for tok in _TOKEN.findall(text):
        if tok == "(":
            if cur is not None:
                raise ValueError(f"rearrange: nested parentheses in pattern {pattern!r}")
            cur = []
        elif tok == ")":
            if cur is None:
                raise ValueError(f"rearrange: unbalanced ')' in pattern {pattern!r}")
            groups.append(tuple(cur))
            cur = None
        elif tok == "1" and cur is None:
            groups.append([])
        elif tok == "..." or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tok):
            (cur if cur is not None else groups).append(tok if cur is not None else [tok])
        else:
            raise ValueError(f"rearrange: unexpected {tok!r} in pattern {pattern!r}; axes are names (letters, digits, "
                             "'_'), groups '(a b)', '...' or '1'")
    if cur is not None:
        raise ValueError(f"rearrange: unbalanced '(' in pattern {pattern!r}")
    names = [a for g in groups for a in g]
    dup = {a for a in names if names.count(a) > 1}
    if dup:
        raise ValueError(f"rearrange: axis {sorted(dup)[0]!r} appears twice on one side of pattern {pattern!r}")
    return groups


def rearrange(tensor, pattern, **axes_lengths):
    """keras.ops.rearrange (einops): reorders, merges and splits axes by a pattern such as
    "b h w c -> b c h w", "b (h h1) (w w1) c -> b h w (c h1 w1)" (with h1=2, w1=2) or
    "b ... c -> b c ...". Axis names must match on both sides; '1' or '()' is a unit axis.
    A reshape, a transpose and a reshape: differentiable."""
    x = _as_tensor(tensor, "rearrange")
    if not isinstance(pattern, str) or pattern.count("->") != 1:
        raise ValueError(f"rearrange: pattern must be a string 'input axes -> output axes', received {pattern!r}")
    left, right = pattern.split("->")
    lg, rg = _parse_side(left, pattern), _parse_side(right, pattern)
    for name, v in axes_lengths.items():
        _int(v, "rearrange", name, 1)
    # expand the ellipsis into as many anonymous axes as it covers
    n_ell = [builtins.sum(a == "..." for g in side for a in g) for side in (lg, rg)]
    if n_ell[0] > 1 or n_ell[1] > 1 or n_ell[0] != n_ell[1]:
        raise ValueError(f"rearrange: '...' must appear once on both sides of pattern {pattern!r}, or on neither")
    fixed = len(lg) - n_ell[0]
    if (n_ell[0] and x.ndim < fixed) or (not n_ell[0] and x.ndim != len(lg)):
        raise ValueError(f"rearrange: pattern {pattern!r} describes {len(lg)}{'+' if n_ell[0] else ''} dimensions, "
                         f"but the tensor has shape {x.shape}")
    ell = [f"...{i}" for i in range(x.ndim - fixed)] if n_ell[0] else []

    def expand(groups, in_input):
        out = []
        for g in groups:
            if in_input and "..." in g and g != ["..."]:
                raise ValueError(f"rearrange: '...' cannot be inside a group on the input side of {pattern!r}")
            if g == ["..."]:                 # a bare '...': one group per dimension it covers
                out.extend([e] for e in ell)
            else:
                out.append([e for a in g for e in (ell if a == "..." else [a])])
        return out
    lg, rg = expand(lg, True), expand(rg, False)
    lnames = [a for g in lg for a in g]
    rnames = [a for g in rg for a in g]
    if set(lnames) != set(rnames):
        only = sorted((set(lnames) ^ set(rnames)) - set(ell))
        raise ValueError(f"rearrange: axes {only} appear on only one side of pattern {pattern!r}; every axis must be "
                         "on both sides")
    unused = sorted(set(axes_lengths) - set(lnames))
    if unused:
        raise ValueError(f"rearrange: axes_lengths names {unused} that are not in the input side of {pattern!r}")
    sizes = {}
    for g, d in zip(lg, x.shape):
        known = [a for a in g if a in axes_lengths]
        unknown = [a for a in g if a not in axes_lengths]
        if len(unknown) > 1:
            raise ValueError(f"rearrange: cannot infer the lengths of {unknown} in group ({' '.join(g)}) of pattern "
                             f"{pattern!r}; give all but one of them as keyword arguments, e.g. {unknown[0]}=2")
        prod = _pymath.prod(axes_lengths[a] for a in known)
        if unknown:
            if d % prod:
                raise ValueError(f"rearrange: dimension {d} of shape {x.shape} is not divisible by {prod}, the "
                                 f"product of the given lengths in group ({' '.join(g)})")
            sizes[unknown[0]] = d // prod
        elif prod != d:
            raise ValueError(f"rearrange: group ({' '.join(g) or '1'}) has length {prod} but the tensor's dimension is "
                             f"{d} (shape {x.shape})")
        for a in known:
            sizes[a] = axes_lengths[a]
    y = reshape(x, tuple(sizes[a] for a in lnames))
    y = transpose(y, [lnames.index(a) for a in rnames])
    return reshape(y, tuple(_pymath.prod(sizes[a] for a in g) for g in rg))


# errors raised by the ops these are built on name the op that was called
validation.name_errors(globals(), __all__)
