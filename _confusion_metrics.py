"""The confusion-matrix metrics of `lamina.metrics` (Keras's confusion_metrics.py): counts of true
and false positives and negatives at one or more thresholds, and what is read from them:
`TruePositives` ... `FalseNegatives`, `Precision`, `Recall`, `AUC`, and the sensitivity /
specificity / precision / recall "at" metrics.

Every count lives in a variable of shape (thresholds,) (or (thresholds, labels) for a multi-label
AUC) and is updated on the device with a handful of batched ops. Evenly spaced thresholds (AUC's
200) cost O(batch), not O(batch x thresholds): each prediction falls into one bucket between two
thresholds, a scatter-add sums the weights per bucket, and a reversed cumulative sum gives the
counts above each threshold (Keras's "optimized" path, with the same bucket arithmetic).
"""
import numpy as np

from . import ops
from .backend.sparse import IndexedSlices
from .backend.settings import epsilon
from .backend.tensor import convert_to_tensor
from .losses import _same_rank
from .metrics import Metric, _f, _on

NEG_INF = -1e10  # the threshold Precision/Recall use with top_k: every kept prediction is above it
_EPSILON = 1e-7
_TP, _FP, _TN, _FN = "tp", "fp", "tn", "fn"


def _parse_thresholds(thresholds, default):
    """A list of float thresholds, each checked to lie in [0, 1]."""
    if thresholds is None:
        return [float(default)]
    ts = np.asarray(thresholds, dtype=np.float64).ravel().tolist() if not isinstance(thresholds, (int, float)) \
        else [float(thresholds)]
    bad = [t for t in ts if not 0.0 <= t <= 1.0]
    if bad:
        raise ValueError(f"Threshold values must be in [0, 1]. Received: {bad} (thresholds={thresholds!r})")
    return ts


def _evenly_spaced(thresholds):
    n = len(thresholds)
    return n >= 3 and bool(np.allclose(thresholds, np.arange(n, dtype=np.float32) / (n - 1), atol=_EPSILON))


def _div_no_nan(a, b):
    """a / b, 0 where b == 0."""
    zero = ops.equal(b, 0.0)
    return ops.where(zero, 0.0, a / ops.where(zero, 1.0, b))


_THRESHOLDS = {}


def _threshold_tensor(thresholds, device):
    """The thresholds as a float32 tensor on `device`, made once per metric configuration."""
    key = (tuple(thresholds), device)
    t = _THRESHOLDS.get(key)
    if t is None:
        if len(_THRESHOLDS) > 256:
            _THRESHOLDS.clear()
        t = _THRESHOLDS[key] = convert_to_tensor(np.asarray(thresholds, np.float32), device=device)
    return t


def _segment_sum(values, ids, n):
    """out[k] = sum of values[i] where ids[i] == k, for k < n (one C++ scatter-add)."""
    return IndexedSlices(values, ids, (n,)).to_dense()


def _filter_top_k(x, k):
    """x with everything outside the k largest of the last axis set to NEG_INF."""
    _, idx = ops.top_k(x, k)
    keep = ops.sum(ops.one_hot(idx, x.shape[-1]), axis=-2)
    return x * keep + NEG_INF * (1.0 - keep)


