"""The kernels of csrc/cuda/misc.cu on a device under test (tests/gpu/conftest.py) against cpu:0:
categorical cross-entropy on dense targets and binary cross-entropy (forward, and gradients with
respect to the output, the target, both or neither), one_hot, take_along_axis and its
deterministic gradient, count_nonzero / nonzero, triangles, arange / linspace and
batch_transpose. The kernels are called directly (options and edge cases the ops do not reach,
the kernels' argument errors) and through the ops with their gradients. Integer results, indices,
ranges, gathers and scatter sums (summed in the CPU's order) must equal the CPU's bit for bit;
the losses agree to float32 rounding."""
import importlib

import numpy as np
import pytest

import lamina
from lamina import ops

from device_calls import KernelCall as _Call, device_of as _device, run_op as _run, same_error as _same_error

_dm = importlib.import_module("lamina.backend.device")

R = np.random.default_rng(31)
_NP_DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64, "bool": np.bool_, "int8": np.int8}


def _f(*shape):
    return R.normal(size=shape).astype(np.float32)


def _slow_emulator(dev):
    return dev.kind == "gpu" and _dm.CUDA_EMULATED


def _close(got, want, rtol=2e-6, atol=1e-6):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(1.0, float(np.abs(want[np.isfinite(want)]).max(
        initial=0))))


def _probs(outer, K, inner):
    p = np.abs(_f(outer, K, inner)) + 0.05
    if K > 2 and outer > 1:
        p[0, 1] = 0.0            # q = 0: below eps, clipped (zero gradient through the clip)
        p[1, :] = 1e-9
        p[1, 0] = 5.0            # q ~ 1: above 1 - eps, clipped
    return p


def _targets(outer, K, inner):
    t = np.abs(_f(outer, K, inner))
    return t / np.maximum(t.sum(axis=1, keepdims=True), 1e-6)


def _xent_dense(device, x, t, logits, eps, grad_mask):
    outer, K, inner = x.shape
    c = _Call(device)
    loss, aux = c.out((outer, inner)), c.out((outer, inner))
    xb, tb = c.buf(x), c.buf(t)
    c.k.xent_dense(xb, tb, outer, K, inner, logits, eps, loss, aux)
    g = c.buf(np.linspace(-1.5, 2.0, outer * inner, dtype=np.float32).reshape(outer, inner))
    dx = c.out(x.shape) if grad_mask[0] else c.none()
    dt = c.out(x.shape) if grad_mask[1] else c.none()
    c.k.xent_dense_grad(xb, tb, aux, g, outer, K, inner, logits, eps, dx, dt)
    return c.results()


@pytest.mark.parametrize("logits", [True, False])
@pytest.mark.parametrize("view", [(5, 7, 1), (3, 70, 2), (2, 33, 5), (1, 1, 3), (0, 4, 2), (3, 0, 2)])
@pytest.mark.parametrize("grad_mask", [(True, True), (True, False), (False, True), (False, False)])
def test_xent_dense_kernels(logits, view, grad_mask, dev):
    """Loss, aux (log-sum-exp or the row sum) and dx / dt, either or both, for lanes along the last
    axis (inner 1) and a middle one, lanes longer than a warp, probabilities at and beyond the clip."""
    x = _f(*view) * 3 if logits else _probs(*view)
    t = _targets(*view)
    want = _xent_dense("cpu:0", x, t, logits, 1e-7, grad_mask)
    got = _xent_dense(dev, x, t, logits, 1e-7, grad_mask)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            _close(g, w, rtol=1e-5, atol=1e-6)
    if view[0] * view[1] * view[2]:
        assert np.isfinite(got[0]).all() and np.isfinite(got[1]).all()


def test_xent_dense_nan_and_inf(dev):
    x = _f(3, 6, 1)
    x[0, 2, 0] = np.nan
    x[1, 4, 0] = np.inf
    t = _targets(3, 6, 1)
    for logits in (True, False):
        want = _xent_dense("cpu:0", x, t, logits, 1e-7, (True, True))
        got = _xent_dense(dev, x, t, logits, 1e-7, (True, True))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)  # NaNs and infinities in the same places


# ---- binary cross-entropy ---------------------------------------------------------------------------

def _bce(device, t, x, logits, eps, grad_mask):
    c = _Call(device)
    loss = c.out(x.shape)
    tb, xb = c.buf(t), c.buf(x)
    c.k.bce(tb, xb, logits, eps, loss)
    g = c.buf(np.linspace(-1.0, 2.0, x.size, dtype=np.float32).reshape(x.shape))
    dx = c.out(x.shape) if grad_mask[0] else c.none()
    dt = c.out(x.shape) if grad_mask[1] else c.none()
    c.k.bce_grad(tb, xb, g, logits, eps, dx, dt)
    return c.results()


