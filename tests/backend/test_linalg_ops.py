"""backend/linalg_ops.py against numpy.linalg / scipy.linalg: decompositions, solvers and norms,
batched; gradients against finite differences; singular, indefinite and ill-posed inputs."""
import numpy as np
import pytest
import scipy.linalg as sl

import lamina
from lamina import ops
from opcheck import check_grad

T = lamina.convert_to_tensor
L = ops.linalg


def well_conditioned(rng, shape):
    """Random matrices with singular values in [1, 3] (float32)."""
    *batch, m, n = shape
    a = rng.standard_normal(shape)
    u, _, vt = np.linalg.svd(a, full_matrices=False)
    s = rng.uniform(1.0, 3.0, tuple(batch) + (min(m, n),))
    return ((u * s[..., None, :]) @ vt).astype(np.float32)


def spd(rng, shape):
    a = rng.standard_normal(shape)
    return (a @ np.swapaxes(a, -1, -2) + shape[-1] * np.eye(shape[-1])).astype(np.float32)


def close(got, want, tol=2e-5):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=tol, atol=tol)


BATCHES = [(), (3,), (2, 2)]


# ---- forward against numpy / scipy --------------------------------------------------------------------

@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("n", [1, 4, 9])
def test_cholesky(batch, n, rng):
    a = spd(rng, batch + (n, n))
    got = L.cholesky(a).numpy()
    close(got, np.linalg.cholesky(a.astype(np.float64)))
    assert np.all(np.triu(got, 1) == 0)
    up = L.cholesky(a, upper=True).numpy()
    close(up, np.linalg.cholesky(a.astype(np.float64), upper=True))
    # only the named triangle is read
    garbage = a + np.triu(np.full((n, n), 7.0, np.float32), 1)
    np.testing.assert_array_equal(L.cholesky(garbage).numpy(), got)
    close(L.cholesky_inverse(got).numpy(), np.linalg.inv(a.astype(np.float64)), 1e-4)
    close(L.cholesky_inverse(up, upper=True).numpy(), np.linalg.inv(a.astype(np.float64)), 1e-4)


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("a_batch,b_shape", [((), (5, 3)), ((), (5,)), ((3,), (3, 5, 2)), ((3,), (3, 5)),
                                             ((2, 1), (1, 4, 5, 2)), ((), (2, 5, 3))])
def test_solve_triangular(lower, a_batch, b_shape, rng):
    a = (rng.standard_normal(a_batch + (5, 5)) + 4 * np.eye(5)).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    got = L.solve_triangular(a, b, lower=lower).numpy()
    tri = np.tril(a) if lower else np.triu(a)
    bm = b[..., None] if b.ndim == a.ndim - 1 else b
    want = np.linalg.solve(tri.astype(np.float64), bm.astype(np.float64))
    want = want[..., 0] if b.ndim == a.ndim - 1 else want
    assert got.shape == want.shape
    close(got, want)
    if a.ndim == 2 and b.ndim <= 2:
        close(got, sl.solve_triangular(a.astype(np.float64), b.astype(np.float64), lower=lower))


@pytest.mark.parametrize("shape", [(4, 4), (6, 4), (4, 6), (3, 5, 5), (1, 1)])
def test_lu_factor_matches_scipy(shape, rng):
    a = rng.standard_normal(shape).astype(np.float32)
    lu, piv = L.lu_factor(a)
    assert piv.dtype == "int32" and piv.shape == shape[:-2] + (min(shape[-2:]),)
    for idx in np.ndindex(shape[:-2]):
        want_lu, want_piv = sl.lu_factor(a[idx].astype(np.float64))
        close(lu.numpy()[idx], want_lu)
        np.testing.assert_array_equal(piv.numpy()[idx], want_piv)


def test_lu_factor_of_a_singular_matrix_does_not_raise():
    lu, piv = L.lu_factor(np.zeros((3, 3), np.float32))
    np.testing.assert_array_equal(lu.numpy(), np.zeros((3, 3)))
    np.testing.assert_array_equal(piv.numpy(), [0, 1, 2])


