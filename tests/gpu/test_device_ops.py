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
    "sort": (lambda x: ops.sort(x, axis=-1), [X]),
    "take": (lambda x: ops.take(x, np.array([3, 0, 0, 2]), axis=0), [X]),
    "concatenate": (lambda a, b: ops.concatenate([a[0], b], axis=0), [A, B]),
    "slice_transpose": (lambda x: ops.transpose(x[1:3, ::2]), [X]),
    "pad_flip_roll": (lambda x: ops.roll(ops.flip(ops.pad(x, ((1, 0), (2, 1))), axis=1), 3, axis=0), [X]),
    "stack_tile_repeat": (lambda a, b: ops.stack([ops.tile(b, (1, 2)), ops.repeat(b, 2, axis=1)]) + ops.sum(a), [A, B]),
    "swapaxes_reshape": (lambda a: ops.reshape(ops.swapaxes(ops.broadcast_to(a, (3, 2, 4)), 0, 2), (4, 6)), [A]),
}
for _name in ("exp", "tanh", "sigmoid", "relu", "gelu", "silu", "softplus", "elu", "selu", "leaky_relu", "relu6",
              "hard_sigmoid", "softsign", "abs", "sign", "square", "sin", "cos", "floor", "round", "erf", "negative"):
    _fn = getattr(ops, _name, None) or getattr(lamina.activations, _name)
    CASES["unary_" + _name] = (_fn, [X])
CASES["unary_log"] = (lambda p: ops.log(p) + ops.sqrt(p) + ops.log1p(p) + ops.reciprocal(p), [P])
CASES["isnan"] = (lambda x: ops.cast(ops.isnan(ops.log(x)), "int32"), [X])


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
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)
        else:
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("name", sorted(n for n in CASES if all(x.dtype == np.float32 for x in CASES[n][1])
                                        and n not in ("compare", "logical", "argmax", "any_all", "isnan",
                                                      "cast_float_int", "unary_floor", "unary_round", "unary_sign",
                                                      "floor_divide", "sort")))
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


def test_memory_is_reused_and_reported(dev):
    with lamina.device(dev):
        for _ in range(3):
            y = ops.matmul(lamina.convert_to_tensor(X), lamina.convert_to_tensor(X.T))
        assert y.shape == (4, 4)
    stats = dev.kernels.memory_stats()
    assert stats["in_use"] > 0 and "cached" in stats
