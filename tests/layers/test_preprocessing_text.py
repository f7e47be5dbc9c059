"""Tests for layers/preprocessing_text.py: Hashing (and its FarmHash / SipHash), StringLookup,
IntegerLookup, TextVectorization.

Keras's own versions of these layers need TensorFlow (not installed here), so their parity
tests skip unless it is; the expected values below come from Keras's documentation and its
test suite (hashing_test.py, index_lookup_test.py), which ran them on TensorFlow."""
import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.layers.preprocessing_text import fingerprint64, siphash24
from keras_ref import keras_or_none


def _keras_layer(name, **kwargs):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    try:
        return getattr(keras.layers, name)(**kwargs)
    except ImportError as e:
        pytest.skip(f"Keras's {name} needs TensorFlow, which is not installed ({e})")


# ---- the hashes ---------------------------------------------------------------------------------

# FarmHash Fingerprint64 test vectors (one per length branch: 0, 1-3, 4-7, 8-16, 17-32, 33-64, >64)
FINGERPRINTS = [
    (b"", 0x9ae16a3b2f90404f), (b"a", 0xb3454265b6df75e3), (b"abc", 0x24a5b3a074e7f369),
    (b"abcde", 0xc22f4663e54e04d4), (b"abcdefghi", 0x332c8ed4dae5ba42), (b"0123456789", 0xad052244b781c4eb),
    (b"0123456789=012345", 0x46a7416ed4861e3b), (b"0123456789$0123456789!0", 0xd78d5f852d522e6a),
    (b"C is as portable as Stonehedge!!", 0xb944f8a16261e414),
    (b"How can you write a big system without C++?  -Paul Glick", 0x5a0a6efd52e84e2a),
    (b"Give me a rock, paper and scissors and I will move the world.  CCFestoon", 0xa2b8bf3032021993),
    (b"The fugacity of a constituent in a mixture of gases at a given temperature is proportional to its mole "
     b"fraction.  Lewis-Randall Rule", 0x098eff6958c5e91a),
]


@pytest.mark.parametrize("data,expected", FINGERPRINTS)
def test_fingerprint64_vectors(data, expected):
    assert fingerprint64(data) == expected


def test_siphash24_vectors():
    k0, k1 = 0x0706050403020100, 0x0f0e0d0c0b0a0908      # the reference key 00 01 .. 0f
    assert siphash24(k0, k1, b"") == 0x726fdb47dd0e0e31
    assert siphash24(k0, k1, bytes(range(8))) == 0x93f5f5799a932462
    assert siphash24(k0, k1, bytes(range(15))) == 0xa129ca6149be45e5


# ---- Hashing --------------------------------------------------------------------------------------

