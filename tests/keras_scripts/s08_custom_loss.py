import keras
# Scenario: custom losses (the "Training & evaluation with the built-in methods" guide): a plain
# function loss(y_true, y_pred), and a keras.losses.Loss subclass with its own argument
# (regularization_factor), call(y_true, y_pred) in keras.ops and get_config; both trained with
# fit, checked against numpy on the model's predictions, and called directly with sample_weight.
# Thresholds: each model's test mse <= 0.05, and evaluate()'s losses equal numpy's (rtol 1e-3).
import json

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(8)
rng = np.random.default_rng(0)


def custom_mean_squared_error(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred), axis=-1)


class CustomMSE(keras.losses.Loss):
    def __init__(self, regularization_factor=0.1, name="custom_mse"):
        super().__init__(name=name)
        self.regularization_factor = regularization_factor

    def call(self, y_true, y_pred):
        mse = ops.mean(ops.square(y_true - y_pred), axis=-1)
        reg = ops.mean(ops.square(0.5 - y_pred), axis=-1)
        return mse + reg * self.regularization_factor

    def get_config(self):
        return {"regularization_factor": self.regularization_factor, "name": self.name}


x = rng.standard_normal((1500, 10)).astype("float32")
w = rng.standard_normal((10, 3)).astype("float32") / 3
y = np.tanh(x @ w).astype("float32")


def get_model():
    inputs = keras.Input(shape=(10,))
    h = layers.Dense(32, activation="relu")(inputs)
    return keras.Model(inputs, layers.Dense(3)(h))


figures, checks = {}, {}
for name, loss in [("function", custom_mean_squared_error), ("subclass", CustomMSE(regularization_factor=0.01))]:
    model = get_model()
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss=loss)
    history = model.fit(x[:1200], y[:1200], batch_size=32, epochs=10, verbose=0)
    test_loss = model.evaluate(x[1200:], y[1200:], verbose=0)
    pred = model.predict(x[1200:], verbose=0)
    mse = float(np.mean((pred - y[1200:]) ** 2))
    numpy_loss = mse + (0.01 * float(np.mean((0.5 - pred) ** 2)) if name == "subclass" else 0.0)
    print(f"{name}: final loss {history.history['loss'][-1]:.4f}, test loss {test_loss:.4f}, numpy {numpy_loss:.4f}")
    figures[f"{name}_test_loss"] = float(test_loss)
    figures[f"{name}_test_mse"] = mse
    checks[f"{name} test mse <= 0.05"] = mse <= 0.05
    checks[f"{name} loss equals numpy's"] = bool(np.isclose(test_loss, numpy_loss, rtol=1e-3, atol=1e-6))

# the Loss object on its own: reduction over the batch, sample weights, config round trip
loss_fn = CustomMSE(regularization_factor=0.5)
y_true = np.array([[0.0, 1.0], [1.0, 1.0]], "float32")
y_pred = np.array([[0.5, 0.5], [1.0, 0.0]], "float32")
figures["direct_loss"] = float(loss_fn(y_true, y_pred))
figures["direct_loss_weighted"] = float(loss_fn(y_true, y_pred, sample_weight=np.array([1.0, 0.0], "float32")))
clone = CustomMSE.from_config(loss_fn.get_config())
figures["from_config"] = [clone.name, clone.regularization_factor]
figures["loss_name"] = loss_fn.name
checks["direct loss equals numpy's"] = bool(np.isclose(figures["direct_loss"], np.mean(
    np.mean((y_true - y_pred) ** 2, -1) + 0.5 * np.mean((0.5 - y_pred) ** 2, -1)), rtol=1e-5))

print("RESULT " + json.dumps({"figures": figures, "checks": checks}))
