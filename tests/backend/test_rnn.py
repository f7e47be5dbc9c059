"""backend/rnn.py: the fused LSTM, GRU and simple RNN ops against numpy step loops, forward and
backward (finite differences), with masks, go_backwards, initial states and dropout masks; the
multi-threaded recurrence; and argument errors."""
import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.backend import autodiff, rnn
from opcheck import check_grad

GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}


# ---- numpy references --------------------------------------------------------------------------------

def _sig(x):
    return 0.5 * (1 + np.tanh(0.5 * x))  # no overflow for large |x|


def ref(cell, x, h0, c0, K, R, b, mask=None, go_backwards=False, input_dropout=None, recurrent_dropout=None):
    """A float64 step loop with Keras's semantics: outputs in processing order, then the last states."""
    f64 = lambda a: None if a is None else np.asarray(a, np.float64)  # noqa: E731
    x, K, R, b = f64(x), f64(K), f64(R), f64(b)
    B, T, _ = x.shape
    U = R.shape[0]
    h = np.zeros((B, U)) if h0 is None else f64(h0)
    c = np.zeros((B, U)) if c0 is None else f64(c0)
    if input_dropout is not None:
        x = x * f64(input_dropout)[:, None, :]
    outs = []
    for s in range(T):
        t = T - 1 - s if go_backwards else s
        xt = x[:, t]
        hd = h * f64(recurrent_dropout) if recurrent_dropout is not None else h
        if cell == "lstm":
            z = xt @ K + hd @ R + (0 if b is None else b)
            i, f, g, o = _sig(z[:, :U]), _sig(z[:, U:2 * U]), np.tanh(z[:, 2 * U:3 * U]), _sig(z[:, 3 * U:])
            cn = f * c + i * g
            hn = o * np.tanh(cn)
        elif cell == "gru":
            gx = xt @ K + (0 if b is None else b[0])
            gr = hd @ R + (0 if b is None else b[1])
            z = _sig(gx[:, :U] + gr[:, :U])
            r = _sig(gx[:, U:2 * U] + gr[:, U:2 * U])
            hh = np.tanh(gx[:, 2 * U:] + r * gr[:, 2 * U:])
            hn, cn = z * h + (1 - z) * hh, c
        else:
            hn, cn = np.tanh(xt @ K + hd @ R + (0 if b is None else b)), c
        if mask is not None:
            m = np.asarray(mask, bool)[:, t, None]
            hn, cn = np.where(m, hn, h), np.where(m, cn, c)
        h, c = hn, cn
        outs.append(h)
    seq = np.stack(outs, 1) if T else np.zeros((B, 0, U))
    return (seq, h, c) if cell == "lstm" else (seq, h)


def op(cell):
    return getattr(ops, cell)


def make(rng, cell, B, T, F, U, bias=True, scale=0.5):
    G = GATES[cell]
    x = rng.standard_normal((B, T, F)).astype(np.float32)
    K = (rng.standard_normal((F, G * U)) * scale).astype(np.float32)
    R = (rng.standard_normal((U, G * U)) * scale).astype(np.float32)
    b = (rng.standard_normal((2, G * U) if cell == "gru" else (G * U,)) * scale).astype(np.float32) if bias else None
    h0 = rng.standard_normal((B, U)).astype(np.float32)
    c0 = rng.standard_normal((B, U)).astype(np.float32)
    return x, h0, c0, K, R, b


def call(cell, x, h0, c0, K, R, b, **kw):
    if cell == "lstm":
        return op(cell)(x, h0, c0, K, R, b, **kw)
    return op(cell)(x, h0, K, R, b, **kw)


def call_ref(cell, x, h0, c0, K, R, b, **kw):
    return ref(cell, x, h0, c0 if cell == "lstm" else None, K, R, b, **kw)


