"""Spatial augmentation layers, as Keras 3's: RandomErasing (a random box filled), RandomSharpness
and RandomGaussianBlur (a per-channel 3x3 / Gaussian filter, ops.depthwise_conv with zero
padding, as Keras's JAX backend), RandomShear (an affine map sampled like RandomRotation's),
RandomPerspective (ops.image.perspective_transform of randomly moved corners) and
RandomElasticTransform (ops.image.elastic_transform with a random strength); and
MaxNumBoundingBoxes, which pads or truncates the bounding boxes of Keras's dict inputs
({"images", "bounding_boxes": {"boxes", "labels"}}) to a fixed number (box utilities:
lamina.utils.bounding_boxes).

Shared machinery, training flag and seeds: layers/preprocessing_image.py; value ranges and
factor rules: layers/preprocessing_color.py. Outputs are float32 (at inference: the input,
cast), as Keras's."""
import numpy as np

from .. import ops
from ..backend import dtypes
from ..backend import image as image_ops
from ..backend.device import device as device_scope
from .layer import Layer
from .preprocessing_boxes import inverse_affine_boxes, inverse_projective_boxes
from .preprocessing_color import value_range_arg
from .preprocessing_image import (_AFFINE_INTERPOLATIONS, _FILL_MODES, _ImageLayer, _RandomLayer, _base_factor, _choice,
                                  _columns, _number, affine_transform)

_ELASTIC_FILL_MODES = ("reflect", "wrap", "constant", "nearest", "mirror")   # Keras's, with ops.image's "mirror"


def _unit_pair(who, name, value):
    """Keras's `_set_factor_by_name` with bounds [0, 1]: a number f gives (0, f), a pair is sorted
    (each value in [0, 1]: Keras only checks that the pair overlaps [0, 1])."""
    msg = f"{who}: `{name}` must be a number or a pair of numbers in [0, 1], received {name}={value!r}"
    try:
        lo, hi = _base_factor(who, value, (0, 1))
    except ValueError:
        raise ValueError(msg) from None
    if lo < 0 or hi > 1:
        raise ValueError(msg)
    return lo, hi


def _box_mask(x, x0, x1, y0, y1):
    """(batch, h, w, 1) True inside [x0, x1) x [y0, y1) (pixel indices; bounds (batch,) tensors)."""
    _, h, w, _ = x.shape
    gx = np.arange(w, dtype=np.float32).reshape(1, 1, w, 1)
    gy = np.arange(h, dtype=np.float32).reshape(1, h, 1, 1)

    def col(t):
        return ops.reshape(t, (t.shape[0], 1, 1, 1))
    inside_x = ops.logical_and(ops.greater_equal(gx, col(x0)), ops.less(gx, col(x1)))
    inside_y = ops.logical_and(ops.greater_equal(gy, col(y0)), ops.less(gy, col(y1)))
    return ops.logical_and(inside_x, inside_y)


def random_box(layer, x, ratio_x, ratio_y, generator):
    """Keras's crop bounds: a box of sides ratio * size at a uniform position, as (x0, x1, y0, y1)."""
    _, h, w, _ = x.shape
    b = x.shape[0]
    bounds = []
    for size, ratio in ((w, ratio_x), (h, ratio_y)):
        length = ops.multiply(ratio, float(size))
        start = ops.multiply(layer._uniform((b,), 0.0, 1.0, generator), ops.subtract(float(size), length))
        bounds += [start, ops.add(start, length)]
    return bounds


