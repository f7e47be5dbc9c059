"""Metrics as `keras.metrics`: stateful objects (`update_state`, `result`, `reset_state`) and
the plain functions behind them. "accuracy" is resolved from the shapes, as Keras does."""
import numpy as np

from . import initializers as _initializers
from . import losses as _losses
from . import ops
from .backend import dtypes as _dtypes
from .backend.device import _scope as _device_scope
from .backend.settings import epsilon
from .backend.tensor import Tensor, Variable, convert_to_tensor


def _t(x):
    return x if isinstance(x, Tensor) else convert_to_tensor(x)


def _f(x):
    x = _t(x)
    return x if x.dtype == "float32" else ops.cast(x, "float32")


def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_pred = _t(y_pred)
    y_true = ops.cast(_t(y_true), "float32")
    if y_true.shape != y_pred.shape and y_true.size == y_pred.size:
        y_true = ops.reshape(y_true, y_pred.shape)
    pred = ops.cast(ops.greater(y_pred, threshold), "float32")
    return ops.mean(ops.cast(ops.equal(pred, y_true), "float32"), axis=-1)


def categorical_accuracy(y_true, y_pred):
    y_true, y_pred = _t(y_true), _t(y_pred)
    return ops.cast(ops.equal(ops.argmax(y_true, axis=-1), ops.argmax(y_pred, axis=-1)), "float32")


