"""The recurrent kernels computing in bfloat16 (csrc/cpu/rnn.cpp, mixed precision): the LSTM, the
GRU (reset_after) and the simple RNN, with bfloat16 operands for every matrix product, float32 gate
maths, c and sums, on both bfloat16 GEMM paths (AVX512-BF16 and widened to float32), against
float64 numpy step loops that round the same operands to bfloat16 -- so the comparison is tight
enough to see a wrong rounding; the dtype contract; and the LSTM, GRU and SimpleRNN layers under
mixed_bfloat16 (training, float32 parity, replay, deferred weight gradients)."""
import importlib

import numpy as np
import pytest

import lamina
from lamina import layers

from bf16_refs import buf as _buf, gemm_path, read as _read, round_bf16, rounded as _r  # noqa: F401 (a fixture)


def _sig(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


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


# ---- the GRU (reset_after) and the simple RNN ---------------------------------------------------------

_G = {"gru": 3, "simple_rnn": 1}


def ref_gs(cell, x, h0, K, R, b, mask, back, in_m, rec_m, dout, dh_last, rnd=True, h_used=None, dg_used=None,
           dgr_used=None):
    """As ref(), for the GRU (reset_after; b (2, 3U) = [input; recurrent]) and the simple RNN: the
    product operands x * input mask, h_{t-1} (the bfloat16 outputs) * recurrent mask and the gate
    gradients (the GRU's input and recurrent ones, each for its products) rounded to bfloat16;
    the GRU's z h_{t-1} takes the state as the outputs hold it (h0 at the first step).
    dg_used / dgr_used: the kernel's rounded gate gradients (teacher forcing, as h_used)."""
    B, T, F = x.shape
    U = R.shape[0]
    G = _G[cell]
    gru = cell == "gru"
    K, R = K.astype(np.float64), R.astype(np.float64)
    if b is None:
        b = np.zeros((2, G * U) if gru else (G * U,))
    b = b.astype(np.float64)
    bx, br = (b[0], b[1]) if gru else (b, np.zeros(G * U))
    xm = x.astype(np.float32) * (in_m[:, None, :] if in_m is not None else np.float32(1))
    xo = _r(xm, rnd)
    gx = xo @ K + bx
    h = h0.astype(np.float32)
    acts = np.zeros((B, T, G * U)); rhs = np.zeros((B, T, U)); hps = np.zeros((B, T, U))
    hop = np.zeros((B, T, U)); out = np.zeros((B, T, U), np.float32)
    on = np.ones((B, T), bool) if mask is None else np.asarray(mask, bool)
    for s in range(T):
        t = T - 1 - s if back else s
        hm = h * rec_m if rec_m is not None else h
        ho = _r(hm, rnd)
        hop[:, t] = ho
        hps[:, t] = h
        gr = ho @ R + br
        if gru:
            z = _sig(gx[:, t, :U] + gr[:, :U])
            r = _sig(gx[:, t, U:2 * U] + gr[:, U:2 * U])
            rr = gr[:, 2 * U:]
            hh = np.tanh(gx[:, t, 2 * U:] + r * rr)
            hn = z * h + (1 - z) * hh
            acts[:, t] = np.concatenate([z, r, hh], 1)
            rhs[:, t] = rr
        else:
            hn = np.tanh(gx[:, t] + gr)
            acts[:, t] = hn
        hn = _r(np.float32(hn), rnd).astype(np.float32)
        h = np.where(on[:, t, None], hn, _r(h, rnd).astype(np.float32))
        out[:, s] = h
        if h_used is not None:
            h = h_used[:, s].astype(np.float32)
    res = dict(out=out, h=_r(h), gates=acts, rh=rhs)
    dh = np.zeros((B, U)) if dh_last is None else dh_last.astype(np.float64)
    dG = np.zeros((B, T, G * U)); dGr = np.zeros((B, T, G * U))  # unrounded
    dGo = np.zeros((B, T, G * U)); dGro = np.zeros((B, T, G * U))  # the products' operands
    hr = np.zeros((B, U))
    for s in range(T - 1, -1, -1):
        t = T - 1 - s if back else s
        dh = dh + dout[:, s]
        if s < T - 1:
            dh = dh + (hr * rec_m if rec_m is not None else hr)
        m = on[:, t, None]
        if gru:
            z, r, hh = (acts[:, t, k * U:(k + 1) * U] for k in range(3))
            hp = hps[:, t]
            dzp = dh * (hp - hh) * z * (1 - z)
            dhh = dh * (1 - z) * (1 - hh * hh)
            drp = dhh * rhs[:, t] * r * (1 - r)
            dz = np.concatenate([dzp, drp, dhh], 1)
            dzr = np.concatenate([dzp, drp, dhh * r], 1)
            dh_next = dh * z
        else:
            a = acts[:, t]
            dz = dzr = dh * (1 - a * a)
            dh_next = np.zeros_like(dh)
        dz, dzr = np.where(m, dz, 0), np.where(m, dzr, 0)
        dh = np.where(m, dh_next, dh)
        dG[:, t], dGr[:, t] = dz, dzr
        dGo[:, t] = _r(np.float32(dz), rnd) if dg_used is None else dg_used[:, t]
        dGro[:, t] = (_r(np.float32(dzr), rnd) if dgr_used is None else dgr_used[:, t]) if gru else dGo[:, t]
        hr = dGro[:, t] @ R.T
    res["dh0"] = dh + (hr * rec_m if rec_m is not None else hr) if T else dh
    g2, g2r = dGo.reshape(B * T, G * U), dGro.reshape(B * T, G * U)
    res["dR"] = hop.reshape(B * T, U).T @ g2r
    res["dK"] = xo.reshape(B * T, F).T @ g2
    db = dG.reshape(B * T, G * U).sum(0)
    res["db"] = np.stack([db, dGr.reshape(B * T, G * U).sum(0)]) if gru else db
    dx = (g2 @ K.T).reshape(B, T, F)
    res["dx"] = dx * in_m[:, None, :] if in_m is not None else dx
    res["dG"], res["dGr"], res["hop"], res["xo"] = dG, dGr, hop, xo
    return res


def _case_gs(rng, cell, B, T, F, U, mask, dropout, bias, states_bf16):
    G = _G[cell]
    x = round_bf16(rng.normal(size=(B, T, F)))
    K = round_bf16(rng.normal(scale=0.5 / np.sqrt(F), size=(F, G * U)))
    R = round_bf16(rng.normal(scale=0.8 / np.sqrt(U), size=(U, G * U)))
    bshape = (2, G * U) if cell == "gru" else (G * U,)
    b = round_bf16(rng.normal(scale=0.3, size=bshape)) if bias else None
    h0 = rng.normal(scale=0.5, size=(B, U)).astype(np.float32)
    m = rng.random((B, T)) > 0.3 if mask else None
    in_m = ((rng.random((B, F)) > 0.2) / 0.8).astype(np.float32) if dropout else None
    rec_m = ((rng.random((B, U)) > 0.25) / 0.75).astype(np.float32) if dropout else None
    if states_bf16:
        h0 = round_bf16(h0)
        rec_m = None if rec_m is None else round_bf16(rec_m)
    dout = round_bf16(rng.normal(size=(B, T, U)))
    dh_last = round_bf16(rng.normal(size=(B, U)))
    return x, h0, K, R, b, m, in_m, rec_m, dout, dh_last


def _run_gs(cell, case, back, bf16_states, dx_bf16=False, accumulate=0, init=None, keep=False):
    """As _run, for gru_* / simple_rnn_*. keep: the deferred-gradient buffers (the GRU: dgates,
    dgates_rec, h_prev (B, T, U); the RNN: dgates, [h_prev x] (B, T, U + F))."""
    from lamina.backend import _cpu
    x, h0, K, R, b, m, in_m, rec_m, dout, dh_last = case
    B, T, F = x.shape
    U = R.shape[0]
    GU = _G[cell] * U
    gru = cell == "gru"
    X, Kb, Rb = _buf(x, True), _buf(K, True), _buf(R, True)
    H0 = _buf(h0, bf16_states)
    Bb = None if b is None else _buf(b, bf16_states)
    M = None if m is None else _cpu.from_numpy(np.ascontiguousarray(m))
    IM = None if in_m is None else _buf(in_m, False)
    RM = None if rec_m is None else _buf(rec_m, bf16_states)
    out, h = _empty((B, T, U), True), _empty((B, U), True)
    gates = _empty((B, T, GU))
    bshape = (2, GU) if gru else (GU,)
    if gru:
        rh = _empty((B, T, U))
        _cpu.gru_forward(X, H0, Kb, Rb, Bb, M, IM, RM, B, T, F, U, back, out, h, gates, rh)
    else:
        _cpu.simple_rnn_forward(X, H0, Kb, Rb, Bb, M, IM, RM, B, T, F, U, back, out, h, gates)
    init = init or {}
    dx = _empty((B, T, F), dx_bf16)
    dh0 = _empty((B, U))
    dK, dR, db = (_buf(init.get(k, np.zeros(s, np.float32)), False)
                  for k, s in (("dK", (F, GU)), ("dR", (U, GU)), ("db", bshape)))
    dg = _empty((B, T, GU)) if keep else None
    dgr = _empty((B, T, GU)) if keep and gru else None
    W = U if gru else U + F
    hp = _empty((B, T, W)) if keep else None
    if gru:
        _cpu.gru_backward(X, H0, Kb, Rb, M, IM, RM, B, T, F, U, back, out, gates, rh, _buf(dout, bf16_states),
                          _buf(dh_last, bf16_states), dx, dh0, dK, dR, db, accumulate, dg, dgr, hp)
    else:
        _cpu.simple_rnn_backward(X, H0, Kb, Rb, M, IM, RM, B, T, F, U, back, out, gates, _buf(dout, bf16_states),
                                 _buf(dh_last, bf16_states), dx, dh0, dK, dR, db, accumulate, dg, None, hp)
    got = dict(out=_read(out, (B, T, U)), h=_read(h, (B, U)), gates=_read(gates, (B, T, GU)), dx=_read(dx, (B, T, F)),
               dh0=_read(dh0, (B, U)), dK=_read(dK, (F, GU)), dR=_read(dR, (U, GU)), db=_read(db, bshape))
    if gru:
        got["rh"] = _read(rh, (B, T, U))
    if keep:
        got["dG"], got["hx"] = _read(dg, (B, T, GU)), _read(hp, (B, T, W))
        got["dGr"] = _read(dgr, (B, T, GU)) if gru else got["dG"]
    return got


_TOL_GS = {"gates": 2e-5, "rh": 2e-5, "dx": 1e-4, "dh0": 1e-4, "dK": 1e-4, "dR": 1e-4, "db": 1e-4}


@pytest.mark.parametrize("cell", ["gru", "simple_rnn"])
@pytest.mark.parametrize("B,T,F,U,mask,back,dropout,bias,states_bf16", [
    (3, 5, 7, 9, False, False, False, True, False),
    (3, 5, 7, 9, True, True, True, False, True),
    (4, 6, 5, 8, True, False, False, True, False),
    (2, 4, 3, 6, False, True, True, True, False),
    (80, 4, 9, 32, True, False, True, True, False),   # several blocks of rows (threads: the GRU)
    (70, 3, 5, 64, True, True, True, True, True),     # several blocks of rows (threads: both)
    (5, 3, 4, 300, False, True, False, True, True),   # the per-step products over several K and N blocks
    (2, 0, 3, 4, False, False, False, True, False),   # no steps
])
def test_gru_and_rnn_bf16_kernels_match_a_rounded_reference(gemm_path, rng, cell, B, T, F, U, mask, back, dropout,
                                                            bias, states_bf16):
    gru = cell == "gru"
    case = _case_gs(rng, cell, B, T, F, U, mask, dropout, bias, states_bf16)
    x, h0, K, R, b, m, in_m, rec_m, dout, dh_last = case
    got = _run_gs(cell, case, back, states_bf16, keep=True)
    plain = _run_gs(cell, case, back, states_bf16)  # without the deferred-gradient outputs: the same results
    for k, v in plain.items():
        np.testing.assert_array_equal(v, got[k], err_msg=k)
    args = (cell, x, h0, K, R, b, m, back, in_m, rec_m, dout, dh_last)
    want = ref_gs(*args, h_used=got["out"], dg_used=got["dG"], dgr_used=got["dGr"])
    if m is not None:  # masked steps leave their pre-activations in the gate buffer, rh unwritten
        got["gates"] = np.where(m[..., None], got["gates"], want["gates"])
        got["rh"] = np.where(m[..., None], got["rh"], want["rh"]) if gru else None
    if not gru:
        got["rh"] = want["rh"]
    if T:
        _rounded_from(got["out"], want["out"])
        _rounded_from(got["dG"], want["dG"])
        _rounded_from(got["dGr"], want["dGr"])
    assert (np.abs(got["h"] - want["h"]) <= 2.0 ** -7 * np.abs(want["h"]) + 1e-6).all()
    for k, tol in _TOL_GS.items():
        assert _err(got[k], want[k]) <= tol, (k, _err(got[k], want[k]))
    if dropout:  # the tolerances see the rounding of the masked operands
        loose = ref_gs(*args, rnd=False, h_used=got["out"], dg_used=got["dG"], dgr_used=got["dGr"])
        for k in ("rh" if gru else "gates", "dK", "dR"):
            assert _err(got[k], loose[k]) > 5 * _TOL_GS[k], k


@pytest.mark.parametrize("cell", ["gru", "simple_rnn"])
def test_gru_and_rnn_bf16_accumulate_and_keep_what_deferred_gradients_need(gemm_path, rng, cell):
    G = _G[cell]
    U, F = 7, 6
    case = _case_gs(rng, cell, 4, 5, F, U, True, True, True, False)
    x, h0, K, R, b, m, in_m, rec_m, dout, dh_last = case
    bshape = (2, G * U) if cell == "gru" else (G * U,)
    init = {"dK": rng.normal(size=K.shape).astype(np.float32), "dR": rng.normal(size=R.shape).astype(np.float32),
            "db": rng.normal(size=bshape).astype(np.float32)}
    got = _run_gs(cell, case, True, False, dx_bf16=True, accumulate=7, init=init, keep=True)
    want = ref_gs(cell, x, h0, K, R, b, m, True, in_m, rec_m, dout, dh_last, h_used=got["out"], dg_used=got["dG"],
                  dgr_used=got["dGr"])
    for k in ("dK", "dR", "db"):
        np.testing.assert_allclose(got[k], init[k] + want[k], rtol=0, atol=1e-4 * np.abs(want[k]).max())
    _rounded_from(got["dx"], want["dx"])
    _rounded_from(got["dG"], want["dG"])
    _rounded_from(got["dGr"], want["dGr"])
    hx = got["hx"]
    np.testing.assert_array_equal(hx[..., :U], want["hop"])
    if cell == "simple_rnn":
        np.testing.assert_array_equal(hx[..., U:], want["xo"])
    # the weight gradients formed later from what was kept: the direct ones
    direct = _run_gs(cell, case, True, False)
    B, T = x.shape[:2]
    dG, dGr = got["dG"].reshape(B * T, -1).astype(np.float64), got["dGr"].reshape(B * T, -1).astype(np.float64)
    hp = hx[..., :U].reshape(B * T, U).astype(np.float64)
    np.testing.assert_allclose(hp.T @ dGr, direct["dR"], rtol=0, atol=1e-5 * np.abs(direct["dR"]).max())
    np.testing.assert_allclose(want["xo"].reshape(B * T, F).T @ dG, direct["dK"], rtol=0,
                               atol=1e-5 * np.abs(direct["dK"]).max())


@pytest.mark.parametrize("cell", ["gru", "simple_rnn"])
def test_gru_and_rnn_kernels_refuse_mixed_dtypes(cell):
    from lamina.backend import _cpu
    B, T, F, U = 2, 3, 4, 5
    GU = _G[cell] * U
    fwd = getattr(_cpu, cell + "_forward")
    extra = (_empty((B, T, U)),) if cell == "gru" else ()
    args = lambda xb, kb, rb: (_empty((B, T, F), xb), _empty((B, U)), _empty((F, GU), kb),  # noqa
                               _empty((U, GU), rb), None, None, None, None, B, T, F, U, False)
    for dt in ((True, False, True), (False, True, True), (True, True, False)):
        with pytest.raises(TypeError, match="one dtype.*cast them"):
            fwd(*args(*dt), _empty((B, T, U), True), _empty((B, U), True), _empty((B, T, GU)), *extra)
    with pytest.raises(TypeError, match="outputs of dtype bfloat16"):
        fwd(*args(True, True, True), _empty((B, T, U)), _empty((B, U), True), _empty((B, T, GU)), *extra)
    with pytest.raises(TypeError, match="gates of dtype float32"):
        fwd(*args(True, True, True), _empty((B, T, U), True), _empty((B, U), True), _empty((B, T, GU), True), *extra)
    if cell == "gru":
        with pytest.raises(TypeError, match="saved recurrent candidates of dtype float32"):
            fwd(*args(True, True, True), _empty((B, T, U), True), _empty((B, U), True), _empty((B, T, GU)),
                _empty((B, T, U), True))


@pytest.mark.parametrize("cell", ["gru", "simple_rnn"])
def test_gru_and_rnn_float32_inputs_compute_in_float32(rng, cell):
    """Float32 inputs and weights take the float32 kernels: float32 results, as a float32 step loop's."""
    from lamina import ops
    op = getattr(ops, cell)
    G = _G[cell]
    x = rng.normal(size=(3, 4, 5)).astype(np.float32)
    K = rng.normal(scale=0.3, size=(5, G * 6)).astype(np.float32)
    R = rng.normal(scale=0.3, size=(6, G * 6)).astype(np.float32)
    out, h = op(x, None, K, R, None)
    assert out.dtype == h.dtype == "float32"
    # a float32 step loop (numpy) agrees to float32 precision
    hh = np.zeros((3, 6), np.float32)
    for t in range(4):
        gx, gr = x[:, t] @ K, hh @ R
        if cell == "gru":
            z, r = _sig(gx[:, :6] + gr[:, :6]), _sig(gx[:, 6:12] + gr[:, 6:12])
            hh = z * hh + (1 - z) * np.tanh(gx[:, 12:] + r * gr[:, 12:])
        else:
            hh = np.tanh(gx + gr)
    np.testing.assert_allclose(h.numpy(), hh, rtol=1e-5, atol=1e-6)


# ---- the op and the layer ---------------------------------------------------------------------------

@pytest.fixture
def mixed():
    lamina.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    lamina.mixed_precision.set_global_policy("float32")


def _op(name, x, K, R, b=None, **kw):
    """ops.lstm / ops.gru / ops.simple_rnn with zero initial states."""
    from lamina import ops
    states = (None, None) if name == "lstm" else (None,)
    return getattr(ops, name)(x, *states, K, R, b, **kw)


_OPS = {"lstm": 4, "gru": 3, "simple_rnn": 1}


@pytest.mark.parametrize("name", list(_OPS))
def test_op_dtypes(rng, name):
    G = _OPS[name]
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    K = rng.normal(size=(4, G * 5)).astype(np.float32)
    R = rng.normal(size=(5, G * 5)).astype(np.float32)
    bias = np.zeros((2, G * 5) if name == "gru" else (G * 5,), np.float32)
    b16 = lambda a: lamina.convert_to_tensor(a, dtype="bfloat16")  # noqa: E731
    res = _op(name, b16(x), b16(K), b16(R))
    assert all(t.dtype == "bfloat16" for t in res)
    # not all three bfloat16: float32 computation (the bfloat16 ones cast up)
    res2 = _op(name, x, b16(K), b16(R), b16(bias))
    assert all(t.dtype == "float32" for t in res2)
    want = _op(name, round_bf16(x), round_bf16(K), round_bf16(R))[0].numpy()
    np.testing.assert_allclose(res2[0].numpy(), _op(name, x, round_bf16(K), round_bf16(R))[0].numpy())
    np.testing.assert_allclose(res[0].numpy(), want, atol=3e-2)


def _seq_data(rng, n=64):
    x = rng.normal(size=(n, 7, 5)).astype(np.float32)
    y = (x[:, :, 0].sum(1) > 0).astype(np.int32)
    return x, y


_LAYERS = [(layers.LSTM, "lstm"), (layers.GRU, "gru"), (layers.SimpleRNN, "simple_rnn")]
_LAYER_IDS = [n for _, n in _LAYERS]


@pytest.mark.parametrize("cls,name", _LAYERS, ids=_LAYER_IDS)
def test_rnn_layer_computes_in_bf16_and_trains(mixed, rng, cls, name):
    device = importlib.import_module("lamina.backend.device")
    x, y = _seq_data(rng)
    m = lamina.Sequential([lamina.Input((7, 5)), cls(16), layers.Dense(2, dtype="float32")])
    m.compile(optimizer=lamina.optimizers.Adam(1e-2),
              loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    m(x[:2])
    kernels = m.layers[0].cell.kernel.device.kernels
    assert isinstance(kernels, device.WideningTable)
    before = dict(kernels.widened)
    seen = []
    names = (name + "_forward", name + "_backward")
    orig = {n: getattr(kernels, n) for n in names}
    for n, k in orig.items():  # what the kernels receive: x's and the kernels' dtype codes
        def spy(*a, _k=k, _n=n):
            seen.append((_n, a[0].dtype, a[3 if name == "lstm" else 2].dtype, a[4 if name == "lstm" else 3].dtype))
            return _k(*a)
        setattr(kernels, n, spy)
    try:
        h = m.fit(x, y, epochs=8, batch_size=16, verbose=0).history["loss"]
    finally:
        for n, k in orig.items():
            setattr(kernels, n, k)
    assert h[-1] < 0.8 * h[0], h
    # the kernels took bfloat16 buffers, themselves (no float32 copies)
    assert {s[0] for s in seen} == set(names) and all(s[1:] == (5, 5, 5) for s in seen), seen
    for n in names:
        assert kernels.widened.get(n, 0) == before.get(n, 0), n
    assert all(w.dtype == "float32" for w in m.weights)


@pytest.mark.parametrize("cls", [c for c, _ in _LAYERS], ids=_LAYER_IDS)
@pytest.mark.parametrize("kw", [dict(), dict(go_backwards=True, return_sequences=True), dict(dropout=0.3)],
                         ids=["plain", "backwards", "dropout"])
def test_rnn_layer_mixed_matches_float32(rng, kw, cls):
    x = rng.normal(size=(6, 9, 5)).astype(np.float32)
    mask = np.ones((6, 9), bool)
    mask[1, 6:] = mask[4, 3:] = False
    res = {}
    weights = None
    for policy in ("float32", "mixed_bfloat16"):
        lamina.mixed_precision.set_global_policy(policy)
        try:
            layer = cls(12, **kw)
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


@pytest.mark.parametrize("cls", [c for c, _ in _LAYERS], ids=_LAYER_IDS)
def test_rnn_replayed_steps_match_the_eager_ones(mixed, rng, cls):
    x, y = _seq_data(rng, 96)
    results = []
    for eager in (False, True):
        lamina.utils.set_random_seed(7)
        m = lamina.Sequential([lamina.Input((7, 5)), cls(8, return_sequences=True, dropout=0.2), cls(6),
                               layers.Dense(2)])
        m.compile(optimizer="sgd", loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=eager)
        m.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
        results.append([w.numpy() for w in m.weights])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [c for c, _ in _LAYERS], ids=_LAYER_IDS)
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


@pytest.mark.parametrize("name", list(_OPS))
def test_bf16_deferred_weight_gradients_equal_the_direct_ones(rng, name):
    """Inside deferred_weight_gradients() the kernel and recurrent kernel gradients are formed later
    from the gate gradients and [H_prev X] the backward kernel keeps: with bfloat16 compute those hold
    the rounded operands, so the deferred gradients are the direct ones (up to float32 sums)."""
    from lamina import ops
    from lamina.backend import autodiff
    b16 = lambda a: lamina.Variable(lamina.convert_to_tensor(a, dtype="bfloat16"))  # noqa: E731
    x = rng.normal(size=(4, 6, 5)).astype(np.float32)
    G = _OPS[name]
    K = rng.normal(scale=0.3, size=(5, G * 7)).astype(np.float32)
    R = rng.normal(scale=0.3, size=(7, G * 7)).astype(np.float32)
    drop = ((rng.random((4, 5)) > 0.3) / 0.7).astype(np.float32)
    rdrop = ((rng.random((4, 7)) > 0.3) / 0.7).astype(np.float32)
    res = []
    for defer in (False, True):
        vs = [b16(a) for a in (x, K, R)]
        with lamina.GradientTape() as tape:
            out = _op(name, vs[0], vs[1], vs[2], None, input_dropout=drop, recurrent_dropout=rdrop)[0]
            loss = ops.sum(ops.cast(out, "float32") ** 2)
        if defer:
            with autodiff.deferred_weight_gradients([vs[0].device]):
                res.append([g.numpy() for g in tape.gradient(loss, vs)])
        else:
            res.append([g.numpy() for g in tape.gradient(loss, vs)])
    for a, b in zip(*res):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())
