"""Tests for backend/convolution.py: conv / conv1d / conv2d, max_pool and average_pool, forward
and backward, against naive loop-based numpy references."""
import itertools
import math

import numpy as np
import pytest

import lamina
from lamina import ops
from opcheck import check_forward, check_grad


# ---- numpy references (direct loops, no im2col) ---------------------------------------------------

def _pair(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def _geometry(size, k, stride, dilation, padding):
    """(output size, pad before) by the TF/Keras rule."""
    eff = (k - 1) * dilation + 1
    if padding.lower() == "valid":
        return (size - eff) // stride + 1, 0
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + eff - size, 0)
    return out, total // 2


def conv_ref(x, w, strides=1, padding="valid", dilation_rate=1):
    x, w = np.asarray(x), np.asarray(w)
    one_d = x.ndim == 3
    if one_d:
        x, w = x[:, None], w[None]
    nsp = 1 if one_d else 2
    sh, sw = (1,) + _pair(strides, 1) if one_d else _pair(strides, 2)
    dh, dw = (1,) + _pair(dilation_rate, 1) if one_d else _pair(dilation_rate, 2)
    del nsp
    n, h, wd, c = x.shape
    kh, kw, _, o = w.shape
    oh, pt = _geometry(h, kh, sh, dh, padding)
    ow, pl = _geometry(wd, kw, sw, dw, padding)
    out = np.zeros((n, oh, ow, o), dtype=np.result_type(x, w))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                ih = i * sh - pt + a * dh
                if not 0 <= ih < h:
                    continue
                for b in range(kw):
                    iw = j * sw - pl + b * dw
                    if 0 <= iw < wd:
                        out[:, i, j, :] += x[:, ih, iw, :] @ w[a, b]
    return out[:, 0] if one_d else out


