"""Step replay (models/replay.py): a recorded train step run again on new batches must train
exactly as the step run as usual (compile(run_eagerly=True)), and steps that cannot be replayed
must run as usual."""
import numpy as np
import pytest

import lamina
from lamina import layers, ops


def _replayed(model, step="train_step"):
    """The replayed signatures of a step; predict_step's include the model's replayed calls (a
    model whose call replays itself predicts through it)."""
    steps = model._step_replay.explain().items() if model._step_replay is not None else ()
    out = [v for k, v in steps if step in k and v == "replayed"]
    if step == "predict_step" and getattr(model, "_call_replay", None) is not None:
        out += [v for v in model._call_replay.explain().values() if v == "replayed"]
    return out


def _not_replayed(model, step="train_step"):
    return [v for k, v in model._step_replay.explain().items() if step in k and v not in ("replayed", "recording")]


def _pair(build, **compile_kw):
    """The same model twice (same initial weights): replayed, and run eagerly."""
    out = []
    for eager in (False, True):
        lamina.utils.set_random_seed(7)
        m = build()
        kw = dict(optimizer=lamina.optimizers.Adam(1e-2),
                  loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        kw.update(compile_kw)
        m.compile(run_eagerly=eager, **kw)
        out.append(m)
    return out


def _same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)


def _train_alike(a, b, batches):
    """Trains both models on each batch: the same logs at every step, the same weights after."""
    for x, y in batches:
        assert a.train_on_batch(x, y) == b.train_on_batch(x, y)
    _same_weights(a, b)


def _fit_alike(a, b, n, **fit_kw):
    """fit on both models over n batches' rows: the same history, the same weights."""
    x = np.concatenate([x for x, _ in _batches(n)])
    y = np.concatenate([y for _, y in _batches(n)])
    assert a.fit(x, y, verbose=0, shuffle=False, **fit_kw).history == b.fit(x, y, verbose=0, shuffle=False,
                                                                             **fit_kw).history
    _same_weights(a, b)
    return x, y


def _mlp():
    return lamina.Sequential([lamina.Input((8,)), layers.Dense(16, activation="relu"), layers.BatchNormalization(),
                              layers.Dense(3)])


def _batches(n, rows=10, features=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((rows, features)).astype(np.float32), rng.integers(0, classes, rows))
            for _ in range(n)]


def test_replayed_train_on_batch_equals_eager_bit_for_bit():
    a, b = _pair(_mlp)
    _train_alike(a, b, _batches(12))  # kernels, moving statistics of BatchNormalization, optimizer state
    assert _replayed(a) and not b._step_replay.entries
    for va, vb in zip(a.optimizer.variables, b.optimizer.variables):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())


def test_replayed_fit_with_a_last_partial_batch_equals_eager():
    a, b = _pair(_mlp)
    _fit_alike(a, b, 12, batch_size=16, epochs=5, validation_split=0.1)
    assert len(_replayed(a)) == 2  # full batches of 16 and the last one of 12


def test_functional_model_with_two_inputs_and_outputs():
    def build():
        i1, i2 = lamina.Input((4,), name="a"), lamina.Input((3,), name="b")
        h = layers.Concatenate()([layers.Dense(5, activation="tanh")(i1), i2])
        return lamina.Model([i1, i2], [layers.Dense(2, name="reg")(h), layers.Dense(3, name="cls")(h)])
    a, b = _pair(build, loss={"reg": "mse", "cls": lamina.losses.SparseCategoricalCrossentropy(from_logits=True)},
                 loss_weights={"reg": 0.5, "cls": 1.0}, metrics={"cls": ["accuracy"]})
    rng = np.random.default_rng(1)
    for _ in range(8):
        x = [rng.standard_normal((6, 4)).astype(np.float32), rng.standard_normal((6, 3)).astype(np.float32)]
        y = {"reg": rng.standard_normal((6, 2)).astype(np.float32), "cls": rng.integers(0, 3, 6)}
        sw = rng.random(6).astype(np.float32)
        assert a.train_on_batch(x, y, sample_weight=sw, return_dict=True) == \
            b.train_on_batch(x, y, sample_weight=sw, return_dict=True)
    _same_weights(a, b)
    assert _replayed(a)


