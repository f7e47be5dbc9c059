import keras
# Scenario: Sequential models (the "Sequential model" guide): a model from a list and one built
# with add(); pop(); layers, get_layer by name, weights created only once the input shape is known,
# summary(), a feature-extraction model built from a Sequential's inputs and each layer's
# output, and transfer-style freezing of all but the last layer; then compile/fit.
# Threshold: accuracy >= 0.9 after training the last layer of the frozen model.
import io
import json
from contextlib import redirect_stdout

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(13)
rng = np.random.default_rng(0)

model = keras.Sequential(
    [
        layers.Dense(2, activation="relu", name="layer1"),
        layers.Dense(3, activation="relu", name="layer2"),
        layers.Dense(4, name="layer3"),
    ]
)
y = model(ops.ones((3, 3)))
first = {"built_weights": len(model.weights), "output_shape": list(y.shape),
         "layer_names": [layer.name for layer in model.layers]}

model = keras.Sequential()
model.add(layers.Dense(2, activation="relu"))
model.add(layers.Dense(3, activation="relu"))
model.add(layers.Dense(4))
model.pop()
popped = {"layers_after_pop": len(model.layers), "weights_before_build": len(model.weights)}

# with an Input first, the model is built at once and summary() works
model = keras.Sequential(name="my_sequential")
model.add(keras.Input(shape=(4,)))
model.add(layers.Dense(2, activation="relu", name="first"))
summary = io.StringIO()
with redirect_stdout(summary):
    model.summary()
model.add(layers.Dense(3, activation="relu"))
built = {"weights_after_input": len(model.weights), "layers": len(model.layers),
         "summary_names_layer": "first" in summary.getvalue(), "model_name": model.name,
         "get_layer_units": model.get_layer(name="first").units}

# feature extraction: a model that returns every layer's output
initial_model = keras.Sequential(
    [
        keras.Input(shape=(16,)),
        layers.Dense(32, activation="relu", name="d1"),
        layers.Dense(32, activation="relu", name="my_intermediate_layer"),
        layers.Dense(3, activation="softmax", name="d3"),
    ]
)
feature_extractor = keras.Model(inputs=initial_model.inputs,
                                outputs=[layer.output for layer in initial_model.layers])
features = feature_extractor(np.ones((2, 16), "float32"))
one_layer = keras.Model(inputs=initial_model.inputs,
                        outputs=initial_model.get_layer(name="my_intermediate_layer").output)

# train, then freeze all layers except the last and train on (recompiling after the change)
x = rng.standard_normal((900, 16)).astype("float32")
labels = np.argmax(x[:, :3], axis=1)
initial_model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
initial_model.fit(x[:600], labels[:600], batch_size=32, epochs=8, verbose=0)
for layer in initial_model.layers[:-1]:
    layer.trainable = False
initial_model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
frozen_before = [w.copy() for w in initial_model.get_weights()[:4]]
history = initial_model.fit(x, labels, batch_size=32, epochs=8, verbose=0)
frozen_kept = all(np.array_equal(a, b) for a, b in zip(frozen_before, initial_model.get_weights()[:4]))
accuracy = history.history["accuracy"][-1]
print("summary of the model with one Dense layer:")
print(summary.getvalue())

result = {
    "figures": {
        **first, **popped, **built,
        "feature_shapes": [list(f.shape) for f in features],
        "one_layer_output_shape": list(one_layer.output.shape),
        "trainable_weights": len(initial_model.trainable_weights),
        "non_trainable_weights": len(initial_model.non_trainable_weights),
        "accuracy": float(accuracy),
    },
    "checks": {"accuracy >= 0.9": accuracy >= 0.9, "frozen layers unchanged": frozen_kept},
}
print("RESULT " + json.dumps(result))
