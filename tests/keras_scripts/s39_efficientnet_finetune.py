import keras
# Scenario: image classification via fine-tuning with EfficientNet
# (examples/vision/image_classification_efficientnet_fine_tuning, Keras 3 version), on small
# synthetic colour images of varying sizes and 3 classes in place of Stanford Dogs: the example's
# img_augmentation layers (RandomRotation(0.15), RandomTranslation(0.1, 0.1), RandomFlip(),
# RandomContrast(0.1)) applied by a keras.utils.PyDataset that resizes each image with
# keras.ops.image.resize, augments the batch and one-hot encodes labels with keras.ops.one_hot;
# EfficientNetB0(include_top=False, weights=None, input_tensor=inputs) (its BatchNormalization
# statistics set from one training-mode call with momentum 0 on the 96 resized training images, a
# stand-in for the imagenet weights, without which the random base's features vanish) frozen with
# model.trainable = False under the example's top (GlobalAveragePooling2D "avg_pool",
# BatchNormalization, Dropout "top_dropout", Dense softmax "pred"), trained with Adam(1e-2) and
# categorical_crossentropy; then the example's unfreeze_model (the last 20 layers of model.layers
# made trainable except BatchNormalization, recompiled with Adam(1e-5)) and fine-tuned.
# Thresholds: the frozen-base training loss falls by a fifth and the test accuracy beats chance
# (1/3) by 0.15 (the new top's BatchNormalization has had few steps to settle its statistics); the
# trainable weight counts before/after unfreezing are those the example's rule gives (4, then the
# 20 layers' non-BatchNormalization weights plus the head); fine-tuning moves the unfrozen
# top_conv kernel and leaves the frozen stem_conv kernel and the frozen top_bn moving statistics
# exactly as they were; augmentation keeps shapes and changes pixels.
import json

import numpy as np
from keras import layers
from keras.applications import EfficientNetB0

keras.utils.set_random_seed(7)
rng = np.random.default_rng(0)

# IMG_SIZE is determined by EfficientNet model choice (kept small here)
IMG_SIZE = 32
BATCH_SIZE = 16
NUM_CLASSES = 3

base_colours = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200]], "float32")


def make_images(n):
    """Images of varying sizes, like the dataset's: a class colour, a bright square, noise."""
    images, labels = [], []
    for _ in range(n):
        label = int(rng.integers(0, NUM_CLASSES))
        h, w = (int(s) for s in rng.integers(36, 49, 2))
        img = base_colours[label] + rng.normal(0, 30, (h, w, 3))
        top, left = (int(s) for s in rng.integers(0, 20, 2))
        img[top:top + 12, left:left + 12] += 50
        images.append(np.clip(img, 0, 255).astype("uint8"))
        labels.append(label)
    return images, np.array(labels)


train_images, train_labels = make_images(96)
test_images, test_labels = make_images(48)

img_augmentation_layers = [
    layers.RandomRotation(factor=0.15),
    layers.RandomTranslation(height_factor=0.1, width_factor=0.1),
    layers.RandomFlip(),
    layers.RandomContrast(factor=0.1),
]


def img_augmentation(images):
    for layer in img_augmentation_layers:
        images = layer(images)
    return images


