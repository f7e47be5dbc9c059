"""lamina-retrain: TensorFlow's "for Poets" `retrain.py`, re-done on lamina.

Trains a new softmax layer on top of a pretrained image model (InceptionV3 or MobileNet) for the
classes of a folder of images, one sub-folder per class:

    lamina-retrain --image_dir ~/flower_photos --architecture mobilenet_0.50_224 \\
        --output_model flowers.keras --output_labels flowers.txt
    lamina-label-image --model flowers.keras --labels flowers.txt some_daisy.jpg

As in retrain.py: the label of a class is its folder name, lower-cased, with every run of
characters other than a-z and 0-9 replaced by a space; each image goes to the training,
validation or testing set by a hash of its path inside the image folder (so a file keeps its set when others are
added); the base model's output (the "bottleneck") is computed once per image and cached on
disk; each training step takes a random batch of cached bottlenecks (class, then image, drawn
with replacement); distortion flags skip the cache and push distorted images through the base
model at every step.

The saved model is the whole classifier: raw RGB pixels 0..255 -> Rescaling to [-1, 1] (the
architectures' `preprocess_input`) -> base -> the trained Dense softmax ("final_result").
`load_image` is the one image loader of both tools.

The bottleneck cache is keyed so that a stale entry cannot be reused:

    <bottleneck_dir>/<extractor fingerprint[:16]>/<class folder>/<file name>.<sha256 of file[:16]>.npy

The fingerprint hashes the architecture, the input size, the loader's version and every weight
value of the base model, so other weights (or other random weights) get another folder, and a
changed image gets another entry. Entries are written atomically; an unreadable entry, or one
of the wrong shape or dtype, or holding NaN/inf, is recomputed with a warning.
"""
import argparse
import dataclasses
import hashlib
import os
import re
import struct
import sys

import numpy as np

PROG = "lamina-retrain"
MAX_NUM_IMAGES_PER_CLASS = 2 ** 27 - 1  # retrain.py's constant: ~134M
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
FEW_IMAGES = 20
EXTRACT_BATCH = 32
# Part of the cache fingerprint: bump it when load_image or the entry format changes.
LOADER_VERSION = "lamina-retrain bottleneck v1: Pillow RGB, keras bilinear resize, float32 0..255, .npy (D,)"
CATEGORIES = ("training", "validation", "testing")


# ---- images --------------------------------------------------------------------------------------

def decode_image(path):
    """The image file `path` fully decoded to float32 RGB (H, W, 3), values 0..255. Grayscale,
    palette, CMYK and RGBA images are converted to RGB (alpha dropped); a truncated or corrupt
    file raises ValueError naming it (Pillow's LOAD_TRUNCATED_IMAGES is left False)."""
    from ..datasets._image import read_image
    try:
        x = read_image(os.fspath(path), 3)  # np.asarray inside forces the full decode
    except (SyntaxError, EOFError, IndexError, KeyError, TypeError, ZeroDivisionError, struct.error) as e:
        raise ValueError(f"{path}: cannot read this image ({type(e).__name__}: {e}). Remove or replace "
                         "the file.") from None
    if x.ndim != 3 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{path}: the image is empty (shape {x.shape}). Remove or replace the file.")
    return x


def load_image(path, size):
    """The loader of lamina-retrain and lamina-label-image: `decode_image`, then Keras's bilinear
    resize to `size` = (height, width). float32 (height, width, 3), values 0..255."""
    from ..datasets._image import resize
    return resize(decode_image(path), tuple(size), "bilinear")


