"""`keras.applications.resnet50`: ResNet50 with its `preprocess_input` and `decode_predictions`
(the same objects as in `resnet`)."""
from .resnet import ResNet50, decode_predictions, preprocess_input  # noqa: F401
