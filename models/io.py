"""Saving and loading model files that Keras reads and that Keras wrote: weights in Keras's
legacy HDF5 layout ('.h5') or Keras 3's ('.weights.h5', see state.py), whole models as Keras 3's
'.keras' zip or Keras's legacy '.h5', with the optimizer's state; all written atomically
(_fileio.atomic_write: temporary file, flush, fsync, rename; leftovers of killed saves removed),
and a file that is not what it should be is a FileFormatError naming the path and the problem."""
import datetime
import io
import json
import os
import zipfile
import zlib

import numpy as np

from .._fileio import FileFormatError, atomic_dir, atomic_write, describe_start, sniff
from ..layers.layer import Layer

HDF5_ATTR_LIMIT = 64512

# What zipfile and h5py raise for a damaged file, once the file itself could be opened.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error)
_ACCESS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def _h5py():
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is a dependency
        raise ImportError("Saving to HDF5 needs h5py: pip install h5py") from e
    return h5py


def _save_attr(group, name, values):
    """Stores a list of byte strings, split into name0, name1... chunks past HDF5's attribute limit."""
    data = np.asarray(values, dtype="S") if len(values) else np.zeros((0,), dtype="S1")
    chunks = 1
    while data.nbytes / chunks > HDF5_ATTR_LIMIT:
        chunks += 1
    if chunks == 1:
        group.attrs[name] = data
    else:
        for i, part in enumerate(np.array_split(data, chunks)):
            group.attrs[f"{name}{i}"] = part


def _load_attr(group, name):
    if name in group.attrs:
        vals = group.attrs[name]
    else:
        vals, i = [], 0
        while f"{name}{i}" in group.attrs:
            vals.extend(group.attrs[f"{name}{i}"])
            i += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in vals]


def legacy_weights(layer):
    """Keras's saved order: trainable weights, then non-trainable ones."""
    tw = layer.trainable_weights
    ids = {id(w) for w in tw}
    return tw + [w for w in layer.weights if id(w) not in ids]


def weight_layers(model):
    from .sequential import Sequential
    if isinstance(model, Sequential):
        return model.layers
    return model.layers if model.layers else [model]


def write_weights(group, model):
    layers = weight_layers(model)
    _save_attr(group, "layer_names", [l.name.encode("utf8") for l in layers])
    group.attrs["backend"] = "lamina"
    group.attrs["keras_version"] = KERAS_FORMAT_VERSION
    for layer in layers:
        g = group.create_group(layer.name)
        ws = legacy_weights(layer)
        names = [_weight_name(layer, w).encode("utf8") for w in ws]
        _save_attr(g, "weight_names", names)
        for n, w in zip(names, ws):
            val = w.numpy()
            ds = g.create_dataset(n.decode("utf8"), val.shape, dtype=val.dtype)
            if val.shape:
                ds[:] = val
            else:
                ds[()] = val


def _weight_name(layer, w):
    return w.path if "/" in w.path else f"{layer.name}/{w.name}"


def read_weights(group, model, by_name=False, skip_mismatch=False, source="the file"):
    """Loads weights saved in Keras's HDF5 layout: by topological order of layers with weights,
    or by layer name. Mismatches name the layer, the weight, and both shapes."""
    import warnings
    if "layer_names" not in group.attrs and "layer_names0" not in group.attrs and "model_weights" in group:
        group = group["model_weights"]
    if "layer_names" not in group.attrs and "layer_names0" not in group.attrs:
        if "layers" in group or "vars" in group:   # Keras 3's layout (a subclassed model has no 'layers')
            if by_name:
                raise ValueError(f"{source} is in Keras 3's '.weights.h5' layout, which is matched by structure; "
                                 "by_name=True needs a legacy '.h5' weights file")
            from .state import load_state
            # as Keras's load_weights, the compiled model's optimizer state too (state.load_optimizer)
            return load_state(model, group, source, include_optimizer=True, skip_mismatch=skip_mismatch)
        raise ValueError(f"{source} holds no Keras weights (neither a 'layer_names' attribute nor a 'layers' group)")
    names = _load_attr(group, "layer_names")
    saved = []
    for n in names:
        g = _member(group, n, source, f"the weights of layer '{n}' (listed in its layer_names)")
        wnames = _load_attr(g, "weight_names")
        saved.append((n, wnames, [np.asarray(_member(g, w, source, f"weight '{w}' of layer '{n}'")) for w in wnames]))
    layers = weight_layers(model)
    if by_name:
        by = {n: (w, v) for n, w, v in saved}
        for layer in layers:
            if layer.name not in by:
                continue
            wnames, values = by[layer.name]
            _assign(layer, wnames, values, skip_mismatch, source, warnings)
        return
    saved = [s for s in saved if s[2]]
    targets = [l for l in layers if l.weights]
    if len(saved) != len(targets):
        raise ValueError(f"Layer count mismatch when loading weights from {source}: the model has {len(targets)} "
                         f"layers with weights, the file has {len(saved)}. {_first_mismatch(targets, saved)} "
                         "Is the file for another architecture? Use by_name=True to load matching layers only.")
    for layer, (n, wnames, values) in zip(targets, saved):
        _assign(layer, wnames, values, skip_mismatch, source, warnings, saved_name=n)