def distort_image(x, size, rng, flip_left_right=False, random_crop=0, random_scale=0, random_brightness=0):
    """retrain.py's distortions of a decoded image `x`: resize to size * (1 + crop%) * U(1, 1 + scale%),
    take a random `size` window, mirror it with probability 1/2, multiply by U(1 - b%, 1 + b%)."""
    from ..datasets._image import resize
    h, w = size
    scale = (1.0 + random_crop / 100.0) * rng.uniform(1.0, 1.0 + random_scale / 100.0)
    ph, pw = max(int(scale * h), h), max(int(scale * w), w)
    x = resize(x, (ph, pw), "bilinear")
    top, left = int(rng.integers(0, ph - h + 1)), int(rng.integers(0, pw - w + 1))
    x = x[top:top + h, left:left + w]
    if flip_left_right and rng.random() < 0.5:
        x = x[:, ::-1]
    return np.ascontiguousarray(x * np.float32(rng.uniform(1.0 - random_brightness / 100.0,
                                                           1.0 + random_brightness / 100.0)), np.float32)


# ---- the image lists -----------------------------------------------------------------------------

def label_of(dir_name):
    """retrain.py's label of a class folder: lower case, runs of non-alphanumerics -> one space."""
    return re.sub(r"[^a-z0-9]+", " ", dir_name.lower())


def percentage_hash(hash_path):
    """retrain.py's stable position of a file in [0, 100]: sha1 of its path with anything from
    '_nohash_' on removed (so variants of one photo share a set)."""
    hash_name = re.sub(r"_nohash_.*$", "", hash_path)
    hashed = int(hashlib.sha1(hash_name.encode("utf-8")).hexdigest(), 16)
    return (hashed % (MAX_NUM_IMAGES_PER_CLASS + 1)) * (100.0 / MAX_NUM_IMAGES_PER_CLASS)


def which_set(hash_path, validation_percentage, testing_percentage):
    """"validation", "testing" or "training" for the file at `hash_path`, by retrain.py's rule.

    retrain.py hashes the path as its glob returns it, so the split changed with the spelling of
    --image_dir (relative, absolute, moved). Here `hash_path` is the path inside the image folder,
    `<class folder>/<file name>`: the same photos get the same sets wherever the folder lives,
    and adding photos never moves old ones between sets."""
    p = percentage_hash(hash_path)
    if p < validation_percentage:
        return "validation"
    if p < validation_percentage + testing_percentage:
        return "testing"
    return "training"


@dataclasses.dataclass
class ImageEntry:
    path: str            # os.path.join(image_dir, dir_name, file_name)
    dir_name: str
    file_name: str
    label_index: int
    category: str


@dataclasses.dataclass
class ImageLists:
    image_dir: str
    labels: list         # class index -> label
    dirs: list           # class index -> folder name
    entries: list        # ImageEntry, by class, then file name

    def of(self, category, label_index=None):
        return [e for e in self.entries if e.category == category
                and (label_index is None or e.label_index == label_index)]


