"""EfficientNetV2B0 to B3, S, M and L (Tan and Le, "EfficientNetV2: Smaller Models and Faster
Training", 2021), layer for layer as `keras/src/applications/efficientnet_v2.py`: the same layers,
names and order, so Keras's ImageNet weight files (`efficientnetv2-b0[_notop].h5`, ...) load into
them. Channels-last; inputs of 224 (B0) to 480 (M, L) pixels by default, at least 32x32.

With `include_preprocessing` (the default) the model takes pixels in 0..255: the B variants
rescale them to [0, 1] and normalize them with the ImageNet mean and variance (fixed, not
weights), S, M and L rescale them to [-1, 1); without it the model expects inputs in [-1, 1].
`preprocess_input` returns its input unchanged."""
import copy
import math

from .. import initializers, layers
from . import imagenet_utils

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/"
# (top, notop) md5s of the release files, as Keras's WEIGHTS_HASHES
WEIGHTS_HASHES = {
    "b0": ("21ecbf6da12460d5c40bb2f29ceb2188", "893217f2bb855e2983157299931e43ff"),
    "b1": ("069f0534ff22adf035c89e2d9547a9dc", "0e80663031ca32d657f9caa404b6ec37"),
    "b2": ("424e49f28180edbde1e94797771950a7", "1dfe2e7a5d45b6632553a8961ea609eb"),
    "b3": ("1f1fc43bd98a6e4fd8fdfd551e02c7a0", "f6abf7b5849ac99a89b50dd3fd532856"),
    "-s": ("e1d88a8495beba45748fedd0cecbe016", "af0682fb74e8c54910f2d4393339c070"),
    "-m": ("a3bf6aa3276309f4fc6a34aa114c95cd", "1b8dc055df72dde80d614482840fe342"),
    "-l": ("27e6d408b53c7ebc868fefa357689935", "b0b66b5c863aef5b46e8608fe1711615"),
}
imagenet_utils.KNOWN_HASHES.update({f"efficientnetv2-{v.lstrip('-')}{suffix}": h
                                    for v, hashes in WEIGHTS_HASHES.items()
                                    for suffix, h in zip((".h5", "_notop.h5"), hashes)})


def _stage(conv_type, num_repeat, input_filters, output_filters, expand_ratio, se_ratio, strides):
    return {"kernel_size": 3, "num_repeat": num_repeat, "input_filters": input_filters,
            "output_filters": output_filters, "expand_ratio": expand_ratio, "se_ratio": se_ratio,
            "strides": strides, "conv_type": conv_type}


_B_STAGES = [_stage(1, 1, 32, 16, 1, 0, 1), _stage(1, 2, 16, 32, 4, 0, 2), _stage(1, 2, 32, 48, 4, 0, 2),
             _stage(0, 3, 48, 96, 4, 0.25, 2), _stage(0, 5, 96, 112, 6, 0.25, 1), _stage(0, 8, 112, 192, 6, 0.25, 2)]
# the stages of each variant; conv_type 1 is a FusedMBConv block, 0 an MBConv block
DEFAULT_BLOCKS_ARGS = {
    "efficientnetv2-s": [_stage(1, 2, 24, 24, 1, 0.0, 1), _stage(1, 4, 24, 48, 4, 0.0, 2),
                         _stage(1, 4, 48, 64, 4, 0, 2), _stage(0, 6, 64, 128, 4, 0.25, 2),
                         _stage(0, 9, 128, 160, 6, 0.25, 1), _stage(0, 15, 160, 256, 6, 0.25, 2)],
    "efficientnetv2-m": [_stage(1, 3, 24, 24, 1, 0, 1), _stage(1, 5, 24, 48, 4, 0, 2), _stage(1, 5, 48, 80, 4, 0, 2),
                         _stage(0, 7, 80, 160, 4, 0.25, 2), _stage(0, 14, 160, 176, 6, 0.25, 1),
                         _stage(0, 18, 176, 304, 6, 0.25, 2), _stage(0, 5, 304, 512, 6, 0.25, 1)],
    "efficientnetv2-l": [_stage(1, 4, 32, 32, 1, 0, 1), _stage(1, 7, 32, 64, 4, 0, 2), _stage(1, 7, 64, 96, 4, 0, 2),
                         _stage(0, 10, 96, 192, 4, 0.25, 2), _stage(0, 19, 192, 224, 6, 0.25, 1),
                         _stage(0, 25, 224, 384, 6, 0.25, 2), _stage(0, 7, 384, 640, 6, 0.25, 1)],
    "efficientnetv2-b0": _B_STAGES, "efficientnetv2-b1": _B_STAGES, "efficientnetv2-b2": _B_STAGES,
    "efficientnetv2-b3": _B_STAGES,
}
CONV_KERNEL_INITIALIZER = {"class_name": "VarianceScaling",
                           "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}}
DENSE_KERNEL_INITIALIZER = {"class_name": "VarianceScaling",
                            "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"}}


