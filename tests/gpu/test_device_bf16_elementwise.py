"""bfloat16 in the device's own elementwise, softmax, normalisation and pooling kernels (the CUDA
module's BF16_KERNELS: binary, unary, unary_grad, bias_relu(_grad), softmax(_grad), layer_norm(_grad),
batch_norm_train(_grad), pool2d_forward / pool2d_backward, and the element moves take,
take_along_axis and tri), on a device under test (tests/gpu/conftest.py).

The contract (the CPU's, csrc/cpu/*.cpp): a kernel reads bfloat16 buffers as float32, computes as
its float32 version does, and rounds each result once (nearest even); so on every device its
results are bit for bit those of the float32 kernel on widened copies (backend/device.py's
WideningTable). Each call here runs three ways: on cpu:0, on the device with the bfloat16 buffers
themselves (neither widened nor, on a GPU, run on the host), and on the device through a table that
widens everything. The device's bfloat16 results equal its widened ones bit for bit, and cpu:0's
exactly where the float32 maths is exact on both (arithmetic, selections, maxima), else within one
bfloat16 rounding. Buffer dtypes the CPU takes in any mix (softmax's, layer norm's) are tried in
each mix; the mixes it refuses raise its error on every device."""
import importlib

import numpy as np
import pytest

import lamina
from lamina import ops

_dm = importlib.import_module("lamina.backend.device")
_nn = importlib.import_module("lamina.backend.nn")
_cpu = _dm._cpu
BIN, UN, GR = _cpu.BINARY_OPS, _cpu.UNARY_OPS, _cpu.GRAD_OPS
NAN, INF = np.float32(np.nan), np.float32(np.inf)
# bfloat16 values the kernels must treat as float32 does: NaN, infinities, signed zeros, a subnormal,
# the largest finite values
SPECIAL = np.array([NAN, INF, -INF, -0.0, 0.0, 9.2e-41, 3.3e38, -3.3e38], np.float32)
MAX_POOL, AVG_POOL = 0, 1


def _bf16_device(dev):
    """The device with bfloat16 enabled (as in test_device_bf16.py): GPU devices are switched by
    enable_bfloat16; the host-fallback pair gets its widening table here."""
    _dm.enable_bfloat16()
    return dev if dev.kind == "gpu" else _dm.Device(dev.kind, dev.index, _dm._widened(dev.kernels))


def _round(a):
    return np.array(lamina.convert_to_tensor(np.asarray(a, np.float32), dtype="bfloat16").numpy(), np.float32)


def _values(rng, shape, scale=1.0, special=True):
    """bfloat16 values of `shape`, the SPECIAL ones among them when `special`."""
    a = (rng.normal(size=shape) * scale).astype(np.float32).ravel()
    if special and a.size >= 2 * SPECIAL.size:
        a[rng.permutation(a.size)[:SPECIAL.size]] = SPECIAL
    return _round(a.reshape(shape))


class Buf:
    """A buffer argument: `a`'s values as `dtype` (outputs start as NaN / -7, so unwritten shows)."""

    def __init__(self, a, dtype):
        self.a, self.dtype = np.asarray(a), dtype


def _out(shape, dtype="bfloat16"):
    if dtype in ("float32", "bfloat16"):
        return Buf(np.full(shape, NAN, np.float32), dtype)
    if dtype == "bool":
        return Buf(np.zeros(shape, bool), "bool")
    return Buf(np.full(shape, -7, np.int32), dtype)


class _NoBF16:
    """A kernel table seen without bfloat16 kernels: a WideningTable over it widens every call."""
    BF16_KERNELS = ("fill", "copy", "cast")

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)


_WIDE = {}


def _widened_only(table):
    inner = table.inner
    if id(inner) not in _WIDE:
        _WIDE[id(inner)] = (inner, _dm.WideningTable(_NoBF16(inner), buffer_type=inner.Buffer))
    return _WIDE[id(inner)][1]


def _run(where, table, name, spec):
    """Calls table.<name> on spec (Buf: a buffer on `where`; anything else as it is); returns every
    Buf's values afterwards as float32 / bool / int arrays (None for the other arguments)."""
    ts, args = [], []
    for s in spec:
        if isinstance(s, Buf):
            t = lamina.convert_to_tensor(s.a, dtype=s.dtype).to(where)
            ts.append(t)
            args.append(t._buf)
        else:
            ts.append(None)
            args.append(s)
    getattr(table, name)(*args)
    return [None if t is None else t.to("cpu:0").numpy() for t in ts]


