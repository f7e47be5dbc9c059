"""The optimizer tests' shared parts (as layer_harness.py for layers): numpy transcriptions of
Keras 3's update rules, N steps of a lamina optimizer with dense or IndexedSlices gradients, the
same N steps in real Keras (JAX backend, when it is installed), and the checks each optimizer's
test file runs: check_numpy, check_sparse, check_config, check_keras."""
import inspect
import math

import numpy as np
import pytest

import lamina
from lamina.backend.sparse import IndexedSlices
from keras_ref import keras_or_none

SHAPES = [(7, 4), (4,), (2, 3, 5)]   # a table (sparse-capable), a bias, a rank-3 kernel


def make_data(seed, steps=5, shapes=SHAPES):
    """Initial weights and `steps` gradients per weight; rows 1 and 4 of the table's gradients
    are zero (a sparse gradient leaves them out) and row 2 of the rank-3 one."""
    rng = np.random.default_rng(seed)
    w0 = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(steps)]
    for gs in grads:
        gs[0][[1, 4]] = 0.0
        if len(gs) > 2:
            gs[2][1] = 0.0
    return w0, grads


def to_sparse(g):
    """An IndexedSlices for g's nonzero rows, out of order, the first split in two parts."""
    ids = [i for i in range(g.shape[0]) if np.any(g[i])][::-1]
    vals = [g[i].copy() for i in ids]
    ids.append(ids[0])
    vals.append(vals[0] * 0.75)
    vals[0] = vals[0] - vals[-1]
    return IndexedSlices(np.stack(vals).astype(np.float32), np.array(ids, np.int32), g.shape)


def run_lamina(opt, w0, grads, sparse=False):
    """The weights after applying every step's gradients (sparse: IndexedSlices for rank >= 2)."""
    vs = [lamina.Variable(w.copy(), name=f"w{i}") for i, w in enumerate(w0)]
    for gs in grads:
        opt.apply([to_sparse(g) if sparse and g.ndim >= 2 else lamina.convert_to_tensor(g) for g in gs], vs)
    return [v.numpy() for v in vs], vs


def saved(opt):
    """save_own_variables' values in order."""
    store = {}
    opt.save_own_variables(store)
    return [np.asarray(store[str(i)]) for i in range(len(store))]


def keras():
    return keras_or_none()


def run_keras(name, config, w0, grads, state=None):
    """Keras's weights and optimizer variables after the steps (state: values to load first)."""
    k = keras()
    if isinstance(config.get("learning_rate"), dict):
        config = {**config, "learning_rate": k.optimizers.schedules.deserialize(config["learning_rate"])}
    opt = getattr(k.optimizers, name)(**config)
    vs = [k.Variable(w.copy(), name=f"w{i}") for i, w in enumerate(w0)]
    opt.build(vs)
    if state is not None:
        opt.load_own_variables({str(i): v for i, v in enumerate(state)})
    for gs in grads:
        opt.apply([np.asarray(g) for g in gs], vs)
    return [np.asarray(v) for v in vs], [np.asarray(v) for v in opt.variables], opt


# ---- numpy transcriptions of Keras 3's update_step, in float64 ----------------------------------

def _adadelta(c, w, g, s, t, lr):
    rho, eps = c.get("rho", 0.95), c.get("epsilon", 1e-7)
    ag, ad = s.setdefault("ag", np.zeros_like(w)), s.setdefault("ad", np.zeros_like(w))
    ag[...] = rho * ag + (1 - rho) * g * g
    delta = -np.sqrt(ad + eps) * g / np.sqrt(ag + eps)
    ad[...] = rho * ad + (1 - rho) * delta * delta
    w += lr * delta


def _adamax(c, w, g, s, t, lr):
    b1, b2, eps = c.get("beta_1", 0.9), c.get("beta_2", 0.999), c.get("epsilon", 1e-7)
    m, u = s.setdefault("m", np.zeros_like(w)), s.setdefault("u", np.zeros_like(w))
    m += (g - m) * (1 - b1)
    u[...] = np.maximum(b2 * u, np.abs(g))
    w -= lr * m / ((1 - b1 ** t) * (u + eps))


def _nadam(c, w, g, s, t, lr, shared):
    b1, b2, eps = c.get("beta_1", 0.9), c.get("beta_2", 0.999), c.get("epsilon", 1e-7)
    m, v = s.setdefault("m", np.zeros_like(w)), s.setdefault("v", np.zeros_like(w))
    u_t, u_t1 = b1 * (1 - 0.5 * 0.96 ** t), b1 * (1 - 0.5 * 0.96 ** (t + 1))
    up = shared["u_product"]
    m += (g - m) * (1 - b1)
    v += (g * g - v) * (1 - b2)
    m_hat = u_t1 * m / (1 - up * u_t1) + (1 - u_t) * g / (1 - up)
    w -= lr * m_hat / (np.sqrt(v / (1 - b2 ** t)) + eps)


