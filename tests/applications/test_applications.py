"""lamina.applications: architectures equal to Keras's (a manifest written by real Keras),
weight files in both HDF5 layouts, weight-file lookup, preprocessing, frozen bases, and (with
keras installed) outputs equal to Keras's for the same weights."""
import importlib
import json
import os
import re
import urllib.error

import h5py
import numpy as np
import pytest

import lamina
from lamina import applications, layers
from lamina.applications import imagenet_utils
from lamina.layers.core import SymbolicOp

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = json.load(open(os.path.join(HERE, "fixtures", "keras_applications_manifest.json")))["models"]
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "data")
MOBILENET_FILE = os.path.join(SHARED, "pretrained", "mobilenet_2_5_224_tf_no_top.h5")

BUILDERS = {
    "inception_v3_top": lambda: applications.InceptionV3(weights=None),
    "inception_v3_notop_avg": lambda: applications.InceptionV3(weights=None, include_top=False, pooling="avg"),
    "mobilenet_0.25_224_top": lambda: applications.MobileNet(weights=None, alpha=0.25),
    "mobilenet_0.25_224_notop": lambda: applications.MobileNet(weights=None, alpha=0.25, include_top=False,
                                                               input_shape=(224, 224, 3)),
    "mobilenet_1.0_128_notop_max": lambda: applications.MobileNet(weights=None, include_top=False,
                                                                  input_shape=(128, 128, 3), pooling="max"),
    "resnet50_top": lambda: applications.ResNet50(weights=None),
    "resnet50_notop_avg": lambda: applications.ResNet50(weights=None, include_top=False, pooling="avg"),
    "resnet101_notop": lambda: applications.ResNet101(weights=None, include_top=False, input_shape=(64, 64, 3)),
    "resnet152_notop_max": lambda: applications.ResNet152(weights=None, include_top=False, input_shape=(32, 32, 3),
                                                          pooling="max"),
    "resnet50v2_top": lambda: applications.ResNet50V2(weights=None),
    "resnet101v2_notop_avg": lambda: applications.ResNet101V2(weights=None, include_top=False,
                                                              input_shape=(64, 64, 3), pooling="avg"),
    "resnet152v2_notop": lambda: applications.ResNet152V2(weights=None, include_top=False, input_shape=(32, 32, 3)),
    "vgg16_top": lambda: applications.VGG16(weights=None),
    "vgg16_notop_avg": lambda: applications.VGG16(weights=None, include_top=False, pooling="avg"),
    "vgg19_top_10": lambda: applications.VGG19(weights=None, classes=10, classifier_activation=None),
    "vgg19_notop_max": lambda: applications.VGG19(weights=None, include_top=False, input_shape=(64, 64, 3),
                                                  pooling="max"),
    "mobilenet_v2_1.0_224_top": lambda: applications.MobileNetV2(weights=None),
    "mobilenet_v2_0.35_96_notop": lambda: applications.MobileNetV2(weights=None, alpha=0.35, include_top=False,
                                                                   input_shape=(96, 96, 3)),
    "mobilenet_v2_1.4_224_notop_avg": lambda: applications.MobileNetV2(weights=None, alpha=1.4, include_top=False,
                                                                       input_shape=(224, 224, 3), pooling="avg"),
    "mobilenet_v2_1.3_160_top_10": lambda: applications.MobileNetV2(weights=None, alpha=1.3,
                                                                    input_shape=(160, 160, 3), classes=10),
    "mobilenet_v2_0.5_75x90_notop_max": lambda: applications.MobileNetV2(weights=None, alpha=0.5, include_top=False,
                                                                         input_shape=(75, 90, 3), pooling="max"),
    "densenet121_top": lambda: applications.DenseNet121(weights=None),
    "densenet169_notop_avg": lambda: applications.DenseNet169(weights=None, include_top=False,
                                                              input_shape=(64, 64, 3), pooling="avg"),
    "densenet201_notop": lambda: applications.DenseNet201(weights=None, include_top=False, input_shape=(32, 32, 3)),
    "xception_top": lambda: applications.Xception(weights=None),
    "xception_notop_avg": lambda: applications.Xception(weights=None, include_top=False, input_shape=(71, 71, 3),
                                                        pooling="avg"),
    "efficientnetb0_top": lambda: applications.EfficientNetB0(weights=None),
    "efficientnetb3_notop_max": lambda: applications.EfficientNetB3(weights=None, include_top=False,
                                                                    input_shape=(64, 64, 3), pooling="max"),
    "efficientnetb7_notop_avg": lambda: applications.EfficientNetB7(weights=None, include_top=False,
                                                                    input_shape=(32, 32, 3), pooling="avg"),
    "efficientnetv2b0_notop": lambda: applications.EfficientNetV2B0(weights=None, include_top=False),
    "efficientnetv2b3_top_10": lambda: applications.EfficientNetV2B3(weights=None, classes=10),
    "efficientnetv2s_notop": lambda: applications.EfficientNetV2S(weights=None, include_top=False,
                                                                  input_shape=(64, 64, 3)),
    "efficientnetv2l_notop_noprep": lambda: applications.EfficientNetV2L(weights=None, include_top=False,
                                                                         input_shape=(32, 32, 3),
                                                                         include_preprocessing=False),
    "mobilenet_v3_small_top": lambda: applications.MobileNetV3Small(weights=None),
    "mobilenet_v3_small_0.75_min_avg": lambda: applications.MobileNetV3Small(weights=None, alpha=0.75,
                                                                             minimalistic=True, include_top=False,
                                                                             pooling="avg"),
    "mobilenet_v3_large_min_notop": lambda: applications.MobileNetV3Large(weights=None, minimalistic=True,
                                                                          include_top=False, input_shape=(64, 64, 3)),
    "mobilenet_v3_large_1.25_top_10": lambda: applications.MobileNetV3Large(weights=None, alpha=1.25, classes=10,
                                                                            input_shape=(48, 56, 3),
                                                                            include_preprocessing=False),
    "convnext_tiny_notop": lambda: applications.ConvNeXtTiny(weights=None, include_top=False, input_shape=(32, 32, 3)),
    "convnext_small_top_10": lambda: applications.ConvNeXtSmall(weights=None, classes=10),
    "convnext_xlarge_notop_max_noprep": lambda: applications.ConvNeXtXLarge(weights=None, include_top=False,
                                                                            include_preprocessing=False,
                                                                            pooling="max"),
    "inception_resnet_v2_top": lambda: applications.InceptionResNetV2(weights=None),
    "inception_resnet_v2_notop_avg": lambda: applications.InceptionResNetV2(weights=None, include_top=False,
                                                                            input_shape=(75, 75, 3), pooling="avg"),
    "nasnet_mobile_top": lambda: applications.NASNetMobile(weights=None),
    "nasnet_large_notop_avg": lambda: applications.NASNetLarge(weights=None, include_top=False,
                                                               input_shape=(32, 32, 3), pooling="avg"),
}


def _layers(model):
    """`model.layers` as Keras lists them (the ops called on symbolic tensors, e.g. the `x + 3.0`
    of MobileNetV3's hard sigmoid, are operations, not layers: checked here too)."""
    assert not any(isinstance(l, SymbolicOp) for l in model.layers)
    return model.layers


def describe(model):
    return [{"class": type(l).__name__, "name": l.name,
             "weights": [[w.name, list(w.shape)] for w in l.trainable_weights + l.non_trainable_weights]}
            for l in _layers(model)]


