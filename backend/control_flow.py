"""keras.ops's control flow for an eager library: cond, switch, while_loop, fori_loop, scan,
associative_scan, map, vectorized_map, and custom_gradient.

lamina runs ops as they are called, so these are Python loops and branches over ops; gradients
flow through whatever ops the bodies run (a loop of 10 steps records 10 steps on the tape).
Loop state keeps Keras's contract (the same structure, shapes and dtypes on every iteration)
and breaking it is an error, as it would be under JAX or TensorFlow.

Symbolic KerasTensors (the inputs of a functional model) carry no values to branch or loop on:
these functions raise a TypeError for them; use them inside a layer's call() or a
layers.Lambda, which run on real tensors.
"""
import builtins
import functools
import inspect

import numpy as np

from . import dtypes, validation
from . import math as _m
from .autodiff import needs_grad, no_grad, record
from .manipulation import concatenate, flip, reshape, stack
from .math import _as_tensor
from .rnn import _record_multi
from .tensor import Tensor, convert_to_tensor

__all__ = ["cond", "switch", "while_loop", "fori_loop", "scan", "associative_scan", "map", "vectorized_map",
           "custom_gradient"]


# ---- nested structures (lists, tuples, dicts; anything else is a leaf) ----------------------------

def _flatten(s):
    if isinstance(s, dict):
        return [t for k in s for t in _flatten(s[k])]
    if isinstance(s, (list, tuple)):
        return [t for v in s for t in _flatten(v)]
    return [s]


def _pack(structure, flat):
    it = iter(flat)

    def build(s):
        if isinstance(s, dict):
            return type(s)((k, build(s[k])) for k in s)
        if isinstance(s, tuple) and hasattr(s, "_fields"):   # namedtuple
            return type(s)(*(build(v) for v in s))
        if isinstance(s, (list, tuple)):
            return type(s)(build(v) for v in s)
        return next(it)
    return build(structure)


def _is_symbolic(x):
    return not isinstance(x, Tensor) and hasattr(x, "_keras_history")


def _no_symbolic(op, *values):
    for v in values:
        for leaf in _flatten(v):
            if _is_symbolic(leaf):
                raise TypeError(f"{op}: received a symbolic KerasTensor {leaf!r}; lamina runs control flow eagerly on "
                                f"real tensors, so it cannot be traced into a functional model. Call ops.{op} inside a "
                                f"layer's call(), or wrap it: layers.Lambda(lambda t: ops.{op}(...))(tensor)")


def _callable(op, f, name):
    if not callable(f):
        raise TypeError(f"{op}: {name} must be callable, received {type(f).__name__} {f!r:.60}")


def _tensor(op, v, what):
    try:
        return _as_tensor(v, op)
    except TypeError as e:
        raise TypeError(f"{op}: {what} must hold tensors or numbers; {e}") from e


def _truth(op, v, what):
    """A Python bool from a bool, a number or a one-element tensor."""
    if isinstance(v, Tensor):
        if v.size != 1:
            raise ValueError(f"{op}: {what} must be a scalar, received a tensor of shape {v.shape}; reduce it "
                             "first, e.g. ops.all(x)")
        return bool(v.item())
    a = np.asarray(v)
    if a.dtype.kind not in "biuf" or a.size != 1:
        raise TypeError(f"{op}: {what} must be a scalar bool, received {v!r:.60}")
    return bool(a.reshape(()).item())


def _matching(op, new, ref, what):
    """The leaves of `new`, checked against the reference leaves `ref` (same count, shapes and
    dtypes; numbers take the reference's dtype)."""
    flat = _flatten(new)
    if len(flat) != len(ref):
        raise ValueError(f"{op}: {what} must keep the structure of its initial value ({len(ref)} tensor(s)), "
                         f"received {len(flat)}: {new!r:.80}")
    out = []
    for i, (v, r) in enumerate(zip(flat, ref)):
        t = v if isinstance(v, Tensor) else convert_to_tensor(_numeric(op, v, what), r.dtype, r.device)
        if t.shape != r.shape or t.dtype != r.dtype:
            raise ValueError(f"{op}: {what} must keep each tensor's shape and dtype; entry {i} was shape {r.shape} "
                             f"{r.dtype}, received shape {t.shape} {t.dtype}")
        out.append(t)
    return out