def _ftrl(c, w, g, s, t, lr):
    p = c.get("learning_rate_power", -0.5)
    l1, l2 = c.get("l1_regularization_strength", 0.0), c.get("l2_regularization_strength", 0.0)
    shrink, beta = c.get("l2_shrinkage_regularization_strength", 0.0), c.get("beta", 0.0)
    acc = s.setdefault("acc", np.full_like(w, c.get("initial_accumulator_value", 0.1)))
    lin = s.setdefault("lin", np.zeros_like(w))
    l2 = l2 + beta / (2 * lr)
    new_acc = acc + g * g
    lin += g + 2 * shrink * w - (new_acc ** -p - acc ** -p) / lr * w
    quadratic = new_acc ** -p / lr + 2 * l2
    w[...] = (np.clip(lin, -l1, l1) - lin) / quadratic
    acc[...] = new_acc


def _lion(c, w, g, s, t, lr):
    b1, b2 = c.get("beta_1", 0.9), c.get("beta_2", 0.99)
    m = s.setdefault("m", np.zeros_like(w))
    w -= lr * np.sign(b1 * m + (1 - b1) * g)
    m[...] = b2 * m + (1 - b2) * g


def _lamb(c, w, g, s, t, lr):
    b1, b2, eps = c.get("beta_1", 0.9), c.get("beta_2", 0.999), c.get("epsilon", 1e-7)
    m, v = s.setdefault("m", np.zeros_like(w)), s.setdefault("v", np.zeros_like(w))
    m += (g - m) * (1 - b1)
    v += (g * g - v) * (1 - b2)
    update = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    wn, un = np.linalg.norm(w), np.linalg.norm(update)
    ratio = wn / un if wn > 0 and un > 0 else 1.0
    w -= ratio * lr * update


def _adafactor(c, w, g, s, t, lr):
    decay, eps1, eps2 = c.get("beta_2_decay", -0.8), c.get("epsilon_1", 1e-30), c.get("epsilon_2", 1e-3)
    clip = c.get("clip_threshold", 1.0)
    rho_t = min(lr, 1 / math.sqrt(t))
    alpha = max(eps2, np.sqrt(np.mean(w * w))) * rho_t
    g2 = g * g + eps1
    beta = 1 - t ** decay
    if w.ndim >= 2:
        r = s.setdefault("r", np.zeros(w.shape[:-1]))
        cc = s.setdefault("c", np.zeros(w.shape[:-2] + w.shape[-1:]))
        r[...] = beta * r + (1 - beta) * g2.mean(-1)
        cc[...] = beta * cc + (1 - beta) * g2.mean(-2)
        v = (r / r.mean(-1, keepdims=True))[..., None] * cc[..., None, :]
    else:
        v = s.setdefault("v", np.zeros_like(w))
        v[...] = beta * v + (1 - beta) * g2
    u = g / np.sqrt(v)
    w -= alpha * u / max(1.0, np.sqrt(np.mean(u * u)) / clip)


RULES = {"Adadelta": _adadelta, "Adamax": _adamax, "Nadam": _nadam, "Ftrl": _ftrl, "Lion": _lion, "Lamb": _lamb,
         "Adafactor": _adafactor}


def run_numpy(name, config, w0, grads):
    """Keras's apply without clipping or accumulation: weight decay, then the rule, in float64."""
    lr = config.get("learning_rate", 0.001)
    wd = config.get("weight_decay")
    ws = [w.astype(np.float64) for w in w0]
    states = [{} for _ in ws]
    shared = {"u_product": 1.0}
    for t, gs in enumerate(grads, 1):
        shared["u_product"] *= config.get("beta_1", 0.9) * (1 - 0.5 * 0.96 ** t)
        for w, g, s in zip(ws, gs, states):
            if wd:
                w -= w * wd * lr
            if name == "Nadam":
                _nadam(config, w, g.astype(np.float64), s, t, lr, shared)
            else:
                RULES[name](config, w, g.astype(np.float64), s, t, lr)
    return ws


# ---- the harness --------------------------------------------------------------------------------

def _close(got, want, rtol, atol, what):
    assert len(got) == len(want), f"{what}: {len(got)} arrays, expected {len(want)}"
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol,
                                   err_msg=f"{what}, array {i}")


