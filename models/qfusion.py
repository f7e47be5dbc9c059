"""Fused groups of a quantized Functional model (after `model.quantize("int8")`): a quantized
Conv2D or DepthwiseConv2D, with the ZeroPadding2D before it and the inference
BatchNormalization and capped ReLU after it, runs as one kernel (backend.quantization.fused_conv):
the normalization folded into the product's epilogue, one pass over the activations instead of
four. The Conv-BN-ReLU6 pattern of MobileNet (TFLite folds it the same way when it converts).
A MaxPooling2D after a Conv2D's group (window = strides, padding "valid": the conv-relu-pool of
the MNIST convnet) joins it: the kernel pools each window's rows before it stores them, so the
unpooled activations never reach memory.

Between two groups, the output of a group that ends in a capped ReLU (MobileNet's ReLU6: every
value in [0, cap]) is kept as unsigned bytes, value = byte * cap / 255 (ByteActivation), when
every user of it is a group that reads bytes (a DepthwiseConv2D, or a 1x1 stride-1 Conv2D): a
quarter of the memory traffic of float activations, and no per-call quantization of them. The
int8 weights, their scales and the file format are those of Keras; only how the model runs
changes. A float input of a group (from any other layer) is quantized at every call with
dynamic abs-max scales: per image for a Conv2D with a window (whose windows the int8 GEMM then
reads from the bytes: no im2col matrix), per pixel for a 1x1 stride-1 Conv2D (per image when
its group ends in a pooling), per image and channel for a DepthwiseConv2D. An image whose
values become NaN on the way is marked (bytes have no NaN) and comes out NaN.

`plan` finds the groups when a model's layers change (quantize); `run_group` decides at each call
whether a group may run fused: only in inference, with no mask and a float32 (or byte) input;
otherwise its layers run one by one as usual.
"""
import math

from .. import activations as _activations
from ..backend import dtypes
from ..backend import quantization as _q
from ..backend.tensor import Tensor
from ..layers.convolutional import Conv2D, DepthwiseConv2D, ZeroPadding2D
from ..layers.layer import _ctx, check_input_spec
from ..layers.normalization import BatchNormalization
from ..layers.pooling import MaxPooling2D
from .fusion import relu_cap


class Group:
    __slots__ = ("pad", "conv", "bn", "act", "pool", "lo", "hi", "byte_out", "extra", "kind", "nodes", "device")

    def __init__(self, pad, conv, bn, act, lo, hi, extra, kind, pool=None):
        self.pad, self.conv, self.bn, self.act, self.pool = pad, conv, bn, act, pool
        self.lo, self.hi, self.extra, self.kind = lo, hi, extra, kind
        self.byte_out = False
        self.nodes = [n for n in (pad, conv, bn, act, pool) if n is not None]

    @property
    def first(self):
        return self.nodes[0]

    @property
    def last(self):
        return self.nodes[-1]

    def reads_bytes(self):
        """Whether the group can take a ByteActivation: a depthwise convolution, or a 1x1 stride-1
        unpadded Conv2D (whose input is the product's matrix)."""
        if self.kind == "depthwise":
            return True
        if self.pool is not None:
            return False
        layer = self.conv.layer
        return self.pad is None and tuple(layer.kernel.shape[:2]) == (1, 1) and tuple(layer.strides) == (1, 1)


def _one_arg(node):
    args, kwargs = node.call_args
    return len(args) == 1 and not set(kwargs) - {"training"} and len(node.outputs) == 1 and \
        node.layer.activity_regularizer is None


def _conv_kind(layer):
    if getattr(layer, "quantization_mode", None) != "int8" or getattr(layer, "data_format", "channels_last") != "channels_last":
        return None
    if type(layer) is DepthwiseConv2D:
        return "depthwise"
    if type(layer) is Conv2D and getattr(layer, "groups", 1) == 1 and layer.padding in ("valid", "same"):
        return "conv"
    return None


def any_quantized(nodes):
    return any(_conv_kind(n.layer) is not None for n in nodes)


def model_groups(model, nodes_fn, outputs):
    """(plan's groups or None, the graph's nodes) of a Functional or Sequential model, made again
    whenever a layer changed (quantize): None while no convolution of the graph is quantized."""
    from ..layers import layer as _layer
    stamp = _layer._mutations
    cached = model.__dict__.get("_qgroups_cache")
    if cached is None or cached[0] != stamp:
        nodes = nodes_fn()
        groups = plan(nodes, outputs) if any_quantized(nodes) else None
        cached = (stamp, groups or None, nodes)
        model.__dict__["_qgroups_cache"] = cached  # not an attribute change: no new mutation
    return cached[1], cached[2]


