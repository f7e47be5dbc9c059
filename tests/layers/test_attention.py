import os

import numpy as np
import pytest

import lamina
from lamina import layers


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _qv(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((2, 5, 4)).astype(np.float32)


def test_dot_attention_reference_and_scores():
    q, v = _qv()
    out, w = layers.Attention()([q, v], return_attention_scores=True)
    ref_w = _softmax(q @ v.transpose(0, 2, 1))
    np.testing.assert_allclose(w.numpy(), ref_w, atol=1e-5)
    np.testing.assert_allclose(out.numpy(), ref_w @ v, atol=1e-5)


def test_additive_attention_reference():
    q, v = _qv(1)
    att = layers.AdditiveAttention()
    out = att([q, v]).numpy()
    scale = att.get_weights()[0]
    s = (np.tanh(q[:, :, None, :] + v[:, None, :, :]) * scale).sum(-1)
    np.testing.assert_allclose(out, _softmax(s) @ v, atol=1e-5)


def test_value_mask_hides_padded_steps_and_query_mask_zeroes():
    q, v = _qv(2)
    vmask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    qmask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    out, w = layers.Attention()([q, v], mask=[qmask, vmask], return_attention_scores=True)
    assert np.allclose(w.numpy()[0, :, 3:], 0.0, atol=1e-6)
    ref = _softmax(q[0] @ v[0, :3].T) @ v[0, :3]
    np.testing.assert_allclose(out.numpy()[0, :2], ref[:2], atol=1e-5)
    np.testing.assert_array_equal(out.numpy()[0, 2], np.zeros(4))


def test_attention_in_a_functional_model_trains():
    q_in, v_in = lamina.Input(shape=(3, 4)), lamina.Input(shape=(5, 4))
    ctx = layers.AdditiveAttention()([q_in, v_in])
    out = layers.Dense(1)(layers.Concatenate()([ctx, q_in]))
    m = lamina.Model([q_in, v_in], out)
    assert m.output_shape == (None, 3, 1)
    q, v = _qv(3)
    m.compile(optimizer="adam", loss="mse")
    before = [w.copy() for w in m.get_weights()]
    m.train_on_batch([q, v], np.ones((2, 3, 1), np.float32))
    assert all(not np.allclose(a, b) for a, b in zip(before, m.get_weights()))


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "jax") != "jax", reason="parity uses the jax backend")
def test_keras_parity():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    q, v = _qv(4)
    for cls, kw in [("Attention", {"use_scale": True}), ("Attention", {"score_mode": "concat"}),
                    ("AdditiveAttention", {})]:
        k = getattr(keras.layers, cls)(**kw)
        want = np.asarray(k([q, v]))
        m = getattr(layers, cls)(**kw)
        m([q, v])
        m.set_weights([np.asarray(w) for w in k.get_weights()])
        np.testing.assert_allclose(m([q, v]).numpy(), want, atol=1e-5, err_msg=cls)
