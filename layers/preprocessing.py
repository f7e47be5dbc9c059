"""Preprocessing layers: Rescaling."""
import numbers

import numpy as np

from .. import ops
from ..backend import dtypes
from .layer import Layer


def _factor(value, name):
    """A real number, or an array-like of real numbers (e.g. one per channel) -> (the value as
    get_config returns it, the operand used in call)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not np.isfinite(value):
            raise ValueError(f"Rescaling: `{name}` must be finite, received {name}={value!r}")
        return value, float(value)
    try:
        a = np.asarray(value)
    except (TypeError, ValueError):
        a = None
    if a is None or a.dtype.kind not in "iuf" or a.size == 0:
        raise ValueError(f"Rescaling: `{name}` must be a number or a list/array of numbers (one per channel), "
                         f"received {name}={value!r}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"Rescaling: `{name}` must be finite, received {name}={value!r}")
    if a.ndim == 0:
        return a.item(), float(a)
    return a.tolist(), a.astype(np.float32)


class Rescaling(Layer):
    """y = x * scale + offset, in float32 (integer inputs are cast), like Keras's Rescaling.

    scale / offset: numbers, or arrays that broadcast against the input's trailing axes (a list
    of one value per channel for channels-last images). Rescaling(1 / 255) maps [0, 255] to
    [0, 1]; Rescaling(1 / 127.5, offset=-1) maps it to [-1, 1]."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self._scale = _factor(scale, "scale")
        self.offset, self._offset = _factor(offset, "offset")
        self.supports_masking = True

    def build(self, input_shape):
        shape = tuple(input_shape)
        for name, a in (("scale", self._scale), ("offset", self._offset)):
            s = np.shape(a)
            ok = len(s) <= len(shape) and all(d == 1 or i is None or d == i for d, i in zip(s[::-1], shape[::-1]))
            if not ok:
                raise ValueError(f"Rescaling '{self.name}': `{name}` of shape {s} does not broadcast against the "
                                 f"input of shape {shape}; give a number or one value per channel (the last axis)")

    def call(self, inputs):
        dt = self.dtype if dtypes.is_float(self.dtype) else dtypes.FLOAT32
        x = inputs if inputs.dtype == dt else ops.cast(inputs, dt)
        return ops.add(ops.multiply(x, self._scale), self._offset)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}
