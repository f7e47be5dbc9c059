"""metrics.py (with _confusion_metrics.py and _score_metrics.py): stateful metrics with their
state in variables, custom Metric subclasses written as the Keras guides write them, and the
built-in metrics against numpy references, in compile(), and against Keras (when installed)."""
import numpy as np
import pytest

import lamina
from lamina import layers, losses, metrics, ops
from keras_ref import keras_or_none


def test_mean_keeps_its_totals_in_variables():
    m = metrics.Mean(name="avg")
    assert [v.name for v in m.variables] == ["total", "count"]
    assert float(m.result()) == 0.0
    m.update_state([1.0, 2.0, 3.0])
    m.update_state(np.array([10.0]), sample_weight=np.array([2.0]))
    m.update_state(5.0, sample_weight=4)  # a batch's mean, weighted by its batch size
    assert float(m.result()) == pytest.approx((6 + 20 + 20) / (3 + 2 + 4))
    m.reset_state()
    assert float(m.result()) == 0.0 and float(m.count) == 0.0
    acc = metrics.SparseCategoricalAccuracy()
    acc.update_state(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]))
    assert float(acc.result()) == 0.5 and acc.name == "sparse_categorical_accuracy"


class CategoricalTruePositives(metrics.Metric):  # the Keras guide's ("training & evaluation")
    def __init__(self, name="categorical_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.reshape(ops.argmax(y_pred, axis=1), (-1, 1))
        values = ops.cast(y_true, "int32") == ops.cast(y_pred, "int32")
        values = ops.cast(values, "float32")
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            values = ops.multiply(values, sample_weight)
        self.true_positives.assign_add(ops.sum(values))

    def result(self):
        return self.true_positives


class OldStyleCounter(metrics.Metric):  # Keras 2's add_weight, a non-zero initial value, own reset
    def __init__(self, name="counter", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n = self.add_weight(name="n", initializer="ones")
        self.resets = 0

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.n.assign(self.n + 1.0)

    def result(self):
        return self.n

    def reset_state(self):
        self.resets += 1
        super().reset_state()


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x[:, :1] + x[:, 1:2] > 0).astype(np.int64)
    return x, y


def _fit_with_metrics(lib, ctp, x, y, weights):
    model = lib.Sequential([lib.Input(shape=(4,)), lib.layers.Dense(2, activation="softmax")])
    model.set_weights(weights)
    model.compile(optimizer=lib.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=[ctp])
    h = model.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0)
    return model, h.history


def test_custom_metric_in_fit_and_evaluate():
    x, y = _data()
    rng = np.random.default_rng(1)
    weights = [rng.standard_normal((4, 2)).astype(np.float32), np.zeros(2, np.float32)]
    ctp, counter = CategoricalTruePositives(), OldStyleCounter()
    model = lamina.Sequential([lamina.Input(shape=(4,)), layers.Dense(2, activation="softmax")])
    model.set_weights(weights)
    model.compile(optimizer=lamina.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                  metrics=[ctp, counter])
    h = model.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0).history
    # reset at the start of each epoch (so per-epoch counts), updated per batch: 3 batches -> 1 + 3
    assert h["counter"] == [4.0, 4.0, 4.0] and counter.resets == 2  # epochs 2 and 3 (built in epoch 1)
    assert all(0 <= v <= len(x) for v in h["categorical_true_positives"])
    loss, tp, n = model.evaluate(x, y, batch_size=32, verbose=0)
    right = int((model.predict(x, verbose=0).argmax(1) == y[:, 0]).sum())
    assert tp == right and n == 4.0
    assert [v.name for v in ctp.variables] == ["ctp"]
    with pytest.raises(RuntimeError, match="super"):
        class Forgot(metrics.Metric):
            def __init__(self):
                self.v = self.add_variable((), "zeros")
        Forgot()
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference run")

    class KerasCTP(keras.metrics.Metric):
        def __init__(self, name="categorical_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            ko = keras.ops
            y_pred = ko.reshape(ko.argmax(y_pred, axis=1), (-1, 1))
            values = ko.cast(ko.cast(y_true, "int32") == ko.cast(y_pred, "int32"), "float32")
            self.true_positives.assign_add(ko.sum(values))

        def result(self):
            return self.true_positives.value  # (the variable itself trips this JAX version's tracing)
    _, want = _fit_with_metrics(keras, KerasCTP(), x, y, weights)
    _, got = _fit_with_metrics(lamina, CategoricalTruePositives(), x, y, weights)
    assert got["categorical_true_positives"] == want["categorical_true_positives"]
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)


# ---- numpy references ------------------------------------------------------------------------------
EPS = 1e-7


def np_counts(y, p, thresholds, sw=None):
    """tp, fp, tn, fn at each threshold: a prediction is positive above it, a label when non-zero."""
    w = np.ones(np.size(p)) if sw is None else np.broadcast_to(sw, np.shape(p)).ravel()  # sw: broadcastable to p
    y, p = np.asarray(y, np.float64).ravel() != 0, np.asarray(p, np.float64).ravel()
    above = p[None, :] > np.asarray(thresholds)[:, None]
    return {"tp": (above & y) @ w, "fp": (above & ~y) @ w, "tn": (~above & ~y) @ w, "fn": (~above & y) @ w}


