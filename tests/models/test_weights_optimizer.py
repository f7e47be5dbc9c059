"""models/io.py save_weights / load_weights with '.weights.h5' (models/state.py): as Keras 3's
save_weights, the compiled model's optimizer state is written under "optimizer" (a wrapper's
inner optimizers also in their own groups) and load_weights reads it back with Keras's rules;
files move between Keras and lamina both ways, without Keras's "Skipping variable loading"."""
import warnings

import h5py
import numpy as np
import pytest

import lamina
from keras_ref import keras_or_none

RNG = np.random.default_rng(11)
X = RNG.normal(size=(8, 4)).astype(np.float32)
Y = RNG.normal(size=(8, 2)).astype(np.float32)
KINDS = ["adam", "loss_scale", "multi"]


def _optimizer(lib, kind):
    O = lib.optimizers
    if kind == "adam":
        return O.Adam(0.01)
    if kind == "loss_scale":
        return O.LossScaleOptimizer(O.Adam(0.01))
    # d1's variables (lamina's path "d1/kernel", Keras's "sequential/d1/kernel") to Adam, the rest to SGD
    return O.MultiOptimizer(O.OptimizerMap(O.SGD(0.01, momentum=0.9), {".*d1/.*": O.Adam(0.01)}))


def _model(lib=lamina, kind="adam", compiled=True):
    m = lib.Sequential([lib.Input((4,)), lib.layers.Dense(3, name="d1"), lib.layers.Dense(2, name="d2")])
    if compiled:
        m.compile(_optimizer(lib, kind), "mse")
    return m


def _trained(lib=lamina, kind="adam"):
    m = _model(lib, kind)
    m.fit(X, Y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    return m


def _state(m):
    """The optimizer's saved values in order (Keras: `optimizer.variables`)."""
    if not isinstance(m, lamina.Model):
        return [np.asarray(v) for v in m.optimizer.variables]
    store = {}
    m.optimizer.save_own_variables(store)
    return [np.asarray(store[str(i)]) for i in range(len(store))]


def _layout(path):
    """Every group and dataset of an HDF5 file: (name, shape or None)."""
    out = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.append((n, getattr(o, "shape", None))))
    return out


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=1e-6)


def _built(lib, kind):
    m = _model(lib, kind)
    m.optimizer.build(m.trainable_weights if lib is lamina else m.trainable_variables)
    return m


