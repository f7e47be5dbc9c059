"""backend/manipulation.py: forward against numpy, gradients against finite differences, errors."""
import numpy as np
import pytest

import lamina
from lamina import ops
from opcheck import check_forward, check_grad



def T(x):
    """convert_to_tensor, keeping 0-d inputs 0-d (tensor.convert_to_tensor currently returns shape
    (1,) for them: np.ascontiguousarray promotes 0-d arrays to 1-d)."""
    if np.ndim(x) == 0 and not isinstance(x, lamina.Tensor):
        return ops.reshape(lamina.convert_to_tensor(np.reshape(x, (1,))), ())
    return lamina.convert_to_tensor(x)


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ---- transpose and friends ------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axes", [
    ((3, 5), None), ((7, 1), (1, 0)), ((2, 3, 4), (1, 2, 0)), ((2, 3, 4), (2, 0, 1)),
    ((3, 1, 4, 2), (3, 1, 0, 2)), ((0, 3), None), ((4, 0, 2), (2, 0, 1)), ((5,), None),
    ((2, 3, 4), (-1, 0, 1)),
])
def test_transpose_forward(rng, shape, axes):
    x = randn(rng, *shape)
    check_forward(lambda t: ops.transpose(t, axes), lambda a: np.transpose(a, axes), [x])


def test_zero_dimensional_inputs():
    s = T(np.float32(2.5))
    assert s.shape == ()
    assert ops.transpose(s).shape == () and float(ops.transpose(s)) == 2.5
    assert s.T.shape == () and s[...].shape == () and s[None].shape == (1,)
    assert ops.expand_dims(s, 0).shape == (1,) and ops.ravel(s).shape == (1,)
    assert ops.flip(s).shape == () and ops.pad(s, 0).shape == ()
    np.testing.assert_array_equal(ops.tile(s, 3).numpy(), np.tile(np.float32(2.5), 3))
    np.testing.assert_array_equal(ops.repeat(s, 2).numpy(), [2.5, 2.5])
    assert ops.take(T(np.arange(6.0, dtype=np.float32)), np.array(4)).shape == ()
    np.testing.assert_array_equal(ops.take(T(np.arange(6).reshape(2, 3)), np.array(1), axis=1).numpy(), [1, 4])
    with pytest.raises(IndexError, match="too many indices"):
        s[0]


@pytest.mark.parametrize("shape", [(67, 45), (300, 257), (9, 33, 70), (1, 40000)])
def test_transpose_large_blocked_and_parallel_paths(rng, shape):
    x = randn(rng, *shape)
    check_forward(ops.transpose, np.transpose, [x])
    if len(shape) == 3:
        for axes in [(0, 2, 1), (2, 1, 0), (1, 0, 2)]:
            check_forward(lambda t: ops.transpose(t, axes), lambda a: np.transpose(a, axes), [x])


def test_transpose_of_ints_and_bools(rng):
    a = rng.integers(-5, 5, (4, 6)).astype(np.int64)
    np.testing.assert_array_equal(ops.transpose(T(a)).numpy(), a.T)
    b = a > 0
    np.testing.assert_array_equal(ops.transpose(T(b)).numpy(), b.T)
    np.testing.assert_array_equal(ops.transpose(T(a.astype(np.int32))).numpy(), a.T)


def test_transpose_grad(rng):
    check_grad(lambda t: ops.transpose(t, (2, 0, 1)), lambda a: np.transpose(a, (2, 0, 1)), [randn(rng, 2, 3, 5)])


def test_tensor_T_and_transpose_method(rng):
    x = randn(rng, 2, 3, 4)
    t = T(x)
    np.testing.assert_array_equal(t.T.numpy(), x.T)
    np.testing.assert_array_equal(t.transpose(1, 0, 2).numpy(), x.transpose(1, 0, 2))
    np.testing.assert_array_equal(t.transpose((2, 1, 0)).numpy(), x.transpose((2, 1, 0)))
    np.testing.assert_array_equal(t.transpose().numpy(), x.transpose())


def test_transpose_bad_axes():
    x = T(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"transpose.*\(0, 0, 1\).*\(2, 3, 4\)"):
        ops.transpose(x, (0, 0, 1))
    with pytest.raises(ValueError, match=r"not a permutation"):
        ops.transpose(x, (0, 1))
    with pytest.raises(ValueError, match=r"not a permutation"):
        ops.transpose(x, (0, 1, 3))


def test_swapaxes_moveaxis(rng):
    x = randn(rng, 2, 3, 4, 5)
    check_forward(lambda t: ops.swapaxes(t, 0, -1), lambda a: np.swapaxes(a, 0, -1), [x])
    for src, dst in [(0, -1), (-1, 0), ((0, 1), (3, 2)), ((0, 2), (1, 0)), (1, 1)]:
        check_forward(lambda t: ops.moveaxis(t, src, dst), lambda a: np.moveaxis(a, src, dst), [x])
    check_grad(lambda t: ops.moveaxis(t, 0, 2), lambda a: np.moveaxis(a, 0, 2), [randn(rng, 2, 3, 4)])
    with pytest.raises(ValueError, match=r"axis 4 is out of range.*\(2, 3, 4, 5\)"):
        ops.swapaxes(T(x), 0, 4)
    with pytest.raises(ValueError, match="same number"):
        ops.moveaxis(T(x), (0, 1), (2,))
    with pytest.raises(ValueError, match="repeated axis"):
        ops.moveaxis(T(x), (0, 0), (1, 2))


# ---- shape-only ops -------------------------------------------------------------------------------

