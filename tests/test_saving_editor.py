"""lamina.saving.KerasFileEditor (saving_editor.py), as Keras's keras.saving.KerasFileEditor: open a
'.keras' or '.weights.h5' file, summary(), compare(model), rename/delete/add objects and weights,
save()/resave_weights(), and the edited file loads into the changed model (lamina's and Keras's)."""
import json
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.saving import FileFormatError, KerasFileEditor
from keras_ref import keras_or_none


def _source_model(lib=lamina):
    inputs = lib.Input((2,))
    x = lib.layers.Dense(3, name="mydense")(inputs)
    outputs = lib.layers.Dense(3, name="output_layer")(x)
    return lib.Model(inputs, outputs)


def _target_model(lib=lamina):
    inputs = lib.Input((2,))
    x = lib.layers.Dense(3, name="mydense")(inputs)
    x = lib.layers.Dense(3, name="myotherdense")(x)
    outputs = lib.layers.Dense(3, name="output_layer")(x)
    return lib.Model(inputs, outputs)


def _weights(model, name):
    return [np.asarray(w) for w in model.get_layer(name).get_weights()]


@pytest.fixture
def saved(tmp_path):
    model = _source_model()
    path = str(tmp_path / "my_model.keras")
    model.save(path)
    return model, path


def test_keras_basics_scenario(saved, tmp_path, capsys):
    """Keras's own file_editor_test scenario, with the counts done once (Keras overcounts matches)."""
    model, path = saved
    editor = KerasFileEditor(path)
    out = capsys.readouterr().out
    assert f"Keras model file '{path}'" in out and "Saved with Keras 3.15.1 - date: " in out
    target = _target_model()

    assert editor.compare(model) == {"status": "success", "error_count": 0, "match_count": 4}
    out = editor.compare(target)
    assert out == {"status": "error", "error_count": 1, "match_count": 4}

    kernel = np.random.default_rng(0).random((3, 3)).astype("float32")
    editor.add_object("layers/dense_3", weights={"0": kernel})
    assert editor.compare(target)["error_count"] == 2

    editor.rename_object("dense_3", "dense_4")
    editor.rename_object("layers/dense_4", "dense_2")
    bias = np.arange(3, dtype="float32")
    editor.add_weights("dense_2", weights={"1": bias})
    assert editor.compare(target) == {"status": "success", "error_count": 0, "match_count": 6}

    editor.add_object("layers/dense_3", weights={"0": np.zeros((3, 3))})
    out = editor.compare(target)
    assert (out["status"], out["error_count"]) == ("error", 1)
    editor.delete_object("layers/dense_3")
    assert editor.compare(target)["status"] == "success"

    resaved = str(tmp_path / "resaved.weights.h5")
    editor.save(resaved)
    target.load_weights(resaved)
    # the file: dense = mydense, dense_1 = output_layer's weights, dense_2 = the added layer; in the
    # target, paths follow the layer order: dense_1 is myotherdense, dense_2 is output_layer
    for a, b in zip(_weights(target, "mydense"), _weights(model, "mydense")):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(_weights(target, "myotherdense")[0], _weights(model, "output_layer")[0])
    np.testing.assert_array_equal(_weights(target, "output_layer")[0], kernel)
    np.testing.assert_array_equal(_weights(target, "output_layer")[1], bias)

    editor = KerasFileEditor(resaved)
    assert editor.metadata is None and editor.config is None
    assert editor.compare(target)["status"] == "success"
    editor.delete_weight("dense_2", "1")
    assert editor.compare(target)["error_count"] == 1
    editor.add_weights("dense_2", {"1": np.zeros((7,))})
    out = editor.compare(target)
    assert (out["status"], out["error_count"]) == ("error", 1)
    assert "Weight shape mismatch for layers/dense_2/1" in capsys.readouterr().out
    editor.delete_weight("dense_2", "1")
    editor.add_weights("dense_2", {"1": np.zeros((3,))})
    assert editor.compare(target)["status"] == "success"


