"""lamina.constraints: Keras's formulas, and every layer's *_constraint applied after each
optimizer update (never accepted and ignored)."""
import os

import numpy as np
import pytest

import lamina
from lamina import constraints, layers

EPS = 1e-7


def _np_norms(w, axis):
    return np.sqrt(np.sum(w * w, axis=axis, keepdims=True))


@pytest.mark.parametrize("axis", [0, 1, [0, 1]])
def test_formulas(axis):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4, 5)).astype(np.float32)
    t = lamina.convert_to_tensor(w)
    n = _np_norms(w, tuple(axis) if isinstance(axis, list) else axis)
    np.testing.assert_allclose(constraints.MaxNorm(1.5, axis=axis)(t).numpy(),
                               w * np.clip(n, 0, 1.5) / (EPS + n), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(constraints.MinMaxNorm(0.5, 1.0, rate=0.7, axis=axis)(t).numpy(),
                               w * (0.7 * np.clip(n, 0.5, 1.0) + 0.3 * n) / (EPS + n), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(constraints.UnitNorm(axis=axis)(t).numpy(), w / (EPS + n), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(constraints.NonNeg()(t).numpy(), w * (w >= 0))


def test_get_serialize_and_errors():
    assert isinstance(constraints.get("max_norm"), constraints.MaxNorm)
    assert isinstance(constraints.get("NonNeg"), constraints.NonNeg)
    c = constraints.get({"class_name": "MinMaxNorm", "config": {"min_value": 0.1, "max_value": 2.0, "rate": 0.5,
                                                                 "axis": 1}})
    assert constraints.serialize(c) == {"module": "keras.constraints", "class_name": "MinMaxNorm",   # Keras's form
                                        "config": {"min_value": 0.1, "max_value": 2.0, "rate": 0.5, "axis": 1},
                                        "registered_name": None}
    with pytest.raises(ValueError, match="Unknown constraint 'maxnorm'"):
        constraints.get("maxnorm")
    with pytest.raises(ValueError, match="max_value must be a non-negative"):
        constraints.MaxNorm(-1)
    with pytest.raises(ValueError, match="rate must be in"):
        constraints.MinMaxNorm(rate=2)
    with pytest.raises(ValueError, match="axis"):
        constraints.UnitNorm(axis=1.5)
    with pytest.raises(TypeError, match="Cannot serialize"):
        constraints.serialize(lambda w: w)


def _fit(model, x, y, epochs=2):
    model.compile(optimizer=lamina.optimizers.SGD(0.02), loss="mse")
    model.fit(x, y, epochs=epochs, batch_size=8, verbose=0)


def test_dense_and_conv_constraints_hold_after_every_update():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 6, 6, 2)).astype(np.float32)
    y = rng.standard_normal((32, 3)).astype(np.float32) * 10
    conv = layers.Conv2D(4, 3, kernel_constraint=constraints.MaxNorm(0.5, axis=[0, 1, 2]),
                         bias_constraint="non_neg")
    dense = layers.Dense(3, kernel_constraint="non_neg", bias_constraint=constraints.UnitNorm())
    model = lamina.Sequential([lamina.Input((6, 6, 2)), conv, layers.Flatten(), dense])
    _fit(model, x, y)
    k = conv.kernel.numpy()
    assert np.all(_np_norms(k, (0, 1, 2)) <= 0.5 + 1e-5)
    assert np.all(conv.bias.numpy() >= 0) and np.all(dense.kernel.numpy() >= 0)
    assert abs(np.linalg.norm(dense.bias.numpy()) - 1) < 1e-4
    # the same run without constraints leaves them violated (so the test can fail)
    free = lamina.Sequential([lamina.Input((6, 6, 2)), layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(3)])
    _fit(free, x, y)
    assert np.any(free.layers[-1].kernel.numpy() < 0)


@pytest.mark.parametrize("make, weight, check", [
    (lambda: layers.Embedding(10, 4, embeddings_constraint=constraints.UnitNorm(axis=1)), "embeddings",
     lambda w: np.allclose(np.linalg.norm(w, axis=1), 1, atol=1e-4)),
    (lambda: layers.LSTM(3, recurrent_constraint="non_neg", kernel_constraint=constraints.MaxNorm(0.3)), None,
     None),
])
def test_embedding_and_recurrent_constraints(make, weight, check):
    rng = np.random.default_rng(1)
    layer = make()
    if weight == "embeddings":
        model = lamina.Sequential([lamina.Input((5,), dtype="int32"), layer, layers.Flatten(), layers.Dense(1)])
        x = rng.integers(0, 10, (32, 5)).astype(np.int32)
    else:
        model = lamina.Sequential([lamina.Input((5, 2)), layer, layers.Dense(1)])
        x = rng.standard_normal((32, 5, 2)).astype(np.float32)
    _fit(model, x, rng.standard_normal((32, 1)).astype(np.float32) * 5)
    if weight == "embeddings":
        assert check(layer.embeddings.numpy())
    else:
        cell = layer.cell
        assert np.all(cell.recurrent_kernel.numpy() >= 0)
        assert np.all(_np_norms(cell.kernel.numpy(), 0) <= 0.3 + 1e-5)


def test_batchnorm_constraints_and_config_round_trip():
    bn = layers.BatchNormalization(gamma_constraint=constraints.MinMaxNorm(0.0, 0.5, axis=0),
                                   beta_constraint="non_neg")
    model = lamina.Sequential([lamina.Input((4,)), layers.Dense(4), bn, layers.Dense(1)])
    rng = np.random.default_rng(2)
    _fit(model, rng.standard_normal((32, 4)).astype(np.float32), rng.standard_normal((32, 1)).astype(np.float32))
    assert np.linalg.norm(bn.gamma.numpy()) <= 0.5 + 1e-5 and np.all(bn.beta.numpy() >= 0)
    cfg = bn.get_config()
    assert cfg["gamma_constraint"]["class_name"] == "MinMaxNorm" and cfg["beta_constraint"]["class_name"] == "NonNeg"
    again = layers.BatchNormalization.from_config(cfg)
    assert isinstance(again.gamma_constraint, constraints.MinMaxNorm) and again.gamma_constraint.max_value == 0.5
    d = layers.Dense.from_config(layers.Dense(2, kernel_constraint=constraints.MaxNorm(3)).get_config())
    assert isinstance(d.kernel_constraint, constraints.MaxNorm) and d.kernel_constraint.max_value == 3


def test_constraints_equal_keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    w = np.random.default_rng(3).standard_normal((3, 4, 5)).astype(np.float32)
    for k, ours in ((keras.constraints.MaxNorm(1.2, axis=1), constraints.MaxNorm(1.2, axis=1)),
                    (keras.constraints.MinMaxNorm(0.2, 0.9, 0.6, axis=[0, 2]),
                     constraints.MinMaxNorm(0.2, 0.9, 0.6, axis=[0, 2])),
                    (keras.constraints.UnitNorm(axis=2), constraints.UnitNorm(axis=2)),
                    (keras.constraints.NonNeg(), constraints.NonNeg())):
        np.testing.assert_allclose(ours(lamina.convert_to_tensor(w)).numpy(), np.asarray(k(w)), rtol=1e-5, atol=1e-6)
        assert ours.get_config() == {key: (list(v) if isinstance(v, tuple) else v)
                                     for key, v in k.get_config().items()}