def _bits(a):
    a = np.asarray(a)
    return np.ascontiguousarray(a.astype(np.float32)).view(np.uint32) if a.dtype.kind == "f" else a


def _check(d, name, spec, outs, exact=True, native=True, what=""):
    """Runs the call on cpu:0, on d (the bfloat16 buffers themselves) and on d widened; compares the
    outputs at positions `outs` (see the module's docstring). native=False: a call the device's
    kernel answers with KernelUnsupported (the host's kernel runs it, as on cpu:0: exact)."""
    cpu = _run("cpu:0", lamina.get_device("cpu:0").kernels, name, spec)
    table = d.kernels
    fallbacks = getattr(table.inner, "fallbacks", {})
    w0, f0 = table.widened.get(name, 0), fallbacks.get(name, 0)
    got = _run(d, table, name, spec)
    assert table.widened.get(name, 0) == w0, f"{name}: widened to float32 copies"
    if d.kind == "gpu":
        assert (fallbacks.get(name, 0) == f0) == native, f"{name}: ran on the host: {fallbacks.get(name, 0) - f0}"
    wide = _run(d, _widened_only(table), name, spec)
    for i in outs:
        msg = f"{name} {what} output {i}"
        np.testing.assert_array_equal(_bits(got[i]), _bits(wide[i]), err_msg=msg + " (device widened)")
        if exact or not native:
            np.testing.assert_array_equal(got[i], cpu[i], err_msg=msg + " (cpu:0)")
        else:
            tol = 2 ** -7 if spec[i].dtype == "bfloat16" else 1e-5
            g, w = got[i].astype(np.float64), cpu[i].astype(np.float64)
            fin = np.isfinite(w)
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=msg + " NaN (cpu:0)")
            np.testing.assert_array_equal(g[~fin & ~np.isnan(w)], w[~fin & ~np.isnan(w)], err_msg=msg)
            scale = np.abs(w[fin]).max() if fin.any() else 1.0
            # relative to the output's scale too (sums that cancel: softmax_grad, layer norm's dx)
            np.testing.assert_allclose(g[fin], w[fin], rtol=tol, atol=tol * scale + 1e-30,
                                       err_msg=msg + " (cpu:0)")
    return got


def _same_error(d, name, spec):
    """The call raises the same error (type and message) on cpu:0 and on d."""
    errs = []
    for where, table in (("cpu:0", lamina.get_device("cpu:0").kernels), (d, d.kernels)):
        with pytest.raises((TypeError, ValueError)) as e:
            _run(where, table, name, spec)
        errs.append((type(e.value), str(e.value)))
    assert errs[0] == errs[1]
    return errs[0][1]


# ---- binary ------------------------------------------------------------------------------------
# Every op code the CPU takes for bfloat16 (nextafter and the integer ops it refuses: checked below);
# transcendental ones agree with cpu:0 within a rounding.
BINARY_NATIVE = ["ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "FMAX", "FMIN", "COPYSIGN", "FMOD", "MOD",
                 "POW", "ARCTAN2", "HYPOT", "FLOORDIV", "HEAVISIDE", "LDEXP", "LOGADDEXP2", "EQ", "NE", "LT", "LE",
                 "GT", "GE"]
INEXACT = {"POW", "ARCTAN2", "HYPOT", "MOD", "LOGADDEXP2"}
BINARY_SHAPES = {"same": ((3, 8), (3, 8), (3, 8)), "broadcast": ((3, 1, 6), (2, 6), (3, 2, 6)),
                 "scalar": ((4, 5), (), (4, 5))}


@pytest.mark.parametrize("shapes", sorted(BINARY_SHAPES))
@pytest.mark.parametrize("op", BINARY_NATIVE)
def test_binary_on_bfloat16(dev, op, shapes):
    d = _bf16_device(dev)
    r = np.random.default_rng(BIN[op] * 7 + len(shapes))
    as_, bs, os_ = BINARY_SHAPES[shapes]
    a = _values(r, as_, 3.0)
    b = _values(r, bs, 3.0) if bs else _round(r.normal(size=()) * 3)
    if op == "POW":
        a = np.abs(a)
    if shapes == "same":  # ties and equal values for the comparisons, maxima and minima
        b.ravel()[::3] = a.ravel()[::3]
    cmp = op in ("EQ", "NE", "LT", "LE", "GT", "GE")
    out = _out(os_, "bool" if cmp else "bfloat16")
    spec = [BIN[op], Buf(a, "bfloat16"), list(as_), Buf(b, "bfloat16"), list(bs), out, list(os_)]
    _check(d, "binary", spec, [5], exact=op not in INEXACT, what=op)


