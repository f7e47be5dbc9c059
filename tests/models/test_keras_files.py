"""Model files move between Keras 3 and lamina: '.keras' (Keras 3's zip), the legacy whole-model
'.h5' and Keras 2's weights-only '.h5'. The fixtures were written by real Keras
(make_keras_fixtures.py) and are checked without keras; with keras installed, models saved by
each library are loaded by the other and give the same outputs and the same optimizer state."""
import importlib.util
import json
import os
import zipfile

import h5py
import numpy as np
import pytest

import lamina
from lamina import layers

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")


def _fixture(name):
    return os.path.join(FIXTURES, name)


def _make_module():
    spec = importlib.util.spec_from_file_location("make_keras_fixtures", os.path.join(HERE, "make_keras_fixtures.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@lamina.saving.register_keras_serializable(package="Fixture")
class Scale(layers.Layer):
    """lamina's twin of the fixture's Keras layer "Fixture>Scale": y = x * alpha * factor."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.alpha = self.add_weight(name="alpha", shape=(), initializer="ones")

    def call(self, x):
        return x * self.alpha * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def _keras_optimizer_values(d):
    return [d[f"opt_{i}"] for i in range(len([k for k in d.files if k.startswith("opt_")]))]


def _lamina_optimizer_values(opt):
    store = {}

    class Store(dict):
        def __setitem__(self, k, v):
            store[int(k)] = np.asarray(v)
    opt.save_own_variables(Store())
    return [store[i] for i in range(len(store))]


# ---- fixtures written by Keras, read without keras ---------------------------------------------

def test_keras_functional_dot_keras_loads_with_outputs_and_optimizer_state():
    d = np.load(_fixture("keras_functional.npz"))
    m = lamina.models.load_model(_fixture("keras_functional.keras"))
    assert isinstance(m, lamina.models.Functional) and m.name == "fixture_functional"
    assert {"Rescaling", "Conv2D", "BatchNormalization", "MaxPooling2D", "Flatten", "Embedding", "LSTM",
            "Concatenate", "Scale", "Dense", "Dropout"} <= {type(l).__name__ for l in m.layers}
    np.testing.assert_allclose(m.predict([d["image"], d["ids"]], verbose=0), d["y"], atol=1e-5)
    lora = [l for l in m.layers if isinstance(l, layers.Dense) and l.lora_enabled]
    assert len(lora) == 1 and not np.any(lora[0].lora_kernel_a.numpy())   # Keras saves the merged kernel
    assert isinstance(m.optimizer, lamina.optimizers.Adam) and m.optimizer.iterations == 1
    want = _keras_optimizer_values(d)
    got = _lamina_optimizer_values(m.optimizer)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-7)
    m.train_on_batch([d["image"], d["ids"]], np.array([0, 1, 2, 1]))   # training resumes
    assert m.optimizer.iterations == 2


def test_keras_legacy_h5_model_loads_with_outputs_and_optimizer_state():
    d = np.load(_fixture("keras_sequential.npz"))
    m = lamina.models.load_model(_fixture("keras_sequential.h5"))
    assert isinstance(m, lamina.Sequential)
    assert [type(l).__name__ for l in m.layers] == ["Conv1D", "Bidirectional", "GlobalMaxPooling1D",
                                                    "LayerNormalization", "Dense"]
    np.testing.assert_allclose(m.predict(d["x"], verbose=0), d["y"], atol=1e-5)
    assert isinstance(m.optimizer, lamina.optimizers.SGD) and m.optimizer.momentum == pytest.approx(0.9)
    for a, b in zip(_lamina_optimizer_values(m.optimizer), _keras_optimizer_values(d)):
        np.testing.assert_allclose(a, b, atol=1e-7)
    m2 = lamina.models.load_model(_fixture("keras_sequential.h5"), compile=False)
    assert not m2.compiled


def test_keras2_weights_only_h5_loads_into_a_model_built_in_code():
    d = np.load(_fixture("keras2_weights.npz"))
    m = _make_module().keras2_model(lamina)
    m.load_weights(_fixture("keras2_weights.h5"))
    np.testing.assert_allclose(m.predict(d["x"], verbose=0), d["y"], atol=1e-5)
    m2 = _make_module().keras2_model(lamina)
    m2.load_weights(_fixture("keras2_weights.h5"), by_name=True)
    np.testing.assert_allclose(m2.predict(d["x"], verbose=0), d["y"], atol=1e-5)


def test_resaved_fixture_keeps_keras_format(tmp_path):
    m = lamina.models.load_model(_fixture("keras_functional.keras"))
    p = str(tmp_path / "again.keras")
    m.save(p)
    with zipfile.ZipFile(p) as z:
        assert sorted(z.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        meta = json.loads(z.read("metadata.json"))
        config = json.loads(z.read("config.json"))
        with h5py.File(z.open("model.weights.h5"), "r") as h5:
            assert h5["layers/scale/vars"].attrs["name"] == "scale"
            assert h5["layers/scale/vars/0"].shape == ()
            assert h5["layers/lstm/cell/vars/0"].shape == (4, 20)
            assert h5["optimizer/vars"].attrs["name"] == "adam" and int(h5["optimizer/vars/0"][()]) == 1
    assert set(meta) == {"keras_version", "date_saved"}
    assert config["class_name"] == "Functional" and config["module"] == "keras.src.models.functional"
    scale = next(l for l in config["config"]["layers"] if l["class_name"] == "Scale")
    assert scale["registered_name"] == "Fixture>Scale"
    dense = next(l for l in config["config"]["layers"] if l["class_name"] == "Dense")
    assert dense["module"] == "keras.layers" and dense["config"]["kernel_initializer"]["module"] == \
        "keras.initializers"
    assert config["compile_config"]["optimizer"]["class_name"] == "Adam"
    d = np.load(_fixture("keras_functional.npz"))
    again = lamina.models.load_model(p)
    np.testing.assert_allclose(again.predict([d["image"], d["ids"]], verbose=0), d["y"], atol=1e-5)


# ---- with keras: both directions ---------------------------------------------------------------

def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def _build(lib, kind):
    L = lib.layers
    if kind == "functional":
        a, b = lib.Input((6,), name="a"), lib.Input((5,), dtype="int32", name="ids")
        h = L.Dense(4, activation="relu", kernel_regularizer="l2", name="h1")(a)
        g = L.GRU(3)(L.Embedding(12, 4)(b))
        h = L.Concatenate()([L.Add()([h, L.Dense(4)(a)]), g])
        h = L.Dropout(0.3)(L.BatchNormalization()(h))
        return lib.Model([a, b], [L.Dense(2, name="o1")(h), L.Dense(1, activation="sigmoid", name="o2")(h)])
    return lib.Sequential([lib.Input((8, 8, 3)), L.Rescaling(1 / 127.5, offset=-1), L.Conv2D(4, 3, activation="relu"),
                           L.MaxPooling2D(2), L.Conv2D(3, 2, padding="same"), L.GlobalAveragePooling2D(),
                           L.Dense(5, lora_rank=2), L.Dense(3, activation="softmax")], name="seq")


def _data(kind):
    rng = np.random.default_rng(5)
    if kind == "functional":
        x = [rng.standard_normal((6, 6)).astype(np.float32), rng.integers(0, 12, (6, 5)).astype(np.int32)]
        return x, [rng.standard_normal((6, 2)).astype(np.float32), rng.uniform(0, 1, (6, 1)).astype(np.float32)]
    return rng.uniform(0, 255, (6, 8, 8, 3)).astype(np.float32), rng.integers(0, 3, (6,))


def _compile(lib, m, kind):
    if kind == "functional":
        m.compile(optimizer=lib.optimizers.RMSprop(0.01, momentum=0.5), loss=["mse", "binary_crossentropy"],
                  metrics=[["mae"], ["accuracy"]])
    else:
        m.compile(optimizer=lib.optimizers.Adam(0.01, amsgrad=True), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def _outputs(m, x):
    y = m.predict(x, verbose=0)
    return [np.asarray(v) for v in y] if isinstance(y, (list, tuple)) else [np.asarray(y)]


@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_lamina_file_loads_in_keras(tmp_path, kind, ext):
    keras = _keras()
    x, y = _data(kind)
    m = _build(lamina, kind)
    _compile(lamina, m, kind)
    m.train_on_batch(x, y)
    p = str(tmp_path / ("m" + ext))
    m.save(p)
    k = keras.models.load_model(p)
    for a, b in zip(_outputs(k, x), _outputs(m, x)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert int(k.optimizer.iterations) == 1
    if ext == ".h5":
        return   # Keras 3 restores no slot state from a legacy '.h5', not even from its own files
    assert len(k.optimizer.variables) == len(_lamina_optimizer_values(m.optimizer))
    for a, b in zip([np.asarray(v) for v in k.optimizer.variables], _lamina_optimizer_values(m.optimizer)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=1e-6)


@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_keras_file_loads_in_lamina(tmp_path, kind, ext):
    keras = _keras()
    x, y = _data(kind)
    k = _build(keras, kind)
    _compile(keras, k, kind)
    k.train_on_batch(x, y)
    p = str(tmp_path / ("k" + ext))
    k.save(p)
    m = lamina.models.load_model(p)
    assert [type(l).__name__ for l in m.layers] == [type(l).__name__ for l in k.layers]
    for a, b in zip(_outputs(m, x), _outputs(k, x)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert m.optimizer.iterations == 1
    assert len(k.optimizer.variables) == len(_lamina_optimizer_values(m.optimizer))
    for a, b in zip(_lamina_optimizer_values(m.optimizer), [np.asarray(v) for v in k.optimizer.variables]):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=1e-6)


def test_configs_equal_keras_configs():
    """The config lamina writes is Keras's, key for key (up to what Keras records on its own:
    call arguments of nodes, build shapes of multi-input layers, jit_compile)."""
    keras = _keras()

    def norm(c):
        if isinstance(c, dict):
            return {k: norm(v) for k, v in c.items() if k not in ("shared_object_id", "inbound_nodes",
                                                                  "build_config", "jit_compile")}
        if isinstance(c, (list, tuple)):
            return [norm(v) for v in c]
        return round(c, 6) if isinstance(c, float) else c
    for kind in ("functional", "sequential"):
        keras.utils.clear_session()
        lamina.utils.clear_session()
        k, m = _build(keras, kind), _build(lamina, kind)
        _compile(keras, k, kind)
        _compile(lamina, m, kind)
        want = norm(json.loads(json.dumps(keras.saving.serialize_keras_object(k))))
        got = norm(json.loads(m.to_json()))
        if kind == "functional":   # Keras names its optimizer "rm_sprop"
            got["compile_config"]["optimizer"]["config"]["name"] = "rm_sprop"
        assert got == want, kind


def test_nested_and_shared_layers_move_both_ways(tmp_path):
    keras = _keras()

    def build(lib):
        L = lib.layers
        ii = lib.Input((4,))
        inner = lib.Model(ii, L.Dense(3, activation="tanh")(ii), name="inner")
        a, b = lib.Input((4,), name="a"), lib.Input((4,), name="b")
        shared = L.Dense(4, name="shared")
        return lib.Model([a, b], L.Add()([inner(shared(a)), inner(shared(b))]), name="outer")
    x = [np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32) for _ in range(2)]
    for ext in (".keras", ".h5"):
        m = build(lamina)
        m.save(str(tmp_path / ("l" + ext)))
        k = keras.models.load_model(str(tmp_path / ("l" + ext)))
        np.testing.assert_allclose(np.asarray(k.predict(x, verbose=0)), m.predict(x, verbose=0), atol=1e-5)
        k = build(keras)
        k.save(str(tmp_path / ("k" + ext)))
        m = lamina.models.load_model(str(tmp_path / ("k" + ext)))
        np.testing.assert_allclose(m.predict(x, verbose=0), np.asarray(k.predict(x, verbose=0)), atol=1e-5)


def test_json_moves_both_ways():
    keras = _keras()
    m = _build(lamina, "functional")
    k = keras.models.model_from_json(m.to_json())
    assert [l.name for l in k.layers] == [l.name for l in m.layers]
    m2 = lamina.models.model_from_json(_build(keras, "sequential").to_json())
    assert [type(l).__name__ for l in m2.layers] == [type(l).__name__ for l in _build(lamina, "sequential").layers]


def test_lora_dense_saves_the_merged_kernel_as_keras():
    keras = _keras()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    for lib in (keras, lamina):
        layer = lib.layers.Dense(3, lora_rank=2)
        layer(x)
        for w in (layer.lora_kernel_a, layer.lora_kernel_b):
            w.assign(rng.standard_normal(tuple(w.shape)).astype(np.float32))
        store = {}
        layer.save_own_variables(store)
        assert len(store) == 2
        kernel = layer._kernel if lib is keras else layer.kernel   # Keras's `kernel` is the merged value
        merged = np.asarray(kernel.numpy()) + np.asarray(layer.lora_kernel_a.numpy()) @ \
            np.asarray(layer.lora_kernel_b.numpy())   # alpha == rank
        np.testing.assert_allclose(np.asarray(store["0"]), merged, rtol=1e-5, atol=1e-6)
        layer.load_own_variables(store)
        assert not np.any(np.asarray(layer.lora_kernel_b.numpy()))
        np.testing.assert_allclose(np.asarray(kernel.numpy()), merged, rtol=1e-5, atol=1e-6)
