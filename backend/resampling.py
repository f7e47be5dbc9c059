"""Resampling maths shared by `ops.image` (backend/image.py) and the image layers (Resizing,
the random affine layers, UpSampling2D): separable kernel resampling along one axis, and
interpolated sampling of an array at arbitrary coordinates (scipy's `map_coordinates`, orders
0 and 1) with its fill modes. Every function works on whole batches with ops; gradients flow
to the sampled values through `take` (and, for coordinate sampling, to the coordinates through
the interpolation weights).

Separable resampling follows `jax.image.scale_and_translate` (what Keras's JAX backend runs for
`ops.image.resize`): output pixel j of an axis samples the input at
    s_j = (j + 0.5) / scale - translation / scale - 0.5          (half-pixel centres)
with a kernel ("bilinear" triangle, "bicubic" Keys a = -0.5, "lanczos3", "lanczos5", or "area":
the overlap of the output pixel's footprint with each input pixel), widened by 1 / scale when
`antialias` and downsampling; the weights over the input pixels that exist are renormalised to
sum to 1, and an output whose sample lies outside [-0.5, n - 0.5] gets 0. The weights are a
function of the sizes, scale and translation only (host constants, like index arrays, cached),
kept as a few taps per output pixel: one `take` of the taps and a weighted sum, so the cost is
taps x output, not input x output.

Coordinate sampling follows `jax.scipy.ndimage.map_coordinates`: order 0 rounds half away from
zero, order 1 is linear; out-of-range indices are folded by `fill_mode` ("constant": every tap
outside gives `fill_value`; "nearest", "wrap", "mirror", "reflect") and the taps' values are
gathered with one flat `take` each.
"""
import functools
import itertools
import math as _pymath

import numpy as np

from . import dtypes, validation
from . import math as _m
from .manipulation import reshape, take
from .tensor import convert_to_tensor

KERNEL_METHODS = ("bilinear", "bicubic", "lanczos3", "lanczos5", "area")
FILL_MODES = ("constant", "nearest", "wrap", "mirror", "reflect")

_F32 = np.float32
_TINY = 1000.0 * float(np.finfo(np.float32).eps)


# ---- separable resampling -----------------------------------------------------------------------

def _triangle(x):
    return np.maximum(_F32(0), _F32(1) - np.abs(x))


def _keys_cubic(x):
    out = ((_F32(1.5) * x - _F32(2.5)) * x) * x + _F32(1)
    out = np.where(x >= 1, ((_F32(-0.5) * x + _F32(2.5)) * x - _F32(4)) * x + _F32(2), out)
    return np.where(x >= 2, _F32(0), out)


def _lanczos(radius):
    r = _F32(radius)

    def kernel(x):
        y = r * np.sin(_F32(np.pi) * x) * np.sin(_F32(np.pi) * x / r)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(x > _F32(1e-3), y / np.where(x != 0, _F32(np.pi ** 2) * (x * x), _F32(1)), _F32(1))
        return np.where(x > r, _F32(0), out)
    return kernel


# method -> (radius, kernel)
_KERNELS = {"bilinear": (1, _triangle), "bicubic": (2, _keys_cubic), "lanczos3": (3, _lanczos(3)),
            "lanczos5": (5, _lanczos(5))}


@functools.lru_cache(maxsize=256)
def resample_taps(n_in, n_out, scale, translation, method, antialias):
    """(indices (n_out, taps) int64, weights (n_out, taps) float32) of one axis resampled from
    n_in to n_out values: jax.image's compute_weight_mat (in float32, as JAX computes it) kept
    to the input pixels each output pixel can touch. Indices of taps that fall outside the input
    are clipped into it with weight 0."""
    scale, translation = _F32(scale), _F32(translation)
    inv_scale = _F32(1) / scale
    j = np.arange(n_out, dtype=_F32)
    sample = (j + _F32(0.5)) * inv_scale - translation * inv_scale - _F32(0.5)
    if method == "area":
        left = j * inv_scale - translation * inv_scale
        first = np.floor(left).astype(np.int64)
        taps = int(_pymath.ceil(abs(float(inv_scale)))) + 2
        idx = first[:, None] + np.arange(taps)[None, :]
        lo = idx.astype(_F32)
        w = np.maximum(_F32(0), np.minimum((left + inv_scale)[:, None], lo + _F32(1)) - np.maximum(left[:, None], lo))
    else:
        radius, kernel = _KERNELS[method]
        kernel_scale = max(inv_scale, _F32(1)) if antialias else _F32(1)
        reach = float(radius * kernel_scale)
        taps = int(_pymath.floor(2 * reach)) + 3
        idx = np.floor(sample.astype(np.float64) - reach).astype(np.int64)[:, None] + np.arange(taps)[None, :]
        w = kernel(np.abs(sample[:, None] - idx.astype(_F32)) / kernel_scale)
    w = np.where((idx >= 0) & (idx < n_in), w, _F32(0)).astype(_F32)
    total = w.sum(axis=1, keepdims=True, dtype=_F32)
    w = np.where(np.abs(total) > _TINY, w / np.where(total != 0, total, _F32(1)), _F32(0))
    w = np.where(((sample >= -0.5) & (sample <= n_in - 0.5))[:, None], w, _F32(0)).astype(_F32)
    used = np.flatnonzero(np.any(w != 0, axis=0))          # drop tap columns that are zero everywhere
    if used.size:
        idx, w = idx[:, used[0]:used[-1] + 1], w[:, used[0]:used[-1] + 1]
    else:
        idx, w = idx[:, :1], w[:, :1]
    return np.clip(idx, 0, max(n_in - 1, 0)), np.ascontiguousarray(w)