def _member(group, name, source, what):
    """group[name]; a missing one is a FileFormatError naming `source`, the path in the file and
    what it should hold."""
    try:
        return group[name]
    except KeyError as e:
        where = f"{group.name.rstrip('/')}/{name}"
        raise FileFormatError(source, f"has no '{where}' for {what}; the file is damaged, was edited, or was "
                                      "not written for this kind of model") from e


def _first_mismatch(targets, saved):
    """Names the first layer whose weight shapes differ from the file's layer at the same position."""
    for i, (layer, (name, wnames, values)) in enumerate(zip(targets, saved)):
        want = [w.shape for w in legacy_weights(layer)]
        got = [tuple(v.shape) for v in values]
        if want != got:
            return (f"The first difference is at position {i}: the model's layer '{layer.name}' has weight shapes "
                    f"{want}, the file's layer '{name}' has {got}.")
    short, n = ("file", len(saved)) if len(saved) < len(targets) else ("model", len(targets))
    extra = targets[n:] if short == "file" else [s[0] for s in saved[n:]]
    names = [l.name if isinstance(l, Layer) else l for l in extra]
    return f"The first {n} layers match; the {short} ends there, the other has {names[:5]} more."


def _assign(layer, wnames, values, skip_mismatch, source, warnings, saved_name=None):
    _assign_list(layer, legacy_weights(layer), wnames, values, skip_mismatch, source, warnings, saved_name)


def _assign_list(layer, ws, wnames, values, skip_mismatch, source, warnings, saved_name=None):
    where = f"layer '{layer.name}'" + (f" (saved as '{saved_name}')" if saved_name and saved_name != layer.name else "")
    if len(ws) != len(values):
        msg = (f"Weight count mismatch for {where} when loading from {source}: the layer has {len(ws)} weights "
               f"{[w.path for w in ws]}, the file has {len(values)} {wnames}")
        if skip_mismatch:
            warnings.warn(msg + "; skipped")
            return
        raise ValueError(msg)
    for w, name, v in zip(ws, wnames, values):
        if tuple(v.shape) != w.shape:
            msg = (f"Shape mismatch for {where}, weight '{w.path}' (file: '{name}'): expected shape {w.shape}, "
                   f"found {tuple(v.shape)} in {source}")
            if skip_mismatch:
                warnings.warn(msg + "; skipped")
                return
            raise ValueError(msg)
    for w, v in zip(ws, values):
        w.assign(v)


def is_chief(model):
    """False on the processes of a multi-process strategy other than rank 0, which write no files."""
    strategy = getattr(model, "_distribute_strategy", None)
    return strategy is None or strategy.is_chief


def save_weights(model, filepath, overwrite=True, max_shard_size=None):
    """Writes the weights (only on rank 0 of a multi-process strategy: the others write nothing).
    '.weights.h5': Keras 3's layout, with the compiled model's optimizer state under "optimizer"
    as Keras's save_weights writes it; other names: Keras's legacy '.h5' weights layout. With
    `max_shard_size` (GB), Keras's sharded files: a '.weights.json' map and '.weights.h5' shards
    beside it (models/sharded.py)."""
    if not is_chief(model):
        return
    h5py = _h5py()
    filepath = os.fspath(filepath)
    if max_shard_size is not None:
        if filepath.endswith("weights.h5"):   # Keras renames it, with a warning
            import warnings
            new = filepath[:-len(".h5")] + ".json"
            warnings.warn(f"Saving sharded weights requires `*.json` as the extension. The original path: "
                          f"{filepath} will be renamed to {new}.", stacklevel=3)
            filepath = new
        elif not filepath.endswith("weights.json"):
            raise ValueError("The filename must end in `.weights.json` when `max_shard_size` is specified. "
                             f"Received: filepath={filepath}")
    elif filepath.endswith(".weights.json"):
        raise ValueError(f"save_weights: '{filepath}' is a sharded-weights name: pass max_shard_size (in GB) to "
                         "write shards, or name the file '.weights.h5'")
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists; pass overwrite=True to replace it")
    if not model.built:
        raise ValueError(f"Model '{model.name}' has no weights yet: build it (call it on data or give it an Input) "
                         "before save_weights")
    if max_shard_size is not None:
        from .sharded import save_sharded
        return save_sharded(model, filepath, max_shard_size)
    with atomic_write(filepath) as f:
        with h5py.File(f, "w") as h5:
            if filepath.endswith(".weights.h5"):
                from .state import save_state
                save_state(model, h5, include_optimizer=True)   # Keras 3's layout for this suffix
            else:
                write_weights(h5, model)     # the legacy Keras layout of '.h5' weight files


