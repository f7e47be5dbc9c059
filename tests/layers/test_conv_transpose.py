"""Tests for layers/convolutional_transpose.py: Conv1DTranspose and Conv2DTranspose (harness,
numpy reference, Keras parity with identical weights, configs, errors) and a small convolutional
autoencoder trained with fit."""
import numpy as np
import pytest

import lamina
from lamina import layers
from conv_refs import conv_transpose_ref
from keras_ref import keras_or_none
from layer_harness import run_layer_test

RNG = np.random.default_rng(11)


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ---- harness and reference ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,in_shape,out_shape", [
    (dict(filters=4, kernel_size=3), (2, 5, 6, 3), (2, 7, 8, 4)),
    (dict(filters=2, kernel_size=3, strides=2, padding="same"), (2, 4, 3, 3), (2, 8, 6, 2)),
    (dict(filters=3, kernel_size=(2, 3), strides=(3, 2), output_padding=(2, 1)), (1, 3, 4, 2), (1, 10, 10, 3)),
    (dict(filters=2, kernel_size=3, dilation_rate=2, padding="same", activation="relu"), (2, 4, 5, 3),
     (2, 4, 5, 2)),
    (dict(filters=3, kernel_size=2, strides=2, use_bias=False, data_format="channels_first"), (2, 3, 4, 5),
     (2, 3, 8, 10)),
])
def test_conv2d_transpose_harness_and_reference(kwargs, in_shape, out_shape):
    x = _x(*in_shape)
    layer, outs = run_layer_test(layers.Conv2DTranspose, kwargs, in_shape, input_data=x,
                                 expected_output_shape=out_shape,
                                 expected_num_trainable_weights=2 if kwargs.get("use_bias", True) else 1)
    weights = layer.get_weights()
    k = weights[0]
    channels = in_shape[1] if kwargs.get("data_format") == "channels_first" else in_shape[-1]
    assert k.shape == layer.kernel_size + (kwargs["filters"], channels)
    assert [w.path for w in layer.weights] == [f"{layer.name}/kernel", f"{layer.name}/bias"][:len(weights)]
    want = conv_transpose_ref(x, k, layer.strides, layer.padding, layer.output_padding, kwargs.get("data_format"),
                              layer.dilation_rate)
    if layer.use_bias:
        want = want + (weights[1] if layer.data_format == "channels_last" else weights[1][:, None, None])
    if kwargs.get("activation") == "relu":
        want = np.maximum(want, 0)
    np.testing.assert_allclose(outs[0].numpy(), want, atol=1e-4, rtol=1e-4)
    assert layer.compute_output_shape((None,) + in_shape[1:]) == (None,) + out_shape[1:]


@pytest.mark.parametrize("kwargs,in_shape,out_shape", [
    (dict(filters=3, kernel_size=3), (2, 6, 2), (2, 8, 3)),
    (dict(filters=2, kernel_size=4, strides=2, padding="same"), (2, 5, 3), (2, 10, 2)),
    (dict(filters=2, kernel_size=3, strides=3, output_padding=1), (1, 4, 2), (1, 13, 2)),
    (dict(filters=2, kernel_size=3, padding="same", data_format="channels_first"), (2, 3, 5), (2, 2, 5)),
])
def test_conv1d_transpose_harness_and_reference(kwargs, in_shape, out_shape):
    x = _x(*in_shape)
    layer, outs = run_layer_test(layers.Conv1DTranspose, kwargs, in_shape, input_data=x,
                                 expected_output_shape=out_shape, expected_num_trainable_weights=2)
    k, b = layer.get_weights()
    want = conv_transpose_ref(x, k, layer.strides, layer.padding, layer.output_padding, kwargs.get("data_format"),
                              layer.dilation_rate)
    want = want + (b if layer.data_format == "channels_last" else b[:, None])
    np.testing.assert_allclose(outs[0].numpy(), want, atol=1e-4, rtol=1e-4)


