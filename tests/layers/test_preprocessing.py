"""Tests for layers/preprocessing.py: Rescaling, Normalization, CategoryEncoding, Discretization
(the image and text layers: test_preprocessing_image.py, test_preprocessing_text.py)."""
import os

import numpy as np
import pytest

import lamina
from lamina import layers
from keras_ref import keras_or_none
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


def _keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    return keras


# ---- Normalization --------------------------------------------------------------------------------

def test_normalization_given_mean_and_variance():
    x = np.random.default_rng(4).standard_normal((3, 5, 2)).astype(np.float32) * 3 + 1
    mean, var = [1.0, -2.0], [4.0, 0.25]
    layer, _ = run_layer_test(layers.Normalization, {"mean": mean, "variance": var}, (3, 5, 2), input_data=x,
                              expected_output=(x - np.array(mean)) / np.sqrt(var), expected_num_trainable_weights=0)
    assert layer.weights == [] and layer.supports_masking
    # a scalar statistic broadcasts; invert undoes the normalization; int inputs give float32
    y = layers.Normalization(mean=3.0, variance=2.0)(np.array([[1], [2], [3]], np.int32))
    assert y.dtype == "float32"
    np.testing.assert_allclose(y.numpy(), [[-1.4142135], [-0.70710677], [0.0]], rtol=1e-6)
    inv = layers.Normalization(mean=mean, variance=var, invert=True)(x).numpy()
    np.testing.assert_allclose(inv, x * np.sqrt(var) + np.array(mean), rtol=1e-5, atol=1e-5)
    # axis=(1, 2) with a statistic for the last kept axis only: it broadcasts from the right
    y = layers.Normalization(axis=(1, 2), mean=[0.0, 1.0], variance=[1.0, 4.0])(x).numpy()
    np.testing.assert_allclose(y, (x - np.array([0.0, 1.0])) / np.array([1.0, 2.0]), rtol=1e-5, atol=1e-6)
    # a zero variance divides by Keras's epsilon, 1e-7, not by zero
    np.testing.assert_allclose(layers.Normalization(mean=1.0, variance=0.0)(np.array([[1.5]])).numpy(), [[5e6]])


def test_normalization_adapt_array_and_batches():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((40, 3)) * [1, 5, 0.1] + [0, 10, -3]).astype(np.float32)
    layer = layers.Normalization()
    layer.adapt(x)
    assert [w.path for w in layer.weights] == [f"{layer.name}/mean", f"{layer.name}/variance", f"{layer.name}/count"]
    np.testing.assert_allclose(layer.adapt_mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.adapt_variance.numpy(), x.var(0), rtol=1e-4)
    y = layer(x).numpy()
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(0), 1, rtol=1e-4)
    # batches of different sizes merge to the statistics of the whole, as do (x, y) batches,
    # a generator and a PyDataset
    for data in ([x[:7], x[7:30], x[30:]], ((x[i:i + 10], None) for i in range(0, 40, 10))):
        other = layers.Normalization()
        other.adapt(data)
        np.testing.assert_allclose(other.adapt_mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(other.adapt_variance.numpy(), x.var(0), rtol=1e-4)

    class Batches(lamina.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return x[i * 10:(i + 1) * 10], np.zeros(10)
    other = layers.Normalization()
    other.adapt(Batches())
    np.testing.assert_allclose(other.adapt_variance.numpy(), x.var(0), rtol=1e-4)
    # axis=None: one mean and variance over everything
    whole = layers.Normalization(axis=None)
    whole.adapt(x)
    np.testing.assert_allclose(whole.adapt_mean.numpy(), x.mean(), rtol=1e-5)
    np.testing.assert_allclose(whole(x).numpy(), (x - x.mean()) / x.std(), rtol=1e-4, atol=1e-4)
    # per (row, column) of images: axis=(1, 2)
    imgs = rng.standard_normal((6, 2, 3, 4)).astype(np.float32)
    per = layers.Normalization(axis=(1, 2))
    per.adapt(imgs)
    assert per.adapt_mean.shape == (2, 3)
    np.testing.assert_allclose(per.adapt_mean.numpy(), imgs.mean(axis=(0, 3)), rtol=1e-5, atol=1e-5)


def test_normalization_adapted_state_is_saved(tmp_path):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((20, 4)) * 2 + 3).astype(np.float32)
    norm = layers.Normalization()
    norm.adapt(x)
    config = norm.get_config()
    assert config["mean"] is None and config["variance"] is None and config["axis"] == (-1,)
    assert norm.get_build_config() == {"input_shape": (20, 4)}
    # Keras keeps the adapted statistics as weights: config + build config + weights rebuild it
    clone = layers.Normalization.from_config(config)
    clone.build_from_config(norm.get_build_config())
    clone.set_weights(norm.get_weights())
    np.testing.assert_allclose(clone(x).numpy(), norm(x).numpy(), rtol=1e-6)
    # and a saved model keeps them
    model = lamina.Sequential([lamina.Input((4,)), norm, layers.Dense(2)])
    path = str(tmp_path / "norm.keras")
    model.save(path)
    loaded = lamina.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(loaded.layers[0].adapt_mean.numpy(), x.mean(0), rtol=1e-5)


def test_normalization_in_a_model_fit():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((64, 3)) * [10, 0.1, 3] + [100, -5, 0]).astype(np.float32)
    y = (x[:, :1] - 100) / 10 + (x[:, 2:] / 3)
    norm = layers.Normalization()
    norm.adapt(x)
    model = lamina.Sequential([lamina.Input((3,)), norm, layers.Dense(1)])
    model.compile(optimizer=lamina.optimizers.SGD(learning_rate=0.1), loss="mse")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=10, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.05 * first   # normalized inputs: plain SGD converges fast
    assert norm.trainable_weights == []   # the statistics do not train
    np.testing.assert_allclose(norm.adapt_mean.numpy(), x.mean(0), rtol=1e-5)