@pytest.mark.parametrize("case", sorted(BUILDERS))
def test_architecture_equals_keras_manifest(case):
    lamina.utils.clear_session()
    model = BUILDERS[case]()
    want = MANIFEST[case]
    assert model.name == want["name"]
    assert model.count_params() == want["params"]
    assert list(model.inputs[0].shape) == want["input_shape"]
    assert list(model.outputs[0].shape) == want["output_shape"]
    got = describe(model)
    assert len(got) == len(want["layers"])
    for i, (g, w) in enumerate(zip(got, want["layers"])):
        assert g == w, f"layer {i}: lamina {g} != keras {w}"
    # the ops called on symbolic tensors are operations of the model, not layers (as in Keras)
    assert [op.name for op in model.operations if isinstance(op, SymbolicOp)] == want.get("ops", [])


def _keras2_file(path, model, rng, names_suffix=":0"):
    """Writes `model`'s layers with random values in Keras 2's layout (root `layer_names`, per
    layer `weight_names` like 'conv2d_1/kernel:0'); returns the values by layer."""
    values = {}
    with h5py.File(path, "w") as f:
        names = []
        for layer in model.layers:
            g = f.create_group(layer.name)
            names.append(layer.name.encode())
            ws = layer.trainable_weights + layer.non_trainable_weights
            wnames = [f"{layer.name}/{w.name}{names_suffix}".encode() for w in ws]
            g.attrs["weight_names"] = np.asarray(wnames, dtype="S") if wnames else np.zeros((0,), "S1")
            vals = []
            for wn, w in zip(wnames, ws):
                v = rng.standard_normal(w.shape).astype(np.float32)
                if "variance" in w.name:
                    v = np.abs(v) + 0.5
                g.create_dataset(wn.decode(), data=v)
                vals.append(v)
            values[layer.name] = vals
        f.attrs["layer_names"] = np.asarray(names, dtype="S")
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.4"
    return values


@pytest.mark.parametrize("build", [
    lambda w: applications.InceptionV3(weights=w, include_top=False, input_shape=(75, 75, 3)),
    lambda w: applications.MobileNet(weights=w, alpha=0.25, include_top=False, input_shape=(64, 64, 3)),
    lambda w: applications.ResNet50(weights=w, include_top=False, input_shape=(32, 32, 3)),
    lambda w: applications.ResNet50V2(weights=w, include_top=False, input_shape=(32, 32, 3)),
    lambda w: applications.VGG16(weights=w, include_top=False, input_shape=(32, 32, 3)),
    lambda w: applications.MobileNetV2(weights=w, alpha=0.35, include_top=False, input_shape=(32, 32, 3)),
    lambda w: applications.DenseNet121(weights=w, include_top=False, input_shape=(32, 32, 3)),
    lambda w: applications.Xception(weights=w, include_top=False, input_shape=(71, 71, 3)),
    lambda w: applications.NASNetMobile(weights=w, include_top=False, input_shape=(32, 32, 3)),
], ids=["inception_v3", "mobilenet", "resnet50", "resnet50v2", "vgg16", "mobilenet_v2", "densenet121", "xception",
        "nasnet_mobile"])
def test_weights_path_keras2_layout_loads_by_layer_order(tmp_path, build):
    template = build(None)
    path = str(tmp_path / "w.h5")
    values = _keras2_file(path, template, np.random.default_rng(0))
    model = build(path)
    for layer_t, layer in zip(template.layers, model.layers):
        got = [w.numpy() for w in layer.trainable_weights + layer.non_trainable_weights]
        for a, b in zip(got, values[layer_t.name]):
            np.testing.assert_array_equal(a, b)


def test_weights_keras3_layout_round_trip(tmp_path):
    a = applications.MobileNet(weights=None, alpha=0.25, include_top=False, input_shape=(64, 64, 3))
    rng = np.random.default_rng(1)
    a.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in a.weights])
    path = str(tmp_path / "m.weights.h5")
    a.save_weights(path)
    with h5py.File(path) as f:
        assert "layers" in f and "layers/depthwise_conv2d/vars/0" in f   # Keras 3's own layout
    b = applications.MobileNet(weights=path, alpha=0.25, include_top=False, input_shape=(64, 64, 3))
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())


def test_weights_for_another_architecture_name_the_first_mismatch(tmp_path):
    path = str(tmp_path / "w.h5")
    _keras2_file(path, applications.MobileNet(weights=None, alpha=0.25, include_top=False,
                                              input_shape=(64, 64, 3)), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"layer 'conv1'.*\(3, 3, 3, 16\).*\(3, 3, 3, 8\)"):
        applications.MobileNet(weights=path, alpha=0.5, include_top=False, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match=r"Layer count mismatch.*first difference is at position 0.*"
                                         r"\(3, 3, 3, 32\).*\(3, 3, 3, 8\)"):
        applications.InceptionV3(weights=path, include_top=False, input_shape=(75, 75, 3))


def test_argument_errors():
    with pytest.raises(ValueError, match="`weights` argument"):
        applications.InceptionV3(weights="/no/such/file.h5")
    with pytest.raises(ValueError, match="classes"):
        applications.InceptionV3(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="at least 75x75"):
        applications.InceptionV3(weights=None, include_top=False, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="pooling"):
        applications.MobileNet(weights=None, include_top=False, pooling="mean")
    with pytest.raises(ValueError, match="alpha can be one of"):
        applications.MobileNet(weights="imagenet", alpha=0.3)
    with pytest.raises(ValueError, match="depth multiplier must be 1"):
        applications.MobileNet(weights="imagenet", depth_multiplier=2)
    with pytest.raises(ValueError, match="classifier_activation"):
        applications.MobileNet(weights="imagenet", classifier_activation="relu")
    with pytest.raises(ValueError, match="static `input_shape`"):
        applications.MobileNet(weights=None, include_top=True, input_shape=(None, None, 3))