def test_hashing_matches_keras_test_suite():
    abcde = np.array([["A"], ["B"], ["C"], ["D"], ["E"]])
    wire = np.array([["omar"], ["stringer"], ["marlo"], ["wire"], ["skywalker"]])
    out = layers.Hashing(num_bins=3)(abcde)
    assert out.dtype == "int64" and out.shape == (5, 1)
    np.testing.assert_array_equal(out.numpy(), [[1], [0], [1], [1], [2]])
    masked = layers.Hashing(3, mask_value="")(np.array([["A"], ["B"], [""], ["C"], ["D"]]))
    np.testing.assert_array_equal(masked.numpy(), [[1], [1], [0], [2], [2]])
    np.testing.assert_array_equal(layers.Hashing(3, salt=[133, 137])(abcde).numpy(), [[1], [2], [1], [0], [2]])
    np.testing.assert_array_equal(layers.Hashing(3, salt=133)(abcde).numpy(), [[0], [0], [2], [1], [0]])
    np.testing.assert_array_equal(layers.Hashing(2)(wire).numpy(), [[0], [0], [1], [0], [0]])
    np.testing.assert_array_equal(layers.Hashing(2)(["omar", "stringer", "marlo", "wire", "skywalker"]).numpy(),
                                  [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(layers.Hashing(3, mask_value="")(wire).numpy(), [[1], [1], [2], [1], [1]])
    np.testing.assert_array_equal(layers.Hashing(3, mask_value="omar")(wire).numpy(), [[0], [1], [2], [1], [1]])
    np.testing.assert_array_equal(layers.Hashing(2, salt=[133, 137])(wire).numpy(), [[0], [1], [0], [1], [0]])
    np.testing.assert_array_equal(layers.Hashing(2, salt=[211, 137])(wire).numpy(), [[1], [0], [1], [0], [1]])
    ints = np.array([[0], [1], [2], [3], [4]])
    np.testing.assert_array_equal(layers.Hashing(3)(ints).numpy(), [[1], [0], [1], [0], [2]])
    np.testing.assert_array_equal(layers.Hashing(3, salt=[133, 137])(ints).numpy(), [[1], [1], [2], [0], [1]])
    np.testing.assert_array_equal(layers.Hashing(1)(abcde).numpy(), np.zeros((5, 1)))
    # the bins are Fingerprint64 of the UTF-8 bytes (ints: of their decimal string) mod num_bins
    words = np.array(["héllo", "x", "a longer string that takes the 33 to 64 bytes path"])
    np.testing.assert_array_equal(layers.Hashing(1000)(words).numpy(),
                                  [fingerprint64(w.encode("utf-8")) % 1000 for w in words])
    np.testing.assert_array_equal(layers.Hashing(97)(np.array([-5, 123456789])).numpy(),
                                  [fingerprint64(b"-5") % 97, fingerprint64(b"123456789") % 97])
    # floats hash as their truncated integer; bytes as their UTF-8 text
    np.testing.assert_array_equal(layers.Hashing(97)(np.array([2.7, -5.2])).numpy(),
                                  layers.Hashing(97)(np.array([2, -5])).numpy())
    np.testing.assert_array_equal(layers.Hashing(97)(np.array([b"ab", b"c"])).numpy(),
                                  layers.Hashing(97)(np.array(["ab", "c"])).numpy())


def test_hashing_output_modes_dtype_and_model():
    data = np.array([["A", "B"], ["C", "A"]])
    ids = layers.Hashing(5)(data).numpy()
    np.testing.assert_array_equal(layers.Hashing(5, output_mode="one_hot")(data[:, :1]).numpy(), np.eye(5)[ids[:, 0]])
    counts = np.stack([np.bincount(r, minlength=5) for r in ids]).astype(np.float32)
    np.testing.assert_array_equal(layers.Hashing(5, output_mode="count")(data).numpy(), counts)
    np.testing.assert_array_equal(layers.Hashing(5, output_mode="multi_hot")(data).numpy(), counts > 0)
    assert layers.Hashing(5, dtype="int32")(data).dtype == "int32"
    assert layers.Hashing(5, output_mode="count")(data).dtype == "float32"
    # int inputs work symbolically, in a model
    inp = lamina.Input((2,), dtype="int64")
    out = layers.Hashing(7, output_mode="count")(inp)
    assert out.shape == (None, 7) and out.dtype == "float32"
    x = np.array([[3, 4], [4, 4]])
    expected = layers.Hashing(7, output_mode="count")(x).numpy()
    np.testing.assert_array_equal(lamina.Model(inp, out).predict(x, verbose=0), expected)
    sym = layers.Hashing(7)(lamina.Input((2,), dtype="int32"))
    assert sym.dtype == "int64" and sym.shape == (None, 2)
    config = layers.Hashing(7, salt=3, mask_value="m", output_mode="multi_hot").get_config()
    assert config["salt"] == [3, 3] and config["dtype"]["config"]["name"] == "float32"
    assert layers.Hashing.from_config(config).get_config() == config


def test_hashing_errors():
    with pytest.raises(ValueError, match="`num_bins` must be a positive integer"):
        layers.Hashing(0)
    with pytest.raises(ValueError, match="`num_bins` must be a positive integer"):
        layers.Hashing(None)
    with pytest.raises(ValueError, match="`salt` must be an integer or a pair"):
        layers.Hashing(3, salt="string")
    with pytest.raises(ValueError, match="`salt` must be an integer or a pair"):
        layers.Hashing(3, salt=[1, 2, 3])
    with pytest.raises(ValueError, match="`output_mode` must be one of"):
        layers.Hashing(3, output_mode="tf_idf")
    with pytest.raises(ValueError, match="`dtype` must be 'int32' or 'int64'"):
        layers.Hashing(3, dtype="float32")
    with pytest.raises(ValueError, match="sparse=True is not supported"):
        layers.Hashing(3, output_mode="count", sparse=True)
    with pytest.raises(TypeError, match="boolean inputs are not supported"):
        layers.Hashing(3)(np.array([True, False]))


def test_hashing_keras_parity():
    theirs = _keras_layer("Hashing", num_bins=13, salt=[5, 7])
    x = np.array([["a"], ["bb"], ["ccc"]])
    np.testing.assert_array_equal(layers.Hashing(13, salt=[5, 7])(x).numpy(), np.asarray(theirs(x)))


# ---- StringLookup -----------------------------------------------------------------------------------

VOCAB = ["a", "b", "c", "d"]


def test_string_lookup_keras_documented_outputs():
    data = [["a", "c", "d"], ["d", "z", "b"]]
    layer = layers.StringLookup(vocabulary=VOCAB)
    out = layer(data)
    assert out.dtype == "int64"
    np.testing.assert_array_equal(out.numpy(), [[1, 3, 4], [4, 0, 2]])
    assert layer.get_vocabulary() == ["[UNK]", "a", "b", "c", "d"] and layer.vocabulary_size() == 5
    # two OOV buckets: "m" and "z" hash to buckets 0 and 1
    two = layers.StringLookup(vocabulary=VOCAB, num_oov_indices=2)
    np.testing.assert_array_equal(two([["a", "c", "d"], ["m", "z", "b"]]).numpy(), [[2, 4, 5], [0, 1, 3]])
    np.testing.assert_array_equal(layers.StringLookup(vocabulary=VOCAB, output_mode="one_hot")(
        np.array(["a", "b", "c", "d", "z"])).numpy(), np.eye(5)[[1, 2, 3, 4, 0]])
    four = [["a", "c", "d", "d"], ["d", "z", "b", "z"]]
    np.testing.assert_array_equal(layers.StringLookup(vocabulary=VOCAB, output_mode="multi_hot")(four).numpy(),
                                  [[0, 1, 0, 1, 1], [1, 0, 1, 0, 1]])
    np.testing.assert_array_equal(layers.StringLookup(vocabulary=VOCAB, output_mode="count")(four).numpy(),
                                  [[0, 1, 0, 1, 2], [2, 0, 1, 0, 1]])
    idf = layers.StringLookup(vocabulary=VOCAB, output_mode="tf_idf", idf_weights=[0.25, 0.75, 0.6, 0.4])
    np.testing.assert_allclose(idf(four).numpy(), [[0, 0.25, 0, 0.6, 0.8], [1.0, 0, 0.75, 0, 0.4]], rtol=1e-6)
    idf = layers.StringLookup(vocabulary=["[UNK]"] + VOCAB, output_mode="tf_idf",
                              idf_weights=[0.9, 0.25, 0.75, 0.6, 0.4])
    np.testing.assert_allclose(idf(four).numpy(), [[0, 0.25, 0, 0.6, 0.8], [1.8, 0, 0.75, 0, 0.4]], rtol=1e-6)
    inv = layers.StringLookup(vocabulary=VOCAB, invert=True)(np.array([[1, 3, 4], [4, 0, 2]]))
    assert isinstance(inv, np.ndarray)
    np.testing.assert_array_equal(inv, [["a", "c", "d"], ["d", "[UNK]", "b"]])
    # a mask token takes index 0 (output_mode "int") and maps back from it
    masked = layers.StringLookup(vocabulary=VOCAB, mask_token="[MASK]")
    np.testing.assert_array_equal(masked([["a", "[MASK]", "z"]]).numpy(), [[2, 0, 1]])
    assert masked.get_vocabulary() == ["[MASK]", "[UNK]", "a", "b", "c", "d"]
    np.testing.assert_array_equal(layers.StringLookup(vocabulary=VOCAB, mask_token="[MASK]", invert=True)(
        np.array([0, 1, 2, 9])), ["[MASK]", "[UNK]", "a", "[UNK]"])
    # outside "int", the mask token has no index and encodes to zeros
    counted = layers.StringLookup(vocabulary=VOCAB, mask_token="", output_mode="count")([["a", "", "", "z"]])
    np.testing.assert_array_equal(counted.numpy(), [[1, 1, 0, 0, 0]])
    # bytes inputs decode with `encoding`; a vocabulary may start with its special tokens
    np.testing.assert_array_equal(layers.StringLookup(vocabulary=["[UNK]"] + VOCAB)(np.array([b"b", b"q"])).numpy(),
                                  [2, 0])


def test_string_lookup_adapt_order_and_limits():
    layer = layers.StringLookup()
    layer.adapt([["a", "c", "d"], ["d", "z", "b"]])
    # most frequent first; ties by token, larger first (Keras's lexsort order)
    assert layer.get_vocabulary() == ["[UNK]", "d", "z", "c", "b", "a"]
    assert layer.get_vocabulary(include_special_tokens=False) == ["d", "z", "c", "b", "a"]
    capped = layers.StringLookup(max_tokens=3, mask_token="")
    capped.adapt(np.array(["x", "y", "y", "z", "z", "z", "", ""]))   # the mask token is not learnt
    assert capped.get_vocabulary() == ["", "[UNK]", "z"]
    np.testing.assert_array_equal(capped(np.array(["z", "y", ""])).numpy(), [2, 1, 0])
    padded = layers.StringLookup(max_tokens=10, pad_to_max_tokens=True, output_mode="multi_hot")
    padded.adapt(np.array(["x", "y"]))
    assert padded(np.array([["x"]])).shape == (1, 10)
    # batches, at most `steps` of them
    gen = layers.StringLookup()
    gen.adapt((np.array(b) for b in [["p", "q"], ["q"], ["r", "r", "r"]]), steps=2)
    assert gen.get_vocabulary() == ["[UNK]", "q", "p"]
    # tf_idf learns the inverse document frequencies: log(1 + docs / (1 + docs with the token))
    tfidf = layers.StringLookup(output_mode="tf_idf")
    tfidf.adapt(np.array([["a", "b"], ["a", "c"]]))
    assert tfidf.get_vocabulary() == ["[UNK]", "a", "c", "b"]
    w = np.log(1 + 2 / (1 + np.array([2.0, 1.0, 1.0])))
    out = tfidf(np.array([["a", "a", "b", "zz"]])).numpy()
    np.testing.assert_allclose(out, [[w.mean(), 2 * w[0], 0, w[2]]], rtol=1e-6)


def test_string_lookup_config_round_trip_keeps_the_vocabulary(tmp_path):
    layer = layers.StringLookup(num_oov_indices=2, mask_token="<m>")
    layer.adapt(np.array(["b", "a", "a", "c", "c", "c"]))
    config = layer.get_config()
    assert config["vocabulary"] == ["c", "a", "b"] and config["vocabulary_size"] == 6
    assert set(config) >= {"invert", "max_tokens", "num_oov_indices", "oov_token", "mask_token", "output_mode",
                           "sparse", "pad_to_max_tokens", "idf_weights", "vocabulary", "vocabulary_size",
                           "oov_method", "salt", "encoding"}
    clone = layers.StringLookup.from_config(config)
    x = np.array([["a", "zz", "<m>", "c", "qq"]])
    np.testing.assert_array_equal(clone(x).numpy(), layer(x).numpy())
    clone = lamina.layers.deserialize(lamina.layers.serialize(layer))
    np.testing.assert_array_equal(clone(x).numpy(), layer(x).numpy())
    tfidf = layers.StringLookup(output_mode="tf_idf", pad_to_max_tokens=True, max_tokens=6)
    tfidf.adapt(np.array([["a", "b"], ["a", "c"], ["d", "a"]]))
    clone = layers.StringLookup.from_config(tfidf.get_config())
    y = np.array([["a", "d", "zz", "c"]])
    np.testing.assert_allclose(clone(y).numpy(), tfidf(y).numpy(), rtol=1e-6)
    # a vocabulary file, one token per line
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb\nc\nd\n\n", encoding="utf-8")
    np.testing.assert_array_equal(layers.StringLookup(vocabulary=str(path))(np.array(["d", "x"])).numpy(), [4, 0])


def test_string_lookup_errors():
    with pytest.raises(ValueError, match="repeats"):
        layers.StringLookup(vocabulary=["a", "b", "a"])
    with pytest.raises(ValueError, match="mask token '' is in the vocabulary at index 1"):
        layers.StringLookup(vocabulary=["a", ""], mask_token="")
    with pytest.raises(ValueError, match="OOV token"):
        layers.StringLookup(vocabulary=["a", "[UNK]"], invert=True)
    with pytest.raises(ValueError, match="cannot set an empty vocabulary"):
        layers.StringLookup(vocabulary=[])
    with pytest.raises(ValueError, match="more than max_tokens=3"):
        layers.StringLookup(vocabulary=["a", "b", "c"], max_tokens=3)
    with pytest.raises(ValueError, match="`max_tokens` must be an integer >= 2"):
        layers.StringLookup(max_tokens=1)
    with pytest.raises(ValueError, match="pad_to_max_tokens=True needs `max_tokens`"):
        layers.StringLookup(pad_to_max_tokens=True)
    with pytest.raises(ValueError, match="invert=True needs output_mode='int'"):
        layers.StringLookup(invert=True, output_mode="count")
    with pytest.raises(ValueError, match="sparse=True is not supported"):
        layers.StringLookup(output_mode="count", sparse=True)
    with pytest.raises(ValueError, match="`output_mode` must be one of"):
        layers.StringLookup(output_mode="embedding")
    with pytest.raises(ValueError, match="`idf_weights` only apply with output_mode='tf_idf'"):
        layers.StringLookup(vocabulary=VOCAB, idf_weights=[1, 1, 1, 1])
    with pytest.raises(ValueError, match="needs its `idf_weights` too"):
        layers.StringLookup(vocabulary=VOCAB, output_mode="tf_idf")
    with pytest.raises(ValueError, match="one weight per vocabulary entry"):
        layers.StringLookup(vocabulary=VOCAB, output_mode="tf_idf", idf_weights=[1.0])
    with pytest.raises(ValueError, match="vocabulary file 'no/such/file.txt' does not exist"):
        layers.StringLookup(vocabulary="no/such/file.txt")
    with pytest.raises(ValueError, match="has no vocabulary"):
        layers.StringLookup()(np.array(["a"]))
    with pytest.raises(ValueError, match=r"num_oov_indices=0 .* found out-of-vocabulary values \['zz'\]"):
        layers.StringLookup(vocabulary=VOCAB, num_oov_indices=0)(np.array(["a", "zz"]))
    with pytest.raises(TypeError, match="expected strings .* For integer inputs use IntegerLookup"):
        layers.StringLookup(vocabulary=VOCAB)(np.array([1, 2]))
    with pytest.raises(TypeError, match=r"expected a string input .* dtype int64; for integer inputs use IntegerLookup"):
        layers.StringLookup(vocabulary=VOCAB)(lamina.Input((1,), dtype="int64"))
    with pytest.raises(TypeError, match="invert=True maps integer indices back to strings"):
        layers.StringLookup(vocabulary=VOCAB, invert=True)(np.array(["a"]))
    with pytest.raises(ValueError, match="adapt\\(\\) only applies to a layer created without one"):
        layers.StringLookup(vocabulary=VOCAB).adapt(np.array(["a"]))
    with pytest.raises(TypeError, match="expected strings"):
        layers.StringLookup().adapt(np.array([1, 2]))


def test_string_lookup_keras_parity():
    theirs = _keras_layer("StringLookup", vocabulary=VOCAB, num_oov_indices=3, mask_token="")
    x = np.array([["a", "", "zz", "yy", "d"]])
    ours = layers.StringLookup(vocabulary=VOCAB, num_oov_indices=3, mask_token="")
    np.testing.assert_array_equal(ours(x).numpy(), np.asarray(theirs(x)))


# ---- IntegerLookup ----------------------------------------------------------------------------------

IVOCAB = [12, 36, 1138, 42]


def test_integer_lookup_keras_documented_outputs():
    data = np.array([[12, 1138, 42], [42, 1000, 36]])
    layer = layers.IntegerLookup(vocabulary=IVOCAB)
    out = layer(data)
    assert out.dtype == "int64"
    np.testing.assert_array_equal(out.numpy(), [[1, 3, 4], [4, 0, 2]])
    assert layer.get_vocabulary() == [-1, 12, 36, 1138, 42]
    adapted = layers.IntegerLookup()
    adapted.adapt(data)
    assert adapted.get_vocabulary() == [-1, 42, 1138, 1000, 36, 12]
    # two OOV indices: value % 2 (oov_method="floormod")
    two = layers.IntegerLookup(vocabulary=IVOCAB, num_oov_indices=2)
    np.testing.assert_array_equal(two(np.array([[12, 1138, 42], [37, 1000, 36]])).numpy(), [[2, 4, 5], [1, 0, 3]])
    # oov_method="farmhash": a hash of the decimal string
    farm = layers.IntegerLookup(vocabulary=IVOCAB, num_oov_indices=5, oov_method="farmhash")
    np.testing.assert_array_equal(farm(np.array([37, 12])).numpy(), [fingerprint64(b"37") % 5, 5])
    salted = layers.IntegerLookup(vocabulary=IVOCAB, num_oov_indices=5, oov_method="farmhash", salt=[1, 2])
    np.testing.assert_array_equal(salted(np.array([37])).numpy(), [siphash24(1, 2, b"37") % 5])
    masked = layers.IntegerLookup(vocabulary=IVOCAB, mask_token=0)
    np.testing.assert_array_equal(masked(np.array([[12, 0, 7]])).numpy(), [[2, 0, 1]])
    inv = layers.IntegerLookup(vocabulary=IVOCAB, invert=True)(np.array([[1, 3, 4], [4, 0, 2]]))
    assert inv.dtype == "int64"
    np.testing.assert_array_equal(inv.numpy(), [[12, 1138, 42], [42, -1, 36]])
    np.testing.assert_array_equal(layers.IntegerLookup(vocabulary=IVOCAB, output_mode="multi_hot")(data).numpy(),
                                  [[0, 1, 0, 1, 1], [1, 0, 1, 0, 1]])
    # Keras's index_lookup_test: adapt with a mask token and max_tokens
    capped = layers.IntegerLookup(max_tokens=4, num_oov_indices=1, mask_token=0, oov_token=-1)
    capped.adapt([1, 1, 1, 2, 2, 3])
    assert capped.get_vocabulary() == [0, -1, 1, 2]
    np.testing.assert_array_equal(capped(np.array([1, 2, 3, 4])).numpy(), [2, 3, 1, 1])


def test_integer_lookup_in_a_model_fit_and_save(tmp_path):
    rng = np.random.default_rng(2)
    ids = rng.choice([3, 17, 256, 1000, 5], size=(64, 4)).astype(np.int64)
    y = (ids == 17).any(axis=1).astype(np.float32)[:, None]
    lookup = layers.IntegerLookup(output_mode="multi_hot")
    lookup.adapt(ids)
    inp = lamina.Input((4,), dtype="int64")
    hot = lookup(inp)
    assert hot.shape == (None, 6) and hot.dtype == "float32"
    out = layers.Dense(1, activation="sigmoid")(hot)
    model = lamina.Model(inp, out)
    model.compile(optimizer=lamina.optimizers.SGD(learning_rate=0.5), loss="binary_crossentropy")
    first = model.evaluate(ids, y, verbose=0)
    model.fit(ids, y, epochs=15, batch_size=16, verbose=0)
    assert model.evaluate(ids, y, verbose=0) < 0.5 * first
    path = str(tmp_path / "lookup.keras")
    model.save(path)
    loaded = lamina.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(ids, verbose=0), model.predict(ids, verbose=0), rtol=1e-6)
    # a changed vocabulary may not change the size a model already uses
    with pytest.raises(ValueError, match="a model already uses this layer's output of size 6"):
        lookup.set_vocabulary([1, 2])


def test_integer_lookup_errors():
    with pytest.raises(TypeError, match="expected integer inputs, received dtype float32"):
        layers.IntegerLookup(vocabulary=IVOCAB)(np.array([1.0, 2.0], np.float32))
    with pytest.raises(ValueError, match="only vocabulary_dtype='int64'"):
        layers.IntegerLookup(vocabulary_dtype="int32")
    with pytest.raises(ValueError, match="`salt` only applies with oov_method='farmhash'"):
        layers.IntegerLookup(salt=3)
    with pytest.raises(ValueError, match="`oov_method` must be 'floormod' or 'farmhash'"):
        layers.IntegerLookup(oov_method="md5")
    with pytest.raises(ValueError, match="the vocabulary must hold integers"):
        layers.IntegerLookup(vocabulary=["a"])
    with pytest.raises(ValueError, match="`mask_token` must be an integer"):
        layers.IntegerLookup(mask_token="0")
    with pytest.raises(ValueError, match="`num_oov_indices` must be an integer >= 0"):
        layers.IntegerLookup(num_oov_indices=-1)
    with pytest.raises(ValueError, match="has no vocabulary"):
        layers.IntegerLookup(output_mode="count")(lamina.Input((2,), dtype="int64"))


def test_integer_lookup_keras_parity():
    theirs = _keras_layer("IntegerLookup", vocabulary=IVOCAB, output_mode="count")
    x = np.array([[12, 7, 12, 36]])
    np.testing.assert_array_equal(layers.IntegerLookup(vocabulary=IVOCAB, output_mode="count")(x).numpy(),
                                  np.asarray(theirs(x)))


# ---- TextVectorization --------------------------------------------------------------------------------

def test_text_vectorization_keras_documented_outputs():
    layer = layers.TextVectorization(max_tokens=5000, output_mode="int", output_sequence_length=4,
                                     vocabulary=["earth", "wind", "and", "fire"])
    out = layer([["earth wind and also fire"], ["fire and earth michigan"]])
    assert out.dtype == "int64"
    np.testing.assert_array_equal(out.numpy(), [[2, 3, 4, 1], [5, 4, 2, 1]])   # "also" is OOV, "fire" cut off
    assert layer.get_vocabulary() == ["", "[UNK]", "earth", "wind", "and", "fire"] and layer.vocabulary_size() == 6
    adapted = layers.TextVectorization(max_tokens=5000, output_mode="int", output_sequence_length=4)
    adapted.adapt(["foo bar", "bar baz", "baz bada boom"])
    assert adapted.get_vocabulary() == ["", "[UNK]", "baz", "bar", "foo", "boom", "bada"]
    np.testing.assert_array_equal(adapted([["foo qux bar"], ["qux baz"]]).numpy(), [[4, 1, 3, 0], [1, 2, 0, 0]])
    np.testing.assert_array_equal(layers.TextVectorization(split=None, vocabulary=["foo", "bar", "baz"])(
        [["foo"], ["bar"], ["unknown"]]).numpy(), [[2], [3], [1]])


def test_text_vectorization_standardize_split_ngrams():
    vocab = ["hello", "world", "héllo", "HELLO"]
    # lowering and punctuation are ASCII, as TensorFlow's: "ÉTÉ" becomes "ÉtÉ"
    std = layers.TextVectorization(vocabulary=vocab + ["wörld", "ÉtÉ"])
    np.testing.assert_array_equal(std(["Hello, WORLD!! héllo ÉTÉ"]).numpy(), [[2, 3, 4, 7]])
    lower = layers.TextVectorization(standardize="lower", vocabulary=["hello,", "world!"])
    np.testing.assert_array_equal(lower(["HELLO, World!"]).numpy(), [[2, 3]])
    strip = layers.TextVectorization(standardize="strip_punctuation", vocabulary=vocab)
    np.testing.assert_array_equal(strip(["HELLO... hello"]).numpy(), [[5, 2]])
    raw = layers.TextVectorization(standardize=None, vocabulary=vocab)
    np.testing.assert_array_equal(raw(["hello, hello"]).numpy(), [[1, 2]])
    # whitespace is ASCII whitespace; empty strings give a row of padding
    ws = layers.TextVectorization(vocabulary=["a", "b"])
    np.testing.assert_array_equal(ws(["a\tb\n\n a", ""]).numpy(), [[2, 3, 2], [0, 0, 0]])
    chars = layers.TextVectorization(split="character", standardize=None, vocabulary=["a", "b", "é"])
    np.testing.assert_array_equal(chars(["abé", "ba"]).numpy(), [[2, 3, 4], [3, 2, 0]])
    # callables: standardize maps a numpy array of str; split returns one token list per string
    seen = []

    def std_fn(a):
        seen.append(a.dtype.kind)
        return np.char.replace(np.char.lower(a), "-", " ")
    custom = layers.TextVectorization(standardize=std_fn, split=lambda a: [s.split("/") for s in a],
                                      vocabulary=["x", "y z"])
    np.testing.assert_array_equal(custom(["X/Y-Z/w"]).numpy(), [[2, 3, 1]])
    assert seen == ["U"]
    # n-grams: all widths, width by width
    two = layers.TextVectorization(ngrams=2)
    two.adapt(["a b c"])
    assert set(two.get_vocabulary()[2:]) == {"a", "b", "c", "a b", "b c"}
    tri = layers.TextVectorization(ngrams=(1, 3), vocabulary=["a", "b", "c", "a b c"])
    np.testing.assert_array_equal(tri(["a b c"]).numpy(), [[2, 3, 4, 5]])
    # output_sequence_length pads and truncates
    fixed = layers.TextVectorization(vocabulary=["a", "b"], output_sequence_length=2)
    np.testing.assert_array_equal(fixed(["a b a b", "b"]).numpy(), [[2, 3], [3, 0]])
    # one string -> one sequence
    np.testing.assert_array_equal(fixed("b a").numpy(), [3, 2])


def test_text_vectorization_encodings():
    vocab = ["the", "cat", "sat"]
    texts = np.array([["the cat the cat"], ["sat on it"]])
    multi = layers.TextVectorization(output_mode="multi_hot", vocabulary=vocab)(texts)
    assert multi.dtype == "float32"
    np.testing.assert_array_equal(multi.numpy(), [[0, 1, 1, 0], [1, 0, 0, 1]])   # index 0 is [UNK] here
    np.testing.assert_array_equal(layers.TextVectorization(output_mode="count", vocabulary=vocab)(texts).numpy(),
                                  [[0, 2, 2, 0], [2, 0, 0, 1]])
    padded = layers.TextVectorization(output_mode="count", vocabulary=vocab, max_tokens=8, pad_to_max_tokens=True)
    assert padded(texts).shape == (2, 8)
    one = layers.TextVectorization(output_mode="one_hot", split=None, vocabulary=vocab)
    np.testing.assert_array_equal(one(np.array([["cat"], ["dog"]])).numpy(), [[0, 0, 1, 0], [1, 0, 0, 0]])
    tfidf = layers.TextVectorization(output_mode="tf_idf")
    docs = ["the cat sat", "the dog", "the cat"]
    tfidf.adapt(docs)
    vocab_learnt = tfidf.get_vocabulary()
    assert vocab_learnt == ["[UNK]", "the", "cat", "sat", "dog"]
    df = np.array([3, 2, 1, 1], np.float64)
    idf = np.log(1 + 3 / (1 + df))
    out = tfidf(["the the cat zebra"]).numpy()
    np.testing.assert_allclose(out, [[idf.mean(), 2 * idf[0], idf[1], 0, 0]], rtol=1e-6)


def test_text_vectorization_adapt_batches_and_config():
    texts = ["a b c", "b c", "c d e", "c"]
    whole = layers.TextVectorization(max_tokens=5)
    whole.adapt(texts)
    assert whole.get_vocabulary() == ["", "[UNK]", "c", "b", "e"]
    for kwargs in ({"batch_size": 1}, {"batch_size": 3}):
        other = layers.TextVectorization(max_tokens=5)
        other.adapt(texts, **kwargs)
        assert other.get_vocabulary() == whole.get_vocabulary()
    stepped = layers.TextVectorization()
    stepped.adapt((np.array(texts[i:i + 2]) for i in range(0, 4, 2)), steps=1)
    assert stepped.get_vocabulary() == ["", "[UNK]", "c", "b", "a"]
    # the config carries the vocabulary (and idf weights), so a clone gives the same outputs
    config = whole.get_config()
    assert config["vocabulary"] == ["c", "b", "e"] and config["vocabulary_size"] == 5
    clone = layers.TextVectorization.from_config(config)
    np.testing.assert_array_equal(clone(texts).numpy(), whole(texts).numpy())
    assert clone.get_config() == {**config, "name": clone.name}
    tfidf = layers.TextVectorization(output_mode="tf_idf", ngrams=2)
    tfidf.adapt(texts)
    clone = lamina.layers.deserialize(lamina.layers.serialize(tfidf))
    np.testing.assert_allclose(clone(texts).numpy(), tfidf(texts).numpy(), rtol=1e-6)
    assert clone.get_config()["ngrams"] == 2


def test_text_vectorization_feeds_a_model():
    rng = np.random.default_rng(3)
    words = ["good", "great", "fine", "bad", "awful", "poor"]
    texts = [" ".join(rng.choice(words, 4)) for _ in range(64)]
    y = np.array([[sum(w in ("good", "great", "fine") for w in t.split()) > 2] for t in texts], np.float32)
    vectorize = layers.TextVectorization(output_sequence_length=4)
    vectorize.adapt(texts)
    ids = vectorize(texts)
    model = lamina.Sequential([lamina.Input((4,), dtype="int64"), layers.Embedding(vectorize.vocabulary_size(), 8),
                               layers.GlobalAveragePooling1D(), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=lamina.optimizers.Adam(learning_rate=0.05), loss="binary_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(ids, y, epochs=30, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.8


def test_text_vectorization_errors():
    with pytest.raises(ValueError, match="`standardize` must be"):
        layers.TextVectorization(standardize="upper")
    with pytest.raises(ValueError, match="`split` must be"):
        layers.TextVectorization(split="comma")
    with pytest.raises(ValueError, match="`ngrams` must be None, a positive integer"):
        layers.TextVectorization(ngrams=(1, "2"))
    with pytest.raises(ValueError, match="`output_sequence_length` only applies to output_mode='int'"):
        layers.TextVectorization(output_mode="count", output_sequence_length=3)
    with pytest.raises(ValueError, match="`output_sequence_length` must be an integer >= 1"):
        layers.TextVectorization(output_sequence_length=0)
    with pytest.raises(ValueError, match="ragged=True is not supported"):
        layers.TextVectorization(ragged=True)
    with pytest.raises(ValueError, match="sparse=True is not supported"):
        layers.TextVectorization(output_mode="count", sparse=True)
    with pytest.raises(ValueError, match="output_mode='one_hot' .* needs split=None"):
        layers.TextVectorization(output_mode="one_hot")
    with pytest.raises(ValueError, match="has no vocabulary"):
        layers.TextVectorization()(["a"])
    tv = layers.TextVectorization(vocabulary=["a"])
    with pytest.raises(ValueError, match=r"shape \(batch,\) or \(batch, 1\), received shape \(1, 2\)"):
        tv([["a", "b"]])
    with pytest.raises(TypeError, match=r"expected a string input \(lamina.Input\(..., dtype='string'\)\), .* dtype float32"):
        tv(lamina.Input((1,)))
    with pytest.raises(TypeError, match="expected strings"):
        tv(np.array([1, 2]))
    with pytest.raises(ValueError, match="the `split` callable returned 1 token lists for 2 strings"):
        layers.TextVectorization(split=lambda a: [["x"]], vocabulary=["x"])(["a", "b"])
    with pytest.raises(ValueError, match="adapt\\(\\) only applies to a layer created without one"):
        tv.adapt(["a"])


def test_text_vectorization_keras_parity():
    theirs = _keras_layer("TextVectorization", vocabulary=["the", "cat"], output_sequence_length=3)
    x = np.array(["The cat, the CAT!", "a cat"])
    np.testing.assert_array_equal(layers.TextVectorization(vocabulary=["the", "cat"], output_sequence_length=3)(x)
                                  .numpy(), np.asarray(theirs(x)))


def test_integer_layers_with_the_layer_harness():
    from layer_harness import run_layer_test
    ids = np.array([[0, 3, 4], [2, 2, 9]], np.int64)
    run_layer_test(layers.IntegerLookup, {"vocabulary": [0, 1, 2, 3, 4]}, (2, 3), input_dtype="int64", input_data=ids,
                   expected_output=[[1, 4, 5], [3, 3, 0]])
    run_layer_test(layers.IntegerLookup, {"vocabulary": [0, 1, 2, 3, 4], "output_mode": "count"}, (2, 3),
                   input_dtype="int64", input_data=ids, expected_output=[[0, 1, 0, 0, 1, 1], [1, 0, 0, 2, 0, 0]])
    run_layer_test(layers.Hashing, {"num_bins": 4, "salt": 7}, (2, 3), input_dtype="int64", input_data=ids,
                   expected_output=[[siphash24(7, 7, str(v).encode()) % 4 for v in r] for r in ids])


def test_integer_inputs_keep_their_device():
    with lamina.device("cpu:1"):
        ids = lamina.ops.convert_to_tensor(np.array([[1, 2, 7]]))
    assert layers.IntegerLookup(vocabulary=[1, 2], output_mode="multi_hot")(ids).device.name == "cpu:1"
    assert layers.Hashing(3, output_mode="count")(ids).device.name == "cpu:1"
    assert layers.Hashing(3)(ids).device.name == "cpu:1"


# ---- HashedCrossing ----------------------------------------------------------------------------------

def test_hashed_crossing_matches_tensorflows_bins():
    """Keras's own test vectors (keras/src/layers/preprocessing/hashed_crossing_test.py), which
    TensorFlow's sparse.cross_hashed computes."""
    feat1 = np.array(["A", "B", "A", "B", "A"])
    feat2 = np.array([101, 101, 101, 102, 102])
    out = layers.HashedCrossing(num_bins=5)((feat1, feat2))
    assert out.dtype == "int64"
    np.testing.assert_array_equal(out.numpy(), [1, 4, 1, 1, 3])
    np.testing.assert_array_equal(layers.HashedCrossing(num_bins=5, output_mode="one_hot")((feat1, feat2)).numpy(),
                                  np.eye(5)[[1, 4, 1, 1, 3]])
    assert layers.HashedCrossing(num_bins=10)((np.array("A"), np.array(101))).numpy() == 1
    # bytes and str hash alike, an int tensor as an int array, (batch, 1) keeps its shape
    col = layers.HashedCrossing(num_bins=5, dtype="int32")((feat1.astype("S")[:, None],
                                                            lamina.convert_to_tensor(feat2[:, None])))
    assert col.dtype == "int32" and col.shape == (5, 1)
    np.testing.assert_array_equal(col.numpy()[:, 0], [1, 4, 1, 1, 3])


def test_hashed_crossing_three_features_and_order_matter():
    a, b, c = np.array(["x", "y"]), np.array([1, 2]), np.array(["p", "p"])
    three = layers.HashedCrossing(num_bins=1 << 30)((a, b, c)).numpy()
    swapped = layers.HashedCrossing(num_bins=1 << 30)((b, a, c)).numpy()
    assert not np.array_equal(three, swapped)
    assert (three < (1 << 30)).all() and (three >= 0).all()


def test_hashed_crossing_in_a_model_saves_and_loads(tmp_path):
    a = lamina.Input((1,), dtype="string")
    b = lamina.Input((1,), dtype="int64")
    crossed = layers.HashedCrossing(num_bins=8, output_mode="one_hot")([a, b])
    assert crossed.shape == (None, 8) and crossed.dtype == "float32"
    model = lamina.Model([a, b], layers.Dense(1)(crossed))
    x = [np.array([["A"], ["B"], ["C"]]), np.array([[1], [2], [3]])]
    want = model.predict(x, verbose=0)
    path = str(tmp_path / "cross.keras")
    model.save(path)
    np.testing.assert_allclose(lamina.models.load_model(path).predict(x, verbose=0), want, atol=1e-6)


def test_hashed_crossing_errors():
    with pytest.raises(ValueError, match="should be called on a list or tuple of inputs"):
        layers.HashedCrossing(num_bins=10)(np.array(1))
    with pytest.raises(ValueError, match="at least two inputs"):
        layers.HashedCrossing(num_bins=10)([np.array(1)])
    with pytest.raises(ValueError, match=r"should have shape \(\), \(batch_size,\) or \(batch_size, 1\)"):
        layers.HashedCrossing(num_bins=10)((np.ones((2, 2), int), np.ones((2, 2), int)))
    with pytest.raises(ValueError, match="the same shape"):
        layers.HashedCrossing(num_bins=10)((np.ones(2, int), np.ones(3, int)))
    with pytest.raises(ValueError, match="integer or string dtype.*float"):
        layers.HashedCrossing(num_bins=10)((np.ones(2), np.ones(2, int)))
    with pytest.raises(ValueError, match="num_bins` must be a positive integer"):
        layers.HashedCrossing(num_bins=0)
    with pytest.raises(ValueError, match="sparse=True is not supported"):
        layers.HashedCrossing(num_bins=3, sparse=True)
