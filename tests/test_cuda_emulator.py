"""The CUDA kernels, run by the CUDA emulator (csrc/cuda/emu): tests/gpu's GPU parametrization in a
process where LAMINA_CUDA_EMULATOR=1 makes gpu:0 and gpu:1 the emulator's (the CUDA sources
compiled for the CPU). So every machine -- CI has no GPU -- checks the CUDA kernels' logic against
the CPU's results; a real GPU run (benchmarks/gpu_check.sh) checks the rest."""
import importlib
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

import lamina

ROOT = pathlib.Path(__file__).resolve().parent


def _emulator_or_skip():
    # found, not imported: its types would clash with the CUDA module's in this process
    if importlib.util.find_spec("lamina.backend._cuda_emu") is None:
        pytest.skip("the CUDA emulator is not built (-DLAMINA_CUDA_EMULATOR=OFF, or not Linux)")


def _env(**extra):
    env = dict(os.environ)
    env["LAMINA_CUDA_EMULATOR"] = "1"
    for k in ("LAMINA_EMULATED_GPUS", "LAMINA_CUDA_EMULATOR_ORDER", "LAMINA_USE_CUBLAS", "LAMINA_USE_CUDNN"):
        env.pop(k, None)
    env.update(extra)
    package_parent = str(pathlib.Path(lamina.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


def _run(code):
    return subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("mode", [
    {},  # threads in order, products and convolutions through (the emulator's) cuBLAS and cuDNN
    # threads and blocks last first, so a race between threads shows; lamina's own product and
    # convolution kernels
    {"LAMINA_CUDA_EMULATOR_ORDER": "reverse", "LAMINA_USE_CUBLAS": "0", "LAMINA_USE_CUDNN": "0"},
], ids=["in-order-cublas", "reverse-own-products"])
def test_gpu_suite_passes_on_the_cuda_emulator(mode):
    _emulator_or_skip()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:warnings", "-p", "no:cacheprovider", "-m",
                        "gpu", str(ROOT / "gpu")], env=_env(**mode), capture_output=True, text=True, timeout=1800,
                       cwd=str(ROOT.parent))
    tail = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, "tests/gpu on the CUDA emulator failed:\n" + tail
    assert " passed" in tail and "deselected" in tail, tail


def test_emulator_devices_say_what_they_are():
    _emulator_or_skip()
    r = _run("import lamina, importlib\n"
             "d = importlib.import_module('lamina.backend.device')\n"
             "print(lamina.list_devices('gpu'), d._CUDA.__name__, d._CUDA.device_name(0))\n")
    assert r.returncode == 0, r.stderr
    assert "gpu:0" in r.stdout and "_cuda_emu" in r.stdout and "emulator" in r.stdout


def test_emulator_runs_warp_shuffles():
    """softmax's kernel reduces each row with warp shuffles: on the emulator it gives the CPU's answer."""
    _emulator_or_skip()
    code = ("import numpy as np, lamina\n"
            "x = np.random.default_rng(0).standard_normal((37, 300)).astype('float32')\n"
            "with lamina.device('gpu:0'):\n"
            "    g = np.asarray(lamina.ops.softmax(lamina.ops.convert_to_tensor(x), axis=-1))\n"
            "c = np.asarray(lamina.ops.softmax(lamina.ops.convert_to_tensor(x), axis=-1))\n"
            "assert np.allclose(g, c, rtol=1e-6, atol=1e-7), abs(g - c).max()\n"
            "print('ok')\n")
    r = _run(code)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


@pytest.mark.parametrize("which,what", [(0, "warp shuffles, a partial warp"), (1, "__syncthreads and __shared__"),
                                        (2, "a block of 2048 threads"), (3, "a deadlock, then a launch"),
                                        (4, "a barrier thread 0 skipped, then a launch")])
def test_the_emulator_itself(which, what):
    """The emulator's own checks (emu.cpp's lamina_emu_selftest), through ctypes: loading the module's
    file does not import it, so it does not clash with the CUDA module's types."""
    _emulator_or_skip()
    import ctypes
    lib = ctypes.CDLL(importlib.util.find_spec("lamina.backend._cuda_emu").origin)
    msg = ctypes.create_string_buffer(512)
    assert lib.lamina_emu_selftest(which, msg, 512) == 0, f"{what}: {msg.value.decode()}"


def test_skipping_kernels_leaves_the_hosts_work():
    """LAMINA_CUDA_EMULATOR_SKIP_KERNELS=1: launches are counted but run no CUDA thread (a step's host
    time alone); without it the same calls run their threads."""
    _emulator_or_skip()
    code = ("import importlib, numpy as np, lamina\n"
            "d = importlib.import_module('lamina.backend.device')\n"
            "with lamina.device('gpu:0'):\n"
            "    x = lamina.convert_to_tensor(np.ones((64, 64), 'float32'))\n"
            "    d.cuda_emulator_stats(reset=True)\n"
            "    y = lamina.ops.relu(x * 2.0)\n"
            "    s = d.cuda_emulator_stats()\n"
            "print(s['launches'], s['threads'])\n")
    ran_r = _run(code)
    r = subprocess.run([sys.executable, "-c", code], env=_env(LAMINA_CUDA_EMULATOR_SKIP_KERNELS="1"),
                       capture_output=True, text=True, timeout=300)
    assert ran_r.returncode == 0 and r.returncode == 0, ran_r.stderr + r.stderr
    ran, skip = [int(v) for v in ran_r.stdout.split()], [int(v) for v in r.stdout.split()]
    assert ran[0] >= 2 and ran[1] >= 64 * 64, ran
    assert skip[0] == ran[0] and skip[1] == 0, (skip, ran)
