"""Configs between Keras and lamina beyond plain layers: Keras's "shared_object_id" (read from a
file Keras 3 wrote, written where Keras writes it), the Keras 2 keys Keras 3's legacy loader
converts (accepted) or refuses (refused, saying why), Keras 2 Lambda configs, and subclassed
models saved with their build config. The fixture keras_shared_objects.keras was written by real
Keras (make_keras_shared_fixture.py), so these run without keras; with keras installed the same
model also moves both ways fresh."""
import importlib.util
import json
import os
import warnings
import zipfile

import h5py
import numpy as np
import pytest

import lamina
from lamina import layers

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")


def _shared_module():
    spec = importlib.util.spec_from_file_location("make_keras_shared_fixture",
                                                  os.path.join(HERE, "make_keras_shared_fixture.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


Twice = _shared_module().twice_class(lamina)    # lamina's twin of the fixture's "Fixture>Twice"


def _id_paths(config, path=""):
    """{path: shared_object_id} of every entry that carries one (DTypePolicy entries left out:
    Keras marks its one global policy object, lamina has no policy objects)."""
    out = {}
    if isinstance(config, dict):
        if "shared_object_id" in config and config.get("class_name") != "DTypePolicy":
            out[path] = config["shared_object_id"]
        for k, v in config.items():
            out.update(_id_paths(v, f"{path}/{k}"))
    elif isinstance(config, (list, tuple)):
        for i, v in enumerate(config):
            out.update(_id_paths(v, f"{path}[{i}]"))
    return out


def _keras_config(path):
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("config.json"))


# ---- shared_object_id ---------------------------------------------------------------------------

def test_keras_file_with_shared_objects_loads_with_the_sharing_restored():
    d = np.load(os.path.join(FIXTURES, "keras_shared_objects.npz"))
    path = os.path.join(FIXTURES, "keras_shared_objects.keras")
    ids = _id_paths(_keras_config(path))
    assert len(set(ids.values())) >= 2      # the file does use the key (a shared layer, a shared regularizer)
    m = lamina.models.load_model(path)
    assert m.get_layer("twice").layer is m.get_layer("shared")      # one layer, as in the saved model
    b = m.get_layer("b")
    assert b.kernel_regularizer is b.bias_regularizer                # both entries carry the same id
    assert m.get_layer("a").kernel_regularizer is not b.kernel_regularizer   # Keras wrote no id on a's entry
    assert len(m.weights) == 6
    y0, y1 = m.predict([d["x"], d["z"]], verbose=0)
    np.testing.assert_allclose(y0, d["y0"], atol=1e-5)
    np.testing.assert_allclose(y1, d["y1"], atol=1e-5)


def test_lamina_writes_shared_object_id_where_keras_does(tmp_path):
    path = os.path.join(FIXTURES, "keras_shared_objects.keras")
    m = lamina.models.load_model(path)
    p = str(tmp_path / "again.keras")
    m.save(p)
    mine, keras_ids = _id_paths(_keras_config(p)), _id_paths(_keras_config(path))
    assert sorted(mine) == sorted(keras_ids)                  # the same entries carry an id
    groups = lambda ids: sorted(sorted(p for p in ids if ids[p] == v) for v in set(ids.values()))  # noqa: E731
    assert groups(mine) == groups(keras_ids)                  # and the same entries share one
    again = lamina.models.load_model(p)
    assert again.get_layer("twice").layer is again.get_layer("shared")
    assert "shared_object_id" not in m.to_json()              # as Keras: ids only in '.keras' files


def test_deserialize_gives_one_object_per_shared_object_id():
    @lamina.saving.register_keras_serializable(package="SharingTest")
    class Square:
        def __call__(self, x):
            return x * x

        def get_config(self):
            return {}

        @classmethod
        def from_config(cls, config):
            return cls()

    @lamina.saving.register_keras_serializable(package="SharingTest")
    class Apply(layers.Layer):
        def __init__(self, fn, **kwargs):
            super().__init__(**kwargs)
            self.fn = lamina.saving.deserialize_keras_object(fn) if isinstance(fn, dict) else fn

        def call(self, x):
            return self.fn(x)

        def get_config(self):
            return {**super().get_config(), "fn": self.fn}
    fn = Square()
    objs = [Apply(fn), Apply(fn)]
    with lamina.saving.ObjectSharingScope():
        config = json.loads(json.dumps(lamina.saving.serialize_keras_object(objs)))
    assert config[0]["config"]["fn"]["shared_object_id"] == config[1]["config"]["fn"]["shared_object_id"]
    again = lamina.saving.deserialize_keras_object(config)
    assert again[0].fn is again[1].fn and isinstance(again[0].fn, Square)
    for c in config:           # without the ids, one object each
        del c["config"]["fn"]["shared_object_id"]
    again = lamina.saving.deserialize_keras_object(config)
    assert again[0].fn is not again[1].fn
    assert "shared_object_id" not in json.dumps(lamina.saving.serialize_keras_object(objs))   # no scope, no ids


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def test_shared_objects_move_both_ways_with_keras(tmp_path):
    keras = _keras()
    mod = _shared_module()
    k = mod.shared_model(keras)
    rng = np.random.default_rng(7)
    x = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(2)]
    k.save(str(tmp_path / "k.keras"))
    m = lamina.models.load_model(str(tmp_path / "k.keras"))
    assert m.get_layer("twice").layer is m.get_layer("shared")
    for a, b in zip(m.predict(x, verbose=0), k.predict(x, verbose=0)):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-5)
    m.save(str(tmp_path / "m.keras"))
    assert sorted(_id_paths(_keras_config(str(tmp_path / "m.keras")))) == \
        sorted(_id_paths(_keras_config(str(tmp_path / "k.keras"))))
    k2 = keras.models.load_model(str(tmp_path / "m.keras"))
    assert k2.get_layer("twice").layer is k2.get_layer("shared")
    for a, b in zip(k2.predict(x, verbose=0), m.predict(x, verbose=0)):
        np.testing.assert_allclose(np.asarray(a), b, atol=1e-5)


