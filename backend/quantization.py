"""int8 quantized inference (Keras 3's `quantize("int8")`): int8 weights with per-output-channel
scales, int8 activations with dynamic scales, int32 accumulation (csrc/cpu/qgemm.cpp,
csrc/cpu/quantize.cpp).

Keras's scheme (keras.quantizers.abs_max_quantize), for weights along the input axes and for
activations along their last axis at every call:
    scale = 127 / (max |x| + 1e-7);  q = clip(round_half_even(x * scale), -127, 127)
and a quantized Dense computes float(qx @ qw) / (w_scale * x_scale) + bias, exactly as Keras.

An int8 weight is an `Int8Weight`: it has a variable's face for saving and loading (name, path,
shape, dtype "int8", numpy(), assign(), trainable False, and np.asarray / convert_to_numpy give
its int8 array, as a Keras int8 variable's) but is not a float tensor: an op given it sees its
integer values (an integer tensor, as Keras's ops see an int8 variable), never float weights;
the quantized ops read it through its packed form."""
import numpy as np

from . import dtypes
from .autodiff import needs_grad
from .device import current_device
from .device import device as _device_scope
from .tensor import Tensor, convert_to_tensor, empty

_I8 = 4  # csrc DType I8


def abs_max_quantize(x, axis):
    """(int8 numpy array, float32 scale Tensor with the reduced axes kept) of a float tensor,
    by Keras's abs-max formula along `axis` (an int or a tuple), computed with lamina ops."""
    from . import math as _m
    x = convert_to_tensor(x)
    scale = _m.divide(127.0, _m.add(_m.max(_m.abs(x), axis=axis, keepdims=True), 1e-7))
    q = _m.clip(_m.round(_m.multiply(x, scale)), -127.0, 127.0)
    return q.numpy().astype(np.int8), scale


class Int8Weight:
    """A quantized weight: int8 values in an int8 device buffer (see the module docstring)."""

    trainable = False
    constraint = None
    dtype = "int8"

    def __init__(self, value, name, path=None, device=None):
        a = self._check(value, None, name)
        self.device = device if device is not None else current_device()
        self.shape = tuple(a.shape)
        self.name = name
        self._path = path or name
        self.version = 0
        self._buf = self.device.from_numpy(np.ascontiguousarray(a))

    @property
    def path(self):
        return self._path

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self):
        return len(self.shape)

    def _check(self, value, shape, name):
        a = value.numpy() if isinstance(value, (Tensor, Int8Weight)) else np.asarray(value)
        if a.dtype.kind not in "iub":
            if a.dtype.kind == "f" and a.size and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
                pass  # integral floats (e.g. from a file written by a float conversion)
            else:
                raise TypeError(f"int8 weight '{name}': expected integer values in [-128, 127], received an array of "
                                f"dtype {a.dtype}; quantized weights are set from their int8 values")
        if a.size and (a.min() < -128 or a.max() > 127):
            raise ValueError(f"int8 weight '{name}': values must lie in [-128, 127], received the range "
                             f"[{a.min()}, {a.max()}]")
        if shape is not None and tuple(a.shape) != tuple(shape):
            raise ValueError(f"int8 weight '{name}': expected a value of shape {tuple(shape)}, received shape "
                             f"{tuple(a.shape)}")
        return a.astype(np.int8)

    def numpy(self):
        return self.device.kernels.to_numpy(self._buf, list(self.shape))

    def __array__(self, dtype=None, copy=None):
        """np.asarray(weight): the int8 values (a copy), cast to `dtype` when given."""
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def assign(self, value):
        a = self._check(value, self.shape, self.name)
        self.device.kernels.copy(self.device.from_numpy(np.ascontiguousarray(a)), self._buf)
        self.version += 1
        return self

    def __repr__(self):
        return f"<Int8Weight '{self.path}' shape={self.shape}>"


