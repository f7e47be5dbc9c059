import keras
# Scenario: feeding fit from Python objects (the "Training & evaluation with the built-in
# methods" guide's PyDataset section): a keras.utils.PyDataset subclass with __len__ and
# __getitem__ (and on_epoch_end reshuffling) for training and validation, a Python generator with
# steps_per_epoch, evaluate and predict on a PyDataset that yields (x, y) and x-only batches, and
# batches of (x, y, sample_weight). Thresholds: validation accuracy >= 0.85 with each input kind,
# on_epoch_end called after every epoch (Keras 3 calls it once more, when fit starts), predict
# returns one row per sample.
import json
import math

import numpy as np
from keras import layers

keras.utils.set_random_seed(17)
rng = np.random.default_rng(0)
x_all = rng.standard_normal((1200, 12)).astype("float32")
y_all = (x_all[:, 0] * x_all[:, 1] > 0).astype("int64")  # xor of two signs: needs the hidden layer


class ArrayDataset(keras.utils.PyDataset):
    def __init__(self, x, y=None, batch_size=32, shuffle=False, weights=None, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size, self.shuffle, self.weights = x, y, batch_size, shuffle, weights
        self.order = np.arange(len(x))
        self.epochs_ended = 0

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, idx):
        rows = self.order[idx * self.batch_size:(idx + 1) * self.batch_size]
        if self.y is None:
            return self.x[rows]
        if self.weights is not None:
            return self.x[rows], self.y[rows], self.weights[rows]
        return self.x[rows], self.y[rows]

    def on_epoch_end(self):
        self.epochs_ended += 1
        if self.shuffle:
            self.order = rng.permutation(len(self.x))


def generator(batch_size=32):
    while True:
        rows = rng.integers(0, 1000, batch_size)
        yield x_all[rows], y_all[rows]


def get_model():
    model = keras.Sequential([keras.Input(shape=(12,)), layers.Dense(32, activation="relu"),
                              layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


train = ArrayDataset(x_all[:1000], y_all[:1000], shuffle=True)
val = ArrayDataset(x_all[1000:], y_all[1000:], batch_size=50)

model = get_model()
history = model.fit(train, validation_data=val, epochs=8, verbose=0)
pydataset_acc = history.history["val_accuracy"][-1]
eval_loss, eval_acc = model.evaluate(val, verbose=0)
preds = model.predict(ArrayDataset(x_all[1000:], batch_size=64), verbose=0)

model = get_model()
gen_history = model.fit(generator(), steps_per_epoch=40, epochs=8, validation_data=(x_all[1000:], y_all[1000:]),
                        verbose=0)
generator_acc = gen_history.history["val_accuracy"][-1]

model = get_model()
weighted = ArrayDataset(x_all[:1000], y_all[:1000], weights=np.ones(1000, "float32"), shuffle=True)
weighted_history = model.fit(weighted, epochs=8, validation_data=val, verbose=0)
weighted_acc = weighted_history.history["val_accuracy"][-1]
print(f"val accuracy: PyDataset {pydataset_acc:.3f}, generator {generator_acc:.3f}, "
      f"with sample weights {weighted_acc:.3f}; train on_epoch_end calls {train.epochs_ended}")

result = {
    "figures": {
        "pydataset_val_accuracy": float(pydataset_acc),
        "evaluate_accuracy": float(eval_acc),
        "generator_val_accuracy": float(generator_acc),
        "weighted_val_accuracy": float(weighted_acc),
        "predict_shape": list(preds.shape),
        "history_keys": sorted(history.history),
        "generator_epochs": len(gen_history.history["loss"]),
    },
    "info": {"train_on_epoch_end_calls": train.epochs_ended},
    "checks": {
        "PyDataset val accuracy >= 0.85": pydataset_acc >= 0.85,
        "generator val accuracy >= 0.85": generator_acc >= 0.85,
        "weighted PyDataset val accuracy >= 0.85": weighted_acc >= 0.85,
        "on_epoch_end after every epoch": train.epochs_ended >= 8,
        "evaluate equals last val_accuracy": bool(np.isclose(eval_acc, pydataset_acc, atol=1e-6)),
        "predict returns every sample": list(preds.shape) == [200, 2],
    },
}
print("RESULT " + json.dumps(result))
