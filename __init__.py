"""lamina: a Keras-like deep-learning library on its own C++ backend.

    import lamina as keras
    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
"""
__version__ = "0.1.0"

from .backend import (GradientTape, Tensor, Variable, Device, device, get_device, list_devices,  # noqa: F401
                      convert_to_tensor, convert_to_numpy, is_tensor)
from . import backend, datasets, ops  # noqa: F401