def update_confusion_matrix_variables(variables, y_true, y_pred, thresholds, thresholds_distributed_evenly=False,
                                      top_k=None, class_id=None, sample_weight=None, multi_label=False,
                                      label_weights=None):
    """Adds the batch's weighted counts to `variables` ({"tp"|"fp"|"tn"|"fn": Variable}), at each
    threshold: a prediction is positive when above the threshold, a label when non-zero."""
    y_true, y_pred = _same_rank(_f(y_true), _f(y_pred))
    if sample_weight is not None:
        sw = ops.expand_dims(_f(sample_weight), -1)
        if sw.ndim == y_true.ndim + 1 and sw.shape[-1] == 1:
            sw = ops.squeeze(sw, -1)
    else:
        sw = None
    if top_k is not None:
        y_pred = _filter_top_k(y_pred, top_k)
    if class_id is not None:
        if y_pred.ndim == 1:
            raise ValueError("When class_id is provided, y_pred must be a 2D array with shape (num_samples, "
                             f"num_classes), found shape: {y_pred.shape}")
        y_true, y_pred = y_true[..., class_id, None], y_pred[..., class_id, None]
    if sw is not None:
        while sw.ndim < y_pred.ndim:  # (batch,) weights over (batch, h, w): where Keras fails, broadcast
            sw = ops.expand_dims(sw, -1)
    weights = None if sw is None else ops.broadcast_to(sw, y_pred.shape)
    if label_weights is not None and not multi_label:
        lw = ops.broadcast_to(ops.expand_dims(_on(_f(label_weights), y_pred), 0), y_pred.shape)
        weights = lw if weights is None else weights * lw
    labels = ops.cast(ops.not_equal(y_true, 0.0), "float32")
    if not multi_label:
        labels, y_pred = ops.reshape(labels, (-1,)), ops.reshape(y_pred, (-1,))
        weights = None if weights is None else ops.reshape(weights, (-1,))
    pos_w = labels if weights is None else labels * weights          # weight of each positive label
    neg_w = 1.0 - labels if weights is None else (1.0 - labels) * weights
    if thresholds_distributed_evenly:
        tp, fp = _counts_by_bucket(y_pred, pos_w, neg_w, thresholds, multi_label)
    else:
        tp, fp = _counts_by_comparison(y_pred, pos_w, neg_w, thresholds, multi_label)
    out = {_TP: tp, _FP: fp}
    if _TN in variables or _FN in variables:  # what is not above a threshold is at or below it
        axis = 0 if multi_label else None
        out[_FN] = ops.sum(pos_w, axis=axis) - tp
        out[_TN] = ops.sum(neg_w, axis=axis) - fp
    for key, var in variables.items():
        var.assign_add(_on(out[key], var))


def _counts_by_comparison(y_pred, pos_w, neg_w, thresholds, multi_label):
    """(tp, fp) at each threshold from the (thresholds x predictions) comparison."""
    thr = _threshold_tensor(thresholds, y_pred.device)
    if multi_label:  # y_pred (batch, labels) -> counts (thresholds, labels)
        above = ops.cast(ops.greater(ops.expand_dims(y_pred, 0), ops.reshape(thr, (-1, 1, 1))), "float32")
        return ops.sum(above * pos_w, axis=1), ops.sum(above * neg_w, axis=1)
    above = ops.cast(ops.greater(ops.expand_dims(y_pred, 0), ops.expand_dims(thr, 1)), "float32")
    both = ops.matmul(above, ops.stack([pos_w, neg_w], axis=1))  # (thresholds, 2)
    return both[:, 0], both[:, 1]


def _counts_by_bucket(y_pred, pos_w, neg_w, thresholds, multi_label):
    """(tp, fp) for evenly spaced thresholds: the weights summed per bucket, then accumulated from
    the top bucket down. A prediction p lies above thresholds 0 .. ceil(p * (n - 1)) - 1."""
    n = len(thresholds)
    with_epsilon = thresholds[0] < 0.0 or thresholds[-1] > 1.0  # AUC's (-eps, ..., 1 + eps)
    bucket = ops.ceil(ops.clip(y_pred, 0.0, 1.0) * float(n - 1)) - 1.0
    if with_epsilon:
        bucket = ops.relu(bucket)
    else:  # p == 0 is above no threshold: its weight goes nowhere
        keep = ops.cast(ops.greater_equal(bucket, 0.0), "float32")
        pos_w, neg_w, bucket = pos_w * keep, neg_w * keep, ops.relu(bucket)
    ids = ops.cast(bucket, "int64")
    if multi_label:  # one segment per (bucket, label)
        labels = y_pred.shape[-1]
        ids = ids * labels + _on(ops.expand_dims(ops.arange(labels, dtype="int64"), 0), y_pred)
        size, shape = n * labels, (n, labels)
    else:
        size, shape = n, (n,)
    ids = ops.reshape(ids, (-1,))
    both = ops.stack([_segment_sum(ops.reshape(pos_w, (-1,)), ids, size),
                      _segment_sum(ops.reshape(neg_w, (-1,)), ids, size)], axis=0)
    both = ops.flip(ops.cumsum(ops.flip(ops.reshape(both, (2,) + shape), axis=1), axis=1), axis=1)
    return both[0], both[1]


