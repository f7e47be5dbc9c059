"""LossScaleOptimizer (optimizers/loss_scale_optimizer.py) and MultiOptimizer / OptimizerMap
(optimizers/multi_optimizer.py): against Keras step by step, saved state in Keras's layout, in fit,
configs, and clear errors."""
import numpy as np
import pytest
from optimizer_harness import make_data, saved

import lamina
from lamina import layers, optimizers
from keras_ref import keras_or_none


def _keras():
    k = keras_or_none()
    if k is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    return k


def _steps(opt, w0, grads, variable=lamina.Variable):
    """The variables (lamina's or Keras's) after the optimizer's steps from w0."""
    vs = [variable(w.copy(), name=f"w{i}") for i, w in enumerate(w0)]
    for gs in grads:
        opt.apply([np.asarray(g) if variable is not lamina.Variable else lamina.convert_to_tensor(g) for g in gs], vs)
    return vs


def test_loss_scale_optimizer_against_keras():
    k = _keras()
    w0, grads = make_data(5, steps=7)
    grads[2][1][0] = np.inf     # a step with an infinite gradient is skipped and halves the scale
    grads[5][0][3, 1] = np.nan
    ours = optimizers.LossScaleOptimizer(optimizers.Adam(0.01), initial_scale=64.0, dynamic_growth_steps=2)
    theirs = k.optimizers.LossScaleOptimizer(k.optimizers.Adam(0.01), initial_scale=64.0, dynamic_growth_steps=2)
    scaled = [[g * 64.0 for g in gs] for gs in grads]   # as gradients of a scaled loss (divided by the scale)
    got = [v.numpy() for v in _steps(ours, w0, scaled)]
    # Keras's JAX backend runs this optimizer statelessly (its stateful apply cannot branch eagerly)
    kvs = [k.Variable(w.copy(), name=f"w{i}") for i, w in enumerate(w0)]
    theirs.build(kvs)
    want, state = [v.value for v in kvs], [v.value for v in theirs.variables]
    for gs in scaled:
        want, state = theirs.stateless_apply(state, [np.asarray(g) for g in gs], want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)
    names = [v.name for v in theirs.variables]
    assert float(ours.dynamic_scale) == float(state[names.index("dynamic_scale")]) == 64.0   # x2, /2, x2, /2
    assert ours.step_counter == int(state[names.index("step_counter")])
    assert ours.iterations == 5
    # the saved state is Keras's list: own iteration, learning rate, step counter, scale, then the inner optimizer's
    assert len(saved(ours)) == len(state)
    for a, b in zip(saved(ours), state):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)
    # and loads back: a fresh optimizer carries on from it
    again = optimizers.LossScaleOptimizer(optimizers.Adam(0.01), initial_scale=64.0, dynamic_growth_steps=2)
    again.build([lamina.Variable(w) for w in w0])
    again.load_own_variables({str(i): v for i, v in enumerate(saved(ours))})
    assert float(again.dynamic_scale) == float(ours.dynamic_scale) and again.iterations == ours.iterations


def test_loss_scale_optimizer_scales_the_loss_in_fit():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)).astype(np.float32), rng.normal(size=(32, 1)).astype(np.float32)

    def fit(opt):
        lamina.utils.set_random_seed(1)
        m = lamina.Sequential([lamina.Input((3,)), layers.Dense(1)])
        m.compile(opt, "mse")
        m.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return m
    plain = fit(optimizers.SGD(0.1))
    scaled = fit(optimizers.LossScaleOptimizer(optimizers.SGD(0.1), initial_scale=1024.0, dynamic_growth_steps=3))
    for a, b in zip(plain.get_weights(), scaled.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert float(scaled.optimizer.dynamic_scale) == 1024.0 * 4   # 8 finite steps: doubled after the 3rd and 6th
    assert scaled.optimizer.learning_rate == pytest.approx(0.1) and scaled.optimizer.iterations == 8


def test_loss_scale_optimizer_config_round_trip():
    opt = optimizers.LossScaleOptimizer(optimizers.Adam(0.003), initial_scale=8.0, dynamic_growth_steps=10)
    again = optimizers.get(optimizers.serialize(opt))
    assert type(again) is optimizers.LossScaleOptimizer and type(again.inner_optimizer) is optimizers.Adam
    assert again.get_config() == opt.get_config()
    k = keras_or_none()
    if k is not None:   # Keras reads lamina's config, and lamina Keras's
        kopt = k.optimizers.deserialize(lamina.saving.serialize_keras_object(opt))
        assert float(kopt.inner_optimizer.learning_rate) == pytest.approx(0.003) and kopt.dynamic_growth_steps == 10
        back = optimizers.get(k.optimizers.serialize(kopt))
        assert back.initial_scale == 8.0 and back.inner_optimizer.learning_rate == pytest.approx(0.003)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dynamic=False), "dynamic=False"), (dict(clipnorm=1.0), "clipnorm"), (dict(bogus=1), "bogus"),
    (dict(initial_scale=0), "initial_scale"), (dict(dynamic_growth_steps=0), "dynamic_growth_steps")])
