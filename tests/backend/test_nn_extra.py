"""backend/nn_extra.py: activations, psnr, multi_hot, layer / RMS normalisation, depth_to_space,
unfold / fold: values against numpy formulas and Keras, gradients against finite differences,
and the errors."""
import numpy as np
import pytest

import lamina
from lamina import ops
from keras_ref import keras_or_none
from opcheck import check_forward, check_grad

RNG = np.random.default_rng(11)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def away_from(x, points, gap=0.05):
    """x nudged so that no entry lies within `gap` of a kink (finite differences stay honest)."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + np.where(x[near] >= p, gap, -gap) * 2
    return x


def needs_keras():
    k = keras_or_none()
    if k is None:
        pytest.skip("Keras is not installed: no reference for Keras's own semantics")
    return k


def _sig(x):
    return 1 / (1 + np.exp(-x))


ACTIVATIONS = {
    "celu": (lambda x: np.maximum(x, 0) + 0.7 * np.expm1(np.minimum(x, 0) / 0.7), dict(alpha=0.7), [0.0]),
    "hard_shrink": (lambda x: np.where(np.abs(x) > 0.3, x, 0), dict(threshold=0.3), [-0.3, 0.3]),
    "soft_shrink": (lambda x: np.where(x > 0.4, x - 0.4, np.where(x < -0.4, x + 0.4, 0)), dict(threshold=0.4),
                    [-0.4, 0.4]),
    "hard_tanh": (lambda x: np.clip(x, -1, 1), {}, [-1.0, 1.0]),
    "tanh_shrink": (lambda x: x - np.tanh(x), {}, []),
    "threshold": (lambda x: np.where(x > 0.2, x, -3.0), dict(threshold=0.2, default_value=-3.0), [0.2]),
    "squareplus": (lambda x: (x + np.sqrt(x * x + 2.0)) / 2, dict(b=2.0), []),
    "sparse_plus": (lambda x: np.where(x <= -1, 0, np.where(x < 1, (x + 1) ** 2 / 4, x)), {}, [-1.0, 1.0]),
    "sparse_sigmoid": (lambda x: np.clip((x + 1) / 2, 0, 1), {}, [-1.0, 1.0]),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5)])
def test_activations_match_numpy_with_gradients(name, shape):
    ref, kw, kinks = ACTIVATIONS[name]
    x = away_from(f32(*shape) * 1.5, kinks)
    check_forward(lambda t: getattr(ops, name)(t, **kw), ref, [x], atol=1e-6)
    check_grad(lambda t: getattr(ops, name)(t, **kw), ref, [x])


def test_activations_take_integers_and_match_keras():
    xi = np.array([-3, -1, 0, 1, 2], np.int32)
    x = np.linspace(-3, 3, 13).astype(np.float32)
    keras = keras_or_none()
    for name, (ref, kw, _) in sorted(ACTIVATIONS.items()):
        got = getattr(ops, name)(xi, **kw)
        assert got.dtype == "float32", name
        np.testing.assert_allclose(got.numpy(), ref(xi.astype(np.float64)), atol=1e-6, err_msg=name)
        if keras is not None and name in ("celu", "soft_shrink", "sparse_plus"):
            np.testing.assert_allclose(getattr(ops, name)(x, **kw).numpy(),
                                       np.asarray(getattr(keras.ops, name)(x, **kw)), rtol=1e-5, atol=1e-6)


def test_activation_argument_errors():
    with pytest.raises(ValueError, match=r"celu: alpha must not be zero"):
        ops.celu(f32(3), alpha=0.0)
    with pytest.raises(ValueError, match=r"squareplus: b must be non-negative, received b=-1.0"):
        ops.squareplus(f32(3), b=-1)
    with pytest.raises(TypeError, match=r"hard_shrink: threshold must be a real number, received 'x'"):
        ops.hard_shrink(f32(3), threshold="x")
    with pytest.raises(ValueError, match=r"threshold: threshold must be a scalar, received a tensor of shape \(2,\)"):
        ops.threshold(f32(3), lamina.convert_to_tensor(f32(2)), 0.0)
    with pytest.raises(TypeError, match=r"unfold: kernel_size must be an integer, received a tensor of shape"):
        ops.unfold(f32(1, 1, 4, 4), lamina.convert_to_tensor(np.array([2, 2])))


@pytest.mark.parametrize("shape,axis", [((4, 6), -1), ((2, 4, 3), 1), ((6,), 0)])
def test_glu_matches_numpy_and_keras(shape, axis):
    x = f32(*shape)

    def ref(a):
        p, q = np.split(a, 2, axis=axis)
        return p * _sig(q)
    check_forward(lambda t: ops.glu(t, axis), ref, [x], atol=1e-6)
    check_grad(lambda t: ops.glu(t, axis), ref, [x])
    keras = keras_or_none()
    if keras is not None and axis == 1:
        np.testing.assert_allclose(ops.glu(x, axis).numpy(), np.asarray(keras.ops.glu(x, axis)), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"glu: axis 1 of x \(shape \(2, 3\)\) has odd size 3"):
        ops.glu(f32(2, 3))


def _np_sparsemax(x, axis):
    """The published algorithm (Martins & Astudillo 2016, Alg. 1), one lane at a time."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        z = np.sort(x[idx])[::-1]
        cs = np.cumsum(z)
        k = np.arange(1, len(z) + 1)
        kz = k[1 + k * z > cs].max()
        tau = (cs[kz - 1] - 1) / kz
        out[idx] = np.maximum(x[idx] - tau, 0)
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("shape,axis", [((5,), -1), ((3, 6), -1), ((4, 3, 2), 1), ((3, 4), 0)])
def test_sparsemax_is_the_simplex_projection(shape, axis):
    x = f32(*shape)
    got = ops.sparsemax(x, axis)
    np.testing.assert_allclose(got.numpy(), _np_sparsemax(x, axis), atol=1e-6)
    np.testing.assert_allclose(got.numpy().sum(axis=axis), 1.0, atol=1e-5)
    check_grad(lambda t: ops.sparsemax(t, axis), lambda a: _np_sparsemax(a, axis), [x])