def _numeric(op, v, what):
    a = np.asarray(v)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{op}: {what} must hold tensors or numbers, received {type(v).__name__} {v!r:.60}")
    return a


# ---- branches -----------------------------------------------------------------------------------

def cond(pred, true_fn, false_fn):
    """true_fn() if pred else false_fn(); pred is a bool or a one-element tensor."""
    _callable("cond", true_fn, "true_fn")
    _callable("cond", false_fn, "false_fn")
    _no_symbolic("cond", pred)
    return true_fn() if _truth("cond", pred, "pred") else false_fn()


def switch(index, branches, *operands):
    """branches[index](*operands), with index clamped to [0, len(branches) - 1] (Keras)."""
    _no_symbolic("switch", index, operands)
    if not isinstance(branches, (list, tuple)) or not branches:
        raise ValueError(f"switch: branches must be a non-empty list of callables, received {branches!r:.60}")
    for i, b in enumerate(branches):
        _callable("switch", b, f"branches[{i}]")
    if isinstance(index, Tensor):
        if index.size != 1 or not dtypes.is_int(index.dtype):
            raise TypeError(f"switch: index must be a scalar integer, received a {index.dtype} tensor of shape "
                            f"{index.shape}")
        index = int(index.item())
    index = validation.integer(index, "switch", "index")
    return branches[builtins.min(builtins.max(index, 0), len(branches) - 1)](*operands)


# ---- loops --------------------------------------------------------------------------------------

def while_loop(cond, body, loop_vars, maximum_iterations=None):
    """Runs `loop_vars = body(*loop_vars)` while `cond(*loop_vars)` holds (at most
    maximum_iterations times). A tuple or list of loop_vars is passed positionally, anything
    else as one argument; the result has loop_vars' structure. body must keep every tensor's
    shape and dtype."""
    op = "while_loop"
    _callable(op, cond, "cond")
    _callable(op, body, "body")
    _no_symbolic(op, loop_vars)
    if maximum_iterations is not None:
        maximum_iterations = validation.size(maximum_iterations, op, "maximum_iterations")
    is_seq = isinstance(loop_vars, (list, tuple))
    state = tuple(loop_vars) if is_seq else (loop_vars,)
    ref = [_tensor(op, v, "loop_vars") for v in _flatten(state)]
    state = _pack(state, ref)
    it = 0
    while (maximum_iterations is None or it < maximum_iterations) and _truth(op, cond(*state), "cond's result"):
        new = body(*state)
        if not isinstance(new, (list, tuple)):
            new = (new,)
        state = _pack(state, _matching(op, tuple(new), ref, "body's result"))
        it += 1
    if not is_seq:
        return state[0]
    return type(loop_vars)(*state) if hasattr(loop_vars, "_fields") else type(loop_vars)(state)


def fori_loop(lower, upper, body_fun, init_val):
    """val = body_fun(i, val) for i in range(lower, upper) (i is a Python int); returns val."""
    op = "fori_loop"
    _callable(op, body_fun, "body_fun")
    _no_symbolic(op, lower, upper, init_val)
    lo = int(lower.item()) if isinstance(lower, Tensor) and lower.size == 1 else lower
    hi = int(upper.item()) if isinstance(upper, Tensor) and upper.size == 1 else upper
    lo, hi = validation.integer(lo, op, "lower"), validation.integer(hi, op, "upper")
    val = init_val
    for i in range(lo, hi):
        val = body_fun(i, val)
    return val


def _leading(op, xs_flat, length):
    ns = {t.shape[0] if t.ndim else None for t in xs_flat}
    if None in ns:
        raise ValueError(f"{op}: every tensor in xs needs a leading axis to loop over; received a scalar")
    if len(ns) > 1:
        raise ValueError(f"{op}: the tensors in xs must share their leading dimension, received shapes "
                         f"{[t.shape for t in xs_flat]}")
    n = ns.pop()
    if length is not None and length != n:
        raise ValueError(f"{op}: length={length} does not match the leading dimension {n} of xs")
    return n


