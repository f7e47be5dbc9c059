"""Feeding data to fit/evaluate/predict, as Keras's data adapters. Accepted: numpy arrays (or
lists/dicts of them), split into batches; a `PyDataset` (`Sequence`); a Python generator or any
other iterable of batches (an image dataset, a torch DataLoader). Every adapter yields batches in
Keras's form, `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`, which the train/test/predict
steps take apart with `unpack_x_y_sample_weight`."""
import collections
import concurrent.futures
import itertools

import numpy as np

from ..backend.tensor import Tensor
from ..layers.layer import flatten, map_structure


def unpack_x_y_sample_weight(data):
    """`(x, y, sample_weight)` from a batch `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`,
    with None for what is missing (Keras's `keras.utils.unpack_x_y_sample_weight`)."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data
    raise ValueError(f"Data is expected to be in format `x`, `(x,)`, `(x, y)`, or `(x, y, sample_weight)`; "
                     f"received a tuple of {len(data)} elements")


def pack_x_y_sample_weight(x, y=None, sample_weight=None):
    """The batch form of `x`, `y`, `sample_weight` (Keras's `keras.utils.pack_x_y_sample_weight`):
    `x` alone (`(x,)` when x is a list or tuple), `(x, y)` or `(x, y, sample_weight)`."""
    if y is None:
        return (x,) if isinstance(x, (list, tuple)) else x
    if sample_weight is None:
        return x, y
    return x, y, sample_weight


# ---- PyDataset -----------------------------------------------------------------------------------

class PyDataset:
    """Base class of a dataset written in Python, as Keras's `keras.utils.PyDataset`: implement
    `__len__` (the number of batches) and `__getitem__(index)` (one whole batch: `x`, `(x, y)` or
    `(x, y, sample_weight)`); `on_epoch_begin` / `on_epoch_end` run around each epoch.

        class Batches(lamina.utils.PyDataset):
            def __init__(self, x, y, batch_size, **kwargs):
                super().__init__(**kwargs)
                self.x, self.y, self.batch_size = x, y, batch_size

            def __len__(self):
                return math.ceil(len(self.x) / self.batch_size)

            def __getitem__(self, idx):
                s = slice(idx * self.batch_size, (idx + 1) * self.batch_size)
                return self.x[s], self.y[s]

    `workers=N` loads up to `max_queue_size` batches ahead on N threads of this process (useful
    when `__getitem__` reads files); `use_multiprocessing=True` is not supported: lamina does not
    fork worker processes."""

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
            raise ValueError(f"PyDataset: workers must be an int >= 0, received workers={workers!r}")
        if isinstance(max_queue_size, bool) or not isinstance(max_queue_size, (int, np.integer)) or \
                max_queue_size < 1:
            raise ValueError(f"PyDataset: max_queue_size must be an int >= 1, received {max_queue_size!r}")
        if use_multiprocessing:
            raise ValueError("PyDataset: use_multiprocessing=True is not supported; lamina loads batches in this "
                             "process. Pass workers=N (and use_multiprocessing=False) to load them on N threads.")
        self.workers, self.use_multiprocessing, self.max_queue_size = int(workers), False, int(max_queue_size)

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__(index), returning one batch")

    @property
    def num_batches(self):
        """Batches per epoch (`len(self)`), or None for an endless dataset."""
        return len(self) if hasattr(self, "__len__") else None

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        pass

    def __iter__(self):
        n = self.num_batches
        for i in range(n) if n is not None else itertools.count():
            yield self[i]


Sequence = PyDataset  # Keras 2's name, the same class in Keras 3


# ---- adapters --------------------------------------------------------------------------------------

def _as_array(a):
    if isinstance(a, Tensor):
        return a.numpy()
    return np.asarray(a)


def _as_arrays(x):
    """A structure of arrays; a list (or tuple) of strings is one array of strings (the data of a
    string input), not a structure of one-string inputs. String arrays stay strings: they are
    sliced into batches unchanged."""
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (str, bytes)) for v in flatten(x)):
        return np.asarray(x)
    return map_structure(_as_array, x)


def _is_pandas(x):
    """A pandas DataFrame or Series (taken as its numpy array, as Keras does), without importing pandas."""
    return type(x).__module__.split(".")[0] == "pandas" and hasattr(x, "to_numpy")


def is_array_like(x):
    return isinstance(x, (np.ndarray, Tensor, list, tuple, dict)) or np.isscalar(x) or _is_pandas(x)


def check_cardinality(x, y, sample_weight):
    sizes = {}
    for name, s in (("x", x), ("y", y), ("sample_weight", sample_weight)):
        if s is None:
            continue
        ls = [a.shape[0] if a.ndim else 0 for a in flatten(s)]
        if ls:
            sizes[name] = ls
    all_sizes = {n for ls in sizes.values() for n in ls}
    if len(all_sizes) > 1:
        parts = ", ".join(f"{k} sizes: {', '.join(map(str, v))}" for k, v in sizes.items())
        raise ValueError(f"Data cardinality is ambiguous: {parts}. Make sure all arrays contain the same number "
                         "of samples.")
    return all_sizes.pop() if all_sizes else 0


def class_weight_to_sample_weight(class_weight, y, sample_weight=None):
    """Per-sample weights from `class_weight` {class: weight} and a batch of targets (class ids,
    or one-hot rows), times `sample_weight` when there is one."""
    if y is None:
        raise ValueError("class_weight needs targets: the data gives no y")
    if isinstance(y, (list, tuple, dict)):
        raise ValueError("class_weight is only supported for models with a single output")
    y = _as_array(y)
    if y.ndim > 1 and y.shape[-1] > 1:
        labels = y.argmax(-1)
    else:
        labels = np.round(y.reshape(len(y), -1)[:, 0]).astype(np.int64)
    w = np.array([class_weight.get(int(c), 1.0) for c in labels], np.float32)
    return w if sample_weight is None else _as_array(sample_weight).astype(np.float32) * w


class DataAdapter:
    """One epoch of batches per iteration; `steps` is the number of batches per epoch (None when
    unknown). `on_epoch_begin` / `on_epoch_end` run around each epoch."""

    steps = None
    class_weight = None

    def batch_nbytes(self):
        """Bytes of one batch's arrays, or None when not known before reading it."""
        return None

    def runs_user_code(self):
        """Whether making a batch runs the user's code (a PyDataset's __getitem__, a generator),
        which may draw random numbers: fit then makes batches on its own thread, so that a seeded
        run draws in one order (keras.utils.set_random_seed reproduces it), unless the PyDataset
        asked for `workers` threads of its own."""
        return False

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        pass

    def _finish(self, batch):
        """A batch in Keras's form, with class weights folded into its sample weights."""
        if isinstance(batch, list):
            batch = tuple(batch)
        if self.class_weight is not None:
            x, y, sw = unpack_x_y_sample_weight(batch)
            batch = (x, y, class_weight_to_sample_weight(self.class_weight, y, sw))
        return batch


def _shuffle_rng(seed):
    """The generator that shuffles fit's batches: numpy's global one unless a seed is given, as
    Keras's, so that keras.utils.set_random_seed makes fit repeatable."""
    return np.random if seed is None else np.random.default_rng(seed)


class ArrayData(DataAdapter):
    """Arrays split into batches, optionally shuffled each epoch."""

    def __init__(self, x, y=None, sample_weight=None, batch_size=32, shuffle=False, seed=None, class_weight=None):
        self.x = _as_arrays(x)
        self.y = map_structure(_as_array, y) if y is not None else None
        self.sw = map_structure(_as_array, sample_weight) if sample_weight is not None else None
        self.n = check_cardinality(self.x, self.y, self.sw)
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size <= 0):
            raise ValueError(f"batch_size must be a positive integer, received {batch_size!r}")
        self.batch_size = int(batch_size or 32)
        self.shuffle = shuffle
        self.rng = _shuffle_rng(seed)
        self.class_weight = class_weight

    @property
    def steps(self):
        return (self.n + self.batch_size - 1) // self.batch_size

    def batch_nbytes(self):
        leaves = [a for s in (self.x, self.y, self.sw) if s is not None for a in flatten(s)]
        return sum(a.nbytes // max(len(a), 1) for a in leaves if hasattr(a, "nbytes")) * min(self.batch_size, self.n)

    def split(self, fraction):
        """Keras's validation_split: the last `fraction` of the samples, taken before shuffling."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"validation_split must be in (0, 1), received {fraction}")
        k = int(self.n * (1.0 - fraction))
        if k == 0 or k == self.n:
            raise ValueError(f"validation_split={fraction} leaves no training or no validation samples out of {self.n}")
        take = lambda s, a, b: map_structure(lambda arr: arr[a:b], s) if s is not None else None  # noqa: E731
        val = ArrayData(take(self.x, k, self.n), take(self.y, k, self.n), take(self.sw, k, self.n), self.batch_size)
        self.x, self.y, self.sw = take(self.x, 0, k), take(self.y, 0, k), take(self.sw, 0, k)
        self.n = k
        return val

    def __iter__(self):
        idx = self.rng.permutation(self.n) if self.shuffle else None
        for i in range(0, self.n, self.batch_size):
            if idx is not None:
                sel = idx[i:i + self.batch_size]
                pick = lambda a: a[sel]  # noqa: E731
            else:
                pick = lambda a, i=i: a[i:i + self.batch_size]  # noqa: E731
            yield self._finish(pack_x_y_sample_weight(
                map_structure(pick, self.x),
                map_structure(pick, self.y) if self.y is not None else None,
                map_structure(pick, self.sw) if self.sw is not None else None))


class PyDatasetData(DataAdapter):
    """The batches of a PyDataset, in shuffled order when `shuffle` (and the length is known)."""

    def __init__(self, dataset, shuffle=False, class_weight=None, seed=None):
        self.dataset, self.shuffle, self.class_weight = dataset, shuffle, class_weight
        self.steps = dataset.num_batches
        self.rng = _shuffle_rng(seed)

    def on_epoch_begin(self):
        self.dataset.on_epoch_begin()

    def on_epoch_end(self):
        self.dataset.on_epoch_end()

    def runs_user_code(self):
        return getattr(self.dataset, "workers", 1) <= 1

    def _get(self, i):
        batch = self.dataset[i]
        if isinstance(batch, np.ndarray):
            batch = (batch,)
        if isinstance(batch, list):
            batch = tuple(batch)
        if not isinstance(batch, (tuple, dict)) or isinstance(batch, tuple) and len(batch) not in (1, 2, 3):
            raise ValueError(f"{type(self.dataset).__name__}.__getitem__({i}) must return a batch: x, (x,), (x, y) "
                             f"or (x, y, sample_weight); it returned {type(batch).__name__} {str(batch)[:80]}")
        return self._finish(batch)

    def __iter__(self):
        if self.steps is None:
            order = itertools.count()
        else:
            order = self.rng.permutation(self.steps) if self.shuffle else range(self.steps)
        return self._load(order)

    def _load(self, order):
        """The batches at the indices `order` yields, in that order."""
        workers = getattr(self.dataset, "workers", 1)
        if workers <= 1:
            for i in order:
                yield self._get(int(i))
            return
        # up to max_queue_size batches in flight on `workers` threads, yielded in order
        ahead = getattr(self.dataset, "max_queue_size", 10)
        order = iter(order)
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            pending = collections.deque(pool.submit(self._get, int(i)) for i in itertools.islice(order, ahead))
            while pending:
                batch = pending.popleft().result()
                nxt = next(order, None)
                if nxt is not None:
                    pending.append(pool.submit(self._get, int(nxt)))
                yield batch


class IterableData(DataAdapter):
    """Batches from a generator, or any iterable of batches (an image dataset, a torch
    DataLoader). A generator carries on where the last epoch stopped; a re-iterable starts over."""

    def __init__(self, source, steps=None, class_weight=None):
        if steps is None and not hasattr(source, "__next__") and hasattr(source, "__len__"):
            steps = len(source)  # a re-iterable with a length (e.g. an image dataset): batches per epoch
        self.source, self.steps, self.class_weight = source, steps, class_weight
        self._it = None

    def runs_user_code(self):
        return True

    def __iter__(self):
        if self._it is None or not hasattr(self.source, "__next__"):
            self._it = iter(self.source)
        n = 0
        while self.steps is None or n < self.steps:
            try:
                batch = next(self._it)
            except StopIteration:
                self._it = None
                return
            n += 1
            yield self._finish(batch)


def make_data(x, y=None, sample_weight=None, batch_size=None, shuffle=False, steps=None, seed=None,
              class_weight=None):
    """The adapter for what was passed to fit/evaluate/predict."""
    if x is None:
        raise ValueError("No input data: pass x (arrays, a PyDataset, or a generator of batches)")
    if isinstance(x, DataAdapter):
        return x
    if class_weight is not None and not isinstance(class_weight, dict):
        raise ValueError(f"class_weight must be a dict {{class index: weight}}, received {type(class_weight).__name__}")
    if isinstance(x, PyDataset) or _is_batch_source(x):
        what = type(x).__name__
        if y is not None:
            raise ValueError(f"x is a {what}, whose batches carry the targets: y must be None")
        if sample_weight is not None:
            raise ValueError(f"x is a {what}, whose batches carry the sample weights (as (x, y, sample_weight)): "
                             "sample_weight must be None")
        if isinstance(x, PyDataset):
            return PyDatasetData(x, shuffle and x.num_batches is not None, class_weight, seed)
        return IterableData(x, steps, class_weight)
    return ArrayData(x, y, sample_weight, batch_size or 32, shuffle, seed, class_weight)


def _is_batch_source(x):
    return hasattr(x, "__next__") or (hasattr(x, "__iter__") and not is_array_like(x))