@pytest.mark.parametrize("logits", [True, False])
@pytest.mark.parametrize("grad_mask", [(True, True), (True, False), (False, True), (False, False)])
def test_bce_kernels(logits, grad_mask, dev):
    """Values at and beyond the clip range (0, 1, eps, 1 - eps, outside [0, 1]), large logits of
    either sign, NaN, soft targets."""
    x = np.concatenate([R.uniform(0.01, 0.99, 40), [0.0, 1.0, 1e-7, 1 - 1e-7, -0.5, 1.5, 1e-9, np.nan],
                        [-60.0, 60.0, -0.0, 20.0, -20.0, 3.0, -3.0, 0.5]]).astype(np.float32)
    if logits:
        x[:40] = _f(40) * 4
    t = np.concatenate([R.uniform(0, 1, 40), [0, 1, 1, 0, 0.3, 0.7, 1, 0.5, 1, 0, 0.5, 1, 0, 0.2, 0.8, 1]]).astype(
        np.float32)
    x, t = x.reshape(8, 7), t.reshape(8, 7)
    want = _bce("cpu:0", t, x, logits, 1e-7, grad_mask)
    got = _bce(dev, t, x, logits, 1e-7, grad_mask)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
            continue
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        ok = ~np.isnan(w)
        np.testing.assert_allclose(g[ok], w[ok], rtol=1e-5, atol=1e-6)


def test_bce_empty(dev):
    for d in ("cpu:0", dev):
        (loss, dx, dt) = _bce(d, np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), True, 1e-7,
                              (True, True))
        assert loss.shape == dx.shape == dt.shape == (0, 3)


def test_loss_kernel_errors(dev):
    def call(op):
        def f(device):
            c = _Call(device)
            x, t = c.buf(_f(2, 3)), c.buf(_f(2, 3))
            o2, o6 = c.out((2,)), c.out((2, 3))
            ti = c.buf(np.zeros((2, 3), np.int32))
            if op == "xent_shape":
                c.k.xent_dense(x, t, 2, 4, 1, True, 1e-7, o2, o2)
            elif op == "xent_target":
                c.k.xent_dense(x, ti, 2, 3, 1, True, 1e-7, o2, o2)
            elif op == "xent_loss":
                c.k.xent_dense(x, t, 2, 3, 1, True, 1e-7, o6, o2)
            elif op == "xent_view":
                c.k.xent_dense(x, t, -2, 3, -1, True, 1e-7, o2, o2)
            elif op == "xent_grad_dt":
                c.k.xent_dense_grad(x, t, o2, o2, 2, 3, 1, True, 1e-7, o6, o2)
            elif op == "xent_grad_aux":
                c.k.xent_dense_grad(x, t, o6, o2, 2, 3, 1, False, 1e-7, None, None)
            elif op == "bce_target":
                c.k.bce(ti, x, True, 1e-7, o6)
            elif op == "bce_loss":
                c.k.bce(t, x, True, 1e-7, o2)
            elif op == "bce_grad_dx":
                c.k.bce_grad(t, x, x, False, 1e-7, o2, None)
            elif op == "bce_grad_g":
                c.k.bce_grad(t, x, o2, False, 1e-7, None, o6)
        return f

    for op, kind, text in [("xent_shape", ValueError, "categorical_crossentropy: output holds 6 elements"),
                           ("xent_target", TypeError, "expected target of dtype float32, received int32"),
                           ("xent_loss", ValueError, "categorical_crossentropy: loss holds 6 elements, expected 2"),
                           ("xent_view", ValueError, "invalid view"),
                           ("xent_grad_dt", ValueError, "categorical_crossentropy_grad: dt holds 2 elements"),
                           ("xent_grad_aux", ValueError, "categorical_crossentropy_grad: aux holds 6 elements"),
                           ("bce_target", TypeError, "binary_crossentropy: expected target of dtype float32"),
                           ("bce_loss", ValueError, "binary_crossentropy: loss holds 2 elements, expected 6"),
                           ("bce_grad_dx", ValueError, "binary_crossentropy_grad: dx holds 2 elements, expected 6"),
                           ("bce_grad_g", ValueError, "binary_crossentropy_grad: grad holds 2 elements, expected 6")]:
        e = _same_error(call(op), dev)
        assert isinstance(e, kind) and text in str(e), (op, e)


