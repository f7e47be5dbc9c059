"""Lamb (optimizers/lamb.py) against numpy and Keras, sparse and dense, config and state."""
import numpy as np
import pytest
from optimizer_harness import check_config, check_keras, check_numpy, check_sparse, config_id

import lamina
from lamina.optimizers import Lamb

SCHEDULE = {"class_name": "ExponentialDecay",
            "config": {"initial_learning_rate": 0.02, "decay_steps": 2, "decay_rate": 0.5}}
CONFIGS = [
    dict(learning_rate=0.01),
    dict(learning_rate=0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-4, weight_decay=0.05),
]
KERAS_CONFIGS = [   # clipping, schedules, weight decay, EMA, accumulation
    dict(learning_rate=0.01, clipnorm=0.5, weight_decay=0.1),
    dict(learning_rate=SCHEDULE),
    dict(learning_rate=0.01, use_ema=True, gradient_accumulation_steps=2),
]


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_against_numpy(config):
    check_numpy(Lamb, config)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_sparse_steps_equal_dense_steps(config):
    check_sparse(Lamb, config)


def test_config_round_trip_and_keras_defaults():
    check_config(Lamb, CONFIGS[-1])


@pytest.mark.parametrize("config", CONFIGS + KERAS_CONFIGS, ids=config_id)
def test_against_keras_and_state_both_ways(config):
    check_keras(Lamb, config)


def test_zero_weights_take_the_plain_adam_step():
    # |var| = 0: the trust ratio is 1, as Keras
    v = lamina.Variable(np.zeros((2, 3), np.float32))
    Lamb(0.1).apply([lamina.convert_to_tensor(np.full((2, 3), 2.0, np.float32))], [v])
    np.testing.assert_allclose(v.numpy(), -0.1, rtol=1e-5)   # float32 bias corrections
