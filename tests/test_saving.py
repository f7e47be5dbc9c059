"""lamina.saving: the custom-object registry ("package>name"), custom_object_scope, and Keras's
object serialization for initializers, regularizers, constraints, activations, layers, models."""
import os

import numpy as np
import pytest

import lamina
from lamina import layers, saving
from lamina.saving import FileFormatError
from keras_ref import keras_or_none


def _affine_layer(registered=None):
    class Affine(layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def build(self, input_shape):
            self.offset = self.add_weight(name="offset", shape=(input_shape[-1],), initializer="zeros")

        def call(self, x):
            return x * self.factor + self.offset

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}
    if registered:
        Affine = saving.register_keras_serializable(*registered)(Affine)
    return Affine


def test_registry_names_and_lookups():
    Affine = _affine_layer(("my_pkg", "MyScale"))
    try:
        assert saving.get_registered_name(Affine) == "my_pkg>MyScale"
        assert saving.get_registered_object("my_pkg>MyScale") is Affine
        assert saving.get_registered_object("MyScale") is Affine            # plain names keep working
        assert saving.get_custom_objects()["my_pkg>MyScale"] is Affine
        assert lamina.utils.get_custom_objects() is saving.get_custom_objects()
        assert lamina.utils.register_keras_serializable is saving.register_keras_serializable
        assert lamina.utils.custom_object_scope is saving.custom_object_scope is saving.CustomObjectScope
        assert saving.get_registered_name(layers.Dense) == "Dense"
        assert saving.get_registered_object("NoSuchThing") is None
        with pytest.raises(ValueError, match="get_config"):
            saving.register_keras_serializable()(type("NoConfig", (), {}))
    finally:
        saving.get_custom_objects().pop("my_pkg>MyScale", None)


def test_registered_custom_layer_round_trips_through_a_file(tmp_path):
    Affine = _affine_layer(("Custom", None))
    try:
        inp = lamina.Input(shape=(3,))
        m = lamina.Model(inp, Affine(3.0)(inp))
        m.layers[-1].offset.assign(np.array([1.0, 2.0, 3.0], np.float32))
        cfg = saving.serialize_keras_object(m)
        entry = cfg["config"]["layers"][1]
        assert entry["registered_name"] == "Custom>Affine" and entry["class_name"] == "Affine"
        p = str(tmp_path / "s.keras")
        m.save(p)
        loaded = saving.load_model(p)
        assert type(loaded.layers[-1]) is Affine
        np.testing.assert_allclose(loaded.predict(np.ones((1, 3), np.float32), verbose=0), [[4.0, 5.0, 6.0]])
    finally:
        saving.get_custom_objects().pop("Custom>Affine", None)


def test_custom_object_scope_and_custom_objects(tmp_path):
    Affine = _affine_layer()
    inp = lamina.Input(shape=(2,))
    m = lamina.Model(inp, Affine(0.5)(inp))
    p = str(tmp_path / "c.h5")
    m.save(p)
    with pytest.raises(ValueError, match=r"c\.h5.*Unknown layer class 'Affine'"):
        lamina.models.load_model(p)
    with saving.custom_object_scope({"Affine": Affine}):
        assert saving.get_registered_object("Affine") is Affine
        loaded = lamina.models.load_model(p)
    assert saving.get_registered_object("Affine") is None   # the scope ends
    assert type(lamina.models.load_model(p, custom_objects={"Affine": Affine}).layers[-1]) is Affine
    np.testing.assert_allclose(loaded.predict(np.ones((1, 2), np.float32), verbose=0), [[0.5, 0.5]])


def test_serialize_and_deserialize_keras_objects():
    for obj in (lamina.initializers.HeNormal(seed=3), lamina.initializers.Constant(0.5),
                lamina.regularizers.L1L2(0.1, 0.2), lamina.constraints.MaxNorm(2.0, axis=1),
                lamina.optimizers.Adam(0.01), layers.Conv2D(2, 3, activation="relu")):
        cfg = saving.serialize_keras_object(obj)
        assert cfg["module"].startswith("keras.") and cfg["registered_name"] is None
        again = saving.deserialize_keras_object(cfg)
        assert type(again) is type(obj) and again.get_config() == obj.get_config()
    assert saving.serialize_keras_object((1, [2.5, "a"], {"k": None})) == (1, [2.5, "a"], {"k": None})
    assert saving.deserialize_keras_object("relu") == "relu"
    with pytest.raises(ValueError, match="Unknown class 'Frobnicator'"):
        saving.deserialize_keras_object({"module": "keras.layers", "class_name": "Frobnicator", "config": {}})
    with pytest.raises(ValueError, match="lambda"):
        saving.deserialize_keras_object({"class_name": "__lambda__", "config": {"value": "..."}})


def test_keras_initializer_configs_with_extra_keys_are_read():
    """Keras 3.15 writes GlorotUniform & co. with input_axes / output_axes."""
    init = lamina.initializers.get({"module": "keras.initializers", "class_name": "GlorotUniform",
                                    "config": {"seed": 1, "input_axes": None, "output_axes": None},
                                    "registered_name": None})
    assert isinstance(init, lamina.initializers.GlorotUniform) and init.seed == 1
    vs = lamina.initializers.VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform", input_axes=[0, 1],
                                             output_axes=[2])
    w = vs((4, 3, 8)).numpy()
    assert np.abs(w).max() <= np.sqrt(3.0 / 12) + 1e-6     # fan_in = 4 * 3 over axes 0, 1
    assert vs.get_config()["input_axes"] == [0, 1]
    with pytest.raises(ValueError, match="both input_axes and output_axes"):
        lamina.initializers.VarianceScaling(input_axes=[0])


def test_registered_activation_function_round_trips():
    @saving.register_keras_serializable(package="acts")
    def shifted_relu(x):
        return lamina.ops.relu(x - 1.0)
    try:
        d = layers.Dense(2, activation=shifted_relu)
        cfg = d.get_config()
        assert cfg["activation"]["class_name"] == "function" and cfg["activation"]["registered_name"] == \
            "acts>shifted_relu"
        assert layers.Dense.from_config(cfg).activation is shifted_relu
        assert lamina.activations.get("shifted_relu") is shifted_relu
    finally:
        saving.get_custom_objects().pop("acts>shifted_relu", None)


def test_unzipped_model_folder_and_save_format(tmp_path):
    import warnings
    model = lamina.Sequential([lamina.Input((3,)), lamina.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    x = np.ones((4, 3), np.float32)
    model.fit(x, np.ones((4, 2), np.float32), verbose=0)
    folder = str(tmp_path / "my_model")
    model.save(folder, zipped=False)   # Keras's unzipped form: the archive's members in a folder
    assert sorted(os.listdir(folder)) == ["config.json", "metadata.json", "model.weights.h5"]
    again = lamina.models.load_model(folder)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    assert int(again.optimizer.iterations) == 1
    with pytest.raises(ValueError, match="should not end in `.keras`"):
        model.save(str(tmp_path / "m.keras"), zipped=False)
    with pytest.raises(FileFormatError, match="no config.json"):
        lamina.models.load_model(str(tmp_path))
    with pytest.raises(ValueError, match="save_format` argument is deprecated"):
        model.save(str(tmp_path / "m.bin"), save_format="keras")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        model.save(str(tmp_path / "m.keras"), save_format="keras")
    assert any("save_format" in str(m.message) for m in w)
    keras = keras_or_none()
    if keras is not None:
        theirs = keras.models.load_model(folder)
        np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), model.predict(x, verbose=0), rtol=1e-6)