def round_filters(filters, width_coefficient, min_depth, depth_divisor):
    """`filters * width_coefficient` to the nearest multiple of `depth_divisor`, at least
    `min_depth` (or `depth_divisor`)."""
    filters *= width_coefficient
    minimum_depth = min_depth or depth_divisor
    return int(max(minimum_depth, int(filters + depth_divisor / 2) // depth_divisor * depth_divisor))


def round_repeats(repeats, depth_coefficient):
    return int(math.ceil(depth_coefficient * repeats))


def _squeeze_excite(x, input_filters, filters, se_ratio, activation, name):
    filters_se = max(1, int(input_filters * se_ratio))
    se = layers.GlobalAveragePooling2D(name=f"{name}se_squeeze")(x)
    se = layers.Reshape((1, 1, filters), name=f"{name}se_reshape")(se)
    se = layers.Conv2D(filters_se, 1, padding="same", activation=activation,
                       kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}se_reduce")(se)
    se = layers.Conv2D(filters, 1, padding="same", activation="sigmoid", kernel_initializer=CONV_KERNEL_INITIALIZER,
                       name=f"{name}se_expand")(se)
    return layers.multiply([x, se], name=f"{name}se_excite")


def _residual(x, inputs, strides, input_filters, output_filters, survival_probability, name):
    """The input added back (after a per-sample dropout at rate `survival_probability`, Keras's
    name for it) when the shapes allow."""
    if strides == 1 and input_filters == output_filters:
        if survival_probability:
            x = layers.Dropout(survival_probability, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = layers.add([x, inputs], name=f"{name}add")
    return x


def MBConvBlock(input_filters, output_filters, expand_ratio=1, kernel_size=3, strides=1, se_ratio=0.0,
                bn_momentum=0.9, activation="swish", survival_probability=0.8, name=None):
    """A function of a tensor: 1x1 expansion (when `expand_ratio` != 1), depthwise kxk,
    squeeze-and-excitation (when 0 < se_ratio <= 1), linear 1x1 projection, residual."""
    name = name or "block0"

    def apply(inputs):
        filters = input_filters * expand_ratio
        if expand_ratio != 1:
            x = layers.Conv2D(filters, kernel_size=1, strides=1, kernel_initializer=CONV_KERNEL_INITIALIZER,
                              padding="same", data_format="channels_last", use_bias=False,
                              name=f"{name}expand_conv")(inputs)
            x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name=f"{name}expand_bn")(x)
            x = layers.Activation(activation, name=f"{name}expand_activation")(x)
        else:
            x = inputs
        x = layers.DepthwiseConv2D(kernel_size=kernel_size, strides=strides,
                                   depthwise_initializer=CONV_KERNEL_INITIALIZER, padding="same",
                                   data_format="channels_last", use_bias=False, name=f"{name}dwconv2")(x)
        x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name=f"{name}bn")(x)
        x = layers.Activation(activation, name=f"{name}activation")(x)
        if 0 < se_ratio <= 1:
            x = _squeeze_excite(x, input_filters, filters, se_ratio, activation, name)
        x = layers.Conv2D(output_filters, kernel_size=1, strides=1, kernel_initializer=CONV_KERNEL_INITIALIZER,
                          padding="same", data_format="channels_last", use_bias=False,
                          name=f"{name}project_conv")(x)
        x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name=f"{name}project_bn")(x)
        return _residual(x, inputs, strides, input_filters, output_filters, survival_probability, name)
    return apply


def FusedMBConvBlock(input_filters, output_filters, expand_ratio=1, kernel_size=3, strides=1, se_ratio=0.0,
                     bn_momentum=0.9, activation="swish", survival_probability=0.8, name=None):
    """A function of a tensor: a full kxk expansion convolution (strided) in place of MBConv's 1x1
    and depthwise pair, squeeze-and-excitation (when 0 < se_ratio <= 1), 1x1 projection (kxk and
    strided, then activated, when `expand_ratio` is 1), residual."""
    name = name or "block0"

    def apply(inputs):
        filters = input_filters * expand_ratio
        if expand_ratio != 1:
            x = layers.Conv2D(filters, kernel_size=kernel_size, strides=strides,
                              kernel_initializer=CONV_KERNEL_INITIALIZER, data_format="channels_last",
                              padding="same", use_bias=False, name=f"{name}expand_conv")(inputs)
            x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name=f"{name}expand_bn")(x)
            x = layers.Activation(activation=activation, name=f"{name}expand_activation")(x)
        else:
            x = inputs
        if 0 < se_ratio <= 1:
            x = _squeeze_excite(x, input_filters, filters, se_ratio, activation, name)
        x = layers.Conv2D(output_filters, kernel_size=1 if expand_ratio != 1 else kernel_size,
                          strides=1 if expand_ratio != 1 else strides, kernel_initializer=CONV_KERNEL_INITIALIZER,
                          padding="same", use_bias=False, name=f"{name}project_conv")(x)
        x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name=f"{name}project_bn")(x)
        if expand_ratio == 1:
            x = layers.Activation(activation=activation, name=f"{name}project_activation")(x)
        return _residual(x, inputs, strides, input_filters, output_filters, survival_probability, name)
    return apply


