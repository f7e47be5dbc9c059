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
    with pytest.raises(ValueError, match="expected mode 'int8' or 'int4', received 'float8'.*float8.*not supported"):
        layers.Dense(2).quantize("float8")
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
        layers.Dense(2, quantization_config={"class_name": "Float8QuantizationConfig", "config": {}})


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


# ---- Model.quantize(filters=...), array conversion, the quantized policy, EinsumDense --------------

def _two_dense():
    return lamina.Sequential([lamina.Input((10,)), layers.Dense(32, activation="relu", name="dense_1"),
                              layers.Dense(1, name="output_head")])


def test_model_quantize_filters_as_keras():
    modes = lambda m: {l.name: l.quantization_mode for l in m.layers}  # noqa: E731
    m = _two_dense()
    m.quantize("int8", filters=["dense", "^((?!output).)*$"])
    assert modes(m) == {"dense_1": "int8", "output_head": None}
    m = _two_dense()
    m.quantize("int8", filters=lambda layer: isinstance(layer, layers.Dense) and layer.name != "output_head")
    assert modes(m) == {"dense_1": "int8", "output_head": None}
    m = _two_dense()
    m.quantize("int8", filters="head$")
    assert modes(m) == {"dense_1": None, "output_head": "int8"}
    m = _two_dense()
    m.quantize("int8", filters=("zzz", "dense_"))
    assert modes(m) == {"dense_1": "int8", "output_head": None}
    m = _two_dense()
    m.quantize("int8", filters="no_such_layer")     # Keras: nothing selected, nothing quantized, no error
    assert modes(m) == {"dense_1": None, "output_head": None}
    m.quantize("int8", type_check=False)            # Keras's keyword is accepted
    assert modes(m) == {"dense_1": "int8", "output_head": "int8"}
    m = _two_dense()
    with pytest.raises(ValueError, match="`filters` argument must be a regex string.*Received: <class 'int'>"):
        m.quantize("int8", filters=3)
    with pytest.raises(ValueError, match="Unrecognized keyword arguments .*'foo'"):
        m.quantize("int8", foo=1)
    assert modes(m) == {"dense_1": None, "output_head": None}
    with pytest.raises(ValueError, match="no layer can be quantized .*EinsumDense"):
        lamina.Sequential([lamina.Input((3,)), layers.Activation("relu")]).quantize("int8")


def test_quantized_kernel_converts_to_numpy():
    layer = layers.Dense(4)
    layer.build((None, 3))
    layer.quantize("int8")
    a = lamina.ops.convert_to_numpy(layer.kernel)
    b = np.asarray(layer.kernel)
    assert isinstance(a, np.ndarray) and a.dtype == np.int8 and a.shape == (3, 4)
    assert b.dtype == np.int8 and b.shape == (3, 4)
    np.testing.assert_array_equal(a, layer.kernel.numpy())
    np.testing.assert_array_equal(b, a)
    assert np.asarray(layer.kernel, dtype=np.float32).dtype == np.float32
    assert np.abs(a).max() == 127