class StanfordDogsDataset(keras.utils.PyDataset):
    def __init__(
        self,
        images,
        labels,
        num_classes,
        img_size,
        batch_size,
        augment=False,
        shuffle=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.images = images
        self.labels = labels
        self.num_classes = num_classes
        self.img_size = img_size
        self.batch_size = batch_size
        self.augment = augment
        self.shuffle = shuffle
        self.indices = np.arange(len(labels))
        self.on_epoch_end()

    def __len__(self):
        # Match previous drop_remainder=True behavior.
        return len(self.indices) // self.batch_size

    def on_epoch_end(self):
        if self.shuffle:
            np.random.shuffle(self.indices)

    def __getitem__(self, idx):
        batch_indices = self.indices[
            idx * self.batch_size : (idx + 1) * self.batch_size
        ]

        batch_images = np.stack(
            [
                np.array(
                    keras.ops.image.resize(
                        np.array(self.images[i], dtype="float32"),
                        (self.img_size, self.img_size),
                    )
                )
                for i in batch_indices
            ]
        )

        if self.augment:
            batch_images = np.array(img_augmentation(batch_images))

        batch_labels = np.array(
            keras.ops.one_hot(self.labels[batch_indices], self.num_classes)
        )

        return batch_images, batch_labels


ds_train = StanfordDogsDataset(
    train_images,
    train_labels,
    num_classes=NUM_CLASSES,
    img_size=IMG_SIZE,
    batch_size=BATCH_SIZE,
    augment=True,
    shuffle=True,
)

ds_test = StanfordDogsDataset(
    test_images,
    test_labels,
    num_classes=NUM_CLASSES,
    img_size=IMG_SIZE,
    batch_size=BATCH_SIZE,
    augment=False,
    shuffle=False,
)

# augmentation of one fixed resized batch: same shape, other pixels
plain_batch, plain_labels = StanfordDogsDataset(
    train_images, train_labels, NUM_CLASSES, IMG_SIZE, BATCH_SIZE
)[0]
augmented_batch = np.array(img_augmentation(plain_batch))
plain_train = StanfordDogsDataset(train_images, train_labels, NUM_CLASSES, IMG_SIZE, BATCH_SIZE)
calibration_batch = np.concatenate([plain_train[i][0] for i in range(len(plain_train))])


def calibrate_batchnorm(base, images):
    """Stand-in for weights="imagenet": with random weights and fresh BatchNormalization
    statistics the features of a frozen EfficientNetB0 vanish (about 1e-7), so each
    BatchNormalization takes the statistics of one batch (momentum 0, one training-mode call)."""
    bn_layers = [l for l in base.layers if isinstance(l, layers.BatchNormalization)]
    for l in bn_layers:
        l.momentum = 0.0
    base(images, training=True)
    for l in bn_layers:
        l.momentum = 0.99


def build_model(num_classes):
    inputs = layers.Input(shape=(IMG_SIZE, IMG_SIZE, 3))
    model = EfficientNetB0(include_top=False, input_tensor=inputs, weights=None)
    calibrate_batchnorm(model, calibration_batch)

    # Freeze the pretrained weights
    model.trainable = False

    # Rebuild top
    x = layers.GlobalAveragePooling2D(name="avg_pool")(model.output)
    x = layers.BatchNormalization()(x)

    top_dropout_rate = 0.2
    x = layers.Dropout(top_dropout_rate, name="top_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="pred")(x)

    # Compile
    model = keras.Model(inputs, outputs, name="EfficientNet")
    optimizer = keras.optimizers.Adam(learning_rate=1e-2)
    model.compile(
        optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def unfreeze_model(
    model,
    layers_to_unfreeze=20,
    learning_rate=1e-5,
    loss="categorical_crossentropy",
    metrics=None,
):
    if metrics is None:
        metrics = ["accuracy"]

    if isinstance(layers_to_unfreeze, str):
        unfreeze_from = None
        for i, layer in enumerate(model.layers):
            if layers_to_unfreeze in layer.name:
                unfreeze_from = i
                break
        if unfreeze_from is None:
            raise ValueError(f"No layer name contains {layers_to_unfreeze!r}.")
        layers_to_process = model.layers[unfreeze_from:]
    elif isinstance(layers_to_unfreeze, int):
        n_layers_to_unfreeze = min(layers_to_unfreeze, len(model.layers))
        layers_to_process = model.layers[-n_layers_to_unfreeze:]
    else:
        raise TypeError(
            "layers_to_unfreeze must be an int or str, received: "
            f"{type(layers_to_unfreeze)}"
        )

    # We keep BatchNorm layers frozen
    for layer in layers_to_process:
        if not isinstance(layer, layers.BatchNormalization):
            layer.trainable = True

    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model


model = build_model(num_classes=NUM_CLASSES)
trainable_before = len(model.trainable_weights)
trainable_params_before = int(sum(np.prod(w.shape) for w in model.trainable_weights))
non_trainable_before = len(model.non_trainable_weights)

hist = model.fit(ds_train, epochs=8, verbose=0)

# what the example's rule should unfreeze, from the layers themselves
last_layers = model.layers[-20:]
expected_unfrozen = [l.name for l in last_layers if not isinstance(l, layers.BatchNormalization)]
expected_unfrozen.append("batch_normalization")  # the new top's own, trainable all along
expected_trainable_after = sum(len(l.trainable_weights) if l.trainable else len(l.weights)
                               for l in last_layers if not isinstance(l, layers.BatchNormalization)) + \
    len(model.get_layer("batch_normalization").trainable_weights)

stem_before = keras.ops.convert_to_numpy(model.get_layer("stem_conv").kernel)
top_conv_before = keras.ops.convert_to_numpy(model.get_layer("top_conv").kernel)
top_bn_mean_before = keras.ops.convert_to_numpy(model.get_layer("top_bn").moving_mean)

model = unfreeze_model(model)
trainable_after = len(model.trainable_weights)
trainable_params_after = int(sum(np.prod(w.shape) for w in model.trainable_weights))
trainable_layer_names = [l.name for l in model.layers if l.trainable and l.weights]

hist2 = model.fit(ds_train, epochs=2, verbose=0)
test_loss, test_accuracy = model.evaluate(ds_test, verbose=0)

stem_after = keras.ops.convert_to_numpy(model.get_layer("stem_conv").kernel)
top_conv_after = keras.ops.convert_to_numpy(model.get_layer("top_conv").kernel)
top_bn_mean_after = keras.ops.convert_to_numpy(model.get_layer("top_bn").moving_mean)
loss1 = hist.history["loss"]

print("RESULT " + json.dumps({
    "figures": {"layers": len(model.layers), "params": int(model.count_params()),
                "trainable_weights_frozen": trainable_before,
                "trainable_params_frozen": trainable_params_before,
                "non_trainable_weights_frozen": non_trainable_before,
                "trainable_weights_unfrozen": trainable_after,
                "trainable_params_unfrozen": trainable_params_after,
                "trainable_layers_unfrozen": trainable_layer_names,
                "last_20_layers": [l.name for l in last_layers],
                "batch_shapes": [list(plain_batch.shape), list(plain_labels.shape)],
                "augmented_shape": list(augmented_batch.shape),
                "steps_per_epoch": len(ds_train),
                "history_keys": sorted(hist.history),
                "final_frozen_loss": round(float(loss1[-1]), 4)},
    "checks": {"frozen_loss_falls_by_a_fifth": loss1[-1] < 0.8 * loss1[0],
               "test_accuracy_above_chance_plus_0.15": test_accuracy > 1 / 3 + 0.15,
               "four_trainable_weights_when_frozen": trainable_before == 4,
               "unfrozen_count_follows_the_rule": trainable_after == expected_trainable_after,
               "unfrozen_layers_are_last_20_minus_bn": all(n in expected_unfrozen for n in trainable_layer_names),
               "top_conv_moved": not np.array_equal(top_conv_before, top_conv_after),
               "stem_conv_unchanged": np.array_equal(stem_before, stem_after),
               "frozen_top_bn_stats_unchanged": np.array_equal(top_bn_mean_before, top_bn_mean_after),
               "augmentation_changes_pixels": not np.allclose(plain_batch, augmented_batch),
               "augmented_finite": bool(np.isfinite(augmented_batch).all())},
    "info": {"frozen_loss": [round(v, 4) for v in loss1],
             "finetune_loss": [round(v, 4) for v in hist2.history["loss"]],
             "test_loss": round(float(test_loss), 4), "test_accuracy": round(float(test_accuracy), 4),
             "expected_trainable_after": expected_trainable_after},
}))
