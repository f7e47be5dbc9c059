import keras
# Scenario: losses added by layers (the subclassing guide's add_loss() section and the
# "endpoint layer" pattern of the functional guide): a layer calling self.add_loss() in call(),
# layer.losses / model.losses holding the current call's losses only, the built-in
# ActivityRegularization layer and kernel_regularizer, and a LogisticEndpoint layer that adds its
# own loss so compile() takes no loss. Thresholds: each layer holds exactly one loss after
# repeated calls, the training loss falls, the endpoint model reaches accuracy >= 0.9.
import json

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(14)
rng = np.random.default_rng(0)


class ActivityRegularizationLayer(layers.Layer):
    def __init__(self, rate=1e-2, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate

    def call(self, inputs):
        self.add_loss(self.rate * ops.mean(ops.square(inputs)))
        return inputs


class OuterLayer(layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.activity_reg = ActivityRegularizationLayer(1e-2)

    def call(self, inputs):
        return self.activity_reg(inputs)


# losses are reset at the start of each top-level call
layer = OuterLayer()
_ = layer(ops.zeros((1, 1)))
losses_after_first = len(layer.losses)
_ = layer(ops.ones((1, 1)))
losses_after_second = len(layer.losses)
value_after_second = float(layer.losses[0])

# kernel_regularizer losses are collected too
layer = layers.Dense(32, kernel_regularizer=keras.regularizers.l2(1e-3))
_ = layer(ops.ones((1, 1)))
regularizer_losses = len(layer.losses)

# a regression model with both kinds of activity losses
x = rng.standard_normal((1024, 10)).astype("float32")
y = (x @ rng.standard_normal((10, 1)) * 2 + 1).astype("float32")
inputs = keras.Input(shape=(10,))
h = layers.Dense(64, activation="relu")(inputs)
h = ActivityRegularizationLayer(1e-2)(h)
h = layers.ActivityRegularization(l1=1e-4, l2=1e-4)(h)
outputs = layers.Dense(1)(h)
model = keras.Model(inputs, outputs)
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
history = model.fit(x, y, batch_size=16, epochs=4, verbose=0)
losses = history.history["loss"]
model(x[:4])
model_losses = len(model.losses)


class LogisticEndpoint(layers.Layer):
    def __init__(self, name=None):
        super().__init__(name=name)
        self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    def call(self, targets, logits, sample_weights=None):
        loss = self.loss_fn(targets, logits, sample_weights)
        self.add_loss(loss)
        return ops.softmax(logits)


inputs = keras.Input(shape=(3,), name="inputs")
targets = keras.Input(shape=(10,), name="targets")
logits = layers.Dense(10)(inputs)
predictions = LogisticEndpoint(name="predictions")(targets, logits)
endpoint_model = keras.Model(inputs=[inputs, targets], outputs=predictions)
endpoint_model.compile(optimizer=keras.optimizers.Adam(0.01))  # no loss: the endpoint adds it
data_x = rng.random((1000, 3)).astype("float32")
data_y = (data_x @ rng.standard_normal((3, 10)) > 0).astype("float32")
endpoint_history = endpoint_model.fit({"inputs": data_x, "targets": data_y}, epochs=20, batch_size=32, verbose=0)
logits_model = keras.Model(inputs, logits)  # shares the trained Dense layer
endpoint_accuracy = float(np.mean((logits_model.predict(data_x, verbose=0) > 0) == (data_y > 0.5)))
print(f"losses per epoch {[round(v, 4) for v in losses]}, endpoint loss "
      f"{endpoint_history.history['loss'][-1]:.4f}, endpoint accuracy {endpoint_accuracy:.4f}")

result = {
    "figures": {
        "losses_after_calls": [losses_after_first, losses_after_second],
        "loss_after_second_call": value_after_second,
        "regularizer_losses": regularizer_losses,
        "model_losses": model_losses,
        "first_epoch_loss": float(losses[0]),
        "final_loss": float(losses[-1]),
        "endpoint_final_loss": float(endpoint_history.history["loss"][-1]),
        "endpoint_accuracy": endpoint_accuracy,
    },
    "checks": {
        "one loss per call": [losses_after_first, losses_after_second] == [1, 1],
        "training loss falls": losses[-1] < 0.5 * losses[0],
        "endpoint accuracy >= 0.9": endpoint_accuracy >= 0.9,
    },
}
print("RESULT " + json.dumps(result))