def test_sparsemax_matches_keras_where_keras_is_right():
    # Keras 3.15 thresholds with the sum of the cumulative sums over the support: right when the
    # support has one element (as in its docstring's example), not a simplex projection otherwise
    keras = needs_keras()
    x = np.array([[-1.0, 0.0, 1.0], [3.0, 0.2, -1.0], [0.1, 0.05, 2.0]], np.float32)
    np.testing.assert_allclose(ops.sparsemax(x).numpy(), np.asarray(keras.ops.sparsemax(x)), atol=1e-6)


def test_psnr_matches_keras_and_formula():
    a, b = f32(2, 4, 4, 3), f32(2, 4, 4, 3)
    want = 20 * np.log10(2.0) - 10 * np.log10(np.mean((a.astype(np.float64) - b) ** 2))
    got = ops.psnr(a, b, 2.0)
    assert got.shape == ()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    keras = keras_or_none()
    if keras is not None:
        np.testing.assert_allclose(got.numpy(), np.asarray(keras.ops.psnr(a, b, 2.0)), rtol=1e-5)
    check_grad(lambda p, q: ops.psnr(p, q, 1.0),
               lambda p, q: 20 * np.log10(1.0) - 10 * np.log10(np.mean((p - q) ** 2)), [f32(3, 2), f32(3, 2)])
    with pytest.raises(ValueError, match=r"psnr: x1 and x2 must have the same shape, received \(2,\) and \(3,\)"):
        ops.psnr(f32(2), f32(3), 1.0)


@pytest.mark.parametrize("ids", [np.array([0, 4, 4]), np.array([[0, 2], [1, 1], [3, -1]]),
                                 np.array([[[0, 2], [1, 1]], [[3, 3], [0, 0]]])])
