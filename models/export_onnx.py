"""`Model.export(filepath, format="onnx")`: the ONNX graph of a built Sequential or Functional model,
written by lamina itself (no TensorFlow, tf2onnx or jax2onnx), for inference (Dropout and noise
layers are identities, BatchNormalization uses its moving statistics).

The `onnx` package builds and checks the graph (an optional dependency: `pip install onnx`, or
lamina's "onnx" extra); it is imported only when a model is exported. Default opset 17 (ONNX Runtime
runs opsets 17 to 21 of these graphs; `opset_version=` picks one). lamina's layers are channels-last:
convolutions and poolings are wrapped in Transposes to ONNX's channels-first layout (ONNX Runtime's
optimizer removes the pairs that cancel). Graph inputs are named after the model's Inputs (their
batch axis dynamic, "batch", unless `input_signature` fixes it), graph outputs after the layers
that produce the model's outputs. Nested Sequential / Functional models are inlined.

Besides the dense, convolutional, pooling, normalization, activation, reshaping, merging,
preprocessing and noise layers (`supported_layers()` lists every class):
- LSTM, GRU (reset_after True or False) and SimpleRNN, alone or in Bidirectional (every
  merge_mode), become ONNX's LSTM / GRU / RNN ops (Keras's gates i, f, c, o reordered to ONNX's
  i, o, f, c; GRU's reset_after is linear_before_reset, its two biases Wb and Rb): return_sequences,
  go_backwards (the sequence reversed first, so outputs come in lamina's processing order),
  use_bias and return_state; activations tanh, sigmoid, relu, hard_sigmoid (Keras's: alpha 1/6,
  beta 0.5), linear, softsign, softplus. Zero initial states only; not stateful; no masks.
- MultiHeadAttention over (batch, positions, features) inputs: self- or cross-attention, a
  separate key, value_dim, output_shape, use_causal_mask; no explicit masks, attention scores,
  gate or sliding window. GroupNormalization, UnitNormalization and RMSNormalization.
- Op nodes (`supported_ops()` lists them): `keras.ops` calls and Python's operators on symbolic
  tensors (`x + 1.0`, `x[:, 1]`, `x @ w`, `x < y`, `abs(x)`, `round(x)` ...), with lamina's dtype
  rules (a Python float with a float32 tensor stays float32, ints with an int tensor stay int, a float
  with an int tensor is float32; constants, numbers or numpy arrays, become initializers of that
  dtype): add, subtract, multiply, divide / true_divide, power, maximum, minimum, matmul, negative,
  abs / absolute, square, exp, log, sqrt; floor_divide and mod as numpy's (the quotient rounds toward
  -inf, the remainder takes the divisor's sign; integer division by zero gives 0 as lamina's); the
  comparisons (bool outputs) and logical_and / or / xor / not; round (decimals=0: ONNX's Round halves
  to even, as numpy); relu, sigmoid, tanh, softmax (any axis); cast; mean / sum / max / min (axis,
  keepdims; not `initial`); reshape (one -1), transpose, expand_dims, squeeze, concatenate (of graph
  tensors); get_item with ints, slices (any step), Ellipsis and None (integer-array and boolean-mask
  indices are refused). Any other op is refused, naming it.
Masks (Embedding(mask_zero=True), Masking) are refused wherever a layer would use them. A model under
a mixed precision policy ("mixed_bfloat16") is written as float32 computation on its float32
weights: ONNX Runtime's outputs then differ from `predict`'s by bfloat16's rounding.
"""
import functools
import os

import numpy as np

from .. import activations as _act
from .. import layers as L
from .. import ops as _ops
from .._fileio import atomic_write
from ..backend.settings import epsilon as _epsilon
from ..layers.core import SymbolicOp
from ..layers.input_layer import InputLayer, KerasTensor
from ..layers.layer import map_structure
from ..layers.layer import InputSpec
from ..layers.normalization import BatchNormalization as _BN

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 17, 21

# Keras's formats; lamina writes "onnx" only. What each of the others would need:
_OTHER_FORMATS = {
    "tf_saved_model": "TensorFlow (a tf.Module traced with tf.function and written by tf.saved_model.save)",
    "litert": "TensorFlow's LiteRT (TFLite) converter",
    "openvino": "OpenVINO's model converter",
    "torch": "PyTorch's torch.export (Keras's torch backend)",
}

_NP_TO_ONNX = {"float32": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "int32": 6, "int64": 7, "bool": 9,
               "float16": 10, "float64": 11, "uint32": 12, "uint64": 13, "bfloat16": 16}


def export_model(model, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
    """Model.export: checks the arguments, converts the model and writes `filepath` atomically."""
    who = f"Model '{model.name}'.export"
    if not isinstance(format, str):
        raise TypeError(f"{who}: `format` must be a string, received {format!r} of type {type(format).__name__}; "
                        "lamina exports format=\"onnx\"")
    if format in _OTHER_FORMATS:
        default = " (Keras's default format)" if format == "tf_saved_model" else ""
        raise NotImplementedError(f"{who}: format={format!r}{default} needs {_OTHER_FORMATS[format]}, which lamina "
                                  "does not use. lamina exports ONNX itself: call "
                                  f"model.export({os.fspath(filepath)!r}, format=\"onnx\") and serve the file with "
                                  "ONNX Runtime (or convert it from ONNX)")
    if format != "onnx":
        raise ValueError(f"{who}: unrecognized format={format!r}. Keras's formats are "
                         f"{['tf_saved_model', 'onnx', 'openvino', 'litert', 'torch']}; lamina exports \"onnx\"")
    opset = kwargs.pop("opset_version", None)
    if kwargs:
        raise TypeError(f"{who}: unexpected keyword argument(s) {sorted(kwargs)} for format=\"onnx\"; the only "
                        "extra argument it takes is opset_version (an int)")
    if opset is None:
        opset = DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"{who}: opset_version must be an int from {MIN_OPSET} to {MAX_OPSET} (lamina writes these "
                         f"opsets; default {DEFAULT_OPSET}), received opset_version={opset!r}")
    if verbose is not None and not isinstance(verbose, (bool, int, np.integer)):
        raise TypeError(f"{who}: `verbose` must be None, True or False, received {verbose!r}")
    try:
        path = os.fspath(filepath)
    except TypeError:
        raise TypeError(f"{who}: `filepath` must be a str or os.PathLike, received {filepath!r} of type "
                        f"{type(filepath).__name__}") from None
    if os.path.isdir(path):
        raise IsADirectoryError(f"{who}: filepath '{path}' is a folder; the ONNX format is one file: pass a file "
                                "path such as 'model.onnx'")
    try:
        import onnx  # noqa: F401  (checked here: the error says how to install it)
    except ImportError as e:
        raise ImportError(f"{who}: format=\"onnx\" needs the `onnx` package, which is not installed; install it with "
                          "`pip install onnx` (or lamina's extra: `pip install \"lamina[onnx]\"`)") from e
    proto = to_onnx(model, input_signature=input_signature, opset_version=int(opset))
    data = proto.SerializeToString()
    try:
        with atomic_write(path) as f:
            f.write(data)
    except OSError as e:
        raise type(e)(e.errno, f"{who}: cannot write '{path}': {e.strerror or e}. Pass a path in a folder you can "
                               "write to") from e
    if verbose is None or verbose:   # as Keras: ONNX export prints by default
        print(f"Saved artifact at '{path}'.")


def to_onnx(model, input_signature=None, opset_version=DEFAULT_OPSET):
    """The onnx.ModelProto of `model` (a built Sequential or Functional model), checked with
    onnx.checker."""
    import onnx
    from onnx import helper
    _check_model(model)
    specs = _signature(model, input_signature)
    unsupported = []
    _collect_unsupported(model, unsupported, set())
    if unsupported:
        names = ", ".join(f"'{l.name}' (" + (f"the op {_op_name(l)} on symbolic tensors" if type(l) is SymbolicOp
                                             else type(l).__name__) + ")" for l in unsupported)
        ops_note = (f"; supported ops (keras.ops calls and Python operators on symbolic tensors): {supported_ops()}"
                    if any(type(l) is SymbolicOp for l in unsupported) else "")
        raise NotImplementedError(f"Model '{model.name}'.export(format=\"onnx\"): layer(s) {names} cannot be exported "
                                  f"to ONNX by lamina; nothing was written. Supported layer classes: "
                                  f"{supported_layers()} and nested Sequential/Functional models{ops_note}")
    g = _Graph(opset_version)
    values = {}
    graph_inputs = []
    batch_dims = set()
    for i, (kt, (shape, dtype)) in enumerate(zip(model.inputs, specs)):
        name = kt.name or f"input_{i}"
        dims = ["batch" if j == 0 and d is None else (f"dim_{i}_{j}" if d is None else d) for j, d in enumerate(shape)]
        batch_dims.add(dims[0] if dims else None)
        graph_inputs.append(helper.make_tensor_value_info(name, _NP_TO_ONNX[dtype], dims))
        g.dtype[name] = dtype
        g.reserve(name)
        values[id(kt)] = name
    _emit_model(g, model, values)
    batch = batch_dims.pop() if len(batch_dims) == 1 else None
    graph_outputs, used = [], {n.name for n in graph_inputs}
    for i, kt in enumerate(model.outputs):
        hist = kt._keras_history
        base = hist[0].name if hist is not None else f"output_{i}"
        name, k = base, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        src = values[id(kt)]
        if g.dtype.get(src) != kt.dtype:
            src = g.op("Cast", [src], f"{base}/cast", to=_NP_TO_ONNX[kt.dtype])
        g.nodes.append(helper.make_node("Identity", [src], [name], name=f"{name}/output"))
        dims = [batch if j == 0 and d is None else d for j, d in enumerate(kt.shape)]
        graph_outputs.append(helper.make_tensor_value_info(name, _NP_TO_ONNX[kt.dtype], dims))
    graph = helper.make_graph(g.nodes, model.name, graph_inputs, graph_outputs, initializer=g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset_version)],
                              producer_name="lamina", producer_version=_version())
    proto.ir_version = min(proto.ir_version, 9)   # IR 9 (opsets up to 21): what ONNX Runtime 1.16+ reads
    size = sum(t.ByteSize() for t in g.initializers)
    if size > 2_000_000_000:
        raise ValueError(f"Model '{model.name}'.export(format=\"onnx\"): the weights take {size / 1e9:.2f} GB, over "
                         "protobuf's 2 GB limit for one ONNX file; lamina does not write ONNX external data")
    onnx.checker.check_model(proto)
    return proto


def supported_layers():
    """The names of the layer classes `export(format="onnx")` converts."""
    return sorted({c.__name__ for c in _CONVERTERS if c is not SymbolicOp})


def _version():
    from .. import __version__
    return __version__


# ---- what can be exported ----------------------------------------------------------------------

def _is_graph_model(m):
    from .model import Functional
    from .sequential import Sequential
    if isinstance(m, Sequential):
        return type(m).call is Sequential.call
    if isinstance(m, Functional):
        return type(m).call is Functional.call
    return False


