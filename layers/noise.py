"""Noise and dropout regularisation layers: SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout,
AlphaDropout. Each is the identity at inference (training falsy) and draws its noise from lamina's
counter-based generator in training: a `seed` makes the sequence of draws reproducible (each call
draws new values), no seed uses the global generator (`lamina.ops.set_seed`), as Dropout does."""
import math
import numbers

from .. import ops
from ..backend.random import SeedGenerator
from .core import Dropout
from .layer import InputSpec, Layer
from .convolutional import _data_format

# SELU's constants (Klambauer et al., 2017), as Keras's AlphaDropout
_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _fraction(who, arg, value, upper_open=False):
    """A number in [0, 1] (or [0, 1) when 1 would divide by zero), else a ValueError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and \
        0 <= value and (value < 1 if upper_open else value <= 1)
    if not ok:
        span = "[0, 1)" if upper_open else "[0, 1]"
        why = (f"; {arg}=1 would make the noise's variance infinite" if upper_open and
               isinstance(value, numbers.Real) and value == 1 else "")
        raise ValueError(f"{who}: `{arg}` must be a number in {span}, received {arg}={value!r}{why}")
    return float(value)


def _seed_generator(seed):
    return SeedGenerator(seed) if seed is not None else None


class _SpatialDropout(Dropout):
    """Dropout of whole feature maps: one keep/drop draw per (sample, channel), broadcast over the
    spatial axes, kept values scaled by 1 / (1 - rate). Keras's config: rate, seed, name, dtype."""
    rank = 1
    has_data_format = True

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)
        who = type(self).__name__
        self.data_format = _data_format(who, data_format) if self.has_data_format else "channels_last"
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _noise_shape(self, shape):
        if self.data_format == "channels_first":
            return (shape[0], shape[1]) + (1,) * self.rank
        return (shape[0],) + (1,) * self.rank + (shape[-1],)

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            if self.rate >= 1.0:   # every channel dropped (Keras returns zeros)
                return ops.multiply(inputs, 0.0)
            return ops.dropout(inputs, self.rate, noise_shape=self._noise_shape(inputs.shape), seed=self._seed_gen)
        return inputs

    def get_config(self):
        config = {"rate": self.rate, "seed": self.seed, "name": self.name, "dtype": self.dtype}
        if self.has_data_format:
            config["data_format"] = self.data_format
        return config


class SpatialDropout1D(_SpatialDropout):
    """Drops whole channels of (batch, steps, channels) inputs."""
    rank, has_data_format = 1, False

    def __init__(self, rate, seed=None, **kwargs):
        if "data_format" in kwargs:
            raise TypeError("SpatialDropout1D: unrecognized keyword argument 'data_format': it takes (batch, steps, "
                            "channels) inputs, as Keras's")
        super().__init__(rate, seed=seed, **kwargs)


class SpatialDropout2D(_SpatialDropout):
    """Drops whole channels of 4-D inputs (channels_last or channels_first)."""
    rank = 2

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(rate, data_format=data_format, seed=seed, **kwargs)


class SpatialDropout3D(_SpatialDropout):
    """Drops whole channels of 5-D inputs (channels_last or channels_first)."""
    rank = 3

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(rate, data_format=data_format, seed=seed, **kwargs)


class GaussianNoise(Layer):
    """Adds zero-centred Gaussian noise of standard deviation `stddev` in training."""

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.stddev = _fraction("GaussianNoise", "stddev", stddev)
        self.seed = seed
        self._seed_gen = _seed_generator(seed)
        self.supports_masking = True

    def call(self, inputs, training=False):
        if training and self.stddev > 0:
            return ops.add(inputs, ops.normal(inputs.shape, mean=0.0, stddev=self.stddev, seed=self._seed_gen))
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(Layer):
    """Multiplies the inputs by Gaussian noise of mean 1 and standard deviation
    sqrt(rate / (1 - rate)) in training."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _fraction("GaussianDropout", "rate", rate, upper_open=True)
        self.seed = seed
        self._seed_gen = _seed_generator(seed)
        self.supports_masking = True

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            stddev = math.sqrt(self.rate / (1.0 - self.rate))
            return ops.multiply(inputs, ops.normal(inputs.shape, mean=1.0, stddev=stddev, seed=self._seed_gen))
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class AlphaDropout(Layer):
    """Dropout for SELU networks: dropped inputs are set to SELU's negative saturation value and the
    result is affinely rescaled so that the mean and variance of the inputs are kept."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _fraction("AlphaDropout", "rate", rate, upper_open=True)
        if noise_shape is not None:
            if isinstance(noise_shape, (str, bytes)) or not hasattr(noise_shape, "__iter__") or any(
                    d is not None and (isinstance(d, bool) or not isinstance(d, numbers.Integral) or d <= 0)
                    for d in noise_shape):
                raise ValueError(f"AlphaDropout: `noise_shape` must be a tuple of positive ints or None entries, "
                                 f"received noise_shape={noise_shape!r}")
            noise_shape = tuple(None if d is None else int(d) for d in noise_shape)
        self.noise_shape = noise_shape
        self.seed = seed
        self._seed_gen = _seed_generator(seed)
        self.supports_masking = True

    def _concrete_noise_shape(self, shape):
        if self.noise_shape is None:
            return shape
        if len(self.noise_shape) != len(shape) or any(
                d is not None and d not in (1, s) for d, s in zip(self.noise_shape, shape)):
            raise ValueError(f"AlphaDropout '{self.name}': noise_shape {self.noise_shape} does not broadcast to "
                             f"the inputs' shape {shape}; it needs one entry per axis, each 1, None or that axis's "
                             "size")
        return tuple(s if d is None else d for d, s in zip(self.noise_shape, shape))

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            shape = self._concrete_noise_shape(inputs.shape)
            alpha_p = -_SELU_ALPHA * _SELU_SCALE
            keep = ops.cast(ops.greater_equal(ops.uniform(shape, seed=self._seed_gen), self.rate), inputs.dtype)
            a = ((1 - self.rate) * (1 + self.rate * alpha_p ** 2)) ** -0.5
            b = -a * alpha_p * self.rate
            # a * (x * keep + alpha_p * (1 - keep)) + b
            x = ops.add(ops.multiply(inputs, keep), ops.multiply(ops.subtract(1.0, keep), alpha_p))
            return ops.add(ops.multiply(x, a), b)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed, "noise_shape": self.noise_shape}
