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
    """`value` everywhere: a number, or an array broadcast to the shape (as Keras's, e.g. PointNet's
    `Constant(np.eye(3).flatten())` for a bias)."""

    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype=None):
        shape, dtype = tuple(shape), dtype or "float32"
        v = self.value.numpy() if hasattr(self.value, "numpy") and not isinstance(self.value, np.ndarray) \
            else np.asarray(self.value)
        if v.ndim == 0:
            return _m.full(shape, float(v), dtype)
        try:
            a = np.broadcast_to(v.astype(np.float64), shape)
        except ValueError:
            raise ValueError(f"Constant: a value of shape {v.shape} does not broadcast to the requested shape "
                             f"{shape}; give a number or an array of a shape that broadcasts") from None
        return convert_to_tensor(np.ascontiguousarray(a), dtype=dtype)

    def get_config(self):
        return {"value": self.value}

    @classmethod
    def from_config(cls, config):
        if "value" not in config:   # Zeros, Ones and other subclasses without a value
            return super().from_config(config)
        value = config["value"]
        if isinstance(value, dict) and value.get("class_name") in ("__numpy__", "__tensor__"):  # a saved array
            inner = value.get("config") or {}
            value = np.array(inner["value"], dtype=inner.get("dtype"))
        elif isinstance(value, list):
            value = np.array(value)
        return cls(value)


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


def _window(name, length, periodic):
    """scipy.signal.get_window's hann, hamming, blackman, bartlett and boxcar windows (float64)."""
    key = name.lower()
    if key in ("boxcar", "rectangular", "rect", "ones"):
        return np.ones(length)
    if key not in ("hann", "hanning", "hamming", "blackman", "bartlett", "triang"):
        raise ValueError(f"STFT: unknown window {name!r}; expected one of 'hann', 'hamming', 'blackman', "
                         "'bartlett', 'boxcar', None, or the window's values as an array of frame_length numbers")
    if length == 1:
        return np.ones(1)
    m = length + 1 if periodic else length   # a periodic window is the symmetric one of length + 1, cut
    n = np.arange(m)
    t = 2 * np.pi * n / (m - 1)
    if key in ("hann", "hanning"):
        w = 0.5 - 0.5 * np.cos(t)
    elif key == "hamming":
        w = 0.54 - 0.46 * np.cos(t)
    elif key == "blackman":
        w = 0.42 - 0.5 * np.cos(t) + 0.08 * np.cos(2 * t)
    elif key == "bartlett":
        w = 1 - np.abs(2 * n / (m - 1) - 1)
    else:   # scipy's triang: no zeros at the ends
        k = np.arange(1, (m + 1) // 2 + 1)
        half = 2 * k / (m + 1) if m % 2 else (2 * k - 1) / m
        w = np.concatenate([half, half[-2::-1] if m % 2 else half[::-1]])
    return w[:length]


class STFT(Initializer):
    """Kernels (frame_length, 1, fft_length // 2 + 1) of a convolution that computes the real
    (`side="real"`) or imaginary part of a short-time Fourier transform, optionally windowed
    (`window`: a name, the window's values, or None) and scaled by the window's L2 norm
    (`scaling="density"`) or L1 norm ("spectrum"); Keras's `STFTInitializer`, as used by
    `STFTSpectrogram`. Named windows are computed here (no scipy needed); `periodic` windows are
    those of length frame_length + 1 without their last value, as scipy's."""

    def __init__(self, side="real", window="hann", scaling="density", periodic=False):
        if side not in ("real", "imag"):
            raise ValueError(f"STFT: side should be 'real' or 'imag', received side={side!r}")
        if isinstance(window, str):
            _window(window, 1, False)
        if scaling is not None and scaling not in ("density", "spectrum"):
            raise ValueError(f"STFT: scaling must be None, 'density' or 'spectrum'; received scaling={scaling!r}")
        self.side, self.window, self.scaling, self.periodic = side, window, scaling, bool(periodic)

    def __call__(self, shape, dtype=None):
        if len(shape) != 3:
            raise ValueError(f"STFT: needs a shape (frame_length, input_channels, fft_bins), received {tuple(shape)}")
        frame_length, _, bins = shape
        freq = np.arange(bins, dtype=np.float64)[None, None, :] / ((bins - 1) * 2)
        time = np.arange(frame_length, dtype=np.float64)[:, None, None]
        args = -2 * time * freq * np.pi
        kernel = np.cos(args) if self.side == "real" else np.sin(args)
        if self.window is not None:
            win = (_window(self.window, frame_length, self.periodic) if isinstance(self.window, str)
                   else np.asarray(self.window, np.float64))
            if win.shape != (frame_length,):
                raise ValueError(f"STFT: the window must have shape ({frame_length},) (frame_length), received "
                                 f"shape {win.shape}")
            scale = (np.sqrt(np.sum(win ** 2)) if self.scaling == "density"
                     else np.sum(np.abs(win)) if self.scaling == "spectrum" else 1.0)
            kernel = kernel * win[:, None, None] / scale
        return convert_to_tensor(kernel.astype(np.float32))

    def get_config(self):
        window = self.window if self.window is None or isinstance(self.window, str) else \
            np.asarray(self.window).tolist()
        return {"side": self.side, "window": window, "scaling": self.scaling, "periodic": self.periodic}


_ALIASES = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
    "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal, "he_uniform": HeUniform,
    "he_normal": HeNormal, "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
    "orthogonal": Orthogonal, "identity": Identity, "variance_scaling": VarianceScaling, "stft": STFT,
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

# Keras's other names of the classes
constant, zeros, ones, identity, stft = Constant, Zeros, Ones, Identity, STFT
random_normal, random_uniform, truncated_normal = RandomNormal, RandomUniform, TruncatedNormal
variance_scaling, orthogonal = VarianceScaling, Orthogonal
glorot_uniform, glorot_normal, he_uniform, he_normal = GlorotUniform, GlorotNormal, HeUniform, HeNormal
lecun_uniform, lecun_normal = LecunUniform, LecunNormal
IdentityInitializer, OrthogonalInitializer, STFTInitializer = Identity, Orthogonal, STFT
