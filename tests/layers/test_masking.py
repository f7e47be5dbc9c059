import numpy as np
import pytest

import lamina
from lamina import layers


def _seq():
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    x[0, 2:] = 0.0  # sample 0 has two padded steps
    return x


def test_masking_layer_sets_and_propagates_mask():
    x = _seq()
    m = layers.Masking()
    y = m(x)
    np.testing.assert_array_equal(y._keras_mask.numpy(), [[True, True, False, False], [True] * 4])
    z = layers.Dense(2)(y)
    np.testing.assert_array_equal(z._keras_mask.numpy(), y._keras_mask.numpy())

    seen = {}

    class Probe(layers.Layer):
        def call(self, inputs, mask=None):
            seen["mask"] = mask
            return inputs
    Probe()(z)
    np.testing.assert_array_equal(seen["mask"].numpy(), y._keras_mask.numpy())
    assert layers.Flatten()(layers.Reshape((4, 3))(x))._keras_mask is None


def test_masked_timesteps_do_not_count_in_loss_or_metrics():
    x = _seq()
    inp = lamina.Input(shape=(4, 3))
    out = layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")(layers.Masking()(inp))
    model = lamina.Model(inp, out)
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    y = x.sum(-1, keepdims=True)
    y_bad = y.copy()
    y_bad[0, 2:] = 100.0  # targets at masked steps are ignored
    loss, mae = model.evaluate(x, y_bad, verbose=0)
    assert loss == pytest.approx(0.0, abs=1e-10) and mae == pytest.approx(0.0, abs=1e-6)
    y_off = y + 1.0
    loss, _ = model.evaluate(x, y_off, verbose=0)
    assert loss == pytest.approx(1.0, rel=1e-5)  # mean over the 6 unmasked steps


def test_custom_masking_layer_gets_the_mask_in_a_functional_graph():
    """Keras's masking guide: a custom layer with supports_masking and call(inputs, mask=None)
    receives the mask while the graph is built and when it runs, and passes it on."""
    from lamina import ops
    seen = []

    class TemporalSoftmax(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs, mask=None):
            seen.append(mask is not None)
            m = ops.expand_dims(ops.cast(mask, "float32"), -1)
            e = ops.exp(inputs - ops.max(inputs, axis=1, keepdims=True)) * m
            return e / ops.sum(e, axis=1, keepdims=True)

    inp = lamina.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(10, 3, mask_zero=True)(inp)
    x = layers.Dense(1)(x)
    assert x._keras_mask is not None and x._keras_mask.shape == (None, None)
    out = TemporalSoftmax()(x)
    assert out._keras_mask is not None                      # passed on (supports_masking)
    model = lamina.Model(inp, out)
    y = model(np.array([[1, 2, 0, 0], [3, 0, 0, 0]], np.int32)).numpy()[..., 0]
    assert all(seen)
    np.testing.assert_allclose(y[:, 2:], 0)
    np.testing.assert_allclose(y.sum(1), 1, rtol=1e-6)
    assert y[1, 0] == pytest.approx(1.0)


def test_masks_keep_a_known_batch_size():
    """Input(batch_size=4) + a mask-producing layer + a stateful RNN: the symbolic mask has the
    input's batch size (it used to be traced with a stand-in batch of 2 and be refused)."""
    import lamina
    from lamina import layers
    model = lamina.Sequential([lamina.Input((5,), batch_size=4, dtype="int32"), layers.Embedding(20, 6, mask_zero=True),
                               layers.LSTM(7, stateful=True, return_sequences=True)])
    assert model.layers[0].output._keras_mask.shape == (4, 5)
    x = np.array([[1, 2, 0, 0, 0]] * 4, np.int32)
    y = model(x).numpy()
    np.testing.assert_array_equal(y[:, 2], y[:, 1])  # masked steps carry the last output