class RandomErasing(_RandomLayer):
    """Fills a random box of each image with `fill_value` during training, as Keras's
    RandomErasing.

    factor: the probability of erasing an image is drawn uniformly from it per image (a number f
    in [0, 1] gives [0, f], the default 1.0 erases about half of the images).
    scale: the box's area fraction range: each side is sqrt(uniform(scale)) of the image's
    (a number s gives (0, s)).
    fill_value: None (Gaussian noise * value_range[1]), a number, or three numbers (one per
    channel); clipped to `value_range`."""

    def __init__(self, factor=1.0, scale=(0.02, 0.33), fill_value=None, value_range=(0, 255), seed=None,
                 data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        who = "RandomErasing"
        self.factor = _base_factor(who, factor, (0, 1))
        self.scale = _unit_pair(who, "scale", scale)
        if fill_value is not None:
            values = list(fill_value) if isinstance(fill_value, (tuple, list)) else [fill_value]
            if len(values) not in (1, 3) or (isinstance(fill_value, (tuple, list)) and len(values) != 3):
                raise ValueError(f"{who}: `fill_value` must be None, a number or a list of three numbers (one per "
                                 f"channel), received fill_value={fill_value!r}")
            for v in values:
                _number(who, "fill_value", v)
        self.fill_value = fill_value
        self.value_range = value_range_arg(who, value_range, sort=False)

    def _draw(self, x, generator):
        b = x.shape[0]
        ratios = ops.sqrt(self._uniform((b, 2), *self.scale, generator))
        x0, x1, y0, y1 = random_box(self, x, ratios[:, 0], ratios[:, 1], generator)
        p = self._uniform((b,), *self.factor, generator)
        apply = ops.less(self._uniform((b,), 0.0, 1.0, generator), p)
        if self.fill_value is None:
            fill = ops.multiply(ops.normal(x.shape, seed=generator), float(self.value_range[1]))
        elif isinstance(self.fill_value, (tuple, list)):
            if x.shape[-1] != 3:
                raise ValueError(f"RandomErasing '{self.name}': a fill_value of three numbers needs images with 3 "
                                 f"channels, received a batch of shape {x.shape} ({self.data_format})")
            fill = ops.convert_to_tensor(np.asarray(self.fill_value, np.float32).reshape(1, 1, 1, 3))
        else:
            fill = ops.full((1, 1, 1, 1), float(self.fill_value))
        fill = ops.clip(fill, float(self.value_range[0]), float(self.value_range[1]))
        mask = ops.logical_and(_box_mask(x, x0, x1, y0, y1), ops.reshape(apply, (b, 1, 1, 1)))
        return mask, fill

    def _transform(self, x, params):
        mask, fill = params
        return ops.where(mask, fill, x)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "scale": self.scale, "fill_value": self.fill_value,
                "value_range": self.value_range}


def _depthwise(x, kernel2d):
    """Each channel of an NHWC batch filtered by the (kh, kw) kernel, zero padding, same size."""
    c = x.shape[-1]
    kh, kw = kernel2d.shape[:2]
    kernel = ops.tile(ops.reshape(kernel2d, (kh, kw, 1, 1)), (1, 1, c, 1))
    return ops.depthwise_conv(x, kernel, strides=1, padding="same", data_format="channels_last")


class RandomSharpness(_RandomLayer):
    """Sharpens or blurs each image by a random amount during training, as Keras's
    RandomSharpness: with s = 2 * f (f uniform in `factor`, a number f in [0, 1] giving [0, f]),
    y = clip(x + (1 - s) * (smooth(x) - x), value_range), smooth being the 3x3 filter
    [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 per channel (zero padding). s = 1 keeps the image,
    s < 1 blurs it, s > 1 sharpens it."""

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _base_factor("RandomSharpness", factor, (0, 1))
        self.value_range = value_range_arg("RandomSharpness", value_range)

    def _draw(self, x, generator):
        f = self._uniform((x.shape[0],), *self.factor, generator)
        return ops.reshape(ops.multiply(f, 2.0), (x.shape[0], 1, 1, 1))

    def _transform(self, x, sharpness):
        if x.shape[1] * x.shape[2] * x.shape[3] == 0:
            return x
        a, b = 1.0 / 13.0, 5.0 / 13.0
        smooth = _depthwise(x, np.array([[a, a, a], [a, b, a], [a, a, a]], np.float32))
        y = ops.add(x, ops.multiply(ops.subtract(1.0, sharpness), ops.subtract(smooth, x)))
        return ops.clip(y, float(self.value_range[0]), float(self.value_range[1]))

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


