"""Convolutional LSTMs (Shi et al., "Convolutional LSTM Network", 2015), as Keras's ConvLSTM1D,
ConvLSTM2D and ConvLSTM3D: an LSTM whose input and recurrent products are convolutions, over
sequences of images (batch, time, *spatial, channels), channels-last.

The cell (`ConvLSTMCell`) has Keras's weights (kernel `kernel_size + (channels, 4 * filters)`,
recurrent_kernel `kernel_size + (filters, 4 * filters)`, bias `(4 * filters,)`, gates in the order
i, f, c, o) and step: the input convolution takes the layer's strides, padding and dilation, the
recurrent one strides 1 and "same" padding, so the states keep the input convolution's output
shape. Without dropout each step runs one convolution of each kind for all four gates; with
dropout, one per gate (each gate its own mask, as Keras). The layers run on lamina's RNN loop
(masks, initial states, go_backwards, return_state, stateful)."""
from .. import activations as _activations
from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from ..backend import random as _random
from ..backend import validation
from .convolutional import _conv_len, _data_format, normalize_tuple
from .layer import InputSpec, Layer
from .recurrent import RNN
from .rnn_cells import DropoutRNNCell


class ConvLSTMCell(DropoutRNNCell, Layer):
    """One step of a convolutional LSTM of rank 1, 2 or 3 (Keras's ConvLSTMCell)."""

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 activation="tanh", recurrent_activation="sigmoid", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", unit_forget_bias=True,
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        if rank not in (1, 2, 3):
            raise ValueError(f"{cls}: rank must be 1, 2 or 3, received rank={rank!r}")
        self.rank = rank
        self.filters = validation.positive_int(cls, "filters", filters)
        self.kernel_size = normalize_tuple(kernel_size, rank, "kernel_size", cls)
        self.strides = normalize_tuple(strides, rank, "strides", cls)
        self.dilation_rate = normalize_tuple(dilation_rate, rank, "dilation_rate", cls)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"{cls}: strides > 1 is not compatible with dilation_rate > 1; received "
                             f"strides={self.strides} and dilation_rate={self.dilation_rate}")
        self.padding = str(padding).lower()
        if self.padding not in ("valid", "same"):
            raise ValueError(f"{cls}: padding must be 'valid' or 'same', received padding={padding!r}")
        if _data_format(cls, data_format) != "channels_last":
            raise ValueError(f"{cls}: only data_format='channels_last' is supported (inputs (batch, time, *spatial, "
                             f"channels)), received {data_format!r}"
                             + (" (None: lamina.config.image_data_format() is 'channels_first')"
                                if data_format is None else ""))
        self.data_format = "channels_last"
        self.activation = _activations.get(activation)
        self.recurrent_activation = _activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.recurrent_initializer = _initializers.get(recurrent_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = _regularizers.get(recurrent_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel_constraint = _constraints.get(kernel_constraint)
        self.recurrent_constraint = _constraints.get(recurrent_constraint)
        self.bias_constraint = _constraints.get(bias_constraint)
        self.dropout = min(1.0, max(0.0, float(dropout)))
        self.recurrent_dropout = min(1.0, max(0.0, float(recurrent_dropout)))
        self.seed = seed
        self.seed_generator = _random.SeedGenerator(seed)
        self.dropout_mask_count = 4
        self.state_size = [self.filters, self.filters]   # channels of h and c; their shapes: state_shape()
        self.output_size = self.filters
        self.input_spec = InputSpec(ndim=rank + 2)

    def build(self, input_shape):
        cls = f"{type(self).__name__} '{self.name}'"
        spatial, channels = tuple(input_shape[1:-1]), input_shape[-1]
        if len(spatial) != self.rank:
            raise ValueError(f"{cls}: expected steps of shape (batch, {', '.join(['dim'] * self.rank)}, channels), "
                             f"received shape {tuple(input_shape)}")
        if None in spatial:
            raise ValueError(f"{cls}: the spatial dimensions must be known (ConvLSTM layers need static input "
                             f"shapes), received input shape {tuple(input_shape)}")
        if channels is None:
            raise ValueError(f"{cls}: the channel dimension (last axis) must be known, received shape "
                             f"{tuple(input_shape)}")
        self.spatial_dims, self.input_dim = spatial, channels
        f4 = 4 * self.filters
        self.kernel = self.add_weight(name="kernel", shape=self.kernel_size + (channels, f4),
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=self.kernel_size + (self.filters, f4),
                                                initializer=self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        if self.use_bias:
            init = self.bias_initializer
            if self.unit_forget_bias:   # the forget gate's bias starts at one
                f, base = self.filters, self.bias_initializer

                def init(shape, dtype=None):
                    return ops.concatenate([base((f,), dtype), ops.ones((f,)), base((2 * f,), dtype)])
            self.bias = self.add_weight(name="bias", shape=(f4,), initializer=init, regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)
        else:
            self.bias = None
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={-1: channels})

    def state_shape(self, batch):
        """(batch, *spatial, filters): the input convolution's output shape."""
        spatial = tuple(_conv_len(d, k, s, r, self.padding) for d, k, s, r in
                        zip(self.spatial_dims, self.kernel_size, self.strides, self.dilation_rate))
        return (batch,) + spatial + (self.filters,)

    def get_initial_state(self, batch_size=None):
        shape = self.state_shape(batch_size)
        return [ops.zeros(shape), ops.zeros(shape)]

    def _run(self, op, *args, **kwargs):
        """op(...), its errors prefixed with the layer that owns this cell (or the cell)."""
        try:
            return op(*args, **kwargs)
        except (TypeError, ValueError, MemoryError) as e:
            owner = getattr(self, "_owner", None) or f"{type(self).__name__} '{self.name}'"
            raise type(e)(f"{owner}: {e}") from e

    def _input_conv(self, x, w, b):
        y = self._run(ops.conv, x, w, strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate)
        return y if b is None else ops.add(y, b)

    def _recurrent_conv(self, h, w):
        return self._run(ops.conv, h, w, strides=1, padding="same")

    def call(self, inputs, states, training=None):
        h, c = states[0], states[1]
        dp = self.get_dropout_mask(inputs) if training and 0.0 < self.dropout < 1.0 else None
        rdp = self.get_recurrent_dropout_mask(h) if training and 0.0 < self.recurrent_dropout < 1.0 else None
        if dp is None and rdp is None:   # all four gates in one convolution of each kind
            z = ops.add(self._input_conv(inputs, self.kernel, self.bias), self._recurrent_conv(h, self.recurrent_kernel))
            zi, zf, zc, zo = ops.split(z, 4, axis=-1)
        else:
            axis = self.rank + 1
            ks = ops.split(self.kernel, 4, axis=axis)
            rks = ops.split(self.recurrent_kernel, 4, axis=axis)
            bs = ops.split(self.bias, 4) if self.bias is not None else [None] * 4
            zi, zf, zc, zo = (ops.add(self._input_conv(inputs if dp is None else ops.multiply(inputs, dp[g]), ks[g],
                                                       bs[g]),
                                      self._recurrent_conv(h if rdp is None else ops.multiply(h, rdp[g]), rks[g]))
                              for g in range(4))
        i = self.recurrent_activation(zi)
        f = self.recurrent_activation(zf)
        c = ops.add(ops.multiply(f, c), ops.multiply(i, self.activation(zc)))
        o = self.recurrent_activation(zo)
        h = ops.multiply(o, self.activation(c))
        return h, [h, c]

    def compute_output_shape(self, input_shape, states_shape=None):
        shape = self.state_shape(input_shape[0])
        return shape, [shape, shape]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate, "activation": _activations.serialize(self.activation),
                "recurrent_activation": _activations.serialize(self.recurrent_activation), "use_bias": self.use_bias,
                "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": _initializers.serialize(self.recurrent_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer),
                "unit_forget_bias": self.unit_forget_bias,
                "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
                "recurrent_regularizer": _regularizers.serialize(self.recurrent_regularizer),
                "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": _constraints.serialize(self.kernel_constraint),
                "recurrent_constraint": _constraints.serialize(self.recurrent_constraint),
                "bias_constraint": _constraints.serialize(self.bias_constraint), "dropout": self.dropout,
                "recurrent_dropout": self.recurrent_dropout, "seed": self.seed}


_CELL_ARGS = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "activation",
              "recurrent_activation", "use_bias", "kernel_initializer", "recurrent_initializer", "bias_initializer",
              "unit_forget_bias", "kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
              "kernel_constraint", "recurrent_constraint", "bias_constraint", "dropout", "recurrent_dropout", "seed")


