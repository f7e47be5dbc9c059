"""Traceback filtering, as Keras's (`keras.config.enable_traceback_filtering`): an error raised
while a layer is called, or inside fit / evaluate / predict, reaches the user with only the
frames of code outside lamina (their script, their layers' `call`), so the line that caused it is
the last one shown; lamina's own frames are dropped. On by default;
`lamina.config.disable_traceback_filtering()` keeps every frame (for debugging lamina itself).
The exception, its message and its chained causes are unchanged."""
import functools
import os
import traceback
import types

_ROOT = os.path.dirname(os.path.abspath(__file__)) + os.sep
# folders inside the package that hold user-level code, whose frames are kept
_USER_DIRS = tuple(_ROOT + d + os.sep for d in ("tests", "tutorials", "benchmarks"))
_state = {"enabled": True}


def enable_traceback_filtering():
    """Errors from lamina show only the frames of code outside lamina (the default)."""
    _state["enabled"] = True


def disable_traceback_filtering():
    """Errors from lamina show every frame, lamina's own included."""
    _state["enabled"] = False


def is_traceback_filtering_enabled():
    return _state["enabled"]


def _internal(filename):
    return filename.startswith(_ROOT) and not filename.startswith(_USER_DIRS)


def filter_traceback_of(e):
    """`e` with the frames of lamina's files taken out of its traceback, when filtering is
    enabled; `e` unchanged otherwise."""
    if not _state["enabled"] or e.__traceback__ is None:
        return e
    frames = list(traceback.walk_tb(e.__traceback__))
    tb = None
    for frame, lineno in reversed(frames):
        if not _internal(frame.f_code.co_filename):
            tb = types.TracebackType(tb, frame, frame.f_lasti, lineno)
    return e.with_traceback(tb)   # None when every frame was lamina's: the re-raise's line is shown


def filter_traceback(fn):
    """Decorator: errors raised by `fn` leave it with their lamina frames filtered out."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise filter_traceback_of(e)   # the same exception: its cause and context stay
    return wrapper
