"""The packed GEMM (csrc/cpu/gemm*.cpp): every micro-kernel this CPU can run, 1 and 2 threads,
all transpose combinations, alpha/beta, strided operands, edge sizes around the register tiles
(avx512 12x32, avx2 6x16, generic 4x8) and cache blocks, the matrix-vector path (M or N = 1);
and ops.matmul forward and backward."""
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.backend import _cpu

from opcheck import check_forward, check_grad

KERNELS = ["avx512", "avx2", "generic"]


@pytest.fixture(params=KERNELS)
def kernel(request):
    name = request.param
    if name not in _cpu.gemm_kernels():
        pytest.skip(f"this CPU cannot run the {name} GEMM kernel (available: {_cpu.gemm_kernels()})")
    old = _cpu.gemm_kernel()
    _cpu.set_gemm_kernel(name)
    yield name
    _cpu.set_gemm_kernel(old)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = _cpu.num_threads()
    _cpu.set_num_threads(request.param)
    yield request.param
    _cpu.set_num_threads(old)


@pytest.fixture
def small_blocks():
    """Tiny cache blocks, so that small products cross many KC / MC / NC block edges."""
    _cpu._set_gemm_blocking(kc=16, mc=24, nc=64)
    yield
    _cpu._set_gemm_blocking(0, 0, 0)


def _buf(x):
    return _cpu.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _stored(rng, rows, cols, ld=None, fill=np.nan):
    """A rows x cols matrix stored with row stride ld (>= cols) in a flat buffer; the padding
    holds `fill`. Returns (logical matrix, flat storage)."""
    ld = cols if ld is None else ld
    flat = np.full(max(rows * ld, 1) if rows and cols else 0, fill, np.float32)
    m = rng.standard_normal((rows, cols)).astype(np.float32)
    if rows and cols:
        flat.reshape(rows, ld)[:, :cols] = m
    return m, flat


def _run(rng, M, N, K, ta, tb, alpha=1.0, beta=0.0, pad=(0, 0, 0)):
    """Runs _cpu.gemm on random operands (strided by pad) and checks it against float64 numpy,
    including that the padding of C is left untouched."""
    lda = (M if ta else K) + pad[0]
    ldb = (K if tb else N) + pad[1]
    ldc = N + pad[2]
    a, a_flat = _stored(rng, *((K, M) if ta else (M, K)), ld=lda)
    b, b_flat = _stored(rng, *((N, K) if tb else (K, N)), ld=ldb)
    c0, c_flat = _stored(rng, M, N, ld=ldc, fill=12345.0)
    if beta == 0.0:  # beta == 0 must not read C
        c_flat.reshape(M, ldc)[:, :N] = np.nan if M and N else 0
    ca = _buf(c_flat)
    kw = {} if pad == (0, 0, 0) else dict(lda=lda, ldb=ldb, ldc=ldc)
    _cpu.gemm(ta, tb, M, N, K, alpha, _buf(a_flat), _buf(b_flat), beta, ca, **kw)
    got_flat = _cpu.to_numpy(ca, [c_flat.size])
    opa = (a.T if ta else a).astype(np.float64)
    opb = (b.T if tb else b).astype(np.float64)
    cc = c0.astype(np.float64) if beta != 0.0 else np.zeros((M, N))
    want = alpha * (opa @ opb) + beta * cc
    # float32 accumulation error is a small fraction of sum_k |a_ik b_kj| (x |alpha|) + |beta c|;
    # a wrong or missing term is not (for K well below 1e5).
    mag = abs(alpha) * (np.abs(opa) @ np.abs(opb)) + abs(beta) * np.abs(cc)
    if M and N:
        got = got_flat.reshape(M, ldc)[:, :N]
        assert not np.isnan(got).any(), f"NaN in C for M={M} N={N} K={K} ta={ta} tb={tb}"
        err = np.abs(got - want)
        bad = err > 1e-5 * mag + 1e-30
        assert not bad.any(), (f"M={M} N={N} K={K} ta={ta} tb={tb} alpha={alpha} beta={beta} pad={pad}: "
                               f"{bad.sum()} wrong entries, first at {np.argwhere(bad)[0]}, "
                               f"max error {err.max():.3g}")
        if ldc > N:
            np.testing.assert_array_equal(got_flat.reshape(M, ldc)[:, N:], 12345.0,
                                          err_msg="gemm wrote outside the M x N block of C")