def scan(f, init, xs=None, length=None, reverse=False, unroll=1):
    """keras.ops.scan: `carry, y = f(carry, x)` for each x along xs' leading axis (or `length`
    times with x None when xs is None); returns (final carry, the ys stacked). reverse scans
    from the end (ys keep xs' order). f must keep the carry's structure, shapes and dtypes; a
    y of None stacks zeros of the carry's shapes (Keras). `unroll` (a positive int or a bool)
    is JAX's compilation hint and is checked, not used: an eager loop runs the same way."""
    op = "scan"
    _callable(op, f, "f")
    _no_symbolic(op, init, xs)
    if not isinstance(unroll, bool) and (not isinstance(unroll, (int, np.integer)) or unroll < 1):
        raise ValueError(f"scan: unroll must be a positive integer or a bool, received {unroll!r}")
    if not isinstance(reverse, (bool, np.bool_)):
        raise TypeError(f"scan: reverse must be True or False, received {reverse!r}")
    if xs is None and length is None:
        raise ValueError("scan: give xs to scan over, or length when xs is None")
    if length is not None:
        length = validation.size(length, op, "length")
    xs_flat = [] if xs is None else [_tensor(op, t, "xs") for t in _flatten(xs)]
    n = _leading(op, xs_flat, length) if xs_flat else length
    ref = [_tensor(op, t, "init") for t in _flatten(init)]
    carry = _pack(init, ref)
    if n == 0:
        return carry, _empty_ys(f, carry, xs, xs_flat, ref)
    ys = []
    for i in (range(n - 1, -1, -1) if reverse else range(n)):
        x = _pack(xs, [t[i] for t in xs_flat]) if xs is not None else None
        res = f(carry, x)
        if not isinstance(res, (list, tuple)) or len(res) != 2:
            raise ValueError(f"scan: f must return a pair (new_carry, y), received {res!r:.80}")
        carry = _pack(init, _matching(op, res[0], ref, "the carry returned by f"))
        ys.append(res[1])
    if reverse:
        ys.reverse()
    return carry, _stack_ys(op, ys)


def _stack_ys(op, ys):
    if builtins.all(y is None for y in ys):
        return None
    first = ys[0]
    flat = [_flatten(y) for y in ys]
    if builtins.any(len(fl) != len(flat[0]) for fl in flat):
        raise ValueError(f"{op}: f must return ys of one structure on every step")
    cols = builtins.zip(*flat)
    out = []
    for j, col in enumerate(cols):
        ts = [t if isinstance(t, Tensor) else convert_to_tensor(_numeric(op, t, "y")) for t in col]
        if len({(t.shape, t.dtype) for t in ts}) > 1:
            raise ValueError(f"{op}: the ys returned by f must keep their shapes and dtypes; entry {j} varies: "
                             f"{sorted({(t.shape, t.dtype) for t in ts}, key=str)}")
        out.append(stack(ts))
    return _pack(first, out)


def _empty_ys(f, carry, xs, xs_flat, ref):
    """ys of a zero-length scan: f traced once on zeros (no tape) for the shapes of y."""
    x = _pack(xs, [_m.zeros(t.shape[1:], t.dtype, t.device) for t in xs_flat]) if xs is not None else None
    with no_grad():
        _, y = f(carry, x)
    if y is None:
        return None
    leaves = [t if isinstance(t, Tensor) else convert_to_tensor(_numeric("scan", t, "y")) for t in _flatten(y)]
    return _pack(y, [_m.zeros((0,) + t.shape, t.dtype, t.device) for t in leaves])


def map(f, xs):
    """keras.ops.map: f applied to each slice of xs (a tensor or a structure of them) along the
    leading axis, the results stacked: stack([f(x) for x in xs])."""
    _callable("map", f, "f")
    _no_symbolic("map", xs)
    if xs is None:
        raise ValueError("map: xs must be a tensor or a structure of tensors, received None")
    _, ys = scan(lambda c, x: ((), f(x)), (), xs)
    return ys