@pytest.mark.parametrize("a_shape,b_shape", [((4, 4), (4,)), ((4, 4), (4, 3)), ((2, 4, 4), (2, 4, 3)),
                                             ((2, 4, 4), (4,)), ((2, 1, 4, 4), (3, 4, 2)), ((4, 4), (2, 4, 1))])
def test_solve(a_shape, b_shape, rng):
    a = well_conditioned(rng, a_shape)
    b = rng.standard_normal(b_shape).astype(np.float32)
    got = L.solve(a, b).numpy()
    want = np.linalg.solve(a.astype(np.float64), b.astype(np.float64))
    assert got.shape == want.shape
    close(got, want)
    assert ops.solve is L.solve


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("n", [1, 3, 8])
def test_inv_det_slogdet(batch, n, rng):
    a = well_conditioned(rng, batch + (n, n))
    a64 = a.astype(np.float64)
    close(L.inv(a).numpy(), np.linalg.inv(a64))
    close(L.det(a).numpy(), np.linalg.det(a64), 1e-5)
    sign, logabs = L.slogdet(a)
    ws, wl = np.linalg.slogdet(a64)
    np.testing.assert_array_equal(sign.numpy(), ws)
    close(logabs.numpy(), wl)
    close(ops.logdet(a).numpy(), wl)
    assert sign.shape == logabs.shape == batch


def test_det_in_double_does_not_overflow_early():
    a = np.diag(np.full(40, 1e3, np.float32))   # det 1e120: inf in float32, log|det| finite
    assert L.det(a).numpy() == np.inf
    s, l = L.slogdet(a)
    assert s.numpy() == 1.0
    close(l.numpy(), 40 * np.log(1e3))
    b = np.diag(np.array([1e30, 1e30, 1e-30, 1e-30], np.float32))   # exact in double: det 1
    close(L.det(b).numpy(), 1.0)


def test_singular_matrices():
    a = np.array([[1.0, 2.0], [2.0, 4.0]], np.float32)
    assert L.det(a).numpy() == 0.0
    sign, logabs = L.slogdet(a)
    assert sign.numpy() == 0.0 and logabs.numpy() == -np.inf
    with pytest.raises(ValueError, match=r"inv: matrix 0 of the batch is singular.*input of shape \(2, 2\).*pinv"):
        L.inv(a)
    with pytest.raises(ValueError, match=r"solve: matrix 1 of the batch is singular.*\(2, 2, 2\)"):
        L.solve(np.stack([np.eye(2, dtype=np.float32), a]), np.ones((2, 2, 1), np.float32))
    with pytest.raises(ValueError, match=r"solve_triangular: matrix 0 of the batch is singular: diagonal entry 1"):
        L.solve_triangular(np.array([[1.0, 0.0], [3.0, 0.0]], np.float32), np.ones(2, np.float32), lower=True)
    # pinv and lstsq handle it
    close(L.pinv(a).numpy(), np.linalg.pinv(a.astype(np.float64)))
    close(L.lstsq(a, np.array([1.0, 2.0], np.float32)).numpy(),
          np.linalg.lstsq(a.astype(np.float64), np.array([1.0, 2.0]))[0])


def test_cholesky_of_an_indefinite_matrix_raises():
    a = np.array([[1.0, 2.0], [2.0, 1.0]], np.float32)
    with pytest.raises(ValueError, match=r"cholesky: matrix 0 of the batch is not positive definite: the leading "
                                         r"minor of order 2.*symmetric positive definite"):
        L.cholesky(a)
    with pytest.raises(ValueError, match=r"cholesky: matrix 2 of the batch .*NaN"):
        L.cholesky(np.stack([np.eye(2), np.eye(2), np.full((2, 2), np.nan)]).astype(np.float32))


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4), (2, 6, 4), (2, 3, 4, 2), (1, 1), (6, 1)])
@pytest.mark.parametrize("mode", ["reduced", "complete"])
def test_qr_matches_numpy(shape, mode, rng):
    a = rng.standard_normal(shape).astype(np.float32)
    q, r = L.qr(a, mode=mode)
    wq, wr = np.linalg.qr(a.astype(np.float64), mode=mode)
    assert q.shape == wq.shape and r.shape == wr.shape
    close(q.numpy(), wq, 1e-5)   # LAPACK's sign convention
    close(r.numpy(), wr, 1e-5)
    close(q.numpy() @ r.numpy(), a)
    assert np.all(np.tril(r.numpy(), -1) == 0)


