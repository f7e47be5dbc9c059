"""SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout, AlphaDropout (layers/noise.py): identity at
inference, the noise's statistics and structure in training, seeds, gradients, errors, and Keras's
configs. Keras's exact random numbers are not compared (the generators differ)."""
import math

import numpy as np
import pytest

import lamina
from lamina import layers, ops
from keras_ref import keras_or_none
from layer_harness import run_layer_test

RNG = np.random.default_rng(11)
SELU_ALPHA_P = -1.6732632423543772 * 1.0507009873554805


def _x(shape):
    return RNG.standard_normal(shape).astype(np.float32)


HARNESS = [
    (layers.SpatialDropout1D, {"rate": 0.5, "seed": 1}, (2, 3, 4)),
    (layers.SpatialDropout2D, {"rate": 0.3, "data_format": "channels_first"}, (2, 3, 4, 2)),
    (layers.SpatialDropout3D, {"rate": 0.2, "seed": 5}, (2, 2, 3, 2, 4)),
    (layers.GaussianNoise, {"stddev": 0.4, "seed": 2}, (3, 5)),
    (layers.GaussianDropout, {"rate": 0.25}, (3, 2, 4)),
    (layers.AlphaDropout, {"rate": 0.1, "noise_shape": (None, 1, 4), "seed": 3}, (3, 2, 4)),
]


@pytest.mark.parametrize("cls,kwargs,shape", HARNESS, ids=[c[0].__name__ for c in HARNESS])
def test_identity_at_inference_and_the_layer_contract(cls, kwargs, shape):
    x = _x(shape)
    layer, _ = run_layer_test(cls, kwargs, shape, input_data=x, expected_output=x, expected_output_shape=shape,
                              expected_num_trainable_weights=0, expected_num_non_trainable_weights=0)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    assert layer.supports_masking


@pytest.mark.parametrize("cls,data_format,shape", [
    (layers.SpatialDropout1D, None, (40, 6, 50)),
    (layers.SpatialDropout2D, "channels_last", (40, 3, 4, 50)),
    (layers.SpatialDropout2D, "channels_first", (40, 50, 3, 4)),
    (layers.SpatialDropout3D, "channels_last", (40, 2, 3, 2, 50)),
    (layers.SpatialDropout3D, "channels_first", (40, 50, 2, 3, 2)),
])
def test_spatial_dropout_drops_whole_channels(cls, data_format, shape):
    rate = 0.4
    kw = {} if data_format is None else {"data_format": data_format}
    layer = cls(rate, seed=4, **kw)
    y = layer(np.ones(shape, np.float32), training=True).numpy()
    assert set(np.unique(y).tolist()) <= {0.0, float(np.float32(1.0 / (1 - rate)))}
    channel = 1 if data_format == "channels_first" else len(shape) - 1
    spatial = tuple(a for a in range(1, len(shape)) if a != channel)
    # every (sample, channel) map is all dropped or all kept
    assert np.all(y.min(axis=spatial) == y.max(axis=spatial))
    dropped = (y.max(axis=spatial) == 0).mean()
    assert 0.3 < dropped < 0.5, dropped
    # gradients flow through the kept channels, scaled, and not through the dropped ones
    x = lamina.convert_to_tensor(np.ones(shape, np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(x)
        out = layer(x, training=True)
        loss = ops.sum(out)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), out.numpy())


def test_gaussian_noise_statistics_and_gradient():
    x = np.full((200, 100), 3.0, np.float32)
    layer = layers.GaussianNoise(0.5, seed=9)
    y = layer(x, training=True).numpy()
    noise = y - 3.0
    assert abs(noise.mean()) < 0.02 and abs(noise.std() - 0.5) < 0.02
    assert not np.allclose(y, layer(x, training=True).numpy())   # a new draw on every call
    xt = lamina.convert_to_tensor(_x((4, 3)))
    with lamina.GradientTape() as tape:
        tape.watch(xt)
        loss = ops.sum(layer(xt, training=True) * 2.0)
    np.testing.assert_allclose(tape.gradient(loss, xt).numpy(), 2.0)


def test_gaussian_dropout_statistics_and_gradient():
    rate = 0.3
    x = _x((200, 100)) + 5.0
    layer = layers.GaussianDropout(rate, seed=8)
    y = layer(x, training=True).numpy()
    factor = y / x
    assert abs(factor.mean() - 1.0) < 0.02
    assert abs(factor.std() - math.sqrt(rate / (1 - rate))) < 0.02
    xt = lamina.convert_to_tensor(x[:3, :4])
    with lamina.GradientTape() as tape:
        tape.watch(xt)
        out = layer(xt, training=True)
        loss = ops.sum(out)
    np.testing.assert_allclose(tape.gradient(loss, xt).numpy(), out.numpy() / x[:3, :4], rtol=1e-5)


