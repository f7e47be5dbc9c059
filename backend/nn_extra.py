"""More of keras.ops.nn, composed from lamina's existing ops: activations (celu, glu, the
shrink and sparse families, sparsemax ...), psnr, multi_hot, layer / RMS normalisation with
Keras's argument conventions, depth_to_space / space_to_depth, and unfold / fold (im2col and
col2im). Gradients flow through the ops each is built from; inputs are float32 (integer and
bool inputs compute in float32, like the activations in nn.py)."""
import math as _pymath

import numpy as np

from . import dtypes, validation
from . import settings
from . import math as _m
from .manipulation import moveaxis, pad, reshape, split, take, transpose
from .manipulation import arange as _arange
from .math import _as_tensor, normalize_axes
from .nn import _float_input, layer_norm, one_hot, sigmoid
from .extra import sort
from .numpy_extra import _int

__all__ = ["celu", "glu", "hard_shrink", "soft_shrink", "hard_tanh", "tanh_shrink", "threshold", "squareplus",
           "sparse_plus", "sparse_sigmoid", "sparsemax", "psnr", "multi_hot", "layer_normalization",
           "rms_normalization", "depth_to_space", "space_to_depth", "unfold", "fold"]

_F32 = dtypes.FLOAT32


def _number(v, op, name):
    """A Python float from a number (or a one-element tensor): an argument, not data."""
    if hasattr(v, "numpy") and hasattr(v, "shape"):
        if _pymath.prod(v.shape) != 1:
            raise ValueError(f"{op}: {name} must be a scalar, received a tensor of shape {v.shape}")
        v = v.item()
    return validation.real(v, op, name)


# ---- activations --------------------------------------------------------------------------------

def celu(x, alpha=1.0):
    """max(x, 0) + alpha * (exp(min(x, 0) / alpha) - 1) (continuously differentiable ELU)."""
    x = _float_input("celu", x)
    alpha = _number(alpha, "celu", "alpha")
    if alpha == 0:
        raise ValueError("celu: alpha must not be zero (it divides x)")
    return _m.add(_m.maximum(x, 0.0), _m.multiply(_m.expm1(_m.divide(_m.minimum(x, 0.0), alpha)), alpha))


def glu(x, axis=-1):
    """Gated linear unit: a * sigmoid(b), where a and b are the two halves of x along `axis`."""
    x = _float_input("glu", x)
    if x.ndim == 0:
        raise ValueError("glu: expected a tensor with at least 1 dimension, received a scalar")
    ax = validation.axis(axis, x.ndim, "glu", shape=x.shape)
    if x.shape[ax] % 2:
        raise ValueError(f"glu: axis {ax} of x (shape {x.shape}) has odd size {x.shape[ax]}; it must split into two "
                         "equal halves")
    a, b = split(x, 2, axis=ax)
    return _m.multiply(a, sigmoid(b))


def hard_shrink(x, threshold=0.5):
    """x where |x| > threshold, else 0."""
    x = _float_input("hard_shrink", x)
    t = _number(threshold, "hard_shrink", "threshold")
    return _m.where(_m.greater(_m.abs(x), t), x, 0.0)


def soft_shrink(x, threshold=0.5):
    """x - threshold above threshold, x + threshold below -threshold, 0 between."""
    x = _float_input("soft_shrink", x)
    t = _number(threshold, "soft_shrink", "threshold")
    return _m.where(_m.greater(x, t), _m.subtract(x, t), _m.where(_m.less(x, -t), _m.add(x, t), 0.0))


def hard_tanh(x):
    """x clipped to [-1, 1]."""
    return _m.clip(_float_input("hard_tanh", x), -1.0, 1.0)


def tanh_shrink(x):
    """x - tanh(x)."""
    x = _float_input("tanh_shrink", x)
    return _m.subtract(x, _m.tanh(x))


def threshold(x, threshold, default_value):
    """x where x > threshold, else default_value."""
    x = _float_input("threshold", x)
    t = _number(threshold, "threshold", "threshold")
    d = _number(default_value, "threshold", "default_value")
    return _m.where(_m.greater(x, t), x, d)


