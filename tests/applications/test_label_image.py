"""lamina-label-image (applications/label_image.py): output format, bad inputs, and the same
probabilities as lamina-retrain computed for its test images."""
import os
import pathlib
import shutil
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from retrain_helpers import (COLOURS, StandIn, make_folder, make_image,  # noqa: E402,F401
                             retrain_args, run_retrain)

from lamina.applications import label_image, retrain  # noqa: E402


def _parse(out):
    """{image: [(label, score), ...]} from lamina-label-image's output."""
    result, current = {}, None
    for line in out.splitlines():
        if not line.strip():
            current = None
        elif current is None:
            current = line
            result[current] = []
        else:
            label, score = line.rsplit(" ", 1)
            result[current].append((label, float(score)))
    return result


@pytest.fixture(params=["standin", "mobilenet"])
def trained(request, tmp_path, monkeypatch):
    """(RetrainResult, model path, labels path) of a retrained tiny model: the stand-in base, and
    the real MobileNet 0.25 at 128x128 with random weights."""
    if request.param == "standin":
        monkeypatch.setattr(retrain, "_application", lambda arch: StandIn())
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "images")
    res = run_retrain(retrain_args("images", str(tmp_path), "--learning_rate", "2", steps=20))
    return res, str(tmp_path / "out" / "model.keras"), str(tmp_path / "out" / "labels.txt")


def test_same_probabilities_as_retrain(trained, capsys):
    res, model, labels = trained
    assert len(res.test_files) >= 3
    capsys.readouterr()
    assert label_image.main(["--model", model, "--labels", labels, "--top_k", "3", *res.test_files]) == 0
    printed = _parse(capsys.readouterr().out)
    assert list(printed) == res.test_files
    for f, probs in zip(res.test_files, res.test_probabilities):
        ranked = printed[f]
        assert [lab for lab, _ in ranked] == [res.labels[i] for i in np.argsort(-probs, kind="stable")]
        for lab, score in ranked:
            assert abs(score - probs[res.labels.index(lab)]) <= 1e-5 + 5e-6  # printed with 5 decimals
    m, labs, size = label_image.load_classifier(model, labels)
    assert labs == res.labels and size == (128, 128)
    np.testing.assert_allclose(label_image.classify(m, res.test_files, size), res.test_probabilities, atol=1e-5)


def test_top_k_and_format(trained, capsys):
    res, model, labels = trained
    img = os.path.join("images", "tulips", "img01.jpg")
    capsys.readouterr()
    assert label_image.main(["--model", model, "--labels", labels, img]) == 0  # top_k 5 > 3 classes
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == img and len(lines) == 4
    scores = [float(line.rsplit(" ", 1)[1]) for line in lines[1:]]
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-4
    assert all(len(line.rsplit(" ", 1)[1].split(".")[1]) == 5 for line in lines[1:])
    assert label_image.main(["--model", model, "--labels", labels, "--top_k", "1", img, img]) == 0
    printed = capsys.readouterr().out
    assert _parse(printed) == {img: _parse(printed)[img]} and len(_parse(printed)[img]) == 1
    assert printed.count(img) == 2


def _fails(capsys, argv, *words, code=2):
    assert label_image.main(argv) == code
    captured = capsys.readouterr()
    assert "lamina-label-image: error:" in captured.err and "Traceback" not in captured.err
    for w in words:
        assert w in captured.err, captured.err
    return captured


def test_bad_inputs(trained, tmp_path, capsys):
    res, model, labels = trained
    img = os.path.join("images", "Daisy", "img00.jpg")
    _fails(capsys, ["--model", "nope.keras", "--labels", labels, img], "--model 'nope.keras'", "no such file", code=1)
    _fails(capsys, ["--model", model, "--labels", "nope.txt", img], "--labels 'nope.txt'", "no such file", code=1)
    _fails(capsys, ["--model", model, "--labels", labels, "nope.jpg"], "'nope.jpg'", code=1)
    _fails(capsys, ["--model", model, "--labels", labels, "--top_k", "0", img], "--top_k")
    with open("four.txt", "w") as f:
        f.write("a\nb\nc\nd\n")
    _fails(capsys, ["--model", model, "--labels", "four.txt", img], "4 labels", "3 classes")
    with open("empty.txt", "w") as f:
        f.write("\n\n")
    _fails(capsys, ["--model", model, "--labels", "empty.txt", img], "no labels")
    with open("fake.keras", "w") as f:
        f.write("not a model")
    _fails(capsys, ["--model", "fake.keras", "--labels", labels, img], "'fake.keras'")
    # a corrupt image: an error for it, the others still labelled, exit status 1
    with open("broken.jpg", "wb") as f:
        f.write(pathlib.Path(img).read_bytes()[:200])
    captured = _fails(capsys, ["--model", model, "--labels", labels, img, "broken.jpg"], "broken.jpg", code=1)
    assert list(_parse(captured.out)) == [img]
    assert label_image.main(["--model", model]) == 2  # argparse: no images, no labels
    assert "required" in capsys.readouterr().err


def test_h5_model_and_odd_images(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(retrain, "_application", lambda arch: StandIn())
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "images", {"Daisy": 6, "tulips": 6})
    res = run_retrain(retrain_args("images", str(tmp_path), "--output_model", "m.h5", steps=3))
    rng = np.random.default_rng(0)
    odd = [make_image("gray.jpg", (90, 90, 90), rng, mode="L"), make_image("cmyk.jpg", COLOURS["tulips"], rng,
                                                                          mode="CMYK"),
           make_image("alpha.png", COLOURS["Daisy"], rng, mode="RGBA"), make_image("big.bmp", (1, 2, 3), rng,
                                                                                 size=(300, 200))]
    capsys.readouterr()
    assert label_image.main(["--model", "m.h5", "--labels", os.path.join("out", "labels.txt"), *odd]) == 0
    printed = _parse(capsys.readouterr().out)
    assert list(printed) == odd and all(len(v) == 2 for v in printed.values())
    assert res.labels == ["daisy", "tulips"]


@pytest.mark.skipif(not (shutil.which("lamina-retrain") or os.environ.get("CI")),
                    reason="the console scripts are not installed here (`pip install .` installs them; CI checks them)")
def test_console_scripts(tmp_path):
    import subprocess
    for cmd in ("lamina-retrain", "lamina-label-image"):
        exe = shutil.which(cmd)
        assert exe, f"{cmd} is not on PATH"
        r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "usage:" in r.stdout
    r = subprocess.run([shutil.which("lamina-retrain"), "--image_dir", str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "lamina-retrain: error:" in r.stderr and "Traceback" not in r.stderr