def test_expand_dims_squeeze_ravel(rng):
    x = randn(rng, 3, 1, 4, 1)
    for ax in [0, 2, -1, (0, 3), (-1, -2)]:
        check_forward(lambda t: ops.expand_dims(t, ax), lambda a: np.expand_dims(a, ax), [x])
    for ax in [None, 1, -1, (1, 3)]:
        check_forward(lambda t: ops.squeeze(t, ax), lambda a: np.squeeze(a, ax), [x])
    check_forward(ops.ravel, np.ravel, [x])
    np.testing.assert_array_equal(T(x).squeeze().numpy(), x.squeeze())
    np.testing.assert_array_equal(T(x).squeeze(1).numpy(), x.squeeze(1))
    assert ops.squeeze(T(np.zeros((1, 0, 1), np.float32))).shape == (0,)
    check_grad(lambda t: ops.squeeze(ops.expand_dims(t, 0), (0, 2)), lambda a: a.reshape(3, 4), [randn(rng, 3, 1, 4)])


def test_squeeze_expand_dims_errors():
    x = T(np.zeros((3, 1, 4), np.float32))
    with pytest.raises(ValueError, match=r"squeeze axis 0.*\(3, 1, 4\).*size is 3"):
        ops.squeeze(x, 0)
    with pytest.raises(ValueError, match=r"axis 3 is out of range.*\(3, 1, 4\)"):
        ops.squeeze(x, 3)
    with pytest.raises(ValueError, match="axis 5 is out of range"):
        ops.expand_dims(x, 5)
    with pytest.raises(ValueError, match="repeated axis"):
        ops.expand_dims(x, (0, 0))


def test_reshape_shares_buffer_and_validates():
    x = T(np.arange(12, dtype=np.float32))
    y = ops.reshape(x, (3, -1))
    assert y.shape == (3, 4) and y._buf is x._buf
    with pytest.raises(ValueError, match=r"\(12,\).*\(5, -1\)"):
        ops.reshape(x, (5, -1))


# ---- concatenate / stack ----------------------------------------------------------------------------

@pytest.mark.parametrize("shapes,axis", [
    ([(2, 3), (4, 3)], 0), ([(2, 3), (2, 1), (2, 5)], 1), ([(2, 3, 4), (2, 3, 1)], -1),
    ([(3,), (0,), (2,)], 0), ([(0, 3), (0, 3)], 1), ([(2, 2), (3,)], None), ([(1, 1, 7), (1, 2, 7)], 1),
])
def test_concatenate_forward(rng, shapes, axis):
    xs = [randn(rng, *s) for s in shapes]
    got = ops.concatenate([T(a) for a in xs], axis=axis)
    np.testing.assert_array_equal(got.numpy(), np.concatenate(xs, axis=axis))


def test_concatenate_ints_and_large(rng):
    a = rng.integers(0, 9, (300, 70)).astype(np.int32)
    b = rng.integers(0, 9, (300, 50)).astype(np.int32)
    np.testing.assert_array_equal(ops.concatenate([T(a), T(b)], axis=1).numpy(), np.concatenate([a, b], 1))
    np.testing.assert_array_equal(ops.concatenate([T(a), T(a)], axis=0).numpy(), np.concatenate([a, a], 0))


def test_concatenate_grad(rng):
    xs = [randn(rng, 2, 3), randn(rng, 2, 1), randn(rng, 2, 4)]
    check_grad(lambda *ts: ops.concatenate(list(ts), axis=1), lambda *a: np.concatenate(a, axis=1), xs)
    check_grad(lambda a, b: ops.concatenate([a, b, a], axis=0), lambda a, b: np.concatenate([a, b, a], 0),
               [randn(rng, 1, 3), randn(rng, 2, 3)])


def test_concatenate_errors():
    a = T(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"axis 1.*\(2, 3\), \(3, 3\)"):
        ops.concatenate([a, T(np.zeros((3, 3), np.float32))], axis=1)
    with pytest.raises(ValueError, match=r"\(2, 3\), \(2, 3, 1\)"):
        ops.concatenate([a, T(np.zeros((2, 3, 1), np.float32))])
    mixed = ops.concatenate([T(np.ones((2, 3), np.int32)), a, T(np.ones((1, 3), bool))])  # promoted, as Keras
    assert mixed.dtype == "float32" and mixed.numpy().tolist() == [[1] * 3] * 2 + [[0] * 3] * 2 + [[1] * 3]
    assert ops.stack([T(np.ones(2, np.int32)), T(np.ones(2, np.int64))]).dtype == "int64"
    with lamina.device("cpu:1"):
        b = ops.zeros((2, 3))
    with pytest.raises(ValueError, match=r"different devices.*cpu:0.*cpu:1"):
        ops.concatenate([a, b])
    with pytest.raises(ValueError, match="at least one"):
        ops.concatenate([])
    with pytest.raises(ValueError, match="zero-dimensional"):
        ops.concatenate([T(1.0), T(2.0)])
    with pytest.raises(ValueError, match=r"axis 2 is out of range.*\(2, 3\)"):
        ops.concatenate([a, a], axis=2)
    with pytest.raises(TypeError, match="list or tuple"):
        ops.concatenate(a)


def test_stack(rng):
    xs = [randn(rng, 2, 3) for _ in range(3)]
    for ax in [0, 1, 2, -1]:
        check_forward(lambda *ts: ops.stack(list(ts), axis=ax), lambda *a: np.stack(a, axis=ax), xs)
    check_grad(lambda *ts: ops.stack(list(ts), axis=1), lambda *a: np.stack(a, axis=1), xs[:2])
    assert ops.stack([T(1.0), T(2.0)]).shape == (2,)
    with pytest.raises(ValueError, match=r"same shape.*\(2, 3\), \(3, 2\)"):
        ops.stack([T(xs[0]), T(xs[0].T)])
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        ops.stack([T(xs[0])], axis=3)


