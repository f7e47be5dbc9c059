"""The layers' converters of the ONNX export (models/export_onnx.py): for each supported layer
class, a function (graph, layer, input names, input KerasTensors, output KerasTensors) -> the output
name(s), adding the layer's ONNX nodes and initializers (its weights) to the graph; activations,
recurrent layers (ONNX's LSTM / GRU / RNN ops), attention and the normalizations. `CONVERTERS` maps
each class to its converter; `CALL_ARGS`, layers called with several arguments."""
import functools

import numpy as np

from .. import activations as _act
from .. import layers as L
from .. import ops as _ops
from ..backend.settings import epsilon as _epsilon
from ..layers.input_layer import KerasTensor

_NP_TO_ONNX = {"float32": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "int32": 6, "int64": 7, "bool": 9,
               "float16": 10, "float64": 11, "uint32": 12, "uint64": 13, "bfloat16": 16}


# ---- activations ---------------------------------------------------------------------------------

_SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))


def _gelu(g, x, h, approximate):
    if approximate:
        x3 = g.op("Mul", [g.op("Mul", [x, x], f"{h}/x2"), x], f"{h}/x3")
        inner = g.op("Add", [x, g.op("Mul", [x3, g.scalar(0.044715, f"{h}/c")], f"{h}/cx3")], f"{h}/inner")
        t = g.op("Tanh", [g.op("Mul", [inner, g.scalar(_SQRT_2_OVER_PI, f"{h}/k")], f"{h}/scaled")], f"{h}/tanh")
    else:
        t = g.op("Erf", [g.op("Div", [x, g.scalar(np.sqrt(2.0), f"{h}/sqrt2")], f"{h}/xs")], f"{h}/erf")
    one = g.op("Add", [t, g.scalar(1.0, f"{h}/one")], f"{h}/1p")
    return g.op("Mul", [g.op("Mul", [x, one], f"{h}/x1p"), g.scalar(0.5, f"{h}/half")], f"{h}/gelu")


def _softmax(g, x, axis, h, ndim):
    if isinstance(axis, int):
        return g.op("Softmax", [x], f"{h}/softmax", axis=int(axis))
    axes = sorted(a % ndim for a in axis)
    m = g.reduce("ReduceMax", x, axes, f"{h}/max", keepdims=True)
    e = g.op("Exp", [g.op("Sub", [x, m], f"{h}/shift")], f"{h}/exp")
    return g.op("Div", [e, g.reduce("ReduceSum", e, axes, f"{h}/sum", keepdims=True)], f"{h}/softmax")


def _clip(g, x, lo, hi, h):
    ins = [x, "" if lo is None else g.scalar(lo, f"{h}/lo"), "" if hi is None else g.scalar(hi, f"{h}/hi")]
    while ins[-1] == "":
        ins.pop()
    return g.op("Clip", ins, f"{h}/clip")


_SIMPLE_ACTIVATIONS = {_act.relu: "Relu", _act.sigmoid: "Sigmoid", _act.tanh: "Tanh", _act.softplus: "Softplus",
                       _act.softsign: "Softsign", _act.exponential: "Exp"}


def _activation_fn(fn):
    """(function, keyword arguments) of a built-in activation, partials unwrapped; None otherwise."""
    kw = {}
    while isinstance(fn, functools.partial) and not fn.args:
        kw = {**fn.keywords, **kw}
        fn = fn.func
    return fn, kw


def _activation_supported(fn):
    f, kw = _activation_fn(fn)
    known = set(_SIMPLE_ACTIVATIONS) | {_act.linear, _act.relu6, _act.softmax, _act.log_softmax, _act.gelu, _ops.gelu,
                                         _act.silu, _act.elu, _act.selu, _act.leaky_relu, _act.hard_sigmoid,
                                         _act.hard_silu, _act.hard_tanh, _act.mish, _act.log_sigmoid,
                                         _act.tanh_shrink, _act.celu}
    return f in known


def _apply_activation(g, fn, x, h, ndim):
    f, kw = _activation_fn(fn)
    a = f"{h}/act"
    if f is _act.linear:
        return x
    if f is _act.relu and kw:
        return _relu_general(g, x, a, kw.get("negative_slope", 0.0), kw.get("max_value"), kw.get("threshold", 0.0))
    if f in _SIMPLE_ACTIVATIONS:
        return g.op(_SIMPLE_ACTIVATIONS[f], [x], a)
    if f is _act.relu6:
        return _clip(g, x, 0.0, 6.0, a)
    if f is _act.softmax:
        return _softmax(g, x, kw.get("axis", -1), a, ndim)
    if f is _act.log_softmax:
        return g.op("LogSoftmax", [x], a, axis=int(kw.get("axis", -1)))
    if f is _act.gelu or f is _ops.gelu:
        return _gelu(g, x, a, kw.get("approximate", f is _ops.gelu))
    if f is _act.silu:
        return g.op("Mul", [x, g.op("Sigmoid", [x], f"{a}/sigmoid")], a)
    if f is _act.elu:
        return g.op("Elu", [x], a, alpha=float(kw.get("alpha", 1.0)))
    if f is _act.celu:
        return g.op("Celu", [x], a, alpha=float(kw.get("alpha", 1.0)))
    if f is _act.selu:
        return g.op("Selu", [x], a, alpha=1.6732632423543772, gamma=1.0507009873554805)
    if f is _act.leaky_relu:
        return g.op("LeakyRelu", [x], a, alpha=float(kw.get("negative_slope", 0.2)))
    if f is _act.hard_sigmoid:
        return g.op("HardSigmoid", [x], a, alpha=1.0 / 6.0, beta=0.5)
    if f is _act.hard_silu:
        return g.op("Mul", [x, g.op("HardSigmoid", [x], f"{a}/hs", alpha=1.0 / 6.0, beta=0.5)], a)
    if f is _act.hard_tanh:
        return _clip(g, x, -1.0, 1.0, a)
    if f is _act.mish:
        return g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x], f"{a}/sp")], f"{a}/t")], a)
    if f is _act.log_sigmoid:
        return g.op("Neg", [g.op("Softplus", [g.op("Neg", [x], f"{a}/neg")], f"{a}/sp")], a)
    if f is _act.tanh_shrink:
        return g.op("Sub", [x, g.op("Tanh", [x], f"{a}/t")], a)
    raise AssertionError(f"unchecked activation {fn!r}")


