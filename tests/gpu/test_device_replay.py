"""Replayed steps on a device under test (models/replay.py): on a GPU a recorded step whose calls are
all the CUDA module's own kernels runs as one compiled Program (csrc/cuda/module.cpp), and trains
exactly as the step run as usual; a step with a host fallback is replayed from Python; the
host-fallback device (no kernels of its own) never gets a Program."""
import importlib

import numpy as np
import pytest

import lamina
from lamina import layers, ops

_dm = importlib.import_module("lamina.backend.device")


def _entries(model, step="train_step"):
    return [e for k, e in model._step_replay.entries.items() if step in k and e.program is not None]


def _native(model, step="train_step"):
    return [e.program.native for e in _entries(model, step)]


def _pair(dev, build):
    out = []
    for eager in (False, True):
        lamina.utils.set_random_seed(7)
        with lamina.device(dev):
            m = build()
            m.compile(optimizer=lamina.optimizers.Adam(1e-2), run_eagerly=eager, metrics=["accuracy"],
                      loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
        out.append(m)
    return out


def _batches(n, shape=(8,), rows=10, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((rows,) + shape).astype(np.float32), rng.integers(0, classes, rows))
            for _ in range(n)]


def _mlp():
    return lamina.Sequential([lamina.Input((8,)), layers.Dense(16, activation="relu"), layers.BatchNormalization(),
                              layers.Dense(3)])


def _convnet():
    return lamina.Sequential([lamina.Input((6, 6, 2)), layers.Conv2D(4, 3, activation="relu"),
                              layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(3)])


def _dropout():  # random draws at every step: the Program takes each run's seeds
    return lamina.Sequential([lamina.Input((8,)), layers.Dense(16, activation="relu"), layers.Dropout(0.5),
                              layers.GaussianNoise(0.3), layers.Dense(3)])


def _same_training(dev, build, batches):
    a, b = _pair(dev, build)
    logs = []
    with lamina.device(dev):
        for m in (a, b):  # one after the other: both draw the same global seeds (Dropout, noise)
            lamina.utils.set_random_seed(11)
            logs.append([m.train_on_batch(x, y) for x, y in batches])
    assert logs[0] == logs[1]
    for wa, wb in zip(a.get_weights() + [v.numpy() for v in a.optimizer.variables],
                      b.get_weights() + [v.numpy() for v in b.optimizer.variables]):
        np.testing.assert_array_equal(wa, wb)
    return a


@pytest.mark.parametrize("build, shape", [(_mlp, (8,)), (_convnet, (6, 6, 2)), (_dropout, (8,))],
                         ids=["mlp", "convnet", "dropout"])
def test_a_replayed_step_runs_as_a_program_on_the_gpu(dev, build, shape):
    a = _same_training(dev, build, _batches(10, shape))
    native = _native(a)
    assert native, a._step_replay.explain()
    if dev.kind == "gpu":
        assert all(p is not None for p in native)
        assert all(p.__class__.__module__.startswith("lamina.backend._cuda") for p in native)
    else:  # the host-fallback table binds nothing: its kernels are Python's
        assert all(p is None for p in native)


def test_predict_runs_the_program_on_new_batches(dev):
    rng = np.random.default_rng(3)
    with lamina.device(dev):
        m = _convnet()
        xs = [rng.standard_normal((5, 6, 6, 2)).astype(np.float32) for _ in range(6)]
        want = [m(lamina.convert_to_tensor(x)).numpy() for x in xs]  # eager calls (recorded from the 2nd)
        for x, w in zip(xs, want):
            np.testing.assert_array_equal(m.predict_on_batch(x), w)
            np.testing.assert_array_equal(m(lamina.convert_to_tensor(x)).numpy(), w)


