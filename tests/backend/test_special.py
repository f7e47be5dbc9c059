"""backend/special.py against numpy / scipy: the further elementwise functions (trigonometric,
hyperbolic, erfc, erfinv, i0, ...), the binary float functions (arctan2, hypot, fmod, ...) and
the integer functions (bitwise ops, shifts, gcd, lcm): values, special values, dtypes,
broadcasting, gradients against finite differences, and errors."""
import numpy as np
import pytest
import scipy.special as sps

import lamina
from lamina import ops
from lamina.backend import _cpu
from opcheck import check_grad

T = lamina.convert_to_tensor
ISAS = [isa for isa in ("generic", "avx2", "avx512")
        if ("generic", "avx2", "avx512").index(isa) <= ("generic", "avx2", "avx512").index(_cpu.hardware_simd_isa())]


@pytest.fixture(params=ISAS)
def isa(request):
    before = _cpu.simd_isa()
    _cpu.set_simd_isa(request.param)
    yield request.param
    _cpu.set_simd_isa(before)


def ulp_error(got, ref64):
    """|got - ref| in units of the float32 spacing at the reference (inf/NaN must match exactly)."""
    ref32 = ref64.astype(np.float32)
    finite = np.isfinite(ref32)
    np.testing.assert_array_equal(got[~finite], ref32[~finite])
    g, r = got[finite].astype(np.float64), ref64[finite]
    spacing = np.spacing(np.abs(ref32[finite])).astype(np.float64)
    spacing = np.maximum(spacing, np.spacing(np.float32(0)))   # subnormal results: absolute units
    return float(np.max(np.abs(g - r) / spacing)) if g.size else 0.0


# name: (lamina op, float64 reference, sample range (lo, hi), max ulp)
UNARY = {
    "tan": (ops.tan, np.tan, (-1.5, 1.5), 2),
    "arcsin": (ops.arcsin, np.arcsin, (-1.0, 1.0), 2),
    "arccos": (ops.arccos, np.arccos, (-1.0, 1.0), 2),
    "arctan": (ops.arctan, np.arctan, (-50.0, 50.0), 2),
    "sinh": (ops.sinh, np.sinh, (-89.0, 89.0), 2),
    "cosh": (ops.cosh, np.cosh, (-89.0, 89.0), 2),
    "arcsinh": (ops.arcsinh, np.arcsinh, (-1e4, 1e4), 2),
    "arccosh": (ops.arccosh, np.arccosh, (1.0, 1e4), 2),
    "arctanh": (ops.arctanh, np.arctanh, (-1.0, 1.0), 2),
    "cbrt": (ops.cbrt, np.cbrt, (-1e6, 1e6), 1),
    "erfc": (ops.erfc, sps.erfc, (-4.0, 10.0), 1),
    "erfinv": (ops.erfinv, sps.erfinv, (-1.0, 1.0), 1),
    "i0": (ops.i0, sps.i0, (-90.0, 90.0), 1),
}


def _sample(lo, hi, rng):
    x = np.concatenate([np.linspace(lo, hi, 20001), rng.uniform(lo, hi, 5000),
                        np.geomspace(1e-30, max(abs(lo), abs(hi)), 2000) * np.sign(hi)]).astype(np.float32)
    return x[(x >= lo) & (x <= hi)]


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_accuracy_in_ulps(name, rng, isa):
    fn, ref, (lo, hi), max_ulp = UNARY[name]
    x = _sample(lo, hi, rng)
    with np.errstate(all="ignore"):
        want = ref(x.astype(np.float64))
    got = fn(T(x)).numpy()
    assert got.dtype == np.float32 and got.shape == x.shape
    err = ulp_error(got, want)
    assert err <= max_ulp, f"{name} on {isa}: {err:.2f} ulp"


def test_erfinv_near_plus_minus_one_and_tiny():
    x = np.array([1 - 2.0 ** -24, -(1 - 2.0 ** -24), 1 - 2.0 ** -20, 0.9999, 1e-30, -1e-38, 1e-45], np.float32)
    err = ulp_error(ops.erfinv(T(x)).numpy(), sps.erfinv(x.astype(np.float64)))
    assert err <= 1
    # erf(erfinv(x)) == x to float32 precision
    y = ops.erfinv(T(np.linspace(-0.99, 0.99, 101, dtype=np.float32))).numpy()
    np.testing.assert_allclose(sps.erf(y.astype(np.float64)), np.linspace(-0.99, 0.99, 101, dtype=np.float32),
                               rtol=2e-7, atol=1e-8)


SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, np.inf, -np.inf, np.nan, 1e-40, -1e-40,
                    3.4e38, -3.4e38], np.float32)


@pytest.mark.parametrize("name", sorted(UNARY) + ["trunc"])
def test_unary_special_values_match_numpy(name, isa):
    fn = getattr(ops, name)
    ref = UNARY[name][1] if name in UNARY else np.trunc
    with np.errstate(all="ignore"):
        want = ref(SPECIAL.astype(np.float64)).astype(np.float32)
    if name == "i0":   # numpy and scipy give NaN at +-inf; the limit (and torch's value) is +inf
        want[np.isinf(SPECIAL)] = np.inf
    if name == "erfinv":   # an odd function keeps the sign of zero (scipy drops it; C and JAX keep it)
        want[SPECIAL == 0] = SPECIAL[SPECIAL == 0]
    got = fn(T(SPECIAL)).numpy()
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{name}: NaNs differ")
    np.testing.assert_allclose(got[~nan], want[~nan], rtol=3e-7, atol=0)
    zero = want == 0   # signed zeros as numpy
    np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(want[zero]), err_msg=f"{name}: zero signs")


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_integer_inputs_compute_in_float32(name):
    x = np.array([0, 1, 2], np.int32)
    got = getattr(ops, name)(x)
    assert got.dtype == "float32"
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(got.numpy(), UNARY[name][1](x.astype(np.float64)).astype(np.float32), rtol=3e-7)


def test_trunc_and_signbit():
    x = np.array([-2.7, -0.5, -0.0, 0.0, 0.5, 2.7, np.inf, -np.inf, np.nan, -np.nan], np.float32)
    t = ops.trunc(x).numpy()
    np.testing.assert_array_equal(t, np.trunc(x))
    np.testing.assert_array_equal(np.signbit(t), np.signbit(np.trunc(x)))
    s = ops.signbit(x)
    assert s.dtype == "bool"
    np.testing.assert_array_equal(s.numpy(), np.signbit(x))
    for dt in (np.int32, np.int64):
        i = np.array([-3, 0, 4, np.iinfo(dt).min], dt)
        assert ops.trunc(i).dtype == np.dtype(dt).name
        np.testing.assert_array_equal(ops.trunc(i).numpy(), i)
        np.testing.assert_array_equal(ops.signbit(i).numpy(), np.signbit(i))
    np.testing.assert_array_equal(ops.signbit(np.array([True, False])).numpy(), [False, False])


# ---- unary gradients ----------------------------------------------------------------------------

GRAD_RANGES = {
    "tan": (-1.2, 1.2), "arcsin": (-0.9, 0.9), "arccos": (-0.9, 0.9), "arctan": (-3.0, 3.0), "sinh": (-3.0, 3.0),
    "cosh": (-3.0, 3.0), "arcsinh": (-3.0, 3.0), "arccosh": (1.2, 4.0), "arctanh": (-0.9, 0.9), "cbrt": (0.3, 3.0),
    "erfc": (-2.0, 2.0), "erfinv": (-0.9, 0.9), "i0": (-4.0, 4.0),
}


@pytest.mark.parametrize("name", sorted(GRAD_RANGES))
def test_unary_gradients(name, rng):
    lo, hi = GRAD_RANGES[name]
    x = rng.uniform(lo, hi, (3, 4))
    if name == "cbrt":
        x *= np.where(rng.random((3, 4)) < 0.5, -1, 1)
    check_grad(getattr(ops, name), UNARY[name][1], [x], atol=2e-3, rtol=2e-3)


def test_trunc_gradient_is_zero(rng):
    x = rng.uniform(-3, 3, (4,)) + 0.25
    check_grad(ops.trunc, np.trunc, [x])


# ---- binary float functions ---------------------------------------------------------------------

