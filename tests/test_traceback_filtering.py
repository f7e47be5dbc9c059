"""Traceback filtering (keras.config.enable_traceback_filtering): errors raised through a layer
call or fit / evaluate / predict keep the user's frames and drop lamina's, unless disabled."""
import os
import traceback

import numpy as np
import pytest

import lamina
from lamina import layers

PACKAGE = os.path.dirname(os.path.abspath(lamina.__file__)) + os.sep
USER = tuple(PACKAGE + d + os.sep for d in ("tests", "tutorials", "benchmarks"))


@pytest.fixture
def restore():
    yield
    lamina.config.enable_traceback_filtering()


class Broken(layers.Layer):
    def call(self, x):
        raise KeyError("from the user's layer")


def _files(e):
    return [f.filename for f in traceback.extract_tb(e.__traceback__)]


def _lamina_frames(files):
    return [f for f in files if f.startswith(PACKAGE) and not f.startswith(USER)
            and not f.endswith("_traceback.py")]


def _only_the_reraise(e):
    """Lamina frames left: at most the one line that re-raises the filtered error."""
    tb = traceback.extract_tb(e.__traceback__)
    left = [f for f in tb if f.filename in _lamina_frames([f.filename])]
    return all("filter_traceback_of(e)" in (f.line or "") for f in left) and len(left) <= 1


def _fit_error():
    model = lamina.Sequential([layers.Dense(3), Broken()])
    model.compile(loss="mse")
    with pytest.raises(KeyError, match="from the user's layer") as info:
        model.fit(np.ones((4, 2), np.float32), np.ones((4, 3), np.float32), verbose=0)
    return info.value


def test_enabled_by_default_user_frames_only(restore):
    assert lamina.config.is_traceback_filtering_enabled()
    e = _fit_error()
    files = _files(e)
    assert files[-1] == __file__   # the line that raised: Broken.call
    assert _only_the_reraise(e)


def test_disabled_keeps_every_frame(restore):
    lamina.config.disable_traceback_filtering()
    assert not lamina.config.is_traceback_filtering_enabled()
    files = _files(_fit_error())
    assert any(f.endswith(os.path.join("models", "trainer.py")) for f in _lamina_frames(files))
    assert any(f.endswith(os.path.join("layers", "layer.py")) for f in _lamina_frames(files))


def test_eager_and_symbolic_calls_and_an_error_of_lamina_itself(restore):
    with pytest.raises(KeyError) as info:
        Broken()(np.ones((2, 2), np.float32))
    assert _only_the_reraise(info.value) and _files(info.value)[-1] == __file__
    with pytest.raises(KeyError) as info:
        Broken()(lamina.Input((2,)))
    assert _only_the_reraise(info.value) and _files(info.value)[-1] == __file__
    # an error lamina raises itself: message unchanged, the user's call then the re-raise shown
    with pytest.raises(ValueError, match="expected axis -1 of the input shape to have value 3") as info:
        d = layers.Dense(2)
        d(np.ones((1, 3), np.float32))
        d(np.ones((1, 4), np.float32))
    assert _only_the_reraise(info.value) and _files(info.value)[-2] == __file__


def test_chained_cause_is_kept(restore):
    class Wraps(layers.Layer):
        def call(self, x):
            try:
                {}["k"]
            except KeyError as err:
                raise RuntimeError("wrapped") from err

    with pytest.raises(RuntimeError) as info:
        Wraps()(np.ones((1, 1), np.float32))
    assert isinstance(info.value.__cause__, KeyError)