# Sizes around the tiles (MR 4/6/12, NR 16/32), the cache blocks and the thread split.
EDGE_SHAPES = [  # M, N, K
    (1, 1, 1), (1, 7, 3), (5, 1, 9), (2, 3, 1), (3, 5, 7),
    (4, 16, 8), (6, 16, 8), (12, 32, 16), (11, 31, 17), (13, 33, 15),
    (25, 65, 40), (24, 48, 255), (7, 17, 257), (37, 95, 129),
]
# Large enough to run on 2 threads; the first splits rows, the others split columns.
PARALLEL_SHAPES = [(700, 20, 30), (5, 1000, 100), (97, 129, 33), (130, 260, 300), (193, 97, 270)]


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_gemm_edge_shapes(kernel, threads, ta, tb, rng):
    for M, N, K in EDGE_SHAPES + PARALLEL_SHAPES:
        _run(rng, M, N, K, ta, tb)


# M == 1 or N == 1 take the matrix-vector path (no packing); the first two run on 2 threads.
GEMV_SHAPES = [(1, 1000, 300), (1000, 1, 300), (1, 130, 37), (77, 1, 33), (1, 1, 100), (1, 200, 1),
               (1, 17, 1000), (150, 1, 2)]


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_gemv_shapes(kernel, threads, ta, tb, rng):
    for M, N, K in GEMV_SHAPES:
        _run(rng, M, N, K, ta, tb)
        _run(rng, M, N, K, ta, tb, alpha=-1.5, beta=0.5, pad=(3, 2, 5))


# A row times a matrix streams the matrix's rows into up to 128 columns of registers, with several
# partial sums over the rows when the output is narrow: every width of register block, depths
# that leave a remainder of rows, leading dimensions wider than the block.
@pytest.mark.parametrize("tb", [False, True])
def test_gemv_row_every_output_width(kernel, tb, rng):
    for N in list(range(1, 34)) + [40, 47, 48, 63, 64, 65, 80, 96, 100, 112, 127, 128, 129, 200, 250]:
        for K in (1, 3, 9, 785):
            _run(rng, 1, N, K, False, tb)
        _run(rng, 1, N, 37, False, tb, alpha=2.0, beta=-1.0, pad=(1, 3, 2))


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_gemm_many_cache_blocks(kernel, threads, small_blocks, ta, tb, rng):
    for M, N, K in [(49, 130, 33), (25, 63, 16), (24, 64, 17), (130, 200, 70), (3, 300, 5)]:
        _run(rng, M, N, K, ta, tb, alpha=0.75, beta=-0.5)


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_gemm_few_columns_computed_transposed(kernel, threads, ta, tb, rng):
    """N <= the tile height (and M >= 2N) runs as C^T = op(B)^T op(A)^T, then transposed."""
    for M, N, K in [(40, 10, 784), (700, 3, 50), (24, 12, 5), (25, 2, 3), (4, 2, 9), (300, 6, 1000)]:
        _run(rng, M, N, K, ta, tb)
        _run(rng, M, N, K, ta, tb, alpha=-1.5, beta=0.5, pad=(3, 2, 5))


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_gemm_default_depth_blocks(kernel, threads, ta, tb, rng):
    """K around the default depth blocks (256, or 768 split into equal blocks on CPUs with a
    large L2): one block, two equal ones, a remainder, and depths not a multiple of 4."""
    for K in (255, 257, 767, 768, 769, 801, 1537, 2050):
        _run(rng, 14, 35, K, ta, tb, alpha=0.5, beta=1.0)


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_gemm_large_product_blocks(kernel, threads, ta, tb, rng):
    """Large products (M, N >= 512, K >= 1024) take 1024-deep, 96-row blocks on the AVX-512 tile
    with a large L2: a depth of one block, of two equal ones with a remainder, rows and columns
    that are not whole tiles or blocks."""
    for M, N, K in ((512, 512, 1024), (515, 530, 1030), (600, 513, 2051)):
        _run(rng, M, N, K, ta, tb, alpha=0.5, beta=1.0)


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_gemm_operands_over_8mb(kernel, ta, tb, rng):
    """Operands of 8 MB and more are prefetched ahead of their packing."""
    _run(rng, 13, 1030, 2050, ta, tb)   # B: 8.4 MB
    _run(rng, 2050, 9, 1030, ta, tb, alpha=0.5, beta=2.0)   # A: 8.4 MB