# ---- split / unstack --------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,ios,axis", [
    ((6, 4), 3, 0), ((6, 4), 2, 1), ((5, 4), [1, 3], 0), ((5, 4), [-2], 0), ((5, 4), [2, 9], 0),
    ((5, 4), [3, 1], 0), ((2, 0), 1, 1), ((0, 3), 3, 1), ((4, 3, 2), [1], -1),
])
def test_split_forward(rng, shape, ios, axis):
    x = randn(rng, *shape)
    check_forward(lambda t: ops.split(t, ios, axis), lambda a: np.split(a, ios, axis), [x])


def test_split_grad_including_unused_pieces(rng):
    x = randn(rng, 6, 4)
    check_grad(lambda t: ops.split(t, [1, 4], axis=0), lambda a: np.split(a, [1, 4], axis=0), [x])
    check_grad(lambda t: ops.split(t, 2, axis=1)[1], lambda a: np.split(a, 2, axis=1)[1], [x])
    check_grad(lambda t: ops.split(t, 3)[0] * ops.split(t, 3)[2], lambda a: a[:2] * a[4:], [x])


def test_split_gradients_on_persistent_tape_and_shared_input(rng):
    x = T(randn(rng, 4, 3))
    w = randn(rng, 2, 3)
    with lamina.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = ops.split(x, 2)
        loss1 = ops.sum(a * w)
        loss2 = ops.sum(b * w) + ops.sum(x * 2.0)
    for _ in range(2):
        g1, g2 = tape.gradient(loss1, x), tape.gradient(loss2, x)
        np.testing.assert_allclose(g1.numpy(), np.concatenate([w, np.zeros_like(w)]), rtol=1e-6)
        np.testing.assert_allclose(g2.numpy(), np.concatenate([np.zeros_like(w), w]) + 2.0, rtol=1e-6)
        g = tape.gradient([loss1, loss2], x)
        np.testing.assert_allclose(g.numpy(), np.concatenate([w, w]) + 2.0, rtol=1e-6)


