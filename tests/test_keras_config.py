"""Keras's process-wide defaults, `keras.config` / `keras.backend`: epsilon, floatx,
image_data_format (and their setters), backend(), clear_session, get_uid. Each setting is read
where it applies: a changed epsilon changes the losses' clipping, a changed image_data_format the
layers and ops whose data_format is None."""
import math

import numpy as np
import pytest

import lamina
from lamina import layers, ops
from keras_ref import keras_or_none


@pytest.fixture
def restore():
    yield
    lamina.config.set_epsilon(1e-7)
    lamina.config.set_image_data_format("channels_last")


def test_defaults_and_both_namespaces():
    for ns in (lamina.config, lamina.backend):
        assert ns.epsilon() == 1e-7 and ns.floatx() == "float32" and ns.image_data_format() == "channels_last"
        assert ns.backend() == "lamina"
    assert lamina.backend.set_epsilon is lamina.config.set_epsilon
    assert lamina.backend.clear_session is lamina.utils.clear_session
    assert lamina.backend.is_keras_tensor(lamina.Input((2,))) and not lamina.backend.is_keras_tensor(np.zeros(2))


def test_epsilon_clips_the_probability_losses(restore):
    y, p = np.array([[1.0, 0.0]], np.float32), np.array([[0.0, 1.0]], np.float32)
    bce = lambda: float(lamina.losses.binary_crossentropy(y[:, :1], p[:, :1]).numpy()[0])  # noqa: E731
    cce = lambda: float(lamina.losses.categorical_crossentropy(y, p).numpy()[0])  # noqa: E731
    scce = lambda: float(lamina.losses.sparse_categorical_crossentropy(np.array([0]), p).numpy()[0])  # noqa: E731
    assert bce() == pytest.approx(-math.log(1e-7), rel=1e-3) and cce() == pytest.approx(-math.log(1e-7), rel=1e-3)
    lamina.config.set_epsilon(1e-3)
    assert lamina.backend.epsilon() == 1e-3
    for loss in (bce, cce, scce):
        assert loss() == pytest.approx(-math.log(1e-3), rel=1e-3)
    # the other epsilon users: MAPE's denominator, ops.normalize's floor, Normalization's std floor
    mape = lamina.losses.mean_absolute_percentage_error(np.array([[0.0]], np.float32), np.array([[1e-3]], np.float32))
    assert float(mape.numpy()[0]) == pytest.approx(100.0, rel=1e-4)
    tiny = lamina.convert_to_tensor(np.array([[1e-5, 0.0]], np.float32))
    np.testing.assert_allclose(ops.normalize(tiny).numpy(), [[1e-2, 0.0]], rtol=1e-5)
    norm = layers.Normalization(mean=0.0, variance=0.0)
    np.testing.assert_allclose(norm(np.array([[2e-3]], np.float32)).numpy(), [[2.0]], rtol=1e-5)


def test_epsilon_matches_keras(restore):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras is not installed")
    y, p = np.array([[1.0, 0.0, 1.0]], np.float32), np.array([[0.0, 1.0, 0.3]], np.float32)
    try:
        for eps in (1e-7, 1e-2):
            keras.config.set_epsilon(eps)
            lamina.config.set_epsilon(eps)
            for name in ("binary_crossentropy", "kl_divergence", "poisson", "mean_squared_logarithmic_error"):
                ours = getattr(lamina.losses, name)(y, p).numpy()
                ref = np.asarray(getattr(keras.losses, name)(y, p))
                np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6, err_msg=f"{name}, epsilon {eps}")
    finally:
        keras.config.set_epsilon(1e-7)


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), "1e-7", None, True])
def test_set_epsilon_rejects(value):
    with pytest.raises(ValueError, match="set_epsilon: expected a finite number >= 0"):
        lamina.config.set_epsilon(value)
    assert lamina.config.epsilon() == 1e-7


def test_floatx_is_float32_and_says_what_to_use_instead():
    lamina.config.set_floatx("float32")
    assert lamina.config.floatx() == "float32"
    with pytest.raises(ValueError, match=r"received 'bfloat16'; use lamina.config.set_dtype_policy\('bfloat16'\)"):
        lamina.backend.set_floatx("bfloat16")
    with pytest.raises(ValueError, match="no float16 or float64 type"):
        lamina.config.set_floatx("float64")
    assert lamina.config.floatx() == "float32"


