"""The fused attention kernel computing in bfloat16 (csrc/cpu/attention.cpp, mixed precision):
bfloat16 Q, K, V and dO, the probabilities P and the logit gradients dS rounded to bfloat16 before
the products they enter, float32 sums, softmax and statistics, and the output and the gradients
rounded once into bfloat16 -- against a float64 numpy reference that rounds the same operands, on
both bfloat16 GEMM paths (AVX512-BF16 and widened to float32), with masks, causal masking, a bias,
grouped-query heads, Tq != Tk, odd sizes and sizes that take several blocks, tasks and threads;
the dtype contract of the op and the kernels; and MultiHeadAttention under mixed_bfloat16 (float32
parity, training on bfloat16 buffers, replayed steps)."""
import importlib

import numpy as np
import pytest

import lamina
from lamina import layers, ops
from lamina.backend import _cpu

from bf16_refs import buf as _buf, gemm_path, read as _read, round_bf16, rounded as _r  # noqa: F401 (a fixture)

MASKED = np.float32(-0.7 * np.finfo(np.float32).max)


def reference(q, k, v, bias, keep, scale, dout, out_used, dl_used=None, rnd=True):
    """float64 attention forward and backward with the bfloat16 kernel's roundings (rnd): S = scale
    q k^T (+ bias, masked), P = softmax(S) rounded for P V and P^T dO, dS = P (dP - rowsum(dO O))
    rounded for dS K and dS^T q. q, k, v, dout hold bfloat16 values; out_used: the kernel's output
    (the O of rowsum(dO O), as the kernel reads it); dl_used: the kernel's float32 dS, whose rounding
    the reference takes (teacher forcing: a float32 dS on the other side of a rounding boundary than
    the float64 one moves one operand, not the comparison)."""
    B, Tq, N, H = q.shape
    Nkv = k.shape[2]
    G = N // Nkv
    q64, k64, v64 = (t.astype(np.float64) for t in (q, k, v))
    kk, vv = np.repeat(k64, G, axis=2), np.repeat(v64, G, axis=2)
    s = np.einsum("btnh,bsnh->bnts", q64, kk) * scale
    if bias is not None:
        s = s + bias
    s = np.where(keep, s, np.float64(MASKED))
    mx = s.max(-1, keepdims=True)
    e = np.exp(s - mx)
    tot = e.sum(-1, keepdims=True)
    p = e / tot
    pr = _r(p, rnd)
    out = np.einsum("bnts,bsnh->btnh", pr, vv)
    res = dict(out=out, max=mx[..., 0], inv=1 / tot[..., 0])
    do64 = dout.astype(np.float64)
    dsum = np.einsum("btnh,btnh->bnt", do64, out_used.astype(np.float64))
    dp = np.einsum("btnh,bsnh->bnts", do64, vv)
    ds = np.where(keep, p * (dp - dsum[..., None]), 0.0)
    res["dl"] = ds
    dsr = _r(ds if dl_used is None else dl_used, rnd)
    res["dq"] = np.einsum("bnts,bsnh->btnh", dsr, kk) * scale
    dk = np.einsum("bnts,btnh->bsnh", dsr, q64) * scale
    dv = np.einsum("bnts,btnh->bsnh", pr, do64)
    res["dk"] = dk.reshape(B, -1, Nkv, G, H).sum(3)
    res["dv"] = dv.reshape(B, -1, Nkv, G, v.shape[3]).sum(3)
    return res


def _strides(shape):
    return [shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3]]


def _bstrides(shape):
    """(B, N, Tq, Tk) strides of a contiguous 4-D array, 0 along its size-1 dimensions."""
    st = [shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1]
    return [0 if d == 1 else s for d, s in zip(shape, st)]


