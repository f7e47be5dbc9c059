"""Step replay: a step's kernels, recorded and run again without the Python around them.

Keras compiles `train_step`, `test_step` and `predict_step` (tf.function, jax.jit) so that the
Python of the layers, the loss and the gradient runs once per input signature, not once per
batch. lamina does the same by recording: every kernel call a step makes (`device.kernels.*`, on
the calling thread) is logged with its arguments -- train_step's forward pass, loss and
gradients (the pipelined step's too), test_step's forward pass and loss, predict_step's forward
pass; the next batches of the same shapes run the logged calls again, with the new batch's
buffers in place of the recorded batch's, and get the same output tensors back (their buffers
rewritten). The optimizer update, the loss tracker and the metrics run as usual after it.

When a step is replayed. Per input signature (shapes, dtypes and devices of the batch, the
trainable variables), the first step runs as usual (it builds weights, optimizer slots and
caches), the second and third are recorded, and the two recordings are compared call by call:
the same kernels, the same buffers in the same roles (the batch's, the step's own new ones, and
the same existing ones: weights, cached constants), the same scalar arguments (shapes, flags,
constants uploaded by the step). Random ops (dropout, noise) draw a new (seed, counter) pair
from their generator at every call: the recordings note which argument came from which draw,
and each replay draws again from the same generators in the same order, so a replayed step uses
the very seeds the step would have. Only if the recordings agree is the step replayed from the
fourth batch on. A step that reads a value back to the host (Python deciding on data), whose
scalars change from step to step otherwise, that allocates more than `MAX_BYTES`, or that uses
a kernel returning a value, is never replayed: it keeps running as usual.

As with Keras's compiled functions, Python inside `call` runs only while recording: a layer whose
Python changes its behaviour later (a counter of calls, an attribute reassigned by a callback)
behaves as recorded. `compile(run_eagerly=True)` turns replay off, as it turns Keras's
compilation off; so do custom `train_step`s, distribution strategies and `micro_batches`.
"""
import threading

import numpy as np

from ..backend.device import _devices as _DEVICES
from ..backend import dtypes, random as _random
from ..backend.autodiff import tapes_active
from ..backend.tensor import Tensor
from ..layers.layer import flatten

MAX_SIGNATURES = 8            # input signatures recorded per model (then the rest run as usual)
MAX_BYTES = 1 << 30           # a step allocating more than this is not held on to (its buffers stay allocated)
_ITEMSIZE = {code: np.dtype(name).itemsize for name, code in dtypes.CODES.items()}


class _Recording:
    """What one step did through the devices' kernels on the recording thread."""

    def __init__(self):
        self.calls = []      # (name, function, args, kwargs)
        self.created = []    # (kind, buffer, args): "new" from Buffer(...), "const" from from_numpy(array)
        self.abort = None    # why this step cannot be replayed
        self.nbytes = 0
        self.draws = []      # (seed argument, op) of each random draw, in order


class _Proxy:
    """Stands in for a device's kernel module while a step is recorded: calls from the recording
    thread are logged (and still run); other threads (the input pipeline's) pass through."""

    def __init__(self, real, rec, tid):
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_rec", rec)
        object.__setattr__(self, "_tid", tid)

    def __getattr__(self, name):
        real = getattr(self._real, name)
        if not callable(real) or threading.get_ident() != self._tid:
            return real
        rec = self._rec
        if name == "Buffer":
            def make(numel, code, index, *rest):
                buf = real(numel, code, index, *rest)
                rec.created.append(("new", buf, (numel, code, index) + rest))
                rec.nbytes += int(numel) * _ITEMSIZE.get(code, 8)
                return buf
            return make
        if name == "from_numpy":
            def upload(array, *rest):
                buf = real(array, *rest)
                rec.created.append(("const", buf, (np.array(array, copy=True),) + rest))
                rec.nbytes += np.asarray(array).nbytes
                return buf
            return upload

        def call(*args, **kwargs):
            out = real(*args, **kwargs)
            if out is not None and rec.abort is None:
                rec.abort = f"the step reads a value back from the device ({name})"
            rec.calls.append((name, real, args, kwargs))
            return out
        return call


class _Drawn(int):
    """A seed or counter from the step's j-th random draw (component c: 0 seed, 1 counter)."""

    def __new__(cls, value, j, c):
        self = super().__new__(cls, value)
        self.draw = (j, c)
        return self