def np_auc(c, curve="ROC", method="interpolation"):
    """Keras's Riemann sum over the counts (Davis & Goadrich interpolation for PR)."""
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]

    def div(a, b):
        return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b))
    if curve == "PR" and method == "interpolation":
        dtp, p = tp[:-1] - tp[1:], tp + fp
        dp = p[:-1] - p[1:]
        slope = div(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        ratio = np.where((p[:-1] > 0) & (p[1:] > 0), div(p[:-1], np.maximum(p[1:], 0)), 1.0)
        return np.sum(div(slope * (dtp + intercept * np.log(ratio)), np.maximum(tp[1:] + fn[1:], 0)))
    x, yv = (div(fp, fp + tn), div(tp, tp + fn)) if curve == "ROC" else (div(tp, tp + fn), div(tp, tp + fp))
    h = {"interpolation": (yv[:-1] + yv[1:]) / 2, "minoring": np.minimum(yv[:-1], yv[1:]),
         "majoring": np.maximum(yv[:-1], yv[1:])}[method]
    return np.sum((x[:-1] - x[1:]) * h)


def _auc_thresholds(n):
    return np.array([-EPS] + [(i + 1) / (n - 1) for i in range(n - 2)] + [1 + EPS])


def _binary(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, shape).astype(np.float32), rng.random(shape).astype(np.float32)


CONF_SHAPES = [(20,), (8, 3), (4, 3, 5)]


def _weights(shape, seed):
    return np.random.default_rng(seed).integers(0, 4, shape[:1]).astype(np.float32)


@pytest.mark.parametrize("shape", CONF_SHAPES, ids=str)
@pytest.mark.parametrize("thresholds", [None, 0.3, [0.1, 0.5, 0.9], [0.0, 0.25, 0.5, 0.75, 1.0]], ids=str)
def test_confusion_counts_against_numpy(shape, thresholds):
    ts = [0.5] if thresholds is None else np.atleast_1d(thresholds).tolist()
    for cls, key in ((metrics.TruePositives, "tp"), (metrics.FalsePositives, "fp"), (metrics.TrueNegatives, "tn"),
                     (metrics.FalseNegatives, "fn")):
        m = cls(thresholds=thresholds)
        want = np.zeros(len(ts))
        for seed in (0, 1):  # two batches: the counts accumulate
            y, p = _binary(shape, seed)
            sw = _weights(shape, seed + 5) if seed else None
            m.update_state(y, p, sample_weight=sw)
            want = want + np_counts(y, p, ts, None if sw is None else sw.reshape((-1,) + (1,) * (len(shape) - 1)))[key]
        got = m.result().numpy()
        assert got.shape == (() if len(ts) == 1 else (len(ts),))
        np.testing.assert_allclose(got, want if len(ts) > 1 else want[0], rtol=1e-6)
        assert [v.name for v in m.variables] == ["accumulator"]
        m.reset_state()
        assert np.all(m.result().numpy() == 0)


def _np_top_k_filter(p, k):
    keep = np.zeros_like(p, bool)
    np.put_along_axis(keep, np.argsort(-p, axis=-1, kind="stable")[..., :k], True, axis=-1)
    return np.where(keep, p, -1e10)


@pytest.mark.parametrize("kwargs", [{}, {"thresholds": [0.2, 0.6]}, {"top_k": 2}, {"class_id": 1},
                                    {"class_id": 2, "top_k": 1, "thresholds": 0.3},
                                    {"thresholds": [0.0, 0.5, 1.0]}], ids=str)
def test_precision_recall_against_numpy(kwargs):
    y, p = _binary((12, 4), 2)
    sw = _weights((12,), 3)
    ts = np.atleast_1d(kwargs.get("thresholds", 0.5 if "top_k" not in kwargs else -1e10)).tolist()
    pf, yf = (_np_top_k_filter(p, kwargs["top_k"]) if "top_k" in kwargs else p), y
    if "class_id" in kwargs:
        pf, yf = pf[:, kwargs["class_id"]], y[:, kwargs["class_id"]]
    c = np_counts(yf, pf, ts, sw[:, None] if pf.ndim == 2 else sw)
    ratio = lambda a, b: np.divide(a, b, out=np.zeros_like(a), where=b != 0)  # noqa: E731  (0 where b == 0)
    for cls, want in ((metrics.Precision, ratio(c["tp"], c["tp"] + c["fp"])),
                      (metrics.Recall, ratio(c["tp"], c["tp"] + c["fn"]))):
        m = cls(**kwargs)
        m.update_state(y, p, sample_weight=sw)
        np.testing.assert_allclose(m.result().numpy(), want if len(ts) > 1 else want[0], rtol=1e-6)
    assert float(metrics.Precision()([0, 0, 0], [0.1, 0.2, 0.3])) == 0.0  # no predicted positives: 0, not nan


@pytest.mark.parametrize("shape", CONF_SHAPES, ids=str)
@pytest.mark.parametrize("curve,method", [("ROC", "interpolation"), ("ROC", "minoring"), ("ROC", "majoring"),
                                          ("PR", "interpolation"), ("PR", "majoring"), ("PR", "minoring")])
def test_auc_against_numpy(shape, curve, method):
    for num_thresholds in (200, 9):
        m = metrics.AUC(num_thresholds=num_thresholds, curve=curve, summation_method=method)
        ts = _auc_thresholds(num_thresholds)
        total = None
        for seed in (4, 5):
            y, p = _binary(shape, seed)
            sw = _weights(shape, seed) if seed == 5 else None
            m.update_state(y, p, sample_weight=sw)
            c = np_counts(y, p, ts, None if sw is None else sw.reshape((-1,) + (1,) * (len(shape) - 1)))
            total = c if total is None else {k: total[k] + c[k] for k in c}
        assert float(m.result()) == pytest.approx(np_auc(total, curve, method), rel=1e-5, abs=1e-6)
        assert [v.shape for v in m.variables] == [(num_thresholds,)] * 4


def test_auc_given_thresholds_multi_label_and_logits():
    y, p = _binary((30, 3), 6)
    m = metrics.AUC(thresholds=[0.8, 0.2, 0.5])  # sorted, with -eps and 1 + eps added
    m.update_state(y, p)
    assert m.num_thresholds == 5 and m.thresholds[1:-1] == [0.2, 0.5, 0.8]
    assert float(m.result()) == pytest.approx(np_auc(np_counts(y, p, [-EPS, 0.2, 0.5, 0.8, 1 + EPS])), rel=1e-6)
    ts = _auc_thresholds(50)
    per_label = [np_auc(np_counts(y[:, j], p[:, j], ts), "PR") for j in range(3)]
    m = metrics.AUC(num_thresholds=50, curve="PR", multi_label=True)
    m.update_state(y, p)
    assert float(m.result()) == pytest.approx(np.mean(per_label), rel=1e-5)
    assert m.true_positives.shape == (50, 3)
    lw = np.array([1.0, 3.0, 0.5])
    m = metrics.AUC(num_thresholds=50, curve="PR", multi_label=True, num_labels=3, label_weights=lw)
    m.update_state(y, p)
    assert float(m.result()) == pytest.approx(np.dot(per_label, lw) / lw.sum(), rel=1e-5)
    logits = np.log(p / (1 - p))
    m = metrics.AUC(from_logits=True)
    m.update_state(y, logits)
    want = metrics.AUC()
    want.update_state(y, p)
    assert float(m.result()) == pytest.approx(float(want.result()), abs=1e-6)


def test_roc_auc_approaches_the_exact_area():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 400)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1).astype(np.float32)
    pos, neg = p[y == 1], p[y == 0]
    exact = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
    m = metrics.AUC(num_thresholds=2000)
    m.update_state(y, p)
    assert float(m.result()) == pytest.approx(exact, abs=2e-3)


