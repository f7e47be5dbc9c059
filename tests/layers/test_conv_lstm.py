"""ConvLSTM1D / 2D / 3D (layers/conv_lstm.py): the layer harness, a numpy reference of the step,
outputs equal to Keras's for the same weights, masks, states, dropout, training and saving."""
import numpy as np
import pytest

import lamina
from lamina import layers
from keras_ref import keras_or_none
from layer_harness import run_layer_test


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _conv2d_same(x, w):
    """x (B, H, W, C), w (kh, kw, C, F): stride 1, 'same' padding (Keras's split: more at the end)."""
    kh, kw = w.shape[:2]
    pt, pl = (kh - 1) // 2, (kw - 1) // 2
    xp = np.pad(x, ((0, 0), (pt, kh - 1 - pt), (pl, kw - 1 - pl), (0, 0)))
    B, H, W, _ = x.shape
    out = np.zeros((B, H, W, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,cf->bhwf", xp[:, i:i + H, j:j + W], w[i, j])
    return out


def _reference(x, kernel, rkernel, bias, return_sequences):
    """The ConvLSTM2D recurrence in float64, 'same' padding, gates i, f, c, o."""
    B, T, H, W, _ = x.shape
    F = rkernel.shape[2]
    h = np.zeros((B, H, W, F))
    c = np.zeros((B, H, W, F))
    seq = []
    for t in range(T):
        z = _conv2d_same(x[:, t], kernel) + _conv2d_same(h, rkernel) + bias
        i, f, g, o = np.split(z, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        seq.append(h)
    return (np.stack(seq, 1) if return_sequences else h), h, c


@pytest.mark.parametrize("return_sequences", [False, True])
def test_conv_lstm2d_matches_a_numpy_reference(return_sequences):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 5, 6, 3)).astype(np.float32)
    layer = layers.ConvLSTM2D(4, (3, 2), padding="same", return_sequences=return_sequences, return_state=True)
    out, h, c = layer(x)
    k, rk, b = [w.numpy().astype(np.float64) for w in layer.weights]
    np.testing.assert_array_equal(b, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])   # unit_forget_bias
    want, wh, wc = _reference(x.astype(np.float64), k, rk, b, return_sequences)
    np.testing.assert_allclose(out.numpy(), want, atol=2e-5)
    np.testing.assert_allclose(h.numpy(), wh, atol=2e-5)
    np.testing.assert_allclose(c.numpy(), wc, atol=2e-5)


@pytest.mark.parametrize("cls,kw,shape,expected", [
    (layers.ConvLSTM1D, {"filters": 3, "kernel_size": 3}, (2, 4, 8, 2), (2, 6, 3)),
    (layers.ConvLSTM1D, {"filters": 3, "kernel_size": 3, "dilation_rate": 2, "padding": "same",
                         "return_sequences": True}, (2, 4, 8, 2), (2, 4, 8, 3)),
    (layers.ConvLSTM2D, {"filters": 2, "kernel_size": 3, "strides": 2}, (2, 3, 7, 6, 1), (2, 3, 2, 2)),
    (layers.ConvLSTM3D, {"filters": 2, "kernel_size": 2, "padding": "same", "return_sequences": True},
     (1, 2, 3, 4, 5, 2), (1, 2, 3, 4, 5, 2)),
])
def test_layer_harness(cls, kw, shape, expected):
    run_layer_test(cls, kw, shape, expected_output_shape=expected, expected_num_trainable_weights=3)


def test_return_state_shapes_symbolic_and_eager():
    inp = lamina.Input((None, 8, 8, 2))
    out, h, c = layers.ConvLSTM2D(5, 3, strides=2, return_state=True, return_sequences=True)(inp)
    assert out.shape == (None, None, 3, 3, 5) and h.shape == (None, 3, 3, 5) and c.shape == (None, 3, 3, 5)
    m = lamina.Model(inp, [out, h, c])
    o, h, c = m.predict(np.zeros((2, 4, 8, 8, 2), np.float32), verbose=0)
    assert o.shape == (2, 4, 3, 3, 5) and h.shape == c.shape == (2, 3, 3, 5)


