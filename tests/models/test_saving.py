import json
import os
import zipfile

import h5py
import numpy as np
import pytest

import lamina
from lamina import callbacks, layers
from lamina.models import io as model_io


def _model(name_prefix=""):
    inp = lamina.Input(shape=(4,))
    h = layers.Dense(8, activation="tanh", name=name_prefix + "hidden")(inp)
    out = layers.Dense(2, name=name_prefix + "out")(h)
    return lamina.Model(inp, out)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((32, 4)).astype(np.float32), rng.standard_normal((32, 2)).astype(np.float32)


def test_weights_round_trip_uses_keras_layout(tmp_path):
    m = _model()
    p = str(tmp_path / "w.h5")
    m.save_weights(p)
    with h5py.File(p, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names[-2:] == ["hidden", "out"]
        assert [n.decode() for n in f["hidden"].attrs["weight_names"]] == ["hidden/kernel", "hidden/bias"]
        assert f["hidden"]["hidden/kernel"].shape == (4, 8)
    m2 = _model("x_")  # different names: loads by topological order
    m2.load_weights(p)
    x, _ = _data()
    np.testing.assert_allclose(m2.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)


def test_load_by_name_skip_mismatch_and_errors(tmp_path):
    m = _model()
    p = str(tmp_path / "w.h5")
    m.save_weights(p)
    inp = lamina.Input(shape=(4,))
    other = lamina.Model(inp, layers.Dense(3, name="out")(layers.Dense(8, name="hidden")(inp)))
    with pytest.raises(ValueError, match=r"layer 'out'.*out/kernel.*\(8, 3\).*\(8, 2\)"):
        other.load_weights(p)
    with pytest.warns(UserWarning, match="skipped"):
        other.load_weights(p, by_name=True, skip_mismatch=True)
    np.testing.assert_allclose(other.get_layer("hidden").get_weights()[0], m.get_layer("hidden").get_weights()[0])
    small = lamina.Sequential([lamina.Input(shape=(4,)), layers.Dense(2)])
    with pytest.raises(ValueError, match="Layer count mismatch"):
        small.load_weights(p)


@pytest.mark.parametrize("ext", [".h5", ".keras"])
def test_full_model_round_trip_resumes_training_exactly(tmp_path, ext):
    x, y = _data(1)
    m = _model()
    m.compile(optimizer=lamina.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    m.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    p = str(tmp_path / ("m" + ext))
    m.save(p)
    loaded = lamina.models.load_model(p)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)
    assert loaded.optimizer.iterations == m.optimizer.iterations
    m.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for a, b in zip(m.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_sequential_config_round_trip(tmp_path):
    m = lamina.Sequential([lamina.Input(shape=(3,)), layers.Dense(4, activation="relu"), layers.Dropout(0.2),
                           layers.Dense(1)])
    p = str(tmp_path / "s.keras")
    m.save(p)
    loaded = lamina.models.load_model(p)
    assert [type(l).__name__ for l in loaded.layers] == ["Dense", "Dropout", "Dense"]
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)


def test_interrupted_save_leaves_previous_file(tmp_path, monkeypatch):
    m = _model()
    p = str(tmp_path / "w.h5")
    m.save_weights(p)
    before = open(p, "rb").read()

    def boom(*a, **k):
        raise KeyboardInterrupt("interrupted mid-save")
    monkeypatch.setattr(model_io, "write_weights", boom)
    with pytest.raises(KeyboardInterrupt):
        m.save_weights(p)
    assert open(p, "rb").read() == before
    assert os.listdir(tmp_path) == ["w.h5"]


def test_custom_layer_needs_registration(tmp_path):
    class Scale(layers.Layer):
        def __init__(self, factor=2.0, **kw):
            super().__init__(**kw)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}
    inp = lamina.Input(shape=(2,))
    m = lamina.Model(inp, Scale(3.0)(inp))
    p = str(tmp_path / "c.keras")
    m.save(p)
    with pytest.raises(ValueError, match="Unknown layer class 'Scale'.*custom_objects"):
        lamina.models.load_model(p)
    loaded = lamina.models.load_model(p, custom_objects={"Scale": Scale})
    np.testing.assert_allclose(loaded.predict(np.ones((1, 2), np.float32), verbose=0), [[3.0, 3.0]])


