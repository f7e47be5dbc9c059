"""The strategy scope and the pieces strategies and pipelines share.

A model created under `with strategy.scope():` keeps the strategy; its `fit` then asks the
strategy for each training step (`strategy.train_step(model, data)`), for the data each process
reads (`distribute_data`), and whether this process prints and writes files (`is_chief`).
"""
import threading

from ..backend.tensor import Tensor
from ..layers.layer import flatten, map_structure


class _Scope(threading.local):
    def __init__(self):
        self.stack = []


_scope = _Scope()
_default = {"strategy": None}   # the process-wide strategy (lamina.distribution.set_distribution)


def get_strategy():
    """The strategy of the innermost `strategy.scope()`, else the process-wide one set with
    `lamina.distribution.set_distribution`, or None."""
    return _scope.stack[-1] if _scope.stack else _default["strategy"]


def set_default_strategy(strategy):
    _default["strategy"] = strategy


def has_strategy():
    return get_strategy() is not None


class Strategy:
    """Base class: `scope()`, and the hooks `fit` calls."""

    is_chief = True          # this process prints progress and writes checkpoints
    num_replicas_in_sync = 1

    def scope(self):
        return _StrategyScope(self)

    # hooks called by Trainer.fit
    def distribute_data(self, data):
        return data

    def on_fit_begin(self, model):
        pass

    def on_fit_end(self, model):
        pass

    def train_step(self, model, data):
        raise NotImplementedError


class _StrategyScope:
    def __init__(self, strategy):
        self.strategy = strategy

    def __enter__(self):
        _scope.stack.append(self.strategy)
        return self.strategy

    def __exit__(self, *exc):
        _scope.stack.pop()
        return False


def batch_size_of(x):
    first = next((t for t in flatten(x) if t is not None), None)
    if first is None or not getattr(first, "shape", None):
        raise ValueError("a split step needs batched inputs (arrays with a batch dimension)")
    return first.shape[0]


def even_slices(n, parts):
    """[(start, stop)] splitting n rows into at most `parts` non-empty runs whose sizes differ by
    at most one (the first ones take the remainder), as numpy.array_split."""
    parts = max(1, min(parts, n))
    base, extra = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def slice_rows(structure, start, stop):
    """Rows start:stop of every tensor in a nested structure (None stays None)."""
    return map_structure(lambda t: t[start:stop] if isinstance(t, Tensor) else t, structure)