def test_binary_refuses_what_the_cpu_refuses_on_bfloat16(dev):
    d = _bf16_device(dev)
    a, b = _round(np.arange(6.0)), _round(np.ones(6))
    msg = _same_error(d, "binary", [BIN["ADD"], Buf(a, "bfloat16"), [6], Buf(b, "float32"), [6], _out((6,)), [6]])
    assert "bfloat16" in msg and "float32" in msg
    _same_error(d, "binary", [BIN["ADD"], Buf(a, "bfloat16"), [6], Buf(b, "bfloat16"), [6], _out((6,), "float32"),
                              [6]])
    _same_error(d, "binary", [BIN["LT"], Buf(a, "bfloat16"), [6], Buf(b, "bfloat16"), [6], _out((6,)), [6]])
    for op in ("AND", "NEXTAFTER"):  # integer ops and nextafter are not defined for bfloat16
        _same_error(d, "binary", [BIN[op], Buf(a, "bfloat16"), [6], Buf(b, "bfloat16"), [6], _out((6,)), [6]])


# ---- unary, unary_grad -------------------------------------------------------------------------------
UNARY_EXACT = ["NEG", "ABS", "RELU", "RELU6", "LEAKY_RELU", "SQUARE", "SIGN", "SQRT", "RECIPROCAL", "FLOOR",
               "CEIL", "ROUND", "TRUNC"]
UNARY_INEXACT = ["EXP", "EXP2", "EXPM1", "LOG", "LOG2", "LOG10", "LOG1P", "RSQRT", "TANH", "SIGMOID", "SOFTPLUS",
                 "SOFTSIGN", "ELU", "SELU", "GELU", "GELU_TANH", "SILU", "HARD_SIGMOID", "ERF", "SIN", "COS", "TAN",
                 "CBRT", "ARCTAN"]


@pytest.mark.parametrize("op", UNARY_EXACT + UNARY_INEXACT)
def test_unary_on_bfloat16(dev, op):
    d = _bf16_device(dev)
    r = np.random.default_rng(UN[op])
    x = _values(r, (5, 7), 4.0)
    x.ravel()[-3:] = [0.5, 2.5, -1.5]  # rounding's ties
    spec = [UN[op], Buf(x, "bfloat16"), _out(x.shape), 0.3]
    _check(d, "unary", spec, [2], exact=op in UNARY_EXACT, what=op)


@pytest.mark.parametrize("op", ["ISNAN", "ISINF", "ISFINITE", "SIGNBIT"])
def test_bfloat16_classification_by_bits(dev, op):
    d = _bf16_device(dev)
    x = _values(np.random.default_rng(1), (4, 5))
    x.ravel()[:2] = [-NAN, -0.0]
    _check(d, "unary", [UN[op], Buf(x, "bfloat16"), _out(x.shape, "bool"), 0.0], [2], what=op)


def test_unary_refuses_what_the_cpu_refuses_on_bfloat16(dev):
    d = _bf16_device(dev)
    x = _values(np.random.default_rng(2), (3, 6), 0.5)
    _same_error(d, "unary", [UN["BITWISE_NOT"], Buf(x, "bfloat16"), _out(x.shape), 0.0])
    _same_error(d, "unary", [UN["EXP"], Buf(x, "bfloat16"), _out(x.shape, "float32"), 0.0])
    _same_error(d, "unary", [UN["LOGICAL_NOT"], Buf(x, "bfloat16"), _out(x.shape), 0.0])


GRAD_EXACT = ["RELU_GRAD", "RELU6_GRAD_X", "LEAKY_RELU_GRAD_X"]


