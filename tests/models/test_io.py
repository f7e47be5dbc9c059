"""models/io.py: loading a file that is not what it should be raises lamina.saving.FileFormatError
(a ValueError) naming the path and what was wrong, with the error that revealed it as its cause.
Files are made here: real saves truncated, garbage bytes, zips and HDF5 files with parts missing."""
import json
import os
import re
import zipfile

import h5py
import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.saving import FileFormatError


def _model():
    m = lamina.Sequential([lamina.Input((3,)), layers.Dense(2, name="d1"), layers.Dense(1, name="d2")])
    m.compile(optimizer="adam", loss="mse")
    m.fit(np.ones((4, 3), np.float32), np.ones((4, 1), np.float32), epochs=1, verbose=0)
    return m


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("saved")
    m = _model()
    paths = {n: str(d / n) for n in ("m.keras", "m.h5", "w.weights.h5", "w.h5")}
    m.save(paths["m.keras"])
    m.save(paths["m.h5"])
    m.save_weights(paths["w.weights.h5"])
    m.save_weights(paths["w.h5"])
    return paths


def _fresh():
    return lamina.Sequential([lamina.Input((3,)), layers.Dense(2, name="d1"), layers.Dense(1, name="d2")])


def _load(path):
    if os.path.basename(path).startswith("w"):   # w.h5, w.weights.h5: weights files
        return _fresh().load_weights(path)
    return lamina.saving.load_model(path)


def _check(path, pattern, cause):
    with pytest.raises(FileFormatError) as info:
        _load(path)
    e = info.value
    assert isinstance(e, ValueError)
    msg = str(e)
    assert msg.startswith(path + ": "), msg
    assert e.path == path
    assert re.search(pattern, msg), msg
    assert isinstance(e.__cause__, cause), repr(e.__cause__)
    return e


def _copy(src, dst, data=None):
    with open(src, "rb") as f:
        b = f.read()
    with open(dst, "wb") as f:
        f.write(b if data is None else data(b))
    return dst


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "w.weights.h5", "w.h5"])
def test_truncated_files(saved, tmp_path, name):
    p = _copy(saved[name], str(tmp_path / name), lambda b: b[: len(b) // 2])
    if name.endswith(".keras"):
        _check(p, r"truncated or corrupt zip archive", zipfile.BadZipFile)
    else:
        _check(p, r"truncated HDF5 file", OSError)


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "w.weights.h5", "w.h5"])
def test_garbage_and_empty_files(tmp_path, name):
    p = str(tmp_path / name)
    with open(p, "wb") as f:
        f.write(b"\x00garbage" * 50)
    kind = "a '.keras' file, which is a zip archive" if name.endswith(".keras") else "an HDF5 file"
    _check(p, rf"is not {kind} \(it is 400 bytes starting with b'\\x00garbage", (zipfile.BadZipFile, OSError))
    open(p, "wb").close()
    _check(p, r"is empty \(0 bytes\)", (zipfile.BadZipFile, OSError))


def test_wrong_container_formats_say_what_the_file_is(saved, tmp_path):
    p = _copy(saved["m.h5"], str(tmp_path / "legacy.keras"))
    _check(p, r"is an HDF5 file, not a '\.keras' zip archive.*'\.h5'", zipfile.BadZipFile)
    p = _copy(saved["m.keras"], str(tmp_path / "w.h5"))
    with pytest.raises(FileFormatError, match=r"is a zip archive, not an HDF5 file.*load_model") as info:
        _fresh().load_weights(p)
    assert isinstance(info.value.__cause__, OSError)


def _members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return path


@pytest.mark.parametrize("missing", ["config.json", "model.weights.h5"])
def test_keras_zip_without_a_member(saved, tmp_path, missing):
    members = _members(saved["m.keras"])
    del members[missing]
    p = _zip(str(tmp_path / "m.keras"), members)
    _check(p, rf"the archive has no {missing} \(it holds \[", KeyError)
    if missing == "model.weights.h5":   # load_weights reads the same archive
        with pytest.raises(FileFormatError, match=r"has no model\.weights\.h5"):
            _fresh().load_weights(p)