def load_weights(model, filepath, by_name=False, skip_mismatch=False):
    """Loads weights from '.weights.h5' / '.h5' (or the weights of a '.keras' file, or Keras's
    sharded '.weights.json' and its shards). A file that is not what it should be raises
    FileFormatError naming the path and the problem. From Keras 3's layout ('.weights.h5',
    '.keras', '.weights.json') the compiled model's optimizer state is loaded too, as Keras does
    (an optimizer not built yet keeps its state, with a warning: see state.load_optimizer)."""
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No weights file at {filepath}")
    with _reading(filepath):
        if filepath.endswith(".keras"):
            _, weights, _ = _read_keras_zip(filepath)
            with _open_h5_bytes(weights, filepath) as h5:
                read_weights(h5, model, by_name, skip_mismatch, filepath)
            return
        if filepath.endswith(".json"):
            if by_name:
                raise ValueError(f"{filepath} holds sharded weights in Keras 3's layout, which is matched by "
                                 "structure; by_name=True needs a legacy '.h5' weights file")
            from .sharded import ShardedReader
            from .state import load_state
            with ShardedReader(filepath) as root:
                load_state(model, root, filepath, include_optimizer=True, skip_mismatch=skip_mismatch)
            return
        with _open_h5(filepath) as h5:
            read_weights(h5, model, by_name, skip_mismatch, filepath)


# ---- whole models -------------------------------------------------------------------------------
#
# '.keras': Keras 3's zip: metadata.json {"keras_version", "date_saved"}, config.json (the model
# serialized as Keras's serialize_keras_object does, with its compile_config), model.weights.h5
# (Keras 3's layout, the optimizer under "optimizer").
# '.h5': Keras's legacy whole-model file: root attributes model_config, training_config,
# keras_version, backend; group model_weights (legacy layout); group optimizer_weights.

KERAS_FORMAT_VERSION = "3.15.1"   # the Keras release whose file format lamina writes (and is tested against)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"Cannot serialize {o!r} ({type(o).__name__}) in a model config")


def _tuplify(cfg):
    """JSON turns tuples into lists; shapes go back to tuples."""
    if isinstance(cfg, dict):
        return {k: (tuple(_tuplify(v)) if k.endswith("shape") and isinstance(v, list) else _tuplify(v))
                for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_tuplify(v) for v in cfg]
    return cfg


def _model_to_config(model):
    """The '.keras' config.json, serialized as Keras saves it: in an ObjectSharingScope, so an
    object met twice (a regularizer given to two layers, a layer a wrapper also holds) carries
    "shared_object_id" and loads back as one object."""
    from ..saving import ObjectSharingScope, serialize_keras_object
    with ObjectSharingScope():
        return serialize_keras_object(model)


