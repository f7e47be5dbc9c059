"""VGG16 (Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", 2014), layer for layer as `keras/src/applications/vgg16.py`: the same layers, names
and order, so Keras's ImageNet weight files (`vgg16_weights_tf_dim_ordering_tf_kernels[_notop].h5`)
load into it. Channels-last; inputs 224x224 by default, at least 32x32, preprocessed with
`preprocess_input` (RGB to BGR, minus the ImageNet mean: Keras's "caffe" mode)."""
from .. import layers
from . import imagenet_utils

WEIGHTS_PATH = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5")
WEIGHTS_PATH_NO_TOP = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                       "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")


def VGG16(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
          classifier_activation="softmax", name="vgg16"):
    """The VGG16 model, optionally with ImageNet weights (see Keras's documentation).

    include_top: the three fully-connected layers on top (then the input must be 224x224);
    weights: "imagenet", None (random) or a path; input_tensor: a symbolic tensor to build on (the
    model's inputs are then its source inputs); input_shape: (h, w, 3), at least 32x32, when
    include_top is False; pooling: None, "avg" or "max" for the output without top; classes and
    classifier_activation: the top's."""
    return build_vgg((2, 2, 3, 3, 3), include_top, weights, input_tensor, input_shape, pooling, classes,
                     classifier_activation, name, "vgg16", WEIGHTS_PATH, WEIGHTS_PATH_NO_TOP)


def build_vgg(convs, include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation,
              name, file_stem, weights_path, weights_path_no_top):
    """Five blocks of `convs[i]` 3x3 ReLU convolutions (64, 128, 256, 512, 512 filters), each
    followed by a 2x2 max-pool; on top Flatten, fc1 and fc2 (4096, ReLU) and the classifier."""
    from ..models.model import Functional
    imagenet_utils.check_weights_arg(weights, include_top, classes)
    imagenet_utils.check_pooling(pooling)
    input_shape = imagenet_utils.obtain_input_shape(input_shape, default_size=224, min_size=32,
                                                    require_flatten=include_top, weights=weights)
    img_input = imagenet_utils.input_layer(input_tensor, input_shape)

    x = img_input
    for block, (n, filters) in enumerate(zip(convs, (64, 128, 256, 512, 512)), start=1):
        for i in range(1, n + 1):
            x = layers.Conv2D(filters, (3, 3), activation="relu", padding="same", name=f"block{block}_conv{i}")(x)
        x = layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)

    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc1")(x)
        x = layers.Dense(4096, activation="relu", name="fc2")(x)
        imagenet_utils.validate_activation(classifier_activation, weights)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D()(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D()(x)

    inputs = imagenet_utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    model = Functional(inputs, x, name=name)
    if include_top:
        fname, url = f"{file_stem}_weights_tf_dim_ordering_tf_kernels.h5", weights_path
    else:
        fname, url = f"{file_stem}_weights_tf_dim_ordering_tf_kernels_notop.h5", weights_path_no_top
    return imagenet_utils.load_model_weights(model, weights, fname, url)


def preprocess_input(x, data_format=None):
    """RGB to BGR, then minus the ImageNet BGR mean, no scaling (Keras's "caffe" mode)."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="caffe")


def decode_predictions(preds, top=5):
    return imagenet_utils.decode_predictions(preds, top=top)


decode_predictions.__doc__ = imagenet_utils.decode_predictions.__doc__
