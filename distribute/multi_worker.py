"""MultiWorkerMirroredStrategy: synchronous data parallelism over processes (and machines)
through MPI, with mpi4py (`pip install lamina[mpi]`).

    # train.py, started as `mpiexec -n 4 python train.py`
    strategy = lamina.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = lamina.Sequential([...])
        model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=256)      # 256 rows per step in all, 64 per process

Every process runs the same script on the same data. At the start of `fit`, rank 0's weights
(all of them, trainable or not) and optimizer state are broadcast, so the processes start equal
whatever their random seeds. Each process then reads its shard of every global batch, computes
its loss weighted by its share of the batch's rows and the gradients, all-reduces (sums) the
gradients in place in lamina's own buffers, and applies the same update: the weights stay
identical on every process and a step equals one single-process step on the whole batch
(within float rounding).

Data, by kind:
- arrays: every global batch of `batch_size` rows is split between the processes as evenly as
  possible (sizes differ by at most one); all processes shuffle with one seed (drawn from
  numpy's global generator on rank 0 and broadcast), so the shards of a batch are exactly the
  rows one process would have used. A final batch with fewer rows than processes leaves some
  processes a zero-weight step.
- a PyDataset (`lamina.utils.PyDataset`): whole batches are dealt out by index, process r
  taking batches r, r + N, r + 2N, ... of the (shared-seed shuffled) order, so one step trains on
  N of the dataset's batches. When the number of batches is not a multiple of N, the processes
  left without a batch in the last step take a zero-weight step.
- generators and other iterables: rejected (a process cannot tell which batches another one
  reads); use arrays or a PyDataset.

What is reduced, once per step, with non-blocking all-reduces: the gradients, each started as
soon as the backward pass has finished it, so that communication overlaps the backward pass of
the earlier layers (gradients of at least `bucket_bytes` straight from their buffers, smaller
ones packed into buckets of about `bucket_bytes`; the sums land in one buffer per variable),
then the changes of the metrics' state variables (so `loss` and the metrics logged on every
process are those of the global batch; metric state must be sums, as every built-in metric's is)
and the moving statistics of trainable BatchNormalization layers (weighted by each process's
rows). Sparse gradients (embedding lookups) are gathered from every process, not densified.

Only rank 0 (`is_chief`) prints progress and writes files: `model.save`, `save_weights`,
ModelCheckpoint and CSVLogger do nothing on the other ranks. `evaluate` and `predict` run
whole on every process. An exception on any process (in `fit` or uncaught anywhere) prints its
traceback and aborts the whole job (`MPI_Abort`), so a failing rank never leaves the others
waiting in an all-reduce.

GPUs: start one process per GPU and build the model on that process's GPU
(`with lamina.device(f"gpu:{strategy.local_rank}")`, local_rank counting the processes of one
machine). `communication="auto"` (the default) then all-reduces the dense gradients with NCCL, on
the GPUs, in the device's stream (no copy to the host and no wait; NCCL is loaded at run time, as
PyTorch's pip wheels install it, and bootstrapped over MPI: rank 0's id is broadcast), wherever
every process has its gradients on a GPU and NCCL starts (it needs one physical GPU per process);
otherwise, or with `communication="mpi"`, the gradients go through MPI on the host.
`communication="nccl"` raises instead of falling back. `strategy.gradient_communication` says what
the last step used and why. With NCCL, the metrics' state changes and BatchNormalization's moving
statistics go through it too (where they are float32 on the same GPU), so a step does not wait for
the device; sparse gradients are still gathered through MPI, and fit's first step broadcasts rank
0's state through the host.

Threads: unless LAMINA_NUM_THREADS is set, each process's kernels use its share of the
machine's cores (cores / processes on this machine).
"""
import collections
import importlib
import itertools
import os
import sys
import traceback

import numpy as np

