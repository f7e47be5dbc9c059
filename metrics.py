"""Metrics as `keras.metrics`: stateful objects (`update_state`, `result`, `reset_state`) and
the plain functions behind them. "accuracy" is resolved from the shapes, as Keras does."""
from . import losses as _losses
from . import ops
from .backend.tensor import Tensor, convert_to_tensor


def _t(x):
    return x if isinstance(x, Tensor) else convert_to_tensor(x)


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


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    y_true, y_pred = _t(y_true), _t(y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = ops.reshape(y_true, y_true.shape[:-1])
    labels = ops.cast(y_true, "int64")
    # the label is in the top k when fewer than k scores beat it (ties count for the label)
    score = ops.take_along_axis(y_pred, ops.expand_dims(labels, -1), axis=-1)
    better = ops.sum(ops.cast(ops.greater(y_pred, score), "int32"), axis=-1)
    return ops.cast(ops.less(better, k), "float32")


mean_squared_error = mse = _losses.mean_squared_error
mean_absolute_error = mae = _losses.mean_absolute_error


class Metric:
    """Base class of stateful metrics."""

    def __init__(self, name=None, dtype=None):
        self.name = name or _losses._snake(type(self).__name__)
        self.reset_state()

    def reset_state(self):
        pass

    def update_state(self, *args, **kwargs):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class Mean(Metric):
    """Weighted mean of the values seen."""

    def reset_state(self):
        self._total, self._count = 0.0, 0.0

    def update_state(self, values, sample_weight=None):
        values = ops.cast(_t(values), "float32")
        if sample_weight is not None:
            sw = ops.cast(_t(sample_weight), "float32")
            if sw.size == values.size:
                sw = ops.reshape(sw, values.shape)
            else:
                while sw.ndim < values.ndim:
                    sw = ops.expand_dims(sw, -1)
                sw = ops.broadcast_to(sw, values.shape)
            self._total += float(ops.sum(values * sw))
            self._count += float(ops.sum(sw))
        else:
            self._total += float(ops.sum(values))
            self._count += float(values.size)

    def result(self):
        return self._total / self._count if self._count else 0.0


class Sum(Metric):
    def reset_state(self):
        self._total = 0.0

    def update_state(self, values, sample_weight=None):
        v = ops.cast(_t(values), "float32")
        if sample_weight is not None:
            v = v * ops.cast(_t(sample_weight), "float32")
        self._total += float(ops.sum(v))

    def result(self):
        return self._total


class MeanMetricWrapper(Mean):
    """Mean over samples of `fn(y_true, y_pred)`."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        self._fn, self._fn_kwargs = fn, kwargs
        super().__init__(name=name or fn.__name__)

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight)

    def get_config(self):
        return {"name": self.name, **self._fn_kwargs}


def _metric_class(cls_name, fn, default_name, **defaults):
    def __init__(self, name=default_name, dtype=None, **kwargs):
        params = {**defaults, **kwargs}
        MeanMetricWrapper.__init__(self, fn, name=name, **params)
    return type(cls_name, (MeanMetricWrapper,), {"__init__": __init__})


Accuracy = _metric_class("Accuracy", lambda t, p: ops.cast(ops.equal(_t(t), _t(p)), "float32"), "accuracy")
BinaryAccuracy = _metric_class("BinaryAccuracy", binary_accuracy, "binary_accuracy", threshold=0.5)
CategoricalAccuracy = _metric_class("CategoricalAccuracy", categorical_accuracy, "categorical_accuracy")
SparseCategoricalAccuracy = _metric_class("SparseCategoricalAccuracy", sparse_categorical_accuracy,
                                          "sparse_categorical_accuracy")
TopKCategoricalAccuracy = _metric_class("TopKCategoricalAccuracy", top_k_categorical_accuracy,
                                        "top_k_categorical_accuracy", k=5)
SparseTopKCategoricalAccuracy = _metric_class("SparseTopKCategoricalAccuracy", sparse_top_k_categorical_accuracy,
                                              "sparse_top_k_categorical_accuracy", k=5)
MeanSquaredError = _metric_class("MeanSquaredError", _losses.mean_squared_error, "mean_squared_error")
MeanAbsoluteError = _metric_class("MeanAbsoluteError", _losses.mean_absolute_error, "mean_absolute_error")

_BY_NAME = {
    "binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
}
_CLASSES = {c.__name__: c for c in (Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
                                    TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, MeanSquaredError,
                                    MeanAbsoluteError, Mean, Sum)}


def get(identifier, y_true=None, y_pred=None):
    """A Metric object from a name, class, function or Metric. "accuracy"/"acc" picks binary,
    sparse categorical or categorical accuracy from the shapes of y_true and y_pred."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
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
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
        raise ValueError(f"Unknown metric {identifier!r}; expected 'accuracy' or one of {sorted(_BY_NAME)}")
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise TypeError(f"Could not interpret metric {identifier!r}")