def test_qr_rank_deficient_and_bad_mode(rng):
    a = np.zeros((4, 3), np.float32)
    a[:, 0] = 1.0
    q, r = L.qr(a)
    close(q.numpy() @ r.numpy(), a)
    close(np.swapaxes(q.numpy(), -1, -2) @ q.numpy(), np.eye(3))
    with pytest.raises(ValueError, match=r"qr: `mode` argument value not supported.*mode='r'"):
        L.qr(a, mode="r")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("n", [1, 2, 7, 16])
def test_eigh(batch, n, rng):
    a = rng.standard_normal(batch + (n, n)).astype(np.float32)
    a = (a + np.swapaxes(a, -1, -2)).astype(np.float32)
    w, v = L.eigh(a)
    w, v = w.numpy(), v.numpy()
    close(w, np.linalg.eigvalsh(a.astype(np.float64)))
    close((v * w[..., None, :]) @ np.swapaxes(v, -1, -2), a, 5e-5)
    close(np.swapaxes(v, -1, -2) @ v, np.broadcast_to(np.eye(n), v.shape))
    assert np.all(np.diff(w, axis=-1) >= 0)


def test_eigh_reads_the_lower_triangle_and_handles_repeated_eigenvalues(rng):
    a = rng.standard_normal((5, 5)).astype(np.float32)   # not symmetric
    w, _ = L.eigh(a)
    close(w.numpy(), np.linalg.eigh(a.astype(np.float64))[0])
    w, v = L.eigh(np.eye(4, dtype=np.float32) * 2.0)
    np.testing.assert_array_equal(w.numpy(), [2, 2, 2, 2])
    close(np.abs(v.numpy()) @ np.abs(v.numpy()).T, np.eye(4))


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4), (2, 6, 4), (2, 3, 4, 2), (1, 1), (1, 6), (0, 3)])
@pytest.mark.parametrize("full", [True, False])
def test_svd(shape, full, rng):
    a = rng.standard_normal(shape).astype(np.float32)
    u, s, vt = L.svd(a, full_matrices=full)
    wu, ws, wvt = np.linalg.svd(a.astype(np.float64), full_matrices=full)
    assert u.shape == wu.shape and s.shape == ws.shape and vt.shape == wvt.shape
    close(s.numpy(), ws)
    k = min(shape[-2:])
    u, s, vt = u.numpy(), s.numpy(), vt.numpy()
    close((u[..., :, :k] * s[..., None, :]) @ vt[..., :k, :], a)
    close(np.swapaxes(u, -1, -2) @ u, np.broadcast_to(np.eye(u.shape[-1]), u.shape[:-2] + (u.shape[-1],) * 2))
    close(vt @ np.swapaxes(vt, -1, -2), np.broadcast_to(np.eye(vt.shape[-2]), vt.shape[:-2] + (vt.shape[-2],) * 2))
    close(L.svd(a, compute_uv=False).numpy(), ws)


