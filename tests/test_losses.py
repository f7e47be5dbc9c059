"""losses.py: custom Loss subclasses as the Keras guides write them (`call(y_true, y_pred)`,
Keras's `name` and `reduction` arguments), and the built-in losses (CTC included) against numpy
references and numerical gradients, in compile(), and against Keras (when installed)."""
import numpy as np
import pytest

import lamina
from lamina import losses, ops
from keras_ref import keras_or_none


class CustomMSE(losses.Loss):  # the Keras guide's ("training & evaluation with the built-in methods")
    def __init__(self, regularization_factor=0.1, name="custom_mse", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        self.regularization_factor = regularization_factor

    def call(self, y_true, y_pred):
        mse = ops.mean(ops.square(y_true - y_pred), axis=-1)
        reg = ops.mean(ops.square(0.5 - y_pred), axis=-1)
        return mse + reg * self.regularization_factor

    def get_config(self):
        return {"regularization_factor": self.regularization_factor, "name": self.name}


def _want(y, p, f=0.1):
    return ((y - p) ** 2).mean(-1) + ((0.5 - p) ** 2).mean(-1) * f


def test_custom_loss_reductions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (6, 3))  # integer targets arrive as floats, as in Keras
    p = rng.random((6, 3)).astype(np.float32)
    per = _want(y, p)
    assert float(CustomMSE()(y, p)) == pytest.approx(per.mean(), rel=1e-5)
    assert float(CustomMSE(reduction="sum")(y, p)) == pytest.approx(per.sum(), rel=1e-5)
    np.testing.assert_allclose(CustomMSE(reduction="none")(y, p).numpy(), per, rtol=1e-5)
    sw = np.array([1, 0, 2, 0, 1, 1], np.float32)
    assert float(CustomMSE()(y, p, sample_weight=sw)) == pytest.approx((per * sw).sum() / 6, rel=1e-5)
    assert CustomMSE().name == "custom_mse"
    assert CustomMSE.from_config(CustomMSE(0.3).get_config()).regularization_factor == 0.3
    with pytest.raises(ValueError, match="reduction"):
        CustomMSE(reduction="auto")


def _fit(lib, loss, x, y, weights):
    model = lib.Sequential([lib.Input(shape=(3,)), lib.layers.Dense(2)])
    model.set_weights(weights)
    model.compile(optimizer=lib.optimizers.SGD(0.05), loss=loss)
    return model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0).history["loss"]


def test_custom_loss_in_fit_as_keras():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((48, 3)).astype(np.float32)
    y = (x[:, :2] > 0).astype(np.float32)
    weights = [rng.standard_normal((3, 2)).astype(np.float32), np.zeros(2, np.float32)]
    got = _fit(lamina, CustomMSE(), x, y, weights)
    assert got[-1] < got[0]
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference run")

    class KerasMSE(keras.losses.Loss):
        def __init__(self, regularization_factor=0.1, name="custom_mse"):
            super().__init__(name=name)
            self.regularization_factor = regularization_factor

        def call(self, y_true, y_pred):
            ko = keras.ops
            return ko.mean(ko.square(y_true - y_pred), axis=-1) + \
                ko.mean(ko.square(0.5 - y_pred), axis=-1) * self.regularization_factor
    np.testing.assert_allclose(got, _fit(keras, KerasMSE(), x, y, weights), rtol=1e-5)


# ---- the built-in losses against numpy --------------------------------------------------------------
EPS = 1e-7


def _np_norm(x, axis):
    return x / np.sqrt(np.maximum((x * x).sum(axis, keepdims=True), EPS * EPS))


def _np_hinge_labels(y):
    return 2 * y - 1 if np.all((y == 0) | (y == 1)) else y


def _np_bce(y, p):
    p = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _np_focal_bce(y, p, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0):
    y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    p = 1 / (1 + np.exp(-p)) if from_logits else p
    pt = y * p + (1 - y) * (1 - p)
    out = (1 - pt) ** gamma * _np_bce(y, p)
    if apply_class_balancing:
        out = (y * alpha + (1 - y) * (1 - alpha)) * out
    return out.mean(-1)


def _np_focal_cce(y, p, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0):
    y = y * (1 - label_smoothing) + label_smoothing / y.shape[-1]
    if from_logits:
        p = np.exp(p - p.max(-1, keepdims=True))
    p = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)
    return (alpha * (1 - p) ** gamma * -y * np.log(p)).sum(-1)


