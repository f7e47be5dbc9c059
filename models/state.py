"""Keras 3's variable layout (".weights.h5", and "model.weights.h5" inside ".keras"), written and
read as Keras's saving_lib does: every saveable object (a layer, a model, the optimizer) has a
group `<path>/vars` (attribute "name") holding what its `save_own_variables(store)` wrote under
"0", "1", ...; `load_own_variables(store)` reads it back.

Paths: a Functional or Sequential model's layers are under `layers/<snake_case class name>`
(de-duplicated: dense, dense_1, ...), a layer's sub-layers under the attribute that holds them
(`lstm/cell`, `bidirectional/forward_layer`; in a subclassed model Keras's `layers` property sorts
among them, so a layer no earlier attribute reaches is under `layers/`), lists of layers as
containers, the optimizer under `optimizer`, the model's own variables in the root `vars`.

The optimizer's group holds its whole state, a wrapper's inner optimizers included (Keras's
`optimizer.variables`); Keras also writes each inner optimizer's own group below it
(`optimizer/inner_optimizer` of a LossScaleOptimizer, `optimizer/optimizers/adam`, ... of a
MultiOptimizer) and so does save_state. Loading reads the optimizer's group alone, with Keras's
load_weights rules (load_optimizer)."""
import warnings

import numpy as np

from .._fileio import FileFormatError
from ..layers.layer import Layer, to_snake_case

# lamina's bookkeeping attributes that hold layers; never a saved path
_SKIP = frozenset({"_layers", "_outer", "_stack", "_inbound_nodes"})


class H5Store:
    """The dict-like store `save_own_variables` / `load_own_variables` see: one `vars` group."""

    def __init__(self, root, path, mode, name=None):
        self._root, self._path, self._mode = root, path, mode
        self._group = None
        if mode == "w":
            base = root.require_group(path) if path else root
            self._group = base.create_group("vars")
            if name is not None:
                self._group.attrs["name"] = name
        else:
            full = f"{path}/vars" if path else "vars"
            if full in root:
                self._group = root[full]

    @property
    def path(self):
        return f"{self._path}/vars" if self._path else "vars"

    def keys(self):
        return list(self._group.keys()) if self._group is not None else []

    def __len__(self):
        return len(self.keys())

    def __contains__(self, key):
        return self._group is not None and key in self._group

    def __getitem__(self, key):
        if self._group is None or key not in self._group:
            raise KeyError(f"no variable '{key}' under '{self.path}'")
        return np.asarray(self._group[key])

    def __setitem__(self, key, value):
        if self._mode != "w":
            raise ValueError("This store is read-only")
        value = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
        self._group.create_dataset(key, data=value)


def _is_graph_model(obj):
    from .model import Functional
    from .sequential import Sequential
    return isinstance(obj, (Functional, Sequential))


def _name_key(name):
    return "~" + name if name.startswith("_") else name   # Keras visits private attributes last


def _children(obj, with_optimizer):
    """(attribute, child) pairs in Keras's order: a graph model's `layers` first, then the
    attributes (sorted, private ones last) that hold layers or lists/dicts of layers."""
    from .model import Model
    out = []
    attrs = dict(vars(obj))
    if _is_graph_model(obj):
        out.append(("layers", list(obj.layers)))
    elif isinstance(obj, Model):
        # a subclassed model: Keras walks dir(model), where Model's `layers` property sorts among
        # the attributes (a layer not reached through an earlier attribute is saved under layers/)
        attrs["layers"] = list(obj.layers)
    for attr in sorted(attrs, key=_name_key):
        if attr in _SKIP or attr.startswith("__"):
            continue
        value = attrs[attr]
        if isinstance(value, Layer) or isinstance(value, (list, tuple, dict)) and value and \
                all(isinstance(v, Layer) for v in (value.values() if isinstance(value, dict) else value)):
            out.append((attr, value))
    if with_optimizer and isinstance(obj, Model) and getattr(obj, "compiled", False) and \
            getattr(obj, "optimizer", None) is not None:
        out.append(("optimizer", obj.optimizer))
    return out


def _optimizer_children(optimizer):
    """(attribute, child) pairs of an optimizer in Keras's order (dir() sorted, private names
    last): the optimizers a wrapper holds, alone (LossScaleOptimizer's `inner_optimizer`) or in a
    list (MultiOptimizer's `optimizers`)."""
    from ..optimizers.optimizer import Optimizer
    out = []
    for attr in sorted(dir(optimizer), key=_name_key):
        if attr.startswith("__"):
            continue
        try:
            value = getattr(optimizer, attr)
        except Exception:   # a property that refuses to be read (MultiOptimizer's learning_rate): Keras skips it too
            continue
        if isinstance(value, Optimizer) or isinstance(value, (list, tuple)) and value and \
                all(isinstance(v, Optimizer) for v in value):
            out.append((attr, value))
    return out


def _join(path, name):
    return f"{path}/{name}" if path else name


