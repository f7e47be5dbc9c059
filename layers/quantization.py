"""`layer.quantize("int8")` / `model.quantize("int8")` (Keras 3): Dense, EinsumDense, Conv2D,
DepthwiseConv2D and Embedding become int8 inference layers (backend/quantization.py).
MultiHeadAttention (and GroupedQueryAttention) are quantized through their EinsumDense
projections, as in Keras.

What a quantized layer holds (Keras's names and order of saving; the float kernel is gone):
  Dense            kernel: int8 (in, units), kernel_scale (units,), bias
  EinsumDense      kernel: int8 (the float kernel's shape), kernel_scale (shaped like the output,
                   the batch and reduced axes 1: "abc,cd->abd" gives (1, 1, d)), bias
  Conv2D           kernel: int8 (kh, kw, in, filters), kernel_scale (filters,), bias
  DepthwiseConv2D  kernel: int8 (kh, kw, in, dm), kernel_scale (in * dm,), bias
  Embedding        embeddings: int8 (input_dim, output_dim), embeddings_scale (input_dim,)
Scales are Keras's abs-max over the input axes of each output channel (each row for an
Embedding; the kernel's reduced axes, those not in the output, for an EinsumDense). Inputs are
quantized at every call: Dense per row (Keras's AbsMaxQuantizer(-1), so a quantized Dense
equals Keras's bit for bit), EinsumDense over the input's reduced axes (Keras's
AbsMaxQuantizer(axis=reduced axes); the int8 einsum accumulates exactly, as Keras's int32 one),
Conv2D per output pixel's window (an im2col row), DepthwiseConv2D per image and channel. A
quantized layer's `dtype_policy` is Keras's QuantizedDTypePolicy "int8_from_<its policy>"
("int8_from_float32"), and its config carries it, so a saved quantized model loads quantized,
with the same policy. They compute no gradients: training a quantized model raises.

`quantize("int4")` (Keras 3.15's weight-only int4, Dense, EinsumDense and Embedding only; see
layers/quantization_int4.py): two 4-bit values per int8 byte, per-group scales and zero points
(Keras's default block size 128, policy Int4DTypePolicy "int4/128_from_float32"), or per-channel
scales for a layer loaded with "int4/-1_from_..." (or the legacy "int4_from_..."). The other
layers have no int4 form: `layer.quantize("int4")` raises, `model.quantize("int4")` leaves them
float, as Keras. float8, GPTQ and AWQ are refused.

`model.quantize` (models/quantize.py) adds two things a layer alone cannot:
- Bias correction (data-free, Nagel et al. 2019) of a convolution whose input is a
  BatchNormalization's output (through a ReLU, capped or not, and zero padding): the rounded
  weights' expected error, sum((q / scale - w) * E[input channel]) with E[...] from the
  normalization's beta and gamma, is taken off the layer's bias (made, with use_bias=True, where
  the layer had none; it is saved and loaded as the bias). MobileNet 0.25's features move 4x
  less than without it. Dense layers are left exactly as Keras quantizes them.
- Inside a Functional or Sequential model, a quantized convolution with the ZeroPadding2D before
  it and the BatchNormalization and ReLU after it (and, for a Conv2D, the MaxPooling2D after
  those) runs as one fused kernel in inference, with byte activations between such groups
  (models/qfusion.py)."""
import types

import numpy as np

from ..backend import quantization as _q
from ..backend.tensor import Variable
from ..backend.device import device as device_scope
from .. import ops

MODES = ("int8", "int4")


SUPPORTED = "Dense, EinsumDense, Conv2D, DepthwiseConv2D and Embedding"
INT4_KINDS = ("Dense", "EinsumDense", "Embedding")
INT4_SUPPORTED = "Dense, EinsumDense and Embedding"
INT4_DEFAULT_BLOCK = 128   # Keras 3.15's Int4QuantizationConfig() default block_size


