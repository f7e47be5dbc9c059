"""`lamina.wrappers`, as `keras.wrappers`: scikit-learn estimators around lamina models.

    from lamina.wrappers import SKLearnClassifier

    def build(X, y, units=16):            # called at each fit with the (encoded) training data
        inputs = lamina.Input(shape=(X.shape[1],))
        hidden = lamina.layers.Dense(units, activation="relu")(inputs)
        outputs = lamina.layers.Dense(y.shape[1], activation="softmax")(hidden)
        model = lamina.Model(inputs, outputs)
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        return model

    clf = SKLearnClassifier(build, model_kwargs={"units": 32}, fit_kwargs={"epochs": 20, "verbose": 0})
    clf.fit(X, y).score(X_test, y_test)   # and Pipeline, GridSearchCV, cross_val_score, clone...

`SKLearnClassifier`, `SKLearnRegressor` and `SKLearnTransformer` take Keras's arguments
(`model`, `warm_start`, `model_kwargs`, `fit_kwargs`). `model` is a compiled lamina Model, or a
callable `model(X=X, y=y, **model_kwargs)` that builds and compiles one; each fit trains a new
model (a callable is called again; a Model is copied by `clone_model`, freshly initialised and
compiled like the original) and keeps it as `model_`, unless `warm_start=True`. The classifier
one-hot encodes the labels (any labels: ints, strings, ...; `classes_` holds them sorted), so
its model ends with one output per class; `predict` gives back the labels.

scikit-learn is not a dependency of lamina: it is imported when one of these classes is first
used (`lamina.wrappers.SKLearnClassifier`, not `import lamina`), and constructing a wrapper
without it raises an ImportError that says to `pip install scikit-learn`. The classes derive
from scikit-learn's BaseEstimator and mixins, as Keras's do, so get_params/set_params, clone,
repr, tags and metadata routing are scikit-learn's own.

Where lamina differs from Keras 3.15's wrappers (whose code does not do what its docs say):
- `warm_start=True` works as documented: a fitted wrapper's next fit continues training
  `model_` (same features, labels among `classes_`), and a Model given as `model` is trained
  itself rather than a copy. Keras rebuilds the model at every fit whatever `warm_start` says.
- `history_` is the dict of per-epoch logs (`{"loss": [...], ...}`, extended by warm-start
  fits) and `epoch_` the number of epochs `model_` was trained; Keras keeps the History object,
  on which its `epoch_` raises AttributeError.
- `fit(X, y, **kwargs)` does not write `kwargs` into `fit_kwargs` (Keras's `update` does, so one
  call's epochs stick), and `clone` keeps `fit_kwargs` (Keras's `__sklearn_clone__` drops it).
- `SKLearnRegressor` and `SKLearnTransformer` take 2-D targets (several outputs), kept 2-D by
  `predict` (float64 then, scikit-learn's contract for multi-output regressors); Keras refuses
  them ("y should be a 1d array") and flattens an (n, 1) y. 1-D targets are as in Keras.
- X of ints, bools or objects becomes float32 (lamina's layers compute in floats; Keras's
  layers cast), float32 and float64 X are passed as they are.
- Fitted wrappers pickle (joblib.dump): lamina Models do not pickle, so the wrapper writes its
  models as their '.keras' files (Keras's Models pickle that way themselves).
- `SKLearnClassifier.predict_proba` returns the model's outputs when they are probabilities
  (softmax rows), checked; Keras's classifier has no predict_proba. `validation_data=(X, y)`
  in the fit arguments has its y encoded like the training targets.
- `predict`, `predict_proba`, `decision_function` and `transform` show no progress bar.
- `set_fit_request` records fit requests (Keras's writes them under `score`).
- Errors say what was expected, what was received and how to fix it (a model that is not
  compiled, a builder that returns no Model, labels for a regressor, continuous or multilabel
  targets for a classifier, a model whose outputs do not match the targets, ...)."""
import copy
import os
import tempfile

import numpy as np

from .models.cloning import clone_model
from .models.model import Model

__all__ = ["SKLearnClassifier", "SKLearnRegressor", "SKLearnTransformer"]


def __getattr__(name):
    # the classes derive from scikit-learn's: they are made on first use, so that `import lamina`
    # does not import scikit-learn (nor need it)
    if name in __all__:
        _build_classes()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def _sklearn_available():
    try:
        import sklearn.base  # noqa: F401
    except ImportError:
        return False
    return True


