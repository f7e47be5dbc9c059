"""Fused quantized groups (models/qfusion.py, backend.quantization.fused_conv): the kernels
qconv2d_fused / qdepthwise2d_fused against numpy int32 references on every micro-kernel this CPU
runs, byte activations, NaN marks and argument checks."""
import numpy as np
import pytest

from lamina.backend import _cpu

from qgemm_refs import KERNELS, kernel, pack as _pack  # noqa: F401 (kernel: a fixture)


def _bn(rng, C):
    mean = rng.standard_normal(C).astype(np.float32)
    var = (rng.random(C) + 0.2).astype(np.float32)
    gamma = (rng.standard_normal(C) * 0.5 + 1).astype(np.float32)
    beta = rng.standard_normal(C).astype(np.float32)
    return mean, var, gamma, beta


def _fold(w_scale, bias, bn, eps, step):
    """(F, G) of the folded epilogue: v = acc * F * step + G (step: the input's value per unit)."""
    C = len(w_scale)
    a = np.ones(C, np.float64)
    d = np.zeros(C, np.float64)
    if bn is not None:
        mean, var, gamma, beta = (v.astype(np.float64) for v in bn)
        a = gamma / np.sqrt(var + eps)
        d = beta - mean * a
    g = (bias.astype(np.float64) * a if bias is not None else 0) + d
    return a / w_scale.astype(np.float64) * step, g


