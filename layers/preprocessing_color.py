"""Colour and value augmentation layers, as Keras 3's: RandomBrightness, RandomGrayscale,
RandomInvert, Solarization, AutoContrast, RandomSaturation, RandomHue, RandomColorDegeneration,
RandomColorJitter, RandomPosterization, Equalization, ContrastLimitedAdaptiveHistogramEqualization.

They share layers/preprocessing_image.py's machinery: rank-3 (one image) or rank-4 inputs,
`data_format`, a `SeedGenerator(seed)` per random layer, and the training flag (a call that does
not say trains, as Keras's `call(..., training=True)` makes it; `predict` and `training=False`
run the inference path). Every random layer draws its parameters (`_draw`) apart from applying
them (`_transform`), so RandAugment and AugMix (layers/preprocessing_mix.py) compose them.

Pixel values live in `value_range` ((0, 255) by default); layers that work in a fixed range
(Solarization, RandomPosterization, AutoContrast, Equalization: [0, 255]; RandomHue: [0, 1])
map to it and back linearly, as Keras's `_transform_value_range`. Colour conversions are
ops.image's (backend/image.py), as Keras's: grayscale = 0.2989 R + 0.5870 G + 0.1140 B, HSV as
dm_pix computes it.

Output dtypes are Keras's: RandomBrightness and RandomGrayscale keep integer inputs integer;
the others give float32 in training. At inference RandomBrightness, RandomGrayscale,
RandomInvert, RandomSaturation, RandomHue, RandomColorDegeneration, RandomColorJitter,
RandomPosterization and Equalization return their input unchanged (its dtype too), Solarization
returns it as float32, and AutoContrast (which is not random) applies in both modes.

Random streams are lamina's (Philox), not JAX's: a seed gives a reproducible sequence, not
Keras's numbers; with a one-point factor range the transformation is fixed and matches Keras's.
"""
import numpy as np

from .. import ops
from ..backend import dtypes
from ..backend.device import device as device_scope
from ..backend.image import hsv_to_rgb, rgb_to_grayscale, rgb_to_hsv
from .preprocessing_image import (_ImageLayer, _RandomLayer, _base_factor, _float, _from_nhwc, _number, _to_nhwc)

# ---- arguments ---------------------------------------------------------------------------------

def value_range_arg(who, value_range, sort=True):
    """Keras's `value_range`: two numbers; sorted into a list (Keras's `sorted(value_range)`) or,
    for the layers that keep it as given, required to be (min, max)."""
    if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
        raise ValueError(f"{who}: `value_range` must be a list of two numbers (min, max), received "
                         f"value_range={value_range!r}")
    lo, hi = (_number(who, "value_range", v) for v in value_range)
    if lo == hi or (not sort and lo > hi):
        raise ValueError(f"{who}: `value_range` must be (min, max) with min < max, received "
                         f"value_range={value_range!r}")
    return sorted(value_range) if sort else value_range


def unit_factor(who, name, factor):
    """Solarization's factors: a number f in [0, 1] gives (0, f); a pair in [0, 1], sorted."""
    def check(v):
        v = _number(who, name, v)
        if not 0 <= v <= 1:
            raise ValueError(f"{who}: `{name}` must be a number or a pair of numbers in [0, 1], received "
                             f"{name}={factor!r}")
        return v
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2:
            raise ValueError(f"{who}: `{name}` must be a number or a pair of numbers in [0, 1], received "
                             f"{name}={factor!r}")
        lo, hi = sorted(check(v) for v in factor)
        return lo, hi
    return 0, check(factor)


# ---- colour maths on float NHWC batches ----------------------------------------------------------

def to_range(x, source, target):
    """Keras's _transform_value_range: a linear map of `source` onto `target`."""
    if source[0] == target[0] and source[1] == target[1]:
        return x
    x = ops.divide(ops.subtract(x, float(source[0])), float(source[1]) - float(source[0]))
    return ops.add(ops.multiply(x, float(target[1]) - float(target[0])), float(target[0]))


def channels(layer, x, allowed):
    """Checks the channel count of an NHWC batch (the colour conversions need RGB)."""
    c = x.shape[-1]
    if c not in allowed:
        want = " or ".join(str(a) for a in allowed)
        raise ValueError(f"{type(layer).__name__} '{layer.name}': expected images with {want} channels (RGB"
                         f"{' or grayscale' if 1 in allowed else ''}), received a batch of shape {x.shape} "
                         f"({layer.data_format}) with {c} channels")
    return c