def _require_sklearn(name):
    if not _sklearn_available():
        raise ImportError(f"lamina.wrappers.{name} needs scikit-learn, which is not installed (lamina does not "
                          "depend on it). Install it with `pip install scikit-learn`, then start Python again.")


def _routing_enabled():
    import sklearn
    return bool(sklearn.get_config().get("enable_metadata_routing", False))


def _validate_data(estimator, X, y=None, reset=True, **check_params):
    """scikit-learn's input validation (2-D numeric X, y of as many rows, n_features_in_ and
    feature_names_in_ recorded when `reset`, checked against them otherwise). X becomes float32
    unless it is float32 or float64 already: lamina's layers compute in floats (an Embedding
    takes float ids too)."""
    check_params.setdefault("dtype", [np.float32, np.float64])
    try:
        from sklearn.utils.validation import validate_data   # scikit-learn >= 1.6
    except ImportError:
        validate_data = type(estimator)._validate_data
    if y is None:
        return validate_data(estimator, X, reset=reset, **check_params)
    return validate_data(estimator, X, y, reset=reset, **check_params)


def _check_is_fitted(estimator):
    from sklearn.utils.validation import check_is_fitted
    check_is_fitted(estimator, "model_")


def _single_output(outputs, owner, method):
    """The one array a model's predict gave: a model with one output in a list or dict gives
    that output; several outputs are refused (a scikit-learn estimator returns one array)."""
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        if len(outputs) != 1:
            raise ValueError(f"{owner}.{method} expects a model with one output (an array per sample batch); "
                             f"model_ has {len(outputs)} outputs. Build a model with a single output, e.g. "
                             "by concatenating the outputs (lamina.layers.Concatenate).")
        outputs = outputs[0]
    return np.asarray(outputs)


def _check_compiled(model, owner, origin):
    """A built model must be a compiled lamina Model with a loss and an optimizer (as Keras's
    `_check_model`)."""
    if not isinstance(model, Model):
        raise TypeError(f"{owner}: {origin} must be a compiled lamina Model; received {type(model).__name__} "
                        f"({model!r:.80}). The model callable must build, compile and return a lamina Model.")
    compiled = getattr(model, "_compiled", None)
    if not model.compiled or model.optimizer is None or compiled is None or compiled.loss is None:
        raise RuntimeError(f"{owner}: {origin} (model '{model.name}') must be compiled with a loss and an "
                           f"optimizer before it is trained; received a model that is "
                           f"{'compiled without a loss' if model.compiled else 'not compiled'}. Call "
                           "model.compile(optimizer=..., loss=...) where the model is built.")


def _copy_model(model):
    """A compiled copy of `model` with the same weights (lamina Models cannot be deep-copied:
    their tensors live in the backend's buffers). When the model cannot be cloned (a subclassed
    model without get_config), the model itself."""
    try:
        twin = clone_model(model)
        if model.built and model.weights:
            twin.set_weights(model.get_weights())
    except Exception:  # noqa: BLE001 -- cannot be copied: shared, as Keras always shares it
        return model
    return twin


class _SavedModel:
    """A lamina Model in a pickled wrapper: its '.keras' file, as bytes."""

    def __init__(self, model):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.keras")
            model.save(path)
            with open(path, "rb") as f:
                self.data = f.read()

    def load(self):
        if hasattr(self, "model"):   # `model` and `model_` were one Model (warm_start): still one
            return self.model
        from .saving import load_model
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.keras")
            with open(path, "wb") as f:
                f.write(self.data)
            # unpickling runs code whatever one does: saved lambdas load, as Keras's pickled models do
            self.model = load_model(path, safe_mode=False)
        return self.model


def _copy_param(value):
    """scikit-learn's clone of a parameter that is not an estimator: a deep copy. A value
    that cannot be deep-copied (fit_kwargs holding a callback bound to a lamina model) keeps
    its entries, in a new dict."""
    from sklearn.base import clone
    try:
        return clone(value, safe=False)
    except Exception:  # noqa: BLE001
        return copy.copy(value)