def plan(nodes, outputs):
    """{id(first node): Group} for the fusable quantized convolutions of `nodes` (see the module
    docstring). Intermediate values of a group feed one node only and are not model outputs."""
    users = {}
    for node in nodes:
        for t in node.inputs:
            users.setdefault(id(t), []).append(node)
    output_ids = {id(t) for t in outputs}

    def sole_user(node):
        """The one node that reads `node`'s output, where that output is nothing else's."""
        y = node.outputs[0]
        after = users.get(id(y), [])
        if id(y) in output_ids or len(after) != 1:
            return None
        nxt = after[0]
        args, _ = nxt.call_args
        return nxt if _one_arg(nxt) and args[0] is y else None

    groups = {}
    producer = {id(n.outputs[0]): n for n in nodes if n.outputs}
    for node in nodes:
        layer = node.layer
        kind = _conv_kind(layer)
        if kind is None or not _one_arg(node) or node.call_args[1]:
            continue
        act_fn = getattr(layer, "activation", None)
        if act_fn is not _activations.linear and act_fn is not _activations.relu:
            continue
        # a ZeroPadding2D just before a 'valid' convolution becomes the convolution's padding
        pad, extra = None, (0, 0, 0, 0)
        src = producer.get(id(node.call_args[0][0]))
        if src is not None and type(src.layer) is ZeroPadding2D and src.layer.data_format == "channels_last" and \
                layer.padding == "valid" and _one_arg(src) and not src.call_args[1] and sole_user(src) is node:
            (t, b), (l, r) = src.layer.padding
            pad, extra = src, (t, b, l, r)
        bn = act = None
        lo, hi = -math.inf, math.inf
        if act_fn is _activations.relu:
            lo = 0.0
        else:
            nxt = sole_user(node)
            if nxt is not None and type(nxt.layer) is BatchNormalization and nxt.layer._axis == 3 and \
                    not nxt.call_args[1].get("training"):
                bn = nxt
                nxt = sole_user(nxt)
            if nxt is not None and relu_cap(nxt.layer) is not None and not nxt.call_args[1]:
                act = nxt
                lo, hi = 0.0, relu_cap(nxt.layer)
        # a MaxPooling2D after a Conv2D's group (window = strides, "valid"): pooled in the same kernel
        pool = None
        if kind == "conv":
            nxt = sole_user(act or bn or node)
            if nxt is not None and _pools_whole_windows(nxt.layer) and not nxt.call_args[1]:
                pool = nxt
        same_device = {id(n.layer._device) for n in (pad, node, bn, act, pool) if n is not None and
                       n.layer._device is not None}
        if len(same_device) > 1:
            continue
        g = Group(pad, node, bn, act, lo, hi, extra, kind, pool)
        g.device = next(iter(same_device), None)
        groups[id(g.first)] = g
    starts = {id(g.first): g for g in groups.values()}
    for g in groups.values():
        y = g.last.outputs[0]
        readers = users.get(id(y), [])
        if g.pool is None and g.lo == 0.0 and math.isfinite(g.hi) and g.hi > 0 and id(y) not in output_ids and \
                readers and \
                all(id(r) in starts and starts[id(r)].reads_bytes() and starts[id(r)].device == g.device
                    for r in readers):
            g.byte_out = True
    return groups


def _pools_whole_windows(layer):
    """A MaxPooling2D the fused kernel can take: channels last, padding "valid", strides equal to
    the window."""
    return type(layer) is MaxPooling2D and layer.data_format == "channels_last" and layer.padding == "valid" and \
        tuple(layer.strides) == tuple(layer.pool_size)


def _geometry(layer, shape, extra):
    from ..layers.quantization import _conv_geometry_shape
    kh, kw = layer.kernel.shape[:2]
    padded = (shape[0], shape[1] + extra[0] + extra[1], shape[2] + extra[2] + extra[3], shape[3])
    out_hw, pads = _conv_geometry_shape(layer, padded, kh, kw)
    return out_hw, (pads[0] + extra[0], pads[1] + extra[1], pads[2] + extra[2], pads[3] + extra[3])


def run_group(g, x):
    """The group's output (a float32 Tensor or a ByteActivation) from its input x, or None where
    its layers must run one by one: training, a mask, an input that is neither a float32 tensor
    nor bytes, another device. Checks the first layer's input spec as its call would."""
    if isinstance(x, Tensor):
        if x.dtype != dtypes.FLOAT32 or getattr(x, "_keras_mask", None) is not None or x.ndim != 4:
            return None
    elif not isinstance(x, _q.ByteActivation):
        return None
    if _ctx.training:
        return None
    for node in g.nodes:
        dev = node.layer._device
        if dev is not None and x.device is not dev:
            return None
    layer = g.conv.layer
    first = g.first.layer
    specs = first.input_spec if isinstance(first.input_spec, (list, tuple)) else [first.input_spec]
    for spec in specs[:1]:
        check_input_spec(first, spec, x.shape)
    out_hw, pads = _geometry(layer, x.shape, g.extra)
    bn = g.bn.layer if g.bn is not None else None
    step = g.hi / 255.0 if g.byte_out else 0.0
    pool = tuple(g.pool.layer.pool_size) if g.pool is not None else None
    return _q.fused_conv(x, g.kind, layer.kernel, getattr(layer, "_int8_packed", None), layer.kernel_scale,
                         layer.bias, layer.strides, layer.dilation_rate, pads, out_hw, bn=bn, lo=g.lo, hi=g.hi,
                         byte_step=step, pool=pool)