def test_normalization_errors():
    with pytest.raises(ValueError, match="both `mean` and `variance`"):
        layers.Normalization(mean=1.0)
    with pytest.raises(ValueError, match=r"same shape.*\(2,\) and \(3,\)"):
        layers.Normalization(mean=[1.0, 2.0], variance=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="rank of `mean`"):
        layers.Normalization(axis=-1, mean=np.ones((2, 2)), variance=np.ones((2, 2)))
    with pytest.raises(ValueError, match="`variance` must be >= 0"):
        layers.Normalization(mean=0.0, variance=-1.0)
    with pytest.raises(ValueError, match="`mean` must be a finite number"):
        layers.Normalization(mean="a", variance=1.0)
    with pytest.raises(ValueError, match="`axis` must be an int"):
        layers.Normalization(axis="last")
    with pytest.raises(ValueError, match=r"every axis must be in \[-2, 2\)"):
        layers.Normalization(axis=3)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="do not broadcast"):
        layers.Normalization(mean=[1.0, 2.0], variance=[1.0, 1.0])(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="axis 1 of the input shape .* is unknown"):
        layers.Normalization()(lamina.Input(shape=(None,)))
    with pytest.raises(ValueError, match="adapt\\(\\) only applies to a layer created without them"):
        layers.Normalization(mean=0.0, variance=1.0).adapt(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="iterable of batches is empty"):
        layers.Normalization().adapt([])
    with pytest.raises(TypeError, match="np.asarray"):
        layers.Normalization().adapt([1.0, 2.0])
    layer = layers.Normalization()
    layer.adapt(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"was built for inputs of shape \(4, 3\)"):
        layer.adapt(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="expected axis -1 of the input shape to have value 3|expected axis 1"):
        layer(np.zeros((2, 5), np.float32))


