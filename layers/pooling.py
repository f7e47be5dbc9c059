"""Pooling layers (channels-last): max and average pooling, and their global forms."""
from .. import ops
from .convolutional import _conv_len, normalize_tuple, run_op
from .layer import InputSpec, Layer


class _Pool(Layer):
    rank = 2
    op = "max"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        self.pool_size = normalize_tuple(pool_size, self.rank, "pool_size", cls)
        self.strides = normalize_tuple(strides if strides is not None else self.pool_size, self.rank, "strides", cls)
        padding = str(padding).lower()
        if padding not in ("valid", "same"):
            raise ValueError(f"{cls}: `padding` must be 'valid' or 'same', received {padding!r}")
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{cls}: only data_format='channels_last' is supported, received {data_format!r}")
        self.padding = padding
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def call(self, inputs):
        f = ops.max_pool if self.op == "max" else ops.average_pool
        return run_op(self, f, inputs, pool_size=self.pool_size, strides=self.strides, padding=self.padding)

    def compute_output_shape(self, input_shape):
        spatial = tuple(_conv_len(input_shape[1 + i], self.pool_size[i], self.strides[i], 1, self.padding)
                        for i in range(self.rank))
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding, "data_format": "channels_last"}


class MaxPooling2D(_Pool):
    rank, op = 2, "max"


class AveragePooling2D(_Pool):
    rank, op = 2, "avg"


class MaxPooling1D(_Pool):
    rank, op = 1, "max"


class AveragePooling1D(_Pool):
    rank, op = 1, "avg"


class _GlobalPool(Layer):
    rank = 2
    op = "avg"

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{type(self).__name__}: only data_format='channels_last' is supported")
        self.keepdims = bool(keepdims)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def call(self, inputs):
        axes = tuple(range(1, self.rank + 1))
        f = ops.mean if self.op == "avg" else ops.max
        return run_op(self, f, inputs, axis=axes, keepdims=self.keepdims)

    def compute_output_shape(self, input_shape):
        if self.keepdims:
            return (input_shape[0],) + (1,) * self.rank + (input_shape[-1],)
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "data_format": "channels_last", "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPool):
    rank, op = 2, "avg"


class GlobalMaxPooling2D(_GlobalPool):
    rank, op = 2, "max"


class GlobalAveragePooling1D(_GlobalPool):
    rank, op = 1, "avg"


class GlobalMaxPooling1D(_GlobalPool):
    rank, op = 1, "max"
