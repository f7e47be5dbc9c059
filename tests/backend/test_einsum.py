"""ops.einsum against numpy.einsum (forward and finite-difference gradients), its pairwise GEMM
plan and its errors. (ops.dot_product_attention: tests/backend/test_attention.py.)"""
import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.backend import einsum as einsum_module
from opcheck import check_grad

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
