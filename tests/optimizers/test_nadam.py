"""Nadam (optimizers/nadam.py) against numpy and Keras, sparse and dense, config and state (with
Keras's u_product variable)."""
import numpy as np
import pytest
from optimizer_harness import (check_config, check_keras, check_numpy, check_sparse, config_id, make_data, run_lamina,
                               saved)

import lamina
from lamina.optimizers import Nadam

SCHEDULE = {"class_name": "ExponentialDecay",
            "config": {"initial_learning_rate": 0.02, "decay_steps": 2, "decay_rate": 0.5}}
CONFIGS = [
    dict(learning_rate=0.01),
    dict(learning_rate=0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-4, weight_decay=0.05),
]
KERAS_CONFIGS = [   # clipping, schedules, weight decay, EMA, accumulation
    dict(learning_rate=0.01, global_clipnorm=0.5),
    dict(learning_rate=SCHEDULE),
    dict(learning_rate=0.01, gradient_accumulation_steps=3, use_ema=True),
]


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_against_numpy(config):
    check_numpy(Nadam, config)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_sparse_steps_equal_dense_steps(config):
    check_sparse(Nadam, config)


def test_config_round_trip_and_keras_defaults():
    check_config(Nadam, CONFIGS[-1])


@pytest.mark.parametrize("config", CONFIGS + KERAS_CONFIGS, ids=config_id)
def test_against_keras_and_state_both_ways(config):
    check_keras(Nadam, config)


def test_u_product_is_state_saved_and_restored():
    w0, grads = make_data(3)
    opt = Nadam(0.01)
    weights, vs = run_lamina(opt, w0, grads[:3])
    want = np.prod([0.9 * (1 - 0.5 * 0.96 ** t) for t in (1, 2, 3)])
    assert saved(opt)[-1] == pytest.approx(want, rel=1e-6)
    # a fresh optimizer loading that state continues exactly as the original
    again = Nadam(0.01)
    vs2 = [lamina.Variable(w, name=f"w{i}") for i, w in enumerate(weights)]
    again.build(vs2)
    again.load_own_variables({str(i): v for i, v in enumerate(saved(opt))})
    for gs in grads[3:]:
        opt.apply([lamina.convert_to_tensor(g) for g in gs], vs)
        again.apply([lamina.convert_to_tensor(g) for g in gs], vs2)
    for a, b in zip(vs, vs2):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # the iteration count set from outside (a broadcast state) re-reads it
    again.iterations = again.iterations
    assert again._u_product is None