@pytest.mark.parametrize("op", sorted(GR))
def test_unary_grad_on_bfloat16(dev, op):
    d = _bf16_device(dev)
    r = np.random.default_rng(GR[op] + 40)
    saved = _values(r, (4, 9), 3.0)
    if op.endswith("_Y"):  # an output of sigmoid / tanh
        saved = _round(np.tanh(saved) if op.startswith("TANH") else 1 / (1 + np.exp(-np.nan_to_num(saved))))
    g = _values(r, (4, 9), special=False)
    spec = [GR[op], Buf(saved, "bfloat16"), Buf(g, "bfloat16"), _out(g.shape), 0.3]
    _check(d, "unary_grad", spec, [3], exact=op in GRAD_EXACT, what=op)


def test_unary_grad_refuses_mixed_dtypes(dev):
    d = _bf16_device(dev)
    s = _round(np.linspace(-2, 2, 6))
    for dts in (("bfloat16", "float32", "bfloat16"), ("bfloat16", "bfloat16", "float32"),
                ("float32", "bfloat16", "float32")):
        _same_error(d, "unary_grad", [GR["RELU_GRAD"], Buf(s, dts[0]), Buf(s, dts[1]), _out((6,), dts[2]), 0.0])


# ---- bias + relu ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [0, 1, 5, 300])  # 300 rows: the bias gradient's sums in parts
def test_bias_relu_on_bfloat16(dev, rows):
    d = _bf16_device(dev)
    r = np.random.default_rng(rows)
    C = 7
    x, b = _values(r, (rows, C)), _values(r, (C,), special=False)
    _check(d, "bias_relu", [Buf(x, "bfloat16"), Buf(b, "bfloat16"), _out(x.shape)], [2])
    y = _round(np.maximum(np.nan_to_num(x) + b, 0))
    g = _values(r, (rows, C), special=False)
    for with_dx, with_db in ((True, True), (True, False), (False, True)):
        spec = [Buf(y, "bfloat16"), Buf(g, "bfloat16"), _out(x.shape) if with_dx else None,
                _out((C,)) if with_db else None, C]
        outs = ([2] if with_dx else []) + ([3] if with_db else [])
        got = _check(d, "bias_relu_grad", spec, outs, exact=not with_db, what=f"dx={with_dx} db={with_db}")
        if with_dx:  # dx alone is a selection: exact on every device
            np.testing.assert_array_equal(got[2], np.where(y > 0, g, 0))


def test_bias_relu_refuses_mixed_dtypes(dev):
    d = _bf16_device(dev)
    x, b = _round(np.ones((2, 3))), _round(np.ones(3))
    _same_error(d, "bias_relu", [Buf(x, "bfloat16"), Buf(b, "float32"), _out((2, 3))])
    _same_error(d, "bias_relu", [Buf(x, "bfloat16"), Buf(b, "bfloat16"), _out((2, 3), "float32")])
    _same_error(d, "bias_relu_grad", [Buf(x, "bfloat16"), Buf(x, "float32"), _out((2, 3)), None, 3])
    _same_error(d, "bias_relu_grad", [Buf(x, "bfloat16"), Buf(x, "bfloat16"), None, _out((3,), "float32"), 3])


# ---- softmax ---------------------------------------------------------------------------------------
# (outer, R, inner): last-axis lanes (R below, at and above a warp's 32), strided lanes, one element
LANES = [(1, 1, 1), (3, 7, 1), (4, 70, 1), (2, 5, 4), (3, 33, 2)]
MIXES2 = [("bfloat16", "bfloat16"), ("bfloat16", "float32"), ("float32", "bfloat16")]
MIXES3 = [("bfloat16", "bfloat16", "bfloat16"), ("bfloat16", "float32", "bfloat16"),
          ("float32", "bfloat16", "float32"), ("bfloat16", "bfloat16", "float32"), ("float32", "float32", "bfloat16")]


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("lanes", LANES, ids=str)
def test_softmax_on_bfloat16_in_every_mix(dev, lanes, log):
    d = _bf16_device(dev)
    outer, R, inner = lanes
    r = np.random.default_rng(R * 3 + inner)
    x = _values(r, (outer, R, inner), 4.0, special=False)
    if x.size > 4:
        x.ravel()[:3] = [-INF, 80.0, -80.0]  # exp's under- and overflow, a masked position
    g = _values(r, x.shape, special=False)
    for xdt, ydt in MIXES2:
        y = _check(d, "softmax", [Buf(x, xdt), outer, R, inner, log, _out(x.shape, ydt)], [5], exact=False,
                   what=f"{xdt}->{ydt}")[5]
        for ydt2, gdt, odt in MIXES3:
            spec = [Buf(y, ydt2), Buf(g, gdt), outer, R, inner, log, _out(x.shape, odt)]
            _check(d, "softmax_grad", spec, [6], exact=False, what=f"{ydt2},{gdt}->{odt}")


