"""Parity with Keras 3 (skipped unless keras is installed): same weights give the same outputs,
weight files move both ways, losses/metrics agree, and training steps match."""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

import lamina  # noqa: E402


def _build(lib, conv=True):
    L = lib.layers
    if conv:
        return lib.Sequential([lib.Input(shape=(12, 12, 3)), L.Conv2D(4, 3, padding="same", activation="relu"),
                               L.BatchNormalization(), L.MaxPooling2D(2), L.Conv2D(6, 3, strides=2),
                               L.Flatten(), L.Dense(8, activation="tanh"), L.LayerNormalization(),
                               L.Dense(5, activation="softmax")])
    inp = lib.Input(shape=(6,))
    a = L.Dense(4, activation="relu")(inp)
    b = L.Dense(4)(inp)
    h = L.Concatenate()([L.Add()([a, b]), L.Multiply()([a, b])])
    return lib.Model(inp, L.Dense(3)(h))


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("conv", [True, False])
def test_same_weights_same_outputs(conv):
    k, m = _build(keras, conv), _build(lamina, conv)
    assert [w.shape for w in m.get_weights()] == [tuple(w.shape) for w in k.get_weights()]
    m.set_weights(k.get_weights())
    x = _x((4, 12, 12, 3) if conv else (4, 6))
    np.testing.assert_allclose(m.predict(x, verbose=0), k.predict(x, verbose=0), atol=1e-4)


@pytest.mark.parametrize("conv", [True, False])
def test_weight_files_move_both_ways(tmp_path, conv):
    x = _x((3, 12, 12, 3) if conv else (3, 6), 1)
    k = _build(keras, conv)
    want = k.predict(x, verbose=0)
    k.save(str(tmp_path / "k_full.h5"))                 # legacy whole-model file
    k.save_weights(str(tmp_path / "k.weights.h5"))      # Keras 3 layout
    for name in ("k_full.h5", "k.weights.h5"):
        m = _build(lamina, conv)
        m.load_weights(str(tmp_path / name))
        np.testing.assert_allclose(m.predict(x, verbose=0), want, atol=1e-4, err_msg=name)
    m = _build(lamina, conv)
    m.save_weights(str(tmp_path / "l.h5"))
    m.save_weights(str(tmp_path / "l.weights.h5"))
    want = m.predict(x, verbose=0)
    for name in ("l.h5", "l.weights.h5"):
        k2 = _build(keras, conv)
        k2.load_weights(str(tmp_path / name))
        np.testing.assert_allclose(k2.predict(x, verbose=0), want, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("loss,metric,onehot", [("sparse_categorical_crossentropy", "accuracy", False),
                                                ("categorical_crossentropy", "accuracy", True),
                                                ("mean_squared_error", "mae", True),
                                                ("kl_divergence", "top_k_categorical_accuracy", True)])
def test_losses_and_metrics_agree(loss, metric, onehot):
    k, m = _build(keras, False), _build(lamina, False)
    m.set_weights(k.get_weights())
    k.layers[-1].activation = keras.activations.softmax
    m.layers[-1].activation = lamina.activations.softmax
    x = _x((32, 6), 2)
    y = np.random.default_rng(3).integers(0, 3, 32)
    if onehot:
        y = np.eye(3, dtype=np.float32)[y]
    k.compile(optimizer="sgd", loss=loss, metrics=[metric])
    m.compile(optimizer="sgd", loss=loss, metrics=[metric])
    np.testing.assert_allclose(m.evaluate(x, y, verbose=0), k.evaluate(x, y, verbose=0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opt", ["sgd_momentum", "adam", "rmsprop", "adagrad", "adamw"])
def test_training_steps_match(opt):
    def make(lib):
        return {"sgd_momentum": lambda: lib.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                "adam": lambda: lib.optimizers.Adam(0.01), "rmsprop": lambda: lib.optimizers.RMSprop(0.01),
                "adagrad": lambda: lib.optimizers.Adagrad(0.1),
                "adamw": lambda: lib.optimizers.AdamW(0.01, weight_decay=0.1)}[opt]()
    k, m = _build(keras, False), _build(lamina, False)
    m.set_weights(k.get_weights())
    k.compile(optimizer=make(keras), loss="mse")
    m.compile(optimizer=make(lamina), loss="mse")
    x, y = _x((16, 6), 4), _x((16, 3), 5)
    k.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(m.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def test_auto_names_match_keras():
    assert [type(l).__name__ for l in _build(lamina).layers] == [type(l).__name__ for l in _build(keras).layers]
    for cls in ("Dense", "Conv2D", "MaxPooling2D", "BatchNormalization", "GlobalAveragePooling2D"):
        kn = getattr(keras.layers, cls)(**({"units": 1} if cls == "Dense" else {"filters": 1, "kernel_size": 1}
                                           if cls == "Conv2D" else {})).name
        ln = getattr(lamina.layers, cls)(**({"units": 1} if cls == "Dense" else {"filters": 1, "kernel_size": 1}
                                            if cls == "Conv2D" else {})).name
        assert ln.rstrip("_0123456789") == kn.rstrip("_0123456789")