class _WrapperBase:
    """What the three wrappers share: building the model, fit, predict, clone, tags."""

    def __init__(self, model, warm_start=False, model_kwargs=None, fit_kwargs=None):
        _require_sklearn(type(self).__name__)
        self.model = model
        self.warm_start = warm_start
        self.model_kwargs = model_kwargs
        self.fit_kwargs = fit_kwargs

    # -- scikit-learn protocol --
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        return tags

    def _more_tags(self):   # scikit-learn < 1.6
        return {"non_deterministic": True}

    def __sklearn_clone__(self):
        """An unfitted wrapper with the same parameters: `model` kept (a callable, or a Model that
        each fit copies anyway; with `warm_start`, a Model is copied, so that the clones do not
        train one model together), the other parameters deep-copied, as scikit-learn does."""
        params = self.get_params(deep=False)
        model = params.pop("model")
        if isinstance(model, Model) and self.warm_start:
            model = _copy_model(model)
        return type(self)(model=model, **{k: _copy_param(v) for k, v in params.items()})

    def set_fit_request(self, **kwargs):
        """Which metadata (e.g. `sample_weight=True`) meta-estimators route to `fit`, with
        scikit-learn's metadata routing (`sklearn.set_config(enable_metadata_routing=True)`):
        `param=alias`, alias True, False, None or a str. Returns self."""
        if not _routing_enabled():
            raise RuntimeError(f"{type(self).__name__}.set_fit_request needs scikit-learn's metadata routing, which "
                               "is off. Turn it on with sklearn.set_config(enable_metadata_routing=True) first.")
        requests = self._get_metadata_request()
        for param, alias in kwargs.items():
            requests.fit.add_request(param=param, alias=alias)
        self._metadata_request = requests
        return self

    def __getstate__(self):
        # lamina Models do not pickle (their tensors are the backend's buffers): they travel as
        # their '.keras' file, as Keras's pickled models do
        state, saved = dict(super().__getstate__()), {}
        for key, value in state.items():
            if isinstance(value, Model):
                state[key] = saved[id(value)] = saved.get(id(value)) or _SavedModel(value)
        return state

    def __setstate__(self, state):
        super().__setstate__({k: v.load() if isinstance(v, _SavedModel) else v for k, v in state.items()})

    @property
    def epoch_(self):
        """How many epochs `model_` was trained for (0 before fit)."""
        return getattr(self, "_epochs", 0)

    # -- fit --
    def _get_model(self, X, y):
        name = type(self).__name__
        kwargs = self.model_kwargs
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"{name}: model_kwargs must be a dict of keyword arguments for the model callable, or "
                            f"None; received {type(kwargs).__name__} ({kwargs!r:.80})")
        if isinstance(self.model, Model):
            if kwargs:
                raise ValueError(f"{name}: model_kwargs {sorted(kwargs)} are passed to the model callable, but "
                                 f"`model` is a Model instance ('{self.model.name}'), which takes no arguments. "
                                 "Pass a function that builds the model from them, or drop model_kwargs.")
            model = self.model if self.warm_start else clone_model(self.model)
            origin = "`model`"
        elif callable(self.model):
            kwargs = kwargs or {}
            taken = sorted({"X", "y"} & set(kwargs))
            if taken:
                raise ValueError(f"{name}: model_kwargs must not hold {taken}: the wrapper calls "
                                 "model(X=X, y=y, **model_kwargs) with the training data itself. Rename the "
                                 "argument(s) of your model function.")
            model = self.model(X=X, y=y, **kwargs)
            origin = f"what {getattr(self.model, '__name__', 'the model callable')}(X=X, y=y, ...) returned"
        else:
            raise TypeError(f"{name}: `model` must be a compiled lamina Model or a callable "
                            f"model(X=X, y=y, **model_kwargs) that builds and compiles one; received "
                            f"{type(self.model).__name__} ({self.model!r:.80})")
        _check_compiled(model, name, origin)
        return model

    def _fit_kwargs(self, kwargs):
        base = self.fit_kwargs
        if base is not None and not isinstance(base, dict):
            raise TypeError(f"{type(self).__name__}: fit_kwargs must be a dict of keyword arguments for "
                            f"model.fit, or None; received {type(base).__name__} ({base!r:.80})")
        merged = {**(base or {}), **kwargs}   # fit()'s own arguments win, fit_kwargs is left as it is
        taken = sorted({"x", "y"} & set(merged))
        if taken:
            raise ValueError(f"{type(self).__name__}: the arguments of model.fit must not include {taken}: "
                             "fit(X, y) passes the data. Drop them from fit_kwargs / fit's keyword arguments.")
        val = merged.get("validation_data")
        if isinstance(val, (list, tuple)) and len(val) in (2, 3):
            val_x = _validate_data(self, val[0], reset=False)
            merged["validation_data"] = (val_x, self._process_target(np.asarray(val[1]), reset=False), *val[2:])
        return merged

    def fit(self, X, y=None, **kwargs):
        """Trains the model on `X` (n_samples, n_features) and `y` (n_samples,) or (n_samples,
        n_outputs). `kwargs` go to `model.fit` and take precedence over `fit_kwargs`. With
        `warm_start=True` and a fitted wrapper, `model_` trains on; otherwise a new model is
        built (`model(X=X, y=y, **model_kwargs)`) or the given Model copied. Returns self."""
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None: fit "
                             "trains the model on targets y. Pass them (y=X for an autoencoder-like transformer).")
        warm = bool(self.warm_start) and hasattr(self, "model_")
        self._check_target_shape(y)
        X, y = _validate_data(self, X, y, reset=not warm, **self._target_check_params())
        y = self._process_target(y, reset=not warm)
        model = self.model_ if warm else self._get_model(X, y)
        history = model.fit(X, y, **self._fit_kwargs(kwargs))
        logs = getattr(history, "history", None) or {}
        if warm:
            for key, values in logs.items():
                self.history_.setdefault(key, []).extend(values)
            self._epochs += len(getattr(history, "epoch", []))
        else:
            self.history_ = {key: list(values) for key, values in logs.items()}
            self._epochs = len(getattr(history, "epoch", []))
        self.model_ = model
        return self

    # -- predict --
    def _model_outputs(self, X, method):
        _check_is_fitted(self)
        X = _validate_data(self, X, reset=False)
        return _single_output(self.model_.predict(X, verbose=0), type(self).__name__, method)

    def predict(self, X):
        """The model's predictions for `X`, as targets (the shape of the y it was fitted on)."""
        return self._reverse_process_target(self._model_outputs(X, "predict"))

    # -- targets: regressors and transformers train on y as it is (2-D for the model) --
    def _target_check_params(self):
        return {"multi_output": True}

    def _check_target_shape(self, y):
        pass

    def _process_target(self, y, reset=False):
        y = np.asarray(y)
        if y.dtype.kind == "O":
            try:
                y = y.astype(np.float64)
            except (TypeError, ValueError):
                pass
        if y.dtype.kind not in "biuf":
            raise ValueError(f"{type(self).__name__} trains on numeric targets; received y of dtype {y.dtype}, e.g. "
                             f"{y.ravel()[:3].tolist()} (Unknown label type: not numbers). Convert the targets to "
                             "numbers"
                             f"{', or use SKLearnClassifier for class labels' if y.dtype.kind in 'OUS' else ''}.")
        if reset:
            self._target_shape = y.shape[1:]
        elif y.shape[1:] != self._target_shape:
            raise ValueError(f"{type(self).__name__}: y has shape {y.shape}, but the model was fitted on targets of "
                             f"shape {('n_samples',) + self._target_shape}. Pass targets of the same shape.")
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def _reverse_process_target(self, outputs):
        return outputs


