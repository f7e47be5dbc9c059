"""Symbolic calls: a layer called on KerasTensors (lamina.Input and what follows it) is built,
checks its input spec and returns KerasTensors of its output shapes, recording a Node of the
graph that a Functional model (models/functional.py) replays on real tensors. Output shapes come
from `compute_output_shape` or from running `call` once on stand-in zeros (`no_grad`)."""
import itertools

from ..backend import dtypes, math as _m
from ..backend.autodiff import no_grad
from ..backend.tensor import Tensor
from .input_layer import KerasTensor
from .layer import Layer, check_input_spec, flatten, map_structure


class Node:
    """One call of a layer in the graph: input and output KerasTensors and the call's arguments
    (a structure in which the input KerasTensors stand where tensors will go)."""

    def __init__(self, layer, inputs, outputs, call_args):
        self.layer = layer
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.call_args = call_args
        index = len(layer._inbound_nodes)
        layer._inbound_nodes.append(self)
        for i, t in enumerate(self.outputs):
            t._keras_history = (layer, index, i)

    @property
    def parent_nodes(self):
        out = []
        for t in self.inputs:
            layer, idx, _ = t._keras_history
            out.append(layer._inbound_nodes[idx])
        return out


_SENTINEL_BATCH, _SENTINEL_DIM = 2, 3


def trace_output_shape(layer, input_shape, input_dtypes=None):
    """Output shape(s) of `layer` for `input_shape`, found by running `call` once on zeros with
    unknown dims replaced by small sizes (they come back as None)."""
    unknown_batch = [False]
    unknown_other = [False]

    def concrete(shape):
        dims = []
        for i, d in enumerate(shape):
            if d is None:
                if i == 0:
                    unknown_batch[0] = True
                else:
                    unknown_other[0] = True
                dims.append(_SENTINEL_BATCH if i == 0 else _SENTINEL_DIM)
            else:
                dims.append(d)
        return tuple(dims)

    is_leaf = lambda s: isinstance(s, tuple) and all(d is None or isinstance(d, int) for d in s)  # noqa: E731

    def build_inputs(s, dt):
        if is_leaf(s):
            return _m.zeros(concrete(s), dtype=dt or "float32")
        if isinstance(s, dict):
            return {k: build_inputs(v, (dt or {}).get(k) if isinstance(dt, dict) else None) for k, v in s.items()}
        return [build_inputs(v, dt[i] if isinstance(dt, (list, tuple)) else dt) for i, v in enumerate(s)]

    xs = build_inputs(input_shape, input_dtypes)
    try:
        with no_grad():
            out = layer.call(xs, **({"training": False} if layer._call_has_training else {}))
    finally:
        layer._clear_losses()  # add_loss calls made while tracing are not losses of any real call

    def back(t):
        shape = list(t.shape)
        if unknown_batch[0] and shape:
            shape[0] = None
        if unknown_other[0]:
            shape = [shape[0]] + [None if d == _SENTINEL_DIM else d for d in shape[1:]] if shape else shape
        return tuple(shape)
    return map_structure(back, out) if not isinstance(out, Tensor) else back(out)


def symbolic_call(layer, *args, **kwargs):
    """Calls `layer` on KerasTensors: builds it, checks the input spec, and returns new
    KerasTensors of the output shapes, recording a Node."""
    inputs = args[0]
    # every symbolic tensor among the arguments is a graph input (e.g. initial_state=[h, c])
    flat_in = [t for t in flatten([list(args), list(kwargs.values())]) if isinstance(t, KerasTensor)]
    shapes = map_structure(lambda t: t.shape if isinstance(t, KerasTensor) else tuple(t.shape), inputs)
    in_dtypes = map_structure(lambda t: t.dtype, inputs)
    strings = [t for t in flat_in if t.dtype == dtypes.STRING]
    if strings and not layer._takes_strings():
        raise TypeError(f"{type(layer).__name__} '{layer.name}': received the string input {strings[0].name!r} "
                        f"(dtype 'string', shape {strings[0].shape}), but this layer takes numbers (lamina tensors "
                        "hold numbers, not strings). Put a TextVectorization, StringLookup or Hashing layer between "
                        "the string input and this layer")
    if not layer.built:
        layer._maybe_build(shapes)
    if layer.input_spec is not None:
        specs = layer.input_spec if isinstance(layer.input_spec, (list, tuple)) else [layer.input_spec]
        for spec, t in zip(specs, flatten(inputs)):
            check_input_spec(layer, spec, None if t is None else t.shape, getattr(t, "dtype", None))
    # masks travel on KerasTensors as on tensors: a layer whose call takes `mask` is traced with it
    in_masks = [getattr(t, "_keras_mask", None) for t in flatten(inputs) if isinstance(t, KerasTensor)]
    mask = None
    if any(m is not None for m in in_masks):
        mask = in_masks if isinstance(inputs, (list, tuple, dict)) else in_masks[0]
    if mask is not None and layer._call_has_mask and "mask" not in kwargs:
        out_shape = _trace_with_args(layer, shapes, in_dtypes, args, {**kwargs, "mask": mask})
        out_dtypes = _output_dtypes(layer, in_dtypes)
    else:
        out_shape, out_dtypes = output_spec(layer, shapes, in_dtypes, args, kwargs)
    leaf = itertools.count()

    def make(s):  # compute_output_dtype gives one dtype, or a list with one per output
        i = next(leaf)
        dt = out_dtypes[i] if isinstance(out_dtypes, list) and i < len(out_dtypes) else out_dtypes
        return KerasTensor(s, dt or layer.dtype, name=layer.name)
    is_leaf = lambda s: isinstance(s, tuple) and all(d is None or isinstance(d, int) for d in s)  # noqa: E731

    def build_out(s):
        if is_leaf(s):
            return make(s)
        if isinstance(s, dict):
            return {k: build_out(v) for k, v in s.items()}
        return [build_out(v) for v in s]
    outputs = build_out(out_shape)
    if mask is not None or type(layer).compute_mask is not Layer.compute_mask:
        _attach_output_masks(layer, inputs, mask, outputs)
    Node(layer, flat_in, flatten(outputs), (args, kwargs))
    return outputs