def _per_image(t):
    """(batch,) -> (batch, 1, 1, 1)."""
    return ops.reshape(t, (t.shape[0], 1, 1, 1))


# ---- layers ---------------------------------------------------------------------------------------

class RandomBrightness(_RandomLayer):
    """Adds a random delta to every pixel of each image during training, then clips to
    `value_range`, as Keras's RandomBrightness.

    factor: a number f or a pair (lower, upper) in [-1, 1]; the delta is uniform in
    [lower, upper] * (value_range[1] - value_range[0]) (f gives [-f, f]). Integer images stay
    integer (the delta truncated to their dtype), as Keras."""

    _identity_at_inference = True

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.factor = _base_factor("RandomBrightness", factor, (-1, 1))
        self.value_range = value_range_arg("RandomBrightness", value_range)

    def _augment(self, x, training):
        return x if x.shape[0] == 0 else self._transform(x, self._draw(x, self.generator))

    def _draw(self, x, generator):
        delta = self._uniform((x.shape[0], 1, 1, 1), *self.factor, generator)
        return ops.multiply(delta, float(self.value_range[1]) - float(self.value_range[0]))

    def _transform(self, x, delta):
        lo, hi = float(self.value_range[0]), float(self.value_range[1])
        if dtypes.is_float(x.dtype):
            return ops.clip(ops.add(x, delta), lo, hi)
        return ops.cast(ops.clip(ops.add(x, ops.cast(delta, x.dtype)), lo, hi), x.dtype)

    def compute_output_dtype(self, input_dtypes):
        return input_dtypes if isinstance(input_dtypes, str) and dtypes.is_int(input_dtypes) else dtypes.FLOAT32

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