def test_insert_a_layer_by_renaming_and_load_the_values(saved, tmp_path):
    """The typical use: a layer inserted in the middle of the model shifts the saved paths; rename the
    later ones, add the new one, and the old file loads into the new model."""
    model, path = saved
    target = _target_model()
    editor = KerasFileEditor(path)
    editor.rename_object("layers/dense_1", "dense_2")          # output_layer is now the third Dense
    new_kernel = np.full((3, 3), 0.5, "float32")
    new_bias = np.array([1.0, 2.0, 3.0], "float32")
    editor.add_object("layers/dense_1", {"0": new_kernel, "1": new_bias})
    assert editor.compare(target)["status"] == "success"
    out = str(tmp_path / "edited.weights.h5")
    editor.resave_weights(out)
    target.load_weights(out)
    for a, b in zip(_weights(target, "mydense"), _weights(model, "mydense")):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_weights(target, "output_layer"), _weights(model, "output_layer")):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(_weights(target, "myotherdense")[0], new_kernel)
    np.testing.assert_array_equal(_weights(target, "myotherdense")[1], new_bias)
    x = np.random.default_rng(1).random((4, 2)).astype("float32")
    want = np.asarray(model.get_layer("mydense")(x)) @ new_kernel + new_bias
    want = want @ _weights(model, "output_layer")[0] + _weights(model, "output_layer")[1]
    np.testing.assert_allclose(np.asarray(target.predict(x, verbose=0)), want, rtol=1e-5, atol=1e-6)
    # the saved objects keep their "name" attributes (Keras's editor drops them)
    with h5py.File(out, "r") as h5:
        assert h5["layers/dense/vars"].attrs["name"] == "mydense"
        assert h5["layers/dense_2/vars"].attrs["name"] == "output_layer"   # moved with the rename
        assert "name" not in h5["layers/dense_1/vars"].attrs               # added: nothing known
        assert "vars" in h5                                                  # the model's root group


def test_summary_prints_the_tree_in_text(saved, capsys):
    _, path = saved
    editor = KerasFileEditor(path)
    capsys.readouterr()
    editor.summary()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Weights structure"
    assert out[1:] == [
        "  └─ layers",
        "      ├─ dense ('mydense')",
        "      │   ├─ 0: shape=(2, 3), dtype=float32",
        "      │   └─ 1: shape=(3,), dtype=float32",
        "      └─ dense_1 ('output_layer')",
        "          ├─ 0: shape=(3, 3), dtype=float32",
        "          └─ 1: shape=(3,), dtype=float32",
    ]
    editor.delete_weight("layers/dense_1", "0")
    editor.delete_weight("layers/dense_1", "1")
    editor.summary()
    assert "dense_1 ('output_layer') (no weights: not written)" in capsys.readouterr().out