def options(rng, B, T, F, U, which):
    kw = {}
    if "mask" in which:
        m = rng.random((B, T)) > 0.35
        if T:
            m[0, :] = False  # one row masked everywhere: its states pass straight through
        kw["mask"] = m
    if "back" in which:
        kw["go_backwards"] = True
    if "drop" in which:
        kw["input_dropout"] = ((rng.random((B, F)) > 0.3) / 0.7).astype(np.float32)
        kw["recurrent_dropout"] = ((rng.random((B, U)) > 0.4) / 0.6).astype(np.float32)
    return kw


CELLS = list(GATES)
OPTION_SETS = [(), ("mask",), ("back",), ("drop",), ("mask", "back", "drop")]


# ---- forward ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("which", OPTION_SETS)
def test_forward_matches_step_loop(rng, cell, which):
    B, T, F, U = 3, 7, 5, 6
    x, h0, c0, K, R, b = make(rng, cell, B, T, F, U)
    kw = options(rng, B, T, F, U, which)
    got = call(cell, x, h0, c0, K, R, b, **kw)
    want = call_ref(cell, x, h0, c0, K, R, b, **kw)
    assert len(got) == len(want) == (3 if cell == "lstm" else 2)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == "float32"
        np.testing.assert_allclose(g.numpy(), w, atol=2e-6, rtol=1e-5)
    # the last output is the last h; go_backwards keeps the processing order
    np.testing.assert_allclose(got[0].numpy()[:, -1], got[1].numpy(), atol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_masked_steps_carry_the_states(rng, cell):
    B, T, F, U = 2, 5, 3, 4
    x, h0, c0, K, R, b = make(rng, cell, B, T, F, U)
    mask = np.ones((B, T), bool)
    mask[1, 2:4] = False
    out = call(cell, x, h0, c0, K, R, b, mask=mask)
    seq = out[0].numpy()
    np.testing.assert_array_equal(seq[1, 2], seq[1, 1])
    np.testing.assert_array_equal(seq[1, 3], seq[1, 1])
    # all masked: outputs and states are the initial ones
    out = call(cell, x, h0, c0, K, R, b, mask=np.zeros((B, T), bool))
    np.testing.assert_array_equal(out[0].numpy(), np.repeat(h0[:, None], T, 1))
    np.testing.assert_array_equal(out[1].numpy(), h0)
    if cell == "lstm":
        np.testing.assert_array_equal(out[2].numpy(), c0)
    # an integer mask works like a bool one
    m = rng.integers(0, 2, (B, T))
    a = call(cell, x, h0, c0, K, R, b, mask=m)
    w = call(cell, x, h0, c0, K, R, b, mask=m.astype(bool))
    for p, q in zip(a, w):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,T,F,U", [(1, 1, 1, 1), (4, 1, 3, 5), (0, 4, 3, 2), (3, 0, 2, 4), (2, 3, 0, 3),
                                     (5, 9, 7, 1)])
def test_edge_sizes(rng, cell, B, T, F, U):
    x, h0, c0, K, R, b = make(rng, cell, B, T, F, U)
    got = call(cell, x, h0, c0, K, R, b)
    want = call_ref(cell, x, h0, c0, K, R, b)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g.numpy(), w, atol=2e-6, rtol=1e-5)
    # gradients of every input exist with the input's shape, also for empty batches / sequences
    ts = [lamina.convert_to_tensor(a) for a in (x, h0, c0, K, R, b)]
    with lamina.GradientTape() as tape:
        tape.watch(ts)
        out = call(cell, *ts)
        loss = ops.sum(out[0]) + ops.sum(out[1])
    used = ts if cell == "lstm" else [t for i, t in enumerate(ts) if i != 2]
    grads = tape.gradient(loss, used)
    for g, t in zip(grads, used):
        assert g is not None and g.shape == t.shape
    if T == 0:  # no steps: the last states are the initial ones, and pass gradients straight back
        np.testing.assert_allclose(grads[1].numpy(), np.ones((B, U)))


