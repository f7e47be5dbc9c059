"""Tests for layers/preprocessing_image.py: Resizing, CenterCrop, RandomCrop, RandomFlip,
RandomRotation, RandomZoom, RandomTranslation, RandomContrast."""
import numpy as np
import pytest

import lamina
from lamina import layers
from keras_ref import keras_or_none
from layer_harness import run_layer_test

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 255, (2, 7, 9, 3)).astype(np.float32)


def _keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    return keras


def _same_config(ours, theirs):
    a, b = ours.get_config(), theirs.get_config()
    a.pop("name"), b.pop("name")
    assert a == b, (a, b)


def _bilinear_reference(img, h, w):
    """Half-pixel-centre bilinear resize of one HWC image, positions clamped to the image."""
    def axis(n_in, n_out):
        s = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(s).astype(int)
        return i0, np.minimum(i0 + 1, n_in - 1), s - i0
    y0, y1, fy = axis(img.shape[0], h)
    x0, x1, fx = axis(img.shape[1], w)
    rows = img[y0] * (1 - fy)[:, None, None] + img[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


# ---- Resizing / CenterCrop -------------------------------------------------------------------------

def test_resizing_values_shapes_and_config():
    layer, outs = run_layer_test(layers.Resizing, {"height": 4, "width": 5}, (2, 7, 9, 3), input_data=IMAGES,
                                 expected_output=np.stack([_bilinear_reference(i, 4, 5) for i in IMAGES]), atol=1e-3)
    assert outs[0].dtype == "float32" and layer.compute_output_shape((None, 7, 9, 3)) == (None, 4, 5, 3)
    up = layers.Resizing(12, 20)(IMAGES).numpy()
    np.testing.assert_allclose(up, np.stack([_bilinear_reference(i, 12, 20) for i in IMAGES]), rtol=1e-4, atol=1e-3)
    # nearest: pixel floor((i + 0.5) * in / out)
    near = layers.Resizing(5, 4, interpolation="nearest")(IMAGES).numpy()
    rows, cols = np.floor((np.arange(5) + 0.5) * 7 / 5).astype(int), np.floor((np.arange(4) + 0.5) * 9 / 4).astype(int)
    np.testing.assert_array_equal(near, IMAGES[:, rows][:, :, cols])
    # one image (rank 3), channels_first, the identity size
    np.testing.assert_allclose(layers.Resizing(4, 5)(IMAGES[0]).numpy(), outs[0].numpy()[0], rtol=1e-6)
    cf = layers.Resizing(4, 5, data_format="channels_first")(IMAGES.transpose(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(cf, outs[0].numpy().transpose(0, 3, 1, 2), rtol=1e-6)
    np.testing.assert_array_equal(layers.Resizing(7, 9)(IMAGES).numpy(), IMAGES)
    # integer images stay integer (rounded), as Keras
    ints = IMAGES.astype(np.int32)
    out = layers.Resizing(4, 5)(ints)
    assert out.dtype == "int32"
    np.testing.assert_array_equal(out.numpy(), np.round(layers.Resizing(4, 5)(ints.astype(np.float32)).numpy()))
    inp = lamina.Input((7, 9, 3), dtype="int32")
    assert layers.Resizing(4, 5)(inp).dtype == "int32"
    # crop / pad to the aspect ratio
    crop = layers.Resizing(3, 3, crop_to_aspect_ratio=True)(IMAGES).numpy()
    np.testing.assert_allclose(crop, layers.Resizing(3, 3)(IMAGES[:, :, 1:8]).numpy(), rtol=1e-6)
    pad = layers.Resizing(9, 9, pad_to_aspect_ratio=True, fill_value=-1.0)(IMAGES).numpy()
    padded = np.pad(IMAGES, ((0, 0), (1, 1), (0, 0), (0, 0)), constant_values=-1.0)
    np.testing.assert_allclose(pad, layers.Resizing(9, 9)(padded).numpy(), rtol=1e-6)
    config = layers.Resizing(4, 5, interpolation="bicubic", antialias=True).get_config()
    assert layers.Resizing.from_config(config).get_config() == config


def test_resizing_errors():
    with pytest.raises(ValueError, match="`height` must be a positive integer"):
        layers.Resizing(0, 3)
    with pytest.raises(ValueError, match="`width` must be a positive integer"):
        layers.Resizing(3, 2.5)
    with pytest.raises(ValueError, match="`interpolation` must be one of"):
        layers.Resizing(3, 3, interpolation="area")
    with pytest.raises(ValueError, match="only one of `crop_to_aspect_ratio` and `pad_to_aspect_ratio`"):
        layers.Resizing(3, 3, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)
    with pytest.raises(ValueError, match="`fill_mode` must be one of"):
        layers.Resizing(3, 3, fill_mode="reflect")
    with pytest.raises(ValueError, match="`data_format` must be"):
        layers.Resizing(3, 3, data_format="NHWC")
    with pytest.raises(ValueError, match="expected min_ndim=3"):
        layers.Resizing(3, 3)(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="expected max_ndim=4"):
        layers.Resizing(3, 3)(lamina.Input((2, 4, 4, 3)))


def test_resizing_keras_parity():
    keras = _keras()
    cases = [{"height": 4, "width": 12},
             {"height": 13, "width": 4, "crop_to_aspect_ratio": True, "interpolation": "bicubic"},
             {"height": 6, "width": 3, "pad_to_aspect_ratio": True, "fill_value": 7.0, "interpolation": "nearest"},
             {"height": 3, "width": 4, "interpolation": "lanczos3", "antialias": True}]
    for kw in cases:
        ours, theirs = layers.Resizing(**kw), keras.layers.Resizing(**kw)
        np.testing.assert_allclose(ours(IMAGES).numpy(), np.asarray(theirs(IMAGES)), atol=5e-4, err_msg=str(kw))
        _same_config(ours, theirs)
    ints = IMAGES.astype(np.int32)
    ours, theirs = layers.Resizing(4, 12)(ints), np.asarray(keras.layers.Resizing(4, 12)(ints))
    assert ours.dtype == str(theirs.dtype) == "int32"
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1)   # rounding of values within float noise of .5
    assert np.mean(ours.numpy() == theirs) > 0.95
    cf = IMAGES.transpose(0, 3, 1, 2)
    kw = {"height": 4, "width": 12, "data_format": "channels_first"}
    np.testing.assert_allclose(layers.Resizing(**kw)(cf).numpy(), np.asarray(keras.layers.Resizing(**kw)(cf)),
                               atol=5e-4)


def test_center_crop():
    layer, _ = run_layer_test(layers.CenterCrop, {"height": 4, "width": 5}, (2, 7, 9, 3), input_data=IMAGES,
                              expected_output=IMAGES[:, 1:5, 2:7])
    np.testing.assert_array_equal(layers.CenterCrop(3, 3)(IMAGES[0]).numpy(), IMAGES[0, 2:5, 3:6])
    assert layers.CenterCrop(3, 3)(IMAGES.astype(np.int32)).dtype == "float32"
    # smaller than the target on a side: crop to its aspect ratio, then resize
    big = layers.CenterCrop(9, 5)(IMAGES).numpy()
    np.testing.assert_allclose(big, layers.Resizing(9, 5, crop_to_aspect_ratio=True)(IMAGES).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="`height` must be a positive integer"):
        layers.CenterCrop(-1, 2)


def test_center_crop_keras_parity():
    keras = _keras()
    for kw in [{"height": 4, "width": 5}, {"height": 9, "width": 5}, {"height": 3, "width": 12}]:
        ours, theirs = layers.CenterCrop(**kw), keras.layers.CenterCrop(**kw)
        np.testing.assert_allclose(ours(IMAGES).numpy(), np.asarray(theirs(IMAGES)), atol=5e-4, err_msg=str(kw))
        _same_config(ours, theirs)


# ---- random layers: training, inference, seeds ------------------------------------------------------

def _windows(img, h, w):
    return {(i, j): img[i:i + h, j:j + w] for i in range(img.shape[0] - h + 1) for j in range(img.shape[1] - w + 1)}


def test_random_crop_training_inference_and_seeds():
    layer = layers.RandomCrop(4, 5, seed=3)
    out = layer(IMAGES, training=True).numpy()
    assert out.shape == (2, 4, 5, 3)
    found = [k for k, v in _windows(IMAGES[0], 4, 5).items() if np.array_equal(v, out[0])]
    assert len(found) == 1
    i, j = found[0]
    np.testing.assert_array_equal(out[1], IMAGES[1, i:i + 4, j:j + 5])   # one window for the whole batch
    # the corner is uniform over the valid range
    corners = set()
    for _ in range(60):
        o = layer(IMAGES[:1], training=True).numpy()[0]
        corners.update(k for k, v in _windows(IMAGES[0], 4, 5).items() if np.array_equal(v, o))
    assert corners == set(_windows(IMAGES[0], 4, 5))
    # a layer(x) call without `training` trains, as Keras's call signature says
    np.testing.assert_array_equal(layers.RandomCrop(4, 5, seed=3)(IMAGES).numpy(), out)
    # the same seed repeats the same sequence
    a, b = layers.RandomCrop(4, 5, seed=11), layers.RandomCrop(4, 5, seed=11)
    for _ in range(3):
        np.testing.assert_array_equal(a(IMAGES, training=True).numpy(), b(IMAGES, training=True).numpy())
    # inference: the centred window of the target aspect ratio, resized
    inf = layers.RandomCrop(4, 5)(IMAGES, training=False).numpy()
    np.testing.assert_allclose(inf, layers.Resizing(4, 5, crop_to_aspect_ratio=True)(IMAGES).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(layers.RandomCrop(7, 9)(IMAGES, training=False).numpy(), IMAGES)
    # in a model: predict is inference, the symbolic shape holds in both modes
    model = lamina.Sequential([lamina.Input((7, 9, 3)), layers.RandomCrop(4, 5, seed=1)])
    assert model.output_shape == (None, 4, 5, 3)
    np.testing.assert_allclose(model.predict(IMAGES, verbose=0), inf, rtol=1e-6)
    # Keras stores a concrete seed for RandomCrop
    assert isinstance(layers.RandomCrop(2, 2).get_config()["seed"], int)
    cfg = layers.RandomCrop(4, 5, seed=7).get_config()
    assert layers.RandomCrop.from_config(cfg).get_config() == cfg


def test_random_crop_keras_parity():
    keras = _keras()
    # deterministic cases: inputs no larger than the target during training, and inference at the
    # target size (Keras 3.15 returns larger inputs unchanged at inference; lamina crops them
    # to the documented centred window, see RandomCrop's docstring)
    for shape in [(1, 3, 3, 1), (1, 6, 3, 1), (2, 4, 4, 2)]:
        x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        np.testing.assert_allclose(layers.RandomCrop(4, 4)(x, training=True).numpy(),
                                   np.asarray(keras.layers.RandomCrop(4, 4)(x, training=True)), atol=1e-5)
    x = IMAGES[:, :4, :5]
    np.testing.assert_array_equal(layers.RandomCrop(4, 5)(x, training=False).numpy(),
                                  np.asarray(keras.layers.RandomCrop(4, 5)(x, training=False)))
    # the documented inference window is Keras's own smart_resize
    from keras.src.utils.image_utils import smart_resize
    np.testing.assert_allclose(layers.RandomCrop(4, 5)(IMAGES, training=False).numpy(),
                               np.asarray(smart_resize(IMAGES, (4, 5))), atol=5e-4)
    _same_config(layers.RandomCrop(4, 5, seed=2), keras.layers.RandomCrop(4, 5, seed=2))


def test_random_flip():
    x = RNG.uniform(0, 1, (64, 3, 4, 2)).astype(np.float32)
    for mode, flip in [("horizontal", lambda i: i[:, ::-1]), ("vertical", lambda i: i[::-1]),
                       ("horizontal_and_vertical", lambda i: i[::-1, ::-1])]:
        out = layers.RandomFlip(mode, seed=5)(x, training=True).numpy()
        flipped = np.array([np.array_equal(o, flip(i)) for o, i in zip(out, x)])
        kept = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
        assert np.all(flipped | kept), mode         # each image is either left or flipped as a whole
        assert 16 < flipped.sum() < 48, mode         # about half of them
    # inference: unchanged (as float32)
    ints = (x * 10).astype(np.int32)
    out = layers.RandomFlip()(ints, training=False)
    assert out.dtype == "float32"
    np.testing.assert_array_equal(out.numpy(), ints)
    # seeds: one seed, one sequence; successive calls differ
    a, b = layers.RandomFlip(seed=9), layers.RandomFlip(seed=9)
    ya, yb = [a(x).numpy() for _ in range(3)], [b(x).numpy() for _ in range(3)]
    for u, v in zip(ya, yb):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(ya[0], ya[1])
    with pytest.raises(ValueError, match="`mode` must be one of"):
        layers.RandomFlip("diagonal")
    with pytest.raises(ValueError, match="`seed` must be an integer"):
        layers.RandomFlip(seed="x")


def _contrast_factors(x, y):
    """Per-image c with y = (x - mean) * c + mean (no clipping in play)."""
    mean = x.mean(axis=(1, 2), keepdims=True)
    dx, dy = (x - mean).reshape(len(x), -1), (y - mean).reshape(len(x), -1)
    c = (dx * dy).sum(1) / (dx * dx).sum(1)
    np.testing.assert_allclose(dy, dx * c[:, None], rtol=1e-3, atol=1e-3)
    return c


def test_random_contrast():
    x = RNG.uniform(50, 200, (200, 4, 4, 3)).astype(np.float32)
    layer = layers.RandomContrast((0.3, 0.2), seed=1)
    assert layer.factor == (0.2, 0.3)               # sorted, as Keras: c in [1 - 0.2, 1 + 0.3]
    y = layer(x, training=True).numpy()
    c = _contrast_factors(x, y)
    assert c.min() >= 0.8 - 1e-4 and c.max() <= 1.3 + 1e-4
    assert c.min() < 0.85 and c.max() > 1.25       # the whole range is used
    # Keras's single-number factor: (lower, upper) = (0, f)
    assert layers.RandomContrast(0.5).factor == (0, 0.5)
    c = _contrast_factors(x, layers.RandomContrast(0.5, seed=2)(x, training=True).numpy())
    assert c.min() >= 1 - 1e-4 and c.max() <= 1.5 + 1e-4
    # clipping to value_range
    big = layers.RandomContrast((0.0, 1.0), value_range=(0, 1), seed=3)(x / 200, training=True).numpy()
    assert big.min() >= 0 and big.max() <= 1
    # inference returns the input unchanged, dtype included (as Keras)
    ints = x.astype(np.int32)
    out = layers.RandomContrast(0.5)(ints, training=False)
    assert out.dtype == "int32"
    np.testing.assert_array_equal(out.numpy(), ints)
    with pytest.raises(ValueError, match=r"`factor` must be a number .* in the range \[0, 1\]"):
        layers.RandomContrast(1.5)
    with pytest.raises(ValueError, match="`value_range` must be"):
        layers.RandomContrast(0.5, value_range=(1, 0))


def test_random_rotation_zoom_translation_values():
    x = RNG.uniform(0, 1, (3, 5, 5, 2)).astype(np.float32)
    # half a turn = both flips
    half = layers.RandomRotation((0.5, 0.5))(x, training=True).numpy()
    np.testing.assert_allclose(half, x[:, ::-1, ::-1], atol=1e-5)
    one = layers.RandomRotation((0.5, 0.5))(x[0], training=True)        # one image (rank 3)
    assert one.shape == x[0].shape
    np.testing.assert_allclose(one.numpy(), x[0, ::-1, ::-1], atol=1e-5)
    quarter = layers.RandomRotation((0.25, 0.25), interpolation="nearest")(x, training=True).numpy()
    np.testing.assert_array_equal(quarter, np.rot90(x, 1, axes=(1, 2)))   # positive angles turn counter-clockwise
    # an integer shift: content moves down / right, the border filled per fill_mode
    shift = {"height_factor": (0.4, 0.4), "width_factor": (-0.2, -0.2)}   # 2 pixels down, 1 left
    const = layers.RandomTranslation(**shift, fill_mode="constant", fill_value=-1.0)(x, training=True).numpy()
    expected = np.full_like(x, -1.0)
    expected[:, 2:, :4] = x[:, :3, 1:]
    np.testing.assert_allclose(const, expected, atol=1e-5)
    wrap = layers.RandomTranslation(**shift, fill_mode="wrap")(x, training=True).numpy()
    np.testing.assert_allclose(wrap, np.roll(x, (2, -1), axis=(1, 2)), atol=1e-5)
    near = layers.RandomTranslation(**shift, fill_mode="nearest")(x, training=True).numpy()
    idx_r, idx_c = np.clip(np.arange(5) - 2, 0, 4), np.clip(np.arange(5) + 1, 0, 4)
    np.testing.assert_allclose(near, x[:, idx_r][:, :, idx_c], atol=1e-5)
    refl = layers.RandomTranslation(**shift, fill_mode="reflect")(x, training=True).numpy()
    sym = np.pad(x, ((0, 0), (2, 2), (1, 1), (0, 0)), mode="symmetric")   # half-sample symmetric
    np.testing.assert_allclose(refl, sym[:, 0:5, 2:7], atol=1e-5)
    # zoom by 2 about the centre of a 5x5 image, nearest
    zoom = layers.RandomZoom((1.0, 1.0), interpolation="nearest", fill_mode="constant")(x, training=True).numpy()
    src = np.array([-4, -2, 0, 2, 4]) + 2      # output pixel i samples 2 * (i - 2) + 2
    inside = (src >= 0) & (src < 5)
    exp = np.zeros_like(x)
    exp[:, np.ix_(inside, inside)[0], np.ix_(inside, inside)[1]] = x[:, src[inside]][:, :, src[inside]]
    np.testing.assert_allclose(zoom, exp, atol=1e-6)


def test_random_affine_layers_statistics_and_seeds():
    x = RNG.uniform(0, 1, (16, 6, 6, 1)).astype(np.float32)
    for cls, kw in [(layers.RandomRotation, {"factor": 0.2}), (layers.RandomZoom, {"height_factor": 0.3}),
                    (layers.RandomTranslation, {"height_factor": 0.3, "width_factor": 0.3})]:
        a, b = cls(**kw, seed=4), cls(**kw, seed=4)
        ya, yb = a(x, training=True).numpy(), b(x, training=True).numpy()
        np.testing.assert_array_equal(ya, yb)                      # one seed, one sequence
        assert not np.array_equal(ya, a(x, training=True).numpy())  # the next call differs
        changed = [not np.allclose(o, i) for o, i in zip(ya, x)]
        assert sum(changed) >= 14, cls.__name__                     # each image gets its own draw
        distinct = {np.round(o, 4).tobytes() for o in ya}
        assert len(distinct) == len(x), cls.__name__
        # inference: the identity (as float32), also in predict
        np.testing.assert_array_equal(a(x, training=False).numpy(), x)
        model = lamina.Sequential([lamina.Input((6, 6, 1)), cls(**kw)])
        np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    # the rotation angle stays within the factor: a 4x4 image rotated by <= 0.02 turn barely moves
    small = layers.RandomRotation(0.02, seed=1, fill_mode="nearest")(x, training=True).numpy()
    quarter = layers.RandomRotation((0.25, 0.25))(x, training=True).numpy()
    assert np.abs(small - x).mean() < 0.2 * np.abs(quarter - x).mean()


def test_random_affine_layer_errors():
    with pytest.raises(ValueError, match=r"`factor` must be a number .* \[-1, 1\]"):
        layers.RandomRotation(1.5)
    with pytest.raises(ValueError, match="`factor` must be a number"):
        layers.RandomRotation((0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="`fill_mode` must be one of"):
        layers.RandomRotation(0.1, fill_mode="mirror")
    with pytest.raises(ValueError, match="`interpolation` must be one of"):
        layers.RandomZoom(0.1, interpolation="bicubic")
    with pytest.raises(ValueError, match=r"`height_factor` must be a number or a pair of numbers in \(-1.0, 1.0\]"):
        layers.RandomZoom(-1.0)
    with pytest.raises(ValueError, match=r"`width_factor` must be a number or a pair of numbers in \[-1.0, 1.0\]"):
        layers.RandomTranslation(0.1, 1.5)
    with pytest.raises(TypeError, match="width_factor"):
        layers.RandomTranslation(0.1)
    with pytest.raises(ValueError, match="`fill_value` must be a finite number"):
        layers.RandomTranslation(0.1, 0.1, fill_value="black")
    with pytest.raises(ValueError, match="expected min_ndim=3"):
        layers.RandomRotation(0.1)(np.zeros((3, 3), np.float32))


def test_random_affine_keras_parity():
    """With a one-point factor range the transform is fixed, so training outputs must match."""
    keras = _keras()
    cases = [("RandomRotation", {"factor": (0.1, 0.1), "fill_mode": "reflect"}),
             ("RandomRotation", {"factor": (-0.37, -0.37), "fill_mode": "nearest", "interpolation": "nearest"}),
             ("RandomZoom", {"height_factor": (0.5, 0.5), "width_factor": (-0.3, -0.3), "fill_mode": "constant",
                             "fill_value": 3.0}),
             ("RandomZoom", {"height_factor": (-0.4, -0.4), "fill_mode": "wrap", "interpolation": "nearest"}),
             ("RandomTranslation", {"height_factor": (0.3, 0.3), "width_factor": (-0.45, -0.45), "fill_mode": "wrap"}),
             ("RandomTranslation", {"height_factor": (-0.2, -0.2), "width_factor": (0.3, 0.3), "fill_mode": "constant",
                                    "interpolation": "nearest", "data_format": "channels_first"})]
    for cls, kw in cases:
        x = IMAGES.transpose(0, 3, 1, 2) if kw.get("data_format") == "channels_first" else IMAGES
        ours, theirs = getattr(layers, cls)(**kw), getattr(keras.layers, cls)(**kw)
        np.testing.assert_allclose(ours(x, training=True).numpy(), np.asarray(theirs(x, training=True)),
                                   atol=2e-3, err_msg=f"{cls} {kw}")


def test_random_layers_keras_inference_and_config_parity():
    keras = _keras()
    ints = IMAGES.astype(np.int32)
    for cls, kw in [("RandomFlip", {"mode": "vertical", "seed": 1}), ("RandomRotation", {"factor": 0.3, "seed": 2}),
                    ("RandomZoom", {"height_factor": 0.2, "width_factor": (0.1, 0.3), "fill_mode": "constant"}),
                    ("RandomTranslation", {"height_factor": 0.1, "width_factor": 0.2, "interpolation": "nearest"}),
                    ("RandomContrast", {"factor": (0.2, 0.4), "value_range": (0, 1)})]:
        ours, theirs = getattr(layers, cls)(**kw), getattr(keras.layers, cls)(**kw)
        for x in (IMAGES, ints):
            a, b = ours(x, training=False), np.asarray(theirs(x, training=False))
            np.testing.assert_array_equal(a.numpy(), b, err_msg=cls)
            assert a.dtype == str(b.dtype), (cls, a.dtype, b.dtype)
        _same_config(ours, theirs)
        clone = getattr(layers, cls).from_config(ours.get_config())
        assert clone.get_config() == {**ours.get_config(), "name": clone.name}


def test_augmentation_model_fit_and_save(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (32, 8, 8, 3)).astype(np.float32)
    y = (x[:, :, :, 0].mean(axis=(1, 2)) > 127).astype(np.int32)
    model = lamina.Sequential([
        lamina.Input((8, 8, 3)), layers.Rescaling(1 / 255), layers.RandomFlip(seed=1),
        layers.RandomRotation(0.05, seed=2), layers.RandomZoom(0.1, seed=3), layers.RandomTranslation(0.1, 0.1, seed=4),
        layers.RandomContrast(0.2, seed=5), layers.RandomCrop(6, 6, seed=6), layers.Flatten(), layers.Dense(2)])
    augmenters = model.layers[1:7]
    model.compile(optimizer=lamina.optimizers.Adam(learning_rate=0.01),
                  loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=8, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    # fit drew augmentations (each layer's generator advanced once per batch); predict draws none
    draws = [layer.generator.state[1] for layer in augmenters]
    assert all(d >= 32 for d in draws), draws
    p = model.predict(x, verbose=0)
    assert [layer.generator.state[1] for layer in augmenters] == draws
    # inference is deterministic; a training-mode call is not
    np.testing.assert_array_equal(p, model.predict(x, verbose=0))
    assert not np.allclose(model(x, training=True).numpy(), p)
    path = str(tmp_path / "aug.keras")
    model.save(path)
    loaded = lamina.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), p, rtol=1e-5, atol=1e-5)
    assert [type(l).__name__ for l in loaded.layers][1:4] == ["RandomFlip", "RandomRotation", "RandomZoom"]
    assert loaded.layers[2].get_config() == model.layers[2].get_config()


@pytest.mark.parametrize("cls,kwargs", [
    (layers.RandomFlip, {"mode": "horizontal", "seed": 3}),
    (layers.RandomRotation, {"factor": (-0.1, 0.2), "fill_mode": "constant", "fill_value": 1.0, "seed": 1}),
    (layers.RandomZoom, {"height_factor": 0.2, "width_factor": (-0.1, 0.3), "interpolation": "nearest"}),
    (layers.RandomTranslation, {"height_factor": 0.1, "width_factor": 0.2, "fill_mode": "wrap"}),
    (layers.RandomContrast, {"factor": 0.4, "value_range": (0, 1), "seed": 5}),
    (layers.RandomCrop, {"height": 3, "width": 4, "data_format": "channels_first", "seed": 8}),
])
def test_random_layers_config_round_trip_and_symbolic_shape(cls, kwargs):
    layer = cls(**kwargs)
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == {**config, "name": clone.name}
    clone = lamina.layers.deserialize(lamina.layers.serialize(layer))
    assert type(clone) is cls and clone.get_config() == config
    shape = (3, 6, 5) if kwargs.get("data_format") == "channels_first" else (6, 5, 3)
    out = cls(**kwargs)(lamina.Input(shape))
    expected = (None, 3, 3, 4) if cls is layers.RandomCrop else (None,) + shape
    assert out.shape == expected and out.dtype == "float32"
    # same seed, same first draw: a clone from the config repeats the layer's augmentation
    if kwargs.get("seed") is not None:
        x = RNG.uniform(0, 1, (4,) + shape).astype(np.float32)
        np.testing.assert_array_equal(cls(**kwargs)(x, training=True).numpy(),
                                      cls.from_config(config)(x, training=True).numpy())


def test_image_layers_work_on_the_device_of_their_input():
    """Weightless layers create their indices, weights and random draws where the images are
    (a virtual cpu:1 here: a tensor made on cpu:0 would be refused by the ops)."""
    with lamina.device("cpu:1"):
        x = lamina.ops.convert_to_tensor(IMAGES)
    for layer in [layers.Resizing(3, 4), layers.Resizing(3, 4, interpolation="bicubic"), layers.CenterCrop(9, 9),
                  layers.RandomCrop(4, 4), layers.RandomFlip(), layers.RandomRotation(0.2, fill_mode="constant"),
                  layers.RandomZoom(0.2), layers.RandomTranslation(0.1, 0.1), layers.RandomContrast(0.3)]:
        for training in (True, False):
            out = layer(x, training=training) if layer._call_has_training else layer(x)
            assert out.device.name == "cpu:1", type(layer).__name__


def test_keras_saved_preprocessing_model_loads_and_round_trips(tmp_path):
    keras = _keras()
    x = RNG.uniform(0, 255, (4, 6, 6, 3)).astype(np.float32)
    norm = keras.layers.Normalization()
    norm.adapt(x)
    theirs = keras.Sequential([
        keras.Input((6, 6, 3)), keras.layers.Resizing(5, 5), keras.layers.RandomFlip(seed=1),
        keras.layers.RandomRotation(0.1), keras.layers.RandomZoom(0.1), keras.layers.RandomTranslation(0.1, 0.1),
        keras.layers.RandomContrast(0.1), keras.layers.CenterCrop(3, 3), norm, keras.layers.Flatten(),
        keras.layers.Dense(2)])
    path = str(tmp_path / "keras.keras")
    theirs.save(path)
    ours = lamina.models.load_model(path)
    expected = theirs.predict(x, verbose=0)
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)
    back = str(tmp_path / "lamina.keras")
    ours.save(back)
    np.testing.assert_allclose(keras.models.load_model(back).predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)
