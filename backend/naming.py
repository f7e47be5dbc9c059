"""Automatic names, as Keras's `uniquify`: one global count per prefix, shared by layers
('dense', 'dense_1', ...), variables ('variable', 'variable_1', ...) and `get_uid`; reset by
`keras.utils.clear_session`."""
import threading

_name_counts = {}
_name_lock = threading.Lock()


def unique_name(base):
    """'dense', then 'dense_1', 'dense_2', ... like Keras."""
    with _name_lock:
        n = _name_counts.get(base, 0)
        _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def get_uid(prefix=""):
    """Keras's `keras.backend.get_uid`: 1, 2, 3, ... for successive calls with the same prefix,
    counted with the automatic names (after one layer named 'dense', get_uid('dense') is 2)."""
    with _name_lock:
        _name_counts[prefix] = _name_counts.get(prefix, 0) + 1
        return _name_counts[prefix]


def reset_names():
    """Restarts the automatic names, as Keras's clear_session."""
    with _name_lock:
        _name_counts.clear()
