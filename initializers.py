"""Weight initializers, by name ("glorot_uniform", "he_normal", "zeros", ...) or object, with
Keras's definitions: fan_in/fan_out of a kernel (..., in, out) count the receptive field."""
import math

import numpy as np

from .backend import random as _random
from .backend import math as _m
from .backend.tensor import convert_to_tensor


def _fans(shape, input_axes=None, output_axes=None):
    if input_axes is not None and output_axes is not None:   # Keras's einsum-kernel form
        return int(np.prod([shape[a] for a in input_axes])), int(np.prod([shape[a] for a in output_axes]))
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """Base class: `init(shape, dtype=None)` returns a tensor."""

    def __call__(self, shape, dtype=None):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype=None):
        return _m.full(tuple(shape), float(self.value), dtype or "float32")

    def get_config(self):
        return {"value": self.value}


class Zeros(Constant):
    def __init__(self):
        super().__init__(0.0)

    def get_config(self):
        return {}


class Ones(Constant):
    def __init__(self):
        super().__init__(1.0)

    def get_config(self):
        return {}


class _Seeded(Initializer):
    def __init__(self, seed=None):
        self.seed = seed
        self._gen = _random.SeedGenerator(seed) if seed is not None else None

    def _seed(self):
        return self._gen  # a SeedGenerator: each draw differs, the sequence is reproducible


class RandomNormal(_Seeded):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def __call__(self, shape, dtype=None):
        return _random.normal(tuple(shape), mean=self.mean, stddev=self.stddev, seed=self._seed())

    def get_config(self):
        return {"seed": self.seed, "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(RandomNormal):
    def __call__(self, shape, dtype=None):
        return _random.truncated_normal(tuple(shape), mean=self.mean, stddev=self.stddev, seed=self._seed())


class RandomUniform(_Seeded):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = minval, maxval

    def __call__(self, shape, dtype=None):
        return _random.uniform(tuple(shape), minval=self.minval, maxval=self.maxval, seed=self._seed())

    def get_config(self):
        return {"seed": self.seed, "minval": self.minval, "maxval": self.maxval}


class VarianceScaling(_Seeded):
    """Samples with variance scale / n where n is fan_in, fan_out or their mean."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None, input_axes=None,
                 output_axes=None):
        super().__init__(seed)
        if scale <= 0:
            raise ValueError(f"VarianceScaling: scale must be positive, received {scale}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling: mode must be 'fan_in', 'fan_out' or 'fan_avg', received {mode!r}")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform", "normal"):
            raise ValueError(f"VarianceScaling: unknown distribution {distribution!r}")
        if (input_axes is None) != (output_axes is None):
            raise ValueError(f"VarianceScaling: pass both input_axes and output_axes or neither, received "
                             f"input_axes={input_axes!r}, output_axes={output_axes!r}")
        self.scale, self.mode, self.distribution = scale, mode, distribution
        self.input_axes = list(input_axes) if input_axes is not None else None
        self.output_axes = list(output_axes) if output_axes is not None else None

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = _fans(tuple(shape), self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        scale = self.scale / max(1.0, n)
        if self.distribution == "truncated_normal":
            # stddev of a unit normal truncated to [-2, 2]
            std = math.sqrt(scale) / 0.87962566103423978
            return _random.truncated_normal(tuple(shape), stddev=std, seed=self._seed())
        if self.distribution in ("untruncated_normal", "normal"):
            return _random.normal(tuple(shape), stddev=math.sqrt(scale), seed=self._seed())
        limit = math.sqrt(3.0 * scale)
        return _random.uniform(tuple(shape), minval=-limit, maxval=limit, seed=self._seed())

    def get_config(self):
        return {"seed": self.seed, "scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "input_axes": self.input_axes, "output_axes": self.output_axes}


def _variant(name, scale, mode, distribution):
    class _V(VarianceScaling):
        def __init__(self, seed=None, input_axes=None, output_axes=None):
            super().__init__(scale, mode, distribution, seed, input_axes, output_axes)

        def get_config(self):
            return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}
    _V.__name__ = _V.__qualname__ = name
    return _V


GlorotUniform = _variant("GlorotUniform", 1.0, "fan_avg", "uniform")
GlorotNormal = _variant("GlorotNormal", 1.0, "fan_avg", "truncated_normal")
HeUniform = _variant("HeUniform", 2.0, "fan_in", "uniform")
HeNormal = _variant("HeNormal", 2.0, "fan_in", "truncated_normal")
LecunUniform = _variant("LecunUniform", 1.0, "fan_in", "uniform")
LecunNormal = _variant("LecunNormal", 1.0, "fan_in", "truncated_normal")


class Orthogonal(_Seeded):
    """A (semi-)orthogonal matrix from the QR decomposition of a normal sample, times `gain`.
    (Computed once at initialisation on the host: an initializer, not a training-path op.)"""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = gain

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(f"Orthogonal: needs a shape of rank >= 2, received {shape}")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = _random.normal((max(rows, cols), min(rows, cols)), seed=self._seed()).numpy().astype(np.float64)
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return convert_to_tensor((self.gain * q[:rows, :cols]).reshape(shape).astype(np.float32))

    def get_config(self):
        return {"seed": self.seed, "gain": self.gain}


class Identity(Initializer):
    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, shape, dtype=None):
        if len(shape) != 2:
            raise ValueError(f"Identity: needs a 2-D shape, received {tuple(shape)}")
        return convert_to_tensor(self.gain * np.eye(*shape, dtype=np.float32))

    def get_config(self):
        return {"gain": self.gain}


_ALIASES = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
    "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal, "he_uniform": HeUniform,
    "he_normal": HeNormal, "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
    "orthogonal": Orthogonal, "identity": Identity, "variance_scaling": VarianceScaling,
}
for _cls in list(_ALIASES.values()):
    _ALIASES[_cls.__name__] = _cls
_ALIASES["Zeros"], _ALIASES["Ones"] = Zeros, Ones
_ALIASES["uniform"], _ALIASES["normal"] = RandomUniform, RandomNormal  # Keras's short names


def get(identifier):
    """An initializer from a name, a config dict (Keras's {"module", "class_name", "config",
    "registered_name"} or the legacy {"class_name", "config"}), an Initializer, or a callable."""
    if identifier is None:
        return None
    if isinstance(identifier, Initializer) or callable(identifier) and not isinstance(identifier, type):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if isinstance(identifier, dict):   # (one object per "shared_object_id" while a config loads)
        from . import saving
        return saving.get_small_object(identifier, _ALIASES, "initializer", None)
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier)
        if cls is None:
            from . import saving
            obj = saving.get_registered_object(identifier)
            if obj is not None:
                return obj() if isinstance(obj, type) else obj
            raise ValueError(f"Unknown initializer {identifier!r}; expected one of "
                             f"{sorted(k for k in _ALIASES if k.islower())}")
        return cls()
    raise TypeError(f"Could not interpret initializer {identifier!r}: expected a name, dict or callable")


def serialize(init):
    """Keras's form: {"module": "keras.initializers", "class_name", "config", "registered_name"}."""
    if init is None:
        return None
    from . import saving
    return saving.serialize_keras_object(init)


deserialize = get

# Keras-style lowercase callables
zeros, ones = Zeros(), Ones()
