"""Utilities, as `keras.utils`: to_categorical, normalize, pad_sequences, set_random_seed,
clear_session, get_file, custom-object registration, `Config`, `PyDataset` (`Sequence`),
`pack_x_y_sample_weight` / `unpack_x_y_sample_weight`, `is_keras_tensor` / `get_source_inputs`,
`FeatureSpace` (structured-data preprocessing: _feature_space.py),
datasets from folders and arrays (`image_dataset_from_directory`, `text_dataset_from_directory`,
`audio_dataset_from_directory`, `timeseries_dataset_from_array`, `split_dataset`), image files
(`load_img`, `img_to_array`, `array_to_img`, `save_img`; these need Pillow), the text progress bar
`Progbar` with `enable/disable_interactive_logging`, and model drawings (`model_to_dot`,
`plot_model`: DOT text written here, pictures drawn by Graphviz's `dot`), and the `bounding_boxes`
module (box formats, clipping, IoU: _bounding_boxes.py)."""
import html
import os
import sys
import random as _py_random
import re
import shutil
import subprocess

import numpy as np

from . import _bounding_boxes as bounding_boxes  # noqa: F401  (keras.utils.bounding_boxes)
from . import _legacy_serialization as legacy  # noqa: F401  (keras.utils.legacy)
from ._dataset_utils import (audio_dataset_from_directory, split_dataset, text_dataset_from_directory,  # noqa: F401
                             timeseries_dataset_from_array)
from ._progbar import (Progbar, disable_interactive_logging, enable_interactive_logging,  # noqa: F401
                       is_interactive_logging_enabled)
from .backend.dtypes import standardize as standardize_dtype  # noqa: F401
from ._feature_space import FeatureSpace  # noqa: F401  (keras.utils.FeatureSpace)
from .datasets._files import get_file  # noqa: F401
from .datasets._image import array_to_img, img_to_array, load_img, save_img  # noqa: F401
from .datasets.image_folder import image_dataset_from_directory  # noqa: F401
from .models.data import PyDataset, Sequence, pack_x_y_sample_weight, unpack_x_y_sample_weight  # noqa: F401
from .saving import (CustomObjectScope, custom_object_scope, deserialize_keras_object,  # noqa: F401
                     get_custom_objects, get_registered_name, get_registered_object, register_keras_serializable,
                     serialize_keras_object)


sys.modules[__name__ + ".legacy"] = legacy   # `from lamina.utils.legacy import ...`, as os registers os.path
sys.modules[__name__ + ".bounding_boxes"] = bounding_boxes


def to_categorical(x, num_classes=None):
    """Integer class vector -> one-hot float32 matrix (trailing axis of size num_classes)."""
    x = np.asarray(x)
    if x.ndim and x.shape[-1] == 1 and x.ndim > 1:
        x = x.reshape(x.shape[:-1])
    if x.size and (x.min() < 0):
        raise ValueError(f"to_categorical: class indices must be >= 0, found {x.min()}")
    n = int(num_classes) if num_classes is not None else (int(x.max()) + 1 if x.size else 0)
    if x.size and x.max() >= n:
        raise ValueError(f"to_categorical: found class index {int(x.max())} but num_classes={n}")
    out = np.zeros(x.shape + (n,), np.float32)
    np.put_along_axis(out, x.astype(np.int64)[..., None], 1.0, axis=-1)
    return out


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0):
    """A list of sequences -> one array `(len(sequences), maxlen) + item shape`, as Keras's:
    shorter sequences are filled with `value` before ("pre") or after ("post") their items,
    longer ones lose their first ("pre") or last ("post") items. `maxlen` defaults to the
    longest sequence."""
    for name, where in (("padding", padding), ("truncating", truncating)):
        if where not in ("pre", "post"):
            raise ValueError(f"pad_sequences: {name} must be 'pre' or 'post', received {where!r}")
    if not hasattr(sequences, "__len__"):
        raise ValueError(f"pad_sequences: sequences must be a list of sequences, received {type(sequences).__name__}")
    seqs = []
    for i, seq in enumerate(sequences):
        if not hasattr(seq, "__len__"):
            raise ValueError(f"pad_sequences: sequences must be a list of iterables; item {i} is {seq!r}")
        seqs.append(np.asarray(seq, dtype=dtype) if len(seq) else None)
    item_shape = next((s_.shape[1:] for s_ in seqs if s_ is not None), ())
    if maxlen is None:
        maxlen = max((len(s_) for s_ in seqs if s_ is not None), default=0)
    out = np.full((len(seqs), int(maxlen)) + item_shape, value, dtype=dtype)
    for i, seq in enumerate(seqs):
        if seq is None or maxlen == 0:
            continue
        if seq.shape[1:] != item_shape:
            raise ValueError(f"pad_sequences: sequence {i} has items of shape {seq.shape[1:]}, "
                             f"expected {item_shape} as the first non-empty sequence's")
        seq = seq[-maxlen:] if truncating == "pre" else seq[:maxlen]
        if padding == "post":
            out[i, :len(seq)] = seq
        else:
            out[i, maxlen - len(seq):] = seq
    return out