def test_per_output_losses_over_epochs_with_a_partial_batch_equal_eager():
    """The per-output loss trackers update inside the replayed step: their logs must stay Keras's
    weighted means in every epoch (they once kept Python-side state a replay did not advance)."""
    def build():
        inp = lamina.Input((8,))
        h = layers.Dense(6, activation="tanh")(inp)
        return lamina.Model(inp, [layers.Dense(1, name="a")(h), layers.Dense(2, name="b")(h)])
    a, b = _pair(build, loss=["mse", "mae"], metrics=None)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    y = [rng.standard_normal((50, 1)).astype(np.float32), rng.standard_normal((50, 2)).astype(np.float32)]
    ha = a.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0).history
    hb = b.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0).history
    assert sorted(ha) == ["a_loss", "b_loss", "loss"]
    for k in ha:
        np.testing.assert_allclose(ha[k], hb[k], rtol=1e-6, err_msg=k)
    assert len(_replayed(a)) == 2


def _two_devices(first, second):
    """A builder of Dense(12, relu) on `first` then Dense(3) on `second`."""
    def build():
        inp = lamina.Input((8,))
        with lamina.device(first):
            h = layers.Dense(12, activation="relu")(inp)
        with lamina.device(second):
            out = layers.Dense(3)(h)
        return lamina.Model(inp, out)
    return build


def test_devices_model_parallel_replayed():
    a, b = _pair(_two_devices("cpu:1", "cpu:0"))
    _train_alike(a, b, _batches(8))
    assert _replayed(a)


@pytest.mark.parametrize("noise", [lambda: layers.Dropout(0.5), lambda: layers.Dropout(0.3, seed=3),
                                   lambda: layers.GaussianNoise(0.2)])
def test_random_layers_are_replayed_with_fresh_draws(noise):
    """Dropout and noise draw a new seed at every step: a replay draws again, from the same
    generators in the same order, so the masks are the ones the step would have drawn."""
    def build():
        return lamina.Sequential([lamina.Input((8,)), layers.Dense(16), noise(), layers.Dense(3)])
    a, b = _pair(build)
    logs = []
    for m in (a, b):  # one after the other: both draw the same global seeds
        lamina.utils.set_random_seed(11)
        logs.append([m.train_on_batch(x, y) for x, y in _batches(8)])
    assert logs[0] == logs[1]
    assert len({tuple(v) for v in logs[0]}) == len(logs[0])
    _same_weights(a, b)
    assert _replayed(a)
    # one compiled Program, each run's draws put into its bound calls
    assert all(e.program.native is not None for e in a._step_replay.entries.values() if e.program is not None)


class _PythonDecides(layers.Layer):
    """Reads a value back and branches on it in Python: must never be replayed."""

    def call(self, x):
        return x * 2.0 if float(ops.sum(x)) > 0 else x * -1.0


def test_a_step_that_reads_back_values_runs_as_usual():
    def build():
        return lamina.Sequential([lamina.Input((8,)), layers.Dense(3), _PythonDecides()])
    a, b = _pair(build)
    _train_alike(a, b, _batches(6))
    (why,) = _not_replayed(a)
    assert "reads a value back" in why


class _Arange(layers.Layer):
    """Uploads a constant at every call (a new tensor from numpy) and adds it."""

    def call(self, x):
        return ops.add(x, lamina.convert_to_tensor(np.arange(x.shape[-1], dtype=np.float32) * 0.1))


def test_constants_uploaded_by_the_step_are_replayed():
    def build():
        return lamina.Sequential([lamina.Input((8,)), layers.Dense(3), _Arange()])
    a, b = _pair(build)
    _train_alike(a, b, _batches(8))
    assert _replayed(a)


def test_freezing_a_layer_records_a_new_step():
    a, b = _pair(_mlp)
    data = _batches(12)
    _train_alike(a, b, data[:6])
    for m in (a, b):
        m.layers[0].trainable = False
    frozen = a.layers[0].get_weights()
    _train_alike(a, b, data[6:])
    for w, f in zip(a.layers[0].get_weights(), frozen):
        np.testing.assert_array_equal(w, f)
    assert len(a._step_replay.entries) == 2


def test_weights_set_between_replayed_steps_are_used():
    a, b = _pair(_mlp)
    data = _batches(10)
    _train_alike(a, b, data[:5])
    new = [np.full_like(w, 0.01 * (i + 1)) for i, w in enumerate(a.get_weights())]
    a.set_weights(new)
    b.set_weights(new)
    _train_alike(a, b, data[5:])


def test_an_error_in_a_replayed_step_is_the_kernels_error():
    a, b = _pair(_mlp)
    for x, y in _batches(5):
        a.train_on_batch(x, y)
        b.train_on_batch(x, y)
    assert _replayed(a)
    x, y = _batches(1, seed=5)[0]
    y[3] = 7  # out of range for 3 classes
    with pytest.raises(ValueError) as ea:
        a.train_on_batch(x, y)
    with pytest.raises(ValueError) as eb:
        b.train_on_batch(x, y)
    assert str(ea.value) == str(eb.value)


