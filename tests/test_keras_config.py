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
