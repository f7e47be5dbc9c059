"""GroupQueryAttention / GroupedQueryAttention (layers/grouped_query_attention.py): numpy
reference (key/value heads shared by groups of query heads) on both attention paths, masks,
weights, harness, configs, errors, Keras parity with the same weights, and Keras files."""
import json

import numpy as np
import pytest

import lamina
from lamina import layers
from keras_ref import keras_or_none
from layer_harness import run_layer_test

_MASKED_DPA = -0.7 * np.finfo(np.float32).max
RNG = np.random.default_rng(8)


def _data(T=4, S=5, dim=6):
    return RNG.standard_normal((2, T, dim)).astype(np.float32), RNG.standard_normal((2, S, dim)).astype(np.float32)


def _reference(layer, query, value, mask=None, scores_path=False):
    """Grouped-query attention in numpy with the layer's weights: key/value head g serves query
    heads g * r ... g * r + r - 1 (r = num_query_heads / num_key_value_heads)."""
    wq, bq, wk, bk, wv, bv, wo, bo = [w.astype(np.float64) for w in layer.get_weights()]
    r = wq.shape[1] // wk.shape[1]
    q = np.einsum("btd,dnh->btnh", query, wq) + bq
    k = np.repeat(np.einsum("bsd,dnh->bsnh", value, wk) + bk, r, axis=2)
    v = np.repeat(np.einsum("bsd,dnh->bsnh", value, wv) + bv, r, axis=2)
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(wq.shape[-1])
    keep = np.ones(logits.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool)[:, None],
                                                                           logits.shape)
    logits = np.where(keep, logits, -1e9 if scores_path else _MASKED_DPA)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    if scores_path:
        p = np.where(keep, p, 0.0)
    return np.einsum("btnh,nho->bto", np.einsum("bnts,bsnh->btnh", p, v), wo) + bo, p


def _randomize(layer):
    layer.set_weights([RNG.standard_normal(w.shape).astype(np.float32) * 0.5 for w in layer.get_weights()])


def test_weights_and_numpy_reference():
    gqa = layers.GroupQueryAttention(head_dim=3, num_query_heads=4, num_key_value_heads=2, name="gqa")
    q, v = _data()
    gqa(q, v)
    assert not hasattr(gqa, "query_dense") and gqa._query_dense.name == "query"   # Keras's attributes
    assert [w.path for w in gqa.weights] == ["gqa/query/kernel", "gqa/query/bias", "gqa/key/kernel", "gqa/key/bias",
                                             "gqa/value/kernel", "gqa/value/bias", "gqa/attention_output/kernel",
                                             "gqa/attention_output/bias"]
    assert [w.shape for w in gqa.weights] == [(6, 4, 3), (4, 3), (6, 2, 3), (2, 3), (6, 2, 3), (2, 3), (4, 3, 6),
                                              (6,)]
    _randomize(gqa)
    np.testing.assert_allclose(gqa(q, v).numpy(), _reference(gqa, q, v)[0], rtol=1e-4, atol=1e-5)
    vm = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    am = RNG.uniform(size=(2, 4, 5)) > 0.3
    am[1, 0] = False
    out, scores = gqa(q, v, value_mask=vm, attention_mask=am, return_attention_scores=True)
    want, probs = _reference(gqa, q, v, vm[:, None] & am, scores_path=True)
    assert scores.shape == (2, 4, 4, 5)
    np.testing.assert_allclose(scores.numpy(), probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-5)
    causal = np.tril(np.ones((4, 5), bool))[None]
    np.testing.assert_allclose(gqa(q, v, use_causal_mask=True).numpy(), _reference(gqa, q, v, causal)[0],
                               rtol=1e-4, atol=1e-5)
    window = np.abs(np.arange(4)[:, None] - np.arange(5)[None]) < 2
    w2 = layers.GroupQueryAttention(3, 4, 1, sliding_window=2)
    w2(q, v)
    _randomize(w2)
    np.testing.assert_allclose(w2(q, v).numpy(), _reference(w2, q, v, window[None])[0], rtol=1e-4, atol=1e-5)


class _SelfGQA(layers.GroupQueryAttention):
    def __call__(self, x, **kwargs):
        return super().__call__(x, x, **kwargs)


def test_harness_gate_dropout_and_masks_from_inputs():
    run_layer_test(_SelfGQA, {"head_dim": 2, "num_query_heads": 4, "num_key_value_heads": 2}, (2, 5, 6),
                   expected_output_shape=(2, 5, 6), expected_num_trainable_weights=8)
    run_layer_test(_SelfGQA, {"head_dim": 2, "num_query_heads": 2, "num_key_value_heads": 1, "use_bias": False,
                              "use_gate": True, "dropout": 0.2, "seed": 1}, (2, 3, 4), expected_num_trainable_weights=5)
    q, v = _data()
    d = layers.GroupQueryAttention(2, 2, 2, dropout=0.5, seed=3)
    a = d(q, v).numpy()
    np.testing.assert_array_equal(a, d(q, v, training=False).numpy())      # dropout only in training
    assert not np.allclose(d(q, v, training=True).numpy(), a)
    # masks of the inputs (Embedding(mask_zero=True)) are used, the query's carried on
    ids = np.array([[3, 1, 0, 0], [2, 2, 2, 1]])
    x = layers.Embedding(5, 6, mask_zero=True)(ids)
    g = layers.GroupQueryAttention(3, 2, 1)
    out = g(x, x)
    np.testing.assert_array_equal(out._keras_mask.numpy(), ids != 0)
    np.testing.assert_allclose(out.numpy(), g(x, x, query_mask=ids != 0, value_mask=ids != 0).numpy(), rtol=1e-6)


