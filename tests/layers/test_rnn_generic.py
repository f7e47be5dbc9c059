"""layers/recurrent.py: the generic recurrent API -- RNN(cell) with the built-in cells, a list of
cells / StackedRNNCells, user-written cells; masks, initial states, go_backwards, return_state,
stateful; the per-step path against numpy and against the fused kernels; gradients; dropout;
saving; errors; and parity with Keras 3 (when installed)."""
import numpy as np
import pytest

import lamina
from lamina import layers, ops
from lamina.layers.recurrent import (GRU, LSTM, RNN, DropoutRNNCell, GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells,
                                     _flatten)
from keras_ref import keras_or_none


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _sig(v):
    return 0.5 * (1 + np.tanh(0.5 * v))


ACTS = {"tanh": np.tanh, "sigmoid": _sig, "relu": lambda v: np.maximum(v, 0.0),
        "hard_sigmoid": lambda v: np.clip((v + 3.0) / 6.0, 0.0, 1.0), "softsign": lambda v: v / (1 + np.abs(v)),
        "linear": lambda v: v}


def np_step(kind, x, states, ws, act="tanh", ract="sigmoid", reset_after=True):
    """One step of Keras's cell maths in float64: (output, new states)."""
    a, ra = ACTS[act], ACTS[ract]
    k, r = ws[0], ws[1]
    b = ws[2] if len(ws) > 2 else None
    if kind == "lstm":
        h, c = states
        U = h.shape[1]
        z = x @ k + h @ r + (0 if b is None else b)
        c = ra(z[:, U:2 * U]) * c + ra(z[:, :U]) * a(z[:, 2 * U:3 * U])
        h = ra(z[:, 3 * U:]) * a(c)
        return h, [h, c]
    if kind == "gru":
        h = states[0]
        U = h.shape[1]
        if reset_after:
            bi, br = (0, 0) if b is None else (b[0], b[1])
            mx, mi = x @ k + bi, h @ r + br
            z, rr = ra(mx[:, :U] + mi[:, :U]), ra(mx[:, U:2 * U] + mi[:, U:2 * U])
            hh = a(mx[:, 2 * U:] + rr * mi[:, 2 * U:])
        else:
            mx = x @ k + (0 if b is None else b)
            z, rr = ra(mx[:, :U] + h @ r[:, :U]), ra(mx[:, U:2 * U] + h @ r[:, U:2 * U])
            hh = a(mx[:, 2 * U:] + (rr * h) @ r[:, 2 * U:])
        h = z * h + (1 - z) * hh
        return h, [h]
    h = a(x @ k + (0 if b is None else b) + states[0] @ r)
    return h, [h]


def np_rnn(step, x, states, mask=None, go_backwards=False, zero_output_for_mask=False, fill_state=0):
    """Keras 3's (JAX backend) recurrence: a masked step keeps the states and outputs the state
    `fill_state` (or zeros; or, when that state is not output-shaped, the previous output).
    Returns (outputs in processing order, last output, last states)."""
    x = x.astype(np.float64)
    states = [np.asarray(s, np.float64) for s in states]
    outs = []
    T = x.shape[1]
    for t in (range(T - 1, -1, -1) if go_backwards else range(T)):
        out, new = step(x[:, t], states)
        if mask is not None:
            m = mask[:, t, None]
            fill = states[fill_state]
            if zero_output_for_mask or fill.shape != out.shape:
                fill = outs[-1] if outs and not zero_output_for_mask else np.zeros_like(out)
            out = np.where(m, out, fill)
            new = [np.where(m, n, s) for n, s in zip(new, states)]
        states = new
        outs.append(out)
    return np.stack(outs, 1), outs[-1], states


KINDS = {"lstm": (LSTMCell, 2, 4), "gru": (GRUCell, 1, 3), "simple": (SimpleRNNCell, 1, 1)}


def _random_weights(layer, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal(w.shape).astype(np.float32) * scale for w in layer.get_weights()]
    layer.set_weights(ws)
    return [w.astype(np.float64) for w in ws]


class PlainLSTMCell(LSTMCell):
    """A subclass: the RNN runs it step by step (only the exact built-in cells take the fused op)."""


class PlainGRUCell(GRUCell):
    pass


class PlainSimpleRNNCell(SimpleRNNCell):
    pass


PLAIN = {"lstm": PlainLSTMCell, "gru": PlainGRUCell, "simple": PlainSimpleRNNCell}


