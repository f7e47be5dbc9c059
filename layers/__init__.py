"""Layers, one file per family, with Keras's names, arguments and weight layouts."""
from .core import Activation, Dense, Dropout, Lambda, LeakyReLU, ReLU, Softmax  # noqa: F401
from .input_layer import Input, InputLayer, KerasTensor  # noqa: F401
from .layer import InputSpec, Layer  # noqa: F401
from .reshaping import Flatten, Permute, RepeatVector, Reshape  # noqa: F401
