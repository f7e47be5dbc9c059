"""NASNet-A (Zoph et al., "Learning Transferable Architectures for Scalable Image Recognition",
2018): NASNetMobile (4 @ 1056, 224x224), NASNetLarge (6 @ 4032, 331x331) and the generic `NASNet`
builder, layer for layer as `keras/src/applications/nasnet.py`: the same layers, names and order,
so Keras's ImageNet weight files (`nasnet_mobile[_no_top].h5`, `nasnet_large[_no_top].h5`,
downloaded from Keras's `NASNet-mobile[-no-top].h5` and `NASNet-large[-no-top].h5`) load into
them. Channels-last; inputs at least 32x32, preprocessed with `preprocess_input` (pixels 0..255 to
[-1, 1]).

A cell takes the two previous cells' outputs (x, p): `_adjust_block` brings p to x's size (a
factorized reduction when the widths differ, a 1x1 projection when only the channels do), then
the cell adds pairs of separable-convolution and pooling branches and concatenates them."""
from .. import layers
from . import imagenet_utils

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/nasnet/"
NASNET_MOBILE_WEIGHT_PATH = f"{BASE_WEIGHTS_PATH}NASNet-mobile.h5"
NASNET_MOBILE_WEIGHT_PATH_NO_TOP = f"{BASE_WEIGHTS_PATH}NASNet-mobile-no-top.h5"
NASNET_LARGE_WEIGHT_PATH = f"{BASE_WEIGHTS_PATH}NASNet-large.h5"
NASNET_LARGE_WEIGHT_PATH_NO_TOP = f"{BASE_WEIGHTS_PATH}NASNet-large-no-top.h5"
# default_size: {include_top: (Keras's local file name, its URL)}
WEIGHTS_FILES = {
    224: {True: ("nasnet_mobile.h5", NASNET_MOBILE_WEIGHT_PATH),
          False: ("nasnet_mobile_no_top.h5", NASNET_MOBILE_WEIGHT_PATH_NO_TOP)},
    331: {True: ("nasnet_large.h5", NASNET_LARGE_WEIGHT_PATH),
          False: ("nasnet_large_no_top.h5", NASNET_LARGE_WEIGHT_PATH_NO_TOP)},
}
imagenet_utils.KNOWN_HASHES.update({   # Keras's md5s
    "nasnet_mobile.h5": "020fb642bf7360b370c678b08e0adf61",
    "nasnet_mobile_no_top.h5": "1ed92395b5b598bdda52abe5c0dbfd63",
    "nasnet_large.h5": "11577c9a518f0070763c2b964a382f17",
    "nasnet_large_no_top.h5": "d81d89dc07e6e56530c4e77faddd61b5",
})


