"""The device table (backend/device.py KernelTable): a kernel a device module lacks, or answers
with KernelUnsupported, runs the CPU kernel on host copies; and the CUDA module, where it was built."""
import importlib
import shutil
import types

import numpy as np
import pytest

import lamina
from lamina import ops

dm = importlib.import_module("lamina.backend.device")
_cpu = dm._cpu


def _fallback_device(index=7, native=()):
    return dm.Device("cpu", index, dm.KernelTable(_cpu, native=native))


def test_every_kernel_runs_through_the_host_fallback():
    d = _fallback_device()
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    with lamina.device(d):
        t = lamina.convert_to_tensor(x)
        y = ops.sort(ops.relu(t) * 2 + ops.sum(t, axis=0), axis=0)
        n = ops.count_nonzero(t)
    assert y.device is d and t._buf.device == 7
    np.testing.assert_allclose(y.numpy(), np.sort(np.maximum(x, 0) * 2 + x.sum(0), axis=0))
    assert int(n) == np.count_nonzero(x)
    assert d.kernels.fallbacks["sort_rows"] >= 1 and d.kernels.fallbacks["reduce"] >= 1


def test_a_buffer_passed_twice_is_copied_once_so_in_place_kernels_stay_in_place():
    table = dm.KernelTable(_cpu, native=())
    a = _cpu.from_numpy(np.array([1.0, 2.0, 3.0], np.float32), 7)
    table.binary(table.BINARY_OPS["ADD"], a, [3], a, [3], a, [3])  # a += a
    np.testing.assert_array_equal(_cpu.to_numpy(a, [3]), [2.0, 4.0, 6.0])
    x = _cpu.from_numpy(np.array([1.0, 1.0, 1.0], np.float32), 7)
    table.axpby(2.0, x, 3.0, a)  # a = 2x + 3a
    np.testing.assert_array_equal(_cpu.to_numpy(a, [3]), [8.0, 14.0, 20.0])
    np.testing.assert_array_equal(_cpu.to_numpy(x, [3]), [1.0, 1.0, 1.0])


def test_buffers_a_host_kernel_returns_come_back_on_the_device():
    d = _fallback_device()
    with lamina.device(d):
        idx = ops.nonzero(lamina.convert_to_tensor(np.array([0, 3, 0, 5], np.int32)))
    assert all(i.device is d and i._buf.device == 7 for i in idx)
    np.testing.assert_array_equal(idx[0].numpy(), [1, 3])


def test_calls_a_module_answers_with_kernel_unsupported_run_on_the_host():
    class KernelUnsupported(NotImplementedError):
        pass

    calls = []

    def binary(op, *args):
        calls.append(op)
        if op == _cpu.BINARY_OPS["MOD"]:
            raise KernelUnsupported("binary: this op code runs on the host")
        return _cpu.binary(op, *args)

    fake = types.SimpleNamespace(**{n: getattr(_cpu, n) for n in dm.KERNEL_TABLE + dm.DEVICE_FUNCTIONS
                                    + dm.OP_CODE_TABLES})
    fake.binary, fake.KernelUnsupported = binary, KernelUnsupported
    table = dm.KernelTable(fake)
    assert "binary" in table.native
    d = dm.Device("cpu", 7, table)
    x = np.array([5.0, -7.0, 8.5], np.float32)
    with lamina.device(d):
        t = lamina.convert_to_tensor(x)
        s = t + t
        m = ops.mod(t, 3.0)
    np.testing.assert_array_equal(s.numpy(), x + x)
    np.testing.assert_allclose(m.numpy(), np.mod(x, 3.0))
    assert table.fallbacks.get("binary") == 1 and len(calls) == 2


def test_errors_of_host_kernels_reach_the_caller():
    d = _fallback_device()
    with lamina.device(d):
        logits = lamina.convert_to_tensor(np.zeros((2, 3), np.float32))
        with pytest.raises(ValueError, match="out of range"):
            ops.sparse_categorical_crossentropy(np.array([0, 3]), logits, from_logits=True)


def test_devices_lists_the_usable_devices():
    assert lamina.devices() == lamina.list_devices() and lamina.devices()[0] == "cpu:0"
    assert lamina.devices("cpu") == ["cpu:0"]
    assert all(n.startswith("gpu:") for n in lamina.devices("gpu"))


def test_tensor_float_32_is_off_by_default_and_switchable():
    assert lamina.config.tensor_float_32_execution_enabled() is False
    lamina.config.enable_tensor_float_32_execution(True)
    try:
        assert lamina.config.tensor_float_32_execution_enabled() is True
        if dm._CUDA is not None:
            assert dm._CUDA.allow_tf32() is True
    finally:
        lamina.config.enable_tensor_float_32_execution(False)
    assert dm._CUDA is None or dm._CUDA.allow_tf32() is False


# ---- the CUDA module -----------------------------------------------------------------------------

def test_the_cuda_module_is_built_where_nvcc_is_found():
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: lamina builds without its CUDA module here")
    assert dm._CUDA is not None, f"nvcc is on PATH but lamina.backend._cuda did not load: {dm._CUDA_IMPORT_ERROR}"


def test_the_cuda_module_shares_the_op_codes_and_device_functions():
    if dm._CUDA is None:
        pytest.skip("this build has no CUDA module")
    for name in dm.OP_CODE_TABLES:
        assert getattr(dm._CUDA, name) == getattr(_cpu, name), name
    assert all(hasattr(dm._CUDA, n) for n in dm.DEVICE_FUNCTIONS)
    table = dm.KernelTable(dm._CUDA)
    assert {"binary", "unary", "reduce", "matmul", "gemm", "softmax", "xent_sparse", "adam", "copy"} <= table.native
    assert all(callable(getattr(table, n)) for n in dm.KERNEL_TABLE)
    assert isinstance(dm._CUDA.cublas_status(), str)


def test_without_a_gpu_gpu_devices_say_why():
    if dm._CUDA is not None and dm._CUDA.physical_device_count() > 0:
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="not available") as e:
        lamina.get_device("gpu:0")
    assert "cpu:0" in str(e.value)
    if dm._CUDA is not None:
        assert "driver reports no GPU" in str(e.value)
        with pytest.raises(ValueError, match="does not exist"):
            dm._CUDA.Buffer(4, 0, 0)
    with pytest.raises(ValueError, match="virtual GPUs per physical GPU >= 1"):
        lamina.set_virtual_gpus(0)