class _RegressorMethods:
    def _reverse_process_target(self, outputs):
        want = self._target_shape
        width = int(np.prod(want, dtype=int)) if want else 1
        if outputs.ndim < 1 or outputs.reshape(len(outputs), -1).shape[1] != width:
            raise ValueError(f"{type(self).__name__}.predict: the model outputs {outputs.shape[1:]} per sample, but "
                             f"it was fitted on targets with {want or 'one value'} per sample. End the model with "
                             "a layer of one unit per target, e.g. Dense(y.shape[1] if y.ndim > 1 else 1).")
        if want:   # several outputs (which Keras does not take): float64, as scikit-learn's regressors give
            return outputs.reshape((len(outputs),) + tuple(want)).astype(np.float64)
        return outputs.reshape(len(outputs))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):   # scikit-learn < 1.6
        return {"poor_score": True, "multioutput": True}


class _TransformerMethods:
    def transform(self, X):
        """The model's outputs for `X` (n_samples, n_features): the transformed data."""
        return self._model_outputs(X, "transform")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):   # scikit-learn < 1.6
        return {"preserves_dtype": [], "requires_y": True, "multioutput": True}


class _ClassifierMethods:
    def _target_check_params(self):
        return {}

    def _check_target_shape(self, y):
        shape = np.shape(y)
        if len(shape) > 1 and int(np.prod(shape[1:], dtype=int)) > 1:
            raise ValueError(f"{type(self).__name__} takes one label per sample (binary or multiclass targets, "
                             f"y of shape (n_samples,)); received y of shape {shape} (multilabel or multi-output "
                             "targets). Fit one classifier per column (sklearn.multioutput.MultiOutputClassifier), "
                             "or use SKLearnRegressor on indicator columns.")

    def _process_target(self, y, reset=False):
        """The labels, one-hot encoded over `classes_` (float64, one column per class)."""
        from sklearn.utils.multiclass import type_of_target
        y = np.asarray(y)
        name = type(self).__name__
        kind = type_of_target(y, input_name="y")
        if kind not in ("binary", "multiclass"):
            hint = "Use SKLearnRegressor for continuous targets, or" if kind.startswith("continuous") else "Pass"
            what = "targets of a type scikit-learn cannot tell (Unknown label type)" if kind == "unknown" \
                else f"{kind} targets"
            raise ValueError(f"{name} takes binary or multiclass targets (class labels: ints, strings, ...); "
                             f"received {what}, e.g. {y.ravel()[:3].tolist()} (dtype {y.dtype}). {hint} one "
                             "class label per sample (an array of ints or strings).")
        if reset:
            classes = np.unique(y)
            if len(classes) < 2:
                raise ValueError(f"{name} needs at least two classes to train; y holds only one class, "
                                 f"{classes[0].tolist()!r}. Pass samples of every class.")
            self.classes_ = classes
        index = np.searchsorted(self.classes_, y)
        known = index < len(self.classes_)
        known[known] = self.classes_[index[known]] == y[known]
        if not known.all():
            unseen = np.unique(y[~known]).tolist()
            raise ValueError(f"{name}: y holds labels the model has no output for, {unseen[:10]}; the model was "
                             f"fitted on classes_ {self.classes_.tolist()[:20]}. With warm_start=True the labels "
                             "must be among them (or set warm_start=False to build a new model for all labels).")
        return np.eye(len(self.classes_), dtype=np.float64)[index]

    def _check_width(self, outputs, method):
        n = len(self.classes_)
        if outputs.ndim != 2 or outputs.shape[1] != n:
            raise ValueError(f"{type(self).__name__}.{method}: the model outputs {outputs.shape[1:]} per sample, but "
                             f"the labels are one-hot encoded over {n} classes ({self.classes_.tolist()[:20]}), so "
                             f"it needs one output per class. End the model with Dense(y.shape[1], "
                             "activation='softmax') (y is the one-hot y the model callable receives).")

    def _reverse_process_target(self, outputs):
        self._check_width(outputs, "predict")
        return self.classes_[np.argmax(outputs, axis=1)]

    def decision_function(self, X):
        """The model's raw outputs for `X`, one column per class of `classes_`."""
        return self._model_outputs(X, "decision_function")

    def predict_proba(self, X):
        """Class probabilities for `X`, one column per class of `classes_`: the model's outputs,
        which must be probabilities (a softmax output)."""
        outputs = self._model_outputs(X, "predict_proba")
        self._check_width(outputs, "predict_proba")
        sums = outputs.sum(axis=1, dtype=np.float64)
        if outputs.size and (outputs.min() < 0 or outputs.max() > 1 or not np.allclose(sums, 1, atol=1e-3)):
            raise ValueError(f"{type(self).__name__}.predict_proba needs a model whose outputs are class "
                             f"probabilities (each row >= 0, summing to 1); received outputs from "
                             f"{float(outputs.min()):.3g} to {float(outputs.max()):.3g} with row sums from "
                             f"{float(sums.min()):.3g} to {float(sums.max()):.3g}. End the model with a softmax "
                             "activation, or use decision_function for raw scores.")
        return (outputs / sums[:, None]).astype(outputs.dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True
        return tags

    def _more_tags(self):   # scikit-learn < 1.6
        return {"poor_score": True}


_ARGS_DOC = """
    Args:
        model: a compiled lamina `Model`, or a callable returning one. A Model is copied with
            `lamina.models.clone_model` (new weights, compiled the same way) at each fit,
            unless `warm_start=True`. A callable is called as `model(X=X, y=y,
            **model_kwargs)` with the training data (validated, y encoded as the model sees
            it{y_note}) and must build, compile and return the model.
        warm_start: bool, defaults to `False`. With `True`, a fitted wrapper's next `fit`
            trains `model_` on (from its current weights), and a Model given as `model` is
            trained itself, not a copy.
        model_kwargs: dict, defaults to `None`. Keyword arguments for `model`, when callable.
        fit_kwargs: dict, defaults to `None`. Keyword arguments for `model.fit` (epochs,
            batch_size, callbacks, verbose, ...). Those passed to `fit` take precedence.

    Attributes:
        model_: the fitted lamina `Model`.
        history_: dict, the per-epoch logs of the training (`{{"loss": [...], ...}}`).
        epoch_: int, the number of epochs `model_` was trained for.
        n_features_in_: int, the number of features of X.{extra}

    There are sources of randomness in initialisation and training; seed them with
    `lamina.utils.set_random_seed` for repeatable fits. scikit-learn is needed (not a
    dependency of lamina: `pip install scikit-learn`).
"""

_DOCS = {
    "SKLearnClassifier": "scikit-learn classifier around a lamina model, as `keras.wrappers.SKLearnClassifier`.\n\n"
                         "    The labels (ints, strings, any sortable values; binary or multiclass) are one-hot "
                         "encoded\n    over `classes_`, so the model needs one output per class (e.g. "
                         "`Dense(y.shape[1],\n    activation=\"softmax\")` with a categorical_crossentropy "
                         "loss); `predict` returns the\n    labels of the largest outputs, `predict_proba` the "
                         "outputs when they are probabilities,\n    `decision_function` the raw outputs, and "
                         "`score` the accuracy.\n" + _ARGS_DOC.format(
                             y_note=": one-hot, shape (n_samples, n_classes)",
                             extra="\n        classes_: array, the class labels, sorted."),
    "SKLearnRegressor": "scikit-learn regressor around a lamina model, as `keras.wrappers.SKLearnRegressor`.\n\n"
                        "    y is (n_samples,) (the model gets it as (n_samples, 1)) or (n_samples, n_outputs); "
                        "`predict`\n    returns the shape of the y it was fitted on and `score` the "
                        "coefficient of determination R^2.\n" + _ARGS_DOC.format(
                            y_note=": 2-D, (n_samples, 1) for a 1-D y", extra=""),
    "SKLearnTransformer": "scikit-learn transformer around a lamina model, as `keras.wrappers.SKLearnTransformer`"
                          " (a\n    transformer in scikit-learn's sense: `transform(X)` returns the model's "
                          "outputs, e.g. an\n    embedding, for the next step of a Pipeline). `fit(X, y)` trains "
                          "the model on targets y\n    ((n_samples,) or (n_samples, n_outputs); y=X for an "
                          "autoencoder).\n" + _ARGS_DOC.format(
                              y_note=": 2-D, (n_samples, 1) for a 1-D y", extra=""),
}


def _build_classes():
    """Makes SKLearnClassifier, SKLearnRegressor and SKLearnTransformer on scikit-learn's
    BaseEstimator and mixins; without scikit-learn, on empty stand-ins, so that the names exist
    and constructing one raises the ImportError that says how to install it."""
    if "SKLearnClassifier" in globals():
        return
    if _sklearn_available():
        from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
    else:
        BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin = (
            type(n, (), {"__module__": __name__}) for n in ("BaseEstimator", "ClassifierMixin", "RegressorMixin",
                                                           "TransformerMixin"))
    made = {
        "SKLearnClassifier": (_ClassifierMethods, ClassifierMixin, _WrapperBase, BaseEstimator),
        "SKLearnRegressor": (_RegressorMethods, RegressorMixin, _WrapperBase, BaseEstimator),
        "SKLearnTransformer": (_TransformerMethods, TransformerMixin, _WrapperBase, BaseEstimator),
    }
    for name, bases in made.items():
        globals()[name] = type(name, bases, {"__module__": __name__, "__qualname__": name, "__doc__": _DOCS[name]})