BINARY = {
    "arctan2": (ops.arctan2, np.arctan2),
    "hypot": (ops.hypot, np.hypot),
    "fmod": (ops.fmod, np.fmod),
    "copysign": (ops.copysign, np.copysign),
    "nextafter": (ops.nextafter, np.nextafter),
    "fmax": (ops.fmax, np.fmax),
    "fmin": (ops.fmin, np.fmin),
    "heaviside": (ops.heaviside, np.heaviside),
    "logaddexp2": (ops.logaddexp2, np.logaddexp2),
}
PAIRS = [((3, 4), (3, 4)), ((), (3, 4)), ((3, 1), (1, 4)), ((2, 1, 5), (4, 1)), ((0, 3), (1, 3))]


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("sa,sb", PAIRS)
def test_binary_forward_broadcasting(name, sa, sb, rng):
    fn, ref = BINARY[name]
    a = rng.uniform(-3, 3, sa).astype(np.float32)
    b = rng.uniform(-3, 3, sb).astype(np.float32)
    if name == "heaviside":
        a = np.round(a).astype(np.float32)   # exercises x1 == 0
    got = fn(T(a), T(b)).numpy()
    want = ref(a, b)
    assert got.dtype == np.float32 and got.shape == want.shape
    if name in ("nextafter", "copysign", "fmax", "fmin", "heaviside", "fmod"):
        np.testing.assert_array_equal(got, want)   # exact functions
    else:
        np.testing.assert_allclose(got, want, rtol=3e-7, atol=1e-7)


EDGE = np.array([0.0, -0.0, 1.0, -1.0, 2.5, -2.5, np.inf, -np.inf, np.nan, 1e-45, 3.4e38], np.float32)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_special_values_match_numpy(name):
    fn, ref = BINARY[name]
    a, b = np.meshgrid(EDGE, EDGE, indexing="ij")
    with np.errstate(all="ignore"):
        want = ref(a, b)
    got = fn(T(a), T(b)).numpy()
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{name}: NaNs differ")
    np.testing.assert_allclose(got[~nan], want[~nan], rtol=3e-7, atol=0, err_msg=name)
    zero = want == 0
    if name != "fmax" and name != "fmin":   # numpy does not fix the sign of fmax(0, -0)
        np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(want[zero]), err_msg=f"{name}: zero signs")


def test_fmax_fmin_ignore_nan_unlike_maximum():
    a = np.array([np.nan, 1.0, np.nan, 2.0], np.float32)
    b = np.array([1.0, np.nan, np.nan, 3.0], np.float32)
    np.testing.assert_array_equal(ops.fmax(a, b).numpy(), [1.0, 1.0, np.nan, 3.0])
    np.testing.assert_array_equal(ops.fmin(a, b).numpy(), [1.0, 1.0, np.nan, 2.0])
    assert np.isnan(ops.maximum(a, b).numpy()[0])


def test_fmod_differs_from_mod_in_sign():
    a = np.array([5.5, -5.5, 5.5, -5.5], np.float32)
    b = np.array([2.0, 2.0, -2.0, -2.0], np.float32)
    np.testing.assert_array_equal(ops.fmod(a, b).numpy(), [1.5, -1.5, 1.5, -1.5])
    np.testing.assert_array_equal(ops.mod(a, b).numpy(), [1.5, 0.5, -0.5, -1.5])


@pytest.mark.parametrize("dt", [np.int32, np.int64])
def test_integer_fmod_fmax_fmin(dt, rng):
    a = rng.integers(-50, 50, (4, 5)).astype(dt)
    b = rng.integers(-7, 8, (5,)).astype(dt)
    b[b == 0] = 3
    for fn, ref in ((ops.fmod, np.fmod), (ops.fmax, np.fmax), (ops.fmin, np.fmin)):
        got = fn(a, b)
        assert got.dtype == np.dtype(dt).name
        np.testing.assert_array_equal(got.numpy(), ref(a, b))
    mn = np.iinfo(dt).min
    # division by zero and INT_MIN % -1 do not trap: 0, as numpy
    np.testing.assert_array_equal(ops.fmod(np.array([7, -7, mn], dt), np.array([0, 0, -1], dt)).numpy(), [0, 0, 0])


def test_ldexp():
    x = np.array([0.5, 3.0, -1.5, 1.0, 1.0, 0.0, np.inf, np.nan, 1.5], np.float32)
    e = np.array([128, -2, 3, -149, -150, 1000, 1, 1, -1000], np.int32)
    np.testing.assert_array_equal(ops.ldexp(x, e).numpy(), np.ldexp(x, e))
    np.testing.assert_array_equal(ops.ldexp(T(x), T(e.astype(np.int64))).numpy(), np.ldexp(x, e))
    np.testing.assert_array_equal(ops.ldexp(x, 3).numpy(), np.ldexp(x, 3))
    np.testing.assert_array_equal(ops.ldexp(np.array([1, 2], np.int32), 2).numpy(), [4.0, 8.0])
    # broadcasting
    got = ops.ldexp(np.ones((2, 1), np.float32), np.array([[1, 2, 3]]))
    assert got.shape == (2, 3)
    np.testing.assert_array_equal(got.numpy(), np.ldexp(np.ones((2, 1), np.float32), np.array([[1, 2, 3]])))
    with pytest.raises(TypeError, match=r"ldexp: the exponent x2 must hold integers"):
        ops.ldexp(x, 1.5)
    with pytest.raises(TypeError, match=r"ldexp: the exponent x2 must be an integer tensor.*float32"):
        ops.ldexp(x, T(np.ones(9, np.float32)))