# ---- Keras 2 configs: what Keras 3's legacy loader converts is accepted --------------------------

def _k2(class_name, name, **config):
    return {"class_name": class_name, "config": {"name": name, "trainable": True, "dtype": "float32", **config}}


_GLOROT = {"class_name": "GlorotUniform", "config": {"seed": None}}
_ZEROS = {"class_name": "Zeros", "config": {}}
_DENSE = dict(units=3, activation="linear", use_bias=True, kernel_initializer=_GLOROT, bias_initializer=_ZEROS,
              kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
              bias_constraint=None)
_LSTM = dict(units=4, activation="tanh", recurrent_activation="sigmoid", use_bias=True, kernel_initializer=_GLOROT,
             recurrent_initializer={"class_name": "Orthogonal", "config": {"gain": 1.0, "seed": None}},
             bias_initializer=_ZEROS, unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None,
             bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
             bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, return_sequences=False, return_state=False,
             go_backwards=False, stateful=False, unroll=False)
_BN = dict(momentum=0.99, epsilon=0.001, center=True, scale=True, beta_initializer=_ZEROS,
           gamma_initializer={"class_name": "Ones", "config": {}}, moving_mean_initializer=_ZEROS,
           moving_variance_initializer={"class_name": "Ones", "config": {}}, beta_regularizer=None,
           gamma_regularizer=None, beta_constraint=None, gamma_constraint=None)


def _keras2_sequential(*layer_entries):
    """A Keras 2 (tf.keras 2.15) model JSON, as model.to_json() wrote it."""
    return json.dumps({"class_name": "Sequential", "config": {"name": "sequential", "layers": list(layer_entries)},
                       "keras_version": "2.15.0", "backend": "tensorflow"})


def _input(shape, dtype="float32"):
    return {"class_name": "InputLayer", "config": {"batch_input_shape": [None, *shape], "dtype": dtype,
                                                   "sparse": False, "ragged": False, "name": "input_1"}}


@lamina.saving.register_keras_serializable(package="Keras2Test")
def double_it(x):
    return x * 2.0


