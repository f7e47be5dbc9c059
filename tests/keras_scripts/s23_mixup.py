import keras
# Scenario: MixUp augmentation (examples/vision/mixup, Keras 3 version): mixing weights drawn from a
# Beta distribution made of two keras.random.gamma draws, images and one-hot labels mixed with
# keras.ops, a small convnet trained on the mixed batches; keras.random.beta and binomial beside.
# Thresholds: the mixed labels still sum to one; the Beta(0.2, 0.2) draws average 0.5 within 0.05
# and lie in [0, 1]; the model's loss falls.
import json

import numpy as np
from keras import layers

keras.utils.set_random_seed(7)
rng = np.random.default_rng(0)


def sample_beta_distribution(size, concentration_0=0.2, concentration_1=0.2):
    gamma_1_sample = keras.random.gamma(shape=[size], alpha=concentration_1)
    gamma_2_sample = keras.random.gamma(shape=[size], alpha=concentration_0)
    return gamma_1_sample / (gamma_1_sample + gamma_2_sample)


def mix_up(ds_one, ds_two, alpha=0.2):
    images_one, labels_one = ds_one
    images_two, labels_two = ds_two
    batch_size = keras.ops.shape(images_one)[0]
    lam = sample_beta_distribution(batch_size, alpha, alpha)
    x_l = keras.ops.reshape(lam, (batch_size, 1, 1, 1))
    y_l = keras.ops.reshape(lam, (batch_size, 1))
    return images_one * x_l + images_two * (1 - x_l), labels_one * y_l + labels_two * (1 - y_l)


labels = rng.integers(0, 4, 512)
images = (rng.uniform(0, 0.3, (512, 16, 16, 1)) + (labels[:, None, None, None] / 4.0)).astype("float32")
onehot = keras.ops.convert_to_numpy(keras.ops.one_hot(labels, 4))
x_mixed, y_mixed = mix_up((images[:256], onehot[:256]), (images[256:], onehot[256:]))
x_mixed, y_mixed = keras.ops.convert_to_numpy(x_mixed), keras.ops.convert_to_numpy(y_mixed)

betas = keras.ops.convert_to_numpy(keras.random.beta((4000,), 0.2, 0.2, seed=3))
binomials = keras.ops.convert_to_numpy(keras.random.binomial((4000,), 10, 0.3, seed=4))

model = keras.Sequential([layers.Input(shape=(16, 16, 1)), layers.Conv2D(8, 3, activation="relu"),
                          layers.MaxPooling2D(2), layers.GlobalAveragePooling2D(), layers.Dense(4, activation="softmax")])
model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])
history = model.fit(x_mixed, y_mixed, epochs=8, batch_size=32, verbose=0)

print("RESULT " + json.dumps({
    "figures": {"mixed_shape": list(x_mixed.shape), "label_sum": round(float(y_mixed.sum(axis=1).mean()), 4),
                "history_keys": sorted(history.history)},
    "checks": {"labels_sum_to_one": bool(np.allclose(y_mixed.sum(axis=1), 1.0, atol=1e-5)),
               "beta_mean_near_half": abs(float(betas.mean()) - 0.5) < 0.05,
               "beta_in_unit_interval": bool(betas.min() >= 0 and betas.max() <= 1),
               "binomial_mean_near_3": abs(float(binomials.mean()) - 3.0) < 0.15,
               "loss_falls": history.history["loss"][-1] < history.history["loss"][0]},
    "info": {"beta_mean": round(float(betas.mean()), 4), "binomial_mean": round(float(binomials.mean()), 4),
             "loss": [round(v, 4) for v in history.history["loss"]]},
}))