def walk(obj, visit, path="", with_optimizer=True, visited=None):
    """Calls visit(saveable, path) for `obj` and everything below it, each object once."""
    visited = set() if visited is None else visited
    if id(obj) in visited:
        return
    visited.add(id(obj))
    from ..optimizers.optimizer import Optimizer
    visit(obj, path)
    if isinstance(obj, Layer):
        children = _children(obj, with_optimizer and path == "")
    elif isinstance(obj, Optimizer):
        children = _optimizer_children(obj)
    else:
        return
    for attr, child in children:
        p = _join(path, attr)
        if isinstance(child, (list, tuple, dict)):
            _walk_container(child, visit, p, visited)
        else:
            walk(child, visit, p, False, visited)


def _walk_container(items, visit, path, visited):
    used = {}
    for item in (items.values() if isinstance(items, dict) else items):
        if isinstance(item, (list, tuple, dict)):
            base = "container"
        else:
            base = to_snake_case(type(item).__name__)
        n = used.get(base, -1) + 1
        used[base] = n
        p = _join(path, base if n == 0 else f"{base}_{n}")
        if isinstance(item, (list, tuple, dict)):
            _walk_container(item, visit, p, visited)
        else:
            walk(item, visit, p, False, visited)


def save_state(model, h5, include_optimizer=True):
    """Writes `model`'s variables (and its optimizer's, when compiled) in Keras 3's layout."""
    def visit(obj, path):
        obj.save_own_variables(H5Store(h5, path, "w", getattr(obj, "name", None)))
    walk(model, visit, with_optimizer=include_optimizer)


def load_state(model, h5, source, include_optimizer=False, skip_mismatch=False):
    """Reads what save_state wrote (or Keras wrote). Errors name the object, the path in the file
    and `source`; with skip_mismatch=True a mismatching object keeps its values and is warned about.
    With include_optimizer, the compiled model's optimizer state too (see load_optimizer)."""
    def visit(obj, path):
        store = H5Store(h5, path, "r")
        try:
            obj.load_own_variables(store)
        except (ValueError, KeyError) as e:
            missing = store._group is None
            what = (f"has no group '{store.path}' for {_describe(obj)} ({e}); the file is damaged or was saved "
                    "from another architecture" if missing else
                    f"could not load the variables at '{store.path}' into {_describe(obj)}: {e}")
            if skip_mismatch:
                warnings.warn(f"{source}: {what}; skipped")
                return
            if missing:
                raise FileFormatError(source, what) from e
            raise ValueError(f"Could not load the variables at '{store.path}' of {source} into {_describe(obj)}: "
                             f"{e}") from None
    walk(model, visit, with_optimizer=False)
    if include_optimizer:
        load_optimizer(model, h5, source, skip_mismatch)


def load_optimizer(model, h5, source, skip_mismatch=False):
    """Loads the state of the compiled model's optimizer from the file's `optimizer/vars` group
    (its inner optimizers' included), as Keras's load_weights does:
    - a file without the group (saved from a model that was not compiled) changes nothing;
    - an optimizer whose variable count differs from the file's keeps its state, with a warning
      (Keras's "Skipping variable loading for optimizer"), typically one not built yet: a fresh
      model's optimizer is built by its first training step, after the weights are loaded; build
      it first (`model.optimizer.build(model.trainable_weights)`) to restore its state;
    - any other mismatch (a slot's shape) raises ValueError, or is warned about and skipped with
      skip_mismatch=True."""
    from ..optimizers.loss_scale_optimizer import own_variable_count
    optimizer = getattr(model, "optimizer", None)
    if not getattr(model, "compiled", False) or optimizer is None or "optimizer/vars" not in h5:
        return
    store = H5Store(h5, "optimizer", "r")
    n = len(store)

    def skip(has, why):
        warnings.warn(f"{source}: skipping variable loading for optimizer '{optimizer.name}', because it has {has} "
                      f"variables whereas the saved optimizer has {n} variables{why}; it keeps its state",
                      stacklevel=4)

    if not optimizer.built:
        has = own_variable_count(optimizer)   # its iteration count and learning rate: cheap
        if n != has:
            return skip(has, ". This is likely because the optimizer has not been called/built yet: call "
                             "model.optimizer.build(model.trainable_weights) before loading to restore its state")
    try:
        optimizer.load_own_variables(store)
    except KeyError as e:
        raise FileFormatError(source, f"the optimizer's group '{store.path}' lacks a variable ({e}); the file is "
                                      "damaged or was edited") from e
    except ValueError as e:
        has = own_variable_count(optimizer)
        if n != has:
            return skip(has, f" ({e})")
        if skip_mismatch:
            warnings.warn(f"{source}: could not load the optimizer state at '{store.path}' into "
                          f"{_describe(optimizer)}: {e}; skipped", stacklevel=3)
            return
        raise ValueError(f"Could not load the optimizer state at '{store.path}' of {source} into "
                         f"{_describe(optimizer)}: {e}") from None


def _describe(obj):
    name = getattr(obj, "name", None)
    return f"{type(obj).__name__} '{name}'" if name else type(obj).__name__
