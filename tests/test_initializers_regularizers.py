import hashlib

import numpy as np
import pytest

import lamina
from lamina import activations, initializers, layers, regularizers, utils


@pytest.mark.parametrize("name,shape,var", [
    ("glorot_uniform", (300, 200), 2.0 / 500), ("glorot_normal", (300, 200), 2.0 / 500),
    ("he_normal", (400, 100), 2.0 / 400), ("he_uniform", (400, 100), 2.0 / 400),
    ("lecun_normal", (400, 100), 1.0 / 400), ("random_normal", (200, 200), 0.05 ** 2),
    ("random_uniform", (200, 200), 0.1 ** 2 / 12), ("glorot_uniform", (3, 3, 16, 32), 2.0 / (9 * 48))])
def test_variance_of_random_initializers(name, shape, var):
    w = initializers.get(name)(shape).numpy()
    assert w.shape == shape and w.dtype == np.float32
    assert abs(w.mean()) < 4 * np.sqrt(var / w.size) + 1e-6
    assert w.var() == pytest.approx(var, rel=0.08)


def test_truncated_and_constant_initializers():
    w = initializers.TruncatedNormal(stddev=0.1, seed=1)((100, 100)).numpy()
    assert np.abs(w).max() <= 0.2 + 1e-6
    np.testing.assert_array_equal(initializers.get("zeros")((2, 3)).numpy(), np.zeros((2, 3)))
    np.testing.assert_array_equal(initializers.Constant(2.5)((2,)).numpy(), [2.5, 2.5])
    np.testing.assert_array_equal(initializers.get("ones")((3,)).numpy(), np.ones(3))


def test_orthogonal_and_identity():
    q = initializers.Orthogonal(seed=3)((6, 4)).numpy()
    np.testing.assert_allclose(q.T @ q, np.eye(4), atol=1e-5)
    np.testing.assert_array_equal(initializers.get("identity")((3, 3)).numpy(), np.eye(3))


def test_seeded_initializers_are_reproducible():
    a = initializers.GlorotUniform(seed=7)((5, 5)).numpy()
    b = initializers.GlorotUniform(seed=7)((5, 5)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, initializers.GlorotUniform(seed=8)((5, 5)).numpy())


def test_initializer_errors_and_round_trip():
    with pytest.raises(ValueError, match="Unknown initializer 'glorot'"):
        initializers.get("glorot")
    init = initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="uniform", seed=3)
    again = initializers.get(initializers.serialize(init))
    assert again.get_config() == init.get_config()
    d = layers.Dense(3, kernel_initializer="zeros", bias_initializer=initializers.Constant(1.0))
    d(np.ones((1, 2), np.float32))
    np.testing.assert_array_equal(d.get_weights()[1], np.ones(3))


def test_regularizers_add_losses_to_training():
    w = lamina.convert_to_tensor(np.array([[1.0, -2.0], [3.0, 0.5]], np.float32))
    assert float(regularizers.l1(0.1)(w)) == pytest.approx(0.65)
    assert float(regularizers.l2(0.01)(w)) == pytest.approx(0.1425)
    assert float(regularizers.L1L2(l1=0.1, l2=0.01)(w)) == pytest.approx(0.7925)
    with pytest.raises(ValueError, match="non-negative"):
        regularizers.L2(-1.0)
    d = layers.Dense(2, kernel_regularizer="l2", kernel_initializer="ones")
    m = lamina.Sequential([lamina.Input(shape=(2,)), d])
    assert len(m.losses) == 1 and float(m.losses[0]) == pytest.approx(0.01 * 4)
    m.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32)
    assert m.test_on_batch(x, y) == pytest.approx(0.04, rel=1e-5)  # data loss 0 + penalty


def test_activations_by_name():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0], np.float32)
    np.testing.assert_allclose(activations.get("relu")(x).numpy(), np.maximum(x, 0))
    np.testing.assert_allclose(activations.get("sigmoid")(x).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(activations.get("softplus")(x).numpy(), np.log1p(np.exp(x)), rtol=1e-6)
    np.testing.assert_allclose(activations.get("swish")(x).numpy(), x / (1 + np.exp(-x)), rtol=1e-6, atol=1e-7)
    assert activations.get(None) is activations.linear
    with pytest.raises(ValueError, match="Unknown activation"):
        activations.get("relu7")


def test_utils_to_categorical_and_seed():
    np.testing.assert_array_equal(utils.to_categorical([0, 2, 1], 3), np.eye(3)[[0, 2, 1]])
    assert utils.to_categorical([[1], [0]]).shape == (2, 2)
    with pytest.raises(ValueError, match="num_classes=2"):
        utils.to_categorical([0, 2], 2)
    utils.set_random_seed(5)
    a = lamina.random.normal((4,)).numpy()
    utils.set_random_seed(5)
    np.testing.assert_array_equal(a, lamina.random.normal((4,)).numpy())


def test_get_file_checks_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMINA_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "data.bin"
    src.write_bytes(b"payload")
    sha = hashlib.sha256(b"payload").hexdigest()
    p = utils.get_file("data.bin", origin="file://" + str(src), file_hash=sha)
    assert p == str(tmp_path / "cache" / "datasets" / "data.bin")
    assert open(p, "rb").read() == b"payload"
    with pytest.raises(ValueError, match="sha256 is .* expected 0{64}"):
        utils.get_file("y", origin="file://" + str(src), file_hash="0" * 64)
    assert not (tmp_path / "cache" / "datasets" / "y").exists()
