"""Op nodes in the ONNX export (models/export_onnx.py): `keras.ops` calls and Python's operators on
symbolic tensors, recorded as SymbolicOp nodes of a functional graph, each converted by its
function's name (`supported_ops()`), with lamina's dtype rules."""
import numpy as np

from ..layers.input_layer import KerasTensor
from ..layers.layer import map_structure
from .onnx_layers import _NP_TO_ONNX, _softmax

# ---- op nodes: keras.ops calls and Python operators on symbolic tensors --------------------------

class _Ref:
    """A graph tensor among an op node's arguments: its ONNX name and its KerasTensor."""
    __slots__ = ("name", "kt")

    def __init__(self, name, kt):
        self.name, self.kt = name, kt


def _onnx_dtype(dtype):
    """The dtype the ONNX graph computes an op in: bfloat16 as float32 (as the layers)."""
    return "float32" if dtype == "bfloat16" else dtype


def _constant_array(v, who, what):
    if isinstance(v, (str, bytes)) or v is None:
        raise NotImplementedError(f"{who}: {what} is {v!r}; lamina exports op nodes whose other arguments are "
                                  "numbers or numpy arrays")
    a = np.asarray(v)
    if a.dtype.kind not in "biuf":
        raise NotImplementedError(f"{who}: {what} is a {a.dtype} value {v!r}; lamina exports op nodes whose "
                                  "constant arguments are bool, integer or float numbers or numpy arrays")
    return a


def _operand(g, v, dt, h, who, what):
    """`v` (a _Ref or a constant) as an ONNX tensor of dtype `dt`: a Cast, or an initializer."""
    if isinstance(v, _Ref):
        if g.dtype.get(v.name) == dt:
            return v.name
        return g.op("Cast", [v.name], f"{h}/{what}_cast", dtype=dt, to=_NP_TO_ONNX[dt])
    return g.const(_constant_array(v, who, what).astype(dt), f"{h}/{what}")


def _common_dtype(a, b, who):
    """The dtype lamina computes a binary op of `a` and `b` in (backend/math.py's _operands): two
    tensors share one (two float dtypes: float32); a constant takes the tensor's dtype (weak
    typing), except a float with an int/bool tensor (float32) and an int with a bool tensor."""
    if isinstance(a, _Ref) and isinstance(b, _Ref):
        da, db = a.kt.dtype, b.kt.dtype
        if da == db:
            return _onnx_dtype(da)
        return "float32"   # float dtypes that differ (others are refused when the graph is built)
    t, c = (a, b) if isinstance(a, _Ref) else (b, a)
    arr = _constant_array(c, who, "the constant operand")
    dt = t.kt.dtype
    if arr.dtype.kind == "f" and dt not in ("float16", "bfloat16", "float32", "float64"):
        return "float32"
    if arr.dtype.kind in "iu" and dt == "bool":
        return "int64" if not isinstance(c, np.ndarray) else str(arr.dtype)
    return _onnx_dtype(dt)


def _arith_dtype(out, who):
    dt = _onnx_dtype(out.dtype)
    if dt == "bool":
        raise NotImplementedError(f"{who}: arithmetic on bool tensors (a bool result) is not exported; cast the "
                                  "operands first, e.g. ops.cast(x, 'int32')")
    return dt


def _op_binary(onnx_op):
    def convert(g, h, a, out, who):
        dt = _arith_dtype(out, who)
        return g.op(onnx_op, [_operand(g, a["x1"], dt, h, who, "x1"), _operand(g, a["x2"], dt, h, who, "x2")],
                    h, dtype=dt)
    return convert


def _op_compare(onnx_op):
    def convert(g, h, a, out, who):
        dt = _common_dtype(a["x1"], a["x2"], who)
        x, y = _operand(g, a["x1"], dt, h, who, "x1"), _operand(g, a["x2"], dt, h, who, "x2")
        if onnx_op == "NotEqual":
            return g.op("Not", [g.op("Equal", [x, y], f"{h}/equal", dtype="bool")], h, dtype="bool")
        return g.op(onnx_op, [x, y], h, dtype="bool")
    return convert