def _relu_general(g, x, h, negative_slope, max_value, threshold):
    """Keras's relu(x, negative_slope, max_value, threshold), as activations.relu computes it."""
    if negative_slope == 0.0 and threshold == 0.0:
        y = g.op("Relu", [x], f"{h}/relu")
    elif negative_slope == 0.0:
        cond = g.op("Less", [x, g.scalar(threshold, f"{h}/th")], f"{h}/below", dtype="bool")
        y = g.op("Where", [cond, g.scalar(0.0, f"{h}/zero"), x], f"{h}/relu", dtype="float32")
    else:
        cond = g.op("GreaterOrEqual", [x, g.scalar(threshold, f"{h}/th")], f"{h}/above", dtype="bool")
        neg = g.op("Mul", [g.op("Sub", [x, g.scalar(threshold, f"{h}/th2")], f"{h}/xt"),
                           g.scalar(negative_slope, f"{h}/slope")], f"{h}/neg")
        y = g.op("Where", [cond, x, neg], f"{h}/relu", dtype="float32")
    if max_value is not None:
        y = g.op("Min", [y, g.scalar(max_value, f"{h}/max")], f"{h}/cap")
    return y


# ---- converters: (graph, layer, input names, input KerasTensors, output KerasTensors) -> name(s) ---

def _w(layer, var):
    return np.asarray(var.numpy(), np.float32)


def _to_first(g, x, rank, h):
    """channels_last (B, *spatial, C) -> (B, C, *spatial)."""
    return g.op("Transpose", [x], f"{h}/to_nchw", perm=[0, rank + 1] + list(range(1, rank + 1)))


def _to_last(g, x, rank, h):
    return g.op("Transpose", [x], f"{h}/to_nhwc", perm=[0] + list(range(2, rank + 2)) + [1])


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") != "channels_first"


def _spatial(shape, rank, last):
    return list(shape[1:1 + rank]) if last else list(shape[2:2 + rank])


