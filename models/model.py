"""`Model`: a Layer with training (compile/fit/evaluate/predict) and saving. Called as
`Model(inputs, outputs)` it builds a functional model; subclasses define `call`."""
import numpy as np

from ..backend import dtypes
from ..backend import manipulation as _manip
from ..backend.autodiff import tapes_active
from ..backend.device import _scope as _device_scope, get_log_device_placement
from ..backend.tensor import Tensor
from ..layers.layer import Layer, _ctx, flatten, map_structure
from ..layers.input_layer import InputLayer, KerasTensor
from . import fusion, qfusion
from .functional import keras_layer_order, replay, topological_nodes
from . import replay as _replay
from .trainer import Trainer


class Model(Trainer, Layer):
    def __new__(cls, *args, **kwargs):
        if cls is Model and _functional_args(args, kwargs):
            return super().__new__(Functional)
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        if _functional_args(args, kwargs) and not isinstance(self, Functional):
            # `class CustomModel(Model)` built as `CustomModel(inputs, outputs)` (the Keras guides'
            # custom train_step): a functional model with the subclass's methods, as Keras's
            self.__class__ = _functional_subclass(type(self))
            Functional.__init__(self, *args, **kwargs)
            return
        trainable = kwargs.pop("trainable", True)
        name = kwargs.pop("name", None)
        dtype = kwargs.pop("dtype", None)
        Layer.__init__(self, name=name, trainable=trainable, dtype=dtype, **kwargs)
        Trainer.__init__(self)

    def __call__(self, *args, **kwargs):
        # model(x) on tensors, for inference, outside any tape: replayed when its Python is the
        # same at every call (models/replay.py, CallReplay); otherwise, and for the first calls
        # of each input signature, Layer.__call__ as usual
        if len(args) == 1 and (not kwargs or len(kwargs) == 1 and "training" in kwargs):
            training = kwargs.get("training")
            cr = self.__dict__.get("_call_replay")
            if cr is not None:
                out = cr.fast(args[0], training)
                if out is not None:
                    return out
            out = self._replayed_call(args[0], training, _replay.CALL_MAX_BYTES)
            if out is not _replay._MISS:
                return out
        return Layer.__call__(self, *args, **kwargs)

    def _replayed_call(self, x, training, max_bytes):
        """self(x, training=training) through the call replay, or _replay._MISS where it does not
        apply (the caller then calls as usual)."""
        key = _call_key(x, training)
        if key is None:
            return _replay._MISS
        cr = self.__dict__.get("_call_replay")
        if cr is None:
            cr = _replay.CallReplay()
            object.__setattr__(self, "_call_replay", cr)
        single = isinstance(x, Tensor)
        return cr.run(self, [x] if single else flatten(x), key, lambda: Layer.__call__(self, x, training=training),
                      max_bytes, single)

    @property
    def layers(self):
        """The model's layers, as Keras lists them: not the ops called on its symbolic tensors
        (`operations` has those too)."""
        return [layer for layer in self._layers if not getattr(layer, "_is_op", False)]

    @property
    def operations(self):
        """Every node of the graph in order: the layers and the ops called on symbolic tensors."""
        return list(self._layers)

    def get_layer(self, name=None, index=None):
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"get_layer: index {index} out of range; the model has {len(self.layers)} layers")
            return self.layers[index]
        for l in self.layers:
            if l.name == name:
                return l
        raise ValueError(f"No such layer: {name!r}. Existing layers are: {[l.name for l in self.layers]}")

    def quantize(self, mode=None, config=None, filters=None, **kwargs):
        """Quantizes every Dense, EinsumDense (so MultiHeadAttention's projections), Conv2D,
        DepthwiseConv2D and Embedding layer for inference (Keras 3's Model.quantize; mode "int8"
        only; see models/quantize.py). `filters` picks the layers as Keras's: None (all), a regex
        string (re.search on the layer's name), a list / tuple of them (any matches) or a
        callable(layer) -> bool. `type_check` is accepted as a keyword, as in Keras; other keywords
        raise Keras's ValueError. A quantized model predicts, evaluates, saves and loads; it does
        not train."""
        from .quantize import quantize_model
        kwargs.pop("type_check", True)
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}.quantize: {kwargs}")
        if config is not None:
            raise ValueError(f"Model '{self.name}'.quantize: quantization configs (GPTQ, AWQ) are not supported; use "
                             "quantize('int8')")
        quantize_model(self, mode, filters=filters)

    def save(self, filepath, overwrite=True, zipped=None, include_optimizer=True, **kwargs):
        """Saves architecture, weights and optimizer state to '.keras' (zip; a folder with
        zipped=False) or '.h5', atomically."""
        from .io import save_model
        save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer, zipped=zipped, **kwargs)

    def save_weights(self, filepath, overwrite=True, max_shard_size=None):
        """Writes the weights: '.weights.h5' in Keras 3's layout, other '.h5' names in Keras's
        legacy layout; with `max_shard_size` (GB), Keras's sharded '.weights.json' and shards."""
        from .io import save_weights
        save_weights(self, filepath, overwrite=overwrite, max_shard_size=max_shard_size)

    def load_weights(self, filepath, by_name=False, skip_mismatch=False):
        """Reads Keras-layout HDF5 weights by layer order, or by layer name with by_name=True."""
        from .io import load_weights
        load_weights(self, filepath, by_name=by_name, skip_mismatch=skip_mismatch)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """Writes the model for inference, as Keras 3's Model.export. lamina writes format="onnx"
        itself (needs the `onnx` package; `opset_version=` 17 to 21, default 17) for built
        Sequential and Functional models; Keras's other formats ("tf_saved_model", its default,
        "litert", "openvino", "torch") need TensorFlow, OpenVINO or PyTorch and raise
        NotImplementedError. `input_signature`: None (the model's inputs, batch axis dynamic) or
        one lamina.InputSpec / lamina.Input per input. See models/export_onnx.py."""
        from .export_onnx import export_model
        export_model(self, filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)

    # -- configs, as Keras's Model --
    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A Functional model from a functional config ("layers", "input_layers", "output_layers"),
        else `cls(**config)` (a subclassed model's own arguments)."""
        from .saving import functional_from_config
        if all(k in config for k in ("layers", "input_layers", "output_layers")):
            return functional_from_config(config, custom_objects, cls=Functional if cls is Model else cls)
        return cls(**config)

    def get_build_config(self):
        """Keras's: {"input_shape": the input shape(s) of the model's first call}, so that loading
        a file (and `clone_model`) can create a subclassed model's weights before any data comes."""
        config = Layer.get_build_config(self)
        if config is not None:
            return config
        shape = getattr(self, "_build_input_shape", None)
        return {"input_shape": shape} if self.built and _is_shape_tree(shape) else None

    def build_from_config(self, config):
        """Builds the model from `get_build_config()`: with its own build() when it has one, else by
        running call() once on zeros of that shape (Keras's build-by-run), which creates the layers'
        weights; a model that cannot be built so is left unbuilt, with a warning saying what to do."""
        shape = (config or {}).get("input_shape")
        if self.built or not _is_shape_tree(shape):
            return
        shape = _shape_tree(shape)
        if self._build_overridden:
            self._maybe_build(shape)
            return
        from ..layers.symbolic import trace_output_shape
        try:
            self._maybe_build(shape)
            trace_output_shape(self, shape)
        except Exception as e:  # noqa: BLE001 - any failure of user code leaves the model unbuilt
            import warnings
            self.built = False
            warnings.warn(f"Model '{self.name}' ({type(self).__name__}) has a build config (input_shape={shape}) "
                          f"but running it on that shape failed ({type(e).__name__}: {e}); its weights will be "
                          "created on its first call. Implement build(input_shape) (or build_from_config) to "
                          "create them when the model is loaded.", stacklevel=2)

    def to_json(self, **kwargs):
        """The model's config as Keras writes it (`keras.models.model_from_json` reads it)."""
        import json
        from ..saving import serialize_keras_object
        from .io import _json_default
        return json.dumps(serialize_keras_object(self), default=_json_default, **kwargs)

    def get_compile_config(self):
        from .saving import compile_config
        return compile_config(self)

    def compile_from_config(self, config):
        from .saving import compile_from_config
        compile_from_config(self, config)

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False,
                layer_range=None):
        """Prints Keras 3's table of the model's layers (see models/summary.py for the options)."""
        from .summary import print_summary
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn,
                      expand_nested=expand_nested, show_trainable=show_trainable, layer_range=layer_range)