def test_quantize_sets_keras_quantized_dtype_policy(tmp_path):
    from lamina import dtype_policies
    layer = layers.Dense(4)
    layer.build((None, 3))
    assert layer.dtype_policy.quantization_mode is None
    layer.quantize("int8")
    pol = layer.dtype_policy
    assert isinstance(pol, dtype_policies.QuantizedDTypePolicy)
    assert (pol.name, pol.quantization_mode, pol.compute_dtype, pol.variable_dtype) == \
        ("int8_from_float32", "int8", "float32", "float32")
    assert layer.get_config()["dtype"] == {"module": "keras.dtype_policies", "class_name": "QuantizedDTypePolicy",
                                           "config": {"mode": "int8", "source_name": "float32"},
                                           "registered_name": None}
    again = dtype_policies.get("int8_from_float32")
    assert again == pol and dtype_policies.get(dtype_policies.serialize(pol)) == pol
    mixed = dtype_policies.get("int8_from_mixed_bfloat16")
    assert (mixed.compute_dtype, mixed.variable_dtype, mixed.quantization_mode) == ("bfloat16", "float32", "int8")
    with pytest.raises(ValueError, match="float8 quantized policy; lamina quantizes to int8 and int4 only"):
        dtype_policies.get("float8_from_float32")
    model = lamina.Sequential([lamina.Input((3,)), layers.Dense(4, name="d"), layers.ReLU(name="r")])
    model.quantize("int8")
    assert model.get_layer("d").dtype_policy.name == "int8_from_float32"
    assert model.get_layer("r").dtype_policy.name == "float32"
    model.save(tmp_path / "m.keras")
    loaded = lamina.models.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("d").dtype_policy == model.get_layer("d").dtype_policy
    assert loaded.get_layer("d").quantization_mode == "int8"
    d = layers.Dense(2, dtype="int8_from_mixed_bfloat16")   # a quantized config's policy keeps its source
    d.build_from_shape((None, 3))
    assert d.quantization_mode == "int8"
    e = layers.Dense(2)
    e.build((None, 3))
    e.dtype_policy = "int8_from_float32"        # Keras: setting a quantized policy quantizes a built layer
    assert e.quantization_mode == "int8" and e.kernel.dtype == "int8"
    assert d.dtype_policy.name == "int8_from_mixed_bfloat16"


def _einsum_reference(eq, kernel, bias, x, in_reduced, k_reduced, scale_layout):
    """numpy: Keras's int8 EinsumDense (abs-max kernel over its reduced axes, input over its)."""
    ks = (np.float32(127) / (np.abs(kernel).max(axis=k_reduced, keepdims=True) + np.float32(1e-7))).astype(np.float32)
    qk = np.clip(np.round(kernel * ks), -127, 127)
    xs = (np.float32(127) / (np.abs(x).max(axis=in_reduced, keepdims=True) + np.float32(1e-7))).astype(np.float32)
    qx = np.clip(np.round(x * xs), -127, 127)
    acc = np.einsum(eq, qx.astype(np.int64), qk.astype(np.int64)).astype(np.float32)
    y = acc / (scale_layout(xs) * scale_layout(ks, kernel=True))
    return y + bias if bias is not None else y, qk.astype(np.int8)


def test_einsum_dense_int8_matches_the_numpy_reference():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 16)).astype(np.float32)
    layer = layers.EinsumDense("abc,cd->abd", output_shape=(5, 8), bias_axes="d")
    y_float = layer(x).numpy()
    layer.bias.assign(rng.standard_normal(8).astype(np.float32))
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    y_float = layer(x).numpy()
    layer.quantize("int8")
    assert layer.quantization_mode == "int8" and layer.dtype_policy.name == "int8_from_float32"
    assert [(w.path.split("/")[-1], str(w.dtype), tuple(w.shape)) for w in layer.weights] == \
        [("bias", "float32", (8,)), ("kernel", "int8", (16, 8)), ("kernel_scale", "float32", (1, 1, 8))]
    assert layer.trainable_weights == [layer.bias]
    ref, qk = _einsum_reference("abc,cd->abd", kernel, bias, x, (2,), (0,),
                                lambda s, kernel=False: s[None] if kernel else s)
    np.testing.assert_array_equal(np.asarray(layer.kernel), qk)
    y = layer(x).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    assert np.abs(y - y_float).max() < 0.05 * np.abs(y_float).max()
    assert layer.get_config()["quantization_config"]["class_name"] == "Int8QuantizationConfig"


