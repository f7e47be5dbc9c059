"""keras.datasets' reuters, boston_housing and california_housing loaders on small files of the
release format: Keras's shuffle, shift, filters and split, checked against Keras's own loaders
(their download replaced by the same file) when keras is installed."""
import hashlib
import json
import os

import numpy as np
import pytest

from lamina.datasets import boston_housing, california_housing, reuters
from keras_ref import keras_or_none

NEWS = [[1, 2, 3], [4, 5], [1, 1, 9, 2, 6], [7], [3, 3, 8], [2, 4, 6, 8, 10, 12], [5, 1]]
TOPICS = [3, 4, 3, 19, 1, 3, 45]


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _objects(lists):
    a = np.empty(len(lists), dtype=object)
    for i, seq in enumerate(lists):
        a[i] = list(seq)
    return a


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMINA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LAMINA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "data"


@pytest.fixture
def news(data_dir, monkeypatch):
    os.makedirs(data_dir / "reuters")
    path = str(data_dir / "reuters" / "reuters.npz")
    np.savez(path, x=_objects(NEWS), y=np.array(TOPICS, np.int64))
    monkeypatch.setattr(reuters, "NPZ_SHA256", _sha(path))
    index = str(data_dir / "reuters" / "reuters_word_index.json")
    with open(index, "w") as f:
        json.dump({"the": 1, "of": 2, "to": 3}, f)
    monkeypatch.setattr(reuters, "WORD_INDEX_MD5", hashlib.md5(open(index, "rb").read()).hexdigest())
    return path


@pytest.fixture
def houses(data_dir, monkeypatch):
    rng = np.random.default_rng(0)
    out = {}
    for mod, name, n, f in ((boston_housing, "boston_housing", 50, 13),
                            (california_housing, "california_housing", 700, 8)):
        os.makedirs(data_dir / name)
        path = str(data_dir / name / f"{name}.npz")
        np.savez(path, x=rng.standard_normal((n, f)), y=rng.uniform(5, 50, n))
        monkeypatch.setattr(mod, "NPZ_SHA256", _sha(path))
        out[name] = path
    return out


def test_reuters_defaults(news):
    (x, y), (xt, yt) = reuters.load_data()
    idx = np.arange(7)
    np.random.RandomState(113).shuffle(idx)
    cut = int(7 * 0.8)
    assert x.dtype == object and x.shape == (cut,) and xt.shape == (7 - cut,)
    np.testing.assert_array_equal(np.concatenate([y, yt]), np.array(TOPICS)[idx])
    # start_char 1, ids + 3; num_words=None: the largest id (12 + 3) becomes oov_char (Keras's quirk)
    for got, i in zip(list(x) + list(xt), idx):
        assert got == [1] + [w + 3 if w + 3 < 15 else 2 for w in NEWS[i]]


def test_reuters_filters(news):
    (x, _), (xt, _) = reuters.load_data(num_words=8, skip_top=4, maxlen=5, test_split=0.5, start_char=None,
                                        oov_char=None, index_from=0, seed=1)
    for seq in list(x) + list(xt):
        assert all(4 <= w < 8 for w in seq)
    assert len(x) + len(xt) == sum(1 for s in NEWS if len(s) < 5)
    assert reuters.get_label_names()[3] == "earn" and len(reuters.get_label_names()) == 46
    assert reuters.get_word_index() == {"the": 1, "of": 2, "to": 3}
    with pytest.raises(ValueError, match="reuters.load_data: num_words must be an integer >= 0"):
        reuters.load_data(num_words=-1)
    with pytest.raises(ValueError, match="no newswire is shorter than maxlen=1"):
        reuters.load_data(maxlen=1)


def test_housing_split_and_errors(houses):
    (x, y), (xt, yt) = boston_housing.load_data()
    assert x.shape == (40, 13) and xt.shape == (10, 13) and y.shape == (40,)
    raw = np.load(houses["boston_housing"])
    idx = np.arange(50)
    np.random.RandomState(113).shuffle(idx)
    np.testing.assert_array_equal(np.concatenate([x, xt]), raw["x"][idx])
    (x, _), (xt, _) = california_housing.load_data(version="small", test_split=0.25, seed=3)
    assert x.shape == (450, 8) and xt.shape == (150, 8)
    assert california_housing.load_data()[0][0].shape == (560, 8)
    with pytest.raises(ValueError, match="version` must be one of 'small', 'large'"):
        california_housing.load_data(version="medium")
    with pytest.raises(ValueError, match="invalid `test_split` argument: 1"):
        boston_housing.load_data(test_split=1)


def test_equal_to_keras(news, houses, monkeypatch):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    import importlib
    for mod_name, path in (("reuters", news), ("boston_housing", houses["boston_housing"]),
                           ("california_housing", houses["california_housing"])):
        kmod = importlib.import_module(f"keras.src.datasets.{mod_name}")
        monkeypatch.setattr(kmod, "get_file", lambda *a, _p=path, **k: _p)
    kw = dict(num_words=10, skip_top=1, maxlen=6, test_split=0.3, seed=5)
    (kx, ky), (kxt, kyt) = keras.datasets.reuters.load_data(**kw)
    (x, y), (xt, yt) = reuters.load_data(**kw)
    assert [list(s) for s in x] == [list(s) for s in kx] and [list(s) for s in xt] == [list(s) for s in kxt]
    np.testing.assert_array_equal(y, ky)
    np.testing.assert_array_equal(yt, kyt)
    assert reuters.get_label_names() == keras.datasets.reuters.get_label_names()
    for ours, theirs, kwargs in ((boston_housing, keras.datasets.boston_housing, {"seed": 7}),
                                 (california_housing, keras.datasets.california_housing, {"version": "small"})):
        for a, b in zip(ours.load_data(**kwargs), theirs.load_data(**kwargs)):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
