"""UpSampling1D/2D/3D, Cropping1D/2D/3D, ZeroPadding1D/3D (layers/reshaping.py): numpy references,
gradients, errors, and parity with Keras."""
import numpy as np
import pytest

import lamina
from lamina import layers
from keras_ref import keras_or_none
from layer_harness import run_layer_test
from opcheck import check_grad

RNG = np.random.default_rng(7)


def _x(shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ---- numpy references ------------------------------------------------------------------------------

def _spatial(ndim, rank, data_format):
    first = 2 if data_format == "channels_first" else 1
    assert ndim == rank + 2
    return list(range(first, first + rank))


def up_nearest_ref(x, size, data_format="channels_last"):
    for ax, f in zip(_spatial(x.ndim, len(size), data_format), size):
        x = np.repeat(x, f, axis=ax)
    return x


def up_bilinear_ref(x, size, data_format="channels_last"):
    """Half-pixel-centre bilinear interpolation with the source coordinate clamped to the image,
    written the textbook way (two neighbours and a fraction per output position)."""
    for ax, f in zip(_spatial(x.ndim, 2, data_format), size):
        n = x.shape[ax]
        src = np.clip((np.arange(n * f) + 0.5) / f - 0.5, 0, n - 1)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        frac = (src - i0).reshape((-1,) + (1,) * (x.ndim - ax - 1))
        x = np.take(x, i0, axis=ax) * (1 - frac) + np.take(x, i1, axis=ax) * frac
    return x


def crop_ref(x, pairs, data_format="channels_last"):
    key = [slice(None)] * x.ndim
    for ax, (b, e) in zip(_spatial(x.ndim, len(pairs), data_format), pairs):
        key[ax] = slice(b, x.shape[ax] - e)
    return x[tuple(key)]


def pad_ref(x, pairs, data_format="channels_last"):
    widths = [(0, 0)] * x.ndim
    for ax, p in zip(_spatial(x.ndim, len(pairs), data_format), pairs):
        widths[ax] = p
    return np.pad(x, widths)


# ---- the harness with numpy references ------------------------------------------------------------

CASES = [
    # (class, kwargs, input shape, reference)
    (layers.UpSampling1D, {"size": 3}, (2, 4, 3), lambda x: up_nearest_ref(x, (3,))),
    (layers.UpSampling1D, {}, (2, 4, 3), lambda x: up_nearest_ref(x, (2,))),
    (layers.UpSampling2D, {"size": (2, 3)}, (2, 3, 4, 2), lambda x: up_nearest_ref(x, (2, 3))),
    (layers.UpSampling2D, {"size": 2, "data_format": "channels_first"}, (2, 2, 3, 4),
     lambda x: up_nearest_ref(x, (2, 2), "channels_first")),
    (layers.UpSampling2D, {"size": (3, 2), "interpolation": "bilinear"}, (2, 3, 4, 2),
     lambda x: up_bilinear_ref(x, (3, 2))),
    (layers.UpSampling2D, {"size": (2, 4), "interpolation": "BILINEAR", "data_format": "channels_first"},
     (2, 2, 3, 4), lambda x: up_bilinear_ref(x, (2, 4), "channels_first")),
    (layers.UpSampling3D, {"size": (1, 2, 3)}, (2, 2, 3, 2, 2), lambda x: up_nearest_ref(x, (1, 2, 3))),
    (layers.UpSampling3D, {"data_format": "channels_first"}, (1, 2, 2, 3, 2),
     lambda x: up_nearest_ref(x, (2, 2, 2), "channels_first")),
    (layers.Cropping1D, {}, (2, 5, 3), lambda x: crop_ref(x, [(1, 1)])),
    (layers.Cropping1D, {"cropping": (0, 2)}, (2, 5, 3), lambda x: crop_ref(x, [(0, 2)])),
    (layers.Cropping2D, {}, (2, 4, 5, 3), lambda x: x),
    (layers.Cropping2D, {"cropping": ((1, 0), (2, 1))}, (2, 4, 5, 3), lambda x: crop_ref(x, [(1, 0), (2, 1)])),
    (layers.Cropping2D, {"cropping": (1, 2), "data_format": "channels_first"}, (2, 3, 4, 5),
     lambda x: crop_ref(x, [(1, 1), (2, 2)], "channels_first")),
    (layers.Cropping3D, {}, (2, 3, 4, 5, 2), lambda x: crop_ref(x, [(1, 1)] * 3)),
    (layers.Cropping3D, {"cropping": ((0, 1), 1, (2, 0)), "data_format": "channels_first"}, (1, 2, 3, 4, 5),
     lambda x: crop_ref(x, [(0, 1), (1, 1), (2, 0)], "channels_first")),
    (layers.ZeroPadding1D, {}, (2, 4, 3), lambda x: pad_ref(x, [(1, 1)])),
    (layers.ZeroPadding1D, {"padding": (0, 2), "data_format": "channels_first"}, (2, 3, 4),
     lambda x: pad_ref(x, [(0, 2)], "channels_first")),
    (layers.ZeroPadding3D, {}, (2, 2, 3, 2, 2), lambda x: pad_ref(x, [(1, 1)] * 3)),
    (layers.ZeroPadding3D, {"padding": (1, (0, 2), 0), "data_format": "channels_first"}, (1, 2, 2, 3, 2),
     lambda x: pad_ref(x, [(1, 1), (0, 2), (0, 0)], "channels_first")),
]


@pytest.mark.parametrize("cls,kwargs,shape,ref", CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, *_) in enumerate(CASES)])
def test_layer_against_numpy(cls, kwargs, shape, ref):
    x = _x(shape)
    want = ref(x)
    layer, _ = run_layer_test(cls, kwargs, shape, input_data=x, expected_output=want,
                              expected_output_shape=want.shape, expected_num_trainable_weights=0)
    assert layer.compute_output_shape(shape) == want.shape


