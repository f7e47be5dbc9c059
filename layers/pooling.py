"""Pooling layers: max and average pooling, and their global forms, over (batch, *spatial,
channels) or, with data_format="channels_first", (batch, channels, *spatial). GlobalAveragePooling1D
honours a mask (batch, steps): masked steps are left out of the mean, as in Keras."""
from .. import ops
from .convolutional import _conv_len, _data_format, normalize_tuple, run_op
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
        self.data_format = _data_format(cls, data_format)
        self.padding = padding
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def call(self, inputs):
        f = ops.max_pool if self.op == "max" else ops.average_pool
        return run_op(self, f, inputs, pool_size=self.pool_size, strides=self.strides, padding=self.padding,
                      data_format=self.data_format)

    def compute_output_shape(self, input_shape):
        first = 1 if self.data_format == "channels_last" else 2
        spatial = tuple(_conv_len(input_shape[first + i], self.pool_size[i], self.strides[i], 1, self.padding)
                        for i in range(self.rank))
        if self.data_format == "channels_last":
            return (input_shape[0],) + spatial + (input_shape[-1],)
        return (input_shape[0], input_shape[1]) + spatial

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format}


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
        self.data_format = _data_format(type(self).__name__, data_format)
        self.keepdims = bool(keepdims)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _axes(self):
        first = 1 if self.data_format == "channels_last" else 2
        return tuple(range(first, first + self.rank))

    def call(self, inputs):
        f = ops.mean if self.op == "avg" else ops.max
        return run_op(self, f, inputs, axis=self._axes(), keepdims=self.keepdims)

    def compute_output_shape(self, input_shape):
        last = self.data_format == "channels_last"
        channels = input_shape[-1] if last else input_shape[1]
        if not self.keepdims:
            return (input_shape[0], channels)
        ones = (1,) * self.rank
        return (input_shape[0],) + ones + (channels,) if last else (input_shape[0], channels) + ones

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPool):
    rank, op = 2, "avg"


class GlobalMaxPooling2D(_GlobalPool):
    rank, op = 2, "max"


class GlobalAveragePooling1D(_GlobalPool):
    """Mean over the steps; with a mask (batch, steps) (from Embedding(mask_zero=True), Masking,
    or `mask=`) the mean of the unmasked steps only, as Keras's (a fully masked sample gives NaN,
    0 / 0, as in Keras). The mask stops here."""
    rank, op = 1, "avg"

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(data_format=data_format, keepdims=keepdims, **kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return super().call(inputs)
        steps = 1 if self.data_format == "channels_last" else 2
        mask = ops.convert_to_tensor(mask)
        if mask.shape != (inputs.shape[0], inputs.shape[steps]):
            raise ValueError(f"GlobalAveragePooling1D '{self.name}': expected a mask of shape (batch, steps) = "
                             f"{(inputs.shape[0], inputs.shape[steps])}, received shape {mask.shape}")
        keep = ops.expand_dims(ops.cast(mask, "bool"), 2 if self.data_format == "channels_last" else 1)
        total = ops.sum(ops.where(keep, inputs, 0.0), axis=steps, keepdims=self.keepdims)
        return ops.divide(total, ops.sum(ops.cast(keep, inputs.dtype), axis=steps, keepdims=self.keepdims))

    def compute_mask(self, inputs, mask=None):
        return None


class GlobalMaxPooling1D(_GlobalPool):
    rank, op = 1, "max"