class RandomGaussianBlur(_RandomLayer):
    """Blurs each image with a Gaussian filter with a random probability during training, as
    Keras's RandomGaussianBlur.

    factor: the probability of blurring an image is drawn uniformly from it per image (a number
    f in [0, 1] gives [0, f]). kernel_size: an odd int, or a pair (x size, y size) of odd ints.
    sigma: the standard deviations (x, y) are drawn once per call, uniform in `sigma` (a number
    s in [0, 1] gives [0, s], as Keras bounds it), plus 1e-6. The result is clipped to
    `value_range`."""

    def __init__(self, factor=1.0, kernel_size=3, sigma=1.0, value_range=(0, 255), data_format=None, seed=None,
                 **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        who = "RandomGaussianBlur"
        self.factor = _base_factor(who, factor, (0, 1))
        sizes = list(kernel_size) if isinstance(kernel_size, (tuple, list)) else [kernel_size, kernel_size]
        if len(sizes) != 2 or any(isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1
                                  or k % 2 == 0 for k in sizes):
            raise ValueError(f"{who}: `kernel_size` must be an odd positive integer or a pair of them (x, y), "
                             f"received kernel_size={kernel_size!r}")
        self.kernel_size = (int(sizes[0]), int(sizes[1]))
        self.sigma = _unit_pair(who, "sigma", sigma)
        self.value_range = value_range_arg(who, value_range, sort=False)

    def _draw(self, x, generator):
        b = x.shape[0]
        p = self._uniform((b,), *self.factor, generator)
        apply = ops.reshape(ops.less(self._uniform((b,), 0.0, 1.0, generator), p), (b, 1, 1, 1))
        return apply, ops.add(self._uniform((2,), *self.sigma, generator), 1e-6)

    def _kernel(self, sigma):
        def gauss(size, s):
            t = np.arange(size, dtype=np.float32) - np.float32((size - 1) / 2)
            k = ops.exp(ops.multiply(ops.square(ops.divide(t, s)), -0.5))
            return ops.divide(k, ops.sum(k))
        kx = gauss(self.kernel_size[0], sigma[0])
        ky = gauss(self.kernel_size[1], sigma[1])
        return ops.multiply(ops.reshape(ky, (-1, 1)), ops.reshape(kx, (1, -1)))

    def _transform(self, x, params):
        apply, sigma = params
        if x.shape[1] * x.shape[2] * x.shape[3] == 0:
            return x
        blurred = _depthwise(x, self._kernel(sigma))
        return ops.clip(ops.where(apply, blurred, x), float(self.value_range[0]), float(self.value_range[1]))

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "kernel_size": self.kernel_size, "sigma": self.sigma,
                "value_range": self.value_range}


