"""Adafactor (optimizers/adafactor.py) against numpy and Keras, sparse and dense, config and state
(factored r and c slots; Keras's int32 placeholders below rank 2)."""
import numpy as np
import pytest
from optimizer_harness import check_config, check_keras, check_numpy, check_sparse, config_id

import lamina
from lamina.optimizers import Adafactor

SCHEDULE = {"class_name": "ExponentialDecay",
            "config": {"initial_learning_rate": 0.02, "decay_steps": 2, "decay_rate": 0.5}}
CONFIGS = [
    dict(learning_rate=0.01),
    dict(learning_rate=0.5, beta_2_decay=-0.5, epsilon_1=1e-20, epsilon_2=1e-2, clip_threshold=0.5, weight_decay=0.05),
]
KERAS_CONFIGS = [   # clipping, schedules, weight decay, EMA, accumulation
    dict(learning_rate=0.01, clipnorm=0.5, relative_step=False),
    dict(learning_rate=SCHEDULE),
    dict(learning_rate=0.01, use_ema=True, gradient_accumulation_steps=2),
]


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_against_numpy(config):
    check_numpy(Adafactor, config)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_sparse_steps_equal_dense_steps(config):
    check_sparse(Adafactor, config)


def test_config_round_trip_and_keras_defaults():
    check_config(Adafactor, CONFIGS[-1])


@pytest.mark.parametrize("config", CONFIGS + KERAS_CONFIGS, ids=config_id)
def test_against_keras_and_state_both_ways(config):
    check_keras(Adafactor, config)


def test_slots_as_keras():
    opt = Adafactor()
    k, b, t = (lamina.Variable(np.ones(s, np.float32), name=n) for n, s in (("k", (3, 4)), ("b", (4,)),
                                                                               ("t", (2, 3, 5))))
    opt.build([k, b, t])
    assert [(s.name, s.shape, s.dtype) for s in opt.slots_of(k)] == [("k", (3,), "float32"), ("k", (4,), "float32"),
                                                                    ("k_velocity", (3, 4), "float32")]
    assert [(s.name, s.shape, s.dtype) for s in opt.slots_of(b)] == [("b", (), "int32"), ("b", (), "int32"),
                                                                    ("b_velocity", (4,), "float32")]
    assert [s.shape for s in opt.slots_of(t)] == [(2, 3), (2, 5), (2, 3, 5)]
