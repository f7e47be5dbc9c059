"""String inputs inside models: lamina.Input(..., dtype="string") followed by TextVectorization,
StringLookup or Hashing (layers/preprocessing_text.py, layers/input_layer.py, models/)."""
import numpy as np
import pytest

import lamina
from lamina import layers

from keras_ref import keras_or_none

TEXTS = np.array(["the cat sat on the mat", "a dog ran far away", "the dog sat", "cats and dogs play",
                  "a cat ran", "The Cat, the DOG!", "nothing here", "mat sat cat"])
Y = np.array([1, 0, 1, 0, 1, 1, 0, 1], np.float32).reshape(-1, 1)


def _text_model(shape=()):
    tv = layers.TextVectorization(max_tokens=30, output_sequence_length=6)
    tv.adapt(TEXTS)
    inp = lamina.Input(shape=shape, dtype="string")
    ids = tv(inp)
    x = layers.Embedding(30, 8)(ids)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(1, activation="sigmoid")(x)
    return lamina.Model(inp, out), tv, ids


def _numeric_twin(model):
    """The layers of `_text_model` after TextVectorization, fed the ids computed outside: the oracle."""
    emb, pool, dense = model.layers[2:]
    return lambda ids: dense(pool(emb(ids))).numpy()


def test_input_string_dtype():
    inp = lamina.Input(shape=(), dtype="string")
    assert inp.dtype == "string" and inp.shape == (None,)
    assert lamina.Input(shape=(1,), dtype=str).dtype == "string"
    ids = layers.TextVectorization(vocabulary=["a"], output_sequence_length=4)(inp)
    assert (ids.shape, ids.dtype) == ((None, 4), "int64")
    assert layers.Hashing(5)(inp).dtype == "int64"
    enc = layers.StringLookup(vocabulary=["a", "b"], output_mode="one_hot")(lamina.Input(shape=(1,), dtype="string"))
    assert (enc.shape, enc.dtype) == ((None, 3), "float32")
    # tensors never hold strings: the dtype is for symbolic inputs only
    with pytest.raises(TypeError, match="Unsupported dtype 'string'"):
        lamina.ops.zeros((2,), dtype="string")


