"""Augmentation layers that mix images or compose other augmentations, as Keras 3's: MixUp,
CutMix (which also mix the labels), RandAugment and AugMix.

MixUp and CutMix take an image batch, or Keras's dict {"images": ..., "labels": ...,
"segmentation_masks": ..., "bounding_boxes": ...} (labels one-hot or soft, (batch, classes);
layers/preprocessing_boxes.py), and return the same structure: MixUp appends each partner's
boxes to an image's, CutMix refuses boxes (as Keras's). RandAugment moves boxes and masks
through its chosen geometric steps; AugMix blends the masks through its chains and leaves the
boxes, as Keras's. RandAugment and AugMix draw from their own generator and apply the
sub-layers' transforms (`_draw` / `_transform`, layers/preprocessing_image.py) to a float NHWC
batch; the choice of sub-layers is drawn from the layer's seeded generator (Keras's AugMix uses
Python's unseeded `random.choice`, so lamina's is reproducible where Keras's is not).

Beta and Dirichlet weights come from Gamma draws: Marsaglia and Tsang's method for
Gamma(alpha + 1), vectorised over 16 candidate pairs per sample (the first accepted one is used;
each is accepted with probability above 0.95, so all 16 are rejected with probability below
1e-20, in which case the method's centre d is used), times U ** (1 / alpha), in log space:
Beta(a, b) = sigmoid(log X - log Y), Dirichlet = softmax of the log draws. So a tiny alpha
(CutMix's alpha near 1e-6) gives weights of 0 or 1 rather than NaN.
"""
import numpy as np

from .. import ops
from ..backend import dtypes
from ..backend.device import device as device_scope
from .preprocessing_boxes import clip_boxes, transform_box_dict
from .preprocessing_color import (AutoContrast, Equalization, RandomBrightness, RandomColorDegeneration,
                                  RandomPosterization, Solarization, channels, value_range_arg)
from .preprocessing_image import (_AFFINE_INTERPOLATIONS, RandomContrast, RandomRotation, RandomTranslation,
                                  _RandomLayer, _base_factor, _choice, _float, _from_nhwc, _number, _to_nhwc)
from .preprocessing_spatial import RandomSharpness, RandomShear, _box_mask, random_box

_CANDIDATES = 16


def log_gamma(shape, alpha, generator):
    """log of Gamma(alpha, 1) draws of `shape` (alpha: a number or a tensor broadcastable to shape)."""
    a = ops.add(ops.convert_to_tensor(alpha, dtype=dtypes.FLOAT32), 1.0)
    d = ops.subtract(a, 1.0 / 3.0)
    c = ops.divide(1.0, ops.sqrt(ops.multiply(d, 9.0)))
    draws = (_CANDIDATES,) + tuple(shape)
    z = ops.normal(draws, seed=generator)
    u = ops.uniform(draws, 1e-30, 1.0, seed=generator)
    t = ops.add(ops.multiply(c, z), 1.0)
    v = ops.multiply(ops.multiply(t, t), t)
    positive = ops.greater(v, 0.0)
    log_v = ops.log(ops.where(positive, v, 1.0))
    bound = ops.add(ops.multiply(ops.square(z), 0.5), ops.multiply(d, ops.add(ops.subtract(1.0, v), log_v)))
    accept = ops.logical_and(positive, ops.less(ops.log(u), bound))
    first = ops.expand_dims(ops.argmax(accept, axis=0), 0)
    chosen = ops.squeeze(ops.take_along_axis(ops.where(positive, v, 1.0), first, axis=0), 0)
    chosen = ops.where(ops.any(accept, axis=0), chosen, 1.0)
    boost = ops.divide(ops.log(ops.uniform(tuple(shape), 1e-30, 1.0, seed=generator)), alpha)
    return ops.add(ops.log(ops.multiply(d, chosen)), boost)


def beta(shape, alpha, beta_, generator):
    """Beta(alpha, beta_) draws of `shape`."""
    return ops.sigmoid(ops.subtract(log_gamma(shape, alpha, generator), log_gamma(shape, beta_, generator)))


def dirichlet(n, alpha, generator):
    """One Dirichlet(alpha, ..., alpha) draw of n weights."""
    return ops.softmax(log_gamma((n,), alpha, generator))


def _positive(who, name, value):
    v = _number(who, name, value)
    if v <= 0:
        raise ValueError(f"{who}: `{name}` must be a positive number, received {name}={value!r}")
    return value


