"""3-D pooling layers over (batch, depth, height, width, channels) or channels_first:
MaxPooling3D, AveragePooling3D (ops.max_pool / ops.average_pool on rank-5 inputs, separable
over the 2-D pooling kernels) and GlobalAveragePooling3D, GlobalMaxPooling3D."""
from .. import ops
from .convolutional import _conv_len, _data_format, normalize_tuple, run_op
from .layer import InputSpec, Layer


class _Pool3D(Layer):
    op = "max"

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        self.pool_size = normalize_tuple(pool_size, 3, "pool_size", cls)
        self.strides = normalize_tuple(strides if strides is not None else self.pool_size, 3, "strides", cls)
        p = padding.lower() if isinstance(padding, str) else padding
        if p not in ("valid", "same"):
            raise ValueError(f"{cls}: `padding` must be 'valid' or 'same', received padding={padding!r}")
        self.padding = p
        self.data_format = _data_format(cls, data_format)
        self.input_spec = InputSpec(ndim=5)

    def call(self, inputs):
        f = ops.max_pool if self.op == "max" else ops.average_pool
        return run_op(self, f, inputs, pool_size=self.pool_size, strides=self.strides, padding=self.padding,
                      data_format=self.data_format)

    def compute_output_shape(self, input_shape):
        first = 1 if self.data_format == "channels_last" else 2
        spatial = tuple(_conv_len(input_shape[first + i], self.pool_size[i], self.strides[i], 1, self.padding)
                        for i in range(3))
        if self.data_format == "channels_last":
            return (input_shape[0],) + spatial + (input_shape[4],)
        return (input_shape[0], input_shape[1]) + spatial

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format}


class MaxPooling3D(_Pool3D):
    """Max pooling over depth, height and width (strides default to pool_size)."""
    op = "max"


class AveragePooling3D(_Pool3D):
    """Average pooling over depth, height and width; with padding="same" a border window averages
    only its unpadded elements (as Keras does)."""
    op = "avg"


class _GlobalPool3D(Layer):
    op = "avg"

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(type(self).__name__, data_format)
        self.keepdims = bool(keepdims)
        self.input_spec = InputSpec(ndim=5)

    def call(self, inputs):
        axes = (1, 2, 3) if self.data_format == "channels_last" else (2, 3, 4)
        f = ops.mean if self.op == "avg" else ops.max
        return run_op(self, f, inputs, axis=axes, keepdims=self.keepdims)

    def compute_output_shape(self, input_shape):
        last = self.data_format == "channels_last"
        channels = input_shape[4] if last else input_shape[1]
        if not self.keepdims:
            return (input_shape[0], channels)
        return (input_shape[0], 1, 1, 1, channels) if last else (input_shape[0], channels, 1, 1, 1)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling3D(_GlobalPool3D):
    """Mean over depth, height and width: (batch, channels), or (batch, 1, 1, 1, channels) with keepdims."""
    op = "avg"


class GlobalMaxPooling3D(_GlobalPool3D):
    """Max over depth, height and width: (batch, channels), or (batch, 1, 1, 1, channels) with keepdims."""
    op = "max"
