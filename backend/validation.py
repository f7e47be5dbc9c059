"""Argument checks shared by every op and layer: integers (never 1.5, "3" or True), sizes,
shapes, axes, and the size of a tensor before its buffer is allocated.

Errors name the op, the argument, the value received and what was expected: TypeError for a
value of the wrong kind, ValueError for one out of range, MemoryError for a tensor too large to
allocate (checked in Python before any kernel or allocator sees the size)."""
import math
import operator
import os

import numpy as np

# The most one buffer may hold: csrc/cpu/memory.cpp's kMaxBytes (256 TiB).
MAX_BYTES = 1 << 48
ITEMSIZE = {"float32": 4, "int32": 4, "int64": 8, "bool": 1}
ALWAYS_FITS = 1 << 24   # elements (at most 128 MiB): below this, sizes are not worth a look


def op_name(frame):
    """The op a failing call came from, for error messages only (never on a fast path): the
    `op` variable of that frame when it has one (the shared bodies of sum/max/..., which set it),
    else its function's name. Private helpers (`_reduce_raw`) and comprehensions of lamina's
    modules are skipped for the public function that called them."""
    first = frame
    while frame is not None:
        op = frame.f_locals.get("op")
        if isinstance(op, str):
            return op
        name = frame.f_code.co_name
        if not (name.startswith("_") or name.startswith("<")):
            return name
        caller = frame.f_back
        if caller is None or not str(caller.f_globals.get("__name__", "")).startswith("lamina"):
            break
        frame = caller
    return first.f_code.co_name


def _repr(value):
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def integer(value, op, arg):
    """`value` as a Python int. Accepts ints, numpy integers and 0-d integer arrays or tensors;
    TypeError naming op and arg for bools, floats (even 2.0), strings and everything else."""
    if not _is_bool(value):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise TypeError(f"{op}: {arg} must be an integer, received {_repr(value)} of type {type(value).__name__}")


def real(value, op, arg):
    """`value` as a Python float. Accepts ints, floats, numpy numbers and 0-d numeric arrays or
    tensors; TypeError naming op and arg for bools, strings, None, complex numbers and the rest."""
    if type(value) is float:   # the common case, first
        return value
    if not _is_bool(value) and not isinstance(value, (str, bytes, complex)):
        try:
            a = np.asarray(value.numpy() if hasattr(value, "numpy") and hasattr(value, "dtype") else value)
            if a.ndim == 0 and a.dtype.kind in "iuf":
                return float(a)
        except (TypeError, ValueError):
            pass
    raise TypeError(f"{op}: {arg} must be a real number, received {_repr(value)} of type {type(value).__name__}")


def size(value, op, arg, minimum=0):
    """An integer >= minimum (a count, a length, a number of classes)."""
    v = integer(value, op, arg)
    if v < minimum:
        what = "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
        raise ValueError(f"{op}: {arg} must be {what}, received {arg}={v}")
    return v


def positive_int(who, arg, value, minimum=1):
    """A layer or model constructor argument: an integer >= minimum, else a ValueError naming
    `who` (e.g. "Dense"), the argument and the value (Keras's layer contract)."""
    if _is_bool(value) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{who}: `{arg}` must be {what}, received {arg}={value!r}")
    return int(value)


def dims(value, op, arg="shape"):
    """A tuple of ints (any sign: reshape's -1 is the caller's business) from an int, a sequence
    of ints, or an integer array or tensor of rank 0 or 1."""
    if type(value) is tuple and all(type(d) is int for d in value):   # the common case, first
        return value
    if isinstance(value, (str, bytes)) or value is None or _is_bool(value):
        raise TypeError(f"{op}: {arg} must be an integer or a tuple of integers, received {_repr(value)}")
    if hasattr(value, "numpy") and hasattr(value, "dtype"):   # a Tensor holding the shape
        value = value.numpy()
    if isinstance(value, np.ndarray):
        if value.ndim > 1 or value.dtype.kind not in "iu":
            raise TypeError(f"{op}: {arg} must be an integer or a tuple of integers, received an array of dtype "
                            f"{value.dtype} and shape {value.shape}")
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        if hasattr(value, "__index__"):
            return (integer(value, op, arg),)
        raise TypeError(f"{op}: {arg} must be an integer or a tuple of integers, received {_repr(value)} "
                        f"of type {type(value).__name__}")
    out = []
    for i, d in enumerate(value):
        if _is_bool(d) or not hasattr(d, "__index__"):
            raise TypeError(f"{op}: {arg} must be a tuple of integers, received {_repr(tuple(value))}: entry {i} "
                            f"is {_repr(d)} of type {type(d).__name__}")
        out.append(operator.index(d))
    return tuple(out)


def shape(value, op, arg="shape"):
    """A tuple of non-negative ints (see dims); ValueError for a negative dimension."""
    s = dims(value, op, arg)
    if s and min(s) < 0:
        raise ValueError(f"{op}: {arg} {s} has a negative dimension {min(s)}; dimensions must be >= 0")
    return s


