"""IMDB movie reviews for sentiment classification: 25,000 training and 25,000 test reviews,
labelled positive (1) or negative (0), each a list of word ids.

Word ids rank words by frequency (id 1 is the most frequent word in the word index). As in
Keras, `load_data` shifts every id by `index_from` (3) so that 0 (padding), 1 (`start_char`) and
2 (`oov_char`) stay free, and `get_word_index()` returns the unshifted word -> id mapping.
"""
import json

import numpy as np

from ._files import fetch
from ._pickle import load_npz

BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
NPZ_SHA256 = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
WORD_INDEX_MD5 = "bfafd718b763782e994055a2d397834f"  # Keras publishes only an md5 for this file


def _check_int(name, value, minimum, allow_none, where="imdb.load_data"):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}"
                         f"{' or None' if allow_none else ''}, received {name}={value!r}")


def load_data(path="imdb.npz", num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1,
              oov_char=2, index_from=3):
    """Returns `(x_train, y_train), (x_test, y_test)` exactly as Keras does.

    `x_*` are 1-D object arrays of Python lists of word ids, `y_*` int64 arrays of 0/1 labels.
    Steps, in Keras's order: each split is shuffled with `np.random.RandomState(seed)` (train
    first, then test, from the same generator); ids are shifted by `index_from` and
    `start_char` is prepended (if not None); with `maxlen`, reviews whose length (start mark
    included) is not below `maxlen` are dropped, not truncated; finally every id outside
    `[skip_top, num_words)` becomes `oov_char` (or is removed if `oov_char` is None).
    With `num_words=None` the bound is the largest id present, which is therefore itself
    replaced by `oov_char`: a quirk of Keras, kept so that results match it.

    The file `imdb/<path>` is read from LAMINA_DATA_DIR or the cache, else downloaded and checked
    against its sha256. Its arrays are unpickled with only numpy classes allowed."""
    _check_int("num_words", num_words, 0, True)
    _check_int("skip_top", skip_top, 0, False)
    _check_int("maxlen", maxlen, 0, True)
    _check_int("index_from", index_from, 0, False)
    _check_int("start_char", start_char, 0, True)
    _check_int("oov_char", oov_char, 0, True)
    file = fetch("imdb", path, BASE_URL + "imdb.npz", NPZ_SHA256)
    arrays = load_npz(file)
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays)
    if missing:
        raise ValueError(f"{file}: expected arrays x_train, y_train, x_test, y_test; missing {sorted(missing)}")
    x_train, labels_train = arrays["x_train"], arrays["y_train"]
    x_test, labels_test = arrays["x_test"], arrays["y_test"]
    for x, y, split in ((x_train, labels_train, "train"), (x_test, labels_test, "test")):
        if len(x) != len(y):
            raise ValueError(f"{file}: x_{split} holds {len(x)} reviews but y_{split} {len(y)} labels")

    rng = np.random.RandomState(seed)
    indices = np.arange(len(x_train))
    rng.shuffle(indices)
    x_train, labels_train = x_train[indices], labels_train[indices]
    indices = np.arange(len(x_test))
    rng.shuffle(indices)
    x_test, labels_test = x_test[indices], labels_test[indices]

    def shift(x):
        head = [start_char] if start_char is not None else []
        return head + [w + index_from for w in x]

    x_train = [shift(x) for x in x_train]
    x_test = [shift(x) for x in x_test]

    if maxlen:
        keep = [i for i, x in enumerate(x_train) if len(x) < maxlen]
        x_train, labels_train = [x_train[i] for i in keep], labels_train[keep]
        keep = [i for i, x in enumerate(x_test) if len(x) < maxlen]
        x_test, labels_test = [x_test[i] for i in keep], labels_test[keep]
        if not x_train or not x_test:
            raise ValueError(f"imdb.load_data: no review is shorter than maxlen={maxlen} in the "
                             f"{'training' if not x_train else 'test'} set; increase maxlen.")

    xs = x_train + x_test
    if not num_words:
        num_words = max((max(x) for x in xs if x), default=0)
    if oov_char is not None:
        xs = [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    else:
        xs = [[w for w in x if skip_top <= w < num_words] for x in xs]

    n = len(x_train)
    return (_object_array(xs[:n]), np.asarray(labels_train)), (_object_array(xs[n:]), np.asarray(labels_test))


def _object_array(lists):
    # Always 1-D (np.array(lists, dtype=object) would make a 2-D array if all lengths agreed).
    out = np.empty(len(lists), dtype=object)
    for i, seq in enumerate(lists):
        out[i] = seq
    return out


def get_word_index(path="imdb_word_index.json"):
    """Word -> id (1 = most frequent) for the IMDB data, before `load_data`'s `index_from`
    shift: the word with id `i` appears as `i + index_from` in `load_data`'s sequences."""
    file = fetch("imdb", path, BASE_URL + "imdb_word_index.json", WORD_INDEX_MD5)
    with open(file, encoding="utf-8") as f:
        index = json.load(f)
    if not isinstance(index, dict):
        raise ValueError(f"{file}: expected a JSON object mapping words to ids, found {type(index).__name__}")
    return index
