"""Training on a device under test (tests/gpu/conftest.py) equals training on cpu:0, and models
split over its two devices train, pipelined too, like the unsplit model."""
import numpy as np
import pytest

import lamina
from lamina import layers, optimizers


def _mlp(device, optimizer):
    with lamina.device(device):
        model = lamina.Sequential([lamina.Input((10,)), layers.Dense(32, activation="relu"), layers.Dropout(0.0),
                                   layers.Dense(16, activation="tanh"), layers.Dense(4)])
    model.compile(optimizer=optimizer, loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _convnet(device):
    with lamina.device(device):
        model = lamina.Sequential([lamina.Input((8, 8, 1)), layers.Conv2D(4, 3, activation="relu"),
                                   layers.MaxPooling2D(2), layers.BatchNormalization(), layers.Flatten(),
                                   layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    return model


def _data(n, shape, classes, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n,) + shape).astype(np.float32), rng.integers(0, classes, n)


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_an_mlp_trains_on_the_device_as_on_cpu(dev, opt):
    x, y = _data(96, (10,), 4)
    make = (lambda: optimizers.Adam(0.01)) if opt == "adam" else (lambda: optimizers.SGD(0.1, momentum=0.9,
                                                                                        nesterov=True))
    ref, other = _mlp("cpu:0", make()), _mlp(dev, make())
    other.set_weights(ref.get_weights())
    h1 = ref.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0)
    h2 = other.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0)
    assert all(w.device is dev for w in other.weights)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-4)
    for a, b in zip(other.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(other.predict(x, verbose=0), ref.predict(x, verbose=0), rtol=1e-3, atol=1e-5)
    assert other.evaluate(x, y, verbose=0)[0] == pytest.approx(ref.evaluate(x, y, verbose=0)[0], rel=1e-4)


def test_a_convnet_trains_on_the_device_as_on_cpu(dev):
    x, y = _data(40, (8, 8, 1), 3)
    ref, other = _convnet("cpu:0"), _convnet(dev)
    other.set_weights(ref.get_weights())
    h1 = ref.fit(x, y, epochs=2, batch_size=10, shuffle=False, verbose=0)
    h2 = other.fit(x, y, epochs=2, batch_size=10, shuffle=False, verbose=0)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-4)
    for a, b in zip(other.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def _split(d0, d1):
    inp = lamina.Input((8,))
    with lamina.device(d0):
        h = layers.Dense(16, activation="tanh")(inp)
    with lamina.device(d1):
        out = layers.Dense(1)(layers.Dense(12, activation="relu")(h))
    model = lamina.Model(inp, out)
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse")
    return model


@pytest.mark.parametrize("micro_batches", [1, 4])
def test_a_model_split_over_two_devices_trains_like_the_unsplit_one(devices, micro_batches):
    d0, d1 = devices
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(48, 8)).astype(np.float32), rng.normal(size=(48, 1)).astype(np.float32)
    one, two = _split("cpu:0", "cpu:0"), _split(d0, d1)
    two.set_weights(one.get_weights())
    h1 = one.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    h2 = two.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, micro_batches=micro_batches)
    assert sorted({w.device.name for w in two.weights}) == sorted({d0.name, d1.name})
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-4)
    for a, b in zip(two.get_weights(), one.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_a_deep_lstm_over_two_devices_trains_pipelined(devices):
    # the seeds' deep LSTM language model (tutorial 9): two LSTM layers on each device
    d0, d1 = devices
    rng = np.random.default_rng(2)
    x = rng.integers(0, 50, size=(24, 7))
    y = rng.integers(0, 50, size=(24, 7))

    def build(a, b):
        inp = lamina.Input((7,), dtype="int32")
        with lamina.device(a):
            h = layers.Embedding(50, 16)(inp)
            h = layers.LSTM(16, return_sequences=True)(layers.LSTM(16, return_sequences=True)(h))
        with lamina.device(b):
            h = layers.LSTM(16, return_sequences=True)(layers.LSTM(16, return_sequences=True)(h))
            out = layers.Dense(50)(h)
        m = lamina.Model(inp, out)
        m.compile(optimizer=optimizers.Adam(0.01),
                  loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    one, two = build("cpu:0", "cpu:0"), build(d0, d1)
    two.set_weights(one.get_weights())
    h1 = one.fit(x, y, batch_size=12, epochs=2, shuffle=False, verbose=0)
    h2 = two.fit(x, y, batch_size=12, epochs=2, shuffle=False, verbose=0, micro_batches=4)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-4)
    assert h2.history["loss"][-1] < h2.history["loss"][0]


def _transformer(device):
    """A one-block transformer classifier: embedding, self-attention with a residual and layer
    norm, a position-wise feed-forward, mean pooling."""
    inp = lamina.Input((6,), dtype="int32")
    with lamina.device(device):
        h = layers.Embedding(20, 8)(inp)
        h = layers.LayerNormalization()(h + layers.MultiHeadAttention(num_heads=2, key_dim=4)(h, h))
        h = layers.LayerNormalization()(h + layers.Dense(8)(layers.Dense(16, activation="gelu")(h)))
        out = layers.Dense(3)(layers.GlobalAveragePooling1D()(h))
    model = lamina.Model(inp, out)
    # SGD, not Adam: the attention's key bias has a gradient that is 0 but for rounding, which
    # Adam's first steps would scale up to about the learning rate, differently on each device
    model.compile(optimizer=optimizers.SGD(0.05, momentum=0.9),
                  loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_a_transformer_block_trains_on_the_device_as_on_cpu(dev):
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 20, size=(16, 6)).astype(np.int32), rng.integers(0, 3, 16)
    ref, other = _transformer("cpu:0"), _transformer(dev)
    other.set_weights(ref.get_weights())
    h1 = ref.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)  # two steps
    h2 = other.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert all(w.device is dev for w in other.weights)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-4)
    for a, b in zip(other.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(other.predict(x, verbose=0), ref.predict(x, verbose=0), rtol=1e-3, atol=1e-5)


def _mobilenet_block(device):
    """MobileNet's depthwise-separable block: depthwise 3x3, batch norm, ReLU6, pointwise 1x1,
    batch norm, ReLU6, then global average pooling and a softmax."""
    with lamina.device(device):
        model = lamina.Sequential([lamina.Input((8, 8, 3)), layers.DepthwiseConv2D(3, padding="same", use_bias=False),
                                   layers.BatchNormalization(), layers.ReLU(6.0),
                                   layers.Conv2D(8, 1, use_bias=False), layers.BatchNormalization(),
                                   layers.ReLU(max_value=6.0), layers.GlobalAveragePooling2D(),
                                   layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    return model


def test_a_mobilenet_block_trains_on_the_device_as_on_cpu(dev):
    x, y = _data(20, (8, 8, 3), 3, seed=4)
    ref, other = _mobilenet_block("cpu:0"), _mobilenet_block(dev)
    other.set_weights(ref.get_weights())
    h1 = ref.fit(x, y, epochs=1, batch_size=10, shuffle=False, verbose=0)  # two steps
    h2 = other.fit(x, y, epochs=1, batch_size=10, shuffle=False, verbose=0)
    assert all(w.device is dev for w in other.weights)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-4)
    for a, b in zip(other.get_weights(), ref.get_weights()):  # the moving statistics too
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(other.predict(x, verbose=0), ref.predict(x, verbose=0), rtol=1e-3, atol=1e-5)