def _check_model(model):
    from .model import Model
    if not isinstance(model, Model):
        raise TypeError(f"export: expected a lamina Model, received {type(model).__name__}")
    if not _is_graph_model(model):
        raise NotImplementedError(f"Model '{model.name}' ({type(model).__name__}) is a subclassed model whose `call` is "
                                  "Python code: lamina exports only Sequential and Functional models (a graph of "
                                  "layers) to ONNX. Rebuild it as Model(inputs, outputs) or Sequential([...]), or "
                                  "export a functional model built from the same layers")
    if not model.built or not getattr(model, "outputs", None) or not getattr(model, "inputs", None):
        raise ValueError(f"Model '{model.name}' is not built, so it has no graph to export. Build it first: start it "
                         "with lamina.Input(shape=...), call model.build((None, ...)), or call it on data")


def _collect_unsupported(model, out, seen):
    from .functional import topological_nodes
    for node in topological_nodes(model.outputs):
        layer = node.layer
        if id(layer) in seen or isinstance(layer, InputLayer):
            continue
        seen.add(id(layer))
        if _is_graph_model(layer):
            _collect_unsupported(layer, out, seen)
        elif type(layer) not in _CONVERTERS or not _convertible(layer):
            out.append(layer)


def _convertible(layer):
    if type(layer) is SymbolicOp:
        return _op_name(layer) in _OP_CONVERTERS
    if getattr(layer, "quantization_mode", None) is not None:
        return False
    if type(layer) is L.Bidirectional:
        return all(type(r) in _RNN_LAYERS for r in (layer.forward_layer, layer.backward_layer))
    if type(layer) in _RNN_LAYERS:
        return True   # the cell's activations are checked (with a reason) when it is converted
    if type(layer) is L.UpSampling2D and layer.interpolation not in ("nearest", "bilinear"):
        return False
    act = getattr(layer, "activation", None)
    return act is None or _activation_supported(act)


def _signature(model, input_signature):
    """[(shape, dtype)] per model input: the model's, or input_signature's (InputSpec / KerasTensor /
    objects with .shape and .dtype), which may fix dims the model leaves unknown."""
    who = f"Model '{model.name}'.export(format=\"onnx\")"
    own = [(tuple(kt.shape), kt.dtype) for kt in model.inputs]
    for kt, (shape, dtype) in zip(model.inputs, own):
        if dtype not in _NP_TO_ONNX:
            raise NotImplementedError(f"{who}: input '{kt.name}' has dtype {dtype!r}; ONNX graphs written by lamina "
                                      f"take numeric inputs ({sorted(_NP_TO_ONNX)}). String inputs (text "
                                      "preprocessing) cannot be exported: export the model after the text layers")
    if input_signature is None:
        return own
    sig = input_signature
    if isinstance(sig, (list, tuple)) and len(sig) == 1 and isinstance(sig[0], (list, tuple)) and \
            sig[0] and not isinstance(sig[0][0], (int, type(None))):
        sig = sig[0]   # Keras's [[spec1, spec2]] form
    if isinstance(sig, dict):
        names = [kt.name for kt in model.inputs]
        if set(sig) != set(names):
            raise ValueError(f"{who}: input_signature as a dict must have one spec per model input, keyed by the "
                             f"input names {names}; received keys {sorted(sig)}")
        sig = [sig[n] for n in names]
    if not isinstance(sig, (list, tuple)):
        sig = [sig]
    if len(sig) != len(own):
        raise ValueError(f"{who}: input_signature has {len(sig)} spec(s), the model has {len(own)} input(s) "
                         f"{[kt.name for kt in model.inputs]} of shapes {[s for s, _ in own]}; give one "
                         "lamina.InputSpec(shape=..., dtype=...) (or lamina.Input) per input")
    out = []
    for kt, (shape, dtype), spec in zip(model.inputs, own, sig):
        if not isinstance(spec, (InputSpec, KerasTensor)) and not (hasattr(spec, "shape") and hasattr(spec, "dtype")):
            raise TypeError(f"{who}: each input_signature entry must be a lamina.InputSpec(shape=..., dtype=...) or "
                            f"a lamina.Input(...) tensor, received {spec!r} of type {type(spec).__name__} for "
                            f"input '{kt.name}'")
        s = getattr(spec, "shape", None)
        if s is None:
            raise ValueError(f"{who}: the input_signature spec for input '{kt.name}' has no shape; give "
                             f"InputSpec(shape={shape})")
        s = tuple(None if d is None else int(d) for d in s)
        ok = len(s) == len(shape) and all(a is None or b is None or a == b for a, b in zip(s, shape))
        if not ok:
            raise ValueError(f"{who}: the input_signature shape {s} for input '{kt.name}' is incompatible with the "
                             f"model's input shape {shape}; it must have the same rank and agree on every known "
                             "dimension (None leaves a dimension dynamic)")
        d = getattr(spec, "dtype", None)
        d = None if d is None else str(getattr(d, "name", d))
        if d is not None and d != dtype:
            raise ValueError(f"{who}: the input_signature dtype {d!r} for input '{kt.name}' differs from the model's "
                             f"input dtype {dtype!r}; lamina exports the graph for the dtype its layers were built "
                             "for: leave dtype=None or pass the same dtype")
        out.append((tuple(a if a is not None else b for a, b in zip(s, shape)), dtype))
    return out


# ---- the graph builder -------------------------------------------------------------------------

class _Graph:
    def __init__(self, opset):
        self.opset = opset
        self.nodes, self.initializers = [], []
        self.dtype = {}           # tensor name -> dtype
        self._names = set()
        self._consts = {}

    def reserve(self, name):
        self._names.add(name)

    def fresh(self, hint):
        name, k = hint, 1
        while name in self._names:
            name, k = f"{hint}_{k}", k + 1
        self._names.add(name)
        return name

    def const(self, value, hint, dtype=None, key=None):
        """An initializer holding `value` (numpy); with `key`, one per key (a shared layer's weights)."""
        from onnx import numpy_helper
        if key is not None and key in self._consts:
            return self._consts[key]
        arr = np.asarray(value, dtype=dtype) if dtype is not None else np.asarray(value)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        self.dtype[name] = str(arr.dtype)
        if key is not None:
            self._consts[key] = name
        return name

    def ints(self, values, hint):
        return self.const(np.asarray(values, np.int64), hint)

    def op(self, op_type, inputs, hint, dtype=None, **attrs):
        from onnx import helper
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        self.dtype[out] = dtype or self.dtype.get(inputs[0] if inputs else None, "float32")
        return out

    def reduce(self, op_type, x, axes, hint, keepdims):
        """ReduceMean/Max/Sum over `axes`: axes an attribute before opset 18 (ReduceSum: 13)."""
        axes = [int(a) for a in axes]
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.ints(axes, f"{hint}/axes")], hint, keepdims=int(keepdims))
        return self.op(op_type, [x], hint, axes=axes, keepdims=int(keepdims))

    def scalar(self, v, hint):
        return self.const(np.asarray(v, np.float32), hint)

    def multi(self, op_type, inputs, hint, n, dtype="float32", **attrs):
        """A node with `n` outputs (LSTM's Y, Y_h, Y_c): their names."""
        from onnx import helper
        base = self.fresh(hint)
        outs = [base] + [self.fresh(f"{hint}_{i}") for i in range(1, n)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=base, **attrs))
        for o in outs:
            self.dtype[o] = dtype
        return outs

    def float_input(self, x, hint):
        return x if self.dtype.get(x) == "float32" else self.op("Cast", [x], f"{hint}/cast", dtype="float32", to=1)


def _emit_model(g, model, values):
    """Adds `model`'s nodes; `values` maps id(KerasTensor) -> tensor name (the inputs set)."""
    from .functional import topological_nodes
    for node in topological_nodes(model.outputs):
        layer = node.layer
        if isinstance(layer, InputLayer):
            continue
        args, kwargs = node.call_args
        extra = {k: v for k, v in kwargs.items() if k not in ("training",) and not (k == "mask" and v is None)}
        call_args = _CALL_ARGS.get(type(layer))
        if call_args is not None:
            in_kts, conv_kw = call_args(layer, node)
        else:
            in_kts, conv_kw = node.inputs, {}
        if call_args is None and (len(args) != 1 or extra):
            raise NotImplementedError(f"Layer '{layer.name}' ({type(layer).__name__}) was called with extra arguments "
                                      f"{sorted(extra) or len(args) - 1}; lamina exports layers called on their "
                                      "inputs alone")
        if kwargs.get("training"):
            raise NotImplementedError(f"Layer '{layer.name}' ({type(layer).__name__}) was called with training=True in "
                                      "the graph, so it runs in training mode at inference too; the ONNX export is "
                                      "for inference only. Call it without training=True")
        masked = [t for t in node.inputs if getattr(t, "_keras_mask", None) is not None]
        if masked and (_is_graph_model(layer) or call_args is not None or
                       (layer._call_has_mask and not isinstance(layer, _BN))):
            raise NotImplementedError(f"Layer '{layer.name}' ({type(layer).__name__}) receives a mask (from "
                                      "Embedding(mask_zero=True) or Masking) and uses it; masks are not exported to "
                                      "ONNX. Remove the mask, or export a model without mask-consuming layers")
        ins = [values[id(t)] for t in in_kts]
        if _is_graph_model(layer):
            inner = {id(kt): v for kt, v in zip(layer.inputs, ins)}
            _emit_model(g, layer, inner)
            outs = [inner[id(kt)] for kt in layer.outputs]
        else:
            try:
                outs = _CONVERTERS[type(layer)](g, layer, ins, in_kts, node.outputs, **conv_kw)
            except NotImplementedError as e:
                if str(e).startswith(f"{type(layer).__name__} '{layer.name}'"):
                    raise
                raise NotImplementedError(f"{type(layer).__name__} '{layer.name}': {e}") from None
            outs = outs if isinstance(outs, list) else [outs]
        for kt, name in zip(node.outputs, outs):
            if g.dtype.get(name) != kt.dtype:
                name = g.op("Cast", [name], f"{layer.name}/cast", dtype=kt.dtype, to=_NP_TO_ONNX[kt.dtype])
            values[id(kt)] = name


# ---- activations ---------------------------------------------------------------------------------

_SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))


def _gelu(g, x, h, approximate):
    if approximate:
        x3 = g.op("Mul", [g.op("Mul", [x, x], f"{h}/x2"), x], f"{h}/x3")
        inner = g.op("Add", [x, g.op("Mul", [x3, g.scalar(0.044715, f"{h}/c")], f"{h}/cx3")], f"{h}/inner")
        t = g.op("Tanh", [g.op("Mul", [inner, g.scalar(_SQRT_2_OVER_PI, f"{h}/k")], f"{h}/scaled")], f"{h}/tanh")
    else:
        t = g.op("Erf", [g.op("Div", [x, g.scalar(np.sqrt(2.0), f"{h}/sqrt2")], f"{h}/xs")], f"{h}/erf")
    one = g.op("Add", [t, g.scalar(1.0, f"{h}/one")], f"{h}/1p")
    return g.op("Mul", [g.op("Mul", [x, one], f"{h}/x1p"), g.scalar(0.5, f"{h}/half")], f"{h}/gelu")