NP_LOSSES = {
    "hinge": lambda y, p: np.maximum(1 - _np_hinge_labels(y) * p, 0).mean(-1),
    "squared_hinge": lambda y, p: (np.maximum(1 - _np_hinge_labels(y) * p, 0) ** 2).mean(-1),
    "categorical_hinge": lambda y, p: np.maximum(((1 - y) * p).max(-1) - (y * p).sum(-1) + 1, 0),
    "poisson": lambda y, p: (p - y * np.log(p + EPS)).mean(-1),
    "log_cosh": lambda y, p: np.log(np.cosh(p - y)).mean(-1),
    "cosine_similarity": lambda y, p: -(_np_norm(y, -1) * _np_norm(p, -1)).sum(-1),
    "mean_absolute_percentage_error": lambda y, p: 100 * np.abs((y - p) / np.maximum(np.abs(y), EPS)).mean(-1),
    "mean_squared_logarithmic_error":
        lambda y, p: ((np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(y, EPS) + 1)) ** 2).mean(-1),
    "binary_focal_crossentropy": _np_focal_bce,
    "categorical_focal_crossentropy": _np_focal_cce,
    "dice": lambda y, p: 1 - 2 * (y * p).sum() / (y.sum() + p.sum() + EPS),
    "tversky": lambda y, p: 1 - (y * p).sum() / ((y * p).sum() + 0.5 * ((1 - p) * y).sum() + 0.5 * (p * (1 - y)).sum()
                                               + EPS),
}
CLASS_OF = {"hinge": "Hinge", "squared_hinge": "SquaredHinge", "categorical_hinge": "CategoricalHinge",
            "poisson": "Poisson", "log_cosh": "LogCosh", "cosine_similarity": "CosineSimilarity",
            "mean_absolute_percentage_error": "MeanAbsolutePercentageError",
            "mean_squared_logarithmic_error": "MeanSquaredLogarithmicError",
            "binary_focal_crossentropy": "BinaryFocalCrossentropy",
            "categorical_focal_crossentropy": "CategoricalFocalCrossentropy", "dice": "Dice", "tversky": "Tversky"}
SHAPES = [(7,), (6, 3), (2, 4, 5)]


def _inputs(name, shape, seed, signed_labels=False):
    rng = np.random.default_rng(seed)
    if name in ("categorical_hinge", "categorical_focal_crossentropy"):
        y = np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], shape[:-1])]
        return y, rng.uniform(0.05, 1.0, shape).astype(np.float32)
    if name in ("hinge", "squared_hinge"):
        y = rng.integers(0, 2, shape).astype(np.float32)
        return (2 * y - 1 if signed_labels else y), rng.standard_normal(shape).astype(np.float32)
    if name in ("binary_focal_crossentropy", "dice", "tversky"):
        return rng.integers(0, 2, shape).astype(np.float32), rng.uniform(0.02, 0.98, shape).astype(np.float32)
    if name == "log_cosh":
        return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    return rng.uniform(0.1, 3.0, shape).astype(np.float32), rng.uniform(0.1, 3.0, shape).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(NP_LOSSES))
def test_loss_function_against_numpy(name, shape):
    y, p = _inputs(name, shape, 0)
    fn = getattr(losses, name)
    assert losses.get(name) is fn
    want = NP_LOSSES[name](y.astype(np.float64), p.astype(np.float64))
    got = fn(y, p).numpy()
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    if name in ("hinge", "squared_hinge"):  # labels already in {-1, 1} are taken as they are
        y2, p2 = _inputs(name, shape, 1, signed_labels=True)
        np.testing.assert_allclose(fn(y2, p2).numpy(), NP_LOSSES[name](y2, p2), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(NP_LOSSES))