# (entries, input shape, check(model)): each a Keras 2 key or form that Keras 3 converts or takes
_ACCEPTED = {
    "axis_as_one_element_list": (
        [_input((2, 3)), _k2("BatchNormalization", "bn", axis=[2], **_BN)], (2, 3),
        lambda m: m.layers[0].axis == 2),
    "batch_input_shape_on_a_layer": (
        [_k2("Dense", "d", batch_input_shape=[None, 4], **_DENSE)], (4,),
        lambda m: m.input_shape == (None, 4)),
    "input_dim": (
        [_k2("Dense", "d", input_dim=4, **_DENSE)], (4,),
        lambda m: m.input_shape == (None, 4)),
    "embedding_input_length": (
        [_input((5,), "int32"), _k2("Embedding", "e", input_dim=10, output_dim=3, input_length=5, mask_zero=False,
                                    embeddings_initializer={"class_name": "RandomUniform", "config": {
                                        "minval": -0.05, "maxval": 0.05, "seed": None}},
                                    embeddings_regularizer=None, activity_regularizer=None,
                                    embeddings_constraint=None)], (5,),
        lambda m: m.layers[0].output_dim == 3),
    "leaky_relu_alpha": (
        [_input((4,)), _k2("LeakyReLU", "lr", alpha=0.2)], (4,),
        lambda m: m.layers[0].negative_slope == pytest.approx(0.2)),
    "recurrent_implementation": (
        [_input((3, 4)), _k2("LSTM", "l", implementation=1, **_LSTM)], (3, 4),
        lambda m: m.layers[0].units == 4),
    "lambda_of_a_named_function": (
        [_input((4,)), _k2("Lambda", "lam", function="double_it", function_type="raw", module="__main__",
                           output_shape=None, output_shape_type="raw", output_shape_module=None, arguments={})],
        (4,), lambda m: np.allclose(m.predict(np.ones((1, 4), np.float32), verbose=0), 2.0)),
}


@pytest.mark.parametrize("case", sorted(_ACCEPTED))
def test_keras2_key_that_keras3_converts_is_accepted(case):
    entries, shape, check = _ACCEPTED[case]
    m = lamina.models.model_from_json(_keras2_sequential(*entries))
    dtype = "int32" if case == "embedding_input_length" else "float32"
    x = np.ones((2, *shape), dtype)
    assert m.predict(x, verbose=0).shape[0] == 2
    assert check(m)


def _h5_with_training_config(tmp_path, optimizer_config, loss="mean_squared_error"):
    """A lamina '.h5' whose training_config is replaced by a Keras 2 one."""
    m = lamina.Sequential([lamina.Input((4,)), layers.Dense(2)])
    m.compile(optimizer="sgd", loss="mse")
    p = str(tmp_path / "k2.h5")
    m.save(p, include_optimizer=False)
    with h5py.File(p, "r+") as f:
        f.attrs["training_config"] = json.dumps({"loss": loss, "metrics": [["accuracy"]], "weighted_metrics": None,
                                                 "loss_weights": None, "optimizer_config": optimizer_config})
        f.attrs["keras_version"] = "2.15.0"
    return p