def test_split_errors():
    x = T(np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(5, 4\).*size 5.*3 equal sections"):
        ops.split(x, 3)
    with pytest.raises(ValueError, match="positive"):
        ops.split(x, 0)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        ops.split(x, 2, axis=2)


def test_unstack(rng):
    x = randn(rng, 3, 4, 2)
    for ax in [0, 1, -1]:
        check_forward(lambda t: ops.unstack(t, axis=ax), lambda a: [np.take(a, i, ax) for i in range(a.shape[ax])], [x])
    check_grad(lambda t: ops.unstack(t, axis=1), lambda a: [a[:, i] for i in range(a.shape[1])], [randn(rng, 3, 4)])
    assert ops.unstack(T(np.zeros((0, 3), np.float32))) == []
    with pytest.raises(ValueError, match=r"num=2.*\(3, 4, 2\).*size 3"):
        ops.unstack(T(x), num=2)


def test_unstack_then_stack_roundtrip_grad(rng):
    # the pattern of an unrolled RNN: unstack over time, process, stack back
    x = randn(rng, 2, 5, 3)
    check_grad(lambda t: ops.stack([s * (i + 1.0) for i, s in enumerate(ops.unstack(t, axis=1))], axis=1),
               lambda a: a * np.arange(1, 6).reshape(1, 5, 1), [x])


# ---- indexing --------------------------------------------------------------------------------------

_A = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
_KEYS = [
    0, -1, 2, (1, 2), (-1, -2, -3), slice(None), slice(1, None), slice(None, None, -1), slice(None, None, 2),
    (slice(None), slice(3, 0, -2)), (Ellipsis, 1), (1, Ellipsis), (None,), (None, 0, None), (Ellipsis, None),
    (slice(None), None, slice(1, 3)), (0, slice(None), slice(None, None, -3)), slice(5, 2), slice(10, 20),
    (slice(None), slice(None), slice(-100, 100)), (Ellipsis,), (1, 2, 3),
    [0, 2], [[0, 1], [2, 2]], [-1, 0, -1], (slice(None), [3, 0, 3]), (Ellipsis, [4, 0]), ([], ),
    (slice(None, None, -1), [1, 2], slice(1, 4)), (0, [1, 2]), (0, slice(None), [1, 2]), ([2, 1], slice(None), 0),
    (np.array([[1], [2]]), ), (slice(None), np.array([0, 3])),
]


@pytest.mark.parametrize("key", _KEYS, ids=[repr(k) for k in _KEYS])
def test_getitem_forward(key):
    check_forward(lambda t: t[key], lambda a: a[key], [_A])


def test_getitem_with_tensor_indices_and_masks(rng):
    x = randn(rng, 4, 5)
    t = T(x)
    idx = np.array([3, 0, 0, -2], np.int64)
    np.testing.assert_array_equal(t[T(idx)].numpy(), x[idx])
    np.testing.assert_array_equal(t[:, T(idx.astype(np.int32))].numpy(), x[:, idx])
    np.testing.assert_array_equal(t[T(np.int64(2))].numpy(), x[2])
    mask = x > 0.3
    np.testing.assert_array_equal(t[T(mask)].numpy(), x[mask])
    np.testing.assert_array_equal(t[mask].numpy(), x[mask])
    np.testing.assert_array_equal(t[t > 0.3].numpy(), x[mask])
    rows = mask[:, 0]
    np.testing.assert_array_equal(t[T(rows)].numpy(), x[rows])
    np.testing.assert_array_equal(t[:, mask[0]].numpy(), x[:, mask[0]])
    np.testing.assert_array_equal(t[list(rows)].numpy(), x[list(rows)])
    none = np.zeros((4, 5), bool)
    assert t[none].shape == (0,)
    z = np.zeros((0, 3), np.float32)
    assert T(z)[:, 1].shape == (0,)
    assert T(z)[np.zeros((0, 3), bool)].shape == (0,)
    i3 = np.arange(24).reshape(2, 3, 4)
    np.testing.assert_array_equal(T(i3)[i3 % 3 == 0].numpy(), i3[i3 % 3 == 0])
    np.testing.assert_array_equal(T(i3)[0, :, i3[0, 0] > 1].numpy(), i3[0, :, i3[0, 0] > 1])


def test_getitem_large_mask_parallel_nonzero(rng):
    x = randn(rng, 300, 257)
    mask = x > 0.1
    np.testing.assert_array_equal(T(x)[T(mask)].numpy(), x[mask])


@pytest.mark.parametrize("key", [
    1, (slice(None), -1), slice(None, None, -2), (None, slice(1, 3), Ellipsis, 0), [2, 0, 2, 2],
    (slice(None), [[1, 1], [4, 0]]), (0, [1, 1, 2]), (slice(None, None, -1), [0, 0]),
], ids=repr)
def test_getitem_grad(rng, key):
    check_grad(lambda t: t[key], lambda a: a[key], [randn(rng, 3, 5)])


@pytest.mark.parametrize("key", [([1, 1], slice(None), 0), (1, slice(None, None, -1), [2, 0, 2]),
                                 (Ellipsis, [2, 2], 1), (slice(1, None), None, [0, -1])], ids=repr)
def test_getitem_grad_3d_mixed_int_and_array(rng, key):
    x = randn(rng, 2, 3, 4)
    assert T(x)[key].shape == x[key].shape
    check_grad(lambda t: t[key], lambda a: a[key], [x])


def test_getitem_mask_grad(rng):
    x = randn(rng, 4, 5)
    mask = x > 0
    check_grad(lambda t: t[T(mask)], lambda a: a[mask], [x])
    check_grad(lambda t: t[:, mask[0]], lambda a: a[:, mask[0]], [x])


def test_getitem_errors():
    t = T(np.zeros((3, 4), np.float32))
    with pytest.raises(IndexError, match=r"index 3 is out of bounds for axis 0 with size 3.*\(3, 4\)"):
        t[3]
    with pytest.raises(IndexError, match=r"index -5 is out of bounds for axis 1 with size 4"):
        t[0, -5]
    with pytest.raises(IndexError, match=r"too many indices.*\(3, 4\)"):
        t[0, 0, 0]
    with pytest.raises(IndexError, match="single ellipsis"):
        t[..., ...]
    with pytest.raises(IndexError, match=r"index 4 .*out of bounds for an axis of size 3"):
        t[[0, 4]]
    with pytest.raises(IndexError, match="one integer-array"):
        t[[0, 1], [1, 2]]
    with pytest.raises(IndexError, match=r"mask of shape \(4,\).*\(3,\)"):
        t[np.ones(4, bool)]
    with pytest.raises(TypeError, match="valid indices.*float"):
        t[1.5]
    with pytest.raises(TypeError, match="integers"):
        t[np.array([0.5])]
    with pytest.raises(TypeError, match="Python bool"):
        t[True]
    with pytest.raises(TypeError, match="float32"):
        t[T(np.array([1.0], np.float32))]
    with lamina.device("cpu:1"):
        i = T(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"cpu:1.*cpu:0"):
        t[i]


def test_iteration_and_len(rng):
    x = randn(rng, 3, 2)
    rows = [r.numpy() for r in T(x)]
    np.testing.assert_array_equal(np.stack(rows), x)
    assert len(T(x)) == 3


def test_slice_and_slice_update(rng):
    x = randn(rng, 4, 5, 3)
    check_forward(lambda t: ops.slice(t, (1, 0, 2), (2, 5, 1)), lambda a: a[1:3, 0:5, 2:3], [x])
    check_forward(lambda t: ops.slice(t, [1, 2, 0], [-1, 2, -1]), lambda a: a[1:, 2:4, :], [x])
    check_forward(lambda t: ops.slice(t, T(np.array([3, 4, 2])), (0, 1, 1)), lambda a: a[3:3, 4:5, 2:3], [x])
    check_grad(lambda t: ops.slice(t, (1, 1), (2, 3)), lambda a: a[1:3, 1:4], [randn(rng, 4, 5)])
    u = randn(rng, 2, 1, 3)

    def ref_update(a, b):
        a = a.copy()
        a[2:4, 3:4, :] = b
        return a
    check_forward(lambda a, b: ops.slice_update(a, (2, 3, 0), b), ref_update, [x, u])
    xs, us = randn(rng, 4, 5), randn(rng, 2, 2)

    def ref2(a, b):
        a = a.copy()
        a[1:3, 2:4] = b
        return a
    check_grad(lambda a, b: ops.slice_update(a, (1, 2), b), ref2, [xs, us])
    with pytest.raises(ValueError, match=r"block starting at \(3, 0, 0\) with shape \(2, 1, 3\).*\(4, 5, 3\)"):
        ops.slice_update(T(x), (3, 0, 0), T(u))
    with pytest.raises(ValueError, match=r"3 start indices"):
        ops.slice(T(x), (0, 0), (1, 1))
    with pytest.raises(TypeError, match="int32.*float32"):
        ops.slice_update(T(x), (0, 0, 0), T(u.astype(np.int32)))
    with pytest.raises(ValueError, match="does not fit"):
        ops.slice(T(x), (-1, 0, 0), (1, 1, 1))


# ---- take / take_along_axis -------------------------------------------------------------------------

@pytest.mark.parametrize("shape,idx,axis", [
    ((4, 5), [0, 3, -1, 3], 0), ((4, 5), [[1, 2], [4, 0]], 1), ((3, 4, 5), [2], -1), ((4, 5), [7, -20], None),
    ((4, 5), [], 0), ((0, 3), [], 0), ((2, 0), [1], 0), ((6,), np.array([5, 0], np.int32), 0),
    ((2, 3, 4), np.array(1), 1),
])
def test_take_forward(rng, shape, idx, axis):
    x = randn(rng, *shape)
    i = np.asarray(idx, dtype=np.asarray(idx).dtype if np.asarray(idx).size else np.int64)
    got = ops.take(T(x), i, axis=axis)
    np.testing.assert_array_equal(got.numpy(), np.take(x, i, axis=axis))
    np.testing.assert_array_equal(ops.take(T(x), T(i), axis=axis).numpy(), np.take(x, i, axis=axis))


def test_take_int_and_bool_data(rng):
    a = rng.integers(-9, 9, (5, 3)).astype(np.int64)
    np.testing.assert_array_equal(ops.take(T(a), [4, 1], axis=0).numpy(), a[[4, 1]])
    b = a > 0
    np.testing.assert_array_equal(ops.take(T(b), [2, 0, 2], axis=1).numpy(), b[:, [2, 0, 2]])


def _take_ref_grad(shape, idx, axis, g):
    gx = np.zeros(shape, np.float64)
    gxm = np.moveaxis(gx, axis, 0)
    gm = np.moveaxis(g, axis, 0).reshape((len(idx),) + gxm.shape[1:])
    np.add.at(gxm, np.asarray(idx) % shape[axis], gm)
    return gx


def test_take_grad_repeated_indices(rng):
    check_grad(lambda t: ops.take(t, [1, 1, 3, -4, 1], axis=0), lambda a: np.take(a, [1, 1, 3, -4, 1], axis=0),
               [randn(rng, 4, 3)])
    check_grad(lambda t: ops.take(t, [[0, 2], [2, 2]], axis=1), lambda a: np.take(a, [[0, 2], [2, 2]], axis=1),
               [randn(rng, 2, 3, 2)])
    check_grad(lambda t: ops.take(t, [5, 0, 5]), lambda a: np.take(a, [5, 0, 5]), [randn(rng, 2, 3)])


@pytest.mark.parametrize("shape,m,axis", [((40, 1000), 50, 0), ((3, 20000), 5, 0), ((7, 30, 200), 40, 1)])
def test_take_grad_large_parallel_paths(rng, shape, m, axis):
    x = T(randn(rng, *shape))
    idx = rng.integers(-shape[axis], shape[axis], m)
    out_shape = list(shape)
    out_shape[axis] = m
    w = randn(rng, *out_shape)
    with lamina.GradientTape() as tape:
        tape.watch(x)
        loss = ops.sum(ops.take(x, idx, axis=axis) * w)
    g = tape.gradient(loss, x)
    np.testing.assert_allclose(g.numpy(), _take_ref_grad(shape, idx, axis, w), rtol=1e-5, atol=1e-5)


def test_take_errors():
    x = T(np.zeros((3, 4), np.float32))
    with pytest.raises(IndexError, match=r"take: index 4 .*size 4.*-4 to 3"):
        ops.take(x, [0, 4], axis=1)
    with pytest.raises(IndexError, match=r"index -4 .*size 3"):
        ops.take(x, [-4], axis=0)
    with pytest.raises(IndexError, match=r"empty"):
        ops.take(T(np.zeros((0, 2), np.float32)), [0], axis=0)
    with pytest.raises(TypeError, match="integers.*float64"):
        ops.take(x, [0.5], axis=0)
    with pytest.raises(TypeError, match="int32 or int64.*bool"):
        ops.take(x, T(np.array([True])), axis=0)
    with pytest.raises(ValueError, match=r"axis 2 is out of range.*\(3, 4\)"):
        ops.take(x, [0], axis=2)
    with lamina.device("cpu:1"):
        i = T(np.array([0]))
    with pytest.raises(ValueError, match="cpu:1"):
        ops.take(x, i, axis=0)


def test_take_along_axis(rng):
    x = randn(rng, 3, 4, 5)
    i1 = rng.integers(-4, 4, (3, 2, 5))
    check_forward(lambda t, i: ops.take_along_axis(t, i, 1), lambda a, i: np.take_along_axis(a, i, 1), [x, i1])
    i2 = rng.integers(0, 5, (1, 4, 3))  # broadcasts over axis 0
    check_forward(lambda t, i: ops.take_along_axis(t, i, -1), lambda a, i: np.take_along_axis(a, i, -1), [x, i2])
    x3 = randn(rng, 1, 4, 1)
    i3 = rng.integers(0, 4, (3, 6, 5)).astype(np.int32)
    check_forward(lambda t, i: ops.take_along_axis(t, i, 1), lambda a, i: np.take_along_axis(a, i, 1), [x3, i3])
    flat = rng.integers(0, 60, (7,))
    check_forward(lambda t, i: ops.take_along_axis(t, i, None), lambda a, i: np.take_along_axis(a, i, None),
                  [x, flat])
    srt = np.argsort(x, axis=-1)
    check_forward(lambda t, i: ops.take_along_axis(t, i, -1), lambda a, i: np.take_along_axis(a, i, -1), [x, srt])
    check_grad(lambda t, i: ops.take_along_axis(t, i, 1), lambda a, i: np.take_along_axis(a, i, 1),
               [randn(rng, 2, 3, 4), rng.integers(0, 3, (2, 5, 4))])
    check_grad(lambda t, i: ops.take_along_axis(t, i, 0), lambda a, i: np.take_along_axis(a, i, 0),
               [randn(rng, 3, 1), rng.integers(0, 3, (4, 6))])
    check_forward(lambda t, i: ops.take_along_axis(t, i, 0), lambda a, i: np.take_along_axis(a, i, 0),
                  [randn(rng, 0, 3), np.zeros((0, 3), np.int64)])


def test_take_along_axis_large_grad(rng):
    x = T(randn(rng, 64, 700))
    idx = rng.integers(0, 700, (64, 900))
    w = randn(rng, 64, 900)
    with lamina.GradientTape() as tape:
        tape.watch(x)
        loss = ops.sum(ops.take_along_axis(x, idx, 1) * w)
    want = np.zeros((64, 700))
    np.add.at(want, (np.arange(64)[:, None], idx), w)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), want, rtol=1e-5, atol=1e-5)