# equation, input shape, output_shape, bias_axes: matrix-product forms (one with a transposed
# kernel), a label shared by the input, the kernel and the output (the general form), and one
# whose reduction (1200 values) needs the exact split
_EQUATIONS = [("ab,bc->ac", (4, 6), 5, "c"), ("abc,cd->abd", (2, 3, 16), (3, 16), "d"),
              ("abc,cde->abde", (2, 4, 8), (4, 2, 3), "de"), ("abcd,cde->abe", (2, 4, 2, 3), (4, 8), "e"),
              ("abc,dc->abd", (2, 3, 7), (3, 5), None), ("abc,bcd->abd", (2, 3, 9), (3, 4), "bd"),
              ("abc,bcd->abd", (2, 2, 1200), (2, 3), None)]


def test_einsum_dense_int8_ellipsis_equations():
    """Keras 3.15 cannot quantize these (its _analyze_quantization_info gets the input's rank
    where it wants its shape); lamina does, by the labels Keras means to give the ellipsis."""
    rng = np.random.default_rng(8)
    cases = [("...b,bc->...c", "xyzb,bc->xyzc", (2, 3, 4, 6), 5, (3,), (1, 1, 1, 5),
              lambda s, kernel=False: s),
             ("ab...,bc->ac...", "abx,bc->acx", (2, 6, 3), 4, (1,), (1, 4, 1),
              lambda s, kernel=False: s[:, :, None] if kernel else s)]
    for eq, plain, shape, out, in_reduced, scale_shape, layout in cases:
        x = rng.standard_normal(shape).astype(np.float32)
        layer = layers.EinsumDense(eq, output_shape=out)
        layer.build(shape)
        kernel = layer.kernel.numpy()
        layer.quantize("int8")
        assert tuple(layer.kernel_scale.shape) == scale_shape
        ref, qk = _einsum_reference(plain, kernel, None, x, in_reduced, (0,), layout)
        np.testing.assert_array_equal(np.asarray(layer.kernel), qk)
        np.testing.assert_allclose(layer(x).numpy(), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(keras_or_none() is None, reason="keras is not installed")
@pytest.mark.parametrize("eq,shape,out,bias_axes", _EQUATIONS)
def test_einsum_dense_int8_equals_keras(eq, shape, out, bias_axes):
    keras = keras_or_none()
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    kl = keras.layers.EinsumDense(eq, output_shape=out, bias_axes=bias_axes)
    kl.build(shape)
    ll = layers.EinsumDense(eq, output_shape=out, bias_axes=bias_axes)
    ll.build(shape)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in kl.get_weights()]
    kl.set_weights(weights)
    ll.set_weights(weights)
    kl.quantize("int8")
    ll.quantize("int8")
    assert [(w.path.split("/")[-1], tuple(w.shape)) for w in kl.weights] == \
        [(w.path.split("/")[-1], tuple(w.shape)) for w in ll.weights]
    for kw, lw in zip(kl.weights, ll.weights):
        np.testing.assert_array_equal(np.asarray(kw), np.asarray(lw))
    yk = np.asarray(kl(x))
    yl = ll(x).numpy()
    np.testing.assert_allclose(yl, yk, rtol=2e-6, atol=1e-6 * np.abs(yk).max())


def test_einsum_dense_int8_trains_not_and_errors():
    model = lamina.Sequential([lamina.Input((3, 4)), layers.EinsumDense("abc,cd->abd", (3, 2), name="ed")])
    model.compile(optimizer="sgd", loss="mse")
    model.quantize("int8")
    x, y = np.ones((2, 3, 4), np.float32), np.ones((2, 3, 2), np.float32)
    with pytest.raises(RuntimeError, match="for inference"):
        model.fit(x, y, verbose=0)
    general = layers.EinsumDense("abc,bcd->abd", (3, 2))
    general.build((None, 3, 4))
    general.quantize("int8")
    with lamina.GradientTape() as tape:
        xt = lamina.convert_to_tensor(x)
        tape.watch(xt)
        with pytest.raises(RuntimeError, match="qeinsum: a quantized .int8. layer computes no gradients"):
            general(xt)
    with pytest.raises(ValueError, match="already quantized"):
        model.get_layer("ed").quantize("int8")
    with pytest.raises(ValueError, match=r"quantization .* is not supported by lamina"):
        layers.EinsumDense("ab,bc->ac", 3, quantization_config={"mode": "int8"})