@lamina.saving.register_keras_serializable(package="RNNGenericTest")
class MinimalRNNCell(layers.Layer):
    """Keras's documentation example: output = x K + h R, one state."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units), initializer="uniform",
                                                name="recurrent_kernel")

    def call(self, inputs, states):
        out = ops.matmul(inputs, self.kernel) + ops.matmul(states[0], self.recurrent_kernel)
        return out, [out]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@lamina.saving.register_keras_serializable(package="RNNGenericTest")
class CountingCell(layers.Layer):
    """Two states of different sizes, an output of a third size, a non-zero initial state and a
    `training` argument: h = tanh(x K + h R), n = n + 1; output = [h, n[:, :1]] * (2 in training)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, 2]
        self.output_size = units + 1

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units), name="recurrent_kernel")

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.units)), ops.ones((batch_size, 2))]

    def call(self, inputs, states, training=None):
        h = ops.tanh(ops.matmul(inputs, self.kernel) + ops.matmul(states[0], self.recurrent_kernel))
        n = states[1] + 1.0
        out = ops.concatenate([h, n[:, :1]], axis=-1)
        return (out * 2.0 if training else out), [h, n]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def np_counting(ws):
    def step(x, states):
        h = np.tanh(x @ ws[0] + states[0] @ ws[1])
        n = states[1] + 1
        return np.concatenate([h, n[:, :1]], -1), [h, n]
    return step


# ---- the built-in cells in RNN, against numpy ----------------------------------------------------------