@pytest.mark.parametrize("cls,kwargs,shape,ref", CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, *_) in enumerate(CASES)])
def test_gradients_against_finite_differences(cls, kwargs, shape, ref):
    small = tuple(min(d, 4) for d in shape)
    if cls in (layers.Cropping1D, layers.Cropping2D, layers.Cropping3D):
        small = shape   # cropping needs its full size
    layer = cls(**kwargs)
    check_grad(lambda t: layer(t), ref, [_x(small)], atol=2e-3, rtol=2e-3)


def test_interpolating_kernels_keep_constants_and_bilinear_halfway_values():
    x = np.full((1, 3, 4, 2), 2.5, np.float32)
    for interp in ("bilinear", "bicubic", "lanczos3", "lanczos5"):
        y = layers.UpSampling2D((3, 2), interpolation=interp)(x).numpy()
        np.testing.assert_allclose(y, 2.5, atol=1e-5, err_msg=interp)
    row = np.array([0.0, 4.0], np.float32).reshape(1, 1, 2, 1)
    y = layers.UpSampling2D((1, 2), interpolation="bilinear")(row).numpy().ravel()
    np.testing.assert_allclose(y, [0.0, 1.0, 3.0, 4.0])   # edges clamp, inside 1/4 and 3/4 of the way


def test_unknown_spatial_sizes_and_dtypes_in_a_functional_model():
    inp = lamina.Input(shape=(None, None, 3))
    assert layers.UpSampling2D((2, 3))(inp).shape == (None, None, None, 3)
    assert layers.Cropping2D(1)(inp).shape == (None, None, None, 3)
    assert layers.ZeroPadding3D(1, data_format="channels_first")(lamina.Input(shape=(2, None, 4, 5))).shape == \
        (None, 2, None, 6, 7)
    ints = lamina.Input(shape=(4, 2), dtype="int32")
    for layer in (layers.UpSampling1D(2), layers.Cropping1D(1), layers.ZeroPadding1D(1)):
        assert layer(ints).dtype == "int32"
        assert layer(np.arange(16, dtype=np.int32).reshape(2, 4, 2)).dtype == "int32"
    assert layers.UpSampling2D(interpolation="bilinear")(lamina.Input(shape=(2, 2, 1), dtype="int32")).dtype == \
        "float32"
    model = lamina.Sequential([lamina.Input(shape=(6, 6, 2)), layers.Cropping2D(((1, 1), (2, 0))),
                               layers.UpSampling2D(2, interpolation="bilinear"), layers.Flatten(), layers.Dense(1)])
    assert model.output_shape == (None, 1)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(_x((4, 6, 6, 2)), _x((4, 1)), epochs=1, verbose=0)