def parse_mode(mode, who="quantize"):
    """(mode, int4 block size) of a quantization mode: "int8" -> ("int8", None); "int4" (Keras's
    default config, block_size 128) -> ("int4", 128); "int4/<n>" (a saved Int4DTypePolicy's
    mode) -> ("int4", n), "int4/-1" -> ("int4", None) (per-channel). Else a ValueError."""
    if mode == "int8":
        return "int8", None
    if mode == "int4":
        return "int4", INT4_DEFAULT_BLOCK
    if isinstance(mode, str) and mode.startswith("int4/"):
        try:
            bs = int(mode[5:])
        except ValueError:
            bs = 0
        if bs == -1:
            return "int4", None
        if bs > 0:
            return "int4", bs
    raise ValueError(f"{who}: expected mode 'int8' or 'int4', received {mode!r} (lamina quantizes to int8 and int4 "
                     "only; float8, GPTQ and AWQ are not supported)")


def policy_config(source_name="float32"):
    """Keras 3's serialized dtype policy of an int8 layer quantized from policy `source_name`."""
    return {"module": "keras.dtype_policies", "class_name": "QuantizedDTypePolicy",
            "config": {"mode": "int8", "source_name": source_name}, "registered_name": None}


def policy_source(dtype):
    """The source policy name of a quantized policy ("float32" for "int8_from_float32" or its
    QuantizedDTypePolicy config), None when it names none (the global policy then)."""
    if isinstance(dtype, dict):
        cfg = dtype.get("config", {}) or {}
        if cfg.get("source_name"):
            return str(cfg["source_name"])
        dtype = cfg.get("name", dtype.get("name"))
    elif not isinstance(dtype, str) and hasattr(dtype, "name"):
        dtype = dtype.name
    if isinstance(dtype, str) and "_from_" in dtype:
        return dtype.split("_from_", 1)[1]
    return None


def set_quantized_policy(layer, mode):
    """Keras's last step of `quantize`: the layer's policy becomes "<mode>_from_<its policy>"
    ("int4/<block size>_from_<its policy>" for int4, -1 for per-channel, as Keras)."""
    from ..dtype_policies import quantized_policy
    pol = layer._dtype_policy
    if getattr(pol, "quantization_mode", None) is None:
        layer._dtype_policy = quantized_policy(mode, pol.name)


def quantization_config(layer=None):
    """Keras 3's serialized quantization config of a quantized layer: Int8QuantizationConfig
    (per-row abs-max activations, as lamina does), or for an int4 layer Int4QuantizationConfig
    (weight-only, its block size)."""
    if layer is not None and getattr(layer, "quantization_mode", None) == "int4":
        bs = layer._int4.block
        return {"module": "keras.quantizers", "class_name": "Int4QuantizationConfig",
                "config": {"weight_quantizer": None, "activation_quantizer": None,
                           "block_size": -1 if bs is None else bs}, "registered_name": None}
    return {"module": "keras.quantizers", "class_name": "Int8QuantizationConfig",
            "config": {"weight_quantizer": None, "activation_quantizer": {
                "module": "keras.quantizers", "class_name": "AbsMaxQuantizer",
                "config": {"value_range": [-127, 127], "epsilon": 1e-07, "output_dtype": "int8"},
                "registered_name": None}}, "registered_name": None}


def _policy_mode(dtype):
    """The quantization mode a dtype policy names (Keras's "int8_from_float32" name, or its
    QuantizedDTypePolicy config with "mode"), else None."""
    if isinstance(dtype, dict):
        cfg = dtype.get("config", {}) or {}
        if "Quantized" in str(dtype.get("class_name", "")) or "mode" in cfg:
            return str(cfg.get("mode") or str(cfg.get("name", "")).split("_from_")[0])
        dtype = cfg.get("name", dtype.get("name"))
    elif not isinstance(dtype, str) and hasattr(dtype, "name"):
        dtype = dtype.name
    if isinstance(dtype, str) and "_from_" in dtype:
        return dtype.split("_from_")[0]
    return None


def is_quantized_policy(dtype):
    return _policy_mode(dtype) is not None


