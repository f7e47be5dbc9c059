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


# ---- the device table and per-device execution -------------------------------------------------

def _dm():
    import sys
    return sys.modules["lamina.backend.device"]


def test_every_enabled_device_module_provides_the_kernel_table():
    dm = _dm()
    modules = {id(d.kernels): d.kernels for d in (lamina.get_device("cpu:0"),) if d.enabled()}
    if lamina.list_devices("gpu"):
        modules[id(lamina.get_device("gpu:0").kernels)] = lamina.get_device("gpu:0").kernels
    for mod in modules.values():
        missing = [n for n in dm.KERNEL_TABLE + dm.DEVICE_FUNCTIONS + dm.OP_CODE_TABLES if not hasattr(mod, n)]
        assert not missing, f"{mod.__name__} lacks {missing}"
    assert len(dm.KERNEL_TABLE) == len(set(dm.KERNEL_TABLE)) >= 76


def test_op_codes_come_from_the_kernel_module():
    from lamina.backend import _cpu, math as m
    assert m.ADD == _cpu.BINARY_OPS["ADD"] and m.MOD == _cpu.BINARY_OPS["MOD"]
    assert m.ISINF == _cpu.UNARY_OPS["ISINF"] and m.R_ALL == _cpu.REDUCE_OPS["R_ALL"]
    for table in ("BINARY_OPS", "UNARY_OPS", "GRAD_OPS", "REDUCE_OPS", "SCAN_OPS"):
        codes = sorted(getattr(_cpu, table).values())
        assert codes == list(range(len(codes))), table


def test_cpu0_runs_inline_and_other_cpu_devices_queue():
    assert not lamina.get_device("cpu:0").asynchronous
    assert lamina.get_device("cpu:1").asynchronous
    assert lamina.get_device("cpu:0").buffer(3, 0).device == 0
    assert lamina.get_device("cpu:5").buffer(3, 0).device == 5


def test_queued_work_returns_before_it_runs_and_host_reads_wait_for_it():
    dev = lamina.get_device("cpu:1")
    x = np.random.default_rng(0).normal(size=(384, 384)).astype(np.float32) / 20
    with lamina.device(dev):
        a = lamina.convert_to_tensor(x)
        y = a
        before = dev.stats()["completed"]
        for _ in range(40):
            y = ops.matmul(a, y)
        stats = dev.stats()
    assert stats["submitted"] - before >= 40
    assert stats["completed"] < stats["submitted"]  # the calls returned before the kernels ran
    expect = x.astype(np.float64)
    for _ in range(40):
        expect = x.astype(np.float64) @ expect
    np.testing.assert_allclose(y.numpy(), expect, rtol=2e-3, atol=1e-6)  # numpy() waited for the last one


def test_two_devices_work_at_the_same_time():
    # cpu:1 and cpu:2 run their queues on their own threads: both are busy at once
    d1, d2 = lamina.get_device("cpu:1"), lamina.get_device("cpu:2")
    x = np.random.default_rng(1).normal(size=(512, 512)).astype(np.float32) / 30
    outs = []
    for d in (d1, d2):
        with lamina.device(d):
            a = lamina.convert_to_tensor(x)
            y = a
            for _ in range(30):
                y = ops.matmul(a, y)
            outs.append(y)
    s1, s2 = d1.stats(), d2.stats()
    assert s1["completed"] < s1["submitted"] and s2["completed"] < s2["submitted"]
    np.testing.assert_allclose(outs[0].numpy(), outs[1].numpy(), rtol=1e-5, atol=1e-7)


def test_inline_kernels_release_the_gil():
    import threading
    import time
    x = lamina.convert_to_tensor(np.ones((1024, 1024), np.float32))
    ops.matmul(x, x).numpy()
    count, stop = [0], threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1
    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.01)
    try:
        y = x
        start = count[0]
        for _ in range(8):
            y = ops.matmul(x, y) * 0.001
        during = count[0] - start
    finally:
        stop.set()
        t.join()
    assert during > 100  # the Python thread kept running while the kernels ran


def test_a_queued_kernels_error_is_raised_by_the_next_call_and_the_device_recovers():
    dev = lamina.get_device("cpu:3")
    k = dev.kernels
    a, out = dev.buffer(6, 0), dev.buffer(6, 0)
    k.binary(0, a, [2, 3], a, [4], out, [2, 3])  # queued: b's shape does not match its buffer
    with pytest.raises(ValueError, match="b holds 6 elements but its shape"):
        dev.synchronize()
    with lamina.device(dev):
        t = ops.ones((2, 3)) * 2.0
    np.testing.assert_array_equal(t.numpy(), np.full((2, 3), 2.0, np.float32))


