"""utils.py with _dataset_utils.py and _progbar.py: text and audio datasets from folders,
timeseries windows, split_dataset, normalize, Config, get_source_inputs / is_keras_tensor,
clear_session and the `lamina.preprocessing` aliases, against Keras where it runs without
TensorFlow, else against Keras's rules written out."""
import random
import wave

import numpy as np
import pytest

import lamina
from lamina import utils
from keras_ref import keras_or_none

TEXTS = {"neg": ["awful", "bad film", "dull\r\nand long", "meh"], "pos": ["great", "loved it", "superb"],
         "zzz": ["noise"]}


@pytest.fixture
def text_dir(tmp_path):
    for cls, texts in TEXTS.items():
        for i, t in enumerate(texts):
            folder = tmp_path / cls / ("deep" if i == 3 else "")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.txt").write_bytes(t.encode("utf-8"))
    (tmp_path / "pos" / "notes.md").write_text("not a .txt file")
    return tmp_path


def _all(ds):
    xs, ys = zip(*ds)
    return np.concatenate(xs), np.concatenate(ys)


def test_text_dataset_batches_labels_and_keras_order(text_dir):
    ds = utils.text_dataset_from_directory(text_dir, batch_size=3, seed=11, verbose=False)
    assert ds.class_names == ["neg", "pos", "zzz"] and len(ds) == 3
    x, y = next(iter(ds))
    assert x.dtype.kind == "U" and x.shape == (3,) and y.dtype == np.int32
    texts, labels = _all(ds)
    by_text = {t: c for c, ts in TEXTS.items() for t in ts}
    by_text["dull\nand long"] = by_text.pop("dull\r\nand long")   # read in text mode, as Keras's grain datasets: "\r\n" becomes "\n"
    assert sorted(texts) == sorted(by_text) and [ds.class_names[i] for i in labels] == [by_text[t] for t in texts]
    k = keras_or_none()
    if k is not None:   # Keras's listing and shuffle of the files (pure Python: runs without TensorFlow)
        from keras.src.utils import dataset_utils
        paths, klabels, names = dataset_utils.index_directory(str(text_dir), "inferred", formats=(".txt",),
                                                              shuffle=True, seed=11, verbose=False)
        assert ds.file_paths == list(paths) and list(ds.labels) == list(klabels) and ds.class_names == names


def test_text_dataset_label_modes_max_length_and_splits(text_dir):
    kw = dict(batch_size=None, shuffle=False, verbose=False)
    texts, cat = _all([(np.asarray([x]), y[None]) for x, y in
                       utils.text_dataset_from_directory(text_dir, label_mode="categorical", max_length=4, **kw)])
    assert cat.shape == (8, 3) and cat.dtype == np.float32 and (cat.sum(1) == 1).all()
    assert max(len(t) for t in texts) == 4 and "bad " in texts
    binary = utils.text_dataset_from_directory(text_dir, label_mode="binary", class_names=["pos", "neg"], **kw)
    assert binary.class_names == ["pos", "neg"] and next(iter(binary))[1].shape == (1,)
    only_texts = list(utils.text_dataset_from_directory(text_dir, labels=None, batch_size=4, verbose=False))
    assert all(isinstance(b, np.ndarray) for b in only_texts) and sum(len(b) for b in only_texts) == 8
    train, val = utils.text_dataset_from_directory(text_dir, validation_split=0.25, subset="both", seed=3,
                                                   verbose=False)
    assert len(train.file_paths) == 6 and len(val.file_paths) == 2
    assert sorted(train.file_paths + val.file_paths) == sorted(utils.text_dataset_from_directory(
        text_dir, verbose=False, seed=3).file_paths)
    alone = utils.text_dataset_from_directory(text_dir, validation_split=0.25, subset="validation", seed=3,
                                              verbose=False)
    assert alone.file_paths == val.file_paths
    # shuffled each epoch, the same files
    a, b = [list(_all(train)[0]) for _ in range(2)]
    assert sorted(a) == sorted(b)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(label_mode="binary"), ValueError, "exactly 2"),
    (dict(label_mode="sparse"), ValueError, "label_mode"),
    (dict(labels="folders"), ValueError, "list/tuple of integer labels"),
    (dict(labels=[0, 1], class_names=["a"]), ValueError, "class_names"),
    (dict(class_names=["pos", "missing"]), ValueError, "did not match"),
    (dict(validation_split=0.2), ValueError, "subset"),
    (dict(validation_split=0.2, subset="training", shuffle=True), ValueError, "seed"),
    (dict(max_length=0), ValueError, "max_length"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(labels=[0, 1, 2]), ValueError, "lengths of labels"),
])
def test_text_dataset_errors(text_dir, kwargs, error, match):
    with pytest.raises(error, match=match):
        utils.text_dataset_from_directory(text_dir, verbose=False, **kwargs)


