"""Image files <-> arrays with Pillow (an optional dependency, imported on first use), and the
resizing of Keras's image datasets.

Resizing follows Keras 3 (`keras.ops.image.resize`, antialias off): pixel centres at half
integers, bilinear weights between the two nearest source pixels, edge pixels repeated; "nearest"
takes the source pixel under each output pixel centre. `crop_to_aspect_ratio` first cuts the
largest centred window of the target's aspect ratio; `pad_to_aspect_ratio` first pads with zeros.
This is data loading (numpy on host arrays), not the training path.
"""
import pathlib
import warnings

import numpy as np

from .._fileio import atomic_write
from ..backend.settings import standardize_data_format

INTERPOLATIONS = ("bilinear", "nearest")
_CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


def pil_image():
    """The `PIL.Image` module, or an ImportError that says how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("Reading and writing images needs Pillow, which is not installed. Install it "
                          'with `pip install pillow` (or `pip install "lamina[images]"`).') from None
    return Image


def check_color_mode(color_mode):
    if color_mode not in _CHANNELS:
        raise ValueError(f'color_mode must be one of "rgb", "rgba", "grayscale"; received color_mode={color_mode!r}')
    return _CHANNELS[color_mode]


def check_data_format(data_format, who="image_dataset_from_directory"):
    return standardize_data_format(data_format, who)


def _convert(img, num_channels):
    """Keras's channel rule: grayscale keeps 8/16/32-bit grey images, everything else converts."""
    if num_channels == 1:
        return img if img.mode in ("L", "I;16", "I") else img.convert("L")
    mode = "RGBA" if num_channels == 4 else "RGB"
    return img if img.mode == mode else img.convert(mode)


def read_image(path, num_channels):
    """Decodes the image file `path` (the first frame of an animated GIF) into a float32
    (H, W, num_channels) array."""
    Image = pil_image()
    try:
        with Image.open(path) as img:
            arr = np.asarray(_convert(img, num_channels), dtype=np.float32)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: cannot read this image ({type(e).__name__}: {e}). Remove or replace "
                         "the file.") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def _linear(in_size, out_size):
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    src = np.clip(src, 0.0, in_size - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, in_size - 1)
    return lo, hi, (src - lo).astype(np.float32)


def _nearest(in_size, out_size):
    # TensorFlow's rule (Keras's default pipeline), in float32: floor((i + 0.5) * (in / out)).
    # JAX's differs only where that product is an exact integer (a tie), by one source pixel.
    scale = np.float32(in_size) / np.float32(out_size)
    pos = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale
    return np.minimum(np.floor(pos).astype(np.intp), in_size - 1)


def _resize_axis(x, axis, out_size, interpolation):
    in_size = x.shape[axis]
    if in_size == out_size:
        return x
    if interpolation == "nearest":
        return np.take(x, _nearest(in_size, out_size), axis=axis)
    lo, hi, w = _linear(in_size, out_size)
    shape = [1] * x.ndim
    shape[axis] = out_size
    w = w.reshape(shape)
    a = np.take(x, lo, axis=axis)
    a += (np.take(x, hi, axis=axis) - a) * w
    return a


