"""Linear algebra under keras.ops.linalg's names: cholesky, cholesky_inverse, solve_triangular,
lu_factor, solve, inv, det, slogdet, logdet, qr, eigh, svd, lstsq, matrix_rank, pinv, norm.

Each decomposition is one batched kernel (csrc/cpu/linalg_decomp.cpp, double precision inside);
lstsq, pinv, matrix_rank, cholesky_inverse and the matrix norms are composed from them. Inputs
are float32 matrices (integer and bool inputs compute in float32) with any leading batch
dimensions, numpy.linalg's semantics. Gradients, by the standard matrix-calculus rules:
cholesky, solve_triangular, solve, inv, det, slogdet, qr (reduced), eigh (distinct eigenvalues)
and svd (reduced, distinct non-zero singular values); the composed ops follow from those.

Undefined cases raise ValueError naming the op and the matrix: a singular matrix for solve and
inv, an indefinite one for cholesky, NaN or infinity for eigh and svd. det and slogdet of a
singular matrix give numpy's 0 and (0, -inf).
"""
import builtins
import math as _pymath

import numpy as np

from . import dtypes
from .autodiff import needs_grad, record
from .linalg import matmul
from .manipulation import concatenate, expand_dims, flip, reshape, swapaxes, tril, triu
from .math import (_as_tensor, abs, add, broadcast_shapes, broadcast_to, cast, check_same_device, count_nonzero,
                   cumprod, equal, greater, max, min, multiply, negative, ones_like, power, reciprocal,
                   sqrt, square, subtract, sum, where)
from .rnn import _record_multi
from .tensor import convert_to_tensor, empty

__all__ = ["cholesky", "cholesky_inverse", "solve_triangular", "lu_factor", "solve", "inv", "det", "slogdet",
           "logdet", "qr", "eigh", "svd", "lstsq", "matrix_rank", "pinv", "norm"]

_F32 = dtypes.FLOAT32
_EPS32 = float(np.finfo(np.float32).eps)
_EPS64 = float(np.finfo(np.float64).eps)


# ---- helpers ----------------------------------------------------------------------------------------

def _matrix(x, op, name="a"):
    """x as a float32 tensor with at least 2 dimensions."""
    x = _as_tensor(x, op)
    if x.dtype != _F32:
        x = cast(x, _F32)
    if x.ndim < 2:
        raise ValueError(f"{op}: expected a matrix or a batch of matrices (at least 2 dimensions) for {name}, "
                         f"received shape {x.shape}")
    return x


def _square(x, op, name="a"):
    x = _matrix(x, op, name)
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{op}: expected square matrices, {name} has shape {x.shape} (its last two dimensions "
                         f"{x.shape[-2]} x {x.shape[-1]} differ)")
    return x


def _batch(x):
    return _pymath.prod(x.shape[:-2])


def _mT(x):
    return swapaxes(x, -1, -2)


def _run(op, shape, hint, kernel, *args):
    """Runs a kernel; its ValueError (a singular or indefinite matrix...) gains the input shape."""
    try:
        kernel(*args)
    except ValueError as e:
        msg = str(e)
        kernel_op = msg.split(":", 1)[0]
        if kernel_op != op:  # an op built on another (lstsq, matrix_rank on svd): name the one called
            msg = f"{op}: {msg}"
        raise ValueError(f"{msg} (input of shape {shape}; the matrices of a batch are numbered in row-major order "
                         f"of the leading dimensions){hint}") from None


def _eye_like(x, n=None):
    """The n x n identity (default: x's last dimension), on x's device (broadcasts against x)."""
    return convert_to_tensor(np.eye(x.shape[-1] if n is None else n, dtype=np.float32), device=x.device)


def _diag_part_matrix(x):
    """x with everything off the diagonal of its last two dimensions zeroed."""
    return multiply(x, _eye_like(x))


def _sym_to_triangle(g, lower):
    """The gradient with respect to the triangle an op reads (lower or upper) of a function of the
    symmetric matrix built from that triangle, given g, its gradient as a function of a general
    matrix: the triangle of g + g^T off the diagonal, g's diagonal on it."""
    s = add(g, _mT(g))
    off = tril(s, -1) if lower else triu(s, 1)
    return add(off, _diag_part_matrix(g))