def conv_grads_ref(x, w, g, strides=1, padding="valid", dilation_rate=1):
    """Exact gradients of sum(conv_ref(x, w) * g) (2-D), by scatter loops in float64."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    sh, sw = _pair(strides, 2)
    dh, dw_ = _pair(dilation_rate, 2)
    n, h, wd, c = x.shape
    kh, kw, _, o = w.shape
    oh, pt = _geometry(h, kh, sh, dh, padding)
    ow, pl = _geometry(wd, kw, sw, dw_, padding)
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                ih = i * sh - pt + a * dh
                if not 0 <= ih < h:
                    continue
                for b in range(kw):
                    iw = j * sw - pl + b * dw_
                    if 0 <= iw < wd:
                        dx[:, ih, iw, :] += g[:, i, j, :] @ w[a, b].T
                        dw[a, b] += x[:, ih, iw, :].T @ g[:, i, j, :]
    return dx, dw


def pool_ref(x, pool_size, strides=None, padding="valid", mode="max"):
    x = np.asarray(x)
    one_d = x.ndim == 3
    if one_d:
        x = x[:, None]
    nsp = 1 if one_d else 2
    ph, pw = (1,) + _pair(pool_size, 1) if one_d else _pair(pool_size, 2)
    st = _pair(pool_size if strides is None else strides, nsp)
    sh, sw = (1,) + st if one_d else st
    n, h, wd, c = x.shape
    oh, pt = _geometry(h, ph, sh, 1, padding)
    ow, pl = _geometry(wd, pw, sw, 1, padding)
    out = np.zeros((n, oh, ow, c), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * sh - pt, j * sw - pl
            win = x[:, max(h0, 0):min(h0 + ph, h), max(w0, 0):min(w0 + pw, wd), :]
            out[:, i, j, :] = win.max(axis=(1, 2)) if mode == "max" else win.mean(axis=(1, 2))
    return out[:, 0] if one_d else out


def max_pool_grad_ref(x, g, pool_size, strides=None, padding="valid"):
    """Gradient of max pooling with the first maximum (row-major in the window) taking it all."""
    x, g = np.asarray(x), np.asarray(g, np.float64)
    ph, pw = _pair(pool_size, 2)
    sh, sw = _pair(pool_size if strides is None else strides, 2)
    n, h, wd, c = x.shape
    oh, pt = _geometry(h, ph, sh, 1, padding)
    ow, pl = _geometry(wd, pw, sw, 1, padding)
    dx = np.zeros(x.shape, np.float64)
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                h0, w0 = max(i * sh - pt, 0), max(j * sw - pl, 0)
                h1, w1 = min(i * sh - pt + ph, h), min(j * sw - pl + pw, wd)
                for ch in range(c):
                    win = x[b, h0:h1, w0:w1, ch]
                    a, bb = np.unravel_index(np.argmax(win), win.shape)
                    dx[b, h0 + a, w0 + bb, ch] += g[b, i, j, ch]
    return dx


@pytest.fixture(params=["split", "batch"])
def schedule(request):
    """Runs a test under both ways of spreading a convolution over threads (see conv.cpp):
    chunks split across threads, and images split across threads (needs >= 2 threads)."""
    k = lamina.get_device("cpu").kernels
    threads = k.num_threads()
    if request.param == "batch" and threads < 2:
        k.set_num_threads(2)
    old = k.conv_schedule(1 if request.param == "split" else 2)
    yield request.param
    k.conv_schedule(old)
    k.set_num_threads(threads)


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.fixture
def small_chunks():
    """Forces many small im2col chunks (several per image) to exercise the chunk boundaries."""
    k = lamina.get_device("cpu").kernels
    old = k.conv_chunk_bytes(1024)
    yield
    k.conv_chunk_bytes(old)


# ---- conv forward ---------------------------------------------------------------------------------

KERNELS = [(1, 1), (3, 3), (5, 5), (2, 3)]


@pytest.mark.parametrize("strides,padding,dilation", list(itertools.product([1, 2, 3], ["valid", "same"], [1, 2])))
def test_conv2d_forward_matches_reference(rng, strides, padding, dilation):
    for (kh, kw), cin, batch in itertools.product(KERNELS, [1, 3], [1, 3]):
        x = f32(rng, batch, 11, 10, cin)
        w = f32(rng, kh, kw, cin, 4)
        check_forward(ops.conv, conv_ref, [x, w], atol=1e-4, rtol=1e-4,
                      strides=strides, padding=padding, dilation_rate=dilation)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv2d_forward_tuple_args_and_odd_sizes(rng, padding):
    x = f32(rng, 2, 13, 7, 5)
    w = f32(rng, 3, 2, 5, 3)
    check_forward(ops.conv2d, conv_ref, [x, w], atol=1e-4, rtol=1e-4,
                  strides=(2, 1), padding=padding, dilation_rate=(1, 3))
    check_forward(ops.conv2d, conv_ref, [x, w], atol=1e-4, rtol=1e-4,
                  strides=[3, 2], padding=padding.upper(), dilation_rate=[2, 1])


@pytest.mark.parametrize("strides,padding,dilation", list(itertools.product([1, 2, 3], ["valid", "same"], [1, 2])))
def test_conv1d_forward_matches_reference(rng, strides, padding, dilation):
    for k, cin, batch in itertools.product([1, 2, 3, 5], [1, 3], [1, 2]):
        x = f32(rng, batch, 17, cin)
        w = f32(rng, k, cin, 6)
        check_forward(ops.conv1d, conv_ref, [x, w], atol=1e-4, rtol=1e-4,
                      strides=strides, padding=padding, dilation_rate=dilation)
        check_forward(ops.conv, conv_ref, [x, w], atol=1e-4, rtol=1e-4,
                      strides=(strides,), padding=padding, dilation_rate=(dilation,))


def test_conv_1x1_direct_path_and_strided_1x1(rng):
    x = f32(rng, 3, 6, 5, 7)
    w = f32(rng, 1, 1, 7, 4)
    for s, p in [(1, "valid"), (1, "same"), (2, "valid"), (2, "same"), (3, "same")]:
        check_forward(ops.conv, conv_ref, [x, w], atol=1e-4, rtol=1e-4, strides=s, padding=p)


def test_conv_window_equal_to_input_and_same_larger_than_input(rng):
    x = f32(rng, 2, 4, 3, 2)
    w = f32(rng, 4, 3, 2, 5)
    y = check_forward(ops.conv, conv_ref, [x, w], atol=1e-4, rtol=1e-4, padding="valid")
    assert y.shape == (2, 1, 1, 5)
    w = f32(rng, 7, 6, 2, 3)  # larger than the input: fine with "same"
    check_forward(ops.conv, conv_ref, [x, w], atol=1e-4, rtol=1e-4, padding="same", strides=2)


def test_conv_larger_shapes_parallel_and_chunked(rng, small_chunks, schedule):
    # Above the parallel grain, and with chunks that split images: compare with the default chunks.
    x = f32(rng, 5, 20, 18, 5)
    w = f32(rng, 3, 3, 5, 7)
    for s, p, d in [(1, "same", 1), (2, "valid", 1), (1, "same", 2), (3, "same", 1)]:
        check_forward(ops.conv, conv_ref, [x, w], atol=1e-4, rtol=1e-4, strides=s, padding=p, dilation_rate=d)


def test_conv_channels_first_matches_channels_last(rng):
    x = f32(rng, 2, 9, 8, 3)
    w = f32(rng, 3, 3, 3, 4)
    want = conv_ref(x, w, strides=2, padding="same")
    got = ops.conv(np.transpose(x, (0, 3, 1, 2)), w, strides=2, padding="same", data_format="channels_first")
    np.testing.assert_allclose(got.numpy(), np.transpose(want, (0, 3, 1, 2)), atol=1e-4, rtol=1e-4)
    x1 = f32(rng, 2, 11, 3)
    w1 = f32(rng, 3, 3, 5)
    got = ops.conv(np.transpose(x1, (0, 2, 1)), w1, padding="same", data_format="CHANNELS_FIRST")
    np.testing.assert_allclose(got.numpy(), np.transpose(conv_ref(x1, w1, padding="same"), (0, 2, 1)),
                               atol=1e-4, rtol=1e-4)


def test_conv_size_zero_dimensions(rng):
    w = f32(rng, 3, 3, 2, 4)
    y = ops.conv(np.zeros((0, 5, 5, 2), np.float32), w, padding="same")
    assert y.shape == (0, 5, 5, 4)
    y = ops.conv(np.zeros((2, 0, 5, 2), np.float32), w, padding="same")
    assert y.shape == (2, 0, 5, 4)
    y = ops.conv(f32(rng, 2, 5, 5, 2), np.zeros((3, 3, 2, 0), np.float32))
    assert y.shape == (2, 3, 3, 0)
    y = ops.conv(np.zeros((2, 5, 5, 0), np.float32), np.zeros((3, 3, 0, 4), np.float32), padding="same")
    assert y.shape == (2, 5, 5, 4)
    np.testing.assert_array_equal(y.numpy(), 0.0)
    # gradients of empty problems have the right shapes (and are zero)
    x = lamina.Variable(np.zeros((0, 5, 5, 2), np.float32))
    wv = lamina.Variable(w)
    with lamina.GradientTape() as tape:
        loss = ops.sum(ops.conv(x, wv, padding="same"))
    gx, gw = tape.gradient(loss, [x, wv])
    assert gx.shape == x.shape and gw.shape == w.shape
    np.testing.assert_array_equal(gw.numpy(), 0.0)


# ---- conv gradients -------------------------------------------------------------------------------

@pytest.mark.parametrize("kshape,strides,padding,dilation", [
    ((3, 3), 1, "same", 1),
    ((3, 3), 2, "valid", 1),
    ((2, 3), 2, "same", 1),
    ((3, 2), 1, "same", 2),
    ((1, 1), 1, "valid", 1),   # direct GEMM path
    ((1, 1), 2, "same", 1),
    ((5, 5), 3, "same", 1),
])
def test_conv2d_gradients(rng, kshape, strides, padding, dilation):
    x = f32(rng, 2, 6, 5, 2)
    w = f32(rng, *kshape, 2, 3)
    check_grad(ops.conv, conv_ref, [x, w], atol=2e-3, rtol=2e-3,
               strides=strides, padding=padding, dilation_rate=dilation)


@pytest.mark.parametrize("k,strides,padding,dilation", [(3, 1, "same", 1), (2, 2, "valid", 1), (3, 2, "same", 2)])
def test_conv1d_gradients(rng, k, strides, padding, dilation):
    x = f32(rng, 2, 9, 3)
    w = f32(rng, k, 3, 2)
    check_grad(ops.conv1d, conv_ref, [x, w], atol=2e-3, rtol=2e-3,
               strides=strides, padding=padding, dilation_rate=dilation)


def _conv_grads(x, w, g, **kw):
    xv, wv = lamina.Variable(x), lamina.Variable(w)
    with lamina.GradientTape() as tape:
        y = ops.conv(xv, wv, **kw)
    return tape.gradient(y, [xv, wv], output_gradients=g)


@pytest.mark.parametrize("chunked", [False, True])
def test_conv_gradients_larger_shapes(rng, request, chunked, schedule):
    if chunked:
        request.getfixturevalue("small_chunks")
    x = f32(rng, 5, 19, 17, 6)
    for kshape, s, p, d in [((3, 3), 1, "same", 1), ((5, 5), 2, "same", 1), ((3, 2), 2, "valid", 2),
                            ((1, 1), 1, "valid", 1), ((2, 2), 3, "same", 1)]:
        w = f32(rng, *kshape, 6, 9)
        y_shape = conv_ref(x, w, strides=s, padding=p, dilation_rate=d).shape
        g = f32(rng, *y_shape)
        gx, gw = _conv_grads(x, w, g, strides=s, padding=p, dilation_rate=d)
        want_x, want_w = conv_grads_ref(x, w, g, strides=s, padding=p, dilation_rate=d)
        np.testing.assert_allclose(gx.numpy(), want_x, atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(gw.numpy(), want_w, atol=1e-3, rtol=1e-3)


def test_conv_only_kernel_gradient_when_input_is_constant(rng):
    x = lamina.convert_to_tensor(f32(rng, 2, 7, 7, 1))
    w = lamina.Variable(f32(rng, 5, 5, 1, 3))
    with lamina.GradientTape() as tape:
        y = ops.conv(x, w, padding="same")
    gx, gw = tape.gradient(y, [x, w])
    assert gx is None
    _, want_w = conv_grads_ref(x.numpy(), w.numpy(), np.ones(y.shape), padding="same")
    np.testing.assert_allclose(gw.numpy(), want_w, atol=1e-3, rtol=1e-3)


def test_conv_gradient_channels_first(rng):
    x = f32(rng, 2, 2, 5, 4)  # (N, C, H, W)
    w = f32(rng, 3, 3, 2, 3)

    def ref(x, w):
        y = conv_ref(np.transpose(x, (0, 2, 3, 1)), w, padding="same")
        return np.transpose(y, (0, 3, 1, 2))
    check_grad(lambda a, b: ops.conv(a, b, padding="same", data_format="channels_first"), ref, [x, w],
               atol=2e-3, rtol=2e-3)


# ---- conv errors ----------------------------------------------------------------------------------

def test_conv_errors_rank_and_channels(rng):
    x, w = f32(rng, 2, 5, 5, 3), f32(rng, 3, 3, 4, 2)
    with pytest.raises(ValueError, match=r"3 channels.*\(2, 5, 5, 3\).*4 input channels.*\(3, 3, 4, 2\)"):
        ops.conv(x, w)
    with pytest.raises(ValueError, match=r"rank 3.*rank 4.*\(5, 5\)"):
        ops.conv(f32(rng, 5, 5), w)
    with pytest.raises(ValueError, match=r"depthwise_conv has no 3-D \(rank 5\) form"):
        ops.depthwise_conv(f32(rng, 1, 2, 2, 2, 1), f32(rng, 1, 1, 1, 1, 1))  # (ops.conv has: test_conv3d.py)
    with pytest.raises(ValueError, match=r"kernel of rank 4.*\(3, 3, 3\)"):
        ops.conv(x, f32(rng, 3, 3, 3))
    with pytest.raises(ValueError, match=r"kernel of rank 3.*\(3, 3, 3, 2\)"):
        ops.conv(f32(rng, 2, 5, 3), f32(rng, 3, 3, 3, 2))
    with pytest.raises(ValueError, match=r"conv2d: expected inputs of rank 4.*\(2, 5, 3\)"):
        ops.conv2d(f32(rng, 2, 5, 3), f32(rng, 3, 3, 2))
    with pytest.raises(ValueError, match=r"conv1d: expected inputs of rank 3.*\(2, 5, 5, 3\)"):
        ops.conv1d(x, w)
    with pytest.raises(ValueError, match=r"at least 1.*\(0, 3, 3, 2\)"):
        ops.conv(x, np.zeros((0, 3, 3, 2), np.float32))


@pytest.mark.parametrize("bad", [0, -1, 1.5, (1, 2, 3), (1,), (1, 0), "2", True, None])
def test_conv_errors_strides_and_dilation(rng, bad):
    x, w = f32(rng, 1, 6, 6, 2), f32(rng, 3, 3, 2, 2)
    with pytest.raises(ValueError, match=r"strides.*positive int.*received"):
        ops.conv(x, w, strides=bad)
    with pytest.raises(ValueError, match=r"dilation_rate.*positive int.*received"):
        ops.conv(x, w, dilation_rate=bad)


def test_conv_errors_padding_format_window(rng):
    x, w = f32(rng, 1, 6, 5, 2), f32(rng, 3, 3, 2, 2)
    with pytest.raises(ValueError, match=r"'valid' or 'same'.*'causal'"):
        ops.conv(x, w, padding="causal")
    with pytest.raises(ValueError, match=r"data_format.*'nhwc'"):
        ops.conv(x, w, data_format="nhwc")
    with pytest.raises(ValueError, match=r"size 7.*more than the input's 6.*\(1, 6, 5, 2\).*padding='same'"):
        ops.conv(x, f32(rng, 7, 3, 2, 2))
    with pytest.raises(ValueError, match=r"dilation 3 spans 7.*input's 5"):
        ops.conv(x, w, dilation_rate=(1, 3))


def test_conv_errors_dtype_and_device(rng):
    x, w = f32(rng, 1, 6, 6, 2), f32(rng, 3, 3, 2, 2)
    with pytest.raises(TypeError, match=r"float32 input.*int32.*\(1, 6, 6, 2\)"):
        ops.conv(x.astype(np.int32), w)
    with pytest.raises(TypeError, match=r"float32 kernel.*int32.*\(3, 3, 2, 2\)"):
        ops.conv(x, w.astype(np.int32))
    xt = lamina.convert_to_tensor(x)
    with lamina.device("cpu:1"):
        wt = lamina.convert_to_tensor(w)
    with pytest.raises(ValueError, match=r"different devices.*cpu:0.*\(1, 6, 6, 2\).*cpu:1.*\(3, 3, 2, 2\)"):
        ops.conv(xt, wt)


def test_conv_kernels_reject_inconsistent_arguments(rng):
    k = lamina.get_device("cpu").kernels
    x = lamina.convert_to_tensor(f32(rng, 1, 5, 5, 2))
    w = lamina.convert_to_tensor(f32(rng, 3, 3, 2, 4))
    out = lamina.backend.tensor.empty((1, 3, 3, 4))
    with pytest.raises(ValueError, match=r"output shape \(1, 3, 3, 4\) does not match.*expected \(1, 3, 5, 4\)"):
        k.conv2d_forward(x._buf, (1, 5, 5, 2), w._buf, (3, 3, 2, 4), out._buf, (1, 3, 3, 4), (1, 1), (1, 1), (0, 0, 1, 1))
    with pytest.raises(ValueError, match=r"output holds 36 elements.*\(1, 4, 3, 4\)"):
        k.conv2d_forward(x._buf, (1, 5, 5, 2), w._buf, (3, 3, 2, 4), out._buf, (1, 4, 3, 4), (1, 1), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"holds 50 elements.*\(1, 5, 5, 3\)"):
        k.conv2d_forward(x._buf, (1, 5, 5, 3), w._buf, (3, 3, 3, 4), out._buf, (1, 3, 3, 4), (1, 1), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"strides must be >= 1"):
        k.conv2d_forward(x._buf, (1, 5, 5, 2), w._buf, (3, 3, 2, 4), out._buf, (1, 3, 3, 4), (0, 1), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"padding must be non-negative"):
        k.conv2d_forward(x._buf, (1, 5, 5, 2), w._buf, (3, 3, 2, 4), out._buf, (1, 3, 3, 4), (1, 1), (1, 1), (0, 0, -1, 1))
    with pytest.raises(TypeError, match=r"int32"):
        xi = lamina.convert_to_tensor(np.zeros((1, 5, 5, 2), np.int32))
        k.conv2d_forward(xi._buf, (1, 5, 5, 2), w._buf, (3, 3, 2, 4), out._buf, (1, 3, 3, 4), (1, 1), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"argmax indices"):
        k.pool2d_backward(0, (1, 5, 5, 2), out._buf, (1, 3, 3, 4), x._buf, (2, 2), (2, 2), (0, 0, 0, 0), None)


# ---- pooling --------------------------------------------------------------------------------------

POOLS = [1, 2, 3, (2, 3)]


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_pool2d_forward_matches_reference(rng, mode, padding):
    fn = ops.max_pool if mode == "max" else ops.average_pool
    for pool, strides, batch, c in itertools.product(POOLS, [None, 1, 2, 3], [1, 3], [1, 4]):
        x = f32(rng, batch, 9, 7, c)
        check_forward(fn, lambda a, **kw: pool_ref(a, mode=mode, **kw), [x], atol=1e-5, rtol=1e-5,
                      pool_size=pool, strides=strides, padding=padding)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_pool1d_forward_matches_reference(rng, mode, padding):
    fn = ops.max_pool if mode == "max" else ops.average_pool
    for pool, strides in itertools.product([1, 2, 3, 4], [None, 1, 2, 3]):
        x = f32(rng, 2, 11, 3)
        check_forward(fn, lambda a, **kw: pool_ref(a, mode=mode, **kw), [x], atol=1e-5, rtol=1e-5,
                      pool_size=pool, strides=strides, padding=padding)
        check_forward(fn, lambda a, **kw: pool_ref(a, mode=mode, **kw), [x], atol=1e-5, rtol=1e-5,
                      pool_size=(pool,), strides=None if strides is None else (strides,), padding=padding)


def test_average_pool_same_divides_by_valid_count():
    x = np.ones((1, 3, 3, 1), np.float32)
    y = ops.average_pool(x, 2, strides=2, padding="same").numpy()
    np.testing.assert_allclose(y, 1.0)  # padding is not counted: still ones at the border
    x = np.arange(5, dtype=np.float32).reshape(1, 5, 1)
    y = ops.average_pool(x, 2, padding="same").numpy().ravel()
    np.testing.assert_allclose(y, [0.5, 2.5, 4.0])


def test_pool_channels_first_and_larger_shapes(rng):
    x = f32(rng, 3, 4, 10, 9)  # (N, C, H, W)
    got = ops.max_pool(x, 3, 2, "same", data_format="channels_first").numpy()
    want = np.transpose(pool_ref(np.transpose(x, (0, 2, 3, 1)), 3, 2, "same"), (0, 3, 1, 2))
    np.testing.assert_allclose(got, want)
    x = f32(rng, 4, 30, 29, 33)  # above the parallel grain
    for mode, fn in [("max", ops.max_pool), ("avg", ops.average_pool)]:
        check_forward(fn, lambda a, **kw: pool_ref(a, mode=mode, **kw), [x], atol=1e-5, rtol=1e-5,
                      pool_size=(3, 2), strides=(2, 3), padding="same")


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("pool,strides,padding", [(3, 1, "same"), (3, 2, "valid"), ((3, 2), (1, 2), "same"),
                                                  ((2, 3), (3, 1), "same"), (2, 3, "valid")])
def test_pool_many_channels_above_the_grain(rng, mode, pool, strides, padding):
    """InceptionV3-like pools: average pooling with windows overlapping along the row sums input
    columns first (separable); max pooling gives the same values without a tape (no argmax) as
    with one."""
    fn = ops.max_pool if mode == "max" else ops.average_pool
    x = f32(rng, 3, 17, 15, 70)
    x[0, 2:5, 3:6, :3] = 1.5  # ties
    check_forward(fn, lambda a, **kw: pool_ref(a, mode=mode, **kw), [x], atol=1e-5, rtol=1e-5,
                  pool_size=pool, strides=strides, padding=padding)
    if mode == "max":
        xv = lamina.Variable(x)
        with lamina.GradientTape():
            taped = fn(xv, pool, strides, padding)
        assert taped._node is not None
        np.testing.assert_array_equal(fn(x, pool, strides, padding).numpy(), taped.numpy())


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("pool,strides,padding", [(2, None, "valid"), (3, 2, "same"), ((2, 3), 1, "same"),
                                                  (3, 3, "valid"), (2, 1, "valid")])
def test_pool2d_gradients(rng, mode, pool, strides, padding):
    fn = ops.max_pool if mode == "max" else ops.average_pool
    # distinct values, spaced well beyond the finite-difference step, so the argmax is stable
    x = (rng.permutation(2 * 7 * 6 * 2).reshape(2, 7, 6, 2) * 0.01).astype(np.float32)
    check_grad(lambda a: fn(a, pool, strides, padding), lambda a: pool_ref(a, pool, strides, padding, mode),
               [x], atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool1d_gradients(rng, mode):
    fn = ops.max_pool if mode == "max" else ops.average_pool
    x = (rng.permutation(2 * 13 * 3).reshape(2, 13, 3) * 0.01).astype(np.float32)
    for pool, strides, padding in [(3, 2, "same"), (2, None, "valid"), (4, 1, "same")]:
        check_grad(lambda a: fn(a, pool, strides, padding), lambda a: pool_ref(a, pool, strides, padding, mode),
                   [x], atol=2e-3, rtol=2e-3)


def _pool_grad(fn, x, g, *args):
    xv = lamina.Variable(x)
    with lamina.GradientTape() as tape:
        y = fn(xv, *args)
    return tape.gradient(y, xv, output_gradients=g).numpy()


def test_max_pool_ties_send_gradient_to_first_maximum():
    x = np.zeros((1, 4, 4, 1), np.float32)
    g = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    got = _pool_grad(ops.max_pool, x, g, 2, 1, "valid")
    want = np.zeros((4, 4))
    want[:3, :3] = g[0, :, :, 0]  # every window's first (top-left) element wins
    np.testing.assert_allclose(got[0, :, :, 0], want)
    np.testing.assert_allclose(got, max_pool_grad_ref(x, g, 2, 1, "valid"))


@pytest.mark.parametrize("pool,strides,padding", [(2, 1, "valid"), (3, 2, "same"), ((3, 2), (1, 2), "same")])
def test_max_pool_gradient_with_many_ties_larger(rng, pool, strides, padding):
    x = rng.integers(0, 3, (3, 17, 15, 40)).astype(np.float32)  # lots of ties, above the parallel grain
    xt = lamina.convert_to_tensor(x)
    y_shape = ops.max_pool(xt, pool, strides, padding).shape
    g = f32(rng, *y_shape)
    got = _pool_grad(ops.max_pool, x, g, pool, strides, padding)
    np.testing.assert_allclose(got, max_pool_grad_ref(x, g, pool, strides, padding), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("pool,shape", [(2, (16, 14, 40)), (3, (9, 12, 3)), ((2, 3), (10, 9, 33)), (1, (5, 4, 17))])
def test_max_pool_gradient_windows_tiling_the_image(rng, batch, pool, shape):
    """Windows that tile the image exactly (strides = window, no padding, sizes divisible) write
    every input pixel's gradient in one pass: the argmax's window gradient, else exactly 0 (also
    with batch 1, where channels are split across threads, and with ties)."""
    x = rng.integers(0, 3, (batch,) + shape).astype(np.float32)
    y_shape = ops.max_pool(lamina.convert_to_tensor(x), pool, None, "valid").shape
    g = f32(rng, *y_shape)
    for _ in range(2):  # the second time into recycled (not zeroed) memory
        got = _pool_grad(ops.max_pool, x, g, pool, None, "valid")
        np.testing.assert_array_equal(got, max_pool_grad_ref(x, g, pool, None, "valid").astype(np.float32))


def _relu_pool_grads(z, b, g, pool, strides, padding, fused, extra=None):
    """Gradients of sum(g * max_pool(bias_relu(z, b))) (+ sum(extra * y) when extra is given,
    y used twice) with respect to z and b, under a training step's tape (fused) or a plain one."""
    from lamina.backend.nn import bias_relu
    zv, bv = lamina.Variable(z), lamina.Variable(b)
    with lamina.GradientTape(_fused=fused) as tape:
        y = bias_relu(zv, bv)
        p = ops.max_pool(y, pool, strides, padding)
        loss = ops.sum(ops.multiply(p, g))
        if extra is not None:
            loss = ops.add(loss, ops.sum(ops.multiply(y, extra)))
    fused_node = p._node.inputs[0] is not y  # pooling's node skips y: it is on the pre-activation
    dz, db = tape.gradient(loss, [zv, bv])
    return np.asarray(dz), np.asarray(db), fused_node


