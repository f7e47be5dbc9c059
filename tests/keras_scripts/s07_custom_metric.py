import keras
# Scenario: a custom Metric subclass (the "Training & evaluation with the built-in methods"
# guide): state variables made with add_variable in __init__, update_state(y_true, y_pred,
# sample_weight) with keras.ops, result(), reset_state(); used in compile(metrics=[...]) next to a
# built-in metric, and on its own. Threshold: validation accuracy >= 0.9; the metric's value
# from evaluate() equals the count computed with numpy from predict().
import json

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(7)
rng = np.random.default_rng(0)


class CategoricalTruePositives(keras.metrics.Metric):
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

    def reset_state(self):
        self.true_positives.assign(0.0)


# three Gaussian blobs in 20 dimensions
centers = rng.standard_normal((3, 20)) * 1.5
y = rng.integers(0, 3, 1500)
x = (centers[y] + rng.standard_normal((1500, 20))).astype("float32")
y = y.astype("float32")[:, None]

inputs = keras.Input(shape=(20,), name="digits")
h = layers.Dense(32, activation="relu", name="dense_1")(inputs)
outputs = layers.Dense(3, activation="softmax", name="predictions")(h)
model = keras.Model(inputs=inputs, outputs=outputs)
model.compile(
    optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(),
    metrics=[CategoricalTruePositives(), keras.metrics.SparseCategoricalAccuracy(name="acc")],
)
history = model.fit(x[:1200], y[:1200], batch_size=64, epochs=5, validation_data=(x[1200:], y[1200:]), verbose=2)
scores = model.evaluate(x[1200:], y[1200:], batch_size=64, return_dict=True, verbose=0)
expected_tp = float(np.sum(np.argmax(model.predict(x[1200:], verbose=0), axis=1) == y[1200:, 0]))
print("evaluate:", scores, "numpy true positives:", expected_tp)

# standalone use: update, result, reset
metric = CategoricalTruePositives()
y_pred = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]], "float32")
metric.update_state(np.array([[0], [1], [0]]), y_pred)
after_update = float(metric.result())
metric.update_state(np.array([[0], [1], [2]]), y_pred, sample_weight=np.array([[1.0], [0.5], [0.0]]))
after_weighted = float(metric.result())
metric.reset_state()
after_reset = float(metric.result())

result = {
    "figures": {
        "val_acc": float(history.history["val_acc"][-1]),
        "history_keys": sorted(history.history),
        "standalone": [after_update, after_weighted, after_reset],
        "metric_variables": len(metric.variables),
    },
    "info": {"evaluate_true_positives": float(scores["categorical_true_positives"]),
             "numpy_true_positives": expected_tp},
    "checks": {"val_acc >= 0.9": bool(history.history["val_acc"][-1] >= 0.9),
               "evaluate's metric equals numpy's count": scores["categorical_true_positives"] == expected_tp},
}
print("RESULT " + json.dumps(result))
