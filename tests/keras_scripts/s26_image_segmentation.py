import keras
# Scenario: image segmentation with a U-Net-like architecture (examples/vision/
# oxford_pets_image_segmentation), on 32x32 synthetic "pets" (a coloured disc on a noisy background)
# with trimap-like masks (0 inside, 1 background, 2 the outline): a PyDataset (the example's
# keras.utils.Sequence) that yields batches, the Xception-style U-Net (Conv2D with strides 2,
# BatchNormalization, Activation, SeparableConv2D, MaxPooling2D(3, strides=2, padding="same"),
# residuals projected with 1x1 Conv2D and merged with layers.add, Conv2DTranspose, UpSampling2D(2)),
# a per-pixel softmax Conv2D trained with sparse_categorical_crossentropy, ModelCheckpoint with
# save_best_only, then predict and argmax to masks. Filter counts are a quarter of the example's,
# and batches hold 2 images (the example's 32): in a run this short, larger batches leave
# BatchNormalization's moving statistics far from the batch statistics, and predict() (inference
# mode) then does little better than all-background. Thresholds: the loss falls by half; the
# predicted masks reach 0.85 pixel accuracy on the validation images, above the all-background
# baseline; the best checkpoint is written.
import json
import os

import numpy as np
from keras import layers

keras.utils.set_random_seed(26)
rng = np.random.default_rng(0)

img_size = (32, 32)
num_classes = 3
batch_size = 2


def make_pets(n):
    """Images with one disc each, and trimaps: 1 foreground, 2 background, 3 the outline (as in the dataset)."""
    rows, cols = np.mgrid[0:img_size[0], 0:img_size[1]]
    images = np.zeros((n,) + img_size + (3,), "float32")
    trimaps = np.zeros((n,) + img_size, "uint8")
    for i in range(n):
        r, c = rng.uniform(10, 22, 2)
        radius = rng.uniform(8, 10)
        dist = np.sqrt((rows - r) ** 2 + (cols - c) ** 2)
        inside, outline = dist < radius - 1, np.abs(dist - radius) <= 1
        colour = rng.uniform(0.5, 1.0, 3)
        images[i] = rng.uniform(0.0, 0.4, img_size + (3,))
        images[i][inside | outline] = colour + 0.1 * rng.standard_normal(3)
        trimaps[i] = np.where(inside, 1, np.where(outline, 3, 2))
    return images * 255.0, trimaps


class OxfordPets(keras.utils.PyDataset):
    """Helper to iterate over the data (as Numpy arrays)."""

    def __init__(self, batch_size, img_size, input_imgs, target_imgs, **kwargs):
        super().__init__(**kwargs)
        self.batch_size = batch_size
        self.img_size = img_size
        self.input_imgs = input_imgs
        self.target_imgs = target_imgs

    def __len__(self):
        return len(self.target_imgs) // self.batch_size

    def __getitem__(self, idx):
        """Returns tuple (input, target) correspond to batch #idx."""
        i = idx * self.batch_size
        x = np.zeros((self.batch_size,) + self.img_size + (3,), dtype="float32")
        for j, img in enumerate(self.input_imgs[i : i + self.batch_size]):
            x[j] = img / 255.0
        y = np.zeros((self.batch_size,) + self.img_size + (1,), dtype="uint8")
        for j, img in enumerate(self.target_imgs[i : i + self.batch_size]):
            y[j] = np.expand_dims(img, 2)
            # Ground truth labels are 1, 2, 3. Subtract one to make them 0, 1, 2:
            y[j] -= 1
        return x, y


def get_model(img_size, num_classes):
    inputs = keras.Input(shape=img_size + (3,))

    ### [First half of the network: downsampling inputs] ###

    # Entry block
    x = layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    previous_block_activation = x  # Set aside residual

    # Blocks 1, 2, 3 are identical apart from the feature depth.
    for filters in [16, 32, 64]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

        # Project residual
        residual = layers.Conv2D(filters, 1, strides=2, padding="same")(previous_block_activation)
        x = layers.add([x, residual])  # Add back residual
        previous_block_activation = x  # Set aside next residual

    ### [Second half of the network: upsampling inputs] ###

    for filters in [64, 32, 16, 8]:
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.UpSampling2D(2)(x)

        # Project residual
        residual = layers.UpSampling2D(2)(previous_block_activation)
        residual = layers.Conv2D(filters, 1, padding="same")(residual)
        x = layers.add([x, residual])  # Add back residual
        previous_block_activation = x  # Set aside next residual

    # Add a per-pixel classification layer
    outputs = layers.Conv2D(num_classes, 3, activation="softmax", padding="same")(x)

    # Define the model
    model = keras.Model(inputs, outputs)
    return model


# Free up RAM in case the model definition cells were run multiple times
keras.backend.clear_session()

# Build model
model = get_model(img_size, num_classes)

input_imgs, target_imgs = make_pets(320)
val_samples = 64
train_gen = OxfordPets(batch_size, img_size, input_imgs[:-val_samples], target_imgs[:-val_samples])
val_gen = OxfordPets(batch_size, img_size, input_imgs[-val_samples:], target_imgs[-val_samples:])

# We use the "sparse" version of categorical_crossentropy because our target data is integers.
model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")

callbacks = [keras.callbacks.ModelCheckpoint("oxford_segmentation.keras", save_best_only=True)]

# Train the model, doing validation at the end of each epoch.
epochs = 6
history = model.fit(train_gen, epochs=epochs, validation_data=val_gen, callbacks=callbacks, verbose=0)

# Generate predictions for all images in the validation set
val_preds = model.predict(val_gen, verbose=0)


def predicted_mask(i):
    mask = np.argmax(val_preds[i], axis=-1)
    mask = np.expand_dims(mask, axis=-1)
    return mask


masks = np.stack([predicted_mask(i) for i in range(len(val_preds))])
truth = target_imgs[-val_samples:][..., None].astype("int64") - 1
pixel_accuracy = float((masks == truth).mean())
background_rate = float((truth == 1).mean())
loss = history.history["loss"]

print("RESULT " + json.dumps({
    "figures": {"history_keys": sorted(history.history), "preds_shape": list(val_preds.shape),
                "masks_shape": list(masks.shape), "params": int(model.count_params()),
                "background_rate": round(background_rate, 4), "pixel_accuracy": round(pixel_accuracy, 4)},
    "checks": {"loss_falls_by_half": loss[-1] <= loss[0] / 2,
               "pixel_accuracy_at_least_0.85": pixel_accuracy >= 0.85,
               "beats_all_background": pixel_accuracy > background_rate + 0.05,
               "masks_hold_class_ids": bool(masks.min() >= 0 and masks.max() < num_classes),
               "checkpoint_written": os.path.exists("oxford_segmentation.keras")},
    "info": {"loss": [round(v, 4) for v in loss], "val_loss": [round(v, 4) for v in history.history["val_loss"]],
             "background_rate": round(background_rate, 4)},
}))