class PackedInt8:
    """The packed panels and column sums of an int8 (K, N) weight matrix (the (kh, kw, in, out)
    kernel of a convolution read as (kh*kw*in, out)), remade when the weight is assigned."""

    def __init__(self, weight, K, N):
        self.weight, self.K, self.N = weight, int(K), int(N)
        self._version = None

    def get(self):
        w = self.weight
        if self._version != w.version:
            k = w.device.kernels
            self.packed = w.device.buffer(int(k.qgemm_packed_bytes(self.K, self.N)), _I8)
            self.colsum = w.device.buffer(self.N, dtypes.CODES[dtypes.INT32])
            k.qgemm_pack(w._buf, self.K, self.N, self.packed, self.colsum)
            self._version = w.version
        return self.packed, self.colsum


def _inference_only(op, *tensors, mode="int8"):
    if needs_grad(*tensors):
        raise RuntimeError(f"{op}: a quantized ({mode}) layer computes no gradients: it is for inference "
                           "(predict, evaluate). Train the float model, then quantize it.")


def _float_input(op, x):
    x = convert_to_tensor(x)
    if x.dtype != dtypes.FLOAT32:
        raise TypeError(f"{op}: expected a float32 input, received {x.dtype} with shape {x.shape}")
    return x


def qdense(x, packed, w_scale, bias=None, relu=False):
    """x (..., K) -> (..., N): the quantized Dense product (see the module docstring); `relu`
    applies max(., 0) in the same pass."""
    op = "qdense"
    x = _float_input(op, x)
    _inference_only(op, x)
    K, N = packed.K, packed.N
    if not x.shape or x.shape[-1] != K:
        raise ValueError(f"{op}: the input's last dimension must be {K} (the kernel's input size), received input "
                         f"shape {x.shape}")
    M = int(np.prod(x.shape[:-1], dtype=np.int64))
    out = empty(x.shape[:-1] + (N,), dtypes.FLOAT32, x.device)
    pk, cs = packed.get()
    x.device.kernels.qmatmul(x._buf, M, K, N, pk, cs, w_scale._buf, bias._buf if bias is not None else None, out._buf,
                             bool(relu))
    return out


def qconv2d(x, packed, kernel_shape, w_scale, bias, strides, dilation, pads, out_hw, relu=False):
    """Quantized 2-D convolution, channels-last: x (n, h, w, c) -> (n, oh, ow, out); `relu`
    applies max(., 0) in the same pass."""
    op = "qconv2d"
    x = _float_input(op, x)
    _inference_only(op, x)
    out_shape = (x.shape[0],) + tuple(out_hw) + (kernel_shape[-1],)
    out = empty(out_shape, dtypes.FLOAT32, x.device)
    pk, cs = packed.get()
    x.device.kernels.qconv2d_forward(x._buf, list(x.shape), list(kernel_shape), pk, cs, w_scale._buf,
                                     bias._buf if bias is not None else None, out._buf, list(out_shape),
                                     list(strides), list(dilation), list(pads), bool(relu))
    return out


def qdepthwise2d(x, weight, w_scale, bias, strides, dilation, pads, out_hw):
    """Quantized depthwise 2-D convolution, channels-last: x (n, h, w, c) -> (n, oh, ow, c * dm)."""
    op = "qdepthwise2d"
    x = _float_input(op, x)
    _inference_only(op, x)
    out_shape = (x.shape[0],) + tuple(out_hw) + (weight.shape[2] * weight.shape[3],)
    out = empty(out_shape, dtypes.FLOAT32, x.device)
    x.device.kernels.qdepthwise2d(x._buf, list(x.shape), weight._buf, list(weight.shape), w_scale._buf,
                                  bias._buf if bias is not None else None, out._buf, list(out_shape), list(strides),
                                  list(dilation), list(pads))
    return out


def qembedding(ids, table, scale):
    """Rows `ids` of an int8 table (V, D), each divided by its scale (V,): (..., D) float32."""
    op = "qembedding"
    ids = convert_to_tensor(ids)
    if not dtypes.is_int(ids.dtype):
        from .math import cast
        ids = cast(ids, "int32")
    V, D = table.shape
    out = empty(ids.shape + (D,), dtypes.FLOAT32, table.device)
    table.device.kernels.qembedding(table._buf, V, D, scale._buf, ids._buf, out._buf)
    return out


