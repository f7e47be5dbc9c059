import os

import numpy as np
import pytest

import lamina
from lamina import layers
from keras_ref import keras_or_none
from layer_harness import run_layer_test


def _conv_ref(x, k, stride, padding):
    n, h, w, c = x.shape
    kh, kw, _, f = k.shape
    if padding == "same":
        oh, ow = -(-h // stride), -(-w // stride)
        ph = max((oh - 1) * stride + kh - h, 0)
        pw = max((ow - 1) * stride + kw - w, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(patch, k, axes=([1, 2, 3], [0, 1, 2]))
    return out


@pytest.mark.parametrize("padding,strides", [("valid", 1), ("same", 1), ("same", 2)])
def test_conv2d_harness_and_reference(padding, strides):
    x = np.random.default_rng(0).standard_normal((2, 7, 6, 3)).astype(np.float32)
    layer, outs = run_layer_test(layers.Conv2D, {"filters": 4, "kernel_size": 3, "padding": padding,
                                                 "strides": strides}, (2, 7, 6, 3), input_data=x,
                                 expected_num_trainable_weights=2)
    k, b = layer.get_weights()
    assert k.shape == (3, 3, 3, 4)
    np.testing.assert_allclose(outs[0].numpy(), _conv_ref(x, k, strides, padding) + b, atol=1e-4)


def test_conv1d_and_causal():
    x = np.random.default_rng(1).standard_normal((2, 9, 3)).astype(np.float32)
    layer, outs = run_layer_test(layers.Conv1D, {"filters": 2, "kernel_size": 3, "padding": "causal"}, (2, 9, 3),
                                 input_data=x, expected_output_shape=(2, 9, 2))
    k, b = layer.get_weights()
    xp = np.pad(x, ((0, 0), (2, 0), (0, 0)))
    ref = _conv_ref(xp[:, :, None, :], k[:, None], 1, "valid")[:, :, 0, :] + b
    np.testing.assert_allclose(outs[0].numpy(), ref, atol=1e-4)


def test_conv_validation():
    with pytest.raises(ValueError, match="filters"):
        layers.Conv2D(0, 3)
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2D(2, 3, padding="full")
    c = layers.Conv2D(2, 3)
    with pytest.raises(ValueError, match=r"conv2d.*ndim=4.*\(2, 5, 5\)|expected min_ndim=4"):
        c(np.zeros((2, 5, 5), np.float32))


def test_zero_padding2d():
    x = np.ones((1, 2, 3, 1), np.float32)
    run_layer_test(layers.ZeroPadding2D, {"padding": ((1, 0), (2, 1))}, (1, 2, 3, 1), input_data=x,
                   expected_output=np.pad(x, ((0, 0), (1, 0), (2, 1), (0, 0))))


def test_pooling_layers():
    x = np.random.default_rng(2).standard_normal((2, 4, 6, 3)).astype(np.float32)
    mx = x.reshape(2, 2, 2, 3, 2, 3).max(axis=(2, 4))
    av = x.reshape(2, 2, 2, 3, 2, 3).mean(axis=(2, 4))
    run_layer_test(layers.MaxPooling2D, {}, (2, 4, 6, 3), input_data=x, expected_output=mx)
    run_layer_test(layers.AveragePooling2D, {"pool_size": 2}, (2, 4, 6, 3), input_data=x, expected_output=av)
    run_layer_test(layers.GlobalAveragePooling2D, {}, (2, 4, 6, 3), input_data=x, expected_output=x.mean(axis=(1, 2)))
    run_layer_test(layers.GlobalMaxPooling2D, {"keepdims": True}, (2, 4, 6, 3), input_data=x,
                   expected_output=x.max(axis=(1, 2), keepdims=True))
    assert layers.MaxPooling2D(2, padding="same").compute_output_shape((None, 5, 5, 1)) == (None, 3, 3, 1)


# ---- depthwise and separable convolutions ---------------------------------------------------------

def _depthwise_ref(x, k, stride, padding):
    """Depthwise 2-D conv by loops: output channel c * dm + m = channel c with filter k[..., c, m]."""
    kh, kw, c, dm = k.shape
    block = np.zeros((kh, kw, c, c * dm), k.dtype)
    for i in range(c):
        block[:, :, i, i * dm:(i + 1) * dm] = k[:, :, i, :]
    return _conv_ref(x, block, stride, padding)


@pytest.mark.parametrize("padding,strides,dm", [("valid", 1, 1), ("same", 1, 2), ("same", 2, 1), ("valid", 2, 3)])
def test_depthwise_conv2d_harness_and_reference(padding, strides, dm):
    x = np.random.default_rng(3).standard_normal((2, 7, 6, 3)).astype(np.float32)
    layer, outs = run_layer_test(layers.DepthwiseConv2D, {"kernel_size": 3, "padding": padding, "strides": strides,
                                                          "depth_multiplier": dm}, (2, 7, 6, 3), input_data=x,
                                 expected_num_trainable_weights=2)
    k, b = layer.get_weights()
    assert k.shape == (3, 3, 3, dm) and b.shape == (3 * dm,)
    assert [w.path for w in layer.weights] == [f"{layer.name}/kernel", f"{layer.name}/bias"]
    assert layer.depthwise_kernel is layer.kernel
    np.testing.assert_allclose(outs[0].numpy(), _depthwise_ref(x, k, strides, padding) + b, atol=1e-4)
    assert layer.compute_output_shape((None, 7, 6, 3)) == (None,) + outs[0].shape[1:]


def test_depthwise_conv2d_options():
    x = np.random.default_rng(4).standard_normal((2, 9, 8, 4)).astype(np.float32)
    run_layer_test(layers.DepthwiseConv2D, {"kernel_size": (3, 2), "dilation_rate": 2, "use_bias": False,
                                            "activation": "relu", "depthwise_regularizer": "l2"}, (2, 9, 8, 4),
                   input_data=x, expected_output_shape=(2, 5, 6, 4), expected_num_trainable_weights=1)
    # channels_first: same numbers as channels_last on the transposed input
    cl = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)
    cf = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, data_format="channels_first")
    xt = np.transpose(x, (0, 3, 1, 2))
    run_layer_test(layers.DepthwiseConv2D, {"kernel_size": 3, "data_format": "channels_first"}, xt.shape,
                   input_data=xt, expected_output_shape=(2, 4, 7, 6))
    cl(x)
    cf(xt)
    cf.set_weights([cl.get_weights()[0], np.arange(8, dtype=np.float32)])
    cl.set_weights(cf.get_weights())
    np.testing.assert_allclose(cf(xt).numpy(), np.transpose(cl(x).numpy(), (0, 3, 1, 2)), atol=1e-5)
    assert cf.compute_output_shape((None, 4, 9, 8)) == (None, 8, 9, 8)


