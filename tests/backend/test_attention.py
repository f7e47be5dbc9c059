"""ops.dot_product_attention (backend/attention.py, csrc/cpu/attention.cpp): the fused kernel
against a numpy transcription of Keras's reference implementation (and Keras itself when it is
installed), against the composed path (flash_attention=False) forward and backward on many
shapes, masks, biases, causal and grouped-query cases, thread counts and block edges, finite
differences, empty sizes, a queued device, and the errors of the op and of the kernels."""
import os

import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.backend import _cpu
from lamina.backend.tensor import empty
from opcheck import check_grad

from keras_ref import keras_or_none

MASKED = -0.7 * np.finfo(np.float32).max


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _reference_attention(q, k, v, bias=None, mask=None, scale=None, is_causal=False):
    """Keras's numpy backend (`_dot_product_attention_xla`) with grouped heads repeated."""
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    groups = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, groups, axis=2), np.repeat(v, groups, axis=2)
    scale = 1.0 / np.sqrt(k.shape[-1]) if scale is None else scale
    logits = np.einsum("BTNH,BSNH->BNTS", q, k) * scale
    if bias is not None:
        logits = logits + bias
    if mask is not None or is_causal:
        keep = np.ones(logits.shape, bool)
        if mask is not None:
            keep &= np.asarray(mask, bool)
        if is_causal:
            keep &= np.tril(np.ones(logits.shape[-2:], bool))
        logits = np.where(keep, logits, MASKED)
    return np.einsum("BNTS,BSNH->BTNH", _softmax(logits), v)


def _qkv(T=3, S=4, N=2, K=2, H=3, Hv=3, seed=0, B=2):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, T, N, H)).astype(np.float32), rng.standard_normal((B, S, K, H)).astype(np.float32),
            rng.standard_normal((B, S, K, Hv)).astype(np.float32))


def _attention_cases():
    rng = np.random.default_rng(7)
    mask = rng.uniform(size=(2, 1, 3, 4)) > 0.4
    mask[0, 0, 1] = False   # a fully masked query row: uniform weights, as Keras
    return [
        ("plain", _qkv(), {}),
        ("scale", _qkv(), {"scale": 0.3}),
        ("bias", _qkv(), {"bias": rng.standard_normal((2, 2, 3, 4)).astype(np.float32)}),
        ("bias_broadcast", _qkv(), {"bias": rng.standard_normal((3, 4)).astype(np.float32)}),
        ("mask", _qkv(), {"mask": mask}),
        ("causal", _qkv(T=4, S=4), {"is_causal": True}),
        ("causal_rect", _qkv(T=3, S=5), {"is_causal": True}),
        ("causal_and_mask", _qkv(), {"is_causal": True, "mask": mask}),
        ("gqa", _qkv(N=4, K=2), {}),
        ("mqa_mask", _qkv(N=3, K=1), {"mask": mask}),
        ("value_depth", _qkv(Hv=5), {}),
    ]


@pytest.mark.parametrize("flash", [None, False], ids=["fused", "composed"])
@pytest.mark.parametrize("name,qkv,kwargs", _attention_cases(), ids=[c[0] for c in _attention_cases()])
def test_dot_product_attention_matches_reference(name, qkv, kwargs, flash):
    got = ops.dot_product_attention(*qkv, flash_attention=flash, **kwargs)
    want = _reference_attention(*qkv, **kwargs)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flash", [None, False], ids=["fused", "composed"])
def test_dot_product_attention_gradients(flash):
    q, k, v = _qkv(T=2, S=3, N=2, K=1, H=2, Hv=2, seed=2)
    mask = np.array([[True, True, False]] * 2)[None, None].repeat(2, 0)
    check_grad(lambda a, b, c: ops.dot_product_attention(a, b, c, mask=mask, flash_attention=flash),
               lambda a, b, c: _reference_attention(a, b, c, mask=mask), [q, k, v], atol=2e-3, rtol=2e-3)