@pytest.mark.parametrize("cls,value,pick", [
    (metrics.SensitivityAtSpecificity, 0.6, lambda r: r["sens"][r["spec"] >= 0.6].max()),
    (metrics.SpecificityAtSensitivity, 0.4, lambda r: r["spec"][r["sens"] >= 0.4].max()),
    (metrics.PrecisionAtRecall, 0.5, lambda r: r["prec"][r["sens"] >= 0.5].max()),
    (metrics.RecallAtPrecision, 0.55, lambda r: r["sens"][r["prec"] >= 0.55].max(initial=0.0))])
def test_rate_at_rate_metrics(cls, value, pick):
    y, p = _binary((40,), 8)
    sw = _weights((40,), 9)
    for n in (200, 13):
        m = cls(value, num_thresholds=n)
        m.update_state(y, p, sample_weight=sw)
        ts = [0.0] + [(i + 1) / (n - 1) for i in range(n - 2)] + [1.0]
        c = np_counts(y, p, ts, sw)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = {"sens": np.nan_to_num(c["tp"] / (c["tp"] + c["fn"])),
                 "spec": np.nan_to_num(c["tn"] / (c["tn"] + c["fp"])),
                 "prec": np.nan_to_num(c["tp"] / (c["tp"] + c["fp"]))}
        assert float(m.result()) == pytest.approx(pick(r), rel=1e-6)
    with pytest.raises(ValueError, match="range"):
        cls(1.5)


def np_fbeta(y, p, beta=1.0, threshold=None, average=None, sw=None):
    pred = (p >= p.max(-1, keepdims=True)) & (np.abs(p) > 1e-9) if threshold is None else p > threshold
    pred = pred.astype(np.float64)
    w = np.ones((len(y), 1)) if sw is None else np.reshape(sw, (-1, 1))
    axis = None if average == "micro" else 0
    tp, fp = (pred * y * w).sum(axis), (pred * (1 - y) * w).sum(axis)
    fn, support = ((1 - pred) * y * w).sum(axis), (y * w).sum(axis)
    prec, rec = tp / (tp + fp + EPS), tp / (tp + fn + EPS)
    f = (1 + beta ** 2) * prec * rec / (beta ** 2 * prec + rec + EPS)
    if average == "weighted":
        return (f * support / (support.sum() + EPS)).sum()
    return f.mean() if average == "macro" else f


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
@pytest.mark.parametrize("beta,threshold", [(1.0, None), (2.0, 0.4), (0.5, None)])
def test_fbeta_against_numpy(average, beta, threshold):
    rng = np.random.default_rng(10)
    y = rng.integers(0, 2, (16, 5)).astype(np.float32)
    p = rng.random((16, 5)).astype(np.float32)
    sw = _weights((16,), 11)
    m = metrics.FBetaScore(average=average, beta=beta, threshold=threshold) if beta != 1.0 else \
        metrics.F1Score(average=average, threshold=threshold)
    m.update_state(y, p, sample_weight=sw)
    np.testing.assert_allclose(m.result().numpy(), np_fbeta(y, p, beta, threshold, average, sw), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="2D"):
        metrics.F1Score().update_state(y[:, 0], p[:, 0])


def test_fbeta_checks_arguments():
    with pytest.raises(ValueError, match="average"):
        metrics.FBetaScore(average="mean")
    with pytest.raises(ValueError, match="beta"):
        metrics.FBetaScore(beta=2)
    with pytest.raises(ValueError, match="threshold"):
        metrics.F1Score(threshold=1.5)


def np_cm(y, p, n, sw=None):
    cm = np.zeros((n, n))
    w = np.ones(len(y)) if sw is None else np.trunc(sw)  # Keras's integer state truncates float weights
    ok = (y >= 0) & (y < n) & (p >= 0) & (p < n)
    np.add.at(cm, (y[ok], p[ok]), w[ok])
    return cm


def np_iou(cm, ids):
    tp = np.diag(cm)
    den = cm.sum(0) + cm.sum(1) - tp
    tp, den = tp[ids], den[ids]
    valid = den > 1e-9
    return np.where(valid, tp / (den + EPS), 0).sum() / (valid.sum() + EPS)


