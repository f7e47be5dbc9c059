"""model.summary(), as Keras 3's: a table of the layers (name and class, output shape, parameter
count; "Connected to" for a graph that is not a chain; "Trainable" on request), then the
parameter counts with their memory size.

Keras draws the table with `rich`; lamina draws the same box table itself (rich is not a
dependency): the column widths follow rich's rule for fixed-width columns in a table of width
`line_length`, cells wrap at spaces and a word too long for its cell ends in "…". Where Keras's
code and its documentation disagree, the documented meaning is kept: `positions` may be absolute
(column ends in characters) as well as relative, and the table is never cropped to the terminal.
"""
import math
import re
import shutil
import sys

import numpy as np

_SEQUENTIAL_POSITIONS = [0.45, 0.80, 1.0]
_GRAPH_POSITIONS = [0.3, 0.56, 0.74, 1.0]
_TRAINABLE_EXTRA = 12   # characters the "Trainable" column adds to the default line length

# bits per element, as keras.src.utils.dtype_utils.dtype_size
_DTYPE_BITS = {"bfloat16": 16, "float16": 16, "float32": 32, "int32": 32, "float64": 64, "int64": 64,
               "uint8": 8, "int8": 8, "uint16": 16, "int16": 16, "uint32": 32, "uint64": 64, "bool": 1}


def print_summary(model, line_length=None, positions=None, print_fn=None, expand_nested=False,
                  show_trainable=False, layer_range=None):
    """Prints the summary of `model` (Keras 3's `Model.summary`): to stdout, or, given `print_fn`,
    as one call `print_fn(text)` with the whole summary (Keras 3 calls it once, not per line).

    `line_length`: the table's width in characters (default 88, or 108 for a graph that is not a
    chain, plus 12 with `show_trainable`, and at most the terminal's width less 4).
    `positions`: where the columns end, relative (fractions of `line_length`, the last usually
    1.0) or absolute (characters); one per column, not counting "Trainable".
    `expand_nested`: also list the layers of nested models, indented under them.
    `show_trainable`: a "Trainable" column: Y, N, or "-" for a layer without weights.
    `layer_range`: two layer names or regular expressions (`re.match`): the rows from the first
    layer matching the first to the last layer matching the second, both included."""
    text = summary_text(model, line_length=line_length, positions=positions, expand_nested=expand_nested,
                        show_trainable=show_trainable, layer_range=layer_range)
    if print_fn is None:
        sys.stdout.write(text)
    else:
        print_fn(text)


