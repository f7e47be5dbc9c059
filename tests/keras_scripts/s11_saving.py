import keras
# Scenario: saving and loading (the "Save, serialize, and export models" guide): a functional
# model with a custom layer registered with @keras.saving.register_keras_serializable and a
# custom activation function, trained, saved whole as .keras, reloaded (the registered layer is
# found by name; the function is passed in custom_objects) and compared; the same model through
# get_config/from_config, to_json/model_from_json, save_weights/load_weights (.weights.h5), and
# keras.models.clone_model. Thresholds: every reloaded copy predicts what the original does
# (atol 1e-5), and the reloaded model keeps training from the saved optimizer state.
import json
import os
import tempfile

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(11)
rng = np.random.default_rng(0)


@keras.saving.register_keras_serializable(package="MyLayers")
class ScaledDense(layers.Layer):
    def __init__(self, units, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.scale = units, scale

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        return self.scale * (ops.matmul(inputs, self.kernel) + self.bias)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "scale": self.scale})
        return config


def custom_activation(x):
    return ops.tanh(x) * 1.5


inputs = keras.Input(shape=(12,), name="features")
h = ScaledDense(24, scale=0.5, name="scaled")(inputs)
h = layers.Activation(custom_activation, name="act")(h)
h = layers.Dense(16, activation="relu", name="hidden")(h)
outputs = layers.Dense(4, activation="softmax", name="probs")(h)
model = keras.Model(inputs, outputs, name="saver")
model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

x = rng.standard_normal((800, 12)).astype("float32")
y = np.argmax(x[:, :4] + 0.3 * rng.standard_normal((800, 4)), axis=1)
model.fit(x, y, batch_size=32, epochs=3, verbose=0)
reference = model.predict(x[:16], verbose=0)

tmp = tempfile.mkdtemp()
path = os.path.join(tmp, "saver.keras")
model.save(path)
reloaded = keras.models.load_model(path, custom_objects={"custom_activation": custom_activation})
diffs = {"load_model": float(np.max(np.abs(reloaded.predict(x[:16], verbose=0) - reference)))}

config = model.get_config()
with keras.saving.custom_object_scope({"custom_activation": custom_activation}):
    from_config = keras.Model.from_config(config)
    from_json = keras.models.model_from_json(model.to_json())
    cloned = keras.models.clone_model(model)
weights_path = os.path.join(tmp, "saver.weights.h5")
model.save_weights(weights_path)
for name, other in [("from_config", from_config), ("model_from_json", from_json), ("clone_model", cloned)]:
    other.load_weights(weights_path)
    diffs[name] = float(np.max(np.abs(other.predict(x[:16], verbose=0) - reference)))

# the reloaded model resumes training with its optimizer state
loss_before = float(reloaded.evaluate(x, y, verbose=0)[0])
reloaded.fit(x, y, batch_size=32, epochs=2, verbose=0)
loss_after = float(reloaded.evaluate(x, y, verbose=0)[0])
print("max |prediction difference|:", diffs, f"loss before/after resuming {loss_before:.4f} {loss_after:.4f}")

result = {
    "figures": {
        "registered_name": keras.saving.get_registered_name(ScaledDense),
        "layer_names": [layer.name for layer in reloaded.layers],
        "reloaded_scale": reloaded.get_layer("scaled").scale,
        "reloaded_optimizer": type(reloaded.optimizer).__name__,
        "loss_before_resume": loss_before,
        "loss_after_resume": loss_after,
        "weights_file_count": len(model.weights),
    },
    "info": {"max_prediction_diffs": diffs},
    "checks": {
        **{f"{name} predicts the same": d <= 1e-5 for name, d in diffs.items()},
        "training resumes": loss_after < loss_before,
    },
}
print("RESULT " + json.dumps(result))
