"""Convolution layers: Conv1D, Conv2D (channels-last), DepthwiseConv1D/2D, SeparableConv1D/2D, and
ZeroPadding2D."""
import numpy as np

from .. import activations as _activations
from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from ..backend import validation
from ..backend.nn import bias_relu
from ..backend.settings import standardize_data_format
from .layer import InputSpec, Layer


def normalize_tuple(value, n, name, layer):
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    if is_int(value):
        t = (int(value),) * n
    elif isinstance(value, (list, tuple)) and all(is_int(v) for v in value):
        t = tuple(int(v) for v in value)
    else:
        raise ValueError(f"{layer}: `{name}` must be an int or a tuple of {n} ints, received {value!r}")
    if len(t) != n or any(v <= 0 for v in t):
        raise ValueError(f"{layer}: `{name}` must be {n} positive int(s), received {value!r}")
    return t


def _activation(value, layer):
    """activations.get, with an error naming the layer class."""
    try:
        return _activations.get(value)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{layer}: {e}") from e


def _data_format(who, data_format):
    """None (-> image_data_format(), 'channels_last' unless set), "channels_last" or
    "channels_first" in any case; else a ValueError naming the layer."""
    return standardize_data_format(data_format, who)


def run_op(layer, op, *args, **kwargs):
    """op(*args, **kwargs), its argument and size errors (an input smaller than the window, a huge
    output...) prefixed with the layer that called it."""
    try:
        return op(*args, **kwargs)
    except (TypeError, ValueError, MemoryError) as e:
        raise type(e)(f"{type(layer).__name__} '{layer.name}': {e}") from e


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
        self.filters = validation.positive_int(cls, "filters", filters)
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size", cls)
        self.strides = normalize_tuple(strides, self.rank, "strides", cls)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate", cls)
        padding = str(padding).lower()
        allowed = ("valid", "same", "causal") if self.rank == 1 else ("valid", "same")
        if padding not in allowed:
            raise ValueError(f"{cls}: `padding` must be one of {allowed}, received {padding!r}")
        self.padding = padding
        if _data_format(cls, data_format) != "channels_last":
            raise ValueError(f"{cls}: only data_format='channels_last' is supported, received {data_format!r}"
                             + (" (None: lamina.config.image_data_format() is 'channels_first')"
                                if data_format is None else ""))
        self.groups = validation.positive_int(cls, "groups", groups)
        if self.filters % self.groups:
            raise ValueError(f"{cls}: the number of filters must be evenly divisible by the number of groups; "
                             f"received filters={filters}, groups={groups}")
        self.activation = _activation(activation, cls)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel_constraint = _constraints.get(kernel_constraint)
        self.bias_constraint = _constraints.get(bias_constraint)
        self.input_spec = InputSpec(min_ndim=self.rank + 2)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{type(self).__name__} '{self.name}': the channel dimension (last axis) of the input "
                             f"must be known, received shape {input_shape}")
        if channels % self.groups:
            raise ValueError(f"{type(self).__name__} '{self.name}': the number of input channels must be evenly "
                             f"divisible by the number of groups; received groups={self.groups} and an input of "
                             f"shape {tuple(input_shape)}")
        per_group = channels // self.groups   # each group's filters see their own slice of the channels
        validation.check_weight(self, "kernel", self.kernel_size + (per_group, self.filters), self.dtype)
        self.kernel = self.add_weight(name="kernel", shape=self.kernel_size + (per_group, self.filters),
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint) if self.use_bias else None
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={-1: channels})

    def call(self, inputs):
        x = inputs
        padding = self.padding
        if padding == "causal":
            left = (self.kernel_size[0] - 1) * self.dilation_rate[0]
            x = ops.pad(x, ((0, 0), (left, 0), (0, 0)))
            padding = "valid"
        y = self._convolve(x, padding)
        if self.bias is not None:
            if self.activation is _activations.relu:
                return bias_relu(y, self.bias)  # one pass instead of two, forward and backward
            y = ops.add(y, self.bias)
        return self.activation(y) if self.activation is not _activations.linear else y

    def _convolve(self, x, padding):
        """x * kernel; with groups, group g's filters over its slice of the channels: as one
        depthwise convolution when each group is one channel, else one convolution per group."""
        kw = dict(strides=self.strides, padding=padding, dilation_rate=self.dilation_rate)
        g = self.groups
        if g == 1:
            return run_op(self, ops.conv, x, self.kernel, **kw)
        channels = x.shape[-1]
        if channels == g:   # kernel (..., 1, g * m) is the depthwise kernel (..., g, m)
            kernel = ops.reshape(self.kernel, self.kernel_size + (g, self.filters // g))
            return run_op(self, ops.depthwise_conv, x, kernel, **kw)
        xs = ops.split(x, g, axis=-1)
        ks = ops.split(self.kernel, g, axis=-1)
        return ops.concatenate([run_op(self, ops.conv, xi, ki, **kw) for xi, ki in zip(xs, ks)], axis=-1)

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
                "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": _regularizers.serialize(self.activity_regularizer),
                "kernel_constraint": _constraints.serialize(self.kernel_constraint),
                "bias_constraint": _constraints.serialize(self.bias_constraint)}


class Conv2D(_Conv):
    """2-D convolution over (batch, height, width, channels); kernel (kh, kw, in, filters)."""
    rank = 2


class Conv1D(_Conv):
    """1-D convolution over (batch, steps, channels); kernel (kw, in, filters); padding may be 'causal'."""
    rank = 1


class _DepthwiseBase(Layer):
    """What depthwise and separable convolutions share: the depthwise arguments, their checks, the
    bias and activation, output shapes and config."""
    rank = 2

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        cls = type(self).__name__
        self.depth_multiplier = validation.positive_int(cls, "depth_multiplier", depth_multiplier)
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size", cls)
        self.strides = normalize_tuple(strides, self.rank, "strides", cls)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate", cls)
        p = padding.lower() if isinstance(padding, str) else padding
        if p not in ("valid", "same"):
            raise ValueError(f"{cls}: `padding` must be 'valid' or 'same', received padding={padding!r}")
        self.padding = p
        self.data_format = _data_format(cls, data_format)
        self.depthwise_constraint = _constraints.get(depthwise_constraint)
        self.bias_constraint = _constraints.get(bias_constraint)
        self.activation = _activation(activation, cls)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = _initializers.get(depthwise_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.depthwise_regularizer = _regularizers.get(depthwise_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.input_spec = InputSpec(min_ndim=self.rank + 2)

    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def _input_channels(self, input_shape):
        if len(input_shape) != self.rank + 2:
            sp = "steps" if self.rank == 1 else "height, width"
            layout = f"(batch, {sp}, channels)" if self.data_format == "channels_last" else f"(batch, channels, {sp})"
            raise ValueError(f"{type(self).__name__} '{self.name}': expected inputs of rank {self.rank + 2} {layout}, "
                             f"received shape {tuple(input_shape)}")
        channels = input_shape[self._channel_axis()]
        if channels is None:
            raise ValueError(f"{type(self).__name__} '{self.name}': the channel dimension (axis "
                             f"{self._channel_axis()}, {self.data_format}) of the input must be known, received "
                             f"shape {input_shape}")
        return channels

    def _finish(self, y):
        """Adds the bias (over the channel axis) and applies the activation."""
        if self.bias is not None:
            b = self.bias if self.data_format == "channels_last" else ops.reshape(self.bias, (-1,) + (1,) * self.rank)
            y = ops.add(y, b)
        return self.activation(y) if self.activation is not _activations.linear else y

    def _output_channels(self, input_shape):
        return self._input_channels(input_shape) * self.depth_multiplier

    def compute_output_shape(self, input_shape):
        first = 1 if self.data_format == "channels_last" else 2
        spatial = tuple(_conv_len(input_shape[first + i], self.kernel_size[i], self.strides[i],
                                  self.dilation_rate[i], self.padding) for i in range(self.rank))
        out = self._output_channels(input_shape)
        if self.data_format == "channels_last":
            return (input_shape[0],) + spatial + (out,)
        return (input_shape[0], out) + spatial

    def get_config(self):
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate, "activation": _activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "depthwise_initializer": _initializers.serialize(self.depthwise_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer),
                "depthwise_regularizer": _regularizers.serialize(self.depthwise_regularizer),
                "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": _regularizers.serialize(self.activity_regularizer),
                "depthwise_constraint": _constraints.serialize(self.depthwise_constraint),
                "bias_constraint": _constraints.serialize(self.bias_constraint)}


class _DepthwiseConv(_DepthwiseBase):
    """Depthwise convolution (Keras's BaseDepthwiseConv): each input channel has depth_multiplier
    filters of its own; output channel c * depth_multiplier + m is filter m of channel c.
    Weights: `kernel` (*kernel_size, in, depth_multiplier), then `bias` (in * depth_multiplier,)."""

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        validation.check_weight(self, "kernel", self.kernel_size + (channels, self.depth_multiplier), self.dtype)
        self.kernel = self.add_weight(name="kernel", shape=self.kernel_size + (channels, self.depth_multiplier),
                                      initializer=self.depthwise_initializer, regularizer=self.depthwise_regularizer,
                                      constraint=self.depthwise_constraint)
        self.bias = self.add_weight(name="bias", shape=(channels * self.depth_multiplier,),
                                    initializer=self.bias_initializer, regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint) if self.use_bias else None
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={self._channel_axis(): channels})

    @property
    def depthwise_kernel(self):
        """The depthwise kernel (Keras 2's name for the weight Keras 3 calls `kernel`)."""
        return self.kernel

    def call(self, inputs):
        y = run_op(self, ops.depthwise_conv, inputs, self.kernel, strides=self.strides, padding=self.padding,
                   data_format=self.data_format, dilation_rate=self.dilation_rate)
        return self._finish(y)


class DepthwiseConv2D(_DepthwiseConv):
    """Depthwise 2-D convolution over (batch, height, width, channels); kernel (kh, kw, in, depth_multiplier)."""
    rank = 2


class DepthwiseConv1D(_DepthwiseConv):
    """Depthwise 1-D convolution over (batch, steps, channels); kernel (kw, in, depth_multiplier)."""
    rank = 1


class _SeparableConv(_DepthwiseBase):
    """A depthwise convolution followed by a pointwise (1x1) convolution to `filters` channels
    (Keras's BaseSeparableConv). Weights: `depthwise_kernel` (*kernel_size, in, depth_multiplier),
    `pointwise_kernel` (*(1,) * rank, in * depth_multiplier, filters), then `bias` (filters,)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 depth_multiplier=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None, **kwargs):
        cls = type(self).__name__
        filters = validation.positive_int(cls, "filters", filters)
        super().__init__(kernel_size, strides=strides, padding=padding, depth_multiplier=depth_multiplier,
                         data_format=data_format, dilation_rate=dilation_rate, activation=activation,
                         use_bias=use_bias, depthwise_initializer=depthwise_initializer,
                         bias_initializer=bias_initializer, depthwise_regularizer=depthwise_regularizer,
                         bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
                         depthwise_constraint=depthwise_constraint, bias_constraint=bias_constraint, **kwargs)
        self.filters = filters
        self.pointwise_initializer = _initializers.get(pointwise_initializer)
        self.pointwise_regularizer = _regularizers.get(pointwise_regularizer)
        self.pointwise_constraint = _constraints.get(pointwise_constraint)

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        dm = self.depth_multiplier
        validation.check_weight(self, "depthwise_kernel", self.kernel_size + (channels, dm), self.dtype)
        validation.check_weight(self, "pointwise_kernel", (1,) * self.rank + (channels * dm, self.filters), self.dtype)
        self.depthwise_kernel = self.add_weight(name="depthwise_kernel", shape=self.kernel_size + (channels, dm),
                                                initializer=self.depthwise_initializer,
                                                regularizer=self.depthwise_regularizer,
                                                constraint=self.depthwise_constraint)
        self.pointwise_kernel = self.add_weight(name="pointwise_kernel",
                                                shape=(1,) * self.rank + (channels * dm, self.filters),
                                                initializer=self.pointwise_initializer,
                                                regularizer=self.pointwise_regularizer,
                                                constraint=self.pointwise_constraint)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint) if self.use_bias else None
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={self._channel_axis(): channels})

    def call(self, inputs):
        y = run_op(self, ops.separable_conv, inputs, self.depthwise_kernel, self.pointwise_kernel,
                   strides=self.strides, padding=self.padding, data_format=self.data_format,
                   dilation_rate=self.dilation_rate)
        return self._finish(y)

    def _output_channels(self, input_shape):
        return self.filters

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "pointwise_initializer": _initializers.serialize(self.pointwise_initializer),
                "pointwise_regularizer": _regularizers.serialize(self.pointwise_regularizer),
                "pointwise_constraint": _constraints.serialize(self.pointwise_constraint)}


class SeparableConv2D(_SeparableConv):
    """Separable 2-D convolution: depthwise (kh, kw, in, depth_multiplier), then pointwise
    (1, 1, in * depth_multiplier, filters)."""
    rank = 2


class SeparableConv1D(_SeparableConv):
    """Separable 1-D convolution: depthwise (kw, in, depth_multiplier), then pointwise
    (1, in * depth_multiplier, filters)."""
    rank = 1


class ZeroPadding2D(Layer):
    """Pads height and width with zeros: an int, (sym_h, sym_w) or ((top, bottom), (left, right));
    (batch, height, width, channels), or (batch, channels, height, width) with
    data_format="channels_first"."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format("ZeroPadding2D", data_format)
        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

        def pair(p):
            return isinstance(p, (list, tuple)) and len(p) == 2 and all(is_int(v) for v in p)
        if is_int(padding):
            pads = ((padding, padding), (padding, padding))
        elif pair(padding):
            pads = ((padding[0], padding[0]), (padding[1], padding[1]))
        elif isinstance(padding, (list, tuple)) and len(padding) == 2 and all(pair(p) for p in padding):
            pads = tuple(tuple(p) for p in padding)
        else:
            raise ValueError(f"ZeroPadding2D: `padding` must be an int, a tuple of 2 ints or a tuple of 2 tuples of "
                             f"2 ints, received {padding!r}")
        pads = tuple(tuple(int(v) for v in p) for p in pads)
        if any(v < 0 for p in pads for v in p):
            raise ValueError(f"ZeroPadding2D: padding must be >= 0, received {padding!r}")
        self.padding = pads
        self.input_spec = InputSpec(ndim=4)

    def call(self, inputs):
        if self.data_format == "channels_first":
            return run_op(self, ops.pad, inputs, ((0, 0), (0, 0)) + self.padding)
        return run_op(self, ops.pad, inputs, ((0, 0),) + self.padding + ((0, 0),))

    def compute_output_shape(self, input_shape):
        first = 1 if self.data_format == "channels_last" else 2
        h, w = input_shape[first], input_shape[first + 1]
        (t, b), (l, r) = self.padding
        hw = (None if h is None else h + t + b, None if w is None else w + l + r)
        if self.data_format == "channels_last":
            return (input_shape[0],) + hw + (input_shape[3],)
        return (input_shape[0], input_shape[1]) + hw

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}
