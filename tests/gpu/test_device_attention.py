"""The fused scaled dot-product attention (the attention_forward / attention_backward kernels,
csrc/cuda/attention.cu on the GPU) on a device under test (tests/gpu/conftest.py) against cpu:0:
forward values and the gradients of query, key, value and bias, with every option the kernels
take -- one head, several, grouped-query and multi-query heads, masks of each shape that
broadcasts to the scores, fully masked rows, causal masks with equal, shorter and longer queries,
a bias and its gradient, an explicit scale, value depth != key depth, no keys, no queries, only
some gradients asked for, scores taken in chunks (LAMINA_ATTENTION_CHUNK_BYTES) -- then the
kernels called directly on strided operands (a packed QKV tensor, a padded output), their argument
errors, and MultiHeadAttention with and without attention dropout."""
import importlib

import numpy as np
import pytest

import lamina
from lamina import layers, ops
from lamina.backend.tensor import empty

_dm = importlib.import_module("lamina.backend.device")

R = np.random.default_rng(31)
FWD_TOL = dict(rtol=2e-5, atol=2e-6)
GRAD_TOL = dict(rtol=1e-4, atol=1e-5)
KERNELS = ("attention_forward", "attention_backward")


def _f(*shape, scale=1.0):
    return (scale * R.normal(size=shape)).astype(np.float32)


def _fallbacks(device):
    kernels = device.kernels
    table = getattr(kernels, "inner", kernels)
    return dict(getattr(table, "fallbacks", {}))


def _mask(shape, p=0.3):
    m = R.random(size=shape) > p
    m[..., 0] = True  # every row keeps its first key (fully masked rows have their own cases)
    return m


def _qkv(B=2, T=5, S=6, N=2, K=None, H=4, Hv=None):
    K = N if K is None else K
    Hv = H if Hv is None else Hv
    return _f(B, T, N, H), _f(B, S, K, H), _f(B, S, K, Hv)


# name -> (q, k, v, keyword arguments of dot_product_attention; bias / mask as numpy arrays)
B_, T_, S_, N_ = 2, 5, 6, 2
CASES = {
    "one_head": (*_qkv(N=1), {}),
    "heads": (*_qkv(N=3, H=3, Hv=5), {}),
    "gqa": (*_qkv(N=4, K=2), {}),
    "mqa": (*_qkv(N=3, K=1, H=5), {}),
    "scale": (*_qkv(), {"scale": 0.37}),
    "long_rows": (*_qkv(B=1, T=66, S=70, N=2, H=20, Hv=9), {"scale": 0.2}),  # > one 64 x 64 tile, > 32 lanes
    "causal_square": (*_qkv(T=6, S=6), {"is_causal": True}),
    "causal_shorter_queries": (*_qkv(T=3, S=7), {"is_causal": True}),
    "causal_longer_queries": (*_qkv(T=7, S=4), {"is_causal": True}),
    "causal_gqa_long": (*_qkv(B=1, T=40, S=40, N=4, K=2, H=6), {"is_causal": True}),
    # masks of each shape that broadcasts to the scores (B, N, T, S)
    "mask_S": (*_qkv(), {"mask": _mask((S_,))}),
    "mask_TS": (*_qkv(), {"mask": _mask((T_, S_))}),
    "mask_NTS": (*_qkv(), {"mask": _mask((N_, T_, S_))}),
    "mask_B1TS": (*_qkv(), {"mask": _mask((B_, 1, T_, S_))}),
    "mask_BNTS": (*_qkv(), {"mask": _mask((B_, N_, T_, S_))}),
    "mask_padding_B11S": (*_qkv(), {"mask": _mask((B_, 1, 1, S_))}),
    "mask_1N1S": (*_qkv(), {"mask": _mask((1, N_, 1, S_))}),
    "mask_rows_B1T1": (*_qkv(), {"mask": np.array([1, 0, 1, 1, 0, 1, 1, 0, 1, 1], bool).reshape(B_, 1, T_, 1)}),
    "mask_fully_masked_rows": (*_qkv(N=4, K=2), {"mask": np.where(np.arange(T_)[:, None] == 2, False,
                                                                  _mask((B_, 4, T_, S_)))}),
    "mask_all_false": (*_qkv(), {"mask": np.zeros((B_, N_, T_, S_), bool)}),
    # causal and a mask: row 0 then keeps no key (fully masked under both)
    "causal_mask": (*_qkv(T=6, S=6), {"is_causal": True,
                                      "mask": np.where(np.arange(6) == 0, False, _mask((B_, 1, 6, 6)))}),
    # a bias (with its gradient) of several shapes
    "bias_TS": (*_qkv(), {"bias": _f(T_, S_)}),
    "bias_BNTS": (*_qkv(N=4, K=2), {"bias": _f(B_, 4, T_, S_)}),
    "bias_N1S": (*_qkv(), {"bias": _f(N_, 1, S_)}),
    "bias_mask_causal_gqa": (*_qkv(T=6, S=6, N=4, K=2), {"bias": _f(1, 4, 6, 6), "mask": _mask((B_, 1, 6, 6)),
                                                         "is_causal": True, "scale": 0.5}),
    "bias_large_negative": (*_qkv(), {"bias": np.where(_mask((T_, S_)), 0.0, -1e30).astype(np.float32)}),
    # empty extents
    "no_keys": (*_qkv(S=0), {}),
    "no_keys_causal": (*_qkv(S=0), {"is_causal": True}),
    "no_queries": (*_qkv(T=0), {"mask": np.ones((0, S_), bool)}),
    "no_value_depth": (*_qkv(Hv=0), {}),
}


