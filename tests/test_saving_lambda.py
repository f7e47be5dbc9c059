"""Lambda layers and Python lambdas in saved models, as Keras 3: saved as bytecode, loaded only
outside safe mode (`safe_mode=False`, `SafeModeScope(False)` or `enable_unsafe_deserialization`);
named functions by their registered names; the layer's mask / training / arguments."""
import numpy as np
import pytest

import lamina
from lamina import layers, ops, saving
from keras_ref import keras_or_none


@pytest.fixture
def restore_safe_mode():
    yield
    saving._unsafe["enabled"] = False


def _lambda_model():
    scale = 3.0   # a closure value: saved with the bytecode

    inp = lamina.Input((4,))
    x = layers.Lambda(lambda t, s=2.0: ops.square(t) * s + scale, name="sq")(inp)
    x = layers.Lambda(lambda t, k: t[:, :k], arguments={"k": 3}, output_shape=lambda s: (s[0], 3), name="cut")(x)
    return lamina.Model(inp, layers.Dense(2, name="out")(x))


def test_lambda_model_saves_and_loads_outside_safe_mode(tmp_path):
    model = _lambda_model()
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    with pytest.raises(ValueError, match=r"Lambda layer 'sq', its function: Requested the deserialization of a "
                                         r"lambda.*safe_mode=False.*enable_unsafe_deserialization"):
        lamina.models.load_model(path)
    again = lamina.models.load_model(path, safe_mode=False)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert again.get_layer("cut").arguments == {"k": 3}
    assert again.get_layer("cut").output.shape == (None, 3)
    assert saving.in_safe_mode()   # the load's scope ended


def test_enable_unsafe_deserialization_allows_every_load(tmp_path, restore_safe_mode):
    model = _lambda_model()
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    lamina.config.enable_unsafe_deserialization()
    assert not saving.in_safe_mode()
    again = lamina.models.load_model(path)
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_a_module_global_is_named_when_missing(tmp_path):
    inp = lamina.Input((2,))
    model = lamina.Model(inp, layers.Lambda(lambda t: t * _GLOBAL_FACTOR, name="g")(inp))
    path = str(tmp_path / "g.keras")
    model.save(path)
    with pytest.raises(NameError, match=r"Lambda layer 'g': name '_GLOBAL_FACTOR' is not defined.*saved bytecode"):
        lamina.models.load_model(path, safe_mode=False)


_GLOBAL_FACTOR = 2.0


def test_lambda_as_any_serialized_object():
    cfg = saving.serialize_keras_object(lambda v: v + 1)
    assert cfg["class_name"] == "__lambda__" and len(cfg["config"]["value"]) == 3
    with pytest.raises(ValueError, match="Requested the deserialization of a lambda"):
        saving.deserialize_keras_object(cfg)
    fn = saving.deserialize_keras_object(cfg, safe_mode=False)
    assert fn(41) == 42
    with saving.SafeModeScope(False):
        assert saving.deserialize_keras_object(cfg)(1) == 2


@lamina.saving.register_keras_serializable(package="LambdaTest")
def doubled(t):
    return t * 2.0


def test_named_function_saves_by_name_and_loads_in_safe_mode(tmp_path):
    inp = lamina.Input((3,))
    model = lamina.Model(inp, layers.Lambda(doubled, name="d")(inp))
    cfg = model.get_layer("d").get_config()
    assert cfg["function"]["class_name"] == "function" and cfg["function"]["registered_name"] == "LambdaTest>doubled"
    path = str(tmp_path / "named.keras")
    model.save(path)
    again = lamina.models.load_model(path)   # safe mode: no code in the file
    np.testing.assert_allclose(again.predict(np.ones((1, 3), np.float32), verbose=0), [[2.0, 2.0, 2.0]])


def test_lambda_mask_and_training_arguments():
    x = np.array([[1.0, 0.0, 2.0]], np.float32)
    seen = {}

    def fn(t, mask=None, training=None):
        seen["mask"], seen["training"] = mask, training
        return t * 2.0

    layer = layers.Lambda(fn, mask=lambda inputs, mask: ops.not_equal(inputs, 0.0))
    assert layer.supports_masking
    y = layer(x, training=True)
    assert seen["training"] is True
    np.testing.assert_array_equal(layer.compute_mask(x).numpy(), [[True, False, True]])
    np.testing.assert_array_equal(y.numpy(), x * 2)
    assert not layers.Lambda(lambda t: t).supports_masking


def test_keras_loads_lamina_lambdas_and_lamina_loads_keras_lambdas(tmp_path):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    # lamina -> Keras (a lambda that needs no global name: Keras gives loaded lambdas none of the
    # script's; and no default values, which Keras's Lambda cannot load back, from its own files too)
    inp = lamina.Input((4,))
    model = lamina.Model(inp, layers.Dense(2, name="out")(layers.Lambda(lambda t: t * 1.5 - 1.0, name="f")(inp)))
    path = str(tmp_path / "lamina.keras")
    model.save(path)
    theirs = keras.models.load_model(path, safe_mode=False)
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), model.predict(x, verbose=0), atol=1e-5)
    # Keras -> lamina
    kin = keras.Input((4,))
    kmodel = keras.Model(kin, keras.layers.Dense(2, name="out")(keras.layers.Lambda(lambda t: t * 0.5 + 2.0,
                                                                                    name="f")(kin)))
    kpath = str(tmp_path / "keras.keras")
    kmodel.save(kpath)
    with pytest.raises(ValueError, match="safe_mode=False"):
        lamina.models.load_model(kpath)
    ours = lamina.models.load_model(kpath, safe_mode=False)
    np.testing.assert_allclose(ours.predict(x, verbose=0), np.asarray(kmodel.predict(x, verbose=0)), atol=1e-5)