@functools.lru_cache(maxsize=256)
def nearest_indices(n_in, n_out):
    """jax.image.resize's nearest neighbour: input floor((j + 0.5) * n_in / n_out), in float32."""
    pos = (np.arange(n_out, dtype=_F32) + _F32(0.5)) * _F32(n_in) / _F32(n_out)
    return np.minimum(np.floor(pos).astype(np.int64), n_in - 1)


def resample_with_taps(x, axis, idx, w, op="resample"):
    """x resampled along `axis` with precomputed taps: one gather of every output pixel's taps and
    a weighted sum over them (a float32 tensor)."""
    n_out, taps = w.shape
    if taps == 1 and np.all(w == 1):
        return take(x, idx[:, 0], axis=axis)
    out_shape = x.shape[:axis] + (n_out, taps) + x.shape[axis + 1:]
    validation.check_alloc(op, out_shape, x.dtype, x.device)
    g = reshape(take(x, idx.reshape(-1), axis=axis), out_shape)
    wt = convert_to_tensor(w.reshape((n_out, taps) + (1,) * (x.ndim - axis - 1)), device=x.device)
    return _m.sum(_m.multiply(g, wt), axis=axis + 1)


def resample_axis(x, axis, n_out, method="bilinear", antialias=False, op="resize"):
    """A float32 tensor resized along `axis` to n_out values, as jax.image.resize with `method`
    ("nearest" or one of KERNEL_METHODS); the identity when the size does not change."""
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    if n_in == 0:     # nothing to sample: JAX's weights are all zero
        return _m.zeros(x.shape[:axis] + (n_out,) + x.shape[axis + 1:], x.dtype, device=x.device)
    if method == "nearest":
        return take(x, nearest_indices(n_in, n_out), axis=axis)
    idx, w = resample_taps(n_in, n_out, float(n_out) / float(n_in) if n_in else 1.0, 0.0, method, bool(antialias))
    return resample_with_taps(x, axis, idx, w, op)


def resize_batch(x, height, width, interpolation="bilinear", antialias=False, op="resize"):
    """A float32 NHWC batch resized to (height, width)."""
    x = resample_axis(x, 1, height, interpolation, antialias, op)
    return resample_axis(x, 2, width, interpolation, antialias, op)


def aspect_crop_box(h, w, target_h, target_w):
    """Keras's largest centred (top, left, height, width) window with the target's aspect ratio."""
    crop_h = max(min(h, int(float(w * target_h) / target_w)), 1)
    crop_w = max(min(w, int(float(h * target_w) / target_h)), 1)
    return int(float(h - crop_h) / 2), int(float(w - crop_w) / 2), crop_h, crop_w


def aspect_pad(h, w, target_h, target_w):
    """Keras's pad_to_aspect_ratio: (rows, columns) to add on each side (one of them is 0)."""
    pad_h = max(h, int(float(w * target_h) / target_w))
    pad_w = max(w, int(float(h * target_w) / target_h))
    top, left = int(float(pad_h - h) / 2), int(float(pad_w - w) / 2)
    return (top, 0) if top > 0 else (0, max(left, 0))


# ---- coordinate sampling ----------------------------------------------------------------------------

def round_half_away(v):
    """Round half away from zero (lax.round's default), elementwise."""
    return _m.multiply(_m.sign(v), _m.floor(_m.add(_m.abs(v), 0.5)))


def _fold(idx, size, fill_mode):
    """Input indices for out-of-range positions (JAX's index fixers; int64 tensors)."""
    if fill_mode == "nearest":
        return _m.clip(idx, 0, size - 1)
    if fill_mode == "wrap":
        return _m.mod(idx, size)
    if fill_mode == "mirror":            # whole-sample symmetric: ... c b | a b c d | c b ...
        if size == 1:
            return _m.zeros_like(idx)
        s = size - 1
        return _m.abs(_m.subtract(_m.mod(_m.add(idx, s), 2 * s), s))
    if fill_mode == "reflect":           # half-sample symmetric: ... b a | a b c d | d c ...
        n = 2 * size + 1
        s = n - 1
        m = _m.abs(_m.subtract(_m.mod(_m.add(_m.add(_m.multiply(idx, 2), 1), s), 2 * s), s))
        return _m.floor_divide(_m.subtract(m, 1), 2)
    return _m.clip(idx, 0, size - 1)     # constant: the caller masks the taps outside with fill_value