# ---- one_hot -------------------------------------------------------------------------------------------

def _one_hot(device, ids, outer, K, inner, dtype):
    c = _Call(device)
    out = c.out((outer, K, inner), dtype, fill=3 if dtype != "bool" else True)
    c.k.one_hot(c.buf(ids), outer, K, inner, out)
    return c.results()[0]


@pytest.mark.parametrize("dtype", ["float32", "int32", "int64", "bool"])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("view", [(6, 5, 1), (2, 4, 3), (1, 40, 1), (0, 3, 2), (3, 0, 2), (3, 4, 0)])
def test_one_hot_kernel(dtype, id_dtype, view, dev):
    """Every output dtype, ids outside [0, K) (negative, K, large) giving zero rows, repeated ids,
    the new axis in the middle (inner > 1), empty ids and no classes."""
    outer, K, inner = view
    ids = R.integers(-2, K + 3, size=(outer, inner)).astype(id_dtype)
    if ids.size:
        ids.flat[0] = 2**31 - 1 if id_dtype == np.int32 else 2**40
    want = _one_hot("cpu:0", ids, outer, K, inner, dtype)
    got = _one_hot(dev, ids, outer, K, inner, dtype)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_one_hot_kernel_errors(dev):
    def call(case):
        def f(device):
            c = _Call(device)
            ids = c.buf(np.array([[0, 1], [2, 0]], np.int64))
            if case == "int8_out":
                c.k.one_hot(ids, 2, 3, 2, c.out((2, 3, 2), "int8"))
            elif case == "float_ids":
                c.k.one_hot(c.buf(_f(2, 2)), 2, 3, 2, c.out((2, 3, 2)))
            elif case == "negative_k":
                c.k.one_hot(ids, 2, -1, 2, c.out((0,)))
            elif case == "ids_count":
                c.k.one_hot(ids, 3, 3, 2, c.out((3, 3, 2)))
            elif case == "out_count":
                c.k.one_hot(ids, 2, 3, 2, c.out((2, 4, 2)))
        return f

    for case, kind, text in [("int8_out", TypeError, "one_hot: expected an output of dtype float32, int32, int64 or "
                                                     "bool, received int8"),
                             ("float_ids", TypeError, "one_hot: expected x of dtype int32 or int64, received float32"),
                             ("negative_k", ValueError, "one_hot: num_classes must be >= 0, received -1"),
                             ("ids_count", ValueError, "one_hot: x holds 4 elements, expected 6"),
                             ("out_count", ValueError, "one_hot: out holds 16 elements, expected 12")]:
        e = _same_error(call(case), dev)
        assert isinstance(e, kind) and text in str(e), (case, e)


# ---- take_along_axis and its gradient -----------------------------------------------------------------------

def _take_along(device, x, idx):
    outer, n, inner = x.shape
    m = idx.shape[1]
    c = _Call(device)
    out = c.out(idx.shape, x.dtype.name, fill=0)
    c.k.take_along_axis(c.buf(x), outer, n, inner, c.buf(idx), m, out)
    return c.results()[0]


def _take_along_grad(device, g, idx, n):
    outer, m, inner = idx.shape
    c = _Call(device)
    gx = c.out((outer, n, inner), fill=np.nan)
    c.k.take_along_axis_grad(c.buf(g), outer, n, inner, c.buf(idx), m, gx)
    return c.results()[0]


_ALONG_VIEWS = [(3, 5, 4, 6), (2, 7, 1, 300), (1, 3, 3, 100), (4, 1, 2, 3), (2, 6, 1, 0), (0, 4, 3, 2),
                (3, 4, 0, 5), (1, 2000, 1, 70), (600, 3, 5, 2)]


@pytest.mark.parametrize("view", _ALONG_VIEWS)
@pytest.mark.parametrize("dtype", ["float32", "int32", "int64", "bool", "int8"])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
def test_take_along_axis_kernel(view, dtype, id_dtype, dev):
    """Negative indices, repeats, every element size, empty axes and index runs."""
    outer, n, inner, m = view
    x = (R.normal(size=(outer, n, inner)) * 50).astype(_NP_DTYPES[dtype])
    idx = R.integers(-n, n, size=(outer, m, inner)).astype(id_dtype)
    want = _take_along("cpu:0", x, idx)
    got = _take_along(dev, x, idx)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, np.take_along_axis(x, np.where(idx < 0, idx + n, idx), axis=1))


