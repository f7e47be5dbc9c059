"""`lamina.saving.KerasFileEditor`, as Keras 3's `keras.saving.KerasFileEditor`: opens a '.keras'
model file or a '.weights.h5' weights file (lamina's or Keras's: both write Keras 3's layout),
shows what it holds (`summary()`), lists how it differs from a model (`compare(model)`), edits the
saved weights (`rename_object`, `delete_object`, `add_object`, `delete_weight`, `add_weights`) and
writes the result (`save`, `resave_weights`), typically so that an old file loads into a model
whose architecture changed.

The weights are a tree of dicts, `editor.weights_dict`, keyed by the object paths of Keras 3's
layout (models/state.py): `layers/dense`, `layers/lstm/cell`, `layers/bidirectional/forward_layer/cell`,
`optimizer`, ...; an object's dict maps its weight names ("0", "1", ... in the order its
`save_own_variables` writes them) to NumPy arrays, and its sub-objects' names to their dicts; the
model's own weights (a subclassed model's) are top-level entries. In the file an object's weights
sit in the group `<path>/vars`; objects without weights (an InputLayer, a Reshape) are not listed
and are written as no group, which lamina and Keras load as "no weights".

Methods take an object as a path ("layers/dense_2") or as a name found once in the tree
("dense_2"), as Keras's do; a leading "/" makes it a path from the top ("/0", the model's own weight
"0"), and "/" alone is the model itself for `add_weights` and `delete_weight`. Names are the path
names of the file's layout, not the layers' `name`s (an error says where a layer name is saved).

Where lamina's editor differs from Keras 3.15's, it is to fix Keras's:
- an object that has sub-objects next to its `vars` group (a Bidirectional, an LSTM, a wrapper)
  is read whole; Keras's editor reads only its (often empty) `vars` and drops the sub-objects, so
  its saved file loses their weights;
- `compare` counts each mismatch and each matching weight once (Keras's counts nested ones twice
  or more);
- a name that occurs once is found (Keras's occurrence count overcounts names in nested dicts);
- `rename_object` onto a name its siblings already use raises instead of silently replacing the
  sibling; the renamed object keeps its place;
- the model's own weights are written back to the root `vars` group (Keras's editor lists them
  under "vars" and writes them one level too deep), the root `vars` group is always written (so
  lamina's `load_weights` recognizes the file) and the objects' "name" attributes are kept
  (Keras's editor drops them);
- `save` may also write a '.keras' file when a '.keras' file was opened: its config.json
  (`editor.config`, which you may edit), metadata.json (date updated) and assets are kept and
  model.weights.h5 is the edited weights (Keras's `save` writes '.weights.h5' only);
- errors are ValueErrors that say what was expected, what was received and how to fix it; a file
  that is not a Keras file is a `FileFormatError` (a ValueError).

As Keras's, the reader refuses HDF5 soft and external links, external and virtual datasets, and
datasets past rank 64 or 4 GiB. `summary()` and `compare()` print plain text: Keras prints with
rich and, in a notebook, an HTML view of the weights; lamina prints the same tree as text
everywhere. Files are written atomically (`_fileio.atomic_write`).

This module imports nothing from lamina at import time but `_fileio`; h5py and lamina's model
code are imported when an editor is used."""
import datetime
import io
import json
import math
import os
import zipfile

import numpy as np

from ._fileio import FileFormatError, atomic_write, describe_start, sniff

_VARS = "vars"
_MAX_BYTES = 1 << 32   # 4 GiB: the largest dataset read (Keras's limit)
_MAX_RANK = 64
_RULE = "─────────────────────"


def _h5py():
    from .models.io import _h5py as get
    return get()


def _natural(key):
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def _join(path, name):
    return f"{path}/{name}" if path else name


