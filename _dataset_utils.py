"""Datasets made from folders of files and from arrays, as Keras's `keras.utils`:
`text_dataset_from_directory`, `audio_dataset_from_directory`, `timeseries_dataset_from_array`
and `split_dataset`. The folder datasets list and split files exactly as
`image_dataset_from_directory` does (lamina.datasets.image_folder: Keras's order, shuffle and
split), and, like its `ImageDataset`, are re-iterable objects of numpy batches that `fit`,
`evaluate` and `predict` take directly. Keras returns tf.data or grain datasets; lamina has
neither, so these yield numpy arrays."""
import math
import random as _py_random
import wave

import numpy as np

from .datasets.image_folder import (LABEL_MODES, FolderDataset, _check_batch_size, check_validation_split, index_directory,
                                    training_or_validation_split)

TEXT_FORMATS = (".txt",)
AUDIO_FORMATS = (".wav",)


def _check_positive_int(value, name, where):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{where}: {name} must be a positive integer, received {name}={value!r}")
    return int(value)


def _check_labels_args(labels, label_mode, class_names, what):
    if labels not in ("inferred", None):
        if not isinstance(labels, (list, tuple)):
            raise ValueError(f"The `labels` argument should be a list/tuple of integer labels, of the same size as the "
                             f"number of {what} files in the target directory. If you wish to infer the labels from "
                             'the subdirectory names in the target directory, pass `labels="inferred"`. If you wish '
                             f"to get a dataset that only contains {what} samples (no labels), pass `labels=None`. "
                             f"Received: labels={labels!r}")
        if class_names:
            raise ValueError(f'You can only pass `class_names` if `labels="inferred"`. Received: labels={labels!r}, '
                             f"and class_names={class_names!r}")
    if label_mode not in LABEL_MODES:
        raise ValueError('`label_mode` argument must be one of "int", "categorical", "binary", or None. '
                         f"Received: label_mode={label_mode!r}")


class TextDataset(FolderDataset):
    """Batches of texts, numpy arrays of str (B,), each file's content decoded as UTF-8 and cut
    to its first `max_length` characters (as Keras's grain datasets read them: Python text mode,
    so line endings come as "\\n"); labels as `_FolderDataset` describes."""

    def __init__(self, file_paths, labels, class_names, label_mode="int", batch_size=32, max_length=None,
                 shuffle=False, seed=None):
        super().__init__(file_paths, labels, class_names, label_mode, batch_size, shuffle, seed)
        if max_length is not None:
            max_length = _check_positive_int(max_length, "max_length", "text_dataset_from_directory")
        self.max_length = max_length

    def __repr__(self):
        return (f"TextDataset({len(self.file_paths)} files, {len(self.class_names or [])} classes, "
                f"batch_size={self.batch_size})")

    def load(self, i):
        path = self.file_paths[i]
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read() if self.max_length is None else f.read(self.max_length)
        except UnicodeDecodeError as e:
            raise ValueError(f"text_dataset_from_directory: {path} is not UTF-8 text ({e}); convert it to UTF-8 or "
                             "remove it from the folder") from None
        return np.str_(text)

    def _stack(self, samples):
        return np.asarray(samples, dtype=str)


def text_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, batch_size=32,
                                max_length=None, shuffle=True, seed=None, validation_split=None, subset=None,
                                follow_links=False, verbose=True):
    """Keras's `text_dataset_from_directory` over `.txt` files, one sub-folder per class:
    returns a `TextDataset` of `(texts, labels)` batches (or `[training, validation]` for
    `subset="both"`). Files are listed, shuffled (`np.random.RandomState(seed)`) and split as
    Keras's; `labels`, `label_mode`, `class_names`, `validation_split`, `subset` and
    `follow_links` as for `image_dataset_from_directory`. `max_length` keeps the first
    `max_length` characters of each text. Keras's `format` argument ("tf" or "grain") has no
    equivalent: the batches are numpy arrays."""
    _check_labels_args(labels, label_mode, class_names, "text")
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    _check_batch_size(batch_size)
    if max_length is not None:
        _check_positive_int(max_length, "max_length", "text_dataset_from_directory")
    check_validation_split(validation_split, subset, shuffle, seed)
    if seed is None:
        seed = np.random.randint(1e6)
    paths, labels, class_names = index_directory(directory, labels, TEXT_FORMATS, class_names, shuffle, seed,
                                                 follow_links, verbose)
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError('When passing `label_mode="binary"`, there must be exactly 2 class_names. Received: '
                         f"class_names={class_names}")

    def make(p, y, shuffle_, what=""):
        if not p:
            raise ValueError(f"No {what}text files found in directory {directory}. Allowed format: .txt")
        return TextDataset(p, y, class_names, label_mode, batch_size, max_length, shuffle_, seed)

    if subset == "both":
        train = make(*training_or_validation_split(paths, labels, validation_split, "training", verbose), shuffle,
                     "training ")
        val = make(*training_or_validation_split(paths, labels, validation_split, "validation", verbose), False,
                   "validation ")
        return [train, val]
    return make(*training_or_validation_split(paths, labels, validation_split, subset, verbose), shuffle)


