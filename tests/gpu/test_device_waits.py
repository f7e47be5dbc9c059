"""Where the host waits for a device. Data checks that would need a wait (labels, embedding ids)
are deferred on the GPU: the error comes at the host's next wait, naming the same value and
position as the CPU's, and a training step waits only where its results are read. The wait counts
are read from the CUDA emulator (LAMINA_CUDA_EMULATOR=1); the error tests run on every device."""
import contextlib
import importlib

import numpy as np
import pytest

import lamina
from lamina import ops

_dm = importlib.import_module("lamina.backend.device")
RNG = np.random.default_rng(5)
LOGITS = RNG.normal(size=(4, 6)).astype(np.float32)


def test_a_bad_label_is_raised_by_the_next_read_and_only_once(dev):
    """The CPU raises in the call; a GPU at the next read. Either way the error is not lost."""
    with lamina.device(dev):
        logits = lamina.convert_to_tensor(LOGITS)
        with pytest.raises(ValueError, match=r"label 6 at flat index 1 is out of range for 6 classes"):
            ops.sparse_categorical_crossentropy(np.array([0, 6, 1, -3]), logits, from_logits=True)
            other = ops.sum(logits * 2.0)  # queued after the failed check
            other.numpy()
        np.testing.assert_allclose(float(ops.sum(logits * 2.0)), 2 * LOGITS.sum(), rtol=1e-5)  # raised once
        lamina.get_device(dev).synchronize()


def test_a_bad_embedding_id_is_raised_by_synchronize(dev):
    table = RNG.normal(size=(10, 3)).astype(np.float32)
    with lamina.device(dev):
        t = lamina.convert_to_tensor(table)
        with pytest.raises(ValueError, match=r"id -1 at flat index 2 .*negative values are not allowed"):
            ops.embedding_lookup(t, np.array([1, 2, -1], np.int32))
            lamina.get_device(dev).synchronize()
        np.testing.assert_allclose(ops.embedding_lookup(t, np.array([3], np.int32)).numpy(), table[[3]])


def test_the_earliest_of_several_failed_checks_is_raised(dev):
    with lamina.device(dev):
        logits = lamina.convert_to_tensor(LOGITS)
        with pytest.raises(ValueError, match=r"label 9 at flat index 2"):
            ops.sparse_categorical_crossentropy(np.array([0, 1, 9, 2]), logits, from_logits=True)
            ops.sparse_categorical_crossentropy(np.array([7, 1, 2, 2]), logits, from_logits=True)
            lamina.get_device(dev).synchronize()
        lamina.get_device(dev).synchronize()  # forgotten once raised


def test_a_bad_take_index_is_raised_by_the_next_read_as_on_the_cpu(dev):
    """take and take_along_axis raise the CPU's IndexError (same index and position); on a GPU at the
    next read, after the bad positions gathered zeros."""
    x = RNG.normal(size=(5, 3)).astype(np.float32)
    with lamina.device(dev):
        t = lamina.convert_to_tensor(x)
        with pytest.raises(IndexError, match=r"take: index 5 \(at flat position 2 of the indices\) is out of bounds "
                                             r"for an axis of size 5; valid indices are -5 to 4"):
            ops.take(t, np.array([0, -5, 5, 1, 9]), axis=0).numpy()
        with pytest.raises(IndexError, match=r"take_along_axis: index -6 \(at flat position 4 of the indices\)"):
            ops.take_along_axis(t, np.array([[0, 1, 2], [2, -6, 0]]), axis=0).numpy()
        with pytest.raises(IndexError, match=r"take: index 3 .*axis of size 3"):  # the gradient's take
            with lamina.GradientTape() as tape:
                tape.watch(t)
                y = ops.sum(ops.take(t, np.array([3, 0]), axis=1))
            tape.gradient(y, t).numpy()
        # raised once; the device still works
        np.testing.assert_array_equal(ops.take(t, np.array([4, -1, 0]), axis=0).numpy(), x[[4, -1, 0]])
        lamina.get_device(dev).synchronize()


