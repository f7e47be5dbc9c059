"""The per-class score metrics of `lamina.metrics` (Keras's f_score_metrics.py, iou_metrics.py and
R2Score): `FBetaScore`, `F1Score`, `IoU`, `MeanIoU`, `BinaryIoU`, `OneHotIoU`, `OneHotMeanIoU`,
`R2Score`. Their state is per-class sums in variables, updated with batched ops (the IoU
confusion matrix is one one-hot matrix product per batch)."""
from . import ops
from .backend.settings import epsilon
from .losses import _same_rank
from .metrics import Metric, _constant, _f, _on, _t



def _float_arg(name, value):
    if not isinstance(value, float):
        raise ValueError(f"Invalid `{name}` argument value. It should be a Python float. Received: {name}={value} of "
                         f"type '{type(value)}'")


class FBetaScore(Metric):
    """(1 + beta^2) * precision * recall / (beta^2 * precision + recall), per class, for multi-label
    or one-hot (batch, classes) inputs. A prediction counts as positive above `threshold`, or, when
    threshold is None, where it is the row's largest. `average`: None (one score per class),
    "micro" (counts pooled over classes), "macro" (mean of the class scores) or "weighted" (mean
    weighted by each class's number of true labels)."""

    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError("Invalid `average` argument value. Expected one of: {None, 'micro', 'macro', "
                             f"'weighted'}}. Received: average={average}")
        _float_arg("beta", beta)
        if beta <= 0.0:
            raise ValueError(f"Invalid `beta` argument value. It should be > 0. Received: beta={beta}")
        if threshold is not None:
            _float_arg("threshold", threshold)
            if threshold > 1.0 or threshold <= 0.0:
                raise ValueError("Invalid `threshold` argument value. It should verify 0 < threshold <= 1. "
                                 f"Received: threshold={threshold}")
        self.average, self.beta, self.threshold = average, beta, threshold
        self.axis = None if average == "micro" else 0
        self._built = False

    def _build(self, y_true_shape, y_pred_shape):
        if len(y_pred_shape) != 2 or len(y_true_shape) != 2:
            raise ValueError(f"{type(self).__name__} expects 2D inputs with shape (batch_size, output_dim). Received "
                             f"input shapes: y_pred.shape={y_pred_shape} and y_true.shape={y_true_shape}.")
        shape = () if self.average == "micro" else (y_pred_shape[-1],)
        self.true_positives = self.add_variable(shape, "zeros", name="true_positives")
        self.false_positives = self.add_variable(shape, "zeros", name="false_positives")
        self.false_negatives = self.add_variable(shape, "zeros", name="false_negatives")
        self.intermediate_weights = self.add_variable(shape, "zeros", name="intermediate_weights")
        self._built = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _f(y_true), _f(y_pred)
        if not self._built:
            self._build(y_true.shape, y_pred.shape)
        if self.threshold is None:
            top = ops.max(y_pred, axis=-1, keepdims=True)
            pred = ops.logical_and(ops.greater_equal(y_pred, top), ops.greater(ops.abs(y_pred), 1e-9))
        else:
            pred = ops.greater(y_pred, self.threshold)
        pred = ops.cast(pred, "float32")
        sw = None
        if sample_weight is not None:
            sw = _f(sample_weight)
            sw = ops.reshape(sw, (-1, 1)) if sw.ndim >= 1 and sw.size == y_true.shape[0] else sw

        def weighted_sum(v):
            return ops.sum(v if sw is None else v * sw, axis=self.axis)
        for var, value in ((self.true_positives, pred * y_true), (self.false_positives, pred * (1.0 - y_true)),
                           (self.false_negatives, (1.0 - pred) * y_true), (self.intermediate_weights, y_true)):
            var.assign_add(_on(weighted_sum(value), var))

    def result(self):
        if not self._built:
            return ops.zeros(())
        tp = self.true_positives
        precision = tp / (tp + self.false_positives + epsilon())
        recall = tp / (tp + self.false_negatives + epsilon())
        b2 = self.beta ** 2
        score = precision * recall / (b2 * precision + recall + epsilon()) * (1.0 + b2)
        if self.average == "weighted":
            w = self.intermediate_weights
            return ops.sum(score * (w / (ops.sum(w) + epsilon())))
        if self.average is not None:
            return ops.mean(score)
        return score

    def get_config(self):
        return {**super().get_config(), "average": self.average, "beta": self.beta, "threshold": self.threshold}


class F1Score(FBetaScore):
    """FBetaScore with beta = 1: the harmonic mean of precision and recall."""

    def __init__(self, average=None, threshold=None, name="f1_score", dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self):
        config = super().get_config()
        del config["beta"]
        return config


def _int_dtype(dtype):
    return "int32" if dtype in (None, "int") else dtype


