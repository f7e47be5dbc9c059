"""Convolution and pooling ops (channels-last), with gradients.

Keras semantics (`keras.ops.conv`, `max_pool`, `average_pool`): inputs are (batch, width,
channels) for 1-D ops and (batch, height, width, channels) for 2-D ops; conv kernels are
(kw, in, out) and (kh, kw, in, out). Padding "valid" uses only full windows; "same" gives
ceil(size / stride) outputs and pads pad_total = max((out - 1) * stride + (k - 1) * dilation + 1
- size, 0) with pad_total // 2 before (TF/Keras rule). 1-D ops run on the 2-D kernels with
height 1. The kernels (csrc/cpu/conv.cpp, csrc/cpu/depthwise.cpp) do the maths; this module checks
arguments, computes shapes and padding, allocates outputs and records the backward rules.
"""
import numbers

from . import dtypes
from .autodiff import fusion_allowed, needs_grad, record
from .math import _as_tensor, check_same_device
from .settings import standardize_data_format
from .tensor import Tensor, empty

__all__ = ["conv", "conv1d", "conv2d", "depthwise_conv", "separable_conv", "max_pool", "average_pool"]

_MAX, _AVG = 0, 1  # pooling modes of the pool2d kernels


# ---- argument checks ------------------------------------------------------------------------------

def _int_tuple(value, n, name, op):
    """A positive int or a tuple/list of n positive ints -> tuple of n ints."""
    def ok(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1
    if ok(value):
        return (int(value),) * n
    if isinstance(value, (tuple, list)) and len(value) == n and all(ok(v) for v in value):
        return tuple(int(v) for v in value)
    raise ValueError(f"{op}: expected `{name}` to be a positive int or a tuple of {n} positive ints "
                     f"(one per spatial dimension), received {value!r}")


def _padding(padding, op):
    p = padding.lower() if isinstance(padding, str) else padding
    if p not in ("valid", "same"):
        raise ValueError(f"{op}: expected `padding` to be 'valid' or 'same', received {padding!r}")
    return p


_data_format = standardize_data_format  # (data_format, op): None -> image_data_format()


def _float_input(x, op, what):
    x = _as_tensor(x)
    if x.dtype not in dtypes.FLOATS:
        raise TypeError(f"{op}: expected a float32 {what}, received {x.dtype} with shape {x.shape}; "
                        f"cast it with ops.cast(x, 'float32')")
    return x


def _spatial_rank(x, op, what="inputs"):
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: expected {what} of rank 3 (batch, width, channels) or rank 4 "
                         f"(batch, height, width, channels), received shape {x.shape} (rank {x.ndim})"
                         + (f"; {op} has no 3-D (rank 5) form (conv, max_pool and average_pool have)" if x.ndim == 5
                            else ""))
    return x.ndim - 2