def test_binary_integer_inputs_compute_in_float32():
    a, b = np.array([3, -4], np.int32), np.array([4, 3], np.int32)
    for name in ("arctan2", "hypot", "copysign", "logaddexp2", "heaviside", "nextafter"):
        got = BINARY[name][0](a, b)
        assert got.dtype == "float32", name
        np.testing.assert_allclose(got.numpy(), BINARY[name][1](a.astype(np.float32), b.astype(np.float32)),
                                   rtol=3e-7)


GRAD_PAIRS = [((3, 4), (3, 4)), ((), (2, 3)), ((3, 1), (1, 4)), ((4, 3), (3,))]


@pytest.mark.parametrize("name", ["arctan2", "hypot", "fmod", "copysign", "fmax", "fmin", "logaddexp2", "heaviside"])
@pytest.mark.parametrize("sa,sb", GRAD_PAIRS)
def test_binary_gradients(name, sa, sb, rng):
    fn, ref = BINARY[name]
    a = rng.uniform(0.5, 2.0, sa) * np.where(rng.random(sa) < 0.5, -1, 1)
    b = rng.uniform(0.5, 2.0, sb) * np.where(rng.random(sb) < 0.5, -1, 1)
    if name == "fmod":   # away from the jumps of trunc(a / b)
        b = rng.uniform(1.0, 2.0, sb)
        a = b * (rng.integers(-2, 3, np.broadcast_shapes(sa, sb)) + rng.uniform(0.2, 0.8, np.broadcast_shapes(sa, sb)))
        sa = a.shape
    check_grad(fn, ref, [a, b])


def test_fmax_gradient_follows_the_non_nan_operand():
    x, y = T(np.array([np.nan, 1.0, 3.0], np.float32)), T(np.array([2.0, np.nan, 3.0], np.float32))
    with lamina.GradientTape() as tape:
        tape.watch([x, y])
        z = ops.sum(ops.fmax(x, y))
    gx, gy = tape.gradient(z, [x, y])
    np.testing.assert_array_equal(gx.numpy(), [0.0, 1.0, 1.0])   # ties go to x1
    np.testing.assert_array_equal(gy.numpy(), [1.0, 0.0, 0.0])


def test_ldexp_gradient(rng):
    x = rng.uniform(-2, 2, (3, 4))
    e = rng.integers(-3, 4, (4,)).astype(np.int32)
    check_grad(lambda a, b: ops.ldexp(a, b), lambda a, b: np.ldexp(a, b), [x, e], wrt=[0])


def test_arctan2_and_hypot_gradients_at_origin_are_zero():
    a, b = T(np.zeros(2, np.float32)), T(np.zeros(2, np.float32))
    with lamina.GradientTape() as tape:
        tape.watch([a, b])
        z = ops.sum(ops.arctan2(a, b) + ops.hypot(a, b))
    for g in tape.gradient(z, [a, b]):
        np.testing.assert_array_equal(g.numpy(), [0.0, 0.0])


# ---- integer functions --------------------------------------------------------------------------

@pytest.mark.parametrize("dt", [np.int32, np.int64])
def test_bitwise_ops_match_numpy(dt, rng):
    info = np.iinfo(dt)
    a = np.concatenate([rng.integers(info.min, info.max, 50, dtype=dt), np.array([0, -1, info.min, info.max], dt)])
    b = np.concatenate([rng.integers(info.min, info.max, 50, dtype=dt), np.array([-1, 0, info.max, info.min], dt)])
    for fn, ref in ((ops.bitwise_and, np.bitwise_and), (ops.bitwise_or, np.bitwise_or),
                    (ops.bitwise_xor, np.bitwise_xor)):
        got = fn(a, b)
        assert got.dtype == np.dtype(dt).name
        np.testing.assert_array_equal(got.numpy(), ref(a, b))
    np.testing.assert_array_equal(ops.bitwise_invert(a).numpy(), np.invert(a))
    np.testing.assert_array_equal(ops.bitwise_not(a).numpy(), np.invert(a))
    # broadcasting with a Python int
    np.testing.assert_array_equal(ops.bitwise_and(a, 0xF0).numpy(), a & 0xF0)


