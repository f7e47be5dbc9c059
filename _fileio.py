"""Files written atomically, and the error raised for a file lamina cannot read.

Every file lamina writes (models, weights, checkpoints, downloads, extracted archives, images,
bottleneck caches) goes through `atomic_write` or `atomic_dir`: the data goes to a temporary
`<name>.<pid>.<random>.tmp` next to the target, is flushed and fsynced, and is renamed over the
target only when complete, so an interrupted write never leaves a half-written file in place of a
good one. The temporary is removed on any exception, KeyboardInterrupt included. A process killed
mid-write (kill -9, power loss) cannot clean up; the next write of the same target removes such
leftovers: files matching that target's temporary pattern, last modified before the new write
started, whose process is no longer running (or, for names without a process id, as lamina
wrote them before, that are simply older).
"""
import contextlib
import os
import re
import shutil
import stat
import tempfile
import time

SUFFIX = ".tmp"


class FileFormatError(ValueError):
    """A file lamina was asked to read is not what it should be: truncated, not HDF5 or not a zip
    archive, a '.keras' archive without config.json or model.weights.h5, unreadable JSON, a
    group or dataset missing. The message names the path and what was wrong; the exception that
    revealed it (h5py's OSError, zipfile's BadZipFile, json's JSONDecodeError, a KeyError) is
    its `__cause__`.

    A ValueError, as Keras raises for unreadable model files and as lamina raised before, because
    the file's content is wrong, not the operating system's access to it: a missing file stays
    FileNotFoundError and a permission problem PermissionError."""

    def __init__(self, path, problem):
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def temporary_pattern(path):
    """The regular expression the names of `path`'s temporaries match (without the folder)."""
    base = re.escape(os.path.basename(path))
    return re.compile(base + r"\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]{8}" + re.escape(SUFFIX))


def _running(pid):
    if pid == os.getpid():
        return True   # another thread of this process may be writing the same target
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # PermissionError: it exists, under another user
        return True
    return True


def remove_stale_temporaries(path, started, directories=False):
    """Removes what killed writes of `path` left: temporaries matching its pattern, modified
    before `started` (a time.time()), whose writer is gone. Returns the removed paths."""
    folder = os.path.dirname(os.path.abspath(path))
    pattern = temporary_pattern(path)
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = pattern.fullmatch(name)
        if not m:
            continue
        full = os.path.join(folder, name)
        try:
            st = os.lstat(full)
        except OSError:
            continue
        kind_ok = stat.S_ISDIR(st.st_mode) if directories else stat.S_ISREG(st.st_mode)
        if not kind_ok or st.st_mtime >= started:
            continue
        if m.group("pid") is not None and _running(int(m.group("pid"))):
            continue
        try:
            if directories:
                shutil.rmtree(full)
            else:
                os.remove(full)
            removed.append(full)
        except OSError:
            pass
    return removed


def _temporary_prefix(path):
    return f"{os.path.basename(path)}.{os.getpid()}."


def _umask():
    """The process's umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _give_mode(tmp, path, directory):
    """The permissions `path` would have had if opened directly (mkstemp / mkdtemp make temporaries
    private to their owner): the replaced file's own, else the default under the umask."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = (0o777 if directory else 0o666) & ~_umask()
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)


@contextlib.contextmanager
def atomic_write(path, mode="w+b"):
    """Yields a file object (readable too with the default "w+b"); the file replaces `path` only
    when the block completes. See the module docstring."""
    path = os.fspath(path)
    started = time.time()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(path, started)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=SUFFIX, dir=folder)
    try:
        _give_mode(tmp, path, directory=False)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yields the path of a new temporary folder next to `path`; when the block completes, it
    replaces `path` (a folder already there is removed first). Cleaned up as atomic_write."""
    path = os.fspath(path)
    started = time.time()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(path, started, directories=True)
    tmp = tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=SUFFIX, dir=folder)
    try:
        _give_mode(tmp, path, directory=True)
        yield tmp
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---- what a file is -------------------------------------------------------------------------------

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")


def sniff(path):
    """"hdf5", "zip", "empty" or "other" from a file's first bytes (HDF5's signature may also sit
    at 512, 1024, 2048... after a user block). OSError (missing, unreadable) propagates."""
    with open(path, "rb") as f:
        head = f.read(8)
        if not head:
            return "empty"
        if head == HDF5_SIGNATURE:
            return "hdf5"
        if head[:4] in ZIP_SIGNATURES:
            return "zip"
        offset = 512
        size = os.fstat(f.fileno()).st_size
        while offset + 8 <= size:
            f.seek(offset)
            if f.read(8) == HDF5_SIGNATURE:
                return "hdf5"
            offset *= 2
    return "other"


def describe_start(path):
    """A few words on what the file at `path` starts with, for error messages."""
    with open(path, "rb") as f:
        head = f.read(16)
    size = os.path.getsize(path)
    return f"{size} bytes starting with {head!r}" if head else "an empty file"
