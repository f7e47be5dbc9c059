"""UnitNormalization, RMSNormalization, GroupNormalization (layers/normalization.py): numpy references,
weights, gradients (inputs and weights) against finite differences, errors, and parity with Keras."""
import numpy as np
import pytest

import lamina
from lamina import layers, ops
from keras_ref import keras_or_none
from layer_harness import run_layer_test
from opcheck import numeric_grad

RNG = np.random.default_rng(5)


def _x(shape, scale=1.0, shift=0.0):
    return (RNG.standard_normal(shape) * scale + shift).astype(np.float32)


# ---- numpy references ------------------------------------------------------------------------------

def unit_ref(x, axis=-1):
    ax = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    return x / np.maximum(np.sqrt(np.sum(x * x, axis=ax, keepdims=True)), 1e-12)


def rms_ref(x, scale, axis=-1, epsilon=1e-6):
    axes = tuple(a % x.ndim for a in (axis if isinstance(axis, (list, tuple)) else [axis]))
    bshape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    rms = np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + epsilon)
    return x / rms * np.reshape(scale, bshape)


def group_ref(x, gamma, beta, groups, axis=-1, epsilon=1e-3):
    """Moves the channel axis last, splits it into groups, normalises each (sample, group) over all
    its values, then applies gamma and beta per channel."""
    a = axis % x.ndim
    xt = np.moveaxis(x, a, -1)
    c = xt.shape[-1]
    g = np.reshape(xt, (xt.shape[0], -1, groups, c // groups))
    mean = g.mean(axis=(1, 3), keepdims=True)
    var = g.var(axis=(1, 3), keepdims=True)
    y = np.reshape((g - mean) / np.sqrt(var + epsilon), xt.shape)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return np.moveaxis(y, -1, a)


def check_layer_grads(layer, x, ref, atol=3e-3):
    """d sum(layer(x) * W) / d (x, every trainable weight) against central differences of
    ref(x, *weights) in float64."""
    xt = lamina.convert_to_tensor(x)
    ws = layer.trainable_weights
    with lamina.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt)
        W = RNG.standard_normal(y.shape).astype(np.float32)
        loss = ops.sum(y * W)
    grads = tape.gradient(loss, [xt] + ws)
    inputs = [x] + [w.numpy() for w in ws]
    for i, g in enumerate(grads):
        want = numeric_grad(ref, inputs, W, i)
        assert g is not None, f"no gradient for {'x' if i == 0 else ws[i - 1].path}"
        np.testing.assert_allclose(g.numpy(), want, atol=atol, rtol=atol,
                                   err_msg=f"gradient of {'x' if i == 0 else ws[i - 1].path}")


# ---- UnitNormalization ---------------------------------------------------------------------------

@pytest.mark.parametrize("axis,shape", [(-1, (3, 5)), (1, (2, 3, 4)), ([1, 3], (2, 3, 2, 4))])
def test_unit_normalization(axis, shape):
    x = _x(shape)
    layer, (y,) = run_layer_test(layers.UnitNormalization, {"axis": axis}, shape, input_data=x,
                                 expected_output=unit_ref(x, axis), expected_num_trainable_weights=0)
    ax = tuple(axis) if isinstance(axis, list) else axis
    np.testing.assert_allclose(np.sum(y.numpy() ** 2, axis=ax), 1.0, atol=1e-5)
    check_layer_grads(layers.UnitNormalization(axis=axis), x, lambda a: unit_ref(a, axis))
    assert layers.UnitNormalization(axis=(1, 2)).get_config()["axis"] == [1, 2]   # Keras keeps a list
    zeros = layers.UnitNormalization()(np.zeros((2, 3), np.float32)).numpy()
    np.testing.assert_array_equal(zeros, 0.0)   # no NaN for a zero vector


# ---- RMSNormalization ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,shape", [({}, (3, 6)), ({"axis": 1, "epsilon": 1e-3}, (2, 4, 3)),
                                          ({"axis": [1, 2]}, (2, 3, 4))])
