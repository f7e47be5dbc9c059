"""fit's input pipeline: the next batches are sliced and converted on a background thread
(models/trainer.py, _prefetched) while the current step runs."""
import functools
import threading

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.models import trainer


@pytest.fixture(autouse=True)
def prefetch_small_batches(monkeypatch):
    """The tests' arrays are small: prefetch them anyway (fit converts small batches itself)."""
    monkeypatch.setattr(trainer, "PREFETCH_MIN_BYTES", 0)


class _Recorder(lamina.Sequential):
    """Records the rows of every batch train_step receives, and the thread that converted it."""

    def train_step(self, data):
        x, y = data
        self.seen.append(x.numpy()[:, 0].copy())
        return super().train_step(data)


def _model():
    m = _Recorder([lamina.Input((3,)), layers.Dense(1)])
    m.seen = []
    m.compile(optimizer="sgd", loss="mse")
    return m


def test_batches_arrive_in_order_with_the_last_partial_one():
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    x[:, 0] = np.arange(10)
    m = _model()
    m.fit(x, np.zeros((10, 1), np.float32), batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert [list(b) for b in m.seen] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] * 2


def test_shuffled_epochs_cover_every_row_once():
    x = np.zeros((23, 3), np.float32)
    x[:, 0] = np.arange(23)
    m = _model()
    m.fit(x, np.zeros((23, 1), np.float32), batch_size=5, epochs=3, verbose=0)
    for e in range(3):
        rows = np.concatenate(m.seen[e * 5:(e + 1) * 5])
        assert sorted(rows) == list(range(23))


def test_batches_are_converted_on_the_background_thread(monkeypatch):
    threads = []
    real = trainer._to_tensors

    def spy(batch, place=None):
        if any(isinstance(a, np.ndarray) for a in lamina.layers.layer.flatten(batch)):  # a conversion
            threads.append(threading.current_thread().name)
        return real(batch, place)
    monkeypatch.setattr(trainer, "_to_tensors", spy)
    m = _model()
    m.fit(np.ones((8, 3), np.float32), np.ones((8, 1), np.float32), batch_size=2, verbose=0)
    assert threads and set(threads) == {"lamina-fit-prefetch"}


def test_an_exception_in_the_data_surfaces_in_fit_at_its_batch():
    def gen():
        for i in range(3):
            yield np.full((2, 3), i, np.float32), np.zeros((2, 1), np.float32)
        raise RuntimeError("bad record 3")
    m = _model()
    with pytest.raises(RuntimeError, match="bad record 3"):
        m.fit(gen(), epochs=1, verbose=0)
    assert [list(b) for b in m.seen] == [[0, 0], [1, 1], [2, 2]]   # the batches before it trained
    assert not [t for t in threading.enumerate() if t.name == "lamina-fit-prefetch"]