# ---- fused groups (models/qfusion.py) --------------------------------------------------------------

class ByteActivation:
    """Activations a fused quantized group wrote as unsigned bytes: value = byte * step, the output
    of a group that ends in a capped ReLU (range [0, cap], step cap / 255). Lives only inside a
    quantized Functional model's call, between two fused groups; never returned to a caller.
    `flags` (int32, one per image) marks the images whose values became NaN on the way."""
    __slots__ = ("_buf", "shape", "step", "device", "flags")

    def __init__(self, shape, step, device, flags):
        self.shape, self.step, self.device, self.flags = tuple(shape), float(step), device, flags
        self._buf = device.buffer(int(np.prod(self.shape, dtype=np.int64)), _I8)


def to_float(x):
    """The float32 Tensor of a ByteActivation (the flagged images NaN): for a layer that is not
    a fused group reading one (the plan avoids it; kept for safety)."""
    from .tensor import convert_to_tensor as _ct
    a = x.device.kernels.to_numpy(x._buf, list(x.shape)).view(np.uint8).astype(np.float32) * np.float32(x.step)
    if x.flags is not None:
        a[x.flags.numpy().astype(bool)] = np.nan
    with _device_scope(x.device.name):
        return _ct(a)


def _bn_args(bn):
    if bn is None:
        return None, None, None, None, 0.0
    return (bn.moving_mean._buf, bn.moving_variance._buf, bn.gamma._buf if bn.gamma is not None else None,
            bn.beta._buf if bn.beta is not None else None, float(bn.epsilon))


def fused_conv(x, kind, kernel, packed, w_scale, bias, strides, dilation, pads, out_hw, bn=None, lo=-np.inf,
               hi=np.inf, byte_step=0.0, pool=None):
    """One fused group's kernel: a quantized Conv2D (kind "conv", `packed` its PackedInt8) or
    DepthwiseConv2D (kind "depthwise", `kernel` its Int8Weight) on x (a float32 Tensor or a
    ByteActivation), then the inference BatchNormalization `bn` (a layer, or None) and the clamp
    [lo, hi]; returns a float32 Tensor, or a ByteActivation when byte_step > 0 (then lo >= 0).
    `pool` (ph, pw): a Conv2D's group ends in a max pooling of that window and stride, padding
    "valid" (float32 in and out); `out_hw` is the convolution's own output size."""
    byte_in = isinstance(x, ByteActivation)
    if not byte_in:
        x = _float_input(f"q{kind}_fused", x)
        _inference_only(f"q{kind}_fused", x)
    dev = x.device
    n = x.shape[0]
    channels = kernel.shape[3] if kind == "conv" else kernel.shape[2] * kernel.shape[3]
    pool = tuple(int(p) for p in pool) if pool is not None else ()
    if pool:
        out_hw = (out_hw[0] // pool[0], out_hw[1] // pool[1])
    out_shape = (n,) + tuple(out_hw) + (channels,)
    flags = x.flags if byte_in else None
    if byte_step > 0:
        if flags is None:
            from .math import zeros
            flags = zeros((n,), "int32", device=dev.name)
        out = ByteActivation(out_shape, byte_step, dev, flags)
    else:
        out = empty(out_shape, dtypes.FLOAT32, dev)
    mean, var, gamma, beta, eps = _bn_args(bn)
    # positional arguments: a recorded call (models/replay.py) swaps buffers by position
    tail = (bias._buf if bias is not None else None, mean, var, gamma, beta, eps, float(lo), float(hi), out._buf,
            list(out_shape), float(byte_step), flags._buf if flags is not None else None, list(strides),
            list(dilation), list(pads))
    x_step = x.step if byte_in else 0.0
    if kind == "conv":
        pk, cs = packed.get()
        dev.kernels.qconv2d_fused(x._buf, list(x.shape), x_step, list(kernel.shape), pk, cs, w_scale._buf, *tail,
                                  list(pool))
    else:
        dev.kernels.qdepthwise2d_fused(x._buf, list(x.shape), x_step, kernel._buf, list(kernel.shape), w_scale._buf,
                                       *tail)
    return out