def test_input_tensor_gives_a_flat_model_from_the_source_input():
    inp = lamina.Input((64, 64, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    base = applications.MobileNet(input_tensor=x, alpha=0.25, include_top=False, pooling="avg", weights=None)
    assert base.inputs[0] is inp
    assert isinstance(base.layers[1], layers.Rescaling)
    assert base.name == "mobilenet_0.25_64"
    img = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    inner = applications.MobileNet(alpha=0.25, include_top=False, pooling="avg", weights=None,
                                   input_shape=(64, 64, 3))
    inner.set_weights(base.get_weights())
    np.testing.assert_allclose(base.predict(img, verbose=0),
                               inner.predict(img / 127.5 - 1.0, verbose=0), atol=1e-5, rtol=1e-5)


def test_weights_file_lookup_data_dir_then_cache_then_offline_error(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    (data / "pretrained").mkdir(parents=True)
    monkeypatch.setenv("LAMINA_DATA_DIR", str(data))
    monkeypatch.setenv("LAMINA_CACHE_DIR", str(cache))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr("urllib.request.urlopen", offline)
    fname = "mobilenet_5_0_160_tf_no_top.h5"
    with pytest.raises(OSError) as e:
        imagenet_utils.get_weights_file(fname, "https://example.invalid/" + fname)
    msg = str(e.value)
    assert fname in msg and "https://example.invalid/" + fname in msg
    assert os.path.join(str(data), "pretrained", fname) in msg and str(cache) in msg
    assert not list(cache.rglob("*.part")) and not list(cache.rglob("*.tmp"))
    (data / "pretrained" / fname).write_bytes(b"x")
    assert imagenet_utils.get_weights_file(fname, "unused") == os.path.join(str(data), "pretrained", fname)
    # a file with a known hash is checked: a corrupt copy is refused, naming the path
    bad = data / "pretrained" / "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
    bad.write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="md5 .* expected bcbd6486424b2319ff4ef7d526e38f63"):
        applications.InceptionV3(include_top=False)


def test_preprocess_input_modes():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(applications.inception_v3.preprocess_input(x.copy()), x / 127.5 - 1, rtol=1e-6)
    np.testing.assert_allclose(applications.mobilenet.preprocess_input(x.astype(np.uint8)),
                               x.astype(np.uint8) / 127.5 - 1, rtol=1e-6, atol=1e-6)
    caffe = imagenet_utils.preprocess_input(x.copy(), mode="caffe")
    np.testing.assert_allclose(caffe, x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32), rtol=1e-5)
    torch = imagenet_utils.preprocess_input(x.copy(), mode="torch")
    np.testing.assert_allclose(torch, (x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225], rtol=1e-5, atol=1e-5)
    cf = imagenet_utils.preprocess_input(np.moveaxis(x, -1, 1).copy(), data_format="channels_first", mode="caffe")
    np.testing.assert_allclose(np.moveaxis(cf, 1, -1), caffe, rtol=1e-5)
    t = applications.inception_v3.preprocess_input(lamina.convert_to_tensor(x))
    assert lamina.is_tensor(t)
    np.testing.assert_allclose(t.numpy(), x / 127.5 - 1, rtol=1e-5, atol=1e-6)
    tc = imagenet_utils.preprocess_input(lamina.convert_to_tensor(x), mode="caffe")
    np.testing.assert_allclose(tc.numpy(), caffe, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="mode"):
        imagenet_utils.preprocess_input(x, mode="keras")
    # on a symbolic input (DeepLabV3+'s `preprocess_input(keras.Input(...))`): op nodes of the model
    for mode, ref in (("caffe", caffe), ("torch", torch), ("tf", x / 127.5 - 1)):
        inp = lamina.Input((5, 5, 3))
        model = lamina.Model(inp, imagenet_utils.preprocess_input(inp, mode=mode))
        np.testing.assert_allclose(model.predict(x, verbose=0), ref, rtol=1e-5, atol=1e-4)


def test_decode_predictions(monkeypatch):
    monkeypatch.setattr(imagenet_utils, "_class_index", {str(i): [f"n{i:08d}", f"class{i}"] for i in range(1000)})
    p = np.zeros((2, 1000), np.float32)
    p[0, [5, 7, 9]] = [0.2, 0.5, 0.3]
    p[1, 999] = 1.0
    out = applications.mobilenet.decode_predictions(p, top=3)
    assert [r[:2] for r in out[0]] == [("n00000007", "class7"), ("n00000009", "class9"), ("n00000005", "class5")]
    assert out[0][0][2] == pytest.approx(0.5) and out[1][0][:2] == ("n00000999", "class999")
    with pytest.raises(ValueError, match=r"\(samples, 1000\).*\(2, 10\)"):
        applications.inception_v3.decode_predictions(np.zeros((2, 10)))


def test_frozen_base_keeps_batchnorm_statistics_bit_for_bit():
    base = applications.MobileNet(weights=None, alpha=0.25, include_top=False, input_shape=(32, 32, 3),
                                  pooling="avg")
    model = lamina.Sequential([base, layers.Dense(3, activation="softmax")])
    model.compile(optimizer=lamina.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)         # trainable: BN statistics move
    before = [w.numpy().copy() for w in base.weights]
    base.trainable = False                                      # no recompile
    head = model.layers[-1].kernel.numpy().copy()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    for w, b in zip(base.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
    assert not np.array_equal(head, model.layers[-1].kernel.numpy())
    base.trainable = True
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert any(not np.array_equal(w.numpy(), b) for w, b in zip(base.weights, before))


@pytest.mark.skipif(not os.path.exists(MOBILENET_FILE), reason="the shared pretrained MobileNet file is not here")
def test_real_mobilenet_weights_load_from_data_dir(monkeypatch):
    monkeypatch.setenv("LAMINA_DATA_DIR", SHARED)
    model = applications.MobileNet(alpha=0.25, include_top=False, weights="imagenet")
    bn = model.get_layer("conv_pw_13_bn")
    mv = bn.moving_variance.numpy()
    assert not np.allclose(mv, 1.0) and np.all(mv > 0)          # trained statistics, not the initial ones
    with h5py.File(MOBILENET_FILE) as f:
        np.testing.assert_array_equal(model.get_layer("conv_dw_1").depthwise_kernel.numpy(),
                                      f["conv_dw_1"]["conv_dw_1"]["depthwise_kernel:0"][()])


# ---- parity with real Keras ------------------------------------------------------------------------

def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def test_inception_v3_outputs_equal_keras_random_weights(tmp_path):
    keras = _keras()
    km = keras.applications.InceptionV3(weights=None, include_top=True)
    rng = np.random.default_rng(0)
    km.set_weights([(np.abs(rng.standard_normal(w.shape)) + 0.5 if "variance" in w.path else
                     rng.standard_normal(w.shape) * (0.5 / np.sqrt(np.prod(w.shape[:-1])) if len(w.shape) > 1
                                                     else 0.1)).astype(np.float32) for w in km.weights])
    path = str(tmp_path / "inception.weights.h5")
    km.save_weights(path)
    lm = applications.InceptionV3(weights=path)
    x = rng.uniform(-1, 1, (2, 299, 299, 3)).astype(np.float32)
    want = np.asarray(km.predict(x, verbose=0))
    got = lm.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
    # the no-top base, pooled, from a Keras 2-layout (legacy .h5) whole-model file
    kb = keras.Model(km.inputs, km.get_layer("mixed10").output)
    legacy = str(tmp_path / "inception_notop.h5")
    kb.save(legacy)
    lb = applications.InceptionV3(weights=legacy, include_top=False)
    np.testing.assert_allclose(lb.predict(x, verbose=0), np.asarray(kb.predict(x, verbose=0)), atol=1e-4, rtol=1e-3)


@pytest.mark.skipif(not os.path.exists(MOBILENET_FILE), reason="the shared pretrained MobileNet file is not here")
def test_mobilenet_real_weights_outputs_equal_keras():
    keras = _keras()
    km = keras.applications.MobileNet(alpha=0.25, include_top=False, weights=MOBILENET_FILE, pooling="avg",
                                      input_shape=(224, 224, 3))
    lm = applications.MobileNet(alpha=0.25, include_top=False, weights=MOBILENET_FILE, pooling="avg",
                                input_shape=(224, 224, 3))
    x = np.random.default_rng(0).uniform(-1, 1, (3, 224, 224, 3)).astype(np.float32)
    np.testing.assert_allclose(lm.predict(x, verbose=0), np.asarray(km.predict(x, verbose=0)), atol=1e-4, rtol=1e-4)


def test_manifest_names_are_keras_naming():
    # auto-named layers follow Keras's snake-case counters after clear_session
    lamina.utils.clear_session()
    m = applications.InceptionV3(weights=None, include_top=False, input_shape=(75, 75, 3))
    names = [l.name for l in m.layers]
    assert names[1:4] == ["conv2d", "batch_normalization", "activation"]
    assert "mixed10" in names and all(re.fullmatch(r"[a-z0-9_]+", n) for n in names)


def _random_keras_weights(km, rng):
    """Weights that keep activations of order one through a deep random network: kernels with
    variance 1 / fan-in, BN scale near 1, positive variances."""
    values = []
    for w in km.weights:
        shape, path = tuple(w.shape), w.path
        if path.endswith("/count"):             # Normalization's sample count (an integer)
            values.append(np.zeros(shape, w.dtype))
            continue
        if "moving_variance" in path or path.endswith("/variance"):
            v = np.abs(rng.standard_normal(shape)) + 0.5
        elif "gamma" in path:
            v = 1.0 + 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1:
            v = 0.1 * rng.standard_normal(shape)
        else:
            fan_in = np.prod(shape[:-2]) if "depthwise" in path else np.prod(shape[:-1])
            v = rng.standard_normal(shape) / np.sqrt(fan_in)
        values.append(v.astype(np.float32))
    km.set_weights(values)


def _ln_axis_as_list(config, class_name):
    """Keras's LayerNormalization turns an int `axis` into a list when it is built (its config
    then says [-1]); lamina's keeps the int. The same normalization either way: compared as lists,
    in nested Sequential configs too."""
    if class_name == "LayerNormalization" and isinstance(config.get("axis"), int):
        config = {**config, "axis": [config["axis"]]}
    if isinstance(config.get("layers"), list):
        config = {**config, "layers": [{**c, "config": _ln_axis_as_list(c["config"], c["class_name"])}
                                       for c in config["layers"]]}
    return config


def _assert_same_configs(lm, km):
    """Every layer's config (strides, padding, epsilon, momentum, activation, ...) is Keras's."""
    assert len(_layers(lm)) == len(km.layers)
    for l, k in zip(_layers(lm)[1:], km.layers[1:]):
        lc, kc = _ln_axis_as_list(l.get_config(), type(l).__name__), k.get_config()
        for key in ("name", "dtype"):
            lc.pop(key, None)
            kc.pop(key, None)
        assert (type(l).__name__, l.name, lc) == (type(k).__name__, k.name, kc)


def _small_densenet(module, weights=None):
    return module.DenseNet([2, 1, 2, 1], weights=weights, include_top=False, input_shape=(32, 32, 3))


def _small_nasnet(module, weights=None):
    """A NASNet of one normal cell a stage that skips the reductions' outputs as NASNetLarge does
    (NASNetMobile does not)."""
    return module.NASNet(input_shape=(32, 32, 3), penultimate_filters=192, num_blocks=1, stem_block_filters=16,
                         skip_reduction=True, include_top=False, weights=weights, pooling="max",
                         name="nasnet_small_test")


def _small_convnext(module, weights=None):
    """A shallow, narrow ConvNeXt with stochastic depth (the identity in inference) and a top."""
    return module.ConvNeXt([1, 1, 2, 1], [16, 24, 32, 40], drop_path_rate=0.2, weights=weights, include_top=True,
                           input_shape=(32, 32, 3), classes=5, classifier_activation=None, name="convnext_small_test")


# (architecture, its arguments, input shape); small inputs and few classes keep Keras's side fast;
# the newer tops compare logits (a softmax over 10 classes would hide differences of 1e-3)
# DenseNet is checked on a shallow DenseNet of the same blocks (DenseNet121 takes Keras 15 s)
PARITY = {
    "resnet50": ("ResNet50", dict(include_top=False), (64, 64, 3)),
    "resnet50v2_top": ("ResNet50V2", dict(classes=10), (64, 64, 3)),
    "vgg16_top": ("VGG16", dict(classes=10), (32, 32, 3)),
    "vgg19_max": ("VGG19", dict(include_top=False, pooling="max"), (48, 48, 3)),
    "mobilenet_v2_1.4_odd_top": ("MobileNetV2", dict(alpha=1.4, classes=10), (75, 90, 3)),
    "densenet_small": (_small_densenet, {}, (32, 32, 3)),
    "xception": ("Xception", dict(include_top=False), (71, 71, 3)),
    "efficientnetb0_top": ("EfficientNetB0", dict(classes=10, classifier_activation=None), (64, 64, 3)),
    "efficientnetv2b0": ("EfficientNetV2B0", dict(include_top=False, pooling="avg"), (64, 64, 3)),
    "mobilenet_v3_small_top": ("MobileNetV3Small", dict(classes=10, classifier_activation=None), (64, 64, 3)),
    "mobilenet_v3_large_min": ("MobileNetV3Large", dict(include_top=False, minimalistic=True, alpha=0.75),
                               (48, 40, 3)),
    "convnext_tiny": ("ConvNeXtTiny", dict(include_top=False, pooling="avg"), (32, 32, 3)),
    "convnext_small_custom": (_small_convnext, {}, (32, 32, 3)),
    "inception_resnet_v2": ("InceptionResNetV2", dict(include_top=False, pooling="max"), (75, 75, 3)),
    "nasnet_mobile_top": ("NASNetMobile", dict(classes=10, classifier_activation=None), (48, 40, 3)),
    "nasnet_small_skip_reduction": (_small_nasnet, {}, (32, 32, 3)),
}


@pytest.mark.parametrize("case", sorted(PARITY))
def test_outputs_equal_keras_random_weights(tmp_path, case):
    keras = _keras()
    arch, kwargs, shape = PARITY[case]
    if callable(arch):
        module = arch.__name__.split("_")[-1]
        keras_module = importlib.import_module(f"keras.src.applications.{module}")
        keras_fn = lambda: arch(keras_module)  # noqa: E731
        lamina_fn = lambda w: arch(getattr(applications, module), weights=w)  # noqa: E731
    else:
        keras_fn = lambda: getattr(keras.applications, arch)(weights=None, input_shape=shape, **kwargs)  # noqa: E731
        lamina_fn = lambda w: getattr(applications, arch)(weights=w, input_shape=shape, **kwargs)  # noqa: E731
    keras.utils.clear_session()
    km = keras_fn()
    rng = np.random.default_rng(0)
    _random_keras_weights(km, rng)
    path = str(tmp_path / "k.weights.h5")
    km.save_weights(path)
    lamina.utils.clear_session()
    lm = lamina_fn(path)
    _assert_same_configs(lm, km)
    x = rng.uniform(-1, 1, (2,) + shape).astype(np.float32)
    want = np.asarray(km.predict(x, verbose=0))
    got = lm.predict(x, verbose=0)
    assert got.shape == want.shape and np.std(want) > 1e-3
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, atol=1e-4 * max(scale, 1.0), rtol=1e-3)


class _Requested(Exception):
    pass


@pytest.mark.parametrize("build,fname,folder", [
    (lambda: applications.ResNet50(), "resnet50_weights_tf_dim_ordering_tf_kernels.h5", "resnet"),
    (lambda: applications.ResNet101(include_top=False), "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
     "resnet"),
    (lambda: applications.resnet50.ResNet50(include_top=False, input_shape=(64, 64, 3)),
     "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet"),
    (lambda: applications.ResNet152V2(), "resnet152v2_weights_tf_dim_ordering_tf_kernels.h5", "resnet"),
    (lambda: applications.VGG16(include_top=False), "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16"),
    (lambda: applications.VGG19(), "vgg19_weights_tf_dim_ordering_tf_kernels.h5", "vgg19"),
    (lambda: applications.MobileNetV2(), "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
     "mobilenet_v2"),
    (lambda: applications.MobileNetV2(alpha=0.35, include_top=False, input_shape=(96, 96, 3)),
     "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5", "mobilenet_v2"),
    (lambda: applications.MobileNetV2(alpha=0.50, include_top=False, input_shape=(128, 128, 3)),
     "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_128_no_top.h5", "mobilenet_v2"),
    (lambda: applications.DenseNet169(), "densenet169_weights_tf_dim_ordering_tf_kernels.h5", "densenet"),
    (lambda: applications.DenseNet201(include_top=False), "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
     "densenet"),
    (lambda: applications.Xception(include_top=False), "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
     "xception"),
], ids=lambda v: v if isinstance(v, str) and v.endswith(".h5") else "")
def test_imagenet_weights_file_names_and_urls_are_keras(monkeypatch, build, fname, folder):
    seen = []

    def record(name, url):
        seen.append((name, url))
        raise _Requested
    monkeypatch.setattr(imagenet_utils, "get_weights_file", record)
    with pytest.raises(_Requested):
        build()
    assert seen == [(fname, f"https://storage.googleapis.com/tensorflow/keras-applications/{folder}/{fname}")]
    if not fname.startswith("mobilenet_v2"):   # Keras publishes md5s for all but MobileNetV2
        assert len(imagenet_utils.KNOWN_HASHES[fname]) == 32


def test_mobilenet_v2_odd_input_loads_the_224_weights_with_a_warning(monkeypatch):
    seen = []
    monkeypatch.setattr(imagenet_utils, "get_weights_file", lambda name, url: seen.append(name) or _raise())
    with pytest.warns(UserWarning, match=r"Weights for input shape \(224, 224\)"), pytest.raises(_Requested):
        applications.MobileNetV2(alpha=0.75, include_top=False, input_shape=(100, 100, 3))
    assert seen == ["mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.75_224_no_top.h5"]


def _raise():
    raise _Requested


def test_new_architectures_offline_error_and_md5_check(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "pretrained").mkdir(parents=True)
    monkeypatch.setenv("LAMINA_DATA_DIR", str(data))
    monkeypatch.setenv("LAMINA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr("urllib.request.urlopen", offline)
    fname = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    with pytest.raises(OSError) as e:
        applications.MobileNetV2(alpha=0.35, include_top=False, input_shape=(96, 96, 3))
    assert fname in str(e.value) and os.path.join(str(data), "pretrained", fname) in str(e.value)
    assert "keras-applications/mobilenet_v2/" + fname in str(e.value)
    (data / "pretrained" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="md5 .* expected 4d473c1dd8becc155b73f8504c6f6626"):
        applications.ResNet50(include_top=False)


def test_new_architectures_argument_errors():
    with pytest.raises(ValueError, match=r"`pooling` must be None, 'avg' or 'max', received pooling='mean'"):
        applications.ResNet50(weights=None, include_top=False, pooling="mean")
    with pytest.raises(ValueError, match=r"pooling='sum'"):
        applications.VGG19(weights=None, include_top=False, pooling="sum")
    with pytest.raises(ValueError, match=r"`classes` should be 1000; received classes=10"):
        applications.ResNet50V2(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match=r"`classes` should be 1000; received classes=5"):
        applications.MobileNetV2(weights="imagenet", classes=5)
    with pytest.raises(ValueError, match=r"`classes` should be 1000; received classes=2"):
        applications.VGG16(weights="imagenet", include_top=True, classes=2)
    with pytest.raises(ValueError, match=r"`weights` argument.*received weights='/no/such.h5'"):
        applications.ResNet152(weights="/no/such.h5")
    with pytest.raises(ValueError, match=r"alpha must be one of 0.35, 0.5, 0.75, 1.0, 1.3 or 1.4 only; "
                                         r"received alpha=0.6"):
        applications.MobileNetV2(weights="imagenet", alpha=0.6)
    with pytest.raises(ValueError, match=r"`alpha` must be a positive number, received alpha=0"):
        applications.MobileNetV2(weights=None, alpha=0)
    with pytest.raises(ValueError, match=r"at least 32x32; received input_shape=\(16, 16, 3\)"):
        applications.ResNet101(weights=None, include_top=False, input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match=r"at least 32x32; received input_shape=\(31, 64, 3\)"):
        applications.VGG16(weights=None, include_top=False, input_shape=(31, 64, 3))
    with pytest.raises(ValueError, match=r"at least 32x32; received input_shape=\(24, 24, 3\)"):
        applications.MobileNetV2(weights=None, include_top=False, input_shape=(24, 24, 3))
    with pytest.raises(ValueError, match=r"at least 71x71; received input_shape=\(70, 70, 3\)"):
        applications.Xception(weights=None, include_top=False, input_shape=(70, 70, 3))
    with pytest.raises(ValueError, match=r"should be \(224, 224, 3\); received input_shape=\(200, 200, 3\)"):
        applications.ResNet50(weights="imagenet", input_shape=(200, 200, 3))
    with pytest.raises(ValueError, match=r"3 channels; received input_shape=\(64, 64, 1\)"):
        applications.DenseNet121(weights="imagenet", include_top=False, input_shape=(64, 64, 1))
    with pytest.raises(ValueError, match=r"classifier_activation='relu'"):
        applications.VGG16(weights="imagenet", classifier_activation="relu")
    with pytest.raises(ValueError, match=r"static `input_shape`; received input_shape=\(None, None, 3\)"):
        applications.ResNet50(weights=None, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match=r"input_tensor.shape\[2\] must equal input_shape\[1\].*"
                                         r"\(None, 96, 96, 3\).*\(96, 128, 3\)"):
        applications.MobileNetV2(weights=None, include_top=False, input_tensor=lamina.Input((96, 96, 3)),
                                 input_shape=(96, 128, 3))
    with pytest.raises(ValueError, match=r"ImageNet weights for blocks in .*received blocks=\(1, 2, 3, 4\)"):
        applications.densenet.DenseNet([1, 2, 3, 4], include_top=False)
    with pytest.raises(ValueError, match=r"received weights_name=None"):
        applications.resnet.ResNet(lambda x: x, False, True, include_top=False)


def test_mobilenet_v2_make_divisible_and_correct_pad():
    from lamina.applications.mobilenet_v2 import _make_divisible
    assert [_make_divisible(32 * a, 8) for a in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)] == [16, 16, 24, 32, 40, 48]
    assert _make_divisible(1280 * 1.4, 8) == 1792 and _make_divisible(int(16 * 0.35), 8) == 8
    assert _make_divisible(11, 8) == 16   # 8 would be more than 10% below 11
    assert imagenet_utils.correct_pad(lamina.Input((96, 75, 3)), 3) == ((0, 1), (1, 1))
    assert imagenet_utils.correct_pad(lamina.Input((None, None, 3)), (3, 5)) == ((0, 1), (1, 2))


def test_new_modules_preprocess_and_decode_as_keras(monkeypatch):
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    caffe = x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    for mod in (applications.resnet, applications.resnet50, applications.vgg16, applications.vgg19):
        np.testing.assert_allclose(mod.preprocess_input(x.copy()), caffe, rtol=1e-5, atol=1e-4)
    for mod in (applications.resnet_v2, applications.mobilenet_v2, applications.xception):
        np.testing.assert_allclose(mod.preprocess_input(x.copy()), x / 127.5 - 1, rtol=1e-5, atol=1e-6)
    torch = (x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(applications.densenet.preprocess_input(x.copy()), torch, rtol=1e-5, atol=1e-5)
    assert applications.resnet50.ResNet50 is applications.ResNet50 is applications.resnet.ResNet50
    monkeypatch.setattr(imagenet_utils, "_class_index", {str(i): [f"n{i:08d}", f"class{i}"] for i in range(1000)})
    p = np.zeros((1, 1000), np.float32)
    p[0, 42] = 1.0
    for mod in (applications.resnet50, applications.resnet_v2, applications.vgg16, applications.vgg19,
                applications.mobilenet_v2, applications.densenet, applications.xception):
        assert mod.decode_predictions(p, top=1) == [[("n00000042", "class42", pytest.approx(1.0))]]


def test_efficientnet_imagenet_preprocessing_and_weights_equal_keras(tmp_path, monkeypatch):
    """With weights="imagenet" the stem has Keras's extra Rescaling by 1 / sqrt(std), and the
    Normalization statistics (mean, variance, count) come from the file: a legacy-layout file with
    random values, given to both Keras and lamina as the release file, gives the same outputs."""
    keras = _keras()
    from lamina.applications import efficientnet
    shape = (64, 64, 3)
    lamina.utils.clear_session()
    template = applications.EfficientNetB0(weights=None, include_top=False, input_shape=shape)
    rng = np.random.default_rng(3)
    values = []
    for w in template.weights:
        if w.name == "count":
            values.append(np.array(7, np.int64))
        elif "variance" in w.name:
            values.append((np.abs(rng.standard_normal(w.shape)) * 0.05 + 0.01).astype(np.float32))
        elif w.name == "mean":
            values.append(np.array([0.485, 0.456, 0.406], np.float32))
        elif len(w.shape) == 1:
            values.append((1.0 + 0.1 * rng.standard_normal(w.shape) if w.name == "gamma"
                           else 0.1 * rng.standard_normal(w.shape)).astype(np.float32))
        else:
            fan_in = np.prod(w.shape[:-2]) if "dwconv" in w.path else np.prod(w.shape[:-1])
            values.append((rng.standard_normal(w.shape) / np.sqrt(fan_in)).astype(np.float32))
    template.set_weights(values)
    path = str(tmp_path / "efficientnetb0_notop.h5")
    template.save_weights(path)
    seen = []
    monkeypatch.setattr(imagenet_utils, "get_weights_file", lambda fname, url: seen.append(fname) or path)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", lambda fname, origin, **kw: seen.append(fname) or path)
    keras.utils.clear_session()
    km = keras.applications.EfficientNetB0(weights="imagenet", include_top=False, input_shape=shape)
    lamina.utils.clear_session()
    lm = applications.EfficientNetB0(weights="imagenet", include_top=False, input_shape=shape)
    assert seen == ["efficientnetb0_notop.h5"] * 2
    stem = lm.layers[3]
    assert isinstance(stem, layers.Rescaling)
    np.testing.assert_allclose(stem.scale, [1 / np.sqrt(s) for s in efficientnet.IMAGENET_STDDEV_RGB])
    norm = lm.layers[2]
    assert [w.name for w in norm.weights] == ["mean", "variance", "count"] and int(norm.count.numpy()) == 7
    _assert_same_configs(lm, km)
    x = rng.uniform(0, 255, (2,) + shape).astype(np.float32)
    want = np.asarray(km.predict(x, verbose=0))
    got = lm.predict(x, verbose=0)
    assert np.std(want) > 1e-3
    np.testing.assert_allclose(got, want, atol=1e-4 * max(np.abs(want).max(), 1.0), rtol=1e-3)


_KA = "https://storage.googleapis.com/tensorflow/keras-applications/"


@pytest.mark.parametrize("build,fname,url,file_hash", [
    (lambda: applications.EfficientNetB0(), "efficientnetb0.h5", "https://storage.googleapis.com/keras-applications/",
     "902e53a9f72be733fc0bcb005b3ebbac"),
    (lambda: applications.EfficientNetB7(include_top=False), "efficientnetb7_notop.h5",
     "https://storage.googleapis.com/keras-applications/", "cbcfe4450ddf6f3ad90b1b398090fe4a"),
    (lambda: applications.efficientnet.EfficientNetB4(include_top=False, name="mine"), "efficientnetb4_notop.h5",
     "https://storage.googleapis.com/keras-applications/", "ebc24e6d6c33eaebbd558eafbeedf1ba"),
    (lambda: applications.EfficientNetV2B0(), "efficientnetv2-b0.h5", _KA + "efficientnet_v2/",
     "21ecbf6da12460d5c40bb2f29ceb2188"),
    (lambda: applications.EfficientNetV2S(include_top=False), "efficientnetv2-s_notop.h5", _KA + "efficientnet_v2/",
     "af0682fb74e8c54910f2d4393339c070"),
    (lambda: applications.EfficientNetV2L(), "efficientnetv2-l.h5", _KA + "efficientnet_v2/",
     "27e6d408b53c7ebc868fefa357689935"),
    (lambda: applications.MobileNetV3Small(input_shape=(224, 224, 3)), "weights_mobilenet_v3_small_224_1.0_float.h5",
     _KA + "mobilenet_v3/", "8768d4c2e7dee89b9d02b2d03d65d862"),
    (lambda: applications.MobileNetV3Large(include_top=False, minimalistic=True, input_shape=(224, 224, 3)),
     "weights_mobilenet_v3_large_minimalistic_224_1.0_float_no_top_v2.h5", _KA + "mobilenet_v3/",
     "ec5221f64a2f6d1ef965a614bdae7973"),
    (lambda: applications.MobileNetV3Large(alpha=0.75, input_shape=(224, 224, 3)),
     "weights_mobilenet_v3_large_224_0.75_float.h5", _KA + "mobilenet_v3/", "765b44a33ad4005b3ac83185abf1d0eb"),
    (lambda: applications.ConvNeXtTiny(), "convnext_tiny.h5", _KA + "convnext/",
     "8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff"),
    (lambda: applications.ConvNeXtXLarge(include_top=False, input_shape=(32, 32, 3)), "convnext_xlarge_notop.h5",
     _KA + "convnext/", "de3f8a54174130e0cecdc71583354753d557fcf1f4487331558e2a16ba0cfe05"),
    (lambda: applications.InceptionResNetV2(), "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
     _KA + "inception_resnet_v2/", "e693bd0210a403b3192acc6073ad2e96"),
    (lambda: applications.InceptionResNetV2(include_top=False),
     "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5", _KA + "inception_resnet_v2/",
     "d19885ff4a710c122648d3b5c3b684e4"),
], ids=lambda v: v if isinstance(v, str) and v.endswith(".h5") else "")
def test_newer_imagenet_weights_file_names_urls_and_hashes_are_keras(monkeypatch, build, fname, url, file_hash):
    seen = []
    monkeypatch.setattr(imagenet_utils, "get_weights_file", lambda name, u: seen.append((name, u)) or _raise())
    with pytest.raises(_Requested):
        build()
    assert seen == [(fname, url + fname)]
    assert imagenet_utils.KNOWN_HASHES[fname] == file_hash


def test_mobilenet_v3_non_224_input_loads_the_224_weights_with_a_warning(monkeypatch):
    seen = []
    monkeypatch.setattr(imagenet_utils, "get_weights_file", lambda name, url: seen.append(name) or _raise())
    for shape in (None, (160, 160, 3), (224, 200, 3)):
        with pytest.warns(UserWarning, match=r"Weights for input shape \(224, 224\)"), pytest.raises(_Requested):
            applications.MobileNetV3Small(include_top=False, input_shape=shape)
    assert seen == ["weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"] * 3


def test_newer_architectures_argument_errors():
    with pytest.raises(ValueError, match=r"`classes` should be 1000; received classes=10"):
        applications.EfficientNetB0(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match=r"`weights` argument.*received weights='/no/such.h5'"):
        applications.EfficientNetV2S(weights="/no/such.h5")
    with pytest.raises(ValueError, match=r"pooling='sum'"):
        applications.EfficientNetB1(weights=None, include_top=False, pooling="sum")
    with pytest.raises(ValueError, match=r"at least 32x32; received input_shape=\(31, 64, 3\)"):
        applications.EfficientNetB2(weights=None, include_top=False, input_shape=(31, 64, 3))
    with pytest.raises(ValueError, match=r"should be \(260, 260, 3\); received input_shape=\(224, 224, 3\)"):
        applications.EfficientNetB2(weights="imagenet", input_shape=(224, 224, 3))
    with pytest.raises(ValueError, match=r"should be \(384, 384, 3\); received input_shape=\(224, 224, 3\)"):
        applications.EfficientNetV2S(weights="imagenet", input_shape=(224, 224, 3))
    with pytest.raises(ValueError, match=r"static `input_shape`; received input_shape=\(None, None, 3\)"):
        applications.EfficientNetV2B1(weights=None, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match=r"classifier_activation='relu'"):
        applications.EfficientNetV2M(weights="imagenet", classifier_activation="relu")
    with pytest.raises(ValueError, match=r"repeats in `EfficientNet` must be > 0. Received: repeats=0"):
        applications.efficientnet.EfficientNet(1.0, 1.0, 224, weights=None, include_top=False,
                                               blocks_args=[dict(applications.efficientnet.DEFAULT_BLOCKS_ARGS[0],
                                                                 repeats=0)])
    with pytest.raises(ValueError, match=r"received weights_name='b9'"):
        applications.efficientnet.EfficientNet(1.0, 1.0, 224, weights_name="b9")
    with pytest.raises(ValueError, match=r"received weights_name=None"):
        applications.efficientnet_v2.EfficientNetV2(1.0, 1.0, 224, weights=None)
    with pytest.raises(ValueError, match=r"alpha can be one of 0.75, 1.0 for non minimalistic or 1.0 for "
                                         r"minimalistic only; received alpha=0.5"):
        applications.MobileNetV3Small(weights="imagenet", alpha=0.5)
    with pytest.raises(ValueError, match=r"received alpha=0.75, minimalistic=True"):
        applications.MobileNetV3Large(weights="imagenet", alpha=0.75, minimalistic=True)
    with pytest.raises(ValueError, match=r"`alpha` must be a positive number, received alpha=-1"):
        applications.MobileNetV3Large(weights=None, alpha=-1)
    with pytest.raises(ValueError, match=r"at least 32x32; received input_shape=\(32, 16, 3\)"):
        applications.MobileNetV3Small(weights=None, input_shape=(32, 16, 3))
    with pytest.raises(ValueError, match=r"`classes` should be 1000; received classes=3"):
        applications.MobileNetV3Large(weights="imagenet", classes=3)
    with pytest.raises(ValueError, match=r"input_tensor.shape\[2\] must equal input_shape\[1\]"):
        applications.MobileNetV3Small(weights=None, input_tensor=lamina.Input((64, 64, 3)), input_shape=(64, 96, 3))
    with pytest.raises(ValueError, match=r"`classes` should be 1000; received classes=10"):
        applications.ConvNeXtBase(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match=r"at least 32x32; received input_shape=\(16, 16, 3\)"):
        applications.ConvNeXtLarge(weights=None, include_top=False, input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match=r"pooling='mean'"):
        applications.ConvNeXtSmall(weights=None, include_top=False, pooling="mean")
    with pytest.raises(ValueError, match=r"does not match convnext_tiny variant.*Expected depths: \[3, 3, 9, 3\], "
                                         r"got: \[3, 3, 3, 3\]"):
        applications.convnext.ConvNeXt([3, 3, 3, 3], [96, 192, 384, 768], weights="imagenet",
                                        weights_name="convnext_tiny")
    with pytest.raises(ValueError, match=r"received weights_name='convnext_huge'"):
        applications.convnext.ConvNeXt([3, 3, 9, 3], [96, 192, 384, 768], weights="imagenet",
                                       weights_name="convnext_huge")
    with pytest.raises(ValueError, match=r"at least 75x75; received input_shape=\(74, 80, 3\)"):
        applications.InceptionResNetV2(weights=None, include_top=False, input_shape=(74, 80, 3))
    with pytest.raises(ValueError, match=r"should be \(299, 299, 3\); received input_shape=\(224, 224, 3\)"):
        applications.InceptionResNetV2(weights="imagenet", input_shape=(224, 224, 3))
    with pytest.raises(ValueError, match=r"Expects \"block35\", \"block17\" or \"block8\", but got: block9"):
        applications.inception_resnet_v2.inception_resnet_block(lamina.Input((8, 8, 32)), 0.1, "block9", 1)


def test_newer_modules_preprocess_is_the_identity_and_decode_as_keras(monkeypatch):
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    monkeypatch.setattr(imagenet_utils, "_class_index", {str(i): [f"n{i:08d}", f"class{i}"] for i in range(1000)})
    p = np.zeros((1, 1000), np.float32)
    p[0, 7] = 1.0
    for mod in (applications.efficientnet, applications.efficientnet_v2, applications.mobilenet_v3,
                applications.convnext, applications.inception_resnet_v2):
        if mod is applications.inception_resnet_v2:   # Keras's "tf" mode
            np.testing.assert_allclose(mod.preprocess_input(x.copy()), x / 127.5 - 1, rtol=1e-5, atol=1e-6)
        else:
            assert mod.preprocess_input(x) is x
        assert mod.decode_predictions(p, top=1) == [[("n00000007", "class7", pytest.approx(1.0))]]


def test_newer_architectures_take_pixels_and_build_on_input_tensors():
    # include_preprocessing: the model's own first layers map 0..255 as the documented ranges say
    m = applications.EfficientNetV2S(weights=None, include_top=False, input_shape=(32, 32, 3))
    assert isinstance(m.layers[1], layers.Rescaling) and m.layers[1].scale == 1 / 128 and m.layers[1].offset == -1
    m = applications.EfficientNetV2B2(weights=None, include_top=False, input_shape=(32, 32, 3))
    assert [type(l).__name__ for l in m.layers[1:3]] == ["Rescaling", "Normalization"] and not m.layers[2].weights
    m = applications.EfficientNetV2B2(weights=None, include_top=False, input_shape=(32, 32, 1))
    assert isinstance(m.layers[1], layers.Rescaling) and m.layers[1].scale == 1 / 128   # not 3 channels
    inp = lamina.Input((48, 48, 3))
    base = applications.MobileNetV3Small(input_tensor=inp, weights=None, include_top=False, pooling="avg")
    assert base.inputs[0] is inp and base.output.shape == (None, 576)
    inp = lamina.Input((40, 40, 3))
    x = layers.Rescaling(1.0)(inp)
    base = applications.EfficientNetB0(input_tensor=x, weights=None, include_top=False)
    assert base.inputs[0] is inp and base.output.shape == (None, 2, 2, 1280)
    base = applications.convnext.ConvNeXt([1, 1, 1, 1], [8, 8, 8, 8], input_tensor=x, include_top=False)
    assert base.inputs[0] is inp and base.output.shape == (None, 1, 1, 8)
    assert isinstance(base.layers[2], layers.Normalization) and base.layers[2].name == "convnext_prestem_normalization"


def test_convnext_and_inception_resnet_layers_equal_keras_and_deserialize():
    """StochasticDepth, LayerScale, the grouped Conv2D ConvNeXt uses and CustomScaleLayer: Keras's
    outputs and configs, and Keras's serialized form loads into them."""
    keras = _keras()
    from keras.src.applications import convnext as k_convnext
    from keras.src.applications import inception_resnet_v2 as k_irv2
    from lamina.applications import convnext, inception_resnet_v2
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 5, 6)).astype(np.float32)
    y = rng.standard_normal((3, 5, 5, 6)).astype(np.float32)
    pairs = [(k_convnext.LayerScale(0.25, 6, name="ls"), convnext.LayerScale(0.25, 6, name="ls"), [x]),
             (k_convnext.StochasticDepth(0.3, name="sd"), convnext.StochasticDepth(0.3, name="sd"), [x]),
             (keras.layers.Conv2D(6, 3, padding="same", groups=6, name="dw"),
              layers.Conv2D(6, 3, padding="same", groups=6, name="dw"), [x]),
             (k_irv2.CustomScaleLayer(0.17, name="cs"), inception_resnet_v2.CustomScaleLayer(0.17, name="cs"),
              [[x, y]])]
    for k, l, args in pairs:
        want = np.asarray(k(*args))
        l(*args)
        if k.weights:
            l.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in l.weights])
            k.set_weights(l.get_weights())
            want = np.asarray(k(*args))
        np.testing.assert_allclose(l(*args).numpy(), want, rtol=1e-5, atol=1e-5)
        assert [w.shape for w in l.weights] == [tuple(w.shape) for w in k.weights]
        assert l.get_config() == k.get_config()
        cfg = keras.saving.serialize_keras_object(k)
        if type(k).__name__ != "Conv2D":
            assert cfg["module"].startswith("keras.src.applications.")
        back = layers.deserialize(cfg)
        assert type(back) is type(l) and back.get_config() == l.get_config()
        again = layers.deserialize(layers.serialize(l))
        assert type(again) is type(l) and again.get_config() == l.get_config()
    assert layers.serialize(pairs[2][1])["class_name"] == "Conv2D"
    fresh = convnext.LayerScale(0.25, 6)
    fresh(x)
    np.testing.assert_array_equal(fresh.gamma.numpy(), np.full(6, 0.25, np.float32))
    # stochastic depth in training: whole samples dropped, the others scaled by 1 / 0.7
    sd = pairs[1][1]
    big = np.ones((400, 2, 2, 3), np.float32)
    out = sd(big, training=True).numpy()
    per_sample = out.reshape(400, -1)
    assert np.all((per_sample == 0).all(axis=1) | np.isclose(per_sample, 1 / 0.7).all(axis=1))
    assert 0.2 < (per_sample[:, 0] == 0).mean() < 0.4
    with pytest.raises(ValueError, match=r"filters must be evenly divisible by the number of groups"):
        layers.Conv2D(6, 3, groups=4)
    with pytest.raises(ValueError, match=r"input channels must be evenly divisible by the number of groups"):
        layers.Conv2D(6, 3, groups=6)(np.zeros((1, 4, 4, 3), np.float32))


