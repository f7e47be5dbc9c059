"""`Sequential`: a plain stack of layers, each with one input and one output."""
from ..backend import dtypes
from ..backend.tensor import Tensor
from ..layers.input_layer import Input, InputLayer, KerasTensor
from ..layers.layer import Layer, _ctx
from .model import Model


class Sequential(Model):
    """A linear stack of layers: `Sequential([Dense(64, activation="relu"), Dense(10)])`.

    The model builds when its input shape is known: from an `Input`/`InputLayer` first, from an
    `input_shape=` argument of the first layer, from `build(input_shape)`, or on first call."""
    _autocasts_io = False  # as Keras's: its layers cast their own inputs (a float32 layer takes float32)

    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(trainable=trainable, name=name)
        object.__setattr__(self, "_stack", [])  # its layers are tracked by add() and pop()
        self._input_kt = None
        self.outputs = None
        for l in layers or []:
            self.add(l, rebuild=False)
        self._maybe_build_from_known_shape()

    @property
    def layers(self):
        return [l for l in self._stack if not isinstance(l, InputLayer)]

    @property
    def operations(self):
        return self.layers

    def add(self, layer, rebuild=True):
        if isinstance(layer, KerasTensor):
            hist = layer._keras_history
            if hist is None or not isinstance(hist[0], InputLayer):
                raise ValueError("Sequential.add: only an Input(...) tensor can be added as the first element")
            layer = hist[0]
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a Layer instance, received {type(layer).__name__}: {layer!r}")
        if isinstance(layer, InputLayer) and self._stack:
            raise ValueError("Sequential: an InputLayer can only be the first layer")
        if any(l is layer for l in self._stack):
            raise ValueError(f"Sequential: layer '{layer.name}' is already in the model")
        names = {l.name for l in self._stack}
        if layer.name in names:
            raise ValueError(f"Sequential: all layers must have unique names; '{layer.name}' is used twice")
        self._stack.append(layer)
        if layer not in self._layers:
            self._layers.append(layer)
        self.built = False
        if rebuild:
            self._maybe_build_from_known_shape()

    def pop(self, rebuild=True):
        if not self.layers:
            raise IndexError("Sequential.pop: there are no layers to remove")
        layer = self._stack.pop()
        self._layers.remove(layer)
        self.built = False
        if rebuild:
            self._maybe_build_from_known_shape()
        return layer

    def _maybe_build_from_known_shape(self):
        if not self._stack:
            return
        first = self._stack[0]
        shape = getattr(first, "_batch_input_shape", None)
        if shape is not None:
            dtype = first.dtype if isinstance(first, InputLayer) else self._entry_dtype()
            self._build_graph(shape, dtype)

    def _entry_dtype(self):
        """The dtype of the Input the model makes for itself: the first layer's compute dtype when
        it is not a float (a layer of dtype int32 takes integers: Keras's Sequential.build gives its
        InputLayer the first layer's compute dtype), else float32."""
        first = self.layers[0] if self.layers else None
        cdt = getattr(first, "compute_dtype", "float32")
        return "float32" if cdt in dtypes.FLOATS else cdt

    def _build_graph(self, batch_shape, dtype="float32"):
        first = self._stack[0]
        if isinstance(first, InputLayer):
            x = first._inbound_nodes[0].outputs[0]
        else:
            x = Input(batch_shape=tuple(batch_shape), dtype=dtype)
        self._input_kt = x
        for layer in self.layers:
            x = layer(x)
        self.outputs = [x]
        self.inputs = [self._input_kt]
        self.built = True

    def build(self, input_shape=None):
        if input_shape is None:
            self._maybe_build_from_known_shape()
            if not self.built:
                raise ValueError("Sequential.build: the input shape is unknown; pass build(input_shape) or start "
                                 "the model with Input(shape=...)")
            return
        if isinstance(input_shape, list) and input_shape and isinstance(input_shape[0], (tuple, list)):
            input_shape = input_shape[0]
        self._build_graph(tuple(input_shape), self._entry_dtype())

    def _takes_strings(self):
        first = self._stack[0] if self._stack else None
        if isinstance(first, InputLayer):
            return first.dtype == "string"
        return first is not None and first._takes_strings()

    def _quantized_graph(self):
        """(qfusion.plan's groups, the graph's nodes) of the built graph; groups None while nothing
        is quantized."""
        from .functional import topological_nodes
        from . import qfusion
        if not self.outputs:
            return None, None
        return qfusion.model_groups(self, lambda: topological_nodes(self.outputs), self.outputs)

    def _quantized_groups(self):
        return self._quantized_graph()[0]

    def call(self, inputs, training=None, mask=None):
        if not training and not _ctx.training:
            groups, nodes = self._quantized_graph()
            if groups:  # quantized convolutions with their normalization and ReLU fused (models/qfusion.py)
                from .functional import replay
                return replay(nodes, self.inputs, [inputs], self.outputs, None, groups)[0]
        x = inputs
        kt = self._input_kt
        if kt is not None and isinstance(x, Tensor) and x.dtype != kt.dtype and kt.dtype != dtypes.STRING:
            from .model import _to_input_dtype   # as a functional model: inputs in the Input's dtype
            x = _to_input_dtype(x, kt.dtype)
        for layer in self.layers:
            x = layer(x, training=training) if layer._call_has_training else layer(x)
        return x

    def _convert_inputs(self, inputs):
        out = super()._convert_inputs(inputs)
        self._first_inputs_dtype = "string" if dtypes.is_string_data(out) else getattr(out, "dtype", "float32")
        return out

    def _maybe_build(self, input_shape):
        if not self.built:    # built on the first call: the graph's input takes that call's dtype when strings
            dtype = "string" if self.__dict__.pop("_first_inputs_dtype", None) == "string" else self._entry_dtype()
            self._build_graph((None,) + tuple(input_shape[1:]), dtype)

    @property
    def input(self):
        if self._input_kt is None:
            raise AttributeError(f"Sequential model '{self.name}' has no defined input yet: build it first")
        return self._input_kt

    @property
    def output(self):
        if not self.outputs:
            raise AttributeError(f"Sequential model '{self.name}' has no defined output yet: build it first")
        return self.outputs[0]

    @property
    def input_shape(self):
        return self.input.shape

    @property
    def output_shape(self):
        return self.output.shape

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for l in self.layers:
            shape = l.compute_output_shape(shape)
        return shape

    def _output_spec(self, shape, dtype):
        """(output shape, dtype) on a symbolic input (layers/symbolic.py): each layer is given the
        dtype the one before gives, starting from the input's, as `call` passes them on."""
        from ..layers.symbolic import output_spec
        for l in self.layers:
            shape, out = output_spec(l, shape, dtype)
            dtype = out if isinstance(out, str) else l.dtype
        return shape, dtype

    def get_config(self):
        from .saving import sequential_config
        return sequential_config(self)

    def get_build_config(self):
        return {"input_shape": tuple(self._input_kt.shape)} if self.built and self._input_kt is not None else None

    def build_from_config(self, config):
        if config and config.get("input_shape") is not None and not self.built:
            self.build(tuple(config["input_shape"]))

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from .saving import sequential_from_config
        return sequential_from_config(cls, config, custom_objects)
