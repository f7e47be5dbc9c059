"""Lion (optimizers/lion.py) against numpy and Keras, sparse and dense, config and state."""
import pytest
from optimizer_harness import check_config, check_keras, check_numpy, check_sparse, config_id

from lamina.optimizers import Lion

SCHEDULE = {"class_name": "ExponentialDecay",
            "config": {"initial_learning_rate": 0.02, "decay_steps": 2, "decay_rate": 0.5}}
CONFIGS = [
    dict(learning_rate=0.01),
    dict(learning_rate=0.02, beta_1=0.5, beta_2=0.9, weight_decay=0.05),
]
KERAS_CONFIGS = [   # clipping, schedules, weight decay, EMA, accumulation
    dict(learning_rate=0.01, clipvalue=0.2, weight_decay=0.1),
    dict(learning_rate=SCHEDULE),
    dict(learning_rate=0.01, use_ema=True, ema_momentum=0.9, gradient_accumulation_steps=2),
]


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_against_numpy(config):
    check_numpy(Lion, config)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_sparse_steps_equal_dense_steps(config):
    check_sparse(Lion, config)


def test_config_round_trip_and_keras_defaults():
    check_config(Lion, CONFIGS[-1])


@pytest.mark.parametrize("config", CONFIGS + KERAS_CONFIGS, ids=config_id)
def test_against_keras_and_state_both_ways(config):
    check_keras(Lion, config)


@pytest.mark.parametrize("beta_1", [0.0, -0.5, 1.5])
def test_beta_1_outside_0_1_is_refused(beta_1):
    with pytest.raises(ValueError, match="beta_1"):
        Lion(beta_1=beta_1)
