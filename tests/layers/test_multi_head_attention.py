"""MultiHeadAttention: numpy reference with Keras's two masking paths, masks (propagated and
explicit, causal, attention_mask), scores, dropout, attention_axes, harness, training, files,
Keras parity with the same weights, and errors."""
import json
import os

import numpy as np
import pytest

import lamina
from lamina import layers, ops
from layer_harness import run_layer_test

from keras_ref import keras_or_none

_MASKED_DPA = -0.7 * np.finfo(np.float32).max


def _data(seed=0, T=4, S=5, dq=6, dv=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, T, dq)).astype(np.float32), rng.standard_normal((2, S, dv)).astype(np.float32)


def _reference(layer, query, value, mask=None, scores_path=False):
    """Keras's MHA in numpy for (B, T, dim) inputs and the layer's weights. `mask` (B, T, S) is
    True where attention is allowed. The dot_product_attention path fills masked logits with
    -0.7 * float32 max (a fully masked row averages the values); the scores path (dropout or
    return_attention_scores) with -1e9 and zeroes masked probabilities."""
    wq, bq, wk, bk, wv, bv, wo, bo = [w.astype(np.float64) for w in layer.get_weights()]
    q = np.einsum("btd,dnh->btnh", query, wq) + bq
    k = np.einsum("bsd,dnh->bsnh", value, wk) + bk
    v = np.einsum("bsd,dnh->bsnh", value, wv) + bv
    logits = np.einsum("bsnh,btnh->bnts", k, q) / np.sqrt(wq.shape[-1])
    keep = np.ones(logits.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool)[:, None],
                                                                           logits.shape)
    logits = np.where(keep, logits, -1e9 if scores_path else _MASKED_DPA)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    if scores_path:
        p = np.where(keep, p, 0.0)
    out = np.einsum("bnts,bsnh->btnh", p, v)
    return np.einsum("btnh,nho->bto", out, wo) + bo, p


def _randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in layer.get_weights()])


def test_weights_have_keras_names_shapes_and_order():
    mha = layers.MultiHeadAttention(num_heads=3, key_dim=2, value_dim=4, name="mha")
    q, v = _data()
    mha(q, v)
    assert [w.path for w in mha.weights] == ["mha/query/kernel", "mha/query/bias", "mha/key/kernel", "mha/key/bias",
                                             "mha/value/kernel", "mha/value/bias", "mha/attention_output/kernel",
                                             "mha/attention_output/bias"]
    assert [w.shape for w in mha.weights] == [(6, 3, 2), (3, 2), (3, 3, 2), (3, 2), (3, 3, 4), (3, 4), (3, 4, 6), (6,)]
    assert mha.query_dense is mha._query_dense and mha.output_dense.name == "attention_output"


@pytest.mark.parametrize("with_scores", [False, True])
def test_matches_numpy_reference_with_masks(with_scores):
    q, v = _data(2)
    mha = layers.MultiHeadAttention(num_heads=2, key_dim=3)
    mha(q, v)
    _randomize(mha)
    vm = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    am = np.random.default_rng(3).uniform(size=(2, 4, 5)) > 0.3
    am[0, 2] = False    # a query that may attend to nothing
    mask = vm[:, None, :] & am
    out = mha(q, v, value_mask=vm, attention_mask=am, return_attention_scores=with_scores)
    want, probs = _reference(mha, q, v, mask, scores_path=with_scores)
    if with_scores:
        out, scores = out
        assert scores.shape == (2, 2, 4, 5)
        np.testing.assert_allclose(scores.numpy(), probs, rtol=1e-5, atol=1e-6)
        assert np.all(scores.numpy()[0, :, 2] == 0)       # Keras's Softmax zeroes a fully masked row
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-5)
    plain = mha(q, v)
    np.testing.assert_allclose(plain.numpy(), _reference(mha, q, v)[0], rtol=1e-4, atol=1e-5)


