"""Tutorial 8: transfer learning -- a pretrained MobileNet, a new classifier on top, then fine-tuning.

An ImageNet-trained network has learnt features (edges, textures, parts of objects) that serve
other photos too. We take its convolutional base without its 1000-class top, freeze it, and
train only a small new classifier for our classes: a few hundred photos are enough. Then we
unfreeze the last blocks of the base and train a little more at a small learning rate.

    LAMINA_DATA_DIR=../shared/data python tutorials/08_transfer_learning.py      # flowers, real weights
    python tutorials/08_transfer_learning.py --quick                             # generated pictures

The real run reads `flower_photos_small/` (5 classes x 60 photos) and the ImageNet weights of
MobileNet (alpha 0.25) from `LAMINA_DATA_DIR/pretrained/`. The same steps as command-line tools:
`lamina-retrain --image_dir DIR --architecture mobilenet_0.25_224` and `lamina-label-image`.
"""
# %%
import argparse
import os
import tempfile
import time

import numpy as np

import lamina
from lamina import layers


def generated_folder(root, size=48, per_class=24, seed=0):
    """Three classes of pictures that differ in colour and shape: red discs, green bars, blue rings."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for name in ("discs", "bars", "rings"):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            img = rng.uniform(0, 60, (size, size, 3))
            cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
            r = np.hypot(yy - cy, xx - cx)
            if name == "discs":
                img[r < size / 4, 0] = 230
            elif name == "bars":
                img[:, int(cx) - 4:int(cx) + 4, 1] = 230
            else:
                img[(r > size / 5) & (r < size / 3), 2] = 230
            Image.fromarray(img.astype(np.uint8)).save(os.path.join(root, name, f"{name}_{i}.png"))
    return root


# %% [markdown]
# ## The data: one sub-folder per class
# `image_dataset_from_directory` reads the folder, takes the labels from the sub-folder names,
# resizes every photo to the network's input size and cuts off a validation part (the same
# files every time for a given seed).

def load(args):
    if args.quick:
        directory = generated_folder(tempfile.mkdtemp(prefix="lamina_tl_"))
        size, weights = 64, None    # random weights: the quick run checks the mechanics, not accuracy
    else:
        data = os.environ.get("LAMINA_DATA_DIR")
        if not data or not os.path.isdir(os.path.join(data, "flower_photos_small")):
            raise SystemExit("Set LAMINA_DATA_DIR to a folder holding flower_photos_small/ and pretrained/ "
                             "(here: ../shared/data), or run with --quick")
        directory = os.path.join(data, "flower_photos_small")
        size, weights = 224, "imagenet"
    train, val = lamina.utils.image_dataset_from_directory(
        directory, validation_split=0.2, subset="both", seed=args.seed, image_size=(size, size),
        batch_size=args.batch_size)
    return train, val, size, weights


# %% [markdown]
# ## A frozen base and a new head
# `include_top=False` drops the ImageNet classifier; the base then ends in a 7x7x256 feature
# map (at 224x224). The model takes raw pixels: a `Rescaling` layer maps 0..255 to [-1, 1], the
# preprocessing MobileNet was trained with. `base.trainable = False` freezes every weight of
# the base, and a frozen BatchNormalization runs in inference mode: its statistics stay those
# learnt on ImageNet. Calling the base with `training=False` keeps it that way later, when we
# unfreeze some of its layers.

def build(size, weights, num_classes):
    base = lamina.applications.MobileNet(input_shape=(size, size, 3), alpha=0.25, include_top=False,
                                         weights=weights)
    base.trainable = False
    inputs = lamina.Input((size, size, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = base(x, training=False)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return lamina.Model(inputs, outputs), base


# %% [markdown]
# ## Fine-tuning
# Once the head has learnt, unfreeze the last depthwise-separable blocks (12 and 13) and
# train everything that is unfrozen with a learning rate 10x smaller, so the pretrained
# features are adjusted, not destroyed. Changing `trainable` needs a new `compile`.

def unfreeze_top(base, first="conv_dw_12"):
    base.trainable = True
    names = [l.name for l in base.layers]
    for layer in base.layers[:names.index(first)]:
        layer.trainable = False
    return sum(int(np.prod(w.shape)) for w in base.trainable_weights)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="generated pictures, random weights, seconds")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--fine_tune_epochs", type=int, default=None)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    epochs = args.epochs or (3 if args.quick else 30)
    fine_epochs = args.fine_tune_epochs or (2 if args.quick else 10)
    lamina.utils.set_random_seed(args.seed)

    train, val, size, weights = load(args)
    print(f"classes: {train.class_names}; {len(train.file_paths)} training and {len(val.file_paths)} "
          f"validation images at {size}x{size}")
    model, base = build(size, weights, len(train.class_names))
    print(f"weights: {'ImageNet' if weights else 'random (quick mode)'}; trainable parameters "
          f"{sum(int(np.prod(w.shape)) for w in model.trainable_weights)} of {model.count_params()}")

    t0 = time.time()
    model.compile(optimizer=lamina.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train, epochs=epochs, validation_data=val, verbose=2)
    loss, acc = model.evaluate(val, verbose=0)
    print(f"new head only: validation accuracy {acc:.3f} (loss {loss:.3f}) after {epochs} epochs, "
          f"{time.time() - t0:.0f} s")

    n = unfreeze_top(base)
    model.compile(optimizer=lamina.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    print(f"fine-tuning blocks 12-13 of the base: {n} more trainable parameters")
    model.fit(train, epochs=fine_epochs, validation_data=val, verbose=2)
    loss, acc = model.evaluate(val, verbose=0)
    print(f"after fine-tuning: validation accuracy {acc:.3f} (loss {loss:.3f}), {time.time() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
