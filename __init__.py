"""lamina: a Keras-like deep-learning library on its own C++ backend.

    import lamina as keras
    model = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(10, activation="softmax")])
"""
__version__ = "0.1.0"

from .backend import (GradientTape, no_grad, Tensor, Variable, Device, device, devices, get_device, list_devices,  # noqa: F401
                      set_virtual_gpus, synchronize,
                      convert_to_tensor, convert_to_numpy, is_tensor)
from .backend import random  # noqa: F401
from . import backend, ops  # noqa: F401
from . import activations, constraints, initializers, regularizers  # noqa: F401
from . import layers, losses, metrics, optimizers, callbacks, utils, datasets, models, applications  # noqa: F401
from . import preprocessing, saving, tree, wrappers  # noqa: F401
from . import config, debugging, distribute, distribution, dtype_policies, mixed_precision  # noqa: F401
from .layers import Input, InputLayer, Layer  # noqa: F401
from .models import Model, Sequential  # noqa: F401

# keras.backend's helpers that live above lamina's backend package
backend.clear_session = utils.clear_session
backend.is_keras_tensor = utils.is_keras_tensor
backend.get_uid = layers.layer.get_uid
