"""Image classification data from a folder with one sub-folder per class, as Keras's
`image_dataset_from_directory`:

    flowers/daisy/1.jpg, flowers/daisy/2.jpg, ..., flowers/tulips/9.jpg

Files are listed like Keras (classes in sorted sub-folder order, files sorted within their
folder, sub-folders walked recursively), shuffled once with `np.random.RandomState(seed)`, then
cut into training / validation parts (the last `int(validation_split * n)` files are the
validation set), so a given folder and seed give Keras's split exactly. The result is a
re-iterable `ImageDataset` that decodes and resizes images batch by batch (Pillow) and can be
passed to `model.fit(ds, validation_data=val_ds)`.
"""
import math
import os

import numpy as np

from ._image import INTERPOLATIONS, check_color_mode, check_data_format, read_image, resize

ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
LABEL_MODES = ("int", "categorical", "binary", None)


class FolderDataset:
    """Batches `(samples, labels)` of files read one batch at a time: labels int32 (B,) for
    `label_mode="int"`, float32 one-hot (B, num_classes) for "categorical", float32 (B, 1) for
    "binary"; with `label_mode=None` the batches are the samples alone. `batch_size=None`
    yields single samples. Each pass is one epoch; with `shuffle` each epoch has its own order,
    drawn from a generator seeded with `seed`. `len(ds)` is the number of batches;
    `file_paths`, `labels` (class ids in file order) and `class_names` describe the files."""

    def __init__(self, file_paths, labels, class_names, label_mode, batch_size, shuffle, seed):
        if label_mode not in LABEL_MODES:
            raise ValueError('label_mode must be one of "int", "categorical", "binary" or None; received '
                             f"label_mode={label_mode!r}")
        if label_mode is not None and labels is None:
            raise ValueError(f"label_mode={label_mode!r} needs labels; pass label_mode=None for samples only")
        self.file_paths = list(file_paths)
        self.labels = None if labels is None or label_mode is None else np.asarray(labels, np.int32)
        if self.labels is not None and len(self.labels) != len(self.file_paths):
            raise ValueError(f"{len(self.file_paths)} files but {len(self.labels)} labels")
        self.class_names = class_names
        self.label_mode = label_mode
        if label_mode in ("categorical", "binary") and len(self.labels) and (
                self.labels.min() < 0 or self.labels.max() >= len(class_names or [])):
            raise ValueError(f"label_mode={label_mode!r} needs labels in [0, {len(class_names or [])}) (one per class "
                             f"name), found labels from {self.labels.min()} to {self.labels.max()}")
        self.batch_size = _check_batch_size(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def __len__(self):
        n = len(self.file_paths)
        return n if self.batch_size is None else math.ceil(n / self.batch_size)

    def load(self, i):
        raise NotImplementedError

    def _stack(self, samples):
        raise NotImplementedError

    def _encode_labels(self, idx):
        y = self.labels[idx]
        if self.label_mode == "binary":
            return y.astype(np.float32)[..., None]
        if self.label_mode == "categorical":
            return np.eye(len(self.class_names), dtype=np.float32)[y]
        return y

    def _batch(self, idx):
        x = self._stack([self.load(i) for i in idx])
        return x if self.labels is None else (x, self._encode_labels(idx))

    def __iter__(self):
        n = len(self.file_paths)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        if self.batch_size is None:
            for i in order:
                x = self.load(i)
                yield x if self.labels is None else (x, self._encode_labels(i))
            return
        for start in range(0, n, self.batch_size):
            yield self._batch(order[start:start + self.batch_size])

    def to_arrays(self):
        """Every sample (stacked as one batch) and its encoded labels, in `file_paths` order."""
        return self._batch(np.arange(len(self.file_paths)))


class ImageDataset(FolderDataset):
    """Batches `(images, labels)` of images read from `file_paths`; `images` is float32
    (B, H, W, C) (pixel values 0-255), labels as FolderDataset's. `ds.to_arrays()` loads everything."""

    def __init__(self, file_paths, labels, class_names, label_mode="int", image_size=(256, 256),
                 color_mode="rgb", batch_size=32, shuffle=False, seed=None, interpolation="bilinear",
                 crop_to_aspect_ratio=False, pad_to_aspect_ratio=False, data_format=None):
        super().__init__(file_paths, labels, class_names, label_mode, batch_size, shuffle, seed)
        self.image_size = _check_image_size(image_size)
        self.num_channels = check_color_mode(color_mode)
        self.interpolation = _check_interpolation(interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio)
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        self.pad_to_aspect_ratio = bool(pad_to_aspect_ratio)
        self.data_format = check_data_format(data_format)

    def __repr__(self):
        return (f"ImageDataset({len(self.file_paths)} files, {len(self.class_names or [])} classes, "
                f"batch_size={self.batch_size}, image_size={self.image_size})")

    def load_image(self, i):
        """File `i` decoded and resized: float32 (H, W, C), or (C, H, W) for channels_first."""
        x = resize(read_image(self.file_paths[i], self.num_channels), self.image_size, self.interpolation,
                   self.crop_to_aspect_ratio, self.pad_to_aspect_ratio)
        return x.transpose(2, 0, 1) if self.data_format == "channels_first" else x

    load = load_image

    def _stack(self, samples):
        return np.stack(samples)


def _check_image_size(image_size):
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if (not isinstance(image_size, (list, tuple)) or len(image_size) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in image_size)):
        raise ValueError("image_size must be (height, width), two positive integers; received "
                         f"image_size={image_size!r}")
    return (int(image_size[0]), int(image_size[1]))


