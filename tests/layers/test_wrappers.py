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