def _first_or_all(t, thresholds):
    return t[0] if len(thresholds) == 1 else t


class _ConfusionMatrixConditionCount(Metric):
    """The weighted count of one confusion-matrix condition, at each threshold."""

    _condition = None

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        self.thresholds = _parse_thresholds(thresholds, 0.5)
        self._thresholds_distributed_evenly = _evenly_spaced(self.thresholds)
        self.accumulator = self.add_variable((len(self.thresholds),), "zeros", name="accumulator")

    def update_state(self, y_true, y_pred, sample_weight=None):
        update_confusion_matrix_variables({self._condition: self.accumulator}, y_true, y_pred, self.thresholds,
                                          self._thresholds_distributed_evenly, sample_weight=sample_weight)

    def result(self):
        return _first_or_all(ops.add(self.accumulator, 0.0), self.thresholds)

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds}


class TruePositives(_ConfusionMatrixConditionCount):
    """The (weighted) number of true positives: labels non-zero and predictions above the
    threshold (0.5; a list gives one count per threshold; use 0 with logits)."""
    _condition = _TP


class FalsePositives(_ConfusionMatrixConditionCount):
    """The (weighted) number of false positives: labels zero, predictions above the threshold."""
    _condition = _FP


class TrueNegatives(_ConfusionMatrixConditionCount):
    """The (weighted) number of true negatives: labels zero, predictions at or below the threshold."""
    _condition = _TN


class FalseNegatives(_ConfusionMatrixConditionCount):
    """The (weighted) number of false negatives: labels non-zero, predictions at or below the threshold."""
    _condition = _FN


class _PrecisionRecall(Metric):
    _other = None  # the count besides true positives: "fp" (precision) or "fn" (recall)

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        self.init_thresholds, self.top_k, self.class_id = thresholds, top_k, class_id
        self.thresholds = _parse_thresholds(thresholds, 0.5 if top_k is None else NEG_INF)
        self._thresholds_distributed_evenly = _evenly_spaced(self.thresholds)
        shape = (len(self.thresholds),)
        self.true_positives = self.add_variable(shape, "zeros", name="true_positives")
        other = "false_positives" if self._other == _FP else "false_negatives"
        setattr(self, other, self.add_variable(shape, "zeros", name=other))
        self._other_var = getattr(self, other)

    def update_state(self, y_true, y_pred, sample_weight=None):
        update_confusion_matrix_variables({_TP: self.true_positives, self._other: self._other_var}, y_true, y_pred,
                                          self.thresholds, self._thresholds_distributed_evenly, top_k=self.top_k,
                                          class_id=self.class_id, sample_weight=sample_weight)

    def result(self):
        value = _div_no_nan(self.true_positives, self.true_positives + self._other_var)
        return _first_or_all(value, self.thresholds)

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Precision(_PrecisionRecall):
    """tp / (tp + fp): how many of the predicted positives are positive. `thresholds` (default 0.5;
    a list gives one value per threshold), `top_k` (only the k highest predictions of a row count
    as positive), `class_id` (one column of a multi-class output)."""
    _other = _FP


class Recall(_PrecisionRecall):
    """tp / (tp + fn): how many of the positives were predicted positive. Arguments as Precision's."""
    _other = _FN