def squareplus(x, b=4):
    """(x + sqrt(x^2 + b)) / 2, a smooth relu (b >= 0)."""
    x = _float_input("squareplus", x)
    b = _number(b, "squareplus", "b")
    if b < 0:
        raise ValueError(f"squareplus: b must be non-negative, received b={b}")
    return _m.multiply(_m.add(x, _m.sqrt(_m.add(_m.square(x), b))), 0.5)


def sparse_plus(x):
    """0 for x <= -1, (x + 1)^2 / 4 for -1 < x < 1, x for x >= 1."""
    x = _float_input("sparse_plus", x)
    mid = _m.multiply(_m.square(_m.add(x, 1.0)), 0.25)
    return _m.where(_m.less_equal(x, -1.0), 0.0, _m.where(_m.less(x, 1.0), mid, x))


def sparse_sigmoid(x):
    """0 for x <= -1, (x + 1) / 2 between, 1 for x >= 1."""
    x = _float_input("sparse_sigmoid", x)
    return _m.clip(_m.multiply(_m.add(x, 1.0), 0.5), 0.0, 1.0)


def sparsemax(x, axis=-1):
    """Sparsemax (Martins & Astudillo, 2016): max(x - tau, 0) along `axis`, the Euclidean
    projection of x onto the probability simplex (outputs add up to 1, with exact zeros for
    small logits)."""
    x = _float_input("sparsemax", x)
    if x.ndim == 0:
        raise ValueError("sparsemax: expected a tensor with at least 1 dimension, received a scalar")
    ax = validation.axis(axis, x.ndim, "sparsemax", shape=x.shape)
    xm = moveaxis(x, ax, -1)
    n = xm.shape[-1]
    z = _m.negative(sort(_m.negative(xm), axis=-1))            # descending
    cs = _m.cumsum(z, axis=-1)
    r = _arange(1, n + 1, dtype=_F32)
    support = _m.greater(z, _m.divide(_m.subtract(cs, 1.0), r))
    k = _m.sum(_m.cast(support, _F32), axis=-1, keepdims=True)
    # the threshold: (sum of the k largest - 1) / k. (Keras 3.15 sums the cumulative sums over the
    # support instead, which is not a projection onto the simplex when k > 1: its outputs do not
    # add up to 1; lamina computes the published definition.)
    tau = _m.divide(_m.subtract(_m.sum(_m.where(support, z, 0.0), axis=-1, keepdims=True), 1.0), k)
    out = _m.maximum(_m.subtract(xm, tau), 0.0)
    return moveaxis(out, -1, ax)


def psnr(x1, x2, max_val):
    """Peak signal-to-noise ratio 20 log10(max_val) - 10 log10(mean((x1 - x2)^2)) over all
    elements (a 0-d float32 tensor); x1 and x2 must have the same shape."""
    a, b = _float_input("psnr", x1), _float_input("psnr", x2)
    if a.shape != b.shape:
        raise ValueError(f"psnr: x1 and x2 must have the same shape, received {a.shape} and {b.shape}")
    mv = _float_input("psnr", max_val)
    mse = _m.mean(_m.square(_m.subtract(a, b)))
    return _m.subtract(_m.multiply(_m.log10(mv), 20.0), _m.multiply(_m.log10(mse), 10.0))


def multi_hot(inputs, num_classes=None, axis=-1, dtype=None, sparse=False, **kwargs):
    """Keras's multi_hot: one_hot of the integer ids, then the maximum over the ids' axis 1
    (axis 0 for 1-D ids): (batch, k) ids -> (batch, num_classes). Ids outside
    [0, num_classes) set nothing. `num_tokens` is accepted as Keras's old name of num_classes."""
    if "num_tokens" in kwargs:
        tokens = kwargs.pop("num_tokens")
        if num_classes is None:
            num_classes = tokens
    if kwargs:
        raise TypeError(f"multi_hot: unexpected keyword argument(s) {sorted(kwargs)}")
    if num_classes is None:
        raise ValueError("multi_hot: num_classes must be given, e.g. multi_hot(ids, num_classes=10)")
    if sparse:
        raise ValueError("multi_hot: sparse=True is not supported (lamina has no sparse tensors); use sparse=False")
    x = _as_tensor(inputs, "multi_hot")
    if x.dtype == _F32:
        x = _m.cast(x, dtypes.INT64)
    dt = dtypes.standardize(dtype, "multi_hot") if dtype is not None else _F32
    oh = one_hot(x, num_classes, axis=axis, dtype=dt)
    return _m.max(oh, axis=1 if x.ndim > 1 else 0)