def _load_quietly(m, path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no "skipping variable loading" or any other warning
        m.load_weights(path)


def test_optimizer_state_is_saved_and_restored(tmp_path):
    path = str(tmp_path / "m.weights.h5")
    m = _trained()
    m.save_weights(path)
    layout = dict(_layout(path))
    assert layout["optimizer/vars/0"] == () and layout["optimizer/vars/2"] == (4, 3)
    with h5py.File(path, "r") as f:
        assert int(f["optimizer/vars/0"][()]) == 2 and len(f["optimizer/vars"]) == 10
    again = _built(lamina, "adam")
    _load_quietly(again, path)
    _assert_same(_state(again), _state(m))
    for a, b in zip(again.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    # training goes on exactly as it would have
    m.fit(X, Y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    again.fit(X, Y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(again.get_weights(), m.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["loss_scale", "multi"])
def test_wrapper_optimizers_save_their_inner_optimizers_groups(tmp_path, kind):
    path = str(tmp_path / "m.weights.h5")
    m = _trained(kind=kind)
    m.save_weights(path)
    layout = dict(_layout(path))
    own = [k for k in layout if k.startswith("optimizer/vars/")]
    assert len(own) == len(_state(m))
    if kind == "loss_scale":   # own 4 (iteration, learning rate, step counter, scale), then Adam's 10
        assert len(own) == 14
        inner = [k for k in layout if k.startswith("optimizer/inner_optimizer/vars/")]
        assert len(inner) == 10
        with h5py.File(path, "r") as f:
            for i in range(10):
                np.testing.assert_array_equal(f[f"optimizer/inner_optimizer/vars/{i}"][()],
                                              f[f"optimizer/vars/{i + 4}"][()])
            assert f["optimizer/inner_optimizer/vars"].attrs["name"] == m.optimizer.inner_optimizer.name
    else:   # own 2, then Adam's 2 + 2 x 2 moments (d1), SGD's 2 + 2 momentums (d2)
        assert len(own) == 12
        adam = [k for k in layout if k.startswith("optimizer/optimizers/adam/vars/")]
        sgd = [k for k in layout if k.startswith("optimizer/optimizers/sgd/vars/")]
        assert len(adam) == 6 and len(sgd) == 4
        assert not [k for k in layout if "_inner_optimizers" in k]   # written once, under Keras's name
    again = _built(lamina, kind)
    _load_quietly(again, path)
    _assert_same(_state(again), _state(m))


@pytest.mark.parametrize("kind", KINDS)
def test_an_optimizer_not_built_keeps_its_state_with_keras_warning(tmp_path, kind):
    path = str(tmp_path / "m.weights.h5")
    _trained(kind=kind).save_weights(path)
    fresh = _model(kind=kind)   # compiled, not built: its first step builds it
    before = _state(fresh)
    with pytest.warns(UserWarning, match="skipping variable loading for optimizer .* not been called/built yet"):
        fresh.load_weights(path)
    _assert_same(_state(fresh), before)
    assert not fresh.optimizer.built
    fresh.fit(X, Y, batch_size=4, epochs=1, verbose=0)   # and trains from scratch


def test_files_without_optimizer_state(tmp_path):
    path = str(tmp_path / "plain.weights.h5")
    _model(compiled=False).save_weights(path)          # not compiled: no optimizer group, as Keras
    assert not [k for k, _ in _layout(path) if k.startswith("optimizer")]
    _load_quietly(_trained(), path)                     # nothing to restore: no warning
    saved = str(tmp_path / "with.weights.h5")
    _trained().save_weights(saved)
    _load_quietly(_model(compiled=False), saved)       # an uncompiled model ignores the optimizer's group
    unbuilt = str(tmp_path / "unbuilt.weights.h5")
    m = _model()
    m.save_weights(unbuilt)                             # compiled, not built: iteration and learning rate
    assert len(h5py.File(unbuilt, "r")["optimizer/vars"]) == 2
    other = _model()
    other.optimizer.learning_rate = 0.5
    _load_quietly(other, unbuilt)
    assert other.optimizer.learning_rate == pytest.approx(0.01)


def test_optimizer_mismatches(tmp_path):
    path = str(tmp_path / "m.weights.h5")
    _trained().save_weights(path)
    with h5py.File(path, "r+") as f:   # a moment of the wrong shape
        del f["optimizer/vars/3"]
        f["optimizer/vars/3"] = np.zeros((5, 3), np.float32)
    m = _built(lamina, "adam")
    before = _state(m)
    with pytest.raises(ValueError, match=r"optimizer state at 'optimizer/vars' of .*m\.weights\.h5.*\(5, 3\)"):
        m.load_weights(path)
    _assert_same(_state(m), before)
    with pytest.warns(UserWarning, match="could not load the optimizer state.*skipped"):
        m.load_weights(path, skip_mismatch=True)
    _assert_same(_state(m), before)
    sgd = _model()
    sgd.compile(lamina.optimizers.SGD(momentum=0.9), "mse")   # another optimizer: 6 variables, not 10
    sgd.optimizer.build(sgd.trainable_weights)
    with pytest.warns(UserWarning, match="has 6 variables whereas the saved optimizer has 10"):
        sgd.load_weights(str(tmp_path / "m.weights.h5"))
    with h5py.File(path, "r+") as f:   # a key missing: a damaged file
        del f["optimizer/vars/5"]
        f["optimizer/vars/12"] = np.zeros((), np.float32)
    with pytest.raises(lamina.saving.FileFormatError, match="optimizer's group 'optimizer/vars' lacks a variable"):
        _built(lamina, "adam").load_weights(path)


def test_multi_optimizer_loads_all_or_nothing(tmp_path):
    path = str(tmp_path / "m.weights.h5")
    _trained(kind="multi").save_weights(path)
    with h5py.File(path, "r+") as f:   # SGD's first momentum (after Multi's 2 and Adam's 6) of a wrong shape
        del f["optimizer/vars/10"]
        f["optimizer/vars/10"] = np.zeros((7,), np.float32)
    m = _built(lamina, "multi")
    before = _state(m)
    with pytest.raises(ValueError, match="optimizer state"):
        m.load_weights(path)
    _assert_same(_state(m), before)   # Adam's part, loaded before SGD's failed, is put back


@pytest.mark.parametrize("kind", KINDS)
def test_keras_and_lamina_read_each_others_files(tmp_path, kind):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    ours, theirs = str(tmp_path / "lamina.weights.h5"), str(tmp_path / "keras.weights.h5")
    lm, km = _trained(lamina, kind), _trained(keras, kind)
    lm.save_weights(ours)
    km.save_weights(theirs)
    assert _layout(ours) == _layout(theirs)   # the same groups and datasets, optimizer included
    k2 = _built(keras, kind)
    _load_quietly(k2, ours)
    _assert_same(_state(k2), _state(lm))
    l2 = _built(lamina, kind)
    _load_quietly(l2, theirs)
    _assert_same(_state(l2), _state(km))
    # files of compiled models whose optimizer is not built yet have the same layout too
    _model(lamina, kind).save_weights(ours)
    _model(keras, kind).save_weights(theirs)
    assert _layout(ours) == _layout(theirs)
    _load_quietly(_model(keras, kind), ours)
    _load_quietly(_model(lamina, kind), theirs)


@pytest.mark.parametrize("kind", ["loss_scale", "multi"])
def test_dot_keras_files_of_wrapper_optimizers(tmp_path, kind):
    """load_model builds the optimizer and restores it (as Keras's compile_from_config); a file
    saved before the first step restores the iteration and learning rates, without a warning."""
    import zipfile
    path = str(tmp_path / "m.keras")
    m = _trained(kind=kind)
    m.save(path)
    with zipfile.ZipFile(path) as z:
        z.extract("model.weights.h5", tmp_path)
    groups = {k for k, _ in _layout(str(tmp_path / "model.weights.h5"))}
    assert ("optimizer/inner_optimizer/vars" if kind == "loss_scale" else "optimizer/optimizers/sgd/vars") in groups
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = lamina.models.load_model(path)
    _assert_same(_state(again), _state(m))
    fresh = _model(kind=kind)
    fresh.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = lamina.models.load_model(path)
    assert again.optimizer.built and again.optimizer.iterations == 0
    if kind == "loss_scale":
        assert again.optimizer.dynamic_scale == 2.0 ** 15 and again.optimizer.learning_rate == pytest.approx(0.01)
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    k = _trained(keras, kind)
    k.save(path)
    _assert_same(_state(lamina.models.load_model(path)), _state(k))
    m.save(path)
    _assert_same(_state(keras.models.load_model(path)), _state(m))
