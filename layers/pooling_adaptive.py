"""Adaptive pooling layers, as Keras 3's: AdaptiveAveragePooling1D/2D/3D and
AdaptiveMaxPooling1D/2D/3D pool (batch, *spatial, channels) (or channels_first) inputs to a fixed
spatial `output_size`, whatever the input's own size (ops.adaptive_average_pool /
ops.adaptive_max_pool: window i of an axis of length L pooled to O is
[floor(i * L / O), ceil((i + 1) * L / O)))."""
from .. import ops
from ..backend.adaptive_pooling import output_size_tuple
from .convolutional import _data_format, run_op
from .layer import InputSpec, Layer


class _AdaptivePool(Layer):
    rank = 2
    mode = "avg"

    def __init__(self, output_size, data_format=None, **kwargs):
        super().__init__(**kwargs)
        who = type(self).__name__
        self.output_size = output_size_tuple(output_size, self.rank, who)
        self.data_format = _data_format(who, data_format)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def call(self, inputs):
        op = ops.adaptive_average_pool if self.mode == "avg" else ops.adaptive_max_pool
        return run_op(self, op, inputs, output_size=self.output_size, data_format=self.data_format)

    def compute_output_shape(self, input_shape):
        if self.data_format == "channels_last":
            return (input_shape[0],) + self.output_size + (input_shape[-1],)
        return (input_shape[0], input_shape[1]) + self.output_size

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size, "data_format": self.data_format}


class AdaptiveAveragePooling1D(_AdaptivePool):
    """Mean over adaptive windows of (batch, steps, channels) to (batch, output_size, channels)."""
    rank, mode = 1, "avg"


class AdaptiveAveragePooling2D(_AdaptivePool):
    """Mean over adaptive windows of (batch, height, width, channels) to (batch, *output_size, channels)."""
    rank, mode = 2, "avg"


class AdaptiveAveragePooling3D(_AdaptivePool):
    """Mean over adaptive windows of (batch, depth, height, width, channels)."""
    rank, mode = 3, "avg"


class AdaptiveMaxPooling1D(_AdaptivePool):
    """Max over adaptive windows of (batch, steps, channels) to (batch, output_size, channels)."""
    rank, mode = 1, "max"


class AdaptiveMaxPooling2D(_AdaptivePool):
    """Max over adaptive windows of (batch, height, width, channels) to (batch, *output_size, channels)."""
    rank, mode = 2, "max"


class AdaptiveMaxPooling3D(_AdaptivePool):
    """Max over adaptive windows of (batch, depth, height, width, channels)."""
    rank, mode = 3, "max"
