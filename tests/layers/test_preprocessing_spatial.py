"""Tests for layers/preprocessing_spatial.py: RandomErasing, RandomSharpness, RandomGaussianBlur,
RandomShear (numpy references, Keras parity of the transforms given the same parameters and of
fixed-factor and inference outputs, statistics of the draws, seeds, configs, errors)."""
import numpy as np
import pytest

import lamina
from lamina import layers, ops
from lamina.layers.preprocessing_image import _columns
from keras_ref import keras_or_none
from layer_harness import run_layer_test

RNG = np.random.default_rng(9)
IMAGES = RNG.uniform(0, 255, (3, 7, 6, 3)).astype(np.float32)


def _keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    return keras


def _t(a):
    return ops.convert_to_tensor(np.asarray(a))


def _filter(x, k):
    """Each channel of NHWC x correlated with the 2-D kernel k, zero padding, same size."""
    kh, kw = k.shape
    p = np.pad(x.astype(np.float64), ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros(x.shape)
    for i in range(kh):
        for j in range(kw):
            out += k[i, j] * p[:, i:i + x.shape[1], j:j + x.shape[2]]
    return out


def _gauss(size, sigma):
    t = np.arange(size) - (size - 1) / 2
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def test_random_sharpness():
    k = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13
    smooth = _filter(IMAGES, k)
    for f in (0.2, 0.8):
        s = 2 * f
        want = np.clip(IMAGES + (1 - s) * (smooth - IMAGES), 0, 255)
        run_layer_test(layers.RandomSharpness, {"factor": (f, f)}, IMAGES.shape, input_data=IMAGES,
                       expected_output=want, atol=1e-3)
    np.testing.assert_allclose(layers.RandomSharpness((0.5, 0.5))(IMAGES).numpy(), IMAGES, atol=1e-3)
    x = RNG.uniform(0, 255, (100, 4, 4, 1)).astype(np.float32)
    s = layers.RandomSharpness(0.6, seed=1)._draw(_t(x), None).numpy().ravel()
    assert s.min() >= 0 and s.max() <= 1.2 + 1e-6 and s.max() > 1.1
    ints = IMAGES.astype(np.int32)
    out = layers.RandomSharpness(0.5)(ints, training=False)
    assert out.dtype == "float32"
    np.testing.assert_array_equal(out.numpy(), ints)
    with pytest.raises(ValueError, match=r"RandomSharpness: `factor` must be a number .* \[0, 1\]"):
        layers.RandomSharpness(1.5)


def test_random_gaussian_blur():
    layer = layers.RandomGaussianBlur(kernel_size=(3, 5), sigma=(0.4, 0.9))
    sigma = np.array([0.5, 0.8], np.float32)
    apply = np.array([True, False, True]).reshape(3, 1, 1, 1)
    got = layer._transform(_t(IMAGES), (_t(apply), _t(sigma))).numpy()
    k = np.outer(_gauss(5, 0.8), _gauss(3, 0.5))            # (y size, x size): kernel_size is (x, y)
    want = np.where(apply, np.clip(_filter(IMAGES, k), 0, 255), IMAGES)
    np.testing.assert_allclose(got, want, atol=1e-3)
    # factor: the blur probability; sigma drawn once per call within `sigma` (+1e-6)
    x = RNG.uniform(0, 255, (400, 3, 3, 1)).astype(np.float32)
    apply, sig = layers.RandomGaussianBlur(factor=(0.6, 0.6), seed=2)._draw(_t(x), None)
    assert 0.52 < apply.numpy().mean() < 0.68
    sig = sig.numpy()
    assert sig.shape == (2,) and np.all((sig >= 1e-6) & (sig <= 1 + 1e-6))
    np.testing.assert_array_equal(layers.RandomGaussianBlur(factor=0.0)(IMAGES).numpy(), IMAGES)
    assert layers.RandomGaussianBlur().kernel_size == (3, 3) and layers.RandomGaussianBlur().sigma == (0, 1.0)
    for bad in (4, (3, 4), 0, "3", (3, 3, 3)):
        with pytest.raises(ValueError, match="`kernel_size` must be an odd positive integer"):
            layers.RandomGaussianBlur(kernel_size=bad)
    with pytest.raises(ValueError, match=r"`sigma` must be a number or a pair of numbers in \[0, 1\]"):
        layers.RandomGaussianBlur(sigma=2.0)


def test_random_shear():
    x = RNG.uniform(0, 1, (2, 6, 6, 2)).astype(np.float32)
    # sx = 1 with nearest sampling and wrap: row y is shifted by y pixels (x_in = x + y)
    layer = layers.RandomShear(x_factor=(1.0, 1.0), interpolation="nearest", fill_mode="wrap")
    m = _columns(1.0, _t(np.ones((2, 1), np.float32)), 0.0, _t(np.zeros((2, 1), np.float32)), 1.0, 0.0, 0.0, 0.0)
    got = layer._transform(_t(x), m).numpy()
    want = np.stack([np.roll(x[:, r], -r, axis=1) for r in range(6)], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # both shears share a random sign; their sizes lie in the factors
    mats = layers.RandomShear(x_factor=(0.2, 0.4), y_factor=(0.1, 0.3), seed=3)._draw(_t(np.zeros((300, 2, 2, 1))),
                                                                                     None).numpy()
    sx, sy = mats[:, 1], mats[:, 3]
    assert np.all((np.abs(sx) >= 0.2 - 1e-6) & (np.abs(sx) <= 0.4 + 1e-6))
    assert np.all((np.abs(sy) >= 0.1 - 1e-6) & (np.abs(sy) <= 0.3 + 1e-6))
    assert np.all(np.sign(sx) == np.sign(sy)) and 0.4 < (sx > 0).mean() < 0.6
    assert layers.RandomShear(0.3).x_factor == (-0.3, 0.3) and layers.RandomShear(0.3).y_factor == (-0.0, 0.0)
    with pytest.raises(ValueError, match=r"RandomShear: `y_factor` must be a number in \[0, 1\] or a pair"):
        layers.RandomShear(y_factor=-0.2)
    with pytest.raises(ValueError, match=r"RandomShear: `x_factor` must be a number in \[0, 1\] or a pair"):
        layers.RandomShear(x_factor=(-1.5, 0.2))
    assert layers.RandomShear(x_factor=(-0.3, 0.3)).x_factor == (-0.3, 0.3)   # its own config loads
    with pytest.raises(ValueError, match="`fill_mode` must be one of"):
        layers.RandomShear(0.1, fill_mode="mirror")
    with pytest.raises(ValueError, match="`interpolation` must be one of"):
        layers.RandomShear(0.1, interpolation="bicubic")


def test_random_erasing():
    x = RNG.uniform(10, 200, (400, 10, 10, 3)).astype(np.float32)
    layer = layers.RandomErasing(factor=(1.0, 1.0), scale=(0.1, 0.3), fill_value=0.0, seed=4)
    y = layer(x).numpy()
    erased = np.all(y == 0, axis=-1)
    assert np.all((y == x) | (y == 0))
    counts = erased.sum(axis=(1, 2))
    assert np.all(counts > 0)                                     # p = 1: every image
    assert counts.max() <= 0.33 * 100 + 12                        # sides sqrt(0.3) of 10 cover at most 4 x 4 pixels
    # the default factor 1.0: p ~ U(0, 1), erased when U(0, 1) < p: half of the images
    half = layers.RandomErasing(fill_value=0.0, seed=3)(x).numpy()
    assert 0.4 < np.any(half != x, axis=(1, 2, 3)).mean() < 0.6
    for i in np.nonzero(counts)[0][:20]:                          # each erased region is a box
        rows, cols = np.nonzero(erased[i])
        assert erased[i, rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    # a per-channel fill, clipped to value_range; noise when None
    y = layers.RandomErasing(factor=(1.0, 1.0), fill_value=(300, -5, 20), seed=5)(x[:50]).numpy()
    changed = np.any(y != x[:50], axis=-1)
    np.testing.assert_array_equal(y[changed], np.broadcast_to([255, 0, 20], y[changed].shape))
    y = layers.RandomErasing(factor=(1.0, 1.0), value_range=(0, 1), seed=6)(x[:50] / 255).numpy()
    assert y.min() >= 0 and y.max() <= 1
    assert layers.RandomErasing(scale=0.2).scale == (0, 0.2)
    with pytest.raises(ValueError, match="`fill_value` must be None, a number or a list of three numbers"):
        layers.RandomErasing(fill_value=(1, 2))
    with pytest.raises(ValueError, match=r"`scale` must be a number or a pair of numbers in \[0, 1\]"):
        layers.RandomErasing(scale=(0.1, 2.0))
    with pytest.raises(ValueError, match="a fill_value of three numbers needs images with 3 channels"):
        layers.RandomErasing(fill_value=(1, 2, 3))(np.zeros((1, 4, 4, 1), np.float32))


SPATIAL = [(layers.RandomErasing, {"factor": 0.8}), (layers.RandomSharpness, {"factor": 0.7}),
           (layers.RandomGaussianBlur, {"factor": 0.9, "sigma": 0.8}),
           (layers.RandomShear, {"x_factor": 0.3, "y_factor": 0.2, "fill_mode": "constant"})]


@pytest.mark.parametrize("cls,kwargs", SPATIAL, ids=[c.__name__ for c, _ in SPATIAL])
def test_spatial_layers_seeds_symbolic_and_config(cls, kwargs):
    x = RNG.uniform(0, 255, (8, 6, 5, 3)).astype(np.float32)
    a, b = cls(**kwargs, seed=11), cls(**kwargs, seed=11)
    ya = a(x).numpy()
    np.testing.assert_array_equal(ya, b(x).numpy())
    assert not np.array_equal(ya, a(x).numpy()) and not np.array_equal(ya, x)
    np.testing.assert_array_equal(a(x, training=False).numpy(), x)
    assert a(x[0]).shape == x[0].shape
    cf = cls(**kwargs, seed=11, data_format="channels_first")(x.transpose(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(cf, ya.transpose(0, 3, 1, 2), atol=1e-3)
    assert cls(**kwargs)(lamina.Input((6, 5, 3))).shape == (None, 6, 5, 3)
    config = a.get_config()
    clone = lamina.layers.deserialize(lamina.layers.serialize(a))
    assert type(clone) is cls and clone.get_config() == config
    model = lamina.Sequential([lamina.Input((6, 5, 3)), cls(**kwargs)])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    assert cls(**kwargs)(np.zeros((0, 6, 5, 3), np.float32)).shape == (0, 6, 5, 3)
    with lamina.device("cpu:1"):
        on1 = ops.convert_to_tensor(x)
    assert cls(**kwargs)(on1).device.name == "cpu:1"


def test_spatial_layers_keras_parity():
    keras = _keras()
    x, b = IMAGES, IMAGES.shape[0]
    for f in ((0.3, 0.3), (0.9, 0.9)):
        for fmt in ("channels_last", "channels_first"):
            xx = x if fmt == "channels_last" else x.transpose(0, 3, 1, 2)
            np.testing.assert_allclose(layers.RandomSharpness(f, data_format=fmt)(xx).numpy(),
                                       np.asarray(keras.layers.RandomSharpness(f, data_format=fmt)(xx)), atol=1e-3)
    sf = RNG.uniform(-0.5, 0.5, (b, 2)).astype(np.float32)
    for kw in ({"fill_mode": "constant", "fill_value": 9.0}, {"fill_mode": "reflect", "interpolation": "nearest"}):
        ours, theirs = layers.RandomShear(0.5, 0.5, **kw), keras.layers.RandomShear(0.5, 0.5, **kw)
        m = _columns(1.0, _t(sf[:, :1]), 0.0, _t(sf[:, 1:]), 1.0, 0.0, 0.0, 0.0)
        np.testing.assert_allclose(ours._transform(_t(x), m).numpy(),
                                   np.asarray(theirs.transform_images(x, {"shear_factor": sf, "input_shape": x.shape})),
                                   atol=2e-3)
    sigma = np.array([0.3, 0.7], np.float32)
    apply = np.array([True, True, False])
    ours, theirs = layers.RandomGaussianBlur(kernel_size=(5, 3)), keras.layers.RandomGaussianBlur(kernel_size=(5, 3))
    np.testing.assert_allclose(
        ours._transform(_t(x), (_t(apply.reshape(b, 1, 1, 1)), _t(sigma))).numpy(),
        np.asarray(theirs.transform_images(x, {"should_apply_blur": apply, "blur_factor": sigma})), atol=1e-3)
    mask = np.zeros(x.shape, bool)
    mask[0, 1:4, 2:5] = True
    mask[2, 0:2, 0:6] = True
    fill = RNG.uniform(0, 255, x.shape).astype(np.float32)
    apply = np.array([True, True, False])
    got = layers.RandomErasing()._transform(_t(x), (_t(mask & apply.reshape(b, 1, 1, 1)), _t(fill))).numpy()
    want = np.asarray(keras.layers.RandomErasing().transform_images(
        x, {"apply_erasing": apply, "batch_masks": mask, "fill_value": fill}))
    np.testing.assert_allclose(got, want)
    ints = x.astype(np.int32)
    for name, kw in [("RandomErasing", {"scale": 0.3, "fill_value": 4.0}), ("RandomSharpness", {"factor": 0.3}),
                     ("RandomGaussianBlur", {"kernel_size": 5, "sigma": (0.2, 0.6)}),
                     ("RandomShear", {"x_factor": 0.2, "y_factor": (0.1, 0.3), "fill_value": 2.0})]:
        ours, theirs = getattr(layers, name)(**kw), getattr(keras.layers, name)(**kw)
        a, k = ours(ints, training=False), np.asarray(theirs(ints, training=False))
        assert a.dtype == str(k.dtype) and np.array_equal(a.numpy(), k)
        ca, ck = ours.get_config(), theirs.get_config()
        ca.pop("name"), ck.pop("name")
        assert ca == ck, (ca, ck)