def _record(fn):
    """Runs fn() with every device's kernels logged; returns (fn's result, the _Recording)."""
    rec = _Recording()
    tid = threading.get_ident()
    real_draw = _random.draw_seed

    def draw(seed, op="random"):
        key, ctr = real_draw(seed, op)
        if threading.get_ident() != tid:
            return key, ctr
        j = len(rec.draws)
        rec.draws.append((seed, op))
        return _Drawn(key, j, 0), _Drawn(ctr, j, 1)
    devices = list(_DEVICES.values())
    saved = [(d, d.kernels) for d in devices if d.kernels is not None]
    proxies = {}  # one per kernel module: devices sharing a module still share it (copy_to checks)
    for d, real in saved:
        d.kernels = proxies.setdefault(id(real), _Proxy(real, rec, tid))
    _random.draw_seed = draw
    try:
        result = fn()
    finally:
        _random.draw_seed = real_draw
        for d, real in saved:
            d.kernels = real
    if len(_DEVICES) != len(devices) and rec.abort is None:
        rec.abort = "the step created a new device"
    if rec.nbytes > MAX_BYTES and rec.abort is None:
        rec.abort = f"the step allocates {rec.nbytes} bytes (more than {MAX_BYTES})"
    return result, rec


class _Roles:
    """The role of each buffer a recording touched: ("in", i) the batch's i-th buffer,
    ("new", k) / ("const", k) the k-th buffer the step created, ("old", id) one that existed
    before (a weight, a cached constant: the same object in both recordings)."""

    def __init__(self, rec, inputs):
        self.role = {}
        for i, b in enumerate(inputs):
            self.role.setdefault(id(b), ("in", i))
        for k, (kind, buf, _) in enumerate(rec.created):
            self.role.setdefault(id(buf), (kind, k))

    def of(self, buf):
        return self.role.get(id(buf)) or ("old", id(buf))


def _same(a, b, ra, rb, types):
    """Whether argument a (first recording) and b (second) play the same part."""
    if isinstance(a, types) or isinstance(b, types):
        return isinstance(a, types) and isinstance(b, types) and ra.of(a) == rb.of(b)
    if isinstance(a, _Drawn) or isinstance(b, _Drawn):
        return isinstance(a, _Drawn) and isinstance(b, _Drawn) and a.draw == b.draw
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y, ra, rb, types) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and \
            np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], ra, rb, types) for k in a)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an object without a plain ==: only itself will do
        return a is b


def _difference(rec_a, in_a, rec_b, in_b, types):
    """None when the two recordings did the same work, else what differed."""
    ra, rb = _Roles(rec_a, in_a), _Roles(rec_b, in_b)
    if len(rec_a.draws) != len(rec_b.draws) or any(
            oa != ob or (sa is not sb and not (isinstance(sa, int) and sa == sb))
            for (sa, oa), (sb, ob) in zip(rec_a.draws, rec_b.draws)):
        return "the steps drew random numbers from different generators"
    if len(rec_a.created) != len(rec_b.created):
        return "the steps created different numbers of buffers"
    for (ka, _, aa), (kb, _, ab) in zip(rec_a.created, rec_b.created):
        if ka != kb or not _same(aa, ab, ra, rb, types):
            return "the steps created different buffers or uploaded different constants"
    if len(rec_a.calls) != len(rec_b.calls):
        return "the steps ran different numbers of kernels"
    for (na, fa, aa, ka), (nb, fb, ab, kb) in zip(rec_a.calls, rec_b.calls):
        if na != nb or fa is not fb:
            return f"the steps ran different kernels ({na} / {nb})"
        if not _same(aa, ab, ra, rb, types) or not _same(ka, kb, ra, rb, types):
            return f"the arguments of {na} changed from one step to the next (a seed, a scalar computed in Python)"
    return None


def _input_slots(arg, inputs_pos, types):
    """Paths to what changes from one replay to the next inside one argument -- the batch's
    buffers, ("in", i), and the random draws' seeds and counters, ("draw", j, c) -- or None."""
    if isinstance(arg, types):
        i = inputs_pos.get(id(arg))
        return [((), ("in", i))] if i is not None else None
    if isinstance(arg, _Drawn):
        return [((), ("draw",) + arg.draw)]
    if isinstance(arg, (tuple, list)):
        out = []
        for j, x in enumerate(arg):
            for path, what in _input_slots(x, inputs_pos, types) or ():
                out.append(((j,) + path, what))
        return out or None
    return None


def _put(arg, path, value):
    if not path:
        return value
    items = list(arg)
    items[path[0]] = _put(items[path[0]], path[1:], value)
    return type(arg)(items)


