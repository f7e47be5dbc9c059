"""Reshaping layers: Flatten, Reshape, Permute, RepeatVector, and the spatial ones: UpSampling1D/2D/3D,
Cropping1D/2D/3D, ZeroPadding1D/3D (ZeroPadding2D lives in convolutional.py)."""
import operator

import numpy as np

from .. import ops
from ..backend import resampling, validation
from .convolutional import _data_format
from .layer import InputSpec, Layer


class Flatten(Layer):
    """Flattens every axis but the batch axis. With data_format="channels_first" (or None while
    image_data_format() is 'channels_first') the channels axis moves last first, as in Keras, so
    that the features come out in the order a channels_last input gives."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format("Flatten", data_format)
        self.input_spec = InputSpec(min_ndim=1)

    def call(self, inputs):
        if self.data_format == "channels_first" and inputs.ndim > 2:
            inputs = ops.transpose(inputs, (0, *range(2, inputs.ndim), 1))
        # the product of the other axes, not -1: an empty batch has no answer for -1
        return ops.reshape(inputs, (inputs.shape[0], int(np.prod(inputs.shape[1:], dtype=np.int64))))

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        n = None if any(d is None for d in rest) else int(np.prod(rest)) if rest else 1
        return (input_shape[0], n)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(Layer):
    """Reshapes each sample to `target_shape` (one dimension may be -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            self.target_shape = validation.dims(target_shape, "Reshape", "target_shape")
        except TypeError:
            raise ValueError(f"Reshape: target_shape must be a tuple of ints, received {target_shape!r}") from None
        if sum(d == -1 for d in self.target_shape) > 1 or any(d < -1 or d == 0 for d in self.target_shape):
            raise ValueError(f"Reshape: invalid target_shape {self.target_shape}: positive sizes and at most one -1")

    def _resolve(self, input_shape):
        rest = input_shape[1:]
        if any(d is None for d in rest):
            return self.target_shape
        n = int(np.prod(rest)) if rest else 1
        known = int(np.prod([d for d in self.target_shape if d != -1])) if self.target_shape else 1
        if -1 in self.target_shape:
            if n % known:
                raise ValueError(f"Reshape '{self.name}': cannot reshape samples of shape {tuple(rest)} ({n} values) "
                                 f"into {self.target_shape}")
            return tuple(n // known if d == -1 else d for d in self.target_shape)
        if known != n:
            raise ValueError(f"Reshape '{self.name}': total size of the new shape {self.target_shape} ({known}) must "
                             f"equal the input's per-sample size {tuple(rest)} ({n})")
        return self.target_shape

    def call(self, inputs):
        return ops.reshape(inputs, (inputs.shape[0],) + self._resolve(inputs.shape))

    def compute_output_shape(self, input_shape):
        t = self._resolve(input_shape)
        return (input_shape[0],) + tuple(None if d == -1 else d for d in t)

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


class Permute(Layer):
    """Permutes the non-batch axes: `dims` are 1-based, e.g. Permute((2, 1))."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        try:
            self.dims = validation.dims(dims, "Permute", "dims")
        except TypeError:
            raise ValueError(f"Permute: dims must be a tuple of ints, received {dims!r}") from None
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Permute: dims must be a permutation of 1..{len(self.dims)}, received {self.dims}")
        self.input_spec = InputSpec(ndim=len(self.dims) + 1)

    def call(self, inputs):
        return ops.transpose(inputs, (0,) + self.dims)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}


class RepeatVector(Layer):
    """(batch, features) -> (batch, n, features)."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = validation.positive_int("RepeatVector", "n", n)
        self.input_spec = InputSpec(ndim=2)

    def call(self, inputs):
        validation.check_alloc(f"RepeatVector '{self.name}'", (inputs.shape[0], self.n, inputs.shape[1]),
                               inputs.dtype, inputs.device)
        return ops.broadcast_to(ops.expand_dims(inputs, 1), (inputs.shape[0], self.n, inputs.shape[1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def get_config(self):
        return {**super().get_config(), "n": self.n}


# ---- spatial layers: up-sampling, cropping, zero padding ------------------------------------------


def _int_tuple(who, arg, value, n, minimum):
    """`value` (an int, or n ints) as a tuple of n ints >= minimum (Keras's standardize_tuple)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (value,) * n
    try:
        out = tuple(operator.index(v) for v in value if not isinstance(v, (bool, np.bool_)))
        ok = len(out) == len(value) == n
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{who}: `{arg}` must be an int or a tuple of {n} ints, received {arg}={value!r}")
    if any(v < minimum for v in out):
        what = "positive" if minimum == 1 else ">= 0"
        raise ValueError(f"{who}: every entry of `{arg}` must be {what}, received {arg}={value!r}")
    return out


def _pairs(who, arg, value, rank):
    """Keras's forms of a padding / cropping argument over `rank` spatial axes, as `rank` (before,
    after) pairs of ints >= 0: an int (every side), `rank` entries each an int (both sides) or a
    pair. ValueError naming the layer, the argument and the value otherwise."""
    forms = (f"an int, a tuple of {rank} ints or a tuple of {rank} tuples of 2 ints" if rank > 1
             else "an int or a tuple of 2 ints (before, after)")
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (value,) * rank if rank > 1 else value
    if rank == 1:
        return (_checked_pair(who, arg, value, forms),)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != rank:
        raise ValueError(f"{who}: `{arg}` must be {forms}, received {arg}={value!r}")
    return tuple(_checked_pair(who, arg, v, forms, whole=value) for v in value)


def _checked_pair(who, arg, v, forms, whole=None):
    whole = v if whole is None else whole
    try:
        return _int_tuple(who, arg, v, 2, 0)
    except ValueError as e:
        if ">= 0" in str(e):
            raise ValueError(f"{who}: `{arg}` must not be negative, received {arg}={whole!r}") from None
        raise ValueError(f"{who}: `{arg}` must be {forms}, received {arg}={whole!r}") from None


def _no_data_format(who, kwargs):
    if "data_format" in kwargs:
        raise TypeError(f"{who}: unrecognized keyword argument 'data_format': {who} always takes (batch, steps, "
                        "features), as Keras's; transpose channels-first inputs with Permute((2, 1)) first")


class _Spatial(Layer):
    """What the spatial reshaping layers share: `rank` spatial axes after the batch axis
    (channels_last) or after the channel axis (channels_first), and an input spec of that rank.
    Their outputs keep the input's dtype."""
    rank = 2
    has_data_format = True

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(type(self).__name__, data_format)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _spatial_axes(self):
        first = 2 if self.data_format == "channels_first" else 1
        return tuple(range(first, first + self.rank))

    def compute_output_dtype(self, in_dtypes):
        return in_dtypes

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        for i, ax in enumerate(self._spatial_axes()):
            if out[ax] is not None:
                out[ax] = self._out_size(i, out[ax], input_shape)
        return tuple(out)

    def get_config(self):
        config = super().get_config()
        return {**config, "data_format": self.data_format} if self.has_data_format else config


# -- up-sampling --

# interpolations of UpSampling2D, resampled as keras.ops.image.resize (backend/resampling.py)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5")


def resample_axis(x, axis, factor, interpolation):
    """x resampled to `factor` times its size along `axis` as keras.ops.image.resize does
    (half-pixel centres, no antialiasing): differentiable in x."""
    return resampling.resample_axis(x, axis, x.shape[axis] * factor, interpolation, op="UpSampling2D")


class _UpSampling(_Spatial):
    def __init__(self, size=2, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.size = _int_tuple(type(self).__name__, "size", size, self.rank, 1)

    def _out_size(self, i, n, input_shape):
        return n * self.size[i]

    def call(self, inputs):
        for ax, f in zip(self._spatial_axes(), self.size):
            if f > 1:
                inputs = ops.repeat(inputs, f, axis=ax)
        return inputs

    def get_config(self):
        return {**super().get_config(), "size": self.size}


class UpSampling1D(_UpSampling):
    """Repeats each step `size` times along the steps axis: (batch, steps, features) ->
    (batch, steps * size, features)."""
    rank, has_data_format = 1, False

    def __init__(self, size=2, **kwargs):
        _no_data_format("UpSampling1D", kwargs)
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)):
            raise TypeError(f"UpSampling1D: `size` must be an integer, received size={size!r} of type "
                            f"{type(size).__name__}")
        if size <= 0:
            raise ValueError(f"UpSampling1D: `size` must be a positive integer, received size={size}")
        super().__init__(size=int(size), **kwargs)
        self.size = int(size)

    def _out_size(self, i, n, input_shape):
        return n * self.size

    def call(self, inputs):
        return ops.repeat(inputs, self.size, axis=1) if self.size > 1 else inputs


class UpSampling2D(_UpSampling):
    """Scales rows and columns by `size` = (rows, cols): `interpolation="nearest"` repeats them;
    "bilinear", "bicubic", "lanczos3" and "lanczos5" interpolate as keras.ops.image.resize (half-pixel
    centres, no antialiasing)."""
    rank = 2

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(size=size, data_format=data_format, **kwargs)
        i = interpolation.lower() if isinstance(interpolation, str) else interpolation
        if i not in INTERPOLATIONS:
            raise ValueError(f"UpSampling2D: `interpolation` must be one of {INTERPOLATIONS}, received "
                             f"interpolation={interpolation!r}")
        self.interpolation = i

    def compute_output_dtype(self, in_dtypes):
        return in_dtypes if self.interpolation == "nearest" else self.dtype

    def call(self, inputs):
        if self.interpolation == "nearest":
            return super().call(inputs)
        if inputs.dtype != "float32":
            inputs = ops.cast(inputs, "float32")
        for ax, f in zip(self._spatial_axes(), self.size):
            inputs = resample_axis(inputs, ax, f, self.interpolation)
        return inputs

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


class UpSampling3D(_UpSampling):
    """Repeats the three spatial axes `size` = (d1, d2, d3) times."""
    rank = 3

    def __init__(self, size=(2, 2, 2), data_format=None, **kwargs):
        super().__init__(size=size, data_format=data_format, **kwargs)


# -- cropping --

class _Cropping(_Spatial):
    def __init__(self, cropping, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self._crops = _pairs(type(self).__name__, "cropping", cropping, self.rank)
        self.cropping = self._crops if self.rank > 1 else self._crops[0]   # Keras's attribute

    def _out_size(self, i, n, input_shape):
        b, e = self._crops[i]
        if b + e >= n:
            ax = self._spatial_axes()[i]
            raise ValueError(f"{type(self).__name__} '{self.name}': cropping {self.cropping} "
                             f"removes {b + e} of the {n} entries of axis {ax} of inputs of shape "
                             f"{tuple(input_shape)}; at least one must remain. Reduce `cropping` or pass a "
                             "larger input")
        return n - b - e

    def call(self, inputs):
        key = [slice(None)] * inputs.ndim
        for i, ax in enumerate(self._spatial_axes()):
            b = self._crops[i][0]
            key[ax] = slice(b, self._out_size(i, inputs.shape[ax], inputs.shape) + b)
        return inputs[tuple(key)]

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping}


class Cropping1D(_Cropping):
    """Crops the steps axis: `cropping` = int or (start, end); (batch, steps, features) in and out."""
    rank, has_data_format = 1, False

    def __init__(self, cropping=(1, 1), **kwargs):
        _no_data_format("Cropping1D", kwargs)
        super().__init__(cropping, **kwargs)


class Cropping2D(_Cropping):
    """Crops rows and columns: int, (sym_rows, sym_cols) or ((top, bottom), (left, right))."""
    rank = 2

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(cropping, data_format=data_format, **kwargs)


class Cropping3D(_Cropping):
    """Crops the three spatial axes: int, 3 ints or 3 (start, end) pairs."""
    rank = 3

    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(cropping, data_format=data_format, **kwargs)


# -- zero padding --

class _ZeroPadding(_Spatial):
    def __init__(self, padding, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self._pads = _pairs(type(self).__name__, "padding", padding, self.rank)
        self.padding = self._pads if self.rank > 1 else self._pads[0]   # Keras's attribute

    def _out_size(self, i, n, input_shape):
        return n + sum(self._pads[i])

    def call(self, inputs):
        widths = [(0, 0)] * inputs.ndim
        for p, ax in zip(self._pads, self._spatial_axes()):
            widths[ax] = p
        return ops.pad(inputs, tuple(widths))

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


class ZeroPadding1D(_ZeroPadding):
    """Pads the steps axis with zeros: `padding` = int or (start, end)."""
    rank = 1

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(padding, data_format=data_format, **kwargs)


class ZeroPadding3D(_ZeroPadding):
    """Pads the three spatial axes with zeros: int, 3 ints or 3 (start, end) pairs."""
    rank = 3

    def __init__(self, padding=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(padding, data_format=data_format, **kwargs)