class RandomShear(_RandomLayer):
    """Shears each image by random amounts during training, as Keras's RandomShear: input
    positions x_in = x + sx * y, y_in = sy * x + y, with sx uniform in `x_factor` and sy in
    `y_factor` (a number f in [0, 1] gives [-f, f], a pair (lower, upper) in [0, 1]), both
    negated for a random half of the images. Sampling as RandomRotation's: `interpolation`
    ("bilinear" or "nearest"), `fill_mode` ("reflect", "wrap", "constant" with `fill_value`,
    "nearest")."""
    supports_jit = False  # as Keras's (metadata: lamina has no XLA)

    def __init__(self, x_factor=0.0, y_factor=0.0, interpolation="bilinear", fill_mode="reflect", fill_value=0.0,
                 data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        who = "RandomShear"
        self.x_factor = self._factor(who, "x_factor", x_factor)
        self.y_factor = self._factor(who, "y_factor", y_factor)
        self.interpolation = _choice(who, "interpolation", interpolation, _AFFINE_INTERPOLATIONS)
        self.fill_mode = _choice(who, "fill_mode", fill_mode, _FILL_MODES)
        self.fill_value = _number(who, "fill_value", fill_value)

    @staticmethod
    def _factor(who, name, value):
        """A number f in [0, 1] gives (-f, f) (Keras); a pair is sorted. Keras takes pairs in [0, 1]
        only, which refuses its own config's (-f, f): lamina takes pairs in [-1, 1]."""
        def check(v, lo):
            v = _number(who, name, v)
            if not lo <= v <= 1:
                raise ValueError(f"{who}: `{name}` must be a number in [0, 1] or a pair of numbers in [-1, 1], "
                                 f"received {name}={value!r}")
            return v
        if isinstance(value, (tuple, list)):
            if len(value) != 2:
                raise ValueError(f"{who}: `{name}` must be a number in [0, 1] or a pair of numbers in [-1, 1], "
                                 f"received {name}={value!r}")
            lo, hi = sorted(check(v, -1) for v in value)
            return lo, hi
        f = abs(check(value, 0))
        return -f, f

    def _draw(self, x, generator):
        b = x.shape[0]
        sign = ops.where(ops.greater(self._uniform((b, 1), 0.0, 1.0, generator), 0.5), -1.0, 1.0)
        sy = ops.multiply(self._uniform((b, 1), *self.y_factor, generator), sign)
        sx = ops.multiply(self._uniform((b, 1), *self.x_factor, generator), sign)
        return _columns(1.0, sx, 0.0, sy, 1.0, 0.0, 0.0, 0.0)

    def _transform(self, x, matrix):
        return affine_transform(x, matrix, self.interpolation, self.fill_mode, self.fill_value)

    _geometric = True

    def _transform_masks(self, masks, matrix):
        return affine_transform(masks, matrix, "nearest", self.fill_mode, self.fill_value)

    def _transform_boxes(self, boxes, matrix, size):
        """Each box becomes the smallest box holding its sheared corners (the exact inverse of
        the images' map). Keras 3.15 shears the corners in relative coordinates (right only for
        square images) and one axis after the other (right only when one factor is zero); lamina's
        boxes follow the pixels in every case."""
        return inverse_affine_boxes(boxes, matrix), size

    def get_config(self):
        return {**super().get_config(), "x_factor": self.x_factor, "y_factor": self.y_factor,
                "fill_mode": self.fill_mode, "interpolation": self.interpolation, "fill_value": self.fill_value}


class RandomPerspective(_RandomLayer):
    """Warps each image by a random perspective transformation during training, as Keras's
    RandomPerspective: the corners (0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1) move to
    corner * (1 + d), d uniform in [-scale / 2, scale / 2] per coordinate (so, as in Keras, the
    top-left corner stays put), and the image is resampled through the homography
    (ops.image.perspective_transform) with `interpolation` ("bilinear" or "nearest") and
    `fill_value` outside the input.

    factor: the probability of warping an image is drawn uniformly from it per image (a number
    f in [0, 1] gives [0, f]; the default 1.0 warps about half of the images, factor=0 none).
    scale: a number in [0, 1], the size of the corner shifts (0: the identity map).
    Outputs are float32 (at inference: the input, cast), as Keras's. Images must be at least
    2 pixels high and wide (Keras's homography of a single row or column is NaN)."""
    supports_jit = False  # as Keras's (metadata: lamina has no XLA)

    def __init__(self, factor=1.0, scale=1.0, interpolation="bilinear", fill_value=0.0, seed=None, data_format=None,
                 **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        who = "RandomPerspective"
        self.factor = _base_factor(who, factor, (0, 1))
        msg = f"{who}: `scale` must be a number in [0, 1], received scale={scale!r}"
        try:
            s = _number(who, "scale", scale)
        except ValueError:
            raise ValueError(msg) from None
        if not 0 <= s <= 1:
            raise ValueError(msg)
        self.scale = scale
        self.interpolation = _choice(who, "interpolation", interpolation, _AFFINE_INTERPOLATIONS)
        self.fill_value = _number(who, "fill_value", fill_value)

    def _draw(self, x, generator):
        b, h, w, _ = x.shape
        p = self._uniform((b,), *self.factor, generator)
        apply = ops.less(self._uniform((b,), 0.0, 1.0, generator), p)
        shift = self._uniform((b, 4, 2), -0.5 * self.scale, 0.5 * self.scale, generator)
        start = np.ascontiguousarray(np.broadcast_to(
            np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float32), (b, 4, 2)))
        return apply, start, ops.add(start, ops.multiply(start, shift))

    def _transform(self, x, params, interpolation=None):
        apply, start, end = params
        if x.shape[1] < 2 or x.shape[2] < 2:
            raise ValueError(f"RandomPerspective '{self.name}': expected images at least 2 pixels high and wide (the "
                             f"four corners must be distinct points), received a batch of shape {x.shape} "
                             f"(channels_last view of the input)")
        warped = image_ops.perspective_transform(x, start, end, interpolation=interpolation or self.interpolation,
                                                 fill_value=self.fill_value, data_format="channels_last")
        return ops.where(ops.reshape(apply, (x.shape[0], 1, 1, 1)), warped, x)

    _geometric = True

    def _transform_masks(self, masks, params):
        return self._transform(masks, params, "nearest")

    def _transform_boxes(self, boxes, params, size):
        """Each box becomes the smallest box holding its four corners moved by the warp (the
        inverse of the images' output-to-input homography), as Keras's. Keras 3.15 returns them
        in "xyxy" whatever `bounding_box_format` is; lamina converts them back to it."""
        apply, start, end = params
        moved = inverse_projective_boxes(boxes, image_ops._homography(ops.convert_to_tensor(start), end))
        return ops.where(ops.reshape(apply, (-1, 1, 1)), moved, boxes), size

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "scale": self.scale,
                "interpolation": self.interpolation, "fill_value": self.fill_value}


