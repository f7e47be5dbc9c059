"""Every op family on a device under test (tests/gpu/conftest.py) against cpu:0: forward values
and gradients, copies between devices, errors raised on the device, memory statistics."""
import numpy as np
import pytest

import lamina
from lamina import ops

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


def _run(fn, inputs, device, grad):
    with lamina.device(device):
        ts = [lamina.Variable(x) if (grad and x.dtype == np.float32) else lamina.convert_to_tensor(x) for x in inputs]
        if not grad:
            out = fn(*ts)
            return [o.numpy() for o in (out if isinstance(out, (list, tuple)) else [out])]
        with lamina.GradientTape() as tape:
            out = fn(*ts)
            w = lamina.convert_to_tensor(np.linspace(-1, 1, int(np.prod(out.shape)), dtype=np.float32).reshape(out.shape))
            loss = ops.sum(out * w)
        fs = [t for t in ts if isinstance(t, lamina.Variable)]
        return [g.numpy() for g in tape.gradient(loss, fs)]


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
                                                      "floor_divide", "sort", "take_bool")))
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