def test_compare_reports_each_kind_of_mismatch(saved, capsys):
    _, path = saved
    editor = KerasFileEditor(path)
    editor.delete_weight("layers/dense", "1")
    editor.add_weights("layers/dense_1", {"0": np.zeros((5, 3), "float32"), "2": np.zeros(())})
    capsys.readouterr()
    out = editor.compare(_source_model())
    text = capsys.readouterr().out
    assert out == {"status": "error", "error_count": 3, "match_count": 2}
    assert "...Weight layers/dense/1 present in reference model, missing from saved file" in text
    assert "...Weight shape mismatch for layers/dense_1/0\n    In reference model: shape=(3, 3)\n" \
           "    In saved file: shape=(5, 3)" in text
    assert "...Weight layers/dense_1/2 present in saved file, missing from reference model" in text
    assert "Found 3 errors: saved file is not compatible with the reference model" in text

    # a whole object missing on either side, and the optimizer of a compiled model
    model = lamina.Sequential([lamina.Input((2,)), layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    capsys.readouterr()
    out = editor.compare(model)
    text = capsys.readouterr().out
    assert "...Object optimizer present in reference model, missing from saved file" in text
    assert "In reference model, optimizer contains the following keys: ['0', '1']" in text
    assert "...Object layers/dense_1 present in saved file, missing from reference model" in text
    with pytest.raises(ValueError, match="expects the lamina model"):
        editor.compare("not a model")


def test_nested_objects_and_optimizer_round_trip(tmp_path):
    """A Bidirectional LSTM's weights sit below groups with empty `vars` (Keras's editor drops them)
    and a trained model's optimizer state is kept: the resaved file restores everything."""
    inp = lamina.Input((3, 2))
    x = layers.Bidirectional(layers.LSTM(4))(inp)
    model = lamina.Model(inp, layers.Dense(1)(x))
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.random((8, 3, 2)), rng.random((8, 1)), epochs=2, verbose=0)
    path = str(tmp_path / "rnn.keras")
    model.save(path)
    editor = KerasFileEditor(path)
    cell = editor.weights_dict["layers"]["bidirectional"]["forward_layer"]["cell"]
    assert sorted(cell) == ["0", "1", "2"]
    assert editor.weights_dict["optimizer"]["0"].shape == ()
    assert editor.object_metadata["/layers/bidirectional/forward_layer/cell"]["name"] == "lstm_cell"
    # 2 cells x 3 + the Dense's 2, and Adam's iteration count, learning rate and 2 slots for each of those 8
    assert len(lamina.tree.flatten(editor.weights_dict)) == 6 + 2 + (2 + 2 * 8)
    assert editor.compare(model)["status"] == "success"

    out = str(tmp_path / "rnn.weights.h5")
    editor.resave_weights(out)
    other = lamina.models.clone_model(model)
    other.compile(optimizer="adam", loss="mse")
    other.optimizer.build(other.trainable_weights)
    other.load_weights(out)
    for a, b in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(other.optimizer.iterations) == int(model.optimizer.iterations) == 2


def test_save_keras_file_keeps_config_and_loads(tmp_path):
    model = lamina.Sequential([lamina.Input((4,)), layers.Dense(2, name="d")])
    path = str(tmp_path / "m.keras")
    model.save(path)
    editor = KerasFileEditor(path)
    kernel = np.arange(8, dtype="float32").reshape(4, 2)
    editor.add_weights("layers/dense", {"0": kernel})   # replaces the saved kernel, as Keras's update does
    editor.metadata["date_saved"] = "old"
    editor.save(path)                                   # over the opened file: it was read whole
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    loaded = lamina.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded.get_layer("d").kernel), kernel)
    np.testing.assert_array_equal(np.asarray(loaded.get_layer("d").bias), np.asarray(model.get_layer("d").bias))
    with zipfile.ZipFile(path) as z:
        assert z.namelist()[:3] == ["metadata.json", "config.json", "model.weights.h5"]
        meta = json.loads(z.read("metadata.json"))
        assert meta["keras_version"] == "3.15.1" and meta["date_saved"] != "old"
        assert json.loads(z.read("config.json"))["class_name"] == "Sequential"

    with pytest.raises(ValueError, match=r"expected a `\.weights\.h5` extension.*save\('x\.keras'\)"):
        editor.resave_weights(str(tmp_path / "w.keras"))
    editor.resave_weights(str(tmp_path / "w.weights.h5"))
    weights_only = KerasFileEditor(str(tmp_path / "w.weights.h5"))
    with pytest.raises(ValueError, match="needs the model's config.*Save to a '.weights.h5' file"):
        weights_only.save(str(tmp_path / "again.keras"))
    with pytest.raises(ValueError, match=r"expected a `\.weights\.h5` extension .*Received: filepath=.*\.h5"):
        weights_only.save(str(tmp_path / "legacy.h5"))


