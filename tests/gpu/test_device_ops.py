"""Every op family on a device under test (tests/gpu/conftest.py) against cpu:0: forward values
and gradients, copies between devices, errors raised on the device, memory statistics."""
import numpy as np
import pytest

import lamina
from lamina import ops

from device_calls import run_op as _run

R = np.random.default_rng(7)
A = R.normal(size=(3, 1, 4)).astype(np.float32)
B = R.normal(size=(2, 4)).astype(np.float32)
X = R.normal(size=(4, 6)).astype(np.float32)
P = np.abs(R.normal(size=(4, 6))).astype(np.float32) + 0.1
I1 = R.integers(-5, 6, size=(3, 4)).astype(np.int32)
I2 = R.integers(1, 4, size=(4,)).astype(np.int32)
IDS = R.integers(0, 7, size=(300,))  # int64

# name -> (function of tensors, inputs); every float input is differentiated where the op allows.
CASES = {
    "add": (lambda a, b: a + b, [A, B]),
    "subtract": (lambda a, b: a - b, [A, B]),
    "multiply": (lambda a, b: a * b, [A, B]),
    "divide": (lambda a, b: a / (ops.abs(b) + 1.0), [A, B]),
    "power": (lambda p: ops.power(p, 1.7), [P]),
    "square_pow": (lambda x: x ** 2, [X]),
    "maximum": (ops.maximum, [A, B]),
    "minimum": (ops.minimum, [A, B]),
    "mod": (lambda a, b: ops.mod(a, b + 3.0), [A, B]),
    "floor_divide": (lambda a, b: ops.floor_divide(a, b + 3.0), [A, B]),
    "arctan2": (ops.arctan2, [A, B]),
    "compare": (lambda a, b: ops.cast(ops.less(a, b), "float32") + ops.cast(ops.greater_equal(a, b), "float32") * 2,
                [A, B]),
    "int_arith": (lambda a, b: a * b + a - b, [I1, I2]),
    "int_divide": (lambda a, b: ops.floor_divide(a, b), [I1, I2]),
    "logical": (lambda a, b: ops.cast(ops.logical_xor(ops.greater(a, 0), ops.less(b, 0)), "int32"), [A, B]),
    "where": (lambda a, b: ops.where(a > 0, a, b), [A, B]),
    "broadcast_to": (lambda a: ops.broadcast_to(a, (2, 3, 5, 4)), [A]),
    "clip": (lambda x: ops.clip(x, -0.5, 0.7), [X]),
    "cast_float_int": (lambda x: ops.cast(x * 3, "int32"), [X]),
    "cast_int_float": (lambda a: ops.cast(a, "float32") * 0.5, [I1]),
    "sum": (lambda x: ops.sum(x, axis=0) + ops.sum(x), [X]),
    "mean": (lambda x: ops.mean(x, axis=1, keepdims=True), [X]),
    "max": (lambda x: ops.max(x, axis=1), [X]),
    "min": (lambda x: ops.min(x, axis=0), [X]),
    "prod": (lambda x: ops.prod(x, axis=1), [X]),
    "long_rows": (lambda x: ops.sum(ops.reshape(x, (1, 24)) * ops.ones((300, 24)), axis=1), [X]),
    "argmax": (lambda x: ops.argmax(x, axis=1), [X]),
    "any_all": (lambda x: ops.cast(ops.any(x > 1, axis=1), "int32") + ops.cast(ops.all(x > -2, axis=0)[:4], "int32"),
                [X]),
    "int_sum": (lambda a: ops.sum(a, axis=0), [I1]),
    "matmul": (ops.matmul, [R.normal(size=(2, 3, 4, 5)).astype(np.float32), R.normal(size=(5, 6)).astype(np.float32)]),
    "matmul_batch_bcast": (ops.matmul, [R.normal(size=(4, 5)).astype(np.float32),
                                        R.normal(size=(2, 5, 6)).astype(np.float32)]),
    "matmul_tiles": (ops.matmul, [R.normal(size=(130, 70)).astype(np.float32),
                                  R.normal(size=(70, 90)).astype(np.float32)]),
    "matmul_transposed": (lambda a, b: ops.matmul(ops.transpose(a), b),
                          [R.normal(size=(5, 4)).astype(np.float32), R.normal(size=(5, 3)).astype(np.float32)]),
    "softmax_last": (lambda x: ops.softmax(x, axis=-1), [X]),
    "softmax_inner": (lambda x: ops.softmax(x, axis=0), [X]),
    "log_softmax": (lambda x: ops.log_softmax(x, axis=-1), [X]),
    "sparse_xent_logits": (lambda x: ops.sparse_categorical_crossentropy(np.array([0, 5, 2, 3]), x, from_logits=True),
                           [X]),
    "sparse_xent_probs": (lambda p: ops.sparse_categorical_crossentropy(np.array([1, 0, 5, 2]), p), [P]),
    "conv2d": (lambda x, k: ops.conv(x, k, padding="same"),
               [R.normal(size=(2, 5, 5, 3)).astype(np.float32), R.normal(size=(3, 3, 3, 4)).astype(np.float32)]),
    "max_pool": (lambda x: ops.max_pool(x, 2), [R.normal(size=(2, 4, 4, 3)).astype(np.float32)]),
    # convolution and pooling paths (csrc/cuda/conv.cu): odd sizes and channel counts, strides,
    # dilation, "same" padding with even kernels (more padding after than before), 1x1 (no im2col)
    "conv2d_valid_stride2": (lambda x, k: ops.conv(x, k, strides=2),
                             [R.normal(size=(2, 9, 7, 5)).astype(np.float32),
                              R.normal(size=(3, 3, 5, 7)).astype(np.float32)]),
    "conv2d_same_even_kernel": (lambda x, k: ops.conv(x, k, strides=(2, 1), padding="same"),
                                [R.normal(size=(3, 8, 9, 3)).astype(np.float32),
                                 R.normal(size=(4, 2, 3, 5)).astype(np.float32)]),
    "conv2d_dilation2": (lambda x, k: ops.conv(x, k, padding="same", dilation_rate=2),
                         [R.normal(size=(2, 9, 10, 3)).astype(np.float32),
                          R.normal(size=(3, 3, 3, 5)).astype(np.float32)]),
    "conv2d_1x1": (lambda x, k: ops.conv(x, k), [R.normal(size=(2, 5, 7, 5)).astype(np.float32),
                                                 R.normal(size=(1, 1, 5, 6)).astype(np.float32)]),
    "conv2d_1x1_stride2": (lambda x, k: ops.conv(x, k, strides=2),
                           [R.normal(size=(2, 5, 7, 3)).astype(np.float32),
                            R.normal(size=(1, 1, 3, 4)).astype(np.float32)]),
    "conv1d_same_stride2": (lambda x, k: ops.conv(x, k, strides=2, padding="same"),
                            [R.normal(size=(2, 11, 3)).astype(np.float32), R.normal(size=(4, 3, 2)).astype(np.float32)]),
    "conv_transpose": (lambda x, k: ops.conv_transpose(x, k, strides=2, padding="same"),
                       [R.normal(size=(2, 4, 5, 3)).astype(np.float32), R.normal(size=(3, 3, 4, 3)).astype(np.float32)]),
    "depthwise_m1_stride2": (lambda x, k: ops.depthwise_conv(x, k, strides=2, padding="same"),
                             [R.normal(size=(2, 7, 8, 5)).astype(np.float32),
                              R.normal(size=(3, 3, 5, 1)).astype(np.float32)]),
    "depthwise_m2_dilation2": (lambda x, k: ops.depthwise_conv(x, k, dilation_rate=2),
                               [R.normal(size=(2, 7, 6, 3)).astype(np.float32),
                                R.normal(size=(3, 2, 3, 2)).astype(np.float32)]),
    "depthwise_many_pixels": (lambda x, k: ops.depthwise_conv(x, k, padding="same"),
                              [R.normal(size=(2, 20, 20, 37)).astype(np.float32),
                               R.normal(size=(3, 3, 37, 1)).astype(np.float32)]),
    "max_pool_same_stride1": (lambda x: ops.max_pool(x, 3, strides=1, padding="same"),
                              [R.normal(size=(2, 6, 7, 5)).astype(np.float32)]),
    "max_pool_same_stride2": (lambda x: ops.max_pool(x, (3, 2), strides=2, padding="same"),
                              [R.normal(size=(2, 7, 8, 3)).astype(np.float32)]),
    "max_pool_ties": (lambda x: ops.max_pool(x, 2, strides=1),  # first maximum wins
                      [R.integers(0, 2, size=(2, 5, 6, 3)).astype(np.float32)]),
    "average_pool_same_stride1": (lambda x: ops.average_pool(x, 3, strides=1, padding="same"),
                                  [R.normal(size=(2, 6, 7, 5)).astype(np.float32)]),
    "average_pool_valid": (lambda x: ops.average_pool(x, (2, 3), strides=(2, 1)),
                           [R.normal(size=(3, 7, 8, 3)).astype(np.float32)]),
    "average_pool1d_same": (lambda x: ops.average_pool(x, 4, strides=3, padding="same"),
                            [R.normal(size=(2, 13, 3)).astype(np.float32)]),
    "sort": (lambda x: ops.sort(x, axis=-1), [X]),
    "take": (lambda x: ops.take(x, np.array([3, 0, 0, 2]), axis=0), [X]),
    "concatenate": (lambda a, b: ops.concatenate([a[0], b], axis=0), [A, B]),
    "slice_transpose": (lambda x: ops.transpose(x[1:3, ::2]), [X]),
    "pad_flip_roll": (lambda x: ops.roll(ops.flip(ops.pad(x, ((1, 0), (2, 1))), axis=1), 3, axis=0), [X]),
    "stack_tile_repeat": (lambda a, b: ops.stack([ops.tile(b, (1, 2)), ops.repeat(b, 2, axis=1)]) + ops.sum(a), [A, B]),
    "swapaxes_reshape": (lambda a: ops.reshape(ops.swapaxes(ops.broadcast_to(a, (3, 2, 4)), 0, 2), (4, 6)), [A]),
    # gathers and scatter-adds (embedding.cu): repeated ids sum their gradient rows; the table's
    # gradient is an IndexedSlices, densified by embedding_scatter_add
    "embedding_lookup": (lambda t: ops.embedding_lookup(t, np.array([[3, 0], [0, 9], [5, 5]], np.int32)),
                         [R.normal(size=(10, 37)).astype(np.float32)]),
    "embedding_lookup_int64": (lambda t: ops.embedding_lookup(t, IDS),
                               [R.normal(size=(7, 33)).astype(np.float32)]),
    "embedding_layer": (lambda t: lamina.layers.Embedding(7, 5, embeddings_initializer="ones")(
        np.array([[1, 6, 6], [0, 2, 1]], np.int32)) * t, [R.normal(size=(2, 3, 5)).astype(np.float32)]),
    "take_axis1_negative": (lambda x: ops.take(x, np.array([-1, 2, 2, 0, 5, -6]), axis=1), [X]),
    "take_flat": (lambda x: ops.take(x, np.array([[23, 0], [7, 7], [-24, 11]], np.int32)), [X]),
    "take_int_axis0": (lambda a: ops.take(a, np.array([2, 0, 2]), axis=0), [I1]),
    "take_bool": (lambda x: ops.cast(ops.take(x > 0, np.array([1, 3]), axis=1), "int32"), [X]),
}
for _name in ("exp", "tanh", "sigmoid", "relu", "gelu", "silu", "softplus", "elu", "selu", "leaky_relu", "relu6",
              "hard_sigmoid", "softsign", "abs", "sign", "square", "sin", "cos", "floor", "round", "erf", "negative"):
    _fn = getattr(ops, _name, None) or getattr(lamina.activations, _name)
    CASES["unary_" + _name] = (_fn, [X])