def test_stopping_early_stops_the_thread_and_the_data_is_not_read_further():
    read = []

    class Data(lamina.utils.PyDataset):
        def __len__(self):
            return 50

        def __getitem__(self, i):
            read.append(i)
            return np.full((2, 3), i, np.float32), np.zeros((2, 1), np.float32)

    class Stop(lamina.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                self.model.stop_training = True
    m = _model()
    m.fit(Data(), epochs=5, verbose=0, callbacks=[Stop()], shuffle=False)
    assert len(m.seen) == 3
    assert max(read) <= 2 + 4              # the prefetch depth (2 groups), the one being made, one read ahead
    assert not [t for t in threading.enumerate() if t.name == "lamina-fit-prefetch"]


def test_an_error_in_the_step_stops_the_thread():
    class Broken(_Recorder):
        def train_step(self, data):
            raise ValueError("step failed")
    m = Broken([lamina.Input((3,)), layers.Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="step failed"):
        m.fit(np.ones((40, 3), np.float32), np.ones((40, 1), np.float32), batch_size=2, verbose=0)
    assert not [t for t in threading.enumerate() if t.name == "lamina-fit-prefetch"]


def test_batches_are_placed_on_the_device_of_the_fit_call():
    devices = []

    class Where(_Recorder):
        def train_step(self, data):
            devices.append(data[0].device.name)
            return super().train_step(data)
    with lamina.device("cpu:1"):
        m = Where([lamina.Input((3,)), layers.Dense(1)])
        m.seen = []
        m.compile(optimizer="sgd", loss="mse")
        m.fit(np.ones((6, 3), np.float32), np.ones((6, 1), np.float32), batch_size=2, verbose=0)
    assert devices == ["cpu:1"] * 3


class _Where:
    """Notes the devices of the x and y of every batch a step receives."""

    def __init__(self, model):
        self.seen = []
        for name in ("train_step", "test_step", "predict_step"):
            setattr(model, name, functools.wraps(getattr(model, name))(
                lambda data, step=getattr(model, name): self.note(data) or step(data)))

    def note(self, data):
        x, y, _ = lamina.utils.unpack_x_y_sample_weight(data)
        self.seen.append((x.device.name, None if y is None else y.device.name))


@pytest.mark.parametrize("prefetch", [True, False])
def test_batches_go_to_the_models_device_when_no_device_is_chosen(monkeypatch, prefetch):
    """A model built in `with lamina.device(d):` and trained outside it gets its batches made on d
    (by the prefetching thread, ahead of its step): x on its first layer's device, y on its last's."""
    if not prefetch:
        monkeypatch.setattr(trainer, "PREFETCH_MIN_BYTES", 1 << 40)
    x, y = np.ones((6, 3), np.float32), np.ones((6, 1), np.float32)
    with lamina.device("cpu:1"):
        one = lamina.Sequential([lamina.Input((3,)), layers.Dense(2), layers.Dense(1)])
    with lamina.device("cpu:0"):
        first = layers.Dense(2)
    with lamina.device("cpu:1"):
        last = layers.Dense(1)
    inp = lamina.Input((3,))
    two = lamina.Model(inp, last(first(inp)))  # model parallel: x goes to cpu:0, y to cpu:1
    for m, want in ((one, ("cpu:1", "cpu:1")), (two, ("cpu:0", "cpu:1"))):
        m.compile(optimizer="sgd", loss="mse")
        where = _Where(m)
        m.fit(x, y, batch_size=2, verbose=0)
        m.evaluate(x, y, batch_size=3, verbose=0)
        m.train_on_batch(x, y)
        m.test_on_batch(lamina.convert_to_tensor(x), lamina.convert_to_tensor(y))  # tensors on cpu:0 are moved
        assert where.seen == [want] * 7
        where.seen.clear()
        m.predict(x, batch_size=3, verbose=0)
        m.predict_on_batch(x)
        assert where.seen == [(want[0], None)] * 3
        where.seen.clear()
        with lamina.device("cpu:0"):  # a device chosen around the call is where the batches go
            m.fit(x, y, batch_size=3, verbose=0)
        assert where.seen == [("cpu:0", "cpu:0")] * 2


def test_an_unbuilt_model_gets_its_batches_on_the_current_device():
    m = lamina.Sequential([layers.Dense(1)])  # no layer placed until it is built
    m.compile(optimizer="sgd", loss="mse")
    where = _Where(m)
    m.fit(np.ones((4, 3), np.float32), np.ones((4, 1), np.float32), batch_size=2, epochs=2, verbose=0)
    assert where.seen == [("cpu:0", "cpu:0")] * 4 and m.weights[0].device.name == "cpu:0"


def test_training_result_is_the_same_as_without_prefetching(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    weights = []
    for enabled in (True, False):
        if not enabled:
            monkeypatch.setattr(trainer._prefetched, "__init__",
                                lambda self, ex, enabled=True, depth=2, place=None: (setattr(self, "executions", ex),
                                                                                      setattr(self, "enabled", False),
                                                                                      setattr(self, "thread", None)) and None)
        lamina.utils.set_random_seed(3)
        m = lamina.Sequential([lamina.Input((3,)), layers.Dense(4), layers.Dense(1)])
        m.compile(optimizer="adam", loss="mse")
        m.fit(x, y, batch_size=8, epochs=3, verbose=0)
        weights.append([w.numpy() for w in m.weights])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rows,prefetched", [(4, False), (30000, True)])
def test_only_batches_of_a_megabyte_or_more_are_prefetched(monkeypatch, rows, prefetched):
    monkeypatch.setattr(trainer, "PREFETCH_MIN_BYTES", 1 << 20)
    threads = []
    real = trainer._to_tensors

    def spy(batch, place=None):
        threads.append(threading.current_thread().name)
        return real(batch, place)
    monkeypatch.setattr(trainer, "_to_tensors", spy)
    m = lamina.Sequential([lamina.Input((10,)), layers.Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    x = np.ones((2 * rows, 10), np.float32)  # rows x 10 floats + rows targets per batch
    m.fit(x, np.ones((2 * rows, 1), np.float32), batch_size=rows, epochs=1, verbose=0)
    assert ("lamina-fit-prefetch" in threads) == prefetched


def test_batches_made_by_user_code_are_made_on_the_calling_thread():
    # a PyDataset's __getitem__ (or a generator) may draw random numbers: made on fit's own thread,
    # a seeded run draws in one order; a PyDataset with workers of its own keeps them
    threads = []

    class Data(lamina.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            threads.append(threading.current_thread().name)
            return np.ones((300, 1000), np.float32), np.ones((300, 1), np.float32)   # > 1 MB a batch

    m = lamina.Sequential([lamina.Input((1000,)), layers.Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    m.fit(Data(), epochs=1, verbose=0)
    assert set(threads) == {threading.current_thread().name}
    threads.clear()

    def gen():
        for _ in range(3):
            threads.append(threading.current_thread().name)
            yield np.ones((300, 1000), np.float32), np.ones((300, 1), np.float32)
    m.fit(gen(), epochs=1, verbose=0)
    assert set(threads) == {threading.current_thread().name}