class RandomGrayscale(_RandomLayer):
    """Turns each image to grayscale with probability `factor` during training (the three
    channels all set to 0.2989 R + 0.5870 G + 0.1140 B), as Keras's RandomGrayscale. Integer
    images stay integer (truncated). Images must have 3 channels (or 1: left as they are).
    Keras leaves `seed` out of this layer's config; lamina keeps it, so a config round trip
    repeats the layer's augmentations."""

    _identity_at_inference = True

    def __init__(self, factor=0.5, data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        f = _number("RandomGrayscale", "factor", factor)
        if not 0 <= f <= 1:
            raise ValueError(f"RandomGrayscale: `factor` must be a probability in [0, 1], received factor={factor!r}")
        self.factor = factor

    def _augment(self, x, training):
        channels(self, x, (1, 3))
        return x if x.shape[0] == 0 else self._transform(x, self._draw(x, self.generator))

    def _draw(self, x, generator):
        return ops.less(self._uniform((x.shape[0], 1, 1, 1), 0.0, 1.0, generator), float(self.factor))

    def _transform(self, x, apply):
        return ops.where(apply, rgb_to_grayscale(x, "channels_last"), x)     # integer images: the gray value truncated

    def compute_output_dtype(self, input_dtypes):
        return input_dtypes if isinstance(input_dtypes, str) and dtypes.is_int(input_dtypes) else dtypes.FLOAT32

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class RandomInvert(_RandomLayer):
    """Inverts each image (value_range[1] - x) with a random probability during training, as
    Keras's RandomInvert: a probability p is drawn per image, uniform in `factor` (a number f
    gives [0, f], a pair (lower, upper) in [0, 1]), and the image inverted when a uniform draw
    falls below p (so factor=1.0, the default, inverts about half of the images)."""

    _identity_at_inference = True

    def __init__(self, factor=1.0, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _base_factor("RandomInvert", factor, (0, 1))
        self.value_range = value_range_arg("RandomInvert", value_range, sort=False)

    def _draw(self, x, generator):
        b = x.shape[0]
        p = self._uniform((b, 1, 1, 1), *self.factor, generator)
        return ops.less(self._uniform((b, 1, 1, 1), 0.0, 1.0, generator), p)

    def _transform(self, x, apply):
        return ops.where(apply, ops.subtract(float(self.value_range[1]), x), x)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


class Solarization(_RandomLayer):
    """Inverts the pixels at or above a random threshold after adding a random amount, as
    Keras's Solarization, in the [0, 255] scale (`value_range` is mapped to it and back): per
    image, a = uniform(addition_factor[0], addition_factor[1] * 255), t =
    uniform(threshold_factor[0], threshold_factor[1] * 255) (Keras's bounds, the lower one not
    scaled), y = clip(x + a, 0, 255), y = y where y < t, else 255 - y. A factor f gives (0, f);
    with the defaults (0 and 0) every pixel is inverted. Outputs are float32 (at inference the
    input, cast)."""

    def __init__(self, addition_factor=0.0, threshold_factor=0.0, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.addition_factor = unit_factor("Solarization", "addition_factor", addition_factor)
        self.threshold_factor = unit_factor("Solarization", "threshold_factor", threshold_factor)
        self.value_range = value_range_arg("Solarization", value_range)

    def _draw(self, x, generator):
        shape = (x.shape[0], 1, 1, 1)
        add = self._uniform(shape, self.addition_factor[0], self.addition_factor[1] * 255, generator)
        threshold = self._uniform(shape, self.threshold_factor[0], self.threshold_factor[1] * 255, generator)
        return add, threshold

    def _transform(self, x, params):
        add, threshold = params
        y = ops.clip(ops.add(to_range(x, self.value_range, (0, 255)), add), 0.0, 255.0)
        y = ops.where(ops.less(y, threshold), y, ops.subtract(255.0, y))
        return to_range(y, (0, 255), self.value_range)

    def get_config(self):
        return {**super().get_config(), "value_range": self.value_range, "addition_factor": self.addition_factor,
                "threshold_factor": self.threshold_factor}


class AutoContrast(_ImageLayer):
    """Stretches each image's channels to the full `value_range`: per image and channel,
    (x - min) / (max - min) over height and width, as Keras's AutoContrast (a constant channel is
    left as it is). Not random: it applies in training and at inference alike, as in Keras.
    Outputs are float32."""

    def __init__(self, value_range=(0, 255), **kwargs):
        super().__init__(**kwargs)
        self.value_range = value_range_arg("AutoContrast", value_range)

    def call(self, inputs):
        if isinstance(inputs, dict):
            return self._call_dict(inputs, True)
        with device_scope(inputs.device):
            x, single = _to_nhwc(self, inputs)
            return _from_nhwc(self, self._transform(_float(x), None), single)

    def _draw(self, x, generator):
        return None

    def _transform(self, x, params):
        if x.shape[0] == 0 or x.shape[1] * x.shape[2] == 0:
            return x
        y = to_range(x, self.value_range, (0, 255))
        low = ops.min(y, axis=(1, 2), keepdims=True)
        high = ops.max(y, axis=(1, 2), keepdims=True)
        spread = ops.greater(high, low)
        scale = ops.divide(255.0, ops.where(spread, ops.subtract(high, low), 1.0))
        y = ops.clip(ops.multiply(ops.subtract(y, low), scale), 0.0, 255.0)
        return ops.where(spread, to_range(y, (0, 255), self.value_range), x)

    def get_config(self):
        return {**super().get_config(), "value_range": self.value_range}


class RandomSaturation(_RandomLayer):
    """Scales each image's saturation by a random factor during training, as Keras's
    RandomSaturation: f uniform in `factor` (a number in [-1, 1] gives [-|f|, |f|], or a pair),
    s' = clip(s * f / (1 - f + 1e-7), value_range) in HSV (f = 0.5 keeps the image, 0 turns it
    gray, 1 saturates it fully; a negative f clips to gray). Images must have 3 channels; integer
    images are converted to float32 (Keras refuses them)."""

    _identity_at_inference = True

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _base_factor("RandomSaturation", factor, (-1, 1))
        self.value_range = value_range_arg("RandomSaturation", value_range)

    def _augment(self, x, training):
        channels(self, x, (3,))
        return super()._augment(x, training)

    def _draw(self, x, generator):
        f = self._uniform((x.shape[0], 1, 1), *self.factor, generator)
        return ops.divide(f, ops.add(ops.subtract(1.0, f), 1e-7))

    def _transform(self, x, factor):
        hsv = rgb_to_hsv(x, "channels_last")
        s = ops.clip(ops.multiply(hsv[..., 1], factor), float(self.value_range[0]), float(self.value_range[1]))
        return hsv_to_rgb(ops.stack([hsv[..., 0], s, hsv[..., 2]], axis=-1), "channels_last")

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


class RandomHue(_RandomLayer):
    """Shifts each image's hue by a random amount during training, as Keras's RandomHue: the
    shift is +-f / 2 of a full turn (sign random, f uniform in `factor`: a number f in [0, 1]
    gives [0, f]), in HSV with the image mapped to [0, 1] and back. Images must have 3 channels;
    outputs are float32."""

    _identity_at_inference = True

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _base_factor("RandomHue", factor, (0, 1))
        self.value_range = value_range_arg("RandomHue", value_range, sort=False)

    def _augment(self, x, training):
        channels(self, x, (3,))
        return super()._augment(x, training)

    def _draw(self, x, generator):
        b = x.shape[0]
        sign = ops.where(ops.greater(self._uniform((b, 1, 1), 0.0, 1.0, generator), 0.5), -1.0, 1.0)
        return ops.multiply(ops.multiply(sign, self._uniform((b, 1, 1), *self.factor, generator)), 0.5)

    def _transform(self, x, shift):
        hsv = rgb_to_hsv(to_range(x, self.value_range, (0, 1)), "channels_last")
        h = ops.add(hsv[..., 0], shift)
        h = ops.where(ops.greater(h, 1.0), ops.subtract(h, 1.0), h)
        h = ops.where(ops.less(h, 0.0), ops.add(h, 1.0), h)
        rgb = ops.clip(hsv_to_rgb(ops.stack([h, hsv[..., 1], hsv[..., 2]], axis=-1), "channels_last"), 0.0, 1.0)
        return to_range(rgb, (0, 1), self.value_range)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


class RandomColorDegeneration(_RandomLayer):
    """Blends each image with its grayscale version by a random factor during training, as
    Keras's RandomColorDegeneration: y = clip(x + f * (gray - x), value_range), f uniform in
    `factor` (a number in [-1, 1] gives [-|f|, |f|]; negative f pushes colours away from gray).
    Images must have 3 channels (or 1); outputs are float32."""

    _identity_at_inference = True

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _base_factor("RandomColorDegeneration", factor, (-1, 1))
        self.value_range = value_range_arg("RandomColorDegeneration", value_range)

    def _augment(self, x, training):
        channels(self, x, (1, 3))
        return super()._augment(x, training)

    def _draw(self, x, generator):
        return self._uniform((x.shape[0], 1, 1, 1), *self.factor, generator)

    def _transform(self, x, f):
        y = ops.add(x, ops.multiply(f, ops.subtract(rgb_to_grayscale(x, "channels_last"), x)))
        return ops.clip(y, float(self.value_range[0]), float(self.value_range[1]))

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


class RandomPosterization(_RandomLayer):
    """Keeps a random number of the most significant bits of each pixel during training, as
    Keras's RandomPosterization: bits uniform in [factor[0], factor[1]) (Keras's randint; a
    number f in [1, 8] gives [1, f), a one-point pair (b, b) keeps b bits), pixels mapped to
    [0, 255], floored to multiples of 2 ** (8 - bits) and mapped back (values outside [0, 255]
    are clipped first, where Keras's uint8 cast would wrap). Outputs are float32."""

    _identity_at_inference = True

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        who = "RandomPosterization"
        msg = (f"{who}: `factor` must be an integer (or a pair of integers) in [1, 8], the bits to keep, received "
               f"factor={factor!r}")
        values = list(factor) if isinstance(factor, (tuple, list)) else [factor]
        if len(values) not in (1, 2) or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))
                                            or not 1 <= v <= 8 for v in values):
            raise ValueError(msg)
        self.factor = (1, int(values[0])) if len(values) == 1 else tuple(sorted(int(v) for v in values))
        self.value_range = value_range_arg(who, value_range)

    def _draw(self, x, generator):
        b = x.shape[0]
        lo, hi = self.factor
        bits = ops.full((b,), float(lo)) if lo == hi else \
            ops.cast(ops.randint((b,), lo, hi, seed=generator or self.generator), dtypes.FLOAT32)
        return _per_image(ops.power(2.0, ops.subtract(8.0, bits)))

    def _transform(self, x, step):
        y = ops.floor(ops.clip(to_range(x, self.value_range, (0, 255)), 0.0, 255.0))
        y = ops.multiply(ops.floor(ops.divide(y, step)), step)
        return to_range(y, (0, 255), self.value_range)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