def vectorized_map(function, elements):
    """keras.ops.vectorized_map: function applied to each slice of `elements` along axis 0 and
    the results stacked. A list or tuple of tensors gives the function a list of their slices
    (Keras). lamina runs it as a loop: the same values as a vectorized run."""
    _callable("vectorized_map", function, "function")
    _no_symbolic("vectorized_map", elements)
    flat = [_tensor("vectorized_map", t, "elements") for t in _flatten(elements)]
    if not flat:
        raise ValueError("vectorized_map: elements must hold at least one tensor")
    n = _leading("vectorized_map", flat, None)
    is_seq = isinstance(elements, (list, tuple)) and not hasattr(elements, "_fields")
    if n == 0:
        raise ValueError("vectorized_map: elements have a leading dimension of 0; there is nothing to map over")
    outs = []
    for i in range(n):
        sl = _pack(elements, [t[i] for t in flat])
        outs.append(function(list(sl) if is_seq else sl))
    return _stack_ys("vectorized_map", outs)


def associative_scan(f, elems, reverse=False, axis=0):
    """keras.ops.associative_scan: the inclusive scan [a, f(a, b), f(f(a, b), c), ...] along
    `axis` for an associative f that works elementwise on slices along that axis. It runs in
    O(log n) calls of f on halves of the input (the parallel algorithm of JAX and Keras), so f
    is called on batches of elements, not one pair at a time."""
    op = "associative_scan"
    _callable(op, f, "f")
    _no_symbolic(op, elems)
    flat = [_tensor(op, t, "elems") for t in _flatten(elems)]
    if not flat:
        raise ValueError("associative_scan: elems must hold at least one tensor")
    if flat[0].ndim == 0:
        raise ValueError("associative_scan: elems must have at least 1 dimension, received a scalar")
    ax = validation.axis(axis, flat[0].ndim, op, shape=flat[0].shape)
    n = flat[0].shape[ax]
    for t in flat[1:]:
        if t.ndim <= ax or t.shape[ax] != n:
            raise ValueError(f"associative_scan: every tensor in elems needs the same size along axis {ax}, received "
                             f"shapes {[t.shape for t in flat]}")
    if reverse:
        flat = [flip(t, ax) for t in flat]

    def sl(t, start=None, stop=None, step=None):
        key = [builtins.slice(None)] * t.ndim
        key[ax] = builtins.slice(start, stop, step)
        return t[tuple(key)]

    def combine(a, b):
        c = _flatten(f(_pack(elems, a), _pack(elems, b)))
        if len(c) != len(a):
            raise ValueError(f"associative_scan: f must return elems' structure ({len(a)} tensor(s)), received "
                             f"{len(c)}")
        return [_tensor(op, t, "f's result") for t in c]

    def interleave(a, b):          # a[0], b[0], a[1], b[1], ... (a may be one longer)
        extra = a.shape[ax] - b.shape[ax]
        head = sl(a, 0, b.shape[ax])
        m = stack([head, b], axis=ax + 1)
        m = reshape(m, head.shape[:ax] + (2 * b.shape[ax],) + head.shape[ax + 1:])
        return concatenate([m, sl(a, -1)], axis=ax) if extra else m

    def run(es):
        k = es[0].shape[ax]
        if k < 2:
            return es
        odd = run(combine([sl(e, 0, -1, 2) for e in es], [sl(e, 1, None, 2) for e in es]))
        if k % 2 == 0:
            even = combine([sl(o, 0, -1) for o in odd], [sl(e, 2, None, 2) for e in es])
        else:
            even = combine(odd, [sl(e, 2, None, 2) for e in es])
        even = [concatenate([sl(e, 0, 1), r], axis=ax) for e, r in zip(es, even)]
        return [interleave(e, o) for e, o in zip(even, odd)]

    out = run(flat)
    if reverse:
        out = [flip(t, ax) for t in out]
    return _pack(elems, out)


