"""lamina-label-image: TensorFlow's `label_image.py` for models made by lamina-retrain.

    lamina-label-image --model flowers.keras --labels flowers.txt [--top_k 5] IMAGE...

Loads the model (its input size is read from the model's input shape; its preprocessing is a
layer inside it, so images go in as raw RGB 0..255), loads each image with lamina-retrain's
loader (`retrain.load_image`: the same decoding and resizing as at training time), and prints
the image's path, then its top-k classes as `label score` lines, best first.
"""
import argparse
import os
import sys
import zipfile

import numpy as np

from .retrain import EXTRACT_BATCH, load_image

PROG = "lamina-label-image"


def read_labels(path):
    """The labels file of lamina-retrain: one label per line, in class order."""
    with open(path, encoding="utf-8") as f:
        labels = [line.rstrip("\r\n") for line in f]
    while labels and not labels[-1].strip():
        labels.pop()
    if not labels:
        raise ValueError(f"--labels {path!r} holds no labels (expected one label per line, in class order)")
    return labels


def load_classifier(model_path, labels_path):
    """(model, labels, (height, width)), checked against each other."""
    from ..models.io import load_model
    for flag, p in (("--model", model_path), ("--labels", labels_path)):
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{flag} {p!r}: no such file")
    labels = read_labels(labels_path)
    try:
        model = load_model(model_path, compile=False)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"--model {model_path!r} could not be loaded as a lamina/Keras model (.keras or .h5): "
                         f"{e}") from None
    in_shape, out_shape = tuple(model.input_shape), tuple(model.output_shape)
    if len(in_shape) != 4 or in_shape[3] != 3 or in_shape[1] is None or in_shape[2] is None:
        raise ValueError(f"--model {model_path!r} takes inputs of shape {in_shape}; expected images of a fixed size "
                         "(batch, height, width, 3), as lamina-retrain saves them")
    if len(out_shape) != 2:
        raise ValueError(f"--model {model_path!r} outputs shape {out_shape}; expected class scores (batch, classes)")
    if out_shape[1] != len(labels):
        raise ValueError(f"--labels {labels_path!r} has {len(labels)} labels but --model {model_path!r} outputs "
                         f"{out_shape[1]} classes: pass the labels file written with this model")
    return model, labels, (int(in_shape[1]), int(in_shape[2]))


def classify(model, image_paths, size, errors=None):
    """Class probabilities of each image, (N, classes) in the order of `image_paths`, predicted in
    batches. An unreadable image raises ValueError, or, with a list `errors`, is recorded there
    as (path, message) and gets a row of NaN."""
    n_out = int(model.output_shape[-1])
    out = np.full((len(image_paths), n_out), np.nan, np.float32)
    for start in range(0, len(image_paths), EXTRACT_BATCH):
        idx, images = [], []
        for i in range(start, min(start + EXTRACT_BATCH, len(image_paths))):
            try:
                images.append(load_image(image_paths[i], size))
                idx.append(i)
            except ValueError as e:
                if errors is None:
                    raise
                errors.append((image_paths[i], str(e)))
        if images:
            out[idx] = model.predict(np.stack(images), batch_size=len(images), verbose=0)
    return out


def parser():
    p = argparse.ArgumentParser(prog=PROG, description="Classify images with a model retrained by lamina-retrain.")
    p.add_argument("--model", required=True, help="the model file written by lamina-retrain (.keras or .h5)")
    p.add_argument("--labels", required=True, help="the labels file written by lamina-retrain")
    p.add_argument("--top_k", type=int, default=5, help="how many classes to print per image (default: %(default)s)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (jpeg, png, bmp, gif)")
    return p


def main(argv=None):
    """The lamina-label-image command. Returns the exit status: 0, 1 (an image or file could not
    be read) or 2 (bad arguments or files that do not fit together)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        if args.top_k < 1:
            raise ValueError(f"--top_k must be at least 1, received {args.top_k}")
        missing = [p for p in args.images if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"no such image file: {', '.join(repr(p) for p in missing)}")
        model, labels, size = load_classifier(args.model, args.labels)
        errors = []
        probs = classify(model, args.images, size, errors)
    except (ValueError, ImportError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    bad = {p for p, _ in errors}
    k = min(args.top_k, len(labels))
    first = True
    for path, row in zip(args.images, probs):
        if path in bad:
            continue
        if not first:
            print()
        first = False
        print(path)
        for c in np.argsort(-row, kind="stable")[:k]:
            print(f"{labels[c]} {row[c]:.5f}")
    for path, msg in errors:
        print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
