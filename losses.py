"""Losses by name or class, as `keras.losses`: per-sample values reduced with
"sum_over_batch_size" (default), "sum", "mean" or "none"."""
import re

import numpy as np

from . import ops
from .ops import ctc_loss  # noqa: F401  (keras.ops.ctc_loss, shared with `ctc` below)
from .backend.settings import epsilon
from .backend.tensor import Tensor, convert_to_tensor

_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def _t(x, dtype=None):
    return x if isinstance(x, Tensor) else convert_to_tensor(x, dtype=dtype)


def _f(x):
    x = _t(x)
    return x if x.dtype in ("float32", "bfloat16") else ops.cast(x, "float32")


def _in_dtype(x, dtype):
    """A float tensor (or a structure of them) cast to `dtype`; anything else as it is."""
    if isinstance(x, Tensor):
        if x.dtype != dtype and x.dtype in ("float32", "bfloat16"):
            mask = x._keras_mask
            x = ops.cast(x, dtype)
            x._keras_mask = mask
        return x
    if isinstance(x, (list, tuple)):
        return type(x)(_in_dtype(v, dtype) for v in x)
    if isinstance(x, dict):
        return {k: _in_dtype(v, dtype) for k, v in x.items()}
    return x


def _check_shapes(name, y_true, y_pred):
    if y_true.shape != y_pred.shape:
        if y_true.size == y_pred.size:
            return ops.reshape(y_true, y_pred.shape)
        raise ValueError(f"{name}: y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}; they must "
                         "match (for integer class labels use sparse_categorical_crossentropy)")
    return y_true


def _broadcast_pair(name, y_true, y_pred):
    """Keras's pairing for the elementwise losses: the same rank (`_same_rank`), then numpy's
    broadcasting, so a (batch, 1) prediction meets (batch, n) targets as in Keras. Shapes that do
    not broadcast raise here, naming the loss."""
    y_true, y_pred = _pair(y_true, y_pred)
    try:
        np.broadcast_shapes(tuple(y_true.shape), tuple(y_pred.shape))
    except ValueError:
        raise ValueError(f"{name}: y_true of shape {tuple(y_true.shape)} and y_pred of shape "
                         f"{tuple(y_pred.shape)} do not broadcast together; give the model one output per "
                         "target column (or reshape the targets)") from None
    return y_true, y_pred


def mean_squared_error(y_true, y_pred):
    y_true, y_pred = _broadcast_pair("mean_squared_error", y_true, y_pred)
    return ops.mean(ops.square(y_pred - y_true), axis=-1)


def mean_absolute_error(y_true, y_pred):
    y_true, y_pred = _broadcast_pair("mean_absolute_error", y_true, y_pred)
    return ops.mean(ops.abs(y_pred - y_true), axis=-1)


def huber(y_true, y_pred, delta=1.0):
    y_true, y_pred = _broadcast_pair("huber", y_true, y_pred)
    err = ops.abs(y_pred - y_true)
    quad = ops.minimum(err, delta)
    lin = err - quad
    return ops.mean(0.5 * ops.square(quad) + delta * lin, axis=-1)


def kl_divergence(y_true, y_pred):
    y_pred = _f(y_pred)
    y_true = _check_shapes("kl_divergence", _f(y_true), y_pred)
    yt = ops.clip(y_true, epsilon(), 1.0)
    yp = ops.clip(y_pred, epsilon(), 1.0)
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


def _same_rank(y_true, y_pred):
    """Keras's squeeze_or_expand_to_same_rank: a trailing axis of size 1 on one side is dropped (or,
    against a vector, added to the other side), so (batch,) meets (batch, 1)."""
    rt, rp = y_true.ndim, y_pred.ndim
    if rt == rp + 1 and y_true.shape[-1] == 1:
        if rp == 1:
            y_pred = ops.expand_dims(y_pred, -1)
        else:
            y_true = ops.squeeze(y_true, -1)
    elif rp == rt + 1 and y_pred.shape[-1] == 1:
        if rt == 1:
            y_true = ops.expand_dims(y_true, -1)
        else:
            y_pred = ops.squeeze(y_pred, -1)
    return y_true, y_pred