def test_text_dataset_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        utils.text_dataset_from_directory(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="No text files found"):
        utils.text_dataset_from_directory(tmp_path, verbose=False)
    (tmp_path / "a" / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ValueError, match="not UTF-8"):
        list(utils.text_dataset_from_directory(tmp_path, verbose=False))


def _write_wav(path, samples, rate=8000, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, "<i2").tobytes())


def test_audio_dataset(tmp_path):
    for cls, lengths in (("dog", [5, 3]), ("cat", [4])):
        (tmp_path / cls).mkdir()
        for i, n in enumerate(lengths):
            _write_wav(tmp_path / cls / f"{i}.wav", np.arange(n) * 1000 - 16384)
    ds = utils.audio_dataset_from_directory(tmp_path, batch_size=3, shuffle=False, verbose=False)
    (x, y), = list(ds)
    assert ds.class_names == ["cat", "dog"] and x.shape == (3, 5, 1) and list(y) == [0, 1, 1]
    np.testing.assert_array_equal(x[0, :, 0], (np.r_[np.arange(4) * 1000 - 16384, 0]) / 32768.0)   # zero padded
    cut = utils.audio_dataset_from_directory(tmp_path, batch_size=3, shuffle=False, output_sequence_length=2,
                                             verbose=False)
    assert next(iter(cut))[0].shape == (3, 2, 1)
    ragged, _ = next(iter(utils.audio_dataset_from_directory(tmp_path, batch_size=3, shuffle=False, ragged=True,
                                                             verbose=False)))
    assert [a.shape for a in ragged] == [(4, 1), (5, 1), (3, 1)]
    with pytest.raises(ValueError, match="does not resample"):
        list(utils.audio_dataset_from_directory(tmp_path, sampling_rate=16000, verbose=False))
    with pytest.raises(ValueError, match="Cannot set both"):
        utils.audio_dataset_from_directory(tmp_path, ragged=True, output_sequence_length=3)


def _keras_windows(data, targets, sequence_length, sequence_stride=1, sampling_rate=1, start_index=None,
                   end_index=None):
    """Keras's windows, written out from its timeseries_dataset_from_array (which needs TensorFlow
    or grain to run): start positions 0, stride, ... below end - start - (length - 1) * rate (and
    len(targets)); window p takes data[start:end][p + j * rate], its target targets[start:][p]."""
    start, end = start_index or 0, len(data) if end_index is None else end_index
    num = end - start - (sequence_length - 1) * sampling_rate
    if targets is not None:
        num = min(num, len(targets))
    pos = np.arange(0, num, sequence_stride)
    x = np.stack([data[start:end][p:p + sequence_length * sampling_rate:sampling_rate] for p in pos])
    return x, (None if targets is None else targets[start:][pos])