def normalize(x, axis=-1, order=2):
    """`x` divided by its `order`-norm along `axis` (Keras's `keras.utils.normalize`): a numpy
    array gives a numpy array (a zero norm leaves the values as they are), a tensor a tensor
    (lamina.ops.normalize)."""
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"normalize: order must be a positive integer (2 for the Euclidean norm), received "
                         f"order={order!r}")
    if isinstance(x, np.ndarray):
        if x.ndim == 0:
            raise ValueError("normalize: x must have at least one axis, received a scalar")
        norm = np.atleast_1d(np.linalg.norm(x, order, axis))
        norm[norm == 0] = 1
        return x / np.expand_dims(norm, -1 if axis is None else axis)   # Keras's `axis or -1` breaks axis=0
    from . import ops
    return ops.normalize(x, axis=axis, order=order)


def is_keras_tensor(x):
    """Whether `x` is a symbolic tensor of a functional model (what `lamina.Input` and calls of
    layers on it return), as opposed to a concrete tensor or array."""
    from .layers.input_layer import KerasTensor
    return isinstance(x, KerasTensor)


def get_source_inputs(tensor):
    """The Input tensors a symbolic tensor is computed from, walking back through the layer calls
    (Keras's `keras.utils.get_source_inputs`); a tensor no layer made is its own source."""
    if getattr(tensor, "_keras_history", None) is None:
        if is_keras_tensor(tensor):
            return [tensor]
        raise ValueError(f"get_source_inputs: expected a symbolic tensor (from lamina.Input or a layer called on "
                         f"one), received {type(tensor).__name__}")
    layer, node_index, _ = tensor._keras_history
    if not layer._inbound_nodes:
        return [tensor]
    node = layer._inbound_nodes[node_index]
    if not node.inputs:   # an Input
        return list(node.outputs)
    sources = []
    for t in node.inputs:
        for x in get_source_inputs(t):
            if all(x is not s for s in sources):
                sources.append(x)
    return sources