def _pair(y_true, y_pred):
    """Both as float32 tensors of the same rank."""
    return _same_rank(_f(y_true), _f(y_pred))


def _hinge_labels(y_true):
    """Labels in {0, 1} become {-1, 1}; labels already in {-1, 1} (or anything else) stay. Decided
    on the device (no read-back), for the whole batch at once, as Keras does."""
    binary = ops.all(ops.logical_or(ops.equal(y_true, 0.0), ops.equal(y_true, 1.0)))
    return ops.where(binary, y_true * 2.0 - 1.0, y_true)


def hinge(y_true, y_pred):
    """mean(maximum(1 - y_true * y_pred, 0), axis=-1); labels in {0, 1} are read as {-1, 1}."""
    y_true, y_pred = _pair(y_true, y_pred)
    return ops.mean(ops.relu(1.0 - _hinge_labels(y_true) * y_pred), axis=-1)


def squared_hinge(y_true, y_pred):
    """mean(square(maximum(1 - y_true * y_pred, 0)), axis=-1); labels in {0, 1} are read as {-1, 1}."""
    y_true, y_pred = _pair(y_true, y_pred)
    return ops.mean(ops.square(ops.relu(1.0 - _hinge_labels(y_true) * y_pred)), axis=-1)


def categorical_hinge(y_true, y_pred):
    """maximum(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0) over the last axis
    (one-hot y_true)."""
    y_true, y_pred = _pair(y_true, y_pred)
    pos = ops.sum(y_true * y_pred, axis=-1)
    neg = ops.max((1.0 - y_true) * y_pred, axis=-1)
    return ops.relu(neg - pos + 1.0)


def poisson(y_true, y_pred):
    """mean(y_pred - y_true * log(y_pred + epsilon), axis=-1)."""
    y_true, y_pred = _pair(y_true, y_pred)
    return ops.mean(y_pred - y_true * ops.log(y_pred + epsilon()), axis=-1)


def log_cosh(y_true, y_pred):
    """mean(log(cosh(y_pred - y_true)), axis=-1), as x + softplus(-2x) - log(2) (no overflow)."""
    y_true, y_pred = _pair(y_true, y_pred)
    x = y_pred - y_true
    return ops.mean(x + ops.softplus(x * -2.0) - 0.6931471805599453, axis=-1)


def _l2_normalize(x, axis):
    # x / max(||x||, epsilon), with the bound inside the square root so that the gradient at
    # x = 0 is finite
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), epsilon() * epsilon()))


def cosine_similarity(y_true, y_pred, axis=-1):
    """-sum(l2_normalize(y_true) * l2_normalize(y_pred), axis): -1 when the vectors point the same
    way, so that minimizing it aligns them."""
    y_true, y_pred = _pair(y_true, y_pred)
    return -ops.sum(_l2_normalize(y_true, axis) * _l2_normalize(y_pred, axis), axis=axis)


def mean_absolute_percentage_error(y_true, y_pred):
    """100 * mean(|(y_true - y_pred) / maximum(|y_true|, epsilon)|, axis=-1)."""
    y_true, y_pred = _pair(y_true, y_pred)
    return 100.0 * ops.mean(ops.abs((y_true - y_pred) / ops.maximum(ops.abs(y_true), epsilon())), axis=-1)


def mean_squared_logarithmic_error(y_true, y_pred):
    """mean(square(log(maximum(y_pred, eps) + 1) - log(maximum(y_true, eps) + 1)), axis=-1)."""
    y_true, y_pred = _pair(y_true, y_pred)
    d = ops.log(ops.maximum(y_pred, epsilon()) + 1.0) - ops.log(ops.maximum(y_true, epsilon()) + 1.0)
    return ops.mean(ops.square(d), axis=-1)