def _norm_axes(op, x, axis):
    if x.ndim == 0:
        raise ValueError(f"{op}: expected a tensor with at least 1 dimension, received a scalar")
    return normalize_axes(axis, x.ndim, op, x.shape)


def _param(op, name, p, x, axes):
    """gamma / beta / scale as float32, shaped to broadcast against x: a tensor of the
    normalised axes' shape is laid along them; other shapes must broadcast as they are."""
    p = _m.cast(_as_tensor(p, op), _F32)
    _m.check_same_device(op, x, p)
    pshape = tuple(x.shape[a] for a in axes)
    if p.shape == pshape and p.ndim != x.ndim:
        p = reshape(p, tuple(x.shape[i] if i in axes else 1 for i in range(x.ndim)))
    try:
        _m.broadcast_shapes(p.shape, x.shape, op)
    except ValueError:
        raise ValueError(f"{op}: {name} of shape {p.shape} does not fit x of shape {x.shape} normalised over axes "
                         f"{axes}; expected shape {pshape}") from None
    return p


def layer_normalization(x, gamma=None, beta=None, axis=-1, epsilon=None, **kwargs):
    """keras.ops.layer_normalization: (x - mean) / sqrt(var + epsilon) * gamma + beta, with the
    statistics over `axis` (an int or a list; epsilon defaults to config.epsilon(), 1e-7). Computed in float32,
    returned in x's dtype (as Keras does). `rms_scaling=True`, Keras's deprecated variant,
    scales by the variance instead: x / sqrt(var + epsilon) * gamma, and takes no beta."""
    op = "layer_normalization"
    rms_scaling = kwargs.pop("rms_scaling", False)
    if kwargs:
        raise TypeError(f"{op}: unexpected keyword argument(s) {sorted(kwargs)}")
    x0 = _as_tensor(x, op)
    xf = _m.cast(x0, _F32)
    axes = _norm_axes(op, xf, axis)
    eps = settings.epsilon() if epsilon is None else _number(epsilon, op, "epsilon")
    pshape = tuple(xf.shape[a] for a in axes)
    g = None if gamma is None else _m.cast(_as_tensor(gamma, op), _F32)
    b = None if beta is None else _m.cast(_as_tensor(beta, op), _F32)
    if rms_scaling:
        if b is not None:
            raise ValueError(f"{op}: rms_scaling=True takes no beta (Keras ignores it); pass beta=None")
        var = _m.var(xf, axis=axes, keepdims=True)
        out = _m.multiply(xf, _m.rsqrt(_m.add(var, eps)))
        if g is not None:
            out = _m.multiply(out, _param(op, "gamma", g, xf, axes))
    elif all(p is None or p.shape == pshape for p in (g, b)):
        out = layer_norm(xf, g, b, axis=axes, epsilon=eps)       # the fused kernel (adjacent axes)
    else:
        mean, var = _m.mean(xf, axis=axes, keepdims=True), _m.var(xf, axis=axes, keepdims=True)
        out = _m.multiply(_m.subtract(xf, mean), _m.rsqrt(_m.add(var, eps)))
        if g is not None:
            out = _m.multiply(out, _param(op, "gamma", g, xf, axes))
        if b is not None:
            out = _m.add(out, _param(op, "beta", b, xf, axes))
    return _m.cast(out, x0.dtype)


