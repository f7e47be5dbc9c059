"""Max pooling (csrc/cpu/conv.cpp) propagates NaN as ops.max, numpy and Keras do, wherever the NaN
is in its window; the gradient goes to the first NaN of the window (argmax's "first NaN wins"),
else to the first maximum. Checked on the vectorised paths (many channels), with and without a
gradient (two kernels), for 1-D, 2-D and 3-D pooling and "same" padding."""
import math

import numpy as np
import pytest

import lamina
from lamina import ops


def _windows(size, window, stride, padding):
    """[(start, stop)] of each output position along one dimension (unpadded bounds), as Keras."""
    if padding == "valid":
        n = (size - window) // stride + 1
        pad = 0
    else:
        n = math.ceil(size / stride)
        pad = max((n - 1) * stride + window - size, 0) // 2
    return [(max(i * stride - pad, 0), min(i * stride - pad + window, size)) for i in range(n)]


def _reference(x, window, strides, padding):
    """numpy max pooling of x (N, H, W, C) and the gradient of sum(out) (argmax: first NaN, else
    first maximum, row-major within the window)."""
    n, h, w, c = x.shape
    rows, cols = _windows(h, window[0], strides[0], padding), _windows(w, window[1], strides[1], padding)
    out = np.zeros((n, len(rows), len(cols), c), np.float32)
    grad = np.zeros_like(x)
    for b in range(n):
        for i, (h0, h1) in enumerate(rows):
            for j, (w0, w1) in enumerate(cols):
                block = x[b, h0:h1, w0:w1, :].reshape(-1, c)
                out[b, i, j] = block.max(axis=0)      # NaN propagates in numpy
                first = block.argmax(axis=0)           # the first NaN, else the first maximum
                for ch in range(c):
                    r, q = divmod(int(first[ch]), w1 - w0)
                    grad[b, h0 + r, w0 + q, ch] += 1
    return out, grad


def _with_nans(rng, shape, fraction):
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < fraction] = np.nan
    return x


@pytest.mark.parametrize("channels", [1, 3, 17, 64])
@pytest.mark.parametrize("window, strides, padding", [((2, 2), (2, 2), "valid"), ((3, 3), (1, 1), "valid"),
                                                      ((3, 2), (2, 1), "same"), ((2, 3), (3, 2), "same")])
def test_max_pool_2d_propagates_nan_forward_and_backward(channels, window, strides, padding):
    rng = np.random.default_rng(channels * 7 + window[0])
    x = _with_nans(rng, (2, 7, 6, channels), 0.08)
    want, want_grad = _reference(x, window, strides, padding)
    assert np.isnan(want).any() and (~np.isnan(want)).any()
    got = ops.max_pool(x, window, strides, padding).numpy()   # no gradient: the kernel without argmax
    np.testing.assert_array_equal(got, want)                   # equal_nan: same NaN positions, same values
    v = lamina.Variable(x)
    with lamina.GradientTape() as tape:
        y = ops.max_pool(v, window, strides, padding)          # the kernel that records the argmax
        total = ops.sum(y)   # NaN, but its gradient is ones: each window's goes to its argmax
    np.testing.assert_array_equal(y.numpy(), want)
    np.testing.assert_array_equal(tape.gradient(total, v).numpy(), want_grad)


@pytest.mark.parametrize("position", range(4))
def test_one_nan_anywhere_in_the_window(position):
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    x[position] = np.nan
    x = x.reshape(1, 2, 2, 1)
    assert np.isnan(ops.max_pool(x, 2).numpy()).all()
    v = lamina.Variable(x)
    with lamina.GradientTape() as tape:
        y = ops.max_pool(v, 2)
    grad = tape.gradient(y, v).numpy().ravel()
    assert np.isnan(y.numpy()).all() and grad.tolist() == [1.0 if i == position else 0.0 for i in range(4)]


def test_first_nan_wins_and_ties_keep_the_first_maximum():
    v = lamina.Variable(np.array([5.0, np.nan, 5.0, np.nan], np.float32).reshape(1, 2, 2, 1))
    with lamina.GradientTape() as tape:
        y = ops.max_pool(v, 2)
    assert tape.gradient(y, v).numpy().ravel().tolist() == [0.0, 1.0, 0.0, 0.0]
    v = lamina.Variable(np.array([1.0, 5.0, 5.0, -np.inf], np.float32).reshape(1, 2, 2, 1))
    with lamina.GradientTape() as tape:
        y = ops.max_pool(v, 2)
    assert y.numpy().ravel().tolist() == [5.0]
    assert tape.gradient(y, v).numpy().ravel().tolist() == [0.0, 1.0, 0.0, 0.0]


def test_max_pool_1d_and_3d_propagate_nan():
    rng = np.random.default_rng(3)
    x = _with_nans(rng, (2, 9, 5), 0.15)
    want, _ = _reference(x[:, None], (1, 3), (1, 2), "valid")
    np.testing.assert_array_equal(ops.max_pool(x, 3, 2).numpy(), want[:, 0])
    x3 = _with_nans(rng, (1, 4, 4, 4, 3), 0.05)
    got = ops.max_pool(x3, 2).numpy()
    want3 = x3.reshape(1, 2, 2, 2, 2, 2, 2, 3).max(axis=(2, 4, 6))
    np.testing.assert_array_equal(got, want3)
    assert np.isnan(want3).any()