def test_bitwise_ops_on_bool_are_logical():
    a = np.array([True, True, False, False])
    b = np.array([True, False, True, False])
    for fn, ref in ((ops.bitwise_and, np.bitwise_and), (ops.bitwise_or, np.bitwise_or),
                    (ops.bitwise_xor, np.bitwise_xor)):
        got = fn(a, b)
        assert got.dtype == "bool"
        np.testing.assert_array_equal(got.numpy(), ref(a, b))
    got = ops.bitwise_invert(a)
    assert got.dtype == "bool"
    np.testing.assert_array_equal(got.numpy(), ~a)


@pytest.mark.parametrize("dt", [np.int32, np.int64])
def test_shifts_match_numpy(dt, rng):
    bits = np.iinfo(dt).bits
    a = np.array([1, -1, 5, -8, 123456, np.iinfo(dt).min, np.iinfo(dt).max, 7, -7, 3], dt)
    s = np.array([0, 1, 3, 2, bits - 1, 1, 1, bits, bits + 5, -1], dt)
    for fn, ref in ((ops.left_shift, np.left_shift), (ops.right_shift, np.right_shift),
                    (ops.bitwise_left_shift, np.left_shift), (ops.bitwise_right_shift, np.right_shift)):
        got = fn(a, s)
        assert got.dtype == np.dtype(dt).name
        np.testing.assert_array_equal(got.numpy(), ref(a, s), err_msg=fn.__name__)


@pytest.mark.parametrize("dt", [np.int32, np.int64])
def test_gcd_lcm_match_numpy(dt, rng):
    a = np.concatenate([rng.integers(-1000, 1000, 200), [0, 0, 12, -12, 7]]).astype(dt)
    b = np.concatenate([rng.integers(-1000, 1000, 200), [0, 5, 0, -18, 7]]).astype(dt)
    np.testing.assert_array_equal(ops.gcd(a, b).numpy(), np.gcd(a, b))
    np.testing.assert_array_equal(ops.lcm(a, b).numpy(), np.lcm(a, b))
    mn = np.iinfo(dt).min
    m = np.array([mn, mn, 6], dt)
    n = np.array([0, mn, mn], dt)
    np.testing.assert_array_equal(ops.gcd(m, n).numpy(), np.gcd(m, n))   # no trap on INT_MIN
    assert ops.gcd(a[:3], b[:3]).dtype == np.dtype(dt).name


def test_integer_functions_refuse_float():
    f = np.ones(3, np.float32)
    for fn in (ops.bitwise_and, ops.bitwise_or, ops.bitwise_xor, ops.left_shift, ops.right_shift, ops.gcd, ops.lcm):
        with pytest.raises(TypeError, match=fn.__name__ + r": expected integer.*float32 with shapes \(3,\)"):
            fn(f, f)
    with pytest.raises(TypeError, match=r"bitwise_invert: expected an integer or bool tensor, received float32"):
        ops.bitwise_invert(f)


def test_binary_errors_name_the_op_and_shapes():
    with pytest.raises(ValueError, match=r"hypot: shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        ops.hypot(np.ones((2, 3), np.float32), np.ones(4, np.float32))
    with pytest.raises(TypeError, match=r"gcd: dtypes differ: int32 .* int64"):
        ops.gcd(T(np.ones(2, np.int32)), T(np.ones(2, np.int64)))
    with pytest.raises(TypeError, match="arctan2"):
        ops.arctan2("a", 1.0)


def test_special_ops_are_exported():
    for name in ("tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "arcsinh", "arccosh", "arctanh", "cbrt",
                 "erfc", "erfinv", "i0", "trunc", "signbit", "arctan2", "hypot", "fmod", "copysign", "nextafter",
                 "fmax", "fmin", "heaviside", "ldexp", "logaddexp2", "bitwise_and", "bitwise_or", "bitwise_xor",
                 "bitwise_invert", "bitwise_not", "left_shift", "right_shift", "bitwise_left_shift",
                 "bitwise_right_shift", "gcd", "lcm"):
        assert callable(getattr(ops, name)), name