@pytest.mark.parametrize("shape", [(30,), (4, 6, 6)], ids=str)
def test_iou_metrics_against_numpy(shape):
    rng = np.random.default_rng(12)
    n = 4
    y, p = rng.integers(0, n, shape), rng.integers(0, n, shape)
    sw = rng.integers(0, 3, shape).astype(np.float32)
    cm = np_cm(y.ravel(), p.ravel(), n, sw.ravel())
    for m, ids in ((metrics.MeanIoU(n), list(range(n))), (metrics.IoU(n, [0, 3]), [0, 3])):
        m.update_state(y, p, sample_weight=sw)
        assert float(m.result()) == pytest.approx(np_iou(cm, ids), rel=1e-6)
        assert m.total_cm.dtype == "int32"
        np.testing.assert_array_equal(m.total_cm.numpy(), cm)
    onehot = np.eye(n, dtype=np.float32)
    m = metrics.OneHotMeanIoU(n)
    m.update_state(onehot[y], rng.random(shape + (n,)).astype(np.float32) + onehot[p])
    assert float(m.result()) == pytest.approx(np_iou(np_cm(y.ravel(), p.ravel(), n), list(range(n))), rel=1e-6)
    m = metrics.OneHotIoU(n, [1, 2], sparse_y_pred=True)
    m.update_state(onehot[y], p)
    assert float(m.result()) == pytest.approx(np_iou(np_cm(y.ravel(), p.ravel(), n), [1, 2]), rel=1e-6)
    # ignore_class and out-of-range ids are left out
    y2 = y.copy().ravel()
    y2[::5] = 9
    m = metrics.MeanIoU(n, ignore_class=0)
    m.update_state(y2, p.ravel())
    keep = y2 != 0
    assert float(m.result()) == pytest.approx(np_iou(np_cm(y2[keep], p.ravel()[keep], n), list(range(n))), rel=1e-6)
    pb = rng.random(shape).astype(np.float32)
    yb = rng.integers(0, 2, shape)
    m = metrics.BinaryIoU(target_class_ids=[1], threshold=0.3)
    m.update_state(yb, pb)
    assert float(m.result()) == pytest.approx(np_iou(np_cm(yb.ravel(), (pb.ravel() >= 0.3).astype(int), 2), [1]),
                                              rel=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        metrics.IoU(3, [0, 3])


def np_r2(y, p, sw=None, aggregation="uniform_average", num_regressors=0):
    w = np.ones_like(y) if sw is None else np.broadcast_to(np.reshape(sw, (-1, 1)), y.shape)
    mean = (w * y).sum(0) / w.sum(0)
    total = (w * y * y).sum(0) - (w * y).sum(0) * mean
    raw = 1 - (w * (y - p) ** 2).sum(0) / total
    r2 = {"uniform_average": raw.mean(), "variance_weighted_average": (total * raw).sum() / total.sum(),
          None: raw}[aggregation]
    n = y.size
    return 1 - (1 - r2) * (n - 1) / (n - num_regressors - 1) if num_regressors else r2


@pytest.mark.parametrize("aggregation", ["uniform_average", "variance_weighted_average", None])
def test_r2_score_against_numpy(aggregation):
    rng = np.random.default_rng(13)
    y = rng.standard_normal((20, 3)).astype(np.float32)
    p = (y + 0.5 * rng.standard_normal((20, 3))).astype(np.float32)
    sw = rng.random(20).astype(np.float32)
    m = metrics.R2Score(class_aggregation=aggregation)
    m.update_state(y[:10], p[:10], sample_weight=sw[:10])
    m.update_state(y[10:], p[10:], sample_weight=sw[10:])
    np.testing.assert_allclose(m.result().numpy(), np_r2(y, p, sw, aggregation), rtol=1e-4)
    m = metrics.R2Score(class_aggregation=aggregation, num_regressors=4)
    m.update_state(y, p)
    np.testing.assert_allclose(m.result().numpy(), np_r2(y, p, None, aggregation, 4), rtol=1e-4)
    m = metrics.R2Score(num_regressors=100)  # more regressors than samples: the plain score (as Keras)
    m.update_state(y, p)
    assert float(m.result()) == pytest.approx(np_r2(y, p), rel=1e-4)


WRAPPED = {  # metric class -> (its function, data kind)
    "MeanAbsolutePercentageError": ("mean_absolute_percentage_error", "positive"),
    "MeanSquaredLogarithmicError": ("mean_squared_logarithmic_error", "positive"),
    "CosineSimilarity": (None, "real"), "LogCoshError": ("log_cosh", "real"), "Poisson": ("poisson", "positive"),
    "KLDivergence": ("kl_divergence", "prob"), "BinaryCrossentropy": ("binary_crossentropy", "binary"),
    "CategoricalCrossentropy": ("categorical_crossentropy", "onehot"),
    "SparseCategoricalCrossentropy": ("sparse_categorical_crossentropy", "sparse"), "Hinge": ("hinge", "binary"),
    "SquaredHinge": ("squared_hinge", "binary"), "CategoricalHinge": ("categorical_hinge", "onehot"),
}


def _pair(kind, shape, seed):
    rng = np.random.default_rng(seed)
    if kind == "positive":
        return rng.uniform(0.2, 3, shape).astype(np.float32), rng.uniform(0.2, 3, shape).astype(np.float32)
    if kind == "real":
        return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    if kind == "binary":
        return rng.integers(0, 2, shape).astype(np.float32), rng.uniform(0.05, 0.95, shape).astype(np.float32)
    p = rng.uniform(0.05, 1, shape).astype(np.float32)
    p /= p.sum(-1, keepdims=True)
    labels = rng.integers(0, shape[-1], shape[:-1])
    if kind == "sparse":
        return labels, p
    if kind == "onehot":
        return np.eye(shape[-1], dtype=np.float32)[labels], p
    q = rng.uniform(0.05, 1, shape).astype(np.float32)
    return q / q.sum(-1, keepdims=True), p


@pytest.mark.parametrize("shape", [(10, 4), (3, 5, 4)], ids=str)
@pytest.mark.parametrize("cls_name", sorted(WRAPPED))
def test_mean_metrics_against_numpy(cls_name, shape):
    fn_name, kind = WRAPPED[cls_name]
    m = getattr(metrics, cls_name)()
    values, weights = [], []
    for seed in (0, 1):
        y, p = _pair(kind, shape, seed)
        sw = np.random.default_rng(seed + 20).random(shape[0]).astype(np.float32)
        m.update_state(y, p, sample_weight=sw)
        if fn_name is None:  # cosine similarity: the positive cosine, per sample
            yn = y / np.linalg.norm(y, axis=-1, keepdims=True)
            v = (yn * p / np.linalg.norm(p, axis=-1, keepdims=True)).sum(-1)
        else:
            v = getattr(losses, fn_name)(y, p).numpy()  # each checked against numpy in test_losses.py
        values.append(v)
        weights.append(np.broadcast_to(sw.reshape((-1,) + (1,) * (v.ndim - 1)), v.shape))
    values, weights = np.concatenate([v.ravel() for v in values]), np.concatenate([w.ravel() for w in weights])
    assert float(m.result()) == pytest.approx((values * weights).sum() / weights.sum(), rel=1e-5)


def test_root_mean_squared_error():
    rng = np.random.default_rng(15)
    y, p = rng.standard_normal((12, 3)).astype(np.float32), rng.standard_normal((12, 3)).astype(np.float32)
    sw = rng.random(12).astype(np.float32)
    m = metrics.RootMeanSquaredError()
    m.update_state(y, p, sample_weight=sw)
    want = np.sqrt((((y - p) ** 2).mean(1) * sw).sum() / sw.sum())
    assert float(m.result()) == pytest.approx(want, rel=1e-5)
    m = metrics.RootMeanSquaredError()
    m.update_state(y[:, 0], p[:, :1])  # (batch,) against (batch, 1)
    assert float(m.result()) == pytest.approx(np.sqrt(((y[:, 0] - p[:, 0]) ** 2).mean()), rel=1e-5)


# ---- configs, names, compile -----------------------------------------------------------------------------
NEW_METRICS = {
    "TruePositives": {"thresholds": [0.3, 0.6]}, "FalsePositives": {"thresholds": 0.2}, "TrueNegatives": {},
    "FalseNegatives": {}, "Precision": {"thresholds": [0.4], "top_k": 2, "class_id": 1}, "Recall": {"top_k": 3},
    "AUC": {"num_thresholds": 50, "curve": "PR", "summation_method": "majoring", "multi_label": True,
            "num_labels": 3, "label_weights": [1.0, 2.0, 0.5], "from_logits": True},
    "SensitivityAtSpecificity": {"specificity": 0.3, "num_thresholds": 20, "class_id": 0},
    "SpecificityAtSensitivity": {"sensitivity": 0.3}, "PrecisionAtRecall": {"recall": 0.7},
    "RecallAtPrecision": {"precision": 0.2, "num_thresholds": 10},
    "F1Score": {"average": "macro", "threshold": 0.3}, "FBetaScore": {"average": "weighted", "beta": 2.0},
    "MeanIoU": {"num_classes": 3, "ignore_class": 0, "sparse_y_pred": False},
    "IoU": {"num_classes": 4, "target_class_ids": [1, 2]}, "BinaryIoU": {"target_class_ids": [1], "threshold": 0.3},
    "OneHotIoU": {"num_classes": 3, "target_class_ids": [0]}, "OneHotMeanIoU": {"num_classes": 3},
    "R2Score": {"class_aggregation": None, "num_regressors": 2}, "RootMeanSquaredError": {},
    "MeanAbsolutePercentageError": {}, "MeanSquaredLogarithmicError": {}, "CosineSimilarity": {"axis": 1},
    "LogCoshError": {}, "Poisson": {}, "KLDivergence": {},
    "BinaryCrossentropy": {"from_logits": True, "label_smoothing": 0.1},
    "CategoricalCrossentropy": {"label_smoothing": 0.2, "axis": -1},
    "SparseCategoricalCrossentropy": {"from_logits": True, "ignore_class": 2}, "Hinge": {}, "SquaredHinge": {},
    "CategoricalHinge": {},
}
DEFAULT_NAMES = {"TruePositives": "true_positives", "FalsePositives": "false_positives",
                 "TrueNegatives": "true_negatives", "FalseNegatives": "false_negatives", "Precision": "precision",
                 "Recall": "recall", "AUC": "auc", "SensitivityAtSpecificity": "sensitivity_at_specificity",
                 "SpecificityAtSensitivity": "specificity_at_sensitivity", "PrecisionAtRecall": "precision_at_recall",
                 "RecallAtPrecision": "recall_at_precision", "F1Score": "f1_score", "FBetaScore": "fbeta_score",
                 "MeanIoU": "mean_io_u", "IoU": "io_u", "BinaryIoU": "binary_io_u", "OneHotIoU": "one_hot_io_u",
                 "OneHotMeanIoU": "one_hot_mean_io_u", "R2Score": "r2_score",
                 "RootMeanSquaredError": "root_mean_squared_error",
                 "MeanAbsolutePercentageError": "mean_absolute_percentage_error",
                 "MeanSquaredLogarithmicError": "mean_squared_logarithmic_error",
                 "CosineSimilarity": "cosine_similarity", "LogCoshError": "logcosh", "Poisson": "poisson",
                 "KLDivergence": "kl_divergence", "BinaryCrossentropy": "binary_crossentropy",
                 "CategoricalCrossentropy": "categorical_crossentropy",
                 "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy", "Hinge": "hinge",
                 "SquaredHinge": "squared_hinge", "CategoricalHinge": "categorical_hinge"}
_REQUIRED = {"SensitivityAtSpecificity": {"specificity": 0.5}, "SpecificityAtSensitivity": {"sensitivity": 0.5},
             "PrecisionAtRecall": {"recall": 0.5}, "RecallAtPrecision": {"precision": 0.5},
             "MeanIoU": {"num_classes": 3}, "IoU": {"num_classes": 3, "target_class_ids": [0]},
             "OneHotIoU": {"num_classes": 3, "target_class_ids": [0]}, "OneHotMeanIoU": {"num_classes": 3}}


@pytest.mark.parametrize("cls_name", sorted(NEW_METRICS))
def test_metric_config_round_trip(cls_name):
    cls = getattr(metrics, cls_name)
    assert cls(**_REQUIRED.get(cls_name, {})).name == DEFAULT_NAMES[cls_name]
    m = cls(**NEW_METRICS[cls_name], name="mine")
    config = m.get_config()
    assert config["name"] == "mine" and config["dtype"] == ("int32" if "IoU" in cls_name else "float32")
    for k, v in NEW_METRICS[cls_name].items():
        assert config[k] == v, k
    again = cls.from_config(config)
    assert type(again) is cls and again.get_config() == config
    assert metrics.deserialize(metrics.serialize(m)).get_config() == config
    assert [v.name for v in again.variables] == [v.name for v in m.variables]


def test_metric_names_resolve_as_keras():
    for name, cls in [("auc", metrics.AUC), ("AUC", metrics.AUC), ("precision", metrics.Precision),
                      ("recall", metrics.Recall), ("f1_score", metrics.F1Score), ("r2_score", metrics.R2Score),
                      ("true_positives", metrics.TruePositives), ("mape", metrics.MeanAbsolutePercentageError),
                      ("MSLE", metrics.MeanSquaredLogarithmicError), ("bce", metrics.BinaryCrossentropy),
                      ("root_mean_squared_error", metrics.RootMeanSquaredError), ("hinge", metrics.Hinge),
                      ("kl_divergence", metrics.KLDivergence), ("log_cosh_error", metrics.LogCoshError),
                      ("categorical_crossentropy", metrics.CategoricalCrossentropy)]:
        assert type(metrics.get(name)) is cls, name
    wrapped = metrics.get("log_cosh")  # a function's name: its mean
    assert isinstance(wrapped, metrics.MeanMetricWrapper) and wrapped.name == "log_cosh"
    with pytest.raises(ValueError, match="Unknown metric"):
        metrics.get("no_such_metric")
    m = metrics.MeanMetricWrapper(losses.squared_hinge, name="sh")
    again = metrics.MeanMetricWrapper.from_config(m.get_config())
    assert again._fn is losses.squared_hinge and again.name == "sh"
    keras_form = {"class_name": "MeanMetricWrapper", "config": {"name": "p", "dtype": "float32", "fn": {
        "module": "keras.metrics", "class_name": "function", "config": "poisson", "registered_name": "poisson"}}}
    assert metrics.get(keras_form)._fn is losses.poisson
    assert metrics.TopKCategoricalAccuracy(3).k == 3  # Keras's positional order: k first


def test_auc_checks_arguments():
    with pytest.raises(ValueError, match="curve"):
        metrics.AUC(curve="XY")
    with pytest.raises(ValueError, match="summation"):
        metrics.AUC(summation_method="trapezoid")
    with pytest.raises(ValueError, match="num_thresholds"):
        metrics.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="num_labels"):
        metrics.AUC(num_labels=3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.Precision(thresholds=[0.5, 1.5])


def _classifier(lib, n_out=3, activation="sigmoid"):
    rng = np.random.default_rng(16)
    model = lib.Sequential([lib.Input(shape=(5,)), lib.layers.Dense(n_out, activation=activation)])
    model.set_weights([rng.standard_normal((5, n_out)).astype(np.float32), np.zeros(n_out, np.float32)])
    return model


def _classification_data(n=64):
    rng = np.random.default_rng(17)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    return x, (x[:, :3] + 0.3 * rng.standard_normal((n, 3)) > 0).astype(np.float32)


def test_metrics_in_compile_by_name_and_object():
    x, y = _classification_data()
    model = _classifier(lamina)
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=["auc", "precision", "recall", "mape", "hinge", "true_positives", "bce",
                           metrics.AUC(curve="PR", name="pr_auc"), metrics.F1Score(average="micro", threshold=0.5),
                           metrics.Precision(thresholds=[0.3, 0.7], name="p2"), metrics.R2Score(),
                           metrics.RootMeanSquaredError(name="rmse")])
    h = model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    assert {"auc", "precision", "recall", "mape", "hinge", "true_positives", "bce", "pr_auc", "f1_score", "p2",
            "r2_score", "rmse", "loss"} <= set(h)
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    c = np_counts(y, pred, [0.5])
    assert result["true_positives"] == pytest.approx(c["tp"][0])
    assert result["precision"] == pytest.approx(c["tp"][0] / (c["tp"][0] + c["fp"][0]), rel=1e-5)
    assert result["recall"] == pytest.approx(c["tp"][0] / (c["tp"][0] + c["fn"][0]), rel=1e-5)
    assert result["auc"] == pytest.approx(np_auc(np_counts(y, pred, _auc_thresholds(200))), rel=1e-4)
    assert result["rmse"] == pytest.approx(np.sqrt(((y - pred) ** 2).mean()), rel=1e-4)
    np.testing.assert_allclose(np.asarray(result["p2"]), (lambda c: c["tp"] / (c["tp"] + c["fp"]))(
        np_counts(y, pred, [0.3, 0.7])), rtol=1e-5)


