"""MultiWorkerMirroredStrategy's NCCL path: gradients on each process's GPU all-reduced by NCCL on
the devices. Run under `mpiexec -n 2` on the CUDA emulator (LAMINA_CUDA_EMULATOR=1: its gpu:0 in
each process, and its own implementation of NCCL's API across the processes), so CI checks the
path a multi-GPU machine takes; benchmarks/gpu_check.sh runs the GPU suite on a real card."""
import importlib.util
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_multi_worker import MODEL, _ok, _run, needs_mpi  # noqa: E402  (the MPI job runner)

needs_emulator = pytest.mark.skipif(importlib.util.find_spec("lamina.backend._cuda_emu") is None,
                                    reason="the CUDA emulator is not built (-DLAMINA_CUDA_EMULATOR=OFF, or not Linux)")

GPU_STEP = MODEL + """
import importlib
dm = importlib.import_module("lamina.backend.device")
x, y = data(48)
lamina.utils.set_random_seed(100 + rank)          # the ranks start from different weights
strategy = lamina.distribute.MultiWorkerMirroredStrategy(communication=COMMUNICATION)
with strategy.scope(), lamina.device(f"gpu:{strategy.local_rank}"):
    model = build("adam")
start = comm.allgather(model.get_weights())
dm.cuda_emulator_stats(reset=True)
with lamina.device(f"gpu:{strategy.local_rank}"):
    h = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
stats = dm.cuda_emulator_stats()
end = comm.allgather(model.get_weights())
for a, b in zip(*end):                             # every rank holds the same weights
    np.testing.assert_array_equal(a, b)
if rank == 0:
    ref = build("adam")                            # one process on the CPU, the whole batch
    ref.set_weights(start[0])
    r = ref.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    same(model.get_weights(), ref.get_weights(), tol=1e-4)
    same(h.history["loss"], r.history["loss"], tol=1e-4)
lines = comm.gather(f"RANK {rank} {strategy.local_rank} | {strategy.gradient_communication} | {stats['nccl_calls']}"
                    f" | {stats['host_waits']}")
if rank == 0:
    print("\\n".join(lines))
"""


@needs_mpi
@needs_emulator
@pytest.mark.parametrize("communication", ["auto", "nccl", "mpi"])
def test_gpu_gradients_are_all_reduced_on_the_devices(tmp_path, monkeypatch, communication):
    monkeypatch.setenv("LAMINA_CUDA_EMULATOR", "1")
    monkeypatch.setenv("LAMINA_EMULATED_GPUS", "2")  # a machine with two GPUs: rank r on gpu:r
    out = _ok(_run(tmp_path, f"COMMUNICATION = {communication!r}\n" + GPU_STEP, timeout=120))
    lines = [line for line in out.splitlines() if line.startswith("RANK")]
    assert len(lines) == 2, out
    for line in lines:
        _, rank, local_rank, rest = line.split(" ", 3)
        assert rank == local_rank  # one machine
        used, calls, waits = rest.split("|")[1].strip(), int(rest.split("|")[2]), int(rest.split("|")[3])
        if communication == "mpi":
            assert used == "mpi (communication='mpi')" and calls == 0, line
        else:
            assert used.startswith("nccl (loaded: ") and used.endswith(", gpu:" + local_rank + ")"), line
            # 3 steps x 2 epochs: the 4 gradients, then the metrics' state changes (one buffer)
            assert calls == 6 * 5, line
            # the steps never wait: only fit's start (rank 0's 12 weights and optimizer slots
            # broadcast through the host) and each epoch's logs do
            assert waits <= 12 + 2 * 2, line


@needs_mpi
@needs_emulator
def test_nccl_is_refused_with_a_reason_where_it_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMINA_CUDA_EMULATOR", "1")
    out = _ok(_run(tmp_path, MODEL + """
strategy = lamina.distribute.MultiWorkerMirroredStrategy(communication="nccl")
with strategy.scope():
    model = build("sgd")                            # on cpu:0
try:
    strategy._nccl_comm(model.trainable_weights)
except RuntimeError as e:
    assert "cannot all-reduce with NCCL" in str(e) and "cpu:0" in str(e), e
    print("REFUSED", rank)
auto = lamina.distribute.MultiWorkerMirroredStrategy()
assert auto._nccl_comm(model.trainable_weights) is None
assert auto.gradient_communication.startswith("mpi (the trainable variables are on cpu:0"), auto.gradient_communication
try:
    lamina.distribute.MultiWorkerMirroredStrategy(communication="gloo")
except ValueError as e:
    assert "'auto', 'nccl' or 'mpi'" in str(e)
    print("BAD", rank)
"""))
    assert out.count("REFUSED") == 2 and out.count("BAD") == 2, out


@needs_mpi
@needs_emulator
def test_batch_norm_moving_statistics_are_averaged_by_nccl(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMINA_CUDA_EMULATOR", "1")
    monkeypatch.setenv("LAMINA_EMULATED_GPUS", "2")
    out = _ok(_run(tmp_path, MODEL + """
x, y = data(20)
lamina.utils.set_random_seed(100 + rank)
strategy = lamina.distribute.MultiWorkerMirroredStrategy(communication="nccl")
dev = f"gpu:{strategy.local_rank}"
with strategy.scope(), lamina.device(dev):
    model = lamina.Sequential([lamina.Input((8,)), layers.Dense(8), layers.BatchNormalization(), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
w, b = comm.bcast(model.layers[0].get_weights(), root=0)
with lamina.device(dev):
    h_ = model.fit(x, y, batch_size=20, epochs=1, verbose=0, shuffle=False)   # one step, 10 rows per rank
assert strategy.gradient_communication.startswith("nccl"), strategy.gradient_communication
bn = model.layers[1]
stats = comm.allgather([bn.moving_mean.numpy(), bn.moving_variance.numpy(), h_.history["mae"]])
for u, v in zip(*stats):
    np.testing.assert_array_equal(u, v)                 # the same on every rank
h = x @ w + b                                           # the BatchNormalization's input in that step
shards = (h[:10], h[10:])
np.testing.assert_allclose(stats[0][0], 0.01 * np.mean([s.mean(0) for s in shards], 0), rtol=1e-4, atol=1e-6)
np.testing.assert_allclose(stats[0][1], 0.99 + 0.01 * np.mean([s.var(0) for s in shards], 0), rtol=1e-4)
print("OK")
"""))
    assert "OK" in out