def check_policy(dtype, who):
    """For a layer made from a config: the quantization mode of a quantized policy (int8), or a
    clear error for Keras's other modes."""
    mode = _policy_mode(dtype)
    if mode == "int4":   # Keras's legacy QuantizedDTypePolicy "int4_from_...": per-channel
        return "int4/-1"
    try:
        parse_mode(mode, who)
    except ValueError:
        raise ValueError(f"{who}: the dtype policy {dtype!r} (Keras's {mode} quantization) is not supported; lamina "
                         f"quantizes to int8 and int4 only") from None
    return mode


def check_quantization_config(config, who):
    """Accepts Keras's default int8 configuration (what lamina computes), refuses any other."""
    if config is None:
        return None
    cfg = config.get("config", {}) if isinstance(config, dict) else None
    if isinstance(config, dict) and config.get("class_name") == "Int4QuantizationConfig" and cfg is not None and \
            cfg.get("weight_quantizer") is None and cfg.get("activation_quantizer") is None:
        bs = cfg.get("block_size")   # Keras: a config without one is per-channel (older files)
        if bs is None or bs == -1:
            return "int4/-1"
        if isinstance(bs, int) and not isinstance(bs, bool) and bs > 0:
            return f"int4/{bs}"
    ok = isinstance(config, dict) and config.get("class_name") == "Int8QuantizationConfig" and cfg is not None
    if ok:
        wq, aq = cfg.get("weight_quantizer"), cfg.get("activation_quantizer")
        ok = wq is None or (wq.get("class_name") == "AbsMaxQuantizer" and
                            wq.get("config", {}).get("value_range", [-127, 127]) in ([-127, 127], (-127, 127)))
        ok = ok and aq is not None and aq.get("class_name") == "AbsMaxQuantizer" and \
            list(aq.get("config", {}).get("value_range", [-127, 127])) == [-127, 127] and \
            float(aq.get("config", {}).get("epsilon", 1e-7)) == 1e-7
    if not ok:
        raise ValueError(f"{who}: quantization_config={config!r} is not supported; lamina quantizes with Keras's "
                         "default int8 scheme (abs-max weights per output channel, abs-max activations per row) and "
                         "its weight-only int4 scheme (Int4QuantizationConfig without custom quantizers): use "
                         "layer.quantize('int8') / quantize('int4') or leave quantization_config None")
    return "int8"


def layer_kind(layer):
    """The quantizable kind of a layer (its class name among Dense, EinsumDense, Conv2D with
    groups=1, DepthwiseConv2D and Embedding), or None."""
    from .core import Dense
    from .convolutional import Conv2D, DepthwiseConv2D
    from .einsum_dense import EinsumDense
    from .embedding import Embedding
    for cls in (Dense, EinsumDense, Conv2D, DepthwiseConv2D, Embedding):
        if isinstance(layer, cls):
            if cls is Conv2D and getattr(layer, "groups", 1) != 1:
                return None   # a grouped convolution stays float32
            return cls.__name__
    return None


def supports(layer):
    return layer_kind(layer) is not None