def test_a_step_with_a_host_fallback_is_replayed_from_python(dev):
    """A binary op over 9 dimensions that do not merge has no CUDA kernel (KernelUnsupported): the
    recording saw a host fallback, so the step is replayed call by call, and still trains alike."""
    ones = np.ones((1, 2, 1, 2, 1, 2, 1, 2, 1), np.float32)

    def build():
        def nine(t):  # (B, 16) -> (B, 2, 2, 2, 2, 2, 2, 2, 2) by a 9-D broadcast -> (B, 16)
            u = ops.reshape(t, (-1, 1, 2, 1, 2, 1, 2, 1, 2)) * ones
            return ops.reshape(ops.sum(u, axis=(1, 3, 5, 7)), (-1, 16))
        return lamina.Sequential([lamina.Input((16,)), layers.Dense(16), layers.Lambda(nine), layers.Dense(3)])

    a = _same_training(dev, build, _batches(8, (16,)))
    assert _entries(a) and all(p is None for p in _native(a))
    if dev.kind == "gpu":
        assert dev.kernels.fallbacks.get("binary", 0) > 0


def test_programs_keep_no_batch_and_raise_the_kernels_errors(dev):
    """A deferred check inside a Program (an embedding id out of range) raises at the next read, as
    in a step run as usual; the next batches train on."""
    def build():
        return lamina.Sequential([lamina.Input((4,), dtype="int32"), layers.Embedding(10, 3), layers.Flatten(),
                                  layers.Dense(3)])
    rng = np.random.default_rng(2)
    good = [(rng.integers(0, 10, (6, 4)).astype(np.int32), rng.integers(0, 3, 6)) for _ in range(6)]
    a = _same_training(dev, build, good)
    bad = good[0][0].copy()
    bad[2, 1] = 10
    with lamina.device(dev):
        with pytest.raises(ValueError, match="id 10 at flat index 9 is out of range for 10 rows"):
            a.train_on_batch(bad, good[0][1])
            lamina.get_device(dev).synchronize()
        a.train_on_batch(*good[1])
    if dev.kind == "gpu":
        assert all(p is not None for p in _native(a))


def test_a_mixed_precision_step_is_a_program_too(dev):
    """Under mixed_bfloat16 the recording holds the casts and the bfloat16 kernels; replayed, it trains
    as the step run as usual (on a GPU with cuBLAS: one compiled Program, dropout's draws included)."""
    importlib.import_module("lamina.backend.device").enable_bfloat16()
    lamina.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        def build():
            return lamina.Sequential([lamina.Input((8,)), layers.Dense(16, activation="relu"), layers.Dropout(0.3),
                                      layers.Dense(3, dtype="float32")])
        a = _same_training(dev, build, _batches(8))  # (bfloat16 switched every registered device's table)
        assert a.layers[0].compute_dtype == "bfloat16"
        native = _native(a)
        # bfloat16 products need cuBLAS on a GPU (GemmStridedBatchedEx): without it they run on the
        # host, and a step with a host fallback replays from Python
        compiled = dev.kind == "gpu" and _dm._CUDA.cublas_status().startswith("loaded")
        assert native and all((p is not None) == compiled for p in native)
    finally:
        lamina.mixed_precision.set_global_policy("float32")


def test_a_pipelined_step_over_two_devices_is_one_program(devices):
    """fit(micro_batches=M) on a model split over gpu:0 and gpu:1, trained from outside any scope: its
    step, copies between the devices included, replays as one compiled Program (on the host-fallback
    pair, from Python), and trains as the step run as usual."""
    first, second = devices
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 20, (16, 5)).astype(np.int32), rng.integers(0, 20, (16, 5)).astype(np.int32)
    models = []
    for eager in (False, True):
        lamina.utils.set_random_seed(5)
        inp = lamina.Input((5,), dtype="int32")
        with lamina.device(first):
            h = layers.LSTM(8, return_sequences=True)(layers.Embedding(20, 8)(inp))
        with lamina.device(second):
            out = layers.Dense(20)(layers.LSTM(8, return_sequences=True)(h))
        m = lamina.Model(inp, out)
        m.compile(optimizer=lamina.optimizers.SGD(0.1), run_eagerly=eager,
                  loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
        models.append(m)
    a, b = models
    b.set_weights(a.get_weights())
    ha = a.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, micro_batches=2).history
    hb = b.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, micro_batches=2).history
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-6)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    native = _native(a)
    assert native, a._step_replay.explain()
    assert all((p is not None) == (first.kind == "gpu") for p in native)