def _out_and_pads(size, k, stride, dilation, padding, op, x_shape, what):
    """Output length and (pad_before, pad_after) of one spatial dimension."""
    eff = (k - 1) * dilation + 1
    if padding == "valid":
        if size < eff:
            extra = f" with dilation {dilation}" if dilation > 1 else ""
            raise ValueError(f"{op}: the {what} of size {k}{extra} spans {eff} elements, more than the input's "
                             f"{size} (input shape {x_shape}) with padding='valid'; use padding='same' or a "
                             f"smaller window")
        return (size - eff) // stride + 1, (0, 0)
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return out, (total // 2, total - total // 2)


def _as_2d(op, x, w, nsp, strides, dilation, padding):
    """The 2-D form of a 1-D or 2-D convolution (1-D runs with height 1): the input and kernel
    views, strides and dilation with the height entry added, output height and width, and the
    pads (top, bottom, left, right)."""
    shape = x.shape  # for error messages
    if nsp == 1:
        x = _view(x, (x.shape[0], 1) + x.shape[1:])
        w = _view(w, (1,) + w.shape)
        strides, dilation = (1,) + strides, (1,) + dilation
    oh, (pt, pb) = _out_and_pads(x.shape[1], w.shape[0], strides[0], dilation[0], padding, op, shape, "kernel")
    ow, (pl, pr) = _out_and_pads(x.shape[2], w.shape[1], strides[1], dilation[1], padding, op, shape, "kernel")
    return x, w, strides, dilation, oh, ow, (pt, pb, pl, pr)


def _view(t, shape):
    return Tensor(t._buf, shape, t.dtype, t.device)


# ---- layout (channels_first support) ----------------------------------------------------------------

def _move_channels(x, to_last):
    """(N, C, *S) -> (N, *S, C) when to_last, else the inverse; differentiable."""
    n = x.shape[0]
    if to_last:
        c, sp = x.shape[1], x.shape[2:]
        r, s, shape = c, _prod(sp), (n,) + sp + (c,)
    else:
        c, sp = x.shape[-1], x.shape[1:-1]
        r, s, shape = _prod(sp), c, (n, c) + sp
    out = empty(shape, x.dtype, x.device)
    x.device.kernels.batch_transpose(x._buf, n, r, s, out._buf)
    if needs_grad(x):
        record(out, (x,), lambda g, need: (_move_channels(g, not to_last),))
    return out


def _prod(shape):
    p = 1
    for d in shape:
        p *= d
    return p


# ---- convolution ------------------------------------------------------------------------------------

def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """N-D convolution (N = 1 or 2; N = 3, rank-5 inputs, runs in convolution3d.py) like `keras.ops.conv`.

    inputs: (batch, width, channels) or (batch, height, width, channels) (channels_last), or
    channels-first with data_format="channels_first". kernel: (kw, in, out) or (kh, kw, in, out).
    strides / dilation_rate: an int or one int per spatial dimension. padding: "valid" or "same".
    Returns (batch, out_width, out) or (batch, out_height, out_width, out). No bias (layers add it).
    """
    op = "conv"
    x = _float_input(inputs, op, "input")
    w = _float_input(kernel, op, "kernel")
    check_same_device(op, x, w)
    if x.dtype != w.dtype:  # bfloat16 with float32: float32, as Keras / JAX promote
        from .math import cast
        x, w = cast(x, dtypes.FLOAT32), cast(w, dtypes.FLOAT32)
    if x.ndim == 5:  # 3-D: built from the 2-D kernel in convolution3d.py
        from .convolution3d import conv3d
        return conv3d(x, w, strides, padding, data_format, dilation_rate)
    fmt = _data_format(data_format, op)
    nsp = _spatial_rank(x, op)
    if w.ndim != nsp + 2:
        names = "(kw, in_channels, out_channels)" if nsp == 1 else "(kh, kw, in_channels, out_channels)"
        raise ValueError(f"{op}: a {nsp}-D convolution of inputs with shape {x.shape} needs a kernel of rank "
                         f"{nsp + 2} {names}, received kernel shape {w.shape}")
    if fmt == "channels_first":
        return _move_channels(conv(_move_channels(x, True), w, strides, padding, "channels_last", dilation_rate),
                              False)
    strides = _int_tuple(strides, nsp, "strides", op)
    dilation = _int_tuple(dilation_rate, nsp, "dilation_rate", op)
    padding = _padding(padding, op)
    if w.shape[-2] != x.shape[-1]:
        raise ValueError(f"{op}: the input has {x.shape[-1]} channels (input shape {x.shape}) but the kernel "
                         f"expects {w.shape[-2]} input channels (kernel shape {w.shape}); the kernel's "
                         f"second-to-last dimension must equal the input's last (channels_last)")
    if any(d == 0 for d in w.shape[:-2]):
        raise ValueError(f"{op}: the kernel window must be at least 1 in every spatial dimension, received "
                         f"kernel shape {w.shape}")
    x4, w4, strides, dilation, oh, ow, pads = _as_2d(op, x, w, nsp, strides, dilation, padding)
    n, o = x4.shape[0], w4.shape[3]
    out4 = (n, oh, ow, o)
    out = empty(out4, x.dtype, x.device)
    kern = x.device.kernels
    kern.conv2d_forward(x4._buf, x4.shape, w4._buf, w4.shape, out._buf, out4, strides, dilation, pads)
    if nsp == 1:
        out = _view(out, (n, ow, o))
    if needs_grad(x, w):
        def backward(g, need):
            dx = empty(x.shape, x.dtype, x.device) if need[0] else None
            dw = empty(w.shape, w.dtype, w.device) if need[1] else None
            kern.conv2d_backward(x4._buf, x4.shape, w4._buf, w4.shape, g._buf, out4,
                                 dx._buf if dx is not None else None, dw._buf if dw is not None else None,
                                 strides, dilation, pads)
            return dx, dw
        record(out, (x, w), backward)
    return out


def conv2d(x, w, strides=1, padding="valid", dilation_rate=1):
    """2-D convolution: x (batch, height, width, in), w (kh, kw, in, out) -> (batch, oh, ow, out)."""
    x = _as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"conv2d: expected inputs of rank 4 (batch, height, width, channels), received shape "
                         f"{x.shape}")
    return conv(x, w, strides, padding, "channels_last", dilation_rate)