def binary_focal_crossentropy(y_true, y_pred, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False,
                              label_smoothing=0.0, axis=-1):
    """Binary crossentropy scaled by (1 - p_t) ** gamma, p_t the probability given to the true
    label (Lin et al., 2018); with apply_class_balancing, also by alpha for positives and
    1 - alpha for negatives."""
    y_pred = _f(y_pred)
    y_true = _check_shapes("binary_focal_crossentropy", _f(y_true), y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        y_pred = ops.sigmoid(y_pred)
    bce = ops.binary_crossentropy(y_true, y_pred, from_logits=False)
    p_t = y_true * y_pred + (1.0 - y_true) * (1.0 - y_pred)
    focal = ops.power(1.0 - p_t, gamma) * bce
    if apply_class_balancing:
        focal = (y_true * alpha + (1.0 - y_true) * (1.0 - alpha)) * focal
    return ops.mean(focal, axis=axis)


def categorical_focal_crossentropy(y_true, y_pred, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
                                   axis=-1):
    """Categorical crossentropy with each class's term scaled by alpha * (1 - p) ** gamma."""
    if isinstance(axis, bool):
        raise ValueError(f"categorical_focal_crossentropy: axis must be an int, received axis={axis!r}")
    y_pred = _f(y_pred)
    y_true = _check_shapes("categorical_focal_crossentropy", _f(y_true), y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / y_pred.shape[axis]
    if from_logits:
        y_pred = ops.softmax(y_pred, axis=axis)
    p = ops.clip(y_pred / ops.sum(y_pred, axis=axis, keepdims=True), epsilon(), 1.0 - epsilon())
    terms = alpha * ops.power(1.0 - p, gamma) * (-y_true * ops.log(p))
    return ops.sum(terms, axis=axis)


def dice(y_true, y_pred, axis=None):
    """1 - 2 * sum(y_true * y_pred) / (sum(y_true) + sum(y_pred) + epsilon), the sums over `axis`
    (all axes by default: one value for the whole batch)."""
    y_pred = _f(y_pred)
    y_true = _f(y_true)
    inter = ops.sum(y_true * y_pred, axis=axis)
    return 1.0 - 2.0 * inter / (ops.sum(y_true, axis=axis) + ops.sum(y_pred, axis=axis) + epsilon())


def tversky(y_true, y_pred, alpha=0.5, beta=0.5, axis=None):
    """1 - TP / (TP + alpha * FP + beta * FN), with TP = sum(y_true * y_pred),
    FP = sum((1 - y_pred) * y_true), FN = sum(y_pred * (1 - y_true)) over `axis` (Keras's
    naming: its FP and FN are the other way round from the paper's; alpha = beta = 0.5 is Dice)."""
    y_pred = _f(y_pred)
    y_true = _f(y_true)
    tp = ops.sum(y_true * y_pred, axis=axis)
    fp = ops.sum((1.0 - y_pred) * y_true, axis=axis)
    fn = ops.sum(y_pred * (1.0 - y_true), axis=axis)
    return 1.0 - tp / (tp + alpha * fp + beta * fn + epsilon())


def _class_labels(y_true, name):
    """Integer class labels of shape (batch,): float labels (as a Loss's __call__ passes them) are
    cast, a trailing axis of size 1 is dropped."""
    y_true = _t(y_true)
    if y_true.ndim == 2 and y_true.shape[-1] == 1:
        y_true = ops.reshape(y_true, y_true.shape[:1])
    if y_true.ndim != 1:
        raise ValueError(f"{name}: y_true must hold one integer class label per sample, shape (batch,) or (batch, 1); "
                         f"received shape {y_true.shape}")
    return y_true if y_true.dtype in ("int32", "int64") else ops.cast(y_true, "int64")


def _check_q(q, where):
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 1:
        raise ValueError(f"{where}: q must be in the interval (0, 1), received q={q!r}")


def categorical_generalized_cross_entropy(y_true, y_pred, q):
    """Generalized cross entropy (Zhang & Sabuncu, 2018), robust to noisy labels: (1 - p ** q) / q
    with p the probability y_pred gives to the true class; y_true holds integer class labels
    (batch,) or (batch, 1), y_pred probabilities (batch, num_classes). q -> 0 approaches cross
    entropy, q -> 1 mean absolute error."""
    _check_q(q, "categorical_generalized_cross_entropy")
    y_pred = _f(y_pred)
    if y_pred.ndim != 2:
        raise ValueError("categorical_generalized_cross_entropy: y_pred must be class probabilities of shape (batch, "
                         f"num_classes), received shape {y_pred.shape}")
    labels = _class_labels(y_true, "categorical_generalized_cross_entropy")
    if labels.shape[0] != y_pred.shape[0]:
        raise ValueError(f"categorical_generalized_cross_entropy: {labels.shape[0]} labels for {y_pred.shape[0]} "
                         "predictions")
    labels = _on_device(labels, y_pred.device)
    p = ops.sum(y_pred * ops.one_hot(labels, y_pred.shape[-1]), axis=-1)
    return (1.0 - ops.power(p, float(q))) / float(q)


def circle(y_true, y_pred, ref_labels=None, ref_embeddings=None, remove_diagonal=True, gamma=80, margin=0.4):
    """Circle loss (Sun et al., 2020) of L2-normalized embeddings y_pred (batch, dim) with integer
    labels y_true (batch,), against reference embeddings and labels (default: the batch itself),
    as Keras's: per anchor, softplus(logsumexp over positives of -gamma * a_p * (margin - d) +
    logsumexp over negatives of gamma * a_n * (1 - margin - d)), with d the cosine distance
    1 - y_pred @ ref.T (clipped at 0), a_p = relu(margin + d) and a_n = relu(1 + margin - d).
    `remove_diagonal` leaves each sample out of its own positives. An anchor without positives
    (or negatives) gets a loss of 0; the Circle class averages over the anchors with a loss > 0."""
    y_pred = _f(y_pred)
    if y_pred.ndim != 2:
        raise ValueError(f"circle: y_pred must be embeddings of shape (batch, dim), received shape {y_pred.shape}")
    labels = _class_labels(y_true, "circle")
    ref = y_pred if ref_embeddings is None else _f(ref_embeddings)
    ref_labels = labels if ref_labels is None else _class_labels(ref_labels, "circle (ref_labels)")
    if ref.ndim != 2 or ref.shape[-1] != y_pred.shape[-1]:
        raise ValueError(f"circle: ref_embeddings must have shape (n, {y_pred.shape[-1]}) to match y_pred "
                         f"{y_pred.shape}, received {ref.shape}")
    if labels.shape[0] != y_pred.shape[0] or ref_labels.shape[0] != ref.shape[0]:
        raise ValueError(f"circle: {labels.shape[0]} labels for {y_pred.shape[0]} embeddings, {ref_labels.shape[0]} "
                         f"reference labels for {ref.shape[0]} reference embeddings; they must match")
    dev = y_pred.device
    labels, ref_labels, ref = (_on_device(t, dev) for t in (labels, ref_labels, ref))
    distances = ops.maximum(1.0 - ops.matmul(y_pred, ops.transpose(ref)), 0.0)
    positive = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(ref_labels, 0))
    negative = ops.logical_not(positive)
    if remove_diagonal:
        positive = ops.logical_and(positive, ops.logical_not(ops.eye(labels.shape[0], ref_labels.shape[0],
                                                                     dtype="bool")))
    pos_weights = ops.maximum((margin + distances) * ops.cast(positive, "float32"), 0.0)
    neg_weights = ops.maximum((1.0 + margin - distances) * ops.cast(negative, "float32"), 0.0)
    pos = (-1.0 * gamma) * pos_weights * (margin - distances)
    neg = gamma * neg_weights * ((1.0 - margin) - distances)
    p_loss = ops.logsumexp(ops.where(positive, pos, float("-inf")), axis=1)
    n_loss = ops.logsumexp(ops.where(negative, neg, float("-inf")), axis=1)
    return ops.softplus(p_loss + n_loss)


def _on_device(t, device):
    return t if t.device is device else t.to(device)


def ctc(y_true, y_pred):
    """CTC loss (keras.losses.ctc): y_true (batch, max_label_length) integer labels padded with 0,
    which is also the blank class; y_pred (batch, time, classes) logits. Every sequence uses all
    the time steps."""
    y_true, y_pred = _t(y_true), _f(y_pred)
    if y_true.ndim != 2:
        raise ValueError("ctc: targets y_true are expected to be a tensor of shape (batch_size, max_length) in "
                         f"integer format. Received: y_true.shape={y_true.shape}")
    if y_pred.ndim != 3:
        raise ValueError("ctc: logits y_pred are expected to be a tensor of shape (batch_size, max_length, "
                         f"num_classes). Received: y_pred.shape={y_pred.shape}")
    labels = ops.cast(y_true, "int64")
    label_length = ops.sum(ops.cast(ops.not_equal(labels, 0), "int64"), axis=-1)
    return ctc_loss(labels, y_pred, label_length, None, mask_index=0)


mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error
logcosh = log_cosh
bce = BCE = binary_crossentropy


def reduce_values(values, sample_weight=None, reduction="sum_over_batch_size"):
    """Applies sample weights and a reduction, as Keras's reduce_weighted_values: the weights meet
    the values at the same rank (a trailing axis of size 1 on either side matched, as Keras does),
    and lower-rank weights broadcast over the values' trailing axes (where Keras would fail);
    "mean_with_sample_weight" divides by the sum of the weights as given."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"Invalid reduction {reduction!r}; expected one of {[r for r in _REDUCTIONS if r]}")
    values = _f(values)
    if sample_weight is not None:
        sw = _f(sample_weight)
        values, sw = _same_rank(values, sw)
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
        return total / ops.maximum(ops.sum(sw), epsilon())
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
        from .dtype_policies import get as _policy
        self.dtype = _policy(dtype, type(self).__name__).compute_dtype if dtype is not None else "float32"
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"{type(self).__name__}: dtype must be a float dtype ('float32' or 'bfloat16'), "
                             f"received {dtype!r}")

    def call(self, y_true, y_pred):
        raise NotImplementedError

    _float_inputs = True  # as Keras: `call` receives float tensors, whatever came in (numpy, integer labels)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self._float_inputs:
            y_true, y_pred = _f(y_true), _f(y_pred)
        # predictions in the loss's dtype (float32): a mixed precision model's bfloat16 outputs are
        # scored in float32, as Keras's losses do
        if isinstance(y_pred, np.ndarray) and y_pred.dtype.kind == "f":
            y_pred = _t(y_pred)
        if isinstance(y_true, np.ndarray) and y_true.dtype.kind == "f":
            y_true = _t(y_true)
        y_pred = _in_dtype(y_pred, self.dtype)
        if isinstance(y_true, Tensor) and y_true.dtype in ("float32", "bfloat16"):
            y_true = _in_dtype(y_true, self.dtype)
        return reduce_values(self.call(y_true, y_pred), sample_weight, self.reduction)

    def get_config(self):
        config = {"name": self.name, "reduction": self.reduction}
        if self.dtype != "float32":
            config["dtype"] = self.dtype
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _snake(n):
    """Keras's to_snake_case: "KLDivergence" -> "kl_divergence", "AUC" -> "auc", "MeanIoU" -> "mean_io_u"."""
    n = re.sub(r"\W+", "", n)
    n = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", n)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", n).lower()