def test_loss_scale_optimizer_checks_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.LossScaleOptimizer(optimizers.SGD(), **kwargs)
    with pytest.raises(TypeError, match="Optimizer instance"):
        optimizers.LossScaleOptimizer("adam")


def _multi(mod):
    return mod.optimizers.MultiOptimizer(mod.optimizers.OptimizerMap(
        mod.optimizers.Adam(0.01), {"w0": mod.optimizers.SGD(0.1, momentum=0.9), "w[12]": mod.optimizers.RMSprop(0.01)}))


def test_multi_optimizer_against_keras():
    k = _keras()
    w0, grads = make_data(6, steps=4)
    w0.append(np.ones((2, 2), np.float32))
    for gs in grads:
        gs.append(np.full((2, 2), 0.5, np.float32))
    ours, theirs = _multi(lamina), _multi(k)
    got = [v.numpy() for v in _steps(ours, w0, grads)]
    kvs = _steps(theirs, w0, grads, k.Variable)
    for a, b in zip(got, [np.asarray(v) for v in kvs]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert [o.name for o in ours.optimizers] == ["sgd", "rmsprop", "adam"]
    assert ours.iterations == int(theirs.iterations) == 4
    mine, keras_vars = saved(ours), [np.asarray(v) for v in theirs.variables]
    assert len(mine) == len(keras_vars)
    for a, b in zip(mine, keras_vars):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Keras's state loads into lamina's optimizer and the next steps agree
    fresh = _multi(lamina)
    vs = [lamina.Variable(w.copy(), name=f"w{i}") for i, w in enumerate(got)]
    fresh.build(vs)
    fresh.load_own_variables({str(i): v for i, v in enumerate(keras_vars)})
    more = make_data(7, steps=2)[1]
    for gs in more:
        gs.append(np.full((2, 2), -0.25, np.float32))
        fresh.apply([lamina.convert_to_tensor(g) for g in gs], vs)
    for gs in more:
        theirs.apply([np.asarray(g) for g in gs], kvs)
    for a, b in zip(vs, kvs):
        np.testing.assert_allclose(a.numpy(), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_optimizer_map_lookup_as_keras():
    adam, sgd, rms = optimizers.Adam(), optimizers.SGD(), optimizers.RMSprop()
    m = optimizers.OptimizerMap(default_optimizer=rms)
    m["encoder/layer_0/dense"] = adam
    m["encoder/.*"] = sgd
    m["decoder"] = adam
    assert m["decoder"] is adam and m["encoder/layer_0/dense"] is adam
    assert m["encoder/layer_0/attention/query"] is sgd and m["decoder/layer_0/dense"] is rms
    m[".*query"] = optimizers.Lion()
    with pytest.raises(ValueError, match="Multiple optimizers"):
        m["encoder/layer_0/attention/query"]
    with pytest.raises(ValueError, match="already exists"):
        m["decoder"] = sgd
    with pytest.raises(ValueError, match="LossScaleOptimizer"):
        m["x"] = optimizers.LossScaleOptimizer(optimizers.SGD())
    with pytest.raises(TypeError, match="default_optimizer"):
        optimizers.OptimizerMap("adam")


def test_multi_optimizer_in_fit_with_a_function_and_config():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 3)).astype(np.float32), rng.normal(size=(16, 2)).astype(np.float32)
    frozen_bias = optimizers.SGD(0.0)
    m = lamina.Sequential([lamina.Input((3,)), layers.Dense(2)])
    bias0 = m.layers[0].bias.numpy().copy()
    m.compile(optimizers.MultiOptimizer(lambda v: frozen_bias if "bias" in v.path else optimizers.Adam(0.05)), "mse")
    m.fit(x, y, batch_size=4, epochs=1, verbose=0)
    np.testing.assert_array_equal(m.layers[0].bias.numpy(), bias0)
    assert len(m.optimizer.optimizers) == 2 and m.optimizer.iterations == 4
    with pytest.raises(AttributeError, match="sub-optimizers"):
        m.optimizer.learning_rate
    opt = _multi(lamina)
    again = optimizers.get(optimizers.serialize(opt))
    assert type(again) is optimizers.MultiOptimizer
    assert [type(o).__name__ for o in again.optimizers] == ["SGD", "RMSprop", "Adam"]
    assert again.get_config() == opt.get_config()
