"""Mixed precision (lamina.mixed_precision, lamina.dtype_policies): policies, what layers do under
"mixed_bfloat16" (float32 weights, bfloat16 computation, float32 losses and metrics), training,
replay, saving, and parity with Keras 3 where it is installed."""
import numpy as np
import pytest

import lamina
from lamina import layers, ops
import importlib
from keras_ref import keras_or_none

_device = importlib.import_module("lamina.backend.device")


@pytest.fixture(autouse=True)
def _policy_reset():
    lamina.mixed_precision.set_global_policy("float32")
    yield
    lamina.mixed_precision.set_global_policy("float32")


@pytest.fixture
def mixed():
    lamina.mixed_precision.set_global_policy("mixed_bfloat16")


def test_policy_objects():
    p = lamina.mixed_precision.Policy("mixed_bfloat16")
    assert p.name == "mixed_bfloat16" and p.compute_dtype == "bfloat16" and p.variable_dtype == "float32"
    assert lamina.dtype_policies.DTypePolicy("bfloat16").variable_dtype == "bfloat16"
    assert lamina.dtype_policies.DTypePolicy("int32").compute_dtype == "int32"
    assert repr(p) == '<DTypePolicy "mixed_bfloat16">'
    assert lamina.dtype_policies.DTypePolicy.from_config(p.get_config()) == p
    assert lamina.mixed_precision.global_policy().name == "float32"
    lamina.mixed_precision.set_global_policy(p)
    assert lamina.mixed_precision.global_policy() is p
    assert lamina.config.dtype_policy() is p
    lamina.config.set_dtype_policy("float32")
    assert lamina.mixed_precision.dtype_policy().name == "float32"
    assert lamina.mixed_precision.LossScaleOptimizer is lamina.optimizers.LossScaleOptimizer


@pytest.mark.parametrize("name,match", [
    ("mixed_float16", "mixed_bfloat16"), ("float16", "bfloat16"), ("float64", "float32"),
    ("mixed_int8", "mixed_bfloat16"), ("complex64", "dtype policy"),
])
def test_policies_lamina_lacks_are_refused(name, match):
    with pytest.raises(ValueError, match=match):
        lamina.mixed_precision.set_global_policy(name)
    with pytest.raises(ValueError, match=match):
        layers.Dense(2, dtype=name)
    assert lamina.mixed_precision.global_policy().name == "float32"


def test_layer_attributes_under_the_global_policy(mixed):
    d = layers.Dense(3)
    assert d.dtype_policy.name == "mixed_bfloat16"
    assert d.compute_dtype == "bfloat16" and d.variable_dtype == "float32" and d.dtype == "float32"
    out = d(np.ones((2, 4), np.float32))
    assert out.dtype == "bfloat16"
    assert d.kernel.dtype == "float32" and d.bias.dtype == "float32"
    assert isinstance(d.kernel, lamina.Variable)  # the weights are back after the call
    f = layers.Dense(3, dtype="float32")
    assert f.compute_dtype == "float32"
    assert f(out).dtype == "float32"  # a float32 layer casts bfloat16 inputs (autocast)
    n = layers.Dense(3, dtype="float32", autocast=False)
    with pytest.raises(TypeError):
        layers.Dense(3, autocast="yes")
    assert n.autocast is False
    lamina.mixed_precision.set_global_policy("float32")
    assert layers.Dense(2).compute_dtype == "float32"


def test_dense_computes_on_bfloat16_copies_of_its_weights(mixed, rng):
    d = layers.Dense(5, activation="tanh")
    x = rng.normal(size=(4, 6)).astype(np.float32)
    out = d(x).numpy()
    k, b = d.kernel.numpy(), d.bias.numpy()

    def r(a):
        return lamina.convert_to_tensor(np.asarray(a, np.float32), dtype="bfloat16")
    want = ops.tanh(ops.matmul(r(x), r(k)) + r(b)).numpy()
    np.testing.assert_allclose(out, want, rtol=2e-2, atol=2e-2)
    assert np.abs(out - np.tanh(x @ k + b)).max() > 0  # really computed in bfloat16 (not float32)


