"""The fused optimizer updates on a device under test (tests/gpu/conftest.py) against cpu:0: every
kernel of csrc/cuda/optim_more.cu (and the dense ones of optim.cu / optim_extra.cu), dense and row
(IndexedSlices) gradients, direct update steps and whole training runs, their errors on bad row
ids, and their edge cases (no gradient rows, empty variables, several norm blocks)."""
import re

import numpy as np
import pytest

import lamina
from lamina import layers, optimizers
from lamina.backend import optim as _optim
from lamina.backend.sparse import IndexedSlices

_f32 = np.float32

# name -> (kernel, slot names, scalar arguments after the slots). Slots start at positive values.
NADAM_ARGS = (0.01, 0.1, 0.001, 1e-7, 0.8952, 0.1978, 0.1404, 0.1046, 0.001)
CASES = {
    "sgd": ("sgd", ["velocity"], (0.1, 0.0, False)),
    "sgd_momentum": ("sgd", ["velocity"], (0.1, 0.9, False)),
    "sgd_nesterov": ("sgd", ["velocity"], (0.1, 0.9, True)),
    "adam": ("adam", ["m", "v", "vhat"], (0.01, 0.9, 0.999, 1e-7, False, 0.0)),
    "adam_amsgrad_decay": ("adam", ["m", "v", "vhat"], (0.01, 0.9, 0.999, 1e-7, True, 0.002)),
    "rmsprop": ("rmsprop", ["velocity", "average_gradient", "momentum"], (0.01, 0.9, 0.0, 1e-7, False)),
    "rmsprop_centered_momentum": ("rmsprop", ["velocity", "average_gradient", "momentum"],
                                  (0.01, 0.9, 0.5, 1e-7, True)),
    "adagrad": ("adagrad", ["accumulator"], (0.05, 1e-7)),
    "adadelta": ("adadelta", ["accumulated_grad", "accumulated_delta_var"], (0.5, 0.95, float(_f32(1) - _f32(0.95)),
                                                                             1e-7)),
    "adamax": ("adamax", ["momentum", "norm"], (0.01, 0.1, 0.999, 1e-7, 0.19)),
    "nadam": ("nadam", ["momentum", "velocity"], NADAM_ARGS),
    "ftrl": ("ftrl", ["accumulator", "linear"], (0.1, 0.5, 0.01, 0.02, 0.02)),
    "ftrl_power": ("ftrl", ["accumulator", "linear"], (0.1, 0.7, 0.0, 0.0, 0.0)),
    "lion": ("lion", ["momentum"], (0.01, 0.9, 0.1, 0.99, 0.01)),
    "lamb": ("lamb", ["momentum", "velocity"], (0.01, 0.1, 0.001, 1e-7, 0.1, 0.001)),
    "adafactor": ("adafactor", ["r", "c", "velocity"], (0.05, 0.5, 0.5, 1e-30, 1e-3, 1.0)),
    "adafactor_clipped": ("adafactor", ["r", "c", "velocity"], (0.05, 0.3, 0.7, 1e-30, 1e-3, 0.01)),
}
# The dense kernels of optim.cu, which nvcc may fuse into FMAs: equal within float32 rounding.
_NOT_BITWISE = {("sgd", False), ("adam", False)}


def _slot_init(rng, shape, name):
    if name == "linear":
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)
    return (0.1 + np.abs(rng.standard_normal(shape)) * 0.1).astype(np.float32)


def _adafactor_slots(shape):
    if len(shape) < 2:
        return None, None, (1, 1, max(1, int(np.prod(shape))))
    B, R, C = int(np.prod(shape[:-2])), shape[-2], shape[-1]
    return shape[:-1], shape[:-2] + shape[-1:], (B, R, C)


