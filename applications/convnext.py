"""ConvNeXtTiny, Small, Base, Large and XLarge (Liu et al., "A ConvNet for the 2020s", 2022), layer
for layer as `keras/src/applications/convnext.py`: the same layers (the stem and downsampling
blocks as nested Sequential models), ops, names and order, so Keras's ImageNet weight files
(`convnext_tiny[_notop].h5`, ...) load into them. Channels-last; inputs 224x224 by default, at
least 32x32.

With `include_preprocessing` (the default) the model takes pixels in 0..255 and normalizes them
with the ImageNet mean and variance (a Normalization layer with fixed statistics), so
`preprocess_input` returns its input unchanged.

This module defines Keras's two layers of this module, `StochasticDepth` and `LayerScale`,
registered as "lamina>StochasticDepth" and "lamina>LayerScale": lamina's saved ConvNeXt models
load back into lamina (not into Keras, which does not know these lamina names), and Keras's
weight files and whole-model files load into lamina. The blocks' 7x7 depthwise convolutions are
Keras's `Conv2D(groups=channels)`."""
import numpy as np

from .. import initializers, layers, ops
from .. import random as _random
from ..layers.layer import Layer
from ..models.saving import register
from . import imagenet_utils

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/convnext/"
# (top, notop) sha256s of the release files, as Keras's WEIGHTS_HASHES
WEIGHTS_HASHES = {
    "convnext_tiny": ("8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff",
                      "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
    "convnext_small": ("ce1277d8f1ee5a0ef0e171469089c18f5233860ceaf9b168049cb9263fd7483c",
                       "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab"),
    "convnext_base": ("52cbb006d3dadd03f6e095a8ca1aca47aecdd75acb4bc74bce1f5c695d0086e6",
                      "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45"),
    "convnext_large": ("070c5ed9ed289581e477741d3b34beffa920db8cf590899d6d2c67fba2a198a6",
                       "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd"),
    "convnext_xlarge": ("c1f5ccab661354fc3a79a10fa99af82f0fbf10ec65cb894a3ae0815f17a889ee",
                        "de3f8a54174130e0cecdc71583354753d557fcf1f4487331558e2a16ba0cfe05"),
}
imagenet_utils.KNOWN_HASHES.update({f"{v}{suffix}": h for v, hashes in WEIGHTS_HASHES.items()
                                    for suffix, h in zip((".h5", "_notop.h5"), hashes)})
MODEL_CONFIGS = {
    "tiny": {"depths": [3, 3, 9, 3], "projection_dims": [96, 192, 384, 768], "default_size": 224},
    "small": {"depths": [3, 3, 27, 3], "projection_dims": [96, 192, 384, 768], "default_size": 224},
    "base": {"depths": [3, 3, 27, 3], "projection_dims": [128, 256, 512, 1024], "default_size": 224},
    "large": {"depths": [3, 3, 27, 3], "projection_dims": [192, 384, 768, 1536], "default_size": 224},
    "xlarge": {"depths": [3, 3, 27, 3], "projection_dims": [256, 512, 1024, 2048], "default_size": 224},
}


class StochasticDepth(Layer):
    """In training, drops whole samples with probability `drop_path_rate` (the others are scaled
    by 1 / (1 - drop_path_rate)); the identity in inference. For residual branches."""

    def __init__(self, drop_path_rate, **kwargs):
        super().__init__(**kwargs)
        self.drop_path_rate = drop_path_rate

    def call(self, x, training=None):
        if training:
            keep_prob = 1 - self.drop_path_rate
            shape = (x.shape[0],) + (1,) * (x.ndim - 1)
            random_tensor = ops.floor(ops.add(keep_prob, _random.uniform(shape, 0, 1)))
            return ops.multiply(ops.divide(x, keep_prob), random_tensor)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "drop_path_rate": self.drop_path_rate}


class LayerScale(Layer):
    """x * gamma, a trainable per-channel scale of `projection_dim` values starting at
    `init_values`. The weight has no name of its own: as Keras's, it is auto-named "variable",
    "variable_1", ... (counted with the layer names, until clear_session)."""

    def __init__(self, init_values, projection_dim, **kwargs):
        super().__init__(**kwargs)
        self.init_values = init_values
        self.projection_dim = projection_dim

    def build(self, _):
        self.gamma = self.add_weight(shape=(self.projection_dim,),
                                     initializer=initializers.Constant(self.init_values), trainable=True)

    def call(self, x):
        return ops.multiply(x, self.gamma)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "init_values": self.init_values, "projection_dim": self.projection_dim}


register(StochasticDepth)
register(LayerScale)


