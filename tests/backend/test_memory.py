"""Steady-state training allocates no new memory: 500 steps of a two-layer network built from
ops keep the process's resident memory flat (the caching allocator reuses every buffer)."""
import gc

import numpy as np
import pytest

import lamina
from lamina import backend, ops


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _train(steps, w1, b1, w2, b2, x, y, lr=0.01):
    for _ in range(steps):
        with lamina.GradientTape() as tape:
            h = ops.maximum(ops.matmul(x, w1) + b1, 0.0)
            out = ops.matmul(h, w2) + b2
            loss = ops.mean(ops.square(out - y))
        grads = tape.gradient(loss, [w1, b1, w2, b2])
        for v, g in zip((w1, b1, w2, b2), grads):
            v.assign_sub(g * lr)
    return float(loss)


def test_training_keeps_resident_memory_flat():
    rng = np.random.default_rng(0)
    x = lamina.convert_to_tensor(rng.standard_normal((64, 256)).astype(np.float32))
    y = lamina.convert_to_tensor(rng.standard_normal((64, 10)).astype(np.float32))
    w1 = lamina.Variable(rng.standard_normal((256, 512)).astype(np.float32) * 0.05)
    b1 = lamina.Variable(np.zeros(512, np.float32))
    w2 = lamina.Variable(rng.standard_normal((512, 10)).astype(np.float32) * 0.05)
    b2 = lamina.Variable(np.zeros(10, np.float32))
    first = _train(50, w1, b1, w2, b2, x, y)            # warm-up fills the allocator's cache
    gc.collect()
    rss0, allocs0 = _rss_bytes(), backend.memory_stats()["system_allocs"]
    last = _train(500, w1, b1, w2, b2, x, y)
    gc.collect()
    rss1, allocs1 = _rss_bytes(), backend.memory_stats()["system_allocs"]
    assert last < first  # it trained
    assert allocs1 == allocs0, f"{allocs1 - allocs0} new system allocations in steady state"
    assert rss1 - rss0 < 4 * 2**20, f"resident memory grew by {(rss1 - rss0) / 2**20:.1f} MiB"


def test_huge_buffers_raise_memory_error_instead_of_overflowing():
    from lamina.backend import _cpu
    for n in (2 ** 62, 2 ** 61 + 1, 2 ** 48):   # overflowing bytes; a size class that used to loop
        with pytest.raises(MemoryError, match=f"cannot allocate a buffer of {n} float32 elements"):
            _cpu.Buffer(n, 0, 0)
    with pytest.raises(MemoryError, match="int64 elements.*cpu:3"):
        _cpu.Buffer(2 ** 60, 2, 3)
