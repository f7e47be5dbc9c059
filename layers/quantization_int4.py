"""Keras 3.15's `quantize("int4")` for Dense, EinsumDense and Embedding (called by
layers/quantization.py's `quantize_layer`).

Weight-only, as Keras's default Int4QuantizationConfig (no activation quantizer). The float
weight, read as a matrix (rows, cols) -- Dense's kernel (in, units); EinsumDense's kernel
reshaped to (product of its reduced axes' sizes, product of the others) in memory order, as
Keras's; an Embedding's table transposed to (output_dim, input_dim) for the grouped scheme --
is quantized to values in [-8, 7]:
  grouped (block size b, Keras's default 128): per group of b rows (zero padded) and column,
      scale = (max - min + 1e-7) / 15, zero = clip(round(-min / scale) - 8, -8, 7),
      q = clip(round(w / scale) + zero, -8, 7); the weight is (q - zero) * scale, and the layer
      holds kernel_scale and kernel_zero (n_groups, cols) and g_idx (rows,) = row // b (float32);
  per-channel (block size -1): scale = 7 / (max |w| + 1e-7) over the rows, q = clip(round(w *
      scale), -8, 7); the weight is q / scale.
q is packed two to a byte along the last axis (Keras's pack_int4: the even index in the low
nibble), so the int8 kernel is (rows, ceil(cols / 2)) (the Embedding's (input_dim,
ceil(output_dim / 2))). Calls unpack it (numpy, cached per assignment) and dequantize with
lamina ops, in Keras's order of operations."""
import types

import numpy as np

from .. import ops
from ..backend import quantization as _q
from ..backend.device import device as device_scope
from ..backend.tensor import Variable
from .quantization import _finish, set_quantized_policy


def pack_int4(q):
    """Keras's pack_int4(q, axis=-1): int8 values in [-8, 7] -> int8 bytes, two per byte."""
    q = np.asarray(q, np.int8)
    if q.shape[-1] % 2:
        q = np.concatenate([q, np.zeros(q.shape[:-1] + (1,), np.int8)], axis=-1)
    u = q.view(np.uint8) & np.uint8(0x0F)
    return (u[..., 0::2] | (u[..., 1::2] << np.uint8(4))).astype(np.uint8).view(np.int8)


def unpack_int4(packed, orig_len):
    """Keras's unpack_int4(packed, orig_len, axis=-1): int8 values in [-8, 7]."""
    u = np.asarray(packed, np.int8).view(np.uint8)
    low, high = (u & np.uint8(0x0F)).astype(np.int8), (u >> np.uint8(4)).astype(np.int8)
    out = np.empty(u.shape[:-1] + (2 * u.shape[-1],), np.int8)
    out[..., 0::2], out[..., 1::2] = low, high
    return ((out ^ np.int8(8)) - np.int8(8)).astype(np.int8)[..., :orig_len]


