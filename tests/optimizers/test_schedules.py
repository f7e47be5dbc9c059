"""Learning-rate schedules (optimizers/schedules.py): each against its numpy formula and against
Keras 3 over many steps (restarts, cycles and staircases included), config round trips, and
schedules inside optimizer configs written by Keras."""
import math

import numpy as np
import pytest
from keras_ref import keras_or_none

from lamina import optimizers
from lamina.optimizers import schedules

STEPS = list(range(0, 36)) + [44, 45, 46, 99, 100, 101, 250, 1000]


def _polynomial(step, initial, decay_steps, end=0.0001, power=1.0, cycle=False):
    if cycle:
        decay_steps = decay_steps * max(1, math.ceil(step / decay_steps))
    else:
        step = min(step, decay_steps)
    return (initial - end) * (1 - step / decay_steps) ** power + end


def _inverse_time(step, initial, decay_steps, rate, staircase=False):
    p = step / decay_steps
    return initial / (1 + rate * (math.floor(p) if staircase else p))


def _restarts(step, initial, first, t_mul=2.0, m_mul=1.0, alpha=0.0):
    # walk the periods one by one (the closed form in the schedule is what is being checked)
    start, length, i = 0.0, float(first), 0
    while step >= start + length:
        start, length, i = start + length, length * t_mul, i + 1
    frac = (step - start) / length
    return initial * ((1 - alpha) * 0.5 * m_mul ** i * (1 + math.cos(math.pi * frac)) + alpha)


CASES = [
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=40), _polynomial),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=15, end_learning_rate=0.01, power=0.5,
                             cycle=True), _polynomial),
    ("PolynomialDecay", dict(initial_learning_rate=1.0, decay_steps=20, end_learning_rate=0.0, power=2.0),
     _polynomial),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5), _inverse_time),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=7, decay_rate=2.0, staircase=True),
     _inverse_time),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=10), _restarts),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=7, t_mul=1.0, m_mul=0.5, alpha=0.1),
     _restarts),
    ("CosineDecayRestarts", dict(initial_learning_rate=1.0, first_decay_steps=5, t_mul=1.5, m_mul=0.8, alpha=0.05),
     _restarts),
]
IDS = [f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)]


@pytest.mark.parametrize("name,config,formula", CASES, ids=IDS)
def test_against_numpy_formula(name, config, formula):
    s = getattr(schedules, name)(**config)
    for step in STEPS:
        want = formula(step, **_rename(name, config))
        assert s(step) == pytest.approx(want, rel=1e-9, abs=1e-12), f"step {step}"


def _rename(name, config):
    """The schedule's arguments under the formula's names."""
    keys = {"PolynomialDecay": dict(initial_learning_rate="initial", decay_steps="decay_steps",
                                    end_learning_rate="end", power="power", cycle="cycle"),
            "InverseTimeDecay": dict(initial_learning_rate="initial", decay_steps="decay_steps",
                                     decay_rate="rate", staircase="staircase"),
            "CosineDecayRestarts": dict(initial_learning_rate="initial", first_decay_steps="first", t_mul="t_mul",
                                        m_mul="m_mul", alpha="alpha")}[name]
    return {keys[k]: v for k, v in config.items()}


KERAS_CASES = CASES + [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7, decay_rate=0.5, staircase=True), None),
    ("PiecewiseConstantDecay", dict(boundaries=[5, 20], values=[0.1, 0.05, 0.01]), None),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=30, alpha=0.1), None),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=30, warmup_target=0.1, warmup_steps=10), None),
]


@pytest.mark.parametrize("name,config,formula", KERAS_CASES, ids=[f"{n}-{i}" for i, (n, _, _) in
                                                                  enumerate(KERAS_CASES)])
def test_against_keras_and_config(name, config, formula):
    s = getattr(schedules, name)(**config)
    again = schedules.deserialize(schedules.serialize(s))
    assert type(again) is type(s) and again.get_config() == s.get_config()
    k = keras_or_none()
    if k is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    ks = getattr(k.optimizers.schedules, name)(**config)
    assert s.get_config() == ks.get_config()
    # Keras computes in float32: compare with float32's precision
    got = np.array([s(step) for step in STEPS])
    want = np.array([float(ks(step)) for step in STEPS])
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-8)
    # a schedule serialized by Keras (with its module and registered_name) is read
    kser = k.optimizers.schedules.serialize(ks)
    assert schedules.deserialize(kser).get_config() == s.get_config()


def test_optimizer_config_written_by_keras_with_a_schedule():
    k = keras_or_none()
    if k is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    kopt = k.optimizers.Nadam(learning_rate=k.optimizers.schedules.CosineDecayRestarts(0.1, 10), use_ema=True,
                              gradient_accumulation_steps=2)
    opt = optimizers.get(k.optimizers.serialize(kopt))
    assert isinstance(opt, optimizers.Nadam) and isinstance(opt._learning_rate, schedules.CosineDecayRestarts)
    assert opt.use_ema and opt.gradient_accumulation_steps == 2
    assert opt.learning_rate == pytest.approx(0.1)


@pytest.mark.parametrize("make,match", [
    (lambda: schedules.PolynomialDecay(0.1, 0), "decay_steps must be positive"),
    (lambda: schedules.InverseTimeDecay(0.1, -1, 0.5), "decay_steps must be positive"),
    (lambda: schedules.CosineDecayRestarts(0.1, 0), "first_decay_steps must be positive")])
def test_arguments_are_validated(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_schedule_drives_an_optimizer():
    import lamina
    s = schedules.InverseTimeDecay(1.0, decay_steps=1, decay_rate=1.0)
    opt = optimizers.SGD(s)
    v = lamina.Variable(np.zeros(1, np.float32))
    for _ in range(4):
        opt.apply([lamina.convert_to_tensor(np.ones(1, np.float32))], [v])
    assert v.numpy()[0] == pytest.approx(-(1 + 1 / 2 + 1 / 3 + 1 / 4), rel=1e-6)
