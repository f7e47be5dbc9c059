import keras
# Scenario: making new layers via subclassing (the "Making new layers and models via
# subclassing" guide): a Linear layer whose weights are created in build(input_shape) with
# add_weight, get_config/from_config, compute_output_shape, a layer holding a non-trainable
# weight, an MLPBlock made of nested layers (weights tracked recursively), a custom Dropout-like
# layer that reads the `training` argument, all used in a model trained with fit.
# Threshold: test mse <= 0.05 (targets have variance ~1).
import json

import numpy as np
from keras import ops

keras.utils.set_random_seed(5)
rng = np.random.default_rng(0)


class Linear(keras.layers.Layer):
    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", trainable=True,
                                 name="kernel")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True, name="bias")

    def call(self, inputs):
        return ops.matmul(inputs, self.w) + self.b

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config


class ComputeSum(keras.layers.Layer):
    """Keeps a running total of its inputs in a non-trainable weight."""

    def __init__(self, input_dim, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = input_dim
        self.total = self.add_weight(initializer="zeros", shape=(input_dim,), trainable=False, name="total")

    def call(self, inputs):
        self.total.assign_add(ops.sum(inputs, axis=0))
        return self.total

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim}


class CustomDropout(keras.layers.Layer):
    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs, training=None):
        if training:
            return keras.random.dropout(inputs, rate=self.rate, seed=self.seed_generator)
        return inputs

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class MLPBlock(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.linear_1 = Linear(32)
        self.dropout = CustomDropout(0.1)
        self.linear_2 = Linear(32)
        self.linear_3 = Linear(1)

    def call(self, inputs, training=None):
        x = ops.relu(self.linear_1(inputs))
        x = self.dropout(x, training=training)
        x = ops.relu(self.linear_2(x))
        return self.linear_3(x)


# the layer on its own: weights appear on first call
linear_layer = Linear(4)
y = linear_layer(ops.ones((2, 2)))
weights_after_call = [list(w.shape) for w in linear_layer.weights]
clone = Linear.from_config(linear_layer.get_config())

summer = ComputeSum(2)
summer(np.ones((2, 2), "float32"))
summed = summer(np.ones((2, 2), "float32"))

mlp = MLPBlock()
mlp(ops.ones(shape=(3, 8)))  # builds the nested layers

# train the block inside a functional model on y = sin(x0) + x1 * x2 + noise
x = rng.uniform(-2, 2, (2000, 8)).astype("float32")
target = (np.sin(x[:, 0]) + x[:, 1] * x[:, 2] / 2 + 0.05 * rng.standard_normal(2000)).astype("float32")[:, None]
inputs = keras.Input(shape=(8,))
outputs = MLPBlock(name="mlp")(inputs)
model = keras.Model(inputs, outputs)
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
history = model.fit(x[:1600], target[:1600], batch_size=32, epochs=8, verbose=0)
test_mse = model.evaluate(x[1600:], target[1600:], verbose=0)
print(f"final training loss {history.history['loss'][-1]:.4f}, test mse {test_mse:.4f}")

result = {
    "figures": {
        "test_mse": float(test_mse),
        "linear_output_shape": list(y.shape),
        "linear_weights_after_call": weights_after_call,
        "linear_config_units": clone.get_config()["units"],
        "linear_compute_output_shape": list(linear_layer.compute_output_shape((None, 7, 2))[1:]),
        "compute_sum_after_two_calls": [float(v) for v in ops.convert_to_numpy(summed)],
        "compute_sum_weights": [len(summer.weights), len(summer.trainable_weights), len(summer.non_trainable_weights)],
        "mlp_weights": [len(mlp.weights), len(mlp.trainable_weights)],
        "model_trainable_weights": len(model.trainable_weights),
    },
    "checks": {"test_mse <= 0.05": bool(test_mse <= 0.05)},
}
print("RESULT " + json.dumps(result))
