"""Recurrent layers: SimpleRNN, LSTM and GRU, with Keras 3's arguments, weights and semantics.

Each layer holds a cell sub-layer in `cell` (SimpleRNNCell, LSTMCell, GRUCell) that owns the
weights `kernel`, `recurrent_kernel`, `bias` (in that order, Keras's shapes), so weight paths
("lstm/lstm_cell/kernel") and weight files match Keras's. The whole sequence runs in one fused
C++ op (`ops.lstm`, `ops.gru`, `ops.simple_rnn`), which needs Keras's default activations:
tanh, and sigmoid for the gates.

    x = Input(shape=(None, 8))
    seq, h, c = LSTM(32, return_sequences=True, return_state=True)(x)

`call(inputs, mask=None, training=None, initial_state=None)`: `mask` (batch, timesteps) marks the
steps to use (a masked step keeps the states and repeats the previous output); dropout and
recurrent_dropout apply in training only, one mask per sequence for all steps, as in Keras.
`stateful=True` carries the last states of a batch over as the initial states of the next one
(reset with `reset_states()`). The initial states can also come in the inputs list,
`layer([sequence, h, c])` (Keras 2's form): in a functional model that is how states computed by
other layers (an encoder's) reach a decoder, since the graph records a layer's inputs only.

Differences from Keras: `unroll` is accepted and has no effect (the fused op is always used);
with `recurrent_dropout` the LSTM and GRU draw one recurrent mask shared by all gates (Keras
draws one per gate).
"""
import numpy as np

from .. import activations as _activations
from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from ..backend import dtypes
from ..backend.autodiff import no_grad
from ..backend.random import SeedGenerator
from ..backend.tensor import Tensor, Variable
from ..backend.validation import positive_int as _positive_int
from .layer import InputSpec, Layer




def _rate(layer, arg, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{layer}: `{arg}` must be a number in [0, 1), received {arg}={value!r}") from None
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{layer}: `{arg}` must be a number in [0, 1), received {arg}={value!r}; it is the "
                         "fraction of the units to drop")
    return v


def _fused_activation(layer, arg, value, want):
    """Resolves an activation and checks it is the one the fused kernel computes."""
    fn = _activations.get(value)
    if fn is not getattr(_activations, want):
        name = value if isinstance(value, str) or value is None else _activations.serialize(fn)
        raise ValueError(f"{layer}: only {arg}='{want}' is implemented (the recurrence runs as one fused kernel "
                         f"with Keras's default activations), received {arg}={name!r}. Use the default, or "
                         f"write the step with ops in a custom layer.")
    return fn


# ---- cells -----------------------------------------------------------------------------------