class _SensitivitySpecificityBase(Metric):
    """All four counts at `num_thresholds` evenly spaced thresholds in [0, 1]; the result is the best
    value of one rate among the thresholds where another reaches `value`."""

    def __init__(self, value, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        if num_thresholds <= 0:
            raise ValueError(f"Argument `num_thresholds` must be an integer > 0. Received: num_thresholds="
                             f"{num_thresholds}")
        self.value, self.class_id = value, class_id
        if num_thresholds == 1:
            self.thresholds, self._thresholds_distributed_evenly = [0.5], False
        else:
            self.thresholds = [0.0] + [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)] + [1.0]
            self._thresholds_distributed_evenly = True
        shape = (len(self.thresholds),)
        self.true_positives = self.add_variable(shape, "zeros", name="true_positives")
        self.false_positives = self.add_variable(shape, "zeros", name="false_positives")
        self.true_negatives = self.add_variable(shape, "zeros", name="true_negatives")
        self.false_negatives = self.add_variable(shape, "zeros", name="false_negatives")

    def update_state(self, y_true, y_pred, sample_weight=None):
        update_confusion_matrix_variables(
            {_TP: self.true_positives, _TN: self.true_negatives, _FP: self.false_positives,
             _FN: self.false_negatives}, y_true, y_pred, self.thresholds, self._thresholds_distributed_evenly,
            class_id=self.class_id, sample_weight=sample_weight)

    def _rates(self):
        tp, fp, tn, fn = self.true_positives, self.false_positives, self.true_negatives, self.false_negatives
        return {"sensitivity": _div_no_nan(tp, tp + fn), "specificity": _div_no_nan(tn, tn + fp),
                "precision": _div_no_nan(tp, tp + fp)}

    def _best(self, constrained, dependent):
        """max of `dependent` where `constrained` >= value (0 if nowhere)."""
        r = self._rates()
        feasible = ops.greater_equal(r[constrained], self.value)
        return ops.max(ops.where(feasible, r[dependent], 0.0), initial=0.0)

    def get_config(self):
        return {**super().get_config(), "class_id": self.class_id}


def _check_unit(name, value):
    if value < 0 or value > 1:
        raise ValueError(f"Argument `{name}` must be in the range [0, 1]. Received: {name}={value}")


class SensitivityAtSpecificity(_SensitivitySpecificityBase):
    """The best sensitivity (tp / (tp + fn)) among the thresholds where specificity (tn / (tn + fp))
    is at least `specificity`."""

    def __init__(self, specificity, num_thresholds=200, class_id=None, name=None, dtype=None):
        _check_unit("specificity", specificity)
        self.specificity, self.num_thresholds = specificity, num_thresholds
        super().__init__(specificity, num_thresholds=num_thresholds, class_id=class_id, name=name, dtype=dtype)

    def result(self):
        return self._best("specificity", "sensitivity")

    def get_config(self):
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "specificity": self.specificity}


class SpecificityAtSensitivity(_SensitivitySpecificityBase):
    """The best specificity among the thresholds where sensitivity is at least `sensitivity`."""

    def __init__(self, sensitivity, num_thresholds=200, class_id=None, name=None, dtype=None):
        _check_unit("sensitivity", sensitivity)
        self.sensitivity, self.num_thresholds = sensitivity, num_thresholds
        super().__init__(sensitivity, num_thresholds=num_thresholds, class_id=class_id, name=name, dtype=dtype)

    def result(self):
        return self._best("sensitivity", "specificity")

    def get_config(self):
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "sensitivity": self.sensitivity}


class PrecisionAtRecall(_SensitivitySpecificityBase):
    """The best precision among the thresholds where recall is at least `recall`."""

    def __init__(self, recall, num_thresholds=200, class_id=None, name=None, dtype=None):
        _check_unit("recall", recall)
        self.recall, self.num_thresholds = recall, num_thresholds
        super().__init__(recall, num_thresholds=num_thresholds, class_id=class_id, name=name, dtype=dtype)

    def result(self):
        return self._best("sensitivity", "precision")

    def get_config(self):
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "recall": self.recall}