def _op_logical(onnx_op):
    def convert(g, h, a, out, who):
        if onnx_op == "Not":
            return g.op("Not", [_operand(g, a["x"], "bool", h, who, "x")], h, dtype="bool")
        return g.op(onnx_op, [_operand(g, a["x1"], "bool", h, who, "x1"), _operand(g, a["x2"], "bool", h, who, "x2")],
                    h, dtype="bool")
    return convert


def _op_unary(onnx_op, floating=False):
    def convert(g, h, a, out, who):
        dt = _arith_dtype(out, who)
        if floating and dt not in ("float16", "float32", "float64"):
            dt = "float32"
        x = _operand(g, a["x"], dt, h, who, "x")
        if onnx_op == "Square":
            return g.op("Mul", [x, x], h, dtype=dt)
        if onnx_op == "Relu" and dt not in ("float16", "float32", "float64"):
            return g.op("Max", [x, g.const(np.zeros((), dt), f"{h}/zero")], h, dtype=dt)
        return g.op(onnx_op, [x], h, dtype=dt)
    return convert


def _op_round(g, h, a, out, who):
    if a["decimals"] != 0:
        raise NotImplementedError(f"{who}: round with decimals={a['decimals']!r} is not exported (lamina exports "
                                  "decimals=0, ONNX's Round: halves to even as numpy); scale, round and divide "
                                  "with ops instead")
    dt = _arith_dtype(out, who)
    x = _operand(g, a["x"], dt, h, who, "x")
    return g.op("Round" if dt in ("float16", "float32", "float64") else "Identity", [x], h, dtype=dt)


def _divisor_guard(g, y, dt, h):
    """(safe divisor, is-zero mask) for integer division: lamina's integer x // 0 and x % 0 are 0."""
    zero = g.op("Equal", [y, g.const(np.zeros((), dt), f"{h}/zero")], f"{h}/divisor_is_zero", dtype="bool")
    return g.op("Where", [zero, g.const(np.ones((), dt), f"{h}/one"), y], f"{h}/safe_divisor", dtype=dt), zero


def _op_floor_mod(floor):
    """numpy's floor_divide / mod (npy_divmod, as lamina's kernels): integers with Mod(fmod=0)
    (the divisor's sign) and an exact Div; floats from fmod with the same corrections as numpy."""
    def convert(g, h, a, out, who):
        dt = _arith_dtype(out, who)
        x, y = _operand(g, a["x1"], dt, h, who, "x1"), _operand(g, a["x2"], dt, h, who, "x2")
        if dt not in ("float16", "float32", "float64"):
            ys, zero = _divisor_guard(g, y, dt, h)
            r = g.op("Mod", [x, ys], f"{h}/mod", dtype=dt, fmod=0)
            res = g.op("Div", [g.op("Sub", [x, r], f"{h}/x_minus_mod", dtype=dt), ys], f"{h}/quotient",
                       dtype=dt) if floor else r
            return g.op("Where", [zero, g.const(np.zeros((), dt), f"{h}/zero_out"), res], h, dtype=dt)
        zf = g.const(np.zeros((), dt), f"{h}/zero")
        m = g.op("Mod", [x, y], f"{h}/fmod", dtype=dt, fmod=1)
        wrong_sign = g.op("Xor", [g.op("Less", [y, zf], f"{h}/divisor_neg", dtype="bool"),
                                  g.op("Less", [m, zf], f"{h}/fmod_neg", dtype="bool")], f"{h}/signs_differ",
                          dtype="bool")
        adjust = g.op("And", [g.op("Not", [g.op("Equal", [m, zf], f"{h}/fmod_zero", dtype="bool")],
                                   f"{h}/fmod_nonzero", dtype="bool"), wrong_sign], f"{h}/adjust", dtype="bool")
        if not floor:
            return g.op("Where", [adjust, g.op("Add", [m, y], f"{h}/fmod_plus_divisor", dtype=dt), m], h, dtype=dt)
        one = g.const(np.ones((), dt), f"{h}/one")
        div = g.op("Div", [g.op("Sub", [x, m], f"{h}/x_minus_fmod", dtype=dt), y], f"{h}/div", dtype=dt)
        div = g.op("Where", [adjust, g.op("Sub", [div, one], f"{h}/div_minus_1", dtype=dt), div], f"{h}/div_adj",
                   dtype=dt)
        fl = g.op("Floor", [div], f"{h}/floor", dtype=dt)
        up = g.op("Greater", [g.op("Sub", [div, fl], f"{h}/frac", dtype=dt), g.const(np.asarray(0.5, dt), f"{h}/half")],
                  f"{h}/round_up", dtype="bool")
        fl = g.op("Add", [fl, g.op("Cast", [up], f"{h}/round_up_f", dtype=dt, to=_NP_TO_ONNX[dt])], f"{h}/rounded",
                  dtype=dt)
        by_zero = g.op("Equal", [y, zf], f"{h}/divisor_is_zero", dtype="bool")   # x / 0: inf or nan, as lamina
        return g.op("Where", [by_zero, g.op("Div", [x, y], f"{h}/true_div", dtype=dt), fl], h, dtype=dt)
    return convert


