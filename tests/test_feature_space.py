"""lamina.utils.FeatureSpace (_feature_space.py), Keras 3's keras.utils.FeatureSpace: every feature
type and crosses against numpy-computed expectations, "concat" and "dict" outputs, the adapt data
forms, models built on get_inputs / get_encoded_features, configs, '.keras' files, the errors; and,
where TensorFlow can be put on the path (LAMINA_TF_PATH, default /tmp/tfsite), Keras's own
FeatureSpace run in a subprocess on the same data."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.utils import FeatureSpace

FLOATS = np.array([0.5, -1.0, 2.0, 3.5, 0.0, 1.25], np.float32)
INTS = np.array([3, 3, 3, 7, 7, 1])
STRINGS = np.array(["b", "b", "a", "c", "c", "c"])


def _data():
    return {"f": FLOATS.tolist(), "fr": FLOATS, "fn": FLOATS, "fd": FLOATS, "i": INTS, "ih": INTS.tolist(),
            "s": STRINGS.tolist(), "sh": STRINGS}


def _space(output_mode="dict", **kw):
    return FeatureSpace(
        features={"f": "float", "fr": FeatureSpace.float_rescaled(scale=2.0, offset=1.0),
                  "fn": "float_normalized", "fd": FeatureSpace.float_discretized(num_bins=4),
                  "i": "integer_categorical", "ih": FeatureSpace.integer_hashed(num_bins=8),
                  "s": "string_categorical", "sh": FeatureSpace.string_hashed(num_bins=8)},
        crosses=[("i", "s"), FeatureSpace.cross(("sh", "fd"), crossing_dim=16)], output_mode=output_mode, **kw)


def _one_hot(ids, depth):
    out = np.zeros((len(ids), depth), np.float32)
    out[np.arange(len(ids)), np.asarray(ids).reshape(-1)] = 1
    return out


def _expected(fs, data):
    """The encoded features numpy computes from the adapted state (and lamina's hash layers)."""
    x = np.asarray(data["fn"], np.float32)
    vocab_i = {3: 1, 7: 2, 1: 3}                 # by count, most frequent first; 0 is the OOV index
    vocab_s = {"c": 1, "b": 2, "a": 3}
    ids_i = np.array([vocab_i.get(int(v), 0) for v in data["i"]])
    ids_s = np.array([vocab_s.get(str(v), 0) for v in data["s"]])
    bounds = fs.preprocessors["fd"].bin_boundaries
    ids_fd = np.digitize(np.asarray(data["fd"], np.float32), np.asarray(bounds, np.float32))
    ih = layers.Hashing(8)(np.asarray(data["ih"]).reshape(-1, 1)).numpy().reshape(-1)
    sh = layers.Hashing(8)(np.asarray(data["sh"]).reshape(-1, 1)).numpy().reshape(-1)
    cross_is = layers.HashedCrossing(32)([ids_i.reshape(-1, 1), ids_s.reshape(-1, 1)]).numpy().reshape(-1)
    cross_shfd = layers.HashedCrossing(16)([sh.reshape(-1, 1), ids_fd.reshape(-1, 1)]).numpy().reshape(-1)
    return {"f": np.asarray(data["f"], np.float32).reshape(-1, 1),
            "fr": (np.asarray(data["fr"], np.float32) * 2 + 1).reshape(-1, 1),
            "fn": ((x - FLOATS.mean()) / FLOATS.std()).reshape(-1, 1),
            "fd": _one_hot(ids_fd, 4), "i": _one_hot(ids_i, 4), "ih": _one_hot(ih, 8), "s": _one_hot(ids_s, 4),
            "sh": _one_hot(sh, 8), "i_X_s": _one_hot(cross_is, 32), "sh_X_fd": _one_hot(cross_shfd, 16)}


def _check_dict(out, want):
    assert sorted(out) == sorted(want)
    for name, w in want.items():
        got = out[name].numpy()
        assert got.dtype == np.float32, name
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6, err_msg=name)


