"""Tests for layers/convolutional3d.py: Conv3D (harness, numpy reference, Keras parity with
identical weights, configs, errors, a small model trained and loaded by Keras)."""
import numpy as np
import pytest

import lamina
from lamina import layers
from conv_refs import conv3d_ref
from keras_ref import keras_or_none
from layer_harness import run_layer_test

RNG = np.random.default_rng(13)


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ---- Conv3D -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,in_shape,out_shape", [
    (dict(filters=4, kernel_size=3), (2, 5, 4, 6, 3), (2, 3, 2, 4, 4)),
    (dict(filters=2, kernel_size=(3, 2, 2), strides=(2, 1, 2), padding="same", activation="relu"),
     (2, 5, 4, 3, 2), (2, 3, 4, 2, 2)),
    (dict(filters=3, kernel_size=2, dilation_rate=(2, 1, 1), use_bias=False), (1, 4, 3, 3, 2), (1, 2, 2, 2, 3)),
    (dict(filters=2, kernel_size=2, strides=2, data_format="channels_first"), (2, 3, 4, 4, 5), (2, 2, 2, 2, 2)),
])
def test_conv3d_harness_and_reference(kwargs, in_shape, out_shape):
    x = _x(*in_shape)
    layer, outs = run_layer_test(layers.Conv3D, kwargs, in_shape, input_data=x, expected_output_shape=out_shape,
                                 expected_num_trainable_weights=2 if kwargs.get("use_bias", True) else 1)
    weights = layer.get_weights()
    channels = in_shape[1] if kwargs.get("data_format") == "channels_first" else in_shape[-1]
    assert weights[0].shape == layer.kernel_size + (channels, kwargs["filters"])
    want = conv3d_ref(x, weights[0], layer.strides, layer.padding, kwargs.get("data_format"), layer.dilation_rate)
    if layer.use_bias:
        want = want + (weights[1] if layer.data_format == "channels_last" else weights[1][:, None, None, None])
    if kwargs.get("activation") == "relu":
        want = np.maximum(want, 0)
    np.testing.assert_allclose(outs[0].numpy(), want, atol=1e-4, rtol=1e-4)
    assert layer.compute_output_shape((None,) + in_shape[1:]) == (None,) + out_shape[1:]


def test_conv3d_arguments_and_errors():
    assert layers.Convolution3D is layers.Conv3D
    config = layers.Conv3D(2, 3, padding="Same").get_config()
    assert config["padding"] == "same" and config["groups"] == 1 and config["strides"] == (1, 1, 1)
    assert layers.Conv3D.from_config(config).get_config() == config
    with pytest.raises(ValueError, match=r"Conv3D.*filters must be evenly divisible by the number of groups.*"
                                         r"filters=3, groups=2"):
        layers.Conv3D(3, 3, groups=2)
    with pytest.raises(ValueError, match=r"Conv3D.*groups.*positive"):
        layers.Conv3D(4, 3, groups=0)
    with pytest.raises(ValueError, match=r"Conv3D '.*': the number of input channels must be evenly divisible.*"
                                         r"groups=2 and 3 input channels"):
        layers.Conv3D(4, 1, groups=2)(_x(1, 2, 2, 2, 3))
    with pytest.raises(ValueError, match=r"Conv3D.*strides.*not supported together with.*dilation_rate"):
        layers.Conv3D(4, 3, strides=2, dilation_rate=(1, 2, 1))
    with pytest.raises(ValueError, match=r"Conv3D.*kernel_size.*3 positive"):
        layers.Conv3D(4, (3, 3))
    with pytest.raises(ValueError, match=r"Conv3D.*padding.*'causal'"):
        layers.Conv3D(4, 3, padding="causal")
    with pytest.raises(ValueError, match=r"Conv3D.*rank 5 \(batch, depth, height, width, channels\).*\(2, 4, 4, 3\)"):
        layers.Conv3D(4, 3)(_x(2, 4, 4, 3))
    layer = layers.Conv3D(2, 2)
    layer(_x(1, 3, 3, 3, 2))
    with pytest.raises(ValueError, match=r"expected axis -1 of the input shape to have value 2"):
        layer(_x(1, 3, 3, 3, 4))
    with pytest.raises(ValueError, match=r"kernel of size 5.*padding='valid'"):
        layers.Conv3D(2, (5, 1, 1))(_x(1, 3, 3, 3, 2))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_grouped_conv3d_is_one_convolution_per_group(data_format):
    x = _x(2, 6, 3, 4, 4) if data_format == "channels_first" else _x(2, 3, 4, 4, 6)
    layer = layers.Conv3D(4, (2, 2, 1), groups=2, padding="same", data_format=data_format)
    y = layer(x).numpy()
    kernel, bias = layer.get_weights()
    assert kernel.shape == (2, 2, 1, 3, 4)
    axis = 1 if data_format == "channels_first" else -1
    parts = []
    for g, xg in enumerate(np.split(x, 2, axis=axis)):   # group g: channels 3g..3g+2 -> filters 2g, 2g+1
        parts.append(conv3d_ref(xg, kernel[..., 2 * g:2 * g + 2], (1, 1, 1), "same", data_format, (1, 1, 1)))
    want = np.concatenate(parts, axis=axis)
    want = want + (bias[:, None, None, None] if data_format == "channels_first" else bias)
    np.testing.assert_allclose(y, want, atol=1e-4, rtol=1e-4)
    with lamina.GradientTape() as tape:
        loss = lamina.ops.sum(layer(x) ** 2)
    dk = tape.gradient(loss, layer.kernel).numpy()
    assert dk.shape == kernel.shape and np.all(np.isfinite(dk)) and np.abs(dk).sum() > 0