def _vector_rhs(op, a, b, is_vector):
    """b as (..., n, k) for a of shape (..., n, n); both broadcast to a common batch shape."""
    n = a.shape[-1]
    bm = expand_dims(b, -1) if is_vector else b
    if bm.shape[-2] != n:
        raise ValueError(f"{op}: a of shape {a.shape} and b of shape {b.shape} do not fit: b needs {n} rows "
                         f"(b's {'last' if is_vector else 'second-to-last'} dimension), it has {bm.shape[-2]}")
    try:
        batch = broadcast_shapes(a.shape[:-2], bm.shape[:-2], op)
    except ValueError:
        raise ValueError(f"{op}: the batch dimensions of a (shape {a.shape}) and b (shape {b.shape}) do not "
                         "broadcast together") from None
    return broadcast_to(a, batch + a.shape[-2:]), broadcast_to(bm, batch + bm.shape[-2:])


# ---- raw kernel calls (no gradient) ------------------------------------------------------------------

def _trisolve(a, b, lower, transpose, op="solve_triangular"):
    """a^-1 b (transpose: a^-T b) for triangular a (..., n, n) and b (..., n, k), same batch."""
    out = empty(b.shape, _F32, b.device)
    _run(op, a.shape, "", a.device.kernels.solve_triangular, a._buf, b._buf, _batch(a), a.shape[-1],
         b.shape[-1], bool(lower), bool(transpose), out._buf)
    return out


_SINGULAR_HINT = "; for a singular or ill-conditioned system use lstsq or pinv"


def _solve_raw(a, b, transpose=False, op="solve"):
    out = empty(b.shape, _F32, b.device)
    _run(op, a.shape, _SINGULAR_HINT, a.device.kernels.solve, a._buf, b._buf, _batch(a), a.shape[-1],
         b.shape[-1], bool(transpose), out._buf)
    return out


def _inv_raw(a, op="inv"):
    out = empty(a.shape, _F32, a.device)
    _run(op, a.shape, _SINGULAR_HINT, a.device.kernels.inv, a._buf, _batch(a), a.shape[-1], out._buf)
    return out


def _det_raw(a):
    out = empty(a.shape[:-2], _F32, a.device)
    a.device.kernels.det(a._buf, _batch(a), a.shape[-1], out._buf)
    return out


def _svd_raw(a, full_matrices=False, compute_uv=True, op="svd"):
    m, n = a.shape[-2:]
    k = builtins.min(m, n)
    batch = a.shape[:-2]
    s = empty(batch + (k,), _F32, a.device)
    u = vt = None
    if compute_uv:
        u = empty(batch + (m, m if full_matrices else k), _F32, a.device)
        vt = empty(batch + (n if full_matrices else k, n), _F32, a.device)
    _run(op, a.shape, "", a.device.kernels.svd, a._buf, _batch(a), m, n, bool(full_matrices),
         u._buf if u is not None else None, s._buf, vt._buf if vt is not None else None)
    return u, s, vt


# ---- cholesky and triangular solves --------------------------------------------------------------------

def cholesky(x, upper=False):
    """The Cholesky factor of symmetric positive-definite matrices: lower L with a = L L^T, read
    from a's lower triangle (upper=True: upper U with a = U^T U, from a's upper triangle).
    ValueError for a matrix that is not positive definite."""
    a = _square(x, "cholesky")
    n = a.shape[-1]
    out = empty(a.shape, _F32, a.device)
    _run("cholesky", a.shape, "; the matrix must be symmetric positive definite", a.device.kernels.cholesky,
         a._buf, _batch(a), n, bool(upper), out._buf)
    if needs_grad(a):
        record(out, (a,), lambda g, need: (_cholesky_grad(out, g, bool(upper)),))
    return out


def _cholesky_grad(f, gf, upper):
    # a = L L^T: the symmetric gradient is L^-T Phi(L^T Lbar) L^-1, Phi = lower triangle with
    # half the diagonal (Murray 2016); then restricted to the triangle the kernel reads.
    L, Lbar = (_mT(f), _mT(gf)) if upper else (f, gf)
    p = matmul(_mT(L), Lbar)
    p = subtract(tril(p), multiply(_diag_part_matrix(p), 0.5))
    y = _trisolve(L, p, lower=True, transpose=True)                 # L^-T P
    g = _mT(_trisolve(L, _mT(y), lower=True, transpose=True))       # L^-T P L^-1
    return _sym_to_triangle(g, lower=not upper)