# ---- audio -------------------------------------------------------------------------------------

def read_wav(path, output_sequence_length=None):
    """A 16-bit PCM WAV file as float32 (samples, channels) in [-1, 1) and its sampling rate, as
    tf.audio.decode_wav reads it: `output_sequence_length` cuts the samples or pads them with
    zeros to that length."""
    try:
        with wave.open(path, "rb") as w:
            width, channels, rate, n = w.getsampwidth(), w.getnchannels(), w.getframerate(), w.getnframes()
            frames = w.readframes(n)
    except (wave.Error, EOFError) as e:
        raise ValueError(f"audio_dataset_from_directory: {path} is not a readable WAV file ({e})") from None
    if width != 2:
        raise ValueError(f"audio_dataset_from_directory: {path} holds {8 * width}-bit samples; only 16-bit PCM WAV "
                         "files are read (as tf.audio.decode_wav). Convert it, e.g. `sox in.wav -b 16 out.wav`")
    audio = (np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0).reshape(-1, channels)
    if output_sequence_length is not None:
        audio = audio[:output_sequence_length]
        if len(audio) < output_sequence_length:
            audio = np.concatenate([audio, np.zeros((output_sequence_length - len(audio), channels), np.float32)])
    return audio, rate


class AudioDataset(FolderDataset):
    """Batches of 16-bit PCM WAV files as float32 (B, samples, channels) in [-1, 1): cut or padded
    with zeros to `output_sequence_length`, else padded to the longest file of the batch; with
    `ragged=True` a batch is a list of (samples_i, channels) arrays instead. With
    `sampling_rate`, every file must have that rate (lamina does not resample)."""

    def __init__(self, file_paths, labels, class_names, label_mode="int", batch_size=32, sampling_rate=None,
                 output_sequence_length=None, ragged=False, shuffle=False, seed=None):
        super().__init__(file_paths, labels, class_names, label_mode, batch_size, shuffle, seed)
        self.sampling_rate, self.output_sequence_length, self.ragged = sampling_rate, output_sequence_length, ragged

    def __repr__(self):
        return (f"AudioDataset({len(self.file_paths)} files, {len(self.class_names or [])} classes, "
                f"batch_size={self.batch_size})")

    def load(self, i):
        audio, rate = read_wav(self.file_paths[i], self.output_sequence_length)
        if self.sampling_rate is not None and rate != self.sampling_rate:
            raise ValueError(f"audio_dataset_from_directory: {self.file_paths[i]} is sampled at {rate} Hz, not "
                             f"sampling_rate={self.sampling_rate}; lamina does not resample (Keras does with "
                             "tensorflow-io). Resample the files, or pass sampling_rate=None")
        return audio

    def _stack(self, samples):
        if self.ragged:
            return list(samples)
        channels = {s.shape[1] for s in samples}
        if len(channels) > 1:
            raise ValueError(f"audio_dataset_from_directory: one batch mixes files with {sorted(channels)} channels; "
                             "give every file the same number of channels")
        longest = max(len(s) for s in samples)
        out = np.zeros((len(samples), longest, samples[0].shape[1]), np.float32)
        for i, s in enumerate(samples):
            out[i, :len(s)] = s
        return out


