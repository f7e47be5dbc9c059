"""lamina.distribution, Keras's keras.distribution for data parallelism: DataParallel set with
set_distribution (or its scope) trains as one device on the combined batch."""
import numpy as np
import pytest

import lamina
from lamina import distribution as D
from lamina import layers, optimizers


@pytest.fixture(autouse=True)
def no_distribution():
    yield
    D.set_distribution(None)


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, :1] - 0.5 * x[:, 2:3]).astype(np.float32)


def _model():
    m = lamina.Sequential([lamina.Input((6,)), layers.Dense(12, activation="relu"), layers.Dense(1)])
    m.compile(optimizer=optimizers.SGD(0.05, momentum=0.9), loss="mse")
    return m


def test_list_devices_and_count():
    assert D.list_devices() == (lamina.list_devices("gpu") or ["cpu:0"])
    assert D.list_devices("cpu") == ["cpu:0"]
    assert D.get_device_count("cpu") == 1
    with pytest.raises(ValueError, match="device_type must be 'cpu', 'gpu' or None"):
        D.list_devices("tpu")


def test_set_distribution_trains_as_one_device():
    x, y = _data()
    single = _model()
    dp = D.DataParallel(devices=["cpu:0", "cpu:1"])
    D.set_distribution(dp)
    assert D.distribution() is dp and dp.batch_dim_name == "batch"
    parallel = _model()   # created while the distribution is set: it keeps it
    D.set_distribution(None)
    assert D.distribution() is None
    assert parallel._distribute_strategy is dp.strategy
    parallel.set_weights(single.get_weights())
    h1 = single.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    h2 = parallel.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-5)
    for a, b in zip(single.get_weights(), parallel.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert len(dp.strategy._replicas[id(parallel)]) == 1   # the second device's replica


def test_scope_and_mesh():
    mesh = D.DeviceMesh((2,), ["data"], devices=["cpu:0", "cpu:2"])
    dp = D.DataParallel(device_mesh=mesh)
    assert dp.batch_dim_name == "data" and dp.device_mesh.devices == ["cpu:0", "cpu:2"]
    with dp.scope():
        assert D.distribution() is dp
        m = _model()
    assert D.distribution() is None and m._distribute_strategy is dp.strategy


def test_errors():
    with pytest.raises(ValueError, match=r"a mesh of shape \(3,\) holds 3 devices, received 2"):
        D.DeviceMesh((3,), ["batch"], devices=["cpu:0", "cpu:1"])
    with pytest.raises(ValueError, match="same length"):
        D.DeviceMesh((2, 1), ["batch"], devices=["cpu:0", "cpu:1"])
    with pytest.raises(ValueError, match="one-axis DeviceMesh"):
        D.DataParallel(device_mesh=D.DeviceMesh((1, 2), ["batch", "model"], devices=["cpu:0", "cpu:1"]))
    with pytest.raises(ValueError, match="pass device_mesh or devices, not both"):
        D.DataParallel(device_mesh=D.DeviceMesh((1,), ["batch"], devices=["cpu:0"]), devices=["cpu:0"])
    with pytest.raises(ValueError, match="expected a DataParallel distribution or None"):
        D.set_distribution("data_parallel")
    with pytest.raises(ValueError, match="each device may appear once"):
        D.DataParallel(devices=["cpu:0", "cpu:0"])
