"""Models trained to a threshold on small generated problems, through compile/fit/evaluate/predict."""
import numpy as np
import pytest

import lamina
from lamina import layers


def _blobs(n=400, seed=0, classes=3, dim=2):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim)) * 4
    y = rng.integers(0, classes, n)
    x = (centers[y] + rng.standard_normal((n, dim))).astype(np.float32)
    return x, y.astype(np.int64)


def test_xor_with_sequential():
    lamina.utils.set_random_seed(1)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([[0], [1], [1], [0]], np.float32)
    model = lamina.Sequential([lamina.Input(shape=(2,)), layers.Dense(16, activation="tanh"),
                               layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=lamina.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=200, batch_size=4, verbose=0)
    assert hist.history["loss"][-1] < 0.1
    assert model.evaluate(x, y, verbose=0)[1] == 1.0
    np.testing.assert_array_equal(model.predict(x, verbose=0).round(), y)


def test_blobs_functional_sparse_labels():
    x, y = _blobs()
    inp = lamina.Input(shape=(2,))
    h = layers.Dense(16, activation="relu")(inp)
    out = layers.Dense(3, activation="softmax")(h)
    model = lamina.Model(inp, out)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=30, batch_size=32, verbose=0, validation_split=0.2)
    assert hist.history["val_accuracy"][-1] > 0.9
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_one_hot_labels_and_logits():
    x, y = _blobs(seed=2)
    model = lamina.Sequential([layers.Dense(16, activation="relu"), layers.Dense(3)])
    model.compile(optimizer="adam", loss=lamina.losses.CategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, lamina.utils.to_categorical(y, 3), epochs=30, batch_size=32, verbose=0)
    loss, acc = model.evaluate(x, lamina.utils.to_categorical(y, 3), verbose=0)
    assert acc > 0.9


