"""RNN cells, as Keras 3's: SimpleRNNCell, LSTMCell, GRUCell (Keras's arguments, weights, gate
order and dropout masks), StackedRNNCells, the DropoutRNNCell mixin, and the helpers the RNN
layer (layers/recurrent.py) shares with them: nested state structures and the cell protocol
checks.

A cell is any layer (or object) with `state_size` (an int, or a list: one entry per state tensor),
optionally `output_size`, and `call(inputs, states, training=None)` returning
`(output, new_states)` for one step; optionally `get_initial_state(batch_size)`. The built-in
cells check the sizes of their weights before creating any (a MemoryError naming the cell and
the weight for sizes no machine holds)."""
import numpy as np

from .. import activations as _activations
from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from ..backend import dtypes, validation
from ..backend.random import SeedGenerator
from ..backend.tensor import Tensor
from ..backend.validation import positive_int as _positive_int
from .layer import Layer


def _rate(layer, arg, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{layer}: `{arg}` must be a number in [0, 1), received {arg}={value!r}") from None
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{layer}: `{arg}` must be a number in [0, 1), received {arg}={value!r}; it is the "
                         "fraction of the units to drop")
    return v


def _activation(layer, arg, value):
    try:
        return _activations.get(value)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{layer}: `{arg}`: {e}") from None


def _float(x):
    x = x if isinstance(x, Tensor) else ops.convert_to_tensor(x)
    return x if x.dtype == dtypes.FLOAT32 else ops.cast(x, "float32")


# ---- nested state structures (lists of lists of tensors, or of sizes) --------------------------

def _nested(x):
    return isinstance(x, (list, tuple))


def _flatten(x):
    return [leaf for v in x for leaf in _flatten(v)] if _nested(x) else [x]


def _pack(template, leaves):
    """`leaves` in the list structure of `template`."""
    it = iter(leaves)

    def go(t):
        return [go(v) for v in t] if _nested(t) else next(it)
    return go(template)


def _describe(cell):
    return f"{type(cell).__name__}" + (f" '{cell.name}'" if isinstance(getattr(cell, "name", None), str) else "")


def _check_cell(who, cell):
    """Raises ValueError unless `cell` has a `call` method and a valid `state_size`."""
    if cell is None or not callable(getattr(cell, "call", None)):
        raise ValueError(f"{who}: a cell needs a `call(inputs, states, training=None)` method that returns "
                         f"(output, new_states) for one time step, received cell={cell!r}")
    size = getattr(cell, "state_size", None)
    if size is None:
        raise ValueError(f"{who}: the cell {_describe(cell)} has no `state_size` attribute. A cell declares the "
                         "sizes of its states: an integer for one state tensor of shape (batch, size), or a list "
                         "of integers, one per state tensor. Set it in the cell's __init__, e.g. "
                         "`self.state_size = units`")

    def ok(s):
        if _nested(s):
            return len(s) > 0 and all(ok(v) for v in s)
        return isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0
    if not ok(size):
        raise ValueError(f"{who}: the `state_size` of the cell {_describe(cell)} must be a positive integer or a "
                         f"non-empty list of positive integers (one per state tensor), received {size!r}")


def _cell_output_size(cell):
    size = getattr(cell, "output_size", None)
    if size is None:
        size = _flatten(cell.state_size)[0]
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"The `output_size` of the cell {_describe(cell)} must be an integer, received {size!r}")
    return int(size)


def _call_cell(cell, inputs, states, training):
    """One step of `cell`, through Layer.__call__ for layers (which builds and resolves `training`)."""
    fn = cell if callable(cell) else cell.call
    if isinstance(cell, Layer):
        return fn(inputs, states, training=training)
    import inspect
    try:
        takes = "training" in inspect.signature(cell.call).parameters
    except (TypeError, ValueError):
        takes = False
    return fn(inputs, states, training=training) if takes else fn(inputs, states)


# ---- dropout masks, as Keras's DropoutRNNCell ----------------------------------------------------

class DropoutRNNCell:
    """Mixin for cells with `dropout`, `recurrent_dropout` and `seed_generator` (Keras's
    DropoutRNNCell): one mask per sequence, drawn at the first step and reused at every step
    until `reset_dropout_mask()` / `reset_recurrent_dropout_mask()` (the RNN layer resets them
    around each call). With `dropout_mask_count = n` each is a list of n masks (one per gate)."""

    def _create_dropout_mask(self, step_input, rate):
        ones = ops.ones(step_input.shape)
        count = getattr(self, "dropout_mask_count", None)
        seed = getattr(self, "seed_generator", None)
        if count is None:
            return ops.dropout(ones, rate, seed=seed)
        return [ops.dropout(ones, rate, seed=seed) for _ in range(count)]

    def get_dropout_mask(self, step_input):
        if getattr(self, "_dropout_mask", None) is None and self.dropout > 0:
            self._dropout_mask = self._create_dropout_mask(step_input, self.dropout)
        return getattr(self, "_dropout_mask", None)

    def get_recurrent_dropout_mask(self, step_input):
        if getattr(self, "_recurrent_dropout_mask", None) is None and self.recurrent_dropout > 0:
            self._recurrent_dropout_mask = self._create_dropout_mask(step_input, self.recurrent_dropout)
        return getattr(self, "_recurrent_dropout_mask", None)

    def reset_dropout_mask(self):
        self._dropout_mask = None

    def reset_recurrent_dropout_mask(self):
        self._recurrent_dropout_mask = None