@pytest.mark.parametrize("cell", CELLS)
def test_no_bias_and_default_states(rng, cell):
    B, T, F, U = 2, 4, 3, 5
    x, _, _, K, R, _ = make(rng, cell, B, T, F, U, bias=False)
    got = call(cell, x, None, None, K, R, None, go_backwards=True)
    want = call_ref(cell, x, None, None, K, R, None, go_backwards=True)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w, atol=2e-6, rtol=1e-5)


def test_extreme_preactivations_stay_finite(rng):
    x, h0, c0, K, R, b = make(rng, "lstm", 2, 4, 3, 4, scale=200.0)
    for cell in CELLS:
        x, h0, c0, K, R, b = make(rng, cell, 2, 4, 3, 4, scale=200.0)
        out = call(cell, x, h0, c0, K, R, b)
        for o, w in zip(out, call_ref(cell, x, h0, c0, K, R, b)):
            assert np.all(np.isfinite(o.numpy()))
            np.testing.assert_allclose(o.numpy(), w, atol=1e-5)


# ---- gradients ---------------------------------------------------------------------------------------------

def _grad_inputs(cell, x, h0, c0, K, R, b):
    return [x, h0, c0, K, R, b] if cell == "lstm" else [x, h0, K, R, b]


def _fns(cell, kw, outputs=None):
    """(lamina fn, reference) taking the differentiable inputs; `outputs` picks which outputs count."""
    pick = (lambda o: [o[i] for i in outputs]) if outputs is not None else (lambda o: o)  # noqa: E731
    if cell == "lstm":
        return (lambda x, h0, c0, K, R, b: pick(call(cell, x, h0, c0, K, R, b, **kw)),
                lambda x, h0, c0, K, R, b: pick(call_ref(cell, x, h0, c0, K, R, b, **kw)))
    return (lambda x, h0, K, R, b: pick(call(cell, x, h0, None, K, R, b, **kw)),
            lambda x, h0, K, R, b: pick(call_ref(cell, x, h0, None, K, R, b, **kw)))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("which", OPTION_SETS)