def _softmax(g, x, axis, h, ndim):
    if isinstance(axis, int):
        return g.op("Softmax", [x], f"{h}/softmax", axis=int(axis))
    axes = sorted(a % ndim for a in axis)
    m = g.reduce("ReduceMax", x, axes, f"{h}/max", keepdims=True)
    e = g.op("Exp", [g.op("Sub", [x, m], f"{h}/shift")], f"{h}/exp")
    return g.op("Div", [e, g.reduce("ReduceSum", e, axes, f"{h}/sum", keepdims=True)], f"{h}/softmax")


def _clip(g, x, lo, hi, h):
    ins = [x, "" if lo is None else g.scalar(lo, f"{h}/lo"), "" if hi is None else g.scalar(hi, f"{h}/hi")]
    while ins[-1] == "":
        ins.pop()
    return g.op("Clip", ins, f"{h}/clip")


_SIMPLE_ACTIVATIONS = {_act.relu: "Relu", _act.sigmoid: "Sigmoid", _act.tanh: "Tanh", _act.softplus: "Softplus",
                       _act.softsign: "Softsign", _act.exponential: "Exp"}


def _activation_fn(fn):
    """(function, keyword arguments) of a built-in activation, partials unwrapped; None otherwise."""
    kw = {}
    while isinstance(fn, functools.partial) and not fn.args:
        kw = {**fn.keywords, **kw}
        fn = fn.func
    return fn, kw


def _activation_supported(fn):
    f, kw = _activation_fn(fn)
    known = set(_SIMPLE_ACTIVATIONS) | {_act.linear, _act.relu6, _act.softmax, _act.log_softmax, _act.gelu, _ops.gelu,
                                         _act.silu, _act.elu, _act.selu, _act.leaky_relu, _act.hard_sigmoid,
                                         _act.hard_silu, _act.hard_tanh, _act.mish, _act.log_sigmoid,
                                         _act.tanh_shrink, _act.celu}
    return f in known


def _apply_activation(g, fn, x, h, ndim):
    f, kw = _activation_fn(fn)
    a = f"{h}/act"
    if f is _act.linear:
        return x
    if f is _act.relu and kw:
        return _relu_general(g, x, a, kw.get("negative_slope", 0.0), kw.get("max_value"), kw.get("threshold", 0.0))
    if f in _SIMPLE_ACTIVATIONS:
        return g.op(_SIMPLE_ACTIVATIONS[f], [x], a)
    if f is _act.relu6:
        return _clip(g, x, 0.0, 6.0, a)
    if f is _act.softmax:
        return _softmax(g, x, kw.get("axis", -1), a, ndim)
    if f is _act.log_softmax:
        return g.op("LogSoftmax", [x], a, axis=int(kw.get("axis", -1)))
    if f is _act.gelu or f is _ops.gelu:
        return _gelu(g, x, a, kw.get("approximate", f is _ops.gelu))
    if f is _act.silu:
        return g.op("Mul", [x, g.op("Sigmoid", [x], f"{a}/sigmoid")], a)
    if f is _act.elu:
        return g.op("Elu", [x], a, alpha=float(kw.get("alpha", 1.0)))
    if f is _act.celu:
        return g.op("Celu", [x], a, alpha=float(kw.get("alpha", 1.0)))
    if f is _act.selu:
        return g.op("Selu", [x], a, alpha=1.6732632423543772, gamma=1.0507009873554805)
    if f is _act.leaky_relu:
        return g.op("LeakyRelu", [x], a, alpha=float(kw.get("negative_slope", 0.2)))
    if f is _act.hard_sigmoid:
        return g.op("HardSigmoid", [x], a, alpha=1.0 / 6.0, beta=0.5)
    if f is _act.hard_silu:
        return g.op("Mul", [x, g.op("HardSigmoid", [x], f"{a}/hs", alpha=1.0 / 6.0, beta=0.5)], a)
    if f is _act.hard_tanh:
        return _clip(g, x, -1.0, 1.0, a)
    if f is _act.mish:
        return g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x], f"{a}/sp")], f"{a}/t")], a)
    if f is _act.log_sigmoid:
        return g.op("Neg", [g.op("Softplus", [g.op("Neg", [x], f"{a}/neg")], f"{a}/sp")], a)
    if f is _act.tanh_shrink:
        return g.op("Sub", [x, g.op("Tanh", [x], f"{a}/t")], a)
    raise AssertionError(f"unchecked activation {fn!r}")


def _relu_general(g, x, h, negative_slope, max_value, threshold):
    """Keras's relu(x, negative_slope, max_value, threshold), as activations.relu computes it."""
    if negative_slope == 0.0 and threshold == 0.0:
        y = g.op("Relu", [x], f"{h}/relu")
    elif negative_slope == 0.0:
        cond = g.op("Less", [x, g.scalar(threshold, f"{h}/th")], f"{h}/below", dtype="bool")
        y = g.op("Where", [cond, g.scalar(0.0, f"{h}/zero"), x], f"{h}/relu", dtype="float32")
    else:
        cond = g.op("GreaterOrEqual", [x, g.scalar(threshold, f"{h}/th")], f"{h}/above", dtype="bool")
        neg = g.op("Mul", [g.op("Sub", [x, g.scalar(threshold, f"{h}/th2")], f"{h}/xt"),
                           g.scalar(negative_slope, f"{h}/slope")], f"{h}/neg")
        y = g.op("Where", [cond, x, neg], f"{h}/relu", dtype="float32")
    if max_value is not None:
        y = g.op("Min", [y, g.scalar(max_value, f"{h}/max")], f"{h}/cap")
    return y


# ---- converters: (graph, layer, input names, input KerasTensors, output KerasTensors) -> name(s) ---

def _w(layer, var):
    return np.asarray(var.numpy(), np.float32)


def _to_first(g, x, rank, h):
    """channels_last (B, *spatial, C) -> (B, C, *spatial)."""
    return g.op("Transpose", [x], f"{h}/to_nchw", perm=[0, rank + 1] + list(range(1, rank + 1)))


def _to_last(g, x, rank, h):
    return g.op("Transpose", [x], f"{h}/to_nhwc", perm=[0] + list(range(2, rank + 2)) + [1])


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") != "channels_first"


def _spatial(shape, rank, last):
    return list(shape[1:1 + rank]) if last else list(shape[2:2 + rank])


