"""Tests for layers/pooling.py: both data formats of the pooling layers and of the global
poolings, GlobalAveragePooling1D's masks, and the same for ZeroPadding2D (layers/convolutional.py)
(numpy references, Keras parity, configs)."""
import numpy as np
import pytest

import lamina
from lamina import layers
from keras_ref import keras_or_none
from layer_harness import run_layer_test

RNG = np.random.default_rng(31)


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    return keras


POOLS = [(layers.MaxPooling1D, {"pool_size": 2}, (2, 3, 6)), (layers.AveragePooling1D, {"pool_size": 3, "strides": 1,
                                                                                         "padding": "same"}, (2, 2, 5)),
         (layers.MaxPooling2D, {"pool_size": (2, 3), "padding": "same"}, (2, 3, 5, 7)),
         (layers.AveragePooling2D, {}, (1, 2, 4, 6)),
         (layers.GlobalAveragePooling1D, {"keepdims": True}, (2, 3, 5)), (layers.GlobalMaxPooling1D, {}, (2, 3, 5)),
         (layers.GlobalAveragePooling2D, {}, (2, 3, 4, 5)), (layers.GlobalMaxPooling2D, {"keepdims": True},
                                                              (2, 3, 4, 5))]


@pytest.mark.parametrize("cls,kwargs,shape", POOLS, ids=[c.__name__ for c, _, _ in POOLS])
def test_channels_first_is_channels_last_transposed(cls, kwargs, shape):
    x = _x(*shape)                                # (batch, channels, *spatial)
    last = np.moveaxis(x, 1, -1)
    y = cls(**kwargs)(last).numpy()
    want = np.moveaxis(y, -1, 1) if y.ndim > 2 else y
    layer, _ = run_layer_test(cls, {**kwargs, "data_format": "channels_first"}, shape, input_data=x,
                              expected_output=want)
    assert layer.get_config()["data_format"] == "channels_first"
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + want.shape[1:]
    with pytest.raises(ValueError, match="`data_format` must be 'channels_last', 'channels_first' or None"):
        cls(**kwargs, data_format="NCHW")


def test_global_average_pooling_1d_leaves_masked_steps_out():
    x = _x(2, 4, 3)
    mask = np.array([[1, 1, 0, 0], [1, 0, 1, 1]], bool)
    want = np.stack([x[i][mask[i]].mean(0) for i in range(2)])
    layer = layers.GlobalAveragePooling1D()
    np.testing.assert_allclose(layer(x, mask=mask).numpy(), want, rtol=1e-5)
    cf = layers.GlobalAveragePooling1D(data_format="channels_first", keepdims=True)(x.transpose(0, 2, 1), mask=mask)
    np.testing.assert_allclose(cf.numpy()[..., 0], want, rtol=1e-5)
    # from an Embedding's mask, in a model; the mask stops here
    ids = np.array([[3, 1, 0, 0], [2, 2, 4, 0]])
    inp = lamina.Input((4,), dtype="int32")
    emb = layers.Embedding(5, 3, mask_zero=True)
    pooled = layers.GlobalAveragePooling1D()(emb(inp))
    model = lamina.Model(inp, pooled)
    e = emb(ids).numpy()
    out = model(ids)
    np.testing.assert_allclose(out.numpy(), np.stack([e[i][ids[i] != 0].mean(0) for i in range(2)]), rtol=1e-5)
    assert out._keras_mask is None
    with pytest.raises(ValueError, match=r"expected a mask of shape \(batch, steps\) = \(2, 4\)"):
        layer(x, mask=np.ones((2, 3), bool))


def test_zero_padding_2d_channels_first():
    x = _x(2, 3, 2, 4)
    layer, _ = run_layer_test(layers.ZeroPadding2D, {"padding": ((1, 0), (2, 1)), "data_format": "channels_first"},
                              x.shape, input_data=x, expected_output=np.pad(x, ((0, 0), (0, 0), (1, 0), (2, 1))))
    assert layer.compute_output_shape((None, 3, None, 4)) == (None, 3, None, 7)
    assert layer.get_config()["data_format"] == "channels_first"


def test_pooling_keras_parity():
    keras = _keras()
    x = _x(2, 3, 6, 5)
    seq = _x(2, 5, 3)
    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 0]], bool)
    for name, kw, data in [("MaxPooling2D", {"pool_size": 2, "data_format": "channels_first"}, x),
                           ("AveragePooling2D", {"pool_size": (3, 2), "padding": "same",
                                                 "data_format": "channels_first"}, x),
                           ("MaxPooling1D", {"data_format": "channels_first"}, seq),
                           ("GlobalMaxPooling2D", {"data_format": "channels_first", "keepdims": True}, x),
                           ("GlobalAveragePooling1D", {"data_format": "channels_first"}, seq),
                           ("ZeroPadding2D", {"padding": (2, 1), "data_format": "channels_first"}, x)]:
        ours, theirs = getattr(layers, name)(**kw), getattr(keras.layers, name)(**kw)
        np.testing.assert_allclose(ours(data).numpy(), np.asarray(theirs(data)), rtol=1e-5, atol=1e-6, err_msg=name)
        a, b = ours.get_config(), theirs.get_config()
        a.pop("name"), b.pop("name")
        assert a == b, (name, a, b)
    np.testing.assert_allclose(layers.GlobalAveragePooling1D()(seq, mask=mask).numpy(),
                               np.asarray(keras.layers.GlobalAveragePooling1D()(seq, mask=mask)), rtol=1e-5)
