"""The dense decompositions and solvers (csrc/cuda/decomp.cu on the GPU) on a device under test
(tests/gpu/conftest.py) against cpu:0: cholesky, solve_triangular, lu_factor, solve, inv, det,
slogdet, qr, eigh and svd, batched, at sizes from 0 to 64. The kernels are called directly (every
option: upper factors, transposed solves, complete QR, full or no singular vectors; the edge
cases: empty matrices, pivot ties, zero pivots and columns, rank deficiency, repeated
eigenvalues, NaN) and through the ops with their gradients. The device uses the CPU's algorithms,
so the factors themselves must agree -- the pivots exactly, and the signs of Householder vectors,
eigenvectors and singular vectors as well as the values, within float32 rounding. Errors on the
data (not positive definite, singular, NaN) name the same matrix of the batch with the CPU's
message."""
import importlib

import numpy as np
import pytest

import lamina
from lamina import ops

from device_calls import KernelCall as _Call

_dm = importlib.import_module("lamina.backend.device")

R = np.random.default_rng(53)
KERNELS = ("cholesky", "solve_triangular", "lu_factor", "solve", "inv", "det", "slogdet", "qr", "eigh", "svd")


def _f(*shape, scale=1.0):
    return (scale * R.normal(size=shape)).astype(np.float32)


def _spd(batch, n):
    """Symmetric positive definite matrices (batch, n, n), well conditioned."""
    m = R.normal(size=(batch, n, n))
    return (m @ np.swapaxes(m, -1, -2) / max(n, 1) + np.eye(n)).astype(np.float32)


def _sym(batch, n):
    m = R.normal(size=(batch, n, n))
    return ((m + np.swapaxes(m, -1, -2)) / 2).astype(np.float32)


def _close(got, want, rtol=1e-5, atol=1e-6):
    assert got.dtype == want.dtype and got.shape == want.shape
    fin = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(got), fin)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol,
                               atol=atol * max(1.0, float(np.abs(want[fin]).max(initial=0))))
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf])


def _both(dev, call):
    """call(_Call) on cpu:0 and on dev: the pairs of outputs (device, cpu)."""
    want = _Call("cpu:0")
    call(want)
    got = _Call(dev)
    call(got)
    return list(zip(got.results(), want.results()))


def _builtin_type(e):
    return next(t for t in type(e).__mro__ if t.__module__ == "builtins")


def _same_error(fn, dev):
    """fn(device) raises on cpu:0; the device raises the same error type and message."""
    with pytest.raises(Exception) as want:
        fn("cpu:0")
    with pytest.raises(Exception) as got:
        fn(dev)
    assert _builtin_type(got.value) is _builtin_type(want.value)
    assert str(got.value) == str(want.value)
    return want.value


@pytest.fixture
def native(dev):
    """On a GPU: the decomposition kernels run there (none on host copies of the buffers)."""
    before = dict(dev.kernels.fallbacks)
    yield
    if dev.kind == "gpu":
        assert set(KERNELS) <= dev.kernels.native
        ran_on_host = {n: dev.kernels.fallbacks.get(n, 0) - before.get(n, 0) for n in KERNELS}
        assert not any(ran_on_host.values()), ran_on_host


# ---- cholesky and triangular solves -------------------------------------------------------------------

@pytest.mark.parametrize("n,batch", [(0, 2), (1, 3), (5, 2), (17, 2), (64, 1)])
@pytest.mark.parametrize("upper", [False, True])
def test_cholesky_kernel_matches_cpu(n, batch, upper, dev, native):
    a = _spd(batch, n)
    a += np.triu(_f(batch, n, n), 1) if not upper else np.tril(_f(batch, n, n), -1)  # the triangle not read
    for got, want in _both(dev, lambda c: c.k.cholesky(c.buf(a), batch, n, upper, c.out(a.shape))):
        _close(got, want)


@pytest.mark.parametrize("n,k,batch", [(1, 1, 2), (6, 1, 3), (9, 4, 2), (33, 7, 1), (64, 64, 1), (5, 0, 2),
                                       (0, 3, 2)])
@pytest.mark.parametrize("lower,transpose", [(True, False), (False, False), (True, True), (False, True)])
def test_solve_triangular_kernel_matches_cpu(n, k, batch, lower, transpose, dev, native):
    a = _f(batch, n, n, scale=0.3) + 2 * np.eye(n, dtype=np.float32)  # the other triangle must be ignored
    if n > 3:
        a[:, 3, 1] = a[:, 1, 3] = 0.0  # zeros inside the triangle (skipped, as the CPU)
    b = _f(batch, n, k)
    for got, want in _both(dev, lambda c: c.k.solve_triangular(c.buf(a), c.buf(b), batch, n, k, lower, transpose,
                                                               c.out(b.shape))):
        _close(got, want)


