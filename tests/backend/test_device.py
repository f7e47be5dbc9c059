import numpy as np
import pytest

import lamina
from lamina import ops


def test_default_device_is_cpu0():
    assert ops.ones((2,)).device.name == "cpu:0"
    assert lamina.get_device("cpu") is lamina.get_device("cpu:0")


def test_scopes_nest_and_restore():
    with lamina.device("cpu:1"):
        a = ops.ones((2,))
        with lamina.device("cpu:2"):
            b = ops.zeros((2,))
            v = lamina.Variable(np.ones(2, np.float32))
        c = lamina.convert_to_tensor([1.0, 2.0])
    d = ops.ones((2,))
    assert (a.device.name, b.device.name, v.device.name, c.device.name, d.device.name) == \
        ("cpu:1", "cpu:2", "cpu:2", "cpu:1", "cpu:0")


def test_outputs_follow_inputs_device():
    with lamina.device("cpu:1"):
        a = ops.ones((2, 2))
    assert (a + 1.0).device.name == "cpu:1"
    assert ops.matmul(a, a).device.name == "cpu:1"


def test_mixing_devices_raises_with_shapes():
    with lamina.device("cpu:1"):
        a = ops.ones((2, 3))
    b = ops.ones((2, 3))
    with pytest.raises(ValueError, match=r"cpu:1.*\(2, 3\).*cpu:0"):
        a + b
    with pytest.raises(ValueError, match="different devices"):
        ops.matmul(a, ops.ones((3, 2)))


def test_gpu_reports_unavailable_clearly():
    if lamina.list_devices("gpu"):
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="gpu:0.*not available"):
        with lamina.device("gpu:0"):
            pass


def test_unknown_device_name():
    with pytest.raises(ValueError, match="Unknown device"):
        lamina.device("tpu:0")
    with pytest.raises(TypeError):
        lamina.device(3)


def test_scopes_are_thread_local():
    import threading
    seen = []
    with lamina.device("cpu:3"):
        t = threading.Thread(target=lambda: seen.append(ops.ones((1,)).device.name))
        t.start()
        t.join()
    assert seen == ["cpu:0"]