def test_normalization_and_embedding_keep_float32_state(mixed, rng):
    bn = layers.BatchNormalization()
    ln = layers.LayerNormalization()
    emb = layers.Embedding(10, 4)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = bn(x, training=True)
    assert y.dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in bn.weights)
    assert not np.allclose(bn.moving_mean.numpy(), 0)  # statistics updated in place, in float32
    assert ln(x).dtype == "bfloat16"
    assert emb(np.array([[1, 2, 3]])).dtype == "bfloat16"
    assert emb.embeddings.dtype == "float32"


def _data(rng, n=512):
    x = rng.normal(size=(n, 16)).astype(np.float32)
    y = ((x[:, 0] + x[:, 1] * x[:, 2]) > 0).astype(np.int32)
    return x, y


def _mlp():
    return lamina.Sequential([lamina.Input((16,)), layers.Dense(64, activation="relu"), layers.BatchNormalization(),
                              layers.Dropout(0.1), layers.Dense(32, activation="relu"), layers.Dense(2),
                              layers.Activation("softmax", dtype="float32")])


def test_training_a_mixed_model(mixed, rng):
    x, y = _data(rng)
    lamina.utils.set_random_seed(3)
    m = _mlp()
    m.compile(optimizer=lamina.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, epochs=8, batch_size=32, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0] * 0.7
    assert h.history["accuracy"][-1] > 0.85
    assert all(w.dtype == "float32" for w in m.weights)
    p = m.predict(x[:5], verbose=0)
    assert p.dtype == np.float32 and p.shape == (5, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    loss, acc = m.evaluate(x, y, verbose=0)
    assert acc > 0.85


def test_gradients_are_float32_for_float32_weights(mixed, rng):
    m = _mlp()
    x, y = _data(rng, 32)
    with lamina.GradientTape() as tape:
        p = m(x, training=True)
        loss = lamina.losses.SparseCategoricalCrossentropy()(y, p)
    assert loss.dtype == "float32"
    grads = tape.gradient(loss, m.trainable_weights)
    assert all(g is not None and g.dtype == "float32" for g in grads)


def test_replayed_steps_match_the_eager_ones(mixed, rng):
    """fit replays recorded steps from the fourth batch on: with bfloat16 those are calls on float32
    copies, which must not be bound into a compiled Program; the result is the eager one."""
    x, y = _data(rng, 256)
    results = []
    for eager in (False, True):
        lamina.utils.set_random_seed(7)
        m = lamina.Sequential([lamina.Input((16,)), layers.Dense(32, activation="relu"), layers.Dense(2)])
        m.compile(optimizer="sgd", loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=eager)
        m.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
        results.append([w.numpy() for w in m.weights])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_recurrent_attention_and_conv_layers(mixed, rng):
    seq = rng.normal(size=(4, 6, 8)).astype(np.float32)
    for layer in (layers.LSTM(5, return_sequences=True), layers.GRU(5), layers.SimpleRNN(5),
                  layers.Conv1D(4, 3), layers.MultiHeadAttention(2, 4)):
        out = layer(seq, seq) if isinstance(layer, layers.MultiHeadAttention) else layer(seq)
        assert out.dtype == "bfloat16", type(layer).__name__
        assert all(w.dtype == "float32" for w in layer.weights)
    img = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    m = lamina.Sequential([lamina.Input((8, 8, 3)), layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(),
                           layers.DepthwiseConv2D(3, padding="same"), layers.GlobalAveragePooling2D(),
                           layers.Dense(3, dtype="float32")])
    m.compile("adam", lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(img, np.array([0, 2]), epochs=2, verbose=0)
    assert m(img).dtype == "float32"


def test_frozen_layers_still_compute_in_bfloat16(mixed, rng):
    base = layers.Dense(8)
    base(np.ones((1, 4), np.float32))
    base.trainable = False
    assert base(np.ones((2, 4), np.float32)).dtype == "bfloat16"


def test_config_and_saving_keep_the_policy(mixed, rng, tmp_path):
    m = _mlp()
    cfg = m.layers[0].get_config()
    assert cfg["dtype"]["config"]["name"] == "mixed_bfloat16"
    assert m.layers[-1].get_config()["dtype"]["config"]["name"] == "float32"
    lamina.mixed_precision.set_global_policy("float32")
    again = layers.Dense.from_config(cfg)
    assert again.dtype_policy.name == "mixed_bfloat16"
    x, _ = _data(rng, 4)
    path = tmp_path / "m.keras"
    m.save(path)
    loaded = lamina.models.load_model(path)
    assert loaded.layers[0].compute_dtype == "bfloat16" and loaded.layers[-1].compute_dtype == "float32"
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), m.predict(x, verbose=0))


