"""ResNet50V2, ResNet101V2 and ResNet152V2 (He et al., "Identity Mappings in Deep Residual
Networks", 2016), layer for layer as `keras/src/applications/resnet_v2.py`: pre-activation
residual blocks built by `resnet.ResNet`, so Keras's ImageNet weight files
(`resnet50v2_weights_tf_dim_ordering_tf_kernels[_notop].h5`, ...) load into them. Channels-last;
inputs 224x224 by default, at least 32x32, preprocessed with `preprocess_input` (pixels 0..255 to
[-1, 1])."""
from . import imagenet_utils, resnet


def _v2_stacks(depths):
    def stack_fn(x):
        x = resnet.stack_residual_blocks_v2(x, 64, depths[0], name="conv2")
        x = resnet.stack_residual_blocks_v2(x, 128, depths[1], name="conv3")
        x = resnet.stack_residual_blocks_v2(x, 256, depths[2], name="conv4")
        return resnet.stack_residual_blocks_v2(x, 512, depths[3], stride1=1, name="conv5")
    return stack_fn


def ResNet50V2(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
               classes=1000, classifier_activation="softmax", name="resnet50v2"):
    """The ResNet50V2 model, optionally with ImageNet weights (see Keras's documentation);
    arguments as for `resnet.ResNet50`."""
    return resnet.ResNet(_v2_stacks((3, 4, 6, 3)), True, True, include_top=include_top, weights=weights,
                         input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
                         classifier_activation=classifier_activation, name=name, weights_name="resnet50v2")


def ResNet101V2(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                classes=1000, classifier_activation="softmax", name="resnet101v2"):
    """The ResNet101V2 model (stages of 3, 4, 23, 3 blocks); arguments as for `resnet.ResNet50`."""
    return resnet.ResNet(_v2_stacks((3, 4, 23, 3)), True, True, include_top=include_top, weights=weights,
                         input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
                         classifier_activation=classifier_activation, name=name, weights_name="resnet101v2")


def ResNet152V2(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                classes=1000, classifier_activation="softmax", name="resnet152v2"):
    """The ResNet152V2 model (stages of 3, 8, 36, 3 blocks); arguments as for `resnet.ResNet50`."""
    return resnet.ResNet(_v2_stacks((3, 8, 36, 3)), True, True, include_top=include_top, weights=weights,
                         input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
                         classifier_activation=classifier_activation, name=name, weights_name="resnet152v2")


def preprocess_input(x, data_format=None):
    """Pixels 0..255 to [-1, 1] (Keras's "tf" mode)."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")


def decode_predictions(preds, top=5):
    return imagenet_utils.decode_predictions(preds, top=top)


decode_predictions.__doc__ = imagenet_utils.decode_predictions.__doc__
