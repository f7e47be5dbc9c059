"""Tests for layers/preprocessing_spatial.py: RandomErasing, RandomSharpness, RandomGaussianBlur,
RandomShear, RandomPerspective, RandomElasticTransform (numpy references, Keras parity of the
transforms given the same parameters and of fixed-factor and inference outputs, statistics of the
draws, seeds, configs, errors)."""
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


def _shifted(x, dx, dy, fill):
    """NHWC x moved right by dx and down by dy whole pixels, `fill` where nothing lands."""
    out = np.full_like(x, fill)
    _, h, w, _ = x.shape
    out[:, dy:, dx:] = x[:, :h - dy, :w - dx]
    return out


def test_random_perspective():
    x = RNG.uniform(0, 255, (2, 7, 9, 3)).astype(np.float32)
    # scale=0 (corners stay put) and factor=0 (no image warped) give the identity
    run_layer_test(layers.RandomPerspective, {"factor": (1.0, 1.0), "scale": 0.0}, x.shape, input_data=x,
                   expected_output=x, atol=1e-3)
    run_layer_test(layers.RandomPerspective, {"factor": 0.0}, x.shape, input_data=x, expected_output=x)
    # end points = start points + (2, 1): the image moves 2 right and 1 down, fill_value where it left
    layer = layers.RandomPerspective(fill_value=5.0)
    start = np.array([[[0, 0], [8, 0], [0, 6], [8, 6]]] * 2, np.float32)
    for interpolation in ("bilinear", "nearest"):
        layer.interpolation = interpolation
        got = layer._transform(_t(x), (_t(np.array([True, False])), start, _t(start + [2, 1]))).numpy()
        np.testing.assert_allclose(got[0], _shifted(x[:1], 2, 1, 5.0)[0], atol=1e-3)
        np.testing.assert_array_equal(got[1], x[1])                     # not applied: unchanged
    # the draws: start points are the corners, end = start * (1 + d), d in [-scale / 2, scale / 2]
    big = np.zeros((400, 5, 8, 1), np.float32)
    apply, start, end = layers.RandomPerspective(factor=(0.6, 0.6), scale=0.4, seed=3)._draw(_t(big), None)
    np.testing.assert_array_equal(start, np.broadcast_to([[0, 0], [7, 0], [0, 4], [7, 4]], (400, 4, 2)))
    end = end.numpy()
    np.testing.assert_array_equal(end[:, 0], 0)                         # Keras's top-left corner never moves
    d = end[:, 1:][start[:, 1:] > 0] / start[:, 1:][start[:, 1:] > 0] - 1
    assert d.min() >= -0.2 - 1e-6 and d.max() <= 0.2 + 1e-6 and d.max() - d.min() > 0.35
    assert 0.52 < apply.numpy().mean() < 0.68                           # probability 0.6
    half = layers.RandomPerspective(seed=4)._draw(_t(big), None)[0].numpy()
    assert 0.4 < half.mean() < 0.6                                      # factor 1.0: p ~ U(0, 1)
    y = layers.RandomPerspective(factor=(1.0, 1.0), seed=5)(x).numpy()
    assert np.all(np.abs(y - x).max(axis=(1, 2, 3)) > 1)
    assert layers.RandomPerspective(0.3).factor == (0, 0.3)
    # errors, stating what was expected and received
    for bad in (1.5, -0.1, (0.1, 0.2), "1"):
        with pytest.raises(ValueError, match=r"RandomPerspective: `scale` must be a number in \[0, 1\], "
                                             r"received scale="):
            layers.RandomPerspective(scale=bad)
    with pytest.raises(ValueError, match=r"`factor` must be a number .* in the range \[0, 1\], received factor=1.5"):
        layers.RandomPerspective(factor=1.5)
    with pytest.raises(ValueError, match=r"`interpolation` must be one of \('nearest', 'bilinear'\), received "
                                         r"interpolation='bicubic'"):
        layers.RandomPerspective(interpolation="bicubic")
    with pytest.raises(ValueError, match=r"expected images at least 2 pixels high and wide .* received a batch of "
                                         r"shape \(2, 1, 9, 3\)"):
        layers.RandomPerspective(seed=1)(x[:, :1])