class _IoUBase(Metric):
    """A (num_classes x num_classes) confusion matrix (rows: true class, columns: predicted class),
    accumulated in `dtype` (Keras's "int" by default: fractional sample weights are truncated)."""

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_true=True, sparse_y_pred=True,
                 axis=-1):
        super().__init__(name=name, dtype=_int_dtype(dtype))
        self._direction = "up"
        self.num_classes, self.ignore_class = num_classes, ignore_class
        self.sparse_y_true, self.sparse_y_pred, self.axis = sparse_y_true, sparse_y_pred, axis
        self.total_cm = self.add_variable((num_classes, num_classes), "zeros", dtype=self.dtype,
                                          name="total_confusion_matrix")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _t(y_true), _t(y_pred)
        if not self.sparse_y_true:
            y_true = ops.argmax(y_true, axis=self.axis)
        if not self.sparse_y_pred:
            y_pred = ops.argmax(y_pred, axis=self.axis)
        # class ids as floats (exact below 2**24): the confusion matrix is a product of one-hots
        y_true = ops.reshape(ops.cast(ops.cast(y_true, "int64"), "float32"), (-1,))
        y_pred = ops.reshape(ops.cast(ops.cast(y_pred, "int64"), "float32"), (-1,))
        n = float(self.num_classes)
        valid = ops.logical_and(ops.logical_and(ops.greater_equal(y_true, 0.0), ops.less(y_true, n)),
                                ops.logical_and(ops.greater_equal(y_pred, 0.0), ops.less(y_pred, n)))
        if self.ignore_class is not None:
            valid = ops.logical_and(valid, ops.not_equal(y_true, float(self.ignore_class)))
        weights = ops.cast(valid, "float32")
        if sample_weight is not None:
            sw = _f(sample_weight)
            if "int" in self.dtype:
                sw = ops.cast(ops.cast(sw, self.dtype), "float32")
            weights = weights * ops.reshape(ops.broadcast_to(sw, y_true.shape) if sw.size != y_true.size else sw,
                                            (-1,))
        rows = ops.one_hot(ops.cast(ops.where(valid, y_true, 0.0), "int64"), self.num_classes)
        cols = ops.one_hot(ops.cast(ops.where(valid, y_pred, 0.0), "int64"), self.num_classes)
        cm = ops.matmul(ops.transpose(rows * ops.expand_dims(weights, -1)), cols)
        if self.dtype != "float32":
            cm = ops.cast(ops.round(cm) if "int" in self.dtype else cm, self.dtype)
        self.total_cm.assign_add(_on(cm, self.total_cm))


_IDS = {}


def _ids_tensor(ids, device):
    """The class ids as an int64 tensor on `device`, made once per (ids, device)."""
    key = (tuple(ids), device)
    t = _IDS.get(key)
    if t is None:
        if len(_IDS) > 256:
            _IDS.clear()
        t = _IDS[key] = ops.convert_to_tensor(list(ids), dtype="int64", device=device)
    return t


class IoU(_IoUBase):
    """Intersection over union, tp / (tp + fp + fn), per class from the confusion matrix, averaged
    over `target_class_ids` (classes never seen, with a zero denominator, are left out)."""

    def __init__(self, num_classes, target_class_ids, name=None, dtype=None, ignore_class=None, sparse_y_true=True,
                 sparse_y_pred=True, axis=-1):
        super().__init__(num_classes, name=name, dtype=dtype, ignore_class=ignore_class, sparse_y_true=sparse_y_true,
                         sparse_y_pred=sparse_y_pred, axis=axis)
        if max(target_class_ids) >= num_classes:
            raise ValueError(f"Target class id {max(target_class_ids)} is out of range, which is [0, {num_classes}).")
        self.target_class_ids = list(target_class_ids)

    def result(self):
        cm = ops.cast(self.total_cm, "float32")
        tp = ops.diag(cm)
        denominator = ops.sum(cm, axis=0) + ops.sum(cm, axis=1) - tp
        ids = _ids_tensor(self.target_class_ids, self.total_cm.device)
        tp, denominator = ops.take(tp, ids), ops.take(denominator, ids)
        valid = ops.greater(denominator, 1e-9)
        iou = ops.where(valid, tp / (denominator + epsilon()), 0.0)
        return ops.sum(iou) / (ops.sum(ops.cast(valid, "float32")) + epsilon())

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "target_class_ids": self.target_class_ids,
                "ignore_class": self.ignore_class, "sparse_y_true": self.sparse_y_true,
                "sparse_y_pred": self.sparse_y_pred, "axis": self.axis}


class BinaryIoU(IoU):
    """IoU of two classes from probabilities: a prediction >= `threshold` is class 1."""

    def __init__(self, target_class_ids=(0, 1), threshold=0.5, name=None, dtype=None):
        super().__init__(num_classes=2, target_class_ids=target_class_ids, name=name, dtype=dtype)
        self.threshold = threshold

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(ops.greater_equal(_f(y_pred), self.threshold), "int64")
        super().update_state(y_true, y_pred, sample_weight)

    def get_config(self):
        return {"target_class_ids": self.target_class_ids, "threshold": self.threshold, "name": self.name,
                "dtype": self.dtype}


