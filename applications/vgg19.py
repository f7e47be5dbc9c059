"""VGG19 (Simonyan and Zisserman, 2014), layer for layer as `keras/src/applications/vgg19.py`:
VGG16 with four convolutions in blocks 3 to 5, so Keras's ImageNet weight files
(`vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5`) load into it. Channels-last; inputs
224x224 by default, at least 32x32, preprocessed with `preprocess_input` (Keras's "caffe" mode)."""
from . import imagenet_utils
from .vgg16 import build_vgg

WEIGHTS_PATH = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5")
WEIGHTS_PATH_NO_TOP = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                       "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")


def VGG19(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
          classifier_activation="softmax", name="vgg19"):
    """The VGG19 model, optionally with ImageNet weights (see Keras's documentation); arguments as
    for `vgg16.VGG16`."""
    return build_vgg((2, 2, 4, 4, 4), include_top, weights, input_tensor, input_shape, pooling, classes,
                     classifier_activation, name, "vgg19", WEIGHTS_PATH, WEIGHTS_PATH_NO_TOP)


def preprocess_input(x, data_format=None):
    """RGB to BGR, then minus the ImageNet BGR mean, no scaling (Keras's "caffe" mode)."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="caffe")


def decode_predictions(preds, top=5):
    return imagenet_utils.decode_predictions(preds, top=top)


decode_predictions.__doc__ = imagenet_utils.decode_predictions.__doc__