def cholesky_inverse(x, upper=False):
    """The inverse of the matrix whose Cholesky factor is `a` (lower, or upper when upper=True):
    (L L^T)^-1 or (U^T U)^-1."""
    a = _square(x, "cholesky_inverse")
    ident = broadcast_to(_eye_like(a), a.shape)
    inv_chol = solve_triangular(a, ident, lower=not upper)
    return matmul(inv_chol, _mT(inv_chol)) if upper else matmul(_mT(inv_chol), inv_chol)


def solve_triangular(a, b, lower=False):
    """x with a x = b for triangular a (only its lower or upper triangle is read): a (..., n, n),
    b (..., n, k), or (..., n) when b has one dimension fewer than a. Batch dimensions
    broadcast. ValueError when a has a zero on its diagonal."""
    a = _square(a, "solve_triangular")
    b = _as_tensor(b, "solve_triangular")
    b = b if b.dtype == _F32 else cast(b, _F32)
    check_same_device("solve_triangular", a, b)
    if b.ndim == 0:
        raise ValueError(f"solve_triangular: b must have at least 1 dimension, received a scalar (a has shape {a.shape})")
    is_vector = b.ndim == a.ndim - 1
    ab, bb = _vector_rhs("solve_triangular", a, b, is_vector)
    lower = bool(lower)
    x = _trisolve(ab, bb, lower, False)
    if needs_grad(ab, bb):
        def bw(g, need):
            gb = _trisolve(ab, g, lower, True)
            ga = None
            if need[0]:
                ga = negative(matmul(gb, _mT(x)))
                ga = tril(ga) if lower else triu(ga)
            return ga, gb if need[1] else None
        record(x, (ab, bb), bw)
    return reshape(x, x.shape[:-1]) if is_vector else x


# ---- LU: lu_factor, solve, inv, det, slogdet ------------------------------------------------------------

def lu_factor(x):
    """LU factorization with partial pivoting (scipy.linalg.lu_factor) of (..., m, n) matrices:
    (lu, piv), lu holding U and the unit-lower L below its diagonal, piv (int32, min(m, n)) the
    row interchanged with each row. A singular matrix is factored (U has a zero pivot)."""
    a = _matrix(x, "lu_factor")
    m, n = a.shape[-2:]
    lu = empty(a.shape, _F32, a.device)
    piv = empty(a.shape[:-2] + (builtins.min(m, n),), dtypes.INT32, a.device)
    a.device.kernels.lu_factor(a._buf, _batch(a), m, n, lu._buf, piv._buf)
    return lu, piv


def solve(a, b):
    """x with a x = b: a (..., n, n), b (..., n, k) or (n,) (numpy 2's rule: b is a vector only
    when it has one dimension). Batch dimensions broadcast. ValueError for a singular a."""
    a = _square(a, "solve")
    b = _as_tensor(b, "solve")
    b = b if b.dtype == _F32 else cast(b, _F32)
    check_same_device("solve", a, b)
    if b.ndim == 0:
        raise ValueError(f"solve: b must have at least 1 dimension, received a scalar (a has shape {a.shape})")
    is_vector = b.ndim == 1
    ab, bb = _vector_rhs("solve", a, b, is_vector)
    x = _solve_raw(ab, bb)
    if needs_grad(ab, bb):
        def bw(g, need):
            gb = _solve_raw(ab, g, transpose=True)
            return (negative(matmul(gb, _mT(x))) if need[0] else None), (gb if need[1] else None)
        record(x, (ab, bb), bw)
    return reshape(x, x.shape[:-1]) if is_vector else x


def inv(x):
    """The inverse of square matrices (..., n, n). ValueError for a singular matrix."""
    a = _square(x, "inv")
    y = _inv_raw(a)
    if needs_grad(a):
        record(y, (a,), lambda g, need: (negative(matmul(_mT(y), matmul(g, _mT(y)))),))
    return y


def _cofactor(a):
    """adj(a)^T, det(a) a^-T for invertible a, from the SVD so that it is defined (and exact in
    the limit) for singular a too: det(U) det(V^T) U diag(prod_{j != i} s_j) V^T."""
    u, s, vt = _svd_raw(a, full_matrices=True, op="det")
    ones = ones_like(s[..., :1])
    left = concatenate([ones, cumprod(s, axis=-1)[..., :-1]], axis=-1)
    right = flip(concatenate([ones, cumprod(flip(s, -1), axis=-1)[..., :-1]], axis=-1), -1)
    pi = multiply(left, right)
    sign = multiply(_det_raw(u), _det_raw(vt))
    return multiply(matmul(multiply(u, expand_dims(pi, -2)), vt), expand_dims(sign, (-1, -2)))