def test_take_along_axis_errors():
    x = T(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"indices of shape \(2,\).*\(3, 4\)"):
        ops.take_along_axis(x, [0, 1], axis=1)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 1\).*broadcast"):
        ops.take_along_axis(x, np.zeros((2, 1), np.int64), axis=1)
    with pytest.raises(IndexError, match="index 4"):
        ops.take_along_axis(x, np.full((3, 1), 4), axis=1)
    with pytest.raises(ValueError, match="axis 2"):
        ops.take_along_axis(x, np.zeros((3, 1), np.int64), axis=2)


# ---- nonzero ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, bool])
def test_nonzero(rng, dtype):
    for shape in [(7,), (3, 4), (2, 0, 3), (2, 3, 5), (200, 300)]:
        a = (rng.integers(-1, 2, shape) * rng.integers(1, 4, shape)).astype(dtype)
        got = ops.nonzero(T(a))
        want = np.nonzero(a)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.dtype == "int64"
            np.testing.assert_array_equal(g.numpy(), w)


def test_nonzero_nan_and_where_one_arg():
    a = np.array([[0.0, np.nan], [-0.0, 2.0]], np.float32)
    for g, w in zip(ops.nonzero(T(a)), np.nonzero(a)):
        np.testing.assert_array_equal(g.numpy(), w)
    for g, w in zip(ops.where(T(a > 1)), np.where(a > 1)):
        np.testing.assert_array_equal(g.numpy(), w)
    with pytest.raises(ValueError, match="zero-dimensional"):
        ops.nonzero(T(1.0))


