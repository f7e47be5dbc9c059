"""Utilities, as `keras.utils`: to_categorical, set_random_seed, get_file, custom-object registration,
`PyDataset` (`Sequence`), `pack_x_y_sample_weight` / `unpack_x_y_sample_weight`, image folders and
image files (`image_dataset_from_directory`, `load_img`, `img_to_array`, `array_to_img`,
`save_img`; these need Pillow)."""
import os
import random as _py_random

import numpy as np

from .datasets._files import get_file  # noqa: F401
from .datasets._image import array_to_img, img_to_array, load_img, save_img  # noqa: F401
from .datasets.image_folder import image_dataset_from_directory  # noqa: F401
from .models.data import PyDataset, Sequence, pack_x_y_sample_weight, unpack_x_y_sample_weight  # noqa: F401
from .saving import (CustomObjectScope, custom_object_scope, deserialize_keras_object,  # noqa: F401
                     get_custom_objects, get_registered_name, get_registered_object, register_keras_serializable,
                     serialize_keras_object)


def to_categorical(x, num_classes=None):
    """Integer class vector -> one-hot float32 matrix (trailing axis of size num_classes)."""
    x = np.asarray(x)
    if x.ndim and x.shape[-1] == 1 and x.ndim > 1:
        x = x.reshape(x.shape[:-1])
    if x.size and (x.min() < 0):
        raise ValueError(f"to_categorical: class indices must be >= 0, found {x.min()}")
    n = int(num_classes) if num_classes is not None else (int(x.max()) + 1 if x.size else 0)
    if x.size and x.max() >= n:
        raise ValueError(f"to_categorical: found class index {int(x.max())} but num_classes={n}")
    out = np.zeros(x.shape + (n,), np.float32)
    np.put_along_axis(out, x.astype(np.int64)[..., None], 1.0, axis=-1)
    return out


def set_random_seed(seed):
    """Seeds Python's, numpy's and lamina's global generators."""
    _py_random.seed(seed)
    np.random.seed(seed)
    from .backend import random as _random
    _random.set_seed(seed)


def clear_session(free_memory=True):
    """Resets the automatic layer names, so a model built next is named as in a fresh process
    (Keras's `keras.utils.clear_session`)."""
    from .layers.layer import reset_names
    reset_names()
    if free_memory:
        import gc
        gc.collect()
