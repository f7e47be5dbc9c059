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
    # found, not imported here: this process's gpu devices are the CUDA module's (or none)
    if importlib.util.find_spec("lamina.backend._cuda_emu") is None:
        pytest.skip("the CUDA emulator is not built (-DLAMINA_CUDA_EMULATOR=OFF, or not Linux)")


def _env(**extra):
    env = dict(os.environ)
    env["LAMINA_CUDA_EMULATOR"] = "1"
    for k in ("LAMINA_EMULATED_GPUS", "LAMINA_CUDA_EMULATOR_ORDER", "LAMINA_CUDA_EMULATOR_STREAMS", "LAMINA_USE_CUBLAS",
              "LAMINA_USE_CUDNN"):
        env.pop(k, None)
    env.update(extra)
    package_parent = str(pathlib.Path(lamina.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


def _run(code):
    return subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)


def test_the_emulator_and_the_cuda_module_load_in_one_process():
    """Built from the same sources, they register the same C++ types: module-local, so both import."""
    _emulator_or_skip()
    if importlib.util.find_spec("lamina.backend._cuda") is None:
        pytest.skip("the CUDA module is not built (no nvcc)")
    r = _run("import lamina.backend._cuda_emu as e, lamina.backend._cuda as c\n"
             "assert e.Buffer is not c.Buffer and e.Program is not c.Program\n"
             "b = e.Buffer(4, 0, 0); print(type(b).__module__, isinstance(b, c.Buffer))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["lamina.backend._cuda_emu", "False"], r.stdout


@pytest.mark.parametrize("mode", [
    {},  # threads in order, products and convolutions through (the emulator's) cuBLAS and cuDNN
    # threads and blocks last first, so a race between threads shows; lamina's own product and
    # convolution kernels
    {"LAMINA_CUDA_EMULATOR_ORDER": "reverse", "LAMINA_USE_CUBLAS": "0", "LAMINA_USE_CUDNN": "0"},
    # work queued per stream and run as late as CUDA allows, so a missing wait between streams or
    # before a host read shows (threads in order, cuBLAS and cuDNN)
    {"LAMINA_CUDA_EMULATOR_STREAMS": "lazy"},
    # lazy, but copies to the device run as soon as their stream allows, ahead of kernels queued on
    # the compute stream: a block reused for a copy while queued kernels still read it shows
    {"LAMINA_CUDA_EMULATOR_STREAMS": "lazy-early-copies"},
], ids=["in-order-cublas", "reverse-own-products", "in-order-lazy-streams", "lazy-early-copies"])
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


@pytest.mark.parametrize("streams", ["sync", "lazy"])
def test_the_emulators_checks_pass_in_both_stream_modes(streams):
    """Checks 0..4 pass whether streams run synchronously or lazily (a kernel's error then comes from
    the next synchronising call), and check 5 proves lazy streams bite: a copy on one stream is not
    seen by another stream's kernel without cudaStreamWaitEvent and is with it; cudaEventQuery and
    cudaStreamQuery say not ready until the host waits; a pinned source changed after
    cudaMemcpyAsync is what the copy delivers, a pageable one what it held at the call; a copy to
    pinned memory lands only when its stream runs; a queued kernel's deadlock is returned once by
    the next synchronising call; cudaDeviceSynchronize runs the newest stream first; the legacy
    default stream and blocking streams wait for each other, non-blocking ones do not; cuBLAS reads
    alpha at the call and the matrices when it runs; a queue of more than 100,000 items runs its
    oldest half."""
    _emulator_or_skip()
    code = ("import ctypes, importlib.util\n"
            "lib = ctypes.CDLL(importlib.util.find_spec('lamina.backend._cuda_emu').origin)\n"
            "msg = ctypes.create_string_buffer(512)\n"
            "for which in range(6):\n"
            "    print(which, lib.lamina_emu_selftest(which, msg, 512), msg.value.decode())\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(LAMINA_CUDA_EMULATOR_STREAMS=streams),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    results = {int(line.split()[0]): line.split(None, 2)[1:] for line in r.stdout.splitlines()}
    for which in range(5):
        assert results[which][0] == "0", (which, results[which])
    if streams == "lazy":
        assert results[5][0] == "0", results[5]
    else:
        assert results[5] == ["1", "needs LAMINA_CUDA_EMULATOR_STREAMS=lazy"], results[5]


def test_lazy_streams_run_lamina_work_only_when_the_host_waits():
    """Through lamina: with LAMINA_CUDA_EMULATOR_STREAMS=lazy a kernel has not run when its op returns
    (the device is busy), and a read runs it."""
    _emulator_or_skip()
    code = ("import numpy as np, lamina\n"
            "dev = lamina.get_device('gpu:0')\n"
            "with lamina.device(dev):\n"
            "    x = lamina.convert_to_tensor(np.arange(12, dtype='float32'))\n"
            "    y = lamina.ops.relu(x * 2.0)\n"
            "    busy = dev.kernels.device_stats(dev.index)['busy']\n"
            "    v = y.numpy()\n"
            "    idle = not dev.kernels.device_stats(dev.index)['busy']\n"
            "print(busy, idle, v.tolist() == (np.arange(12) * 2.0).tolist())\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(LAMINA_CUDA_EMULATOR_STREAMS="lazy"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "True"], r.stdout


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