def _steps(device, case, shape, grads, seed):
    """Three updates of a variable of `shape` with `grads` (dense arrays, or (ids, rows) row
    gradients with sorted distinct int64 ids); the variable and its slots as numpy."""
    kernel, slot_names, scalars = CASES[case]
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(shape).astype(np.float32)
    with lamina.device(device):
        var = lamina.Variable(w0)
        if kernel == "adafactor":
            r_shape, c_shape, (B, R, C) = _adafactor_slots(shape)
            factored = r_shape is not None
            slots = [lamina.Variable(_slot_init(rng, r_shape, "r")) if factored else None,
                     lamina.Variable(_slot_init(rng, c_shape, "c")) if factored else None,
                     lamina.Variable(_slot_init(rng, shape, "velocity"))]
            scalars = (B, R, C, factored) + scalars
        else:
            slots = [lamina.Variable(_slot_init(rng, shape, n)) for n in slot_names]
        for g in grads:
            if isinstance(g, tuple):
                ids, rows = g
                g = IndexedSlices(lamina.convert_to_tensor(rows), lamina.convert_to_tensor(ids), shape, _unique=True)
            else:
                g = lamina.convert_to_tensor(g)
            _optim.update(kernel, var, g, *slots, *scalars)
        return [var.numpy()] + [s.numpy() for s in slots if s is not None]


def _compare(got, want, case, sparse):
    kernel = CASES[case][0]
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        if case == "ftrl_power":   # x^0.7: glibc's powf on the CPU, pow in double rounded once on the GPU
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
        elif (kernel, sparse) in _NOT_BITWISE:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        else:   # the same float operations in the same order
            np.testing.assert_array_equal(g, w)