def test_causal_mask_hides_future_positions():
    x = _data(4, T=5, S=5, dq=4)[0]
    mha = layers.MultiHeadAttention(num_heads=2, key_dim=2)
    out, scores = mha(x, x, use_causal_mask=True, return_attention_scores=True)
    assert np.all(np.triu(np.ones((5, 5)), 1)[None, None] * scores.numpy() == 0)
    np.testing.assert_allclose(scores.numpy().sum(-1), 1.0, rtol=1e-5)
    later = x.copy()
    later[:, 3:] += 1.0                                   # change the future: the first 3 outputs stay
    fast = mha(x, x, use_causal_mask=True).numpy()        # dot_product_attention's is_causal path
    np.testing.assert_allclose(fast, out.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mha(later, later, use_causal_mask=True).numpy()[:, :3], fast[:, :3], rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(mha(later, later, use_causal_mask=True).numpy()[:, 3:], fast[:, 3:])


def _masked_model(lib, key_input=False):
    L = lib.layers
    a = lib.Input((5,), dtype="int32")
    b = lib.Input((4,), dtype="int32")
    x = L.Embedding(10, 6, mask_zero=True, name="emb_q")(a)
    y = L.Embedding(10, 6, mask_zero=True, name="emb_v")(b)
    out, scores = L.MultiHeadAttention(2, 3, name="mha")(x, y, return_attention_scores=True)
    return lib.Model([a, b], [out, scores])


def _ids():
    rng = np.random.default_rng(8)
    qa, va = rng.integers(1, 10, (2, 5)).astype(np.int32), rng.integers(1, 10, (2, 4)).astype(np.int32)
    qa[0, 3:] = 0
    va[0, 2:] = 0
    va[1, 3] = 0
    return qa, va


def test_masks_propagate_from_embedding_like_explicit_masks():
    qa, va = _ids()
    m = _masked_model(lamina)
    out, scores = m([qa, va])
    s = scores.numpy()
    assert np.all(s[0, :, :, 2:] == 0) and np.all(s[1, :, :, 3] == 0)      # padded keys get no weight
    assert np.all(s[0, :, 3:] == 0)                                          # padded queries attend to nothing
    np.testing.assert_array_equal(out._keras_mask.numpy(), qa != 0)          # the output carries the query mask
    assert scores._keras_mask is None
    mha = m.get_layer("mha")
    xq = m.get_layer("emb_q")(qa).numpy()
    xv = m.get_layer("emb_v")(va).numpy()
    out2, s2 = mha(xq, xv, query_mask=qa != 0, value_mask=va != 0, return_attention_scores=True)
    np.testing.assert_allclose(out2.numpy(), out.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s2.numpy(), s, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out2._keras_mask.numpy(), qa != 0)


def test_key_mask_applies_only_to_a_given_key():
    q, v = _data(5)
    key = np.random.default_rng(6).standard_normal((2, 5, 7)).astype(np.float32)
    km = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], bool)
    mha = layers.MultiHeadAttention(2, 3)
    _, s = mha(q, v, key=key, key_mask=km, return_attention_scores=True)
    assert np.all(s.numpy()[0, ..., 2:] == 0) and np.all(s.numpy()[1, ..., 4] == 0)
    assert [w.shape for w in mha.key_dense.weights] == [(7, 2, 3), (2, 3)]


def test_dropout_only_in_training_and_seeded():
    q, v = _data(7)
    a = layers.MultiHeadAttention(2, 3, dropout=0.5, seed=11)
    b = layers.MultiHeadAttention(2, 3, dropout=0.5, seed=11)
    a(q, v)
    b(q, v)
    b.set_weights(a.get_weights())
    inference = a(q, v).numpy()
    np.testing.assert_allclose(a(q, v, training=False).numpy(), inference)
    np.testing.assert_allclose(inference, _reference(a, q, v, scores_path=True)[0], rtol=1e-4, atol=1e-5)
    train_a, scores = a(q, v, training=True, return_attention_scores=True)
    train_b = b(q, v, training=True)
    assert not np.allclose(train_a.numpy(), inference)
    np.testing.assert_allclose(train_a.numpy(), train_b.numpy(), rtol=1e-6)     # same seed, same masks
    np.testing.assert_allclose(scores.numpy().sum(-1), 1.0, rtol=1e-5)          # scores are before dropout


def test_attention_axes_over_two_axes_of_rank_4_inputs():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    mha = layers.MultiHeadAttention(2, 3, attention_axes=(1, 2))
    out, scores = mha(x, x, return_attention_scores=True)
    assert out.shape == (2, 3, 4, 5) and scores.shape == (2, 2, 3, 4, 3, 4)
    np.testing.assert_allclose(scores.numpy().sum(axis=(-2, -1)), 1.0, rtol=1e-5)
    one = layers.MultiHeadAttention(2, 3, attention_axes=2)
    out1, scores1 = one(x, x, return_attention_scores=True)
    assert one.get_config()["attention_axes"] == (2,) and scores1.shape == (2, 3, 2, 4, 4)