CASES["unary_log"] = (lambda p: ops.log(p) + ops.sqrt(p) + ops.log1p(p) + ops.reciprocal(p), [P])
CASES["isnan"] = (lambda x: ops.cast(ops.isnan(ops.log(x)), "int32"), [X])


# ---- normalisation (csrc/cuda/norm.cu) ----
def _bn_train(x, g=None, b=None, axis=-1, offset=0.0):
    """Training batch norm's y plus its batch mean and variance (broadcast back), so that one
    output covers the three and their gradients."""
    y, m, v = ops.batch_norm_train(x + offset, g, b, axis=axis)
    kept = tuple(x.shape[i] if i == axis % x.ndim else 1 for i in range(x.ndim))
    return y + ops.reshape(m, kept) * 0.5 + ops.reshape(v, kept) * 0.25


def _bn_layer(x):
    """BatchNormalization in training (batch statistics; the moving averages updated), then in
    inference (the updated moving averages), channels first (axis 1)."""
    layer = lamina.layers.BatchNormalization(axis=1, momentum=0.5, beta_initializer="ones")
    return layer(x, training=True) + layer(x, training=False) * 0.5


def _bn_relu(x, m, v, o, s):
    """The fused inference batch norm + relu6 (no gradient: it runs on constants)."""
    from lamina.backend.nn import batch_normalization_relu
    c = [ops.stop_gradient(t) for t in (x, m, v, o, s)]
    return batch_normalization_relu(*c[:3], axis=-1, offset=c[3], scale=c[4], max_value=6.0) + (x + m + v + o + s) * 0.0


_VAR5 = np.abs(R.normal(size=(5,))).astype(np.float32) + 0.2
CASES.update({
    "batch_norm_train_2d": (_bn_train, [R.normal(size=(37, 5)).astype(np.float32),
                                        R.normal(size=(5,)).astype(np.float32), R.normal(size=(5,)).astype(np.float32)]),
    "batch_norm_train_nchw": (lambda x, g, b: _bn_train(x, g, b, axis=1),
                              [R.normal(size=(3, 7, 5, 6)).astype(np.float32),
                               R.normal(size=(7,)).astype(np.float32), R.normal(size=(7,)).astype(np.float32)]),
    "batch_norm_train_nhwc_no_params": (_bn_train, [R.normal(size=(2, 5, 7, 3)).astype(np.float32)]),
    "batch_norm_train_many_rows": (lambda x, g: _bn_train(x, g, offset=30.0),  # several partial sums per channel
                                   [R.normal(size=(300, 70)).astype(np.float32), R.normal(size=(70,)).astype(np.float32)]),
    "batch_norm_train_many_lanes": (lambda x, b: _bn_train(x, None, b, axis=1),
                                    [R.normal(size=(4, 3, 30, 31)).astype(np.float32),
                                     R.normal(size=(3,)).astype(np.float32)]),
    "batch_norm_layer": (_bn_layer, [R.normal(size=(6, 5, 3, 3)).astype(np.float32)]),
    "batch_normalization_infer": (lambda x, m, v, o, s: ops.batch_normalization(x, m, v, axis=-1, offset=o, scale=s),
                                  [R.normal(size=(9, 5)).astype(np.float32), R.normal(size=(5,)).astype(np.float32),
                                   _VAR5, R.normal(size=(5,)).astype(np.float32),
                                   R.normal(size=(5,)).astype(np.float32)]),
    "batch_normalization_infer_axis1": (lambda x, m, v: ops.batch_normalization(x, m, v, axis=1),
                                        [R.normal(size=(3, 5, 7)).astype(np.float32),
                                         R.normal(size=(5,)).astype(np.float32), _VAR5]),
    "batch_normalization_relu6": (_bn_relu, [3 * R.normal(size=(4, 3, 5)).astype(np.float32),
                                             R.normal(size=(5,)).astype(np.float32), _VAR5,
                                             R.normal(size=(5,)).astype(np.float32),
                                             R.normal(size=(5,)).astype(np.float32)]),
    "layer_norm_last": (lambda x, g, b: ops.layer_norm(x, g, b, axis=-1),
                        [R.normal(size=(5, 37)).astype(np.float32), R.normal(size=(37,)).astype(np.float32),
                         R.normal(size=(37,)).astype(np.float32)]),
    "layer_norm_no_params": (lambda x: ops.layer_norm(x + 10.0, axis=-1), [R.normal(size=(4, 3, 6)).astype(np.float32)]),
    "layer_norm_gamma_only_wide": (lambda x, g: ops.layer_norm(x, g, axis=-1),  # a block per row (R > 1024)
                                   [R.normal(size=(3, 1500)).astype(np.float32),
                                    R.normal(size=(1500,)).astype(np.float32)]),
    "layer_norm_many_rows": (lambda x, g, b: ops.layer_norm(x, g, b, axis=-1),
                             [R.normal(size=(300, 40)).astype(np.float32), R.normal(size=(40,)).astype(np.float32),
                              R.normal(size=(40,)).astype(np.float32)]),
    "layer_norm_inner_axis": (lambda x, b: ops.layer_norm(x, None, b, axis=1),
                              [R.normal(size=(3, 6, 5)).astype(np.float32), R.normal(size=(6,)).astype(np.float32)]),
    "layer_norm_two_axes": (lambda x, g, b: ops.layer_norm(x, g, b, axis=(1, 2)),
                            [R.normal(size=(3, 4, 5, 2)).astype(np.float32), R.normal(size=(4, 5)).astype(np.float32),
                             R.normal(size=(4, 5)).astype(np.float32)]),
    "layer_normalization_layer": (lambda x: lamina.layers.LayerNormalization(epsilon=1e-5)(x),
                                  [R.normal(size=(2, 3, 33)).astype(np.float32)]),
})


# ---- argmax / argmin and scans (csrc/cuda/scan.cu) ----
def _as_float(i, x):
    """An integer result as float32, plus 0 * x so that the gradient test has a path to x."""
    return ops.cast(i, "float32") + ops.sum(x) * 0.0


