"""Sharded weights, as Keras 3's `save_weights(path, max_shard_size=...)` writes and reads them:
`<name>.weights.json`, a map {"metadata": {"total_size": bytes}, "weight_map": {"/<path>/vars":
[shard file names]}} (a single name is read too), beside the shards `<name>_00000.weights.h5`,
`<name>_00001.weights.h5`, ... Each shard holds the `<path>/vars` groups of Keras 3's layout
(state.py) for the variables it got. Variables go to shards in the order Keras saves them; a
shard takes variables until the next one would bring it past `max_shard_size` (in GB, 1024^3
bytes), so one object's variables may span two shards (its map entry then names both). One
variable larger than `max_shard_size` is a ValueError, as in Keras.

Every shard and the map are written atomically (the map last); shards of an earlier save with
the same name that this save does not write again are removed, so the folder holds one save."""
import glob
import json
import os

import numpy as np

from .._fileio import FileFormatError, atomic_write
from .state import walk

GB = 1024 ** 3


def base_name(filepath):
    """'.../model.weights.json' -> 'model' (Keras: the file's stem without '.weights')."""
    stem = os.path.splitext(os.path.basename(filepath))[0]
    return stem.replace(".weights", "")


def shard_name(base, index):
    return f"{base}_{index:05}.weights.h5"


class _Collect:
    """The store `save_own_variables` writes into: remembers (key, array) in order."""

    def __init__(self):
        self.items = []

    def __setitem__(self, key, value):
        value = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
        self.items.append((str(key), value))

    def __len__(self):
        return len(self.items)


def _readable(nbytes):
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.2f}{unit}"
        nbytes /= 1024


def save_sharded(model, filepath, max_shard_size, include_optimizer=True):
    """Writes `model`'s variables (and its compiled optimizer's) as Keras's ShardedH5IOStore does."""
    import h5py
    try:
        limit = float(max_shard_size) * GB
    except (TypeError, ValueError):
        raise TypeError(f"save_weights: max_shard_size must be a number of GB (an int or a float), received "
                        f"{max_shard_size!r}") from None
    if not limit > 0:
        raise ValueError(f"save_weights: max_shard_size must be a positive number of GB, received {max_shard_size!r}")
    objects = []   # (path, name, [(key, array)]) in Keras's save order

    def visit(obj, path):
        store = _Collect()
        obj.save_own_variables(store)
        objects.append((path, getattr(obj, "name", None), store.items))
    walk(model, visit, with_optimizer=include_optimizer)

    shards = [[]]   # per shard: (group path, name, key, array)
    size = total = 0
    for path, name, items in objects:
        group = f"{path}/vars" if path else "vars"
        for key, value in items:
            nbytes = value.size * value.dtype.itemsize
            total += nbytes
            if nbytes > limit:
                raise ValueError(f"save_weights: the size of variable '{key}' of '{group}' is {_readable(nbytes)}, "
                                 f"which exceeds the maximum shard size {_readable(limit)}; increase "
                                 "max_shard_size (in GB) to hold it")
            size += nbytes
            if size > limit:
                shards.append([])
                size = nbytes
            shards[-1].append((group, name, key, value))

    folder = os.path.dirname(os.path.abspath(filepath))
    base = base_name(filepath)
    names = [shard_name(base, i) for i in range(len(shards))]
    weight_map = {}
    for fname, entries in zip(names, shards):
        with atomic_write(os.path.join(folder, fname)) as f:
            with h5py.File(f, "w") as h5:
                for group, name, key, value in entries:
                    g = h5.require_group(group)
                    if name is not None and "name" not in g.attrs:
                        g.attrs["name"] = name
                    g.create_dataset(key, data=value)
                    where = weight_map.setdefault("/" + group, [])   # a list, as Keras 3.15 writes it
                    if fname not in where:
                        where.append(fname)
    config = {"metadata": {"total_size": float(total)}, "weight_map": weight_map}
    with atomic_write(filepath, "w") as f:
        f.write(json.dumps(config, indent=4))
    keep = set(names)
    for old in glob.glob(os.path.join(glob.escape(folder), glob.escape(base) + "_[0-9][0-9][0-9][0-9][0-9].weights.h5")):
        if os.path.basename(old) not in keep:
            os.remove(old)


class _Merged:
    """One `<path>/vars` group spread over several shards, read as one."""

    def __init__(self, groups):
        self._groups = groups

    def keys(self):
        out = []
        for g in self._groups:
            out.extend(k for k in g.keys() if k not in out)
        return out

    def __contains__(self, key):
        return any(key in g for g in self._groups)

    def __getitem__(self, key):
        for g in self._groups:
            if key in g:
                return g[key]
        raise KeyError(key)


class ShardedReader:
    """The root H5Store and load_state read from: `"<path>/vars" in root` and `root[...]` find the
    group through the map, in whichever shards hold it. A context manager that closes the shards."""

    def __init__(self, filepath):
        self.filepath = os.fspath(filepath)
        try:
            with open(self.filepath, encoding="utf-8") as f:
                config = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FileFormatError(self.filepath, f"is not a sharded-weights map (JSON) ({e})") from None
        if not isinstance(config, dict) or not isinstance(config.get("weight_map"), dict):
            raise FileFormatError(self.filepath, "is not a sharded-weights map: it has no 'weight_map' object "
                                                 "(write it with save_weights(path, max_shard_size=...))")
        self.weight_map = config["weight_map"]
        self._folder = os.path.dirname(os.path.abspath(self.filepath))
        self._files = {}

    def _file(self, fname):
        if fname not in self._files:
            from .io import _open_h5
            if not isinstance(fname, str) or os.path.basename(fname) != fname:
                raise FileFormatError(self.filepath, f"names a shard {fname!r} that is not a file name beside it")
            path = os.path.join(self._folder, fname)
            if not os.path.exists(path):
                raise FileFormatError(self.filepath, f"needs the shard '{fname}', which is not in {self._folder}")
            self._files[fname] = _open_h5(path)
        return self._files[fname]

    def _shards(self, path):
        names = self.weight_map.get("/" + path.strip("/"))
        if names is None:
            return []
        return names if isinstance(names, list) else [names]

    def __contains__(self, path):
        return any(path in self._file(n) for n in self._shards(path))

    def __getitem__(self, path):
        groups = [self._file(n)[path] for n in self._shards(path) if path in self._file(n)]
        if not groups:
            raise KeyError(path)
        return groups[0] if len(groups) == 1 else _Merged(groups)

    def close(self):
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