def test_iou_metric_in_compile():
    x, y = _classification_data()
    labels = y.argmax(1)
    model = _classifier(lamina, activation="softmax")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=[metrics.MeanIoU(3, sparse_y_pred=False), metrics.SparseCategoricalCrossentropy()])
    result = model.evaluate(x, labels, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0).argmax(1)
    assert result["mean_io_u"] == pytest.approx(np_iou(np_cm(labels, pred, 3), [0, 1, 2]), rel=1e-5)
    assert result["sparse_categorical_crossentropy"] == pytest.approx(result["loss"], rel=1e-5)


# ---- Keras parity --------------------------------------------------------------------------------------
PARITY = [
    ("TruePositives", {}, "binary"), ("FalsePositives", {"thresholds": [0.2, 0.5, 0.8]}, "binary"),
    ("TrueNegatives", {"thresholds": [0.0, 0.5, 1.0]}, "binary"), ("FalseNegatives", {}, "binary1"),
    ("Precision", {}, "binary"), ("Precision", {"top_k": 2}, "binary"),
    ("Precision", {"class_id": 1, "thresholds": [0.3, 0.6]}, "binary"), ("Recall", {}, "binary1"),
    ("Recall", {"top_k": 1, "class_id": 2}, "binary"), ("AUC", {}, "binary"), ("AUC", {"curve": "PR"}, "binary"),
    ("AUC", {"curve": "PR", "summation_method": "majoring"}, "binary"),
    ("AUC", {"num_thresholds": 7, "summation_method": "minoring"}, "binary1"),
    ("AUC", {"thresholds": [0.1, 0.5, 0.9]}, "binary"), ("AUC", {"multi_label": True}, "binary"),
    ("AUC", {"multi_label": True, "label_weights": [1, 2, 0.5, 1], "curve": "PR"}, "binary"),
    ("AUC", {"label_weights": [1, 2, 0.5, 1]}, "binary"), ("AUC", {"curve": "PRGAIN"}, "binary"),
    ("AUC", {"from_logits": True}, "reg"), ("SensitivityAtSpecificity", {"specificity": 0.5}, "binary"),
    ("SpecificityAtSensitivity", {"sensitivity": 0.4, "num_thresholds": 10}, "binary"),
    ("PrecisionAtRecall", {"recall": 0.6}, "binary"), ("RecallAtPrecision", {"precision": 0.5}, "binary1"),
    ("F1Score", {}, "onehot"), ("F1Score", {"average": "micro", "threshold": 0.3}, "binary"),
    ("FBetaScore", {"average": "weighted", "beta": 2.0}, "onehot"),
    ("FBetaScore", {"average": "macro", "beta": 0.5, "threshold": 0.4}, "binary"),
    ("MeanIoU", {"num_classes": 4}, "classes"), ("IoU", {"num_classes": 4, "target_class_ids": [0, 2]}, "classes"),
    ("OneHotMeanIoU", {"num_classes": 4}, "onehot"),
    ("OneHotIoU", {"num_classes": 4, "target_class_ids": [1]}, "onehot"),
    ("BinaryIoU", {"target_class_ids": [1], "threshold": 0.3}, "binary1"), ("R2Score", {}, "reg"),
    ("R2Score", {"class_aggregation": "variance_weighted_average", "num_regressors": 2}, "reg"),
    ("R2Score", {"class_aggregation": None}, "reg"), ("RootMeanSquaredError", {}, "reg"),
    ("MeanAbsolutePercentageError", {}, "reg"), ("MeanSquaredLogarithmicError", {}, "reg"),
    ("CosineSimilarity", {}, "reg"), ("LogCoshError", {}, "reg"), ("Poisson", {}, "reg"),
    ("KLDivergence", {}, "onehot"), ("BinaryCrossentropy", {}, "binary"),
    ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "binary"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.2}, "onehot"), ("SparseCategoricalCrossentropy", {}, "sparse"),
    ("Hinge", {}, "binary"), ("SquaredHinge", {}, "binary"), ("CategoricalHinge", {}, "onehot"),
]


