"""Shared by the int8 kernel tests: the micro-kernels this CPU runs, a fixture that runs a test on
each, and the packing of int8 weights for qmatmul / qconv2d."""
import numpy as np
import pytest

from lamina.backend import _cpu



def _available():
    """The int8 micro-kernels this CPU can run: 'generic' always, 'avx2', 'avxvnni' and 'vnni' where it has them."""
    before, names = _cpu.qgemm_kernel(), []
    for name in ("generic", "avx2", "avxvnni", "vnni"):
        try:
            _cpu.set_qgemm_kernel(name)
            names.append(name)
        except ValueError:
            pass
    _cpu.set_qgemm_kernel(before)
    return names


KERNELS = _available()


@pytest.fixture(params=KERNELS)
def kernel(request):
    before = _cpu.qgemm_kernel()
    _cpu.set_qgemm_kernel(request.param)
    yield request.param
    _cpu.set_qgemm_kernel(before)


def pack(w):
    """(packed panels, column sums) of an int8 (K, N) matrix."""
    K, N = w.shape
    packed = _cpu.Buffer(_cpu.qgemm_packed_bytes(K, N), 4)
    colsum = _cpu.Buffer(N, 1)
    _cpu.qgemm_pack(_cpu.from_numpy(np.ascontiguousarray(w)), K, N, packed, colsum)
    return packed, colsum