CELL_CASES = [("lstm", {}), ("gru", {}), ("simple", {}),
              ("lstm", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
              ("gru", {"reset_after": False}), ("gru", {"activation": "softsign", "recurrent_activation": "tanh"}),
              ("simple", {"activation": "relu", "use_bias": False})]


@pytest.mark.parametrize("kind,cell_kw", CELL_CASES)
def test_builtin_cells_in_rnn_match_numpy(kind, cell_kw):
    B, T, F, U = 3, 5, 4, 4
    cls, n_states, _ = KINDS[kind]
    x = _x((B, T, F), 1)
    mask = np.random.default_rng(2).random((B, T)) > 0.35
    init = [_x((B, U), 3 + i) for i in range(n_states)]
    layer = RNN(cls(U, **cell_kw), return_sequences=True, return_state=True, go_backwards=True)
    layer(x)
    ws = _random_weights(layer, 4)
    act = cell_kw.get("activation", "tanh")
    ract = cell_kw.get("recurrent_activation", "sigmoid")

    def step(xt, st):
        return np_step(kind, xt, st, ws, act, ract, cell_kw.get("reset_after", True))
    for m in (None, mask):
        seq, _, last = np_rnn(step, x, init, mask=m, go_backwards=True)
        outs = layer(x, initial_state=init, mask=m)
        assert len(outs) == 1 + n_states
        for got, want in zip(outs, [seq] + last):
            np.testing.assert_allclose(got.numpy(), want, atol=2e-5)
    # zero_output_for_mask: masked steps output zeros; the last output is the last step's
    layer.zero_output_for_mask = True
    seq, last_out, _ = np_rnn(step, x, init, mask=mask, go_backwards=True, zero_output_for_mask=True)
    np.testing.assert_allclose(layer(x, initial_state=init, mask=mask)[0].numpy(), seq, atol=2e-5)
    layer.return_sequences = False
    np.testing.assert_allclose(layer(x, initial_state=init, mask=mask)[0].numpy(), last_out, atol=2e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple"])
def test_per_step_path_equals_the_fused_kernel(kind):
    """The step-by-step loop and the fused op compute the same values and gradients."""
    B, T, F, U = 2, 4, 3, 3
    cls, n_states, _ = KINDS[kind]
    x = _x((B, T, F), 5)
    mask = np.array([[1, 1, 0, 1], [0, 1, 1, 0]], bool)
    init = [_x((B, U), 6 + i) for i in range(n_states)]
    fused = RNN(cls(U), return_sequences=True, return_state=True, go_backwards=True)
    plain = RNN(PLAIN[kind](U), return_sequences=True, return_state=True, go_backwards=True)
    fused(x)
    plain(x)
    plain.set_weights(fused.get_weights())
    assert fused._use_fused(True) and not plain._use_fused(False)
    results = []
    for layer in (fused, plain):
        xt = lamina.convert_to_tensor(x)
        h0 = [lamina.Variable(s) for s in init]
        with lamina.GradientTape() as tape:
            tape.watch(xt)
            outs = layer(xt, initial_state=h0, mask=mask)
            loss = sum(ops.sum(o * (i + 1.0)) for i, o in enumerate(outs))
        grads = tape.gradient(loss, [xt] + h0 + layer.trainable_weights)
        results.append([o.numpy() for o in outs] + [g.numpy() for g in grads])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=2e-5)


# ---- gradients against finite differences --------------------------------------------------------------

def _numeric_grad(f, arrays, i, eps=1e-5):
    a = arrays[i]
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        fp = f(*arrays)
        a[idx] = old - eps
        fm = f(*arrays)
        a[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


@pytest.mark.parametrize("kind,cell_kw", [("lstm", {"activation": "softsign"}),
                                          ("gru", {"reset_after": False, "activation": "softsign"}),
                                          ("user", {})])
def test_per_step_gradients_match_finite_differences(kind, cell_kw):
    B, T, F, U = 2, 4, 3, 3
    x = _x((B, T, F), 9)
    mask = np.array([[1, 0, 1, 1], [1, 1, 1, 0]], bool)
    if kind == "user":
        layer = RNN(CountingCell(U), return_sequences=True, return_state=True, go_backwards=True)
        n_states = 2
    else:
        layer = RNN(KINDS[kind][0](U, **cell_kw), return_sequences=True, return_state=True, go_backwards=True)
        n_states = KINDS[kind][1]
    layer(x)
    ws = _random_weights(layer, 10)
    wout = [np.random.default_rng(11 + i).standard_normal(s) for i, s in
            enumerate([(B, T, U + (kind == "user"))] + [(B, U)] + [(B, 2 if kind == "user" else U)] * (n_states - 1))]

    def loss_np(xv, *weights):
        if kind == "user":
            step, init = np_counting(weights), [np.zeros((B, U)), np.ones((B, 2))]
        else:
            step = lambda xt, st: np_step(kind, xt, st, list(weights), cell_kw.get("activation", "tanh"),  # noqa: E731
                                          reset_after=cell_kw.get("reset_after", True))
            init = [np.zeros((B, U))] * n_states
        seq, _, last = np_rnn(step, xv, init, mask=mask, go_backwards=True, fill_state=0)
        return sum(float(np.sum(o * w)) for o, w in zip([seq] + last, wout))
    xt = lamina.convert_to_tensor(x)
    with lamina.GradientTape() as tape:
        tape.watch(xt)
        outs = layer(xt, mask=mask)
        loss = sum(ops.sum(o * w.astype(np.float32)) for o, w in zip(outs, wout))
    grads = tape.gradient(loss, [xt] + layer.trainable_weights)
    arrays = [x.astype(np.float64)] + ws
    np.testing.assert_allclose(float(loss.numpy()), loss_np(*arrays), rtol=1e-4, atol=1e-4)
    for i, g in enumerate(grads):
        np.testing.assert_allclose(g.numpy(), _numeric_grad(loss_np, arrays, i), atol=2e-3, rtol=2e-3)


# ---- user cells ------------------------------------------------------------------------------------------

def test_user_cell_states_outputs_and_masks():
    B, T, F, U = 3, 5, 2, 4
    x = _x((B, T, F), 12)
    layer = RNN(CountingCell(U), return_sequences=True, return_state=True)
    outs = layer(x)
    assert [o.shape for o in outs] == [(B, T, U + 1), (B, U), (B, 2)]
    assert layer.compute_output_shape((None, T, F)) == [(None, T, U + 1), (None, U), (None, 2)]
    assert layer.state_size == [U, 2]
    ws = [w.astype(np.float64) for w in layer.get_weights()]
    init = [np.zeros((B, U)), np.ones((B, 2))]
    seq, _, last = np_rnn(np_counting(ws), x, init)
    for got, want in zip(outs, [seq] + last):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    np.testing.assert_allclose(outs[2].numpy(), np.full((B, 2), T + 1.0))  # get_initial_state's ones, + T
    # the output is not state-shaped: a masked step repeats the previous output (zeros at first)
    mask = np.array([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    got = layer(x, mask=mask)
    seq, _, last = np_rnn(np_counting(ws), x, init, mask=mask)
    np.testing.assert_array_equal(seq[0, 0], 0)
    np.testing.assert_array_equal(seq[1, 2:], np.repeat(seq[1, 1:2], 3, 0))
    for a, b in zip(got, [seq] + last):
        np.testing.assert_allclose(a.numpy(), b, atol=1e-5)
    np.testing.assert_allclose(got[2].numpy()[:, 0], 1 + mask.sum(1))
    # `training` reaches the cell
    np.testing.assert_allclose(layer(x, training=True)[0].numpy(), 2 * outs[0].numpy(), atol=1e-6)


def test_user_cell_in_a_functional_model_trains():
    rng = np.random.default_rng(13)
    x = rng.uniform(-1, 1, (32, 6, 2)).astype(np.float32)
    y = x.sum(1)
    inp = lamina.Input(shape=(None, 2))
    h = RNN(MinimalRNNCell(8), return_sequences=True)(inp)
    h = RNN(LSTMCell(8, activation="relu"))(h)
    model = lamina.Model(inp, layers.Dense(2)(h))
    assert model.output_shape == (None, 2)
    np.testing.assert_allclose(model.predict(x[:4], verbose=0), model(x[:4]).numpy(), atol=1e-6)
    model.compile(optimizer=lamina.optimizers.Adam(0.02), loss="mse")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=8, epochs=25, verbose=0)
    assert model.evaluate(x, y, verbose=0) < first / 5


def test_a_cell_that_is_not_a_layer():
    class Accumulate:
        state_size = 3

        def call(self, inputs, states):
            s = states[0] + inputs
            return s, [s]
    x = _x((2, 4, 3), 14)
    out = RNN(Accumulate(), return_sequences=True)(x)
    np.testing.assert_allclose(out.numpy(), np.cumsum(x, 1), atol=1e-6)


# ---- stacked cells --------------------------------------------------------------------------------------

def test_stacked_cells_states_shapes_and_paths():
    B, T, F = 2, 4, 3
    x = _x((B, T, F), 15)
    layer = RNN([LSTMCell(5), GRUCell(3, reset_after=False), MinimalRNNCell(2)], return_sequences=True,
                return_state=True, name="stack")
    assert isinstance(layer.cell, StackedRNNCells)
    assert layer.state_size == [[5, 5], 3, 2] and layer.cell.output_size == 2
    outs = layer(x)
    assert outs[0].shape == (B, T, 2)
    assert [o.shape for o in outs[1]] == [(B, 5), (B, 5)] and outs[2].shape == (B, 3) and outs[3].shape == (B, 2)
    assert layer.compute_output_shape((None, T, F)) == [(None, T, 2), [(None, 5), (None, 5)], (None, 3), (None, 2)]
    cells = layer.cell.cells
    assert [w.path for w in layer.weights][:4] == [f"stack/stacked_rnn_cells/{cells[0].name}/kernel",
                                                   f"stack/stacked_rnn_cells/{cells[0].name}/recurrent_kernel",
                                                   f"stack/stacked_rnn_cells/{cells[0].name}/bias",
                                                   f"stack/stacked_rnn_cells/{cells[1].name}/kernel"]
    # numpy: the cells one after the other; a masked step keeps every state, outputs the last cell's state
    ws = _random_weights(layer, 16)
    mask = np.array([[1, 0, 1, 1], [1, 1, 0, 0]], bool)

    def step(xt, st):
        h1, (h, c) = np_step("lstm", xt, st[:2], ws[:3])
        h2, (g,) = np_step("gru", h1, st[2:3], ws[3:6], reset_after=False)
        h3 = h2 @ ws[6] + st[3] @ ws[7]
        return h3, [h, c, g, h3]
    init = [_x((B, 5), 17), _x((B, 5), 18), _x((B, 3), 19), _x((B, 2), 20)]
    seq, _, last = np_rnn(step, x, init, mask=mask, fill_state=3)
    for form in (init, [init[:2], init[2], init[3]]):  # flat, or one entry per cell
        got = layer(x, initial_state=form, mask=mask)
        for a, b in zip([got[0], *got[1], got[2], got[3]], [seq] + last):
            np.testing.assert_allclose(a.numpy(), b, atol=2e-5)
    # the stack as one cell, called directly
    out, states = layer.cell(x[:, 0], [[init[0], init[1]], init[2], init[3]])
    np.testing.assert_allclose(out.numpy(), step(x[:, 0].astype(np.float64), init)[0], atol=2e-5)
    assert len(states) == 3 and len(states[0]) == 2


def test_stacked_cells_equal_stacked_layers():
    x = _x((3, 5, 4), 21)
    stacked = RNN(StackedRNNCells([LSTMCell(4), LSTMCell(3)]))
    l1, l2 = LSTM(4, return_sequences=True), LSTM(3)
    stacked(x)
    l2(l1(x))
    stacked.set_weights(l1.get_weights() + l2.get_weights())
    np.testing.assert_allclose(stacked(x).numpy(), l2(l1(x)).numpy(), atol=2e-6)


# ---- stateful, dropout ---------------------------------------------------------------------------------

def test_stateful_user_and_stacked_cells():
    B, T, F = 2, 3, 2
    x1, x2 = _x((B, T, F), 22), _x((B, T, F), 23)
    for cell_fn in (lambda: CountingCell(3), lambda: [LSTMCell(3), GRUCell(2)]):
        stateful = RNN(cell_fn(), stateful=True, return_state=True)
        plain = RNN(cell_fn(), return_state=True)
        plain(x1)
        stateful.build((B, T, F))  # the states start as the cell's get_initial_state gives them
        assert len(_flatten(stateful.states)) == len(_flatten(stateful.state_size))
        assert len(stateful.weights) == len(plain.weights)  # the states are not weights
        stateful.set_weights(plain.get_weights())
        first, want_first = stateful(x1), plain(x1)
        for a, b in zip(_flatten(first), _flatten(want_first)):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
        for v, s in zip(_flatten(stateful.states), _flatten(want_first[1:])):
            np.testing.assert_allclose(v.numpy(), s.numpy(), atol=1e-6)
        got = stateful(x2)[0].numpy()
        np.testing.assert_allclose(got, plain(x2, initial_state=want_first[1:])[0].numpy(), atol=1e-6)
        # reset: zeros, as Keras's reset_state (not the cell's initial state)
        stateful.reset_states()
        zeros = [np.zeros((B, d), np.float32) for d in _flatten(stateful.state_size)]
        np.testing.assert_allclose(stateful(x2)[0].numpy(), plain(x2, initial_state=zeros)[0].numpy(), atol=1e-6)
        with pytest.raises(ValueError, match=r"stateful with batch size 2, but received inputs with batch size 3"):
            stateful(_x((3, T, F)))


def test_dropout_masks_are_drawn_once_per_sequence():
    """dropout=0.5 on a linear cell with identity kernel, zero recurrence: every step's output is
    the same mask (0 or 2) times the ones input, and a new mask comes with every call."""
    T = 6
    cell = PlainSimpleRNNCell(8, activation="linear", dropout=0.5, seed=3)
    layer = RNN(cell, return_sequences=True)
    x = np.ones((4, T, 8), np.float32)
    layer(x)
    layer.set_weights([np.eye(8, dtype=np.float32), np.zeros((8, 8), np.float32), np.zeros(8, np.float32)])
    a = layer(x, training=True).numpy()
    assert set(np.unique(a)) <= {0.0, 2.0} and 0 < (a == 0).mean() < 1
    for t in range(1, T):
        np.testing.assert_array_equal(a[:, t], a[:, 0])
    b = layer(x, training=True).numpy()
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(layer(x).numpy(), x)  # inference: no dropout
    assert cell._dropout_mask is None  # reset after each call


def test_recurrent_dropout_draws_one_mask_per_gate():
    cell = LSTMCell(4, dropout=0.3, recurrent_dropout=0.3, seed=1)
    assert isinstance(cell, DropoutRNNCell) and cell.implementation == 1 and cell.dropout_mask_count == 4
    masks = cell.get_recurrent_dropout_mask(ops.ones((2, 4)))
    assert len(masks) == 4 and not all(np.array_equal(masks[0].numpy(), m.numpy()) for m in masks[1:])
    cell.reset_recurrent_dropout_mask()
    layer = RNN(cell)
    x = _x((2, 5, 3), 24)
    layer(x)
    plain = RNN(LSTMCell(4))
    plain(x)
    plain.set_weights(layer.get_weights())
    np.testing.assert_allclose(layer(x).numpy(), plain(x).numpy(), atol=1e-6)
    with lamina.GradientTape() as tape:
        loss = ops.sum(layer(x, training=True))
    assert not np.allclose(loss.numpy(), ops.sum(plain(x)).numpy())
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    # the LSTM layer in training with recurrent_dropout runs the same per-gate cell (not the fused op)
    lstm = LSTM(4, recurrent_dropout=0.3)
    assert not lstm._use_fused(True) and lstm._use_fused(False)
    assert LSTM(4, dropout=0.3)._use_fused(True)


# ---- config and saving -----------------------------------------------------------------------------------

def test_config_round_trip():
    for layer in (RNN(LSTMCell(3, activation="relu"), return_sequences=True, go_backwards=True, unroll=True,
                      zero_output_for_mask=True, name="r"),
                  RNN([GRUCell(3, reset_after=False), MinimalRNNCell(2)], stateful=True),
                  RNN(CountingCell(2), return_state=True)):
        cfg = layer.get_config()
        assert {"return_sequences", "return_state", "go_backwards", "stateful", "unroll", "zero_output_for_mask",
                "cell", "name"} <= set(cfg)
        clone = RNN.from_config(cfg)
        assert clone.get_config() == cfg
        assert clone.cell is not layer.cell and type(clone.cell) is type(layer.cell)
        restored = layers.deserialize(layers.serialize(layer))
        assert restored.get_config() == cfg
    assert StackedRNNCells.from_config(StackedRNNCells([LSTMCell(2)]).get_config()).cells[0].units == 2


def _saving_model():
    inp = lamina.Input(shape=(4, 3))
    h = RNN(MinimalRNNCell(5), return_sequences=True)(inp)
    h = RNN([LSTMCell(4, recurrent_activation="hard_sigmoid"), GRUCell(3)], go_backwards=True)(h)
    return lamina.Model(inp, layers.Dense(2)(h))


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_model_with_cells_saves_and_loads(tmp_path, ext):
    x = _x((2, 4, 3), 25)
    model = _saving_model()
    want = model.predict(x, verbose=0)
    path = str(tmp_path / f"m{ext}")
    model.save(path)
    loaded = lamina.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), want, atol=1e-6)
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]