def _parity_data(kind, seed, n=16, c=4):
    r = np.random.default_rng(seed)
    if kind == "binary":
        return r.integers(0, 2, (n, c)).astype(np.float32), r.random((n, c)).astype(np.float32)
    if kind == "binary1":
        return r.integers(0, 2, (n,)).astype(np.float32), r.random((n,)).astype(np.float32)
    if kind in ("onehot", "sparse"):
        p = r.random((n, c)).astype(np.float32)
        labels = r.integers(0, c, n)
        return (labels if kind == "sparse" else np.eye(c, dtype=np.float32)[labels]), p / p.sum(1, keepdims=True)
    if kind == "classes":
        return r.integers(0, c, (n,)), r.integers(0, c, (n,))
    return (r.random((n, c)) * 3).astype(np.float32), (r.random((n, c)) * 3).astype(np.float32)


@pytest.mark.parametrize("cls_name,kwargs,kind", PARITY, ids=[f"{c}-{k}" for c, k, _ in PARITY])
def test_metrics_match_keras(cls_name, kwargs, kind):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference run")
    for weighted in (False, True):
        ours, theirs = getattr(metrics, cls_name)(**kwargs), getattr(keras.metrics, cls_name)(**kwargs)
        for seed in (1, 2):
            y, p = _parity_data(kind, seed)
            sw = np.random.default_rng(seed + 10).integers(0, 3, (len(y),)).astype(np.float32) if weighted else None
            ours.update_state(y, p, sample_weight=sw)
            theirs.update_state(y, p, sample_weight=sw)
        want = np.asarray(theirs.result())
        got = ours.result().numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"weighted={weighted}")
        mine, keras_config = ours.get_config(), theirs.get_config()
        for k, v in keras_config.items():  # the same arguments (Keras's names carry a uniquifying suffix)
            if k != "name":
                assert np.all(np.asarray(mine[k], dtype=object if v is None else None) == np.asarray(v)), k
        # a Keras config builds the same metric here
        rebuilt = getattr(metrics, cls_name).from_config(
            {k: (np.asarray(v).tolist() if hasattr(v, "shape") else v) for k, v in keras_config.items()})
        assert {k: v for k, v in rebuilt.get_config().items() if k != "name"} == \
            {k: v for k, v in mine.items() if k != "name"}