def _check_batch_size(batch_size):
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size <= 0):
        raise ValueError(f"batch_size must be a positive integer or None (no batching); received {batch_size!r}")
    return None if batch_size is None else int(batch_size)


def _check_interpolation(interpolation, crop, pad):
    name = interpolation.lower() if isinstance(interpolation, str) else interpolation
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}; received interpolation={interpolation!r} "
                         "(Keras's bicubic, area, lanczos and gaussian are not implemented in lamina)")
    if crop and pad:
        raise ValueError("Only one of crop_to_aspect_ratio and pad_to_aspect_ratio can be True.")
    return name


def check_validation_split(validation_split, subset, shuffle, seed):
    """Keras's argument rules for validation_split / subset."""
    if validation_split is not None and not isinstance(validation_split, (int, float)):
        raise ValueError(f"validation_split must be a float between 0 and 1, received {validation_split!r}")
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be between 0 and 1, received {validation_split}")
    if (validation_split or subset) and not (validation_split and subset):
        raise ValueError('If subset is set, validation_split must be set, and inversely (received '
                         f'validation_split={validation_split!r}, subset={subset!r}); for example '
                         'validation_split=0.2, subset="training".')
    if subset not in ("training", "validation", "both", None):
        raise ValueError(f'subset must be "training", "validation" or "both", received subset={subset!r}')
    if validation_split and shuffle and seed is None:
        raise ValueError("If using validation_split and shuffling the data, you must provide a seed "
                         "argument, to make sure that there is no overlap between the training and "
                         "validation subsets.")


def _walk_files(directory, follow_links, formats):
    """(root, file name) of every file with an allowed extension under `directory`, Keras's order:
    folders sorted by path, files sorted by name."""
    for root, _, files in sorted(os.walk(directory, followlinks=follow_links), key=lambda t: t[0]):
        for fname in sorted(files):
            if fname.lower().endswith(formats):
                yield root, fname