def _dense_grads(rng, shape, n=3):
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def _row_grads(rng, shape, n=3, rows=None):
    """Row gradients touching a few rows (never row 1 nor the last); the first step has none."""
    V = shape[0]
    out = [(np.zeros(0, np.int64), np.zeros((0,) + shape[1:], np.float32))]
    for _ in range(n - 1):
        ids = np.sort(rng.choice([i for i in range(V - 1) if i != 1], size=rows or max(1, V // 3), replace=False))
        out.append((ids.astype(np.int64), rng.standard_normal((len(ids),) + shape[1:]).astype(np.float32)))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_dense_updates_match_cpu(case, dev):
    rng = np.random.default_rng(list(CASES).index(case))
    for shape in [(11, 6), (7,), (3, 4, 5)]:
        grads = _dense_grads(rng, shape)
        seed = int(rng.integers(1 << 30))
        _compare(_steps(dev, case, shape, grads, seed), _steps("cpu:0", case, shape, grads, seed), case, False)


@pytest.mark.parametrize("case", list(CASES))
def test_row_updates_match_cpu(case, dev):
    """Row gradients on a table, a rank-3 table (Adafactor's rows hold whole lines of the last
    axis) and a vector; rows without a gradient (and a first step with no rows at all)."""
    rng = np.random.default_rng(100 + list(CASES).index(case))
    for shape in [(11, 6), (9, 2, 3), (7,)]:
        grads = _row_grads(rng, shape)
        seed = int(rng.integers(1 << 30))
        got, want = _steps(dev, case, shape, grads, seed), _steps("cpu:0", case, shape, grads, seed)
        _compare(got, want, case, True)


@pytest.mark.parametrize("case", ["lamb", "adafactor", "adafactor_clipped", "adam", "ftrl"])
def test_norms_over_several_blocks_match_cpu(case, dev):
    # Lamb's and Adafactor's norms add blocks of 4096 terms in order: 9100 elements make three
    rng = np.random.default_rng(200 + list(CASES).index(case))
    shape = (70, 130)
    seed = int(rng.integers(1 << 30))
    grads = _dense_grads(rng, shape, 2)
    _compare(_steps(dev, case, shape, grads, seed), _steps("cpu:0", case, shape, grads, seed), case, False)
    grads = _row_grads(rng, shape, 2, rows=20)
    _compare(_steps(dev, case, shape, grads, seed), _steps("cpu:0", case, shape, grads, seed), case, True)


@pytest.mark.parametrize("case", ["adafactor", "lamb", "adadelta", "sgd_momentum"])
@pytest.mark.parametrize("shape", [(0, 4), (3, 0), (0,)])
def test_empty_variables_match_cpu(case, shape, dev):
    # nothing to update -- except Adafactor's r (or c), whose mean over an empty axis is NaN, as on the CPU
    grads = [np.zeros(shape, np.float32)]
    _compare(_steps(dev, case, shape, grads, 3), _steps("cpu:0", case, shape, grads, 3), case, False)
    grads = [(np.zeros(0, np.int64), np.zeros((0,) + shape[1:], np.float32))]
    if shape[1:] == (0,):   # rows of 0 elements: row size 0 raises, as on the CPU
        for d in (dev, "cpu:0"):
            with pytest.raises(ValueError, match="row size 0 (does not divide|is not a multiple)"):
                _steps(d, case, shape, grads, 3)
    else:   # no gradient rows in a table of no rows
        _compare(_steps(dev, case, shape, grads, 3), _steps("cpu:0", case, shape, grads, 3), case, True)


# ---- errors ----------------------------------------------------------------------------------------

def _sparse_call(kernel, k, var, D, ids, vals, slots):
    args = {
        "sgd": (slots[0], 0.1, 0.9, False),
        "adam": (slots[0], slots[1], slots[2], 0.01, 0.9, 0.999, 1e-7, True, 0.0),
        "rmsprop": (slots[0], slots[1], slots[2], 0.01, 0.9, 0.5, 1e-7, True),
        "adagrad": (slots[0], 0.05, 1e-7),
        "adadelta": (slots[0], slots[1], 0.5, 0.95, 0.05, 1e-7),
        "adamax": (slots[0], slots[1], 0.01, 0.1, 0.999, 1e-7, 0.19),
        "nadam": (slots[0], slots[1]) + NADAM_ARGS,
        "ftrl": (slots[0], slots[1], 0.1, 0.5, 0.01, 0.02, 0.02),
        "lion": (slots[0], 0.01, 0.9, 0.1, 0.99, 0.01),
        "lamb": (slots[0], slots[1], 0.01, 0.1, 0.001, 1e-7, 0.1, 0.001),
        "adafactor": (slots[0], slots[1], slots[2], 1, 4, 2, True, 0.05, 0.5, 0.5, 1e-30, 1e-3, 1.0),
    }[kernel]
    getattr(k, kernel + "_sparse")(var, D, ids, vals, *args)


SPARSE_KERNELS = ["sgd", "adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "ftrl", "lion", "lamb",
                  "adafactor"]
BAD_IDS = {
    "out_of_range": ([0, 4, 2], r"row index 4 at position 1 is out of range for a variable of 4 rows"),
    "negative": ([-1, 2], r"row index -1 at position 0 is out of range for a variable of 4 rows"),
    "duplicate": ([0, 2, 2, 3], r"row indices must be distinct and increasing \(found 2 then 2\)"),
    "unsorted": ([3, 1], r"row indices must be distinct and increasing \(found 3 then 1\)"),
    "range_before_order": ([1, 0, 9], r"distinct and increasing \(found 1 then 0\)"),
}


def _error_of(device, kernel, ids):
    """The error (type, message) of a sparse kernel given row ids `ids`, and whether the variable
    and its slots are unchanged."""
    rng = np.random.default_rng(5)
    with lamina.device(device):
        var = lamina.Variable(rng.standard_normal((4, 2)).astype(np.float32))
        if kernel == "adafactor":
            slots = [lamina.Variable(np.ones((4,), np.float32)), lamina.Variable(np.ones((2,), np.float32)),
                     lamina.Variable(np.ones((4, 2), np.float32))]
        else:
            slots = [lamina.Variable(np.ones((4, 2), np.float32)) for _ in range(3)]
        before = [var.numpy()] + [s.numpy() for s in slots]
        ids_t = lamina.convert_to_tensor(np.array(ids, np.int64))
        vals = lamina.convert_to_tensor(np.ones((len(ids), 2), np.float32))
        k = var.device.kernels
        with pytest.raises(Exception) as info:
            _sparse_call(kernel, k, var._buf, 2, ids_t._buf, vals._buf, [s._buf for s in slots])
        after = [var.numpy()] + [s.numpy() for s in slots]
        unchanged = all(np.array_equal(a, b) for a, b in zip(before, after))
        # the device still works
        np.testing.assert_array_equal((var * 1.0).numpy(), before[0])
    return type(info.value), str(info.value), unchanged


@pytest.mark.parametrize("bad", list(BAD_IDS))
@pytest.mark.parametrize("kernel", SPARSE_KERNELS)
def test_bad_row_ids_raise_the_cpu_error_before_any_update(kernel, bad, dev):
    ids, pattern = BAD_IDS[bad]
    got, want = _error_of(dev, kernel, ids), _error_of("cpu:0", kernel, ids)
    assert got == want
    assert got[0] is ValueError and got[2]
    assert kernel + "_sparse: " in got[1]
    assert re.search(pattern, got[1])


def _raised(calls):
    """(type, message) of the error each call raises (each must raise one)."""
    out = []
    for call in calls:
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        out.append((type(info.value), str(info.value)))
    return out


def test_argument_errors_match_cpu(dev):
    def errors(device):
        out = []
        with lamina.device(device):
            var = lamina.Variable(np.zeros((4, 2), np.float32))
            k = var.device.kernels
            ones = lamina.convert_to_tensor(np.ones((2, 2), np.float32))
            ids = lamina.convert_to_tensor(np.array([0, 1], np.int64))
            short = lamina.Variable(np.zeros((3,), np.float32))
            calls = [
                lambda: k.lion_sparse(var._buf, 2, lamina.convert_to_tensor(np.array([0, 1], np.int32))._buf,
                                      ones._buf, var._buf, 0.1, 0.9, 0.1, 0.99, 0.01),
                lambda: k.lamb_sparse(var._buf, 3, ids._buf, ones._buf, var._buf, var._buf, 0.1, 0.1, 0.1, 1e-7,
                                      0.1, 0.1),
                lambda: k.nadam_sparse(var._buf, 2, ids._buf, lamina.convert_to_tensor(np.ones((3, 2)))._buf,
                                       var._buf, var._buf, *NADAM_ARGS),
                lambda: k.adamax(var._buf, short._buf, var._buf, var._buf, 0.01, 0.1, 0.999, 1e-7, 0.19),
                lambda: k.adadelta_sparse(var._buf, 2, ids._buf, ones._buf, var._buf, short._buf, 0.5, 0.95, 0.05,
                                          1e-7),
                lambda: k.ftrl(var._buf, var._buf, short._buf, var._buf, 0.1, 0.5, 0.0, 0.0, 0.0),
                lambda: k.adafactor(var._buf, var._buf, None, None, var._buf, 1, 4, 2, True, 0.05, 0.5, 0.5, 1e-30,
                                    1e-3, 1.0),
                lambda: k.adafactor(var._buf, var._buf, short._buf, short._buf, var._buf, 1, 4, 2, True, 0.05, 0.5,
                                    0.5, 1e-30, 1e-3, 1.0),
                lambda: k.adafactor(var._buf, var._buf, short._buf, short._buf, var._buf, 2, 4, 2, True, 0.05, 0.5,
                                    0.5, 1e-30, 1e-3, 1.0),
                lambda: k.adafactor_sparse(var._buf, 2, ids._buf, ones._buf, short._buf, short._buf, var._buf, 1,
                                           2, 4, True, 0.05, 0.5, 0.5, 1e-30, 1e-3, 1.0),
                lambda: k.sgd_sparse(var._buf, 2, ids._buf, ones._buf, short._buf, 0.1, 0.9, False),
                lambda: k.adam_sparse(var._buf, 2, ids._buf, ones._buf, var._buf, var._buf, short._buf, 0.01, 0.9,
                                      0.999, 1e-7, True, 0.0),
                lambda: k.rmsprop_sparse(var._buf, 2, ids._buf, ones._buf, var._buf, short._buf, var._buf, 0.01, 0.9,
                                         0.0, 1e-7, True),
                lambda: k.adagrad_sparse(var._buf, 2, ids._buf, ones._buf, short._buf, 0.05, 1e-7),
            ]
            out += _raised(calls)
            np.testing.assert_array_equal(var.numpy(), np.zeros((4, 2), np.float32))
        return out

    got, want = errors(dev), errors("cpu:0")
    assert got == want
    assert "expected indices of dtype int64" in got[0][1]
    assert "row size 3 does not divide" in got[1][1]
    assert "values hold 6 elements, expected 2 rows of 2" in got[2][1]
    assert "adafactor: a factored update needs the r and c slots" in got[6][1]
    assert "adafactor_sparse: row size 2 is not a multiple of the last axis 4" in got[9][1]


# ---- optimizers and training ------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": lambda: optimizers.SGD(0.1),
    "sgd_nesterov": lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: optimizers.Adam(0.01),
    "adamw_amsgrad": lambda: optimizers.AdamW(0.01, weight_decay=0.05, amsgrad=True),
    "rmsprop_centered": lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    "adagrad": lambda: optimizers.Adagrad(0.1),
    "adadelta": lambda: optimizers.Adadelta(1.0),
    "adamax": lambda: optimizers.Adamax(0.02),
    "nadam": lambda: optimizers.Nadam(0.01),
    "ftrl": lambda: optimizers.Ftrl(0.1, l1_regularization_strength=0.001, l2_shrinkage_regularization_strength=0.01),
    "lion": lambda: optimizers.Lion(0.003),
    "lamb": lambda: optimizers.Lamb(0.01, weight_decay=0.01),
    "adafactor": lambda: optimizers.Adafactor(0.05),
}
_OWN_KERNELS = {"sgd": ["sgd_sparse"], "sgd_nesterov": ["sgd_sparse"], "adam": ["adam_sparse"],
                "adamw_amsgrad": ["adam_sparse"], "rmsprop_centered": ["rmsprop_sparse"],
                "adagrad": ["adagrad_sparse"]}


def _fit(device, make, x, y):
    lamina.utils.set_random_seed(3)
    inp = lamina.Input((5,), dtype="int32")
    with lamina.device(device):
        h = layers.Embedding(20, 6)(inp)     # an IndexedSlices gradient: the row kernels
        h = layers.Flatten()(h)
        h = layers.Dense(8, activation="relu")(h)   # dense gradients: a matrix and a bias
        out = layers.Dense(3)(h)
    model = lamina.Model(inp, out)
    model.compile(optimizer=make(), loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_training_with_each_optimizer_matches_cpu(name, dev):
    rng = np.random.default_rng(11)
    x = rng.integers(0, 20, size=(16, 5))
    y = rng.integers(0, 3, size=(16,))
    one, two = _fit("cpu:0", OPTIMIZERS[name], x, y), _fit(dev, OPTIMIZERS[name], x, y)
    two.set_weights(one.get_weights())
    before = dict(dev.kernels.fallbacks)
    h1 = one.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    h2 = two.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-4)
    for a, b in zip(two.get_weights(), one.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(two.optimizer.variables, one.optimizer.variables):
        np.testing.assert_allclose(np.asarray(a.numpy(), np.float64), np.asarray(b.numpy(), np.float64),
                                   rtol=1e-4, atol=1e-5)
    if dev.name.startswith("gpu"):
        # the update kernels ran on the device, none on host copies
        kernel = CASES[name][0] if name in CASES else {"adamw_amsgrad": "adam", "rmsprop_centered": "rmsprop",
                                                       "sgd_nesterov": "sgd"}[name]
        names = _OWN_KERNELS.get(name, [kernel, kernel + "_sparse"])
        assert set(names) <= dev.kernels.native
        ran_on_host = {n: dev.kernels.fallbacks.get(n, 0) - before.get(n, 0) for n in names}
        assert not any(ran_on_host.values()), ran_on_host


# *_multi cases: (kernel, number of slots, shared numbers, whether each variable has a number of its own)
MULTI = {
    "adam": ("adam", 3, (0.01, 0.9, 0.999, 1e-7, False), True),
    "adam_amsgrad": ("adam", 3, (0.01, 0.9, 0.999, 1e-7, True), True),
    "sgd": ("sgd", 1, (0.1, 0.0, False), False),
    "sgd_momentum": ("sgd", 1, (0.1, 0.9, False), False),
    "sgd_nesterov": ("sgd", 1, (0.1, 0.9, True), False),
}


@pytest.mark.parametrize("case", list(MULTI))
@pytest.mark.parametrize("device", ["cpu:0", "dev"])
def test_multi_updates_leave_each_variable_as_its_own_update_does(case, device, dev):
    """adam_multi and sgd_multi (an optimizer's step in one call: on a GPU one launch per 24
    variables) leave each variable and its slots exactly as adam / sgd alone does on the same device:
    variables spanning several blocks, an empty one, one decay per variable, more variables than one
    launch takes."""
    kernel, nslots, shared, own = MULTI[case]
    device = dev if device == "dev" else device
    shapes = [(3,), (0,), (70001,), (5, 7)] + [(i + 1,) for i in range(27)]
    rng = np.random.default_rng(2)
    state = [[rng.standard_normal(s).astype(np.float32) for _ in range(2)] +
             [(0.1 + np.abs(rng.standard_normal(s)) * 0.1).astype(np.float32) for _ in range(nslots)] for s in shapes]
    decays = [0.0 if i % 3 else 0.002 for i in range(len(shapes))]
    runs = []
    with lamina.device(device):
        for multi in (False, True):
            ts = [[lamina.Variable(a) for a in s] for s in state]
            if multi:
                _optim.update_many(kernel, [t[0] for t in ts], [t[1] for t in ts],
                                   *[[t[2 + k] for t in ts] for k in range(nslots)], *shared, *([decays] if own else []))
            else:
                for t, wd in zip(ts, decays):
                    _optim.update(kernel, t[0], t[1], *t[2:], *shared, *([wd] if own else []))
            runs.append([[x.numpy() for x in t] for t in ts])
    for one, many in zip(*runs):
        for a, b in zip(one, many):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][0][0], state[0][0])  # it did update


def test_multi_updates_check_every_variable_before_any_update(dev):
    def errors(device):
        out = []
        with lamina.device(device):
            a, b = lamina.Variable(np.zeros((4,), np.float32)), lamina.Variable(np.zeros((3,), np.float32))
            ints = lamina.Variable(np.zeros((3,), np.int32))
            g = lamina.convert_to_tensor(np.ones((4,), np.float32))
            k = a.device.kernels
            calls = [
                lambda: k.adam_multi([a._buf, b._buf], [g._buf, g._buf], [a._buf, b._buf], [a._buf, b._buf],
                                     [a._buf, b._buf], 0.01, 0.9, 0.999, 1e-7, False, [0.0, 0.0]),  # b's gradient
                lambda: k.adam_multi([a._buf, b._buf], [g._buf], [a._buf, b._buf], [a._buf, b._buf],
                                     [a._buf, b._buf], 0.01, 0.9, 0.999, 1e-7, False, [0.0, 0.0]),  # one gradient short
                lambda: k.adam_multi([a._buf, ints._buf], [g._buf, ints._buf], [a._buf, ints._buf],
                                     [a._buf, ints._buf], [a._buf, ints._buf], 0.01, 0.9, 0.999, 1e-7, False,
                                     [0.0, 0.0]),  # an int32 variable
                # b's velocity; one velocity short
                lambda: k.sgd_multi([a._buf, b._buf], [g._buf, b._buf], [a._buf, a._buf], 0.1, 0.9, False),
                lambda: k.sgd_multi([a._buf, b._buf], [g._buf, b._buf], [a._buf], 0.1, 0.0, False),
            ]
            out += _raised(calls)
            np.testing.assert_array_equal(a.numpy(), np.zeros((4,), np.float32))  # the first was not updated
        return out
    got, want = errors(dev), errors("cpu:0")
    assert got == want
    assert "gradient holds 4 elements, the variable 3" in want[0][1]
    assert "for 2 variables, received 1, 2, 2, 2 and 2" in want[1][1]
    assert "sgd_multi: velocity holds 4 elements, the variable 3" in want[3][1]
    assert "sgd_multi: expected one gradient and velocity per variable for 2 variables, received 2 and 1" in want[4][1]


class _AdamWOneByOne(optimizers.AdamW):
    def update_step(self, gradient, variable, learning_rate):
        super().update_step(gradient, variable, learning_rate)


class _SGDOneByOne(optimizers.SGD):
    def update_step(self, gradient, variable, learning_rate):
        super().update_step(gradient, variable, learning_rate)


@pytest.mark.parametrize("classes,kwargs", [
    ((optimizers.AdamW, _AdamWOneByOne), dict(learning_rate=0.01, weight_decay=0.01, amsgrad=True)),
    ((optimizers.SGD, _SGDOneByOne), dict(learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=0.01))],
    ids=["adamw", "sgd"])
def test_optimizers_train_alike_in_one_call_and_variable_by_variable(classes, kwargs, dev):
    """AdamW's and SGD's steps go to adam_multi / sgd_multi; a subclass with its own update_step
    updates each variable itself: the same weights, bit for bit, on the device (a variable excluded
    from the decay too)."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((32, 6)).astype(np.float32), rng.integers(0, 3, 32)
    weights = []
    for cls in classes:
        lamina.utils.set_random_seed(3)
        with lamina.device(dev):
            m = lamina.Sequential([lamina.Input((6,)), layers.Dense(5, activation="relu"), layers.Dense(3)])
            opt = cls(**kwargs)
            opt.exclude_from_weight_decay(var_names=["bias"])
            m.compile(optimizer=opt, loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(x, y, batch_size=8, epochs=2, verbose=0)
        weights.append(m.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
