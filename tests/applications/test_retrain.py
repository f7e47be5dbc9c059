"""lamina-retrain (applications/retrain.py): the split rule, labels, the image loader, the
bottleneck cache, bad inputs, and the whole tool on tiny generated folders (with a stand-in base,
and the real MobileNet 0.25 at 128x128 with random weights)."""
import glob
import os
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from retrain_helpers import (COLOURS, make_folder, make_image,  # noqa: E402,F401
                             retrain_args, run_retrain, standin, standin_weights)

import lamina  # noqa: E402
from lamina.applications import retrain  # noqa: E402
from PIL import ImageFile  # noqa: E402


@pytest.fixture
def images(tmp_path, monkeypatch):
    """A relative --image_dir "images" (the split hashes the path as given: relative keeps it
    the same from run to run) with 3 classes of 10 images."""
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "images")
    return "images"


def _outputs(tmp):
    return os.path.join(tmp, "out", "model.keras"), os.path.join(tmp, "out", "labels.txt")


def _cache_files(tmp):
    return sorted(glob.glob(os.path.join(tmp, "bottlenecks", "*", "*", "*.npy")))


# ---- the split rule and labels -------------------------------------------------------------------

def test_percentage_hash_matches_retrain_py():
    # values of retrain.py's formula: sha1 of the path, mod 2**27, scaled to [0, 100]
    assert retrain.percentage_hash("images/daisy/photo1.jpg") == pytest.approx(92.40496450964335, abs=1e-12)
    assert retrain.percentage_hash("images/daisy/photo22.jpg") == pytest.approx(15.914563208181882, abs=1e-12)
    assert retrain.percentage_hash("images/daisy/photo24.jpg") == pytest.approx(4.456218365253645, abs=1e-12)
    assert retrain.percentage_hash("flower_photos/daisy/100080576_f52e8ee070_n.jpg") == \
        pytest.approx(64.65381655584139, abs=1e-12)
    # the path as given is hashed: another spelling of the folder is another position
    assert retrain.percentage_hash("/tmp/flower_photos/daisy/100080576_f52e8ee070_n.jpg") == \
        pytest.approx(35.58859032085977, abs=1e-12)
    assert retrain.which_set("images/daisy/photo1.jpg", 10, 10) == "training"
    assert retrain.which_set("images/daisy/photo22.jpg", 10, 10) == "testing"
    assert retrain.which_set("images/daisy/photo24.jpg", 10, 10) == "validation"
    assert retrain.which_set("images/daisy/photo22.jpg", 20, 10) == "validation"
    assert retrain.which_set("images/daisy/photo22.jpg", 0, 0) == "training"


def test_nohash_suffix_groups_variants():
    p = retrain.percentage_hash("images/roses/leaf")
    assert p == pytest.approx(7.389659489614214, abs=1e-12)
    for name in ("leaf_nohash_0.jpg", "leaf_nohash_1.jpg", "leaf_nohash_whatever.png"):
        assert retrain.percentage_hash(f"images/roses/{name}") == p
        assert retrain.which_set(f"images/roses/{name}", 10, 10) == "validation"


def test_label_names_as_retrain_py():
    assert retrain.label_of("daisy") == "daisy"
    assert retrain.label_of("Sun-Flowers") == "sun flowers"
    assert retrain.label_of("red__ROSES..2") == "red roses 2"
    assert retrain.label_of("Échinacée") == " chinac e"


