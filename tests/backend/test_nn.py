"""backend/nn.py: activations, softmax, cross-entropies, one_hot, dropout, normalisation and
embedding against numpy references, forward and backward."""
import math

import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.backend import nn
from opcheck import check_forward, check_grad

EPS = 1e-7


# ---- numpy references -----------------------------------------------------------------------------

def _f64(x):
    return np.asarray(x, np.float64)


_erf = np.vectorize(math.erf)
SELU_A, SELU_S = 1.6732632423543772, 1.0507009873554805


def np_sigmoid(x):
    return 1 / (1 + np.exp(-_f64(x)))


def np_gelu(x, approximate=True):
    x = _f64(x)
    if approximate:
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))


ACTIVATIONS = [
    # (name, lamina fn, reference, kwargs, kinks to keep finite differences away from)
    ("relu", nn.relu, lambda x: np.maximum(_f64(x), 0), {}, [0.0]),
    ("relu6", nn.relu6, lambda x: np.clip(_f64(x), 0, 6), {}, [0.0, 6.0]),
    ("leaky_relu", nn.leaky_relu, lambda x, negative_slope=0.2: np.where(_f64(x) > 0, x, negative_slope * _f64(x)), {}, [0.0]),
    ("leaky_relu_0.05", nn.leaky_relu, lambda x, negative_slope=0.2: np.where(_f64(x) > 0, x, negative_slope * _f64(x)),
     {"negative_slope": 0.05}, [0.0]),
    ("sigmoid", nn.sigmoid, np_sigmoid, {}, []),
    ("tanh", nn.tanh, lambda x: np.tanh(_f64(x)), {}, []),
    ("softplus", nn.softplus, lambda x: np.logaddexp(0, _f64(x)), {}, []),
    ("softsign", nn.softsign, lambda x: _f64(x) / (1 + np.abs(_f64(x))), {}, [0.0]),
    ("elu", nn.elu, lambda x, alpha=1.0: np.where(_f64(x) > 0, x, alpha * np.expm1(_f64(x))), {}, [0.0]),
    ("elu_0.5", nn.elu, lambda x, alpha=1.0: np.where(_f64(x) > 0, x, alpha * np.expm1(_f64(x))), {"alpha": 0.5}, [0.0]),
    ("selu", nn.selu, lambda x: SELU_S * np.where(_f64(x) > 0, x, SELU_A * np.expm1(_f64(x))), {}, [0.0]),
    ("gelu_tanh", nn.gelu, np_gelu, {}, []),
    ("gelu_erf", nn.gelu, np_gelu, {"approximate": False}, []),
    ("silu", nn.silu, lambda x: _f64(x) * np_sigmoid(x), {}, []),
    ("swish", nn.swish, lambda x: _f64(x) * np_sigmoid(x), {}, []),
    ("hard_sigmoid", nn.hard_sigmoid, lambda x: np.clip(_f64(x) / 6 + 0.5, 0, 1), {}, [-3.0, 3.0]),
    ("hard_silu", nn.hard_silu, lambda x: _f64(x) * np.clip(_f64(x) / 6 + 0.5, 0, 1), {}, [-3.0, 3.0]),
    ("log_sigmoid", nn.log_sigmoid, lambda x: -np.logaddexp(0, -_f64(x)), {}, []),
]


def _away_from(x, points, margin=0.02):
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin) * 2
    return x