def test_gradients_of_every_input(rng, cell, which):
    B, T, F, U = 2, 4, 3, 3
    x, h0, c0, K, R, b = make(rng, cell, B, T, F, U)
    kw = options(rng, B, T, F, U, which)
    fn, rf = _fns(cell, kw)
    check_grad(fn, rf, _grad_inputs(cell, x, h0, c0, K, R, b), atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_through_some_outputs(rng, cell):
    """One backward call serves all outputs: each output alone, and the states without the sequence."""
    B, T, F, U = 3, 3, 2, 3
    x, h0, c0, K, R, b = make(rng, cell, B, T, F, U)
    n = 3 if cell == "lstm" else 2
    picks = [[i] for i in range(n)] + [list(range(1, n))]
    for outs in picks:
        fn, rf = _fns(cell, {"mask": rng.random((B, T)) > 0.3}, outs)
        check_grad(fn, rf, _grad_inputs(cell, x, h0, c0, K, R, b), atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_without_bias_and_states(rng, cell):
    B, T, F, U = 2, 3, 3, 2
    x, _, _, K, R, _ = make(rng, cell, B, T, F, U, bias=False)
    fn = lambda x, K, R: call(cell, x, None, None, K, R, None, go_backwards=True)  # noqa: E731
    rf = lambda x, K, R: call_ref(cell, x, None, None, K, R, None, go_backwards=True)  # noqa: E731
    check_grad(fn, rf, [x, K, R], atol=2e-3, rtol=2e-3)


def test_gradient_only_for_weights_and_repeated_backward(rng):
    """Only the weights need gradients; a persistent tape runs the backward pass twice with
    the same result (the forward pass's saved buffers are not overwritten)."""
    x, h0, c0, K, R, b = make(rng, "lstm", 3, 5, 4, 3)
    Kv, Rv, bv = lamina.Variable(K), lamina.Variable(R), lamina.Variable(b)
    with lamina.GradientTape(persistent=True) as tape:
        seq, h, c = ops.lstm(x, h0, c0, Kv, Rv, bv, mask=rng.random((3, 5)) > 0.2)
        loss = ops.sum(seq * seq) + ops.sum(c)
    g1 = tape.gradient(loss, [Kv, Rv, bv])
    g2 = tape.gradient(loss, [Kv, Rv, bv])
    gx = tape.gradient(loss, lamina.convert_to_tensor(x))
    assert gx is None
    for a, b_ in zip(g1, g2):
        np.testing.assert_array_equal(a.numpy(), b_.numpy())
    # the same gradients as check_grad's reference
    fn = lambda K, R, b: ops.lstm(x, h0, c0, K, R, b)  # noqa: E731
    rf = lambda K, R, b: ref("lstm", x, h0, c0, K, R, b)  # noqa: E731
    check_grad(fn, rf, [K, R, b], atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bias", [True, False])
def test_weights_shared_by_several_calls(rng, cell, bias):
    """One set of weights run on four inputs (a shared layer; pipelined micro-batches): from the
    third call on, the kernel adds its weight gradients into the tape's running sums in place
    (the backward kernels' `accumulate` bits); the sums equal the reference's."""
    B, T, F, U = 2, 3, 3, 2
    x, h0, c0, K, R, b = make(rng, cell, B, T, F, U, bias=bias)
    xs = [rng.standard_normal((B, T, F)).astype(np.float32) for _ in range(3)]

    def four(f, lib):
        def g(x, x1, x2, x3, K, R, *b):
            b = b[0] if b else None
            outs = [f(cell, xi, h0, c0, K, R, b, mask=m)[0] for xi, m in zip((x, x1, x2, x3), masks)]
            return lib.concatenate(outs, axis=1)
        return g
    masks = [None, rng.random((B, T)) > 0.3, None, None]
    inputs = [x, *xs, K, R] + ([b] if bias else [])
    check_grad(four(call, ops), four(call_ref, np), inputs, atol=2e-3, rtol=2e-3)


def test_accumulated_weight_gradients_match_separate_tapes(rng):
    """Gradients summed over several LSTM calls (accumulated in place) equal the sum of each
    call's gradient taken on its own tape, to float rounding."""
    x, h0, c0, K, R, b = make(rng, "lstm", 4, 6, 5, 8)
    Kv, Rv, bv = lamina.Variable(K), lamina.Variable(R), lamina.Variable(b)
    xs = [rng.standard_normal(x.shape).astype(np.float32) for _ in range(5)]
    with lamina.GradientTape() as tape:
        loss = None
        for xi in xs:
            term = ops.sum(ops.lstm(xi, h0, c0, Kv, Rv, bv)[0] ** 2)
            loss = term if loss is None else loss + term
    together = [g.numpy() for g in tape.gradient(loss, [Kv, Rv, bv])]
    apart = [np.zeros_like(K), np.zeros_like(R), np.zeros_like(b)]
    for xi in xs:
        with lamina.GradientTape() as tape:
            term = ops.sum(ops.lstm(xi, h0, c0, Kv, Rv, bv)[0] ** 2)
        for a, g in zip(apart, tape.gradient(term, [Kv, Rv, bv])):
            a += g.numpy()
    for t, a in zip(together, apart):
        np.testing.assert_allclose(t, a, rtol=1e-5, atol=1e-5)


def _grads_of_shared_calls(cell, x, h0, c0, K, R, b, which, calls=3, extra_use=False, defer=False, **kw):
    """Gradients of every input of `calls` runs of one layer (weights shared), optionally with
    the kernel also used by a plain matmul; the backward pass deferring the weight gradients."""
    ws = [lamina.Variable(K), lamina.Variable(R)] + ([lamina.Variable(b)] if b is not None else [])
    xs = [lamina.convert_to_tensor(x + 0.1 * i) for i in range(calls)]
    h0t, c0t = lamina.convert_to_tensor(h0), lamina.convert_to_tensor(c0)
    with lamina.GradientTape() as tape:
        for t in xs + [h0t, c0t]:
            tape.watch(t)
        loss = None
        for xi in xs:
            o = call(cell, xi, h0t, c0t, ws[0], ws[1], ws[2] if b is not None else None, **kw)
            term = ops.sum(o[0] * o[0]) + ops.sum(o[1])
            loss = term if loss is None else loss + term
        if extra_use:
            loss = loss + ops.sum(ops.matmul(xs[0][:, 0], ws[0]) ** 2)
    sources = xs + [h0t] + ([c0t] if cell == "lstm" else []) + [ws[i] for i in which] + ws[2:]
    dev = lamina.get_device("cpu:0")
    with autodiff.deferred_weight_gradients([dev] if defer == "here" or defer is True else [lamina.get_device("cpu:1")]) \
            if defer else _nullcontext():
        return [g.numpy() for g in tape.gradient(loss, sources)]


def _nullcontext():
    import contextlib
    return contextlib.nullcontext()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("which", [(0, 1), (0,), (1,)])
@pytest.mark.parametrize("opts", [(), ("mask", "back", "drop")])
def test_deferred_weight_gradients_equal_the_direct_ones(rng, cell, which, opts):
    """Inside deferred_weight_gradients() the kernel and recurrent kernel gradients are formed at
    the end of the backward pass from what each call's backward kernel kept (an LSTM's or simple
    RNN's two from one stacked GEMM per call; the GRU's as separate products): the same values as
    the direct ones, for several calls sharing the weights, whichever weights are wanted, with
    masks, reversed sequences and dropout masks; also when the kernel has a dense gradient from
    another use."""
    B, T, F, U = 3, 4, 5, 3
    x, h0, c0, K, R, b = make(rng, cell, B, T, F, U, scale=0.3)
    kw = options(rng, B, T, F, U, opts)
    for extra in (False, True):
        direct = _grads_of_shared_calls(cell, x, h0, c0, K, R, b, which, extra_use=extra, **kw)
        for where in ("here", "elsewhere"):  # deferred on the ops' device, or formed at once
            deferred = _grads_of_shared_calls(cell, x, h0, c0, K, R, b, which, extra_use=extra, defer=where, **kw)
            assert len(direct) == len(deferred)
            for d, e in zip(direct, deferred):
                np.testing.assert_allclose(e, d, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B, T, F, U", [(0, 3, 2, 3), (2, 0, 2, 3), (2, 3, 0, 3), (2, 3, 2, 0)])
def test_deferred_weight_gradients_of_empty_sizes(rng, cell, B, T, F, U):
    """No rows, no steps or no features: the deferred weight gradients are the direct ones
    (zeros where nothing contributes)."""
    x, h0, c0, K, R, b = make(rng, cell, B, T, F, U)
    direct = _grads_of_shared_calls(cell, x, h0, c0, K, R, b, (0, 1), calls=2)
    deferred = _grads_of_shared_calls(cell, x, h0, c0, K, R, b, (0, 1), calls=2, defer=True)
    for d, e in zip(direct, deferred):
        assert d.shape == e.shape
        np.testing.assert_allclose(e, d, rtol=2e-5, atol=2e-5)


def test_deferred_lstm_weight_gradients_share_one_gemm_per_call(rng):
    """The kernel and recurrent kernel gradients of an LSTM used by three calls: three GEMMs in
    all ([H_prev X]^T dG per call, accumulated), formed once for both."""
    x, h0, c0, K, R, b = make(rng, "lstm", 2, 3, 4, 5)
    k = lamina.get_device("cpu").kernels
    real, calls = k.gemm, []
    k.gemm = lambda *a: (calls.append(a), real(*a))
    try:
        got = _grads_of_shared_calls("lstm", x, h0, c0, K, R, None, (0, 1), calls=3, defer=True)
    finally:
        k.gemm = real
    assert len(calls) == 3
    want = _grads_of_shared_calls("lstm", x, h0, c0, K, R, None, (0, 1), calls=3)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5)


def test_no_recording_outside_a_tape(rng):
    x, h0, c0, K, R, b = make(rng, "gru", 2, 3, 2, 2)
    out, h = ops.gru(x, h0, lamina.Variable(K), R, b)
    assert out._node is None and h._node is None


# ---- the multi-threaded recurrence ------------------------------------------------------------------

def _directional_check(cell, args, kw, rng, eps=1e-3):
    """<dL/dinput, v> against (L(input + eps v) - L(input - eps v)) / (2 eps) of the float64 reference,
    for a random direction v per input: a gradient check for sizes too big for element-wise differences."""
    n = 3 if cell == "lstm" else 2
    ref_args = list(args)
    ws = None
    ts = [lamina.convert_to_tensor(a) for a in args]
    diff = [i for i, a in enumerate(args) if a is not None and not (cell != "lstm" and i == 2)]
    with lamina.GradientTape() as tape:
        tape.watch([ts[i] for i in diff])
        outs = call(cell, *ts, **kw)
        ws = [rng.standard_normal(o.shape).astype(np.float32) for o in outs[:n]]
        loss = None
        for o, w in zip(outs, ws):
            term = ops.sum(o * w)
            loss = term if loss is None else loss + term
    grads = tape.gradient(loss, [ts[i] for i in diff])

    def L(a):
        return sum(float(np.sum(o * w)) for o, w in zip(call_ref(cell, *a, **kw), ws))
    for i, g in zip(diff, grads):
        v = rng.standard_normal(args[i].shape)
        plus, minus = list(ref_args), list(ref_args)
        plus[i] = args[i] + eps * v
        minus[i] = args[i] - eps * v
        want = (L(plus) - L(minus)) / (2 * eps)
        got = float(np.sum(g.numpy().astype(np.float64) * v))
        assert abs(got - want) <= 2e-3 * max(1.0, abs(want)), f"input {i}: {got} vs {want}"


@pytest.mark.parametrize("cell", CELLS)
def test_threaded_recurrence_matches_reference_and_one_thread(rng, cell):
    """Sizes where the batch rows are split among threads: forward against the reference,
    gradients by directional differences, and the same values on one thread."""
    B, T, F, U = 37, 6, 9, 64  # B * U * G*U above the kernel's threshold (2^17) for every cell
    x, h0, c0, K, R, b = make(rng, cell, B, T, F, U, scale=0.2)
    kw = options(rng, B, T, F, U, ("mask", "back", "drop"))
    got = call(cell, x, h0, c0, K, R, b, **kw)
    for g, w in zip(got, call_ref(cell, x, h0, c0, K, R, b, **kw)):
        np.testing.assert_allclose(g.numpy(), w, atol=1e-5, rtol=1e-4)
    _directional_check(cell, [x, h0, c0, K, R, b], kw, rng)

    def grads():
        ts = [lamina.convert_to_tensor(a) for a in (x, h0, c0, K, R, b)]
        with lamina.GradientTape() as tape:
            tape.watch(ts)
            outs = call(cell, *ts, **kw)
            loss = ops.sum(outs[0] * outs[0]) + ops.sum(outs[-1])
        return [o.numpy() for o in outs], [g.numpy() for g in tape.gradient(loss, ts) if g is not None]
    threads = lamina.backend.num_threads()
    try:
        lamina.backend.set_num_threads(max(threads, 3))  # 37 rows on 3 threads: blocks of 16, 16, 5
        many = grads()
        lamina.backend.set_num_threads(1)
        one = grads()
    finally:
        lamina.backend.set_num_threads(threads)
    for a, b_ in zip(many[0] + many[1], one[0] + one[1]):
        np.testing.assert_allclose(a, b_, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kernel", lamina.get_device("cpu").kernels.gemm_kernels())
def test_every_gemm_kernel_and_blocked_weights(rng, kernel):
    """The recurrences run the GEMM micro-kernel in use on weights packed once: every kernel this
    CPU has, with recurrent kernels that span several of its cache blocks (K > kc backward,
    N > nc forward)."""
    k = lamina.get_device("cpu").kernels
    before = k.gemm_kernel()
    k.set_gemm_kernel(kernel)
    try:
        for cell, (B, T, F, U) in (("lstm", (14, 3, 5, 80)), ("gru", (13, 4, 3, 100)), ("simple_rnn", (3, 2, 2, 300))):
            x, h0, c0, K, R, b = make(rng, cell, B, T, F, U, scale=0.1)
            kw = options(rng, B, T, F, U, ("mask", "back"))
            for g, w in zip(call(cell, x, h0, c0, K, R, b, **kw), call_ref(cell, x, h0, c0, K, R, b, **kw)):
                np.testing.assert_allclose(g.numpy(), w, atol=1e-5, rtol=1e-4)
            _directional_check(cell, [x, h0, c0, K, R, b], kw, rng)
        x, h0, c0, K, R, b = make(rng, "lstm", 2, 2, 3, 1100, scale=0.05)  # 4U = 4400 > every kernel's nc
        for g, w in zip(call("lstm", x, h0, c0, K, R, b), call_ref("lstm", x, h0, c0, K, R, b)):
            np.testing.assert_allclose(g.numpy(), w, atol=1e-5, rtol=1e-4)
    finally:
        k.set_gemm_kernel(before)


# ---- errors ----------------------------------------------------------------------------------------------

def test_shape_errors(rng):
    x, h0, c0, K, R, b = make(rng, "lstm", 2, 3, 4, 5)
    with pytest.raises(ValueError, match=r"lstm: expected inputs of shape \(batch, timesteps, features\), received shape \(2, 4\)"):
        ops.lstm(x[:, 0], h0, c0, K, R, b)
    with pytest.raises(ValueError, match=r"lstm: expected recurrent_kernel of shape \(units, 4 \* units\), received shape \(5, 15\)"):
        ops.lstm(x, h0, c0, K, R[:, :15], b)
    with pytest.raises(ValueError, match=r"lstm: expected kernel of shape \(features, 4 \* units\) = \(4, 20\) for inputs of shape \(2, 3, 4\).*received kernel of shape \(3, 20\)"):
        ops.lstm(x, h0, c0, K[:3], R, b)
    with pytest.raises(ValueError, match=r"lstm: expected bias of shape \(20,\) for 5 units, received shape \(19,\)"):
        ops.lstm(x, h0, c0, K, R, b[:19])
    with pytest.raises(ValueError, match=r"lstm: expected c0 of shape \(batch, units\) = \(2, 5\) .*received shape \(3, 5\)"):
        ops.lstm(x, h0, np.zeros((3, 5), np.float32), K, R, b)
    with pytest.raises(ValueError, match=r"lstm: expected mask of shape \(batch, timesteps\) = \(2, 3\) .*received shape \(2, 4\)"):
        ops.lstm(x, h0, c0, K, R, b, mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"lstm: expected input_dropout mask of shape \(batch, features\) = \(2, 4\).*received shape \(2, 5\)"):
        ops.lstm(x, h0, c0, K, R, b, input_dropout=np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"lstm: expected recurrent_dropout mask of shape \(batch, units\) = \(2, 5\).*received shape \(2, 4\)"):
        ops.lstm(x, h0, c0, K, R, b, recurrent_dropout=np.ones((2, 4), np.float32))
    xg, hg, _, Kg, Rg, bg = make(rng, "gru", 2, 3, 4, 5)
    with pytest.raises(ValueError, match=r"gru: expected bias of shape \(2, 15\) \(\[input bias; recurrent bias\], reset_after=True\) for 5 units, received shape \(15,\)"):
        ops.gru(xg, hg, Kg, Rg, bg[0])
    with pytest.raises(ValueError, match=r"simple_rnn: expected recurrent_kernel of shape \(units, 1 \* units\), received shape \(5, 20\)"):
        ops.simple_rnn(x, h0, K, R, None)


def test_dtype_and_device_errors(rng):
    x, h0, c0, K, R, b = make(rng, "gru", 2, 3, 4, 5)
    with pytest.raises(TypeError, match=r"gru: expected kernel of dtype float32, received int32 with shape \(4, 15\)"):
        ops.gru(x, h0, K.astype(np.int32), R, b)
    with pytest.raises(TypeError, match=r"gru: expected inputs of dtype float32, received int64 with shape \(2, 3, 4\)"):
        ops.gru(x.astype(np.int64), h0, K, R, b)
    with pytest.raises(TypeError, match=r"gru: expected recurrent_dropout of dtype float32, received bool"):
        ops.gru(x, h0, K, R, b, recurrent_dropout=np.ones((2, 5), bool))
    with lamina.device("cpu:1"):
        other = lamina.convert_to_tensor(R)
    with pytest.raises(ValueError, match=r"gru: inputs are on different devices \(cpu:0 with shape \(2, 3, 4\), cpu:1 with shape \(5, 15\)\)"):
        ops.gru(x, h0, K, other, b)


def test_kernels_reject_bad_buffers():
    """The kernels check every buffer themselves (ValueError / TypeError, never a crash)."""
    k = lamina.get_device("cpu").kernels
    buf = lambda n, dt=0: k.Buffer(n, dt)  # noqa: E731
    B, T, F, U = 2, 3, 4, 5
    args = [buf(B * T * F), buf(B * U), buf(B * U), buf(F * 4 * U), buf(U * 4 * U), None, None, None, None,
            B, T, F, U, False, buf(B * T * U), buf(B * U), buf(B * U), buf(B * T * 4 * U), None]
    k.lstm_forward(*args)  # the right sizes run
    bad = list(args)
    bad[4] = buf(U * 4 * U - 1)
    with pytest.raises(ValueError, match=r"lstm: recurrent_kernel holds 99 elements but its shape \(5, 20\) needs 100"):
        k.lstm_forward(*bad)
    bad = list(args)
    bad[6] = buf(B * T, 0)
    with pytest.raises(TypeError, match="lstm: expected mask of dtype bool, received float32"):
        k.lstm_forward(*bad)
    bad = list(args)
    bad[17] = buf(B * T * U)
    with pytest.raises(ValueError, match=r"lstm: gates holds 30 elements but its shape \(2, 3, 20\) needs 120"):
        k.lstm_forward(*bad)
    bad = list(args)
    bad[9] = -1
    with pytest.raises(ValueError, match="lstm: expected non-negative sizes"):
        k.lstm_forward(*bad)
    with pytest.raises(ValueError, match=r"gru_backward: saved recurrent candidates holds 1 elements but its shape \(2, 3, 5\) needs 30"):
        k.gru_backward(buf(B * T * F), buf(B * U), buf(F * 3 * U), buf(U * 3 * U), None, None, None, B, T, F, U,
                       False, buf(B * T * U), buf(B * T * 3 * U), buf(1), None, None, None, None, None, None, None, 0,
                       None, None, None)
    gru_bwd = [buf(B * T * F), buf(B * U), buf(F * 3 * U), buf(U * 3 * U), None, None, None, B, T, F, U, False,
               buf(B * T * U), buf(B * T * 3 * U), buf(B * T * U), None, None, None, None, None, None, None]
    with pytest.raises(ValueError, match="gru_backward: accumulate must combine the bits 1"):
        k.gru_backward(*gru_bwd, 8, None, None, None)
    with pytest.raises(ValueError, match="gru_backward: accumulate asks to add into the recurrent kernel gradient, "
                                         "but no buffer was given"):
        k.gru_backward(*gru_bwd, 2, None, None, None)


def test_exported_names():
    assert set(rnn.__all__) == {"lstm", "gru", "simple_rnn"}
    assert ops.lstm.__wrapped__ is rnn.lstm and ops.gru.__wrapped__ is rnn.gru and ops.simple_rnn.__wrapped__ is rnn.simple_rnn
