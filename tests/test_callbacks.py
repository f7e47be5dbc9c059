import os

import numpy as np
import pytest

import lamina
from lamina import callbacks, layers


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
