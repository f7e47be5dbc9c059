"""Recurrent layers with Keras 3's arguments, weights and semantics: the generic `RNN(cell)` and
the layers `SimpleRNN`, `LSTM`, `GRU` (an RNN around their cell). The cells (`SimpleRNNCell`,
`LSTMCell`, `GRUCell`, `StackedRNNCells`) are in layers/rnn_cells.py and importable from here.

A cell is any layer (or object) with `state_size` (an int, or a list: one entry per state tensor),
optionally `output_size`, and `call(inputs, states, training=None)` returning
`(output, new_states)` for one step; optionally `get_initial_state(batch_size)`. `RNN` runs it
over the time axis, with Keras's masks, initial states, `go_backwards`, `return_state` and
`stateful`:

    cell = LSTMCell(32)                      # weights kernel, recurrent_kernel, bias (Keras's)
    seq, h, c = RNN(cell, return_sequences=True, return_state=True)(x)
    y = RNN([GRUCell(16), GRUCell(8)])(x)    # a list of cells is a StackedRNNCells

Two ways to run a sequence:
- fused: one C++ op for the whole sequence (`ops.lstm`, `ops.gru`, `ops.simple_rnn`), for a
  built-in cell (exactly SimpleRNNCell, LSTMCell or GRUCell, not a subclass) with Keras's default
  activations (tanh, and sigmoid for the gates), GRU's reset_after=True, and dropout masks of
  the shapes the op takes (in training: no recurrent dropout and implementation=2 for the LSTM
  and GRU). It computes what the per-step cell computes.
- per step: any other cell or configuration (activation="relu", recurrent_activation=
  "hard_sigmoid", reset_after=False, recurrent dropout, user cells) runs the cell's `call` once
  per time step, in a Python loop of lamina ops.

Masks (batch, timesteps), as Keras 3's JAX backend computes them: a masked step keeps every state
and outputs the previous output, taken as the first state (the last cell's first state for
stacked cells); with `zero_output_for_mask=True` it outputs zeros. Where the first state is not
output-shaped (a user cell whose output differs in size from its first state) the previous
output is repeated (zeros before the first step), as Keras's TensorFlow backend does.
Dropout (training only): one mask per sequence reused at every step, as Keras's cells draw
them (`DropoutRNNCell`); with recurrent_dropout the LSTM and GRU draw one mask per gate.
`stateful=True` carries the last states of a batch over as the initial states of the next one
(`reset_states()` sets them to zeros, as Keras's `reset_state`). The initial states can also come in the inputs list,
`layer([sequence, h, c])` (Keras 2's form): in a functional model that is how states computed by
other layers (an encoder's) reach a decoder, since the graph records a layer's inputs only.

Differences from Keras: `unroll` only keeps Keras's check that the number of time steps is known
(the per-step loop is always the unrolled one); `use_cudnn` chooses the fused op ("auto": when it
applies; True: required, an error otherwise; False: never), as it chooses cuDNN in Keras. With
`return_state`, a stacked cell's states come back in the structure of its `state_size` (a GRU
cell's state as a tensor, not a one-element list), which is the structure Keras's
`compute_output_shape` gives.
"""
import numpy as np

from .. import activations as _activations
from .. import ops
from .. import regularizers as _regularizers
from ..backend import dtypes
from ..backend.autodiff import no_grad
from ..backend.tensor import Tensor, Variable
from .layer import InputSpec, Layer
# the cells live in rnn_cells.py; imported here too, so `from lamina.layers.recurrent import LSTMCell` works
from .rnn_cells import (DropoutRNNCell, GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells,  # noqa: F401
                        _call_cell, _cell_output_size, _check_cell, _describe, _flatten, _float, _nested, _pack)


# ---- the fused sequence ops ------------------------------------------------------------------------

_FUSED_CELLS = (SimpleRNNCell, LSTMCell, GRUCell)


def _fused_ok(cell, training):
    """Whether the fused op computes what `cell`'s per-step call computes (see the module docstring)."""
    if type(cell) not in _FUSED_CELLS or cell.activation is not _activations.tanh:
        return False
    if cell.G > 1 and cell.recurrent_activation is not _activations.sigmoid:
        return False
    if isinstance(cell, GRUCell) and not cell.reset_after:
        return False
    # the op takes one (batch, features) input mask and one (batch, units) recurrent mask
    return not (training and getattr(cell, "dropout_mask_count", None) and (cell.dropout or cell.recurrent_dropout))


