"""Model parallelism: layers placed with `with lamina.device(d):`, trained from outside any scope,
and pipelined with fit(micro_batches=M)."""
import numpy as np
import pytest

import lamina
from lamina import layers, optimizers


def _data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8)).astype(np.float32), rng.normal(size=(n, 1)).astype(np.float32)


def _functional(devices, name="m"):
    inp = lamina.Input((8,))
    with lamina.device(devices[0]):
        h = layers.Dense(16, activation="tanh", name="first")(inp)
    with lamina.device(devices[1]):
        h = layers.Dense(12, activation="relu", name="second")(h)
        out = layers.Dense(1, name="out")(h)
    model = lamina.Model(inp, out, name=name)
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    return model


def _sequential(devices):
    with lamina.device(devices[0]):
        a = layers.Dense(16, activation="tanh")
    with lamina.device(devices[1]):
        b = layers.Dense(1)
    model = lamina.Sequential([lamina.Input((8,)), a, b])
    model.compile(optimizer=optimizers.SGD(0.05, momentum=0.9), loss="mse")
    return model


def _same_start(reference, *others):
    for m in others:
        m.set_weights(reference.get_weights())


def test_weights_and_slots_live_on_their_layers_devices():
    model = _functional(["cpu:0", "cpu:1"])
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=25, verbose=0)
    assert [w.device.name for w in model.weights] == ["cpu:0", "cpu:0", "cpu:1", "cpu:1", "cpu:1", "cpu:1"]
    for v in model.trainable_weights:
        assert all(s.device is v.device for s in model.optimizer.slots_of(v))
    assert model.predict(x, verbose=0).shape == (50, 1)


