"""The fused recurrent ops (lstm / gru / simple_rnn kernels, csrc/cuda/rnn.cu on the GPU) on a
device under test (tests/gpu/conftest.py) against cpu:0: forward values and every gradient, with
the options the kernels take (go_backwards, a mask, input and recurrent dropout masks, no bias,
incoming gradients of the last states, accumulated and deferred weight gradients), at odd sizes;
and the recurrent layers built on them."""
import numpy as np
import pytest

import lamina
from lamina import layers, ops
from lamina.backend import autodiff

B, T, F, U = 3, 5, 7, 9
G = {"lstm": 4, "gru": 3, "simple_rnn": 1}
FWD_TOL = dict(rtol=1e-4, atol=2e-5)
GRAD_TOL = dict(rtol=2e-4, atol=5e-5)


def _inputs(cell, seed=3):
    r = np.random.default_rng(seed)
    g = G[cell]
    d = {
        "x": r.normal(size=(B, T, F)).astype(np.float32),
        "h0": (0.5 * r.normal(size=(B, U))).astype(np.float32),
        "K": (0.4 * r.normal(size=(F, g * U))).astype(np.float32),
        "R": (0.4 * r.normal(size=(U, g * U))).astype(np.float32),
        "b": (0.3 * r.normal(size=(2, g * U) if cell == "gru" else (g * U,))).astype(np.float32),
        # a mask with a masked first step, masked steps inside and a row with none masked
        "mask": np.array([[0, 1, 1, 0, 1], [1, 1, 0, 0, 1], [1, 1, 1, 1, 1]], dtype=bool),
        "in_drop": ((r.random((B, F)) > 0.3) / 0.7).astype(np.float32),
        "rec_drop": ((r.random((B, U)) > 0.25) / 0.75).astype(np.float32),
    }
    if cell == "lstm":
        d["c0"] = (0.5 * r.normal(size=(B, U))).astype(np.float32)
    return d


OPTIONS = {
    "plain": {},
    "backwards": {"go_backwards": True},
    "mask": {"mask": True},
    "mask_backwards": {"mask": True, "go_backwards": True},
    "dropout": {"dropout": True},
    "no_bias": {"no_bias": True},
    "no_states": {"no_states": True},
    "everything": {"mask": True, "go_backwards": True, "dropout": True},
}


def _run_op(cell, opt, device, grad=True, deferred=False, twice=False):
    """Outputs (and gradients of a weighted sum of every output) of one fused op call (two calls
    sharing the weights with twice: the second's weight gradients accumulate into the first's)."""
    d = _inputs(cell)
    with lamina.device(device):
        names = ["x", "K", "R"] + ([] if opt.get("no_bias") else ["b"])
        if not opt.get("no_states"):
            names += ["h0"] + (["c0"] if cell == "lstm" else [])
        v = {n: lamina.Variable(d[n]) for n in names}
        kw = dict(go_backwards=opt.get("go_backwards", False))
        if opt.get("mask"):
            kw["mask"] = lamina.convert_to_tensor(d["mask"])
        if opt.get("dropout"):
            kw["input_dropout"] = lamina.convert_to_tensor(d["in_drop"])
            kw["recurrent_dropout"] = lamina.convert_to_tensor(d["rec_drop"])
        fn = getattr(ops, cell)

        def call(x):
            if cell == "lstm":
                return fn(x, v.get("h0"), v.get("c0"), v["K"], v["R"], v.get("b"), **kw)
            return fn(x, v.get("h0"), v["K"], v["R"], v.get("b"), **kw)

        def loss_of(outs):
            total = 0.0
            for k, o in enumerate(outs):
                w = np.cos(np.arange(int(np.prod(o.shape)), dtype=np.float32) * (0.7 + k)).reshape(o.shape)
                total = total + ops.sum(o * lamina.convert_to_tensor(w))
            return total

        if not grad:
            return [o.numpy() for o in call(v["x"])]
        devs = [lamina.get_device(device)] if isinstance(device, str) else [device]
        with lamina.GradientTape() as tape:
            outs = list(call(v["x"]))
            if twice:
                outs += list(call(v["x"] * 0.5 + 0.25))
            loss = loss_of(outs)
        if deferred:  # the backward pass runs in tape.gradient
            with autodiff.deferred_weight_gradients(devs):
                grads = tape.gradient(loss, [v[n] for n in names])
        else:
            grads = tape.gradient(loss, [v[n] for n in names])
        return [o.numpy() for o in outs] + [g.numpy() for g in grads]


@pytest.mark.parametrize("opt", sorted(OPTIONS))
@pytest.mark.parametrize("cell", sorted(G))
def test_the_fused_op_forward_matches_cpu(cell, opt, dev):
    want = _run_op(cell, OPTIONS[opt], "cpu:0", grad=False)
    got = _run_op(cell, OPTIONS[opt], dev, grad=False)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, **FWD_TOL)