class RandomElasticTransform(_RandomLayer):
    """Deforms each image elastically during training, as Keras's RandomElasticTransform: one
    strength f per call, uniform in `scale`, gives alpha = max(h, w) * 0.1 * f and
    sigma = min(h, w) * 0.05 * f for ops.image.elastic_transform (a Gaussian-smoothed random
    displacement field per image, sampled with `interpolation` ("bilinear" or "nearest") and
    `fill_mode` ("reflect" (default), "wrap", "constant" with `fill_value`, "nearest",
    "mirror")); the result is clipped to `value_range`, also for the images left as they are.

    factor: the probability of deforming an image is drawn uniformly from it per image (a number
    f in [0, 1] gives [0, f]; the default 1.0 deforms about half of the images).
    scale: a number s in [0, 1] gives strengths in [0, s], a pair (lower, upper) in [0, 1]
    (Keras also takes pairs reaching past 1; a negative strength has no sigma). factor=0 or
    scale=0 leave the images as they are (not clipped), as in Keras.
    The displacement noise is ops.image.elastic_transform's: independent x and y fields (Keras's
    JAX backend draws one field for both), seeded from this layer's generator. Outputs are
    float32 (at inference: the input, cast)."""

    def __init__(self, factor=1.0, scale=1.0, interpolation="bilinear", fill_mode="reflect", fill_value=0.0,
                 value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        who = "RandomElasticTransform"
        self.factor = _base_factor(who, factor, (0, 1))
        self.scale = _unit_pair(who, "scale", scale)
        self.interpolation = _choice(who, "interpolation", interpolation, _AFFINE_INTERPOLATIONS)
        self.fill_mode = _choice(who, "fill_mode", fill_mode, _ELASTIC_FILL_MODES)
        self.fill_value = _number(who, "fill_value", fill_value)
        self.value_range = value_range_arg(who, value_range, sort=False)

    def _draw(self, x, generator):
        if self.scale[1] == 0 or self.factor[1] == 0:
            return None
        generator = generator or self.generator
        b = x.shape[0]
        p = self._uniform((b,), *self.factor, generator)
        apply = ops.less(self._uniform((b,), 0.0, 1.0, generator), p)
        strength = float(np.asarray(self._uniform((), *self.scale, generator).numpy()))
        # the noise seed: the generator's next (seed, counter) key, mixed on the host into one int
        key = np.random.SeedSequence(list(generator.next())).generate_state(2, np.uint32)
        return apply, strength, int(key[0]) << 31 | int(key[1]) >> 1

    @staticmethod
    def elastic_params(height, width, strength):
        """Keras's (alpha, sigma) for a strength, in float32 as Keras computes them."""
        f = np.float32(strength)
        alpha = np.float32(max(height, width)) * (np.float32(0.1) * f)
        sigma = np.float32(min(height, width)) * (np.float32(0.05) * f)
        return float(alpha), float(sigma)

    _geometric = True
    _boxes_unsupported = ("bounding boxes cannot follow an elastic deformation (Keras's RandomElasticTransform "
                          "does not transform them either)")

    def _transform_masks(self, masks, params):
        return self._transform(masks, params, "nearest")

    def _transform(self, x, params, interpolation=None):
        if params is None:
            return x
        apply, strength, noise_seed = params
        alpha, sigma = self.elastic_params(x.shape[1], x.shape[2], strength)
        if sigma > 0:        # a zero strength (or an empty image) moves no pixel
            moved = image_ops.elastic_transform(x, alpha=alpha, sigma=sigma,
                                                interpolation=interpolation or self.interpolation,
                                                fill_mode=self.fill_mode, fill_value=self.fill_value,
                                                seed=noise_seed, data_format="channels_last")
            x = ops.where(ops.reshape(apply, (x.shape[0], 1, 1, 1)), moved, x)
        return ops.clip(x, float(self.value_range[0]), float(self.value_range[1]))

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "scale": self.scale,
                "interpolation": self.interpolation, "fill_mode": self.fill_mode, "fill_value": self.fill_value,
                "value_range": self.value_range}