def test_softmax_refuses_other_dtypes_as_the_cpu(dev):
    d = _bf16_device(dev)
    x = _round(np.ones((2, 3)))
    msg = _same_error(d, "softmax", [Buf(x, "bfloat16"), 2, 3, 1, False, _out((2, 3), "int32")])
    assert msg == "softmax: expected out of dtype float32, received int32"
    _same_error(d, "softmax_grad", [Buf(x, "bfloat16"), Buf(x, "int32"), 2, 3, 1, True, _out((2, 3))])
    _same_error(d, "softmax", [Buf(x, "bfloat16"), 2, 2, 1, False, _out((2, 3))])


# ---- layer norm ------------------------------------------------------------------------------------
LN_LANES = [(3, 7, 1), (2, 40, 1), (2, 1100, 1), (2, 5, 3), (1, 1, 1)]  # R > 1024: a block per row


@pytest.mark.parametrize("params", [True, False], ids=["gamma_beta", "no_params"])
@pytest.mark.parametrize("lanes", LN_LANES, ids=str)
def test_layer_norm_on_bfloat16_in_every_mix(dev, lanes, params):
    d = _bf16_device(dev)
    outer, R, inner = lanes
    r = np.random.default_rng(R + inner)
    n = outer * inner
    x = _values(r, (outer, R, inner), 3.0, special=False) + _round(1.0)
    g = _values(r, x.shape, special=False)
    gamma = Buf(r.uniform(0.5, 2, R).astype(np.float32), "float32") if params else None
    beta = Buf(r.normal(size=R).astype(np.float32), "float32") if params else None
    stats = None
    for xdt, ydt in MIXES2:
        spec = [Buf(x, xdt), gamma, beta, outer, R, inner, 1e-3, _out(x.shape, ydt), _out((n,), "float32"),
                _out((n,), "float32")]
        got = _check(d, "layer_norm", spec, [7, 8, 9], exact=False, what=f"{xdt}->{ydt}")
        if xdt == "bfloat16":
            stats = got[8], got[9]
    for xdt, gdt, dxdt in MIXES3 + [("bfloat16", "bfloat16", None)]:
        spec = [Buf(x, xdt), gamma, Buf(stats[0], "float32"), Buf(stats[1], "float32"), Buf(g, gdt), outer, R, inner,
                _out(x.shape, dxdt) if dxdt else None, _out((R,), "float32") if params else None,
                _out((R,), "float32") if params else None]
        outs = ([8] if dxdt else []) + ([9, 10] if params else [])
        if outs:
            _check(d, "layer_norm_grad", spec, outs, exact=False, what=f"{xdt},{gdt}->{dxdt}")


def test_layer_norm_refuses_other_dtypes_as_the_cpu(dev):
    d = _bf16_device(dev)
    x = _round(np.ones((2, 3)))
    st = _out((2,), "float32")
    msg = _same_error(d, "layer_norm", [Buf(x, "int32"), None, None, 2, 3, 1, 1e-3, _out((2, 3)), st, st])
    assert msg == "layer_norm: expected x of dtype float32, received int32"
    msg = _same_error(d, "layer_norm", [Buf(x, "bfloat16"), None, None, 2, 3, 1, 1e-3, _out((2, 3)), _out((2,)), st])
    assert msg == "layer_norm: expected mean of dtype float32, received bfloat16"
    _same_error(d, "layer_norm", [Buf(x, "bfloat16"), Buf(np.ones(3), "bfloat16"), None, 2, 3, 1, 1e-3,
                                  _out((2, 3)), st, st])