def _where(ndim, shape):
    return f"a tensor of shape {tuple(shape)}" if shape is not None else f"a tensor with {ndim} dimensions"


def axis(value, ndim, op, arg="axis", shape=None):
    """One axis in [0, ndim): an integer in [-ndim, ndim), else TypeError / ValueError naming the
    op, the argument, the value and the valid range."""
    if type(value) is int and -ndim <= value < ndim:   # the common case, first
        return value % ndim
    a = integer(value, op, arg)
    if not -ndim <= a < ndim:
        if ndim == 0:
            raise ValueError(f"{op}: {arg} {a} is out of range: {_where(ndim, shape)} has no axes")
        raise ValueError(f"{op}: {arg} {a} is out of range for {_where(ndim, shape)}; expected "
                         f"{-ndim} <= {arg} <= {ndim - 1}")
    return a % ndim


def axes(value, ndim, op, arg="axis", shape=None):
    """Distinct axes in [0, ndim), in the order given, from an int or a sequence of ints."""
    if isinstance(value, (list, tuple)):
        seq = value
    elif isinstance(value, np.ndarray) and value.ndim == 1:
        seq = value.tolist()
    else:
        seq = (value,)
    out = tuple(axis(a, ndim, op, arg, shape) for a in seq)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {arg}={_repr(value)} for {_where(ndim, shape)}")
    return out


# ---- sizes ----------------------------------------------------------------------------------------

_host_bytes = None


def _host_memory():
    """Physical memory of this machine in bytes (None when the system does not say)."""
    global _host_bytes
    if _host_bytes is None:
        try:
            _host_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            _host_bytes = 0
    return _host_bytes or None


def byte_limit(device=None):
    """The most bytes one tensor may take on `device`: MAX_BYTES, and for a CPU device no more
    than the machine's physical memory (a larger buffer could only be paged to death or killed)."""
    kind = getattr(device, "kind", "cpu")
    host = _host_memory() if kind == "cpu" else None
    return min(MAX_BYTES, host) if host else MAX_BYTES


def _human(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def nbytes(shape, dtype):
    return math.prod(shape) * ITEMSIZE.get(dtype, 8)


def check_alloc(op, shape, dtype, device=None):
    """MemoryError naming `op`, the shape, the element and byte counts when a tensor of `shape` and
    `dtype` would not fit one buffer on `device` (or overflows 64-bit sizes). Call it with the
    shape computed from user arguments before anything is allocated."""
    n = math.prod(shape)
    if n < ALWAYS_FITS:
        return
    b = n * ITEMSIZE.get(dtype, 8)
    if device is None:
        from .device import current_device
        device = current_device()
    limit = byte_limit(device)
    if b <= limit:
        return
    where = device.name
    if n >= 1 << 63 or b >= 1 << 63:
        why = "more than a 64-bit size can count"
    elif limit < MAX_BYTES:
        why = f"more than the {_human(limit)} of memory this machine has"
    else:
        why = f"more than the {_human(MAX_BYTES)} one buffer may hold"
    raise MemoryError(f"{op}: a tensor of shape {tuple(shape)} and dtype {dtype} on {where} would hold {n} elements "
                      f"in {b} bytes ({_human(b)}), {why}; check the shape")


OBJECT_BYTES = 100   # at least what one Tensor object costs in Python (object, shape tuple, buffer handle)


def check_count(op, n, what="output tensors"):
    """MemoryError naming `op` when a list of `n` tensors (split's pieces, unstack's slices) would
    not fit in memory even when every tensor is empty: a count like 2**40 would otherwise run
    for hours before failing."""
    if n >= ALWAYS_FITS and n * OBJECT_BYTES > byte_limit():
        raise MemoryError(f"{op}: {n} {what} would take more than {_human(n * OBJECT_BYTES)} for their Python "
                          f"objects alone, more than the {_human(byte_limit())} of memory this machine has; "
                          "check the number of pieces")


def check_weight(layer, name, shape, dtype="float32"):
    """check_alloc for a layer's weight, naming the layer and the weight."""
    check_alloc(f"{type(layer).__name__} '{layer.name}': weight '{name}'", shape, dtype)


_ERROR_TYPES = (MemoryError, TypeError, ValueError, IndexError)


def name_errors(namespace, names):
    """Wraps the functions `names` of a module's `namespace` (its globals()) so that an error
    raised inside by an op they are built on (split, concatenate, reshape, ...) names the op that
    was called: "dstack: concatenate: ..." (the original stays attached as the cause)."""
    import functools
    import inspect
    for name in names:
        fn = namespace.get(name)
        if not inspect.isfunction(fn) or getattr(fn, "_names_its_errors", False):
            continue

        def wrap(fn, op):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                try:
                    return fn(*args, **kwargs)
                except _ERROR_TYPES as e:
                    msg = str(e)
                    if msg.startswith((f"{op}:", f"{op} ")):
                        raise
                    kind = next(t for t in _ERROR_TYPES if isinstance(e, t))
                    raise kind(f"{op}: {msg}") from e
            wrapper._names_its_errors = True
            return wrapper
        namespace[name] = wrap(fn, name)
