"""Reverse-mode automatic differentiation over a tape.

While a GradientTape is active, every op whose inputs need gradients records a Node on its
output: the inputs and a backward function. `tape.gradient(target, sources)` walks those nodes
from the target back in reverse topological order, calling each backward function once with the
summed gradient of its output. Trainable Variables need gradients automatically; other tensors
when passed to `tape.watch`. The same machinery runs `fit`.
"""
import contextlib
import threading


class Node:
    """How an op's output was made: its inputs, which of them need gradients, and
    `backward(grad, needs) -> tuple of input gradients (None where not needed)`.

    An op that can add its input gradients into existing buffers (the recurrent layers' weight
    gradients: summed over time steps, and over micro-batches when a pipeline reuses a layer)
    records with `accumulates=True`: its backward is then called as `backward(grad, needs, acc)`,
    where acc[i] is a gradient of input i that backprop already holds and owns (a dense float32
    tensor nobody else sees) or None. The op may add its gradient into acc[i] in place and return
    acc[i] itself for that input; every other gradient it returns must be a new tensor."""

    __slots__ = ("inputs", "backward", "needs", "accumulates")

    def __init__(self, inputs, backward, needs, accumulates=False):
        self.inputs = inputs
        self.backward = backward
        self.needs = needs
        self.accumulates = accumulates


class _State(threading.local):
    def __init__(self):
        self.tapes = []
        self.recording = False


_state = _State()


def needs_grad(*tensors):
    """True when an op on these tensors must record a Node."""
    if not _state.recording:
        return False
    for t in tensors:
        if t._rg:
            return True
    return False


_FLOATS = ("float32", "bfloat16")


def record(out, inputs, backward, accumulates=False):
    """Attaches a Node to `out` (call only when needs_grad(*inputs)); see Node for `accumulates`."""
    out._node = Node(inputs, backward, tuple(t._rg for t in inputs), accumulates)
    out._rg = True
    return out


class _Deferral(threading.local):
    def __init__(self):
        self.devices = None  # None: the default (matmul's weight gradients lazy, the RNNs' formed at once)


_deferral = _Deferral()


@contextlib.contextmanager
def deferred_weight_gradients(devices):
    """Inside, backward passes form the weight gradients of ops on `devices` (a collection of
    Devices) when they are read, at the end of the pass -- matmul's (sparse.OuterProducts) and the
    recurrent layers' (rnn.StackedProducts) -- and those of ops on every other device at once,
    adding into the running sums. A pipelined step defers on its last stage, whose input
    gradients the stages before wait for, and forms them at once on the earlier stages, which
    have idle time while they wait (zero-bubble pipelining, models/trainer.py)."""
    was = _deferral.devices
    _deferral.devices = frozenset(devices)
    try:
        yield
    finally:
        _deferral.devices = was


def weight_gradients_deferred(device):
    """True when the open deferred_weight_gradients scope defers weight gradients on device."""
    devs = _deferral.devices
    return devs is not None and device in devs


@contextlib.contextmanager
def no_grad():
    """Nothing computed inside is recorded on any tape (updates of moving statistics, weight
    constraints, inference): `with lamina.no_grad(): ...`."""
    was = _state.recording
    _state.recording = False
    try:
        yield
    finally:
        _state.recording = was


def fusion_allowed():
    """Whether an op may record a Node that differentiates through the op that made its input
    (max pooling over bias_relu's output, convolution.py) and so leaves that intermediate tensor
    off the graph: only while the one open tape is a training step's (GradientTape with
    _fused=True), which takes gradients of variables only. A tape opened inside it (a layer's
    own) turns it off, as that tape could ask for the gradient of an intermediate tensor."""
    tapes = _state.tapes
    return _state.recording and len(tapes) == 1 and tapes[0]._fused


def tapes_active():
    """Whether a GradientTape is open on this thread (step replay stays out of its way)."""
    return bool(_state.tapes)


