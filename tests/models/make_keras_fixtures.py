"""Writes the Keras-made model files in fixtures/ (run by hand, with keras installed:
`KERAS_BACKEND=jax python tests/models/make_keras_fixtures.py`). tests/models/test_keras_files.py
loads them in lamina and compares with the outputs Keras computed, so those tests need no keras.

- keras_functional.keras: Keras 3's zip; a two-input Functional model (Rescaling, Conv2D,
  BatchNormalization, MaxPooling2D, Flatten; Embedding, LSTM; Concatenate, a custom registered
  layer "Fixture>Scale" with a weight, Dense with LoRA, Dropout, Dense), compiled with Adam and
  trained one step, so the file holds optimizer state;
- keras_sequential.h5: Keras's legacy whole-model file; a Sequential model (Conv1D,
  Bidirectional GRU, GlobalMaxPooling1D, LayerNormalization, Dense), SGD with momentum, one step;
- keras2_weights.h5: a weights-only file in Keras 2's layout (root layer_names, per-layer
  weight_names "<layer>/<weight>:0", keras_version 2.x, backend tensorflow) of a model the test
  builds in code (LSTM, BatchNormalization, Dense);
- <name>.npz for each: the inputs, Keras's outputs `y`, and (for the two compiled models) the
  optimizer's variables in Keras's order as opt_0, opt_1, ..."""
import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def _scale_class(keras):
    @keras.saving.register_keras_serializable(package="Fixture")
    class Scale(keras.layers.Layer):
        """y = x * alpha * factor, alpha a trainable scalar (starts at 1)."""

        def __init__(self, factor=1.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def build(self, input_shape):
            self.alpha = self.add_weight(name="alpha", shape=(), initializer="ones")

        def call(self, x):
            return x * self.alpha * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}
    return Scale


def functional(keras):
    L = keras.layers
    Scale = _scale_class(keras)
    img = keras.Input((8, 8, 3), name="image")
    ids = keras.Input((6,), dtype="int32", name="ids")
    a = L.Rescaling(1 / 255.0)(img)
    a = L.Conv2D(4, 3, padding="same", activation="relu")(a)
    a = L.BatchNormalization()(a)
    a = L.MaxPooling2D(2)(a)
    a = L.Flatten()(a)
    b = L.Embedding(20, 4)(ids)
    b = L.LSTM(5)(b)
    h = L.Concatenate()([a, b])
    h = Scale(0.5)(h)
    h = L.Dense(8, activation="tanh", lora_rank=2)(h)
    h = L.Dropout(0.25)(h)
    out = L.Dense(3, activation="softmax", name="probs")(h)
    model = keras.Model([img, ids], out, name="fixture_functional")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = [rng.uniform(0, 255, (4, 8, 8, 3)).astype(np.float32), rng.integers(0, 20, (4, 6)).astype(np.int32)]
    model.train_on_batch(x, np.array([0, 1, 2, 1]))
    return model, {"image": x[0], "ids": x[1]}


def sequential(keras):
    L = keras.layers
    model = keras.Sequential([keras.Input((7, 3)), L.Conv1D(4, 3, padding="causal", activation="relu"),
                              L.Bidirectional(L.GRU(3, return_sequences=True)), L.GlobalMaxPooling1D(),
                              L.LayerNormalization(), L.Dense(2)], name="fixture_sequential")
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mean_squared_error")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 7, 3)).astype(np.float32)
    model.train_on_batch(x, rng.standard_normal((3, 2)).astype(np.float32))
    return model, {"x": x}


def keras2_model(lib):
    """The architecture of keras2_weights.h5 (the test builds it with lamina)."""
    L = lib.layers
    inp = lib.Input((5, 3))
    h = L.LSTM(4, return_sequences=True, name="lstm")(inp)
    h = L.Flatten(name="flatten")(h)
    h = L.BatchNormalization(name="batch_normalization")(h)
    return lib.Model(inp, L.Dense(2, name="dense")(h))


def write_keras2_weights(model, path):
    """Keras 2's legacy weights layout, as tf.keras 2.x's save_weights('x.h5') wrote it."""
    import h5py
    with h5py.File(path, "w") as f:
        layers = model.layers
        f.attrs["layer_names"] = np.array([l.name.encode() for l in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"
        for layer in layers:
            g = f.create_group(layer.name)
            ws = layer.trainable_weights + layer.non_trainable_weights
            names = []
            for w in ws:
                cell = "lstm_cell/" if "lstm_cell" in w.path else ""
                names.append(f"{layer.name}/{cell}{w.name}:0".encode())
            g.attrs["weight_names"] = np.array(names) if names else np.zeros((0,), "S1")
            for n, w in zip(names, ws):
                g.create_dataset(n.decode(), data=np.asarray(w.numpy()))


def _optimizer_arrays(model):
    """opt_0, opt_1, ...: the optimizer's variables (iteration, learning rate, slots) in Keras's order."""
    return {f"opt_{i}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)}


def main():
    import keras
    os.makedirs(HERE, exist_ok=True)
    keras.utils.set_random_seed(0)
    m, x = functional(keras)
    m.save(os.path.join(HERE, "keras_functional.keras"))
    np.savez(os.path.join(HERE, "keras_functional.npz"), **x, y=m.predict([x["image"], x["ids"]], verbose=0),
             **_optimizer_arrays(m), keras_version=keras.__version__)
    m, x = sequential(keras)
    m.save(os.path.join(HERE, "keras_sequential.h5"))
    np.savez(os.path.join(HERE, "keras_sequential.npz"), **x, y=m.predict(x["x"], verbose=0),
             **_optimizer_arrays(m), keras_version=keras.__version__)
    m = keras2_model(keras)
    for layer in m.layers:   # non-trivial BatchNormalization statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.linspace(-0.5, 0.5, layer.moving_mean.shape[0]))
            layer.moving_variance.assign(np.linspace(0.5, 2.0, layer.moving_variance.shape[0]))
    write_keras2_weights(m, os.path.join(HERE, "keras2_weights.h5"))
    x = np.random.default_rng(2).standard_normal((3, 5, 3)).astype(np.float32)
    np.savez(os.path.join(HERE, "keras2_weights.npz"), x=x, y=m.predict(x, verbose=0),
             keras_version=keras.__version__)
    for name in sorted(os.listdir(HERE)):
        print(f"{name}: {os.path.getsize(os.path.join(HERE, name))} bytes")


if __name__ == "__main__":
    main()
