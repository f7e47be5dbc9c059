import keras
# Scenario: time-series regression with recurrent layers (the weather-forecasting and
# "Working with RNNs" examples): sliding windows of a noisy multi-periodic signal with two
# features, LSTM and GRU models predicting the next value, mse loss with mae metric, compared with
# the naive last-value baseline. Threshold: both models' test mae <= 0.8 x the baseline's.
import json

import numpy as np
from keras import layers

keras.utils.set_random_seed(3)
rng = np.random.default_rng(0)
steps, past = 3000, 24
t = np.arange(steps)
signal = np.sin(2 * np.pi * t / 50) + 0.5 * np.sin(2 * np.pi * t / 17) + 0.1 * rng.standard_normal(steps)
other = np.cos(2 * np.pi * t / 50) + 0.1 * rng.standard_normal(steps)
series = np.stack([signal, other], axis=-1).astype("float32")

# windows [i, i + past) -> the signal at i + past
idx = np.arange(steps - past)
x_all = np.stack([series[i:i + past] for i in idx])
y_all = series[idx + past, 0:1]
split = int(0.8 * len(idx))
x_train, y_train, x_test, y_test = x_all[:split], y_all[:split], x_all[split:], y_all[split:]
baseline_mae = float(np.mean(np.abs(x_test[:, -1, 0:1] - y_test)))


def lstm_model():
    inputs = keras.Input(shape=(past, 2))
    x = layers.LSTM(32, return_sequences=True)(inputs)
    x = layers.LSTM(16)(x)
    return keras.Model(inputs, layers.Dense(1)(x))


def gru_model():
    return keras.Sequential([keras.Input(shape=(past, 2)), layers.GRU(32), layers.Dense(1)])


figures, checks = {"baseline_mae": baseline_mae}, {}
for name, build in [("lstm", lstm_model), ("gru", gru_model)]:
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.005), loss="mse", metrics=["mae"])
    model.fit(x_train, y_train, batch_size=64, epochs=4, validation_split=0.1, verbose=2)
    loss, mae = model.evaluate(x_test, y_test, verbose=0)
    print(f"{name}: test mse {loss:.4f} mae {mae:.4f} (baseline mae {baseline_mae:.4f})")
    figures[f"{name}_test_loss"] = float(loss)
    figures[f"{name}_test_mae"] = float(mae)
    figures[f"{name}_weight_shapes"] = [list(w.shape) for w in model.get_weights()]
    checks[f"{name} mae <= 0.8 x baseline"] = bool(mae <= 0.8 * baseline_mae)

print("RESULT " + json.dumps({"figures": figures, "checks": checks}))