def resize(x, size, interpolation="bilinear", crop_to_aspect_ratio=False, pad_to_aspect_ratio=False):
    """Resizes a float32 (H, W, C) image to `size` = (height, width)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, received {interpolation!r} "
                         "(Keras's bicubic, area, lanczos and gaussian are not implemented in lamina)")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("Only one of crop_to_aspect_ratio and pad_to_aspect_ratio can be True.")
    th, tw = size
    h, w = x.shape[0], x.shape[1]
    if crop_to_aspect_ratio:
        ch = max(min(h, int(float(w * th) / tw)), 1)
        cw = max(min(w, int(float(h * tw) / th)), 1)
        top, left = int(float(h - ch) / 2), int(float(w - cw) / 2)
        x = x[top:top + ch, left:left + cw]
    elif pad_to_aspect_ratio:
        top = int(float(max(h, int(float(w * th) / tw)) - h) / 2)
        left = int(float(max(w, int(float(h * tw) / th)) - w) / 2)
        if top or left:
            x = np.pad(x, ((top, top), (left, left), (0, 0)))
    # shrink the axis that loses more first: less work for the second pass
    order = (0, 1) if th / x.shape[0] <= tw / x.shape[1] else (1, 0)
    for axis in order:
        x = _resize_axis(x, axis, size[axis], interpolation)
    return np.ascontiguousarray(x, dtype=np.float32)


# -- keras.utils image helpers --

def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest", keep_aspect_ratio=False):
    """Loads an image file into a PIL Image (Keras's `load_img`): converted to `color_mode`, and
    resized with Pillow to `target_size` = (height, width) if given (`keep_aspect_ratio` crops
    the centred window of the target's aspect ratio first)."""
    Image = pil_image()
    check_color_mode(color_mode)
    methods = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
               "bicubic": Image.Resampling.BICUBIC, "hamming": Image.Resampling.HAMMING,
               "box": Image.Resampling.BOX, "lanczos": Image.Resampling.LANCZOS}
    if isinstance(path, pathlib.Path):
        path = str(path)
    try:
        with Image.open(path) as opened:
            opened.load()
            img = _convert(opened, _CHANNELS[color_mode])
            if img is opened:
                img = opened.copy()
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read this image ({type(e).__name__}: {e})") from None
    if target_size is not None:
        size = (int(target_size[1]), int(target_size[0]))  # PIL sizes are (width, height)
        if img.size != size:
            if interpolation not in methods:
                raise ValueError(f"interpolation must be one of {sorted(methods)}, received {interpolation!r}")
            box = None
            if keep_aspect_ratio:
                w, h = img.size
                ch, cw = min(h, (w * size[1]) // size[0]), min(w, (h * size[0]) // size[1])
                top, left = (h - ch) // 2, (w - cw) // 2
                box = (left, top, left + cw, top + ch)
            img = img.resize(size, methods[interpolation], box=box)
    return img


def img_to_array(img, data_format=None, dtype="float32"):
    """A PIL Image as a (H, W, C) array (C = 1 for grayscale), float32 by default."""
    data_format = check_data_format(data_format)
    x = np.asarray(img, dtype=dtype or "float32")
    if x.ndim == 2:
        x = x[:, :, None]
    elif x.ndim != 3:
        raise ValueError(f"img_to_array: expected a 2-D or 3-D image, got an array of shape {x.shape}")
    return x.transpose(2, 0, 1) if data_format == "channels_first" else x


def array_to_img(x, data_format=None, scale=True, dtype="float32"):
    """A (H, W, C) array (C = 1, 3 or 4) as a PIL Image. With `scale`, values are mapped
    linearly onto 0-255 (min -> 0, max -> 255), as Keras does."""
    Image = pil_image()
    data_format = check_data_format(data_format)
    x = np.array(x, dtype=dtype or "float32")
    if x.ndim != 3:
        raise ValueError(f"array_to_img: expected a single image of rank 3 (height, width, channels), "
                         f"got shape {x.shape}")
    if data_format == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x = x - x.min()
        if x.max() != 0:
            x = x / x.max()
        x = x * 255
    channels = x.shape[2]
    if channels in (3, 4):
        return Image.fromarray(x.astype(np.uint8), "RGBA" if channels == 4 else "RGB")
    if channels == 1:
        if x.max() > 255:
            return Image.fromarray(x[:, :, 0].astype(np.int32), "I")
        return Image.fromarray(x[:, :, 0].astype(np.uint8), "L")
    raise ValueError(f"array_to_img: expected 1, 3 or 4 channels, got {channels} (shape {x.shape})")


def save_img(path, x, data_format=None, file_format=None, scale=True, **kwargs):
    """Saves an image array to `path` (format from the extension unless `file_format` is given).
    A file path is written atomically: a temporary file in the same folder, renamed when complete."""
    if file_format is None and isinstance(path, (str, pathlib.Path)):
        file_format = pathlib.Path(path).suffix[1:].lower() or None
    if file_format and file_format.lower() == "jpg":
        file_format = "jpeg"
    img = array_to_img(x, data_format=data_format, scale=scale)
    if img.mode == "RGBA" and file_format == "jpeg":
        warnings.warn("The JPEG format does not support RGBA images, converting to RGB.")
        img = img.convert("RGB")
    if not isinstance(path, (str, pathlib.Path)):
        img.save(path, format=file_format, **kwargs)
        return
    with atomic_write(path) as f:
        img.save(f, format=file_format, **kwargs)
