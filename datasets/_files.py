"""Dataset files: a cache directory, downloads checked against a known hash, atomic writes (through
`_fileio`), and an offline error that says where to put the file by hand.

Lookup order for a file `sub/name`: `$LAMINA_DATA_DIR/sub/name` (e.g. a shared data folder),
then the cache `~/.lamina/datasets/sub/name`, then a download into the cache.
"""
import hashlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request

from .._fileio import atomic_dir, atomic_write


def cache_dir():
    """Where downloads are kept: ~/.lamina/datasets (LAMINA_CACHE_DIR overrides)."""
    return os.environ.get("LAMINA_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".lamina", "datasets")


_default_cache_dir = cache_dir  # get_file's `cache_dir` argument shadows the function there


def hash_of(path, algorithm="sha256", chunk=1 << 20):
    with open(path, "rb") as f:
        return _hash_stream(f, algorithm, chunk)


def _hash_stream(f, algorithm, chunk=1 << 20):
    h = hashlib.new(algorithm)
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


_algorithm_of = hash_algorithm  # get_file's `hash_algorithm` argument shadows the function there


def _verify(path, file_hash):
    algo = hash_algorithm(file_hash)
    got = hash_of(path, algo)
    if got != file_hash.lower():
        raise ValueError(f"{path}: {algo} is {got}, expected {file_hash}. The file is corrupt or a "
                         "different version; delete it and try again, or replace it by hand.")


def fetch(subdir, name, url, sha256, progress=True, root=None, force=False):
    """Returns a local path for dataset file `subdir/name`, downloading it if needed.

    Files found in LAMINA_DATA_DIR or the cache are checked against `sha256` (or an md5, told
    apart by its length) and used without the network. A download goes to a temporary file in
    the cache and is renamed into place only after its hash matches, so an interrupted or
    corrupt download never stays in the cache. `sha256=None` is for files whose publisher gives
    no hash (Keras's MobileNet weights): they are not checked here, the caller verifies them.
    `root` replaces the cache folder; `force` downloads again even when the file is there."""
    algo = hash_algorithm(sha256) if sha256 is not None else None
    data_dir = os.environ.get("LAMINA_DATA_DIR") if root is None else None
    if data_dir and not force:
        p = os.path.join(data_dir, subdir, name)
        if os.path.exists(p):
            if algo:
                _verify(p, sha256)
            return p
    target = os.path.join(root or cache_dir(), subdir, name)
    if os.path.exists(target) and not force:
        if algo:
            _verify(target, sha256)
        return target
    try:
        with atomic_write(target) as out:   # renamed into place only once complete and checked
            _download(url, out, name, progress)
            if algo:
                out.flush()
                out.seek(0)
                got = _hash_stream(out, algo)
                if got != sha256.lower():
                    raise ValueError(f"Downloaded {url} but its {algo} is {got}, expected {sha256}; "
                                     "the download was discarded. Try again later.")
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        where = [os.path.join(data_dir, subdir, name)] if data_dir else []
        where.append(target)
        raise OSError(f"Could not download {name} from {url} ({e}). If this machine is offline, "
                      f"download the file elsewhere and put it at {' or '.join(where)} "
                      f"(or set LAMINA_DATA_DIR to a folder holding {subdir}/{name}).") from None
    return target


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


def get_file(fname=None, origin=None, untar=False, md5_hash=None, file_hash=None, cache_subdir="datasets",
             hash_algorithm="auto", extract=False, archive_format="auto", cache_dir=None, force_download=False):
    """Keras's `get_file`: the local path of `origin` downloaded to `cache_dir/cache_subdir/fname`
    (cache_dir defaults to LAMINA_CACHE_DIR, else ~/.lamina/datasets), checked against `file_hash`
    (or `md5_hash`) when one is given. A cached file whose hash does not match is downloaded again,
    as in Keras. With `extract` (or `untar`), the tar/zip archive is unpacked next to it and the
    folder's path is returned: `<fname without extension>_extracted` when `fname` has an
    extension, else `fname` (the archive is then kept as `<fname>_archive`)."""
    if origin is None:
        raise ValueError('get_file: please specify the "origin" argument (the URL of the file to download)')
    if md5_hash is not None and file_hash is None:
        file_hash, hash_algorithm = md5_hash, "md5"
    if hash_algorithm not in ("auto", "md5", "sha256"):
        raise ValueError(f"get_file: hash_algorithm must be 'auto', 'md5' or 'sha256', received {hash_algorithm!r}")
    if file_hash is not None:
        algo = _algorithm_of(file_hash)
        if hash_algorithm != "auto" and algo != hash_algorithm:
            raise ValueError(f"get_file: file_hash {file_hash!r} is not a {hash_algorithm} hash "
                             f"({'64' if hash_algorithm == 'sha256' else '32'} hex digits)")
    root = os.path.expanduser(os.fspath(cache_dir)) if cache_dir is not None else _default_cache_dir()
    provided = fname is not None
    fname = os.fspath(fname) if provided else os.path.basename(urllib.parse.urlsplit(origin).path)
    if not fname:
        raise ValueError(f"get_file: can't parse a file name from origin {origin!r}; pass `fname`")
    if os.sep in fname:
        raise ValueError(f"get_file: `fname` must be a file name, not a path (received {fname!r}); choose the "
                         "folder with `cache_dir` (and `cache_subdir`)")
    extraction_dir = None
    if extract or untar:
        if provided and "." in fname:
            name, extraction_dir = fname, f"{fname[:fname.find('.')]}_extracted"
        else:
            name, extraction_dir = f"{fname}_archive", fname
    else:
        name = fname
    target = os.path.join(root, cache_subdir, name)
    stale = os.path.exists(target) and file_hash is not None and hash_of(target, algo) != file_hash.lower()
    if stale:
        print(f"get_file: the cached {target} does not match its {algo} hash {file_hash}; downloading it again")
    path = fetch(cache_subdir, name, origin, file_hash, root=root, force=force_download or stale)
    if extraction_dir is None:
        return path
    out = os.path.join(root, cache_subdir, extraction_dir)
    _extract(path, out, "tar" if untar else archive_format)
    return out


def _extract(path, out, archive_format):
    """Unpacks a tar (.tar, .tar.gz, .tar.bz2) or zip archive into `out`, atomically: into a
    temporary folder first, renamed into place when complete. Members that would land outside
    `out` (absolute paths, '..', links out) are refused."""
    import tarfile
    import zipfile
    formats = ["tar", "zip"] if archive_format == "auto" else \
        [archive_format] if isinstance(archive_format, str) else list(archive_format or [])
    for f in formats:
        if f not in ("tar", "zip"):
            raise ValueError(f"get_file: archive_format must be 'auto', 'tar', 'zip' or None, received {f!r}")
    for f in formats:
        is_match = tarfile.is_tarfile if f == "tar" else zipfile.is_zipfile
        if not is_match(path):
            continue
        with atomic_dir(out) as tmp:
            if f == "tar":
                with tarfile.open(path) as archive:
                    archive.extractall(tmp, filter="data")
            else:
                with zipfile.ZipFile(path) as archive:
                    for member in archive.namelist():
                        dest = os.path.realpath(os.path.join(tmp, member))
                        if not dest.startswith(os.path.realpath(tmp) + os.sep):
                            raise ValueError(f"{path}: the zip member {member!r} would be written outside "
                                             f"{out}; refusing to extract this archive")
                    archive.extractall(tmp)
        return
    import warnings
    warnings.warn(f"get_file: could not extract {path}: it is not a {' or '.join(formats) or 'known'} archive",
                  stacklevel=3)