def rms_normalization(x, scale=None, axis=-1, epsilon=None):
    """keras.ops.rms_normalization: x / sqrt(mean(x^2 over axis) + epsilon) * scale (epsilon
    defaults to config.epsilon(), 1e-7). Computed in float32, returned in x's dtype."""
    op = "rms_normalization"
    x0 = _as_tensor(x, op)
    xf = _m.cast(x0, _F32)
    if xf.ndim == 0:
        xf = reshape(xf, (1,))
    axes = _norm_axes(op, xf, axis)
    eps = settings.epsilon() if epsilon is None else _number(epsilon, op, "epsilon")
    out = _m.multiply(xf, _m.rsqrt(_m.add(_m.mean(_m.square(xf), axis=axes, keepdims=True), eps)))
    if scale is not None:
        out = _m.multiply(out, _param(op, "scale", scale, xf, axes))
    return _m.cast(out, x0.dtype)


# ---- rearranging space and depth ----------------------------------------------------------------

def _block_args(op, x, block_size, data_format):
    x = _as_tensor(x, op)
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"{op}: data_format must be 'channels_last' or 'channels_first', received {data_format!r}")
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D tensor (batch, height, width, channels) or (batch, channels, height, "
                         f"width), received shape {x.shape}")
    bs = _int(block_size, op, "block_size", 2)
    return x, bs


def depth_to_space(x, block_size, data_format="channels_last"):
    """Pixel shuffle: (N, H, W, C) -> (N, H*b, W*b, C / b^2) (channels_first: (N, C, H, W) ->
    (N, C / b^2, H*b, W*b)), as Keras: channels_last reads the channels in (row, column,
    channel) order, channels_first in (channel, row, column) order (PyTorch's pixel shuffle)."""
    x, b = _block_args("depth_to_space", x, block_size, data_format)
    if data_format == "channels_last":
        n, h, w, c = x.shape
    else:
        n, c, h, w = x.shape
    if c % (b * b):
        raise ValueError(f"depth_to_space: the {c} channels of x (shape {x.shape}) are not divisible by "
                         f"block_size^2 = {b * b}")
    nc = c // (b * b)
    if data_format == "channels_last":
        y = transpose(reshape(x, (n, h, w, b, b, nc)), (0, 1, 3, 2, 4, 5))
        return reshape(y, (n, h * b, w * b, nc))
    y = transpose(reshape(x, (n, nc, b, b, h, w)), (0, 1, 4, 2, 5, 3))
    return reshape(y, (n, nc, h * b, w * b))