class ConvLSTM(RNN):
    """The layer over a ConvLSTMCell of rank `rank`: inputs (batch, time, *spatial, channels)."""
    rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 activation="tanh", recurrent_activation="sigmoid", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", unit_forget_bias=True,
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, **kwargs):
        if kwargs.get("unroll"):
            raise ValueError(f"{type(self).__name__}: unroll=True is not supported (the step loop is always the "
                             "unrolled one); leave unroll=False")
        kwargs.pop("unroll", None)
        cell = ConvLSTMCell(self.rank, filters, kernel_size, strides=strides, padding=padding, data_format=data_format,
                            dilation_rate=dilation_rate, activation=activation,
                            recurrent_activation=recurrent_activation, use_bias=use_bias,
                            kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
                            bias_initializer=bias_initializer, unit_forget_bias=unit_forget_bias,
                            kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
                            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                            recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
                            dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed, name="conv_lstm_cell",
                            dtype=kwargs.get("dtype"))
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards, stateful=stateful, activity_regularizer=activity_regularizer,
                         **kwargs)
        self._ndim = self.rank + 3
        self.input_spec = InputSpec(ndim=self.rank + 3)
        self.cell._owner = f"{type(self).__name__} '{self.name}'"   # the cell's errors name this layer

    def build(self, input_shape):
        if len(input_shape) != self.rank + 3:
            dims = ", ".join(["dim"] * self.rank)
            raise ValueError(f"{type(self).__name__} '{self.name}': expected inputs of shape (batch, time, {dims}, "
                             f"channels), received shape {tuple(input_shape)}")
        super().build(input_shape)

    def _state_shapes(self, batch):
        return [self.cell.state_shape(batch)] * 2

    def _step_output_shape(self, batch):
        return self.cell.state_shape(batch)

    def _use_fused(self, training):
        return False

    def get_config(self):
        cell = self.cell.get_config()
        config = {k: cell[k] for k in _CELL_ARGS}
        config.update(self._rnn_config())
        config["activity_regularizer"] = _regularizers.serialize(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)



for _name in _CELL_ARGS:   # layer.filters, layer.kernel_size, ...: the cell's, as Keras's properties
    setattr(ConvLSTM, _name, property(lambda self, _n=_name: getattr(self.cell, _n)))


class ConvLSTM1D(ConvLSTM):
    """Inputs (batch, time, rows, channels)."""
    rank = 1


class ConvLSTM2D(ConvLSTM):
    """Inputs (batch, time, rows, cols, channels)."""
    rank = 2


class ConvLSTM3D(ConvLSTM):
    """Inputs (batch, time, dim1, dim2, dim3, channels)."""
    rank = 3