def audio_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, batch_size=32,
                                 sampling_rate=None, output_sequence_length=None, ragged=False, shuffle=True, seed=None,
                                 validation_split=None, subset=None, follow_links=False, verbose=True):
    """Keras's `audio_dataset_from_directory` over 16-bit PCM `.wav` files, one sub-folder per
    class: returns an `AudioDataset` of `(audio, labels)` batches (a tuple `(training,
    validation)` for `subset="both"`, as Keras). Listing, shuffling and splitting as
    `image_dataset_from_directory`. `sampling_rate` is checked, not resampled to."""
    _check_labels_args(labels, label_mode, class_names, "audio")
    if ragged and output_sequence_length is not None:
        raise ValueError("Cannot set both `ragged` and `output_sequence_length`")
    if sampling_rate is not None:
        _check_positive_int(sampling_rate, "sampling_rate", "audio_dataset_from_directory")
    if output_sequence_length is not None:
        _check_positive_int(output_sequence_length, "output_sequence_length", "audio_dataset_from_directory")
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    _check_batch_size(batch_size)
    check_validation_split(validation_split, subset, shuffle, seed)
    if seed is None:
        seed = np.random.randint(1e6)
    paths, labels, class_names = index_directory(directory, labels, AUDIO_FORMATS, class_names, shuffle, seed,
                                                 follow_links, verbose)
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError('When passing `label_mode="binary"`, there must be exactly 2 class_names. Received: '
                         f"class_names={class_names}")

    def make(p, y, shuffle_, what=""):
        if not p:
            raise ValueError(f"No {what}audio files found in directory {directory}. Allowed format(s): {AUDIO_FORMATS}")
        return AudioDataset(p, y, class_names, label_mode, batch_size, sampling_rate, output_sequence_length, ragged,
                            shuffle_, seed)

    if subset == "both":
        train = make(*training_or_validation_split(paths, labels, validation_split, "training", verbose), shuffle,
                     "training ")
        val = make(*training_or_validation_split(paths, labels, validation_split, "validation", verbose), False,
                   "validation ")
        return train, val
    return make(*training_or_validation_split(paths, labels, validation_split, subset, verbose), shuffle)


# ---- time series ---------------------------------------------------------------------------------

class TimeseriesDataset:
    """Batches of sliding windows over `data` (B, sequence_length) + data.shape[1:], with the
    target of each window's first step when there are targets (`(windows, targets)` batches).
    Re-iterable; `len(ds)` is the number of batches; `start_positions` are the windows' first
    steps, relative to `start_index`, in the order they are served."""

    def __init__(self, data, targets, start_positions, sequence_length, sampling_rate, batch_size, shuffle, seed,
                 start_index):
        self.data, self.targets = data, targets
        self.start_positions = start_positions
        self.sequence_length, self.sampling_rate = sequence_length, sampling_rate
        self.batch_size, self.shuffle, self.start_index = batch_size, shuffle, start_index
        self._rng = np.random.default_rng(seed)
        self._offsets = np.arange(sequence_length) * sampling_rate

    def __len__(self):
        n = len(self.start_positions)
        return n if self.batch_size is None else math.ceil(n / self.batch_size)

    def __repr__(self):
        return (f"TimeseriesDataset({len(self.start_positions)} windows of {self.sequence_length} steps, "
                f"batch_size={self.batch_size})")

    def _windows(self, positions):
        steps = self.start_index + positions
        x = self.data[steps[:, None] + self._offsets]
        return x if self.targets is None else (x, self.targets[steps])

    def __iter__(self):
        positions = self.start_positions
        if self.shuffle:   # a new order of the windows each epoch
            positions = positions[self._rng.permutation(len(positions))]
        if self.batch_size is None:
            for p in positions:
                out = self._windows(np.asarray([p]))
                yield out[0] if self.targets is None else (out[0][0], out[1][0])
            return
        for s in range(0, len(positions), self.batch_size):
            yield self._windows(positions[s:s + self.batch_size])