def test_depthwise_conv1d():
    x = np.random.default_rng(5).standard_normal((3, 11, 4)).astype(np.float32)
    layer, outs = run_layer_test(layers.DepthwiseConv1D, {"kernel_size": 3, "strides": 2, "depth_multiplier": 2},
                                 (3, 11, 4), input_data=x, expected_output_shape=(3, 5, 8))
    k, b = layer.get_weights()
    assert k.shape == (3, 4, 2)
    ref = _depthwise_ref(x[:, None], k[None], 1, "valid")[:, 0, ::2] + b
    np.testing.assert_allclose(outs[0].numpy(), ref, atol=1e-4)


@pytest.mark.parametrize("padding,strides,dm", [("valid", 1, 1), ("same", 2, 2)])
def test_separable_conv2d_harness_and_reference(padding, strides, dm):
    x = np.random.default_rng(6).standard_normal((2, 8, 7, 3)).astype(np.float32)
    layer, outs = run_layer_test(layers.SeparableConv2D, {"filters": 5, "kernel_size": 3, "padding": padding,
                                                          "strides": strides, "depth_multiplier": dm}, (2, 8, 7, 3),
                                 input_data=x, expected_num_trainable_weights=3)
    d, p, b = layer.get_weights()
    assert (d.shape, p.shape, b.shape) == ((3, 3, 3, dm), (1, 1, 3 * dm, 5), (5,))
    assert [w.path.split("/")[-1] for w in layer.weights] == ["depthwise_kernel", "pointwise_kernel", "bias"]
    ref = _depthwise_ref(x, d, strides, padding) @ p[0, 0] + b
    np.testing.assert_allclose(outs[0].numpy(), ref, atol=1e-4)