# ---- LU: lu_factor, solve, inv, det, slogdet ----------------------------------------------------------

def _lu_inputs(m, n, batch):
    a = _f(batch, m, n)
    if batch > 1 and m > 1 and n > 1:
        # ties between pivot candidates (the first row wins), a zero column (a skipped step), NaN
        a[1] = R.integers(-1, 2, size=(m, n)).astype(np.float32)
        a[1, :, min(m, n) // 2] = 0.0
    if batch > 2:
        a[2, m - 1, 0] = np.nan
    return a


@pytest.mark.parametrize("m,n,batch", [(1, 1, 1), (4, 4, 3), (7, 5, 3), (5, 7, 3), (33, 20, 2), (64, 64, 2),
                                       (0, 3, 2), (3, 0, 2)])
def test_lu_factor_kernel_matches_cpu(m, n, batch, dev, native):
    a = _lu_inputs(m, n, batch)
    k = min(m, n)
    (lu, lu_cpu), (piv, piv_cpu) = _both(dev, lambda c: c.k.lu_factor(c.buf(a), batch, m, n, c.out(a.shape),
                                                                      c.out((batch, k), np.int32)))
    np.testing.assert_array_equal(piv, piv_cpu)
    _close(lu, lu_cpu)


def test_lu_factor_ties_pick_the_first_row(dev, native):
    a = np.array([[[1, 2, 0], [-1, 0, 3], [1, 5, 5]], [[0, 0, 1], [0, 2, 2], [0, -2, 4]]], np.float32)
    (lu, lu_cpu), (piv, piv_cpu) = _both(dev, lambda c: c.k.lu_factor(c.buf(a), 2, 3, 3, c.out(a.shape),
                                                                      c.out((2, 3), np.int32)))
    np.testing.assert_array_equal(piv, piv_cpu)
    np.testing.assert_array_equal(piv, [[0, 2, 2], [0, 1, 2]])
    np.testing.assert_array_equal(lu, lu_cpu)


@pytest.mark.parametrize("n,k,batch", [(1, 1, 2), (4, 3, 3), (13, 1, 2), (30, 8, 2), (64, 5, 1), (3, 0, 2)])
@pytest.mark.parametrize("transpose", [False, True])
def test_solve_kernel_matches_cpu(n, k, batch, transpose, dev, native):
    a = _f(batch, n, n) + 0.5 * np.eye(n, dtype=np.float32)
    b = _f(batch, n, k)
    for got, want in _both(dev, lambda c: c.k.solve(c.buf(a), c.buf(b), batch, n, k, transpose, c.out(b.shape))):
        _close(got, want)


@pytest.mark.parametrize("n,batch", [(0, 2), (1, 2), (4, 3), (21, 2), (64, 1)])
def test_inv_kernel_matches_cpu(n, batch, dev, native):
    a = _f(batch, n, n) + 0.5 * np.eye(n, dtype=np.float32)
    for got, want in _both(dev, lambda c: c.k.inv(c.buf(a), batch, n, c.out(a.shape))):
        _close(got, want)


@pytest.mark.parametrize("n", [0, 1, 3, 6, 25, 64])
def test_det_slogdet_kernels_match_cpu(n, dev, native):
    batch = 5
    a = _f(batch, n, n)
    if n >= 2:
        a[1] = a[1][::-1]                     # another sign
        a[2, :, 1] = 0.0                      # singular: det 0, slogdet (0, -inf)
        a[3] = R.integers(-2, 3, size=(n, n))  # integers: exact ties among pivots
        a[4, 0, 0] = np.nan                   # NaN: slogdet (nan, nan)
    pairs = _both(dev, lambda c: (c.k.det(c.buf(a), batch, n, c.out((batch,))),
                                  c.k.slogdet(c.buf(a), batch, n, c.out((batch,)), c.out((batch,)))))
    for got, want in pairs:
        _close(got, want, rtol=2e-5)


# ---- QR ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("m,n,batch", [(1, 1, 2), (5, 3, 3), (3, 5, 3), (6, 6, 2), (40, 17, 2), (17, 40, 1),
                                       (64, 64, 1), (3, 0, 2), (0, 3, 2)])