def _as_array(x, name):
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError(f"timeseries_dataset_from_array: {name} must be an array with time steps along its first "
                         f"axis, received a scalar {x!r}")
    return x


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1, sampling_rate=1, batch_size=128,
                                  shuffle=False, seed=None, start_index=None, end_index=None):
    """Keras's `timeseries_dataset_from_array`: sliding windows over `data` (time steps along the
    first axis). Window i takes the steps `start_index + p_i + j * sampling_rate` for j <
    `sequence_length`, with p_i = 0, `sequence_stride`, 2 * `sequence_stride`, ... as long as the
    window ends before `end_index` (and p_i < len(targets)); its target is
    `targets[start_index + p_i]`. Returns a `TimeseriesDataset` of `(windows, targets)` batches
    (windows alone when `targets` is None). With `shuffle`, the window order is shuffled with
    `np.random.RandomState(seed)` as Keras's, then anew each epoch (Keras's tf.data buffer
    shuffle cannot be reproduced without TensorFlow). Keras's `format` argument has no
    equivalent: the batches are numpy arrays."""
    where = "timeseries_dataset_from_array"
    data = _as_array(data, "data")
    if targets is not None:
        targets = _as_array(targets, "targets")
    sequence_length = _check_positive_int(sequence_length, "sequence_length", where)
    sequence_stride = _check_positive_int(sequence_stride, "sequence_stride", where)
    sampling_rate = _check_positive_int(sampling_rate, "sampling_rate", where)
    if batch_size is not None:
        batch_size = _check_positive_int(batch_size, "batch_size", where)
    for name, value in (("start_index", start_index), ("end_index", end_index)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
            raise ValueError(f"{where}: {name} must be an int or None, received {name}={value!r}")
    n = len(data)
    if start_index:
        if start_index < 0:
            raise ValueError(f"`start_index` must be 0 or greater. Received: start_index={start_index}")
        if start_index >= n:
            raise ValueError(f"`start_index` must be lower than the length of the data. Received: "
                             f"start_index={start_index}, for data of length {n}")
    if end_index:
        if start_index and end_index <= start_index:
            raise ValueError(f"`end_index` must be higher than `start_index`. Received: start_index={start_index}, "
                             f"and end_index={end_index}")
        if end_index >= n:
            raise ValueError(f"`end_index` must be lower than the length of the data. Received: "
                             f"end_index={end_index}, for data of length {n}")
        if end_index <= 0:
            raise ValueError(f"`end_index` must be higher than 0. Received: end_index={end_index}")
    if sampling_rate >= n:
        raise ValueError(f"`sampling_rate` must be lower than the length of the data. Received: "
                         f"sampling_rate={sampling_rate}, for data of length {n}")
    if sequence_stride >= n:
        raise ValueError(f"`sequence_stride` must be lower than the length of the data. Received: "
                         f"sequence_stride={sequence_stride}, for data of length {n}")
    start = start_index or 0
    end = n if end_index is None else end_index
    num_seqs = end - start - (sequence_length - 1) * sampling_rate
    if targets is not None:
        num_seqs = min(num_seqs, len(targets))
    if num_seqs <= 0:
        raise ValueError(f"{where}: no window fits: a window spans (sequence_length - 1) * sampling_rate + 1 = "
                         f"{(sequence_length - 1) * sampling_rate + 1} steps, but there are {end - start} steps "
                         f"between start_index={start} and end_index={end}"
                         + (f" (and {len(targets)} targets)" if targets is not None else "")
                         + ". Use a shorter sequence_length or sampling_rate, or more data.")
    positions = np.arange(0, num_seqs, sequence_stride, dtype=np.int64)
    if targets is not None and start + positions[-1] >= len(targets):
        raise ValueError(f"{where}: window {len(positions) - 1} starts at step {start + positions[-1]} but targets has "
                         f"{len(targets)} entries; targets[i] is the target of the window starting at data[i], so "
                         "targets needs an entry for every window start")
    if shuffle:
        if seed is None:
            seed = np.random.randint(1e6)
        np.random.RandomState(seed).shuffle(positions)
    return TimeseriesDataset(data, targets, positions, sequence_length, sampling_rate, batch_size, shuffle, seed, start)


# ---- split_dataset -------------------------------------------------------------------------------

def _split_sizes(left_size, right_size, total_length):
    """Keras's _rescale_dataset_split_sizes: ints are counts, floats fractions of the total."""
    def kind(v):
        if v is None:
            return None
        if isinstance(v, (bool, np.bool_)):
            return "bad"
        if isinstance(v, (int, np.integer)):
            return int
        if isinstance(v, (float, np.floating)):
            return float
        return "bad"
    lk, rk = kind(left_size), kind(right_size)
    if lk == "bad" or rk == "bad":
        bad = [f"{n}={v!r} ({type(v).__name__})" for n, v, k in (("left_size", left_size, lk),
                                                                  ("right_size", right_size, rk)) if k == "bad"]
        raise TypeError(f"split_dataset: left_size and right_size must be an int (a number of samples), a float (a "
                        f"fraction) or None; received {', '.join(bad)}")
    if left_size is None and right_size is None:
        raise ValueError("At least one of the `left_size` or `right_size` must be specified. Received: "
                         "left_size=None and right_size=None")
    if left_size == 0 and right_size == 0:
        raise ValueError("Both `left_size` and `right_size` are zero. At least one of the split sizes must be "
                         "non-zero.")
    for name, v, k in (("left_size", left_size, lk), ("right_size", right_size, rk)):
        if k is int and (v <= 0 or v >= total_length) or k is float and (v <= 0 or v >= 1):
            raise ValueError(f"`{name}` should be either a positive integer smaller than {total_length}, or a float "
                             f"within the range `[0, 1]`. Received: {name}={v}")
    if lk is float and rk is float and left_size + right_size > 1:
        raise ValueError("The sum of `left_size` and `right_size` is greater than 1. It must be less than or equal "
                         "to 1.")
    left = round(left_size * total_length) if lk is float else left_size
    right = round(right_size * total_length) if rk is float else right_size
    if left is None:
        left = total_length - right
    elif right is None:
        right = total_length - left
    if left + right > total_length:
        raise ValueError(f"The sum of `left_size` and `right_size` should be smaller than the {total_length}. "
                         f"Received: left_size + right_size = {left + right} and total_length = {total_length}")
    for side, size in (("left", left), ("right", right)):
        if size == 0:
            raise ValueError(f"With `dataset` of length={total_length}, `left_size`={left} and `right_size`={right}. "
                             f"Resulting {side} side dataset split will be empty. Adjust any of the aforementioned "
                             "parameters")
    return int(left), int(right)


def split_dataset(dataset, left_size=None, right_size=None, shuffle=False, seed=None, preferred_backend=None):
    """Keras's `split_dataset` for arrays: `dataset` is an array, or a tuple/list of arrays of the
    same length (e.g. `(x, y)`), split along the first axis into `(left, right)` of the same
    structure (a list becomes a tuple, as in Keras). `left_size` / `right_size`: an int (samples)
    or a float (a fraction, rounded); one of them may be None (the rest of the data). With
    `shuffle` the samples are shuffled first, in the order Keras's `random.seed(seed)` +
    `random.shuffle` gives (without touching Python's global generator). The left split is the
    first `left_size` samples, the right split the last `right_size`. Keras's
    `preferred_backend` picks tf.data or torch outputs; lamina returns numpy arrays, so only None
    is accepted."""
    if preferred_backend is not None:
        raise ValueError(f"split_dataset: preferred_backend={preferred_backend!r} asks for tf.data or torch datasets; "
                         "lamina returns numpy arrays (pass them to fit as they are). Pass preferred_backend=None")
    structure = type(dataset)
    if isinstance(dataset, (tuple, list)):
        if not dataset:
            raise ValueError("split_dataset: received an empty list/tuple; provide a non-empty tuple of arrays, e.g. "
                             "(x, y)")
        arrays = [_split_array(a, f"element {i}") for i, a in enumerate(dataset)]
        lengths = {len(a) for a in arrays}
        if len(lengths) > 1:
            raise ValueError(f"split_dataset: the arrays have different lengths {[len(a) for a in arrays]}; every "
                             "array must hold one entry per sample")
    elif isinstance(dataset, dict):
        raise TypeError("split_dataset: dicts are not supported (as in Keras); pass an array or a tuple of arrays")
    else:
        arrays = [_split_array(dataset, "dataset")]
    total = len(arrays[0])
    if total == 0:
        raise ValueError("split_dataset: received an empty dataset. Argument `dataset` must hold at least one sample")
    left, right = _split_sizes(left_size, right_size, total)
    order = list(range(total))
    if shuffle:
        if seed is None:
            seed = _py_random.randint(0, int(1e6))
        _py_random.Random(seed).shuffle(order)
    order = np.asarray(order)
    left_idx, right_idx = order[:left], order[total - right:]
    if structure in (tuple, list):
        return tuple(a[left_idx] for a in arrays), tuple(a[right_idx] for a in arrays)
    return arrays[0][left_idx], arrays[0][right_idx]


def _split_array(a, name):
    if hasattr(a, "numpy") and not isinstance(a, np.ndarray):
        a = a.numpy()
    if not isinstance(a, np.ndarray):
        raise TypeError(f"split_dataset: {name} must be a numpy array (or a lamina Tensor), received "
                        f"{type(a).__name__}; convert it with np.asarray")
    if a.ndim == 0:
        raise ValueError(f"split_dataset: {name} is a scalar; it needs a first axis of samples")
    return a
