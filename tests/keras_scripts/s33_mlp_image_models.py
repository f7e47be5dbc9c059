import keras
# Scenario: image classification with modern MLP models (examples/vision/mlp_image_classification,
# Keras 3 version), on small synthetic colour images in place of CIFAR-100: the example's
# data_augmentation Sequential (adapted Normalization, Resizing, RandomFlip, RandomZoom), its
# Patches layer on keras.ops.image.extract_patches and ops.reshape, its PositionEmbedding layer
# (add_weight, ops.slice, ops.broadcast_to, compute_output_shape), Dense patch encoding,
# GlobalAveragePooling1D, Dropout and a logits head, and its three block kinds in a Sequential of
# blocks: MLPMixerLayer (LayerNormalization, ops.transpose, gelu Dense token and channel MLPs),
# FNetLayer (keras.ops.fft2 on the (real, zeros_like) pair keeping the real part, two
# LayerNormalizations, a gelu feed-forward) with positional encoding, and gMLPLayer (a spatial
# gating unit of ops.split, LayerNormalization, ops.transpose and a Dense with
# bias_initializer="Ones"); each trained by the example's run_experiment: AdamW,
# SparseCategoricalCrossentropy(from_logits=True), SparseCategoricalAccuracy and
# SparseTopKCategoricalAccuracy(5), validation_split=0.1, ReduceLROnPlateau(monitor="val_loss") and
# EarlyStopping(monitor="val_loss", restore_best_weights=True), then evaluate.
# Thresholds: each model's test accuracy at least 0.6 (chance 0.25) and top-5 accuracy 1.0 with
# 4 classes; each training loss falls by a third; the restored weights score the best val_loss
# again on the validation split; the first patch equals the resized image's top-left block;
# ops.fft2 matches numpy.fft.fft2; ReduceLROnPlateau halves the learning rate at least once on a
# flat val_loss.
import json
import math

import numpy as np
from keras import layers

keras.utils.set_random_seed(5)
rng = np.random.default_rng(0)

"""
## Prepare the data
"""

num_classes = 4
input_shape = (16, 16, 3)

palette = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], "float32")


def make_images(n):
    labels = rng.integers(0, num_classes, n)
    images = palette[labels][:, None, None, :] * 160 + rng.normal(0, 40, (n, *input_shape))
    # a bright square at a random place, the same for every class
    for i in range(n):
        y, x = rng.integers(0, 12, 2)
        images[i, y:y + 4, x:x + 4, :] = 230
    return np.clip(images, 0, 255).astype("float32"), labels.reshape(-1, 1)


x_train, y_train = make_images(320)  # 288 to train and 32 to validate: whole batches
x_test, y_test = make_images(128)

"""
## Configure the hyperparameters
"""

weight_decay = 0.0001
batch_size = 32
num_epochs = 4
dropout_rate = 0.2
image_size = 20  # We'll resize input images to this size.
patch_size = 5  # Size of the patches to be extracted from the input images.
num_patches = (image_size // patch_size) ** 2  # Size of the data array.
embedding_dim = 32  # Number of hidden units.
num_blocks = 2  # Number of blocks.

"""
## Build a classification model
"""


def build_classifier(blocks, positional_encoding=False):
    inputs = layers.Input(shape=input_shape)
    # Augment data.
    augmented = data_augmentation(inputs)
    # Create patches.
    patches = Patches(patch_size)(augmented)
    # Encode patches to generate a [batch_size, num_patches, embedding_dim] tensor.
    x = layers.Dense(units=embedding_dim)(patches)
    if positional_encoding:
        x = x + PositionEmbedding(sequence_length=num_patches)(x)
    # Process x using the module blocks.
    x = blocks(x)
    # Apply global average pooling to generate a [batch_size, embedding_dim] representation tensor.
    representation = layers.GlobalAveragePooling1D()(x)
    # Apply dropout.
    representation = layers.Dropout(rate=dropout_rate)(representation)
    # Compute logits outputs.
    logits = layers.Dense(num_classes)(representation)
    # Create the Keras model.
    return keras.Model(inputs=inputs, outputs=logits)


"""
## Define an experiment
"""


def run_experiment(model):
    # Create Adam optimizer with weight decay.
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate,
        weight_decay=weight_decay,
    )
    # Compile the model.
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="acc"),
            keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5-acc"),
        ],
    )
    # Create a learning rate scheduler callback.
    reduce_lr = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.5, patience=5
    )
    # Create an early stopping callback.
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=10, restore_best_weights=True
    )
    # Fit the model.
    history = model.fit(
        x=x_train,
        y=y_train,
        batch_size=batch_size,
        epochs=num_epochs,
        validation_split=0.1,
        callbacks=[early_stopping, reduce_lr],
        verbose=0,
    )

    _, accuracy, top_5_accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"Test accuracy: {round(accuracy * 100, 2)}%")
    print(f"Test top 5 accuracy: {round(top_5_accuracy * 100, 2)}%")

    # Return history to plot learning curves.
    return history, accuracy, top_5_accuracy


