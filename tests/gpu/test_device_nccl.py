"""NCCL through lamina's CUDA module (csrc/cuda/nccl.cpp) on one process: a communicator of one
rank on gpu:0 (the real library on a GPU machine, the CUDA emulator's in CI), its all-reduce,
grouped calls and argument errors. Several processes: tests/distribute/test_multi_worker_nccl.py."""
import importlib

import numpy as np
import pytest

import lamina

_dm = importlib.import_module("lamina.backend.device")

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def comm():
    if not lamina.list_devices("gpu"):
        pytest.skip("no GPU: " + _dm._unavailable_gpu_message("gpu:0"))
    _dm._gpu_table()
    if not _dm.load_nccl():
        pytest.skip("NCCL is not available here: " + _dm._CUDA.nccl_status())
    uid = _dm._CUDA.nccl_unique_id()
    assert isinstance(uid, bytes) and len(uid) == 128
    h = _dm._CUDA.nccl_comm_init(0, 1, 0, uid)
    yield h
    _dm._CUDA.nccl_comm_destroy(h)


def _buf(a):
    return lamina.get_device("gpu:0").from_numpy(np.ascontiguousarray(a))


def _read(b, shape):
    return lamina.get_device("gpu:0").kernels.to_numpy(b, list(shape))


@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
def test_one_rank_all_reduce_copies_out_of_place_and_in_place(comm, dtype):
    a = (np.arange(1000) * 3 - 700).astype(dtype).reshape(10, 100)
    src, dst = _buf(a), _buf(np.zeros_like(a))
    _dm._CUDA.nccl_all_reduce(comm, [src], [dst])
    np.testing.assert_array_equal(_read(dst, a.shape), a)
    _dm._CUDA.nccl_all_reduce(comm, [src], [src])  # in place
    np.testing.assert_array_equal(_read(src, a.shape), a)


def test_grouped_all_reduces(comm):
    arrays = [np.random.default_rng(i).normal(size=n).astype(np.float32) for i, n in enumerate((1, 300, 70000))]
    srcs, dsts = [_buf(a) for a in arrays], [_buf(np.zeros_like(a)) for a in arrays]
    _dm._CUDA.nccl_all_reduce(comm, srcs, dsts)
    for d, a in zip(dsts, arrays):
        np.testing.assert_array_equal(_read(d, a.shape), a)


def test_argument_errors(comm):
    a = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="as many outputs as inputs"):
        _dm._CUDA.nccl_all_reduce(comm, [_buf(a)], [])
    with pytest.raises(ValueError, match="differ in size or dtype"):
        _dm._CUDA.nccl_all_reduce(comm, [_buf(a)], [_buf(np.ones(5, np.float32))])
    with pytest.raises(ValueError, match="float32, bfloat16, int32 and int64"):
        _dm._CUDA.nccl_all_reduce(comm, [_buf(a.astype(np.int8))], [_buf(a.astype(np.int8))])
    with pytest.raises(ValueError, match="no NCCL communicator 987654"):
        _dm._CUDA.nccl_all_reduce(987654, [_buf(a)], [_buf(a)])
    with pytest.raises(ValueError, match="expected 0 <= rank < nranks"):
        _dm._CUDA.nccl_comm_init(0, 2, 2, _dm._CUDA.nccl_unique_id())
    with pytest.raises(ValueError, match="expected the 128 bytes"):
        _dm._CUDA.nccl_comm_init(0, 1, 0, b"short")


def test_status_names_the_library(comm):
    status = _dm._CUDA.nccl_status()
    assert status.startswith("loaded: ") and "NCCL 2." in status, status
