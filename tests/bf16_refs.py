"""Shared by the bfloat16 kernel tests (tests/backend/test_bfloat16.py, test_rnn_bf16.py,
test_attention_bf16.py): the numpy rounding reference and raw CPU buffers of either dtype."""
import numpy as np
import pytest

from lamina.backend import _cpu, dtypes

BF16 = 5  # the kernels' dtype code for bfloat16 (csrc/types.h)


def round_bf16(a):
    """float32 -> nearest bfloat16 (ties to even), as float32; NaN stays NaN."""
    a = np.asarray(a, np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    r = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32) << 16).view(np.float32)
    return np.where(np.isnan(a), np.float32(np.nan), r).astype(np.float32)


def rounded(a, on=True):
    """bfloat16 rounding of a value (through float32), as float64; the identity with on=False (for
    the checks that a test's tolerance sees the rounding)."""
    return round_bf16(np.asarray(a, np.float32)).astype(np.float64) if on else np.asarray(a, np.float64)


def buf(a, bf16=True):
    """A CPU buffer holding `a`: bfloat16 (the top 16 bits of each float32, so `a` should hold
    bfloat16 values) or float32."""
    a = np.ascontiguousarray(a, np.float32)
    if bf16:
        return _cpu.from_numpy((a.view(np.uint32) >> 16).astype(np.uint16), 0, BF16)
    return _cpu.from_numpy(a)


def read(b, shape):
    """A CPU buffer's values as float32 (bfloat16 ones exactly)."""
    a = _cpu.to_numpy(b, list(shape))
    return dtypes.bf16_bits_to_float32(a) if b.dtype == BF16 else a


PATHS = {"amx": 2, "avx512bf16": 1, "widened": 0}  # _cpu._set_bf16_gemm's modes


def use_gemm_path(name):
    """Selects the bfloat16 GEMM path `name` (amx, avx512bf16, widened) for the rest of a test, or
    skips the test on a CPU without it; the caller restores the default (_set_bf16_gemm(-1))."""
    _cpu._set_bf16_gemm(PATHS[name])
    if _cpu.bf16_gemm_path() != name:
        _cpu._set_bf16_gemm(-1)
        pytest.skip(f"this CPU has no {'AMX-BF16' if name == 'amx' else 'AVX512-BF16'}")


@pytest.fixture(params=list(PATHS))
def gemm_path(request):
    """Runs a test on each bfloat16 GEMM path: AMX tiles, the AVX512-BF16 kernel (each skipped on
    CPUs without it) and the widened float32 one. Yields whether the path is native."""
    use_gemm_path(request.param)
    yield request.param != "widened"
    _cpu._set_bf16_gemm(-1)