def _is_image_file(name):
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def create_image_lists(image_dir, testing_percentage, validation_percentage, warn=None):
    """Lists the classes (sorted sub-folders of `image_dir`) and their images (files with an
    image extension directly in each sub-folder; other files are ignored), split as retrain.py.
    Raises ValueError (FileNotFoundError for a missing folder) naming the folder at fault."""
    warn = warn or _warn
    image_dir = os.fspath(image_dir)
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"--image_dir {image_dir!r} does not exist or is not a folder; expected a folder "
                                "with one sub-folder of images per class (e.g. flowers/daisy/*.jpg, "
                                "flowers/roses/*.jpg).")
    names = sorted(os.listdir(image_dir))
    subdirs = [d for d in names if not d.startswith(".") and os.path.isdir(os.path.join(image_dir, d))]
    if not subdirs:
        loose = [n for n in names if _is_image_file(n) and os.path.isfile(os.path.join(image_dir, n))]
        hint = (f" It holds {len(loose)} image file(s) directly: move each class's images into a sub-folder "
                "named after the class." if loose else "")
        raise ValueError(f"No class sub-folders found in --image_dir {image_dir!r}: expected one sub-folder of "
                         f"images per class (e.g. {os.path.join(image_dir, 'daisy', '1.jpg')}).{hint}")
    labels, dirs, entries, seen = [], [], [], {}
    for dir_name in subdirs:
        folder = os.path.join(image_dir, dir_name)
        files = sorted(f for f in os.listdir(folder) if _is_image_file(f) and os.path.isfile(os.path.join(folder, f)))
        if not files:
            raise ValueError(f"Class folder {folder!r} has no images (files ending in "
                             f"{', '.join(IMAGE_EXTENSIONS)}): add images to it or remove it.")
        label = label_of(dir_name)
        if label in seen:
            raise ValueError(f"Class folders {seen[label]!r} and {dir_name!r} in {image_dir!r} both give the label "
                             f"{label!r} (labels are lower-cased folder names with non-alphanumerics replaced by "
                             "spaces): rename one of them.")
        seen[label] = dir_name
        if len(files) < FEW_IMAGES:
            warn(f"class folder {folder!r} has only {len(files)} images (fewer than {FEW_IMAGES}), which may "
                 "cause issues: its validation and test sets will be small or empty.")
        elif len(files) > MAX_NUM_IMAGES_PER_CLASS:
            warn(f"class folder {folder!r} has more than {MAX_NUM_IMAGES_PER_CLASS} images; some of them will "
                 "never be selected.")
        k = len(labels)
        labels.append(label)
        dirs.append(dir_name)
        for f in files:
            path = os.path.join(image_dir, dir_name, f)
            entries.append(ImageEntry(path, dir_name, f, k, which_set(os.path.join(dir_name, f),
                                                                      validation_percentage, testing_percentage)))
    if len(labels) < 2:
        raise ValueError(f"Only one class folder of images ({dirs[0]!r}) found in --image_dir {image_dir!r}: "
                         "retraining needs at least two classes (one sub-folder per class).")
    return ImageLists(image_dir, labels, dirs, entries)


# ---- architectures -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str            # as given, e.g. "mobilenet_0.50_224"
    application: str     # the lamina.applications constructor: "InceptionV3" or "MobileNet"
    size: int            # input height = width
    alpha: float = 1.0   # MobileNet's width multiplier

    @property
    def key(self):
        """The canonical description (mobilenet_0.5_224 and mobilenet_0.50_224 are one model)."""
        return f"{self.application}(alpha={self.alpha!r}, size={self.size})"

    def kwargs(self):
        return {"alpha": self.alpha} if self.application == "MobileNet" else {}


MOBILENET_ALPHAS = {"1.0": 1.0, "0.75": 0.75, "0.50": 0.5, "0.5": 0.5, "0.25": 0.25}
MOBILENET_SIZES = (224, 192, 160, 128)


def parse_architecture(name):
    """retrain.py's --architecture: "inception_v3" (299x299) or "mobilenet_<alpha>_<size>"
    with alpha in 1.0, 0.75, 0.50 (or 0.5), 0.25 and size in 224, 192, 160, 128."""
    if name == "inception_v3":
        return Architecture(name, "InceptionV3", 299)
    parts = name.split("_")
    if parts[0] == "mobilenet" and len(parts) in (3, 4):
        if len(parts) == 4:
            if parts[3] == "quantized":
                raise ValueError(f"--architecture {name!r}: quantized MobileNets are not supported by lamina; use "
                                 f"{'_'.join(parts[:3])!r}.")
            raise ValueError(f"--architecture {name!r}: could not understand the suffix {parts[3]!r}.")
        if parts[1] not in MOBILENET_ALPHAS:
            raise ValueError(f"--architecture {name!r}: the MobileNet version should be '1.0', '0.75', '0.50' or "
                             f"'0.25', found {parts[1]!r}.")
        if not parts[2].isdigit() or int(parts[2]) not in MOBILENET_SIZES:
            raise ValueError(f"--architecture {name!r}: the MobileNet size should be '224', '192', '160' or "
                             f"'128', found {parts[2]!r}.")
        return Architecture(name, "MobileNet", int(parts[2]), MOBILENET_ALPHAS[parts[1]])
    raise ValueError(f"Could not understand --architecture {name!r}: expected 'inception_v3' or "
                     "'mobilenet_<version>_<size>' (version 1.0, 0.75, 0.50, 0.25; size 224, 192, 160, 128), "
                     "e.g. 'mobilenet_0.50_224'.")