def _attach_output_masks(layer, inputs, mask, outputs):
    """Sets `_keras_mask` on the output KerasTensors: `layer.compute_mask` run once on stand-in
    values (zeros for the inputs, all-true masks), its result's shape made symbolic again."""
    concrete, back = _stand_ins(inputs, mask)
    with no_grad():
        out_mask = layer.compute_mask(map_structure(concrete, inputs), map_structure(concrete, mask))
    if out_mask is None:
        return
    outs = flatten(outputs)
    masks = out_mask if isinstance(out_mask, (list, tuple)) else [out_mask] * len(outs)
    for o, m in zip(outs, masks):
        if isinstance(m, Tensor):
            o._keras_mask = KerasTensor(back(m), "bool", name=f"{layer.name}_mask")


def _default_dtype(layer, in_dtypes):
    return layer.dtype


def _output_dtypes(layer, in_dtypes):
    dtype_of = getattr(layer, "compute_output_dtype", None)
    return dtype_of(in_dtypes) if dtype_of else _default_dtype(layer, in_dtypes)


def output_spec(layer, shapes, in_dtypes, args=(None,), kwargs=None):
    """(output shapes, output dtypes) of calling `layer` on inputs of `shapes` and `in_dtypes`.
    A layer that is a chain of layers (a Sequential: `_output_spec`) passes both through each of
    them, so an integer input reaches its first layer as an integer, as in Keras."""
    chain = getattr(layer, "_output_spec", None)
    if chain is not None and len(args) == 1 and not kwargs:
        return chain(shapes, in_dtypes)
    return _compute_output_shape(layer, shapes, in_dtypes, args, kwargs or {}), _output_dtypes(layer, in_dtypes)


def _compute_output_shape(layer, shapes, in_dtypes, args, kwargs):
    if type(layer).compute_output_shape is not Layer.compute_output_shape and len(args) == 1 and not kwargs:
        return layer.compute_output_shape(shapes)
    if len(args) > 1 or kwargs:
        # extra call arguments (e.g. initial_state=...) -> trace with them filled in
        return _trace_with_args(layer, shapes, in_dtypes, args, kwargs)
    return trace_output_shape(layer, shapes, in_dtypes)


def _stand_ins(*structures):
    """`concrete(x)`: a KerasTensor -> zeros of its shape (unknown dims made small), an all-true
    tensor for a boolean mask; `back(t)`: a traced result's shape with those dims unknown again.
    A batch size known on one of the KerasTensors in `structures` (Input(batch_size=...)) stands
    in for the unknown ones and stays known in the results (a mask then matches its input)."""
    unknown_other = [False]
    known = {t.shape[0] for s in structures for t in flatten(s)
             if isinstance(t, KerasTensor) and t.shape and t.shape[0] is not None}
    batch = known.pop() if len(known) == 1 else None

    def concrete(x):
        if isinstance(x, KerasTensor):
            dims = []
            for i, d in enumerate(x.shape):
                if d is None and i > 0:
                    unknown_other[0] = True
                dims.append(((batch or _SENTINEL_BATCH) if i == 0 else _SENTINEL_DIM) if d is None else d)
            return (_m.ones if x.dtype == "bool" else _m.zeros)(tuple(dims), dtype=x.dtype)
        return x

    def back(t):
        if not t.shape:
            return ()
        rest = tuple(None if unknown_other[0] and d == _SENTINEL_DIM else d for d in t.shape[1:])
        return (batch if batch is not None and t.shape[0] == batch else None,) + rest
    return concrete, back


def _trace_with_args(layer, shapes, in_dtypes, args, kwargs):
    concrete, back = _stand_ins(args, kwargs)
    a = [map_structure(concrete, v) for v in args]
    k = {n: map_structure(concrete, v) for n, v in kwargs.items()}
    if layer._call_has_training:
        k.setdefault("training", False)
    try:
        with no_grad():
            out = layer.call(*a, **k)
    finally:
        layer._clear_losses()
    return back(out) if isinstance(out, Tensor) else map_structure(back, out)