def test_initial_state_mask_and_go_backwards():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 4, 4, 2)).astype(np.float32)
    layer = layers.ConvLSTM2D(3, 3, padding="same", return_sequences=True)
    h0 = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    a = layer(x, initial_state=[h0, h0]).numpy()
    assert not np.allclose(a, layer(x).numpy())
    with pytest.raises(ValueError, match=r"initial state 0 must have shape \(batch, 4, 4, 3\) = \(2, 4, 4, 3\)"):
        layer(x, initial_state=[h0[:, :2], h0])
    # a masked step keeps the states and repeats the previous output
    mask = np.array([[True, True, False, True, True], [True] * 5])
    y = layer(x, mask=mask).numpy()
    np.testing.assert_array_equal(y[0, 2], y[0, 1])
    # go_backwards: the sequence reversed, outputs in processing order
    back = layers.ConvLSTM2D(3, 3, padding="same", return_sequences=True, go_backwards=True)
    back.build(x.shape)
    back.set_weights(layer.get_weights())
    np.testing.assert_allclose(back(x).numpy(), layer(x[:, ::-1]).numpy(), atol=1e-6)


def test_dropout_draws_one_mask_per_gate_and_only_in_training():
    x = np.ones((2, 3, 5, 5, 2), np.float32)
    layer = layers.ConvLSTM2D(2, 3, padding="same", dropout=0.5, recurrent_dropout=0.5, seed=3)
    a = layer(x, training=False).numpy()
    np.testing.assert_array_equal(a, layer(x).numpy())
    b = layer(x, training=True).numpy()
    assert not np.allclose(a, b)
    assert layer.cell._dropout_mask is None   # reset after the call


def test_trains_saves_and_loads(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 3, 6, 6, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3, 4)) > 0).astype(np.float32)[:, None]
    model = lamina.Sequential([lamina.Input((3, 6, 6, 1)),
                               layers.ConvLSTM2D(4, 3, padding="same", return_sequences=True),
                               layers.BatchNormalization(),
                               layers.ConvLSTM2D(2, 3, padding="same"),
                               layers.GlobalAveragePooling2D(), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    first = model.fit(x, y, epochs=1, verbose=0).history["loss"][0]
    last = model.fit(x, y, epochs=15, verbose=0).history["loss"][-1]
    assert last < first
    path = str(tmp_path / "convlstm.keras")
    model.save(path)
    again = lamina.models.load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    cfg = model.layers[0].get_config()
    assert cfg["filters"] == 4 and cfg["kernel_size"] == (3, 3) and cfg["padding"] == "same"
    assert model.layers[0].filters == 4 and model.layers[0].kernel_size == (3, 3)


def test_argument_errors():
    with pytest.raises(ValueError, match="strides > 1 is not compatible with dilation_rate > 1"):
        layers.ConvLSTM2D(2, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="only data_format='channels_last'"):
        layers.ConvLSTM2D(2, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        layers.ConvLSTM1D(2, 3, padding="causal")
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, time, dim, dim, channels\)"):
        layers.ConvLSTM2D(2, 3)(np.zeros((2, 3, 4, 1), np.float32))
    with pytest.raises(ValueError, match="spatial dimensions must be known"):
        layers.ConvLSTM2D(2, 3)(lamina.Input((None, None, 4, 1)))
    with pytest.raises(ValueError, match="unroll=True is not supported"):
        layers.ConvLSTM2D(2, 3, unroll=True)


@pytest.mark.parametrize("name,kw,shape", [
    ("ConvLSTM2D", {"filters": 5, "kernel_size": 3}, (2, 4, 7, 6, 3)),
    ("ConvLSTM2D", {"filters": 5, "kernel_size": (3, 2), "padding": "same", "return_sequences": True,
                    "return_state": True, "strides": (2, 1)}, (2, 4, 7, 6, 3)),
    ("ConvLSTM1D", {"filters": 4, "kernel_size": 3, "dilation_rate": 2, "go_backwards": True,
                    "return_sequences": True}, (2, 5, 9, 3)),
    ("ConvLSTM3D", {"filters": 3, "kernel_size": 2, "padding": "same", "use_bias": False}, (2, 3, 5, 4, 6, 2)),
])
def test_outputs_equal_keras(name, kw, shape):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    theirs = getattr(keras.layers, name)(**kw)
    want = theirs(x)
    ours = getattr(layers, name)(**kw)
    ours.build(x.shape)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    got = ours(x)
    want = list(want) if isinstance(want, (list, tuple)) else [want]
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), np.asarray(w), atol=2e-6)
    mine = ours.get_config()
    for key, value in theirs.get_config().items():
        if key in ("name", "dtype", "trainable", "seed", "kernel_initializer", "recurrent_initializer",
                   "bias_initializer", "unroll"):
            continue
        assert mine[key] == (tuple(value) if isinstance(value, list) else value), key
