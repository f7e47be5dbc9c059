"""Tests for backend/convolution.py's depthwise_conv and separable_conv (kernels in
csrc/cpu/depthwise.cpp), forward and backward, against loop-based numpy references."""
import itertools
import math

import numpy as np
import pytest

import lamina
from lamina import ops
from opcheck import check_forward, check_grad


# ---- numpy references (direct loops) --------------------------------------------------------------

def _pair(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def _geometry(size, k, stride, dilation, padding):
    """(output size, pad before) by the TF/Keras rule."""
    eff = (k - 1) * dilation + 1
    if padding.lower() == "valid":
        return (size - eff) // stride + 1, 0
    out = math.ceil(size / stride)
    return out, max((out - 1) * stride + eff - size, 0) // 2


def _taps(x_shape, w_shape, strides, padding, dilation_rate):
    """Yields (i, j, ih, iw, a, b): output pixel (i, j) reads input pixel (ih, iw) through tap (a, b)."""
    _, h, wd, _ = x_shape
    kh, kw = w_shape[:2]
    sh, sw = strides
    dh, dw = dilation_rate
    oh, pt = _geometry(h, kh, sh, dh, padding)
    ow, pl = _geometry(wd, kw, sw, dw, padding)
    for i, j, a, b in itertools.product(range(oh), range(ow), range(kh), range(kw)):
        ih, iw = i * sh - pt + a * dh, j * sw - pl + b * dw
        if 0 <= ih < h and 0 <= iw < wd:
            yield i, j, ih, iw, a, b


def _as_2d(x, w, strides, dilation_rate):
    one_d = x.ndim == 3
    if one_d:
        return x[:, None], w[None], (1,) + _pair(strides, 1), (1,) + _pair(dilation_rate, 1), True
    return x, w, _pair(strides, 2), _pair(dilation_rate, 2), False


def depthwise_ref(x, w, strides=1, padding="valid", dilation_rate=1):
    """y[..., c * dm + m] = sum over taps of x[..., c] * w[..., c, m] (1-D or 2-D, channels_last)."""
    x, w, st, dil, one_d = _as_2d(np.asarray(x), np.asarray(w), strides, dilation_rate)
    n, h, wd, c = x.shape
    dm = w.shape[-1]
    oh, _ = _geometry(h, w.shape[0], st[0], dil[0], padding)
    ow, _ = _geometry(wd, w.shape[1], st[1], dil[1], padding)
    out = np.zeros((n, oh, ow, c * dm), dtype=np.result_type(x, w))
    for i, j, ih, iw, a, b in _taps(x.shape, w.shape, st, padding, dil):
        out[:, i, j, :] += (x[:, ih, iw, :, None] * w[a, b]).reshape(n, c * dm)
    return out[:, 0] if one_d else out


def depthwise_grads_ref(x, w, g, strides=1, padding="valid", dilation_rate=1):
    """Exact gradients of sum(depthwise_ref(x, w) * g), by scatter loops in float64."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    one_d = x.ndim == 3
    x2, w2, st, dil, _ = _as_2d(x, w, strides, dilation_rate)
    g2 = g[:, None] if one_d else g
    n, _, _, c = x2.shape
    dm = w2.shape[-1]
    dx, dw = np.zeros_like(x2), np.zeros_like(w2)
    for i, j, ih, iw, a, b in _taps(x2.shape, w2.shape, st, padding, dil):
        gij = g2[:, i, j, :].reshape(n, c, dm)
        dx[:, ih, iw, :] += (gij * w2[a, b]).sum(-1)
        dw[a, b] += np.einsum("nc,ncm->cm", x2[:, ih, iw, :], gij)
    return (dx[:, 0], dw[0]) if one_d else (dx, dw)


def separable_ref(x, dw, pw, strides=1, padding="valid", dilation_rate=1):
    y = depthwise_ref(x, dw, strides, padding, dilation_rate)
    return y @ np.asarray(pw).reshape(pw.shape[-2:])


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _grads(fn, x, w, g, **kw):
    xv, wv = lamina.Variable(x), lamina.Variable(w)
    with lamina.GradientTape() as tape:
        y = fn(xv, wv, **kw)
    return [t.numpy() for t in tape.gradient(y, [xv, wv], output_gradients=g)]


@pytest.fixture(params=[1, 3])
def threads(request):
    """Runs a test on 1 thread and on 3 (uneven splits of rows and of the kernel-gradient sums)."""
    k = lamina.get_device("cpu").kernels
    old = k.num_threads()
    k.set_num_threads(request.param)
    yield request.param
    k.set_num_threads(old)


# ---- forward --------------------------------------------------------------------------------------

# Channel counts cover the kernel's register blocks: 64, 16, and the remainder below 16.
CHANNELS = [1, 5, 16, 21, 64, 83]


@pytest.mark.parametrize("strides,padding,dilation", list(itertools.product([1, 2, 3], ["valid", "same"], [1, 2])))
def test_depthwise_conv2d_forward_matches_reference(rng, strides, padding, dilation):
    for (kh, kw), c, dm, batch in itertools.product([(1, 1), (3, 3), (2, 3)], CHANNELS, [1, 2], [1, 3]):
        x = f32(rng, batch, 11, 10, c)
        w = f32(rng, kh, kw, c, dm)
        check_forward(ops.depthwise_conv, depthwise_ref, [x, w], atol=1e-4, rtol=1e-4,
                      strides=strides, padding=padding, dilation_rate=dilation)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_depthwise_conv2d_forward_odd_sizes_and_tuple_args(rng, padding):
    x = f32(rng, 2, 13, 7, 19)
    for w_shape, kw in [((3, 2, 19, 1), dict(strides=(2, 1), dilation_rate=(1, 3))),
                        ((5, 3, 19, 3), dict(strides=[3, 2], dilation_rate=[2, 1])),
                        ((7, 7, 19, 1), dict(strides=2))]:
        w = f32(rng, *w_shape)
        check_forward(ops.depthwise_conv, depthwise_ref, [x, w], atol=1e-4, rtol=1e-4, padding=padding, **kw)
    check_forward(ops.depthwise_conv, depthwise_ref, [x, f32(rng, 3, 3, 19, 2)], atol=1e-4, rtol=1e-4,
                  padding=padding.upper())


@pytest.mark.parametrize("strides,padding,dilation", list(itertools.product([1, 2], ["valid", "same"], [1, 2])))
def test_depthwise_conv1d_forward_matches_reference(rng, strides, padding, dilation):
    for k, c, dm, batch in itertools.product([1, 3, 4], [1, 7, 33], [1, 2], [1, 3]):
        x = f32(rng, batch, 17, c)
        w = f32(rng, k, c, dm)
        check_forward(ops.depthwise_conv, depthwise_ref, [x, w], atol=1e-4, rtol=1e-4,
                      strides=strides, padding=padding, dilation_rate=dilation)
        check_forward(ops.depthwise_conv, depthwise_ref, [x, w], atol=1e-4, rtol=1e-4,
                      strides=(strides,), padding=padding, dilation_rate=[dilation])


def test_depthwise_output_channel_order_is_c_times_dm_plus_m():
    # channel c of the input scaled by (m + 1) * 10**c lands in output channel c * dm + m
    x = np.ones((1, 1, 1, 3), np.float32)
    w = np.array([[[[1, 2], [10, 20], [100, 200]]]], np.float32)  # (1, 1, 3, 2)
    np.testing.assert_array_equal(ops.depthwise_conv(x, w).numpy().ravel(), [1, 2, 10, 20, 100, 200])


def test_depthwise_larger_shapes_parallel(rng, threads):
    # MobileNet-like shapes, above the parallel grain
    for shape, s, p, dm in [((3, 20, 18, 96), 1, "same", 1), ((2, 21, 19, 144), 2, "same", 1),
                            ((4, 15, 16, 32), 2, "valid", 1), ((3, 12, 11, 24), 1, "same", 2)]:
        x = f32(rng, *shape)
        w = f32(rng, 3, 3, shape[-1], dm)
        check_forward(ops.depthwise_conv, depthwise_ref, [x, w], atol=1e-4, rtol=1e-4, strides=s, padding=p)


def test_depthwise_channels_first(rng):
    x = f32(rng, 2, 9, 8, 5)
    w = f32(rng, 3, 3, 5, 2)
    want = depthwise_ref(x, w, strides=2, padding="same")
    got = ops.depthwise_conv(np.transpose(x, (0, 3, 1, 2)), w, strides=2, padding="same",
                             data_format="channels_first")
    np.testing.assert_allclose(got.numpy(), np.transpose(want, (0, 3, 1, 2)), atol=1e-4, rtol=1e-4)
    x1, w1 = f32(rng, 2, 11, 3), f32(rng, 3, 3, 1)
    got = ops.depthwise_conv(np.transpose(x1, (0, 2, 1)), w1, padding="same", data_format="CHANNELS_FIRST")
    np.testing.assert_allclose(got.numpy(), np.transpose(depthwise_ref(x1, w1, padding="same"), (0, 2, 1)),
                               atol=1e-4, rtol=1e-4)


def test_depthwise_size_zero_dimensions(rng):
    w = f32(rng, 3, 3, 2, 2)
    assert ops.depthwise_conv(np.zeros((0, 5, 5, 2), np.float32), w, padding="same").shape == (0, 5, 5, 4)
    assert ops.depthwise_conv(np.zeros((2, 0, 5, 2), np.float32), w, padding="same").shape == (2, 0, 5, 4)
    y = ops.depthwise_conv(np.zeros((2, 5, 5, 0), np.float32), np.zeros((3, 3, 0, 2), np.float32))
    assert y.shape == (2, 3, 3, 0)
    y = ops.depthwise_conv(f32(rng, 2, 5, 5, 2), np.zeros((3, 3, 2, 0), np.float32))
    assert y.shape == (2, 3, 3, 0)
    # an empty batch: the gradients have the right shapes and the kernel's is zero
    gx, gw = _grads(ops.depthwise_conv, np.zeros((0, 5, 5, 2), np.float32), w, np.zeros((0, 5, 5, 4), np.float32),
                    padding="same")
    assert gx.shape == (0, 5, 5, 2) and gw.shape == w.shape
    np.testing.assert_array_equal(gw, 0.0)
    # no output channels: nothing flows back
    gx, gw = _grads(ops.depthwise_conv, f32(rng, 1, 4, 4, 2), np.zeros((3, 3, 2, 0), np.float32),
                    np.zeros((1, 2, 2, 0), np.float32))
    np.testing.assert_array_equal(gx, 0.0)
    assert gw.shape == (3, 3, 2, 0)


# ---- gradients ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kshape,strides,padding,dilation,dm", [
    ((3, 3), 1, "same", 1, 1),
    ((3, 3), 2, "valid", 1, 2),
    ((2, 3), 2, "same", 1, 1),
    ((3, 2), 1, "same", 2, 2),
    ((1, 1), 1, "valid", 1, 1),
    ((3, 3), 2, "same", 2, 1),
    ((5, 5), 3, "same", 1, 3),
])
def test_depthwise_conv2d_gradients_finite_differences(rng, kshape, strides, padding, dilation, dm):
    x = f32(rng, 2, 6, 5, 3)
    w = f32(rng, *kshape, 3, dm)
    check_grad(ops.depthwise_conv, depthwise_ref, [x, w], atol=2e-3, rtol=2e-3,
               strides=strides, padding=padding, dilation_rate=dilation)


@pytest.mark.parametrize("k,strides,padding,dilation,dm", [(3, 1, "same", 1, 1), (2, 2, "valid", 1, 2),
                                                           (3, 2, "same", 2, 1)])
def test_depthwise_conv1d_gradients_finite_differences(rng, k, strides, padding, dilation, dm):
    x = f32(rng, 2, 9, 3)
    w = f32(rng, k, 3, dm)
    check_grad(ops.depthwise_conv, depthwise_ref, [x, w], atol=2e-3, rtol=2e-3,
               strides=strides, padding=padding, dilation_rate=dilation)


def test_depthwise_gradient_channels_first(rng):
    x = f32(rng, 2, 3, 5, 4)  # (N, C, H, W)
    w = f32(rng, 3, 3, 3, 2)

    def ref(x, w):
        return np.transpose(depthwise_ref(np.transpose(x, (0, 2, 3, 1)), w, padding="same"), (0, 3, 1, 2))
    check_grad(lambda a, b: ops.depthwise_conv(a, b, padding="same", data_format="channels_first"), ref, [x, w],
               atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("c", [4, 8, 12, 13, 29])
def test_depthwise_forward_with_few_channels(rng, threads, c):
    # the channel blocks of 16, 8, 4 and the last few (29 = 16 + 8 + 4 + 1)
    x = f32(rng, 2, 15, 23, c)
    for kshape, s, p, d in [((3, 3), 1, "same", 1), ((3, 3), 2, "valid", 1), ((2, 3), 1, "same", 2)]:
        w = f32(rng, *kshape, c, 1)
        got = ops.depthwise_conv(x, w, strides=s, padding=p, dilation_rate=d).numpy()
        np.testing.assert_allclose(got, depthwise_ref(x, w, strides=s, padding=p, dilation_rate=d), atol=1e-4,
                                   rtol=1e-4, err_msg=f"{kshape} {s} {p} {d}")


@pytest.mark.parametrize("c,dm", [(1, 1), (8, 1), (21, 1), (29, 1), (83, 1), (6, 2), (5, 3)])
@pytest.mark.parametrize("batch", [1, 3])
def test_depthwise_gradients_match_numpy(rng, threads, c, dm, batch):
    # both gradients at once, exact numpy references, shapes above the parallel grain
    x = f32(rng, batch, 19, 17, c)
    for kshape, s, p, d in [((3, 3), 1, "same", 1), ((3, 3), 2, "same", 1), ((3, 2), 2, "valid", 2),
                            ((1, 1), 1, "valid", 1), ((5, 4), 3, "same", 1)]:
        w = f32(rng, *kshape, c, dm)
        g = f32(rng, *depthwise_ref(x, w, strides=s, padding=p, dilation_rate=d).shape)
        gx, gw = _grads(ops.depthwise_conv, x, w, g, strides=s, padding=p, dilation_rate=d)
        want_x, want_w = depthwise_grads_ref(x, w, g, strides=s, padding=p, dilation_rate=d)
        np.testing.assert_allclose(gx, want_x, atol=1e-3, rtol=1e-3, err_msg=f"dx {kshape} {s} {p} {d}")
        np.testing.assert_allclose(gw, want_w, atol=1e-3, rtol=1e-3, err_msg=f"dkernel {kshape} {s} {p} {d}")


def test_depthwise_conv1d_gradients_match_numpy(rng):
    x = f32(rng, 3, 31, 40)
    for k, s, p, d, dm in [(3, 1, "same", 1, 1), (4, 2, "valid", 2, 2), (5, 3, "same", 1, 1)]:
        w = f32(rng, k, 40, dm)
        g = f32(rng, *depthwise_ref(x, w, strides=s, padding=p, dilation_rate=d).shape)
        gx, gw = _grads(ops.depthwise_conv, x, w, g, strides=s, padding=p, dilation_rate=d)
        want_x, want_w = depthwise_grads_ref(x, w, g, strides=s, padding=p, dilation_rate=d)
        np.testing.assert_allclose(gx, want_x, atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(gw, want_w, atol=1e-3, rtol=1e-3)


def test_depthwise_only_one_gradient_when_the_other_input_is_constant(rng):
    x, w = f32(rng, 2, 7, 7, 4), f32(rng, 3, 3, 4, 1)
    want_x, want_w = depthwise_grads_ref(x, w, np.ones((2, 7, 7, 4)), padding="same")
    xt, wv = lamina.convert_to_tensor(x), lamina.Variable(w)
    with lamina.GradientTape() as tape:
        y = ops.depthwise_conv(xt, wv, padding="same")
    gx, gw = tape.gradient(y, [xt, wv])
    assert gx is None
    np.testing.assert_allclose(gw.numpy(), want_w, atol=1e-3, rtol=1e-3)
    xv, wt = lamina.Variable(x), lamina.convert_to_tensor(w)
    with lamina.GradientTape() as tape:
        y = ops.depthwise_conv(xv, wt, padding="same")
    gx, gw = tape.gradient(y, [xv, wt])
    assert gw is None
    np.testing.assert_allclose(gx.numpy(), want_x, atol=1e-3, rtol=1e-3)


# ---- separable_conv -------------------------------------------------------------------------------

@pytest.mark.parametrize("strides,padding,dilation,dm", [(1, "same", 1, 1), (2, "valid", 1, 2), (1, "same", 2, 1),
                                                         (2, "same", 1, 3)])
def test_separable_conv_forward(rng, strides, padding, dilation, dm):
    x = f32(rng, 3, 10, 9, 6)
    dw, pw = f32(rng, 3, 3, 6, dm), f32(rng, 1, 1, 6 * dm, 5)
    check_forward(ops.separable_conv, separable_ref, [x, dw, pw], atol=1e-4, rtol=1e-4,
                  strides=strides, padding=padding, dilation_rate=dilation)
    x1, dw1, pw1 = f32(rng, 2, 13, 6), f32(rng, 3, 6, dm), f32(rng, 1, 6 * dm, 4)
    check_forward(ops.separable_conv, separable_ref, [x1, dw1, pw1], atol=1e-4, rtol=1e-4,
                  strides=strides, padding=padding, dilation_rate=dilation)


def test_separable_conv_channels_first_and_gradients(rng):
    x, dw, pw = f32(rng, 2, 9, 8, 3), f32(rng, 3, 3, 3, 2), f32(rng, 1, 1, 6, 4)
    got = ops.separable_conv(np.transpose(x, (0, 3, 1, 2)), dw, pw, strides=2, padding="same",
                             data_format="channels_first")
    want = separable_ref(x, dw, pw, strides=2, padding="same")
    np.testing.assert_allclose(got.numpy(), np.transpose(want, (0, 3, 1, 2)), atol=1e-4, rtol=1e-4)
    check_grad(ops.separable_conv, separable_ref, [f32(rng, 2, 5, 6, 3), dw, pw], atol=2e-3, rtol=2e-3,
               strides=2, padding="same")
    check_grad(ops.separable_conv, separable_ref, [f32(rng, 2, 7, 2), f32(rng, 3, 2, 2), f32(rng, 1, 4, 3)],
               atol=2e-3, rtol=2e-3, padding="valid")


# ---- errors ---------------------------------------------------------------------------------------

def test_depthwise_errors(rng):
    x, w = f32(rng, 2, 5, 5, 3), f32(rng, 3, 3, 4, 1)
    with pytest.raises(ValueError, match=r"depthwise_conv: the input has 3 channels.*\(2, 5, 5, 3\).*expects 4.*"
                                         r"\(3, 3, 4, 1\)"):
        ops.depthwise_conv(x, w)
    with pytest.raises(ValueError, match=r"kernel of rank 4 \(kh, kw, in_channels, depth_multiplier\).*\(3, 3, 3\)"):
        ops.depthwise_conv(x, f32(rng, 3, 3, 3))
    with pytest.raises(ValueError, match=r"kernel of rank 3 \(kw, in_channels, depth_multiplier\).*\(3, 3, 3, 1\)"):
        ops.depthwise_conv(f32(rng, 2, 5, 3), f32(rng, 3, 3, 3, 1))
    with pytest.raises(ValueError, match=r"rank 3.*rank 4.*\(5, 5\)"):
        ops.depthwise_conv(f32(rng, 5, 5), w)
    with pytest.raises(ValueError, match=r"at least 1.*\(0, 3, 3, 1\)"):
        ops.depthwise_conv(x, np.zeros((0, 3, 3, 1), np.float32))
    with pytest.raises(ValueError, match=r"size 6.*more than the input's 5.*\(2, 5, 5, 3\).*padding='same'"):
        ops.depthwise_conv(x, f32(rng, 6, 3, 3, 1))
    with pytest.raises(ValueError, match=r"'valid' or 'same'.*'causal'"):
        ops.depthwise_conv(x, f32(rng, 3, 3, 3, 1), padding="causal")
    with pytest.raises(ValueError, match=r"data_format.*'nhwc'"):
        ops.depthwise_conv(x, f32(rng, 3, 3, 3, 1), data_format="nhwc")
    with pytest.raises(TypeError, match=r"float32 input.*int32.*\(2, 5, 5, 3\)"):
        ops.depthwise_conv(x.astype(np.int32), f32(rng, 3, 3, 3, 1))


@pytest.mark.parametrize("bad", [0, -1, 1.5, (1, 2, 3), (1,), "2", True, None])
def test_depthwise_errors_strides_and_dilation(rng, bad):
    x, w = f32(rng, 1, 6, 6, 2), f32(rng, 3, 3, 2, 1)
    with pytest.raises(ValueError, match=r"depthwise_conv: expected `strides`.*positive int.*received"):
        ops.depthwise_conv(x, w, strides=bad)
    with pytest.raises(ValueError, match=r"depthwise_conv: expected `dilation_rate`.*positive int.*received"):
        ops.depthwise_conv(x, w, dilation_rate=bad)
    with pytest.raises(ValueError, match=r"separable_conv: expected `strides`.*received"):
        ops.separable_conv(x, w, f32(rng, 1, 1, 2, 3), strides=bad)


def test_separable_conv_errors(rng):
    x, dw = f32(rng, 2, 6, 6, 3), f32(rng, 3, 3, 3, 2)
    with pytest.raises(ValueError, match=r"separable_conv: expected a pointwise kernel of shape \(1, 1, 6, filters\)"
                                         r".*\(3, 3, 3, 2\).*\(1, 1, 3, 4\)"):
        ops.separable_conv(x, dw, f32(rng, 1, 1, 3, 4))
    with pytest.raises(ValueError, match=r"pointwise kernel of shape \(1, 1, 6, filters\).*\(3, 3, 6, 4\)"):
        ops.separable_conv(x, dw, f32(rng, 3, 3, 6, 4))
    with pytest.raises(ValueError, match=r"pointwise kernel of shape \(1, 6, filters\).*\(1, 1, 6, 4\)"):
        ops.separable_conv(f32(rng, 2, 6, 3), f32(rng, 3, 3, 2), f32(rng, 1, 1, 6, 4))
    with pytest.raises(ValueError, match=r"separable_conv: the input has 3 channels.*expects 4"):
        ops.separable_conv(x, f32(rng, 3, 3, 4, 1), f32(rng, 1, 1, 4, 4))
    with pytest.raises(TypeError, match=r"float32 pointwise kernel.*int64"):
        ops.separable_conv(x, dw, np.ones((1, 1, 6, 4), np.int64))
    xt = lamina.convert_to_tensor(x)
    with lamina.device("cpu:1"):
        pt = lamina.convert_to_tensor(f32(rng, 1, 1, 6, 4))
    with pytest.raises(ValueError, match=r"different devices.*cpu:0.*cpu:1"):
        ops.separable_conv(xt, lamina.convert_to_tensor(dw), pt)


def test_depthwise_kernels_reject_inconsistent_arguments(rng):
    k = lamina.get_device("cpu").kernels
    x = lamina.convert_to_tensor(f32(rng, 1, 5, 5, 2))
    w = lamina.convert_to_tensor(f32(rng, 3, 3, 2, 2))
    out = lamina.backend.tensor.empty((1, 3, 3, 4))
    fwd = k.depthwise_conv2d_forward
    with pytest.raises(ValueError, match=r"depthwise_conv2d: output shape \(1, 3, 3, 4\) does not match.*"
                                         r"expected \(1, 3, 5, 4\)"):
        fwd(x._buf, (1, 5, 5, 2), w._buf, (3, 3, 2, 2), out._buf, (1, 3, 3, 4), (1, 1), (1, 1), (0, 0, 1, 1))
    with pytest.raises(ValueError, match=r"expected \(1, 3, 3, 4\)"):  # output channels must be C * DM
        fwd(x._buf, (1, 5, 5, 2), w._buf, (3, 3, 2, 2), out._buf, (1, 3, 4, 3), (1, 1), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"the input has 1 channels.*kernel expects 2"):
        fwd(x._buf, (1, 5, 10, 1), w._buf, (3, 3, 2, 2), out._buf, (1, 3, 3, 4), (1, 1), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"kernel of shape \(kh, kw, in_channels, depth_multiplier\)"):
        fwd(x._buf, (1, 5, 5, 2), w._buf, (9, 2, 2), out._buf, (1, 3, 3, 4), (1, 1), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"strides must be >= 1"):
        fwd(x._buf, (1, 5, 5, 2), w._buf, (3, 3, 2, 2), out._buf, (1, 3, 3, 4), (0, 1), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"expected 2 dilation values"):
        fwd(x._buf, (1, 5, 5, 2), w._buf, (3, 3, 2, 2), out._buf, (1, 3, 3, 4), (1, 1), (1,), (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"padding must be non-negative"):
        fwd(x._buf, (1, 5, 5, 2), w._buf, (3, 3, 2, 2), out._buf, (1, 3, 3, 4), (1, 1), (1, 1), (0, 0, -1, 1))
    with pytest.raises(ValueError, match=r"holds 50 elements.*\(1, 5, 5, 3\)"):
        fwd(x._buf, (1, 5, 5, 3), w._buf, (3, 3, 3, 2), out._buf, (1, 3, 3, 6), (1, 1), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"depthwise_conv2d_backward: kernel gradient holds 50 elements.*"
                                         r"\(3, 3, 2, 2\)"):
        k.depthwise_conv2d_backward(x._buf, (1, 5, 5, 2), w._buf, (3, 3, 2, 2), out._buf, (1, 3, 3, 4), None,
                                    x._buf, (1, 1), (1, 1), (0, 0, 0, 0))
    with pytest.raises(TypeError, match=r"int32"):
        xi = lamina.convert_to_tensor(np.zeros((1, 5, 5, 2), np.int32))
        fwd(xi._buf, (1, 5, 5, 2), w._buf, (3, 3, 2, 2), out._buf, (1, 3, 3, 4), (1, 1), (1, 1), (0, 0, 0, 0))


def test_ops_namespace_exports():
    for name in ["depthwise_conv", "separable_conv"]:
        assert getattr(ops, name).__wrapped__ is getattr(lamina.backend.convolution, name)
        assert name in lamina.backend.nn.__all__