@pytest.mark.parametrize("kwargs", [
    dict(sequence_length=9),
    dict(sequence_length=9, sampling_rate=2),
    dict(sequence_length=5, sequence_stride=3),
    dict(sequence_length=4, sampling_rate=3, sequence_stride=2, start_index=10, end_index=90),
    dict(sequence_length=3, start_index=5),
])
def test_timeseries_windows_equal_keras(kwargs):
    data = np.arange(100 * 2).reshape(100, 2)
    targets = np.arange(100) * 2
    ds = utils.timeseries_dataset_from_array(data, targets, batch_size=5, **kwargs)
    x, y = _all(ds)
    want_x, want_y = _keras_windows(data, targets, **kwargs)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)
    assert len(ds) == -(-len(want_x) // 5) and all(len(b[0]) == 5 for b in list(ds)[:-1])


def test_timeseries_keras_test_cases():
    # keras/src/utils/timeseries_dataset_utils_test.py: basics, regression, no targets
    data = np.arange(100)
    batches = list(utils.timeseries_dataset_from_array(data, data * 2, sequence_length=9, batch_size=5))
    assert len(batches) == 19 and batches[-1][0].shape == (2, 9)
    for i, (inputs, targets) in enumerate(batches):
        np.testing.assert_array_equal(inputs[:, 0] * 2, targets)
        for j in range(len(inputs)):
            np.testing.assert_array_equal(inputs[j], np.arange(i * 5 + j, i * 5 + j + 9))
    data = np.arange(10)
    pairs = list(utils.timeseries_dataset_from_array(data, data[3:], sequence_length=3, batch_size=1))
    assert len(pairs) == 7 and all((x[0] == data[i:i + 3]).all() and y[0] == data[3 + i]
                                   for i, (x, y) in enumerate(pairs))
    alone = list(utils.timeseries_dataset_from_array(np.arange(50), None, sequence_length=10, batch_size=5))
    assert len(alone) == 9 and alone[-1].shape == (1, 10)
    single = list(utils.timeseries_dataset_from_array(np.arange(6), np.arange(6), sequence_length=2, batch_size=None))
    assert single[0][0].shape == (2,) and single[0][1] == 0 and len(single) == 5


def test_timeseries_shuffle_and_fit():
    data = np.arange(40, dtype=np.float32)
    ds = utils.timeseries_dataset_from_array(data, data * 2, sequence_length=5, batch_size=4, shuffle=True, seed=9)
    want = np.arange(36)
    positions = np.arange(36)
    np.random.RandomState(9).shuffle(positions)   # Keras's shuffle of the window starts
    np.testing.assert_array_equal(ds.start_positions, positions)
    epochs = [_all(ds) for _ in range(2)]
    for x, y in epochs:
        np.testing.assert_array_equal(np.sort(x[:, 0]), want)
        np.testing.assert_array_equal(x[:, 0] * 2, y)
    assert not np.array_equal(epochs[0][0], epochs[1][0])
    again = utils.timeseries_dataset_from_array(data, data * 2, sequence_length=5, batch_size=4, shuffle=True, seed=9)
    np.testing.assert_array_equal(_all(again)[0], epochs[0][0])
    m = lamina.Sequential([lamina.Input((5,)), lamina.layers.Dense(1)])
    m.compile("sgd", "mse")
    history = m.fit(ds, epochs=1, verbose=0)
    assert len(history.history["loss"]) == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(sequence_length=0), "sequence_length"),
    (dict(sequence_length=3, sampling_rate=0), "sampling_rate"),
    (dict(sequence_length=3, sequence_stride=20), "sequence_stride"),
    (dict(sequence_length=3, start_index=-1), "start_index"),
    (dict(sequence_length=3, start_index=5, end_index=4), "end_index"),
    (dict(sequence_length=3, end_index=20), "end_index"),
    (dict(sequence_length=30), "no window fits"),
    (dict(sequence_length=3, batch_size=0), "batch_size"),
])
def test_timeseries_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        utils.timeseries_dataset_from_array(np.arange(20), None, **kwargs)


