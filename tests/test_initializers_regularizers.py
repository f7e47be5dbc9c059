import hashlib

import numpy as np
import pytest

import lamina
from lamina import activations, initializers, layers, regularizers, utils
from keras_ref import keras_or_none


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


# ---- Keras's other names, the STFT initializer, the orthogonal regularizer, the new activations ----

def test_lowercase_initializer_names_are_the_classes():
    for lower, cls in [("glorot_uniform", initializers.GlorotUniform), ("he_normal", initializers.HeNormal),
                       ("zeros", initializers.Zeros), ("ones", initializers.Ones), ("constant", initializers.Constant),
                       ("orthogonal", initializers.Orthogonal), ("identity", initializers.Identity),
                       ("variance_scaling", initializers.VarianceScaling), ("stft", initializers.STFT)]:
        assert getattr(initializers, lower) is cls
    assert initializers.OrthogonalInitializer is initializers.Orthogonal
    assert initializers.IdentityInitializer is initializers.Identity
    assert initializers.STFTInitializer is initializers.STFT
    np.testing.assert_array_equal(initializers.constant(3.0)((2,)).numpy(), [3.0, 3.0])
    v = lamina.Variable(initializers.zeros, shape=(3,))   # a class is made an instance
    np.testing.assert_array_equal(v.numpy(), np.zeros(3))
    d = layers.Dense(2, kernel_initializer=initializers.ones)
    d(np.zeros((1, 3), np.float32))
    np.testing.assert_array_equal(d.get_weights()[0], np.ones((3, 2)))


def _scipy_like_window(name, n, periodic):
    m = n + 1 if periodic and n > 1 else n
    k = np.arange(m)
    if m == 1:
        return np.ones(1)
    w = {"hann": 0.5 - 0.5 * np.cos(2 * np.pi * k / (m - 1)),
         "hamming": 0.54 - 0.46 * np.cos(2 * np.pi * k / (m - 1))}[name]
    return w[:n]


@pytest.mark.parametrize("side", ["real", "imag"])
@pytest.mark.parametrize("window,periodic", [("hann", False), ("hann", True), ("hamming", True), (None, False)])
def test_stft_initializer_is_the_windowed_dft(side, window, periodic):
    frame, bins = 8, 5
    k = initializers.STFT(side, window, "density", periodic)((frame, 1, bins)).numpy()
    t, f = np.arange(frame)[:, None], np.arange(bins)[None, :]
    ang = -2 * np.pi * t * f / ((bins - 1) * 2)
    want = np.cos(ang) if side == "real" else np.sin(ang)
    if window is not None:
        w = _scipy_like_window(window, frame, periodic)
        want = want * w[:, None] / np.sqrt((w ** 2).sum())
    np.testing.assert_allclose(k[:, 0, :], want, atol=1e-6)


def test_stft_initializer_matches_keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    pytest.importorskip("scipy")   # Keras computes named windows with scipy
    for window in ["hann", "hamming", "blackman", "bartlett", "triang", "boxcar", np.linspace(0.1, 1.0, 7)]:
        for periodic in (False, True):
            for scaling in ("density", "spectrum", None):
                for side in ("real", "imag"):
                    want = np.asarray(keras.initializers.STFT(side, window, scaling, periodic)((7, 1, 9)))
                    got = initializers.STFT(side, window, scaling, periodic)((7, 1, 9)).numpy()
                    np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"{window} {periodic} {scaling} {side}")