def test_model_checkpoint_templates_and_best_only(tmp_path):
    x, y = _data(2)
    m = _model()
    m.compile(optimizer="sgd", loss="mse")
    tpl = str(tmp_path / "ckpt-{epoch:02d}.weights.h5")
    m.fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.ModelCheckpoint(tpl, save_weights_only=True,
                                                                           monitor="loss")])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01.weights.h5", "ckpt-02.weights.h5", "ckpt-03.weights.h5"]
    best = str(tmp_path / "best.keras")
    cb = callbacks.ModelCheckpoint(best, monitor="loss", save_best_only=True)
    m.fit(x, y, epochs=2, verbose=0, callbacks=[cb])
    assert os.path.exists(best) and cb.best < np.inf


# ---- configs, cloning, JSON ------------------------------------------------------------------------

def _graph():
    """Two inputs, two outputs, a shared layer and a nested model."""
    ii = lamina.Input(shape=(4,))
    inner = lamina.Model(ii, layers.Dense(3, activation="tanh")(ii), name="inner")
    a, b = lamina.Input(shape=(4,), name="a"), lamina.Input(shape=(4,), name="b")
    shared = layers.Dense(4, name="shared")
    h = layers.Concatenate()([inner(shared(a)), inner(shared(b))])
    return lamina.Model([a, b], [layers.Dense(2, name="o1")(h), layers.Dense(1, name="o2")(h)], name="g")


def _xs(n=3):
    rng = np.random.default_rng(4)
    return [rng.standard_normal((n, 4)).astype(np.float32) for _ in range(2)]


def test_model_from_config_for_functional_and_sequential():
    m = _graph()
    for cls in (lamina.Model, lamina.models.Functional):
        again = cls.from_config(m.get_config())
        assert isinstance(again, lamina.models.Functional) and again.get_config() == m.get_config()
        again.set_weights(m.get_weights())
        for p, q in zip(again.predict(_xs(), verbose=0), m.predict(_xs(), verbose=0)):
            np.testing.assert_allclose(p, q, atol=1e-6)
    s = lamina.Sequential([layers.Dense(4, input_shape=(3,), activation="relu"), layers.Dense(2)], name="s")
    again = lamina.Sequential.from_config(s.get_config())
    assert again.built and again.get_config() == s.get_config() and again.input_shape == (None, 3)
    assert s.get_config()["layers"][0]["class_name"] == "InputLayer" and s.get_config()["build_input_shape"] == \
        (None, 3)


def test_clone_model_has_new_weights_and_same_config():
    m = _graph()
    c = lamina.models.clone_model(m)
    assert c.get_config() == m.get_config()
    assert all(not np.allclose(a, b) for a, b in zip(c.get_weights(), m.get_weights()) if a.size > 1 and b.any())
    assert len(c.weights) == len(m.weights)        # the shared layer is cloned once
    c.set_weights(m.get_weights())
    for p, q in zip(c.predict(_xs(), verbose=0), m.predict(_xs(), verbose=0)):
        np.testing.assert_allclose(p, q, atol=1e-6)
    x = lamina.Input(shape=(4,), name="new_a"), lamina.Input(shape=(4,), name="new_b")
    c2 = lamina.models.clone_model(m, input_tensors=list(x), clone_function=lambda l: l)   # shares the layers
    assert [t.name for t in c2.inputs] == ["new_a", "new_b"]
    for p, q in zip(c2.predict(_xs(), verbose=0), m.predict(_xs(), verbose=0)):
        np.testing.assert_allclose(p, q, atol=1e-6)
    s = lamina.Sequential([lamina.Input(shape=(3,)), layers.Dense(4), layers.Dropout(0.1), layers.Dense(1)])
    cs = lamina.models.clone_model(s)
    assert isinstance(cs, lamina.Sequential) and cs.get_config() == s.get_config()
    assert not np.allclose(cs.get_weights()[0], s.get_weights()[0])
    with pytest.raises(ValueError, match="2 input"):
        lamina.models.clone_model(m, input_tensors=[x[0]])


def test_to_json_and_model_from_json_keep_the_compile_config():
    m = _graph()
    m.compile(optimizer=lamina.optimizers.Adam(0.003), loss=["mse", "mae"], metrics=[["mae"], []])
    js = m.to_json(indent=1)
    again = lamina.models.model_from_json(js)
    assert again.get_config() == m.get_config()
    assert again.compiled and isinstance(again.optimizer, lamina.optimizers.Adam)
    assert again.optimizer.learning_rate == pytest.approx(0.003)
    with pytest.raises(ValueError, match="not valid JSON"):
        lamina.models.model_from_json("{oops")