@pytest.mark.parametrize("view", _ALONG_VIEWS)
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
def test_take_along_axis_grad_kernel_is_the_cpus_sum(view, id_dtype, dev):
    """The scatter-add sums each output's gradients in the CPU's order (ascending j): equal bit for
    bit, and the same on every run. Covers a thread per column (many columns or short runs) and a
    block per column (few columns, long runs: (2, 7, 1, 300), (1, 3, 3, 100), (1, 2000, 1, 70)),
    every output zeroed first (also those no index reaches)."""
    outer, n, inner, m = view
    g = (R.normal(size=(outer, m, inner)) * np.exp(R.normal(size=(outer, m, inner)) * 4)).astype(np.float32)
    idx = R.integers(-n, n, size=(outer, m, inner)).astype(id_dtype)
    want = _take_along_grad("cpu:0", g, idx, n)
    got = _take_along_grad(dev, g, idx, n)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_take_along_grad(dev, g, idx, n), got)


def test_take_along_axis_out_of_bounds(dev):
    """An index outside [-n, n) raises the CPU's IndexError (the GPU runs such a call on the host)."""
    x = _f(2, 4, 3)
    for bad in (4, -5, 2**31 - 1):
        idx = np.zeros((2, 2, 3), np.int64)
        idx[1, 1, 2] = bad
        e = _same_error(lambda d: _take_along(d, x, idx), dev)
        assert isinstance(e, IndexError) and f"index {bad} (at flat position 11" in str(e)
    with lamina.device(dev):
        t = lamina.convert_to_tensor(x)
        with pytest.raises(IndexError, match="out of bounds for an axis of size 4"):
            ops.take_along_axis(t, np.array([[[0, 4, 1]]]), axis=1).numpy()
        # the device still works after the error
        np.testing.assert_array_equal(ops.take_along_axis(t, np.array([[[3, -4, 1]]]), axis=1).numpy(),
                                      np.take_along_axis(x, np.array([[[3, 0, 1]]]), axis=1))


def test_take_along_axis_kernel_errors(dev):
    def call(case):
        def f(device):
            c = _Call(device)
            x = c.buf(_f(2, 4, 3))
            idx = c.buf(np.zeros((2, 5, 3), np.int64))
            if case == "index_dtype":
                c.k.take_along_axis(x, 2, 4, 3, c.buf(np.zeros((2, 5, 3), np.float32)), 5, c.out((2, 5, 3)))
            elif case == "x_size":
                c.k.take_along_axis(x, 2, 5, 3, idx, 5, c.out((2, 5, 3)))
            elif case == "idx_size":
                c.k.take_along_axis(x, 2, 4, 3, idx, 4, c.out((2, 4, 3)))
            elif case == "out_dtype":
                c.k.take_along_axis(x, 2, 4, 3, idx, 5, c.out((2, 5, 3), "int32"))
            elif case == "negative":
                c.k.take_along_axis(x, 2, -4, 3, idx, 5, c.out((2, 5, 3)))
            elif case == "negative_m":
                c.k.take_along_axis(x, 2, 4, 3, idx, -5, c.out((2, 5, 3)))
            elif case == "grad_dtype":
                c.k.take_along_axis_grad(c.buf(np.zeros((2, 5, 3), np.int32)), 2, 4, 3, idx, 5, c.out((2, 4, 3)))
            elif case == "grad_size":
                c.k.take_along_axis_grad(c.buf(_f(2, 4, 3)), 2, 4, 3, idx, 5, c.out((2, 4, 3)))
            elif case == "grad_index_dtype":
                c.k.take_along_axis_grad(c.buf(_f(2, 5, 3)), 2, 4, 3, c.buf(np.zeros((2, 5, 3), np.float32)), 5,
                                         c.out((2, 4, 3)))
        return f

    for case, kind, text in [
            ("index_dtype", TypeError, "take_along_axis: expected indices of dtype int32 or int64, received float32"),
            ("x_size", ValueError, "take_along_axis: x holds 24 elements, not outer*n*inner = 2*5*3"),
            ("idx_size", ValueError, "take_along_axis: indices hold 30 elements, not outer*m*inner = 2*4*3"),
            ("out_dtype", TypeError, "take_along_axis: expected out of dtype float32, received int32"),
            ("negative", ValueError, "take_along_axis: expected non-negative (outer, n, inner), received (2, -4, 3)"),
            ("negative_m", ValueError, "take_along_axis: negative index length -5"),
            ("grad_dtype", TypeError, "take_along_axis_grad: expected grad of dtype float32, received int32"),
            ("grad_size", ValueError, "take_along_axis_grad: grad holds 24 elements, indices 30"),
            ("grad_index_dtype", TypeError, "take_along_axis_grad: expected indices of dtype int32 or int64")]:
        e = _same_error(call(case), dev)
        assert isinstance(e, kind) and text in str(e), (case, e)


