"""`layer.quantize("int8")` / `model.quantize("int8")` (Keras 3): Dense, Conv2D,
DepthwiseConv2D and Embedding become int8 inference layers (backend/quantization.py).

What a quantized layer holds (Keras's names; the float kernel is gone):
  Dense            kernel: int8 (in, units), kernel_scale (units,), bias
  Conv2D           kernel: int8 (kh, kw, in, filters), kernel_scale (filters,), bias
  DepthwiseConv2D  kernel: int8 (kh, kw, in, dm), kernel_scale (in * dm,), bias
  Embedding        embeddings: int8 (input_dim, output_dim), embeddings_scale (input_dim,)
Scales are Keras's abs-max over the input axes of each output channel (each row for an
Embedding). Inputs are quantized at every call: Dense per row (Keras's AbsMaxQuantizer(-1), so
a quantized Dense equals Keras's bit for bit), Conv2D per output pixel's window (an im2col row),
DepthwiseConv2D per image and channel. Their configs carry Keras's QuantizedDTypePolicy
("int8_from_float32"), so a saved quantized model loads quantized. They compute no gradients:
training a quantized model raises.

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

MODES = ("int8",)


def policy_config():
    """Keras 3's serialized dtype policy of an int8 layer."""
    return {"module": "keras.dtype_policies", "class_name": "QuantizedDTypePolicy",
            "config": {"mode": "int8", "source_name": "float32"}, "registered_name": None}


def quantization_config():
    """Keras 3's serialized Int8QuantizationConfig: per-row abs-max activations, as lamina does."""
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
    if mode not in MODES:
        raise ValueError(f"{who}: the dtype policy {dtype!r} (Keras's {mode} quantization) is not supported; lamina "
                         f"quantizes to int8 only")
    return mode


def check_quantization_config(config, who):
    """Accepts Keras's default int8 configuration (what lamina computes), refuses any other."""
    if config is None:
        return None
    cfg = config.get("config", {}) if isinstance(config, dict) else None
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
                         "default int8 scheme only (abs-max weights per output channel, abs-max activations per "
                         "row): use layer.quantize('int8') or leave quantization_config None")
    return "int8"


def layer_kind(layer):
    """The quantizable kind of a layer (its class name among Dense, Conv2D with groups=1,
    DepthwiseConv2D and Embedding), or None."""
    from .core import Dense
    from .convolutional import Conv2D, DepthwiseConv2D
    from .embedding import Embedding
    for cls in (Dense, Conv2D, DepthwiseConv2D, Embedding):
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
    if mode not in MODES:
        raise ValueError(f"{who}.quantize: expected mode 'int8', received {mode!r} (lamina quantizes to int8 only)")
    kind = layer_kind(layer)
    if kind is None:
        raise NotImplementedError(f"{who}.quantize: this layer has no quantized form; lamina quantizes Dense, "
                                  "Conv2D, DepthwiseConv2D and Embedding")
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
    float_name = "embeddings" if kind == "Embedding" else "kernel"
    w = getattr(layer, float_name)
    axis = {"Dense": 0, "Conv2D": (0, 1, 2), "DepthwiseConv2D": (0, 1), "Embedding": -1}[kind]
    q, scale = _q.abs_max_quantize(w, axis)
    base = w.path.rsplit("/", 1)[0] if "/" in w.path else layer.name
    correction = None
    if input_mean is not None and kind in ("Conv2D", "DepthwiseConv2D"):
        correction = _bias_correction(kind, w.numpy(), q, scale.numpy(), input_mean)
    iw = _q.Int8Weight(q, float_name, path=f"{base}/{float_name}", device=w.device)
    with device_scope(w.device.name):
        sv = Variable(ops.reshape(scale, (-1,)), trainable=False, name=f"{float_name}_scale")
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
    object.__setattr__(layer, float_name, iw)
    object.__setattr__(layer, f"{float_name}_scale", sv)
    object.__setattr__(layer, "quantization_mode", mode)
    if kind == "Dense":
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


_CALLS = {"Dense": _dense_call, "Conv2D": _conv2d_call, "DepthwiseConv2D": _depthwise_call,
          "Embedding": _embedding_call}
