import gzip
import hashlib
import os

import numpy as np
import pytest

from lamina.datasets import _files, mnist
from lamina.datasets._idx import read_idx


def _idx_bytes(arr):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMINA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LAMINA_DATA_DIR", raising=False)
    return tmp_path


def test_read_idx_roundtrip_gz_and_plain(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write(str(tmp_path / "a.idx"), _idx_bytes(a))
    _write(str(tmp_path / "a.idx.gz"), gzip.compress(_idx_bytes(a)))
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a.idx")), a)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a.idx.gz")), a)


def test_read_idx_rejects_bad_files(tmp_path):
    _write(str(tmp_path / "bad.idx"), b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        read_idx(str(tmp_path / "bad.idx"))
    a = np.zeros((2, 2), np.uint8)
    _write(str(tmp_path / "short.idx"), _idx_bytes(a)[:-1])
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        read_idx(str(tmp_path / "short.idx"))


def test_download_checks_hash_and_caches(dirs):
    src = str(dirs / "remote" / "f.bin")
    sha = _write(src, b"hello world")
    p = _files.fetch("sub", "f.bin", "file://" + src, sha, progress=False)
    assert p == os.path.join(str(dirs / "cache"), "sub", "f.bin")
    assert open(p, "rb").read() == b"hello world"
    os.remove(src)  # second call must not need the "network"
    assert _files.fetch("sub", "f.bin", "file://" + src, sha, progress=False) == p


def test_bad_hash_download_is_not_kept(dirs):
    src = str(dirs / "remote" / "f.bin")
    _write(src, b"tampered")
    with pytest.raises(ValueError, match="sha256"):
        _files.fetch("sub", "f.bin", "file://" + src, "0" * 64, progress=False)
    assert os.listdir(str(dirs / "cache" / "sub")) == []  # no partial or corrupt file left


def test_offline_error_names_file_and_where_to_put_it(dirs):
    with pytest.raises(OSError) as e:
        _files.fetch("mnist", "x.gz", "http://127.0.0.1:9/x.gz", "0" * 64, progress=False)
    msg = str(e.value)
    assert "x.gz" in msg and os.path.join("cache", "mnist", "x.gz") in msg
    assert os.listdir(str(dirs / "cache" / "mnist")) == []


def test_data_dir_is_used_without_network_and_checked(dirs, monkeypatch):
    monkeypatch.setenv("LAMINA_DATA_DIR", str(dirs / "shared"))
    sha = _write(str(dirs / "shared" / "sub" / "f.bin"), b"local copy")
    assert _files.fetch("sub", "f.bin", "http://127.0.0.1:9/f", sha, progress=False).startswith(str(dirs / "shared"))
    with pytest.raises(ValueError, match="sha256"):
        _files.fetch("sub", "f.bin", "http://127.0.0.1:9/f", "1" * 64, progress=False)


def test_mnist_load_data_from_data_dir(dirs, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28)),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, (5,)),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28)),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, (3,))}
    hashes = {n: _write(str(dirs / "shared" / "mnist" / n), gzip.compress(_idx_bytes(a))) for n, a in arrays.items()}
    monkeypatch.setenv("LAMINA_DATA_DIR", str(dirs / "shared"))
    monkeypatch.setattr(mnist, "FILES", hashes)
    (xt, yt), (xs, ys) = mnist.load_data()
    assert xt.shape == (5, 28, 28) and xt.dtype == np.uint8 and yt.shape == (5,) and xs.shape == (3, 28, 28)
    np.testing.assert_array_equal(ys, arrays["t10k-labels-idx1-ubyte.gz"])


# ---- utils.get_file, as keras.utils.get_file ------------------------------------------------------

def test_get_file_cache_dir_is_per_call_and_hash_is_optional(tmp_path, monkeypatch):
    import hashlib
    from lamina import utils
    monkeypatch.setenv("LAMINA_CACHE_DIR", str(tmp_path / "default"))
    src = tmp_path / "src.txt"
    src.write_bytes(b"one")
    a = utils.get_file("a.txt", origin="file://" + str(src), cache_dir=str(tmp_path / "c1"))
    b = utils.get_file("a.txt", origin="file://" + str(src), cache_dir=str(tmp_path / "c2"), cache_subdir="sub")
    c = utils.get_file(origin="file://" + str(src))                       # name from the URL, default folder
    assert a == str(tmp_path / "c1" / "datasets" / "a.txt") and b == str(tmp_path / "c2" / "sub" / "a.txt")
    assert c == str(tmp_path / "default" / "datasets" / "src.txt")
    # a cached file is reused; force_download and a changed hash download it again
    src.write_bytes(b"two")
    assert open(utils.get_file("a.txt", origin="file://" + str(src), cache_dir=str(tmp_path / "c1"))).read() == "one"
    assert open(utils.get_file("a.txt", origin="file://" + str(src), cache_dir=str(tmp_path / "c1"),
                               force_download=True)).read() == "two"
    src.write_bytes(b"three")
    md5 = hashlib.md5(b"three").hexdigest()
    p = utils.get_file("a.txt", origin="file://" + str(src), cache_dir=str(tmp_path / "c1"), md5_hash=md5)
    assert open(p).read() == "three"
    with pytest.raises(ValueError, match="not a sha256 hash"):
        utils.get_file("a.txt", origin="file://" + str(src), file_hash=md5, hash_algorithm="sha256")
    with pytest.raises(ValueError, match="not a path"):
        utils.get_file(os.path.join("x", "a.txt"), origin="file://" + str(src))
    with pytest.raises(ValueError, match="origin"):
        utils.get_file("a.txt")


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_get_file_extract(tmp_path, kind):
    import tarfile
    import zipfile
    from lamina import utils
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "hello.txt").write_text("hi")
    arc = tmp_path / f"data.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(arc, "w") as z:
            z.write(payload / "hello.txt", "folder/hello.txt")
    else:
        with tarfile.open(arc, "w:gz") as t:
            t.add(payload / "hello.txt", "folder/hello.txt")
    out = utils.get_file(f"data.{kind}", origin="file://" + str(arc), extract=True, cache_dir=str(tmp_path / "c"))
    assert out == str(tmp_path / "c" / "datasets" / "data_extracted")
    assert open(os.path.join(out, "folder", "hello.txt")).read() == "hi"
    out2 = utils.get_file(origin="file://" + str(arc), extract=True, cache_dir=str(tmp_path / "d"))
    assert out2 == str(tmp_path / "d" / "datasets" / f"data.{kind}")
    assert os.path.exists(str(tmp_path / "d" / "datasets" / f"data.{kind}_archive"))
    assert open(os.path.join(out2, "folder", "hello.txt")).read() == "hi"


def test_get_file_refuses_zip_members_outside(tmp_path):
    import zipfile
    from lamina import utils
    arc = tmp_path / "evil.zip"
    with zipfile.ZipFile(arc, "w") as z:
        z.writestr("../escape.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        utils.get_file("evil.zip", origin="file://" + str(arc), extract=True, cache_dir=str(tmp_path / "c"))
    assert not (tmp_path / "c" / "datasets" / "escape.txt").exists()
    assert not (tmp_path / "c" / "datasets" / "evil_extracted").exists()
