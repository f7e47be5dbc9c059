"""__init__.py: what `import lamina` makes available (each check in a fresh interpreter, so that
modules other tests imported do not hide a missing import), and that importing stays cheap."""
import json
import os
import subprocess
import sys

import pytest


def _fresh(code):
    """Runs `code` after `import lamina` in a new interpreter (same sys.path) and returns what it
    printed as JSON."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", "import json, sys\nimport lamina\n" + code], capture_output=True,
                         text=True, env=env, cwd=os.path.dirname(os.path.abspath(__file__)), timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_preprocessing_is_an_attribute_after_import_lamina():
    got = _fresh("print(json.dumps([lamina.preprocessing.image.load_img.__module__, "
                 "lamina.preprocessing.sequence.pad_sequences.__name__, "
                 "lamina.preprocessing.image_dataset_from_directory is lamina.utils.image_dataset_from_directory]))")
    assert got[1] == "pad_sequences" and got[2] is True


@pytest.mark.parametrize("name", ["layers", "models", "optimizers", "losses", "metrics", "callbacks", "utils",
                                  "datasets", "applications", "saving", "preprocessing", "ops", "backend",
                                  "activations", "initializers", "regularizers", "constraints", "config",
                                  "debugging", "distribute"])
def test_public_submodules(name):
    import lamina
    assert getattr(lamina, name).__name__ == f"lamina.{name}"


def test_import_stays_cheap():
    """`import lamina` loads none of the optional heavy dependencies (Pillow, h5py, tqdm, scipy,
    Keras): they are imported on first use."""
    loaded = _fresh("print(json.dumps(sorted(m for m in ('PIL', 'h5py', 'tqdm', 'scipy', 'keras', 'jax', 'torch', "
                    "'tensorflow') if m in sys.modules)))")
    assert loaded == []