class MeanIoU(IoU):
    """IoU averaged over all `num_classes` classes (integer class ids; `sparse_y_true=False` /
    `sparse_y_pred=False` take one-hot or probability rows along `axis` instead)."""

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_true=True, sparse_y_pred=True,
                 axis=-1):
        super().__init__(num_classes, list(range(num_classes)), name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=sparse_y_true, sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "dtype": self.dtype,
                "ignore_class": self.ignore_class, "sparse_y_true": self.sparse_y_true,
                "sparse_y_pred": self.sparse_y_pred, "axis": self.axis}


class OneHotIoU(IoU):
    """IoU with one-hot labels (and, unless sparse_y_pred, probability rows)."""

    def __init__(self, num_classes, target_class_ids, name=None, dtype=None, ignore_class=None, sparse_y_pred=False,
                 axis=-1):
        super().__init__(num_classes, target_class_ids, name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=False, sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self):
        return {"num_classes": self.num_classes, "target_class_ids": self.target_class_ids, "name": self.name,
                "dtype": self.dtype, "ignore_class": self.ignore_class, "sparse_y_pred": self.sparse_y_pred,
                "axis": self.axis}


class OneHotMeanIoU(MeanIoU):
    """MeanIoU with one-hot labels (and, unless sparse_y_pred, probability rows)."""

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_pred=False, axis=-1):
        super().__init__(num_classes, name=name, dtype=dtype, ignore_class=ignore_class, sparse_y_true=False,
                         sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "dtype": self.dtype,
                "ignore_class": self.ignore_class, "sparse_y_pred": self.sparse_y_pred, "axis": self.axis}


class R2Score(Metric):
    """The coefficient of determination, 1 - sum((y - y_pred)^2) / sum((y - mean(y))^2), per output
    column of (batch, outputs) inputs, then combined by `class_aggregation`: "uniform_average"
    (mean), "variance_weighted_average" (weighted by each column's variance) or None (one per
    column). `num_regressors` > 0 gives the adjusted R2."""

    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name="r2_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        valid = (None, "uniform_average", "variance_weighted_average")
        if class_aggregation not in valid:
            raise ValueError(f"Invalid value for argument `class_aggregation`. Expected one of {valid}. Received: "
                             f"class_aggregation={class_aggregation}")
        if num_regressors < 0:
            raise ValueError(f"Invalid value for argument `num_regressors`. Expected a value >= 0. Received: "
                             f"num_regressors={num_regressors}")
        self.class_aggregation, self.num_regressors = class_aggregation, num_regressors
        self.num_samples = self.add_variable((), "zeros", name="num_samples")
        self._built = False

    def _build(self, y_true_shape, y_pred_shape):
        if len(y_pred_shape) != 2 or len(y_true_shape) != 2:
            raise ValueError("R2Score expects 2D inputs with shape (batch_size, output_dim). Received input shapes: "
                             f"y_pred.shape={y_pred_shape} and y_true.shape={y_true_shape}.")
        n = (y_pred_shape[-1],)
        self.squared_sum = self.add_variable(n, "zeros", name="squared_sum")
        self.sum = self.add_variable(n, "zeros", name="sum")
        self.total_mse = self.add_variable(n, "zeros", name="residual")
        self.count = self.add_variable(n, "zeros", name="count")
        self._built = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _same_rank(_f(y_true), _f(y_pred))
        if not self._built:
            self._build(y_true.shape, y_pred.shape)
        if sample_weight is None:
            sw = ops.ones_like(y_true)
        else:
            sw = _f(sample_weight)
            if sw.ndim == 1:
                sw = ops.expand_dims(sw, 1)
            sw = ops.broadcast_to(sw, y_true.shape)
        wy = y_true * sw
        for var, value in ((self.sum, wy), (self.squared_sum, y_true * wy),
                           (self.total_mse, ops.square(y_true - y_pred) * sw), (self.count, sw)):
            var.assign_add(_on(ops.sum(value, axis=0), var))
        self.num_samples.assign_add(_constant(float(y_true.size), self.num_samples.device))

    def result(self):
        if not self._built:
            return ops.zeros(())
        mean = self.sum / self.count
        total = self.squared_sum - self.sum * mean
        raw = 1.0 - self.total_mse / total
        raw = ops.where(ops.isinf(raw), 0.0, raw)
        if self.class_aggregation == "uniform_average":
            r2 = ops.mean(raw)
        elif self.class_aggregation == "variance_weighted_average":
            r2 = ops.sum(total * raw) / ops.sum(total)
        else:
            r2 = raw
        if self.num_regressors:
            # adjusted R2 where there are more samples than regressors + 1, the plain R2 elsewhere
            # (Keras warns there; this decides on the device, without reading the count back)
            n, p = self.num_samples, float(self.num_regressors)
            dof = n - p - 1.0
            adjusted = 1.0 - (1.0 - r2) * (n - 1.0) / ops.where(ops.greater(dof, 0.0), dof, 1.0)
            r2 = ops.where(ops.greater(dof, 0.0), adjusted, r2)
        return r2

    def get_config(self):
        return {**super().get_config(), "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}