def test_layers_serialize_and_deserialize_in_keras_form():
    d = layers.Dense(3, activation="relu", kernel_regularizer="l2", name="d")
    cfg = layers.serialize(d)
    assert cfg["module"] == "keras.layers" and cfg["class_name"] == "Dense" and cfg["registered_name"] is None
    assert cfg["config"]["kernel_regularizer"]["module"] == "keras.regularizers"
    assert cfg["config"]["dtype"]["class_name"] == "DTypePolicy"
    again = layers.deserialize(cfg)
    assert isinstance(again, layers.Dense) and again.get_config() == d.get_config()
    assert isinstance(layers.deserialize({"class_name": "Dense", "config": {"units": 2}}), layers.Dense)  # legacy
    d(np.ones((1, 5), np.float32))
    assert layers.serialize(d)["build_config"] == {"input_shape": (1, 5)}
    with pytest.raises(ValueError, match="Unknown layer class 'Dense3D'"):
        layers.deserialize({"class_name": "Dense3D", "config": {}})


def test_lora_dense_round_trip_saves_the_merged_kernel(tmp_path):
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    m = lamina.Sequential([lamina.Input(shape=(5,)), layers.Dense(3, lora_rank=2, lora_alpha=4)])
    d = m.layers[0]
    d.lora_kernel_b.assign(np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32))
    want = m.predict(x, verbose=0)
    p = str(tmp_path / "lora.keras")
    m.save(p)
    with zipfile.ZipFile(p) as z, h5py.File(z.open("model.weights.h5"), "r") as h5:
        assert sorted(h5["layers/dense/vars"]) == ["0", "1"]
        np.testing.assert_allclose(h5["layers/dense/vars/0"][()], d.merged_kernel().numpy(), atol=1e-6)
    loaded = lamina.models.load_model(p)
    ld = loaded.layers[0]
    assert ld.lora_enabled and not np.any(ld.lora_kernel_a.numpy()) and not np.any(ld.lora_kernel_b.numpy())
    np.testing.assert_allclose(loaded.predict(x, verbose=0), want, atol=1e-5)


def test_file_layouts_are_keras_own(tmp_path):
    m = _model()
    m.compile(optimizer=lamina.optimizers.SGD(0.1, momentum=0.9), loss="mse", metrics=["mae"])
    m.train_on_batch(*_data(3))
    m.save(str(tmp_path / "m.keras"))
    with zipfile.ZipFile(str(tmp_path / "m.keras")) as z:
        assert set(json.loads(z.read("metadata.json"))) == {"keras_version", "date_saved"}
        cfg = json.loads(z.read("config.json"))
        assert cfg["module"] == "keras.src.models.functional" and cfg["registered_name"] == "Functional"
        node = cfg["config"]["layers"][1]["inbound_nodes"][0]
        assert node["args"][0]["class_name"] == "__keras_tensor__"
        assert node["args"][0]["config"]["keras_history"] == ["input_layer", 0, 0] or \
            node["args"][0]["config"]["keras_history"][1:] == [0, 0]
        assert cfg["compile_config"]["optimizer"]["module"] == "keras.optimizers"
        with h5py.File(z.open("model.weights.h5"), "r") as h5:
            assert h5["vars"].attrs["name"] == m.name
            assert h5["layers/dense/vars"].attrs["name"] == "hidden"
            assert h5["layers/dense_1/vars/0"].shape == (8, 2)
            assert [h5[f"optimizer/vars/{i}"].shape for i in range(6)] == [(), (), (4, 8), (8,), (8, 2), (2,)]
    m.save(str(tmp_path / "m.h5"))
    with h5py.File(str(tmp_path / "m.h5"), "r") as h5:
        mc = json.loads(h5.attrs["model_config"])
        assert mc["class_name"] == "Functional" and "module" not in mc["config"]["layers"][1]
        tc = json.loads(h5.attrs["training_config"])
        assert tc["optimizer_config"]["class_name"] == "SGD" and tc["loss"] == "mean_squared_error"
        assert "keras_version" in h5.attrs and "backend" in h5.attrs
        names = [n.decode() if isinstance(n, bytes) else n for n in h5["optimizer_weights"].attrs["weight_names"]]
        assert names[:2] == ["sgd/iteration", "sgd/learning_rate"] and len(names) == 6