@pytest.mark.parametrize("name,fn,ref,kw,kinks", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_forward_and_grad(rng, name, fn, ref, kw, kinks):
    x = (rng.standard_normal((5, 7)) * 4).astype(np.float32)   # covers both sides of 3 and 6
    x.flat[:4] = [-40.0, 40.0, 6.5, -3.5]
    check_forward(fn, ref, [x], atol=2e-6, rtol=2e-5, **kw)
    xs = _away_from(rng.standard_normal((3, 1, 5)).astype(np.float32) * 3.5, kinks)
    check_grad(fn, ref, [xs], atol=2e-3, rtol=2e-3, **kw)
    assert fn(np.zeros((0, 3), np.float32), **kw).shape == (0, 3)


def test_activations_cast_integer_input_and_relu_keeps_ints():
    r = nn.relu(np.array([-2, 0, 3], np.int32))
    assert r.dtype == "int32" and r.numpy().tolist() == [0, 0, 3]
    s = nn.softplus(np.array([0, 1], np.int64))
    assert s.dtype == "float32"
    np.testing.assert_allclose(s.numpy(), np.logaddexp(0, [0, 1]), rtol=1e-6)


# ---- softmax ----------------------------------------------------------------------------------------

def np_log_softmax(x, axis=-1):
    x = _f64(x)
    m = x.max(axis=axis, keepdims=True, initial=-np.inf)
    with np.errstate(divide="ignore"):  # log(0) of empty rows
        return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def np_softmax(x, axis=-1):
    return np.exp(np_log_softmax(x, axis))


@pytest.mark.parametrize("shape,axis", [((4, 7), -1), ((3, 5, 2), 1), ((3, 5, 2), 0), ((2, 3, 4), (1, 2)),
                                        ((5, 1), -1), ((1, 9), 0), ((0, 3), -1), ((3, 0, 2), 1), ((6,), 0)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_forward(rng, shape, axis, log):
    fn, ref = (nn.log_softmax, np_log_softmax) if log else (nn.softmax, np_softmax)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    check_forward(fn, ref, [x], atol=1e-5, rtol=1e-5, axis=axis)


def test_softmax_is_stable_for_large_logits():
    x = np.array([[1e4, 1e4 - 1, -1e4], [-1e30, -1e30, -1e30]], np.float32)
    np.testing.assert_allclose(nn.softmax(x).numpy(), np_softmax(x), atol=1e-6)
    np.testing.assert_allclose(nn.log_softmax(x).numpy()[0], np_log_softmax(x)[0], rtol=1e-6)
    assert np.isfinite(nn.log_softmax(x).numpy()).all()


def test_softmax_large_parallel_matches_numpy(rng):
    x = rng.standard_normal((300, 150)).astype(np.float32)
    np.testing.assert_allclose(nn.softmax(x).numpy(), np_softmax(x), atol=1e-6, rtol=1e-5)
    x3 = rng.standard_normal((40, 30, 40)).astype(np.float32)
    np.testing.assert_allclose(nn.log_softmax(x3, axis=1).numpy(), np_log_softmax(x3, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape,axis", [((3, 6), -1), ((2, 5, 3), 1), ((4, 3), 0)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_grad(rng, shape, axis, log):
    fn, ref = (nn.log_softmax, np_log_softmax) if log else (nn.softmax, np_softmax)
    x = rng.standard_normal(shape).astype(np.float32)
    check_grad(fn, ref, [x], atol=1e-3, rtol=1e-3, axis=axis)


def test_softmax_bad_axes():
    x = ops.ones((2, 3, 4))
    with pytest.raises(ValueError, match="softmax: axis 3 is out of range for a tensor with 3 dimensions"):
        nn.softmax(x, axis=3)
    with pytest.raises(ValueError, match=r"log_softmax: axes \(0, 2\).*\(2, 3, 4\).*adjacent"):
        nn.log_softmax(x, axis=(0, 2))
    with pytest.raises(ValueError, match=r"at least 1 dimension.*\(\)"):
        nn.softmax(ops.full((), 1.0))


# ---- cross-entropies ------------------------------------------------------------------------------

def _log_probs(output, from_logits, axis):
    output = _f64(output)
    if from_logits:
        return np_log_softmax(output, axis)
    p = output / output.sum(axis=axis, keepdims=True)
    return np.log(np.clip(p, EPS, 1 - EPS))


def np_sparse_ce(target, output, from_logits=False, axis=-1):
    t = np.asarray(target).astype(np.int64)
    if t.ndim == np.ndim(output) and t.shape[-1] == 1:
        t = t[..., 0]
    K = np.shape(output)[axis]
    onehot = np.moveaxis(np.eye(K)[t], -1, axis)
    return -(onehot * _log_probs(output, from_logits, axis)).sum(axis=axis)


def np_ce(target, output, from_logits=False, axis=-1):
    return -(_f64(target) * _log_probs(output, from_logits, axis)).sum(axis=axis)


def np_bce(target, output, from_logits=False):
    t, x = _f64(target), _f64(output)
    if from_logits:
        return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    c = np.clip(x, EPS, 1 - EPS)
    return -(t * np.log(c) + (1 - t) * np.log(1 - c))


def _ce_inputs(rng, shape, axis, from_logits, label_dtype=np.int64):
    axis = axis % len(shape)
    K = shape[axis]
    out = (rng.standard_normal(shape) * 2 if from_logits else rng.uniform(0.1, 1.0, shape)).astype(np.float32)
    labels = rng.integers(0, K, shape[:axis] + shape[axis + 1:]).astype(label_dtype)
    return labels, out


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("shape,axis,label_dtype", [((6, 5), -1, np.int64), ((4, 3), -1, np.int32),
                                                    ((2, 4, 3), 1, np.int32), ((3, 2, 4), -1, np.int64),
                                                    ((5, 1), -1, np.int64)])
def test_sparse_categorical_crossentropy(rng, from_logits, shape, axis, label_dtype):
    labels, out = _ce_inputs(rng, shape, axis, from_logits, label_dtype)
    check_forward(nn.sparse_categorical_crossentropy, np_sparse_ce, [labels, out], atol=1e-5, rtol=1e-5,
                  from_logits=from_logits, axis=axis)
    check_grad(nn.sparse_categorical_crossentropy, np_sparse_ce, [labels, out], wrt=[1], atol=1e-3, rtol=1e-3,
               from_logits=from_logits, axis=axis)


def test_sparse_ce_squeezes_trailing_one_and_accepts_float_ids(rng):
    labels, out = _ce_inputs(rng, (7, 4), -1, True)
    want = np_sparse_ce(labels, out, True)
    got = nn.sparse_categorical_crossentropy(labels[:, None], out, from_logits=True)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    got = nn.sparse_categorical_crossentropy(labels.astype(np.float32), out, from_logits=True)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def test_sparse_ce_large_and_extreme_logits(rng):
    labels, out = _ce_inputs(rng, (2000, 20), -1, True)
    np.testing.assert_allclose(nn.sparse_categorical_crossentropy(labels, out, from_logits=True).numpy(),
                               np_sparse_ce(labels, out, True), rtol=1e-5, atol=1e-5)
    x = np.array([[1e4, -1e4, 0.0], [-50.0, 50.0, 0.0]], np.float32)
    got = nn.sparse_categorical_crossentropy(np.array([1, 1]), x, from_logits=True).numpy()
    np.testing.assert_allclose(got, [2e4, 0.0], rtol=1e-6, atol=1e-6)
    # probabilities are clipped at 1e-7: a zero probability costs -log(1e-7)
    p = np.array([[0.0, 1.0]], np.float32)
    np.testing.assert_allclose(nn.sparse_categorical_crossentropy(np.array([0]), p).numpy(), [-np.log(1e-7)], rtol=1e-4)


def test_sparse_ce_fused_gradient_is_softmax_minus_onehot(rng):
    labels, out = _ce_inputs(rng, (5, 6), -1, True)
    x = lamina.convert_to_tensor(out)
    g = np.arange(1, 6, dtype=np.float32)
    with lamina.GradientTape() as tape:
        tape.watch(x)
        loss = nn.sparse_categorical_crossentropy(labels, x, from_logits=True)
    dx = tape.gradient(loss, x, output_gradients=g).numpy()
    np.testing.assert_allclose(dx, (np_softmax(out) - np.eye(6)[labels]) * g[:, None], atol=1e-6)


def test_sparse_ce_errors():
    logits = ops.zeros((4, 5))
    with pytest.raises(ValueError, match=r"label 5 at flat index 2 is out of range for 5 classes"):
        nn.sparse_categorical_crossentropy(np.array([0, 1, 5, 2]), logits, from_logits=True)
    with pytest.raises(ValueError, match=r"label -1 .*negative"):
        nn.sparse_categorical_crossentropy(np.array([0, -1, 1, 2], np.int32), logits, from_logits=True)
    with pytest.raises(ValueError, match=r"target of shape \(3,\) does not match output of shape \(4, 5\)"):
        nn.sparse_categorical_crossentropy(np.array([0, 1, 2]), logits)
    with pytest.raises(ValueError, match=r"target of shape \(4, 5\) does not match output of shape \(4, 5\).*categorical_crossentropy"):
        nn.sparse_categorical_crossentropy(np.zeros((4, 5), np.int64), logits)
    with pytest.raises(TypeError, match=r"output.*int64 with shape \(4,\).*swapped"):
        nn.sparse_categorical_crossentropy(logits, np.array([0, 1, 2, 3]))
    with pytest.raises(TypeError, match=r"bool tensor of shape \(4,\)"):
        nn.sparse_categorical_crossentropy(np.ones(4, bool), logits)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        nn.sparse_categorical_crossentropy(np.array([0, 1, 2, 3]), logits, axis=2)
    with lamina.device("cpu:1"):
        other = lamina.convert_to_tensor(np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"different devices.*cpu:0.*\(4, 5\).*cpu:1"):
        nn.sparse_categorical_crossentropy(other, logits)


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("shape,axis", [((5, 4), -1), ((2, 3, 4), 1), ((3, 1), -1)])
def test_categorical_crossentropy(rng, from_logits, shape, axis):
    _, out = _ce_inputs(rng, shape, axis, from_logits)
    target = rng.dirichlet(np.ones(shape[axis]), shape[:axis % len(shape)] + shape[axis % len(shape) + 1:])
    target = np.moveaxis(target, -1, axis).astype(np.float32)
    check_forward(nn.categorical_crossentropy, np_ce, [target, out], atol=1e-5, rtol=1e-5,
                  from_logits=from_logits, axis=axis)
    check_grad(nn.categorical_crossentropy, np_ce, [target, out], atol=1e-3, rtol=1e-3,
               from_logits=from_logits, axis=axis)


def test_categorical_crossentropy_onehot_equals_sparse(rng):
    labels, out = _ce_inputs(rng, (6, 5), -1, True)
    dense = nn.categorical_crossentropy(np.eye(5, dtype=np.float32)[labels], out, from_logits=True)
    sparse = nn.sparse_categorical_crossentropy(labels, out, from_logits=True)
    np.testing.assert_allclose(dense.numpy(), sparse.numpy(), rtol=1e-6)


def test_categorical_crossentropy_errors():
    with pytest.raises(ValueError, match=r"target of shape \(4, 3\) does not match output of shape \(4, 5\)"):
        nn.categorical_crossentropy(np.zeros((4, 3), np.float32), ops.zeros((4, 5)))
    with pytest.raises(TypeError, match="output.*int32"):
        nn.categorical_crossentropy(np.zeros((4, 5), np.float32), np.zeros((4, 5), np.int32))


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("shape", [(4, 5), (7,), (2, 1, 3)])
def test_binary_crossentropy(rng, from_logits, shape):
    out = (rng.standard_normal(shape) * 3 if from_logits else rng.uniform(0.05, 0.95, shape)).astype(np.float32)
    target = rng.uniform(0, 1, shape).astype(np.float32)
    check_forward(nn.binary_crossentropy, np_bce, [target, out], atol=1e-5, rtol=1e-5, from_logits=from_logits)
    check_grad(nn.binary_crossentropy, np_bce, [target, out], atol=1e-3, rtol=1e-3, from_logits=from_logits)


def test_binary_crossentropy_extremes_and_errors():
    x = np.array([-100.0, 100.0, 0.0], np.float32)
    got = nn.binary_crossentropy(np.array([1.0, 0.0, 1.0], np.float32), x, from_logits=True).numpy()
    np.testing.assert_allclose(got, [100.0, 100.0, np.log(2)], rtol=1e-6)
    p = np.array([0.0, 1.0], np.float32)
    got = nn.binary_crossentropy(np.array([1.0, 0.0], np.float32), p).numpy()
    assert np.isfinite(got).all() and got[0] == pytest.approx(-np.log(1e-7), rel=1e-4)
    with pytest.raises(ValueError, match=r"target of shape \(3, 1\) does not match output of shape \(3,\)"):
        nn.binary_crossentropy(np.zeros((3, 1), np.float32), x)


# ---- one_hot --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis", [((5,), -1), ((2, 3), -1), ((2, 3), 0), ((2, 3), 1), ((0, 2), -1), ((), -1)])
def test_one_hot(rng, shape, axis):
    ids = np.asarray(rng.integers(-1, 5, shape), np.int32)   # -1 and 4 are out of range for 4 classes
    want = np.moveaxis(((ids[..., None] == np.arange(4))).astype(np.float32), -1, axis)
    # (a 0-d tensor through ops.full: convert_to_tensor makes 0-d arrays 1-d for now)
    got = nn.one_hot(ops.full((), int(ids), "int32") if ids.ndim == 0 else ids, 4, axis=axis)
    assert got.dtype == "float32"
    np.testing.assert_array_equal(got.numpy(), want)


def test_one_hot_dtypes_and_errors():
    got = nn.one_hot(np.array([2, 0], np.int64), 3, dtype="int32")
    assert got.dtype == "int32" and got.numpy().tolist() == [[0, 0, 1], [1, 0, 0]]
    assert nn.one_hot(np.array([1]), 2, dtype="bool").numpy().tolist() == [[False, True]]
    with pytest.raises(TypeError, match="Cannot convert"):
        nn.one_hot(np.array(["a", "b"]), 3)
    with pytest.raises(ValueError, match=r"axis 3 is out of range.*\(2,\)"):
        nn.one_hot(np.array([1, 2]), 3, axis=3)
    with pytest.raises(ValueError, match="num_classes"):
        nn.one_hot(np.array([1, 2]), -2)


def test_one_hot_casts_float_ids_as_keras():
    """Float ids (labels loaded as float32) are cast to int, as Keras's TensorFlow and torch
    backends do; out-of-range ids give zero rows."""
    got = nn.one_hot(np.array([2.0, 0.0, 1.7, -1.0, 3.0], np.float32), 3)
    assert got.dtype == "float32"
    np.testing.assert_array_equal(got.numpy(), [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(ops.one_hot(ops.convert_to_tensor([1.0, 0.0]), 2, axis=0).numpy(), [[0, 1], [1, 0]])
    try:
        import os
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras
    except ImportError:
        return
    ids = np.array([2.0, 0.0, 1.0], np.float32)
    np.testing.assert_array_equal(nn.one_hot(ids, 3).numpy(), np.asarray(keras.ops.one_hot(ids, 3)))


# ---- dropout --------------------------------------------------------------------------------------

def test_dropout_values_rate_and_gradient(rng):
    x = rng.uniform(0.5, 1.5, (200, 300)).astype(np.float32)
    xt = lamina.convert_to_tensor(x)
    rate = 0.3
    with lamina.GradientTape() as tape:
        tape.watch(xt)
        y = nn.dropout(xt, rate, seed=7)
    yn = y.numpy()
    kept = yn != 0
    np.testing.assert_allclose(yn[kept], x[kept] / (1 - rate), rtol=1e-6)
    n = x.size
    assert abs(kept.mean() - (1 - rate)) < 5 * math.sqrt(rate * (1 - rate) / n)
    g = rng.standard_normal(x.shape).astype(np.float32)
    dx = tape.gradient(y, xt, output_gradients=g).numpy()
    np.testing.assert_allclose(dx, np.where(kept, g / (1 - rate), 0), rtol=1e-6)
    np.testing.assert_array_equal(nn.dropout(x, rate, seed=7).numpy(), yn)      # same seed, same mask
    assert not np.array_equal(nn.dropout(x, rate, seed=8).numpy(), yn)


def test_dropout_rate_zero_returns_input_and_noise_shape(rng):
    x = lamina.convert_to_tensor(rng.uniform(1, 2, (40, 3, 50)).astype(np.float32))
    assert nn.dropout(x, 0.0) is x
    y = nn.dropout(x, 0.5, noise_shape=(None, 1, 50), seed=1).numpy()
    kept = y != 0
    assert (kept == kept[:, :1, :]).all()     # one decision per (batch, channel), shared over axis 1
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(y[kept], 2 * x.numpy()[kept], rtol=1e-6)
    with lamina.GradientTape() as tape:
        tape.watch(x)
        y = nn.dropout(x, 0.5, noise_shape=(40, 1, 1), seed=2)
    dx = tape.gradient(y, x, output_gradients=np.ones(x.shape, np.float32)).numpy()
    np.testing.assert_allclose(dx, (y.numpy() != 0) * 2.0)


def test_dropout_errors():
    x = ops.ones((4, 5))
    for rate in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
            nn.dropout(x, rate)
    with pytest.raises(ValueError, match=r"noise_shape \(4, 2\) does not broadcast to x's shape \(4, 5\)"):
        nn.dropout(x, 0.5, noise_shape=(4, 2))
    with pytest.raises(ValueError, match=r"rank of x.*\(4, 5\)"):
        nn.dropout(x, 0.5, noise_shape=(5,))
    with pytest.raises(TypeError, match=r"float32 tensor, received int32 with shape \(2,\)"):
        nn.dropout(np.array([1, 2], np.int32), 0.5)
    with pytest.raises(TypeError, match="seed must be an int"):
        nn.dropout(x, 0.5, seed="abc")


# ---- batch normalisation --------------------------------------------------------------------------

def _bshape(ndim, axis, C):
    s = [1] * ndim
    s[axis] = C
    return s


def np_bn_train(x, gamma=None, beta=None, axis=-1, epsilon=1e-3):
    x = _f64(x)
    a = axis % x.ndim
    axes = tuple(i for i in range(x.ndim) if i != a)
    m, v = x.mean(axis=axes), x.var(axis=axes)
    bs = _bshape(x.ndim, a, x.shape[a])
    y = (x - m.reshape(bs)) / np.sqrt(v.reshape(bs) + epsilon)
    if gamma is not None:
        y = y * _f64(gamma).reshape(bs)
    if beta is not None:
        y = y + _f64(beta).reshape(bs)
    return y, m, v


@pytest.mark.parametrize("shape,axis", [((6, 4), -1), ((3, 4, 5), 1), ((2, 3, 3, 4), -1), ((5, 3), 0), ((1, 3), -1)])
def test_batch_norm_train(rng, shape, axis):
    C = shape[axis]
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, C).astype(np.float32)
    beta = rng.standard_normal(C).astype(np.float32)
    check_forward(nn.batch_norm_train, np_bn_train, [x, gamma, beta], atol=1e-5, rtol=1e-4, axis=axis)
    check_forward(lambda x: nn.batch_norm_train(x, axis=axis), lambda x: np_bn_train(x, axis=axis), [x],
                  atol=1e-5, rtol=1e-4)
    if x.size > 1 and shape != (1, 3):
        check_grad(nn.batch_norm_train, np_bn_train, [x, gamma, beta], atol=2e-3, rtol=2e-3, axis=axis)


def test_batch_norm_train_gradient_of_y_only_and_without_params(rng):
    x = rng.standard_normal((7, 3)).astype(np.float32)
    check_grad(lambda x: nn.batch_norm_train(x)[0], lambda x: np_bn_train(x)[0], [x], atol=2e-3, rtol=2e-3)
    g = rng.uniform(0.5, 2, 3).astype(np.float32)
    gv = lamina.Variable(g)
    with lamina.GradientTape() as tape:
        y, _, _ = nn.batch_norm_train(x, gv, None)
        loss = ops.sum(y * x)
    (dg,) = tape.gradient(loss, [gv])
    want = (np_bn_train(x)[0] * x).sum(axis=0)
    np.testing.assert_allclose(dg.numpy(), want, rtol=1e-4)


def test_batch_norm_train_large_and_thread_independent(rng):
    x = (rng.standard_normal((4000, 16)) * 3 + 5).astype(np.float32)
    y, m, v = nn.batch_norm_train(x)
    ry, rm, rv = np_bn_train(x)
    np.testing.assert_allclose(m.numpy(), rm, rtol=1e-5)
    np.testing.assert_allclose(v.numpy(), rv, rtol=1e-4)
    np.testing.assert_allclose(y.numpy(), ry, atol=1e-4)
    xc = rng.standard_normal((8, 16, 300)).astype(np.float32)   # channels-first: inner > 1

    def run():
        t = lamina.convert_to_tensor(xc)
        with lamina.GradientTape() as tape:
            tape.watch(t)
            out = nn.batch_norm_train(t, axis=1)[0]
        return out.numpy(), tape.gradient(out, t, output_gradients=xc).numpy()
    with _threads(1):
        a = run()
    with _threads(2):
        b = run()
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_batch_norm_train_errors():
    x = ops.ones((4, 3))
    with pytest.raises(ValueError, match=r"gamma of shape \(3,\).*\(4, 3\).*received shape \(4,\)"):
        nn.batch_norm_train(x, ops.ones((4,)))
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        nn.batch_norm_train(x, axis=2)
    with pytest.raises(TypeError, match="x of dtype float32, received int32"):
        nn.batch_norm_train(np.ones((2, 2), np.int32))


def np_bn_infer(x, mean, variance, offset=None, scale=None, axis=-1, epsilon=1e-3):
    x = _f64(x)
    bs = _bshape(x.ndim, axis % x.ndim, x.shape[axis])
    y = (x - _f64(mean).reshape(bs)) / np.sqrt(_f64(variance).reshape(bs) + epsilon)
    if scale is not None:
        y = y * _f64(scale).reshape(bs)
    if offset is not None:
        y = y + _f64(offset).reshape(bs)
    return y


@pytest.mark.parametrize("shape,axis", [((5, 4), -1), ((2, 3, 4), 1), ((3, 2, 2, 3), 3)])
def test_batch_normalization_inference(rng, shape, axis):
    C = shape[axis]
    x = rng.standard_normal(shape).astype(np.float32)
    mean = rng.standard_normal(C).astype(np.float32)
    var = rng.uniform(0.5, 2, C).astype(np.float32)
    offset = rng.standard_normal(C).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, C).astype(np.float32)
    args = [x, mean, var, offset, scale]
    check_forward(lambda *a: nn.batch_normalization(*a[:3], axis, offset=a[3], scale=a[4]),
                  lambda *a: np_bn_infer(*a, axis=axis), args, atol=1e-5, rtol=1e-5)
    check_grad(lambda *a: nn.batch_normalization(*a[:3], axis, offset=a[3], scale=a[4]),
               lambda *a: np_bn_infer(*a, axis=axis), args, atol=2e-3, rtol=2e-3)
    check_forward(lambda x, m, v: nn.batch_normalization(x, m, v, axis, epsilon=0.1),
                  lambda x, m, v: np_bn_infer(x, m, v, axis=axis, epsilon=0.1), [x, mean, var], atol=1e-5, rtol=1e-5)


def test_batch_normalization_errors():
    x = ops.ones((4, 3))
    with pytest.raises(ValueError, match=r"variance of shape \(3,\).*\(4, 3\).*received shape \(1, 3\)"):
        nn.batch_normalization(x, ops.zeros((3,)), ops.ones((1, 3)), -1)
    with pytest.raises(TypeError, match="mean of dtype float32, received int64"):
        nn.batch_normalization(x, np.zeros(3, np.int64), ops.ones((3,)), -1)


@pytest.mark.parametrize("shape,axis", [((5, 4), -1), ((2, 3, 40), 1), ((3, 9, 7, 35), 3), ((2, 20, 33, 33), 1)])
@pytest.mark.parametrize("max_value", [None, 6.0, 0.5])
def test_batch_normalization_relu_equals_the_two_ops(rng, shape, axis, max_value):
    """The fused inference op gives relu(batch_normalization(x)) capped at max_value, the same
    float32 values (NaN and -0.0 included), channels last (one row per pixel) or not (lanes)."""
    C = shape[axis]
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[:4] = [np.nan, -0.0, np.inf, -np.inf]
    mean = rng.standard_normal(C).astype(np.float32)
    var = rng.uniform(0.5, 2, C).astype(np.float32)
    offset = rng.standard_normal(C).astype(np.float32)
    for scale in (None, rng.uniform(0.5, 1.5, C).astype(np.float32)):
        got = nn.batch_normalization_relu(x, mean, var, axis, offset=offset, scale=scale, epsilon=0.01,
                                          max_value=max_value).numpy()
        y = nn.batch_normalization(x, mean, var, axis, offset=offset, scale=scale, epsilon=0.01)
        want = (nn.relu(y) if max_value is None else nn.relu6(y) if max_value == 6 else
                ops.minimum(nn.relu(y), max_value)).numpy()
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
        ref = np.clip(np_bn_infer(x, mean, var, offset, scale, axis=axis, epsilon=0.01), 0, max_value)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)


def test_batch_normalization_relu_refuses_to_run_while_a_gradient_is_recorded(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    mean, var = ops.zeros((3,)), ops.ones((3,))
    beta = lamina.Variable(np.zeros(3, np.float32))  # trainable: needs a gradient under a tape
    with lamina.GradientTape():
        with pytest.raises(RuntimeError, match="batch_normalization_relu.*no gradient.*batch_normalization"):
            nn.batch_normalization_relu(x, mean, var, -1, offset=beta)
        y = nn.batch_normalization_relu(x, mean, var, -1, offset=ops.zeros((3,)))  # nothing to differentiate
    assert y._node is None
    np.testing.assert_allclose(y.numpy(), np.maximum(x / np.sqrt(1 + 1e-3), 0), rtol=1e-6)
    with pytest.raises(ValueError, match=r"batch_normalization_relu: expected variance of shape \(3,\)"):
        nn.batch_normalization_relu(x, mean, ops.ones((4,)), -1)


@pytest.mark.parametrize("shape,axes,keepdims", [((4, 5), (0,), False), ((3, 4, 5), (0, 1), True), ((2, 3, 4), (0, 2), False)])
def test_moments(rng, shape, axes, keepdims):
    x = rng.standard_normal(shape).astype(np.float32)

    def ref(x, axes=axes, keepdims=keepdims):
        return _f64(x).mean(axis=axes, keepdims=keepdims), _f64(x).var(axis=axes, keepdims=keepdims)
    check_forward(nn.moments, ref, [x], atol=1e-5, rtol=1e-5, axes=axes, keepdims=keepdims)
    check_grad(nn.moments, ref, [x], atol=2e-3, rtol=2e-3, axes=axes, keepdims=keepdims)


# ---- layer normalisation --------------------------------------------------------------------------

def np_layer_norm(x, gamma=None, beta=None, axis=-1, epsilon=1e-3):
    x = _f64(x)
    axes = tuple(a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis))
    m, v = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    y = (x - m) / np.sqrt(v + epsilon)
    bs = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    if gamma is not None:
        y = y * _f64(gamma).reshape(bs)
    if beta is not None:
        y = y + _f64(beta).reshape(bs)
    return y


@pytest.mark.parametrize("shape,axis", [((4, 6), -1), ((2, 3, 5), (1, 2)), ((3, 4, 5), 1), ((2, 3, 4), (0, 2)), ((5, 1), -1)])
def test_layer_norm(rng, shape, axis):
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    axes = (axis,) if isinstance(axis, int) else axis
    pshape = tuple(shape[a] for a in axes)
    gamma = rng.uniform(0.5, 1.5, pshape).astype(np.float32)
    beta = rng.standard_normal(pshape).astype(np.float32)
    check_forward(nn.layer_norm, np_layer_norm, [x, gamma, beta], atol=1e-5, rtol=1e-4, axis=axis)
    check_forward(lambda x: nn.layer_norm(x, axis=axis), lambda x: np_layer_norm(x, axis=axis), [x], atol=1e-5, rtol=1e-4)
    check_grad(nn.layer_norm, np_layer_norm, [x, gamma, beta], atol=2e-3, rtol=2e-3, axis=axis)


def test_layer_norm_large_and_thread_independent(rng):
    x = rng.standard_normal((600, 64)).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, 64).astype(np.float32)
    beta = rng.standard_normal(64).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)

    def run():
        ts = [lamina.convert_to_tensor(a) for a in (x, gamma, beta)]
        with lamina.GradientTape() as tape:
            tape.watch(ts)
            y = nn.layer_norm(*ts)
        return [y.numpy()] + [t.numpy() for t in tape.gradient(y, ts, output_gradients=g)]
    with _threads(1):
        a = run()
    with _threads(2):
        b = run()
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_allclose(a[0], np_layer_norm(x, gamma, beta), atol=1e-5)
    xhat = np_layer_norm(x)
    np.testing.assert_allclose(a[2], (g * xhat).sum(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a[3], g.sum(axis=0), rtol=1e-4, atol=1e-4)


def test_layer_norm_errors():
    x = ops.ones((2, 3, 4))
    with pytest.raises(ValueError, match=r"gamma of shape \(4,\).*\(2, 3, 4\).*received shape \(3,\)"):
        nn.layer_norm(x, ops.ones((3,)))
    with pytest.raises(ValueError, match="axis -4 is out of range"):
        nn.layer_norm(x, axis=-4)


# ---- embedding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ids_shape,dtype", [((3, 4), np.int32), ((5,), np.int64), ((2, 1, 3), np.int64), ((0,), np.int32)])
def test_embedding_lookup(rng, ids_shape, dtype):
    table = rng.standard_normal((7, 3)).astype(np.float32)
    ids = rng.integers(0, 7, ids_shape).astype(dtype)
    check_forward(nn.embedding_lookup, lambda t, i: _f64(t)[i], [table, ids])
    if ids.size:
        check_grad(nn.embedding_lookup, lambda t, i: _f64(t)[i], [table, ids], wrt=[0])


def test_embedding_gradient_scatter_adds_repeated_ids_and_is_thread_independent(rng):
    V, D = 500, 32
    table = lamina.Variable(rng.standard_normal((V, D)).astype(np.float32))
    ids = rng.integers(0, 50, (40, 30)).astype(np.int32)      # many repeats
    g = rng.standard_normal((40, 30, D)).astype(np.float32)
    want = np.zeros((V, D))
    np.add.at(want, ids.ravel(), g.reshape(-1, D).astype(np.float64))

    def run():
        with lamina.GradientTape() as tape:
            y = nn.embedding_lookup(table, ids)
        return tape.gradient(y, table, output_gradients=g).numpy()
    with _threads(1):
        a = run()
    with _threads(2):
        b = run()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, want, atol=1e-4)


def test_embedding_errors():
    table = ops.ones((5, 2))
    with pytest.raises(ValueError, match=r"id 7 at flat index 1 is out of range for 5 rows"):
        nn.embedding_lookup(table, np.array([1, 7]))
    with pytest.raises(ValueError, match=r"id -2 .*negative"):
        nn.embedding_lookup(table, np.array([[0], [-2]], np.int32))
    with pytest.raises(TypeError, match=r"integer ids.*float32 with shape \(2,\)"):
        nn.embedding_lookup(table, np.array([1.0, 2.0], np.float32))
    with pytest.raises(ValueError, match=r"\(vocabulary, dim\), received shape \(5,\)"):
        nn.embedding_lookup(ops.ones((5,)), np.array([1]))


def test_public_names_exported():
    for name in nn.__all__:
        assert getattr(ops, name).__wrapped__ is getattr(nn, name), name
    assert ops.sigmoid.__wrapped__ is lamina.backend.math.sigmoid and ops.tanh.__wrapped__ is lamina.backend.math.tanh


# ---- helpers ----------------------------------------------------------------------------------------

class _threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = lamina.backend.num_threads()
        lamina.backend.set_num_threads(self.n)

    def __exit__(self, *exc):
        lamina.backend.set_num_threads(self.old)


# ---- bias_relu (Dense / convolution layers with activation='relu') --------------------------------

@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 6, 16), (2000, 3), (1, 1), (130, 64)])
def test_bias_relu_matches_numpy_forward_and_backward(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape[-1]).astype(np.float32)
    check_forward(nn.bias_relu, lambda x, b: np.maximum(x + b, 0), [x, b], atol=0, rtol=0)
    check_grad(nn.bias_relu, lambda x, b: np.maximum(_f64(x) + b, 0), [x, b], atol=2e-3, rtol=2e-3)