def _meta_key(path):
    """The key of `object_metadata` for an object path: Keras's ("/layers/dense"; "" the root)."""
    return f"/{path}" if path else ""


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _pruned(tree):
    """`tree` without the objects that hold no weights (what the file holds after a save)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            v = _pruned(v)
            if not v:
                continue
        out[k] = v
    return out


def _as_array(value, where):
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except Exception as e:   # ragged lists and the like
        raise ValueError(f"{where} should be an array of numbers; received {type(value).__name__} that NumPy cannot "
                         f"turn into one ({e}). Pass a NumPy array, e.g. np.zeros((3, 3), 'float32').") from None
    if arr.dtype == object or arr.dtype.kind in "USMm" or arr.dtype.kind == "V" and arr.dtype.name != "bfloat16":
        raise ValueError(f"{where} should be an array of numbers; received an array of dtype {arr.dtype} (from "
                         f"{type(value).__name__}). Pass a NumPy array of numbers, e.g. np.zeros((3, 3), 'float32').")
    return arr


def _check_key(key, where):
    if not isinstance(key, str) or not key or "/" in key:
        raise ValueError(f"{where}: names of weights and objects should be non-empty strings without '/' (usually "
                         f"'0', '1', ... for weights); received {key!r}.")


def _tree_of(weights, where, nested=True):
    """A checked copy of the `weights` argument: str keys, NumPy values (dicts too when `nested`)."""
    if not isinstance(weights, dict):
        raise ValueError("Argument `weights` should be a dict where keys are weight names (usually '0', '1', etc.) "
                         f"and values are NumPy arrays. Received: type(weights)={type(weights)}")
    if not weights:
        raise ValueError(f"Argument `weights` of {where} is empty: pass at least one weight, e.g. "
                         "{'0': kernel_value, '1': bias_value}.")
    out = {}
    for k, v in weights.items():
        _check_key(k, f"Argument `weights` of {where}")
        if isinstance(v, dict):
            if not nested:
                raise ValueError(f"Argument `weights` of {where}: the value of '{k}' is a dict; add_weights adds "
                                 "arrays to an existing object. To add a sub-object, use add_object(path, weights) "
                                 "with its full path.")
            out[k] = _tree_of(v, f"{where} (under '{k}')")
        else:
            out[k] = _as_array(v, f"Weight '{k}' of {where}")
    return out


class _SpecStore(dict):
    """The store `save_own_variables` writes into for `compare`: keeps each value's shape and dtype."""

    def __setitem__(self, key, value):
        arr = value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else np.asarray(value)
        super().__setitem__(str(key), _Spec(tuple(arr.shape), arr.dtype))


class _Spec:
    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype


def weight_spec(model):
    """{path parts...: {weight name: (shape, dtype)}} of what lamina would save for `model`
    (Keras's get_weight_spec_of_saveable): the same walk as save_state, optimizer included when
    the model is compiled; objects without weights are left out."""
    from .layers.layer import Layer
    from .models.state import walk
    if not isinstance(model, Layer):
        raise ValueError("compare() expects the lamina model (or layer) the file should load into, e.g. the model "
                         f"built from your current code. Received: {type(model).__name__} {model!r:.80}")
    spec = {}

    def visit(obj, path):
        store = _SpecStore()
        obj.save_own_variables(store)
        if not store:
            return
        node = spec
        for part in path.split("/") if path else []:
            node = node.setdefault(part, {})
        node.update(store)

    walk(model, visit, with_optimizer=True)
    return spec