# ---- pad ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,pw", [
    ((3, 4), 1), ((3, 4), (1, 2)), ((3, 4), ((0, 1), (2, 0))), ((2, 3, 4), [[1, 1], [0, 0], [3, 1]]),
    ((5,), ((2, 3),)), ((0, 3), 2), ((3, 4), 0),
])
def test_pad_constant(rng, shape, pw):
    x = randn(rng, *shape)
    check_forward(lambda t: ops.pad(t, pw), lambda a: np.pad(a, pw), [x])
    check_forward(lambda t: ops.pad(t, pw, constant_values=2.5), lambda a: np.pad(a, pw, constant_values=2.5), [x])


@pytest.mark.parametrize("mode", ["reflect", "symmetric"])
@pytest.mark.parametrize("shape,pw", [((4, 5), 2), ((4, 5), ((3, 0), (1, 4))), ((3, 2, 4), ((1, 1), (0, 1), (2, 3))),
                                      ((6,), (5, 1))])
def test_pad_mirror_modes(rng, mode, shape, pw):
    if mode == "reflect" and shape == (4, 5) and pw == ((3, 0), (1, 4)):
        pw = ((3, 0), (1, 3))  # reflect can mirror at most n - 1
    if mode == "reflect" and shape == (3, 2, 4):
        pw = ((1, 1), (0, 1), (2, 3))
    x = randn(rng, *shape)
    check_forward(lambda t: ops.pad(t, pw, mode=mode), lambda a: np.pad(a, pw, mode=mode), [x])
    check_grad(lambda t: ops.pad(t, pw, mode=mode), lambda a: np.pad(a, pw, mode=mode), [x])


def test_pad_grad_and_int_dtype(rng):
    check_grad(lambda t: ops.pad(t, ((1, 2), (0, 3))), lambda a: np.pad(a, ((1, 2), (0, 3))), [randn(rng, 3, 4)])
    a = rng.integers(0, 5, (2, 3)).astype(np.int32)
    np.testing.assert_array_equal(ops.pad(T(a), 1, constant_values=7).numpy(), np.pad(a, 1, constant_values=7))


def test_pad_errors():
    x = T(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="non-negative"):
        ops.pad(x, -1)
    with pytest.raises(ValueError, match=r"\(3, 4\).*2 pairs"):
        ops.pad(x, ((1, 1), (1, 1), (1, 1)))
    with pytest.raises(ValueError, match="mode 'edge'"):
        ops.pad(x, 1, mode="edge")
    with pytest.raises(ValueError, match=r"reflect padding of \(3, 0\) on axis 0.*\(3, 4\)"):
        ops.pad(x, ((3, 0), (0, 0)), mode="reflect")


# ---- tile / repeat / flip / roll ------------------------------------------------------------------------

@pytest.mark.parametrize("shape,reps", [((3,), 2), ((2, 3), (2, 1)), ((2, 3), (3,)), ((2,), (2, 1, 3)),
                                        ((2, 3), (0, 2))])
def test_tile(rng, shape, reps):
    x = randn(rng, *shape)
    check_forward(lambda t: ops.tile(t, reps), lambda a: np.tile(a, reps), [x])
    if 0 not in np.atleast_1d(reps):
        check_grad(lambda t: ops.tile(t, reps), lambda a: np.tile(a, reps), [x])


@pytest.mark.parametrize("shape,reps,axis", [((2, 3), 2, None), ((2, 3), 3, 1), ((2, 3), [1, 0, 2], 1),
                                             ((2, 3), [2, 1], 0), ((4,), 0, 0), ((2, 3), [3], 0)])
