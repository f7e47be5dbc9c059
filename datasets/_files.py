"""Dataset files: a cache directory, downloads checked against a known hash, atomic writes, and
an offline error that says where to put the file by hand.

Lookup order for a file `sub/name`: `$LAMINA_DATA_DIR/sub/name` (e.g. a shared data folder),
then the cache `~/.lamina/datasets/sub/name`, then a download into the cache.
"""
import hashlib
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request


def cache_dir():
    """Where downloads are kept: ~/.lamina/datasets (LAMINA_CACHE_DIR overrides)."""
    return os.environ.get("LAMINA_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".lamina", "datasets")


def hash_of(path, algorithm="sha256", chunk=1 << 20):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_of(path, chunk=1 << 20):
    return hash_of(path, "sha256", chunk)


def hash_algorithm(file_hash):
    """"sha256" for a 64-hex-digit hash, "md5" for a 32-digit one (Keras's `hash_algorithm="auto"`;
    a few of Keras's files, such as imdb_word_index.json, are only published with an md5)."""
    if isinstance(file_hash, str) and re.fullmatch(r"[0-9a-fA-F]{64}", file_hash):
        return "sha256"
    if isinstance(file_hash, str) and re.fullmatch(r"[0-9a-fA-F]{32}", file_hash):
        return "md5"
    raise ValueError(f"file_hash must be a sha256 (64 hex digits) or md5 (32 hex digits) string, "
                     f"received {file_hash!r}")


def _verify(path, file_hash):
    algo = hash_algorithm(file_hash)
    got = hash_of(path, algo)
    if got != file_hash.lower():
        raise ValueError(f"{path}: {algo} is {got}, expected {file_hash}. The file is corrupt or a "
                         "different version; delete it and try again, or replace it by hand.")


def fetch(subdir, name, url, sha256, progress=True):
    """Returns a local path for dataset file `subdir/name`, downloading it if needed.

    Files found in LAMINA_DATA_DIR or the cache are checked against `sha256` (or an md5, told
    apart by its length) and used without the network. A download goes to a temporary file in
    the cache and is renamed into place only after its hash matches, so an interrupted or
    corrupt download never stays in the cache. `sha256=None` is for files whose publisher gives
    no hash (Keras's MobileNet weights): they are not checked here, the caller verifies them."""
    algo = hash_algorithm(sha256) if sha256 is not None else None
    data_dir = os.environ.get("LAMINA_DATA_DIR")
    if data_dir:
        p = os.path.join(data_dir, subdir, name)
        if os.path.exists(p):
            if algo:
                _verify(p, sha256)
            return p
    target = os.path.join(cache_dir(), subdir, name)
    if os.path.exists(target):
        if algo:
            _verify(target, sha256)
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".part", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "wb") as out:
            _download(url, out, name, progress)
        got = hash_of(tmp, algo) if algo else None
        if algo and got != sha256.lower():
            raise ValueError(f"Downloaded {url} but its {algo} is {got}, expected {sha256}; "
                             "the download was discarded. Try again later.")
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        _remove(tmp)
        where = [os.path.join(data_dir, subdir, name)] if data_dir else []
        where.append(target)
        raise OSError(f"Could not download {name} from {url} ({e}). If this machine is offline, "
                      f"download the file elsewhere and put it at {' or '.join(where)} "
                      f"(or set LAMINA_DATA_DIR to a folder holding {subdir}/{name}).") from None
    except BaseException:
        _remove(tmp)
        raise
    return target


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _download(url, out, name, progress):
    with urllib.request.urlopen(url, timeout=30) as r:
        total = int(r.headers.get("Content-Length") or 0) or None
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"Downloading {name}")
        try:
            while True:
                block = r.read(1 << 16)
                if not block:
                    break
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()


def copy_atomic(src, dst):
    """Copies a file so that `dst` is either the old file or the complete new one."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dst)), suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        _remove(tmp)
        raise