def conv1d(x, w, strides=1, padding="valid", dilation_rate=1):
    """1-D convolution: x (batch, width, in), w (kw, in, out) -> (batch, out_width, out)."""
    x = _as_tensor(x)
    if x.ndim != 3:
        raise ValueError(f"conv1d: expected inputs of rank 3 (batch, width, channels), received shape {x.shape}")
    return conv(x, w, strides, padding, "channels_last", dilation_rate)


# ---- depthwise and separable convolution ------------------------------------------------------------

def _depthwise_kernel_check(op, x, w, nsp):
    if w.ndim != nsp + 2:
        names = "(kw, in_channels, depth_multiplier)" if nsp == 1 else "(kh, kw, in_channels, depth_multiplier)"
        raise ValueError(f"{op}: a {nsp}-D depthwise convolution of inputs with shape {x.shape} needs a kernel of "
                         f"rank {nsp + 2} {names}, received kernel shape {w.shape}")
    if w.shape[-2] != x.shape[-1]:
        raise ValueError(f"{op}: the input has {x.shape[-1]} channels (input shape {x.shape}) but the depthwise "
                         f"kernel expects {w.shape[-2]} (kernel shape {w.shape}); the kernel's second-to-last "
                         f"dimension must equal the input's channels")
    if any(d == 0 for d in w.shape[:-2]):
        raise ValueError(f"{op}: the kernel window must be at least 1 in every spatial dimension, received "
                         f"kernel shape {w.shape}")