def _run(device, q, k, v, kw, grad=("q", "k", "v", "bias")):
    """dot_product_attention's output and the gradients of sum(out * w) with respect to the
    inputs named in `grad` (None for the others), as numpy."""
    with lamina.device(device):
        names = {"q": q, "k": k, "v": v}
        args = {}
        for n, a in names.items():
            args[n] = lamina.Variable(a) if n in grad else lamina.convert_to_tensor(a)
        kw = dict(kw)
        if "bias" in kw:
            kw["bias"] = lamina.Variable(kw["bias"]) if "bias" in grad else lamina.convert_to_tensor(kw["bias"])
        if "mask" in kw:
            kw["mask"] = lamina.convert_to_tensor(kw["mask"])
        with lamina.GradientTape() as tape:
            out = ops.dot_product_attention(args["q"], args["k"], args["v"], **kw)
            w = lamina.convert_to_tensor(np.linspace(-1, 1, int(np.prod(out.shape)), dtype=np.float32)
                                         .reshape(out.shape))
            loss = ops.sum(out * w)
        wrt = [args[n] for n in ("q", "k", "v") if n in grad] + ([kw["bias"]] if "bias" in kw and "bias" in grad
                                                                 else [])
        grads = tape.gradient(loss, wrt) if wrt else []
        assert out.device is (lamina.get_device(device) if isinstance(device, str) else device)
        return out.numpy(), [g.numpy() if g is not None else None for g in grads]


def _compare(dev, q, k, v, kw, grad=("q", "k", "v", "bias")):
    before = _fallbacks(dev)
    want_out, want_g = _run("cpu:0", q, k, v, kw, grad)
    got_out, got_g = _run(dev, q, k, v, kw, grad)
    assert got_out.shape == want_out.shape and got_out.dtype == want_out.dtype
    np.testing.assert_allclose(got_out, want_out, rtol=FWD_TOL["rtol"],
                               atol=FWD_TOL["atol"] * max(1.0, float(np.abs(want_out).max(initial=0))))
    assert len(got_g) == len(want_g)
    for i, (g, w) in enumerate(zip(got_g, want_g)):
        assert (g is None) == (w is None), i
        if w is not None:
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=GRAD_TOL["rtol"],
                                       atol=GRAD_TOL["atol"] * max(1.0, float(np.abs(w).max(initial=0))),
                                       err_msg=f"gradient {i}")
    if dev.kind == "gpu":  # the GPU ran the kernels itself
        after = _fallbacks(dev)
        for n in KERNELS:
            assert after.get(n, 0) == before.get(n, 0), (n, after)
    return want_out, want_g


