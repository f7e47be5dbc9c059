"""Every elementwise op code the CPU takes, in every dtype it takes it, runs on the device under test
(tests/gpu/conftest.py) itself: binary, unary, unary_grad, clip and where give cpu:0's results (bit
for bit for integers, bool and the exactly rounded float maths; within the tolerances of
test_device_ops.py, or one bfloat16 rounding, for the transcendental ones), on edge values (zero
divisors, INT_MIN, negative and oversized shift counts, negative exponents, NaN, infinities, signed
zeros, subnormals), and on a GPU none of them runs on the host (the table's fallbacks counter does
not move; on the host-fallback pair every call does). The op codes and dtypes the CPU refuses
raise its error (type and message) from the device's own kernel."""
import importlib

import numpy as np
import pytest

import lamina

_dm = importlib.import_module("lamina.backend.device")
_cpu = _dm._cpu
BIN, UN, GR = _cpu.BINARY_OPS, _cpu.UNARY_OPS, _cpu.GRAD_OPS
F32, I32, I64, BOOL, I8, BF16 = 0, 1, 2, 3, 4, 5
NP = {F32: np.float32, I32: np.int32, I64: np.int64, BOOL: np.bool_, I8: np.int8, BF16: np.uint16}
INF, NAN = np.inf, np.nan

# ---- values --------------------------------------------------------------------------------------
F32_EDGE = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 7.25, -7.25, 1e-40, -3e-39, 3e38, -3e38, INF, -INF,
                     NAN, 1e-3, 100.0, 2.0, -2.0, 0.3, 1.5, -0.75, 45.0], np.float32)
I32_EDGE = np.array([0, 1, -1, 2, -2, 3, -3, 7, -7, 12, -18, 31, 32, 33, -32, 100, 46341, 65536,
                     2 ** 31 - 1, -2 ** 31, -2 ** 31 + 1], np.int32)
I64_EDGE = np.array([0, 1, -1, 2, -2, 3, -3, 7, -7, 12, -18, 63, 64, 65, -64, 100, 3037000500, 2 ** 32,
                     2 ** 63 - 1, -2 ** 63, -2 ** 63 + 1], np.int64)
INT_EDGE = {I32: I32_EDGE, I64: I64_EDGE}
DTYPE_IDS = {F32: "float32", I32: "int32", I64: "int64", BOOL: "bool", I8: "int8", BF16: "bfloat16"}


