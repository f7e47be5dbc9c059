"""layers/embedding.py: Embedding -- harness, lookup, masks, gradients, errors, Keras parity."""
import os

import numpy as np
import pytest

import lamina
from lamina import ops
from lamina import layers
from lamina.layers.embedding import Embedding
from keras_ref import keras_or_none
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
    with pytest.raises(ValueError, match="lora_rank` must be a positive integer"):
        Embedding(4, 2, lora_rank=0)


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


# ---- ReversibleEmbedding ------------------------------------------------------------------------------

def test_reversible_embedding():
    from lamina import layers
    ids = np.array([[1, 4, 0], [3, 0, 0]], np.int32)
    layer, outs = run_layer_test(layers.ReversibleEmbedding, {"input_dim": 6, "output_dim": 3}, (2, 3),
                                 input_dtype="int32", input_data=ids, expected_output_shape=(2, 3, 3),
                                 expected_num_trainable_weights=1)
    (table,) = layer.get_weights()
    np.testing.assert_array_equal(outs[0].numpy(), table[ids])
    h = np.random.default_rng(4).standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(layer(h, reverse=True).numpy(), h @ table.T, rtol=1e-5)
    untied = layers.ReversibleEmbedding(6, 3, tie_weights=False, logit_soft_cap=1.5, mask_zero=True)
    emb = untied(ids)
    np.testing.assert_array_equal(emb._keras_mask.numpy(), ids != 0)           # the forward call's mask
    table, rev = untied.get_weights()
    assert rev.shape == (3, 6) and [w.path for w in untied.weights][1].endswith("/reverse_embeddings")
    logits = untied(h, reverse=True)
    np.testing.assert_allclose(logits.numpy(), 1.5 * np.tanh(h @ rev / 1.5), rtol=1e-5, atol=1e-6)
    assert logits._keras_mask is None
    # a tied language-model head in a functional model, trained
    inp = lamina.Input((3,), dtype="int32")
    tied = layers.ReversibleEmbedding(6, 4)
    model = lamina.Model(inp, tied(layers.Dense(4)(tied(inp)), reverse=True))
    assert model.output_shape == (None, 3, 6) and len(model.trainable_weights) == 3
    model.compile(optimizer=lamina.optimizers.Adam(0.05), loss=lamina.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x = np.random.default_rng(5).integers(0, 6, (32, 3)).astype(np.int32)
    hist = model.fit(x, x, epochs=10, batch_size=8, verbose=0)
    assert hist.history["loss"][-1] < 0.8 * hist.history["loss"][0]
    config = untied.get_config()
    clone = layers.ReversibleEmbedding.from_config(config)
    assert clone.get_config() == {**config, "name": clone.name}
    with pytest.raises(ValueError, match="reverse_dtype='float16' is not supported"):
        layers.ReversibleEmbedding(4, 2, reverse_dtype="float16")
    with pytest.raises(ValueError, match="`logit_soft_cap` must be None or a positive number"):
        layers.ReversibleEmbedding(4, 2, logit_soft_cap=0)
    with pytest.raises(ValueError, match=r"reverse=True maps vectors of size output_dim=3 to logits"):
        layer(np.zeros((2, 4), np.float32), reverse=True)
    with pytest.raises(NotImplementedError, match="quantization is not available"):
        layer.quantize("int8")


def test_reversible_embedding_keras_parity():
    from keras_ref import keras_or_none
    from lamina import layers
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    ids = np.array([[1, 4, 0], [3, 0, 2]], np.int32)
    h = np.random.default_rng(6).standard_normal((2, 3, 4)).astype(np.float32)
    for kw in [{}, {"tie_weights": False, "logit_soft_cap": 3.0, "mask_zero": True}]:
        theirs = keras.layers.ReversibleEmbedding(7, 4, **kw)
        theirs(ids)
        ours = layers.ReversibleEmbedding(7, 4, **kw)
        ours(ids)
        ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
        np.testing.assert_allclose(ours(ids).numpy(), np.asarray(theirs(ids)))
        np.testing.assert_allclose(ours(h, reverse=True).numpy(), np.asarray(theirs(h, reverse=True)), rtol=1e-5,
                                   atol=1e-6)
        a, b = ours.get_config(), theirs.get_config()
        a.pop("name"), b.pop("name")
        assert a == b


def test_embedding_lora_trains_only_the_factors_and_saves_merged(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, (64, 5))
    y = rng.standard_normal((64, 5, 4)).astype(np.float32)
    model = lamina.Sequential([lamina.Input((5,), dtype="int32"), layers.Embedding(20, 4, name="emb")])
    model.build((None, 5))
    emb = model.get_layer("emb")
    table = emb.embeddings.numpy().copy()
    emb.enable_lora(2, lora_alpha=4)
    assert [w.name for w in emb.trainable_weights] == ["lora_embeddings_a", "lora_embeddings_b"]
    np.testing.assert_allclose(emb(ids).numpy(), table[ids], atol=1e-6)   # b starts at zero
    model.compile(optimizer=lamina.optimizers.Adam(0.05), loss="mse")
    model.fit(ids, y, epochs=3, verbose=0)
    np.testing.assert_array_equal(emb.embeddings.numpy(), table)           # frozen
    merged = emb.merged_embeddings().numpy()
    a, b = emb.lora_embeddings_a.numpy(), emb.lora_embeddings_b.numpy()
    np.testing.assert_allclose(merged, table + 2.0 * a @ b, atol=1e-5)     # alpha / rank = 2
    np.testing.assert_allclose(emb(ids).numpy(), merged[ids], atol=1e-5)
    path = str(tmp_path / "lora.weights.h5")
    model.save_weights(path)
    plain = lamina.Sequential([lamina.Input((5,), dtype="int32"), layers.Embedding(20, 4, name="emb")])
    plain.load_weights(path)   # the merged table, as Keras saves it
    np.testing.assert_allclose(plain.get_layer("emb").embeddings.numpy(), merged, atol=1e-6)
    assert emb.get_config()["lora_rank"] == 2 and emb.get_config()["lora_alpha"] == 4
    with pytest.raises(ValueError, match="LoRA is already enabled"):
        emb.enable_lora(2)
    with pytest.raises(ValueError, match="incompatible with embedding constraints"):
        layers.Embedding(3, 2, embeddings_constraint="non_neg", lora_rank=1).build()
    with pytest.raises(ValueError, match="LoRA is not available for this layer"):
        layers.ReversibleEmbedding(3, 2, lora_rank=1)


def test_embedding_lora_equals_keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    ids = np.array([[1, 2, 3], [4, 0, 2]])
    theirs = keras.layers.Embedding(6, 4, lora_rank=2)
    theirs.build((None, 3))
    ours = layers.Embedding(6, 4, lora_rank=2)
    ours.build((None, 3))
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    values = [np.random.default_rng(1).standard_normal(w.shape).astype(np.float32) for w in ours.weights]
    ours.set_weights(values)
    theirs.set_weights(values)
    np.testing.assert_allclose(ours(ids).numpy(), np.asarray(theirs(ids)), atol=1e-5)