from ..backend.autodiff import GradientTape
from ..backend import manipulation as _mp
from ..backend import math as _m
from ..backend import validation as _validation
from ..backend.tensor import convert_to_tensor
from ..layers.layer import map_structure
from ..models.data import ArrayData, PyDatasetData, pack_x_y_sample_weight, unpack_x_y_sample_weight
from .strategy import Strategy, batch_size_of, even_slices


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("MultiWorkerMirroredStrategy needs mpi4py and an MPI library: pip install lamina[mpi] "
                          f"(or pip install mpi4py mpich), then start the script with mpiexec -n N python "
                          f"train.py. ({e})") from e
    return MPI


class MultiWorkerMirroredStrategy(Strategy):
    """Data parallelism over the processes of an MPI job; see the module's docstring.

    `comm`: the mpi4py communicator of the processes that train together (default
    `MPI.COMM_WORLD`). `bucket_bytes`: gradients smaller than this are packed into buckets of
    about this size, each reduced as one message; larger ones are sent from their own buffers."""

    def __init__(self, comm=None, bucket_bytes=1 << 16, communication="auto"):
        MPI = _import_mpi()
        self._MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, int) or bucket_bytes < 0:
            raise ValueError(f"MultiWorkerMirroredStrategy: bucket_bytes must be an int >= 0, "
                             f"received {bucket_bytes!r}")
        if communication not in ("auto", "nccl", "mpi"):
            raise ValueError("MultiWorkerMirroredStrategy: communication must be 'auto', 'nccl' or 'mpi', "
                             f"received {communication!r}")
        self.bucket_bytes = bucket_bytes
        self.communication = communication
        self._nccl = {}  # device name -> (NCCL communicator handle or None, what the gradients go through)
        self.gradient_communication = None  # set by the first step
        self._dummy = collections.deque()  # per batch the sharded data yielded: True for a zero-weight one
        self._pending = set()              # ids of models whose weights are broadcast at their first step
        self._rows = np.zeros(1, np.int64)
        self._bucket = np.zeros(0, np.float32)
        self._buckets = []   # the gradient stream's bucket arrays, kept from step to step
        self._received = {}  # id(variable) -> (variable, host array, tensor): where its summed gradient lands
        _install_excepthook(MPI)
        self.local_rank = _share_cores(MPI, self.comm)

    is_chief = property(lambda self: self.rank == 0)
    num_replicas_in_sync = property(lambda self: self.size)

    def __repr__(self):
        return f"MultiWorkerMirroredStrategy(rank={self.rank}, size={self.size})"

    # -- data --
    def distribute_data(self, data):
        """The shard of `data` this process reads (see the module's docstring)."""
        if type(data) is ArrayData or type(data) is _ShardedArrays:
            return _ShardedArrays(data, self)
        if type(data) is PyDatasetData or type(data) is _ShardedPyDataset:
            return _ShardedPyDataset(data, self)
        what = type(getattr(data, "source", data)).__name__
        raise ValueError(f"MultiWorkerMirroredStrategy: fit cannot shard a {what} between processes: each process "
                         "would read the whole of it. Pass arrays (every global batch is split between the "
                         "processes) or a lamina.utils.PyDataset (whole batches dealt out by index).")

    def _shared_seed(self):
        seed = np.array([np.random.randint(2 ** 31 - 1) if self.rank == 0 else 0], np.int64)
        self.comm.Bcast(seed, root=0)
        return int(seed[0])

    # -- fit hooks --
    def on_fit_begin(self, model):
        self._exc_at_begin = sys.exc_info()[1]
        self._dummy.clear()
        with self._fatal_on_error():
            if model.built and model.weights:
                self._broadcast_state(model)
            else:  # built by its first call: broadcast then
                self._pending.add(id(model))

    def on_fit_end(self, model):
        exc = sys.exc_info()[1]
        if exc is not None and exc is not self._exc_at_begin and self.size > 1:
            # fit is ending with an exception on this process: the others would wait for it
            self._abort(exc)

    def _broadcast_state(self, model):
        """Rank 0's weights, optimizer slots, iteration count and learning rate on every process."""
        ws = list(model.weights)
        opt = model.optimizer
        if opt is not None and opt.built:
            ws += opt.variables
        shapes = [(w.shape, w.dtype) for w in ws]
        root = self.comm.bcast(shapes, root=0)
        if root != shapes:
            raise ValueError(f"MultiWorkerMirroredStrategy: rank {self.rank}'s model and optimizer have {len(shapes)} "
                             f"variables {shapes[:4]}..., rank 0's {len(root)} {root[:4]}...; every process must "
                             "build the same model")
        for w in ws:
            view, commit = _host(w)
            self.comm.Bcast(view, root=0)
            if commit is not None:
                commit()
        if opt is not None:
            opt.iterations = self.comm.bcast(opt.iterations, root=0)
            if isinstance(opt._learning_rate, float):
                opt._learning_rate = self.comm.bcast(opt._learning_rate, root=0)

    # -- the step --
    def train_step(self, model, data):
        with self._fatal_on_error():
            return self._train_step(model, data)

    def _train_step(self, model, data):
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        dummy = self._dummy.popleft() if self._dummy else False
        self._rows[0] = 0 if dummy else batch_size_of(x)
        local = int(self._rows[0])
        self.comm.Allreduce(self._MPI.IN_PLACE, self._rows, op=self._MPI.SUM)
        total = int(self._rows[0])
        if id(model) in self._pending:
            if not model.built:
                model(x, training=False)
            self._broadcast_state(model)
            self._pending.discard(id(model))
        tv = model.trainable_weights
        nccl = self._nccl_comm(tv)
        metrics = _DeviceMetricState(model, tv[0].device) if nccl is not None and \
            _DeviceMetricState.usable(model, tv[0].device) else _MetricState(model)
        with GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model._compute_loss(x, y, y_pred, sample_weight, training=True)
            share = _m.multiply(loss, local / total)
            scaled = model.optimizer.scale_loss(share)  # loss_scale_factor; apply divides it out
        stream = _GradientStream(self, tv, nccl)
        tape.gradient(scaled, tv, _on_ready=stream)  # starts the all-reduces while backprop runs
        # a zero-weight step updates its metrics too (so they are built as on the other processes),
        # and then contributes nothing to their all-reduced state
        model._loss_tracker.update_state(loss, sample_weight=local)
        if model._compile_metrics is not None:
            model._compile_metrics.update_state(y, y_pred, sample_weight)
        grads = self._reduce_step(model, stream, metrics, local / total, dummy)
        model.optimizer.apply(grads, tv)
        return None if model._defer_results else model.get_metrics_result()

    def _reduce_step(self, model, stream, metrics, fraction, dummy):
        """Completes the step's all-reduces: the gradients' (started by `stream` during backprop),
        then the metrics' state changes and BatchNormalization's moving statistics. Returns the
        summed gradients."""
        MPI = self._MPI
        stream.flush()
        if isinstance(metrics, _DeviceMetricState):
            return self._reduce_step_on_device(model, stream, metrics, fraction, dummy)
        views, commits = [], []
        for w in _moving_statistics(model):  # each process's weighted by its share of the rows
            v, c = _host(w)
            v *= fraction
            views.append(v)
            if c is not None:
                commits.append(c)
        requests, unpack = self._start_all_reduce(views)
        delta = metrics.delta(zero=dummy)
        if delta.size:
            requests.append(self.comm.Iallreduce(MPI.IN_PLACE, delta, op=MPI.SUM))
        gathered = {i: self._gather_sparse(g) for i, g in stream.sparse}  # while the others run
        MPI.Request.Waitall(stream.requests + requests)
        grads = stream.finish()
        unpack()
        for c in commits:
            c()
        metrics.apply(delta)
        for i, g in gathered.items():
            grads[i] = g
        return grads

    def _nccl_comm(self, variables):
        """The NCCL communicator for gradients on the variables' GPU (made at the first step, by every
        process at once), or None: MPI on the host. Sets gradient_communication."""
        devs = {v.device.name for v in variables}
        name = devs.pop() if len(devs) == 1 else None
        if name in self._nccl:
            handle, self.gradient_communication = self._nccl[name]
            return handle
        handle, why = None, None
        if self.communication == "mpi":
            why = "communication='mpi'"
        elif name is None or not name.startswith("gpu:"):
            why = ("the trainable variables are on " + (name or "several devices") +
                   ", not one GPU (NCCL all-reduces GPU buffers)")
        else:
            dm = importlib.import_module(__name__.rsplit(".", 2)[0] + ".backend.device")
            if not dm.load_nccl():
                why = "NCCL is not available: " + dm._CUDA.nccl_status()
        # every process decides together: NCCL only where all of them can start it
        ok = self.comm.allreduce(0 if why else 1, op=self._MPI.MIN)
        if ok and why is None:
            uid = dm._CUDA.nccl_unique_id() if self.rank == 0 else None
            uid = self.comm.bcast(uid, root=0)
            index = int(name.split(":")[1])
            try:
                handle = dm._CUDA.nccl_comm_init(index, self.size, self.rank, uid)
            except RuntimeError as e:
                why = str(e)
            if not self.comm.allreduce(0 if why else 1, op=self._MPI.MIN):
                if handle is not None:
                    dm._CUDA.nccl_comm_destroy(handle)
                handle = None
                why = why or "NCCL failed to start on another process"
        elif why is None:
            why = "another process cannot use NCCL"
        if handle is not None:
            self._cuda = dm._CUDA
            used = f"nccl ({dm._CUDA.nccl_status()}, {name})"
        else:
            if self.communication == "nccl":
                raise RuntimeError(f"MultiWorkerMirroredStrategy(communication='nccl'): rank {self.rank} cannot "
                                   f"all-reduce with NCCL: {why}. Put each process's model on its own GPU "
                                   "(lamina.device(f'gpu:{strategy.local_rank}')) on a machine with NCCL "
                                   "(pip install nvidia-nccl-cu13), or use communication='auto'.")
            used = f"mpi ({why})"
        self._nccl[name] = (handle, used)
        self.gradient_communication = used
        return handle

    def _reduce_step_on_device(self, model, stream, metrics, fraction, dummy):
        """_reduce_step where NCCL runs the gradients and every metric variable is on their GPU: the
        metrics' state changes and the weighted moving statistics are all-reduced by NCCL too, in
        one group, so the step never waits for the device."""
        stats, others = [], []
        for w in _moving_statistics(model):
            (stats if w.device is metrics.device and w.dtype == "float32" else others).append(w)
        weighted = [_m.multiply(w, float(fraction)) for w in stats]
        delta = metrics.delta(zero=dummy)
        bufs = [t._buf for t in weighted] + ([delta._buf] if delta is not None else [])
        if bufs:
            self._cuda.nccl_all_reduce(stream.nccl, bufs, bufs)
        if others:  # (moving statistics elsewhere than the gradients' GPU: through MPI on the host)
            for w in others:
                w.assign(_m.multiply(w, float(fraction)))
            self.all_reduce_in_place(others)
        gathered = {i: self._gather_sparse(g) for i, g in stream.sparse}
        grads = stream.finish()
        for w, t in zip(stats, weighted):
            w.assign(t)
        metrics.apply(delta)
        for i, g in gathered.items():
            grads[i] = g
        return grads

    def all_reduce_in_place(self, tensors):
        """Sums each tensor over the processes, in its own buffer (a float32 CPU tensor's memory
        is handed to MPI as it is, no copy). Returns the tensors."""
        views, commits = zip(*[_host(t) for t in tensors]) if tensors else ((), ())
        requests, unpack = self._start_all_reduce(list(views))
        self._MPI.Request.Waitall(requests)
        unpack()
        for c in commits:
            if c is not None:
                c()
        return tensors

    def _start_all_reduce(self, views):
        """Starts a SUM all-reduce of every array in `views` in place: arrays of at least
        bucket_bytes on their own, smaller float32 ones copied into one bucket. Returns the
        requests and the function that copies the bucket back once they are done."""
        MPI = self._MPI
        small = [v for v in views if v.nbytes < self.bucket_bytes and v.dtype == np.float32]
        if len(small) < 2:
            small = []
        ids = {id(v) for v in small}
        requests = [self.comm.Iallreduce(MPI.IN_PLACE, v, op=MPI.SUM) for v in views if id(v) not in ids]
        if not small:
            return requests, lambda: None
        n = sum(v.size for v in small)
        if self._bucket.size < n:
            self._bucket = np.empty(n, np.float32)
        bucket, offsets, o = self._bucket[:n], [], 0
        for v in small:
            bucket[o:o + v.size] = v.reshape(-1)
            offsets.append(o)
            o += v.size
        requests.append(self.comm.Iallreduce(MPI.IN_PLACE, bucket, op=MPI.SUM))

        def unpack():
            for v, o in zip(small, offsets):
                v.reshape(-1)[...] = bucket[o:o + v.size]
        return requests, unpack

    def _receive_buffer(self, variable, g):
        """(host array, tensor) that the all-reduced gradient of `variable` is written to, kept
        from step to step (the optimizer has used the previous step's before the next one)."""
        entry = self._received.get(id(variable))
        if entry is None or entry[0] is not variable or entry[2].shape != g.shape or entry[2].device is not g.device \
                or entry[1] is None:
            t = _m.zeros(g.shape, g.dtype, g.device)
            host = t.device.kernels.host_view(t._buf, t.shape) if t.device.kind == "cpu" else np.empty(g.shape, np.float32)
            entry = self._received[id(variable)] = (variable, host, t)
        return entry[1], entry[2]

    def _device_receive_buffer(self, variable, g):
        """The device tensor NCCL writes the summed gradient of `variable` to, kept from step to step."""
        entry = self._received.get(id(variable))
        if entry is None or entry[0] is not variable or entry[2].shape != g.shape or entry[2].device is not g.device \
                or entry[2].dtype != g.dtype or entry[1] is not None:
            entry = self._received[id(variable)] = (variable, None, _m.zeros(g.shape, g.dtype, g.device))
        return entry[2]

    def _gather_sparse(self, g):
        """An IndexedSlices holding every process's rows (the sum of the sparse gradients)."""
        from ..backend.sparse import IndexedSlices
        from ..backend.tensor import convert_to_tensor
        values, indices = g.values.numpy(), g.indices.numpy().astype(np.int64)
        counts = np.array(self.comm.allgather(len(indices)), np.int64)
        all_idx = np.empty(int(counts.sum()), np.int64)
        self.comm.Allgatherv(indices, [all_idx, counts])
        row = int(np.prod(values.shape[1:], dtype=np.int64))
        all_val = np.empty((int(counts.sum()),) + values.shape[1:], np.float32)
        self.comm.Allgatherv(np.ascontiguousarray(values, np.float32), [all_val, counts * row])
        return IndexedSlices(convert_to_tensor(all_val, device=g.device), convert_to_tensor(all_idx, device=g.device),
                             g.dense_shape)

    # -- failures --
    def _fatal_on_error(self):
        return _AbortOnError(self)

    def _abort(self, exc):
        _print_and_abort(self._MPI, type(exc), exc, exc.__traceback__)


