"""lamina.applications: architectures equal to Keras's (a manifest written by real Keras),
weight files in both HDF5 layouts, weight-file lookup, preprocessing, frozen bases, and (with
keras installed) outputs equal to Keras's for the same weights."""
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
}


def describe(model):
    return [{"class": type(l).__name__, "name": l.name,
             "weights": [[w.name, list(w.shape)] for w in l.trainable_weights + l.non_trainable_weights]}
            for l in model.layers]


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
], ids=["inception_v3", "mobilenet"])
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