def quantize_layer(layer, mode, input_mean=None):
    """Quantizes a built layer in place (see the module docstring). input_mean: the expected
    value of each input channel of a convolution, for its bias correction (quantize_model)."""
    who = f"{type(layer).__name__} '{layer.name}'"
    mode, block = parse_mode(mode, f"{who}.quantize")
    kind = layer_kind(layer)
    if kind is None:
        raise NotImplementedError(f"{who}.quantize: this layer has no quantized form; lamina quantizes {SUPPORTED}")
    if mode == "int4" and kind not in INT4_KINDS:
        raise NotImplementedError(f"{who}.quantize: this layer has no int4 form (as in Keras, int4 quantizes "
                                  f"{INT4_SUPPORTED}); use quantize('int8')")
    if getattr(layer, "quantization_mode", None) is not None:
        raise ValueError(f"{who} is already quantized ({layer.quantization_mode}); quantize the float model once")
    if not layer.built:
        raise ValueError(f"{who}.quantize: the layer is not built yet; call it on data (or build the model) first")
    if getattr(layer, "lora_enabled", False):
        raise ValueError(f"{who}.quantize: the layer has LoRA weights; merge or remove them before quantizing")
    if kind in ("Conv2D", "DepthwiseConv2D"):
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise ValueError(f"{who}.quantize: only channels_last convolutions are quantized; received data_format="
                             f"{layer.data_format!r}")
        if kind == "Conv2D" and getattr(layer, "padding", "valid") == "causal":
            raise ValueError(f"{who}.quantize: causal padding has no quantized form")
    if mode == "int4":
        from .quantization_int4 import quantize_int4
        return quantize_int4(layer, kind, block, who)
    float_name = "embeddings" if kind == "Embedding" else "kernel"
    einsum = None
    if kind == "EinsumDense":
        einsum = EinsumInfo(layer.equation, layer.input_spec.ndim, tuple(layer._kernel.shape), who)
        w = layer._kernel
        axis = tuple(einsum.kernel_reduced_axes)
    else:
        w = getattr(layer, float_name)
        axis = {"Dense": 0, "Conv2D": (0, 1, 2), "DepthwiseConv2D": (0, 1), "Embedding": -1}[kind]
    q, scale = _q.abs_max_quantize(w, axis)
    if einsum is not None:  # Keras's kernel_scale layout: like the output, the reduced axes 1
        scale = einsum.scale_for_quant(scale.numpy())
    base = w.path.rsplit("/", 1)[0] if "/" in w.path else layer.name
    correction = None
    if input_mean is not None and kind in ("Conv2D", "DepthwiseConv2D"):
        correction = _bias_correction(kind, w.numpy(), q, scale.numpy(), input_mean)
    iw = _q.Int8Weight(q, float_name, path=f"{base}/{float_name}", device=w.device)
    with device_scope(w.device.name):
        sv = Variable(scale if einsum is not None else ops.reshape(scale, (-1,)), trainable=False,
                      name=f"{float_name}_scale")
    sv._path = f"{base}/{float_name}_scale"
    own = layer._own_weights
    own[:] = [v for v in own if v is not w]
    if correction is not None:
        if layer.bias is None:  # the correction becomes the layer's bias (saved, loaded as one)
            with device_scope(w.device.name):
                b = Variable(-correction, name="bias")
            b._path = f"{base}/bias"
            own.append(b)
            layer.use_bias = True
            object.__setattr__(layer, "bias", b)
        else:
            layer.bias.assign(layer.bias.numpy() - correction)
    own += [iw, sv]  # Keras's order: the kernel made anew, after the bias
    bias = getattr(layer, "bias", None) if kind != "Embedding" else None
    layer._quantized_variables = [iw] + ([bias] if bias is not None else []) + [sv]  # as Keras saves them
    layer._always_frozen.update({id(iw), id(sv)})
    object.__setattr__(layer, "_kernel" if kind == "EinsumDense" else float_name, iw)
    object.__setattr__(layer, f"{float_name}_scale", sv)
    object.__setattr__(layer, "quantization_mode", mode)
    set_quantized_policy(layer, mode)
    if kind == "EinsumDense":
        layer._int8_einsum = einsum.bind(iw)
    elif kind == "Dense":
        layer._int8_packed = _q.PackedInt8(iw, q.shape[0], q.shape[1])
    elif kind == "Conv2D":
        layer._int8_packed = _q.PackedInt8(iw, int(np.prod(q.shape[:3])), q.shape[3])
    layer.call = types.MethodType(_CALLS[kind], layer)


def _bias_correction(kind, w, q, scale, mean):
    """The expected error of a convolution's rounded weights, per output channel (Nagel et al.,
    "Data-Free Quantization", 2019): sum over the window and input channels of
    (q / scale - w) * E[input channel]. Subtracted from the bias, it removes the systematic part
    of the error, most of it after a ReLU (inputs with large means): MobileNet 0.25's features
    move 4x less (benchmarks/README.md)."""
    dq = q.astype(np.float64) / scale.astype(np.float64) - w.astype(np.float64)
    mean = np.asarray(mean, np.float64)
    if kind == "Conv2D":
        e = np.einsum("hwio,i->o", dq, mean)
    else:  # (kh, kw, c, dm): output channel c * dm + m reads input channel c
        e = np.einsum("hwcm,c->cm", dq, mean).reshape(-1)
    return e.astype(np.float32)