"""
## Use data augmentation
"""

data_augmentation = keras.Sequential(
    [
        layers.Normalization(),
        layers.Resizing(image_size, image_size),
        layers.RandomFlip("horizontal"),
        layers.RandomZoom(height_factor=0.2, width_factor=0.2),
    ],
    name="data_augmentation",
)
# Compute the mean and the variance of the training data for normalization.
data_augmentation.layers[0].adapt(x_train)

"""
## Implement patch extraction as a layer
"""


class Patches(layers.Layer):
    def __init__(self, patch_size, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size

    def call(self, x):
        patches = keras.ops.image.extract_patches(x, self.patch_size)
        batch_size = keras.ops.shape(patches)[0]
        num_patches = keras.ops.shape(patches)[1] * keras.ops.shape(patches)[2]
        patch_dim = keras.ops.shape(patches)[3]
        out = keras.ops.reshape(patches, (batch_size, num_patches, patch_dim))
        return out


"""
## Implement position embedding as a layer
"""


class PositionEmbedding(keras.layers.Layer):
    def __init__(
        self,
        sequence_length,
        initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if sequence_length is None:
            raise ValueError("`sequence_length` must be an Integer, received `None`.")
        self.sequence_length = int(sequence_length)
        self.initializer = keras.initializers.get(initializer)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config

    def build(self, input_shape):
        feature_size = input_shape[-1]
        self.position_embeddings = self.add_weight(
            name="embeddings",
            shape=[self.sequence_length, feature_size],
            initializer=self.initializer,
            trainable=True,
        )

        super().build(input_shape)

    def call(self, inputs, start_index=0):
        shape = keras.ops.shape(inputs)
        feature_length = shape[-1]
        sequence_length = shape[-2]
        # trim to match the length of the input sequence, which might be less
        # than the sequence_length of the layer.
        position_embeddings = keras.ops.convert_to_tensor(self.position_embeddings)
        position_embeddings = keras.ops.slice(
            position_embeddings,
            (start_index, 0),
            (sequence_length, feature_length),
        )
        return keras.ops.broadcast_to(position_embeddings, shape)

    def compute_output_shape(self, input_shape):
        return input_shape


# The patches of one image, as the example shows them.
image = x_train[0]
resized_image = keras.ops.image.resize(
    keras.ops.convert_to_tensor([image], dtype="float32"), size=(image_size, image_size)
)
patches = Patches(patch_size)(resized_image)
resized = keras.ops.convert_to_numpy(resized_image)
first_patch = keras.ops.convert_to_numpy(keras.ops.reshape(patches[0, 0], (patch_size, patch_size, 3)))

"""
## The MLP-Mixer model
"""


class MLPMixerLayer(layers.Layer):
    def __init__(self, num_patches, hidden_units, dropout_rate, *args, **kwargs):
        super().__init__(*args, **kwargs)

        self.mlp1 = keras.Sequential(
            [
                layers.Dense(units=num_patches, activation="gelu"),
                layers.Dense(units=num_patches),
                layers.Dropout(rate=dropout_rate),
            ]
        )
        self.mlp2 = keras.Sequential(
            [
                layers.Dense(units=num_patches, activation="gelu"),
                layers.Dense(units=hidden_units),
                layers.Dropout(rate=dropout_rate),
            ]
        )
        self.normalize = layers.LayerNormalization(epsilon=1e-6)

    def build(self, input_shape):
        return super().build(input_shape)

    def call(self, inputs):
        # Apply layer normalization.
        x = self.normalize(inputs)
        # Transpose inputs from [num_batches, num_patches, hidden_units] to [num_batches, hidden_units, num_patches].
        x_channels = keras.ops.transpose(x, axes=(0, 2, 1))
        # Apply mlp1 on each channel independently.
        mlp1_outputs = self.mlp1(x_channels)
        # Transpose mlp1_outputs from [num_batches, hidden_dim, num_patches] to [num_batches, num_patches, hidden_units].
        mlp1_outputs = keras.ops.transpose(mlp1_outputs, axes=(0, 2, 1))
        # Add skip connection.
        x = mlp1_outputs + inputs
        # Apply layer normalization.
        x_patches = self.normalize(x)
        # Apply mlp2 on each patch independently.
        mlp2_outputs = self.mlp2(x_patches)
        # Add skip connection.
        x = x + mlp2_outputs
        return x


"""
## The FNet model
"""


class FNetLayer(layers.Layer):
    def __init__(self, embedding_dim, dropout_rate, *args, **kwargs):
        super().__init__(*args, **kwargs)

        self.ffn = keras.Sequential(
            [
                layers.Dense(units=embedding_dim, activation="gelu"),
                layers.Dropout(rate=dropout_rate),
                layers.Dense(units=embedding_dim),
            ]
        )

        self.normalize1 = layers.LayerNormalization(epsilon=1e-6)
        self.normalize2 = layers.LayerNormalization(epsilon=1e-6)

    def call(self, inputs):
        # Apply fourier transformations.
        real_part = inputs
        im_part = keras.ops.zeros_like(inputs)
        x = keras.ops.fft2((real_part, im_part))[0]
        # Add skip connection.
        x = x + inputs
        # Apply layer normalization.
        x = self.normalize1(x)
        # Apply Feedfowrad network.
        x_ffn = self.ffn(x)
        # Add skip connection.
        x = x + x_ffn
        # Apply layer normalization.
        return self.normalize2(x)


"""
## The gMLP model
"""


class gMLPLayer(layers.Layer):
    def __init__(self, num_patches, embedding_dim, dropout_rate, *args, **kwargs):
        super().__init__(*args, **kwargs)

        self.channel_projection1 = keras.Sequential(
            [
                layers.Dense(units=embedding_dim * 2, activation="gelu"),
                layers.Dropout(rate=dropout_rate),
            ]
        )

        self.channel_projection2 = layers.Dense(units=embedding_dim)

        self.spatial_projection = layers.Dense(
            units=num_patches, bias_initializer="Ones"
        )

        self.normalize1 = layers.LayerNormalization(epsilon=1e-6)
        self.normalize2 = layers.LayerNormalization(epsilon=1e-6)

    def spatial_gating_unit(self, x):
        # Split x along the channel dimensions.
        # Tensors u and v will in the shape of [batch_size, num_patchs, embedding_dim].
        u, v = keras.ops.split(x, indices_or_sections=2, axis=2)
        # Apply layer normalization.
        v = self.normalize2(v)
        # Apply spatial projection.
        v_channels = keras.ops.transpose(v, axes=(0, 2, 1))
        v_projected = self.spatial_projection(v_channels)
        v_projected = keras.ops.transpose(v_projected, axes=(0, 2, 1))
        # Apply element-wise multiplication.
        return u * v_projected

    def call(self, inputs):
        # Apply layer normalization.
        x = self.normalize1(inputs)
        # Apply the first channel projection. x_projected shape: [batch_size, num_patches, embedding_dim * 2].
        x_projected = self.channel_projection1(x)
        # Apply the spatial gating unit. x_spatial shape: [batch_size, num_patches, embedding_dim].
        x_spatial = self.spatial_gating_unit(x_projected)
        # Apply the second channel projection. x_projected shape: [batch_size, num_patches, embedding_dim].
        x_projected = self.channel_projection2(x_spatial)
        # Add skip connection.
        return x + x_projected


split_at = int(math.floor(len(x_train) * (1.0 - 0.1)))  # validation_split holds out the last 10%
results = {}


def record(name, model, history, accuracy, top_5_accuracy):
    val_loss_restored = model.evaluate(x_train[split_at:], y_train[split_at:], verbose=0)[0]
    results[name] = {
        "params": int(model.count_params()),
        "output_shape": list(model.output.shape),
        "accuracy": float(accuracy),
        "top5": float(top_5_accuracy),
        "loss": [float(v) for v in history.history["loss"]],
        "val_loss": [float(v) for v in history.history["val_loss"]],
        "val_loss_restored": float(val_loss_restored),
        "history_keys": sorted(history.history),
        "epochs": len(history.history["loss"]),
    }


"""
### Build, train, and evaluate the MLP-Mixer model
"""

mlpmixer_blocks = keras.Sequential(
    [MLPMixerLayer(num_patches, embedding_dim, dropout_rate) for _ in range(num_blocks)]
)
learning_rate = 0.005
mlpmixer_classifier = build_classifier(mlpmixer_blocks)
history, accuracy, top_5_accuracy = run_experiment(mlpmixer_classifier)
record("mlpmixer", mlpmixer_classifier, history, accuracy, top_5_accuracy)

"""
### Build, train, and evaluate the FNet model
"""

fnet_blocks = keras.Sequential(
    [FNetLayer(embedding_dim, dropout_rate) for _ in range(num_blocks)]
)
learning_rate = 0.001
fnet_classifier = build_classifier(fnet_blocks, positional_encoding=True)
history, accuracy, top_5_accuracy = run_experiment(fnet_classifier)
record("fnet", fnet_classifier, history, accuracy, top_5_accuracy)

"""
### Build, train, and evaluate the gMLP model
"""

gmlp_blocks = keras.Sequential(
    [gMLPLayer(num_patches, embedding_dim, dropout_rate) for _ in range(num_blocks)]
)
learning_rate = 0.003
gmlp_classifier = build_classifier(gmlp_blocks)
history, accuracy, top_5_accuracy = run_experiment(gmlp_classifier)
record("gmlp", gmlp_classifier, history, accuracy, top_5_accuracy)

# keras.ops.fft2 on a fixed (real, imag) pair, against numpy.
signal = np.random.default_rng(1).normal(size=(2, num_patches, embedding_dim)).astype("float32")
fft_real, fft_imag = keras.ops.fft2((signal, np.zeros_like(signal)))
fft_real, fft_imag = keras.ops.convert_to_numpy(fft_real), keras.ops.convert_to_numpy(fft_imag)
expected = np.fft.fft2(signal.astype("float64"))

# ReduceLROnPlateau on a model that cannot improve (frozen weights give a flat val_loss): the
# learning rate halves after each `patience` epoch without improvement.
frozen_inputs = layers.Input(shape=input_shape)
frozen_x = layers.Dense(units=8)(Patches(patch_size // 2)(frozen_inputs))
frozen = keras.Model(frozen_inputs, layers.Dense(num_classes)(layers.GlobalAveragePooling1D()(frozen_x)))
frozen.trainable = False
frozen.compile(optimizer=keras.optimizers.AdamW(learning_rate=0.004, weight_decay=weight_decay),
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
plateau = frozen.fit(x_train[:128], y_train[:128], batch_size=batch_size, epochs=4, validation_split=0.25,
                     callbacks=[keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1,
                                                                  min_delta=1e-3)],
                     verbose=0)
plateau_rates = [float(v) for v in plateau.history["learning_rate"]]

figures = {"patches_shape": list(patches.shape), "resized_image_sum": round(float(resized.sum()), 1),
           "fft2_real_sum": round(float(fft_real.sum()), 3), "fft2_imag_abs_sum": round(float(np.abs(fft_imag).sum()), 2),
           "plateau_learning_rates": plateau_rates,
           "augmentation_layers": [layer.__class__.__name__ for layer in data_augmentation.layers]}
checks = {"first_patch_is_top_left_block": bool(np.allclose(first_patch, resized[0, :patch_size, :patch_size, :], atol=1e-4)),
          "fft2_matches_numpy": bool(np.allclose(fft_real, expected.real, atol=1e-3)
                                     and np.allclose(fft_imag, expected.imag, atol=1e-3)),
          "plateau_halves_learning_rate": plateau_rates[-1] < plateau_rates[0]}
for name, r in results.items():
    figures[f"{name}_params"] = r["params"]
    figures[f"{name}_output_shape"] = r["output_shape"]
    figures[f"{name}_history_keys"] = r["history_keys"]
    figures[f"{name}_final_loss"] = round(r["loss"][-1], 4)
    figures[f"{name}_test_acc"] = round(r["accuracy"], 4)
    checks[f"{name}_test_accuracy_at_least_0.6"] = r["accuracy"] >= 0.6
    checks[f"{name}_top5_is_1_with_4_classes"] = r["top5"] == 1.0
    checks[f"{name}_loss_falls_by_a_third"] = r["loss"][-1] <= r["loss"][0] * 2 / 3
    checks[f"{name}_restored_weights_score_best_val_loss"] = abs(r["val_loss_restored"] - min(r["val_loss"])) < 1e-4

print("RESULT " + json.dumps({
    "figures": figures,
    "checks": checks,
    "info": {name: {"loss": [round(v, 4) for v in r["loss"]], "val_loss": [round(v, 4) for v in r["val_loss"]],
                    "val_loss_restored": round(r["val_loss_restored"], 4), "epochs": r["epochs"],
                    "test_accuracy": round(r["accuracy"], 4)} for name, r in results.items()},
}))