def _pads(padding, spatial, kernel, strides, dilations):
    """ONNX `pads` (begins then ends) for Keras's padding, or None where "same" meets an unknown
    size with a stride above 1 (then auto_pad SAME_UPPER, the same split: the odd pixel at the end;
    ONNX Runtime takes it without dilation only)."""
    r = len(kernel)
    if padding == "valid":
        return [0] * (2 * r)
    if padding == "causal":
        return [(kernel[0] - 1) * dilations[0], 0]
    if any(n is None and s > 1 for n, s in zip(spatial, strides)):
        if any(d > 1 for d in dilations):
            raise NotImplementedError(f"padding='same' with strides {tuple(strides)} and dilation_rate "
                                      f"{tuple(dilations)} on an input of unknown spatial size {tuple(spatial)} cannot "
                                      "be exported (ONNX Runtime has no dilated auto padding); give the Input fixed "
                                      "spatial sizes, e.g. with input_signature")
        return None
    begin, end = [], []
    for n, k, s, d in zip(spatial, kernel, strides, dilations):
        eff = (k - 1) * d + 1
        total = eff - 1 if s == 1 else max((-(-n // s) - 1) * s + eff - n, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin + end


def _conv_attrs(padding, spatial, kernel, strides, dilations, group=1):
    attrs = dict(kernel_shape=list(kernel), strides=list(strides), dilations=list(dilations), group=int(group))
    p = _pads(padding, spatial, kernel, strides, dilations)
    if p is None:
        attrs["auto_pad"] = "SAME_UPPER"
    else:
        attrs["pads"] = p
    return attrs


def _conv(g, layer, ins, in_kts, out_kts):
    """Conv1D/Conv2D (channels_last only in lamina): kernel (*k, in/g, out) -> ONNX (out, in/g, *k)."""
    rank, h, x = layer.rank, layer.name, g.float_input(ins[0], layer.name)
    k = _w(layer, layer.kernel)
    wname = g.const(np.transpose(k, (rank + 1, rank) + tuple(range(rank))), f"{h}/kernel", key=(id(layer), "k"))
    spatial = _spatial(in_kts[0].shape, rank, True)
    attrs = _conv_attrs(layer.padding, spatial, layer.kernel_size, layer.strides, layer.dilation_rate,
                        group=layer.groups)
    y = g.op("Conv", [_to_first(g, x, rank, h), wname], f"{h}/conv", **attrs)
    if layer.bias is not None:
        y = g.op("Add", [y, g.const(_w(layer, layer.bias).reshape((-1,) + (1,) * rank), f"{h}/bias",
                                    key=(id(layer), "b"))], f"{h}/add_bias")
    y = _to_last(g, y, rank, h)
    return _apply_activation(g, layer.activation, y, h, rank + 2)


def _depthwise_weight(k):
    """(*k, C, M) -> ONNX (C*M, 1, *k): output channel c*M + m is filter m of channel c."""
    rank = k.ndim - 2
    kk = k.reshape(k.shape[:rank] + (-1,))
    return np.expand_dims(np.transpose(kk, (rank,) + tuple(range(rank))), 1)


def _depthwise_part(g, layer, x, in_kts, kernel, h):
    rank, last = layer.rank, _channels_last(layer)
    k = _w(layer, kernel)
    channels = k.shape[rank]
    wname = g.const(_depthwise_weight(k), f"{h}/depthwise_kernel", key=(id(layer), "dk"))
    xc = _to_first(g, x, rank, h) if last else x
    spatial = _spatial(in_kts[0].shape, rank, last)
    attrs = _conv_attrs(layer.padding, spatial, layer.kernel_size, layer.strides, layer.dilation_rate, group=channels)
    return g.op("Conv", [xc, wname], f"{h}/depthwise", **attrs)


def _depthwise(g, layer, ins, in_kts, out_kts):
    rank, last, h = layer.rank, _channels_last(layer), layer.name
    y = _depthwise_part(g, layer, g.float_input(ins[0], h), in_kts, layer.kernel, h)
    if layer.bias is not None:
        y = g.op("Add", [y, g.const(_w(layer, layer.bias).reshape((-1,) + (1,) * rank), f"{h}/bias",
                                    key=(id(layer), "b"))], f"{h}/add_bias")
    y = _to_last(g, y, rank, h) if last else y
    return _apply_activation(g, layer.activation, y, h, rank + 2)


def _separable(g, layer, ins, in_kts, out_kts):
    rank, last, h = layer.rank, _channels_last(layer), layer.name
    y = _depthwise_part(g, layer, g.float_input(ins[0], h), in_kts, layer.depthwise_kernel, h)
    pk = _w(layer, layer.pointwise_kernel)            # (*1, C*M, F)
    pw = g.const(np.transpose(pk, (rank + 1, rank) + tuple(range(rank))), f"{h}/pointwise_kernel",
                 key=(id(layer), "pk"))
    ins_pw = [y, pw]
    if layer.bias is not None:
        ins_pw.append(g.const(_w(layer, layer.bias), f"{h}/bias", key=(id(layer), "b")))
    y = g.op("Conv", ins_pw, f"{h}/pointwise", kernel_shape=[1] * rank, strides=[1] * rank)
    y = _to_last(g, y, rank, h) if last else y
    return _apply_activation(g, layer.activation, y, h, rank + 2)


def _conv_transpose(g, layer, ins, in_kts, out_kts):
    """Conv1DTranspose/Conv2DTranspose: Keras's kernel (*k, filters, in) is the kernel of the forward
    convolution (filters -> in) whose input gradient this is, so ONNX's (in, filters, *k) needs no
    flip; pads and output lengths are Keras's (backend/convolution_transpose.transpose_geometry)."""
    from ..backend.convolution_transpose import transpose_geometry
    rank, last, h = layer.rank, _channels_last(layer), layer.name
    spatial = _spatial(in_kts[0].shape, rank, last)
    if any(n is None for n in spatial):
        raise NotImplementedError(f"{type(layer).__name__} '{h}': its input's spatial sizes must be known to export "
                                  f"it (received shape {tuple(in_kts[0].shape)}); give the Input fixed sizes")
    x = g.float_input(ins[0], h)
    k = _w(layer, layer.kernel)
    w = g.const(np.transpose(k, (rank + 1, rank) + tuple(range(rank))), f"{h}/kernel", key=(id(layer), "k"))
    op = layer.output_padding or (None,) * rank
    begin, end, extra = [], [], []
    for i in range(rank):
        kk, s, d = layer.kernel_size[i], layer.strides[i], layer.dilation_rate[i]
        out, before, _ = transpose_geometry(spatial[i], kk, s, d, layer.padding, op[i])
        after = (spatial[i] - 1) * s + (kk - 1) * d + 1 - out - before   # what the full output loses at the end
        begin.append(before)
        end.append(max(after, 0))
        extra.append(max(-after, 0))
    attrs = dict(kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                 dilations=list(layer.dilation_rate), pads=begin + end)
    if any(extra):
        attrs["output_padding"] = extra
    xc = _to_first(g, x, rank, h) if last else x
    conv_in = [xc, w]
    if layer.bias is not None:
        conv_in.append(g.const(_w(layer, layer.bias), f"{h}/bias", key=(id(layer), "b")))
    y = g.op("ConvTranspose", conv_in, f"{h}/conv_transpose", **attrs)
    y = _to_last(g, y, rank, h) if last else y
    return _apply_activation(g, layer.activation, y, h, rank + 2)


def _dense(g, layer, ins, in_kts, out_kts):
    h = layer.name
    x = g.float_input(ins[0], h)
    kernel = layer.merged_kernel() if getattr(layer, "lora_enabled", False) else layer.kernel
    y = g.op("MatMul", [x, g.const(_w(layer, kernel), f"{h}/kernel", key=(id(layer), "k"))], f"{h}/matmul")
    if layer.bias is not None:
        y = g.op("Add", [y, g.const(_w(layer, layer.bias), f"{h}/bias", key=(id(layer), "b"))], f"{h}/add_bias")
    return _apply_activation(g, layer.activation, y, h, len(out_kts[0].shape))


def _pool(g, layer, ins, in_kts, out_kts):
    rank, last, h = layer.rank, _channels_last(layer), layer.name
    x = g.float_input(ins[0], h) if layer.op == "avg" else ins[0]
    xc = _to_first(g, x, rank, h) if last else x
    spatial = _spatial(in_kts[0].shape, rank, last)
    attrs = _conv_attrs(layer.padding, spatial, layer.pool_size, layer.strides, (1,) * rank)
    attrs.pop("dilations")
    attrs.pop("group")
    y = g.op("MaxPool" if layer.op == "max" else "AveragePool", [xc], f"{h}/pool", **attrs)
    return _to_last(g, y, rank, h) if last else y


def _global_pool(g, layer, ins, in_kts, out_kts):
    x = g.float_input(ins[0], layer.name) if layer.op == "avg" else ins[0]
    return g.reduce("ReduceMean" if layer.op == "avg" else "ReduceMax", x, layer._axes(), f"{layer.name}/reduce",
                    keepdims=layer.keepdims)


def _broadcast_param(arr, ndim, axes):
    """A weight over `axes` of an ndim input, shaped to broadcast against it."""
    shape = [1] * ndim
    for a, n in zip(sorted(axes), arr.shape if arr.ndim == len(axes) else (arr.size,)):
        shape[a] = n
    return arr.reshape(shape)


def _batch_norm(g, layer, ins, in_kts, out_kts):
    h, ndim, ax = layer.name, len(in_kts[0].shape), layer._axis
    x = g.float_input(ins[0], h)
    mean = _broadcast_param(_w(layer, layer.moving_mean), ndim, [ax])
    var = _w(layer, layer.moving_variance).astype(np.float64)
    inv = (1.0 / np.sqrt(var + layer.epsilon))
    if layer.gamma is not None:
        inv = inv * _w(layer, layer.gamma).astype(np.float64)
    y = g.op("Sub", [x, g.const(mean, f"{h}/moving_mean", key=(id(layer), "mean"))], f"{h}/center")
    y = g.op("Mul", [y, g.const(_broadcast_param(inv.astype(np.float32), ndim, [ax]), f"{h}/scale",
                                key=(id(layer), "scale"))], f"{h}/scaled")
    if layer.beta is not None:
        y = g.op("Add", [y, g.const(_broadcast_param(_w(layer, layer.beta), ndim, [ax]), f"{h}/beta",
                                    key=(id(layer), "beta"))], f"{h}/shifted")
    return y


def _layer_norm(g, layer, ins, in_kts, out_kts):
    h, ndim, axes = layer.name, len(in_kts[0].shape), list(layer._axes)
    x = g.float_input(ins[0], h)
    eps = g.scalar(layer.epsilon, f"{h}/epsilon")
    if layer.rms_scaling:   # Keras's deprecated variant: x / sqrt(var + eps) * gamma
        mean = g.reduce("ReduceMean", x, axes, f"{h}/mean", keepdims=True)
        d = g.op("Sub", [x, mean], f"{h}/centered")
        var = g.reduce("ReduceMean", g.op("Mul", [d, d], f"{h}/sq"), axes, f"{h}/var", keepdims=True)
        y = g.op("Div", [x, g.op("Sqrt", [g.op("Add", [var, eps], f"{h}/var_eps")], f"{h}/std")], f"{h}/norm")
    else:
        mean = g.reduce("ReduceMean", x, axes, f"{h}/mean", keepdims=True)
        d = g.op("Sub", [x, mean], f"{h}/centered")
        var = g.reduce("ReduceMean", g.op("Mul", [d, d], f"{h}/sq"), axes, f"{h}/var", keepdims=True)
        y = g.op("Div", [d, g.op("Sqrt", [g.op("Add", [var, eps], f"{h}/var_eps")], f"{h}/std")], f"{h}/norm")
    if layer.gamma is not None:
        y = g.op("Mul", [y, g.const(_broadcast_param(_w(layer, layer.gamma), ndim, axes), f"{h}/gamma",
                                    key=(id(layer), "gamma"))], f"{h}/scaled")
    if layer.beta is not None:
        y = g.op("Add", [y, g.const(_broadcast_param(_w(layer, layer.beta), ndim, axes), f"{h}/beta",
                                    key=(id(layer), "beta"))], f"{h}/shifted")
    return y


def _activation_layer(g, layer, ins, in_kts, out_kts):
    x = g.float_input(ins[0], layer.name)
    return _apply_activation(g, layer.activation, x, layer.name, len(in_kts[0].shape))


def _relu_layer(g, layer, ins, in_kts, out_kts):
    x = g.float_input(ins[0], layer.name)
    ms = None if layer.max_value is None else float(layer.max_value)
    return _relu_general(g, x, layer.name, float(layer.negative_slope), ms, float(layer.threshold))


def _leaky_relu_layer(g, layer, ins, in_kts, out_kts):
    return g.op("LeakyRelu", [g.float_input(ins[0], layer.name)], f"{layer.name}/leaky_relu",
                alpha=float(layer.negative_slope))


def _elu_layer(g, layer, ins, in_kts, out_kts):
    return g.op("Elu", [g.float_input(ins[0], layer.name)], f"{layer.name}/elu", alpha=float(layer.alpha))


def _softmax_layer(g, layer, ins, in_kts, out_kts):
    axis = layer.axis if isinstance(layer.axis, int) else tuple(layer.axis)
    return _softmax(g, g.float_input(ins[0], layer.name), axis, layer.name, len(in_kts[0].shape))


def _prelu_layer(g, layer, ins, in_kts, out_kts):
    h = layer.name
    return g.op("PRelu", [g.float_input(ins[0], h), g.const(_w(layer, layer.alpha), f"{h}/alpha",
                                                             key=(id(layer), "alpha"))], f"{h}/prelu")


def _identity(g, layer, ins, in_kts, out_kts):
    return g.op("Identity", [ins[0]], f"{layer.name}/identity")


def _flatten(g, layer, ins, in_kts, out_kts):
    x, ndim = ins[0], len(in_kts[0].shape)
    if not _channels_last(layer) and ndim > 2:
        x = g.op("Transpose", [x], f"{layer.name}/channels_last", perm=[0] + list(range(2, ndim)) + [1])
    return g.op("Flatten", [x], f"{layer.name}/flatten", axis=1)


def _reshape(g, layer, ins, in_kts, out_kts):
    shape = g.ints([0] + list(layer.target_shape), f"{layer.name}/shape")
    return g.op("Reshape", [ins[0], shape], f"{layer.name}/reshape")


def _permute(g, layer, ins, in_kts, out_kts):
    return g.op("Transpose", [ins[0]], f"{layer.name}/permute", perm=[0] + list(layer.dims))


def _repeat_vector(g, layer, ins, in_kts, out_kts):
    h = layer.name
    x = g.op("Unsqueeze", [ins[0], g.ints([1], f"{h}/axis")], f"{h}/unsqueeze")
    return g.op("Expand", [x, g.ints([1, layer.n, 1], f"{h}/shape")], f"{h}/repeat")


def _merge(onnx_op, average=False):
    def convert(g, layer, ins, in_kts, out_kts):
        h = layer.name
        xs = [g.float_input(x, f"{h}/in{i}") if out_kts[0].dtype == "float32" else x for i, x in enumerate(ins)]
        y = xs[0]
        for i, x in enumerate(xs[1:]):   # folded left to right, as lamina and Keras do
            y = g.op(onnx_op, [y, x], f"{h}/{onnx_op.lower()}{i}")
        if average:
            y = g.op("Div", [y, g.scalar(float(len(xs)), f"{h}/n")], f"{h}/average")
        return y
    return convert


def _concatenate(g, layer, ins, in_kts, out_kts):
    return g.op("Concat", ins, f"{layer.name}/concat", axis=int(layer.axis))


def _embedding(g, layer, ins, in_kts, out_kts):
    h = layer.name
    table = _w(layer, layer.embeddings)
    if getattr(layer, "lora_enabled", False):
        a, b = _w(layer, layer.lora_embeddings_a), _w(layer, layer.lora_embeddings_b)
        table = table + (a @ b) * (float(layer.lora_alpha) / layer.lora_rank)
    ids = ins[0]
    if not g.dtype.get(ids, "").startswith(("int", "uint")):
        ids = g.op("Cast", [ids], f"{h}/ids", dtype="int32", to=6)   # as lamina: floats truncated to int32
    return g.op("Gather", [g.const(table, f"{h}/embeddings", key=(id(layer), "e")), ids], f"{h}/gather",
                dtype="float32", axis=0)


def _spatial_axes(layer, rank):
    first = 2 if getattr(layer, "data_format", "channels_last") == "channels_first" else 1
    return list(range(first, first + rank))


def _zero_padding(g, layer, ins, in_kts, out_kts):
    h, ndim = layer.name, len(in_kts[0].shape)
    pairs = layer.padding if type(layer) is L.ZeroPadding2D else layer._pads
    begin, end = [0] * ndim, [0] * ndim
    for (b, e), ax in zip(pairs, _spatial_axes(layer, len(pairs))):
        begin[ax], end[ax] = int(b), int(e)
    zero = g.const(np.zeros((), dtype=in_kts[0].dtype), f"{h}/zero")
    return g.op("Pad", [ins[0], g.ints(begin + end, f"{h}/pads"), zero], f"{h}/pad", mode="constant")


def _cropping(g, layer, ins, in_kts, out_kts):
    h = layer.name
    crops = layer._crops
    axes = _spatial_axes(layer, len(crops))
    starts = [int(b) for b, _ in crops]
    ends = [-int(e) if e else np.iinfo(np.int64).max for _, e in crops]
    return g.op("Slice", [ins[0], g.ints(starts, f"{h}/starts"), g.ints(ends, f"{h}/ends"), g.ints(axes, f"{h}/axes")],
                f"{h}/crop")


def _upsampling(g, layer, ins, in_kts, out_kts):
    h, ndim = layer.name, len(in_kts[0].shape)
    sizes = [layer.size] if isinstance(layer.size, int) else list(layer.size)
    axes = _spatial_axes(layer, len(sizes))
    interp = getattr(layer, "interpolation", "nearest")
    x = ins[0]
    if interp == "nearest":
        # each entry repeated along each axis: Resize "nearest" at integer scales, source index
        # floor(i / f) ("asymmetric" coordinates, "floor" rounding)
        scales = [1.0] * ndim
        for ax, f in zip(axes, sizes):
            scales[ax] = float(f)
        return g.op("Resize", [x, "", g.const(np.asarray(scales, np.float32), f"{h}/scales")], f"{h}/repeat",
                    mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    # bilinear: Resize on a channels-first view, half-pixel centres (keras.ops.image.resize, upsampling)
    x = g.float_input(x, h)
    last = _channels_last(layer)
    xc = _to_first(g, x, 2, h) if last else x
    scales = g.const(np.asarray([1.0, 1.0] + [float(s) for s in sizes], np.float32), f"{h}/scales")
    y = g.op("Resize", [xc, "", scales], f"{h}/resize", mode="linear", coordinate_transformation_mode="half_pixel")
    return _to_last(g, y, 2, h) if last else y


def _rescaling(g, layer, ins, in_kts, out_kts):
    h = layer.name
    x = g.float_input(ins[0], h)
    y = g.op("Mul", [x, g.const(np.asarray(layer._scale, np.float32), f"{h}/scale", key=(id(layer), "s"))], f"{h}/mul")
    return g.op("Add", [y, g.const(np.asarray(layer._offset, np.float32), f"{h}/offset", key=(id(layer), "o"))],
                f"{h}/add")


def _normalization(g, layer, ins, in_kts, out_kts):
    h = layer.name
    x = g.float_input(ins[0], h)
    if layer._fixed is not None:
        mean, var = (np.asarray(a, np.float32) for a in layer._fixed)
    else:
        mean = _w(layer, layer.adapt_mean).reshape(layer._broadcast_shape)
        var = _w(layer, layer.adapt_variance).reshape(layer._broadcast_shape)
    std = np.maximum(np.sqrt(var), np.float32(_epsilon())).astype(np.float32)
    m = g.const(mean, f"{h}/mean", key=(id(layer), "m"))
    s = g.const(std, f"{h}/std", key=(id(layer), "s"))
    if layer.invert:
        return g.op("Add", [m, g.op("Mul", [x, s], f"{h}/scaled")], f"{h}/denormalized")
    return g.op("Div", [g.op("Sub", [x, m], f"{h}/centered"), s], f"{h}/normalized")


# ---- recurrent layers: ONNX's LSTM / GRU / RNN ops ----------------------------------------------

# lamina's activations -> (ONNX RNN activation, alpha, beta): what the recurrent ops take
# (hard_sigmoid as Keras defines it, relu6(x + 3) / 6: alpha 1/6 and beta 0.5, not ONNX's defaults)
_RNN_ACTIVATIONS = {_act.tanh: ("Tanh", None, None), _act.sigmoid: ("Sigmoid", None, None),
                    _act.relu: ("Relu", None, None), _act.hard_sigmoid: ("HardSigmoid", 1.0 / 6.0, 0.5),
                    _act.linear: ("Affine", 1.0, 0.0), _act.softsign: ("Softsign", None, None),
                    _act.softplus: ("Softplus", None, None)}


def _rnn_activations(layer, fns):
    """The ONNX attributes `activations` (+ alpha/beta, consumed in order by the functions that take
    them) for the cell's activation functions."""
    names, alphas, betas = [], [], []
    for what, fn in fns:
        f, kw = _activation_fn(fn)
        entry = _RNN_ACTIVATIONS.get(f) if not kw else None
        if entry is None:
            known = sorted(k.__name__ for k in _RNN_ACTIVATIONS)
            raise NotImplementedError(f"{type(layer).__name__} '{layer.name}': {what}="
                                      f"{getattr(f, '__name__', f)!r}{' with arguments ' + str(kw) if kw else ''} "
                                      f"cannot be exported: ONNX's recurrent ops take the activations {known}")
        names.append(entry[0])
        if entry[1] is not None:
            alphas.append(entry[1])
        if entry[2] is not None:
            betas.append(entry[2])
    attrs = dict(activations=names)
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    return attrs


def _gate_blocks(a, order):
    """The column blocks of `a` (..., G * units) in `order` (Keras's gates -> ONNX's)."""
    parts = np.split(a, len(order), axis=-1)
    return np.concatenate([parts[i] for i in order], axis=-1)


def _reverse_time(g, x, h):
    big = np.iinfo(np.int64).min
    return g.op("Slice", [x, g.ints([-1], f"{h}/rev_start"), g.ints([big], f"{h}/rev_end"), g.ints([1], f"{h}/rev_axis"),
                          g.ints([-1], f"{h}/rev_step")], f"{h}/reverse_time")


def _rnn_outputs(g, layer, ins, h):
    """[output, *last states] of an LSTM / GRU / SimpleRNN on ins[0], as lamina computes them
    (go_backwards: the outputs in processing order, reversed time)."""
    who = f"{type(layer).__name__} '{layer.name}'"
    if len(ins) != 1:
        raise NotImplementedError(f"{who}: initial states passed in the inputs list cannot be exported; lamina "
                                  "exports recurrent layers that start from zero states")
    if layer.stateful:
        raise NotImplementedError(f"{who} is stateful (it carries states between batches), which an ONNX graph "
                                  "cannot do; export a copy built with stateful=False")
    cell = layer.cell
    x = g.float_input(ins[0], h)
    if layer.go_backwards:   # run forwards on the reversed sequence: outputs in processing order, as lamina
        x = _reverse_time(g, x, h)
    xt = g.op("Transpose", [x], f"{h}/time_major", perm=[1, 0, 2])
    k, r = _w(cell, cell.kernel), _w(cell, cell.recurrent_kernel)
    b = _w(cell, cell.bias) if cell.bias is not None else None
    key = id(cell)
    if isinstance(layer, L.LSTM):      # Keras's gates i, f, c, o -> ONNX's i, o, f, c
        op, n, order = "LSTM", 3, [0, 3, 1, 2]
        fns = [("recurrent_activation", cell.recurrent_activation), ("activation", cell.activation),
               ("activation", cell.activation)]
        attrs = {}
        bias = None if b is None else np.concatenate([_gate_blocks(b, order), np.zeros_like(b)])
    elif isinstance(layer, L.GRU):     # gates z, r, h in both; reset_after is linear_before_reset
        op, n, order = "GRU", 2, [0, 1, 2]
        fns = [("recurrent_activation", cell.recurrent_activation), ("activation", cell.activation)]
        attrs = dict(linear_before_reset=int(cell.reset_after))
        if b is None:
            bias = None
        elif cell.reset_after:
            bias = np.concatenate([b[0], b[1]])
        else:
            bias = np.concatenate([b, np.zeros_like(b)])
    else:
        op, n, order = "RNN", 2, [0]
        fns = [("activation", cell.activation)]
        attrs = {}
        bias = None if b is None else np.concatenate([b, np.zeros_like(b)])
    attrs.update(_rnn_activations(layer, fns))
    w_in = [xt, g.const(_gate_blocks(k, order).T[None], f"{h}/W", key=(key, "W")),
            g.const(_gate_blocks(r, order).T[None], f"{h}/R", key=(key, "R"))]
    if bias is not None:
        w_in.append(g.const(bias[None], f"{h}/B", key=(key, "B")))
    outs = g.multi(op, w_in, f"{h}/{op.lower()}", n, hidden_size=int(cell.units), direction="forward", **attrs)
    states = [g.op("Squeeze", [s, g.ints([0], f"{h}/dir_axis")], f"{h}/state{i}") for i, s in enumerate(outs[1:])]
    if layer.return_sequences:
        y = g.op("Squeeze", [outs[0], g.ints([1], f"{h}/dir_axis1")], f"{h}/seq")
        y = g.op("Transpose", [y], f"{h}/batch_major", perm=[1, 0, 2])
    else:
        y = states[0]
    return [y] + states


def _recurrent(g, layer, ins, in_kts, out_kts):
    outs = _rnn_outputs(g, layer, ins, layer.name)
    return outs if layer.return_state else outs[0]


def _bidirectional(g, layer, ins, in_kts, out_kts):
    h = layer.name
    fw, bw = layer.forward_layer, layer.backward_layer
    f = _rnn_outputs(g, fw, ins, f"{h}/{fw.name}")
    b = _rnn_outputs(g, bw, ins, f"{h}/{bw.name}")
    fo, bo = f[0], b[0]
    if layer.return_sequences:
        bo = _reverse_time(g, bo, f"{h}/backward")
    mode = layer.merge_mode
    if mode == "concat":
        out = [g.op("Concat", [fo, bo], f"{h}/concat", axis=-1)]
    elif mode == "sum":
        out = [g.op("Add", [fo, bo], f"{h}/sum")]
    elif mode == "mul":
        out = [g.op("Mul", [fo, bo], f"{h}/mul")]
    elif mode == "ave":
        out = [g.op("Mul", [g.op("Add", [fo, bo], f"{h}/sum"), g.scalar(0.5, f"{h}/half")], f"{h}/ave")]
    else:
        out = [fo, bo]
    if layer.return_state:
        return out + f[1:] + b[1:]
    return out if mode is None else out[0]


# ---- attention and the other normalizations ------------------------------------------------------

def _mha_call(layer, node):
    """(input KerasTensors [query, value, key], converter keywords) of a MultiHeadAttention call,
    or NotImplementedError naming what cannot be exported."""
    args, kwargs = node.call_args
    who = f"MultiHeadAttention '{layer.name}'"
    names = ("query", "value", "key")
    bound = dict(zip(names, args))
    for k in names:
        if k in kwargs:
            bound[k] = kwargs[k]
    extra = sorted(k for k, v in kwargs.items()
                   if k not in names + ("training", "use_causal_mask") and v is not None
                   and not (k == "return_attention_scores" and v is False))
    if len(args) > 3 or extra:
        raise NotImplementedError(f"{who} was called with {extra or 'extra positional arguments'}; lamina exports "
                                  "it called on query, value (and key), with use_causal_mask=True/False: explicit "
                                  "masks and return_attention_scores are not exported")
    q, v = bound.get("query"), bound.get("value")
    k = bound.get("key") if bound.get("key") is not None else v
    if not all(isinstance(t, KerasTensor) for t in (q, v, k)):
        raise NotImplementedError(f"{who}: query, value and key must be tensors of the graph to export it")
    return [q, v, k], {"causal": bool(kwargs.get("use_causal_mask", False))}


def _mha(g, layer, ins, in_kts, out_kts, causal=False):
    """MultiHeadAttention on (batch, positions, features) inputs: the EinsumDense projections as
    MatMuls, softmax(q k^T / sqrt(key_dim)) per head (a lower-triangular mask with use_causal_mask)."""
    h, who = layer.name, f"MultiHeadAttention '{layer.name}'"
    if len(in_kts[0].shape) != 3 or tuple(layer._attention_axes) != (1,) or layer._use_gate or \
            layer._sliding_window is not None or type(layer) is not L.MultiHeadAttention:
        raise NotImplementedError(f"{who}: lamina exports attention over one axis of (batch, positions, features) "
                                  "inputs without use_gate or sliding_window; received query shape "
                                  f"{tuple(in_kts[0].shape)}, attention_axes={layer._attention_axes}")
    N = layer._num_heads

    def project(dense, x, name, depth):
        kern = _w(dense, dense.kernel)
        y = g.op("MatMul", [g.float_input(x, f"{h}/{name}"), g.const(kern.reshape(kern.shape[0], -1),
                                                                       f"{h}/{name}/kernel",
                                                                       key=(id(dense), "k"))], f"{h}/{name}/matmul")
        if dense.bias is not None:
            y = g.op("Add", [y, g.const(_w(dense, dense.bias).reshape(-1), f"{h}/{name}/bias", key=(id(dense), "b"))],
                     f"{h}/{name}/add_bias")
        y = g.op("Reshape", [y, g.ints([0, 0, N, depth], f"{h}/{name}/heads")], f"{h}/{name}/split_heads")
        return g.op("Transpose", [y], f"{h}/{name}/head_major", perm=[0, 2, 1, 3])   # (B, N, len, depth)

    q = project(layer._query_dense, ins[0], "query", layer._key_dim)
    v = project(layer._value_dense, ins[1], "value", layer._value_dim)
    k = project(layer._key_dense, ins[2], "key", layer._key_dim)
    q = g.op("Mul", [q, g.scalar(layer._inverse_sqrt_key_dim, f"{h}/scale")], f"{h}/scaled_query")
    kt = g.op("Transpose", [k], f"{h}/key_t", perm=[0, 1, 3, 2])
    scores = g.op("MatMul", [q, kt], f"{h}/scores")                                     # (B, N, T, S)
    if causal:
        ones = g.op("ConstantOfShape", [g.op("Shape", [scores], f"{h}/scores_shape", dtype="int64")], f"{h}/ones",
                    value=_tensor_proto(np.ones((1,), np.float32)))
        keep = g.op("Cast", [g.op("Trilu", [ones], f"{h}/causal", upper=0)], f"{h}/causal_mask", dtype="bool", to=9)
        scores = g.op("Where", [keep, scores, g.scalar(-1e9, f"{h}/masked")], f"{h}/masked_scores", dtype="float32")
    probs = g.op("Softmax", [scores], f"{h}/softmax", axis=-1)
    out = g.op("MatMul", [probs, v], f"{h}/attend")                                     # (B, N, T, vd)
    out = g.op("Transpose", [out], f"{h}/position_major", perm=[0, 2, 1, 3])
    out = g.op("Reshape", [out, g.ints([0, 0, N * layer._value_dim], f"{h}/merge_shape")], f"{h}/merge_heads")
    od = layer._output_dense
    kern = _w(od, od.kernel)
    out_dims = kern.shape[2:]
    y = g.op("MatMul", [out, g.const(kern.reshape(N * layer._value_dim, -1), f"{h}/output/kernel",
                                     key=(id(od), "k"))], f"{h}/output/matmul")
    if od.bias is not None:
        y = g.op("Add", [y, g.const(_w(od, od.bias).reshape(-1), f"{h}/output/bias", key=(id(od), "b"))],
                 f"{h}/output/add_bias")
    if len(out_dims) > 1:
        y = g.op("Reshape", [y, g.ints([0, 0] + list(out_dims), f"{h}/output/shape")], f"{h}/output/reshape")
    return y


def _tensor_proto(arr):
    from onnx import numpy_helper
    return numpy_helper.from_array(arr)


def _unit_norm(g, layer, ins, in_kts, out_kts):
    """x * min(rsqrt(sum(x^2)), 1e12), as lamina."""
    h = layer.name
    x = g.float_input(ins[0], h)
    ss = g.reduce("ReduceSum", g.op("Mul", [x, x], f"{h}/sq"), list(layer._axes), f"{h}/sum_sq", keepdims=True)
    inv = g.op("Reciprocal", [g.op("Sqrt", [ss], f"{h}/norm")], f"{h}/inv")
    return g.op("Mul", [x, g.op("Min", [inv, g.scalar(1e12, f"{h}/cap")], f"{h}/inv_capped")], f"{h}/normalized")


def _rms_norm(g, layer, ins, in_kts, out_kts):
    h, ndim = layer.name, len(in_kts[0].shape)
    x = g.float_input(ins[0], h)
    ms = g.reduce("ReduceMean", g.op("Mul", [x, x], f"{h}/sq"), list(layer._axes), f"{h}/mean_sq", keepdims=True)
    rrms = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [ms, g.scalar(layer.epsilon, f"{h}/epsilon")], f"{h}/ms_eps")],
                                    f"{h}/rms")], f"{h}/rrms")
    y = g.op("Mul", [x, rrms], f"{h}/normalized")
    scale = _broadcast_param(_w(layer, layer.scale), ndim, list(layer._axes))
    return g.op("Mul", [y, g.const(scale, f"{h}/scale", key=(id(layer), "scale"))], f"{h}/scaled")