def _taps(coord, order):
    """[(index int64 tensor, weight tensor or None)] of one axis."""
    if order == 0:
        return [(_m.cast(round_half_away(coord), dtypes.INT64), None)]
    low = _m.floor(coord)
    upper = _m.subtract(coord, low)
    i0 = _m.cast(low, dtypes.INT64)
    return [(i0, _m.subtract(1.0, upper)), (_m.add(i0, 1), upper)]


def sample_at(flat, coords, sizes, order, fill_mode, fill_value, base=None, invalid=None):
    """Interpolated values of an array at coordinates, as jax.scipy.ndimage.map_coordinates.

    flat: a float32 tensor (prod(sizes), *rest): the sampled array with its sampled dimensions
    (`sizes`) flattened into axis 0, row-major; coords: one float32 tensor per sampled
    dimension, all of one shape S; base: an optional int64 offset (broadcasting to S) added to
    every flat index (to sample several arrays stacked along axis 0, e.g. a batch of images);
    invalid: an optional bool tensor (broadcasting to S) of positions that get `fill_value`
    whatever the mode. Returns a float32 tensor S + rest."""
    strides = [int(np.prod(sizes[i + 1:], dtype=np.int64)) for i in range(len(sizes))]
    per_axis = []
    for coord, size in zip(coords, sizes):
        entries = []
        for index, weight in _taps(coord, order):
            valid = None
            if fill_mode == "constant":
                valid = _m.logical_and(_m.greater_equal(index, 0), _m.less(index, size))
            entries.append((_fold(index, size, fill_mode), valid, weight))
        per_axis.append(entries)
    rest = flat.shape[1:]
    out = None
    for combo in itertools.product(*per_axis):
        flat_index = None
        for (index, _, _), stride in zip(combo, strides):
            term = index if stride == 1 else _m.multiply(index, stride)
            flat_index = term if flat_index is None else _m.add(flat_index, term)
        if base is not None:
            flat_index = _m.add(flat_index, base)
        vals = take(flat, flat_index, axis=0)
        valids = [v for _, v, _ in combo if v is not None]
        if valids:
            ok = functools.reduce(_m.logical_and, valids)
            vals = _m.where(_expand(ok, len(rest)), vals, float(fill_value))
        weights = [w for _, _, w in combo if w is not None]
        if weights:
            vals = _m.multiply(vals, _expand(functools.reduce(_m.multiply, weights), len(rest)))
        out = vals if out is None else _m.add(out, vals)
    if invalid is not None:
        out = _m.where(_expand(invalid, len(rest)), float(fill_value), out)
    return out


def _expand(t, n):
    return reshape(t, t.shape + (1,) * n) if n else t


def transform_batch(images, transform, interpolation="bilinear", fill_mode="constant", fill_value=0.0):
    """A float32 NHWC batch sampled where `transform` ((batch, 8) float32, Keras's layout
    [a0, a1, a2, b0, b1, b2, c0, c1]) maps each output pixel (x, y):
    x_in = (a0 x + a1 y + a2) / k, y_in = (b0 x + b1 y + b2) / k, k = c0 x + c1 y + 1.
    A pixel where k = 0 gets `fill_value` (as TensorFlow's projective transform does)."""
    b, h, w, c = images.shape
    if b * h * w * c == 0:
        return images
    t = [reshape(transform[:, i], (b, 1, 1)) for i in range(8)]
    xs = np.arange(w, dtype=np.float32).reshape(1, 1, w)
    ys = np.arange(h, dtype=np.float32).reshape(1, h, 1)
    x_in = _m.add(_m.add(_m.multiply(t[0], xs), _m.multiply(t[1], ys)), t[2])
    y_in = _m.add(_m.add(_m.multiply(t[3], xs), _m.multiply(t[4], ys)), t[5])
    k = _m.add(_m.add(_m.multiply(t[6], xs), _m.multiply(t[7], ys)), 1.0)
    at_infinity = _m.equal(k, 0.0)
    k = _m.where(at_infinity, 1.0, k)
    x_in, y_in = _m.divide(x_in, k), _m.divide(y_in, k)
    order = 0 if interpolation == "nearest" else 1
    flat = reshape(images, (b * h * w, c))
    base = (np.arange(b, dtype=np.int64) * (h * w)).reshape(b, 1, 1)
    return sample_at(flat, [y_in, x_in], (h, w), order, fill_mode, fill_value, base=base, invalid=at_infinity)