def test_rms_normalization(kwargs, shape):
    x = _x(shape, 2.0, 0.5)
    axis = kwargs.get("axis", -1)
    eps = kwargs.get("epsilon", 1e-6)
    axes = [a % len(shape) for a in (axis if isinstance(axis, list) else [axis])]
    pshape = tuple(shape[a] for a in axes)
    layer, _ = run_layer_test(layers.RMSNormalization, kwargs, shape, input_data=x,
                              expected_output=rms_ref(x, np.ones(pshape), axis, eps), atol=1e-5,
                              expected_num_trainable_weights=1)
    assert [w.path.split("/")[-1] for w in layer.weights] == ["scale"] and layer.scale.shape == pshape
    layer.scale.assign(_x(pshape))
    np.testing.assert_allclose(layer(x).numpy(), rms_ref(x, layer.scale.numpy(), axis, eps), atol=1e-5, rtol=1e-5)
    check_layer_grads(layer, x, lambda a, s: rms_ref(a, s, axis, eps))


# ---- GroupNormalization --------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,shape", [
    ({"groups": 2}, (3, 4, 6)),
    ({"groups": 1}, (2, 3, 4)),                        # layer norm over every non-batch axis
    ({"groups": -1, "epsilon": 1e-4}, (2, 5, 3)),      # instance norm
    ({"groups": 3, "axis": 1}, (2, 6, 2, 3)),          # channels first
    ({"groups": 2, "axis": -2, "center": False}, (2, 3, 4, 2)),
    ({"groups": 4, "scale": False}, (2, 2, 2, 8)),
])
def test_group_normalization(kwargs, shape):
    x = _x(shape, 3.0, 1.0)
    axis = kwargs.get("axis", -1)
    c = shape[axis]
    groups = c if kwargs["groups"] == -1 else kwargs["groups"]
    eps = kwargs.get("epsilon", 1e-3)
    center, scale = kwargs.get("center", True), kwargs.get("scale", True)
    want = group_ref(x, None, None, groups, axis, eps)
    layer, _ = run_layer_test(layers.GroupNormalization, kwargs, shape, input_data=x, expected_output=want,
                              atol=2e-5, expected_num_trainable_weights=int(center) + int(scale))
    names = [w.path.split("/")[-1] for w in layer.weights]
    assert names == [n for n, on in (("gamma", scale), ("beta", center)) if on]
    assert all(w.shape == (c,) for w in layer.weights)
    assert layer.get_config()["groups"] == groups   # -1 became the channel count, as in Keras
    layer.set_weights([_x((c,)) for _ in layer.weights])
    gamma = layer.gamma.numpy() if scale else None
    beta = layer.beta.numpy() if center else None
    np.testing.assert_allclose(layer(x).numpy(), group_ref(x, gamma, beta, groups, axis, eps), atol=2e-5, rtol=2e-5)

    def ref(a, *ws):
        it = iter(ws)
        return group_ref(a, next(it) if scale else None, next(it) if center else None, groups, axis, eps)
    check_layer_grads(layer, x, ref)


def test_group_and_unit_normalization_pass_masks_rms_does_not():
    x = _x((2, 4, 6))
    x[:, 3] = 0.0
    masked = layers.Masking()(x)
    want = [[True, True, True, False]] * 2
    np.testing.assert_array_equal(layers.GroupNormalization(3)(masked)._keras_mask.numpy(), want)
    np.testing.assert_array_equal(layers.UnitNormalization()(masked)._keras_mask.numpy(), want)
    assert layers.RMSNormalization()(masked)._keras_mask is None   # Keras's RMSNormalization has no masking