def summary_text(model, line_length=None, positions=None, expand_nested=False, show_trainable=False,
                 layer_range=None):
    """The summary `print_summary` prints, as one string ending in a newline."""
    layers = list(getattr(model, "operations", model.layers))   # a functional model's ops too, as Keras's
    graph = _graph_nodes(model)
    chain = graph is None or _is_chain(graph)
    header = ["Layer (type)", "Output Shape", "Param #"] + ([] if chain else ["Connected to"])
    align = ["left", "left", "right"] + ([] if chain else ["left"])
    default_positions = _SEQUENTIAL_POSITIONS if chain else _GRAPH_POSITIONS
    default_length = 88 if chain else 108
    widths, line_length = _column_widths(header, line_length, positions, default_positions, default_length,
                                         show_trainable)
    if show_trainable:
        header.append("Trainable")
        align.append("center")

    relevant = {id(n) for n in graph} if graph is not None else None

    def fields(layer, owner, prefix):
        row = [f"{prefix}{layer.name} ({type(layer).__name__})", _output_shape(owner, layer),
               f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"]
        if not chain:
            row.append(_connections(layer, relevant))
        if show_trainable:
            row.append(("Y" if layer.trainable else "N") if layer.weights else "-")
        return row

    def rows_of(layer, owner, level):
        rows = [fields(layer, owner, "   " * level + "└ " if level else "")]
        if expand_nested and getattr(layer, "layers", None):
            for inner in layer.layers:
                rows.extend(rows_of(inner, layer, level + 1))
        return rows

    start, stop = layer_index_range(layers, layer_range)
    rows = [r for layer in layers[start:stop] for r in rows_of(layer, model, 0)]

    trainable, non_trainable = model.trainable_weights, model.non_trainable_weights
    counts = [("Trainable params", _count(trainable), _memory(trainable)),
              ("Non-trainable params", _count(non_trainable), _memory(non_trainable))]
    optimizer = _optimizer_params(model)
    if optimizer is not None:
        counts.append(("Optimizer params",) + optimizer)
    total = ("Total params", sum(c[1] for c in counts), sum(c[2] for c in counts))
    lines = [f'Model: "{model.name}"'] + render_table(header, align, widths, rows, line_length)
    lines += [f" {name}: {count:,} ({readable_memory_size(size)})" for name, count, size in [total] + counts]
    return "\n".join(lines) + "\n"


# ---- the graph -------------------------------------------------------------------------------------

def _graph_nodes(model):
    """The nodes of a functional model's graph (its inputs' nodes included), or None for a
    Sequential or subclassed model, which Keras lists as a plain sequence of layers."""
    from .model import Functional
    if not isinstance(model, Functional):
        return None
    nodes = list(model._nodes)
    seen = {id(n) for n in nodes}
    for t in model.inputs:   # inputs not connected to the outputs are still part of the model
        layer, index, _ = t._keras_history
        node = layer._inbound_nodes[index]
        if id(node) not in seen:
            seen.add(id(node))
            nodes.append(node)
    return nodes


def _is_chain(nodes):
    """Keras's "sequential-like" test: one node at each depth from the outputs, each with one
    input tensor, and no layer called twice in the graph."""
    depth = {}
    for node in reversed(nodes):   # `nodes` is topological: a node comes after its parents
        d = depth.setdefault(id(node), 0)
        for p in node.parent_nodes:
            depth[id(p)] = max(depth.get(id(p), 0), d + 1)
    per_depth = {}
    for node in nodes:
        per_depth[depth[id(node)]] = per_depth.get(depth[id(node)], 0) + 1
        if len(node.inputs) > 1:
            return False
    if any(n > 1 for n in per_depth.values()):
        return False
    calls = {}
    for node in nodes:
        calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
    return all(n == 1 for n in calls.values())


def _connections(layer, relevant):
    """"name[node][tensor], ..." for the inputs of the layer's calls in this graph, or "-"."""
    out = []
    for node in layer._inbound_nodes:
        if relevant is not None and id(node) not in relevant:
            continue
        for t in node.inputs:
            source, node_index, tensor_index = t._keras_history
            out.append(f"{source.name}[{node_index}][{tensor_index}]")
    return ", ".join(out) or "-"


def _output_shape(owner, layer):
    """The output shape(s) of the layer's call in `owner`'s graph (its last call otherwise), or
    "?" for a layer never called on symbolic inputs and never built."""
    graph = {id(n) for n in getattr(owner, "_nodes", None) or _sequential_nodes(owner)}
    nodes = [n for n in layer._inbound_nodes if id(n) in graph] or layer._inbound_nodes[-1:]
    if nodes:
        shapes = [_fmt(t.shape) for t in nodes[-1].outputs]
    else:
        shape = getattr(layer, "_build_input_shape", None)
        if shape is None or not layer.built:
            return "?"
        try:
            out = layer.compute_output_shape(shape)
        except Exception:  # noqa: BLE001 - a layer that cannot say its output shape shows "?", as in Keras
            return "?"
        shapes = [_fmt(s) for s in _shape_leaves(out)]
    if len(shapes) == 1:
        return shapes[0]
    return "[" + ", ".join(shapes) + "]"


def _sequential_nodes(model):
    outputs = getattr(model, "outputs", None)
    if not outputs or not getattr(model, "built", False):
        return []
    from .functional import topological_nodes
    try:
        return topological_nodes(outputs)
    except (ValueError, TypeError, AttributeError):
        return []


def _shape_leaves(s):
    if isinstance(s, dict):
        return [x for v in s.values() for x in _shape_leaves(v)]
    if isinstance(s, (list, tuple)) and s and all(isinstance(v, (list, tuple, dict)) for v in s):
        return [x for v in s for x in _shape_leaves(v)]
    return [tuple(s)]


def _fmt(shape):
    """Keras 3's shape text: "(None, 3)", "(None)" for one axis, "()" for none."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


# ---- counts ----------------------------------------------------------------------------------------

def _count(weights):
    return int(sum(math.prod(w.shape) for w in weights))


def _bits(dtype):
    name = str(dtype)
    if name not in _DTYPE_BITS:
        raise ValueError(f"summary: cannot size a weight of dtype {name!r}; known dtypes are {sorted(_DTYPE_BITS)}")
    return _DTYPE_BITS[name]


def _memory(weights):
    """Bytes the weights take (each counted once), as Keras's weight_memory_size."""
    unique = {id(w): w for w in weights}.values()
    return sum(math.prod(w.shape) * _bits(w.dtype) for w in unique) / 8


def _optimizer_params(model):
    """(count, bytes) of the optimizer's variables as Keras counts them (`optimizer.variables`:
    a plain optimizer's iteration counter, int64, and learning rate, float32, unless that is a
    schedule, then the slots; a LossScaleOptimizer's or MultiOptimizer's own ones and their inner
    optimizers'), i.e. what its save_own_variables writes; or None while the model is not
    compiled or the optimizer not built."""
    optimizer = getattr(model, "optimizer", None)
    if not getattr(model, "compiled", False) or optimizer is None or not getattr(optimizer, "built", False):
        return None
    sizes = _SizeStore()
    optimizer.save_own_variables(sizes)
    return sizes.count, sizes.bytes


class _SizeStore:
    """A variable store that keeps only the element and byte counts of what is written to it."""

    def __init__(self):
        self.count, self.bytes, self._keys = 0, 0, []

    def __setitem__(self, key, value):
        a = np.asarray(value)
        self.count += a.size
        self.bytes += a.nbytes
        self._keys.append(key)

    def keys(self):
        return list(self._keys)


def readable_memory_size(size):
    """Bytes as Keras prints them: "356.00 B", "1.50 KB", ..."""
    for unit in ["B", "KB", "MB", "GB", "TB", "PB"]:
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def layer_index_range(layers, layer_range=None):
    """[first, last + 1] of the layers `layer_range` selects (Keras's
    get_layer_index_bound_by_layer_name): from the first layer whose name matches
    layer_range[0] to the last whose name matches layer_range[1] (`re.match`)."""
    if layer_range is None:
        return [0, len(layers)]
    if not isinstance(layer_range, (list, tuple)) or len(layer_range) != 2:
        raise ValueError("summary: layer_range must be a list or tuple of two layer names (or regular "
                         f"expressions), the first and last layers to show; received {layer_range!r}")
    if not all(isinstance(p, str) for p in layer_range):
        raise ValueError(f"summary: layer_range must contain strings only; received {layer_range!r}")
    for p in layer_range:
        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"summary: layer_range entry {p!r} is not a valid regular expression ({e})") from None
    lower = [i for i, l in enumerate(layers) if re.match(layer_range[0], l.name)]
    upper = [i for i, l in enumerate(layers) if re.match(layer_range[1], l.name)]
    if not lower or not upper:
        missing = [p for p, hits in zip(layer_range, (lower, upper)) if not hits]
        raise ValueError(f"summary: layer_range {list(layer_range)}: {missing} match(es) no layer name; the "
                         f"layers are {[l.name for l in layers]}")
    if min(lower) > max(upper):
        return [min(upper), max(lower) + 1]
    return [min(lower), max(upper) + 1]