# ---- custom gradients ---------------------------------------------------------------------------

def _takes_upstream_keyword(fn):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    p = params.get("upstream")
    return p is not None and (p.kind is inspect.Parameter.KEYWORD_ONLY
                              or builtins.any(q.kind is inspect.Parameter.VAR_POSITIONAL for q in params.values()))


def custom_gradient(f):
    """Decorator: `f(*args)` returns `(outputs, grad_fn)`; the decorated function returns
    `outputs`, and GradientTape differentiates it with grad_fn instead of f's ops:

        @ops.custom_gradient
        def log1pexp(x):
            e = ops.exp(x)
            def grad(upstream):
                return upstream * (1.0 - 1.0 / (1.0 + e))
            return ops.log(1.0 + e), grad

    grad_fn receives the upstream gradient (one tensor, or the outputs' structure of them) and
    returns the gradients of the tensor arguments (one, or a tuple with one per flattened
    positional argument, None where there is none). Keras's PyTorch form
    `grad_fn(*args, upstream)` (upstream as a keyword) works too. f runs without recording,
    so only the positional tensor arguments get gradients: pass variables as arguments."""
    _callable("custom_gradient", f, "f")

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        _no_symbolic("custom_gradient", args, kwargs)
        leaves = _flatten(args)
        inputs = [t for t in leaves if isinstance(t, Tensor)]
        with no_grad():
            res = f(*args, **kwargs)
        if not isinstance(res, (list, tuple)) or len(res) != 2 or not callable(res[1]):
            name = getattr(f, "__name__", "f")
            raise ValueError(f"custom_gradient: {name} must return a pair (outputs, grad_fn) with "
                             f"a callable grad_fn, received {type(res).__name__}")
        outputs, grad_fn = res
        out_flat = [t if isinstance(t, Tensor) else _tensor("custom_gradient", t, "the outputs")
                    for t in _flatten(outputs)]
        if not needs_grad(*inputs):
            return _pack(outputs, out_flat)
        # fresh tensors, so that recording never touches an input f returned as it is
        outs = [Tensor(t._buf, t.shape, t.dtype, t.device) for t in out_flat]

        def backward(grads, needs):
            ups = [g if g is not None else _m.zeros_like(o) for g, o in zip(grads, outs)]
            up = ups[0] if not isinstance(outputs, (list, tuple, dict)) else _pack(outputs, ups)
            if _takes_upstream_keyword(grad_fn):
                got = grad_fn(*inputs, upstream=up)
            else:
                got = grad_fn(up)
            return _input_grads(got, leaves, inputs, needs)
        if len(outs) == 1:
            record(outs[0], tuple(inputs), lambda g, n: backward([g], n))
        else:
            _record_multi(outs, list(inputs), backward)
        return _pack(outputs, outs)
    return wrapper


def _input_grads(got, leaves, inputs, needs):
    """grad_fn's result as one gradient per input tensor, checked."""
    seq = list(got) if isinstance(got, (list, tuple)) else [got]
    if len(seq) == len(leaves):
        seq = [g for g, leaf in zip(seq, leaves) if isinstance(leaf, Tensor)]
    if len(seq) != len(inputs):
        raise ValueError(f"custom_gradient: grad_fn returned {len(seq)} gradient(s), expected one per tensor argument "
                         f"({len(inputs)})")
    out = []
    for i, (g, t, need) in enumerate(zip(seq, inputs, needs)):
        if g is None or not need:
            out.append(None)
            continue
        g = g if isinstance(g, Tensor) else convert_to_tensor(_numeric("custom_gradient", g, "a gradient"), t.dtype,
                                                               t.device)
        if g.shape != t.shape:
            try:
                g = _m.broadcast_to(g, t.shape)
            except ValueError:
                raise ValueError(f"custom_gradient: grad_fn's gradient {i} has shape {g.shape}, but its argument has "
                                 f"shape {t.shape}") from None
        out.append(g if g.dtype == t.dtype else _m.cast(g, t.dtype))
    return tuple(out)
