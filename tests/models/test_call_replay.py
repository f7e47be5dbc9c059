"""Call replay (models/replay.py, CallReplay): `model(x)` for inference, replayed from the fourth
call of an input signature, must return what the eager call returns -- fresh tensors each call,
the current weights and layer settings -- and every call whose Python could differ must run as
usual."""
import threading

import numpy as np
import pytest

import lamina
from lamina import layers, ops
from lamina.layers.layer import Layer


def _state(model):
    cr = getattr(model, "_call_replay", None)
    return sorted(set(cr.explain().values())) if cr is not None else []


def _eager(model, x, **kw):
    return Layer.__call__(model, x, **kw)


def _mlp(seed=3):
    lamina.utils.set_random_seed(seed)
    return lamina.Sequential([lamina.Input((6,)), layers.Dense(8, activation="relu"),
                              layers.Dense(5, activation="softmax")])


def _rows(n, seed=0, cols=6):
    return np.random.default_rng(seed).normal(size=(n, cols)).astype("float32")


def test_calls_are_replayed_with_the_eager_results():
    m = _mlp()
    outs = []
    for i in range(8):
        x = ops.convert_to_tensor(_rows(3, seed=i))
        y = m(x)
        np.testing.assert_array_equal(y.numpy(), _eager(m, x).numpy())
        outs.append((y, _eager(m, x).numpy()))
    assert _state(m) == ["replayed"]
    for y, want in outs:  # each call's result is its own: later calls did not overwrite it
        np.testing.assert_array_equal(y.numpy(), want)
    assert len({id(y._buf) for y, _ in outs}) == len(outs)


def test_replayed_calls_follow_weight_assignments_and_layer_changes():
    m = _mlp()
    x = ops.convert_to_tensor(_rows(2))
    for _ in range(5):
        m(x)
    assert _state(m) == ["replayed"]
    dense = m.layers[0]
    dense.kernel.assign(np.ones(dense.kernel.shape, "float32"))  # in place: the replay reads it
    np.testing.assert_array_equal(m(x).numpy(), _eager(m, x).numpy())
    dense.activation = lamina.activations.tanh  # an attribute: the model records again
    for _ in range(5):
        np.testing.assert_allclose(m(x).numpy(), _eager(m, x).numpy(), rtol=0, atol=0)
    m.set_weights([w * 0.5 for w in m.get_weights()])
    np.testing.assert_array_equal(m(x).numpy(), _eager(m, x).numpy())
    m.pop()
    assert m(x).shape == (2, 8)
    m.add(layers.Dense(3))
    for _ in range(5):
        y = m(x)
    assert y.shape == (2, 3)
    np.testing.assert_array_equal(y.numpy(), _eager(m, x).numpy())


def test_functional_models_with_several_inputs_and_outputs():
    a, b = lamina.Input((4,)), lamina.Input((3,))
    h = layers.Concatenate()([layers.Dense(5)(a), b])
    m = lamina.Model([a, b], {"y": layers.Dense(2)(h), "a": a})
    for i in range(6):
        xa, xb = (ops.convert_to_tensor(_rows(2, seed=i, cols=4)), ops.convert_to_tensor(_rows(2, seed=9 + i, cols=3)))
        for args in ([xa, xb], (xa, xb)):
            got, want = m(args), _eager(m, args)
            assert sorted(got) == ["a", "y"]
            np.testing.assert_array_equal(got["y"].numpy(), want["y"].numpy())
            np.testing.assert_array_equal(got["a"].numpy(), xa.numpy())  # an input passed through
    assert _state(m) == ["replayed"]
    one = lamina.Model([a], layers.Dense(2)(a))
    for i in range(6):  # one input in a list, a tuple, a dict keyed by the input's name, or alone
        xa = ops.convert_to_tensor(_rows(2, seed=i, cols=4))
        want = _eager(one, xa).numpy()
        for args in ([xa], (xa,), {a.name: xa}, xa):
            np.testing.assert_array_equal(one(args).numpy(), want)
    assert _state(one) == ["replayed"]


def test_training_and_tapes_run_as_usual():
    lamina.utils.set_random_seed(1)
    m = lamina.Sequential([lamina.Input((6,)), layers.Dense(16), layers.Dropout(0.5)])
    x = ops.convert_to_tensor(np.ones((4, 6), "float32"))
    for _ in range(5):
        np.testing.assert_array_equal(m(x).numpy(), m(x, training=False).numpy())
    assert _state(m) == ["replayed"]
    dropped = [m(x, training=True).numpy() for _ in range(3)]  # dropout draws new masks each call
    assert not np.array_equal(dropped[0], dropped[1])
    assert (dropped[0] == 0).any()
    with lamina.GradientTape() as tape:  # the call must record onto the tape
        loss = ops.sum(m(x))
    grads = tape.gradient(loss, m.trainable_weights)
    assert all(g is not None for g in grads)
    np.testing.assert_allclose(grads[1].numpy(), np.full(16, 4.0, "float32"))