# ---- the table -------------------------------------------------------------------------------------

def _column_widths(header, line_length, positions, default_positions, default_length, show_trainable):
    """(widths of the columns before rich-style fitting, table width)."""
    if line_length is not None and (isinstance(line_length, bool) or not isinstance(line_length, int)
                                    or line_length < 1):
        raise ValueError(f"summary: line_length must be a positive int (characters), received {line_length!r}")
    absolute = False
    if positions is not None:
        if not isinstance(positions, (list, tuple)) or not all(
                isinstance(p, (int, float)) and not isinstance(p, bool) and p > 0 for p in positions):
            raise ValueError("summary: positions must be a list of positive numbers, where each column ends "
                             f"(fractions of line_length, or characters); received {positions!r}")
        if len(positions) != len(header):
            raise ValueError(f"summary: positions needs one entry per column {header}, i.e. {len(header)}; "
                             f"received {len(positions)}: {list(positions)}")
        absolute = positions[-1] > 1
    positions = list(positions or default_positions)
    if absolute:
        ends = [int(p) for p in positions]
        if show_trainable:
            ends.append(ends[-1] + _TRAINABLE_EXTRA)
        if line_length is not None and line_length != ends[-1]:
            raise ValueError(f"summary: absolute positions {positions} make the table {ends[-1]} characters wide, "
                             f"but line_length={line_length}; pass one or the other, or relative positions")
        line_length = ends[-1]
    else:
        if line_length is None:
            default_length += _TRAINABLE_EXTRA if show_trainable else 0
            line_length = min(default_length, shutil.get_terminal_size().columns - 4)
        if show_trainable:
            positions = [p * 0.90 for p in positions] + [1.0]
        ends = [int(p * line_length) for p in positions]
    widths, current = [], 0
    names = header + (["Trainable"] if show_trainable else [])
    for name, end in zip(names, ends):
        if end - current < 4:
            raise ValueError(f"summary: the column {name!r} would be {end - current} characters wide (at least 4 "
                             f"needed) with line_length={line_length} and column ends {ends}; pass a larger "
                             "line_length or positions further apart")
        widths.append(end - current)
        current = end
    return widths, line_length


