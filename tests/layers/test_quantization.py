"""layer.quantize("int8") / model.quantize("int8") (layers/quantization.py): Keras 3's int8
inference for Dense, Conv2D, DepthwiseConv2D and Embedding."""
import os

import numpy as np
import pytest

import lamina
from lamina import layers
from keras_ref import keras_or_none


def _quantize_rows(x):
    scale = (np.float32(127) / (np.abs(x).max(-1, keepdims=True) + np.float32(1e-7))).astype(np.float32)
    return np.clip(np.round(x * scale), -127, 127).astype(np.int32), scale


def test_dense_quantize_matches_the_numpy_reference_and_keras_weight_layout():
    rng = np.random.default_rng(0)
    layer = layers.Dense(6, activation="relu")
    x = rng.standard_normal((4, 10)).astype(np.float32)
    y_float = layer(x).numpy()
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    layer.quantize("int8")
    assert layer.quantization_mode == "int8"
    assert [w.path.split("/")[-1] for w in layer.weights] == ["bias", "kernel", "kernel_scale"]
    assert [str(w.dtype) for w in layer.weights] == ["float32", "int8", "float32"]
    assert layer.trainable_weights == [layer.bias]
    ks = (np.float32(127) / (np.abs(kernel).max(0) + np.float32(1e-7))).astype(np.float32)
    qk = np.clip(np.round(kernel * ks), -127, 127).astype(np.int8)
    np.testing.assert_array_equal(layer.kernel.numpy(), qk)
    np.testing.assert_array_equal(layer.kernel_scale.numpy(), ks)
    qx, sx = _quantize_rows(x)
    ref = np.maximum((qx @ qk.astype(np.int32)).astype(np.float32) / (ks * sx) + bias, 0)
    y = layer(x).numpy()
    np.testing.assert_array_equal(y, ref)
    assert np.abs(y - y_float).max() < 0.05 * np.abs(y_float).max()
    y3 = layer(rng.standard_normal((2, 3, 10)).astype(np.float32))   # leading dimensions
    assert y3.shape == (2, 3, 6)


def test_conv_depthwise_and_embedding_stay_close_to_float():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 10, 10, 4)).astype(np.float32)
    model = lamina.Sequential([lamina.Input((10, 10, 4)), layers.Conv2D(8, 3, padding="same", activation="relu"),
                               layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2), layers.Conv2D(6, 1),
                               layers.GlobalAveragePooling2D(), layers.Dense(3)])
    y0 = model.predict(x, verbose=0)
    model.quantize("int8")
    y1 = model.predict(x, verbose=0)
    assert np.abs(y1 - y0).max() < 0.05 * np.abs(y0).max()
    assert [l.quantization_mode for l in model.layers] == ["int8", "int8", "int8", None, "int8"]
    emb = layers.Embedding(20, 5)
    ids = np.array([[1, 19, 0]], np.int32)
    e0 = emb(ids).numpy()
    emb.quantize("int8")
    t, s = emb.embeddings.numpy(), emb.embeddings_scale.numpy()
    np.testing.assert_array_equal(emb(ids).numpy(), t[ids].astype(np.float32) / s[ids][..., None])
    assert np.abs(emb(ids).numpy() - e0).max() <= np.abs(e0).max() / 127
    with pytest.raises(ValueError, match="outside the table's 20 rows"):
        emb(np.array([[20]], np.int32))


def test_quantized_models_save_and_load_in_every_format(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 8, 8, 2)).astype(np.float32)
    model = lamina.Sequential([lamina.Input((8, 8, 2)), layers.Conv2D(4, 3, activation="relu"),
                               layers.DepthwiseConv2D(3), layers.Flatten(), layers.Dense(3)])
    model.quantize("int8")
    y = model.predict(x, verbose=0)
    for name in ("m.keras", "m.h5"):
        model.save(tmp_path / name)
        again = lamina.models.load_model(tmp_path / name)
        assert [l.quantization_mode for l in again.layers] == [l.quantization_mode for l in model.layers]
        np.testing.assert_array_equal(again.predict(x, verbose=0), y)
    fresh = lamina.Sequential([lamina.Input((8, 8, 2)), layers.Conv2D(4, 3, activation="relu"),
                               layers.DepthwiseConv2D(3), layers.Flatten(), layers.Dense(3)])
    fresh.quantize("int8")
    model.save_weights(tmp_path / "w.weights.h5")
    fresh.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), y)


