import keras
# Scenario: next-frame prediction with ConvLSTM2D (examples/vision/conv_lstm), on moving squares in
# place of Moving MNIST: three ConvLSTM2D layers with BatchNormalization and a Conv3D head trained
# with binary crossentropy, EarlyStopping and ReduceLROnPlateau; then frames predicted one by one.
# Thresholds: the loss falls by a third; the predicted frames keep the frame shape.
import json

import numpy as np
from keras import layers

keras.utils.set_random_seed(3)
rng = np.random.default_rng(0)


def moving_squares(n, steps=8, size=16):
    data = np.zeros((n, steps + 1, size, size, 1), "float32")
    for i in range(n):
        r, c = rng.integers(0, size - 4, 2)
        dr, dc = rng.integers(-1, 2, 2)
        for t in range(steps + 1):
            rr, cc = np.clip(r + dr * t, 0, size - 4), np.clip(c + dc * t, 0, size - 4)
            data[i, t, rr:rr + 4, cc:cc + 4, 0] = 1.0
    return data


def create_shifted_frames(data):
    return data[:, :-1], data[:, 1:]


dataset = moving_squares(64)
x_train, y_train = create_shifted_frames(dataset[:48])
x_val, y_val = create_shifted_frames(dataset[48:])

inp = layers.Input(shape=(None, *x_train.shape[2:]))
x = layers.ConvLSTM2D(filters=16, kernel_size=(5, 5), padding="same", return_sequences=True, activation="relu")(inp)
x = layers.BatchNormalization()(x)
x = layers.ConvLSTM2D(filters=16, kernel_size=(3, 3), padding="same", return_sequences=True, activation="relu")(x)
x = layers.BatchNormalization()(x)
x = layers.ConvLSTM2D(filters=16, kernel_size=(1, 1), padding="same", return_sequences=True, activation="relu")(x)
x = layers.Conv3D(filters=1, kernel_size=(3, 3, 3), activation="sigmoid", padding="same")(x)
model = keras.models.Model(inp, x)
model.compile(loss=keras.losses.binary_crossentropy, optimizer=keras.optimizers.Adam(learning_rate=0.003))
callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=10),
             keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=5)]
history = model.fit(x_train, y_train, batch_size=8, epochs=5, validation_data=(x_val, y_val), callbacks=callbacks,
                    verbose=0)

frames = dataset[48, :4]
for _ in range(3):
    prediction = model.predict(np.expand_dims(frames, axis=0), verbose=0)
    frames = np.concatenate((frames, np.squeeze(prediction, axis=0)[-1:]), axis=0)

loss = history.history["loss"]
print("RESULT " + json.dumps({
    "figures": {"history_keys": sorted(history.history), "frames_shape": list(frames.shape),
                "params": int(model.count_params())},
    "checks": {"loss_falls_by_a_third": loss[-1] <= loss[0] * 2 / 3,
               "frames_keep_their_shape": list(frames.shape) == [7, 16, 16, 1]},
    "info": {"loss": [round(v, 4) for v in loss], "val_loss": [round(v, 4) for v in history.history["val_loss"]]},
}))