@pytest.mark.parametrize("name", sorted(CASES))
def test_attention_matches_cpu(name, dev):
    q, k, v, kw = CASES[name]
    want_out, _ = _compare(dev, q, k, v, kw)
    if name == "mask_all_false":  # every row fully masked: the mean of the values (Keras's finite masked logit)
        np.testing.assert_allclose(want_out, np.repeat(v.mean(axis=1, keepdims=True), T_, axis=1), rtol=1e-5,
                                   atol=1e-6)
    if name.startswith("no_keys"):
        assert want_out.shape == (B_, T_, N_, 4) and not want_out.any()


@pytest.mark.parametrize("grad", [("q",), ("k",), ("v",), ("bias",), ("k", "bias"), ("q", "v")])
def test_attention_gradients_asked_for_alone(grad, dev):
    """Only some of dq, dk, dv, dlogits asked for: the others are not computed (None buffers)."""
    q, k, v, kw = CASES["bias_mask_causal_gqa"]
    _compare(dev, q, k, v, kw, grad)


# chunk limits (bytes) -> the chunks for (B, N, Tq, Tk) = (3, 4, 5, 6): forward (one buffer) and
# backward (two): 1000: 2 batches / 1 batch; 720: 1 batch / 3 heads; 600: 1 batch / 2 heads;
# 360: 3 heads / 1 head; 300: 2 heads / 1 head; 50: 2 rows / 1 row; 8: 1 row / 1 row
@pytest.mark.parametrize("chunk_bytes", [1000, 720, 600, 360, 300, 50, 8])
def test_attention_in_chunks(chunk_bytes, dev, monkeypatch):
    """Scores taken a chunk at a time (csrc/cuda/attention.cu's plan_chunks, its limit lowered):
    whole batches, heads of one batch (3 of 4 grouped-query heads: a chunk ends inside a group),
    rows of one head, one row. Bias, mask and causal mask on; every gradient."""
    monkeypatch.setenv("LAMINA_ATTENTION_CHUNK_BYTES", str(chunk_bytes))
    q, k, v = _f(3, 5, 4, 3), _f(3, 6, 2, 3), _f(3, 6, 2, 5)
    kw = {"bias": _f(4, 5, 6), "mask": _mask((3, 1, 5, 6)), "is_causal": True}
    _compare(dev, q, k, v, kw)


# ---- the kernels called directly: strided operands, stats, errors ------------------------------

