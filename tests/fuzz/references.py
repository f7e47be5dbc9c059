"""numpy references for the fuzz suites: convolution, pooling and recurrent ops in float64."""
import numpy as np


def f64(a):
    return np.asarray(a).astype(np.float64)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _pads(size, k, stride, dil, padding):
    eff = (k - 1) * dil + 1
    if padding == "valid":
        return (size - eff) // stride + 1, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return out, total // 2


def np_conv(x, w, strides, padding, dil, depthwise=False):
    """channels-last N-D (1 or 2) convolution in float64 (depthwise: w (..., C, M))."""
    nsp = x.ndim - 2
    if nsp == 1:
        x, w = x[:, None], w[None]
        strides, dil = (1,) + tuple(strides), (1,) + tuple(dil)
    n, h, wd, c = x.shape
    kh, kw = w.shape[:2]
    oh, pt = _pads(h, kh, strides[0], dil[0], padding)
    ow, pl = _pads(wd, kw, strides[1], dil[1], padding)
    oc = c * w.shape[3] if depthwise else w.shape[3]
    out = np.zeros((n, max(oh, 0), max(ow, 0), oc))
    for i in range(max(oh, 0)):
        for j in range(max(ow, 0)):
            for a in range(kh):
                for b in range(kw):
                    r, q = i * strides[0] - pt + a * dil[0], j * strides[1] - pl + b * dil[1]
                    if 0 <= r < h and 0 <= q < wd:
                        if depthwise:
                            out[:, i, j] += (x[:, r, q, :, None] * w[a, b]).reshape(n, oc)
                        else:
                            out[:, i, j] += x[:, r, q] @ w[a, b]
    return out[:, 0] if nsp == 1 else out


def np_pool(x, window, strides, padding, mode):
    nsp = x.ndim - 2
    if nsp == 1:
        x, window, strides = x[:, None], (1,) + tuple(window), (1,) + tuple(strides)
    n, h, wd, c = x.shape
    oh, pt = _pads(h, window[0], strides[0], 1, padding)
    ow, pl = _pads(wd, window[1], strides[1], 1, padding)
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, q0 = i * strides[0] - pt, j * strides[1] - pl
            win = x[:, max(r0, 0):max(r0 + window[0], 0), max(q0, 0):max(q0 + window[1], 0)]
            out[:, i, j] = win.max(axis=(1, 2)) if mode == "max" else win.mean(axis=(1, 2))
    return out[:, 0] if nsp == 1 else out


def np_rnn(kind, x, h0, c0, K, R, b, go_backwards):
    """Keras's SimpleRNN / LSTM (gates i, f, c, o) / GRU (reset_after): [outputs, h(, c)]."""
    B, T, F = x.shape
    U = R.shape[0]
    h = np.zeros((B, U)) if h0 is None else h0
    c = np.zeros((B, U)) if c0 is None else c0
    outs = []
    steps = range(T - 1, -1, -1) if go_backwards else range(T)
    for t in steps:
        xt = x[:, t]
        if kind == "simple_rnn":
            h = np.tanh(xt @ K + h @ R + (0 if b is None else b))
        elif kind == "lstm":
            z = xt @ K + h @ R + (0 if b is None else b)
            i, f, cc, o = (z[:, k * U:(k + 1) * U] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(cc)
            h = sigmoid(o) * np.tanh(c)
        else:
            bi, br = (0, 0) if b is None else (b[0], b[1])
            xz, hz = xt @ K + bi, h @ R + br
            z = sigmoid(xz[:, :U] + hz[:, :U])
            r = sigmoid(xz[:, U:2 * U] + hz[:, U:2 * U])
            hh = np.tanh(xz[:, 2 * U:] + r * hz[:, 2 * U:])
            h = z * h + (1 - z) * hh
        outs.append(h)
    out = np.stack(outs, 1) if outs else np.zeros((B, 0, U))
    return [out, h, c] if kind == "lstm" else [out, h]
