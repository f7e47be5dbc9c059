import numpy as np
import pytest

import lamina
from lamina import ops


def test_variables_are_watched_and_constants_are_not():
    v = lamina.Variable(np.array([1.0, 2.0], np.float32))
    c = lamina.convert_to_tensor(np.array([3.0, 4.0], np.float32))
    with lamina.GradientTape() as tape:
        y = ops.sum(v * c)
    gv, gc = tape.gradient(y, [v, c])
    np.testing.assert_allclose(gv.numpy(), [3.0, 4.0])
    assert gc is None


def test_watch_tensor_and_unconnected_zero():
    x = lamina.convert_to_tensor(np.array(3.0, np.float32))
    z = lamina.convert_to_tensor(np.array(1.0, np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(x)
        y = x * x * x
    gx, gz = tape.gradient(y, [x, z], unconnected_gradients="zero")
    assert float(gx) == pytest.approx(27.0)
    assert float(gz) == 0.0


def test_gradient_accumulates_over_reuse():
    v = lamina.Variable(np.array(2.0, np.float32))
    with lamina.GradientTape() as tape:
        y = v * v + v
    assert float(tape.gradient(y, v)) == pytest.approx(5.0)


def test_non_persistent_tape_single_use_and_persistent_reuse():
    v = lamina.Variable(np.array(2.0, np.float32))
    with lamina.GradientTape() as tape:
        y = v * v
    tape.gradient(y, v)
    with pytest.raises(RuntimeError, match="persistent"):
        tape.gradient(y, v)
    with lamina.GradientTape(persistent=True) as tape:
        y = v * v
        z = v * 3.0
    assert float(tape.gradient(y, v)) == pytest.approx(4.0)
    assert float(tape.gradient(z, v)) == pytest.approx(3.0)


def test_stop_recording_and_nested_structures():
    v = lamina.Variable(np.array(1.5, np.float32))
    w = lamina.Variable(np.array(2.0, np.float32))
    with lamina.GradientTape() as tape:
        a = v * w
        with tape.stop_recording():
            b = v * 10.0
        y = a + b
    g = tape.gradient(y, {"v": v, "pair": [w, v]})
    assert float(g["v"]) == pytest.approx(2.0)
    assert float(g["pair"][0]) == pytest.approx(1.5)


def test_no_recording_outside_tape():
    v = lamina.Variable(np.ones(2, np.float32))
    y = v * 2.0
    assert y._node is None


def test_output_gradients_seed():
    v = lamina.Variable(np.array([1.0, 2.0], np.float32))
    with lamina.GradientTape() as tape:
        y = v * 3.0
    g = tape.gradient(y, v, output_gradients=np.array([1.0, 10.0], np.float32))
    np.testing.assert_allclose(g.numpy(), [3.0, 30.0])


def test_non_trainable_variable_gets_no_gradient():
    v = lamina.Variable(np.array(1.0, np.float32), trainable=False)
    with lamina.GradientTape() as tape:
        y = v * 2.0
    assert tape.gradient(y, v) is None