def _tensor_arg(v, who, what):
    if not isinstance(v, _Ref):
        raise NotImplementedError(f"{who}: {what} must be a tensor of the graph, received the constant {v!r}")
    return v


def _axes_arg(axis, ndim, who, default_all=True):
    if axis is None:
        return list(range(ndim)) if default_all else None
    items = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    out = []
    for a in items:
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
            raise NotImplementedError(f"{who}: axis must be None, an int or a tuple of ints in [-{ndim}, {ndim}) for "
                                      f"a rank-{ndim} input, received axis={axis!r}")
        out.append(int(a) % ndim)
    return sorted(set(out))


def _op_reduce(onnx_op):
    def convert(g, h, a, out, who):
        if a.get("initial") is not None:
            raise NotImplementedError(f"{who}: initial={a['initial']!r} is not exported; apply ops.maximum / "
                                      "ops.minimum with the initial value after the reduction")
        x = _tensor_arg(a["x"], who, "x")
        dt = _onnx_dtype(out.dtype)
        if dt == "bool":
            dt = "int32"    # ONNX's reductions take numbers (the result is cast back to bool)
        elif onnx_op == "ReduceMean" and dt not in ("float16", "float32", "float64"):
            dt = "float32"
        axes = _axes_arg(a["axis"], len(x.kt.shape), who)
        xs = _operand(g, x, dt, h, who, "x")
        if not axes:   # axis=(): nothing reduced
            return g.op("Identity", [xs], h, dtype=dt)
        return g.reduce(onnx_op, xs, axes, h, keepdims=bool(a["keepdims"]))
    return convert


def _op_matmul(g, h, a, out, who):
    dt = _arith_dtype(out, who)
    return g.op("MatMul", [_operand(g, a["x1"], dt, h, who, "x1"), _operand(g, a["x2"], dt, h, who, "x2")], h,
                dtype=dt)


def _op_reshape(g, h, a, out, who):
    x = _tensor_arg(a["x"], who, "x")
    shape = a["newshape"]
    shape = list(shape) if isinstance(shape, (list, tuple)) else [shape]
    if any(isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < -1 for d in shape) or \
            sum(d == -1 for d in shape) > 1:
        raise NotImplementedError(f"{who}: newshape must be ints (at most one -1), received {a['newshape']!r}")
    extra = {"allowzero": 1} if 0 in shape else {}
    return g.op("Reshape", [x.name, g.ints([int(d) for d in shape], f"{h}/shape")], h, **extra)


def _op_transpose(g, h, a, out, who):
    x = _tensor_arg(a["x"], who, "x")
    nd = len(x.kt.shape)
    perm = list(range(nd))[::-1] if a["axes"] is None else [int(p) % nd for p in a["axes"]]
    return g.op("Transpose", [x.name], h, perm=perm)


def _op_expand_dims(g, h, a, out, who):
    x = _tensor_arg(a["x"], who, "x")
    axes = a["axis"] if isinstance(a["axis"], (list, tuple)) else [a["axis"]]
    return g.op("Unsqueeze", [x.name, g.ints([int(v) for v in axes], f"{h}/axes")], h)


