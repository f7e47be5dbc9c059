"""Tests for backend/convolution3d.py: ops.conv, ops.max_pool and ops.average_pool on rank-5
inputs, forward and backward, against numpy loop references, finite differences and Keras."""
import itertools

import numpy as np
import pytest

from lamina import ops
from conv_refs import conv3d_ref, pool3d_ref
from keras_ref import keras_or_none
from opcheck import check_forward, check_grad


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ---- conv -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,strides,padding,dilation", [
    ((2, 2, 2), 1, "valid", 1), ((3, 3, 3), 1, "same", 1), ((3, 2, 1), (2, 1, 3), "same", 1),
    ((1, 3, 2), 2, "valid", 1), ((2, 2, 3), 1, "same", (2, 1, 2)), ((3, 1, 2), 1, "valid", (2, 3, 1)),
    ((1, 1, 1), 1, "valid", 1), ((4, 3, 3), 3, "same", 1)])
def test_conv3d_matches_reference(rng, kernel, strides, padding, dilation):
    x, w = f32(rng, 2, 6, 5, 7, 3), f32(rng, *kernel, 3, 4)
    check_forward(ops.conv, conv3d_ref, [x, w], atol=1e-4, rtol=1e-4, strides=strides, padding=padding,
                  dilation_rate=dilation)


def test_conv3d_channels_first(rng):
    x, w = f32(rng, 2, 3, 5, 4, 6), f32(rng, 3, 2, 3, 3, 2)  # (N, C, D, H, W)
    y = check_forward(ops.conv, conv3d_ref, [x, w], atol=1e-4, rtol=1e-4, strides=(2, 1, 2), padding="same",
                      data_format="channels_first")
    assert y.shape == (2, 2, 3, 4, 3)


@pytest.mark.parametrize("xshape,kshape,kw", [
    ((1, 3, 3, 4, 2), (2, 2, 3, 2, 2), dict(padding="valid")),
    ((2, 3, 4, 3, 1), (3, 2, 2, 1, 2), dict(padding="same", strides=(2, 1, 2))),
    ((1, 4, 3, 3, 2), (2, 2, 1, 2, 1), dict(padding="same", dilation_rate=(2, 1, 1))),
    ((1, 2, 3, 3, 3), (3, 1, 2, 2, 2), dict(padding="same", data_format="channels_first")),
])
def test_conv3d_gradients(rng, xshape, kshape, kw):
    x, w = f32(rng, *xshape), f32(rng, *kshape)
    check_grad(lambda a, b: ops.conv(a, b, **kw), lambda a, b: conv3d_ref(a, b, **kw), [x, w], atol=2e-3, rtol=2e-3)


def test_conv3d_errors(rng):
    x = f32(rng, 2, 4, 4, 4, 3)
    with pytest.raises(ValueError, match=r"3-D convolution.*kernel of rank 5 \(kd, kh, kw.*\(3, 3, 3, 2\)"):
        ops.conv(x, f32(rng, 3, 3, 3, 2))
    with pytest.raises(ValueError, match=r"3 channels.*\(2, 4, 4, 4, 3\).*expects 2 input channels"):
        ops.conv(x, f32(rng, 3, 3, 3, 2, 4))
    with pytest.raises(ValueError, match=r"kernel of size 5.*spans 5.*\(2, 4, 4, 4, 3\).*padding='valid'"):
        ops.conv(x, f32(rng, 1, 5, 1, 3, 4))
    with pytest.raises(ValueError, match=r"with dilation 2 spans 5.*\(2, 4, 4, 4, 3\)"):
        ops.conv(x, f32(rng, 3, 1, 1, 3, 4), dilation_rate=(2, 1, 1))
    with pytest.raises(ValueError, match=r"strides.*3 positive ints.*\(1, 1\)"):
        ops.conv(x, f32(rng, 1, 1, 1, 3, 4), strides=(1, 1))
    with pytest.raises(ValueError, match=r"at least 1.*\(1, 0, 1, 3, 4\)"):
        ops.conv(x, np.zeros((1, 0, 1, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"depthwise_conv has no 3-D \(rank 5\) form"):
        ops.depthwise_conv(x, f32(rng, 1, 1, 1, 3, 1))


# ---- pooling ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("pool,strides,padding", [
    (2, None, "valid"), ((3, 2, 2), (1, 2, 1), "same"), (3, 2, "same"), ((2, 3, 1), (2, 1, 1), "valid")])
def test_pool3d_matches_reference(rng, mode, pool, strides, padding):
    x = f32(rng, 2, 5, 6, 4, 3)
    fn = ops.max_pool if mode == "max" else ops.average_pool
    check_forward(fn, lambda *a, **k: pool3d_ref(*a, mode=mode, **k), [x], atol=1e-5, rtol=1e-5, pool_size=pool,
                  strides=strides, padding=padding)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool3d_channels_first_and_gradients(rng, mode):
    fn = ops.max_pool if mode == "max" else ops.average_pool
    x = f32(rng, 1, 2, 3, 4, 3)  # (N, C, D, H, W)
    kw = dict(pool_size=(2, 2, 3), strides=(1, 2, 2), padding="same", data_format="channels_first")
    check_forward(fn, lambda *a, **k: pool3d_ref(*a, mode=mode, **k), [x], atol=1e-5, rtol=1e-5, **kw)
    check_grad(lambda a: fn(a, **kw), lambda a: pool3d_ref(a, mode=mode, **kw), [x], atol=2e-3, rtol=2e-3)


def test_pool3d_errors(rng):
    x = f32(rng, 1, 2, 4, 4, 1)
    with pytest.raises(ValueError, match=r"pool window of size 3.*\(1, 2, 4, 4, 1\).*padding='valid'"):
        ops.max_pool(x, 3)
    with pytest.raises(ValueError, match=r"pool_size.*3 positive ints.*\(2, 2\)"):
        ops.average_pool(x, (2, 2))


# ---- Keras parity -----------------------------------------------------------------------------------

def test_conv3d_and_pool3d_match_keras(rng):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference to compare with")
    for ks, s, d, padding, fmt in itertools.product(((1, 1, 1), (2, 3, 1), (3, 2, 2)), (1, 2, (2, 1, 3)),
                                                    (1, (2, 1, 1)), ("valid", "same"),
                                                    ("channels_last", "channels_first")):
        if s != 1 and d != 1:
            continue
        x = f32(rng, 2, 6, 5, 7, 3)
        if fmt == "channels_first":
            x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
        w = f32(rng, *ks, 3, 4)
        np.testing.assert_allclose(ops.conv(x, w, s, padding, fmt, d).numpy(),
                                   np.asarray(keras.ops.conv(x, w, s, padding, fmt, d)), atol=1e-4, rtol=1e-4,
                                   err_msg=str((ks, s, d, padding, fmt)))
    for p, s, padding, fmt in itertools.product((2, (3, 2, 1)), (1, (2, 1, 3)), ("valid", "same"),
                                                ("channels_last", "channels_first")):
        x = f32(rng, 2, 6, 5, 7, 3)
        if fmt == "channels_first":
            x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
        for name in ("max_pool", "average_pool"):
            np.testing.assert_allclose(getattr(ops, name)(x, p, s, padding, fmt).numpy(),
                                       np.asarray(getattr(keras.ops, name)(x, p, s, padding, fmt)),
                                       atol=1e-5, rtol=1e-5, err_msg=str((name, p, s, padding, fmt)))
