"""Adaptive pooling, as `keras.ops.adaptive_average_pool` / `adaptive_max_pool`: inputs of rank 3,
4 or 5 ((batch, *spatial, channels), or channels_first) pooled to a fixed spatial `output_size`
whatever their own size.

Output position i of a spatial axis of length L pooled to O pools the window
[floor(i * L / O), ceil((i + 1) * L / O)) (PyTorch's windows; Keras's "two-pool gather" computes
the same ones). The pooling is separable: one axis after the other, each a `take` of every
window's indices (windows shorter than the longest repeat their last index, which a max ignores
and an average masks out), reshaped to (..., O, k, ...) and reduced over k. Index arrays are
functions of the shapes only: no per-element Python loops; gradients flow through take / max /
sum."""
import numpy as np

from . import dtypes, validation
from . import math as _m
from .manipulation import reshape, take
from .settings import standardize_data_format
from .math import _as_tensor

__all__ = ["adaptive_average_pool", "adaptive_max_pool"]


_data_format = standardize_data_format  # (data_format, op): None -> image_data_format()


def output_size_tuple(value, n, who):
    """`output_size` as n positive ints: an int (the same for every spatial axis) or n of them."""
    def ok(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    if ok(value):
        sizes = (int(value),) * n
    elif isinstance(value, (list, tuple)) and len(value) == n and all(ok(v) for v in value):
        sizes = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{who}: `output_size` must be an integer or a tuple of {n} integers (one per spatial "
                        f"dimension), received {value!r} of type {type(value).__name__}")
    if min(sizes) < 1:
        raise ValueError(f"{who}: `output_size` must be positive in every dimension, received output_size={value!r}")
    return sizes


def windows(length, out):
    """(starts, ends) of the `out` windows that pool an axis of `length` (numpy int64 arrays)."""
    i = np.arange(out, dtype=np.int64)
    return (i * length) // out, -((-(i + 1) * length) // out)


def _pool_axis(x, axis, out, mode):
    length = x.shape[axis]
    before, after = x.shape[:axis], x.shape[axis + 1:]
    if length == out:
        return x
    if length % out == 0:        # equal windows side by side: a reshape
        g = reshape(x, before + (out, length // out) + after)
        return _m.max(g, axis=axis + 1) if mode == "max" else _m.mean(g, axis=axis + 1)
    starts, ends = windows(length, out)
    k = int((ends - starts).max())
    idx = starts[:, None] + np.arange(k)[None, :]
    valid = idx < ends[:, None]
    idx = np.minimum(idx, ends[:, None] - 1)
    g = reshape(take(x, idx.reshape(-1), axis=axis), before + (out, k) + after)
    if mode == "max":
        return _m.max(g, axis=axis + 1)
    if not valid.all():
        g = _m.where(valid.reshape((out, k) + (1,) * len(after)), g, 0.0)
    inv = (1.0 / (ends - starts)).astype(np.float32).reshape((out,) + (1,) * len(after))
    return _m.multiply(_m.sum(g, axis=axis + 1), inv)


def _adaptive_pool(op, mode, inputs, output_size, data_format):
    x = _as_tensor(inputs, op)
    if x.ndim not in (3, 4, 5):
        raise ValueError(f"{op}: expected inputs of rank 3, 4 or 5 ((batch, *spatial, channels) with 1, 2 or 3 "
                         f"spatial dimensions), received shape {x.shape} (rank {x.ndim})")
    fmt = _data_format(data_format, op)
    nsp = x.ndim - 2
    sizes = output_size_tuple(output_size, nsp, op)
    first = 1 if fmt == "channels_last" else 2
    spatial = x.shape[first:first + nsp]
    if 0 in spatial:
        raise ValueError(f"{op}: cannot pool a spatial dimension of size 0 to output_size={sizes} (input shape "
                         f"{x.shape}, {fmt}): every output position needs at least one input element")
    out_shape = list(x.shape)
    out_shape[first:first + nsp] = sizes
    validation.check_alloc(op, tuple(out_shape), dtypes.FLOAT32 if mode == "avg" else x.dtype, x.device)
    if x.dtype == dtypes.BOOL:
        raise TypeError(f"{op}: expected numeric inputs, received a bool tensor of shape {x.shape}")
    if mode == "avg" and not dtypes.is_float(x.dtype):
        x = _m.cast(x, dtypes.FLOAT32)
    for i, o in enumerate(sizes):
        x = _pool_axis(x, first + i, o, mode)
    return x


def adaptive_average_pool(inputs, output_size, data_format=None):
    """Mean over each adaptive window (see the module docstring); integer inputs give float32."""
    return _adaptive_pool("adaptive_average_pool", "avg", inputs, output_size, data_format)


def adaptive_max_pool(inputs, output_size, data_format=None):
    """Max over each adaptive window (see the module docstring)."""
    return _adaptive_pool("adaptive_max_pool", "max", inputs, output_size, data_format)