def test_generator_input_and_steps_per_epoch():
    x, y = _blobs(seed=3)

    def gen():
        while True:
            for i in range(0, len(x), 50):
                yield x[i:i + 50], y[i:i + 50]
    model = lamina.Sequential([lamina.Input(shape=(2,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(gen(), steps_per_epoch=8, epochs=3, verbose=0)
    assert len(hist.history["loss"]) == 3


def test_sample_and_class_weights_change_the_loss():
    x, y = _blobs(n=64, seed=4)
    model = lamina.Sequential([lamina.Input(shape=(2,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    base = model.test_on_batch(x, y)
    sw = np.where(y == 0, 2.0, 0.0).astype(np.float32)
    weighted = model.test_on_batch(x, y, sample_weight=sw)
    per = lamina.losses.sparse_categorical_crossentropy(y, model.predict(x, verbose=0)).numpy()
    assert weighted == pytest.approx(float((per * sw).sum() / len(y)), rel=1e-5)
    assert base == pytest.approx(float(per.mean()), rel=1e-5)


def test_bad_inputs_to_fit():
    model = lamina.Sequential([lamina.Input(shape=(3,)), layers.Dense(1)])
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(np.zeros((4, 3)), np.zeros((4, 1)))
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="cardinality.*x sizes: 4.*y sizes: 5"):
        model.fit(np.zeros((4, 3)), np.zeros((5, 1)), verbose=0)
    with pytest.raises(ValueError, match=r"\(None, 3\).*\(4, 2\)|expected.*3"):
        model.fit(np.zeros((4, 2)), np.zeros((4, 1)), verbose=0)
    with pytest.raises(ValueError, match="Unknown loss"):
        model.compile(optimizer="sgd", loss="msee")
    with pytest.raises(ValueError, match="Unknown optimizer"):
        model.compile(optimizer="sgdd", loss="mse")


def test_multi_input_multi_output_shared_layer():
    rng = np.random.default_rng(5)
    a_in, b_in = lamina.Input(shape=(4,), name="a"), lamina.Input(shape=(4,), name="b")
    shared = layers.Dense(8, activation="tanh")
    ha, hb = shared(a_in), shared(b_in)
    out1 = layers.Dense(1, name="sum_out")(ha + hb)
    out2 = layers.Dense(1, name="diff_out")(ha - hb)
    model = lamina.Model([a_in, b_in], [out1, out2])
    assert len(shared._inbound_nodes) == 2
    xa, xb = rng.standard_normal((64, 4)).astype(np.float32), rng.standard_normal((64, 4)).astype(np.float32)
    ya, yb = xa.sum(1, keepdims=True) + xb.sum(1, keepdims=True), xa.sum(1, keepdims=True) - xb.sum(1, keepdims=True)
    model.compile(optimizer=lamina.optimizers.Adam(0.02), loss=["mse", "mse"], loss_weights=[1.0, 0.5])
    hist = model.fit([xa, xb], [ya, yb], epochs=40, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0] * 0.2
    assert {"sum_out_loss", "diff_out_loss"} <= set(hist.history)
    p1, p2 = model.predict([xa, xb], verbose=0)
    assert p1.shape == (64, 1) and p2.shape == (64, 1)


def test_nested_model_and_layer_output_reuse():
    enc_in = lamina.Input(shape=(6,))
    code = layers.Dense(3, name="code")(enc_in)
    encoder = lamina.Model(enc_in, code)
    inp = lamina.Input(shape=(6,))
    out = layers.Dense(6)(encoder(inp))
    auto = lamina.Model(inp, out)
    x = np.random.default_rng(6).standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_allclose(encoder.predict(x, verbose=0), auto.layers[1](x).numpy(), atol=1e-6)
    # a layer's output can start a new model (the encoder/decoder inference recipe)
    sub = lamina.Model(enc_in, encoder.get_layer("code").output)
    np.testing.assert_allclose(sub.predict(x, verbose=0), encoder.predict(x, verbose=0), atol=1e-6)


def test_subclassed_model():
    class MLP(lamina.Model):
        def __init__(self):
            super().__init__()
            self.h = layers.Dense(8, activation="relu")
            self.o = layers.Dense(1)

        def call(self, x):
            return self.o(self.h(x))
    m = MLP()
    x = np.random.default_rng(7).standard_normal((32, 3)).astype(np.float32)
    y = x.sum(1, keepdims=True)
    m.compile(optimizer=lamina.optimizers.Adam(0.05), loss="mse")
    hist = m.fit(x, y, epochs=30, batch_size=8, verbose=0)
    assert len(m.trainable_weights) == 4
    assert hist.history["loss"][-1] < hist.history["loss"][0] * 0.2


def test_sequential_add_pop_and_summary(capsys):
    m = lamina.Sequential()
    m.add(lamina.Input(shape=(4,)))
    m.add(layers.Dense(3, name="d1"))
    m.add(layers.Dense(2, name="d2"))
    assert m.output_shape == (None, 2)
    m.pop()
    assert m.output_shape == (None, 3) and [l.name for l in m.layers] == ["d1"]
    m.summary()
    out = capsys.readouterr().out
    assert "d1 (Dense)" in out and "(None, 3)" in out and "Total params: 15" in out


def test_verbose_modes(capsys):
    x, y = _blobs(n=64, seed=8)
    m = lamina.Sequential([lamina.Input(shape=(2,)), layers.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x, y, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 2 and "loss:" in out and "accuracy:" in out
    m.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_tiny_image_task_with_a_convnet():
    """A Conv2D / pooling / Dense model learns which of 4 quadrants of an 8x8 image is lit."""
    rng = np.random.default_rng(9)
    n = 256
    y = rng.integers(0, 4, n)
    x = rng.random((n, 8, 8, 1)).astype(np.float32) * 0.3
    for i, q in enumerate(y):
        r, c = divmod(int(q), 2)
        x[i, 4 * r:4 * r + 4, 4 * c:4 * c + 4, 0] += 0.7
    lamina.utils.set_random_seed(3)
    model = lamina.Sequential([lamina.Input(shape=(8, 8, 1)), layers.Conv2D(4, 3, padding="same", activation="relu"),
                               layers.MaxPooling2D(2), layers.BatchNormalization(), layers.Flatten(),
                               layers.Dense(4, activation="softmax")])
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x[:192], y[:192], epochs=15, batch_size=32, verbose=0)
    assert model.evaluate(x[192:], y[192:], verbose=0)[1] > 0.9