def test_svd_of_rank_deficient_matrices_completes_the_bases(rng):
    x = rng.standard_normal((6, 2))
    a = (x @ rng.standard_normal((2, 4))).astype(np.float32)   # rank 2
    a[:, 3] = 0.0
    for full in (True, False):
        u, s, vt = (t.numpy() for t in L.svd(a, full_matrices=full))
        close(s, np.linalg.svd(a.astype(np.float64), compute_uv=False))
        close(u.T @ u, np.eye(u.shape[1]))
        close(vt @ vt.T, np.eye(vt.shape[0]))
        close((u[:, :4] * s) @ vt[:4], a)
    u, s, vt = (t.numpy() for t in L.svd(np.zeros((3, 2), np.float32)))
    np.testing.assert_array_equal(s, [0, 0])
    close(u.T @ u, np.eye(3))


def test_eigh_and_svd_refuse_non_finite():
    bad = np.array([[1.0, np.nan], [np.nan, 1.0]], np.float32)
    with pytest.raises(ValueError, match=r"svd: matrix 0 of the batch holds NaN or infinity"):
        L.svd(bad)
    with pytest.raises(ValueError, match=r"eigh: matrix 1 of the batch holds NaN or infinity"):
        L.eigh(np.stack([np.eye(2, dtype=np.float32), bad]))


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4), (2, 4, 3)])
def test_pinv_lstsq_matrix_rank(shape, rng):
    a = rng.standard_normal(shape).astype(np.float32)
    a64 = a.astype(np.float64)
    close(L.pinv(a).numpy(), np.linalg.pinv(a64), 1e-4)
    r = L.matrix_rank(a)
    assert r.dtype == "int32"
    np.testing.assert_array_equal(r.numpy(), np.linalg.matrix_rank(a))
    if len(shape) == 2:
        b = rng.standard_normal((shape[0], 2)).astype(np.float32)
        close(L.lstsq(a, b).numpy(), np.linalg.lstsq(a64, b.astype(np.float64))[0], 1e-4)
        close(L.lstsq(a, b[:, 0]).numpy(), np.linalg.lstsq(a64, b[:, 0].astype(np.float64))[0], 1e-4)


def test_matrix_rank_of_rank_deficient_matrices_and_tol(rng):
    x = rng.standard_normal((5, 2)) @ rng.standard_normal((2, 4))
    a = np.stack([x, np.eye(5, 4), np.zeros((5, 4))]).astype(np.float32)
    np.testing.assert_array_equal(L.matrix_rank(a).numpy(), [2, 4, 0])
    d = np.diag(np.array([1.0, 0.5, 1e-3], np.float32))
    assert int(L.matrix_rank(d, tol=1e-2).numpy()) == 2
    assert int(L.matrix_rank(d, tol=1e-4).numpy()) == 3
    with pytest.raises(ValueError, match=r"matrix_rank: expected input to have rank >= 2.*\(3,\)"):
        L.matrix_rank(np.ones(3, np.float32))
    # pinv's rcond: singular values at most rcond * max(s) count as zero
    close(L.pinv(d, rcond=1e-2).numpy(), np.diag([1.0, 2.0, 0.0]), 1e-5)