def test_fused_gradients_with_bias_causal_and_a_fully_masked_row():
    q, k, v = _qkv(T=4, S=5, N=2, K=1, H=3, Hv=2, seed=3)
    rng = np.random.default_rng(4)
    bias = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    mask = rng.uniform(size=(2, 1, 4, 5)) > 0.3
    mask[1, 0, 2] = False
    check_grad(lambda a, b, c, d: ops.dot_product_attention(a, b, c, bias=d, mask=mask, is_causal=True),
               lambda a, b, c, d: _reference_attention(a, b, c, bias=d, mask=mask, is_causal=True),
               [q, k, v, bias], atol=2e-3, rtol=2e-3)


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "jax") != "jax", reason="parity uses Keras's jax backend")
@pytest.mark.parametrize("name,qkv,kwargs", [c for c in _attention_cases() if c[0] != "value_depth"],
                         ids=[c[0] for c in _attention_cases() if c[0] != "value_depth"])
def test_dot_product_attention_matches_keras(name, qkv, kwargs):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    want = np.asarray(keras.ops.dot_product_attention(*qkv, **kwargs))
    np.testing.assert_allclose(ops.dot_product_attention(*qkv, **kwargs).numpy(), want, rtol=1e-5, atol=1e-5)


# ---- the fused kernel against the composed path ----------------------------------------------------

def _run(q, k, v, flash, bias=None, **kwargs):
    """(output, [dq, dk, dv(, dbias)]) of sum(out * w) for fixed random weights w."""
    ts = [lamina.Variable(x) for x in (q, k, v)]
    if bias is not None:
        ts.append(lamina.Variable(bias))
        kwargs["bias"] = ts[3]
    with lamina.GradientTape() as tape:
        out = ops.dot_product_attention(*ts[:3], flash_attention=flash, **kwargs)
        w = np.random.default_rng(99).standard_normal(out.shape).astype(np.float32)
        loss = ops.sum(out * w)
    return out.numpy(), [g.numpy() for g in tape.gradient(loss, ts)]


def _assert_same(fused, composed, what=""):
    scale = max(1.0, float(np.max(np.abs(composed)))) if composed.size else 1.0
    np.testing.assert_allclose(fused, composed, rtol=1e-4, atol=2e-5 * scale, err_msg=what)


def _compare(q, k, v, **kwargs):
    out_f, grads_f = _run(q, k, v, None, **dict(kwargs))
    out_c, grads_c = _run(q, k, v, False, **dict(kwargs))
    assert out_f.shape == out_c.shape
    _assert_same(out_f, out_c, "output")
    for name, a, b in zip(("dq", "dk", "dv", "dbias"), grads_f, grads_c):
        assert a.shape == b.shape
        _assert_same(a, b, name)


def _mask(rng, shape, p=0.4, full_rows=()):
    m = rng.uniform(size=shape) > p
    for idx in full_rows:
        m[idx] = False
    return m


