"""Sparse (row) gradients in the optimizers: N steps with IndexedSlices gradients -- duplicate and
out-of-order ids -- equal N steps with the densified gradients, for every optimizer and clipping
option (and with gradient accumulation and EMA); weight decay and clipping as Keras 3 defines
them; fit with an Embedding unchanged."""
import numpy as np
import pytest

import lamina
from lamina import ops, optimizers
from lamina.backend import sparse
from lamina.backend.sparse import IndexedSlices

OPTIMIZERS = {
    "sgd": lambda **kw: optimizers.SGD(0.1, **kw),
    "sgd_momentum": lambda **kw: optimizers.SGD(0.1, momentum=0.9, **kw),
    "sgd_nesterov": lambda **kw: optimizers.SGD(0.1, momentum=0.9, nesterov=True, **kw),
    "sgd_decay": lambda **kw: optimizers.SGD(0.1, weight_decay=0.05, **kw),
    "adam": lambda **kw: optimizers.Adam(0.01, **kw),
    "adam_amsgrad": lambda **kw: optimizers.Adam(0.01, amsgrad=True, **kw),
    "adamw": lambda **kw: optimizers.AdamW(0.01, weight_decay=0.1, **kw),
    "rmsprop": lambda **kw: optimizers.RMSprop(0.01, **kw),
    "rmsprop_centered_momentum": lambda **kw: optimizers.RMSprop(0.01, momentum=0.5, centered=True, **kw),
    "adagrad": lambda **kw: optimizers.Adagrad(0.05, **kw),
    "adagrad_decay": lambda **kw: optimizers.Adagrad(0.05, weight_decay=0.02, **kw),
    "adadelta": lambda **kw: optimizers.Adadelta(0.5, **kw),
    "adamax": lambda **kw: optimizers.Adamax(0.01, weight_decay=0.05, **kw),
    "nadam": lambda **kw: optimizers.Nadam(0.01, **kw),
    "ftrl": lambda **kw: optimizers.Ftrl(0.1, l1_regularization_strength=0.01,
                                         l2_shrinkage_regularization_strength=0.01, **kw),
    "lion": lambda **kw: optimizers.Lion(0.01, **kw),
    "lamb": lambda **kw: optimizers.Lamb(0.01, weight_decay=0.05, **kw),
    "adafactor": lambda **kw: optimizers.Adafactor(0.05, **kw),
    "adam_accumulated_ema": lambda **kw: optimizers.Adam(0.01, gradient_accumulation_steps=2, use_ema=True, **kw),
}
CLIPPING = {"none": {}, "clipnorm": {"clipnorm": 0.5}, "clipvalue": {"clipvalue": 0.05},
            "global_clipnorm": {"global_clipnorm": 0.7}}


def _sparse_grads(rng, V, D, steps, n, dtype=np.int32):
    """Per step: (ids, rows) with repeated, unsorted ids that leave some rows untouched."""
    out = []
    for _ in range(steps):
        ids = rng.integers(0, V - 2, n).astype(dtype)       # rows V-2, V-1 never get a gradient
        ids[: n // 3] = ids[n // 3: 2 * (n // 3)][::-1]    # force duplicates
        out.append((ids, rng.standard_normal((n, D)).astype(np.float32)))
    return out


def _dense(ids, rows, V):
    d = np.zeros((V, rows.shape[1]), np.float64)
    np.add.at(d, ids, rows)
    return d


def _train(make, clip, table0, bias0, steps, sparse_mode):
    opt = make(**clip)
    table, bias = lamina.Variable(table0.copy()), lamina.Variable(bias0.copy())
    for (ids, rows), gb in steps:
        s = IndexedSlices(rows, ids, table0.shape)
        g = s if sparse_mode else ops.convert_to_tensor(s)
        opt.apply([g, ops.convert_to_tensor(gb)], [table, bias])
    return table.numpy(), bias.numpy(), [s.numpy() for s in opt.variables]


@pytest.mark.parametrize("clip", list(CLIPPING))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_sparse_steps_equal_dense_steps(name, clip):
    rng = np.random.default_rng([list(OPTIMIZERS).index(name), list(CLIPPING).index(clip)])
    V, D = 11, 5
    table0 = rng.standard_normal((V, D)).astype(np.float32)
    bias0 = rng.standard_normal((3,)).astype(np.float32)
    steps = [(s, rng.standard_normal(3).astype(np.float32))
             for s in _sparse_grads(rng, V, D, 4, 9, np.int64 if "adam" in name else np.int32)]
    ts, bs, slots_s = _train(OPTIMIZERS[name], CLIPPING[clip], table0, bias0, steps, True)
    td, bd, slots_d = _train(OPTIMIZERS[name], CLIPPING[clip], table0, bias0, steps, False)
    assert not np.array_equal(ts, table0)
    if clip in ("clipnorm", "global_clipnorm"):
        # the norm's double-precision sum runs over u rows instead of V; the factor can differ in its last bit
        tol = dict(rtol=2e-6, atol=1e-7)
        np.testing.assert_allclose(ts, td, **tol)
        np.testing.assert_allclose(bs, bd, **tol)
        for a, b in zip(slots_s, slots_d):
            np.testing.assert_allclose(a, b, **tol)
    else:  # the same float operations row by row: bit for bit
        np.testing.assert_array_equal(ts, td)
        np.testing.assert_array_equal(bs, bd)
        for a, b in zip(slots_s, slots_d):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum", "adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam",
                                  "ftrl", "lion", "lamb", "adafactor", "adam_accumulated_ema"])