def _application(arch):
    """The constructor of `arch` in lamina.applications (a seam the tests replace)."""
    from . import inception_v3, mobilenet
    return {"InceptionV3": inception_v3.InceptionV3, "MobileNet": mobilenet.MobileNet}[arch.application]


def weights_argument(weights):
    """--weights to the applications' `weights`: "imagenet", None ("none"/"random") or a path."""
    if weights.lower() in ("none", "random"):
        return None
    if weights == "imagenet":
        return "imagenet"
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"--weights {weights!r}: no such file. Give 'imagenet', 'none' (random weights) "
                                "or the path of a Keras-layout .h5 weights file of the base model without its top "
                                "(include_top=False).")
    return weights


def build_extractor(arch, weights):
    """(image input, base model): raw pixels 0..255 -> Rescaling to [-1, 1] -> the architecture
    without top, average-pooled to the bottleneck vector."""
    from .. import layers
    inp = layers.Input((arch.size, arch.size, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inp)
    try:
        base = _application(arch)(input_tensor=x, include_top=False, weights=weights, pooling="avg",
                                  **arch.kwargs())
    except ValueError as e:
        if weights in (None, "imagenet"):
            raise
        raise ValueError(f"--weights {weights!r} do not fit --architecture {arch.name}: {e}") from None
    if tuple(base.output_shape[:1]) != (None,) or len(base.output_shape) != 2:
        raise ValueError(f"{arch.name}: expected a pooled (batch, features) output, got {base.output_shape}")
    return inp, base


def extractor_fingerprint(arch, base):
    """sha256 of the loader version, the architecture, the input size and every weight value of
    the base model (in its fixed order; names are left out, they depend on build order)."""
    h = hashlib.sha256()
    h.update(f"{LOADER_VERSION}\n{arch.key}\n{arch.size}\n".encode())
    for w in base.weights:
        v = np.ascontiguousarray(w.numpy())
        h.update(f"{v.dtype.str}{v.shape}\n".encode())
        h.update(v.tobytes())
    return h.hexdigest()


# ---- the bottleneck cache ------------------------------------------------------------------------

class BottleneckCache:
    """Bottleneck vectors on disk, one .npy per image, under a folder named by the extractor's
    fingerprint (see the module docstring)."""

    def __init__(self, root, fingerprint, size, warn=None):
        self.root = os.fspath(root)
        self.dir = os.path.join(self.root, fingerprint[:16])
        self.size = int(size)
        self.warn = warn or _warn

    def path(self, entry, image_sha256):
        return os.path.join(self.dir, entry.dir_name, f"{entry.file_name}.{image_sha256[:16]}.npy")

    def load(self, path):
        """The cached vector, or None when absent or corrupt (then with a warning)."""
        if not os.path.exists(path):
            return None
        try:
            v = np.load(path, allow_pickle=False)
            problem = None
            if not isinstance(v, np.ndarray) or v.shape != (self.size,) or v.dtype != np.float32:
                problem = f"holds {getattr(v, 'dtype', type(v).__name__)} {getattr(v, 'shape', '')}, " \
                          f"expected float32 ({self.size},)"
            elif not np.isfinite(v).all():
                problem = "holds NaN or infinite values"
        except (OSError, ValueError, EOFError) as e:
            problem = f"cannot be read ({type(e).__name__}: {e})"
        if problem:
            self.warn(f"bottleneck cache entry {path} {problem}; recomputing it.")
            return None
        return v

    def save(self, path, vector):
        from .._fileio import atomic_write
        with atomic_write(path) as f:
            np.save(f, np.asarray(vector, np.float32), allow_pickle=False)

    def describe(self, arch, weights, fingerprint):
        """A human-readable note of what the folder holds (written once)."""
        from .._fileio import atomic_write
        note = os.path.join(self.dir, "EXTRACTOR.txt")
        if not os.path.exists(note):
            with atomic_write(note, "w") as f:
                f.write(f"architecture: {arch.name} ({arch.key})\nweights: {weights}\n"
                        f"fingerprint: {fingerprint}\nloader: {LOADER_VERSION}\n")


def compute_bottlenecks(base, cache, entries, image_size, warn=None, progress=True):
    """Bottlenecks of `entries`: from the cache when present and sound, else computed in batches
    of EXTRACT_BATCH images (memory independent of the folder size) and cached. Returns
    (vectors {id(entry): vector}, skipped entries (unreadable images), computed count, reused count)."""
    from ..datasets._files import sha256_of
    warn = warn or _warn
    vectors, skipped, todo = {}, [], []
    for e in entries:
        try:
            p = cache.path(e, sha256_of(e.path))
        except OSError as err:
            warn(f"skipping {e.path}: cannot read the file ({err}).")
            skipped.append(e)
            continue
        v = cache.load(p)
        if v is None:
            todo.append((e, p))
        else:
            vectors[id(e)] = v
    reused = len(vectors)
    computed = 0
    if todo:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc="Computing bottlenecks", unit="image", disable=not progress,
                   file=sys.stderr)
        try:
            for start in range(0, len(todo), EXTRACT_BATCH):
                batch, images = [], []
                for e, p in todo[start:start + EXTRACT_BATCH]:
                    try:
                        images.append(load_image(e.path, image_size))
                        batch.append((e, p))
                    except ValueError as err:
                        with tqdm.external_write_mode(file=sys.stderr):
                            warn(f"skipping a corrupt image: {err}")
                        skipped.append(e)
                if images:
                    out = base.predict(np.stack(images), batch_size=len(images), verbose=0)
                    for (e, p), v in zip(batch, out):
                        if not np.isfinite(v).all():
                            with tqdm.external_write_mode(file=sys.stderr):
                                warn(f"skipping {e.path}: the base model gave NaN or infinite bottleneck values "
                                     "for it.")
                            skipped.append(e)
                            continue
                        cache.save(p, v)
                        vectors[id(e)] = np.asarray(v, np.float32)
                        computed += 1
                bar.update(len(todo[start:start + EXTRACT_BATCH]))
        finally:
            bar.close()
    return vectors, skipped, computed, reused


