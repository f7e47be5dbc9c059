"""Sharded weights files, as Keras 3's `save_weights(path, max_shard_size=...)`: a '.weights.json'
map and '<name>_00000.weights.h5' shards (models/sharded.py), read back by lamina and by Keras."""
import json
import os
import warnings

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina._fileio import FileFormatError
from keras_ref import keras_or_none

MB = 1 / 1024   # max_shard_size is in GB


def _model(lib=lamina):
    m = lib.Sequential([lib.Input((50,)), lib.layers.Dense(120), lib.layers.Dense(80), lib.layers.Dense(4)])
    m.compile(lib.optimizers.Adam(1e-3), "mse")
    return m


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((16, 50)).astype("float32"), rng.standard_normal((16, 4)).astype("float32")


def _trained():
    m = _model()
    x, y = _data()
    m.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return m


def test_round_trip_over_several_shards_with_the_optimizer(tmp_path):
    m = _trained()
    path = tmp_path / "model.weights.json"
    m.save_weights(path, max_shard_size=0.05 * MB)   # 51 KB shards: Dense(50, 120)'s kernel is 24 KB
    shards = sorted(p.name for p in tmp_path.glob("model_*.weights.h5"))
    assert len(shards) >= 3 and shards[0] == "model_00000.weights.h5"
    config = json.loads(path.read_text())
    sizes = [v.size * v.dtype.itemsize for v in [np.asarray(w) for w in m.weights]]
    assert config["metadata"]["total_size"] >= sum(sizes)
    where = config["weight_map"]
    assert where["/layers/dense/vars"] == ["model_00000.weights.h5"]
    assert any(len(v) > 1 for v in where.values())   # the optimizer's group spans shards
    assert {n for v in where.values() for n in v} == set(shards)
    for name in shards:   # no shard holds much more than the limit
        assert os.path.getsize(tmp_path / name) < 0.05 * MB * 1024 ** 3 + 16384

    fresh = _model()
    fresh.optimizer.build(fresh.trainable_weights)
    fresh.load_weights(path)
    x, _ = _data()
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), m.predict(x, verbose=0))
    assert int(fresh.optimizer.iterations) == int(m.optimizer.iterations) == 4
    for a, b in zip(fresh.optimizer.variables, m.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    lamina.saving.load_weights(_model(), str(path))   # the module function, a str path


def test_a_smaller_save_removes_the_older_saves_extra_shards(tmp_path):
    m = _trained()
    path = tmp_path / "w.weights.json"
    m.save_weights(path, max_shard_size=0.04 * MB)
    many = len(list(tmp_path.glob("w_*.weights.h5")))
    (tmp_path / "other_00000.weights.h5").write_bytes(b"x")   # not this save's: kept
    m.save_weights(path, max_shard_size=1)
    assert sorted(p.name for p in tmp_path.glob("*.weights.h5")) == ["other_00000.weights.h5", "w_00000.weights.h5"]
    assert many > 1
    fresh = _model()
    fresh.load_weights(path)
    x, _ = _data()
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), m.predict(x, verbose=0))


def test_names_and_sizes_are_checked_as_keras(tmp_path):
    m = _trained()
    with pytest.raises(ValueError, match=r"size of variable '0' of 'layers/dense/vars' is 23\.44KB.*exceeds the "
                                         r"maximum shard size 10\.24KB.*increase max_shard_size"):
        m.save_weights(tmp_path / "big.weights.json", max_shard_size=0.01 * MB)
    assert os.listdir(tmp_path) == []   # nothing written
    with pytest.raises(ValueError, match=r"must end in `\.weights\.json` when `max_shard_size`.*w\.h5"):
        m.save_weights(tmp_path / "w.h5", max_shard_size=1)
    with pytest.raises(ValueError, match=r"sharded-weights name: pass max_shard_size"):
        m.save_weights(tmp_path / "w.weights.json")
    with pytest.raises(TypeError, match="max_shard_size must be a number of GB.*'big'"):
        m.save_weights(tmp_path / "w.weights.json", max_shard_size="big")
    with pytest.raises(ValueError, match="max_shard_size must be a positive number.*-1"):
        m.save_weights(tmp_path / "w.weights.json", max_shard_size=-1)
    with pytest.warns(UserWarning, match=r"requires `\*\.json`.*renamed to .*w\.weights\.json"):
        m.save_weights(tmp_path / "w.weights.h5", max_shard_size=1)
    assert sorted(os.listdir(tmp_path)) == ["w.weights.json", "w_00000.weights.h5"]
    with pytest.raises(FileExistsError):
        m.save_weights(tmp_path / "w.weights.json", overwrite=False, max_shard_size=1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        lamina.saving.save_weights(m, tmp_path / "w.weights.json", max_shard_size=1, shards=2)
    with pytest.raises(ValueError, match="by_name=True needs a legacy '.h5'"):
        m.load_weights(tmp_path / "w.weights.json", by_name=True)


def test_damaged_or_incomplete_sharded_files_are_reported(tmp_path):
    m = _trained()
    path = tmp_path / "w.weights.json"
    m.save_weights(path, max_shard_size=0.05 * MB)
    os.remove(tmp_path / "w_00001.weights.h5")
    with pytest.raises(FileFormatError, match=r"w\.weights\.json.*needs the shard 'w_00001\.weights\.h5'"):
        _model().load_weights(path)
    path.write_text("{not json")
    with pytest.raises(FileFormatError, match="is not a sharded-weights map"):
        _model().load_weights(path)
    path.write_text(json.dumps({"weight_map": {"/layers/dense/vars": ["../evil.h5"]}}))
    with pytest.raises(FileFormatError, match="not a file name beside it"):
        _model().load_weights(path)
    path.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(FileFormatError, match="no 'weight_map'"):
        _model().load_weights(path)
    m.save_weights(path, max_shard_size=1)
    other = lamina.Sequential([lamina.Input((50,)), layers.Dense(7)])
    with pytest.raises(ValueError, match="Could not load the variables at 'layers/dense/vars'"):
        other.load_weights(path)


def test_keras_reads_ours_and_we_read_keras(tmp_path):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference to compare with")
    x, y = _data()
    ours = _trained()
    ours.save_weights(tmp_path / "ours.weights.json", max_shard_size=0.05 * MB)
    k = _model(keras)
    k.optimizer.build(k.trainable_weights)
    k.load_weights(str(tmp_path / "ours.weights.json"))
    np.testing.assert_allclose(np.asarray(k.predict(x, verbose=0)), ours.predict(x, verbose=0), atol=1e-5)
    assert int(k.optimizer.iterations.numpy()) == 4

    keras.utils.set_random_seed(3)
    theirs = _model(keras)
    theirs.fit(x, y, epochs=1, batch_size=8, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.save_weights(str(tmp_path / "theirs.weights.json"), max_shard_size=0.05 * MB)
    mine = _model()
    mine.optimizer.build(mine.trainable_weights)
    mine.load_weights(tmp_path / "theirs.weights.json")
    np.testing.assert_allclose(mine.predict(x, verbose=0), np.asarray(theirs.predict(x, verbose=0)), atol=1e-5)
    assert int(mine.optimizer.iterations) == 2
    ours_map = json.loads((tmp_path / "ours.weights.json").read_text())["weight_map"]
    theirs_map = json.loads((tmp_path / "theirs.weights.json").read_text())["weight_map"]
    assert {k: [n.replace("ours", "theirs") for n in v] for k, v in ours_map.items()} == theirs_map