def sparse_categorical_accuracy(y_true, y_pred):
    y_true, y_pred = _t(y_true), _t(y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = ops.reshape(y_true, y_true.shape[:-1])
    labels = ops.cast(y_true, "int64")
    return ops.cast(ops.equal(labels, ops.argmax(y_pred, axis=-1)), "float32")


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    return sparse_top_k_categorical_accuracy(ops.argmax(_t(y_true), axis=-1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    """1 where the label is among the k best scores of y_pred (ties count for the label); with
    `from_sorted_ids`, y_pred holds class ids sorted from the best (ops.top_k's indices) and the
    label must be among its first k."""
    y_true, y_pred = _t(y_true), _t(y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = ops.reshape(y_true, y_true.shape[:-1])
    if from_sorted_ids:
        ids = ops.cast(y_pred[..., :k], "int64")
        return ops.cast(ops.any(ops.equal(ops.expand_dims(ops.cast(y_true, "int64"), -1), ids), axis=-1), "float32")
    labels = ops.cast(y_true, "int64")
    # the label is in the top k when fewer than k scores beat it (ties count for the label)
    score = ops.take_along_axis(y_pred, ops.expand_dims(labels, -1), axis=-1)
    better = ops.sum(ops.cast(ops.greater(y_pred, score), "int32"), axis=-1)
    return ops.cast(ops.less(better, k), "float32")


mean_squared_error = mse = _losses.mean_squared_error
mean_absolute_error = mae = _losses.mean_absolute_error


class Metric:
    """Base class of stateful metrics, as Keras's: state lives in variables made with
    `add_variable` (on the device, so training reads nothing back per step); `update_state`
    changes them with `assign`/`assign_add`, `result()` reads them, `reset_state()` puts them
    back to their initial values.

        class BinaryTruePositives(lamina.metrics.Metric):
            def __init__(self, name="binary_true_positives", **kwargs):
                super().__init__(name=name, **kwargs)
                self.true_positives = self.add_variable(shape=(), initializer="zeros", name="tp")

            def update_state(self, y_true, y_pred, sample_weight=None):
                ...
                self.true_positives.assign_add(ops.sum(values))

            def result(self):
                return self.true_positives
    """

    def __init__(self, name=None, dtype=None):
        self.name = name or _losses._snake(type(self).__name__)
        self._dtype = _standardize_dtype(dtype)
        self._variables = []
        self._initial_values = []
        self._placed = False  # a variable was made inside `with lamina.device(d):` (see _follow)
        self._followed = False  # _follow has been called

    @property
    def dtype(self):
        return self._dtype

    @property
    def variables(self):
        return list(self._variables)

    def add_variable(self, shape=(), initializer="zeros", dtype=None, aggregation="sum", name=None):
        """A non-trainable variable holding part of the metric's state."""
        if not hasattr(self, "_variables"):
            raise RuntimeError(f"{type(self).__name__}: call super().__init__(name=name, **kwargs) in __init__ "
                               "before add_variable")
        shape = tuple(int(d) for d in (shape or ()))
        dtype = _standardize_dtype(dtype or self._dtype)
        value = _initializers.get(initializer if initializer is not None else "zeros")(shape, dtype=dtype)
        v = Variable(value, dtype=dtype, trainable=False, name=name or f"{self.name}_variable_{len(self._variables)}")
        self._placed = self._placed or bool(_device_scope.stack)
        self._variables.append(v)
        self._initial_values.append(convert_to_tensor(v.numpy(), device=v.device))  # a copy: reset_state writes it back
        return v

    def add_weight(self, shape=(), initializer=None, dtype=None, name=None, **kwargs):
        """The older name of `add_variable`."""
        return self.add_variable(shape=shape, initializer=initializer, dtype=dtype, name=name)

    def reset_state(self):
        """Every variable back to its initial value."""
        for v, init in zip(self._variables, self._initial_values):
            v.assign(init)

    def _follow(self, device):
        """Moves the state to `device` (where the values it measures are) at the first update the
        trainer makes, for a metric of lamina's own made outside any `with lamina.device(d):`:
        compile()'s metrics and loss trackers of a model on a GPU then keep their totals there,
        and a training step's update reads nothing back to the host. Only then: a replayed step
        (models/replay.py) holds the buffers it updated. A metric placed by a device scope, or a
        subclass written elsewhere (whose update may make tensors of its own), stays where it was
        made. The move goes through host memory, so a step recorded while it happens is not
        replayed (it reads a value back)."""
        if getattr(self, "_followed", True):
            return
        self._followed = True
        vs = self._variables
        if not vs or vs[0].device is device or self._placed or not type(self).__module__.startswith("lamina."):
            return
        for t in vs + self._initial_values:
            moved = convert_to_tensor(t.numpy(), t.dtype, device)
            t._buf, t.device = moved._buf, device

    def _replays_with_step(self):
        """Whether this metric's update may run inside a replayed training step (its Python run
        only while the step is recorded): lamina's own metrics, whose updates issue the same
        kernels at every step and read nothing back."""
        return type(self).__module__.startswith("lamina.")

    def reset_states(self):  # Keras 2's name
        self.reset_state()

    def update_state(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement update_state()")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} must implement result()")

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def _standardize_dtype(dtype):
    if dtype is None:
        return "float32"
    name = getattr(dtype, "name", dtype) if not isinstance(dtype, str) else dtype
    return _dtypes.standardize(name)


def _on(t, variable):
    """`t` on the variable's device (a model placed on another device than its metrics)."""
    return t if t.device is variable.device else t.to(variable.device)


def _divide(total, count):
    """total / count, 0 where nothing was counted (Keras's divide_no_nan)."""
    return ops.divide(total, ops.maximum(count, _constant(1e-30, count.device)))


_CONSTANTS = {}


def _constant(value, device):
    """A scalar float32 tensor, cached: the counts a metric adds (batch sizes) repeat every step."""
    t = _CONSTANTS.get((value, device))
    if t is None:
        if len(_CONSTANTS) > 1024:
            _CONSTANTS.clear()
        t = _CONSTANTS[(value, device)] = convert_to_tensor(np.float32(value), "float32", device)
    return t


class Mean(Metric):
    """Weighted mean of the values seen: `total` (the weighted sum) over `count` (the weights), as
    Keras's. An update issues the same kernels whatever came before it, so it can run inside a
    replayed step (models/replay.py), whose Python runs only while the step is recorded."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), "zeros", name="total")
        self.count = self.add_variable((), "zeros", name="count")
        self._counted = False  # an update of Python's added a positive count since the reset: no 0/0 guard

    def update_state(self, values, sample_weight=None):
        values = _f(values)
        total = ops.sum(values) if values.shape else values
        if sample_weight is None or isinstance(sample_weight, (int, float)):
            w = 1.0 if sample_weight is None else float(sample_weight)
            if w == 0.0:
                return
            if w != 1.0:
                total = ops.multiply(total, _constant(w, total.device))
            n = values.size * w
            count = _constant(n, self.count.device)
            self._counted = self._counted or n > 0
        else:
            sw = _f(sample_weight)
            if sw.size == values.size:
                sw = ops.reshape(sw, values.shape)
            else:
                while sw.ndim < values.ndim:
                    sw = ops.expand_dims(sw, -1)
                sw = ops.broadcast_to(sw, values.shape)
            total, count = ops.sum(values * sw), _on(ops.sum(sw), self.count)
        self.total.assign_add(_on(total, self.total))
        self.count.assign_add(count)

    def result(self):
        if self._counted:
            return ops.divide(self.total, self.count)
        return _divide(self.total, self.count)

    def reset_state(self):
        super().reset_state()
        self._counted = False


class Sum(Metric):
    def __init__(self, name="sum", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), "zeros", name="total")

    def update_state(self, values, sample_weight=None):
        v = _f(values)
        if sample_weight is not None:
            v = v * _f(sample_weight)
        self.total.assign_add(_on(ops.sum(v), self.total))

    def result(self):
        return ops.add(self.total, 0.0)  # a tensor, not the variable itself (it changes in place)


class MeanMetricWrapper(Mean):
    """Mean over samples of `fn(y_true, y_pred, **kwargs)`:

        m = lamina.metrics.MeanMetricWrapper(lamina.losses.hinge, name="hinge")
    """

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        self._fn, self._fn_kwargs = fn, kwargs
        super().__init__(name=name or getattr(fn, "__name__", None) or "mean_metric_wrapper", dtype=dtype)
        if getattr(fn, "__module__", None) == _losses.__name__:
            self._direction = "down"

    def update_state(self, y_true, y_pred, sample_weight=None):
        if isinstance(y_pred, Tensor) and y_pred.dtype == "bfloat16":  # a mixed precision model's outputs:
            mask = y_pred._keras_mask  # scored in float32, as Keras's metrics cast them
            y_pred = ops.cast(y_pred, "float32")
            y_pred._keras_mask = mask
        super().update_state(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight)

    def _replays_with_step(self):
        return super()._replays_with_step() and getattr(self._fn, "__module__", "").startswith("lamina.")

    def get_config(self):
        config = {"name": self.name, "dtype": self.dtype, **self._fn_kwargs}
        if type(self) is MeanMetricWrapper:
            fn = self._fn
            config["fn"] = fn.__name__ if _FUNCTIONS.get(getattr(fn, "__name__", None)) is fn else \
                _registered_name(fn)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "fn" in config:
            config["fn"] = _function(config["fn"])
        return cls(**config)


def _registered_name(fn):
    from .saving import get_registered_name
    return get_registered_name(fn)


def _function(fn):
    """A metric function named in a config: a name, or Keras's {"class_name": "function", ...}."""
    if callable(fn):
        return fn
    name = (fn.get("registered_name") or fn.get("config")) if isinstance(fn, dict) else fn
    if name in _FUNCTIONS:
        return _FUNCTIONS[name]
    from .saving import get_registered_object
    obj = get_registered_object(name)
    if obj is None:
        raise ValueError(f"Unknown metric function {name!r}: register it with "
                         "@lamina.saving.register_keras_serializable() or pass it in custom_objects")
    return obj


def _metric_class(cls_name, fn, default_name, *params, direction=None, doc=None):
    """A MeanMetricWrapper subclass with Keras's signature: `params` are the arguments in Keras's
    order, each "name", "dtype" or (keyword argument of fn, default)."""
    params = params or ("name", "dtype")
    order = [p if isinstance(p, str) else p[0] for p in params]
    defaults = {"name": default_name, "dtype": None}
    defaults.update(p for p in params if not isinstance(p, str))

    def __init__(self, *args, **kwargs):
        if len(args) > len(order):
            raise TypeError(f"{cls_name}() takes at most {len(order)} positional arguments ({order}), "
                            f"{len(args)} given")
        values = dict(defaults)
        values.update(zip(order, args))
        for k, v in kwargs.items():
            if k not in defaults:
                raise TypeError(f"{cls_name}: unexpected argument {k!r}; accepted: {order}")
            values[k] = v
        name, dtype = values.pop("name"), values.pop("dtype")
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **values)
        for k, v in values.items():
            setattr(self, k, v)
        if direction:
            self._direction = direction
    __init__.__doc__ = f"{cls_name}({', '.join(f'{k}={defaults[k]!r}' for k in order)})"
    return type(cls_name, (MeanMetricWrapper,), {"__init__": __init__, "__module__": __name__,
                                                  "__doc__": doc or getattr(fn, "__doc__", None)})


# ---- functions as keras.metrics names them ------------------------------------------------------
hinge = _losses.hinge
squared_hinge = _losses.squared_hinge
categorical_hinge = _losses.categorical_hinge
poisson = _losses.poisson
kl_divergence = _losses.kl_divergence
binary_crossentropy = _losses.binary_crossentropy
categorical_crossentropy = _losses.categorical_crossentropy
sparse_categorical_crossentropy = _losses.sparse_categorical_crossentropy
binary_focal_crossentropy = _losses.binary_focal_crossentropy
categorical_focal_crossentropy = _losses.categorical_focal_crossentropy
mean_absolute_percentage_error = _losses.mean_absolute_percentage_error
mean_squared_logarithmic_error = _losses.mean_squared_logarithmic_error
log_cosh = _losses.log_cosh
huber = _losses.huber


def cosine_similarity(y_true, y_pred, axis=-1):
    """sum(l2_normalize(y_true) * l2_normalize(y_pred), axis): 1 when the vectors point the same way
    (the loss of that name is its negative)."""
    return -_losses.cosine_similarity(y_true, y_pred, axis=axis)


def pearson_correlation(y_true, y_pred, axis=-1):
    """Pearson's correlation of y_true and y_pred along `axis`: mean(z_true * z_pred) with each
    side centred and divided by its (population) standard deviation, as Keras computes it."""
    y_true, y_pred = _losses._pair(y_true, y_pred)
    yt = y_true - ops.mean(y_true, axis=axis, keepdims=True)
    yp = y_pred - ops.mean(y_pred, axis=axis, keepdims=True)
    yt = yt / ops.std(yt, axis=axis, keepdims=True)
    yp = yp / ops.std(yp, axis=axis, keepdims=True)
    return ops.mean(yt * yp, axis=axis)


def concordance_correlation(y_true, y_pred, axis=-1):
    """Lin's concordance correlation along `axis`, exactly as Keras 3 computes it:
    mean(2 (y_true - mean(y_pred)) (y_pred - mean(y_pred)) / (var(y_true) + var(y_pred) +
    (mean(y_true) - mean(y_pred)) ** 2 + epsilon)). (Keras centres y_true on y_pred's mean in the
    covariance term; lamina follows it so that values move between the two.)"""
    y_true, y_pred = _losses._pair(y_true, y_pred)
    mt = ops.mean(y_true, axis=axis, keepdims=True)
    mp = ops.mean(y_pred, axis=axis, keepdims=True)
    vt = ops.var(y_true - mt, axis=axis, keepdims=True)
    vp = ops.var(y_pred - mp, axis=axis, keepdims=True)
    covar = (y_true - mp) * (y_pred - mp)
    norm = vt + vp + ops.square(mt - mp)
    return ops.mean(2.0 * covar / (norm + epsilon()), axis=axis)


def _accuracy(y_true, y_pred):
    y_true, y_pred = _losses._same_rank(_t(y_true), _t(y_pred))
    return ops.cast(ops.equal(y_true, y_pred), "float32")


_FUNCTIONS = {f.__name__: f for f in (
    binary_accuracy, categorical_accuracy, sparse_categorical_accuracy, top_k_categorical_accuracy,
    sparse_top_k_categorical_accuracy, mean_squared_error, mean_absolute_error, hinge, squared_hinge,
    categorical_hinge, poisson, kl_divergence, binary_crossentropy, categorical_crossentropy,
    sparse_categorical_crossentropy, binary_focal_crossentropy, categorical_focal_crossentropy,
    mean_absolute_percentage_error, mean_squared_logarithmic_error, log_cosh, huber, cosine_similarity,
    pearson_correlation, concordance_correlation)}


# ---- the mean of a function over the samples ----------------------------------------------------
_UP, _DOWN = "up", "down"
Accuracy = _metric_class("Accuracy", _accuracy, "accuracy", direction=_UP,
                         doc="How often predictions equal labels (exact equality).")
BinaryAccuracy = _metric_class("BinaryAccuracy", binary_accuracy, "binary_accuracy", "name", "dtype",
                               ("threshold", 0.5), direction=_UP)
CategoricalAccuracy = _metric_class("CategoricalAccuracy", categorical_accuracy, "categorical_accuracy",
                                    direction=_UP)
SparseCategoricalAccuracy = _metric_class("SparseCategoricalAccuracy", sparse_categorical_accuracy,
                                          "sparse_categorical_accuracy", direction=_UP)
TopKCategoricalAccuracy = _metric_class("TopKCategoricalAccuracy", top_k_categorical_accuracy,
                                        "top_k_categorical_accuracy", ("k", 5), "name", "dtype", direction=_UP)
SparseTopKCategoricalAccuracy = _metric_class("SparseTopKCategoricalAccuracy", sparse_top_k_categorical_accuracy,
                                              "sparse_top_k_categorical_accuracy", ("k", 5), "name", "dtype",
                                              ("from_sorted_ids", False), direction=_UP)
MeanSquaredError = _metric_class("MeanSquaredError", mean_squared_error, "mean_squared_error", direction=_DOWN)
MeanAbsoluteError = _metric_class("MeanAbsoluteError", mean_absolute_error, "mean_absolute_error", direction=_DOWN)
MeanAbsolutePercentageError = _metric_class("MeanAbsolutePercentageError", mean_absolute_percentage_error,
                                            "mean_absolute_percentage_error", direction=_DOWN)
MeanSquaredLogarithmicError = _metric_class("MeanSquaredLogarithmicError", mean_squared_logarithmic_error,
                                            "mean_squared_logarithmic_error", direction=_DOWN)
CosineSimilarity = _metric_class("CosineSimilarity", cosine_similarity, "cosine_similarity", "name", "dtype",
                                 ("axis", -1), direction=_UP)
LogCoshError = _metric_class("LogCoshError", log_cosh, "logcosh", direction=_DOWN)
KLDivergence = _metric_class("KLDivergence", kl_divergence, "kl_divergence", direction=_DOWN)
Poisson = _metric_class("Poisson", poisson, "poisson", direction=_DOWN)
BinaryCrossentropy = _metric_class("BinaryCrossentropy", binary_crossentropy, "binary_crossentropy", "name", "dtype",
                                   ("from_logits", False), ("label_smoothing", 0), direction=_DOWN)
CategoricalCrossentropy = _metric_class("CategoricalCrossentropy", categorical_crossentropy,
                                        "categorical_crossentropy", "name", "dtype", ("from_logits", False),
                                        ("label_smoothing", 0), ("axis", -1), direction=_DOWN)
SparseCategoricalCrossentropy = _metric_class("SparseCategoricalCrossentropy", sparse_categorical_crossentropy,
                                              "sparse_categorical_crossentropy", "name", "dtype",
                                              ("from_logits", False), ("ignore_class", None), ("axis", -1),
                                              direction=_DOWN)
Hinge = _metric_class("Hinge", hinge, "hinge", direction=_DOWN)
SquaredHinge = _metric_class("SquaredHinge", squared_hinge, "squared_hinge", direction=_DOWN)
CategoricalHinge = _metric_class("CategoricalHinge", categorical_hinge, "categorical_hinge", direction=_DOWN)
PearsonCorrelation = _metric_class("PearsonCorrelation", pearson_correlation, "pearson_correlation", "name",
                                   "dtype", ("axis", -1), direction=_UP)
ConcordanceCorrelation = _metric_class("ConcordanceCorrelation", concordance_correlation, "concordance_correlation",
                                       "name", "dtype", ("axis", -1), direction=_UP)


class RootMeanSquaredError(Mean):
    """sqrt of the (weighted) mean of (y_pred - y_true) ** 2 over all the values seen."""

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = _DOWN

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _losses._same_rank(_f(y_true), _f(y_pred))
        super().update_state(ops.square(y_pred - y_true), sample_weight=sample_weight)

    def result(self):
        return ops.sqrt(super().result())

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


# the confusion-matrix, F-score, IoU and R2 metrics live in their own modules (they need Metric above)
from ._confusion_metrics import (  # noqa: E402
    AUC, FalseNegatives, FalsePositives, Precision, PrecisionAtRecall, Recall, RecallAtPrecision,
    SensitivityAtSpecificity, SpecificityAtSensitivity, TrueNegatives, TruePositives)
from ._score_metrics import (  # noqa: E402
    BinaryIoU, F1Score, FBetaScore, IoU, MeanIoU, OneHotIoU, OneHotMeanIoU, R2Score)

_CLASSES = {c.__name__: c for c in (
    Metric, Mean, Sum, MeanMetricWrapper, Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
    TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, MeanSquaredError, MeanAbsoluteError,
    MeanAbsolutePercentageError, MeanSquaredLogarithmicError, RootMeanSquaredError, CosineSimilarity, LogCoshError,
    R2Score, KLDivergence, Poisson, BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
    Hinge, SquaredHinge, CategoricalHinge, TruePositives, FalsePositives, TrueNegatives, FalseNegatives, Precision,
    Recall, AUC, SensitivityAtSpecificity, SpecificityAtSensitivity, PrecisionAtRecall, RecallAtPrecision,
    FBetaScore, F1Score, IoU, MeanIoU, BinaryIoU, OneHotIoU, OneHotMeanIoU, PearsonCorrelation,
    ConcordanceCorrelation)}
# as Keras: a class by its name or its snake_case name, and the short aliases
_BY_NAME = {_losses._snake(n): c for n, c in _CLASSES.items() if c not in (Metric, MeanMetricWrapper)}
_BY_NAME.update({"mse": MeanSquaredError, "MSE": MeanSquaredError, "mae": MeanAbsoluteError,
                 "MAE": MeanAbsoluteError, "mape": MeanAbsolutePercentageError,
                 "MAPE": MeanAbsolutePercentageError, "msle": MeanSquaredLogarithmicError,
                 "MSLE": MeanSquaredLogarithmicError, "bce": BinaryCrossentropy, "BCE": BinaryCrossentropy})


def get(identifier, y_true=None, y_pred=None):
    """A Metric object from a name, class, function, config dict or Metric. "accuracy"/"acc" picks
    binary, sparse categorical or categorical accuracy from the shapes of y_true and y_pred;
    other names are a class's name ("AUC"), its snake_case name ("auc", "f1_score"), an alias
    ("mse", "mape", "bce") or a function's name ("log_cosh", wrapped in MeanMetricWrapper)."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier in ("accuracy", "acc"):
            if y_pred is not None and y_pred.shape[-1:] == (1,) or y_pred is not None and len(y_pred.shape) == 1:
                cls = BinaryAccuracy
            elif y_true is not None and y_pred is not None and (
                    len(y_true.shape) == len(y_pred.shape) - 1 or
                    (y_true.shape[-1:] == (1,) and y_pred.shape[-1] != 1)):
                cls = SparseCategoricalAccuracy
            else:
                cls = CategoricalAccuracy
            return cls(name=identifier)
        cls = _BY_NAME.get(identifier) or _CLASSES.get(identifier)
        if cls is not None and cls not in (Metric, MeanMetricWrapper):
            return cls()
        if identifier in _FUNCTIONS:
            return MeanMetricWrapper(_FUNCTIONS[identifier], name=identifier)
        from .saving import get_registered_object
        obj = get_registered_object(identifier)
        if obj is not None:
            return get(obj)
        raise ValueError(f"Unknown metric {identifier!r}; expected 'accuracy', a metric class name such as 'AUC' or "
                         f"one of {sorted(_BY_NAME)}")
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise TypeError(f"Could not interpret metric {identifier!r}")


def serialize(metric):
    """A Metric as {"class_name", "config"}; a function as its name."""
    if isinstance(metric, Metric):
        return {"class_name": type(metric).__name__, "config": metric.get_config()}
    return getattr(metric, "__name__", None)


def deserialize(config, custom_objects=None):
    """The metric a name or a config (lamina's or Keras's serialized form) describes."""
    from .saving import deserialize_from_table
    return deserialize_from_table(config, _CLASSES, get, _function, "metric", custom_objects)
