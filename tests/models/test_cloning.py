"""clone_model as Keras 3's: subclassed models rebuilt from their config (with weights, compiled
as the original), Keras's refusals for them, compiled clones, call_function / recursive, and
Functional subclasses keeping their class."""
import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.models import clone_model


class MLP(lamina.Model):
    def __init__(self, units=8, out=2, **kwargs):
        super().__init__(**kwargs)
        self.units, self.out = units, out
        self.hidden = layers.Dense(units, activation="relu")
        self.head = layers.Dense(out)

    def call(self, x):
        return self.head(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "out": self.out}


class NoConfig(lamina.Model):
    """Takes an argument but does not implement get_config()."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(units)

    def call(self, x):
        return self.dense(x)


class WrongConfig(NoConfig):
    def get_config(self):
        return {**super().get_config(), "unit": 3}   # misspelt: __init__ takes `units`


def _xy():
    rng = np.random.default_rng(0)
    return rng.standard_normal((16, 7)).astype(np.float32), rng.standard_normal((16, 3)).astype(np.float32)


def test_subclassed_model_clones_from_its_config_with_fresh_weights_and_trains():
    x, y = _xy()
    m = MLP(5, 3, name="mlp")
    m(x)
    m.compile(optimizer=lamina.optimizers.Adam(0.01), loss="mse")
    c = clone_model(m)
    assert type(c) is MLP and c.name == "mlp" and (c.units, c.out) == (5, 3)
    assert c.built and [w.shape for w in c.weights] == [w.shape for w in m.weights] == [(7, 5), (5,), (5, 3), (3,)]
    assert not any(a is b for a, b in zip(c.weights, m.weights))
    assert not np.allclose(c.weights[0].numpy(), m.weights[0].numpy())   # new values, not copies
    # compiled as the original (Keras compiles the clone from the compile config), with its own optimizer
    assert c.compiled and isinstance(c.optimizer, lamina.optimizers.Adam) and c.optimizer is not m.optimizer
    assert c.optimizer.learning_rate == pytest.approx(0.01)
    before = [w.numpy().copy() for w in m.weights]
    losses = c.fit(x, y, epochs=5, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    for w, b in zip(m.weights, before):     # training the clone leaves the original alone
        np.testing.assert_array_equal(w.numpy(), b)


def test_uncalled_and_plain_subclassed_models_clone():
    m = MLP(4, 2)
    c = clone_model(m)                       # never called: nothing to build, built on its first call
    assert type(c) is MLP and not c.built and c(np.zeros((2, 3), np.float32)).shape == (2, 2)

    class Plain(lamina.Model):               # no arguments of its own: the base config is enough
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(3)

        def call(self, x):
            return self.dense(x)
    p = Plain(name="plain")
    p(np.zeros((2, 4), np.float32))
    c = clone_model(p)
    assert type(c) is Plain and c.name == "plain" and [w.shape for w in c.weights] == [(4, 3), (3,)]


def test_subclassed_model_without_a_usable_get_config_is_refused_clearly():
    x, _ = _xy()
    n = NoConfig(3, name="nc")
    n(x)
    with pytest.raises(NotImplementedError, match=r"'nc' is a subclassed model \(NoConfig\).*does not implement "
                                                  r"get_config\(\).*\(units\).*Implement NoConfig\.get_config\(\)"):
        clone_model(n)
    w = WrongConfig(3, name="wc")
    w(x)
    with pytest.raises(TypeError, match=r"WrongConfig\.from_config\(WrongConfig\.get_config\(\)\) failed.*units.*"
                                        r"Implement WrongConfig\.get_config\(\)"):
        clone_model(w)


def test_subclassed_model_refuses_clone_function_input_tensors_and_call_function_as_keras():
    m = MLP(4, 2, name="mlp")
    m(np.zeros((2, 3), np.float32))
    for kwargs in ({"clone_function": lambda layer: layer}, {"input_tensors": lamina.Input((3,))}):
        with pytest.raises(ValueError, match=r"`clone_function` and `input_tensors` are only supported for "
                                             r"Sequential models or Functional models.*'mlp' of type MLP"):
            clone_model(m, **kwargs)
    with pytest.raises(ValueError, match=r"`call_function` is only supported for Functional models.*MLP"):
        clone_model(m, call_function=lambda layer, *a, **k: layer(*a, **k))
    seq = lamina.Sequential([lamina.Input((3,)), layers.Dense(2)])
    with pytest.raises(ValueError, match="`call_function` is not supported with Sequential models"):
        clone_model(seq, call_function=lambda layer, *a, **k: layer(*a, **k))
    with pytest.raises(TypeError, match="expects a lamina Model"):
        clone_model(layers.Dense(2))
    with pytest.raises(ValueError, match="unexpected keyword argument"):
        clone_model(seq, bogus=1)


def test_compiled_sequential_and_functional_give_compiled_clones():
    seq = lamina.Sequential([lamina.Input((3,)), layers.Dense(2)])
    seq.compile(optimizer=lamina.optimizers.SGD(0.05, momentum=0.5), loss="mse", metrics=["mae"])
    c = clone_model(seq)
    assert c.compiled and isinstance(c.optimizer, lamina.optimizers.SGD) and c.optimizer is not seq.optimizer
    assert c.optimizer.momentum == pytest.approx(0.5)
    assert not clone_model(lamina.Sequential([lamina.Input((3,)), layers.Dense(2)])).compiled


def test_functional_subclass_keeps_its_class_and_call_function_recursive():
    class Custom(lamina.Model):   # the Keras guides' custom train_step model, built as Custom(inputs, outputs)
        def train_step(self, data):
            return super().train_step(data)
    i = lamina.Input((7,))
    f = Custom(i, layers.Dense(2)(i), name="cf")
    c = clone_model(f)
    assert isinstance(c, Custom) and isinstance(c, lamina.models.Functional) and c.name == "cf"

    inner = lamina.Sequential([lamina.Input((7,)), layers.Dense(4)], name="inner")
    i = lamina.Input((7,))
    m = lamina.Model(i, layers.Dense(2)(inner(i)))

    def add_dropout(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        return layers.Dropout(0.5)(out) if isinstance(layer, layers.Dense) else out
    c = clone_model(m, call_function=add_dropout, recursive=True)
    assert [type(l).__name__ for l in c.layers] == ["InputLayer", "Sequential", "Dense", "Dropout"]
    assert c.layers[1] is not inner and len(c.weights) == len(m.weights)
    x = np.random.default_rng(1).standard_normal((3, 7)).astype(np.float32)
    assert c.predict(x, verbose=0).shape == (3, 2)


def test_seq2seq_clones_and_saves_for_lamina(tmp_path):
    from lamina.models.seq2seq import Seq2Seq
    m = Seq2Seq(12, 13, embedding_dim=4, units=5, attention="luong")
    c = clone_model(m)
    assert type(c) is Seq2Seq and c.get_config() == m.get_config()
    assert [w.shape for w in c.weights] == [w.shape for w in m.weights]
    p = str(tmp_path / "s2s.keras")
    m.save(p)
    assert type(lamina.models.load_model(p)) is Seq2Seq