def _kernel_run(device, packed, bias, mask, B, T, S, N, K, H, Hv, scale, causal, pad=2):
    """attention_forward on q, k, v read out of one packed (B, T, N + 2K, H) tensor (T == S, Hv == H)
    into an output padded to depth Hv + pad (padding 7.0), then attention_backward for dlogits and
    dq, dk, dv, each written with the packed layout's strides into its own buffer of the packed
    size (filled with 5.0 first). Returns out, stats, dq, dk, dv, dlogits as numpy arrays."""
    d = lamina.get_device(device) if isinstance(device, str) else device
    kern = d.kernels
    C = N + 2 * K
    st_p = [T * C * H, C * H, H]
    out_st = [T * N * (Hv + pad), N * (Hv + pad), Hv + pad]
    with lamina.device(d):
        p = lamina.convert_to_tensor(packed)
        qb = p._buf
        # k and v start inside the packed tensor; the kernels take whole buffers: copies of the
        # packed tensor from k's and from v's first element
        kp = lamina.convert_to_tensor(np.ascontiguousarray(packed.reshape(-1)[N * H:]))
        vp = lamina.convert_to_tensor(np.ascontiguousarray(packed.reshape(-1)[(N + K) * H:]))
        out = lamina.convert_to_tensor(np.full((B, T, N, Hv + pad), 7.0, np.float32))
        stats = empty((B, N, T, 2), "float32", d)
        bt = lamina.convert_to_tensor(bias)
        mt = lamina.convert_to_tensor(mask)
        b_st = [0] * (4 - bias.ndim) + [0 if s == 1 else st // 4 for s, st in zip(bias.shape, bias.strides)]
        m_st = [0] * (4 - mask.ndim) + [0 if s == 1 else st for s, st in zip(mask.shape, mask.strides)]
        dims = (B, T, S, N, K, H, Hv)
        strides = (st_p, st_p, st_p, out_st, b_st, m_st)
        kern.attention_forward(qb, kp._buf, vp._buf, bt._buf, mt._buf, out._buf, stats._buf, *dims, scale, causal,
                               *strides)
        g = lamina.convert_to_tensor(np.linspace(-1, 1, B * T * N * (Hv + pad), dtype=np.float32)
                                     .reshape(B, T, N, Hv + pad))
        grads = [lamina.convert_to_tensor(np.full(packed.size, 5.0, np.float32)) for _ in range(3)]
        dl = empty((B, N, T, S), "float32", d)
        kern.attention_backward(qb, kp._buf, vp._buf, bt._buf, mt._buf, out._buf, stats._buf, g._buf,
                                *(t._buf for t in grads), dl._buf, *dims, scale, causal, *strides)
        return [out.numpy(), stats.numpy(), *(t.numpy() for t in grads), dl.numpy()]


def test_attention_kernels_on_strided_operands(dev):
    """q, k and v interleaved in one tensor (the layout a fused QKV projection gives), an output
    and gradients with gaps between their rows: the gaps stay as they were, and out, the saved
    statistics (row max and 1 / sum), dq, dk, dv and dlogits match the CPU's."""
    B, T, N, K, H = 2, 6, 4, 2, 3
    packed = _f(B, T, N + 2 * K, H)
    bias = _f(N, 1, T)
    mask = _mask((B, 1, T, T))
    mask[1, 0, 3] = False  # a fully masked row
    before = _fallbacks(dev)
    want = _kernel_run("cpu:0", packed, bias, mask, B, T, T, N, K, H, H, 0.45, True)
    got = _kernel_run(dev, packed, bias, mask, B, T, T, N, K, H, H, 0.45, True)
    names = ["out", "stats", "dq", "dk", "dv", "dlogits"]
    for n, g, w in zip(names, got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(w).max())), err_msg=n)
    assert (got[0][..., H:] == 7.0).all()  # the output's padding is not written
    # the gradients are written only where their operand lies (dq: heads 0..N-1 of each packed row,
    # dk and dv: heads 0..K-1), 5.0 elsewhere
    for gbuf, heads in zip(got[2:5], (N, K, K)):
        rows = gbuf.reshape(B, T, N + 2 * K, H)
        assert (rows[:, :, heads:] == 5.0).all() and (rows[:, :, :heads] != 5.0).all()
    if dev.kind == "gpu":
        after = _fallbacks(dev)
        for n in KERNELS:
            assert after.get(n, 0) == before.get(n, 0), (n, after)


