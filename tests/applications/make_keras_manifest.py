"""Writes fixtures/keras_applications_manifest.json from real Keras (run by hand, with keras
installed: `KERAS_BACKEND=jax python tests/applications/make_keras_manifest.py`). For each
architecture: every layer of `model.layers` in order, with its class, name, and its weights'
names and shapes in Keras's saved order. The tests compare lamina's models against it without
needing keras."""
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

CASES = {
    "inception_v3_top": "keras.applications.InceptionV3(weights=None)",
    "inception_v3_notop_avg": "keras.applications.InceptionV3(weights=None, include_top=False, pooling='avg')",
    "mobilenet_0.25_224_top": "keras.applications.MobileNet(weights=None, alpha=0.25)",
    "mobilenet_0.25_224_notop": "keras.applications.MobileNet(weights=None, alpha=0.25, include_top=False, "
                                "input_shape=(224, 224, 3))",
    "mobilenet_1.0_128_notop_max": "keras.applications.MobileNet(weights=None, include_top=False, "
                                   "input_shape=(128, 128, 3), pooling='max')",
}


def describe(expr):
    import keras
    keras.backend.clear_session()
    model = eval(expr, {"keras": keras})
    layers = []
    for layer in model.layers:
        ws = layer.trainable_weights + layer.non_trainable_weights
        layers.append({"class": type(layer).__name__, "name": layer.name,
                       "weights": [[w.name, list(w.shape)] for w in ws]})
    return {"expr": expr, "name": model.name, "params": int(model.count_params()),
            "input_shape": list(model.inputs[0].shape), "output_shape": list(model.outputs[0].shape),
            "layers": layers}


if __name__ == "__main__":
    import keras
    out = {"keras_version": keras.__version__, "models": {k: describe(v) for k, v in CASES.items()}}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "keras_applications_manifest.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=0)
    os.replace(path + ".tmp", path)
    print(path, os.path.getsize(path), file=sys.stderr)