def _elastic_reference(keras, x, apply, strength, seed, interpolation, fill_mode, fill_value, value_range):
    """RandomElasticTransform's training output from Keras's ops (gaussian_blur, map_coordinates),
    given lamina's displacement noise (normal((2 * batch, h, w, 1), seed) * sigma: x, then y fields)."""
    b, h, w, c = x.shape
    alpha = max(h, w) * 0.1 * strength
    sigma = min(h, w) * 0.05 * strength
    k = int(6 * sigma) | 1
    noise = lamina.random.normal((2 * b, h, w, 1), seed=seed).numpy() * np.float32(sigma)
    field = np.asarray(keras.ops.image.gaussian_blur(noise, (k, k), (sigma, sigma), data_format="channels_last"))
    field = field.reshape(2, b, h, w) * alpha
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.empty_like(x)
    for i in range(b):
        for ch in range(c):
            out[i, ..., ch] = np.asarray(keras.ops.image.map_coordinates(
                x[i, ..., ch], [gy + field[1, i], gx + field[0, i]], order=0 if interpolation == "nearest" else 1,
                fill_mode=fill_mode, fill_value=fill_value))
    return np.clip(np.where(apply.reshape(b, 1, 1, 1), out, x), *value_range)


def test_random_elastic_transform():
    x = RNG.uniform(0, 255, (2, 12, 10, 3)).astype(np.float32)
    run_layer_test(layers.RandomElasticTransform, {"factor": 0.0}, x.shape, input_data=x, expected_output=x)
    run_layer_test(layers.RandomElasticTransform, {"scale": 0.0}, x.shape, input_data=x, expected_output=x)
    # Keras's strength -> (alpha, sigma), in float32
    alpha, sigma = layers.RandomElasticTransform.elastic_params(64, 32, 0.5)
    np.testing.assert_allclose((alpha, sigma), (3.2, 0.8), rtol=1e-6)
    # the displacement field is a smoothed noise: a constant image stays constant ("reflect")
    flat = np.full((2, 12, 10, 1), 42.0, np.float32)
    layer = layers.RandomElasticTransform(factor=(1.0, 1.0), scale=(1.0, 1.0), seed=2)
    np.testing.assert_allclose(layer(flat).numpy(), flat, atol=1e-3)
    y = layer(x).numpy()
    assert np.all(np.abs(y - x).max(axis=(1, 2, 3)) > 1) and y.min() >= 0 and y.max() <= 255
    # training clips every image to value_range (also the ones left as they are), as Keras
    wide = RNG.uniform(-50, 300, (2, 12, 10, 3)).astype(np.float32)
    got = layer._transform(_t(wide), (_t(np.array([False, False])), 0.7, 5)).numpy()
    np.testing.assert_array_equal(got, np.clip(wide, 0, 255))
    # ... except when factor or scale is 0: Keras then leaves the images as they are
    np.testing.assert_array_equal(layers.RandomElasticTransform(scale=0.0)(wide).numpy(), wide)
    np.testing.assert_array_equal(layers.RandomElasticTransform(factor=(0.0, 0.0))(wide).numpy(), wide)
    # a zero strength moves no pixel
    np.testing.assert_array_equal(layer._transform(_t(x), (_t(np.array([True, True])), 0.0, 5)).numpy(), x)
    # the draws: a probability per image, one strength per call in `scale`, a fresh noise seed per call
    big = np.zeros((400, 4, 4, 1), np.float32)
    gen_layer = layers.RandomElasticTransform(factor=(0.6, 0.6), scale=(0.2, 0.5), seed=7)
    draws = [gen_layer._draw(_t(big), None) for _ in range(30)]
    assert all(0.52 < a.numpy().mean() < 0.68 for a, _, _ in draws[:3])
    strengths = np.array([s for _, s, _ in draws])
    assert strengths.min() >= 0.2 and strengths.max() <= 0.5 and strengths.max() - strengths.min() > 0.15
    assert len({seed for _, _, seed in draws}) == 30
    again = layers.RandomElasticTransform(factor=(0.6, 0.6), scale=(0.2, 0.5), seed=7)._draw(_t(big), None)
    assert again[1:] == draws[0][1:]
    assert 0.4 < layers.RandomElasticTransform(seed=4)._draw(_t(big), None)[0].numpy().mean() < 0.6
    assert layers.RandomElasticTransform(scale=0.3).scale == (0, 0.3)
    # errors, stating what was expected and received
    for bad in (2.0, -0.1, (0.5, 2.0), (0.1, 0.2, 0.3)):
        with pytest.raises(ValueError, match=r"RandomElasticTransform: `scale` must be a number or a pair of numbers "
                                             r"in \[0, 1\], received scale="):
            layers.RandomElasticTransform(scale=bad)
    with pytest.raises(ValueError, match=r"`factor` must be a number .* in the range \[0, 1\], received factor=1.5"):
        layers.RandomElasticTransform(factor=1.5)
    with pytest.raises(ValueError, match=r"`fill_mode` must be one of \('reflect', 'wrap', 'constant', 'nearest', "
                                         r"'mirror'\), received fill_mode='foo'"):
        layers.RandomElasticTransform(fill_mode="foo")
    with pytest.raises(ValueError, match=r"`interpolation` must be one of .*, received interpolation='bicubic'"):
        layers.RandomElasticTransform(interpolation="bicubic")
    with pytest.raises(ValueError, match=r"`value_range` must be \(min, max\) with min < max, received "
                                         r"value_range=\(1, 0\)"):
        layers.RandomElasticTransform(value_range=(1, 0))