def test_image_lists_split_labels_and_ignored_files(images):
    root = images
    open(os.path.join(root, "notes.txt"), "w").close()                       # top-level files: ignored
    make_image(os.path.join(root, "loose.jpg"), (0, 0, 0), np.random.default_rng(0))
    open(os.path.join(root, "Daisy", "README.md"), "w").close()              # non-image files: ignored
    open(os.path.join(root, "Daisy", ".DS_Store"), "w").close()
    make_image(os.path.join(root, "Daisy", "nested", "deep.jpg"), (0, 0, 0), np.random.default_rng(0))
    make_image(os.path.join(root, "Daisy", "UPPER.JPG"), (0, 0, 0), np.random.default_rng(0))
    make_image(os.path.join(root, "Daisy", "other.jpeg"), (0, 0, 0), np.random.default_rng(0))
    os.makedirs(os.path.join(root, ".hidden"))
    lists = retrain.create_image_lists(root, 10, 10, warn=lambda m: None)
    assert lists.labels == ["daisy", "red roses", "tulips"]
    assert lists.dirs == ["Daisy", "red_Roses", "tulips"]
    daisy = sorted(e.file_name for e in lists.entries if e.label_index == 0)
    assert daisy == sorted([f"img{i:02d}.{'png' if i % 5 == 4 else 'jpg'}" for i in range(10)] +
                           ["UPPER.JPG", "other.jpeg"])
    for e in lists.entries:
        assert e.path == os.path.join(root, e.dir_name, e.file_name)
        assert e.category == retrain.which_set(os.path.join(e.dir_name, e.file_name), 10, 10)


def test_split_is_stable_when_files_are_added(images):
    before = {e.path: e.category for e in retrain.create_image_lists(images, 10, 10, warn=lambda m: None).entries}
    rng = np.random.default_rng(5)
    for i in range(15):
        make_image(os.path.join(images, "tulips", f"new{i}.jpg"), COLOURS["tulips"], rng)
    after = {e.path: e.category for e in retrain.create_image_lists(images, 10, 10, warn=lambda m: None).entries}
    assert len(after) == len(before) + 15
    assert all(after[p] == c for p, c in before.items())


def test_architectures():
    a = retrain.parse_architecture("inception_v3")
    assert (a.application, a.size) == ("InceptionV3", 299)
    m = retrain.parse_architecture("mobilenet_0.50_224")
    assert (m.application, m.size, m.alpha) == ("MobileNet", 224, 0.5)
    assert retrain.parse_architecture("mobilenet_0.5_224").key == m.key
    for alpha, v in (("1.0", 1.0), ("0.75", 0.75), ("0.25", 0.25)):
        for size in (224, 192, 160, 128):
            s = retrain.parse_architecture(f"mobilenet_{alpha}_{size}")
            assert (s.alpha, s.size) == (v, size)
    for bad, words in (("resnet50", "Could not understand"), ("mobilenet_0.3_224", "version"),
                       ("mobilenet_1.0_300", "size"), ("mobilenet_1.0_224_quantized", "quantized")):
        with pytest.raises(ValueError, match=words):
            retrain.parse_architecture(bad)


def test_real_architecture_table():
    from lamina.applications import InceptionV3, MobileNet
    assert retrain._application(retrain.parse_architecture("inception_v3")) is InceptionV3
    assert retrain._application(retrain.parse_architecture("mobilenet_0.25_128")) is MobileNet


def test_inception_v3_extractor():
    arch = retrain.parse_architecture("inception_v3")
    inp, base = retrain.build_extractor(arch, None)
    assert base.input_shape == (None, 299, 299, 3) and base.output_shape == (None, 2048)
    pre = base.get_layer("preprocess")
    assert type(pre).__name__ == "Rescaling" and base.layers[1] is pre
    fp = retrain.extractor_fingerprint(arch, base)
    base.weights[-1].assign(base.weights[-1].numpy() + 1)
    assert retrain.extractor_fingerprint(arch, base) != fp


# ---- the image loader ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode, ext", [("L", "jpg"), ("CMYK", "jpg"), ("RGBA", "png"), ("P", "png"),
                                       ("RGB", "bmp"), ("P", "gif"), ("LA", "png")])
def test_loader_converts_to_rgb(tmp_path, mode, ext):
    path = make_image(str(tmp_path / f"x.{ext}"), (200, 100, 50), np.random.default_rng(0), size=(9, 13), mode=mode)
    x = retrain.load_image(path, (16, 12))
    assert x.shape == (16, 12, 3) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 255
    if mode in ("L", "LA"):
        np.testing.assert_array_equal(x[..., 0], x[..., 1])
    raw = retrain.decode_image(path)
    assert raw.shape == (9, 13, 3)
    from lamina.datasets._image import resize
    np.testing.assert_array_equal(x, resize(raw, (16, 12), "bilinear"))