@pytest.mark.parametrize("make,err,pattern", [
    (lambda: layers.UpSampling1D(0), ValueError, r"UpSampling1D: `size` must be a positive integer, received size=0"),
    (lambda: layers.UpSampling1D(1.5), TypeError, r"UpSampling1D: `size` must be an integer"),
    (lambda: layers.UpSampling1D(True), TypeError, r"UpSampling1D: `size` must be an integer"),
    (lambda: layers.UpSampling1D(2, data_format="channels_first"), TypeError, r"data_format"),
    (lambda: layers.UpSampling2D((2, 0)), ValueError, r"UpSampling2D: every entry of `size` must be positive"),
    (lambda: layers.UpSampling2D((2, 2, 2)), ValueError, r"`size` must be an int or a tuple of 2 ints"),
    (lambda: layers.UpSampling2D("2"), ValueError, r"`size` must be an int or a tuple of 2 ints"),
    (lambda: layers.UpSampling2D(interpolation="area"), ValueError, r"`interpolation` must be one of"),
    (lambda: layers.UpSampling3D(data_format="NHWC"), ValueError, r"UpSampling3D: `data_format` must be"),
    (lambda: layers.Cropping1D(-1), ValueError, r"Cropping1D: `cropping` must not be negative"),
    (lambda: layers.Cropping1D((1, 2, 3)), ValueError, r"Cropping1D: `cropping` must be an int or a tuple of 2"),
    (lambda: layers.Cropping1D(1, data_format="channels_last"), TypeError, r"data_format"),
    (lambda: layers.Cropping2D(((1, 1), (1, 1), (1, 1))), ValueError, r"tuple of 2 tuples of 2 ints"),
    (lambda: layers.Cropping2D(((1, 1.5), (1, 1))), ValueError, r"Cropping2D: `cropping` must be"),
    (lambda: layers.Cropping3D((1, -2, 1)), ValueError, r"Cropping3D: `cropping` must not be negative"),
    (lambda: layers.ZeroPadding1D("1"), ValueError, r"ZeroPadding1D: `padding` must be"),
    (lambda: layers.ZeroPadding3D(((1, 1), (1, 1))), ValueError, r"ZeroPadding3D: `padding` must be"),
    (lambda: layers.ZeroPadding3D(-1), ValueError, r"ZeroPadding3D: `padding` must not be negative"),
])
def test_bad_arguments_are_refused(make, err, pattern):
    with pytest.raises(err, match=pattern):
        make()


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"removes 4 of the 4 entries of axis 1"):
        layers.Cropping1D((2, 2))(_x((2, 4, 3)))
    with pytest.raises(ValueError, match=r"Cropping2D .*removes 3 of the 3 entries of axis 3"):
        layers.Cropping2D(((0, 0), (1, 2)), data_format="channels_first")(_x((1, 2, 5, 3)))
    with pytest.raises(ValueError, match=r"Cropping3D .*at least one must remain"):
        layers.Cropping3D(1)(lamina.Input(shape=(3, 2, 3, 1)))
    with pytest.raises(ValueError, match=r"expected ndim=4, found ndim=3"):
        layers.UpSampling2D()(_x((2, 3, 4)))
    with pytest.raises(ValueError, match=r"expected ndim=5"):
        layers.ZeroPadding3D()(_x((2, 3, 4, 1)))