SPATIAL = [(layers.RandomErasing, {"factor": 0.8}), (layers.RandomSharpness, {"factor": 0.7}),
           (layers.RandomGaussianBlur, {"factor": 0.9, "sigma": 0.8}),
           (layers.RandomShear, {"x_factor": 0.3, "y_factor": 0.2, "fill_mode": "constant"}),
           (layers.RandomPerspective, {"factor": 0.9, "scale": 0.6, "fill_value": 3.0}),
           (layers.RandomElasticTransform, {"factor": 0.9, "scale": 0.8, "fill_mode": "constant"})]


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
                     ("RandomShear", {"x_factor": 0.2, "y_factor": (0.1, 0.3), "fill_value": 2.0}),
                     ("RandomPerspective", {"factor": 0.4, "scale": 0.3, "fill_value": 2.0, "seed": 3}),
                     ("RandomElasticTransform", {"factor": (0.2, 0.5), "scale": (0.1, 0.4), "fill_mode": "mirror",
                                                 "interpolation": "nearest", "value_range": (0, 1)})]:
        ours, theirs = getattr(layers, name)(**kw), getattr(keras.layers, name)(**kw)
        a, k = ours(ints, training=False), np.asarray(theirs(ints, training=False))
        assert a.dtype == str(k.dtype) and np.array_equal(a.numpy(), k)
        ca, ck = ours.get_config(), theirs.get_config()
        ca.pop("name"), ck.pop("name")
        assert ca == ck, (ca, ck)