# ---- Keras parity -----------------------------------------------------------------------------------

PARITY = [
    ("Conv2DTranspose", dict(filters=4, kernel_size=3), (2, 5, 4, 3)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=(3, 2), strides=2, padding="same"), (2, 4, 5, 3)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=4, strides=(2, 3), padding="same", output_padding=(1, 0)),
     (1, 3, 4, 2)),
    ("Conv2DTranspose", dict(filters=3, kernel_size=2, strides=3, padding="valid", output_padding=2),
     (2, 3, 3, 2)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=3, dilation_rate=(2, 1), padding="same",
                             activation="tanh"), (1, 4, 4, 3)),
    ("Conv2DTranspose", dict(filters=3, kernel_size=3, strides=2, data_format="channels_first",
                             kernel_initializer="he_normal", bias_initializer="ones"), (2, 2, 4, 3)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=1, strides=2, use_bias=False,
                             kernel_regularizer="l2"), (1, 3, 3, 4)),
    ("Conv1DTranspose", dict(filters=3, kernel_size=3), (2, 6, 2)),
    ("Conv1DTranspose", dict(filters=2, kernel_size=4, strides=2, padding="same", output_padding=1), (2, 5, 3)),
    ("Conv1DTranspose", dict(filters=2, kernel_size=3, dilation_rate=2, data_format="channels_first"), (1, 3, 6)),
]


@pytest.mark.parametrize("name,kwargs,shape", PARITY)
def test_matches_keras_with_the_same_weights(name, kwargs, shape):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference to compare with")
    x = _x(*shape)
    kl = getattr(keras.layers, name)(**kwargs)
    ours = getattr(layers, name)(**kwargs)
    kl(x)
    ours(x)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in kl.get_weights()]
    assert [w.path.split("/")[-1] for w in ours.weights] == [w.path.split("/")[-1] for w in kl.weights]
    ours.set_weights([np.asarray(w) for w in kl.get_weights()])
    want = np.asarray(kl(x))
    np.testing.assert_allclose(ours(x).numpy(), want, atol=1e-4, rtol=1e-4)
    assert ours.compute_output_shape((None,) + shape[1:]) == tuple(kl.compute_output_shape((None,) + shape[1:]))
    mine, theirs = ours.get_config(), kl.get_config()
    assert {k: v for k, v in mine.items() if k != "name"} == {k: v for k, v in theirs.items() if k != "name"}
    back = layers.deserialize(keras.layers.serialize(kl))
    assert type(back) is type(ours)
    back(x)
    back.set_weights([np.asarray(w) for w in kl.get_weights()])
    np.testing.assert_allclose(back(x).numpy(), want, atol=1e-4, rtol=1e-4)
    assert type(keras.layers.deserialize(layers.serialize(ours))) is type(kl)


def test_a_saved_model_moves_between_keras_and_lamina(tmp_path):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference to load the file with")
    model = lamina.Sequential([
        lamina.Input(shape=(4, 4, 2)), layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2DTranspose(2, 2, strides=3, output_padding=1, bias_initializer="ones"),
        layers.Reshape((24 * 24, 2)), layers.Conv1DTranspose(2, 3, strides=2, padding="same")])
    x = _x(2, 4, 4, 2)
    model.save(str(tmp_path / "ours.keras"))
    theirs = keras.saving.load_model(str(tmp_path / "ours.keras"))
    np.testing.assert_allclose(theirs.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)
    theirs.save(str(tmp_path / "theirs.keras"))
    again = lamina.models.load_model(str(tmp_path / "theirs.keras"))
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)


# ---- arguments and errors -----------------------------------------------------------------------------