def test_alpha_dropout_values_statistics_and_noise_shape():
    rate = 0.2
    a = ((1 - rate) * (1 + rate * SELU_ALPHA_P ** 2)) ** -0.5
    b = -a * SELU_ALPHA_P * rate
    x = _x((300, 200))
    layer = layers.AlphaDropout(rate, seed=6)
    y = layer(x, training=True).numpy()
    dropped = np.isclose(y, a * SELU_ALPHA_P + b, atol=1e-6)
    assert abs(dropped.mean() - rate) < 0.01
    np.testing.assert_allclose(y[~dropped], a * x[~dropped] + b, atol=1e-5)
    # self-normalising: standard-normal inputs keep (about) zero mean and unit variance
    assert abs(y.mean()) < 0.02 and abs(y.var() - 1.0) < 0.03
    # noise_shape (None, 1, C): one draw per (sample, channel), shared over the middle axis
    z = layers.AlphaDropout(0.5, noise_shape=(None, 1, 30), seed=1)(_x((20, 5, 30)), training=True).numpy()
    a5 = ((0.5) * (1 + 0.5 * SELU_ALPHA_P ** 2)) ** -0.5
    mark = np.isclose(z, a5 * SELU_ALPHA_P - a5 * SELU_ALPHA_P * 0.5, atol=1e-6)
    assert np.all(mark.min(axis=1) == mark.max(axis=1)) and 0.3 < mark.mean() < 0.7
    # the gradient is a on kept entries and 0 on dropped ones
    xt = lamina.convert_to_tensor(x[:4, :5])
    with lamina.GradientTape() as tape:
        tape.watch(xt)
        out = layer(xt, training=True)
        loss = ops.sum(out)
    keep = ~np.isclose(out.numpy(), a * SELU_ALPHA_P + b, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss, xt).numpy(), np.where(keep, a, 0.0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: layers.SpatialDropout2D(0.5, seed=3),
    lambda: layers.GaussianNoise(0.3, seed=3),
    lambda: layers.GaussianDropout(0.3, seed=3),
    lambda: layers.AlphaDropout(0.3, seed=3),
])
def test_seeds_are_reproducible(make):
    x = _x((4, 3, 5, 6))
    first, again = make(), make()
    a1, a2 = first(x, training=True).numpy(), first(x, training=True).numpy()
    b1, b2 = again(x, training=True).numpy(), again(x, training=True).numpy()
    np.testing.assert_array_equal(a1, b1)   # same seed: the same sequence of draws
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)       # successive calls draw new noise
    ops.set_seed(123)                        # no seed: the global generator, reseedable
    free = type(first)(**{k: v for k, v in first.get_config().items() if k not in ("seed", "name")})
    c1 = free(x, training=True).numpy()
    ops.set_seed(123)
    np.testing.assert_array_equal(type(first)(**{k: v for k, v in first.get_config().items()
                                                  if k not in ("seed", "name")})(x, training=True).numpy(), c1)


@pytest.mark.parametrize("layer", [layers.SpatialDropout1D(0.5, seed=1), layers.GaussianNoise(0.5, seed=1),
                                   layers.GaussianDropout(0.5, seed=1), layers.AlphaDropout(0.5, seed=1)],
                         ids=lambda l: type(l).__name__)
def test_active_in_fit_inactive_in_evaluate_and_predict(layer):
    model = lamina.Sequential([lamina.Input(shape=(6, 4)), layer, layers.Flatten(),
                               layers.Dense(1, kernel_initializer="ones", use_bias=False)])
    model.compile(optimizer=lamina.optimizers.SGD(learning_rate=0.0), loss="mse")
    x, y = _x((8, 6, 4)) + 1.0, np.zeros((8, 1), np.float32)
    clean = float(model.test_on_batch(x, y))
    np.testing.assert_allclose(clean, np.mean(x.reshape(8, -1).sum(1) ** 2), rtol=1e-5)
    np.testing.assert_allclose(model.predict(x, verbose=0), x.reshape(8, -1).sum(1, keepdims=True), rtol=1e-5)
    assert float(model.train_on_batch(x, y)) != pytest.approx(clean, rel=1e-4)


