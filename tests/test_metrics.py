"""metrics.py: stateful metrics with their state in variables, and custom Metric subclasses
written as the Keras guides write them."""
import numpy as np
import pytest

import lamina
from lamina import layers, metrics, ops
from keras_ref import keras_or_none


def test_mean_keeps_its_totals_in_variables():
    m = metrics.Mean(name="avg")
    assert [v.name for v in m.variables] == ["total", "count"]
    assert float(m.result()) == 0.0
    m.update_state([1.0, 2.0, 3.0])
    m.update_state(np.array([10.0]), sample_weight=np.array([2.0]))
    m.update_state(5.0, sample_weight=4)  # a batch's mean, weighted by its batch size
    assert float(m.result()) == pytest.approx((6 + 20 + 20) / (3 + 2 + 4))
    m.reset_state()
    assert float(m.result()) == 0.0 and float(m.count) == 0.0
    acc = metrics.SparseCategoricalAccuracy()
    acc.update_state(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]))
    assert float(acc.result()) == 0.5 and acc.name == "sparse_categorical_accuracy"


class CategoricalTruePositives(metrics.Metric):  # the Keras guide's ("training & evaluation")
    def __init__(self, name="categorical_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.reshape(ops.argmax(y_pred, axis=1), (-1, 1))
        values = ops.cast(y_true, "int32") == ops.cast(y_pred, "int32")
        values = ops.cast(values, "float32")
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            values = ops.multiply(values, sample_weight)
        self.true_positives.assign_add(ops.sum(values))

    def result(self):
        return self.true_positives


class OldStyleCounter(metrics.Metric):  # Keras 2's add_weight, a non-zero initial value, own reset
    def __init__(self, name="counter", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n = self.add_weight(name="n", initializer="ones")
        self.resets = 0

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.n.assign(self.n + 1.0)

    def result(self):
        return self.n

    def reset_state(self):
        self.resets += 1
        super().reset_state()


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x[:, :1] + x[:, 1:2] > 0).astype(np.int64)
    return x, y


def _fit_with_metrics(lib, ctp, x, y, weights):
    model = lib.Sequential([lib.Input(shape=(4,)), lib.layers.Dense(2, activation="softmax")])
    model.set_weights(weights)
    model.compile(optimizer=lib.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=[ctp])
    h = model.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0)
    return model, h.history


def test_custom_metric_in_fit_and_evaluate():
    x, y = _data()
    rng = np.random.default_rng(1)
    weights = [rng.standard_normal((4, 2)).astype(np.float32), np.zeros(2, np.float32)]
    ctp, counter = CategoricalTruePositives(), OldStyleCounter()
    model = lamina.Sequential([lamina.Input(shape=(4,)), layers.Dense(2, activation="softmax")])
    model.set_weights(weights)
    model.compile(optimizer=lamina.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                  metrics=[ctp, counter])
    h = model.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0).history
    # reset at the start of each epoch (so per-epoch counts), updated per batch: 3 batches -> 1 + 3
    assert h["counter"] == [4.0, 4.0, 4.0] and counter.resets == 2  # epochs 2 and 3 (built in epoch 1)
    assert all(0 <= v <= len(x) for v in h["categorical_true_positives"])
    loss, tp, n = model.evaluate(x, y, batch_size=32, verbose=0)
    right = int((model.predict(x, verbose=0).argmax(1) == y[:, 0]).sum())
    assert tp == right and n == 4.0
    assert [v.name for v in ctp.variables] == ["ctp"]
    with pytest.raises(RuntimeError, match="super"):
        class Forgot(metrics.Metric):
            def __init__(self):
                self.v = self.add_variable((), "zeros")
        Forgot()
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference run")

    class KerasCTP(keras.metrics.Metric):
        def __init__(self, name="categorical_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            ko = keras.ops
            y_pred = ko.reshape(ko.argmax(y_pred, axis=1), (-1, 1))
            values = ko.cast(ko.cast(y_true, "int32") == ko.cast(y_pred, "int32"), "float32")
            self.true_positives.assign_add(ko.sum(values))

        def result(self):
            return self.true_positives.value  # (the variable itself trips this JAX version's tracing)
    _, want = _fit_with_metrics(keras, KerasCTP(), x, y, weights)
    _, got = _fit_with_metrics(lamina, CategoricalTruePositives(), x, y, weights)
    assert got["categorical_true_positives"] == want["categorical_true_positives"]
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