def _comparison_cases():
    rng = np.random.default_rng(21)
    f = np.float32
    cases = [
        # (id, (B, T, S, N, K, H, Hv), kwargs)
        ("square", (2, 5, 5, 2, 2, 4, 4), {}),
        ("T_lt_S", (2, 3, 7, 2, 2, 4, 3), {}),
        ("T_gt_S", (2, 9, 4, 2, 2, 4, 5), {}),
        ("causal_T_gt_S", (2, 9, 4, 2, 1, 4, 5), {"is_causal": True}),
        ("causal_T_lt_S", (2, 4, 9, 4, 2, 3, 3), {"is_causal": True}),
        ("gqa_4_of_2", (2, 6, 6, 4, 2, 5, 3), {}),
        ("mqa", (1, 6, 8, 6, 1, 4, 4), {"is_causal": True}),
        ("scale", (2, 5, 6, 2, 2, 3, 3), {"scale": 0.05}),
        ("mask_keys", (2, 5, 6, 2, 2, 3, 3), {"mask": _mask(rng, (6,))}),
        ("mask_TS", (2, 5, 6, 2, 2, 3, 3), {"mask": _mask(rng, (5, 6), full_rows=[1])}),
        ("mask_B11S", (2, 5, 6, 2, 2, 3, 3), {"mask": _mask(rng, (2, 1, 1, 6))}),
        ("mask_1NTS", (2, 5, 6, 2, 2, 3, 3), {"mask": _mask(rng, (1, 2, 5, 6), full_rows=[(0, 1, 3)])}),
        ("mask_full", (2, 5, 6, 4, 2, 3, 3), {"mask": _mask(rng, (2, 4, 5, 6), full_rows=[(1, 2, 0)])}),
        ("mask_int", (2, 5, 6, 2, 2, 3, 3), {"mask": _mask(rng, (2, 1, 5, 6)).astype(np.int32)}),
        ("mask_all_false", (2, 4, 5, 2, 2, 3, 3), {"mask": np.zeros((4, 5), bool)}),
        ("causal_mask_full_rows", (2, 7, 7, 2, 2, 3, 3),
         {"is_causal": True, "mask": _mask(rng, (2, 1, 7, 7), full_rows=[(0, 0, 5), (1, 0, 2)])}),
        ("bias_S", (2, 5, 6, 2, 2, 3, 3), {"bias": rng.standard_normal(6).astype(f)}),
        ("bias_1N1S", (2, 5, 6, 2, 2, 3, 3), {"bias": rng.standard_normal((1, 2, 1, 6)).astype(f)}),
        ("bias_BNT1", (2, 5, 6, 2, 2, 3, 3), {"bias": rng.standard_normal((2, 2, 5, 1)).astype(f)}),
        ("bias_full_mask_causal", (2, 6, 6, 4, 2, 3, 3),
         {"bias": rng.standard_normal((2, 4, 6, 6)).astype(f), "mask": _mask(rng, (2, 1, 6, 6), full_rows=[(1, 0, 4)]),
          "is_causal": True}),
        # several query-row blocks (up to 128 rows, 64 under causal), and the causal key skipping
        ("rows_300", (1, 300, 40, 2, 1, 8, 8), {}),
        ("causal_300", (1, 300, 300, 1, 1, 8, 6), {"is_causal": True}),
        ("causal_200_mask", (2, 200, 200, 2, 2, 4, 4),
         {"is_causal": True, "mask": _mask(rng, (2, 1, 200, 200), p=0.2, full_rows=[(0, 0, 150), (1, 0, 70)])}),
        # long keys: fewer rows per block
        ("keys_3000", (1, 20, 3000, 2, 2, 4, 4), {"mask": _mask(rng, (1, 1, 1, 3000))}),
        # the benchmark's shape, big enough to run on every thread
        ("mha_shape", (4, 128, 128, 8, 8, 32, 32), {}),
        ("mha_shape_causal_bias", (2, 128, 128, 8, 4, 32, 16),
         {"is_causal": True, "bias": rng.standard_normal((1, 8, 128, 128)).astype(f)}),
    ]
    return cases


@pytest.mark.parametrize("name,dims,kwargs", _comparison_cases(), ids=[c[0] for c in _comparison_cases()])
def test_fused_equals_composed_forward_and_gradients(name, dims, kwargs):
    B, T, S, N, K, H, Hv = dims
    q, k, v = _qkv(T=T, S=S, N=N, K=K, H=H, Hv=Hv, B=B, seed=len(name))
    _compare(q, k, v, **kwargs)


@pytest.fixture(params=[1, 2, 3], ids=["1thread", "2threads", "3threads"])
def threads(request):
    old = _cpu.num_threads()
    _cpu.set_num_threads(request.param)
    yield request.param
    _cpu.set_num_threads(old)


@pytest.mark.parametrize("dims,kwargs", [
    ((1, 128, 96, 2, 1, 32, 16), {}),                 # one key/value head: its rows split over the threads
    ((1, 200, 200, 3, 1, 16, 16), {"is_causal": True}),
    ((2, 64, 64, 2, 2, 16, 16), {}),
    ((3, 96, 80, 4, 2, 16, 8), {"is_causal": True}),
], ids=["mqa_b1", "mqa_b1_causal", "b2", "gqa_b3_causal"])
def test_fused_equals_composed_on_any_thread_count(threads, dims, kwargs):
    B, T, S, N, K, H, Hv = dims
    q, k, v = _qkv(T=T, S=S, N=N, K=K, H=H, Hv=Hv, B=B, seed=5)
    _compare(q, k, v, **kwargs)


def test_gradient_of_some_inputs_only():
    q, k, v = _qkv(T=6, S=7, N=4, K=2, H=3, Hv=2, seed=8)
    qt, kt, vt = (lamina.convert_to_tensor(x) for x in (q, k, v))
    bias = lamina.Variable(np.random.default_rng(1).standard_normal((1, 4, 1, 7)).astype(np.float32))
    results = {}
    for flash in (None, False):
        with lamina.GradientTape() as tape:
            tape.watch(kt)
            loss = ops.sum(ops.dot_product_attention(qt, kt, vt, bias=bias, is_causal=True, flash_attention=flash))
        results[flash] = [g.numpy() for g in tape.gradient(loss, [kt, bias])]
    for a, b in zip(results[None], results[False]):
        _assert_same(a, b)


