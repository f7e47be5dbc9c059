"""Tests for layers/preprocessing.py: Rescaling."""
import os

import numpy as np
import pytest

import lamina
from lamina import layers
from layer_harness import run_layer_test


def test_rescaling_scalar_float_and_int_inputs():
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    run_layer_test(layers.Rescaling, {"scale": 0.5, "offset": -1.0}, (2, 4, 3), input_data=x,
                   expected_output=x * 0.5 - 1.0, expected_num_trainable_weights=0)
    xi = np.random.default_rng(1).integers(0, 256, (2, 5, 5, 3)).astype(np.int32)
    layer, outs = run_layer_test(layers.Rescaling, {"scale": 1 / 127.5, "offset": -1}, (2, 5, 5, 3),
                                 input_dtype="int32", input_data=xi, expected_output=xi / 127.5 - 1)
    assert outs[0].dtype == "float32"
    assert layer.compute_output_shape((None, 5, 5, 3)) == (None, 5, 5, 3)
    y = layers.Rescaling(2.0)(np.array([[True, False]]))
    assert y.dtype == "float32"
    np.testing.assert_array_equal(y.numpy(), [[2.0, 0.0]])
    # symbolic: int input, float32 output
    inp = lamina.Input(shape=(4, 3), dtype="int64")
    out = layers.Rescaling(1 / 255)(inp)
    assert out.dtype == "float32" and tuple(out.shape) == (None, 4, 3)


def test_rescaling_per_channel():
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 3)).astype(np.float32)
    scale, offset = [1.0, 2.0, 3.0], np.array([0.5, -0.5, 0.0], np.float32)
    layer, _ = run_layer_test(layers.Rescaling, {"scale": scale, "offset": offset}, (2, 3, 4, 3), input_data=x,
                              expected_output=x * np.array(scale, np.float32) + offset)
    config = layer.get_config()
    assert config["scale"] == [1.0, 2.0, 3.0] and config["offset"] == [0.5, -0.5, 0.0]
    assert layers.Rescaling.from_config(config).get_config()["offset"] == [0.5, -0.5, 0.0]
    assert layers.Rescaling(np.float32(0.5)).get_config()["scale"] == 0.5
    with pytest.raises(ValueError, match=r"Rescaling '.*': `scale` of shape \(3,\) does not broadcast.*\(2, 4\)"):
        layers.Rescaling(scale)(np.zeros((2, 4), np.float32))


def test_rescaling_gradient_and_mask():
    x = lamina.Variable(np.ones((2, 3), np.float32))
    with lamina.GradientTape() as tape:
        loss = lamina.ops.sum(layers.Rescaling(3.0, 1.0)(x))
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), 3.0)
    assert layers.Rescaling(1.0).supports_masking


@pytest.mark.parametrize("bad", ["2", None, [1, "a"], [], float("nan"), True])
def test_rescaling_validation(bad):
    with pytest.raises(ValueError, match=r"Rescaling: `scale` must be"):
        layers.Rescaling(bad)
    with pytest.raises(ValueError, match=r"Rescaling: `offset` must be"):
        layers.Rescaling(1.0, offset=bad)


def test_keras_parity():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras", reason="Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    xi = np.random.default_rng(3).integers(0, 256, (2, 4, 4, 3)).astype(np.int32)
    xf = xi.astype(np.float32)
    for kwargs in [{"scale": 1 / 255}, {"scale": 1 / 127.5, "offset": -1.0},
                   {"scale": [0.1, 0.2, 0.3], "offset": [1.0, 0.0, -1.0]}]:
        k, m = keras.layers.Rescaling(**kwargs), layers.Rescaling(**kwargs)
        for x in (xi, xf):
            np.testing.assert_allclose(m(x).numpy(), np.asarray(k(x)), atol=1e-4, rtol=1e-4, err_msg=str(kwargs))
        assert [w.path for w in m.weights] == [w.path for w in k.weights] == []
        kcfg = k.get_config()
        mcfg = m.get_config()
        assert set(mcfg) == set(kcfg)
        assert (mcfg["scale"], mcfg["offset"]) == (kcfg["scale"], kcfg["offset"])
