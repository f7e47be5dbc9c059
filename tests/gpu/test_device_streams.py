"""Copies to the device while it runs behind. With LAMINA_CUDA_EMULATOR_STREAMS=lazy the CUDA
emulator runs queued work only when the host waits (tests/test_cuda_emulator.py runs this suite so),
the far end of a GPU busy with a long queue: every copy stays in flight until the next read."""
import importlib

import numpy as np
import pytest

import lamina

_dm = importlib.import_module("lamina.backend.device")
RNG = np.random.default_rng(11)


@pytest.mark.gpu
def test_many_copies_in_flight_take_staging_blocks_without_waiting():
    """Each from_numpy copy holds its pinned staging block until the copy has run: a hundred small
    copies in flight, then a large one, each get a block (the pool grows to its byte limit, not to
    64 blocks), so none waits for the device, and every copy lands whole."""
    if not _dm.CUDA_EMULATED:
        pytest.skip("wait counts are read from the CUDA emulator (LAMINA_CUDA_EMULATOR=1)")
    arrays = [RNG.normal(size=100).astype(np.float32) + i for i in range(100)]
    arrays.append(RNG.normal(size=300000).astype(np.float32))
    with lamina.device("gpu:0"):
        _dm.cuda_emulator_stats(reset=True)
        tensors = [lamina.convert_to_tensor(a) for a in arrays]
        copies = _dm.cuda_emulator_stats(reset=True)
        for t, a in zip(tensors, arrays):
            np.testing.assert_array_equal(t.numpy(), a)
    assert copies["host_waits"] == 0, copies