def test_loss_class_reductions_and_sample_weight(name):
    y, p = _inputs(name, (6, 3), 2)
    cls = getattr(losses, CLASS_OF[name])
    per = np.asarray(NP_LOSSES[name](y.astype(np.float64), p.astype(np.float64)))
    sw = np.array([1, 0, 2, 0.5, 1, 3], np.float32)
    obj = cls()
    assert obj.name == (name if name != "log_cosh" else "log_cosh")
    if per.ndim == 0:  # dice and tversky reduce every axis by default: one value for the batch
        assert float(obj(y, p)) == pytest.approx(float(per), rel=1e-5)
        assert float(obj(y, p, sample_weight=sw)) == pytest.approx(float(per) * sw.mean(), rel=1e-5)
        per_sample = cls(axis=-1, reduction="none")(y, p).numpy()
        assert per_sample.shape == (6,)
        assert per_sample[0] == pytest.approx(NP_LOSSES[name](y[:1], p[:1]), rel=1e-5)  # row 0 alone
        return
    assert float(obj(y, p)) == pytest.approx(per.mean(), rel=1e-5, abs=1e-6)
    assert float(cls(reduction="sum")(y, p)) == pytest.approx(per.sum(), rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(cls(reduction="none")(y, p).numpy(), per, rtol=1e-5, atol=1e-6)
    assert float(obj(y, p, sample_weight=sw)) == pytest.approx((per * sw).sum() / 6, rel=1e-5, abs=1e-6)
    assert float(cls(reduction="mean_with_sample_weight")(y, p, sample_weight=sw)) == \
        pytest.approx((per * sw).sum() / sw.sum(), rel=1e-5, abs=1e-6)


def test_focal_crossentropy_options():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (5, 4)).astype(np.float32)
    logits = rng.standard_normal((5, 4)).astype(np.float32)
    opts = dict(apply_class_balancing=True, alpha=0.4, gamma=1.5, from_logits=True, label_smoothing=0.1)
    np.testing.assert_allclose(losses.BinaryFocalCrossentropy(**opts, reduction="none")(y, logits).numpy(),
                               _np_focal_bce(y, logits, **opts), rtol=1e-5, atol=1e-6)
    y1 = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 5)]
    opts = dict(alpha=0.5, gamma=3.0, from_logits=True, label_smoothing=0.2)
    np.testing.assert_allclose(losses.CategoricalFocalCrossentropy(**opts, reduction="none")(y1, logits).numpy(),
                               _np_focal_cce(y1, logits, **opts), rtol=1e-5, atol=1e-6)
    # gamma = 0 without class balancing is plain binary crossentropy
    p = rng.uniform(0.05, 0.95, (5, 4)).astype(np.float32)
    np.testing.assert_allclose(losses.binary_focal_crossentropy(y, p, gamma=0.0).numpy(),
                               losses.binary_crossentropy(y, p).numpy(), rtol=1e-5)


