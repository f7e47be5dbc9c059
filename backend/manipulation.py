"""Array manipulation (numpy's family): reshape, transpose, concatenate, split, slicing,
gather, stack, pad, with gradients.

Most ops here are one C++ kernel, `strided_copy`: a copy between two strided views of buffers
(offset and strides in elements, strides may be negative or zero). A transpose, a slice, a flip
or a diagonal is a gather from a strided view of the input; its gradient is the same copy the
other way, into zeros of the input's shape. Gathers by index (`take`, `take_along_axis`, integer
array and boolean mask indexing) have their own kernels with scatter-add gradients.
"""
import functools
import builtins
import math as _pymath
import weakref

import numpy as np

from . import dtypes, validation
from .autodiff import needs_grad, record
from .device import get_device
from .math import _as_tensor, _fill_value, _filled, broadcast_to, check_same_device, full, zeros
from .tensor import Tensor, convert_to_tensor, empty

__all__ = [
    "reshape", "transpose", "swapaxes", "moveaxis", "expand_dims", "squeeze", "ravel",
    "concatenate", "stack", "split", "unstack", "get_item", "slice", "slice_update",
    "take", "take_along_axis", "pad", "tile", "repeat", "flip", "roll",
    "diag", "diagonal", "eye", "identity", "tri", "tril", "triu", "arange", "linspace",
    "nonzero", "copy_to", "copy",
]

_prod = _pymath.prod


# ---- helpers ------------------------------------------------------------------------------------

def _strides(shape):
    """Row-major strides (in elements) of a contiguous tensor."""
    st, acc = [0] * len(shape), 1
    for k in range(len(shape) - 1, -1, -1):
        st[k] = acc
        acc *= shape[k]
    return st


def _axis(axis, ndim, op, shape=None, arg="axis"):
    """One axis in [0, ndim) (validation.axis)."""
    return validation.axis(axis, ndim, op, arg, shape)


def _axes(axis, ndim, op, shape=None, arg="axis"):
    """A tuple of distinct axes (int or sequence) in [0, ndim), in the given order."""
    return validation.axes(axis, ndim, op, arg, shape)


def _copy(src, soff, sst, dst, doff, dst_st, shape, accumulate=False):
    dst.device.kernels.strided_copy(src._buf, soff, list(sst), dst._buf, doff, list(dst_st), list(shape), accumulate)


def _is_whole(shape, strides, offset, size):
    """True when the view (offset, strides, shape) is exactly a contiguous buffer of `size`."""
    if offset != 0 or _prod(shape) != size:
        return False
    expect = 1
    for d, s in zip(reversed(shape), reversed(strides)):
        if d == 1:
            continue
        if s != expect:
            return False
        expect *= d
    return True


def _gather_view(x, offset, shape, strides):
    """A contiguous copy of the strided view (offset, shape, strides) of x's buffer.

    A view that is x's own layout comes back as a reshape (no copy). Gradient: the output
    gradient written back into the view of zeros of x's shape."""
    shape = tuple(shape)
    if _is_whole(shape, strides, offset, x.size):
        return reshape(x, shape)
    out = empty(shape, x.dtype, x.device)
    _copy(x, offset, strides, out, 0, _strides(shape), shape)
    if needs_grad(x):
        xs = x.shape
        record(out, (x,), lambda g, n: (_scatter_view(g, xs, offset, shape, strides),))
    return out


def _scatter_view(x, full_shape, offset, shape, strides):
    """zeros(full_shape) with x written into the strided view (offset, shape, strides).

    The view must not overlap itself. Gradient: the gather of the same view."""
    out = zeros(full_shape, x.dtype, x.device)
    _copy(x, 0, _strides(shape), out, offset, strides, shape)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (_gather_view(g, offset, shape, strides),))
    return out


def _from_numpy(a, dtype, device):
    """convert_to_tensor that keeps a 0-d array 0-d (np.ascontiguousarray makes it 1-d)."""
    t = convert_to_tensor(np.reshape(a, (-1,)), dtype, device)
    return Tensor(t._buf, tuple(np.shape(a)), t.dtype, t.device)


def _index_tensor(indices, device, op):
    """Integer indices as an int32/int64 tensor on `device`."""
    if isinstance(indices, Tensor):
        if not dtypes.is_int(indices.dtype):
            raise TypeError(f"{op}: indices must be int32 or int64, received {indices.dtype} with shape "
                            f"{indices.shape}; cast them with ops.cast(indices, 'int32')")
        if indices.device is not device:
            raise ValueError(f"{op}: the indices (shape {indices.shape}) are on {indices.device.name} but the "
                             f"tensor is on {device.name}; move them with indices.to('{device.name}')")
        return indices
    a = np.asarray(indices)
    if a.size == 0 and a.dtype.kind in "fb":
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be integers, received an array of dtype {a.dtype} with shape "
                        f"{a.shape}")
    return _from_numpy(a.astype(np.int32 if a.dtype == np.int32 else np.int64), None, device)


def _float_grad(x):
    return needs_grad(x) and dtypes.is_float(x.dtype)


# ---- shape-only ops (views of the same buffer) ----------------------------------------------------

def _resolve_shape(shape, size, op="reshape", src=None):
    shape = validation.dims(shape, op, "newshape")
    if shape.count(-1) > 1:
        raise ValueError(f"{op}: only one dimension can be -1, received {shape}")
    if -1 in shape:
        known = 1
        for d in shape:
            if d != -1:
                known *= d
        if known == 0 or size % known:
            raise ValueError(f"{op}: cannot reshape a tensor of shape {src} ({size} elements) into {shape}")
        shape = tuple(size // known if d == -1 else d for d in shape)
    n = 1
    for d in shape:
        if d < 0:
            raise ValueError(f"{op}: invalid dimension {d} in {shape}")
        n *= d
    if n != size:
        raise ValueError(f"{op}: cannot reshape a tensor of shape {src} ({size} elements) into {shape} ({n} elements)")
    return shape


def reshape(x, newshape):
    """Same elements in a new shape (shares the buffer; no copy)."""
    x = _as_tensor(x)
    shape = _resolve_shape(newshape, x.size, "reshape", x.shape)
    if shape == x.shape:
        return x
    out = Tensor(x._buf, shape, x.dtype, x.device)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (reshape(g, x.shape),))
    return out


