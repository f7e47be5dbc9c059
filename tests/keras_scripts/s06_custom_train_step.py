import keras
# Scenario: customizing what happens in fit() (the "Customizing what happens in fit() with JAX"
# guide, since these scripts run Keras on its JAX backend): a Model subclass overriding
# train_step(state, data) and test_step(state, data) in Keras 3's stateless form, with
# stateless_call, stateless_compute_loss, optimizer.stateless_apply and the metrics' stateless
# updates; compile() gives the loss and metrics; fit and evaluate run the custom steps.
# (Keras 3 has no backend-neutral way to take gradients in a train_step: the TensorFlow and
# PyTorch versions of this guide use tf.GradientTape and loss.backward() instead.)
# Threshold: test mae <= 0.15 on targets with noise sd 0.1, and the custom steps really ran.
import json

import jax
import numpy as np

keras.utils.set_random_seed(6)
rng = np.random.default_rng(0)
calls = {"train_step": 0, "test_step": 0}


class CustomModel(keras.Model):
    def compute_loss_and_updates(self, trainable_variables, non_trainable_variables, metrics_variables, x, y,
                                 sample_weight, training=False):
        y_pred, non_trainable_variables = self.stateless_call(
            trainable_variables, non_trainable_variables, x, training=training)
        loss, (trainable_variables, non_trainable_variables, metrics_variables) = self.stateless_compute_loss(
            trainable_variables, non_trainable_variables, metrics_variables, x=x, y=y, y_pred=y_pred,
            sample_weight=sample_weight, training=training)
        return loss, (y_pred, non_trainable_variables, metrics_variables)

    def _update_metrics(self, metrics_variables, loss, y, y_pred, sample_weight):
        new_metrics_vars, logs = [], {}
        for metric in self.metrics:
            this_metric_vars = metrics_variables[len(new_metrics_vars):len(new_metrics_vars) + len(metric.variables)]
            if metric.name == "loss":
                this_metric_vars = metric.stateless_update_state(this_metric_vars, loss, sample_weight=sample_weight)
            else:
                this_metric_vars = metric.stateless_update_state(this_metric_vars, y, y_pred,
                                                                 sample_weight=sample_weight)
            logs[metric.name] = metric.stateless_result(this_metric_vars)
            new_metrics_vars += this_metric_vars
        return logs, new_metrics_vars

    def train_step(self, state, data):
        calls["train_step"] += 1  # counts traces: the step is compiled once
        trainable_variables, non_trainable_variables, optimizer_variables, metrics_variables = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        grad_fn = jax.value_and_grad(self.compute_loss_and_updates, has_aux=True)
        (loss, (y_pred, non_trainable_variables, metrics_variables)), grads = grad_fn(
            trainable_variables, non_trainable_variables, metrics_variables, x, y, sample_weight, training=True)
        trainable_variables, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, grads, trainable_variables)
        logs, new_metrics_vars = self._update_metrics(metrics_variables, loss, y, y_pred, sample_weight)
        return logs, (trainable_variables, non_trainable_variables, optimizer_variables, new_metrics_vars)

    def test_step(self, state, data):
        calls["test_step"] += 1
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        trainable_variables, non_trainable_variables, metrics_variables = state
        y_pred, non_trainable_variables = self.stateless_call(
            trainable_variables, non_trainable_variables, x, training=False)
        loss, (trainable_variables, non_trainable_variables, metrics_variables) = self.stateless_compute_loss(
            trainable_variables, non_trainable_variables, metrics_variables, x=x, y=y, y_pred=y_pred,
            sample_weight=sample_weight, training=False)
        logs, new_metrics_vars = self._update_metrics(metrics_variables, loss, y, y_pred, sample_weight)
        return logs, (trainable_variables, non_trainable_variables, new_metrics_vars)


x = rng.random((1200, 16)).astype("float32")
true_w = rng.standard_normal((16, 1)).astype("float32")
y = x @ true_w + 0.1 * rng.standard_normal((1200, 1)).astype("float32")

inputs = keras.Input(shape=(16,))
outputs = keras.layers.Dense(1)(keras.layers.Dense(16, activation="relu")(inputs))
model = CustomModel(inputs, outputs)
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
history = model.fit(x[:1000], y[:1000], batch_size=32, epochs=10, verbose=0)
scores = model.evaluate(x[1000:], y[1000:], return_dict=True, verbose=0)
print("history:", {k: round(v[-1], 4) for k, v in history.history.items()}, "test:", scores)

result = {
    "figures": {"final_loss": float(history.history["loss"][-1]), "test_loss": float(scores["loss"]),
                "test_mae": float(scores["mae"]), "history_keys": sorted(history.history),
                "evaluate_keys": sorted(scores)},
    "checks": {"test_mae <= 0.15": bool(scores["mae"] <= 0.15),
               "custom train_step ran": calls["train_step"] > 0, "custom test_step ran": calls["test_step"] > 0},
}
print("RESULT " + json.dumps(result))