@pytest.mark.parametrize("call", [{}, {"use_causal_mask": True}, {"attention_mask": "am", "value_mask": "vm"},
                                  {"attention_mask": "am", "use_causal_mask": True, "key": "key", "key_mask": "vm"}],
                         ids=["plain", "causal", "masks", "causal_masks_key"])
def test_fused_attention_equals_the_composed_path_forward_and_backward(call):
    """The default path (the fused kernel) against flash_attention=False (einsum, where, softmax):
    outputs and the gradients of the inputs and of every weight."""
    rng = np.random.default_rng(12)
    q, v = _data(13, T=6, S=7, dq=8, dv=5)
    am = rng.uniform(size=(2, 6, 7)) > 0.4
    am[1, 3] = False                                      # a fully masked query row
    named = {"am": am, "vm": np.array([[1, 1, 1, 1, 0, 0, 1], [1, 1, 0, 1, 1, 1, 1]], bool),
             "key": rng.standard_normal((2, 7, 4)).astype(np.float32)}
    call = {k: named[x] if isinstance(x, str) else x for k, x in call.items()}
    results = []
    for flash in (None, False):
        mha = layers.MultiHeadAttention(num_heads=3, key_dim=4, value_dim=2, flash_attention=flash, name="mha")
        mha(q, v, **{n: call[n] for n in ("key",) if n in call})
        _randomize(mha, seed=5)
        qt, vt = lamina.Variable(q), lamina.Variable(v)
        with lamina.GradientTape() as tape:
            out = mha(qt, vt, **call)
            loss = ops.sum(out * out)
        grads = tape.gradient(loss, [qt, vt] + mha.trainable_weights)
        results.append([out.numpy()] + [g.numpy() for g in grads])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(b).max())))


def test_flash_attention_true_runs_the_fused_kernel_and_refuses_what_it_cannot_do():
    q, v = _data(14)
    fused = layers.MultiHeadAttention(2, 3, flash_attention=True, name="att")
    out = fused(q, v, use_causal_mask=True)
    composed = layers.MultiHeadAttention(2, 3, flash_attention=False)
    composed(q, v)
    composed.set_weights(fused.get_weights())
    np.testing.assert_allclose(out.numpy(), composed(q, v, use_causal_mask=True).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"'att': returning attention scores is not supported when flash attention "
                                         r"is enabled"):
        fused(q, v, return_attention_scores=True)
    x = np.zeros((2, 3, 4, 5), np.float32)
    with pytest.raises(ValueError, match=r"flash_attention=True attends over one axis .* attention_axes=\(1, 2\)"):
        layers.MultiHeadAttention(2, 3, attention_axes=(1, 2), flash_attention=True)(x, x)


class _SelfAttention(layers.MultiHeadAttention):
    """mha(x, x): the single-input form the layer harness calls."""

    def __call__(self, x, **kwargs):
        return super().__call__(x, x, **kwargs)


def test_layer_harness():
    run_layer_test(_SelfAttention, {"num_heads": 2, "key_dim": 3, "output_shape": 4}, (2, 5, 6),
                   expected_output_shape=(2, 5, 4), expected_num_trainable_weights=8)
    run_layer_test(_SelfAttention, {"num_heads": 2, "key_dim": 2, "use_bias": False, "dropout": 0.1, "seed": 3},
                   (2, 3, 4), expected_output_shape=(2, 3, 4), expected_num_trainable_weights=4)


def test_config_round_trip_and_build_config():
    mha = layers.MultiHeadAttention(2, 3, value_dim=4, dropout=0.2, output_shape=(5,), kernel_regularizer="l2",
                                    sliding_window=3, seed=1, name="att")
    q, v = _data()
    mha(q, v)
    config = mha.get_config()
    assert config["attention_axes"] == (1,) and config["value_dim"] == 4 and config["output_shape"] == (5,)
    clone = layers.MultiHeadAttention.from_config(json.loads(json.dumps(config)))
    clone.build_from_config(json.loads(json.dumps(mha.get_build_config())))
    assert clone.built and [w.shape for w in clone.weights] == [w.shape for w in mha.weights]
    clone.set_weights(mha.get_weights())
    np.testing.assert_allclose(clone(q, v).numpy(), mha(q, v).numpy(), rtol=1e-6)
    assert mha.get_build_config() == {"shapes_dict": {"query_shape": (2, 4, 6), "value_shape": (2, 5, 3)}}


