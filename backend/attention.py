"""Scaled dot-product attention (keras.ops.dot_product_attention): the fused kernel of
csrc/cpu/attention.cpp, forward and backward, and the same attention composed from einsum,
softmax and where (flash_attention=False), which the kernel must equal within float32 rounding.

The fused kernel reads query, key and value in their (batch, length, heads, depth) layout
through strides (no transposes), computes each (batch, head)'s scores a block of query rows at a
time (scale, bias, mask and causal mask applied in place, a stable softmax, then P . value written
straight into the output), and keeps each row's softmax max and sum for the backward pass, which
recomputes the probabilities instead of storing them (flash attention's backward).

dtypes: bfloat16 query, key and value (mixed precision) run the kernel in bfloat16 -- bfloat16
product operands (the probabilities and the logit gradients rounded), float32 sums, softmax and
statistics -- and give a bfloat16 output and bfloat16 gradients; otherwise it computes in float32,
any bfloat16 argument cast up. The bias (and its gradient) is float32.
"""
import math as _pymath

import numpy as np

from . import dtypes
from .autodiff import needs_grad, record
from .einsum import einsum
from .manipulation import repeat, tri
from .math import (_as_tensor, broadcast_shapes, cast, check_same_device, logical_and, multiply, unbroadcast,
                   where)
from .nn import softmax
from .tensor import empty

__all__ = ["dot_product_attention"]

# Keras (jax.nn.dot_product_attention, and Keras's numpy backend) fill masked logits with
# -0.7 * the dtype's largest value: finite, so a fully masked row gives a uniform distribution.
# The kernel uses the same value (attention.cpp's kMasked).
_MASKED_LOGIT = float(-0.7 * np.finfo(np.float32).max)


def _scores_operand(x, name, shape, op):
    """bias / mask as a tensor broadcastable to the scores' (B, N, T, S)."""
    t = _as_tensor(x, op)
    try:
        fits = t.ndim <= 4 and broadcast_shapes(t.shape, shape, op) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{op}: {name} of shape {t.shape} does not broadcast to the attention scores' shape "
                         f"(batch, heads, query length, key length) = {tuple(shape)}")
    return t


def _contiguous_strides(shape):
    """Element strides of a C-contiguous tensor of `shape`."""
    st, acc = [], 1
    for d in reversed(shape):
        st.append(acc)
        acc *= d
    return st[::-1]


def _layout(t):
    """(batch, time, head) element strides of a contiguous (B, T, heads, depth) tensor."""
    return _contiguous_strides(t.shape)[:3]


def _broadcast_strides(t):
    """Strides reading a tensor broadcastable to (B, N, T, S) as (B, N, T, S): 0 on the
    dimensions it broadcasts along (missing or of size 1)."""
    st = _contiguous_strides(t.shape)
    full = [0] * (4 - t.ndim) + [0 if d == 1 else s for d, s in zip(t.shape, st)]
    return full


def _compute_dtype(q, k, v):
    """bfloat16 when query, key and value all are (mixed precision: the kernel's products take
    bfloat16 operands -- Q, K, V, dO and the probabilities and logit gradients rounded -- with
    float32 sums, the softmax and its statistics in float32; the output and the gradients come
    back in bfloat16); otherwise float32, with any bfloat16 one cast up."""
    if q.dtype == k.dtype == v.dtype == dtypes.BFLOAT16:
        return dtypes.BFLOAT16, (q, k, v)
    return dtypes.FLOAT32, tuple(t if t.dtype == dtypes.FLOAT32 else cast(t, dtypes.FLOAT32) for t in (q, k, v))


def _fused(q, k, v, bias, keep, scale, is_causal):
    """The attention kernel: q (B, T, N, H), k (B, S, K, H), v (B, S, K, Hv), bias (float32) and
    keep (bool) None or broadcastable to (B, N, T, S). Computes in bfloat16 when q, k and v all are
    bfloat16 (_compute_dtype), else in float32; the output has the compute dtype."""
    cdt, (q, k, v) = _compute_dtype(q, k, v)
    B, T, N, H = q.shape
    S, K, Hv = k.shape[1], k.shape[2], v.shape[3]
    kern = q.device.kernels
    out = empty((B, T, N, Hv), cdt, q.device)
    inputs = (q, k, v) + ((bias,) if bias is not None else ())
    grad = needs_grad(*inputs)
    stats = empty((B, N, T, 2), dtypes.FLOAT32, q.device) if grad else None   # each row's softmax max, 1 / sum
    dims = (B, T, S, N, K, H, Hv)
    strides = (_layout(q), _layout(k), _layout(v), _layout(out),
               _broadcast_strides(bias) if bias is not None else [0] * 4,
               _broadcast_strides(keep) if keep is not None else [0] * 4)
    bias_buf = bias._buf if bias is not None else None
    keep_buf = keep._buf if keep is not None else None
    kern.attention_forward(q._buf, k._buf, v._buf, bias_buf, keep_buf, out._buf, stats._buf if grad else None,
                           *dims, scale, is_causal, *strides)
    if grad:
        out_buf, stats_buf = out._buf, stats._buf   # buffers, not the tensor: no reference cycle through the node

        def backward(g, need):
            if g.dtype != cdt:
                g = cast(g, cdt)
            dq, dk, dv = (empty(t.shape, cdt, t.device) if n else None for t, n in zip((q, k, v), need))
            dl = empty((B, N, T, S), dtypes.FLOAT32, q.device) if bias is not None and need[3] else None
            kern.attention_backward(q._buf, k._buf, v._buf, bias_buf, keep_buf, out_buf, stats_buf, g._buf,
                                    *(t._buf if t is not None else None for t in (dq, dk, dv, dl)),
                                    *dims, scale, is_causal, *strides)
            grads = (dq, dk, dv)
            if bias is not None:
                grads += (unbroadcast(dl, bias.shape) if dl is not None else None,)
            return grads
        record(out, inputs, backward)
    return out