def ConvNeXtBlock(projection_dim, drop_path_rate=0.0, layer_scale_init_value=1e-6, name=None):
    """A function of a tensor: depthwise 7x7 convolution, LayerNormalization, Dense to 4x the
    channels, GELU, Dense back, LayerScale (unless `layer_scale_init_value` is None), stochastic
    depth (an identity Activation when `drop_path_rate` is 0), added to the input."""
    name = name or "prestem"

    def apply(inputs):
        x = layers.Conv2D(filters=projection_dim, kernel_size=7, padding="same", groups=projection_dim,
                   name=f"{name}_depthwise_conv")(inputs)
        x = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_layernorm")(x)
        x = layers.Dense(4 * projection_dim, name=f"{name}_pointwise_conv_1")(x)
        x = layers.Activation("gelu", name=f"{name}_gelu")(x)
        x = layers.Dense(projection_dim, name=f"{name}_pointwise_conv_2")(x)
        if layer_scale_init_value is not None:
            x = LayerScale(layer_scale_init_value, projection_dim, name=f"{name}_layer_scale")(x)
        if drop_path_rate:
            layer = StochasticDepth(drop_path_rate, name=f"{name}_stochastic_depth")
        else:
            layer = layers.Activation("linear", name=f"{name}_identity")
        return ops.add(inputs, layer(x))
    return apply


def PreStem(name=None):
    """A function of a tensor: pixels in 0..255 normalized by the ImageNet mean and variance."""
    name = name or "prestem"

    def apply(x):
        return layers.Normalization(mean=[0.485 * 255, 0.456 * 255, 0.406 * 255],
                                    variance=[(0.229 * 255) ** 2, (0.224 * 255) ** 2, (0.225 * 255) ** 2],
                                    name=f"{name}_prestem_normalization")(x)
    return apply


def Head(num_classes=1000, classifier_activation=None, name=None):
    """A function of a tensor: global average pooling, LayerNormalization, the Dense classifier."""
    name = name or "head"

    def apply(x):
        x = layers.GlobalAveragePooling2D(name=f"{name}_head_gap")(x)
        x = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_head_layernorm")(x)
        return layers.Dense(num_classes, activation=classifier_activation, name=f"{name}_head_dense")(x)
    return apply


def ConvNeXt(depths, projection_dims, drop_path_rate=0.0, layer_scale_init_value=1e-6, default_size=224,
             name="convnext", include_preprocessing=True, include_top=True, weights=None, input_tensor=None,
             input_shape=None, pooling=None, classes=1000, classifier_activation="softmax", weights_name=None):
    """A ConvNeXt of four stages of `depths` blocks with `projection_dims` channels; the
    stochastic depth rate grows linearly over the blocks from 0 to `drop_path_rate`. ImageNet
    weights are those of `weights_name` ("convnext_tiny", ...), for its depths and channels.
    Without top, the features (pooled when `pooling`) end with a LayerNormalization."""
    from ..models.model import Functional
    from ..models.sequential import Sequential
    imagenet_utils.check_weights_arg(weights, include_top, classes)
    imagenet_utils.check_pooling(pooling)
    depths, projection_dims = list(depths), list(projection_dims)
    if weights == "imagenet":
        if weights_name not in WEIGHTS_HASHES:
            raise ValueError(f"ConvNeXt: there are ImageNet weights for weights_name in {list(WEIGHTS_HASHES)} only; "
                             f"received weights_name={weights_name!r} with weights='imagenet'")
        expected = MODEL_CONFIGS[weights_name.split("convnext_")[-1]]
        if depths != expected["depths"] or projection_dims != expected["projection_dims"]:
            raise ValueError(f"Architecture configuration does not match {weights_name} variant. When using "
                             "pre-trained weights, the model architecture must match the pre-trained configuration "
                             f"exactly. Expected depths: {expected['depths']}, got: {depths}. Expected "
                             f"projection_dims: {expected['projection_dims']}, got: {projection_dims}.")
    input_shape = imagenet_utils.obtain_input_shape(input_shape, default_size=default_size, min_size=32,
                                                    require_flatten=include_top, weights=weights)
    img_input = imagenet_utils.input_layer(input_tensor, input_shape)
    if input_tensor is not None:
        sources = imagenet_utils.get_source_inputs(input_tensor)
        inputs = sources[0] if isinstance(sources, list) else sources
    else:
        inputs = img_input
    x = img_input

    if include_preprocessing and input_shape[2] == 3:
        x = PreStem(name=name)(x)
    stem = Sequential([layers.Conv2D(projection_dims[0], kernel_size=4, strides=4, name=f"{name}_stem_conv"),
                       layers.LayerNormalization(epsilon=1e-6, name=f"{name}_stem_layernorm")],
                      name=f"{name}_stem")
    downsample_layers = [stem]
    for i in range(3):
        downsample_layers.append(Sequential(
            [layers.LayerNormalization(epsilon=1e-6, name=f"{name}_downsampling_layernorm_{i}"),
             layers.Conv2D(projection_dims[i + 1], kernel_size=2, strides=2, name=f"{name}_downsampling_conv_{i}")],
            name=f"{name}_downsampling_block_{i}"))
    depth_drop_rates = [float(r) for r in np.linspace(0.0, drop_path_rate, sum(depths))]
    cur = 0
    for i in range(4):
        x = downsample_layers[i](x)
        for j in range(depths[i]):
            x = ConvNeXtBlock(projection_dim=projection_dims[i], drop_path_rate=depth_drop_rates[cur + j],
                              layer_scale_init_value=layer_scale_init_value, name=f"{name}_stage_{i}_block_{j}")(x)
        cur += depths[i]

    if include_top:
        imagenet_utils.validate_activation(classifier_activation, weights)
        x = Head(num_classes=classes, classifier_activation=classifier_activation, name=name)(x)
    else:
        if pooling == "avg":
            x = layers.GlobalAveragePooling2D()(x)
        elif pooling == "max":
            x = layers.GlobalMaxPooling2D()(x)
        x = layers.LayerNormalization(epsilon=1e-6)(x)

    model = Functional(inputs, x, name=name)
    if weights == "imagenet":
        fname = f"{weights_name}{'.h5' if include_top else '_notop.h5'}"
        return imagenet_utils.load_model_weights(model, weights, fname, BASE_WEIGHTS_PATH + fname)
    return imagenet_utils.load_model_weights(model, weights, None, None)