def test_bias_relu_gradient_is_exact_and_sums_many_rows(rng):
    x = rng.standard_normal((10000, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    g = rng.standard_normal((10000, 5)).astype(np.float32)
    xv, bv = lamina.Variable(x), lamina.Variable(b)
    with lamina.GradientTape() as tape:
        y = nn.bias_relu(xv, bv)
    gx, gb = tape.gradient(y, [xv, bv], output_gradients=g)
    want = np.where(x + b > 0, g, 0)
    np.testing.assert_array_equal(gx.numpy(), want)
    np.testing.assert_allclose(gb.numpy(), want.astype(np.float64).sum(0), rtol=1e-6, atol=1e-4)
    with lamina.GradientTape() as tape:  # only the bias needs a gradient
        y = nn.bias_relu(lamina.convert_to_tensor(x), bv)
    (gb2,) = tape.gradient(y, [bv], output_gradients=g)
    np.testing.assert_array_equal(gb2.numpy(), gb.numpy())


def test_bias_relu_special_values_as_relu_of_the_sum():
    x = np.array([[np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-45, -1e-45, 3.0]], np.float32)
    b = np.array([0, 0, 0, 0, 0, 0, 0, -3], np.float32)
    got = nn.bias_relu(lamina.convert_to_tensor(x), lamina.convert_to_tensor(b)).numpy()
    want = ops.relu(ops.add(x, b)).numpy()
    np.testing.assert_array_equal(got, want)  # NaN stays NaN, -0 stays -0 (bitwise as relu)
    assert np.signbit(got[0, 1]) == np.signbit(want[0, 1])


def test_bias_relu_other_inputs_take_the_general_path(rng):
    xi = np.arange(12, dtype=np.int32).reshape(3, 4) - 6
    got = nn.bias_relu(lamina.convert_to_tensor(xi), lamina.convert_to_tensor(np.ones(4, np.int32)))
    assert got.dtype == "int32"
    np.testing.assert_array_equal(got.numpy(), np.maximum(xi + 1, 0))
    x = rng.standard_normal((3, 4)).astype(np.float32)  # a (3, 4) bias broadcasts as add does
    b = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(nn.bias_relu(lamina.convert_to_tensor(x), lamina.convert_to_tensor(b)).numpy(),
                               np.maximum(x + b, 0), rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5,\)"):
        nn.bias_relu(lamina.convert_to_tensor(x), lamina.convert_to_tensor(np.ones(5, np.float32)))


def test_bias_relu_kernel_checks_its_buffers():
    k = lamina.get_device("cpu").kernels
    x = lamina.convert_to_tensor(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"bias_relu: x holds 12 elements, not a whole number of rows of the bias's 5"):
        k.bias_relu(x._buf, lamina.convert_to_tensor(np.ones(5, np.float32))._buf, x._buf)
    with pytest.raises(ValueError, match=r"bias_relu_grad: db holds 4 elements, expected 3"):
        k.bias_relu_grad(x._buf, x._buf, None, lamina.convert_to_tensor(np.ones(4, np.float32))._buf, 3)


def test_moments_refuses_synchronized_as_keras_jax():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    m, v = ops.moments(x, axes=0)
    np.testing.assert_allclose(m.numpy(), x.mean(0))
    np.testing.assert_allclose(v.numpy(), x.var(0))
    with pytest.raises(NotImplementedError, match="synchronized=True"):
        ops.moments(x, axes=0, synchronized=True)