class Equalization(_ImageLayer):
    """Histogram equalisation of each channel, as Keras's Equalization: pixels mapped to
    [0, 255], a histogram of `bins` bins per channel, and each pixel replaced by its bin's
    cumulative share of the pixels (a channel with one occupied bin is left as it is). As in
    Keras, one histogram per channel is taken over the whole batch, not per image. Not random;
    it applies in training (the default of a call) and returns the input unchanged at inference,
    as Keras does. Outputs are float32 in training."""

    def __init__(self, value_range=(0, 255), bins=256, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        if isinstance(bins, (bool, np.bool_)) or not isinstance(bins, (int, np.integer)) or bins < 1:
            raise ValueError(f"Equalization: `bins` must be a positive integer, received bins={bins!r}")
        self.bins = int(bins)
        self.value_range = value_range_arg("Equalization", value_range)

    def call(self, inputs, training=True):
        if training is None:
            training = True
        if isinstance(inputs, dict):
            return self._call_dict(inputs, bool(training))
        if not training:
            return inputs
        with device_scope(inputs.device):
            x, single = _to_nhwc(self, inputs)
            return _from_nhwc(self, self._transform(_float(x), None), single)

    def _draw(self, x, generator):
        return None

    def _transform(self, x, params):
        if 0 in x.shape:
            return x
        bins, c = self.bins, x.shape[-1]
        y = to_range(x, self.value_range, (0, 255))
        offsets = np.arange(c, dtype=np.int32) * bins
        # bin indices (clipped in float first: NaN and inf have no int32; NaN lands in bin 0)
        yc = ops.clip(y, 0.0, 255.0)
        hist_idx = ops.clip(ops.cast(ops.multiply(yc, (bins - 1) / 255.0), dtypes.INT32), 0, bins - 1)
        hist = ops.reshape(ops.bincount(ops.reshape(ops.add(hist_idx, offsets), (-1,)), minlength=c * bins),
                           (c, bins))
        cdf = ops.cumsum(hist, axis=1)
        first = ops.argmax(ops.greater(cdf, 0), axis=1)
        cdf_min = ops.take_along_axis(cdf, ops.reshape(first, (c, 1)), axis=1)
        denominator = ops.subtract(cdf[:, -1:], cdf_min)
        denominator = ops.where(ops.equal(denominator, 0), 1, denominator)
        lut = ops.divide(ops.multiply(ops.subtract(cdf, cdf_min), 255), denominator)
        lut = ops.reshape(ops.clip(ops.round(lut), 0.0, 255.0), (-1,))
        idx = ops.clip(ops.cast(ops.multiply(ops.divide(yc, 255.0), float(bins - 1)), dtypes.INT32), 0, bins - 1)
        equalized = ops.take(lut, ops.add(idx, offsets))
        flat = ops.less_equal(ops.count_nonzero(hist, axis=1), 1)
        return to_range(ops.where(flat, y, equalized), (0, 255), self.value_range)

    def get_config(self):
        return {**super().get_config(), "bins": self.bins, "value_range": self.value_range}


class RandomColorJitter(_RandomLayer):
    """RandomBrightness, RandomContrast, RandomSaturation and RandomHue in that order, each when
    its factor is given, as Keras's RandomColorJitter (the sub-layers draw from this layer's
    generator). At inference the input is returned unchanged."""

    _identity_at_inference = True

    def __init__(self, value_range=(0, 255), brightness_factor=None, contrast_factor=None, saturation_factor=None,
                 hue_factor=None, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        from .preprocessing_image import RandomContrast
        value_range_arg("RandomColorJitter", value_range, sort=False)
        self.value_range = value_range
        self.brightness_factor, self.contrast_factor = brightness_factor, contrast_factor
        self.saturation_factor, self.hue_factor = saturation_factor, hue_factor
        steps = [(RandomBrightness, brightness_factor), (RandomContrast, contrast_factor),
                 (RandomSaturation, saturation_factor), (RandomHue, hue_factor)]
        self._steps = []
        for cls, factor in steps:
            if factor is None:
                continue
            try:
                self._steps.append(cls(factor=factor, value_range=value_range, seed=self.seed))
            except ValueError as e:
                raise ValueError(f"RandomColorJitter: {e}".replace("`factor`", f"`{_factor_name(cls)}`")) from None

    def _augment(self, x, training):
        if any(isinstance(s, (RandomSaturation, RandomHue)) for s in self._steps):
            channels(self, x, (3,))
        return super()._augment(x, training)

    def _draw(self, x, generator):
        return generator

    def _transform(self, x, generator):
        for step in self._steps:
            x = step._transform(x, step._draw(x, generator))
        return x

    def get_config(self):
        return {**super().get_config(), "value_range": self.value_range, "brightness_factor": self.brightness_factor,
                "contrast_factor": self.contrast_factor, "saturation_factor": self.saturation_factor,
                "hue_factor": self.hue_factor}


def _factor_name(cls):
    return {"RandomBrightness": "brightness_factor", "RandomContrast": "contrast_factor",
            "RandomSaturation": "saturation_factor", "RandomHue": "hue_factor"}[cls.__name__]


class ContrastLimitedAdaptiveHistogramEqualization(_ImageLayer):
    """Contrast limited adaptive histogram equalisation (CLAHE), as Keras's layer of that name.

    Pixels are mapped from `value_range` to [0, 255]; each image is cut into a grid of
    `tile_grid_size` = (rows, columns) tiles of ceil(height / rows) x ceil(width / columns)
    pixels (the image padded at the bottom and right by mirroring, edge pixel repeated); each
    tile and channel gets a 256-bin histogram of its pixels (bin int(clip(v, 0, 255))). With
    `clip_limit` > 0, bins are cut at clip_limit * tile_pixels / 256 and the excess spread
    evenly over the 256 bins (clip_limit <= 0: no limit). A tile's mapping is its normalised
    cumulative histogram, (cdf - cdf_min) * 255 / (tile_pixels - cdf_min), and each pixel takes
    the bilinear blend of the mappings of the four tiles whose centres surround it (the grid
    extended by its edge tiles), mapped back to `value_range`.

    Not random: it applies in training and at inference alike, as Keras's does. Float inputs give
    float32; integer inputs keep their integer dtype (the result truncated), as Keras casts back
    to the input's dtype."""

    def __init__(self, value_range=(0, 255), clip_limit=4.0, tile_grid_size=(8, 8), data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        who = "ContrastLimitedAdaptiveHistogramEqualization"
        self.value_range = value_range_arg(who, value_range, sort=False)
        self.clip_limit = _number(who, "clip_limit", clip_limit)
        grid = tile_grid_size
        if not isinstance(grid, (tuple, list)) or len(grid) != 2 or any(
                isinstance(g, (bool, np.bool_)) or not isinstance(g, (int, np.integer)) or g < 1 for g in grid):
            raise ValueError(f"{who}: `tile_grid_size` must be a pair of positive integers (rows, columns), received "
                             f"tile_grid_size={tile_grid_size!r}")
        self.tile_grid_size = (int(grid[0]), int(grid[1]))

    def call(self, inputs):
        if isinstance(inputs, dict):     # Keras's CLAHE has no transform for the other entries (it raises
            return self._call_dict(inputs, True)   # NotImplementedError): a colour change, they pass unchanged
        with device_scope(inputs.device):
            x, single = _to_nhwc(self, inputs)
            y = self._transform(_float(x), None)
            if dtypes.is_int(x.dtype):
                y = ops.cast(y, x.dtype)
            return _from_nhwc(self, y, single)

    def compute_output_dtype(self, input_dtypes):
        return input_dtypes if isinstance(input_dtypes, str) and dtypes.is_int(input_dtypes) else dtypes.FLOAT32

    def _draw(self, x, generator):
        return None

    def _transform(self, x, params):
        if 0 in x.shape:
            return x
        b, h, w, c = x.shape
        gh, gw = self.tile_grid_size
        th, tw = -(-h // gh), -(-w // gw)                       # tile size
        y = to_range(x, self.value_range, (0, 255))
        # int(v) of v in [0, 255]; NaN counts as 0, as XLA's float-to-int conversion (Keras on JAX) makes it
        bins = ops.cast(ops.clip(ops.where(ops.isnan(y), 0.0, y), 0.0, 255.0), dtypes.INT32)
        # the image padded to whole tiles (mirrored, as numpy's "symmetric"), as bin indices
        rows = np.pad(np.arange(h), (0, th * gh - h), mode="symmetric")
        cols = np.pad(np.arange(w), (0, tw * gw - w), mode="symmetric")
        padded = bins
        if len(rows) != h:
            padded = ops.take(padded, rows, axis=1)
        if len(cols) != w:
            padded = ops.take(padded, cols, axis=2)
        # one 256-bin histogram per (image, tile row, tile column, channel)
        n_hist = b * gh * gw * c
        hist_key = (np.arange(b).reshape(b, 1, 1, 1) * (gh * gw * c)
                    + (np.arange(th * gh) // th).reshape(1, -1, 1, 1) * (gw * c)
                    + (np.arange(tw * gw) // tw).reshape(1, 1, -1, 1) * c
                    + np.arange(c).reshape(1, 1, 1, c)) * 256
        idx_dtype = np.int32 if n_hist * 256 < 2 ** 31 else np.int64
        keys = ops.add(ops.cast(padded, dtypes.INT64 if idx_dtype is np.int64 else dtypes.INT32),
                       hist_key.astype(idx_dtype))
        hist = ops.cast(ops.bincount(ops.reshape(keys, (-1,)), minlength=n_hist * 256), dtypes.FLOAT32)
        hist = ops.reshape(hist, (b, gh, gw, c, 256))
        tile_pixels = th * tw
        if self.clip_limit > 0:
            limit = float(np.float32(self.clip_limit * tile_pixels / 256.0))
            clipped = ops.clip(hist, 0.0, limit)
            excess = ops.sum(ops.subtract(hist, clipped), axis=-1, keepdims=True)
            hist = ops.add(clipped, ops.divide(excess, 256.0))
        cdf = ops.cumsum(hist, axis=-1)
        cdf_min = ops.min(cdf, axis=-1, keepdims=True)
        denominator = ops.subtract(float(tile_pixels), cdf_min)
        denominator = ops.where(ops.equal(denominator, 0.0), 1.0, denominator)
        lut = ops.clip(ops.divide(ops.multiply(ops.subtract(cdf, cdf_min), 255.0), denominator), 0.0, 255.0)
        # the grid of mappings extended by its edge tiles: (b, gh + 2, gw + 2, c, 256), flattened
        lut = ops.take(lut, np.concatenate([[0], np.arange(gh), [gh - 1]]), axis=1)
        lut = ops.take(lut, np.concatenate([[0], np.arange(gw), [gw - 1]]), axis=2)
        lut = ops.reshape(lut, (-1,))
        # each pixel's four surrounding tile centres and weights (host-side, float32 as Keras)
        def axis_taps(n, tile, grid):
            g = (np.arange(n, dtype=np.float32) - np.float32(tile / 2.0)) / np.float32(tile) + np.float32(1.0)
            lo = np.floor(g)
            weight = (g - lo).astype(np.float32)
            return (np.clip(lo, 0, grid + 1).astype(np.int64), np.clip(lo + 1, 0, grid + 1).astype(np.int64),
                    weight)
        y0, y1, wy = axis_taps(h, th, gh)
        x0, x1, wx = axis_taps(w, tw, gw)
        sx = c * 256
        sy = sx * (gw + 2)
        sb = sy * (gh + 2)
        base = ops.add(ops.cast(bins, dtypes.INT64 if idx_dtype is np.int64 else dtypes.INT32),
                       (np.arange(b).reshape(b, 1, 1, 1) * sb + np.arange(c).reshape(1, 1, 1, c) * 256)
                       .astype(idx_dtype))

        def tap(yy, xx):
            where = (yy.reshape(1, h, 1, 1) * sy + xx.reshape(1, 1, w, 1) * sx).astype(idx_dtype)
            return ops.take(lut, ops.add(base, where))
        wx, wy = wx.reshape(1, 1, w, 1), wy.reshape(1, h, 1, 1)
        top = ops.add(ops.multiply(tap(y0, x0), 1.0 - wx), ops.multiply(tap(y0, x1), wx))
        bottom = ops.add(ops.multiply(tap(y1, x0), 1.0 - wx), ops.multiply(tap(y1, x1), wx))
        out = ops.add(ops.multiply(top, 1.0 - wy), ops.multiply(bottom, wy))
        return to_range(out, (0, 255), self.value_range)

    def get_config(self):
        return {**super().get_config(), "value_range": self.value_range, "clip_limit": self.clip_limit,
                "tile_grid_size": self.tile_grid_size}
