"""Transposed convolution layers: Conv1DTranspose, Conv2DTranspose (Keras's BaseConvTranspose),
and the base they share with Conv3D (layers/convolutional3d.py).

Weights, in Keras's order and layout: `kernel` (*kernel_size, filters, in_channels) for the
transposed layers ((*kernel_size, in_channels, filters) for Conv3D), then `bias` (filters,).
Both data formats are supported; the ops (ops.conv_transpose, ops.conv) do the maths.
"""
import numpy as np

from .. import activations as _activations
from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from ..backend import validation
from ..backend.convolution_transpose import output_length
from .convolutional import _data_format, normalize_tuple, run_op  # noqa: F401  (_data_format: pooling3d's)
from .layer import InputSpec, Layer


def _output_padding(who, value, rank, strides):
    """None, or `rank` ints >= 0 (an int for all), each strictly less than its stride."""
    if value is None:
        return None
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    if is_int(value):
        value = (value,) * rank
    if (not isinstance(value, (list, tuple)) or len(value) != rank or not all(is_int(v) for v in value)
            or any(v < 0 for v in value)):
        raise ValueError(f"{who}: `output_padding` must be None, an int >= 0 or a tuple of {rank} ints >= 0, "
                         f"received output_padding={value!r}")
    pads = tuple(int(v) for v in value)
    for i, (p, s) in enumerate(zip(pads, strides)):
        if p >= s:
            raise ValueError(f"{who}: `output_padding` must be strictly less than `strides` in every dimension; "
                             f"at index {i} output_padding is {p} and strides is {s} (received "
                             f"output_padding={pads}, strides={strides}). Lower output_padding or raise strides")
    return pads


class _ConvLayer(Layer):
    """What Conv3D and the transposed convolutions share: the arguments and their checks, the
    weights, bias and activation, and the config. Subclasses set `rank` and define
    `_kernel_shape(channels)`, `_convolve(inputs)` and `_spatial_out(input_spatial)`."""
    rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        cls = type(self).__name__
        self.filters = validation.positive_int(cls, "filters", filters)
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size", cls)
        self.strides = normalize_tuple(strides, self.rank, "strides", cls)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate", cls)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"{cls}: `strides` > 1 is not supported together with `dilation_rate` > 1 (as in "
                             f"Keras), received strides={self.strides} and dilation_rate={self.dilation_rate}; "
                             f"use one or the other")
        p = padding.lower() if isinstance(padding, str) else padding
        if p not in ("valid", "same"):
            raise ValueError(f"{cls}: `padding` must be 'valid' or 'same', received padding={padding!r}")
        self.padding = p
        self.data_format = _data_format(cls, data_format)
        self.activation = _activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel_constraint = _constraints.get(kernel_constraint)
        self.bias_constraint = _constraints.get(bias_constraint)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def _layout(self):
        sp = {1: "steps", 2: "height, width", 3: "depth, height, width"}[self.rank]
        return f"(batch, {sp}, channels)" if self.data_format == "channels_last" else f"(batch, channels, {sp})"

    def build(self, input_shape):
        who = f"{type(self).__name__} '{self.name}'"
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"{who}: expected inputs of rank {self.rank + 2} {self._layout()}, received shape "
                             f"{tuple(input_shape)}")
        channels = input_shape[self._channel_axis()]
        if channels is None:
            raise ValueError(f"{who}: the channel dimension (axis {self._channel_axis()}, {self.data_format}) of "
                             f"the input must be known, received shape {tuple(input_shape)}")
        shape = self._kernel_shape(channels)
        validation.check_weight(self, "kernel", shape, self.dtype)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint) if self.use_bias else None
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={self._channel_axis(): channels})

    def call(self, inputs):
        y = run_op(self, self._convolve, inputs)
        if self.bias is not None:
            b = self.bias if self.data_format == "channels_last" else ops.reshape(self.bias, (-1,) + (1,) * self.rank)
            y = ops.add(y, b)
        return self.activation(y) if self.activation is not _activations.linear else y

    def compute_output_shape(self, input_shape):
        first = 1 if self.data_format == "channels_last" else 2
        spatial = self._spatial_out(tuple(input_shape[first:first + self.rank]))
        if self.data_format == "channels_last":
            return (input_shape[0],) + spatial + (self.filters,)
        return (input_shape[0], self.filters) + spatial

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate, "activation": _activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer),
                "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": _regularizers.serialize(self.activity_regularizer),
                "kernel_constraint": _constraints.serialize(self.kernel_constraint),
                "bias_constraint": _constraints.serialize(self.bias_constraint)}


class _ConvTranspose(_ConvLayer):
    """Transposed convolution (Keras's BaseConvTranspose): the input gradient of a convolution,
    from something of a convolution's output shape to something of its input shape. Output
    lengths: "valid": (size - 1) * stride + dk + output_padding, "same": size * stride (with
    output_padding None), dk = (kernel_size - 1) * dilation_rate + 1."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, data_format=data_format,
                         dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                         activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                         bias_constraint=bias_constraint, **kwargs)
        self.output_padding = _output_padding(type(self).__name__, output_padding, self.rank, self.strides)

    def _kernel_shape(self, channels):
        return self.kernel_size + (self.filters, channels)

    def _convolve(self, inputs):
        return ops.conv_transpose(inputs, self.kernel, strides=self.strides, padding=self.padding,
                                  output_padding=self.output_padding, data_format=self.data_format,
                                  dilation_rate=self.dilation_rate)

    def _spatial_out(self, spatial):
        op = self.output_padding or (None,) * self.rank
        return tuple(output_length(spatial[i], self.kernel_size[i], self.strides[i], self.dilation_rate[i],
                                   self.padding, op[i]) for i in range(self.rank))

    def get_config(self):
        return {**super().get_config(), "output_padding": self.output_padding}


class Conv2DTranspose(_ConvTranspose):
    """Transposed 2-D convolution over (batch, height, width, channels) (or channels_first);
    kernel (kh, kw, filters, in_channels)."""
    rank = 2


class Conv1DTranspose(_ConvTranspose):
    """Transposed 1-D convolution over (batch, steps, channels) (or channels_first); kernel
    (kw, filters, in_channels)."""
    rank = 1