def test_config_errors_and_names():
    g = layers.GroupQueryAttention(4, 6, 3, dropout=0.1, use_gate=True, sliding_window=2, seed=2,
                                   kernel_initializer="he_normal")
    assert layers.GroupQueryAttention is layers.GroupedQueryAttention     # Keras's export name and class name
    assert g.name.startswith("grouped_query_attention")
    q, v = _data(dim=5)
    g(q, v)
    config = g.get_config()
    assert {k: config[k] for k in ("head_dim", "num_query_heads", "num_key_value_heads")} == \
        {"head_dim": 4, "num_query_heads": 6, "num_key_value_heads": 3}
    clone = layers.GroupQueryAttention.from_config(json.loads(json.dumps(config)))
    clone.build_from_config(json.loads(json.dumps(g.get_build_config())))
    clone.set_weights(g.get_weights())
    np.testing.assert_allclose(clone(q, v).numpy(), g(q, v).numpy(), rtol=1e-6)
    assert g.num_repeats == 2 and g.head_dim == 4
    inp_q, inp_v = lamina.Input((4, 5)), lamina.Input((7, 5))
    assert layers.GroupQueryAttention(2, 2, 1)(inp_q, inp_v).shape == (None, 4, 5)
    with pytest.raises(ValueError, match="`num_query_heads` must be divisible by `num_key_value_heads`"):
        layers.GroupQueryAttention(2, 3, 2)
    with pytest.raises(ValueError, match=r"GroupedQueryAttention: `head_dim` must be a positive integer"):
        layers.GroupQueryAttention(0, 2, 1)
    with pytest.raises(ValueError, match=r"GroupedQueryAttention: `num_key_value_heads` must be a positive int"):
        layers.GroupQueryAttention(2, 2, None)
    with pytest.raises(ValueError, match=r"GroupedQueryAttention '.*': expected a query of shape \(batch, length"):
        layers.GroupQueryAttention(2, 2, 1)(np.zeros((1, 2, 3, 4), np.float32), np.zeros((1, 2, 3, 4), np.float32))
    with pytest.raises(TypeError, match="takes a query and a value"):
        layers.GroupQueryAttention(2, 2, 1)(q)
    with pytest.raises(ValueError, match="dropout is not supported when flash attention is enabled"):
        layers.GroupQueryAttention(2, 2, 1, dropout=0.5, flash_attention=True)
    with pytest.raises(ValueError, match="the last dimension of `query_shape` and `value_shape` must be equal"):
        layers.GroupQueryAttention(2, 2, 1).compute_output_shape((None, 3, 4), (None, 3, 5))


def test_keras_parity():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    q, v = _data()
    for kw in [{}, {"use_gate": True, "use_bias": False}, {"sliding_window": 2}]:
        theirs = keras.layers.GroupQueryAttention(3, 4, 2, **kw)
        want = np.asarray(theirs(q, v))
        ours = layers.GroupQueryAttention(3, 4, 2, **kw)
        ours(q, v)
        assert [w.path.split("/", 1)[1] for w in ours.weights] == [w.path.split("/", 1)[1] for w in theirs.weights]
        ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
        np.testing.assert_allclose(ours(q, v).numpy(), want, rtol=1e-5, atol=1e-6)
        o1, s1 = ours(q, v, return_attention_scores=True, use_causal_mask=True)
        o2, s2 = theirs(q, v, return_attention_scores=True, use_causal_mask=True)
        np.testing.assert_allclose(o1.numpy(), np.asarray(o2), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s1.numpy(), np.asarray(s2), rtol=1e-5, atol=1e-6)
        a, b = ours.get_config(), theirs.get_config()
        a.pop("name"), b.pop("name")
        assert a == b, (a, b)


def _gqa_model(lib):
    L = lib.layers
    ids = lib.Input((3,), dtype="int32")
    emb = L.ReversibleEmbedding(5, 4, tie_weights=False)
    h = emb(ids)
    return lib.Model(ids, emb(L.GroupQueryAttention(2, 4, 2)(h, h), reverse=True))


def test_keras_files_load():
    """A Keras file with GroupQueryAttention (and ReversibleEmbedding) loads: the configs name
    Keras's exported class, the weights sit under Keras's paths (the class name's snake case,
    the private _query_dense / ... attributes)."""
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    import tempfile
    ids = np.array([[1, 2, 3], [4, 0, 1]])
    theirs = _gqa_model(keras)
    path = tempfile.mkdtemp() + "/gqa.keras"
    theirs.save(path)
    ours = lamina.models.load_model(path)
    np.testing.assert_allclose(ours.predict(ids, verbose=0), theirs.predict(ids, verbose=0), rtol=1e-5, atol=1e-6)


def test_lamina_files_load_in_keras(tmp_path):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    ids = np.array([[1, 2, 3], [4, 0, 1]])
    ours = _gqa_model(lamina)
    path = str(tmp_path / "gqa.keras")
    ours.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(ids, verbose=0), ours.predict(ids, verbose=0),
                               rtol=1e-5, atol=1e-6)