def test_repeat(rng, shape, reps, axis):
    x = randn(rng, *shape)
    check_forward(lambda t: ops.repeat(t, reps, axis), lambda a: np.repeat(a, reps, axis), [x])
    check_grad(lambda t: ops.repeat(t, reps, axis), lambda a: np.repeat(a, reps, axis), [x])


def test_tile_repeat_errors():
    x = T(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"one repeat count per element.*size 3.*\(2, 3\)"):
        ops.repeat(x, [1, 2], axis=1)
    with pytest.raises(ValueError, match="non-negative"):
        ops.repeat(x, -1)
    with pytest.raises(ValueError, match="non-negative"):
        ops.tile(x, (-1, 1))


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
def test_flip(rng, axis):
    x = randn(rng, 3, 4, 2)
    check_forward(lambda t: ops.flip(t, axis), lambda a: np.flip(a, axis), [x])
    check_grad(lambda t: ops.flip(t, axis), lambda a: np.flip(a, axis), [x])
    assert ops.flip(T(np.zeros((0, 2), np.float32)), 0).shape == (0, 2)


@pytest.mark.parametrize("shift,axis", [(1, None), (-7, None), (2, 0), (-1, 1), ((1, 2), (0, 2)), (3, -1),
                                        ((1, 1), (1, 1)), (0, 0), (8, 0)])
def test_roll(rng, shift, axis):
    x = randn(rng, 4, 3, 5)
    check_forward(lambda t: ops.roll(t, shift, axis), lambda a: np.roll(a, shift, axis), [x])
    check_grad(lambda t: ops.roll(t, shift, axis), lambda a: np.roll(a, shift, axis), [randn(rng, 4, 3, 2)])


def test_roll_flip_large(rng):
    x = randn(rng, 400, 300)
    check_forward(lambda t: ops.roll(t, 123, 1), lambda a: np.roll(a, 123, 1), [x])
    check_forward(lambda t: ops.flip(t, None), lambda a: np.flip(a), [x])
    check_forward(lambda t: ops.roll(t, -1000, None), lambda a: np.roll(a, -1000), [x])


# ---- diagonals, triangles, eye ----------------------------------------------------------------------

@pytest.mark.parametrize("shape,k", [((4,), 0), ((3,), 2), ((3,), -1), ((4, 4), 0), ((3, 5), 2), ((5, 3), -2),
                                     ((3, 4), 7), ((0,), 0)])
def test_diag(rng, shape, k):
    x = randn(rng, *shape)
    check_forward(lambda t: ops.diag(t, k), lambda a: np.diag(a, k), [x])
    if x.size:
        check_grad(lambda t: ops.diag(t, k), lambda a: np.diag(a, k), [x])


@pytest.mark.parametrize("shape,offset,a1,a2", [((3, 4, 5), 0, 0, 1), ((3, 4, 5), 1, 1, 2), ((3, 4, 5), -1, 2, 0),
                                               ((2, 3, 4, 3), 0, -1, 1), ((4, 4), 5, 0, 1)])
def test_diagonal(rng, shape, offset, a1, a2):
    x = randn(rng, *shape)
    check_forward(lambda t: ops.diagonal(t, offset, a1, a2), lambda a: np.diagonal(a, offset, a1, a2), [x])
    check_grad(lambda t: ops.diagonal(t, offset, a1, a2), lambda a: np.diagonal(a, offset, a1, a2), [x])


def test_diag_errors():
    with pytest.raises(ValueError, match=r"1-D or 2-D.*\(2, 2, 2\)"):
        ops.diag(T(np.zeros((2, 2, 2), np.float32)))
    with pytest.raises(ValueError, match="must differ"):
        ops.diagonal(T(np.zeros((2, 2), np.float32)), 0, 1, 1)
    with pytest.raises(ValueError, match=r"at least 2 dimensions.*\(3,\)"):
        ops.diagonal(T(np.zeros((3,), np.float32)))


def test_eye_identity_tri():
    for n, m, k in [(3, None, 0), (3, 5, 1), (4, 2, -1), (0, 3, 0), (2, 2, 5)]:
        np.testing.assert_array_equal(ops.eye(n, m, k).numpy(), np.eye(n, m, k, dtype=np.float32))
        np.testing.assert_array_equal(ops.tri(n, m, k).numpy(), np.tri(n, m, k, dtype=np.float32))
    e = ops.eye(3, dtype="int32")
    assert e.dtype == "int32"
    np.testing.assert_array_equal(e.numpy(), np.eye(3, dtype=np.int32))
    np.testing.assert_array_equal(ops.identity(2).numpy(), np.identity(2))
    with pytest.raises(ValueError, match="non-negative"):
        ops.eye(-1)


@pytest.mark.parametrize("k", [0, 1, -1, 3, -5, 100])
def test_tril_triu(rng, k):
    x = randn(rng, 2, 3, 4)
    check_forward(lambda t: ops.tril(t, k), lambda a: np.tril(a, k), [x])
    check_forward(lambda t: ops.triu(t, k), lambda a: np.triu(a, k), [x])
    check_grad(lambda t: ops.tril(t, k), lambda a: np.tril(a, k), [x])
    check_grad(lambda t: ops.triu(t, k), lambda a: np.triu(a, k), [x])
    b = x > 0
    np.testing.assert_array_equal(ops.tril(T(b), k).numpy(), np.tril(b, k))
    with pytest.raises(ValueError, match=r"at least 2 dimensions.*\(3,\)"):
        ops.triu(T(np.zeros(3, np.float32)))


# ---- ranges -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,dtype", [((5,), None), ((2, 9, 3), None), ((10, 0, -3), None), ((0, 1, 0.1), None),
                                        ((-1.5, 2.0, 0.5), None), ((3, 3), None), ((5,), "float32"),
                                        ((1, 7, 2), "int32"), ((0.0, -1.0, -0.25), None), ((4, 1), None)])