def expand_dims(x, axis):
    """Inserts size-1 dimensions at `axis` (an int or a tuple) of the result."""
    x = _as_tensor(x)
    seq = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    nd = x.ndim + len(seq)
    axes = _axes(seq, nd, "expand_dims", x.shape)
    it = iter(x.shape)
    shape = tuple(1 if k in axes else next(it) for k in range(nd))
    return reshape(x, shape)


def squeeze(x, axis=None):
    """Removes size-1 dimensions (all of them, or those at `axis`)."""
    x = _as_tensor(x)
    if axis is None:
        return reshape(x, tuple(d for d in x.shape if d != 1))
    axes = _axes(axis, x.ndim, "squeeze", x.shape)
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"squeeze: cannot squeeze axis {a} of a tensor of shape {x.shape}: its size is "
                             f"{x.shape[a]}, not 1")
    return reshape(x, tuple(d for k, d in enumerate(x.shape) if k not in axes))


def ravel(x):
    """The elements as a 1-D tensor (no copy)."""
    x = _as_tensor(x)
    return reshape(x, (x.size,))


# ---- transposes ----------------------------------------------------------------------------------

def transpose(x, axes=None):
    """Permutes the dimensions (reverses them when `axes` is None)."""
    x = _as_tensor(x)
    nd = x.ndim
    if axes is None:
        perm = tuple(range(nd - 1, -1, -1))
    else:
        perm = validation.dims(axes, "transpose", "axes")
        if (len(perm) != nd or builtins.any(not -nd <= a < nd for a in perm)
                or sorted(a % nd for a in perm) != list(range(nd))):
            raise ValueError(f"transpose: axes {tuple(axes)} are not a permutation of the {nd} dimensions of a "
                             f"tensor of shape {x.shape}; expected a reordering of {tuple(range(nd))}")
        perm = tuple(a % nd for a in perm)
    st = _strides(x.shape)
    return _gather_view(x, 0, tuple(x.shape[a] for a in perm), [st[a] for a in perm])