def _group_norm(g, layer, ins, in_kts, out_kts):
    """Channels in `groups` groups on their axis: each group's mean and variance over it and every
    other non-batch axis (a Reshape to (..., groups, per, ...) and back)."""
    h, a, G = layer.name, layer._axis, layer.groups
    shape = in_kts[0].shape
    nd = len(shape)
    per = shape[a] // G
    x = g.float_input(ins[0], h)
    full = g.op("Shape", [x], f"{h}/shape", dtype="int64")
    parts = [g.op("Shape", [x], f"{h}/shape_before", dtype="int64", end=a), g.ints([G, per], f"{h}/groups"),
             g.op("Shape", [x], f"{h}/shape_after", dtype="int64", start=a + 1)]
    xg = g.op("Reshape", [x, g.op("Concat", parts, f"{h}/grouped_shape", axis=0)], f"{h}/grouped")
    axes = [i for i in range(1, nd + 1) if i != a]
    mean = g.reduce("ReduceMean", xg, axes, f"{h}/mean", keepdims=True)
    d = g.op("Sub", [xg, mean], f"{h}/centered")
    var = g.reduce("ReduceMean", g.op("Mul", [d, d], f"{h}/sq"), axes, f"{h}/var", keepdims=True)
    y = g.op("Div", [d, g.op("Sqrt", [g.op("Add", [var, g.scalar(layer.epsilon, f"{h}/epsilon")], f"{h}/var_eps")],
                             f"{h}/std")], f"{h}/norm")
    bshape = (1,) * a + (G, per) + (1,) * (nd - a - 1)
    if layer.gamma is not None:
        y = g.op("Mul", [y, g.const(_w(layer, layer.gamma).reshape(bshape), f"{h}/gamma", key=(id(layer), "gamma"))],
                 f"{h}/scaled")
    if layer.beta is not None:
        y = g.op("Add", [y, g.const(_w(layer, layer.beta).reshape(bshape), f"{h}/beta", key=(id(layer), "beta"))],
                 f"{h}/shifted")
    return g.op("Reshape", [y, full], f"{h}/ungrouped")