def test_unregistered_cell_needs_custom_objects(tmp_path):
    class LocalCell(MinimalRNNCell):
        pass
    x = _x((2, 3, 2), 26)
    model = lamina.Sequential([lamina.Input((3, 2)), RNN(LocalCell(3))])
    path = str(tmp_path / "m.keras")
    model.save(path)
    with pytest.raises(ValueError, match="LocalCell"):
        lamina.models.load_model(path)
    loaded = lamina.models.load_model(path, custom_objects={"LocalCell": LocalCell})
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_rnn_of_lstm_cell_shares_weights_with_lstm(tmp_path):
    x = _x((2, 5, 3), 27)
    a = lamina.Sequential([lamina.Input((5, 3)), LSTM(4, return_sequences=True), GRU(2)])
    b = lamina.Sequential([lamina.Input((5, 3)), RNN(LSTMCell(4), return_sequences=True), RNN(GRUCell(2))])
    assert [w.shape for w in a.weights] == [w.shape for w in b.weights]
    b.set_weights(a.get_weights())
    np.testing.assert_allclose(b.predict(x, verbose=0), a.predict(x, verbose=0), atol=1e-6)
    # a legacy '.h5' weights file is matched by layer order (a '.weights.h5' one by layer class,
    # as in Keras: lstm/cell is not rnn/cell)
    c = lamina.Sequential([lamina.Input((5, 3)), RNN(LSTMCell(4), return_sequences=True), RNN(GRUCell(2))])
    a.save_weights(str(tmp_path / "w.h5"))
    c.load_weights(str(tmp_path / "w.h5"))
    np.testing.assert_allclose(c.predict(x, verbose=0), a.predict(x, verbose=0), atol=1e-6)