def _project(x, w, mask, gates):
    """x @ w, x multiplied by its dropout mask first (a list: one mask per gate's column block)."""
    if mask is None:
        return ops.matmul(x, w)
    if not isinstance(mask, list):
        return ops.matmul(x * mask, w)
    blocks = ops.split(w, gates, axis=1)
    return ops.concatenate([ops.matmul(x * m, b) for m, b in zip(mask, blocks)], axis=-1)


# ---- cells ---------------------------------------------------------------------------------------

class _Cell(DropoutRNNCell, Layer):
    """What the three cells share: arguments, weights, config. G = gates (4 LSTM, 3 GRU, 1 RNN)."""

    G = 1

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        implementation = kwargs.pop("implementation", 2)
        super().__init__(**kwargs)
        who = type(self).__name__
        self.units = _positive_int(who, "units", units)
        self.activation = _activation(who, "activation", activation)
        if self.G > 1:
            self.recurrent_activation = _activation(who, "recurrent_activation", recurrent_activation)
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
        if self.G > 1:
            # Keras's choice of matmul grouping; 1 (forced by recurrent_dropout) draws one dropout
            # mask per gate. Keras 2's 0 computes as 2.
            if implementation not in (0, 1, 2) or isinstance(implementation, bool):
                raise ValueError(f"{who}: `implementation` must be 1 or 2, received implementation={implementation!r}")
            self.implementation = 1 if self.recurrent_dropout else implementation
            if self.implementation == 1:
                self.dropout_mask_count = self.G
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
        # every size checked before anything is allocated (a huge `units` fails here, not in an initializer)
        validation.check_weight(self, "kernel", (in_dim, gu), self.dtype)
        validation.check_weight(self, "recurrent_kernel", (self.units, gu), self.dtype)
        validation.check_weight(self, "bias", self._bias_shape(), self.dtype)
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
        return [ops.zeros((batch_size, d)) for d in _flatten(self.state_size)]

    def call(self, inputs, states, training=None):
        """One step: inputs (batch, features), states [h] ([h, c] for the LSTM) -> (h, new states),
        the states as a list when they came as one (Keras's convention)."""
        nested = _nested(states)
        sts = [_float(s) for s in (states if nested else [states])]
        n = len(_flatten(self.state_size))
        if len(sts) != n:
            raise ValueError(f"{type(self).__name__} '{self.name}': expected {n} state tensor(s) "
                             f"({'[h, c]' if n == 2 else '[h]'}, each of shape (batch, {self.units})), "
                             f"received {len(sts)}")
        x = _float(inputs)
        dp = self.get_dropout_mask(x) if training and self.dropout > 0 else None
        rdp = self.get_recurrent_dropout_mask(sts[0]) if training and self.recurrent_dropout > 0 else None
        output, new = self._step(x, sts, dp, rdp)
        return output, (new if nested or len(new) > 1 else new[0])

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
    """The cell of SimpleRNN: h = activation(x @ kernel + bias + h_prev @ recurrent_kernel).

    Weights: kernel (features, units), recurrent_kernel (units, units), bias (units,)."""

    G = 1

    def __init__(self, units, activation="tanh", **kwargs):
        if "recurrent_activation" in kwargs:
            raise TypeError("SimpleRNNCell: unrecognized keyword argument 'recurrent_activation' (a SimpleRNN has "
                            "no gates)")
        kwargs.pop("implementation", None)  # Keras 2's SimpleRNN took it; one matmul each way here
        super().__init__(units, activation=activation, **kwargs)

    def _step(self, x, states, dp, rdp):
        z = _project(x, self.kernel, dp, 1)
        if self.bias is not None:
            z = z + self.bias
        h = self.activation(z + _project(states[0], self.recurrent_kernel, rdp, 1))
        return h, [h]


