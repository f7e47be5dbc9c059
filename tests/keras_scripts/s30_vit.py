import keras
# Scenario: image classification with a Vision Transformer
# (examples/vision/image_classification_with_vision_transformer, Keras 3 version), on small
# synthetic colour images in place of CIFAR-100: a data_augmentation Sequential (adapted
# Normalization, Resizing, RandomFlip, RandomRotation, RandomZoom), a Patches layer built on
# keras.ops.image.extract_patches and ops.reshape (shown on one image resized with
# ops.image.resize), a PatchEncoder adding a position Embedding of ops.arange positions,
# transformer blocks of LayerNormalization, MultiHeadAttention(dropout=0.1), Add and a gelu MLP,
# a Flatten and MLP head, AdamW, SparseCategoricalCrossentropy(from_logits=True),
# SparseCategoricalAccuracy and SparseTopKCategoricalAccuracy(5), fit with validation_split and a
# ModelCheckpoint(save_best_only, save_weights_only) to a .weights.h5 file, then load_weights and
# evaluate. Thresholds: test accuracy at least 0.6 and top-5 accuracy at least the accuracy; the
# first patch equals the resized image's top-left block; the reloaded best weights score the
# best val_accuracy again on the validation split.
import json
import math
import os
import tempfile

import numpy as np
from keras import layers
from keras import ops

keras.utils.set_random_seed(4)
rng = np.random.default_rng(0)

num_classes = 10
input_shape = (16, 16, 3)

palette = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1],
                    [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]], "float32")


def make_images(n):
    labels = rng.integers(0, num_classes, n)
    images = palette[labels][:, None, None, :] * 200 + rng.normal(0, 25, (n, *input_shape))
    return np.clip(images, 0, 255).astype("float32"), labels.reshape(-1, 1)


x_train, y_train = make_images(569)
x_test, y_test = make_images(128)

learning_rate = 0.001
weight_decay = 0.0001
batch_size = 128
num_epochs = 8
image_size = 24  # We'll resize input images to this size
patch_size = 6  # Size of the patches to be extract from the input images
num_patches = (image_size // patch_size) ** 2
projection_dim = 16
num_heads = 2
hidden_dim = projection_dim * num_heads
transformer_units = [
    hidden_dim * 2,
    hidden_dim,
]  # Size of the transformer layers
transformer_layers = 2
mlp_head_units = [
    64,
    32,
]  # Size of the dense layers of the final classifier

data_augmentation = keras.Sequential(
    [
        layers.Normalization(),
        layers.Resizing(image_size, image_size),
        layers.RandomFlip("horizontal"),
        layers.RandomRotation(factor=0.02),
        layers.RandomZoom(height_factor=0.2, width_factor=0.2),
    ],
    name="data_augmentation",
)
# Compute the mean and the variance of the training data for normalization.
data_augmentation.layers[0].adapt(x_train)


def mlp(x, hidden_units, dropout_rate):
    for units in hidden_units:
        x = layers.Dense(units, activation=keras.activations.gelu)(x)
        x = layers.Dropout(dropout_rate)(x)
    return x


class Patches(layers.Layer):
    def __init__(self, patch_size):
        super().__init__()
        self.patch_size = patch_size

    def call(self, images):
        input_shape = ops.shape(images)
        batch_size = input_shape[0]
        height = input_shape[1]
        width = input_shape[2]
        channels = input_shape[3]
        num_patches_h = height // self.patch_size
        num_patches_w = width // self.patch_size
        patches = keras.ops.image.extract_patches(images, size=self.patch_size)
        patches = ops.reshape(
            patches,
            (
                batch_size,
                num_patches_h * num_patches_w,
                self.patch_size * self.patch_size * channels,
            ),
        )
        return patches

    def get_config(self):
        config = super().get_config()
        config.update({"patch_size": self.patch_size})
        return config


image = x_train[np.random.choice(range(x_train.shape[0]))]
resized_image = ops.image.resize(
    ops.convert_to_tensor([image], dtype="float32"), size=(image_size, image_size)
)
patches = Patches(patch_size)(resized_image)
n = int(np.sqrt(patches.shape[1]))
patch_images = []
for i, patch in enumerate(patches[0]):
    patch_img = ops.reshape(patch, (patch_size, patch_size, 3))
    patch_images.append(ops.convert_to_numpy(patch_img))
resized = ops.convert_to_numpy(resized_image)


class PatchEncoder(layers.Layer):
    def __init__(self, num_patches, projection_dim):
        super().__init__()
        self.num_patches = num_patches
        self.projection = layers.Dense(units=projection_dim)
        self.position_embedding = layers.Embedding(
            input_dim=num_patches, output_dim=projection_dim
        )

    def call(self, patch):
        positions = ops.expand_dims(
            ops.arange(start=0, stop=self.num_patches, step=1), axis=0
        )
        projected_patches = self.projection(patch)
        encoded = projected_patches + self.position_embedding(positions)
        return encoded

    def get_config(self):
        config = super().get_config()
        config.update({"num_patches": self.num_patches})
        return config


def create_vit_classifier():
    inputs = keras.Input(shape=input_shape)
    # Augment data.
    augmented = data_augmentation(inputs)
    # Create patches.
    patches = Patches(patch_size)(augmented)
    # Encode patches.
    encoded_patches = PatchEncoder(num_patches, hidden_dim)(patches)

    # Create multiple layers of the Transformer block.
    for _ in range(transformer_layers):
        # Layer normalization 1.
        x1 = layers.LayerNormalization(epsilon=1e-6)(encoded_patches)
        # Create a multi-head attention layer.
        attention_output = layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=projection_dim, dropout=0.1
        )(x1, x1)
        # Skip connection 1.
        x2 = layers.Add()([attention_output, encoded_patches])
        # Layer normalization 2.
        x3 = layers.LayerNormalization(epsilon=1e-6)(x2)
        # MLP.
        x3 = mlp(x3, hidden_units=transformer_units, dropout_rate=0.1)
        # Skip connection 2.
        encoded_patches = layers.Add()([x3, x2])

    # Create a [batch_size, projection_dim] tensor.
    representation = layers.LayerNormalization(epsilon=1e-6)(encoded_patches)
    representation = layers.Flatten()(representation)
    representation = layers.Dropout(0.5)(representation)
    # Add MLP.
    features = mlp(representation, hidden_units=mlp_head_units, dropout_rate=0.5)
    # Classify outputs.
    logits = layers.Dense(num_classes)(features)
    # Create the Keras model.
    model = keras.Model(inputs=inputs, outputs=logits)
    return model


