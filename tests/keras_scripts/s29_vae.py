import keras
# Scenario: a variational autoencoder (examples/generative/vae, Keras 3 version, trained the
# backend-neutral way of making_new_layers_and_models_via_subclassing): the Sampling layer drawing
# keras.random.normal from a keras.random.SeedGenerator(1337), the example's convolutional encoder
# (Conv2D strides 2, Flatten, Dense z_mean and z_log_var) and decoder (Dense, Reshape,
# Conv2DTranspose strides 2, Conv2DTranspose(1, activation="sigmoid")), a Model subclass adding the
# KL divergence with self.add_loss in call(), compiled with binary crossentropy as the
# reconstruction loss and fitted on (x, x); keras.metrics.Mean trackers for the example's
# reconstruction and KL losses before and after training; images generated from a grid of latent
# points and reconstructed, on 16x16 images of squares, disks, bars and crosses.
# Thresholds: the training loss falls by a third; the tracked reconstruction loss falls by a
# third; the generated and reconstructed pixels lie in [0, 1] and vary over the latent grid; z_mean
# is deterministic and z is not.
import json

import numpy as np
from keras import layers, ops

keras.utils.set_random_seed(2)
rng = np.random.default_rng(0)


def make_shapes(n):
    images = np.zeros((n, 16, 16, 1), "float32")
    yy, xx = np.mgrid[0:16, 0:16]
    for i, kind in enumerate(rng.integers(0, 4, n)):
        cy, cx = rng.integers(5, 11, 2)
        r = rng.integers(2, 5)
        if kind == 0:
            mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        elif kind == 1:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        elif kind == 2:
            mask = (abs(yy - cy) <= 1) & (abs(xx - cx) <= r + 2)
        else:
            mask = ((abs(yy - cy) <= 1) & (abs(xx - cx) <= r + 1)) | ((abs(xx - cx) <= 1) & (abs(yy - cy) <= r + 1))
        images[i, mask, 0] = 1.0
    return images


class Sampling(layers.Layer):
    """Uses (z_mean, z_log_var) to sample z, the vector encoding a digit."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        batch = ops.shape(z_mean)[0]
        dim = ops.shape(z_mean)[1]
        epsilon = keras.random.normal(shape=(batch, dim), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


latent_dim = 2

encoder_inputs = keras.Input(shape=(16, 16, 1))
x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(encoder_inputs)
x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
x = layers.Flatten()(x)
x = layers.Dense(16, activation="relu")(x)
z_mean = layers.Dense(latent_dim, name="z_mean")(x)
z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
z = Sampling()([z_mean, z_log_var])
encoder = keras.Model(encoder_inputs, [z_mean, z_log_var, z], name="encoder")

latent_inputs = keras.Input(shape=(latent_dim,))
x = layers.Dense(4 * 4 * 64, activation="relu")(latent_inputs)
x = layers.Reshape((4, 4, 64))(x)
x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
decoder_outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
decoder = keras.Model(latent_inputs, decoder_outputs, name="decoder")


class VAE(keras.Model):
    """Combines the encoder and decoder into an end-to-end model for training."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder

    def call(self, inputs):
        z_mean, z_log_var, z = self.encoder(inputs)
        reconstructed = self.decoder(z)
        # Add KL divergence regularization loss.
        kl_loss = -0.5 * ops.mean(z_log_var - ops.square(z_mean) - ops.exp(z_log_var) + 1)
        self.add_loss(kl_loss)
        return reconstructed


reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
kl_loss_tracker = keras.metrics.Mean(name="kl_loss")


def track_losses(vae, data, batch_size=64):
    reconstruction_loss_tracker.reset_state()
    kl_loss_tracker.reset_state()
    for start in range(0, len(data), batch_size):
        batch = data[start:start + batch_size]
        z_mean, z_log_var, z = vae.encoder(batch)
        reconstruction = vae.decoder(z)
        reconstruction_loss = ops.mean(
            ops.sum(keras.losses.binary_crossentropy(batch, reconstruction), axis=(1, 2))
        )
        kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
        kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
        reconstruction_loss_tracker.update_state(reconstruction_loss)
        kl_loss_tracker.update_state(kl_loss)
    return float(reconstruction_loss_tracker.result()), float(kl_loss_tracker.result())


shapes = make_shapes(640)
x_train, x_test = shapes[:512], shapes[512:]

vae = VAE(encoder, decoder)
vae.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss=keras.losses.binary_crossentropy)
reconstruction_before, kl_before = track_losses(vae, x_test)
history = vae.fit(x_train, x_train, epochs=8, batch_size=64, verbose=0)
reconstruction_after, kl_after = track_losses(vae, x_test)

_ = vae(x_test[:4])
added_losses = len(vae.losses)

# generate from a grid of latent points, as the example's plot_latent_space does
n = 3
grid_x = np.linspace(-1.0, 1.0, n)
grid_y = np.linspace(-1.0, 1.0, n)[::-1]
z_sample = np.array([[xi, yi] for yi in grid_y for xi in grid_x], "float32")
generated = decoder.predict(z_sample, verbose=0)
reconstructed = vae.predict(x_test, verbose=0)
z_mean_1, _, z_1 = encoder.predict(x_test, verbose=0)
z_mean_2, _, z_2 = encoder.predict(x_test, verbose=0)

loss = history.history["loss"]
print("RESULT " + json.dumps({
    "figures": {"history_keys": sorted(history.history), "generated_shape": list(generated.shape),
                "reconstructed_shape": list(reconstructed.shape), "z_shape": list(z_1.shape),
                "encoder_params": int(encoder.count_params()), "decoder_params": int(decoder.count_params()),
                "vae_params": int(vae.count_params()), "added_loss_count": added_losses,
                "tracker_names": [reconstruction_loss_tracker.name, kl_loss_tracker.name],
                "final_loss": round(loss[-1], 4), "reconstruction_loss_after": round(reconstruction_after, 2)},
    "checks": {"loss_falls_by_a_third": loss[-1] <= loss[0] * 2 / 3,
               "reconstruction_loss_falls_by_a_third": reconstruction_after <= reconstruction_before * 2 / 3,
               "pixels_in_unit_interval": bool(generated.min() >= 0 and generated.max() <= 1
                                               and reconstructed.min() >= 0 and reconstructed.max() <= 1),
               "generated_images_vary": float(generated.std(axis=0).mean()) > 1e-3,
               "z_mean_deterministic": bool(np.allclose(z_mean_1, z_mean_2, atol=1e-6)),
               "z_sampled": not np.allclose(z_1, z_mean_1, atol=1e-4)},
    "info": {"loss": [round(v, 4) for v in loss], "reconstruction_loss": [round(reconstruction_before, 2),
                                                                           round(reconstruction_after, 2)],
             "kl_loss": [round(kl_before, 4), round(kl_after, 4)],
             "z_differs_between_predicts": not np.allclose(z_1, z_2, atol=1e-6)},
}))