def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """Depthwise convolution (N = 1 or 2 spatial dimensions) like `keras.ops.depthwise_conv`.

    Each input channel c is convolved with its own depth_multiplier filters kernel[..., c, :];
    output channel c * depth_multiplier + m holds filter m of channel c (the TF/Keras order).
    inputs: (batch, width, channels) or (batch, height, width, channels) (channels_last), or
    channels-first with data_format="channels_first". kernel: (kw, channels, depth_multiplier) or
    (kh, kw, channels, depth_multiplier). Returns (batch, out_width, channels * depth_multiplier)
    or (batch, out_height, out_width, channels * depth_multiplier). No bias.
    """
    op = "depthwise_conv"
    x = _float_input(inputs, op, "input")
    w = _float_input(kernel, op, "kernel")
    check_same_device(op, x, w)
    fmt = _data_format(data_format, op)
    nsp = _spatial_rank(x, op)
    if fmt == "channels_first":
        return _move_channels(depthwise_conv(_move_channels(x, True), w, strides, padding, "channels_last",
                                             dilation_rate),
                              False)
    strides = _int_tuple(strides, nsp, "strides", op)
    dilation = _int_tuple(dilation_rate, nsp, "dilation_rate", op)
    padding = _padding(padding, op)
    _depthwise_kernel_check(op, x, w, nsp)
    x4, w4, strides, dilation, oh, ow, pads = _as_2d(op, x, w, nsp, strides, dilation, padding)
    n, c, dm = x4.shape[0], x4.shape[3], w4.shape[3]
    out4 = (n, oh, ow, c * dm)
    out = empty(out4, x.dtype, x.device)
    kern = x.device.kernels
    kern.depthwise_conv2d_forward(x4._buf, x4.shape, w4._buf, w4.shape, out._buf, out4, strides, dilation, pads)
    if nsp == 1:
        out = _view(out, (n, ow, c * dm))
    if needs_grad(x, w):
        def backward(g, need):
            dx = empty(x.shape, x.dtype, x.device) if need[0] else None
            dw = empty(w.shape, w.dtype, w.device) if need[1] else None
            kern.depthwise_conv2d_backward(x4._buf, x4.shape, w4._buf, w4.shape, g._buf, out4,
                                           dx._buf if dx is not None else None,
                                           dw._buf if dw is not None else None, strides, dilation, pads)
            return dx, dw
        record(out, (x, w), backward)
    return out


def separable_conv(inputs, depthwise_kernel, pointwise_kernel, strides=1, padding="valid", data_format=None,
                   dilation_rate=1):
    """Depthwise convolution followed by a 1x1 convolution, like `keras.ops.separable_conv`.

    depthwise_kernel: (kw, channels, depth_multiplier) or (kh, kw, channels, depth_multiplier);
    pointwise_kernel: (1, channels * depth_multiplier, filters) or
    (1, 1, channels * depth_multiplier, filters). strides, padding and dilation_rate apply to the
    depthwise step. Returns (batch, out_width, filters) or (batch, out_height, out_width, filters).
    """
    op = "separable_conv"
    x = _float_input(inputs, op, "input")
    dw = _float_input(depthwise_kernel, op, "depthwise kernel")
    pw = _float_input(pointwise_kernel, op, "pointwise kernel")
    check_same_device(op, x, dw, pw)
    fmt = _data_format(data_format, op)
    nsp = _spatial_rank(x, op)
    if fmt == "channels_first":
        return _move_channels(separable_conv(_move_channels(x, True), dw, pw, strides, padding, "channels_last",
                                             dilation_rate), False)
    _int_tuple(strides, nsp, "strides", op)
    _int_tuple(dilation_rate, nsp, "dilation_rate", op)
    _padding(padding, op)
    _depthwise_kernel_check(op, x, dw, nsp)
    width = dw.shape[-2] * dw.shape[-1]
    if pw.ndim != nsp + 2 or any(d != 1 for d in pw.shape[:-2]) or pw.shape[-2] != width:
        ones = "(1, " if nsp == 1 else "(1, 1, "
        raise ValueError(f"{op}: expected a pointwise kernel of shape {ones}{width}, filters) (channels * "
                         f"depth_multiplier = {dw.shape[-2]} * {dw.shape[-1]} inputs) for the depthwise kernel of "
                         f"shape {dw.shape}, received pointwise kernel shape {pw.shape}")
    y = depthwise_conv(x, dw, strides, padding, "channels_last", dilation_rate)
    return conv(y, pw, data_format="channels_last")


# ---- pooling ----------------------------------------------------------------------------------------

