"""Image preprocessing layers, as Keras 3's: Resizing, CenterCrop, RandomCrop, RandomFlip,
RandomRotation, RandomZoom, RandomTranslation, RandomContrast.

Inputs are one image (rank 3) or a batch (rank 4), channels_last unless `data_format` says
otherwise; outputs are float32 (Resizing keeps integer inputs integer, rounded, as Keras does).

Resampling is ops.image's (backend/resampling.py): Resizing runs `ops.image.resize` (JAX's
`image.resize`, which Keras's JAX backend uses), and the random affine layers (rotation, zoom,
translation) map every output pixel to an input position through a per-image 3x3 matrix
(Keras's layout [a0, a1, a2, b0, b1, b2, c0, c1]: x_in = a0*x + a1*y + a2, y_in = b0*x + b1*y + b2)
sampled as `ops.image.affine_transform` samples it (`jax.scipy.ndimage.map_coordinates`: order 0
rounds half away from zero, order 1 is bilinear; fill modes "reflect", "wrap", "nearest" fold the
index, "constant" gives `fill_value` to every tap outside the image).

The random layers draw from a `SeedGenerator(seed)`: a seeded layer repeats its sequence of
augmentations. Like Keras they act when `training` is true; a call that does not say (`layer(x)`,
`model(x)`) counts as training, as Keras's `call(..., training=True)` signature makes it;
`fit` trains, and `predict` / `evaluate` / `training=False` run the inference path (the identity,
except RandomCrop, which then crops the largest centred window of the target aspect ratio and
resizes it to (height, width), as its documentation says).

Every image layer also takes Keras's dict input {"images", "bounding_boxes", "labels",
"segmentation_masks"} and the argument `bounding_box_format`: one draw moves the images, the
boxes and the masks alike (layers/preprocessing_boxes.py).
"""
import math
import numbers

import numpy as np

from .. import ops
from ..backend import dtypes
from ..backend import image as image_ops
from ..backend.device import device as device_scope
from ..backend.resampling import aspect_crop_box as _aspect_crop_box
from ..backend.resampling import resize_batch as resize_images
from ..backend.resampling import transform_batch as affine_transform  # noqa: F401  (used by the other image layers)
from ..backend.random import SeedGenerator
from ..backend.settings import standardize_data_format
from .layer import InputSpec, Layer
from .preprocessing_boxes import box_format_arg as _box_format
from .preprocessing_boxes import call_with_dict, inverse_affine_boxes, transform_box_dict

_RESIZE_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "lanczos3", "lanczos5")
_AFFINE_INTERPOLATIONS = ("nearest", "bilinear")
_FILL_MODES = ("reflect", "wrap", "constant", "nearest")


# ---- argument checks ---------------------------------------------------------------------------

def _data_format(who, value):
    return standardize_data_format(value, who)


