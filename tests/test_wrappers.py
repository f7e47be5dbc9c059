"""lamina.wrappers, as keras.wrappers: SKLearnClassifier, SKLearnRegressor and SKLearnTransformer
through scikit-learn's own API (fit/predict/score, Pipeline, cross_val_score, GridSearchCV, clone,
metadata routing, pickling, scikit-learn's estimator checks), label encoding, warm_start, the
argument errors, and, where Keras (JAX backend) is installed, the deterministic behaviour Keras's
wrappers share (classes_, output shapes and dtypes, parameters, tags, error types). Skipped when
scikit-learn is missing (lamina does not depend on it); the tests that it stays optional run in a
fresh interpreter."""
import inspect
import json
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, cross_validate  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import lamina  # noqa: E402
from lamina.wrappers import SKLearnClassifier, SKLearnRegressor, SKLearnTransformer  # noqa: E402
from keras_ref import keras_or_none  # noqa: E402

QUIET = {"verbose": 0}


@pytest.fixture(autouse=True)
def _seed():
    lamina.utils.set_random_seed(0)


# ---- models and data ----------------------------------------------------------------------------

def mlp(X, y, units=16, loss="categorical_crossentropy", activation="softmax", lr=0.05, calls=None, lib=None):
    """A small MLP with one output per column of y (the one-hot y for a classifier); `lib` is
    lamina or keras, so the same builder makes both libraries' models. `calls` (a list) records
    the shapes of each call's X and y."""
    lib = lib or lamina
    if calls is not None:
        calls.append((X.shape, y.shape, y.dtype))
    inputs = lib.Input(shape=(X.shape[1],))
    hidden = lib.layers.Dense(units, activation="relu")(inputs)
    outputs = lib.layers.Dense(y.shape[1] if y.ndim > 1 else 1, activation=activation)(hidden)
    model = lib.Model(inputs, outputs)
    model.compile(optimizer=lib.optimizers.Adam(learning_rate=lr), loss=loss)
    return model


def uncompiled(X, y, lib=None):
    lib = lib or lamina
    inputs = lib.Input(shape=(X.shape[1],))
    return lib.Model(inputs, lib.layers.Dense(y.shape[1])(inputs))


def returns_none(X, y):
    return None


REG = {"loss": "mse", "activation": None}


