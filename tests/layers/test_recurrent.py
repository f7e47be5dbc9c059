"""layers/recurrent.py: SimpleRNN, LSTM and GRU -- the layer harness, output shapes, states,
masks, dropout, stateful layers, other activations (the per-step path), argument checks, and
parity with Keras 3 (when installed). The generic RNN(cell) is tested in test_rnn_generic.py."""
import os

import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.layers.recurrent import GRU, LSTM, GRUCell, LSTMCell, SimpleRNN, SimpleRNNCell
from layer_harness import run_layer_test

LAYERS = [SimpleRNN, LSTM, GRU]
N_STATES = {SimpleRNN: 1, LSTM: 2, GRU: 1}
N_GATES = {SimpleRNN: 1, LSTM: 4, GRU: 3}


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _sig(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


ACTS = {"tanh": np.tanh, "sigmoid": _sig, "relu": lambda v: np.maximum(v, 0.0),
        "hard_sigmoid": lambda v: np.clip((v + 3.0) / 6.0, 0.0, 1.0), "softsign": lambda v: v / (1 + np.abs(v))}


def np_layer(cls, x, weights, mask=None, go_backwards=False, h0=None, c0=None, activation="tanh",
             recurrent_activation="sigmoid", reset_after=True):
    """numpy step loop of the layer's recurrence: (sequence in processing order, h, c)."""
    k, r, b = weights
    tanh, sig = ACTS[activation], ACTS[recurrent_activation]
    B, T, _ = x.shape
    U = r.shape[0]
    h = np.zeros((B, U)) if h0 is None else h0.astype(np.float64)
    c = np.zeros((B, U)) if c0 is None else c0.astype(np.float64)
    seq = []
    for s in range(T):
        t = T - 1 - s if go_backwards else s
        if cls is LSTM:
            z = x[:, t] @ k + h @ r + b
            i, f, g, o = sig(z[:, :U]), sig(z[:, U:2 * U]), tanh(z[:, 2 * U:3 * U]), sig(z[:, 3 * U:])
            cn = f * c + i * g
            hn = o * tanh(cn)
        elif cls is GRU and not reset_after:
            gx = x[:, t] @ k + b
            z, rr = sig(gx[:, :U] + h @ r[:, :U]), sig(gx[:, U:2 * U] + h @ r[:, U:2 * U])
            hn, cn = z * h + (1 - z) * tanh(gx[:, 2 * U:] + (rr * h) @ r[:, 2 * U:]), c
        elif cls is GRU:
            gx, gr = x[:, t] @ k + b[0], h @ r + b[1]
            z, rr = sig(gx[:, :U] + gr[:, :U]), sig(gx[:, U:2 * U] + gr[:, U:2 * U])
            hn, cn = z * h + (1 - z) * tanh(gx[:, 2 * U:] + rr * gr[:, 2 * U:]), c
        else:
            hn, cn = tanh(x[:, t] @ k + h @ r + b), c
        if mask is not None:
            hn, cn = np.where(mask[:, t, None], hn, h), np.where(mask[:, t, None], cn, c)
        h, c = hn, cn
        seq.append(h)
    return np.stack(seq, 1), h, c


# ---- harness and shapes --------------------------------------------------------------------------

@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("kw", [{}, {"return_sequences": True}, {"go_backwards": True, "use_bias": False},
                                {"return_state": True}, {"return_sequences": True, "return_state": True}])
def test_harness(cls, kw):
    B, T, F, U = 3, 5, 4, 6
    seq_shape = (B, T, U) if kw.get("return_sequences") else (B, U)
    expected = [seq_shape] + [(B, U)] * N_STATES[cls] if kw.get("return_state") else seq_shape
    layer, outs = run_layer_test(cls, {"units": U, **kw}, (B, T, F), expected_output_shape=expected,
                                 expected_num_trainable_weights=2 if kw.get("use_bias") is False else 3,
                                 expected_num_non_trainable_weights=0)
    assert isinstance(layer.cell, {SimpleRNN: SimpleRNNCell, LSTM: LSTMCell, GRU: GRUCell}[cls])
    # the outputs follow the numpy recurrence with the layer's weights
    x = _x((B, T, F), 0)
    ws = layer.get_weights()
    if len(ws) == 2:
        ws.append(np.zeros((2, N_GATES[cls] * U) if cls is GRU else (N_GATES[cls] * U,), np.float32))
    seq, h, c = np_layer(cls, x.astype(np.float64), ws, go_backwards=kw.get("go_backwards", False))
    want = [seq if kw.get("return_sequences") else h] + ([h, c][:N_STATES[cls]] if kw.get("return_state") else [])
    for o, w in zip(outs, want):
        np.testing.assert_allclose(o.numpy(), w, atol=2e-5)


@pytest.mark.parametrize("cls", LAYERS)
def test_weights_layout_and_paths(cls):
    U, F = 4, 3
    layer = cls(U)
    layer(np.zeros((2, 5, F), np.float32))
    g = N_GATES[cls]
    assert [w.name for w in layer.weights] == ["kernel", "recurrent_kernel", "bias"]
    assert [w.shape for w in layer.weights] == [(F, g * U), (U, g * U), (2, 3 * U) if cls is GRU else (g * U,)]
    cell = {SimpleRNN: "simple_rnn_cell", LSTM: "lstm_cell", GRU: "gru_cell"}[cls]
    assert layer.cell.name == cell
    assert [w.path for w in layer.weights] == [f"{layer.name}/{cell}/{n}" for n in ("kernel", "recurrent_kernel", "bias")]
    assert layer.units == U and layer.count_params() == sum(int(np.prod(w.shape)) for w in layer.weights)


def test_lstm_unit_forget_bias_and_initializers():
    layer = LSTM(3)
    layer(np.zeros((1, 2, 4), np.float32))
    np.testing.assert_array_equal(layer.cell.bias.numpy(), [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    r = layer.cell.recurrent_kernel.numpy()
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-5)  # orthogonal rows
    layer = LSTM(3, unit_forget_bias=False, bias_initializer="ones")
    layer(np.zeros((1, 2, 4), np.float32))
    np.testing.assert_array_equal(layer.cell.bias.numpy(), np.ones(12))


@pytest.mark.parametrize("cls", LAYERS)
def test_compute_output_shape(cls):
    U = 5
    for seqs in (False, True):
        for state in (False, True):
            layer = cls(U, return_sequences=seqs, return_state=state)
            for shape in ((2, 7, 3), (None, None, 3)):
                out = (shape[0], shape[1], U) if seqs else (shape[0], U)
                want = [out] + [(shape[0], U)] * N_STATES[cls] if state else out
                assert layer.compute_output_shape(shape) == want
            kin = lamina.Input(shape=(None, 3))
            kout = cls(U, return_sequences=seqs, return_state=state)(kin)
            got = [k.shape for k in kout] if state else kout.shape
            assert got == ([(None, None, U) if seqs else (None, U)] + [(None, U)] * N_STATES[cls] if state
                           else (None, None, U) if seqs else (None, U))


@pytest.mark.parametrize("cls", LAYERS)
def test_config_has_every_argument(cls):
    layer = cls(3, return_sequences=True, go_backwards=True, dropout=0.25, recurrent_dropout=0.5, seed=3,
                use_bias=False, kernel_initializer="he_normal", kernel_regularizer="l2", name="rec")
    cfg = layer.get_config()
    for key in ("units", "activation", "use_bias", "kernel_initializer", "recurrent_initializer", "bias_initializer",
                "kernel_regularizer", "recurrent_regularizer", "bias_regularizer", "activity_regularizer",
                "kernel_constraint", "recurrent_constraint", "bias_constraint", "dropout", "recurrent_dropout",
                "seed", "return_sequences", "return_state", "go_backwards", "stateful", "unroll",
                "zero_output_for_mask", "name", "trainable", "dtype"):
        assert key in cfg, key
    assert cfg["dropout"] == 0.25 and cfg["recurrent_dropout"] == 0.5 and cfg["go_backwards"] is True
    assert ("unit_forget_bias" in cfg) == (cls is LSTM) and ("reset_after" in cfg) == (cls is GRU)
    assert ("recurrent_activation" in cfg) == (cls is not SimpleRNN)
    clone = cls.from_config(cfg)
    assert clone.get_config() == cfg
    clone(np.zeros((2, 3, 4), np.float32))
    assert len(clone.losses) == 1  # the kernel regularizer, on the cell's kernel


# ---- states, masks, dropout ------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", LAYERS)
def test_initial_state_and_mask(cls):
    B, T, F, U = 3, 6, 4, 5
    x = _x((B, T, F), 1)
    layer = cls(U, return_sequences=True, return_state=True, go_backwards=True)
    layer(x)
    ws = [w.astype(np.float64) for w in layer.get_weights()]
    h0, c0 = _x((B, U), 2), _x((B, U), 3)
    mask = np.random.default_rng(4).random((B, T)) > 0.4
    init = [h0, c0][:N_STATES[cls]]
    outs = layer(x, initial_state=init, mask=mask)
    seq, h, c = np_layer(cls, x.astype(np.float64), ws, mask=mask, go_backwards=True, h0=h0, c0=c0)
    for o, w in zip(outs, [seq, h, c]):
        np.testing.assert_allclose(o.numpy(), w, atol=2e-5)
    with pytest.raises(ValueError, match=rf"expected {N_STATES[cls]} initial state tensor"):
        layer(x, initial_state=init + [h0])


@pytest.mark.parametrize("cls", LAYERS)
def test_dropout_in_training_only(cls):
    x = _x((4, 5, 6), 5)
    layer = cls(3, dropout=0.5, recurrent_dropout=0.5, seed=1)
    plain = cls(3)
    plain(x)
    layer(x)
    layer.set_weights(plain.get_weights())
    np.testing.assert_array_equal(layer(x).numpy(), plain(x).numpy())  # inference: no dropout
    np.testing.assert_array_equal(layer(x, training=False).numpy(), plain(x).numpy())
    a, b = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    assert not np.allclose(a, plain(x).numpy()) and not np.allclose(a, b)  # new masks for every call
    # gradients flow through the dropped-out recurrence
    with lamina.GradientTape() as tape:
        loss = ops.sum(layer(x, training=True))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)


@pytest.mark.parametrize("cls", LAYERS)
def test_stateful_carries_states_between_calls(cls):
    B, T, F, U = 2, 3, 4, 5
    x1, x2 = _x((B, T, F), 6), _x((B, T, F), 7)
    stateful = cls(U, stateful=True)
    model = lamina.Sequential([lamina.Input(batch_shape=(B, T, F)), stateful])
    assert stateful.states is not None and len(stateful.states) == N_STATES[cls]
    assert len(stateful.weights) == 3  # the states are not weights (as in Keras)
    plain = cls(U, return_state=True)
    plain(x1)
    plain.set_weights(stateful.get_weights())
    model(x1)
    got = model(x2).numpy()
    first = plain(x1)
    want = plain(x2, initial_state=first[1:])[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    stateful.reset_states()
    np.testing.assert_array_equal(stateful.states[0].numpy(), np.zeros((B, U)))
    np.testing.assert_allclose(model(x2).numpy(), plain(x2)[0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match=r"stateful with batch size 2, but received inputs with batch size 3"):
        stateful(_x((3, T, F)))
    with pytest.raises(AttributeError, match="not stateful"):
        plain.reset_states()


def test_stateful_training_uses_the_forward_states():
    """The states are overwritten after the forward pass; the backward pass must still see the old ones."""
    B, T, F, U = 2, 4, 3, 3
    layer = LSTM(U, stateful=True, return_sequences=True)
    x = _x((B, T, F), 8)
    layer(x)
    h0, c0 = [s.numpy() for s in layer.states]
    with lamina.GradientTape() as tape:
        loss = ops.sum(layer(x) ** 2)
    g = tape.gradient(loss, layer.cell.recurrent_kernel).numpy()
    plain = LSTM(U, return_sequences=True)
    plain(x)
    plain.set_weights(layer.get_weights())
    with lamina.GradientTape() as tape:
        loss = ops.sum(plain(x, initial_state=[h0, c0]) ** 2)
    np.testing.assert_allclose(g, tape.gradient(loss, plain.cell.recurrent_kernel).numpy(), atol=1e-6)


def test_states_in_the_inputs_list_feed_a_functional_decoder():
    """seq2seq: an encoder's states reach the decoder as `decoder([sequence, h, c])`; training
    moves the encoder's weights too."""
    enc_in, dec_in = lamina.Input(shape=(None, 3)), lamina.Input(shape=(None, 4))
    encoder = LSTM(5, return_state=True)
    _, h, c = encoder(enc_in)
    decoder = LSTM(5, return_sequences=True)
    out = lamina.layers.Dense(2)(decoder([dec_in, h, c]))
    model = lamina.Model([enc_in, dec_in], out)
    x1, x2, y = _x((4, 6, 3), 20), _x((4, 3, 4), 21), _x((4, 3, 2), 22)
    _, eh, ec = encoder(x1)
    want = decoder(x2, initial_state=[eh, ec])
    dense = model.layers[-1]
    np.testing.assert_allclose(model.predict([x1, x2], verbose=0), dense(want).numpy(), atol=1e-5)
    before = encoder.get_weights()
    model.compile(optimizer="sgd", loss="mse")
    model.train_on_batch([x1, x2], y)
    assert all(not np.allclose(a, b) for a, b in zip(before, encoder.get_weights()))
    assert decoder.compute_output_shape([(None, 3, 4), (None, 5), (None, 5)]) == (None, 3, 5)
    with pytest.raises(ValueError, match="passed both in the inputs list and as initial_state="):
        decoder([x2, eh, ec], initial_state=[eh, ec])


@pytest.mark.parametrize("cls", LAYERS)
def test_compute_mask(cls):
    mask = np.array([[True, False]])
    assert cls(2).compute_mask(None, mask) is None
    assert cls(2, return_sequences=True).compute_mask(None, mask) is mask
    assert cls(2, return_sequences=True, return_state=True).compute_mask(None, mask) == \
        [mask] + [None] * N_STATES[cls]


def test_zero_output_for_mask():
    x = _x((2, 4, 3), 9)
    mask = np.array([[1, 1, 0, 1], [1, 0, 0, 0]], bool)
    layer = GRU(2, return_sequences=True, zero_output_for_mask=True, go_backwards=True)
    out = layer(x, mask=mask).numpy()
    np.testing.assert_array_equal(out[0, 1], 0)  # processing step 1 is time step 2, masked
    np.testing.assert_array_equal(out[1, :3], 0)
    assert np.all(out[1, 3] != 0)


def test_cells_run_one_step():
    x = _x((3, 4), 10)
    layer = LSTM(5, return_state=True)
    layer(x[:, None])
    h, (h2, c) = layer.cell(x, [np.zeros((3, 5), np.float32)] * 2)
    want = layer(x[:, None])
    np.testing.assert_allclose(h.numpy(), want[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(c.numpy(), want[2].numpy(), atol=1e-6)


def test_fit_learns_a_sequence_task():
    """An LSTM learns to output the sum of its input sequence (loss falls by 10x)."""
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (64, 6, 1)).astype(np.float32)
    y = x.sum(1)
    model = lamina.Sequential([lamina.Input(shape=(None, 1)), LSTM(12), lamina.layers.Dense(1)])
    model.compile(optimizer=lamina.optimizers.Adam(0.02), loss="mse")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=40, verbose=0)
    assert model.evaluate(x, y, verbose=0) < first / 10


# ---- other activations: the per-step cell instead of the fused kernel ----------------------------------

OTHER = [(LSTM, {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
         (LSTM, {"recurrent_activation": "tanh", "go_backwards": True}),
         (GRU, {"reset_after": False}), (GRU, {"activation": "softsign", "reset_after": False, "use_bias": False}),
         (GRU, {"recurrent_activation": "hard_sigmoid"}), (SimpleRNN, {"activation": "relu"})]


@pytest.mark.parametrize("cls,kw", OTHER)
def test_other_activations_match_numpy(cls, kw):
    B, T, F, U = 3, 5, 4, 4
    x = _x((B, T, F), 30)
    mask = np.random.default_rng(31).random((B, T)) > 0.3
    h0, c0 = _x((B, U), 32), _x((B, U), 33)
    layer = cls(U, return_sequences=True, return_state=True, **kw)
    layer(x)
    assert not layer._use_fused(False) and not layer._use_fused(True)
    rng = np.random.default_rng(34)
    ws = [w + rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in layer.get_weights()]
    layer.set_weights(ws)
    ws = [w.astype(np.float64) for w in ws]
    if len(ws) == 2:
        ws.append(np.zeros(3 * U))
    ref_kw = {k: kw[k] for k in ("activation", "recurrent_activation", "reset_after") if k in kw}
    init = [h0, c0][:N_STATES[cls]]
    for msk in (None, mask):
        seq, h, c = np_layer(cls, x.astype(np.float64), ws, mask=msk, go_backwards=kw.get("go_backwards", False),
                             h0=h0, c0=c0, **ref_kw)
        outs = layer(x, initial_state=init, mask=msk)
        for o, w in zip(outs, [seq, h, c]):
            np.testing.assert_allclose(o.numpy(), w, atol=2e-5)
    cfg = layer.get_config()
    for k, v in ref_kw.items():
        assert cfg[k] == v
    assert cls.from_config(cfg).get_config() == cfg
    with pytest.raises(ValueError, match=r"use_cudnn=True requires the fused sequence kernel"):
        cls(U, use_cudnn=True, **kw)(x)


@pytest.mark.parametrize("cls", LAYERS)
def test_use_cudnn_chooses_the_fused_kernel(cls):
    x = _x((2, 5, 3), 35)
    mask = np.array([[1, 1, 0, 1, 1], [1, 0, 0, 1, 0]], bool)
    auto, fused, per_step = cls(4, return_sequences=True), cls(4, return_sequences=True, use_cudnn=True), \
        cls(4, return_sequences=True, use_cudnn=False)
    assert auto._use_fused(False) and fused._use_fused(False) and not per_step._use_fused(False)
    auto(x)
    for layer in (fused, per_step):
        layer(x)
        layer.set_weights(auto.get_weights())
        np.testing.assert_allclose(layer(x, mask=mask).numpy(), auto(x, mask=mask).numpy(), atol=2e-6)
    with lamina.GradientTape() as tape:
        loss = ops.sum(per_step(x) ** 2)
    g_step = tape.gradient(loss, per_step.trainable_weights)
    with lamina.GradientTape() as tape:
        loss = ops.sum(auto(x) ** 2)
    for a, b in zip(g_step, tape.gradient(loss, auto.trainable_weights)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5)
    if cls is not SimpleRNN:  # recurrent dropout draws one mask per gate: the per-step cell in training
        layer = cls(4, recurrent_dropout=0.2, use_cudnn=True)
        layer(x)
        with pytest.raises(ValueError, match="use_cudnn=True requires"):
            layer(x, training=True)


def test_fit_with_relu_lstm():
    rng = np.random.default_rng(36)
    x = rng.uniform(-1, 1, (48, 5, 1)).astype(np.float32)
    y = x.sum(1)
    model = lamina.Sequential([lamina.Input(shape=(None, 1)), GRU(8, reset_after=False, return_sequences=True),
                               LSTM(8, activation="relu"), lamina.layers.Dense(1)])
    model.compile(optimizer=lamina.optimizers.Adam(0.02), loss="mse")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=20, verbose=0)
    assert model.evaluate(x, y, verbose=0) < first / 5


# ---- argument checks --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", LAYERS)
def test_argument_errors(cls):
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"{name}: `units` must be a positive integer, received units=0"):
        cls(0)
    with pytest.raises(ValueError, match="Unknown activation 'relux'"):
        cls(3, activation="relux")
    with pytest.raises(ValueError, match=rf"{name}: `dropout` must be a number in \[0, 1\), received dropout=1.5"):
        cls(3, dropout=1.5)
    with pytest.raises(ValueError, match=rf"{name}: `recurrent_dropout` must be a number in \[0, 1\)"):
        cls(3, recurrent_dropout=-0.1)
    with pytest.raises(TypeError, match="unrecognized keyword"):
        cls(3, unitz=4)
    layer = cls(3)
    layer(np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected ndim=3, found ndim=2.*\(2, 5\)"):
        layer(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected axis -1 of the input shape to have value 5, but received input with shape \(2, 4, 6\)"):
        layer(np.zeros((2, 4, 6), np.float32))
    with pytest.raises(ValueError, match=rf"{name}: `use_cudnn` must be 'auto', True or False"):
        cls(3, use_cudnn="yes")
    if cls is not SimpleRNN:
        with pytest.raises(ValueError, match=rf"{name}: `implementation` must be 1 or 2, received implementation=3"):
            cls(3, implementation=3)


# ---- parity with Keras 3 ------------------------------------------------------------------------------------

def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("kw", [{}, {"return_sequences": True}, {"return_state": True, "go_backwards": True},
                                {"return_sequences": True, "return_state": True, "go_backwards": True}])
def test_keras_same_weights_same_outputs(name, kw):
    keras = _keras()
    cls = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}[name]
    x = _x((3, 6, 4), 12)
    k, m = getattr(keras.layers, name)(5, **kw), cls(5, **kw)
    k(x)
    m(x)
    assert [w.shape for w in m.get_weights()] == [tuple(w.shape) for w in k.get_weights()]
    assert [w.path.split("/", 1)[1] for w in m.weights] == [w.path.split("/", 1)[1] for w in k.weights]
    rng = np.random.default_rng(13)
    ws = [w + rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in k.get_weights()]
    k.set_weights(ws)
    m.set_weights(ws)
    mask = rng.random((3, 6)) > 0.3
    for msk in (None, mask):
        ko, mo = k(x, mask=msk), m(x, mask=msk)
        ko = list(ko) if isinstance(ko, (list, tuple)) else [ko]
        mo = mo if isinstance(mo, (list, tuple)) else [mo]
        assert len(ko) == len(mo)
        for a, b in zip(ko, mo):
            np.testing.assert_allclose(b.numpy(), np.asarray(a), atol=2e-6)
    cfg = {k_: v for k_, v in k.get_config().items() if k_ != "dtype"}
    assert set(cfg) <= set(m.get_config())


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
def test_keras_training_steps_match(name):
    """Same weights, same SGD steps: the gradients agree with Keras's (jax autodiff)."""
    keras = _keras()
    cls = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}[name]

    def build(lib, layer_cls):
        return lib.Sequential([lib.Input(shape=(5, 3)), layer_cls(4, return_sequences=True, go_backwards=True),
                               layer_cls(3), lib.layers.Dense(2)])
    k, m = build(keras, getattr(keras.layers, name)), build(lamina, cls)
    m.set_weights(k.get_weights())
    k.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    m.compile(optimizer=lamina.optimizers.SGD(0.1), loss="mse")
    x, y = _x((8, 5, 3), 14), _x((8, 2), 15)
    k.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(m.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def test_keras_masking_from_embedding_matches():
    """Keras propagates Embedding(mask_zero=True)'s mask to the LSTM; lamina takes it as `mask=`."""
    keras = _keras()
    from lamina.layers.embedding import Embedding
    ids = np.array([[3, 1, 0, 0], [2, 2, 4, 0], [0, 0, 0, 0]], np.int32)
    ke, kl = keras.layers.Embedding(5, 3, mask_zero=True), keras.layers.LSTM(4, return_sequences=True)
    want = kl(ke(ids))
    me, ml = Embedding(5, 3, mask_zero=True), LSTM(4, return_sequences=True)
    me(ids)
    me.set_weights(ke.get_weights())
    ml(me(ids))
    ml.set_weights(kl.get_weights())
    got = ml(me(ids), mask=me.compute_mask(ids))
    np.testing.assert_allclose(got.numpy(), np.asarray(want), atol=2e-6)


def _file_models(lib, lstm, gru, rnn):
    return lib.Sequential([lib.Input(shape=(4, 3)), lstm(5, return_sequences=True), gru(4, return_sequences=True),
                           rnn(3)])


def test_keras_legacy_h5_weights_move_both_ways(tmp_path):
    keras = _keras()
    x = _x((2, 4, 3), 16)
    k = _file_models(keras, keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
    k.save(str(tmp_path / "k.h5"))
    m = _file_models(lamina, LSTM, GRU, SimpleRNN)
    m.load_weights(str(tmp_path / "k.h5"))
    np.testing.assert_allclose(m.predict(x, verbose=0), k.predict(x, verbose=0), atol=1e-5)
    m2 = _file_models(lamina, LSTM, GRU, SimpleRNN)
    m2.save_weights(str(tmp_path / "l.h5"))
    k2 = _file_models(keras, keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
    k2.load_weights(str(tmp_path / "l.h5"))
    np.testing.assert_allclose(k2.predict(x, verbose=0), m2.predict(x, verbose=0), atol=1e-5)


def test_keras_v3_weights_file():
    keras = _keras()
    import tempfile
    x = _x((2, 4, 3), 17)
    k = _file_models(keras, keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
    with tempfile.TemporaryDirectory() as d:
        k.save_weights(os.path.join(d, "k.weights.h5"))
        m = _file_models(lamina, LSTM, GRU, SimpleRNN)
        m.load_weights(os.path.join(d, "k.weights.h5"))
    np.testing.assert_allclose(m.predict(x, verbose=0), k.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("name,kw", [("LSTM", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
                                     ("GRU", {"reset_after": False}), ("GRU", {"activation": "softsign"}),
                                     ("SimpleRNN", {"activation": "relu"})])
def test_keras_other_activations_match(name, kw):
    keras = _keras()
    cls = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}[name]
    x = _x((3, 6, 4), 37)
    k = getattr(keras.layers, name)(5, return_sequences=True, return_state=True, go_backwards=True, **kw)
    m = cls(5, return_sequences=True, return_state=True, go_backwards=True, **kw)
    k(x)
    m(x)
    assert [w.shape for w in m.get_weights()] == [tuple(w.shape) for w in k.get_weights()]
    rng = np.random.default_rng(38)
    ws = [w + rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in k.get_weights()]
    k.set_weights(ws)
    m.set_weights(ws)
    mask = rng.random((3, 6)) > 0.3
    for msk in (None, mask):
        for a, b in zip(k(x, mask=msk), m(x, mask=msk)):
            np.testing.assert_allclose(b.numpy(), np.asarray(a), atol=5e-6)
    cfg = {k_: v for k_, v in k.get_config().items() if k_ != "dtype"}
    mcfg = m.get_config()
    assert set(cfg) <= set(mcfg)
    for key in ("activation", "recurrent_activation", "reset_after"):
        assert cfg.get(key) == mcfg.get(key)


def test_cells_live_in_rnn_cells_and_import_from_recurrent():
    from lamina.layers import rnn_cells, recurrent
    for name in ("SimpleRNNCell", "LSTMCell", "GRUCell", "StackedRNNCells"):
        assert getattr(recurrent, name) is getattr(rnn_cells, name) is getattr(lamina.layers, name)


@pytest.mark.parametrize("cls,units", [(SimpleRNN, 2 ** 30), (LSTM, 2 ** 40), (GRU, 2 ** 40)])
def test_huge_units_fail_before_any_weight_is_allocated(cls, units):
    """2**30 SimpleRNN units: a 12 GiB kernel would fit some machines, the recurrent kernel none;
    every size is checked before the first allocation."""
    name = cls.__name__
    with pytest.raises(MemoryError, match=rf"{name} '.*': {name}Cell '.*': weight '(kernel|recurrent_kernel)'"):
        cls(units)(np.ones((1, 2, 3), np.float32))
