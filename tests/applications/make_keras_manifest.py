"""Writes fixtures/keras_applications_manifest.json from real Keras (run by hand, with keras
installed: `KERAS_BACKEND=jax python tests/applications/make_keras_manifest.py`). For each
architecture: every layer of `model.layers` in order, with its class, name, and its weights'
names and shapes in Keras's saved order, and (as "ops", when there are any) the names of the ops
called on symbolic tensors (`x + 3.0` in MobileNetV3: operations of the model that Keras does not
list among its layers). The tests compare lamina's models against it without needing keras."""
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
    "efficientnetb0_top": "keras.applications.EfficientNetB0(weights=None)",
    "efficientnetb3_notop_max": "keras.applications.EfficientNetB3(weights=None, include_top=False, "
                                "input_shape=(64, 64, 3), pooling='max')",
    "efficientnetb7_notop_avg": "keras.applications.EfficientNetB7(weights=None, include_top=False, "
                                "input_shape=(32, 32, 3), pooling='avg')",
    "efficientnetv2b0_notop": "keras.applications.EfficientNetV2B0(weights=None, include_top=False)",
    "efficientnetv2b3_top_10": "keras.applications.EfficientNetV2B3(weights=None, classes=10)",
    "efficientnetv2s_notop": "keras.applications.EfficientNetV2S(weights=None, include_top=False, "
                             "input_shape=(64, 64, 3))",
    "efficientnetv2l_notop_noprep": "keras.applications.EfficientNetV2L(weights=None, include_top=False, "
                                    "input_shape=(32, 32, 3), include_preprocessing=False)",
    "mobilenet_v3_small_top": "keras.applications.MobileNetV3Small(weights=None)",
    "mobilenet_v3_small_0.75_min_avg": "keras.applications.MobileNetV3Small(weights=None, alpha=0.75, "
                                       "minimalistic=True, include_top=False, pooling='avg')",
    "mobilenet_v3_large_min_notop": "keras.applications.MobileNetV3Large(weights=None, minimalistic=True, "
                                    "include_top=False, input_shape=(64, 64, 3))",
    "mobilenet_v3_large_1.25_top_10": "keras.applications.MobileNetV3Large(weights=None, alpha=1.25, classes=10, "
                                      "input_shape=(48, 56, 3), include_preprocessing=False)",
    "convnext_tiny_notop": "keras.applications.ConvNeXtTiny(weights=None, include_top=False, input_shape=(32, 32, 3))",
    "convnext_small_top_10": "keras.applications.ConvNeXtSmall(weights=None, classes=10)",
    "convnext_xlarge_notop_max_noprep": "keras.applications.ConvNeXtXLarge(weights=None, include_top=False, "
                                        "include_preprocessing=False, pooling='max')",
    "inception_resnet_v2_top": "keras.applications.InceptionResNetV2(weights=None)",
    "inception_resnet_v2_notop_avg": "keras.applications.InceptionResNetV2(weights=None, include_top=False, "
                                     "input_shape=(75, 75, 3), pooling='avg')",
    "nasnet_mobile_top": "keras.applications.NASNetMobile(weights=None)",
    "nasnet_large_notop_avg": "keras.applications.NASNetLarge(weights=None, include_top=False, "
                              "input_shape=(32, 32, 3), pooling='avg')",
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
    out = {"expr": expr, "name": model.name, "params": int(model.count_params()),
           "input_shape": list(model.inputs[0].shape), "output_shape": list(model.outputs[0].shape),
           "layers": layers}
    ops = [op.name for op in model.operations if not isinstance(op, keras.layers.Layer)]
    if ops:
        out["ops"] = ops
    return out


if __name__ == "__main__":
    import keras
    out = {"keras_version": keras.__version__, "models": {k: describe(v) for k, v in CASES.items()}}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "keras_applications_manifest.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=0)
    os.replace(path + ".tmp", path)
    print(path, os.path.getsize(path), file=sys.stderr)