def save_model(model, filepath, overwrite=True, include_optimizer=True, zipped=None, **kwargs):
    """Writes `model` to '.keras' (Keras 3's zip) or '.h5' (Keras's legacy file), atomically;
    only on rank 0 of a multi-process strategy (the others write nothing). `zipped=False` writes
    the '.keras' archive's members into the folder `filepath` (not ending in '.keras') instead, as
    Keras does; load_model reads both. Keras's deprecated `save_format` is accepted when it agrees with the extension."""
    if not is_chief(model):
        return
    h5py = _h5py()
    filepath = os.fspath(filepath)
    save_format = kwargs.pop("save_format", None)
    if kwargs:
        raise TypeError(f"save_model: unrecognized keyword argument(s) {sorted(kwargs)}")
    if save_format:
        if not filepath.endswith((".keras", ".h5", ".hdf5")):
            raise ValueError("The `save_format` argument is deprecated in Keras 3 (and lamina). Remove it and pass "
                             f"a file path ending in '.keras' or '.h5'; received {filepath!r}")
        import warnings
        warnings.warn("The `save_format` argument is deprecated in Keras 3: the format follows the file's "
                      "extension. Remove the argument.", stacklevel=3)
    if zipped is False and filepath.endswith(".keras"):
        raise ValueError("When using `zipped=False`, the `filepath` argument should not end in `.keras` (it names "
                         f"the folder that holds the model's files, as in Keras). Received: filepath={filepath!r}")
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists; pass overwrite=True to replace it")
    if not model.built:
        raise ValueError(f"Model '{model.name}' is not built yet; call it on data or give it an Input before saving")
    if filepath.endswith(".keras") or zipped is False:
        from .state import save_state
        config = json.dumps(_model_to_config(model), default=_json_default)
        metadata = json.dumps({"keras_version": KERAS_FORMAT_VERSION,
                               "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")})
        buf = io.BytesIO()
        # HDF5's newer object format (any h5py, Keras's too, reads it): groups without their own
        # B-tree and heap, about 1 KB less per layer; a quantized MobileNet 0.25 file 0.51 -> 0.36 MB
        with h5py.File(buf, "w", libver="latest") as h5:
            save_state(model, h5, include_optimizer=include_optimizer)
        if zipped is False:   # the archive's members as files of a folder (Keras's unzipped form)
            with atomic_dir(filepath) as folder:
                for name, data in (("metadata.json", metadata), ("config.json", config),
                                   ("model.weights.h5", buf.getvalue())):
                    with open(os.path.join(folder, name), "wb") as f:
                        f.write(data.encode("utf-8") if isinstance(data, str) else data)
            return
        with atomic_write(filepath) as f:
            with zipfile.ZipFile(f, "w") as z:   # stored, not deflated, as Keras writes it
                z.writestr("metadata.json", metadata)
                z.writestr("config.json", config)
                z.writestr("model.weights.h5", buf.getvalue())
        return
    if not filepath.endswith((".h5", ".hdf5")):
        raise ValueError(f"Unknown model file extension in {filepath!r}: use '.keras' or '.h5'")
    with atomic_write(filepath) as f:
        with h5py.File(f, "w") as h5:
            _write_h5_model(h5, model, include_optimizer)


def _write_h5_model(h5, model, include_optimizer):
    from .saving import compile_config, legacy_config
    with legacy_config():
        config = {"class_name": type(model).__name__, "config": model.get_config()}
        training = compile_config(model)
    h5.attrs["model_config"] = json.dumps(config, default=_json_default)
    if training is not None:
        h5.attrs["training_config"] = json.dumps(training, default=_json_default)
    h5.attrs["keras_version"] = KERAS_FORMAT_VERSION
    h5.attrs["backend"] = "lamina"
    write_weights(h5.create_group("model_weights"), model)
    opt = getattr(model, "optimizer", None)
    if include_optimizer and training is not None and opt is not None and opt.built:
        _write_optimizer_h5(h5.create_group("optimizer_weights"), opt)


def _write_optimizer_h5(group, opt):
    """Keras's legacy optimizer_weights: weight_names [<opt>/iteration, <opt>/learning_rate,
    <opt>/<var>_<slot>...] in the optimizer's variable order, one dataset each."""
    store = {}

    class _Dict:
        def __setitem__(self, k, v):
            store[k] = np.asarray(v)
    opt.save_own_variables(_Dict())
    head = ["iteration"] + (["learning_rate"] if opt._lr_is_variable() else [])
    names = []
    for n in head + [s.name for s in opt._keras_ordered_slots()]:
        name, i = f"{opt.name}/{n}", 1
        while name in names:   # slot names come from variable paths, which may repeat across models
            name, i = f"{opt.name}/{n}_{i}", i + 1
        names.append(name)
    _save_attr(group, "weight_names", [n.encode("utf8") for n in names])
    for i, n in enumerate(names):
        group.create_dataset(n, data=store[str(i)])