def _composed(q, k, v, bias, keep, scale):
    """The same attention from einsum, where and softmax (keep already includes the causal mask)."""
    N, K = q.shape[2], k.shape[2]
    if N != K:   # grouped-query attention: key/value head j serves query heads j*G .. j*G + G-1
        k, v = repeat(k, N // K, axis=2), repeat(v, N // K, axis=2)
    logits = multiply(einsum("BTNH,BSNH->BNTS", q, k), scale)
    if bias is not None:
        logits = logits + bias
    if keep is not None:
        logits = where(keep, logits, _MASKED_LOGIT)
    probs = softmax(logits, axis=-1)
    return einsum("BNTS,BSNH->BTNH", probs, v)


def dot_product_attention(query, key, value, bias=None, mask=None, scale=None, is_causal=False,
                          flash_attention=None, attn_logits_soft_cap=None):
    """Scaled dot-product attention, keras.ops.dot_product_attention:
    softmax(query . key * scale + bias, over the key positions) . value.

    Shapes: query (B, T, N, H), key (B, S, K, H), value (B, S, K, Hv) -> (B, T, N, Hv). K may
    divide N (grouped-query attention: each key/value head serves N / K query heads). `bias` is
    added to and `mask` (True = attend) filters the logits, both broadcastable to (B, N, T, S);
    `is_causal` lets query position t attend to key positions <= t. `scale` defaults to
    1 / sqrt(H). Masked logits are set to -0.7 * float32 max, as in Keras (so a fully masked row
    averages all values).

    flash_attention: None or True runs the fused kernel (attention.cpp), which never stores the
    (B, N, T, S) probabilities; False composes the attention from einsum, where and softmax (the
    probabilities are stored for the backward pass). Both give the same values within float32
    rounding."""
    op = "dot_product_attention"
    if flash_attention not in (None, True, False):
        raise ValueError(f"{op}: flash_attention must be None, True or False, received {flash_attention!r}")
    if attn_logits_soft_cap is not None:
        raise ValueError(f"{op}: attn_logits_soft_cap={attn_logits_soft_cap!r} is not supported (Keras supports it "
                         "only with JAX on TPU); pass attn_logits_soft_cap=None")
    q, k, v = (_as_tensor(x, op) for x in (query, key, value))
    for t, name in ((q, "query"), (k, "key"), (v, "value")):
        if t.ndim != 4:
            raise ValueError(f"{op}: expected 4-D query, key and value of shapes (batch, length, heads, depth), "
                             f"received query.shape={q.shape}, key.shape={k.shape}, value.shape={v.shape} "
                             f"({name} is not 4-D)")
        if t.dtype not in dtypes.FLOATS:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} (shape {t.shape}); expected float32: cast it with "
                            "ops.cast(x, 'float32')")
    B, T, N, H = q.shape
    if k.shape[0] != B or v.shape[0] != B or k.shape[1] != v.shape[1] or k.shape[2] != v.shape[2] \
            or k.shape[3] != H:
        raise ValueError(f"{op}: incompatible shapes query {q.shape}, key {k.shape}, value {v.shape}; expected "
                         "query (B, T, N, H), key (B, S, K, H) and value (B, S, K, Hv)")
    S, K = k.shape[1], k.shape[2]
    if K == 0 or N % K:
        raise ValueError(f"{op}: query has {N} heads and key/value have {K}; the number of query heads must be a "
                         f"multiple of the key/value heads (query {q.shape}, key {k.shape})")
    if scale is None:
        if H == 0:
            raise ValueError(f"{op}: the default scale 1 / sqrt(depth) needs a query depth of at least 1, received "
                             f"query {q.shape} and key {k.shape}; pass scale= explicitly")
        scale = 1.0 / _pymath.sqrt(H)
    elif isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
        raise TypeError(f"{op}: scale must be a number or None, received {scale!r}")
    scale = float(scale)
    shape = (B, N, T, S)
    b = None if bias is None else cast(_scores_operand(bias, "bias", shape, op), "float32")
    keep = None if mask is None else cast(_scores_operand(mask, "mask", shape, op), "bool")
    check_same_device(op, *(t for t in (q, k, v, b, keep) if t is not None))
    if flash_attention is False:
        if is_causal:
            causal = cast(tri(T, S, dtype="float32"), "bool")
            keep = causal if keep is None else logical_and(keep, causal)
        return _composed(q, k, v, b, keep, scale)
    return _fused(q, k, v, b, keep, scale, bool(is_causal))