@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (1.5, 0.5), (-2.0, 1.0), (0.5, -3.0)])
def test_gemm_alpha_beta(kernel, threads, alpha, beta, rng):
    for (M, N, K), (ta, tb) in zip([(13, 33, 20), (130, 260, 30), (37, 70, 300), (5, 1000, 100)],
                                   itertools.product([False, True], repeat=2)):
        _run(rng, M, N, K, ta, tb, alpha=alpha, beta=beta)


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_gemm_strided_operands(kernel, threads, ta, tb, rng):
    for (M, N, K), pad in [((13, 33, 20), (3, 5, 7)), ((130, 260, 40), (1, 0, 17)),
                           ((40, 70, 300), (0, 9, 1)), ((1, 1, 1), (2, 2, 2))]:
        _run(rng, M, N, K, ta, tb, alpha=1.0, beta=0.0, pad=pad)
        _run(rng, M, N, K, ta, tb, alpha=2.0, beta=0.25, pad=pad)


def test_gemm_zero_sizes(kernel, rng):
    for M, N, K in [(0, 5, 3), (4, 0, 3), (0, 0, 0)]:
        _run(rng, M, N, K, False, False, beta=0.5)
    for beta in (0.0, 2.0):  # K == 0: C = beta * C, and beta == 0 gives zeros even over NaN
        c0 = np.full((3, 4), np.nan if beta == 0 else 1.5, np.float32)
        c = _buf(c0)
        _cpu.gemm(False, False, 3, 4, 0, 1.0, _buf(np.zeros(0)), _buf(np.zeros(0)), beta, c)
        np.testing.assert_array_equal(_cpu.to_numpy(c, [3, 4]), np.zeros((3, 4)) if beta == 0 else 3.0)


def test_gemm_alpha_zero_reads_neither_a_nor_b(kernel):
    a = np.full((3, 5), np.nan, np.float32)
    b = np.full((5, 4), np.nan, np.float32)
    c = _buf(np.full((3, 4), 2.0, np.float32))
    _cpu.gemm(False, False, 3, 4, 5, 0.0, _buf(a), _buf(b), 0.5, c)
    np.testing.assert_array_equal(_cpu.to_numpy(c, [3, 4]), 1.0)


def test_gemm_beta_zero_ignores_nan_in_c(kernel, threads, rng):
    for M, N, K in [(13, 33, 20), (200, 300, 50)]:
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        c = _buf(np.full((M, N), np.nan, np.float32))
        _cpu.gemm(False, False, M, N, K, 1.0, _buf(a), _buf(b), 0.0, c)
        got = _cpu.to_numpy(c, [M, N])
        assert not np.isnan(got).any()
        np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