def test_fit_with_confusion_metrics_matches_keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference run")
    x, y = _classification_data()

    def run(lib):
        model = _classifier(lib)
        m = lib.metrics
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="binary_crossentropy",
                      metrics=[m.AUC(name="auc"), m.AUC(curve="PR", name="pr"), m.Precision(name="precision"),
                               m.Recall(name="recall"), m.TruePositives(name="tp"), m.F1Score(average="macro",
                                                                                                threshold=0.5,
                                                                                                name="f1"),
                               m.RootMeanSquaredError(name="rmse"), m.R2Score(name="r2")])
        h = model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
        return h, model.evaluate(x, y, verbose=0, return_dict=True)
    (h1, e1), (h2, e2) = run(lamina), run(keras)
    for k in ("loss", "auc", "pr", "precision", "recall", "tp", "f1", "rmse", "r2"):
        np.testing.assert_allclose(h1[k], h2[k], rtol=1e-4, atol=1e-5, err_msg=k)
        np.testing.assert_allclose(e1[k], e2[k], rtol=1e-4, atol=1e-5, err_msg=k)


# ---- devices ---------------------------------------------------------------------------------------------

def _device_or_skip(name):
    if name.startswith("gpu") and not lamina.list_devices("gpu"):
        pytest.skip("no GPU on this machine")
    return name