def test_split_dataset_sizes_contents_and_keras_shuffle():
    x, y = np.arange(10).reshape(10, 1), np.arange(10) * 3
    left, right = utils.split_dataset(x, left_size=0.75)        # round(7.5) = 8, as Keras
    assert left.shape == (8, 1) and right.shape == (2, 1)
    np.testing.assert_array_equal(np.concatenate([left, right])[:, 0], np.arange(10))
    (lx, ly), (rx, ry) = utils.split_dataset([x, y], left_size=3, right_size=4)
    assert len(lx) == 3 and len(rx) == 4 and list(rx[:, 0]) == [6, 7, 8, 9]
    np.testing.assert_array_equal(ly, lx[:, 0] * 3)
    (sx, sy), (tx, ty) = utils.split_dataset((x, y), right_size=0.3, shuffle=True, seed=5)
    order = list(range(10))
    random.Random(5).shuffle(order)   # Keras: random.seed(seed); random.shuffle(samples)
    np.testing.assert_array_equal(np.concatenate([sx, tx])[:, 0], order)
    np.testing.assert_array_equal(np.concatenate([sy, ty]), np.asarray(order) * 3)
    state = random.getstate()
    utils.split_dataset(x, left_size=5, shuffle=True, seed=1)
    assert random.getstate() == state   # Python's global generator is left alone


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(), ValueError, "At least one"),
    (dict(left_size=0, right_size=0), ValueError, "Both"),
    (dict(left_size=10), ValueError, "left_size"),
    (dict(right_size=1.5), ValueError, "right_size"),
    (dict(left_size=0.6, right_size=0.6), ValueError, "greater than 1"),
    (dict(left_size=6, right_size=6), ValueError, "sum of"),
    (dict(left_size="half"), TypeError, "left_size"),
    (dict(left_size=0.01), ValueError, "empty"),
    (dict(left_size=2, preferred_backend="torch"), ValueError, "preferred_backend"),
])
def test_split_dataset_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        utils.split_dataset(np.arange(10), **kwargs)


def test_split_dataset_bad_inputs():
    with pytest.raises(ValueError, match="different lengths"):
        utils.split_dataset((np.arange(4), np.arange(5)), left_size=2)
    with pytest.raises(TypeError, match="numpy array"):
        utils.split_dataset([[1, 2, 3]], left_size=1)
    with pytest.raises(TypeError, match="dicts"):
        utils.split_dataset({"x": np.arange(4)}, left_size=2)


def test_normalize_config_and_symbolic_helpers():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, -1.0]])
    k = keras_or_none()
    for axis, order in ((-1, 2), (0, 1), (1, 3)):
        got = utils.normalize(x, axis, order)
        want = x / np.expand_dims(np.where(np.linalg.norm(x, order, axis) == 0, 1, np.linalg.norm(x, order, axis)),
                                  axis)
        np.testing.assert_allclose(got, want)
        if k is not None and axis != 0:   # Keras's own expands axis 0 as -1 (`axis or -1`) and fails
            np.testing.assert_allclose(got, k.utils.normalize(x, axis, order))
    np.testing.assert_allclose(utils.normalize(lamina.convert_to_tensor(x[:1])).numpy(), [[0.6, 0.8]], rtol=1e-6)
    with pytest.raises(ValueError, match="order"):
        utils.normalize(x, order=0)
    c = utils.Config(lr=0.1, layers=[4, 2])
    c.dropout = 0.5
    assert c.lr == 0.1 and c["dropout"] == 0.5 and list(c) == ["dropout", "layers", "lr"]
    assert c.to_json() == '{"lr": 0.1, "layers": [4, 2], "dropout": 0.5}'
    c.freeze()
    with pytest.raises(ValueError, match="frozen"):
        c.lr = 1.0
    with pytest.raises(AttributeError, match="Unknown attribute 'momentum'"):
        c.momentum
    c.unfreeze()
    c.update(lr=0.2)
    assert c.as_dict()["lr"] == 0.2
    a, b = lamina.Input((3,)), lamina.Input((2,))
    h = lamina.layers.Dense(2)(a)
    out = lamina.layers.Dense(1)(lamina.layers.Concatenate()([h, b, h]))
    assert utils.get_source_inputs(out) == [a, b] and utils.get_source_inputs(a) == [a]
    assert utils.is_keras_tensor(out) and not utils.is_keras_tensor(np.ones(3))
    assert not utils.is_keras_tensor(lamina.convert_to_tensor([1.0]))
    with pytest.raises(ValueError, match="symbolic tensor"):
        utils.get_source_inputs(np.ones(3))
    assert utils.standardize_dtype(np.int64) == "int64" and utils.standardize_dtype(None) == "float32"