@pytest.mark.gpu
def test_index_checks_do_not_wait_and_the_earliest_failure_is_raised():
    """Deferred checks reuse their device slots in stream order: hundreds of takes queue without a
    host wait (the old scheme waited every 64), and the first failed one in queue order is raised."""
    dev = _emulated_gpu()
    x = RNG.normal(size=(7, 2)).astype(np.float32)
    with lamina.device(dev):
        t = lamina.convert_to_tensor(x)
        idx = [lamina.convert_to_tensor(np.array([i % 7, (3 * i) % 7], np.int64)) for i in range(300)]
        bad1 = lamina.convert_to_tensor(np.array([1, 2, 70], np.int64))
        bad2 = lamina.convert_to_tensor(np.array([-8], np.int64))
        lamina.get_device(dev).synchronize()
        _dm.cuda_emulator_stats(reset=True)
        outs = [ops.take(t, i, axis=0) for i in idx[:150]]
        outs.append(ops.take(t, bad1, axis=0))
        outs += [ops.take(t, i, axis=0) for i in idx[150:]]
        outs.append(ops.take(t, bad2, axis=0))
        assert _dm.cuda_emulator_stats(reset=True)["host_waits"] == 0
        with pytest.raises(IndexError, match=r"index 70 \(at flat position 2 of the indices\)"):
            lamina.get_device(dev).synchronize()
        lamina.get_device(dev).synchronize()  # the later failure was forgotten with it
        np.testing.assert_array_equal(outs[150].numpy(), np.concatenate([x[[1, 2]], np.zeros((1, 2), np.float32)]))
        for i in (0, 149, 151, 300):
            np.testing.assert_array_equal(outs[i].numpy(), x[idx[i if i < 150 else i - 1].numpy()])
        # then a clean stretch raises nothing, and a new failure is raised again
        for i in idx[:100]:
            ops.take(t, i, axis=0)
        lamina.get_device(dev).synchronize()
        ops.take_along_axis(t, np.array([[0, 9]]), axis=0)
        with pytest.raises(IndexError, match=r"take_along_axis: index 9 \(at flat position 1"):
            lamina.get_device(dev).synchronize()


def _emulated_gpu():
    if not _dm.CUDA_EMULATED:
        pytest.skip("wait counts are read from the CUDA emulator (LAMINA_CUDA_EMULATOR=1)")
    return "gpu:0"


@pytest.mark.gpu
@pytest.mark.parametrize("kind,where", [("convnet", "scope"), ("lstm", "scope"), ("convnet", "fit outside"),
                                        ("convnet", "compile and fit outside")])
