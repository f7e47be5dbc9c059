"""Convolutions through cuDNN (csrc/cuda/cudnn.cpp) on a GPU device where cuDNN is loaded -- the
real library on a GPU machine, the CUDA emulator's own implementation of cuDNN's API in CI --
against cpu:0: which convolutions take cuDNN (and which stay on lamina's kernels), forward values
and gradients, and the switch that turns it off."""
import importlib

import numpy as np
import pytest

import lamina
from lamina import ops

from device_calls import run_op

_dm = importlib.import_module("lamina.backend.device")

pytestmark = pytest.mark.gpu

R = np.random.default_rng(11)


def _gpu():
    gpus = lamina.list_devices("gpu")
    if not gpus:
        pytest.skip("no GPU: " + _dm._unavailable_gpu_message("gpu:0"))
    _dm._gpu_table()  # loads cuBLAS and cuDNN
    status = _dm._CUDA.cudnn_status()
    if not status.startswith("loaded"):
        pytest.skip("cuDNN is not in use here: " + status)
    return gpus[0]


def _counts():
    return _dm._CUDA.cudnn_counts()


def _arr(*shape):
    return R.normal(size=shape).astype(np.float32)


# name -> (function, inputs, cuDNN calls for the forward pass, for forward + both gradients)
CASES = {
    "3x3_same": (lambda x, k: ops.conv(x, k, padding="same"), [_arr(2, 7, 6, 3), _arr(3, 3, 3, 5)], 1, 3),
    "3x3_valid_stride2": (lambda x, k: ops.conv(x, k, strides=2), [_arr(2, 9, 8, 4), _arr(3, 3, 4, 6)], 1, 3),
    "5x5_dilated_same": (lambda x, k: ops.conv(x, k, padding="same", dilation_rate=2),
                         [_arr(1, 11, 10, 2), _arr(5, 5, 2, 3)], 1, 3),
    "rect_kernel_strides": (lambda x, k: ops.conv(x, k, strides=(2, 1)), [_arr(2, 9, 7, 3), _arr(1, 3, 3, 4)], 1, 3),
    "one_channel": (lambda x, k: ops.conv(x, k), [_arr(3, 8, 8, 1), _arr(3, 3, 1, 4)], 1, 3),
    "1x1_stride2": (lambda x, k: ops.conv(x, k, strides=2), [_arr(2, 6, 6, 5), _arr(1, 1, 5, 3)], 1, 3),
    "conv1d_same": (lambda x, k: ops.conv(x, k, padding="same"), [_arr(2, 9, 3), _arr(3, 3, 4)], 1, 3),
    # a plain matrix product: stays on cuBLAS / lamina's GEMM
    "1x1_direct": (lambda x, k: ops.conv(x, k), [_arr(2, 5, 4, 3), _arr(1, 1, 3, 6)], 0, 0),
    # "same" with stride 2 on an even size pads one row more below than above: not cuDNN's padding
    "same_stride2_even": (lambda x, k: ops.conv(x, k, strides=2, padding="same"),
                          [_arr(2, 8, 8, 3), _arr(3, 3, 3, 4)], 0, 0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_cpu_and_takes_cudnn_where_it_can(name):
    gpu = _gpu()
    fn, inputs, n_fwd, _ = CASES[name]
    want = run_op(fn, inputs, "cpu:0", grad=False)
    before = _counts()
    got = run_op(fn, inputs, gpu, grad=False)
    after = _counts()
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    assert after[0] - before[0] == n_fwd, (before, after, _dm._CUDA.cudnn_status())
    assert after[1] == before[1], _dm._CUDA.cudnn_status()  # nothing refused


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_cpu(name):
    gpu = _gpu()
    fn, inputs, _, n_all = CASES[name]
    want = run_op(fn, inputs, "cpu:0", grad=True)
    before = _counts()
    got = run_op(fn, inputs, gpu, grad=True)
    after = _counts()
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    assert after[0] - before[0] == n_all, (before, after, _dm._CUDA.cudnn_status())
    assert after[1] == before[1], _dm._CUDA.cudnn_status()


def test_transposed_convolution_runs_on_cudnn():
    gpu = _gpu()
    x, k = _arr(2, 5, 4, 6), _arr(3, 3, 3, 6)  # conv_transpose's kernel: (kh, kw, out, in)
    fn = lambda a, b: ops.conv_transpose(a, b, strides=2, padding="valid")  # noqa: E731
    before = _counts()
    for grad in (False, True):
        want = run_op(fn, [x, k], "cpu:0", grad=grad)
        got = run_op(fn, [x, k], gpu, grad=grad)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    assert _counts()[0] > before[0]


def test_a_model_trains_the_same_with_and_without_cudnn():
    gpu = _gpu()
    x = R.normal(size=(16, 10, 10, 2)).astype(np.float32)
    y = R.integers(0, 3, size=(16,))

    def train():
        lamina.utils.set_random_seed(3)
        with lamina.device(gpu):
            m = lamina.Sequential([lamina.Input((10, 10, 2)), lamina.layers.Conv2D(4, 3, padding="same",
                                                                                    activation="relu"),
                                   lamina.layers.Conv2D(3, 3, strides=2), lamina.layers.GlobalAveragePooling2D()])
            m.compile(optimizer="sgd", loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
            hist = m.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
            return hist.history["loss"], [w.numpy() for w in m.weights]

    before = _counts()
    loss_on, w_on = train()
    used = _counts()[0] - before[0]
    _dm._CUDA.set_use_cudnn(False)
    try:
        before = _counts()
        loss_off, w_off = train()
        assert _counts()[0] == before[0]  # lamina's own kernels only
    finally:
        _dm._CUDA.set_use_cudnn(True)
    assert used > 0
    np.testing.assert_allclose(loss_on, loss_off, rtol=1e-4)
    for a, b in zip(w_on, w_off):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_status_names_the_library():
    _gpu()
    status = _dm._CUDA.cudnn_status()
    assert "cuDNN " in status and ("libcudnn" in status or "_cuda_emu" in status), status


def _plan_algos():
    """(forward, backward data, backward filter) algorithm of every plan cuDNN took."""
    return [tuple(row[-6::2]) for row in _dm._CUDA.cudnn_plans() if row[-7]]


def test_plans_take_deterministic_algorithms():
    gpu = _gpu()
    fn, inputs, _, _ = CASES["3x3_same"]
    run_op(fn, inputs, gpu, grad=True)
    algos = _plan_algos()
    assert algos and all(a >= 0 for row in algos for a in row if a != -2), algos
    assert "deterministic algorithms" in _dm._CUDA.cudnn_status()
    if _dm.CUDA_EMULATED:  # the emulator lists the non-deterministic ALGO_0 first for both backward passes
        assert any(row[1:] == (1, 1) for row in algos), algos


def test_any_algorithm_when_determinism_is_waived():
    """LAMINA_CUDNN_DETERMINISTIC=0: cuDNN's first algorithm (on the emulator, ALGO_0 backward)."""
    _gpu()
    if not _dm.CUDA_EMULATED:
        pytest.skip("the algorithms cuDNN lists first are known on the CUDA emulator only")
    import os
    import subprocess
    import sys
    code = ("import importlib, numpy as np, lamina\n"
            "from lamina import ops\n"
            "dm = importlib.import_module('lamina.backend.device')\n"
            "with lamina.device('gpu:0'):\n"
            "    x = lamina.Variable(np.ones((1, 5, 5, 2), np.float32))\n"
            "    k = lamina.Variable(np.ones((3, 3, 2, 3), np.float32))\n"
            "    with lamina.GradientTape() as t:\n"
            "        y = ops.sum(ops.conv(x, k, padding='same'))\n"
            "    gx, gk = t.gradient(y, [x, k])\n"
            "    assert float(ops.sum(gk)) == 6 * 169, float(ops.sum(gk))\n"
            "print(dm._CUDA.cudnn_status())\n"
            "print([tuple(r[-6::2]) for r in dm._CUDA.cudnn_plans()])\n")
    env = dict(os.environ, LAMINA_CUDNN_DETERMINISTIC="0")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "any algorithm (LAMINA_CUDNN_DETERMINISTIC=0)" in r.stdout and "(1, 0, 0)" in r.stdout, r.stdout


def test_bfloat16_convolutions_take_cudnn_where_their_results_are_bfloat16():
    """bfloat16 images and kernels (mixed precision): cuDNN's bfloat16 configuration computes the
    bfloat16 output and gradients (float32 sums, one rounding each), equal to the CPU's within a
    bfloat16 ulp."""
    gpu = _gpu()
    _dm.enable_bfloat16()  # (tests/conftest.py puts the plain kernel tables back afterwards)
    r = np.random.default_rng(4)
    x = r.normal(size=(2, 9, 8, 3)).astype(np.float32)
    k = r.normal(scale=0.4, size=(3, 3, 3, 5)).astype(np.float32)
    c = r.normal(size=(2, 9, 8, 5)).astype(np.float32)
    res = []
    for where in ("cpu:0", gpu):
        vs = [lamina.Variable(lamina.convert_to_tensor(a, dtype="bfloat16").to(where)) for a in (x, k)]
        before = _counts()
        with lamina.GradientTape() as tape:
            y = ops.conv(vs[0], vs[1], padding="same")
            loss = ops.sum(ops.cast(y, "float32") * lamina.convert_to_tensor(c).to(where))
        grads = tape.gradient(loss, vs)
        ran = _counts()[0] - before[0]
        assert y.dtype == "bfloat16" and all(g.dtype == "bfloat16" for g in grads)
        res.append([np.asarray(t.to("cpu:0").numpy(), np.float32) for t in (y, *grads)])
    assert ran == 3, ran  # forward, input gradient, kernel gradient
    for want, got in zip(*res):
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-3 * np.abs(want).max() + 1e-6)