def test_clear_session_resets_names_and_logging():
    lamina.layers.Dense(1)
    utils.disable_interactive_logging()
    utils.clear_session()
    assert lamina.layers.Dense(1).name == "dense" and lamina.layers.Dense(1).name == "dense_1"
    assert utils.is_interactive_logging_enabled()


def test_preprocessing_aliases(tmp_path):
    import lamina.preprocessing as pre
    from lamina.preprocessing.image import load_img, smart_resize
    from lamina.preprocessing.sequence import pad_sequences
    assert pre.text_dataset_from_directory is utils.text_dataset_from_directory
    assert pre.image_dataset_from_directory is utils.image_dataset_from_directory
    assert pre.timeseries_dataset_from_array is utils.timeseries_dataset_from_array
    assert load_img is utils.load_img and pad_sequences is utils.pad_sequences
    img = np.random.default_rng(0).uniform(0, 255, (2, 13, 20, 3)).astype(np.float32)
    out = smart_resize(img, (8, 9))
    assert out.shape == (2, 8, 9, 3)
    assert smart_resize(np.moveaxis(img, -1, 1), (8, 9), data_format="channels_first").shape == (2, 3, 8, 9)
    k = keras_or_none()
    if k is not None:
        for interpolation in ("bilinear", "nearest"):
            np.testing.assert_allclose(smart_resize(img[0], (16, 30), interpolation),
                                       np.asarray(k.preprocessing.image.smart_resize(img[0], (16, 30),
                                                                                     interpolation=interpolation)),
                                       rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="size"):
        smart_resize(img, (8,))


class _Inner:
    def __init__(self, rate=0.5):
        self.rate = rate

    def get_config(self):
        return {"rate": self.rate}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class _Outer:
    def __init__(self, inner, name="outer", sizes=(1, 2)):
        self.inner, self.name, self.sizes = inner, name, sizes

    def get_config(self):
        return {"inner": self.inner, "name": self.name, "sizes": self.sizes, "act": lamina.activations.relu}


def test_legacy_serialization_as_keras():
    from lamina.utils.legacy import deserialize_keras_object, serialize_keras_object
    config = serialize_keras_object(_Outer(_Inner(0.25)))
    assert config == {"class_name": "_Outer", "config": {
        "inner": {"class_name": "_Inner", "config": {"rate": 0.25}, "__passive_serialization__": True},
        "name": "outer", "sizes": (1, 2), "act": "relu"}}
    k = keras_or_none()
    if k is not None:
        assert k.utils.legacy.serialize_keras_object(_Outer(_Inner(0.25))) == config
        layer = lamina.layers.Dense(3, activation="relu", kernel_regularizer=lamina.regularizers.L2(0.1), name="d")
        keras_layer = k.layers.Dense(3, activation="relu", kernel_regularizer=k.regularizers.L2(0.1), name="d")
        assert serialize_keras_object(layer) == k.utils.legacy.serialize_keras_object(keras_layer)
    again = deserialize_keras_object(serialize_keras_object(lamina.optimizers.Adam(0.5)))
    assert type(again) is lamina.optimizers.Adam and again.learning_rate == 0.5
    assert deserialize_keras_object("_Inner", module_objects={"_Inner": _Inner}).rate == 0.5   # built with no args
    assert deserialize_keras_object("relu", custom_objects={"relu": lamina.activations.relu}) is \
        lamina.activations.relu
    assert serialize_keras_object(None) is None and deserialize_keras_object(None) is None
    with pytest.raises(ValueError, match="Unknown object: 'nope'"):
        deserialize_keras_object("nope")
    with pytest.raises(ValueError, match="Improper config"):
        deserialize_keras_object({"config": {}})
    with pytest.raises(ValueError, match="get_config"):
        serialize_keras_object(3)
