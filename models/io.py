"""Saving and loading: Keras's HDF5 weight layout, whole models (.h5 and .keras) with the
optimizer's state, all written atomically (temporary file, flush, fsync, rename)."""
import contextlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np

from ..layers.layer import Layer

HDF5_ATTR_LIMIT = 64512


@contextlib.contextmanager
def atomic_write(path, mode="w+b"):
    """Yields a file object; the file replaces `path` only when the block completes."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


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
    group.attrs["backend"] = b"lamina"
    group.attrs["keras_version"] = b"3.0.0-lamina"
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


# ---- Keras 3's layout (".weights.h5" and inside ".keras"): layers/<snake_class>/vars/<i> ----------

def _v3_children(model):
    """(path name, layer) pairs as Keras 3 names them: snake-case class names, de-duplicated."""
    from .sequential import Sequential
    from ..layers.layer import to_snake_case
    layers = model.layers if isinstance(model, Sequential) else list(model.layers)
    used, out = {}, []
    for layer in layers:
        base = to_snake_case(type(layer).__name__)
        if base in used:
            used[base] += 1
            name = f"{base}_{used[base]}"
        else:
            used[base] = 0
            name = base
        out.append((name, layer))
    return out


def _is_container(layer):
    from .model import Model
    return isinstance(layer, Model)


def _sublayers(layer):
    """(attribute name, sub-layer) pairs, as Keras 3 stores them: a sub-layer's weights go under
    the attribute that holds it (an LSTM's under 'cell', a wrapper's under 'layer')."""
    from ..layers.layer import Layer
    return sorted((k, v) for k, v in vars(layer).items()
                  if isinstance(v, Layer) and not k.startswith("_") and k != "_outer")


def _write_layer_v3(g, layer):
    own = [w for w in legacy_weights(layer) if any(w is o for o in layer._own_weights)]
    if own:
        v = g.create_group("vars")
        for i, w in enumerate(own):
            v.create_dataset(str(i), data=w.numpy())
    for attr, sub in _sublayers(layer):
        sg = g.require_group(attr)
        sg.attrs["name"] = sub.name
        _write_layer_v3(sg, sub)


def write_weights_v3(group, model):
    for name, layer in _v3_children(model):
        g = group.require_group(f"layers/{name}")
        g.attrs["name"] = layer.name
        if _is_container(layer):
            write_weights_v3(g, layer)
        else:
            _write_layer_v3(g, layer)


def _read_layer_v3(group, path, layer, skip_mismatch, source, warnings):
    own = [w for w in legacy_weights(layer) if any(w is o for o in layer._own_weights)]
    vars_path = path + "/vars"
    values = [np.asarray(group[vars_path][str(i)]) for i in range(len(group[vars_path]))] \
        if vars_path in group else []
    if own or values:
        _assign_list(layer, own, [f"{vars_path}/{i}" for i in range(len(values))], values, skip_mismatch, source,
                     warnings)
    for attr, sub in _sublayers(layer):
        _read_layer_v3(group, f"{path}/{attr}", sub, skip_mismatch, source, warnings)


def read_weights_v3(group, model, skip_mismatch=False, source="the file"):
    import warnings
    for name, layer in _v3_children(model):
        path = f"layers/{name}"
        if _is_container(layer):
            if path in group:
                read_weights_v3(group[path], layer, skip_mismatch, source)
            continue
        _read_layer_v3(group, path, layer, skip_mismatch, source, warnings)


def read_weights(group, model, by_name=False, skip_mismatch=False, source="the file"):
    """Loads weights saved in Keras's HDF5 layout: by topological order of layers with weights,
    or by layer name. Mismatches name the layer, the weight, and both shapes."""
    import warnings
    if "layer_names" not in group.attrs and "layer_names0" not in group.attrs and "model_weights" in group:
        group = group["model_weights"]
    if "layer_names" not in group.attrs and "layer_names0" not in group.attrs:
        if "layers" in group:
            if by_name:
                raise ValueError(f"{source} is in Keras 3's '.weights.h5' layout, which is matched by structure; "
                                 "by_name=True needs a legacy '.h5' weights file")
            return read_weights_v3(group, model, skip_mismatch, source)
        raise ValueError(f"{source} holds no Keras weights (neither a 'layer_names' attribute nor a 'layers' group)")
    names = _load_attr(group, "layer_names")
    saved = []
    for n in names:
        g = group[n]
        wnames = _load_attr(g, "weight_names")
        saved.append((n, wnames, [np.asarray(g[w]) for w in wnames]))
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


def save_weights(model, filepath, overwrite=True):
    h5py = _h5py()
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists; pass overwrite=True to replace it")
    if not model.built:
        raise ValueError(f"Model '{model.name}' has no weights yet: build it (call it on data or give it an Input) "
                         "before save_weights")
    with atomic_write(filepath) as f:
        with h5py.File(f, "w") as h5:
            if filepath.endswith(".weights.h5"):
                write_weights_v3(h5, model)  # Keras 3's layout for this suffix
            else:
                write_weights(h5, model)     # the legacy Keras layout of '.h5' weight files


def load_weights(model, filepath, by_name=False, skip_mismatch=False):
    h5py = _h5py()
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No weights file at {filepath}")
    if filepath.endswith(".keras"):
        with zipfile.ZipFile(filepath) as z:
            with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as h5:
                read_weights(h5, model, by_name, skip_mismatch, filepath)
        return
    with h5py.File(filepath, "r") as h5:
        read_weights(h5, model, by_name, skip_mismatch, filepath)


# ---- whole models -------------------------------------------------------------------------------

def _model_config(model):
    from .saving import serialize_layer
    return serialize_layer(model)


def _training_config(model):
    if not getattr(model, "compiled", False):
        return None
    from .. import losses, optimizers
    c = model._compiled

    def ser_loss(l):
        if isinstance(l, (list, tuple)):
            return [ser_loss(v) for v in l]
        if isinstance(l, dict):
            return {k: ser_loss(v) for k, v in l.items()}
        return losses.serialize(losses.get(l)) if l is not None else None

    def ser_metric(m):
        if isinstance(m, (list, tuple)):
            return [ser_metric(v) for v in m]
        if isinstance(m, dict):
            return {k: ser_metric(v) for k, v in m.items()}
        return m if isinstance(m, str) else getattr(m, "name", None)
    return {"optimizer_config": optimizers.serialize(model.optimizer), "loss": ser_loss(c.loss),
            "loss_weights": c.loss_weights, "metrics": ser_metric(c.metrics_spec),
            "weighted_metrics": ser_metric(c.weighted_spec)}


def _write_optimizer(group, model):
    opt = model.optimizer
    group.attrs["iterations"] = int(opt.iterations)
    names, values = [], []
    for i, slots in enumerate(opt._slots):
        var = opt._variables[i]
        for s in slots:
            names.append(f"{var.path}/{s.name}".encode("utf8"))
            values.append(s.numpy())
    _save_attr(group, "weight_names", names)
    for n, v in zip(names, values):
        group.create_dataset(n.decode("utf8"), data=v)


def _read_optimizer(group, model, source):
    opt = model.optimizer
    opt.build(model.trainable_weights)
    names = _load_attr(group, "weight_names")
    slots = [s for ss in opt._slots for s in ss]
    if len(names) != len(slots):
        raise ValueError(f"Optimizer state in {source} has {len(names)} slot variables, the model's optimizer "
                         f"expects {len(slots)}; the file does not match this model")
    for n, s in zip(names, slots):
        v = np.asarray(group[n])
        if tuple(v.shape) != s.shape:
            raise ValueError(f"Optimizer slot '{n}' in {source}: expected shape {s.shape}, found {tuple(v.shape)}")
        s.assign(v)
    opt.iterations = int(group.attrs["iterations"])


def _write_h5_model(h5, model, include_optimizer):
    h5.attrs["model_config"] = json.dumps(_model_config(model), default=_json_default)
    tc = _training_config(model)
    if tc is not None:
        h5.attrs["training_config"] = json.dumps(tc, default=_json_default)
    h5.attrs["backend"] = b"lamina"
    write_weights(h5.create_group("model_weights"), model)
    if include_optimizer and tc is not None and model.optimizer.built:
        _write_optimizer(h5.create_group("optimizer_weights"), model)


def save_model(model, filepath, overwrite=True, include_optimizer=True):
    h5py = _h5py()
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists; pass overwrite=True to replace it")
    if not model.built:
        raise ValueError(f"Model '{model.name}' is not built yet; call it on data or give it an Input before saving")
    if filepath.endswith(".keras"):
        buf = io.BytesIO()
        with h5py.File(buf, "w") as h5:
            write_weights_v3(h5, model)
            if include_optimizer and getattr(model, "compiled", False) and model.optimizer.built:
                _write_optimizer(h5.create_group("optimizer_state"), model)
        with atomic_write(filepath) as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr("metadata.json", json.dumps({"keras_version": "3.0.0-lamina", "backend": "lamina"}))
                z.writestr("config.json", json.dumps({**_model_config(model),
                                                      "compile_config": _training_config(model)},
                                                     default=_json_default))
                z.writestr("model.weights.h5", buf.getvalue())
        return
    if not filepath.endswith((".h5", ".hdf5")):
        raise ValueError(f"Unknown model file extension in {filepath!r}: use '.keras' or '.h5'")
    with atomic_write(filepath) as f:
        with h5py.File(f, "w") as h5:
            _write_h5_model(h5, model, include_optimizer)


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


def _compile_from(model, tc):
    if not tc:
        return
    from .. import optimizers, losses
    opt = optimizers.get(tc["optimizer_config"])
    model.compile(optimizer=opt, loss=_deser_loss(tc.get("loss")), loss_weights=tc.get("loss_weights"),
                  metrics=tc.get("metrics"), weighted_metrics=tc.get("weighted_metrics"))


def _deser_loss(l):
    from .. import losses
    if isinstance(l, list):
        return [_deser_loss(v) for v in l]
    if isinstance(l, dict) and "class_name" not in l:
        return {k: _deser_loss(v) for k, v in l.items()}
    return losses.get(l) if l is not None else None


def load_model(filepath, custom_objects=None, compile=True):
    """Loads a model saved with `model.save` (.keras or .h5): architecture, weights and, when it
    was compiled, the optimizer and its state, so training resumes exactly."""
    from .saving import deserialize_layer
    h5py = _h5py()
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No model file at {filepath}")
    if filepath.endswith(".keras"):
        with zipfile.ZipFile(filepath) as z:
            config = json.loads(z.read("config.json"))
            weights = z.read("model.weights.h5")
        tc = config.pop("compile_config", None)
        model = deserialize_layer(_tuplify(config), custom_objects)
        with h5py.File(io.BytesIO(weights), "r") as h5:
            read_weights(h5, model, source=filepath)
            if compile and tc:
                _compile_from(model, tc)
                if "optimizer_state" in h5:
                    _read_optimizer(h5["optimizer_state"], model, filepath)
        return model
    with h5py.File(filepath, "r") as h5:
        if "model_config" not in h5.attrs:
            raise ValueError(f"{filepath} holds no model config (it may be a weights-only file: build the model in "
                             "code and call model.load_weights)")
        mc = h5.attrs["model_config"]
        config = json.loads(mc.decode("utf8") if isinstance(mc, bytes) else mc)
        model = deserialize_layer(_tuplify(config), custom_objects)
        read_weights(h5["model_weights"], model, source=filepath)
        if compile and "training_config" in h5.attrs:
            tcr = h5.attrs["training_config"]
            _compile_from(model, json.loads(tcr.decode("utf8") if isinstance(tcr, bytes) else tcr))
            if "optimizer_weights" in h5:
                _read_optimizer(h5["optimizer_weights"], model, filepath)
    return model