def test_quantized_files_are_about_four_times_smaller(tmp_path):
    model = lamina.Sequential([lamina.Input((256,)), layers.Dense(512), layers.Dense(512), layers.Dense(10)])
    model.save_weights(tmp_path / "float.weights.h5")
    model.quantize("int8")
    model.save_weights(tmp_path / "int8.weights.h5")
    ratio = os.path.getsize(tmp_path / "float.weights.h5") / os.path.getsize(tmp_path / "int8.weights.h5")
    assert 3.5 < ratio < 4.1, ratio


def test_training_a_quantized_model_raises_and_other_errors():
    model = lamina.Sequential([lamina.Input((4,)), layers.Dense(3), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.quantize("int8")
    x, y = np.ones((2, 4), np.float32), np.ones((2, 1), np.float32)
    with pytest.raises(RuntimeError, match="quantized .int8. layers .dense.*for inference"):
        model.fit(x, y, verbose=0)
    with pytest.raises(RuntimeError, match="for inference"):
        model.train_on_batch(x, y)
    assert model.evaluate(x, y, verbose=0) >= 0
    with lamina.GradientTape() as tape:
        xt = lamina.convert_to_tensor(x)
        tape.watch(xt)
        with pytest.raises(RuntimeError, match="qdense: a quantized .int8. layer computes no gradients"):
            model(xt)
    with pytest.raises(ValueError, match="already quantized"):
        model.layers[0].quantize("int8")
    with pytest.raises(ValueError, match="expected mode 'int8', received 'int4'"):
        layers.Dense(2).quantize("int4")
    with pytest.raises(ValueError, match="not built yet"):
        layers.Dense(2).quantize("int8")
    with pytest.raises(NotImplementedError, match="no quantized form"):
        lstm = layers.LSTM(2)
        lstm(np.ones((1, 3, 2), np.float32))
        lstm.quantize("int8")
    with pytest.raises(ValueError, match="no layer can be quantized"):
        m = lamina.Sequential([lamina.Input((3,)), layers.Activation("relu")])
        m.quantize("int8")
    with pytest.raises(ValueError, match="quantization_config=.*is not supported"):
        layers.Dense(2, quantization_config={"class_name": "Int4QuantizationConfig", "config": {}})


@pytest.mark.skipif(keras_or_none() is None, reason="keras is not installed")
def test_keras_parity_and_files_both_ways(tmp_path):
    keras = keras_or_none()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 20)).astype(np.float32)
    km = keras.Sequential([keras.Input((20,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    lm = lamina.Sequential([lamina.Input((20,)), layers.Dense(16, activation="relu"), layers.Dense(3)])
    lm.set_weights(km.get_weights())
    km.quantize("int8")
    lm.quantize("int8")
    assert [w.path.split("/")[-1] for w in km.weights] == [w.path.split("/")[-1] for w in lm.weights]
    for kw, lw in zip(km.weights, lm.weights):
        np.testing.assert_array_equal(np.asarray(kw), lw.numpy())
    yk = np.asarray(km.predict(x, verbose=0))
    np.testing.assert_array_equal(lm.predict(x, verbose=0), yk)    # bit for bit
    km.save(tmp_path / "k.keras")
    np.testing.assert_array_equal(lamina.models.load_model(tmp_path / "k.keras").predict(x, verbose=0), yk)
    lm.save(tmp_path / "l.keras")
    np.testing.assert_array_equal(np.asarray(keras.models.load_model(tmp_path / "l.keras").predict(x, verbose=0)), yk)
    ke = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(30, 8)])
    le = lamina.Sequential([lamina.Input((3,), dtype="int32"), layers.Embedding(30, 8)])
    le.set_weights(ke.get_weights())
    ke.quantize("int8")
    le.quantize("int8")
    ids = rng.integers(0, 30, (4, 3)).astype(np.int32)
    np.testing.assert_allclose(le.predict(ids, verbose=0), np.asarray(ke.predict(ids, verbose=0)), rtol=1e-6)
