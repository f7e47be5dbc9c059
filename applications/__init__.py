"""Pretrained image models, as `keras.applications`: InceptionV3 and MobileNet with their
`preprocess_input` / `decode_predictions`, and the "for Poets" tools built on them
(`lamina-retrain`, `lamina-label-image`)."""
from . import imagenet_utils, inception_v3, mobilenet  # noqa: F401
from .inception_v3 import InceptionV3  # noqa: F401
from .mobilenet import MobileNet  # noqa: F401