class KerasFileEditor:
    """Utility to inspect, edit, and resave Keras weights files (Keras's
    `keras.saving.KerasFileEditor`).

    You will find this class useful when adapting an old saved weights file after having made
    architecture changes to a model. It opens a '.keras' model file or a '.weights.h5' weights
    file written by lamina or by Keras 3, and prints where it was saved from.

    Args:
        filepath: The path to a local file to inspect and edit ('.keras' or '.weights.h5').

    Attributes:
        weights_dict: the saved weights as a tree of dicts (object path parts, then weight names
            "0", "1", ...) of NumPy arrays; the edit methods change it.
        object_metadata: {"/<object path>": attributes of its group}, e.g. {"name": "mydense"}.
        config, metadata: a '.keras' file's config.json and metadata.json (None for '.weights.h5').

    Examples:

    ```python
    editor = KerasFileEditor("my_model.keras")

    # Displays current contents
    editor.summary()

    # Lists what differs from the model the file should load into
    editor.compare(new_model)

    # Remove the weights of an existing layer
    editor.delete_object("layers/dense_2")

    # Add the weights of a new layer
    editor.add_object("layers/einsum_dense", weights={"0": ..., "1": ...})

    # Save the weights of the edited model, then load them
    editor.resave_weights("edited_model.weights.h5")
    new_model.load_weights("edited_model.weights.h5")
    ```

    `summary()` and `compare()` print plain text (Keras uses rich in a terminal and an HTML view
    in notebooks). See the module's docstring for where this editor differs from Keras's.
    """

    def __init__(self, filepath):
        self.filepath = os.fspath(filepath)
        self.metadata = None
        self.config = None
        self.model = None
        self._archive_members = {}   # a '.keras' file's other members (assets), kept by save()
        path = self.filepath
        if not path.endswith((".keras", ".weights.h5")):
            hint = (" A legacy '.h5' file (Keras 2's layout): load it into the model with model.load_weights and "
                    "save it with model.save_weights('x.weights.h5'), then edit that."
                    if path.endswith((".h5", ".hdf5")) else "")
            raise ValueError("Invalid filename: expected a `.keras` or `.weights.h5` extension (a Keras 3 model or "
                             f"weights file). Received: filepath={path}.{hint}")
        if not os.path.exists(path):
            raise FileNotFoundError(f"No file at {path}: KerasFileEditor opens an existing '.keras' or '.weights.h5' "
                                    "file")
        from .models.io import _open_h5, _open_h5_bytes, _reading
        with _reading(path):
            if path.endswith(".keras"):
                weights = self._read_archive(path)
                h5 = _open_h5_bytes(weights, path)
            else:
                h5 = _open_h5(path)
            with h5:
                self._check_layout(h5, path)
                self.object_metadata = {}
                self.weights_dict = self._extract(h5, "", path)
        print(f"Keras model file '{self.filepath}'")
        if self.metadata is not None:
            print(f"Saved with Keras {self.metadata.get('keras_version', '(unknown version)')} - date: "
                  f"{self.metadata.get('date_saved', '(unknown)')}")

    # ---- reading ----------------------------------------------------------------------------------

    def _read_archive(self, path):
        """Reads a '.keras' zip: config, metadata and other members kept; returns the weights' bytes."""
        from .models.io import _ACCESS_ERRORS, _ZIP_ERRORS, _read_json
        kind = sniff(path)
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                missing = [n for n in ("config.json", "model.weights.h5") if n not in names]
                if missing:
                    raise FileFormatError(path, f"is not a Keras model file: the archive has no {' or '.join(missing)}"
                                                f" (it holds {names[:10]}); a '.keras' file holds metadata.json, "
                                                "config.json and model.weights.h5, as save_model writes it")
                members = {n: z.read(n) for n in names if not n.endswith("/")}
        except _ZIP_ERRORS + (OSError,) as e:
            if isinstance(e, _ACCESS_ERRORS):
                raise
            if kind == "hdf5":
                problem = ("is an HDF5 file, not a '.keras' zip archive: a weights file? Name it '.weights.h5' and "
                           "open that")
            elif kind == "zip":
                problem = f"is a truncated or corrupt zip archive ({type(e).__name__}: {e})"
            elif kind == "empty":
                problem = "is empty (0 bytes), not a '.keras' zip archive"
            else:
                problem = f"is not a '.keras' file, which is a zip archive (it is {describe_start(path)})"
            raise FileFormatError(path, problem) from e
        self.config = _read_json(members.pop("config.json"), path, "config.json")
        if "metadata.json" in members:
            self.metadata = _read_json(members.pop("metadata.json"), path, "metadata.json")
        weights = members.pop("model.weights.h5")
        self._archive_members = members
        return weights

    @staticmethod
    def _check_layout(h5, path):
        if any(a in h5.attrs for a in ("layer_names", "layer_names0")) or "model_weights" in h5:
            raise FileFormatError(path, "is in Keras 2's legacy HDF5 layout (a 'layer_names' attribute), which "
                                        "KerasFileEditor does not edit: it expects Keras 3's layout "
                                        "('layers/<name>/vars' groups). Load the file into the model "
                                        "(model.load_weights), save it with model.save_weights('x.weights.h5'), "
                                        "and open that")

    def _child(self, group, key, path, source):
        """group[key], refusing HDF5 soft and external links (as Keras's editor)."""
        h5py = _h5py()
        link = group.get(key, default=None, getclass=True, getlink=True)
        if link in (h5py.ExternalLink, h5py.SoftLink):
            raise FileFormatError(source, f"Not allowed: H5 file with {link.__name__} at '{_join(path, key)}' (a link "
                                          "to data elsewhere); Keras and lamina write no links, so the file was not "
                                          "written by them")
        return group[key]

    def _dataset(self, ds, where, source):
        """The array of one dataset, with Keras's safety checks."""
        if ds.external:
            raise FileFormatError(source, f"Not allowed: H5 file Dataset with external links at '{where}': "
                                          f"{ds.external}")
        if ds.is_virtual:
            raise FileFormatError(source, f"Not allowed: H5 file with virtual Dataset at '{where}'")
        shape = ds.shape if ds.shape is not None else ()
        if any(d < 0 for d in shape):
            raise FileFormatError(source, f"Malformed HDF5 dataset shape {shape} at '{where}': negative dimension")
        if len(shape) > _MAX_RANK:
            raise FileFormatError(source, f"Malformed HDF5 dataset at '{where}': rank {len(shape)} exceeds the safety "
                                          f"limit of {_MAX_RANK}")
        size = math.prod(shape) * ds.dtype.itemsize
        if size > _MAX_BYTES:
            raise FileFormatError(source, f"HDF5 dataset at '{where}' too large to load safely ({size} bytes; limit "
                                          f"is {_MAX_BYTES})")
        value = np.asarray(ds[()])
        if ds.attrs.get("dtype") in ("bfloat16", b"bfloat16") and value.dtype.kind == "V":
            try:
                import ml_dtypes
                value = value.view(ml_dtypes.bfloat16)
            except ImportError:
                pass
        return value

    def _extract(self, group, path, source):
        """The tree of the object whose group is `group`: its `vars` datasets, then its sub-objects;
        objects without weights are left out (as Keras's editor)."""
        h5py = _h5py()
        tree = {}
        if _VARS in group:
            own = self._child(group, _VARS, path, source)
            if isinstance(own, h5py.Group):
                if own.attrs:
                    self.object_metadata[_meta_key(path)] = dict(own.attrs)
                for key in sorted(own.keys(), key=_natural):
                    value = self._child(own, key, _join(path, _VARS), source)
                    where = _join(_join(path, _VARS), key)
                    if not isinstance(value, h5py.Dataset):
                        raise FileFormatError(source, f"has a group at '{where}' where a weight (a dataset) should "
                                                      "be; the file was not written by Keras or lamina")
                    tree[key] = self._dataset(value, where, source)
            else:   # a dataset called "vars": a weight of this object, as Keras's reader takes it
                tree[_VARS] = self._dataset(own, _join(path, _VARS), source)
        for key in group.keys():
            if key == _VARS:
                continue
            value = self._child(group, key, path, source)
            p = _join(path, key)
            if key in tree:
                raise FileFormatError(source, f"holds both a weight and an object called '{key}' under "
                                              f"'{path or '/'}'; the file was not written by Keras or lamina")
            if isinstance(value, h5py.Group):
                sub = self._extract(value, p, source)
                if sub:
                    tree[key] = sub
            elif isinstance(value, h5py.Dataset):   # a weight outside `vars`: Keras's reader takes it as one
                tree[key] = self._dataset(value, p, source)
        return tree

    # ---- finding objects --------------------------------------------------------------------------

    def _listing(self, node):
        keys = list(node.keys())
        return f"{keys[:20]}{' ...' if len(keys) > 20 else ''}"

    def _walk_to(self, parts, original, what):
        """The dict at path `parts` (every part an existing object)."""
        node, done = self.weights_dict, []
        for part in parts:
            if part not in node:
                where = f"'{'/'.join(done)}'" if done else "the top level of the file"
                raise ValueError(f"Path '{original}' not found in the file: {where} has no '{part}' (it holds "
                                 f"{self._listing(node)}). Expected the path of {what} as `editor.summary()` lists it,"
                                 " e.g. 'layers/dense'.")
            if not isinstance(node[part], dict):
                raise ValueError(f"Path '{original}' goes through '{'/'.join(done + [part])}', which is a weight, not "
                                 f"an object. Expected the path of {what} as `editor.summary()` lists it.")
            node = node[part]
            done.append(part)
        return node

    @staticmethod
    def _parts(name, argument):
        if not isinstance(name, str) or not name.strip("/"):
            raise ValueError(f"Argument `{argument}` should be the name or path of an object (e.g. 'dense_2' or "
                             f"'layers/dense_2'). Received: {argument}={name!r}")
        parts = name.strip("/").split("/")
        if "" in parts:
            raise ValueError(f"Argument `{argument}` has an empty part: {name!r}. Expected e.g. 'layers/dense_2'.")
        return parts

    def _find(self, name, argument, what="an object"):
        """(parent dict, key, path) of the object or weight `name` (a path, or a name found once)."""
        parts = self._parts(name, argument)
        if len(parts) > 1 or name.startswith("/"):   # a path ("/0": the root's own weight "0")
            parent = self._walk_to(parts[:-1], name, what)
            if parts[-1] not in parent:
                where = f"'{'/'.join(parts[:-1])}'" if len(parts) > 1 else "the top level of the file"
                raise ValueError(f"Path '{name}' not found in the file: {where} has no '{parts[-1]}' (it holds "
                                 f"{self._listing(parent)}). Use `editor.summary()` to list all objects.")
            return parent, parts[-1], "/".join(parts)
        found = []

        def search(node, path):
            for k, v in node.items():
                if k == parts[0]:
                    found.append((node, k, _join(path, k)))
                if isinstance(v, dict):
                    search(v, _join(path, k))

        search(self.weights_dict, "")
        if not found:
            saved_as = [k.lstrip("/") for k, attrs in self.object_metadata.items()
                        if k and attrs.get("name") == parts[0] and self._exists(k.lstrip("/"))]
            if saved_as:
                raise ValueError(f"Name '{name}' is not a path name in the file, but the name of the object saved at "
                                 f"{', '.join(repr(p) for p in saved_as)}: the file addresses objects by their "
                                 "path (Keras's layout: layers/<snake_case class name>, ...), not by the layer's "
                                 f"name. Pass '{saved_as[0]}'.")
            raise ValueError(f"Name '{name}' does not appear in the file (its top level holds "
                             f"{self._listing(self.weights_dict)}). Use `editor.summary()` to list all objects, and "
                             "pass a name or a full path such as 'layers/dense_2'.")
        if len(found) > 1:
            paths = ", ".join(f"'{p}'" for _, _, p in found[:10])
            raise ValueError(f"Name '{name}' occurs {len(found)} times in the file: at {paths}. Pass the complete "
                             "path of the one you mean.")
        return found[0]

    def _exists(self, path):
        node = self.weights_dict
        for part in path.split("/"):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def _find_object(self, name, argument):
        if name == "/":   # the model itself (a subclassed model's own weights)
            return self.weights_dict, ""
        parent, key, path = self._find(name, argument)
        if not isinstance(parent[key], dict):
            raise ValueError(f"'{path}' is a weight (shape={parent[key].shape}), not an object. Expected the name or "
                             "path of an object, e.g. 'layers/dense_2' (weights are its '0', '1', ...).")
        return parent[key], path

    def _move_metadata(self, old, new):
        old_key, new_key = _meta_key(old), _meta_key(new)
        for k in list(self.object_metadata):
            if k == old_key or k.startswith(old_key + "/"):
                value = self.object_metadata.pop(k)
                if new is not None:
                    self.object_metadata[new_key + k[len(old_key):]] = value

    # ---- editing ----------------------------------------------------------------------------------

    def rename_object(self, object_name, new_name):
        """Rename an object in the file (e.g. a layer), or a weight.

        Args:
            object_name: String, name or path of the
                object to rename (e.g. `"dense_2"` or
                `"layers/dense_2"`).
            new_name: String, new name of the object (a leaf name, not a path).
        """
        if not isinstance(new_name, str) or not new_name or "/" in new_name:
            raise ValueError("Argument `new_name` should be a leaf name, not a full path name (the object stays "
                             f"under the same parent; e.g. 'dense_3'). Received: new_name={new_name!r}")
        parent, key, path = self._find(object_name, "object_name")
        if new_name == key:
            return
        new_path = _join(path.rpartition("/")[0], new_name)
        if new_name in parent:
            raise ValueError(f"Cannot rename '{path}' to '{new_name}': '{new_path}' exists already. Delete it first "
                             f"(editor.delete_object('{new_path}')) or pick another name.")
        items = [(new_name if k == key else k, v) for k, v in parent.items()]
        parent.clear()
        parent.update(items)
        self._move_metadata(path, new_path)

    def delete_object(self, object_name):
        """Removes an object from the file (e.g. a layer), or a weight.

        Args:
            object_name: String, name or path of the
                object to delete (e.g. `"dense_2"` or
                `"layers/dense_2"`).
        """
        parent, key, path = self._find(object_name, "object_name")
        parent.pop(key)
        self._move_metadata(path, None)

    def add_object(self, object_path, weights):
        """Add a new object to the file (e.g. a layer). An object already at that path is replaced
        (as Keras does).

        Args:
            object_path: String, full path of the
                object to add (e.g. `"layers/dense_2"`); its parent must exist.
            weights: Dict mapping weight names to weight
                values (arrays),
                e.g. `{"0": kernel_value, "1": bias_value}`; a dict value
                is a sub-object (e.g. `{"cell": {"0": ...}}`).
        """
        parts = self._parts(object_path, "object_path")
        tree = _tree_of(weights, f"add_object('{object_path}')")
        parent = self._walk_to(parts[:-1], object_path, "the parent object")
        if parts[-1] in parent:
            self._move_metadata("/".join(parts), None)
        parent[parts[-1]] = tree

    def delete_weight(self, object_name, weight_name):
        """Removes a weight from an existing object.

        Args:
            object_name: String, name or path of the
                object from which to remove the weight
                (e.g. `"dense_2"` or `"layers/dense_2"`).
            weight_name: String, name of the weight to
                delete (e.g. `"0"`).
        """
        obj, path = self._find_object(object_name, "object_name")
        weight_name = str(weight_name)
        if weight_name not in obj:
            raise ValueError(f"Weight {weight_name} not found in object {path}. Weights found: "
                             f"{[k for k, v in obj.items() if not isinstance(v, dict)]}")
        if isinstance(obj[weight_name], dict):
            raise ValueError(f"'{path}/{weight_name}' is an object, not a weight: remove it with "
                             f"editor.delete_object('{path}/{weight_name}').")
        obj.pop(weight_name)

    def add_weights(self, object_name, weights):
        """Add one or more new weights to an existing object; a weight of the same name is replaced
        (as Keras does).

        Args:
            object_name: String, name or path of the
                object to add the weights to
                (e.g. `"dense_2"` or `"layers/dense_2"`).
            weights: Dict mapping weight names to weight
                values (arrays),
                e.g. `{"0": kernel_value, "1": bias_value}`.
        """
        tree = _tree_of(weights, f"add_weights('{object_name}')", nested=False)
        obj, path = self._find_object(object_name, "object_name")
        for k in tree:
            if isinstance(obj.get(k), dict):
                raise ValueError(f"Cannot add weight '{k}' to '{path}': '{path}/{k}' is an object. Pick another "
                                 "weight name, or delete the object first.")
        obj.update(tree)

    # ---- inspecting -------------------------------------------------------------------------------

    def summary(self):
        """Prints the weight structure of the opened file (plain text)."""
        print("Weights structure")
        self._print_tree(self.weights_dict, "  ", "")

    def _print_tree(self, tree, prefix, path):
        items = list(tree.items())
        for i, (key, value) in enumerate(items):
            last = i == len(items) - 1
            connector = "└─ " if last else "├─ "
            p = _join(path, key)
            if isinstance(value, dict):
                label = f"{prefix}{connector}{key}"
                name = self.object_metadata.get(_meta_key(p), {}).get("name")
                if name is not None:
                    label += f" ('{name.decode() if isinstance(name, bytes) else name}')"
                if not _pruned(value):
                    label += " (no weights: not written)"
                print(label)
                self._print_tree(value, prefix + ("    " if last else "│   "), p)
            else:
                print(f"{prefix}{connector}{key}: shape={tuple(value.shape)}, dtype={value.dtype}")

    def compare(self, reference_model):
        """Compares the opened file to a reference model.

        This method will list all mismatches between the
        currently opened file and the provided reference model
        (what `save_weights` would write for it: its layers' weights and, when it is compiled,
        its optimizer's).

        Args:
            reference_model: Model instance to compare to.

        Returns:
            Dict with the following keys:
            `'status'`, `'error_count'`, `'match_count'`.
            Status can be `'success'` or `'error'`.
            `'error_count'` is the number of mismatches found.
            `'match_count'` is the number of matching weights found.
        """
        print("Running comparison")
        ref = weight_spec(reference_model)
        saved = _pruned(self.weights_dict)
        counts = {"error": 0, "match": 0}

        def kind(v):
            return "an object" if isinstance(v, dict) else "a weight"

        def from_model(ref, saved, path):
            for key, want in ref.items():
                p = _join(path, key)
                if key not in saved:
                    counts["error"] += 1
                    if isinstance(want, dict):
                        print(f"...Object {p} present in reference model, missing from saved file")
                        print(f"    In reference model, {p} contains the following keys: {list(want.keys())}")
                    else:
                        print(f"...Weight {p} present in reference model, missing from saved file")
                    continue
                got = saved[key]
                if isinstance(want, dict) != isinstance(got, dict):
                    counts["error"] += 1
                    print(f"...{p} is {kind(want)} in reference model, {kind(got)} in saved file")
                elif isinstance(want, dict):
                    from_model(want, got, p)
                elif tuple(got.shape) != tuple(want.shape):
                    counts["error"] += 1
                    print(f"...Weight shape mismatch for {p}\n    In reference model: shape={tuple(want.shape)}\n"
                          f"    In saved file: shape={tuple(got.shape)}")
                else:
                    counts["match"] += 1

        def from_file(saved, ref, path):
            for key, got in saved.items():
                p = _join(path, key)
                if key not in ref:
                    counts["error"] += 1
                    if isinstance(got, dict):
                        print(f"...Object {p} present in saved file, missing from reference model")
                        print(f"    In saved file, {p} contains the following keys: {list(got.keys())}")
                        if p == "optimizer":
                            print("    (the reference model is not compiled: compile it, or remove the optimizer "
                                  "state with editor.delete_object('optimizer'))")
                    else:
                        print(f"...Weight {p} present in saved file, missing from reference model")
                elif isinstance(got, dict) and isinstance(ref[key], dict):
                    from_file(got, ref[key], p)

        from_model(ref, saved, "")
        from_file(saved, ref, "")
        errors, matches = counts["error"], counts["match"]
        print(_RULE)
        if errors == 0:
            print("Comparison successful: saved file is compatible with the reference model")
            print(f"    Found {_plural(matches, 'matching weight')}")
        else:
            print(f"Found {_plural(errors, 'error')}: saved file is not compatible with the reference model")
        return {"status": "success" if errors == 0 else "error", "error_count": errors, "match_count": matches}

    # ---- writing ----------------------------------------------------------------------------------

    def save(self, filepath):
        """Save the edited weights file.

        Args:
            filepath: Path to save the file to: a `.weights.h5` file (as Keras), or, when a
                `.keras` file was opened, a `.keras` file (its config.json, metadata.json and
                assets with the edited weights; load it with `load_model`).
        """
        filepath = os.fspath(filepath)
        if filepath.endswith(".weights.h5"):
            return self._write_weights(filepath)
        if filepath.endswith(".keras"):
            if self.config is None:
                raise ValueError(f"Cannot save '{filepath}': a '.keras' file needs the model's config, and the opened "
                                 f"file '{self.filepath}' is a weights file without one. Save to a '.weights.h5' file "
                                 "and load it with model.load_weights.")
            return self._write_archive(filepath)
        raise ValueError("Invalid `filepath` argument: expected a `.weights.h5` extension (or `.keras` when a '.keras' "
                         f"file was opened). Received: filepath={filepath}")

    def resave_weights(self, filepath):
        """Save the edited weights (only) to a `.weights.h5` file; load them with
        `model.load_weights(filepath)`.

        Args:
            filepath: Path to save the file to. Must be a `.weights.h5` file.
        """
        filepath = os.fspath(filepath)
        if not filepath.endswith(".weights.h5"):
            raise ValueError("Invalid `filepath` argument: expected a `.weights.h5` extension. Received: "
                             f"filepath={filepath}. To write a whole '.keras' model file, use save('x.keras').")
        self._write_weights(filepath)

    def _fill(self, h5):
        """Writes the tree in Keras 3's layout: each object's weights under `<path>/vars` (with its
        saved attributes), the root's `vars` group always."""
        def write(tree, path):
            weights = [(k, v) for k, v in tree.items() if not isinstance(v, dict)]
            if weights or not path:
                base = h5.require_group(path) if path else h5
                group = base.create_group(_VARS)
                for k, v in self.object_metadata.get(_meta_key(path), {}).items():
                    group.attrs[k] = v
                for k, v in weights:
                    v = np.asarray(v)
                    ds = group.create_dataset(k, data=v)
                    if v.dtype.name == "bfloat16":
                        ds.attrs["dtype"] = "bfloat16"
            for k, v in tree.items():
                if isinstance(v, dict) and _pruned(v):
                    write(v, _join(path, k))

        write(self.weights_dict, "")

    def _write_weights(self, filepath):
        h5py = _h5py()
        with atomic_write(filepath) as f:
            with h5py.File(f, "w") as h5:
                self._fill(h5)

    def _write_archive(self, filepath):
        h5py = _h5py()
        from .models.io import KERAS_FORMAT_VERSION, _json_default
        if not isinstance(self.config, dict):
            raise ValueError(f"Cannot save '{filepath}': editor.config should be the model's config (a dict with "
                             f"'class_name' and 'config'); received {type(self.config).__name__}.")
        buf = io.BytesIO()
        with h5py.File(buf, "w", libver="latest") as h5:
            self._fill(h5)
        metadata = dict(self.metadata) if isinstance(self.metadata, dict) else {"keras_version": KERAS_FORMAT_VERSION}
        metadata["date_saved"] = datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")
        config = json.dumps(self.config, default=_json_default)
        with atomic_write(filepath) as f:
            with zipfile.ZipFile(f, "w") as z:   # stored, not deflated, as Keras writes it
                z.writestr("metadata.json", json.dumps(metadata))
                z.writestr("config.json", config)
                z.writestr("model.weights.h5", buf.getvalue())
                for name, data in self._archive_members.items():
                    z.writestr(name, data)