# ---- training ------------------------------------------------------------------------------------

@dataclasses.dataclass
class RetrainResult:
    labels: list
    model: object                  # the full classifier (pixels -> probabilities)
    test_files: list               # the test images evaluated, in order
    test_ground_truth: np.ndarray  # their class indices
    test_probabilities: np.ndarray # (N, classes): what the trained head gave on their bottlenecks
    test_accuracy: object          # float, or None without test images
    bottlenecks_computed: int
    bottlenecks_reused: int
    cache_dir: str
    skipped: list                  # paths of unreadable images


def _sample(pools, n, rng):
    """retrain.py's random batch: a class uniformly (among those with images), then one of its
    images uniformly; `n` times, with replacement."""
    classes = [k for k, p in enumerate(pools) if p]
    picks = rng.integers(0, len(classes), size=n)
    return [pools[classes[c]][int(rng.integers(0, len(pools[classes[c]])))] for c in picks]


def _make_head(num_features, num_classes, learning_rate):
    from .. import initializers, layers, optimizers
    from ..models.model import Functional
    inp = layers.Input((num_features,), name="bottleneck")
    dense = layers.Dense(num_classes, activation="softmax", name="final_result",
                         kernel_initializer=initializers.TruncatedNormal(stddev=0.001))
    head = Functional(inp, dense(inp), name="retrain_head")
    head.compile(optimizer=optimizers.SGD(learning_rate=learning_rate), loss="sparse_categorical_crossentropy",
                 metrics=["accuracy"])
    return head, dense