# ---- errors ---------------------------------------------------------------------------------------

def _rewrite_config(src, dst, edit):
    with zipfile.ZipFile(src) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(parts["config.json"])
    edit(cfg)
    parts["config.json"] = json.dumps(cfg).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in parts.items():
            z.writestr(n, data)


def test_errors_name_the_class_the_key_and_the_file(tmp_path):
    m = _model()
    src = str(tmp_path / "m.keras")
    m.save(src)

    def rename(cfg):
        cfg["config"]["layers"][1]["class_name"] = "NoSuchLayerClass"
    bad = str(tmp_path / "unknown_class.keras")
    _rewrite_config(src, bad, rename)
    with pytest.raises(ValueError, match=r"unknown_class\.keras.*Unknown layer class 'NoSuchLayerClass'"):
        lamina.models.load_model(bad)

    def add_key(cfg):
        cfg["config"]["layers"][1]["config"]["flash_attention"] = True
    bad = str(tmp_path / "unknown_key.keras")
    _rewrite_config(src, bad, add_key)
    with pytest.raises((TypeError, ValueError), match=r"unknown_key\.keras.*flash_attention"):
        lamina.models.load_model(bad)

    def renorm(cfg):
        cfg["config"]["layers"][1] = {"module": "keras.layers", "class_name": "BatchNormalization",
                                      "config": {"renorm": True}, "registered_name": None,
                                      "name": cfg["config"]["layers"][1]["name"],
                                      "inbound_nodes": cfg["config"]["layers"][1]["inbound_nodes"]}
    bad = str(tmp_path / "renorm.keras")
    _rewrite_config(src, bad, renorm)
    with pytest.raises(ValueError, match=r"renorm\.keras.*renorm=True.*not supported"):
        lamina.models.load_model(bad)

    data = open(src, "rb").read()
    trunc = str(tmp_path / "truncated.keras")
    open(trunc, "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated\.keras.*corrupt"):
        lamina.models.load_model(trunc)
    h5p = str(tmp_path / "m.h5")
    m.save(h5p)
    trunc = str(tmp_path / "truncated.h5")
    open(trunc, "wb").write(open(h5p, "rb").read()[:1000])
    with pytest.raises(ValueError, match=r"truncated\.h5"):
        lamina.models.load_model(trunc)
    with pytest.raises(ValueError, match="GlorotUniform.*input_rank"):   # a key the initializer lacks
        lamina.initializers.get({"class_name": "GlorotUniform", "config": {"seed": None, "input_rank": 2}})


def test_load_model_calls_the_models_own_compile_from_config(tmp_path):
    # the customizing-saving guide's model: its own compile signature and compile config
    @lamina.saving.register_keras_serializable(package="test_saving")
    def small_loss(y_true, y_pred):
        return lamina.ops.sum(lamina.ops.square(y_pred - y_true) / 10.0, axis=1)

    @lamina.saving.register_keras_serializable(package="test_saving")
    class ModelWithCustomCompile(lamina.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(4)

        def call(self, inputs):
            return self.dense(inputs)

        def compile(self, optimizer, loss_fn, metrics):
            super().compile(optimizer=optimizer, loss=loss_fn, metrics=metrics)
            self.model_optimizer, self.loss_fn, self.loss_metrics = optimizer, loss_fn, metrics

        def get_compile_config(self):
            return {"model_optimizer": self.model_optimizer, "loss_fn": self.loss_fn, "metric": self.loss_metrics}

        def compile_from_config(self, config):
            self.compile(optimizer=lamina.utils.deserialize_keras_object(config["model_optimizer"]),
                         loss_fn=lamina.utils.deserialize_keras_object(config["loss_fn"]),
                         metrics=lamina.utils.deserialize_keras_object(config["metric"]))

    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8)).astype("float32"), rng.random((16, 4)).astype("float32")
    model = ModelWithCustomCompile()
    model.compile(optimizer="SGD", loss_fn=small_loss, metrics=["accuracy"])
    model.fit(x, y, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = lamina.saving.load_model(tmp_path / "m.keras")
    assert restored.model_optimizer == "SGD" and restored.loss_fn is small_loss
    assert restored.loss_metrics == ["accuracy"] and restored.compiled
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    restored.fit(x, y, verbose=0)   # compiled by its own compile(), so it trains
