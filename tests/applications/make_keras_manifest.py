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
    "resnet50_top": "keras.applications.ResNet50(weights=None)",
    "resnet50_notop_avg": "keras.applications.ResNet50(weights=None, include_top=False, pooling='avg')",
    "resnet101_notop": "keras.applications.ResNet101(weights=None, include_top=False, input_shape=(64, 64, 3))",
    "resnet152_notop_max": "keras.applications.ResNet152(weights=None, include_top=False, input_shape=(32, 32, 3), "
                           "pooling='max')",
    "resnet50v2_top": "keras.applications.ResNet50V2(weights=None)",
    "resnet101v2_notop_avg": "keras.applications.ResNet101V2(weights=None, include_top=False, "
                             "input_shape=(64, 64, 3), pooling='avg')",
    "resnet152v2_notop": "keras.applications.ResNet152V2(weights=None, include_top=False, input_shape=(32, 32, 3))",
    "vgg16_top": "keras.applications.VGG16(weights=None)",
    "vgg16_notop_avg": "keras.applications.VGG16(weights=None, include_top=False, pooling='avg')",
    "vgg19_top_10": "keras.applications.VGG19(weights=None, classes=10, classifier_activation=None)",
    "vgg19_notop_max": "keras.applications.VGG19(weights=None, include_top=False, input_shape=(64, 64, 3), "
                       "pooling='max')",
    "mobilenet_v2_1.0_224_top": "keras.applications.MobileNetV2(weights=None)",
    "mobilenet_v2_0.35_96_notop": "keras.applications.MobileNetV2(weights=None, alpha=0.35, include_top=False, "
                                  "input_shape=(96, 96, 3))",
    "mobilenet_v2_1.4_224_notop_avg": "keras.applications.MobileNetV2(weights=None, alpha=1.4, include_top=False, "
                                      "input_shape=(224, 224, 3), pooling='avg')",
    "mobilenet_v2_1.3_160_top_10": "keras.applications.MobileNetV2(weights=None, alpha=1.3, "
                                   "input_shape=(160, 160, 3), classes=10)",
    "mobilenet_v2_0.5_75x90_notop_max": "keras.applications.MobileNetV2(weights=None, alpha=0.5, include_top=False, "
                                        "input_shape=(75, 90, 3), pooling='max')",
    "densenet121_top": "keras.applications.DenseNet121(weights=None)",
    "densenet169_notop_avg": "keras.applications.DenseNet169(weights=None, include_top=False, "
                             "input_shape=(64, 64, 3), pooling='avg')",
    "densenet201_notop": "keras.applications.DenseNet201(weights=None, include_top=False, input_shape=(32, 32, 3))",
    "xception_top": "keras.applications.Xception(weights=None)",
    "xception_notop_avg": "keras.applications.Xception(weights=None, include_top=False, input_shape=(71, 71, 3), "
                          "pooling='avg')",
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
