"""callbacks.py: BackupAndRestore, ProgbarLogger, SwapEMAWeights, RemoteMonitor and
TerminateOnNaN(raise_error) in fit, as Keras's."""
import http.server
import json
import logging
import os
import re
import socket
import threading
import urllib.parse

import h5py
import numpy as np
import pytest

import lamina
from lamina import callbacks, layers, optimizers

RNG = np.random.default_rng(7)
X = RNG.normal(size=(24, 4)).astype(np.float32)
Y = (X @ RNG.normal(size=(4, 2))).astype(np.float32)
INIT = None


def _model(optimizer=None):
    """The same Dense model (same initial weights) each time, compiled with Adam by default."""
    global INIT
    m = lamina.Sequential([lamina.Input((4,)), layers.Dense(3, activation="tanh"), layers.Dense(2)])
    if INIT is None:
        INIT = m.get_weights()
    m.set_weights(INIT)
    m.compile(optimizer or optimizers.Adam(0.01), "mse")
    return m


class Interrupt(callbacks.Callback):
    """Raises in epoch `epoch` after `batch` batches, as a crash would."""

    def __init__(self, epoch, batch=1):
        super().__init__()
        self.epoch, self.batch = epoch, batch

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise KeyboardInterrupt("simulated interruption")


class Probe(callbacks.Callback):
    """Records the weights, the optimizer's state and the epoch to resume from at on_train_begin."""

    def on_train_begin(self, logs=None):
        self.weights = self.model.get_weights()
        store = {}
        self.model.optimizer.save_own_variables(store)
        self.optimizer_state = [np.asarray(store[str(i)]) for i in range(len(store))]
        self.initial_epoch = getattr(self.model, "_initial_epoch", None)


def _optimizer_state(model):
    store = {}
    model.optimizer.save_own_variables(store)
    return [np.asarray(store[str(i)]) for i in range(len(store))]


def _fit(model, epochs, cbs=(), **kwargs):
    return model.fit(X, Y, batch_size=6, epochs=epochs, shuffle=False, verbose=0, callbacks=list(cbs), **kwargs)


def _interrupted(backup_dir, **kwargs):
    """A fit of 4 epochs that crashes in the third, leaving the backup of the end of the second."""
    with pytest.raises(KeyboardInterrupt):
        _fit(_model(), 4, [callbacks.BackupAndRestore(backup_dir, **kwargs), Interrupt(epoch=2)])


def test_backup_and_restore_brings_back_weights_optimizer_and_epoch(tmp_path):
    backup = tmp_path / "backup"
    reference = _model()
    _fit(reference, 2)
    after_two = reference.get_weights(), _optimizer_state(reference)
    _fit(reference, 4, initial_epoch=2)
    _interrupted(backup)
    assert sorted(os.listdir(backup)) == ["latest.weights.h5", "training_metadata.json"]
    assert json.loads((backup / "training_metadata.json").read_text()) == {"epoch": 2, "batch": 0}
    with h5py.File(backup / "latest.weights.h5") as h5:   # Keras's layout of a .weights.h5, optimizer included
        assert "optimizer/vars" in h5 and "layers/dense/vars" in h5
    # a new process: a fresh model, restored at on_train_begin
    resumed, probe = _model(), Probe()
    _fit(resumed, 4, [callbacks.BackupAndRestore(backup), probe], initial_epoch=2)
    for a, b in zip(probe.weights + probe.optimizer_state, after_two[0] + after_two[1]):
        np.testing.assert_array_equal(a, b)
    assert probe.initial_epoch == 2
    # the resumed training ends where the uninterrupted one did, and the backup is removed
    for a, b in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not backup.exists()


def test_backup_and_restore_resumes_fit_without_initial_epoch(tmp_path):
    reference = _model()
    _fit(reference, 4)
    _interrupted(tmp_path / "backup")
    resumed = _model()
    _fit(resumed, 4, [callbacks.BackupAndRestore(tmp_path / "backup")])
    for a, b in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_backup_every_n_batches_and_double_checkpoint(tmp_path):
    backup = tmp_path / "b"
    _interrupted(backup, save_freq=3, double_checkpoint=True, delete_checkpoint=False)
    # 4 batches per epoch: saved after batches 3, 6 (epoch 1, batch 1) and 9 (epoch 2, batch 0)
    assert json.loads((backup / "training_metadata.json").read_text()) == {"epoch": 2, "batch": 0}
    assert json.loads((backup / "training_metadata.json.bkp").read_text()) == {"epoch": 1, "batch": 1}
    # the latest file damaged: the previous one is used
    (backup / "latest.weights.h5").write_bytes(b"not hdf5")
    probe = Probe()
    m = _model()
    _fit(m, 1, [callbacks.BackupAndRestore(backup, delete_checkpoint=False), probe])
    assert probe.initial_epoch == 1
    assert h5py.is_hdf5(backup / "latest.weights.h5") and backup.exists()
    assert not [f for f in os.listdir(backup) if f.endswith(".tmp")]   # written atomically, nothing left over