_TF215_ADAM = {"name": "Adam", "weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
               "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None, "jit_compile": False,
               "is_legacy_optimizer": False, "learning_rate": 0.0020000000949949026, "beta_1": 0.8,
               "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False}


def test_tf_keras_2_11_plus_custom_optimizer_name_and_keys_are_accepted(tmp_path):
    # tf.keras 2.11-2.15 wrote the built-in Adam as "Custom>Adam" with TensorFlow-only keys; Keras 3 reads it
    p = _h5_with_training_config(tmp_path, {"class_name": "Custom>Adam", "config": _TF215_ADAM})
    m = lamina.models.load_model(p)
    assert isinstance(m.optimizer, lamina.optimizers.Adam)
    assert m.optimizer.learning_rate == pytest.approx(0.002) and m.optimizer.beta_1 == pytest.approx(0.8)
    m.train_on_batch(np.ones((2, 4), np.float32), np.zeros((2, 2), np.float32))


@pytest.mark.parametrize("decay", [0.0, 0.01])
def test_keras2_optimizer_decay_is_dropped_as_keras3_does(tmp_path, decay):
    legacy = {"name": "SGD", "learning_rate": 0.05, "decay": decay, "momentum": 0.9, "nesterov": False}
    p = _h5_with_training_config(tmp_path, {"class_name": "SGD", "config": legacy})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = lamina.models.load_model(p)
    msgs = [str(w.message) for w in caught if "decay" in str(w.message)]
    assert isinstance(m.optimizer, lamina.optimizers.SGD) and m.optimizer.learning_rate == pytest.approx(0.05)
    assert m.optimizer.momentum == pytest.approx(0.9)
    if decay:
        assert len(msgs) == 1 and "decay=0.01" in msgs[0] and "schedule" in msgs[0]
    else:
        assert not msgs


# ---- Keras 2 configs: what Keras 3 refuses is refused, saying why --------------------------------

_REFUSED = {
    "time_major": (_k2("LSTM", "l", time_major=False, **_LSTM), (3, 4),
                   r"LSTM 'l': the config has Keras 2's option 'time_major' \(time_major=False\), which Keras 3 "
                   r"refuses as well.*delete the key"),
    "depthwise_groups": (_k2("DepthwiseConv2D", "dw", kernel_size=[3, 3], strides=[1, 1], padding="valid",
                             data_format="channels_last", dilation_rate=[1, 1], groups=1, activation="linear",
                             use_bias=True, bias_initializer=_ZEROS, bias_regularizer=None, activity_regularizer=None,
                             bias_constraint=None, depth_multiplier=1, depthwise_initializer=_GLOROT,
                             depthwise_regularizer=None, depthwise_constraint=None), (5, 5, 1),
                         r"DepthwiseConv2D 'dw': the config has Keras 2's option 'groups' \(groups=1\), which "
                         r"Keras 3 refuses as well"),
    "attention_causal": (_k2("Attention", "att", use_scale=False, score_mode="dot", causal=True, dropout=0.0), None,
                         r"Attention 'att': .*'causal'.*use_causal_mask"),
    "initializer_dtype": (_k2("Dense", "d", **{**_DENSE, "kernel_initializer": {
        "class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.05, "seed": None, "dtype": "float32"}}}),
        (4,), r"initializer RandomNormal: .*Keras 2's option 'dtype'.*Keras 3 refuses as well"),
}


@pytest.mark.parametrize("case", sorted(_REFUSED))
def test_keras2_key_that_keras3_refuses_is_refused_clearly(case):
    entry, shape, message = _REFUSED[case]
    entries = [entry] if shape is None else [_input(shape), entry]
    with pytest.raises(ValueError, match=message):
        lamina.models.model_from_json(_keras2_sequential(*entries))


@pytest.mark.parametrize("key,value,message", [
    ("lr", 0.001, r"Keras 2's option 'lr' \(lr=0.001\).*rename the key to learning_rate"),
    ("is_legacy_optimizer", True, r"Keras 2's option 'is_legacy_optimizer'.*Keras 3 refuses as well"),
])
def test_keras2_optimizer_keys_keras3_refuses_are_refused_clearly(tmp_path, key, value, message):
    config = {"name": "Adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07,
              "amsgrad": False, key: value}
    if key == "lr":
        del config["learning_rate"]
    p = _h5_with_training_config(tmp_path, {"class_name": "Adam", "config": config})
    with pytest.raises(TypeError, match=r"k2\.h5.*optimizer Adam: the saved config has " + message +
                       r".*compile=False"):
        lamina.models.load_model(p)
    assert not lamina.models.load_model(p, compile=False).compiled


def test_keras2_loss_reduction_auto_is_refused_clearly(tmp_path):
    loss = {"class_name": "MeanSquaredError", "config": {"reduction": "auto", "name": "mean_squared_error"}}
    p = _h5_with_training_config(tmp_path, {"class_name": "SGD", "config": {"name": "SGD", "learning_rate": 0.1}},
                                 loss=loss)
    with pytest.raises(ValueError, match=r"reduction='auto', Keras 2's default, which Keras 3 refuses as well"):
        lamina.models.load_model(p)


def test_keras2_lambda_with_bytecode_or_unknown_function_is_refused_clearly():
    code = _k2("Lambda", "lam", function=["4wEAAAAAAAAA", None, None], function_type="lambda", module="__main__",
               output_shape=None, output_shape_type="raw", output_shape_module=None, arguments={})
    with pytest.raises(ValueError, match=r"the function of Lambda layer 'lam' \(Keras 2 bytecode\).*safe_mode=False"):
        lamina.models.model_from_json(_keras2_sequential(_input((4,)), code))
    with lamina.saving.SafeModeScope(False):   # unsafe: the bytecode is read, and this one is not Python's
        with pytest.raises(ValueError, match="saved bytecode is not readable by this Python"):
            lamina.models.model_from_json(_keras2_sequential(_input((4,)), code))
    named = _k2("Lambda", "lam", function="not_registered_fn", function_type="raw", module="__main__",
                output_shape=None, output_shape_type="raw", output_shape_module=None, arguments={})
    with pytest.raises(ValueError, match=r"'not_registered_fn', which is not registered.*custom_objects"):
        lamina.models.model_from_json(_keras2_sequential(_input((4,)), named))


# ---- subclassed models in '.keras' files -----------------------------------------------------------

@lamina.saving.register_keras_serializable(package="InteropTest")
class TwoDense(lamina.Model):
    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.first = layers.Dense(units, activation="tanh")
        self.second = layers.Dense(2)

    def call(self, x):
        return self.second(self.first(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_subclassed_model_saves_its_build_config_and_loads_with_its_weights(tmp_path):
    m = TwoDense(5, name="two")
    x = np.random.default_rng(2).standard_normal((3, 7)).astype(np.float32)
    y = m.predict(x, verbose=0)
    assert m.get_build_config() == {"input_shape": (3, 7)}     # as Keras records it: the first call's shape
    p = str(tmp_path / "two.keras")
    m.save(p)
    again = lamina.models.load_model(p)
    assert type(again) is TwoDense and again.built and len(again.weights) == 4
    np.testing.assert_allclose(again.predict(x, verbose=0), y, atol=1e-6)


def test_subclassed_model_moves_both_ways_with_keras(tmp_path):
    keras = _keras()

    @keras.saving.register_keras_serializable(package="InteropTest")
    class TwoDense(keras.Model):   # noqa: F811 - Keras's twin of the lamina class above
        def __init__(self, units=4, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.first = keras.layers.Dense(units, activation="tanh")
            self.second = keras.layers.Dense(2)

        def call(self, x):
            return self.second(self.first(x))

        def get_config(self):
            return {**super().get_config(), "units": self.units}
    x = np.random.default_rng(3).standard_normal((3, 7)).astype(np.float32)
    k = TwoDense(5, name="two")
    k(x)
    k.save(str(tmp_path / "k.keras"))
    m = lamina.models.load_model(str(tmp_path / "k.keras"))
    np.testing.assert_allclose(m.predict(x, verbose=0), np.asarray(k.predict(x, verbose=0)), atol=1e-5)
    m.save(str(tmp_path / "m.keras"))
    k2 = keras.models.load_model(str(tmp_path / "m.keras"))
    np.testing.assert_allclose(np.asarray(k2.predict(x, verbose=0)), m.predict(x, verbose=0), atol=1e-5)


def test_lamina_only_class_saves_a_file_lamina_loads_and_keras_cannot(tmp_path):
    from lamina.models.seq2seq import Seq2Seq
    m = Seq2Seq(10, 11, embedding_dim=4, units=3)
    p = str(tmp_path / "s2s.keras")
    m.save(p)
    config = _keras_config(p)
    assert config["registered_name"] == "lamina>Seq2Seq" and config["module"] == "lamina.models.seq2seq"
    assert type(lamina.models.load_model(p)) is Seq2Seq
    docs = " ".join((lamina.saving.save_model.__doc__ + lamina.saving.__doc__).split())
    assert "Keras cannot" in docs
    from keras_ref import keras_or_none
    keras = keras_or_none()
    if keras is not None:
        with pytest.raises(Exception, match="Seq2Seq"):
            keras.models.load_model(p)