def test_loader_rejects_truncated_and_corrupt_files(tmp_path):
    path = make_image(str(tmp_path / "good.jpg"), (10, 200, 10), np.random.default_rng(0), size=(40, 40))
    data = pathlib.Path(path).read_bytes()
    for cut in (2, 50, len(data) // 2):
        bad = tmp_path / f"cut{cut}.jpg"
        bad.write_bytes(data[:-cut])
        with pytest.raises(ValueError, match=f"cut{cut}.jpg"):
            retrain.load_image(str(bad), (8, 8))
    (tmp_path / "text.jpg").write_text("not a jpeg")
    with pytest.raises(ValueError, match="text.jpg"):
        retrain.load_image(str(tmp_path / "text.jpg"), (8, 8))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png"):
        retrain.load_image(str(tmp_path / "empty.png"), (8, 8))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_distort_image():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (30, 40, 3)).astype(np.float32)
    from lamina.datasets._image import resize
    np.testing.assert_array_equal(retrain.distort_image(x, (16, 16), rng), resize(x, (16, 16)))
    flips = [retrain.distort_image(x, (16, 16), np.random.default_rng(s), flip_left_right=True) for s in range(20)]
    plain = resize(x, (16, 16))
    n_flipped = sum(np.array_equal(f, plain[:, ::-1]) for f in flips)
    assert 3 <= n_flipped <= 17 and n_flipped + sum(np.array_equal(f, plain) for f in flips) == 20
    for s in range(10):
        y = retrain.distort_image(x, (16, 16), np.random.default_rng(s), random_crop=50, random_scale=20)
        assert y.shape == (16, 16, 3) and y.dtype == np.float32
        ratio = retrain.distort_image(x, (16, 16), np.random.default_rng(s), random_brightness=30) / plain
        assert 0.7 <= ratio.min() and ratio.max() <= 1.3 and np.ptp(ratio[plain > 1]) < 1e-4


# ---- bad input -----------------------------------------------------------------------------------

def _fails(capsys, argv, *words, code=2):
    assert retrain.main(argv) == code
    err = capsys.readouterr().err
    assert "lamina-retrain: error:" in err and "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


def test_bad_folders(tmp_path, monkeypatch, capsys, standin):
    monkeypatch.chdir(tmp_path)
    tmp = str(tmp_path)
    _fails(capsys, retrain_args("missing", tmp), "'missing'", "does not exist", code=1)
    os.makedirs("empty")
    _fails(capsys, retrain_args("empty", tmp), "No class sub-folders", "'empty'")
    make_image("loose/a.jpg", (1, 2, 3), np.random.default_rng(0))
    _fails(capsys, retrain_args("loose", tmp), "No class sub-folders", "1 image file(s) directly")
    make_folder(tmp_path / "one", {"daisy": 3})
    _fails(capsys, retrain_args("one", tmp), "Only one class folder", "'daisy'", "at least two")
    make_folder(tmp_path / "hole", {"daisy": 3, "tulips": 3})
    os.makedirs("hole/empty_class")
    open("hole/empty_class/notes.txt", "w").close()
    _fails(capsys, retrain_args("hole", tmp), os.path.join("hole", "empty_class"), "no images")
    make_folder(tmp_path / "twins", {"Sun-Flowers": 3, "sun flowers": 3})
    _fails(capsys, retrain_args("twins", tmp), "'sun flowers'", "rename")
    assert not os.path.exists(os.path.join(tmp, "out")) and not os.path.exists(os.path.join(tmp, "bottlenecks"))
    assert standin.builds == 0