def test_kernels_agree_on_a_larger_product(threads, rng):
    M, N, K = 300, 410, 520
    a = rng.standard_normal((K, M)).astype(np.float32)
    b = rng.standard_normal((N, K)).astype(np.float32)
    want = a.T.astype(np.float64) @ b.T.astype(np.float64)
    old = _cpu.gemm_kernel()
    try:
        for name in _cpu.gemm_kernels():
            _cpu.set_gemm_kernel(name)
            c = _buf(np.zeros((M, N), np.float32))
            _cpu.gemm(True, True, M, N, K, 1.0, _buf(a), _buf(b), 0.0, c)
            np.testing.assert_allclose(_cpu.to_numpy(c, [M, N]), want, rtol=1e-3, atol=1e-3, err_msg=name)
    finally:
        _cpu.set_gemm_kernel(old)


# ---- kernel choice ------------------------------------------------------------------------------
def test_kernel_choice_api():
    avail = _cpu.gemm_kernels()
    assert avail and avail[-1] == "generic" and set(avail) <= set(KERNELS)
    assert _cpu.gemm_kernel() in avail
    old = _cpu.gemm_kernel()
    try:
        _cpu.set_gemm_kernel("generic")
        assert _cpu.gemm_kernel() == "generic"
    finally:
        _cpu.set_gemm_kernel(old)
    with pytest.raises(ValueError, match="expected one of 'avx512', 'avx2', 'generic', received 'sse9'"):
        _cpu.set_gemm_kernel("sse9")
    assert _cpu.gemm_kernel() == old
    for name in set(KERNELS) - set(avail):
        with pytest.raises(ValueError, match=f"'{name}' kernel.*available here: "):
            _cpu.set_gemm_kernel(name)


def _kernel_in_subprocess(value):
    root = os.path.dirname(os.path.dirname(os.path.abspath(lamina.__file__)))
    env = dict(os.environ, LAMINA_GEMM_KERNEL=value, PYTHONPATH=root)
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from lamina.backend import _cpu; print(_cpu.gemm_kernel())")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip(), p.stderr


def test_env_var_forces_kernel():
    assert _kernel_in_subprocess("generic") == ("generic", "")
    best = _cpu.gemm_kernels()[0]
    name, err = _kernel_in_subprocess("bogus")
    assert name == best
    assert "RuntimeWarning" in err and "LAMINA_GEMM_KERNEL=bogus ignored" in err and "received 'bogus'" in err


# ---- argument checks of the 2-D entry point -------------------------------------------------------
def test_gemm_bad_arguments():
    a, b, c = _buf(np.ones((2, 3))), _buf(np.ones((3, 4))), _buf(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"a is stored M x K = 2 x 5 and needs 10 elements, but its buffer holds 6"):
        _cpu.gemm(False, False, 2, 4, 5, 1.0, a, b, 0.0, c)
    with pytest.raises(ValueError, match=r"b is stored N x K \(trans_b\) = 4 x 3 and needs 12 elements, but its buffer holds 11"):
        _cpu.gemm(False, True, 2, 4, 3, 1.0, a, _buf(np.ones(11)), 0.0, c)
    with pytest.raises(ValueError, match=r"ldc = 3 is smaller than the width 4 of c"):
        _cpu.gemm(False, False, 2, 4, 3, 1.0, a, b, 0.0, c, ldc=3)
    with pytest.raises(ValueError, match=r"a \(stored M x K = 2 x 3, lda = 4\) needs at least 7 elements, but its buffer holds 6"):
        _cpu.gemm(False, False, 2, 4, 3, 1.0, a, b, 0.0, c, lda=4)
    with pytest.raises(ValueError, match=r"expected M, N, K >= 0, received M=-1"):
        _cpu.gemm(False, False, -1, 4, 3, 1.0, a, b, 0.0, c)
    with pytest.raises(TypeError, match="gemm: expected b of dtype float32, received int32"):
        _cpu.gemm(False, False, 2, 4, 3, 1.0, a, _cpu.from_numpy(np.ones((3, 4), np.int32)), 0.0, c)


# ---- ops.matmul, which runs on the GEMM -------------------------------------------------------------
def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