# ---- NASNet -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("build,fname,url_name,file_hash", [
    (lambda: applications.NASNetMobile(), "nasnet_mobile.h5", "NASNet-mobile.h5",
     "020fb642bf7360b370c678b08e0adf61"),
    (lambda: applications.NASNetMobile(include_top=False), "nasnet_mobile_no_top.h5", "NASNet-mobile-no-top.h5",
     "1ed92395b5b598bdda52abe5c0dbfd63"),
    (lambda: applications.nasnet.NASNetMobile(include_top=False, input_shape=(64, 96, 3), pooling="avg"),
     "nasnet_mobile_no_top.h5", "NASNet-mobile-no-top.h5", "1ed92395b5b598bdda52abe5c0dbfd63"),
    (lambda: applications.NASNetLarge(), "nasnet_large.h5", "NASNet-large.h5", "11577c9a518f0070763c2b964a382f17"),
    (lambda: applications.NASNetLarge(include_top=False, input_shape=(32, 32, 3)), "nasnet_large_no_top.h5",
     "NASNet-large-no-top.h5", "d81d89dc07e6e56530c4e77faddd61b5"),
], ids=lambda v: v if isinstance(v, str) and v.endswith(".h5") and v.startswith("nasnet") else "")
def test_nasnet_weights_file_names_urls_and_hashes_are_keras(monkeypatch, build, fname, url_name, file_hash):
    """Keras stores the files under other names than the URLs' (nasnet_mobile.h5 from NASNet-mobile.h5)."""
    seen = []
    monkeypatch.setattr(imagenet_utils, "get_weights_file", lambda name, u: seen.append((name, u)) or _raise())
    with pytest.raises(_Requested):
        build()
    assert seen == [(fname, _KA + "nasnet/" + url_name)]
    assert imagenet_utils.KNOWN_HASHES[fname] == file_hash