def _to_input_dtype(v, dtype):
    """`v` as a tensor of its Input's dtype (Keras's functional models convert their inputs to
    them: integer ids fed to a float32 Input arrive as float32), keeping a tensor's mask."""
    from ..backend.tensor import convert_to_tensor
    t = convert_to_tensor(v, dtype=dtype)
    mask = getattr(v, "_keras_mask", None)
    if mask is not None and t is not v:
        t._keras_mask = mask
    return t


def _adjust_rank(t, shape):
    """Keras's Functional input rank adjustment: a trailing axis of 1 added where the input declares
    one and the data lacks it ((batch, 28, 28) for Input((28, 28, 1))), or dropped where the data
    has one more than declared ((batch, 10, 1) for Input((10,)))."""
    if t.ndim == len(shape) - 1 and shape[-1] == 1:
        return _manip.expand_dims(t, -1)
    if t.ndim == len(shape) + 1 and t.shape[-1] == 1:
        return _manip.squeeze(t, -1)
    return t


class Functional(Model):
    """A model defined by a graph of layers from `inputs` to `outputs`."""
    _autocasts_io = False  # as Keras's: its layers cast their own inputs (a float32 layer takes float32)

    def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
        Model.__init__(self, name=name, trainable=trainable, **kwargs)
        self._inputs_struct = inputs
        self._outputs_struct = outputs
        self.inputs = flatten(inputs)
        self.outputs = flatten(outputs)
        for t in self.inputs:
            if not isinstance(t, KerasTensor):
                raise TypeError(f"Model inputs must come from lamina.Input(...), received {type(t).__name__}")
        for t in self.outputs:
            if not isinstance(t, KerasTensor):
                raise TypeError(f"Model outputs must be KerasTensors produced by layers, received {type(t).__name__}")
        self._nodes = topological_nodes(self.outputs)
        self._fusions = fusion.plan(self._nodes, self.outputs)  # BatchNormalization + ReLU pairs
        known = {id(t) for t in self.inputs}
        for node in self._nodes:
            if isinstance(node.layer, InputLayer) and id(node.outputs[0]) not in known:
                raise ValueError(f"Graph disconnected: the outputs depend on input '{node.layer.name}', which is "
                                 f"not in the model's inputs {[t.name for t in self.inputs]}")
        object.__setattr__(self, "_layers", keras_layer_order(self.inputs, self.outputs))
        self.built = True
        self._batch_input_shape = None

    @property
    def input(self):
        return self._inputs_struct

    @property
    def output(self):
        return self._outputs_struct

    @property
    def input_shape(self):
        s = [t.shape for t in self.inputs]
        return s[0] if len(s) == 1 else s

    @property
    def output_shape(self):
        s = [t.shape for t in self.outputs]
        return s[0] if len(s) == 1 else s

    def _flatten_call_inputs(self, inputs):
        if isinstance(self._inputs_struct, dict):
            if not isinstance(inputs, dict):
                raise ValueError(f"Model '{self.name}' expects a dict of inputs with keys {sorted(self._inputs_struct)}")
            return [inputs[k] for k in self._inputs_struct]
        flat = flatten(inputs) if isinstance(inputs, (list, tuple, dict)) else [inputs]
        if isinstance(inputs, dict):
            names = [t.name for t in self.inputs]
            if all(n in inputs for n in names):
                flat = [inputs[n] for n in names]
        if len(flat) != len(self.inputs):
            raise ValueError(f"Model '{self.name}' expects {len(self.inputs)} input(s) of shapes "
                             f"{[t.shape for t in self.inputs]}, received {len(flat)}")
        return flat

    def _takes_strings(self):
        return any(t.dtype == dtypes.STRING for t in self.inputs)

    def _convert_inputs(self, inputs):
        # string data is checked against each input's dtype in call(), which names the input
        leaves = flatten(inputs)
        if not any(dtypes.is_string_data(v) for v in leaves):
            return super()._convert_inputs(inputs)
        if isinstance(inputs, (list, tuple)) and all(isinstance(v, (str, bytes)) for v in leaves):
            return np.asarray(inputs)
        return map_structure(lambda v: np.asarray(v) if dtypes.is_string_data(v) else super(Functional, self)
                             ._convert_inputs(v), inputs)

    def call(self, inputs, training=None, mask=None):
        from ..backend.tensor import convert_to_tensor, Tensor
        flat = self._flatten_call_inputs(inputs)
        values = []
        for kt, v in zip(self.inputs, flat):
            if kt.dtype == dtypes.STRING:    # strings stay a numpy array, for the text layer that takes them
                if not dtypes.is_string_data(v) and not (isinstance(v, np.ndarray) and v.size == 0):
                    raise TypeError(f"Input '{kt.name}' of model '{self.name}' takes strings (dtype 'string'), "
                                    f"received {_describe(v)}; pass a numpy array (or list) of str")
                t = np.asarray(v)
            elif dtypes.is_string_data(v):
                raise TypeError(f"Input '{kt.name}' of model '{self.name}' takes {kt.dtype} numbers, received "
                                f"strings ({_describe(v)}). Declare it lamina.Input(..., dtype='string') and put a "
                                "TextVectorization, StringLookup or Hashing layer after it")
            else:
                t = v if isinstance(v, Tensor) and v.dtype == kt.dtype else _to_input_dtype(v, kt.dtype)
                t = _adjust_rank(t, kt.shape)
            if t.ndim != len(kt.shape) or any(e is not None and e != g for e, g in zip(kt.shape, t.shape)):
                raise ValueError(f"Input '{kt.name}' of model '{self.name}' is incompatible: expected shape "
                                 f"{kt.shape}, received {t.shape}")
            values.append(t)
        outs = replay(self._nodes, self.inputs, values, self.outputs, self._fusions, self._quantized_groups())
        it = iter(outs)
        return map_structure(lambda _: next(it), self._outputs_struct)

    def _quantized_groups(self):
        """qfusion.plan's groups of the graph (None while nothing is quantized)."""
        return qfusion.model_groups(self, lambda: self._nodes, self.outputs)[0]

    def compute_output_shape(self, input_shape):
        return map_structure(lambda t: t.shape, self._outputs_struct)

    def get_build_config(self):
        return {"input_shape": None}   # as Keras: the graph itself says how the model is built

    def get_config(self):
        from .saving import functional_config
        return functional_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from .saving import functional_from_config
        return functional_from_config(config, custom_objects, cls=cls)


