"""The Optimizer base class (optimizers/optimizer.py): gradient accumulation, the moving average of
the weights (use_ema), loss_scale_factor, exclude_from_weight_decay, the iteration count, and its
saved state, each against numpy and against Keras 3 (JAX backend) where keras is installed."""
import warnings

import numpy as np
import pytest
from optimizer_harness import check_keras, config_id, make_data, run_lamina, saved

import lamina
from lamina import optimizers
from lamina.backend.sparse import IndexedSlices
from lamina.optimizers import schedules



def _tensors(gs):
    return [lamina.convert_to_tensor(g) for g in gs]


# ---- gradient accumulation ----------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda **kw: optimizers.SGD(0.1, momentum=0.9, **kw),
                                  lambda **kw: optimizers.Adam(0.01, **kw),
                                  lambda **kw: optimizers.Lamb(0.01, weight_decay=0.1, **kw)])
def test_accumulated_steps_equal_one_step_on_the_mean_gradient(make):
    w0, grads = make_data(1, steps=6)
    acc = make(gradient_accumulation_steps=3)
    vs = [lamina.Variable(w) for w in w0]
    ref = make()
    rs = [lamina.Variable(w) for w in w0]
    for k, gs in enumerate(grads, 1):
        before = [v.numpy() for v in vs]
        acc.apply(_tensors(gs), vs)
        if k % 3:
            for a, b in zip(vs, before):   # no update until the third call
                np.testing.assert_array_equal(a.numpy(), b)
        else:
            mean = [sum(g[i] for g in grads[k - 3:k]) / 3 for i in range(len(w0))]
            ref.apply(_tensors(mean), rs)
            for a, b in zip(vs, rs):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
        assert acc.iterations == k // 3 and acc._iterations == k
    for s in acc._accumulators:
        np.testing.assert_array_equal(s.numpy(), 0.0)


def test_accumulation_sums_sparse_rows_without_densifying(monkeypatch):
    v = lamina.Variable(np.zeros((5, 2), np.float32))
    opt = optimizers.SGD(1.0, gradient_accumulation_steps=2)
    monkeypatch.setattr(IndexedSlices, "to_dense", lambda self: (_ for _ in ()).throw(AssertionError("densified")))
    opt.apply([IndexedSlices(np.ones((2, 2), np.float32), np.array([3, 3]), (5, 2))], [v])
    np.testing.assert_array_equal(opt._accumulators[0].numpy()[3], [2.0, 2.0])
    opt.apply([IndexedSlices(np.ones((1, 2), np.float32), np.array([1]), (5, 2))], [v])
    np.testing.assert_array_equal(v.numpy(), [[0, 0], [-0.5, -0.5], [0, 0], [-1, -1], [0, 0]])


def test_schedules_see_every_call_and_bias_corrections_the_updates():
    # Keras: the learning rate follows the calls of apply, Adam's step count the updates
    sched = schedules.PiecewiseConstantDecay([1, 3], [1.0, 0.5, 0.25])
    opt = optimizers.SGD(sched, gradient_accumulation_steps=2)
    v = lamina.Variable(np.zeros(1, np.float32))
    for _ in range(4):
        opt.apply(_tensors([np.ones(1, np.float32)]), [v])
    assert v.numpy()[0] == pytest.approx(-(1.0 + 0.5))     # updates at calls 1 and 3 (0-based): rates 1.0, 0.5
    assert opt.iterations == 2


def test_iterations_setter_keeps_the_position_in_the_accumulation():
    opt = optimizers.SGD(gradient_accumulation_steps=4)
    opt._iterations = 6
    opt.iterations = opt.iterations
    assert opt._iterations == 6
    opt.iterations = 3
    assert opt._iterations == 14