class LossFunctionWrapper(Loss):
    _float_inputs = False  # the built-in functions take integer labels as they are

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name=name or fn.__name__, reduction=reduction, dtype=dtype)
        self.fn, self._fn_kwargs = fn, kwargs

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        config = {**super().get_config(), **self._fn_kwargs}
        if type(self) is LossFunctionWrapper:
            config["fn"] = _fn_name(self.fn)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "fn" in config:
            config["fn"] = _fn_from_config(config["fn"])
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__}({_fn_name(self.fn)}, kwargs={self._fn_kwargs})>"


def _fn_name(fn):
    for k, v in _BY_NAME.items():
        if v is fn:
            return fn.__name__
    from .saving import get_registered_name
    return get_registered_name(fn)


def _fn_from_config(fn):
    """A function named in a config: a string, or Keras's {"class_name": "function", "config": name}."""
    if callable(fn):
        return fn
    name = fn.get("registered_name") or fn.get("config") if isinstance(fn, dict) else fn
    if name in _BY_NAME:
        return _BY_NAME[name]
    from .saving import get_registered_object
    obj = get_registered_object(name)
    if obj is None:
        raise ValueError(f"Unknown loss function {name!r} in the config: register it with "
                         "@lamina.saving.register_keras_serializable() or pass it in custom_objects")
    return obj