def _transformer(lib, vocab=12, length=6, dim=8):
    L = lib.layers
    ids = lib.Input((length,), dtype="int32")
    x = L.Embedding(vocab, dim, mask_zero=True)(ids)
    a = L.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.1, seed=0)(x, x)
    x = L.LayerNormalization()(L.Add()([x, a]))
    h = L.Dense(dim, activation="relu")(x)
    x = L.LayerNormalization()(L.Add()([x, h]))
    return lib.Model(ids, L.Dense(2, activation="softmax")(L.GlobalMaxPooling1D()(x)))


def test_tiny_transformer_block_trains_with_fit_and_saves(tmp_path):
    """Is token 1 anywhere in the sequence? Attention has to look across positions."""
    rng = np.random.default_rng(0)
    x = rng.integers(2, 12, (64, 6)).astype(np.int32)
    y = rng.integers(0, 2, 64)
    rows = np.flatnonzero(y)
    x[rows, rng.integers(0, 6, rows.size)] = 1
    x[::7, 4:] = 0                          # some padding, masked through the block
    model = _transformer(lamina)
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=12, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    p = str(tmp_path / "t.keras")
    model.save(p)
    loaded = lamina.models.load_model(p)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_errors_are_clear():
    with pytest.raises(ValueError, match=r"`num_heads` must be a positive integer, received num_heads=0"):
        layers.MultiHeadAttention(0, 3)
    with pytest.raises(ValueError, match=r"`key_dim` must be a positive integer, received key_dim=2.5"):
        layers.MultiHeadAttention(2, 2.5)
    with pytest.raises(ValueError, match=r"`dropout` must be a number in \[0, 1\]"):
        layers.MultiHeadAttention(2, 3, dropout=1.5)
    with pytest.raises(ValueError, match=r"dropout is not supported when flash attention is enabled"):
        layers.MultiHeadAttention(2, 3, dropout=0.1, flash_attention=True)
    with pytest.raises(ValueError, match=r"`flash_attention` must be None, True or False, received "
                                         r"flash_attention='yes'"):
        layers.MultiHeadAttention(2, 3, flash_attention="yes")
    with pytest.raises(ValueError, match=r"`attention_axes` must be an int, list, or tuple"):
        layers.MultiHeadAttention(2, 3, attention_axes="1")
    with pytest.raises(ValueError, match=r"`sliding_window` must be a positive integer or None"):
        layers.MultiHeadAttention(2, 3, sliding_window=0)
    q, v = _data()
    mha = layers.MultiHeadAttention(2, 3, name="att")
    with pytest.raises(TypeError, match=r"'att' takes a query and a value .* the value is missing"):
        mha(q)
    with pytest.raises(ValueError, match=r"attention_axes=\(3,\) must be distinct axes of the query's positions, "
                                         r"between 1 and 1"):
        layers.MultiHeadAttention(2, 3, attention_axes=3)(q, v)
    with pytest.raises(ValueError, match=r"all dimensions of `value` and `key`, except the last one, must be equal"):
        mha(q, v, key=np.zeros((2, 3, 3), np.float32))
    mha(q, v)
    with pytest.raises(ValueError, match=r"'att' was built for a value of shape \(2, 5, 3\), received a value of "
                                         r"shape \(2, 5, 4\)"):
        mha(q, np.zeros((2, 5, 4), np.float32))
    with pytest.raises(ValueError, match=r"attention mask of shape .* does not broadcast"):
        mha(q, v, attention_mask=np.ones((2, 4, 3), bool), return_attention_scores=True)
    with pytest.raises(ValueError, match=r"same rank, at least 3"):
        layers.MultiHeadAttention(2, 3)(np.zeros((2, 6), np.float32), np.zeros((2, 6), np.float32))


# ---- Keras ----------------------------------------------------------------------------------------

def _keras():
    keras = keras_or_none()
    if keras is None or os.environ.get("KERAS_BACKEND", "jax") != "jax":
        pytest.skip("Keras (jax backend) is not installed")
    return keras


