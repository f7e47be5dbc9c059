"""Utilities, as `keras.utils`: to_categorical, pad_sequences, set_random_seed, get_file,
custom-object registration, `PyDataset` (`Sequence`), `pack_x_y_sample_weight` /
`unpack_x_y_sample_weight`, image folders and image files (`image_dataset_from_directory`,
`load_img`, `img_to_array`, `array_to_img`, `save_img`; these need Pillow)."""
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


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0):
    """A list of sequences -> one array `(len(sequences), maxlen) + item shape`, as Keras's:
    shorter sequences are filled with `value` before ("pre") or after ("post") their items,
    longer ones lose their first ("pre") or last ("post") items. `maxlen` defaults to the
    longest sequence."""
    for name, where in (("padding", padding), ("truncating", truncating)):
        if where not in ("pre", "post"):
            raise ValueError(f"pad_sequences: {name} must be 'pre' or 'post', received {where!r}")
    if not hasattr(sequences, "__len__"):
        raise ValueError(f"pad_sequences: sequences must be a list of sequences, received {type(sequences).__name__}")
    seqs = []
    for i, seq in enumerate(sequences):
        if not hasattr(seq, "__len__"):
            raise ValueError(f"pad_sequences: sequences must be a list of iterables; item {i} is {seq!r}")
        seqs.append(np.asarray(seq, dtype=dtype) if len(seq) else None)
    item_shape = next((s_.shape[1:] for s_ in seqs if s_ is not None), ())
    if maxlen is None:
        maxlen = max((len(s_) for s_ in seqs if s_ is not None), default=0)
    out = np.full((len(seqs), int(maxlen)) + item_shape, value, dtype=dtype)
    for i, seq in enumerate(seqs):
        if seq is None or maxlen == 0:
            continue
        if seq.shape[1:] != item_shape:
            raise ValueError(f"pad_sequences: sequence {i} has items of shape {seq.shape[1:]}, "
                             f"expected {item_shape} as the first non-empty sequence's")
        seq = seq[-maxlen:] if truncating == "pre" else seq[:maxlen]
        if padding == "post":
            out[i, :len(seq)] = seq
        else:
            out[i, maxlen - len(seq):] = seq
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