@pytest.mark.parametrize("shape", [(), (1,)])
def test_text_vectorization_in_model(shape, tmp_path):
    model, tv, _ = _text_model(shape)
    x = TEXTS if shape == () else TEXTS.reshape(-1, 1)
    # the model's output is the numeric model's output on the ids computed outside
    want = _numeric_twin(model)(tv(x))
    np.testing.assert_allclose(model.predict(x, batch_size=3, verbose=0), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(x).numpy(), want, rtol=1e-5, atol=1e-6)

    model.compile(optimizer=lamina.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    first = model.evaluate(x, Y, verbose=0)
    hist = model.fit(x, Y, epochs=15, batch_size=4, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert model.evaluate(x, Y, batch_size=3, verbose=0)[0] < first[0]
    loss, acc = model.train_on_batch(x[:4], Y[:4])
    assert np.isfinite(loss) and 0 <= acc <= 1
    assert np.isfinite(model.test_on_batch(x, Y)[0])

    path = str(tmp_path / "text.keras")
    model.save(path)
    loaded = lamina.models.load_model(path)
    assert loaded.inputs[0].dtype == "string"
    loaded_tv = [l for l in loaded.layers if isinstance(l, layers.TextVectorization)][0]
    assert loaded_tv.get_vocabulary() == tv.get_vocabulary()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-7)


def test_lists_of_strings():
    model, tv, _ = _text_model()
    texts = ["the cat", "a dog ran", "unknown words"]
    want = _numeric_twin(model)(tv(np.array(texts)))
    np.testing.assert_allclose(model.predict(texts, verbose=0), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(texts), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(texts).numpy(), want, rtol=1e-5, atol=1e-6)
    # bytes as well as str
    np.testing.assert_allclose(model.predict(np.array([t.encode() for t in texts]), verbose=0), want, rtol=1e-5,
                               atol=1e-6)


def test_string_lookup_in_model(tmp_path):
    vocab = ["red", "green", "blue"]
    inp = lamina.Input(shape=(1,), dtype="string")
    lookup = layers.StringLookup(vocabulary=vocab)
    ids = lookup(inp)
    x = layers.Embedding(4, 3)(ids)
    x = layers.Flatten()(x)
    out = layers.Dense(2, activation="softmax")(x)
    model = lamina.Model(inp, out)
    colours = np.array(["red", "blue", "pink", "green", "red", "blue"]).reshape(-1, 1)
    labels = np.array([0, 1, 1, 0, 0, 1])
    want_ids = np.array([[1], [3], [0], [2], [1], [3]])
    np.testing.assert_array_equal(lookup(colours).numpy(), want_ids)
    emb, flat, dense = model.layers[2:]
    np.testing.assert_allclose(model.predict(colours, verbose=0), dense(flat(emb(want_ids))).numpy(), rtol=1e-6)

    model.compile(optimizer=lamina.optimizers.Adam(0.1), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(colours, labels, epochs=30, batch_size=3, verbose=0)
    assert model.evaluate(colours, labels, verbose=0)[1] == 1.0
    assert np.isfinite(model.train_on_batch(colours, labels)[0])

    path = str(tmp_path / "lookup.keras")
    model.save(path)
    loaded = lamina.models.load_model(path)
    assert [l for l in loaded.layers if isinstance(l, layers.StringLookup)][0].get_vocabulary() == \
        lookup.get_vocabulary()
    np.testing.assert_allclose(loaded.predict(colours, verbose=0), model.predict(colours, verbose=0), rtol=1e-6)

    # a multi_hot encoding straight into Dense
    inp = lamina.Input(shape=(2,), dtype="string")
    enc = layers.StringLookup(vocabulary=vocab, output_mode="multi_hot")(inp)
    dense = layers.Dense(1, use_bias=False)
    m2 = lamina.Model(inp, dense(enc))
    got = m2.predict(np.array([["red", "blue"], ["pink", "pink"]]), verbose=0)
    k = dense.kernel.numpy()[:, 0]
    np.testing.assert_allclose(got[:, 0], [k[1] + k[3], k[0]], rtol=1e-6)


def test_string_lookup_invert_gives_strings():
    inp = lamina.Input(shape=(2,), dtype="int64")
    out = layers.StringLookup(vocabulary=["a", "b"], invert=True)(inp)
    assert (out.dtype, out.shape) == ("string", (None, 2))
    model = lamina.Model(inp, out)
    np.testing.assert_array_equal(model.predict(np.array([[1, 2], [0, 2]]), verbose=0),
                                  [["a", "b"], ["[UNK]", "b"]])
    with pytest.raises(TypeError, match=r"Dense '.*': received the string input"):
        layers.Dense(2)(out)


def test_hashing_in_model(tmp_path):
    inp = lamina.Input(shape=(1,), dtype="string")
    hashing = layers.Hashing(num_bins=16, salt=[7, 11])
    x = layers.Embedding(16, 4)(hashing(inp))
    x = layers.Flatten()(x)
    out = layers.Dense(1)(x)
    model = lamina.Model(inp, out)
    words = np.array(["alpha", "beta", "gamma", "delta", "alpha"]).reshape(-1, 1)
    ids = layers.Hashing(num_bins=16, salt=[7, 11])(words).numpy()
    emb, flat, dense = model.layers[2:]
    want = dense(flat(emb(ids))).numpy()
    np.testing.assert_allclose(model.predict(words, verbose=0), want, rtol=1e-6)
    np.testing.assert_allclose(model.predict(words, verbose=0)[0], model.predict(words, verbose=0)[4])

    model.compile(optimizer="sgd", loss="mse")
    y = np.arange(5, dtype=np.float32).reshape(-1, 1)
    h = model.fit(words, y, epochs=5, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    path = str(tmp_path / "hash.keras")
    model.save(path)
    loaded = lamina.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(words, verbose=0), model.predict(words, verbose=0), rtol=1e-6)


def test_sequential_with_strings():
    tv = layers.TextVectorization(max_tokens=30, output_sequence_length=5)
    tv.adapt(TEXTS)
    seq = lamina.Sequential([lamina.Input(shape=(), dtype="string"), tv, layers.Embedding(30, 4),
                             layers.GlobalAveragePooling1D(), layers.Dense(1)])
    seq.compile(optimizer="adam", loss="mse")
    seq.fit(TEXTS, Y, epochs=1, verbose=0)
    assert seq.predict(TEXTS, verbose=0).shape == (len(TEXTS), 1)
    # without an Input: built on its first call, from the strings it receives
    seq2 = lamina.Sequential([layers.StringLookup(vocabulary=["a", "b"]), layers.Embedding(3, 2)])
    out = seq2.predict(np.array(["a", "b", "z"]), verbose=0)
    assert out.shape == (3, 2) and seq2.inputs[0].dtype == "string"
    np.testing.assert_allclose(out[2], seq2.layers[1].embeddings.numpy()[0])


def test_errors():
    s = lamina.Input(shape=(), dtype="string")
    with pytest.raises(TypeError, match=r"Dense 'my_dense': received the string input .* takes numbers .* "
                                        r"TextVectorization, StringLookup or Hashing"):
        layers.Dense(3, name="my_dense")(s)
    with pytest.raises(TypeError, match=r"Dense 'dense_eager': received strings \(array of dtype <U1 and shape "
                                        r"\(2,\)\), but this layer takes numbers"):
        layers.Dense(3, name="dense_eager")(np.array(["a", "b"]))
    with pytest.raises(TypeError, match=r"IntegerLookup '.*': received the string input"):
        layers.IntegerLookup(vocabulary=[1, 2])(s)
    with pytest.raises(TypeError, match="invert=True maps integer indices back to strings; received the string"):
        layers.StringLookup(vocabulary=["a"], invert=True)(s)
    with pytest.raises(ValueError, match=r"expected strings of shape \(batch,\) or \(batch, 1\), received shape "
                                         r"\(None, 2\)"):
        layers.TextVectorization(vocabulary=["a"])(lamina.Input(shape=(2,), dtype="string"))
    with pytest.raises(TypeError, match=r"Unsupported dtype 'text'"):
        lamina.Input(shape=(), dtype="text")

    model, _, _ = _text_model()
    with pytest.raises(TypeError, match=r"Input 'input_layer.*' of model .* takes strings \(dtype 'string'\), "
                                        r"received .*int64"):
        model.predict(np.array([1, 2]), verbose=0)
    with pytest.raises(ValueError, match=r"expected shape \(None,\), received \(2, 1\)"):
        model.predict(np.array([["a"], ["b"]]), verbose=0)
    inp = lamina.Input(shape=(3,))
    numeric = lamina.Model(inp, layers.Dense(1)(inp))
    with pytest.raises(TypeError, match=r"Input '.*' of model .* takes float32 numbers, received strings.*"
                                        r"dtype='string'"):
        numeric.predict(np.array([["a", "b", "c"]]), verbose=0)
    seq = lamina.Sequential([lamina.Input(shape=(3,)), layers.Dense(1)], name="numbers_only")
    with pytest.raises(TypeError, match=r"Sequential 'numbers_only': received strings .* takes numbers"):
        seq.predict(np.array([["a", "b", "c"]]), verbose=0)


def test_keras_parity():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras is not installed")
    try:
        ktv = keras.layers.TextVectorization(max_tokens=30, output_sequence_length=6)
    except ImportError as e:   # Keras 3's text layers need TensorFlow, whatever the backend
        pytest.skip(f"Keras cannot run TextVectorization here: {e}")
    model, tv, _ = _text_model()
    ktv.set_vocabulary(tv.get_vocabulary()[2:])
    kin = keras.Input(shape=(), dtype="string")
    kx = keras.layers.Embedding(30, 8)(ktv(kin))
    kx = keras.layers.GlobalAveragePooling1D()(kx)
    kmodel = keras.Model(kin, keras.layers.Dense(1, activation="sigmoid")(kx))
    kmodel.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(TEXTS, verbose=0), kmodel.predict(TEXTS, verbose=0), rtol=1e-5,
                               atol=1e-6)


def test_a_keras_file_with_an_adapted_vocabulary_in_its_assets_loads(tmp_path):
    """Keras writes an adapted TextVectorization's vocabulary into the '.keras' archive's assets
    (assets/<layer path>/vocabulary.txt, the special tokens first), not its config: a file laid out
    that way (made here from lamina's own, the vocabulary moved from the config to the asset)
    loads with the vocabulary."""
    import json
    import zipfile
    texts = np.array(["the cat sat", "the dog ran", "a cat ran"])
    tv = layers.TextVectorization(max_tokens=20, output_sequence_length=4)
    tv.adapt(texts)
    inputs = lamina.Input(shape=(), dtype="string")
    model = lamina.Model(inputs, tv(inputs))
    want = model.predict(texts, verbose=0)
    src = tmp_path / "lamina.keras"
    model.save(src)
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    config = json.loads(members["config.json"])
    layer_cfg = next(l for l in config["config"]["layers"] if l["class_name"] == "TextVectorization")
    vocab = tv.get_vocabulary(include_special_tokens=True)
    layer_cfg["config"]["vocabulary"] = None
    layer_cfg["config"].pop("has_input_vocabulary", None)
    members["config.json"] = json.dumps(config).encode()
    path = "assets/layers/text_vectorization/vocabulary.txt"
    members[path] = "\n".join(vocab).encode()
    keras_like = tmp_path / "keras_like.keras"
    with zipfile.ZipFile(keras_like, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    loaded = lamina.models.load_model(keras_like)
    np.testing.assert_array_equal(loaded.predict(texts, verbose=0), want)
    del members[path]                      # without the asset: the layer has no vocabulary, and says so
    with zipfile.ZipFile(tmp_path / "no_asset.keras", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(Exception, match="vocabulary"):
        lamina.models.load_model(tmp_path / "no_asset.keras").predict(texts, verbose=0)
