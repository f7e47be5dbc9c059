"""`ops.image`: keras.ops.image's functions, with Keras's arguments and defaults and the values of
its JAX backend: colour conversions, resize, affine and perspective transforms,
map_coordinates, patches, padding and cropping, Gaussian blur, elastic deformation,
scale_and_translate, Sobel edges and SSIM.

Images are one image (rank 3) or a batch (rank 4), channels_last unless `data_format` says
"channels_first" (None means channels_last, Keras's default image_data_format). The maths runs
on float32 tensors with ops (resampling through backend/resampling.py, filters through
depthwise convolutions), so everything is differentiable in the images where Keras's is:
resize, affine_transform, perspective_transform, map_coordinates (also in the coordinates),
extract_patches, crop/pad, the colour conversions, blur, sobel_edges and ssim. Integer images
are computed in float32 and converted back as Keras does for that op (resize rounds and
saturates; the samplers round half away from zero).

Where Keras's backends disagree with its own documentation, lamina follows the documentation and
says so in the function: affine_transform applies c0, c1 as the projective transform documented
(only TensorFlow's backend does); elastic_transform draws independent x and y displacements (JAX
and TensorFlow draw the same field twice).
"""
import math as _pymath

import numpy as np

from . import dtypes, validation
from . import math as _m
from .convolution import depthwise_conv
from .device import device as _device
from .linalg_ops import solve
from .manipulation import concatenate, expand_dims, pad, reshape, squeeze, stack, take, transpose
from .math import _as_tensor
from .numpy_extra import saturate_cast
from .random import normal
from .settings import standardize_data_format
from .resampling import (FILL_MODES, aspect_crop_box, aspect_pad, resample_taps, resample_with_taps,
                         resize_batch, round_half_away, sample_at, transform_batch)
from .tensor import Tensor

__all__ = ["rgb_to_grayscale", "rgb_to_hsv", "hsv_to_rgb", "resize", "affine_transform", "extract_patches",
           "extract_patches_3d", "map_coordinates", "pad_images", "crop_images", "perspective_transform",
           "gaussian_blur", "elastic_transform", "scale_and_translate", "sobel_edges", "ssim"]

RESIZE_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "lanczos3", "lanczos5", "area")
AFFINE_INTERPOLATIONS = ("nearest", "bilinear")
SCALE_AND_TRANSLATE_METHODS = {"linear": "bilinear", "bilinear": "bilinear", "trilinear": "bilinear",
                               "cubic": "bicubic", "bicubic": "bicubic", "tricubic": "bicubic",
                               "lanczos3": "lanczos3", "lanczos5": "lanczos5"}
_F32 = dtypes.FLOAT32


# ---- arguments -------------------------------------------------------------------------------------

_data_format = standardize_data_format  # (data_format, op): None -> image_data_format()


