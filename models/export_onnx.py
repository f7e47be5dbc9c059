"""`Model.export(filepath, format="onnx")`: the ONNX graph of a built Sequential or Functional model,
written by lamina itself (no TensorFlow, tf2onnx or jax2onnx), for inference (Dropout and noise
layers are identities, BatchNormalization uses its moving statistics).

The `onnx` package builds and checks the graph (an optional dependency: `pip install onnx`, or
lamina's "onnx" extra); it is imported only when a model is exported. Default opset 17 (ONNX Runtime
runs opsets 17 to 21 of these graphs; `opset_version=` picks one). lamina's layers are channels-last:
convolutions and poolings are wrapped in Transposes to ONNX's channels-first layout (ONNX Runtime's
optimizer removes the pairs that cancel). Graph inputs are named after the model's Inputs (their
batch axis dynamic, "batch", unless `input_signature` fixes it), graph outputs after the layers
that produce the model's outputs. Nested Sequential / Functional models are inlined. The converters: models/onnx_layers.py (layers)
and models/onnx_ops.py (op nodes); this module checks the model, walks its graph and writes the file.

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
import os

import numpy as np

from .. import layers as L
from .._fileio import atomic_write
from ..layers.core import SymbolicOp
from ..layers.input_layer import InputLayer, KerasTensor
from ..layers.layer import InputSpec
from ..layers.normalization import BatchNormalization as _BN
from .onnx_layers import CALL_ARGS as _CALL_ARGS
from .onnx_layers import CONVERTERS as _LAYER_CONVERTERS
from .onnx_layers import RNN_LAYERS as _RNN_LAYERS
from .onnx_layers import _NP_TO_ONNX, _activation_supported
from .onnx_ops import _OP_CONVERTERS, _op_name, _symbolic_op, supported_ops  # noqa: F401 (supported_ops: public)

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 17, 21

# Keras's formats; lamina writes "onnx" only. What each of the others would need:
_OTHER_FORMATS = {
    "tf_saved_model": "TensorFlow (a tf.Module traced with tf.function and written by tf.saved_model.save)",
    "litert": "TensorFlow's LiteRT (TFLite) converter",
    "openvino": "OpenVINO's model converter",
    "torch": "PyTorch's torch.export (Keras's torch backend)",
}

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
    if getattr(layer, "quantization_mode", None) is not None or \
            any(getattr(sub, "quantization_mode", None) is not None for sub in layer._all_layers()):
        return False   # a quantized layer, or one holding quantized sub-layers (MultiHeadAttention's projections)
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


_CONVERTERS = {**_LAYER_CONVERTERS, SymbolicOp: _symbolic_op}