# ---- batch norm (training) ----------------------------------------------------------------------------
@pytest.mark.parametrize("params", [True, False], ids=["gamma_beta", "no_params"])
@pytest.mark.parametrize("view", [(6, 5, 1), (2, 3, 6), (70, 3, 1)], ids=str)
def test_batch_norm_train_on_bfloat16(dev, view, params):
    d = _bf16_device(dev)
    outer, C, inner = view
    r = np.random.default_rng(outer + C)
    x = _values(r, view, 2.0, special=False) + _round(0.5)
    g = _values(r, view, special=False)
    gamma = Buf(r.uniform(0.5, 2, C).astype(np.float32), "float32") if params else None
    beta = Buf(r.normal(size=C).astype(np.float32), "float32") if params else None
    spec = [Buf(x, "bfloat16"), gamma, beta, outer, C, inner, 1e-3, _out(view), _out((C,), "float32"),
            _out((C,), "float32")]
    got = _check(d, "batch_norm_train", spec, [7, 8, 9], exact=False)
    mean, var = Buf(got[8], "float32"), Buf(got[9], "float32")
    for want_dx, want_params in ((True, True), (True, False), (False, True)):
        spec = [Buf(x, "bfloat16"), gamma, mean, var, Buf(g, "bfloat16"), outer, C, inner, 1e-3,
                _out(view) if want_dx else None, _out((C,), "float32") if want_params else None,
                _out((C,), "float32") if want_params else None]
        outs = ([9] if want_dx else []) + ([10, 11] if want_params else [])
        _check(d, "batch_norm_train_grad", spec, outs, exact=False, what=f"dx={want_dx} params={want_params}")


def test_batch_norm_train_refuses_mixed_dtypes(dev):
    d = _bf16_device(dev)
    x = _round(np.ones((2, 3, 1)))
    st = _out((3,), "float32")
    _same_error(d, "batch_norm_train", [Buf(x, "bfloat16"), None, None, 2, 3, 1, 1e-3, _out((2, 3, 1), "float32"),
                                        st, st])
    _same_error(d, "batch_norm_train", [Buf(x, "bfloat16"), Buf(np.ones(3), "bfloat16"), None, 2, 3, 1, 1e-3,
                                        _out((2, 3, 1)), st, st])
    _same_error(d, "batch_norm_train_grad", [Buf(x, "bfloat16"), None, st, st, Buf(x, "float32"), 2, 3, 1, 1e-3,
                                             _out((2, 3, 1)), None, None])


# ---- pooling ---------------------------------------------------------------------------------------------
POOLS = {  # input shape, window, strides, pads (top, bottom, left, right)
    "2x2": ((2, 6, 6, 3), (2, 2), (2, 2), (0, 0, 0, 0)),
    "3x3_overlap": ((1, 7, 6, 2), (3, 3), (1, 2), (1, 1, 1, 1)),
    "pad_only_windows": ((1, 2, 3, 2), (2, 2), (2, 2), (3, 3, 2, 2)),  # some windows lie in the padding
    "1d": ((2, 1, 9, 4), (1, 3), (1, 2), (0, 0, 1, 0)),
}


def _pool_out(xs, window, strides, pads):
    hh, ww = xs[1] + pads[0] + pads[1], xs[2] + pads[2] + pads[3]
    oh = (hh - window[0]) // strides[0] + 1 if hh >= window[0] else 0
    ow = (ww - window[1]) // strides[1] + 1 if ww >= window[1] else 0
    return (xs[0], oh, ow, xs[3])


@pytest.mark.parametrize("mode", [MAX_POOL, AVG_POOL], ids=["max", "average"])
@pytest.mark.parametrize("case", sorted(POOLS))
def test_pool2d_on_bfloat16(dev, case, mode):
    """Max pooling: the first maximum (NaN first), its own bits and index, ties to the first; average
    pooling summed in float32 and rounded once; both gradients summed in float32, rounded once."""
    d = _bf16_device(dev)
    xs, window, strides, pads = POOLS[case]
    os_ = _pool_out(xs, window, strides, pads)
    r = np.random.default_rng(len(case) + mode)
    x = _values(r, xs, special=False)
    flat = x.reshape(-1)
    k = flat[1::5].size
    flat[0:5 * k:5] = flat[1::5]  # ties
    flat[7] = NAN
    geo = [list(window), list(strides), list(pads)]
    idx = None
    for with_idx in ((True, False) if mode == MAX_POOL else (False,)):
        spec = [mode, Buf(x, "bfloat16"), list(xs), _out(os_), list(os_), *geo,
                _out(os_, "int32") if with_idx else None]
        got = _check(d, "pool2d_forward", spec, [3] + ([8] if with_idx else []), exact=mode == MAX_POOL,
                     what=f"indices={with_idx}")
        if with_idx:
            idx = Buf(got[8], "int32")
    g = _values(r, os_, special=False)
    spec = [mode, list(xs), Buf(g, "bfloat16"), list(os_), _out(xs), *geo, idx]
    _check(d, "pool2d_backward", spec, [4], exact=False)