def _bf16_bits(a):
    """float32 values rounded to bfloat16 bits (nearest even; a NaN stays a quiet NaN), as types.h."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), r)


def _bf16_values(bits):
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def _floats(rng, shape, scale=4.0):
    return (rng.normal(size=shape) * scale).astype(np.float32)


def _ints(rng, code, shape):
    """Small values (many zero divisors and equal operands), and some across the whole range."""
    info = np.iinfo(NP[code])
    a = rng.integers(-40, 41, size=shape).astype(NP[code])
    big = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(NP[code])
    return np.where(rng.random(shape) < 0.3, big, a)


# ---- calls ----------------------------------------------------------------------------------------
class Buf:
    """A buffer argument: the numpy array `a` held as dtype `code` (bfloat16: `a` is float32, rounded)."""

    def __init__(self, a, code):
        self.a, self.code = np.asarray(a), code


def _out(shape, code):
    """An output; it starts as a sentinel, so that an element the kernel does not write shows."""
    if code in (F32, BF16):
        return Buf(np.full(shape, -123.5, np.float32), code)
    return Buf(np.full(shape, True if code == BOOL else -77, NP[code]), code)


def _run(device, kernel, spec):
    """Calls `kernel` (a table's function) with spec's Bufs as buffers on `device`; returns each Buf's
    values afterwards (bfloat16 as its bits), None for the other arguments."""
    bufs, args = [], []
    for s in spec:
        if isinstance(s, Buf):
            a = _bf16_bits(s.a) if s.code == BF16 else np.ascontiguousarray(s.a, NP[s.code])
            b = device.from_numpy(np.ascontiguousarray(a), s.code)
            bufs.append((b, s.a.shape))
            args.append(b)
        else:
            bufs.append(None)
            args.append(s)
    kernel(*args)
    k = device.kernels
    return [None if b is None else k.to_numpy(b[0], list(b[1])) for b in bufs]


def _on_device(dev, name, spec):
    """The call on dev through its kernel table; on a GPU it must not have run on the host, on the
    host-fallback pair it must have (the machinery the GPU's missing kernels would take)."""
    fallbacks = dev.kernels.fallbacks
    before = fallbacks.get(name, 0)
    got = _run(dev, getattr(dev.kernels, name), spec)
    moved = fallbacks.get(name, 0) - before
    if dev.kind == "gpu":
        assert moved == 0, f"{name} ran on the host ({moved} calls)"
    else:
        assert moved == 1
    return got


def _check(dev, name, spec, outs, exact=True, what=""):
    if any(isinstance(s, Buf) and s.code == BF16 for s in spec):
        _dm.enable_bfloat16()
    want = _run(lamina.get_device("cpu:0"), getattr(_cpu, name), spec)  # the CPU module's own kernel
    got = _on_device(dev, name, spec)
    for i in outs:
        _compare(got[i], want[i], spec[i].code, exact, f"{name} {what} output {i}")
    return got


def _compare(got, want, code, exact, msg):
    assert got.dtype == want.dtype and got.shape == want.shape, msg
    if code not in (F32, BF16):
        np.testing.assert_array_equal(got, want, err_msg=msg)
        return
    g = _bf16_values(got) if code == BF16 else got
    w = _bf16_values(want) if code == BF16 else want
    nan = np.isnan(w)
    np.testing.assert_array_equal(np.isnan(g), nan, err_msg=msg + ": NaN positions")
    if exact:  # the same bits (signed zeros too), NaN's payload aside
        bits = np.uint16 if code == BF16 else np.uint32
        np.testing.assert_array_equal(np.asarray(got)[~nan].view(bits), np.asarray(want)[~nan].view(bits),
                                      err_msg=msg)
        return
    inf = np.isinf(w)
    np.testing.assert_array_equal(g[inf], w[inf], err_msg=msg + ": infinities")
    fin = ~nan & ~inf
    # test_device_ops.py's tolerances for float32; one bfloat16 rounding (a flipped last bit) for bfloat16
    rtol, atol = (2 ** -7, 1e-30) if code == BF16 else (2e-5, 2e-6)
    np.testing.assert_allclose(g[fin].astype(np.float64), w[fin].astype(np.float64), rtol=rtol, atol=atol,
                               err_msg=msg)


def _same_error(dev, name, spec):
    """The call raises the same error, type and message, on cpu:0 and from dev's own kernel (the
    module's function: an error the module answered with KernelUnsupported would not be its own)."""
    errs = []
    for device, kernel in ((lamina.get_device("cpu:0"), getattr(_cpu, name)), (dev, getattr(dev.kernels.module, name))):
        with pytest.raises((TypeError, ValueError)) as e:
            _run(device, kernel, spec)
        errs.append((type(e.value), str(e.value)))
    assert errs[0] == errs[1]
    return errs[0][1]


# ---- binary ----------------------------------------------------------------------------------------
COMPARE = ["EQ", "NE", "LT", "LE", "GT", "GE"]
FLOAT_BINARY = ["ADD", "SUB", "MUL", "DIV", "POW", "MAXIMUM", "MINIMUM", "FLOORDIV", "MOD", "FMOD", "FMAX", "FMIN",
                "ARCTAN2", "HYPOT", "COPYSIGN", "NEXTAFTER", "HEAVISIDE", "LDEXP", "LOGADDEXP2"]
INT_BINARY = ["ADD", "SUB", "MUL", "DIV", "POW", "MAXIMUM", "MINIMUM", "FLOORDIV", "MOD", "FMOD", "FMAX", "FMIN",
              "AND", "OR", "XOR", "LEFT_SHIFT", "RIGHT_SHIFT", "GCD", "LCM"]
BF16_BINARY = [op for op in FLOAT_BINARY if op != "NEXTAFTER"]
# libm's transcendental functions (CUDA's differ from glibc's by a few ulps); the rest round exactly
INEXACT_BINARY = {"POW", "ARCTAN2", "LOGADDEXP2"}


def _layouts(edge, rng, make):
    """(a, b) pairs: every edge value against every other (broadcast), equal shapes, and a scalar
    operand on either side."""
    a, b = make(rng, (3, 17)), make(rng, (3, 17))
    b.ravel()[::4] = a.ravel()[::4]  # equal operands: ties of maxima, comparisons, gcd
    return {"grid": (edge.reshape(-1, 1), edge.reshape(1, -1)), "same": (a, b),
            "scalar_b": (make(rng, (4, 5)), edge[5 % edge.size].reshape(())),
            "scalar_a": (edge[4 % edge.size].reshape(()), make(rng, (2, 7)))}


def _binary(dev, op, code, edge, make, exact):
    rng = np.random.default_rng(BIN[op] + 100 * code)
    cmp = op in COMPARE
    for layout, (a, b) in _layouts(edge, rng, make).items():
        os_ = np.broadcast_shapes(a.shape, b.shape)
        out = _out(os_, BOOL if cmp else code)
        spec = [BIN[op], Buf(a, code), list(a.shape), Buf(b, code), list(b.shape), out, list(os_)]
        _check(dev, "binary", spec, [5], exact=exact or cmp, what=f"{op} {DTYPE_IDS[code]} {layout}")


@pytest.mark.parametrize("op", FLOAT_BINARY + COMPARE)
def test_binary_float32(dev, op):
    _binary(dev, op, F32, F32_EDGE, _floats, op not in INEXACT_BINARY)


@pytest.mark.parametrize("op", BF16_BINARY + COMPARE)
def test_binary_bfloat16(dev, op):
    edge = _bf16_values(_bf16_bits(F32_EDGE))
    _binary(dev, op, BF16, edge, lambda r, s: _bf16_values(_bf16_bits(_floats(r, s))), op not in INEXACT_BINARY)


@pytest.mark.parametrize("code", [I32, I64], ids=["int32", "int64"])
@pytest.mark.parametrize("op", INT_BINARY + COMPARE)
def test_binary_integers(dev, op, code):
    _binary(dev, op, code, INT_EDGE[code], lambda r, s: _ints(r, code, s), True)


@pytest.mark.parametrize("op", ["AND", "MUL", "MINIMUM", "OR", "ADD", "MAXIMUM", "XOR"] + COMPARE)
def test_binary_bool(dev, op):
    edge = np.array([False, True])
    _binary(dev, op, BOOL, edge, lambda r, s: r.random(s) < 0.5, True)


def test_integer_edge_cases_are_numpys(dev):
    """A few of the answers above spelled out: division and modulo by zero give 0, INT_MIN // -1 wraps
    to INT_MIN, shifts by a negative count or by the width shift everything out, negative exponents
    truncate, gcd / lcm take magnitudes and lcm wraps."""
    imin = -2 ** 31
    cases = {  # op: (a, b, a op b)
        "DIV": ([7, imin, -7], [0, -1, 2], [0, imin, -3]),
        "FLOORDIV": ([7, imin, -7], [0, -1, 2], [0, imin, -4]),
        "MOD": ([7, imin, -7], [0, -1, 2], [0, 0, 1]),
        "FMOD": ([7, imin, -7], [0, -1, 2], [0, 0, -1]),
        "LEFT_SHIFT": ([1, 1, 3], [-1, 32, 31], [0, 0, imin]),
        "RIGHT_SHIFT": ([-8, -8, 8], [-1, 40, 2], [-1, -1, 2]),
        "POW": ([2, -1, 3], [-1, -3, 21], [0, -1, 3 ** 21 - 2 * 2 ** 32]),  # 3^21 wraps
        "GCD": ([imin, -12, 0], [6, 18, 0], [2, 6, 0]),
        "LCM": ([imin, -4, 0], [3, 6, 5], [imin, 12, 0]),  # 3 * 2^31 wraps
    }
    for op, (a, b, want) in cases.items():
        spec = [BIN[op], Buf(np.array(a), I32), [3], Buf(np.array(b), I32), [3], _out((3,), I32), [3]]
        got = _on_device(dev, "binary", spec)[5]
        np.testing.assert_array_equal(got, np.array(want, np.int32), err_msg=op)


def test_binary_refuses_what_the_cpu_refuses(dev):
    def spec(op, code, out_code=None):
        a = np.arange(6) % 3 > 0 if code == BOOL else np.arange(6.0) - 2
        return [BIN[op], Buf(a, code), [6], Buf(a, code), [6], _out((6,), code if out_code is None else out_code), [6]]

    for op in sorted(set(INT_BINARY) - set(FLOAT_BINARY)):  # the integer ops: not for float32 or bfloat16
        assert "float32" in _same_error(dev, "binary", spec(op, F32))
        assert "bfloat16" in _same_error(dev, "binary", spec(op, BF16))
    assert "bfloat16" in _same_error(dev, "binary", spec("NEXTAFTER", BF16))
    for code in (I32, I64):
        for op in sorted(set(FLOAT_BINARY) - set(INT_BINARY)):
            assert DTYPE_IDS[code] in _same_error(dev, "binary", spec(op, code))
    for op in ("SUB", "DIV", "POW", "FLOORDIV", "MOD", "GCD", "LEFT_SHIFT", "ARCTAN2"):
        assert "bool" in _same_error(dev, "binary", spec(op, BOOL))
    _same_error(dev, "binary", spec("ADD", I8))
    _same_error(dev, "binary", spec("GCD", I32, I64))  # the output's dtype is checked before the op code
    _same_error(dev, "binary", spec("LT", F32, F32))  # comparisons write bool


# ---- unary -----------------------------------------------------------------------------------------
CLASSIFY = ["ISNAN", "ISINF", "ISFINITE", "SIGNBIT"]
FLOAT_UNARY = sorted(set(UN) - set(CLASSIFY) - {"LOGICAL_NOT", "BITWISE_NOT"})
INT_UNARY = ["NEG", "ABS", "SQUARE", "SIGN", "RELU", "FLOOR", "CEIL", "ROUND", "TRUNC", "BITWISE_NOT"]
EXACT_UNARY = {"NEG", "ABS", "RELU", "RELU6", "LEAKY_RELU", "SQUARE", "SIGN", "SQRT", "RECIPROCAL", "FLOOR", "CEIL",
               "ROUND", "TRUNC", "HARD_SIGMOID"}


def _unary_inputs(rng):
    """The edge values, the domains of arcsin / arctanh ((-1, 1)) and arccosh ([1, inf)), and a spread."""
    return np.concatenate([F32_EDGE, np.linspace(-1, 1, 41, dtype=np.float32), np.float32(1) + np.abs(_floats(rng, 20)),
                           _floats(rng, 60), np.float32([0.5, 1.5, 2.5, -0.5, -3.5, 1 - 2 ** -24, -1 + 2 ** -24])])


@pytest.mark.parametrize("code", [F32, BF16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("op", FLOAT_UNARY)
def test_unary_floats(dev, op, code):
    x = _unary_inputs(np.random.default_rng(UN[op]))
    if code == BF16:
        x = _bf16_values(_bf16_bits(x))
    spec = [UN[op], Buf(x, code), _out(x.shape, code), 0.3]
    _check(dev, "unary", spec, [2], exact=op in EXACT_UNARY, what=f"{op} {DTYPE_IDS[code]}")


@pytest.mark.parametrize("code", [I32, I64], ids=["int32", "int64"])
@pytest.mark.parametrize("op", INT_UNARY)
def test_unary_integers(dev, op, code):
    x = np.concatenate([INT_EDGE[code], _ints(np.random.default_rng(UN[op]), code, (50,))])
    spec = [UN[op], Buf(x, code), _out(x.shape, code), 0.0]
    _check(dev, "unary", spec, [2], what=f"{op} {DTYPE_IDS[code]}")


def test_unary_bool(dev):
    x = np.array([True, False, False, True, True])
    for op in ("LOGICAL_NOT", "BITWISE_NOT"):
        _check(dev, "unary", [UN[op], Buf(x, BOOL), _out(x.shape, BOOL), 0.0], [2], what=op)


@pytest.mark.parametrize("code", [F32, BF16, I32, I64, BOOL, I8], ids=DTYPE_IDS.get)
@pytest.mark.parametrize("op", CLASSIFY)
def test_classification(dev, op, code):
    """By the bits for float32 and bfloat16 (-NaN's sign bit, -0.0); integers and bools are finite,
    and their sign bit is their sign (int8's signbit is no kernel: its error)."""
    if code in (F32, BF16):
        x = np.concatenate([F32_EDGE, -F32_EDGE])
    elif code == BOOL:
        x = np.array([True, False, True])
    else:
        x = np.concatenate([INT_EDGE.get(code, np.array([0, 1, -1, 127, -128])), np.array([0, -5, 5])]).astype(NP[code])
    spec = [UN[op], Buf(x, code), _out(x.shape, BOOL), 0.0]
    if op == "SIGNBIT" and code == I8:
        assert "int8" in _same_error(dev, "unary", spec)
    else:
        _check(dev, "unary", spec, [2], what=f"{op} {DTYPE_IDS[code]}")


def test_unary_refuses_what_the_cpu_refuses(dev):
    f = np.linspace(-2, 2, 6, dtype=np.float32)
    for code in (I32, I64):
        for op in sorted(set(FLOAT_UNARY) - set(INT_UNARY)):
            assert "needs a float tensor" in _same_error(dev, "unary", [UN[op], Buf(f, code), _out((6,), code), 0.0])
    for code in (F32, BF16, I32, I64):
        _same_error(dev, "unary", [UN["LOGICAL_NOT"], Buf(f, code), _out((6,), code), 0.0])
    for code in (F32, BF16):
        _same_error(dev, "unary", [UN["BITWISE_NOT"], Buf(f, code), _out((6,), code), 0.0])
        _same_error(dev, "unary", [UN["ISNAN"], Buf(f, code), _out((6,), code), 0.0])
    b = np.array([True, False])
    for op in ("NEG", "EXP", "ABS", "SQUARE"):
        assert "bool" in _same_error(dev, "unary", [UN[op], Buf(b, BOOL), _out((2,), BOOL), 0.0])
    _same_error(dev, "unary", [UN["NEG"], Buf(b, BOOL), _out((2,), F32), 0.0])
    _same_error(dev, "unary", [UN["ISNAN"], Buf(b, BOOL), _out((2,), I32), 0.0])
    _same_error(dev, "unary", [UN["EXP"], Buf(f, F32), _out((6,), BF16), 0.0])
    _same_error(dev, "unary", [UN["EXP"], Buf(f, F32), _out((5,), F32), 0.0])


def test_unary_refuses_int8_arithmetic_as_the_cpu(dev):
    """int8 tensors hold quantized weights: every arithmetic op code raises, on the CPU too (whose
    kernel once read them as float32, past the buffer's end)."""
    x = np.arange(-3, 3, dtype=np.int8)
    for op in ("NEG", "EXP", "BITWISE_NOT", "ABS"):
        assert "int8 tensors hold quantized weights" in _same_error(dev, "unary", [UN[op], Buf(x, I8), _out((6,), I8), 0.0])


# ---- unary_grad ---------------------------------------------------------------------------------------
EXACT_GRAD = {"RELU_GRAD", "RELU6_GRAD_X", "LEAKY_RELU_GRAD_X", "HARD_SIGMOID_GRAD_X"}


@pytest.mark.parametrize("code", [F32, BF16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("op", sorted(GR))
def test_unary_grad_at_edge_values(dev, op, code):
    """Every saved edge value (+-inf, beyond gelu_tanh's 1e4 cut, NaN) with every kind of incoming
    gradient: at +-inf the derivative is 1 or 0 times the gradient, so a NaN or infinite gradient
    gives NaN there, as on the CPU."""
    saved = np.concatenate([F32_EDGE, np.float32([2e4, -2e4, 5.5, -3.0, 3.0, 6.0])])
    if op.endswith("_Y"):  # an output of sigmoid / tanh
        saved = np.concatenate([saved, np.float32([0.25, 0.75, -0.5])])
    grads = np.float32([1.0, -2.5, 0.0, NAN, INF, -INF, 1e-30])
    s, g = np.repeat(saved, grads.size), np.tile(grads, saved.size)
    if op == "SOFTPLUS_GRAD_X":  # sigmoid(-inf): the CPU's exp(-104) polynomial may leave a subnormal, not 0
        keep = ~((s == -INF) & np.isinf(g))
        s, g = s[keep], g[keep]
    if code == BF16:
        s, g = _bf16_values(_bf16_bits(s)), _bf16_values(_bf16_bits(g))
    spec = [GR[op], Buf(s, code), Buf(g, code), _out(s.shape, code), 0.3]
    _check(dev, "unary_grad", spec, [3], exact=op in EXACT_GRAD, what=f"{op} {DTYPE_IDS[code]}")


# ---- clip, where -----------------------------------------------------------------------------------
@pytest.mark.parametrize("code", [F32, I32, I64], ids=["float32", "int32", "int64"])
def test_clip(dev, code):
    """Integer tensors keep the integers inside [lo, hi] (lo rounds up, hi down, a NaN bound does not
    bound, bounds beyond the type saturate); lo > hi gives hi; a NaN element stays NaN."""
    x = F32_EDGE if code == F32 else np.concatenate([INT_EDGE[code], _ints(np.random.default_rng(4), code, (30,))])
    for lo, hi in ((-5.5, 7.2), (-2.0, 2.0), (NAN, 3.0), (-3.0, NAN), (-1e30, 1e30), (2.0 ** 40, 2.0 ** 70),
                   (-2.0 ** 70, -2.0 ** 40), (5.0, -5.0), (-INF, INF), (0.5, 0.5), (2.0 ** 31 - 0.5, 2.0 ** 63)):
        _check(dev, "clip", [Buf(x, code), lo, hi, _out(x.shape, code)], [3], what=f"[{lo}, {hi}]")


def test_clip_refuses_what_the_cpu_refuses(dev):
    msg = _same_error(dev, "clip", [Buf(np.array([True, False]), BOOL), 0.0, 1.0, _out((2,), BOOL)])
    assert "bool" in msg
    _same_error(dev, "clip", [Buf(np.ones(3), F32), 0.0, 1.0, _out((3,), I32)])
    _same_error(dev, "clip", [Buf(np.ones(3), F32), 0.0, 1.0, _out((2,), F32)])
    for code in (BF16, I8):
        msg = _same_error(dev, "clip", [Buf(np.ones(3), code), 0.0, 1.0, _out((3,), code)])
        assert f"received {DTYPE_IDS[code]}" in msg


def test_where_refuses_int8_as_the_cpu(dev):
    c = Buf(np.array([True, False, True]), BOOL)
    x = Buf(np.array([1, 2, 3], np.int8), I8)
    assert "int8" in _same_error(dev, "where", [c, [3], x, [3], x, [3], _out((3,), I8), [3]])
