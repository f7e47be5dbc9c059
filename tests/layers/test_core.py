import numpy as np
import pytest

import lamina
from lamina import layers
from layer_harness import run_layer_test


def test_dense_harness_and_reference():
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    layer, _ = run_layer_test(layers.Dense, {"units": 5}, (4, 3), expected_output_shape=(4, 5),
                              expected_num_trainable_weights=2)
    k, b = layer.get_weights()
    assert k.shape == (3, 5) and b.shape == (5,)
    np.testing.assert_allclose(layer(x).numpy(), x @ k + b, atol=1e-5)


def test_dense_activation_no_bias_and_3d_input():
    layer, outs = run_layer_test(layers.Dense, {"units": 2, "activation": "tanh", "use_bias": False}, (2, 3, 4),
                                 expected_output_shape=(2, 3, 2), expected_num_trainable_weights=1)
    assert np.all(np.abs(outs[0].numpy()) <= 1.0)


def test_dense_validates_arguments_and_input():
    with pytest.raises(ValueError, match="units"):
        layers.Dense(0)
    with pytest.raises(ValueError, match="activation"):
        layers.Dense(3, activation="nope")
    d = layers.Dense(3)
    d(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"dense.*axis -1.*4.*\(2, 5\)"):
        d(np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match="unrecognized keyword"):
        layers.Dense(3, unitz=4)


def test_unique_auto_names():
    a, b = layers.Dense(1), layers.Dense(1)
    assert a.name != b.name and b.name.startswith("dense")


def test_trainable_flag_takes_effect_at_once():
    d = layers.Dense(2)
    d(np.zeros((1, 3), np.float32))
    d.trainable = False
    assert d.trainable_weights == [] and len(d.non_trainable_weights) == 2
    d.trainable = True
    assert len(d.trainable_weights) == 2


def test_activation_and_activation_layers():
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    run_layer_test(layers.Activation, {"activation": "relu"}, (3, 4), input_data=x, expected_output=np.maximum(x, 0))
    run_layer_test(layers.ReLU, {"max_value": 1.0}, (3, 4), input_data=x, expected_output=np.clip(x, 0, 1))
    run_layer_test(layers.LeakyReLU, {"negative_slope": 0.1}, (3, 4), input_data=x,
                   expected_output=np.where(x > 0, x, 0.1 * x))
    e = np.exp(x - x.max(-1, keepdims=True))
    run_layer_test(layers.Softmax, {}, (3, 4), input_data=x, expected_output=e / e.sum(-1, keepdims=True))


def test_dropout_training_vs_inference():
    x = np.ones((200, 50), np.float32)
    d = layers.Dropout(0.5, seed=3)
    np.testing.assert_array_equal(d(x).numpy(), x)
    y = d(x, training=True).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert 0.4 < (y == 0).mean() < 0.6
    with pytest.raises(ValueError, match="rate"):
        layers.Dropout(1.5)


def test_lambda_layer():
    layer, outs = run_layer_test(layers.Lambda, {"function": lambda t: t * 2.0}, (2, 3), train=False) \
        if False else (None, None)
    lam = layers.Lambda(lambda t: t * 2.0)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(lam(x).numpy(), 2 * x)
    inp = lamina.Input(shape=(3,))
    assert lam(inp).shape == (None, 3)
    with pytest.raises(TypeError, match="serialize"):
        lam.get_config()