def test_separable_conv1d_and_aliases():
    x = np.random.default_rng(7).standard_normal((2, 10, 3)).astype(np.float32)
    layer, outs = run_layer_test(layers.SeparableConv1D, {"filters": 4, "kernel_size": 3, "padding": "same",
                                                          "use_bias": False, "dilation_rate": 2}, (2, 10, 3),
                                 input_data=x, expected_output_shape=(2, 10, 4), expected_num_trainable_weights=2)
    assert [w.shape for w in layer.weights] == [(3, 3, 1), (1, 3, 4)]
    run_layer_test(layers.SeparableConv2D, {"filters": 2, "kernel_size": 2, "data_format": "channels_first"},
                   (2, 3, 5, 4), expected_output_shape=(2, 2, 4, 3))
    assert layers.SeparableConvolution2D is layers.SeparableConv2D
    assert layers.SeparableConvolution1D is layers.SeparableConv1D


def test_depthwise_separable_validation():
    for cls, args in [(layers.DepthwiseConv2D, ()), (layers.SeparableConv2D, (4,))]:
        with pytest.raises(ValueError, match=r"`depth_multiplier` must be a positive integer.*depth_multiplier=0"):
            cls(*args, 3, depth_multiplier=0)
        with pytest.raises(ValueError, match=r"depth_multiplier=1.5"):
            cls(*args, 3, depth_multiplier=1.5)
        with pytest.raises(ValueError, match=r"`kernel_size` must be 2 positive int\(s\), received \(3, 0\)"):
            cls(*args, (3, 0))
        with pytest.raises(ValueError, match=r"`strides`.*received 0"):
            cls(*args, 3, strides=0)
        with pytest.raises(ValueError, match=r"`dilation_rate`.*received \(1, 2, 3\)"):
            cls(*args, 3, dilation_rate=(1, 2, 3))
        with pytest.raises(ValueError, match=r"`padding` must be 'valid' or 'same', received padding='causal'"):
            cls(*args, 3, padding="causal")
        with pytest.raises(ValueError, match=r"`data_format`.*data_format='nhwc'"):
            cls(*args, 3, data_format="nhwc")
        with pytest.raises(ValueError, match=r"Unknown constraint 'nonneg'"):
            cls(*args, 3, depthwise_constraint="nonneg")
    for bad in (0, -2, 2.0, True, None):
        with pytest.raises(ValueError, match=r"SeparableConv1D: `filters` must be a positive integer"):
            layers.SeparableConv1D(bad, 3)
    layer = layers.DepthwiseConv2D(3)
    with pytest.raises(ValueError, match=r"DepthwiseConv2D '.*': expected inputs of rank 4 \(batch, height, width, "
                                         r"channels\), received shape \(2, 5, 5\)"):
        layer(np.zeros((2, 5, 5), np.float32))
    layer(np.zeros((1, 5, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r"expected axis -1 .*value 2.*\(1, 5, 5, 3\)"):
        layer(np.zeros((1, 5, 5, 3), np.float32))


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras", reason="Keras parity needs keras (tested with KERAS_BACKEND=jax)")


@pytest.mark.parametrize("cls,kwargs,shape", [
    ("DepthwiseConv2D", {"kernel_size": 3, "padding": "same", "depth_multiplier": 2}, (2, 9, 8, 3)),
    ("DepthwiseConv2D", {"kernel_size": (3, 2), "strides": 2, "activation": "relu"}, (2, 9, 8, 5)),
    ("DepthwiseConv2D", {"kernel_size": 3, "dilation_rate": 2, "use_bias": False}, (1, 9, 8, 4)),
    ("DepthwiseConv1D", {"kernel_size": 3, "strides": 2, "padding": "same"}, (2, 11, 4)),
    ("SeparableConv2D", {"filters": 6, "kernel_size": 3, "padding": "same", "depth_multiplier": 2}, (2, 9, 8, 3)),
    ("SeparableConv2D", {"filters": 4, "kernel_size": 3, "strides": 2}, (2, 9, 8, 5)),
    ("SeparableConv1D", {"filters": 4, "kernel_size": 2, "dilation_rate": 2}, (2, 11, 3)),
])
def test_keras_parity(cls, kwargs, shape):
    keras = _keras()
    x = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
    k, m = getattr(keras.layers, cls)(**kwargs), getattr(layers, cls)(**kwargs)
    k(x)
    m(x)
    assert [w.path.split("/")[-1] for w in m.weights] == [w.path.split("/")[-1] for w in k.weights]
    assert [w.shape for w in m.get_weights()] == [tuple(w.shape) for w in k.get_weights()]
    rng = np.random.default_rng(9)
    ws = [rng.standard_normal(w.shape).astype(np.float32) for w in k.get_weights()]  # non-zero biases too
    k.set_weights(ws)
    m.set_weights(ws)
    np.testing.assert_allclose(m(x).numpy(), np.asarray(k(x)), atol=1e-4, rtol=1e-4)
    kcfg = {key: v for key, v in k.get_config().items() if key != "quantization_config"}
    mcfg = m.get_config()
    assert set(mcfg) == set(kcfg)
    for key in ("depth_multiplier", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
                "activation", "use_bias", "filters"):
        assert mcfg.get(key) == kcfg.get(key), key


@pytest.mark.parametrize("kwargs,pattern", [
    ({"filters": 2, "kernel_size": 1.5}, r"Conv2D: `kernel_size` must be an int or a tuple of 2 ints, received 1\.5"),
    ({"filters": 2, "kernel_size": (3, 2.0)}, r"Conv2D: `kernel_size` must be an int or a tuple of 2 ints"),
    ({"filters": 2, "kernel_size": 3, "strides": (1, True)}, r"Conv2D: `strides` must be an int or a tuple"),
    ({"filters": 2.0, "kernel_size": 3}, r"Conv2D: `filters` must be a positive integer, received filters=2\.0"),
])
def test_conv_sizes_must_be_integers(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        layers.Conv2D(**kwargs)


@pytest.mark.parametrize("channels,filters,groups,kw", [
    (4, 8, 2, {}), (6, 6, 6, {"padding": "same"}), (6, 12, 6, {"strides": 2}),
    (8, 4, 4, {"dilation_rate": 2, "padding": "same"}), (9, 6, 3, {"activation": "relu"})])
def test_grouped_conv2d_is_one_convolution_per_group(channels, filters, groups, kw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 8, channels)).astype(np.float32)
    layer = layers.Conv2D(filters, 3, groups=groups, **kw)
    y = layer(x).numpy()
    k, b = layer.get_weights()
    assert k.shape == (3, 3, channels // groups, filters) and layer.get_config()["groups"] == groups
    ci, fo = channels // groups, filters // groups
    parts = []
    for g in range(groups):   # a separate Conv2D per group, on its slice of the channels
        ref = layers.Conv2D(fo, 3, **kw)
        ref.build(x[..., :ci].shape)
        ref.set_weights([k[..., g * fo:(g + 1) * fo], b[g * fo:(g + 1) * fo]])
        parts.append(ref(x[..., g * ci:(g + 1) * ci]).numpy())
    np.testing.assert_allclose(y, np.concatenate(parts, axis=-1), atol=1e-5)


def test_grouped_conv_equals_keras_trains_and_stays_float_when_quantized():
    keras = keras_or_none()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 8, 6)).astype(np.float32)
    if keras is not None:
        for groups, filters in ((2, 4), (6, 12)):
            theirs = keras.layers.Conv2D(filters, 3, groups=groups)
            want = np.asarray(theirs(x))
            ours = layers.Conv2D(filters, 3, groups=groups)
            ours.build(x.shape)
            ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
            np.testing.assert_allclose(ours(x).numpy(), want, atol=1e-5)
    model = lamina.Sequential([lamina.Input((8, 8, 6)), layers.Conv2D(6, 3, groups=3), layers.Flatten(),
                               layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    before = model.layers[0].get_weights()[0].copy()
    model.fit(x, np.ones((2, 1), np.float32), epochs=1, verbose=0)
    assert not np.allclose(before, model.layers[0].get_weights()[0])
    model.quantize("int8")   # the grouped convolution stays float32; the Dense is quantized
    assert model.layers[0].kernel.dtype == "float32"
    assert model.predict(x, verbose=0).shape == (2, 1)