def test_atomic_write_keeps_the_old_file_on_failure(saved, tmp_path, monkeypatch):
    _, path = saved
    editor = KerasFileEditor(path)
    out = str(tmp_path / "out.weights.h5")
    editor.save(out)
    before = open(out, "rb").read()

    def boom(h5):
        h5.create_group("partial")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(editor, "_fill", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        editor.save(out)
    assert open(out, "rb").read() == before
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_edited_file_with_a_wrong_shape_fails_to_load_clearly(saved, tmp_path):
    _, path = saved
    editor = KerasFileEditor(path)
    editor.add_weights("layers/dense", {"0": np.zeros((5, 3), "float32")})
    out = str(tmp_path / "bad.weights.h5")
    editor.save(out)
    with pytest.raises(ValueError, match=r"mydense.*expected shape \(2, 3\), the file has shape \(5, 3\)"):
        _source_model().load_weights(out)


def test_errors_for_paths_names_and_arguments(saved):
    _, path = saved
    editor = KerasFileEditor(path)
    with pytest.raises(ValueError, match=r"Path 'layers/dense_9' not found in the file: 'layers' has no 'dense_9' "
                                         r"\(it holds \['dense', 'dense_1'\]\)"):
        editor.delete_object("layers/dense_9")
    with pytest.raises(ValueError, match=r"Path 'blocks/dense' not found.*top level of the file has no 'blocks' "
                                         r"\(it holds \['layers'\]\).*editor.summary\(\)"):
        editor.rename_object("blocks/dense", "x")
    with pytest.raises(ValueError, match="Name 'dense_9' does not appear in the file.*editor.summary"):
        editor.delete_object("dense_9")
    with pytest.raises(ValueError, match=r"Name '0' occurs 2 times in the file: at 'layers/dense/0', "
                                         r"'layers/dense_1/0'\. Pass the complete path"):
        editor.delete_object("0")
    with pytest.raises(ValueError, match=r"`new_name` should be a leaf name.*Received: new_name='layers/x'"):
        editor.rename_object("dense", "layers/x")
    with pytest.raises(ValueError, match=r"'layers/dense_1' exists already\. Delete it first"):
        editor.rename_object("dense", "dense_1")
    with pytest.raises(ValueError, match=r"Weight 7 not found in object layers/dense\. Weights found: \['0', '1'\]"):
        editor.delete_weight("dense", "7")
    with pytest.raises(ValueError, match=r"'layers/dense/0' is a weight \(shape=\(2, 3\)\), not an object"):
        editor.add_weights("layers/dense/0", {"1": np.zeros(3)})
    with pytest.raises(ValueError, match="'layers/dense' is an object, not a weight: remove it with"):
        editor.delete_weight("layers", "dense")
    with pytest.raises(ValueError, match=r"`weights` should be a dict.*Received: type\(weights\)=<class 'list'>"):
        editor.add_weights("dense", [np.zeros(3)])
    with pytest.raises(ValueError, match="`weights` of add_object.*is empty"):
        editor.add_object("layers/new", {})
    with pytest.raises(ValueError, match="Weight '0' of add_object.*array of numbers.*dtype <U"):
        editor.add_object("layers/new", {"0": np.array(["a", "b"])})
    with pytest.raises(ValueError, match="names of weights and objects should be non-empty strings without '/'"):
        editor.add_object("layers/new", {"a/b": np.zeros(2)})
    with pytest.raises(ValueError, match="add_weights adds arrays.*use add_object"):
        editor.add_weights("dense", {"2": {"0": np.zeros(2)}})
    with pytest.raises(ValueError, match=r"Path 'blocks/new' not found.*top level of the file has no 'blocks'"):
        editor.add_object("blocks/new", {"0": np.zeros(2)})
    with pytest.raises(ValueError, match="goes through 'layers/dense/0', which is a weight"):
        editor.add_object("layers/dense/0/x", {"0": np.zeros(2)})
    with pytest.raises(ValueError, match="should be the name or path of an object"):
        editor.delete_object("")
    # nothing above changed the file's tree
    assert list(editor.weights_dict["layers"]) == ["dense", "dense_1"]
    assert sorted(editor.weights_dict["layers"]["dense"]) == ["0", "1"]
    # a leading slash (as compare prints Keras's paths) and an existing name both work
    editor.rename_object("/layers/dense_1", "dense_5")
    editor.delete_object("dense_5")
    assert list(editor.weights_dict["layers"]) == ["dense"]


def test_errors_for_files_that_are_not_keras_files(tmp_path):
    with pytest.raises(ValueError, match=r"expected a `\.keras` or `\.weights\.h5` extension.*Received: "
                                         r"filepath=.*m\.h5\. A legacy '\.h5' file"):
        KerasFileEditor(str(tmp_path / "m.h5"))
    with pytest.raises(FileNotFoundError, match="No file at"):
        KerasFileEditor(str(tmp_path / "missing.keras"))
    text = tmp_path / "x.weights.h5"
    text.write_text("hello")
    with pytest.raises(FileFormatError, match="is not an HDF5 file"):
        KerasFileEditor(str(text))
    keras_named = tmp_path / "x.keras"
    keras_named.write_text("hello")
    with pytest.raises(FileFormatError, match="is not a '.keras' file, which is a zip archive"):
        KerasFileEditor(str(keras_named))
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(FileFormatError, match=r"not a Keras model file: the archive has no config.json or "
                                              r"model.weights.h5 \(it holds \['readme.txt'\]\)"):
        KerasFileEditor(str(tmp_path / "other.keras"))
    # Keras 2's legacy layout, under a Keras 3 name
    model = _source_model()
    legacy = str(tmp_path / "legacy.h5")
    model.save_weights(legacy)
    os.rename(legacy, tmp_path / "legacy.weights.h5")
    with pytest.raises(FileFormatError, match="Keras 2's legacy HDF5 layout.*model.save_weights"):
        KerasFileEditor(str(tmp_path / "legacy.weights.h5"))


def test_links_and_virtual_datasets_are_refused(tmp_path):
    target = str(tmp_path / "victim.weights.h5")
    lamina.Sequential([lamina.Input((3,)), layers.Dense(5)]).save_weights(target)
    attacker = str(tmp_path / "attacker.weights.h5")
    with h5py.File(attacker, "w") as f:
        f["layers"] = h5py.ExternalLink(target, "/layers")
    with pytest.raises(ValueError, match="ExternalLink"):
        KerasFileEditor(attacker)
    soft = str(tmp_path / "soft.weights.h5")
    with h5py.File(soft, "w") as f:
        real = f.create_group("real_layers")
        real.create_dataset("inner", data=np.zeros((1,)))
        f["layers"] = h5py.SoftLink("/real_layers")
    with pytest.raises(ValueError, match="SoftLink"):
        KerasFileEditor(soft)
    other = str(tmp_path / "other.weights.h5")
    with h5py.File(other, "w") as f:
        f.create_dataset("s", data=np.arange(5, dtype="float32"))
    virtual = str(tmp_path / "virtual.weights.h5")
    with h5py.File(virtual, "w") as f:
        group = f.create_group("layers").create_group("dense").create_group("vars")
        layout = h5py.VirtualLayout(shape=(5,), dtype="float32")
        layout[:] = h5py.VirtualSource(other, "s", shape=(5,))
        group.create_virtual_dataset("0", layout)
    with pytest.raises(ValueError, match="virtual"):
        KerasFileEditor(virtual)


def test_model_own_weights_and_bfloat16_round_trip(tmp_path):
    """A subclassed model's own weights are top-level entries (written to the root `vars`); a
    bfloat16 dataset (Keras marks it with a "dtype" attribute) is read and written back as one."""
    ml_dtypes = pytest.importorskip("ml_dtypes")

    class Scaled(lamina.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.d1 = layers.Dense(3)

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(3,), initializer="ones", name="scale")
            super().build(input_shape)

        def call(self, x):
            return self.d1(x) * self.scale

    model = Scaled()
    model(np.ones((1, 2), "float32"))
    path = str(tmp_path / "sub.weights.h5")
    model.save_weights(path)
    editor = KerasFileEditor(path)
    assert list(editor.weights_dict) == ["0", "d1"]
    assert editor.compare(model)["match_count"] == 3
    editor.add_weights("d1", {"1": np.array([5.0, 6.0, 7.0], "float32")})
    with pytest.raises(ValueError, match="Name '0' occurs 2 times in the file: at '0', 'd1/0'"):
        editor.delete_object("0")
    root = editor.weights_dict["0"]
    editor.delete_object("/0")                   # a leading '/': a path from the top, the model's own weight
    assert "0" not in editor.weights_dict
    editor.add_weights("/", {"0": root * 3})     # "/": the model itself
    out = str(tmp_path / "edited.weights.h5")
    editor.save(out)
    other = Scaled()
    other(np.ones((1, 2), "float32"))
    other.load_weights(out)
    np.testing.assert_array_equal(np.asarray(other.d1.bias), [5.0, 6.0, 7.0])
    np.testing.assert_array_equal(np.asarray(other.scale), [3.0, 3.0, 3.0])

    bf = str(tmp_path / "bf.weights.h5")
    values = np.array([1.5, -2.0, 0.25], dtype=ml_dtypes.bfloat16)
    with h5py.File(bf, "w") as h5:
        ds = h5.create_group("layers/dense/vars").create_dataset("0", data=values)
        ds.attrs["dtype"] = "bfloat16"
    editor = KerasFileEditor(bf)
    got = editor.weights_dict["layers"]["dense"]["0"]
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.astype("float32"), [1.5, -2.0, 0.25])
    out = str(tmp_path / "bf2.weights.h5")
    editor.save(out)
    with h5py.File(out, "r") as h5:
        ds = h5["layers/dense/vars/0"]
        assert ds.attrs["dtype"] == "bfloat16"
        np.testing.assert_array_equal(ds[()].view(ml_dtypes.bfloat16).astype("float32"), [1.5, -2.0, 0.25])