def test_nasnet_argument_errors():
    nasnet = applications.nasnet
    with pytest.raises(ValueError, match=r"`classes` should be 1000; received classes=10"):
        applications.NASNetMobile(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match=r"`weights` argument.*received weights='/no/such.h5'"):
        applications.NASNetLarge(weights="/no/such.h5")
    with pytest.raises(ValueError, match=r"should be \(331, 331, 3\); received input_shape=\(224, 224, 3\)"):
        applications.NASNetLarge(weights="imagenet", input_shape=(224, 224, 3))
    with pytest.raises(ValueError, match=r"should be \(224, 224, 3\); received input_shape=\(331, 331, 3\)"):
        applications.NASNetMobile(weights="imagenet", input_shape=(331, 331, 3))
    with pytest.raises(ValueError, match=r"at least 32x32; received input_shape=\(31, 64, 3\)"):
        applications.NASNetMobile(weights=None, include_top=False, input_shape=(31, 64, 3))
    with pytest.raises(ValueError, match=r"must be static \(no None entries\). Got: `input_shape=\(None, None, 3\)`"):
        applications.NASNetLarge(weights="imagenet", include_top=False, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match=r"static `input_shape`; received input_shape=\(None, None, 3\)"):
        applications.NASNetMobile(weights=None, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match=r"classifier_activation='relu'"):
        applications.NASNetMobile(weights="imagenet", classifier_activation="relu")
    with pytest.raises(ValueError, match=r"pooling='mean'"):
        applications.NASNetLarge(weights=None, include_top=False, pooling="mean")
    with pytest.raises(ValueError, match=r"`penultimate_filters` must be a multiple of 24 \* \(`filter_multiplier` "
                                         r"\*\* 2\). Current value: 1000"):
        nasnet.NASNet(input_shape=(32, 32, 3), penultimate_filters=1000, include_top=False, weights=None)
    with pytest.raises(ValueError, match=r"ImageNet weights can only be loaded with NASNetLarge or NASNetMobile"):
        nasnet.NASNet(input_shape=(128, 128, 3), include_top=False, default_size=128)


def test_nasnet_input_tensor_preprocess_and_decode_as_keras(monkeypatch):
    inp = lamina.Input((64, 64, 3))
    base = applications.NASNetMobile(input_tensor=inp, weights=None, include_top=False)
    assert base.inputs[0] is inp and base.output.shape == (None, 2, 2, 1056) and base.name == "nasnet_mobile"
    m = applications.nasnet.NASNet(input_shape=(32, 32, 3), penultimate_filters=96, num_blocks=1,
                                   stem_block_filters=8, include_top=True, classes=3, weights=None)
    assert m.name == "NASNet" and m.output.shape == (None, 3)
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(applications.nasnet.preprocess_input(x.copy()), x / 127.5 - 1, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(imagenet_utils, "_class_index", {str(i): [f"n{i:08d}", f"class{i}"] for i in range(1000)})
    p = np.zeros((1, 1000), np.float32)
    p[0, 3] = 1.0
    assert applications.nasnet.decode_predictions(p, top=1) == [[("n00000003", "class3", pytest.approx(1.0))]]