def _pads(padding, spatial, kernel, strides, dilations):
    """ONNX `pads` (begins then ends) for Keras's padding, or None where "same" meets an unknown
    size with a stride above 1 (then auto_pad SAME_UPPER, the same split: the odd pixel at the end;
    ONNX Runtime takes it without dilation only)."""
    r = len(kernel)
    if padding == "valid":
        return [0] * (2 * r)
    if padding == "causal":
        return [(kernel[0] - 1) * dilations[0], 0]
    if any(n is None and s > 1 for n, s in zip(spatial, strides)):
        if any(d > 1 for d in dilations):
            raise NotImplementedError(f"padding='same' with strides {tuple(strides)} and dilation_rate "
                                      f"{tuple(dilations)} on an input of unknown spatial size {tuple(spatial)} cannot "
                                      "be exported (ONNX Runtime has no dilated auto padding); give the Input fixed "
                                      "spatial sizes, e.g. with input_signature")
        return None
    begin, end = [], []
    for n, k, s, d in zip(spatial, kernel, strides, dilations):
        eff = (k - 1) * d + 1
        total = eff - 1 if s == 1 else max((-(-n // s) - 1) * s + eff - n, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin + end


def _conv_attrs(padding, spatial, kernel, strides, dilations, group=1):
    attrs = dict(kernel_shape=list(kernel), strides=list(strides), dilations=list(dilations), group=int(group))
    p = _pads(padding, spatial, kernel, strides, dilations)
    if p is None:
        attrs["auto_pad"] = "SAME_UPPER"
    else:
        attrs["pads"] = p
    return attrs


def _conv(g, layer, ins, in_kts, out_kts):
    """Conv1D/Conv2D (channels_last only in lamina): kernel (*k, in/g, out) -> ONNX (out, in/g, *k)."""
    rank, h, x = layer.rank, layer.name, g.float_input(ins[0], layer.name)
    k = _w(layer, layer.kernel)
    wname = g.const(np.transpose(k, (rank + 1, rank) + tuple(range(rank))), f"{h}/kernel", key=(id(layer), "k"))
    spatial = _spatial(in_kts[0].shape, rank, True)
    attrs = _conv_attrs(layer.padding, spatial, layer.kernel_size, layer.strides, layer.dilation_rate,
                        group=layer.groups)
    y = g.op("Conv", [_to_first(g, x, rank, h), wname], f"{h}/conv", **attrs)
    if layer.bias is not None:
        y = g.op("Add", [y, g.const(_w(layer, layer.bias).reshape((-1,) + (1,) * rank), f"{h}/bias",
                                    key=(id(layer), "b"))], f"{h}/add_bias")
    y = _to_last(g, y, rank, h)
    return _apply_activation(g, layer.activation, y, h, rank + 2)


def _depthwise_weight(k):
    """(*k, C, M) -> ONNX (C*M, 1, *k): output channel c*M + m is filter m of channel c."""
    rank = k.ndim - 2
    kk = k.reshape(k.shape[:rank] + (-1,))
    return np.expand_dims(np.transpose(kk, (rank,) + tuple(range(rank))), 1)


def _depthwise_part(g, layer, x, in_kts, kernel, h):
    rank, last = layer.rank, _channels_last(layer)
    k = _w(layer, kernel)
    channels = k.shape[rank]
    wname = g.const(_depthwise_weight(k), f"{h}/depthwise_kernel", key=(id(layer), "dk"))
    xc = _to_first(g, x, rank, h) if last else x
    spatial = _spatial(in_kts[0].shape, rank, last)
    attrs = _conv_attrs(layer.padding, spatial, layer.kernel_size, layer.strides, layer.dilation_rate, group=channels)
    return g.op("Conv", [xc, wname], f"{h}/depthwise", **attrs)


def _depthwise(g, layer, ins, in_kts, out_kts):
    rank, last, h = layer.rank, _channels_last(layer), layer.name
    y = _depthwise_part(g, layer, g.float_input(ins[0], h), in_kts, layer.kernel, h)
    if layer.bias is not None:
        y = g.op("Add", [y, g.const(_w(layer, layer.bias).reshape((-1,) + (1,) * rank), f"{h}/bias",
                                    key=(id(layer), "b"))], f"{h}/add_bias")
    y = _to_last(g, y, rank, h) if last else y
    return _apply_activation(g, layer.activation, y, h, rank + 2)


def _separable(g, layer, ins, in_kts, out_kts):
    rank, last, h = layer.rank, _channels_last(layer), layer.name
    y = _depthwise_part(g, layer, g.float_input(ins[0], h), in_kts, layer.depthwise_kernel, h)
    pk = _w(layer, layer.pointwise_kernel)            # (*1, C*M, F)
    pw = g.const(np.transpose(pk, (rank + 1, rank) + tuple(range(rank))), f"{h}/pointwise_kernel",
                 key=(id(layer), "pk"))
    ins_pw = [y, pw]
    if layer.bias is not None:
        ins_pw.append(g.const(_w(layer, layer.bias), f"{h}/bias", key=(id(layer), "b")))
    y = g.op("Conv", ins_pw, f"{h}/pointwise", kernel_shape=[1] * rank, strides=[1] * rank)
    y = _to_last(g, y, rank, h) if last else y
    return _apply_activation(g, layer.activation, y, h, rank + 2)


def _conv_transpose(g, layer, ins, in_kts, out_kts):
    """Conv1DTranspose/Conv2DTranspose: Keras's kernel (*k, filters, in) is the kernel of the forward
    convolution (filters -> in) whose input gradient this is, so ONNX's (in, filters, *k) needs no
    flip; pads and output lengths are Keras's (backend/convolution_transpose.transpose_geometry)."""
    from ..backend.convolution_transpose import transpose_geometry
    rank, last, h = layer.rank, _channels_last(layer), layer.name
    spatial = _spatial(in_kts[0].shape, rank, last)
    if any(n is None for n in spatial):
        raise NotImplementedError(f"{type(layer).__name__} '{h}': its input's spatial sizes must be known to export "
                                  f"it (received shape {tuple(in_kts[0].shape)}); give the Input fixed sizes")
    x = g.float_input(ins[0], h)
    k = _w(layer, layer.kernel)
    w = g.const(np.transpose(k, (rank + 1, rank) + tuple(range(rank))), f"{h}/kernel", key=(id(layer), "k"))
    op = layer.output_padding or (None,) * rank
    begin, end, extra = [], [], []
    for i in range(rank):
        kk, s, d = layer.kernel_size[i], layer.strides[i], layer.dilation_rate[i]
        out, before, _ = transpose_geometry(spatial[i], kk, s, d, layer.padding, op[i])
        after = (spatial[i] - 1) * s + (kk - 1) * d + 1 - out - before   # what the full output loses at the end
        begin.append(before)
        end.append(max(after, 0))
        extra.append(max(-after, 0))
    attrs = dict(kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                 dilations=list(layer.dilation_rate), pads=begin + end)
    if any(extra):
        attrs["output_padding"] = extra
    xc = _to_first(g, x, rank, h) if last else x
    conv_in = [xc, w]
    if layer.bias is not None:
        conv_in.append(g.const(_w(layer, layer.bias), f"{h}/bias", key=(id(layer), "b")))
    y = g.op("ConvTranspose", conv_in, f"{h}/conv_transpose", **attrs)
    y = _to_last(g, y, rank, h) if last else y
    return _apply_activation(g, layer.activation, y, h, rank + 2)


def _dense(g, layer, ins, in_kts, out_kts):
    h = layer.name
    x = g.float_input(ins[0], h)
    kernel = layer.merged_kernel() if getattr(layer, "lora_enabled", False) else layer.kernel
    y = g.op("MatMul", [x, g.const(_w(layer, kernel), f"{h}/kernel", key=(id(layer), "k"))], f"{h}/matmul")
    if layer.bias is not None:
        y = g.op("Add", [y, g.const(_w(layer, layer.bias), f"{h}/bias", key=(id(layer), "b"))], f"{h}/add_bias")
    return _apply_activation(g, layer.activation, y, h, len(out_kts[0].shape))


def _pool(g, layer, ins, in_kts, out_kts):
    rank, last, h = layer.rank, _channels_last(layer), layer.name
    x = g.float_input(ins[0], h) if layer.op == "avg" else ins[0]
    xc = _to_first(g, x, rank, h) if last else x
    spatial = _spatial(in_kts[0].shape, rank, last)
    attrs = _conv_attrs(layer.padding, spatial, layer.pool_size, layer.strides, (1,) * rank)
    attrs.pop("dilations")
    attrs.pop("group")
    y = g.op("MaxPool" if layer.op == "max" else "AveragePool", [xc], f"{h}/pool", **attrs)
    return _to_last(g, y, rank, h) if last else y


def _global_pool(g, layer, ins, in_kts, out_kts):
    x = g.float_input(ins[0], layer.name) if layer.op == "avg" else ins[0]
    return g.reduce("ReduceMean" if layer.op == "avg" else "ReduceMax", x, layer._axes(), f"{layer.name}/reduce",
                    keepdims=layer.keepdims)


def _broadcast_param(arr, ndim, axes):
    """A weight over `axes` of an ndim input, shaped to broadcast against it."""
    shape = [1] * ndim
    for a, n in zip(sorted(axes), arr.shape if arr.ndim == len(axes) else (arr.size,)):
        shape[a] = n
    return arr.reshape(shape)


def _batch_norm(g, layer, ins, in_kts, out_kts):
    h, ndim, ax = layer.name, len(in_kts[0].shape), layer._axis
    x = g.float_input(ins[0], h)
    mean = _broadcast_param(_w(layer, layer.moving_mean), ndim, [ax])
    var = _w(layer, layer.moving_variance).astype(np.float64)
    inv = (1.0 / np.sqrt(var + layer.epsilon))
    if layer.gamma is not None:
        inv = inv * _w(layer, layer.gamma).astype(np.float64)
    y = g.op("Sub", [x, g.const(mean, f"{h}/moving_mean", key=(id(layer), "mean"))], f"{h}/center")
    y = g.op("Mul", [y, g.const(_broadcast_param(inv.astype(np.float32), ndim, [ax]), f"{h}/scale",
                                key=(id(layer), "scale"))], f"{h}/scaled")
    if layer.beta is not None:
        y = g.op("Add", [y, g.const(_broadcast_param(_w(layer, layer.beta), ndim, [ax]), f"{h}/beta",
                                    key=(id(layer), "beta"))], f"{h}/shifted")
    return y


def _layer_norm(g, layer, ins, in_kts, out_kts):
    h, ndim, axes = layer.name, len(in_kts[0].shape), list(layer._axes)
    x = g.float_input(ins[0], h)
    eps = g.scalar(layer.epsilon, f"{h}/epsilon")
    if layer.rms_scaling:   # Keras's deprecated variant: x / sqrt(var + eps) * gamma
        mean = g.reduce("ReduceMean", x, axes, f"{h}/mean", keepdims=True)
        d = g.op("Sub", [x, mean], f"{h}/centered")
        var = g.reduce("ReduceMean", g.op("Mul", [d, d], f"{h}/sq"), axes, f"{h}/var", keepdims=True)
        y = g.op("Div", [x, g.op("Sqrt", [g.op("Add", [var, eps], f"{h}/var_eps")], f"{h}/std")], f"{h}/norm")
    else:
        mean = g.reduce("ReduceMean", x, axes, f"{h}/mean", keepdims=True)
        d = g.op("Sub", [x, mean], f"{h}/centered")
        var = g.reduce("ReduceMean", g.op("Mul", [d, d], f"{h}/sq"), axes, f"{h}/var", keepdims=True)
        y = g.op("Div", [d, g.op("Sqrt", [g.op("Add", [var, eps], f"{h}/var_eps")], f"{h}/std")], f"{h}/norm")
    if layer.gamma is not None:
        y = g.op("Mul", [y, g.const(_broadcast_param(_w(layer, layer.gamma), ndim, axes), f"{h}/gamma",
                                    key=(id(layer), "gamma"))], f"{h}/scaled")
    if layer.beta is not None:
        y = g.op("Add", [y, g.const(_broadcast_param(_w(layer, layer.beta), ndim, axes), f"{h}/beta",
                                    key=(id(layer), "beta"))], f"{h}/shifted")
    return y


def _activation_layer(g, layer, ins, in_kts, out_kts):
    x = g.float_input(ins[0], layer.name)
    return _apply_activation(g, layer.activation, x, layer.name, len(in_kts[0].shape))


def _relu_layer(g, layer, ins, in_kts, out_kts):
    x = g.float_input(ins[0], layer.name)
    ms = None if layer.max_value is None else float(layer.max_value)
    return _relu_general(g, x, layer.name, float(layer.negative_slope), ms, float(layer.threshold))


def _leaky_relu_layer(g, layer, ins, in_kts, out_kts):
    return g.op("LeakyRelu", [g.float_input(ins[0], layer.name)], f"{layer.name}/leaky_relu",
                alpha=float(layer.negative_slope))


def _elu_layer(g, layer, ins, in_kts, out_kts):
    return g.op("Elu", [g.float_input(ins[0], layer.name)], f"{layer.name}/elu", alpha=float(layer.alpha))


def _softmax_layer(g, layer, ins, in_kts, out_kts):
    axis = layer.axis if isinstance(layer.axis, int) else tuple(layer.axis)
    return _softmax(g, g.float_input(ins[0], layer.name), axis, layer.name, len(in_kts[0].shape))


def _prelu_layer(g, layer, ins, in_kts, out_kts):
    h = layer.name
    return g.op("PRelu", [g.float_input(ins[0], h), g.const(_w(layer, layer.alpha), f"{h}/alpha",
                                                             key=(id(layer), "alpha"))], f"{h}/prelu")


def _identity(g, layer, ins, in_kts, out_kts):
    return g.op("Identity", [ins[0]], f"{layer.name}/identity")


def _flatten(g, layer, ins, in_kts, out_kts):
    x, ndim = ins[0], len(in_kts[0].shape)
    if not _channels_last(layer) and ndim > 2:
        x = g.op("Transpose", [x], f"{layer.name}/channels_last", perm=[0] + list(range(2, ndim)) + [1])
    return g.op("Flatten", [x], f"{layer.name}/flatten", axis=1)


def _reshape(g, layer, ins, in_kts, out_kts):
    shape = g.ints([0] + list(layer.target_shape), f"{layer.name}/shape")
    return g.op("Reshape", [ins[0], shape], f"{layer.name}/reshape")


def _permute(g, layer, ins, in_kts, out_kts):
    return g.op("Transpose", [ins[0]], f"{layer.name}/permute", perm=[0] + list(layer.dims))


def _repeat_vector(g, layer, ins, in_kts, out_kts):
    h = layer.name
    x = g.op("Unsqueeze", [ins[0], g.ints([1], f"{h}/axis")], f"{h}/unsqueeze")
    return g.op("Expand", [x, g.ints([1, layer.n, 1], f"{h}/shape")], f"{h}/repeat")


def _merge(onnx_op, average=False):
    def convert(g, layer, ins, in_kts, out_kts):
        h = layer.name
        xs = [g.float_input(x, f"{h}/in{i}") if out_kts[0].dtype == "float32" else x for i, x in enumerate(ins)]
        y = xs[0]
        for i, x in enumerate(xs[1:]):   # folded left to right, as lamina and Keras do
            y = g.op(onnx_op, [y, x], f"{h}/{onnx_op.lower()}{i}")
        if average:
            y = g.op("Div", [y, g.scalar(float(len(xs)), f"{h}/n")], f"{h}/average")
        return y
    return convert


def _concatenate(g, layer, ins, in_kts, out_kts):
    return g.op("Concat", ins, f"{layer.name}/concat", axis=int(layer.axis))


def _embedding(g, layer, ins, in_kts, out_kts):
    h = layer.name
    table = _w(layer, layer.embeddings)
    if getattr(layer, "lora_enabled", False):
        a, b = _w(layer, layer.lora_embeddings_a), _w(layer, layer.lora_embeddings_b)
        table = table + (a @ b) * (float(layer.lora_alpha) / layer.lora_rank)
    ids = ins[0]
    if not g.dtype.get(ids, "").startswith(("int", "uint")):
        ids = g.op("Cast", [ids], f"{h}/ids", dtype="int32", to=6)   # as lamina: floats truncated to int32
    return g.op("Gather", [g.const(table, f"{h}/embeddings", key=(id(layer), "e")), ids], f"{h}/gather",
                dtype="float32", axis=0)


def _spatial_axes(layer, rank):
    first = 2 if getattr(layer, "data_format", "channels_last") == "channels_first" else 1
    return list(range(first, first + rank))


def _zero_padding(g, layer, ins, in_kts, out_kts):
    h, ndim = layer.name, len(in_kts[0].shape)
    pairs = layer.padding if type(layer) is L.ZeroPadding2D else layer._pads
    begin, end = [0] * ndim, [0] * ndim
    for (b, e), ax in zip(pairs, _spatial_axes(layer, len(pairs))):
        begin[ax], end[ax] = int(b), int(e)
    zero = g.const(np.zeros((), dtype=in_kts[0].dtype), f"{h}/zero")
    return g.op("Pad", [ins[0], g.ints(begin + end, f"{h}/pads"), zero], f"{h}/pad", mode="constant")


def _cropping(g, layer, ins, in_kts, out_kts):
    h = layer.name
    crops = layer._crops
    axes = _spatial_axes(layer, len(crops))
    starts = [int(b) for b, _ in crops]
    ends = [-int(e) if e else np.iinfo(np.int64).max for _, e in crops]
    return g.op("Slice", [ins[0], g.ints(starts, f"{h}/starts"), g.ints(ends, f"{h}/ends"), g.ints(axes, f"{h}/axes")],
                f"{h}/crop")


def _upsampling(g, layer, ins, in_kts, out_kts):
    h, ndim = layer.name, len(in_kts[0].shape)
    sizes = [layer.size] if isinstance(layer.size, int) else list(layer.size)
    axes = _spatial_axes(layer, len(sizes))
    interp = getattr(layer, "interpolation", "nearest")
    x = ins[0]
    if interp == "nearest":
        # each entry repeated along each axis: Resize "nearest" at integer scales, source index
        # floor(i / f) ("asymmetric" coordinates, "floor" rounding)
        scales = [1.0] * ndim
        for ax, f in zip(axes, sizes):
            scales[ax] = float(f)
        return g.op("Resize", [x, "", g.const(np.asarray(scales, np.float32), f"{h}/scales")], f"{h}/repeat",
                    mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    # bilinear: Resize on a channels-first view, half-pixel centres (keras.ops.image.resize, upsampling)
    x = g.float_input(x, h)
    last = _channels_last(layer)
    xc = _to_first(g, x, 2, h) if last else x
    scales = g.const(np.asarray([1.0, 1.0] + [float(s) for s in sizes], np.float32), f"{h}/scales")
    y = g.op("Resize", [xc, "", scales], f"{h}/resize", mode="linear", coordinate_transformation_mode="half_pixel")
    return _to_last(g, y, 2, h) if last else y


def _rescaling(g, layer, ins, in_kts, out_kts):
    h = layer.name
    x = g.float_input(ins[0], h)
    y = g.op("Mul", [x, g.const(np.asarray(layer._scale, np.float32), f"{h}/scale", key=(id(layer), "s"))], f"{h}/mul")
    return g.op("Add", [y, g.const(np.asarray(layer._offset, np.float32), f"{h}/offset", key=(id(layer), "o"))],
                f"{h}/add")


def _normalization(g, layer, ins, in_kts, out_kts):
    h = layer.name
    x = g.float_input(ins[0], h)
    if layer._fixed is not None:
        mean, var = (np.asarray(a, np.float32) for a in layer._fixed)
    else:
        mean = _w(layer, layer.adapt_mean).reshape(layer._broadcast_shape)
        var = _w(layer, layer.adapt_variance).reshape(layer._broadcast_shape)
    std = np.maximum(np.sqrt(var), np.float32(_epsilon())).astype(np.float32)
    m = g.const(mean, f"{h}/mean", key=(id(layer), "m"))
    s = g.const(std, f"{h}/std", key=(id(layer), "s"))
    if layer.invert:
        return g.op("Add", [m, g.op("Mul", [x, s], f"{h}/scaled")], f"{h}/denormalized")
    return g.op("Div", [g.op("Sub", [x, m], f"{h}/centered"), s], f"{h}/normalized")


# ---- recurrent layers: ONNX's LSTM / GRU / RNN ops ----------------------------------------------

# lamina's activations -> (ONNX RNN activation, alpha, beta): what the recurrent ops take
# (hard_sigmoid as Keras defines it, relu6(x + 3) / 6: alpha 1/6 and beta 0.5, not ONNX's defaults)
_RNN_ACTIVATIONS = {_act.tanh: ("Tanh", None, None), _act.sigmoid: ("Sigmoid", None, None),
                    _act.relu: ("Relu", None, None), _act.hard_sigmoid: ("HardSigmoid", 1.0 / 6.0, 0.5),
                    _act.linear: ("Affine", 1.0, 0.0), _act.softsign: ("Softsign", None, None),
                    _act.softplus: ("Softplus", None, None)}


def _rnn_activations(layer, fns):
    """The ONNX attributes `activations` (+ alpha/beta, consumed in order by the functions that take
    them) for the cell's activation functions."""
    names, alphas, betas = [], [], []
    for what, fn in fns:
        f, kw = _activation_fn(fn)
        entry = _RNN_ACTIVATIONS.get(f) if not kw else None
        if entry is None:
            known = sorted(k.__name__ for k in _RNN_ACTIVATIONS)
            raise NotImplementedError(f"{type(layer).__name__} '{layer.name}': {what}="
                                      f"{getattr(f, '__name__', f)!r}{' with arguments ' + str(kw) if kw else ''} "
                                      f"cannot be exported: ONNX's recurrent ops take the activations {known}")
        names.append(entry[0])
        if entry[1] is not None:
            alphas.append(entry[1])
        if entry[2] is not None:
            betas.append(entry[2])
    attrs = dict(activations=names)
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    return attrs


def _gate_blocks(a, order):
    """The column blocks of `a` (..., G * units) in `order` (Keras's gates -> ONNX's)."""
    parts = np.split(a, len(order), axis=-1)
    return np.concatenate([parts[i] for i in order], axis=-1)


def _reverse_time(g, x, h):
    big = np.iinfo(np.int64).min
    return g.op("Slice", [x, g.ints([-1], f"{h}/rev_start"), g.ints([big], f"{h}/rev_end"), g.ints([1], f"{h}/rev_axis"),
                          g.ints([-1], f"{h}/rev_step")], f"{h}/reverse_time")


def _rnn_outputs(g, layer, ins, h):
    """[output, *last states] of an LSTM / GRU / SimpleRNN on ins[0], as lamina computes them
    (go_backwards: the outputs in processing order, reversed time)."""
    who = f"{type(layer).__name__} '{layer.name}'"
    if len(ins) != 1:
        raise NotImplementedError(f"{who}: initial states passed in the inputs list cannot be exported; lamina "
                                  "exports recurrent layers that start from zero states")
    if layer.stateful:
        raise NotImplementedError(f"{who} is stateful (it carries states between batches), which an ONNX graph "
                                  "cannot do; export a copy built with stateful=False")
    cell = layer.cell
    x = g.float_input(ins[0], h)
    if layer.go_backwards:   # run forwards on the reversed sequence: outputs in processing order, as lamina
        x = _reverse_time(g, x, h)
    xt = g.op("Transpose", [x], f"{h}/time_major", perm=[1, 0, 2])
    k, r = _w(cell, cell.kernel), _w(cell, cell.recurrent_kernel)
    b = _w(cell, cell.bias) if cell.bias is not None else None
    key = id(cell)
    if isinstance(layer, L.LSTM):      # Keras's gates i, f, c, o -> ONNX's i, o, f, c
        op, n, order = "LSTM", 3, [0, 3, 1, 2]
        fns = [("recurrent_activation", cell.recurrent_activation), ("activation", cell.activation),
               ("activation", cell.activation)]
        attrs = {}
        bias = None if b is None else np.concatenate([_gate_blocks(b, order), np.zeros_like(b)])
    elif isinstance(layer, L.GRU):     # gates z, r, h in both; reset_after is linear_before_reset
        op, n, order = "GRU", 2, [0, 1, 2]
        fns = [("recurrent_activation", cell.recurrent_activation), ("activation", cell.activation)]
        attrs = dict(linear_before_reset=int(cell.reset_after))
        if b is None:
            bias = None
        elif cell.reset_after:
            bias = np.concatenate([b[0], b[1]])
        else:
            bias = np.concatenate([b, np.zeros_like(b)])
    else:
        op, n, order = "RNN", 2, [0]
        fns = [("activation", cell.activation)]
        attrs = {}
        bias = None if b is None else np.concatenate([b, np.zeros_like(b)])
    attrs.update(_rnn_activations(layer, fns))
    w_in = [xt, g.const(_gate_blocks(k, order).T[None], f"{h}/W", key=(key, "W")),
            g.const(_gate_blocks(r, order).T[None], f"{h}/R", key=(key, "R"))]
    if bias is not None:
        w_in.append(g.const(bias[None], f"{h}/B", key=(key, "B")))
    outs = g.multi(op, w_in, f"{h}/{op.lower()}", n, hidden_size=int(cell.units), direction="forward", **attrs)
    states = [g.op("Squeeze", [s, g.ints([0], f"{h}/dir_axis")], f"{h}/state{i}") for i, s in enumerate(outs[1:])]
    if layer.return_sequences:
        y = g.op("Squeeze", [outs[0], g.ints([1], f"{h}/dir_axis1")], f"{h}/seq")
        y = g.op("Transpose", [y], f"{h}/batch_major", perm=[1, 0, 2])
    else:
        y = states[0]
    return [y] + states


def _recurrent(g, layer, ins, in_kts, out_kts):
    outs = _rnn_outputs(g, layer, ins, layer.name)
    return outs if layer.return_state else outs[0]


def _bidirectional(g, layer, ins, in_kts, out_kts):
    h = layer.name
    fw, bw = layer.forward_layer, layer.backward_layer
    f = _rnn_outputs(g, fw, ins, f"{h}/{fw.name}")
    b = _rnn_outputs(g, bw, ins, f"{h}/{bw.name}")
    fo, bo = f[0], b[0]
    if layer.return_sequences:
        bo = _reverse_time(g, bo, f"{h}/backward")
    mode = layer.merge_mode
    if mode == "concat":
        out = [g.op("Concat", [fo, bo], f"{h}/concat", axis=-1)]
    elif mode == "sum":
        out = [g.op("Add", [fo, bo], f"{h}/sum")]
    elif mode == "mul":
        out = [g.op("Mul", [fo, bo], f"{h}/mul")]
    elif mode == "ave":
        out = [g.op("Mul", [g.op("Add", [fo, bo], f"{h}/sum"), g.scalar(0.5, f"{h}/half")], f"{h}/ave")]
    else:
        out = [fo, bo]
    if layer.return_state:
        return out + f[1:] + b[1:]
    return out if mode is None else out[0]


# ---- attention and the other normalizations ------------------------------------------------------

def _mha_call(layer, node):
    """(input KerasTensors [query, value, key], converter keywords) of a MultiHeadAttention call,
    or NotImplementedError naming what cannot be exported."""
    args, kwargs = node.call_args
    who = f"MultiHeadAttention '{layer.name}'"
    names = ("query", "value", "key")
    bound = dict(zip(names, args))
    for k in names:
        if k in kwargs:
            bound[k] = kwargs[k]
    extra = sorted(k for k, v in kwargs.items()
                   if k not in names + ("training", "use_causal_mask") and v is not None
                   and not (k == "return_attention_scores" and v is False))
    if len(args) > 3 or extra:
        raise NotImplementedError(f"{who} was called with {extra or 'extra positional arguments'}; lamina exports "
                                  "it called on query, value (and key), with use_causal_mask=True/False: explicit "
                                  "masks and return_attention_scores are not exported")
    q, v = bound.get("query"), bound.get("value")
    k = bound.get("key") if bound.get("key") is not None else v
    if not all(isinstance(t, KerasTensor) for t in (q, v, k)):
        raise NotImplementedError(f"{who}: query, value and key must be tensors of the graph to export it")
    return [q, v, k], {"causal": bool(kwargs.get("use_causal_mask", False))}


def _mha(g, layer, ins, in_kts, out_kts, causal=False):
    """MultiHeadAttention on (batch, positions, features) inputs: the EinsumDense projections as
    MatMuls, softmax(q k^T / sqrt(key_dim)) per head (a lower-triangular mask with use_causal_mask)."""
    h, who = layer.name, f"MultiHeadAttention '{layer.name}'"
    if len(in_kts[0].shape) != 3 or tuple(layer._attention_axes) != (1,) or layer._use_gate or \
            layer._sliding_window is not None or type(layer) is not L.MultiHeadAttention:
        raise NotImplementedError(f"{who}: lamina exports attention over one axis of (batch, positions, features) "
                                  "inputs without use_gate or sliding_window; received query shape "
                                  f"{tuple(in_kts[0].shape)}, attention_axes={layer._attention_axes}")
    N = layer._num_heads

    def project(dense, x, name, depth):
        kern = _w(dense, dense.kernel)
        y = g.op("MatMul", [g.float_input(x, f"{h}/{name}"), g.const(kern.reshape(kern.shape[0], -1),
                                                                       f"{h}/{name}/kernel",
                                                                       key=(id(dense), "k"))], f"{h}/{name}/matmul")
        if dense.bias is not None:
            y = g.op("Add", [y, g.const(_w(dense, dense.bias).reshape(-1), f"{h}/{name}/bias", key=(id(dense), "b"))],
                     f"{h}/{name}/add_bias")
        y = g.op("Reshape", [y, g.ints([0, 0, N, depth], f"{h}/{name}/heads")], f"{h}/{name}/split_heads")
        return g.op("Transpose", [y], f"{h}/{name}/head_major", perm=[0, 2, 1, 3])   # (B, N, len, depth)

    q = project(layer._query_dense, ins[0], "query", layer._key_dim)
    v = project(layer._value_dense, ins[1], "value", layer._value_dim)
    k = project(layer._key_dense, ins[2], "key", layer._key_dim)
    q = g.op("Mul", [q, g.scalar(layer._inverse_sqrt_key_dim, f"{h}/scale")], f"{h}/scaled_query")
    kt = g.op("Transpose", [k], f"{h}/key_t", perm=[0, 1, 3, 2])
    scores = g.op("MatMul", [q, kt], f"{h}/scores")                                     # (B, N, T, S)
    if causal:
        ones = g.op("ConstantOfShape", [g.op("Shape", [scores], f"{h}/scores_shape", dtype="int64")], f"{h}/ones",
                    value=_tensor_proto(np.ones((1,), np.float32)))
        keep = g.op("Cast", [g.op("Trilu", [ones], f"{h}/causal", upper=0)], f"{h}/causal_mask", dtype="bool", to=9)
        scores = g.op("Where", [keep, scores, g.scalar(-1e9, f"{h}/masked")], f"{h}/masked_scores", dtype="float32")
    probs = g.op("Softmax", [scores], f"{h}/softmax", axis=-1)
    out = g.op("MatMul", [probs, v], f"{h}/attend")                                     # (B, N, T, vd)
    out = g.op("Transpose", [out], f"{h}/position_major", perm=[0, 2, 1, 3])
    out = g.op("Reshape", [out, g.ints([0, 0, N * layer._value_dim], f"{h}/merge_shape")], f"{h}/merge_heads")
    od = layer._output_dense
    kern = _w(od, od.kernel)
    out_dims = kern.shape[2:]
    y = g.op("MatMul", [out, g.const(kern.reshape(N * layer._value_dim, -1), f"{h}/output/kernel",
                                     key=(id(od), "k"))], f"{h}/output/matmul")
    if od.bias is not None:
        y = g.op("Add", [y, g.const(_w(od, od.bias).reshape(-1), f"{h}/output/bias", key=(id(od), "b"))],
                 f"{h}/output/add_bias")
    if len(out_dims) > 1:
        y = g.op("Reshape", [y, g.ints([0, 0] + list(out_dims), f"{h}/output/shape")], f"{h}/output/reshape")
    return y


def _tensor_proto(arr):
    from onnx import numpy_helper
    return numpy_helper.from_array(arr)


def _unit_norm(g, layer, ins, in_kts, out_kts):
    """x * min(rsqrt(sum(x^2)), 1e12), as lamina."""
    h = layer.name
    x = g.float_input(ins[0], h)
    ss = g.reduce("ReduceSum", g.op("Mul", [x, x], f"{h}/sq"), list(layer._axes), f"{h}/sum_sq", keepdims=True)
    inv = g.op("Reciprocal", [g.op("Sqrt", [ss], f"{h}/norm")], f"{h}/inv")
    return g.op("Mul", [x, g.op("Min", [inv, g.scalar(1e12, f"{h}/cap")], f"{h}/inv_capped")], f"{h}/normalized")


def _rms_norm(g, layer, ins, in_kts, out_kts):
    h, ndim = layer.name, len(in_kts[0].shape)
    x = g.float_input(ins[0], h)
    ms = g.reduce("ReduceMean", g.op("Mul", [x, x], f"{h}/sq"), list(layer._axes), f"{h}/mean_sq", keepdims=True)
    rrms = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [ms, g.scalar(layer.epsilon, f"{h}/epsilon")], f"{h}/ms_eps")],
                                    f"{h}/rms")], f"{h}/rrms")
    y = g.op("Mul", [x, rrms], f"{h}/normalized")
    scale = _broadcast_param(_w(layer, layer.scale), ndim, list(layer._axes))
    return g.op("Mul", [y, g.const(scale, f"{h}/scale", key=(id(layer), "scale"))], f"{h}/scaled")


