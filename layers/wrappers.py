"""Layer wrappers: the Wrapper base class (a layer that holds another layer), TimeDistributed
(a layer applied to every timestep) and Bidirectional (an RNN run forwards and backwards,
outputs merged)."""
from .. import ops
from .layer import InputSpec, Layer, name_scope


class Wrapper(Layer):
    """Base class of layers that wrap another layer, as Keras's Wrapper: it holds `layer` (its
    weights are the wrapper's), builds it from the wrapper's input shape (under the wrapper's
    name, so the weight paths are wrapper/layer/weight), and saves it in its config under
    "layer". Subclasses define `call` (TimeDistributed, SpectralNormalization)."""

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(f"{type(self).__name__}: expected a Layer instance to wrap, received {layer!r} of type "
                             f"{type(layer).__name__}")
        super().__init__(**kwargs)
        self.layer = layer

    def build(self, input_shape=None):
        if not self.layer.built:
            with name_scope(self):     # also when build() is called directly
                self.layer._maybe_build(input_shape)

    def call(self, inputs, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} '{self.name}': Wrapper is a base class with no call() of "
                                  "its own; subclass it and define call(inputs), which usually calls self.layer")

    def get_config(self):
        from .serialization import serialize
        return {**super().get_config(), "layer": serialize(self.layer)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from .serialization import deserialize
        config = dict(config)
        layer = config.pop("layer")
        return cls(deserialize(layer, custom_objects) if isinstance(layer, dict) else layer, **config)


class TimeDistributed(Wrapper):
    """Applies `layer` to each slice along axis 1: (batch, time, ...) -> (batch, time, ...')."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer, **kwargs)
        self.supports_masking = True
        self.input_spec = InputSpec(min_ndim=3)

    def build(self, input_shape):
        self.layer._maybe_build((None,) + tuple(input_shape[2:]))

    def call(self, inputs, training=None, mask=None):
        b, t = inputs.shape[0], inputs.shape[1]
        flat = ops.reshape(inputs, (b * t,) + inputs.shape[2:])
        kw = {"training": training} if self.layer._call_has_training else {}
        y = self.layer(flat, **kw)
        return ops.reshape(y, (b, t) + y.shape[1:])

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None,) + tuple(input_shape[2:]))
        return (input_shape[0], input_shape[1]) + tuple(inner[1:])


_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(Layer):
    """Runs an RNN layer forwards and a copy of it backwards (go_backwards flipped) and merges the
    outputs with `merge_mode` ("concat", "sum", "mul", "ave" or None for a list). Weights: the
    forward layer's, then the backward layer's (`weights=` sets them when the layer is built)."""

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, Layer) or not hasattr(layer, "go_backwards"):
            raise ValueError(f"Bidirectional: expected an RNN layer (LSTM, GRU, SimpleRNN), received {layer!r}")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"Bidirectional: merge_mode must be one of {_MERGE_MODES}, received {merge_mode!r}")
        self.merge_mode = merge_mode
        cfg = layer.get_config()   # Keras's names: forward_<name>, backward_<name>, never doubled
        cfg["name"] = "forward_" + _removeprefix(layer.name, "forward_")
        self.forward_layer = type(layer).from_config(cfg)
        if backward_layer is None:
            bcfg = layer.get_config()
            bcfg["go_backwards"] = not bcfg.get("go_backwards", False)
            bcfg["name"] = "backward_" + _removeprefix(layer.name, "backward_")
            backward_layer = type(layer).from_config(bcfg)
        elif backward_layer.go_backwards == layer.go_backwards:
            raise ValueError("Bidirectional: backward_layer must have go_backwards opposite to layer's")
        self.backward_layer = backward_layer
        for rnn in (self.forward_layer, self.backward_layer):   # as Keras: masked steps output zeros
            if hasattr(rnn, "zero_output_for_mask"):
                rnn.zero_output_for_mask = rnn.return_sequences
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.supports_masking = True
        if weights is not None and (not isinstance(weights, (list, tuple)) or len(weights) % 2):
            raise ValueError("Bidirectional: `weights` must be a list of arrays, the forward layer's then the "
                             f"backward layer's (an even number), received {type(weights).__name__} of length "
                             f"{len(weights) if isinstance(weights, (list, tuple)) else '?'}")
        self._initial_weights = list(weights) if weights is not None else None

    def build(self, input_shape):
        self.forward_layer._maybe_build(input_shape)
        self.backward_layer._maybe_build(input_shape)
        if self._initial_weights is not None:   # the initial weights given to __init__ (Keras's `weights=`)
            half = len(self._initial_weights) // 2
            self.forward_layer.set_weights(self._initial_weights[:half])
            self.backward_layer.set_weights(self._initial_weights[half:])
            self._initial_weights = None

    def _merge(self, a, b):
        if self.merge_mode == "concat":
            return ops.concatenate([a, b], axis=-1)
        if self.merge_mode == "sum":
            return a + b
        if self.merge_mode == "mul":
            return a * b
        if self.merge_mode == "ave":
            return (a + b) * 0.5
        return [a, b]

    def call(self, inputs, training=None, mask=None, initial_state=None):
        fkw, bkw = {"training": training, "mask": mask}, {"training": training, "mask": mask}
        if initial_state is not None:
            half = len(initial_state) // 2
            fkw["initial_state"], bkw["initial_state"] = initial_state[:half], initial_state[half:]
        f = self.forward_layer(inputs, **fkw)
        b = self.backward_layer(inputs, **bkw)
        f_states = b_states = []
        if self.return_state:
            f, f_states = f[0], list(f[1:])
            b, b_states = b[0], list(b[1:])
        if self.return_sequences:
            b = ops.flip(b, axis=1)
        out = self._merge(f, b)
        if self.return_state:
            outs = out if isinstance(out, list) else [out]
            return outs + f_states + b_states
        return out

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    def compute_output_shape(self, input_shape):
        fs = self.forward_layer.compute_output_shape(input_shape)
        out = fs[0] if self.return_state else fs
        states = list(fs[1:]) if self.return_state else []
        if self.merge_mode == "concat":
            out = tuple(out[:-1]) + (None if out[-1] is None else 2 * out[-1],)
        outs = [out, out] if self.merge_mode is None else [out]
        if self.return_state:
            return outs + states + states
        return outs if self.merge_mode is None else out

    def get_config(self):
        from .serialization import serialize
        return {**super().get_config(), "merge_mode": self.merge_mode, "layer": serialize(self.forward_layer),
                "backward_layer": serialize(self.backward_layer)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from .serialization import deserialize
        config = dict(config)
        config["layer"] = deserialize(config["layer"], custom_objects)
        if config.get("backward_layer") is not None:
            config["backward_layer"] = deserialize(config["backward_layer"], custom_objects)
        return cls(**config)


def _removeprefix(s, prefix):
    return s[len(prefix):] if s.startswith(prefix) else s