def test_arange(args, dtype):
    got = ops.arange(*args, dtype=dtype)
    want = np.arange(*args, dtype=dtype)
    assert got.shape == want.shape
    assert got.dtype == ("float32" if want.dtype.kind == "f" else dtype or "int64")
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)


def test_arange_errors():
    with pytest.raises(ValueError, match="step must not be zero"):
        ops.arange(0, 5, 0)
    with pytest.raises(ValueError, match="scalar"):
        ops.arange(np.array([1, 2]))


@pytest.mark.parametrize("args,kw", [((0, 1), {}), ((2, -3, 7), {}), ((0, 1, 5), {"endpoint": False}),
                                     ((1, 1, 1), {}), ((0, 10, 0), {}), ((0, 10, 4), {"dtype": "int32"}),
                                     ((-5, 5, 6), {"dtype": "int64"})])
def test_linspace(args, kw):
    got = ops.linspace(*args, **kw)
    want = np.linspace(*args, **kw)
    np.testing.assert_allclose(got.numpy(), want.astype(np.float32) if want.dtype.kind == "f" else want,
                               rtol=1e-6, atol=1e-6)
    out, step = ops.linspace(0.0, 2.0, 5, retstep=True)
    assert step == 0.5 and out.numpy()[-1] == 2.0
    with pytest.raises(ValueError, match="non-negative"):
        ops.linspace(0, 1, -1)


# ---- devices and copies -----------------------------------------------------------------------------------

def test_copy_to_and_back_gradient(rng):
    x = randn(rng, 3, 2)
    v = lamina.Variable(x)
    with lamina.GradientTape() as tape:
        y = v.to("cpu:1")
        assert y.device.name == "cpu:1" and y._buf is not v._buf
        loss = ops.sum(y * y)
    assert loss.device.name == "cpu:1"
    g = tape.gradient(loss, v)
    assert g.device.name == "cpu:0"
    np.testing.assert_allclose(g.numpy(), 2 * x, rtol=1e-6)
    t = T(x)
    assert ops.copy_to(t, "cpu:0") is t
    z = ops.copy_to(t, lamina.get_device("cpu:2"))
    assert z.device.name == "cpu:2" and z.dtype == "float32"
    np.testing.assert_array_equal(z.numpy(), x)
    np.testing.assert_array_equal(ops.copy_to(T(np.array([True, False])), "cpu:3").numpy(), [True, False])
    c = ops.copy(t)
    assert c._buf is not t._buf
    np.testing.assert_array_equal(c.numpy(), x)
    check_grad(ops.copy, np.copy, [x])


# ---- kernel safety --------------------------------------------------------------------------------------

def test_kernels_reject_bad_views_and_sizes():
    k = lamina.get_device("cpu").kernels
    a, b = k.Buffer(6, 0), k.Buffer(6, 0)
    with pytest.raises(ValueError, match="outside its buffer of 6"):
        k.strided_copy(a, 0, [6], b, 0, [1], [2])
    with pytest.raises(ValueError, match="outside its buffer"):
        k.strided_copy(a, 5, [-3], b, 0, [1], [3])
    with pytest.raises(ValueError, match="strides"):
        k.strided_copy(a, 0, [1], b, 0, [1, 1], [2])
    with pytest.raises(TypeError, match="int32"):
        k.strided_copy(a, 0, [1], k.Buffer(6, 1), 0, [1], [6])
    with pytest.raises(ValueError, match="same buffer"):
        k.strided_copy(a, 0, [1], a, 0, [1], [3])
    with pytest.raises(ValueError, match="overflow"):
        k.strided_copy(a, 0, [2 ** 62], b, 0, [1], [5])
    idx = T(np.array([0, 1]))._buf
    with pytest.raises(ValueError, match="outer\\*n\\*inner"):
        k.take(a, 2, 4, 1, idx, b)
    with pytest.raises(ValueError, match="expected"):
        k.take(a, 2, 3, 1, idx, b)
    with pytest.raises(TypeError, match="int32 or int64"):
        k.take(a, 1, 6, 1, a, b)
    with pytest.raises(ValueError, match="negative"):
        k.tri(a, -1, 2, 3, 0, False, b)


def test_accumulating_copy_into_overlapping_view_adds_everything():
    k = lamina.get_device("cpu").kernels
    src = T(np.ones(50000, np.float32))
    dst = T(np.zeros(1, np.float32))
    k.strided_copy(src._buf, 0, [1], dst._buf, 0, [0], [50000], True)
    assert dst.numpy()[0] == 50000.0


def test_getitem_random_keys_match_numpy():
    rng = np.random.default_rng(7)
    a = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    t = T(a)

    def entry(n):
        r = rng.integers(0, 5)
        if r == 0:
            return int(rng.integers(-n - 1, n + 1))
        if r == 1:
            return None
        if r == 2:
            return list(rng.integers(-n, n, rng.integers(0, 4)))
        vals = [None] + list(range(-n - 2, n + 3))
        step = int(rng.choice([-3, -2, -1, 1, 2, 3]))
        return slice(rng.choice(vals), rng.choice(vals), step)

    for _ in range(300):
        key = []
        dims = iter(a.shape)
        for _ in range(rng.integers(1, 5)):
            key.append(entry(next(dims, 3)))
        if sum(isinstance(k, list) for k in key) > 1:
            continue
        if rng.random() < 0.3:
            key.insert(int(rng.integers(0, len(key) + 1)), Ellipsis)
        key = tuple(key)
        try:
            want = a[key]
        except IndexError:
            with pytest.raises(IndexError):
                t[key]
            continue
        got = t[key]
        assert got.shape == want.shape, key
        np.testing.assert_array_equal(got.numpy(), want, err_msg=repr(key))
