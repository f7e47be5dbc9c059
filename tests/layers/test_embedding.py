"""layers/embedding.py: Embedding -- harness, lookup, masks, gradients, errors, Keras parity."""
import os

import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.layers.embedding import Embedding
from layer_harness import run_layer_test


def test_harness_and_lookup():
    ids = np.array([[0, 3, 6], [2, 2, 1]], np.int32)
    layer, outs = run_layer_test(Embedding, {"input_dim": 7, "output_dim": 4}, (2, 3), input_dtype="int32",
                                 input_data=ids, expected_output_shape=(2, 3, 4), expected_num_trainable_weights=1)
    (table,) = layer.get_weights()
    assert table.shape == (7, 4) and layer.weights[0].path == f"{layer.name}/embeddings"
    np.testing.assert_array_equal(outs[0].numpy(), table[ids])


def test_default_initializer_is_keras_uniform():
    layer = Embedding(500, 40)
    layer(np.zeros((1, 1), np.int32))
    t = layer.embeddings.numpy()
    assert t.min() >= -0.05 and t.max() <= 0.05 and t.std() > 0.02
    assert layer.get_config()["embeddings_initializer"]["config"]["minval"] == -0.05


def test_any_input_rank_and_float_ids():
    layer = Embedding(10, 3)
    ids = np.array([[[1, 9], [0, 4]]], np.int64)
    out = layer(ids)
    assert out.shape == (1, 2, 2, 3)
    table = layer.get_weights()[0]
    np.testing.assert_array_equal(out.numpy(), table[ids])
    np.testing.assert_array_equal(layer(ids.astype(np.float32)).numpy(), table[ids])  # float ids are cast
    assert layer.compute_output_shape((None, 2, 2)) == (None, 2, 2, 3)


def test_mask_zero():
    ids = np.array([[4, 0, 2], [0, 0, 1]], np.int32)
    layer = Embedding(5, 2, mask_zero=True)
    layer(ids)
    np.testing.assert_array_equal(layer.compute_mask(ids).numpy(), ids != 0)
    assert layer.supports_masking
    assert Embedding(5, 2).compute_mask(ids) is None


def test_gradient_scatters_into_the_table():
    layer = Embedding(6, 2)
    ids = np.array([[1, 1, 4]], np.int32)
    layer(ids)
    with lamina.GradientTape() as tape:
        loss = ops.sum(layer(ids) * np.array([[[1, 2], [3, 4], [5, 6]]], np.float32))
    g = tape.gradient(loss, layer.embeddings).numpy()
    want = np.zeros((6, 2), np.float32)
    want[1] = [4, 6]
    want[4] = [5, 6]
    np.testing.assert_array_equal(g, want)


def test_trains_in_a_model():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 8, (32, 5)).astype(np.int32)
    y = (ids.sum(1, keepdims=True) > 17).astype(np.float32)
    model = lamina.Sequential([lamina.Input(shape=(5,), dtype="int32"), Embedding(8, 4),
                               lamina.layers.Flatten(), lamina.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=lamina.optimizers.Adam(0.05), loss="binary_crossentropy")
    first = model.evaluate(ids, y, verbose=0)
    model.fit(ids, y, batch_size=8, epochs=10, verbose=0)
    assert model.evaluate(ids, y, verbose=0) < first / 2


def test_config_round_trip():
    layer = Embedding(9, 3, mask_zero=True, embeddings_regularizer="l2", name="emb")
    cfg = layer.get_config()
    for key in ("input_dim", "output_dim", "embeddings_initializer", "embeddings_regularizer",
                "activity_regularizer", "embeddings_constraint", "mask_zero", "name"):
        assert key in cfg
    clone = Embedding.from_config(cfg)
    assert clone.get_config() == cfg
    clone(np.array([[1, 2]]))
    assert len(clone.losses) == 1


def test_errors():
    with pytest.raises(ValueError, match=r"Embedding: `input_dim` must be a positive integer, received input_dim=0"):
        Embedding(0, 3)
    with pytest.raises(ValueError, match=r"`output_dim` must be a positive integer, received output_dim=2.5"):
        Embedding(4, 2.5)
    layer = Embedding(4, 2)
    with pytest.raises(ValueError, match=r"Embedding '.*' \(input_dim=4\).*\[0, 4\).*shape \(1, 2\)"):
        layer(np.array([[1, 4]], np.int32))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        layer(np.array([[-1, 0]], np.int32))
    with pytest.raises(ValueError, match="not supported"):
        Embedding(4, 2, lora_rank=2)


def test_keras_parity():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    ids = np.array([[0, 3, 6], [2, 2, 1]], np.int32)
    k, m = keras.layers.Embedding(7, 4, mask_zero=True), Embedding(7, 4, mask_zero=True)
    k(ids)
    m(ids)
    assert [w.shape for w in m.get_weights()] == [tuple(w.shape) for w in k.get_weights()]
    m.set_weights(k.get_weights())
    np.testing.assert_array_equal(m(ids).numpy(), np.asarray(k(ids)))
    np.testing.assert_array_equal(m.compute_mask(ids).numpy(), np.asarray(k.compute_mask(ids)))
    cfg = {key: v for key, v in k.get_config().items() if key not in ("dtype", "quantization_config")}
    assert set(cfg) <= set(m.get_config())
    assert Embedding.from_config({**cfg, "name": "e2"}).get_config()["input_dim"] == 7