def test_backup_and_restore_errors(tmp_path):
    with pytest.raises(ValueError, match="backup_dir"):
        callbacks.BackupAndRestore("")
    with pytest.raises(ValueError, match="save_freq"):
        callbacks.BackupAndRestore(tmp_path, save_freq="batch")
    (tmp_path / "latest.weights.h5").write_bytes(b"garbage")
    with pytest.raises(OSError, match="could not restore this backup"):
        _fit(_model(), 1, [callbacks.BackupAndRestore(tmp_path)])
    with h5py.File(tmp_path / "latest.weights.h5", "w") as h5:   # HDF5, but not this model's weights
        h5.create_group("layers/conv2d/vars")
    with pytest.raises(ValueError, match="could not restore this backup"):
        _fit(_model(), 1, [callbacks.BackupAndRestore(tmp_path)])
    (tmp_path / "latest.weights.h5").unlink()
    (tmp_path / "training_metadata.json").write_text("{}")
    with pytest.raises(ValueError, match="training metadata"):
        _fit(_model(), 1, [callbacks.BackupAndRestore(tmp_path)])
    unbuilt = lamina.Sequential([layers.Dense(2)])
    unbuilt.compile("sgd", "mse")
    with pytest.raises(ValueError, match="must be built"):
        unbuilt.fit(X, Y, verbose=0, callbacks=[callbacks.BackupAndRestore(tmp_path / "x")])


def _normalize(text):
    """Progress text without its timings (they differ from run to run), nor the spaces that pad a
    line over the previous one and the backspaces that erase it, whose counts depend on those
    timings."""
    text = re.sub("\x08+", "\x08", text)
    text = re.sub(r"\d+(ms|us|s)/step", "T/step", text)
    text = re.sub(r" \d+s", " Ts", text.replace("\x1b[1m", "").replace("\x1b[0m", ""))
    return re.sub(r" +(?=[\r\n])", "", text)


def test_progbar_prints_as_keras(capsys):
    from keras_ref import keras_or_none
    k = keras_or_none()
    if k is None:
        pytest.skip("needs keras (tested with KERAS_BACKEND=jax)")
    outputs = []
    for bar_cls in (lamina.utils.Progbar, k.utils.Progbar):
        for verbose in (1, 2):
            bar = bar_cls(target=3, verbose=verbose, stateful_metrics=["acc"], interval=0.0)
            for step in range(1, 4):
                bar.update(step, [("loss", float(step)), ("acc", 0.5 * step)])
            bar.add(0, [("tiny", 1e-5)])
        outputs.append(_normalize(capsys.readouterr().out))
    assert outputs[0] == outputs[1]
    # at the last step the values are shown as given; before, the stateless ones are averaged
    assert "3/3 - Ts - T/step - loss: 3.0000 - acc: 1.5000 - tiny: 1.0000e-05\n" in outputs[0]
    assert "2/3 \x1b[32m━━━━━━━━━━━━━\x1b[37m━━━━━━━ Ts T/step - loss: 1.5000 - acc: 1.0000" in outputs[0]