def det(x):
    """The determinant of square matrices (..., n, n), in double precision from the LU factors.
    The gradient is the cofactor matrix (defined for singular matrices too)."""
    a = _square(x, "det")
    out = _det_raw(a)
    if needs_grad(a):
        record(out, (a,), lambda g, need: (multiply(expand_dims(g, (-1, -2)), _cofactor(a)),))
    return out


def slogdet(x):
    """(sign, log|det|) of square matrices (..., n, n): no overflow for large determinants; a
    singular matrix gives (0, -inf). The gradient of log|det| is a^-T (ValueError for a
    singular matrix); sign has none."""
    a = _square(x, "slogdet")
    sign = empty(a.shape[:-2], _F32, a.device)
    logabs = empty(a.shape[:-2], _F32, a.device)
    a.device.kernels.slogdet(a._buf, _batch(a), a.shape[-1], sign._buf, logabs._buf)
    if needs_grad(a):
        record(logabs, (a,), lambda g, need: (multiply(expand_dims(g, (-1, -2)), _mT(_inv_raw(a, "slogdet"))),))
    return sign, logabs


def logdet(x):
    """log|det(x)| of square matrices (keras.ops.logdet, for positive-definite x: log det x)."""
    _square(x, "logdet")
    return slogdet(x)[1]


# ---- QR, eigh, SVD ------------------------------------------------------------------------------------

def qr(x, mode="reduced"):
    """Householder QR of (..., m, n) matrices: (q, r) with x = q r, q orthonormal columns and r
    upper triangular; mode "reduced": q (..., m, k), r (..., k, n), k = min(m, n); "complete":
    q (..., m, m), r (..., m, n). Signs as numpy.linalg.qr (LAPACK)."""
    if mode not in ("reduced", "complete"):
        raise ValueError(f"qr: `mode` argument value not supported. Expected one of {{'reduced', 'complete'}}. "
                         f"Received: mode={mode!r}")
    a = _matrix(x, "qr")
    m, n = a.shape[-2:]
    k = builtins.min(m, n)
    complete = mode == "complete"
    q = empty(a.shape[:-2] + (m, m if complete else k), _F32, a.device)
    r = empty(a.shape[:-2] + (m if complete else k, n), _F32, a.device)
    a.device.kernels.qr(a._buf, _batch(a), m, n, complete, q._buf, r._buf)
    if needs_grad(a):
        def bw(grads, need):
            gq, gr = grads
            if complete and m > n:
                if gq is not None:
                    raise ValueError(f"qr: the gradient with respect to q of mode='complete' is not defined for a "
                                     f"tall matrix (shape {a.shape}): its last {m - n} columns are arbitrary; use "
                                     "mode='reduced'")
                return (_qr_grad(a, q[..., :, :n], r[..., :n, :], None, None if gr is None else gr[..., :n, :]),)
            return (_qr_grad(a, q, r, gq, gr),)
        _record_multi((q, r), (a,), bw)
    return q, r


def _qr_grad_square(q, r, gq, gr):
    # a = q r with r square (k x k): abar = [gq + q copyltu(M)] r^-T, M = r gr^T - gq^T q, where
    # copyltu mirrors M's lower triangle onto its upper one.
    mm = None
    if gr is not None:
        mm = matmul(r, _mT(gr))
    if gq is not None:
        t = matmul(_mT(gq), q)
        mm = negative(t) if mm is None else subtract(mm, t)
    low = tril(mm, -1)
    sym = add(add(low, _mT(low)), _diag_part_matrix(mm))
    b = matmul(q, sym)
    if gq is not None:
        b = add(b, gq)
    return _mT(_trisolve(r, _mT(b), lower=False, transpose=False, op="qr"))


def _qr_grad(a, q, r, gq, gr):
    m, n = a.shape[-2:]
    if m >= n:
        return _qr_grad_square(q, r, gq, gr)
    # wide: a = [x | y], r = [u | v] with x = q u (square QR) and y = q v
    y = a[..., :, m:]
    gu = None if gr is None else gr[..., :, :m]
    gv = None if gr is None else gr[..., :, m:]
    gq2 = gq
    if gv is not None:
        t = matmul(y, _mT(gv))
        gq2 = t if gq2 is None else add(gq2, t)
    gx = _qr_grad_square(q, r[..., :, :m], gq2, gu)
    gy = matmul(q, gv) if gv is not None else multiply(y, 0.0)
    return concatenate([gx, gy], axis=-1)