PARITY = [   # (the dot_product_attention path, then the scores path, each with and without masks)
    ({"num_heads": 2, "key_dim": 3}, {"use_causal_mask": True}),
    ({"num_heads": 2, "key_dim": 3}, {"attention_mask": "am", "value_mask": "vm", "return_attention_scores": True}),
    ({"num_heads": 3, "key_dim": 2, "value_dim": 4, "output_shape": 5, "dropout": 0.3}, {"use_causal_mask": True}),
    ({"num_heads": 2, "key_dim": 3, "use_bias": False, "use_gate": True, "sliding_window": 2},
     {"key": "key", "key_mask": "vm", "attention_mask": "am"}),
]


def test_outputs_equal_keras_with_the_same_weights():
    keras = _keras()
    q, v = _data(10)
    rng = np.random.default_rng(11)
    named = {"am": rng.uniform(size=(2, 4, 5)) > 0.3, "vm": np.array([[1, 1, 0, 1, 1], [1, 0, 0, 0, 0]], bool),
             "key": rng.standard_normal((2, 5, 7)).astype(np.float32)}
    for kw, call in PARITY:
        call = {k: named[v] if isinstance(v, str) else v for k, v in call.items()}
        k = keras.layers.MultiHeadAttention(**kw)
        want = k(q, v, **call)
        ours = layers.MultiHeadAttention(**kw)
        ours(q, v, **{n: call[n] for n in ("key",) if n in call})
        assert [w.path.split("/", 1)[1] for w in ours.weights] == [w.path.split("/", 1)[1] for w in k.weights]
        ours.set_weights([np.asarray(w) for w in k.get_weights()])
        got = ours(q, v, **call)
        for a, b in zip(want if isinstance(want, tuple) else [want], got if isinstance(got, tuple) else [got]):
            np.testing.assert_allclose(b.numpy(), np.asarray(a), rtol=1e-5, atol=1e-5, err_msg=f"{kw} {list(call)}")
        kc, oc = k.get_config(), ours.get_config()
        kc.pop("name"), oc.pop("name")
        assert json.loads(json.dumps(oc)) == json.loads(json.dumps(kc)), kw
        # Keras's weights back from lamina's
        k.set_weights(ours.get_weights())


def test_attention_axes_equal_keras():
    keras = _keras()
    x = np.random.default_rng(12).standard_normal((2, 3, 4, 5)).astype(np.float32)
    for axes in ((1, 2), 2):
        k = keras.layers.MultiHeadAttention(2, 3, attention_axes=axes)
        want = k(x, x, return_attention_scores=True)
        ours = layers.MultiHeadAttention(2, 3, attention_axes=axes)
        ours(x, x)
        ours.set_weights([np.asarray(w) for w in k.get_weights()])
        for a, b in zip(want, ours(x, x, return_attention_scores=True)):
            np.testing.assert_allclose(b.numpy(), np.asarray(a), rtol=1e-5, atol=1e-5)


def test_propagated_masks_equal_keras():
    keras = _keras()
    qa, va = _ids()
    k = _masked_model(keras)
    ours = _masked_model(lamina)
    ours.set_weights(k.get_weights())
    for a, b in zip(k.predict([qa, va], verbose=0), ours.predict([qa, va], verbose=0)):
        np.testing.assert_allclose(b, np.asarray(a), rtol=1e-5, atol=1e-5)


def test_model_files_move_both_ways(tmp_path):
    keras = _keras()
    x = np.random.default_rng(13).integers(0, 12, (4, 6)).astype(np.int32)
    x[0, 3:] = 0
    m = _transformer(lamina)
    k = _transformer(keras)
    for ext in (".keras", ".h5"):
        m.save(str(tmp_path / ("l" + ext)))
        loaded = keras.models.load_model(str(tmp_path / ("l" + ext)))
        np.testing.assert_allclose(np.asarray(loaded.predict(x, verbose=0)), m.predict(x, verbose=0), rtol=1e-5,
                                   atol=1e-5, err_msg=ext)
        k.save(str(tmp_path / ("k" + ext)))
        loaded = lamina.models.load_model(str(tmp_path / ("k" + ext)))
        np.testing.assert_allclose(loaded.predict(x, verbose=0), np.asarray(k.predict(x, verbose=0)), rtol=1e-5,
                                   atol=1e-5, err_msg=ext)