@pytest.mark.parametrize("dims", [(2, 3, 0, 2, 2, 4, 3), (2, 0, 4, 2, 2, 4, 3), (0, 3, 4, 2, 2, 4, 3),
                                  (2, 3, 4, 2, 1, 0, 3), (2, 3, 4, 2, 2, 4, 0)],
                         ids=["no_keys", "no_queries", "no_batch", "zero_depth", "zero_value_depth"])
def test_empty_sizes_equal_the_composed_path(dims):
    B, T, S, N, K, H, Hv = dims
    q, k, v = _qkv(T=T, S=S, N=N, K=K, H=H, Hv=Hv, B=B, seed=1)
    _compare(q, k, v, scale=0.5)
    _compare(q, k, v, scale=0.5, is_causal=True)
    if H == 0:
        with pytest.raises(ValueError, match=r"default scale 1 / sqrt\(depth\) needs a query depth of at least 1"):
            ops.dot_product_attention(q, k, v)


def test_fused_on_a_queued_device():
    q, k, v = _qkv(T=40, S=50, N=4, K=2, H=8, Hv=8, seed=6)
    mask = np.random.default_rng(2).uniform(size=(2, 1, 40, 50)) > 0.3
    want = _reference_attention(q, k, v, mask=mask, is_causal=True)
    with lamina.device("cpu:1"):
        ts = [lamina.Variable(x) for x in (q, k, v)]
        with lamina.GradientTape() as tape:
            out = ops.dot_product_attention(*ts, mask=mask, is_causal=True)
            loss = ops.sum(out)
        grads = tape.gradient(loss, ts)
    assert out.device.name == "cpu:1" and all(g.device.name == "cpu:1" for g in grads)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)
    with lamina.GradientTape() as tape:
        ts0 = [lamina.Variable(x) for x in (q, k, v)]
        loss = ops.sum(ops.dot_product_attention(*ts0, mask=mask, is_causal=True, flash_attention=False))
    for a, b in zip(grads, tape.gradient(loss, ts0)):
        _assert_same(a.numpy(), b.numpy())


def test_flash_attention_true_is_the_fused_kernel():
    q, k, v = _qkv(seed=3)
    a = ops.dot_product_attention(q, k, v, flash_attention=True).numpy()
    b = ops.dot_product_attention(q, k, v).numpy()
    np.testing.assert_array_equal(a, b)


# ---- errors -----------------------------------------------------------------------------------------