def int4_quantize_grouped(w, block):
    """Keras's abs_max_quantize_grouped_with_zero_point (numpy path) of a (rows, cols) float32
    array: (q int8 (rows, cols), scale float32 (n_groups, cols), zero int8 (n_groups, cols))."""
    w = np.asarray(w, np.float32)
    rows, cols = w.shape
    groups = -(-rows // block)
    if groups * block > rows:
        w = np.concatenate([w, np.zeros((groups * block - rows, cols), w.dtype)], axis=0)
    r = w.reshape(groups, block, cols)
    lo, hi = np.min(r, axis=1, keepdims=True), np.max(r, axis=1, keepdims=True)
    scale = np.divide(np.subtract(hi, lo) + 1e-7, 15)
    zero = np.clip(np.round(np.divide(-lo, scale)) + (-8), -8, 7)
    q = np.clip(np.round(np.divide(r, scale)) + zero, -8, 7).astype(np.int8)
    return (q.reshape(groups * block, cols)[:rows], np.squeeze(scale, 1).astype(np.float32),
            np.squeeze(zero, 1).astype(np.int8))


def int4_quantize_per_channel(w, axis):
    """Keras's abs_max_quantize(w, axis, value_range=(-8, 7), to_numpy=True): (q int8, scale
    float32 with `axis` squeezed)."""
    w = np.asarray(w, np.float32)
    scale = np.divide(7, np.add(np.max(np.abs(w), axis=axis, keepdims=True), 1e-7))
    q = np.clip(np.round(np.multiply(w, scale)), -8, 7).astype(np.int8)
    return q, np.squeeze(scale, axis).astype(np.float32)


class Int4State:
    """What an int4 layer's call reads besides its variables: the block size (None:
    per-channel), the unpacked length, and the unpacked values as a float32 tensor (remade when
    the packed weight is assigned)."""

    def __init__(self, kind, block, packed, orig_len, zero=None, kernel_shape=None, equation=None):
        self.kind, self.block, self.packed, self.orig_len = kind, block, packed, int(orig_len)
        self.zero, self.kernel_shape, self.equation = zero, kernel_shape, equation
        self._q = self._z = None

    def values(self):
        w = self.packed
        if self._q is None or self._q[0] != w.version:
            with device_scope(w.device.name):
                self._q = (w.version, ops.convert_to_tensor(unpack_int4(w.numpy(), self.orig_len).astype(np.float32)))
        return self._q[1]

    def zeros(self):
        z = self.zero
        if self._z is None or self._z[0] != z.version:
            with device_scope(z.device.name):
                self._z = (z.version, ops.convert_to_tensor(z.numpy().astype(np.float32)))
        return self._z[1]


def _einsum_kernel_reduced_axes(equation, who):
    eq = equation.replace(" ", "")
    try:
        lhs, out = eq.split("->")
        _, ws = lhs.split(",")
    except ValueError:
        raise ValueError(f"{who}.quantize: invalid einsum equation {equation!r}") from None
    if "." in ws:
        raise NotImplementedError(f"{who}.quantize: int4 needs a kernel without an ellipsis, received {equation!r}")
    return [i for i, c in enumerate(ws) if c not in out]


def quantize_int4(layer, kind, block, who):
    if kind == "Embedding":
        w = layer.embeddings
        name = "embeddings"
        table = w.numpy().astype(np.float32)
        if block is None:
            q, scale = int4_quantize_per_channel(table, -1)          # scale (input_dim,)
            zero = None
        else:   # groups along output_dim: the table transposed, as Keras
            qt, st, zt = int4_quantize_grouped(table.T, block)
            q, scale, zero = qt.T, np.ascontiguousarray(st.T), np.ascontiguousarray(zt.T)   # (input_dim, n_groups)
        rows, cols = table.shape
        g_len, orig_len = cols, cols
    else:
        w = layer._kernel if kind == "EinsumDense" else layer.kernel
        name = "kernel"
        kernel = w.numpy().astype(np.float32)
        if kind == "EinsumDense":
            red = _einsum_kernel_reduced_axes(layer.equation, who)
            rows = int(np.prod([kernel.shape[i] for i in red], dtype=np.int64))
            cols = int(kernel.size // max(rows, 1))
            flat = kernel.reshape(rows, cols)
        else:
            flat = kernel
            rows, cols = kernel.shape
        if block is None:
            q, scale = int4_quantize_per_channel(flat, 0)            # scale (cols,)
            zero = None
        else:
            q, scale, zero = int4_quantize_grouped(flat, block)      # (n_groups, cols)
        g_len, orig_len = rows, cols
    base = w.path.rsplit("/", 1)[0] if "/" in w.path else layer.name
    dev = w.device
    iw = _q.Int8Weight(pack_int4(q), name, path=f"{base}/{name}", device=dev)
    with device_scope(dev.name):
        sv = Variable(scale, trainable=False, name=f"{name}_scale")
        gv = Variable((np.arange(g_len) // block).astype(np.float32), trainable=False, name="g_idx") \
            if block is not None else None
    sv._path = f"{base}/{name}_scale"
    zv = None
    if block is not None:
        zv = _q.Int8Weight(zero, f"{name}_zero", path=f"{base}/{name}_zero", device=dev)
        gv._path = f"{base}/g_idx"
    extra = [v for v in (zv, gv) if v is not None]
    own = layer._own_weights
    own[:] = [v for v in own if v is not w]
    own += [iw, sv] + extra   # Keras's order of weights: bias, kernel, scale, zero, g_idx
    bias = getattr(layer, "bias", None) if kind != "Embedding" else None
    layer._quantized_variables = [iw] + ([bias] if bias is not None else []) + [sv] + extra   # as Keras saves them
    layer._always_frozen.update({id(iw), id(sv)} | {id(v) for v in extra})
    object.__setattr__(layer, "_kernel" if kind == "EinsumDense" else name, iw)
    object.__setattr__(layer, f"{name}_scale", sv)
    if zv is not None:
        object.__setattr__(layer, f"{name}_zero", zv)
        object.__setattr__(layer, "g_idx", gv)
    object.__setattr__(layer, "quantization_mode", "int4")
    layer._int4 = Int4State(kind, block, iw, orig_len, zv,
                            tuple(w.shape) if kind == "EinsumDense" else None,
                            layer.equation if kind == "EinsumDense" else None)
    set_quantized_policy(layer, f"int4/{-1 if block is None else block}")
    layer.call = types.MethodType(_INT4_CALLS[kind], layer)


def _int4_dequantized(self):
    """The (rows, cols) float kernel of a grouped int4 layer: (q - zero[g_idx]) * scale[g_idx],
    Keras's dequantize_with_sz_map(group_axis=0)."""
    st = self._int4
    groups = ops.cast(self.g_idx, "int32")
    scale = ops.take(self.kernel_scale, groups, axis=0)
    zero = ops.take(st.zeros(), groups, axis=0)
    return ops.multiply(ops.subtract(st.values(), zero), scale)


def _int4_input(op, x):
    x = _q._float_input(op, x)
    _q._inference_only(op, x, mode="int4")
    return x


def _int4_dense_call(self, inputs):
    st = self._int4
    x = _int4_input("int4 dense", inputs)
    if st.block is None:
        y = ops.divide(ops.matmul(x, st.values()), self.kernel_scale)
    else:
        y = ops.matmul(x, _int4_dequantized(self))
    if self.bias is not None:
        y = ops.add(y, self.bias)
    return _finish(self, y)


def _int4_einsum_call(self, inputs):
    st = self._int4
    x = _int4_input("int4 einsum", inputs)
    if st.block is None:
        k = ops.divide(st.values(), self.kernel_scale)
    else:
        k = _int4_dequantized(self)
    y = ops.einsum(st.equation, x, ops.reshape(k, st.kernel_shape))
    if self.bias is not None:
        y = ops.add(y, self.bias)
    return _finish(self, y)


def _int4_embedding_call(self, inputs):
    st = self._int4
    ids = ops.convert_to_tensor(inputs)
    from ..backend import dtypes as _dtypes
    if not _dtypes.is_int(ids.dtype):
        ids = ops.cast(ids, "int32")
    try:
        n = ids.numpy()
    except Exception:  # noqa: BLE001 - not a concrete tensor
        n = None
    if n is not None and n.size and (n.min() < 0 or n.max() >= self.input_dim):
        raise ValueError(f"Embedding '{self.name}' (input_dim={self.input_dim}): ids must lie in [0, "
                         f"{self.input_dim}), received the range [{n.min()}, {n.max()}] (outside the table's "
                         f"{self.input_dim} rows)")
    out = ops.take(st.values(), ids, axis=0)
    if st.block is None:
        return ops.divide(out, ops.expand_dims(ops.take(self.embeddings_scale, ids, axis=0), -1))
    groups = ops.cast(self.g_idx, "int32")
    scale = ops.take(ops.take(self.embeddings_scale, ids, axis=0), groups, axis=-1)
    zero = ops.take(ops.take(st.zeros(), ids, axis=0), groups, axis=-1)
    return ops.multiply(ops.subtract(out, zero), scale)


_INT4_CALLS = {"Dense": _int4_dense_call, "EinsumDense": _int4_einsum_call, "Embedding": _int4_embedding_call}