def _wrapper(cls_name, fn, name, *params, doc=None):
    """A LossFunctionWrapper subclass with Keras's signature: `params` lists the arguments in
    Keras's order, each a name of `fn`'s keyword arguments with its default as (name, default),
    or one of "reduction", "name", "dtype"."""
    order = [p if isinstance(p, str) else p[0] for p in params]
    defaults = {"reduction": "sum_over_batch_size", "name": name, "dtype": None}
    defaults.update(p for p in params if not isinstance(p, str))

    def __init__(self, *args, **kwargs):
        if len(args) > len(order):
            raise TypeError(f"{cls_name}() takes at most {len(order)} positional arguments ({order}), "
                            f"{len(args)} given")
        values = dict(defaults)
        for k, v in zip(order, args):
            values[k] = v
        for k, v in kwargs.items():
            if k not in defaults:
                raise TypeError(f"{cls_name}: unexpected argument {k!r}; accepted: {order}")
            if k in order[:len(args)]:
                raise TypeError(f"{cls_name}: got multiple values for argument {k!r}")
            values[k] = v
        reduction, nm, dtype = values.pop("reduction"), values.pop("name"), values.pop("dtype")
        LossFunctionWrapper.__init__(self, fn, reduction=reduction, name=nm, dtype=dtype, **values)
        for k, v in values.items():
            setattr(self, k, v)
    __init__.__doc__ = f"{cls_name}({', '.join(f'{k}={defaults[k]!r}' for k in order)})"
    return type(cls_name, (LossFunctionWrapper,), {"__init__": __init__, "__doc__": doc or fn.__doc__,
                                                    "__module__": __name__})