class _MixLayer(_RandomLayer):
    """MixUp / CutMix: an image batch, or a dict; `_draw` gives the parameters, `_transform`
    applies them to images and masks, `_mix_labels` to the labels."""

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.input_spec = None   # a dict's entries have different ranks: checked in call

    def _call_dict(self, data, training):
        if getattr(data["images"], "ndim", None) == 3:    # one image: nothing to mix with
            training = False
        return super()._call_dict(data, training)

    def _dict_params(self, x, training):
        return self._draw(x, self.generator) if training and x.shape[0] else None

    def _dict_images(self, images, x, single, params, training):
        if params is None and not training and self._identity_at_inference:
            return images
        x = _float(x)
        return _from_nhwc(self, x if params is None else self._transform(x, params), single)

    def _transform_masks(self, masks, params):
        return self._transform(masks, params)

    def _transform_labels(self, labels, params):
        return self._mix_labels(labels, params)

    def _mix_labels(self, labels, params):
        weight, perm = params[0], params[1]
        y = _float(labels if hasattr(labels, "shape") and hasattr(labels, "dtype") else ops.convert_to_tensor(labels))
        if y.ndim == 0 or y.shape[0] != perm.shape[0]:
            raise ValueError(f"{type(self).__name__} '{self.name}': labels must have the batch size "
                             f"{perm.shape[0]} of the images on their first axis, received labels of shape {y.shape}")
        w = ops.reshape(weight, (y.shape[0],) + (1,) * (y.ndim - 1))
        return ops.add(ops.multiply(w, y), ops.multiply(ops.subtract(1.0, w), ops.take(y, perm, axis=0)))

    def compute_output_shape(self, input_shape):
        return input_shape


