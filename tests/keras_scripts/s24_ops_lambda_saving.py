import keras
# Scenario: a functional model built with keras.ops calls and a Lambda layer between its layers
# (keras.io's functional API and serialization guides), saved to '.keras' and loaded back: the
# lambda only with safe_mode=False, as Keras 3 requires; keras.tree over the model's weights.
# Thresholds: the reloaded model predicts what the original does; safe mode refuses the lambda;
# tree.flatten / map_structure keep the weight structure.
import json
import os
import tempfile

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(11)
rng = np.random.default_rng(0)

a = keras.Input((6,), name="a")
b = keras.Input((6,), name="b")
x = ops.concatenate([a, ops.square(b)], axis=-1)
x = ops.reshape(x, (-1, 3, 4))
x = layers.Lambda(lambda t: t * 0.5 + 1.0, name="affine")(x)
x = ops.mean(x, axis=1)
out = layers.Dense(2, name="head")(x)
model = keras.Model([a, b], out)
model.compile(optimizer="adam", loss="mse")
data = [rng.standard_normal((32, 6)).astype("float32") for _ in range(2)]
target = rng.standard_normal((32, 2)).astype("float32")
history = model.fit(data, target, epochs=3, verbose=0)
before = model.predict(data, verbose=0)

path = os.path.join(tempfile.mkdtemp(), "ops_lambda.keras")
model.save(path)
try:
    keras.models.load_model(path)
    refused = False
except ValueError:
    refused = True
again = keras.models.load_model(path, safe_mode=False)
after = again.predict(data, verbose=0)

weights = {"head": model.get_layer("head").get_weights()}
flat = keras.tree.flatten(weights)
shapes = keras.tree.map_structure(lambda w: list(w.shape), weights)

print("RESULT " + json.dumps({
    "figures": {"layer_count": len(model.layers), "weight_shapes": shapes, "flat_count": len(flat),
                "history_keys": sorted(history.history)},
    "checks": {"reloaded_predicts_the_same": bool(np.allclose(before, after, atol=1e-5)),
               "safe_mode_refuses_the_lambda": refused,
               "tree_keeps_structure": shapes == {"head": [[4, 2], [2]]}},
    "info": {"loss": [round(v, 4) for v in history.history["loss"]]},
}))
