"""models/data.py: what fit/evaluate/predict accept, as Keras 3: arrays, PyDataset (Sequence),
generators, torch DataLoaders; class_weight with each; Keras's batch forms."""
import math

import numpy as np
import pytest

import lamina
from lamina import layers, utils


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0.3).astype(np.int64)
    return x, y


def _model(seed=0):
    rng = np.random.default_rng(seed)
    m = lamina.Sequential([lamina.Input(shape=(4,)), layers.Dense(2, activation="softmax")])
    m.set_weights([rng.standard_normal((4, 2)).astype(np.float32), np.zeros(2, np.float32)])
    m.compile(optimizer=lamina.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


class Batches(utils.PyDataset):  # the Keras 3 API
    def __init__(self, x, y, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.epochs_ended = 0
        self.seen = []

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, idx):
        self.seen.append(idx)
        s = slice(idx * self.batch_size, (idx + 1) * self.batch_size)
        return self.x[s], self.y[s]

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_unpack_and_pack_as_keras():
    x, y, sw = np.zeros(2), np.ones(2), np.full(2, 3.0)
    assert utils.unpack_x_y_sample_weight(x)[1:] == (None, None)
    assert utils.unpack_x_y_sample_weight((x,))[0] is x
    assert utils.unpack_x_y_sample_weight([x, y])[1] is y
    assert utils.unpack_x_y_sample_weight((x, y, sw))[2] is sw
    with pytest.raises(ValueError, match=r"\(x, y, sample_weight\)"):
        utils.unpack_x_y_sample_weight((x, y, sw, sw))
    assert utils.pack_x_y_sample_weight(x) is x
    assert utils.pack_x_y_sample_weight([x, y]) == ([x, y],)
    assert utils.pack_x_y_sample_weight(x, y) == (x, y)
    assert len(utils.pack_x_y_sample_weight(x, y, sw)) == 3


def test_pydataset_and_sequence_feed_fit_evaluate_predict():
    x, y = _data()
    want = _model().fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0).history
    ds = Batches(x, y, 32)
    m = _model()
    got = m.fit(ds, epochs=3, shuffle=False, verbose=0).history
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-6)
    assert ds.epochs_ended == 3 and ds.seen[:3] == [0, 1, 2]
    np.testing.assert_allclose(m.evaluate(Batches(x, y, 32), verbose=0), m.evaluate(x, y, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(m.predict(Batches(x, y, 32), verbose=0), m.predict(x, verbose=0), atol=1e-6)
    assert utils.Sequence is utils.PyDataset
    shuffled = Batches(x, y, 32)
    _model().fit(shuffled, epochs=8, verbose=0)  # fit shuffles the batch order, as Keras
    assert sorted(shuffled.seen) == sorted([0, 1, 2] * 8) and shuffled.seen != [0, 1, 2] * 8
    # validation_data as a PyDataset
    h = _model().fit(Batches(x, y, 32), validation_data=Batches(x, y, 48), epochs=1, verbose=0)
    assert "val_accuracy" in h.history


def test_set_random_seed_makes_shuffled_fit_repeatable():
    # fit shuffles with numpy's global generator, as Keras, so keras.utils.set_random_seed fixes it
    x, y = _data()
    runs = []
    for _ in range(2):
        utils.set_random_seed(7)
        ds = Batches(x, y, 16)
        h = _model().fit(x, y, batch_size=16, epochs=3, verbose=0).history["loss"]
        _model().fit(ds, epochs=3, verbose=0)
        runs.append((h, ds.seen))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    assert runs[0][1] != list(range(6)) * 3  # and it did shuffle


def test_pydataset_workers_run_on_threads():
    x, y = _data()
    want = _model().fit(Batches(x, y, 16), epochs=2, shuffle=False, verbose=0).history["loss"]
    ds = Batches(x, y, 16, workers=3, max_queue_size=2)
    got = _model().fit(ds, epochs=2, shuffle=False, verbose=0).history["loss"]
    assert got == want and sorted(ds.seen) == sorted(list(range(6)) * 2)
    with pytest.raises(ValueError, match="use_multiprocessing=True is not supported"):
        Batches(x, y, 16, use_multiprocessing=True)
    with pytest.raises(ValueError, match="workers"):
        Batches(x, y, 16, workers=-1)

    class Broken(utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return "nonsense"
    with pytest.raises(ValueError, match=r"Broken.__getitem__\(\d\) must return a batch"):
        _model().fit(Broken(), verbose=0)


def test_generators_and_class_weight_everywhere():
    x, y = _data()
    cw = {0: 0.3, 1: 2.0}
    want = _model().fit(x, y, batch_size=32, epochs=2, shuffle=False, class_weight=cw, verbose=0).history["loss"]
    plain = _model().fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0).history["loss"]
    assert not np.allclose(want, plain)

    def gen():
        while True:
            for i in range(0, len(x), 32):
                yield x[i:i + 32], y[i:i + 32]
    got = _model().fit(gen(), steps_per_epoch=3, epochs=2, class_weight=cw, verbose=0).history["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    got = _model().fit(Batches(x, y, 32), epochs=2, shuffle=False, class_weight=cw, verbose=0).history["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    one_hot = utils.to_categorical(y, 2)
    m = lamina.Sequential([lamina.Input(shape=(4,)), layers.Dense(2, activation="softmax")])
    m.set_weights(_model().get_weights())
    m.compile(optimizer=lamina.optimizers.SGD(0.1), loss="categorical_crossentropy")
    got = m.fit(x, one_hot, batch_size=32, epochs=2, shuffle=False, class_weight=cw, verbose=0).history["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    with pytest.raises(ValueError, match="class_weight must be a dict"):
        _model().fit(x, y, class_weight=[1.0, 2.0], verbose=0)
    with pytest.raises(ValueError, match="x is a generator, whose batches carry the targets: y must be None"):
        _model().fit(gen(), y, steps_per_epoch=2, verbose=0)


def test_pandas_frames_and_series_are_arrays():
    """As in Keras, a DataFrame or Series is its numpy array (it is iterable, but not a batch source)."""
    pd = pytest.importorskip("pandas")
    x, y = _data()
    want = _model().fit(x, y, batch_size=32, epochs=2, shuffle=False, validation_split=0.25, verbose=0).history
    frame, series = pd.DataFrame(x, columns=list("abcd")), pd.Series(y)
    got = _model().fit(frame, series, batch_size=32, epochs=2, shuffle=False, validation_split=0.25, verbose=0).history
    for key in ("loss", "val_loss", "accuracy"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6)
    np.testing.assert_allclose(_model().predict(frame, verbose=0), _model().predict(x, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(_model().evaluate(frame, series, verbose=0), _model().evaluate(x, y, verbose=0),
                               rtol=1e-6)


def test_torch_dataloader():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset
    x, y = _data()
    want = _model().fit(x, y, batch_size=32, epochs=2, shuffle=False, class_weight={0: 1.0, 1: 3.0},
                        verbose=0).history["loss"]
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=32, shuffle=False)
    m = _model()
    got = m.fit(loader, epochs=2, class_weight={0: 1.0, 1: 3.0}, verbose=0).history["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(m.evaluate(loader, verbose=0), m.evaluate(x, y, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(m.predict(loader, verbose=0), m.predict(x, verbose=0), atol=1e-6)