def _inverse_gaps(w, squared=False):
    """F[..., i, j] = 1 / (w_j - w_i) (or 1 / (w_j^2 - w_i^2)) off the diagonal, 0 on it."""
    v = square(w) if squared else w
    d = subtract(expand_dims(v, -2), expand_dims(v, -1))
    zero = equal(d, 0.0)
    return where(zero, 0.0, reciprocal(where(zero, 1.0, d)))


def eigh(x):
    """Eigenvalues (ascending) and eigenvectors (columns) of symmetric matrices (..., n, n), read
    from the lower triangle as numpy.linalg.eigh: (w, v) with x v = v diag(w). Cyclic Jacobi in
    double precision. The gradient assumes distinct eigenvalues."""
    a = _square(x, "eigh")
    n = a.shape[-1]
    w = empty(a.shape[:-1], _F32, a.device)
    v = empty(a.shape, _F32, a.device)
    _run("eigh", a.shape, "", a.device.kernels.eigh, a._buf, _batch(a), n, w._buf, v._buf)
    if needs_grad(a):
        def bw(grads, need):
            gw, gv = grads
            inner = None
            if gv is not None:
                inner = multiply(_inverse_gaps(w), matmul(_mT(v), gv))
            if gw is not None:
                dg = multiply(expand_dims(gw, -2), _eye_like(a))
                inner = dg if inner is None else add(inner, dg)
            g = matmul(v, matmul(inner, _mT(v)))
            return (_sym_to_triangle(g, lower=True),)
        _record_multi((w, v), (a,), bw)
    return w, v


def svd(x, full_matrices=True, compute_uv=True):
    """Singular value decomposition of (..., m, n) matrices by one-sided Jacobi in double
    precision: (u, s, vh) with x = u diag(s) vh, s descending, or s alone when compute_uv is
    False; full_matrices: u (..., m, m), vh (..., n, n), else (..., m, k), (..., k, n). The
    gradient of s is always defined; that of u and vh assumes distinct non-zero singular values
    (and full_matrices=False, or a square matrix)."""
    a = _matrix(x, "svd")
    m, n = a.shape[-2:]
    full = bool(full_matrices)
    u, s, vt = _svd_raw(a, full, bool(compute_uv))
    if not compute_uv:
        if needs_grad(a):
            uu, _, vv = _svd_raw(a, False, True)
            record(s, (a,), lambda g, need: (_svd_grad(uu, s, vv, None, g, None),))
        return s
    if needs_grad(a):
        k = builtins.min(m, n)

        def bw(grads, need):
            gu, gs, gvt = grads
            if full and m != n:
                if gu is not None or gvt is not None:
                    raise ValueError(f"svd: the gradient with respect to u and vh of full_matrices=True is not "
                                     f"defined for a non-square matrix (shape {a.shape}): its extra singular vectors "
                                     "are arbitrary; use full_matrices=False")
                return (_svd_grad(u[..., :, :k], s, vt[..., :k, :], None, gs, None),)
            return (_svd_grad(u, s, vt, gu, gs, gvt),)
        _record_multi((u, s, vt), (a,), bw)
    return u, s, vt


