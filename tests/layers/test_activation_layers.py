"""PReLU, ELU and Identity (layers/core.py): numpy references, weights, gradients against finite
differences, errors, masks, and parity with Keras."""
import numpy as np
import pytest

import lamina
from lamina import constraints, layers, ops, regularizers
from keras_ref import keras_or_none
from layer_harness import run_layer_test
from opcheck import check_grad, numeric_grad

RNG = np.random.default_rng(3)


def _x(shape):
    x = RNG.standard_normal(shape).astype(np.float32)
    return np.where(np.abs(x) < 0.05, 0.3, x).astype(np.float32)   # away from the kink at 0


def prelu_ref(x, alpha):
    return np.where(x >= 0, x, alpha * x)


def elu_ref(x, alpha=1.0):
    return np.where(x > 0, x, alpha * (np.exp(x) - 1))


# ---- PReLU ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shared_axes,shape,alpha_shape", [
    (None, (3, 4), (4,)),
    ([1, 2], (2, 3, 4, 5), (1, 1, 5)),
    (1, (2, 3, 4), (1, 4)),
    ((2,), (2, 3, 4), (3, 1)),
])
def test_prelu(shared_axes, shape, alpha_shape):
    x = _x(shape)
    layer, _ = run_layer_test(layers.PReLU, {"shared_axes": shared_axes, "alpha_initializer": "ones"}, shape,
                              input_data=x, expected_output=x, expected_num_trainable_weights=1)
    assert layer.alpha.shape == alpha_shape and layer.weights[0].path.endswith("/alpha")
    assert layer.get_config()["shared_axes"] == (None if shared_axes is None else list(np.atleast_1d(shared_axes)))
    fresh = layers.PReLU(shared_axes=shared_axes)
    np.testing.assert_array_equal(fresh(x).numpy(), np.maximum(x, 0))   # alpha starts at zero, as Keras
    alpha = RNG.uniform(0.1, 0.5, alpha_shape).astype(np.float32)
    fresh.set_weights([alpha])
    np.testing.assert_allclose(fresh(x).numpy(), prelu_ref(x, alpha), atol=1e-6)
    # gradients for the inputs and for alpha (summed over the shared axes and the batch)
    xt = lamina.convert_to_tensor(x)
    with lamina.GradientTape() as tape:
        tape.watch(xt)
        y = fresh(xt)
        W = RNG.standard_normal(y.shape).astype(np.float32)
        loss = ops.sum(y * W)
    gx, ga = tape.gradient(loss, [xt, fresh.alpha])
    np.testing.assert_allclose(gx.numpy(), numeric_grad(prelu_ref, [x, alpha], W, 0), atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(ga.numpy(), numeric_grad(prelu_ref, [x, alpha], W, 1), atol=2e-3, rtol=2e-3)


def test_prelu_initializer_regularizer_constraint_and_training():
    layer = layers.PReLU(alpha_initializer=lamina.initializers.Constant(0.25), alpha_regularizer="l2",
                         alpha_constraint=constraints.NonNeg(), shared_axes=[1])
    x = _x((4, 3, 2))
    np.testing.assert_allclose(layer(x).numpy(), prelu_ref(x, 0.25), atol=1e-6)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(layer.losses[0]), 0.01 * 2 * 0.25 ** 2, rtol=1e-5)   # l2(0.01) on 2 alphas
    config = layer.get_config()
    clone = layers.PReLU.from_config(config)
    assert isinstance(clone.alpha_regularizer, regularizers.L2) and isinstance(clone.alpha_constraint,
                                                                                constraints.NonNeg)
    model = lamina.Sequential([lamina.Input(shape=(3, 2)), layers.PReLU(alpha_initializer="zeros",
                                                                        alpha_constraint=constraints.NonNeg())])
    model.compile(optimizer=lamina.optimizers.SGD(1.0), loss="mse")
    xs = -np.abs(_x((8, 3, 2)))
    model.fit(xs, xs, epochs=3, verbose=0)   # the target wants alpha = 1 on negative inputs
    alpha = model.layers[0].alpha.numpy()
    assert np.all(alpha > 0.3) and np.all(alpha >= 0)