@pytest.mark.parametrize("make,err,pattern", [
    (lambda: layers.GroupNormalization(0), ValueError, r"GroupNormalization: `groups` must be a positive integer "
                                                       r"\(or -1 for instance normalization\), received groups=0"),
    (lambda: layers.GroupNormalization(-2), ValueError, r"received groups=-2"),
    (lambda: layers.GroupNormalization(2.0), ValueError, r"received groups=2\.0"),
    (lambda: layers.GroupNormalization(2, axis=[1, 2]), ValueError, r"`axis` must be an int"),
    (lambda: layers.GroupNormalization(2, epsilon=-1.0), ValueError, r"`epsilon` must be a number >= 0"),
    (lambda: layers.GroupNormalization(4)(_x((2, 3, 6))), ValueError,
     r"number of channels \(6, axis -1 of shape \(2, 3, 6\)\) must be a multiple of the number of groups \(4\)"),
    (lambda: layers.GroupNormalization(8)(_x((2, 6))), ValueError,
     r"number of groups \(8\) cannot be more than the number of channels \(6"),
    (lambda: layers.GroupNormalization(2, axis=3)(_x((2, 3, 4))), ValueError, r"axis 3 is not a channel axis"),
    (lambda: layers.GroupNormalization(2, axis=0)(_x((2, 3, 4))), ValueError, r"axis 0 is not a channel axis"),
    (lambda: layers.GroupNormalization(2)(lamina.Input(shape=(3, None))), ValueError, r"must have a known size"),
    (lambda: layers.RMSNormalization(epsilon="small"), ValueError, r"RMSNormalization: `epsilon`"),
    (lambda: layers.RMSNormalization(axis=2)(_x((2, 3))), ValueError, r"axis 2 is out of range"),
    (lambda: layers.RMSNormalization(axis=1.0), TypeError, r"RMSNormalization: `axis` must be an int"),
    (lambda: layers.UnitNormalization(axis="last"), TypeError, r"UnitNormalization: `axis` must be an int"),
    (lambda: layers.UnitNormalization(axis=[1, 5])(_x((2, 3))), ValueError, r"axis 5 is out of range"),
])
def test_bad_arguments_and_inputs_are_refused(make, err, pattern):
    with pytest.raises(err, match=pattern):
        make()


def test_built_layers_check_the_channel_size():
    layer = layers.GroupNormalization(2)
    layer(_x((2, 4)))
    with pytest.raises(ValueError, match=r"expected axis 1 of the input shape to have value 4"):
        layer(_x((2, 6)))


# ---- parity with Keras --------------------------------------------------------------------------

PARITY = [
    ("UnitNormalization", {"axis": [1, 2]}, (2, 3, 4)),
    ("RMSNormalization", {"epsilon": 1e-4}, (2, 3, 5)),
    ("RMSNormalization", {"axis": [-2, -1]}, (2, 3, 5)),
    ("GroupNormalization", {"groups": 2}, (2, 3, 4, 6)),
    ("GroupNormalization", {"groups": -1, "axis": 1, "center": False}, (2, 4, 3, 2)),
]


@pytest.mark.parametrize("name,kwargs,shape", PARITY)
def test_matches_keras(name, kwargs, shape):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference to compare with")
    x = _x(shape, 2.0, 0.3)
    kl, ours = getattr(keras.layers, name)(**kwargs), getattr(layers, name)(**kwargs)
    kl(x), ours(x)
    assert [w.path.split("/")[-1] for w in ours.weights] == [w.path.split("/")[-1] for w in kl.weights]
    ws = [_x(w.shape) for w in ours.get_weights()]
    kl.set_weights(ws)
    ours.set_weights(ws)
    np.testing.assert_allclose(ours(x).numpy(), np.asarray(kl(x)), atol=1e-5, rtol=1e-5)
    back = layers.deserialize(keras.layers.serialize(kl))
    back(x)
    back.set_weights(ws)
    np.testing.assert_allclose(back(x).numpy(), np.asarray(kl(x)), atol=1e-5, rtol=1e-5)
    clone = keras.layers.deserialize(layers.serialize(ours))
    assert type(clone) is type(kl)


# ---- SpectralNormalization --------------------------------------------------------------------------

def _spectral_ref(kernel, u, iterations):
    """Keras's power iteration on W = kernel reshaped (-1, last): (new u, kernel / sigma)."""
    w = kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
    u = u.astype(np.float64)
    for _ in range(iterations):
        v = u @ w.T
        v = v / np.linalg.norm(v)
        u = v @ w
        u = u / np.linalg.norm(u)
    sigma = (v @ w @ u.T).item()
    return u, kernel / sigma