_TIES = R.integers(0, 3, size=(5, 100)).astype(np.float32)  # many ties: the first index wins
CASES.update({
    "argmax_ties_rows": (lambda x: _as_float(ops.argmax(x, axis=1), x), [_TIES]),  # a warp per row (R >= 64)
    "argmin_ties_rows": (lambda x: _as_float(ops.argmin(x, axis=-1), x), [_TIES]),
    "argmax_ties_short_rows": (lambda x: _as_float(ops.argmax(x[:, :7], axis=1), x), [_TIES]),
    "argmin_ties_axis0": (lambda x: _as_float(ops.argmin(x, axis=0), x), [_TIES]),  # a thread per lane
    "argmax_nan_first": (lambda x: _as_float(ops.argmax(ops.where(x > 1.5, float("nan"), x), axis=1), x), [_TIES]),
    "argmin_nan_axis0": (lambda x: _as_float(ops.argmin(ops.where(x > 1.5, float("nan"), x), axis=0), x), [_TIES]),
    "argmax_int": (lambda a: ops.argmax(a, axis=0), [I1]),
    "argmin_int64_rows": (lambda a: ops.argmin(a, axis=1), [R.integers(-3, 3, size=(3, 70))]),
    "argmax_bool": (lambda x: _as_float(ops.argmax(x > 0.5, axis=1), x), [_TIES]),
    "cumsum_axis0": (lambda x: ops.cumsum(x, axis=0), [R.normal(size=(37, 5)).astype(np.float32)]),
    "cumsum_axis1": (lambda x: ops.cumsum(x, axis=1), [R.normal(size=(5, 37)).astype(np.float32)]),
    "cumsum_flat": (lambda x: ops.cumsum(x), [R.normal(size=(3, 4, 5)).astype(np.float32)]),
    "cumsum_int_axis1": (lambda a: ops.cumsum(a, axis=1), [I1]),
    "cumprod_int64_axis0": (lambda a: ops.cumprod(a, axis=0), [R.integers(-3, 4, size=(9, 4))]),
    "cumprod_axis1_zero": (lambda x: ops.cumprod(x, axis=1),  # a zero: the gradient without division
                           [np.where(np.arange(30).reshape(3, 10) == 13, 0.0,
                                     1.0 + 0.1 * R.normal(size=(3, 10))).astype(np.float32)]),
    "cumprod_axis0": (lambda x: ops.cumprod(x, axis=0), [(1.0 + 0.1 * R.normal(size=(6, 7))).astype(np.float32)]),
})


# ---- the remaining op families (issue 15): attention, sorting, one-hot and losses, gathers and
# scatters, shape ops, statistics, convolutions, image, einsum, linalg, fft, special functions,
# integer ops, set ops, creation ops, control flow, normalisation layers. Most run on the host on
# a GPU (no CUDA kernel of their own): these check that the fallback keeps their values and
# gradients. Their own generator, so that the inputs above stay as they were.
Q = np.random.default_rng(15)


def _f(*shape, scale=1.0):
    return (scale * Q.normal(size=shape)).astype(np.float32)


def _u(lo, hi, *shape):
    return Q.uniform(lo, hi, size=shape).astype(np.float32)


def _spd(n):
    """A well-conditioned symmetric positive definite matrix (n, n)."""
    m = Q.normal(size=(n, n))
    return (m @ m.T / n + np.eye(n)).astype(np.float32)


def _canonical_signs(q, r):
    """Q and R (or U and V^T) with each column of Q / row of R multiplied by the sign of R's
    diagonal: the factorisation up to the signs an implementation is free to choose."""
    s = ops.sign(ops.diagonal(r, axis1=-2, axis2=-1)) + ops.cast(ops.equal(ops.diagonal(r, axis1=-2, axis2=-1), 0),
                                                               "float32")
    return q * ops.expand_dims(s, -2), r * ops.expand_dims(s, -1)


def _qr(a):
    q, r = _canonical_signs(*ops.qr(a))
    return ops.concatenate([ops.reshape(q, (-1,)), ops.reshape(r, (-1,))], axis=0)


def _svd(a):
    """Singular values, and U S V^T (the product does not depend on the vectors' signs)."""
    u, s, vt = ops.svd(a, full_matrices=False)
    return ops.concatenate([ops.reshape(s, (-1,)), ops.reshape(ops.matmul(u * ops.expand_dims(s, -2), vt), (-1,))],
                           axis=0)


def _eigh(a):
    """Eigenvalues, and V diag(w) V^T of the symmetrised input."""
    a = (a + ops.transpose(a)) * 0.5
    w, v = ops.eigh(a)
    return ops.concatenate([w, ops.reshape(ops.matmul(v * w, ops.transpose(v)), (-1,))], axis=0)


def _fft_out(pair):
    re, im = pair
    return ops.concatenate([re, im * 2.0], axis=-1)


_QKV = [_f(2, 5, 4, 3), _f(2, 6, 2, 3), _f(2, 6, 2, 5)]  # 4 query heads on 2 key/value heads
_QKV_SQ = [_f(2, 5, 2, 4), _f(2, 5, 2, 4), _f(2, 5, 2, 4)]
_ATT_MASK = Q.random(size=(2, 1, 5, 6)) > 0.3
_ATT_MASK[:, :, :, 0] = True
_ATT_BIAS = _f(1, 4, 5, 6)
_XENT_T = np.abs(Q.normal(size=(4, 6))).astype(np.float32)
_XENT_T /= _XENT_T.sum(axis=1, keepdims=True)
_BIN_T = Q.random(size=(4, 6)).astype(np.float32)
_PROB = _u(0.05, 0.95, 4, 6)
_SEG = np.array([0, 0, 1, 3, 3, 3], np.int32)
_POS_SMALL = _u(0.2, 0.9, 4, 6)
_I3 = Q.integers(0, 64, size=(3, 5)).astype(np.int32)
_I3B = Q.integers(1, 30, size=(5,)).astype(np.int32)
_IMG = _f(2, 6, 5, 3)
_RGB = _u(0.0, 1.0, 2, 4, 5, 3)