# ---- op nodes: keras.ops calls and Python operators on symbolic tensors --------------------------

class _Ref:
    """A graph tensor among an op node's arguments: its ONNX name and its KerasTensor."""
    __slots__ = ("name", "kt")

    def __init__(self, name, kt):
        self.name, self.kt = name, kt


def _onnx_dtype(dtype):
    """The dtype the ONNX graph computes an op in: bfloat16 as float32 (as the layers)."""
    return "float32" if dtype == "bfloat16" else dtype


def _constant_array(v, who, what):
    if isinstance(v, (str, bytes)) or v is None:
        raise NotImplementedError(f"{who}: {what} is {v!r}; lamina exports op nodes whose other arguments are "
                                  "numbers or numpy arrays")
    a = np.asarray(v)
    if a.dtype.kind not in "biuf":
        raise NotImplementedError(f"{who}: {what} is a {a.dtype} value {v!r}; lamina exports op nodes whose "
                                  "constant arguments are bool, integer or float numbers or numpy arrays")
    return a


def _operand(g, v, dt, h, who, what):
    """`v` (a _Ref or a constant) as an ONNX tensor of dtype `dt`: a Cast, or an initializer."""
    if isinstance(v, _Ref):
        if g.dtype.get(v.name) == dt:
            return v.name
        return g.op("Cast", [v.name], f"{h}/{what}_cast", dtype=dt, to=_NP_TO_ONNX[dt])
    return g.const(_constant_array(v, who, what).astype(dt), f"{h}/{what}")


