"""DenseNet121, DenseNet169 and DenseNet201 (Huang et al., "Densely Connected Convolutional
Networks", 2017), layer for layer as `keras/src/applications/densenet.py`: the same layers, names
and order, so Keras's ImageNet weight files (`densenet121_weights_tf_dim_ordering_tf_kernels
[_notop].h5`, ...) load into them. Channels-last; inputs 224x224 by default, at least 32x32,
preprocessed with `preprocess_input` (to [0, 1], then the ImageNet mean and std: Keras's "torch"
mode)."""
from .. import layers
from . import imagenet_utils

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/densenet/"
DENSENET121_WEIGHT_PATH = f"{BASE_WEIGHTS_PATH}densenet121_weights_tf_dim_ordering_tf_kernels.h5"
DENSENET121_WEIGHT_PATH_NO_TOP = f"{BASE_WEIGHTS_PATH}densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
DENSENET169_WEIGHT_PATH = f"{BASE_WEIGHTS_PATH}densenet169_weights_tf_dim_ordering_tf_kernels.h5"
DENSENET169_WEIGHT_PATH_NO_TOP = f"{BASE_WEIGHTS_PATH}densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5"
DENSENET201_WEIGHT_PATH = f"{BASE_WEIGHTS_PATH}densenet201_weights_tf_dim_ordering_tf_kernels.h5"
DENSENET201_WEIGHT_PATH_NO_TOP = f"{BASE_WEIGHTS_PATH}densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5"
_IMAGENET_BLOCKS = {(6, 12, 24, 16): "densenet121", (6, 12, 32, 32): "densenet169", (6, 12, 48, 32): "densenet201"}
_BN_EPSILON = 1.001e-5


def dense_block(x, blocks, name):
    """`blocks` conv blocks, each adding 32 channels."""
    for i in range(blocks):
        x = conv_block(x, 32, name=f"{name}_block{i + 1}")
    return x


def transition_block(x, reduction, name):
    """BN, ReLU, 1x1 convolution to `reduction` times the channels, 2x2 average pooling."""
    x = layers.BatchNormalization(axis=3, epsilon=_BN_EPSILON, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.Conv2D(int(x.shape[3] * reduction), 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def conv_block(x, growth_rate, name):
    """BN, ReLU, 1x1 convolution (4 * growth_rate), BN, ReLU, 3x3 convolution (growth_rate),
    concatenated to the input."""
    x1 = layers.BatchNormalization(axis=3, epsilon=_BN_EPSILON, name=f"{name}_0_bn")(x)
    x1 = layers.Activation("relu", name=f"{name}_0_relu")(x1)
    x1 = layers.Conv2D(4 * growth_rate, 1, use_bias=False, name=f"{name}_1_conv")(x1)
    x1 = layers.BatchNormalization(axis=3, epsilon=_BN_EPSILON, name=f"{name}_1_bn")(x1)
    x1 = layers.Activation("relu", name=f"{name}_1_relu")(x1)
    x1 = layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(x1)
    return layers.Concatenate(axis=3, name=f"{name}_concat")([x, x1])


def DenseNet(blocks, include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
             classes=1000, classifier_activation="softmax", name="densenet"):
    """A DenseNet with `blocks` conv blocks in each of its four dense blocks ((6, 12, 24, 16),
    (6, 12, 32, 32) and (6, 12, 48, 32) have ImageNet weights); the other arguments as for
    DenseNet121."""
    from ..models.model import Functional
    imagenet_utils.check_weights_arg(weights, include_top, classes)
    imagenet_utils.check_pooling(pooling)
    blocks = tuple(blocks)
    if len(blocks) != 4:
        raise ValueError(f"DenseNet: `blocks` must give the conv blocks of the 4 dense blocks, received "
                         f"blocks={blocks}")
    if weights == "imagenet" and blocks not in _IMAGENET_BLOCKS:
        raise ValueError(f"DenseNet: there are ImageNet weights for blocks in {list(_IMAGENET_BLOCKS)} only; "
                         f"received blocks={blocks} with weights='imagenet'")
    input_shape = imagenet_utils.obtain_input_shape(input_shape, default_size=224, min_size=32,
                                                    require_flatten=include_top, weights=weights)
    img_input = imagenet_utils.input_layer(input_tensor, input_shape)

    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)))(img_input)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = layers.BatchNormalization(axis=3, epsilon=_BN_EPSILON, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)))(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for i, n in enumerate(blocks):
        x = dense_block(x, n, name=f"conv{i + 2}")
        if i < 3:
            x = transition_block(x, 0.5, name=f"pool{i + 2}")
    x = layers.BatchNormalization(axis=3, epsilon=_BN_EPSILON, name="bn")(x)
    x = layers.Activation("relu", name="relu")(x)

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        imagenet_utils.validate_activation(classifier_activation, weights)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)

    inputs = imagenet_utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    model = Functional(inputs, x, name=name)
    if weights == "imagenet":
        fname = f"{_IMAGENET_BLOCKS[blocks]}_weights_tf_dim_ordering_tf_kernels{'' if include_top else '_notop'}.h5"
        return imagenet_utils.load_model_weights(model, weights, fname, BASE_WEIGHTS_PATH + fname)
    return imagenet_utils.load_model_weights(model, weights, None, None)


def DenseNet121(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                classes=1000, classifier_activation="softmax", name="densenet121"):
    """The DenseNet121 model, optionally with ImageNet weights (see Keras's documentation).

    include_top: the 1000-way classifier on top; weights: "imagenet", None (random) or a path;
    input_tensor: a symbolic tensor to build on (the model's inputs are then its source inputs);
    input_shape: (h, w, 3), at least 32x32, when include_top is False; pooling: None, "avg" or
    "max" for the output without top; classes and classifier_activation: the top's."""
    return DenseNet([6, 12, 24, 16], include_top, weights, input_tensor, input_shape, pooling, classes,
                    classifier_activation, name=name)


def DenseNet169(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                classes=1000, classifier_activation="softmax", name="densenet169"):
    """The DenseNet169 model (dense blocks of 6, 12, 32, 32); arguments as for DenseNet121."""
    return DenseNet([6, 12, 32, 32], include_top, weights, input_tensor, input_shape, pooling, classes,
                    classifier_activation, name=name)


def DenseNet201(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                classes=1000, classifier_activation="softmax", name="densenet201"):
    """The DenseNet201 model (dense blocks of 6, 12, 48, 32); arguments as for DenseNet121."""
    return DenseNet([6, 12, 48, 32], include_top, weights, input_tensor, input_shape, pooling, classes,
                    classifier_activation, name=name)


def preprocess_input(x, data_format=None):
    """Pixels 0..255 to [0, 1], then minus the ImageNet mean and over its std (Keras's "torch" mode)."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="torch")


def decode_predictions(preds, top=5):
    return imagenet_utils.decode_predictions(preds, top=top)


decode_predictions.__doc__ = imagenet_utils.decode_predictions.__doc__
