"""Tests for layers/pooling3d.py: MaxPooling3D, AveragePooling3D, GlobalAveragePooling3D and
GlobalMaxPooling3D (harness, numpy reference, Keras parity, configs, errors)."""
import numpy as np
import pytest

from lamina import layers
from conv_refs import pool3d_ref
from keras_ref import keras_or_none
from layer_harness import run_layer_test

RNG = np.random.default_rng(17)


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ---- pooling ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls,mode", [(layers.MaxPooling3D, "max"), (layers.AveragePooling3D, "avg")])
@pytest.mark.parametrize("kwargs,in_shape,out_shape", [
    (dict(), (2, 4, 6, 4, 3), (2, 2, 3, 2, 3)),
    (dict(pool_size=(3, 2, 2), strides=(1, 2, 1), padding="same"), (2, 3, 5, 4, 2), (2, 3, 3, 4, 2)),
    (dict(pool_size=2, strides=1, data_format="channels_first"), (1, 2, 3, 4, 5), (1, 2, 2, 3, 4)),
])
def test_pool3d_layers(cls, mode, kwargs, in_shape, out_shape):
    x = _x(*in_shape)
    layer, _ = run_layer_test(cls, kwargs, in_shape, input_data=x, expected_output_shape=out_shape,
                              expected_output=pool3d_ref(x, kwargs.get("pool_size", 2), kwargs.get("strides"),
                                                         kwargs.get("padding", "valid"), kwargs.get("data_format"),
                                                         mode=mode))
    assert layer.compute_output_shape((None,) + in_shape[1:]) == (None,) + out_shape[1:]


@pytest.mark.parametrize("cls,fn", [(layers.GlobalAveragePooling3D, np.mean), (layers.GlobalMaxPooling3D, np.max)])
@pytest.mark.parametrize("data_format,keepdims", [(None, False), ("channels_first", True), ("channels_last", True)])
def test_global_pool3d_layers(cls, fn, data_format, keepdims):
    x = _x(2, 3, 4, 2, 5)
    axes = (2, 3, 4) if data_format == "channels_first" else (1, 2, 3)
    want = fn(x, axis=axes, keepdims=keepdims)
    layer, _ = run_layer_test(cls, dict(data_format=data_format, keepdims=keepdims), x.shape, input_data=x,
                              expected_output=want, expected_output_shape=want.shape)
    assert layer.compute_output_shape((None,) + x.shape[1:]) == (None,) + want.shape[1:]


def test_pool3d_aliases_and_errors():
    assert layers.MaxPool3D is layers.MaxPooling3D and layers.AvgPool3D is layers.AveragePooling3D
    assert layers.GlobalAvgPool3D is layers.GlobalAveragePooling3D
    assert layers.GlobalMaxPool3D is layers.GlobalMaxPooling3D
    with pytest.raises(ValueError, match=r"MaxPooling3D.*pool_size.*3 positive"):
        layers.MaxPooling3D((2, 2))
    with pytest.raises(ValueError, match=r"AveragePooling3D.*padding.*'full'"):
        layers.AveragePooling3D(padding="full")
    with pytest.raises(ValueError, match=r"GlobalMaxPooling3D.*data_format.*'NDHWC'"):
        layers.GlobalMaxPooling3D(data_format="NDHWC")
    with pytest.raises(ValueError, match=r"expected ndim=5, found ndim=4"):
        layers.MaxPooling3D()(_x(1, 4, 4, 2))


@pytest.mark.parametrize("name,kwargs,shape", [
    ("MaxPooling3D", dict(pool_size=(2, 3, 2), padding="same"), (2, 3, 5, 4, 2)),
    ("AveragePooling3D", dict(pool_size=2, strides=1, padding="same", data_format="channels_first"),
     (1, 2, 3, 4, 3)),
    ("AveragePooling3D", dict(pool_size=(3, 1, 2), strides=(2, 1, 1)), (2, 5, 3, 4, 2)),
    ("GlobalAveragePooling3D", dict(keepdims=True), (2, 3, 2, 4, 3)),
    ("GlobalMaxPooling3D", dict(data_format="channels_first"), (2, 3, 2, 4, 3)),
])
def test_matches_keras(name, kwargs, shape):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference to compare with")
    x = _x(*shape)
    kl = getattr(keras.layers, name)(**kwargs)
    ours = getattr(layers, name)(**kwargs)
    np.testing.assert_allclose(ours(x).numpy(), np.asarray(kl(x)), atol=1e-5, rtol=1e-5)
    assert ours.compute_output_shape((None,) + shape[1:]) == tuple(kl.compute_output_shape((None,) + shape[1:]))
    mine, theirs = ours.get_config(), kl.get_config()
    assert {k: v for k, v in mine.items() if k != "name"} == {k: v for k, v in theirs.items() if k != "name"}
    assert type(layers.deserialize(keras.layers.serialize(kl))) is type(ours)
    assert type(keras.layers.deserialize(layers.serialize(ours))) is type(kl)