def _group_norm(g, layer, ins, in_kts, out_kts):
    """Channels in `groups` groups on their axis: each group's mean and variance over it and every
    other non-batch axis (a Reshape to (..., groups, per, ...) and back)."""
    h, a, G = layer.name, layer._axis, layer.groups
    shape = in_kts[0].shape
    nd = len(shape)
    per = shape[a] // G
    x = g.float_input(ins[0], h)
    full = g.op("Shape", [x], f"{h}/shape", dtype="int64")
    parts = [g.op("Shape", [x], f"{h}/shape_before", dtype="int64", end=a), g.ints([G, per], f"{h}/groups"),
             g.op("Shape", [x], f"{h}/shape_after", dtype="int64", start=a + 1)]
    xg = g.op("Reshape", [x, g.op("Concat", parts, f"{h}/grouped_shape", axis=0)], f"{h}/grouped")
    axes = [i for i in range(1, nd + 1) if i != a]
    mean = g.reduce("ReduceMean", xg, axes, f"{h}/mean", keepdims=True)
    d = g.op("Sub", [xg, mean], f"{h}/centered")
    var = g.reduce("ReduceMean", g.op("Mul", [d, d], f"{h}/sq"), axes, f"{h}/var", keepdims=True)
    y = g.op("Div", [d, g.op("Sqrt", [g.op("Add", [var, g.scalar(layer.epsilon, f"{h}/epsilon")], f"{h}/var_eps")],
                             f"{h}/std")], f"{h}/norm")
    bshape = (1,) * a + (G, per) + (1,) * (nd - a - 1)
    if layer.gamma is not None:
        y = g.op("Mul", [y, g.const(_w(layer, layer.gamma).reshape(bshape), f"{h}/gamma", key=(id(layer), "gamma"))],
                 f"{h}/scaled")
    if layer.beta is not None:
        y = g.op("Add", [y, g.const(_w(layer, layer.beta).reshape(bshape), f"{h}/beta", key=(id(layer), "beta"))],
                 f"{h}/shifted")
    return g.op("Reshape", [y, full], f"{h}/ungrouped")


