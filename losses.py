"""Losses by name or class, as `keras.losses`: per-sample values reduced with
"sum_over_batch_size" (default), "sum", "mean" or "none"."""
from . import ops
from .backend.tensor import Tensor, convert_to_tensor

EPSILON = 1e-7
_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def _t(x, dtype=None):
    return x if isinstance(x, Tensor) else convert_to_tensor(x, dtype=dtype)


def _f(x):
    x = _t(x)
    return x if x.dtype == "float32" else ops.cast(x, "float32")


def _check_shapes(name, y_true, y_pred):
    if y_true.shape != y_pred.shape:
        if y_true.size == y_pred.size:
            return ops.reshape(y_true, y_pred.shape)
        raise ValueError(f"{name}: y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}; they must "
                         "match (for integer class labels use sparse_categorical_crossentropy)")
    return y_true


def mean_squared_error(y_true, y_pred):
    y_pred = _f(y_pred)
    y_true = _check_shapes("mean_squared_error", _f(y_true), y_pred)
    return ops.mean(ops.square(y_pred - y_true), axis=-1)


def mean_absolute_error(y_true, y_pred):
    y_pred = _f(y_pred)
    y_true = _check_shapes("mean_absolute_error", _f(y_true), y_pred)
    return ops.mean(ops.abs(y_pred - y_true), axis=-1)


def huber(y_true, y_pred, delta=1.0):
    y_pred = _f(y_pred)
    y_true = _check_shapes("huber", _f(y_true), y_pred)
    err = ops.abs(y_pred - y_true)
    quad = ops.minimum(err, delta)
    lin = err - quad
    return ops.mean(0.5 * ops.square(quad) + delta * lin, axis=-1)


