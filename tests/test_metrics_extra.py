"""metrics.py's PearsonCorrelation / ConcordanceCorrelation and losses.py's Circle /
CategoricalGeneralizedCrossEntropy: against Keras (when installed) and numpy, in compile, by name,
config round trips and clear errors."""
import numpy as np
import pytest

import lamina
from lamina import layers, losses, metrics
from keras_ref import keras_or_none

RNG = np.random.default_rng(3)
Y_TRUE = RNG.normal(size=(5, 7)).astype(np.float32)
Y_PRED = (0.7 * Y_TRUE + 0.5 * RNG.normal(size=(5, 7)) + 0.3).astype(np.float32)
LABELS = np.array([0, 1, 1, 2, 2, 2, 3, 4, 0, 5])          # 4 and 5 have no positive: their loss is 0
EMB = RNG.normal(size=(10, 6)).astype(np.float32)
EMB /= np.linalg.norm(EMB, axis=1, keepdims=True)
PROBS = RNG.dirichlet(np.ones(4), size=8).astype(np.float32)
CLASSES = RNG.integers(0, 4, size=8)


def _keras():
    k = keras_or_none()
    if k is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    return k


def test_correlations_against_numpy():
    yt, yp = Y_TRUE.astype(np.float64), Y_PRED.astype(np.float64)
    pearson = [np.corrcoef(a, b)[0, 1] for a, b in zip(yt, yp)]
    np.testing.assert_allclose(metrics.pearson_correlation(Y_TRUE, Y_PRED).numpy(), pearson, rtol=1e-5)
    # Keras's concordance formula (its covariance term centres y_true on y_pred's mean)
    mt, mp = yt.mean(-1, keepdims=True), yp.mean(-1, keepdims=True)
    ccc = (2 * (yt - mp) * (yp - mp) / (yt.var(-1, keepdims=True) + yp.var(-1, keepdims=True) + (mt - mp) ** 2
                                        + 1e-7)).mean(-1)
    np.testing.assert_allclose(metrics.concordance_correlation(Y_TRUE, Y_PRED).numpy(), ccc, rtol=1e-5)
    np.testing.assert_allclose(metrics.pearson_correlation(Y_TRUE, Y_TRUE).numpy(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", ["pearson_correlation", "concordance_correlation"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_correlation_functions_match_keras(name, axis):
    k = _keras()
    want = np.asarray(getattr(k.metrics, name)(Y_TRUE, Y_PRED, axis=axis))
    np.testing.assert_allclose(getattr(metrics, name)(Y_TRUE, Y_PRED, axis=axis).numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", ["PearsonCorrelation", "ConcordanceCorrelation"])
def test_correlation_metrics_match_keras(cls):
    k = _keras()
    ours, theirs = getattr(metrics, cls)(axis=-1), getattr(k.metrics, cls)(axis=-1)
    for sl, sw in ((slice(0, 3), None), (slice(3, 5), np.array([2.0, 0.5]))):
        ours.update_state(Y_TRUE[sl], Y_PRED[sl], sample_weight=sw)
        theirs.update_state(Y_TRUE[sl], Y_PRED[sl], sample_weight=sw)
    assert float(ours.result()) == pytest.approx(float(theirs.result()), rel=1e-5, abs=1e-6)
    assert ours.get_config() == {**theirs.get_config(), "dtype": "float32"}
    assert ours._direction == "up"
    again = metrics.deserialize(metrics.serialize(ours))
    assert type(again) is type(ours) and again.get_config() == ours.get_config()


def test_correlation_metrics_by_name_and_in_compile():
    assert type(metrics.get("pearson_correlation")) is metrics.PearsonCorrelation
    assert type(metrics.get("ConcordanceCorrelation")) is metrics.ConcordanceCorrelation
    x = RNG.normal(size=(16, 3)).astype(np.float32)
    y = (x @ RNG.normal(size=(3, 4))).astype(np.float32)
    m = lamina.Sequential([lamina.Input((3,)), layers.Dense(4)])
    m.compile("sgd", "mse", metrics=["pearson_correlation", metrics.ConcordanceCorrelation()])
    logs = m.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    want = metrics.pearson_correlation(y, m.predict(x, verbose=0)).numpy().mean()
    assert logs["pearson_correlation"] == pytest.approx(float(want), rel=1e-5)
    assert set(logs) == {"loss", "pearson_correlation", "concordance_correlation"}


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"])
@pytest.mark.parametrize("weighted", [False, True])
def test_circle_matches_keras(reduction, weighted):
    k = _keras()
    sw = np.linspace(0.5, 2.0, 10).astype(np.float32) if weighted else None
    kwargs = dict(gamma=20.0, margin=0.3, reduction=reduction)
    want = np.asarray(k.losses.Circle(**kwargs)(LABELS, EMB, sample_weight=sw))
    got = losses.Circle(**kwargs)(LABELS, EMB, sample_weight=sw).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_circle_function_matches_keras_with_references():
    k = _keras()
    ref_labels, ref = LABELS[:6], EMB[:6]
    for kwargs in (dict(), dict(remove_diagonal=False, gamma=10, margin=0.25),
                   dict(ref_labels=ref_labels, ref_embeddings=ref, remove_diagonal=False)):
        want = np.asarray(k.losses.circle(LABELS, EMB, **kwargs))
        np.testing.assert_allclose(losses.circle(LABELS, EMB, **kwargs).numpy(), want, rtol=1e-5, atol=1e-4)


def test_circle_in_fit_has_finite_gradients():
    x = RNG.normal(size=(12, 5)).astype(np.float32)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7])   # anchors without positives get no gradient
    m = lamina.Sequential([lamina.Input((5,)), layers.Dense(4), layers.UnitNormalization()])
    m.compile("adam", losses.Circle())
    history = m.fit(x, y, batch_size=12, epochs=3, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and history.history["loss"][-1] < history.history["loss"][0]
    assert all(np.isfinite(w).all() for w in m.get_weights())


@pytest.mark.parametrize("q", [0.2, 0.5, 0.9])
def test_generalized_cross_entropy_matches_keras(q):
    k = _keras()
    want = np.asarray(k.losses.categorical_generalized_cross_entropy(CLASSES, PROBS, q))
    np.testing.assert_allclose(losses.categorical_generalized_cross_entropy(CLASSES, PROBS, q).numpy(), want,
                               rtol=1e-5, atol=1e-6)
    sw = np.arange(8, dtype=np.float32)
    ours = losses.CategoricalGeneralizedCrossEntropy(q=q)(CLASSES, PROBS, sample_weight=sw)
    theirs = k.losses.CategoricalGeneralizedCrossEntropy(q=q)(CLASSES, PROBS, sample_weight=sw)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


def test_generalized_cross_entropy_against_numpy_and_labels_with_a_trailing_axis():
    p = PROBS[np.arange(8), CLASSES].astype(np.float64)
    want = (1 - p ** 0.4) / 0.4
    fn = losses.categorical_generalized_cross_entropy
    np.testing.assert_allclose(fn(CLASSES, PROBS, 0.4).numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(fn(CLASSES[:, None].astype(np.float32), PROBS, 0.4).numpy(), want, rtol=1e-5)


def test_new_losses_by_name_and_config():
    for name, cls in (("circle", losses.Circle),
                      ("categorical_generalized_cross_entropy", losses.CategoricalGeneralizedCrossEntropy)):
        assert losses.get(name) is getattr(losses, name)
        obj = losses.get(cls.__name__)
        assert type(obj) is cls and obj.name == name
        again = losses.deserialize(losses.serialize(cls()))
        assert type(again) is cls and again.get_config() == cls().get_config()
    config = losses.Circle(gamma=30.0, margin=0.2, remove_diagonal=False, reduction="sum").get_config()
    assert config == {"name": "circle", "reduction": "sum", "gamma": 30.0, "margin": 0.2, "remove_diagonal": False}
    assert losses.CategoricalGeneralizedCrossEntropy(q=0.3).get_config() == {
        "name": "categorical_generalized_cross_entropy", "reduction": "sum_over_batch_size", "q": 0.3}


def test_new_losses_and_metrics_errors():
    with pytest.raises(ValueError, match=r"q must be in the interval \(0, 1\)"):
        losses.CategoricalGeneralizedCrossEntropy(q=1.0)
    with pytest.raises(ValueError, match="q must be"):
        losses.categorical_generalized_cross_entropy(CLASSES, PROBS, 0)
    with pytest.raises(ValueError, match=r"one integer class label per sample"):
        losses.categorical_generalized_cross_entropy(np.zeros((8, 4)), PROBS, 0.5)
    with pytest.raises(ValueError, match=r"shape \(batch, dim\)"):
        losses.circle(LABELS, EMB[:, :, None])
    with pytest.raises(ValueError, match="10 labels for 9 embeddings"):
        losses.circle(LABELS, EMB[:9])
    with pytest.raises(ValueError, match="ref_embeddings must have shape"):
        losses.circle(LABELS, EMB, ref_labels=LABELS, ref_embeddings=EMB[:, :3])
    with pytest.raises(ValueError, match="sample_weight"):
        losses.Circle()(LABELS, EMB, sample_weight=np.ones(3))
    with pytest.raises(TypeError, match="unexpected argument"):
        metrics.PearsonCorrelation(axes=0)