def test_class_without_training_images(tmp_path, monkeypatch, capsys, standin):
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "images", {"daisy": 4, "tulips": 4})
    name = next(f"x{i}.jpg" for i in range(1000)
                if retrain.which_set(os.path.join("solo", f"x{i}.jpg"), 20, 30) != "training")
    make_image(os.path.join("images", "solo", name), (0, 0, 0), np.random.default_rng(0))
    _fails(capsys, retrain_args("images", str(tmp_path)), os.path.join("images", "solo"), "no training images",
           "--validation_percentage")
    assert standin.builds == 0 and not os.path.exists(tmp_path / "out")


def test_bad_flags(images, tmp_path, capsys, standin):
    tmp = str(tmp_path)
    _fails(capsys, retrain_args(images, tmp, "--architecture", "vgg16"), "Could not understand --architecture")
    _fails(capsys, retrain_args(images, tmp, "--output_model", "model.pb"), "'.keras' or '.h5'")
    _fails(capsys, retrain_args(images, tmp, "--validation_percentage", "60", "--testing_percentage", "40"),
           "sum < 100")
    _fails(capsys, retrain_args(images, tmp, "--weights", "nowhere.h5"), "'nowhere.h5'", "no such file", code=1)
    assert retrain.main(["--architecture", "inception_v3"]) == 2  # argparse: --image_dir is required
    assert "--image_dir" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(tmp, "out"))


def test_weights_of_another_architecture(images, tmp_path, capsys, standin):
    w = standin_weights(tmp_path / "alpha050.h5", alpha=0.5)
    err = _fails(capsys, retrain_args(images, str(tmp_path), "--weights", w), "do not fit", "mobilenet_0.25_128",
                 "alpha050.h5")
    assert "(3, 3, 3, 2)" in err and "(3, 3, 3, 4)" in err  # the first mismatching layer's shapes
    assert "conv2d" in err
    assert not os.path.exists(os.path.join(str(tmp_path), "out"))