def _svd_grad(u, s, vt, gu, gs, gvt):
    # Townsend (2016), "Differentiating the singular value decomposition", reduced SVD:
    # abar = U [diag(sbar) + (F o (U^T Ubar - Ubar^T U)) S + S (F o (V^T Vbar - Vbar^T V))] V^T
    #        + (I - U U^T) Ubar S^-1 V^T + U S^-1 Vbar^T (I - V V^T),  F_ij = 1 / (s_j^2 - s_i^2).
    inner = None
    if gs is not None:
        inner = multiply(expand_dims(gs, -2), _eye_like(s))   # diag(sbar)
    f = _inverse_gaps(s, squared=True) if (gu is not None or gvt is not None) else None
    sinv = None
    if gu is not None or gvt is not None:
        sinv = reciprocal(s)
    extra = None
    if gu is not None:
        utgu = matmul(_mT(u), gu)
        j = multiply(multiply(f, subtract(utgu, _mT(utgu))), expand_dims(s, -2))
        inner = j if inner is None else add(inner, j)
        if u.shape[-2] > u.shape[-1]:   # (I - U U^T) Ubar S^-1 V^T
            proj = subtract(gu, matmul(u, utgu))
            extra = matmul(multiply(proj, expand_dims(sinv, -2)), vt)
    if gvt is not None:
        v, gv = _mT(vt), _mT(gvt)
        vtgv = matmul(vt, gv)
        kk = multiply(expand_dims(s, -1), multiply(f, subtract(vtgv, _mT(vtgv))))
        inner = kk if inner is None else add(inner, kk)
        if vt.shape[-1] > vt.shape[-2]:   # U S^-1 Vbar^T (I - V V^T)
            proj = subtract(gvt, matmul(matmul(gvt, v), vt))
            t = matmul(u, multiply(expand_dims(sinv, -1), proj))
            extra = t if extra is None else add(extra, t)
    if inner is None:
        out = extra
    else:
        out = matmul(u, matmul(inner, vt))
        if extra is not None:
            out = add(out, extra)
    return out


# ---- composed: lstsq, pinv, matrix_rank, norm -------------------------------------------------------------