def kl_divergence(y_true, y_pred):
    y_pred = _f(y_pred)
    y_true = _check_shapes("kl_divergence", _f(y_true), y_pred)
    yt = ops.clip(y_true, EPSILON, 1.0)
    yp = ops.clip(y_pred, EPSILON, 1.0)
    return ops.sum(yt * ops.log(yt / yp), axis=-1)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    y_pred = _f(y_pred)
    y_true = _check_shapes("binary_crossentropy", _f(y_true), y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return ops.mean(ops.binary_crossentropy(y_true, y_pred, from_logits=from_logits), axis=axis)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    y_pred = _f(y_pred)
    y_true = _check_shapes("categorical_crossentropy", _f(y_true), y_pred)
    if label_smoothing:
        n = y_pred.shape[axis]
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / n
    return ops.categorical_crossentropy(y_true, y_pred, from_logits=from_logits, axis=axis)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    y_pred = _f(y_pred)
    y_true = _t(y_true)
    if y_true.dtype == "float32":
        y_true = ops.cast(y_true, "int64")
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = ops.reshape(y_true, y_true.shape[:-1])
    if y_true.shape != y_pred.shape[:-1]:
        raise ValueError(f"sparse_categorical_crossentropy: y_true of shape {y_true.shape} does not match y_pred of "
                         f"shape {y_pred.shape}: expected integer labels of shape {y_pred.shape[:-1]}")
    if ignore_class is not None:
        keep = ops.not_equal(y_true, ignore_class)
        safe = ops.where(keep, y_true, ops.zeros_like(y_true))
        loss = ops.sparse_categorical_crossentropy(safe, y_pred, from_logits=from_logits, axis=axis)
        return loss * ops.cast(keep, "float32")
    return ops.sparse_categorical_crossentropy(y_true, y_pred, from_logits=from_logits, axis=axis)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
kld = KLD = kullback_leibler_divergence = kl_divergence


def reduce_values(values, sample_weight=None, reduction="sum_over_batch_size"):
    """Applies sample weights (broadcast over trailing dims) and a reduction."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"Invalid reduction {reduction!r}; expected one of {[r for r in _REDUCTIONS if r]}")
    values = _f(values)
    if sample_weight is not None:
        sw = _f(sample_weight)
        while sw.ndim > values.ndim and sw.shape[-1] == 1:
            sw = ops.reshape(sw, sw.shape[:-1])
        while sw.ndim < values.ndim:
            sw = ops.expand_dims(sw, -1)
        values = values * sw
    if reduction in ("none", None):
        return values
    if sample_weight is None and reduction != "sum" and values.size:
        return ops.mean(values)  # one op for the common case (the sum over the batch size)
    total = ops.sum(values)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        return total / ops.maximum(ops.sum(ops.broadcast_to(sw, values.shape)), EPSILON)
    return total / float(max(values.size, 1))


class Loss:
    """Base class: `call(y_true, y_pred)` returns per-sample losses; `__call__` reduces them.

        class CustomMSE(lamina.losses.Loss):
            def __init__(self, factor=0.1, name="custom_mse", reduction="sum_over_batch_size"):
                super().__init__(name=name, reduction=reduction)
                self.factor = factor

            def call(self, y_true, y_pred):
                return ops.mean(ops.square(y_true - y_pred), axis=-1) * self.factor
    """

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: invalid reduction {reduction!r}; expected one of "
                             f"{[r for r in _REDUCTIONS if r]}")
        self.name = name or _snake(type(self).__name__)
        self.reduction = reduction

    def call(self, y_true, y_pred):
        raise NotImplementedError

    _float_inputs = True  # as Keras: `call` receives float tensors, whatever came in (numpy, integer labels)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self._float_inputs:
            y_true, y_pred = _f(y_true), _f(y_pred)
        return reduce_values(self.call(y_true, y_pred), sample_weight, self.reduction)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _snake(n):
    import re
    return re.sub(r"(?<!^)(?=[A-Z])", "_", n).lower()


class LossFunctionWrapper(Loss):
    _float_inputs = False  # the built-in functions take integer labels as they are

    def __init__(self, fn, name=None, reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name or fn.__name__, reduction=reduction)
        self.fn, self._fn_kwargs = fn, kwargs

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}


def _wrapper(cls_name, fn, **defaults):
    def __init__(self, *args, reduction="sum_over_batch_size", name=None, **kwargs):
        params = dict(defaults)
        keys = list(defaults)
        for k, v in zip(keys, args):
            params[k] = v
        for k, v in kwargs.items():
            if k not in defaults:
                raise TypeError(f"{cls_name}: unexpected argument {k!r}; accepted: {keys + ['reduction', 'name']}")
            params[k] = v
        LossFunctionWrapper.__init__(self, fn, name=name or _snake(cls_name), reduction=reduction, **params)
    return type(cls_name, (LossFunctionWrapper,), {"__init__": __init__})


MeanSquaredError = _wrapper("MeanSquaredError", mean_squared_error)
MeanAbsoluteError = _wrapper("MeanAbsoluteError", mean_absolute_error)
Huber = _wrapper("Huber", huber, delta=1.0)
KLDivergence = _wrapper("KLDivergence", kl_divergence)
BinaryCrossentropy = _wrapper("BinaryCrossentropy", binary_crossentropy, from_logits=False, label_smoothing=0.0, axis=-1)
CategoricalCrossentropy = _wrapper("CategoricalCrossentropy", categorical_crossentropy, from_logits=False,
                                   label_smoothing=0.0, axis=-1)
SparseCategoricalCrossentropy = _wrapper("SparseCategoricalCrossentropy", sparse_categorical_crossentropy,
                                         from_logits=False, ignore_class=None, axis=-1)

_BY_NAME = {
    "mean_squared_error": mean_squared_error, "mse": mean_squared_error, "MSE": mean_squared_error,
    "mean_absolute_error": mean_absolute_error, "mae": mean_absolute_error, "MAE": mean_absolute_error,
    "binary_crossentropy": binary_crossentropy, "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy, "huber": huber,
    "huber_loss": huber, "kl_divergence": kl_divergence, "kld": kl_divergence, "KLD": kl_divergence,
    "kullback_leibler_divergence": kl_divergence,
}
_CLASSES = {c.__name__: c for c in (MeanSquaredError, MeanAbsoluteError, Huber, KLDivergence, BinaryCrossentropy,
                                    CategoricalCrossentropy, SparseCategoricalCrossentropy)}


def get(identifier):
    """A loss callable from a name, a Loss, a class, a config dict or a function."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
        raise ValueError(f"Unknown loss {identifier!r}; expected one of {sorted(_BY_NAME)} or a callable")
    if isinstance(identifier, dict):
        cls = _CLASSES.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"Unknown loss class {identifier.get('class_name')!r}")
        return cls.from_config(identifier.get("config", {}))
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        return identifier
    raise TypeError(f"Could not interpret loss {identifier!r}: expected a name, a Loss or a callable")


def serialize(loss):
    if isinstance(loss, Loss):
        return {"class_name": type(loss).__name__, "config": loss.get_config()}
    for k, v in _BY_NAME.items():
        if v is loss:
            return k
    return getattr(loss, "__name__", None)