def test_export_is_lazy():
    """lamina.saving imports nothing from lamina at import time but _fileio: the editor module (and
    h5py) load on first use of saving.KerasFileEditor."""
    code = ("import sys, lamina\nassert 'lamina.saving_editor' not in sys.modules\n"
            "assert 'KerasFileEditor' in dir(lamina.saving)\nfrom lamina.saving import KerasFileEditor\n"
            "import lamina.saving_editor as m\nassert KerasFileEditor is m.KerasFileEditor\nprint('ok')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        lamina.saving.NoSuchThing


# ---- with Keras -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras():
    k = keras_or_none()
    if k is None:
        pytest.skip("Keras (KERAS_BACKEND=jax) is not installed")
    return k


def test_lamina_edited_file_loads_in_keras(keras, saved, tmp_path):
    model, path = saved
    editor = KerasFileEditor(path)
    editor.rename_object("layers/dense_1", "dense_2")
    new_kernel = np.full((3, 3), 0.25, "float32")
    editor.add_object("layers/dense_1", {"0": new_kernel, "1": np.ones(3, "float32")})
    out = str(tmp_path / "for_keras.weights.h5")
    editor.save(out)
    target = _target_model(keras)
    target.load_weights(out)
    for name in ("mydense", "output_layer"):
        for a, b in zip(target.get_layer(name).get_weights(), _weights(model, name)):
            np.testing.assert_array_equal(np.asarray(a), b)
    np.testing.assert_array_equal(np.asarray(target.get_layer("myotherdense").kernel), new_kernel)
    # Keras's own editor reads lamina's edited file the same way
    theirs = keras.saving.KerasFileEditor(out)
    assert theirs.compare(target)["status"] == "success"
    # a whole '.keras' file with an edited value loads in Keras too
    editor = KerasFileEditor(path)
    editor.add_weights("layers/dense", {"1": np.array([7.0, 8.0, 9.0], "float32")})
    out = str(tmp_path / "edited.keras")
    editor.save(out)
    loaded = keras.saving.load_model(out)
    np.testing.assert_array_equal(np.asarray(loaded.get_layer("mydense").bias), [7.0, 8.0, 9.0])


def test_keras_saved_file_edited_by_lamina_loads_in_lamina(keras, tmp_path):
    source = _source_model(keras)
    path = str(tmp_path / "from_keras.keras")
    source.save(path)
    editor = KerasFileEditor(path)
    target = _target_model()
    assert editor.compare(_source_model())["status"] == "success"
    editor.rename_object("layers/dense_1", "dense_2")
    new_kernel = np.eye(3, dtype="float32")
    editor.add_object("layers/dense_1", {"0": new_kernel, "1": np.zeros(3, "float32")})
    assert editor.compare(target)["status"] == "success"
    out = str(tmp_path / "edited.weights.h5")
    editor.resave_weights(out)
    target.load_weights(out)
    for name in ("mydense", "output_layer"):
        for a, b in zip(_weights(target, name), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, np.asarray(b))
    np.testing.assert_array_equal(_weights(target, "myotherdense")[0], new_kernel)
    # and as a whole model: Keras's config, lamina's load_model
    editor = KerasFileEditor(path)
    with pytest.raises(ValueError, match="the name of the object saved at 'layers/dense_1'.*Pass 'layers/dense_1'"):
        editor.add_weights("output_layer", {"1": np.zeros(3)})
    editor.add_weights("dense_1", {"1": np.array([1.0, 2.0, 3.0], "float32")})
    out = str(tmp_path / "edited.keras")
    editor.save(out)
    loaded = lamina.saving.load_model(out)
    np.testing.assert_array_equal(_weights(loaded, "output_layer")[1], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(_weights(loaded, "mydense")[0], np.asarray(source.get_layer("mydense").kernel))
