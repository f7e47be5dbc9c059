"""Reuters newswires for topic classification: 11,228 newswires labelled over 46 topics, each a
list of word ids (words ranked by frequency, 1 the most frequent). `load_data` is Keras's: ids
shifted by `index_from` (3) so that 0 (padding), 1 (`start_char`) and 2 (`oov_char`) stay free;
`get_word_index()` returns the unshifted word -> id mapping and `get_label_names()` the topics."""
import json

import numpy as np

from ._files import fetch
from ._pickle import load_npz
from .imdb import _check_int, _object_array

BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
NPZ_SHA256 = "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"
WORD_INDEX_MD5 = "4d44cc38712099c9e383dc6e5f11a921"   # Keras publishes only an md5 for this file
LABEL_NAMES = (
    "cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing", "money-supply", "coffee", "sugar",
    "trade", "reserves", "ship", "cotton", "carcass", "crude", "nat-gas", "cpi", "money-fx", "interest", "gnp",
    "meal-feed", "alum", "oilseed", "gold", "tin", "strategic-metal", "livestock", "retail", "ipi", "iron-steel",
    "rubber", "heat", "jobs", "lei", "bop", "zinc", "orange", "pet-chem", "dlr", "gas", "silver", "wpi", "hog", "lead",
)


def load_data(path="reuters.npz", num_words=None, skip_top=0, maxlen=None, test_split=0.2, seed=113, start_char=1,
              oov_char=2, index_from=3):
    """Returns `(x_train, y_train), (x_test, y_test)` exactly as Keras does: `x_*` 1-D object arrays
    of lists of word ids, `y_*` int64 topic ids (0..45, see `get_label_names`).

    Keras's steps: one shuffle of all newswires with `np.random.RandomState(seed)`; ids shifted
    by `index_from` and `start_char` prepended (if not None); with `maxlen`, newswires whose length
    (start mark included) is not below `maxlen` are dropped; every id outside `[skip_top,
    num_words)` becomes `oov_char` (or is removed if None), `num_words=None` meaning the largest id
    present (which Keras therefore also replaces); the last `test_split` are the test set. The
    file `reuters/<path>` comes from LAMINA_DATA_DIR or the cache, else from Keras's URL, checked
    against its sha256, and is unpickled with only numpy classes allowed."""
    where = "reuters.load_data"
    _check_int("num_words", num_words, 0, True, where)
    _check_int("skip_top", skip_top, 0, False, where)
    _check_int("maxlen", maxlen, 0, True, where)
    _check_int("index_from", index_from, 0, False, where)
    _check_int("start_char", start_char, 0, True, where)
    _check_int("oov_char", oov_char, 0, True, where)
    if isinstance(test_split, bool) or not isinstance(test_split, (int, float)) or not 0 <= test_split <= 1:
        raise ValueError(f"{where}: test_split must be a number between 0 and 1, received test_split={test_split!r}")
    file = fetch("reuters", path, BASE_URL + "reuters.npz", NPZ_SHA256)
    arrays = load_npz(file)
    missing = {"x", "y"} - set(arrays)
    if missing:
        raise ValueError(f"{file}: expected arrays x and y; missing {sorted(missing)}")
    xs, labels = arrays["x"], arrays["y"]
    if len(xs) != len(labels):
        raise ValueError(f"{file}: x holds {len(xs)} newswires but y {len(labels)} labels")
    indices = np.arange(len(xs))
    np.random.RandomState(seed).shuffle(indices)
    xs, labels = xs[indices], labels[indices]
    head = [start_char] if start_char is not None else []
    xs = [head + [w + index_from for w in x] for x in xs]
    if maxlen:
        keep = [i for i, x in enumerate(xs) if len(x) < maxlen]
        if not keep:
            raise ValueError(f"{where}: no newswire is shorter than maxlen={maxlen}; increase maxlen.")
        xs, labels = [xs[i] for i in keep], labels[keep]
    if not num_words:
        num_words = max((max(x) for x in xs if x), default=0)
    if oov_char is not None:
        xs = [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    else:
        xs = [[w for w in x if skip_top <= w < num_words] for x in xs]
    cut = int(len(xs) * (1 - test_split))
    labels = np.asarray(labels)
    return (_object_array(xs[:cut]), labels[:cut]), (_object_array(xs[cut:]), labels[cut:])


def get_word_index(path="reuters_word_index.json"):
    """Word -> id (1 = most frequent), before `load_data`'s `index_from` shift."""
    file = fetch("reuters", path, BASE_URL + "reuters_word_index.json", WORD_INDEX_MD5)
    with open(file, encoding="utf-8") as f:
        index = json.load(f)
    if not isinstance(index, dict):
        raise ValueError(f"{file}: expected a JSON object mapping words to ids, found {type(index).__name__}")
    return index


def get_label_names():
    """The 46 topic names, in label order (Keras's)."""
    return LABEL_NAMES
