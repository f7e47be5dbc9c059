"""The CPU's `reduce` kernel (sum, mean, max, min, prod over the middle axis of an (outer, R, inner)
view) on bfloat16 buffers: each element widened to float32, accumulated exactly as the float32
kernel accumulates those values, each output rounded once to bfloat16. So its results are bit for
bit those of the widened path (cast to float32, the float32 kernel, cast back), which it replaces:
the device's WideningTable no longer makes float32 copies for it."""
import importlib

import numpy as np
import pytest

import lamina
from lamina import ops

from bf16_refs import BF16, buf as _bf16_buf, round_bf16

_device = importlib.import_module("lamina.backend.device")

OPS = ["sum", "mean", "max", "min", "prod"]
_ORDER = ("generic", "avx2", "avx512")


def _isas():
    from lamina.backend import _cpu
    return [i for i in _ORDER if _ORDER.index(i) <= _ORDER.index(_cpu.hardware_simd_isa())]


@pytest.fixture(params=_isas())
def isa(request):
    """Runs a test once per SIMD variant (the kernel's per-ISA clones) this CPU supports."""
    from lamina.backend import _cpu
    before = _cpu.simd_isa()
    _cpu.set_simd_isa(request.param)
    yield request.param
    _cpu.set_simd_isa(before)


def _code(op):
    from lamina.backend import _cpu
    return _cpu.REDUCE_OPS["R_" + op.upper()]


class _WidenedOnly:
    """_cpu as a module whose kernels take no bfloat16 buffers but fill, copy and cast: a
    WideningTable over it runs `reduce` on float32 copies, rounded back (the path it took before
    its bfloat16 version)."""
    BF16_KERNELS = ("fill", "copy", "cast")

    def __getattr__(self, name):
        from lamina.backend import _cpu
        return getattr(_cpu, name)


def _bits(b, n):
    from lamina.backend import _cpu
    return _cpu.to_numpy(b, [n]).view(np.uint16 if b.dtype == BF16 else np.uint32)


# (outer, R, inner). Rows (inner == 1): short, odd, more than one 4096-element block, one long row
# split across threads. Columns (inner > 1): fewer and more than a 1024-column tile, more than a
# 64-row block, a long axis split across threads. Empty axes and empty outputs.
SHAPES = [(1, 1, 1), (3, 7, 1), (5, 33, 1), (300, 64, 1), (64, 515, 1), (3, 5000, 1), (1, 100003, 1),
          (3, 5, 4), (2, 17, 9), (7, 3, 100), (2, 1, 5), (40, 30, 37), (1, 3000, 17), (2, 70, 1500),
          (1, 40000, 3),
          (3, 0, 1), (2, 0, 5), (0, 5, 3), (4, 3, 0)]


def _data(rng, op, n, kind):
    if op == "prod":
        x = rng.uniform(0.9, 1.1, n) * np.where(rng.random(n) < 0.1, -1.0, 1.0)
        if n > 40:
            x[n // 3] = 0.0 if kind == "finite" else x[n // 3]
    elif op == "sum" or op == "mean":
        x = rng.normal(size=n) * 3 + 0.25  # a non-zero mean: the long sums grow past float32's spacing of the terms
    else:
        x = rng.normal(size=n) * 100
    x = round_bf16(x)
    if kind != "finite" and n:
        pos = rng.choice(n, size=min(n, 3), replace=False)
        x[pos[0]] = np.inf
        if len(pos) > 1:
            x[pos[1]] = -np.inf if kind == "inf" else np.nan
        if len(pos) > 2:
            x[pos[2]] = np.inf if kind == "inf" else -np.inf
    return x


@pytest.mark.parametrize("kind", ["finite", "inf", "nan"])
@pytest.mark.parametrize("outer,R,inner", SHAPES)
@pytest.mark.parametrize("op", OPS)
def test_reduce_kernel_on_bfloat16_equals_the_widened_path(rng, isa, op, outer, R, inner, kind):
    from lamina.backend import _cpu
    assert "reduce" in _cpu.BF16_KERNELS
    if R == 0 and op in ("max", "min") and outer * inner > 0:
        pytest.skip("max/min over an empty axis is an error (test_reduce_empty_max_min_raises)")
    n, m = outer * R * inner, outer * inner
    x = _data(rng, op, n, kind)
    xb = _bf16_buf(x)
    got = _cpu.Buffer(m, BF16, 0)
    _cpu.reduce(_code(op), xb, outer, R, inner, got)
    # the widened path, by hand: cast to float32, the float32 kernel, cast back
    xw, yw, want = _cpu.Buffer(n, 0, 0), _cpu.Buffer(m, 0, 0), _cpu.Buffer(m, BF16, 0)
    _cpu.cast(xb, xw)
    _cpu.reduce(_code(op), xw, outer, R, inner, yw)
    _cpu.cast(yw, want)
    np.testing.assert_array_equal(_bits(got, m), _bits(want, m))
    # and through a WideningTable over a module without the bfloat16 version
    wide = _device.WideningTable(_WidenedOnly(), buffer_type=_cpu.Buffer)
    want2 = _cpu.Buffer(m, BF16, 0)
    wide.reduce(_code(op), xb, outer, R, inner, want2)
    assert wide.widened["reduce"] == 1
    np.testing.assert_array_equal(_bits(got, m), _bits(want2, m))
    # the float32 input path is untouched: the float32 kernel on the same values
    if m and kind == "finite" and R:
        ref = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod}[op](
            x.astype(np.float64).reshape(outer, R, inner), axis=1).ravel()
        y = _cpu.to_numpy(yw, [m])
        np.testing.assert_allclose(y, ref, rtol=1e-5 if op != "prod" else 1e-4, atol=1e-6 * R)


