"""The LSTM kernels computing in bfloat16 (csrc/cpu/rnn.cpp, mixed precision): bfloat16 operands
for every matrix product, float32 gate maths, c and sums, on both bfloat16 GEMM paths
(AVX512-BF16 and widened to float32), against a float64 numpy step loop that rounds the same
operands to bfloat16 -- so the comparison is tight enough to see a wrong rounding; the dtype
contract; and the LSTM layer under mixed_bfloat16 (training, float32 parity, replay)."""
import importlib

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.backend import dtypes



def round_bf16(a):
    """float32 -> nearest bfloat16 (ties to even), as float32 (as tests/backend/test_bfloat16.py's)."""
    a = np.asarray(a, np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    r = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32) << 16).view(np.float32)
    return np.where(np.isnan(a), np.float32(np.nan), r).astype(np.float32)


def _sig(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def _r(a, on=True):
    """bfloat16 rounding of a float32 value (the identity with on=False, for the checks below that the
    tolerances see the rounding)."""
    return round_bf16(np.asarray(a, np.float32)).astype(np.float64) if on else np.asarray(a, np.float64)


def ref(x, h0, c0, K, R, b, mask, back, in_m, rec_m, dout, dh_last, dc_last, rnd=True, h_used=None, dg_used=None):
    """float64 LSTM forward and backward with the bfloat16 kernel's roundings (rnd): the product
    operands x * input mask, h_{t-1} (as the bfloat16 outputs hold it) * recurrent mask and the
    gate gradients are rounded to bfloat16; everything else is float64. Returns a dict.

    h_used, dg_used: the kernel's outputs (B, T, U) and rounded gate gradients (B, T, 4U), taken as
    h_{t-1} and as the backward products' operands (teacher forcing): a float32 result that falls
    on the other side of a bfloat16 rounding boundary than the float64 one then changes that one
    element, not every later step -- which keeps the comparisons tight."""
    B, T, F = x.shape
    U = R.shape[0]
    K, R = K.astype(np.float64), R.astype(np.float64)
    bias = np.zeros(4 * U) if b is None else b.astype(np.float64)
    xm = x.astype(np.float32) * (in_m[:, None, :] if in_m is not None else np.float32(1))
    xo = _r(xm, rnd)                                     # (B, T, F), by time index
    gx = xo @ K
    h, c = h0.astype(np.float32), c0.astype(np.float64)  # h: the stored h (float32 values)
    acts = np.zeros((B, T, 4 * U)); cs = np.zeros((B, T, U)); cps = np.zeros((B, T, U))
    hop = np.zeros((B, T, U)); out = np.zeros((B, T, U), np.float32)
    on = np.ones((B, T), bool) if mask is None else np.asarray(mask, bool)
    for s in range(T):
        t = T - 1 - s if back else s
        hm = h * rec_m if rec_m is not None else h
        ho = _r(hm, rnd)
        hop[:, t] = ho
        z = gx[:, t] + ho @ R + bias
        i, f, g, o = _sig(z[:, :U]), _sig(z[:, U:2 * U]), np.tanh(z[:, 2 * U:3 * U]), _sig(z[:, 3 * U:])
        cn = f * c + i * g
        hn = _r(np.float32(o * np.tanh(cn)), rnd).astype(np.float32)
        m = on[:, t, None]
        acts[:, t] = np.concatenate([i, f, g, o], 1)
        cps[:, t] = c
        c = np.where(m, cn, c)
        h = np.where(m, hn, _r(h, rnd).astype(np.float32))  # a masked step outputs h_{t-1} in bfloat16
        cs[:, t] = c
        out[:, s] = h
        if h_used is not None:
            h = h_used[:, s].astype(np.float32)
    res = dict(out=out, h=_r(h), c=_r(np.float32(c)), gates=acts, cs=cs)
    # backward
    dh = np.zeros((B, U)) if dh_last is None else dh_last.astype(np.float64)
    dc = np.zeros((B, U)) if dc_last is None else dc_last.astype(np.float64)
    dG = np.zeros((B, T, 4 * U)); dGr = np.zeros((B, T, 4 * U))
    hr = np.zeros((B, U))
    for s in range(T - 1, -1, -1):
        t = T - 1 - s if back else s
        dh = dh + dout[:, s]
        if s < T - 1:
            dh = dh + (hr * rec_m if rec_m is not None else hr)
        i, f, g, o = (acts[:, t, k * U:(k + 1) * U] for k in range(4))
        tc = np.tanh(cs[:, t])
        d = dc + dh * o * (1 - tc * tc)
        dz = np.concatenate([d * g * i * (1 - i), d * cps[:, t] * f * (1 - f), d * i * (1 - g * g),
                             dh * tc * o * (1 - o)], 1)
        m = on[:, t, None]
        dz = np.where(m, dz, 0)
        dc = np.where(m, d * f, dc)
        dh = np.where(m, 0, dh)
        dG[:, t] = dz
        dGr[:, t] = _r(np.float32(dz), rnd) if dg_used is None else dg_used[:, t]
        hr = dGr[:, t] @ R.T
    res["dh0"] = dh + (hr * rec_m if rec_m is not None else hr) if T else dh
    res["dc0"] = dc
    g2 = dGr.reshape(B * T, 4 * U)
    res["dR"] = hop.reshape(B * T, U).T @ g2
    res["dK"] = xo.reshape(B * T, F).T @ g2
    res["db"] = dG.reshape(B * T, 4 * U).sum(0)
    dx = (g2 @ K.T).reshape(B, T, F)
    res["dx"] = dx * in_m[:, None, :] if in_m is not None else dx
    res["dG"], res["hop"], res["xo"] = dG, hop, xo
    return res


def _buf(a, bf16):
    from lamina.backend import _cpu
    a = np.ascontiguousarray(a, np.float32)
    if bf16:
        return _cpu.from_numpy((a.view(np.uint32) >> 16).astype(np.uint16), 0, 5)
    return _cpu.from_numpy(a)


def _read(buf, shape):
    from lamina.backend import _cpu
    a = _cpu.to_numpy(buf, list(shape))
    return dtypes.bf16_bits_to_float32(a) if buf.dtype == 5 else a


def _empty(shape, bf16=False):
    return _buf(np.zeros(shape, np.float32), bf16)


def _case(rng, B, T, F, U, mask, dropout, bias, states_bf16):
    x = round_bf16(rng.normal(size=(B, T, F)))
    K = round_bf16(rng.normal(scale=0.5 / np.sqrt(F), size=(F, 4 * U)))
    R = round_bf16(rng.normal(scale=0.8 / np.sqrt(U), size=(U, 4 * U)))
    b = round_bf16(rng.normal(scale=0.3, size=(4 * U,))) if bias else None
    h0 = rng.normal(scale=0.5, size=(B, U)).astype(np.float32)
    c0 = rng.normal(scale=0.5, size=(B, U)).astype(np.float32)
    m = rng.random((B, T)) > 0.3 if mask else None
    in_m = ((rng.random((B, F)) > 0.2) / 0.8).astype(np.float32) if dropout else None
    rec_m = ((rng.random((B, U)) > 0.25) / 0.75).astype(np.float32) if dropout else None
    if states_bf16:  # passed as bfloat16 buffers (_run): their values
        h0, c0 = round_bf16(h0), round_bf16(c0)
        rec_m = None if rec_m is None else round_bf16(rec_m)
    dout = round_bf16(rng.normal(size=(B, T, U)))
    dh_last = round_bf16(rng.normal(size=(B, U)))
    dc_last = round_bf16(rng.normal(size=(B, U)))
    return x, h0, c0, K, R, b, m, in_m, rec_m, dout, dh_last, dc_last


def _run(case, back, bf16_states, dx_bf16=False, accumulate=0, init=None, keep=False):
    """Runs the kernels on bfloat16 x, kernel, recurrent kernel (and bias / states / incoming gradients
    per bf16_states); returns a dict of what they wrote, as float32 arrays."""
    from lamina.backend import _cpu
    x, h0, c0, K, R, b, m, in_m, rec_m, dout, dh_last, dc_last = case
    B, T, F = x.shape
    U = R.shape[0]
    X, Kb, Rb = _buf(x, True), _buf(K, True), _buf(R, True)
    H0, C0 = _buf(h0, bf16_states), _buf(c0, bf16_states)
    Bb = None if b is None else _buf(b, bf16_states)
    M = None if m is None else _cpu.from_numpy(np.ascontiguousarray(m))
    IM = None if in_m is None else _buf(in_m, False)
    RM = None if rec_m is None else _buf(rec_m, bf16_states)
    out, h, c = _empty((B, T, U), True), _empty((B, U), True), _empty((B, U), True)
    gates, cs = _empty((B, T, 4 * U)), _empty((B, T, U))
    _cpu.lstm_forward(X, H0, C0, Kb, Rb, Bb, M, IM, RM, B, T, F, U, back, out, h, c, gates, cs)
    init = init or {}
    dx = _empty((B, T, F), dx_bf16)
    dh0, dc0 = _empty((B, U)), _empty((B, U))
    dK, dR, db = (_buf(init.get(k, np.zeros(s, np.float32)), False)
                  for k, s in (("dK", (F, 4 * U)), ("dR", (U, 4 * U)), ("db", (4 * U,))))
    dg = _empty((B, T, 4 * U)) if keep else None
    hp = _empty((B, T, U + F)) if keep else None
    _cpu.lstm_backward(X, H0, C0, Kb, Rb, M, IM, RM, B, T, F, U, back, out, gates, cs, _buf(dout, bf16_states),
                       _buf(dh_last, bf16_states), _buf(dc_last, bf16_states), dx, dh0, dc0, dK, dR, db, accumulate,
                       dg, None, hp)
    got = dict(out=_read(out, (B, T, U)), h=_read(h, (B, U)), c=_read(c, (B, U)), gates=_read(gates, (B, T, 4 * U)),
               cs=_read(cs, (B, T, U)), dx=_read(dx, (B, T, F)), dh0=_read(dh0, (B, U)), dc0=_read(dc0, (B, U)),
               dK=_read(dK, (F, 4 * U)), dR=_read(dR, (U, 4 * U)), db=_read(db, (4 * U,)))
    if keep:
        got["dG"], got["hx"] = _read(dg, (B, T, 4 * U)), _read(hp, (B, T, U + F))
    return got


@pytest.fixture(params=[True, False], ids=["avx512bf16", "widened"])
def gemm_path(request):
    from lamina.backend import _cpu
    if request.param and not _cpu.bf16_gemm_native():
        pytest.skip("this CPU has no AVX512-BF16")
    _cpu._set_bf16_gemm(1 if request.param else 0)
    assert _cpu.bf16_gemm_native() == request.param
    yield request.param
    _cpu._set_bf16_gemm(-1)


# the errors allowed: float32 against float64 sums (and the rare bfloat16 rounding that a float32
# sum puts on the other side of a tie); the checks below see that dropping any one rounding of
# the reference moves it by far more
_TOL = {"gates": 2e-5, "cs": 5e-5, "dx": 1e-4, "dh0": 1e-4, "dc0": 1e-4, "dK": 1e-4, "dR": 1e-4, "db": 1e-4}


def _err(got, want):
    return np.abs(got - want).max() / (np.abs(want).max() + 1e-6) if want.size else 0.0


def _rounded_from(got, want64):
    """got (bfloat16 values) is want64 rounded: exactly for nearly all elements (a float32 against a
    float64 value may fall on the other side of a rounding boundary), within one unit for all."""
    w = round_bf16(np.float32(want64))
    ulp = 2.0 ** -7 * np.abs(w) + 1e-30
    assert (np.abs(got - w) <= ulp).all(), np.abs(got - w).max()
    assert (got == w).mean() >= 0.99, (got == w).mean()


@pytest.mark.parametrize("B,T,F,U,mask,back,dropout,bias,states_bf16", [
    (3, 5, 7, 9, False, False, False, True, False),
    (3, 5, 7, 9, True, True, True, False, True),
    (4, 6, 5, 8, True, False, False, True, False),
    (2, 4, 3, 6, False, True, True, True, False),
    (80, 4, 9, 32, True, False, True, True, False),   # several blocks of rows (threads)
    (5, 3, 4, 300, False, True, False, True, True),   # the per-step products over several K and N blocks
    (2, 0, 3, 4, False, False, False, True, False),   # no steps
])
def test_lstm_bf16_kernels_match_a_rounded_reference(gemm_path, rng, B, T, F, U, mask, back, dropout, bias,
                                                     states_bf16):
    case = _case(rng, B, T, F, U, mask, dropout, bias, states_bf16)
    x, h0, c0, K, R, b, m, in_m, rec_m, dout, dh_last, dc_last = case
    got = _run(case, back, states_bf16, keep=True)
    plain = _run(case, back, states_bf16)  # without the deferred-gradient outputs: the same results
    for k, v in plain.items():
        np.testing.assert_array_equal(v, got[k], err_msg=k)
    args = (x, h0, c0, K, R, b, m, back, in_m, rec_m, dout, dh_last, dc_last)
    want = ref(*args, h_used=got["out"], dg_used=got["dG"])
    if m is not None:  # masked steps leave their pre-activations in the gate buffer
        got["gates"] = np.where(m[..., None], got["gates"], want["gates"])
    if T:
        _rounded_from(got["out"], want["out"])
        _rounded_from(got["dG"], want["dG"])
    for k in ("h", "c"):  # bfloat16: within one rounding (of a float32 against a float64 value)
        assert (np.abs(got[k] - want[k]) <= 2.0 ** -7 * np.abs(want[k]) + 1e-6).all(), k
    for k, tol in _TOL.items():
        assert _err(got[k], want[k]) <= tol, (k, _err(got[k], want[k]))
    if dropout:
        # the tolerances see the rounding of the masked operands: without it the reference is
        # further off than they allow
        loose = ref(*args, rnd=False, h_used=got["out"], dg_used=got["dG"])
        for k in ("cs", "dK", "dR"):
            assert _err(got[k], loose[k]) > 5 * _TOL[k], k


def test_lstm_bf16_accumulates_and_keeps_what_deferred_gradients_need(gemm_path, rng):
    case = _case(rng, 4, 5, 6, 7, True, True, True, False)
    x, h0, c0, K, R, b, m, in_m, rec_m, dout, dh_last, dc_last = case
    init = {"dK": rng.normal(size=K.shape).astype(np.float32), "dR": rng.normal(size=R.shape).astype(np.float32),
            "db": rng.normal(size=(28,)).astype(np.float32)}
    got = _run(case, False, False, dx_bf16=True, accumulate=7, init=init, keep=True)
    want = ref(x, h0, c0, K, R, b, m, False, in_m, rec_m, dout, dh_last, dc_last, h_used=got["out"],
               dg_used=got["dG"])
    for k in ("dK", "dR", "db"):
        np.testing.assert_allclose(got[k], init[k] + want[k], rtol=0, atol=1e-4 * np.abs(want[k]).max())
    _rounded_from(got["dx"], want["dx"])  # a bfloat16 inputs gradient: the float32 one rounded once
    # the gate gradients as the products read them (bfloat16 values), [H_prev X] as the operands
    _rounded_from(got["dG"], want["dG"])
    hx = got["hx"]
    np.testing.assert_array_equal(hx[..., :7], want["hop"])
    np.testing.assert_array_equal(hx[..., 7:], want["xo"])


def test_lstm_kernels_refuse_mixed_dtypes(rng):
    from lamina.backend import _cpu
    B, T, F, U = 2, 3, 4, 5
    args = lambda xb, kb, rb: (_empty((B, T, F), xb), _empty((B, U)), _empty((B, U)), _empty((F, 4 * U), kb),  # noqa
                               _empty((U, 4 * U), rb), None, None, None, None, B, T, F, U, False)
    for dt in ((True, False, True), (False, True, True), (True, True, False)):
        with pytest.raises(TypeError, match="one dtype.*cast them"):
            _cpu.lstm_forward(*args(*dt), _empty((B, T, U), True), _empty((B, U), True), _empty((B, U), True),
                              _empty((B, T, 4 * U)), None)
    with pytest.raises(TypeError, match="outputs of dtype bfloat16"):  # bfloat16 compute: bfloat16 outputs
        _cpu.lstm_forward(*args(True, True, True), _empty((B, T, U)), _empty((B, U), True), _empty((B, U), True),
                          _empty((B, T, 4 * U)), None)
    with pytest.raises(TypeError, match="gates of dtype float32"):
        _cpu.lstm_forward(*args(True, True, True), _empty((B, T, U), True), _empty((B, U), True),
                          _empty((B, U), True), _empty((B, T, 4 * U), True), None)


# ---- the op and the layer ---------------------------------------------------------------------------

@pytest.fixture
def mixed():
    lamina.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    lamina.mixed_precision.set_global_policy("float32")


def test_lstm_op_dtypes(rng):
    from lamina import ops
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    K = rng.normal(size=(4, 20)).astype(np.float32)
    R = rng.normal(size=(5, 20)).astype(np.float32)
    b16 = lambda a: lamina.convert_to_tensor(a, dtype="bfloat16")  # noqa: E731
    out, h, c = ops.lstm(b16(x), None, None, b16(K), b16(R), None)
    assert (out.dtype, h.dtype, c.dtype) == ("bfloat16",) * 3
    # not all three bfloat16: float32 computation (the bfloat16 ones cast up)
    out2, h2, c2 = ops.lstm(x, None, None, b16(K), b16(R), b16(np.zeros(20, np.float32)))
    assert (out2.dtype, h2.dtype, c2.dtype) == ("float32",) * 3
    want = ops.lstm(round_bf16(x), None, None, round_bf16(K), round_bf16(R), None)[0].numpy()
    np.testing.assert_allclose(out2.numpy(), ops.lstm(x, None, None, round_bf16(K), round_bf16(R), None)[0].numpy())
    np.testing.assert_allclose(out.numpy(), want, atol=3e-2)


def _seq_data(rng, n=64):
    x = rng.normal(size=(n, 7, 5)).astype(np.float32)
    y = (x[:, :, 0].sum(1) > 0).astype(np.int32)
    return x, y


def test_lstm_layer_computes_in_bf16_and_trains(mixed, rng):
    device = importlib.import_module("lamina.backend.device")
    x, y = _seq_data(rng)
    m = lamina.Sequential([lamina.Input((7, 5)), layers.LSTM(16), layers.Dense(2, dtype="float32")])
    m.compile(optimizer=lamina.optimizers.Adam(1e-2),
              loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    m(x[:2])
    kernels = m.layers[0].cell.kernel.device.kernels
    assert isinstance(kernels, device.WideningTable)
    before = dict(kernels.widened)
    seen = []
    orig = {name: getattr(kernels, name) for name in ("lstm_forward", "lstm_backward")}
    for name, k in orig.items():  # what the kernels receive: x's dtype code
        def spy(*a, _k=k, _n=name):
            seen.append((_n, a[0].dtype))
            return _k(*a)
        setattr(kernels, name, spy)
    try:
        h = m.fit(x, y, epochs=8, batch_size=16, verbose=0).history["loss"]
    finally:
        for name, k in orig.items():
            setattr(kernels, name, k)
    assert h[-1] < 0.8 * h[0], h
    # the LSTM kernels took bfloat16 buffers, themselves (no float32 copies)
    assert {n for n, _ in seen} == {"lstm_forward", "lstm_backward"} and all(code == 5 for _, code in seen), seen
    assert kernels.widened.get("lstm_forward", 0) == before.get("lstm_forward", 0)
    assert kernels.widened.get("lstm_backward", 0) == before.get("lstm_backward", 0)
    assert all(w.dtype == "float32" for w in m.weights)


@pytest.mark.parametrize("kw", [dict(), dict(go_backwards=True, return_sequences=True), dict(dropout=0.3)],
                         ids=["plain", "backwards", "dropout"])
def test_lstm_layer_mixed_matches_float32(rng, kw):
    x = rng.normal(size=(6, 9, 5)).astype(np.float32)
    mask = np.ones((6, 9), bool)
    mask[1, 6:] = mask[4, 3:] = False
    res = {}
    weights = None
    for policy in ("float32", "mixed_bfloat16"):
        lamina.mixed_precision.set_global_policy(policy)
        try:
            layer = layers.LSTM(12, **kw)
            layer(x)
            if weights is None:
                weights = layer.get_weights()
            layer.set_weights(weights)
            v = lamina.Variable(x)
            with lamina.GradientTape() as tape:
                lamina.utils.set_random_seed(3)
                y = layer(v, mask=lamina.convert_to_tensor(mask), training="dropout" in kw)
                loss = lamina.ops.sum(lamina.ops.cast(y, "float32") *
                                      np.linspace(-1, 1, int(np.prod(y.shape)), dtype=np.float32).reshape(y.shape))
            grads = tape.gradient(loss, [v] + layer.trainable_weights)
            res[policy] = (y, [g.numpy() for g in grads])
        finally:
            lamina.mixed_precision.set_global_policy("float32")
    (y32, g32), (y16, g16) = res["float32"], res["mixed_bfloat16"]
    assert y16.dtype == "bfloat16" and all(g.dtype == np.float32 for g in g16)
    np.testing.assert_allclose(y16.numpy(), y32.numpy(), atol=3e-2 * np.abs(y32.numpy()).max())
    for a, b in zip(g32, g16):
        np.testing.assert_allclose(b, a, atol=5e-2 * np.abs(a).max())


def test_lstm_replayed_steps_match_the_eager_ones(mixed, rng):
    x, y = _seq_data(rng, 96)
    results = []
    for eager in (False, True):
        lamina.utils.set_random_seed(7)
        m = lamina.Sequential([lamina.Input((7, 5)), layers.LSTM(8, return_sequences=True), layers.LSTM(6),
                               layers.Dense(2)])
        m.compile(optimizer="sgd", loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=eager)
        m.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
        results.append([w.numpy() for w in m.weights])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [layers.LSTM, layers.GRU])
def test_stateful_layers_under_mixed_precision_carry_float32_states(mixed, rng, cls):
    """The states of a stateful layer stay float32 variables (no bfloat16 copy is swapped in during
    the call, which assign would fail on); two halves of a sequence give the whole sequence's output."""
    x = rng.normal(size=(3, 8, 4)).astype(np.float32)
    whole = cls(6, return_sequences=True)
    y = whole(x).numpy()
    half = cls(6, return_sequences=True, stateful=True)
    half(x[:, :4])
    half.set_weights(whole.get_weights())
    half.reset_states()
    y1, y2 = half(x[:, :4]), half(x[:, 4:])
    assert all(v.dtype == "float32" and isinstance(v, lamina.Variable) for v in half.states)
    got = np.concatenate([y1.numpy(), y2.numpy()], 1)
    np.testing.assert_allclose(got, y, atol=2e-2 * np.abs(y).max())


def test_bf16_lstm_deferred_weight_gradients_equal_the_direct_ones(rng):
    """Inside deferred_weight_gradients() the kernel and recurrent kernel gradients are formed later
    from the gate gradients and [H_prev X] the backward kernel keeps: with bfloat16 compute those hold
    the rounded operands, so the deferred gradients are the direct ones (up to float32 sums)."""
    from lamina import ops
    from lamina.backend import autodiff
    b16 = lambda a: lamina.Variable(lamina.convert_to_tensor(a, dtype="bfloat16"))  # noqa: E731
    x = rng.normal(size=(4, 6, 5)).astype(np.float32)
    K = rng.normal(scale=0.3, size=(5, 28)).astype(np.float32)
    R = rng.normal(scale=0.3, size=(7, 28)).astype(np.float32)
    drop = ((rng.random((4, 5)) > 0.3) / 0.7).astype(np.float32)
    res = []
    for defer in (False, True):
        vs = [b16(a) for a in (x, K, R)]
        with lamina.GradientTape() as tape:
            out, _, _ = ops.lstm(vs[0], None, None, vs[1], vs[2], None, input_dropout=drop)
            loss = ops.sum(ops.cast(out, "float32") ** 2)
        if defer:
            with autodiff.deferred_weight_gradients([vs[0].device]):
                res.append([g.numpy() for g in tape.gradient(loss, vs)])
        else:
            res.append([g.numpy() for g in tape.gradient(loss, vs)])
    for a, b in zip(*res):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())