def run_experiment(model):
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate, weight_decay=weight_decay
    )

    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.SparseTopKCategoricalAccuracy(5, name="top-5-accuracy"),
        ],
    )

    checkpoint_filepath = os.path.join(tempfile.mkdtemp(), "checkpoint.weights.h5")
    checkpoint_callback = keras.callbacks.ModelCheckpoint(
        checkpoint_filepath,
        monitor="val_accuracy",
        save_best_only=True,
        save_weights_only=True,
    )

    history = model.fit(
        x=x_train,
        y=y_train,
        batch_size=batch_size,
        epochs=num_epochs,
        validation_split=0.1,
        callbacks=[checkpoint_callback],
        verbose=0,
    )

    model.load_weights(checkpoint_filepath)
    test_loss, accuracy, top_5_accuracy = model.evaluate(x_test, y_test, verbose=0)
    return history, test_loss, accuracy, top_5_accuracy, checkpoint_filepath


vit_classifier = create_vit_classifier()
history, test_loss, accuracy, top_5_accuracy, checkpoint_filepath = run_experiment(vit_classifier)
split_at = int(math.floor(len(x_train) * (1.0 - 0.1)))  # validation_split holds out the last 10%
_, val_accuracy_reloaded, _ = vit_classifier.evaluate(x_train[split_at:], y_train[split_at:], verbose=0)
best_val_accuracy = max(history.history["val_accuracy"])
first_block = resized[0, :patch_size, :patch_size, :]

print("RESULT " + json.dumps({
    "figures": {"patches_shape": list(patches.shape), "patch_count": len(patch_images), "grid_side": n,
                "resized_image_sum": round(float(resized.sum()), 1),
                "history_keys": sorted(history.history), "params": int(vit_classifier.count_params()),
                "augmentation_layers": [layer.__class__.__name__ for layer in data_augmentation.layers],
                "test_loss": round(float(test_loss), 4)},
    "checks": {"test_accuracy_at_least_0.6": accuracy >= 0.6, "top5_at_least_accuracy": top_5_accuracy >= accuracy,
               "first_patch_is_top_left_block": bool(np.allclose(patch_images[0], first_block, atol=1e-4)),
               "checkpoint_written": os.path.exists(checkpoint_filepath),
               "reloaded_weights_score_best_val_accuracy": abs(val_accuracy_reloaded - best_val_accuracy) < 1e-6},
    "info": {"test_accuracy": round(float(accuracy), 4), "test_top5_accuracy": round(float(top_5_accuracy), 4),
             "loss": [round(v, 4) for v in history.history["loss"]],
             "val_accuracy": [round(v, 4) for v in history.history["val_accuracy"]],
             "val_accuracy_reloaded": round(float(val_accuracy_reloaded), 4)},
}))