def test_kernel_rejects_buffers_on_different_devices_and_none():
    k = lamina.get_device("cpu:0").kernels
    a, b = lamina.get_device("cpu:0").buffer(4, 0), lamina.get_device("cpu:1").buffer(4, 0)
    with pytest.raises(ValueError, match="different devices.*cpu:0.*cpu:1"):
        k.copy(a, b)
    with pytest.raises(TypeError, match="must be a Buffer, received None"):
        k.copy(a, None)


def test_threads_per_device():
    dm = _dm()
    d4 = lamina.get_device("cpu:4")
    old = dm.get_cpu_threads_per_device()
    try:
        lamina.config.set_cpu_threads_per_device(1)
        assert d4.threads == 1 and lamina.get_device("cpu:0").threads == 1
        d4.set_threads(2)
        assert d4.threads == 2
        with pytest.raises(ValueError, match="threads"):
            lamina.config.set_cpu_threads_per_device(-1)
        with pytest.raises(ValueError, match="threads"):
            d4.set_threads("two")
    finally:
        d4.set_threads(0)
        lamina.config.set_cpu_threads_per_device(old)


def test_threads_per_device_from_the_environment(tmp_path):
    import os
    import subprocess
    import sys
    code = ("import lamina; print(lamina.config.get_cpu_threads_per_device(), lamina.get_device('cpu:1').threads)")
    env = dict(os.environ, LAMINA_CPU_THREADS_PER_DEVICE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]


def test_set_asynchronous_on_cpu0_and_back():
    d0 = lamina.get_device("cpu:0")
    with _dm().asynchronous(["cpu:0"]):
        assert d0.asynchronous
        y = ops.ones((64, 64))
        for _ in range(5):
            y = ops.matmul(y, ops.ones((64, 64))) * (1 / 64)
    assert not d0.asynchronous
    np.testing.assert_allclose(y.numpy(), np.ones((64, 64)), rtol=1e-6)


def test_copies_between_queued_devices_keep_both_orders():
    d1, d2 = lamina.get_device("cpu:1"), lamina.get_device("cpu:2")
    with lamina.device(d1):
        v = lamina.Variable(np.zeros((256, 256), np.float32))
        big = ops.ones((256, 256))
        for _ in range(20):
            v.assign_add(big)          # queued on cpu:1
    w = v.to(d2)                       # must see all 20 additions
    v.assign(np.zeros((256, 256), np.float32))  # a later write on cpu:1 must not reach the copy
    with lamina.device(d2):
        z = w * 2.0
    np.testing.assert_array_equal(z.numpy(), np.full((256, 256), 40.0, np.float32))
    back = z.to("cpu:0")
    np.testing.assert_array_equal(back.numpy(), np.full((256, 256), 40.0, np.float32))


def test_cross_device_copy_has_a_gradient():
    x = lamina.Variable(np.array([1.0, 2.0, 3.0], np.float32))
    with lamina.GradientTape() as tape:
        y = x.to("cpu:1")
        with lamina.device("cpu:1"):
            loss = ops.sum(y * y)
    g = tape.gradient(loss, x)
    assert g.device.name == "cpu:0"
    np.testing.assert_allclose(g.numpy(), [2.0, 4.0, 6.0])


def test_missing_gpu_names_it_and_lists_the_available_devices():
    if lamina.list_devices("gpu"):
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match=r"gpu:3.*not available.*Available devices: cpu:0"):
        lamina.device("gpu:3")
    with pytest.raises(ValueError, match="cpu:0 to cpu:255"):
        lamina.device("cpu:999")


def test_placement_log_names_each_layer_and_device(capsys):
    from lamina import layers
    inp = lamina.Input((3,))
    with lamina.device("cpu:1"):
        h = layers.Dense(4, name="on_one")(inp)
    out = layers.Dense(2, name="on_zero")(h)
    model = lamina.Model(inp, out)
    lamina.debugging.set_log_device_placement(True)
    try:
        model(np.ones((2, 3), np.float32))
    finally:
        lamina.debugging.set_log_device_placement(False)
    err = capsys.readouterr().err
    assert "layer 'on_one' (Dense) ran on cpu:1" in err
    assert "layer 'on_zero' (Dense) ran on cpu:0" in err  # where its weights are; the input came over
    assert not lamina.debugging.get_log_device_placement()