CONVERTERS = {
    L.Dense: _dense, L.Conv1D: _conv, L.Conv2D: _conv,
    L.DepthwiseConv1D: _depthwise, L.DepthwiseConv2D: _depthwise,
    L.SeparableConv1D: _separable, L.SeparableConv2D: _separable,
    L.Conv1DTranspose: _conv_transpose, L.Conv2DTranspose: _conv_transpose,
    L.MaxPooling1D: _pool, L.MaxPooling2D: _pool, L.AveragePooling1D: _pool, L.AveragePooling2D: _pool,
    L.GlobalAveragePooling1D: _global_pool, L.GlobalAveragePooling2D: _global_pool,
    L.GlobalMaxPooling1D: _global_pool, L.GlobalMaxPooling2D: _global_pool,
    L.BatchNormalization: _batch_norm, L.LayerNormalization: _layer_norm,
    L.Activation: _activation_layer, L.ReLU: _relu_layer, L.LeakyReLU: _leaky_relu_layer, L.ELU: _elu_layer,
    L.Softmax: _softmax_layer, L.PReLU: _prelu_layer,
    L.Dropout: _identity, L.SpatialDropout1D: _identity, L.SpatialDropout2D: _identity,
    L.SpatialDropout3D: _identity, L.GaussianNoise: _identity, L.GaussianDropout: _identity,
    L.AlphaDropout: _identity, L.ActivityRegularization: _identity, L.Identity: _identity,
    L.Flatten: _flatten, L.Reshape: _reshape, L.Permute: _permute, L.RepeatVector: _repeat_vector,
    L.Add: _merge("Add"), L.Subtract: _merge("Sub"), L.Multiply: _merge("Mul"), L.Maximum: _merge("Max"),
    L.Minimum: _merge("Min"), L.Average: _merge("Add", average=True), L.Concatenate: _concatenate,
    L.Embedding: _embedding,
    L.ZeroPadding1D: _zero_padding, L.ZeroPadding2D: _zero_padding, L.ZeroPadding3D: _zero_padding,
    L.Cropping1D: _cropping, L.Cropping2D: _cropping, L.Cropping3D: _cropping,
    L.UpSampling1D: _upsampling, L.UpSampling2D: _upsampling, L.UpSampling3D: _upsampling,
    L.Rescaling: _rescaling, L.Normalization: _normalization,
    L.LSTM: _recurrent, L.GRU: _recurrent, L.SimpleRNN: _recurrent, L.Bidirectional: _bidirectional,
    L.MultiHeadAttention: _mha, L.UnitNormalization: _unit_norm, L.RMSNormalization: _rms_norm,
    L.GroupNormalization: _group_norm,
}

# layers called with several arguments: node -> (input KerasTensors in order, converter keywords)
CALL_ARGS = {L.MultiHeadAttention: _mha_call}

RNN_LAYERS = (L.LSTM, L.GRU, L.SimpleRNN)