_R, _N, _D = "reduction", "name", "dtype"
MeanSquaredError = _wrapper("MeanSquaredError", mean_squared_error, "mean_squared_error", _R, _N, _D)
MeanAbsoluteError = _wrapper("MeanAbsoluteError", mean_absolute_error, "mean_absolute_error", _R, _N, _D)
MeanAbsolutePercentageError = _wrapper("MeanAbsolutePercentageError", mean_absolute_percentage_error,
                                       "mean_absolute_percentage_error", _R, _N, _D)
MeanSquaredLogarithmicError = _wrapper("MeanSquaredLogarithmicError", mean_squared_logarithmic_error,
                                       "mean_squared_logarithmic_error", _R, _N, _D)
CosineSimilarity = _wrapper("CosineSimilarity", cosine_similarity, "cosine_similarity", ("axis", -1), _R, _N, _D)
Huber = _wrapper("Huber", huber, "huber_loss", ("delta", 1.0), _R, _N, _D)
LogCosh = _wrapper("LogCosh", log_cosh, "log_cosh", _R, _N, _D)
Hinge = _wrapper("Hinge", hinge, "hinge", _R, _N, _D)
SquaredHinge = _wrapper("SquaredHinge", squared_hinge, "squared_hinge", _R, _N, _D)
CategoricalHinge = _wrapper("CategoricalHinge", categorical_hinge, "categorical_hinge", _R, _N, _D)
KLDivergence = _wrapper("KLDivergence", kl_divergence, "kl_divergence", _R, _N, _D)
Poisson = _wrapper("Poisson", poisson, "poisson", _R, _N, _D)
BinaryCrossentropy = _wrapper("BinaryCrossentropy", binary_crossentropy, "binary_crossentropy", ("from_logits", False),
                              ("label_smoothing", 0.0), ("axis", -1), _R, _N, _D)
