"""_fileio.py: atomic writes clean up after themselves on any exception, and the next write of a
target removes the temporaries that killed writes of that target left (and nothing else)."""
import os
import subprocess
import sys
import time
import zipfile

import pytest

import lamina
from lamina import _fileio, layers
from lamina.datasets import _files


def _dead_pid():
    """The id of a process that has exited (a save "killed" earlier)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    if _fileio._running(p.pid):  # pragma: no cover - the id was reused at once
        pytest.skip("the exited process's id is in use again")
    return p.pid


def _touch(path, mtime, directory=False):
    if directory:
        os.makedirs(path)
        with open(os.path.join(path, "member"), "w") as f:
            f.write("x")
    else:
        with open(path, "wb") as f:
            f.write(b"partial data of a killed save")
    os.utime(path, (mtime, mtime))
    return path


def _model():
    m = lamina.Sequential([lamina.Input((3,)), layers.Dense(2)])
    m.compile(optimizer="sgd", loss="mse")
    return m


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_write_leaves_no_temporary_and_keeps_the_old_file(tmp_path, exc):
    target = tmp_path / "data.bin"
    target.write_bytes(b"good")
    with pytest.raises(type(exc)):
        with _fileio.atomic_write(target) as f:
            f.write(b"half of the new")
            raise exc
    assert os.listdir(tmp_path) == ["data.bin"] and target.read_bytes() == b"good"
    with pytest.raises(type(exc)):
        with _fileio.atomic_dir(tmp_path / "folder") as d:
            open(os.path.join(d, "a"), "w").close()
            raise exc
    assert os.listdir(tmp_path) == ["data.bin"]


@pytest.mark.parametrize("save", ["save_keras", "save_h5", "save_weights"])
@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_model_save_leaves_no_temporary(tmp_path, monkeypatch, save, exc):
    m = _model()
    name = {"save_keras": "m.keras", "save_h5": "m.h5", "save_weights": "m.weights.h5"}[save]
    path = str(tmp_path / name)

    def fail(*a, **k):
        raise exc
    if save == "save_keras":   # the weights are serialized first; the zip is written in the atomic block
        monkeypatch.setattr(zipfile.ZipFile, "writestr", fail)
    else:
        monkeypatch.setattr("lamina.models.io.write_weights", fail)
        monkeypatch.setattr("lamina.models.state.save_state", fail)
    with pytest.raises(type(exc)):
        m.save_weights(path) if save == "save_weights" else m.save(path)
    assert os.listdir(tmp_path) == []


def test_the_next_save_removes_stale_temporaries_of_its_target_only(tmp_path):
    dead, old = _dead_pid(), time.time() - 3600
    d = str(tmp_path)
    stale = [_touch(os.path.join(d, f"m.keras.{dead}.a1b2c3d4.tmp"), old),
             _touch(os.path.join(d, "m.keras.k3j_h5g6.tmp"), old)]     # lamina's names before the process id
    kept = [
        _touch(os.path.join(d, f"m.keras.{dead}.zzzzzzzz.tmp"), time.time() + 3600),  # newer than the save's start
        _touch(os.path.join(d, f"m.keras.{os.getpid()}.aaaaaaaa.tmp"), old),  # its writer is still running
        _touch(os.path.join(d, f"other.keras.{dead}.a1b2c3d4.tmp"), old),      # another target's
        _touch(os.path.join(d, f"xm.keras.{dead}.a1b2c3d4.tmp"), old),
        _touch(os.path.join(d, f"m.keras.{dead}.abc.tmp"), old),               # not the pattern
        _touch(os.path.join(d, f"m.keras.{dead}.a1b2c3d4.tmp.bak"), old),
        _touch(os.path.join(d, "m.keras.notes.txt"), old),
        _touch(os.path.join(d, f"m.keras.{dead}.b1b2c3d4.tmp"), old, directory=True),  # a folder: not a file write's
    ]
    _model().save(os.path.join(d, "m.keras"))
    for p in stale:
        assert not os.path.exists(p), p
    for p in kept:
        assert os.path.exists(p), p
    assert sorted(os.listdir(d)) == sorted([os.path.basename(p) for p in kept] + ["m.keras"])


def test_stale_temporaries_of_weights_downloads_and_folders(tmp_path, monkeypatch):
    dead, old = _dead_pid(), time.time() - 3600
    d = str(tmp_path)
    w = _touch(os.path.join(d, f"w.weights.h5.{dead}.a1b2c3d4.tmp"), old)
    _model().save_weights(os.path.join(d, "w.weights.h5"))
    assert not os.path.exists(w)
    # a download into the cache
    cache = tmp_path / "cache" / "sub"
    cache.mkdir(parents=True)
    part = _touch(str(cache / f"f.bin.{dead}.a1b2c3d4.tmp"), old)

    class Response:
        headers = {"Content-Length": "3"}

        def __init__(self):
            self.data = [b"abc", b""]

        def read(self, n):
            return self.data.pop(0)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: Response())
    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"   # sha256(b"abc")
    got = _files.fetch("sub", "f.bin", "https://example.invalid/f.bin", sha, progress=False,
                       root=str(tmp_path / "cache"))
    assert open(got, "rb").read() == b"abc" and not os.path.exists(part)
    assert os.listdir(cache) == ["f.bin"]
    # a download whose hash does not match leaves nothing behind
    with pytest.raises(ValueError, match="sha256"):
        _files.fetch("sub", "g.bin", "https://example.invalid/g.bin", "0" * 64, progress=False,
                     root=str(tmp_path / "cache"), force=True)
    assert os.listdir(cache) == ["f.bin"]
    # an extracted archive's folder
    stale_dir = _touch(os.path.join(d, f"out.{dead}.a1b2c3d4.tmp"), old, directory=True)
    stale_file = _touch(os.path.join(d, f"out.{dead}.c1b2c3d4.tmp"), old)
    with _fileio.atomic_dir(os.path.join(d, "out")) as t:
        open(os.path.join(t, "x"), "w").close()
    assert not os.path.exists(stale_dir) and os.path.exists(stale_file)
    assert os.listdir(os.path.join(d, "out")) == ["x"]


def test_every_writer_uses_the_one_helper():
    """No module but _fileio makes temporary files for its writes."""
    root = os.path.dirname(lamina.__file__)
    offenders = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in ("tests", "tutorials", "benchmarks", "build", ".dev", ".ci", "csrc")]
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or path == _fileio.__file__:
                continue
            text = open(path, encoding="utf8").read()
            if "mkstemp" in text or "mkdtemp" in text or "os.replace(" in text:
                offenders.append(os.path.relpath(path, root))
    assert offenders == []


def test_sniff_tells_formats_apart(tmp_path):
    m = _model()
    m.save(str(tmp_path / "m.keras"))
    m.save(str(tmp_path / "m.h5"))
    (tmp_path / "e").write_bytes(b"")
    (tmp_path / "g").write_bytes(b"garbage" * 10)
    assert [_fileio.sniff(str(tmp_path / n)) for n in ("m.keras", "m.h5", "e", "g")] == ["zip", "hdf5", "empty", "other"]
    assert _fileio.describe_start(str(tmp_path / "g")) == "70 bytes starting with b'garbagegarbagega'"


def test_written_files_get_the_usual_permissions(tmp_path):
    """Not the owner-only mode of the temporary: the mode a plain open() gives, or the replaced
    file's own."""
    umask = os.umask(0o022)
    try:
        with _fileio.atomic_write(tmp_path / "a") as f:
            f.write(b"x")
        with _fileio.atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "a").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "d").st_mode & 0o777 == 0o755
    os.chmod(tmp_path / "a", 0o600)
    with _fileio.atomic_write(tmp_path / "a") as f:
        f.write(b"y")
    assert os.stat(tmp_path / "a").st_mode & 0o777 == 0o600