def _finish(layer, y):
    from .. import activations as _activations
    act = getattr(layer, "activation", None)
    return act(y) if act is not None and act is not _activations.linear else y


def _fused_relu(layer):
    """Whether the layer's activation is the plain relu, which the int8 kernels apply themselves."""
    from .. import activations as _activations
    return getattr(layer, "activation", None) is _activations.relu


def _dense_call(self, inputs):
    if _fused_relu(self):
        return _q.qdense(inputs, self._int8_packed, self.kernel_scale, self.bias, relu=True)
    return _finish(self, _q.qdense(inputs, self._int8_packed, self.kernel_scale, self.bias))


def _conv_geometry(self, x, kh, kw):
    return _conv_geometry_shape(self, x.shape, kh, kw)


def _conv_geometry_shape(self, shape, kh, kw):
    """(output height, width), (top, bottom, left, right) pads of the layer on an input shape."""
    from ..backend.convolution import _out_and_pads
    padding = self.padding
    oh, (pt, pb) = _out_and_pads(shape[1], kh, self.strides[0], self.dilation_rate[0], padding, self.name, shape,
                                 "kernel")
    ow, (pl, pr) = _out_and_pads(shape[2], kw, self.strides[1], self.dilation_rate[1], padding, self.name, shape,
                                 "kernel")
    return (oh, ow), (pt, pb, pl, pr)


def _conv2d_call(self, inputs):
    x = ops.convert_to_tensor(inputs)
    kh, kw = self.kernel.shape[:2]
    out_hw, pads = _conv_geometry(self, x, kh, kw)
    relu = _fused_relu(self)
    y = _q.qconv2d(x, self._int8_packed, self.kernel.shape, self.kernel_scale, self.bias, self.strides,
                   self.dilation_rate, pads, out_hw, relu=relu)
    return y if relu else _finish(self, y)


def _depthwise_call(self, inputs):
    x = ops.convert_to_tensor(inputs)
    kh, kw = self.kernel.shape[:2]
    out_hw, pads = _conv_geometry(self, x, kh, kw)
    y = _q.qdepthwise2d(x, self.kernel, self.kernel_scale, self.bias, self.strides, self.dilation_rate, pads, out_hw)
    return _finish(self, y)


def _embedding_call(self, inputs):
    try:
        return _q.qembedding(inputs, self.embeddings, self.embeddings_scale)
    except ValueError as e:
        raise ValueError(f"Embedding '{self.name}' (input_dim={self.input_dim}): {e}") from None