@pytest.mark.parametrize("ord", [None, "fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf])
@pytest.mark.parametrize("keepdims", [False, True])
def test_matrix_norms(ord, keepdims, rng):
    a = rng.standard_normal((3, 4, 5)).astype(np.float32)
    for axis in ((1, 2), (2, 0), (-1, -2)):
        close(L.norm(a, ord=ord, axis=axis, keepdims=keepdims).numpy(),
              np.linalg.norm(a.astype(np.float64), ord=ord, axis=axis, keepdims=keepdims))
    close(L.norm(a[0], ord=ord).numpy(), np.linalg.norm(a[0].astype(np.float64), ord=ord))


@pytest.mark.parametrize("ord", [None, 1, 2, 3, 0.5, 0, np.inf, -np.inf])
def test_vector_norms(ord, rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    x[0, 0] = 0.0
    for axis in (0, 1, -1):
        for keepdims in (False, True):
            close(L.norm(x, ord=ord, axis=axis, keepdims=keepdims).numpy(),
                  np.linalg.norm(x.astype(np.float64), ord=ord, axis=axis, keepdims=keepdims))
    close(L.norm(x[1], ord=ord).numpy(), np.linalg.norm(x[1].astype(np.float64), ord=ord))
    close(L.norm(x).numpy(), np.linalg.norm(x.astype(np.float64)))   # flattened 2-norm
    assert ops.norm is L.norm


def test_norm_errors():
    with pytest.raises(ValueError, match=r"norm: ord='nuc' is a matrix norm"):
        L.norm(np.ones(3, np.float32), ord="nuc")
    with pytest.raises(ValueError, match=r"norm: invalid ord=3 for a matrix norm"):
        L.norm(np.ones((3, 3), np.float32), ord=3)
    with pytest.raises(ValueError, match=r"norm: ord=1 with axis=None needs a 1-D or 2-D input.*\(2, 2, 2\)"):
        L.norm(np.ones((2, 2, 2), np.float32), ord=1)


def test_integer_inputs_compute_in_float32():
    a = np.array([[2, 1], [1, 3]], np.int32)
    assert L.det(a).dtype == "float32"
    close(L.det(a).numpy(), 5.0)
    close(L.inv(a).numpy(), np.linalg.inv(a))
    close(L.cholesky(a).numpy(), np.linalg.cholesky(a))


def test_shape_errors_name_the_op_and_shapes():
    with pytest.raises(ValueError, match=r"inv: expected square matrices, a has shape \(2, 3\)"):
        L.inv(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"det: expected a matrix or a batch of matrices.*\(3,\)"):
        L.det(np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"solve: a of shape \(3, 3\) and b of shape \(4,\) do not fit"):
        L.solve(np.eye(3, dtype=np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"solve: the batch dimensions of a \(shape \(2, 3, 3\)\) and b"):
        L.solve(np.ones((2, 3, 3), np.float32), np.ones((4, 3, 1), np.float32))
    with pytest.raises(ValueError, match=r"lstsq: a of shape \(4, 2\) and b of shape \(3,\) do not fit"):
        L.lstsq(np.ones((4, 2), np.float32), np.ones(3, np.float32))


def test_namespace_matches_keras_ops_linalg():
    for name in ("cholesky", "cholesky_inverse", "det", "eigh", "inv", "lu_factor", "lstsq", "matrix_rank", "norm",
                 "pinv", "qr", "solve", "solve_triangular", "svd"):
        assert getattr(L, name) is getattr(ops, name), name
    assert ops.slogdet is L.slogdet and ops.logdet is L.logdet


# ---- gradients ----------------------------------------------------------------------------------------

def test_cholesky_gradients(rng):
    a = spd(rng, (2, 4, 4)).astype(np.float64)
    check_grad(L.cholesky, np.linalg.cholesky, [a])
    check_grad(lambda x: L.cholesky(x, upper=True), lambda x: np.linalg.cholesky(x, upper=True), [a])
    c = np.linalg.cholesky(a[0])
    check_grad(L.cholesky_inverse, lambda x: np.linalg.inv(np.tril(x) @ np.tril(x).T), [c])


@pytest.mark.parametrize("lower", [True, False])
def test_solve_triangular_gradients(lower, rng):
    a = rng.standard_normal((2, 4, 4)) + 4 * np.eye(4)
    b = rng.standard_normal((2, 4, 3))
    tri = np.tril if lower else np.triu
    check_grad(lambda x, y: L.solve_triangular(x, y, lower=lower), lambda x, y: np.linalg.solve(tri(x), y), [a, b])
    bv = rng.standard_normal((4,))
    check_grad(lambda x, y: L.solve_triangular(x, y, lower=lower),
               lambda x, y: np.linalg.solve(tri(x), y[..., None])[..., 0], [a[0], bv])


def test_solve_inv_det_slogdet_gradients(rng):
    a = well_conditioned(rng, (2, 4, 4)).astype(np.float64)
    b = rng.standard_normal((2, 4, 3))
    check_grad(L.solve, np.linalg.solve, [a, b])
    check_grad(L.solve, np.linalg.solve, [a[0], b[0, :, 0]])
    # broadcast batch: the gradient of the shared matrix sums over the batch
    check_grad(L.solve, np.linalg.solve, [a[0], b])
    check_grad(L.inv, np.linalg.inv, [a])
    check_grad(L.det, np.linalg.det, [a])
    check_grad(lambda x: L.slogdet(x)[1], lambda x: np.linalg.slogdet(x)[1], [a])
    check_grad(ops.logdet, lambda x: np.linalg.slogdet(x)[1], [spd(rng, (3, 3)).astype(np.float64)])


def test_det_gradient_of_a_singular_matrix_is_the_cofactor_matrix():
    a = T(np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]], np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(a)
        d = L.det(a)
    g = tape.gradient(d, a).numpy()
    m = a.numpy().astype(np.float64)
    cof = np.array([[(-1) ** (i + j) * np.linalg.det(np.delete(np.delete(m, i, 0), j, 1)) for j in range(3)]
                    for i in range(3)])
    close(g, cof, 1e-4)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4), (2, 4, 2)])