def test_multi_hot_matches_keras(ids):
    got = ops.multi_hot(ids, num_classes=5)
    assert got.dtype == "float32"
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras is not installed")
    np.testing.assert_array_equal(got.numpy(), np.asarray(keras.ops.multi_hot(ids, num_classes=5)))
    np.testing.assert_array_equal(ops.multi_hot(ids, 5, axis=0, dtype="int32").numpy(),
                                  np.asarray(keras.ops.multi_hot(ids, 5, axis=0, dtype="int32")))


def test_multi_hot_arguments():
    np.testing.assert_array_equal(ops.multi_hot(np.array([[1, 2]]), num_tokens=3).numpy(), [[0, 1, 1]])
    with pytest.raises(ValueError, match=r"multi_hot: num_classes must be given"):
        ops.multi_hot(np.array([1]))
    with pytest.raises(ValueError, match=r"multi_hot: sparse=True is not supported"):
        ops.multi_hot(np.array([1]), 3, sparse=True)
    with pytest.raises(TypeError, match=r"multi_hot: unexpected keyword argument\(s\) \['depth'\]"):
        ops.multi_hot(np.array([1]), 3, depth=3)


def _np_layer_norm(x, g, b, axes, eps):
    x = np.asarray(x, np.float64)
    m = x.mean(axis=axes, keepdims=True)
    v = x.var(axis=axes, keepdims=True)
    y = (x - m) / np.sqrt(v + eps)
    return y * (1 if g is None else g) + (0 if b is None else b)


@pytest.mark.parametrize("axis,pshape", [(-1, (5,)), ((1, 2), (4, 5)), ((0, 2), None)])
def test_layer_normalization_matches_numpy_and_keras(axis, pshape):
    x = f32(3, 4, 5) * 2 + 1
    axes = tuple(np.atleast_1d(axis) % 3)
    g = b = None
    if pshape is not None:
        g, b = f32(*pshape), f32(*pshape)
    bshape = [x.shape[i] if i in axes else 1 for i in range(3)]
    gb = None if g is None else g.reshape(bshape)
    bb = None if b is None else b.reshape(bshape)
    got = ops.layer_normalization(x, g, b, axis=axis)
    np.testing.assert_allclose(got.numpy(), _np_layer_norm(x, gb, bb, axes, 1e-7), rtol=1e-4, atol=1e-5)
    keras = keras_or_none()
    if keras is not None and pshape == (4, 5):
        np.testing.assert_allclose(got.numpy(), np.asarray(keras.ops.layer_normalization(x, g, b, axis=axis)),
                                   rtol=1e-4, atol=1e-5)
    if g is not None:
        check_grad(lambda t, p, q: ops.layer_normalization(t, p, q, axis=axis, epsilon=1e-3),
                   lambda t, p, q: _np_layer_norm(t, p.reshape(bshape), q.reshape(bshape), axes, 1e-3), [x, g, b])


def test_layer_normalization_broadcast_params_rms_scaling_and_errors():
    x = f32(2, 3, 4)
    g = f32(1, 1, 4)   # already broadcastable
    np.testing.assert_allclose(ops.layer_normalization(x, g, axis=-1).numpy(),
                               _np_layer_norm(x, g, None, (2,), 1e-7), rtol=1e-4, atol=1e-5)
    keras = keras_or_none()
    if keras is not None:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = np.asarray(keras.ops.layer_normalization(x, g[0, 0], axis=-1, rms_scaling=True))
        np.testing.assert_allclose(ops.layer_normalization(x, g[0, 0], rms_scaling=True).numpy(), want,
                                   rtol=1e-4, atol=1e-5)
    xi = np.array([[1, 2, 3, 10]], np.int32)
    assert ops.layer_normalization(xi).dtype == "int32"   # computed in float32, cast back (Keras)
    with pytest.raises(ValueError, match=r"layer_normalization: gamma of shape \(3,\) does not fit x of shape"):
        ops.layer_normalization(x, f32(3), f32(4, 4), axis=-1)
    with pytest.raises(TypeError, match=r"layer_normalization: unexpected keyword argument\(s\) \['center'\]"):
        ops.layer_normalization(x, center=True)
    with pytest.raises(ValueError, match=r"layer_normalization: expected a tensor with at least 1 dimension"):
        ops.layer_normalization(np.float32(1.0))


