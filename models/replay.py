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
compilation off; so do custom `train_step`s and distribution strategies (a pipelined step,
`fit(micro_batches=M)`, is replayed whole, its metric updates included).

How a recording runs again. Where every call is a kernel of one device module's table, the calls
are bound once (their arguments converted and kept) into that module's compiled `Program`
(csrc/cpu/program.cpp; the CUDA module's in csrc/cuda/module.cpp), which swaps in each run's
buffers and random draws (the seeds and counters dropout and noise drew) and runs them all from
one Python call; otherwise the logged calls are made again from Python (a step whose recording ran
a kernel on host copies, a GPU's KernelUnsupported, too).

`model(x)` itself is replayed the same way where Keras's eager call could not behave differently
(CallReplay, at the end of this module): the step of a model call is its forward pass, its
outputs are made afresh at every run (they belong to the caller), and predict_step and
predict_on_batch go through it.
"""
import sys
import threading

import numpy as np

from ..backend import autodiff as _autodiff, dtypes, random as _random
from ..backend.autodiff import tapes_active
from ..backend.device import _devices as _DEVICES, get_log_device_placement as _glp
from ..backend.device import BF16_STATE, WideningTable, _widened
from ..backend.tensor import Tensor
from ..layers import layer as _layer
from ..layers.layer import flatten

MAX_SIGNATURES = 8            # input signatures recorded per model (then the rest run as usual)
MAX_BYTES = 1 << 30           # a step allocating more than this is not held on to (its buffers stay allocated)
_ITEMSIZE = {code: dtypes.ITEMSIZE[name] for name, code in dtypes.CODES.items()}


class _Active(threading.local):
    depth = 0  # steps and calls being run, recorded or replayed on this thread (a model call
    #            inside a step is the step's to record)


_active = _Active()


def _within(fn):
    _active.depth += 1
    try:
        return fn()
    finally:
        _active.depth -= 1


class _Recording:
    """What one step did through the devices' kernels on the recording thread."""

    def __init__(self):
        self.calls = []      # (name, function, args, kwargs)
        self.created = []    # (kind, buffer, args): "new" from Buffer(...), "const" from from_numpy(array)
        self.abort = None    # why this step cannot be replayed
        self.nbytes = 0
        self.draws = []      # (seed argument, op) of each random draw, in order
        self.fell_back = False  # a call ran on host copies (a device kernel's KernelUnsupported)


class _Proxy:
    """Stands in for a device's kernel module while a step is recorded: calls from the recording
    thread are logged (and still run); other threads (the input pipeline's) pass through. The
    thread is told at each call, not when the function is looked up: a bfloat16 WideningTable
    looks its kernels up once, on the recording thread, and other threads then call the same
    functions through it."""

    def __init__(self, real, rec, tid):
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_rec", rec)
        object.__setattr__(self, "_tid", tid)

    def __getattr__(self, name):
        real = getattr(self._real, name)
        tid = self._tid
        if not callable(real) or threading.get_ident() != tid:
            return real
        rec = self._rec
        if name == "Buffer":
            def make(numel, code, index, *rest):
                buf = real(numel, code, index, *rest)
                if threading.get_ident() == tid:
                    rec.created.append(("new", buf, (numel, code, index) + rest))
                    rec.nbytes += int(numel) * _ITEMSIZE.get(code, 8)
                return buf
            return make
        if name == "from_numpy":
            def upload(array, *rest):
                buf = real(array, *rest)
                if threading.get_ident() == tid:
                    rec.created.append(("const", buf, (np.array(array, copy=True),) + rest))
                    rec.nbytes += np.asarray(array).nbytes
                return buf
            return upload

        def call(*args, **kwargs):
            out = real(*args, **kwargs)
            if threading.get_ident() == tid:
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
    fell_back = _fallback_counts(saved)
    proxies = {}  # one per kernel module: devices sharing a module still share it (copy_to checks)
    was_bf16 = BF16_STATE.enabled
    for d, real in saved:
        if isinstance(real, WideningTable):  # bfloat16: the module's own calls are recorded, casts included
            d.kernels = proxies.setdefault(id(real), WideningTable(_Proxy(real.inner, rec, tid), real.buffer_type))
        else:
            d.kernels = proxies.setdefault(id(real), _Proxy(real, rec, tid))
    _random.draw_seed = draw
    try:
        result = fn()
    finally:
        _random.draw_seed = real_draw
        for d, real in saved:
            d.kernels = _widened(real) if BF16_STATE.enabled else real
    rec.fell_back = _fallback_counts(saved) != fell_back
    if rec.abort is None and any(t.device not in devices for t in _result_tensors(result)):
        rec.abort = "the step ran on a device outside lamina's table (its kernels were not recorded)"
    if BF16_STATE.enabled and not was_bf16 and rec.abort is None:
        rec.abort = "the step used bfloat16 for the first time"
    if len(_DEVICES) != len(devices) and rec.abort is None:
        rec.abort = "the step created a new device"
    if rec.nbytes > MAX_BYTES and rec.abort is None:
        rec.abort = f"the step allocates {rec.nbytes} bytes (more than {MAX_BYTES})"
    return result, rec


def _fallback_counts(saved):
    """The host-fallback calls each device table has made so far (backend/device.py's KernelTable)."""
    counts = []
    for _, table in saved:
        table = table.inner if isinstance(table, WideningTable) else table
        counts.append(table.fallback_count() if hasattr(table, "fallback_count") else 0)
    return counts


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


def _input_slots(arg, slots_of, types):
    """Paths to what changes from one replay to the next inside one argument -- the batch's
    buffers, ("in", i), the buffers made afresh for each call's result, ("fresh", k), and the
    random draws' seeds and counters, ("draw", j, c) -- or None. slots_of: id(buffer) -> slot."""
    if isinstance(arg, types):
        what = slots_of.get(id(arg))
        return [((), what)] if what is not None else None
    if isinstance(arg, _Drawn):
        return [((), ("draw",) + arg.draw)]
    if isinstance(arg, (tuple, list)):
        out = []
        for j, x in enumerate(arg):
            for path, what in _input_slots(x, slots_of, types) or ():
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
    """The second recording, ready to run on a new batch. fresh: the buffers of the result are
    made anew at each run (a model call's outputs belong to its caller); otherwise a run
    rewrites the recorded result's buffers (a step's, which the trainer consumes)."""

    def __init__(self, rec, inputs, result, types, fresh=False, inputs_dtype=None):
        slots_of = {}
        for i, b in enumerate(inputs):
            slots_of.setdefault(id(b), ("in", i))
        self.fresh = []  # (kernels.Buffer, its arguments) for each result buffer made afresh
        fresh_bufs = []  # the recording's buffers made afresh, in slot order
        if fresh:
            created = {id(buf): (kind, buf, args) for kind, buf, args in rec.created}
            for buf in _result_buffers(result):
                if id(buf) in slots_of:
                    continue
                kind, _, args = created.get(id(buf), ("old", None, None))
                if kind != "new":
                    raise _NotReplayable("the result holds a buffer the call did not make (a weight, a constant)")
                slots_of[id(buf)] = ("fresh", len(self.fresh))
                fresh_bufs.append(buf)
                self.fresh.append((_kernels_of(buf).Buffer, args))
        self.steps = []
        for _, fn, args, kwargs in rec.calls:
            slots = []
            for j, a in enumerate(args):
                for path, what in _input_slots(a, slots_of, types) or ():
                    slots.append(((j,) + path, what))
            if kwargs and _input_slots(list(kwargs.values()), slots_of, types):
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
        self.native = _native_program(rec, self.restore, self.draws, inputs, fresh_bufs)
        self.result = result
        self.pos = {k: v[1] for k, v in slots_of.items() if v[0] == "in"}
        # tensors of the result on the batch's own buffers (an embedding's gradient keeps the ids
        # it was looked up with, a model may return an input): rebuilt on the new batch's
        self.aliased = _rebind(result, self.pos, None) is not result
        self.build = _builder(result, slots_of) if fresh else None
        # one output made afresh, from a compiled program: predict_on_batch can go numpy to numpy
        self.host_shapes = [result.shape] if self.native is not None and not self.draws and \
            isinstance(result, Tensor) and slots_of.get(id(result._buf)) == ("fresh", 0) and len(self.fresh) == 1 \
            else None
        self.host_dtype = np.dtype(dtypes.to_numpy_dtype(inputs_dtype)) if self.host_shapes and inputs_dtype else None
        self.run1 = None  # one input buffer -> the one output tensor, for CallReplay.fast
        if self.host_shapes is not None and len(inputs) == 1:
            run1, shape, dtype, device = self.native.run1, result.shape, result.dtype, result.device
            self.run1 = lambda buf: Tensor(run1(buf), shape, dtype, device)

    def run(self, inputs):
        if self.native is not None:  # every call bound in a compiled Program: one call from here
            if self.draws:  # the step's random draws, in its order, as (seed, counter) pairs flattened
                made = self.native.run(inputs, [int(v) for seed, op in self.draws
                                                for v in _random.draw_seed(seed, op)])
            else:
                made = self.native.run(inputs)
            return self._result(inputs, made)
        for copy, pristine, buf in self.restore:
            copy(pristine, buf)
        draws = [_random.draw_seed(seed, op) for seed, op in self.draws]  # in the step's order
        made = [make(*args) for make, args in self.fresh]
        for fn, args, kwargs, slots in self.steps:
            if slots:
                args = list(args)
                for path, what in slots:
                    kind = what[0]
                    value = inputs[what[1]] if kind == "in" else made[what[1]] if kind == "fresh" else \
                        draws[what[1]][what[2]]
                    args[path[0]] = _put(args[path[0]], path[1:], value) if len(path) > 1 else value
            fn(*args, **kwargs)
        return self._result(inputs, made)

    def _result(self, inputs, made):
        if self.build is not None:
            return self.build(inputs, made)
        if not self.aliased:
            return self.result
        return _rebind(self.result, self.pos, inputs)


def _builder(obj, slots_of):
    """A function (inputs, made) -> obj with each tensor on a slot's buffer (slots_of: id(buffer)
    -> ("in", i) or ("fresh", k)) made anew on that run's inputs[i] or made[k]."""
    if isinstance(obj, Tensor):
        what = slots_of.get(id(obj._buf))
        if what is None:
            return lambda inputs, made: obj
        shape, dtype, device, k = obj.shape, obj.dtype, obj.device, what[1]
        if what[0] == "in":
            return lambda inputs, made: Tensor(inputs[k], shape, dtype, device)
        return lambda inputs, made: Tensor(made[k], shape, dtype, device)
    if isinstance(obj, (list, tuple)):
        parts, kind = [_builder(o, slots_of) for o in obj], type(obj)
        return lambda inputs, made: kind([f(inputs, made) for f in parts])
    if isinstance(obj, dict):
        parts = [(k, _builder(v, slots_of)) for k, v in obj.items()]
        return lambda inputs, made: {k: f(inputs, made) for k, f in parts}
    return lambda inputs, made: obj


def _native_program(rec, restore, draws, inputs, fresh):
    """The recording as one compiled Program of its device module (csrc/cpu/program.cpp, the CUDA
    module's in csrc/cuda/module.cpp), its random draws put into the calls at each run, or None
    where one cannot hold it: calls on several kernel modules, a call that is not a bindable kernel
    of the table, a draw passed other than as a positional argument, a host fallback."""
    if not rec.calls or rec.fell_back:  # a host fallback is Python's, not a bindable kernel
        return None
    module = None
    for d in _DEVICES.values():
        k = d.kernels.inner if isinstance(d.kernels, WideningTable) else d.kernels
        if k is not None and getattr(k, "Program", None) is not None and getattr(k, rec.calls[0][0], None) is rec.calls[0][1]:
            module = k
            break
    if module is None:
        return None
    calls = [("copy", module.copy, (pristine, buf), {}) for copy, pristine, buf in restore if copy is module.copy]
    if len(calls) != len(restore):
        return None
    drawn = []  # (call, argument position, index into a run's flat draws: 2 j + component)
    for i, (name, fn, args, kwargs) in enumerate(calls + list(rec.calls)):
        if getattr(module, name, None) is not fn or not module.bindable(name):
            return None
        if any(_has_drawn(v) for v in kwargs.values()) or any(_has_drawn(a) for a in args if not isinstance(a, _Drawn)):
            return None  # a draw the Program cannot put back (a keyword, or inside a list)
        drawn += [(i, j, 2 * a.draw[0] + a.draw[1]) for j, a in enumerate(args) if isinstance(a, _Drawn)]
    bound = [module.bind_call(name, fn, tuple(int(a) if isinstance(a, _Drawn) else a for a in args), kwargs)
             for name, fn, args, kwargs in calls + list(rec.calls)]
    return module.Program(bound, list(inputs), list(fresh), drawn) if drawn else \
        module.Program(bound, list(inputs), list(fresh))


def _has_drawn(a):
    if isinstance(a, _Drawn):
        return True
    return isinstance(a, (list, tuple)) and any(_has_drawn(e) for e in a)


def _result_tensors(obj):
    """The tensors of a result (nested lists, tuples, dicts)."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _result_tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _result_tensors(o)]
    return []


def _result_buffers(obj):
    """The buffers of the tensors in a result (nested lists, tuples, dicts)."""
    if isinstance(obj, Tensor):
        return [obj._buf]
    if isinstance(obj, (list, tuple)):
        return [b for o in obj for b in _result_buffers(o)]
    if isinstance(obj, dict):
        return [b for o in obj.values() for b in _result_buffers(o)]
    return []


def _rebind(obj, pos, inputs):
    """obj with every tensor on a batch buffer (pos: id(buffer) -> index) moved onto inputs[index]
    (inputs None: a marker object instead, to find out whether there is any); obj itself when
    nothing changes. inputs may be a list, or a dict keyed like pos."""
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
        return _within(lambda: self._run(key, inputs, fn))

    def _run(self, key, inputs, fn):
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
        return _advance(e, fn, bufs, lambda rec, result, types: _Program(rec, bufs, result, types))


def _advance(e, fn, bufs, make, check=None):
    """fn() for a signature not replayed yet (entry e): run as usual the first time (it builds
    what the first call builds), recorded the second and third; when those two recordings did the
    same work, make(rec, result, types) becomes e.program (raising _NotReplayable if it cannot).
    check(result, rec): why a recording cannot be replayed beyond its kernels, or None."""
    e.seen += 1
    if e.seen == 1:
        return fn()
    result, rec = _record(fn)
    if rec.abort is None and check is not None:
        rec.abort = check(result, rec)
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
            e.program = make(rec, result, types)
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


# ---- model(x) ------------------------------------------------------------------------------------
CALL_MAX_BYTES = 16 << 20  # a call allocating more is not held on to: its Python is a small share of its time
CALL_TOTAL_BYTES = 64 << 20  # what a model's replayed calls hold, all signatures together
_MISS = object()
_device = sys.modules[_glp.__module__]  # backend/device.py (the package's `device` is the scope class)


class CallReplay:
    """`model(x)` on tensors, outside any tape and not training, replayed like predict_step: the
    kernels of the layers' forward pass recorded (the second and third calls of a signature,
    compared) and run again from the fourth, with fresh buffers for the outputs (each call's
    result is its caller's; the intermediates are reused). Keras runs `model(x)` eagerly, so only
    calls whose Python cannot differ from one call to the next are replayed: a Sequential or
    Functional model (not a subclass with its own `call`) made of lamina's own layers, none of them
    a Lambda, a stateful recurrent layer or a layer with an activity regularizer; a call that adds
    losses, produces masks, sets an attribute on a layer, reads a value back to the host or
    allocates more than CALL_MAX_BYTES is never replayed. Any attribute set on any layer
    (`layer.activation = ...`, `Sequential.add`, `quantize`, `enable_lora`) makes the model's
    recordings start again."""

    def __init__(self):
        self.entries = {}
        self.stamp = None      # the layers' mutation count at which `eligible` was decided
        self.eligible = False
        self.lock = threading.Lock()
        self.last = None       # (shape, dtype, device, training, program): the last replayed one-tensor call
        self.loss_adds = None  # _layer._loss_adds when the model's losses were last known to be clear
        self.held = 0          # bytes the recorded programs hold

    def _unchanged(self):
        """Whether the last replayed call still stands for a plain call now: no layer changed, no
        losses to clear, not inside a step, a layer's call, a tape, a placement log or a scope."""
        return self.stamp == _layer._mutations and self.loss_adds == _layer._loss_adds and not _active.depth \
            and not _layer._ctx.training and _layer._ctx.entry is None and not _autodiff._state.tapes and \
            not _device._log_placement and not _device._scope.stack

    def _clear_stale_losses(self, model):
        """Losses an earlier (eager) call left are cleared, as the eager call would."""
        if self.loss_adds != _layer._loss_adds:
            model._clear_losses()
            self.loss_adds = _layer._loss_adds

    def fast(self, x, training=None):
        """model(x, training=training) for one tensor x of the last replayed signature, outside any
        device scope, tape or other call: its replayed result; None where run() decides."""
        last = self.last
        if last is None or type(x) is not Tensor or x.shape != last[0] or x.dtype != last[1] or \
                x.device is not last[2] or training is not last[3] or x._keras_mask is not None or \
                not self._unchanged() or not self.lock.acquire(blocking=False):
            return None
        try:
            program = last[4]
            return program.run1(x._buf) if program.run1 is not None else program.run([x._buf])
        finally:
            self.lock.release()

    def fast_host(self, array, training):
        """fast() for a numpy array that convert_to_tensor would place unchanged on cpu:0, to a
        numpy array (predict_on_batch); None where the usual path decides."""
        last = self.last
        if last is None or last[4].host_shapes is None or array.shape != last[0] or \
                array.dtype != last[4].host_dtype or last[2] is not _device.CPU or training is not last[3] or \
                not array.flags.c_contiguous or not self._unchanged() or not self.lock.acquire(blocking=False):
            return None
        try:
            return last[4].native.run_host([array], last[4].host_shapes)[0]
        finally:
            self.lock.release()

    def run(self, model, inputs, key, fn, max_bytes=CALL_MAX_BYTES, single=False):
        """fn() (the model's eager call on `inputs`, a list of tensors), replayed when it can be;
        _MISS when this call should take the eager path itself. A call allocating more than
        max_bytes is not recorded (predict_step allows as much as a step). single: the model was
        called on one tensor (not a structure), so fast() may take the next such call."""
        if self.stamp == _layer._mutations and not _active.depth:  # the common case first
            e = self.entries.get(key)
            if e is not None and e.program is not None and self.lock.acquire(blocking=False):
                try:
                    self._clear_stale_losses(model)
                    if single and key[3] is None:  # a one-tensor key: (shape, dtype, device, scope, training)
                        self.last = (key[0], key[1], inputs[0].device, key[4], e.program)
                    return e.program.run([t._buf for t in inputs])
                finally:
                    self.lock.release()
        return self._run(model, inputs, key, fn, max_bytes)

    def _run(self, model, inputs, key, fn, max_bytes):
        stamp = _layer._mutations
        if stamp != self.stamp:
            self.entries.clear()
            self.last, self.held = None, 0
            self.eligible, self.stamp = _eligible(model), stamp
        if not self.eligible or _active.depth or not self.lock.acquire(blocking=False):
            return _MISS
        _active.depth += 1
        try:
            e = self.entries.get(key)
            if e is None:
                if len(self.entries) >= MAX_SIGNATURES:
                    return _MISS
                e = self.entries[key] = _Entry()
            bufs = [t._buf for t in inputs]
            if e.program is not None:
                self._clear_stale_losses(model)
                return e.program.run(bufs)
            if e.failed is not None:
                return _MISS

            def make(rec, result, types):
                if self.held + rec.nbytes > max(max_bytes, CALL_TOTAL_BYTES):
                    raise _NotReplayable(f"the model's replayed calls hold {self.held} bytes already")
                program = _Program(rec, bufs, result, types, fresh=True,
                                   inputs_dtype=inputs[0].dtype if len(inputs) == 1 else None)
                self.held += rec.nbytes
                self.loss_adds = _layer._loss_adds  # the recorded call added none: the losses are clear
                return program
            return _advance(e, fn, bufs, make, lambda result, rec: _call_side_effects(model, result, stamp, rec,
                                                                                     max_bytes))
        finally:
            _active.depth -= 1
            self.lock.release()

    def explain(self):
        return {k: ("replayed" if e.program is not None else e.failed or "recording") for k, e in self.entries.items()}


def _call_side_effects(model, result, stamp, rec, max_bytes):
    """Why a recorded model call cannot be replayed, beyond its kernels; None when it can."""
    if _layer._mutations != stamp:
        return "the call set an attribute on a layer"
    if rec.nbytes > max_bytes:
        return f"the call allocates {rec.nbytes} bytes (more than {max_bytes})"
    for t in flatten(result):
        if not isinstance(t, Tensor):
            return "the result is not made of tensors"
        if t._keras_mask is not None:
            return "the result carries a mask"
    if any(l._losses for l in _all_layers(model)):
        return "the call added losses"
    return None


def _all_layers(layer):
    out, todo = [], [layer]
    while todo:
        l = todo.pop()
        out.append(l)
        todo.extend(l._layers)
    return out


def _eligible(model):
    """Whether model(x)'s Python is the same at every call: see CallReplay."""
    from ..layers.core import Lambda
    from .model import Functional
    from .sequential import Sequential
    for l in _all_layers(model):
        cls = type(l)
        if not cls.__module__.startswith("lamina."):
            return False
        if isinstance(l, Lambda) or getattr(l, "stateful", False) or l.activity_regularizer is not None:
            return False
        if hasattr(l, "_step_replay") and cls.call not in (Functional.call, Sequential.call):
            return False  # a model with its own call (a subclass)
    return True