def test_stft_initializer_errors_and_config():
    with pytest.raises(ValueError, match="side should be 'real' or 'imag'"):
        initializers.STFT("complex")
    with pytest.raises(ValueError, match="unknown window 'kaiser_bessel'"):
        initializers.STFT(window="kaiser_bessel")
    with pytest.raises(ValueError, match="scaling must be None"):
        initializers.STFT(scaling="l2")
    with pytest.raises(ValueError, match=r"window must have shape \(8,\)"):
        initializers.STFT(window=[1.0, 2.0])((8, 1, 5))
    init = initializers.STFT("imag", [0.5, 1.0, 0.5], None, True)
    again = initializers.get(initializers.serialize(init))
    assert again.get_config() == init.get_config()
    np.testing.assert_array_equal(again((3, 1, 4)).numpy(), init((3, 1, 4)).numpy())


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_regularizer_value(mode):
    x = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    v = x if mode == "rows" else x.T
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    p = np.abs(v @ v.T)
    n = len(v)
    want = 0.3 * 0.5 * (p.sum() - np.trace(p)) / (n * (n - 1) / 2)
    got = float(regularizers.OrthogonalRegularizer(0.3, mode)(lamina.convert_to_tensor(x)))
    assert got == pytest.approx(want, rel=1e-5)
    assert regularizers.orthogonal_regularizer is regularizers.OrthogonalRegularizer
    q = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 6)))[0].astype(np.float32)
    assert float(regularizers.get("orthogonal_regularizer")(lamina.convert_to_tensor(q))) == pytest.approx(0, abs=1e-6)


def test_orthogonal_regularizer_trains_and_round_trips():
    reg = regularizers.OrthogonalRegularizer(factor=1.0)
    d = layers.Dense(4, kernel_regularizer=reg, use_bias=False)
    m = lamina.Sequential([lamina.Input(shape=(4,)), d])
    m.compile(optimizer=lamina.optimizers.SGD(0.5), loss="mse")
    x = np.zeros((8, 4), np.float32)
    before = float(m.losses[0])
    m.fit(x, x, epochs=20, verbose=0)   # the only gradient is the penalty's
    assert float(m.losses[0]) < before * 0.5
    again = regularizers.get(regularizers.serialize(regularizers.OrthogonalRegularizer(0.2, "columns")))
    assert isinstance(again, regularizers.OrthogonalRegularizer) and again.get_config() == {"factor": 0.2,
                                                                                          "mode": "columns"}
    with pytest.raises(ValueError, match="rank-2 weight"):
        reg(lamina.convert_to_tensor(np.ones((2, 2, 2), np.float32)))
    with pytest.raises(ValueError, match="mode must be 'rows' or 'columns'"):
        regularizers.OrthogonalRegularizer(mode="diag")
    with pytest.raises(ValueError, match="non-negative number"):
        regularizers.OrthogonalRegularizer(factor=-1)


ACTIVATION_REFS = {
    "celu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "glu": lambda x: x[..., :2] / (1 + np.exp(-x[..., 2:])),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0),
    "hard_silu": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
    "hard_swish": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "log_sigmoid": lambda x: -np.log1p(np.exp(-x)),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "soft_shrink": lambda x: np.sign(x) * np.maximum(np.abs(x) - 0.5, 0),
    "sparse_plus": lambda x: np.where(x <= -1, 0, np.where(x >= 1, x, (x + 1) ** 2 / 4)),
    "sparse_sigmoid": lambda x: np.clip((x + 1) / 2, 0, 1),
    "squareplus": lambda x: (x + np.sqrt(x * x + 4)) / 2,
    "tanh_shrink": lambda x: x - np.tanh(x),
}


@pytest.mark.parametrize("name", sorted(ACTIVATION_REFS))
def test_more_activations_by_name_and_in_layers(name):
    x = np.array([[-2.0, -0.7, 0.3, 1.5]], np.float32)
    want = ACTIVATION_REFS[name](x.astype(np.float64))
    np.testing.assert_allclose(activations.get(name)(x).numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layers.Activation(name)(x).numpy(), want, rtol=1e-5, atol=1e-6)
    assert activations.serialize(activations.get(name)) in (name, "hard_silu")


