"""backend/numpy_extra.py: values against numpy (and Keras for its own semantics), gradients
against finite differences, and the errors."""
import contextlib
import warnings

import numpy as np
import pytest

import lamina
from lamina import ops
from keras_ref import keras_or_none
from opcheck import check_forward, check_grad

RNG = np.random.default_rng(7)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@contextlib.contextmanager
def _quiet():
    """numpy's RuntimeWarnings (all-NaN slices) silenced around a reference computation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def needs_keras():
    k = keras_or_none()
    if k is None:
        pytest.skip("Keras is not installed: no reference for Keras's own semantics")
    return k


# ---- joining, splitting, flipping ---------------------------------------------------------------

@pytest.mark.parametrize("axis", [None, 0, 1])
def test_append_matches_numpy(axis):
    a, b = f32(2, 3), f32(2, 3)
    check_forward(ops.append, lambda x, y, axis: np.append(x, y, axis=axis), [a, b], axis=axis)


def test_append_errors():
    with pytest.raises(TypeError, match=r"append: all inputs must have the same dtype"):
        ops.append(np.ones(2, np.float32), np.ones(2, np.int32))
    with pytest.raises(ValueError, match=r"append: with axis=0, x1 and x2 must have the same number of dimensions"):
        ops.append(np.ones((2, 2), np.float32), np.ones(2, np.float32), axis=0)


@pytest.mark.parametrize("sections,axis", [(3, 0), (4, 1), ([1, 3], 1), (1, 0), (7, 0)])
def test_array_split_matches_numpy(sections, axis):
    x = f32(5, 6)
    got = ops.array_split(x, sections, axis=axis)
    want = np.array_split(x, sections, axis=axis)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w)


def test_array_split_errors():
    with pytest.raises(ValueError, match=r"array_split: the number of sections must be positive, received 0"):
        ops.array_split(np.ones(4), 0)
    with pytest.raises(ValueError, match=r"array_split: cannot split a zero-dimensional tensor"):
        ops.array_split(np.float32(1.0), 2)


@pytest.mark.parametrize("name,shape,k", [("hsplit", (6,), 3), ("hsplit", (2, 4, 3), 2), ("vsplit", (4, 3), [1]),
                                          ("dsplit", (2, 2, 6), 3)])
def test_hsplit_vsplit_dsplit_match_numpy(name, shape, k):
    x = f32(*shape)
    got, want = getattr(ops, name)(x, k), getattr(np, name)(x, k)
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w)


def test_vsplit_dsplit_need_enough_dimensions():
    with pytest.raises(ValueError, match=r"vsplit: expected a tensor with at least 2 dimensions, received shape"):
        ops.vsplit(np.ones(4), 2)
    with pytest.raises(ValueError, match=r"dsplit: expected a tensor with at least 3 dimensions"):
        ops.dsplit(np.ones((2, 2)), 2)


def test_dstack_matches_numpy():
    for xs in ([f32(3), f32(3)], [f32(2, 3), f32(2, 3)], [f32(2, 3, 1), f32(2, 3, 2)], [np.float32(1), np.float32(2)]):
        np.testing.assert_array_equal(ops.dstack(xs).numpy(), np.dstack(xs))
    with pytest.raises(TypeError, match=r"dstack: expected a list or tuple of tensors"):
        ops.dstack(np.ones((2, 2)))


def test_fliplr_flipud():
    x = f32(3, 4, 2)
    np.testing.assert_array_equal(ops.fliplr(x).numpy(), np.fliplr(x))
    np.testing.assert_array_equal(ops.flipud(x).numpy(), np.flipud(x))
    with pytest.raises(ValueError, match=r"fliplr: expected a tensor with at least 2 dimensions"):
        ops.fliplr(np.ones(3))


@pytest.mark.parametrize("k", [-1, 0, 1, 2, 3, 5])
@pytest.mark.parametrize("axes", [(0, 1), (1, 0), (1, 2), (-1, 0)])
def test_rot90_matches_numpy(k, axes):
    x = f32(2, 3, 4)
    np.testing.assert_array_equal(ops.rot90(x, k, axes).numpy(), np.rot90(x, k, axes))


def test_rot90_gradient_and_errors():
    check_grad(lambda t: ops.rot90(t, 1), lambda a: np.rot90(a, 1), [f32(3, 2)])
    with pytest.raises(ValueError, match=r"rot90: the two axes must differ"):
        ops.rot90(np.ones((2, 2)), axes=(1, 1))
    with pytest.raises(ValueError, match=r"rot90: expected a tensor with at least 2 dimensions"):
        ops.rot90(np.ones(3))
    with pytest.raises(ValueError, match=r"rot90: axes must be a pair of axes"):
        ops.rot90(np.ones((2, 2)), axes=(0,))


# ---- differences and products -------------------------------------------------------------------

@pytest.mark.parametrize("n,axis", [(0, -1), (1, -1), (2, 0), (3, 1)])
def test_diff_matches_numpy_with_gradient(n, axis):
    x = f32(4, 5)
    check_forward(ops.diff, lambda a, n, axis: np.diff(a, n=n, axis=axis), [x], n=n, axis=axis)
    if n:
        check_grad(lambda t: ops.diff(t, n, axis), lambda a: np.diff(a, n, axis), [x])


def test_diff_of_bools_and_ints_and_errors():
    b = np.array([True, False, False, True])
    np.testing.assert_array_equal(ops.diff(b).numpy(), np.diff(b))
    i = np.array([1, 4, 9, 16], np.int32)
    np.testing.assert_array_equal(ops.diff(i, 2).numpy(), np.diff(i, 2))
    with pytest.raises(ValueError, match=r"diff: order n must be non-negative, received n=-1"):
        ops.diff(i, -1)
    with pytest.raises(ValueError, match=r"diff: expected a tensor with at least 1 dimension"):
        ops.diff(np.float32(1))


@pytest.mark.parametrize("k", [-2, 0, 1])
def test_diagflat_matches_numpy(k):
    x = f32(2, 2)
    np.testing.assert_array_equal(ops.diagflat(x, k).numpy(), np.diagflat(x, k))


@pytest.mark.parametrize("sa,sb", [((3,), (2,)), ((2, 2), (3, 1)), ((2,), (2, 3)), ((2, 1, 2), (2, 2))])
def test_kron_matches_numpy_with_gradient(sa, sb):
    a, b = f32(*sa), f32(*sb)
    check_forward(ops.kron, np.kron, [a, b])
    check_grad(ops.kron, np.kron, [a, b])
    ai, bi = RNG.integers(-5, 5, sa).astype(np.int32), RNG.integers(-5, 5, sb).astype(np.int32)
    np.testing.assert_array_equal(ops.kron(ai, bi).numpy(), np.kron(ai, bi))


@pytest.mark.parametrize("sa,sb", [((4,), (4,)), ((2, 4), (3, 4)), ((2, 3, 4), (4,)), ((), (3,))])
def test_inner_matches_numpy(sa, sb):
    a, b = f32(*sa), f32(*sb)
    check_forward(ops.inner, np.inner, [a, b], atol=1e-5)
    check_grad(ops.inner, np.inner, [a, b])
    ai, bi = RNG.integers(-9, 9, sa).astype(np.int64), RNG.integers(-9, 9, sb).astype(np.int64)
    got = ops.inner(ai, bi)
    assert got.dtype == "int64"
    np.testing.assert_array_equal(got.numpy(), np.inner(ai, bi))


def test_inner_and_vdot_errors_and_vdot_values():
    with pytest.raises(ValueError, match=r"inner: the last dimensions differ: x1 has shape \(2, 3\), x2 has shape"):
        ops.inner(np.ones((2, 3), np.float32), np.ones((2,), np.float32))
    a, b = f32(2, 3), f32(3, 2)
    check_forward(ops.vdot, np.vdot, [a, b])
    check_grad(ops.vdot, np.vdot, [a, b])
    with pytest.raises(ValueError, match=r"vdot: the operands must have the same number of elements"):
        ops.vdot(np.ones(3, np.float32), np.ones(4, np.float32))
    with pytest.raises(TypeError, match=r"kron: dtypes differ"):
        ops.kron(lamina.convert_to_tensor(np.ones(2, np.float32)), lamina.convert_to_tensor(np.ones(2, np.int32)))


@pytest.mark.parametrize("N,increasing", [(None, False), (4, True), (0, False), (2, False)])
def test_vander_matches_numpy(N, increasing):
    x = np.array([1.5, -2.0, 0.0], np.float32)
    check_forward(ops.vander, lambda a, N, increasing: np.vander(a, N, increasing), [x], N=N, increasing=increasing)
    xi = np.array([2, 3, -1], np.int32)
    got = ops.vander(xi, N, increasing)
    assert got.dtype == "int32"
    np.testing.assert_array_equal(got.numpy(), np.vander(xi, N, increasing))
    with pytest.raises(ValueError, match=r"vander: x must be 1-D, received shape \(2, 2\)"):
        ops.vander(np.ones((2, 2)))


def test_vander_gradient():
    check_grad(lambda t: ops.vander(t, 3), lambda a: np.vander(a, 3), [np.array([0.5, -1.2, 2.0], np.float32)])


@pytest.mark.parametrize("indexing", ["xy", "ij"])
def test_meshgrid_matches_numpy(indexing):
    xs = [f32(2), f32(3), f32(4)]
    got, want = ops.meshgrid(*xs, indexing=indexing), np.meshgrid(*xs, indexing=indexing)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w)
    g1 = ops.meshgrid(xs[0], indexing=indexing)
    np.testing.assert_array_equal(g1[0].numpy(), np.meshgrid(xs[0], indexing=indexing)[0])
    with pytest.raises(ValueError, match=r"meshgrid: indexing must be 'xy' or 'ij', received 'xx'"):
        ops.meshgrid(xs[0], indexing="xx")


def test_trapezoid_matches_numpy_with_gradient():
    y = f32(3, 5)
    x1 = np.sort(f32(5))
    xn = np.sort(f32(3, 5), axis=1)
    check_forward(ops.trapezoid, lambda a: np.trapezoid(a), [y])
    check_forward(lambda a: ops.trapezoid(a, dx=0.5, axis=0), lambda a: np.trapezoid(a, dx=0.5, axis=0), [y])
    check_forward(lambda a, b: ops.trapezoid(a, b), lambda a, b: np.trapezoid(a, b), [y, x1])
    check_forward(lambda a, b: ops.trapezoid(a, b, axis=1), lambda a, b: np.trapezoid(a, b, axis=1), [y, xn])
    check_grad(lambda a, b: ops.trapezoid(a, b), lambda a, b: np.trapezoid(a, b), [y, x1])
    with pytest.raises(ValueError, match=r"trapezoid: the 1-D sample points x have 4 entries but axis 1 of y"):
        ops.trapezoid(y, np.ones(4, np.float32))


def test_gradients_of_composed_helpers():
    x, y = f32(3, 4), f32(3, 4)
    check_grad(lambda a: ops.ptp(a, axis=1), lambda a: np.ptp(a, axis=1), [x])
    check_grad(lambda a, b: ops.append(a, b, axis=1), lambda a, b: np.append(a, b, axis=1), [x, y])
    check_grad(lambda a, b: ops.dstack([a, b]), lambda a, b: np.dstack([a, b]), [x, y])
    check_grad(lambda a, b: ops.select([a > 0.5, b < 0], [a * 2, b], default=-1.0),
               lambda a, b: np.select([a > 0.5, b < 0], [a * 2, b], default=-1.0), [x, y])
    check_grad(lambda a, b: ops.meshgrid(a, b)[0] * ops.meshgrid(a, b)[1],
               lambda a, b: np.meshgrid(a, b)[0] * np.meshgrid(a, b)[1], [f32(3), f32(2)])
    check_grad(lambda a: ops.array_split(a, 3, axis=1)[0] * 2.0, lambda a: np.array_split(a, 3, axis=1)[0] * 2.0, [x])
    check_grad(ops.deg2rad, np.deg2rad, [f32(4)])
    z = np.array([1.5, np.nan, -2.0, np.inf], np.float32)
    t = lamina.convert_to_tensor(z)
    with lamina.GradientTape() as tape:
        tape.watch(t)
        out = ops.sum(ops.nan_to_num(t) * np.array([1.0, 2.0, 3.0, 0.0], np.float32))
    np.testing.assert_array_equal(tape.gradient(out, t).numpy(), [1.0, 0.0, 3.0, 0.0])


def test_ptp_matches_numpy():
    x = f32(3, 4)
    for axis, keep in ((None, False), (0, True), (1, False)):
        check_forward(ops.ptp, lambda a, axis, keepdims: np.ptp(a, axis=axis, keepdims=keepdims), [x], axis=axis,
                      keepdims=keep)
    xi = RNG.integers(-9, 9, (3, 4)).astype(np.int32)
    np.testing.assert_array_equal(ops.ptp(xi, axis=1).numpy(), np.ptp(xi, axis=1))
    with pytest.raises(TypeError, match=r"ptp: bool tensors have no peak-to-peak range"):
        ops.ptp(np.array([True, False]))


@pytest.mark.parametrize("sa,sb,kw", [((4, 3), (4, 3), {}), ((3,), (2, 3), {}), ((4, 2), (4, 3), {}),
                                      ((4, 3), (4, 2), {}), ((5, 2), (5, 2), {}), ((3, 4), (4, 3),
                                                                                   dict(axisa=0, axisb=1, axisc=0)),
                                      ((3, 4), (3, 4), dict(axis=0))])
def test_cross_matches_numpy_with_gradient(sa, sb, kw):
    a, b = f32(*sa), f32(*sb)
    check_forward(lambda x, y: ops.cross(x, y, **kw), lambda x, y: np.cross(x, y, **kw), [a, b], atol=1e-5)
    check_grad(lambda x, y: ops.cross(x, y, **kw), lambda x, y: np.cross(x, y, **kw), [a, b])


def test_cross_rejects_other_lengths():
    with pytest.raises(ValueError, match=r"cross: incompatible vector dimensions 4 and 3"):
        ops.cross(np.ones(4, np.float32), np.ones(3, np.float32))


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("m,n", [(6, 3), (5, 4), (3, 5), (4, 4), (1, 1), (7, 2)])
def test_correlate_matches_numpy(mode, m, n):
    a, v = f32(m), f32(n)
    check_forward(ops.correlate, np.correlate, [a, v], atol=1e-5, mode=mode)


def test_correlate_gradient_ints_and_errors():
    check_grad(lambda a, v: ops.correlate(a, v, "same"), lambda a, v: np.correlate(a, v, "same"), [f32(5), f32(3)])
    got = ops.correlate(np.array([1, 2, 3]), np.array([0, 1]))
    assert got.dtype == "float32"
    np.testing.assert_array_equal(got.numpy(), np.correlate([1, 2, 3], [0, 1]))
    with pytest.raises(ValueError, match=r"correlate: mode must be 'valid', 'same' or 'full', received 'circular'"):
        ops.correlate(f32(3), f32(2), mode="circular")
    with pytest.raises(ValueError, match=r"correlate: expected two 1-D tensors, received shapes \(2, 2\) and \(2,\)"):
        ops.correlate(f32(2, 2), f32(2))
    with pytest.raises(ValueError, match=r"correlate: the inputs must not be empty"):
        ops.correlate(f32(0), f32(2))


# ---- predicates and elementwise helpers ---------------------------------------------------------

def test_isclose_allclose_match_numpy():
    a = np.array([1.0, np.inf, -np.inf, np.nan, 1e-9, 100.0, np.inf], np.float32)
    b = np.array([1.0 + 1e-6, np.inf, np.inf, np.nan, 0.0, 100.002, 1.0], np.float32)
    for eq in (False, True):
        np.testing.assert_array_equal(ops.isclose(a, b, equal_nan=eq).numpy(), np.isclose(a, b, equal_nan=eq))
        np.testing.assert_array_equal(ops.isclose(a, b, rtol=1e-4, atol=0.0, equal_nan=eq).numpy(),
                                      np.isclose(a, b, rtol=1e-4, atol=0.0, equal_nan=eq))
    assert not bool(ops.allclose(a, b))
    assert bool(ops.allclose(a[:2], b[:2]))
    assert bool(ops.allclose(np.array([1, 2], np.int32), np.array([1.0, 2.0], np.float32)))   # ints compare as floats
    with pytest.raises(TypeError, match=r"isclose: equal_nan must be True or False"):
        ops.isclose(a, b, equal_nan="yes")


@pytest.mark.parametrize("invert", [False, True])
def test_isin_matches_numpy(invert):
    x1 = RNG.integers(0, 10, (3, 4)).astype(np.int32)
    x2 = np.array([3, 7, 7, 0, 12], np.int32)
    np.testing.assert_array_equal(ops.isin(x1, x2, invert=invert).numpy(), np.isin(x1, x2, invert=invert))
    f1 = np.array([1.5, np.nan, 2.0, -0.0], np.float32)
    f2 = np.array([np.nan, 0.0, 2], np.float32)
    np.testing.assert_array_equal(ops.isin(f1, f2, invert=invert).numpy(), np.isin(f1, f2, invert=invert))
    np.testing.assert_array_equal(ops.isin(x1, np.array([], np.int32)).numpy(), np.zeros((3, 4), bool))
    np.testing.assert_array_equal(ops.isin(np.array([True, False]), np.array([True])).numpy(), [True, False])


def test_infinity_and_real_predicates():
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -3.0], np.float32)
    np.testing.assert_array_equal(ops.isneginf(x).numpy(), np.isneginf(x))
    np.testing.assert_array_equal(ops.isposinf(x).numpy(), np.isposinf(x))
    np.testing.assert_array_equal(ops.isneginf(np.array([-1, 2])).numpy(), [False, False])
    np.testing.assert_array_equal(ops.isreal(x).numpy(), np.isreal(x))
    np.testing.assert_array_equal(ops.real(x).numpy(), np.real(x))
    np.testing.assert_array_equal(ops.imag(x).numpy(), np.imag(x))
    np.testing.assert_array_equal(ops.conj(x).numpy(), np.conj(x))
    np.testing.assert_array_equal(ops.conjugate(x).numpy(), np.conjugate(x))
    assert ops.imag(np.array([1, 2], np.int32)).dtype == "int32"


def test_angle_of_real_numbers():
    x = np.array([-2.0, -0.0, 0.0, 3.0, np.nan, -np.inf], np.float32)
    np.testing.assert_array_equal(ops.angle(x).numpy(), np.angle(x).astype(np.float32))
    np.testing.assert_array_equal(ops.angle(np.array([-1, 2], np.int32)).numpy(), np.float32([np.pi, 0]))
    t = lamina.convert_to_tensor(np.array([-1.0, 2.0], np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(t)
        y = ops.sum(ops.angle(t))
    np.testing.assert_array_equal(tape.gradient(y, t).numpy(), [0.0, 0.0])


def test_deg2rad_rad2deg_sinc_match_numpy():
    x = np.array([-180.0, 0.0, 45.5, 720.0], np.float32)
    check_forward(ops.deg2rad, np.deg2rad, [x])
    check_forward(ops.rad2deg, np.rad2deg, [x], rtol=1e-5)
    s = np.array([-2.5, -1.0, 0.0, 0.3, 1e-4, 3.0], np.float32)
    check_forward(ops.sinc, np.sinc, [s], atol=1e-6)
    check_grad(ops.sinc, np.sinc, [np.array([-1.3, 0.4, 2.2], np.float32)])
    t = lamina.convert_to_tensor(np.array([0.0], np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(t)
        y = ops.sum(ops.sinc(t))
    assert tape.gradient(y, t).numpy()[0] == 0.0


def test_divide_no_nan_values_and_finite_gradient():
    a = np.array([1.0, 2.0, -3.0, 0.0], np.float32)
    b = np.array([2.0, 0.0, 4.0, 0.0], np.float32)
    np.testing.assert_array_equal(ops.divide_no_nan(a, b).numpy(), [0.5, 0.0, -0.75, 0.0])
    ta, tb = lamina.convert_to_tensor(a), lamina.convert_to_tensor(b)
    with lamina.GradientTape() as tape:
        tape.watch([ta, tb])
        y = ops.sum(ops.divide_no_nan(ta, tb))
    ga, gb = tape.gradient(y, [ta, tb])
    np.testing.assert_allclose(ga.numpy(), [0.5, 0.0, 0.25, 0.0])
    np.testing.assert_allclose(gb.numpy(), [-0.25, 0.0, 3.0 / 16, 0.0])
    assert ops.divide_no_nan(np.array([3, 4], np.int32), np.array([2, 0], np.int32)).dtype == "float32"


def test_nan_to_num_matches_numpy():
    x = np.array([np.nan, np.inf, -np.inf, 1.5], np.float32)
    np.testing.assert_array_equal(ops.nan_to_num(x).numpy(), np.nan_to_num(x))
    np.testing.assert_array_equal(ops.nan_to_num(x, nan=-1.0, posinf=9.0, neginf=-9.0).numpy(),
                                  np.nan_to_num(x, nan=-1.0, posinf=9.0, neginf=-9.0))
    i = np.array([1, 2], np.int32)
    assert ops.nan_to_num(i).dtype == "int32"


# ---- NaN-aware reductions -----------------------------------------------------------------------

def _with_nans():
    x = f32(3, 4, 5)
    x[0, 1, 2] = x[2, 0, 0] = x[1, 3, 4] = np.nan
    x[1, 2, :] = np.nan   # an all-NaN lane along axis 2
    return x


@pytest.mark.parametrize("name", ["nansum", "nanmean", "nanmax", "nanmin", "nanprod", "nanstd", "nanvar"])
@pytest.mark.parametrize("axis,keepdims", [(None, False), (2, False), ((0, 1), True), (-1, True)])
def test_nan_reductions_match_numpy(name, axis, keepdims):
    x = _with_nans()
    with _quiet():
        want = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    got = getattr(ops, name)(x, axis=axis, keepdims=keepdims).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=2e-5, atol=2e-6)


def test_nan_reductions_of_integers_are_plain_reductions():
    x = RNG.integers(-9, 9, (3, 4)).astype(np.int32)
    for name in ("nansum", "nanmax", "nanmin", "nanprod"):
        np.testing.assert_array_equal(getattr(ops, name)(x, axis=1).numpy(), getattr(np, name)(x, axis=1))
    np.testing.assert_allclose(ops.nanmean(x).numpy(), np.nanmean(x), rtol=1e-6)


def test_nan_reduction_gradients_ignore_nans():
    x = np.array([[1.0, np.nan, 3.0], [2.0, 5.0, -1.0]], np.float32)
    clean = lambda f: (lambda a: f(np.where(np.isnan(a), np.nan, a), axis=1))  # noqa: E731
    for name in ("nansum", "nanmean", "nanvar", "nanstd", "nanmax"):
        t = lamina.convert_to_tensor(x)
        with lamina.GradientTape() as tape:
            tape.watch(t)
            y = ops.sum(getattr(ops, name)(t, axis=1))
        g = tape.gradient(y, t).numpy()
        assert np.isfinite(g).all(), name
        assert g[0, 1] == 0.0, name
        # finite differences on the non-NaN entries
        num = np.zeros_like(x)
        for idx in [(0, 0), (0, 2), (1, 0), (1, 1), (1, 2)]:
            for s in (1, -1):
                xx = x.astype(np.float64).copy()
                xx[idx] += s * 1e-4
                num[idx] += s * np.sum(clean(getattr(np, name))(xx)) / 2e-4
        np.testing.assert_allclose(g, num, atol=2e-3, err_msg=name)


def test_nanargmax_nanargmin():
    x = _with_nans()[0]
    np.testing.assert_array_equal(ops.nanargmax(x, axis=1).numpy(), np.nanargmax(x, axis=1))
    np.testing.assert_array_equal(ops.nanargmin(x).numpy(), np.nanargmin(x))
    np.testing.assert_array_equal(ops.nanargmin(x, axis=0, keepdims=True).numpy(),
                                  np.nanargmin(x, axis=0, keepdims=True))
    with pytest.raises(ValueError, match=r"nanargmax: All-NaN slice encountered"):
        ops.nanargmax(_with_nans()[1], axis=1)
    np.testing.assert_array_equal(ops.nanargmax(np.array([3, 9, 1], np.int32)).numpy(), 1)


@pytest.mark.parametrize("axis", [None, 0, 2])
def test_nancumsum_nancumprod_match_numpy(axis):
    x = _with_nans() * 0.5
    np.testing.assert_allclose(ops.nancumsum(x, axis=axis).numpy(), np.nancumsum(x, axis=axis), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.nancumprod(x, axis=axis).numpy(), np.nancumprod(x, axis=axis), rtol=1e-5,
                               atol=1e-6)


# ---- order statistics ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["linear", "lower", "higher", "midpoint", "nearest"])
@pytest.mark.parametrize("q,axis,keepdims", [(0.3, None, False), ([0.0, 0.25, 0.5, 1.0], 1, False),
                                             ([0.1, 0.9], (0, 2), True), (0.75, -1, True)])
def test_quantile_matches_numpy(method, q, axis, keepdims):
    x = f32(3, 5, 4)
    check_forward(ops.quantile, lambda a, q, axis, method, keepdims: np.quantile(a, q, axis=axis, method=method,
                                                                                 keepdims=keepdims),
                  [x], q=q, axis=axis, method=method, keepdims=keepdims)
    check_forward(ops.percentile, lambda a, q, axis, method, keepdims: np.percentile(a, q, axis=axis, method=method,
                                                                                     keepdims=keepdims),
                  [x], q=np.multiply(q, 100.0), axis=axis, method=method, keepdims=keepdims)


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_median_and_nan_variants_match_numpy(axis):
    x = RNG.integers(0, 6, (4, 6)).astype(np.float32)   # ties
    np.testing.assert_allclose(ops.median(x, axis=axis).numpy(), np.median(x, axis=axis))
    xi = x.astype(np.int32)
    got = ops.median(xi, axis=axis)
    assert got.dtype == "float32"
    np.testing.assert_allclose(got.numpy(), np.median(xi, axis=axis))
    xn = x.copy()
    xn[0, 1] = xn[2, :] = np.nan
    with _quiet():
        np.testing.assert_allclose(ops.nanmedian(xn, axis=axis).numpy(), np.nanmedian(xn, axis=axis))
        np.testing.assert_allclose(ops.nanquantile(xn, [0.2, 0.7], axis=axis).numpy(),
                                   np.nanquantile(xn, [0.2, 0.7], axis=axis), rtol=1e-5)
        np.testing.assert_allclose(ops.nanpercentile(xn, 35, axis=axis, method="nearest").numpy(),
                                   np.nanpercentile(xn, 35, axis=axis, method="nearest"))
    np.testing.assert_array_equal(np.isnan(ops.quantile(xn, 0.5, axis=axis).numpy()),
                                  np.isnan(np.quantile(xn, 0.5, axis=axis)))


def test_quantile_gradient_and_errors():
    x = np.array([[0.3, -1.2, 2.5, 0.9, 1.7], [4.0, -2.0, 0.1, 0.6, 3.3]], np.float32)
    check_grad(lambda t: ops.quantile(t, [0.3, 0.6], axis=1), lambda a: np.quantile(a, [0.3, 0.6], axis=1), [x])
    check_grad(lambda t: ops.median(t), lambda a: np.median(a), [x])
    with pytest.raises(ValueError, match=r"quantile: Quantiles must be in the range \[0, 1\], received q=1.5"):
        ops.quantile(x, 1.5)
    with pytest.raises(ValueError, match=r"percentile: Percentiles must be in the range \[0, 100\]"):
        ops.percentile(x, -1)
    with pytest.raises(ValueError, match=r"quantile: method must be one of 'linear'"):
        ops.quantile(x, 0.5, method="cubic")
    with pytest.raises(ValueError, match=r"median: cannot take a quantile over the empty axes"):
        ops.median(np.zeros((2, 0), np.float32), axis=1)


# ---- searching and counting ---------------------------------------------------------------------

@pytest.mark.parametrize("side", ["left", "right"])
def test_searchsorted_matches_numpy(side):
    seq = np.array([-1.0, 0.5, 0.5, 0.5, 2.0, np.nan], np.float32)
    vals = np.array([[0.5, -3.0, 2.0], [9.0, np.nan, 1.0]], np.float32)
    got = ops.searchsorted(seq, vals, side=side)
    assert got.dtype == "int32"
    np.testing.assert_array_equal(got.numpy(), np.searchsorted(seq, vals, side=side))
    iseq = np.array([1, 3, 3, 7], np.int64)
    ivals = RNG.integers(0, 9, 20).astype(np.int64)
    np.testing.assert_array_equal(ops.searchsorted(iseq, ivals, side).numpy(), np.searchsorted(iseq, ivals, side))
    np.testing.assert_array_equal(ops.searchsorted(np.zeros(0, np.float32), np.ones(3, np.float32)).numpy(), [0, 0, 0])


def test_searchsorted_errors():
    with pytest.raises(ValueError, match=r"searchsorted: sorted_sequence must be 1-D, received shape \(2, 2\)"):
        ops.searchsorted(np.ones((2, 2)), np.ones(2))
    with pytest.raises(ValueError, match=r"searchsorted: side must be 'left' or 'right', received 'middle'"):
        ops.searchsorted(np.ones(2), np.ones(2), side="middle")


def test_digitize_matches_numpy():
    x = np.array([-1.0, 0.0, 0.2, 1.0, 2.5, 3.0, 7.0, np.nan], np.float32)
    for bins in (np.array([0.0, 1.0, 2.5, 3.0], np.float32), np.array([3.0, 2.5, 1.0, 0.0], np.float32),
                 np.array([1.0], np.float32)):
        got = ops.digitize(x, bins)
        assert got.dtype == "int32"
        np.testing.assert_array_equal(got.numpy(), np.digitize(x, bins))
    with pytest.raises(ValueError, match=r"digitize: bins must be monotonically increasing or decreasing"):
        ops.digitize(x, np.array([0.0, 2.0, 1.0], np.float32))


@pytest.mark.parametrize("bins,rng", [(10, None), (4, (-1.0, 1.0)), (1, None), (7, (0.0, 0.0))])
def test_histogram_matches_numpy(bins, rng):
    x = (RNG.standard_normal(200) * 1.3).astype(np.float32)
    counts, edges = ops.histogram(x, bins=bins, range=rng)
    wc, we = np.histogram(x, bins=bins, range=rng)
    assert counts.dtype == "int32"
    np.testing.assert_array_equal(counts.numpy(), wc)
    np.testing.assert_allclose(edges.numpy(), we, rtol=1e-6, atol=1e-6)


def test_histogram_errors():
    with pytest.raises(ValueError, match=r"histogram: x must be 1-D, received shape \(2, 2\)"):
        ops.histogram(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"histogram: bins must be a positive integer, received 0"):
        ops.histogram(np.ones(3), bins=0)
    with pytest.raises(TypeError, match=r"histogram: bins must be an integer"):
        ops.histogram(np.ones(3), bins=2.5)
    with pytest.raises(ValueError, match=r"histogram: range must have lower <= upper"):
        ops.histogram(np.ones(3), range=(2, 1))
    with pytest.raises(ValueError, match=r"histogram: the range \[nan, nan\] is not finite"):
        ops.histogram(np.array([1.0, np.nan], np.float32))


def test_bincount_matches_numpy():
    x = np.array([0, 1, 1, 3, 7, 3], np.int32)
    w = f32(6)
    got = ops.bincount(x)
    assert got.dtype == "int32"
    np.testing.assert_array_equal(got.numpy(), np.bincount(x))
    np.testing.assert_allclose(ops.bincount(x, weights=w).numpy(), np.bincount(x, weights=w), rtol=1e-6)
    np.testing.assert_array_equal(ops.bincount(x, minlength=10).numpy(), np.bincount(x, minlength=10))
    x2 = np.array([[0, 2, 2], [1, 1, 5]], np.int64)
    np.testing.assert_array_equal(ops.bincount(x2).numpy(), np.stack([np.bincount(r, minlength=6) for r in x2]))
    np.testing.assert_array_equal(ops.bincount(np.zeros(0, np.int32), minlength=3).numpy(), [0, 0, 0])


def test_bincount_errors():
    with pytest.raises(ValueError, match=r"bincount: x must hold non-negative integers"):
        ops.bincount(np.array([1, -1]))
    with pytest.raises(TypeError, match=r"bincount: x must be integers"):
        ops.bincount(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"bincount: sparse=True is not supported"):
        ops.bincount(np.array([1]), sparse=True)
    with pytest.raises(ValueError, match=r"bincount: weights of shape \(3,\) must have the shape of x, \(2,\)"):
        ops.bincount(np.array([1, 2]), weights=np.ones(3, np.float32))


def test_unique_matches_numpy():
    x = np.array([[3, 1, 2], [3, 1, 5], [0, 1, 2]], np.int32)
    got = ops.unique(x, return_index=True, return_inverse=True, return_counts=True)
    want = np.unique(x, return_index=True, return_inverse=True, return_counts=True)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w)
    np.testing.assert_array_equal(ops.unique(x).numpy(), np.unique(x))
    got = ops.unique(x, axis=0, return_index=True, return_inverse=True, return_counts=True)
    want = np.unique(x, axis=0, return_index=True, return_inverse=True, return_counts=True)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w)
    xr = np.array([[1, 0, 1], [2, 2, 2], [1, 0, 1], [2, 2, 2]], np.float32).T   # columns repeat
    np.testing.assert_array_equal(ops.unique(xr, axis=1).numpy(), np.unique(xr, axis=1))
    f = np.array([2.0, np.nan, -1.0, np.nan, 2.0], np.float32)   # every NaN is its own value (Keras)
    np.testing.assert_array_equal(ops.unique(f).numpy(), np.unique(f, equal_nan=False))


def test_unique_unsorted_size_and_fill():
    x = np.array([5, 3, 5, 1, 3, 3], np.int32)
    v, i, inv, c = ops.unique(x, sorted=False, return_index=True, return_inverse=True, return_counts=True)
    np.testing.assert_array_equal(v.numpy(), [5, 3, 1])          # order of first occurrence
    np.testing.assert_array_equal(i.numpy(), [0, 1, 3])
    np.testing.assert_array_equal(c.numpy(), [2, 3, 1])
    np.testing.assert_array_equal(v.numpy()[inv.numpy()], x)
    v, c = ops.unique(x, size=5, return_counts=True)
    np.testing.assert_array_equal(v.numpy(), [1, 3, 5, 0, 0])
    np.testing.assert_array_equal(c.numpy(), [1, 3, 2, 0, 0])
    np.testing.assert_array_equal(ops.unique(x, size=4, fill_value=-1).numpy(), [1, 3, 5, -1])
    np.testing.assert_array_equal(ops.unique(x, size=2).numpy(), [1, 3])
    keras = keras_or_none()
    if keras is not None:
        kv, kc = keras.ops.unique(x, size=5, fill_value=0, return_counts=True)
        np.testing.assert_array_equal(v.numpy(), np.asarray(kv))
        np.testing.assert_array_equal(c.numpy(), np.asarray(kc))


def test_unique_is_not_differentiable():
    t = lamina.convert_to_tensor(np.array([1.0, 2.0, 1.0], np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(t)
        y = ops.sum(ops.unique(t))
    assert tape.gradient(y, t) is None


def test_unravel_index_matches_numpy():
    idx = np.array([0, 5, 11, 7], np.int64)
    got = ops.unravel_index(idx, (3, 4))
    for g, w in zip(got, np.unravel_index(idx, (3, 4))):
        np.testing.assert_array_equal(g.numpy(), w)
    got = ops.unravel_index(17, (2, 3, 4))
    assert tuple(int(g) for g in got) == np.unravel_index(17, (2, 3, 4))
    with pytest.raises(ValueError, match=r"unravel_index: indices must lie in \[0, 12\) for shape \(3, 4\)"):
        ops.unravel_index(np.array([12]), (3, 4))
    with pytest.raises(TypeError, match=r"unravel_index: indices must be integers"):
        ops.unravel_index(np.array([1.0]), (3, 4))


@pytest.mark.parametrize("kth,axis", [(2, -1), ([0, 3], -1), (1, 0)])
def test_argpartition_partitions(kth, axis):
    x = f32(4, 6)
    idx = ops.argpartition(x, kth, axis=axis)
    assert idx.dtype == "int32"
    part = np.take_along_axis(x, idx.numpy().astype(np.int64), axis=axis)
    ref = np.partition(x, kth, axis=axis)
    for k in np.atleast_1d(kth):
        np.testing.assert_array_equal(np.take(part, k, axis=axis), np.take(ref, k, axis=axis))
    with pytest.raises(ValueError, match=r"argpartition: kth=6 is out of bounds for axis 1 of size 6"):
        ops.argpartition(x, 6)


# ---- constructors and dtypes --------------------------------------------------------------------

@pytest.mark.parametrize("start,stop,num,endpoint", [(1, 1000, 4, True), (2.0, 0.5, 7, False), (-1, -100, 5, True),
                                                     (3, 3, 1, True), (1, 8, 0, True)])
def test_geomspace_matches_numpy(start, stop, num, endpoint):
    got = ops.geomspace(start, stop, num, endpoint)
    np.testing.assert_allclose(got.numpy(), np.geomspace(start, stop, num, endpoint), rtol=2e-6)
    assert got.dtype == "float32"


def test_geomspace_logspace_errors_and_dtype():
    with pytest.raises(ValueError, match=r"geomspace: a geometric sequence cannot include zero"):
        ops.geomspace(0, 10)
    with pytest.raises(ValueError, match=r"geomspace: start=-1 and stop=10 have different signs"):
        ops.geomspace(-1, 10)
    np.testing.assert_array_equal(ops.geomspace(1, 1000, 4, dtype="int32").numpy(), [1, 10, 100, 1000])
    with pytest.raises(TypeError, match=r"logspace: Unsupported dtype 'float64'"):
        ops.logspace(0, 1, 3, dtype="float64")


@pytest.mark.parametrize("start,stop,num,endpoint,base", [(0, 3, 4, True, 10), (-1, 2, 6, False, 2.0),
                                                          (1, 1, 3, True, 10), (0.5, 1.5, 5, True, np.e)])
def test_logspace_matches_numpy(start, stop, num, endpoint, base):
    np.testing.assert_allclose(ops.logspace(start, stop, num, endpoint, base).numpy(),
                               np.logspace(start, stop, num, endpoint, base), rtol=2e-6)


def test_empty_empty_like_array():
    e = ops.empty((2, 3))
    assert e.shape == (2, 3) and e.dtype == "float32"
    np.testing.assert_array_equal(e.numpy(), 0)
    assert ops.empty((2,), "int32").dtype == "int32"
    el = ops.empty_like(np.ones((4, 1), np.int32))
    assert el.shape == (4, 1) and el.dtype == "int32"
    assert ops.empty_like(np.ones(2), dtype="bool").dtype == "bool"
    a = ops.array([[1, 2], [3, 4]], dtype="float32")
    assert a.dtype == "float32" and a.numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(TypeError, match=r"array: Unsupported dtype 'float64'"):
        ops.array([1.0], dtype="float64")
    with pytest.raises(ValueError, match=r"empty: shape \(-1,\) has a negative dimension"):
        ops.empty((-1,))


def test_view_is_identity_or_a_clear_error():
    x = lamina.convert_to_tensor(np.array([1.0, 2.0], np.float32))
    assert ops.view(x) is x and ops.view(x, "float32") is x and ops.view(x, np.float32) is x
    with pytest.raises(NotImplementedError, match=r"view: reinterpreting a float32 tensor \(shape \(2,\)\) as int32 "
                                                  r"is not supported: lamina has no bit-cast kernel"):
        ops.view(x, "int32")
    with pytest.raises(NotImplementedError, match=r"as uint8 is not supported"):
        ops.view(lamina.convert_to_tensor(np.array([1], np.int32)), "uint8")


def test_saturate_cast():
    x = np.array([-1.0, 3.7, 300.0, 3e10, -3e10, np.nan, np.inf, -np.inf], np.float32)
    np.testing.assert_array_equal(ops.saturate_cast(x, "uint8").numpy(), [0, 3, 255, 255, 0, 0, 255, 0])
    np.testing.assert_array_equal(ops.saturate_cast(x, "int32").numpy(),
                                  [-1, 3, 300, 2 ** 31 - 1, -2 ** 31, 0, 2 ** 31 - 1, -2 ** 31])
    np.testing.assert_array_equal(ops.saturate_cast(x * 1e9, "int64").numpy()[3:5], [2 ** 63 - 1, -2 ** 63])
    xi = np.array([-2 ** 40, -5, 70000, 2 ** 40], np.int64)
    np.testing.assert_array_equal(ops.saturate_cast(xi, "int32").numpy(), [-2 ** 31, -5, 70000, 2 ** 31 - 1])
    np.testing.assert_array_equal(ops.saturate_cast(xi, "int16").numpy(), [-32768, -5, 32767, 32767])
    assert ops.saturate_cast(xi, "float32").dtype == "float32"


def test_select_matches_numpy():
    x = f32(3, 4)
    conds = [x < -0.5, x > 0.5, x > 0.0]
    choices = [x * 0, x * 10, np.float32(7.0)]
    np.testing.assert_array_equal(ops.select(conds, choices, default=-1.0).numpy(),
                                  np.select(conds, choices, default=-1.0))
    xi = RNG.integers(0, 9, 6).astype(np.int32)
    np.testing.assert_array_equal(ops.select([xi < 3, xi > 6], [xi, -xi]).numpy(),
                                  np.select([xi < 3, xi > 6], [xi, -xi]))
    with pytest.raises(ValueError, match=r"select: condlist and choicelist must have the same length"):
        ops.select([xi < 3], [xi, xi])
    with pytest.raises(TypeError, match=r"select: condlist\[0\] must be a bool tensor, received int32"):
        ops.select([xi], [xi])
    with pytest.raises(ValueError, match=r"select: condlist must not be empty"):
        ops.select([], [])


# ---- scatters and segment reductions ------------------------------------------------------------

def test_scatter_adds_repeated_indices():
    idx = np.array([[0, 1], [1, 1], [0, 1], [2, 0]], np.int32)
    vals = f32(4)
    want = np.zeros((3, 2), np.float32)
    np.add.at(want, tuple(idx.T), vals)
    np.testing.assert_allclose(ops.scatter(idx, vals, (3, 2)).numpy(), want, rtol=1e-6)
    rows = f32(2, 5)
    want = np.zeros((4, 5), np.float32)
    np.add.at(want, [3, 1], rows)
    np.testing.assert_allclose(ops.scatter(np.array([[3], [1]]), rows, (4, 5)).numpy(), want)
    check_grad(lambda v: ops.scatter(idx, v, (3, 2)),
               lambda v: _np_scatter_add(np.zeros((3, 2)), idx, v), [vals])


def _np_scatter_add(base, idx, v):
    out = np.array(base, dtype=np.float64)
    np.add.at(out, tuple(np.asarray(idx).T), v)
    return out


@pytest.mark.parametrize("reduction", [None, "add", "max", "min", "mul"])
def test_scatter_update_matches_keras(reduction):
    keras = needs_keras()
    x = f32(4, 3)
    idx = np.array([[1], [3], [1], [0]], np.int32)
    upd = f32(4, 3)
    got = ops.scatter_update(x, idx, upd, reduction=reduction).numpy()
    want = np.asarray(keras.ops.scatter_update(x, idx, upd, reduction=reduction))
    if reduction is None:   # JAX leaves the winner of repeated indices unspecified; numpy: the last
        want = x.copy()
        want[idx[:, 0]] = upd
    np.testing.assert_allclose(got, want, rtol=1e-6)
    xi = RNG.integers(-9, 9, (3, 3)).astype(np.int32)
    ii = np.array([[0, 0], [2, 1], [0, 0]], np.int32)
    ui = np.array([5, -7, 4], np.int32)
    if reduction is not None:
        np.testing.assert_array_equal(ops.scatter_update(xi, ii, ui, reduction).numpy(),
                                      np.asarray(keras.ops.scatter_update(xi, ii, ui, reduction)))


def test_scatter_update_last_write_wins_and_gradients():
    x = f32(5)
    idx = [[1], [1], [4]]
    upd = np.array([10.0, 20.0, 30.0], np.float32)
    np.testing.assert_array_equal(ops.scatter_update(x, idx, upd).numpy(), [x[0], 20.0, x[2], x[3], 30.0])
    np.testing.assert_array_equal(ops.scatter_update(x, [[-1]], [9.0]).numpy()[-1], 9.0)   # negative index wraps
    upd2 = np.array([0.5, -1.0, 2.0], np.float32)
    check_grad(lambda a, u: ops.scatter_update(a, idx, u, "add"), lambda a, u: _np_scatter_add(a, idx, u), [x, upd2])

    def np_set(a, u):
        out = np.array(a, dtype=np.float64)
        out[[1, 4]] = np.asarray(u)[[1, 2]]
        return out
    check_grad(lambda a, u: ops.scatter_update(a, idx, u), np_set, [x, upd2])


def test_scatter_errors():
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(IndexError, match=r"scatter_update: indices out of bounds for the leading 1 dimension"):
        ops.scatter_update(x, [[3]], np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"scatter_update: expected values of shape \(1, 2\)"):
        ops.scatter_update(x, [[1]], np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"scatter_update: reduction must be None, 'add', 'max', 'min' or 'mul'"):
        ops.scatter_update(x, [[1]], np.ones((1, 2), np.float32), reduction="sum")
    with pytest.raises(TypeError, match=r"scatter_update: updates of dtype float64 cannot be written into a int32"):
        ops.scatter_update(np.zeros(3, np.int32), [[1]], np.array([1.5]))
    with pytest.raises(TypeError, match=r"scatter: indices must be integers"):
        ops.scatter(np.array([[0.0]]), np.ones(1, np.float32), (2,))
    with pytest.raises(ValueError, match=r"scatter: indices of shape \(1, 3\) index 3 dimensions, but the target"):
        ops.scatter(np.array([[0, 0, 0]]), np.ones(1, np.float32), (2, 2))


def _np_segment(data, ids, n, fn, empty):
    out = np.full((n,) + data.shape[1:], empty, dtype=np.float64 if data.dtype.kind == "f" else data.dtype)
    for s in range(n):
        sel = data[ids == s]
        if len(sel):
            out[s] = fn(sel, axis=0)
    return out


@pytest.mark.parametrize("name,fn,empty", [("segment_sum", np.sum, 0), ("segment_max", np.max, -np.inf),
                                           ("segment_min", np.min, np.inf), ("segment_prod", np.prod, 1)])
def test_segment_reductions_match_numpy(name, fn, empty):
    data = f32(9, 3)
    ids = np.array([2, 0, 2, 5, 0, 2, 7, -1, 3], np.int32)   # 7 and -1 are dropped with num_segments=6
    got = getattr(ops, name)(data, ids, num_segments=6)
    np.testing.assert_allclose(got.numpy(), _np_segment(data, ids, 6, fn, empty), rtol=1e-5)
    di = RNG.integers(-5, 5, (7,)).astype(np.int32)
    idi = np.array([0, 0, 1, 3, 3, 3, 1], np.int64)
    empty_i = {"segment_max": np.iinfo(np.int32).min, "segment_min": np.iinfo(np.int32).max}.get(name, empty)
    got = getattr(ops, name)(di, idi, num_segments=5, sorted=False)
    assert got.dtype == "int32"
    np.testing.assert_array_equal(got.numpy(), _np_segment(di, idi, 5, fn, empty_i))
    sids = np.sort(RNG.integers(0, 4, 8))
    np.testing.assert_allclose(getattr(ops, name)(data[:8], sids, sorted=True).numpy(),
                               _np_segment(data[:8], sids, int(sids.max()) + 1, fn, empty), rtol=1e-5)


@pytest.mark.parametrize("name", ["segment_sum", "segment_max", "segment_min", "segment_prod"])
def test_segment_reductions_match_keras(name):
    keras = needs_keras()
    data = f32(8, 2, 3)
    ids = np.array([[1, 0], [1, 3], [0, 0], [2, 3], [3, 1], [0, 2], [1, 1], [3, 0]], np.int32)[:, 0]
    got = getattr(ops, name)(data, ids, num_segments=5).numpy()
    want = np.asarray(getattr(keras.ops, name)(data, ids, num_segments=5))
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("name,fn", [("segment_sum", np.sum), ("segment_max", np.max), ("segment_prod", np.prod)])
def test_segment_gradients(name, fn):
    data = np.array([[0.5, -1.0], [2.0, 0.3], [-0.7, 1.1], [1.4, -0.2], [0.9, 0.8]], np.float32)
    ids = np.array([1, 0, 1, 1, 3], np.int32)
    check_grad(lambda d: getattr(ops, name)(d, ids, num_segments=4),
               lambda d: np.nan_to_num(_np_segment(np.asarray(d), ids, 4, fn, 0), neginf=0), [data])


@pytest.mark.parametrize("name,fn,empty", [("segment_sum", np.sum, 0), ("segment_max", np.max, -np.inf)])
def test_segment_ids_may_cover_several_leading_dimensions(name, fn, empty):
    data = f32(2, 3, 4)
    ids = np.array([[0, 2, 2], [1, 0, 2]], np.int32)    # one id per data[i, j]
    got = getattr(ops, name)(data, ids, num_segments=4)
    assert got.shape == (4, 4)
    np.testing.assert_allclose(got.numpy(), _np_segment(data.reshape(6, 4), ids.reshape(6), 4, fn, empty), rtol=1e-5)


def test_segment_errors():
    data = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"segment_sum: sorted=True but segment_ids are not sorted"):
        ops.segment_sum(data, np.array([1, 0, 2, 2]), sorted=True)
    with pytest.raises(ValueError, match=r"segment_max: segment_ids of shape \(3,\) must match the leading dimensions"):
        ops.segment_max(data, np.array([0, 0, 1]))
    with pytest.raises(TypeError, match=r"segment_min: segment_ids must be integers"):
        ops.segment_min(data, np.array([0.0, 0, 1, 1]))
    with pytest.raises(ValueError, match=r"segment_prod: num_segments must be a non-negative integer"):
        ops.segment_prod(data, np.array([0, 0, 1, 1]), num_segments=-1)


def test_errors_name_the_op_called():
    x = np.zeros((0, 3), np.float32)
    for name in ("ptp", "nanmax", "nanmin"):
        with pytest.raises(ValueError, match=rf"{name}: zero-size tensor of shape \(0, 3\) has no"):
            getattr(ops, name)(x)
    assert ops.ptp(x, axis=1).shape == (0,) and ops.nanmax(x, axis=1).shape == (0,)   # nothing to reduce: fine
    with pytest.raises(TypeError, match=r"allclose: Cannot convert"):
        ops.allclose(np.ones(2, np.complex64), np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"hsplit: axis 1 of a tensor of shape \(2, 3\) has size 3, which does not "
                                         r"divide into 2 equal sections"):
        ops.hsplit(np.ones((2, 3)), 2)
    with pytest.raises(TypeError, match=r"array_split: indices_or_sections must be a tuple of integers"):
        ops.array_split(np.ones(4), ["a"])
    with pytest.raises(TypeError, match=r"extract_sequences: sequence_length must be an integer, received a tensor of "
                                        r"shape \(2,\)"):
        ops.extract_sequences(np.ones(5), lamina.convert_to_tensor(np.array([1, 2])), 1)
    with pytest.raises(TypeError, match=r"saturate_cast: dtype must be a dtype name such as 'int32', received Tensor"):
        ops.saturate_cast(np.ones(2), lamina.convert_to_tensor(np.array([1])))
    with pytest.raises(ValueError, match=r"array: cannot make a tensor of list .*different lengths"):
        ops.array([[1.0, 2.0], [3.0]])
    with pytest.raises(TypeError, match=r"logspace: start must be a scalar number"):
        ops.logspace([[1.0, 2.0], [3.0]], 2.0)
    with pytest.raises(TypeError, match=r"geomspace: stop must be a scalar number"):
        ops.geomspace(1.0, "x")
    with pytest.raises(ValueError, match=r"quantile: q must be a number or a 1-D sequence of numbers"):
        ops.quantile(np.ones(3), [[0.1, 0.2], [0.3]])


# ---- window functions ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bartlett", "blackman", "hamming", "hanning"])
@pytest.mark.parametrize("M", [0, 1, 2, 5, 12])
def test_windows_match_numpy(name, M):
    got = getattr(ops, name)(M)
    assert got.dtype == "float32"
    np.testing.assert_allclose(got.numpy(), getattr(np, name)(M), atol=2e-7)


@pytest.mark.parametrize("M,beta", [(1, 3.0), (6, 0.0), (9, 5.0), (16, 14.0), (7, -8.6), (20, 60.0)])
def test_kaiser_matches_numpy(M, beta):
    np.testing.assert_allclose(ops.kaiser(M, beta).numpy(), np.kaiser(M, beta), rtol=5e-6, atol=1e-7)


def test_window_errors():
    with pytest.raises(TypeError, match=r"hamming: x must be an integer, received 4.5"):
        ops.hamming(4.5)
    with pytest.raises(ValueError, match=r"kaiser: \|beta\| must be at most 80"):
        ops.kaiser(4, 100.0)


# ---- sequences and axes -------------------------------------------------------------------------

@pytest.mark.parametrize("shape,L,s", [((10,), 3, 2), ((2, 9), 4, 1), ((2, 3, 8), 8, 3), ((5,), 6, 1), ((7,), 2, 5)])
def test_extract_sequences(shape, L, s):
    x = f32(*shape)
    n = shape[-1]
    frames = max((n - L) // s + 1, 0) if n >= L else 0
    want = np.stack([x[..., i * s:i * s + L] for i in range(frames)], axis=-2) if frames else \
        np.zeros(shape[:-1] + (0, L), np.float32)
    got = ops.extract_sequences(x, L, s)
    np.testing.assert_array_equal(got.numpy(), want)
    keras = keras_or_none()
    if keras is not None and shape == (2, 3, 8):
        np.testing.assert_array_equal(got.numpy(), np.asarray(keras.ops.extract_sequences(x, L, s)))
    if frames:
        check_grad(lambda t: ops.extract_sequences(t, L, s),
                   lambda a: np.stack([a[..., i * s:i * s + L] for i in range(frames)], axis=-2), [x])


def test_extract_sequences_errors():
    with pytest.raises(ValueError, match=r"extract_sequences: sequence_length must be an integer >= 1"):
        ops.extract_sequences(np.ones(5), 0, 1)
    with pytest.raises(TypeError, match=r"extract_sequences: sequence_stride must be an integer"):
        ops.extract_sequences(np.ones(5), 2, 1.5)


@pytest.mark.parametrize("pattern,lengths", [
    ("b h w c -> b c h w", {}),
    ("b h w c -> (b h) w c", {}),
    ("b h w c -> h (b w) c", {}),
    ("b h w c -> b (c h w)", {}),
    ("b (h1 h) (w1 w) c -> (b h1 w1) h w c", dict(h1=2, w1=2)),
    ("b (h h1) (w w1) c -> b h w (c h1 w1)", dict(h1=2, w1=2)),
])
def test_rearrange_matches_keras(pattern, lengths):
    x = f32(2, 4, 6, 3)
    got = ops.rearrange(x, pattern, **lengths)
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras is not installed: no reference for keras.ops.rearrange")
    np.testing.assert_array_equal(got.numpy(), np.asarray(keras.ops.rearrange(x, pattern, **lengths)))


def test_rearrange_ellipsis_unit_axes_and_gradient():
    x = f32(2, 3, 4, 5)
    np.testing.assert_array_equal(ops.rearrange(x, "b ... c -> c b ...").numpy(), np.moveaxis(x, 3, 0))
    np.testing.assert_array_equal(ops.rearrange(x, "b ... c -> b (...) c").numpy(), x.reshape(2, 12, 5))
    np.testing.assert_array_equal(ops.rearrange(x, "b h w c -> b 1 h w c ()").numpy(), x.reshape(2, 1, 3, 4, 5, 1))
    np.testing.assert_array_equal(ops.rearrange(x.reshape(2, 1, 3, 20), "b 1 h (w c) -> c w h b", c=5).numpy(),
                                  x.transpose(3, 2, 1, 0))
    check_grad(lambda t: ops.rearrange(t, "a (b c) -> c a b", c=2), lambda a: a.reshape(3, 2, 2).transpose(2, 0, 1),
               [f32(3, 4)])


@pytest.mark.parametrize("pattern,lengths,match", [
    ("a b -> a", {}, r"rearrange: axes \['b'\] appear on only one side"),
    ("a b c -> a b c", {}, r"describes 3 dimensions, but the tensor has shape \(4, 6\)"),
    ("a (b c) -> a b c", {}, r"cannot infer the lengths of \['b', 'c'\]"),
    ("a (b c) -> a b c", dict(c=4), r"dimension 6 of shape \(4, 6\) is not divisible by 4"),
    ("a a -> a", {}, r"axis 'a' appears twice"),
    ("a b", {}, r"pattern must be a string 'input axes -> output axes'"),
    ("a (b -> a b", {}, r"unbalanced '\('"),
    ("a b -> a b", dict(z=2), r"axes_lengths names \['z'\]"),
    ("a 2 -> a", {}, r"unexpected '2'"),
])
def test_rearrange_errors(pattern, lengths, match):
    with pytest.raises(ValueError, match=match):
        ops.rearrange(np.ones((4, 6), np.float32), pattern, **lengths)