@pytest.mark.parametrize("device", ["cpu:1", "gpu:0"])
def test_metrics_on_another_device(device):
    """State made on `device`, inputs arriving from cpu:0 (or made on the device): the same results."""
    _device_or_skip(device)
    y, p = _binary((24, 3), 20)
    sw = _weights((24,), 21)
    yi, pi = np.random.default_rng(22).integers(0, 4, 24), np.random.default_rng(23).integers(0, 4, 24)

    def make():
        return [metrics.AUC(), metrics.AUC(multi_label=True, curve="PR"), metrics.Precision(thresholds=[0.3, 0.6]),
                metrics.SensitivityAtSpecificity(0.5), metrics.F1Score(), metrics.R2Score(),
                metrics.RootMeanSquaredError(), metrics.Hinge()]
    want = make()
    for m in want:
        m.update_state(y, p, sample_weight=sw)
    want_iou = metrics.MeanIoU(4)
    want_iou.update_state(yi, pi, sample_weight=sw)
    with lamina.device(device):
        got = make()
        got_iou = metrics.MeanIoU(4)
        assert got[0].variables[0].device.name == device
    inputs = [lamina.convert_to_tensor(a) for a in (y, p, sw)]  # made outside the scope: on cpu:0
    for m, w in zip(got, want):
        m.update_state(*inputs[:2], sample_weight=inputs[2])
        np.testing.assert_allclose(m.result().numpy(), w.result().numpy(), rtol=1e-5, err_msg=type(m).__name__)
    got_iou.update_state(yi, pi, sample_weight=sw)
    assert float(got_iou.result()) == pytest.approx(float(want_iou.result()))


def test_compiled_metrics_and_losses_move_between_keras_and_lamina_files(tmp_path):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference run")
    x, y = _classification_data(32)

    def build(lib):
        model = _classifier(lib)
        m, L = lib.metrics, lib.losses
        model.compile(optimizer="sgd", loss=L.BinaryFocalCrossentropy(gamma=1.5),
                      metrics=[m.AUC(curve="PR", name="pr"), m.Precision(thresholds=[0.3, 0.6], name="p"),
                               m.F1Score(average="macro", threshold=0.5, name="f1"), "mape", m.R2Score(name="r2")])
        return model
    k = build(keras)
    k.save(str(tmp_path / "k.keras"))
    want = k.evaluate(x, y, verbose=0, return_dict=True)
    ours = lamina.models.load_model(str(tmp_path / "k.keras"))
    got = ours.evaluate(x, y, verbose=0, return_dict=True)
    ours.save(str(tmp_path / "l.keras"))
    back = keras.models.load_model(str(tmp_path / "l.keras")).evaluate(x, y, verbose=0, return_dict=True)
    assert set(got) == set(want) == set(back)
    for key in want:
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(want[key]), rtol=1e-5, err_msg=key)
        np.testing.assert_allclose(np.asarray(back[key]), np.asarray(want[key]), rtol=1e-5, err_msg=key)


def test_sparse_top_k_from_sorted_ids():
    y_true = np.array([2, 0, 1, 3])
    ids = np.array([[2, 1, 0], [1, 2, 0], [0, 3, 1], [1, 0, 2]])   # ops.top_k's indices, best first
    m = lamina.metrics.SparseTopKCategoricalAccuracy(k=2, from_sorted_ids=True)
    m.update_state(y_true, ids)
    assert float(m.result()) == pytest.approx(0.25)
    m3 = lamina.metrics.SparseTopKCategoricalAccuracy(k=3, from_sorted_ids=True)
    m3.update_state(y_true, ids)
    assert float(m3.result()) == pytest.approx(0.75)
    assert m.get_config()["from_sorted_ids"] is True
