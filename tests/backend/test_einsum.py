"""ops.einsum against numpy.einsum (forward and finite-difference gradients), its pairwise GEMM
plan and its errors; ops.dot_product_attention against a numpy transcription of Keras's
reference implementation (and against Keras itself when it is installed)."""
import os

import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.backend import einsum as einsum_module
from opcheck import check_grad

from keras_ref import keras_or_none

# (subscripts, operand shapes): products, batches, transposes, outer products, traces and
# diagonals, ellipses, broadcasting size-1 dims, 3 and 4 operands, implicit outputs
CASES = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ij,jk", [(2, 3), (3, 4)]),
    ("ij,kj->ik", [(2, 3), (4, 3)]),
    ("ji,jk->ik", [(3, 2), (3, 4)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bij,bkj->bki", [(2, 3, 4), (2, 5, 4)]),
    ("bij,jk->bik", [(2, 3, 4), (4, 5)]),
    ("ij->ji", [(2, 3)]),
    ("ijk->kji", [(2, 3, 4)]),
    ("ij", [(2, 3)]),
    ("ji", [(2, 3)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ab,cd->abcd", [(2, 3), (4, 5)]),
    ("ab,cd->", [(2, 3), (4, 5)]),
    ("i,i", [(5,), (5,)]),
    ("i,i->i", [(5,), (5,)]),
    ("ij,ij->ij", [(2, 3), (2, 3)]),
    ("ij,ij->i", [(2, 3), (2, 3)]),
    ("ij->", [(2, 3)]),
    ("ij->j", [(2, 3)]),
    ("i->", [(5,)]),
    ("ii->", [(3, 3)]),
    ("ii", [(3, 3)]),
    ("ii->i", [(3, 3)]),
    ("iij->ji", [(2, 2, 3)]),
    ("bii->bi", [(2, 3, 3)]),
    ("ijij->ij", [(2, 3, 2, 3)]),
    ("...ij,...jk", [(2, 1, 3, 4), (5, 4, 2)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    ("ij...,jk...->ik...", [(2, 3, 5), (3, 4, 5)]),
    ("b...i,b...i->b...", [(2, 3, 4), (2, 1, 4)]),
    ("...", [(2, 3)]),
    ("i...->...", [(2, 3, 4)]),
    ("ij,jk", [(2, 1), (3, 4)]),
    ("i,i", [(3,), (1,)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
    ("ij,kj,lj->ikl", [(2, 3), (4, 3), (5, 3)]),
    ("i,i,i->", [(3,), (3,), (3,)]),
    ("ab,bc,cd,de->ae", [(2, 3), (3, 4), (4, 2), (2, 3)]),
    ("Ab,bc", [(2, 3), (3, 4)]),
    ("zA", [(2, 3)]),
    ("abc,cde->abde", [(2, 3, 4), (4, 5, 6)]),
    ("aecd,abcd->acbe", [(2, 5, 3, 4), (2, 6, 3, 4)]),
    ("acbe,aecd->abcd", [(2, 3, 6, 5), (2, 5, 3, 4)]),
    ("i j , j k -> i k", [(2, 3), (3, 4)]),
    ("", [()]),
    (",ij->ij", [(), (2, 3)]),
    ("ij->", [(0, 3)]),
    ("ij,jk->ik", [(2, 0), (0, 3)]),
]


def _operands(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


@pytest.mark.parametrize("subscripts,shapes", CASES, ids=[c[0] or "scalar" for c in CASES])
def test_einsum_matches_numpy(subscripts, shapes):
    xs = _operands(shapes)
    got = ops.einsum(subscripts, *xs)
    want = np.einsum(subscripts, *[x.astype(np.float64) for x in xs])
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


GRAD_CASES = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("bij,bkj->bki", [(2, 3, 2), (2, 4, 2)]),
    ("ij,ij->i", [(2, 3), (2, 3)]),
    ("i,j->ij", [(3,), (2,)]),
    ("ii->", [(3, 3)]),
    ("iij->ji", [(2, 2, 3)]),
    ("...ij,...jk", [(2, 1, 2, 3), (2, 3, 2)]),
    ("ij,jk", [(2, 1), (3, 2)]),
    ("ij,jk,kl->il", [(2, 3), (3, 2), (2, 2)]),
    ("abc,cde->abde", [(2, 2, 3), (3, 2, 2)]),
]


@pytest.mark.parametrize("subscripts,shapes", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_einsum_gradients_match_finite_differences(subscripts, shapes):
    check_grad(lambda *xs: ops.einsum(subscripts, *xs), lambda *xs: np.einsum(subscripts, *xs), _operands(shapes, 3),
               atol=2e-3, rtol=2e-3)


def test_einsum_gradient_of_variables_in_a_tape():
    w = lamina.Variable(np.arange(6, dtype=np.float32).reshape(2, 3))
    x = np.ones((4, 2), np.float32)
    with lamina.GradientTape() as tape:
        loss = ops.sum(ops.einsum("bi,ij->bj", x, w))
    (g,) = tape.gradient(loss, [w])
    np.testing.assert_allclose(g.numpy(), np.full((2, 3), 4.0))   # d/dw_ij sum_b x_bi w_ij = sum_b x_bi


def _count_matmuls(monkeypatch):
    calls = []

    def counting(a, b):
        calls.append((a.shape, b.shape))
        return ops.matmul(a, b)
    monkeypatch.setattr(einsum_module, "matmul", counting)
    return calls


def test_each_contraction_is_one_matmul_of_batch_m_k_by_batch_k_n(monkeypatch):
    calls = _count_matmuls(monkeypatch)
    a, b = _operands([(2, 3, 4), (2, 4, 5)])
    ops.einsum("bij,bjk->bik", a, b)
    assert calls == [((2, 3, 4), (2, 4, 5))]
    calls.clear()
    x, w = _operands([(2, 3, 4), (4, 5, 6)])
    ops.einsum("abc,cde->abde", x, w)       # no batch label: one (6, 4) @ (4, 30) GEMM
    assert calls == [((6, 4), (4, 30))]
    calls.clear()
    ops.einsum("ij,jk,kl->il", *_operands([(30, 2), (2, 30), (30, 4)]))
    assert calls == [((2, 30), (30, 4)), ((30, 2), (2, 4))]   # the smaller intermediate (2, 4) first


def test_index_only_in_one_operand_is_summed_first(monkeypatch):
    calls = _count_matmuls(monkeypatch)
    a, b = _operands([(2, 3, 7), (3, 4)])
    out = ops.einsum("ijx,jk->ik", a, b)
    assert calls == [((2, 3), (3, 4))]      # x was summed away before the GEMM
    np.testing.assert_allclose(out.numpy(), np.einsum("ijx,jk->ik", a, b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("subscripts,shapes,match", [
    ("ij,jk->ik", [(2, 3), (4, 5)], r"einsum: index 'j' has size 3 in operand 0 and 4 in operand 1.*'ij,jk->ik'.*"
                                    r"\(2, 3\), \(4, 5\)"),
    ("...i,...i", [(2, 3), (4, 3)], r"einsum: the ellipsis has size 2 in operand 0 and 4 in operand 1"),
    ("ii->i", [(2, 3)], r"einsum: index 'i' is repeated in operand 0 .* sizes 2 and 3"),
    ("ij,jk", [(2, 3)], r"einsum: subscripts 'ij,jk' name 2 operand\(s\) but 1 were given"),
    ("ij", [(2, 3), (3,)], r"einsum: subscripts 'ij' name 1 operand\(s\) but 2 were given"),
    ("ij,j1->i", [(2, 3), (3,)], r"einsum: subscripts 'ij,j1->i' contain the character '1'"),
    ("i..j->ij", [(2, 3)], r"stray '\.'"),
    ("ij-k", [(2, 3)], r"stray '-' or '>'"),
    ("ij->i->j", [(2, 3)], r"at most one '->'"),
    ("ij,jk->iz", [(2, 3), (3, 4)], r"einsum: output index 'z' does not appear in any input term"),
    ("ij->ii", [(2, 2)], r"einsum: output index 'i' appears more than once"),
    ("...i->i", [(2, 3)], r"einsum: the operands have 1 dimension\(s\) under '\.\.\.' but the output 'i' has no"),
    ("ijk,k->i", [(2, 3), (3,)], r"einsum: term 'ijk' gives 3 label\(s\) for operand 0, which has 2 dimension"),
    ("i......", [(2, 3)], r"more than one ellipsis"),
])
def test_einsum_errors_name_einsum_subscripts_and_shapes(subscripts, shapes, match):
    with pytest.raises(ValueError, match=match):
        ops.einsum(subscripts, *_operands(shapes))


def test_einsum_type_errors():
    with pytest.raises(TypeError, match=r"einsum: subscripts must be a string"):
        ops.einsum(3, np.ones(2, np.float32))
    with pytest.raises(TypeError, match=r"einsum: operand 0 \(shape \(3,\)\) has dtype int64.*ops.cast"):
        ops.einsum("i,i", np.arange(3), np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"einsum: no operands were given"):
        ops.einsum("ij")


# ---- dot_product_attention ------------------------------------------------------------------------

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
        logits = np.where(keep, logits, -0.7 * np.finfo(np.float32).max)
    return np.einsum("BNTS,BSNH->BTNH", _softmax(logits), v)


def _qkv(T=3, S=4, N=2, K=2, H=3, Hv=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2, T, N, H)).astype(np.float32), rng.standard_normal((2, S, K, H)).astype(np.float32),
            rng.standard_normal((2, S, K, Hv)).astype(np.float32))


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


@pytest.mark.parametrize("name,qkv,kwargs", _attention_cases(), ids=[c[0] for c in _attention_cases()])
def test_dot_product_attention_matches_reference(name, qkv, kwargs):
    got = ops.dot_product_attention(*qkv, **kwargs)
    want = _reference_attention(*qkv, **kwargs)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_dot_product_attention_gradients():
    q, k, v = _qkv(T=2, S=3, N=2, K=1, H=2, Hv=2, seed=2)
    mask = np.array([[True, True, False]] * 2)[None, None].repeat(2, 0)
    check_grad(lambda a, b, c: ops.dot_product_attention(a, b, c, mask=mask),
               lambda a, b, c: _reference_attention(a, b, c, mask=mask), [q, k, v], atol=2e-3, rtol=2e-3)


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "jax") != "jax", reason="parity uses Keras's jax backend")
@pytest.mark.parametrize("name,qkv,kwargs", [c for c in _attention_cases() if c[0] != "value_depth"],
                         ids=[c[0] for c in _attention_cases() if c[0] != "value_depth"])
def test_dot_product_attention_matches_keras(name, qkv, kwargs):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    want = np.asarray(keras.ops.dot_product_attention(*qkv, **kwargs))
    np.testing.assert_allclose(ops.dot_product_attention(*qkv, **kwargs).numpy(), want, rtol=1e-5, atol=1e-5)


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
    with pytest.raises(ValueError, match=r"flash_attention=True is not available in lamina"):
        ops.dot_product_attention(q, k, v, flash_attention=True)
    with pytest.raises(ValueError, match=r"attn_logits_soft_cap=.* is not supported"):
        ops.dot_product_attention(q, k, v, attn_logits_soft_cap=20.0)
    with pytest.raises(TypeError, match=r"query has dtype int64"):
        ops.dot_product_attention(q.astype(np.int64), k, v)