def test_random_perspective_keras_parity(tmp_path):
    """The same corner points give Keras's warp; scale=0 gives Keras's output; Keras's draws and
    lamina's follow one distribution; a Keras model with both new layers loads and predicts alike."""
    keras = _keras()
    x = RNG.uniform(0, 255, (3, 9, 11, 2)).astype(np.float32)
    for interpolation, fill_value, fmt in (("bilinear", 0.0, "channels_last"), ("nearest", 7.0, "channels_first"),
                                           ("bilinear", -3.0, "channels_first")):
        theirs = keras.layers.RandomPerspective(factor=(1.0, 1.0), scale=0.8, interpolation=interpolation,
                                                fill_value=fill_value, seed=3, data_format=fmt)
        xx = x if fmt == "channels_last" else x.transpose(0, 3, 1, 2)
        t = {k: np.asarray(v) for k, v in theirs.get_random_transformation(xx).items()}
        t["apply_perspective"] = np.array([True, False, True])
        want = np.asarray(theirs.transform_images(xx, t))
        if fmt == "channels_first":
            want = want.transpose(0, 2, 3, 1)
        ours = layers.RandomPerspective(factor=(1.0, 1.0), scale=0.8, interpolation=interpolation,
                                        fill_value=fill_value, data_format=fmt)
        got = ours._transform(_t(x), (_t(t["apply_perspective"]), t["start_points"], _t(t["end_points"]))).numpy()
        np.testing.assert_allclose(got, want, atol=2e-3)
        assert np.abs(want - x).max() > 10
    for fmt in ("channels_last", "channels_first"):
        xx = x if fmt == "channels_last" else x.transpose(0, 3, 1, 2)
        kw = {"factor": (1.0, 1.0), "scale": 0.0, "data_format": fmt}
        np.testing.assert_allclose(layers.RandomPerspective(**kw)(xx).numpy(),
                                   np.asarray(keras.layers.RandomPerspective(**kw)(xx)), atol=2e-3)
    big = np.zeros((2000, 5, 8, 1), np.float32)
    t = keras.layers.RandomPerspective(scale=0.6, seed=1).get_random_transformation(big)
    apply, _, end = layers.RandomPerspective(scale=0.6, seed=1)._draw(_t(big), None)
    k_end, o_end = np.asarray(t["end_points"]), end.numpy()
    np.testing.assert_allclose(o_end.mean(0), k_end.mean(0), atol=0.1)
    np.testing.assert_allclose(o_end.std(0), k_end.std(0), atol=0.1)
    assert abs(apply.numpy().mean() - np.asarray(t["apply_perspective"]).mean()) < 0.06
    theirs = keras.Sequential([keras.Input((8, 9, 3)), keras.layers.RandomPerspective(0.5, 0.3, seed=2),
                               keras.layers.RandomElasticTransform(scale=(0.1, 0.4), fill_mode="mirror"),
                               keras.layers.Flatten(), keras.layers.Dense(2)])
    path = str(tmp_path / "spatial.keras")
    theirs.save(path)
    ours = lamina.models.load_model(path)
    assert [type(layer).__name__ for layer in ours.layers[:2]] == ["RandomPerspective", "RandomElasticTransform"]
    x = RNG.uniform(0, 255, (2, 8, 9, 3)).astype(np.float32)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-2)


def test_random_elastic_transform_keras_parity():
    """With lamina's noise, the layer's transform is Keras's blur and map_coordinates of it; the
    displacement sizes match Keras's layer's for a fixed strength."""
    keras = _keras()
    x = RNG.uniform(-20, 270, (2, 16, 12, 3)).astype(np.float32)
    for kw, strength in (({}, 0.9), ({"interpolation": "nearest", "fill_mode": "constant", "fill_value": 9.0}, 0.6),
                         ({"fill_mode": "wrap"}, 1.0), ({"fill_mode": "nearest", "value_range": (-10, 200)}, 0.8),
                         ({"fill_mode": "mirror"}, 0.7)):
        layer = layers.RandomElasticTransform(**kw)
        apply = np.array([True, False])
        got = layer._transform(_t(x), (_t(apply), strength, 123)).numpy()
        want = _elastic_reference(keras, x, apply, strength, 123, layer.interpolation, layer.fill_mode,
                                  layer.fill_value, layer.value_range)
        np.testing.assert_allclose(got, want, atol=2e-3, err_msg=str(kw))
        assert np.abs(got - np.clip(x, *layer.value_range)).max() > 10
    # a horizontal ramp (value = column) shows the x displacement: its spread matches Keras's
    h = w = 48
    ramp = np.broadcast_to(np.arange(w, dtype=np.float32).reshape(1, 1, w, 1), (24, h, w, 1)).copy()
    kw = {"factor": (1.0, 1.0), "scale": (0.8, 0.8), "fill_mode": "nearest"}
    ours = layers.RandomElasticTransform(**kw, seed=1)(ramp).numpy() - ramp
    theirs = np.asarray(keras.layers.RandomElasticTransform(**kw, seed=1)(ramp)) - ramp
    inner = (slice(None), slice(8, -8), slice(8, -8))
    s_ours, s_theirs = ours[inner].std(), theirs[inner].std()
    assert s_theirs > 0.3 and abs(s_ours / s_theirs - 1) < 0.1, (s_ours, s_theirs)
