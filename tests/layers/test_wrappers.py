"""Tests for layers/wrappers.py: Wrapper (the base class), TimeDistributed, Bidirectional."""
import numpy as np
import pytest

import lamina
from lamina import layers
from layer_harness import run_layer_test


def test_time_distributed_dense():
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    layer, outs = run_layer_test(layers.TimeDistributed, {"layer": layers.Dense(4)}, (2, 5, 3),
                                 expected_output_shape=(2, 5, 4), expected_num_trainable_weights=2, train=False)
    k, b = layer.get_weights()
    np.testing.assert_allclose(layer(x).numpy(), x @ k + b, atol=1e-5)
    inp = lamina.Input(shape=(None, 3))
    assert layers.TimeDistributed(layers.Dense(4))(inp).shape == (None, None, 4)


def test_time_distributed_trains_in_a_model():
    x = np.random.default_rng(1).standard_normal((8, 5, 3)).astype(np.float32)
    m = lamina.Sequential([lamina.Input(shape=(5, 3)), layers.TimeDistributed(layers.Dense(2))])
    m.compile(optimizer="sgd", loss="mse")
    before = m.get_weights()[0].copy()
    m.train_on_batch(x, np.zeros((8, 5, 2), np.float32))
    assert not np.allclose(before, m.get_weights()[0])


def test_bidirectional_initial_weights():
    rng = np.random.default_rng(0)
    ref = layers.Bidirectional(layers.LSTM(3))
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    ref(x)
    ws = [rng.standard_normal(w.shape).astype(np.float32) for w in ref.weights]
    b = layers.Bidirectional(layers.LSTM(3), weights=ws)
    out = b(x)
    for w, v in zip(b.weights, ws):
        np.testing.assert_array_equal(w.numpy(), v)
    ref.set_weights(ws)
    np.testing.assert_allclose(out.numpy(), ref(x).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="even number"):
        layers.Bidirectional(layers.LSTM(3), weights=ws[:5])
    bad = layers.Bidirectional(layers.LSTM(3), weights=[w[..., :1] for w in ws])
    with pytest.raises(ValueError, match="shape"):
        bad(x)


class _Doubled(layers.Wrapper):
    """A user wrapper: the wrapped layer's output times 2."""

    def call(self, inputs):
        return self.layer(inputs) * 2.0

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


def test_wrapper_base_class():
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    layer, outs = run_layer_test(_Doubled, {"layer": layers.Dense(2)}, (3, 4), expected_output_shape=(3, 2),
                                 expected_num_trainable_weights=2)
    k, b = layer.get_weights()
    np.testing.assert_allclose(layer(x).numpy(), 2 * (x @ k + b), rtol=1e-5)
    w = _Doubled(layers.Dense(2, name="inner"), name="outer")
    w.build((None, 4))            # builds the wrapped layer under the wrapper's name
    assert w.built and w.layer.built and [v.path for v in w.weights] == ["outer/inner/kernel", "outer/inner/bias"]
    config = w.get_config()
    assert config["layer"]["class_name"] == "Dense"
    clone = _Doubled.from_config(config)
    assert isinstance(clone.layer, layers.Dense) and clone.layer.units == 2
    assert isinstance(layers.TimeDistributed(layers.Dense(1)), layers.Wrapper)
    with pytest.raises(ValueError, match=r"_Doubled: expected a Layer instance to wrap, received 3"):
        _Doubled(3)
    with pytest.raises(NotImplementedError, match="Wrapper is a base class with no call"):
        layers.Wrapper(layers.Dense(2))(x)
