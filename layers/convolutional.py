"""Convolution layers (channels-last): Conv1D, Conv2D, and ZeroPadding2D."""
import numpy as np

from .. import activations as _activations
from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from .layer import InputSpec, Layer


def normalize_tuple(value, n, name, layer):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        t = (int(value),) * n
    else:
        try:
            t = tuple(int(v) for v in value)
        except TypeError:
            raise ValueError(f"{layer}: `{name}` must be an int or a tuple of {n} ints, received {value!r}") from None
    if len(t) != n or any(v <= 0 for v in t):
        raise ValueError(f"{layer}: `{name}` must be {n} positive int(s), received {value!r}")
    return t


def _conv_len(size, k, stride, dilation, padding):
    if size is None:
        return None
    eff = (k - 1) * dilation + 1
    if padding == "same":
        return -(-size // stride)
    if padding == "causal":
        return -(-size // stride)
    return max((size - eff) // stride + 1, 0)


class _Conv(Layer):
    rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1, groups=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        cls = type(self).__name__
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError(f"{cls}: `filters` must be a positive integer, received filters={filters!r}")
        self.filters = int(filters)
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size", cls)
        self.strides = normalize_tuple(strides, self.rank, "strides", cls)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate", cls)
        padding = str(padding).lower()
        allowed = ("valid", "same", "causal") if self.rank == 1 else ("valid", "same")
        if padding not in allowed:
            raise ValueError(f"{cls}: `padding` must be one of {allowed}, received {padding!r}")
        self.padding = padding
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{cls}: only data_format='channels_last' is supported, received {data_format!r}")
        if groups != 1:
            raise ValueError(f"{cls}: groups={groups} is not supported; use groups=1")
        self.groups = 1
        self.activation = _activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.input_spec = InputSpec(min_ndim=self.rank + 2)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{type(self).__name__} '{self.name}': the channel dimension (last axis) of the input "
                             f"must be known, received shape {input_shape}")
        self.kernel = self.add_weight(name="kernel", shape=self.kernel_size + (channels, self.filters),
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer) if self.use_bias else None
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={-1: channels})

    def call(self, inputs):
        x = inputs
        padding = self.padding
        if padding == "causal":
            left = (self.kernel_size[0] - 1) * self.dilation_rate[0]
            x = ops.pad(x, ((0, 0), (left, 0), (0, 0)))
            padding = "valid"
        y = ops.conv(x, self.kernel, strides=self.strides, padding=padding, dilation_rate=self.dilation_rate)
        if self.bias is not None:
            y = ops.add(y, self.bias)
        return self.activation(y) if self.activation is not _activations.linear else y

    def compute_output_shape(self, input_shape):
        spatial = tuple(_conv_len(input_shape[1 + i], self.kernel_size[i], self.strides[i], self.dilation_rate[i],
                                  self.padding) for i in range(self.rank))
        return (input_shape[0],) + spatial + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "data_format": "channels_last",
                "dilation_rate": self.dilation_rate, "groups": self.groups,
                "activation": _activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer),
                "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": _regularizers.serialize(self.bias_regularizer)}


class Conv2D(_Conv):
    """2-D convolution over (batch, height, width, channels); kernel (kh, kw, in, filters)."""
    rank = 2


class Conv1D(_Conv):
    """1-D convolution over (batch, steps, channels); kernel (kw, in, filters); padding may be 'causal'."""
    rank = 1


class ZeroPadding2D(Layer):
    """Pads height and width with zeros: an int, (sym_h, sym_w) or ((top, bottom), (left, right))."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"ZeroPadding2D: only data_format='channels_last' is supported, received {data_format!r}")
        try:
            if isinstance(padding, int):
                pads = ((padding, padding), (padding, padding))
            elif len(padding) == 2 and all(isinstance(p, int) for p in padding):
                pads = ((padding[0], padding[0]), (padding[1], padding[1]))
            else:
                pads = tuple(tuple(int(v) for v in p) for p in padding)
                assert len(pads) == 2 and all(len(p) == 2 for p in pads)
        except (TypeError, AssertionError):
            raise ValueError(f"ZeroPadding2D: `padding` must be an int, a tuple of 2 ints or a tuple of 2 tuples of "
                             f"2 ints, received {padding!r}") from None
        if any(v < 0 for p in pads for v in p):
            raise ValueError(f"ZeroPadding2D: padding must be >= 0, received {padding!r}")
        self.padding = pads
        self.input_spec = InputSpec(ndim=4)

    def call(self, inputs):
        return ops.pad(inputs, ((0, 0),) + self.padding + ((0, 0),))

    def compute_output_shape(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        (t, b), (l, r) = self.padding
        return (input_shape[0], None if h is None else h + t + b, None if w is None else w + l + r, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "data_format": "channels_last"}