def _op_squeeze(g, h, a, out, who):
    x = _tensor_arg(a["x"], who, "x")
    shape = x.kt.shape
    if a["axis"] is None:   # the axes of size 1 in the graph (lamina's symbolic shape)
        axes = [i for i, d in enumerate(shape) if d == 1]
    else:
        axes = _axes_arg(a["axis"], len(shape), who)
    if not axes:
        return g.op("Identity", [x.name], h)
    return g.op("Squeeze", [x.name, g.ints(axes, f"{h}/axes")], h)


def _op_concatenate(g, h, a, out, who):
    xs = a["xs"]
    if not isinstance(xs, (list, tuple)) or not all(isinstance(t, _Ref) for t in xs):
        raise NotImplementedError(f"{who}: lamina exports concatenate of a list of graph tensors; a constant in the "
                                  "list is not exported (its batch size is fixed): broadcast it with an op of the "
                                  "graph first")
    dt = _onnx_dtype(out.dtype)
    return g.op("Concat", [_operand(g, t, dt, h, who, f"xs_{i}") for i, t in enumerate(xs)], h, dtype=dt,
                axis=int(a["axis"]))


_INT64_MAX, _INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


def _op_get_item(g, h, a, out, who):
    """x[key] with ints, slices (any step), Ellipsis and None: one Slice, a Squeeze of the indexed
    axes and an Unsqueeze of the new ones."""
    x = _tensor_arg(a["x"], who, "x")
    nd = len(x.kt.shape)
    key = a["key"] if isinstance(a["key"], tuple) else (a["key"],)

    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    for k in key:
        ok = k is None or k is Ellipsis or is_int(k) or (
            isinstance(k, slice) and all(v is None or is_int(v) for v in (k.start, k.stop, k.step)))
        if not ok:
            raise NotImplementedError(f"{who}: the index {k!r} is not exported; lamina exports x[...] with ints, "
                                      "slices, Ellipsis and None (use ops.take for integer-array indices)")
    used = sum(1 for k in key if k is not None and k is not Ellipsis)
    if any(k is Ellipsis for k in key):
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (nd - used) + key[i + 1:]
    else:
        key = key + (slice(None),) * (nd - used)
    starts, ends, axes, steps, squeeze, new = [], [], [], [], [], []
    d = o = 0
    for k in key:
        if k is None:
            new.append(o)
            o += 1
            continue
        if is_int(k):
            k = int(k)
            starts.append(k), ends.append(k + 1 if k != -1 else _INT64_MAX), steps.append(1), axes.append(d)
            squeeze.append(d)
        else:
            step = 1 if k.step is None else int(k.step)
            if k != slice(None):
                start = k.start if k.start is not None else (0 if step > 0 else _INT64_MAX)
                stop = k.stop if k.stop is not None else (_INT64_MAX if step > 0 else _INT64_MIN)
                starts.append(int(start)), ends.append(int(stop)), steps.append(step), axes.append(d)
            o += 1
        d += 1
    y = x.name
    if axes:
        y = g.op("Slice", [y, g.ints(starts, f"{h}/starts"), g.ints(ends, f"{h}/ends"), g.ints(axes, f"{h}/axes"),
                           g.ints(steps, f"{h}/steps")], f"{h}/slice")
    if squeeze:
        y = g.op("Squeeze", [y, g.ints(squeeze, f"{h}/squeeze_axes")], f"{h}/squeeze")
    if new:
        y = g.op("Unsqueeze", [y, g.ints(new, f"{h}/new_axes")], f"{h}/unsqueeze")
    return y if y != x.name else g.op("Identity", [y], h)


def _op_softmax(g, h, a, out, who):
    x = _tensor_arg(a["x"], who, "x")
    nd = len(x.kt.shape)
    axis = a["axis"]
    axis = int(axis) if isinstance(axis, (int, np.integer)) else tuple(_axes_arg(axis, nd, who))
    return _softmax(g, _operand(g, x, _arith_dtype(out, who), h, who, "x"), axis, h, nd)


