"""models/progress.py: what fit/evaluate/predict display, as Keras's: a ProgbarLogger passed as a
callback is the display (no second one beside it), and after
`lamina.utils.disable_interactive_logging()` nothing is drawn on the terminal, the progress
going to the "lamina" logger."""
import logging
import re

import numpy as np
import pytest

import lamina
from lamina import callbacks, layers
from keras_ref import keras_or_none

RNG = np.random.default_rng(5)
X = RNG.normal(size=(24, 4)).astype(np.float32)
Y = RNG.normal(size=(24, 2)).astype(np.float32)


@pytest.fixture(autouse=True)
def _interactive_logging():
    yield
    lamina.utils.enable_interactive_logging()


def _model(lib=lamina):
    m = lib.Sequential([lib.Input((4,)), lib.layers.Dense(2)])
    m.compile(optimizer="sgd", loss="mse")
    return m


def _run_all(m, verbose, cbs):
    """fit (2 epochs of 4 steps), evaluate and predict, each given `cbs()`."""
    m.fit(X, Y, batch_size=6, epochs=2, verbose=verbose, callbacks=cbs())
    m.evaluate(X, Y, batch_size=6, verbose=verbose, callbacks=cbs())
    m.predict(X, batch_size=6, verbose=verbose, callbacks=cbs())


def _shape(text):
    """The printed lines with the numbers that vary (timings, losses) replaced."""
    text = re.sub(r"\d+(ms|us|s)/step", "T/step", text)
    text = re.sub(r"loss: [-\d.e+]+", "loss: L", text)
    return re.sub(r" - \d+s - ", " - Ns - ", text).rstrip().splitlines()


@pytest.mark.parametrize("verbose", [1, 2])
def test_a_progbar_logger_is_the_only_display(capsys, verbose):
    _run_all(_model(), verbose, lambda: [callbacks.ProgbarLogger()])
    captured = capsys.readouterr()
    assert captured.err == ""          # lamina's own display (tqdm, on stderr) is not drawn
    out = captured.out
    assert out.count("Epoch 1/2") == 1 and out.count("Epoch 2/2") == 1
    if verbose == 2:
        lines = _shape(out)
        assert lines == ["Epoch 1/2", "4/4 - Ns - T/step - loss: L", "Epoch 2/2", "4/4 - Ns - T/step - loss: L",
                         "4/4 - Ns - T/step - loss: L", "4/4 - Ns - T/step"]
    else:   # Keras's bar: each pass ends on one final "4/4" frame
        assert len(re.findall(r"4/4\x1b\[0m \x1b\[32m━{20}", out)) == 4


def test_without_a_progbar_logger_lamina_displays_as_before(capsys):
    _run_all(_model(), 2, lambda: [callbacks.History()])
    assert _shape(capsys.readouterr().out) == ["Epoch 1/2", "4/4 - Ns - T/step - loss: L", "Epoch 2/2",
                                               "4/4 - Ns - T/step - loss: L", "4/4 - Ns - T/step - loss: L",
                                               "4/4 - Ns - T/step"]
    _run_all(_model(), 0, lambda: [callbacks.ProgbarLogger()])   # verbose=0 silences the logger too, as Keras's
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_same_lines_as_keras_with_a_progbar_logger(capsys):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference output")
    _run_all(_model(), 2, lambda: [callbacks.ProgbarLogger()])
    ours = _shape(capsys.readouterr().out)
    _run_all(_model(keras), 2, lambda: [keras.callbacks.ProgbarLogger()])
    assert ours == _shape(capsys.readouterr().out)


@pytest.mark.parametrize("verbose", [1, 2])
def test_disable_interactive_logging_sends_the_progress_to_the_logger(capsys, caplog, verbose):
    lamina.utils.disable_interactive_logging()
    with caplog.at_level(logging.INFO, logger="lamina"):
        _run_all(_model(), verbose, lambda: [])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""   # nothing drawn on the terminal
    messages = [r.getMessage() for r in caplog.records if r.name == "lamina"]
    assert "Epoch 1/2" in messages and "Epoch 2/2" in messages
    finals = [m for m in messages if re.search(r"4/4\D.*step", m)]
    assert len(finals) >= 4     # the end of each epoch, of evaluate and of predict
    assert any("loss:" in m for m in finals)
    lamina.utils.enable_interactive_logging()
    _run_all(_model(), 2, lambda: [])
    assert capsys.readouterr().out.count("Epoch") == 2   # back on stdout


def test_disable_interactive_logging_with_a_progbar_logger(capsys, caplog):
    lamina.utils.disable_interactive_logging()
    with caplog.at_level(logging.INFO, logger="lamina"):
        _run_all(_model(), 1, lambda: [callbacks.ProgbarLogger()])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    messages = [r.getMessage() for r in caplog.records if r.name == "lamina"]
    assert messages.count("Epoch 1/2") == 1   # one display: the logger's