def _named(fn, op, *args, **kwargs):
    """fn(*args, **kwargs), its ValueError naming `op` (an op built on another one)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        raise ValueError(f"{op}: {e}") from None


def _pinv_from_svd(u, s, vt, rcond):
    cutoff = multiply(max(s, axis=-1, keepdims=True), rcond) if s.shape[-1] else s
    large = greater(s, cutoff)
    sinv = where(large, reciprocal(where(large, s, 1.0)), 0.0)
    return matmul(_mT(vt), multiply(expand_dims(sinv, -1), _mT(u)))


def _rcond(value, op, default):
    if value is None:
        return default
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: rcond must be a number, received {value!r}")
    return float(value)


def pinv(x, rcond=None):
    """The Moore-Penrose pseudo-inverse of (..., m, n) matrices, from the SVD; singular values
    at most rcond * max(s) count as zero (rcond default 1e-15, as numpy.linalg.pinv)."""
    a = _matrix(x, "pinv")
    u, s, vt = _named(svd, "pinv", a, full_matrices=False)
    return _pinv_from_svd(u, s, vt, _rcond(rcond, "pinv", 1e-15))


def lstsq(a, b, rcond=None):
    """The least-squares solution x of a x = b (minimum norm when a is rank deficient): a
    (..., m, n), b (..., m, k) or (m,); from the SVD, singular values at most rcond * max(s)
    counting as zero (rcond default: machine epsilon (double) * max(m, n), as numpy.linalg.lstsq)."""
    a = _matrix(a, "lstsq")
    b = _as_tensor(b, "lstsq")
    b = b if b.dtype == _F32 else cast(b, _F32)
    check_same_device("lstsq", a, b)
    m, n = a.shape[-2:]
    if b.ndim == 0:
        raise ValueError(f"lstsq: b must have at least 1 dimension, received a scalar (a has shape {a.shape})")
    is_vector = b.ndim == 1
    bm = expand_dims(b, -1) if is_vector else b
    if bm.shape[-2] != m:
        raise ValueError(f"lstsq: a of shape {a.shape} and b of shape {b.shape} do not fit: b needs {m} rows, "
                         f"it has {bm.shape[-2]}")
    u, s, vt = _named(svd, "lstsq", a, full_matrices=False)
    x = matmul(_pinv_from_svd(u, s, vt, _rcond(rcond, "lstsq", _EPS64 * builtins.max(m, n))), bm)
    return reshape(x, x.shape[:-1]) if is_vector else x


def matrix_rank(x, tol=None):
    """The number of singular values above tol (default: max(s) * max(m, n) * float32 epsilon, as
    numpy.linalg.matrix_rank), as int32."""
    a = _as_tensor(x, "matrix_rank")
    if a.ndim < 2:
        raise ValueError(f"matrix_rank: expected input to have rank >= 2, received input with shape {a.shape}")
    a = _matrix(a, "matrix_rank")
    _, s, _ = _svd_raw(a, compute_uv=False, op="matrix_rank")
    if tol is None:
        m, n = a.shape[-2:]
        cutoff = multiply(max(s, axis=-1, keepdims=True), builtins.max(m, n) * _EPS32) if s.shape[-1] else s
    else:   # a number, or one per matrix of the batch
        cutoff = expand_dims(cast(_as_tensor(tol, "matrix_rank"), _F32), -1)
    return cast(count_nonzero(greater(s, cutoff), axis=-1), dtypes.INT32)


def norm(x, ord=None, axis=None, keepdims=False):
    """numpy.linalg.norm: vector norms (ord None/2, 1, inf, -inf, 0, any p) along one axis, matrix
    norms (None/'fro', 'nuc', 1, -1, 2, -2, inf, -inf) over two axes; axis=None takes the 2-norm
    of the flattened tensor when ord is None, else the vector or matrix norm of a 1-D or 2-D x.
    Integer inputs compute in float32."""
    x = _as_tensor(x, "norm")
    if x.dtype != _F32:
        x = cast(x, _F32)
    nd = x.ndim
    if axis is None:
        if ord is None:
            r = sqrt(sum(square(x)))
            return reshape(r, (1,) * nd) if keepdims else r
        if nd not in (1, 2):
            raise ValueError(f"norm: ord={ord!r} with axis=None needs a 1-D or 2-D input, received shape {x.shape}; "
                             "pass axis")
        axes = tuple(range(nd))
    else:
        from . import validation
        axes = validation.axes(axis, builtins.max(nd, 1), "norm", "axis", x.shape)
        kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        validation.check_alloc("norm", kept, _F32, x.device)  # the result (and its intermediates): named here
    if len(axes) == 1:
        return _vector_norm(x, ord, axes[0], keepdims)
    if len(axes) == 2:
        return _matrix_norm(x, ord, axes, keepdims)
    raise ValueError(f"norm: axis must name 1 or 2 axes, received axis={axis!r} for shape {x.shape}")


def _vector_norm(x, ord, ax, keepdims):
    if ord is None or ord == 2:
        return sqrt(sum(square(x), axis=ax, keepdims=keepdims))
    if isinstance(ord, str):
        raise ValueError(f"norm: ord={ord!r} is a matrix norm; a vector norm takes a number (None, 1, 2, inf, -inf, "
                         "0, p)")
    if ord == np.inf:   # 0 for an empty axis, as numpy (a norm is >= 0)
        return max(abs(x), axis=ax, keepdims=keepdims, initial=0.0)
    if ord == -np.inf:
        return min(abs(x), axis=ax, keepdims=keepdims)
    if ord == 0:
        return cast(count_nonzero(x, axis=ax), _F32) if not keepdims else \
            expand_dims(cast(count_nonzero(x, axis=ax), _F32), ax)
    if ord == 1:
        return sum(abs(x), axis=ax, keepdims=keepdims)
    p = float(ord)
    return power(sum(power(abs(x), p), axis=ax, keepdims=keepdims), 1.0 / p)


def _matrix_norm(x, ord, axes, keepdims):
    r, c = axes
    if r == c:
        raise ValueError(f"norm: the two axes of a matrix norm must differ, received {axes}")
    if ord is None or ord == "fro":
        out = sqrt(sum(square(x), axis=axes, keepdims=True))
    elif ord == "nuc" or ord in (2, -2):
        from .manipulation import moveaxis
        xm = moveaxis(x, (r, c), (-2, -1))
        s = svd(xm, compute_uv=False)
        v = sum(s, axis=-1) if ord == "nuc" else (max(s, axis=-1) if ord == 2 else min(s, axis=-1))
        out = reshape(v, tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
    elif ord in (1, -1):
        cs = sum(abs(x), axis=r, keepdims=True)
        out = (max if ord == 1 else min)(cs, axis=c, keepdims=True)
    elif ord in (np.inf, -np.inf):
        rs = sum(abs(x), axis=c, keepdims=True)
        out = (max if ord == np.inf else min)(rs, axis=r, keepdims=True)
    else:
        raise ValueError(f"norm: invalid ord={ord!r} for a matrix norm; expected None, 'fro', 'nuc', 1, -1, 2, -2, "
                         "inf or -inf")
    if keepdims:
        return out
    return reshape(out, tuple(d for i, d in enumerate(x.shape) if i not in axes))


# errors raised by the ops these are built on (solve_triangular inside cholesky_inverse, ...) name
# the op that was called
from . import validation as _validation  # noqa: E402
_validation.name_errors(globals(), __all__)