def _size(who, name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{who}: `{name}` must be a positive integer (pixels), received {name}={value!r}")
    return int(value)


def _choice(who, name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{who}: `{name}` must be one of {allowed}, received {name}={value!r}")
    return value


def _number(who, name, value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{who}: `{name}` must be a finite number, received {name}={value!r}")
    return value


def _seed(who, seed):
    if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"{who}: `seed` must be an integer or None, received seed={seed!r}")
    return None if seed is None else int(seed)


def _range_factor(who, name, factor, low, high, low_open=False):
    """RandomZoom / RandomTranslation factors: a number f (-> (-|f|, |f|)) or a pair (sorted),
    each value in [low, high] ((low, high] when low_open), as Keras checks them."""
    def check(v):
        v = _number(who, name, v)
        if v > high or (v <= low if low_open else v < low):
            bracket = "(" if low_open else "["
            raise ValueError(f"{who}: `{name}` must be a number or a pair of numbers in {bracket}{low}, {high}], "
                             f"received {name}={factor!r}")
        return v
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2:
            raise ValueError(f"{who}: `{name}` must be a number or a pair (lower, upper), received {name}={factor!r}")
        lower, upper = sorted(check(v) for v in factor)
        return lower, upper
    f = abs(check(factor))
    return -f, f


def _base_factor(who, factor, bounds):
    """Keras's BaseImagePreprocessingLayer._set_factor (RandomRotation, RandomContrast): a number
    f -> (max(-|f|, bounds[0]), |f|), a pair -> sorted."""
    msg = (f"{who}: `factor` must be a number (or a list of two numbers) in the range [{bounds[0]}, {bounds[1]}], "
           f"received factor={factor!r}")
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2:
            raise ValueError(msg)
        lo, hi = (_number(who, "factor", v) for v in factor)
        if lo > bounds[1] or hi < bounds[0]:
            raise ValueError(msg)
        return tuple(sorted((lo, hi)))
    try:
        f = _number(who, "factor", factor)
    except ValueError:
        raise ValueError(msg) from None
    if f < bounds[0] or f > bounds[1]:
        raise ValueError(msg)
    f = abs(f)
    return max(-f, bounds[0]), f


# ---- layout: every layer works on float32 NHWC batches ------------------------------------------

def _to_nhwc(layer, x):
    """(batch in NHWC, whether the input was one image)."""
    if x.ndim not in (3, 4):
        raise ValueError(f"{type(layer).__name__} '{layer.name}': expected an image of rank 3 (height, width, "
                         f"channels) or a batch of rank 4, received input of shape {x.shape}")
    single = x.ndim == 3
    if single:
        x = ops.expand_dims(x, 0)
    if layer.data_format == "channels_first":
        x = ops.transpose(x, (0, 2, 3, 1))
    return x, single


def _from_nhwc(layer, x, single):
    if layer.data_format == "channels_first":
        x = ops.transpose(x, (0, 3, 1, 2))
    return ops.squeeze(x, 0) if single else x


def _float(x):
    return x if x.dtype == dtypes.FLOAT32 else ops.cast(x, dtypes.FLOAT32)


def _with_hw(input_shape, data_format, height, width):
    shape = list(input_shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"expected an input shape of rank 3 or 4 (an image or a batch), received {tuple(shape)}")
    h_ax, w_ax = (-2, -1) if data_format == "channels_first" else (-3, -2)
    shape[h_ax], shape[w_ax] = height, width
    return tuple(shape)


# ---- resizing ------------------------------------------------------------------------------------

def _check_area(layer, x):
    """A crop that has to resize needs pixels to resize: a clear error for an empty height or width."""
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{type(layer).__name__} '{layer.name}': cannot crop and resize images with an empty height "
                         f"or width to ({layer.height}, {layer.width}); received a batch of shape {x.shape} "
                         f"(channels_last view of the input)")


def _smart_resize(x, height, width, interpolation="bilinear"):
    """keras.utils.smart_resize on a float NHWC batch: the centred aspect-ratio crop, resized."""
    top, left, ch, cw = _aspect_crop_box(x.shape[1], x.shape[2], height, width)
    return resize_images(x[:, top:top + ch, left:left + cw, :], height, width, interpolation)


def _window_boxes(boxes, top, left, win_h, win_w, height, width):
    """"xyxy" boxes in the coordinates of the window (top, left, win_h, win_w) of the image,
    clipped to it, then scaled as the window is resized to (height, width)."""
    lo = np.array([left, top, left, top], np.float32)
    hi = np.array([left + win_w, top + win_h, left + win_w, top + win_h], np.float32)
    scale = np.array([width / win_w, height / win_h] * 2, np.float32)
    return ops.multiply(ops.subtract(ops.minimum(ops.maximum(boxes, lo), hi), lo), scale)


# ---- layers ------------------------------------------------------------------------------------------

class _ImageLayer(Layer):
    """Shared by the image layers: `data_format`, rank-3/4 inputs, float32 outputs, and Keras's
    dict inputs (layers/preprocessing_boxes.py's notes apply)."""

    def __init__(self, data_format=None, bounding_box_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(type(self).__name__, data_format)
        self.bounding_box_format = _box_format(type(self).__name__, bounding_box_format)
        self.input_spec = InputSpec(min_ndim=3, max_ndim=4)

    def __call__(self, inputs, *args, **kwargs):
        if not isinstance(inputs, dict):
            return super().__call__(inputs, *args, **kwargs)
        return call_with_dict(self, super().__call__, inputs, args, kwargs)

    def _call_dict(self, data, training):
        """Keras's dict call: {"images", "bounding_boxes", "labels", "segmentation_masks"}, the
        same random parameters for every entry (the boxes were checked and densified by
        call_with_dict)."""
        images = data["images"]
        if "bounding_boxes" in data and self._boxes_unsupported:
            raise ValueError(f"{type(self).__name__} '{self.name}': {self._boxes_unsupported}; remove the "
                             f"'bounding_boxes' entry of the input, or move the boxes with another layer")
        out = dict(data)
        with device_scope(images.device):
            x, single = _to_nhwc(self, images)
            params = self._dict_params(_float(x), training)
            out["images"] = self._dict_images(images, x, single, params, training)
            if "bounding_boxes" in data:
                out["bounding_boxes"] = self._dict_boxes(data["bounding_boxes"], single, params,
                                                         (x.shape[1], x.shape[2]))
            if "labels" in data and params is not None:
                out["labels"] = self._transform_labels(data["labels"], params)
            if "segmentation_masks" in data and params is not None:
                m, m_single = _to_nhwc(self, data["segmentation_masks"])
                out["segmentation_masks"] = _from_nhwc(self, self._transform_masks(_float(m), params), m_single)
        return out

    # -- dict inputs: what each layer does to the entries besides the images (defaults: a colour
    # layer's; the geometric layers override them) --
    def _dict_params(self, x, training):
        """The parameters shared by the images, boxes and masks of one dict call (None: the
        boxes and masks pass unchanged)."""
        return None

    def _dict_images(self, images, x, single, params, training):
        """The images of a dict call: by default the layer's own image path."""
        return self.call(images, training=training) if self._call_has_training else self.call(images)

    _geometric = False    # whether the boxes and masks of a dict input move with the images
    _boxes_unsupported = None     # the reason, for a layer that cannot move bounding boxes (as in Keras)

    def _dict_boxes(self, bounding_boxes, single, params, size):
        return transform_box_dict(self, bounding_boxes, single, params, size)

    def _transform_boxes(self, boxes, params, size):
        """("xyxy" boxes (batch, N, 4) in the output image, its (height, width)) for boxes of an
        input image of `size`."""
        return boxes, size

    def _transform_masks(self, masks, params):
        """Segmentation masks (float NHWC) through the same geometry, nearest sampling."""
        return masks

    def _transform_labels(self, labels, params):
        return labels

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_dtype(self, input_dtypes):
        return dtypes.FLOAT32

    def get_config(self):
        config = {**super().get_config(), "data_format": self.data_format}
        if self.bounding_box_format is not None:
            config["bounding_box_format"] = self.bounding_box_format
        return config


class Resizing(_ImageLayer):
    """Resizes images to (height, width), as Keras's Resizing.

    interpolation: "bilinear" (default), "nearest", "bicubic", "lanczos3" or "lanczos5".
    crop_to_aspect_ratio: first crop the largest centred window with the target aspect ratio.
    pad_to_aspect_ratio: first pad (with `fill_value`) evenly on both sides to that ratio.
    antialias: widen the kernel when downsampling (no effect with "nearest", as in Keras).
    Float inputs give float32; integer inputs are resampled in float, rounded and clipped back
    to their dtype, as Keras does."""

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
                 fill_mode="constant", fill_value=0.0, antialias=False, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        who = "Resizing"
        self.height, self.width = _size(who, "height", height), _size(who, "width", width)
        self.interpolation = _choice(who, "interpolation", interpolation, _RESIZE_INTERPOLATIONS)
        self.crop_to_aspect_ratio, self.pad_to_aspect_ratio = bool(crop_to_aspect_ratio), bool(pad_to_aspect_ratio)
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ValueError(f"{who}: only one of `crop_to_aspect_ratio` and `pad_to_aspect_ratio` can be True")
        self.fill_mode = _choice(who, "fill_mode", fill_mode, ("constant",))
        self.fill_value = _number(who, "fill_value", fill_value)
        self.antialias = bool(antialias)

    def call(self, inputs):
        if isinstance(inputs, dict):
            return self._call_dict(inputs, True)
        if inputs.dtype == dtypes.BOOL:      # resized as 0. / 1. (the op resizes numbers)
            inputs = ops.cast(inputs, dtypes.FLOAT32)
        return image_ops.resize(inputs, (self.height, self.width), self.interpolation, self.antialias,
                                self.crop_to_aspect_ratio, self.pad_to_aspect_ratio, self.fill_mode, self.fill_value,
                                self.data_format)

    def _dict_params(self, x, training):
        return x.shape[1], x.shape[2]

    def _transform_masks(self, masks, params):
        return image_ops.resize(masks, (self.height, self.width), "nearest", False, self.crop_to_aspect_ratio,
                                self.pad_to_aspect_ratio, self.fill_mode, self.fill_value, "channels_last")

    def _transform_boxes(self, boxes, params, size):
        """Keras's Resizing boxes: stretched, or scaled and shifted as the aspect-ratio crop or pad
        moves the image; boxes of padding (all -1 or all 0) stay zero."""
        h, w = float(size[0]), float(size[1])
        padding = ops.logical_or(ops.all(ops.equal(boxes, -1.0), axis=-1, keepdims=True),
                                 ops.all(ops.equal(boxes, 0.0), axis=-1, keepdims=True))
        if self.pad_to_aspect_ratio:
            s = min(self.height / h, self.width / w)
            sx = sy = s
            dx, dy = (self.width - w * s) // 2, (self.height - h * s) // 2
        elif self.crop_to_aspect_ratio:
            wide = w / h > self.width / self.height
            new_w = self.height * (w / h) if wide else float(self.width)
            new_h = float(self.height) if wide else self.width / (w / h)
            sx, sy = new_w / w, new_h / h
            dx, dy = -((new_w - self.width) // 2), -((new_h - self.height) // 2)
        else:
            sx, sy, dx, dy = self.width / w, self.height / h, 0.0, 0.0
        moved = ops.add(ops.multiply(boxes, np.array([sx, sy, sx, sy], np.float32)),
                        np.array([dx, dy, dx, dy], np.float32))
        return ops.where(padding, 0.0, moved), (self.height, self.width)

    def compute_output_shape(self, input_shape):
        return _with_hw(input_shape, self.data_format, self.height, self.width)

    def compute_output_dtype(self, input_dtypes):
        return input_dtypes if isinstance(input_dtypes, str) and dtypes.is_int(input_dtypes) else dtypes.FLOAT32

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "interpolation": self.interpolation, "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
                "pad_to_aspect_ratio": self.pad_to_aspect_ratio, "fill_mode": self.fill_mode,
                "fill_value": self.fill_value, "antialias": self.antialias}


class CenterCrop(_ImageLayer):
    """Crops the central (height, width) window; an image smaller than that on either side is
    instead cropped to the target aspect ratio and resized (bilinear), as Keras's CenterCrop."""

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.height, self.width = _size("CenterCrop", "height", height), _size("CenterCrop", "width", width)

    def call(self, inputs):
        if isinstance(inputs, dict):
            return self._call_dict(inputs, True)
        with device_scope(inputs.device):
            x, single = _to_nhwc(self, inputs)
            return _from_nhwc(self, self._crop(_float(x)), single)

    def _crop(self, x, interpolation="bilinear"):
        _, h, w, _ = x.shape
        if h >= self.height and w >= self.width:
            top, left = (h - self.height) // 2, (w - self.width) // 2
            return x[:, top:top + self.height, left:left + self.width, :]
        _check_area(self, x)
        return _smart_resize(x, self.height, self.width, interpolation)

    def _dict_params(self, x, training):
        return x.shape[1], x.shape[2]

    def _transform_masks(self, masks, params):
        return self._crop(masks, "nearest")

    def _transform_boxes(self, boxes, params, size):
        """Keras's CenterCrop boxes: in the window's coordinates, clipped to it; a window of the
        target aspect ratio that is resized scales them too."""
        h, w = size
        if h >= self.height and w >= self.width:
            top, left, ch, cw = (h - self.height) // 2, (w - self.width) // 2, self.height, self.width
        else:
            top, left, ch, cw = _aspect_crop_box(h, w, self.height, self.width)
        return _window_boxes(boxes, top, left, ch, cw, self.height, self.width), (self.height, self.width)

    def compute_output_shape(self, input_shape):
        return _with_hw(input_shape, self.data_format, self.height, self.width)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


class _RandomLayer(_ImageLayer):
    """A seeded image augmentation: `seed` and its SeedGenerator.

    A training call draws this call's random parameters with `_draw(x, generator)` and applies
    them with `_transform(x, params)`, both on a float32 NHWC batch; the split lets RandAugment
    and AugMix (layers/preprocessing_mix.py) draw from their own generator and apply any layer's
    transform. Inference gives the input as float32, or, with `_identity_at_inference`, the input
    itself (its dtype too), as Keras does for that layer."""

    _identity_at_inference = False

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.seed = _seed(type(self).__name__, seed)
        self.generator = SeedGenerator(self.seed)

    def _uniform(self, shape, low, high, generator=None):
        """Uniform in [low, high); exactly `low` when the range is empty (a fixed factor)."""
        if high <= low:
            return ops.full(shape, float(low))
        return ops.uniform(shape, float(low), float(high), seed=generator or self.generator)

    def call(self, inputs, training=True):
        if training is None:       # Keras's call signature defaults `training` to True
            training = True
        if isinstance(inputs, dict):
            return self._call_dict(inputs, bool(training))
        if not training and self._identity_at_inference:
            return inputs
        with device_scope(inputs.device):    # random draws and constants go where the images are
            x, single = _to_nhwc(self, inputs)
            return _from_nhwc(self, self._augment(x, bool(training)), single)

    def _augment(self, x, training):
        x = _float(x)
        if not training or x.shape[0] == 0:
            return x
        return self._transform(x, self._draw(x, self.generator))

    def _dict_params(self, x, training):
        if not self._geometric or not training or x.shape[0] == 0:
            return None
        return self._draw(x, self.generator)

    def _dict_images(self, images, x, single, params, training):
        if not self._geometric:
            return super()._dict_images(images, x, single, params, training)
        x = _float(x)
        return _from_nhwc(self, x if params is None else self._transform(x, params), single)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


class RandomCrop(_RandomLayer):
    """Crops a random (height, width) window, at one place for the whole batch, as Keras's.

    Training, with an input larger than the target on both sides: the window's top-left corner
    is uniform. Otherwise (an input no larger on a side during training), Keras's path: the
    window starts at the centred aspect-ratio crop's corner and what it holds is resized to
    (height, width). Inference crops the largest centred window with the target aspect ratio and
    resizes it (bilinear), which is Keras's documented behaviour (and tf.keras's smart_resize).
    Keras 3.15's implementation returns the input unchanged at inference instead, contradicting
    its documentation and its own output shape (keras-team/keras#21868, an open bug); lamina
    keeps the output shape (height, width) in both modes, so a model built on it also predicts."""
    supports_jit = False  # as Keras's (metadata: lamina has no XLA)

    def __init__(self, height, width, seed=None, data_format=None, name=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, name=name, **kwargs)
        self.height, self.width = _size("RandomCrop", "height", height), _size("RandomCrop", "width", width)
        if self.seed is None:      # Keras saves a concrete seed for RandomCrop (make_default_seed)
            self.seed = int(np.random.randint(1, int(1e9)))

    _geometric = True

    def _augment(self, x, training):
        x = _float(x)
        return self._crop(x, self._dict_params(x, training))

    def _dict_params(self, x, training):
        """(how, top, left): "random" (a uniform window; top and left are tensors), "aspect"
        (Keras's training path for an input no larger: the target-size window at the centred
        aspect-ratio crop's corner, resized) or "smart" (inference: the centred aspect-ratio crop,
        resized)."""
        _, h, w, _ = x.shape
        if (h, w) != (self.height, self.width) and not (training and h > self.height and w > self.width):
            _check_area(self, x)
        if training and h > self.height and w > self.width:
            top = ops.cast(self._uniform((), 0.0, float(h - self.height + 1)), dtypes.INT64)
            left = ops.cast(self._uniform((), 0.0, float(w - self.width + 1)), dtypes.INT64)
            return "random", top, left
        top, left, _, _ = _aspect_crop_box(h, w, self.height, self.width)
        return ("aspect" if training else "smart"), top, left

    def _dict_images(self, images, x, single, params, training):
        return _from_nhwc(self, self._crop(_float(x), params), single)

    def _window(self, h, w, params):
        """(top, left, window height, window width) of the crop in an h x w image."""
        how, top, left = params
        if how == "random":
            return top, left, self.height, self.width
        if how == "smart" or (h, w) == (self.height, self.width):
            return _aspect_crop_box(h, w, self.height, self.width)
        return top, left, min(self.height, h - top), min(self.width, w - left)

    def _crop(self, x, params, interpolation="bilinear"):
        how, top, left = params
        _, h, w, _ = x.shape
        if how == "random":
            x = ops.take(x, ops.add(ops.arange(self.height), top), axis=1)
            return ops.take(x, ops.add(ops.arange(self.width), left), axis=2)
        if how == "smart":
            return x if (h, w) == (self.height, self.width) else \
                _smart_resize(x, self.height, self.width, interpolation)
        y = x[:, top:top + self.height, left:left + self.width, :]
        if tuple(y.shape[1:3]) != (self.height, self.width):
            y = resize_images(y, self.height, self.width, interpolation)
        return y

    def _transform_masks(self, masks, params):
        return self._crop(masks, params, "nearest")

    def _transform_boxes(self, boxes, params, size):
        """The boxes in the crop window's coordinates, clipped to it (scaled when the window is
        resized). Keras 3.15's RandomCrop subtracts the window's top from x and its left from y
        (swapped) and clips nothing, and leaves the boxes at inference while lamina crops and
        resizes the images then: lamina moves the boxes with the pixels in both modes."""
        top, left, win_h, win_w = self._window(size[0], size[1], params)
        if params[0] == "random":
            t, l = ops.cast(top, dtypes.FLOAT32), ops.cast(left, dtypes.FLOAT32)
            lo = ops.stack([l, t, l, t])
            hi = ops.add(lo, np.array([win_w, win_h, win_w, win_h], np.float32))
            return ops.subtract(ops.minimum(ops.maximum(boxes, lo), hi), lo), (self.height, self.width)
        return _window_boxes(boxes, top, left, win_h, win_w, self.height, self.width), (self.height, self.width)

    def compute_output_shape(self, input_shape):
        return _with_hw(input_shape, self.data_format, self.height, self.width)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


class RandomFlip(_RandomLayer):
    """Flips each image with probability 1/2 during training, as Keras's RandomFlip.

    mode: "horizontal", "vertical" or "horizontal_and_vertical" (default). As in Keras 3, the
    last one draws one coin per image for both axes: an image is either left as it is or
    turned by 180 degrees."""

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.mode = _choice("RandomFlip", "mode", mode, ("horizontal", "vertical", "horizontal_and_vertical"))

    _geometric = True

    def _draw(self, x, generator):
        return ops.less_equal(self._uniform((x.shape[0], 1, 1, 1), 0.0, 1.0, generator), 0.5)

    def _transform(self, x, flips):
        if self.mode in ("horizontal", "horizontal_and_vertical"):
            x = ops.where(flips, ops.flip(x, axis=2), x)
        if self.mode in ("vertical", "horizontal_and_vertical"):
            x = ops.where(flips, ops.flip(x, axis=1), x)
        return x

    _transform_masks = _transform

    def _transform_boxes(self, boxes, flips, size):
        h, w = float(size[0]), float(size[1])
        x1, y1, x2, y2 = ops.split(boxes, 4, axis=-1)
        flips = ops.reshape(flips, (-1, 1, 1))
        if self.mode in ("horizontal", "horizontal_and_vertical"):
            x1, x2 = ops.where(flips, ops.subtract(w, x2), x1), ops.where(flips, ops.subtract(w, x1), x2)
        if self.mode in ("vertical", "horizontal_and_vertical"):
            y1, y2 = ops.where(flips, ops.subtract(h, y2), y1), ops.where(flips, ops.subtract(h, y1), y2)
        return ops.concatenate([x1, y1, x2, y2], axis=-1), size

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class _AffineLayer(_RandomLayer):
    """RandomRotation / RandomZoom / RandomTranslation: a random matrix per image, sampled with
    `interpolation` and `fill_mode` / `fill_value`."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        who = type(self).__name__
        self.fill_mode = _choice(who, "fill_mode", fill_mode, _FILL_MODES)
        self.interpolation = _choice(who, "interpolation", interpolation, _AFFINE_INTERPOLATIONS)
        self.fill_value = _number(who, "fill_value", fill_value)

    def _draw(self, x, generator):
        return self._matrix(x.shape, generator)

    def _transform(self, x, matrix):
        return affine_transform(x, matrix, self.interpolation, self.fill_mode, self.fill_value)

    _geometric = True

    def _transform_masks(self, masks, matrix):
        return affine_transform(masks, matrix, "nearest", self.fill_mode, self.fill_value)

    def _transform_boxes(self, boxes, matrix, size):
        return inverse_affine_boxes(boxes, matrix), size

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode, "fill_value": self.fill_value,
                "interpolation": self.interpolation}


def _columns(*cols):
    """A (batch, 8) matrix from eight (batch, 1) columns (tensors or numbers)."""
    b = next(c.shape[0] for c in cols if hasattr(c, "shape"))
    return ops.concatenate([c if hasattr(c, "shape") else ops.full((b, 1), float(c)) for c in cols], axis=1)


class RandomRotation(_AffineLayer):
    """Rotates each image by a random angle about its centre during training, as Keras's.

    factor: a fraction of a full turn: a number f gives angles in [-f * 360, f * 360] degrees,
    a pair (lower, upper) gives [lower * 360, upper * 360]. Positive angles turn counter-clockwise.
    fill_mode: "reflect" (default), "wrap", "constant" (`fill_value`) or "nearest".
    interpolation: "bilinear" (default) or "nearest"."""
    supports_jit = False  # as Keras's (metadata: lamina has no XLA)

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed, fill_value=fill_value,
                         data_format=data_format, **kwargs)
        self.factor = _base_factor("RandomRotation", factor, (-1, 1))

    def _matrix(self, shape, generator=None):
        b, h, w, _ = shape
        angle = ops.multiply(self._uniform((b, 1), self.factor[0] * 360.0, self.factor[1] * 360.0, generator),
                             np.float32(math.pi / 180.0))
        cos, sin = ops.cos(angle), ops.sin(angle)
        cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
        a2 = ops.add(ops.subtract(cx, ops.multiply(cos, cx)), ops.multiply(sin, cy))
        b2 = ops.subtract(ops.subtract(cy, ops.multiply(sin, cx)), ops.multiply(cos, cy))
        return _columns(cos, ops.negative(sin), a2, sin, cos, b2, 0.0, 0.0)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class RandomZoom(_AffineLayer):
    """Zooms each image by a random factor about its centre during training, as Keras's.

    height_factor: a number f (zoom in [1 - f, 1 + f]) or a pair (lower, upper) (zoom in
    [1 + lower, 1 + upper]), each in (-1, 1]; a positive value zooms out (the image shrinks).
    width_factor: the same for the width, or None (default) to keep the aspect ratio (one
    factor for both axes)."""
    supports_jit = False  # as Keras's (metadata: lamina has no XLA)

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed, fill_value=fill_value,
                         data_format=data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._height_range = _range_factor("RandomZoom", "height_factor", height_factor, -1.0, 1.0, low_open=True)
        self._width_range = None if width_factor is None else \
            _range_factor("RandomZoom", "width_factor", width_factor, -1.0, 1.0, low_open=True)

    def _matrix(self, shape, generator=None):
        b, h, w, _ = shape
        zy = self._uniform((b, 1), 1.0 + self._height_range[0], 1.0 + self._height_range[1], generator)
        zx = zy if self._width_range is None else \
            self._uniform((b, 1), 1.0 + self._width_range[0], 1.0 + self._width_range[1], generator)
        x_off = ops.multiply((w - 1.0) / 2.0, ops.subtract(1.0, zx))
        y_off = ops.multiply((h - 1.0) / 2.0, ops.subtract(1.0, zy))
        return _columns(zx, 0.0, x_off, 0.0, zy, y_off, 0.0, 0.0)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}


class RandomTranslation(_AffineLayer):
    """Shifts each image by a random offset during training, as Keras's.

    height_factor / width_factor: a fraction of the height / width: a number f gives shifts in
    [-f, f] * size, a pair (lower, upper) gives [lower, upper] * size, each in [-1, 1]; positive
    values move the content down / right."""
    supports_jit = False  # as Keras's (metadata: lamina has no XLA)

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed, fill_value=fill_value,
                         data_format=data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._height_range = _range_factor("RandomTranslation", "height_factor", height_factor, -1.0, 1.0)
        self._width_range = _range_factor("RandomTranslation", "width_factor", width_factor, -1.0, 1.0)

    def _matrix(self, shape, generator=None):
        b, h, w, _ = shape
        ty = ops.multiply(self._uniform((b, 1), *self._height_range, generator), float(h))
        tx = ops.multiply(self._uniform((b, 1), *self._width_range, generator), float(w))
        return _columns(1.0, 0.0, ops.negative(tx), 0.0, 1.0, ops.negative(ty), 0.0, 0.0)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}


class RandomContrast(_RandomLayer):
    """Scales each image's contrast by a random factor during training, as Keras's:
    y = (x - mean) * c + mean per image and channel (mean over height and width), clipped to
    `value_range`.

    factor: a number f or a pair (lower, upper) in [0, 1]; c is uniform in
    [1 - lower, 1 + upper]. As in Keras 3, a single number f gives (lower, upper) = (0, f), so
    c in [1, 1 + f] (Keras's docstring says [1 - f, 1 + f]; its code, and lamina, do this).
    At inference the input is returned unchanged (its dtype too), as Keras does."""

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.factor = _base_factor("RandomContrast", factor, (0, 1))
        if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
            raise ValueError(f"RandomContrast: `value_range` must be a pair (min, max), received "
                             f"value_range={value_range!r}")
        lo, hi = (_number("RandomContrast", "value_range", v) for v in value_range)
        if not lo < hi:
            raise ValueError(f"RandomContrast: `value_range` must be (min, max) with min < max, received "
                             f"value_range={value_range!r}")
        self.value_range = tuple(value_range)

    _identity_at_inference = True

    def _draw(self, x, generator):
        return self._uniform((x.shape[0], 1, 1, 1), 1.0 - self.factor[0], 1.0 + self.factor[1], generator)

    def _transform(self, x, c):
        mean = ops.mean(ops.mean(x, axis=1, keepdims=True), axis=2, keepdims=True)
        y = ops.add(ops.multiply(ops.subtract(x, mean), c), mean)
        return ops.clip(y, float(self.value_range[0]), float(self.value_range[1]))

    def get_config(self):
        config = {**super().get_config(), "factor": self.factor, "value_range": self.value_range}
        return config
