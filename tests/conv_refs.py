"""numpy references for the transposed and 3-D convolution and pooling tests (direct loops, no
im2col): conv_transpose_ref / conv_transpose_grads_ref (Keras's geometry, written out here
independently of lamina's code), conv3d_ref and pool3d_ref (the TF/Keras padding rule)."""
import itertools
import math

import numpy as np


# ---- transposed convolution ---------------------------------------------------------------------

def _keras_geometry(size, k, s, d, padding, output_padding):
    """(output length, left pad) by Keras's rules (backend_utils.py: the output shape and the JAX
    padding conversion), written out independently of lamina's code."""
    dk = (k - 1) * d + 1
    if padding == "valid":
        op = max(dk, s) - dk if output_padding is None else output_padding
        return (size - 1) * s + dk + op, dk - 1
    if output_padding is None:
        out, pad_len = size * s, s + dk - 2
    else:
        out, pad_len = (size - 1) * s + dk % 2 + output_padding, dk + dk % 2 - 2 + output_padding
    return out, min(pad_len // 2 + pad_len % 2, dk - 1)


def _taps(x_shape, w_shape, st, dl, padding, op):
    """The 2-D output shape and every (i, j, a, b, p, q): input pixel (i, j) times tap (a, b) lands
    on output pixel (p, q) = (i, j) * strides + (a, b) * dilation - (dk - 1 - left pad)."""
    n, h, wd, _ = x_shape
    kh, kw, o, _ = w_shape
    oh, lt = _keras_geometry(h, kh, st[0], dl[0], padding, op[0])
    ow, ll = _keras_geometry(wd, kw, st[1], dl[1], padding, op[1])
    ct, cl = (kh - 1) * dl[0] - lt, (kw - 1) * dl[1] - ll
    taps = [(i, j, a, b, i * st[0] + a * dl[0] - ct, j * st[1] + b * dl[1] - cl)
            for i, j, a, b in itertools.product(range(h), range(wd), range(kh), range(kw))]
    return (n, oh, ow, o), [t for t in taps if 0 <= t[4] < oh and 0 <= t[5] < ow]


def _as_2d(x, w, strides, output_padding, dilation_rate):
    nsp = x.ndim - 2
    tup = lambda v: (v,) * nsp if v is None or isinstance(v, int) else tuple(v)  # noqa: E731
    st, dl, op = tup(strides), tup(dilation_rate), tup(output_padding)
    if nsp == 1:
        return x[:, None], w[None], (1,) + st, (1,) + dl, (0,) + op
    return x, w, st, dl, op


def conv_transpose_ref(x, w, strides=1, padding="valid", output_padding=None, data_format=None, dilation_rate=1):
    """Scatter loops: out[p, q] += x[i, j] @ w[a, b].T over _taps."""
    x, w = np.asarray(x), np.asarray(w)
    if data_format == "channels_first":
        y = conv_transpose_ref(np.moveaxis(x, 1, -1), w, strides, padding, output_padding, None, dilation_rate)
        return np.moveaxis(y, -1, 1)
    one_d = x.ndim == 3
    x, w, st, dl, op = _as_2d(x, w, strides, output_padding, dilation_rate)
    shape, taps = _taps(x.shape, w.shape, st, dl, padding, op)
    out = np.zeros(shape, np.result_type(x, w))
    for i, j, a, b, p, q in taps:
        out[:, p, q, :] += x[:, i, j, :] @ w[a, b].T
    return out[:, 0] if one_d else out


def conv_transpose_grads_ref(x, w, g, strides=1, padding="valid", output_padding=None, dilation_rate=1):
    """Exact gradients of sum(conv_transpose_ref(x, w) * g) (2-D, channels_last), in float64."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    _, _, st, dl, op = _as_2d(x, w, strides, output_padding, dilation_rate)
    _, taps = _taps(x.shape, w.shape, st, dl, padding, op)
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for i, j, a, b, p, q in taps:
        dx[:, i, j, :] += g[:, p, q, :] @ w[a, b]
        dw[a, b] += g[:, p, q, :].T @ x[:, i, j, :]
    return dx, dw


# ---- 3-D convolution and pooling ------------------------------------------------------------------

def _tup3(v):
    return (v,) * 3 if isinstance(v, int) else tuple(v)


def _geometry(size, k, stride, dilation, padding):
    """(output size, pad before) by the TF/Keras rule."""
    eff = (k - 1) * dilation + 1
    if padding == "valid":
        return (size - eff) // stride + 1, 0
    out = math.ceil(size / stride)
    return out, max((out - 1) * stride + eff - size, 0) // 2


def conv3d_ref(x, w, strides=1, padding="valid", data_format=None, dilation_rate=1):
    x, w = np.asarray(x), np.asarray(w)
    if data_format == "channels_first":
        return np.moveaxis(conv3d_ref(np.moveaxis(x, 1, -1), w, strides, padding, None, dilation_rate), -1, 1)
    st, dl = _tup3(strides), _tup3(dilation_rate)
    n, *size, c = x.shape
    geo = [_geometry(size[i], w.shape[i], st[i], dl[i], padding) for i in range(3)]
    out = np.zeros((n,) + tuple(g[0] for g in geo) + (w.shape[-1],), np.result_type(x, w))
    for o in itertools.product(*(range(g[0]) for g in geo)):
        for k in itertools.product(*(range(d) for d in w.shape[:3])):
            pos = [o[i] * st[i] - geo[i][1] + k[i] * dl[i] for i in range(3)]
            if all(0 <= pos[i] < size[i] for i in range(3)):
                out[(slice(None),) + o] += x[(slice(None),) + tuple(pos)] @ w[k]
    return out


def pool3d_ref(x, pool_size, strides=None, padding="valid", data_format=None, mode="max"):
    x = np.asarray(x)
    if data_format == "channels_first":
        return np.moveaxis(pool3d_ref(np.moveaxis(x, 1, -1), pool_size, strides, padding, None, mode), -1, 1)
    ps = _tup3(pool_size)
    st = ps if strides is None else _tup3(strides)
    n, *size, c = x.shape
    geo = [_geometry(size[i], ps[i], st[i], 1, padding) for i in range(3)]
    out = np.zeros((n,) + tuple(g[0] for g in geo) + (c,), x.dtype)
    for o in itertools.product(*(range(g[0]) for g in geo)):
        lo = [max(o[i] * st[i] - geo[i][1], 0) for i in range(3)]
        hi = [min(o[i] * st[i] - geo[i][1] + ps[i], size[i]) for i in range(3)]
        win = x[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2], :]
        out[(slice(None),) + o] = win.max(axis=(1, 2, 3)) if mode == "max" else win.mean(axis=(1, 2, 3))
    return out