def test_large_table_parallel_rows_equal_dense_and_never_densify(name, monkeypatch):
    # above the kernels' parallel grain (32768 elements): threads split rows and segments
    rng = np.random.default_rng(7)
    V, D = 3000, 16
    table0 = rng.standard_normal((V, D)).astype(np.float32)
    steps = [(s, np.zeros(3, np.float32)) for s in _sparse_grads(rng, V, D, 2, 2500, np.int64)]
    td, _, slots_d = _train(OPTIMIZERS[name], {}, table0, np.zeros(3, np.float32), steps, False)

    def no_dense(self):
        raise AssertionError("the optimizer densified a sparse gradient")
    monkeypatch.setattr(IndexedSlices, "to_dense", no_dense)
    old = lamina.backend.num_threads()
    lamina.backend.set_num_threads(2)
    try:
        ts, _, slots_s = _train(OPTIMIZERS[name], {}, table0, np.zeros(3, np.float32), steps, True)
    finally:
        lamina.backend.set_num_threads(old)
    np.testing.assert_array_equal(ts, td)
    for a, b in zip(slots_s, slots_d):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["lamb", "adafactor"])
def test_norms_do_not_depend_on_the_thread_count(name):
    # Lamb's and Adafactor's norms add fixed blocks in order: one thread and two give the same bits
    rng = np.random.default_rng(8)
    V, D = 3000, 16
    table0 = rng.standard_normal((V, D)).astype(np.float32)
    steps = [(s, np.zeros(3, np.float32)) for s in _sparse_grads(rng, V, D, 2, 2500, np.int64)]
    old = lamina.backend.num_threads()
    results = []
    try:
        for n in (1, 2):
            lamina.backend.set_num_threads(n)
            results.append(_train(OPTIMIZERS[name], {}, table0, np.zeros(3, np.float32), steps, True))
    finally:
        lamina.backend.set_num_threads(old)
    for a, b in zip(results[0][:2] + tuple(results[0][2]), results[1][:2] + tuple(results[1][2])):
        np.testing.assert_array_equal(a, b)


def test_sgd_without_momentum_changes_only_the_gradient_rows():
    table0 = np.arange(24, dtype=np.float32).reshape(6, 4)
    v = lamina.Variable(table0)
    rows = np.ones((3, 4), np.float32)
    optimizers.SGD(0.5).apply([IndexedSlices(rows, np.array([4, 1, 4]), (6, 4))], [v])
    want = table0.copy()
    want[4] -= 1.0
    want[1] -= 0.5
    np.testing.assert_array_equal(v.numpy(), want)


def test_adam_moments_decay_on_rows_without_gradient():
    v = lamina.Variable(np.zeros((4, 2), np.float32))
    opt = optimizers.Adam(0.1)
    opt.apply([IndexedSlices(np.ones((1, 2), np.float32), np.array([0]), (4, 2))], [v])
    w1 = v.numpy().copy()
    opt.apply([IndexedSlices(np.ones((1, 2), np.float32), np.array([3]), (4, 2))], [v])
    m = opt.variables[0].numpy()
    np.testing.assert_allclose(m[0], 0.1 * 0.9, rtol=1e-6)     # decayed without a gradient
    assert np.all(v.numpy()[0] < w1[0])                         # and the row kept moving


def test_clipping_uses_the_summed_rows():
    v = lamina.Variable(np.zeros((5, 2), np.float32))
    # id 2 appears twice: its summed row is (0.6, 0.6); clipvalue 0.5 clips the sum, not each part
    g = IndexedSlices(np.full((2, 2), 0.3, np.float32), np.array([2, 2]), (5, 2))
    optimizers.SGD(1.0, clipvalue=0.5).apply([g], [v])
    np.testing.assert_allclose(v.numpy()[2], [-0.5, -0.5], rtol=1e-6)
    v.assign(np.zeros((5, 2), np.float32))
    g = IndexedSlices(np.array([[3, 0], [0, 4], [0, 0]], np.float32), np.array([1, 1, 3]), (5, 2))
    optimizers.SGD(1.0, clipnorm=1.0).apply([g], [v])            # norm of the dense gradient: 5
    np.testing.assert_allclose(v.numpy()[1], [-0.6, -0.8], rtol=1e-6)