@pytest.mark.parametrize("build", [_functional, _sequential])
def test_a_split_model_trains_from_outside_any_scope_like_the_unsplit_one(build):
    x, y = _data()
    one, two = build(["cpu:0", "cpu:0"]), build(["cpu:0", "cpu:1"])
    _same_start(one, two)
    h1 = one.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    h2 = two.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-5)
    for a, b in zip(one.get_weights(), two.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one.evaluate(x, y, verbose=0), two.evaluate(x, y, verbose=0), rtol=1e-5)
    np.testing.assert_allclose(one.predict(x, verbose=0), two.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_layer_created_outside_but_called_inside_a_scope_is_placed_there():
    dense = layers.Dense(3)
    with lamina.device("cpu:2"):
        y = dense(np.ones((2, 4), np.float32))
    assert y.device.name == "cpu:2" and dense.kernel.device.name == "cpu:2"
    z = dense(np.ones((2, 4), np.float32))  # later calls run there too
    assert z.device.name == "cpu:2"


def test_save_and_load_a_split_model(tmp_path):
    x, y = _data()
    model = _functional(["cpu:0", "cpu:1"], name="split")
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "split.keras")
    model.save(path)
    again = lamina.models.load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    model.save_weights(str(tmp_path / "w.weights.h5"))
    other = _functional(["cpu:0", "cpu:1"], name="other")
    other.load_weights(str(tmp_path / "w.weights.h5"))
    np.testing.assert_allclose(other.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert other.weights[-1].device.name == "cpu:1"


class _Rows(lamina.metrics.Metric):
    """A metric class written outside lamina: its update makes a tensor of its own."""

    def __init__(self):
        super().__init__(name="rows")
        self.n = self.add_variable((), name="n")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.n.assign_add(lamina.convert_to_tensor(np.float32(y_true.shape[0])))

    def result(self):
        return self.n


def test_the_loss_and_metrics_keep_their_state_on_the_outputs_device():
    """compile()'s loss tracker and metrics made outside any scope move their state to the outputs'
    device at their first update, so a step on a GPU reads nothing back to the host; a metric made in
    a scope stays there, and so does a metric class written outside lamina."""
    x, y = _data()

    def build(devices):
        inp = lamina.Input((8,))
        with lamina.device(devices[0]):
            h = layers.Dense(16, activation="tanh")(inp)
        with lamina.device(devices[1]):
            out = layers.Dense(1)(h)
        with lamina.device("cpu:0"):
            placed = lamina.metrics.MeanAbsoluteError(name="placed_mae")
        m = lamina.Model(inp, out)
        m.compile(optimizer=optimizers.Adam(0.01), loss="mse", metrics=["mae", placed, _Rows()])
        return m
    one, two = build(["cpu:0", "cpu:0"]), build(["cpu:0", "cpu:1"])
    _same_start(one, two)
    h1 = one.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    h2 = two.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    for k in ("loss", "mae", "placed_mae"):
        np.testing.assert_allclose(h1.history[k], h2.history[k], rtol=1e-5)
    assert h2.history["rows"] == [50.0, 50.0]
    np.testing.assert_allclose(h2.history["mae"], h2.history["placed_mae"], rtol=1e-6)
    mae, placed, rows = two._compile_metrics.metrics
    devices = lambda metric: {v.device.name for v in metric.variables}  # noqa: E731
    assert devices(two._loss_tracker) == devices(mae) == {"cpu:1"}
    assert devices(placed) == devices(rows) == {"cpu:0"}
    np.testing.assert_allclose(one.evaluate(x, y, verbose=0), two.evaluate(x, y, verbose=0), rtol=1e-5)
    assert devices(two._loss_tracker) == {"cpu:1"}


@pytest.mark.parametrize("micro_batches,batch_size", [(2, 16), (3, 16), (4, 25), (8, 5)])
def test_pipelined_fit_equals_the_unsplit_step(micro_batches, batch_size):
    # 50 rows: the last batch is partial; 16 rows in 3 slices are uneven; 5 rows in 8 slices
    # give 5 slices of one row.
    x, y = _data()
    plain, piped = _functional(["cpu:0", "cpu:1"]), _functional(["cpu:0", "cpu:1"])
    _same_start(plain, piped)
    # five epochs: the loss and metrics update inside the replayed step, and every epoch's logs
    # (the last partial batch's weight included) must stay right once all its steps are replayed
    h1 = plain.fit(x, y, epochs=5, batch_size=batch_size, shuffle=False, verbose=0)
    h2 = piped.fit(x, y, epochs=5, batch_size=batch_size, shuffle=False, verbose=0, micro_batches=micro_batches)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(h1.history["mae"], h2.history["mae"], rtol=1e-5)
    for a, b in zip(plain.get_weights(), piped.get_weights()):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    assert not lamina.get_device("cpu:0").asynchronous  # fit put cpu:0 back on the calling thread


def test_pipelined_fit_with_regularization_and_sample_weights():
    x, y = _data()
    sw = np.linspace(0.5, 2.0, len(x)).astype(np.float32)

    def build():
        inp = lamina.Input((8,))
        with lamina.device("cpu:1"):
            h = layers.Dense(6, kernel_regularizer="l2", activation="relu")(inp)
        with lamina.device("cpu:2"):
            out = layers.Dense(1)(h)
        m = lamina.Model(inp, out)
        m.compile(optimizer="sgd", loss="mse")
        return m
    a, b = build(), build()
    _same_start(a, b)
    a.fit(x, y, sample_weight=sw, batch_size=20, shuffle=False, verbose=0)
    b.fit(x, y, sample_weight=sw, batch_size=20, shuffle=False, verbose=0, micro_batches=4)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(u, v, rtol=2e-5, atol=2e-6)


def test_micro_batches_are_checked():
    model = _functional(["cpu:0", "cpu:1"])
    x, y = _data()
    with pytest.raises(ValueError, match="micro_batches must be an int >= 1, received 0"):
        model.fit(x, y, micro_batches=0, verbose=0)

    class Custom(lamina.Model):
        def train_step(self, data):
            return super().train_step(data)
    inp = lamina.Input((8,))
    custom = Custom(inp, layers.Dense(1)(inp))
    custom.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="micro_batches needs the built-in train_step"):
        custom.fit(x, y, micro_batches=2, verbose=0)


def test_a_deep_lstm_with_one_layer_per_device_trains_pipelined():
    rng = np.random.default_rng(3)
    x = rng.integers(1, 30, size=(24, 7))
    y = rng.integers(0, 30, size=(24, 7))

    def build():
        inp = lamina.Input((7,), dtype="int32")
        with lamina.device("cpu:0"):
            h = layers.Embedding(30, 8)(inp)
        for d in range(1, 4):
            with lamina.device(f"cpu:{d}"):
                h = layers.LSTM(8, return_sequences=True)(h)
        with lamina.device("cpu:3"):
            out = layers.Dense(30)(h)
        m = lamina.Model(inp, out)
        m.compile(optimizer="adam", loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m
    a, b = build(), build()
    _same_start(a, b)
    ha = a.fit(x, y, batch_size=12, epochs=2, shuffle=False, verbose=0)
    hb = b.fit(x, y, batch_size=12, epochs=2, shuffle=False, verbose=0, micro_batches=4)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-4)
    assert sorted({w.device.name for w in b.weights}) == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