def test_tversky_weights_and_axis():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, (3, 8)).astype(np.float32)
    p = rng.uniform(0, 1, (3, 8)).astype(np.float32)
    tp, fp, fn = (y * p).sum(1), ((1 - p) * y).sum(1), (p * (1 - y)).sum(1)
    want = 1 - tp / (tp + 0.7 * fp + 0.3 * fn + EPS)
    np.testing.assert_allclose(losses.tversky(y, p, alpha=0.7, beta=0.3, axis=1).numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(losses.dice(y, p, axis=1).numpy(), losses.tversky(y, p, axis=1).numpy(), rtol=1e-5)


def test_rank_matching_as_keras():
    # (batch,) against (batch, 1): a trailing axis of size 1 is matched, not broadcast to (batch, batch)
    y = np.array([1.0, 2.0, 3.0], np.float32)
    p = np.array([[1.5], [2.0], [2.0]], np.float32)
    np.testing.assert_allclose(losses.log_cosh(y, p).numpy(), np.log(np.cosh(p[:, 0] - y)), rtol=1e-6)
    np.testing.assert_allclose(losses.mean_absolute_percentage_error(y[:, None], p[:, 0]).numpy(),
                               100 * np.abs((y - p[:, 0]) / y), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(NP_LOSSES))
def test_loss_gradients(name):
    from opcheck import check_grad
    y, p = _inputs(name, (3, 4), 5)
    fn = getattr(losses, name)
    check_grad(lambda pt: fn(y, pt), lambda pn: NP_LOSSES[name](y.astype(np.float64), pn), [p], atol=2e-3, rtol=2e-3)


def test_cosine_similarity_gradient_at_zero_is_finite():
    p = lamina.convert_to_tensor(np.zeros((2, 3), np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(p)
        loss = ops.sum(losses.cosine_similarity(np.ones((2, 3), np.float32), p))
    assert np.all(np.isfinite(tape.gradient(loss, p).numpy()))


# ---- CTC ------------------------------------------------------------------------------------------------

def _np_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def np_ctc(labels, logits, label_length, output_length, blank=0):
    """-log p(labels | logits) by the textbook alpha recursion over (blank, l1, blank, ..., blank)."""
    lp = _np_log_softmax(logits)
    out = []
    for b in range(lp.shape[0]):
        ext = [blank]
        for c in labels[b][:label_length[b]]:
            ext += [int(c), blank]
        a = np.full(len(ext), -np.inf)
        a[:2] = lp[b, 0, ext[:2]]
        for t in range(1, output_length[b]):
            new = np.full(len(ext), -np.inf)
            for s in range(len(ext)):
                v = a[s]
                if s >= 1:
                    v = np.logaddexp(v, a[s - 1])
                if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                    v = np.logaddexp(v, a[s - 2])
                new[s] = v + lp[b, t, ext[s]]
            a = new
        out.append(-(a[-1] if len(ext) == 1 else np.logaddexp(a[-1], a[-2])))
    return np.array(out)


def _brute_ctc(labels, logits, blank=0):
    """-log of the summed probability of every path that collapses to `labels` (tiny cases only)."""
    import itertools
    lp = _np_log_softmax(logits)
    total = -np.inf
    for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0]):
        collapsed = [k for k, _ in itertools.groupby(path) if k != blank]
        if collapsed == list(labels):
            total = np.logaddexp(total, sum(lp[t, k] for t, k in enumerate(path)))
    return -total


def test_ctc_reference_is_the_sum_over_paths():
    logits = np.random.default_rng(6).standard_normal((5, 3))
    for labels in ([1], [1, 2], [2, 2], [], [1, 1, 2]):
        padded = [labels + [0] * (3 - len(labels))]
        want = _brute_ctc(labels, logits)
        assert np_ctc(padded, logits[None], [len(labels)], [5])[0] == pytest.approx(want, rel=1e-10)
        assert float(losses.ctc(np.array(padded), logits[None].astype(np.float32))[0]) == pytest.approx(want,
                                                                                                     rel=1e-5)


CTC_LABELS = np.array([[1, 2, 2, 0], [3, 0, 0, 0], [1, 1, 3, 2], [0, 0, 0, 0], [4, 4, 4, 0]])


@pytest.mark.parametrize("time_steps", [7, 12])
def test_ctc_against_numpy(time_steps):
    rng = np.random.default_rng(time_steps)
    logits = (rng.standard_normal((5, time_steps, 5)) * 2).astype(np.float32)
    lengths = (CTC_LABELS != 0).sum(1)
    want = np_ctc(CTC_LABELS, logits, lengths, [time_steps] * 5)
    np.testing.assert_allclose(losses.ctc(CTC_LABELS, logits).numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(losses.CTC(reduction="none")(CTC_LABELS, logits).numpy(), want, rtol=1e-5)
    assert float(losses.CTC()(CTC_LABELS, logits)) == pytest.approx(want.mean(), rel=1e-5)
    sw = np.array([1, 2, 0, 1, 0.5], np.float32)
    assert float(losses.CTC()(CTC_LABELS, logits, sample_weight=sw)) == pytest.approx((want * sw).mean(), rel=1e-5)
    # per-sequence lengths, and integer labels given as floats (as compile() passes them)
    out_len = np.array([time_steps, 5, time_steps - 1, 2, 6])
    np.testing.assert_allclose(losses.ctc_loss(CTC_LABELS.astype(np.float32), logits, lengths, out_len).numpy(),
                               np_ctc(CTC_LABELS, logits, lengths, out_len), rtol=1e-5)


def test_ctc_gradient_against_numerical():
    from opcheck import check_grad
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((5, 6, 5)).astype(np.float32)
    lengths = (CTC_LABELS != 0).sum(1)
    check_grad(lambda x: losses.ctc(CTC_LABELS, x), lambda x: np_ctc(CTC_LABELS, x, lengths, [6] * 5), [logits],
               atol=2e-3, rtol=2e-3)
    out_len = np.array([6, 3, 6, 1, 6])
    check_grad(lambda x: losses.ctc_loss(CTC_LABELS, x, lengths, out_len),
               lambda x: np_ctc(CTC_LABELS, x, lengths, out_len), [logits], atol=2e-3, rtol=2e-3)


def test_ctc_checks_its_inputs():
    with pytest.raises(ValueError, match="y_true"):
        losses.ctc(np.zeros((2, 3, 1)), np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match="y_pred"):
        losses.ctc(np.zeros((2, 3)), np.zeros((2, 5), np.float32))
    # a label sequence longer than the output cannot be aligned: a large loss, not inf or nan
    value = float(losses.ctc(np.array([[1, 2, 3, 4]]), np.zeros((1, 3, 5), np.float32))[0])
    assert np.isfinite(value) and value > 1e4


def test_ctc_trains_a_model():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((16, 8, 6)).astype(np.float32)
    y = rng.integers(1, 5, (16, 3)).astype(np.float32)
    y[::3, 2] = 0  # some shorter label sequences (0 pads, and is the blank)
    model = lamina.Sequential([lamina.Input(shape=(8, 6)), lamina.layers.Dense(16, activation="tanh"),
                               lamina.layers.Dense(5)])
    model.compile(optimizer=lamina.optimizers.Adam(0.02), loss="ctc")
    h = model.fit(x, y, epochs=8, batch_size=8, shuffle=False, verbose=0).history["loss"]
    assert np.all(np.isfinite(h)) and h[-1] < h[0]


# ---- names, configs, compile ---------------------------------------------------------------------------

NEW_CLASSES = {
    "Hinge": {}, "SquaredHinge": {}, "CategoricalHinge": {}, "Poisson": {}, "LogCosh": {},
    "CosineSimilarity": {"axis": 1}, "MeanAbsolutePercentageError": {}, "MeanSquaredLogarithmicError": {},
    "BinaryFocalCrossentropy": {"apply_class_balancing": True, "alpha": 0.3, "gamma": 1.0, "from_logits": True,
                                "label_smoothing": 0.1},
    "CategoricalFocalCrossentropy": {"alpha": 0.5, "gamma": 3.0, "label_smoothing": 0.05},
    "CTC": {}, "Dice": {"axis": (1, 2)}, "Tversky": {"alpha": 0.7, "beta": 0.3, "axis": -1},
    "Huber": {"delta": 2.0}, "KLDivergence": {},
}
KERAS_NAMES = {"Hinge": "hinge", "SquaredHinge": "squared_hinge", "CategoricalHinge": "categorical_hinge",
               "Poisson": "poisson", "LogCosh": "log_cosh", "CosineSimilarity": "cosine_similarity",
               "MeanAbsolutePercentageError": "mean_absolute_percentage_error",
               "MeanSquaredLogarithmicError": "mean_squared_logarithmic_error",
               "BinaryFocalCrossentropy": "binary_focal_crossentropy",
               "CategoricalFocalCrossentropy": "categorical_focal_crossentropy", "CTC": "ctc", "Dice": "dice",
               "Tversky": "tversky", "Huber": "huber_loss", "KLDivergence": "kl_divergence"}


@pytest.mark.parametrize("cls_name", sorted(NEW_CLASSES))
def test_loss_config_round_trip(cls_name):
    cls = getattr(losses, cls_name)
    assert cls().name == KERAS_NAMES[cls_name]
    obj = cls(**NEW_CLASSES[cls_name], reduction="sum", name="mine")
    config = obj.get_config()
    assert config["name"] == "mine" and config["reduction"] == "sum"
    for k, v in NEW_CLASSES[cls_name].items():
        assert config[k] == v and getattr(obj, k) == v
    again = cls.from_config(config)
    assert type(again) is cls and again.get_config() == config
    assert losses.get(losses.serialize(obj)).get_config() == config
    assert isinstance(losses.get(cls_name), cls)
    with pytest.raises(TypeError, match="unexpected argument"):
        cls(not_an_argument=1)


def test_keras_positional_order():
    # Keras's signatures: Dice(reduction, name, axis), Tversky(alpha, beta, reduction, ...), Hinge(reduction, ...)
    assert losses.Dice("sum", "d", 1).get_config() == {"name": "d", "reduction": "sum", "axis": 1}
    t = losses.Tversky(0.2, 0.8, "none")
    assert (t.alpha, t.beta, t.reduction) == (0.2, 0.8, "none")
    assert losses.Hinge("sum").reduction == "sum"
    assert losses.BinaryFocalCrossentropy(True, 0.1).get_config()["alpha"] == 0.1


def test_string_names_and_aliases():
    for alias, fn in [("mape", losses.mean_absolute_percentage_error), ("MAPE", losses.mean_absolute_percentage_error),
                      ("msle", losses.mean_squared_logarithmic_error), ("MSLE", losses.mean_squared_logarithmic_error),
                      ("logcosh", losses.log_cosh), ("bce", losses.binary_crossentropy), ("ctc", losses.ctc),
                      ("huber_loss", losses.huber), ("dice", losses.dice), ("tversky", losses.tversky)]:
        assert losses.get(alias) is fn
        assert losses.deserialize(alias) is fn
    wrapped = losses.LossFunctionWrapper(losses.poisson, name="p")
    again = losses.LossFunctionWrapper.from_config(wrapped.get_config())
    assert again.fn is losses.poisson and again.name == "p"
    keras_form = {"module": "keras.losses", "class_name": "function", "config": "squared_hinge",
                  "registered_name": "squared_hinge"}
    assert losses.get(keras_form) is losses.squared_hinge


@pytest.mark.parametrize("loss", ["hinge", "squared_hinge", "poisson", "log_cosh", "cosine_similarity", "mape", "msle",
                                  "binary_focal_crossentropy", "dice", "tversky", "categorical_hinge",
                                  "categorical_focal_crossentropy", "Dice", "BinaryFocalCrossentropy",
                                  losses.Tversky(alpha=0.6, beta=0.4), losses.Hinge(), losses.LogCosh()])
def test_losses_in_compile_and_fit(loss):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((48, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[(x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)]
    model = lamina.Sequential([lamina.Input(shape=(4,)), lamina.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=lamina.optimizers.SGD(0.2), loss=loss)
    h = model.fit(x, y, epochs=4, batch_size=16, shuffle=False, verbose=0).history["loss"]
    assert np.all(np.isfinite(h)) and h[-1] < h[0]


# ---- Keras parity ----------------------------------------------------------------------------------------

def _keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference run")
    return keras


@pytest.mark.parametrize("shape", [(6, 3), (2, 4, 5)], ids=str)
@pytest.mark.parametrize("name", sorted(NP_LOSSES))
def test_loss_functions_match_keras(name, shape):
    keras = _keras()
    y, p = _inputs(name, shape, 10)
    np.testing.assert_allclose(getattr(losses, name)(y, p).numpy(), np.asarray(getattr(keras.losses, name)(y, p)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls_name", sorted(NEW_CLASSES))
def test_loss_classes_match_keras(cls_name):
    keras = _keras()
    kwargs = dict(NEW_CLASSES[cls_name])
    if cls_name == "CTC":
        rng = np.random.default_rng(11)
        y, p = CTC_LABELS, rng.standard_normal((5, 9, 5)).astype(np.float32)
    else:
        fn = KERAS_NAMES[cls_name].replace("huber_loss", "log_cosh").replace("kl_divergence", "poisson")
        y, p = _inputs(fn if fn in NP_LOSSES else "poisson", (4, 3, 5), 12)
        if cls_name == "KLDivergence":
            p = p / p.sum(-1, keepdims=True)
    sw = np.array([1.0, 0.0, 2.0, 0.5, 1.0][:len(y)], np.float32)[:, None]  # (batch, 1): Keras broadcasts no further
    for reduction in ("sum_over_batch_size", "sum", "none", "mean_with_sample_weight"):
        ours = getattr(losses, cls_name)(**kwargs, reduction=reduction)
        theirs = getattr(keras.losses, cls_name)(**kwargs, reduction=reduction)
        for weights in (None, sw):
            np.testing.assert_allclose(ours(y, p, sample_weight=weights).numpy(),
                                       np.asarray(theirs(y, p, sample_weight=weights)), rtol=2e-5, atol=1e-5,
                                       err_msg=f"{cls_name} {reduction} weighted={weights is not None}")
    kc = getattr(keras.losses, cls_name)(**kwargs).get_config()
    # ours has every argument in its config; Keras drops some (Huber's delta, CosineSimilarity's axis)
    assert kc.items() <= {**getattr(losses, cls_name)(**kwargs).get_config()}.items()


def test_ctc_matches_keras():
    keras = _keras()
    rng = np.random.default_rng(13)
    logits = (rng.standard_normal((5, 10, 5)) * 3).astype(np.float32)
    np.testing.assert_allclose(losses.CTC(reduction="none")(CTC_LABELS, logits).numpy(),
                               np.asarray(keras.losses.CTC(reduction=None)(CTC_LABELS, logits)), rtol=1e-5)
    lengths, out_len = (CTC_LABELS != 0).sum(1), np.array([10, 4, 8, 1, 7])
    np.testing.assert_allclose(losses.ctc_loss(CTC_LABELS, logits, lengths, out_len).numpy(),
                               np.asarray(keras.ops.ctc_loss(CTC_LABELS, logits, lengths, out_len)), rtol=1e-5)


@pytest.mark.parametrize("loss", ["hinge", "categorical_focal_crossentropy", "dice", "log_cosh", "cosine_similarity"])
def test_training_with_new_losses_matches_keras(loss):
    keras = _keras()
    rng = np.random.default_rng(14)
    x = rng.standard_normal((48, 3)).astype(np.float32)
    y = (x[:, :2] > 0).astype(np.float32)
    weights = [rng.standard_normal((3, 2)).astype(np.float32), np.zeros(2, np.float32)]

    def run(lib):
        model = lib.Sequential([lib.Input(shape=(3,)), lib.layers.Dense(2, activation="sigmoid")])
        model.set_weights(weights)
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss=loss)
        return model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(run(lamina), run(keras), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("device", ["cpu:1", "gpu:0"])
def test_ctc_on_another_device(device):
    if device.startswith("gpu") and not lamina.list_devices("gpu"):
        pytest.skip("no GPU on this machine")
    rng = np.random.default_rng(15)
    logits = rng.standard_normal((5, 8, 5)).astype(np.float32)
    lengths = (CTC_LABELS != 0).sum(1)
    want = np_ctc(CTC_LABELS, logits, lengths, [8] * 5)
    with lamina.device(device):
        x = lamina.convert_to_tensor(logits)
    with lamina.GradientTape() as tape:  # labels and lengths stay on cpu:0
        tape.watch(x)
        loss = losses.ctc_loss(CTC_LABELS, x, lengths, np.full(5, 8))
        total = ops.sum(loss)
    assert loss.device.name == device
    np.testing.assert_allclose(loss.numpy(), want, rtol=1e-5)
    g = tape.gradient(total, x)
    assert g.device.name == device
    np.testing.assert_allclose(ops.sum(g, axis=-1).numpy(), 0.0, atol=1e-5)  # through log-softmax: rows sum to 0


@pytest.mark.parametrize("name", ["mean_squared_error", "mean_absolute_error", "huber"])
def test_elementwise_losses_broadcast_as_keras(name):
    # Keras's squeeze_or_expand_to_same_rank, then broadcasting: (batch, 1) predictions meet
    # (batch, n) targets; shapes that do not broadcast are an error naming the loss
    rng = np.random.default_rng(0)
    yt, yp = rng.normal(size=(8, 10)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")
    d = yp - yt
    ref = {"mean_squared_error": (d ** 2).mean(-1), "mean_absolute_error": np.abs(d).mean(-1),
           "huber": np.where(np.abs(d) <= 1, 0.5 * d ** 2, np.abs(d) - 0.5).mean(-1)}[name]
    np.testing.assert_allclose(getattr(losses, name)(yt, yp).numpy(), ref, rtol=1e-5)
    np.testing.assert_allclose(getattr(losses, name)(yt[:, 0], yp).numpy(),    # (8,) meets (8, 1)
                               getattr(losses, name)(yt[:, :1], yp).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=f"{name}.*do not broadcast"):
        getattr(losses, name)(yt, rng.normal(size=(8, 3)).astype("float32"))
    keras = keras_or_none()
    if keras is not None:
        np.testing.assert_allclose(getattr(losses, name)(yt, yp).numpy(),
                                   np.asarray(getattr(keras.losses, name)(yt, yp)), rtol=1e-5)


def test_fit_with_one_output_and_many_target_columns_trains_as_keras():
    # the saving guide's layer: Dense(1) fitted on (batch, 10) targets with "mse"
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 10)).astype("float32")
    model = lamina.Sequential([lamina.Input((4,)), lamina.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    loss = model.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(loss, ((model.predict(x, verbose=0) - y) ** 2).mean(), rtol=1e-5)
    model.fit(x, y, epochs=3, verbose=0)
    assert model.evaluate(x, y, verbose=0) < loss