def _choice(op, name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{op}: `{name}` must be one of {tuple(allowed)}, received {name}={value!r}")
    return value


def _real(op, name, value):
    v = validation.real(value, op, f"`{name}`")
    if not _pymath.isfinite(v):
        raise ValueError(f"{op}: `{name}` must be a finite number, received {name}={value!r}")
    return v


def _positive(op, name, value):
    v = _real(op, name, value)
    if v <= 0:
        raise ValueError(f"{op}: `{name}` must be a positive number, received {name}={value!r}")
    return v


def _ints(op, name, value, n, minimum=1):
    """An int or a sequence of n ints, each >= minimum -> tuple of n ints."""
    def ok(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= minimum
    if ok(value):
        return (int(value),) * n
    if isinstance(value, (tuple, list)) and len(value) == n and all(ok(v) for v in value):
        return tuple(int(v) for v in value)
    what = "positive integers" if minimum == 1 else f"integers >= {minimum}"
    raise ValueError(f"{op}: `{name}` must be an int or a tuple of {n} {what}, received {name}={value!r}")


def _images(images, op, name="images", ranks=(3, 4)):
    x = _as_tensor(images, op)
    if x.ndim not in ranks:
        want = ("rank 3 (single image) or rank 4 (batch of images)" if ranks == (3, 4) else
                " or ".join(f"rank {r}" for r in ranks))
        raise ValueError(f"{op}: invalid {name} rank: expected {want}, received {name} of shape {x.shape}")
    if x.dtype == dtypes.BOOL:
        raise TypeError(f"{op}: expected numeric {name} (float32 or integer), received bool {name} of shape "
                        f"{x.shape}; cast them with ops.cast({name}, 'float32')")
    return x


def _float_only(x, op, name="images"):
    if x.dtype not in dtypes.FLOATS:
        raise TypeError(f"{op}: expected float {name}, received {name} of dtype {x.dtype} and shape {x.shape}; "
                        f"cast them with ops.cast({name}, 'float32') (values in [0, 1])")
    return x


def _to_nhwc(x, data_format):
    """(NHWC batch, whether the input was one image)."""
    single = x.ndim == 3
    if single:
        x = expand_dims(x, 0)
    if data_format == "channels_first":
        x = transpose(x, (0, 2, 3, 1))
    return x, single


def _from_nhwc(x, data_format, single):
    if data_format == "channels_first":
        x = transpose(x, (0, 3, 1, 2))
    return squeeze(x, 0) if single else x


def _float(x):
    return x if x.dtype == _F32 else _m.cast(x, _F32)


def _on(t, dev):
    """A tensor argument (transform, points, coordinates) moved to the images' device."""
    return t if t.device is dev else t.to(dev)


def _rounded_back(y, dtype):
    """A float result back to the input's dtype: an integer one rounded (half to even) and
    saturated, as keras.ops.image.resize does; bfloat16 rounded to its precision."""
    return _m.cast(y, dtype) if dtype in dtypes.FLOATS else saturate_cast(_m.round(y), dtype)


def _sampled_back(y, dtype):
    """A sampled float result back to an integer input's dtype: rounded half away from zero, as
    jax.scipy.ndimage.map_coordinates does (bfloat16: rounded to its precision)."""
    return _m.cast(y, dtype) if dtype in dtypes.FLOATS else _m.cast(round_half_away(y), dtype)


# ---- colour ------------------------------------------------------------------------------------------

def rgb_to_grayscale(images, data_format=None):
    """RGB images to grayscale (0.2989 R + 0.5870 G + 0.1140 B, tf.image's weights); one channel
    is returned as it is. Integer images give integers (the weighted sum truncated), as Keras."""
    op = "rgb_to_grayscale"
    fmt = _data_format(data_format, op)
    x = _images(images, op)
    axis = -1 if fmt == "channels_last" else -3
    if x.shape[axis] not in (1, 3):
        raise ValueError(f"{op}: invalid channel size: expected 3 (RGB) or 1 (grayscale) channels on axis {axis} "
                         f"({fmt}), received images of shape {x.shape}")
    if x.shape[axis] == 1:
        return x
    with _device(x.device):
        r, g, b = _channels(_float(x), axis)
        y = expand_dims(_m.add(_m.add(_m.multiply(r, 0.2989), _m.multiply(g, 0.5870)), _m.multiply(b, 0.1140)),
                        axis)
        return y if x.dtype == _F32 else _m.cast(y, x.dtype)


def _channels(x, axis):
    return [squeeze(p, axis) for p in _split3(x, axis)]


def _split3(x, axis):
    ax = axis % x.ndim
    idx = [slice(None)] * x.ndim
    out = []
    for i in range(3):
        idx[ax] = slice(i, i + 1)
        out.append(x[tuple(idx)])
    return out


def _hsv_args(images, data_format, op):
    fmt = _data_format(data_format, op)
    x = _float_only(_images(images, op), op)
    axis = -1 if fmt == "channels_last" else -3
    if x.shape[axis] != 3:
        raise ValueError(f"{op}: input images must have 3 channels on axis {axis} ({fmt}), received images of "
                         f"shape {x.shape}")
    return x, axis


def rgb_to_hsv(images, data_format=None):
    """RGB to HSV (float images, well defined for values in [0, 1]); every HSV value is in [0, 1],
    hue 0 is red, 1/3 green, 2/3 blue (dm_pix's formulas, as Keras)."""
    x, axis = _hsv_args(images, data_format, "rgb_to_hsv")
    with _device(x.device):
        eps = float(np.finfo(np.float32).eps)
        x = _m.where(_m.less(_m.abs(x), eps), 0.0, x)
        r, g, b = _channels(x, axis)
        value = _m.maximum(_m.maximum(r, g), b)
        minimum = _m.minimum(_m.minimum(r, g), b)
        range_ = _m.subtract(value, minimum)
        positive_value = _m.greater(value, 0.0)
        positive_range = _m.greater(range_, 0.0)
        safe_value = _m.where(positive_value, value, 1.0)
        safe_range = _m.where(positive_range, range_, 1.0)
        saturation = _m.where(positive_value, _m.divide(range_, safe_value), 0.0)
        norm = _m.divide(1.0, _m.multiply(safe_range, 6.0))
        hue = _m.where(_m.equal(value, g), _m.add(_m.multiply(norm, _m.subtract(b, r)), 2.0 / 6.0),
                       _m.add(_m.multiply(norm, _m.subtract(r, g)), 4.0 / 6.0))
        hue = _m.where(_m.equal(value, r), _m.multiply(norm, _m.subtract(g, b)), hue)
        hue = _m.add(_m.where(positive_range, hue, 0.0), _m.cast(_m.less(hue, 0.0), hue.dtype))
        return stack([hue, saturation, value], axis=axis)


def hsv_to_rgb(images, data_format=None):
    """HSV to RGB (float images, values in [0, 1]); the inverse of rgb_to_hsv."""
    x, axis = _hsv_args(images, data_format, "hsv_to_rgb")
    with _device(x.device):
        hue, saturation, value = _channels(x, axis)
        dh = _m.multiply(_m.mod(hue, 1.0), 6.0)
        dr = _m.clip(_m.subtract(_m.abs(_m.subtract(dh, 3.0)), 1.0), 0.0, 1.0)
        dg = _m.clip(_m.subtract(2.0, _m.abs(_m.subtract(dh, 2.0))), 0.0, 1.0)
        db = _m.clip(_m.subtract(2.0, _m.abs(_m.subtract(dh, 4.0))), 0.0, 1.0)
        one_minus_s = _m.subtract(1.0, saturation)
        rgb = [_m.multiply(value, _m.add(one_minus_s, _m.multiply(saturation, d))) for d in (dr, dg, db)]
        return stack(rgb, axis=axis)


# ---- resize --------------------------------------------------------------------------------------------

def resize(images, size, interpolation="bilinear", antialias=False, crop_to_aspect_ratio=False,
           pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0, data_format=None):
    """Resizes images to `size` = (height, width), as keras.ops.image.resize on JAX.

    interpolation: "bilinear" (default), "nearest", "bicubic" (Keys, a = -0.5), "lanczos3",
    "lanczos5" or "area" (each output pixel averages the input it covers; JAX's and TensorFlow's
    area method; Keras's JAX backend does not offer it). Pixel centres are at half-integers.
    antialias: when downsampling, widen the kernel to the output's pixel size (a low-pass filter);
    it does not apply to "nearest", which picks pixels, nor to "area", which already averages.
    crop_to_aspect_ratio: first crop the largest centred window with the target's aspect ratio.
    pad_to_aspect_ratio: first pad evenly (with `fill_value`; `fill_mode` must be "constant",
    the only mode Keras has) to that ratio.
    Integer images are resized in float32, rounded and saturated back to their dtype ("nearest"
    gathers them as they are). Differentiable in the images."""
    op = "resize"
    fmt = _data_format(data_format, op)
    if isinstance(size, Tensor):
        size = size.numpy().tolist()
    if not isinstance(size, (tuple, list, np.ndarray)) or len(size) != 2:
        raise ValueError(f"{op}: expected `size` to be a tuple of 2 integers (height, width), received size={size!r}")
    height, width = _ints(op, "size", tuple(size), 2)
    interpolation = _choice(op, "interpolation", interpolation, RESIZE_INTERPOLATIONS)
    _choice(op, "fill_mode", fill_mode, ("constant",))
    fill_value = _real(op, "fill_value", fill_value)
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError(f"{op}: only one of `pad_to_aspect_ratio` and `crop_to_aspect_ratio` can be True")
    x = _images(images, op)
    with _device(x.device):
        x, single = _to_nhwc(x, fmt)
        in_dtype = x.dtype
        _, h, w, _ = x.shape
        if crop_to_aspect_ratio:
            top, left, ch, cw = aspect_crop_box(h, w, height, width)
            x = x[:, top:top + ch, left:left + cw, :]
        padding = aspect_pad(h, w, height, width) if pad_to_aspect_ratio else (0, 0)
        if interpolation == "nearest" and padding == (0, 0):
            return _from_nhwc(resize_batch(x, height, width, "nearest", op=op), fmt, single)
        x = _float(x)
        if padding != (0, 0):
            x = pad(x, ((0, 0), (padding[0],) * 2, (padding[1],) * 2, (0, 0)), constant_values=fill_value)
        y = resize_batch(x, height, width, interpolation, bool(antialias), op=op)
        return _from_nhwc(_rounded_back(y, in_dtype), fmt, single)


def scale_and_translate(images, output_shape, scale, translation, spatial_dims, method, antialias=True):
    """Resamples `images` to `output_shape` with a scale and a translation per spatial dimension,
    as jax.image.scale_and_translate (what Keras runs): output location x maps back to the input
    location (x - translation) / scale, with pixel centres at half-integers; an output whose
    sample falls outside the input is 0.

    output_shape: the whole output shape (non-spatial dimensions as in `images`); spatial_dims:
    the K dimensions to resample; scale, translation: K numbers (sequences or tensors, read as
    arguments: the result is differentiable in `images`, not in them); method: "linear" /
    "bilinear" / "trilinear", "cubic" / "bicubic" / "tricubic" (Keys), "lanczos3" or "lanczos5";
    antialias: widen the kernel when downsampling. The result is float32."""
    op = "scale_and_translate"
    x = _as_tensor(images, op)
    if x.dtype == dtypes.BOOL:
        raise TypeError(f"{op}: expected numeric images, received bool images of shape {x.shape}")
    out_shape = validation.shape(output_shape, op, "`output_shape`")
    if len(out_shape) != x.ndim:
        raise ValueError(f"{op}: `output_shape` must have one entry per dimension of images ({x.ndim}), received "
                         f"output_shape={out_shape} for images of shape {x.shape}")
    dims = validation.dims(spatial_dims, op, "`spatial_dims`")
    dims = tuple(validation.axis(d, x.ndim, op, "`spatial_dims`", x.shape) for d in dims)
    if len(set(dims)) != len(dims):
        raise ValueError(f"{op}: `spatial_dims` must not repeat a dimension, received spatial_dims={spatial_dims!r}")
    scales, shifts = _vector(scale, op, "scale", len(dims)), _vector(translation, op, "translation", len(dims))
    for s in scales:
        if s == 0 or not _pymath.isfinite(s):
            raise ValueError(f"{op}: every `scale` must be a finite non-zero number, received scale={scales}")
    for t in shifts:
        if not _pymath.isfinite(t):
            raise ValueError(f"{op}: every `translation` must be finite, received translation={shifts}")
    if not isinstance(method, str) or method not in SCALE_AND_TRANSLATE_METHODS:
        raise ValueError(f"{op}: `method` must be one of {sorted(SCALE_AND_TRANSLATE_METHODS)}, received "
                         f"method={method!r} (nearest-neighbour sampling is not available here, as in Keras)")
    for d in range(x.ndim):
        if d not in dims and out_shape[d] != x.shape[d]:
            raise ValueError(f"{op}: dimension {d} is not in spatial_dims={dims}, so output_shape[{d}] must equal "
                             f"images.shape[{d}] = {x.shape[d]}, received output_shape={out_shape}")
    kernel = SCALE_AND_TRANSLATE_METHODS[method]
    with _device(x.device):
        y = _float(x)
        for d, s, t in zip(dims, scales, shifts):
            if y.shape[d] == 0 or out_shape[d] == 0:
                y = _m.zeros(y.shape[:d] + (out_shape[d],) + y.shape[d + 1:], _F32, device=y.device)
                continue
            idx, w = resample_taps(y.shape[d], out_shape[d], s, t, kernel, bool(antialias))
            y = resample_with_taps(y, d, idx, w, op)
        return y


def _vector(value, op, name, n):
    """K host floats from a sequence, array or tensor (an argument, not data)."""
    if isinstance(value, Tensor):
        value = value.numpy()
    a = np.asarray(value)
    if a.dtype.kind not in "iuf" or a.ndim > 1:
        raise ValueError(f"{op}: `{name}` must be a sequence of {n} numbers (one per spatial dimension), received "
                         f"{name}={value!r}")
    a = a.reshape(-1).astype(np.float64)
    if a.size != n:
        raise ValueError(f"{op}: `{name}` must have one entry per spatial dimension ({n}), received {a.size}: "
                         f"{name}={value!r}")
    return tuple(float(v) for v in a)


# ---- geometric transforms and map_coordinates -----------------------------------------------------------

def _transform_matrix(transform, batch, op, dev):
    t = _float(_on(_as_tensor(transform, op), dev))
    if t.ndim not in (1, 2) or t.shape[-1] != 8:
        raise ValueError(f"{op}: invalid transform: expected a vector of 8 numbers [a0, a1, a2, b0, b1, b2, c0, c1] "
                         f"or a (batch, 8) matrix, received transform of shape {t.shape}")
    if t.ndim == 1:
        t = expand_dims(t, 0)
    if t.shape[0] != batch:
        if t.shape[0] != 1:
            raise ValueError(f"{op}: {t.shape[0]} transforms for a batch of {batch} images; pass one transform "
                             "(shape (8,) or (1, 8)) for all, or one per image")
        t = _m.broadcast_to(t, (batch, 8))
    return t


def affine_transform(images, transform, interpolation="bilinear", fill_mode="constant", fill_value=0,
                     data_format=None):
    """Samples each output pixel (x, y) at the input point
    ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k), k = c0 x + c1 y + 1, where a row of
    `transform` is [a0, a1, a2, b0, b1, b2, c0, c1] (the inverse map, as Keras documents: a
    vector of 8 for every image or a (batch, 8) matrix). c0 and c1 make it projective as Keras
    documents; Keras's JAX and PyTorch backends ignore them, its TensorFlow backend applies them.
    A pixel with k = 0 gets `fill_value`.

    interpolation: "bilinear" (default) or "nearest"; fill_mode: "constant" (default,
    `fill_value`), "nearest", "wrap", "mirror" or "reflect" (see map_coordinates).
    Differentiable in the images (and in the transform, through the interpolation weights)."""
    op = "affine_transform"
    fmt = _data_format(data_format, op)
    interpolation = _choice(op, "interpolation", interpolation, AFFINE_INTERPOLATIONS)
    fill_mode = _choice(op, "fill_mode", fill_mode, FILL_MODES)
    fill_value = _real(op, "fill_value", fill_value)
    x = _images(images, op)
    with _device(x.device):
        x, single = _to_nhwc(x, fmt)
        t = _transform_matrix(transform, x.shape[0], op, x.device)
        y = transform_batch(_float(x), t, interpolation, fill_mode, fill_value)
        return _from_nhwc(_sampled_back(y, x.dtype), fmt, single)


def perspective_transform(images, start_points, end_points, interpolation="bilinear", fill_value=0,
                          data_format=None):
    """Warps images so that the four `start_points` (x, y) move to `end_points`: each output
    pixel samples the input through the homography that maps end points to start points (found
    with `solve`, as Keras's JAX backend does), with `fill_value` outside the input.

    start_points, end_points: (4, 2) for every image or (batch, 4, 2), the same shape.
    interpolation: "bilinear" (default) or "nearest". Differentiable in the images and points."""
    op = "perspective_transform"
    fmt = _data_format(data_format, op)
    interpolation = _choice(op, "interpolation", interpolation, AFFINE_INTERPOLATIONS)
    fill_value = _real(op, "fill_value", fill_value)
    x = _images(images, op)
    start, end = (_float(_on(_as_tensor(p, op), x.device)) for p in (start_points, end_points))
    for name, p in (("start_points", start), ("end_points", end)):
        if p.ndim not in (2, 3) or p.shape[-2:] != (4, 2):
            raise ValueError(f"{op}: invalid {name} shape: expected (4, 2) for a single image or (N, 4, 2) for a "
                             f"batch, received {name} of shape {p.shape}")
    if start.shape != end.shape:
        raise ValueError(f"{op}: start_points and end_points must have the same shape, received "
                         f"start_points.shape={start.shape}, end_points.shape={end.shape}")
    with _device(x.device):
        x, single = _to_nhwc(x, fmt)
        if start.ndim == 2:
            start, end = expand_dims(start, 0), expand_dims(end, 0)
        h = _homography(start, end)
        t = _transform_matrix(h, x.shape[0], op, x.device)
        y = transform_batch(_float(x), t, interpolation, "constant", fill_value)
        return _from_nhwc(_sampled_back(y, x.dtype), fmt, single)


def _homography(start, end):
    """(N, 8) projective transforms mapping end points to start points: the 8x8 linear system of
    the four correspondences, solved."""
    sx, sy = start[..., 0], start[..., 1]
    ex, ey = end[..., 0], end[..., 1]
    zeros, ones = _m.zeros_like(ex), _m.ones_like(ex)
    x_rows = stack([ex, ey, ones, zeros, zeros, zeros, _m.negative(_m.multiply(sx, ex)),
                    _m.negative(_m.multiply(sx, ey))], axis=-1)
    y_rows = stack([zeros, zeros, zeros, ex, ey, ones, _m.negative(_m.multiply(sy, ex)),
                    _m.negative(_m.multiply(sy, ey))], axis=-1)
    a = concatenate([x_rows, y_rows], axis=1)                      # (N, 8, 8)
    b = expand_dims(concatenate([sx, sy], axis=-1), -1)            # (N, 8, 1)
    try:
        return squeeze(solve(a, b), -1)
    except ValueError as e:
        if "singular" not in str(e):
            raise
        raise ValueError("perspective_transform: no perspective transform maps these end_points to start_points "
                         "(the four points of each set must be distinct, no three of them on one line); "
                         f"solving for it failed: {e}") from None


def map_coordinates(inputs, coordinates, order, fill_mode="constant", fill_value=0):
    """Values of `inputs` at `coordinates` by interpolation, as jax.scipy.ndimage.map_coordinates.

    coordinates: a tensor of shape (inputs.ndim, ...) (or a sequence of inputs.ndim tensors of one
    shape): the position of each output along every dimension of inputs; the output has the
    coordinates' trailing shape. order: 0 (nearest; halves round away from zero) or 1 (linear).
    fill_mode for positions outside: "constant" (default: every interpolation tap outside gives
    `fill_value`), "nearest" (a a | a b c d | d d), "wrap" (c d | a b c d | a b), "mirror"
    (c b | a b c d | c b) or "reflect" (b a | a b c d | d c). Integer inputs give integers
    (rounded half away from zero). Differentiable in inputs and (order 1) in coordinates."""
    op = "map_coordinates"
    x = _as_tensor(inputs, op)
    if x.ndim == 0:
        raise ValueError(f"{op}: inputs must have at least one dimension, received a scalar")
    if x.dtype == dtypes.BOOL:
        raise TypeError(f"{op}: expected numeric inputs, received bool inputs of shape {x.shape}")
    if isinstance(coordinates, (list, tuple)):
        coords = [_float(_on(_as_tensor(c, op), x.device)) for c in coordinates]
        if len(coords) != x.ndim:
            raise ValueError(f"{op}: expected one coordinate array per dimension of inputs ({x.ndim}), received "
                             f"{len(coords)}")
        if len({c.shape for c in coords}) > 1:
            raise ValueError(f"{op}: the coordinate arrays must have one shape, received shapes "
                             f"{[c.shape for c in coords]}")
    else:
        c = _float(_on(_as_tensor(coordinates, op), x.device))
        if c.ndim < 2:
            raise ValueError(f"{op}: invalid coordinates rank: expected at least rank 2 ((inputs.ndim, ...)), "
                             f"received coordinates of shape {c.shape}")
        if c.shape[0] != x.ndim:
            raise ValueError(f"{op}: the first dimension of `coordinates` must be the rank of `inputs`, received "
                             f"inputs of shape {x.shape} and coordinates of shape {c.shape}")
        coords = [c[i] for i in range(x.ndim)]
    if isinstance(order, (bool, np.bool_)) or order not in (0, 1):
        raise ValueError(f"{op}: `order` must be 0 (nearest) or 1 (linear), received order={order!r}")
    fill_mode = _choice(op, "fill_mode", fill_mode, FILL_MODES)
    fill_value = _real(op, "fill_value", fill_value)
    if x.dtype not in dtypes.FLOATS:
        fill_value = float(int(fill_value))      # JAX casts fill_value to the inputs' dtype
    with _device(x.device):
        if x.size == 0:
            raise ValueError(f"{op}: inputs of shape {x.shape} hold no values to interpolate")
        y = sample_at(reshape(_float(x), (x.size,)), coords, x.shape, int(order), fill_mode, fill_value)
        return _sampled_back(y, x.dtype)


def elastic_transform(images, alpha=20.0, sigma=5.0, interpolation="bilinear", fill_mode="reflect", fill_value=0.0,
                      seed=None, data_format=None):
    """Elastic deformation (Simard et al.): every pixel moves by alpha times a displacement field
    of standard normal noise scaled by sigma and smoothed by a Gaussian blur of that sigma
    (kernel int(6 sigma) | 1), one field per image, the same for its channels; the result is
    sampled with `interpolation` and `fill_mode` / `fill_value` (see map_coordinates).

    The x and y displacements are independent draws (Keras's JAX and TensorFlow backends draw the
    same field for both, which moves pixels along the diagonal only; its numpy backend draws two).
    seed: an int (reproducible), a SeedGenerator or None (the global generator)."""
    op = "elastic_transform"
    fmt = _data_format(data_format, op)
    interpolation = _choice(op, "interpolation", interpolation, AFFINE_INTERPOLATIONS)
    fill_mode = _choice(op, "fill_mode", fill_mode, FILL_MODES)
    fill_value = _real(op, "fill_value", fill_value)
    alpha, sigma = _real(op, "alpha", alpha), _positive(op, "sigma", sigma)
    x = _images(images, op)
    with _device(x.device):
        x, single = _to_nhwc(x, fmt)
        b, h, w, c = x.shape
        if b * h * w * c == 0:
            return _from_nhwc(x, fmt, single)
        k = int(6 * sigma) | 1
        noise = _m.multiply(normal((2 * b, h, w, 1), seed=seed), sigma)
        field = _blur_nhwc(noise, (k, k), (sigma, sigma))                     # (2b, h, w, 1)
        field = _m.multiply(reshape(field, (2, b, h, w)), alpha)
        xs = np.arange(w, dtype=np.float32).reshape(1, 1, w)
        ys = np.arange(h, dtype=np.float32).reshape(1, h, 1)
        x_in, y_in = _m.add(field[0], xs), _m.add(field[1], ys)
        base = (np.arange(b, dtype=np.int64) * (h * w)).reshape(b, 1, 1)
        if x.dtype not in dtypes.FLOATS:
            fill_value = float(int(fill_value))
        y = sample_at(reshape(_float(x), (b * h * w, c)), [y_in, x_in], (h, w), 0 if interpolation == "nearest" else 1,
                      fill_mode, fill_value, base=base)
        return _from_nhwc(_sampled_back(y, x.dtype), fmt, single)


# ---- patches, padding and cropping --------------------------------------------------------------------

def extract_patches(images, size, strides=None, dilation_rate=1, padding="valid", data_format=None):
    """Patches of images (size = (patch_height, patch_width) or an int) or of volumes (size of
    length 3: as extract_patches_3d), each flattened into the channel axis in (row, column,
    channel) order: (batch, out_h, out_w, ph * pw * channels) for channels_last, as Keras's
    identity-kernel convolution lays them out.

    strides: default `size` (non-overlapping); dilation_rate: the step between a patch's samples;
    padding: "valid" (whole patches) or "same" (zero padding, out = ceil(in / stride)). Integer
    images keep their dtype. Differentiable (a gather)."""
    op = "extract_patches"
    if isinstance(size, (tuple, list)):
        if len(size) not in (2, 3):
            raise ValueError(f"{op}: invalid `size`: expected an int or a tuple of length 2 (or 3 for volumes), "
                             f"received size={size!r} of length {len(size)}")
        if len(size) == 3:
            return _patches(images, size, strides, dilation_rate, padding, data_format, 3, op)
    elif isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"{op}: invalid `size`: expected an int or a tuple, received size={size!r} of type "
                        f"{type(size).__name__}")
    return _patches(images, size, strides, dilation_rate, padding, data_format, 2, op)


def extract_patches_3d(volumes, size, strides=None, dilation_rate=1, padding="valid", data_format=None):
    """Patches of volumes ((depth, height, width, channels) or a batch of them; size =
    (patch_depth, patch_height, patch_width) or an int), flattened in (depth, row, column,
    channel) order: (batch, out_d, out_h, out_w, pd * ph * pw * channels) for channels_last.
    strides default to `size`; dilation_rate and padding ("valid" / "same") as extract_patches."""
    return _patches(volumes, size, strides, dilation_rate, padding, data_format, 3, "extract_patches_3d")


def _patches(images, size, strides, dilation_rate, padding, data_format, n, op):
    fmt = _data_format(data_format, op)
    name = "images" if n == 2 else "volumes"
    x = _as_tensor(images, op)
    if x.ndim not in (n + 1, n + 2):
        raise ValueError(f"{op}: expected {name} of rank {n + 1} (one) or {n + 2} (a batch) for {n}-D patches, "
                         f"received {name} of shape {x.shape}")
    size = _ints(op, "size", size, n)
    strides = size if strides is None else _ints(op, "strides", strides, n)
    dilation = _ints(op, "dilation_rate", dilation_rate, n)
    p = padding.lower() if isinstance(padding, str) else padding
    if p not in ("valid", "same"):
        raise ValueError(f"{op}: `padding` must be 'valid' or 'same', received padding={padding!r}")
    with _device(x.device):
        single = x.ndim == n + 1
        if single:
            x = expand_dims(x, 0)
        if fmt == "channels_first":
            x = transpose(x, (0,) + tuple(range(2, n + 2)) + (1,))
        spatial = x.shape[1:n + 1]
        plans = []
        for ax, (s, k, st, d) in enumerate(zip(spatial, size, strides, dilation)):
            span = (k - 1) * d + 1
            if p == "valid":
                if s < span:
                    raise ValueError(f"{op}: a patch of size {k} (dilation {d}) spans {span} elements, more than "
                                     f"the {s} of spatial axis {ax} of {name} of shape {tuple(images.shape)}; use "
                                     "padding='same' or smaller patches")
                out, before, after = (s - span) // st + 1, 0, 0
            else:
                out = -(-s // st)
                total = max((out - 1) * st + span - s, 0)
                before, after = total // 2, total - total // 2
            idx = (np.arange(out)[:, None] * st + np.arange(k)[None, :] * d).astype(np.int64)
            plans.append((before, after, idx))
        if any(b or a for b, a, _ in plans):
            x = pad(x, ((0, 0),) + tuple((b, a) for b, a, _ in plans) + ((0, 0),))
        # gather each spatial axis's windows: axis 1 + 2 * i becomes (out_i, k_i)
        for i, (_, _, idx) in enumerate(plans):
            x = take(x, idx, axis=1 + 2 * i)
        b = x.shape[0]
        outs = tuple(idx.shape[0] for _, _, idx in plans)
        perm = (0,) + tuple(1 + 2 * i for i in range(n)) + tuple(2 + 2 * i for i in range(n)) + (2 * n + 1,)
        y = reshape(transpose(x, perm), (b,) + outs + (-1,))
        if fmt == "channels_first":
            y = transpose(y, (0, n + 1) + tuple(range(1, n + 1)))
        return squeeze(y, 0) if single else y


def _pad_crop_args(op, verb, top, left, bottom, right, target_height, target_width):
    names = (f"top_{verb}", f"bottom_{verb}", "target_height", f"left_{verb}", f"right_{verb}", "target_width")
    values = (top, bottom, target_height, left, right, target_width)
    for group in (slice(0, 3), slice(3, 6)):
        given = [v for v in values[group] if v is not None]
        if len(given) != 2:
            raise ValueError(f"{op}: specify exactly two of {', '.join(names[group])}, received "
                             + ", ".join(f"{n}={v!r}" for n, v in zip(names[group], values[group])))
    out = []
    for n, v in zip(names, values):
        if v is not None:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{op}: `{n}` must be an integer, received {n}={v!r}")
            if v < 0:
                raise ValueError(f"{op}: `{n}` must be >= 0, received {n}={v}")
            v = int(v)
        out.append(v)
    return out


def pad_images(images, top_padding=None, left_padding=None, bottom_padding=None, right_padding=None,
               target_height=None, target_width=None, data_format=None):
    """Pads images with zeros: exactly two of top_padding, bottom_padding, target_height and two
    of left_padding, right_padding, target_width (the third follows)."""
    op = "pad_images"
    fmt = _data_format(data_format, op)
    x = _images(images, op)
    top, bottom, th, left, right, tw = _pad_crop_args(op, "padding", top_padding, left_padding, bottom_padding,
                                                      right_padding, target_height, target_width)
    h_ax, w_ax = (-3, -2) if fmt == "channels_last" else (-2, -1)
    h, w = x.shape[h_ax], x.shape[w_ax]
    top = th - bottom - h if top is None else top
    bottom = th - top - h if bottom is None else bottom
    left = tw - right - w if left is None else left
    right = tw - left - w if right is None else right
    for n, v in (("top_padding", top), ("bottom_padding", bottom), ("left_padding", left), ("right_padding", right)):
        if v < 0:
            raise ValueError(f"{op}: the images ({h} x {w}, shape {x.shape}) are larger than the target: {n} would be "
                             f"{v}; a target must be at least the image's size plus the padding given")
    widths = [(0, 0)] * x.ndim
    widths[h_ax], widths[w_ax] = (top, bottom), (left, right)
    with _device(x.device):
        return pad(x, tuple(widths))


def crop_images(images, top_cropping=None, left_cropping=None, bottom_cropping=None, right_cropping=None,
                target_height=None, target_width=None, data_format=None):
    """Crops images: exactly two of top_cropping, bottom_cropping, target_height and two of
    left_cropping, right_cropping, target_width (the third follows)."""
    op = "crop_images"
    fmt = _data_format(data_format, op)
    x = _images(images, op)
    top, bottom, th, left, right, tw = _pad_crop_args(op, "cropping", top_cropping, left_cropping,
                                                      bottom_cropping, right_cropping, target_height, target_width)
    h_ax, w_ax = (-3, -2) if fmt == "channels_last" else (-2, -1)
    h, w = x.shape[h_ax], x.shape[w_ax]
    top = h - th - bottom if top is None else top
    th = h - top - bottom if th is None else th
    left = w - tw - right if left is None else left
    tw = w - left - right if tw is None else tw
    for n, v in (("top_cropping", top), ("target_height", th), ("left_cropping", left), ("target_width", tw)):
        if v < 0:
            raise ValueError(f"{op}: the images ({h} x {w}, shape {x.shape}) are too small: {n} would be {v}")
    if top + th > h or left + tw > w:
        raise ValueError(f"{op}: a {th} x {tw} window at (top={top}, left={left}) does not fit in images of "
                         f"{h} x {w} (shape {x.shape})")
    idx = [slice(None)] * x.ndim
    idx[h_ax], idx[w_ax] = slice(top, top + th), slice(left, left + tw)
    return x[tuple(idx)]


# ---- filters -------------------------------------------------------------------------------------------------

def _gaussian_1d(size, sigma):
    x = np.arange(size, dtype=np.float32) - np.float32((size - 1) / 2)
    k = np.exp(np.float32(-0.5) * (x / np.float32(sigma)) ** 2)
    return (k / k.sum(dtype=np.float32)).astype(np.float32)


def _separable(x, k_rows, k_cols, padding):
    """A float NHWC batch filtered by the outer product of two 1-D kernels, channel by channel
    (two depthwise convolutions: rows, then columns)."""
    c = x.shape[-1]
    kr = np.ascontiguousarray(np.broadcast_to(k_rows.reshape(-1, 1, 1, 1), (k_rows.size, 1, c, 1)))
    kc = np.ascontiguousarray(np.broadcast_to(k_cols.reshape(1, -1, 1, 1), (1, k_cols.size, c, 1)))
    y = depthwise_conv(x, kr, padding=padding, data_format="channels_last")
    return depthwise_conv(y, kc, padding=padding, data_format="channels_last")


def _blur_nhwc(x, kernel_size, sigma):
    """Keras's JAX gaussian_blur on a float NHWC batch: the kernel's rows (height) use
    kernel_size[1] / sigma[1], its columns (width) kernel_size[0] / sigma[0]; zero padding."""
    return _separable(x, _gaussian_1d(kernel_size[1], sigma[1]), _gaussian_1d(kernel_size[0], sigma[0]), "same")


def gaussian_blur(images, kernel_size=(3, 3), sigma=(1.0, 1.0), data_format=None):
    """Blurs images with a Gaussian kernel, zero-padded to keep their size ("same").

    Keras documents kernel_size and sigma as (height, width); its implementation (all backends)
    builds the kernel as outer(g(kernel_size[1], sigma[1]), g(kernel_size[0], sigma[0])), so the
    first entries act along the width and the second along the height. lamina computes what
    Keras computes; the two readings agree for the usual square kernel with one sigma. An int
    kernel_size or a single sigma stands for both. Integer images are rounded and saturated
    back to their dtype. Differentiable in the images."""
    op = "gaussian_blur"
    fmt = _data_format(data_format, op)
    ks = _ints(op, "kernel_size", kernel_size, 2)
    if isinstance(sigma, Tensor):
        sigma = sigma.numpy().tolist()
    if isinstance(sigma, (tuple, list, np.ndarray)):
        if len(sigma) != 2:
            raise ValueError(f"{op}: `sigma` must be a number or a pair of positive numbers, received sigma={sigma!r}")
        sig = tuple(_positive(op, "sigma", s) for s in sigma)
    else:
        sig = (_positive(op, "sigma", sigma),) * 2
    x = _images(images, op)
    with _device(x.device):
        x, single = _to_nhwc(x, fmt)
        if x.size == 0:
            return _from_nhwc(x, fmt, single)
        y = _blur_nhwc(_float(x), ks, sig)
        return _from_nhwc(_rounded_back(y, x.dtype), fmt, single)


_SOBEL_Y = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float32)
_SOBEL_X = _SOBEL_Y.T.copy()


def sobel_edges(images, data_format=None):
    """Sobel gradients of a batch of images (rank 4), zero-padded: (batch, height, width,
    channels, 2) for channels_last ((batch, channels, height, width, 2) for channels_first),
    the last axis holding [dy, dx]. Integer images give integers. Differentiable."""
    op = "sobel_edges"
    fmt = _data_format(data_format, op)
    x = _images(images, op, ranks=(4,))
    with _device(x.device):
        x, _ = _to_nhwc(x, fmt)
        b, h, w, c = x.shape
        kernel = np.ascontiguousarray(np.broadcast_to(np.stack([_SOBEL_Y, _SOBEL_X], -1)[:, :, None, :], (3, 3, c, 2)))
        y = reshape(depthwise_conv(_float(x), kernel, padding="same", data_format="channels_last"), (b, h, w, c, 2))   # channel-major: c * 2 + m
        if fmt == "channels_first":
            y = transpose(y, (0, 3, 1, 2, 4))
        return y if x.dtype == _F32 else _m.cast(y, x.dtype)


def ssim(image1, image2, max_val=1.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03, data_format=None):
    """Structural similarity (Wang et al. 2004) of two images or batches, per image: the mean over
    the valid positions and the channels of the SSIM map with Gaussian-weighted local statistics
    (filter_size x filter_size window, filter_sigma), c1 = (k1 max_val)^2, c2 = (k2 max_val)^2.
    A scalar for one image, (batch,) for a batch; float32 (also for integer images, where Keras
    casts the scores to the images' integer dtype). Differentiable."""
    op = "ssim"
    fmt = _data_format(data_format, op)
    a, b = _images(image1, op, "image1"), _images(image2, op, "image2")
    if a.shape != b.shape:
        raise ValueError(f"{op}: image1 and image2 must have the same shape, received {a.shape} and {b.shape}")
    max_val = _positive(op, "max_val", max_val)
    if isinstance(filter_size, (bool, np.bool_)) or not isinstance(filter_size, (int, np.integer)) \
            or filter_size < 1 or filter_size % 2 == 0:
        raise ValueError(f"{op}: `filter_size` must be an odd integer >= 1, received filter_size={filter_size!r}")
    filter_sigma = _positive(op, "filter_sigma", filter_sigma)
    k1, k2 = _real(op, "k1", k1), _real(op, "k2", k2)
    with _device(a.device):
        a, single = _to_nhwc(_float(a), fmt)
        b, _ = _to_nhwc(_float(b), fmt)
        _, h, w, _ = a.shape
        if h < filter_size or w < filter_size:
            raise ValueError(f"{op}: images of {h} x {w} pixels are smaller than the {filter_size} x {filter_size} "
                             "filter window; pass a smaller filter_size")
        g = _gaussian_1d(filter_size, filter_sigma)

        def local_mean(t):
            return _separable(t, g, g, "valid")
        c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
        mu1, mu2 = local_mean(a), local_mean(b)
        mu1_sq, mu2_sq, mu12 = _m.multiply(mu1, mu1), _m.multiply(mu2, mu2), _m.multiply(mu1, mu2)
        s1 = _m.subtract(local_mean(_m.multiply(a, a)), mu1_sq)
        s2 = _m.subtract(local_mean(_m.multiply(b, b)), mu2_sq)
        s12 = _m.subtract(local_mean(_m.multiply(a, b)), mu12)
        num = _m.multiply(_m.add(_m.multiply(mu12, 2.0), c1), _m.add(_m.multiply(s12, 2.0), c2))
        den = _m.multiply(_m.add(_m.add(mu1_sq, mu2_sq), c1), _m.add(_m.add(s1, s2), c2))
        score = _m.mean(_m.divide(num, den), axis=(1, 2, 3))
        return squeeze(score, 0) if single else score
