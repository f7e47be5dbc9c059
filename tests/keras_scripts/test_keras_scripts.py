"""The guide-style Keras scripts of this folder run on lamina with only their keras imports
swapped (`import lamina as keras`), each in its own process, and meet their own thresholds
(the `checks` of their RESULT line). Keras itself is not needed; `run_scripts.py` compares with it."""
import os
import sys

import pytest

import lamina

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_scripts  # noqa: E402

TIMEOUT = 120  # seconds per script; each takes about 1 s on two cores

# Every script but one. Left out, and why:
#   s06_custom_train_step.py: a custom train_step(state, data) / test_step(state, data) in Keras 3's
#     JAX form (Model.stateless_call, stateless_compute_loss, Optimizer.stateless_apply,
#     Metric.stateless_update_state, with jax.value_and_grad taking the gradients). lamina has the
#     TensorFlow-style train_step(self, data) with lamina.GradientTape instead (tested in
#     tests/models/test_training.py); Keras 3 has no backend-neutral way to write one. On lamina the
#     script stops at fit with an error that says so and what to write instead (tested below).
#   s45_quantization_guide.py: the quantization guides, whose int8 and int4 parts run on lamina;
#     their last part, Dense.quantize("float8") (Keras's float8 training with delayed scaling), is
#     not in lamina: the script stops there with an error that says so (tested below).
SKIPPED = {"s06_custom_train_step.py", "s45_quantization_guide.py"}
SCRIPTS = [p for p in run_scripts.scripts() if os.path.basename(p) not in SKIPPED]


def _env():
    env = dict(os.environ)
    # the child imports the lamina this process imported, wherever pytest found it
    root = os.path.dirname(os.path.dirname(os.path.abspath(lamina.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    # The scripts are tiny: one thread is enough, and it keeps a busy machine (another build, another
    # test run) from slowing every kernel call down to a scheduler time slice.
    env.setdefault("LAMINA_NUM_THREADS", "1")
    env.pop("KERAS_BACKEND", None)
    return env


def test_every_script_is_listed():
    names = {os.path.basename(p) for p in run_scripts.scripts()}
    assert len(names) == 46
    assert SKIPPED <= names


def test_swap_changes_only_the_keras_imports():
    src = "import keras\nfrom keras import layers, ops\nfrom keras.layers import Dense\nx = keras.Input\n"
    out = run_scripts.to_lamina(src)
    assert out == ("import lamina as keras\nfrom lamina import layers, ops\nfrom lamina.layers import Dense\n"
                   "x = keras.Input\n")
    with pytest.raises(ValueError, match="first line must be exactly 'import keras'"):
        run_scripts.to_lamina("import numpy\nimport keras\n")
    with pytest.raises(ValueError, match="keras import left"):
        run_scripts.to_lamina("import keras\nimport keras.ops as kops\n")


def test_figures_agree_tolerances():
    keras = {"figures": {"test_loss": 0.1, "val_accuracy": 0.95, "shape": [2, 3], "lr": 0.003000000026}}
    assert run_scripts.figures_agree(keras, {"figures": {"test_loss": 0.25, "val_accuracy": 0.9, "shape": [2, 3],
                                                         "lr": 0.003}}) == []
    assert run_scripts.figures_agree(keras, {"figures": {"test_loss": 0.5, "val_accuracy": 0.8, "shape": [3, 2],
                                                         "lr": 0.002}}) == ["lr", "shape", "test_loss",
                                                                            "val_accuracy"]


@pytest.mark.parametrize("path", SCRIPTS, ids=[os.path.basename(p)[:3] for p in SCRIPTS])
def test_script_runs_on_lamina(path):
    r = run_scripts.run(path, "lamina", TIMEOUT, env=_env())
    assert r["status"] == "ran", f"{os.path.basename(path)} {r['status']}: {r['error']}\n{r['stderr'][-4000:]}"
    checks = r["result"].get("checks", {})
    assert checks, "the RESULT line states no checks"
    failed = run_scripts.failed_checks(r["result"])
    assert not failed, f"checks failed: {failed}; RESULT: {r['result']}"


def test_the_jax_train_step_script_stops_with_a_clear_error():
    pytest.importorskip("jax")
    path = next(p for p in run_scripts.scripts() if os.path.basename(p) == "s06_custom_train_step.py")
    r = run_scripts.run(path, "lamina", TIMEOUT, env=_env())
    assert r["status"] == "failed", r
    assert "TypeError: fit: CustomModel.train_step(state, data) is Keras 3's stateless JAX form" in r["stderr"]
    assert "Write `def train_step(self, data):`" in r["stderr"]


def test_the_quantization_guide_runs_to_float8_and_stops_with_a_clear_error():
    path = next(p for p in run_scripts.scripts() if os.path.basename(p) == "s45_quantization_guide.py")
    r = run_scripts.run(path, "lamina", TIMEOUT, env=_env())
    assert r["status"] == "failed", r
    assert "float8" in r["stderr"] and "ValueError" in r["stderr"], r["stderr"][-2000:]
    # everything before it ran: the int8 and int4 guides' figures were printed
    assert "Full-Precision vs INT4 MSE:" in r["stdout"], r["stdout"][-2000:]