# ---- count_nonzero / nonzero ---------------------------------------------------------------------------------

def _sparse(shape, dtype, density=0.3):
    a = R.normal(size=shape) * (R.uniform(size=shape) < density)
    if dtype == "bool":
        return a != 0
    if dtype == "float32":
        a = a.astype(np.float32)
        if a.size > 3:
            a.flat[1] = -0.0   # zero
            a.flat[2] = np.nan  # not zero
        return a
    return (a * 100).astype(_NP_DTYPES[dtype])


def _nonzero(device, x, outs_numel=None):
    c = _Call(device)
    xb = c.buf(x)
    count = c.k.count_nonzero(xb)
    n = count if outs_numel is None else outs_numel
    outs = [c.out((n,), "int64", fill=-9) for _ in range(x.ndim)]
    c.k.nonzero(xb, list(x.shape), outs)
    return count, c.results()


_NZ_SHAPES = [(37,), (4, 5, 6), (3000,), (2, 1500), (1, 1), (0,), (0, 3), (2, 3, 4, 5, 2)]


@pytest.mark.parametrize("shape", _NZ_SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "int32", "int64", "bool", "int8"])
def test_nonzero_kernels(shape, dtype, dev):
    """Counts and row-major coordinates; -0.0 is zero and NaN is not; sizes spanning several chunks."""
    x = _sparse(shape, dtype)
    want = _nonzero("cpu:0", x)
    got = _nonzero(dev, x)
    assert got[0] == want[0] == np.count_nonzero(x)
    for g, w, ref in zip(got[1], want[1], np.nonzero(x)):
        np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(g, ref)


@pytest.mark.parametrize("density", [0.0, 1.0, 0.002])
def test_nonzero_all_none_and_sparse(density, dev):
    x = _sparse((7, 300), "float32", density) if density else np.zeros((7, 300), np.float32)
    if density == 1.0:
        x = np.abs(_f(7, 300)) + 1
    want = _nonzero("cpu:0", x)
    got = _nonzero(dev, x)
    assert got[0] == want[0]
    for g, w in zip(got[1], want[1]):
        np.testing.assert_array_equal(g, w)


def test_nonzero_many_chunks(dev):
    """More chunks than one tile of the offsets scan (256 chunks of 1024 elements)."""
    if _slow_emulator(dev):
        pytest.skip("270000 elements of fibers are slow in the CUDA emulator (about 10 s)")
    x = _sparse((270000,), "bool", 0.01)
    want = _nonzero("cpu:0", x)
    got = _nonzero(dev, x)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1][0], want[1][0])


def test_nonzero_kernel_errors(dev):
    x = _sparse((4, 5), "float32")
    count = int(np.count_nonzero(x))
    e = _same_error(lambda d: _nonzero(d, x, outs_numel=count + 1), dev)
    assert isinstance(e, ValueError) and f"output buffers must hold {count} elements (the non-zero count), one " \
                                         f"holds {count + 1}" in str(e)

    def call(case):
        def f(device):
            c = _Call(device)
            xb = c.buf(x)
            if case == "outs":
                c.k.nonzero(xb, [4, 5], [c.out((count,), "int64")])
            elif case == "shape":
                c.k.nonzero(xb, [4, 6], [c.out((count,), "int64"), c.out((count,), "int64")])
            elif case == "scalar":
                c.k.nonzero(c.buf(np.ones((1,), np.float32)), [], [])
            elif case == "dtype":
                c.k.nonzero(xb, [4, 5], [c.out((count,), "int64"), c.out((count,), "int32")])
        return f

    for case, kind, text in [("outs", ValueError, "nonzero: expected 2 output buffers for shape (4, 5), received 1"),
                             ("shape", ValueError, "nonzero: x holds 20 elements but its shape (4, 6) needs 24"),
                             ("scalar", ValueError, "nonzero: expected a tensor with at least one dimension, "
                                                    "received shape ()"),
                             ("dtype", TypeError, "nonzero: expected out of dtype int64, received int32")]:
        e = _same_error(call(case), dev)
        assert isinstance(e, kind) and text in str(e), (case, e)


# ---- triangles -------------------------------------------------------------------------------------------------