class EinsumInfo:
    """How an EinsumDense equation is quantized, as Keras's `_analyze_quantization_info`: the
    kernel's and the input's reduced axes (labels not in the output), the kernel_scale layout,
    and, when the equation is a matrix product (no label in the input, the kernel and the output
    at once), the transposes that make it one (M, K) x (K, N) int8 product for backend qdense."""

    def __init__(self, equation, ndim, kernel_shape, who):
        import re
        import string
        eq = re.sub(r"\.\.\.", "0", equation)
        m = re.fullmatch("([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)", eq)
        left = re.fullmatch("0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)", eq)
        right = re.fullmatch("([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0", eq)
        m = m or left or right
        if m is None:
            raise ValueError(f"{who}.quantize: invalid einsum equation {equation!r}")
        ins, ws, outs = m.groups()
        if left or right:  # the ellipsis's dimensions get labels of their own, as in Keras
            free = sorted(set(string.ascii_letters) - set(ins) - set(ws) - set(outs))
            for i in range(ndim - len(ins)):
                ins, outs = (free[i] + ins, free[i] + outs) if left else (ins + free[i], outs + free[i])
        self.equation = f"{ins},{ws}->{outs}"
        self.input_spec, self.weight_spec, self.output_spec = ins, ws, outs
        self.kernel_shape = tuple(kernel_shape)
        self.input_reduced_axes = [i for i, c in enumerate(ins) if c not in outs]
        self.kernel_reduced_axes = [i for i, c in enumerate(ws) if c not in outs]
        self.kernel_expand_axes = [i for i, c in enumerate(outs) if c not in ws]
        self.kernel_transpose_axes = [ws.find(c) for c in outs if c in ws]
        self.kernel_squeeze_axes = []
        index = None
        for ori in self.kernel_reduced_axes:   # Keras's bookkeeping, step for step
            if self.kernel_expand_axes:
                index = self.kernel_expand_axes.pop(0)
            else:
                self.kernel_squeeze_axes.append(ori)
            if index is None:
                raise NotImplementedError(f"{who}.quantize: equation {equation!r} has no int8 form (its kernel "
                                          "has no output label the input lacks)")
            self.kernel_transpose_axes.insert(index, ori)
        # the matrix-product form: rows = the input's kept labels, K = the reduced labels (in the
        # kernel's order), N = the kernel's output labels
        red = [c for c in ws if c not in outs]
        kept = [c for c in ins if c in outs]
        kout = [c for c in ws if c in outs]
        self.matmul = (sorted(red) == sorted(c for c in ins if c not in outs) and not set(kept) & set(kout)
                       and sorted(kept + kout) == sorted(outs))
        if self.matmul:
            self.x_perm = [ins.index(c) for c in kept + red]
            self.w_perm = [ws.index(c) for c in red + kout]
            mid = kept + kout
            self.y_perm = [mid.index(c) for c in outs]
            self.K = int(np.prod([kernel_shape[ws.index(c)] for c in red], dtype=np.int64))
            self.N = int(np.prod([kernel_shape[ws.index(c)] for c in kout], dtype=np.int64))
            self.kout_shape = tuple(kernel_shape[ws.index(c)] for c in kout)

    def scale_for_quant(self, scale):
        """The kernel's scale (kernel-shaped, the reduced axes 1) in Keras's kernel_scale layout."""
        scale = np.transpose(scale, self.kernel_transpose_axes)
        if self.kernel_expand_axes:
            scale = np.expand_dims(scale, tuple(self.kernel_expand_axes))
        if self.kernel_squeeze_axes:
            scale = np.squeeze(scale, tuple(self.kernel_squeeze_axes))
        return scale

    def scale_for_dequant(self, scale):
        """kernel_scale back in the kernel's layout (the reduced axes 1), with lamina ops."""
        if self.kernel_squeeze_axes:
            scale = ops.expand_dims(scale, tuple(self.kernel_squeeze_axes))
        if self.kernel_expand_axes:
            scale = ops.squeeze(scale, tuple(self.kernel_expand_axes))
        reverse = sorted(range(len(self.kernel_transpose_axes)), key=self.kernel_transpose_axes.__getitem__)
        return ops.transpose(scale, reverse)

    def bind(self, weight):
        """The state a quantized layer's call reads: for the matrix-product form, the packed int8
        (K, N) kernel (a transposed copy when the kernel's axes are not already in that order,
        remade when the weight is assigned)."""
        self.weight = weight
        if self.matmul:
            if self.w_perm == sorted(self.w_perm):
                self.packed_weight = weight
            else:
                self.packed_weight = _q.Int8Weight(np.transpose(weight.numpy(), self.w_perm), "kernel_kn",
                                                   device=weight.device)
                self._seen = weight.version
            self.packed = _q.PackedInt8(self.packed_weight, self.K, self.N)
        return self

    def get_packed(self):
        if self.packed_weight is not self.weight and self._seen != self.weight.version:
            self.packed_weight.assign(np.transpose(self.weight.numpy(), self.w_perm))
            self._seen = self.weight.version
        return self.packed