def EfficientNetV2(width_coefficient, depth_coefficient, default_size, dropout_rate=0.2, drop_connect_rate=0.2,
                   depth_divisor=8, min_depth=8, bn_momentum=0.9, activation="swish", blocks_args="default",
                   name="efficientnetv2", include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
                   pooling=None, classes=1000, classifier_activation="softmax", include_preprocessing=True,
                   weights_name=None):
    """An EfficientNetV2 of the stages `blocks_args` ("default": those of the variant
    `weights_name`, "b0" to "b3", "-s", "-m" or "-l"), scaled by `width_coefficient` and
    `depth_coefficient`; `drop_connect_rate`: the largest per-sample residual dropout rate,
    growing linearly over the blocks; `dropout_rate`: before the top."""
    from ..models.model import Functional
    imagenet_utils.check_weights_arg(weights, include_top, classes)
    imagenet_utils.check_pooling(pooling)
    if (weights == "imagenet" or blocks_args == "default") and weights_name not in WEIGHTS_HASHES:
        raise ValueError(f"EfficientNetV2: weights_name must be one of {list(WEIGHTS_HASHES)} for the default "
                         f"blocks_args or ImageNet weights; received weights_name={weights_name!r}")
    variant = f"efficientnetv2-{weights_name.lstrip('-')}" if weights_name in WEIGHTS_HASHES else None
    if blocks_args == "default":
        blocks_args = DEFAULT_BLOCKS_ARGS[variant]
    for args in blocks_args:
        if args["num_repeat"] <= 0:
            raise ValueError(f"The number of repeats in `EfficientNetV2` must be > 0. Received: "
                             f"num_repeat={args['num_repeat']}")
    input_shape = imagenet_utils.obtain_input_shape(input_shape, default_size=default_size, min_size=32,
                                                    require_flatten=include_top, weights=weights)
    img_input = imagenet_utils.input_layer(input_tensor, input_shape)

    def rounded(filters):
        return round_filters(filters, width_coefficient, min_depth, depth_divisor)

    x = img_input
    if include_preprocessing:
        if (variant or name).split("-")[-1].startswith("b") and input_shape[2] == 3:
            x = layers.Rescaling(scale=1.0 / 255)(x)
            x = layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.229**2, 0.224**2, 0.225**2],
                                     axis=3)(x)
        else:
            x = layers.Rescaling(scale=1.0 / 128.0, offset=-1)(x)
    x = layers.Conv2D(rounded(blocks_args[0]["input_filters"]), kernel_size=3, strides=2,
                      kernel_initializer=CONV_KERNEL_INITIALIZER, padding="same", use_bias=False,
                      name="stem_conv")(x)
    x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name="stem_bn")(x)
    x = layers.Activation(activation, name="stem_activation")(x)

    blocks_args = copy.deepcopy(blocks_args)
    b = 0
    blocks = float(sum(args["num_repeat"] for args in blocks_args))
    for i, args in enumerate(blocks_args):
        args["input_filters"] = rounded(args["input_filters"])
        args["output_filters"] = rounded(args["output_filters"])
        block = {0: MBConvBlock, 1: FusedMBConvBlock}[args.pop("conv_type")]
        for j in range(round_repeats(args.pop("num_repeat"), depth_coefficient)):
            if j > 0:
                args["strides"] = 1
                args["input_filters"] = args["output_filters"]
            x = block(activation=activation, bn_momentum=bn_momentum,
                      survival_probability=drop_connect_rate * b / blocks, name=f"block{i + 1}{chr(j + 97)}_",
                      **args)(x)
            b += 1

    x = layers.Conv2D(rounded(1280), kernel_size=1, strides=1, kernel_initializer=CONV_KERNEL_INITIALIZER,
                      padding="same", data_format="channels_last", use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name="top_bn")(x)
    x = layers.Activation(activation=activation, name="top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        imagenet_utils.validate_activation(classifier_activation, weights)
        x = layers.Dense(classes, activation=classifier_activation, kernel_initializer=DENSE_KERNEL_INITIALIZER,
                         bias_initializer=initializers.Constant(0.0), name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)

    inputs = imagenet_utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    model = Functional(inputs, x, name=name)
    if weights == "imagenet":
        fname = f"{variant}{'.h5' if include_top else '_notop.h5'}"
        return imagenet_utils.load_model_weights(model, weights, fname, BASE_WEIGHTS_PATH + fname)
    return imagenet_utils.load_model_weights(model, weights, None, None)


def EfficientNetV2B0(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                     classes=1000, classifier_activation="softmax", include_preprocessing=True,
                     name="efficientnetv2-b0"):
    """The EfficientNetV2B0 model (224x224 inputs by default), optionally with ImageNet weights (see
    Keras's documentation).

    include_top: the 1000-way classifier on top (after a dropout of 0.2); weights: "imagenet",
    None (random) or a path; input_tensor: a symbolic tensor to build on (the model's inputs are
    then its source inputs); input_shape: (h, w, 3), at least 32x32, when include_top is False;
    pooling: None, "avg" or "max" for the output without top; classes and classifier_activation:
    the top's; include_preprocessing: the model takes pixels in 0..255 (else inputs in [-1, 1])."""
    return EfficientNetV2(1.0, 1.0, 224, name=name, include_top=include_top, weights=weights,
                          input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                          classes=classes, classifier_activation=classifier_activation,
                          include_preprocessing=include_preprocessing, weights_name="b0")


def EfficientNetV2B1(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                     classes=1000, classifier_activation="softmax", include_preprocessing=True,
                     name="efficientnetv2-b1"):
    """The EfficientNetV2B1 model (width x1.0, depth x1.1, 240x240 inputs by default); arguments as for
    EfficientNetV2B0."""
    return EfficientNetV2(1.0, 1.1, 240, name=name, include_top=include_top, weights=weights,
                          input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                          classes=classes, classifier_activation=classifier_activation,
                          include_preprocessing=include_preprocessing, weights_name="b1")


def EfficientNetV2B2(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                     classes=1000, classifier_activation="softmax", include_preprocessing=True,
                     name="efficientnetv2-b2"):
    """The EfficientNetV2B2 model (width x1.1, depth x1.2, 260x260 inputs by default); arguments as for
    EfficientNetV2B0."""
    return EfficientNetV2(1.1, 1.2, 260, name=name, include_top=include_top, weights=weights,
                          input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                          classes=classes, classifier_activation=classifier_activation,
                          include_preprocessing=include_preprocessing, weights_name="b2")


def EfficientNetV2B3(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                     classes=1000, classifier_activation="softmax", include_preprocessing=True,
                     name="efficientnetv2-b3"):
    """The EfficientNetV2B3 model (width x1.2, depth x1.4, 300x300 inputs by default); arguments as for
    EfficientNetV2B0."""
    return EfficientNetV2(1.2, 1.4, 300, name=name, include_top=include_top, weights=weights,
                          input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                          classes=classes, classifier_activation=classifier_activation,
                          include_preprocessing=include_preprocessing, weights_name="b3")


def EfficientNetV2S(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                    classes=1000, classifier_activation="softmax", include_preprocessing=True,
                    name="efficientnetv2-s"):
    """The EfficientNetV2S model (width x1.0, depth x1.0, 384x384 inputs by default); arguments as for
    EfficientNetV2B0."""
    return EfficientNetV2(1.0, 1.0, 384, name=name, include_top=include_top, weights=weights,
                          input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                          classes=classes, classifier_activation=classifier_activation,
                          include_preprocessing=include_preprocessing, weights_name="-s")


def EfficientNetV2M(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                    classes=1000, classifier_activation="softmax", include_preprocessing=True,
                    name="efficientnetv2-m"):
    """The EfficientNetV2M model (width x1.0, depth x1.0, 480x480 inputs by default); arguments as for
    EfficientNetV2B0."""
    return EfficientNetV2(1.0, 1.0, 480, name=name, include_top=include_top, weights=weights,
                          input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                          classes=classes, classifier_activation=classifier_activation,
                          include_preprocessing=include_preprocessing, weights_name="-m")


def EfficientNetV2L(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                    classes=1000, classifier_activation="softmax", include_preprocessing=True,
                    name="efficientnetv2-l"):
    """The EfficientNetV2L model (width x1.0, depth x1.0, 480x480 inputs by default); arguments as for
    EfficientNetV2B0."""
    return EfficientNetV2(1.0, 1.0, 480, name=name, include_top=include_top, weights=weights,
                          input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                          classes=classes, classifier_activation=classifier_activation,
                          include_preprocessing=include_preprocessing, weights_name="-l")


def preprocess_input(x, data_format=None):
    """Returns `x` unchanged: the models preprocess their inputs themselves (Keras keeps this
    pass-through for compatibility)."""
    return x


def decode_predictions(preds, top=5):
    return imagenet_utils.decode_predictions(preds, top=top)


decode_predictions.__doc__ = imagenet_utils.decode_predictions.__doc__