@pytest.mark.parametrize("complete", [False, True])
def test_qr_kernel_matches_cpu(m, n, batch, complete, dev, native):
    a = _f(batch, m, n)
    if batch > 1 and m > 2 and n > 2:
        a[1, 1:, 0] = 0.0  # nothing to reflect in column 0 (tau = 0)
        a[1, :, 2] = a[1, :, 1]  # rank deficient
    k = min(m, n)
    qc = m if complete else k
    for got, want in _both(dev, lambda c: c.k.qr(c.buf(a), batch, m, n, complete, c.out((batch, m, qc)),
                                                 c.out((batch, m if complete else k, n)))):
        _close(got, want)


# ---- eigh ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,batch", [(0, 2), (1, 3), (2, 3), (5, 3), (16, 2), (64, 1)])
def test_eigh_kernel_matches_cpu(n, batch, dev, native):
    a = _sym(batch, n)
    a += np.triu(_f(batch, n, n), 1)  # only the lower triangle is read
    if batch > 2 and n > 1:
        a[2] = np.diag(np.array([2.0, -1.0, 2.0, 0.5, -1.0] * n, np.float32)[:n])  # repeated: a stable order
    if batch > 1 and n > 2:
        a[1, 0, n - 1] = np.nan  # in the triangle not read: no error
    (w, w_cpu), (v, v_cpu) = _both(dev, lambda c: c.k.eigh(c.buf(a), batch, n, c.out((batch, n)), c.out(a.shape)))
    _close(w, w_cpu)
    _close(v, v_cpu)  # the eigenvectors themselves: the same signs


# ---- svd -----------------------------------------------------------------------------------------------

def _svd_call(a, m, n, batch, full, uv):
    k = min(m, n)

    def call(c):
        u = c.out((batch, m, m if full else k)) if uv else None
        s = c.out((batch, k))
        vt = c.out((batch, n if full else k, n)) if uv else None
        c.k.svd(c.buf(a), batch, m, n, full, u, s, vt)
    return call


@pytest.mark.parametrize("m,n,batch", [(1, 1, 2), (5, 3, 3), (3, 5, 3), (6, 6, 3), (1, 6, 2), (6, 1, 2),
                                       (40, 17, 2), (13, 30, 1), (64, 64, 1), (3, 0, 2), (0, 4, 2)])
