"""Ftrl (optimizers/ftrl.py) against numpy and Keras, sparse and dense, config and state."""
import numpy as np
import pytest
from optimizer_harness import check_config, check_keras, check_numpy, check_sparse, config_id

import lamina
from lamina.backend.sparse import IndexedSlices
from lamina.optimizers import Ftrl

SCHEDULE = {"class_name": "ExponentialDecay",
            "config": {"initial_learning_rate": 0.02, "decay_steps": 2, "decay_rate": 0.5}}
CONFIGS = [
    dict(learning_rate=0.1),
    dict(learning_rate=0.2, learning_rate_power=-0.7, initial_accumulator_value=0.2, l1_regularization_strength=0.01,
         l2_regularization_strength=0.02, l2_shrinkage_regularization_strength=0.03, beta=0.1, weight_decay=0.05),
    dict(learning_rate=0.1, learning_rate_power=0.0, l1_regularization_strength=0.05),
]
KERAS_CONFIGS = [   # clipping, schedules, weight decay, EMA, accumulation
    dict(learning_rate=0.1, l1_regularization_strength=0.01, clipnorm=0.5),
    dict(learning_rate=SCHEDULE, beta=0.2, l2_regularization_strength=0.01),
    dict(learning_rate=0.1, use_ema=True, gradient_accumulation_steps=2),
]


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_against_numpy(config):
    check_numpy(Ftrl, config)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_sparse_steps_equal_dense_steps(config):
    check_sparse(Ftrl, config)


def test_config_round_trip_and_keras_defaults():
    check_config(Ftrl, CONFIGS[-1])


@pytest.mark.parametrize("config", CONFIGS + KERAS_CONFIGS, ids=config_id)
def test_against_keras_and_state_both_ways(config):
    check_keras(Ftrl, config)


def test_rows_without_gradient_take_their_proximal_value():
    # Keras's dense rule sets every weight to (clip(linear) - linear) / quadratic: a row that never
    # had a gradient (linear 0) becomes 0; the row kernel does the same for rows a sparse gradient skips
    v = lamina.Variable(np.ones((3, 2), np.float32))
    Ftrl(0.1).apply([IndexedSlices(np.ones((1, 2), np.float32), np.array([1]), (3, 2))], [v])
    w = v.numpy()
    np.testing.assert_array_equal(w[[0, 2]], 0.0)
    assert np.all(w[1] != 0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(initial_accumulator_value=-0.1), "initial_accumulator_value"),
    (dict(learning_rate_power=0.5), "learning_rate_power"),
    (dict(l1_regularization_strength=-1.0), "l1_regularization_strength"),
    (dict(l2_regularization_strength=-1.0), "l2_regularization_strength"),
    (dict(l2_shrinkage_regularization_strength=-1.0), "l2_shrinkage_regularization_strength")])
def test_arguments_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Ftrl(**kwargs)