def test_what_is_never_replayed():
    # run_eagerly, a custom train_step, a loss-scaling optimizer, string inputs
    m = _mlp()
    m.compile(optimizer="adam", loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    assert m.run_eagerly
    for x, y in _batches(5):
        m.train_on_batch(x, y)
    assert not m._step_replay.entries
    m.evaluate(*_batches(1)[0], verbose=0)
    m.predict(_batches(1)[0][0], verbose=0)
    assert not m._step_replay.entries

    class Custom(lamina.Sequential):
        def train_step(self, data):
            return super().train_step(data)
    c = Custom([lamina.Input((8,)), layers.Dense(3)])
    c.compile(optimizer="adam", loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    for x, y in _batches(5):
        c.train_on_batch(x, y)
    assert not c._step_replay.entries

    s = _mlp()
    s.compile(optimizer=lamina.optimizers.LossScaleOptimizer(lamina.optimizers.SGD(0.01)),
              loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    for x, y in _batches(5):
        s.train_on_batch(x, y)
    assert not s._step_replay.entries


def test_run_eagerly_is_kept_in_the_compile_config(tmp_path):
    m = _mlp()
    m.compile(optimizer="adam", loss="mse", run_eagerly=True)
    path = str(tmp_path / "m.keras")
    m.save(path)
    assert lamina.models.load_model(path).run_eagerly


def test_embedding_gradient_rows_follow_the_new_batch():
    """The sparse gradient of an embedding keeps the batch's ids: replayed, it must carry the new
    batch's ids, not the recorded one's."""
    def build():
        return lamina.Sequential([lamina.Input((6,), dtype="int32"), layers.Embedding(50, 4), layers.Flatten(),
                                  layers.Dense(3)])
    a, b = _pair(build)
    rng = np.random.default_rng(3)
    for _ in range(8):
        x = rng.integers(0, 50, size=(5, 6)).astype(np.int32)
        y = rng.integers(0, 3, 5)
        assert a.train_on_batch(x, y) == b.train_on_batch(x, y)
    _same_weights(a, b)
    assert _replayed(a)


def test_a_model_returning_its_input_returns_the_new_batch():
    def build():
        inp = lamina.Input((3,))
        return lamina.Model(inp, [layers.Dense(3)(inp), layers.Identity()(inp)])
    a, b = _pair(build, loss=["mse", None], metrics=[None, ["mae"]])
    rng = np.random.default_rng(4)
    for _ in range(7):
        x = rng.standard_normal((4, 3)).astype(np.float32)
        y = [rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)]
        assert a.train_on_batch(x, y) == b.train_on_batch(x, y)
    _same_weights(a, b)
    assert _replayed(a)


def test_pipelined_steps_are_replayed_across_devices():
    """fit(micro_batches=M) on a model over cpu:0 and cpu:1: the pipelined step is replayed too,
    metric updates of every micro-batch included."""
    a, b = _pair(_two_devices("cpu:0", "cpu:1"))
    _fit_alike(a, b, 10, batch_size=20, epochs=4, micro_batches=3)
    assert _replayed(a)


def test_evaluate_and_predict_are_replayed_with_the_same_results():
    a, b = _pair(_mlp)
    x, y = _fit_alike(a, b, 12, batch_size=16, epochs=1)
    for _ in range(2):
        assert a.evaluate(x, y, batch_size=8, verbose=0) == b.evaluate(x, y, batch_size=8, verbose=0)
        np.testing.assert_array_equal(a.predict(x, batch_size=8, verbose=0), b.predict(x, batch_size=8, verbose=0))
    rows = [a.predict_on_batch(x[i:i + 1]) for i in range(8)]
    np.testing.assert_array_equal(np.concatenate(rows), b.predict(x[:8], batch_size=1, verbose=0))
    assert _replayed(a, "test_step") and _replayed(a, "predict_step")


def test_predict_replays_without_compile():
    m = _mlp()
    x = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    want = np.concatenate([m(lamina.convert_to_tensor(x[i:i + 4]), training=False).numpy() for i in range(0, 40, 4)])
    np.testing.assert_array_equal(m.predict(x, batch_size=4, verbose=0), want)
    assert _replayed(m, "predict_step")


def test_results_of_predict_step_keep_their_values():
    m = _mlp()
    xs = [lamina.convert_to_tensor(x) for x, _ in _batches(8)]
    outs = [m.predict_step((x,)) for x in xs]  # replayed from the fourth on
    assert _replayed(m, "predict_step")
    for x, o in zip(xs, outs):
        np.testing.assert_array_equal(o.numpy(), m(x, training=False).numpy())


def test_stateful_and_masked_recurrent_models():
    def build():
        return lamina.Sequential([lamina.Input((5,), batch_size=4, dtype="int32"),
                                  layers.Embedding(20, 6, mask_zero=True),
                                  layers.LSTM(7, stateful=True, return_sequences=True), layers.GRU(5),
                                  layers.Dense(3)])
    a, b = _pair(build)
    rng = np.random.default_rng(5)
    data = []
    for _ in range(9):
        x = rng.integers(0, 20, size=(4, 5)).astype(np.int32)
        x[:, 3:] = 0  # padding, masked
        data.append((x, rng.integers(0, 3, 4)))
    _train_alike(a, b, data[:5])
    for m in (a, b):
        m.layers[1].reset_states()
    _train_alike(a, b, data[5:])
    assert _replayed(a)


def test_compile_checks_jit_compile_and_auto_scale_loss():
    m = _mlp()
    for jit in ("auto", True, False):
        m.compile(optimizer="sgd", loss="mse", jit_compile=jit)
    with pytest.raises(ValueError, match=r"jit_compile 'auto', True or False.*received jit_compile='yes'"):
        m.compile(optimizer="sgd", loss="mse", jit_compile="yes")
    with pytest.raises(ValueError, match=r"auto_scale_loss=1"):
        m.compile(optimizer="sgd", loss="mse", auto_scale_loss=1)


def test_a_batch_passing_one_tensor_twice_is_another_signature():
    """train_on_batch(t, t) records one buffer for x and y; later batches with two different
    tensors must not reuse that recording."""
    def build():
        return lamina.Sequential([lamina.Input((3,)), layers.Dense(3)])
    a, b = _pair(build, loss="mse", metrics=None)
    rng = np.random.default_rng(8)
    for _ in range(5):
        t = lamina.convert_to_tensor(rng.standard_normal((4, 3)).astype(np.float32))
        assert a.train_on_batch(t, t) == b.train_on_batch(t, t)
    for _ in range(5):
        x, y = (lamina.convert_to_tensor(rng.standard_normal((4, 3)).astype(np.float32)) for _ in range(2))
        assert a.train_on_batch(x, y) == b.train_on_batch(x, y)
    _same_weights(a, b)
    assert len(_replayed(a)) == 2


def test_steps_inside_an_open_gradient_tape_run_as_usual():
    a, b = _pair(_mlp)
    with lamina.GradientTape():
        _train_alike(a, b, _batches(6))
    assert not a._step_replay.entries


@pytest.mark.parametrize("bfloat16", [False, True])
def test_other_threads_kernel_calls_are_not_recorded(bfloat16):
    """fit's prefetching thread uploads and copies batches while a step is recorded; with bfloat16
    tables (which look their kernels up on the recording thread) its calls were logged into the
    step, so the two recordings differed at random and the step was not replayed."""
    import importlib
    import threading
    replay = importlib.import_module("lamina.models.replay")
    if bfloat16:
        importlib.import_module("lamina.backend.device").enable_bfloat16()
    t = lamina.convert_to_tensor(np.ones(3, np.float32))
    done = []

    def other():
        u = lamina.convert_to_tensor(np.arange(4, dtype=np.int64), device="cpu:1")  # an upload, on another device
        done.append(ops.add(u, u).to("cpu:0").numpy())  # a kernel, a copy, a read

    other()  # makes cpu:1 (a step that makes a device is not replayed)
    done.clear()

    def step():
        th = threading.Thread(target=other)
        th.start()
        th.join()
        return ops.add(t, t)
    out, rec = replay._record(step)
    assert rec.abort is None, rec.abort
    np.testing.assert_array_equal(done[0], [0, 2, 4, 6])
    np.testing.assert_array_equal(out.numpy(), [2, 2, 2])
    assert [name for name, *_ in rec.calls] == ["binary"]
    assert [kind for kind, *_ in rec.created] == ["new"]  # add's output; not the other thread's upload


def _metric_case(case):
    """(output layer, loss, targets, metrics) of one kind of task, with every metric of lamina's for it."""
    M = lamina.metrics
    rng = np.random.default_rng(11)
    if case == "binary":
        y = (rng.random((50, 1)) > 0.5).astype(np.float32)
        return layers.Dense(1, activation="sigmoid"), "binary_crossentropy", y, [
            M.BinaryAccuracy(), M.BinaryCrossentropy(), M.AUC(), M.AUC(curve="PR", num_thresholds=7, name="pr_auc"), M.Precision(),
            M.Recall(), M.TruePositives(), M.TrueNegatives(), M.FalsePositives(), M.FalseNegatives(),
            M.PrecisionAtRecall(0.5), M.RecallAtPrecision(0.5), M.SensitivityAtSpecificity(0.5),
            M.SpecificityAtSensitivity(0.5), M.BinaryIoU(), M.Hinge(), M.SquaredHinge(), "accuracy"]
    if case == "sparse":
        return layers.Dense(3, activation="softmax"), "sparse_categorical_crossentropy", rng.integers(0, 3, 50), [
            M.SparseCategoricalAccuracy(), M.SparseCategoricalCrossentropy(), M.SparseTopKCategoricalAccuracy(k=2),
            "accuracy"]
    if case == "onehot":
        y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 50)]
        return layers.Dense(3, activation="softmax"), "categorical_crossentropy", y, [
            M.CategoricalAccuracy(), M.CategoricalCrossentropy(), M.TopKCategoricalAccuracy(k=2), M.KLDivergence(),
            M.CategoricalHinge(), M.F1Score(average="macro"), M.FBetaScore(beta=2.0), M.OneHotIoU(3, [0, 2]),
            M.OneHotMeanIoU(3), M.Poisson(), M.Precision(top_k=1), "accuracy"]
    y = rng.random((50, 1)).astype(np.float32) + 0.5
    return layers.Dense(1), "mse", y, [
        M.MeanAbsoluteError(), M.MeanSquaredError(), M.MeanAbsolutePercentageError(), M.MeanSquaredLogarithmicError(),
        M.RootMeanSquaredError(), M.LogCoshError(), M.CosineSimilarity(axis=-1), M.R2Score(), M.PearsonCorrelation(),
        M.ConcordanceCorrelation(), "mae"]