def _windows(x, kh, kw, strides, pads, dilation=(1, 1)):
    """im2col of x (n, h, w, c) with zero padding: (n, oh, ow, kh * kw * c)."""
    xp = np.pad(x, ((0, 0), (pads[0], pads[1]), (pads[2], pads[3]), (0, 0)))
    n, h, w, c = xp.shape
    dh, dw = dilation
    oh, ow = (h - (kh - 1) * dh - 1) // strides[0] + 1, (w - (kw - 1) * dw - 1) // strides[1] + 1
    cols = np.empty((n, oh, ow, kh * kw * c), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[..., (i * kw + j) * c:(i * kw + j + 1) * c] = \
                xp[:, i * dh:i * dh + strides[0] * oh:strides[0], j * dw:j * dw + strides[1] * ow:strides[1], :]
    return cols


def _depthwise_sums(x, w, strides, pads):
    """int64 sums of a depthwise convolution: output channel c * dm + m reads input channel c."""
    kh, kw, C, dm = w.shape
    cols = _windows(x.astype(np.int64), kh, kw, strides, pads)
    n, oh, ow, _ = cols.shape
    taps = cols.reshape(n, oh, ow, kh * kw, C, 1) * w.reshape(kh * kw, C, dm).astype(np.int64)
    return taps.sum(3).reshape(n, oh, ow, C * dm)


def _out(shape, step):
    size = int(np.prod(shape))
    return _cpu.Buffer(size, 4 if step > 0 else 0)


def _read(buf, shape, step):
    a = _cpu.to_numpy(buf, list(shape))
    return a.view(np.uint8) if step > 0 else a


def _bytes(a):
    return _cpu.from_numpy(np.ascontiguousarray(a).view(np.int8))


def _expect_bytes(v, step, lo, hi):
    return np.clip(np.round(np.clip(v, lo, hi) / step), 0, 255)


@pytest.mark.parametrize("C,H,W,strides,pads", [(8, 9, 11, (1, 1), (1, 1, 1, 1)), (16, 8, 8, (2, 2), (0, 1, 0, 1)),
                                                (21, 6, 13, (1, 2), (1, 1, 1, 1)), (40, 5, 5, (1, 1), (0, 0, 0, 0)),
                                                # few channels: several pixels share a vector
                                                (8, 5, 23, (1, 1), (1, 1, 1, 1)), (4, 4, 37, (2, 1), (1, 1, 1, 1)),
                                                (2, 3, 40, (1, 1), (1, 1, 1, 1)), (1, 3, 70, (1, 1), (0, 0, 0, 0))])
def test_depthwise_from_bytes_equals_the_integer_sums(kernel, C, H, W, strides, pads):
    rng = np.random.default_rng(C + H)
    n, step, out_step = 3, 6 / 255, 6 / 255
    x = rng.integers(0, 256, (n, H, W, C)).astype(np.uint8)
    w = rng.integers(-127, 128, (3, 3, C, 1)).astype(np.int8)
    ws = (rng.random(C) * 50 + 10).astype(np.float32)
    bias = rng.standard_normal(C).astype(np.float32)
    bn = _bn(rng, C)
    sums = _depthwise_sums(x, w, strides, pads)
    oshape = sums.shape
    F, G = _fold(ws, bias, bn, 1e-3, step)
    ref = sums * F + G
    for out_step in (0.0, out_step):
        out = _out(oshape, out_step)
        flags = _cpu.from_numpy(np.zeros(n, np.int32))
        _cpu.qdepthwise2d_fused(_bytes(x), list(x.shape), step, _cpu.from_numpy(w), list(w.shape),
                                _cpu.from_numpy(ws), _cpu.from_numpy(bias), *(_cpu.from_numpy(v) for v in bn), 1e-3,
                                0.0, 6.0, out, list(oshape), out_step, flags, list(strides), [1, 1], list(pads))
        got = _read(out, oshape, out_step)
        if out_step:
            assert np.abs(got.astype(np.int32) - _expect_bytes(ref, out_step, 0, 6)).max() <= 1
        else:
            np.testing.assert_allclose(got, np.clip(ref, 0, 6), rtol=1e-5, atol=1e-5)
        assert not _cpu.to_numpy(flags, [n]).any()


@pytest.mark.parametrize("C,H,W,dilation", [(8, 12, 13, (2, 2)), (16, 20, 20, (2, 1)), (8, 9, 30, (3, 2))])
def test_depthwise_from_bytes_with_dilation_and_many_rows(kernel, C, H, W, dilation):
    """Dilated windows over several images split between threads (each vector kernel walks rows
    dilation apart): the sums of the same kernel spread into a (2 dh + 1) x (2 dw + 1) one with zeros."""
    rng = np.random.default_rng(C * H + W)
    n, step, pads = 3, 6 / 255, (2, 1, 1, 2)
    x = rng.integers(0, 256, (n, H, W, C)).astype(np.uint8)
    w = rng.integers(-127, 128, (3, 3, C, 1)).astype(np.int8)
    dh, dw = dilation
    spread = np.zeros((2 * dh + 1, 2 * dw + 1, C, 1), np.int8)
    spread[::dh, ::dw] = w
    ws = (rng.random(C) * 50 + 10).astype(np.float32)
    bias = rng.standard_normal(C).astype(np.float32)
    sums = _depthwise_sums(x, spread, (1, 1), pads)
    F, G = _fold(ws, bias, None, 1e-3, step)
    ref = sums * F + G
    out = _out(sums.shape, 0.0)
    _cpu.qdepthwise2d_fused(_bytes(x), list(x.shape), step, _cpu.from_numpy(w), list(w.shape), _cpu.from_numpy(ws),
                            _cpu.from_numpy(bias), None, None, None, None, 1e-3, -np.inf, np.inf, out,
                            list(sums.shape), 0.0, None, [1, 1], list(dilation), list(pads))
    np.testing.assert_allclose(_read(out, sums.shape, 0.0), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dm", [1, 2])
def test_depthwise_from_floats_quantizes_each_image_and_channel(kernel, dm):
    rng = np.random.default_rng(3)
    n, H, W, C = 2, 7, 6, 24
    x = (rng.standard_normal((n, H, W, C)) * rng.random(C) * 4).astype(np.float32)
    w = rng.integers(-127, 128, (3, 3, C, dm)).astype(np.int8)
    ws = (rng.random(C * dm) * 50 + 10).astype(np.float32)
    scale = np.float32(127) / (np.abs(x).max(axis=(1, 2), keepdims=True) + np.float32(1e-7))
    qx = np.clip(np.round(x * scale), -127, 127).astype(np.int64)
    sums = _depthwise_sums(qx, w, (1, 1), (1, 1, 1, 1))
    ref = sums / (ws.astype(np.float64) * np.repeat(scale.astype(np.float64), dm, axis=-1))  # no BN, no clamp
    out = _out(sums.shape, 0)
    _cpu.qdepthwise2d_fused(_cpu.from_numpy(x), list(x.shape), 0.0, _cpu.from_numpy(w), list(w.shape),
                            _cpu.from_numpy(ws), None, None, None, None, None, 0.0, -np.inf, np.inf, out,
                            list(sums.shape), 0.0, None, [1, 1], [1, 1], [1, 1, 1, 1])
    np.testing.assert_allclose(_read(out, sums.shape, 0), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("K,N", [(8, 16), (16, 32), (36, 70), (7, 5)])
def test_pointwise_from_bytes_equals_the_integer_sums(kernel, K, N):
    rng = np.random.default_rng(K * N)
    n, H, W, step = 2, 5, 7, 6 / 255
    x = rng.integers(0, 256, (n, H, W, K)).astype(np.uint8)
    w = rng.integers(-127, 128, (1, 1, K, N)).astype(np.int8)
    ws = (rng.random(N) * 50 + 10).astype(np.float32)
    bn = _bn(rng, N)
    packed, colsum = _pack(w.reshape(K, N))
    sums = x.astype(np.int64).reshape(-1, K) @ w.reshape(K, N).astype(np.int64)
    F, G = _fold(ws, None, bn, 1e-3, step)
    ref = (sums * F + G).reshape(n, H, W, N)
    for out_step in (0.0, 6 / 255):
        out = _out(ref.shape, out_step)
        _cpu.qconv2d_fused(_bytes(x), list(x.shape), step, list(w.shape), packed, colsum, _cpu.from_numpy(ws), None,
                           *(_cpu.from_numpy(v) for v in bn), 1e-3, 0.0, 6.0, out, list(ref.shape), out_step, None,
                           [1, 1], [1, 1], [0, 0, 0, 0])
        got = _read(out, ref.shape, out_step)
        if out_step:
            assert np.abs(got.astype(np.int32) - _expect_bytes(ref, out_step, 0, 6)).max() <= 1
        else:
            np.testing.assert_allclose(got, np.clip(ref, 0, 6), rtol=1e-5, atol=1e-5)


def _conv_case(rng, n, H, W, C, k, N):
    """Images (the second 3x larger), int8 kernels (k, k, C, N) packed, scales, bias; each image's
    abs-max scale and its quantized values (int64)."""
    x = rng.uniform(-1, 1, (n, H, W, C)).astype(np.float32)
    x[1] *= 3
    w = rng.integers(-127, 128, (k, k, C, N)).astype(np.int8)
    ws = (rng.random(N) * 50 + 10).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    packed, colsum = _pack(w.reshape(-1, N))
    scale = np.float32(127) / (np.abs(x).max(axis=(1, 2, 3), keepdims=True) + np.float32(1e-7))
    qx = np.clip(np.round(x * scale), -127, 127).astype(np.int64)
    return x, w, ws, bias, packed, colsum, scale, qx


@pytest.mark.parametrize("C,k,strides,pads,W,n,N,dilation", [
    (3, 3, (2, 2), (0, 1, 0, 1), 8, 3, 8, (1, 1)), (3, 3, (1, 1), (1, 1, 1, 1), 8, 3, 8, (1, 1)),
    (5, 2, (1, 2), (0, 0, 1, 0), 8, 3, 8, (1, 1)),
    (20, 3, (2, 1), (1, 1, 1, 1), 8, 3, 8, (1, 1)),
    (3, 3, (1, 1), (1, 1, 1, 1), 7, 3, 8, (1, 1)),    # 189 floats an image: a last group of 1
    (3, 3, (1, 1), (1, 1, 1, 1), 7, 400, 8, (1, 1)),  # ... and images quantized by both threads
    # C % 4 == 0: on VNNI and AVX2 the windows are read in place from a padded image
    (8, 5, (1, 1), (2, 2, 2, 2), 9, 3, 40, (1, 1)),   # the MNIST convnet's second layer's shape
    (4, 3, (2, 2), (0, 1, 0, 1), 8, 3, 16, (1, 1)),   # padding on one side only
    (12, 3, (1, 2), (0, 0, 0, 0), 11, 2, 33, (1, 1)), # no padding; columns the windows skip
    (8, 3, (1, 1), (2, 2, 1, 1), 8, 2, 8, (2, 1)),    # dilated rows
    (8, 3, (1, 1), (1, 1, 2, 2), 8, 2, 8, (1, 2)),    # dilated columns: windows copied
    (16, 5, (1, 1), (2, 2, 2, 2), 14, 40, 64, (1, 1)),  # many rows, both threads, rows crossing images
])
def test_conv_from_floats_quantizes_each_image_and_reads_its_windows(kernel, C, k, strides, pads, W, n, N,
                                                                     dilation):
    x, w, ws, bias, packed, colsum, scale, qx = _conv_case(np.random.default_rng(C * k), n, 9, W, C, k, N)
    cols = _windows(qx, k, k, strides, pads, dilation)
    sums = cols @ w.reshape(-1, N).astype(np.int64)
    ref = sums / (ws.astype(np.float64) * scale.astype(np.float64)) + bias
    out = _out(ref.shape, 0)
    _cpu.qconv2d_fused(_cpu.from_numpy(x), list(x.shape), 0.0, list(w.shape), packed, colsum, _cpu.from_numpy(ws),
                       _cpu.from_numpy(bias), None, None, None, None, 0.0, -np.inf, np.inf, out, list(ref.shape), 0.0,
                       None, list(strides), list(dilation), list(pads))
    np.testing.assert_allclose(_read(out, ref.shape, 0), ref, rtol=1e-5, atol=1e-5)


def _max_pool(v, ph, pw):
    """Max pooling (window = strides, "valid") of (n, h, w, c)."""
    n, h, w, c = v.shape
    h, w = h // ph * ph, w // pw * pw
    return v[:, :h, :w].reshape(n, h // ph, ph, w // pw, pw, c).max(axis=(2, 4))


@pytest.mark.parametrize("C,k,pads,H,W,N,pool,bn", [
    (1, 5, (2, 2, 2, 2), 12, 12, 32, (2, 2), False),  # the MNIST convnet's first layer
    (8, 5, (2, 2, 2, 2), 9, 11, 40, (2, 2), False),   # ... its second (C % 4 == 0: windows in place)
    (4, 3, (1, 1, 1, 1), 10, 9, 16, (3, 2), True),    # odd sizes: the last rows and columns dropped
    (3, 3, (0, 0, 0, 0), 8, 8, 8, (2, 1), True),
    (4, 1, (0, 0, 0, 0), 6, 6, 20, (2, 2), False),    # a 1x1 convolution (else its own product) pooled
    (8, 3, (1, 1, 1, 1), 4, 4, 8, (5, 5), False),     # a window larger than the output: nothing left
])
def test_conv_with_max_pooling_pools_each_window_after_the_epilogue(kernel, C, k, pads, H, W, N, pool, bn):
    rng = np.random.default_rng(C * k + pool[0])
    x, w, ws, bias, packed, colsum, scale, qx = _conv_case(rng, 5, H, W, C, k, N)
    norm = _bn(rng, N) if bn else None
    sums = _windows(qx, k, k, (1, 1), pads) @ w.reshape(-1, N).astype(np.int64)
    F, G = _fold(ws, bias, norm, 1e-3, 1.0)
    ref = _max_pool(np.maximum(sums * F / scale.astype(np.float64) + G, 0), *pool)
    out = _out(ref.shape, 0)
    nb = [None] * 4 if norm is None else [_cpu.from_numpy(v) for v in norm]
    _cpu.qconv2d_fused(_cpu.from_numpy(x), list(x.shape), 0.0, list(w.shape), packed, colsum, _cpu.from_numpy(ws),
                       _cpu.from_numpy(bias), *nb, 1e-3, 0.0, np.inf, out, list(ref.shape), 0.0, None, [1, 1],
                       [1, 1], list(pads), list(pool))
    np.testing.assert_allclose(_read(out, ref.shape, 0), ref, rtol=1e-5, atol=1e-5)


def test_a_pooled_conv_keeps_a_nan_image_nan_and_checks_its_arguments(kernel):
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (3, 8, 8, 4)).astype(np.float32)
    x[1, 5, 6, 2] = np.nan
    w = rng.integers(-127, 128, (3, 3, 4, 16)).astype(np.int8)
    packed, colsum = _pack(w.reshape(-1, 16))
    ws = _cpu.from_numpy(np.full(16, 40, np.float32))

    def call(os, pool, out=None, x_step=0.0, out_step=0.0, xb=None):
        out = out if out is not None else _out(os, out_step)
        _cpu.qconv2d_fused(xb if xb is not None else _cpu.from_numpy(x), [3, 8, 8, 4], x_step, [3, 3, 4, 16], packed,
                           colsum, ws, None, None, None, None, None, 0.0, -np.inf, np.inf, out, list(os), out_step,
                           None, [1, 1], [1, 1], [1, 1, 1, 1], pool)
        return out
    y = _read(call((3, 4, 4, 16), [2, 2]), (3, 4, 4, 16), 0)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()
    with pytest.raises(ValueError, match=r"max-pooled by \(2, 2\); expected \(3, 4, 4, 16\)"):
        call((3, 8, 8, 16), [2, 2])
    with pytest.raises(ValueError, match="pool must be empty or two window sizes"):
        call((3, 4, 4, 16), [2, 2, 1])
    with pytest.raises(ValueError, match="pool must be empty or two window sizes"):
        call((3, 4, 4, 16), [0, 2])
    with pytest.raises(ValueError, match="reads and writes float32"):
        call((3, 4, 4, 16), [2, 2], out_step=6 / 255)
    # (1, 1) and [] are no pooling
    np.testing.assert_array_equal(_read(call((3, 8, 8, 16), [1, 1]), (3, 8, 8, 16), 0),
                                  _read(call((3, 8, 8, 16), []), (3, 8, 8, 16), 0))


@pytest.mark.parametrize("C", [3, 4])  # 4: windows read in place on VNNI and AVX2
def test_nan_images_are_marked_and_come_out_nan(kernel, C):
    rng = np.random.default_rng(5)
    n, H, W, N = 3, 6, 6, 16
    x = rng.uniform(-1, 1, (n, H, W, C)).astype(np.float32)
    x[1, 2, 3, 1] = np.nan
    w = rng.integers(-127, 128, (3, 3, C, N)).astype(np.int8)
    ws = np.full(N, 40, np.float32)
    packed, colsum = _pack(w.reshape(-1, N))
    flags = _cpu.from_numpy(np.zeros(n, np.int32))
    mid = (n, H, W, N)
    b = _out(mid, 6 / 255)
    _cpu.qconv2d_fused(_cpu.from_numpy(x), list(x.shape), 0.0, list(w.shape), packed, colsum, _cpu.from_numpy(ws),
                       None, None, None, None, None, 0.0, 0.0, 6.0, b, list(mid), 6 / 255, flags, [1, 1], [1, 1],
                       [1, 1, 1, 1])
    np.testing.assert_array_equal(_cpu.to_numpy(flags, [n]), [0, 1, 0])
    dw = rng.integers(-127, 128, (3, 3, N, 1)).astype(np.int8)
    out = _out(mid, 0)
    _cpu.qdepthwise2d_fused(b, list(mid), 6 / 255, _cpu.from_numpy(dw), list(dw.shape), _cpu.from_numpy(ws[:N]), None,
                            None, None, None, None, 0.0, -np.inf, np.inf, out, list(mid), 0.0, flags, [1, 1], [1, 1],
                            [1, 1, 1, 1])
    y = _read(out, mid, 0)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()


def test_fused_kernels_check_their_arguments():
    x = _cpu.from_numpy(np.zeros((1, 4, 4, 3), np.float32))
    w = np.zeros((3, 3, 3, 4), np.int8)
    packed, colsum = _pack(w.reshape(-1, 4))
    ws = _cpu.from_numpy(np.ones(4, np.float32))
    out = _cpu.Buffer(16 * 4, 0)
    args = dict(strides=[1, 1], dilation=[1, 1], pads=[1, 1, 1, 1])

    def conv(x_, xs, x_step, lo=0.0, hi=6.0, o=out, out_step=0.0):
        _cpu.qconv2d_fused(x_, xs, x_step, list(w.shape), packed, colsum, ws, None, None, None, None, None, 0.0, lo,
                           hi, o, [1, 4, 4, 4], out_step, None, *args.values())
    conv(x, [1, 4, 4, 3], 0.0)
    with pytest.raises(ValueError, match="byte input takes a 1x1"):
        conv(_cpu.Buffer(48, 4), [1, 4, 4, 3], 6 / 255)
    with pytest.raises(ValueError, match="clamp starts at"):
        conv(x, [1, 4, 4, 3], 0.0, lo=-1.0, o=_cpu.Buffer(64, 4), out_step=6 / 255)
    with pytest.raises(ValueError, match="reversed"):
        conv(x, [1, 4, 4, 3], 0.0, lo=2.0, hi=1.0)
    with pytest.raises((ValueError, TypeError)):
        conv(x, [1, 4, 4, 3], 0.0, o=_cpu.Buffer(64, 4))  # a byte buffer for a float output
    with pytest.raises(ValueError, match="x_step"):
        conv(x, [1, 4, 4, 3], -1.0)
    with pytest.raises(ValueError, match="mean and variance"):
        _cpu.qconv2d_fused(x, [1, 4, 4, 3], 0.0, list(w.shape), packed, colsum, ws, None, ws, None, None, None, 1e-3,
                           0.0, 6.0, out, [1, 4, 4, 4], 0.0, None, [1, 1], [1, 1], [1, 1, 1, 1])


def test_byte_activations_read_back_as_floats_with_marked_images_nan():
    import lamina
    from lamina import layers
    from lamina.backend import quantization as bq
    lamina.utils.set_random_seed(0)
    conv = layers.Conv2D(4, 1, use_bias=False)
    x = np.random.default_rng(8).uniform(-1, 1, (2, 3, 3, 5)).astype(np.float32)
    x[1, 0, 0, 0] = np.nan
    conv(x)
    conv.quantize("int8")
    b = bq.fused_conv(lamina.convert_to_tensor(x), "conv", conv.kernel, conv._int8_packed, conv.kernel_scale, None,
                      (1, 1), (1, 1), (0, 0, 0, 0), (3, 3), lo=0.0, hi=6.0, byte_step=6 / 255)
    assert isinstance(b, bq.ByteActivation) and b.shape == (2, 3, 3, 4)
    np.testing.assert_array_equal(b.flags.numpy(), [0, 1])
    f = bq.to_float(b).numpy()
    raw = _cpu.to_numpy(b._buf, list(b.shape)).view(np.uint8)
    np.testing.assert_allclose(f[0], raw[0] * np.float32(6 / 255), rtol=1e-6)
    assert np.isnan(f[1]).all()
    ref = np.clip(np.asarray(conv(x[:1])), 0, 6)
    np.testing.assert_allclose(f[0], ref[0], atol=6 / 255)


def test_depthwise_from_bytes_with_a_depth_multiplier(kernel):
    rng = np.random.default_rng(9)
    n, H, W, C, dm, step = 2, 6, 9, 5, 3, 6 / 255
    x = rng.integers(0, 256, (n, H, W, C)).astype(np.uint8)
    w = rng.integers(-127, 128, (3, 3, C, dm)).astype(np.int8)
    ws = (rng.random(C * dm) * 50 + 10).astype(np.float32)
    sums = _depthwise_sums(x, w, (2, 1), (1, 1, 1, 1))
    F, G = _fold(ws, None, None, 0.0, step)
    out = _out(sums.shape, 0)
    _cpu.qdepthwise2d_fused(_bytes(x), list(x.shape), step, _cpu.from_numpy(w), list(w.shape), _cpu.from_numpy(ws),
                            None, None, None, None, None, 0.0, -np.inf, np.inf, out, list(sums.shape), 0.0, None,
                            [2, 1], [1, 1], [1, 1, 1, 1])
    np.testing.assert_allclose(_read(out, sums.shape, 0), sums * F + G, rtol=1e-5, atol=1e-5)