def _op_cast(g, h, a, out, who):
    x = _tensor_arg(a["x"], who, "x")
    dt = _onnx_dtype(out.dtype)
    if dt not in _NP_TO_ONNX:
        raise NotImplementedError(f"{who}: cast to {out.dtype!r} is not exported; ONNX tensors of lamina's graphs "
                                  f"have the dtypes {sorted(_NP_TO_ONNX)}")
    return g.op("Cast", [x.name], h, dtype=dt, to=_NP_TO_ONNX[dt])


_OP_CONVERTERS = {
    "add": _op_binary("Add"), "subtract": _op_binary("Sub"), "multiply": _op_binary("Mul"),
    "divide": _op_binary("Div"), "power": _op_binary("Pow"), "maximum": _op_binary("Max"),
    "minimum": _op_binary("Min"), "floor_divide": _op_floor_mod(True), "mod": _op_floor_mod(False),
    "matmul": _op_matmul,
    "negative": _op_unary("Neg"), "abs": _op_unary("Abs"), "square": _op_unary("Square"),
    "exp": _op_unary("Exp", True), "log": _op_unary("Log", True), "sqrt": _op_unary("Sqrt", True),
    "relu": _op_unary("Relu"), "sigmoid": _op_unary("Sigmoid", True), "tanh": _op_unary("Tanh", True),
    "softmax": _op_softmax, "round": _op_round, "cast": _op_cast,
    "less": _op_compare("Less"), "less_equal": _op_compare("LessOrEqual"), "greater": _op_compare("Greater"),
    "greater_equal": _op_compare("GreaterOrEqual"), "equal": _op_compare("Equal"),
    "not_equal": _op_compare("NotEqual"),
    "logical_and": _op_logical("And"), "logical_or": _op_logical("Or"), "logical_xor": _op_logical("Xor"),
    "logical_not": _op_logical("Not"),
    "mean": _op_reduce("ReduceMean"), "sum": _op_reduce("ReduceSum"), "max": _op_reduce("ReduceMax"),
    "min": _op_reduce("ReduceMin"),
    "reshape": _op_reshape, "transpose": _op_transpose, "expand_dims": _op_expand_dims, "squeeze": _op_squeeze,
    "concatenate": _op_concatenate, "get_item": _op_get_item,
}
# the names lamina's ops go by (ops.true_divide is divide, ops.absolute is abs, ops.nn.* are ops.*)
_OP_ALIASES = {"true_divide": "divide", "absolute": "abs"}


def supported_ops():
    """The `lamina.ops` functions (and Python operators on symbolic tensors) whose op nodes
    `export(format="onnx")` converts."""
    return sorted(set(_OP_CONVERTERS) | set(_OP_ALIASES))


def _op_name(layer):
    name = getattr(layer.function, "__name__", repr(layer.function))
    return _OP_ALIASES.get(name, name)


def _symbolic_op(g, layer, ins, in_kts, out_kts):
    """An op node: its call (KerasTensors replaced, in order, by the graph's tensors) bound to
    the op's parameters, converted by _OP_CONVERTERS."""
    import inspect
    name = _op_name(layer)
    who = f"op {name}"
    if layer._template is None or len(out_kts) != 1:
        raise NotImplementedError(f"{who}: the node has no recorded call with one output; lamina exports op nodes "
                                  "recorded by calling an op on KerasTensors")
    refs = iter([_Ref(n, kt) for n, kt in zip(ins, in_kts)])
    args, kwargs = map_structure(lambda v: next(refs) if isinstance(v, KerasTensor) else v, layer._template)
    try:
        bound = inspect.signature(layer.function).bind(*args, **kwargs)
    except TypeError as e:
        raise NotImplementedError(f"{who}: its recorded arguments do not match the op's parameters ({e})") from None
    bound.apply_defaults()
    # tensors named "<node>/<op>...": the node's own name is left to a graph output it may become
    return _OP_CONVERTERS[name](g, f"{layer.name}/{name}", dict(bound.arguments), out_kts[0], who)