def test_progbar_logger_in_fit_and_predict(capsys, caplog):
    m = _model()
    m.fit(X, Y, batch_size=6, epochs=2, verbose=2, callbacks=[callbacks.ProgbarLogger()])
    out = capsys.readouterr().out
    assert out.count("Epoch 1/2") == 1      # the logger's display replaces lamina's own, as in Keras's fit
    assert len(re.findall(r"^4/4 - \d+s - \d+\w+/step - loss: \d\.\d{4}$", out, re.M)) == 2
    line = re.compile(r"^4/4 - \d+s - \d+\w+/step$", re.M)
    m.predict(X, batch_size=6, verbose=2, callbacks=[callbacks.ProgbarLogger()])
    assert len(line.findall(capsys.readouterr().out)) == 1
    lamina.utils.disable_interactive_logging()
    try:
        with caplog.at_level(logging.INFO, logger="lamina"):
            m.predict(X, batch_size=6, verbose=2, callbacks=[callbacks.ProgbarLogger()])
        assert capsys.readouterr().out == ""   # the logger's line went to the "lamina" logger
        assert any(line.search(r.getMessage()) for r in caplog.records)
    finally:
        lamina.utils.enable_interactive_logging()
    with pytest.raises(ValueError, match="Only one of"):
        lamina.utils.Progbar(3, stateful_metrics=["a"], stateless_metrics=["b"])
    with pytest.raises(ValueError, match="target"):
        lamina.utils.Progbar(-1)


class SeeWeights(callbacks.Callback):
    """Records the model's weights and the optimizer's averages as evaluation starts and ends."""

    def _state(self):
        opt = self.model.optimizer
        return self.model.get_weights(), [a.numpy() for a in opt._averages]

    def on_test_begin(self, logs=None):
        self.during, self.held = self._state()

    def on_test_end(self, logs=None):
        self.after, self.averages = self._state()


def test_swap_ema_weights_for_evaluation():
    m = _model(optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5))
    see = SeeWeights()
    _fit(m, 1, [callbacks.SwapEMAWeights(), see], validation_data=(X, Y))
    assert not np.allclose(see.averages[0], see.after[0])
    for a, b in zip(see.during, see.averages):   # evaluated with the moving averages
        np.testing.assert_array_equal(a, b)
    for a, b in zip(see.after, see.held):        # and the trained weights are back after
        np.testing.assert_array_equal(a, b)
    # swap_on_epoch: callbacks after it see the averages at each epoch's end; training is unchanged
    runs = []
    for swap in ([], [callbacks.SwapEMAWeights(swap_on_epoch=True)]):
        m2, at_end = _model(optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5)), []
        end = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs, m2=m2, at_end=at_end: at_end.append(
            (m2.get_weights(), [a.numpy() for a in m2.optimizer._averages])))
        _fit(m2, 2, swap + [end])
        runs.append((at_end, m2.get_weights()))
    (plain, plain_final), (swapped, swapped_final) = runs
    for a, b in zip(swapped[0][0], plain[0][1]):   # the weights seen = the averages of the plain run
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(plain[0][0][0], plain[0][1][0])
    for a, b in zip(swapped_final, plain_final):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="use_ema=True"):
        _fit(_model(), 1, [callbacks.SwapEMAWeights()], validation_data=(X, Y))


class _Recorder(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Recorder.received.append((self.path, self.headers["Content-Type"], self.headers.get("X-Run"), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_remote_monitor_posts_epoch_logs():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        _Recorder.received.clear()
        _fit(_model(), 2, [callbacks.RemoteMonitor(root=root, headers={"X-Run": "7"})])
        _fit(_model(), 1, [callbacks.RemoteMonitor(root=root, path="/json", send_as_json=True)])
    finally:
        server.shutdown()
        server.server_close()
    (p0, t0, h0, b0), (_, _, _, b1), (p2, t2, _, b2) = _Recorder.received
    assert p0 == "/publish/epoch/end/" and t0 == "application/x-www-form-urlencoded" and h0 == "7"
    sent = json.loads(urllib.parse.parse_qs(b0.decode())["data"][0])
    assert sent["epoch"] == 0 and isinstance(sent["loss"], float)
    assert json.loads(urllib.parse.parse_qs(b1.decode())["data"][0])["epoch"] == 1
    assert p2 == "/json" and t2 == "application/json" and set(json.loads(b2)) == {"epoch", "loss"}
    # nobody listening: a warning, training goes on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.warns(UserWarning, match="Could not reach RemoteMonitor"):
        _fit(_model(), 1, [callbacks.RemoteMonitor(root=f"http://127.0.0.1:{port}")])


def test_terminate_on_nan_can_raise():
    y = Y.copy()
    y[0, 0] = np.nan
    m = _model()
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 0"):
        m.fit(X, y, batch_size=6, shuffle=False, verbose=0, callbacks=[callbacks.TerminateOnNaN(raise_error=True)])
    history = _model().fit(X, y, batch_size=6, epochs=3, verbose=0, callbacks=[callbacks.TerminateOnNaN()])
    assert len(history.epoch) == 1