def test_every_feature_type_and_cross_against_numpy():
    fs = _space()
    fs.adapt(_data())
    assert fs.preprocessors["i"].get_vocabulary() == [-1, 3, 7, 1]
    assert fs.preprocessors["s"].get_vocabulary() == ["[UNK]", "c", "b", "a"]
    assert len(fs.preprocessors["fd"].bin_boundaries) == 3
    _check_dict(fs(_data()), _expected(fs, _data()))
    # unseen values: the OOV index of the lookups; the hashes and the crosses as lamina's layers give them
    new = {"f": [9.0], "fr": [9.0], "fn": [9.0], "fd": [9.0], "i": [42], "ih": [42], "s": ["zz"], "sh": ["zz"]}
    out, want = fs(new), _expected(fs, new)
    assert out["i"].numpy()[0, 0] == 1 and out["s"].numpy()[0, 0] == 1
    _check_dict(out, want)


def test_concat_is_the_dict_in_sorted_order_then_the_crosses():
    data = _data()
    fd, fc = _space("dict"), _space("concat")
    fd.adapt(data)
    fc.adapt(data)
    parts = fd(data)
    order = ["f", "fd", "fn", "fr", "i", "ih", "s", "sh", "i_X_s", "sh_X_fd"]
    want = np.concatenate([parts[n].numpy() for n in order], axis=-1)
    out = fc(data)
    assert out.shape == (6, 1 + 4 + 1 + 1 + 4 + 8 + 4 + 8 + 32 + 16)
    assert out.dtype == "float32"
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6, atol=1e-6)
    # one example of scalars: no batch axis, the batch's first row
    single = fc({k: v[0] for k, v in data.items()})
    assert single.shape == (out.shape[1],)
    np.testing.assert_allclose(single.numpy(), want[0], rtol=1e-6, atol=1e-6)
    # (batch, 1) columns and tensors give the same
    cols = {k: (np.asarray(v).reshape(-1, 1) if k in ("s", "sh") else lamina.ops.convert_to_tensor(np.asarray(v)))
            for k, v in data.items()}
    np.testing.assert_allclose(fc(cols).numpy(), want, rtol=1e-6, atol=1e-6)
    one = fd({k: v[0] for k, v in data.items()})
    assert one["i"].shape == (4,) and one["i_X_s"].shape == (32,) and one["f"].shape == (1,)


def test_int_output_modes():
    fs = FeatureSpace(features={"i": FeatureSpace.integer_categorical(output_mode="int"),
                                "s": FeatureSpace.string_hashed(num_bins=8, output_mode="int"),
                                "fd": FeatureSpace.float_discretized(num_bins=None, bin_boundaries=[0.0, 1.0],
                                                                     output_mode="int")},
                      crosses=[FeatureSpace.cross(("i", "s"), crossing_dim=16, output_mode="int")], output_mode="dict")
    fs.adapt({"i": INTS, "s": STRINGS, "fd": FLOATS})
    out = fs({"i": INTS, "s": STRINGS, "fd": FLOATS})
    np.testing.assert_array_equal(out["i"].numpy().reshape(-1), [1, 1, 1, 2, 2, 3])
    np.testing.assert_array_equal(out["fd"].numpy().reshape(-1), np.digitize(FLOATS, [0.0, 1.0]))
    sh = layers.Hashing(8)(STRINGS.reshape(-1, 1)).numpy()
    np.testing.assert_array_equal(out["s"].numpy(), sh)
    cross = layers.HashedCrossing(16)([np.array([1, 1, 1, 2, 2, 3]).reshape(-1, 1), sh]).numpy()
    np.testing.assert_array_equal(out["i_X_s"].numpy(), cross)
    assert all(str(v.dtype).startswith("int") and v.shape == (6, 1) for v in out.values())
    one = fs({"i": 7, "s": "c", "fd": 0.5})
    assert one["i"].shape == (1,) and one["i"].numpy()[0] == 2 and one["fd"].numpy()[0] == 1


def test_discretized_with_boundaries_one_hot_width():
    # Keras one-hot encodes only when num_bins is set; lamina also when the boundaries are given
    fs = FeatureSpace({"x": FeatureSpace.float_discretized(num_bins=None, bin_boundaries=[0.0, 1.0, 2.0])})
    out = fs({"x": [-1.0, 0.5, 1.5, 5.0]})   # nothing to adapt
    np.testing.assert_array_equal(out.numpy(), np.eye(4, dtype=np.float32))