def _call_key(x, training):
    """The call replay's key for model(x, training=training), or None where the call runs as
    usual: training, inside a tape or another layer's call, a placement log, inputs that are not
    tensors (or a flat list, tuple or dict of them) or that carry a mask."""
    if training or _ctx.training or _ctx.entry is not None or tapes_active() or get_log_device_placement():
        return None
    stack = _device_scope.stack
    scope = id(stack[-1]) if stack else None
    if isinstance(x, Tensor):
        if x._keras_mask is not None:
            return None
        return x.shape, x.dtype, id(x.device), scope, training
    if isinstance(x, dict):
        keys, leaves = tuple(x), list(x.values())
    elif isinstance(x, (list, tuple)):
        keys, leaves = (type(x), len(x)), list(x)
    else:
        return None
    if not leaves or any(not isinstance(t, Tensor) or t._keras_mask is not None for t in leaves):
        return None
    return _replay.signature(leaves, (keys, scope, training))


def _describe(v):
    return type(v).__name__ + (f" of dtype {v.dtype} and shape {tuple(v.shape)}" if hasattr(v, "dtype") else "")


def _is_shape_tree(s):
    """A shape (tuple/list of ints and None) or a list/tuple/dict of shapes."""
    if isinstance(s, dict):
        return bool(s) and all(_is_shape_tree(v) for v in s.values())
    if isinstance(s, (list, tuple)):
        return all(d is None or isinstance(d, int) and not isinstance(d, bool) for d in s) or \
            bool(s) and all(isinstance(v, (list, tuple, dict)) and _is_shape_tree(v) for v in s)
    return False


def _shape_tree(s):
    """A shape tree read back from JSON: each shape a tuple again, lists of shapes lists."""
    if isinstance(s, dict):
        return {k: _shape_tree(v) for k, v in s.items()}
    if all(d is None or isinstance(d, int) for d in s):
        return tuple(s)
    return [_shape_tree(v) for v in s]


def _functional_args(args, kwargs):
    return len(args) >= 2 or len(args) == 1 and "outputs" in kwargs or "inputs" in kwargs and "outputs" in kwargs


_FUNCTIONAL_SUBCLASSES = {}


def _functional_subclass(cls):
    """`cls` with Functional's graph behind its own methods (Keras's inject_functional_model_class)."""
    if cls not in _FUNCTIONAL_SUBCLASSES:
        _FUNCTIONAL_SUBCLASSES[cls] = type(cls.__name__, (cls, Functional), {"__module__": cls.__module__,
                                                                            "__qualname__": cls.__qualname__})
    return _FUNCTIONAL_SUBCLASSES[cls]