def test_prelu_masks_and_errors():
    x = _x((2, 4, 3))
    x[:, 1] = 0.0
    out = layers.PReLU()(layers.Masking()(x))
    np.testing.assert_array_equal(out._keras_mask.numpy(), [[True, False, True, True]] * 2)
    with pytest.raises(ValueError, match=r"PReLU: `shared_axes` must be an int or a list of ints >= 1"):
        layers.PReLU(shared_axes=[0])
    with pytest.raises(ValueError, match=r"shared_axes"):
        layers.PReLU(shared_axes="1")
    with pytest.raises(ValueError, match=r"shared_axes \[3\] names axis 3, but the inputs have shape \(2, 3\)"):
        layers.PReLU(shared_axes=3)(_x((2, 3)))
    with pytest.raises(ValueError, match=r"known size.*shared_axes"):
        layers.PReLU()(lamina.Input(shape=(None, 3)))
    assert layers.PReLU(shared_axes=[1])(lamina.Input(shape=(None, 3))).shape == (None, None, 3)
    built = layers.PReLU()
    built(_x((2, 3)))
    with pytest.raises(ValueError, match=r"expected axis 1 of the input shape to have value 3"):
        built(_x((2, 4)))


# ---- ELU -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [1.0, 0.3, 2.5])
def test_elu(alpha):
    x = _x((3, 5))
    layer, _ = run_layer_test(layers.ELU, {"alpha": alpha}, (3, 5), input_data=x,
                              expected_output=elu_ref(x, alpha), expected_num_trainable_weights=0)
    assert layer.get_config()["alpha"] == alpha and layers.ELU.from_config(layer.get_config()).alpha == alpha
    check_grad(lambda t: layer(t), lambda a: elu_ref(a, alpha), [x], atol=2e-3, rtol=2e-3)
    assert layers.ELU().alpha == 1.0
    with pytest.raises(ValueError, match=r"ELU: `alpha` must be a number, received alpha='1'"):
        layers.ELU("1")


# ---- Identity ------------------------------------------------------------------------------------

def test_identity():
    x = _x((2, 3))
    run_layer_test(layers.Identity, {}, (2, 3), input_data=x, expected_output=x, expected_num_trainable_weights=0)
    ints = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert layers.Identity()(ints).dtype == "int32"
    assert layers.Identity()(lamina.Input(shape=(3,), dtype="int32")).dtype == "int32"
    pair = layers.Identity()([x, x * 2])
    np.testing.assert_array_equal(pair[1].numpy(), x * 2)
    masked = layers.Masking()(np.array([[[1.0], [0.0]]], np.float32))
    np.testing.assert_array_equal(layers.Identity()(masked)._keras_mask.numpy(), [[True, False]])
    check_grad(lambda t: layers.Identity()(t), lambda a: a, [x])
    with pytest.raises(TypeError, match=r"Identity: unrecognized keyword argument"):
        layers.Identity(units=3)


# ---- parity with Keras --------------------------------------------------------------------------

PARITY = [
    ("PReLU", {}, (2, 3, 4)),
    ("PReLU", {"shared_axes": [1, 2]}, (2, 3, 2, 4)),
    ("ELU", {"alpha": 0.6}, (3, 4)),
    ("Identity", {}, (2, 5)),
]


@pytest.mark.parametrize("name,kwargs,shape", PARITY)
def test_matches_keras(name, kwargs, shape):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference to compare with")
    x = _x(shape)
    kl, ours = getattr(keras.layers, name)(**kwargs), getattr(layers, name)(**kwargs)
    kl(x), ours(x)
    ws = [RNG.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in ours.get_weights()]
    kl.set_weights(ws)
    ours.set_weights(ws)
    assert [w.path.split("/")[-1] for w in ours.weights] == [w.path.split("/")[-1] for w in kl.weights]
    np.testing.assert_allclose(ours(x).numpy(), np.asarray(kl(x)), atol=1e-5, rtol=1e-5)
    back = layers.deserialize(keras.layers.serialize(kl))
    back(x)
    back.set_weights(ws)
    np.testing.assert_allclose(back(x).numpy(), np.asarray(kl(x)), atol=1e-5, rtol=1e-5)
    assert type(keras.layers.deserialize(layers.serialize(ours))) is type(kl)