def _einsum_call(self, inputs):
    info = self._int8_einsum
    x = ops.convert_to_tensor(inputs)
    if info.matmul:   # qdense: the input quantized per row of (M, K), which is Keras's reduced-axes abs-max
        xt = ops.transpose(x, info.x_perm) if info.x_perm != sorted(info.x_perm) else x
        lead = tuple(xt.shape[:len(xt.shape) - len(info.input_reduced_axes)])
        x2 = ops.reshape(xt, (-1, info.K))
        w_scale = ops.reshape(ops.transpose(info.scale_for_dequant(self.kernel_scale), info.w_perm), (-1,))
        y = _q.qdense(x2, info.get_packed(), w_scale)
        y = ops.reshape(y, lead + info.kout_shape)
        if info.y_perm != sorted(info.y_perm):
            y = ops.transpose(y, info.y_perm)
    else:             # the general form: int8 values in float32 einsums, exact (see _exact_einsum)
        _q._inference_only("qeinsum", x)
        x = _q._float_input("qeinsum", x)
        axes = tuple(info.input_reduced_axes)
        x_scale = ops.divide(127.0, ops.add(ops.max(ops.abs(x), axis=axes, keepdims=True), 1e-7))
        qx = ops.clip(ops.round(ops.multiply(x, x_scale)), -127.0, 127.0)
        acc = _exact_einsum(info.equation, qx, info.weight.numpy(),
                           int(np.prod([x.shape[i] for i in axes], dtype=np.int64)))
        x_scale = _input_scale_layout(info, x_scale)
        y = ops.divide(acc, ops.multiply(x_scale, self.kernel_scale))
    if self.bias is not None:
        y = ops.add(y, self.bias)
    return _finish(self, y)


def _input_scale_layout(info, scale):
    """The input's scale (the reduced axes kept as 1) laid out against the output, as Keras's
    `_adjust_scale_for_quant(scale, "input")`."""
    ins, outs = info.input_spec, info.output_spec
    expand = [i for i, c in enumerate(outs) if c not in ins]
    transpose = [ins.find(c) for c in outs if c in ins]
    squeeze = []
    index = None
    for ori in info.input_reduced_axes:
        if expand:
            index = expand.pop(0)
        else:
            squeeze.append(ori)
        transpose.insert(index if index is not None else len(transpose), ori)
    scale = ops.transpose(scale, transpose)
    if expand:
        scale = ops.expand_dims(scale, tuple(expand))
    if squeeze:
        scale = ops.squeeze(scale, tuple(squeeze))
    return scale


def _exact_einsum(equation, qx, qw, k_total):
    """einsum(equation, qx, qw) of int8 values (qx a float32 tensor of them, qw an int8 array),
    equal to Keras's int32 einsum cast to float32: float32 sums of integer products are exact
    below 2**24, which holds for up to 1040 products of +-127 * +-127; beyond, the kernel is
    split as 16 * high + low (high in [-8, 7], low in [0, 15]), whose sums are exact up to 16513
    products, and 16 * A + B rounds once, as the cast of the exact integer does."""
    if k_total * 127 * 127 < 2 ** 24:
        return ops.einsum(equation, qx, ops.convert_to_tensor(qw.astype(np.float32)))
    if k_total * 127 * 8 >= 2 ** 24:
        raise NotImplementedError(f"qeinsum: a reduction over {k_total} values is too long for lamina's exact "
                                  "int8 einsum")
    w = qw.astype(np.int32)
    low = np.bitwise_and(w, 15)
    high = (w - low) // 16
    a = ops.einsum(equation, qx, ops.convert_to_tensor(high.astype(np.float32)))
    b = ops.einsum(equation, qx, ops.convert_to_tensor(low.astype(np.float32)))
    return ops.add(ops.multiply(a, 16.0), b)


_CALLS = {"Dense": _dense_call, "EinsumDense": _einsum_call, "Conv2D": _conv2d_call, "DepthwiseConv2D": _depthwise_call,
          "Embedding": _embedding_call}