def blobs(labels=("cat", "dog", "eel"), per_class=30, n_features=4, seed=0, offset=0.0, scale=1.0):
    """Well separated Gaussian clusters, one per label, shuffled."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(labels), n_features)) * 4
    index = rng.permutation(np.repeat(np.arange(len(labels)), per_class))
    X = (centers[index] + rng.normal(size=(len(index), n_features))) * scale + offset
    return X, np.asarray(labels)[index]


def linear(n=120, n_features=4, n_outputs=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    w = rng.normal(size=(n_features,) + ((n_outputs,) if n_outputs else ()))
    return X, X @ w + 0.05 * rng.normal(size=(n,) + ((n_outputs,) if n_outputs else ()))


def classifier(**kwargs):
    kwargs.setdefault("fit_kwargs", {"epochs": 40, **QUIET})
    return SKLearnClassifier(mlp, **kwargs)


def regressor(**kwargs):
    kwargs.setdefault("model_kwargs", dict(REG))
    kwargs.setdefault("fit_kwargs", {"epochs": 60, **QUIET})
    return SKLearnRegressor(mlp, **kwargs)


# ---- classifier --------------------------------------------------------------------------------

def test_classifier_string_labels_fit_predict_score():
    X, y = blobs()
    calls = []
    clf = classifier(model_kwargs={"calls": calls})
    assert clf.fit(X, y) is clf
    np.testing.assert_array_equal(clf.classes_, ["cat", "dog", "eel"])
    assert calls == [((90, 4), (90, 3), np.float64)]   # the builder sees the one-hot targets
    pred = clf.predict(X)
    assert pred.shape == (90,) and pred.dtype == y.dtype and set(pred) <= set(y)
    assert clf.score(X, y) >= 0.9
    assert clf.decision_function(X[:5]).shape == (5, 3)
    proba = clf.predict_proba(X[:5])
    assert proba.shape == (5, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], pred[:5])
    assert clf.n_features_in_ == 4 and clf.epoch_ == 40 and len(clf.history_["loss"]) == 40
    assert isinstance(clf.model_, lamina.Model)


def test_classifier_binary_int_labels_and_lists():
    X, y = blobs(labels=(7, 3))
    clf = classifier().fit(X.tolist(), y.tolist())
    np.testing.assert_array_equal(clf.classes_, [3, 7])
    assert clf.decision_function(X[:4]).shape == (4, 2)   # one output per class, binary too (as Keras)
    assert set(clf.predict(X)) <= {3, 7} and clf.score(X, y) >= 0.9


def test_classifier_column_labels_are_flattened():
    X, y = blobs(labels=(0, 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = classifier(fit_kwargs={"epochs": 2, **QUIET}).fit(X, y.reshape(-1, 1))
    assert any("1d array" in str(w.message) for w in caught)   # scikit-learn's DataConversionWarning
    assert clf.predict(X).shape == (len(X),)


def test_classifier_validation_data_labels_are_encoded():
    X, y = blobs()
    clf = classifier(fit_kwargs={"epochs": 3, "validation_data": (X[:10], y[:10]), **QUIET}).fit(X, y)
    assert len(clf.history_["val_loss"]) == 3


# ---- regressor ---------------------------------------------------------------------------------

def test_regressor_fit_predict_score():
    X, y = linear()
    reg = regressor().fit(X, y)
    pred = reg.predict(X)
    assert pred.shape == (120,) and pred.dtype == np.float32
    assert reg.score(X, y) >= 0.9
    assert reg.__sklearn_tags__().estimator_type == "regressor"


def test_regressor_multi_output():
    X, y = linear(n_outputs=2)
    calls = []
    reg = regressor(model_kwargs={**REG, "calls": calls}).fit(X, y)
    assert calls[0][1] == (120, 2)
    pred = reg.predict(X[:7])
    assert pred.shape == (7, 2) and pred.dtype == np.float64
    assert reg.score(X, y) >= 0.9
    # an (n, 1) y stays 2-D, as scikit-learn's regressors keep it
    assert regressor(fit_kwargs={"epochs": 1, **QUIET}).fit(X, y[:, :1]).predict(X[:3]).shape == (3, 1)
    assert reg.__sklearn_tags__().target_tags.multi_output


def test_regressor_int_and_object_targets():
    X, y = linear()
    reg = regressor(fit_kwargs={"epochs": 1, **QUIET})
    assert reg.fit(X, np.round(y).astype(int)).predict(X[:2]).shape == (2,)
    assert reg.fit(X.astype(object), y.astype(object)).predict(X[:2]).shape == (2,)


# ---- scikit-learn's tools ------------------------------------------------------------------------

def test_pipeline_with_scaler_and_cross_val_score():
    X, y = blobs(offset=100.0, scale=10.0)   # unscaled: the StandardScaler makes it learnable
    pipe = make_pipeline(StandardScaler(), classifier())
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() >= 0.85
    X, y = linear()
    scores = cross_val_score(make_pipeline(StandardScaler(), regressor()), X * 50 + 7, y, cv=3)
    assert scores.mean() >= 0.8


def test_grid_search_over_fit_kwargs_and_model_kwargs():
    X, y = blobs()
    base = classifier(model_kwargs={"units": 8})
    grid = GridSearchCV(base, {"fit_kwargs": [{"epochs": 1, **QUIET}, {"epochs": 40, **QUIET}]}, cv=3).fit(X, y)
    assert grid.best_params_ == {"fit_kwargs": {"epochs": 40, **QUIET}}
    assert grid.best_estimator_.epoch_ == 40 and grid.best_estimator_.model_kwargs == {"units": 8}
    assert base.fit_kwargs == {"epochs": 40, **QUIET} and not hasattr(base, "model_")
    grid = GridSearchCV(classifier(), {"model_kwargs": [{"units": 4}, {"units": 16, "lr": 0.02}]}, cv=2).fit(X, y)
    assert len(grid.cv_results_["mean_test_score"]) == 2 and grid.best_estimator_.score(X, y) >= 0.8


def test_get_params_set_params_clone_repr():
    clf = classifier(model_kwargs={"units": 8}, fit_kwargs={"epochs": 2, **QUIET})
    assert set(clf.get_params()) == {"model", "warm_start", "model_kwargs", "fit_kwargs"}
    twin = clone(clf)
    assert type(twin) is SKLearnClassifier and twin.get_params() == clf.get_params()
    assert twin.fit_kwargs is not clf.fit_kwargs and twin.model is mlp   # parameters copied, builder kept
    X, y = blobs()
    clf.fit(X, y)
    assert not hasattr(clone(clf), "model_")
    assert clf.set_params(warm_start=True, model_kwargs={"units": 4}) is clf
    assert clf.warm_start and clf.model_kwargs == {"units": 4}
    text = repr(clf)
    assert text.startswith("SKLearnClassifier(") and "warm_start=True" in text
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(units=3)

    class Tuned(SKLearnRegressor):   # a subclass with its own parameter clones with it
        def __init__(self, model, warm_start=False, model_kwargs=None, fit_kwargs=None, note="x"):
            super().__init__(model, warm_start, model_kwargs, fit_kwargs)
            self.note = note
    assert clone(Tuned(mlp, note="y")).note == "y"


def test_transformer_in_pipeline():
    X, y = linear()
    tr = SKLearnTransformer(mlp, model_kwargs=dict(REG), fit_kwargs={"epochs": 60, **QUIET})
    pipe = make_pipeline(StandardScaler(), tr, LinearRegression()).fit(X, y)
    assert pipe.predict(X[:5]).shape == (5,) and pipe.score(X, y) >= 0.9
    assert pipe.named_steps["sklearntransformer"].transform(X[:3]).shape == (3, 1)
    # an autoencoder-like transformer: trained on y=X, 2-D targets
    auto = SKLearnTransformer(mlp, model_kwargs=dict(REG), fit_kwargs={"epochs": 2, **QUIET})
    assert auto.fit_transform(X, X).shape == (120, 4)
    with pytest.raises(ValueError, match="requires y to be passed"):
        make_pipeline(StandardScaler(), auto).fit(X)


def test_metadata_routing_sample_weight():
    X, y = blobs()
    clf = classifier(fit_kwargs={"epochs": 2, **QUIET})
    with pytest.raises(RuntimeError, match="enable_metadata_routing=True"):
        clf.set_fit_request(sample_weight=True)
    with sklearn.config_context(enable_metadata_routing=True):
        clf.set_fit_request(sample_weight=True).set_score_request(sample_weight=True)
        routing = clf.get_metadata_routing()
        assert routing.fit.requests == {"sample_weight": True}
        result = cross_validate(clf, X, y, cv=2, params={"sample_weight": np.ones(len(y))})
        assert result["test_score"].shape == (2,)
    # without routing, sample_weight passed to fit goes to model.fit
    clf.fit(X, y, sample_weight=np.linspace(0, 1, len(y)))


def test_pickle_fitted_wrappers():
    X, y = blobs()
    clf = classifier(fit_kwargs={"epochs": 3, **QUIET}).fit(X, y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    np.testing.assert_allclose(back.decision_function(X), clf.decision_function(X), rtol=1e-6, atol=1e-6)
    assert back.epoch_ == 3 and back.get_params()["fit_kwargs"] == clf.fit_kwargs
    model = mlp(X, np.zeros((1, 3)))
    warm = SKLearnClassifier(model, warm_start=True, fit_kwargs={"epochs": 1, **QUIET}).fit(X, y)
    back = pickle.loads(pickle.dumps(warm))
    assert back.model_ is back.model   # one model before, one model after


# ---- warm_start ---------------------------------------------------------------------------------

def test_warm_start_false_builds_a_new_model_each_fit():
    X, y = blobs()
    calls = []
    clf = classifier(model_kwargs={"calls": calls}, fit_kwargs={"epochs": 2, **QUIET}).fit(X, y)
    first = clf.model_
    clf.fit(X, y)
    assert len(calls) == 2 and clf.model_ is not first and clf.epoch_ == 2


def test_warm_start_true_trains_on():
    X, y = blobs()
    calls = []
    clf = classifier(warm_start=True, model_kwargs={"calls": calls}, fit_kwargs={"epochs": 3, **QUIET}).fit(X, y)
    first, before = clf.model_, [w.copy() for w in clf.model_.get_weights()]
    clf.fit(X[:30], y[:30], epochs=2)   # fit's arguments win over fit_kwargs, without changing them
    assert len(calls) == 1 and clf.model_ is first
    assert clf.epoch_ == 5 and len(clf.history_["loss"]) == 5 and clf.fit_kwargs == {"epochs": 3, **QUIET}
    assert any(not np.allclose(a, b) for a, b in zip(before, clf.model_.get_weights()))
    clf.fit(X[y == "cat"], y[y == "cat"])   # labels among classes_: fine
    with pytest.raises(ValueError, match=r"labels the model has no output for, \['fox'\]"):
        clf.fit(X[:3], ["cat", "fox", "dog"])
    with pytest.raises(ValueError, match="features"):
        clf.fit(X[:, :3], y)
    # with warm_start=False the same fit rebuilds for any labels
    clf.set_params(warm_start=False).fit(X[:4], ["a", "b", "a", "b"])
    np.testing.assert_array_equal(clf.classes_, ["a", "b"])


def test_model_instance_cloned_unless_warm_start():
    X, y = blobs()
    model = mlp(X, np.zeros((1, 3)))
    weights = [w.copy() for w in model.get_weights()]
    clf = SKLearnClassifier(model, fit_kwargs={"epochs": 2, **QUIET}).fit(X, y)
    assert clf.model_ is not model and clf.model_.compiled
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))   # untouched
    warm = SKLearnClassifier(model, warm_start=True, fit_kwargs={"epochs": 2, **QUIET}).fit(X, y)
    assert warm.model_ is model
    twin = clone(warm)   # clones train their own copy, with the same weights
    assert twin.model is not model
    for a, b in zip(twin.model.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---- argument errors ----------------------------------------------------------------------------

def _fit_error(est, X, y, exc, match):
    with pytest.raises(exc, match=match):
        est.fit(X, y)


def test_argument_errors():
    X, y = blobs()
    q = {"fit_kwargs": QUIET}
    _fit_error(SKLearnClassifier(uncompiled, **q), X, y, RuntimeError, r"must be compiled .*model\.compile\(")
    _fit_error(SKLearnClassifier(returns_none, **q), X, y, TypeError, "must be a compiled lamina Model; received "
               "NoneType")
    _fit_error(SKLearnClassifier(3, **q), X, y, TypeError, "`model` must be a compiled lamina Model or a callable")
    _fit_error(SKLearnClassifier(uncompiled(X, np.zeros((1, 3))), **q), X, y, RuntimeError, "not compiled")
    _fit_error(SKLearnClassifier(mlp, model_kwargs=[("units", 3)], **q), X, y, TypeError,
               "model_kwargs must be a dict")
    _fit_error(SKLearnClassifier(mlp, model_kwargs={"y": 1}, **q), X, y, ValueError, r"must not hold \['y'\]")
    _fit_error(SKLearnClassifier(mlp(X, np.zeros((1, 3))), model_kwargs={"units": 3}, **q), X, y, ValueError,
               "Model instance")
    _fit_error(SKLearnClassifier(mlp, fit_kwargs=[1]), X, y, TypeError, "fit_kwargs must be a dict")
    _fit_error(SKLearnClassifier(mlp, fit_kwargs={"x": X, **QUIET}), X, y, ValueError, r"must not include \['x'\]")
    _fit_error(classifier(), X, np.linspace(0, 1, len(X)), ValueError, "received continuous targets.*SKLearnRegressor")
    _fit_error(classifier(), X, np.ones(len(X)), ValueError, "at least two classes.*only one class")
    _fit_error(classifier(), X, np.eye(3)[np.arange(len(X)) % 3], ValueError, "MultiOutputClassifier")
    _fit_error(classifier(), X, (y == "cat").astype(object), ValueError, "Unknown label type")
    _fit_error(regressor(), X, y, ValueError, "numeric targets.*SKLearnClassifier")
    _fit_error(regressor(), X, None, ValueError, "requires y to be passed")
    with pytest.raises(ValueError, match="Expected 2D array"):
        regressor().fit(X[:, 0], X[:, 1])
    with pytest.raises(NotFittedError):
        classifier().predict(X)
    fitted = classifier(fit_kwargs={"epochs": 1, **QUIET}).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but SKLearnClassifier is expecting 4"):
        fitted.predict(X[:, :3])
    logits = classifier(model_kwargs={"activation": None}, fit_kwargs={"epochs": 1, **QUIET}).fit(X, y)
    with pytest.raises(ValueError, match="probabilities.*softmax.*decision_function"):
        logits.predict_proba(X)
    reg = regressor(fit_kwargs={"epochs": 1, **QUIET}).fit(*linear(n_outputs=2))
    with pytest.raises(ValueError, match=r"shape \('n_samples', 2\)"):
        reg.set_params(warm_start=True).fit(*linear())


def test_wrong_model_width_is_named():
    """A classifier's model needs one output per class (the targets are one-hot); a model
    trained some other way is refused at predict."""
    X, y = blobs(labels=(0, 1))
    clf = classifier(fit_kwargs={"epochs": 1, **QUIET}).fit(X, y)
    clf.model_ = mlp(X, np.zeros((1, 5)))
    with pytest.raises(ValueError, match=r"one output per class"):
        clf.predict(X)
    reg = regressor(fit_kwargs={"epochs": 1, **QUIET}).fit(*linear())
    reg.model_ = mlp(X, np.zeros((1, 3)), **REG)
    with pytest.raises(ValueError, match="one unit per target"):
        reg.predict(X)


# ---- scikit-learn's estimator checks (as Keras's own wrapper tests) ----------------------------

class KerasStyleModel:
    """Keras's test builder (a single output given as a list of one), as a callable whose repr
    keeps the test ids stable (a function's repr holds its address)."""

    def __call__(self, X, y, loss, out_activation_function="softmax", layers=(10,)):
        inputs = lamina.Input(shape=(X.shape[1],))
        hidden = inputs
        for units in layers:
            hidden = lamina.layers.Dense(units, activation="relu")(hidden)
        out = [lamina.layers.Dense(y.shape[1] if len(y.shape) > 1 else 1, activation=out_activation_function)(hidden)]
        model = lamina.Model(inputs, out)
        model.compile(loss=loss, optimizer="rmsprop")
        return model

    def __repr__(self):
        return "keras_style_model"


NON_DETERMINISTIC = "the fit is not reproducible (random initialisation), which this check assumes"
EXPECTED_FAILED_CHECKS = {
    "SKLearnClassifier": {
        "check_classifiers_one_label_sample_weights": "a sample weight of 0 does not remove the sample's class",
        "check_classifiers_classes": "small test cases do not always predict every class",
        "check_classifier_data_not_an_array": NON_DETERMINISTIC,
        "check_supervised_y_2d": NON_DETERMINISTIC,
        "check_fit_idempotent": NON_DETERMINISTIC,
        "check_classifiers_train": "decision_function gives probabilities or logits, one column per class",
        "check_decision_proba_consistency": "decision_function has one column per class, binary too (Keras's)",
    },
}


@parametrize_with_checks(
    [SKLearnClassifier(KerasStyleModel(), model_kwargs={"loss": "categorical_crossentropy", "layers": [20, 20, 20]},
                       fit_kwargs={"epochs": 5, **QUIET}),
     SKLearnRegressor(KerasStyleModel(), model_kwargs={"loss": "mse"}, fit_kwargs=QUIET),
     SKLearnTransformer(KerasStyleModel(), model_kwargs={"loss": "mse"}, fit_kwargs=QUIET)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS.get(type(est).__name__, {}))
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---- scikit-learn stays optional ----------------------------------------------------------------

def _fresh(code):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_lamina_does_not_import_sklearn():
    got = _fresh("import json, sys, lamina\n"
                 "before = 'sklearn' in sys.modules\n"
                 "cls = lamina.wrappers.SKLearnClassifier\n"
                 "print(json.dumps([before, 'sklearn' in sys.modules, cls.__module__, "
                 "sorted(lamina.wrappers.__all__)]))")
    assert got == [False, True, "lamina.wrappers", ["SKLearnClassifier", "SKLearnRegressor", "SKLearnTransformer"]]


def test_without_sklearn_the_classes_exist_and_construction_says_how_to_install():
    got = _fresh("import json, sys\n"
                 "sys.modules['sklearn'] = None   # import sklearn now raises ImportError\n"
                 "import lamina\n"
                 "names = [n for n in ('SKLearnClassifier', 'SKLearnRegressor', 'SKLearnTransformer') "
                 "if isinstance(getattr(lamina.wrappers, n), type)]\n"
                 "try:\n"
                 "    lamina.wrappers.SKLearnRegressor(model=None)\n"
                 "    msg = None\n"
                 "except ImportError as e:\n"
                 "    msg = str(e)\n"
                 "print(json.dumps([names, msg]))")
    assert len(got[0]) == 3
    assert "SKLearnRegressor" in got[1] and "pip install scikit-learn" in got[1]


# ---- against Keras ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras():
    k = keras_or_none()
    if k is None:
        pytest.skip("compared against keras.wrappers (tested with KERAS_BACKEND=jax)")
    return k


def _pair(keras, name, **kwargs):
    """The same wrapper in lamina and in Keras, on the same builder."""
    theirs = getattr(keras.wrappers, name)
    ours = getattr(lamina.wrappers, name)
    mk = dict(kwargs.pop("model_kwargs", {}))
    return (ours(mlp, model_kwargs=mk, **kwargs),
            theirs(mlp, model_kwargs={**mk, "lib": keras}, **kwargs))


def test_same_names_signatures_and_params_as_keras(keras):
    for name in ("SKLearnClassifier", "SKLearnRegressor", "SKLearnTransformer"):
        ours, theirs = getattr(lamina.wrappers, name), getattr(keras.wrappers, name)
        assert str(inspect.signature(ours.__init__)) == str(inspect.signature(theirs.__init__))
        public = {n for n in dir(theirs) if not n.startswith("_")}
        assert public <= set(dir(ours)), public - set(dir(ours))
        a, b = _pair(keras, name)
        assert a.get_params().keys() == b.get_params().keys()
        ta, tb = a.__sklearn_tags__(), b.__sklearn_tags__()
        assert (ta.estimator_type, ta.non_deterministic, ta.requires_fit) == \
               (tb.estimator_type, tb.non_deterministic, tb.requires_fit)
        for part in ("classifier_tags", "regressor_tags"):
            assert (getattr(ta, part) is None) == (getattr(tb, part) is None)
            if getattr(ta, part) is not None:
                assert getattr(ta, part).poor_score == getattr(tb, part).poor_score
        if ta.transformer_tags is not None:
            assert ta.transformer_tags.preserves_dtype == tb.transformer_tags.preserves_dtype


@pytest.mark.parametrize("labels", [("cat", "dog", "eel"), (7, 3), (0.0, 1.0, 2.0, 5.0), (True, False)])
def test_classifier_outputs_like_keras(keras, labels):
    X, y = blobs(labels=labels, per_class=10)
    ours, theirs = _pair(keras, "SKLearnClassifier", fit_kwargs={"epochs": 1, **QUIET})
    ours.fit(X, y)
    theirs.fit(X, y)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    assert ours.classes_.dtype == theirs.classes_.dtype
    a, b = ours.predict(X[:6]), theirs.predict(X[:6])
    assert a.shape == b.shape and a.dtype == b.dtype and set(a) <= set(y)
    assert ours.decision_function(X[:6]).shape == theirs.decision_function(X[:6]).shape
    assert ours.n_features_in_ == theirs.n_features_in_


def test_regressor_and_transformer_outputs_like_keras(keras):
    X, y = linear(n=40)
    ours, theirs = _pair(keras, "SKLearnRegressor", model_kwargs=REG, fit_kwargs={"epochs": 1, **QUIET})
    a, b = ours.fit(X, y).predict(X[:5]), theirs.fit(X, y).predict(X[:5])
    assert a.shape == b.shape == (5,) and a.dtype == b.dtype
    ours, theirs = _pair(keras, "SKLearnTransformer", model_kwargs=REG, fit_kwargs={"epochs": 1, **QUIET})
    a, b = ours.fit(X, y).transform(X[:5]), theirs.fit(X, y).transform(X[:5])
    assert a.shape == b.shape == (5, 1) and a.dtype == b.dtype


def _error_type(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return type(e)
    return None


def test_errors_like_keras(keras):
    X, y = blobs(per_class=10)
    cases = {
        "one class": lambda est: est.fit(X, np.zeros(len(X), int)),
        "continuous": lambda est: est.fit(X, np.linspace(0, 1, len(X))),
        "multilabel": lambda est: est.fit(X, np.eye(3)[np.arange(len(X)) % 3]),
        "not fitted": lambda est: est.predict(X),
        "object labels": lambda est: est.fit(X, (y == "cat").astype(object)),
    }
    for what, case in cases.items():
        ours, theirs = _pair(keras, "SKLearnClassifier", fit_kwargs={"epochs": 1, **QUIET})
        a, b = _error_type(lambda: case(ours)), _error_type(lambda: case(theirs))
        assert a is not None and b is not None and (issubclass(a, b) or issubclass(b, a)), (what, a, b)
    ours, theirs = _pair(keras, "SKLearnClassifier", fit_kwargs={"epochs": 1, **QUIET})
    ours.fit(X, y)
    theirs.fit(X, y)
    assert _error_type(lambda: ours.predict(X[:, :3])) is _error_type(lambda: theirs.predict(X[:, :3])) is ValueError
    a = _error_type(lambda: SKLearnClassifier(uncompiled, fit_kwargs=QUIET).fit(X, y))
    b = _error_type(lambda: keras.wrappers.SKLearnClassifier(uncompiled, model_kwargs={"lib": keras},
                                                              fit_kwargs=QUIET).fit(X, y))
    assert a is b is RuntimeError
