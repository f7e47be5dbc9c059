import keras
# Scenario: text classification from scratch (the "Text classification from scratch" example,
# after vectorization): integer token sequences -> Embedding -> Dropout -> Conv1D ->
# GlobalMaxPooling1D -> Dense -> sigmoid, binary_crossentropy. Data: "reviews" of neutral tokens
# with a few sentiment tokens, made with numpy. Threshold: test accuracy >= 0.9.
import json

import numpy as np
from keras import layers

keras.utils.set_random_seed(2)
rng = np.random.default_rng(0)
max_features, sequence_length, embedding_dim = 1000, 64, 32
positive, negative = np.arange(1, 51), np.arange(51, 101)


def make(n):
    x = rng.integers(200, max_features, (n, sequence_length))
    y = rng.integers(0, 2, n)
    for i in range(n):
        words = rng.choice(positive if y[i] else negative, 4)
        x[i, rng.choice(sequence_length, 4, replace=False)] = words
    return x.astype("int64"), y.astype("float32")


x_train, y_train = make(1600)
x_val, y_val = make(200)
x_test, y_test = make(400)

inputs = keras.Input(shape=(None,), dtype="int64")
x = layers.Embedding(max_features, embedding_dim)(inputs)
x = layers.Dropout(0.5)(x)
x = layers.Conv1D(64, 7, padding="valid", activation="relu", strides=3)(x)
x = layers.GlobalMaxPooling1D()(x)
x = layers.Dense(64, activation="relu")(x)
x = layers.Dropout(0.5)(x)
predictions = layers.Dense(1, activation="sigmoid", name="predictions")(x)
model = keras.Model(inputs, predictions)

model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=6, batch_size=32, verbose=2)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)

# the end-to-end model of the example takes sequences of any length
longer = model.predict(np.concatenate([x_test[:4], x_test[:4]], axis=1), verbose=0)
print(f"test loss {loss:.4f} accuracy {accuracy:.4f}")

result = {
    "figures": {
        "test_loss": float(loss),
        "test_accuracy": float(accuracy),
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "embedding_shape": list(model.layers[1].get_weights()[0].shape),
        "longer_input_predict_shape": list(longer.shape),
    },
    "checks": {"test_accuracy >= 0.9": bool(accuracy >= 0.9)},
}
print("RESULT " + json.dumps(result))
