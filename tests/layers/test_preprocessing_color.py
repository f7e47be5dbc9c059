"""Tests for layers/preprocessing_color.py: RandomBrightness, RandomGrayscale, RandomInvert,
Solarization, AutoContrast, RandomSaturation, RandomHue, RandomColorDegeneration,
RandomColorJitter, RandomPosterization, Equalization, ContrastLimitedAdaptiveHistogramEqualization.

Each layer: numpy references of its transform, Keras parity of the transform given the same
parameters (Keras's `transform_images(images, transformation)`: lamina's random streams are not
JAX's), of fixed-factor and inference outputs and dtypes, and of configs; statistics of the
random draws; seeds; errors."""
import colorsys

import numpy as np
import pytest

import lamina
from lamina import layers, ops
from keras_ref import keras_or_none
from layer_harness import run_layer_test

RNG = np.random.default_rng(3)
IMAGES = RNG.uniform(0, 255, (3, 5, 6, 3)).astype(np.float32)
GRAY = np.array([0.2989, 0.5870, 0.1140])


def _keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    return keras


def _t(a):
    return ops.convert_to_tensor(np.asarray(a))


def _same_config(ours, theirs, drop=()):
    a, b = ours.get_config(), theirs.get_config()
    for k in ("name",) + tuple(drop):
        a.pop(k, None), b.pop(k, None)
    assert a == b, (a, b)


def _hsv_map(img, fn):
    """Applies fn(h, s, v) -> (h, s, v) to every pixel of an HWC image with colorsys."""
    out = np.empty(img.shape, np.float64)
    for i in np.ndindex(img.shape[:2]):
        out[i] = colorsys.hsv_to_rgb(*fn(*colorsys.rgb_to_hsv(*img[i].astype(np.float64))))
    return out


# ---- RandomBrightness ------------------------------------------------------------------------------

def test_random_brightness():
    layer, _ = run_layer_test(layers.RandomBrightness, {"factor": (0.1, 0.1), "value_range": (0, 200)},
                              IMAGES.shape, input_data=IMAGES, expected_output=np.clip(IMAGES + 20, 0, 200),
                              atol=1e-4)
    x = RNG.uniform(50, 200, (300, 2, 2, 3)).astype(np.float32)
    y = layers.RandomBrightness(0.2, seed=1)(x).numpy()
    delta = (y - x).reshape(300, -1)
    assert np.allclose(delta, delta[:, :1], atol=1e-3)                 # one delta per image
    assert delta.min() >= -51 - 1e-3 and delta.max() <= 51 + 1e-3      # [-0.2, 0.2] * 255
    assert delta.min() < -45 and delta.max() > 45
    # integer images stay integer (the delta truncated), inference returns the input itself
    ints = IMAGES.astype(np.int32)
    out = layers.RandomBrightness((0.1, 0.1))(ints)
    assert out.dtype == "int32"
    np.testing.assert_array_equal(out.numpy(), np.clip(ints + 25, 0, 255))
    same = layers.RandomBrightness(0.5)(ints, training=False)
    assert same.dtype == "int32"
    np.testing.assert_array_equal(same.numpy(), ints)
    assert layers.RandomBrightness(0.5)(lamina.Input((4, 4, 3), dtype="int32")).dtype == "int32"
    with pytest.raises(ValueError, match=r"`factor` must be a number .* \[-1, 1\]"):
        layers.RandomBrightness(1.5)
    with pytest.raises(ValueError, match="`value_range` must be a list of two numbers"):
        layers.RandomBrightness(0.1, value_range=255)


# ---- RandomGrayscale / RandomColorDegeneration -------------------------------------------------------