class _Counting(Layer):
    calls = 0

    def call(self, x):
        _Counting.calls += 1
        return x * 2.0


def test_models_whose_python_may_differ_are_not_replayed():
    x = ops.convert_to_tensor(_rows(2))
    n = [0]

    def count(v):
        n[0] += 1
        return v + float(n[0])
    lam = lamina.Sequential([lamina.Input((6,)), layers.Lambda(count)])
    n[0] = 0  # (building the model ran it once)
    outs = [lam(x).numpy() for _ in range(6)]
    assert n[0] == 6 and not np.array_equal(outs[0], outs[5])  # a Lambda's Python runs every call
    own = lamina.Sequential([lamina.Input((6,)), _Counting()])
    before = _Counting.calls
    for _ in range(6):
        own(x)
    assert _Counting.calls - before == 6  # a user's layer: as Keras, its call runs every time
    assert _state(lam) == [] and _state(own) == []

    class Sub(lamina.Model):
        def __init__(self):
            super().__init__()
            self.d = layers.Dense(3)

        def call(self, v):
            return self.d(v)
    sub = Sub()
    for _ in range(5):
        sub(x)
    assert _state(sub) == []


def test_losses_and_masks_keep_the_eager_path():
    reg = lamina.Sequential([lamina.Input((6,)), layers.Dense(3, activity_regularizer="l2")])
    x = ops.convert_to_tensor(_rows(2))
    for i in range(5):
        reg(ops.convert_to_tensor(_rows(2, seed=i)))
        assert len(reg.losses) == 1
    assert _state(reg) == []
    act = lamina.Sequential([lamina.Input((6,)), layers.ActivityRegularization(l1=0.1)])
    for _ in range(5):
        act(x)
        assert len(act.losses) == 1
    assert all(v == "the call added losses" for v in act._call_replay.explain().values())
    emb = lamina.Sequential([lamina.Input((4,), dtype="int32"), layers.Embedding(10, 3, mask_zero=True)])
    ids = ops.convert_to_tensor(np.array([[1, 2, 0, 0]], "int32"))
    for _ in range(5):
        y = emb(ids)
        assert y._keras_mask is not None
        np.testing.assert_array_equal(y._keras_mask.numpy(), [[True, True, False, False]])
    assert all(v == "the result carries a mask" for v in emb._call_replay.explain().values())


def test_concurrent_calls_from_threads_get_their_own_results():
    m = _mlp()
    xs = [ops.convert_to_tensor(_rows(3, seed=i)) for i in range(4)]
    want = [_eager(m, x).numpy() for x in xs]
    for _ in range(5):
        m(xs[0])
    errors = []

    def work(k):
        try:
            for _ in range(200):
                np.testing.assert_array_equal(m(xs[k]).numpy(), want[k])
        except AssertionError as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_calls_under_device_scopes_and_on_other_devices():
    m = _mlp()
    x = ops.convert_to_tensor(_rows(2))
    want = _eager(m, x).numpy()
    with lamina.device("cpu:1"):
        x1 = ops.convert_to_tensor(_rows(2))
        for _ in range(5):
            y = m(x)
            np.testing.assert_array_equal(y.numpy(), want)
    for _ in range(5):
        y1 = m(x1)
    assert y1.device.name == _eager(m, x1).device.name
    np.testing.assert_array_equal(y1.numpy(), want)


def test_large_calls_are_not_held():
    m = lamina.Sequential([lamina.Input((64,)), layers.Dense(4096), layers.Dense(2)])
    x = ops.convert_to_tensor(np.zeros((1100, 64), "float32"))  # 18 MB of intermediates
    for _ in range(4):
        m(x)
    (why,) = m._call_replay.explain().values()
    assert why.startswith("the call allocates")
    for _ in range(4):  # predict holds as much as a step does
        m.predict_on_batch(np.zeros((1100, 64), "float32"))
    assert "replayed" in m._call_replay.explain().values() or \
        "replayed" in m._step_replay.explain().values()


def test_predict_on_batch_numpy_in_and_out():
    m = _mlp()
    m.compile(loss="mse")
    want = m.predict(_rows(10), verbose=0)
    for i in range(6):
        got = m.predict_on_batch(_rows(10))
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    assert _state(m) == ["replayed"]
    # arrays the fast path does not take: float64 (converted), not contiguous, another shape
    np.testing.assert_allclose(m.predict_on_batch(_rows(10).astype("float64")), want, rtol=1e-6)
    wide = np.asfortranarray(_rows(10))
    np.testing.assert_array_equal(m.predict_on_batch(wide), want)
    assert m.predict_on_batch(_rows(3)).shape == (3, 5)
    with pytest.raises(ValueError, match="incompatible"):
        m.predict_on_batch(_rows(2, cols=7))


