import keras
# Scenario: time-series classification with a Transformer (examples/timeseries/
# timeseries_classification_transformer), on synthetic two-class series in place of FordA: stacked
# transformer_encoder blocks (MultiHeadAttention(key_dim, num_heads, dropout) on (inputs, inputs),
# Dropout, LayerNormalization(epsilon=1e-6), residual `x + inputs`, a Conv1D(kernel_size=1)
# feed-forward part), GlobalAveragePooling1D(data_format="channels_first") (as one revision of the
# example has it, another says "channels_last": with one feature per step, channels_first averages
# over the features and keeps one value per time step), an MLP head with Dropout and a softmax
# Dense, sparse_categorical_crossentropy with the sparse_categorical_accuracy metric,
# fit(validation_split=0.2) with EarlyStopping(restore_best_weights=True), then evaluate.
# Thresholds: the test accuracy reaches 0.85; the training loss falls; EarlyStopping restores the
# best epoch, so evaluate on the validation part matches the best val_loss within 1e-3.
import json

import numpy as np
from keras import layers

keras.utils.set_random_seed(25)
rng = np.random.default_rng(0)


def make_series(n, steps=64):
    """Noisy sines with a random phase; class 1 drifts upwards, class 0 downwards."""
    t = np.linspace(0.0, 1.0, steps)
    y = rng.integers(0, 2, n)
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    trend = np.where(y[:, None] == 1, 1.0, -1.0) * (t[None, :] - 0.5)
    x = np.sin(2 * np.pi * 4 * t[None, :] + phase) + 0.8 * trend + 1.0 * rng.standard_normal((n, steps))
    return x.astype("float32"), y


x_train, y_train = make_series(400)
x_test, y_test = make_series(200)

x_train = x_train.reshape((x_train.shape[0], x_train.shape[1], 1))
x_test = x_test.reshape((x_test.shape[0], x_test.shape[1], 1))

n_classes = len(np.unique(y_train))

idx = np.random.permutation(len(x_train))
x_train = x_train[idx]
y_train = y_train[idx]


def transformer_encoder(inputs, head_size, num_heads, ff_dim, dropout=0):
    # Attention and Normalization
    x = layers.MultiHeadAttention(key_dim=head_size, num_heads=num_heads, dropout=dropout)(inputs, inputs)
    x = layers.Dropout(dropout)(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    res = x + inputs

    # Feed Forward Part
    x = layers.Conv1D(filters=ff_dim, kernel_size=1, activation="relu")(res)
    x = layers.Dropout(dropout)(x)
    x = layers.Conv1D(filters=inputs.shape[-1], kernel_size=1)(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    return x + res


def build_model(input_shape, head_size, num_heads, ff_dim, num_transformer_blocks, mlp_units, dropout=0,
                mlp_dropout=0):
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for _ in range(num_transformer_blocks):
        x = transformer_encoder(x, head_size, num_heads, ff_dim, dropout)

    x = layers.GlobalAveragePooling1D(data_format="channels_first")(x)
    for dim in mlp_units:
        x = layers.Dense(dim, activation="relu")(x)
        x = layers.Dropout(mlp_dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


input_shape = x_train.shape[1:]

model = build_model(input_shape, head_size=16, num_heads=2, ff_dim=4, num_transformer_blocks=2, mlp_units=[32],
                    mlp_dropout=0.4, dropout=0.25)

model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(learning_rate=3e-3),
              metrics=["sparse_categorical_accuracy"])

callbacks = [keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)]

history = model.fit(x_train, y_train, validation_split=0.2, epochs=25, batch_size=64, callbacks=callbacks,
                    verbose=0)

test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
# validation_split takes the last 20% of the (unshuffled) arrays
val_loss_restored = model.evaluate(x_train[320:], y_train[320:], verbose=0)[0]
probs = model.predict(x_test[:4], verbose=0)

h = history.history
print("RESULT " + json.dumps({
    "figures": {"history_keys": sorted(h), "params": int(model.count_params()),
                "probs_shape": list(probs.shape), "test_loss": round(float(test_loss), 4),
                "test_accuracy": round(float(test_accuracy), 4)},
    "checks": {"test_accuracy_at_least_0.85": test_accuracy >= 0.85,
               "loss_falls": h["loss"][-1] < h["loss"][0],
               "best_weights_restored": abs(val_loss_restored - min(h["val_loss"])) < 1e-3,
               "probs_sum_to_one": bool(np.allclose(probs.sum(axis=1), 1.0, atol=1e-5))},
    "info": {"epochs_run": len(h["loss"]), "loss": [round(v, 4) for v in h["loss"]],
             "val_loss": [round(v, 4) for v in h["val_loss"]], "val_loss_restored": round(float(val_loss_restored), 4)},
}))