def space_to_depth(x, block_size, data_format="channels_last"):
    """Pixel unshuffle, the inverse of depth_to_space: (N, H, W, C) -> (N, H/b, W/b, C*b^2)."""
    x, b = _block_args("space_to_depth", x, block_size, data_format)
    if data_format == "channels_last":
        n, h, w, c = x.shape
    else:
        n, c, h, w = x.shape
    if h % b or w % b:
        raise ValueError(f"space_to_depth: height {h} and width {w} of x (shape {x.shape}) must be divisible by "
                         f"block_size {b}")
    if data_format == "channels_last":
        y = transpose(reshape(x, (n, h // b, b, w // b, b, c)), (0, 1, 3, 2, 4, 5))
        return reshape(y, (n, h // b, w // b, c * b * b))
    y = transpose(reshape(x, (n, c, h // b, b, w // b, b)), (0, 1, 3, 5, 2, 4))
    return reshape(y, (n, c * b * b, h // b, w // b))


# ---- sliding blocks: unfold (im2col) and fold (col2im) ------------------------------------------

def _pair(v, op, name, minimum):
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError(f"{op}: {name} must be an integer or a pair of integers, received {v!r}")
        return tuple(_int(e, op, name, minimum) for e in v)
    v = _int(v, op, name, minimum)
    return (v, v)


def _blocks(size, k, d, p, s):
    """Number of block positions along one spatial dimension of `size` (before padding)."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def unfold(x, kernel_size, dilation=1, padding=0, stride=1):
    """keras.ops.unfold (im2col) of a channels-first batch (N, C, H, W): the sliding
    (kH, kW) blocks, zero-padded by `padding` on both sides, as (N, C*kH*kW, L) with L the
    number of block positions (row-major), channel-major then kernel row then kernel column."""
    op = "unfold"
    x = _as_tensor(x, op)
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D tensor (N, C, H, W), received shape {x.shape}")
    (kh, kw), (dh, dw) = _pair(kernel_size, op, "kernel_size", 1), _pair(dilation, op, "dilation", 1)
    (ph, pw), (sh, sw) = _pair(padding, op, "padding", 0), _pair(stride, op, "stride", 1)
    n, c, h, w = x.shape
    oh, ow = _blocks(h, kh, dh, ph, sh), _blocks(w, kw, dw, pw, sw)
    if oh < 1 or ow < 1:
        raise ValueError(f"{op}: a {kh}x{kw} kernel with dilation ({dh}, {dw}) does not fit the padded {h + 2 * ph}x"
                         f"{w + 2 * pw} input (shape {x.shape}, padding ({ph}, {pw}))")
    if ph or pw:
        x = pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)])
    rows = _m.add(reshape(_m.multiply(_arange(kh), dh), (-1, 1)), reshape(_m.multiply(_arange(oh), sh), (1, -1)))
    cols = _m.add(reshape(_m.multiply(_arange(kw), dw), (-1, 1)), reshape(_m.multiply(_arange(ow), sw), (1, -1)))
    y = take(take(x, rows, axis=2), cols, axis=4)            # (N, C, kH, oH, kW, oW)
    y = transpose(y, (0, 1, 2, 4, 3, 5))
    return reshape(y, (n, c * kh * kw, oh * ow))


def fold(x, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """keras.ops.fold (col2im), the adjoint of unfold: blocks (N, C*kH*kW, L) summed back into
    (N, C, oH, oW) where they overlap (padding removed)."""
    op = "fold"
    x = _as_tensor(x, op)
    if x.ndim != 3:
        raise ValueError(f"{op}: expected a 3-D tensor (N, C*kH*kW, L), received shape {x.shape}")
    (oh, ow) = _pair(output_size, op, "output_size", 1)
    (kh, kw), (dh, dw) = _pair(kernel_size, op, "kernel_size", 1), _pair(dilation, op, "dilation", 1)
    (ph, pw), (sh, sw) = _pair(padding, op, "padding", 0), _pair(stride, op, "stride", 1)
    n, ckk, L = x.shape
    if ckk % (kh * kw):
        raise ValueError(f"{op}: dimension 1 of x (shape {x.shape}) must be C * {kh} * {kw}, a multiple of {kh * kw}")
    c = ckk // (kh * kw)
    nh, nw = _blocks(oh, kh, dh, ph, sh), _blocks(ow, kw, dw, pw, sw)
    if nh < 1 or nw < 1 or nh * nw != L:
        raise ValueError(f"{op}: x has {L} blocks but output_size ({oh}, {ow}) with kernel ({kh}, {kw}), dilation "
                         f"({dh}, {dw}), padding ({ph}, {pw}) and stride ({sh}, {sw}) has {max(nh, 0)} x "
                         f"{max(nw, 0)} block positions")
    hp, wp = oh + 2 * ph, ow + 2 * pw
    blocks = reshape(x, (n, c, kh, kw, nh, nw))
    out = None
    for i in range(kh):
        for j in range(kw):
            b = blocks[:, :, i, j]                                   # (N, C, nH, nW)
            if sh > 1 or sw > 1:                                     # spread the blocks stride apart
                b = pad(reshape(b, (n, c, nh, 1, nw, 1)), [(0, 0), (0, 0), (0, 0), (0, sh - 1), (0, 0), (0, sw - 1)])
                b = reshape(b, (n, c, nh * sh, nw * sw))
            top, left = i * dh, j * dw
            b = b[:, :, :hp - top, :wp - left]
            b = pad(b, [(0, 0), (0, 0), (top, hp - top - b.shape[2]), (left, wp - left - b.shape[3])])
            out = b if out is None else _m.add(out, b)
    return out[:, :, ph:ph + oh, pw:pw + ow]


# errors raised by the ops these are built on name the op that was called
validation.name_errors(globals(), __all__)