def test_aliases_defaults_and_config():
    assert layers.Convolution2DTranspose is layers.Conv2DTranspose
    assert layers.Convolution1DTranspose is layers.Conv1DTranspose
    layer = layers.Conv2DTranspose(4, 3, padding="SAME")
    config = layer.get_config()
    assert config["padding"] == "same" and config["output_padding"] is None
    assert config["strides"] == (1, 1) and config["dilation_rate"] == (1, 1)
    assert config["data_format"] == "channels_last" and config["activation"] == "linear"
    clone = layers.Conv2DTranspose.from_config(config)
    assert clone.get_config() == config
    assert layers.Conv1DTranspose(2, 3, strides=2, output_padding=1).get_config()["output_padding"] == (1,)


def test_errors():
    with pytest.raises(ValueError, match=r"Conv2DTranspose.*output_padding.*strictly less than.*strides.*index 1"):
        layers.Conv2DTranspose(2, 3, strides=(2, 2), output_padding=(1, 2))
    with pytest.raises(ValueError, match=r"Conv1DTranspose.*output_padding.*strictly less than.*strides"):
        layers.Conv1DTranspose(2, 3, output_padding=1)
    with pytest.raises(ValueError, match=r"output_padding.*>= 0.*-1"):
        layers.Conv2DTranspose(2, 3, strides=2, output_padding=-1)
    with pytest.raises(ValueError, match=r"strides.*not supported together with.*dilation_rate"):
        layers.Conv2DTranspose(2, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match=r"filters.*positive.*0"):
        layers.Conv2DTranspose(0, 3)
    with pytest.raises(ValueError, match=r"kernel_size.*2 positive"):
        layers.Conv2DTranspose(2, (3, 0))
    with pytest.raises(ValueError, match=r"padding.*'valid' or 'same'.*'causal'"):
        layers.Conv1DTranspose(2, 3, padding="causal")
    with pytest.raises(ValueError, match=r"data_format.*'channels_middle'"):
        layers.Conv2DTranspose(2, 3, data_format="channels_middle")
    with pytest.raises(TypeError, match=r"unrecognized keyword.*groups"):
        layers.Conv2DTranspose(2, 3, groups=2)
    layer = layers.Conv2DTranspose(2, 3)
    with pytest.raises(ValueError, match=r"Conv2DTranspose.*rank 4 \(batch, height, width, channels\).*\(2, 5, 3\)"):
        layer(_x(2, 5, 3))
    layer(_x(1, 4, 4, 3))
    with pytest.raises(ValueError, match=r"expected axis -1 of the input shape to have value 3.*\(1, 4, 4, 5\)"):
        layer(_x(1, 4, 4, 5))
    with pytest.raises(ValueError, match=r"channel dimension.*must be known"):
        layers.Conv2DTranspose(2, 3)(lamina.Input(shape=(4, 4, None)))


# ---- a small autoencoder -----------------------------------------------------------------------------

def test_convolutional_autoencoder_trains_with_fit():
    """Conv2D down to 4x4, Conv2DTranspose back up to 8x8: the reconstruction loss falls."""
    rng = np.random.default_rng(0)
    # smooth 8x8 images: random mixtures of a few fixed patterns
    yy, xx = np.mgrid[0:8, 0:8] / 7.0
    patterns = np.stack([np.sin(3 * xx), np.cos(2 * yy), xx * yy, (xx - yy) ** 2]).astype(np.float32)
    images = np.einsum("np,phw->nhw", rng.uniform(0, 1, (64, 4)), patterns)[..., None].astype(np.float32)
    lamina.utils.set_random_seed(0)
    model = lamina.Sequential([
        lamina.Input(shape=(8, 8, 1)),
        layers.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2D(4, 3, padding="same", activation="relu"),
        layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2DTranspose(1, 3, padding="same"),
    ])
    assert model.output_shape == (None, 8, 8, 1)
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="mse")
    first = model.evaluate(images, images, verbose=0)
    history = model.fit(images, images, epochs=15, batch_size=16, verbose=0)
    last = model.evaluate(images, images, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert last < 0.3 * first, (first, last)
    assert model.predict(images[:3], verbose=0).shape == (3, 8, 8, 1)
