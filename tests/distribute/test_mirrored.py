"""MirroredStrategy: data parallelism over local devices equals one device on the whole batch."""
import numpy as np
import pytest

import lamina
from lamina import layers, optimizers


def _data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    return x, (x[:, :1] * 0.5 - x[:, 1:2]).astype(np.float32)


def _model(opt="sgd"):
    m = lamina.Sequential([lamina.Input((8,)), layers.Dense(16, activation="relu"), layers.Dense(1)])
    m.compile(optimizer=optimizers.SGD(0.05, momentum=0.9) if opt == "sgd" else optimizers.Adam(0.01),
              loss="mse", metrics=["mae"])
    return m


@pytest.mark.parametrize("devices", [["cpu:0", "cpu:1"], ["cpu:1", "cpu:2", "cpu:3"]])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_mirrored_equals_one_device_on_the_combined_batch(devices, opt):
    x, y = _data()
    single = _model(opt)
    strategy = lamina.distribute.MirroredStrategy(devices)
    with strategy.scope():
        mirrored = _model(opt)
    assert strategy.num_replicas_in_sync == len(devices)
    assert mirrored.weights[0].device.name == devices[0]
    mirrored.set_weights(single.get_weights())
    h1 = single.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)   # 16 = uneven over 3
    h2 = mirrored.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)  # last batch: 2 rows
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(h1.history["mae"], h2.history["mae"], rtol=1e-5)
    # Adam divides by the root of tiny second moments, so a last-bit difference in a summed
    # gradient can move a weight by more than that
    tol = dict(rtol=1e-5, atol=1e-6) if opt == "sgd" else dict(rtol=1e-4, atol=2e-5)
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(a, b, **tol)
    # the replicas hold the updated weights too, and every device is back to its own mode
    for rep in strategy._replicas[id(mirrored)]:
        for a, b in zip(mirrored.get_weights(), rep.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert not lamina.get_device("cpu:0").asynchronous
    np.testing.assert_allclose(single.evaluate(x, y, verbose=0), mirrored.evaluate(x, y, verbose=0), rtol=1e-5)


def test_mirrored_functional_model_with_two_outputs():
    x, y = _data()

    def build():
        inp = lamina.Input((8,))
        h = layers.Dense(8, activation="tanh")(inp)
        m = lamina.Model(inp, [layers.Dense(1, name="a")(h), layers.Dense(1, name="b")(h)])
        m.compile(optimizer="sgd", loss=["mse", "mae"], loss_weights=[1.0, 0.5])
        return m
    single = build()
    strategy = lamina.distribute.MirroredStrategy(["cpu:0", "cpu:1"])
    with strategy.scope():
        mirrored = build()
    mirrored.set_weights(single.get_weights())
    single.fit(x, [y, -y], batch_size=10, shuffle=False, verbose=0)
    mirrored.fit(x, [y, -y], batch_size=10, shuffle=False, verbose=0)
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mirrored_strategy_errors():
    with pytest.raises(ValueError, match="list of device names"):
        lamina.distribute.MirroredStrategy("cpu:0")
    with pytest.raises(ValueError, match="each device may appear once"):
        lamina.distribute.MirroredStrategy(["cpu:0", "cpu"])

    class Sub(lamina.Model):
        def __init__(self):
            super().__init__()
            self.d = layers.Dense(1)

        def call(self, x):
            return self.d(x)
    strategy = lamina.distribute.MirroredStrategy(["cpu:0", "cpu:1"])
    with strategy.scope():
        sub = Sub()
        sub.compile(optimizer="sgd", loss="mse")
    x, y = _data()
    with pytest.raises(ValueError, match="MirroredStrategy needs a Sequential or functional model"):
        sub.fit(x, y, verbose=0)
    assert not lamina.get_device("cpu:0").asynchronous


def test_scope_is_left_cleanly():
    strategy = lamina.distribute.MirroredStrategy(["cpu:1", "cpu:2"])
    with strategy.scope() as s:
        assert s is strategy and lamina.distribute.get_strategy() is strategy
        assert lamina.ops.ones((1,)).device.name == "cpu:1"
    assert lamina.distribute.get_strategy() is None
    assert lamina.ops.ones((1,)).device.name == "cpu:0"