def test_model_quantize_reaches_multi_head_attention(tmp_path):
    rng = np.random.default_rng(6)
    inputs = lamina.Input((8,), dtype="int32")
    h = layers.Embedding(50, 16, name="embedding")(inputs)
    h = layers.EinsumDense("abc,cd->abd", output_shape=(8, 16), bias_axes="d", name="einsum_dense")(h)
    h = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")(h, h)
    model = lamina.Model(inputs, layers.Dense(1, name="head")(layers.GlobalAveragePooling1D()(h)))
    ids = rng.integers(0, 50, (4, 8)).astype(np.int32)
    y0 = model.predict(ids, verbose=0)
    model.quantize("int8")
    mha = model.get_layer("mha")
    assert [d.quantization_mode for d in (mha.query_dense, mha.key_dense, mha.value_dense, mha.output_dense)] == \
        ["int8"] * 4
    assert model.get_layer("einsum_dense").kernel.dtype == "int8"
    y1 = model.predict(ids, verbose=0)
    assert np.abs(y1 - y0).max() < 0.05 * max(np.abs(y0).max(), 1e-3)
    model.save(tmp_path / "m.keras")
    again = lamina.models.load_model(tmp_path / "m.keras")
    assert again.get_layer("mha").query_dense.quantization_mode == "int8"
    assert again.get_layer("einsum_dense").dtype_policy.name == "int8_from_float32"
    np.testing.assert_array_equal(again.predict(ids, verbose=0), y1)
    sub = lamina.Sequential([lamina.Input((3, 4)), layers.EinsumDense("abc,cd->abd", (3, 2), name="ed"),
                             layers.Dense(2, name="d")])
    sub.quantize("int8", filters=lambda layer: isinstance(layer, layers.EinsumDense))
    assert [l.quantization_mode for l in sub.layers] == ["int8", None]


@pytest.mark.skipif(keras_or_none() is None, reason="keras is not installed")
def test_einsum_dense_int8_files_both_ways_with_keras(tmp_path):
    keras = keras_or_none()
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 8, 16)).astype(np.float32)

    def build(lib):
        inp = lib.Input((8, 16))
        h = lib.layers.EinsumDense("abc,cd->abd", output_shape=(8, 16), bias_axes="d", name="ed")(inp)
        h = lib.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(h, h)
        return lib.Model(inp, h)

    km, lm = build(keras), build(lamina)
    weights = [rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in km.get_weights()]
    km.set_weights(weights)
    lm.set_weights(weights)
    km.quantize("int8")
    lm.quantize("int8")
    for kw, lw in zip(km.weights, lm.weights):
        assert kw.path.split("/")[-1] == lw.path.split("/")[-1]
        np.testing.assert_array_equal(np.asarray(kw), np.asarray(lw))
    yk = np.asarray(km.predict(x, verbose=0))
    yl = lm.predict(x, verbose=0)
    np.testing.assert_allclose(yl, yk, rtol=1e-5, atol=1e-5 * np.abs(yk).max())
    km.save(tmp_path / "k.keras")
    from_keras = lamina.models.load_model(tmp_path / "k.keras")
    assert from_keras.get_layer("ed").quantization_mode == "int8"
    np.testing.assert_array_equal(from_keras.predict(x, verbose=0), yl)
    # Keras 3.15 cannot load its own quantized MultiHeadAttention (its projections' configs are not
    # saved, so they are rebuilt in float32); lamina's file is checked in Keras without one
    km2, lm2 = (lib.Sequential([lib.Input((8, 16)), lib.layers.EinsumDense("abc,cd->abd", output_shape=(8, 4),
                                                                           bias_axes="d", name="ed"),
                                lib.layers.Dense(3, name="d")]) for lib in (keras, lamina))
    lm2.set_weights(km2.get_weights())
    km2.quantize("int8")
    lm2.quantize("int8")
    yk2 = np.asarray(km2.predict(x, verbose=0))
    lm2.save(tmp_path / "l.keras")
    from_lamina = keras.models.load_model(tmp_path / "l.keras")
    assert from_lamina.get_layer("ed").quantization_mode == "int8"
    assert from_lamina.get_layer("ed").dtype_policy.name == "int8_from_float32"
    np.testing.assert_array_equal(np.asarray(from_lamina.predict(x, verbose=0)), yk2)
    np.testing.assert_allclose(lm2.predict(x, verbose=0), yk2, rtol=1e-5, atol=1e-5 * np.abs(yk2).max())