def test_programs_check_their_inputs():
    from lamina.backend import _cpu
    with pytest.raises(ValueError, match="not a kernel that can be bound"):
        _cpu.bind_call("to_numpy", _cpu.to_numpy, (), {})
    with pytest.raises(ValueError, match="did not reach a kernel"):
        _cpu.bind_call("fill", lambda *a: None, (), {})
    a, out = _cpu.Buffer(4, 0, 0), _cpu.Buffer(4, 0, 0)
    call = _cpu.bind_call("copy", _cpu.copy, (a, out), {})
    prog = _cpu.Program([call], [a], [out])
    src = _cpu.from_numpy(np.arange(4, dtype="float32"))
    (fresh,) = prog.run([src])
    np.testing.assert_array_equal(_cpu.to_numpy(fresh, [4]), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="expected 1 input buffers"):
        prog.run([])
    with pytest.raises(ValueError, match="recorded with 4"):
        prog.run([_cpu.Buffer(5, 0, 0)])
    (host,) = prog.run_host([np.arange(4, dtype="float32") + 1], [[2, 2]])
    np.testing.assert_array_equal(host, [[1, 2], [3, 4]])


def test_random_layers_draw_the_numbers_the_eager_calls_draw():
    """A random layer called without `training` augments (as Keras's preprocessing layers do):
    replayed calls draw new seeds from the same generators, in the same order, as eager calls."""
    def build():
        lamina.utils.set_random_seed(5)
        return lamina.Sequential([lamina.Input((4, 4, 1)), layers.RandomFlip(seed=11), layers.GaussianNoise(0.1),
                                  layers.Flatten()])
    x = ops.convert_to_tensor(np.arange(32, dtype="float32").reshape(2, 4, 4, 1))
    replayed, eager = build(), None
    got = [replayed(x).numpy() for _ in range(8)]
    assert _state(replayed) == ["replayed"]
    eager = build()
    want = [_eager(eager, x).numpy() for _ in range(8)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert not all(np.array_equal(got[0], g) for g in got[1:])
    for _ in range(5):  # training=False: no augmentation, its own signature
        np.testing.assert_array_equal(replayed(x, training=False).numpy(), x.numpy().reshape(2, 16))


def test_quantizing_a_replayed_model_records_again():
    m = _mlp()
    x = ops.convert_to_tensor(_rows(4))
    floats = [m(x).numpy() for _ in range(5)]
    assert _state(m) == ["replayed"]
    m.quantize("int8")
    for _ in range(5):
        got = m(x).numpy()
        np.testing.assert_array_equal(got, _eager(m, x).numpy())
    assert not np.array_equal(got, floats[-1])  # the int8 kernels ran, not the float recording
    np.testing.assert_allclose(got, floats[-1], atol=0.05)
    assert _state(m) == ["replayed"]


def test_a_replayed_call_clears_the_losses_an_earlier_call_left():
    """Keras clears the losses at each outermost call: a replayed inference call (which adds
    none) leaves model.losses empty after a training call added some."""
    m = lamina.Sequential([lamina.Input((6,)), layers.Dense(4), layers.Dropout(0.1)])
    side = lamina.Sequential([lamina.Input((6,)), layers.ActivityRegularization(l2=1.0)])
    x = ops.convert_to_tensor(_rows(2))
    for _ in range(5):
        m(x)
    assert _state(m) == ["replayed"]
    m.layers[0].add_loss(ops.sum(x))  # as a layer's call would
    assert len(m.losses) == 1
    m(x)
    assert m.losses == []
    side(x)  # another model's losses do not touch this one's
    m(x)
    assert m.losses == [] and len(side.losses) == 1


def test_a_models_replayed_calls_hold_a_bounded_amount_of_memory():
    m = lamina.Sequential([lamina.Input((16,)), layers.Dense(2048), layers.Dense(2)])
    for rows in (1500, 1600, 1700, 1800, 1900, 1950):  # 12-16 MB of intermediates each
        x = ops.convert_to_tensor(np.ones((rows, 16), "float32"))
        for _ in range(4):
            np.testing.assert_array_equal(m(x).numpy(), _eager(m, x).numpy())
    from lamina.models import replay
    assert 0 < m._call_replay.held <= replay.CALL_TOTAL_BYTES
    whys = list(m._call_replay.explain().values())
    assert "replayed" in whys and any(w.startswith("the model's replayed calls hold") for w in whys)