def config_id(config):
    """A short test id for a config."""
    return ",".join(f"{k}={v['class_name'] if isinstance(v, dict) else v}" for k, v in config.items()) or "defaults"


def check_numpy(cls, config, rtol=1e-5, atol=1e-6):
    """5 steps (dense gradients) against the numpy transcription of Keras's rule."""
    w0, grads = make_data(len(config))
    got, _ = run_lamina(cls(**config), w0, grads)
    _close(got, run_numpy(cls.__name__, config, w0, grads), rtol, atol, f"{cls.__name__}({config}) against numpy")


def check_sparse(cls, config):
    """5 steps with IndexedSlices gradients (duplicate, unordered ids; rows without gradient)
    equal the steps with the dense gradients bit for bit, weights and optimizer state."""
    w0, grads = make_data(len(config) + 7)
    opt_d, opt_s = cls(**config), cls(**config)
    dense, _ = run_lamina(opt_d, w0, grads)
    sparse, _ = run_lamina(opt_s, w0, grads, sparse=True)
    assert not np.array_equal(sparse[0], w0[0])
    for i, (a, b) in enumerate(zip(sparse + saved(opt_s), dense + saved(opt_d))):
        np.testing.assert_array_equal(a, b, err_msg=f"{cls.__name__}({config}): sparse steps differ from dense "
                                                    f"steps (array {i})")


def check_config(cls, config):
    """get_config round trip, lookup by name and config, and (with Keras) Keras's defaults and
    config keys."""
    opt = cls(**config)
    again = cls.from_config(opt.get_config())
    assert again.get_config() == opt.get_config()
    assert type(lamina.optimizers.get({"class_name": cls.__name__, "config": opt.get_config()})) is cls
    assert isinstance(lamina.optimizers.get(cls.__name__.lower()), cls)
    k = keras()
    if k is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    kcls = getattr(k.optimizers, cls.__name__)

    def defaults(c):
        params = inspect.signature(c.__init__).parameters.values()
        return {p.name: p.default for p in params if p.default is not p.empty}
    base = set(inspect.signature(k.optimizers.Optimizer.__init__).parameters) - {"learning_rate"}
    ours, theirs = ({n: v for n, v in defaults(c).items() if n not in base} for c in (cls, kcls))
    assert ours == theirs, "defaults differ from Keras's"
    # the same config keys and default values (Keras numbers its names; its learning rate is float32)
    mine, keras_config = cls().get_config(), kcls().get_config()
    assert mine == {**keras_config, "name": mine["name"], "learning_rate": mine["learning_rate"]}
    assert mine["learning_rate"] == pytest.approx(keras_config["learning_rate"], rel=1e-7)


def check_keras(cls, config, rtol=1e-5, atol=1e-6):
    """6 steps against real Keras, dense and sparse gradients: weights, every optimizer variable in
    Keras's order (and names) and the iteration count; then the state saved by each goes to the
    other and 3 more steps agree."""
    k = keras()
    if k is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    name = cls.__name__
    w0, grads = make_data(100 + len(config), steps=6)
    kw, kvars, kopt = run_keras(name, config, w0, grads)
    for sparse in (False, True):
        opt = cls(**config)
        got, _ = run_lamina(opt, w0, grads, sparse)
        what = f"{name}({config}){' sparse' if sparse else ''} against Keras"
        _close(got, kw, rtol, atol, what + ": weights")
        _close(saved(opt), kvars, rtol, atol, what + ": optimizer variables")
        assert int(opt.iterations) == int(kopt.iterations)
    # names as Keras's (Keras numbers the names of variables not made from a weight: Nadam's u_product)
    slots = opt._keras_ordered_slots()
    names = [v.name for v in kopt.variables[len(kopt.variables) - len(slots):]]
    n = len(slots) - len(opt._extra_variables())
    assert [s.name for s in slots[:n]] == names[:n]
    # state moves both ways, then training continues alike
    more = make_data(200 + len(config), steps=3)[1]
    kw2, _, _ = run_keras(name, config, got, more, state=saved(opt))
    opt2 = cls(**config)
    vs2 = [lamina.Variable(w.copy(), name=f"w{j}") for j, w in enumerate(got)]
    opt2.build(vs2)
    opt2.load_own_variables({str(j): v for j, v in enumerate(kvars)})
    for gs in more:
        opt2.apply([lamina.convert_to_tensor(g) for g in gs], vs2)
    _close([v.numpy() for v in vs2], kw2, rtol, atol, f"{name}({config}) resumed from Keras's state")