def _check_args(args):
    checks = [(args.how_many_training_steps >= 0, "--how_many_training_steps must be >= 0"),
              (args.learning_rate > 0, "--learning_rate must be > 0"),
              (args.train_batch_size > 0, "--train_batch_size must be > 0"),
              (args.validation_batch_size == -1 or args.validation_batch_size > 0,
               "--validation_batch_size must be > 0, or -1 for the whole validation set"),
              (args.test_batch_size == -1 or args.test_batch_size > 0,
               "--test_batch_size must be > 0, or -1 for the whole test set"),
              (args.eval_step_interval > 0, "--eval_step_interval must be > 0"),
              (0 <= args.validation_percentage and 0 <= args.testing_percentage
               and args.validation_percentage + args.testing_percentage < 100,
               "--validation_percentage and --testing_percentage must be >= 0 and leave some images for training "
               "(their sum < 100)"),
              (args.random_crop >= 0 and args.random_scale >= 0 and 0 <= args.random_brightness <= 100,
               "--random_crop and --random_scale must be >= 0, --random_brightness in [0, 100]")]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)
    if not args.output_model.endswith((".keras", ".h5", ".hdf5")):
        raise ValueError(f"--output_model {args.output_model!r}: use a '.keras' or '.h5' file name")


def _pools(lists, skipped=()):
    """{category: [entries of class 0, of class 1, ...]} without the `skipped` entries."""
    skip = {id(e) for e in skipped}
    return {c: [[e for e in lists.of(c, k) if id(e) not in skip] for k in range(len(lists.labels))]
            for c in CATEGORIES}


def _check_pools(lists, pools, args):
    for k, d in enumerate(lists.dirs):
        folder = os.path.join(lists.image_dir, d)
        if not any(pools[c][k] for c in CATEGORIES):
            raise ValueError(f"Class folder {folder!r} has no readable images: replace the corrupt files.")
        if not pools["training"][k]:
            raise ValueError(f"Class folder {folder!r} has no training images after the split "
                             f"({args.validation_percentage}% validation, {args.testing_percentage}% testing): "
                             "add images or lower --validation_percentage / --testing_percentage.")


def _distorted_batch(base, pool, n, size, args, rng, warn):
    """n distorted training images (class, then image, at random) through the base: (bottlenecks,
    labels). A corrupt image is dropped from `pool` with a warning."""
    images, ys = [], []
    while len(images) < n:
        e = _sample(pool, 1, rng)[0]
        try:
            x = decode_image(e.path)
        except ValueError as err:
            warn(f"skipping a corrupt image: {err}")
            pool[e.label_index].remove(e)
            if not pool[e.label_index]:
                raise ValueError(f"Class folder {os.path.dirname(e.path)!r} has no readable training images: "
                                 "replace the corrupt files.") from None
            continue
        images.append(distort_image(x, size, rng, args.flip_left_right, args.random_crop, args.random_scale,
                                    args.random_brightness))
        ys.append(e.label_index)
    return base.predict(np.stack(images), batch_size=EXTRACT_BATCH, verbose=0), np.asarray(ys, np.int32)


def _train(head, next_batch, stack, pools, args, rng):
    """retrain.py's loop: one SGD step per batch; every eval_step_interval steps and at the last,
    the accuracy and cross entropy on that batch (after the step) and the validation accuracy."""
    all_val = [e for p in pools["validation"] for e in p]
    steps = args.how_many_training_steps
    for i in range(steps):
        xb, yb = next_batch()
        head.train_on_batch(xb, yb)
        if i % args.eval_step_interval and i + 1 != steps:
            continue
        logs = head.test_on_batch(xb, yb, return_dict=True)
        print(f"Step {i}: Train accuracy = {100 * logs['accuracy']:.1f}%")
        print(f"Step {i}: Cross entropy = {logs['loss']:f}")
        if not all_val:
            print(f"Step {i}: Validation accuracy = n/a (N=0: no validation images)")
            continue
        val = all_val if args.validation_batch_size == -1 else \
            _sample(pools["validation"], args.validation_batch_size, rng)
        vlogs = head.evaluate(*stack(val), batch_size=256, verbose=0, return_dict=True)
        print(f"Step {i}: Validation accuracy = {100 * vlogs['accuracy']:.1f}% (N={len(val)})", flush=True)