def test_normalization_keras_parity():
    keras = _keras()
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((10, 4, 3)) * 4 + 2).astype(np.float32)
    for kwargs in [{}, {"axis": None}, {"axis": (1, 2)}, {"invert": True}]:
        ours, theirs = layers.Normalization(**kwargs), keras.layers.Normalization(**kwargs)
        ours.adapt(x)
        theirs.adapt(x)
        np.testing.assert_allclose(ours(x).numpy(), np.asarray(theirs(x)), rtol=1e-4, atol=1e-4, err_msg=str(kwargs))
        assert [w.path for w in ours.weights] == [w.path.replace(theirs.name, ours.name) for w in theirs.weights]
        for a, b in zip(ours.get_weights()[:2], theirs.get_weights()[:2]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for kwargs in [{"mean": [1.0, 2.0, 3.0], "variance": [1.0, 4.0, 0.0]},
                   {"mean": 2.0, "variance": 9.0, "invert": True}]:
        ours, theirs = layers.Normalization(**kwargs), keras.layers.Normalization(**kwargs)
        np.testing.assert_allclose(ours(x).numpy(), np.asarray(theirs(x)), rtol=1e-5, err_msg=str(kwargs))
        a, b = ours.get_config(), theirs.get_config()
        a.pop("name"), b.pop("name")
        assert a == b


# ---- CategoryEncoding --------------------------------------------------------------------------------

def test_category_encoding_modes():
    ids = np.array([[1, 1, 3], [0, 2, 0]], np.int64)
    expected_count = np.array([[0, 2, 0, 1], [2, 0, 1, 0]], np.float32)
    layer, outs = run_layer_test(layers.CategoryEncoding, {"num_tokens": 4, "output_mode": "count"}, (2, 3),
                                 input_dtype="int64", input_data=ids, expected_output=expected_count)
    assert outs[0].dtype == "float32"
    multi = layers.CategoryEncoding(4)(ids).numpy()   # multi_hot is the default
    np.testing.assert_array_equal(multi, (expected_count > 0).astype(np.float32))
    np.testing.assert_array_equal(layers.CategoryEncoding(4, "binary")(ids).numpy(), multi)
    one = layers.CategoryEncoding(4, output_mode="one_hot")
    np.testing.assert_array_equal(one(ids).numpy(), np.eye(4)[ids])
    np.testing.assert_array_equal(one(ids[:, :1]).numpy(), np.eye(4)[ids[:, 0]])   # a last axis of 1 is replaced
    # a 1-D input is one sample for multi_hot / count, a batch of ids for one_hot
    np.testing.assert_array_equal(layers.CategoryEncoding(4)(np.array([1, 3])).numpy(), [0, 1, 0, 1])
    np.testing.assert_array_equal(one(np.array([1, 3])).numpy(), np.eye(4)[[1, 3]])
    # rank 3: reduced over axis 1, as Keras
    r3 = layers.CategoryEncoding(4, "count")(np.array([[[1, 2], [1, 1]]])).numpy()
    np.testing.assert_array_equal(r3, [[[0, 2, 0, 0], [0, 1, 1, 0]]])
    # count_weights
    w = np.array([[0.5, 0.5, 2.0], [1.0, 1.0, 1.0]], np.float32)
    counted = layers.CategoryEncoding(4, "count")(ids, count_weights=w).numpy()
    np.testing.assert_allclose(counted, [[0, 1, 0, 2], [2, 0, 1, 0]])
    # float ids are truncated as Keras casts them
    np.testing.assert_array_equal(layers.CategoryEncoding(3)(np.array([[0.0, 2.0]])).numpy(), [[1, 0, 1]])
    # in a model, symbolically
    inp = lamina.Input((3,), dtype="int32")
    out = layers.CategoryEncoding(5, "count")(inp)
    assert out.shape == (None, 5) and out.dtype == "float32"
    np.testing.assert_array_equal(lamina.Model(inp, out).predict(ids, verbose=0),
                                  np.pad(expected_count, ((0, 0), (0, 1))))
    assert layers.CategoryEncoding(5, "one_hot").compute_output_shape((None, 1)) == (None, 5)
    assert layers.CategoryEncoding(5, "one_hot").compute_output_shape((None, 2)) == (None, 2, 5)


def test_category_encoding_bounded_memory_reduction(monkeypatch):
    from lamina.layers import preprocessing
    rng = np.random.default_rng(9)
    ids = rng.integers(0, 7, (3, 50))
    w = rng.random((3, 50)).astype(np.float32)
    full_count = layers.CategoryEncoding(7, "count")(ids, count_weights=w).numpy()
    full_multi = layers.CategoryEncoding(7, "multi_hot")(ids).numpy()
    monkeypatch.setattr(preprocessing, "_CHUNK", 30)   # slabs of 1 or 2 ids per row
    np.testing.assert_allclose(layers.CategoryEncoding(7, "count")(ids, count_weights=w).numpy(), full_count, rtol=1e-6)
    np.testing.assert_array_equal(layers.CategoryEncoding(7, "multi_hot")(ids).numpy(), full_multi)
    ref = np.zeros((3, 7), np.float32)
    for r in range(3):
        np.add.at(ref[r], ids[r], w[r])
    np.testing.assert_allclose(full_count, ref, rtol=1e-5)


def test_category_encoding_errors():
    with pytest.raises(ValueError, match="`num_tokens` must be set"):
        layers.CategoryEncoding()
    with pytest.raises(ValueError, match="`num_tokens` must be an integer >= 1"):
        layers.CategoryEncoding(0)
    with pytest.raises(ValueError, match="`output_mode` must be one of"):
        layers.CategoryEncoding(3, output_mode="tf_idf")
    with pytest.raises(ValueError, match="sparse=True is not supported"):
        layers.CategoryEncoding(3, sparse=True)
    with pytest.raises(ValueError, match=r"ids must be in \[0, 3\).*from -1 to 2"):
        layers.CategoryEncoding(3)(np.array([[-1, 2]]))
    with pytest.raises(ValueError, match=r"from 0 to 3"):
        layers.CategoryEncoding(3)(np.array([[0, 3]]))
    with pytest.raises(ValueError, match="`count_weights` only applies to output_mode='count'"):
        layers.CategoryEncoding(3)(np.array([[0, 1]]), count_weights=np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"shape of the inputs \(1, 2\)"):
        layers.CategoryEncoding(3, "count")(np.array([[0, 1]]), count_weights=np.ones((1, 3)))


def test_category_encoding_keras_parity():
    keras = _keras()
    ids = np.random.default_rng(10).integers(0, 6, (4, 5)).astype(np.int32)
    for mode in ("one_hot", "multi_hot", "count"):
        for x in (ids, ids[:, :1], ids[0]):
            ours, theirs = layers.CategoryEncoding(6, mode), keras.layers.CategoryEncoding(6, mode)
            np.testing.assert_array_equal(ours(x).numpy(), np.asarray(theirs(x)), err_msg=f"{mode} {x.shape}")
            a, b = ours.get_config(), theirs.get_config()
            a.pop("name"), b.pop("name")
            assert a == b
    w = np.random.default_rng(11).random(ids.shape).astype(np.float32)
    np.testing.assert_allclose(layers.CategoryEncoding(6, "count")(ids, count_weights=w).numpy(),
                               np.asarray(keras.layers.CategoryEncoding(6, "count")(ids, count_weights=w)), rtol=1e-6)


# ---- Discretization ------------------------------------------------------------------------------------

def test_discretization_bins_and_modes():
    x = np.array([[-1.5, 0.0, 0.5, 1.0, 2.0, np.nan]], np.float32)
    bounds = [0.0, 1.0, 1.5]
    layer = layers.Discretization(bin_boundaries=bounds)
    out = layer(x)
    assert out.dtype == "int32"
    np.testing.assert_array_equal(out.numpy(), [[0, 1, 1, 2, 3, 3]])   # np.digitize; NaN -> last bucket
    np.testing.assert_array_equal(out.numpy()[:, :5], np.digitize(x[:, :5], bounds))
    xs = np.random.default_rng(12).standard_normal((4, 3)).astype(np.float32)
    run_layer_test(layers.Discretization, {"bin_boundaries": bounds}, (4, 3), input_data=xs,
                   expected_output=np.digitize(xs, bounds))
    ids = np.digitize(xs, bounds)
    np.testing.assert_array_equal(layers.Discretization(bin_boundaries=bounds, output_mode="one_hot")(xs).numpy(),
                                  np.eye(4)[ids])
    count = layers.Discretization(bin_boundaries=bounds, output_mode="count")(xs).numpy()
    np.testing.assert_array_equal(count, np.stack([np.bincount(r, minlength=4) for r in ids]))
    multi = layers.Discretization(bin_boundaries=bounds, output_mode="multi_hot")(xs).numpy()
    np.testing.assert_array_equal(multi, (count > 0).astype(np.float32))
    # empty boundaries: one bucket
    np.testing.assert_array_equal(layers.Discretization(bin_boundaries=[])(xs).numpy(), np.zeros((4, 3)))
    # symbolic: int32 ids feed a CategoryEncoding
    inp = lamina.Input((3,))
    ids_t = layers.Discretization(bin_boundaries=bounds)(inp)
    assert ids_t.dtype == "int32" and ids_t.shape == (None, 3)
    enc = layers.CategoryEncoding(4, "count")(ids_t)
    np.testing.assert_array_equal(lamina.Model(inp, enc).predict(xs, verbose=0), count)


def test_discretization_adapt_and_config():
    rng = np.random.default_rng(13)
    data = rng.standard_normal(1000).astype(np.float32)
    layer = layers.Discretization(num_bins=4)
    with pytest.raises(ValueError, match="no bin boundaries yet"):
        layer(data)
    layer.adapt(data)
    assert len(layer.bin_boundaries) == 3
    np.testing.assert_allclose(layer.bin_boundaries, np.quantile(data, [0.25, 0.5, 0.75]), atol=0.1)
    counts = np.bincount(layer(data).numpy(), minlength=4)
    assert counts.min() > 200   # about a quarter in each bucket
    # batches (at most `steps` of them)
    batched = layers.Discretization(num_bins=4)
    batched.adapt([data[:500], data[500:], np.full(100, 50.0)], steps=2)
    np.testing.assert_allclose(batched.bin_boundaries, layer.bin_boundaries, atol=0.1)
    # the config holds the learnt boundaries with num_bins, as Keras's (from_config restores them)
    config = layer.get_config()
    assert config["num_bins"] == 4 and config["bin_boundaries"] == layer.bin_boundaries
    clone = layers.Discretization.from_config(config)
    np.testing.assert_array_equal(clone(data).numpy(), layer(data).numpy())
    fixed = layers.Discretization(bin_boundaries=[0.0, 1.0], output_mode="count", name="d")
    assert layers.Discretization.from_config(fixed.get_config()).get_config() == fixed.get_config()
    assert lamina.layers.deserialize(lamina.layers.serialize(fixed)).bin_boundaries == [0.0, 1.0]


def test_discretization_errors():
    with pytest.raises(ValueError, match="set either `bin_boundaries` or `num_bins`"):
        layers.Discretization()
    with pytest.raises(ValueError, match="not both"):
        layers.Discretization(bin_boundaries=[1.0], num_bins=3)
    with pytest.raises(ValueError, match="`num_bins` must be an integer >= 0"):
        layers.Discretization(num_bins=-1)
    with pytest.raises(ValueError, match="sorted in increasing order"):
        layers.Discretization(bin_boundaries=[1.0, 0.0])
    with pytest.raises(ValueError, match="1-D list of finite numbers"):
        layers.Discretization(bin_boundaries=["a"])
    with pytest.raises(ValueError, match="`output_mode` must be one of"):
        layers.Discretization(bin_boundaries=[0.0], output_mode="tf_idf")
    with pytest.raises(ValueError, match="sparse=True is not supported"):
        layers.Discretization(bin_boundaries=[0.0], output_mode="count", sparse=True)
    with pytest.raises(ValueError, match=r"`epsilon` must be a number in \(0, 1\)"):
        layers.Discretization(num_bins=3, epsilon=0)
    with pytest.raises(ValueError, match="adapt\\(\\) needs a layer created with `num_bins`"):
        layers.Discretization(bin_boundaries=[0.0]).adapt(np.zeros(3))
    with pytest.raises(TypeError, match="expected numbers"):
        layers.Discretization(num_bins=2).adapt(np.array(["a", "b"]))


def test_discretization_keras_parity():
    keras = _keras()
    rng = np.random.default_rng(14)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    for mode in ("int", "one_hot", "multi_hot", "count"):
        kw = {"bin_boundaries": [-0.5, 0.0, 0.7], "output_mode": mode}
        ours, theirs = layers.Discretization(**kw), keras.layers.Discretization(**kw)
        np.testing.assert_array_equal(ours(x).numpy(), np.asarray(theirs(x)), err_msg=mode)
        assert ours(x).dtype == str(np.asarray(theirs(x)).dtype)
        assert ours.get_config() == {**theirs.get_config(), "name": ours.name}
    # adapt: Keras's quantile sketch gives the same boundaries (Keras's adapt() itself needs
    # TensorFlow for its dataset check, so its update_state / finalize_state run it here)
    data = [rng.standard_normal(300).astype(np.float32) * 3, rng.standard_normal(200).astype(np.float32)]
    ours, theirs = layers.Discretization(num_bins=5), keras.layers.Discretization(num_bins=5)
    ours.adapt(data)
    for batch in data:
        theirs.update_state(batch)
    theirs.finalize_state()
    np.testing.assert_allclose(ours.bin_boundaries, theirs.bin_boundaries, rtol=1e-6)


def test_preprocessing_module_reexports_the_image_and_text_layers():
    from lamina.layers import preprocessing
    assert preprocessing.RandomFlip is layers.RandomFlip and preprocessing.TextVectorization is layers.TextVectorization
    with pytest.raises(AttributeError):
        preprocessing.NoSuchLayer


def test_numeric_layers_work_on_the_device_of_their_input():
    with lamina.device("cpu:1"):
        x = lamina.ops.convert_to_tensor(np.array([[0.5, 2.0, 3.0]], np.float32))
        ids = lamina.ops.convert_to_tensor(np.array([[1, 2, 2]]))
    assert layers.Normalization(mean=1.0, variance=4.0)(x).device.name == "cpu:1"
    assert layers.Discretization(bin_boundaries=[1.0], output_mode="count")(x).device.name == "cpu:1"
    assert layers.CategoryEncoding(3, "count")(ids, count_weights=np.ones((1, 3))).device.name == "cpu:1"
    norm = layers.Normalization()
    norm.adapt(x)          # data on cpu:1, statistics on the layer's device
    np.testing.assert_allclose(norm.adapt_mean.numpy(), [0.5, 2.0, 3.0])


def test_normalization_mean_and_variance_attributes_as_keras(tmp_path):
    # Keras's layer.mean / layer.variance: None until built, then the statistics in use, of the
    # broadcast shape (1 on the normalized axes), after adapt, from the constructor, and after loading
    x = np.array([[0.1, 0.2, 0.3], [0.8, 0.9, 1.0], [1.5, 1.6, 1.7]], "float32")
    layer = layers.Normalization()
    assert layer.mean is None and layer.variance is None
    layer.adapt(x)
    assert tuple(layer.mean.shape) == (1, 3)
    np.testing.assert_allclose(layer.mean.numpy(), x.mean(0, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(layer.variance.numpy(), x.var(0, keepdims=True), rtol=1e-5)
    given = layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 9.0])
    given.build((None, 3))
    np.testing.assert_allclose(given.mean.numpy(), [[1, 2, 3]])
    np.testing.assert_allclose(given.variance.numpy(), [[1, 4, 9]])
    images = layers.Normalization(axis=-1)
    images.adapt(np.arange(2 * 4 * 4 * 3, dtype="float32").reshape(2, 4, 4, 3))
    assert tuple(images.mean.shape) == (1, 1, 1, 3)
    model = lamina.Sequential([lamina.Input((3,)), layer])
    model.save(tmp_path / "m.keras")
    loaded = lamina.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.layers[0].mean.numpy(), layer.mean.numpy())
    keras = keras_or_none()
    if keras is not None:
        k = keras.layers.Normalization()
        k.adapt(x)
        np.testing.assert_allclose(layer.mean.numpy(), np.asarray(k.mean), rtol=1e-6)
        np.testing.assert_allclose(layer.variance.numpy(), np.asarray(k.variance), rtol=1e-5)