class _Batches(lamina.utils.PyDataset):
    def __init__(self, data, size):
        super().__init__()
        self.data, self.size = data, size

    def __len__(self):
        return -(-len(self.data["i"]) // self.size)

    def __getitem__(self, k):
        return {n: np.asarray(v)[k * self.size:(k + 1) * self.size] for n, v in self.data.items()}


def _batched(data, size):
    return [{n: np.asarray(v)[k:k + size] for n, v in data.items()} for k in range(0, len(data["i"]), size)]


def test_adapt_data_forms_agree():
    data = _data()
    ref = _space("concat")
    ref.adapt(data)
    want = ref(data).numpy()
    pd = pytest.importorskip("pandas")
    forms = {
        "numpy dict": {k: np.asarray(v) for k, v in data.items()},
        "DataFrame": pd.DataFrame({k: np.asarray(v) for k, v in data.items()}),
        "list of dict batches": _batched(data, 4),
        "generator of dict batches": (b for b in _batched(data, 2)),
        "PyDataset": _Batches(data, 4),
        "(batch, 1) columns": {k: np.asarray(v).reshape(-1, 1) for k, v in data.items()},
        "single examples": ({k: np.asarray(v)[i] for k, v in data.items()} for i in range(6)),
    }
    for what, form in forms.items():
        fs = _space("concat")
        fs.adapt(form)
        np.testing.assert_allclose(fs(data).numpy(), want, rtol=1e-5, atol=1e-5, err_msg=what)


def test_adapt_sees_keras_batches():
    """A dict of 1-D columns reaches each preprocessor in (32, 1) batches (Keras's tf.data
    pipeline: from_tensor_slices, batch(32), expand_dims); an iterable's 1-D batches as (b, 1)."""
    seen = []

    class Spy(layers.Normalization):
        def adapt(self, data):
            batches = list(data)
            seen.append([b.shape for b in batches])
            super().adapt(batches)

    fs = FeatureSpace({"x": FeatureSpace.feature("float32", Spy(), "float")})
    fs.adapt({"x": np.arange(70, dtype=np.float32)})
    fs.adapt([{"x": np.arange(5.0)}, {"x": np.arange(3.0)}])
    assert seen == [[(32, 1), (32, 1), (6, 1)], [(5, 1), (3, 1)]]
    mean = np.mean(np.r_[np.arange(5.0), np.arange(3.0)])
    np.testing.assert_allclose(fs.preprocessors["x"].adapt_mean.numpy(), [mean], rtol=1e-6)


def test_no_adapt_needed_and_custom_preprocessor():
    norm = layers.Normalization(mean=12.0, variance=5.0)
    fs = FeatureSpace({"x": FeatureSpace.feature(dtype="float32", preprocessor=norm, output_mode="float"),
                       "h": "integer_hashed",
                       "s": FeatureSpace.feature("string", layers.StringLookup(vocabulary=["a", "b"]), "one_hot")},
                      output_mode="dict")
    out = fs({"x": [2.0, 12.0], "h": [1, 2], "s": ["a", "q"]})   # no adapt: nothing learns from data
    np.testing.assert_allclose(out["x"].numpy(), [[-10 / np.sqrt(5)], [0.0]], rtol=1e-6)
    assert out["h"].shape == (2, 32)
    np.testing.assert_array_equal(out["s"].numpy(), [[0, 1, 0], [1, 0, 0]])


def test_readapt_with_a_new_vocabulary_rebuilds_the_encoders():
    fs = FeatureSpace({"s": "string_categorical"})
    fs.adapt({"s": ["a", "b"]})
    assert fs({"s": ["a"]}).shape == (1, 3)
    fs.adapt({"s": ["a", "b", "c", "d"]})
    out = fs({"s": ["d", "zz"]}).numpy()
    assert out.shape == (2, 5)
    assert fs.get_encoded_features().shape == (None, 5)
    np.testing.assert_array_equal(out.argmax(-1), [fs.preprocessors["s"].get_vocabulary().index("d"), 0])


def test_functional_model_trains_and_predicts_on_a_dict():
    data = _data()
    fs = _space("concat")
    fs.adapt(data)
    inputs = fs.get_inputs()
    assert sorted(inputs) == sorted(data)
    assert {n: (t.shape, t.dtype) for n, t in inputs.items()} == {
        "f": ((None, 1), "float32"), "fr": ((None, 1), "float32"), "fn": ((None, 1), "float32"),
        "fd": ((None, 1), "float32"), "i": ((None, 1), "int32"), "ih": ((None, 1), "int32"),
        "s": ((None, 1), "string"), "sh": ((None, 1), "string")}
    encoded = fs.get_encoded_features()
    assert encoded.shape == (None, 79) and encoded.dtype == "float32"
    dense = layers.Dense(1)
    model = lamina.Model(inputs, dense(encoded))
    x = {k: np.asarray(v).reshape(-1, 1) for k, v in data.items()}
    np.testing.assert_allclose(model.predict(x, verbose=0), dense(fs(data)).numpy(), rtol=1e-5, atol=1e-5)
    y = np.array([[1.0], [0.0], [1.0], [0.0], [1.0], [0.0]], np.float32)
    model.compile(optimizer=lamina.optimizers.Adam(0.05), loss="mse")
    hist = model.fit(x, y, epochs=10, batch_size=3, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    np.testing.assert_allclose(model.predict(x, verbose=0), dense(fs(data)).numpy(), rtol=1e-5, atol=1e-5)
    # dict mode: a dict of encoded symbolic tensors
    fd = _space("dict")
    fd.adapt(data)
    enc = fd.get_encoded_features()
    assert enc["s"].shape == (None, 4) and enc["i_X_s"].shape == (None, 32)


def test_config_round_trip():
    fs = _space("concat", crossing_dim=32, name="space")
    config = fs.get_config()
    assert json.loads(json.dumps(config, default=list))   # plain JSON
    again = FeatureSpace.from_config(config)
    assert again.name == "space" and again.output_mode == "concat"
    assert [c.name for c in again.crosses] == ["i_X_s", "sh_X_fd"]
    assert {n: type(p).__name__ for n, p in again.preprocessors.items()} == \
        {n: type(p).__name__ for n, p in fs.preprocessors.items()}
    assert json.dumps(again.get_config(), default=list) == json.dumps(config, default=list)
    # through lamina's serialization: a copy of a FeatureSpace not adapted yet still needs adapt()
    with pytest.raises(ValueError, match="You need to call `.adapt"):
        lamina.saving.deserialize_keras_object(lamina.saving.serialize_keras_object(fs))(_data())
    # and of an adapted one carries the adapted state (vocabularies, bin boundaries)
    fs.adapt(_data())
    copy = lamina.saving.deserialize_keras_object(lamina.saving.serialize_keras_object(fs))
    assert isinstance(copy, FeatureSpace)
    assert copy.preprocessors["s"].get_vocabulary() == fs.preprocessors["s"].get_vocabulary()
    assert copy.preprocessors["fd"].bin_boundaries == fs.preprocessors["fd"].bin_boundaries
    cross = FeatureSpace.cross(("a", "b"), crossing_dim=8)
    assert type(cross).from_config(cross.get_config()).get_config() == cross.get_config()
    feat = FeatureSpace.integer_categorical(max_tokens=5)
    back = type(feat).from_config(feat.get_config())
    assert back.dtype == "int32" and back.preprocessor.max_tokens == 5 and back.output_mode == "one_hot"


def test_keras_file_round_trip(tmp_path):
    data = _data()
    fs = _space("concat")
    fs.adapt(data)
    want = fs(data).numpy()
    path = str(tmp_path / "fs.keras")
    fs.save(path)
    loaded = lamina.saving.load_model(path)
    assert isinstance(loaded, FeatureSpace)
    np.testing.assert_allclose(loaded(data).numpy(), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loaded.preprocessors["fn"].adapt_mean.numpy(), [FLOATS.mean()], rtol=1e-6)
    path2 = str(tmp_path / "fs2.keras")
    loaded.save(path2)   # saving again after loading
    np.testing.assert_allclose(lamina.saving.load_model(path2)(data).numpy(), want, rtol=1e-6, atol=1e-6)
    model = lamina.Model(loaded.get_inputs(), loaded.get_encoded_features())
    x = {k: np.asarray(v).reshape(-1, 1) for k, v in data.items()}
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-6, atol=1e-6)
    # a model built on the FeatureSpace saves and loads as any model
    head = lamina.Model(fs.get_inputs(), layers.Dense(2)(fs.get_encoded_features()))
    head.save(str(tmp_path / "model.keras"))
    back = lamina.saving.load_model(str(tmp_path / "model.keras"))
    np.testing.assert_allclose(back.predict(x, verbose=0), head.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="cannot be None or empty"):
        FeatureSpace(features={})
    with pytest.raises(ValueError, match="`crossing_dim`"):
        FeatureSpace({"a": "integer_categorical", "b": "integer_categorical"}, crosses=[("a", "b")], crossing_dim=None)
    with pytest.raises(ValueError, match="should be present in the `features` dict"):
        FeatureSpace({"a": "integer_categorical", "b": "integer_categorical"}, crosses=[("a", "nope")])
    with pytest.raises(ValueError, match="for argument `output_mode`"):
        FeatureSpace({"a": "integer_categorical"}, output_mode="unknown")
    with pytest.raises(ValueError, match="invalid feature type for feature 'a'"):
        FeatureSpace({"a": "categorical"})
    with pytest.raises(ValueError, match="`output_mode`"):
        FeatureSpace.integer_categorical(output_mode="multi_hot")
    with pytest.raises(TypeError, match="must be a lamina layer"):
        FeatureSpace.feature("float32", lambda x: x, "float")
    with pytest.raises(ValueError, match="`hashing_dim` must be a positive integer"):
        FeatureSpace({"a": "float"}, hashing_dim=0)
    fs = FeatureSpace({"a": "integer_categorical", "b": "string_categorical"})
    with pytest.raises(ValueError, match="You need to call `.adapt"):
        fs({"a": [0], "b": ["x"]})
    with pytest.raises(ValueError, match="You need to call `.adapt"):
        fs.get_encoded_features()
    with pytest.raises(ValueError, match="You need to call `.adapt"):
        fs.get_inputs()
    with pytest.raises(TypeError, match="expected a dict of arrays or lists"):
        fs.adapt(np.zeros((3, 2)))
    with pytest.raises(TypeError, match="an \\(x, y\\) batch"):
        fs.adapt([({"a": [1], "b": ["x"]}, [0])])
    with pytest.raises(ValueError, match=r"lacks the feature\(s\) \['b'\]"):
        fs.adapt({"a": [1, 2]})
    with pytest.raises(ValueError, match="same number of examples"):
        fs.adapt({"a": [1, 2], "b": ["x"]})
    with pytest.raises(TypeError, match="feature 'b' takes strings"):
        fs.adapt({"a": [1, 2], "b": [1, 2]})
    with pytest.raises(TypeError, match="feature 'a' takes integers"):
        fs.adapt({"a": [1.5, 2.0], "b": ["x", "y"]})
    fs.adapt({"a": [1, 2], "b": ["x", "y"]})
    with pytest.raises(ValueError, match="can only be called with a dict"):
        fs([1, 2])
    with pytest.raises(ValueError, match=r"lacks the feature\(s\) \['b'\]"):
        fs({"a": [1]})
    with pytest.raises(ValueError, match="not features \\(a label column"):
        fs({"a": [1], "b": ["x"], "label": [0]})
    with pytest.raises(ValueError, match="same number of examples"):
        fs({"a": [1, 2], "b": ["x"]})
    with pytest.raises(TypeError, match="symbolic tensor"):
        fs(fs.get_inputs())
    bad = FeatureSpace({"a": FeatureSpace.integer_categorical(output_mode="int"), "b": "float"})
    with pytest.raises(ValueError, match="Cannot concatenate features because feature 'a' has not been encoded"):
        bad.adapt({"a": [1, 2], "b": [0.0, 1.0]})
    with pytest.raises(ValueError, match="must end in '.keras'"):
        fs.save("fs.h5")


# ---- Keras's own FeatureSpace, with TensorFlow (which lamina's tests do not need) -------------------

_TF_PATH = os.environ.get("LAMINA_TF_PATH", "/tmp/tfsite")

_KERAS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from keras.utils import FeatureSpace
    spec = json.load(open(sys.argv[1]))
    data = {k: np.asarray(v) for k, v in spec["data"].items()}
    if spec.get("load"):   # a file lamina wrote
        import keras
        fs = keras.saving.load_model(spec["load"])
        json.dump({"batch": np.asarray(fs(data)).tolist()}, open(sys.argv[2], "w"))
        sys.exit(0)
    fs = FeatureSpace(features={k: v for k, v in spec["features"].items()},
                      crosses=[tuple(c) for c in spec["crosses"]], output_mode="concat")
    ds = tf.data.Dataset.from_tensor_slices(data)
    fs.adapt(ds.batch(spec["batch"]) if spec["batch"] else data)
    out = {"batch": np.asarray(fs(data)).tolist(),
           "single": np.asarray(fs({k: v[0] for k, v in data.items()})).tolist()}
    fs.save(spec["file"])
    json.dump(out, open(sys.argv[2], "w"))
""")


def _keras_run(tmp_path, spec):
    probe = subprocess.run([sys.executable, "-c", "import tensorflow, keras"], capture_output=True,
                           env={**os.environ, "PYTHONPATH": _TF_PATH, "KERAS_BACKEND": "jax"})
    if probe.returncode != 0:
        pytest.skip(f"Keras's FeatureSpace needs TensorFlow; none importable with PYTHONPATH={_TF_PATH}")
    script, spec_path, out_path = tmp_path / "ref.py", tmp_path / "spec.json", tmp_path / "out.json"
    script.write_text(_KERAS_SCRIPT)
    spec_path.write_text(json.dumps(spec))
    run = subprocess.run([sys.executable, str(script), str(spec_path), str(out_path)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": _TF_PATH, "KERAS_BACKEND": "jax"}, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out_path.read_text())


_FEATURES = {"f": "float", "fr": "float_rescaled", "fn": "float_normalized", "fd": "float_discretized",
             "i": "integer_categorical", "ih": "integer_hashed", "s": "string_categorical", "sh": "string_hashed"}


@pytest.mark.parametrize("batch", [None, 16])
def test_same_as_keras(tmp_path, batch):
    rng = np.random.default_rng(0)
    n = 300   # enough values that Discretization's sketch compresses, and batching matters
    data = {"f": rng.normal(size=n).round(3).tolist(), "fr": rng.normal(size=n).round(3).tolist(),
            "fn": (rng.normal(size=n) * 3 + 1).round(3).tolist(), "fd": rng.uniform(-5, 5, size=n).round(3).tolist(),
            "i": rng.integers(0, 12, size=n).tolist(), "ih": rng.integers(0, 1000, size=n).tolist(),
            "s": [f"w{v}" for v in rng.integers(0, 9, size=n)], "sh": [f"t{v}" for v in rng.integers(0, 50, size=n)]}
    crosses = [["i", "s"], ["fd", "sh"]]
    keras_file = str(tmp_path / "keras_fs.keras")
    ref = _keras_run(tmp_path, {"data": data, "features": _FEATURES, "crosses": crosses, "batch": batch,
                                "file": keras_file})
    fs = FeatureSpace(_FEATURES, crosses=[tuple(c) for c in crosses], output_mode="concat")
    fs.adapt(_batched(data, batch) if batch else data)
    out = fs(data).numpy()
    assert out.shape == np.shape(ref["batch"])
    np.testing.assert_allclose(out, np.asarray(ref["batch"], np.float32), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fs({k: v[0] for k, v in data.items()}).numpy(), np.asarray(ref["single"], np.float32),
                               rtol=1e-5, atol=1e-5)
    # the file Keras wrote loads in lamina and encodes the same
    loaded = lamina.saving.load_model(keras_file)
    np.testing.assert_allclose(loaded(data).numpy(), np.asarray(ref["batch"], np.float32), rtol=1e-5, atol=1e-5)
    if batch is None:   # and the file lamina writes loads in Keras and encodes the same
        ours = str(tmp_path / "lamina_fs.keras")
        fs.save(ours)
        back = _keras_run(tmp_path, {"data": data, "load": ours})
        np.testing.assert_allclose(np.asarray(back["batch"], np.float32), out, rtol=1e-5, atol=1e-5)