def _pool(mode, op, inputs, pool_size, strides, padding, data_format):
    x = _float_input(inputs, op, "input")
    if x.ndim == 5:  # 3-D: separable over the 2-D kernel in convolution3d.py
        from .convolution3d import pool3d
        return pool3d(mode, op, x, pool_size, strides, padding, data_format)
    fmt = _data_format(data_format, op)
    nsp = _spatial_rank(x, op)
    if fmt == "channels_first":
        return _move_channels(_pool(mode, op, _move_channels(x, True), pool_size, strides, padding, "channels_last"), False)
    window = _int_tuple(pool_size, nsp, "pool_size", op)
    strides = window if strides is None else _int_tuple(strides, nsp, "strides", op)
    padding = _padding(padding, op)
    if nsp == 1:
        x4 = _view(x, (x.shape[0], 1) + x.shape[1:])
        window, strides = (1,) + window, (1,) + strides
    else:
        x4 = x
    n, h, wd, c = x4.shape
    oh, (pt, pb) = _out_and_pads(h, window[0], strides[0], 1, padding, op, x.shape, "pool window")
    ow, (pl, pr) = _out_and_pads(wd, window[1], strides[1], 1, padding, op, x.shape, "pool window")
    pads = (pt, pb, pl, pr)
    out4 = (n, oh, ow, c)
    out = empty(out4, x.dtype, x.device)
    kern = x.device.kernels
    rec = needs_grad(x)
    idx = empty(out4, dtypes.INT32, x.device) if rec and mode == _MAX else None
    kern.pool2d_forward(mode, x4._buf, x4.shape, out._buf, out4, window, strides, pads,
                        idx._buf if idx is not None else None)
    if nsp == 1:
        out = _view(out, (n, ow, c))
    if rec:
        src = (getattr(x._node.backward, "bias_relu_inputs", None)
               if mode == _MAX and x._node is not None and fusion_allowed() else None)
        if src is not None:
            return _max_pool_of_bias_relu(out, src, x4.shape, out4, idx, window, strides, pads)

        def backward(g, need):
            dx = empty(x.shape, x.dtype, x.device)
            kern.pool2d_backward(mode, x4.shape, g._buf, out4, dx._buf, window, strides, pads,
                                 idx._buf if idx is not None else None)
            return (dx,)
        record(out, (x,), backward)
    return out


def _max_pool_of_bias_relu(out, src, x4_shape, out4, idx, window, strides, pads):
    """Records max pooling over y = bias_relu(z, bias) as a function of (z, bias) directly: the
    gradient reaching a pixel of y is the sum of the gradients of the windows whose maximum it
    is, and each of those windows' outputs is that pixel's value, so relu's mask (y > 0) can be
    applied to the pooled gradient (where out > 0) before it is scattered. That is one pass over
    the pooled tensor (bias_relu_grad, which gives the bias's gradient too) and one scatter,
    instead of a scatter into y's size and then a full pass of relu's gradient over it. The
    result is the same, exactly, for z's gradient; y's own Node still serves any other use of y.
    Only under a training step's tape (autodiff.fusion_allowed): y is then off the graph."""
    z, bias = src
    kern = z.device.kernels
    cols = bias.shape[0]

    def backward(g, needs):
        gm = empty(out4, g.dtype, g.device)
        db = empty(bias.shape, bias.dtype, bias.device) if needs[1] else None
        kern.bias_relu_grad(out._buf, g._buf, gm._buf, db._buf if db is not None else None, cols)
        dz = None
        if needs[0]:
            dz = empty(z.shape, z.dtype, z.device)
            kern.pool2d_backward(_MAX, x4_shape, gm._buf, out4, dz._buf, window, strides, pads, idx._buf)
        return dz, db
    return record(out, (z, bias), backward)


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """Max pooling like `keras.ops.max_pool` over (batch, width, ch) or (batch, height, width, ch)
    (rank-5 inputs, 3-D pooling, run in convolution3d.py; average_pool likewise).

    pool_size / strides: an int or one per spatial dimension (strides default to pool_size).
    The gradient goes to the first maximum of each window (row-major order) on ties."""
    return _pool(_MAX, "max_pool", inputs, pool_size, strides, padding, data_format)


def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """Average pooling like `keras.ops.average_pool`. With padding="same", windows at the border
    average only their unpadded elements (as Keras/TF do)."""
    return _pool(_AVG, "average_pool", inputs, pool_size, strides, padding, data_format)