def _final_test(head, stack, pools, labels, args, rng):
    """(test entries, their labels, probabilities, accuracy or None), printed as retrain.py does."""
    all_test = [e for p in pools["testing"] for e in p]
    if not all_test:
        print("Final test accuracy = n/a (N=0: no test images; raise --testing_percentage or add images)")
        return [], np.zeros((0,), np.int32), np.zeros((0, len(labels)), np.float32), None
    test = all_test if args.test_batch_size == -1 else _sample(pools["testing"], args.test_batch_size, rng)
    tx, ty = stack(test)
    probs = head.predict(tx, batch_size=256, verbose=0)
    predictions = np.argmax(probs, axis=1)
    accuracy = float(np.mean(predictions == ty))
    print(f"Final test accuracy = {100 * accuracy:.1f}% (N={len(test)})")
    if args.print_misclassified_test_images:
        print("=== MISCLASSIFIED TEST IMAGES ===")
        for e, p in zip(test, predictions):
            if p != e.label_index:
                print("%70s  %s" % (e.path, labels[p]))
    return test, ty, probs, accuracy


def _save(inp, base, head_dense, labels, arch, args):
    """The full classifier (pixels -> base -> a Dense softmax with the trained head's weights),
    saved with its labels file; the labels file is renamed into place only once the model is
    saved, so an error leaves both old files as they were."""
    from .. import layers
    from .._fileio import atomic_write
    from ..models.io import save_model
    from ..models.model import Functional
    final = layers.Dense(len(labels), activation="softmax", name="final_result")
    model = Functional(inp, final(base.output), name=f"retrained_{arch.name}".replace(".", "_"))
    final.set_weights(head_dense.get_weights())
    with atomic_write(args.output_labels, "w") as f:
        f.write("".join(label + "\n" for label in labels))
        save_model(model, args.output_model, include_optimizer=False)
    print(f"Saved the retrained model to {args.output_model} and its labels to {args.output_labels}")
    return model


def retrain(args, warn=None, progress=True):
    """Runs lamina-retrain on parsed `args` (see `parser()`); returns a RetrainResult. Prints the
    log to stdout, warnings to stderr; raises ValueError / OSError on bad input, and then writes
    nothing to --output_model / --output_labels."""
    from .. import utils
    warn = warn or _warn
    _check_args(args)
    arch = parse_architecture(args.architecture)
    weights = weights_argument(args.weights)
    lists = create_image_lists(args.image_dir, args.testing_percentage, args.validation_percentage, warn)
    _check_pools(lists, _pools(lists), args)
    for k, (label, d) in enumerate(zip(lists.labels, lists.dirs)):
        n = {c: len(lists.of(c, k)) for c in CATEGORIES}
        print(f"Class {k} '{label}' (folder {d}): {sum(n.values())} images, {n['training']} training, "
              f"{n['validation']} validation, {n['testing']} testing")
    if args.seed is not None:
        utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    if weights is None:
        print(f"Using RANDOM weights for {arch.name} (--weights {args.weights}): the bottlenecks are not "
              "pretrained features; expect poor accuracy.")
    else:
        print(f"Using {arch.name} ({arch.size}x{arch.size}) with "
              f"{'ImageNet weights' if weights == 'imagenet' else 'weights from ' + weights}")
    inp, base = build_extractor(arch, weights)
    num_features = int(base.output_shape[-1])
    fingerprint = extractor_fingerprint(arch, base)
    cache = BottleneckCache(args.bottleneck_dir, fingerprint, num_features, warn)
    os.makedirs(cache.dir, exist_ok=True)
    cache.describe(arch, args.weights, fingerprint)

    # distorted training images go through the base at every step: only the others are cached
    distort = bool(args.flip_left_right or args.random_crop or args.random_scale or args.random_brightness)
    cached = [e for e in lists.entries if not (distort and e.category == "training")]
    vectors, skipped, computed, reused = compute_bottlenecks(base, cache, cached, (arch.size, arch.size), warn,
                                                             progress)
    print(f"Bottlenecks: {computed} computed, {reused} reused from the cache in {cache.dir}")
    pools = _pools(lists, skipped)
    _check_pools(lists, pools, args)

    def stack(entries):
        return (np.stack([vectors[id(e)] for e in entries]) if entries else np.zeros((0, num_features), np.float32),
                np.asarray([e.label_index for e in entries], np.int32))

    if distort:
        def next_batch():
            return _distorted_batch(base, pools["training"], args.train_batch_size, (arch.size, arch.size), args,
                                    rng, warn)
    else:
        def next_batch():
            return stack(_sample(pools["training"], args.train_batch_size, rng))

    head, head_dense = _make_head(num_features, len(lists.labels), args.learning_rate)
    _train(head, next_batch, stack, pools, args, rng)
    test, ty, probs, accuracy = _final_test(head, stack, pools, lists.labels, args, rng)
    model = _save(inp, base, head_dense, lists.labels, arch, args)
    return RetrainResult(list(lists.labels), model, [e.path for e in test], ty, probs, accuracy, computed, reused,
                         cache.dir, [e.path for e in skipped])