@pytest.mark.parametrize("full,uv", [(False, True), (True, True), (False, False)])
def test_svd_kernel_matches_cpu(m, n, batch, full, uv, dev, native):
    a = _f(batch, m, n)
    if batch > 1 and m > 1 and n > 1:
        a[1, :, n // 2] = 0.0  # rank deficient (a zero column): u completed to an orthonormal basis
        a[1, m // 2, :] = 0.0
    if batch > 2 and m > 1 and n > 1:
        a[2] = 0.0  # nothing known: u is the identity's columns
    for got, want in _both(dev, _svd_call(a, m, n, batch, full, uv)):
        _close(got, want)  # u and vt themselves: the same signs


# ---- the ops and their gradients -----------------------------------------------------------------------

def _op_run(fn, inputs, device, grad):
    with lamina.device(device):
        ts = [lamina.Variable(x) for x in inputs]
        if not grad:
            out = fn(*ts)
            return [o.numpy() for o in (out if isinstance(out, (list, tuple)) else [out])]
        with lamina.GradientTape() as tape:
            out = fn(*ts)
            outs = out if isinstance(out, (list, tuple)) else [out]
            loss = 0.0
            for i, o in enumerate(outs):
                w = np.linspace(-1, 1 + i, int(np.prod(o.shape)), dtype=np.float32).reshape(o.shape)
                loss = loss + ops.sum(o * lamina.convert_to_tensor(w))
        return [g.numpy() for g in tape.gradient(loss, ts)]


_B, _N = 2, 6
OP_CASES = {
    "cholesky": (lambda a: ops.cholesky((a + ops.swapaxes(a, -1, -2)) * 0.5), [_spd(_B, _N)]),
    "cholesky_upper": (lambda a: ops.cholesky((a + ops.swapaxes(a, -1, -2)) * 0.5, upper=True), [_spd(_B, _N)]),
    "cholesky_inverse": (lambda a: ops.cholesky_inverse(ops.cholesky(a)), [_spd(_B, _N)]),
    "solve_triangular": (lambda a, b: ops.solve_triangular(a, b, lower=True) + ops.solve_triangular(a, b),
                         [_spd(_B, _N), _f(_B, _N, 3)]),
    "solve_triangular_vector": (lambda a, b: ops.solve_triangular(a, b, lower=True), [_spd(_B, _N), _f(_B, _N)]),
    "solve": (lambda a, b: ops.solve(a, b), [_spd(_B, _N) + _f(_B, _N, _N, scale=0.3), _f(_B, _N, 4)]),
    "solve_broadcast": (lambda a, b: ops.solve(a, b), [_spd(1, _N)[0] + _f(_N, _N, scale=0.3), _f(3, _N, 2)]),
    "inv": (lambda a: ops.inv(a), [_spd(_B, _N) + _f(_B, _N, _N, scale=0.3)]),
    "det": (lambda a: ops.det(a), [_f(3, 4, 4)]),
    "slogdet": (lambda a: ops.slogdet(a)[1] + ops.slogdet(a)[0], [_f(3, 5, 5)]),
    "logdet": (lambda a: ops.logdet(a), [_spd(_B, _N)]),
    "qr_tall": (lambda a: ops.qr(a), [_f(_B, 7, 4)]),
    "qr_wide": (lambda a: ops.qr(a), [_f(_B, 3, 5)]),
    "qr_complete_square": (lambda a: ops.qr(a, mode="complete"), [_f(_B, 5, 5)]),
    "eigh": (lambda a: ops.eigh(a), [_sym(_B, _N)]),
    "svd_reduced": (lambda a: ops.svd(a, full_matrices=False), [_f(_B, 7, 4)]),
    "svd_wide": (lambda a: ops.svd(a, full_matrices=False), [_f(_B, 3, 6)]),
    "svd_values": (lambda a: ops.svd(a, compute_uv=False), [_f(_B, 5, 3)]),
    "lstsq": (lambda a, b: ops.lstsq(a, b), [_f(7, 3), _f(7, 2)]),
    "pinv_matrix_rank": (lambda a: ops.pinv(a) + ops.cast(ops.matrix_rank(a), "float32"), [_f(5, 4)]),
    "norm_nuc_2": (lambda a: ops.stack([ops.norm(a, ord="nuc"), ops.norm(a, ord=2)]), [_f(5, 4)]),
}


@pytest.mark.parametrize("name", sorted(OP_CASES))
def test_ops_match_cpu(name, dev, native):
    fn, inputs = OP_CASES[name]
    for g, w in zip(_op_run(fn, inputs, dev, grad=False), _op_run(fn, inputs, "cpu:0", grad=False)):
        _close(g, w)


@pytest.mark.parametrize("name", sorted(n for n in OP_CASES if n != "pinv_matrix_rank"))
def test_op_gradients_match_cpu(name, dev, native):
    fn, inputs = OP_CASES[name]
    got, want = _op_run(fn, inputs, dev, grad=True), _op_run(fn, inputs, "cpu:0", grad=True)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        _close(g, w, rtol=1e-4, atol=1e-5)


# ---- errors on the data: the CPU's, naming the same matrix -------------------------------------------

def _indefinite_batch():
    a = _spd(4, 5)
    a[2, 3, 3] = -50.0   # not positive definite (minor of order 4)
    a[3, 0, 0] = np.nan  # NaN, in a later matrix: the error names matrix 2
    return a


def _singular_batch(n=5):
    a = _f(4, n, n) + np.eye(n, dtype=np.float32)
    a[1, :, 2] = 0.0  # singular
    a[3, :, 0] = 0.0
    return a


def _triangular_batch(n=5):
    a = _spd(3, n)
    a[1, 3, 3] = 0.0
    a[2, 0, 0] = 0.0
    return a


def _nan_batch(m, n, where):
    a = _f(3, m, n)
    a[(1,) + where] = np.inf
    a[(2, 0, 0)] = np.nan
    return a


# name -> (function, inputs): the inputs made once, the same on both devices
ERROR_CASES = {
    "cholesky": (ops.cholesky, [_indefinite_batch()]),
    "cholesky_upper": (lambda a: ops.cholesky(a, upper=True), [_indefinite_batch()]),
    "cholesky_nan": (ops.cholesky, [_indefinite_batch()[3]]),
    "solve_triangular": (lambda a, b: ops.solve_triangular(a, b, lower=True), [_triangular_batch(), _f(3, 5, 2)]),
    "solve_triangular_upper": (lambda a, b: ops.solve_triangular(a, b, lower=False), [_triangular_batch(), _f(3, 5)]),
    "solve": (ops.solve, [_singular_batch(), _f(4, 5, 3)]),
    "inv": (ops.inv, [_singular_batch(6)]),
    "eigh": (ops.eigh, [_nan_batch(4, 4, (3, 1))]),
    "svd": (ops.svd, [_nan_batch(3, 5, (0, 4))]),
    "svd_values": (lambda a: ops.svd(a, compute_uv=False), [_nan_batch(6, 2, (5, 1))]),
    "lstsq": (ops.lstsq, [_nan_batch(5, 3, (1, 1))[1], _f(5, 2)]),
}


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_errors_on_the_data_match_cpu(name, dev, native):
    fn, inputs = ERROR_CASES[name]

    def run(device):
        with lamina.device(device):
            out = fn(*[lamina.convert_to_tensor(x) for x in inputs])
            for o in (out if isinstance(out, (list, tuple)) else [out]):
                o.numpy()
    err = _same_error(run, dev)
    assert isinstance(err, ValueError) and "matrix" in str(err)
    with lamina.device(dev):  # the device still works after the error
        np.testing.assert_allclose(ops.inv(np.eye(3, dtype=np.float32) * 2.0).numpy(), np.eye(3) * 0.5)


def test_slogdet_gradient_of_a_singular_matrix_raises_as_on_cpu(dev, native):
    a = _singular_batch()

    def run(device):
        with lamina.device(device):
            x = lamina.Variable(a)
            with lamina.GradientTape() as tape:
                y = ops.sum(ops.slogdet(x)[1])
            tape.gradient(y, x)
    assert "matrix 1 of the batch is singular" in str(_same_error(run, dev))


ARG_ERRORS = {
    "cholesky_numel": lambda c: c.k.cholesky(c.buf(_f(2, 3, 3)), 2, 4, False, c.out((2, 3, 3))),
    "cholesky_dtype": lambda c: c.k.cholesky(c.buf(np.ones((3, 3), np.int32)), 1, 3, False, c.out((3, 3))),
    "cholesky_negative": lambda c: c.k.cholesky(c.buf(_f(3, 3)), -1, 3, False, c.out((3, 3))),
    "solve_triangular_b": lambda c: c.k.solve_triangular(c.buf(_f(3, 3)), c.buf(_f(3, 2)), 1, 3, 3, True, False,
                                                         c.out((3, 3))),
    "lu_factor_piv_dtype": lambda c: c.k.lu_factor(c.buf(_f(3, 4)), 1, 3, 4, c.out((3, 4)), c.out((3,))),
    "lu_factor_piv_numel": lambda c: c.k.lu_factor(c.buf(_f(3, 4)), 1, 3, 4, c.out((3, 4)), c.out((4,), np.int32)),
    "solve_out": lambda c: c.k.solve(c.buf(_f(3, 3)), c.buf(_f(3, 2)), 1, 3, 2, False, c.out((3, 3))),
    "inv_out_dtype": lambda c: c.k.inv(c.buf(_f(3, 3)), 1, 3, c.out((3, 3), np.int32)),
    "det_out": lambda c: c.k.det(c.buf(_f(2, 3, 3)), 2, 3, c.out((3,))),
    "slogdet_logabsdet": lambda c: c.k.slogdet(c.buf(_f(2, 3, 3)), 2, 3, c.out((2,)), c.out((1,))),
    "qr_r": lambda c: c.k.qr(c.buf(_f(5, 3)), 1, 5, 3, True, c.out((5, 5)), c.out((3, 3))),
    "eigh_w": lambda c: c.k.eigh(c.buf(_f(3, 3)), 1, 3, c.out((2,)), c.out((3, 3))),
    "svd_u_without_vt": lambda c: c.k.svd(c.buf(_f(4, 3)), 1, 4, 3, False, c.out((4, 3)), c.out((3,)), None),
    "svd_vt": lambda c: c.k.svd(c.buf(_f(4, 3)), 1, 4, 3, True, c.out((4, 4)), c.out((3,)), c.out((2, 3))),
    "svd_overflow": lambda c: c.k.svd(c.buf(_f(4, 3)), 1 << 40, 1 << 20, 1 << 20, False, None, c.out((3,)), None),
}


@pytest.mark.parametrize("name", sorted(ARG_ERRORS))
def test_argument_errors_match_cpu(name, dev):
    _same_error(lambda d: ARG_ERRORS[name](_Call(d)), dev)
