"""backend/math.py against numpy: elementwise ops, comparisons, casts, reductions and scans,
forward and gradient, plus the accuracy of the vectorised float kernels on every SIMD variant."""
import math

import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.backend import _cpu
from lamina.backend import math as lm
from opcheck import check_forward, check_grad

T = lamina.convert_to_tensor
ISAS = [isa for isa in ("generic", "avx2", "avx512")
        if ("generic", "avx2", "avx512").index(isa) <= ("generic", "avx2", "avx512").index(_cpu.hardware_simd_isa())]


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs a test once per SIMD variant this CPU supports."""
    before = _cpu.simd_isa()
    _cpu.set_simd_isa(request.param)
    yield request.param
    _cpu.set_simd_isa(before)


def f32(rng, shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


# ---- binary arithmetic ---------------------------------------------------------------------------

BROADCAST_PAIRS = [
    ((3, 4), (3, 4)),
    ((), (3, 4)),          # scalar op tensor
    ((3, 4), ()),
    ((3, 1), (1, 4)),
    ((2, 1, 5), (4, 1)),
    ((5,), (2, 3, 5)),
    ((7, 9), (9,)),        # (N, C) op (C,) row bias
    ((1,), (7,)),
    ((), ()),              # rank 0
    ((0, 3), (1, 3)),      # size-0 dims
    ((2, 0, 3), (3,)),
    ((4, 1, 3, 1), (1, 5, 1, 2)),
]

BINARY = {
    "add": (ops.add, np.add),
    "subtract": (ops.subtract, np.subtract),
    "multiply": (ops.multiply, np.multiply),
    "divide": (ops.divide, np.divide),
    "true_divide": (ops.true_divide, np.true_divide),
    "maximum": (ops.maximum, np.maximum),
    "minimum": (ops.minimum, np.minimum),
    "power": (ops.power, np.power),
    "mod": (ops.mod, np.mod),
    "floor_divide": (ops.floor_divide, np.floor_divide),
    "logaddexp": (ops.logaddexp, np.logaddexp),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("sa,sb", BROADCAST_PAIRS)
def test_binary_forward_broadcasting(name, sa, sb, rng):
    fn, ref = BINARY[name]
    a = f32(rng, sa, 0.5, 3.0) if name == "power" else f32(rng, sa)
    b = f32(rng, sb, 0.5, 2.0) * np.where(rng.random(sb) < 0.5, -1, 1).astype(np.float32)
    if name == "power":
        b = f32(rng, sb, -2.0, 2.0)
    check_forward(fn, ref, [a, b], atol=1e-6, rtol=2e-6)


@pytest.mark.parametrize("name", ["add", "subtract", "multiply", "divide", "maximum", "minimum"])
def test_float_binary_kernels_on_every_simd_variant(name, isa, rng):
    """float32 add / subtract / multiply / divide / maximum / minimum run per SIMD variant: each gives
    numpy's result bit for bit, on same-shape, scalar and row-bias layouts, lengths with vector
    remainders, above the parallel grain, and with NaN, infinities and signed zeros (maximum and
    minimum propagate NaN from either side)."""
    fn, ref = BINARY[name]
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 3e38, 1e-45], np.float32)
    for sa, sb in [((37,), (37,)), ((5, 33), ()), ((), (2, 19)), ((131, 17), (17,)), ((3, 1, 40), (1, 7, 40)),
                   ((300_001,), (300_001,)), ((1001, 300), (300,)), ((9, 9), (9, 9))]:
        a, b = f32(rng, sa), f32(rng, sb) + np.float32(0.25)
        if sa == (9, 9):  # every pair of special values
            a = np.repeat(special, 9).reshape(9, 9)
            b = np.tile(special, 9).reshape(9, 9)
        with np.errstate(all="ignore"):
            want = ref(a, b).astype(np.float32)
        got = fn(lamina.convert_to_tensor(a), lamina.convert_to_tensor(b)).numpy()
        np.testing.assert_array_equal(got, want, err_msg=f"{name} {sa} {sb} on {isa}")
        assert np.array_equal(np.signbit(got), np.signbit(want)) or name in ("maximum", "minimum"), (name, sa, isa)


GRAD_PAIRS = [((3, 4), (3, 4)), ((), (2, 3)), ((3, 1), (1, 4)), ((2, 1, 5), (4, 1)), ((4, 3), (3,)), ((), ())]


@pytest.mark.parametrize("name", ["add", "subtract", "multiply", "divide", "maximum", "minimum", "power", "logaddexp"])
@pytest.mark.parametrize("sa,sb", GRAD_PAIRS)
def test_binary_grad_broadcasting(name, sa, sb, rng):
    fn, ref = BINARY[name]
    a = rng.uniform(0.5, 2.0, sa)
    b = rng.uniform(0.5, 2.0, sb) * (1 if name == "power" else np.where(rng.random(sb) < 0.5, -1, 1))
    check_grad(fn, ref, [a, b])


def test_mod_and_floor_divide_grads(rng):
    y = rng.uniform(1.0, 2.0, (3, 4))
    k = rng.integers(-2, 3, (3, 4))
    x = y * (k + rng.uniform(0.2, 0.8, (3, 4)))  # away from the jumps
    check_grad(ops.mod, np.mod, [x, y])
    check_grad(ops.floor_divide, np.floor_divide, [x, y])  # zero, not None


def test_float_mod_and_floor_divide_match_numpy_edge_cases():
    a = np.array([1.0, -1.0, 7.5, -7.5, 0.0, -0.0, 5.0, np.inf, 3.0, 1.0], np.float32)
    b = np.array([0.1, 0.1, -2.0, 2.0, 3.0, -3.0, 0.0, 2.0, np.inf, np.nan], np.float32)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(ops.floor_divide(a, b).numpy(), np.floor_divide(a, b))
        np.testing.assert_array_equal(ops.mod(a, b).numpy(), np.mod(a, b))
        np.testing.assert_array_equal(np.signbit(ops.mod(a, b).numpy()), np.signbit(np.mod(a, b)))


@pytest.mark.parametrize("dt", [np.int32, np.int64])
def test_integer_arithmetic(dt, rng):
    a = rng.integers(-20, 20, (4, 5)).astype(dt)
    b = rng.integers(-6, 7, (5,)).astype(dt)
    b[b == 0] = 3
    for fn, ref in [(ops.add, np.add), (ops.subtract, np.subtract), (ops.multiply, np.multiply),
                    (ops.maximum, np.maximum), (ops.minimum, np.minimum), (ops.floor_divide, np.floor_divide),
                    (ops.mod, np.mod)]:
        got = fn(a, b)
        assert got.dtype == np.dtype(dt).name
        np.testing.assert_array_equal(got.numpy(), ref(a, b))
    q = ops.divide(a, b)  # true division gives float32
    assert q.dtype == "float32"
    np.testing.assert_allclose(q.numpy(), a / b, rtol=1e-6)
    e = np.abs(b) % 4
    np.testing.assert_array_equal(ops.power(a, e).numpy(), np.power(a, e))


def test_integer_division_by_zero_does_not_crash():
    a = np.array([7, -7, 0, np.iinfo(np.int32).min], np.int32)
    b = np.array([0, 0, 0, -1], np.int32)
    np.testing.assert_array_equal(ops.floor_divide(a, b).numpy(), [0, 0, 0, np.iinfo(np.int32).min])
    np.testing.assert_array_equal(ops.mod(a, b).numpy(), [0, 0, 0, 0])


def test_maximum_minimum_propagate_nan():
    a = np.array([np.nan, 1.0, np.nan, 2.0], np.float32)
    b = np.array([1.0, np.nan, np.nan, 3.0], np.float32)
    np.testing.assert_array_equal(ops.maximum(a, b).numpy(), np.maximum(a, b))
    np.testing.assert_array_equal(ops.minimum(a, b).numpy(), np.minimum(a, b))


def test_maximum_ties_send_gradient_to_first_operand():
    x, y = T(np.array([1.0, 2.0, 3.0], np.float32)), T(np.array([1.0, 5.0, 3.0], np.float32))
    with lamina.GradientTape() as tape:
        tape.watch([x, y])
        z = ops.sum(ops.maximum(x, y))
    gx, gy = tape.gradient(z, [x, y])
    np.testing.assert_array_equal(gx.numpy(), [1, 0, 1])
    np.testing.assert_array_equal(gy.numpy(), [0, 1, 0])


def test_power_special_exponents_and_gradient_at_zero():
    x = np.array([-2.0, -0.0, 0.0, 0.5, 3.0, np.inf, np.nan], np.float32)
    for e in (0.0, 1.0, 2.0, -1.0, 3.0, 0.5):
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(ops.power(x, e).numpy(), np.power(x, np.float32(e)))
    t = T(np.array([0.0, 2.0], np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(t)
        y = ops.sum(ops.power(t, 2.0))
    np.testing.assert_allclose(tape.gradient(y, t).numpy(), [0.0, 4.0])


# ---- Python and numpy operands ----------------------------------------------------------------------

def test_python_and_numpy_operands_on_either_side(rng):
    a = f32(rng, (2, 3), 0.5, 2.0)
    t = T(a)
    n = f32(rng, (3,), 0.5, 2.0)
    cases = [
        (t + 2, a + 2), (2 + t, 2 + a), (t - 1.5, a - 1.5), (1.5 - t, 1.5 - a), (t * 3, a * 3), (3 * t, 3 * a),
        (t / 4, a / 4), (4 / t, 4 / a), (t ** 2, a ** 2), (2 ** t, np.float32(2) ** a), (t // 0.3, a // np.float32(0.3)),
        (7 % t, np.float32(7) % a), (t + n, a + n), (n - t, n - a), (n * t, n * a), (t + np.float32(1), a + 1),
        (-t, -a), (+t, a), (abs(t - 1), np.abs(a - 1)), (ops.add(n, 1.0), n + 1), (ops.multiply(2, 3), np.array(6)),
    ]
    for got, want in cases:
        assert isinstance(got, lamina.Tensor)
        np.testing.assert_allclose(got.numpy(), want, rtol=2e-6)


def test_operand_dtype_rules():
    i = T(np.array([1, 2, 3], np.int32))
    assert (i + 2).dtype == "int32"
    r = i + 1.5  # an int tensor with a float operand computes in float32
    assert r.dtype == "float32"
    np.testing.assert_allclose(r.numpy(), [2.5, 3.5, 4.5])
    assert (1.5 * i).dtype == "float32"
    assert (i * np.float32(0.5)).dtype == "float32"
    assert (T(np.array([1.0], np.float32)) + 2).dtype == "float32"
    b = T(np.array([True, False]))
    assert (b + 1).dtype == "int64"
    np.testing.assert_array_equal((b + 1).numpy(), [2, 1])
    assert (b & True).dtype == "bool"
    assert (i / 2).dtype == "float32"


def test_scalar_cache_keeps_negative_zero():
    x = T(np.array([1.0, -1.0], np.float32))
    np.testing.assert_array_equal(np.signbit((x * 0.0).numpy()), [False, True])
    np.testing.assert_array_equal(np.signbit((x * -0.0).numpy()), [True, False])


# ---- comparisons and logic ----------------------------------------------------------------------------

COMPARE = [(ops.equal, np.equal), (ops.not_equal, np.not_equal), (ops.less, np.less),
           (ops.less_equal, np.less_equal), (ops.greater, np.greater), (ops.greater_equal, np.greater_equal)]


@pytest.mark.parametrize("fn,ref", COMPARE)
@pytest.mark.parametrize("sa,sb", [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((), (5,)), ((2, 0), (1,))])
def test_comparisons(fn, ref, sa, sb, rng):
    a = rng.integers(0, 3, sa).astype(np.float32)
    b = rng.integers(0, 3, sb).astype(np.float32)
    got = fn(a, b)
    assert got.dtype == "bool"
    np.testing.assert_array_equal(got.numpy(), ref(a, b))
    np.testing.assert_array_equal(fn(a.astype(np.int64), b.astype(np.int64)).numpy(), ref(a, b))
    np.testing.assert_array_equal(fn(T(a), 1).numpy(), ref(a, 1))


def test_comparisons_with_nan_and_operators():
    a = np.array([np.nan, 1.0, 2.0], np.float32)
    t = T(a)
    for got, want in [(t == 1.0, a == 1), (t != t, a != a), (t < 2, a < 2), (t <= 2, a <= 2),
                      (t > 1, a > 1), (t >= 1, a >= 1), (2 > t, 2 > a), (np.float32(1) == t, a == 1)]:
        np.testing.assert_array_equal(got.numpy(), want)


def test_eq_ne_with_non_array_like_fall_back_to_identity():
    t = T(np.array([1.0, 2.0], np.float32))
    assert (t == None) is False  # noqa: E711
    assert (t != None) is True  # noqa: E711
    assert (None == t) is False  # noqa: E711
    assert (t == "abc") is False
    assert (t == object()) is False
    assert t in [None, "x", t]
    assert {t: 1}[t] == 1
    np.testing.assert_array_equal((t == [1.0, 5.0]).numpy(), [True, False])


def test_logical_ops():
    a = np.array([[True, False, True, False]])
    b = np.array([[True], [False]])
    for fn, ref in [(ops.logical_and, np.logical_and), (ops.logical_or, np.logical_or),
                    (ops.logical_xor, np.logical_xor)]:
        np.testing.assert_array_equal(fn(a, b).numpy(), ref(a, b))
    x = np.array([0.0, -1.5, np.nan, 2.0], np.float32)  # truth values of floats
    np.testing.assert_array_equal(ops.logical_and(x, 1.0).numpy(), np.logical_and(x, 1.0))
    np.testing.assert_array_equal(ops.logical_not(x).numpy(), np.logical_not(x))
    ta, tb = T(a), T(b)
    np.testing.assert_array_equal((ta & tb).numpy(), a & b)
    np.testing.assert_array_equal((ta | tb).numpy(), a | b)
    np.testing.assert_array_equal((ta ^ tb).numpy(), a ^ b)
    np.testing.assert_array_equal((~ta).numpy(), ~a)
    np.testing.assert_array_equal((True & tb).numpy(), True & b)


def test_where_forward_and_grad(rng):
    c = rng.random((3, 1)) < 0.5
    x = f32(rng, (1, 4))
    y = f32(rng, (3, 4))
    np.testing.assert_array_equal(ops.where(c, x, y).numpy(), np.where(c, x, y))
    np.testing.assert_array_equal(ops.where(c, x, 0.0).numpy(), np.where(c, x, np.float32(0)))
    np.testing.assert_array_equal(ops.where(c.astype(np.float32), 1, 2).numpy(), np.where(c, 1, 2))
    check_grad(lambda a, b: ops.where(T(c), a, b), lambda a, b: np.where(c, a, b), [x.astype(np.float64), y.astype(np.float64)])


# ---- unary ops ----------------------------------------------------------------------------------------

def _np_sigmoid(x):
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])

UNARY = {  # name: (op, float64 reference, input range)
    "exp": (ops.exp, np.exp, (-10, 10)),
    "exp2": (ops.exp2, np.exp2, (-10, 10)),
    "expm1": (ops.expm1, np.expm1, (-3, 3)),
    "log": (ops.log, np.log, (0.01, 10)),
    "log2": (ops.log2, np.log2, (0.01, 10)),
    "log10": (ops.log10, np.log10, (0.01, 10)),
    "log1p": (ops.log1p, np.log1p, (-0.9, 5)),
    "sqrt": (ops.sqrt, np.sqrt, (0.01, 10)),
    "rsqrt": (ops.rsqrt, lambda x: 1 / np.sqrt(x), (0.1, 10)),
    "tanh": (ops.tanh, np.tanh, (-5, 5)),
    "sigmoid": (ops.sigmoid, _np_sigmoid, (-10, 10)),
    "erf": (ops.erf, _erf, (-3, 3)),
    "sin": (ops.sin, np.sin, (-4, 4)),
    "cos": (ops.cos, np.cos, (-4, 4)),
    "reciprocal": (ops.reciprocal, np.reciprocal, (0.2, 3)),
    "square": (ops.square, np.square, (-3, 3)),
    "abs": (ops.abs, np.abs, (-3, 3)),
    "absolute": (ops.absolute, np.abs, (-3, 3)),
    "negative": (ops.negative, np.negative, (-3, 3)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("shape", [(), (1,), (5, 7), (0, 3), (3, 1, 4)])
def test_unary_forward(name, shape, rng, isa):
    fn, ref, (lo, hi) = UNARY[name]
    x = f32(rng, shape, lo, hi)
    check_forward(fn, ref, [x], atol=1e-6, rtol=2e-6)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_grad(name, rng):
    fn, ref, (lo, hi) = UNARY[name]
    x = rng.uniform(lo, hi, (3, 4))
    if name in ("abs", "absolute"):
        x[np.abs(x) < 0.05] = 0.5  # away from the kink
    check_grad(fn, ref, [x], rtol=2e-3)


@pytest.mark.parametrize("name,fn,ref", [("floor", ops.floor, np.floor), ("ceil", ops.ceil, np.ceil),
                                         ("round", ops.round, np.round), ("sign", ops.sign, np.sign)])
def test_piecewise_constant_ops(name, fn, ref, rng):
    x = np.array([-2.5, -1.5, -0.5, -0.0, 0.0, 0.5, 1.5, 2.5, 0.7, -0.7, np.inf, -np.inf, np.nan], np.float32)
    got = fn(T(x)).numpy()
    np.testing.assert_array_equal(got, ref(x))
    np.testing.assert_array_equal(np.signbit(got), np.signbit(ref(x)))
    xi = np.array([-3, 0, 4], np.int32)
    gi = fn(T(xi))
    assert gi.dtype == "int32"
    np.testing.assert_array_equal(gi.numpy(), ref(xi))
    # the gradient is zero (not None) away from the jumps
    base = rng.integers(-3, 3, (3, 4)) + rng.uniform(0.2, 0.4, (3, 4))
    check_grad(fn, ref, [base])


def test_round_decimals():
    x = np.array([1.2345, -2.5551, 12.5, 0.125], np.float32)
    np.testing.assert_allclose(ops.round(x, 2).numpy(), np.round(x, 2), rtol=1e-6)
    np.testing.assert_allclose(ops.round(x, -1).numpy(), np.round(x, -1), rtol=1e-6)
    np.testing.assert_array_equal(ops.round(np.array([15, 25, -35], np.int32), -1).numpy(), [20, 20, -40])


SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 88.72, 88.73, 89.0, -87.5, -100.0, -103.9,
                    -104.0, -120.0, 1e-40, 3e-39, -1e-40, 1e30, -1e30, 1e-8, -1e-8, 20.0, -20.0, 0.5, 0.625,
                    0.63, 3.4e38, -3.4e38], np.float32)


@pytest.mark.parametrize("name", ["exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "tanh", "sigmoid", "erf",
                                  "sqrt", "rsqrt", "reciprocal"])
def test_unary_special_values(name, isa):
    fn, ref, _ = UNARY[name]
    with np.errstate(all="ignore"):
        want = ref(SPECIAL.astype(np.float64)).astype(np.float32)
    got = fn(T(SPECIAL)).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"NaN pattern of {name}")
    np.testing.assert_array_equal(np.isinf(got) & (got > 0), np.isinf(want) & (want > 0), err_msg=f"+inf of {name}")
    np.testing.assert_array_equal(np.isinf(got) & (got < 0), np.isinf(want) & (want < 0), err_msg=f"-inf of {name}")
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=3e-45, err_msg=name)


def _sweep(lo, hi, n=200001):
    x = np.linspace(lo, hi, n, dtype=np.float32)
    return np.concatenate([x, -np.logspace(-30, np.log10(abs(lo)), 2001, dtype=np.float32)
                           if lo < 0 else np.zeros(0, np.float32),
                           np.logspace(-30, np.log10(hi), 2001, dtype=np.float32) if hi > 0 else np.zeros(0, np.float32)])


def _max_rel_err(got, want, floor=1e-30):
    want = np.asarray(want, np.float64)
    m = np.abs(want) > floor
    return float(np.max(np.abs(got[m].astype(np.float64) - want[m]) / np.abs(want[m])))


ACCURACY = {  # vectorised kernels: relative error <= 1e-6 over their range (brief: ~2 ulp)
    "exp": (ops.exp, np.exp, _sweep(-87.0, 88.5)),
    "exp2": (ops.exp2, np.exp2, _sweep(-126.0, 127.9)),
    "expm1": (ops.expm1, np.expm1, _sweep(-30.0, 88.0)),
    "log": (ops.log, np.log, np.logspace(-44, 38, 200001, dtype=np.float32)),
    "log2": (ops.log2, np.log2, np.logspace(-44, 38, 200001, dtype=np.float32)),
    "log10": (ops.log10, np.log10, np.logspace(-44, 38, 200001, dtype=np.float32)),
    "log1p": (ops.log1p, np.log1p, np.concatenate([_sweep(-0.9999, 10.0), np.logspace(-30, 38, 20001, dtype=np.float32)])),
    "tanh": (ops.tanh, np.tanh, _sweep(-12.0, 12.0)),
    "sigmoid": (ops.sigmoid, _np_sigmoid, _sweep(-85.0, 30.0)),
    "erf": (ops.erf, _erf, _sweep(-5.0, 5.0, 50001)),
}


@pytest.mark.parametrize("name", sorted(ACCURACY))
def test_vectorised_kernel_accuracy(name, isa):
    fn, ref, x = ACCURACY[name]
    err = _max_rel_err(fn(T(x)).numpy(), ref(x.astype(np.float64)))
    assert err <= 1e-6, f"{name} on {isa}: max relative error {err:.3g}"


def _gelu(x):
    return 0.5 * x * _erfc(-x / np.sqrt(2.0))


def _gelu_tanh(x):
    u = np.sqrt(8 / np.pi) * (x + 0.044715 * x ** 3)
    return x * _np_sigmoid(u)


ACTIVATIONS = {  # kernel op code: (float64 reference, range, alpha) -- the kernels behind nn's activations
    "GELU": (_gelu, (-12, 12), 0.0),
    "GELU_TANH": (_gelu_tanh, (-8, 8), 0.0),
    "SOFTPLUS": (lambda x: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))), (-80, 80), 0.0),
    "ELU": (lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)), (-20, 5), 0.7),
    "SELU": (lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)), (-20, 5), 0.0),
    "SILU": (lambda x: x * _np_sigmoid(x), (-80, 30), 0.0),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_vectorised_activation_kernels(name, isa):
    ref, (lo, hi), alpha = ACTIVATIONS[name]
    x = np.concatenate([np.linspace(lo, hi, 100001, dtype=np.float32),
                        np.array([0.0, -0.0, 1e-30, -1e-30], np.float32)])
    got = lm._unary_forward(getattr(lm, name), T(x), alpha).numpy()
    err = _max_rel_err(got, ref(x.astype(np.float64)))
    assert err <= 1e-6, f"{name} on {isa}: max relative error {err:.3g}"
    special = np.array([np.inf, -np.inf, np.nan], np.float32)
    with np.errstate(all="ignore"):
        want = ref(np.array([1e30, -1e30, np.nan]))
    got = lm._unary_forward(getattr(lm, name), T(special), alpha).numpy()
    assert np.isnan(got[2]) and got[0] == np.inf
    np.testing.assert_allclose(got[1], want[1], atol=1e-30)


def _d(f, x, h=1e-5):
    return (f(x + h) - f(x - h)) / (2 * h)


GRAD_KERNELS = {  # derivative kernel: (saved is x or y, f, range, alpha)
    "GELU_GRAD_X": ("x", _gelu, (-12, 12), 0.0),
    "GELU_TANH_GRAD_X": ("x", _gelu_tanh, (-8, 8), 0.0),
    "SOFTPLUS_GRAD_X": ("x", lambda x: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))), (-30, 30), 0.0),
    "ELU_GRAD_X": ("x", lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)), (-20, 5), 0.7),
    "SILU_GRAD_X": ("x", lambda x: x * _np_sigmoid(x), (-30, 30), 0.0),
    "SIGMOID_GRAD_Y": ("y", _np_sigmoid, (-15, 15), 0.0),
    "TANH_GRAD_Y": ("y", np.tanh, (-8, 8), 0.0),
}


@pytest.mark.parametrize("name", sorted(GRAD_KERNELS))
def test_vectorised_derivative_kernels(name, isa):
    saved, f, (lo, hi), alpha = GRAD_KERNELS[name]
    x = np.linspace(lo, hi, 20001)
    x = x[np.abs(x) > 1e-3]  # elu's kink
    g = np.linspace(-2, 2, x.size).astype(np.float32)
    s = (x if saved == "x" else f(x)).astype(np.float32)
    got = lm.grad_kernel(getattr(lm, name), T(s), T(g), alpha).numpy()
    want = g * _d(f, x.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_simd_variants_agree(rng):
    x = np.concatenate([f32(rng, (10007,), -30, 30), SPECIAL])
    results = {}
    before = _cpu.simd_isa()
    try:
        for isa in ISAS:
            _cpu.set_simd_isa(isa)
            results[isa] = [f(T(x)).numpy() for f in (ops.exp, ops.tanh, ops.sigmoid, ops.log1p, ops.erf)]
    finally:
        _cpu.set_simd_isa(before)
    for isa in ISAS[1:]:
        for a, b in zip(results["generic"], results[isa]):
            np.testing.assert_allclose(a, b, rtol=5e-7, atol=1e-44)


def test_isnan_isfinite_isinf():
    x = np.array([0.0, np.nan, np.inf, -np.inf, 1.0, -np.nan], np.float32)
    for fn, ref in [(ops.isnan, np.isnan), (ops.isfinite, np.isfinite), (ops.isinf, np.isinf)]:
        np.testing.assert_array_equal(fn(x).numpy(), ref(x))
        np.testing.assert_array_equal(fn(np.array([1, 2], np.int32)).numpy(), ref(np.array([1, 2])))


def test_unary_on_integer_inputs():
    i = np.array([-2, 0, 3], np.int32)
    assert ops.exp(i).dtype == "float32"
    np.testing.assert_allclose(ops.exp(i).numpy(), np.exp(i), rtol=1e-6)
    for fn, ref in [(ops.negative, np.negative), (ops.abs, np.abs), (ops.square, np.square), (ops.sign, np.sign)]:
        got = fn(i)
        assert got.dtype == "int32"
        np.testing.assert_array_equal(got.numpy(), ref(i))


# ---- clip and cast ------------------------------------------------------------------------------

def test_clip_forward_and_grad(rng):
    x = np.array([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0, np.nan, np.inf], np.float32)
    np.testing.assert_array_equal(ops.clip(x, -1, 1).numpy(), np.clip(x, -1, 1))
    np.testing.assert_array_equal(ops.clip(x, None, 0.5).numpy(), np.clip(x, None, 0.5))
    np.testing.assert_array_equal(ops.clip(x, 0, None).numpy(), np.clip(x, 0, None))
    np.testing.assert_array_equal(ops.clip(x, 2, 1).numpy(), np.clip(x, 2, 1))  # lo > hi gives hi, like numpy
    xi = np.array([-5, 0, 3, 9], np.int32)
    got = ops.clip(xi, -1, 4)
    assert got.dtype == "int32"
    np.testing.assert_array_equal(got.numpy(), [-1, 0, 3, 4])
    np.testing.assert_array_equal(ops.clip(xi, -1.5, 4.5).numpy(), [-1, 0, 3, 4])
    lo = f32(rng, (4, 1), -1, 0)
    np.testing.assert_array_equal(ops.clip(f32(rng, (1, 3)) * 0 + x[:3], lo, 0.5).numpy(), np.clip(x[:3], lo, 0.5))
    check_grad(lambda a: ops.clip(a, -0.5, 0.7), lambda a: np.clip(a, -0.5, 0.7),
               [rng.choice([-1.0, -0.3, 0.1, 0.6, 1.0], (3, 4)) + rng.uniform(-0.05, 0.05, (3, 4))])


@pytest.mark.parametrize("lo,hi", [(np.nan, 1.0), (0.0, np.nan), (np.nan, np.nan), (np.float32("nan"), None),
                                   (None, float("nan"))])
def test_clip_with_a_nan_bound_follows_numpy(lo, hi):
    """numpy: a NaN bound makes every value NaN (np.maximum / np.minimum propagate it)."""
    x = np.array([-3.0, 0.5, 2.0, np.inf], np.float32)
    np.testing.assert_array_equal(ops.clip(x, lo, hi).numpy(), np.clip(x, lo, hi).astype(np.float32))
    xi = np.array([-5, 0, 3], np.int32)
    got = ops.clip(xi, lo, hi)
    assert got.dtype == "float32"
    np.testing.assert_array_equal(got.numpy(), np.clip(xi, lo, hi).astype(np.float32))


@pytest.mark.parametrize("src", ["float32", "int32", "int64", "bool"])
@pytest.mark.parametrize("dst", ["float32", "int32", "int64", "bool"])
def test_cast(src, dst):
    base = np.array([-3.7, -1.0, -0.5, 0.0, 0.4, 1.0, 2.9, 100.0])
    a = (base != 0) if src == "bool" else base.astype(src)
    got = ops.cast(T(a), dst)
    assert got.dtype == dst
    np.testing.assert_array_equal(got.numpy(), a.astype(dst))


def test_cast_float_to_float_passes_gradient():
    x = T(np.array([1.0, 2.0], np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(x)
        y = ops.sum(ops.cast(x, "float32") * 3.0)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [3, 3])


# ---- reductions -------------------------------------------------------------------------------------

AXES = [None, 0, 1, 2, -1, -3, (0, 1), (1, 2), (0, 2), (2, 0), (0, 1, 2), (), (-1, 0)]


def _np_lse(x, axis=None, keepdims=False):
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


REDUCE = {
    "sum": (ops.sum, np.sum), "mean": (ops.mean, np.mean), "max": (ops.max, np.max), "min": (ops.min, np.min),
    "prod": (ops.prod, np.prod), "var": (ops.var, np.var), "std": (ops.std, np.std), "logsumexp": (ops.logsumexp, _np_lse),
    "amax": (ops.amax, np.amax), "amin": (ops.amin, np.amin),
}


@pytest.mark.parametrize("name", sorted(REDUCE))
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_forward(name, axis, keepdims, rng):
    fn, ref = REDUCE[name]
    x = f32(rng, (3, 4, 5), 0.5, 1.5)
    check_forward(fn, ref, [x], atol=1e-6, rtol=2e-6, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("name,fn,ref", [("any", ops.any, np.any), ("all", ops.all, np.all),
                                         ("count_nonzero", ops.count_nonzero, np.count_nonzero)])
@pytest.mark.parametrize("axis", AXES)
def test_boolean_reductions(name, fn, ref, axis, rng):
    x = (rng.random((3, 4, 5)) < 0.7) * rng.uniform(-1, 1, (3, 4, 5)).astype(np.float32)
    x[0] = 1.0
    got = fn(x, axis=axis)
    want = ref(x, axis=axis)
    assert got.dtype == ("int64" if name == "count_nonzero" else "bool")
    np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("fn,ref", [(ops.argmax, np.argmax), (ops.argmin, np.argmin)])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, 2])
@pytest.mark.parametrize("keepdims", [False, True])
def test_argmax_argmin(fn, ref, axis, keepdims, rng, isa):
    x = rng.integers(0, 4, (3, 4, 5)).astype(np.float32)  # many ties: the first index wins
    got = fn(x, axis=axis, keepdims=keepdims)
    assert got.dtype == "int64"
    np.testing.assert_array_equal(got.numpy(), ref(x, axis=axis, keepdims=keepdims))
    xi = x.astype(np.int32)
    np.testing.assert_array_equal(fn(xi, axis=axis, keepdims=keepdims).numpy(), ref(xi, axis=axis, keepdims=keepdims))


def test_argmax_nan_and_long_rows(rng, isa):
    x = rng.standard_normal((3, 100003)).astype(np.float32)
    x[0, 70000] = 50.0
    x[0, 90000] = 50.0  # a tie in a later chunk: the first wins
    x[1, 5] = np.nan
    x[1, 80000] = np.nan
    x[2, -1] = -50.0
    for fn, ref in [(ops.argmax, np.argmax), (ops.argmin, np.argmin)]:
        np.testing.assert_array_equal(fn(x, axis=1).numpy(), ref(x, axis=1))
        np.testing.assert_array_equal(fn(x[0]).numpy(), ref(x[0]))
        np.testing.assert_array_equal(fn(x.T.copy(), axis=0).numpy(), ref(x.T, axis=0))
    np.testing.assert_array_equal(ops.argmax(np.array([1.0, np.nan, np.nan], np.float32)).numpy(), 1)
    np.testing.assert_array_equal(ops.argmax(np.array([True, False, True])).numpy(), 0)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "prod", "var", "std", "logsumexp"])
@pytest.mark.parametrize("axis", [None, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_grad(name, axis, keepdims, rng):
    fn, ref = REDUCE[name]
    x = rng.uniform(0.5, 1.5, (2, 3, 4))
    check_grad(fn, ref, [x], axis=axis, keepdims=keepdims)


def test_reductions_rank0_and_empty():
    s = np.float32(2.5)
    for name in ("sum", "mean", "max", "min", "prod", "logsumexp"):
        fn, ref = REDUCE[name]
        check_forward(fn, ref, [np.array(s)], axis=None)
        check_forward(fn, ref, [np.array(s)], axis=())
        assert fn(np.array(s), axis=None).shape == ()
    e = np.zeros((0, 3), np.float32)
    np.testing.assert_array_equal(ops.sum(e, axis=0).numpy(), np.zeros(3))
    np.testing.assert_array_equal(ops.sum(e, axis=1).numpy(), np.zeros(0))
    np.testing.assert_array_equal(ops.prod(e, axis=0).numpy(), np.ones(3))
    assert np.isnan(ops.mean(e).numpy())
    np.testing.assert_array_equal(ops.any(e, axis=0).numpy(), [False] * 3)
    np.testing.assert_array_equal(ops.all(e, axis=0).numpy(), [True] * 3)
    np.testing.assert_array_equal(ops.max(e, axis=0, initial=-1.0).numpy(), [-1.0] * 3)
    np.testing.assert_array_equal(ops.max(e, axis=1).numpy(), np.zeros(0))
    assert ops.logsumexp(e).numpy() == -np.inf
    np.testing.assert_array_equal(ops.max(np.array([1.0, 5.0], np.float32), initial=3.0).numpy(), 5.0)
    np.testing.assert_array_equal(ops.min(np.array([1.0, 5.0], np.float32), initial=0.0).numpy(), 0.0)


def test_max_initial_blocks_gradient():
    x = T(np.array([1.0, 2.0], np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(x)
        y = ops.max(x, initial=5.0)
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [0, 0])


def test_max_gradient_ties_split_equally():
    x = T(np.array([[1.0, 3.0, 3.0, 2.0], [4.0, 4.0, 4.0, 4.0]], np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(x)
        y = ops.sum(ops.max(x, axis=1) * np.array([1.0, 2.0], np.float32))
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [[0, 0.5, 0.5, 0], [0.5, 0.5, 0.5, 0.5]])
    with lamina.GradientTape() as tape:
        tape.watch(x)
        y = ops.min(x)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [[1, 0, 0, 0], [0, 0, 0, 0]])


def test_max_min_propagate_nan(rng, isa):
    for shape, axis in [((5, 3001), 1), ((3001, 5), 0), ((40000,), None), ((2, 40001), -1), ((3, 700, 600), 1)]:
        x = rng.standard_normal(shape).astype(np.float32)
        flat = x.reshape(-1)
        flat[[0, flat.size // 3, flat.size - 1]] = np.nan
        for fn, ref in [(ops.max, np.max), (ops.min, np.min)]:
            np.testing.assert_array_equal(fn(x, axis=axis).numpy(), ref(x, axis=axis))


def test_prod_gradient_with_zeros():
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.5, 2.0, 4.0]])
    check_grad(ops.prod, np.prod, [x], axis=1)
    check_grad(ops.prod, np.prod, [x.T.copy()], axis=0, keepdims=True)


def test_integer_and_bool_reductions(rng, isa):
    xi = rng.integers(-1000, 1000, (6, 7)).astype(np.int32)
    for axis in (None, 0, 1):
        got = ops.sum(xi, axis=axis)
        assert got.dtype == "int32"  # keeps its dtype (Keras); numpy would widen
        np.testing.assert_array_equal(got.numpy(), np.sum(xi, axis=axis).astype(np.int32))
        np.testing.assert_array_equal(ops.max(xi, axis=axis).numpy(), np.max(xi, axis=axis))
        np.testing.assert_array_equal(ops.prod(xi[:, :3] % 5, axis=axis).numpy(),
                                      np.prod(xi[:, :3] % 5, axis=axis).astype(np.int32))
        np.testing.assert_allclose(ops.mean(xi, axis=axis).numpy(), np.mean(xi, axis=axis), rtol=1e-6)
    xl = rng.integers(-2 ** 40, 2 ** 40, (5, 9))
    np.testing.assert_array_equal(ops.sum(xl, axis=1).numpy(), np.sum(xl, axis=1))
    b = rng.random((4, 5)) < 0.5
    got = ops.sum(b, axis=0)
    assert got.dtype == "int64"
    np.testing.assert_array_equal(got.numpy(), np.sum(b, axis=0))
    np.testing.assert_array_equal(ops.max(b, axis=1).numpy(), np.max(b, axis=1))


def test_sum_of_a_million_floats_matches_float64(rng, isa):
    x = rng.uniform(0, 1, 1_000_000).astype(np.float32)
    want = np.sum(x.astype(np.float64))
    np.testing.assert_allclose(ops.sum(x).numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(ops.mean(x).numpy(), want / x.size, rtol=1e-5)
    x2 = x.reshape(2, 500_000)
    np.testing.assert_allclose(ops.sum(x2, axis=1).numpy(), np.sum(x2.astype(np.float64), axis=1), rtol=1e-5)


@pytest.mark.parametrize("shape,axis", [((4096, 37), 0), ((5, 9000, 3), 1), ((2, 3000, 700), 1), ((70000, 1), 0),
                                        ((3, 50000), 1), ((300, 301), (0, 1)), ((40, 30, 50), (0, 2))])
def test_reductions_threaded_layouts(shape, axis, rng, isa):
    x = rng.uniform(-1, 1, shape).astype(np.float32) + 0.5
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(ops.sum(x, axis=axis).numpy(), np.sum(x64, axis=axis), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ops.mean(x, axis=axis).numpy(), np.mean(x64, axis=axis), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ops.max(x, axis=axis).numpy(), np.max(x, axis=axis))
    np.testing.assert_array_equal(ops.min(x, axis=axis).numpy(), np.min(x, axis=axis))


def test_logsumexp_is_stable():
    x = np.array([[1000.0, 1000.0], [-1000.0, -1000.0], [-np.inf, -np.inf], [np.inf, 1.0], [0.0, -np.inf]], np.float32)
    want = np.array([1000 + np.log(2), -1000 + np.log(2), -np.inf, np.inf, 0.0])
    np.testing.assert_allclose(ops.logsumexp(x, axis=1).numpy(), want, rtol=1e-6)
    t = T(np.array([1000.0, 1000.0], np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(t)
        y = ops.logsumexp(t)
    np.testing.assert_allclose(tape.gradient(y, t).numpy(), [0.5, 0.5])


def test_logaddexp_infinities():
    a = np.array([-np.inf, np.inf, -np.inf, 1000.0, 0.0], np.float32)
    b = np.array([-np.inf, np.inf, 3.0, 1000.0, -1e-8], np.float32)
    np.testing.assert_allclose(ops.logaddexp(a, b).numpy(), np.logaddexp(a, b), rtol=1e-6)


# ---- cumulative sums and products ------------------------------------------------------------------

@pytest.mark.parametrize("fn,ref", [(ops.cumsum, np.cumsum), (ops.cumprod, np.cumprod)])
@pytest.mark.parametrize("shape,axis", [((7,), None), ((3, 4, 5), None), ((3, 4, 5), 0), ((3, 4, 5), 1),
                                        ((3, 4, 5), -1), ((2, 0, 3), 1), ((1, 1), 0), ((), None)])
def test_cumulative_forward_and_grad(fn, ref, shape, axis, rng):
    x = rng.uniform(0.5, 1.5, shape)
    check_forward(fn, ref, [x.astype(np.float32)], rtol=2e-6, axis=axis)
    if x.size:  # (opcheck's finite differences cannot iterate over an empty input)
        check_grad(fn, ref, [x], axis=axis)


def test_cumulative_large_and_integer(rng):
    x = rng.uniform(0, 1, (3, 1000, 600)).astype(np.float32)
    np.testing.assert_allclose(ops.cumsum(x, axis=1).numpy(), np.cumsum(x.astype(np.float64), axis=1), rtol=1e-5)
    v = rng.uniform(0, 1, 200000).astype(np.float32)
    np.testing.assert_allclose(ops.cumsum(v).numpy(), np.cumsum(v.astype(np.float64)), rtol=1e-5)
    xi = rng.integers(-5, 5, (4, 6)).astype(np.int32)
    got = ops.cumsum(xi, axis=1)
    assert got.dtype == "int32"
    np.testing.assert_array_equal(got.numpy(), np.cumsum(xi, axis=1))
    np.testing.assert_array_equal(ops.cumprod(xi, axis=0).numpy(), np.cumprod(xi, axis=0))
    b = rng.random(9) < 0.5
    assert ops.cumsum(b).dtype == "int64"
    np.testing.assert_array_equal(ops.cumsum(b).numpy(), np.cumsum(b))
    np.testing.assert_allclose(ops.cumsum(xi, axis=0, dtype="float32").numpy(), np.cumsum(xi, axis=0))


def test_cumprod_gradient_with_zeros():
    x = np.array([[2.0, 0.0, 3.0, 0.5], [0.0, 0.0, 5.0, 1.0], [1.5, 2.0, 0.0, 4.0]])
    check_grad(ops.cumprod, np.cumprod, [x], axis=1)
    check_grad(ops.cumprod, np.cumprod, [x.T.copy()], axis=0)


# ---- kernels: threading and aliasing --------------------------------------------------------------

@pytest.mark.parametrize("sa,sb", [((300, 7, 33), (7, 1)), ((40000,), ()), ((3, 20000), (3, 1)), ((20000, 3), (3,)),
                                   ((1, 50000), (2, 1)), ((257, 129), (129,)), ((5, 1, 9000), (1, 4, 1))])
def test_threaded_broadcast_layouts(sa, sb, rng):
    a, b = f32(rng, sa), f32(rng, sb)
    for fn, ref in [(ops.add, np.add), (ops.multiply, np.multiply), (ops.greater, np.greater)]:
        np.testing.assert_array_equal(fn(a, b).numpy(), ref(a, b))
    c = rng.random(sa) < 0.5
    np.testing.assert_array_equal(ops.where(c, a, b).numpy(), np.where(c, a, b))
    np.testing.assert_array_equal(ops.broadcast_to(b, np.broadcast_shapes(sa, sb)).numpy(),
                                  np.broadcast_to(b, np.broadcast_shapes(sa, sb)))


def test_broadcast_to_and_its_gradient(rng):
    x = rng.uniform(-1, 1, (3, 1))
    check_forward(ops.broadcast_to, np.broadcast_to, [x.astype(np.float32)], shape=(2, 3, 4))
    check_grad(ops.broadcast_to, np.broadcast_to, [x], shape=(2, 3, 4))


def test_binary_kernel_in_place(rng):
    v = lamina.Variable(f32(rng, (50000,)))
    before = v.numpy()
    d = f32(rng, (50000,))
    v.assign_add(d)
    np.testing.assert_allclose(v.numpy(), before + d, rtol=1e-6)


def test_gradient_through_unbroadcast_accumulates(rng):
    b = lamina.Variable(f32(rng, (4,)))
    x = T(f32(rng, (1000, 4)))
    with lamina.GradientTape() as tape:
        y = ops.sum(ops.square(x + b))
    g = tape.gradient(y, b)
    want = np.sum(2 * (x.numpy().astype(np.float64) + b.numpy()), axis=0)
    np.testing.assert_allclose(g.numpy(), want, rtol=1e-5)


def test_all_public_names_are_exported():
    for name in lm.__all__:
        assert callable(getattr(lm, name)), name
        assert getattr(ops, name).__wrapped__ is getattr(lm, name) or name in ("broadcast_to", "sigmoid"), name
    assert "np" not in lm.__all__ and "unbroadcast" not in lm.__all__
