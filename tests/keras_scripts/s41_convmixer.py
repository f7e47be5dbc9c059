import keras
# Scenario: image classification with ConvMixer (examples/vision/convmixer, Keras 3 version), on
# small synthetic textured colour images in place of CIFAR-10: the example's activation_block
# (Activation("gelu") then BatchNormalization), conv_stem (a patchifying Conv2D with
# kernel_size=strides=patch_size), conv_mixer_block (DepthwiseConv2D(padding="same"), a residual
# Add, a pointwise 1x1 Conv2D), Rescaling(1/255), GlobalAvgPool2D and a softmax Dense; the
# data_augmentation Sequential (RandomCrop(image_size, image_size), RandomFlip("horizontal"))
# applied to training batches, as the example's make_datasets does in its tf.data map, here in a
# keras.utils.PyDataset; AdamW, "sparse_categorical_crossentropy", ModelCheckpoint(save_best_only,
# save_weights_only) to a .weights.h5 file, load_weights and evaluate; then the example's
# visualization of the learned patch embeddings (conv_mixer_model.layers[2]) and of a depthwise
# kernel found by isinstance(layer, layers.DepthwiseConv2D) and get_config()["kernel_size"] ==
# (5, 5), reduced to numbers (kernel shapes, the min-max normalisation).
# Thresholds: test accuracy at least 0.7 (chance 0.25); the training loss falls by a third; the
# reloaded best weights score the best val_accuracy again; each augmented image is the image or
# its mirror; the patch embedding kernel is (2, 2, 3, filters) and the depthwise kernel
# (5, 5, filters, 1), reshaped by the example to (5, 5, 1, filters); min-max normalised weights
# span [0, 1].
import json
import math
import os
import tempfile

import numpy as np
from keras import layers

keras.utils.set_random_seed(41)
rng = np.random.default_rng(0)

"""
## Hyperparameters
"""

learning_rate = 0.001
weight_decay = 0.0001
batch_size = 16
num_epochs = 20

"""
## Synthetic stand-in for CIFAR-10: four textures (horizontal stripes, vertical stripes,
checkerboard, a smooth blob) in random colours, left-right symmetric in kind.
"""

image_size = 16
num_classes = 4