def _read_optimizer_h5(group, model, source):
    opt = model.optimizer
    opt.build(model.trainable_weights)
    if "iterations" in group.attrs:       # lamina's files before the Keras layout: var.path/slot names
        names = _load_attr(group, "weight_names")
        slots = [s for ss in opt._slots for s in ss]
        if len(names) != len(slots):
            raise ValueError(f"Optimizer state in {source} has {len(names)} slot variables, the model's optimizer "
                             f"expects {len(slots)}; the file does not match this model")
        for n, s in zip(names, slots):
            s.assign(np.asarray(_member(group, n, source, "an optimizer slot")))
        opt.iterations = int(group.attrs["iterations"])
        return
    names = _load_attr(group, "weight_names")
    values = {str(i): np.asarray(_member(group, n, source, "an optimizer variable")) for i, n in enumerate(names)}
    try:
        opt.load_own_variables(values)
    except ValueError as e:
        raise ValueError(f"Could not restore the optimizer state from {source}: {e}") from None


class _reading:
    """Around a whole load: an error h5py or zipfile raises while reading data (a damaged file
    that opened) becomes a FileFormatError naming the path, with the original as its cause."""

    def __init__(self, filepath):
        self.filepath = filepath

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if e is None or isinstance(e, (FileFormatError, _ACCESS_ERRORS)) or \
                not isinstance(e, _ZIP_ERRORS + (OSError,)):
            return False
        raise FileFormatError(self.filepath, f"could not be read, it is corrupt ({type(e).__name__}: {e})") from e


def _open_h5(filepath):
    """h5py.File(filepath, "r"); a file that is not a readable HDF5 file is a FileFormatError
    that says what it is instead (empty, a zip archive, truncated, other bytes)."""
    h5py = _h5py()
    kind = sniff(filepath)   # a missing or unreadable file raises its own OSError here
    try:
        return h5py.File(filepath, "r")
    except OSError as e:
        if kind == "empty":
            problem = "is empty (0 bytes), not an HDF5 file"
        elif kind == "zip":
            problem = ("is a zip archive, not an HDF5 file: a '.keras' model file? Load it with "
                       "lamina.saving.load_model, or name it '.keras'")
        elif kind == "other":
            problem = f"is not an HDF5 file (it is {describe_start(filepath)})"
        elif "truncated" in str(e):
            problem = f"is a truncated HDF5 file (an interrupted copy or download?): {e}"
        else:
            problem = f"is a corrupt HDF5 file: {e}"
        raise FileFormatError(filepath, problem) from e


def _open_h5_bytes(data, filepath, member="model.weights.h5"):
    h5py = _h5py()
    try:
        return h5py.File(io.BytesIO(data), "r")
    except OSError as e:
        raise FileFormatError(filepath, f"{member} inside the archive is not a readable HDF5 file ({len(data)} "
                                        f"bytes): {e}") from e


def _read_json(text, filepath, what):
    try:
        return json.loads(text.decode("utf8") if isinstance(text, bytes) else text)
    except ValueError as e:   # JSONDecodeError, UnicodeDecodeError
        raise FileFormatError(filepath, f"{what} is not valid JSON: {e}") from e


def _read_keras_dir(filepath):
    """(config dict, weights bytes, assets) from a '.keras' folder (save_model's zipped=False)."""
    members = {}
    for n in ("config.json", "model.weights.h5"):
        path = os.path.join(filepath, n)
        if not os.path.isfile(path):
            raise FileFormatError(filepath, f"is a folder but not an unzipped Keras model: it has no {n} (it holds "
                                            f"{sorted(os.listdir(filepath))[:10]})")
        with open(path, "rb") as f:
            members[n] = f.read()
    assets = {}
    root = os.path.join(filepath, "assets")
    for base, _, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                assets["assets/" + os.path.relpath(path, root).replace(os.sep, "/")] = f.read()
    return _read_json(members["config.json"], filepath, "config.json"), members["model.weights.h5"], assets


def _read_keras_zip(filepath):
    """(config dict, weights bytes) from a '.keras' file; a broken file is a FileFormatError."""
    if os.path.isdir(filepath):
        return _read_keras_dir(filepath)
    kind = sniff(filepath)
    try:
        with zipfile.ZipFile(filepath) as z:
            names = z.namelist()
            members = {"assets": {n: z.read(n) for n in names if n.startswith("assets/") and not n.endswith("/")}}
            for n in ("config.json", "model.weights.h5"):
                try:
                    members[n] = z.read(n)
                except KeyError as e:
                    raise FileFormatError(filepath, f"is not a Keras model file: the archive has no {n} (it holds "
                                                    f"{names[:10]})") from e
    except _ZIP_ERRORS + (OSError,) as e:
        if isinstance(e, _ACCESS_ERRORS):
            raise
        if kind == "hdf5":
            problem = ("is an HDF5 file, not a '.keras' zip archive: a legacy model or weights file? Name it "
                       "'.h5' (load_model) or load it with model.load_weights")
        elif kind == "zip":
            problem = f"is a truncated or corrupt zip archive ({type(e).__name__}: {e})"
        elif kind == "empty":
            problem = "is empty (0 bytes), not a '.keras' zip archive"
        else:
            problem = f"is not a '.keras' file, which is a zip archive (it is {describe_start(filepath)})"
        raise FileFormatError(filepath, problem) from e
    return (_read_json(members["config.json"], filepath, "config.json"), members["model.weights.h5"],
            members["assets"])