class _AbortOnError:
    def __init__(self, strategy):
        self.strategy = strategy

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None and self.strategy.size > 1:
            _print_and_abort(self.strategy._MPI, kind, exc, tb)
        return False


def _print_and_abort(MPI, kind, exc, tb):
    rank = MPI.COMM_WORLD.Get_rank()
    sys.stdout.flush()
    sys.stderr.write(f"lamina: rank {rank} failed; aborting the MPI job:\n")
    traceback.print_exception(kind, exc, tb, file=sys.stderr)
    sys.stderr.flush()
    # MPI_Abort kills every process at once, the launcher's output forwarding included: give it a
    # moment to pass the traceback on (it was cut short under load)
    import time
    time.sleep(0.5)
    MPI.COMM_WORLD.Abort(1)


_hook_installed = False


def _install_excepthook(MPI):
    """An uncaught exception on any process ends the whole job (the others may be waiting on it)."""
    global _hook_installed
    if _hook_installed:
        return
    previous = sys.excepthook

    def hook(kind, exc, tb):
        if MPI.COMM_WORLD.Get_size() > 1:
            _print_and_abort(MPI, kind, exc, tb)
        previous(kind, exc, tb)

    sys.excepthook = hook
    _hook_installed = True


def _share_cores(MPI, comm):
    """Unless LAMINA_NUM_THREADS says otherwise, the processes on one machine share its cores.
    Returns this process's rank among those of its machine."""
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    n, local_rank = local.Get_size(), local.Get_rank()
    local.Free()
    if os.environ.get("LAMINA_NUM_THREADS"):
        return local_rank
    if n > 1:
        from ..config import set_num_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        set_num_threads(max(1, cores // n))
    return local_rank


# ---- host memory of tensors ------------------------------------------------------------------------

def _host(t):
    """(numpy array, commit): for a CPU tensor the array is the tensor's own memory (no copy) and
    commit is None; for other devices a host copy, and commit() writes it back into the buffer."""
    kernels = t.device.kernels
    if t.device.kind == "cpu":
        return kernels.host_view(t._buf, t.shape), None
    a = np.ascontiguousarray(t.numpy())
    return a, lambda: kernels.copy(t.device.from_numpy(a), t._buf)


def _is_sparse(g):
    return getattr(g, "_is_indexed_slices", False)


class _GradientStream:
    """Backprop's on_ready callback for one step: each dense gradient is all-reduced as soon as it
    is final, while the backward pass goes on with the earlier layers (mpi4py's non-blocking
    Iallreduce; MPI progresses it inside MPI calls, so every gradient completed also polls the
    requests started so far). A gradient of at least `bucket_bytes` goes straight from its own
    buffer; smaller ones are copied into a bucket, sent once `bucket_bytes` of them are waiting.
    The sums land in one persistent buffer per variable (out of place: a gradient's buffer may
    still be read by the rest of the backward pass). Sparse gradients are gathered afterwards.
    Every process finishes its gradients in the same order (the same model), so the collectives
    start in the same order everywhere, as MPI requires."""

    def __init__(self, strategy, variables, nccl=None):
        self.strategy, self.variables = strategy, variables
        self.out = [None] * len(variables)
        self.requests, self.sparse, self.buckets = [], [], []
        self.small, self.small_bytes = [], 0
        self.commits = []
        self.nccl = nccl                 # a communicator: dense GPU gradients are all-reduced by NCCL
        self.nccl_pending, self.nccl_bytes = [], 0

    def __call__(self, i, g):
        st = self.strategy
        MPI = st._MPI
        if g is None:
            return
        if _is_sparse(g):
            self.sparse.append((i, g))
            self.out[i] = g
            return
        if self.nccl is not None and g.device.kind == "gpu":
            # on the device, into a persistent buffer, queued in the device's stream (NCCL's kernels
            # run in order with the backward pass's); small gradients go together in one group
            reduced = st._device_receive_buffer(self.variables[i], g)
            self.out[i] = reduced
            self.nccl_pending.append((g, reduced))
            self.nccl_bytes += _validation.nbytes(g.shape, g.dtype)
            if self.nccl_bytes >= st.bucket_bytes:
                self.flush_nccl()
            return
        send, _ = _host(g)  # (a host copy when g is not in host memory)
        recv, reduced = st._receive_buffer(self.variables[i], g)
        self.out[i] = reduced
        if g.device.kind != "cpu":
            self.commits.append(lambda: reduced.device.kernels.copy(reduced.device.from_numpy(recv), reduced._buf))
        if send.nbytes >= st.bucket_bytes or send.dtype != np.float32:
            self.requests.append(st.comm.Iallreduce(send, recv, op=MPI.SUM))
        else:
            self.small.append((send, recv))
            self.small_bytes += send.nbytes
            if self.small_bytes >= st.bucket_bytes:
                self.flush()
        MPI.Request.Testall(self.requests)  # lets MPI progress the reductions started so far

    def flush_nccl(self):
        if self.nccl_pending:
            self.strategy._cuda.nccl_all_reduce(self.nccl, [g._buf for g, _ in self.nccl_pending],
                                                [r._buf for _, r in self.nccl_pending])
        self.nccl_pending, self.nccl_bytes = [], 0

    def flush(self):
        """Starts the all-reduce of the small gradients waiting for a bucket."""
        self.flush_nccl()
        if not self.small:
            return
        st = self.strategy
        MPI = st._MPI
        if len(self.small) == 1:
            send, recv = self.small[0]
            self.requests.append(st.comm.Iallreduce(send, recv, op=MPI.SUM))
        else:
            n = sum(v.size for v, _ in self.small)
            k = len(self.buckets)
            if k == len(st._buckets) or st._buckets[k].size < n:
                st._buckets[k:k + 1] = [np.empty(n, np.float32)]
            bucket = st._buckets[k][:n]
            o = 0
            for send, _ in self.small:
                bucket[o:o + send.size] = send.reshape(-1)
                o += send.size
            self.buckets.append((bucket, self.small))
            self.requests.append(st.comm.Iallreduce(MPI.IN_PLACE, bucket, op=MPI.SUM))
        self.small, self.small_bytes = [], 0

    def finish(self):
        """After every request is complete: the buckets copied out, the summed gradients."""
        for bucket, pairs in self.buckets:
            o = 0
            for send, recv in pairs:
                recv.reshape(-1)[...] = bucket[o:o + send.size]
                o += send.size
        for c in self.commits:
            c()
        return list(self.out)


def _moving_statistics(model):
    """The moving mean and variance of the model's BatchNormalization layers that train."""
    from ..layers.normalization import BatchNormalization
    layers = model._all_layers() if hasattr(model, "_all_layers") else []
    return [w for l in layers if isinstance(l, BatchNormalization) and l.trainable and l.built
            for w in (l.moving_mean, l.moving_variance)]


class _MetricState:
    """The state variables of the model's metrics before a step, to all-reduce what the step added.

    Metric state is a sum (totals, counts, confusion counts), so the global state is the state
    before the step plus the sum over processes of what each added (a Mean keeps plain weighted
    sums, so processes that weigh their batches differently add up)."""

    def __init__(self, model):
        self.model = model
        self.before = {id(v): self._snapshot(v) for v, _ in self._metric_variables()}

    def _metric_variables(self):
        """(variable, its initial value or None) of every leaf metric."""
        for m in _leaf_metrics(self.model):
            yield from zip(m.variables, getattr(m, "_initial_values", [None] * len(m.variables)))

    def delta(self, zero=False):
        """What the step added to every metric variable, packed for one all-reduce."""
        self.vars = []
        parts = []
        for v, init in self._metric_variables():
            old = self.before.get(id(v))
            if old is None:  # made during this step (compile metrics build on their first update)
                old = self._initial(v, init)
            self.vars.append((v, old))
            parts.append(self._change(v, old, zero))
        return self._pack(parts)

    # host arrays, float64 sums
    @staticmethod
    def _snapshot(v):
        return _host(v)[0].copy()

    @staticmethod
    def _initial(v, init):
        return init.numpy() if init is not None else np.zeros(v.shape, v.dtype)

    @staticmethod
    def _change(v, old, zero):
        return np.zeros(old.size) if zero else (_host(v)[0].astype(np.float64) - old.astype(np.float64)).reshape(-1)

    @staticmethod
    def _pack(parts):
        return np.concatenate(parts) if parts else np.zeros(0)

    def apply(self, delta):
        o = 0
        for v, old in self.vars:
            view, commit = _host(v)
            view[...] = (old.astype(np.float64) + delta[o:o + old.size].reshape(old.shape)).astype(view.dtype)
            if commit is not None:
                commit()
            o += old.size


class _DeviceMetricState(_MetricState):
    """_MetricState on a GPU, for steps whose gradients NCCL all-reduces: the state before the step
    kept as device copies, what the step added packed into one float32 device buffer (all-reduced
    by NCCL with the moving statistics) and added back -- no host wait. Used where every metric
    variable is a float32 one on that GPU (the same decision on every process: the same model)."""

    def __init__(self, model, device):
        self.device = device
        super().__init__(model)

    @staticmethod
    def usable(model, device):
        return all(v.device is device and v.dtype == "float32" for m in _leaf_metrics(model) for v in m.variables)

    @staticmethod
    def _snapshot(v):
        return _mp.copy(v)

    def _initial(self, v, init):
        value = init.numpy() if init is not None else np.zeros(v.shape, np.float32)
        return convert_to_tensor(np.asarray(value, np.float32), device=self.device)

    @staticmethod
    def _change(v, old, zero):
        return _mp.reshape(_m.zeros(v.shape, v.dtype, v.device) if zero else _m.subtract(v, old), (-1,))

    @staticmethod
    def _pack(parts):
        return _mp.concatenate(parts) if parts else None

    def apply(self, delta):
        o = 0
        for v, old in self.vars:
            n = int(np.prod(v.shape, dtype=np.int64))
            v.assign(_m.add(old, _mp.reshape(delta[o:o + n], v.shape)))
            o += n


def _leaf_metrics(model):
    out = []
    for m in model.metrics:
        subs = getattr(m, "metrics", None)
        out.extend(subs if isinstance(subs, list) else [m])
    return out


# ---- sharded data --------------------------------------------------------------------------------

class _ShardedArrays(ArrayData):
    """Process r's rows of every global batch: slice r of even_slices(batch rows, N), the batches
    in one shared order. Keeps the whole arrays, so validation_split cuts the same rows on
    every process."""

    def __init__(self, data, strategy):
        self.__dict__.update(data.__dict__)
        self._strategy = strategy
        self.rng = np.random.default_rng(strategy._shared_seed())

    def on_epoch_begin(self):
        self._strategy._dummy.clear()

    def __iter__(self):
        st = self._strategy
        idx = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        for i in range(0, self.n, self.batch_size):
            rows = idx[i:i + self.batch_size]
            parts = even_slices(len(rows), st.size)
            dummy = st.rank >= len(parts)
            a, b = (0, 1) if dummy else parts[st.rank]
            sel = rows[a:b]
            st._dummy.append(dummy)
            pick = lambda arr: arr[sel]  # noqa: E731
            yield self._finish(pack_x_y_sample_weight(
                map_structure(pick, self.x), map_structure(pick, self.y) if self.y is not None else None,
                map_structure(pick, self.sw) if self.sw is not None else None))


class _ShardedPyDataset(PyDatasetData):
    """Process r's batches of a PyDataset: positions r, r + N, ... of one shared order."""

    def __init__(self, data, strategy):
        self.__dict__.update(data.__dict__)
        self._strategy = strategy
        self._total = data.dataset.num_batches
        self.rng = np.random.default_rng(strategy._shared_seed())
        n = strategy.size
        self.steps = None if self._total is None else -(-self._total // n)

    def on_epoch_begin(self):
        self._strategy._dummy.clear()
        super().on_epoch_begin()

    def __iter__(self):
        st, total = self._strategy, self._total
        if total is None:
            order = (k * st.size + st.rank for k in itertools.count())
            return self._flagged(order, itertools.repeat(False))
        perm = self.rng.permutation(total) if self.shuffle else np.arange(total)
        pos = [k * st.size + st.rank for k in range(self.steps)]
        order = [int(perm[p]) if p < total else int(perm[k * st.size]) for k, p in enumerate(pos)]
        return self._flagged(order, [p >= total for p in pos])

    def _flagged(self, order, flags):
        flags = iter(flags)
        for batch in self._load(order):
            self._strategy._dummy.append(next(flags))
            yield batch