def _errors(device):
    """The messages of attention kernel calls with bad arguments, on `device`."""
    d = lamina.get_device(device) if isinstance(device, str) else device
    kern = d.kernels
    msgs = []
    with lamina.device(d):
        q, k, v = (lamina.convert_to_tensor(a) for a in _qkv(B=1, T=3, S=4, N=2, H=2))
        out = empty((1, 3, 2, 2), "float32", d)
        stats = empty((1, 2, 3, 2), "float32", d)
        ok = dict(B=1, Tq=3, Tk=4, N=2, Nkv=2, H=2, Hv=2, scale=1.0, causal=False, q_strides=[12, 4, 2],
                  k_strides=[16, 4, 2], v_strides=[16, 4, 2], out_strides=[12, 4, 2], bias_strides=[0, 0, 0, 0],
                  mask_strides=[0, 0, 0, 0])
        m_bad = lamina.convert_to_tensor(np.ones((3, 4), np.float32))
        cases = [
            dict(Nkv=3),                                           # heads not a multiple
            dict(q_strides=[12, 4]),                               # 2 strides
            dict(k_strides=[16, 4, 3]),                            # key reaches past its buffer
            dict(out_strides=[12, 4, 1]),                          # overlapping output
            dict(Tq=-1),                                           # negative size
        ]
        for change in cases:
            a = dict(ok, **change)
            with pytest.raises((ValueError, TypeError)) as e:
                kern.attention_forward(q._buf, k._buf, v._buf, None, None, out._buf, stats._buf, **a)
            msgs.append(str(e.value))
        with pytest.raises(TypeError) as e:  # a float32 mask
            kern.attention_forward(q._buf, k._buf, v._buf, None, m_bad._buf, out._buf, stats._buf,
                                   **dict(ok, mask_strides=[0, 0, 4, 1]))
        msgs.append(str(e.value))
        with pytest.raises(ValueError) as e:  # a bias read past its end
            kern.attention_forward(q._buf, k._buf, v._buf, m_bad._buf, None, out._buf, stats._buf,
                                   **dict(ok, bias_strides=[0, 0, 4, 2]))
        msgs.append(str(e.value))
        dq = empty((1, 3, 2, 2), "float32", d)
        with pytest.raises(ValueError) as e:  # stats of the wrong size
            kern.attention_backward(q._buf, k._buf, v._buf, None, None, out._buf, k._buf, out._buf, dq._buf,
                                    None, None, None, **ok)
        msgs.append(str(e.value))
        with pytest.raises(ValueError) as e:  # dlogits of the wrong size
            kern.attention_backward(q._buf, k._buf, v._buf, None, None, out._buf, stats._buf, out._buf, None,
                                    None, None, stats._buf, **ok)
        msgs.append(str(e.value))
    return msgs


def test_attention_kernel_errors_as_on_cpu(dev):
    want, got = _errors("cpu:0"), _errors(dev)
    assert got == want
    assert "must be a multiple of the key/value's 3 heads" in want[0]
    assert "has overlapping elements" in want[3]


# ---- MultiHeadAttention: the fused kernel (masks, causal), and the composed path with dropout ----

def _mha(device, dropout, q, v, mask, causal, weights=None):
    with lamina.device(device):
        layer = layers.MultiHeadAttention(num_heads=3, key_dim=4, value_dim=5, dropout=dropout, seed=11)
        xq, xv = lamina.Variable(q), lamina.Variable(v)
        layer(xq, xv)  # builds
        if weights is not None:
            layer.set_weights(weights)
        with lamina.GradientTape() as tape:
            out = layer(xq, xv, attention_mask=lamina.convert_to_tensor(mask), use_causal_mask=causal,
                        training=True)
            loss = ops.sum(out * ops.cos(out))
        grads = tape.gradient(loss, [xq, xv] + list(layer.trainable_weights))
        return layer.get_weights(), out.numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_matches_cpu(dropout, causal, dev):
    """Without dropout the layer runs the fused kernel; with attention dropout (training) it takes
    Keras's masked softmax and the Dropout layer's seeded mask, the same on every device."""
    q, v = _f(2, 5, 6), _f(2, 7, 6)
    mask = _mask((2, 5, 7))
    weights, want_out, want_g = _mha("cpu:0", dropout, q, v, mask, causal)
    _, got_out, got_g = _mha(dev, dropout, q, v, mask, causal, weights)
    np.testing.assert_allclose(got_out, want_out, rtol=1e-4, atol=1e-5)
    for i, (g, w) in enumerate(zip(got_g, want_g)):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5 * max(1.0, float(np.abs(w).max())), err_msg=str(i))
