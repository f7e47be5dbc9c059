"""Reductions of few outputs over a long axis on a device under test against cpu:0: the kernels
cut the axis into parts (a bias gradient's sum over a batch), then add the parts in order."""
import numpy as np
import pytest

import lamina
from lamina import ops

RNG = np.random.default_rng(11)
LONG = RNG.normal(size=(5000, 7)).astype(np.float32)  # 5000 rows: 78 parts of 64


def _on(device, fn, *arrays):
    with lamina.device(device):
        return np.asarray(fn(*[lamina.convert_to_tensor(a) for a in arrays]))


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
def test_column_reductions_over_a_long_axis(op, dev):
    fn = getattr(ops, op)
    want = _on("cpu:0", lambda x: fn(x, axis=0), LONG)
    got = _on(dev, lambda x: fn(x, axis=0), LONG)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_long_axis_in_the_middle_and_nan(dev):
    x = RNG.normal(size=(3, 700, 5)).astype(np.float32)
    x[1, 650, 2] = np.nan
    for fn in (lambda t: ops.sum(t, axis=1), lambda t: ops.max(t, axis=1), lambda t: ops.min(t, axis=1),
               lambda t: ops.prod(ops.cos(t) * 0.2 + 1.0, axis=1)):
        want, got = _on("cpu:0", fn, x), _on(dev, fn, x)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_relu_bias_gradient_over_many_rows(dev):
    """Dense(relu)'s fused bias gradient (bias_relu_grad) over 5000 rows."""
    w0 = RNG.normal(size=(7, 3)).astype(np.float32)

    def grads(device):
        with lamina.device(device):
            layer = lamina.layers.Dense(3, activation="relu")
            layer.build((None, 7))
            layer.kernel.assign(w0)
            layer.bias.assign(np.array([0.1, -0.2, 0.0], np.float32))
            x = lamina.convert_to_tensor(LONG)
            with lamina.GradientTape() as tape:
                loss = ops.sum(layer(x) * ops.cos(x[:, :3]))
            return [np.asarray(g) for g in tape.gradient(loss, [layer.kernel, layer.bias])]

    for g, w in zip(grads(dev), grads("cpu:0")):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4)


def _kernels(device):
    return lamina.get_device(device).kernels


@pytest.mark.parametrize("dtype", ["int32", "int64"])
@pytest.mark.parametrize("op", ["sum", "prod", "max", "min"])
@pytest.mark.parametrize("shape,axis", [((4, 300), 1), ((300, 5), 0), ((3, 700, 4), 1), ((6, 7), None)],
                         ids=["rows", "columns", "long_middle", "all"])
def test_integer_reductions_run_on_the_device_exactly(dev, dtype, op, shape, axis):
    """int32 / int64 sums and products wrap in 64 bits as the CPU's do (exact in any order), max and
    min are exact: the device's result equals cpu:0's bit for bit, and no call runs on host copies."""
    big = np.iinfo(dtype).max // 3
    x = RNG.integers(-big, big, size=shape).astype(dtype)  # sums of these overflow the type and wrap
    if op == "prod":
        x = RNG.integers(-3, 4, size=shape).astype(dtype)
    fn = lambda t: getattr(ops, op)(t, axis=axis)  # noqa: E731
    fallbacks = getattr(_kernels(dev), "fallbacks", {})
    before = fallbacks.get("reduce", 0)
    got, want = _on(dev, fn, x), _on("cpu:0", fn, x)
    assert got.dtype == want.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)
    if lamina.get_device(dev).kind == "gpu":
        assert fallbacks.get("reduce", 0) == before


def test_integer_mean_raises_as_on_the_cpu(dev):
    from device_calls import same_error
    x = np.arange(12, dtype=np.int32).reshape(3, 4)

    def call(device):
        k = _kernels(device)
        d = lamina.get_device(device)
        out = d.from_numpy(np.zeros(3, np.int32))
        k.reduce(1, d.from_numpy(x), 3, 4, 1, out)  # R_MEAN
        return k.to_numpy(out, [3])
    assert "mean needs a float32 tensor" in str(same_error(call, dev))


@pytest.mark.parametrize("shape,axis", [((4, 300), 1), ((300, 5), 0), ((3, 700, 4), 1), ((5000, 3), 0)],
                         ids=["rows", "columns", "long_middle", "parts"])
@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "prod"])
def test_bfloat16_reductions_are_the_widened_ones_bit_for_bit(dev, op, shape, axis):
    """On a GPU `reduce` takes bfloat16 itself (float32 loads, double sums, one rounding): bit for
    bit the float32 reduction of the widened input, rounded to bfloat16."""
    import importlib
    dm = importlib.import_module("lamina.backend.device")
    if lamina.get_device(dev).kind != "gpu":
        pytest.skip("the host-fallback pair widens bfloat16 (tests/gpu/test_device_bf16.py)")
    dm.enable_bfloat16()  # (tests/conftest.py puts the plain kernel tables back afterwards)
    x = RNG.normal(size=shape).astype(np.float32)
    if op == "prod":
        x = (np.cos(x) * 0.2 + 1.0).astype(np.float32)
    with lamina.device(dev):
        xb = lamina.convert_to_tensor(x, dtype="bfloat16")
        table = lamina.get_device(dev).kernels
        widened = table.widened.get("reduce", 0)
        got = getattr(ops, op)(xb, axis=axis)
        assert got.dtype == "bfloat16" and table.widened.get("reduce", 0) == widened  # not on float32 copies
        want = ops.cast(getattr(ops, op)(ops.cast(xb, "float32"), axis=axis), "bfloat16")
        np.testing.assert_array_equal(np.asarray(got.numpy()).view(np.uint16), np.asarray(want.numpy()).view(np.uint16))