def test_keras_attributes_and_aliases():
    assert layers.Cropping1D(2).cropping == (2, 2)
    assert layers.Cropping2D(((1, 2), 3)).cropping == ((1, 2), (3, 3))
    assert layers.ZeroPadding1D((0, 3)).padding == (0, 3)
    assert layers.ZeroPadding3D((1, 2, 3)).padding == ((1, 1), (2, 2), (3, 3))
    assert layers.UpSampling2D(3).size == (3, 3) and layers.UpSampling1D(3).size == 3
    assert layers.GlobalAvgPool1D is layers.GlobalAveragePooling1D
    assert layers.GlobalMaxPool1D is layers.GlobalMaxPooling1D


# ---- parity with Keras --------------------------------------------------------------------------

PARITY = [
    ("UpSampling1D", {"size": 3}, (2, 4, 3)),
    ("UpSampling2D", {"size": (2, 3), "data_format": "channels_first"}, (2, 3, 4, 5)),
    ("UpSampling3D", {"size": (2, 1, 3)}, (1, 2, 3, 2, 2)),
    ("Cropping1D", {"cropping": (2, 1)}, (2, 6, 3)),
    ("Cropping2D", {"cropping": ((1, 0), 2)}, (2, 4, 6, 3)),
    ("Cropping3D", {"cropping": (1, (0, 2), 1), "data_format": "channels_first"}, (1, 2, 4, 5, 3)),
    ("ZeroPadding1D", {"padding": (3, 1)}, (2, 4, 3)),
    ("ZeroPadding3D", {"padding": ((1, 0), 2, (0, 1))}, (1, 2, 3, 2, 2)),
] + [("UpSampling2D", {"size": (3, 2), "interpolation": i, "data_format": f}, (2, 4, 5, 3))
     for i in ("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5") for f in ("channels_last", "channels_first")]


@pytest.mark.parametrize("name,kwargs,shape", PARITY)
def test_matches_keras(name, kwargs, shape):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference to compare with")
    x = _x(shape)
    kl = getattr(keras.layers, name)(**kwargs)
    ours = getattr(layers, name)(**kwargs)
    want = np.asarray(kl(x))
    np.testing.assert_allclose(ours(x).numpy(), want, atol=1e-5, rtol=1e-5)
    # the configs agree, and Keras's serialized layer comes back as ours
    mine = ours.get_config()
    theirs = kl.get_config()
    assert {k: v for k, v in mine.items() if k != "name"} == {k: v for k, v in theirs.items() if k != "name"}
    back = layers.deserialize(keras.layers.serialize(kl))
    assert type(back) is type(ours)
    np.testing.assert_allclose(back(x).numpy(), want, atol=1e-5, rtol=1e-5)
    assert type(keras.layers.deserialize(layers.serialize(ours))) is type(kl)


def test_a_model_of_the_new_layers_moves_between_keras_and_lamina_files(tmp_path):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference to load the file with")
    model = lamina.Sequential([
        lamina.Input(shape=(4, 4, 3)), layers.UpSampling2D(2, interpolation="bilinear"), layers.Cropping2D(1),
        layers.ZeroPadding2D(1), layers.GroupNormalization(3),
        layers.PReLU(shared_axes=[1, 2], alpha_initializer="ones"), layers.SpatialDropout2D(0.3),
        layers.GaussianNoise(0.1), layers.RMSNormalization(), layers.UnitNormalization(), layers.ELU(0.5),
        layers.Identity(), layers.Flatten(), layers.Dense(2)])
    x = _x((2, 4, 4, 3))
    model.save(str(tmp_path / "ours.keras"))
    theirs = keras.saving.load_model(str(tmp_path / "ours.keras"))
    np.testing.assert_allclose(theirs.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    theirs.save(str(tmp_path / "theirs.keras"))
    again = lamina.models.load_model(str(tmp_path / "theirs.keras"))
    assert [type(l).__name__ for l in again.layers] == [type(l).__name__ for l in model.layers]
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