# ---- Keras parity -----------------------------------------------------------------------------------

PARITY = [
    ("Conv3D", dict(filters=3, kernel_size=2), (2, 4, 3, 5, 2)),
    ("Conv3D", dict(filters=2, kernel_size=(3, 1, 2), strides=(2, 1, 3), padding="same",
                    kernel_initializer="he_uniform", bias_initializer="ones", activation="sigmoid"), (1, 5, 3, 7, 3)),
    ("Conv3D", dict(filters=2, kernel_size=2, dilation_rate=(1, 2, 1), data_format="channels_first",
                    kernel_regularizer="l2"), (2, 3, 3, 4, 4)),
    ("Conv3D", dict(filters=4, kernel_size=2, groups=2, padding="same"), (2, 3, 4, 3, 6)),
    ("Conv3D", dict(filters=6, kernel_size=(1, 2, 2), groups=3, data_format="channels_first"), (1, 3, 3, 4, 4)),
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
    ours.set_weights([np.asarray(w) for w in kl.get_weights()])
    want = np.asarray(kl(x))
    np.testing.assert_allclose(ours(x).numpy(), want, atol=1e-4, rtol=1e-4)
    assert ours.compute_output_shape((None,) + shape[1:]) == tuple(kl.compute_output_shape((None,) + shape[1:]))
    mine, theirs = ours.get_config(), kl.get_config()
    assert {k: v for k, v in mine.items() if k != "name"} == {k: v for k, v in theirs.items() if k != "name"}
    back = layers.deserialize(keras.layers.serialize(kl))
    assert type(back) is type(ours)
    assert type(keras.layers.deserialize(layers.serialize(ours))) is type(kl)


def test_a_conv3d_model_trains_and_moves_to_keras(tmp_path):
    keras = keras_or_none()
    model = lamina.Sequential([
        lamina.Input(shape=(4, 6, 6, 2)), layers.Conv3D(4, 3, padding="same", activation="relu"),
        layers.MaxPooling3D(2), layers.Conv3D(3, (1, 2, 2)), layers.GlobalAveragePooling3D(), layers.Dense(2)])
    x, y = _x(16, 4, 6, 6, 2), _x(16, 2)
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    if keras is None:
        pytest.skip("keras is not installed: no reference to load the file with")
    model.save(str(tmp_path / "ours.keras"))
    theirs = keras.saving.load_model(str(tmp_path / "ours.keras"))
    np.testing.assert_allclose(theirs.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)


# ---- Conv3DTranspose --------------------------------------------------------------------------------

def conv3d_transpose_ref(x, kernel, bias, strides, padding, output_padding, dilation, data_format=None):
    """Every input voxel scatters kernel-weighted copies into the full output, which is then cut
    to Keras's output length (pad_before per dimension, from the forward convolution's geometry)."""
    from lamina.backend.convolution_transpose import transpose_geometry
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    b, *sp, c = x.shape
    k = kernel.shape[:3]
    f = kernel.shape[3]
    geo = [transpose_geometry(sp[i], k[i], strides[i], dilation[i], padding,
                              None if output_padding is None else output_padding[i]) for i in range(3)]
    out = np.zeros((b,) + tuple(g[0] for g in geo) + (f,))
    for pos in np.ndindex(*sp):
        for tap in np.ndindex(*k):
            t = [pos[i] * strides[i] + tap[i] * dilation[i] - geo[i][1] for i in range(3)]
            if all(0 <= t[i] < geo[i][0] for i in range(3)):
                out[:, t[0], t[1], t[2]] += x[(slice(None),) + pos] @ kernel[tap].T
    out = out + bias
    return np.moveaxis(out, -1, 1) if data_format == "channels_first" else out


@pytest.mark.parametrize("kwargs,in_shape,out_shape", [
    (dict(filters=3, kernel_size=2), (2, 3, 4, 2, 2), (2, 4, 5, 3, 3)),
    (dict(filters=2, kernel_size=(3, 2, 2), strides=(2, 1, 2)), (1, 3, 3, 2, 3), (1, 7, 4, 4, 2)),
    (dict(filters=2, kernel_size=3, strides=2, padding="same"), (2, 2, 3, 3, 1), (2, 4, 6, 6, 2)),
    (dict(filters=2, kernel_size=3, strides=(3, 2, 2), padding="same", output_padding=(1, 1, 0)), (1, 2, 2, 3, 2),
     (1, 5, 4, 5, 2)),
    (dict(filters=1, kernel_size=2, dilation_rate=(2, 1, 2)), (1, 3, 2, 3, 2), (1, 5, 3, 5, 1)),
    (dict(filters=2, kernel_size=2, strides=2, data_format="channels_first"), (1, 3, 2, 2, 3), (1, 2, 4, 4, 6)),
])
def test_conv3d_transpose(kwargs, in_shape, out_shape):
    x = _x(*in_shape)
    layer, outs = run_layer_test(layers.Conv3DTranspose, kwargs, in_shape, input_data=x,
                                 expected_output_shape=out_shape, expected_num_trainable_weights=2)
    kernel, bias = layer.get_weights()
    assert kernel.shape == layer.kernel_size + (kwargs["filters"], in_shape[1 if "data_format" in kwargs else -1])
    to3 = lambda v: (v,) * 3 if isinstance(v, int) else tuple(v)   # noqa: E731
    want = conv3d_transpose_ref(x, kernel, bias, to3(kwargs.get("strides", 1)), kwargs.get("padding", "valid"),
                                kwargs.get("output_padding"), to3(kwargs.get("dilation_rate", 1)),
                                kwargs.get("data_format"))
    np.testing.assert_allclose(outs[0].numpy(), want, rtol=1e-4, atol=1e-5)
    assert layer.compute_output_shape((None,) + in_shape[1:]) == (None,) + out_shape[1:]


def test_conv3d_transpose_gradients_and_errors():
    from opcheck import check_grad
    x, k = _x(1, 2, 3, 2, 2), _x(2, 2, 3, 2, 2)

    def fn(a, w):
        layer = layers.Conv3DTranspose(2, (2, 2, 3), strides=(2, 1, 1), use_bias=False)
        layer.build(a.shape)
        layer.kernel = w          # the watched tensor in place of the variable, so the tape sees it
        return layer._convolve(a)
    check_grad(fn, lambda a, w: conv3d_transpose_ref(a, w, 0.0, (2, 1, 1), "valid", None, (1, 1, 1)), [x, k],
               atol=2e-3)
    assert layers.Convolution3DTranspose is layers.Conv3DTranspose
    with pytest.raises(ValueError, match="Conv3DTranspose: `output_padding` must be strictly less than `strides`"):
        layers.Conv3DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match="Conv3DTranspose: `kernel_size` must be 3 positive int"):
        layers.Conv3DTranspose(2, (3, 3))
    with pytest.raises(ValueError, match=r"Conv3DTranspose '.*': expected inputs of rank 5"):
        layers.Conv3DTranspose(2, 3)(_x(1, 4, 4, 2))
    with pytest.raises(ValueError, match="every spatial dimension of the input must be at least 1"):
        layers.Conv3DTranspose(2, 1)(np.zeros((1, 0, 2, 2, 1), np.float32))


def test_conv3d_transpose_keras_parity():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    for kw, shape in [(dict(filters=3, kernel_size=(2, 3, 2), strides=(1, 2, 2), padding="same"), (2, 3, 4, 3, 2)),
                      (dict(filters=2, kernel_size=3, strides=2, output_padding=1, activation="relu"), (1, 2, 2, 3, 3)),
                      (dict(filters=2, kernel_size=2, data_format="channels_first"), (1, 2, 3, 2, 3))]:
        x = _x(*shape)
        theirs = keras.layers.Conv3DTranspose(**kw)
        want = np.asarray(theirs(x))
        ours = layers.Conv3DTranspose(**kw)
        ours(x)
        ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
        np.testing.assert_allclose(ours(x).numpy(), want, rtol=1e-4, atol=1e-5)
        a, b = ours.get_config(), theirs.get_config()
        a.pop("name"), b.pop("name")
        assert a == b, (a, b)
