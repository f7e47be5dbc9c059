"""Muon (optimizers/muon.py) and ScheduleFreeAdamW (optimizers/schedule_free_adamw.py) against Keras:
weights and every optimizer variable after 6 steps, dense and sparse gradients, state both ways."""
import numpy as np
import pytest
from optimizer_harness import check_config, check_keras, config_id, make_data, run_lamina, saved

import lamina
from lamina.optimizers import Muon, ScheduleFreeAdamW

SCHEDULE = {"class_name": "ExponentialDecay",
            "config": {"initial_learning_rate": 0.02, "decay_steps": 2, "decay_rate": 0.5}}
MUON_CONFIGS = [
    dict(learning_rate=0.01),
    dict(learning_rate=0.02, nesterov=False, rms_rate=None, adam_lr_ratio=0.5, weight_decay=0.1,
         adam_weight_decay=None, ns_steps=3),
    dict(learning_rate=SCHEDULE, exclude_layers=["w0"], clipnorm=0.5),   # every variable takes the Adam step
    dict(learning_rate=0.01, use_ema=True, ema_momentum=0.9, momentum=0.8),
]
SF_CONFIGS = [
    dict(),
    dict(learning_rate=0.01, beta_1=0.8, beta_2=0.99, warmup_steps=3, weight_decay=0.05),
    dict(learning_rate=SCHEDULE),
]


@pytest.mark.parametrize("config", MUON_CONFIGS, ids=config_id)
def test_muon_against_keras_and_state_both_ways(config):
    check_keras(Muon, config, atol=2e-6)


@pytest.mark.parametrize("config", SF_CONFIGS, ids=config_id)
def test_schedule_free_adamw_against_keras_and_state_both_ways(config):
    check_keras(ScheduleFreeAdamW, config)


@pytest.mark.parametrize("cls", [Muon, ScheduleFreeAdamW])
def test_config_round_trip_and_keras_defaults(cls):
    check_config(cls, {})


def test_muon_splits_variables_as_keras():
    opt = Muon(exclude_layers=["dense_out"])
    vs = [lamina.Variable(np.zeros((3, 4), np.float32), name="kernel"), lamina.Variable(np.zeros(4, np.float32)),
          lamina.Variable(np.zeros((5, 2), np.float32), name="my_embedding"),
          lamina.Variable(np.zeros((4, 2), np.float32), name="dense_out")]
    assert [opt._should_use_adamw(v) for v in vs] == [False, True, True, True]
    opt.build(vs)
    # a momentum for each variable, a velocity only for those that take the Adam step
    assert [s.name for s in opt.variables] == ["kernel_momentum", f"{vs[1].path}_momentum",
                                               f"{vs[1].path}_velocity", "my_embedding_momentum",
                                               "my_embedding_velocity", "dense_out_momentum", "dense_out_velocity"]


def test_muon_orthogonalizes_the_update():
    # one step from zero momentum without Nesterov: the update is NS5(g), close to U V^T
    rng = np.random.default_rng(0)
    g = rng.standard_normal((6, 4)).astype(np.float32)
    v = lamina.Variable(np.zeros((6, 4), np.float32), name="w")
    Muon(learning_rate=1.0, weight_decay=None, rms_rate=None, nesterov=False).apply([lamina.convert_to_tensor(g)],
                                                                                   [v])
    u = -v.numpy()
    s = np.linalg.svd(u, compute_uv=False)
    assert np.all((s > 0.6) & (s < 1.3)), s   # Keras's quintic iteration lands the singular values near 1
    uu, _, vt = np.linalg.svd(g, full_matrices=False)
    assert np.corrcoef(u.ravel(), (uu @ vt).ravel())[0, 1] > 0.95


def test_schedule_free_momentum_starts_at_the_weights():
    w0, grads = make_data(3, steps=1)
    opt = ScheduleFreeAdamW()
    vs = [lamina.Variable(w.copy(), name=f"w{i}") for i, w in enumerate(w0)]
    opt.build(vs)
    for w, z in zip(w0, saved(opt)[2::2]):
        np.testing.assert_array_equal(z, w)
    got, _ = run_lamina(ScheduleFreeAdamW(), w0, grads)
    assert not np.allclose(got[0], w0[0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(ns_steps=-1), "ns_steps"), (dict(ns_steps=2.5), "ns_steps"), (dict(exclude_layers="dense"), "exclude_layers"),
    (dict(rms_rate=-0.1), "rms_rate"), (dict(bogus=1), "bogus")])
def test_muon_checks_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Muon(**kwargs)


@pytest.mark.parametrize("kwargs, match", [(dict(beta_1=0.0), "beta_1"), (dict(warmup_steps=-1), "warmup_steps"),
                                           (dict(warmup_steps=1.5), "warmup_steps")])
def test_schedule_free_checks_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScheduleFreeAdamW(**kwargs)