def _tri(device, x, k, upper):
    batch, rows, cols = x.shape
    c = _Call(device)
    out = c.out(x.shape, x.dtype.name, fill=1)
    c.k.tri(c.buf(x), batch, rows, cols, k, upper, out)
    return c.results()[0]


@pytest.mark.parametrize("shape", [(2, 4, 6), (1, 5, 3), (3, 1, 1), (0, 3, 3), (3, 0, 2), (2, 3, 0), (1, 40, 35)])
@pytest.mark.parametrize("upper", [False, True])
def test_tri_kernel(shape, upper, dev):
    """Diagonal offsets inside, at and far beyond the matrix (clamped), every element size."""
    for dtype in ("float32", "int64", "bool", "int8"):
        x = (R.normal(size=shape) * 10 + 20).astype(_NP_DTYPES[dtype])
        for k in (-9, -2, -1, 0, 1, 3, 50, -(2**62), 2**62):
            want = _tri("cpu:0", x, k, upper)
            got = _tri(dev, x, k, upper)
            np.testing.assert_array_equal(got, want)
            ref = (np.triu(x, k) if upper else np.tril(x, k)) if abs(k) < 1000 else (
                (np.zeros_like(x) if k > 0 else x) if upper else (x if k > 0 else np.zeros_like(x)))
            np.testing.assert_array_equal(got, ref)


def test_tri_kernel_errors(dev):
    def call(case):
        def f(device):
            c = _Call(device)
            x = c.buf(_f(2, 3, 4))
            if case == "size":
                c.k.tri(x, 2, 3, 5, 0, False, c.out((2, 3, 4)))
            elif case == "dtype":
                c.k.tri(x, 2, 3, 4, 0, True, c.out((2, 3, 4), "int32"))
            elif case == "out":
                c.k.tri(x, 2, 3, 4, 0, True, c.out((2, 3, 3)))
            elif case == "negative":
                c.k.tri(x, -2, 3, 4, 0, False, c.out((2, 3, 4)))
        return f

    for case, kind, text in [("size", ValueError, "tril: x holds 24 elements, not batch*rows*cols = 2*3*5"),
                             ("dtype", TypeError, "triu: expected out of dtype float32, received int32"),
                             ("out", ValueError, "triu: out holds 18 elements, x 24"),
                             ("negative", ValueError, "tril: expected non-negative (outer, n, inner)")]:
        e = _same_error(call(case), dev)
        assert isinstance(e, kind) and text in str(e), (case, e)


# ---- ranges ------------------------------------------------------------------------------------------------------

def _arange(device, n, dtype, start, step):
    c = _Call(device)
    out = c.out((n,), dtype, fill=5)
    c.k.arange(out, start, step)
    return c.results()[0]


def _linspace(device, n, dtype, start, stop, endpoint):
    c = _Call(device)
    out = c.out((n,), dtype, fill=5)
    c.k.linspace(out, start, stop, endpoint)
    return c.results()[0]


@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
@pytest.mark.parametrize("args", [(33, 0.1, 0.07), (20, 5.0, -0.3), (10, -3.0, 1.0), (8, 1e9, 1e-3),
                                  (300, -7.3, 0.1 / 3), (1, 2.5, 9.0), (0, 1.0, 1.0), (5, -0.5, -0.25)])
def test_arange_kernel_is_exact(dtype, args, dev):
    """start + i * step in double, converted once: the CPU's values bit for bit."""
    n, start, step = args
    want = _arange("cpu:0", n, dtype, start, step)
    got = _arange(dev, n, dtype, start, step)
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
@pytest.mark.parametrize("args", [(50, 0.0, 1.0, True), (7, -1.0, 2.0, False), (1, 3.0, 9.0, True),
                                  (1, 3.0, 9.0, False), (0, 1.0, 2.0, True), (11, 2.5, -2.5, True),
                                  (300, 0.1, 0.7, True), (9, -3.7, 4.1, False)])
def test_linspace_kernel_is_exact(dtype, args, dev):
    """The endpoint exactly `stop`; integer outputs floored (negative values included)."""
    n, start, stop, endpoint = args
    want = _linspace("cpu:0", n, dtype, start, stop, endpoint)
    got = _linspace(dev, n, dtype, start, stop, endpoint)
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    if n:
        np.testing.assert_allclose(got, np.linspace(start, stop, n, endpoint=endpoint).astype(
            np.float32) if dtype == "float32" else np.floor(np.linspace(start, stop, n, endpoint=endpoint)), rtol=1e-6)