def _run_fused(cell, x, states, mask, go_backwards, training):
    """The fused op for `cell` on x (B, T, F): (outputs in processing order, *last states)."""
    B, _, F = x.shape
    in_drop = cell.get_dropout_mask(ops.ones((B, F))) if training and cell.dropout > 0 else None
    rec_drop = cell.get_recurrent_dropout_mask(ops.ones((B, cell.units))) if training and cell.recurrent_dropout > 0 \
        else None
    states = states if states is not None else [None, None]
    kw = dict(mask=mask, go_backwards=go_backwards, input_dropout=in_drop, recurrent_dropout=rec_drop)
    if isinstance(cell, LSTMCell):
        return ops.lstm(x, states[0], states[1], cell.kernel, cell.recurrent_kernel, cell.bias, **kw)
    if isinstance(cell, GRUCell):
        return ops.gru(x, states[0], cell.kernel, cell.recurrent_kernel, cell.bias, **kw)
    return ops.simple_rnn(x, states[0], cell.kernel, cell.recurrent_kernel, cell.bias, **kw)


# ---- layers --------------------------------------------------------------------------------------

def _reset_dropout_masks(cell):
    if isinstance(cell, DropoutRNNCell):
        cell.reset_dropout_mask()
        cell.reset_recurrent_dropout_mask()
    for c in getattr(cell, "cells", None) or ():
        _reset_dropout_masks(c)


def _set_paths(layer, prefix):
    """Keras's weight paths for a cell inside an RNN: rnn/lstm_cell/kernel,
    rnn/stacked_rnn_cells/gru_cell/bias."""
    base = f"{prefix}/{layer.name}"
    for w in layer._own_weights:
        w._path = f"{base}/{w.name}"
    for sub in layer._layers:
        _set_paths(sub, base)


