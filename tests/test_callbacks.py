import os

import numpy as np
import pytest

import lamina
from lamina import callbacks, layers
from keras_ref import keras_or_none


def _model(lr=0.1):
    m = lamina.Sequential([lamina.Input(shape=(3,)), layers.Dense(1)])
    m.compile(optimizer=lamina.optimizers.SGD(lr), loss="mse")
    return m


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    return x, x @ np.array([[1.0], [-2.0], [0.5]], np.float32)


def test_history_and_lambda_callback():
    x, y = _data()
    seen = []
    cb = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append((e, round(logs["loss"], 6))))
    h = _model().fit(x, y, epochs=3, verbose=0, callbacks=[cb])
    assert [e for e, _ in seen] == [0, 1, 2]
    assert [l for _, l in seen] == [round(v, 6) for v in h.history["loss"]]
    with pytest.raises(ValueError, match="unknown hook"):
        callbacks.LambdaCallback(on_everything=print)


def test_early_stopping_restores_best_weights():
    x, y = _data()
    m = _model(lr=0.05)

    class Sabotage(callbacks.Callback):  # makes val_loss worse after epoch 2
        def on_epoch_end(self, epoch, logs=None):
            if epoch >= 2:
                w = self.model.get_weights()
                self.model.set_weights([v + 5.0 for v in w])
    best = {}

    class Record(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            best.setdefault("w", []).append((logs["val_loss"], self.model.get_weights()))
    es = callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    h = m.fit(x, y, epochs=20, verbose=0, validation_data=(x, y), callbacks=[Record(), es, Sabotage()])
    assert len(h.history["loss"]) < 20 and es.stopped_epoch > 0
    # Record and EarlyStopping see the weights before Sabotage changes them
    val, w = min(best["w"], key=lambda t: t[0])
    for a, b in zip(m.get_weights(), w):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_terminate_on_nan():
    x, y = _data()
    y[0, 0] = np.nan
    h = _model().fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[callbacks.TerminateOnNaN()])
    assert len(h.history["loss"]) == 1 and np.isnan(h.history["loss"][0])


def test_learning_rate_scheduler_and_reduce_on_plateau():
    x, y = _data()
    m = _model()
    sched = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    h = m.fit(x, y, epochs=3, verbose=0, callbacks=[sched])
    assert m.optimizer.learning_rate == pytest.approx(0.1 / 3)
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    m2 = _model(lr=0.0)  # no progress -> plateau
    rl = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_lr=0.0)
    m2.optimizer.learning_rate = 1e-9
    m2.fit(x, y, epochs=4, verbose=0, callbacks=[rl])
    assert m2.optimizer.learning_rate < 1e-9


def test_csv_logger(tmp_path):
    x, y = _data()
    path = tmp_path / "log.csv"
    _model().fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.CSVLogger(path)])
    lines = path.read_text().strip().splitlines()
    assert lines[0] == "epoch,loss" and len(lines) == 3
    _model().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.CSVLogger(path, append=True)])
    assert len(path.read_text().strip().splitlines()) == 4


def test_every_hook_receives_a_dict():
    x, y = _data()
    seen = {}

    class Spy(callbacks.Callback):
        pass
    hooks = [h for h in dir(callbacks.Callback) if h.startswith("on_")]

    def make(name):
        def hook(self, *args):
            assert len(args) == (1 if name in ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
                                               "on_predict_begin", "on_predict_end") else 2)
            logs = args[-1]
            assert isinstance(logs, dict), f"{name} received {logs!r}"
            assert all(isinstance(v, float) for k, v in logs.items() if k != "outputs"), (name, logs)
            seen.setdefault(name, []).append(dict(logs))
        return hook
    for h in hooks:
        setattr(Spy, h, make(h))
    m = _model()
    m.fit(x, y, epochs=2, batch_size=32, verbose=0, validation_data=(x, y), callbacks=[Spy()])
    m.evaluate(x, y, verbose=0, callbacks=[Spy()])
    m.predict(x, verbose=0, callbacks=[Spy()])
    assert set(seen) >= {"on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_train_batch_end",
                         "on_epoch_end", "on_test_begin", "on_test_batch_end", "on_test_end", "on_train_end",
                         "on_predict_begin", "on_predict_batch_end", "on_predict_end"}
    assert seen["on_epoch_begin"] == [{}, {}]
    assert set(seen["on_epoch_end"][0]) == {"loss", "val_loss"}
    assert set(seen["on_train_batch_end"][0]) == {"loss"} and "outputs" in seen["on_predict_batch_end"][0]


def test_learning_rate_in_the_epoch_logs():
    x, y = _data()
    m = _model(lr=0.05)
    rl = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)
    h = m.fit(x, y, epochs=3, verbose=0, callbacks=[rl])
    assert h.history["learning_rate"] == pytest.approx([0.05, 0.05, 0.025])
    sched = lamina.optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    m = lamina.Sequential([lamina.Input(shape=(3,)), layers.Dense(1)])
    m.compile(optimizer=lamina.optimizers.SGD(sched), loss="mse")
    rl = callbacks.ReduceLROnPlateau(monitor="loss", patience=100)
    h = m.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[rl])  # 2 steps per epoch
    assert h.history["learning_rate"] == pytest.approx([0.05, 0.025])
    assert list(h.history) == ["loss", "learning_rate"]
    keras = keras_or_none()
    if keras is None:
        return
    k = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1)])
    k.compile(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5)), loss="mse")
    kh = k.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[keras.callbacks.ReduceLROnPlateau(
        monitor="loss", patience=100)])
    assert list(kh.history) == list(h.history)
    assert kh.history["learning_rate"] == pytest.approx(h.history["learning_rate"])


def test_vector_valued_metrics_reach_history_as_numpy_arrays():
    import numpy as np
    import lamina
    from lamina import layers
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    model = lamina.Sequential([lamina.Input((4,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=[lamina.metrics.Precision(thresholds=[0.3, 0.7])])
    hist = model.fit(x, y, epochs=2, verbose=0)
    prec = hist.history["precision"][-1]
    assert isinstance(prec, np.ndarray) and prec.shape == (2,)
    assert isinstance(hist.history["loss"][-1], float)


def test_callback_list_as_keras_builds_it_for_a_custom_loop():
    seen = []

    class Spy(lamina.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, dict(logs), self.params.get("epochs"), self.model is model))

    model = lamina.Sequential([lamina.Input((2,)), lamina.layers.Dense(1)])
    cbs = lamina.callbacks.CallbackList([Spy()], add_history=True, add_progbar=False, model=model, epochs=2,
                                        verbose=0)
    assert [type(c).__name__ for c in cbs.callbacks] == ["Spy", "History"]
    assert model.history is cbs.callbacks[1]
    cbs.on_train_begin()
    for epoch in range(2):
        cbs.on_epoch_begin(epoch)
        cbs.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1)})
    cbs.on_train_end()
    assert seen == [(0, {"loss": 1.0}, 2, True), (1, {"loss": 0.5}, 2, True)]
    assert model.history.history == {"loss": [1.0, 0.5]}
    # a History already in the list is not doubled; add_progbar appends a ProgbarLogger; nested lists flatten
    h = lamina.callbacks.History()
    again = lamina.callbacks.CallbackList([[h]], add_history=True, add_progbar=True)
    assert again.callbacks[0] is h and isinstance(again.callbacks[1], lamina.callbacks.ProgbarLogger)
    with pytest.raises(TypeError, match="callbacks must be Callback instances, received int"):
        lamina.callbacks.CallbackList([3])