# ---- int4 (Keras 3.15's quantize("int4"): Dense, EinsumDense, Embedding) ----------------------------

def _int4_grouped_reference(w, block):
    """numpy: Keras's grouped asymmetric int4 (groups of `block` rows, a zero point each)."""
    rows, cols = w.shape
    groups = -(-rows // block)
    wp = np.concatenate([w, np.zeros((groups * block - rows, cols), np.float32)]) if groups * block > rows else w
    r = wp.reshape(groups, block, cols)
    lo, hi = r.min(1), r.max(1)
    scale = ((hi - lo) + np.float32(1e-7)) / np.float32(15)
    zero = np.clip(np.round(-lo / scale) - 8, -8, 7)
    q = np.clip(np.round(r / scale[:, None]) + zero[:, None], -8, 7).reshape(-1, cols)[:rows]
    g = np.arange(rows) // block
    return q.astype(np.int8), scale.astype(np.float32), zero.astype(np.int8), (q - zero[g]) * scale[g]


def _unpack_ref(packed, n):
    u = packed.view(np.uint8)
    out = np.stack([u & 15, u >> 4], -1).reshape(u.shape[:-1] + (-1,)).astype(np.int16)
    return np.where(out > 7, out - 16, out)[..., :n].astype(np.int8)


def test_int4_dense_einsum_embedding_match_the_numpy_reference():
    from lamina import dtype_policies
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 200)).astype(np.float32)
    d = layers.Dense(5, activation="relu")
    y_float = d(x).numpy()
    d.bias.assign(rng.standard_normal(5).astype(np.float32) * 0.1)
    kernel, bias = d.kernel.numpy(), d.bias.numpy()
    y_float = d(x).numpy()
    d.quantize("int4")
    assert d.quantization_mode == "int4"
    assert isinstance(d.dtype_policy, dtype_policies.Int4DTypePolicy)
    assert (d.dtype_policy.name, d.dtype_policy.block_size) == ("int4/128_from_float32", 128)
    assert [(w.path.split("/")[-1], str(w.dtype), tuple(w.shape)) for w in d.weights] == \
        [("bias", "float32", (5,)), ("kernel", "int8", (200, 3)), ("kernel_scale", "float32", (2, 5)),
         ("kernel_zero", "int8", (2, 5)), ("g_idx", "float32", (200,))]
    assert d.trainable_weights == [d.bias] and d.count_params() == 825
    q, scale, zero, dq = _int4_grouped_reference(kernel, 128)
    np.testing.assert_array_equal(_unpack_ref(np.asarray(d.kernel), 5), q)
    np.testing.assert_array_equal(d.kernel_scale.numpy(), scale)
    np.testing.assert_array_equal(np.asarray(d.kernel_zero), zero)
    np.testing.assert_array_equal(d.g_idx.numpy(), np.arange(200) // 128)
    y = d(x).numpy()
    np.testing.assert_allclose(y, np.maximum(x @ dq + bias, 0), rtol=1e-5, atol=1e-5)
    assert np.abs(y - y_float).max() < 0.25 * np.abs(y_float).max()
    cfg = d.get_config()
    assert cfg["dtype"] == {"module": "keras.dtype_policies", "class_name": "Int4DTypePolicy",
                            "config": {"mode": "int4/128", "source_name": "float32"}, "registered_name": None}
    assert cfg["quantization_config"]["class_name"] == "Int4QuantizationConfig"
    assert cfg["quantization_config"]["config"]["block_size"] == 128
    again = layers.Dense.from_config(cfg)
    again.build_from_shape((None, 200))
    assert again.quantization_mode == "int4" and again.dtype_policy == d.dtype_policy
    # EinsumDense: the kernel (c, d, e) read as (c, d * e)
    e = layers.EinsumDense("abc,cde->abde", output_shape=(4, 2, 3), bias_axes="de")
    xe = rng.standard_normal((2, 4, 8)).astype(np.float32)
    e.build(xe.shape)
    k = e.kernel.numpy()
    e.quantize("int4")
    assert [(w.path.split("/")[-1], tuple(w.shape)) for w in e.weights] == \
        [("bias", (2, 3)), ("kernel", (8, 3)), ("kernel_scale", (1, 6)), ("kernel_zero", (1, 6)), ("g_idx", (8,))]
    _, _, _, dq = _int4_grouped_reference(k.reshape(8, 6), 128)
    np.testing.assert_allclose(e(xe).numpy(), np.einsum("abc,cde->abde", xe, dq.reshape(8, 2, 3)) + e.bias.numpy(),
                               rtol=1e-5, atol=1e-5)
    # Embedding: groups along output_dim (300 = 3 groups), one scale and zero per row and group
    emb = layers.Embedding(20, 300)
    ids = np.array([[1, 19, 0]], np.int32)
    emb.build(None)
    table = emb.embeddings.numpy()
    emb.quantize("int4")
    assert [(w.path.split("/")[-1], tuple(w.shape)) for w in emb.weights] == \
        [("embeddings", (20, 150)), ("embeddings_scale", (20, 3)), ("embeddings_zero", (20, 3)), ("g_idx", (300,))]
    _, _, _, dq = _int4_grouped_reference(table.T, 128)
    np.testing.assert_allclose(emb(ids).numpy(), dq.T[ids], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="outside the table's 20 rows"):
        emb(np.array([[20]], np.int32))


def test_int4_per_channel_policy_and_legacy_name():
    """A layer made with Keras's per-channel policy ("int4/-1_from_...", or the legacy
    "int4_from_...") is quantized symmetrically: q / scale, no zero point, no g_idx."""
    from lamina import dtype_policies
    rng = np.random.default_rng(11)
    for name in ("int4/-1_from_float32", "int4_from_float32"):
        d = layers.Dense(6, dtype=name)
        d.build_from_shape((None, 7))   # a quantized config's layer is quantized once built
        assert d.quantization_mode == "int4" and d.dtype_policy.name == "int4/-1_from_float32"
        assert [(w.path.split("/")[-1], tuple(w.shape)) for w in d.weights] == \
            [("bias", (6,)), ("kernel", (7, 3)), ("kernel_scale", (6,))]
        x = rng.standard_normal((2, 7)).astype(np.float32)
        q = _unpack_ref(np.asarray(d.kernel), 6).astype(np.float32)
        np.testing.assert_allclose(d(x).numpy(), (x @ q) / d.kernel_scale.numpy() + d.bias.numpy(), rtol=1e-5,
                                   atol=1e-6)
    assert dtype_policies.get("int4_from_float32").quantization_mode == "int4"
    p = dtype_policies.get("int4/64_from_mixed_bfloat16")
    assert (p.quantization_mode, p.block_size, p.compute_dtype) == ("int4", 64, "bfloat16")
    assert dtype_policies.get(dtype_policies.serialize(p)) == p


def test_model_quantize_int4_filters_leaves_other_layers_float_and_errors(tmp_path):
    rng = np.random.default_rng(12)
    model = lamina.Sequential([lamina.Input((6, 6, 2)), layers.Conv2D(3, 3, name="conv"), layers.Flatten(),
                               layers.Dense(8, activation="relu", name="dense_1"), layers.Dense(2, name="head")])
    model.compile(optimizer="sgd", loss="mse")
    x = rng.standard_normal((4, 6, 6, 2)).astype(np.float32)
    y0 = model.predict(x, verbose=0)
    model.quantize("int4", filters=lambda layer: layer.name != "head")
    assert [l.quantization_mode for l in model.layers] == [None, None, "int4", None]   # Conv2D: no int4, as Keras
    model.quantize("int4", filters="head$")
    assert model.get_layer("head").quantization_mode == "int4"
    y1 = model.predict(x, verbose=0)
    assert np.abs(y1 - y0).max() < 0.2 * np.abs(y0).max()
    with pytest.raises(RuntimeError, match="for inference"):
        model.fit(x, np.ones((4, 2), np.float32), verbose=0)
    assert model.evaluate(x, np.ones((4, 2), np.float32), verbose=0) >= 0
    d = model.get_layer("dense_1")
    with lamina.GradientTape() as tape:
        xt = lamina.convert_to_tensor(rng.standard_normal((2, 48)).astype(np.float32))
        tape.watch(xt)
        with pytest.raises(RuntimeError, match="a quantized .int4. layer computes no gradients"):
            d(xt)
    with pytest.raises(ValueError, match="already quantized"):
        d.quantize("int4")
    with pytest.raises(NotImplementedError, match="no int4 form"):
        model.get_layer("conv").quantize("int4")
    with pytest.raises(ValueError, match="received 'float8'"):
        model.quantize("float8")
    with pytest.raises(ValueError, match="no layer can be quantized"):
        lamina.Sequential([lamina.Input((6, 6, 2)), layers.Conv2D(3, 3)]).quantize("int4")
    with pytest.raises(NotImplementedError):
        model.export(str(tmp_path / "m.onnx"), format="onnx")
    assert not (tmp_path / "m.onnx").exists()
    model.save(tmp_path / "m.keras")
    again = lamina.models.load_model(tmp_path / "m.keras")
    assert [l.dtype_policy.name for l in again.layers] == [l.dtype_policy.name for l in model.layers]
    np.testing.assert_array_equal(again.predict(x, verbose=0), y1)
    fresh = lamina.Sequential([lamina.Input((6, 6, 2)), layers.Conv2D(3, 3, name="conv"), layers.Flatten(),
                               layers.Dense(8, activation="relu"), layers.Dense(2)])
    fresh.quantize("int4")
    model.save_weights(tmp_path / "w.weights.h5")
    fresh.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), y1)