def test_losses_take_a_dtype():
    loss = lamina.losses.MeanSquaredError(dtype="bfloat16")
    assert loss.dtype == "bfloat16" and loss.get_config()["dtype"] == "bfloat16"
    assert lamina.losses.MeanSquaredError().dtype == "float32"
    with pytest.raises(ValueError, match="float dtype"):
        lamina.losses.MeanSquaredError(dtype="int32")
    y = np.array([[0.1, 0.2]], np.float32)
    assert loss(y, y + 0.5).dtype == "bfloat16"


def test_parity_with_keras_mixed_bfloat16(rng):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras 3 is not installed")
    x = rng.normal(size=(16, 12)).astype(np.float32)
    outs = []
    for lib in (keras, lamina):
        lib.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            m = lib.Sequential([lib.Input((12,)), lib.layers.Dense(20, activation="relu"),
                                lib.layers.Dense(7), lib.layers.Activation("softmax", dtype="float32")])
            if lib is keras:
                weights = [rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in m.weights]
            m.set_weights(weights)
            assert [str(w.dtype) for w in m.weights] == ["float32"] * 4
            inner = m.layers[0](x)
            outs.append((np.asarray(inner, np.float32) if lib is keras else inner.numpy(),
                         np.asarray(m.predict(x, verbose=0)), str(inner.dtype)))
        finally:
            lib.mixed_precision.set_global_policy("float32")
    (ki, kp, kdt), (li, lp, ldt) = outs
    assert kdt == ldt == "bfloat16"
    np.testing.assert_allclose(li, ki, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(lp, kp, rtol=3e-2, atol=1e-2)


@pytest.mark.parametrize("kind", ["attention", "lstm"])
def test_parity_with_keras_mixed_bfloat16_attention_and_lstm(kind, rng):
    """MultiHeadAttention (its projections, softmax and dropout under the layer's policy) and LSTM
    under mixed_bfloat16: bfloat16 outputs and Keras's values within bfloat16 tolerance."""
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras 3 is not installed")
    x = rng.normal(size=(4, 6, 8)).astype(np.float32)
    outs, weights = [], None
    for lib in (keras, lamina):
        lib.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            inp = lib.Input((6, 8))
            layer = lib.layers.MultiHeadAttention(2, 4) if kind == "attention" else \
                lib.layers.LSTM(5, return_sequences=True)
            y = layer(inp, inp) if kind == "attention" else layer(inp)
            m = lib.Model(inp, y)
            if weights is None:
                weights = [rng.normal(scale=0.4, size=w.shape).astype(np.float32) for w in m.weights]
            m.set_weights(weights)
            assert all(str(w.dtype) == "float32" for w in m.weights)
            if kind == "attention":  # its sub-layers compute under its policy, as Keras's do
                assert [lyr.compute_dtype for lyr in (layer._query_dense, layer._softmax)] == ["bfloat16"] * 2
            out = m(x)
            outs.append((np.asarray(out, np.float32) if lib is keras else out.numpy(), str(out.dtype)))
        finally:
            lib.mixed_precision.set_global_policy("float32")
    (k, kdt), (got, ldt) = outs
    assert kdt == ldt == "bfloat16"
    np.testing.assert_allclose(got, k, rtol=3e-2, atol=3e-2 * float(np.abs(k).max()))


def test_mixed_models_split_over_devices_and_mirrored(mixed, rng):
    x = rng.normal(size=(32, 12)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    with lamina.device("cpu:0"):
        inp = lamina.Input((12,))
        h = layers.Dense(16, activation="relu")(inp)
    with lamina.device("cpu:1"):
        out = layers.Dense(3, dtype="float32")(layers.Dense(16, activation="tanh")(h))
    m = lamina.Model(inp, out)
    m.compile("adam", lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    h1 = m.fit(x, y, epochs=3, batch_size=8, verbose=0, micro_batches=2).history["loss"]
    assert np.isfinite(h1).all() and h1[-1] < h1[0]
    assert m.layers[2].kernel.device.name == "cpu:1" and m.layers[2].kernel.dtype == "float32"
    strategy = lamina.distribute.MirroredStrategy(["cpu:0", "cpu:1"])
    with strategy.scope():
        m2 = lamina.Sequential([lamina.Input((12,)), layers.Dense(16, activation="relu"), layers.Dense(3, dtype="float32")])
        m2.compile("adam", lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    h2 = m2.fit(x, y, epochs=3, batch_size=8, verbose=0).history["loss"]
    assert np.isfinite(h2).all() and h2[-1] < h2[0]


def test_mixed_model_files_move_both_ways_with_keras(rng, tmp_path):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras 3 is not installed")
    x = rng.normal(size=(8, 12)).astype(np.float32)
    lamina.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        m = lamina.Sequential([lamina.Input((12,)), layers.Dense(16, activation="relu"), layers.Dense(3, dtype="float32")])
        m.save(tmp_path / "l.keras")
        km = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                               keras.layers.Dense(3, dtype="float32")])
        km.save(tmp_path / "k.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    k = keras.models.load_model(tmp_path / "l.keras")
    assert k.layers[0].dtype_policy.name == "mixed_bfloat16"
    np.testing.assert_allclose(np.asarray(k.predict(x, verbose=0)), m.predict(x, verbose=0), rtol=1e-2, atol=1e-3)
    lm = lamina.models.load_model(tmp_path / "k.keras")
    assert lm.layers[0].dtype_policy.name == "mixed_bfloat16"
    np.testing.assert_allclose(lm.predict(x, verbose=0), np.asarray(km.predict(x, verbose=0)), rtol=1e-2, atol=1e-3)


def test_embedding_gradients_stay_sparse_rows(mixed):
    """The table is not autocast (as Keras's): its lookup reads float32 rows and its gradient is
    the looked-up rows (IndexedSlices), not a dense table-sized gradient."""
    emb = layers.Embedding(1000, 8)
    ids = np.array([[3, 7, 3]])
    with lamina.GradientTape() as tape:
        out = emb(ids)
        loss = ops.sum(ops.cast(out, "float32"))
    assert out.dtype == "bfloat16"
    g = tape.gradient(loss, emb.embeddings)
    assert getattr(g, "_is_indexed_slices", False)
    dense = g.to_dense().numpy()
    np.testing.assert_array_equal(dense[3], 2.0)
    np.testing.assert_array_equal(dense[7], 1.0)
    assert dense.sum() == 3 * 8


_LAYERS = {
    "Conv1D": (lambda: layers.Conv1D(4, 3, padding="same", activation="relu"), (2, 10, 3)),
    "Conv2D": (lambda: layers.Conv2D(4, 3, activation="tanh"), (2, 8, 8, 3)),
    "Conv3D": (lambda: layers.Conv3D(4, 2), (2, 4, 4, 4, 3)),
    "Conv2DTranspose": (lambda: layers.Conv2DTranspose(4, 3, strides=2), (2, 5, 5, 3)),
    "SeparableConv2D": (lambda: layers.SeparableConv2D(4, 3), (2, 8, 8, 3)),
    "DepthwiseConv2D": (lambda: layers.DepthwiseConv2D(3), (2, 8, 8, 3)),
    "AveragePooling1D": (lambda: layers.AveragePooling1D(), (2, 8, 3)),
    "MaxPooling3D": (lambda: layers.MaxPooling3D(), (2, 4, 4, 4, 3)),
    "Dense_softmax": (lambda: layers.Dense(5, activation="softmax"), (2, 7)),
    "EinsumDense": (lambda: layers.EinsumDense("ab,bc->ac", output_shape=5, bias_axes="c"), (2, 7)),
    "LSTM": (lambda: layers.LSTM(5, return_sequences=True), (2, 6, 3)),
    "Bidirectional_GRU": (lambda: layers.Bidirectional(layers.GRU(4)), (2, 6, 3)),
    "Attention": (lambda: layers.Attention(), "qv"),
    "MultiHeadAttention": (lambda: layers.MultiHeadAttention(2, 4), "qv2"),
    "GroupNormalization": (lambda: layers.GroupNormalization(2), (2, 4, 4, 4)),
    "RMSNormalization": (lambda: layers.RMSNormalization(), (2, 5)),
    "PReLU": (lambda: layers.PReLU(), (2, 5)),
    "Softmax": (lambda: layers.Softmax(), (2, 5)),
    "UpSampling2D": (lambda: layers.UpSampling2D(interpolation="bilinear"), (2, 3, 3, 2)),
    "Resizing": (lambda: layers.Resizing(4, 4), (2, 6, 6, 3)),
    "TimeDistributed": (lambda: layers.TimeDistributed(layers.Dense(3)), (2, 4, 5)),
    "Dot": (lambda: layers.Dot(axes=1), "pair"),
}


@pytest.mark.parametrize("name", sorted(_LAYERS))
def test_layers_under_mixed_precision_match_float32(name, rng):
    """Each layer under mixed_bfloat16, with the float32 layer's weights: the same outputs and
    gradients within bfloat16's precision, bfloat16 outputs, float32 weights."""
    make, shape = _LAYERS[name]
    if shape in ("qv", "qv2", "pair"):
        args = [rng.normal(size=(2, 4, 8) if shape != "pair" else (2, 5)).astype(np.float32) for _ in range(2)]
    else:
        args = [rng.normal(size=shape).astype(np.float32)]

    def call(layer, vs):
        if shape in ("qv", "pair"):
            return layer(list(vs))
        return layer(vs[0], vs[1]) if shape == "qv2" else layer(vs[0])
    results, weights = {}, None
    for policy in ("float32", "mixed_bfloat16"):
        lamina.mixed_precision.set_global_policy(policy)
        layer = make()
        call(layer, [lamina.convert_to_tensor(a) for a in args])
        if weights is None:
            weights = layer.get_weights()
        else:
            layer.set_weights(weights)
        assert all(w.dtype == "float32" for w in layer.weights)
        vs = [lamina.Variable(a) for a in args]
        with lamina.GradientTape() as tape:
            y = call(layer, vs)
            w = lamina.convert_to_tensor(np.linspace(-1, 1, int(np.prod(y.shape)), dtype=np.float32).reshape(y.shape))
            loss = ops.sum(ops.cast(y, "float32") * w)
        grads = tape.gradient(loss, vs + layer.trainable_weights)
        results[policy] = (y, [g.numpy() for g in grads])
    (y32, g32), (y16, g16) = results["float32"], results["mixed_bfloat16"]
    assert y16.dtype == "bfloat16"
    scale = np.abs(y32.numpy()).max() + 1e-3
    np.testing.assert_allclose(y16.numpy(), y32.numpy(), rtol=5e-2, atol=5e-2 * scale)
    # a gradient that is zero in exact arithmetic (MultiHeadAttention's key bias: softmax ignores a
    # constant added to a row) is bfloat16 rounding noise under mixed precision: measured against
    # the largest gradient
    top = max(np.abs(a).max() for a in g32)
    for a, b in zip(g32, g16):
        size = np.abs(a).max() if np.abs(a).max() > 1e-4 * top else 0.1 * top
        np.testing.assert_allclose(b, a, rtol=0.1, atol=0.1 * (size + 1e-3))