def test_sparsemax_and_threshold_activations():
    x = np.array([[0.5, 1.5, -1.0]], np.float32)
    np.testing.assert_allclose(activations.sparsemax(x).numpy(), [[0.0, 1.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(activations.sparsemax(np.array([[1.0, 1.2, -1.0]], np.float32)).numpy(),
                               [[0.4, 0.6, 0.0]], atol=1e-6)
    np.testing.assert_allclose(activations.threshold(x, 0.6, -9.0).numpy(), [[-9.0, 1.5, -9.0]])


def test_mish_gradient():
    x = lamina.Variable(np.array([-1.0, 0.0, 2.0], np.float32))
    with lamina.GradientTape() as tape:
        y = lamina.ops.sum(activations.mish(x))
    g = tape.gradient(y, x).numpy()
    xd = np.array([-1.0, 0.0, 2.0])
    sp, sg = np.log1p(np.exp(xd)), 1 / (1 + np.exp(-xd))
    want = np.tanh(sp) + xd * (1 - np.tanh(sp) ** 2) * sg
    np.testing.assert_allclose(g, want, rtol=1e-5)


def test_constant_initializer_broadcasts_an_array_and_saves_it(tmp_path):
    # PointNet's t-net bias: Constant(np.eye(3).flatten()), saved and loaded with the model
    eye = np.eye(3).flatten()
    np.testing.assert_array_equal(initializers.Constant(eye)((9,)).numpy(), eye)
    np.testing.assert_array_equal(initializers.Constant([1.0, 2.0])((3, 2)).numpy(), [[1, 2]] * 3)
    with pytest.raises(ValueError, match=r"Constant: a value of shape \(9,\) does not broadcast.*\(4,\)"):
        initializers.Constant(eye)((4,))
    model = lamina.Sequential([lamina.Input((2,)), layers.Dense(9, bias_initializer=initializers.Constant(eye))])
    np.testing.assert_array_equal(model.layers[0].bias.numpy(), eye)
    model.save(tmp_path / "m.keras")
    loaded = lamina.saving.load_model(tmp_path / "m.keras")
    again = loaded.layers[0].bias_initializer
    assert isinstance(again, initializers.Constant) and isinstance(again.value, np.ndarray)
    np.testing.assert_array_equal(again((9,)).numpy(), eye)
    assert isinstance(initializers.deserialize(initializers.serialize(initializers.Zeros())), initializers.Zeros)
    keras = keras_or_none()
    if keras is not None:
        k = keras.initializers.Constant(eye)
        np.testing.assert_array_equal(initializers.deserialize(keras.initializers.serialize(k))((9,)).numpy(),
                                      np.asarray(k((9,))))


def test_a_registered_regularizer_named_like_a_builtin_loads_as_itself(tmp_path):
    # PointNet's own OrthogonalRegularizer (registered) shares its name with Keras's built-in one
    @lamina.saving.register_keras_serializable(package="pointnet_test")
    class OrthogonalRegularizer(regularizers.Regularizer):
        def __init__(self, num_features, l2reg=0.001):
            self.num_features, self.l2reg = num_features, l2reg
            self.eye = lamina.ops.eye(num_features)

        def __call__(self, x):
            x = lamina.ops.reshape(x, (-1, self.num_features, self.num_features))
            xxt = lamina.ops.tensordot(x, x, axes=(2, 2))
            xxt = lamina.ops.reshape(xxt, (-1, self.num_features, self.num_features))
            return lamina.ops.sum(self.l2reg * lamina.ops.square(xxt - self.eye))

        def get_config(self):
            return {"num_features": self.num_features, "l2reg": self.l2reg}

    reg = OrthogonalRegularizer(3)
    again = regularizers.deserialize(regularizers.serialize(reg))
    assert type(again) is OrthogonalRegularizer and again.get_config() == reg.get_config()
    builtin = regularizers.deserialize(regularizers.serialize(regularizers.OrthogonalRegularizer(0.1)))
    assert type(builtin) is regularizers.OrthogonalRegularizer   # the built-in still loads as itself
    model = lamina.Sequential([lamina.Input((4,)), layers.Dense(9, activity_regularizer=reg)])
    model.save(tmp_path / "m.keras")
    loaded = lamina.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.layers[0].activity_regularizer) is OrthogonalRegularizer