def test_keras_zip_with_garbage_members(saved, tmp_path):
    members = _members(saved["m.keras"])
    p = _zip(str(tmp_path / "m.keras"), {**members, "config.json": b"{not json"})
    _check(p, r"config\.json is not valid JSON", json.JSONDecodeError)
    p = _zip(str(tmp_path / "m.keras"), {**members, "config.json": b"\xff\xfe\x00"})
    _check(p, r"config\.json is not valid JSON", UnicodeDecodeError)
    p = _zip(str(tmp_path / "m.keras"), {**members, "config.json": b"[1, 2]"})
    with pytest.raises(FileFormatError, match=r"config\.json does not describe a model"):
        lamina.saving.load_model(p)
    p = _zip(str(tmp_path / "m.keras"), {**members, "model.weights.h5": b"garbage"})
    _check(p, r"model\.weights\.h5 inside the archive is not a readable HDF5 file \(7 bytes\)", OSError)


def test_legacy_h5_without_a_layer_group_names_the_layer(saved, tmp_path):
    p = _copy(saved["w.h5"], str(tmp_path / "w.h5"))
    with h5py.File(p, "a") as f:
        del f["d2"]
    _check(p, r"has no '/d2' for the weights of layer 'd2'", KeyError)
    p = _copy(saved["w.h5"], str(tmp_path / "w.h5"))
    with h5py.File(p, "a") as f:
        del f["d1/d1/kernel"]
    _check(p, r"has no '/d1/d1/kernel' for weight 'd1/kernel' of layer 'd1'", KeyError)


def test_legacy_model_h5_missing_parts(saved, tmp_path):
    p = _copy(saved["m.h5"], str(tmp_path / "m.h5"))
    with h5py.File(p, "a") as f:
        del f["model_weights/d1"]
    _check(p, r"has no '/model_weights/d1' for the weights of layer 'd1'", KeyError)
    p = _copy(saved["m.h5"], str(tmp_path / "m.h5"))
    with h5py.File(p, "a") as f:
        del f["model_weights"]
    _check(p, r"has no '/model_weights' for the model's weights", KeyError)
    p = _copy(saved["m.h5"], str(tmp_path / "m.h5"))
    with h5py.File(p, "a") as f:
        f.attrs["model_config"] = "{garbage"
    _check(p, r"the model_config attribute is not valid JSON", json.JSONDecodeError)
    p = _copy(saved["m.h5"], str(tmp_path / "m.h5"))
    with h5py.File(p, "a") as f:
        names = [n.decode() for n in f["optimizer_weights"].attrs["weight_names"]]
        del f["optimizer_weights/" + names[-1]]
    _check(p, r"has no '/optimizer_weights/.*' for an optimizer variable", KeyError)


def test_keras3_layout_without_a_layer_group_names_the_layer(saved, tmp_path):
    p = _copy(saved["w.weights.h5"], str(tmp_path / "w.weights.h5"))
    with h5py.File(p, "a") as f:
        del f["layers/dense_1"]
    e = _check(p, r"has no group 'layers/dense_1/vars' for Dense 'd2'", ValueError)
    assert "the file has 0" in str(e)
    with pytest.warns(UserWarning, match="has no group 'layers/dense_1/vars'"):
        _fresh().load_weights(p, skip_mismatch=True)


def test_a_missing_file_and_a_good_file_are_not_format_errors(saved, tmp_path):
    with pytest.raises(FileNotFoundError):
        lamina.saving.load_model(str(tmp_path / "absent.keras"))
    with pytest.raises(FileNotFoundError):
        _fresh().load_weights(str(tmp_path / "absent.h5"))
    for name in ("m.keras", "m.h5"):
        assert lamina.saving.load_model(saved[name]).layers[0].name == "d1"
    for name in ("w.weights.h5", "w.h5"):
        _fresh().load_weights(saved[name])


def test_application_weights_name_the_file(tmp_path, saved):
    """The applications load their weight files through load_weights: a corrupt file names itself
    and the model it was for."""
    from lamina.applications import imagenet_utils
    p = _copy(saved["w.h5"], str(tmp_path / "weights.h5"), lambda b: b[:1000])
    with pytest.raises(FileFormatError, match=r"weights\.h5: is a truncated HDF5 file.*the weights file of") as info:
        imagenet_utils.load_model_weights(_fresh(), p, "unused.h5", "https://example.invalid/unused.h5")
    assert isinstance(info.value.__cause__, OSError) and info.value.path == p