def test_bidirectional_rnn_of_a_cell():
    x = _x((2, 4, 3), 28)
    bi = layers.Bidirectional(RNN(LSTMCell(3, activation="relu"), return_sequences=True))
    out = bi(x)
    assert out.shape == (2, 4, 6)
    assert bi.backward_layer.go_backwards and bi.forward_layer.cell is not bi.backward_layer.cell


# ---- errors -------------------------------------------------------------------------------------------

def test_errors():
    class NoState(layers.Layer):
        def call(self, inputs, states):
            return inputs, states
    with pytest.raises(ValueError, match=r"RNN: the cell NoState '.*' has no `state_size` attribute.*"
                                         r"self.state_size = units"):
        RNN(NoState())
    with pytest.raises(ValueError, match=r"RNN: a cell needs a `call\(inputs, states, training=None\)` method"):
        RNN(object())

    class BadSize(NoState):
        state_size = [4, "4"]
    with pytest.raises(ValueError, match=r"`state_size` of the cell BadSize .* must be a positive integer or a "
                                         r"non-empty list of positive integers.*\[4, '4'\]"):
        RNN(BadSize())
    with pytest.raises(ValueError, match=r"StackedRNNCells: the cell NoState .* has no `state_size`"):
        RNN([LSTMCell(2), NoState()])
    with pytest.raises(ValueError, match=r"StackedRNNCells: `cells` must be a non-empty list"):
        StackedRNNCells([])

    x = _x((2, 4, 3), 29)
    layer = RNN(LSTMCell(5))
    with pytest.raises(ValueError, match=r"expected 2 initial state tensor\(s\) for the cell LSTMCell .*"
                                         r"\(batch, 5\), \(batch, 5\).*received 1"):
        layer(x, initial_state=[np.zeros((2, 5), np.float32)])
    with pytest.raises(ValueError, match=r"initial state 1 must have shape \(batch, 5\) = \(2, 5\).*received shape "
                                         r"\(2, 4\)"):
        layer(x, initial_state=[np.zeros((2, 5), np.float32), np.zeros((2, 4), np.float32)])
    with pytest.raises(ValueError, match=r"initial state 0 must have shape \(batch, 5\) = \(2, 5\).*\(3, 5\)"):
        layer(x, initial_state=[np.zeros((3, 5), np.float32)] * 2)
    with pytest.raises(ValueError, match=r"expected a mask of shape \(batch, timesteps\) = \(2, 4\), received "
                                         r"shape \(2, 3\)"):
        layer(x, mask=np.ones((2, 3), bool))

    class WrongStates(MinimalRNNCell):
        def call(self, inputs, states):
            out = ops.matmul(inputs, self.kernel)
            return out, [out, out]
    with pytest.raises(ValueError, match=r"the cell WrongStates .* returned 2 state tensor\(s\), expected 1"):
        RNN(WrongStates(3))(x)

    class WideOutput(MinimalRNNCell):
        def call(self, inputs, states):
            out = ops.matmul(inputs, self.kernel)
            return ops.concatenate([out, out], -1), [out]
    with pytest.raises(ValueError, match=r"returned outputs of shape \(2, 6\), but its output_size .* is 3. Set "
                                         r"`output_size`"):
        RNN(WideOutput(3))(x)
    with pytest.raises(ValueError, match=r"cannot unroll an RNN whose number of time steps is unknown"):
        RNN(LSTMCell(2), unroll=True)(lamina.Input((None, 3)))
    with pytest.raises(ValueError, match=r"LSTMCell '.*': expected 2 state tensor\(s\) \(\[h, c\]"):
        LSTMCell(2)(x[:, 0], [np.zeros((2, 2), np.float32)])
    with pytest.raises(ValueError, match=r"LSTMCell: `activation`: Unknown activation 'tanhh'"):
        LSTMCell(2, activation="tanhh")