BinaryFocalCrossentropy = _wrapper("BinaryFocalCrossentropy", binary_focal_crossentropy, "binary_focal_crossentropy",
                                   ("apply_class_balancing", False), ("alpha", 0.25), ("gamma", 2.0),
                                   ("from_logits", False), ("label_smoothing", 0.0), ("axis", -1), _R, _N, _D)
CategoricalCrossentropy = _wrapper("CategoricalCrossentropy", categorical_crossentropy, "categorical_crossentropy",
                                   ("from_logits", False), ("label_smoothing", 0.0), ("axis", -1), _R, _N, _D)
CategoricalFocalCrossentropy = _wrapper("CategoricalFocalCrossentropy", categorical_focal_crossentropy,
                                        "categorical_focal_crossentropy", ("alpha", 0.25), ("gamma", 2.0),
                                        ("from_logits", False), ("label_smoothing", 0.0), ("axis", -1), _R, _N, _D)
SparseCategoricalCrossentropy = _wrapper("SparseCategoricalCrossentropy", sparse_categorical_crossentropy,
                                         "sparse_categorical_crossentropy", ("from_logits", False),
                                         ("ignore_class", None), _R, ("axis", -1), _N, _D)
CTC = _wrapper("CTC", ctc, "ctc", _R, _N, _D)
Dice = _wrapper("Dice", dice, "dice", _R, _N, ("axis", None), _D)
Tversky = _wrapper("Tversky", tversky, "tversky", ("alpha", 0.5), ("beta", 0.5), _R, _N, ("axis", None), _D)

class CategoricalGeneralizedCrossEntropy(LossFunctionWrapper):
    """Generalized cross entropy of integer labels and class probabilities (see
    `categorical_generalized_cross_entropy`); `q` in (0, 1)."""

    def __init__(self, q=0.5, reduction="sum_over_batch_size", name="categorical_generalized_cross_entropy",
                 dtype=None):
        _check_q(q, "CategoricalGeneralizedCrossEntropy")
        super().__init__(categorical_generalized_cross_entropy, reduction=reduction, name=name, dtype=dtype, q=q)
        self.q = q