@pytest.mark.parametrize("case", ["binary", "sparse", "onehot", "regression"])
def test_every_metric_updates_inside_the_replayed_step(case, monkeypatch):
    """lamina's metrics update among the replayed step's kernels (their Python runs only while the
    step is recorded), with the logs of eager training over epochs and a last partial batch; a
    metric class written elsewhere keeps running after the step, at every step."""
    calls = []

    class Rows(lamina.metrics.Metric):  # written here, outside lamina
        def __init__(self):
            super().__init__(name="rows")
            self.n = self.add_variable((), name="n")

        def update_state(self, y_true, y_pred, sample_weight=None):
            calls.append(1)
            self.n.assign_add(np.float32(y_true.shape[0]))

        def result(self):
            return self.n

    x = np.random.default_rng(3).standard_normal((50, 4)).astype(np.float32)
    histories = []
    for user_metric in (False, True):
        models = []
        for eager in (False, True):
            lamina.utils.set_random_seed(5)
            out, loss, y, metrics = _metric_case(case)
            m = lamina.Sequential([lamina.Input((4,)), layers.Dense(6, activation="tanh"), out])
            m.compile(optimizer="adam", loss=loss, metrics=metrics + ([Rows()] if user_metric else []),
                      run_eagerly=eager)
            models.append(m)
        a, b = models
        updates = []
        real = lamina.metrics.Mean.update_state
        monkeypatch.setattr(lamina.metrics.Mean, "update_state",
                            lambda self, *args, **kw: updates.append(self.name) or real(self, *args, **kw))
        del calls[:]
        ha = a.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0).history
        replayed_updates, user_calls = updates.count("loss"), len(calls)
        hb = b.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0).history
        monkeypatch.undo()
        assert sorted(ha) == sorted(hb) and len(ha) == len(metrics) + 1 + user_metric
        for k in ha:
            np.testing.assert_allclose(ha[k], hb[k], rtol=1e-6, atol=1e-7, err_msg=k)
        ea, eb = a.evaluate(x, y, verbose=0, return_dict=True), b.evaluate(x, y, verbose=0, return_dict=True)
        for k in ea:
            np.testing.assert_allclose(ea[k], eb[k], rtol=1e-6, atol=1e-7, err_msg=k)
        assert len(_replayed(a)) == 2 and not _not_replayed(a)  # 3 full batches and 1 of 2 rows
        if user_metric:  # after the step, at each of 16 steps; the loss tracker too
            assert user_calls == 16 and replayed_updates == 16, (user_calls, replayed_updates)
            assert ha["rows"] == [50.0] * 4
        else:  # the loss tracker's Python ran in the first 3 steps of each batch size only
            assert replayed_updates == 6, replayed_updates
        histories.append(ha)
    for k in histories[0]:
        np.testing.assert_allclose(histories[0][k], histories[1][k], rtol=1e-6, atol=1e-7, err_msg=k)