class _Program:
    """The second recording, ready to run on a new batch."""

    def __init__(self, rec, inputs, result, types):
        pos = {}
        for i, b in enumerate(inputs):
            pos.setdefault(id(b), i)
        self.steps = []
        for _, fn, args, kwargs in rec.calls:
            slots = []
            for j, a in enumerate(args):
                for path, what in _input_slots(a, pos, types) or ():
                    slots.append(((j,) + path, what))
            if kwargs and _input_slots(list(kwargs.values()), pos, types):
                raise _NotReplayable("a kernel receives the batch or a seed as a keyword argument")
            self.steps.append((fn, tuple(int(a) if isinstance(a, _Drawn) else a for a in args), kwargs, slots))
        self.draws = list(rec.draws)
        # the constants the step uploaded are uploaded again before each run (a kernel may have
        # written into one): from a pristine copy, on the device's own queue
        self.restore = []
        for kind, buf, args in rec.created:
            if kind == "const":
                array, rest = args[0], args[1:]
                kernels = _kernels_of(buf)
                self.restore.append((kernels.copy, kernels.from_numpy(array, *rest), buf))
        self.result = result
        self.pos = pos
        # tensors of the result on the batch's own buffers (an embedding's gradient keeps the ids
        # it was looked up with, a model may return an input): rebuilt on the new batch's
        self.aliased = _rebind(result, pos, None) is not result

    def run(self, inputs):
        for copy, pristine, buf in self.restore:
            copy(pristine, buf)
        draws = [_random.draw_seed(seed, op) for seed, op in self.draws]  # in the step's order
        for fn, args, kwargs, slots in self.steps:
            if slots:
                args = list(args)
                for path, what in slots:
                    value = inputs[what[1]] if what[0] == "in" else draws[what[1]][what[2]]
                    args[path[0]] = _put(args[path[0]], path[1:], value) if len(path) > 1 else value
            fn(*args, **kwargs)
        return _rebind(self.result, self.pos, inputs) if self.aliased else self.result


def _rebind(obj, pos, inputs):
    """obj with every tensor on a batch buffer (pos: id(buffer) -> index) moved onto inputs[index]
    (inputs None: a marker object instead, to find out whether there is any); obj itself when
    nothing changes."""
    if isinstance(obj, Tensor):
        i = pos.get(id(obj._buf))
        if i is None:
            return obj
        return object() if inputs is None else Tensor(inputs[i], obj.shape, obj.dtype, obj.device)
    if isinstance(obj, (list, tuple)):
        items = [_rebind(o, pos, inputs) for o in obj]
        return obj if all(a is b for a, b in zip(items, obj)) else type(obj)(items)
    if isinstance(obj, dict):
        items = {k: _rebind(v, pos, inputs) for k, v in obj.items()}
        return obj if all(items[k] is obj[k] for k in obj) else type(obj)(items)
    if getattr(obj, "_is_indexed_slices", False):
        values, indices = _rebind(obj.values, pos, inputs), _rebind(obj.indices, pos, inputs)
        if values is obj.values and indices is obj.indices:
            return obj
        if inputs is None:
            return object()
        return type(obj)(values, indices, obj.dense_shape, _unique=obj._unique)
    return obj


class _NotReplayable(Exception):
    pass


def _kernels_of(buf):
    for d in _DEVICES.values():
        if d.kernels is not None and isinstance(buf, d.kernels.Buffer):
            return d.kernels
    raise _NotReplayable("a constant on an unknown device")


def _buffer_types():
    return tuple({d.kernels.Buffer for d in _DEVICES.values() if d.kernels is not None})


class _Entry:
    __slots__ = ("seen", "first", "program", "failed")

    def __init__(self):
        self.seen, self.first, self.program, self.failed = 0, None, None, None


class StepReplay:
    """Per-model cache of recorded steps, keyed by input signature."""

    def __init__(self):
        self.entries = {}

    def explain(self):
        """{signature: 'replayed' | 'recording' | why it is not replayed} (for tests and debugging)."""
        return {k: ("replayed" if e.program is not None else e.failed or "recording") for k, e in self.entries.items()}

    def run(self, key, inputs, fn):
        """fn() (a step's forward pass, loss and gradients for the batch whose tensors are
        `inputs`), recorded or replayed as the module's docstring says."""
        if tapes_active():  # inside someone's GradientTape: the step must record onto it
            return fn()
        e = self.entries.get(key)
        if e is None:
            if len(self.entries) >= MAX_SIGNATURES:
                return fn()
            e = self.entries[key] = _Entry()
        bufs = [t._buf for t in inputs]
        if e.program is not None:
            return e.program.run(bufs)
        if e.failed is not None:
            return fn()
        e.seen += 1
        if e.seen == 1:  # builds what the first call builds; not recorded
            return fn()
        result, rec = _record(fn)
        if rec.abort is not None:
            e.failed, e.first = rec.abort, None
            return result
        if e.first is None:
            e.first = (rec, bufs)
            return result
        types = _buffer_types()
        why = _difference(e.first[0], e.first[1], rec, bufs, types)
        e.first = None
        if why is None:
            try:
                e.program = _Program(rec, bufs, result, types)
            except _NotReplayable as err:
                why = str(err)
        if why is not None:
            e.failed = why
        return result


def signature(inputs, extra=()):
    """The key of a batch: each tensor's shape, dtype and device, plus `extra`; None when a leaf
    of the batch is not a tensor (strings stay numpy arrays: not replayed)."""
    key, first = [], {}
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            return None
        # which earlier tensor of the batch shares this one's buffer (train_on_batch(x, x)): a
        # recording made with one buffer for both must not take two different ones
        key.append((t.shape, t.dtype, id(t.device), first.setdefault(id(t._buf), i)))
    return tuple(key) + tuple(extra)


def batch_tensors(data):
    """The tensors of a (x, y, sample_weight) batch, flattened (None leaves dropped)."""
    return [t for t in flatten(data) if t is not None]