def test_image_data_format_is_the_default_of_layers_and_ops(restore):
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)   # channels first: (N, C, H, W)
    lamina.config.set_image_data_format("channels_first")
    assert lamina.backend.image_data_format() == "channels_first"
    pool = layers.MaxPooling2D()
    assert pool.data_format == "channels_first"
    np.testing.assert_array_equal(pool(x).numpy(), x.reshape(2, 3, 2, 2, 2, 2).max(axis=(3, 5)))
    flat = layers.Flatten()
    np.testing.assert_array_equal(flat(x).numpy(), x.transpose(0, 2, 3, 1).reshape(2, -1))
    assert flat.get_config()["data_format"] == "channels_first"
    assert ops.image.resize(x, (2, 2)).shape == (2, 3, 2, 2)
    with pytest.raises(ValueError, match=r"Conv2D: only data_format='channels_last' is supported, received None "
                                         r"\(None: lamina.config.image_data_format\(\) is 'channels_first'\)"):
        layers.Conv2D(4, 3)
    # explicit arguments win, and the default comes back
    assert layers.MaxPooling2D(data_format="channels_last").data_format == "channels_last"
    lamina.config.set_image_data_format("CHANNELS_LAST")
    assert layers.MaxPooling2D().data_format == "channels_last" and layers.Flatten().data_format == "channels_last"
    np.testing.assert_array_equal(layers.Flatten()(x).numpy(), x.reshape(2, -1))
    with pytest.raises(ValueError, match="set_image_data_format: expected 'channels_last' or 'channels_first', "
                                         "received 'NHWC'"):
        lamina.config.set_image_data_format("NHWC")


def test_get_uid_counts_with_the_automatic_names():
    lamina.backend.clear_session()
    assert lamina.backend.get_uid("thing") == 1 and lamina.backend.get_uid("thing") == 2
    first = layers.Dense(2)
    assert first.name == "dense" and lamina.backend.get_uid("dense") == 2
    assert layers.Dense(2).name == "dense_2"
    lamina.backend.clear_session()
    assert layers.Dense(2).name == "dense"


def test_unnamed_weights_and_variables_are_named_as_keras():
    class Two(layers.Layer):
        def build(self, shape):
            self.a = self.add_weight(shape=(2,))
            self.b = self.add_weight(shape=(2,), name="b")

    lamina.backend.clear_session()
    first, second = Two(), Two()
    first.build((1,))
    second.build((1,))
    assert [w.path for w in first.weights] == ["two/variable", "two/b"]
    assert [w.path for w in second.weights] == ["two_1/variable_1", "two_1/b"]
    assert lamina.Variable(1.0).name == "variable_2"
    lamina.backend.clear_session()
    assert lamina.Variable(1.0).name == "variable"
    keras = keras_or_none()
    if keras is not None:   # the same sequence in Keras
        keras.backend.clear_session()
        k1, k2 = (type("Two", (keras.layers.Layer,), {"build": Two.build})() for _ in range(2))
        k1.build((1,))
        k2.build((1,))
        assert [w.path for w in k2.weights] == [w.path for w in second.weights]
        assert keras.Variable(1.0).name == "variable_2"


@pytest.fixture
def no_caps():
    yield
    lamina.config.set_max_epochs(None)
    lamina.config.set_max_steps_per_epoch(None)