@pytest.mark.parametrize("axis", [-1, (1, 2), 0])
def test_rms_normalization_matches_numpy_and_keras(axis):
    x = f32(3, 4, 5)
    axes = tuple(np.atleast_1d(axis) % 3)
    scale = f32(*[x.shape[a] for a in axes])
    bshape = [x.shape[i] if i in axes else 1 for i in range(3)]

    def ref(t, s, eps=1e-7):
        t = np.asarray(t, np.float64)
        return t / np.sqrt(np.mean(t * t, axis=axes, keepdims=True) + eps) * s.reshape(bshape)
    got = ops.rms_normalization(x, scale, axis=axis)
    np.testing.assert_allclose(got.numpy(), ref(x, scale), rtol=1e-4, atol=1e-5)
    keras = keras_or_none()
    if keras is not None and axis == -1:
        np.testing.assert_allclose(got.numpy(), np.asarray(keras.ops.rms_normalization(x, scale, axis=axis)),
                                   rtol=1e-4, atol=1e-5)
    check_grad(lambda t, s: ops.rms_normalization(t, s, axis=axis, epsilon=1e-3),
               lambda t, s: ref(t, s, 1e-3), [x, scale])
    np.testing.assert_allclose(ops.rms_normalization(x, axis=axis).numpy(), ref(x, np.ones(scale.shape)),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("b", [2, 3])
def test_depth_to_space_and_back(data_format, b):
    c = 2 * b * b
    x = f32(2, 3, 4, c) if data_format == "channels_last" else f32(2, c, 3, 4)
    y = ops.depth_to_space(x, b, data_format)
    np.testing.assert_array_equal(ops.space_to_depth(y, b, data_format).numpy(), x)
    keras = keras_or_none()
    if keras is not None and b == 2:
        np.testing.assert_array_equal(y.numpy(), np.asarray(keras.ops.depth_to_space(x, b, data_format)))
    if b == 2 and data_format == "channels_last":   # by hand: out[n, h*b+i, w*b+j, k] = x[n, h, w, (i*b+j)*C'+k]
        want = x.reshape(2, 3, 4, b, b, 2).transpose(0, 1, 3, 2, 4, 5).reshape(2, 6, 8, 2)
        np.testing.assert_array_equal(y.numpy(), want)
        check_grad(lambda t: ops.depth_to_space(t, b), lambda a: a.reshape(2, 3, 4, b, b, 2).transpose(
            0, 1, 3, 2, 4, 5).reshape(2, 6, 8, 2), [x])


def test_depth_to_space_errors():
    with pytest.raises(ValueError, match=r"depth_to_space: the 6 channels of x \(shape \(1, 2, 2, 6\)\) are not "
                                         r"divisible by block_size\^2 = 4"):
        ops.depth_to_space(f32(1, 2, 2, 6), 2)
    with pytest.raises(ValueError, match=r"space_to_depth: height 3 and width 4 of x"):
        ops.space_to_depth(f32(1, 3, 4, 2), 2)
    with pytest.raises(ValueError, match=r"depth_to_space: expected a 4-D tensor"):
        ops.depth_to_space(f32(2, 4, 4), 2)
    with pytest.raises(ValueError, match=r"space_to_depth: data_format must be 'channels_last' or 'channels_first'"):
        ops.space_to_depth(f32(1, 2, 2, 1), 2, "NHWC")
    with pytest.raises(ValueError, match=r"depth_to_space: block_size must be an integer >= 2, received block_size=1"):
        ops.depth_to_space(f32(1, 2, 2, 4), 1)


def _np_unfold(x, k, d, p, s):
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    n, c, h, w = x.shape
    oh, ow = (h - d[0] * (k[0] - 1) - 1) // s[0] + 1, (w - d[1] * (k[1] - 1) - 1) // s[1] + 1
    out = np.zeros((n, c, k[0], k[1], oh, ow))
    for i in range(k[0]):
        for j in range(k[1]):
            out[:, :, i, j] = x[:, :, i * d[0]:i * d[0] + s[0] * (oh - 1) + 1:s[0],
                                j * d[1]:j * d[1] + s[1] * (ow - 1) + 1:s[1]]
    return out.reshape(n, c * k[0] * k[1], oh * ow)


UNFOLD_CASES = [dict(kernel_size=2), dict(kernel_size=(2, 3), stride=2, padding=1, dilation=(1, 2)),
                dict(kernel_size=3, stride=(1, 2), padding=(0, 1)), dict(kernel_size=1)]


def _pairs(kw):
    def pair(v):
        return tuple(v) if isinstance(v, tuple) else (v, v)
    return (pair(kw["kernel_size"]), pair(kw.get("dilation", 1)), pair(kw.get("padding", 0)),
            pair(kw.get("stride", 1)))


@pytest.mark.parametrize("kw", UNFOLD_CASES)
def test_unfold_matches_numpy_and_keras(kw):
    x = f32(2, 3, 6, 5)
    got = ops.unfold(x, **kw)
    np.testing.assert_array_equal(got.numpy(), _np_unfold(x, *_pairs(kw)).astype(np.float32))
    keras = keras_or_none()
    if keras is not None and kw is UNFOLD_CASES[1]:
        np.testing.assert_array_equal(got.numpy(), np.asarray(keras.ops.unfold(x, **kw)))
    check_grad(lambda t: ops.unfold(t, **kw), lambda a: _np_unfold(a, *_pairs(kw)), [f32(1, 2, 6, 5)])


@pytest.mark.parametrize("kw", UNFOLD_CASES)
def test_fold_is_the_adjoint_of_unfold(kw):
    x = f32(2, 3, 6, 5)
    cols = ops.unfold(x, **kw)
    y = f32(*cols.shape)
    folded = ops.fold(y, (6, 5), **kw)
    assert folded.shape == x.shape
    # <unfold(x), y> == <x, fold(y)>
    np.testing.assert_allclose(np.sum(cols.numpy() * y), np.sum(x * folded.numpy()), rtol=1e-4)
    keras = keras_or_none()
    if keras is not None and kw is UNFOLD_CASES[1]:
        np.testing.assert_allclose(folded.numpy(), np.asarray(keras.ops.fold(y, (6, 5), **kw)), rtol=1e-5, atol=1e-5)
    yt = lamina.convert_to_tensor(y)
    with lamina.GradientTape() as tape:
        tape.watch(yt)
        loss = ops.sum(ops.fold(yt, (6, 5), **kw) * x)
    np.testing.assert_allclose(tape.gradient(loss, yt).numpy(), cols.numpy(), rtol=1e-5, atol=1e-6)


def test_unfold_fold_errors():
    with pytest.raises(ValueError, match=r"unfold: expected a 4-D tensor \(N, C, H, W\), received shape \(2, 3, 4\)"):
        ops.unfold(f32(2, 3, 4), 2)
    with pytest.raises(ValueError, match=r"unfold: a 5x5 kernel with dilation \(1, 1\) does not fit the padded 4x4"):
        ops.unfold(f32(1, 1, 4, 4), 5)
    with pytest.raises(ValueError, match=r"unfold: kernel_size must be an integer or a pair of integers"):
        ops.unfold(f32(1, 1, 4, 4), (1, 2, 3))
    with pytest.raises(ValueError, match=r"unfold: stride must be an integer >= 1"):
        ops.unfold(f32(1, 1, 4, 4), 2, stride=0)
    with pytest.raises(ValueError, match=r"fold: x has 5 blocks but output_size \(4, 4\)"):
        ops.fold(f32(1, 4, 5), (4, 4), 2)
    with pytest.raises(ValueError, match=r"fold: dimension 1 of x \(shape \(1, 5, 9\)\) must be C \* 2 \* 2"):
        ops.fold(f32(1, 5, 9), (4, 4), 2)