def test_pool2d_refuses_mixed_dtypes(dev):
    d = _bf16_device(dev)
    x = _round(np.ones((1, 2, 2, 1)))
    geo = [[2, 2], [2, 2], [0, 0, 0, 0]]
    _same_error(d, "pool2d_forward", [MAX_POOL, Buf(x, "bfloat16"), [1, 2, 2, 1], _out((1, 1, 1, 1), "float32"),
                                      [1, 1, 1, 1], *geo, None])
    _same_error(d, "pool2d_forward", [AVG_POOL, Buf(x, "float32"), [1, 2, 2, 1], _out((1, 1, 1, 1)),
                                      [1, 1, 1, 1], *geo, None])
    g = _round(np.ones((1, 1, 1, 1)))
    _same_error(d, "pool2d_backward", [AVG_POOL, [1, 2, 2, 1], Buf(g, "bfloat16"), [1, 1, 1, 1],
                                       _out((1, 2, 2, 1), "float32"), *geo, None])
    _same_error(d, "pool2d_backward", [MAX_POOL, [1, 2, 2, 1], Buf(g, "bfloat16"), [1, 1, 1, 1],
                                       _out((1, 2, 2, 1)), *geo, None])


# ---- element moves ----------------------------------------------------------------------------------------
def test_take_take_along_axis_and_tri_move_bfloat16_bits(dev):
    """take (negative indices too), take_along_axis and tri on bfloat16: the elements' own bits."""
    d = _bf16_device(dev)
    r = np.random.default_rng(8)
    x = _values(r, (3, 5, 4))
    idx = np.array([4, -5, 0, 2, 4], np.int64)
    spec = [Buf(x, "bfloat16"), 3, 5, 4, Buf(idx, "int64"), _out((3, 5, 4))]
    _check(d, "take", spec, [5])
    along = r.integers(-5, 5, size=(3, 2, 4)).astype(np.int32)
    spec = [Buf(x, "bfloat16"), 3, 5, 4, Buf(along, "int32"), 2, _out((3, 2, 4))]
    _check(d, "take_along_axis", spec, [6])
    for k, upper in ((0, False), (1, True), (-2, False), (9, True)):
        _check(d, "tri", [Buf(x, "bfloat16"), 3, 5, 4, k, upper, _out(x.shape)], [6], what=f"k={k} upper={upper}")


# ---- through the ops and the tape -------------------------------------------------------------------------
NATIVE = ("binary", "unary", "unary_grad", "bias_relu", "bias_relu_grad", "softmax", "softmax_grad", "layer_norm",
          "layer_norm_grad", "batch_norm_train", "batch_norm_train_grad", "pool2d_forward", "pool2d_backward",
          "take", "take_along_axis", "tri")


class _Spy:
    """Counts the calls of the NATIVE kernels of a kernel table, and the ones widened or (on a GPU)
    run on the host."""

    def __init__(self, table):
        self.table, self.calls, self.orig = table, {}, {}
        self.widened = dict(table.widened)
        self.fallbacks = getattr(table.inner, "fallbacks", {})
        self.fell_back = dict(self.fallbacks)

    def __enter__(self):
        for n in NATIVE:
            k = self.orig[n] = getattr(self.table, n)

            def spy(*a, _k=k, _n=n, **kw):
                self.calls[_n] = self.calls.get(_n, 0) + 1
                return _k(*a, **kw)
            setattr(self.table, n, spy)
        return self

    def __exit__(self, *exc):
        for n, k in self.orig.items():
            setattr(self.table, n, k)

    def check(self, gpu):
        assert set(self.calls) == set(NATIVE), set(NATIVE) - set(self.calls)
        for n in NATIVE:
            assert self.table.widened.get(n, 0) == self.widened.get(n, 0), n
            if gpu:
                assert self.fallbacks.get(n, 0) == self.fell_back.get(n, 0), (n, self.fallbacks)