def swapaxes(x, axis1, axis2):
    x = _as_tensor(x)
    a = _axis(axis1, x.ndim, "swapaxes", x.shape)
    b = _axis(axis2, x.ndim, "swapaxes", x.shape)
    perm = list(range(x.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


def moveaxis(x, source, destination):
    """Moves axes `source` to positions `destination` (ints or sequences of equal length)."""
    x = _as_tensor(x)
    src = _axes(source, x.ndim, "moveaxis", x.shape)
    dst = _axes(destination, x.ndim, "moveaxis", x.shape)
    if len(src) != len(dst):
        raise ValueError(f"moveaxis: source {source} and destination {destination} must have the same "
                         "number of elements")
    order = [k for k in range(x.ndim) if k not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(x, order)


# ---- joining and splitting ----------------------------------------------------------------------

def _join_inputs(xs, op):
    if isinstance(xs, Tensor) or not isinstance(xs, (list, tuple)):
        raise TypeError(f"{op}: expected a list or tuple of tensors, received {type(xs).__name__}")
    if len(xs) == 0:
        raise ValueError(f"{op}: needs at least one tensor, received an empty sequence")
    ts = [_as_tensor(t, op) for t in xs]
    dts = {t.dtype for t in ts}
    if len(dts) > 1:  # promoted as Keras / JAX do: bool < int32 < int64 < bfloat16 < float32
        if dtypes.STRING in dts:
            raise TypeError(f"{op}: all inputs must have the same dtype, received "
                            f"{[(t.dtype, t.shape) for t in ts]}; cast them first with ops.cast(x, dtype)")
        from .math import cast
        to = functools.reduce(dtypes.result_type, dts)
        ts = [t if t.dtype == to else cast(t, to) for t in ts]
    check_same_device(op, *ts)
    return ts


def concatenate(xs, axis=0):
    """Joins tensors along an existing axis (axis=None: flattens them first)."""
    ts = _join_inputs(xs, "concatenate")
    if axis is None:
        ts = [ravel(t) for t in ts]
        axis = 0
    nd = ts[0].ndim
    if nd == 0:
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated; use stack, or "
                         "expand_dims first")
    ax = _axis(axis, nd, "concatenate", ts[0].shape)
    ref = ts[0].shape
    for t in ts[1:]:
        if t.ndim != nd or t.shape[:ax] != ref[:ax] or t.shape[ax + 1:] != ref[ax + 1:]:
            raise ValueError(f"concatenate: all inputs must have the same shape except along axis {ax}; "
                             f"received shapes {[t.shape for t in ts]}")
    if len(ts) == 1:
        return ts[0]
    shape = ref[:ax] + (builtins.sum(t.shape[ax] for t in ts),) + ref[ax + 1:]
    out = empty(shape, ts[0].dtype, ts[0].device)
    ost = _strides(shape)
    offsets, pos = [], 0
    for t in ts:
        offsets.append(pos * ost[ax])
        if t.size:
            _copy(t, 0, _strides(t.shape), out, pos * ost[ax], ost, t.shape)
        pos += t.shape[ax]
    if needs_grad(*ts):
        shapes = [t.shape for t in ts]

        def bw(g, n):
            return tuple(_gather_view(g, off, s, ost) if need else None
                         for off, s, need in zip(offsets, shapes, n))
        record(out, tuple(ts), bw)
    return out


def stack(x, axis=0):
    """Joins tensors of one shape (the list `x`, Keras's name) along a new axis."""
    ts = _join_inputs(x, "stack")
    ref = ts[0].shape
    for t in ts[1:]:
        if t.shape != ref:
            raise ValueError(f"stack: all inputs must have the same shape; received shapes {[t.shape for t in ts]}")
    ax = _axis(axis, len(ref) + 1, "stack", ref)
    return concatenate([expand_dims(t, ax) for t in ts], axis=ax)


def _pieces(x, ax, bounds, drop_axis=False):
    """Copies of x[..., a:b, ...] along `ax` for each (a, b) in bounds (b - a == 1 when drop_axis).

    Their gradients are gathered into one buffer: the first piece to get a gradient allocates
    zeros of x's shape and returns it; the others write their slices into it in place. Every piece
    hangs off a private alias of x, whose backward runs after all of them (reverse topological
    order), so the k pieces cost one x-sized gradient instead of k."""
    st = _strides(x.shape)
    rg = needs_grad(x)
    if rg:
        hub = Tensor(x._buf, x.shape, x.dtype, x.device)
        state = {"acc": None, "seen": set()}

        def hub_bw(g, n):
            state["acc"], state["seen"] = None, set()
            return (g,)
        record(hub, (x,), hub_bw)
    outs = []
    for i, (a, b) in enumerate(bounds):
        full_shape = x.shape[:ax] + (b - a,) + x.shape[ax + 1:]
        shape = x.shape[:ax] + x.shape[ax + 1:] if drop_axis else full_shape
        out = empty(shape, x.dtype, x.device)
        if out.size:
            _copy(x, a * st[ax], st, out, 0, _strides(full_shape), full_shape)
        if rg:
            def bw(g, n, i=i, a=a, full_shape=full_shape):
                acc = state["acc"]() if state["acc"] is not None else None
                first = acc is None or i in state["seen"]
                if first:  # a new backward pass
                    acc = zeros(x.shape, g.dtype, g.device)
                    state["acc"], state["seen"] = weakref.ref(acc), set()
                state["seen"].add(i)
                if g.size:
                    _copy(g, 0, _strides(full_shape), acc, a * st[ax], st, full_shape)
                return (acc if first else None,)
            record(out, (hub,), bw)
        outs.append(out)
    return outs


def split(x, indices_or_sections, axis=0):
    """numpy.split: `sections` equal pieces (must divide the axis) or pieces between indices."""
    x = _as_tensor(x)
    if x.ndim == 0:
        raise ValueError("split: cannot split a zero-dimensional tensor")
    ax = _axis(axis, x.ndim, "split", x.shape)
    n = x.shape[ax]
    if not isinstance(indices_or_sections, (list, tuple, np.ndarray, Tensor)):
        k = validation.integer(indices_or_sections, "split", "indices_or_sections")
        if k <= 0:
            raise ValueError(f"split: number of sections must be positive, received {k}")
        if n % k:
            raise ValueError(f"split: axis {ax} of a tensor of shape {x.shape} has size {n}, which does not divide "
                             f"into {k} equal sections; pass split indices instead")
        validation.check_count("split", k)
        bounds = [(i * (n // k), (i + 1) * (n // k)) for i in range(k)]
    else:
        points = list(validation.dims(indices_or_sections, "split", "indices_or_sections"))
        edges = [0] + points + [n]
        bounds = []
        for a, b in zip(edges[:-1], edges[1:]):
            s, e, _ = builtins.slice(a, b).indices(n)
            bounds.append((s, builtins.max(s, e)))
    return _pieces(x, ax, bounds)


def unstack(x, num=None, axis=0):
    """The slices of x along `axis`, each without that axis."""
    x = _as_tensor(x)
    if x.ndim == 0:
        raise ValueError("unstack: cannot unstack a zero-dimensional tensor")
    ax = _axis(axis, x.ndim, "unstack", x.shape)
    n = x.shape[ax]
    if num is not None and validation.integer(num, "unstack", "num") != n:
        raise ValueError(f"unstack: num={num} but axis {ax} of shape {x.shape} has size {n}")
    validation.check_count("unstack", n)
    return _pieces(x, ax, [(i, i + 1) for i in range(n)], drop_axis=True)


# ---- indexing -----------------------------------------------------------------------------------

def _index_kind(k, device):
    """Classifies one entry of an index: ('new',), ('ellipsis',), ('slice', s), ('int', i),
    ('array', tensor) or ('mask', tensor)."""
    if k is None:
        return ("new",)
    if k is Ellipsis:
        return ("ellipsis",)
    if isinstance(k, builtins.slice):
        for v in (k.start, k.stop, k.step):
            if v is not None and (isinstance(v, (bool, np.bool_)) or not hasattr(v, "__index__")):
                raise TypeError(f"tensor index: slice bounds and steps must be integers or None, received {k}")
        if k.step is not None and k.step.__index__() == 0:
            raise ValueError(f"tensor index: slice step cannot be zero (received {k})")
        return ("slice", k)
    if isinstance(k, (bool, np.bool_)):
        raise TypeError("tensor index: a Python bool is not a valid index; use a boolean tensor mask of the "
                        "indexed shape")
    if isinstance(k, (int, np.integer)):
        return ("int", int(k))
    if isinstance(k, Tensor):
        if k.dtype == dtypes.BOOL:
            if k.ndim == 0:
                raise TypeError("tensor index: a 0-d boolean mask is not supported; use a mask with the "
                                "shape of the indexed dimensions")
            if k.device is not device:
                raise ValueError(f"tensor index: the mask (shape {k.shape}) is on {k.device.name} but the tensor "
                                 f"is on {device.name}; move it with mask.to('{device.name}')")
            return ("mask", k)
        if dtypes.is_int(k.dtype):
            return ("int", int(k)) if k.ndim == 0 else ("array", _index_tensor(k, device, "tensor index"))
        raise TypeError(f"tensor index: only integer and boolean tensors can index, received {k.dtype} with "
                        f"shape {k.shape}")
    if isinstance(k, (list, np.ndarray)):
        a = np.asarray(k)
        if a.dtype == np.bool_:
            if a.ndim == 0:
                raise TypeError("tensor index: a 0-d boolean mask is not supported")
            return ("mask", _from_numpy(a, "bool", device))
        if a.ndim == 0 and a.dtype.kind in "iu":
            return ("int", int(a))
        return ("array", _index_tensor(a, device, "tensor index"))
    raise TypeError(f"tensor index: only integers, slices, None, Ellipsis and integer or boolean arrays are "
                    f"valid indices, received {type(k).__name__}")


def _getitem(x, key):
    x = _as_tensor(x)
    if not isinstance(key, tuple):
        key = (key,)
    entries = [_index_kind(k, x.device) for k in key]
    n_ell = builtins.sum(e[0] == "ellipsis" for e in entries)
    if n_ell > 1:
        raise IndexError("tensor index: an index can only have a single ellipsis ('...')")
    used = builtins.sum(1 if e[0] in ("int", "slice", "array") else e[1].ndim if e[0] == "mask" else 0
                        for e in entries)
    if used > x.ndim:
        raise IndexError(f"tensor index: too many indices for a tensor of shape {x.shape}: {used} dimensions "
                         f"indexed, but it has {x.ndim}")
    fill = [("slice", builtins.slice(None))] * (x.ndim - used)
    if n_ell:
        i = next(j for j, e in enumerate(entries) if e[0] == "ellipsis")
        entries = entries[:i] + fill + entries[i + 1:]
    else:
        entries = entries + fill
    adv = [j for j, e in enumerate(entries) if e[0] in ("array", "mask")]
    if len(adv) > 1:
        raise IndexError(f"tensor index: lamina supports one integer-array or boolean-mask index per "
                         f"subscript, received {len(adv)} on a tensor of shape {x.shape}; index in steps "
                         f"(x[a][:, b]) or use ops.take / ops.take_along_axis")
    st = _strides(x.shape)
    off, shape, strides, d = 0, [], [], 0
    adv_pos = adv_entry = None
    for e in entries:
        kind = e[0]
        if kind == "new":
            shape.append(1)
            strides.append(0)
        elif kind == "int":
            n, i = x.shape[d], e[1]
            if not -n <= i < n:
                raise IndexError(f"tensor index: index {i} is out of bounds for axis {d} with size {n} "
                                 f"(tensor of shape {x.shape})")
            off += (i % n) * st[d]
            d += 1
        elif kind == "slice":
            start, stop, step = e[1].indices(x.shape[d])
            length = len(range(start, stop, step))
            if length:
                off += start * st[d]
            shape.append(length)
            strides.append(step * st[d])
            d += 1
        else:
            k = 1 if kind == "array" else e[1].ndim
            if kind == "mask" and e[1].shape != x.shape[d:d + k]:
                raise IndexError(f"tensor index: boolean mask of shape {e[1].shape} does not match the indexed "
                                 f"dimensions {x.shape[d:d + k]} of a tensor of shape {x.shape}")
            adv_pos, adv_entry = len(shape), e
            shape.extend(x.shape[d:d + k])
            strides.extend(st[d:d + k])
            d += k
    y = _gather_view(x, off, shape, strides)
    if adv_entry is None:
        return y
    kind, idx = adv_entry
    if kind == "mask":
        k = idx.ndim
        merged = tuple(shape[:adv_pos]) + (_prod(shape[adv_pos:adv_pos + k]),) + tuple(shape[adv_pos + k:])
        y = reshape(y, merged)
        (idx,) = nonzero(reshape(idx, (idx.size,)))
    y = take(y, idx, axis=adv_pos)
    # numpy: when integer indices and the array index are not adjacent, the array's dimensions go first
    pos = [j for j, e in enumerate(entries) if e[0] in ("int", "array", "mask")]
    if pos and pos[-1] - pos[0] + 1 != len(pos) and adv_pos:
        nd_idx = idx.ndim
        y = moveaxis(y, tuple(range(adv_pos, adv_pos + nd_idx)), tuple(range(nd_idx)))
    return y


def get_item(x, key):
    """x[key] (keras.ops.get_item)."""
    return _getitem(x, key)


def slice(inputs, start_indices, shape):
    """The block of `shape` starting at `start_indices` (keras.ops.slice; -1 in shape: to the end)."""
    x = _as_tensor(inputs)
    starts, sizes = _block(x, start_indices, shape, "slice")
    st = _strides(x.shape)
    return _gather_view(x, builtins.sum(s * t for s, t in zip(starts, st)), sizes, st)


def _block(x, start_indices, shape, op):
    starts = list(validation.dims(start_indices, op, "start_indices"))
    sizes = list(validation.dims(shape, op, "shape"))
    if len(starts) != x.ndim or len(sizes) != x.ndim:
        raise ValueError(f"{op}: expected {x.ndim} start indices and {x.ndim} sizes for a tensor of shape "
                         f"{x.shape}, received start_indices={starts} and shape={sizes}")
    sizes = [d - s if z == -1 else z for s, z, d in zip(starts, sizes, x.shape)]
    for s, z, d in zip(starts, sizes, x.shape):
        if s < 0 or z < 0 or s + z > d:
            raise ValueError(f"{op}: the block starting at {tuple(starts)} with shape {tuple(sizes)} does not fit "
                             f"in a tensor of shape {x.shape}")
    return starts, tuple(sizes)


def slice_update(inputs, start_indices, updates):
    """A copy of `inputs` with the block at `start_indices` replaced by `updates`."""
    x = _as_tensor(inputs)
    u = _as_tensor(updates)
    if u.dtype != x.dtype:
        raise TypeError(f"slice_update: updates have dtype {u.dtype} (shape {u.shape}) but inputs have "
                        f"{x.dtype} (shape {x.shape}); cast them first")
    check_same_device("slice_update", x, u)
    if u.ndim != x.ndim:
        raise ValueError(f"slice_update: updates of shape {u.shape} must have the same number of dimensions as "
                         f"inputs of shape {x.shape}")
    starts, sizes = _block(x, start_indices, u.shape, "slice_update")
    st = _strides(x.shape)
    off = builtins.sum(s * t for s, t in zip(starts, st))
    out = empty(x.shape, x.dtype, x.device)
    x.device.kernels.copy(x._buf, out._buf)
    if u.size:
        _copy(u, 0, _strides(u.shape), out, off, st, u.shape)
    if needs_grad(x, u):
        def bw(g, n):
            gx = gu = None
            if n[0]:
                gx = empty(x.shape, g.dtype, g.device)
                g.device.kernels.copy(g._buf, gx._buf)
                if u.size:
                    z = full((), 0, g.dtype, g.device)
                    _copy(z, 0, [0] * u.ndim, gx, off, st, u.shape)
            if n[1]:
                gu = _gather_view(g, off, u.shape, st)
            return gx, gu
        record(out, (x, u), bw)
    return out


# ---- gathers ------------------------------------------------------------------------------------

def take(x, indices, axis=None):
    """Elements of x at `indices` along `axis` (axis=None: of the flattened x). Negative
    indices count from the end; out-of-range indices raise IndexError."""
    x = _as_tensor(x)
    idx = _index_tensor(indices, x.device, "take")
    if axis is None:
        x = ravel(x)
        ax = 0
    else:
        if x.ndim == 0:
            raise ValueError(f"take: axis {axis} is out of range for a zero-dimensional tensor; use axis=None")
        ax = _axis(axis, x.ndim, "take", x.shape)
    outer, n, inner = _prod(x.shape[:ax]), x.shape[ax], _prod(x.shape[ax + 1:])
    out = empty(x.shape[:ax] + idx.shape + x.shape[ax + 1:], x.dtype, x.device)
    x.device.kernels.take(x._buf, outer, n, inner, idx._buf, out._buf)
    if _float_grad(x):
        xs = x.shape

        def bw(g, need):
            gx = empty(xs, g.dtype, g.device)
            g.device.kernels.take_grad(g._buf, outer, n, inner, idx._buf, gx._buf)
            return (gx,)
        record(out, (x,), bw)
    return out


def take_along_axis(x, indices, axis=None):
    """numpy.take_along_axis: out[..., j, ...] = x[..., indices[..., j, ...], ...] along `axis`.
    x and indices broadcast against each other in the other dimensions."""
    x = _as_tensor(x)
    idx = _index_tensor(indices, x.device, "take_along_axis")
    if axis is None:
        if idx.ndim != 1:
            raise ValueError(f"take_along_axis: with axis=None the indices must be 1-D, received shape {idx.shape}")
        x, ax = ravel(x), 0
    else:
        if x.ndim == 0:
            raise ValueError("take_along_axis: x must have at least one dimension")
        ax = _axis(axis, x.ndim, "take_along_axis", x.shape)
    if idx.ndim != x.ndim:
        raise ValueError(f"take_along_axis: indices of shape {idx.shape} must have as many dimensions as x of "
                         f"shape {x.shape}")
    from .math import broadcast_shapes
    rest_x = x.shape[:ax] + (1,) + x.shape[ax + 1:]
    rest_i = idx.shape[:ax] + (1,) + idx.shape[ax + 1:]
    try:
        common = broadcast_shapes(rest_x, rest_i, "take_along_axis")
    except ValueError:
        raise ValueError(f"take_along_axis: x of shape {x.shape} and indices of shape {idx.shape} do not "
                         f"broadcast outside axis {ax}") from None
    xb = broadcast_to(x, common[:ax] + (x.shape[ax],) + common[ax + 1:])
    ib = broadcast_to(idx, common[:ax] + (idx.shape[ax],) + common[ax + 1:])
    outer, n, inner, m = _prod(common[:ax]), x.shape[ax], _prod(common[ax + 1:]), idx.shape[ax]
    out = empty(ib.shape, x.dtype, x.device)
    x.device.kernels.take_along_axis(xb._buf, outer, n, inner, ib._buf, m, out._buf)
    if _float_grad(xb):
        xs = xb.shape

        def bw(g, need):
            gx = empty(xs, g.dtype, g.device)
            g.device.kernels.take_along_axis_grad(g._buf, outer, n, inner, ib._buf, m, gx._buf)
            return (gx,)
        record(out, (xb,), bw)
    return out


def nonzero(x):
    """Indices of the non-zero elements: a tuple of int64 tensors, one per dimension."""
    x = _as_tensor(x)
    if x.ndim == 0:
        raise ValueError("nonzero: a zero-dimensional tensor has no dimensions to index; use "
                         "nonzero(reshape(x, (1,)))")
    k = x.device.kernels
    count = k.count_nonzero(x._buf)
    outs = [empty((count,), dtypes.INT64, x.device) for _ in range(x.ndim)]
    k.nonzero(x._buf, list(x.shape), [o._buf for o in outs])
    return tuple(outs)


# ---- padding, tiling, flips ---------------------------------------------------------------------

def _pad_widths(pad_width, ndim, shape):
    a = np.asarray(pad_width.numpy() if isinstance(pad_width, Tensor) else pad_width)
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.all(a == np.floor(a))):
        raise TypeError(f"pad: pad_width must hold integers, received {pad_width!r}")
    a = a.astype(np.int64)
    try:
        w = np.broadcast_to(a.reshape((1, -1)) if a.ndim == 1 else a, (ndim, 2)) if a.ndim <= 2 else None
    except ValueError:
        w = None
    if w is None:
        raise ValueError(f"pad: pad_width {pad_width!r} does not fit a tensor of shape {shape}; expected an int, "
                         f"(before, after), or {ndim} pairs")
    if (a < 0).any():
        raise ValueError(f"pad: pad widths must be non-negative, received {pad_width!r}")
    return [(int(b), int(e)) for b, e in w]


def pad(x, pad_width, mode="constant", constant_values=0):
    """numpy.pad with mode "constant", "reflect" or "symmetric"; the gradient is a slice."""
    x = _as_tensor(x)
    widths = _pad_widths(pad_width, x.ndim, x.shape)
    if mode not in ("constant", "reflect", "symmetric"):
        raise ValueError(f"pad: mode {mode!r} is not supported; expected 'constant', 'reflect' or 'symmetric'")
    if np.ndim(constant_values) != 0:
        raise ValueError(f"pad: constant_values must be a scalar, received {constant_values!r}")
    constant_values = _fill_value(constant_values, x.dtype, "pad")
    if builtins.all(b == 0 and e == 0 for b, e in widths):
        return x
    shape = tuple(d + b + e for d, (b, e) in zip(x.shape, widths))
    validation.check_alloc("pad", shape, x.dtype, x.device)
    if mode == "constant":
        out = full(shape, constant_values, x.dtype, x.device)
        ost = _strides(shape)
        off = builtins.sum(b * s for (b, _), s in zip(widths, ost))
        if x.size:
            _copy(x, 0, _strides(x.shape), out, off, ost, x.shape)
        if needs_grad(x):
            xs = x.shape
            record(out, (x,), lambda g, n: (_gather_view(g, off, xs, ost),))
        return out
    y = x
    for ax, (b, e) in enumerate(widths):
        if b or e:
            y = _pad_mirror(y, ax, b, e, mode == "symmetric")
    return y


def _pad_mirror(x, ax, before, after, symmetric):
    """Reflect / symmetric padding of one axis: three strided copies (the mirrored edges have
    negative strides); the gradient adds the mirrored edges back onto the interior."""
    n = x.shape[ax]
    limit = n if symmetric else n - 1
    if before > limit or after > limit:
        mode = "symmetric" if symmetric else "reflect"
        raise ValueError(f"pad: {mode} padding of ({before}, {after}) on axis {ax} of a tensor of shape {x.shape} "
                         f"is wider than the {limit} element(s) it can mirror; pad in several steps")
    shape = x.shape[:ax] + (n + before + after,) + x.shape[ax + 1:]
    xst, ost = _strides(x.shape), _strides(shape)
    # (x view offset, out offset, count) of each mirrored edge; the x view runs backwards along ax
    left = ((before - (1 if symmetric else 0)) * xst[ax], 0, before)
    right = ((n - (1 if symmetric else 2)) * xst[ax], (before + n) * ost[ax], after)
    mirror_x = [s if k != ax else -s for k, s in enumerate(xst)]
    out = empty(shape, x.dtype, x.device)
    if out.size:
        _copy(x, 0, xst, out, before * ost[ax], ost, x.shape)
        for xoff, ooff, cnt in (left, right):
            if cnt:
                es = x.shape[:ax] + (cnt,) + x.shape[ax + 1:]
                _copy(x, xoff, mirror_x, out, ooff, ost, es)
    if needs_grad(x):
        xs = x.shape

        def bw(g, need):
            gx = empty(xs, g.dtype, g.device)
            if gx.size:
                _copy(g, before * ost[ax], ost, gx, 0, xst, xs)
                for xoff, ooff, cnt in (left, right):
                    if cnt:
                        es = xs[:ax] + (cnt,) + xs[ax + 1:]
                        _copy(g, ooff, ost, gx, xoff, mirror_x, es, accumulate=True)
            return (gx,)
        record(out, (x,), bw)
    return out


def tile(x, repeats):
    """numpy.tile: x repeated `repeats` times along each dimension."""
    x = _as_tensor(x)
    reps = validation.dims(repeats, "tile", "repeats")
    if builtins.any(r < 0 for r in reps):
        raise ValueError(f"tile: repeats must be non-negative, received {repeats!r}")
    nd = builtins.max(x.ndim, len(reps))
    reps = (1,) * (nd - len(reps)) + reps
    xshape = (1,) * (nd - x.ndim) + x.shape
    inter = tuple(v for d in xshape for v in (1, d))
    target = tuple(v for r, d in zip(reps, xshape) for v in (r, d))
    validation.check_alloc("tile", target, x.dtype, x.device)
    y = broadcast_to(reshape(x, inter), target)
    return reshape(y, tuple(r * d for r, d in zip(reps, xshape)))


def repeat(x, repeats, axis=None):
    """numpy.repeat: each element repeated `repeats` times (an int, or one count per element)."""
    x = _as_tensor(x)
    if axis is None:
        x, ax = ravel(x), 0
    else:
        if x.ndim == 0:
            raise ValueError("repeat: axis given for a zero-dimensional tensor; use axis=None")
        ax = _axis(axis, x.ndim, "repeat", x.shape)
    r = np.asarray(repeats.numpy() if isinstance(repeats, Tensor) else repeats)
    if r.dtype.kind not in "iu" and r.size:
        raise TypeError(f"repeat: repeats must be integers, received {repeats!r}")
    r = r.astype(np.int64)
    if (r < 0).any():
        raise ValueError(f"repeat: repeats must be non-negative, received {repeats!r}")
    n = x.shape[ax]
    if r.ndim == 0 or r.size == 1:
        k = int(r.reshape(()))
        validation.check_alloc("repeat", x.shape[:ax + 1] + (k,) + x.shape[ax + 1:], x.dtype, x.device)
        inter = x.shape[:ax + 1] + (1,) + x.shape[ax + 1:]
        y = broadcast_to(reshape(x, inter), x.shape[:ax + 1] + (k,) + x.shape[ax + 1:])
        return reshape(y, x.shape[:ax] + (n * k,) + x.shape[ax + 1:])
    if r.shape != (n,):
        raise ValueError(f"repeat: expected one repeat count per element along axis {ax} (size {n}) of a tensor "
                         f"of shape {x.shape}, received {r.size} counts")
    total = int(r.sum(dtype=object))
    validation.check_alloc("repeat", x.shape[:ax] + (total,) + x.shape[ax + 1:], x.dtype, x.device)
    validation.check_alloc("repeat", (total,), dtypes.INT64, x.device)
    # index arithmetic on the host (the counts are arguments, not tensor data): element i, r[i] times
    idx = np.repeat(np.arange(n, dtype=np.int64), r)
    return take(x, idx, axis=ax)


def flip(x, axis=None):
    """Reverses the order of elements along `axis` (all axes when None)."""
    x = _as_tensor(x)
    axes = tuple(range(x.ndim)) if axis is None else _axes(axis, x.ndim, "flip", x.shape)
    st = _strides(x.shape)
    off = 0
    for a in axes:
        if x.shape[a] > 0:
            off += (x.shape[a] - 1) * st[a]
        st[a] = -st[a]
    return _gather_view(x, off, x.shape, st)


def roll(x, shift, axis=None):
    """numpy.roll: elements shifted along `axis` (flattened when None), wrapping around."""
    x = _as_tensor(x)
    if axis is None:
        return reshape(roll(ravel(x), shift, 0), x.shape)
    shifts = np.asarray(validation.dims(shift, "roll", "shift"), dtype=np.int64)
    axes = np.asarray(validation.dims(axis, "roll", "axis"), dtype=np.int64)
    try:
        shifts, axes = np.broadcast_arrays(shifts, axes)
    except ValueError:
        raise ValueError(f"roll: shift {shift} and axis {axis} do not broadcast together") from None
    total = {}
    for s, a in zip(shifts.tolist(), axes.tolist()):
        ax = _axis(a, x.ndim, "roll", x.shape)
        total[ax] = total.get(ax, 0) + s
    y = x
    for ax, s in total.items():
        y = _roll_axis(y, ax, s)
    return y


def _roll_axis(x, ax, s):
    n = x.shape[ax]
    if n == 0 or s % n == 0:
        return x
    s %= n
    st = _strides(x.shape)
    out = empty(x.shape, x.dtype, x.device)
    if out.size:
        head = x.shape[:ax] + (n - s,) + x.shape[ax + 1:]
        tail = x.shape[:ax] + (s,) + x.shape[ax + 1:]
        _copy(x, 0, st, out, s * st[ax], st, head)
        _copy(x, (n - s) * st[ax], st, out, 0, st, tail)
    if needs_grad(x):
        record(out, (x,), lambda g, need: (_roll_axis(g, ax, -s),))
    return out


# ---- diagonals and triangles --------------------------------------------------------------------

def _diag_view(shape, offset, axis1, axis2):
    """(offset, shape, strides) of the diagonal view: other dims in order, then the diagonal."""
    st = _strides(shape)
    n1, n2 = shape[axis1], shape[axis2]
    if offset >= 0:
        length = builtins.max(0, builtins.min(n1, n2 - offset))
        start = offset * st[axis2]
    else:
        length = builtins.max(0, builtins.min(n1 + offset, n2))
        start = -offset * st[axis1]
    others = [k for k in range(len(shape)) if k not in (axis1, axis2)]
    vshape = tuple(shape[k] for k in others) + (length,)
    vst = [st[k] for k in others] + [st[axis1] + st[axis2]]
    return (start if length else 0), vshape, vst


def diagonal(x, offset=0, axis1=0, axis2=1):
    """numpy.diagonal: the diagonal of the (axis1, axis2) planes, as the last dimension."""
    x = _as_tensor(x)
    if x.ndim < 2:
        raise ValueError(f"diagonal: expected a tensor with at least 2 dimensions, received shape {x.shape}")
    a1 = _axis(axis1, x.ndim, "diagonal", x.shape)
    a2 = _axis(axis2, x.ndim, "diagonal", x.shape)
    if a1 == a2:
        raise ValueError(f"diagonal: axis1 and axis2 must differ, both are {a1} (shape {x.shape})")
    off, vshape, vst = _diag_view(x.shape, validation.integer(offset, "diagonal", "offset"), a1, a2)
    return _gather_view(x, off, vshape, vst)


def diag(x, k=0):
    """numpy.diag: a 1-D x becomes a square matrix with x on diagonal k; a 2-D x gives its
    k-th diagonal."""
    x = _as_tensor(x)
    k = validation.integer(k, "diag", "k")
    if x.ndim == 1:
        n = x.shape[0] + builtins.abs(k)
        validation.check_alloc("diag", (n, n), x.dtype, x.device)
        off, vshape, vst = _diag_view((n, n), k, 0, 1)
        return _scatter_view(x, (n, n), off, vshape, vst)
    if x.ndim == 2:
        return diagonal(x, k)
    raise ValueError(f"diag: expected a 1-D or 2-D tensor, received shape {x.shape}; use diagonal() for "
                     "higher dimensions")


def eye(N, M=None, k=0, dtype="float32"):
    """Ones on diagonal k of an N x M matrix, zeros elsewhere."""
    N = validation.size(N, "eye", "N")
    M = N if M is None else validation.size(M, "eye", "M")
    k = validation.integer(k, "eye", "k")
    dt = dtypes.standardize(dtype, "eye")
    validation.check_alloc("eye", (N, M), dt)
    out = zeros((N, M), dt)
    off, vshape, vst = _diag_view((N, M), k, 0, 1)
    if vshape[0]:
        _copy(full((), 1, dt, out.device), 0, [0], out, off, vst, vshape)
    return out


def identity(n, dtype="float32"):
    """The n x n identity matrix."""
    return eye(n, dtype=dtype)


def _tri_op(x, k, upper):
    op = "triu" if upper else "tril"
    if x.ndim < 2:
        raise ValueError(f"{op}: expected a tensor with at least 2 dimensions, received shape {x.shape}")
    rows, cols = x.shape[-2], x.shape[-1]
    batch = _prod(x.shape[:-2])
    out = empty(x.shape, x.dtype, x.device)
    x.device.kernels.tri(x._buf, batch, rows, cols, k, upper, out._buf)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (_tri_op(g, k, upper),))
    return out


def tril(x, k=0):
    """Lower triangle (j <= i + k) of the last two dimensions; zeros above."""
    return _tri_op(_as_tensor(x), validation.integer(k, "tril", "k"), False)


def triu(x, k=0):
    """Upper triangle (j >= i + k) of the last two dimensions; zeros below."""
    return _tri_op(_as_tensor(x), validation.integer(k, "triu", "k"), True)


def tri(N, M=None, k=0, dtype="float32"):
    """Ones at and below diagonal k of an N x M matrix."""
    N = validation.size(N, "tri", "N")
    M = N if M is None else validation.size(M, "tri", "M")
    k = validation.integer(k, "tri", "k")
    return tril(_filled((N, M), 1, dtypes.standardize(dtype, "tri"), None, "tri"), k)


# ---- ranges -------------------------------------------------------------------------------------

def _scalar(v, op, name):
    if isinstance(v, Tensor):
        if v.size != 1:
            raise ValueError(f"{op}: {name} must be a scalar, received a tensor of shape {v.shape}")
        v = v.item()
    a = np.asarray(v)
    if a.ndim != 0 or a.dtype.kind not in "iufb":
        raise ValueError(f"{op}: {name} must be a scalar number, received {v!r}")
    return a.item()


def arange(start, stop=None, step=1, dtype=None):
    """numpy.arange: start, start + step, ... below stop (int64 for integer arguments, else float32)."""
    start = _scalar(start, "arange", "start")
    if stop is None:
        start, stop = 0, start
    stop = _scalar(stop, "arange", "stop")
    step = _scalar(step, "arange", "step")
    if step == 0:
        raise ValueError("arange: step must not be zero")
    all_int = builtins.all(isinstance(v, (int, bool)) for v in (start, stop, step))
    dt = dtypes.standardize(dtype, "arange") if dtype is not None else (dtypes.INT64 if all_int else dtypes.FLOAT32)
    if dt == dtypes.BOOL:
        raise TypeError("arange: dtype bool is not supported; expected float32, int32 or int64")
    if all_int:
        n = builtins.max(0, -((start - stop) // step))
    else:
        span = (stop - start) / step
        if not _pymath.isfinite(span):
            raise ValueError(f"arange: the number of values from start={start} to stop={stop} by step={step} "
                             "is not finite")
        n = builtins.max(0, int(_pymath.ceil(span)))
    validation.check_alloc("arange", (n,), dt)
    out = empty((n,), dt, op="arange")
    out.device.kernels.arange(out._buf, float(start), float(step))
    return out


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    """numpy.linspace for scalar start and stop: `num` evenly spaced values."""
    start = _scalar(start, "linspace", "start")
    stop = _scalar(stop, "linspace", "stop")
    num = validation.size(num, "linspace", "num")
    if validation.integer(axis, "linspace", "axis") not in (0, -1):
        raise ValueError(f"linspace: axis {axis} is out of range for the 1-D result of scalar start and stop")
    dt = dtypes.standardize(dtype, "linspace") if dtype is not None else dtypes.FLOAT32
    if dt == dtypes.BOOL:
        raise TypeError("linspace: dtype bool is not supported; expected float32, int32 or int64")
    validation.check_alloc("linspace", (num,), dt)
    out = empty((num,), dt, op="linspace")
    out.device.kernels.linspace(out._buf, float(start), float(stop), bool(endpoint))
    if retstep:
        div = num - 1 if endpoint else num
        return out, ((stop - start) / div if div > 0 else float("nan"))
    return out


# ---- devices and copies -------------------------------------------------------------------------

def copy_to(x, device):
    """A copy of x on `device` ("cpu:1", a Device, ...); x itself when it is already there.
    The gradient is copied back to x's device."""
    x = _as_tensor(x)
    try:
        dev = get_device(device)
    except (TypeError, ValueError) as e:
        raise type(e)(f"copy_to: {e}") from e
    if dev is x.device:
        return x
    if not dev.enabled():
        raise RuntimeError(f"copy_to: device {dev.name} is not available")
    code = dtypes.CODES[x.dtype]
    if dev.kernels is x.device.kernels:  # queued in order on both devices (copy_between)
        buf = dev.buffer(x._buf.numel, code)
        dev.kernels.copy_between(x._buf, buf)
    else:  # different kernel modules (host <-> accelerator): through host memory
        buf = dev.from_numpy(x.device.kernels.to_numpy(x._buf, [x._buf.numel]), code)
    out = Tensor(buf, x.shape, x.dtype, dev)
    if needs_grad(x):
        src = x.device
        record(out, (x,), lambda g, n: (copy_to(g, src),))
    return out


def copy(x):
    """A new tensor with x's values (its own buffer)."""
    x = _as_tensor(x)
    out = empty(x.shape, x.dtype, x.device)
    x.device.kernels.copy(x._buf, out._buf)
    if needs_grad(x):
        record(out, (x,), lambda g, n: (g,))
    return out


# ---- Tensor methods -----------------------------------------------------------------------------

def _tensor_reshape(self, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return reshape(self, shape)


def _tensor_transpose(self, *axes):
    if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
        axes = axes[0]
    return transpose(self, axes if axes else None)


Tensor.reshape = _tensor_reshape
Tensor.transpose = _tensor_transpose
Tensor.T = property(lambda self: transpose(self))
Tensor.__getitem__ = _getitem
Tensor.squeeze = lambda self, axis=None: squeeze(self, axis)


def _tensor_to(self, device):
    """Copy of this tensor on another device (differentiable)."""
    return copy_to(self, device)


Tensor.to = _tensor_to