@pytest.mark.parametrize("pool,strides,padding,shape", [(2, None, "valid", (3, 12, 10, 32)),
                                                        (3, 2, "same", (2, 11, 13, 5)),
                                                        ((2, 3), (1, 2), "same", (1, 9, 8, 17)),
                                                        (2, 1, "valid", (2, 7, 6, 4))])
def test_max_pool_over_bias_relu_fused_gradient(rng, pool, strides, padding, shape):
    """A training step's tape records max pooling over bias_relu's output as one node on the
    pre-activation (relu's mask applied to the pooled gradient, then one scatter): the
    pre-activation's gradient equals the unfused one exactly, the bias's up to summation order,
    also with overlapping windows, padding, ties and zeros, and with y used elsewhere too."""
    z = rng.integers(-2, 3, shape).astype(np.float32)  # ties, and windows whose maximum is 0
    b = rng.integers(-1, 2, shape[-1]).astype(np.float32)
    y_shape = ops.max_pool(lamina.convert_to_tensor(z), pool, strides, padding).shape
    g = f32(rng, *y_shape)
    for extra in (None, f32(rng, *shape)):
        dz0, db0, fused0 = _relu_pool_grads(z, b, g, pool, strides, padding, False, extra)
        dz1, db1, fused1 = _relu_pool_grads(z, b, g, pool, strides, padding, True, extra)
        assert not fused0 and fused1
        np.testing.assert_array_equal(dz1, dz0)
        np.testing.assert_allclose(db1, db0, rtol=1e-5, atol=1e-5)
        y = np.maximum(z + b, 0)
        want = max_pool_grad_ref(y, g, pool, strides, padding) * (y > 0)
        if extra is not None:
            want = want + extra * (y > 0)
        np.testing.assert_allclose(dz1, want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(db1, want.reshape(-1, shape[-1]).sum(0), rtol=1e-4, atol=1e-4)


def test_fused_tape_refuses_intermediate_sources_and_nested_tapes_do_not_fuse(rng):
    from lamina.backend.nn import bias_relu
    z, b = lamina.Variable(f32(rng, 1, 4, 4, 3)), lamina.Variable(f32(rng, 3))
    with lamina.GradientTape(_fused=True) as tape:
        y = bias_relu(z, b)
        p = ops.max_pool(y, 2)
        with lamina.GradientTape() as inner:  # a layer's own tape: it may ask for y2's gradient
            y2 = bias_relu(z, b)
            q = ops.sum(ops.max_pool(y2, 2))
        loss = ops.sum(p)
    assert p._node.inputs[0] is not y and q._node.inputs[0]._node.inputs[0] is y2
    with pytest.raises(ValueError, match="intermediate tensor"):
        tape.gradient(loss, [y])
    want = max_pool_grad_ref(np.asarray(y2), np.ones((1, 2, 2, 3), np.float32), 2, None, "valid")
    np.testing.assert_allclose(np.asarray(inner.gradient(q, [y2])[0]), want)


def test_average_pool_gradient_larger(rng):
    x = f32(rng, 1, 31, 29, 64)  # batch 1: the backward pass splits channels across threads
    y = pool_ref(x, 3, 2, "same", "avg")
    g = f32(rng, *y.shape)
    got = _pool_grad(ops.average_pool, x, g, 3, 2, "same")
    # reference: scatter g / count over each window
    want = np.zeros(x.shape)
    oh, pt = _geometry(31, 3, 2, 1, "same")
    ow, pl = _geometry(29, 3, 2, 1, "same")
    for i in range(oh):
        for j in range(ow):
            h0, h1 = max(i * 2 - pt, 0), min(i * 2 - pt + 3, 31)
            w0, w1 = max(j * 2 - pl, 0), min(j * 2 - pl + 3, 29)
            want[:, h0:h1, w0:w1, :] += g[:, i:i + 1, j:j + 1, :] / ((h1 - h0) * (w1 - w0))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_pool_no_indices_without_tape(rng):
    x = lamina.Variable(f32(rng, 1, 4, 4, 2))
    y = ops.max_pool(x, 2)
    assert y._node is None  # no tape: nothing recorded


def test_pool_errors(rng):
    x = f32(rng, 2, 5, 4, 3)
    with pytest.raises(ValueError, match=r"pool_size.*positive int.*received 0"):
        ops.max_pool(x, 0)
    with pytest.raises(ValueError, match=r"pool_size.*tuple of 2.*\(2, 2, 2\)"):
        ops.max_pool(x, (2, 2, 2))
    with pytest.raises(ValueError, match=r"strides.*received -1"):
        ops.average_pool(x, 2, -1)
    with pytest.raises(ValueError, match=r"'valid' or 'same'.*'full'"):
        ops.average_pool(x, 2, padding="full")
    with pytest.raises(ValueError, match=r"pool window of size 5 spans 5.*input's 4.*\(2, 5, 4, 3\)"):
        ops.max_pool(x, 5)
    with pytest.raises(ValueError, match=r"rank 3.*rank 4.*\(5, 4\)"):
        ops.max_pool(f32(rng, 5, 4), 2)
    with pytest.raises(TypeError, match=r"float32 input.*int64.*\(2, 5, 4, 3\)"):
        ops.max_pool(x.astype(np.int64), 2)
    # a too-large window is fine with "same" padding
    assert ops.max_pool(x, 7, padding="same").shape == (2, 1, 1, 3)


def test_ops_namespace_exports():
    for name in ["conv", "conv1d", "conv2d", "max_pool", "average_pool"]:
        assert getattr(ops, name).__wrapped__ is getattr(lamina.backend.convolution, name)
        assert name in lamina.backend.nn.__all__


@pytest.mark.parametrize("cin,cout", [(6, 9), (2, 40), (1, 32)])
def test_conv_kernel_gradient_both_layouts(rng, schedule, cin, cout):
    """The filter gradient is formed transposed (dout^T @ im2col) when the kernel has more rows
    (kh*kw*cin) than filters, directly otherwise: both against the reference, both schedules."""
    x = f32(rng, 4, 9, 8, cin)
    w = f32(rng, 3, 3, cin, cout)
    g = f32(rng, 4, 9, 8, cout)
    gx, gw = _conv_grads(x, w, g, padding="same")
    want_x, want_w = conv_grads_ref(x, w, g, padding="same")
    np.testing.assert_allclose(gx.numpy(), want_x, atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(gw.numpy(), want_w, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("kshape,cin,cout,strides,padding,dilation", [
    ((5, 5), 1, 32, 1, "same", 1),     # the MNIST convnet's first layer
    ((3, 3), 3, 32, 2, "valid", 1),    # InceptionV3's first layer
    ((3, 3), 3, 16, 2, "same", 1),
    ((2, 3), 4, 48, 1, "same", 2),
    ((4, 4), 4, 16, 3, "valid", 1),    # K = 64, the largest direct kernel
    ((1, 3), 2, 64, (2, 1), "same", 1),
])
def test_short_kernels_run_direct_and_match_the_reference(rng, schedule, kshape, cin, cout, strides, padding,
                                                         dilation):
    """Kernels of at most 64 rows with filters in multiples of 16 are summed straight from the
    image (batch schedule); the split schedule keeps im2col + GEMM: both against the reference."""
    for n in (1, 5):
        x = f32(rng, n, 11, 9, cin)
        w = f32(rng, *kshape, cin, cout)
        kw = dict(strides=strides, padding=padding, dilation_rate=dilation)
        want = conv_ref(x, w, **kw)
        np.testing.assert_allclose(ops.conv(x, w, **kw).numpy(), want, atol=1e-4, rtol=1e-4)
        g = f32(rng, *want.shape)
        gx, gw = _conv_grads(x, w, g, **kw)
        want_x, want_w = conv_grads_ref(x, w, g, **kw)
        np.testing.assert_allclose(gx.numpy(), want_x, atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(gw.numpy(), want_w, atol=1e-3, rtol=1e-3)


def test_short_kernel_on_an_image_too_large_to_pad_goes_through_im2col(rng, schedule):
    """A padded copy of each image over 16 MB is not made: im2col's bounded chunks instead."""
    x = f32(rng, 2, 1100, 1000, 4)  # 17.6 MB per image
    w = f32(rng, 3, 3, 4, 16)
    k = lamina.get_device("cpu").kernels
    k.conv_profile(True)
    got = ops.conv(x, w, padding="same").numpy()
    assert k.conv_profile(True)["im2col"] > 0
    want = conv_ref(x[:, :40], w, padding="same")  # the first rows (their windows do not reach row 40)
    np.testing.assert_allclose(got[:, :39], want[:, :39], atol=1e-3, rtol=1e-4)


# ---- many input channels: the direct kernels (conv_direct.cpp, AVX-512 and AVX2) -----------------

_ISAS = ("generic", "avx2", "avx512")


def _vector_isas():
    """The vector instruction sets the direct kernels have and this CPU runs."""
    from lamina.backend import _cpu
    return [i for i in _ISAS[1:] if _ISAS.index(i) <= _ISAS.index(_cpu.hardware_simd_isa())]


@pytest.fixture(params=["avx2", "avx512"])
def vector_isa(request):
    """Each test runs once per vector ISA of the direct kernels (set_simd_isa), skipping those the
    CPU lacks: an AVX-512 machine checks both sets of tiles and transforms."""
    from lamina.backend import _cpu
    if request.param not in _vector_isas():
        pytest.skip(f"this CPU has no {request.param} (it has {_cpu.hardware_simd_isa()})")
    before = _cpu.simd_isa()
    _cpu.set_simd_isa(request.param)
    yield request.param
    _cpu.set_simd_isa(before)


@pytest.mark.parametrize("kshape,cin,cout,strides,padding,dilation,size", [
    ((5, 5), 32, 64, 1, "same", 1, (14, 14)),      # the MNIST convnet's second layer
    ((3, 3), 16, 48, 1, "valid", 1, (9, 31)),      # 16-filter tiles; rows of 29 = 15 + 14
    ((3, 3), 32, 32, 2, "same", 1, (11, 9)),       # strided: the input gradient through im2col
    ((3, 2), 16, 16, 1, "same", 2, (10, 12)),      # dilated, one zmm of filters
    ((2, 3), 48, 32, (1, 2), "valid", (2, 1), (7, 29)),
    ((1, 3), 16, 32, 1, "same", 1, (5, 40)),       # 1 x 3: 40 pixels a row in tiles of 14 / 24
    ((3, 3), 24, 16, 1, "same", 1, (6, 6)),        # 24 channels: the input gradient through im2col
])
def test_many_channel_convs_run_direct_and_match_the_reference(rng, vector_isa, schedule, kshape, cin, cout, strides,
                                                              padding, dilation, size):
    """With C >= 16 and filters in multiples of 16, an AVX-512 or AVX2 CPU sums the windows straight
    from the image (no im2col) under the batch schedule; the split schedule keeps im2col + GEMM.
    Both, one image (bands of rows) and several, forward and both gradients, against the reference."""
    k = lamina.get_device("cpu").kernels
    kw = dict(strides=strides, padding=padding, dilation_rate=dilation)
    for n in (1, 3):
        x = f32(rng, n, *size, cin)
        w = f32(rng, *kshape, cin, cout)
        want = conv_ref(x, w, **kw)
        k.conv_profile(True)
        np.testing.assert_allclose(ops.conv(x, w, **kw).numpy(), want, atol=1e-3, rtol=1e-4)
        direct = schedule == "batch"
        assert (k.conv_profile(True)["im2col"] == 0) == direct
        g = f32(rng, *want.shape)
        gx, gw = _conv_grads(x, w, g, **kw)
        want_x, want_w = conv_grads_ref(x, w, g, **kw)
        np.testing.assert_allclose(gx.numpy(), want_x, atol=1e-3, rtol=1e-4)
        np.testing.assert_allclose(gw.numpy(), want_w, atol=1e-3, rtol=1e-4)


def test_many_channel_conv_on_a_large_image_runs_in_bands(rng, vector_isa):
    """One large image is cut into bands of output rows shared among the threads, each band
    padding only the input rows it reads: the band edges against the reference."""
    x = f32(rng, 1, 61, 23, 16)
    w = f32(rng, 3, 3, 16, 32)
    want = conv_ref(x, w, padding="same")
    np.testing.assert_allclose(ops.conv(x, w, padding="same").numpy(), want, atol=1e-3, rtol=1e-4)
    g = f32(rng, *want.shape)
    gx, gw = _conv_grads(x, w, g, padding="same")
    want_x, want_w = conv_grads_ref(x, w, g, padding="same")
    np.testing.assert_allclose(gx.numpy(), want_x, atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(gw.numpy(), want_w, atol=1e-3, rtol=1e-4)


def test_many_channel_conv_without_vector_isa_goes_through_im2col(rng):
    """The baseline ISA (set_simd_isa("generic"), or a CPU without AVX2) has no direct kernels."""
    from lamina.backend import _cpu
    before = _cpu.simd_isa()
    _cpu.set_simd_isa("generic")
    k = lamina.get_device("cpu").kernels
    try:
        x = f32(rng, 2, 8, 8, 16)
        w = f32(rng, 3, 3, 16, 32)
        k.conv_profile(True)
        got = ops.conv(x, w, padding="same").numpy()
        assert k.conv_profile(True)["im2col"] > 0
    finally:
        _cpu.set_simd_isa(before)
    np.testing.assert_allclose(got, conv_ref(x, w, padding="same"), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("k,cin,cout,padding,size", [
    (5, 32, 64, "same", (14, 14)),   # the MNIST convnet's conv2: 7 x 7 tiles of 2 x 2
    (5, 16, 32, "same", (15, 13)),   # odd sizes: the last tiles hang over the edge
    (5, 48, 16, "valid", (12, 17)),  # one zmm of filters (24-tile GEMM rows)
    (3, 16, 48, "same", (13, 18)),   # 3 x 3: tiles of 4 x 4 outputs
    (3, 32, 32, "valid", (22, 18)),
])
def test_winograd_convs_match_the_reference_and_the_direct_kernels(rng, vector_isa, k, cin, cout, padding, size):
    """Stride-1 3 x 3 and 5 x 5 layers with channels in multiples of 16 run the forward pass and
    the input gradient as Winograd products on AVX-512 and AVX2 (conv_winograd(1), the default):
    against the float64 reference and the direct kernels (conv_winograd(0)), from which they differ only by
    rounding; one image (bands of tile rows shared by the threads) and several."""
    kern = lamina.get_device("cpu").kernels
    for n in (1, 3):
        x = f32(rng, n, *size, cin)
        w = f32(rng, k, k, cin, cout)
        want = conv_ref(x, w, padding=padding)
        g = f32(rng, *want.shape)
        want_x, want_w = conv_grads_ref(x, w, g, padding=padding)
        got = {}
        for mode in (1, 0):
            was = kern.conv_winograd(mode)
            try:
                y = ops.conv(x, w, padding=padding).numpy()
                gx, gw = _conv_grads(x, w, g, padding=padding)
            finally:
                kern.conv_winograd(was)
            scale = np.abs(want).max()
            np.testing.assert_allclose(y, want, atol=2e-5 * scale, rtol=1e-4)
            np.testing.assert_allclose(gx.numpy(), want_x, atol=2e-5 * np.abs(want_x).max(), rtol=1e-4)
            np.testing.assert_allclose(gw.numpy(), want_w, atol=2e-5 * np.abs(want_w).max(), rtol=1e-4)
            got[mode] = y, gx.numpy()
        # a different summation ran
        assert not np.array_equal(got[1][0], got[0][0]) and not np.array_equal(got[1][1], got[0][1])


@pytest.mark.parametrize("shape,cin,cout", [((2, 7, 7), 32, 32), ((1, 16, 16), 256, 272)])
def test_winograd_skips_images_of_few_tiles_and_large_kernels(rng, vector_isa, shape, cin, cout):
    """Under 16 tiles an image (a 3 x 3 layer on 7 x 7 images: 2 x 2 tiles of 4 x 4), or with more
    than 256 x 256 channels in x out, the direct kernels run, exactly as with conv_winograd(0)."""
    kern = lamina.get_device("cpu").kernels
    x, w = f32(rng, *shape, cin), f32(rng, 3, 3, cin, cout)
    y1 = ops.conv(x, w, padding="same").numpy()
    was = kern.conv_winograd(0)
    try:
        y0 = ops.conv(x, w, padding="same").numpy()
    finally:
        kern.conv_winograd(was)
    np.testing.assert_array_equal(y1, y0)


@pytest.mark.parametrize("shape,kernel", [((2, 16, 16, 32), (3, 3, 32, 16)), ((2, 14, 14, 16), (5, 5, 16, 32)),
                                          ((4, 9, 9, 64), (3, 3, 64, 32))])
def test_filter_gradient_is_the_same_on_every_run(shape, kernel):
    """The filter gradient's per-thread sums cover a fixed split of the images: repeated runs give
    the same bits (a dynamic split made the Winograd filter gradient differ from run to run)."""
    rng = np.random.default_rng(0)
    x = lamina.convert_to_tensor(rng.normal(size=shape).astype(np.float32))
    w0 = (rng.normal(size=kernel) * 0.3).astype(np.float32)
    grads = []
    for _ in range(8):
        w = lamina.Variable(w0)
        with lamina.GradientTape() as tape:
            y = ops.conv(x, w, padding="same")
            loss = ops.sum(y * y)
        grads.append(tape.gradient(loss, w).numpy())
    for g in grads[1:]:
        np.testing.assert_array_equal(g, grads[0])