def test_state_saved_mid_accumulation_resumes_exactly():
    w0, grads = make_data(2, steps=7)
    full = optimizers.Adam(0.01, gradient_accumulation_steps=3, use_ema=True)
    _, vs = run_lamina(full, w0, grads[:4])
    state, weights = saved(full), [v.numpy() for v in vs]
    for gs in grads[4:]:
        full.apply(_tensors(gs), vs)
    again = optimizers.Adam(0.01, gradient_accumulation_steps=3, use_ema=True)
    vs2 = [lamina.Variable(w, name=f"w{i}") for i, w in enumerate(weights)]
    again.build(vs2)
    again.load_own_variables({str(i): s for i, s in enumerate(state)})
    assert again._iterations == 4
    for gs in grads[4:]:
        again.apply(_tensors(gs), vs2)
    for a, b in zip(vs + full.variables, vs2 + again.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("name", ["Adadelta", "Adamax", "Nadam", "Ftrl", "Lion", "Lamb", "Adafactor"])
def test_state_and_updates_on_a_queued_device_equal_cpu0(name):
    # cpu:1 runs its kernels on its own worker thread: every kernel (and the state's fill, axpby and
    # scatter-add) is queued; the results equal cpu:0's bit for bit
    w0, grads = make_data(5)

    def run(dev):
        with lamina.device(dev):
            vs = [lamina.Variable(w, name=f"w{i}") for i, w in enumerate(w0)]
        opt = getattr(optimizers, name)(0.01, use_ema=True, gradient_accumulation_steps=2, weight_decay=0.1)
        for gs in grads:
            opt.apply([IndexedSlices(g, np.arange(g.shape[0]), g.shape) if g.ndim == 2 else lamina.convert_to_tensor(g)
                       for g in gs], vs)
        assert all(s.device.name == dev for s in opt.variables)
        return [v.numpy() for v in vs] + saved(opt)
    for a, b in zip(run("cpu:1"), run("cpu:0")):
        np.testing.assert_array_equal(a, b)


# ---- exponential moving average -----------------------------------------------------------------

def test_moving_average_follows_keras_formula_and_finalize_writes_it():
    w0, grads = make_data(3)
    opt = optimizers.SGD(0.1, use_ema=True, ema_momentum=0.8)
    vs = [lamina.Variable(w) for w in w0]
    avg = None
    for gs in grads:
        opt.apply(_tensors(gs), vs)
        now = [v.numpy().astype(np.float64) for v in vs]
        avg = now if avg is None else [0.8 * a + 0.2 * w for a, w in zip(avg, now)]   # first step: the weights
    for s, a in zip(opt._averages, avg):
        np.testing.assert_allclose(s.numpy(), a, rtol=1e-6, atol=1e-7)
    opt.finalize_variable_values(vs)
    for v, a in zip(vs, avg):
        np.testing.assert_allclose(v.numpy(), a, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="no moving average"):
        opt.finalize_variable_values([lamina.Variable(np.zeros(2, np.float32))])


def test_overwrite_frequency_writes_the_average_into_the_weights():
    v = lamina.Variable(np.zeros(1, np.float32))
    opt = optimizers.SGD(1.0, use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=2)
    seen = []
    for _ in range(4):
        opt.apply(_tensors([np.ones(1, np.float32)]), [v])
        seen.append(float(v.numpy()[0]))
    # step 1: w=-1, avg=-1 (the first average is the weights); step 2: w=-2, avg=-1.5, overwritten;
    # step 3: w=-2.5, avg=-2; step 4: w=-3.5, avg=-2.75, overwritten
    assert seen == [-1.0, -1.5, -2.5, -2.75]


def test_finalize_without_ema_changes_nothing():
    v = lamina.Variable(np.ones(2, np.float32))
    optimizers.SGD().finalize_variable_values([v])
    np.testing.assert_array_equal(v.numpy(), 1.0)


# ---- loss scaling, weight decay exclusions, arguments -------------------------------------------

def test_loss_scale_factor_divides_the_gradients_and_scales_the_loss():
    w0, grads = make_data(4)
    plain, _ = run_lamina(optimizers.Adam(0.01), w0, grads)
    opt = optimizers.Adam(0.01, loss_scale_factor=8.0)
    assert float(opt.scale_loss(lamina.convert_to_tensor(np.float32(2.0)))) == 16.0
    scaled, _ = run_lamina(opt, w0, [[g * 8 for g in gs] for gs in grads])
    for a, b in zip(scaled, plain):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_loss_scale_factor_warns_when_scale_loss_was_never_called():
    v = lamina.Variable(np.zeros(2, np.float32))
    opt = optimizers.SGD(loss_scale_factor=4.0)
    with pytest.warns(UserWarning, match="scale_loss"):
        opt.apply(_tensors([np.ones(2, np.float32)]), [v])
    opt2 = optimizers.SGD(loss_scale_factor=4.0)
    opt2.scale_loss(lamina.convert_to_tensor(np.float32(1.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt2.apply(_tensors([np.ones(2, np.float32)]), [v])


@pytest.mark.parametrize("make", [optimizers.SGD, optimizers.Adam, optimizers.Lamb])
def test_exclude_from_weight_decay(make):
    kernel = lamina.Variable(np.ones((2, 2), np.float32), name="kernel")
    bias = lamina.Variable(np.ones(2, np.float32), name="bias")
    other = lamina.Variable(np.ones(2, np.float32), name="other")
    opt = make(learning_rate=0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_list=[other], var_names=["bias"])
    zero = [lamina.convert_to_tensor(np.zeros(s, np.float32)) for s in ((2, 2), (2,), (2,))]
    opt.apply(zero, [kernel, bias, other])
    np.testing.assert_allclose(kernel.numpy(), 1 - 0.5 * 0.1, rtol=1e-6)
    np.testing.assert_array_equal(bias.numpy(), 1.0)
    np.testing.assert_array_equal(other.numpy(), 1.0)
    with pytest.raises(ValueError, match="before the optimizer is built"):
        opt.exclude_from_weight_decay(var_names=["kernel"])


@pytest.mark.parametrize("kwargs,match", [
    (dict(gradient_accumulation_steps=1), "gradient_accumulation_steps must be an integer >= 2"),
    (dict(gradient_accumulation_steps=2.5), "gradient_accumulation_steps must be an integer >= 2"),
    (dict(use_ema=True, ema_momentum=1.5), "ema_momentum must be in"),
    (dict(use_ema=True, ema_overwrite_frequency=0.5), "ema_overwrite_frequency must be an integer"),
    (dict(loss_scale_factor=0.0), "loss_scale_factor must be a positive number"),
])
def test_arguments_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.Adam(**kwargs)


def test_decay_argument_warns_and_is_ignored_as_keras():
    with pytest.warns(UserWarning, match="decay"):
        opt = optimizers.SGD(decay=0.1)
    assert "decay" not in opt.get_config()
    with pytest.raises(TypeError, match="unrecognized"):
        optimizers.SGD(momentun=0.9)


def test_config_carries_the_new_arguments():
    opt = optimizers.Adam(use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=5, loss_scale_factor=2.0,
                          gradient_accumulation_steps=4)
    config = opt.get_config()
    assert (config["use_ema"], config["ema_momentum"], config["ema_overwrite_frequency"],
            config["loss_scale_factor"], config["gradient_accumulation_steps"]) == (True, 0.9, 5, 2.0, 4)
    assert optimizers.Adam.from_config(config).get_config() == config


def test_mismatched_state_names_the_extra_variables():
    v = lamina.Variable(np.zeros(2, np.float32))
    opt = optimizers.SGD(momentum=0.5, use_ema=True)
    opt.build([v])
    with pytest.raises(ValueError, match=r"has 4 variables .*moving averages \(use_ema\).*the file has 3"):
        opt.load_own_variables({"0": np.int64(0), "1": np.float32(0.1), "2": np.zeros(2, np.float32)})


# ---- Keras parity of the base features with the existing optimizers -----------------------------

KERAS_CONFIGS = [
    ("SGD", dict(learning_rate=0.1, momentum=0.9, gradient_accumulation_steps=2, clipnorm=0.5)),
    ("SGD", dict(learning_rate=0.1, use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=2)),
    ("Adam", dict(learning_rate=0.01, weight_decay=0.1, gradient_accumulation_steps=3, use_ema=True)),
    ("Adam", dict(learning_rate=0.01, amsgrad=True, loss_scale_factor=4.0, global_clipnorm=1.0)),
    ("AdamW", dict(learning_rate={"class_name": "CosineDecay", "config": {"initial_learning_rate": 0.02,
                                                                       "decay_steps": 4}},
                   gradient_accumulation_steps=2, use_ema=True, ema_overwrite_frequency=1)),
    ("RMSprop", dict(learning_rate=0.01, momentum=0.5, centered=True, gradient_accumulation_steps=2)),
    ("Adagrad", dict(learning_rate=0.1, use_ema=True, clipvalue=0.5)),
]


@pytest.mark.parametrize("name,config", KERAS_CONFIGS, ids=[f"{n}-{config_id(c)}" for n, c in KERAS_CONFIGS])
def test_against_keras_and_state_both_ways(name, config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # loss_scale_factor without scale_loss: the gradients are given
        check_keras(getattr(optimizers, name), config)


# ---- in fit ---------------------------------------------------------------------------------------

def _model(seed=0):
    rng = np.random.default_rng(seed)
    m = lamina.Sequential([lamina.Input(shape=(3,)), lamina.layers.Dense(2)])
    m.set_weights([rng.standard_normal((3, 2)).astype(np.float32), np.zeros(2, np.float32)])
    return m


def _xy():
    rng = np.random.default_rng(9)
    return rng.standard_normal((16, 3)).astype(np.float32), rng.standard_normal((16, 2)).astype(np.float32)


def test_fit_with_accumulation_equals_fit_on_the_joined_batches():
    # mse is a mean over the batch: the mean of two half-batch gradients is the full batch's
    x, y = _xy()
    a, b = _model(), _model()
    a.compile(optimizer=optimizers.SGD(0.1, momentum=0.5, gradient_accumulation_steps=2), loss="mse")
    b.compile(optimizer=optimizers.SGD(0.1, momentum=0.5), loss="mse")
    a.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    b.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)
    assert a.optimizer.iterations == b.optimizer.iterations == 4


@pytest.mark.parametrize("freq", [None, 3])
def test_fit_with_ema_ends_on_the_average_as_keras(freq):
    from keras_ref import keras_or_none
    k = keras_or_none()
    if k is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    x, y = _xy()
    m = _model()
    w0 = m.get_weights()
    m.compile(optimizer=optimizers.SGD(0.1, use_ema=True, ema_momentum=0.7, ema_overwrite_frequency=freq),
              loss="mse")
    m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    km = k.Sequential([k.Input(shape=(3,)), k.layers.Dense(2)])
    km.set_weights(w0)
    km.compile(optimizer=k.optimizers.SGD(0.1, use_ema=True, ema_momentum=0.7, ema_overwrite_frequency=freq),
               loss="mse")
    km.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for p, q in zip(m.get_weights(), km.get_weights()):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)


def test_fit_with_loss_scale_factor_equals_fit_without():
    x, y = _xy()
    a, b = _model(), _model()
    a.compile(optimizer=optimizers.SGD(0.1, loss_scale_factor=64.0), loss="mse")
    b.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    b.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(clipnorm=1.0), dict(global_clipnorm=1.0)])
def test_gradient_clipping_reads_nothing_back_from_the_device(kw):
    """Norms and scales stay tensors (a host read per step would sync a GPU's stream): the
    update is recorded without any kernel handing a value to Python, and equals Keras's formulas."""
    from lamina.models.replay import _record
    v1, v2 = lamina.Variable(np.ones(2, np.float32)), lamina.Variable(np.ones(2, np.float32))
    g1, g2 = (lamina.convert_to_tensor(np.array(a, np.float32)) for a in ([3.0, 4.0], [0.0, 12.0]))
    opt = lamina.optimizers.SGD(1.0, **kw)
    opt.build([v1, v2])
    _, rec = _record(lambda: opt.apply([g1, g2], [v1, v2]))
    assert rec.abort is None
    if "clipnorm" in kw:   # each gradient to norm 1: [0.6, 0.8], [0, 1]
        want = [[0.4, 0.2], [1.0, 0.0]]
    else:                  # the global norm 13 -> 1
        want = [[1 - 3 / 13, 1 - 4 / 13], [1.0, 1 - 12 / 13]]
    np.testing.assert_allclose(v1.numpy(), want[0], rtol=1e-6)
    np.testing.assert_allclose(v2.numpy(), want[1], rtol=1e-6)


def test_iterations_and_learning_rate_read_as_keras_variables():
    import copy
    import pickle

    from lamina import optimizers
    opt = optimizers.SGD(0.1)
    v = lamina.Variable(np.ones(3, np.float32))
    opt.apply([lamina.ops.ones((3,))], [v])
    it, lr = opt.iterations, opt.learning_rate
    assert it == 1 and isinstance(it, int) and it.numpy().dtype == np.int64 and int(it.numpy()) == 1
    assert lr == 0.1 and isinstance(lr, float) and lr.numpy().dtype == np.float32 and lr.value == 0.1
    assert it.shape == () == lr.shape and it.dtype == "int64" and lr.dtype == "float32"
    assert float(lamina.ops.convert_to_numpy(lr)) == pytest.approx(0.1)
    opt.learning_rate.assign(0.05)
    assert opt.learning_rate == 0.05 and type(opt._learning_rate) is float
    opt.iterations.assign(10)
    opt.iterations.assign_add(np.int64(2))
    assert opt.iterations == 12 and type(opt.iterations + 1) is int
    assert type(pickle.loads(pickle.dumps(opt.iterations))) is int
    assert type(copy.deepcopy(opt.learning_rate)) is float
    other = optimizers.Adam(learning_rate=opt.learning_rate)   # a plain float inside
    assert type(other._learning_rate) is float and other.learning_rate == 0.05
    sched = optimizers.SGD(optimizers.schedules.ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match="comes from .*ExponentialDecay.*cannot be assigned.*optimizer.learning_rate ="):
        sched.learning_rate.assign(0.3)
    before = v.numpy().copy()
    opt.apply([lamina.ops.ones((3,))], [v])   # the assigned rate is the one used
    np.testing.assert_allclose(before - v.numpy(), 0.05, rtol=1e-6)