def NASNet(input_shape=None, penultimate_filters=4032, num_blocks=6, stem_block_filters=96, skip_reduction=True,
           filter_multiplier=2, include_top=True, weights="imagenet", input_tensor=None, pooling=None, classes=1000,
           default_size=None, classifier_activation="softmax", name="NASNet"):
    """A NASNet-A model "NASNet (num_blocks @ penultimate_filters)" (see Keras's documentation).

    penultimate_filters: the channels of the penultimate layer, a multiple of
    24 * filter_multiplier ** 2; num_blocks: the normal cells repeated between reductions;
    stem_block_filters: the first convolution's; skip_reduction: whether the cells after a
    reduction see the reduction's input (True, NASNetLarge) or its output as their previous path;
    filter_multiplier: the width factor between stages; default_size: 224 (NASNetMobile's weights)
    or 331 (NASNetLarge's, and the default), the only sizes with ImageNet weights; the other
    arguments as for Xception (input at least 32x32)."""
    from ..models.model import Functional
    imagenet_utils.check_weights_arg(weights, include_top, classes)
    imagenet_utils.check_pooling(pooling)
    if isinstance(input_shape, tuple) and None in input_shape and weights == "imagenet":
        raise ValueError("When specifying the input shape of a NASNet and loading `ImageNet` weights, the "
                         f"input_shape argument must be static (no None entries). Got: `input_shape={input_shape}`.")
    if default_size is None:
        default_size = 331
    if weights == "imagenet" and default_size not in WEIGHTS_FILES:
        raise ValueError("ImageNet weights can only be loaded with NASNetLarge or NASNetMobile (default_size 331 "
                         f"or 224); received default_size={default_size}")
    input_shape = imagenet_utils.obtain_input_shape(input_shape, default_size=default_size, min_size=32,
                                                    require_flatten=include_top, weights=weights)
    img_input = imagenet_utils.input_layer(input_tensor, input_shape)
    if penultimate_filters % (24 * (filter_multiplier ** 2)) != 0:
        raise ValueError("For NASNet-A models, the `penultimate_filters` must be a multiple of 24 * "
                         f"(`filter_multiplier` ** 2). Current value: {penultimate_filters}")
    filters = penultimate_filters // 24

    x = layers.Conv2D(stem_block_filters, (3, 3), strides=(2, 2), padding="valid", use_bias=False,
                      name="stem_conv1", kernel_initializer="he_normal")(img_input)
    x = _bn(x, "stem_bn1")

    p = None
    x, p = _reduction_a_cell(x, p, filters // (filter_multiplier ** 2), block_id="stem_1")
    x, p = _reduction_a_cell(x, p, filters // filter_multiplier, block_id="stem_2")
    # three stages of num_blocks normal cells, widening by filter_multiplier after each reduction
    for stage in range(3):
        if stage:
            x, p0 = _reduction_a_cell(x, p, filters * filter_multiplier ** stage,
                                      block_id=f"reduce_{stage * num_blocks}")
            p = p if skip_reduction else p0
        for i in range(num_blocks):
            block = i if stage == 0 else stage * num_blocks + i + 1
            x, p = _normal_a_cell(x, p, filters * filter_multiplier ** stage, block_id=f"{block}")
    x = layers.Activation("relu")(x)

    if include_top:
        x = layers.GlobalAveragePooling2D()(x)
        imagenet_utils.validate_activation(classifier_activation, weights)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D()(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D()(x)

    inputs = imagenet_utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    model = Functional(inputs, x, name=name)
    fname, url = WEIGHTS_FILES.get(default_size, WEIGHTS_FILES[331])[bool(include_top)]
    return imagenet_utils.load_model_weights(model, weights, fname, url)


def NASNetMobile(input_shape=None, include_top=True, weights="imagenet", input_tensor=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name="nasnet_mobile"):
    """NASNet-A (4 @ 1056), optionally with ImageNet weights (see Keras's documentation): inputs
    224x224 (the default, also without the top), at least 32x32; the arguments as for Xception."""
    if not include_top and input_shape is None:
        input_shape = (224, 224, 3)
    return NASNet(input_shape, penultimate_filters=1056, num_blocks=4, stem_block_filters=32, skip_reduction=False,
                  filter_multiplier=2, include_top=include_top, weights=weights, input_tensor=input_tensor,
                  pooling=pooling, classes=classes, default_size=224, classifier_activation=classifier_activation,
                  name=name)


def NASNetLarge(input_shape=None, include_top=True, weights="imagenet", input_tensor=None, pooling=None,
                classes=1000, classifier_activation="softmax", name="nasnet_large"):
    """NASNet-A (6 @ 4032), optionally with ImageNet weights (see Keras's documentation): inputs
    331x331 with the top, at least 32x32; the arguments as for Xception."""
    return NASNet(input_shape, penultimate_filters=4032, num_blocks=6, stem_block_filters=96, skip_reduction=True,
                  filter_multiplier=2, include_top=include_top, weights=weights, input_tensor=input_tensor,
                  pooling=pooling, classes=classes, default_size=331, classifier_activation=classifier_activation,
                  name=name)


def _bn(x, name):
    return layers.BatchNormalization(axis=-1, momentum=0.9997, epsilon=1e-3, name=name)(x)


def _separable_conv_block(ip, filters, kernel_size=(3, 3), strides=(1, 1), block_id=None):
    """Two [ReLU, SeparableConv2D, BatchNormalization]; the first strided (after Keras's
    correct_pad zero padding) when `strides` is (2, 2)."""
    x = layers.Activation("relu")(ip)
    if strides == (2, 2):
        x = layers.ZeroPadding2D(padding=imagenet_utils.correct_pad(x, kernel_size),
                                 name=f"separable_conv_1_pad_{block_id}")(x)
        conv_pad = "valid"
    else:
        conv_pad = "same"
    x = layers.SeparableConv2D(filters, kernel_size, strides=strides, name=f"separable_conv_1_{block_id}",
                               padding=conv_pad, use_bias=False)(x)
    x = _bn(x, f"separable_conv_1_bn_{block_id}")
    x = layers.Activation("relu")(x)
    x = layers.SeparableConv2D(filters, kernel_size, name=f"separable_conv_2_{block_id}", padding="same",
                               use_bias=False)(x)
    return _bn(x, f"separable_conv_2_bn_{block_id}")


def _adjust_block(p, ip, filters, block_id=None):
    """The previous path `p` brought to the width and channels of `ip` (`filters`): `ip` itself
    when there is no previous path; a factorized reduction (two strided 1x1 average pools, one
    shifted by a pixel, each with a 1x1 convolution to filters // 2, concatenated) when the widths
    differ; a 1x1 projection when only the channels do."""
    if p is None:
        return ip
    if p.shape[-2] != ip.shape[-2]:
        p = layers.Activation("relu", name=f"adjust_relu_1_{block_id}")(p)
        p1 = layers.AveragePooling2D((1, 1), strides=(2, 2), padding="valid", name=f"adjust_avg_pool_1_{block_id}")(p)
        p1 = layers.Conv2D(filters // 2, (1, 1), padding="same", use_bias=False, name=f"adjust_conv_1_{block_id}",
                           kernel_initializer="he_normal")(p1)
        p2 = layers.ZeroPadding2D(padding=((0, 1), (0, 1)))(p)
        p2 = layers.Cropping2D(cropping=((1, 0), (1, 0)))(p2)
        p2 = layers.AveragePooling2D((1, 1), strides=(2, 2), padding="valid",
                                     name=f"adjust_avg_pool_2_{block_id}")(p2)
        p2 = layers.Conv2D(filters // 2, (1, 1), padding="same", use_bias=False, name=f"adjust_conv_2_{block_id}",
                           kernel_initializer="he_normal")(p2)
        p = layers.concatenate([p1, p2], axis=-1)
        p = _bn(p, f"adjust_bn_{block_id}")
    elif p.shape[-1] != filters:
        p = layers.Activation("relu")(p)
        p = layers.Conv2D(filters, (1, 1), strides=(1, 1), padding="same", name=f"adjust_conv_projection_{block_id}",
                          use_bias=False, kernel_initializer="he_normal")(p)
        p = _bn(p, f"adjust_bn_{block_id}")
    return p


def _squeeze(ip, filters, kind, block_id):
    """ReLU, 1x1 Conv2D to `filters`, BatchNormalization: a cell's view of its input."""
    h = layers.Activation("relu")(ip)
    h = layers.Conv2D(filters, (1, 1), strides=(1, 1), padding="same", name=f"{kind}_conv_1_{block_id}",
                      use_bias=False, kernel_initializer="he_normal")(h)
    return _bn(h, f"{kind}_bn_1_{block_id}")


def _normal_a_cell(ip, p, filters, block_id=None):
    """A Normal cell of NASNet-A (Fig. 4 of the paper); returns (its output, `ip`)."""
    p = _adjust_block(p, ip, filters, block_id)
    h = _squeeze(ip, filters, "normal", block_id)

    x1_1 = _separable_conv_block(h, filters, kernel_size=(5, 5), block_id=f"normal_left1_{block_id}")
    x1_2 = _separable_conv_block(p, filters, block_id=f"normal_right1_{block_id}")
    x1 = layers.add([x1_1, x1_2], name=f"normal_add_1_{block_id}")

    x2_1 = _separable_conv_block(p, filters, (5, 5), block_id=f"normal_left2_{block_id}")
    x2_2 = _separable_conv_block(p, filters, (3, 3), block_id=f"normal_right2_{block_id}")
    x2 = layers.add([x2_1, x2_2], name=f"normal_add_2_{block_id}")

    x3 = layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same", name=f"normal_left3_{block_id}")(h)
    x3 = layers.add([x3, p], name=f"normal_add_3_{block_id}")

    x4_1 = layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same", name=f"normal_left4_{block_id}")(p)
    x4_2 = layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same", name=f"normal_right4_{block_id}")(p)
    x4 = layers.add([x4_1, x4_2], name=f"normal_add_4_{block_id}")

    x5 = _separable_conv_block(h, filters, block_id=f"normal_left5_{block_id}")
    x5 = layers.add([x5, h], name=f"normal_add_5_{block_id}")

    x = layers.concatenate([p, x1, x2, x3, x4, x5], axis=-1, name=f"normal_concat_{block_id}")
    return x, ip


def _reduction_a_cell(ip, p, filters, block_id=None):
    """A Reduction cell of NASNet-A (Fig. 4 of the paper), halving the size; returns (its output,
    `ip`). Keras's layer names, including its "reduction_left4_" name of the fifth branch's
    separable convolutions and "reduction_add3_"/"reduction_add4_" of the third and fifth adds."""
    p = _adjust_block(p, ip, filters, block_id)
    h = _squeeze(ip, filters, "reduction", block_id)
    h3 = layers.ZeroPadding2D(padding=imagenet_utils.correct_pad(h, 3), name=f"reduction_pad_1_{block_id}")(h)

    x1_1 = _separable_conv_block(h, filters, (5, 5), strides=(2, 2), block_id=f"reduction_left1_{block_id}")
    x1_2 = _separable_conv_block(p, filters, (7, 7), strides=(2, 2), block_id=f"reduction_right1_{block_id}")
    x1 = layers.add([x1_1, x1_2], name=f"reduction_add_1_{block_id}")

    x2_1 = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="valid", name=f"reduction_left2_{block_id}")(h3)
    x2_2 = _separable_conv_block(p, filters, (7, 7), strides=(2, 2), block_id=f"reduction_right2_{block_id}")
    x2 = layers.add([x2_1, x2_2], name=f"reduction_add_2_{block_id}")

    x3_1 = layers.AveragePooling2D((3, 3), strides=(2, 2), padding="valid", name=f"reduction_left3_{block_id}")(h3)
    x3_2 = _separable_conv_block(p, filters, (5, 5), strides=(2, 2), block_id=f"reduction_right3_{block_id}")
    x3 = layers.add([x3_1, x3_2], name=f"reduction_add3_{block_id}")

    x4 = layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same", name=f"reduction_left4_{block_id}")(x1)
    x4 = layers.add([x2, x4])

    x5_1 = _separable_conv_block(x1, filters, (3, 3), block_id=f"reduction_left4_{block_id}")
    x5_2 = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="valid", name=f"reduction_right5_{block_id}")(h3)
    x5 = layers.add([x5_1, x5_2], name=f"reduction_add4_{block_id}")

    x = layers.concatenate([x2, x3, x4, x5], axis=-1, name=f"reduction_concat_{block_id}")
    return x, ip


def preprocess_input(x, data_format=None):
    """Pixels 0..255 to [-1, 1] (Keras's "tf" mode)."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")


def decode_predictions(preds, top=5):
    return imagenet_utils.decode_predictions(preds, top=top)


decode_predictions.__doc__ = imagenet_utils.decode_predictions.__doc__
