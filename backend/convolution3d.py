"""3-D convolution and pooling (channels-last), built from the 2-D kernels; `conv`, `max_pool` and
`average_pool` (convolution.py) send rank-5 inputs here.

conv3d: inputs (N, D, H, W, C), kernel (kd, kh, kw, C, O). The depth axis is folded into the
channels: the input is padded in depth (zeros, "same" by the TF/Keras rule), the kd depth
slices of each output depth od (od * sd + j * dd, j < kd) are gathered with `take` into
(N, OD, kd, H, W, C), moved to (N * OD, H, W, kd * C), and one 2-D convolution with the kernel
read as (kh, kw, kd * C, O) gives (N * OD, OH, OW, O) = (N, OD, OH, OW, O). Every step is a
differentiable op, so the gradients come from them (take's gradient sums the overlapping slices).

Pooling is separable over a box window: pool over (H, W) on (N * D, H, W, C), then over depth on
(N, D, OH * OW, C) with a (pd, 1) window. For max this is the max of maxima; for average with
"same" padding each window divides by its count of unpadded elements, which is the product of
the per-axis counts, so averaging the 2-D averages over depth gives Keras's numbers exactly.
"""
import numpy as np

from .convolution import (_data_format, _float_input, _int_tuple, _move_channels, _out_and_pads, _padding, _pool,
                          conv)
from .manipulation import pad, reshape, take, transpose
from .math import check_same_device

__all__ = ["conv3d", "pool3d"]


def _check_rank5(x, op, what):
    if x.ndim != 5:
        raise ValueError(f"{op}: expected {what} of rank 5 (batch, depth, height, width, channels), received shape "
                         f"{x.shape} (rank {x.ndim})")


def conv3d(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """3-D convolution like `keras.ops.conv` on rank-5 inputs.

    inputs: (batch, depth, height, width, in) (channels_last) or (batch, in, depth, height, width)
    with data_format="channels_first"; kernel: (kd, kh, kw, in, out). strides / dilation_rate: an
    int or one per spatial dimension; padding: "valid" or "same". Returns
    (batch, out_depth, out_height, out_width, out), or (batch, out, out_depth, out_height, out_width)
    for channels_first. No bias.
    """
    op = "conv"
    x = _float_input(inputs, op, "input")
    w = _float_input(kernel, op, "kernel")
    check_same_device(op, x, w)
    fmt = _data_format(data_format, op)
    _check_rank5(x, op, "inputs")
    if w.ndim != 5:
        raise ValueError(f"{op}: a 3-D convolution of inputs with shape {x.shape} needs a kernel of rank 5 "
                         f"(kd, kh, kw, in_channels, out_channels), received kernel shape {w.shape}")
    strides = _int_tuple(strides, 3, "strides", op)
    dilation = _int_tuple(dilation_rate, 3, "dilation_rate", op)
    padding = _padding(padding, op)
    first = fmt == "channels_first"
    channels, spatial = (x.shape[1], x.shape[2:]) if first else (x.shape[-1], x.shape[1:-1])
    if w.shape[-2] != channels:
        raise ValueError(f"{op}: the input has {channels} channels (input shape {x.shape}, {fmt}) but the kernel "
                         f"expects {w.shape[-2]} input channels (kernel shape {w.shape}); the kernel's "
                         f"second-to-last dimension must equal the input's channels")
    if any(d == 0 for d in w.shape[:3]):
        raise ValueError(f"{op}: the kernel window must be at least 1 in every spatial dimension, received "
                         f"kernel shape {w.shape}")
    # every dimension checked against the shape the caller passed, so that errors name it
    geometry = [_out_and_pads(spatial[i], w.shape[i], strides[i], dilation[i], padding, op, x.shape, "kernel")
                for i in range(3)]
    od, (front, back) = geometry[0]
    if first:
        x = _move_channels(x, True)
    n, d, h, wd, c = x.shape
    kd, kh, kw, _, o = w.shape
    xp = pad(x, ((0, 0), (front, back), (0, 0), (0, 0), (0, 0)))
    depth_idx = (np.arange(od)[:, None] * strides[0] + np.arange(kd)[None, :] * dilation[0]).astype(np.int32)
    g = take(xp, depth_idx, axis=1)                                  # (n, od, kd, h, w, c)
    g = reshape(transpose(g, (0, 1, 3, 4, 2, 5)), (n * od, h, wd, kd * c))
    w2 = reshape(transpose(w, (1, 2, 0, 3, 4)), (kh, kw, kd * c, o))
    y = conv(g, w2, strides[1:], padding, "channels_last", dilation[1:])         # (n * od, oh, ow, o)
    y = reshape(y, (n, od) + y.shape[1:3] + (o,))
    return _move_channels(y, False) if first else y


def pool3d(mode, op, inputs, pool_size, strides=None, padding="valid", data_format=None):
    """Max (mode convolution._MAX) or average (convolution._AVG) pooling of rank-5 inputs, like
    `keras.ops.max_pool` / `average_pool`; pool_size / strides: an int or one per spatial dimension
    (strides default to pool_size)."""
    x = _float_input(inputs, op, "input")
    fmt = _data_format(data_format, op)
    _check_rank5(x, op, "inputs")
    window = _int_tuple(pool_size, 3, "pool_size", op)
    strides = window if strides is None else _int_tuple(strides, 3, "strides", op)
    padding = _padding(padding, op)
    first = fmt == "channels_first"
    spatial = x.shape[2:] if first else x.shape[1:-1]
    for i in range(3):
        _out_and_pads(spatial[i], window[i], strides[i], 1, padding, op, x.shape, "pool window")
    if first:
        x = _move_channels(x, True)
    n, d, h, wd, c = x.shape
    y = _pool(mode, op, reshape(x, (n * d, h, wd, c)), window[1:], strides[1:], padding, "channels_last")
    oh, ow = y.shape[1], y.shape[2]
    y = _pool(mode, op, reshape(y, (n, d, oh * ow, c)), (window[0], 1), (strides[0], 1), padding, "channels_last")
    y = reshape(y, (n, y.shape[1], oh, ow, c))
    return _move_channels(y, False) if first else y