@pytest.mark.parametrize("opt", sorted(OPTIONS))
@pytest.mark.parametrize("cell", sorted(G))
def test_the_fused_op_gradients_match_cpu(cell, opt, dev):
    want = _run_op(cell, OPTIONS[opt], "cpu:0")
    got = _run_op(cell, OPTIONS[opt], dev)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, **GRAD_TOL)


@pytest.mark.parametrize("mode", ["twice", "deferred", "deferred_twice"])
@pytest.mark.parametrize("cell", sorted(G))
def test_accumulated_and_deferred_weight_gradients_match_cpu(cell, mode, dev):
    """Two calls sharing weights (the backward kernel adds into the running gradient: its
    `accumulate` bits) and deferred weight gradients (the kernel keeps the gate gradients and
    [H_prev X] for products formed later)."""
    opt = OPTIONS["everything"]
    kw = dict(deferred=mode.startswith("deferred"), twice=mode.endswith("twice"))
    want = _run_op(cell, opt, "cpu:0", **kw)
    got = _run_op(cell, opt, dev, **kw)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, **GRAD_TOL)


# ---- layers ---------------------------------------------------------------------------------------

def _layer(kind, **kw):
    if kind == "lstm":
        return layers.LSTM(U, **kw)
    if kind == "gru":
        return layers.GRU(U, reset_after=True, **kw)
    if kind == "gru_reset_before":  # the per-step cell, not the fused op
        return layers.GRU(U, reset_after=False, **kw)
    return layers.SimpleRNN(U, **kw)


def _run_layer(kind, kw, masking, device, weights=None):
    r = np.random.default_rng(11)
    x = r.normal(size=(B, T, F)).astype(np.float32)
    if masking:
        x[0, :2] = 0.0  # masked steps (Masking's mask_value 0) at the start of a row and inside another
        x[1, 3] = 0.0
    with lamina.device(device):
        inp = lamina.Input((T, F))
        h = layers.Masking(0.0)(inp) if masking else inp
        out = _layer(kind, **kw)(h)
        model = lamina.Model(inp, out)
    if weights is not None:
        model.set_weights(weights)
    with lamina.device(device):
        xv = lamina.Variable(x)
        with lamina.GradientTape() as tape:
            y = model(xv, training=True)
            ys = y if isinstance(y, (list, tuple)) else [y]
            loss = 0.0
            for k, o in enumerate(ys):
                w = np.sin(np.arange(int(np.prod(o.shape)), dtype=np.float32) * (0.3 + k)).reshape(o.shape)
                loss = loss + ops.sum(o * lamina.convert_to_tensor(w))
        grads = tape.gradient(loss, [xv] + list(model.trainable_weights))
    return model, [o.numpy() for o in ys], [g.numpy() for g in grads]


LAYER_CASES = {
    "lstm_sequences": ("lstm", {"return_sequences": True}, False),
    "lstm_last": ("lstm", {}, False),
    "lstm_backwards": ("lstm", {"return_sequences": True, "go_backwards": True}, False),
    "lstm_masking": ("lstm", {"return_sequences": True}, True),
    "lstm_masking_backwards_states": ("lstm", {"go_backwards": True, "return_state": True}, True),
    "gru_sequences": ("gru", {"return_sequences": True}, False),
    "gru_masking_backwards": ("gru", {"go_backwards": True, "return_state": True}, True),
    "gru_reset_before": ("gru_reset_before", {"return_sequences": True}, False),
    "simple_rnn_masking": ("simple_rnn", {"return_sequences": True}, True),
    "simple_rnn_last_backwards": ("simple_rnn", {"go_backwards": True}, False),
}


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_recurrent_layers_match_cpu(name, dev):
    kind, kw, masking = LAYER_CASES[name]
    ref, want_y, want_g = _run_layer(kind, kw, masking, "cpu:0")
    _, got_y, got_g = _run_layer(kind, kw, masking, dev, weights=ref.get_weights())
    for g, w in zip(got_y, want_y):
        np.testing.assert_allclose(g, w, **FWD_TOL)
    assert len(got_g) == len(want_g)
    for g, w in zip(got_g, want_g):
        np.testing.assert_allclose(g, w, **GRAD_TOL)


def test_an_lstm_trains_on_the_device_as_on_cpu(dev):
    r = np.random.default_rng(5)
    x, y = r.normal(size=(24, T, F)).astype(np.float32), r.integers(0, 3, 24)

    def make(device):
        with lamina.device(device):
            model = lamina.Sequential([lamina.Input((T, F)), layers.LSTM(U, return_sequences=True),
                                       layers.GRU(U), layers.Dense(3)])
        model.compile(optimizer=lamina.optimizers.Adam(0.01),
                      loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    ref, other = make("cpu:0"), make(dev)
    other.set_weights(ref.get_weights())
    h1 = ref.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    h2 = other.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-4)
    for a, b in zip(other.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