def make_images(n):
    labels = rng.integers(0, num_classes, n)
    yy, xx = np.mgrid[0:image_size, 0:image_size]
    images = np.zeros((n, image_size, image_size, 3), "float32")
    for i, label in enumerate(labels):
        period = rng.integers(2, 4)
        phase = rng.integers(0, period)
        if label == 0:
            mask = ((yy + phase) // period) % 2
        elif label == 1:
            mask = ((xx + phase) // period) % 2
        elif label == 2:
            mask = (((yy + phase) // period) + ((xx + phase) // period)) % 2
        else:
            cy, cx = rng.uniform(4, 12, 2)
            mask = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 12.0)
        fg, bg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        images[i] = mask[..., None] * fg + (1 - mask[..., None]) * bg
    images += rng.normal(0, 12, images.shape)
    return np.clip(images, 0, 255).astype("float32"), labels.reshape(-1, 1)


x_train, y_train = make_images(640)
x_test, y_test = make_images(160)
val_split = 0.1

val_indices = int(len(x_train) * val_split)
new_x_train, new_y_train = x_train[val_indices:], y_train[val_indices:]
x_val, y_val = x_train[:val_indices], y_train[:val_indices]

"""
## Prepare the datasets (a PyDataset in place of the example's tf.data pipeline)
"""

data_augmentation = keras.Sequential(
    [
        layers.RandomCrop(image_size, image_size),
        layers.RandomFlip("horizontal"),
    ],
    name="data_augmentation",
)


class ImageDataset(keras.utils.PyDataset):
    def __init__(self, images, labels, is_train=False, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels, self.is_train = images, labels, is_train
        self.order = np.arange(len(images))

    def __len__(self):
        return math.ceil(len(self.images) / batch_size)

    def __getitem__(self, idx):
        rows = self.order[idx * batch_size:(idx + 1) * batch_size]
        x, y = self.images[rows], self.labels[rows]
        if self.is_train:
            x = data_augmentation(x)
        return x, y

    def on_epoch_end(self):
        if self.is_train:
            self.order = rng.permutation(len(self.images))


def make_datasets(images, labels, is_train=False):
    return ImageDataset(images, labels, is_train=is_train)


train_dataset = make_datasets(new_x_train, new_y_train, is_train=True)
val_dataset = make_datasets(x_val, y_val)
test_dataset = make_datasets(x_test, y_test)

# what the augmentation does to one batch: every image comes back as itself or its mirror
sample = x_train[:32]
augmented = keras.ops.convert_to_numpy(data_augmentation(sample))
same = [bool(np.allclose(a, s, atol=1e-3)) for a, s in zip(augmented, sample)]
mirrored = [bool(np.allclose(a, s[:, ::-1], atol=1e-3)) for a, s in zip(augmented, sample)]

"""
## ConvMixer utilities
"""


def activation_block(x):
    x = layers.Activation("gelu")(x)
    return layers.BatchNormalization()(x)


def conv_stem(x, filters: int, patch_size: int):
    x = layers.Conv2D(filters, kernel_size=patch_size, strides=patch_size)(x)
    return activation_block(x)


def conv_mixer_block(x, filters: int, kernel_size: int):
    # Depthwise convolution.
    x0 = x
    x = layers.DepthwiseConv2D(kernel_size=kernel_size, padding="same")(x)
    x = layers.Add()([activation_block(x), x0])  # Residual.

    # Pointwise convolution.
    x = layers.Conv2D(filters, kernel_size=1)(x)
    x = activation_block(x)

    return x


def get_conv_mixer_256_8(
    image_size=32, filters=256, depth=8, kernel_size=5, patch_size=2, num_classes=10
):
    """ConvMixer-256/8: https://openreview.net/pdf?id=TVHS5Y4dNvM.
    The hyperparameter values are taken from the paper.
    """
    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Rescaling(scale=1.0 / 255)(inputs)

    # Extract patch embeddings.
    x = conv_stem(x, filters, patch_size)

    # ConvMixer blocks.
    for _ in range(depth):
        x = conv_mixer_block(x, filters, kernel_size)

    # Classification block.
    x = layers.GlobalAvgPool2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)

    return keras.Model(inputs, outputs)


"""
## Model training and evaluation utility
"""


def run_experiment(model):
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate, weight_decay=weight_decay
    )

    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    checkpoint_filepath = os.path.join(tempfile.mkdtemp(), "checkpoint.weights.h5")
    checkpoint_callback = keras.callbacks.ModelCheckpoint(
        checkpoint_filepath,
        monitor="val_accuracy",
        save_best_only=True,
        save_weights_only=True,
    )

    history = model.fit(
        train_dataset,
        validation_data=val_dataset,
        epochs=num_epochs,
        callbacks=[checkpoint_callback],
        verbose=0,
    )

    model.load_weights(checkpoint_filepath)
    test_loss, accuracy = model.evaluate(test_dataset, verbose=0)

    return history, model, test_loss, accuracy, checkpoint_filepath


"""
## Train and evaluate model (a ConvMixer-32/2 on 16x16 images)
"""

filters, depth = 32, 2
conv_mixer_model = get_conv_mixer_256_8(
    image_size=image_size, filters=filters, depth=depth, kernel_size=5, patch_size=2,
    num_classes=num_classes,
)
history, conv_mixer_model, test_loss, accuracy, checkpoint_filepath = run_experiment(conv_mixer_model)
_, val_accuracy_reloaded = conv_mixer_model.evaluate(val_dataset, verbose=0)
best_val_accuracy = max(history.history["val_accuracy"])

"""
## Visualizing the internals of ConvMixer (as numbers)
"""


def visualization_plot(weights, idx=1):
    # First, apply min-max normalization to the
    # given weights to avoid isotrophic scaling.
    p_min, p_max = weights.min(), weights.max()
    weights = (weights - p_min) / (p_max - p_min)

    # "Visualize" all the filters: collect what the example would imshow.
    num_filters = filters
    tiles = []
    for i in range(num_filters):
        current_weight = weights[:, :, :, i]
        if current_weight.shape[-1] == 1:
            current_weight = current_weight.squeeze()
        tiles.append(current_weight)
        idx += 1
    return weights, tiles, idx


# We first visualize the learned patch embeddings.
patch_embeddings = conv_mixer_model.layers[2].get_weights()[0]
normalized_patches, patch_tiles, last_idx = visualization_plot(patch_embeddings)

# First, print the indices of the convolution layers that are not
# pointwise convolutions.
depthwise_indices = []
for i, layer in enumerate(conv_mixer_model.layers):
    if isinstance(layer, layers.DepthwiseConv2D):
        if layer.get_config()["kernel_size"] == (5, 5):
            depthwise_indices.append(i)

idx = depthwise_indices[len(depthwise_indices) // 2]  # Taking a kernel from the middle of the network.

raw_kernel = conv_mixer_model.layers[idx].get_weights()[0]
kernel = np.expand_dims(raw_kernel.squeeze(), axis=2)
normalized_kernel, kernel_tiles, _ = visualization_plot(kernel)

pointwise = [i for i, layer in enumerate(conv_mixer_model.layers)
             if isinstance(layer, layers.Conv2D) and layer.get_config()["kernel_size"] == (1, 1)]
loss = history.history["loss"]

print("RESULT " + json.dumps({
    "figures": {"params": int(conv_mixer_model.count_params()),
                "trainable_params": int(sum(np.prod(w.shape) for w in conv_mixer_model.trainable_weights)),
                "layer_classes": [layer.__class__.__name__ for layer in conv_mixer_model.layers],
                "output_shape": list(conv_mixer_model.output_shape),
                "stem_layer": conv_mixer_model.layers[2].__class__.__name__,
                "patch_embeddings_shape": list(patch_embeddings.shape),
                "patch_tile_shape": list(patch_tiles[0].shape), "patch_tiles": len(patch_tiles),
                "depthwise_indices": depthwise_indices, "pointwise_indices": pointwise,
                "depthwise_kernel_shape": list(raw_kernel.shape), "kernel_shape": list(kernel.shape),
                "kernel_tile_shape": list(kernel_tiles[0].shape), "last_idx": last_idx,
                "augmented_shape": list(augmented.shape),
                "history_keys": sorted(history.history),
                "test_loss": round(float(test_loss), 4), "final_train_loss": round(loss[-1], 4)},
    "checks": {"test_accuracy_at_least_0.7": accuracy >= 0.7,
               "train_loss_falls_by_a_third": loss[-1] <= loss[0] * 2 / 3,
               "checkpoint_written": os.path.exists(checkpoint_filepath),
               "reloaded_weights_score_best_val_accuracy": abs(val_accuracy_reloaded - best_val_accuracy) < 1e-6,
               "augmented_is_image_or_mirror": all(s or m for s, m in zip(same, mirrored)),
               "patch_embeddings_shape": list(patch_embeddings.shape) == [2, 2, 3, filters],
               "depthwise_kernel_shape": list(raw_kernel.shape) == [5, 5, filters, 1],
               "kernel_reshaped": list(kernel.shape) == [5, 5, 1, filters]
               and bool(np.array_equal(kernel[:, :, 0, :], raw_kernel[:, :, :, 0])),
               "one_depthwise_per_block": len(depthwise_indices) == depth,
               "normalized_span_0_1": bool(np.isclose(normalized_patches.min(), 0)
                                           and np.isclose(normalized_patches.max(), 1)
                                           and np.isclose(normalized_kernel.min(), 0)
                                           and np.isclose(normalized_kernel.max(), 1))},
    "info": {"test_accuracy": round(float(accuracy), 4), "loss": [round(v, 4) for v in loss],
             "val_accuracy": [round(v, 4) for v in history.history["val_accuracy"]],
             "val_accuracy_reloaded": round(float(val_accuracy_reloaded), 4),
             "augmented_mirrored": sum(m and not s for s, m in zip(same, mirrored))},
}))