# ---- parity with Keras 3 ----------------------------------------------------------------------------------

def _keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras 3 is not installed: no reference to compare with")
    return keras


def _keras_flat(out):
    import keras
    return [np.asarray(t) for t in keras.tree.flatten(out)]


def _lamina_flat(out):
    return [t.numpy() for t in _flatten(out if isinstance(out, list) else [out])]


def _keras_minimal_cell(keras):
    class MinimalRNNCell(keras.layers.Layer):  # noqa: F811 (the Keras twin of the lamina cell)
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="uniform", name="kernel")
            self.recurrent_kernel = self.add_weight(shape=(self.units, self.units), initializer="uniform",
                                                    name="recurrent_kernel")

        def call(self, inputs, states):
            out = keras.ops.matmul(inputs, self.kernel) + keras.ops.matmul(states[0], self.recurrent_kernel)
            return out, [out]
    return MinimalRNNCell


KERAS_CELLS = [("LSTMCell", {}), ("GRUCell", {}),
               ("LSTMCell", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
               ("GRUCell", {"reset_after": False}), ("GRUCell", {"recurrent_activation": "tanh", "use_bias": False}),
               ("SimpleRNNCell", {"activation": "relu"}), ("stacked", {}), ("user", {})]


@pytest.mark.parametrize("name,cell_kw", KERAS_CELLS)
@pytest.mark.parametrize("kw", [{"return_sequences": True, "return_state": True, "go_backwards": True},
                                {"return_state": True, "zero_output_for_mask": True}])
def test_keras_same_weights_same_outputs(name, cell_kw, kw):
    keras = _keras()
    x = _x((3, 6, 4), 30)

    def make(lib):
        if name == "stacked":
            return lib.layers.RNN([lib.layers.LSTMCell(4), lib.layers.GRUCell(3, reset_after=False),
                                   lib.layers.SimpleRNNCell(2, activation="relu")], **kw)
        if name == "user":
            cell = _keras_minimal_cell(keras)(4) if lib is keras else MinimalRNNCell(4)
            return lib.layers.RNN(cell, **kw)
        return lib.layers.RNN(getattr(lib.layers, name)(5, **cell_kw), **kw)
    k, m = make(keras), make(lamina)
    k(x)
    m(x)
    assert [w.shape for w in m.get_weights()] == [tuple(w.shape) for w in k.get_weights()]
    # the same paths, up to the automatic names (counted from different starts in each library)
    def strip(path):
        return [part.rstrip("_0123456789") for part in path.split("/")]
    assert [strip(w.path) for w in m.weights] == [strip(w.path) for w in k.weights]
    rng = np.random.default_rng(31)
    ws = [w + rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in k.get_weights()]
    k.set_weights(ws)
    m.set_weights(ws)
    mask = rng.random((3, 6)) > 0.3
    n_states = len(_flatten(m.state_size))
    init = [rng.standard_normal(s).astype(np.float32) for s in
            [(3, d) for d in _flatten(m.state_size)]]
    k_init = init if name != "stacked" else [init[:2], [init[2]], [init[3]]]
    for msk, ini in ((None, None), (mask, init)):
        call_kw = {"mask": msk} if ini is None else {"mask": msk, "initial_state": ini}
        ko = _keras_flat(k(x, **({"mask": msk} if ini is None else {"mask": msk, "initial_state": k_init})))
        mo = _lamina_flat(m(x, **call_kw))
        assert len(ko) == len(mo) == 1 + n_states
        for a, b in zip(ko, mo):
            np.testing.assert_allclose(b, a, atol=5e-6)
    cfg = {k_: v for k_, v in k.get_config().items() if k_ not in ("dtype", "cell")}
    assert set(cfg) <= set(m.get_config())


def test_keras_training_steps_match():
    keras = _keras()

    def build(lib):
        L = lib.layers
        return lib.Sequential([lib.Input(shape=(5, 3)),
                               L.RNN(L.LSTMCell(4, activation="relu", recurrent_activation="hard_sigmoid"),
                                     return_sequences=True, go_backwards=True),
                               L.RNN([L.GRUCell(3, reset_after=False), L.SimpleRNNCell(3)]), L.Dense(2)])
    k, m = build(keras), build(lamina)
    m.set_weights(k.get_weights())
    k.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    m.compile(optimizer=lamina.optimizers.SGD(0.1), loss="mse")
    x, y = _x((8, 5, 3), 32), _x((8, 2), 33)
    k.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(m.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def test_keras_masking_from_embedding_reaches_a_user_cell():
    keras = _keras()
    ids = np.array([[3, 1, 0, 0], [2, 2, 4, 0], [0, 0, 0, 0]], np.int32)

    def build(lib, cell):
        inp = lib.Input((4,), dtype="int32")
        h = lib.layers.Embedding(5, 3, mask_zero=True)(inp)
        h = lib.layers.RNN(cell, return_sequences=True)(h)
        return lib.Model(inp, lib.layers.RNN(lib.layers.GRUCell(2, reset_after=False))(h))
    k = build(keras, _keras_minimal_cell(keras)(4))
    m = build(lamina, MinimalRNNCell(4))
    m.set_weights(k.get_weights())
    np.testing.assert_allclose(m.predict(ids, verbose=0), k.predict(ids, verbose=0), atol=5e-6)


def test_keras_model_files_move_both_ways(tmp_path):
    keras = _keras()

    def build(lib):
        L = lib.layers
        inp = lib.Input((5, 3))
        h = L.RNN(L.LSTMCell(4, activation="relu"), return_sequences=True, go_backwards=True)(inp)
        h = L.RNN([L.GRUCell(3, reset_after=False), L.SimpleRNNCell(2)])(h)
        return lib.Model(inp, L.Dense(2)(h))
    x = _x((4, 5, 3), 37)
    k = build(keras)
    k.save(str(tmp_path / "k.keras"))
    m = lamina.models.load_model(str(tmp_path / "k.keras"))
    np.testing.assert_allclose(m.predict(x, verbose=0), k.predict(x, verbose=0), atol=1e-5)
    m2 = build(lamina)
    m2.save(str(tmp_path / "l.keras"))
    k2 = keras.models.load_model(str(tmp_path / "l.keras"))
    np.testing.assert_allclose(k2.predict(x, verbose=0), m2.predict(x, verbose=0), atol=1e-5)
    # Keras's LSTM weights go into lamina's RNN(LSTMCell), as in Keras: set_weights, or a legacy
    # '.h5' file (matched by layer order; a '.weights.h5' file is matched by layer class, in Keras too)
    kl = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4)])
    kl.save(str(tmp_path / "lstm.h5"))
    ml = lamina.Sequential([lamina.Input((5, 3)), RNN(LSTMCell(4))])
    ml.load_weights(str(tmp_path / "lstm.h5"))
    np.testing.assert_allclose(ml.predict(x, verbose=0), kl.predict(x, verbose=0), atol=1e-5)
    ml.set_weights([w * 0.5 for w in kl.get_weights()])
    kl.set_weights(ml.get_weights())
    np.testing.assert_allclose(ml.predict(x, verbose=0), kl.predict(x, verbose=0), atol=1e-5)