CASES.update({
    # attention (attention.cpp: the fused kernel, and the composed one)
    "attention_gqa": (lambda q, k, v: ops.dot_product_attention(q, k, v), _QKV),
    "attention_mask": (lambda q, k, v: ops.dot_product_attention(q, k, v, mask=_ATT_MASK), _QKV),
    "attention_bias_scale": (lambda q, k, v: ops.dot_product_attention(q, k, v, bias=_ATT_BIAS, scale=0.3), _QKV),
    "attention_causal": (lambda q, k, v: ops.dot_product_attention(q, k, v, is_causal=True), _QKV_SQ),
    "attention_composed_mask": (lambda q, k, v: ops.dot_product_attention(q, k, v, mask=_ATT_MASK,
                                                                          flash_attention=False), _QKV),
    # sorting (sorting.cpp)
    "sort_axis0": (lambda x: ops.sort(x, axis=0), [X]),
    "argsort": (lambda x: ops.argsort(x, axis=-1), [X]),
    "argsort_axis0": (lambda x: ops.argsort(x, axis=0), [X]),
    "top_k_values": (lambda x: ops.top_k(x, 3)[0], [X]),
    "top_k_indices": (lambda x: ops.top_k(x, 3)[1], [X]),
    "argpartition": (lambda x: ops.sort(ops.take_along_axis(x, ops.argpartition(x, 2, axis=-1)[:, :2], axis=-1)),
                     [X]),
    "in_top_k": (lambda x: ops.cast(ops.in_top_k(np.array([0, 5, 2, 3]), x, 2), "int32"), [X]),
    "searchsorted": (lambda x: ops.concatenate([ops.searchsorted(ops.sort(ops.reshape(x, (-1,))), v, side=side)
                                                for v, side in ((np.array([-0.5, 0.0, 2.0]), "left"),
                                                                (np.array([-3.0, 0.1]), "right"))]), [X]),
    "digitize": (lambda x: ops.digitize(x, np.array([-1.0, 0.0, 1.0])), [X]),
    # one-hot and the cross-entropies (nn.cpp)
    "one_hot": (lambda: ops.one_hot(np.array([[0, 4], [2, 2], [1, 3]]), 5), []),
    "one_hot_axis0_times_x": (lambda x: ops.transpose(ops.one_hot(np.array([0, 5, 2, 3]), 6, axis=0)) * x, [X]),
    "multi_hot": (lambda: ops.multi_hot(np.array([[0, 4, 4], [2, 1, 0]]), 6), []),
    "categorical_xent_logits": (lambda x: ops.categorical_crossentropy(_XENT_T, x, from_logits=True), [X]),
    "categorical_xent_probs": (lambda p: ops.categorical_crossentropy(_XENT_T, p), [P]),
    "categorical_xent_axis0": (lambda x: ops.categorical_crossentropy(_XENT_T.T, ops.transpose(x), from_logits=True,
                                                                      axis=0), [X]),
    "binary_xent_logits": (lambda x: ops.binary_crossentropy(_BIN_T, x, from_logits=True), [X]),
    "binary_xent_probs": (lambda p: ops.binary_crossentropy(_BIN_T, p), [_PROB]),
    "loss_objects": (lambda x, p: lamina.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(
        _XENT_T, x) + lamina.losses.BinaryCrossentropy()(_BIN_T, p) + lamina.losses.Huber()(_BIN_T, x)
        + lamina.losses.KLDivergence()(_XENT_T, ops.softmax(x)), [X, _PROB]),
    # gathers and scatters (manipulation.cpp: take_along_axis; sparse.py's segments)
    "take_along_axis": (lambda x: ops.take_along_axis(x, np.array([[0, 5, 5], [1, 1, 2], [3, 0, 4], [2, 2, 2]]),
                                                      axis=1), [X]),
    "take_along_axis_axis0": (lambda x: ops.take_along_axis(x, np.array([[3, 0, 1, 1, 2, 0]]), axis=0), [X]),
    "take_along_axis_int": (lambda a: ops.take_along_axis(a, np.array([[2], [0], [3]]), axis=1), [I1]),
    "scatter_repeated": (lambda v: ops.scatter(np.array([[0, 1], [3, 2], [0, 1], [2, 0]]), v, (4, 3)),
                         [_f(4)]),
    "scatter_rows": (lambda v: ops.scatter(np.array([[1], [3], [1]]), v, (5, 6)), [_f(3, 6)]),
    "scatter_update": (lambda x, u: ops.scatter_update(x, np.array([[0, 1], [3, 5], [2, 2]]), u), [X, _f(3)]),
    "scatter_update_rows": (lambda x, u: ops.scatter_update(x, np.array([[2], [0]]), u), [X, _f(2, 6)]),
    "segment_sum": (lambda x: ops.segment_sum(x, _SEG, num_segments=5), [_f(6, 3)]),
    "segment_max": (lambda x: ops.segment_max(x, _SEG, num_segments=4), [_f(6, 3)]),
    "segment_min_prod": (lambda x: ops.segment_min(x, _SEG, num_segments=4) + ops.segment_prod(x, _SEG, num_segments=4),
                         [_f(6, 3)]),
    "slice_update": (lambda x, u: ops.slice_update(x, (1, 2), u) + ops.slice(x, (0, 1), (4, 5))[:, :1],
                     [X, _f(2, 3)]),
    "get_item_fancy": (lambda x: x[np.array([3, 0, 3]), 1:5:2] + x[None, 2, ::-1][:, :2], [X]),
    "bincount": (lambda: ops.bincount(np.array([0, 3, 3, 1, 6])), []),
    "bincount_weights": (lambda w: ops.bincount(np.array([0, 3, 3, 1, 6]), weights=w, minlength=8), [_f(5)]),
    # shapes
    "pad_constant_value": (lambda x: ops.pad(x, ((0, 2), (1, 3)), constant_values=1.5), [X]),
    "pad_reflect": (lambda x: ops.pad(x, ((1, 2), (2, 1)), mode="reflect"), [X]),
    "pad_symmetric": (lambda x: ops.pad(x, ((2, 0), (1, 3)), mode="symmetric"), [X]),
    "pad_int": (lambda a: ops.pad(a, ((1, 1), (0, 2)), constant_values=-7), [I1]),
    "split_sections": (lambda x: ops.concatenate([s * (i + 1.0) for i, s in enumerate(ops.split(x, 3, axis=1))],
                                                 axis=0), [X]),
    "split_indices_unstack": (lambda x: ops.split(x, [1, 3], axis=0)[2] + ops.unstack(x, axis=0)[1]
                              + ops.array_split(x, 4, axis=1)[3][:, :1], [X]),
    "hvd_stack_split": (lambda a, b: ops.concatenate([ops.ravel(ops.hstack([b, b])), ops.ravel(ops.vstack([b, b])),
                                                      ops.ravel(ops.dstack([b, b])),
                                                      ops.ravel(ops.hsplit(b, 2)[1]), ops.ravel(ops.vsplit(b, 2)[0])])
                        + ops.sum(a), [A, B]),
    "concatenate_axis1_int": (lambda a: ops.concatenate([a, a[:, :2] * 2], axis=1), [I1]),
    "stack_axis_last": (lambda x: ops.stack([x, x * 2.0, ops.flip(x, axis=0)], axis=-1), [X]),
    "tile_repeat": (lambda a: ops.concatenate([ops.ravel(ops.tile(a, (2, 1, 3))), ops.ravel(ops.tile(a, 2)),
                                               ops.ravel(ops.repeat(ops.repeat(a, 2, axis=0), 3, axis=2)),
                                               ops.repeat(a, 3)]), [A]),
    "repeat_counts": (lambda x: ops.repeat(x, np.array([1, 0, 2, 3]), axis=0), [X]),
    "roll_flip": (lambda x: ops.roll(x, -2, axis=1) + ops.roll(x, 5) + ops.flip(x) + ops.fliplr(x) + ops.flipud(x)
                  + ops.rot90(ops.reshape(x, (6, 4))), [X]),
    "transpose_perm": (lambda x: ops.transpose(x, (2, 0, 3, 1)), [_f(2, 3, 4, 5)]),
    "moveaxis": (lambda x: ops.moveaxis(x, 0, -1) + ops.moveaxis(ops.swapaxes(x, 1, 2), [0, 1], [2, 0]) * 0.5,
                 [_f(3, 4, 4)]),
    "expand_squeeze": (lambda a: ops.squeeze(ops.expand_dims(a, (0, 3)), axis=(0, 2)), [A]),
    "tril_triu_diag": (lambda x: ops.concatenate([ops.ravel(ops.tril(x, -1) + ops.triu(x, 2)),
                                                  ops.ravel(ops.diag(ops.diagonal(x, offset=1)) * 3.0),
                                                  ops.ravel(ops.diagflat(x[0, :2])), ops.diag(x, k=-1),
                                                  ops.reshape(ops.trace(x, offset=1), (1,))]), [X]),
    "diff": (lambda x: ops.concatenate([ops.ravel(ops.diff(x, n=2, axis=1)), ops.ravel(ops.diff(x, axis=0))]), [X]),
    "kron_outer_inner": (lambda b, c: ops.kron(b, c) + ops.sum(ops.outer(b[0], c[1])) + ops.inner(b, c[:, :4])[0, 0],
                         [B, _f(3, 4)]),
    "tensordot_dot_vdot": (lambda a, b: ops.tensordot(a, b, axes=([1], [0])) + ops.dot(a, b) + ops.vdot(a, a),
                           [_f(3, 4), _f(4, 5)]),
    "cross": (lambda a, b: ops.cross(a, b), [_f(4, 3), _f(4, 3)]),
    "depth_to_space": (lambda x: ops.space_to_depth(ops.depth_to_space(x, 2) * 2.0, 2), [_f(2, 3, 2, 8)]),
    "extract_sequences": (lambda x: ops.extract_sequences(x, 4, 3), [_f(2, 11)]),
    "unfold_fold": (lambda x: ops.fold(ops.unfold(x, 2, stride=1), (4, 5), 2, stride=1), [_f(2, 3, 4, 5)]),
    # statistics
    "var_std": (lambda x: ops.var(x, axis=0) + ops.std(x, axis=0) + ops.std(x), [X]),
    "var_keepdims": (lambda x: ops.var(x, axis=(0, 2), keepdims=True), [_f(3, 4, 5)]),
    "moments": (lambda x: ops.concatenate(list(ops.moments(x, axes=[0])), axis=0), [X]),
    "logsumexp": (lambda x: ops.logsumexp(x * 30.0, axis=1) + ops.logsumexp(x), [X]),
    "norm_vector": (lambda x: ops.norm(x, axis=1) + ops.norm(x, ord=1, axis=1) + ops.norm(x, ord=np.inf, axis=1)
                    + ops.norm(x, ord=3, axis=1), [X]),
    "norm_matrix": (lambda x: ops.norm(x) + ops.norm(x, ord="fro") + ops.norm(x, ord=1) + ops.norm(x, ord=np.inf),
                    [X]),
    "norm_nuclear_2": (lambda x: ops.norm(x, ord="nuc") + ops.norm(x, ord=2), [X]),
    "normalize": (lambda x: ops.normalize(x, axis=-1) + ops.normalize(x, axis=0, order=1), [X]),
    "rms_normalization": (lambda x, s: ops.rms_normalization(x, s, axis=-1), [X, _f(6)]),
    "layer_normalization_op": (lambda x, g, b: ops.layer_normalization(x, g, b), [X, _f(6), _f(6)]),
    "amax_amin_ptp": (lambda x: ops.amax(x, axis=0) + ops.amin(x, axis=0) + ops.ptp(x, axis=0), [X]),
    "average_weights": (lambda x: ops.average(x, axis=1, weights=np.arange(1.0, 7.0, dtype=np.float32)), [X]),
    "median_quantile": (lambda x: ops.median(x, axis=1) + ops.quantile(x, 0.3, axis=1)
                        + ops.percentile(x, 90.0, axis=1), [X]),
    "nan_reductions": (lambda x: ops.nansum(ops.where(x > 1.0, float("nan"), x), axis=0)
                       + ops.nanmean(ops.where(x > 1.0, float("nan"), x), axis=0)
                       + ops.nanmax(ops.where(x > 1.0, float("nan"), x), axis=0)
                       + ops.nanvar(ops.where(x > 1.0, float("nan"), x), axis=0), [X]),
    "nancumsum": (lambda x: ops.nancumsum(ops.where(x > 1.0, float("nan"), x), axis=1), [X]),
    "nanargmax": (lambda x: ops.nanargmax(ops.where(x > 1.0, float("nan"), x), axis=1), [X]),
    "count_nonzero": (lambda x: ops.count_nonzero(ops.where(x > 0.3, x, 0.0), axis=1), [X]),
    "count_nonzero_all": (lambda a: ops.count_nonzero(a), [I1]),
    "nonzero": (lambda x: ops.stack(list(ops.nonzero(x > 0.5))), [X]),
    "unique": (lambda a: ops.unique(a), [I1]),
    "unique_counts": (lambda a: ops.concatenate([ops.cast(t, "int64") for t in ops.unique(
        ops.reshape(a, (-1,)), return_index=True, return_inverse=True, return_counts=True)]), [I1]),
    "histogram": (lambda x: ops.concatenate([ops.cast(ops.histogram(ops.ravel(x), bins=5, range=(-2.0, 2.0))[0],
                                                      "float32"), ops.histogram(ops.ravel(x), bins=4)[1]]), [X]),
    "isin_isclose": (lambda a: ops.cast(ops.isin(a, np.array([0, 3, -2])), "int32")
                     + ops.cast(ops.isclose(ops.cast(a, "float32"), 1.0), "int32"), [I1]),
    # convolutions and pooling
    "conv_transpose_valid": (lambda x, k: ops.conv_transpose(x, k, strides=(2, 3)),
                             [_f(2, 3, 4, 3), _f(2, 3, 5, 3)]),
    "conv_transpose_output_padding": (lambda x, k: ops.conv_transpose(x, k, strides=2, padding="same",
                                                                     output_padding=1),
                                      [_f(1, 3, 3, 2), _f(3, 3, 4, 2)]),
    "conv_transpose1d": (lambda x, k: ops.conv_transpose(x, k, strides=2, padding="same"), [_f(2, 5, 3), _f(3, 4, 3)]),
    "conv_transpose_dilation": (lambda x, k: ops.conv_transpose(x, k, dilation_rate=2),
                                [_f(1, 4, 4, 2), _f(3, 3, 3, 2)]),
    "separable_conv": (lambda x, d, p: ops.separable_conv(x, d, p, padding="same"),
                       [_f(2, 6, 5, 3), _f(3, 3, 3, 2), _f(1, 1, 6, 4)]),
    "separable_conv_stride2": (lambda x, d, p: ops.separable_conv(x, d, p, strides=2),
                               [_f(2, 7, 7, 2), _f(3, 3, 2, 1), _f(1, 1, 2, 5)]),
    "separable_conv1d": (lambda x, d, p: ops.separable_conv(x, d, p, padding="same"),
                         [_f(2, 9, 3), _f(3, 3, 2), _f(1, 6, 4)]),
    "depthwise_conv1d": (lambda x, k: ops.depthwise_conv(x, k, padding="same"), [_f(2, 9, 3), _f(3, 3, 2)]),
    "conv3d": (lambda x, k: ops.conv(x, k, padding="same"), [_f(1, 4, 5, 3, 2), _f(3, 2, 3, 2, 3)]),
    "conv2d_channels_first": (lambda x, k: ops.conv(x, k, padding="same", data_format="channels_first"),
                              [_f(2, 3, 5, 6), _f(3, 3, 3, 4)]),
    "max_pool1d": (lambda x: ops.max_pool(x, 3, strides=2), [_f(2, 11, 3)]),
    "max_pool1d_same": (lambda x: ops.max_pool(x, 2, padding="same"), [_f(2, 9, 4)]),
    "average_pool1d_valid": (lambda x: ops.average_pool(x, 3), [_f(2, 10, 3)]),
    "pool3d": (lambda x: ops.max_pool(x, 2) + ops.average_pool(x, 2), [_f(1, 4, 4, 6, 2)]),
    "pool_channels_first": (lambda x: ops.max_pool(x, 2, data_format="channels_first")
                            + ops.average_pool(x, 2, data_format="channels_first"), [_f(2, 3, 6, 4)]),
    "adaptive_pools": (lambda x: ops.adaptive_average_pool(x, (2, 3)) + ops.adaptive_max_pool(x, (2, 3)),
                       [_f(2, 5, 7, 3)]),
    # image
    "resize_bilinear_up": (lambda x: ops.image.resize(x, (9, 7)), [_IMG]),
    "resize_bilinear_down": (lambda x: ops.image.resize(x, (3, 2)), [_IMG]),
    "resize_bilinear_antialias": (lambda x: ops.image.resize(x, (3, 2), antialias=True), [_IMG]),
    "resize_nearest": (lambda x: ops.image.resize(x, (9, 4), interpolation="nearest"), [_IMG]),
    "resize_bicubic": (lambda x: ops.image.resize(x, (8, 7), interpolation="bicubic"), [_IMG]),
    "resize_crop_aspect": (lambda x: ops.image.resize(x, (4, 4), crop_to_aspect_ratio=True), [_IMG]),
    "affine_transform": (lambda x: ops.image.affine_transform(
        x, np.array([[0.9, 0.1, 0.5, -0.2, 1.1, 0.3, 0.0, 0.0]], np.float32)), [_IMG]),
    "map_coordinates": (lambda x: ops.image.map_coordinates(x, np.array([[0.3, 2.7, 4.0], [1.5, 0.2, 3.9]],
                                                                        np.float32), 1), [_f(6, 5)]),
    "color_conversions": (lambda x: ops.image.rgb_to_grayscale(x) + ops.image.hsv_to_rgb(ops.image.rgb_to_hsv(x)),
                          [_RGB]),
    "gaussian_blur": (lambda x: ops.image.gaussian_blur(x, (3, 5), (1.0, 0.7)), [_IMG]),
    "sobel_edges": (lambda x: ops.image.sobel_edges(x), [_IMG]),
    "extract_patches": (lambda x: ops.image.extract_patches(x, (2, 2), strides=(2, 1)), [_IMG]),
    "crop_pad_images": (lambda x: ops.image.pad_images(ops.image.crop_images(x, 1, 1, target_height=3, target_width=3),
                                                       2, 0, target_height=6, target_width=4), [_IMG]),
    "ssim_psnr": (lambda x, y: ops.image.ssim(x, y, filter_size=3) + ops.psnr(x, y, 1.0), [_RGB, _u(0, 1, 2, 4, 5, 3)]),
    # einsum
    "einsum_batch_matmul": (lambda a, b: ops.einsum("bij,bjk->bik", a, b), [_f(2, 3, 4), _f(2, 4, 5)]),
    "einsum_reduce_transpose": (lambda a, b: ops.einsum("ijk,kj->ki", a, b) + ops.einsum("iik->k", a[:, :3])[:, None],
                                [_f(3, 4, 2), _f(2, 4)]),
    "einsum_ellipsis_broadcast": (lambda a, b: ops.einsum("...ij,j->...i", a, b), [_f(2, 3, 4), _f(4)]),
    "einsum_outer_trace": (lambda a, b: ops.einsum("i,j->ij", a, b) + ops.einsum("ii", ops.reshape(a[:4], (2, 2))),
                           [_f(5), _f(3)]),
    # linalg (linalg_decomp.cpp)
    "solve": (lambda a, b: ops.solve(a, b), [_spd(4) + _f(4, 4, scale=0.3), _f(4, 3)]),
    "solve_batched_vector": (lambda a, b: ops.solve(a, b), [np.stack([_spd(3), _spd(3)]), _f(2, 3, 1)]),
    "solve_triangular": (lambda a, b: ops.solve_triangular(a, b, lower=True) + ops.solve_triangular(a, b),
                         [_spd(4), _f(4, 2)]),
    "inv": (lambda a: ops.inv(a), [_spd(4) + _f(4, 4, scale=0.3)]),
    "inv_batched": (lambda a: ops.inv(a), [np.stack([_spd(3), _spd(3)])]),
    "cholesky": (lambda a: ops.cholesky((a + ops.transpose(a)) * 0.5), [_spd(5)]),
    "cholesky_upper_inverse": (lambda a: ops.cholesky(a, upper=True) + ops.cholesky_inverse(ops.cholesky(a)),
                               [_spd(4)]),
    "qr": (_qr, [_f(5, 3)]),
    "qr_wide_batched": (_qr, [_f(2, 3, 4)]),
    "qr_complete": (lambda a: ops.matmul(*ops.qr(a, mode="complete")), [_f(5, 3)]),
    "svd": (_svd, [_f(5, 3)]),
    "svd_values": (lambda a: ops.svd(a, compute_uv=False), [_f(2, 3, 4)]),
    "eigh": (_eigh, [_spd(4)]),
    "det_slogdet_logdet": (lambda a: ops.stack([ops.det(a), ops.slogdet(a)[1], ops.logdet(a)]), [_spd(4)]),
    "det_batched": (lambda a: ops.det(a), [_f(3, 3, 3)]),
    "lstsq": (lambda a, b: ops.lstsq(a, b), [_f(6, 3), _f(6, 2)]),
    "pinv": (lambda a: ops.pinv(a), [_f(4, 3)]),
    "lu_factor": (lambda a: ops.lu_factor(a)[0], [_spd(4) + _f(4, 4, scale=0.3)]),
    "lu_pivots": (lambda a: ops.lu_factor(a)[1], [_spd(4) + _f(4, 4, scale=0.3)]),
    "matrix_rank": (lambda a: ops.matrix_rank(ops.matmul(a, ops.transpose(a))), [_f(5, 3)]),
    # fft (fft.cpp)
    "fft": (lambda re, im: _fft_out(ops.fft((re, im))), [_f(3, 8), _f(3, 8)]),
    "fft_odd": (lambda re, im: _fft_out(ops.fft((re, im))), [_f(2, 7), _f(2, 7)]),
    "fft2_ifft2": (lambda re, im: _fft_out(ops.fft2((re, im))) + _fft_out(ops.ifft2((re, im))),
                   [_f(2, 4, 6), _f(2, 4, 6)]),
    "rfft": (lambda x: _fft_out(ops.rfft(x)), [_f(3, 10)]),
    "rfft_length": (lambda x: _fft_out(ops.rfft(x, fft_length=12)), [_f(3, 9)]),
    "irfft": (lambda re, im: ops.irfft((re, im)), [_f(2, 5), _f(2, 5)]),
    "irfft_length": (lambda re, im: ops.irfft((re, im), fft_length=7), [_f(2, 4), _f(2, 4)]),
    "stft": (lambda x: _fft_out(ops.stft(x, 8, 4, 8)), [_f(2, 32)]),
    "istft": (lambda x: ops.istft(ops.stft(x, 8, 4, 8), 8, 4, 8), [_f(2, 32)]),
    # selections
    "select": (lambda x: ops.select([x < -0.5, x > 0.5], [x * 2.0, x * x], default=x + 1.0), [X]),
    "where_scalar_broadcast": (lambda a, b: ops.where(b > 0, a, 0.5) + ops.where(a > 0.2, 1.0, b), [A, B]),
    "where_int": (lambda a, b: ops.where(a > b, a, b * 2), [I1, I2]),
    "clip_tensor_bounds": (lambda x: ops.clip(x, -0.3, 0.3) + ops.clip(x, 0.0, 1.0) * 2.0, [X]),
    "clip_int": (lambda a: ops.clip(a, -2, 3), [I1]),
    "nan_to_num": (lambda x: ops.nan_to_num(ops.log(x), nan=-1.0, posinf=9.0, neginf=-9.0), [X]),
    "isfinite_isinf": (lambda x: ops.cast(ops.isfinite(ops.log(x)), "int32") + ops.cast(ops.isinf(ops.log(x)), "int32")
                       + ops.cast(ops.isneginf(ops.log(ops.abs(x) - ops.abs(x))), "int32"), [X]),
    "saturate_cast": (lambda x: ops.saturate_cast(x * 100.0, "int32") + ops.cast(ops.saturate_cast(x * 1e3, "uint8"),
                                                                                 "int32"), [X]),
    "divide_no_nan": (lambda a, b: ops.divide_no_nan(a, ops.where(ops.abs(b) < 0.5, 0.0, b)), [A, B]),
    # special and elementwise functions (special.py)
    "erfinv": (lambda x: ops.erfinv(x), [_u(-0.95, 0.95, 4, 6)]),
    "erfc_i0": (lambda x: ops.erfc(x) + ops.i0(x), [X]),
    "inverse_trig": (lambda p: ops.arcsin(p) + ops.arccos(p) + ops.arctan(p) + ops.arctanh(p)
                     + ops.arccosh(p + 1.0) + ops.arcsinh(p), [_POS_SMALL]),
    "hyperbolic_tan": (lambda x: ops.sinh(x) + ops.cosh(x) + ops.tan(x * 0.4), [X]),
    "exp_log_variants": (lambda p: ops.exp2(p) + ops.expm1(p) + ops.log2(p) + ops.log10(p) + ops.cbrt(p - 0.5)
                         + ops.rsqrt(p) + ops.sinc(p) + ops.deg2rad(p) + ops.rad2deg(p) * 0.01, [P]),
    "ceil_trunc_signbit": (lambda x: ops.ceil(x * 3) + ops.trunc(x * 3) + ops.cast(ops.signbit(x), "float32"), [X]),
    "binary_float_functions": (lambda a, b: ops.hypot(a, b) + ops.fmod(a, b + 3.0) + ops.copysign(a, b)
                               + ops.fmax(a, b) + ops.fmin(a, b) + ops.logaddexp(a, b) + ops.logaddexp2(a, b)
                               + ops.heaviside(a, 0.5) * 0.1, [A, B]),
    "nextafter": (lambda a, b: ops.nextafter(a, b), [A, B]),
    "ldexp": (lambda a: ops.ldexp(a, np.array([1, -2, 0, 3], np.int32)), [A]),
    "more_activations": (lambda x: ops.celu(x) + ops.hard_shrink(x) + ops.soft_shrink(x) + ops.hard_silu(x)
                         + ops.hard_tanh(x) + ops.log_sigmoid(x) + ops.sparse_plus(x) + ops.sparse_sigmoid(x)
                         + ops.squareplus(x) + ops.tanh_shrink(x) + ops.threshold(x, 0.2, -1.0) + ops.swish(x), [X]),
    "glu": (lambda x: ops.glu(x), [X]),
    "sparsemax": (lambda x: ops.sparsemax(x * 2.0), [X]),
    "gelu_approximate": (lambda x: ops.gelu(x, approximate=False) + ops.gelu(x, approximate=True), [X]),
    # integer ops
    "bitwise": (lambda a, b: ops.bitwise_and(a, b) + ops.bitwise_or(a, b) * 3 + ops.bitwise_xor(a, b) * 7
                + ops.bitwise_invert(a), [_I3, _I3B]),
    "shifts": (lambda a, b: ops.left_shift(a, b % 5) + ops.right_shift(a * 1000, b % 7), [_I3, _I3B]),
    "gcd_lcm": (lambda a, b: ops.gcd(a, b) + ops.lcm(a % 9, b % 9), [_I3, _I3B]),
    "int_mod_abs_sign": (lambda a, b: ops.mod(a, b) + ops.abs(a) * ops.sign(a) + ops.square(a) + ops.maximum(a, b),
                         [I1, I2]),
    "int64_arith": (lambda a: a * a - (a // 3) + ops.cumsum(a, axis=1), [Q.integers(-1 << 20, 1 << 20, size=(3, 4))]),
    "bool_logic": (lambda x: ops.cast(ops.logical_and(x > 0, ops.logical_not(x > 1)), "int32")
                   + ops.cast(ops.logical_or(x < -1, ops.equal(x, x)), "int32") + ops.cast(ops.not_equal(x, 0.0),
                                                                                          "int32"), [X]),
    "unravel_index": (lambda: ops.stack(list(ops.unravel_index(np.array([0, 5, 11, 23]), (2, 3, 4)))), []),
    # creation ops (on the device in scope)
    "creation": (lambda x: x + ops.arange(6, dtype="float32") + ops.linspace(-1.0, 2.0, 6) + ops.eye(4, 6)
                 + ops.tri(4, 6) + ops.full((4, 6), 0.5) + ops.zeros_like(x) + ops.ones_like(x)
                 + ops.logspace(0.0, 1.0, 6) + ops.geomspace(1.0, 10.0, 6), [X]),
    "creation_int": (lambda: ops.concatenate([ops.arange(3, 20, 4), ops.cast(ops.ravel(ops.identity(3)), "int64"),
                                              ops.cast(ops.ravel(ops.tri(3, 4, k=1, dtype="int32")), "int64"),
                                              ops.full((2,), 7, dtype="int64")]), []),
    "windows": (lambda: ops.stack([ops.hamming(7), ops.hanning(7), ops.blackman(7), ops.bartlett(7),
                                   ops.kaiser(7, 3.0)]), []),
    "meshgrid_vander": (lambda a, b: ops.meshgrid(a, b)[0] * ops.meshgrid(a, b, indexing="xy")[1]
                        + ops.vander(a, 3)[:, :1].sum(), [_f(4), _f(3)]),
    "cdist_corrcoef_correlate": (lambda a, b: ops.concatenate([ops.reshape(ops.cdist(a, b), (-1,)),
                                                               ops.reshape(ops.corrcoef(a), (-1,)),
                                                               ops.correlate(a[0], b[0, :2], mode="full")]),
                                 [_f(3, 4), _f(2, 4)]),
    "trapezoid": (lambda x: ops.trapezoid(x, axis=1), [X]),
    # control flow and autodiff utilities
    "control_flow": (lambda x: ops.cond(ops.sum(x) > 0, lambda: x * 2.0, lambda: x - 1.0)
                     + ops.fori_loop(0, 3, lambda i, v: v * 0.5 + x, x)
                     + ops.while_loop(lambda v: ops.sum(v) < 100.0, lambda v: (v + 1.0,), (x,), maximum_iterations=4)[0]
                     + ops.switch(1, [lambda v: v, lambda v: ops.sin(v)], x), [X]),
    "scan_map": (lambda x: ops.scan(lambda c, r: (c * 0.9 + r, c * r), ops.zeros((6,)), x)[1]
                 + ops.map(lambda r: r * ops.sum(r), x) + ops.associative_scan(lambda a, b: a + b, x, axis=0)
                 + ops.vectorized_map(lambda r: ops.softmax(r), x), [X]),
    "stop_gradient": (lambda x: x * ops.stop_gradient(x) + ops.stop_gradient(x * 3.0), [X]),
    # layers with their own ops
    "group_normalization_layer": (lambda x: lamina.layers.GroupNormalization(groups=2, epsilon=1e-5)(x),
                                  [_f(2, 3, 4, 6)]),
    "group_normalization_channels_first": (lambda x: lamina.layers.GroupNormalization(groups=3, axis=1)(x + 2.0),
                                           [_f(2, 6, 5)]),
    "unit_normalization_layer": (lambda x: lamina.layers.UnitNormalization(axis=-1)(x)
                                 + lamina.layers.UnitNormalization(axis=(0, 1))(x), [X]),
    "rms_normalization_layer": (lambda x: lamina.layers.RMSNormalization()(x), [_f(2, 3, 7)]),
    "normalization_layer_adapt": (lambda x: lamina.layers.Normalization(mean=0.5, variance=2.0)(x), [X]),
    "attention_layers": (lambda q, v: lamina.layers.Attention()([q, v])
                         + lamina.layers.AdditiveAttention(use_scale=False)([q, v]),
                         [_f(2, 3, 4), _f(2, 5, 4)]),
    "ctc_loss": (lambda x: ops.ctc_loss(np.array([[1, 2, 2], [3, 1, 0]]), x, np.array([3, 2]), np.array([7, 6])),
                 [_f(2, 7, 5)]),
    "ctc_decode_greedy": (lambda x: ops.ctc_decode(x, np.array([7, 6]))[0][0], [_f(2, 7, 5)]),
    # the rest of ops / ops.numpy / ops.image
    "append_copy_rearrange": (lambda a, b: ops.concatenate([ops.append(b, b[:1], axis=0)[2], ops.append(a, b),
                                                            ops.ravel(ops.rearrange(ops.copy(b), "i j -> j i"))])
                              + ops.fabs(ops.sum(a)), [A, B]),
    "real_imag_conj_angle": (lambda x: ops.real(x) + ops.conj(x) * 2.0 + ops.imag(x) + ops.angle(x), [X]),
    "more_nan_reductions": (lambda x: ops.concatenate(
        [f(ops.where(x > 1.0, float("nan"), x), axis=0) for f in (ops.nanmin, ops.nanprod, ops.nanstd, ops.nanmedian)]
        + [ops.ravel(ops.nancumprod(ops.where(x > 1.0, float("nan"), x), axis=0))]), [X]),
    "custom_gradient": (lambda x: _log1pexp(x) * 2.0, [X]),
    "image_warps": (lambda x: ops.image.perspective_transform(x, np.array([[0, 0], [4, 0], [0, 5], [4, 5]], np.float32),
                                                              np.array([[0.5, 0], [4, 0.3], [0, 5], [3.6, 4.8]],
                                                                       np.float32))
                    + ops.image.scale_and_translate(x, (2, 6, 5, 3), (1.3, 0.8), (0.5, -0.2), (1, 2), "bilinear"),
                    [_IMG]),
    "elastic_transform": (lambda x: ops.image.elastic_transform(x, alpha=2.0, sigma=1.0, seed=23), [_IMG]),
    "extract_patches_3d": (lambda x: ops.image.extract_patches_3d(x, (2, 2, 2), strides=(1, 2, 2)),
                           [_f(1, 3, 4, 4, 2)]),
})


@ops.custom_gradient
def _log1pexp(x):
    e = ops.exp(x)

    def grad(upstream):
        return upstream * (1.0 - 1.0 / (1.0 + e))
    return ops.log(1.0 + e), grad
# New cases whose inputs are float32 but whose result is an integer or boolean tensor cast to an
# integer, or whose op has no gradient in lamina (lu_factor, nextafter, histogram's bin edges,
# qr's complete Q of a tall matrix), or a zero one (ceil / trunc / signbit): forward only.
_FORWARD_ONLY = ("argsort", "argsort_axis0", "top_k_indices", "in_top_k", "searchsorted", "digitize", "nanargmax",
                 "count_nonzero", "nonzero", "histogram", "qr_complete", "lu_factor", "lu_pivots", "matrix_rank",
                 "isfinite_isinf", "saturate_cast", "ceil_trunc_signbit", "nextafter", "bool_logic",
                 "ctc_decode_greedy")


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_cpu(name, dev):
    fn, inputs = CASES[name]
    want = _run(fn, inputs, "cpu:0", grad=False)
    got = _run(fn, inputs, dev, grad=False)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        if w.dtype.kind == "f":
            # absolute error grows with the terms summed: an output of a 70-term product that
            # cancels to ~0 differs between summation orders by ~1e-6 of the largest outputs
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6 * max(1.0, float(np.abs(w).max(initial=0))))
        else:
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("name", sorted(n for n in CASES if all(x.dtype == np.float32 for x in CASES[n][1])
                                        and n not in ("compare", "logical", "argmax", "any_all", "isnan",
                                                      "cast_float_int", "unary_floor", "unary_round", "unary_sign",
                                                      "floor_divide", "take_bool") + _FORWARD_ONLY
                                        and CASES[n][1]))
def test_gradients_match_cpu(name, dev):
    fn, inputs = CASES[name]
    want = _run(fn, inputs, "cpu:0", grad=True)
    got = _run(fn, inputs, dev, grad=True)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_results_stay_on_the_device(dev):
    with lamina.device(dev):
        x = lamina.convert_to_tensor(X)
        y = ops.sort(ops.softmax(x) + 1.0, axis=0)  # sort has no kernel of its own on every device
    assert x.device is dev and y.device is dev


def test_copies_between_devices_and_the_host(devices):
    d0, d1 = devices
    with lamina.device(d0):
        x = lamina.Variable(X)
    with lamina.GradientTape() as tape:
        y = x.to(d1)
        z = ops.sum(y.to("cpu:0") * 2.0) + ops.sum(y * y).to("cpu:0")
    assert y.device is d1
    np.testing.assert_array_equal(y.numpy(), X)
    g = tape.gradient(z, x)
    assert g.device is d0
    np.testing.assert_allclose(g.numpy(), 2.0 + 2 * X, rtol=1e-6)
    # in-place updates on the device (optimizer slots, assign) are seen by later reads
    x.assign_add(np.ones_like(X))
    np.testing.assert_allclose(x.numpy(), X + 1, rtol=1e-6)


def test_labels_out_of_range_raise_on_the_device(dev):
    with lamina.device(dev):
        logits = lamina.convert_to_tensor(X)
        with pytest.raises(ValueError, match="out of range for 6 classes"):
            ops.sparse_categorical_crossentropy(np.array([0, 6, 1, 2]), logits, from_logits=True).numpy()
        # the device still works after the error
        assert float(ops.sum(logits)) == pytest.approx(float(X.sum()), rel=1e-5)


def test_embedding_ids_out_of_range_raise_on_the_device(dev):
    table = R.normal(size=(10, 4)).astype(np.float32)
    with lamina.device(dev):
        t = lamina.convert_to_tensor(table)
        with pytest.raises(ValueError, match="id 10 at flat index 2 is out of range for 10 rows"):
            ops.embedding_lookup(t, np.array([0, 9, 10, 1, 12], np.int32)).numpy()
        with pytest.raises(ValueError, match=r"id -1 at flat index 1 .*negative values are not allowed"):
            ops.embedding_lookup(t, np.array([3, -1], np.int64)).numpy()
        with pytest.raises(IndexError, match="out of bounds"):
            ops.take(t, np.array([0, 10]), axis=0).numpy()
        with pytest.raises(IndexError, match="out of bounds"):
            ops.take(t, np.array([-11]), axis=0).numpy()
        # the device still works after the errors
        np.testing.assert_array_equal(ops.embedding_lookup(t, np.array([9, 0])).numpy(), table[[9, 0]])


def _draws(device):
    """Random draws with fixed seeds (and a SeedGenerator's sequence) on `device`, as numpy."""
    from lamina.backend.random import SeedGenerator
    out = {}
    with lamina.device(device):
        out["uniform"] = lamina.random.uniform((5, 37), minval=-2.0, maxval=3.0, seed=11)
        out["uniform_narrow"] = lamina.random.uniform((1001,), minval=1.0, maxval=1.0000001, seed=3)
        out["normal"] = lamina.random.normal((3, 333), mean=0.5, stddev=2.0, seed=12)
        out["truncated_normal"] = lamina.random.truncated_normal((7, 129), mean=-1.0, stddev=0.5, seed=13)
        out["randint32"] = lamina.random.randint((5, 37), -5, 17, seed=14)
        out["randint64"] = lamina.random.randint((1001,), -(1 << 40), 1 << 50, dtype="int64", seed=15)
        gen = SeedGenerator(99)
        out["gen_a"] = lamina.random.normal((17,), seed=gen)
        out["gen_b"] = lamina.random.uniform((17,), seed=gen)
        x = lamina.Variable(np.linspace(-1, 1, 6 * 43, dtype=np.float32).reshape(6, 43))
        layer = lamina.layers.Dropout(0.3, seed=7)
        with lamina.GradientTape() as tape:
            y = layer(x, training=True)
            y2 = layer(x, training=True)  # the layer's generator moves on: a different mask
            z = lamina.random.dropout(x, 0.6, noise_shape=(None, 1), seed=8)  # dropout_mask
            loss = ops.sum(y * y) + ops.sum(y2) + ops.sum(z * 3.0)
        out["dropout"], out["dropout2"], out["dropout_noise_shape"] = y, y2, z
        out["dropout_grad"] = tape.gradient(loss, x)
        # categorical and shuffle (no CUDA kernel: the host's draws), the other dropout layers
        logits = lamina.convert_to_tensor(np.log(np.linspace(0.05, 1.0, 3 * 7, dtype=np.float32)).reshape(3, 7))
        out["categorical"] = lamina.random.categorical(logits, 500, seed=16)
        out["categorical_int64_gen"] = lamina.random.categorical(logits * 3.0, 9, dtype="int64", seed=gen)
        out["shuffle_axis0"] = lamina.random.shuffle(ops.reshape(ops.arange(40), (10, 4)), seed=17)
        out["shuffle_axis1"] = lamina.random.shuffle(x, axis=1, seed=gen)
        x4 = lamina.Variable(np.linspace(-1, 1, 2 * 5 * 6 * 8, dtype=np.float32).reshape(2, 5, 6, 8))
        with lamina.GradientTape() as tape:
            noisy = [lamina.layers.SpatialDropout1D(0.4, seed=18)(ops.reshape(x, (6, 1, 43)) * ops.ones((1, 3, 1)),
                                                                  training=True),
                     lamina.layers.SpatialDropout2D(0.5, seed=19)(x4, training=True),
                     lamina.layers.GaussianDropout(0.3, seed=20)(x4, training=True),
                     lamina.layers.AlphaDropout(0.2, seed=21)(x4, training=True),
                     lamina.layers.GaussianNoise(0.5, seed=22)(x4, training=True)]
            loss = ops.sum(noisy[0] * noisy[0]) + ops.sum(noisy[1]) + ops.sum(noisy[2] * noisy[3] + noisy[4] * 3.0)
        for name, t in zip(("spatial_dropout1d", "spatial_dropout2d", "gaussian_dropout", "alpha_dropout",
                            "gaussian_noise"), noisy):
            out[name] = t
        out["noise_grad_x"], out["noise_grad_x4"] = tape.gradient(loss, [x, x4])
        return {k: v.numpy() for k, v in out.items()}


def test_random_draws_match_cpu_bit_for_bit(dev):
    """The same seed gives the same numbers on every device (the CPU's Philox streams; the
    normals follow glibc's logf / sincosf, see csrc/cuda/philox.cuh)."""
    want, got = _draws("cpu:0"), _draws(dev)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert np.abs(want["truncated_normal"] + 1.0).max() <= 1.0
    assert not np.array_equal(want["dropout"], want["dropout2"])
    assert 0.5 < np.mean(want["dropout"] != 0) < 0.9
    # the draws are the expected distributions: categorical follows softmax(logits), shuffle permutes
    # along its axis, the spatial dropouts drop whole channels
    freq = np.stack([np.bincount(r, minlength=7) for r in want["categorical"]]) / 500.0
    p = np.linspace(0.05, 1.0, 21).reshape(3, 7)
    np.testing.assert_allclose(freq, p / p.sum(axis=1, keepdims=True), atol=0.08)
    np.testing.assert_array_equal(np.sort(want["shuffle_axis0"], axis=0), np.arange(40).reshape(10, 4))
    assert not np.array_equal(want["shuffle_axis0"], np.arange(40).reshape(10, 4))
    d1, d2 = want["spatial_dropout1d"], want["spatial_dropout2d"]
    assert ((d1 == 0).all(axis=1) | (d1 != 0).all(axis=1)).all() and 0 < np.mean(d1 == 0) < 1
    assert ((d2 == 0).all(axis=(1, 2)) | (d2 != 0).all(axis=(1, 2))).all() and 0 < np.mean(d2 == 0) < 1


def _rejection_draws(device):
    with lamina.device(device):
        alpha = lamina.convert_to_tensor(np.linspace(0.05, 40.0, 7, dtype=np.float32))
        return {"gamma": lamina.random.gamma((301, 7), alpha, seed=31).numpy(),
                "beta": lamina.random.beta((1001,), 0.3, 2.5, seed=32).numpy(),
                "binomial_waiting": lamina.random.binomial((1001,), 25, 0.2, seed=33).numpy(),
                "binomial_btrs": lamina.random.binomial((3, 333), np.array([100.0, 5000.0, 70.0], np.float32)[:, None],
                                                        0.7, seed=34).numpy()}


def test_gamma_beta_binomial_match_cpu(dev):
    """Rejection samplers (csrc/random_dists.h): each element retries on its own Philox blocks, in
    double precision on both devices, so a seed gives the CPU's numbers (to float rounding: the
    devices' double logs may differ in their last bit)."""
    want, got = _rejection_draws("cpu:0"), _rejection_draws(dev)
    for k in want:
        assert got[k].shape == want[k].shape, k
        np.testing.assert_allclose(got[k], want[k], rtol=3e-7, atol=1e-30, err_msg=k)


def _optimizer_steps(device, make):
    """Three steps of the optimizer `make()` on two variables (a matrix and an odd-sized bias)."""
    opt = make()
    with lamina.device(device):
        vs = [lamina.Variable(np.linspace(-1, 1, 37 * 5, dtype=np.float32).reshape(37, 5)),
              lamina.Variable(np.linspace(0.5, -0.5, 7, dtype=np.float32))]
        for step in range(3):
            gs = [lamina.convert_to_tensor(np.cos(np.arange(v.numpy().size, dtype=np.float32) * (step + 1))
                                           .reshape(v.shape)) for v in vs]
            opt.apply_gradients(list(zip(gs, vs)))
        return [v.numpy() for v in vs]


@pytest.mark.parametrize("name", ["rmsprop", "rmsprop_centered_momentum", "adagrad"])
def test_optimizers_match_cpu(name, dev):
    O = lamina.optimizers
    make = {"rmsprop": lambda: O.RMSprop(learning_rate=0.01),
            "rmsprop_centered_momentum": lambda: O.RMSprop(learning_rate=0.01, momentum=0.9, centered=True),
            "adagrad": lambda: O.Adagrad(learning_rate=0.1)}[name]
    for g, w in zip(_optimizer_steps(dev, make), _optimizer_steps("cpu:0", make)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_memory_is_reused_and_reported(dev):
    with lamina.device(dev):
        for _ in range(3):
            y = ops.matmul(lamina.convert_to_tensor(X), lamina.convert_to_tensor(X.T))
        assert y.shape == (4, 4)
    stats = dev.kernels.memory_stats()
    assert stats["in_use"] > 0 and "cached" in stats


def test_device_random_arithmetic_gives_the_cpu_numbers_on_the_host():
    """The GPU's uniform / normal / truncated normal arithmetic (csrc/cuda/philox.cuh spells out
    glibc's logf and sincosf), computed on the host: bit for bit the CPU module's numbers. It runs
    without a GPU, so a C library whose logf / sincosf round differently shows up here."""
    cuda = pytest.importorskip("lamina.backend._cuda")
    from lamina.backend import _cpu, dtypes
    from lamina.backend.tensor import empty
    cpu = lamina.get_device("cpu:0")
    n = 100_003
    for seed, counter in ((0, 0), (1234567890123, 5), (2**63 + 17, 2**40 + 3)):
        out = empty((n,), dtypes.FLOAT32, cpu)
        _cpu.random_uniform(seed, counter, -0.25, 3.0, out._buf)
        np.testing.assert_array_equal(np.asarray(cuda._host_random_uniform(seed, counter, -0.25, 3.0, n),
                                                 np.float32), out.numpy())
        for truncated in (False, True):
            _cpu.random_normal(seed, counter, 0.5, 1.7, truncated, out._buf)
            got = np.asarray(cuda._host_random_normal(seed, counter, 0.5, 1.7, truncated, n), np.float32)
            np.testing.assert_array_equal(got.view(np.uint32), out.numpy().view(np.uint32))