def test_weight_decay_and_clip_precedence_follow_keras():
    rng = np.random.default_rng(3)
    w0, g = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    lr, wd = 0.1, 0.2
    for opt, step in [(optimizers.SGD(lr, weight_decay=wd), lambda w: w - lr * g),
                      (optimizers.Adagrad(lr, weight_decay=wd, initial_accumulator_value=0.1),
                       lambda w: w - lr * g / np.sqrt(0.1 + g * g + 1e-7))]:
        v = lamina.Variable(w0)
        opt.apply([ops.convert_to_tensor(g)], [v])
        np.testing.assert_allclose(v.numpy(), step(w0 - w0 * wd * lr), rtol=1e-5, atol=1e-6)
    # Keras applies only one clipping: clipnorm wins over clipvalue
    v = lamina.Variable(np.zeros((2,), np.float32))
    optimizers.SGD(1.0, clipnorm=5.0, clipvalue=0.1).apply([ops.convert_to_tensor(np.array([3.0, 4.0]))], [v])
    np.testing.assert_allclose(v.numpy(), [-3.0, -4.0], rtol=1e-6)


def test_sparse_kernel_errors():
    k = lamina.backend.get_device("cpu").kernels
    v = lamina.Variable(np.zeros((4, 2), np.float32))
    vals = ops.ones((2, 2))
    with pytest.raises(ValueError, match=r"row index 4 at position 1 is out of range for a variable of 4 rows"):
        k.sgd_sparse(v._buf, 2, ops.convert_to_tensor(np.array([0, 4]))._buf, vals._buf, v._buf, 0.1, 0.0, False)
    with pytest.raises(ValueError, match=r"distinct and increasing \(found 3 then 1\)"):
        k.adagrad_sparse(v._buf, 2, ops.convert_to_tensor(np.array([3, 1]))._buf, vals._buf, v._buf, 0.1, 1e-7)
    with pytest.raises(ValueError, match=r"values hold 4 elements, expected 3 rows of 2"):
        k.sgd_sparse(v._buf, 2, ops.convert_to_tensor(np.array([0, 1, 2]))._buf, vals._buf, v._buf, 0.1, 0.0, False)
    with pytest.raises(TypeError, match=r"indices.*int64.*int32"):
        k.sgd_sparse(v._buf, 2, ops.convert_to_tensor(np.array([0, 1], np.int32))._buf, vals._buf, v._buf, 0.1, 0.0, False)
    with pytest.raises(ValueError, match=r"SGD: gradient of shape \(5, 2\) for variable '.*' of shape \(4, 2\)"):
        optimizers.SGD().apply([IndexedSlices(vals, np.array([0, 1]), (5, 2))], [v])
    with pytest.raises(ValueError, match=r"id 9 at flat index 1 is out of range for 4 rows"):
        optimizers.Adam().apply([IndexedSlices(vals, np.array([0, 9]), (4, 2))], [v])


def test_sparse_gradient_on_another_device_is_moved():
    with lamina.device("cpu:1"):
        v = lamina.Variable(np.zeros((4, 2), np.float32))
    g = IndexedSlices(np.ones((2, 2), np.float32), np.array([3, 3]), (4, 2))
    optimizers.SGD(1.0).apply([g], [v])
    np.testing.assert_array_equal(v.numpy()[3], [-2.0, -2.0])
    assert v.device.name == "cpu:1"


class _DenseApply:
    """Wraps an optimizer so that it receives densified gradients (the pre-sparse code path)."""

    def __init__(self, opt):
        self.opt = opt
        self.seen_sparse = 0

    def __call__(self, grads, variables=None):
        self.seen_sparse += sum(sparse.is_indexed_slices(g) for g in grads)
        return type(self.opt).apply(self.opt, [sparse.densify(g) for g in grads], variables)


@pytest.mark.parametrize("make", [lambda: optimizers.Adam(0.02), lambda: optimizers.SGD(0.5, momentum=0.9)])
def test_fit_with_embedding_matches_a_dense_run(make):
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 30, (48, 6)).astype(np.int32)
    y = (ids.mean(1, keepdims=True) > 14).astype(np.float32)

    def run(dense):
        model = lamina.Sequential([lamina.Input(shape=(6,), dtype="int32"), lamina.layers.Embedding(30, 4),
                                   lamina.layers.GlobalAveragePooling1D(), lamina.layers.Dense(1, activation="sigmoid")])
        model.set_weights(weights0)
        opt = make()
        model.compile(optimizer=opt, loss="binary_crossentropy")
        wrapper = _DenseApply(opt)
        if dense:
            opt.apply = wrapper
        hist = model.fit(ids, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        return model.get_weights(), hist.history["loss"], wrapper.seen_sparse

    proto = lamina.Sequential([lamina.Input(shape=(6,), dtype="int32"), lamina.layers.Embedding(30, 4),
                               lamina.layers.GlobalAveragePooling1D(), lamina.layers.Dense(1, activation="sigmoid")])
    weights0 = proto.get_weights()
    ws, ls, _ = run(False)
    wd, ld, seen = run(True)
    assert seen == 3 * 6          # the table's gradient reached the optimizer sparse in every step
    assert ls[-1] < ls[0]
    np.testing.assert_array_equal(ls, ld)
    for a, b in zip(ws, wd):
        np.testing.assert_array_equal(a, b)
