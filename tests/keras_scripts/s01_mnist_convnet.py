import keras
# Scenario: a small convnet on MNIST-shaped images (the "Simple MNIST convnet" example):
# Sequential Conv2D/MaxPooling2D/Flatten/Dropout/Dense, one-hot labels, validation_split,
# evaluate, predict. Data: 10 noisy class templates, 28x28x1, made with numpy (no download).
# Threshold: test accuracy >= 0.9.
import json

import numpy as np
from keras import layers

keras.utils.set_random_seed(1)
rng = np.random.default_rng(0)
num_classes, input_shape = 10, (28, 28, 1)

templates = rng.random((num_classes, 7, 7)).repeat(4, axis=1).repeat(4, axis=2)


def make(n):
    y = rng.integers(0, num_classes, n)
    x = templates[y] + 0.6 * rng.standard_normal((n, 28, 28))
    return np.clip(x, 0, 1.5).astype("float32")[..., None], y


x_train, y_train = make(1200)
x_test, y_test = make(300)
y_train_cat = keras.utils.to_categorical(y_train, num_classes)
y_test_cat = keras.utils.to_categorical(y_test, num_classes)

model = keras.Sequential(
    [
        keras.Input(shape=input_shape),
        layers.Conv2D(16, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ]
)
model.summary()

model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
history = model.fit(x_train, y_train_cat, batch_size=64, epochs=4, validation_split=0.1, verbose=2)

score = model.evaluate(x_test, y_test_cat, verbose=0)
probs = model.predict(x_test[:5], verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])

result = {
    "figures": {
        "test_loss": float(score[0]),
        "test_accuracy": float(score[1]),
        "history_keys": sorted(history.history),
        "predict_shape": list(probs.shape),
        "params": int(model.count_params()),
    },
    "checks": {"test_accuracy >= 0.9": bool(score[1] >= 0.9),
               "probabilities sum to 1": bool(np.allclose(probs.sum(axis=1), 1, atol=1e-4))},
}
print("RESULT " + json.dumps(result))