class Circle(LossFunctionWrapper):
    """The circle loss of L2-normalized embeddings (see `circle`), reduced as Keras reduces it:
    anchors whose loss is 0 (no positive or no negative reference) are masked out, so
    "sum_over_batch_size" averages over the anchors that have a loss.

        model.compile(optimizer="adam", loss=lamina.losses.Circle())   # after a UnitNormalization layer
    """

    def __init__(self, gamma=80.0, margin=0.4, remove_diagonal=True, reduction="sum_over_batch_size",
                 name="circle", dtype=None):
        super().__init__(circle, reduction=reduction, name=name, dtype=dtype, gamma=gamma, margin=margin,
                         remove_diagonal=remove_diagonal)
        self.gamma, self.margin, self.remove_diagonal = gamma, margin, remove_diagonal

    def __call__(self, y_true, y_pred, sample_weight=None):
        values = self.call(y_true, y_pred)
        mask = ops.cast(ops.greater(values, 0.0), "float32")
        if self.reduction in ("sum_over_batch_size", "mean"):
            # Keras's apply_mask: kept values weigh total / kept, so the mean is over the kept ones
            kept = ops.sum(mask)
            mask = mask * ops.where(ops.greater(kept, 0.0), float(values.size) / ops.maximum(kept, 1.0), 0.0)
        if sample_weight is not None:
            mask, sw = _same_rank(mask, _f(sample_weight))
            if sw.ndim != mask.ndim or sw.size != mask.size:
                raise ValueError(f"Circle: sample_weight of shape {sw.shape} does not match the {mask.shape[0]} "
                                 "anchors; pass one weight per sample")
            mask = mask * ops.reshape(_on_device(sw, mask.device), mask.shape)
        return reduce_values(values, mask, self.reduction)


_FUNCTIONS = (mean_squared_error, mean_absolute_error, mean_absolute_percentage_error, mean_squared_logarithmic_error,
              cosine_similarity, huber, log_cosh, hinge, squared_hinge, categorical_hinge, kl_divergence, poisson,
              binary_crossentropy, binary_focal_crossentropy, categorical_crossentropy, categorical_focal_crossentropy,
              sparse_categorical_crossentropy, ctc, dice, tversky, circle, categorical_generalized_cross_entropy)
_BY_NAME = {f.__name__: f for f in _FUNCTIONS}
_BY_NAME.update({
    "mse": mean_squared_error, "MSE": mean_squared_error, "mae": mean_absolute_error, "MAE": mean_absolute_error,
    "mape": mean_absolute_percentage_error, "MAPE": mean_absolute_percentage_error,
    "msle": mean_squared_logarithmic_error, "MSLE": mean_squared_logarithmic_error,
    "bce": binary_crossentropy, "BCE": binary_crossentropy, "huber_loss": huber, "logcosh": log_cosh,
    "kld": kl_divergence, "KLD": kl_divergence, "kullback_leibler_divergence": kl_divergence,
})
_CLASSES = {c.__name__: c for c in (
    MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredLogarithmicError, CosineSimilarity,
    Huber, LogCosh, Hinge, SquaredHinge, CategoricalHinge, KLDivergence, Poisson, BinaryCrossentropy,
    BinaryFocalCrossentropy, CategoricalCrossentropy, CategoricalFocalCrossentropy, SparseCategoricalCrossentropy,
    CTC, Dice, Tversky, Circle, CategoricalGeneralizedCrossEntropy, LossFunctionWrapper)}


def get(identifier):
    """A loss callable from a name (a function's, an alias such as "mse", or a class's), a Loss, a
    class, a config dict or a function: as keras.losses.get, names of functions give the function
    and class names give an instance."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
        raise ValueError(f"Unknown loss {identifier!r}; expected one of {sorted(_BY_NAME)}, a Loss class name such as "
                         "'CategoricalCrossentropy', or a callable")
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        return identifier
    raise TypeError(f"Could not interpret loss {identifier!r}: expected a name, a Loss or a callable")


def serialize(loss):
    """A Loss as {"class_name", "config"}; a built-in function as its name."""
    if isinstance(loss, Loss):
        return {"class_name": type(loss).__name__, "config": loss.get_config()}
    for k, v in _BY_NAME.items():
        if v is loss:
            return k
    return getattr(loss, "__name__", None)


def deserialize(name, custom_objects=None):
    """The loss a name or a config (lamina's or Keras's serialized form) describes."""
    from .saving import deserialize_from_table
    return deserialize_from_table(name, _CLASSES, get, _fn_from_config, "loss", custom_objects)