def test_random_grayscale():
    gray = (IMAGES.astype(np.float64) @ GRAY)[..., None]
    layer, _ = run_layer_test(layers.RandomGrayscale, {"factor": 1.0}, IMAGES.shape, input_data=IMAGES,
                              expected_output=np.broadcast_to(gray, IMAGES.shape), atol=1e-4)
    np.testing.assert_array_equal(layers.RandomGrayscale(0.0)(IMAGES).numpy(), IMAGES)
    x = RNG.uniform(0, 1, (400, 2, 2, 3)).astype(np.float32)
    y = layers.RandomGrayscale(0.3, seed=2)(x).numpy()
    turned = np.all(np.abs(y - y[..., :1]) < 1e-6, axis=(1, 2, 3))
    kept = np.all(y == x, axis=(1, 2, 3))
    assert np.all(turned | kept) and 0.22 < turned.mean() < 0.38
    ints = IMAGES.astype(np.int32)
    out = layers.RandomGrayscale(1.0)(ints)
    assert out.dtype == "int32"
    np.testing.assert_array_equal(out.numpy()[..., 0], (ints.astype(np.float32) @ GRAY.astype(np.float32))
                                  .astype(np.int32))
    one = RNG.uniform(0, 1, (2, 3, 3, 1)).astype(np.float32)
    np.testing.assert_array_equal(layers.RandomGrayscale(1.0)(one).numpy(), one)
    with pytest.raises(ValueError, match=r"RandomGrayscale '.*': expected images with 1 or 3 channels"):
        layers.RandomGrayscale(1.0)(np.zeros((1, 2, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"`factor` must be a probability in \[0, 1\]"):
        layers.RandomGrayscale(1.5)


def test_random_color_degeneration():
    gray = (IMAGES.astype(np.float64) @ GRAY)[..., None]
    want = np.clip(IMAGES + 0.4 * (gray - IMAGES), 0, 255)
    run_layer_test(layers.RandomColorDegeneration, {"factor": (0.4, 0.4)}, IMAGES.shape, input_data=IMAGES,
                   expected_output=want, atol=1e-3)
    x = RNG.uniform(0, 255, (200, 2, 2, 3)).astype(np.float32)
    y = layers.RandomColorDegeneration((0.2, 0.5), seed=3)(x).numpy()
    g = (x.astype(np.float64) @ GRAY)[..., None]
    f = ((y - x) * (g - x)).sum(axis=(1, 2, 3)) / ((g - x) ** 2).sum(axis=(1, 2, 3))
    assert f.min() > 0.2 - 1e-3 and f.max() < 0.5 + 1e-3 and f.max() - f.min() > 0.2
    assert layers.RandomColorDegeneration(0.3).factor == (-0.3, 0.3)


# ---- RandomInvert / Solarization / AutoContrast ------------------------------------------------------

def test_random_invert():
    x = RNG.uniform(0, 1, (600, 2, 2, 1)).astype(np.float32)
    y = layers.RandomInvert(value_range=(0, 1), seed=4)(x).numpy()
    inverted = np.all(np.abs(y - (1 - x)) < 1e-6, axis=(1, 2, 3))
    kept = np.all(y == x, axis=(1, 2, 3))
    assert np.all(inverted | kept)
    assert 0.42 < inverted.mean() < 0.58          # p ~ U(0, 1), inverted when U(0, 1) < p: 1/2
    y = layers.RandomInvert((0.5, 0.5), value_range=(0, 1), seed=5)(x).numpy()
    assert 0.42 < np.all(np.abs(y - (1 - x)) < 1e-6, axis=(1, 2, 3)).mean() < 0.58
    assert layers.RandomInvert(0.0, seed=1)(x).numpy().tolist() == x.tolist()
    ints = IMAGES.astype(np.int32)
    assert layers.RandomInvert()(ints, training=False).dtype == "int32"
    assert layers.RandomInvert()(ints).dtype == "float32"
    with pytest.raises(ValueError, match=r"`value_range` must be \(min, max\) with min < max"):
        layers.RandomInvert(value_range=(1, 0))


def test_solarization():
    # the defaults: every pixel inverted
    run_layer_test(layers.Solarization, {}, IMAGES.shape, input_data=IMAGES, expected_output=255 - IMAGES, atol=1e-3)
    layer = layers.Solarization(value_range=(0, 1))
    add, threshold = _t(np.full((3, 1, 1, 1), 20.0, np.float32)), _t(np.full((3, 1, 1, 1), 128.0, np.float32))
    got = layer._transform(_t(IMAGES / 255), (add, threshold)).numpy()
    y = np.clip(IMAGES + 20, 0, 255)
    np.testing.assert_allclose(got, np.where(y < 128, y, 255 - y) / 255, atol=1e-5)
    # additions in [a0, a1 * 255], thresholds likewise (Keras's bounds)
    x = np.zeros((500, 1, 1, 1), np.float32)
    adds = layers.Solarization(addition_factor=(0.1, 0.2), threshold_factor=1.0, seed=6)._draw(_t(x), None)[0].numpy()
    assert adds.min() >= 0.1 and adds.max() <= 51 and adds.max() > 45
    ints = IMAGES.astype(np.int32)
    out = layers.Solarization()(ints, training=False)
    assert out.dtype == "float32"
    np.testing.assert_array_equal(out.numpy(), ints)
    assert layers.Solarization(0.3).addition_factor == (0, 0.3)
    with pytest.raises(ValueError, match=r"`threshold_factor` must be a number or a pair of numbers in \[0, 1\]"):
        layers.Solarization(threshold_factor=(0.2, 1.5))


def test_auto_contrast():
    lo, hi = IMAGES.min(axis=(1, 2), keepdims=True), IMAGES.max(axis=(1, 2), keepdims=True)
    want = (IMAGES - lo) / (hi - lo) * 255
    run_layer_test(layers.AutoContrast, {}, IMAGES.shape, input_data=IMAGES, expected_output=want, atol=1e-3)
    # applies at inference too; a constant channel is left as it is; other value ranges
    x = IMAGES / 255 * 0.5 + 0.2
    x[1, :, :, 2] = 0.3
    got = layers.AutoContrast(value_range=(0, 1))(x, training=False).numpy()
    lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    want = np.where(hi > lo, (x - lo) / np.where(hi > lo, hi - lo, 1), x)
    np.testing.assert_allclose(got, want, atol=1e-5)
    cf = layers.AutoContrast(value_range=(0, 1), data_format="channels_first")(x.transpose(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(cf, want.transpose(0, 3, 1, 2), atol=1e-5)


# ---- HSV layers --------------------------------------------------------------------------------------

def test_random_saturation_and_hue_match_colorsys():
    img = IMAGES[:2, :3, :4]
    f = 0.3
    scale = f / (1 - f + 1e-7)
    got = layers.RandomSaturation((f, f))(img).numpy()
    want = np.stack([_hsv_map(i, lambda h, s, v: (h, np.clip(s * scale, 0, 255), v)) for i in img])
    np.testing.assert_allclose(got, want, atol=1e-2)
    np.testing.assert_allclose(layers.RandomSaturation((0.5, 0.5))(img).numpy(), img, atol=1e-2)  # 0.5: unchanged
    gray = layers.RandomSaturation((0.0, 0.0))(img).numpy()
    np.testing.assert_allclose(gray, np.repeat(img.max(axis=-1, keepdims=True), 3, -1), atol=1e-3)
    shift = 0.15
    got = layers.RandomHue(0.3)._transform(_t(img), _t(np.full((2, 1, 1), shift, np.float32))).numpy()
    want = np.stack([_hsv_map(i / 255, lambda h, s, v: ((h + shift) % 1.0, s, v)) for i in img]) * 255
    np.testing.assert_allclose(got, want, atol=1e-2)
    # the shift is +-f/2 of a turn, both signs
    x = RNG.uniform(0, 1, (400, 1, 1, 3)).astype(np.float32)
    shifts = layers.RandomHue((0.2, 0.6), seed=7)._draw(_t(x), None).numpy().ravel()
    assert np.all((np.abs(shifts) >= 0.1 - 1e-6) & (np.abs(shifts) <= 0.3 + 1e-6))
    assert 0.4 < (shifts > 0).mean() < 0.6
    for cls in (layers.RandomSaturation, layers.RandomHue):
        with pytest.raises(ValueError, match="expected images with 3 channels"):
            cls(0.5)(np.zeros((1, 2, 2, 1), np.float32))
        ints = IMAGES.astype(np.int32)
        assert cls(0.5)(ints, training=False).dtype == "int32"
        assert cls(0.5)(ints).dtype == "float32"


def test_random_posterization():
    x = RNG.uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    want = (np.floor(x).astype(np.uint8) >> 5 << 5).astype(np.float32)       # 3 bits kept
    run_layer_test(layers.RandomPosterization, {"factor": (3, 3)}, x.shape, input_data=x, expected_output=want)
    got = layers.RandomPosterization((3, 3), value_range=(0, 1))(x / 255).numpy()
    np.testing.assert_allclose(got, want / 255, atol=1e-6)
    bits = []
    layer = layers.RandomPosterization(4, seed=8)
    assert layer.factor == (1, 4)
    steps = layer._draw(_t(np.zeros((300, 1, 1, 1), np.float32)), None).numpy().ravel()
    bits = 8 - np.log2(steps)
    assert set(np.round(bits).astype(int)) == {1, 2, 3}                      # randint's [1, 4)
    for bad in (0, 9, 2.5, (1, 9)):
        with pytest.raises(ValueError, match=r"`factor` must be an integer .* in \[1, 8\]"):
            layers.RandomPosterization(bad)


def test_equalization():
    x = RNG.integers(0, 40, (2, 6, 5, 2)).astype(np.float32) * 3
    # numpy reference: one histogram per channel over the whole batch
    want = np.empty_like(x)
    for c in range(2):
        ch = x[..., c]
        idx = np.clip(ch * 255 / 255, 0, 255).astype(int)
        hist = np.bincount(idx.ravel(), minlength=256)
        cdf = np.cumsum(hist)
        cdf_min = cdf[np.argmax(cdf > 0)]
        lut = np.clip(np.round((cdf - cdf_min) * 255 / (cdf[-1] - cdf_min)), 0, 255)
        want[..., c] = lut[idx]
    run_layer_test(layers.Equalization, {}, x.shape, input_data=x, expected_output=want)
    np.testing.assert_array_equal(layers.Equalization()(x, training=False).numpy(), x)   # Keras: only in training
    flat = np.full((1, 3, 3, 1), 7.0, np.float32)
    np.testing.assert_array_equal(layers.Equalization()(flat).numpy(), flat)            # one occupied bin
    with pytest.raises(ValueError, match="`bins` must be a positive integer"):
        layers.Equalization(bins=0)


def _clahe_reference(images, grid, clip_limit):
    """CLAHE of NHWC images in [0, 255], in float64 with loops: per tile and channel a clipped,
    redistributed histogram and its normalised CDF; each pixel blends the CDFs of the four tiles
    whose centres surround it (the edge tiles standing in beyond the grid)."""
    b, h, w, c = images.shape
    gh, gw = grid
    th, tw = -(-h // gh), -(-w // gw)
    out = np.empty(images.shape)
    for n, img in enumerate(images):
        padded = np.pad(img, ((0, th * gh - h), (0, tw * gw - w), (0, 0)), mode="symmetric")
        luts = np.empty((gh, gw, c, 256))
        for i, j, ch in np.ndindex(gh, gw, c):
            tile = padded[i * th:(i + 1) * th, j * tw:(j + 1) * tw, ch]
            hist = np.bincount(np.clip(tile, 0, 255).astype(int).ravel(), minlength=256).astype(np.float64)
            if clip_limit > 0:
                limit = clip_limit * th * tw / 256
                hist = np.minimum(hist, limit) + np.maximum(hist - limit, 0).sum() / 256
            cdf = np.cumsum(hist)
            luts[i, j, ch] = np.clip((cdf - cdf[0]) * 255 / ((th * tw - cdf[0]) or 1), 0, 255)
        for y, x in np.ndindex(h, w):
            fy, fx = (y - th / 2) / th, (x - tw / 2) / tw            # in units of tiles, from tile 0's centre
            i0, j0 = int(np.floor(fy)), int(np.floor(fx))
            wy, wx = fy - i0, fx - j0
            for ch in range(c):
                v = int(np.clip(img[y, x, ch], 0, 255))

                def lut(i, j):
                    return luts[min(max(i, 0), gh - 1), min(max(j, 0), gw - 1), ch, v]
                top = lut(i0, j0) * (1 - wx) + lut(i0, j0 + 1) * wx
                bottom = lut(i0 + 1, j0) * (1 - wx) + lut(i0 + 1, j0 + 1) * wx
                out[n, y, x, ch] = top * (1 - wy) + bottom * wy
    return out


def test_clahe():
    cls = layers.ContrastLimitedAdaptiveHistogramEqualization
    x = RNG.uniform(-5, 260, (2, 10, 13, 3)).astype(np.float32)
    for kwargs in ({}, {"tile_grid_size": (3, 4), "clip_limit": 2.0}, {"tile_grid_size": (2, 5), "clip_limit": 0.0},
                   {"tile_grid_size": (1, 1), "clip_limit": 1.5}):
        want = _clahe_reference(x, kwargs.get("tile_grid_size", (8, 8)), kwargs.get("clip_limit", 4.0))
        run_layer_test(cls, kwargs, x.shape, input_data=x, expected_output=want, atol=2e-3)
    # value_range is mapped to [0, 255] and back
    unit = RNG.uniform(0, 1, (2, 9, 7, 2)).astype(np.float32)
    layer = cls(value_range=(0, 1), tile_grid_size=(2, 3), clip_limit=3.0)
    want = _clahe_reference(unit * 255, (2, 3), 3.0) / 255
    np.testing.assert_allclose(layer(unit).numpy(), want, atol=1e-5)
    # not random: the same at inference; one image; channels_first; a grid finer than the image
    np.testing.assert_array_equal(layer(unit, training=False).numpy(), layer(unit).numpy())
    np.testing.assert_allclose(layer(unit[1]).numpy(), want[1], atol=1e-5)
    cf = cls(value_range=(0, 1), tile_grid_size=(2, 3), clip_limit=3.0, data_format="channels_first")
    np.testing.assert_allclose(cf(unit.transpose(0, 3, 1, 2)).numpy(), want.transpose(0, 3, 1, 2), atol=1e-5)
    small = x[:, :3, :5]
    np.testing.assert_allclose(cls()(small).numpy(), _clahe_reference(small, (8, 8), 4.0), atol=2e-3)
    # integer images stay integer (the result truncated), as Keras casts back to the input's dtype
    ints = np.clip(x, 0, 255).astype(np.int32)
    out = cls(tile_grid_size=(3, 3))(ints)
    assert out.dtype == "int32" and cls()(lamina.Input((10, 13, 3), dtype="int32")).dtype == "int32"
    ref = _clahe_reference(ints, (3, 3), 4.0)
    assert np.abs(out.numpy() - np.trunc(ref)).max() <= 1 and np.mean(out.numpy() == np.trunc(ref)) > 0.99
    assert cls()(np.zeros((0, 4, 4, 3), np.float32)).shape == (0, 4, 4, 3)
    # errors, stating what was expected and received
    who = "ContrastLimitedAdaptiveHistogramEqualization"
    for bad in (8, (0, 8), (8.0, 8), (2, 2, 2), (True, 2)):
        with pytest.raises(ValueError, match=rf"{who}: `tile_grid_size` must be a pair of positive integers \(rows, "
                                             rf"columns\), received tile_grid_size="):
            cls(tile_grid_size=bad)
    with pytest.raises(ValueError, match=rf"{who}: `clip_limit` must be a finite number, received clip_limit='4'"):
        cls(clip_limit="4")
    with pytest.raises(ValueError, match=r"`value_range` must be \(min, max\) with min < max, received "
                                         r"value_range=\(255, 0\)"):
        cls(value_range=(255, 0))
    with pytest.raises(ValueError, match=r"expected min_ndim=3, found ndim=2. Full shape received: \(4, 4\)"):
        cls()(np.zeros((4, 4), np.float32))


def test_random_color_jitter():
    # brightness first, then contrast: y = (b - mean(b)) * c + mean(b), c in [0.5, 1.5] per image
    x = RNG.uniform(60, 180, (50, 4, 4, 3)).astype(np.float32)
    layer = layers.RandomColorJitter(brightness_factor=(0.1, 0.1), contrast_factor=(0.5, 0.5), seed=1)
    b = x + 25.5
    mean = b.mean(axis=(1, 2), keepdims=True)
    y = layer(x).numpy()
    db, dy = (b - mean).reshape(50, -1), (y - mean).reshape(50, -1)
    c = (db * dy).sum(1) / (db * db).sum(1)
    np.testing.assert_allclose(dy, db * c[:, None], atol=1e-2)
    assert c.min() >= 0.5 - 1e-4 and c.max() <= 1.5 + 1e-4 and c.max() - c.min() > 0.5
    ints = IMAGES.astype(np.int32)
    assert layer(ints, training=False).dtype == "int32"
    jitter = layers.RandomColorJitter(value_range=(0, 1), brightness_factor=0.2, contrast_factor=0.3,
                                      saturation_factor=(0.3, 0.7), hue_factor=0.2, seed=3)
    a = jitter(IMAGES / 255).numpy()
    assert a.shape == IMAGES.shape and a.min() >= 0 and a.max() <= 1
    again = layers.RandomColorJitter(value_range=(0, 1), brightness_factor=0.2, contrast_factor=0.3,
                                     saturation_factor=(0.3, 0.7), hue_factor=0.2, seed=3)
    np.testing.assert_array_equal(again(IMAGES / 255).numpy(), a)
    np.testing.assert_array_equal(layers.RandomColorJitter()(IMAGES).numpy(), IMAGES)   # no factors: nothing
    with pytest.raises(ValueError, match=r"RandomColorJitter: RandomHue: `hue_factor` must be"):
        layers.RandomColorJitter(hue_factor=2.0)


# ---- all layers: seeds, inference, devices, configs -----------------------------------------------------

RANDOM_LAYERS = [
    (layers.RandomBrightness, {"factor": 0.3}), (layers.RandomGrayscale, {"factor": 0.5}),
    (layers.RandomInvert, {}), (layers.Solarization, {"addition_factor": 0.2, "threshold_factor": 0.6}),
    (layers.RandomSaturation, {"factor": 0.4}), (layers.RandomHue, {"factor": 0.4}),
    (layers.RandomColorDegeneration, {"factor": 0.5}), (layers.RandomPosterization, {"factor": 6}),
    (layers.RandomColorJitter, {"brightness_factor": 0.2, "hue_factor": 0.3}),
]


@pytest.mark.parametrize("cls,kwargs", RANDOM_LAYERS, ids=[c.__name__ for c, _ in RANDOM_LAYERS])
def test_color_layers_seeds_symbolic_and_config(cls, kwargs):
    x = RNG.uniform(0, 255, (8, 4, 4, 3)).astype(np.float32)
    a, b = cls(**kwargs, seed=11), cls(**kwargs, seed=11)
    ya, yb = a(x).numpy(), b(x).numpy()
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya, a(x).numpy())                      # the next draw differs
    assert not np.array_equal(ya, x)
    np.testing.assert_array_equal(a(x, training=False).numpy(), x)
    np.testing.assert_array_equal(a(x[0]).shape, x[0].shape)        # one image
    cf = cls(**kwargs, seed=11, data_format="channels_first")(x.transpose(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(cf, ya.transpose(0, 3, 1, 2), atol=1e-4)
    out = cls(**kwargs)(lamina.Input((4, 4, 3)))
    assert out.shape == (None, 4, 4, 3)
    config = a.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == {**config, "name": clone.name}
    clone = lamina.layers.deserialize(lamina.layers.serialize(a))
    assert type(clone) is cls and clone.get_config() == config
    model = lamina.Sequential([lamina.Input((4, 4, 3)), cls(**kwargs)])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    assert cls(**kwargs)(np.zeros((0, 4, 4, 3), np.float32)).shape == (0, 4, 4, 3)


def test_color_layers_work_on_the_device_of_their_input():
    with lamina.device("cpu:1"):
        x = ops.convert_to_tensor(IMAGES)
    for cls, kwargs in RANDOM_LAYERS + [(layers.AutoContrast, {}), (layers.Equalization, {}),
                                        (layers.ContrastLimitedAdaptiveHistogramEqualization, {})]:
        assert cls(**kwargs)(x).device.name == "cpu:1", cls.__name__


# ---- Keras parity ----------------------------------------------------------------------------------------

def test_color_layers_keras_transform_parity():
    """The same parameters give Keras's outputs (keras transform_images with a given transformation)."""
    keras = _keras()
    x = IMAGES
    b = x.shape[0]
    t = _t(x)
    delta = RNG.uniform(-30, 30, (b, 1, 1, 1)).astype(np.float32)
    np.testing.assert_allclose(layers.RandomBrightness(0.2)._transform(t, _t(delta)).numpy(),
                               np.asarray(keras.layers.RandomBrightness(0.2).transform_images(x, {"rgb_delta": delta})),
                               atol=1e-4)
    apply = np.array([True, False, True]).reshape(b, 1, 1, 1)
    np.testing.assert_allclose(layers.RandomGrayscale()._transform(t, _t(apply)).numpy(),
                               np.asarray(keras.layers.RandomGrayscale().transform_images(x, apply)), atol=1e-3)
    np.testing.assert_allclose(layers.RandomInvert()._transform(t, _t(apply)).numpy(),
                               np.asarray(keras.layers.RandomInvert().transform_images(
                                   x, {"apply_inversion": apply.ravel()})), atol=1e-4)
    adds = RNG.uniform(0, 60, (b, 1, 1, 1)).astype(np.float32)
    thr = RNG.uniform(50, 200, (b, 1, 1, 1)).astype(np.float32)
    np.testing.assert_allclose(
        layers.Solarization(value_range=(0, 1))._transform(_t(x / 255), (_t(adds), _t(thr))).numpy(),
        np.asarray(keras.layers.Solarization(value_range=(0, 1)).transform_images(
            x / 255, {"additions": adds, "thresholds": thr})), atol=1e-5)
    sat = RNG.uniform(0, 3, (b,)).astype(np.float32)
    np.testing.assert_allclose(layers.RandomSaturation(0.5)._transform(t, _t(sat.reshape(b, 1, 1))).numpy(),
                               np.asarray(keras.layers.RandomSaturation(0.5).transform_images(x, {"factor": sat})),
                               atol=2e-3)
    hue = RNG.uniform(-0.5, 0.5, (b,)).astype(np.float32)
    np.testing.assert_allclose(layers.RandomHue(0.5)._transform(t, _t(hue.reshape(b, 1, 1))).numpy(),
                               np.asarray(keras.layers.RandomHue(0.5).transform_images(x, {"factor": hue})),
                               atol=2e-3)
    f = RNG.uniform(-1, 1, (b, 1, 1, 1)).astype(np.float32)
    np.testing.assert_allclose(layers.RandomColorDegeneration(0.5)._transform(t, _t(f)).numpy(),
                               np.asarray(keras.layers.RandomColorDegeneration(0.5).transform_images(x, {"factor": f})),
                               atol=1e-3)
    shift = np.array([2, 5, 7], np.uint8)
    np.testing.assert_allclose(
        layers.RandomPosterization(8)._transform(t, _t((2.0 ** shift).reshape(b, 1, 1, 1).astype(np.float32)))
        .numpy(), np.asarray(keras.layers.RandomPosterization(8).transform_images(x, {"shift_factor": shift})),
        atol=1e-4)


@pytest.mark.parametrize("name,kwargs", [
    ("RandomBrightness", {"factor": (0.1, 0.1), "value_range": (0, 300)}),
    ("RandomGrayscale", {"factor": 1.0}), ("RandomInvert", {"factor": (1.0, 1.0), "value_range": (0, 300)}),
    ("Solarization", {"value_range": (0, 300)}), ("AutoContrast", {"value_range": (0, 300)}),
    ("RandomSaturation", {"factor": (0.2, 0.2)}), ("RandomColorDegeneration", {"factor": (-0.4, -0.4)}),
    ("RandomPosterization", {"factor": (2, 2)}), ("Equalization", {"bins": 32, "value_range": (0, 300)}),
    ("RandomColorJitter", {"brightness_factor": (0.1, 0.1), "contrast_factor": (0.0, 0.0),
                           "saturation_factor": (0.6, 0.6)}),
])
def test_color_layers_keras_output_parity(name, kwargs):
    """Fixed factors (or no randomness): the same training and inference outputs, dtypes and configs."""
    keras = _keras()
    ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
    np.testing.assert_allclose(ours(IMAGES).numpy(), np.asarray(theirs(IMAGES)), atol=2e-3, err_msg=name)
    cf = IMAGES.transpose(0, 3, 1, 2)
    if name not in ("AutoContrast", "RandomColorJitter"):   # Keras's are channels_last only
        a = getattr(layers, name)(**kwargs, data_format="channels_first")(cf).numpy()
        b = np.asarray(getattr(keras.layers, name)(**kwargs, data_format="channels_first")(cf))
        np.testing.assert_allclose(a, b, atol=2e-3, err_msg=name)
    ints = IMAGES.astype(np.int32)
    for training in (True, False):
        if name == "RandomSaturation" and training:
            continue          # Keras refuses integer images there; lamina converts them
        a, b = ours(ints, training=training), np.asarray(theirs(ints, training=training))
        assert a.dtype == str(b.dtype), (name, training, a.dtype, b.dtype)
        np.testing.assert_allclose(a.numpy(), b, atol=2e-3, err_msg=name)
    _same_config(ours, theirs, drop=("seed",) if name == "RandomGrayscale" else ())   # Keras leaves it out


def test_color_layers_keras_configs_and_keras_saved_model(tmp_path):
    keras = _keras()
    for name, kwargs in [("RandomBrightness", {"factor": 0.2, "seed": 3}), ("RandomInvert", {"factor": 0.7}),
                         ("Solarization", {"addition_factor": (0.1, 0.3), "threshold_factor": 0.4}),
                         ("RandomSaturation", {"factor": 0.6, "value_range": (0, 1)}), ("RandomHue", {"factor": 0.3}),
                         ("RandomColorDegeneration", {"factor": 0.7}), ("RandomPosterization", {"factor": 5}),
                         ("Equalization", {"bins": 64}), ("AutoContrast", {"value_range": (0, 1)}),
                         ("RandomColorJitter", {"brightness_factor": 0.3, "hue_factor": (0.1, 0.2)}),
                         ("RandomGrayscale", {"factor": 0.3}),
                         ("ContrastLimitedAdaptiveHistogramEqualization", {"tile_grid_size": (4, 2), "clip_limit": 2.5,
                                                                           "value_range": (0, 1)})]:
        _same_config(getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs),
                     drop=("seed",) if name == "RandomGrayscale" else ())
    theirs = keras.Sequential([keras.Input((5, 6, 3)), keras.layers.RandomBrightness(0.2),
                               keras.layers.RandomHue(0.2), keras.layers.Solarization(0.1),
                               keras.layers.AutoContrast(), keras.layers.Flatten(), keras.layers.Dense(2)])
    path = str(tmp_path / "color.keras")
    theirs.save(path)
    ours = lamina.models.load_model(path)
    np.testing.assert_allclose(ours.predict(IMAGES, verbose=0), theirs.predict(IMAGES, verbose=0), rtol=1e-4,
                               atol=1e-3)


def test_clahe_keras_parity(tmp_path):
    """Keras's CLAHE outputs on random images: tile grids, clip limits, value ranges, both data
    formats, one image, integer images; its config; a Keras model with it loads and predicts alike."""
    keras = _keras()
    name = "ContrastLimitedAdaptiveHistogramEqualization"
    cases = [((2, 10, 12, 3), {}), ((2, 10, 12, 3), {"tile_grid_size": (3, 4), "clip_limit": 2.0}),
             ((1, 16, 16, 1), {"tile_grid_size": (8, 8), "clip_limit": 1.0}),
             ((3, 3, 5, 2), {}), ((2, 17, 9, 3), {"tile_grid_size": (2, 3), "clip_limit": 0.0}),
             ((2, 20, 13, 3), {"tile_grid_size": (4, 2), "clip_limit": 6.0, "value_range": (0, 1)}),
             ((2, 11, 14, 3), {"tile_grid_size": (5, 7), "clip_limit": 3.0, "value_range": (-1, 1)}),
             ((12, 15, 3), {"tile_grid_size": (3, 2)})]
    for shape, kw in cases:
        lo, hi = kw.get("value_range", (0, 255))
        x = RNG.uniform(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), shape).astype(np.float32)
        for fmt in ("channels_last", "channels_first"):
            xx = x if fmt == "channels_last" else np.moveaxis(x, -1, -3).copy()
            ours = getattr(layers, name)(**kw, data_format=fmt)
            theirs = getattr(keras.layers, name)(**kw, data_format=fmt)
            got, want = ours(xx), np.asarray(theirs(xx))
            assert got.dtype == str(want.dtype) == "float32"
            np.testing.assert_allclose(got.numpy(), want, atol=1e-3 * (hi - lo) / 255, err_msg=f"{shape} {kw} {fmt}")
            _same_config(ours, theirs)
    ints = RNG.integers(0, 256, (2, 10, 12, 3)).astype(np.int32)
    got, want = layers.ContrastLimitedAdaptiveHistogramEqualization(tile_grid_size=(3, 3))(ints), \
        np.asarray(keras.layers.ContrastLimitedAdaptiveHistogramEqualization(tile_grid_size=(3, 3))(ints))
    assert got.dtype == str(want.dtype) == "int32"
    assert np.abs(got.numpy() - want).max() <= 1 and np.mean(got.numpy() == want) > 0.99   # float rounding, truncated
    theirs = keras.Sequential([keras.Input((10, 12, 3)), keras.layers.ContrastLimitedAdaptiveHistogramEqualization(
        tile_grid_size=(2, 3), clip_limit=2.0), keras.layers.Flatten(), keras.layers.Dense(2)])
    path = str(tmp_path / "clahe.keras")
    theirs.save(path)
    ours = lamina.models.load_model(path)
    x = RNG.uniform(0, 255, (2, 10, 12, 3)).astype(np.float32)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-2)