class RNN(Layer):
    """Runs a cell over the time axis of (batch, timesteps, ...) inputs (Keras 3's RNN).

    `cell`: an RNN cell, or a list of cells (stacked with StackedRNNCells). Returns the last
    output (batch, output_size), or with `return_sequences=True` all of them (batch, timesteps,
    output_size), in processing order (reversed time with `go_backwards`); with
    `return_state=True`, `[output, *last states]`. Call with `initial_state=` (a list of tensors,
    one per state: flat, or nested one entry per cell for stacked cells), `mask=` (batch,
    timesteps) and `training=` (passed to the cell). See the module docstring."""

    _ndim = None  # the input rank, when it is fixed

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 unroll=False, zero_output_for_mask=False, **kwargs):
        who = type(self).__name__
        if _nested(cell):
            cell = StackedRNNCells(list(cell))
        _check_cell(who, cell)
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.supports_masking = True
        self.input_spec = InputSpec(min_ndim=3)
        object.__setattr__(self, "states", None)  # stateful: Variables, not weights (as in Keras)

    @property
    def state_size(self):
        """The cell's state sizes as a list (one entry per state; per cell for stacked cells)."""
        size = self.cell.state_size
        return list(size) if _nested(size) else [size]

    def _output_size(self):
        return _cell_output_size(self.cell)

    def build(self, input_shape):
        input_shape = _sequence_shape(input_shape)
        who = f"{type(self).__name__} '{self.name}'"
        if len(input_shape) < 3 or self._ndim and len(input_shape) != self._ndim:
            raise ValueError(f"{who}: expected inputs of shape (batch, timesteps, features), received shape "
                             f"{input_shape}")
        if self.unroll and input_shape[1] is None:
            raise ValueError(f"{who}: cannot unroll an RNN whose number of time steps is unknown (input shape "
                             f"{input_shape}). Give the Input a time dimension (Input(shape=(timesteps, "
                             "features))), or pass unroll=False")
        step_shape = (input_shape[0],) + tuple(input_shape[2:])
        if isinstance(self.cell, Layer):
            if not self.cell.built:
                try:
                    self.cell._maybe_build(step_shape)
                except MemoryError as e:    # a weight too large: name this layer too
                    raise MemoryError(f"{type(self).__name__} '{self.name}': {e}") from None
            _set_paths(self.cell, self.name)
        self.input_spec = InputSpec(ndim=len(input_shape), axes={-1: input_shape[-1]})
        if self.stateful and input_shape[0] is not None:
            self._create_states(input_shape[0])

    # -- states --
    def get_initial_state(self, batch_size):
        """The cell's initial states (zeros unless the cell's get_initial_state says otherwise), as a list."""
        fn = getattr(self.cell, "get_initial_state", None)
        if fn is None:
            return _pack(self.state_size, [ops.zeros((batch_size, d)) for d in _flatten(self.state_size)])
        states = fn(batch_size=batch_size)
        return list(states) if _nested(states) else [states]

    def _create_states(self, batch):
        values = _flatten(self.get_initial_state(batch))
        self._check_state_count(len(values), "the cell's get_initial_state returned")
        states = [Variable(_float(v).numpy(), trainable=False, name=f"{self.name}_state_{i}")
                  for i, v in enumerate(values)]
        for v in states:  # state, float32 under a mixed policy too (no bfloat16 copies during the call)
            v._autocast = False
        object.__setattr__(self, "states", _pack(self.state_size, states))

    def _state_shapes(self, batch):
        """The shapes of the states (flat) for a batch size: (batch, size) each, by default."""
        return [(batch, int(s)) for s in _flatten(self.state_size)]

    def _step_output_shape(self, batch):
        """The shape of one step's output for a batch size: (batch, output_size), by default."""
        return (batch, self._output_size())

    def _check_state_count(self, n, what):
        sizes = _flatten(self.state_size)
        if n != len(sizes):
            shapes = ", ".join(str(s).replace("None", "batch") for s in self._state_shapes(None))
            raise ValueError(f"{type(self).__name__} '{self.name}': expected {len(sizes)} initial state tensor(s) "
                             f"for the cell {_describe(self.cell)} (shapes {shapes}, from its state_size "
                             f"{self.cell.state_size!r}), {what} {n}")

    def reset_states(self, states=None):
        """Zeroes the states of a stateful layer (or sets them to `states`, a list of arrays)."""
        if not self.stateful:
            raise AttributeError(f"{type(self).__name__} '{self.name}' is not stateful: only layers created with "
                                 "stateful=True keep states to reset")
        if self.states is None:
            return
        flat = _flatten(self.states)
        values = [np.zeros(v.shape, np.float32) for v in flat] if states is None else \
            _flatten(states if _nested(states) else [states])
        if len(values) != len(flat):
            raise ValueError(f"{type(self).__name__} '{self.name}': reset_states expected {len(flat)} "
                             f"arrays, received {len(values)}")
        for v, a in zip(flat, values):
            v.assign(a)

    reset_state = reset_states

    def _initial_states(self, initial_state, B):
        """The initial states in the structure of state_size, or None for the cell's defaults."""
        if initial_state is not None:
            leaves = _flatten(initial_state if _nested(initial_state) else [initial_state])
            self._check_state_count(len(leaves), "received")
            out = []
            for i, (s, want) in enumerate(zip(leaves, self._state_shapes(B))):
                t = _float(s)
                if t.shape != want:
                    generic = str(self._state_shapes(None)[i]).replace("None", "batch")
                    raise ValueError(f"{type(self).__name__} '{self.name}': initial state {i} must have shape "
                                     f"{generic} = {want} for inputs of batch size {B} and the cell's "
                                     f"state_size {self.cell.state_size!r}, received shape {t.shape}")
                out.append(t)
            return _pack(self.state_size, out)
        if not self.stateful:
            return None
        batch = _flatten(self.states)[0].shape[0]
        if batch != B:
            raise ValueError(f"{type(self).__name__} '{self.name}' is stateful with batch size {batch}, but "
                             f"received inputs with batch size {B}. A stateful layer needs the same batch size in "
                             "every call (set it with Input(batch_shape=...)); or call reset_states() after "
                             "rebuilding")
        # copies: the variables are overwritten with the new states after this call, and the
        # backward pass still needs the values the forward pass used
        return _pack(self.state_size, [ops.copy(v) for v in _flatten(self.states)])

    # -- the loop --
    def _use_fused(self, training):
        return _fused_ok(self.cell, training)

    def _fused(self, x, states, mask, training):
        cell = self.cell
        if cell.kernel.dtype == cell.recurrent_kernel.dtype == dtypes.BFLOAT16:
            # mixed precision (the weights' bfloat16 copies): the fused ops (LSTM, GRU with
            # reset_after, SimpleRNN: _fused_ok) compute in bfloat16 on bfloat16 inputs
            x = x if isinstance(x, Tensor) else ops.convert_to_tensor(x)
            x = x if x.dtype == dtypes.BFLOAT16 else ops.cast(x, "bfloat16")
        else:
            x = _float(x)
        outs = _run_fused(cell, x, states, mask, self.go_backwards, training)
        seq, last = outs[0], list(outs[1:])
        if self.zero_output_for_mask and mask is not None:
            m = ops.cast(ops.flip(mask, axis=1) if self.go_backwards else mask, "float32")
            seq = ops.multiply(seq, ops.expand_dims(m, -1))
            last_output = seq[:, -1] if x.shape[1] > 0 else ops.zeros_like(last[0])
        else:
            last_output = last[0]
        return last_output, seq, last

    def _masked_output(self, states, prev_output, shape):
        """What a masked step outputs (Keras 3, JAX backend): zeros, or the first state (the last
        cell's for stacked cells), or, when that is not output-shaped, the previous output."""
        if self.zero_output_for_mask:
            return ops.zeros(shape)
        src = states[-1] if isinstance(self.cell, StackedRNNCells) or _nested(states[0]) else states
        first = _flatten(src)[0]
        if first.shape == tuple(shape):
            return first
        return prev_output if prev_output is not None else ops.zeros(shape)

    def _check_step(self, output, new, states):
        who = f"{type(self).__name__} '{self.name}'"
        if not isinstance(output, Tensor):
            raise ValueError(f"{who}: the cell {_describe(self.cell)} must return (output, new_states) with output a "
                             f"tensor, received output={output!r}")
        old = _flatten(states)
        got = _flatten(new)
        if len(got) != len(old):
            raise ValueError(f"{who}: the cell {_describe(self.cell)} returned {len(got)} state tensor(s), expected "
                             f"{len(old)} (its state_size is {self.cell.state_size!r})")
        for i, (a, b) in enumerate(zip(old, got)):
            if not isinstance(b, Tensor) or b.shape != a.shape:
                raise ValueError(f"{who}: the cell {_describe(self.cell)} returned state {i} of shape "
                                 f"{getattr(b, 'shape', type(b).__name__)}, expected {a.shape} (the shape it came in "
                                 f"with, from its state_size {self.cell.state_size!r})")
        if tuple(output.shape[1:]) != self._step_output_shape(output.shape[0])[1:]:
            raise ValueError(f"{who}: the cell {_describe(self.cell)} returned outputs of shape {output.shape}, but "
                             f"its output_size (or first state size, when it has no output_size) is "
                             f"{self._output_size()}. Set `output_size` on the cell to the size of its output")

    def _loop(self, x, states, mask, training):
        """Runs the cell step by step: (last output, all outputs or None, last states)."""
        B, T = x.shape[0], x.shape[1]
        if states is None:
            states = self.get_initial_state(B)
            self._check_state_count(len(_flatten(states)), "the cell's get_initial_state returned")
            states = _pack(states, [_float(s) for s in _flatten(states)])
        steps = ops.unstack(x, axis=1) if T else []
        masks = ops.unstack(mask, axis=1) if mask is not None and T else None
        order = range(T - 1, -1, -1) if self.go_backwards else range(T)
        outputs = []
        prev = None
        for i, t in enumerate(order):
            out, new = _call_cell(self.cell, steps[t], states, training)
            new = list(new) if _nested(new) else [new]
            if i == 0:
                self._check_step(out, new, states)
            if masks is not None:
                m = masks[t]
                keep = {}

                def where(a, b):  # a where the step is kept, else b
                    nd = a.ndim
                    if nd not in keep:
                        keep[nd] = ops.reshape(m, (B,) + (1,) * (nd - 1))
                    return ops.where(keep[nd], a, b)
                out = where(out, self._masked_output(states, prev, out.shape))
                new = _pack(new, [where(n, s) for n, s in zip(_flatten(new), _flatten(states))])
            states = new
            prev = out
            outputs.append(out)
        if outputs:
            last_output = outputs[-1]
            seq = ops.stack(outputs, axis=1) if self.return_sequences else None
        else:  # no steps: what a fully masked sequence gives
            shape = self._step_output_shape(B)
            last_output = self._masked_output(states, None, shape)
            seq = ops.zeros((B, 0) + tuple(shape[1:])) if self.return_sequences else None
        return last_output, seq, states

    def _mask(self, mask, B, T):
        if mask is None:
            return None
        if _nested(mask):
            mask = mask[0]
            if mask is None:
                return None
        mask = ops.convert_to_tensor(mask)
        if mask.ndim == 3 and mask.shape[-1] == 1:
            mask = ops.reshape(mask, mask.shape[:2])
        if mask.shape != (B, T):
            raise ValueError(f"{type(self).__name__} '{self.name}': expected a mask of shape (batch, timesteps) = "
                             f"{(B, T)}, received shape {mask.shape}")
        return mask if mask.dtype == dtypes.BOOL else ops.not_equal(mask, 0)

    def call(self, sequences, initial_state=None, mask=None, training=None):
        if _nested(sequences):  # [sequence, *initial states], as Keras 2 accepted
            if initial_state is not None:
                raise ValueError(f"{type(self).__name__} '{self.name}': initial states were passed both in the "
                                 "inputs list and as initial_state=; pass them once")
            sequences, initial_state = sequences[0], (list(sequences[1:]) or None)
        x = sequences if isinstance(sequences, Tensor) else ops.convert_to_tensor(sequences)
        if x.ndim < 3:
            raise ValueError(f"{type(self).__name__} '{self.name}': expected inputs of shape (batch, timesteps, "
                             f"features), received shape {x.shape}")
        B, T = x.shape[0], x.shape[1]
        mask = self._mask(mask, B, T)
        if self.stateful and self.states is None:
            self._create_states(B)
        states = self._initial_states(initial_state, B)
        _reset_dropout_masks(self.cell)
        try:
            if self._use_fused(training):
                last_output, seq, last = self._fused(x, states, mask, training)
            else:
                last_output, seq, last = self._loop(x, states, mask, training)
        finally:
            _reset_dropout_masks(self.cell)
        last = _flatten(last)
        if self.stateful:
            with no_grad():
                for v, s in zip(_flatten(self.states), last):
                    v.assign(s)
        output = seq if self.return_sequences else last_output
        if self.return_state:
            return [output] + _pack(self.state_size, last)
        return output

    def compute_output_shape(self, input_shape):
        input_shape = _sequence_shape(input_shape)
        B, T = input_shape[0], input_shape[1] if len(input_shape) > 1 else None
        step = tuple(self._step_output_shape(B))
        out = (B, T) + step[1:] if self.return_sequences else step
        if self.return_state:
            return [out] + _pack(self.state_size, self._state_shapes(B))
        return out

    def compute_mask(self, inputs, mask=None):
        if _nested(mask):
            mask = mask[0]
        out_mask = mask if self.return_sequences else None
        if self.return_state:
            return [out_mask] + [None] * len(self.state_size)
        return out_mask

    def _rnn_config(self):
        return {**super().get_config(), "return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards, "stateful": self.stateful, "unroll": self.unroll,
                "zero_output_for_mask": self.zero_output_for_mask}

    def get_config(self):
        from .serialization import serialize
        return {**self._rnn_config(), "cell": serialize(self.cell)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from .serialization import deserialize
        config = dict(config)
        cell = config.pop("cell")
        if isinstance(cell, dict):
            cell = deserialize(cell, custom_objects)
        elif _nested(cell):
            cell = [deserialize(c, custom_objects) if isinstance(c, dict) else c for c in cell]
        return cls(cell, **config)


def _sequence_shape(shape):
    """The sequence's shape from a layer's input shape(s) (a list [sequence, *states] included)."""
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        shape = shape[0]
    return tuple(shape)


_CELL_ATTRS = {"units", "activation", "recurrent_activation", "use_bias", "kernel_initializer",
               "recurrent_initializer", "bias_initializer", "kernel_regularizer", "recurrent_regularizer",
               "bias_regularizer", "kernel_constraint", "recurrent_constraint", "bias_constraint", "dropout",
               "recurrent_dropout", "seed"}

_LAYER_KEYS = ("name", "trainable", "dtype", "input_shape", "batch_input_shape", "input_dim", "batch_size",
               "input_length")


class _CellRNN(RNN):
    """SimpleRNN / LSTM / GRU: an RNN that makes its own cell from the cell's arguments, with the
    cell's arguments in its config (Keras's layout), run by the fused op when it applies."""

    _ndim = 3
    _cell_class = SimpleRNNCell
    _cell_name = "simple_rnn_cell"
    _cell_args = ()  # cell-specific __init__ arguments (beyond _Cell's)

    def __init__(self, units, return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 unroll=False, zero_output_for_mask=False, activity_regularizer=None, use_cudnn="auto", **kwargs):
        layer_kw = {k: kwargs.pop(k) for k in _LAYER_KEYS if k in kwargs}
        who = type(self).__name__
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"{who}: `use_cudnn` must be 'auto', True or False, received {use_cudnn!r}")
        try:
            cell = self._cell_class(units, name=self._cell_name, dtype=layer_kw.get("dtype"),
                                    trainable=layer_kw.get("trainable", True), **kwargs)
        except TypeError as e:
            raise TypeError(str(e).replace(self._cell_class.__name__, who)) from None
        except ValueError as e:
            raise ValueError(str(e).replace(self._cell_class.__name__, who)) from None
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful, unroll=unroll,
                         zero_output_for_mask=zero_output_for_mask, activity_regularizer=activity_regularizer,
                         **layer_kw)
        self.use_cudnn = use_cudnn
        self.input_spec = InputSpec(ndim=3)

    # Keras exposes the cell's arguments on the layer
    def __getattr__(self, name):
        cell = self.__dict__.get("cell")
        if cell is not None and (name in _CELL_ATTRS or name in self._cell_args):
            return getattr(cell, name)
        prop = getattr(type(self), name, None)
        if isinstance(prop, property):  # a property that raised AttributeError: its own message, not ours
            return prop.fget(self)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def _use_fused(self, training):
        if self.use_cudnn is False:
            return False
        ok = _fused_ok(self.cell, training)
        if not ok and self.use_cudnn is True:
            raise ValueError(f"{type(self).__name__} '{self.name}': use_cudnn=True requires the fused sequence "
                             "kernel (lamina's stand-in for cuDNN), which needs activation='tanh', "
                             "recurrent_activation='sigmoid', reset_after=True (GRU) and, in training, no "
                             "recurrent_dropout. Pass use_cudnn='auto' to fall back to the per-step cell")
        return ok

    def get_config(self):
        config = self._rnn_config()
        cell_cfg = self.cell.get_config()
        for k in ("name", "trainable", "dtype", "batch_input_shape"):
            cell_cfg.pop(k, None)
        return {**config, **cell_cfg, "activity_regularizer": _regularizers.serialize(self.activity_regularizer)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class SimpleRNN(_CellRNN):
    """Fully connected RNN: h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias).

    Weights (in the cell `simple_rnn_cell`): kernel (features, units), recurrent_kernel
    (units, units), bias (units,)."""

    _cell_class = SimpleRNNCell
    _cell_name = "simple_rnn_cell"


class LSTM(_CellRNN):
    """Long Short-Term Memory (Hochreiter 1997), Keras's formulation and weights.

    Weights (in the cell `lstm_cell`): kernel (features, 4 * units), recurrent_kernel
    (units, 4 * units), bias (4 * units,), gates in the column order i, f, c, o. States [h, c].
    `unit_forget_bias=True` starts the forget gate's bias at 1."""

    _cell_class = LSTMCell
    _cell_name = "lstm_cell"
    _cell_args = ("unit_forget_bias",)


class GRU(_CellRNN):
    """Gated Recurrent Unit, Keras 3's formulation and weights (reset_after=True by default, the
    cuDNN-compatible variant; reset_after=False is Keras 2's original one).

    Weights (in the cell `gru_cell`): kernel (features, 3 * units), recurrent_kernel
    (units, 3 * units), bias (2, 3 * units) = [input bias; recurrent bias] ((3 * units,) with
    reset_after=False), gates z, r, h."""

    _cell_class = GRUCell
    _cell_name = "gru_cell"
    _cell_args = ("reset_after",)
