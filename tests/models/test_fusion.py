"""Tests for models/fusion.py: a Functional model runs an inference BatchNormalization and the
ReLU after it as one op, with the values of the two layers, and never while training or while a
gradient is recorded."""
import math

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.models import fusion


def _randomize_bn(model, seed=0):
    """Non-trivial moving statistics and offsets, so that the ReLU clamps part of the values."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.standard_normal(c).astype(np.float32) * 0.3)
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype(np.float32))
            if layer.beta is not None:
                layer.beta.assign(rng.standard_normal(c).astype(np.float32) * 0.3)
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
    return model


def _conv_bn_relu(activation, scale=True):
    inp = lamina.Input((9, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization(scale=scale)(x)
    x = activation(x)
    x = layers.Conv2D(5, 1)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return _randomize_bn(lamina.Model(inp, layers.Dense(4)(x)))


def _count_calls(monkeypatch, module, name):
    """A list that grows by one at each call of module.name (replaced by a spy for the test)."""
    calls = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, spy)
    return calls


@pytest.fixture
def count_fused(monkeypatch):
    """How many times the fused op ran."""
    return _count_calls(monkeypatch, fusion, "batch_normalization_relu")


def _unfused(model, *args, **kwargs):
    plan, model._fusions = model._fusions, {}
    try:
        return model(*args, **kwargs)
    finally:
        model._fusions = plan


def _x(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("activation,cap", [(lambda: layers.Activation("relu"), math.inf),
                                            (lambda: layers.Activation("relu6"), 6.0),
                                            (lambda: layers.ReLU(6.0), 6.0),
                                            (lambda: layers.ReLU(max_value=0.5), 0.5)])
@pytest.mark.parametrize("scale", [True, False])
def test_fused_inference_equals_the_two_layers(activation, cap, scale, count_fused):
    model = _conv_bn_relu(activation(), scale)
    assert sorted(cap for _, cap in model._fusions.values()) == sorted([cap, math.inf])
    x = _x(4, 9, 8, 3)
    want = _unfused(model, x).numpy()
    assert not count_fused
    for got in (model(x), model(x, training=False), model.predict(x, verbose=0)):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
    assert len(count_fused) == 3 * 2


def test_plan_leaves_out_what_cannot_be_fused():
    inp = lamina.Input((6, 4))
    a = layers.BatchNormalization()(inp)
    shared = layers.BatchNormalization()(inp)                     # output used twice
    b = layers.Add()([layers.ReLU()(shared), shared])
    c = layers.LeakyReLU(0.1)(layers.BatchNormalization()(inp))   # not a relu
    d = layers.ReLU(threshold=0.5)(layers.BatchNormalization()(inp))
    e = layers.Activation("tanh")(layers.BatchNormalization()(inp))
    f = layers.ReLU(negative_slope=0.1)(layers.BatchNormalization()(inp))

    class MyBN(layers.BatchNormalization):
        pass
    g = layers.ReLU()(MyBN()(inp))                                # a subclass may change call
    h = layers.Activation("relu")(layers.BatchNormalization()(inp))   # the only fusable pair
    model = lamina.Model(inp, [a, b, c, d, e, f, g, h])
    assert [(act.layer.name, cap) for act, cap in model._fusions.values()] == [(h._keras_history[0].name, math.inf)]
    x = _x(3, 6, 4)
    for got, want in zip(model(x), _unfused(model, x)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_never_fused_in_training(count_fused):
    model = _conv_bn_relu(layers.Activation("relu"))
    x = _x(4, 9, 8, 3)
    bn = model.layers[2]
    before = bn.moving_mean.numpy()
    got = model(x, training=True).numpy()           # batch statistics, moving averages updated
    assert not count_fused
    assert not np.allclose(bn.moving_mean.numpy(), before)
    _randomize_bn(model)
    np.testing.assert_array_equal(model(x, training=True).numpy(), _unfused(model, x, training=True).numpy())
    assert got.shape == (4, 4)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, _x(4, 4), epochs=2, batch_size=2, verbose=0)
    assert not count_fused


def test_never_fused_while_a_gradient_is_recorded(count_fused):
    model = _conv_bn_relu(layers.ReLU(6.0))
    x = _x(4, 9, 8, 3)

    def grads(m):
        with lamina.GradientTape() as tape:
            loss = lamina.ops.sum(m(x, training=False) ** 2)
        return [g.numpy() for g in tape.gradient(loss, m.trainable_weights)]
    plan = model._fusions
    got = grads(model)                              # inference mode, but gamma and beta need gradients
    assert not count_fused
    model._fusions = {}
    want = grads(model)
    model._fusions = plan
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_frozen_model_fuses_under_a_tape_unless_its_input_is_watched(count_fused):
    """A frozen base (transfer learning) has nothing to differentiate: fused even inside fit's
    tape and with training=True (a frozen BatchNormalization runs in inference mode)."""
    model = _conv_bn_relu(layers.Activation("relu"))
    model.trainable = False
    x = lamina.convert_to_tensor(_x(4, 9, 8, 3))
    want = _unfused(model, x, training=True).numpy()
    with lamina.GradientTape():
        got = model(x, training=True)
    assert len(count_fused) == 2 and got._node is None
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)
    count_fused.clear()
    with lamina.GradientTape() as tape:
        tape.watch(x)
        y = lamina.ops.sum(model(x))
    dx = tape.gradient(y, x)
    assert not count_fused and dx is not None


def test_masked_inputs_run_unfused_and_keep_their_mask(count_fused):
    inp = lamina.Input((5, 3))
    x = layers.Masking(0.0)(inp)
    x = layers.BatchNormalization()(x)
    out = layers.Activation("relu")(x)
    model = _randomize_bn(lamina.Model(inp, out))
    assert model._fusions
    data = _x(2, 5, 3)
    data[0, 3:] = 0.0
    y = model(data)
    assert not count_fused
    np.testing.assert_array_equal(y._keras_mask.numpy(), [[True] * 3 + [False] * 2, [True] * 5])


def test_fused_call_checks_the_input_specs():
    model = _conv_bn_relu(layers.Activation("relu"))
    bn_node = next(n for n in model._nodes if id(n) in model._fusions)
    act, cap = model._fusions[id(bn_node)]
    with pytest.raises(ValueError, match=r"Input to layer 'batch_normalization.*expected axis 3.*value 6"):
        fusion.fused_call(bn_node.layer, act.layer, lamina.ops.zeros((2, 9, 8, 7)), None, cap)


def test_mobilenet_fused_equals_unfused():
    model = _randomize_bn(lamina.applications.MobileNet(weights=None, alpha=0.25, include_top=False,
                                                        input_shape=(64, 64, 3)))
    assert len(model._fusions) == 27
    x = _x(2, 64, 64, 3)
    np.testing.assert_allclose(model.predict(x, verbose=0), _unfused(model, x).numpy(), rtol=1e-6, atol=1e-6)


def test_training_step_fuses_max_pooling_with_the_relu_before_it(monkeypatch):
    """The built-in train step records max pooling over a Conv2D's fused bias+ReLU as one node
    on the pre-activation (backend/convolution.py); the update equals a plain GradientTape
    step's, layer by layer."""
    from lamina.backend import convolution
    calls = _count_calls(monkeypatch, convolution, "_max_pool_of_bias_relu")

    def build():
        lamina.utils.set_random_seed(3)
        return lamina.Sequential([lamina.Input((10, 10, 2)), layers.Conv2D(8, 3, padding="same", activation="relu"),
                                  layers.MaxPooling2D(2), layers.Conv2D(4, 3, activation="relu"),
                                  layers.MaxPooling2D(2, strides=1), layers.Flatten(), layers.Dense(3)])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 10, 10, 2)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    loss = lamina.losses.SparseCategoricalCrossentropy(from_logits=True)
    fused, plain = build(), build()
    fused.compile(optimizer=lamina.optimizers.SGD(0.1), loss=loss)
    for _ in range(3):
        fused.train_on_batch(x, y)
    assert len(calls) >= 2  # both pooling layers, at least in the recorded step
    opt = lamina.optimizers.SGD(0.1)
    for _ in range(3):
        with lamina.GradientTape() as tape:
            value = loss(y, plain(x, training=True))
        opt.apply(tape.gradient(value, plain.trainable_weights), plain.trainable_weights)
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