class _Cell(Layer):
    """What the three cells share: arguments, weights, config. G = gates (4 LSTM, 3 GRU, 1 RNN)."""

    G = 1
    _layer = "SimpleRNNCell"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        kwargs.pop("implementation", None)  # Keras's choice of matmul grouping: one fused kernel here
        super().__init__(**kwargs)
        who = type(self).__name__
        self.units = _positive_int(who, "units", units)
        self.activation = _fused_activation(who, "activation", activation, "tanh")
        if self.G > 1:
            self.recurrent_activation = _fused_activation(who, "recurrent_activation", recurrent_activation,
                                                          "sigmoid")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.recurrent_initializer = _initializers.get(recurrent_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = _regularizers.get(recurrent_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel_constraint = _constraints.get(kernel_constraint)
        self.recurrent_constraint = _constraints.get(recurrent_constraint)
        self.bias_constraint = _constraints.get(bias_constraint)
        self.dropout = _rate(who, "dropout", dropout)
        self.recurrent_dropout = _rate(who, "recurrent_dropout", recurrent_dropout)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"{who}: `seed` must be an integer or None, received seed={seed!r}")
        self.seed = seed
        self.seed_generator = SeedGenerator(seed) if seed is not None else None
        self.state_size = self.units
        self.output_size = self.units

    def _bias_shape(self):
        return (self.G * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"{type(self).__name__} '{self.name}': the last dimension of the input (features) must "
                             f"be known, received shape {tuple(input_shape)}")
        gu = self.G * self.units
        self.kernel = self.add_weight(name="kernel", shape=(in_dim, gu), initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(self.units, gu),
                                                initializer=self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        self.bias = self.add_weight(name="bias", shape=self._bias_shape(), initializer=self._bias_initializer(),
                                    regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint) if self.use_bias else None

    def get_initial_state(self, batch_size=None):
        n = 2 if self.G == 4 else 1
        return [ops.zeros((batch_size, self.units)) for _ in range(n)]

    def call(self, inputs, states, training=None):
        """One step: inputs (batch, features), states [h] ([h, c] for the LSTM) -> (h, new states).
        (Dropout is not applied here: the RNN layers apply it to whole sequences.)"""
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        x = ops.expand_dims(_float(inputs), 1)
        outs = _run(self, x, states, None, False, None, None)
        return outs[1], list(outs[1:])

    def get_config(self):
        config = {"units": self.units, "activation": _activations.serialize(self.activation)}
        if self.G > 1:
            config["recurrent_activation"] = _activations.serialize(self.recurrent_activation)
        config.update({
            "use_bias": self.use_bias,
            "kernel_initializer": _initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": _initializers.serialize(self.recurrent_initializer),
            "bias_initializer": _initializers.serialize(self.bias_initializer),
            "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": _regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": _constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": _constraints.serialize(self.recurrent_constraint),
            "bias_constraint": _constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        })
        return {**super().get_config(), **config}


class SimpleRNNCell(_Cell):
    """The cell of SimpleRNN: h = tanh(x @ kernel + h_prev @ recurrent_kernel + bias)."""

    G = 1

    def __init__(self, units, activation="tanh", **kwargs):
        if "recurrent_activation" in kwargs:
            raise TypeError("SimpleRNNCell: unrecognized keyword argument 'recurrent_activation' (a SimpleRNN has "
                            "no gates)")
        super().__init__(units, activation=activation, **kwargs)


class LSTMCell(_Cell):
    """The cell of LSTM: gates i, f, c, o in the kernels' column blocks (Keras's order)."""

    G = 4

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.state_size = [self.units, self.units]

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        base, u = self.bias_initializer, self.units

        def init(shape, dtype=None):  # Keras: the forget gate's block starts at 1
            parts = [np.asarray(base((u,), dtype=dtype)), np.ones((u,), np.float32),
                     np.asarray(base((2 * u,), dtype=dtype))]
            return np.concatenate(parts).astype(np.float32)
        return init

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class GRUCell(_Cell):
    """The cell of GRU (reset_after=True): gates z, r, h; bias (2, 3 * units) = [input; recurrent]."""

    G = 3

    def __init__(self, units, reset_after=True, **kwargs):
        if not reset_after:
            raise ValueError("GRUCell: only reset_after=True (Keras 3's default, the cuDNN-compatible variant) is "
                             "implemented, received reset_after=False")
        super().__init__(units, **kwargs)
        self.reset_after = True

    def _bias_shape(self):
        return (2, 3 * self.units)

    def get_config(self):
        return {**super().get_config(), "reset_after": self.reset_after}


def _float(x):
    return x if x.dtype == dtypes.FLOAT32 else ops.cast(x, "float32")


def _run(cell, x, states, mask, go_backwards, in_drop, rec_drop):
    """The fused op for `cell` on x (B, T, F): (outputs, *last states)."""
    kw = dict(mask=mask, go_backwards=go_backwards, input_dropout=in_drop, recurrent_dropout=rec_drop)
    if isinstance(cell, LSTMCell):
        return ops.lstm(x, states[0], states[1], cell.kernel, cell.recurrent_kernel, cell.bias, **kw)
    if isinstance(cell, GRUCell):
        return ops.gru(x, states[0], cell.kernel, cell.recurrent_kernel, cell.bias, **kw)
    return ops.simple_rnn(x, states[0], cell.kernel, cell.recurrent_kernel, cell.bias, **kw)


# ---- layers ----------------------------------------------------------------------------------

class _RNN(Layer):
    """The sequence layer around a cell (Keras's RNN base): return_sequences / return_state,
    go_backwards, stateful, masks, initial states and dropout."""

    _cell_class = SimpleRNNCell
    _cell_name = "simple_rnn_cell"
    _cell_args = ()  # cell-specific __init__ arguments (beyond _Cell's)

    def __init__(self, units, return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 unroll=False, zero_output_for_mask=False, activity_regularizer=None, use_cudnn="auto", **kwargs):
        layer_kw = {k: kwargs.pop(k) for k in ("name", "trainable", "dtype", "input_shape", "batch_input_shape",
                                               "input_dim", "batch_size", "input_length") if k in kwargs}
        super().__init__(activity_regularizer=activity_regularizer, **layer_kw)
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"{type(self).__name__}: `use_cudnn` must be 'auto', True or False, received {use_cudnn!r}")
        try:
            self.cell = self._cell_class(units, name=self._cell_name, dtype=layer_kw.get("dtype"),
                                         trainable=layer_kw.get("trainable", True), **kwargs)
        except TypeError as e:
            raise TypeError(str(e).replace(self._cell_class.__name__, type(self).__name__)) from None
        except ValueError as e:
            raise ValueError(str(e).replace(self._cell_class.__name__, type(self).__name__)) from None
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.supports_masking = True
        self.input_spec = InputSpec(ndim=3)
        object.__setattr__(self, "states", None)  # stateful: Variables, not weights (as in Keras)

    # Keras exposes the cell's arguments on the layer
    def __getattr__(self, name):
        cell = self.__dict__.get("cell")
        if cell is not None and (name in _CELL_ATTRS or name in self._cell_args):
            return getattr(cell, name)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    @property
    def _n_states(self):
        return 2 if isinstance(self.cell, LSTMCell) else 1

    def build(self, input_shape):
        input_shape = _sequence_shape(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} '{self.name}': expected inputs of shape (batch, timesteps, "
                             f"features), received shape {input_shape}")
        self.cell.build((input_shape[0], input_shape[-1]))
        self.cell.built = True
        for w in self.cell.weights:  # Keras's paths: lstm/lstm_cell/kernel
            w._path = f"{self.name}/{self.cell.name}/{w.name}"
        self.input_spec = InputSpec(ndim=3, axes={-1: input_shape[-1]})
        if self.stateful and input_shape[0] is not None:
            self._create_states(input_shape[0])

    def _create_states(self, batch):
        states = [Variable(np.zeros((batch, self.cell.units), np.float32), trainable=False,
                           name=f"{self.name}_state_{i}") for i in range(self._n_states)]
        object.__setattr__(self, "states", states)

    def reset_states(self, states=None):
        """Zeroes the states of a stateful layer (or sets them to `states`, a list of arrays)."""
        if not self.stateful:
            raise AttributeError(f"{type(self).__name__} '{self.name}' is not stateful: only layers created with "
                                 "stateful=True keep states to reset")
        if self.states is None:
            return
        values = states if states is not None else [np.zeros(v.shape, np.float32) for v in self.states]
        if not isinstance(values, (list, tuple)):
            values = [values]
        if len(values) != len(self.states):
            raise ValueError(f"{type(self).__name__} '{self.name}': reset_states expected {len(self.states)} "
                             f"arrays, received {len(values)}")
        for v, a in zip(self.states, values):
            v.assign(a)

    reset_state = reset_states

    def get_initial_state(self, batch_size):
        return self.cell.get_initial_state(batch_size)

    def _initial_states(self, initial_state, B):
        n = self._n_states
        if initial_state is not None:
            states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            if len(states) != n:
                raise ValueError(f"{type(self).__name__} '{self.name}': expected {n} initial state tensor(s) "
                                 f"({'[h, c]' if n == 2 else '[h]'}, each of shape (batch, {self.cell.units})), "
                                 f"received {len(states)}")
            return [_float(ops.convert_to_tensor(s)) for s in states]
        if not self.stateful:
            return [None] * n
        if self.states[0].shape[0] != B:
            raise ValueError(f"{type(self).__name__} '{self.name}' is stateful with batch size "
                             f"{self.states[0].shape[0]}, but received inputs with batch size {B}. A stateful "
                             f"layer needs the same batch size in every call (set it with "
                             f"Input(batch_shape=...)); or call reset_states() after rebuilding")
        # copies: the variables are overwritten with the new states after this call, and the
        # backward pass still needs the values the forward pass used
        return [ops.copy(v) for v in self.states]

    def _dropout_masks(self, B, F, training):
        cell = self.cell
        if not training:
            return None, None
        def draw(rate, n):
            return ops.dropout(ops.ones((B, n)), rate, seed=cell.seed_generator) if rate > 0 else None
        return draw(cell.dropout, F), draw(cell.recurrent_dropout, cell.units)

    def call(self, inputs, mask=None, training=None, initial_state=None):
        if isinstance(inputs, (list, tuple)):  # [sequence, *initial states], as Keras 2 accepted
            if initial_state is not None:
                raise ValueError(f"{type(self).__name__} '{self.name}': initial states were passed both in the "
                                 "inputs list and as initial_state=; pass them once")
            inputs, initial_state = inputs[0], (list(inputs[1:]) or None)
        x = _float(inputs)
        if x.ndim != 3:
            raise ValueError(f"{type(self).__name__} '{self.name}': expected inputs of shape (batch, timesteps, "
                             f"features), received shape {x.shape}")
        B, T, F = x.shape
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if mask is not None:
            mask = ops.convert_to_tensor(mask)
            if mask.ndim == 3 and mask.shape[-1] == 1:
                mask = ops.reshape(mask, mask.shape[:2])
        if self.stateful and self.states is None:
            self._create_states(B)
        states = self._initial_states(initial_state, B)
        in_drop, rec_drop = self._dropout_masks(B, F, training)
        outs = _run(self.cell, x, states, mask, self.go_backwards, in_drop, rec_drop)
        seq, last = outs[0], list(outs[1:])
        if self.stateful:
            with no_grad():
                for v, s in zip(self.states, last):
                    v.assign(s)
        if self.zero_output_for_mask and mask is not None:
            m = ops.cast(ops.flip(mask, axis=1) if self.go_backwards else mask, "float32")
            seq = ops.multiply(seq, ops.expand_dims(m, -1))
            output = seq if self.return_sequences else seq[:, -1] if T > 0 else last[0]
        else:
            output = seq if self.return_sequences else last[0]
        if self.return_state:
            return [output] + last
        return output

    def compute_output_shape(self, input_shape):
        input_shape = _sequence_shape(input_shape)
        B, T, U = input_shape[0], input_shape[1] if len(input_shape) > 1 else None, self.cell.units
        out = (B, T, U) if self.return_sequences else (B, U)
        if self.return_state:
            return [out] + [(B, U)] * self._n_states
        return out

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        out_mask = mask if self.return_sequences else None
        if self.return_state:
            return [out_mask] + [None] * self._n_states
        return out_mask

    def get_config(self):
        cell_cfg = self.cell.get_config()
        for k in ("name", "trainable", "dtype", "batch_input_shape"):
            cell_cfg.pop(k, None)
        config = {**super().get_config(),
                  "return_sequences": self.return_sequences, "return_state": self.return_state,
                  "go_backwards": self.go_backwards, "stateful": self.stateful, "unroll": self.unroll,
                  "zero_output_for_mask": self.zero_output_for_mask, **cell_cfg,
                  "activity_regularizer": _regularizers.serialize(self.activity_regularizer)}
        return config


def _sequence_shape(shape):
    """The sequence's shape from a layer's input shape(s) (a list [sequence, *states] included)."""
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        shape = shape[0]
    return tuple(shape)


_CELL_ATTRS = {"units", "activation", "recurrent_activation", "use_bias", "kernel_initializer",
               "recurrent_initializer", "bias_initializer", "kernel_regularizer", "recurrent_regularizer",
               "bias_regularizer", "kernel_constraint", "recurrent_constraint", "bias_constraint", "dropout",
               "recurrent_dropout", "seed", "state_size", "output_size"}


class SimpleRNN(_RNN):
    """Fully connected RNN: h_t = tanh(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias).

    Weights (in the cell `simple_rnn_cell`): kernel (features, units), recurrent_kernel
    (units, units), bias (units,)."""

    _cell_class = SimpleRNNCell
    _cell_name = "simple_rnn_cell"


class LSTM(_RNN):
    """Long Short-Term Memory (Hochreiter 1997), Keras's formulation and weights.

    Weights (in the cell `lstm_cell`): kernel (features, 4 * units), recurrent_kernel
    (units, 4 * units), bias (4 * units,), gates in the column order i, f, c, o. States [h, c].
    `unit_forget_bias=True` starts the forget gate's bias at 1."""

    _cell_class = LSTMCell
    _cell_name = "lstm_cell"
    _cell_args = ("unit_forget_bias",)


class GRU(_RNN):
    """Gated Recurrent Unit, Keras 3's default variant (reset_after=True, the cuDNN-compatible one).

    Weights (in the cell `gru_cell`): kernel (features, 3 * units), recurrent_kernel
    (units, 3 * units), bias (2, 3 * units) = [input bias; recurrent bias], gates z, r, h."""

    _cell_class = GRUCell
    _cell_name = "gru_cell"
    _cell_args = ("reset_after",)
