"""Shared by test_retrain.py and test_label_image.py: tiny image folders made with Pillow, and a
stand-in architecture (two convolutions + average pooling, with the applications' signature)
that counts the images it sees. Imported as a plain module: the test files put this folder on
sys.path."""
import os

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.applications.imagenet_utils import get_source_inputs
from lamina.applications import retrain

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

# class -> base colour; images are that colour plus noise, so the classes are learnable
COLOURS = {"Daisy": (230, 230, 60), "red_Roses": (200, 30, 40), "tulips": (40, 60, 210)}


def make_image(path, colour, rng, size=(20, 24), mode="RGB"):
    """A small noisy image of `colour`, saved as `path` (format from the extension) in `mode`."""
    h, w = size
    a = np.clip(np.asarray(colour, np.float32) + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(a, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    img.save(path)
    return path


def make_folder(root, counts=None, seed=0):
    """root/<class>/imgNN.jpg (a few .png), `counts` = {class: n}; returns the root."""
    rng = np.random.default_rng(seed)
    counts = counts or {c: 10 for c in COLOURS}
    for cls, n in counts.items():
        colour = COLOURS.get(cls, tuple(int(v) for v in rng.integers(0, 256, 3)))
        for i in range(n):
            ext = "png" if i % 5 == 4 else "jpg"
            size = (16 + (i % 3) * 4, 20 + (i % 2) * 8)
            make_image(os.path.join(root, cls, f"img{i:02d}.{ext}"), colour, rng, size)
    return str(root)


class StandIn:
    """A stand-in for lamina.applications.MobileNet/InceptionV3 with their call signature;
    counts the images pushed through the models it builds."""

    def __init__(self):
        self.images_seen = 0
        self.builds = 0

    def __call__(self, input_tensor=None, include_top=True, weights="imagenet", pooling=None, alpha=1.0, **kwargs):
        assert include_top is False and pooling == "avg"
        self.builds += 1
        x = layers.Conv2D(max(1, int(8 * alpha)), 3, strides=4, activation="relu")(input_tensor)
        x = layers.Conv2D(max(1, int(16 * alpha)), 1, activation="relu")(x)
        x = layers.GlobalAveragePooling2D()(x)
        model = lamina.Model(get_source_inputs(input_tensor), x)
        if weights == "imagenet":
            raise OSError("the stand-in has no ImageNet weights")
        if weights is not None:
            model.load_weights(weights)
        predict = model.predict

        def counting_predict(x, *a, **k):
            self.images_seen += len(x)
            return predict(x, *a, **k)
        model.predict = counting_predict
        return model


@pytest.fixture
def standin(monkeypatch):
    s = StandIn()
    monkeypatch.setattr(retrain, "_application", lambda arch: s)
    return s


def standin_weights(path, alpha=0.25, seed=0):
    """A weights file (.h5, Keras layout) of the stand-in base without top."""
    lamina.utils.set_random_seed(seed)
    inp = lamina.Input((128, 128, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    StandIn()(input_tensor=x, include_top=False, weights=None, pooling="avg", alpha=alpha).save_weights(str(path))
    return str(path)


def retrain_args(image_dir, tmp, *extra, steps=30, arch="mobilenet_0.25_128", weights="none"):
    """argv for lamina-retrain writing into `tmp`; small and fast."""
    return ["--image_dir", str(image_dir), "--architecture", arch, "--weights", str(weights),
            "--bottleneck_dir", os.path.join(tmp, "bottlenecks"),
            "--output_model", os.path.join(tmp, "out", "model.keras"),
            "--output_labels", os.path.join(tmp, "out", "labels.txt"),
            "--how_many_training_steps", str(steps), "--learning_rate", "0.5", "--train_batch_size", "16",
            "--eval_step_interval", "10", "--validation_batch_size", "-1",
            "--validation_percentage", "20", "--testing_percentage", "30", "--seed", "1", *extra]


def run_retrain(argv):
    """lamina-retrain without the CLI wrapper: the RetrainResult (exceptions propagate)."""
    return retrain.retrain(retrain.parser().parse_args(argv), progress=False)