class RecallAtPrecision(_SensitivitySpecificityBase):
    """The best recall among the thresholds where precision is at least `precision` (0 when no
    threshold reaches it)."""

    def __init__(self, precision, num_thresholds=200, class_id=None, name=None, dtype=None):
        _check_unit("precision", precision)
        self.precision, self.num_thresholds = precision, num_thresholds
        super().__init__(precision, num_thresholds=num_thresholds, class_id=class_id, name=name, dtype=dtype)

    def result(self):
        return self._best("precision", "sensitivity")

    def get_config(self):
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "precision": self.precision}


_CURVES = {"roc": "ROC", "pr": "PR", "prgain": "PRGAIN"}
_SUMMATIONS = ("interpolation", "majoring", "minoring")


class AUC(Metric):
    """Area under the ROC curve (default) or the precision-recall curve (curve="PR"), by a Riemann
    sum over `num_thresholds` (200) thresholds, as Keras's: the ROC area with the trapezoidal rule
    ("interpolation"; "majoring"/"minoring" take the larger/smaller height), the PR area with
    Davis & Goadrich's interpolation of precision between thresholds. `thresholds` replaces the
    evenly spaced ones (0 - eps and 1 + eps are added at the ends); `multi_label` keeps one curve
    per label (averaged, or weighted by `label_weights`) where a single curve pools every entry;
    `from_logits` applies a sigmoid first."""

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name=None, dtype=None,
                 thresholds=None, multi_label=False, num_labels=None, label_weights=None, from_logits=False):
        self._direction = "up"
        curve_key = str(getattr(curve, "value", curve))
        if curve_key.lower() not in _CURVES or curve_key not in (curve_key.lower(), curve_key.upper()):
            raise ValueError(f'Invalid AUC curve value: "{curve}". Expected values are ["PR", "ROC", "PRGAIN"]')
        method = str(getattr(summation_method, "value", summation_method))
        if method.lower() not in _SUMMATIONS or method not in (method.lower(), method.capitalize()):
            raise ValueError(f'Invalid AUC summation method value: "{summation_method}". Expected values are '
                             '["interpolation", "majoring", "minoring"]')
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            thresholds = sorted(_parse_thresholds(thresholds, 0.5))
            self.num_thresholds = len(thresholds) + 2
            self._thresholds_distributed_evenly = _evenly_spaced([0.0] + thresholds + [1.0])
        else:
            if num_thresholds <= 1:
                raise ValueError(f"Argument `num_thresholds` must be an integer > 1. Received: num_thresholds="
                                 f"{num_thresholds}")
            self.num_thresholds = num_thresholds
            thresholds = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._thresholds_distributed_evenly = True
        self._thresholds = np.array([0.0 - epsilon()] + thresholds + [1.0 + epsilon()])
        self.curve = _CURVES[curve_key.lower()]
        self.summation_method = method.lower()
        super().__init__(name=name, dtype=dtype)
        self.multi_label, self.num_labels = multi_label, num_labels
        if label_weights is not None:
            self._label_weights_list = np.asarray(label_weights, np.float32).tolist()
            self.label_weights = convert_to_tensor(np.asarray(label_weights, np.float32))
        else:
            self._label_weights_list = self.label_weights = None
        self._from_logits = from_logits
        self._built = False
        if multi_label:
            if num_labels:
                self._build((None, num_labels))
        else:
            if num_labels:
                raise ValueError("`num_labels` is needed only when `multi_label` is True.")
            self._build(None)

    @property
    def thresholds(self):
        return list(self._thresholds)

    def _build(self, shape):
        if self.multi_label:
            if len(shape) != 2:
                raise ValueError(f"`y_pred` must have rank 2 when `multi_label=True`. Found rank {len(shape)}. Full "
                                 f"shape received for `y_pred`: {shape}")
            self._num_labels = shape[1]
            var_shape = (self.num_thresholds, self._num_labels)
        else:
            var_shape = (self.num_thresholds,)
        self._build_input_shape = shape
        self.true_positives = self.add_variable(var_shape, "zeros", name="true_positives")
        self.false_positives = self.add_variable(var_shape, "zeros", name="false_positives")
        self.true_negatives = self.add_variable(var_shape, "zeros", name="true_negatives")
        self.false_negatives = self.add_variable(var_shape, "zeros", name="false_negatives")
        self._built = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = _f(y_pred)
        if not self._built:
            self._build(y_pred.shape)
        if self._from_logits:
            y_pred = ops.sigmoid(y_pred)
        update_confusion_matrix_variables(
            {_TP: self.true_positives, _TN: self.true_negatives, _FP: self.false_positives,
             _FN: self.false_negatives}, y_true, y_pred, self.thresholds, self._thresholds_distributed_evenly,
            sample_weight=sample_weight, multi_label=self.multi_label,
            label_weights=None if self.multi_label else self.label_weights)

    def _over_labels(self, terms):
        """The area: the terms summed over thresholds, then (multi-label) averaged over labels."""
        if not self.multi_label:
            return ops.sum(terms)
        by_label = ops.sum(terms, axis=0)
        if self.label_weights is None:
            return ops.mean(by_label)
        lw = _on(self.label_weights, by_label)
        return _div_no_nan(ops.sum(by_label * lw), ops.sum(lw))

    def interpolate_pr_auc(self):
        """The PR area with precision interpolated between thresholds (Davis & Goadrich, 2006)."""
        n = self.num_thresholds
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        dtp = tp[:n - 1] - tp[1:]
        p = tp + fp
        dp = p[:n - 1] - p[1:]
        slope = _div_no_nan(dtp, ops.relu(dp))
        intercept = tp[1:] - slope * p[1:]
        both = ops.logical_and(ops.greater(p[:n - 1], 0.0), ops.greater(p[1:], 0.0))
        ratio = ops.where(both, _div_no_nan(p[:n - 1], ops.relu(p[1:])), 1.0)
        terms = _div_no_nan(slope * (dtp + intercept * ops.log(ratio)), ops.relu(tp[1:] + fn[1:]))
        return self._over_labels(terms)

    def result(self):
        if not self._built:
            return ops.zeros(())
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self.interpolate_pr_auc()
        n = self.num_thresholds
        tp, fp, tn, fn = self.true_positives, self.false_positives, self.true_negatives, self.false_negatives
        recall = _div_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _div_no_nan(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, _div_no_nan(tp, tp + fp)
        else:  # PRGAIN
            scale = _div_no_nan(tp + fn, tn + fp)
            no_tp = ops.equal(tp, 0.0)
            x = ops.relu(ops.where(no_tp, 0.0, 1.0 - scale * _div_no_nan(fn, tp)))
            y = ops.where(no_tp, 1.0, 1.0 - scale * _div_no_nan(fp, tp))
        if self.summation_method == "interpolation":
            heights = (y[:n - 1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = ops.minimum(y[:n - 1], y[1:])
        else:
            heights = ops.maximum(y[:n - 1], y[1:])
        return self._over_labels((x[:n - 1] - x[1:]) * heights)

    def get_config(self):
        config = {**super().get_config(), "num_thresholds": self.num_thresholds, "curve": self.curve,
                  "summation_method": self.summation_method, "multi_label": self.multi_label,
                  "num_labels": self.num_labels, "label_weights": self._label_weights_list,
                  "from_logits": self._from_logits}
        if self._init_from_thresholds:
            config["thresholds"] = [float(t) for t in self.thresholds[1:-1]]
        return config
