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