def test_qr_gradients(shape, rng):
    a = rng.standard_normal(shape)
    check_grad(L.qr, np.linalg.qr, [a])
    check_grad(lambda x: L.qr(x)[1], lambda x: np.linalg.qr(x)[1], [a])   # r alone
    check_grad(lambda x: L.qr(x, mode="complete")[1], lambda x: np.linalg.qr(x, mode="complete")[1], [a])


def test_qr_complete_q_gradient_of_a_tall_matrix_is_refused(rng):
    a = T(rng.standard_normal((4, 2)).astype(np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(a)
        q, _ = L.qr(a, mode="complete")
        loss = ops.sum(q)
    with pytest.raises(ValueError, match=r"qr: the gradient with respect to q of mode='complete'.*\(4, 2\)"):
        tape.gradient(loss, a)


def test_eigh_gradients(rng):
    a = spd(rng, (2, 4, 4)).astype(np.float64)

    def ref(x):
        w, v = np.linalg.eigh(x)
        return w, v * v   # eigenvector signs are arbitrary: compare sign-free quantities

    check_grad(lambda x: (lambda w, v: (w, v * v))(*L.eigh(x)), ref, [a])
    check_grad(lambda x: L.eigh(x)[0], lambda x: np.linalg.eigh(x)[0], [rng.standard_normal((3, 3))])


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4), (2, 4, 3)])
def test_svd_gradients(shape, rng):
    a = rng.standard_normal(shape)

    def ref(x):
        u, s, vt = np.linalg.svd(x, full_matrices=False)
        return u * u, s, vt * vt

    check_grad(lambda x: (lambda u, s, vt: (u * u, s, vt * vt))(*L.svd(x, full_matrices=False)), ref, [a])
    check_grad(lambda x: L.svd(x, compute_uv=False), lambda x: np.linalg.svd(x, compute_uv=False), [a])
    check_grad(lambda x: L.svd(x)[1], lambda x: np.linalg.svd(x)[1], [a])   # full_matrices=True, s only
    check_grad(lambda x: L.norm(x, "nuc", axis=(-2, -1)), lambda x: np.linalg.norm(x, "nuc", axis=(-2, -1)), [a])


def test_svd_vector_gradient_of_full_matrices_non_square_is_refused(rng):
    a = T(rng.standard_normal((4, 2)).astype(np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(a)
        u, _, _ = L.svd(a)
        loss = ops.sum(u * u)
    with pytest.raises(ValueError, match=r"svd: the gradient with respect to u and vh of full_matrices=True"):
        tape.gradient(loss, a)


def test_pinv_and_lstsq_gradients(rng):
    a = well_conditioned(rng, (5, 3)).astype(np.float64)
    b = rng.standard_normal((5, 2))
    check_grad(L.pinv, np.linalg.pinv, [a])
    check_grad(L.lstsq, lambda x, y: np.linalg.lstsq(x, y)[0], [a, b])