def test_full_rates_and_zero_rates():
    x = _x((2, 3, 4))
    np.testing.assert_array_equal(layers.SpatialDropout1D(1.0)(x, training=True).numpy(), 0.0)
    np.testing.assert_array_equal(layers.Dropout(1.0)(x, training=True).numpy(), 0.0)
    for layer in (layers.SpatialDropout1D(0.0), layers.GaussianNoise(0.0), layers.GaussianDropout(0.0),
                  layers.AlphaDropout(0.0)):
        np.testing.assert_array_equal(layer(x, training=True).numpy(), x)


def test_masks_pass_through():
    x = _x((2, 4, 3))
    x[:, 2:] = 0.0
    masked = layers.Masking()(x)
    for layer in (layers.SpatialDropout1D(0.5), layers.GaussianNoise(0.1), layers.GaussianDropout(0.1),
                  layers.AlphaDropout(0.1)):
        out = layer(masked, training=True)
        np.testing.assert_array_equal(out._keras_mask.numpy(), [[True, True, False, False]] * 2)


@pytest.mark.parametrize("make,err,pattern", [
    (lambda: layers.SpatialDropout1D(1.5), ValueError, r"rate"),
    (lambda: layers.SpatialDropout1D(0.5, data_format="channels_first"), TypeError, r"data_format"),
    (lambda: layers.SpatialDropout2D(0.5, data_format="nhwc"), ValueError,
     r"SpatialDropout2D: `data_format` must be"),
    (lambda: layers.GaussianNoise(-0.1), ValueError, r"GaussianNoise: `stddev` must be a number in \[0, 1\]"),
    (lambda: layers.GaussianNoise(1.5), ValueError, r"received stddev=1\.5"),
    (lambda: layers.GaussianNoise("0.1"), ValueError, r"GaussianNoise: `stddev`"),
    (lambda: layers.GaussianDropout(1.0), ValueError, r"GaussianDropout: `rate` must be a number in \[0, 1\).*"
                                                      r"infinite"),
    (lambda: layers.GaussianDropout(-0.2), ValueError, r"received rate=-0\.2"),
    (lambda: layers.AlphaDropout(1.0), ValueError, r"AlphaDropout: `rate` must be a number in \[0, 1\)"),
    (lambda: layers.AlphaDropout(0.5, noise_shape="3"), ValueError, r"AlphaDropout: `noise_shape`"),
    (lambda: layers.AlphaDropout(0.5, noise_shape=(None, 0)), ValueError, r"AlphaDropout: `noise_shape`"),
    (lambda: layers.GaussianNoise(0.1, seed="x")(np.ones((2, 2), np.float32), training=True), TypeError,
     r"seed"),
])
def test_bad_arguments_are_refused(make, err, pattern):
    with pytest.raises(err, match=pattern):
        make()


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"expected ndim=4, found ndim=3"):
        layers.SpatialDropout2D(0.5)(_x((2, 3, 4)))
    with pytest.raises(ValueError, match=r"noise_shape \(None, 2\) does not broadcast"):
        layers.AlphaDropout(0.5, noise_shape=(None, 2))(_x((2, 3)), training=True)


# ---- Keras: the same configs, identity at inference ------------------------------------------------

KERAS = [
    ("SpatialDropout1D", {"rate": 0.3, "seed": 2}, (2, 3, 4)),
    ("SpatialDropout2D", {"rate": 0.3, "data_format": "channels_first"}, (2, 3, 4, 2)),
    ("SpatialDropout3D", {"rate": 0.1, "seed": 7}, (1, 2, 2, 2, 3)),
    ("GaussianNoise", {"stddev": 0.2, "seed": 1}, (2, 5)),
    ("GaussianDropout", {"rate": 0.4}, (2, 5)),
    ("AlphaDropout", {"rate": 0.2, "noise_shape": (None, 1, 4)}, (2, 3, 4)),
]


@pytest.mark.parametrize("name,kwargs,shape", KERAS)
def test_matches_keras_configs_and_inference(name, kwargs, shape):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference to compare with")
    x = _x(shape)
    kl, ours = getattr(keras.layers, name)(**kwargs), getattr(layers, name)(**kwargs)
    np.testing.assert_allclose(ours(x).numpy(), np.asarray(kl(x, training=False)), atol=1e-6)
    mine, theirs = ours.get_config(), kl.get_config()
    assert {k: v for k, v in mine.items() if k != "name"} == {k: v for k, v in theirs.items() if k != "name"}
    back = layers.deserialize(keras.layers.serialize(kl))
    assert type(back) is type(ours) and back.get_config() == {**mine, "name": kl.name}
    assert type(keras.layers.deserialize(layers.serialize(ours))) is type(kl)
