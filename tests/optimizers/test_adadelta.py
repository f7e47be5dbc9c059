"""Adadelta (optimizers/adadelta.py) against numpy and Keras, sparse and dense, config and state."""
import pytest
from optimizer_harness import check_config, check_keras, check_numpy, check_sparse, config_id

from lamina.optimizers import Adadelta

SCHEDULE = {"class_name": "ExponentialDecay",
            "config": {"initial_learning_rate": 0.02, "decay_steps": 2, "decay_rate": 0.5}}
CONFIGS = [
    dict(learning_rate=0.5),
    dict(learning_rate=1.0, rho=0.9, epsilon=1e-5, weight_decay=0.05),
]
KERAS_CONFIGS = [   # clipping, schedules, weight decay, EMA, accumulation
    dict(learning_rate=0.5, clipnorm=0.5),
    dict(learning_rate=SCHEDULE, clipvalue=0.1),
    dict(learning_rate=0.5, global_clipnorm=1.0, use_ema=True, gradient_accumulation_steps=2),
]


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_against_numpy(config):
    check_numpy(Adadelta, config)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_sparse_steps_equal_dense_steps(config):
    check_sparse(Adadelta, config)


def test_config_round_trip_and_keras_defaults():
    check_config(Adadelta, CONFIGS[-1])


@pytest.mark.parametrize("config", CONFIGS + KERAS_CONFIGS, ids=config_id)
def test_against_keras_and_state_both_ways(config):
    check_keras(Adadelta, config)
