import os

import h5py
import numpy as np
import pytest

import lamina
from lamina import callbacks, layers
from lamina.models import io as model_io


def _model(name_prefix=""):
    inp = lamina.Input(shape=(4,))
    h = layers.Dense(8, activation="tanh", name=name_prefix + "hidden")(inp)
    out = layers.Dense(2, name=name_prefix + "out")(h)
    return lamina.Model(inp, out)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((32, 4)).astype(np.float32), rng.standard_normal((32, 2)).astype(np.float32)


def test_weights_round_trip_uses_keras_layout(tmp_path):
    m = _model()
    p = str(tmp_path / "w.h5")
    m.save_weights(p)
    with h5py.File(p, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names[-2:] == ["hidden", "out"]
        assert [n.decode() for n in f["hidden"].attrs["weight_names"]] == ["hidden/kernel", "hidden/bias"]
        assert f["hidden"]["hidden/kernel"].shape == (4, 8)
    m2 = _model("x_")  # different names: loads by topological order
    m2.load_weights(p)
    x, _ = _data()
    np.testing.assert_allclose(m2.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)


def test_load_by_name_skip_mismatch_and_errors(tmp_path):
    m = _model()
    p = str(tmp_path / "w.h5")
    m.save_weights(p)
    inp = lamina.Input(shape=(4,))
    other = lamina.Model(inp, layers.Dense(3, name="out")(layers.Dense(8, name="hidden")(inp)))
    with pytest.raises(ValueError, match=r"layer 'out'.*out/kernel.*\(8, 3\).*\(8, 2\)"):
        other.load_weights(p)
    with pytest.warns(UserWarning, match="skipped"):
        other.load_weights(p, by_name=True, skip_mismatch=True)
    np.testing.assert_allclose(other.get_layer("hidden").get_weights()[0], m.get_layer("hidden").get_weights()[0])
    small = lamina.Sequential([lamina.Input(shape=(4,)), layers.Dense(2)])
    with pytest.raises(ValueError, match="Layer count mismatch"):
        small.load_weights(p)


@pytest.mark.parametrize("ext", [".h5", ".keras"])
def test_full_model_round_trip_resumes_training_exactly(tmp_path, ext):
    x, y = _data(1)
    m = _model()
    m.compile(optimizer=lamina.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    m.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    p = str(tmp_path / ("m" + ext))
    m.save(p)
    loaded = lamina.models.load_model(p)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)
    assert loaded.optimizer.iterations == m.optimizer.iterations
    m.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for a, b in zip(m.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_sequential_config_round_trip(tmp_path):
    m = lamina.Sequential([lamina.Input(shape=(3,)), layers.Dense(4, activation="relu"), layers.Dropout(0.2),
                           layers.Dense(1)])
    p = str(tmp_path / "s.keras")
    m.save(p)
    loaded = lamina.models.load_model(p)
    assert [type(l).__name__ for l in loaded.layers] == ["Dense", "Dropout", "Dense"]
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)


def test_interrupted_save_leaves_previous_file(tmp_path, monkeypatch):
    m = _model()
    p = str(tmp_path / "w.h5")
    m.save_weights(p)
    before = open(p, "rb").read()

    def boom(*a, **k):
        raise KeyboardInterrupt("interrupted mid-save")
    monkeypatch.setattr(model_io, "write_weights", boom)
    with pytest.raises(KeyboardInterrupt):
        m.save_weights(p)
    assert open(p, "rb").read() == before
    assert os.listdir(tmp_path) == ["w.h5"]


def test_custom_layer_needs_registration(tmp_path):
    class Scale(layers.Layer):
        def __init__(self, factor=2.0, **kw):
            super().__init__(**kw)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}
    inp = lamina.Input(shape=(2,))
    m = lamina.Model(inp, Scale(3.0)(inp))
    p = str(tmp_path / "c.keras")
    m.save(p)
    with pytest.raises(ValueError, match="Unknown layer class 'Scale'.*custom_objects"):
        lamina.models.load_model(p)
    loaded = lamina.models.load_model(p, custom_objects={"Scale": Scale})
    np.testing.assert_allclose(loaded.predict(np.ones((1, 2), np.float32), verbose=0), [[3.0, 3.0]])


def test_model_checkpoint_templates_and_best_only(tmp_path):
    x, y = _data(2)
    m = _model()
    m.compile(optimizer="sgd", loss="mse")
    tpl = str(tmp_path / "ckpt-{epoch:02d}.weights.h5")
    m.fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.ModelCheckpoint(tpl, save_weights_only=True,
                                                                           monitor="loss")])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01.weights.h5", "ckpt-02.weights.h5", "ckpt-03.weights.h5"]
    best = str(tmp_path / "best.keras")
    cb = callbacks.ModelCheckpoint(best, monitor="loss", save_best_only=True)
    m.fit(x, y, epochs=2, verbose=0, callbacks=[cb])
    assert os.path.exists(best) and cb.best < np.inf