def _common_dtype(a, b, who):
    """The dtype lamina computes a binary op of `a` and `b` in (backend/math.py's _operands): two
    tensors share one (two float dtypes: float32); a constant takes the tensor's dtype (weak
    typing), except a float with an int/bool tensor (float32) and an int with a bool tensor."""
    if isinstance(a, _Ref) and isinstance(b, _Ref):
        da, db = a.kt.dtype, b.kt.dtype
        if da == db:
            return _onnx_dtype(da)
        return "float32"   # float dtypes that differ (others are refused when the graph is built)
    t, c = (a, b) if isinstance(a, _Ref) else (b, a)
    arr = _constant_array(c, who, "the constant operand")
    dt = t.kt.dtype
    if arr.dtype.kind == "f" and dt not in ("float16", "bfloat16", "float32", "float64"):
        return "float32"
    if arr.dtype.kind in "iu" and dt == "bool":
        return "int64" if not isinstance(c, np.ndarray) else str(arr.dtype)
    return _onnx_dtype(dt)


def _arith_dtype(out, who):
    dt = _onnx_dtype(out.dtype)
    if dt == "bool":
        raise NotImplementedError(f"{who}: arithmetic on bool tensors (a bool result) is not exported; cast the "
                                  "operands first, e.g. ops.cast(x, 'int32')")
    return dt


def _op_binary(onnx_op):
    def convert(g, h, a, out, who):
        dt = _arith_dtype(out, who)
        return g.op(onnx_op, [_operand(g, a["x1"], dt, h, who, "x1"), _operand(g, a["x2"], dt, h, who, "x2")],
                    h, dtype=dt)
    return convert


def _op_compare(onnx_op):
    def convert(g, h, a, out, who):
        dt = _common_dtype(a["x1"], a["x2"], who)
        x, y = _operand(g, a["x1"], dt, h, who, "x1"), _operand(g, a["x2"], dt, h, who, "x2")
        if onnx_op == "NotEqual":
            return g.op("Not", [g.op("Equal", [x, y], f"{h}/equal", dtype="bool")], h, dtype="bool")
        return g.op(onnx_op, [x, y], h, dtype="bool")
    return convert


def _op_logical(onnx_op):
    def convert(g, h, a, out, who):
        if onnx_op == "Not":
            return g.op("Not", [_operand(g, a["x"], "bool", h, who, "x")], h, dtype="bool")
        return g.op(onnx_op, [_operand(g, a["x1"], "bool", h, who, "x1"), _operand(g, a["x2"], "bool", h, who, "x2")],
                    h, dtype="bool")
    return convert


def _op_unary(onnx_op, floating=False):
    def convert(g, h, a, out, who):
        dt = _arith_dtype(out, who)
        if floating and dt not in ("float16", "float32", "float64"):
            dt = "float32"
        x = _operand(g, a["x"], dt, h, who, "x")
        if onnx_op == "Square":
            return g.op("Mul", [x, x], h, dtype=dt)
        if onnx_op == "Relu" and dt not in ("float16", "float32", "float64"):
            return g.op("Max", [x, g.const(np.zeros((), dt), f"{h}/zero")], h, dtype=dt)
        return g.op(onnx_op, [x], h, dtype=dt)
    return convert


def _op_round(g, h, a, out, who):
    if a["decimals"] != 0:
        raise NotImplementedError(f"{who}: round with decimals={a['decimals']!r} is not exported (lamina exports "
                                  "decimals=0, ONNX's Round: halves to even as numpy); scale, round and divide "
                                  "with ops instead")
    dt = _arith_dtype(out, who)
    x = _operand(g, a["x"], dt, h, who, "x")
    return g.op("Round" if dt in ("float16", "float32", "float64") else "Identity", [x], h, dtype=dt)


def _divisor_guard(g, y, dt, h):
    """(safe divisor, is-zero mask) for integer division: lamina's integer x // 0 and x % 0 are 0."""
    zero = g.op("Equal", [y, g.const(np.zeros((), dt), f"{h}/zero")], f"{h}/divisor_is_zero", dtype="bool")
    return g.op("Where", [zero, g.const(np.ones((), dt), f"{h}/one"), y], f"{h}/safe_divisor", dtype=dt), zero


def _op_floor_mod(floor):
    """numpy's floor_divide / mod (npy_divmod, as lamina's kernels): integers with Mod(fmod=0)
    (the divisor's sign) and an exact Div; floats from fmod with the same corrections as numpy."""
    def convert(g, h, a, out, who):
        dt = _arith_dtype(out, who)
        x, y = _operand(g, a["x1"], dt, h, who, "x1"), _operand(g, a["x2"], dt, h, who, "x2")
        if dt not in ("float16", "float32", "float64"):
            ys, zero = _divisor_guard(g, y, dt, h)
            r = g.op("Mod", [x, ys], f"{h}/mod", dtype=dt, fmod=0)
            res = g.op("Div", [g.op("Sub", [x, r], f"{h}/x_minus_mod", dtype=dt), ys], f"{h}/quotient",
                       dtype=dt) if floor else r
            return g.op("Where", [zero, g.const(np.zeros((), dt), f"{h}/zero_out"), res], h, dtype=dt)
        zf = g.const(np.zeros((), dt), f"{h}/zero")
        m = g.op("Mod", [x, y], f"{h}/fmod", dtype=dt, fmod=1)
        wrong_sign = g.op("Xor", [g.op("Less", [y, zf], f"{h}/divisor_neg", dtype="bool"),
                                  g.op("Less", [m, zf], f"{h}/fmod_neg", dtype="bool")], f"{h}/signs_differ",
                          dtype="bool")
        adjust = g.op("And", [g.op("Not", [g.op("Equal", [m, zf], f"{h}/fmod_zero", dtype="bool")],
                                   f"{h}/fmod_nonzero", dtype="bool"), wrong_sign], f"{h}/adjust", dtype="bool")
        if not floor:
            return g.op("Where", [adjust, g.op("Add", [m, y], f"{h}/fmod_plus_divisor", dtype=dt), m], h, dtype=dt)
        one = g.const(np.ones((), dt), f"{h}/one")
        div = g.op("Div", [g.op("Sub", [x, m], f"{h}/x_minus_fmod", dtype=dt), y], f"{h}/div", dtype=dt)
        div = g.op("Where", [adjust, g.op("Sub", [div, one], f"{h}/div_minus_1", dtype=dt), div], f"{h}/div_adj",
                   dtype=dt)
        fl = g.op("Floor", [div], f"{h}/floor", dtype=dt)
        up = g.op("Greater", [g.op("Sub", [div, fl], f"{h}/frac", dtype=dt), g.const(np.asarray(0.5, dt), f"{h}/half")],
                  f"{h}/round_up", dtype="bool")
        fl = g.op("Add", [fl, g.op("Cast", [up], f"{h}/round_up_f", dtype=dt, to=_NP_TO_ONNX[dt])], f"{h}/rounded",
                  dtype=dt)
        by_zero = g.op("Equal", [y, zf], f"{h}/divisor_is_zero", dtype="bool")   # x / 0: inf or nan, as lamina
        return g.op("Where", [by_zero, g.op("Div", [x, y], f"{h}/true_div", dtype=dt), fl], h, dtype=dt)
    return convert


def _tensor_arg(v, who, what):
    if not isinstance(v, _Ref):
        raise NotImplementedError(f"{who}: {what} must be a tensor of the graph, received the constant {v!r}")
    return v


def _axes_arg(axis, ndim, who, default_all=True):
    if axis is None:
        return list(range(ndim)) if default_all else None
    items = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    out = []
    for a in items:
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
            raise NotImplementedError(f"{who}: axis must be None, an int or a tuple of ints in [-{ndim}, {ndim}) for "
                                      f"a rank-{ndim} input, received axis={axis!r}")
        out.append(int(a) % ndim)
    return sorted(set(out))


def _op_reduce(onnx_op):
    def convert(g, h, a, out, who):
        if a.get("initial") is not None:
            raise NotImplementedError(f"{who}: initial={a['initial']!r} is not exported; apply ops.maximum / "
                                      "ops.minimum with the initial value after the reduction")
        x = _tensor_arg(a["x"], who, "x")
        dt = _onnx_dtype(out.dtype)
        if dt == "bool":
            dt = "int32"    # ONNX's reductions take numbers (the result is cast back to bool)
        elif onnx_op == "ReduceMean" and dt not in ("float16", "float32", "float64"):
            dt = "float32"
        axes = _axes_arg(a["axis"], len(x.kt.shape), who)
        xs = _operand(g, x, dt, h, who, "x")
        if not axes:   # axis=(): nothing reduced
            return g.op("Identity", [xs], h, dtype=dt)
        return g.reduce(onnx_op, xs, axes, h, keepdims=bool(a["keepdims"]))
    return convert


def _op_matmul(g, h, a, out, who):
    dt = _arith_dtype(out, who)
    return g.op("MatMul", [_operand(g, a["x1"], dt, h, who, "x1"), _operand(g, a["x2"], dt, h, who, "x2")], h,
                dtype=dt)


def _op_reshape(g, h, a, out, who):
    x = _tensor_arg(a["x"], who, "x")
    shape = a["newshape"]
    shape = list(shape) if isinstance(shape, (list, tuple)) else [shape]
    if any(isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < -1 for d in shape) or \
            sum(d == -1 for d in shape) > 1:
        raise NotImplementedError(f"{who}: newshape must be ints (at most one -1), received {a['newshape']!r}")
    extra = {"allowzero": 1} if 0 in shape else {}
    return g.op("Reshape", [x.name, g.ints([int(d) for d in shape], f"{h}/shape")], h, **extra)


def _op_transpose(g, h, a, out, who):
    x = _tensor_arg(a["x"], who, "x")
    nd = len(x.kt.shape)
    perm = list(range(nd))[::-1] if a["axes"] is None else [int(p) % nd for p in a["axes"]]
    return g.op("Transpose", [x.name], h, perm=perm)


def _op_expand_dims(g, h, a, out, who):
    x = _tensor_arg(a["x"], who, "x")
    axes = a["axis"] if isinstance(a["axis"], (list, tuple)) else [a["axis"]]
    return g.op("Unsqueeze", [x.name, g.ints([int(v) for v in axes], f"{h}/axes")], h)