def test_training_waits_only_where_it_reads(kind, where):
    """Built in `with lamina.device("gpu:0"):`, and compiled and trained in it or outside it: the
    batches are made on the GPU (fit's prefetching thread), the loss and metrics keep their totals
    there, so the step is replayed as one Program and an epoch waits only to read its logs."""
    dev = _emulated_gpu()
    L = lamina.layers
    with lamina.device(dev):
        if kind == "convnet":
            model = lamina.Sequential([lamina.Input(shape=(8, 8, 1)), L.Conv2D(4, 3, activation="relu"),
                                       L.MaxPooling2D(2), L.Flatten(), L.Dense(8, activation="relu"),
                                       L.Dropout(0.5), L.Dense(5)])
            x = RNG.random((16, 8, 8, 1), dtype=np.float32)
        else:
            model = lamina.Sequential([lamina.Input(shape=(5, 3)), L.LSTM(8), L.Dense(5)])
            x = RNG.normal(size=(16, 5, 3)).astype(np.float32)
        y = RNG.integers(0, 5, 16)
        if where != "compile and fit outside":
            model.compile(optimizer="adam", loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
    if where == "compile and fit outside":
        model.compile(optimizer="adam", loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    with lamina.device(dev) if where == "scope" else contextlib.nullcontext():
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # builds, compiles the step
        _dm.cuda_emulator_stats(reset=True)
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        fit = _dm.cuda_emulator_stats(reset=True)
        how = {"compiled Program" if e.program is not None and e.program.native is not None else e.failed or "recording"
               for e in model._step_replay.entries.values()}
        xt, yt = (lamina.convert_to_tensor(a) for a in (x, y))
        model.train_on_batch(xt, yt)
        step = _dm.cuda_emulator_stats(reset=True)
    # an epoch of 4 steps reads its logs once (loss and accuracy); its input copies do not wait;
    # train_on_batch returns both
    assert fit["host_waits"] <= 2, fit
    assert step["host_waits"] <= 2, step
    assert fit["launches"] > 4 * 10, fit  # the steps ran on the device
    assert how == {"compiled Program"}
    assert {v.device.name for m in (model._loss_tracker, *model._compile_metrics.metrics) for v in m.variables} == {dev}


@pytest.mark.gpu
@pytest.mark.parametrize("sizes", [(10, 70000, 3, 300000, 70000, 1, 0, 5000) * 3, (100,) * 100 + (300000,)],
                         ids=["mixed", "many_small_then_large"])
def test_copies_to_the_device_do_not_wait_and_keep_their_bytes(sizes):
    """from_numpy goes through pinned staging blocks (each held until its copy has run, then
    reused): no host wait, and every copy lands whole, whatever the order of sizes. With a hundred
    small copies in flight, then a large one (LAMINA_CUDA_EMULATOR_STREAMS=lazy keeps them all in
    flight), the pool grows to its byte limit, not to 64 blocks, so the large one does not wait."""
    dev = _emulated_gpu()
    arrays = [RNG.normal(size=n).astype(np.float32) + i for i, n in enumerate(sizes)]
    with lamina.device(dev):
        _dm.cuda_emulator_stats(reset=True)
        tensors = [lamina.convert_to_tensor(a) for a in arrays]
        copies = _dm.cuda_emulator_stats(reset=True)
        for t, a in zip(tensors, arrays):
            np.testing.assert_array_equal(t.numpy(), a)
    assert copies["host_waits"] == 0, copies


@pytest.mark.gpu
def test_input_blocks_are_reused_once_their_kernels_ran():
    """from_numpy's destinations (input blocks, written on the copy stream) come back for the next
    batch once the kernels queued before their buffer died have run: a loop of batches allocates a
    few blocks, not one a batch, and every batch lands whole."""
    dev = lamina.get_device("gpu:0") if _dm._CUDA is not None and lamina.list_devices("gpu") else None
    if dev is None:
        pytest.skip("no GPU devices")
    stats = lambda: dev.kernels.memory_stats()["devices"][dev.index]["system_allocs"]  # noqa: E731
    with lamina.device(dev):
        before = stats()
        for i in range(30):
            a = RNG.normal(size=(64, 100)).astype(np.float32) + i
            t = lamina.convert_to_tensor(a)
            np.testing.assert_array_equal((t * 2.0).numpy(), a * 2.0)  # a kernel read the copy
            del t
        assert stats() - before <= 8, stats() - before


@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adagrad"])
def test_embedding_training_does_not_wait_for_its_sparse_gradient(optimizer):
    """An embedding's gradient is sparse (IndexedSlices); summing its repeated rows needs the row
    count on the host, so on a GPU the optimizer densifies it instead (Optimizer._prepare_sparse)."""
    dev = _emulated_gpu()
    L = lamina.layers
    x, y = RNG.integers(0, 50, (16, 6)), RNG.integers(0, 5, 16)
    with lamina.device(dev):
        model = lamina.Sequential([lamina.Input(shape=(6,), dtype="int32"), L.Embedding(50, 4), L.LSTM(8), L.Dense(5)])
        model.compile(optimizer=optimizer, loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        _dm.cuda_emulator_stats(reset=True)
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        fit = _dm.cuda_emulator_stats(reset=True)
    assert fit["host_waits"] <= 2, fit


def _sparse_step(device, name, densify_max=None):
    """Two optimizer steps on a (12, 3) table with a gradient of repeated rows, on `device`."""
    table = np.linspace(-1, 1, 36, dtype=np.float32).reshape(12, 3)
    ids = np.array([3, 7, 3, 0, 11, 7, 3], np.int32)
    weights = np.linspace(0.5, 2, 21, dtype=np.float32).reshape(7, 3)
    with lamina.device(device):
        v = lamina.Variable(table)
        opt = {"adam": lambda: lamina.optimizers.Adam(0.1), "sgd": lambda: lamina.optimizers.SGD(0.1),
               "sgd_momentum": lambda: lamina.optimizers.SGD(0.1, momentum=0.9),
               "adagrad": lambda: lamina.optimizers.Adagrad(0.1), "ftrl": lambda: lamina.optimizers.Ftrl(0.1),
               "rmsprop": lambda: lamina.optimizers.RMSprop(0.1)}[name]()
        if densify_max is not None:
            opt._DENSIFY_ON_GPU_MAX = densify_max
        for _ in range(2):
            with lamina.GradientTape() as tape:
                loss = ops.sum(ops.embedding_lookup(v, lamina.convert_to_tensor(ids)) * weights)
            (g,) = tape.gradient(loss, [v])
            assert type(g).__name__ == "IndexedSlices"
            opt.apply([g], [v])
        return v.numpy()


@pytest.mark.parametrize("name", ["adam", "sgd", "sgd_momentum", "adagrad", "ftrl", "rmsprop"])
def test_sparse_updates_match_cpu(dev, name):
    """The sparse gradient's update on the device (densified on a GPU) equals cpu:0's (rows summed
    by a sort there); rows without gradient change only where the rule moves them (moments)."""
    want = _sparse_step("cpu:0", name)
    np.testing.assert_allclose(_sparse_step(dev, name), want, rtol=1e-5, atol=1e-6)
    if name in ("sgd", "adagrad"):  # rows-only rules on a variable above the densify limit: the row kernels
        np.testing.assert_allclose(_sparse_step(dev, name, densify_max=0), want, rtol=1e-5, atol=1e-6)
