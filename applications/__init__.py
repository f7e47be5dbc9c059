"""Pretrained image models, as `keras.applications`: InceptionV3, MobileNet, MobileNetV2,
ResNet50/101/152 and their V2, VGG16, VGG19, DenseNet121/169/201 and Xception, each module with
its `preprocess_input` / `decode_predictions` (`resnet50` is Keras's alias of `resnet` for
ResNet50); and the "for Poets" tools built on them (`lamina-retrain`, `lamina-label-image`)."""
from . import (densenet, imagenet_utils, inception_v3, mobilenet, mobilenet_v2, resnet, resnet50,  # noqa: F401
               resnet_v2, vgg16, vgg19, xception)
from .densenet import DenseNet121, DenseNet169, DenseNet201  # noqa: F401
from .inception_v3 import InceptionV3  # noqa: F401
from .mobilenet import MobileNet  # noqa: F401
from .mobilenet_v2 import MobileNetV2  # noqa: F401
from .resnet import ResNet50, ResNet101, ResNet152  # noqa: F401
from .resnet_v2 import ResNet50V2, ResNet101V2, ResNet152V2  # noqa: F401
from .vgg16 import VGG16  # noqa: F401
from .vgg19 import VGG19  # noqa: F401
from .xception import Xception  # noqa: F401