def index_directory(directory, labels="inferred", formats=ALLOWLIST_FORMATS, class_names=None,
                    shuffle=True, seed=None, follow_links=False, verbose=True):
    """Lists the files of `directory` as Keras's `index_directory` does: returns
    `(file_paths, labels, class_names)`, shuffled with `RandomState(seed)` if `shuffle`."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Image folder {directory!r} does not exist or is not a directory; expected "
                                "a folder with one sub-folder of images per class.")
    if labels == "inferred":
        subdirs = [d for d in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")]
        if class_names is not None:
            if not set(class_names).issubset(subdirs):
                raise ValueError(f"The class_names passed did not match the names of the sub-folders of "
                                 f"{directory}. Expected: {subdirs} (or a subset of it), but received: "
                                 f"class_names={list(class_names)}")
            subdirs = list(class_names)
    else:
        if class_names is not None:
            raise ValueError("class_names can only be passed with labels='inferred'; with explicit labels the "
                             "class names are the sorted labels, with labels=None there are no classes.")
        subdirs = [""]
    filenames, label_list = [], []
    for k, sub in enumerate(subdirs):
        dirpath = os.path.join(directory, sub)
        dirname = os.path.basename(dirpath)
        for root, fname in _walk_files(dirpath, follow_links, formats):
            filenames.append(os.path.join(dirname, os.path.relpath(os.path.join(root, fname), dirpath)))
            label_list.append(k)
    if labels == "inferred":
        labels, class_names = np.asarray(label_list, np.int32), subdirs
    elif labels is None:
        class_names = None
    else:
        if len(labels) != len(filenames):
            raise ValueError(f"Expected the lengths of labels to match the number of files in the target "
                             f"directory. len(labels) is {len(labels)} while we found {len(filenames)} files "
                             f"in directory {directory}.")
        class_names = [str(label) for label in sorted(set(labels))]
    if verbose:
        if labels is None:
            print(f"Found {len(filenames)} files.")
        else:
            print(f"Found {len(filenames)} files belonging to {len(class_names)} classes.")
    file_paths = [os.path.join(directory, f) for f in filenames]
    if shuffle:
        if seed is None:
            seed = np.random.randint(1e6)
        np.random.RandomState(seed).shuffle(file_paths)
        if labels is not None:
            labels = list(labels) if isinstance(labels, tuple) else labels
            np.random.RandomState(seed).shuffle(labels)
    return file_paths, labels, class_names


def training_or_validation_split(samples, labels, validation_split, subset, verbose=True):
    """Keras's rule: the last `int(validation_split * len(samples))` samples are the validation set."""
    if not validation_split:
        return samples, labels
    num_val = int(validation_split * len(samples))
    if num_val == 0:
        raise ValueError(f"validation_split={validation_split} of {len(samples)} files leaves no file for "
                         "validation; use a larger validation_split or more files.")
    if subset == "training":
        if verbose:
            print(f"Using {len(samples) - num_val} files for training.")
        return samples[:-num_val], (labels[:-num_val] if labels is not None else None)
    if subset == "validation":
        if verbose:
            print(f"Using {num_val} files for validation.")
        return samples[-num_val:], (labels[-num_val:] if labels is not None else None)
    raise ValueError(f'subset must be "training" or "validation", received subset={subset!r}')


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None,
                                 color_mode="rgb", batch_size=32, image_size=(256, 256), shuffle=True,
                                 seed=None, validation_split=None, subset=None, interpolation="bilinear",
                                 follow_links=False, crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
                                 data_format=None, verbose=True):
    """Keras's `image_dataset_from_directory`, returning an `ImageDataset` (or, for
    `subset="both"`, the list `[training, validation]`).

    `labels`: "inferred" (from the sub-folders), None, or a list of integer labels, one per file
    in sorted path order. `label_mode`: "int", "categorical", "binary" (exactly 2 classes) or
    None. `class_names` chooses and orders the class sub-folders. `color_mode`: "rgb", "rgba" or
    "grayscale". Images are resized to `image_size` = (height, width) with `interpolation`
    ("bilinear" or "nearest"), optionally without distortion (`crop_to_aspect_ratio` or
    `pad_to_aspect_ratio`). With `validation_split` and `subset`, the shuffled file list is cut
    as in Keras; shuffling then needs a `seed` so both subsets see the same file order. The
    validation part of `subset="both"` is not shuffled. Formats: jpeg, png, bmp, gif (first
    frame); needs Pillow."""
    if labels not in ("inferred", None):
        if not isinstance(labels, (list, tuple)):
            raise ValueError("labels should be 'inferred' (from the sub-folder names), None (no labels), or a "
                             f"list/tuple of integer labels, one per image file; received labels={labels!r}")
        if class_names:
            raise ValueError(f"class_names can only be passed with labels='inferred'; received labels={labels!r} "
                             f"and class_names={class_names!r}")
    if label_mode not in LABEL_MODES:
        raise ValueError(f'label_mode must be one of "int", "categorical", "binary" or None; received '
                         f"label_mode={label_mode!r}")
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    check_color_mode(color_mode)
    image_size = _check_image_size(image_size)
    interpolation = _check_interpolation(interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio)
    _check_batch_size(batch_size)
    check_data_format(data_format)
    check_validation_split(validation_split, subset, shuffle, seed)
    if seed is None:
        seed = np.random.randint(1e6)

    paths, labels, class_names = index_directory(directory, labels, ALLOWLIST_FORMATS, class_names, shuffle,
                                                 seed, follow_links, verbose)
    if not paths:
        raise ValueError(f"No images found in directory {directory}. Allowed formats: {ALLOWLIST_FORMATS}")
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError(f'label_mode="binary" needs exactly 2 classes, found {len(class_names)}: '
                         f"class_names={class_names}. Use label_mode='int' or 'categorical'.")

    def make(p, y, shuffle_):
        if not p:
            raise ValueError(f"No images found in directory {directory}. Allowed formats: {ALLOWLIST_FORMATS}")
        return ImageDataset(p, y, class_names, label_mode, image_size, color_mode, batch_size, shuffle_, seed,
                            interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio, data_format)

    if subset == "both":
        train = make(*training_or_validation_split(paths, labels, validation_split, "training", verbose), shuffle)
        val = make(*training_or_validation_split(paths, labels, validation_split, "validation", verbose), False)
        return [train, val]
    return make(*training_or_validation_split(paths, labels, validation_split, subset, verbose), shuffle)