def test_spectral_normalization_matches_the_power_iteration():
    x = _x((4, 5))
    layer, _ = run_layer_test(layers.SpectralNormalization, {"layer": layers.Dense(3), "power_iterations": 2},
                              (4, 5), input_data=x, expected_num_trainable_weights=2,
                              expected_num_non_trainable_weights=1)
    inner = layer.layer.name
    assert [w.path for w in layer.weights] == [f"{layer.name}/{inner}/kernel", f"{layer.name}/vector_u",
                                               f"{layer.name}/{inner}/bias"]      # Keras's order and paths
    kernel, u, bias = layer.get_weights()
    np.testing.assert_allclose(layer(x).numpy(), x @ kernel + bias, rtol=1e-5)   # not training: as it stands
    want_u, want_k = _spectral_ref(kernel, u, 2)
    out = layer(x, training=True).numpy()
    np.testing.assert_allclose(layer.vector_u.numpy(), want_u, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(layer.layer.kernel.numpy(), want_k, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out, x @ want_k + bias, rtol=1e-4, atol=1e-5)
    for _ in range(30):                                     # the power method converges: spectral norm 1
        layer(x, training=True)
    assert abs(np.linalg.svd(layer.layer.kernel.numpy(), compute_uv=False)[0] - 1) < 1e-3
    # a convolution's (kh, kw, in, out) kernel and an Embedding's table; an all-zero kernel stays
    conv = layers.SpectralNormalization(layers.Conv2D(2, 3))
    img = _x((1, 5, 5, 2))
    conv(img)
    k0, u0, _ = conv.get_weights()
    conv(img, training=True)
    np.testing.assert_allclose(conv.layer.kernel.numpy(), _spectral_ref(k0, u0, 1)[1], rtol=1e-4, atol=1e-6)
    emb = layers.SpectralNormalization(layers.Embedding(6, 3))
    emb(np.array([[1, 2]]))
    e0, eu = emb.get_weights()
    emb(np.array([[1, 2]]), training=True)
    np.testing.assert_allclose(emb.layer.embeddings.numpy(), _spectral_ref(e0, eu, 1)[1], rtol=1e-4, atol=1e-6)
    zero = layers.SpectralNormalization(layers.Dense(2, kernel_initializer="zeros"))
    zero(x)
    zero(x, training=True)
    assert not np.isnan(zero.get_weights()[0]).any() and np.all(zero.get_weights()[0] == 0)


def test_spectral_normalization_trains_config_and_errors():
    x, y = _x((32, 4)), _x((32, 1))
    model = lamina.Sequential([lamina.Input((4,)), layers.SpectralNormalization(layers.Dense(8, activation="relu")),
                               layers.Dense(1)])
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="mse")
    h = model.fit(x, y, epochs=15, batch_size=8, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert np.linalg.svd(model.layers[0].layer.kernel.numpy(), compute_uv=False)[0] < 1.05
    sn = model.layers[0]
    clone = layers.SpectralNormalization.from_config(sn.get_config())
    assert clone.power_iterations == 1 and isinstance(clone.layer, layers.Dense) and clone.layer.units == 8
    with pytest.raises(ValueError, match="`power_iterations` must be an integer > 0, received power_iterations=0"):
        layers.SpectralNormalization(layers.Dense(2), power_iterations=0)
    with pytest.raises(ValueError, match="expected a Layer instance to wrap"):
        layers.SpectralNormalization("dense")
    with pytest.raises(ValueError, match="has no attribute 'kernel' nor 'embeddings'"):
        layers.SpectralNormalization(layers.Activation("relu"))(x)


def test_spectral_normalization_keras_parity():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    x = _x((4, 5))
    theirs = keras.layers.SpectralNormalization(keras.layers.Dense(3), power_iterations=3)
    theirs(x)
    ours = layers.SpectralNormalization(layers.Dense(3), power_iterations=3)
    ours(x)
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    np.testing.assert_allclose(ours(x, training=True).numpy(), np.asarray(theirs(x, training=True)), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(ours.vector_u.numpy(), np.asarray(theirs.vector_u), rtol=1e-5, atol=1e-6)
    a, b = ours.get_config(), theirs.get_config()
    for c in (a, b):
        c.pop("name"), c["layer"]["config"].pop("name")
    assert a == b


def test_spectral_normalization_files_move_both_ways(tmp_path):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    x = _x((4, 6))
    theirs = keras.Sequential([keras.Input((6,)), keras.layers.SpectralNormalization(keras.layers.Dense(3)),
                               keras.layers.Dense(2)])
    path = str(tmp_path / "sn.keras")
    theirs.save(path)
    ours = lamina.models.load_model(path)
    want = theirs.predict(x, verbose=0)
    np.testing.assert_allclose(ours.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    back = str(tmp_path / "back.keras")
    ours.save(back)
    np.testing.assert_allclose(keras.models.load_model(back).predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