class Config:
    """A dict whose entries are also attributes (`config.learning_rate`), as Keras's
    `keras.utils.Config`; `freeze()` makes it read-only, `unfreeze()` writable again; `to_json()`
    gives its JSON."""

    def __init__(self, **kwargs):
        object.__setattr__(self, "_config", dict(kwargs))
        object.__setattr__(self, "_frozen", False)

    @property
    def frozen(self):
        return self._frozen

    def freeze(self):
        object.__setattr__(self, "_frozen", True)

    def unfreeze(self):
        object.__setattr__(self, "_frozen", False)

    def _check_mutable(self, what):
        if self._frozen:
            raise ValueError(f"Cannot {what} a frozen Config: call `config.unfreeze()` first")

    def __getattr__(self, name):
        config = object.__getattribute__(self, "_config")
        if name in config:
            return config[name]
        raise AttributeError(f"Unknown attribute {name!r}: this Config holds {sorted(config)}")

    def __setattr__(self, name, value):
        self._check_mutable(f"set attribute {name!r} of")
        self._config[name] = value

    def __delattr__(self, name):
        self._check_mutable(f"delete attribute {name!r} of")
        if name not in self._config:
            raise AttributeError(f"Unknown attribute {name!r}: this Config holds {sorted(self._config)}")
        del self._config[name]

    def __getitem__(self, key):
        return self._config[key]

    def __setitem__(self, key, value):
        self._check_mutable(f"set key {key!r} of")
        self._config[key] = value

    def __delitem__(self, key):
        self._check_mutable(f"delete key {key!r} of")
        del self._config[key]

    def __contains__(self, item):
        return item in self._config

    def __len__(self):
        return len(self._config)

    def __iter__(self):   # sorted keys, as Keras's
        return iter(sorted(self._config))

    def __repr__(self):
        return f"<Config {self._config}>"

    def keys(self):
        return self._config.keys()

    def values(self):
        return self._config.values()

    def items(self):
        return self._config.items()

    def get(self, key, default=None):
        return self._config.get(key, default)

    def pop(self, *args):
        self._check_mutable("pop from")
        return self._config.pop(*args)

    def update(self, *args, **kwargs):
        self._check_mutable("update")
        self._config.update(*args, **kwargs)

    def as_dict(self):
        return dict(self._config)

    def to_json(self):
        import json
        return json.dumps(self._config)


def set_random_seed(seed):
    """Seeds Python's, numpy's and lamina's global generators."""
    _py_random.seed(seed)
    np.random.seed(seed)
    from .backend import random as _random
    _random.set_seed(seed)


def clear_session(free_memory=True):
    """Resets lamina's global state, as Keras's `keras.utils.clear_session` resets its own: the
    automatic layer names (a model built next is named as in a fresh process) and interactive
    logging (back on). The global random generator is kept: it follows `set_random_seed`, which
    is often called just before. `free_memory` runs Python's garbage collector."""
    from .layers.layer import reset_names
    from ._progbar import reset_interactive_logging
    reset_names()
    reset_interactive_logging()
    if free_memory:
        import gc
        gc.collect()


# ---- model drawings (keras.utils.model_to_dot / plot_model) --------------------------------------------

_DOT_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|-?(\.[0-9]+|[0-9]+(\.[0-9]*)?)")
_RANKDIRS = ("TB", "LR", "BT", "RL")
_SPLINES = ("ortho", "curved", "polyline", "spline", "line", "none", "true", "false")
_SOURCE_FORMATS = ("dot", "gv", "raw")   # written as DOT text, without Graphviz
_GRAPHVIZ_HINT = ("Install it with `pip install \"lamina[plot]\"` (graphviz-pure, Graphviz's `dot` as a wheel), or "
                  "Graphviz itself (`apt-get install graphviz`, `brew install graphviz`, https://graphviz.org/download/)")


def graphviz_program():
    """The program that draws DOT text: Graphviz's `dot`, else `graphviz-pure` (the same command
    line, from the `plot` extra); None when neither is on PATH."""
    return shutil.which("dot") or shutil.which("graphviz-pure")


def _dot_value(v):
    """A DOT attribute value or ID: bare when it is a DOT identifier, a number or an HTML-like
    label (`<...>`), else a quoted string."""
    if isinstance(v, bool):
        return "true" if v else "false"
    v = str(v)
    if _DOT_ID.fullmatch(v) or v.startswith("<") and v.endswith(">"):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_attributes(attrs):
    return ", ".join(f"{k}={_dot_value(v)}" for k, v in attrs.items())