MATMUL_SHAPES = [
    ((3, 4), (4, 5)),          # 2-D
    ((1, 1), (1, 1)),
    ((2, 3, 4), (2, 4, 5)),    # batched
    ((2, 3, 4), (4, 5)),       # batch x 2-D (one GEMM over all rows)
    ((3, 4), (2, 4, 5)),       # 2-D x batch
    ((2, 1, 3, 4), (3, 4, 2)),  # broadcast batch dims
    ((4,), (4, 5)),            # 1-D operands
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4,)),
    ((4,), (2, 4, 3)),
    ((0, 4), (4, 5)),          # size-0 dims
    ((3, 0), (0, 5)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=[f"{a}@{b}" for a, b in MATMUL_SHAPES])
def test_matmul_forward(kernel, sa, sb, rng):
    check_forward(ops.matmul, np.matmul, [_f32(rng, *sa), _f32(rng, *sb)], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("sa,sb", [s for s in MATMUL_SHAPES if 0 not in s[0] + s[1]],
                         ids=[f"{a}@{b}" for a, b in MATMUL_SHAPES if 0 not in a + b])
def test_matmul_gradient(kernel, sa, sb, rng):
    check_grad(ops.matmul, np.matmul, [_f32(rng, *sa), _f32(rng, *sb)], atol=2e-3, rtol=2e-3)


def test_matmul_large_forward_and_gradient_shapes(kernel, threads, rng):
    """Big enough for the thread split and several register tiles; gradients against numpy."""
    x, w, g = _f32(rng, 3, 70, 90), _f32(rng, 90, 130), _f32(rng, 3, 70, 130)
    xt, wt = lamina.Variable(x), lamina.Variable(w)
    with lamina.GradientTape() as tape:
        y = ops.matmul(xt, wt)
        loss = ops.sum(y * lamina.convert_to_tensor(g))
    gx, gw = tape.gradient(loss, [xt, wt])
    np.testing.assert_allclose(y.numpy(), x.astype(np.float64) @ w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx.numpy(), g.astype(np.float64) @ w.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw.numpy(), np.einsum("bmk,bmn->kn", x.astype(np.float64), g), rtol=1e-4, atol=1e-3)


def test_batched_matmul_kernel_with_transposes_and_accumulate(kernel, rng):
    """_cpu.matmul (the kernel behind ops.matmul and its backward) passes strides and trans flags
    to the GEMM for each batch, with broadcast batch dims, and accumulates on request."""
    for ta, tb in itertools.product([False, True], repeat=2):
        a = _f32(rng, 2, 1, *((5, 7) if ta else (7, 5)))
        b = _f32(rng, 3, *((9, 5) if tb else (5, 9)))
        want = np.matmul(np.swapaxes(a, -1, -2) if ta else a, np.swapaxes(b, -1, -2) if tb else b)
        prev = _f32(rng, *want.shape)
        for acc in (False, True):
            out = _buf(prev)
            _cpu.matmul(_buf(a), list(a.shape), _buf(b), list(b.shape), out, list(want.shape), ta, tb, acc)
            np.testing.assert_allclose(_cpu.to_numpy(out, list(want.shape)), want + (prev if acc else 0),
                                       rtol=1e-4, atol=1e-5)


def test_matmul_errors():
    a = lamina.convert_to_tensor(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        ops.matmul(a, np.ones((4, 5), np.float32))
    with pytest.raises(TypeError, match=r"int32.*\(3, 2\)"):
        ops.matmul(a, lamina.convert_to_tensor(np.ones((3, 2), np.int32)))
    with lamina.device("cpu:1"):
        other = lamina.convert_to_tensor(np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"different devices.*\(2, 3\).*\(3, 2\)"):
        ops.matmul(a, other)


BIAS_SHAPES = [((3, 4), (4, 5)), ((1, 784), (784, 10)), ((2, 3, 4), (4, 6)), ((0, 4), (4, 5)), ((3, 0), (0, 5)),
               ((70, 90), (90, 130))]


@pytest.mark.parametrize("sa,sb", BIAS_SHAPES, ids=[f"{a}@{b}" for a, b in BIAS_SHAPES])
def test_matmul_bias_equals_matmul_then_add(kernel, threads, sa, sb, rng):
    """matmul_bias (Dense's one kernel call): bit for bit matmul + add, forward and gradients."""
    from lamina.backend.linalg import matmul_bias
    x, w, b = _f32(rng, *sa), _f32(rng, *sb), _f32(rng, sb[1])
    g = _f32(rng, *(sa[:-1] + sb[1:]))
    results = []
    for fused in (True, False):
        xt, wt, bt = lamina.Variable(x), lamina.Variable(w), lamina.Variable(b)
        with lamina.GradientTape() as tape:
            y = matmul_bias(xt, wt, bt) if fused else ops.add(ops.matmul(xt, wt), bt)
            loss = ops.sum(y * lamina.convert_to_tensor(g))
        results.append([y.numpy()] + [t.numpy() for t in tape.gradient(loss, [xt, wt, bt])])
    for got, want in zip(*results):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(results[0][0], x.astype(np.float64) @ w + b, rtol=1e-4, atol=1e-4)


def test_matmul_bias_other_operands_go_through_matmul_and_add(rng):
    from lamina.backend.linalg import matmul_bias
    x, w = _f32(rng, 4), _f32(rng, 4, 3)
    np.testing.assert_allclose(matmul_bias(x, w, np.ones(3, np.float32)).numpy(), x @ w + 1, rtol=1e-5)  # 1-D x
    np.testing.assert_allclose(matmul_bias(_f32(rng, 2, 4), w, np.ones((2, 3), np.float32)).shape, (2, 3))  # 2-D bias
    with pytest.raises(ValueError, match="inner dimensions differ"):
        matmul_bias(_f32(rng, 2, 5), w, np.ones(3, np.float32))
    out = _buf(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"bias holds 4 elements; expected one per output column \(3\)"):
        _cpu.matmul(_buf(_f32(rng, 2, 4)), [2, 4], _buf(w), [4, 3], out, [2, 3], False, False, False,
                    _buf(np.ones(4, np.float32)))
    with pytest.raises(TypeError, match="bias"):
        _cpu.matmul(_buf(_f32(rng, 2, 4)), [2, 4], _buf(w), [4, 3], out, [2, 3], False, False, False,
                    _cpu.from_numpy(np.ones(3, np.int32)))
    acc = _buf(np.ones((2, 3), np.float32))  # accumulate: out + a @ b + bias
    a = _f32(rng, 2, 4)
    _cpu.matmul(_buf(a), [2, 4], _buf(w), [4, 3], acc, [2, 3], False, False, True, _buf(np.full(3, 2, np.float32)))
    np.testing.assert_allclose(_cpu.to_numpy(acc, [2, 3]), 1 + a @ w + 2, rtol=1e-5)


def test_optional_buffer_arguments_take_none_and_buffers():
    """Kernels' optional buffers (Buffer | None) accept None and a Buffer, and name anything else."""
    x, w = _buf(np.ones((2, 3), np.float32)), _buf(np.ones((3, 4), np.float32))
    out = _buf(np.zeros((2, 4), np.float32))
    _cpu.matmul(x, [2, 3], w, [3, 4], out, [2, 4], False, False, False, None)
    np.testing.assert_array_equal(_cpu.to_numpy(out, [2, 4]), np.full((2, 4), 3.0))
    _cpu.matmul(x, [2, 3], w, [3, 4], out, [2, 4], bias=_buf(np.arange(4, dtype=np.float32)))
    np.testing.assert_array_equal(_cpu.to_numpy(out, [2, 4]), 3.0 + np.arange(4)[None, :].repeat(2, 0))
    with pytest.raises(TypeError, match=r"Buffer \| None"):
        _cpu.matmul(x, [2, 3], w, [3, 4], out, [2, 4], False, False, False, "bias")