def _ratio_reduce(total, maximums, values):
    """rich's ratio_reduce with equal ratios: takes `total` off `values`, spread evenly."""
    ratios = [1 if m else 0 for m in maximums]
    total_ratio = sum(ratios)
    out = []
    for ratio, maximum, value in zip(ratios, maximums, values):
        if ratio and total_ratio > 0:
            distributed = min(maximum, round(ratio * total / total_ratio))
            out.append(value - distributed)
            total -= distributed
            total_ratio -= ratio
        else:
            out.append(value)
    return out


def _fit(widths, line_length):
    """Cell widths (padding included) as rich lays out fixed-width columns in a table of
    `line_length` characters, borders included."""
    inner = line_length - (len(widths) + 1)
    cells = [min(w + 2, inner) for w in widths]
    if sum(cells) > inner:
        cells = _ratio_reduce(sum(cells) - inner, cells, cells)
        cells = [max(c, 0) for c in cells]
    return cells


_WORD = re.compile(r"\s*\S+\s*")


def _wrap(text, width, justify):
    """The lines of one cell, each exactly `width` long: words wrapped at spaces, a word longer
    than the width cropped with "…" (rich's wrap with overflow="ellipsis")."""
    if width <= 0:
        return [""]
    breaks, offset = [], 0
    for m in _WORD.finditer(text):
        start, word = m.start(), m.group(0)
        length = len(word.rstrip())
        if width - offset >= length:
            offset += len(word)
        elif length > width:
            if start:
                breaks.append(start)
            offset = len(word)
        elif offset and start:
            breaks.append(start)
            offset = len(word)
    pieces = [text[a:b] for a, b in zip([0] + breaks, breaks + [len(text)])]
    lines = []
    for line in pieces:
        if len(line) > width:   # whitespace past the width goes first
            trailing = len(line) - len(line.rstrip())
            line = line[:len(line) - min(trailing, len(line) - width)]
        if justify != "left":
            line = line.rstrip()
        if len(line) > width:
            line = line[:width - 1] + "…"
        if justify == "left":
            line = line.ljust(width)
        elif justify == "right":
            line = line.rjust(width)
        else:
            left = (width - len(line)) // 2
            line = (" " * left + line).ljust(width)
        lines.append(line)
    return lines


def render_table(header, align, widths, rows, line_length):
    """The lines of a box table as rich draws Keras's summary (heavy head, a rule between rows;
    header cells aligned to the bottom, the others to the top)."""
    cells = _fit(widths, line_length)

    def row_lines(values, left, sep, right, bottom=False):
        columns = [_wrap(str(v), c - 2, a) for v, c, a in zip(values, cells, align)]
        height = max(len(c) for c in columns)
        blank = [[" " * max(c - 2, 0)] * (height - len(col)) for col, c in zip(columns, cells)]
        columns = [b + col if bottom else col + b for col, b in zip(columns, blank)]
        return [left + sep.join(" " + col[i] + " " for col in columns) + right for i in range(height)]

    def rule(left, fill, sep, right):
        return left + sep.join(fill * c for c in cells) + right

    lines = [rule("┏", "━", "┳", "┓")] + row_lines(header, "┃", "┃", "┃", bottom=True)
    lines.append(rule("┡", "━", "╇", "┩"))
    for i, r in enumerate(rows):
        if i:
            lines.append(rule("├", "─", "┼", "┤"))
        lines += row_lines(r, "│", "│", "│")
    lines.append(rule("└", "─", "┴", "┘"))
    return lines