class MaxNumBoundingBoxes(_ImageLayer):
    """Pads or truncates the bounding boxes to `max_number` per image, as Keras's
    MaxNumBoundingBoxes. The input is Keras's dict {"images": ..., "bounding_boxes": {"boxes":
    (batch, N, 4), "labels": (batch, N)}, ...} (one image: (N, 4) boxes and (N,) labels); the
    output is a new dict with the boxes and labels cut to their first `max_number` or padded
    after the last with `fill_value` (boxes as float32, as Keras densifies them; labels keep their
    dtype); the images and every other entry pass unchanged. An input that is only images
    comes back as it is.

    The box format does not matter here: `bounding_box_format` is taken for Keras's configs
    (Keras requires it with boxes; lamina does not). Unlike Keras's, the config keeps
    `fill_value`."""

    def __init__(self, max_number, fill_value=-1, bounding_box_format=None, data_format=None, **kwargs):
        super().__init__(data_format=data_format, bounding_box_format=bounding_box_format, **kwargs)
        who = "MaxNumBoundingBoxes"
        if isinstance(max_number, (bool, np.bool_)) or not isinstance(max_number, (int, np.integer)) \
                or max_number < 1:
            raise ValueError(f"{who}: `max_number` must be a positive integer (boxes per image), received "
                             f"max_number={max_number!r}")
        fill = _number(who, "fill_value", fill_value)
        if fill != int(fill):
            raise ValueError(f"{who}: `fill_value` must be an integer (it pads the labels too), received "
                             f"fill_value={fill_value!r}")
        self.max_number, self.fill_value = int(max_number), int(fill)
        self.input_spec = None   # a dict's entries have different ranks: checked in call

    def __call__(self, inputs, *args, **kwargs):   # its own dict handling, below (no box format needed)
        return Layer.__call__(self, inputs, *args, **kwargs)

    def call(self, inputs):
        who = f"MaxNumBoundingBoxes '{self.name}'"
        if not isinstance(inputs, dict):
            self._batched(who, inputs, "images")
            return inputs
        batched = self._batched(who, inputs["images"], "inputs['images']") if "images" in inputs else None
        out = dict(inputs)
        if "bounding_boxes" in inputs:
            out["bounding_boxes"] = self._limit(who, inputs["bounding_boxes"], batched)
        return out

    @staticmethod
    def _batched(who, images, name):
        if getattr(images, "ndim", None) not in (3, 4):
            raise ValueError(f"{who}: expected {name} of rank 3 (one image) or 4 (a batch), received "
                             f"{name} of shape {getattr(images, 'shape', None)}")
        return images.ndim == 4

    def _limit(self, who, bounding_boxes, batched):
        if not isinstance(bounding_boxes, dict) or "boxes" not in bounding_boxes or "labels" not in bounding_boxes:
            raise ValueError(f"{who}: inputs['bounding_boxes'] must be a dict with the keys 'boxes' and 'labels', "
                             f"received {type(bounding_boxes).__name__}"
                             + (f" with keys {sorted(bounding_boxes)}" if isinstance(bounding_boxes, dict) else ""))
        boxes, labels = bounding_boxes["boxes"], bounding_boxes["labels"]
        if batched is None:
            batched = boxes.ndim == 3
        rank = 3 if batched else 2
        if boxes.ndim != rank or boxes.shape[-1] != 4:
            raise ValueError(f"{who}: expected bounding_boxes['boxes'] of shape "
                             f"{'(batch, num_boxes, 4)' if batched else '(num_boxes, 4) (one image)'}, received "
                             f"shape {tuple(boxes.shape)}")
        if tuple(labels.shape) != tuple(boxes.shape[:-1]):
            raise ValueError(f"{who}: bounding_boxes['labels'] must have the shape {tuple(boxes.shape[:-1])} "
                             f"(one label per box), received shape {tuple(labels.shape)}")
        with device_scope(boxes.device):
            if boxes.dtype != dtypes.FLOAT32:
                boxes = ops.cast(boxes, dtypes.FLOAT32)
            n = boxes.shape[-2]
            extra = max(self.max_number - n, 0)
            lead = [[0, 0]] if batched else []
            boxes = boxes[..., :self.max_number, :]
            labels = labels[..., :self.max_number]
            if extra:
                boxes = ops.pad(boxes, lead + [[0, extra], [0, 0]], constant_values=self.fill_value)
                labels = ops.pad(labels, lead + [[0, extra]], constant_values=self.fill_value)
        out = dict(bounding_boxes)
        out["boxes"], out["labels"] = boxes, labels
        return out

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, dict) or "bounding_boxes" not in input_shape:
            return input_shape
        out = dict(input_shape)
        box_shapes = dict(input_shape["bounding_boxes"])
        for key in ("boxes", "labels"):
            if key in box_shapes:
                shape = list(box_shapes[key])
                shape[-2 if key == "boxes" else -1] = self.max_number
                box_shapes[key] = tuple(shape)
        out["bounding_boxes"] = box_shapes
        return out

    def compute_output_dtype(self, input_dtypes):
        """The inputs' dtypes, one per output tensor in order (the boxes become float32)."""
        if not isinstance(input_dtypes, dict):
            return input_dtypes
        flat = []

        def walk(d, in_boxes):
            for key, value in d.items():
                if isinstance(value, dict):
                    walk(value, key == "bounding_boxes")
                else:
                    flat.append(dtypes.FLOAT32 if in_boxes and key == "boxes" else value)
        walk(input_dtypes, False)
        return flat

    def get_config(self):
        return {**super().get_config(), "max_number": self.max_number, "fill_value": self.fill_value}