def _update_recording():
    _state.recording = any(t._active and not t._paused for t in _state.tapes)


class _StopRecording:
    def __init__(self, tape):
        self.tape = tape

    def __enter__(self):
        self.tape._paused = True
        _update_recording()

    def __exit__(self, *exc):
        self.tape._paused = False
        _update_recording()
        return False


def _flatten(x):
    if isinstance(x, dict):
        return [t for v in x.values() for t in _flatten(v)]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _flatten(v)]
    return [x]


def _unflatten(structure, flat_iter):
    if isinstance(structure, dict):
        return {k: _unflatten(v, flat_iter) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return type(structure)(_unflatten(v, flat_iter) for v in structure)
    return next(flat_iter)


class GradientTape:
    """Records ops for differentiation.

        with lamina.GradientTape() as tape:
            loss = ops.mean((model(x) - y) ** 2)
        grads = tape.gradient(loss, model.trainable_weights)

    `persistent=True` allows several `gradient` calls; otherwise the recorded graph (and the
    activations it holds) is released by the first call.
    """

    def __init__(self, persistent=False, watch_accessed_variables=True, _fused=False):
        self.persistent = persistent
        self._fused = _fused  # internal: a training step's tape (see fusion_allowed)
        self.watch_accessed_variables = watch_accessed_variables
        self._active = False
        self._paused = False
        self._used = False
        self._watched = []

    def __enter__(self):
        self._active = True
        _state.tapes.append(self)
        _update_recording()
        return self

    def __exit__(self, *exc):
        self._active = False
        if self in _state.tapes:
            _state.tapes.remove(self)
        _update_recording()
        return False

    def watch(self, tensor):
        """Marks tensors (or nested lists of them) so that ops on them are recorded."""
        from .tensor import Tensor
        for t in _flatten(tensor):
            if not isinstance(t, Tensor):
                raise TypeError(f"GradientTape.watch expects tensors or variables, received {type(t).__name__}")
            t._rg = True
            self._watched.append(t)

    def stop_recording(self):
        """Context manager in which ops are not recorded."""
        return _StopRecording(self)

    def reset(self):
        self._used = False
        self._watched = []

    def gradient(self, target, sources, output_gradients=None, unconnected_gradients="none", _on_ready=None):
        """Gradients of `target` (a tensor, or a list whose gradients add up) with respect to
        `sources` (a tensor/variable or a nested list/dict of them), in the same structure.
        A source the target does not depend on gets None (or zeros with
        unconnected_gradients="zero"). A source used only through embedding lookups (e.g. an
        Embedding table) gets an IndexedSlices, a sparse row gradient, as in TensorFlow; pass it
        to an optimizer as it is, or use it as a tensor (it densifies).

        `_on_ready(i, gradient)` (internal, for data-parallel strategies): called for the i-th
        flattened source as soon as its gradient is final, while backprop goes on (see backprop)."""
        from .tensor import Tensor
        from . import math as _m
        if self._used and not self.persistent:
            raise RuntimeError("A non-persistent GradientTape can compute gradients only once; "
                               "create it with GradientTape(persistent=True) to call gradient() again.")
        if unconnected_gradients not in ("none", "zero"):
            raise ValueError(f"unconnected_gradients must be 'none' or 'zero', received {unconnected_gradients!r}")
        targets = _flatten(target)
        for t in targets:
            if not isinstance(t, Tensor):
                raise TypeError(f"GradientTape.gradient: target must be a tensor, received {type(t).__name__}")
        if output_gradients is None:
            seeds = [_m.ones_like(t) for t in targets]
        else:
            seeds = [s if isinstance(s, Tensor) else _m.convert_to_tensor(s, t.dtype, t.device)
                     for s, t in zip(_flatten(output_gradients), targets)]
            for s, t in zip(seeds, targets):
                if s.shape != t.shape:
                    raise ValueError(f"GradientTape.gradient: output_gradients shape {s.shape} does not "
                                     f"match target shape {t.shape}")
        flat_sources = _flatten(sources)
        for s in flat_sources:
            if not isinstance(s, Tensor):
                raise TypeError(f"GradientTape.gradient: sources must be tensors or variables, received {type(s).__name__}")
        if self._fused and any(s._node is not None for s in flat_sources):
            raise ValueError("GradientTape.gradient: this training step's tape fuses ops across intermediate "
                             "tensors, so it gives gradients of variables and leaf tensors only; use a plain "
                             "GradientTape for the gradient of an intermediate tensor")
        was = _state.recording
        _state.recording = False
        try:
            grads = backprop(targets, seeds, flat_sources, release=not self.persistent, on_ready=_on_ready)
        finally:
            _state.recording = was
        self._used = True
        out = []
        for s, g in zip(flat_sources, grads):
            if g is None and unconnected_gradients == "zero":
                g = _m.zeros_like(s)
            out.append(g)
        return _unflatten(sources, iter(out))


def backprop(targets, seeds, sources, release=False, on_ready=None):
    """Returns d(sum of targets)/d(source) for each source (None when unconnected).

    A gradient may be sparse (an IndexedSlices from an embedding lookup): several accumulate by
    concatenation, one meeting a dense gradient becomes dense, and a source keeps its sparse
    gradient; an op's backward function always receives a dense one.

    on_ready(i, gradient): called for source i as soon as its gradient is final -- once every op
    that used it has run its backward -- while the rest of the backward pass is still to run
    (data-parallel training starts its all-reduces there). Called exactly once per source, in the
    order the gradients complete (unconnected sources, with None, at the end); the gradient is
    the one returned for it (dense, or an IndexedSlices).

    Accumulation: the first gradient an input receives is kept as it is (an op's backward may hand
    the same tensor to several inputs, or pass its own incoming gradient through); the sum of two
    is a new tensor that backprop owns, and later gradients are added into an owned sum in place
    (by the producing op itself when it records `accumulates=True`, see Node), so a weight used
    by many ops (micro-batches, shared layers) costs one buffer and no extra pass per use. A
    gradient stops being owned when it is handed to an op's backward or reported final."""
    from . import math as _m
    from . import sparse as _sparse
    # Reverse topological order by iterative depth-first search.
    order, visited = [], set()
    stack = [(t, False) for t in targets]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        node = t._node
        if node is not None:
            for i in node.inputs:
                if i._rg and id(i) not in visited:
                    stack.append((i, False))
    source_ids = {id(s) for s in sources}
    grads = {}
    for t, s in zip(targets, seeds):
        grads[id(t)] = s if id(t) not in grads else _m.add(grads[id(t)], s)
    kept = {}
    owned = set()   # ids of the gradients in `grads` that backprop made and may add into in place
    eager = _deferral.devices  # lazy weight gradients of ops on other devices are formed at once
    final = {}      # source id -> its final gradient (densified), once reported to on_ready
    pending = {}    # source id -> ops that use it and have not yet run their backward
    if on_ready is not None:
        where = {}
        for i, s in enumerate(sources):
            where.setdefault(id(s), []).append(i)
        pending = dict.fromkeys(where, 0)
        for t in order:
            if t._node is not None:
                for inp in t._node.inputs:
                    if id(inp) in pending:
                        pending[id(inp)] += 1

        def ready(sid):
            g = kept.get(sid, grads.get(sid))
            owned.discard(id(g))
            if _sparse.is_outer_products(g):
                g = g.to_dense()
            final[sid] = g
            for i in where[sid]:
                on_ready(i, g)

    for t in reversed(order):
        tid = id(t)
        g = grads.get(tid) if tid in source_ids else grads.pop(tid, None)
        if tid in source_ids:
            kept[tid] = g
        node = t._node
        if node is not None and pending:
            for inp in node.inputs:  # after this op's backward (below), one user fewer
                iid = id(inp)
                if iid in pending:
                    pending[iid] -= 1
        if g is None or node is None:
            if pending:
                _report_ready(node, pending, final, ready)
            continue
        if _sparse.is_indexed_slices(g) or _sparse.is_outer_products(g):  # backward functions take dense ones
            g = g.to_dense()
        if g.dtype != t.dtype and g.dtype in _FLOATS and t.dtype in _FLOATS:  # mixed precision: a tensor's
            g = _m.cast(g, t.dtype)  # gradient has its dtype (an op's backward may give float32 for bfloat16)
        owned.discard(id(g))  # handed out: the op may return it, or pass it on to several inputs
        if node.accumulates:
            acc = tuple(_owned_dense(grads.get(id(inp)), owned, inp) if need else None
                        for inp, need in zip(node.inputs, node.needs))
            in_grads = node.backward(g, node.needs, acc)
        else:
            acc, in_grads = None, node.backward(g, node.needs)
        for j, (inp, ig, need) in enumerate(zip(node.inputs, in_grads, node.needs)):
            if ig is None or not need:
                continue
            if ig.shape != inp.shape:
                raise RuntimeError(f"internal error: gradient of shape {ig.shape} for input of shape {inp.shape}")
            iid = id(inp)
            prev = grads.get(iid)
            fresh = acc is not None  # an accumulating op's gradients are new tensors
            if eager is not None and _sparse.is_outer_products(ig) and ig.device not in eager \
                    and _owned_dense(prev, owned, inp) is None:
                ig, fresh = ig.to_dense(), True  # formed at once (added into an owned sum below)
            if prev is None:
                grads[iid] = ig
                if fresh:
                    owned.add(id(ig))
            elif acc is not None and ig is acc[j]:
                pass  # the op added its gradient into prev
            elif _owned_dense(prev, owned, inp) is not None and _addable(ig, prev):
                _add_into(prev, ig)
            else:
                total = _sparse.add(prev, ig)
                grads[iid] = total
                if _is_dense_f32(total):  # a new tensor (sparse.add never returns an operand)
                    owned.add(id(total))
        if pending:
            _report_ready(node, pending, final, ready)
        if release:
            t._node = None
    if on_ready is not None:
        for s in sources:  # not used by any op on the way to the targets (or a target itself)
            if id(s) not in final:
                ready(id(s))
        return [final[id(s)] for s in sources]
    out = [kept.get(id(s), grads.get(id(s))) for s in sources]
    return [g.to_dense() if _sparse.is_outer_products(g) else g for g in out]


def _report_ready(node, pending, final, ready):
    """Reports the sources among node's inputs whose last user has just run its backward."""
    if node is None:
        return
    for inp in node.inputs:
        iid = id(inp)
        if pending.get(iid) == 0 and iid not in final:
            ready(iid)


def _is_dense_f32(t):
    from .tensor import Tensor
    from .dtypes import FLOAT32
    return type(t) is Tensor and t.dtype == FLOAT32


def _owned_dense(g, owned, inp):
    """g when it is a dense float32 gradient backprop owns with inp's shape, else None."""
    return g if g is not None and id(g) in owned and _is_dense_f32(g) and g.shape == inp.shape else None


def _addable(g, acc):
    """Whether g (dense, IndexedSlices or a lazy product) can be added into the dense acc in place."""
    if _is_dense_f32(g):
        return g.device is acc.device
    values = getattr(g, "values", None)  # IndexedSlices: its rows' dtype must match
    return hasattr(g, "add_into") and g.device is acc.device and (values is None or values.dtype == acc.dtype)


def _add_into(acc, g):
    """acc += g in place: axpby for a dense g, its own add_into otherwise (rows scatter-added, products
    formed by GEMMs adding into acc)."""
    if _is_dense_f32(g):
        acc.device.kernels.axpby(1.0, g._buf, 1.0, acc._buf)
    else:
        g.add_into(acc)