class DotGraph:
    """A Graphviz graph in the DOT language: what `model_to_dot` returns (Keras returns a
    `pydot.Dot`; this has the part of its interface that drawing a model needs). `str(graph)` and
    `to_string()` give the DOT text; `create(format=...)` runs Graphviz's `dot` and returns the
    picture's bytes; `write(path, format=...)` writes either, atomically."""

    def __init__(self, name="G", cluster=False, attributes=None, node_defaults=None):
        self.name = name
        self.cluster = cluster
        self.attributes = dict(attributes or {})
        self.node_defaults = dict(node_defaults or {})
        self.nodes = {}       # id -> attributes, in insertion order
        self.edges = {}       # (source id, destination id) -> attributes
        self.subgraphs = []

    def add_node(self, node_id, **attributes):
        self.nodes[str(node_id)] = attributes

    def add_edge(self, source, destination, **attributes):
        """Adds an edge, once: a second edge between the same two nodes is not added (Keras's)."""
        self.edges.setdefault((str(source), str(destination)), attributes)

    def add_subgraph(self, graph):
        self.subgraphs.append(graph)

    def _lines(self):
        head = f"subgraph {_dot_value('cluster_' + self.name)} {{" if self.cluster else "digraph G {"
        lines = [head] + [f"{k}={_dot_value(v)};" for k, v in self.attributes.items()]
        if self.node_defaults:
            lines.append(f"node [{_dot_attributes(self.node_defaults)}];")
        lines += [f"{_dot_value(n)} [{_dot_attributes(a)}];" if a else f"{_dot_value(n)};"
                  for n, a in self.nodes.items()]
        for g in self.subgraphs:
            lines += g._lines()
        lines += [f"{_dot_value(s)} -> {_dot_value(d)}" + (f" [{_dot_attributes(a)}]" if a else "") + ";"
                  for (s, d), a in self.edges.items()]
        return lines + ["}"]

    def to_string(self):
        return "\n".join(self._lines()) + "\n"

    __str__ = to_string

    def create(self, prog=None, format="png"):
        """The graph drawn by Graphviz's `prog` (`dot` by default) in `format` ("png", "svg",
        "pdf", ...), as bytes; "dot"/"gv"/"raw" give the DOT text without running Graphviz."""
        if format in _SOURCE_FORMATS:
            return self.to_string().encode("utf-8")
        exe = shutil.which(prog) if prog is not None else graphviz_program()
        prog = prog or "dot"
        if exe is None:
            raise ImportError(f"Drawing a model as '{format}' needs Graphviz's `{prog}` program, which is not on "
                              f"PATH. {_GRAPHVIZ_HINT}, or write the DOT text instead (a file ending in '.dot')")
        result = subprocess.run([exe, f"-T{format}"], input=self.to_string().encode("utf-8"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if result.returncode != 0:
            message = result.stderr.decode("utf-8", "replace").strip()
            raise ValueError(f"Graphviz's `{prog}` could not draw the model as '{format}' (exit status "
                             f"{result.returncode}): {message or 'no message'}")
        return result.stdout

    def write(self, path, prog=None, format="raw"):
        """Writes the DOT text ("raw", "dot", "gv") or the drawing in `format` to `path`, atomically."""
        from ._fileio import atomic_write
        data = self.create(prog=prog, format=format)
        with atomic_write(path) as f:
            f.write(data)


def _is_graph_model(model):
    from .models.model import Functional
    from .models.sequential import Sequential
    return isinstance(model, (Functional, Sequential))


def _model_nodes(model):
    """The nodes of the model's graph (Functional, or a built Sequential's own graph)."""
    from .models.functional import topological_nodes
    nodes = getattr(model, "_nodes", None)
    if nodes is None:
        nodes = topological_nodes(model.outputs) if model.outputs else []
    return nodes


def _shape_text(tensors):
    """Keras's text for a layer's input or output shapes: "(None, 3)", or a list of them."""
    shapes = [tuple(t.shape) for t in tensors]
    return str(shapes[0]) if len(shapes) == 1 else str(shapes)


def _layer_node(layer, owner):
    """The call of `layer` whose shapes the drawing shows: its first in `owner`'s graph, else its
    first anywhere (Keras shows `layer.input` / `layer.output`, the first call's), else None."""
    graph = {id(n) for n in _model_nodes(owner)} if _is_graph_model(owner) and owner.built else set()
    in_graph = [n for n in layer._inbound_nodes if id(n) in graph]
    nodes = in_graph or layer._inbound_nodes
    return nodes[0] if nodes else None


def _activation_name(activation):
    for attr in ("name", "__name__"):
        if hasattr(activation, attr):
            return getattr(activation, attr)
    return str(activation)


def _layer_label(layer, owner, show_shapes, show_dtype, show_layer_names, show_layer_activations,
                 show_trainable):
    """The HTML-like label of one layer's box, as Keras's make_layer_label."""
    esc = lambda s: html.escape(str(s))  # noqa: E731
    class_name = type(layer).__name__
    colspan = max(1, int(show_dtype) + int(show_trainable) + (2 if show_shapes else 0))
    title = f"<b>{esc(layer.name)}</b> ({esc(class_name)})" if show_layer_names else f"<b>{esc(class_name)}</b>"
    table = ('<<table border="0" cellborder="1" bgcolor="black" cellpadding="10">'
             f'<tr><td colspan="{colspan}" bgcolor="black"><font point-size="16" color="white">{title}'
             "</font></td></tr>")
    if show_layer_activations and getattr(layer, "activation", None) is not None:
        table += (f'<tr><td bgcolor="white" colspan="{colspan}"><font point-size="14">'
                  f"Activation: <b>{esc(_activation_name(layer.activation))}</b></font></td></tr>")
    node = _layer_node(layer, owner)
    cols = []
    if show_shapes:
        if class_name != "InputLayer":
            shape = _shape_text(node.inputs) if node is not None and node.inputs else "?"
            cols.append(f'<td bgcolor="white"><font point-size="14">Input shape: <b>{esc(shape)}</b></font></td>')
        shape = _shape_text(node.outputs) if node is not None else "?"
        cols.append(f'<td bgcolor="white"><font point-size="14">Output shape: <b>{esc(shape)}</b></font></td>')
    if show_dtype:
        dtypes = [t.dtype for t in node.outputs] if node is not None else []
        dtype = (dtypes[0] if len(dtypes) == 1 else str(dtypes)) if dtypes else "?"
        cols.append(f'<td bgcolor="white"><font point-size="14">Output dtype: <b>{esc(dtype)}</b></font></td>')
    if show_trainable and layer.weights:
        if layer.trainable:
            cols.append('<td bgcolor="forestgreen"><font point-size="14" color="white"><b>Trainable</b></font></td>')
        else:
            cols.append('<td bgcolor="firebrick"><font point-size="14" color="white"><b>Non-trainable</b>'
                        "</font></td>")
    if cols:
        table += f"<tr>{''.join(cols)}</tr>"
    return table + "</table>>"


def _check_drawing_args(model, rankdir, dpi, splines, kwargs, who):
    if kwargs.pop("layer_range", None) is not None:
        raise ValueError(f"{who}: the argument `layer_range` is no longer supported (as in Keras 3)")
    if kwargs:
        raise ValueError(f"{who}: unrecognized keyword arguments {sorted(kwargs)}")
    if rankdir not in _RANKDIRS:
        raise ValueError(f"{who}: rankdir must be one of {list(_RANKDIRS)} ('TB' top to bottom, 'LR' left to "
                         f"right), received {rankdir!r}")
    if splines not in _SPLINES:
        raise ValueError(f"{who}: splines must be one of {list(_SPLINES)}, received {splines!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not dpi > 0:
        raise ValueError(f"{who}: dpi must be a positive number, received {dpi!r}")
    if not getattr(model, "built", False):
        raise ValueError(f"{who}: model '{getattr(model, 'name', model)}' has not yet been built. Build it first "
                         "by calling `build()`, by starting it with an `Input`, or by calling it on a batch of data")


def model_to_dot(model, show_shapes=False, show_dtype=False, show_layer_names=True, rankdir="TB",
                 expand_nested=False, dpi=200, subgraph=False, show_layer_activations=False,
                 show_trainable=False, splines="ortho", **kwargs):
    """The model's graph as a `DotGraph` (Keras's `keras.utils.model_to_dot`): one box per layer
    (a Functional model's inputs included; a subclassed model is one box), labelled with the
    layer's name and class, and on request its input and output shapes, output dtype, activation
    and whether it is trainable; an arrow for each tensor passed from one layer to another.
    `expand_nested` draws nested Functional/Sequential models as dashed clusters of their layers
    (`subgraph=True` returns such a cluster). `rankdir`, `dpi` and `splines` are Graphviz's."""
    _check_drawing_args(model, rankdir, dpi, splines, kwargs, "model_to_dot")
    from .models.model import Functional
    from .models.sequential import Sequential
    label = dict(show_shapes=show_shapes, show_dtype=show_dtype, show_layer_names=show_layer_names,
                 show_layer_activations=show_layer_activations, show_trainable=show_trainable)
    if subgraph:
        dot = DotGraph(model.name, cluster=True, attributes={"label": model.name, "labeljust": "l",
                                                             "style": "dashed"})
    else:
        dot = DotGraph(attributes={"rankdir": rankdir, "concentrate": True, "dpi": dpi, "splines": splines},
                       node_defaults={"shape": "record"})

    def add_node(graph, layer, owner):
        graph.add_node(id(layer), label=_layer_label(layer, owner, **label), fontname="Helvetica", border="0",
                       margin="0")

    if not isinstance(model, (Functional, Sequential)):
        add_node(dot, model, model)   # a subclassed model: one box, as Keras draws it
        return dot
    layers = model.operations if isinstance(model, Functional) else model.layers   # ops drawn too, as Keras
    for layer in layers:
        if expand_nested and isinstance(layer, (Functional, Sequential)):
            dot.add_subgraph(model_to_dot(layer, rankdir=rankdir, dpi=dpi, subgraph=True, splines=splines,
                                          expand_nested=True, **label))
        else:
            add_node(dot, layer, model)
    if isinstance(model, Sequential):
        if not expand_nested:
            for a, b in zip(layers, layers[1:]):
                dot.add_edge(id(a), id(b), penwidth="2")
            return dot
        layers = layers[1:]   # the first layer's input comes from outside (or from an input not drawn)
    graph = {id(n) for n in _model_nodes(model)}
    for layer in layers:
        for node in layer._inbound_nodes:
            if id(node) not in graph:
                continue   # a call of this layer in another model
            for input_index, t in enumerate(node.inputs):
                source, _, output_index = t._keras_history
                destination = layer
                if expand_nested:
                    # arrows go to and from the boxes inside nested models, which have none of their own
                    while isinstance(source, (Functional, Sequential)):
                        source, _, output_index = source.outputs[output_index]._keras_history
                    while isinstance(destination, (Functional, Sequential)):
                        destination = (destination.inputs[input_index]._keras_history[0]
                                       if isinstance(destination, Functional) else destination.layers[0])
                dot.add_edge(id(source), id(destination), penwidth="2")
    return dot


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=False,
               rankdir="TB", expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False,
               splines="ortho", **kwargs):
    """Draws the model (see `model_to_dot`) into `to_file`, atomically: '.dot' or '.gv' files get
    the DOT text; other extensions ('.png' when there is none, '.svg', '.pdf', ...) are drawn by
    Graphviz's `dot` program, which must be on PATH (ImportError otherwise, as Keras raises
    without pydot and Graphviz). Returns an IPython image of a '.png'/'.jpg'/'.gif'/'.svg' drawing
    when IPython is installed, else None."""
    _check_drawing_args(model, rankdir, dpi, splines, kwargs, "plot_model")
    to_file = os.fspath(to_file)
    extension = os.path.splitext(to_file)[1][1:].lower() or "png"
    if extension not in _SOURCE_FORMATS and graphviz_program() is None:
        raise ImportError(f"plot_model: drawing '{to_file}' needs Graphviz's `dot` program, which is not on PATH. "
                          f"{_GRAPHVIZ_HINT}, or pass a to_file ending in '.dot' to write the DOT text without it")
    dot = model_to_dot(model, show_shapes=show_shapes, show_dtype=show_dtype, show_layer_names=show_layer_names,
                       rankdir=rankdir, expand_nested=expand_nested, dpi=dpi,
                       show_layer_activations=show_layer_activations, show_trainable=show_trainable,
                       splines=splines)
    dot.write(to_file, format=extension)
    if extension in ("png", "jpg", "jpeg", "gif", "svg"):
        try:
            from IPython import display
        except ImportError:
            return None
        if extension == "svg":
            return display.SVG(filename=to_file)
        return display.Image(filename=to_file, format="jpeg" if extension == "jpg" else extension)
    return None