def test_range_kernel_errors(dev):
    for fn, text in [(lambda d: _arange(d, 3, "bool", 0.0, 1.0),
                      "arange: expected an output of dtype float32, int32 or int64, received bool"),
                     (lambda d: _linspace(d, 3, "int8", 0.0, 1.0, True),
                      "linspace: expected an output of dtype float32, int32 or int64, received int8"),
                     (lambda d: _arange(d, 0, "bool", 0.0, 1.0), "received bool")]:
        e = _same_error(fn, dev)
        assert isinstance(e, TypeError) and text in str(e)
    # an empty linspace writes nothing and checks nothing more (as the CPU)
    for d in ("cpu:0", dev):
        assert _linspace(d, 0, "bool", 0.0, 1.0, True).shape == (0,)


# ---- batch_transpose ---------------------------------------------------------------------------------------------

def _batch_transpose(device, x):
    B, Rr, S = x.shape
    c = _Call(device)
    out = c.out((B, S, Rr), fill=np.nan)
    c.k.batch_transpose(c.buf(x), B, Rr, S, out)
    return c.results()[0]


@pytest.mark.parametrize("shape", [(2, 37, 45), (1, 1, 5), (3, 32, 64), (1, 70, 3), (0, 3, 4), (2, 0, 5), (2, 5, 0)])
def test_batch_transpose_kernel(shape, dev):
    x = _f(*shape)
    got = _batch_transpose(dev, x)
    np.testing.assert_array_equal(got, _batch_transpose("cpu:0", x))
    np.testing.assert_array_equal(got, np.transpose(x, (0, 2, 1)))


def test_batch_transpose_kernel_errors(dev):
    def call(case):
        def f(device):
            c = _Call(device)
            if case == "negative":
                c.k.batch_transpose(c.buf(_f(2, 3, 4)), 2, -3, 4, c.out((2, 4, 3)))
            elif case == "input":
                c.k.batch_transpose(c.buf(_f(2, 3, 4)), 2, 4, 4, c.out((2, 4, 4)))
            elif case == "output":
                c.k.batch_transpose(c.buf(_f(2, 3, 4)), 2, 3, 4, c.out((2, 4, 4)))
            elif case == "dtype":
                c.k.batch_transpose(c.buf(np.zeros((2, 3, 4), np.int32)), 2, 3, 4, c.out((2, 4, 3)))
        return f

    for case, kind, text in [("negative", ValueError, "batch_transpose: negative dimension in (2, -3, 4)"),
                             ("input", ValueError, "batch_transpose: input holds 24 elements but its shape (2, 4, 4)"),
                             ("output", ValueError, "batch_transpose: output holds 32 elements but its shape "
                                                    "(2, 4, 3) needs 24"),
                             ("dtype", TypeError, "batch_transpose: expected input of dtype float32, received int32")]:
        e = _same_error(call(case), dev)
        assert isinstance(e, kind) and text in str(e), (case, e)


# ---- through the ops, with gradients ----------------------------------------------------------------------------

_T3 = _targets(3, 5, 4)
_P3 = _probs(3, 5, 4)
_TAKE_IDX = R.integers(-5, 5, size=(2, 200))
_TAKE_IDX3 = R.integers(-3, 3, size=(2, 8, 4))

# name -> (function of tensors, inputs); every float32 input is differentiated
OP_CASES = {
    "categorical_xent_target_grad": (lambda t, x: ops.categorical_crossentropy(t, x, from_logits=True),
                                     [_targets(4, 9, 1)[..., 0], _f(4, 9)]),
    "categorical_xent_probs_axis1": (lambda t, p: ops.categorical_crossentropy(t, p, axis=1), [_T3, _P3]),
    "categorical_xent_logits_axis1": (lambda t, x: ops.categorical_crossentropy(t, x, from_logits=True, axis=1),
                                      [_T3, _f(3, 5, 4)]),
    "categorical_xent_long_rows": (lambda t, x: ops.categorical_crossentropy(t, x, from_logits=True),
                                   [_targets(2, 100, 1)[..., 0], _f(2, 100) * 3]),
    "binary_xent_target_grad": (lambda t, x: ops.binary_crossentropy(t, x, from_logits=True),
                                [R.uniform(size=(5, 3)).astype(np.float32), _f(5, 3) * 3]),
    "binary_xent_probs_target_grad": (lambda t, p: ops.binary_crossentropy(t, p),
                                      [R.uniform(size=(5, 3)).astype(np.float32),
                                       R.uniform(0.02, 0.98, size=(5, 3)).astype(np.float32)]),
    "take_along_long_runs": (lambda x: ops.take_along_axis(x, _TAKE_IDX, axis=1), [_f(2, 5)]),
    "take_along_middle_axis": (lambda x: ops.take_along_axis(x, _TAKE_IDX3, axis=1),
                               [_f(2, 3, 4)]),
    "take_along_broadcast": (lambda x: ops.take_along_axis(x, np.array([[[1], [0], [1], [1]]]), axis=1),
                             [_f(3, 2, 5)]),
    "take_along_none": (lambda x: ops.take_along_axis(x, np.array([5, 0, 5, -1, 3]), axis=None), [_f(2, 3)]),
    "tril_triu_batch": (lambda x: ops.tril(x, 1) * 2.0 + ops.triu(x, -1) + ops.triu(x, 7), [_f(2, 3, 5, 4)]),
    "channels_first_conv": (lambda x, k: ops.conv(x, k, padding="same", data_format="channels_first"),
                            [_f(2, 3, 7, 5), _f(3, 3, 3, 4)]),
}