# ---- command line --------------------------------------------------------------------------------

def _warn(msg):
    print(f"{PROG}: warning: {msg}", file=sys.stderr, flush=True)


def parser():
    p = argparse.ArgumentParser(
        prog=PROG, description="Retrain the top layer of a pretrained image model (InceptionV3 or MobileNet) "
                               "on a folder of images, one sub-folder per class (TensorFlow's retrain.py).")
    p.add_argument("--image_dir", required=True, help="folder of labeled images: one sub-folder per class")
    p.add_argument("--architecture", default="inception_v3",
                   help="inception_v3 (299x299) or mobilenet_<version>_<size>, version 1.0, 0.75, 0.50, 0.25 and "
                        "size 224, 192, 160, 128 (default: %(default)s)")
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet', 'none' (random weights), or the path of a Keras-layout .h5 weights file of the "
                        "base model without top (default: %(default)s)")
    p.add_argument("--output_model", default="/tmp/output_model.keras",
                   help="where to save the retrained model, .keras or .h5 (default: %(default)s)")
    p.add_argument("--output_labels", default="/tmp/output_labels.txt",
                   help="where to save the labels, one per line in class order (default: %(default)s)")
    p.add_argument("--bottleneck_dir", default="/tmp/bottleneck",
                   help="folder of cached bottleneck values (default: %(default)s)")
    p.add_argument("--how_many_training_steps", type=int, default=4000, help="default: %(default)s")
    p.add_argument("--learning_rate", type=float, default=0.01, help="default: %(default)s")
    p.add_argument("--testing_percentage", type=int, default=10, help="default: %(default)s")
    p.add_argument("--validation_percentage", type=int, default=10, help="default: %(default)s")
    p.add_argument("--eval_step_interval", type=int, default=10, help="default: %(default)s")
    p.add_argument("--train_batch_size", type=int, default=100, help="default: %(default)s")
    p.add_argument("--test_batch_size", type=int, default=-1,
                   help="test images evaluated at the end, -1 for all (default: %(default)s)")
    p.add_argument("--validation_batch_size", type=int, default=100,
                   help="validation images per evaluation, -1 for all (default: %(default)s)")
    p.add_argument("--print_misclassified_test_images", action="store_true",
                   help="list the test images that were misclassified")
    p.add_argument("--flip_left_right", action="store_true", help="randomly mirror half the training images")
    p.add_argument("--random_crop", type=int, default=0,
                   help="margin in percent around the training crop box (default: %(default)s)")
    p.add_argument("--random_scale", type=int, default=0,
                   help="percent by which to randomly scale up training images (default: %(default)s)")
    p.add_argument("--random_brightness", type=int, default=0,
                   help="percent by which to randomly multiply training pixel values (default: %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="random seed, for a reproducible run")
    return p


def main(argv=None):
    """The lamina-retrain command. Returns the exit status: 0, 1 (I/O error) or 2 (bad input)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        retrain(args)
    except (ValueError, ImportError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the output model and labels were not written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
