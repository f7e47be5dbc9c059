import numpy as np
import pytest

import lamina
from lamina import ops
from opcheck import check_forward, check_grad


@pytest.mark.parametrize("shape,axis", [((7,), -1), ((3, 5), -1), ((4, 3, 6), 1), ((2, 0), -1), ((5, 4), 0)])
def test_sort_and_argsort_match_numpy(shape, axis):
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 3, shape).astype(np.float32)  # many ties: argsort must be stable
    check_forward(ops.sort, lambda a, axis: np.sort(a, axis=axis), [x], axis=axis)
    check_forward(ops.argsort, lambda a, axis: np.argsort(a, axis=axis, kind="stable"), [x], axis=axis)


@pytest.mark.parametrize("shape", [(2, 3), (4,), (), (2, 0, 3)])
def test_sort_and_argsort_with_axis_none_flatten_as_numpy(shape):
    x = np.random.default_rng(1).integers(-3, 3, shape).astype(np.float32)
    np.testing.assert_array_equal(ops.sort(x, axis=None).numpy(), np.sort(x, axis=None))
    np.testing.assert_array_equal(ops.argsort(x, axis=None).numpy(), np.argsort(x, axis=None, kind="stable"))


@pytest.mark.parametrize("axis,exc,pattern", [
    ((0, 1), TypeError, r"sort: axis must be an integer, received \(0, 1\)"),
    (1.5, TypeError, r"sort: axis must be an integer, received 1\.5"),
    (2, ValueError, r"sort: axis 2 is out of range for a tensor of shape \(2, 3\); expected -2 <= axis <= 1"),
])
def test_sort_axis_errors_name_the_op(axis, exc, pattern):
    with pytest.raises(exc, match=pattern):
        ops.sort(np.ones((2, 3), np.float32), axis=axis)


def test_tensordot_and_top_k_check_their_integers():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"tensordot: axes=5 must be between 0 and the rank"):
        ops.tensordot(a, a.T, axes=5)
    with pytest.raises(ValueError, match=r"tensordot: axes\[0\] 4 is out of range for a tensor of shape \(2, 3\)"):
        ops.tensordot(a, a.T, axes=([4], [0]))
    with pytest.raises(TypeError, match=r"tensordot: axes must be an integer"):
        ops.tensordot(a, a.T, axes=1.5)
    with pytest.raises(TypeError, match=r"top_k: k must be an integer, received 1\.5"):
        ops.top_k(a, 1.5)


def test_sort_nan_last_and_ints():
    x = np.array([3.0, np.nan, -1.0, 2.0], np.float32)
    np.testing.assert_array_equal(ops.sort(x).numpy(), np.sort(x))
    np.testing.assert_array_equal(ops.sort(np.array([3, 1, 2], np.int32)).numpy(), [1, 2, 3])


def test_top_k_values_indices_and_gradient():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 9)).astype(np.float32)
    v, i = ops.top_k(x, 3)
    ref_i = np.argsort(-x, axis=-1, kind="stable")[:, :3]
    np.testing.assert_array_equal(i.numpy(), ref_i)
    np.testing.assert_array_equal(v.numpy(), np.take_along_axis(x, ref_i, -1))
    check_grad(lambda t: ops.top_k(t, 3)[0],
               lambda a: np.take_along_axis(a, np.argsort(-a, axis=-1, kind="stable")[:, :3], -1), [x])
    with pytest.raises(ValueError, match=r"k=10.*\(4, 9\)"):
        ops.top_k(x, 10)


def test_in_top_k():
    p = np.array([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4]], np.float32)
    np.testing.assert_array_equal(ops.in_top_k([2, 0], p, 1).numpy(), [False, False])
    np.testing.assert_array_equal(ops.in_top_k([2, 0], p, 2).numpy(), [True, True])


def test_stop_gradient():
    v = lamina.Variable(np.array(2.0, np.float32))
    with lamina.GradientTape() as tape:
        y = v * ops.stop_gradient(v * 3.0)
    assert float(tape.gradient(y, v)) == pytest.approx(6.0)


def test_tensordot_outer_norms_and_stacks():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((3, 4, 5)).astype(np.float32)
    check_forward(lambda x, y: ops.tensordot(x, y, axes=2), lambda x, y: np.tensordot(x, y, axes=2), [a, b],
                  atol=1e-4)
    check_forward(lambda x, y: ops.tensordot(x, y, axes=([1], [0])),
                  lambda x, y: np.tensordot(x, y, axes=([1], [0])), [a, b], atol=1e-4)
    check_grad(lambda x, y: ops.tensordot(x, y, axes=2), lambda x, y: np.tensordot(x, y, axes=2),
               [a[:, :2, :2].copy(), b[:2, :2, :2].copy()])
    u, w = rng.standard_normal(3).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    check_forward(ops.outer, np.outer, [u, w])
    m = rng.standard_normal((3, 4)).astype(np.float32)
    for order in (None, 1, 2, np.inf, 3):
        check_forward(lambda x: ops.norm(x, ord=order, axis=-1), lambda x: np.linalg.norm(x, ord=order, axis=-1),
                      [m], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ops.normalize(m).numpy(), axis=-1), np.ones(3), rtol=1e-6)
    np.testing.assert_array_equal(ops.hstack([m, m]).numpy(), np.hstack([m, m]))
    np.testing.assert_array_equal(ops.vstack([u, u]).numpy(), np.vstack([u, u]))
    assert ops.shape(m) == (3, 4) and ops.ndim(m) == 2 and ops.size(m) == 12 and ops.dtype(m) == "float32"
    np.testing.assert_allclose(float(ops.trace(m[:, :3])), np.trace(m[:, :3]), rtol=1e-6)
    np.testing.assert_allclose(ops.average(m, axis=1, weights=np.arange(4, dtype=np.float32)).numpy(),
                               np.average(m, axis=1, weights=np.arange(4)), rtol=1e-5)