def test_max_epochs_and_steps_cap_fit_evaluate_and_predict(no_caps):
    lamina.utils.set_random_seed(0)
    model = lamina.Sequential([lamina.Input((3,)), layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((40, 3), np.float32), np.ones((40, 1), np.float32)   # 10 batches of 4

    class Count(lamina.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.train, self.test = 0, 0

        def on_train_batch_end(self, batch, logs=None):
            self.train += 1

        def on_test_batch_end(self, batch, logs=None):
            self.test += 1

    assert lamina.config.max_epochs() is None and lamina.config.max_steps_per_epoch() is None
    lamina.config.set_max_epochs(2)
    lamina.config.set_max_steps_per_epoch(3)
    count = Count()
    with pytest.warns(UserWarning, match="Limiting epochs to 2"):
        hist = model.fit(x, y, batch_size=4, epochs=5, validation_data=(x, y), callbacks=[count], verbose=0)
    assert len(hist.history["loss"]) == 2 and count.train == 2 * 3 and count.test == 2 * 3
    assert model.predict(x, batch_size=4, verbose=0).shape == (12, 1)
    lamina.config.set_max_steps_per_epoch(20)   # above the data's 10 batches: nothing to cap
    assert model.predict(x, batch_size=4, verbose=0).shape == (40, 1)
    lamina.config.set_max_epochs(None)
    lamina.config.set_max_steps_per_epoch(None)
    assert len(model.fit(x, y, batch_size=4, epochs=3, verbose=0).history["loss"]) == 3
    for setter in (lamina.config.set_max_epochs, lamina.config.set_max_steps_per_epoch):
        with pytest.raises(ValueError, match="expected a whole number >= 1, or None"):
            setter(0)


def test_max_epochs_from_the_environment():
    import subprocess
    import sys
    import os
    code = ("import lamina, numpy as np\n"
            "m = lamina.Sequential([lamina.Input((2,)), lamina.layers.Dense(1)]); m.compile('sgd', 'mse')\n"
            "h = m.fit(np.ones((8, 2), 'float32'), np.ones((8, 1), 'float32'), epochs=9, verbose=0)\n"
            "print(lamina.config.max_epochs(), len(h.history['loss']))\n")
    env = dict(os.environ, KERAS_MAX_EPOCHS="2", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "2"]


def test_flash_attention_switch_chooses_the_kernel_of_new_attention_layers(monkeypatch):
    attention = __import__("lamina.backend.attention", fromlist=["_fused"])
    calls = []
    fused = attention._fused
    monkeypatch.setattr(attention, "_fused", lambda *a, **k: calls.append(1) or fused(*a, **k))
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
    assert lamina.config.is_flash_attention_enabled() is None
    on = layers.MultiHeadAttention(num_heads=2, key_dim=4)
    try:
        lamina.config.disable_flash_attention()
        assert lamina.config.is_flash_attention_enabled() is False
        off = layers.MultiHeadAttention(num_heads=2, key_dim=4)
        forced = layers.MultiHeadAttention(num_heads=2, key_dim=4, flash_attention=True)
    finally:
        lamina.config.enable_flash_attention()
    y_on = on(x, x).numpy()
    assert len(calls) == 1
    off(x, x)                                  # built, then given the first layer's weights
    off.set_weights(on.get_weights())
    calls.clear()
    y_off = off(x, x).numpy()
    assert not calls                           # composed from einsum and softmax
    np.testing.assert_allclose(y_off, y_on, rtol=1e-5, atol=1e-6)
    forced(x, x)
    assert len(calls) == 1                     # an explicit flash_attention=True wins


def test_result_type_follows_keras_promotion():
    rt = lamina.backend.result_type
    assert rt() == "float32" and rt(None) == "float32"
    assert rt("int32", "float32") == "float32" and rt("bool", "int32") == "int32"
    assert rt("bfloat16", int) == "bfloat16" and rt("bfloat16", float) == "bfloat16"
    assert rt("bfloat16", "float32") == "float32" and rt("int8", "uint8") == "int16"
    assert rt(int) == "int32" and rt(float) == "float32" and rt("int64", "int32") == "int64"
    assert rt("float64", "int32") == "float32"   # as with Keras on JAX: no 64-bit floats
    with pytest.raises(ValueError, match="strings do not take part"):
        rt("string", "int32")
    with pytest.raises(ValueError, match="invalid dtype 'float128'"):
        rt("float128")
    keras = keras_or_none()
    if keras is None:
        return
    import itertools
    names = ["bool", "uint8", "uint16", "uint32", "int8", "int16", "int32", "int64", "bfloat16", "float16",
             "float32", "float64", "complex64", int, float, None]
    for combo in itertools.chain(itertools.product(names, repeat=2), itertools.product(names[::3], repeat=3)):
        want = keras.backend.result_type(*combo)
        got = rt(*combo)
        # Keras on JAX makes int64 results int32 (no 64-bit types); lamina computes in int64
        assert got == want or (want, got) == ("int32", "int64"), (combo, want, got)