@pytest.mark.parametrize("name", sorted(OP_CASES))
def test_ops_match_cpu(name, dev):
    fn, inputs = OP_CASES[name]
    for grad in (False, True):
        want = _run(fn, inputs, "cpu:0", grad)
        got = _run(fn, inputs, dev, grad)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(w).max(initial=0))))


def test_integer_ops_match_cpu(dev):
    """one_hot of every dtype and axis, nonzero of integer and bool tensors, arange / linspace of
    every dtype: equal to the CPU's exactly."""
    def run(device):
        with lamina.device(device):
            ids = lamina.convert_to_tensor(np.array([[0, 4, -1], [2, 2, 9]], np.int32))
            res = [ops.one_hot(ids, 5, axis=a, dtype=dt) for a in (0, 1, -1) for dt in ("float32", "int32", "bool")]
            res += [ops.one_hot(np.array([1.7, 0.2, 3.9]), 4)]  # float ids truncated
            res += list(ops.nonzero(np.array([[0, 3, 0], [-1, 0, 2]], np.int64)))
            res += list(ops.nonzero(np.array([[[True, False], [False, True]]])))
            res += [ops.arange(17), ops.arange(2.5, -3.0, -0.35), ops.arange(1, 30, 7, dtype="int32"),
                    ops.arange(0.0, 1.0, 0.1), ops.linspace(0.0, 1.0, 11), ops.linspace(-2, 7, 6, dtype="int32"),
                    ops.linspace(3.0, 4.0, 5, endpoint=False), ops.linspace(1.0, 2.0, 1, dtype="int64"),
                    ops.tri(4, 6, k=-1, dtype="int64"), ops.tril(np.arange(24).reshape(2, 3, 4), 1)]
            assert all(r.device is _device(device) for r in res)
            return [r.numpy() for r in res]

    for g, w in zip(run(dev), run("cpu:0")):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("src", ["float32", "bfloat16"])
@pytest.mark.parametrize("dst", ["int32", "int64"])
def test_float_to_integer_casts_give_the_cpus_numbers(dev, src, dst):
    """Truncation toward zero where the value fits; out of range and NaN: the type's minimum, as
    x86's conversions (the CPU's) give it -- on the device itself, not on host copies."""
    import importlib
    dm = importlib.import_module("lamina.backend.device")
    if src == "bfloat16":
        dm.enable_bfloat16()  # (tests/conftest.py puts the plain kernel tables back afterwards)
    x = np.array([0.0, -0.0, 0.7, -0.7, 1.5, -2.5, 123456.0, -98765.0, 2.0 ** 31 - 128, 2.0 ** 31, -2.0 ** 31,
                  -2.0 ** 31 - 256, 3e9, -3e9, 2.0 ** 63, -2.0 ** 63, 1e30, -1e30, np.inf, -np.inf, np.nan],
                 np.float32)
    fallbacks = getattr(lamina.get_device(dev).kernels, "fallbacks", {})
    before = fallbacks.get("cast", 0)
    res = []
    for where in ("cpu:0", dev):
        with lamina.device(where):
            t = lamina.convert_to_tensor(x)
            if src == "bfloat16":
                t = lamina.ops.cast(t, "bfloat16")
            res.append(np.asarray(lamina.ops.cast(t, dst).numpy()))
    np.testing.assert_array_equal(res[1], res[0])
    assert res[0][-1] == np.iinfo(dst).min  # NaN: integer indefinite
    if lamina.get_device(dev).kind == "gpu":
        assert fallbacks.get("cast", 0) == before