def _case(rng, B, Tq, Tk, N, Nkv, H, Hv, mask, causal, bias):
    q = round_bf16(rng.normal(size=(B, Tq, N, H)))
    k = round_bf16(rng.normal(size=(B, Tk, Nkv, H)))
    v = round_bf16(rng.normal(size=(B, Tk, Nkv, Hv)))
    dout = round_bf16(rng.normal(size=(B, Tq, N, Hv)))
    b = rng.normal(scale=0.5, size=(B, N, Tq, Tk)).astype(np.float32) if bias else None
    m = None
    if mask:
        m = rng.random((B, 1, Tq, Tk)) > 0.3
        m[0, 0, Tq // 2] = False   # a fully masked query row: uniform weights over all keys
    keep = np.ones((B, N, Tq, Tk), bool)
    if m is not None:
        keep &= m
    if causal:
        keep &= np.tril(np.ones((Tq, Tk), bool))
    return q, k, v, dout, b, m, keep


def _run(case, scale, causal):
    """The kernels on bfloat16 q, k, v, dout: their outputs as float32 arrays."""
    q, k, v, dout, b, m, _ = case
    B, Tq, N, H = q.shape
    Tk, Nkv, Hv = k.shape[1], k.shape[2], v.shape[3]
    Q, K, V, DO = (_buf(t, True) for t in (q, k, v, dout))
    Bb = None if b is None else _buf(b, False)
    M = None if m is None else _cpu.from_numpy(np.ascontiguousarray(m))
    oshape = (B, Tq, N, Hv)
    out = _buf(np.zeros(oshape), True)
    stats = _buf(np.zeros((B, N, Tq, 2)), False)
    strides = (_strides(q.shape), _strides(k.shape), _strides(v.shape), _strides(oshape),
               _bstrides(b.shape) if b is not None else [0] * 4, _bstrides(m.shape) if m is not None else [0] * 4)
    dims = (B, Tq, Tk, N, Nkv, H, Hv)
    _cpu.attention_forward(Q, K, V, Bb, M, out, stats, *dims, scale, causal, *strides)
    # garbage in the gradients' buffers: the kernel must write every element
    dq, dk, dv = (_buf(np.full(s, 7.0), True) for s in (q.shape, k.shape, v.shape))
    dl = _buf(np.full((B, N, Tq, Tk), 7.0), False)
    _cpu.attention_backward(Q, K, V, Bb, M, out, stats, DO, dq, dk, dv, dl, *dims, scale, causal, *strides)
    st = _read(stats, (B, N, Tq, 2))
    return dict(out=_read(out, oshape), max=st[..., 0], inv=st[..., 1], dq=_read(dq, q.shape),
                dk=_read(dk, k.shape), dv=_read(dv, v.shape), dl=_read(dl, (B, N, Tq, Tk)))


@pytest.fixture(params=[1, 2, 3], ids=["1thread", "2threads", "3threads"])
def threads(request):
    old = _cpu.num_threads()
    _cpu.set_num_threads(request.param)
    yield request.param
    _cpu.set_num_threads(old)


def _rounded_from(got, want64, name, frac=0.99):
    """got (bfloat16 values) is want64 rounded: exactly for nearly all elements (a float32 against a
    float64 value may fall on the other side of a rounding boundary), within one unit for all."""
    w = round_bf16(np.float32(want64))
    ulp = 2.0 ** -7 * np.abs(w) + 1e-30
    assert (np.abs(got - w) <= ulp).all(), (name, np.abs(got - w).max())
    if w.size:
        assert (got == w).mean() >= frac, (name, (got == w).mean())


def _close(got, want, tol, name):
    err = np.abs(got - want).max() / (np.abs(want).max() + 1e-6) if want.size else 0.0
    assert err <= tol, (name, err)


# (B, Tq, Tk, N, Nkv, H, Hv, mask, causal, bias)
_CASES = [
    (2, 7, 9, 3, 3, 5, 5, False, False, False),
    (2, 7, 9, 3, 3, 5, 5, True, False, True),
    (2, 7, 9, 3, 3, 5, 6, False, True, False),      # causal, Tq < Tk
    (2, 9, 7, 4, 2, 5, 3, True, True, True),        # grouped-query, causal, Tq > Tk
    (1, 5, 6, 6, 1, 8, 4, False, False, True),      # one key/value head for six query heads
    (2, 150, 140, 4, 2, 16, 8, True, True, False),  # several row blocks and tasks
    (1, 130, 120, 2, 1, 16, 16, False, False, True),  # one key/value head: its rows split over the threads
    (1, 3, 1100, 2, 1, 4, 4, True, False, False),   # the products over more keys than one GEMM K block
    (2, 3, 0, 2, 2, 4, 4, False, False, False),     # no keys
]
_IDS = ["plain", "mask_bias", "causal", "gqa_causal", "gqa_one_kv", "blocks", "parts", "long_keys", "no_keys"]


@pytest.mark.parametrize("B,Tq,Tk,N,Nkv,H,Hv,mask,causal,bias", _CASES, ids=_IDS)
def test_bf16_kernels_match_a_rounded_reference(gemm_path, threads, rng, B, Tq, Tk, N, Nkv, H, Hv, mask, causal,
                                                bias):
    case = _case(rng, B, Tq, Tk, N, Nkv, H, Hv, mask, causal, bias)
    q, k, v, dout, b, m, keep = case
    scale = 1 / np.sqrt(H)
    got = _run(case, scale, causal)
    if Tk == 0:   # softmax over no keys: zeros, and no gradient for the query
        assert (got["out"] == 0).all() and (got["dq"] == 0).all()
        return
    want = reference(q, k, v, b, keep, scale, dout, got["out"], got["dl"])
    _rounded_from(got["out"], want["out"], "out")
    np.testing.assert_allclose(got["max"], want["max"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["inv"], want["inv"], rtol=1e-5)
    _close(got["dl"], want["dl"], 1e-5, "dlogits")
    for name in ("dq", "dk", "dv"):
        _rounded_from(got[name], want[name], name)
    # the tolerances see the roundings: the reference without them is off by far more
    if Tk > 1:
        loose = reference(q, k, v, b, keep, scale, dout, got["out"], got["dl"], rnd=False)
        for name in ("out", "dq", "dk", "dv"):
            w = round_bf16(np.float32(loose[name]))
            assert (got[name] == w).mean() < 0.99 or np.abs(w).max() == 0, name


def test_bf16_kernels_refuse_mixed_dtypes(rng):
    case = _case(rng, 1, 3, 4, 2, 2, 3, 3, False, False, False)
    q, k, v = case[:3]
    dims = (1, 3, 4, 2, 2, 3, 3)
    st = (_strides(q.shape), _strides(k.shape), _strides(v.shape), _strides((1, 3, 2, 3)), [0] * 4, [0] * 4)
    out16, out32 = _buf(np.zeros((1, 3, 2, 3)), True), _buf(np.zeros((1, 3, 2, 3)), False)
    with pytest.raises(TypeError, match="attention_forward: expected key of dtype bfloat16, received float32"):
        _cpu.attention_forward(_buf(q, True), _buf(k, False), _buf(v, True), None, None, out16, None, *dims, 0.5,
                               False, *st)
    with pytest.raises(TypeError, match="attention_forward: expected output of dtype bfloat16"):
        _cpu.attention_forward(_buf(q, True), _buf(k, True), _buf(v, True), None, None, out32, None, *dims, 0.5,
                               False, *st)
    with pytest.raises(TypeError, match="attention_forward: expected key of dtype float32, received bfloat16"):
        _cpu.attention_forward(_buf(q, False), _buf(k, True), _buf(v, True), None, None, out32, None, *dims, 0.5,
                               False, *st)
    stats = _buf(np.zeros((1, 2, 3, 2)), False)
    Q, K, V = (_buf(t, True) for t in (q, k, v))
    _cpu.attention_forward(Q, K, V, None, None, out16, stats, *dims, 0.5, False, *st)
    with pytest.raises(TypeError, match="attention_backward: expected output gradient of dtype bfloat16"):
        _cpu.attention_backward(Q, K, V, None, None, out16, stats, out32, None, None, None, None, *dims, 0.5, False,
                                *st)
    with pytest.raises(TypeError, match="attention_backward: expected query gradient of dtype bfloat16"):
        _cpu.attention_backward(Q, K, V, None, None, out16, stats, out16, _buf(q, False), None, None, None, *dims,
                                0.5, False, *st)


# ---- the op and the layer ---------------------------------------------------------------------------

def _b16(a):
    return lamina.convert_to_tensor(a, dtype="bfloat16")


def test_op_dtypes_and_gradients(rng):
    q = rng.normal(size=(2, 5, 4, 8)).astype(np.float32)
    k = rng.normal(size=(2, 6, 2, 8)).astype(np.float32)
    v = rng.normal(size=(2, 6, 2, 3)).astype(np.float32)
    bias = rng.normal(size=(4, 5, 6)).astype(np.float32)
    out = ops.dot_product_attention(_b16(q), _b16(k), _b16(v), bias=bias, is_causal=True)
    assert out.dtype == "bfloat16"
    want = ops.dot_product_attention(round_bf16(q), round_bf16(k), round_bf16(v), bias=bias, is_causal=True)
    np.testing.assert_allclose(out.numpy(), want.numpy(), atol=2e-2 * np.abs(want.numpy()).max())
    # not all three bfloat16: float32 computation (the bfloat16 ones cast up)
    out2 = ops.dot_product_attention(q, _b16(k), _b16(v))
    assert out2.dtype == "float32"
    np.testing.assert_allclose(out2.numpy(), ops.dot_product_attention(q, round_bf16(k), round_bf16(v)).numpy(),
                               rtol=1e-6, atol=1e-6)
    # gradients: bfloat16 for bfloat16 inputs, float32 for the bias; close to float32's
    w = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
    res = {}
    for dt in ("bfloat16", "float32"):
        vs = [lamina.Variable(lamina.convert_to_tensor(round_bf16(t), dtype=dt)) for t in (q, k, v)]
        vb = lamina.Variable(bias)
        with lamina.GradientTape() as tape:
            o = ops.dot_product_attention(*vs, bias=vb, is_causal=True)
            loss = ops.sum(ops.cast(o, "float32") * w)
        res[dt] = tape.gradient(loss, vs + [vb])
    assert [g.dtype for g in res["bfloat16"]] == ["bfloat16"] * 3 + ["float32"]
    for a, b in zip(res["float32"], res["bfloat16"]):
        a = a.numpy()
        np.testing.assert_allclose(ops.cast(b, "float32").numpy(), a, atol=3e-2 * np.abs(a).max())


@pytest.fixture
def mixed():
    lamina.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    lamina.mixed_precision.set_global_policy("float32")


def _seq_data(rng, n=64):
    x = rng.normal(size=(n, 10, 8)).astype(np.float32)
    y = (x[:, :, 0].sum(1) > 0).astype(np.int32)
    return x, y


def _mha_model(causal=False):
    inp = lamina.Input((10, 8))
    h = layers.MultiHeadAttention(4, 8)(inp, inp, use_causal_mask=causal)
    h = layers.GlobalAveragePooling1D()(h)
    return lamina.Model(inp, layers.Dense(2, dtype="float32")(h))


def test_mha_computes_in_bf16_and_trains(mixed, rng):
    device = importlib.import_module("lamina.backend.device")
    x, y = _seq_data(rng)
    m = _mha_model(causal=True)
    m.compile(optimizer=lamina.optimizers.Adam(1e-2),
              loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    m(x[:2])
    kernels = m.weights[0].device.kernels
    assert isinstance(kernels, device.WideningTable)
    before = dict(kernels.widened)
    seen = []
    names = ("attention_forward", "attention_backward")
    orig = {n: getattr(kernels, n) for n in names}
    for n, k in orig.items():  # what the kernels receive: q's, k's, v's and out's dtype codes
        def spy(*a, _k=k, _n=n):
            seen.append((_n, a[0].dtype, a[1].dtype, a[2].dtype, a[5].dtype))
            return _k(*a)
        setattr(kernels, n, spy)
    try:
        h = m.fit(x, y, epochs=8, batch_size=16, verbose=0).history["loss"]
    finally:
        for n, k in orig.items():
            setattr(kernels, n, k)
    assert h[-1] < 0.8 * h[0], h
    # the kernels took bfloat16 buffers, themselves (no float32 copies)
    assert {s[0] for s in seen} == set(names) and all(s[1:] == (5, 5, 5, 5) for s in seen), seen
    for n in names:
        assert kernels.widened.get(n, 0) == before.get(n, 0), n
    assert all(w.dtype == "float32" for w in m.weights)


@pytest.mark.parametrize("causal", [False, True], ids=["plain", "causal"])
def test_mha_mixed_matches_float32(rng, causal):
    q = rng.normal(size=(3, 7, 8)).astype(np.float32)
    kv = rng.normal(size=(3, 9, 8)).astype(np.float32)
    if causal:
        kv = q
    res = {}
    weights = None
    for policy in ("float32", "mixed_bfloat16"):
        lamina.mixed_precision.set_global_policy(policy)
        try:
            layer = layers.MultiHeadAttention(3, 5)
            layer(q, kv)
            if weights is None:
                weights = layer.get_weights()
            layer.set_weights(weights)
            vq, vkv = lamina.Variable(q), lamina.Variable(kv)
            with lamina.GradientTape() as tape:
                y = layer(vq, vkv, use_causal_mask=causal)
                loss = ops.sum(ops.cast(y, "float32") *
                               np.linspace(-1, 1, int(np.prod(y.shape)), dtype=np.float32).reshape(y.shape))
            grads = tape.gradient(loss, [vq, vkv] + layer.trainable_weights)
            res[policy] = (y, [g.numpy() for g in grads])
        finally:
            lamina.mixed_precision.set_global_policy("float32")
    (y32, g32), (y16, g16) = res["float32"], res["mixed_bfloat16"]
    assert y16.dtype == "bfloat16" and all(g.dtype == np.float32 for g in g16)
    np.testing.assert_allclose(ops.cast(y16, "float32").numpy(), y32.numpy(), atol=3e-2 * np.abs(y32.numpy()).max())
    # (the key projection's bias has a zero gradient, softmax being blind to a constant per row: in
    # bfloat16 it is rounding noise, measured against the other gradients)
    top = max(np.abs(a).max() for a in g32)
    for a, b in zip(g32, g16):
        np.testing.assert_allclose(b, a, atol=5e-2 * max(np.abs(a).max(), 0.1 * top))


def test_mha_replayed_steps_match_the_eager_ones(mixed, rng):
    x, y = _seq_data(rng, 96)
    results = []
    for eager in (False, True):
        lamina.utils.set_random_seed(7)
        m = _mha_model(causal=True)
        m.compile(optimizer="sgd", loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=eager)
        m.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
        results.append([w.numpy() for w in m.weights])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