class LSTMCell(_Cell):
    """The cell of LSTM: gates i, f, c, o in the kernels' column blocks (Keras's order).

    Weights: kernel (features, 4 * units), recurrent_kernel (units, 4 * units), bias (4 * units,).
    States [h, c]:  i, f, o = recurrent_activation(.), c = f * c_prev + i * activation(.),
    h = o * activation(c). `unit_forget_bias=True` starts the forget gate's bias at 1."""

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

    def _step(self, x, states, dp, rdp):
        h_prev, c_prev = states
        z = _project(x, self.kernel, dp, 4) + _project(h_prev, self.recurrent_kernel, rdp, 4)
        if self.bias is not None:
            z = z + self.bias
        zi, zf, zc, zo = ops.split(z, 4, axis=-1)
        act, ract = self.activation, self.recurrent_activation
        c = ract(zf) * c_prev + ract(zi) * act(zc)
        h = ract(zo) * act(c)
        return h, [h, c]

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class GRUCell(_Cell):
    """The cell of GRU: gates z, r, h in the kernels' column blocks (Keras's order).

    reset_after=True (Keras 3's default, the cuDNN-compatible variant): bias (2, 3 * units) =
    [input bias; recurrent bias], hh = activation(x K_h + b_h + r * (h R_h + b'_h)).
    reset_after=False: bias (3 * units,), hh = activation(x K_h + b_h + (r * h) R_h).
    h_new = z * h + (1 - z) * hh."""

    G = 3

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _step(self, x, states, dp, rdp):
        h_prev = states[0]
        U = self.units
        bias = self.bias
        if bias is not None and self.reset_after:
            b_in, b_rec = ops.unstack(bias, axis=0)
        else:
            b_in, b_rec = bias, None
        mx = _project(x, self.kernel, dp, 3)
        if b_in is not None:
            mx = mx + b_in
        x_z, x_r, x_h = ops.split(mx, 3, axis=-1)
        if self.reset_after:
            mi = _project(h_prev, self.recurrent_kernel, rdp, 3)
            if b_rec is not None:
                mi = mi + b_rec
            r_z, r_r, r_h = ops.split(mi, 3, axis=-1)
        else:
            k_zr, k_h = ops.split(self.recurrent_kernel, [2 * U], axis=1)
            r_z, r_r = ops.split(_project(h_prev, k_zr, rdp[:2] if isinstance(rdp, list) else rdp, 2), 2, axis=-1)
        z = self.recurrent_activation(x_z + r_z)
        r = self.recurrent_activation(x_r + r_r)
        if self.reset_after:
            hh = self.activation(x_h + r * r_h)
        else:
            h_h = h_prev if rdp is None else h_prev * (rdp[2] if isinstance(rdp, list) else rdp)
            hh = self.activation(x_h + ops.matmul(r * h_h, k_h))
        h = z * h_prev + (1.0 - z) * hh
        return h, [h]

    def get_config(self):
        return {**super().get_config(), "reset_after": self.reset_after}


class StackedRNNCells(Layer):
    """Cells run one after the other at each step, as one cell (Keras's StackedRNNCells): the
    output of a cell is the input of the next; the states are one entry per cell."""

    def __init__(self, cells, **kwargs):
        super().__init__(**kwargs)
        if not _nested(cells) or not cells:
            raise ValueError(f"StackedRNNCells: `cells` must be a non-empty list of RNN cells, received {cells!r}")
        for cell in cells:
            _check_cell("StackedRNNCells", cell)
        self.cells = list(cells)

    @property
    def state_size(self):
        return [c.state_size for c in self.cells]

    @property
    def output_size(self):
        return _cell_output_size(self.cells[-1])

    def get_initial_state(self, batch_size=None):
        out = []
        for cell in self.cells:
            fn = getattr(cell, "get_initial_state", None)
            if fn is not None:
                out.append(fn(batch_size=batch_size))
            elif _nested(cell.state_size):
                out.append([ops.zeros((batch_size, d)) for d in cell.state_size])
            else:
                out.append(ops.zeros((batch_size, cell.state_size)))
        return out

    def build(self, input_shape):
        shape = tuple(input_shape)
        for cell in self.cells:
            if isinstance(cell, Layer) and not cell.built:
                cell._maybe_build(shape)
            shape = (shape[0], _cell_output_size(cell))

    def call(self, inputs, states, training=None):
        if not _nested(states) or len(states) != len(self.cells):
            n = len(states) if _nested(states) else 1
            raise ValueError(f"StackedRNNCells '{self.name}': expected one state entry per cell ({len(self.cells)}), "
                             f"received {n}")
        new_states = []
        for cell, st in zip(self.cells, states):
            was_list = _nested(st)
            inputs, st = _call_cell(cell, inputs, list(st) if was_list else [st], training)
            if not _nested(st):
                st = [st]
            new_states.append(list(st) if was_list or len(st) > 1 else st[0])
        return inputs, new_states

    def get_config(self):
        from .serialization import serialize
        return {**super().get_config(), "cells": [serialize(c) for c in self.cells]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from .serialization import deserialize
        config = dict(config)
        cells = [deserialize(c, custom_objects) if isinstance(c, dict) else c for c in config.pop("cells")]
        return cls(cells, **config)