def test_model_quantize_int4_reaches_multi_head_attention(tmp_path):
    rng = np.random.default_rng(13)
    inputs = lamina.Input((8,), dtype="int32")
    h = layers.Embedding(50, 16, name="embedding")(inputs)
    h = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")(h, h)
    model = lamina.Model(inputs, layers.Dense(1, name="head")(layers.GlobalAveragePooling1D()(h)))
    ids = rng.integers(0, 50, (4, 8)).astype(np.int32)
    model.quantize("int4")
    mha = model.get_layer("mha")
    assert [p.quantization_mode for p in (mha.query_dense, mha.key_dense, mha.value_dense, mha.output_dense)] == \
        ["int4"] * 4
    y = model.predict(ids, verbose=0)
    model.save(tmp_path / "m.keras")
    again = lamina.models.load_model(tmp_path / "m.keras")
    assert again.get_layer("mha").query_dense.quantization_mode == "int4"
    np.testing.assert_array_equal(again.predict(ids, verbose=0), y)


@pytest.mark.skipif(keras_or_none() is None, reason="keras is not installed")
@pytest.mark.parametrize("block_size", [None, -1, 4])
def test_int4_equals_keras_and_files_both_ways(tmp_path, block_size):
    keras = keras_or_none()
    rng = np.random.default_rng(14)
    x = rng.standard_normal((4, 6, 40)).astype(np.float32)

    def build(lib):
        return lib.Sequential([lib.Input((6, 40)), lib.layers.Dense(9, activation="relu", name="d"),
                               lib.layers.EinsumDense("abc,cde->abde", (6, 3, 5), bias_axes="de", name="e1"),
                               lib.layers.Reshape((6, 15)), lib.layers.EinsumDense("abc,dc->abd", (6, 4), name="e2")])

    km, lm = build(keras), build(lamina)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in km.get_weights()]
    km.set_weights(weights)
    lm.set_weights(weights)
    if block_size is None:
        km.quantize("int4")
        lm.quantize("int4")
    else:   # lamina has no quantization configs: the Keras model's file brings the block size
        km.quantize(config=keras.quantizers.Int4QuantizationConfig(block_size=block_size))
        km.save(tmp_path / "k0.keras")
        lm = lamina.models.load_model(tmp_path / "k0.keras")
        lm.set_weights(km.get_weights())
    assert [l.dtype_policy.name for l in lm.layers] == [l.dtype_policy.name for l in km.layers]
    assert [l.count_params() for l in lm.layers] == [l.count_params() for l in km.layers]
    assert [(w.path.split("/")[-1], tuple(w.shape), str(w.dtype)) for w in km.weights] == \
        [(w.path.split("/")[-1], tuple(w.shape), str(w.dtype)) for w in lm.weights]
    for kw, lw in zip(km.weights, lm.weights):
        np.testing.assert_array_equal(np.asarray(kw), np.asarray(lw))
    yk = np.asarray(km.predict(x, verbose=0))
    yl = lm.predict(x, verbose=0)
    np.testing.assert_allclose(yl, yk, rtol=1e-5, atol=1e-5 * np.abs(yk).max())
    km.save(tmp_path / "k.keras")
    np.testing.assert_array_equal(lamina.models.load_model(tmp_path / "k.keras").predict(x, verbose=0), yl)
    lm.save(tmp_path / "l.keras")
    from_lamina = keras.models.load_model(tmp_path / "l.keras")
    assert [l.dtype_policy.name for l in from_lamina.layers] == [l.dtype_policy.name for l in km.layers]
    np.testing.assert_array_equal(np.asarray(from_lamina.predict(x, verbose=0)), yk)
    ke = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(30, 300)])
    le = lamina.Sequential([lamina.Input((3,), dtype="int32"), layers.Embedding(30, 300)])
    le.set_weights(ke.get_weights())
    if block_size is None:
        ke.quantize("int4")
        le.quantize("int4")
    else:
        ke.quantize(config=keras.quantizers.Int4QuantizationConfig(block_size=block_size))
        ke.save(tmp_path / "e.keras")
        le = lamina.models.load_model(tmp_path / "e.keras")
    for kw, lw in zip(ke.weights, le.weights):
        assert kw.path.split("/")[-1] == lw.path.split("/")[-1]
        np.testing.assert_array_equal(np.asarray(kw), np.asarray(lw))
    ids = rng.integers(0, 30, (4, 3)).astype(np.int32)
    ye = np.asarray(ke.predict(ids, verbose=0))
    np.testing.assert_allclose(le.predict(ids, verbose=0), ye, rtol=1e-6, atol=1e-7)
    le.save(tmp_path / "le.keras")
    np.testing.assert_allclose(np.asarray(keras.models.load_model(tmp_path / "le.keras").predict(ids, verbose=0)),
                               ye, rtol=1e-6, atol=1e-7)