class MixUp(_MixLayer):
    """MixUp (Zhang et al. 2017), as Keras's: each image (and its label) is blended with those
    of another image of the batch (a random permutation), with weight w ~ Beta(alpha, alpha) per
    image: w * x + (1 - w) * x[perm]. At inference the input is returned unchanged."""

    _identity_at_inference = True

    def __init__(self, alpha=0.2, data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.alpha = _positive("MixUp", "alpha", alpha)

    def _draw(self, x, generator):
        b = x.shape[0]
        perm = ops.shuffle(ops.arange(b), seed=generator)
        return beta((b,), float(self.alpha), float(self.alpha), generator), perm

    def _transform(self, x, params):
        weight, perm = params
        w = ops.reshape(weight, (x.shape[0], 1, 1, 1))
        return ops.add(ops.multiply(w, x), ops.multiply(ops.subtract(1.0, w), ops.take(x, perm, axis=0)))

    def _dict_boxes(self, bounding_boxes, single, params, size):
        """Keras's MixUp boxes: each image keeps its boxes and gets those of the image it is mixed
        with after them ((batch, 2N, 4) boxes, (batch, 2N) labels). Keras 3.15 joins the labels
        along the batch axis instead ((2 batch, N), no longer one label per box); lamina joins
        them along the boxes, like the boxes."""
        out = transform_box_dict(self, bounding_boxes, single, None, size)
        if params is not None:
            perm = params[1]
            for key in ("boxes", "labels"):
                out[key] = ops.concatenate([out[key], ops.take(out[key], perm, axis=0)], axis=1)
        return out

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class CutMix(_MixLayer):
    """CutMix (Yun et al. 2019), as Keras's: a random box of each image is replaced by the same
    box of another image of the batch (a random permutation); labels are mixed by the share of
    the image left, 1 - box area / image area. The box's side ratio is sqrt(1 - w), w ~ Beta(a, a)
    per image with a = uniform(factor) + 1e-6 once per call (a number f in [0, 1] gives [0, f]).
    Outputs are float32; one image (rank 3) and inference leave the images unchanged."""

    def __init__(self, factor=1.0, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _base_factor("CutMix", factor, (0, 1))

    _boxes_unsupported = ("bounding boxes cannot be cut and mixed (Keras's CutMix raises NotImplementedError for "
                          "them)")

    def call(self, inputs, training=True):
        if not isinstance(inputs, dict) and getattr(inputs, "ndim", None) == 3:   # Keras: no mixing of one image
            training = False
        return super().call(inputs, training=training)

    def _draw(self, x, generator):
        b, h, w = x.shape[0], x.shape[1], x.shape[2]
        a = ops.add(self._uniform((), *self.factor, generator), 1e-6)
        ratio = ops.sqrt(ops.subtract(1.0, beta((b,), a, a, generator)))
        x0, x1, y0, y1 = random_box(self, x, ratio, ratio, generator)
        weight = ops.subtract(1.0, ops.divide(ops.multiply(ops.subtract(x1, x0), ops.subtract(y1, y0)), float(w * h)))
        perm = ops.shuffle(ops.arange(b), seed=generator)
        return weight, perm, _box_mask(x, x0, x1, y0, y1)

    def _transform(self, x, params):
        _, perm, mask = params
        return ops.where(mask, ops.take(x, perm, axis=0), x)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def _augmenters(layer, names, value_range, interpolation):
    """Keras's sub-layers of RandAugment / AugMix, as attributes named like Keras's."""
    f = layer.factor
    seed = layer.seed
    make = {
        "random_shear": lambda: RandomShear(x_factor=f, y_factor=f, interpolation=interpolation, seed=seed),
        "random_translation": lambda: RandomTranslation(height_factor=f, width_factor=f, interpolation=interpolation,
                                                        seed=seed),
        "random_rotation": lambda: RandomRotation(factor=f, interpolation=interpolation, seed=seed),
        "random_brightness": lambda: RandomBrightness(factor=f, value_range=value_range, seed=seed),
        "random_color_degeneration": lambda: RandomColorDegeneration(factor=f, value_range=value_range, seed=seed),
        "random_contrast": lambda: RandomContrast(factor=f, value_range=value_range, seed=seed),
        "random_sharpness": lambda: RandomSharpness(factor=f, value_range=value_range, seed=seed),
        "random_posterization": lambda: RandomPosterization(factor=max(1, int(8 * f[1])), value_range=value_range,
                                                            seed=seed),
        "solarization": lambda: Solarization(addition_factor=f, threshold_factor=f, value_range=value_range,
                                             seed=seed),
        "auto_contrast": lambda: AutoContrast(value_range=value_range),
        "equalization": lambda: Equalization(value_range=value_range),
    }
    for name in names:
        setattr(layer, name, make[name]())
    return [getattr(layer, n) for n in names]


def _count(who, name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{who}: `{name}` must be an integer >= {minimum}, received {name}={value!r}")
    return int(value)


class RandAugment(_RandomLayer):
    """RandAugment (Cubuk et al. 2019), as Keras's: `num_ops` times, one of 11 augmentations
    (shear, translation, rotation, brightness, color degeneration, contrast, sharpness,
    posterization, solarization, auto contrast, equalization), chosen uniformly for the whole
    batch, is applied with magnitudes drawn from `factor` (a number f in [0, 1] gives [0, f];
    posterization keeps max(1, int(8 * factor[1])) bits). Each augmentation's parameters are
    drawn once per call, as Keras does (an augmentation chosen twice repeats them). Outputs are
    float32; at inference the input, cast."""

    _AUGMENT_LAYERS = ["random_shear", "random_translation", "random_rotation", "random_brightness",
                       "random_color_degeneration", "random_contrast", "random_sharpness", "random_posterization",
                       "solarization", "auto_contrast", "equalization"]

    def __init__(self, value_range=(0, 255), num_ops=2, factor=0.5, interpolation="bilinear", seed=None,
                 data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        who = "RandAugment"
        self.value_range = value_range_arg(who, value_range, sort=False)
        self.num_ops = _count(who, "num_ops", num_ops, 0)
        self.factor = _base_factor(who, factor, (0, 1))
        self.interpolation = _choice(who, "interpolation", interpolation, _AFFINE_INTERPOLATIONS)
        self._augment_layers = _augmenters(self, self._AUGMENT_LAYERS, self.value_range, self.interpolation)

    def _augment(self, x, training):
        channels(self, x, (1, 3))     # colour degeneration needs RGB (or grayscale) images
        return super()._augment(x, training)

    def _draw(self, x, generator):
        if self.num_ops == 0:
            return []
        picks = ops.randint((self.num_ops,), 0, len(self._augment_layers), seed=generator).numpy()
        params = {}
        for i in dict.fromkeys(int(p) for p in picks):   # each chosen augmentation draws once
            layer = self._augment_layers[i]
            params[i] = layer._draw(x, generator)
        return [(int(i), params[int(i)]) for i in picks]

    def _transform(self, x, steps):
        for i, params in steps:
            x = self._augment_layers[i]._transform(x, params)
        return x

    # dict inputs: the chosen augmentations' geometry moves the boxes and masks, one after the
    # other, as it moves the images (Keras 3.15 moves the original boxes by each chosen
    # augmentation separately and keeps the last one's: not the images' composition)
    def _dict_params(self, x, training):
        if not training or x.shape[0] == 0:
            return None
        channels(self, x, (1, 3))
        return self._draw(x, self.generator)

    def _dict_images(self, images, x, single, params, training):
        x = _float(x)
        return _from_nhwc(self, x if params is None else self._transform(x, params), single)

    def _transform_masks(self, masks, steps):
        for i, params in steps:
            masks = self._augment_layers[i]._transform_masks(masks, params)
        return masks

    def _dict_boxes(self, bounding_boxes, single, params, size):
        return transform_box_dict(self, bounding_boxes, single, params, size)

    def _transform_boxes(self, boxes, steps, size):
        for i, params in steps:
            layer = self._augment_layers[i]
            if layer._geometric:
                boxes, size = layer._transform_boxes(boxes, params, size)
                boxes, _ = clip_boxes(boxes, ops.zeros(boxes.shape[:-1]), *size)   # each one clips, as Keras's
        return boxes, size

    def get_config(self):
        return {**super().get_config(), "value_range": self.value_range, "num_ops": self.num_ops,
                "factor": self.factor, "interpolation": self.interpolation}


class AugMix(_RandomLayer):
    """AugMix (Hendrycks et al. 2019), as Keras's: `num_chains` chains of up to `chain_depth`
    augmentations (each step picks one of the augmentations or none, uniformly), their results
    averaged with Dirichlet(alpha) weights, and that blended with the image by m ~ Beta(alpha,
    alpha): y = clip(m * x + (1 - m) * sum_i w_i chain_i(x), value_range). The weights are drawn
    once per call (shared by the batch), as in Keras. `all_ops=False` leaves out brightness,
    color degeneration, contrast and sharpness (which overlap common test-set corruptions).
    Outputs are float32; at inference the input, cast."""

    _ALL = ["random_shear", "random_translation", "random_rotation", "random_posterization", "solarization",
            "auto_contrast", "equalization", "random_brightness", "random_color_degeneration", "random_contrast",
            "random_sharpness"]
    _SOME = _ALL[:7]

    def __init__(self, value_range=(0, 255), num_chains=3, chain_depth=3, factor=0.3, alpha=1.0, all_ops=True,
                 interpolation="bilinear", seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        who = "AugMix"
        self.value_range = value_range_arg(who, value_range, sort=False)
        self.num_chains = _count(who, "num_chains", num_chains, 1)
        self.chain_depth = _count(who, "chain_depth", chain_depth, 1)
        self.factor = _base_factor(who, factor, (0, 1))
        self.alpha = _positive(who, "alpha", alpha)
        self.all_ops = bool(all_ops)
        self.interpolation = _choice(who, "interpolation", interpolation, _AFFINE_INTERPOLATIONS)
        names = self._ALL if self.all_ops else self._SOME
        self._augment_layers = _augmenters(self, names, self.value_range, self.interpolation)

    def _augment(self, x, training):
        if self.all_ops:
            channels(self, x, (1, 3))     # colour degeneration needs RGB (or grayscale) images
        return super()._augment(x, training)

    def _draw(self, x, generator):
        alpha = float(self.alpha)
        weights = dirichlet(self.num_chains, alpha, generator)
        mix = beta((), alpha, alpha, generator)
        n = len(self._augment_layers)
        picks = ops.randint((self.num_chains, self.chain_depth), 0, n + 1, seed=generator).numpy()
        chains = [[(int(i), self._augment_layers[int(i)]._draw(x, generator)) for i in row if i < n] for row in picks]
        return weights, mix, chains

    def _transform(self, x, params, masks=False):
        weights, mix, chains = params
        mixed = None
        for c, chain in enumerate(chains):
            y = x
            for i, p in chain:
                layer = self._augment_layers[i]
                y = layer._transform_masks(y, p) if masks else layer._transform(y, p)
            y = ops.multiply(y, weights[c])
            mixed = y if mixed is None else ops.add(mixed, y)
        out = ops.add(ops.multiply(mix, x), ops.multiply(ops.subtract(1.0, mix), mixed))
        return out if masks else ops.clip(out, float(self.value_range[0]), float(self.value_range[1]))

    # dict inputs, as Keras's: the masks go through the chains' geometry (nearest) and are
    # blended with the same weights; the boxes and labels pass unchanged
    def _dict_params(self, x, training):
        if not training or x.shape[0] == 0:
            return None
        if self.all_ops:
            channels(self, x, (1, 3))
        return self._draw(x, self.generator)

    def _dict_images(self, images, x, single, params, training):
        x = _float(x)
        return _from_nhwc(self, x if params is None else self._transform(x, params), single)

    def _transform_masks(self, masks, params):
        return self._transform(masks, params, masks=True)

    def _dict_boxes(self, bounding_boxes, single, params, size):
        return transform_box_dict(self, bounding_boxes, single, None, size)

    def get_config(self):
        return {**super().get_config(), "value_range": self.value_range, "num_chains": self.num_chains,
                "chain_depth": self.chain_depth, "factor": self.factor, "alpha": self.alpha,
                "all_ops": self.all_ops, "interpolation": self.interpolation}