def test_few_images_warning_corrupt_skipped_non_images_ignored(images, tmp_path, capsys, standin):
    daisy = os.path.join(images, "Daisy")
    good = pathlib.Path(os.path.join(daisy, "img00.jpg")).read_bytes()
    with open(os.path.join(daisy, "truncated.jpg"), "wb") as f:
        f.write(good[:len(good) // 2])
    with open(os.path.join(daisy, "garbage.jpg"), "w") as f:
        f.write("this is not an image")
    with open(os.path.join(daisy, "notes.txt"), "w") as f:
        f.write("ignored")
    make_image(os.path.join(images, "tulips", "gray.jpg"), (90, 90, 90), np.random.default_rng(0), mode="L")
    make_image(os.path.join(images, "tulips", "cmyk.jpg"), COLOURS["tulips"], np.random.default_rng(0), mode="CMYK")
    make_image(os.path.join(images, "tulips", "alpha.png"), COLOURS["tulips"], np.random.default_rng(0), mode="RGBA")
    assert retrain.main(retrain_args(images, str(tmp_path), steps=3)) == 0
    out, err = capsys.readouterr()
    assert "fewer than 20" in err and os.path.join(images, "Daisy") in err
    assert "truncated.jpg" in err and "garbage.jpg" in err and "skipping a corrupt image" in err
    assert "notes.txt" not in out + err
    assert "Traceback" not in err
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    names = {os.path.basename(p).split(".")[0] for p in _cache_files(str(tmp_path))}
    assert {"gray", "cmyk", "alpha"} <= names and not {"truncated", "garbage"} & names


# ---- end to end ----------------------------------------------------------------------------------

def test_end_to_end(images, tmp_path, capsys, standin):
    tmp = str(tmp_path)
    assert retrain.main(retrain_args(images, tmp, "--print_misclassified_test_images")) == 0
    out = capsys.readouterr().out
    assert "RANDOM weights" in out
    for step in (0, 10, 20, 29):
        assert f"Step {step}: Train accuracy = " in out
        assert f"Step {step}: Cross entropy = " in out
        assert f"Step {step}: Validation accuracy = " in out
    assert "Step 5:" not in out
    assert "Final test accuracy = " in out and "=== MISCLASSIFIED TEST IMAGES ===" in out
    model_path, labels_path = _outputs(tmp)
    assert pathlib.Path(labels_path).read_text() == "daisy\nred roses\ntulips\n"
    model = lamina.models.load_model(model_path)
    assert model.input_shape == (None, 128, 128, 3) and model.output_shape == (None, 3)
    x = np.stack([retrain.load_image(os.path.join(images, "tulips", "img00.jpg"), (128, 128))])
    p = model.predict(x, verbose=0)
    assert p.shape == (1, 3) and abs(p.sum() - 1) < 1e-5
    assert not glob.glob(os.path.join(tmp, "out", "*.tmp"))


def test_learns_and_matches_full_model(images, tmp_path, standin):
    res = run_retrain(retrain_args(images, str(tmp_path), "--learning_rate", "5", steps=100))
    assert res.labels == ["daisy", "red roses", "tulips"]
    assert len(res.test_files) >= 3 and res.test_accuracy == 1.0  # colours are easy
    # the head's probabilities on cached bottlenecks = the full model's on the images
    x = np.stack([retrain.load_image(f, (128, 128)) for f in res.test_files])
    np.testing.assert_allclose(res.model.predict(x, verbose=0), res.test_probabilities, atol=1e-5)
    assert list(res.test_ground_truth) == [["Daisy", "red_Roses", "tulips"].index(f.split(os.sep)[1])
                                           for f in res.test_files]


def test_h5_output_and_seed_reproducible(images, tmp_path, standin):
    a = run_retrain(retrain_args(images, str(tmp_path / "a"), "--output_model", str(tmp_path / "m.h5")))
    b = run_retrain(retrain_args(images, str(tmp_path / "b")))
    np.testing.assert_array_equal(a.test_probabilities, b.test_probabilities)
    m = lamina.models.load_model(str(tmp_path / "m.h5"))
    assert m.output_shape == (None, 3)


def test_nothing_written_when_saving_fails(images, tmp_path, monkeypatch, capsys, standin):
    model_path, labels_path = _outputs(str(tmp_path))
    os.makedirs(os.path.dirname(model_path))
    for p in (model_path, labels_path):
        with open(p, "w") as f:
            f.write("old")

    def broken(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(lamina.models.io, "save_model", broken)
    _fails(capsys, retrain_args(images, str(tmp_path), steps=2), "disk full", code=1)
    assert pathlib.Path(model_path).read_text() == "old" and pathlib.Path(labels_path).read_text() == "old"
    assert sorted(os.listdir(os.path.dirname(model_path))) == ["labels.txt", "model.keras"]


# ---- the bottleneck cache ------------------------------------------------------------------------

def test_cache_is_reused(images, tmp_path, standin):
    argv = retrain_args(images, str(tmp_path), steps=2)
    first = run_retrain(argv)
    files = _cache_files(str(tmp_path))
    assert first.bottlenecks_computed == len(files) == 30 and first.bottlenecks_reused == 0
    mtimes = {f: os.stat(f).st_mtime_ns for f in files}
    seen = standin.images_seen
    second = run_retrain(argv)
    assert (second.bottlenecks_computed, second.bottlenecks_reused) == (0, 30)
    assert standin.images_seen == seen  # the base model saw no image
    assert {f: os.stat(f).st_mtime_ns for f in _cache_files(str(tmp_path))} == mtimes
    np.testing.assert_array_equal(first.test_probabilities, second.test_probabilities)


def test_cache_misses_a_changed_image(images, tmp_path, standin):
    argv = retrain_args(images, str(tmp_path), steps=2)
    run_retrain(argv)
    make_image(os.path.join(images, "tulips", "img03.jpg"), (0, 255, 0), np.random.default_rng(9))
    res = run_retrain(argv)
    assert (res.bottlenecks_computed, res.bottlenecks_reused) == (1, 29)
    assert len([f for f in _cache_files(str(tmp_path)) if f"{os.sep}tulips{os.sep}img03.jpg." in f]) == 2


def test_cache_misses_other_weights(images, tmp_path, standin):
    w1 = standin_weights(tmp_path / "w1.h5", seed=1)
    w2 = standin_weights(tmp_path / "w2.h5", seed=2)
    a = run_retrain(retrain_args(images, str(tmp_path), steps=2, weights=w1))
    b = run_retrain(retrain_args(images, str(tmp_path), steps=2, weights=w2))
    c = run_retrain(retrain_args(images, str(tmp_path), steps=2, weights=w1))
    assert (a.bottlenecks_computed, b.bottlenecks_computed, c.bottlenecks_computed) == (30, 30, 0)
    assert a.cache_dir != b.cache_dir and a.cache_dir == c.cache_dir
    # random weights: other seeds are other weights; the same seed is the same extractor
    d = run_retrain(retrain_args(images, str(tmp_path), "--seed", "7", steps=2))
    e = run_retrain(retrain_args(images, str(tmp_path), "--seed", "8", steps=2))
    f = run_retrain(retrain_args(images, str(tmp_path), "--seed", "7", steps=2))
    assert (d.bottlenecks_computed, e.bottlenecks_computed, f.bottlenecks_computed) == (30, 30, 0)
    # another architecture (input size) is another extractor
    g = run_retrain(retrain_args(images, str(tmp_path), "--seed", "7", steps=2, arch="mobilenet_0.25_160"))
    assert g.bottlenecks_computed == 30 and g.cache_dir != f.cache_dir


def test_corrupt_cache_entries_are_recomputed(images, tmp_path, capsys, standin):
    argv = retrain_args(images, str(tmp_path), steps=2)
    first = run_retrain(argv)
    files = _cache_files(str(tmp_path))
    good = np.load(files[0])
    with open(files[0], "wb") as f:
        f.write(b"garbage")
    np.save(files[1], np.full_like(good, np.nan))
    np.save(files[2], good[:-1])
    np.save(files[3], good.astype(np.float64))
    with open(files[4], "r+b") as f:
        f.truncate(40)
    capsys.readouterr()
    second = run_retrain(argv)
    err = capsys.readouterr().err
    assert (second.bottlenecks_computed, second.bottlenecks_reused) == (5, 25)
    for p in files[:5]:
        assert p in err
    assert "NaN" in err and "recomputing" in err
    np.testing.assert_array_equal(np.load(files[0]), good)
    np.testing.assert_array_equal(first.test_probabilities, second.test_probabilities)


def test_distortions_bypass_the_cache(images, tmp_path, standin):
    argv = retrain_args(images, str(tmp_path), "--flip_left_right", "--random_crop", "10", "--random_scale", "10",
                        "--random_brightness", "10", steps=3)
    res = run_retrain(argv)
    lists = retrain.create_image_lists(images, 30, 20, warn=lambda m: None)
    cached = [e for e in lists.entries if e.category != "training"]
    assert res.bottlenecks_computed == len(cached) == len(_cache_files(str(tmp_path)))
    # every step pushes train_batch_size distorted images through the base
    assert standin.images_seen == len(cached) + 3 * 16


# ---- the real MobileNet --------------------------------------------------------------------------

def test_real_mobilenet(images, tmp_path, capsys):
    from lamina.applications import MobileNet
    tmp = str(tmp_path)
    assert retrain.main(retrain_args(images, tmp, steps=3)) == 0
    model = lamina.models.load_model(_outputs(tmp)[0])
    assert model.output_shape == (None, 3)
    # weights of MobileNet alpha=0.5 do not fit alpha=0.25: the message names a layer and shapes
    inp = lamina.Input((128, 128, 3))
    MobileNet(input_tensor=inp, include_top=False, weights=None, pooling="avg", alpha=0.5).save_weights(
        str(tmp_path / "mobilenet_050.h5"))
    capsys.readouterr()
    err = _fails(capsys, retrain_args(images, tmp, "--weights", str(tmp_path / "mobilenet_050.h5")),
                 "do not fit", "conv1")
    assert "(3, 3, 3, 8)" in err and "(3, 3, 3, 16)" in err