def _load_assets(model, assets):
    """Hands each object the files Keras stored for it under `assets/<its path>/` (e.g. an adapted
    TextVectorization's vocabulary.txt), through its load_assets(dir), as Keras's loader does."""
    import tempfile
    from .state import walk
    with tempfile.TemporaryDirectory(prefix="lamina_assets_") as tmp:
        def visit(obj, path):
            prefix = f"assets/{path}/" if path else "assets/"
            mine = {n[len(prefix):]: data for n, data in assets.items()
                    if n.startswith(prefix) and "/" not in n[len(prefix):]}
            if not mine or not hasattr(obj, "load_assets"):
                return
            folder = os.path.join(tmp, path.replace("/", os.sep) or "root")
            os.makedirs(folder, exist_ok=True)
            for name, data in mine.items():
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(data)
            obj.load_assets(folder)
        walk(model, visit, with_optimizer=False)


def _from_config(config, custom_objects, filepath):
    from ..saving import deserialize_keras_object
    try:
        return deserialize_keras_object(_tuplify(config), custom_objects=custom_objects)
    except (ValueError, TypeError) as e:
        raise type(e)(f"Could not rebuild the model saved in {filepath}: {e}") from None


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Loads a model saved by lamina or by Keras 3 ('.keras', or the legacy '.h5'): architecture,
    weights and, when it was compiled, the optimizer and its state, so training resumes exactly.
    With `safe_mode` (the default) a saved Python lambda is refused; safe_mode=False runs it."""
    from ..saving import SafeModeScope
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No model file at {filepath}")
    with _reading(filepath), SafeModeScope(safe_mode is not False):
        return _load_model(filepath, custom_objects, compile)


def _load_model(filepath, custom_objects, compile):
    if filepath.endswith(".keras") or os.path.isdir(filepath) or zipfile.is_zipfile(filepath):
        from .state import load_state
        config, weights, assets = _read_keras_zip(filepath)
        if not isinstance(config, dict) or "class_name" not in config:
            raise FileFormatError(filepath, "config.json does not describe a model (no 'class_name')")
        tc = config.pop("compile_config", None)
        model = _from_config(config, custom_objects, filepath)
        h5 = _open_h5_bytes(weights, filepath)
        with h5:
            load_state(model, h5, filepath)
            if assets:
                _load_assets(model, assets)
            if compile and tc:
                _compile(model, tc, filepath)
                if "optimizer_state" in h5:   # lamina's files before Keras's layout
                    _read_optimizer_h5(h5["optimizer_state"], model, filepath)
                elif "optimizer/vars" in h5 and len(h5["optimizer/vars"]):
                    from .state import load_optimizer
                    model.optimizer.build(model.trainable_weights)   # as Keras's compile_from_config
                    load_optimizer(model, h5, filepath)
        return model
    with _open_h5(filepath) as h5:
        if "model_config" not in h5.attrs:
            raise FileFormatError(filepath, "holds no model config (it may be a weights-only file: build the model "
                                            "in code and call model.load_weights)")
        config = _read_json(h5.attrs["model_config"], filepath, "the model_config attribute")
        model = _from_config(config, custom_objects, filepath)
        read_weights(_member(h5, "model_weights", filepath, "the model's weights"), model, source=filepath)
        if compile and "training_config" in h5.attrs:
            _compile(model, _read_json(h5.attrs["training_config"], filepath, "the training_config attribute"),
                     filepath)
            if "optimizer_weights" in h5:
                _read_optimizer_h5(h5["optimizer_weights"], model, filepath)
    return model


def _compile(model, config, filepath):
    try:  # the model's method, which a subclass may override (Keras calls the instance's too)
        model.compile_from_config(config)
    except (ValueError, TypeError) as e:
        raise type(e)(f"Could not compile the model saved in {filepath} as it was: {e}. Load it with "
                      "compile=False to skip.") from None
