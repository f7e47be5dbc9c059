import numpy as np
import pytest

import lamina
from lamina import layers
from layer_harness import run_layer_test


def test_batch_norm_weights_order_training_and_inference():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((16, 5, 3)) * 3 + 2).astype(np.float32)
    bn = layers.BatchNormalization(momentum=0.5)
    y_inf = bn(x).numpy()  # fresh: moving mean 0, var 1
    np.testing.assert_allclose(y_inf, x / np.sqrt(1 + 1e-3), atol=1e-5)
    assert [w.path.split("/")[1] for w in bn.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert len(bn.trainable_weights) == 2 and len(bn.non_trainable_weights) == 2
    y = bn(x, training=True).numpy()
    mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), atol=1e-4)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.5 * mean, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.5 + 0.5 * var, atol=1e-4)
    run_layer_test(layers.BatchNormalization, {}, (4, 3, 2))


def test_frozen_batch_norm_runs_in_inference_mode():
    x = np.random.default_rng(1).standard_normal((8, 4)).astype(np.float32) + 5
    bn = layers.BatchNormalization()
    bn(x)
    bn.trainable = False
    before = bn.moving_mean.numpy().copy()
    y = bn(x, training=True).numpy()
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-3), atol=1e-5)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)
    assert bn.trainable_weights == [] and len(bn.non_trainable_weights) == 4
    bn.trainable = True
    assert len(bn.trainable_weights) == 2  # moving statistics stay non-trainable


def test_layer_normalization():
    x = np.random.default_rng(2).standard_normal((3, 4, 6)).astype(np.float32)
    m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    run_layer_test(layers.LayerNormalization, {}, (3, 4, 6), input_data=x,
                   expected_output=(x - m) / np.sqrt(v + 1e-3), atol=1e-4)
    with pytest.raises(ValueError, match="epsilon"):
        layers.LayerNormalization(epsilon=0)


def test_layer_normalization_axis_bookkeeping_and_rms_scaling_as_keras():
    x = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)
    ln = layers.LayerNormalization()
    assert ln.get_config()["axis"] == -1
    ln(x)
    assert ln.get_config()["axis"] == [-1]            # Keras's: a list once built
    ln = layers.LayerNormalization(axis=(2, 1))
    assert ln.get_config()["axis"] == [2, 1]
    y = ln(x).numpy()
    assert ln.get_config()["axis"] == [1, 2] and ln.gamma.shape == (3, 4)
    m, v = x.mean((1, 2), keepdims=True), x.var((1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - m) / np.sqrt(v + 1e-3), atol=1e-4)
    again = layers.LayerNormalization.from_config(ln.get_config())
    np.testing.assert_allclose(again(x).numpy(), y, atol=1e-6)
    with pytest.warns(UserWarning, match="rms_scaling=True.*deprecated.*RMSNormalization"):
        rms = layers.LayerNormalization(rms_scaling=True)
    y = rms(x).numpy()
    assert [w.path.split("/")[-1] for w in rms.weights] == ["gamma"] and rms.beta is None
    np.testing.assert_allclose(y, x / np.sqrt(x.var(-1, keepdims=True) + 1e-3), atol=1e-5)
    assert rms.get_config()["rms_scaling"] is True
    rmsn = layers.RMSNormalization()
    rmsn(x)
    assert rmsn.get_config()["axis"] == [-1]


def test_layer_normalization_rms_scaling_matches_keras():
    from keras_ref import keras_or_none
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference to compare with")
    x = np.random.default_rng(4).standard_normal((2, 3, 5)).astype(np.float32)
    with pytest.warns(UserWarning):
        kl = keras.layers.LayerNormalization(rms_scaling=True, axis=[1, 2], gamma_initializer="random_normal")
    kl(x)
    with pytest.warns(UserWarning):
        ours = layers.deserialize(keras.layers.serialize(kl))
    ours(x)
    ours.set_weights([np.asarray(w) for w in kl.get_weights()])
    np.testing.assert_allclose(ours(x).numpy(), np.asarray(kl(x)), atol=1e-5)
    assert ours.get_config() == kl.get_config()