def _variant(size, include_top, include_preprocessing, weights, input_tensor, input_shape, pooling, classes,
             classifier_activation, name):
    config = MODEL_CONFIGS[size]
    return ConvNeXt(weights_name=f"convnext_{size}", depths=config["depths"],
                    projection_dims=config["projection_dims"], drop_path_rate=0.0, layer_scale_init_value=1e-6,
                    default_size=config["default_size"], name=name, include_top=include_top,
                    include_preprocessing=include_preprocessing, weights=weights, input_tensor=input_tensor,
                    input_shape=input_shape, pooling=pooling, classes=classes,
                    classifier_activation=classifier_activation)


def ConvNeXtTiny(include_top=True, include_preprocessing=True, weights="imagenet", input_tensor=None,
                 input_shape=None, pooling=None, classes=1000, classifier_activation="softmax", name="convnext_tiny"):
    """The ConvNeXtTiny model (stages of 3, 3, 9, 3 blocks, 96 to 768 channels), optionally with
    ImageNet weights (see Keras's documentation).

    include_top: the 1000-way classifier on top; include_preprocessing: the model takes pixels in
    0..255 (else already normalized inputs); weights: "imagenet", None (random) or a path;
    input_tensor: a symbolic tensor to build on (the model's inputs are then its source input);
    input_shape: (h, w, 3), at least 32x32, when include_top is False; pooling: None, "avg" or
    "max" for the output without top; classes and classifier_activation: the top's."""
    return _variant("tiny", include_top, include_preprocessing, weights, input_tensor, input_shape, pooling, classes,
                    classifier_activation, name)


def ConvNeXtSmall(include_top=True, include_preprocessing=True, weights="imagenet", input_tensor=None,
                  input_shape=None, pooling=None, classes=1000, classifier_activation="softmax",
                  name="convnext_small"):
    """The ConvNeXtSmall model (stages of 3, 3, 27, 3 blocks, 96 to 768 channels); arguments as for
    ConvNeXtTiny."""
    return _variant("small", include_top, include_preprocessing, weights, input_tensor, input_shape, pooling, classes,
                    classifier_activation, name)


def ConvNeXtBase(include_top=True, include_preprocessing=True, weights="imagenet", input_tensor=None,
                 input_shape=None, pooling=None, classes=1000, classifier_activation="softmax", name="convnext_base"):
    """The ConvNeXtBase model (stages of 3, 3, 27, 3 blocks, 128 to 1024 channels); arguments as
    for ConvNeXtTiny."""
    return _variant("base", include_top, include_preprocessing, weights, input_tensor, input_shape, pooling, classes,
                    classifier_activation, name)


def ConvNeXtLarge(include_top=True, include_preprocessing=True, weights="imagenet", input_tensor=None,
                  input_shape=None, pooling=None, classes=1000, classifier_activation="softmax",
                  name="convnext_large"):
    """The ConvNeXtLarge model (stages of 3, 3, 27, 3 blocks, 192 to 1536 channels); arguments as
    for ConvNeXtTiny."""
    return _variant("large", include_top, include_preprocessing, weights, input_tensor, input_shape, pooling, classes,
                    classifier_activation, name)


def ConvNeXtXLarge(include_top=True, include_preprocessing=True, weights="imagenet", input_tensor=None,
                   input_shape=None, pooling=None, classes=1000, classifier_activation="softmax",
                   name="convnext_xlarge"):
    """The ConvNeXtXLarge model (stages of 3, 3, 27, 3 blocks, 256 to 2048 channels); arguments as
    for ConvNeXtTiny."""
    return _variant("xlarge", include_top, include_preprocessing, weights, input_tensor, input_shape, pooling,
                    classes, classifier_activation, name)


def preprocess_input(x, data_format=None):
    """Returns `x` unchanged: the models normalize their 0..255 inputs themselves (Keras keeps this
    pass-through for compatibility)."""
    return x


def decode_predictions(preds, top=5):
    return imagenet_utils.decode_predictions(preds, top=top)


decode_predictions.__doc__ = imagenet_utils.decode_predictions.__doc__