def _op_squeeze(g, h, a, out, who):
    x = _tensor_arg(a["x"], who, "x")
    shape = x.kt.shape
    if a["axis"] is None:   # the axes of size 1 in the graph (lamina's symbolic shape)
        axes = [i for i, d in enumerate(shape) if d == 1]
    else:
        axes = _axes_arg(a["axis"], len(shape), who)
    if not axes:
        return g.op("Identity", [x.name], h)
    return g.op("Squeeze", [x.name, g.ints(axes, f"{h}/axes")], h)


def _op_concatenate(g, h, a, out, who):
    xs = a["xs"]
    if not isinstance(xs, (list, tuple)) or not all(isinstance(t, _Ref) for t in xs):
        raise NotImplementedError(f"{who}: lamina exports concatenate of a list of graph tensors; a constant in the "
                                  "list is not exported (its batch size is fixed): broadcast it with an op of the "
                                  "graph first")
    dt = _onnx_dtype(out.dtype)
    return g.op("Concat", [_operand(g, t, dt, h, who, f"xs_{i}") for i, t in enumerate(xs)], h, dtype=dt,
                axis=int(a["axis"]))


_INT64_MAX, _INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


def _op_get_item(g, h, a, out, who):
    """x[key] with ints, slices (any step), Ellipsis and None: one Slice, a Squeeze of the indexed
    axes and an Unsqueeze of the new ones."""
    x = _tensor_arg(a["x"], who, "x")
    nd = len(x.kt.shape)
    key = a["key"] if isinstance(a["key"], tuple) else (a["key"],)

    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    for k in key:
        ok = k is None or k is Ellipsis or is_int(k) or (
            isinstance(k, slice) and all(v is None or is_int(v) for v in (k.start, k.stop, k.step)))
        if not ok:
            raise NotImplementedError(f"{who}: the index {k!r} is not exported; lamina exports x[...] with ints, "
                                      "slices, Ellipsis and None (use ops.take for integer-array indices)")
    used = sum(1 for k in key if k is not None and k is not Ellipsis)
    if any(k is Ellipsis for k in key):
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (nd - used) + key[i + 1:]
    else:
        key = key + (slice(None),) * (nd - used)
    starts, ends, axes, steps, squeeze, new = [], [], [], [], [], []
    d = o = 0
    for k in key:
        if k is None:
            new.append(o)
            o += 1
            continue
        if is_int(k):
            k = int(k)
            starts.append(k), ends.append(k + 1 if k != -1 else _INT64_MAX), steps.append(1), axes.append(d)
            squeeze.append(d)
        else:
            step = 1 if k.step is None else int(k.step)
            if k != slice(None):
                start = k.start if k.start is not None else (0 if step > 0 else _INT64_MAX)
                stop = k.stop if k.stop is not None else (_INT64_MAX if step > 0 else _INT64_MIN)
                starts.append(int(start)), ends.append(int(stop)), steps.append(step), axes.append(d)
            o += 1
        d += 1
    y = x.name
    if axes:
        y = g.op("Slice", [y, g.ints(starts, f"{h}/starts"), g.ints(ends, f"{h}/ends"), g.ints(axes, f"{h}/axes"),
                           g.ints(steps, f"{h}/steps")], f"{h}/slice")
    if squeeze:
        y = g.op("Squeeze", [y, g.ints(squeeze, f"{h}/squeeze_axes")], f"{h}/squeeze")
    if new:
        y = g.op("Unsqueeze", [y, g.ints(new, f"{h}/new_axes")], f"{h}/unsqueeze")
    return y if y != x.name else g.op("Identity", [y], h)


def _op_softmax(g, h, a, out, who):
    x = _tensor_arg(a["x"], who, "x")
    nd = len(x.kt.shape)
    axis = a["axis"]
    axis = int(axis) if isinstance(axis, (int, np.integer)) else tuple(_axes_arg(axis, nd, who))
    return _softmax(g, _operand(g, x, _arith_dtype(out, who), h, who, "x"), axis, h, nd)


def _op_cast(g, h, a, out, who):
    x = _tensor_arg(a["x"], who, "x")
    dt = _onnx_dtype(out.dtype)
    if dt not in _NP_TO_ONNX:
        raise NotImplementedError(f"{who}: cast to {out.dtype!r} is not exported; ONNX tensors of lamina's graphs "
                                  f"have the dtypes {sorted(_NP_TO_ONNX)}")
    return g.op("Cast", [x.name], h, dtype=dt, to=_NP_TO_ONNX[dt])


_OP_CONVERTERS = {
    "add": _op_binary("Add"), "subtract": _op_binary("Sub"), "multiply": _op_binary("Mul"),
    "divide": _op_binary("Div"), "power": _op_binary("Pow"), "maximum": _op_binary("Max"),
    "minimum": _op_binary("Min"), "floor_divide": _op_floor_mod(True), "mod": _op_floor_mod(False),
    "matmul": _op_matmul,
    "negative": _op_unary("Neg"), "abs": _op_unary("Abs"), "square": _op_unary("Square"),
    "exp": _op_unary("Exp", True), "log": _op_unary("Log", True), "sqrt": _op_unary("Sqrt", True),
    "relu": _op_unary("Relu"), "sigmoid": _op_unary("Sigmoid", True), "tanh": _op_unary("Tanh", True),
    "softmax": _op_softmax, "round": _op_round, "cast": _op_cast,
    "less": _op_compare("Less"), "less_equal": _op_compare("LessOrEqual"), "greater": _op_compare("Greater"),
    "greater_equal": _op_compare("GreaterOrEqual"), "equal": _op_compare("Equal"),
    "not_equal": _op_compare("NotEqual"),
    "logical_and": _op_logical("And"), "logical_or": _op_logical("Or"), "logical_xor": _op_logical("Xor"),
    "logical_not": _op_logical("Not"),
    "mean": _op_reduce("ReduceMean"), "sum": _op_reduce("ReduceSum"), "max": _op_reduce("ReduceMax"),
    "min": _op_reduce("ReduceMin"),
    "reshape": _op_reshape, "transpose": _op_transpose, "expand_dims": _op_expand_dims, "squeeze": _op_squeeze,
    "concatenate": _op_concatenate, "get_item": _op_get_item,
}
# the names lamina's ops go by (ops.true_divide is divide, ops.absolute is abs, ops.nn.* are ops.*)
_OP_ALIASES = {"true_divide": "divide", "absolute": "abs"}


def supported_ops():
    """The `lamina.ops` functions (and Python operators on symbolic tensors) whose op nodes
    `export(format="onnx")` converts."""
    return sorted(set(_OP_CONVERTERS) | set(_OP_ALIASES))


def _op_name(layer):
    name = getattr(layer.function, "__name__", repr(layer.function))
    return _OP_ALIASES.get(name, name)


def _symbolic_op(g, layer, ins, in_kts, out_kts):
    """An op node: its call (KerasTensors replaced, in order, by the graph's tensors) bound to
    the op's parameters, converted by _OP_CONVERTERS."""
    import inspect
    name = _op_name(layer)
    who = f"op {name}"
    if layer._template is None or len(out_kts) != 1:
        raise NotImplementedError(f"{who}: the node has no recorded call with one output; lamina exports op nodes "
                                  "recorded by calling an op on KerasTensors")
    refs = iter([_Ref(n, kt) for n, kt in zip(ins, in_kts)])
    args, kwargs = map_structure(lambda v: next(refs) if isinstance(v, KerasTensor) else v, layer._template)
    try:
        bound = inspect.signature(layer.function).bind(*args, **kwargs)
    except TypeError as e:
        raise NotImplementedError(f"{who}: its recorded arguments do not match the op's parameters ({e})") from None
    bound.apply_defaults()
    # tensors named "<node>/<op>...": the node's own name is left to a graph output it may become
    return _OP_CONVERTERS[name](g, f"{layer.name}/{name}", dict(bound.arguments), out_kts[0], who)


_CONVERTERS = {
    L.Dense: _dense, L.Conv1D: _conv, L.Conv2D: _conv,
    L.DepthwiseConv1D: _depthwise, L.DepthwiseConv2D: _depthwise,
    L.SeparableConv1D: _separable, L.SeparableConv2D: _separable,
    L.Conv1DTranspose: _conv_transpose, L.Conv2DTranspose: _conv_transpose,
    L.MaxPooling1D: _pool, L.MaxPooling2D: _pool, L.AveragePooling1D: _pool, L.AveragePooling2D: _pool,
    L.GlobalAveragePooling1D: _global_pool, L.GlobalAveragePooling2D: _global_pool,
    L.GlobalMaxPooling1D: _global_pool, L.GlobalMaxPooling2D: _global_pool,
    L.BatchNormalization: _batch_norm, L.LayerNormalization: _layer_norm,
    L.Activation: _activation_layer, L.ReLU: _relu_layer, L.LeakyReLU: _leaky_relu_layer, L.ELU: _elu_layer,
    L.Softmax: _softmax_layer, L.PReLU: _prelu_layer,
    L.Dropout: _identity, L.SpatialDropout1D: _identity, L.SpatialDropout2D: _identity,
    L.SpatialDropout3D: _identity, L.GaussianNoise: _identity, L.GaussianDropout: _identity,
    L.AlphaDropout: _identity, L.ActivityRegularization: _identity, L.Identity: _identity,
    L.Flatten: _flatten, L.Reshape: _reshape, L.Permute: _permute, L.RepeatVector: _repeat_vector,
    L.Add: _merge("Add"), L.Subtract: _merge("Sub"), L.Multiply: _merge("Mul"), L.Maximum: _merge("Max"),
    L.Minimum: _merge("Min"), L.Average: _merge("Add", average=True), L.Concatenate: _concatenate,
    L.Embedding: _embedding,
    L.ZeroPadding1D: _zero_padding, L.ZeroPadding2D: _zero_padding, L.ZeroPadding3D: _zero_padding,
    L.Cropping1D: _cropping, L.Cropping2D: _cropping, L.Cropping3D: _cropping,
    L.UpSampling1D: _upsampling, L.UpSampling2D: _upsampling, L.UpSampling3D: _upsampling,
    L.Rescaling: _rescaling, L.Normalization: _normalization,
    L.LSTM: _recurrent, L.GRU: _recurrent, L.SimpleRNN: _recurrent, L.Bidirectional: _bidirectional,
    L.MultiHeadAttention: _mha, L.UnitNormalization: _unit_norm, L.RMSNormalization: _rms_norm,
    L.GroupNormalization: _group_norm, SymbolicOp: _symbolic_op,
}

# layers called with several arguments: node -> (input KerasTensors in order, converter keywords)
_CALL_ARGS = {L.MultiHeadAttention: _mha_call}

_RNN_LAYERS = (L.LSTM, L.GRU, L.SimpleRNN)