def test_dot_product_attention_errors():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"dot_product_attention: expected 4-D .* query.shape=\(2, 3, 6\)"):
        ops.dot_product_attention(q.reshape(2, 3, 6), k, v)
    with pytest.raises(ValueError, match=r"query has 3 heads and key/value have 2; .* multiple"):
        ops.dot_product_attention(*_qkv(N=3, K=2))
    with pytest.raises(ValueError, match=r"incompatible shapes query \(2, 3, 2, 3\), key \(2, 4, 2, 3\), value "
                                         r"\(2, 5, 2, 3\)"):
        ops.dot_product_attention(q, k, np.zeros((2, 5, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 3, 3\) does not broadcast to .* \(2, 2, 3, 4\)"):
        ops.dot_product_attention(q, k, v, mask=np.ones((2, 3, 3), bool))
    with pytest.raises(ValueError, match=r"bias of shape \(3, 3\) does not broadcast to .* \(2, 2, 3, 4\)"):
        ops.dot_product_attention(q, k, v, bias=np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"flash_attention must be None, True or False, received 'auto'"):
        ops.dot_product_attention(q, k, v, flash_attention="auto")
    with pytest.raises(ValueError, match=r"attn_logits_soft_cap=.* is not supported"):
        ops.dot_product_attention(q, k, v, attn_logits_soft_cap=20.0)
    with pytest.raises(TypeError, match=r"query has dtype int64"):
        ops.dot_product_attention(q.astype(np.int64), k, v)
    with pytest.raises(TypeError, match=r"scale must be a number or None"):
        ops.dot_product_attention(q, k, v, scale="0.5")
    qt = lamina.convert_to_tensor(q)
    with lamina.device("cpu:1"):
        kt, vt = lamina.convert_to_tensor(k), lamina.convert_to_tensor(v)
    with pytest.raises(ValueError, match=r"dot_product_attention.*different devices"):
        ops.dot_product_attention(qt, kt, vt)


def _kernel_args(B=1, T=3, S=4, N=2, K=2, H=3, Hv=3):
    q, k, v = (lamina.convert_to_tensor(x) for x in _qkv(B=B, T=T, S=S, N=N, K=K, H=H, Hv=Hv))
    out = empty((B, T, N, Hv))
    st = lambda s: [s[1] * s[2] * s[3], s[2] * s[3], s[3]]  # noqa: E731
    return dict(q=q._buf, k=k._buf, v=v._buf, bias=None, mask=None, out=out._buf, stats=None, B=B, Tq=T, Tk=S, N=N,
                Nkv=K, H=H, Hv=Hv, scale=0.5, causal=False, q_strides=st(q.shape), k_strides=st(k.shape),
                v_strides=st(v.shape), out_strides=st(out.shape), bias_strides=[0] * 4, mask_strides=[0] * 4)


def test_attention_kernels_reject_inconsistent_arguments():
    kern = lamina.get_device("cpu").kernels
    kern.attention_forward(**_kernel_args())   # consistent: runs
    with pytest.raises(ValueError, match=r"attention_forward: key of shape \(1, 5, 2, 3\) with strides "
                                         r"\(24, 6, 3, 1\) reaches element 29 of a buffer of 24"):
        kern.attention_forward(**dict(_kernel_args(), Tk=5))
    with pytest.raises(ValueError, match=r"attention_forward: the output output of shape \(1, 3, 2, 3\) with strides "
                                         r"\(18, 3, 3, 1\) has overlapping elements"):
        kern.attention_forward(**dict(_kernel_args(), out_strides=[18, 3, 3]))
    with pytest.raises(ValueError, match=r"attention_forward: the query's 2 heads must be a multiple of the "
                                         r"key/value's 3 heads"):
        kern.attention_forward(**dict(_kernel_args(), Nkv=3))
    with pytest.raises(ValueError, match=r"attention_forward: expected 3 element strides .* for query"):
        kern.attention_forward(**dict(_kernel_args(), q_strides=[18, 6]))
    with pytest.raises(ValueError, match=r"attention_forward: the mask read with strides \(0, 0, 4, 1\) over the "
                                         r"scores' shape \(1, 2, 3, 4\) reaches element 11 of a buffer of 4"):
        m = lamina.convert_to_tensor(np.ones(4, bool))
        kern.attention_forward(**dict(_kernel_args(), mask=m._buf, mask_strides=[0, 0, 4, 1]))
    with pytest.raises(TypeError, match=r"attention_forward.*mask.*bool"):
        b = lamina.convert_to_tensor(np.ones(4, np.float32))
        kern.attention_forward(**dict(_kernel_args(), mask=b._buf, mask_strides=[0, 0, 0, 1]))
    with pytest.raises(ValueError, match=r"attention_forward.*stats"):
        kern.attention_forward(**dict(_kernel_args(), stats=empty((1, 2, 3))._buf))
    args = _kernel_args()
    stats = empty((1, 2, 3, 2))
    kern.attention_forward(**dict(args, stats=stats._buf))
    back = {k: v for k, v in args.items() if k != "stats"}
    grad = empty((1, 3, 2, 3))
    with pytest.raises(ValueError, match=r"attention_backward: the output key gradient of shape \(1, 4, 2, 3\) with "
                                         r"strides \(24, 6, 0, 1\) has overlapping elements"):
        kern.attention_backward(**dict(back, stats=stats._buf, dout=grad._buf, dq=None, dk=empty((1, 4, 2, 3))._buf,
                                       dv=None, dlogits=None, k_strides=[24, 6, 0]))
    with pytest.raises(ValueError, match=r"attention_backward.*logits gradient"):
        kern.attention_backward(**dict(back, stats=stats._buf, dout=grad._buf, dq=None, dk=None, dv=None,
                                       dlogits=empty((1, 2, 3, 3))._buf))