def _model(x, b, gamma, beta, w):
    """A mixed precision block on bfloat16 x (4, 6, 6, 5) and bias b (5,): every NATIVE kernel, forward
    and backward; returns (its bfloat16 outputs, a float32 loss)."""
    y = _nn.bias_relu(x, b)  # bias_relu
    p = ops.max_pool(y, 2)  # pool2d max, (4, 3, 3, 5)
    a = ops.average_pool(x, 3, strides=1, padding="same")  # pool2d average
    bn, _, _ = _nn.batch_norm_train(a, axis=-1)  # batch_norm_train
    h = ops.gelu(bn) * ops.sigmoid(bn) + ops.tanh(a) / (ops.abs(a) + 1.0)  # unary, binary
    s = ops.softmax(ops.reshape(p, (4, 45)), axis=-1)  # softmax
    ls = ops.log_softmax(ops.reshape(h, (4, 6, 30)), axis=1)
    ln = _nn.layer_norm(ops.reshape(y, (24, 30)), gamma, beta, axis=-1)  # layer_norm, bfloat16 data
    t = ops.take(ops.reshape(h, (24, 30)), lamina.convert_to_tensor(np.array([3, 0, 3, 20])).to(x.device), axis=0)
    ta = ops.take_along_axis(s, lamina.convert_to_tensor(np.array([[1, 44], [0, 0], [5, 2], [9, 9]])).to(x.device),
                             axis=1)
    tr = ops.tril(ops.reshape(ls, (24, 30)), k=1)
    outs = (y, p, a, bn, h, s, ls, ln, t, ta, tr)
    loss = sum(ops.sum(ops.cast(o, "float32") * wi) for o, wi in zip(outs, w))
    return outs, loss


def test_a_bfloat16_block_runs_the_device_kernels_in_bfloat16_as_on_cpu(dev):
    """Forward values and gradients (x, the bias, layer norm's gamma and beta) on the device equal
    cpu:0's within bfloat16's precision (the float32 sums run in another order); every NATIVE kernel
    ran on the device with its bfloat16 buffers (none widened, none on the host)."""
    d = _bf16_device(dev)
    r = np.random.default_rng(21)
    x0 = _round(r.normal(size=(4, 6, 6, 5)))
    b0 = _round(r.normal(scale=0.5, size=5))
    g0, be0 = r.uniform(0.5, 2, 30).astype(np.float32), r.normal(size=30).astype(np.float32)
    shapes = [(4, 6, 6, 5), (4, 3, 3, 5), (4, 6, 6, 5), (4, 6, 6, 5), (4, 6, 6, 5), (4, 45), (4, 6, 30), (24, 30),
              (4, 30), (4, 2), (24, 30)]
    w = [r.normal(size=s).astype(np.float32) for s in shapes]
    res = []
    for where in ("cpu:0", d):
        vx = lamina.Variable(lamina.convert_to_tensor(x0, dtype="bfloat16").to(where))
        vb = lamina.Variable(lamina.convert_to_tensor(b0, dtype="bfloat16").to(where))
        vg = lamina.Variable(lamina.convert_to_tensor(g0).to(where))
        vbe = lamina.Variable(lamina.convert_to_tensor(be0).to(where))
        wt = [lamina.convert_to_tensor(a).to(where) for a in w]
        spy = _Spy(vx.device.kernels) if where is d else None
        with spy or _Null():
            with lamina.GradientTape() as tape:
                outs, loss = _model(vx, vb, vg, vbe, wt)
            grads = tape.gradient(loss, [vx, vb, vg, vbe])
        assert all(o.dtype == "bfloat16" for o in outs[:7]) and outs[0].device is vx.device
        assert grads[0].dtype == grads[1].dtype == "bfloat16"
        if spy:
            spy.check(d.kind == "gpu")
        res.append([np.asarray(t.to("cpu:0").numpy(), np.float32) for t in (*outs, *grads)])
    names = ["bias_relu", "max_pool", "average_pool", "batch_norm", "elementwise", "softmax", "log_softmax",
             "layer_norm", "take", "take_along_axis", "tril", "dx", "dbias", "dgamma", "dbeta"]
    for what, want, got in zip(names, *res):
        if what in ("bias_relu", "max_pool"):  # exact maths on the same bfloat16 values
            np.testing.assert_array_equal(got, want, err_msg=what)
        else:
            np.testing.assert_allclose(got, want, rtol=3e-2, atol=3e-2 * np.abs(want).max(), err_msg=what)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