@pytest.mark.parametrize("op", ["max", "min"])
def test_reduce_empty_max_min_raises_on_bfloat16(op):
    from lamina.backend import _cpu
    with pytest.raises(ValueError, match="empty axis"):
        _cpu.reduce(_code(op), _cpu.Buffer(0, BF16, 0), 3, 0, 2, _cpu.Buffer(6, BF16, 0))


def test_reduce_keeps_its_dtype_checks():
    from lamina.backend import _cpu
    with pytest.raises((ValueError, TypeError), match="out"):  # a bfloat16 input needs a bfloat16 output
        _cpu.reduce(_code("sum"), _cpu.Buffer(6, BF16, 0), 2, 3, 1, _cpu.Buffer(2, 0, 0))
    with pytest.raises(ValueError, match=r"reduce: mean needs a float32 tensor"):
        _cpu.reduce(_code("mean"), _cpu.Buffer(4, 1, 0), 1, 4, 1, _cpu.Buffer(1, 1, 0))


@pytest.mark.parametrize("shape,axis", [((7,), 0), ((5, 300), 1), ((300, 5), 0), ((4, 9, 6), 1), ((2, 3000), 1),
                                        ((6, 0), 1), ((3, 4, 5), -1)])
@pytest.mark.parametrize("op", OPS)
def test_reductions_on_bfloat16_tensors_run_natively(rng, op, shape, axis):
    """ops.sum / mean / max / min / prod of a bfloat16 tensor over one axis: bfloat16, bit for bit the
    float32 reduction of the widened tensor rounded to bfloat16, and no float32 copies taken."""
    if 0 in shape and op in ("max", "min"):
        pytest.skip("max/min over an empty axis is an error")
    x = _data(rng, op, int(np.prod(shape)), "finite").reshape(shape)
    t = lamina.convert_to_tensor(x, dtype="bfloat16")
    table = t.device.kernels
    assert isinstance(table, _device.WideningTable) and "reduce" in table.native_bf16
    before = table.widened.get("reduce", 0)
    fn = getattr(ops, op)
    got = fn(t, axis=axis)
    assert table.widened.get("reduce", 0) == before  # ran on the bfloat16 buffer itself
    assert got.dtype == "bfloat16"
    want = ops.cast(fn(ops.cast(t, "float32"), axis=axis), "bfloat16")
    assert got.shape == want.shape
    g, w = got.numpy(), want.numpy()
    np.testing.assert_array_equal(g.view(np.uint32), w.view(np.uint32))
    # float32 tensors pass straight through, as before
    f = fn(lamina.convert_to_tensor(x), axis=axis)
    assert f.dtype == "float32" and table.widened.get("reduce", 0) == before


@pytest.mark.parametrize("inner", [1, 5])
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_reduce_bf16_adds_its_float_blocks_in_double(isa, op, inner):
    """As the float32 kernel: float32 sums over blocks (4096 elements of a row, 64 rows of a
    column), the block sums added in double. Blocks summing to 2^25, 1 and -2^25 give 1 (float32
    would lose the 1 to 2^25's spacing of 4, and the rounding to bfloat16 would not hide it)."""
    from lamina.backend import _cpu
    block = 4096 if inner == 1 else 64
    big = float(2 ** 25 // block)
    rows = np.zeros((3 * block, inner), np.float32)
    rows[:block], rows[2 * block:] = big, -big
    rows[block + 7] = 1.0
    R = 3 * block
    x = np.ascontiguousarray(rows.reshape(1, R, inner))
    xb = _bf16_buf(x.ravel())
    got = _cpu.Buffer(inner, BF16, 0)
    _cpu.reduce(_code(op), xb, 1, R, inner, got)
    want = round_bf16(np.float32(1.0 if op == "sum" else np.float32(1.0 / R)))
    np.testing.assert_array_equal(_bits(got, inner), np.full(inner, want).view(np.uint32) >> 16)
