"""`keras.preprocessing` as Keras 3 keeps it: the dataset makers of `lamina.utils`
(`image_dataset_from_directory`, `text_dataset_from_directory`, `timeseries_dataset_from_array`)
and two submodules, `lamina.preprocessing.image` (`load_img`, `img_to_array`, `array_to_img`,
`save_img`, `smart_resize`) and `lamina.preprocessing.sequence` (`pad_sequences`), so that
`from lamina.preprocessing.image import load_img` works as Keras's import does.

A module rather than a folder: the design card fixes the top-level folders (and the wheel installs
every top-level `.py` file). The submodules are registered in `sys.modules` as `os` registers
`os.path`. Preprocessing *layers* are `lamina.layers` (layers/preprocessing.py), as in Keras."""
import sys
import types

import numpy as np

from . import utils as _utils
from .datasets._image import resize as _resize
from .utils import image_dataset_from_directory, text_dataset_from_directory, timeseries_dataset_from_array  # noqa: F401


def smart_resize(x, size, interpolation="bilinear", data_format="channels_last", backend_module=None):
    """Resizes an image (H, W, C) or a batch (N, H, W, C) (channels first with
    `data_format="channels_first"`) to `size` = (height, width) without distorting it, as Keras's
    `keras.preprocessing.image.smart_resize`: the largest centred crop with the target's aspect
    ratio, then resized with `interpolation` ("bilinear" or "nearest"). Returns float32 numpy.
    Keras's `backend_module` (the module to compute with) has no equivalent: pass None."""
    if backend_module is not None:
        raise ValueError("smart_resize: backend_module is not supported by lamina (it computes with numpy); pass "
                         "backend_module=None")
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"smart_resize: data_format must be 'channels_last' or 'channels_first', received "
                         f"{data_format!r}")
    if (not isinstance(size, (list, tuple)) or len(size) != 2 or
            not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"smart_resize: size must be (height, width), two positive integers, received {size!r}")
    x = np.asarray(x.numpy() if hasattr(x, "numpy") and not isinstance(x, np.ndarray) else x, np.float32)
    if x.ndim not in (3, 4):
        raise ValueError(f"smart_resize: expected an image (height, width, channels) or a batch of them (batch, "
                         f"height, width, channels), received an array of shape {x.shape}")
    first = data_format == "channels_first"
    if first:
        x = np.moveaxis(x, -3, -1)
    size = (int(size[0]), int(size[1]))
    if x.ndim == 3:
        out = _resize(x, size, interpolation, crop_to_aspect_ratio=True)
    else:
        out = np.stack([_resize(img, size, interpolation, crop_to_aspect_ratio=True) for img in x])
    return np.moveaxis(out, -1, -3) if first else out


def _submodule(name, doc, **members):
    module = types.ModuleType(f"{__name__}.{name}", doc)
    module.__dict__.update(members)
    module.__all__ = sorted(members)
    sys.modules[module.__name__] = module
    return module


image = _submodule("image", "Image files and arrays, as `keras.preprocessing.image`.",
                   load_img=_utils.load_img, img_to_array=_utils.img_to_array, array_to_img=_utils.array_to_img,
                   save_img=_utils.save_img, smart_resize=smart_resize)
sequence = _submodule("sequence", "Sequence padding, as `keras.preprocessing.sequence`.",
                      pad_sequences=_utils.pad_sequences)
