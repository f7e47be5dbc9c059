"""backend/control_flow.py: cond, switch, loops, scans, maps and custom_gradient, against plain
Python / numpy and Keras, with gradients through the loop bodies and the errors."""
import collections

import numpy as np
import pytest

import lamina
from lamina import ops
from keras_ref import keras_or_none
from opcheck import check_grad

RNG = np.random.default_rng(3)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def needs_keras():
    k = keras_or_none()
    if k is None:
        pytest.skip("Keras is not installed: no reference for Keras's own semantics")
    return k


def grad_of(fn, *xs):
    ts = [lamina.convert_to_tensor(np.asarray(x, np.float32)) for x in xs]
    with lamina.GradientTape() as tape:
        tape.watch(ts)
        y = fn(*ts)
    return y, tape.gradient(y, ts)


# ---- cond and switch ----------------------------------------------------------------------------

def test_cond_picks_a_branch_from_bools_and_tensors():
    assert ops.cond(True, lambda: "a", lambda: "b") == "a"
    assert ops.cond(lamina.convert_to_tensor(np.array([0])), lambda: "a", lambda: "b") == "b"
    x = lamina.convert_to_tensor(np.float32(2.0))
    assert float(ops.cond(x > 1.0, lambda: x * 3, lambda: x)) == 6.0
    y, (g,) = grad_of(lambda t: ops.cond(ops.sum(t) > 0, lambda: ops.sum(t * t), lambda: ops.sum(t)), [1.0, 2.0])
    np.testing.assert_allclose(g.numpy(), [2.0, 4.0])


def test_cond_errors():
    with pytest.raises(ValueError, match=r"cond: pred must be a scalar, received a tensor of shape \(2,\)"):
        ops.cond(lamina.convert_to_tensor(np.array([True, False])), lambda: 1, lambda: 2)
    with pytest.raises(TypeError, match=r"cond: true_fn must be callable, received int"):
        ops.cond(True, 1, lambda: 2)
    with pytest.raises(TypeError, match=r"cond: pred must be a scalar bool, received 'yes'"):
        ops.cond("yes", lambda: 1, lambda: 2)


def test_switch_clamps_the_index():
    branches = [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b]
    for index, want in ((0, 7), (1, 3), (2, 10), (-4, 7), (9, 10), (lamina.convert_to_tensor(np.int32(1)), 3)):
        assert ops.switch(index, branches, 5, 2) == want
    keras = keras_or_none()
    if keras is not None:
        x, y = np.float32(2.0), np.float32(0.5)
        kb = [lambda a, b: a + b, lambda a, b: a - b]
        for i in (-1, 0, 1, 5):
            assert float(ops.switch(i, kb, x, y)) == float(keras.ops.switch(i, kb, x, y))
    with pytest.raises(ValueError, match=r"switch: branches must be a non-empty list of callables"):
        ops.switch(0, [], 1)
    with pytest.raises(TypeError, match=r"switch: index must be an integer, received 1.5"):
        ops.switch(1.5, branches, 1, 2)
    with pytest.raises(TypeError, match=r"switch: branches\[1\] must be callable"):
        ops.switch(0, [lambda: 1, 2])


# ---- loops --------------------------------------------------------------------------------------

def test_while_loop_keeps_structure():
    assert int(ops.while_loop(lambda i: i < 10, lambda i: i + 1, 0)) == 10
    x, y = ops.while_loop(lambda x, y: x < 10, lambda x, y: (x + 1, y + 1), (0, 1))
    assert (int(x), int(y)) == (10, 11)
    out = ops.while_loop(lambda a, b: a < 5, lambda a, b: [a + 2, b * 2.0], [1, np.float32(1.0)])
    assert isinstance(out, list) and int(out[0]) == 5 and float(out[1]) == 4.0
    assert int(ops.while_loop(lambda i: True, lambda i: i + 1, 0, maximum_iterations=7)) == 7
    assert int(ops.while_loop(lambda i: i < 3, lambda i: i + 1, 5)) == 5      # never enters
    Pair = collections.namedtuple("Pair", "i s")
    out = ops.while_loop(lambda i, s: i < 4, lambda i, s: (i + 1, s + i), Pair(0, 0))
    assert isinstance(out, Pair) and int(out.s) == 6
    keras = keras_or_none()
    if keras is not None:
        kx, ky = keras.ops.while_loop(lambda x, y: x < 10, lambda x, y: (x + 1, y + 1), (0, 1))
        assert (int(x), int(y)) == (int(kx), int(ky))


def test_while_loop_gradient_flows_through_the_body():
    # x -> x * 1.5 until it exceeds 10: from 1.0 that is 6 steps, d/dx = 1.5 ** 6
    y, (g,) = grad_of(lambda t: ops.while_loop(lambda v: ops.all(v < 10.0), lambda v: v * 1.5, t), [1.0])
    np.testing.assert_allclose(y.numpy(), [1.5 ** 6], rtol=1e-6)
    np.testing.assert_allclose(g.numpy(), [1.5 ** 6], rtol=1e-6)


def test_while_loop_errors():
    with pytest.raises(ValueError, match=r"while_loop: body's result must keep the structure of its initial value "
                                         r"\(2 tensor\(s\)\), received 1"):
        ops.while_loop(lambda a, b: a < 3, lambda a, b: a + 1, (0, 0))
    with pytest.raises(ValueError, match=r"while_loop: body's result must keep each tensor's shape and dtype; entry 0 "
                                         r"was shape \(\) int64, received shape \(\) float32"):
        ops.while_loop(lambda i: i < 3, lambda i: i + 0.5, 0)
    with pytest.raises(ValueError, match=r"while_loop: cond's result must be a scalar"):
        ops.while_loop(lambda v: v < 3, lambda v: v + 1, np.zeros(2, np.float32))
    with pytest.raises(TypeError, match=r"while_loop: body must be callable"):
        ops.while_loop(lambda i: i < 3, None, 0)
    with pytest.raises(ValueError, match=r"while_loop: maximum_iterations must be a non-negative integer"):
        ops.while_loop(lambda i: i < 3, lambda i: i + 1, 0, maximum_iterations=-1)


def test_fori_loop():
    assert ops.fori_loop(0, 10, lambda i, s: s + i, 0) == 45
    assert ops.fori_loop(3, 3, lambda i, s: s + i, 7) == 7
    t = lamina.convert_to_tensor(np.int64(4))
    assert int(ops.fori_loop(1, t, lambda i, s: s * i, lamina.convert_to_tensor(np.int64(1)))) == 6
    keras = keras_or_none()
    if keras is not None:
        body = lambda i, s: s + i * i  # noqa: E731
        assert int(ops.fori_loop(2, 6, body, 0)) == int(keras.ops.fori_loop(2, 6, body, 0))
    y, (g,) = grad_of(lambda x: ops.fori_loop(0, 3, lambda i, s: s * x + i, x), [2.0])
    # s0 = x, s1 = x^2, s2 = x^3 + 1, s3 = x^4 + x + 2: d/dx = 4 x^3 + 1
    np.testing.assert_allclose(g.numpy(), [4 * 8.0 + 1])
    with pytest.raises(TypeError, match=r"fori_loop: upper must be an integer, received 2.5"):
        ops.fori_loop(0, 2.5, lambda i, s: s, 0)


# ---- scans and maps -----------------------------------------------------------------------------

@pytest.mark.parametrize("reverse", [False, True])
def test_scan_cumulative_sum_matches_keras(reverse):
    xs = f32(6, 3)
    carry, ys = ops.scan(lambda c, x: (c + x, c * 2.0), np.zeros(3, np.float32), xs, reverse=reverse)
    order = range(5, -1, -1) if reverse else range(6)
    c, want = np.zeros(3, np.float32), np.zeros((6, 3), np.float32)
    for i in order:
        want[i] = c * 2.0
        c = c + xs[i]
    np.testing.assert_allclose(carry.numpy(), c, rtol=1e-6)
    np.testing.assert_allclose(ys.numpy(), want, rtol=1e-6)
    keras = keras_or_none()
    if keras is not None:
        kc, ky = keras.ops.scan(lambda c, x: (c + x, c * 2.0), np.zeros(3, np.float32), xs, reverse=reverse)
        np.testing.assert_allclose(carry.numpy(), np.asarray(kc), rtol=1e-6)
        np.testing.assert_allclose(ys.numpy(), np.asarray(ky), rtol=1e-6)


def test_scan_structures_length_and_none_ys():
    xs = {"a": f32(4, 2), "b": f32(4)}
    (s, n), ys = ops.scan(lambda c, x: ((c[0] + x["a"] * x["b"][None], c[1] + 1), {"p": x["b"] * 2, "q": [c[1]]}),
                          (np.zeros(2, np.float32), 0), xs)
    np.testing.assert_allclose(s.numpy(), (xs["a"] * xs["b"][:, None]).sum(0), rtol=1e-5)
    assert int(n) == 4
    np.testing.assert_allclose(ys["p"].numpy(), xs["b"] * 2)
    np.testing.assert_array_equal(ys["q"][0].numpy(), [0, 1, 2, 3])
    carry, ys = ops.scan(lambda c, _: (c * 2, None), np.float32(1.0), length=5)
    assert float(carry) == 32.0 and ys is None
    carry, ys = ops.scan(lambda c, x: (c + x, x * 3), np.float32(0.0), np.zeros((0,), np.float32))
    assert float(carry) == 0.0 and ys.shape == (0,) and ys.dtype == "float32"


def test_scan_gradient_through_every_step():
    def ref(x0, xs):
        c, out = x0, []
        for x in xs:
            c = c * x + 1.0
            out.append(c * c)
        return np.stack(out)
    x0, xs = f32(3), f32(5, 3)
    check_grad(lambda a, b: ops.scan(lambda c, x: (c * x + 1.0, (c * x + 1.0) ** 2), a, b)[1], ref, [x0, xs])


def test_scan_errors():
    with pytest.raises(ValueError, match=r"scan: give xs to scan over, or length when xs is None"):
        ops.scan(lambda c, x: (c, x), 0)
    with pytest.raises(ValueError, match=r"scan: unroll must be a positive integer or a bool, received 0"):
        ops.scan(lambda c, x: (c, x), 0, np.zeros(3), unroll=0)
    with pytest.raises(ValueError, match=r"scan: length=4 does not match the leading dimension 3 of xs"):
        ops.scan(lambda c, x: (c, x), 0, np.zeros(3), length=4)
    with pytest.raises(ValueError, match=r"scan: the tensors in xs must share their leading dimension"):
        ops.scan(lambda c, x: (c, x), 0, [np.zeros(3), np.zeros(4)])
    with pytest.raises(ValueError, match=r"scan: f must return a pair \(new_carry, y\)"):
        ops.scan(lambda c, x: c, 0, np.zeros(3))
    with pytest.raises(ValueError, match=r"scan: the carry returned by f must keep each tensor's shape and dtype"):
        ops.scan(lambda c, x: (ops.stack([c, c]), x), np.float32(0), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"scan: the ys returned by f must keep their shapes and dtypes"):
        ops.scan(lambda c, x: (c + 1, ops.zeros((int(c) + 1,))), 0, np.zeros(3, np.float32))


def test_map_and_vectorized_map():
    xs = np.arange(5)
    ys = ops.map(lambda x: {"y1": x ** 2, "y2": x * 10}, xs)
    np.testing.assert_array_equal(ys["y1"].numpy(), xs ** 2)
    np.testing.assert_array_equal(ys["y2"].numpy(), xs * 10)
    m = f32(4, 3)
    np.testing.assert_allclose(ops.vectorized_map(lambda r: ops.sum(r * r), m).numpy(), (m * m).sum(1), rtol=1e-6)
    a, b = f32(4, 2), f32(4, 2)
    np.testing.assert_allclose(ops.vectorized_map(lambda ab: ab[0] * ab[1], [a, b]).numpy(), a * b, rtol=1e-6)
    keras = keras_or_none()
    if keras is not None:
        np.testing.assert_allclose(ops.map(lambda r: ops.max(r), m).numpy(), np.asarray(keras.ops.map(lambda r:
                                   keras.ops.max(r), m)))
    y, (g,) = grad_of(lambda t: ops.sum(ops.map(lambda r: ops.sum(r) ** 2, t)), m)
    np.testing.assert_allclose(g.numpy(), np.repeat(2 * m.sum(1, keepdims=True), 3, axis=1), rtol=1e-5)
    with pytest.raises(TypeError, match=r"map: f must be callable"):
        ops.map(3, xs)
    with pytest.raises(ValueError, match=r"vectorized_map: elements have a leading dimension of 0"):
        ops.vectorized_map(lambda x: x, np.zeros((0, 2)))


@pytest.mark.parametrize("shape,axis,reverse", [((7,), 0, False), ((8, 3), 0, True), ((2, 9), 1, False),
                                                ((4, 5, 2), 1, True), ((1,), 0, False)])
def test_associative_scan_matches_keras_and_numpy(shape, axis, reverse):
    x = f32(*shape)
    got = ops.associative_scan(lambda a, b: a + b, x, reverse=reverse, axis=axis)
    want = np.flip(np.cumsum(np.flip(x, axis), axis), axis) if reverse else np.cumsum(x, axis)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    keras = keras_or_none()
    if keras is not None:
        kw = np.asarray(keras.ops.associative_scan(lambda a, b: a * b, x, reverse=reverse, axis=axis))
        np.testing.assert_allclose(ops.associative_scan(lambda a, b: a * b, x, reverse=reverse, axis=axis).numpy(),
                                   kw, rtol=1e-5, atol=1e-6)


def test_associative_scan_structures_noncommutative_op_and_gradient():
    # the scan of affine maps (a, b): x -> a x + b composes in order: not commutative
    a, b = f32(6), f32(6)

    def compose(p, q):
        return (p[0] * q[0], q[0] * p[1] + q[1])
    got_a, got_b = ops.associative_scan(compose, (a, b))
    ca, cb, wa, wb = 1.0, 0.0, [], []
    for i in range(6):
        ca, cb = ca * a[i], a[i] * cb + b[i]
        wa.append(ca)
        wb.append(cb)
    np.testing.assert_allclose(got_a.numpy(), wa, rtol=1e-5)
    np.testing.assert_allclose(got_b.numpy(), wb, rtol=1e-5, atol=1e-6)
    keras = keras_or_none()
    if keras is not None:
        ka, kb = keras.ops.associative_scan(compose, (a, b))
        np.testing.assert_allclose(got_b.numpy(), np.asarray(kb), rtol=1e-5, atol=1e-6)
    check_grad(lambda t: ops.associative_scan(lambda p, q: p * q, t), lambda t: np.cumprod(t), [f32(5)])
    with pytest.raises(ValueError, match=r"associative_scan: every tensor in elems needs the same size along axis 0"):
        ops.associative_scan(lambda p, q: p, [np.zeros(3), np.zeros(4)])
    with pytest.raises(ValueError, match=r"associative_scan: f must return elems' structure \(2 tensor\(s\)\)"):
        ops.associative_scan(lambda p, q: p[0], [np.zeros(3), np.zeros(3)])


# ---- custom_gradient ----------------------------------------------------------------------------

def test_custom_gradient_replaces_the_gradient():
    @ops.custom_gradient
    def log1pexp(x):
        e = ops.exp(x)

        def grad(upstream):
            return ops.multiply(upstream, 1.0 - 1.0 / ops.add(1.0, e))
        return ops.log(1.0 + e), grad
    x = lamina.Variable(np.array([0.0, 2.0, 100.0], np.float32))
    with lamina.GradientTape() as tape:
        y = ops.sum(log1pexp(x) * 2.0)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), 2 / (1 + np.exp(-np.array([0.0, 2.0, 100.0]))),
                               rtol=1e-6)
    assert np.isinf(float(y))   # the forward value is f's own (it overflows); the gradient is grad's


def test_custom_gradient_keras_backend_agnostic_form_and_identity_output():
    @ops.custom_gradient
    def clip_grad_identity(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return ops.clip(upstream, -0.1, 0.1)
        return x, grad
    t = lamina.convert_to_tensor(np.array([1.0, -2.0], np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(t)
        y = ops.sum(clip_grad_identity(t) * np.array([5.0, -0.05], np.float32))
    np.testing.assert_allclose(tape.gradient(y, t).numpy(), [0.1, -0.05])
    assert t._node is None   # the returned alias was recorded, never the input itself


def test_custom_gradient_several_inputs_and_outputs():
    @ops.custom_gradient
    def prod_and_sum(a, b, scale=1.0):
        def grad(upstream):
            gp, gs = upstream
            return gp * b * scale + gs, gp * a * scale + gs
        return (a * b * scale, a + b), grad
    a, b = f32(3), f32(3)
    ta, tb = lamina.convert_to_tensor(a), lamina.convert_to_tensor(b)
    with lamina.GradientTape() as tape:
        tape.watch([ta, tb])
        p, s = prod_and_sum(ta, tb, scale=2.0)
        loss = ops.sum(p * 3.0) + ops.sum(s)
    ga, gb = tape.gradient(loss, [ta, tb])
    np.testing.assert_allclose(ga.numpy(), 6 * b + 1, rtol=1e-6)
    np.testing.assert_allclose(gb.numpy(), 6 * a + 1, rtol=1e-6)
    with lamina.GradientTape() as tape:   # only one output used: the other's upstream is zeros
        tape.watch(ta)
        loss = ops.sum(prod_and_sum(ta, tb)[1])
    np.testing.assert_allclose(tape.gradient(loss, ta).numpy(), np.ones(3))


def test_custom_gradient_without_a_tape_and_errors():
    @ops.custom_gradient
    def f(x):
        return x * 2.0, lambda g: g * 2.0
    np.testing.assert_allclose(f(lamina.convert_to_tensor(np.float32(3.0))).numpy(), 6.0)

    @ops.custom_gradient
    def bad_pair(x):
        return x
    with pytest.raises(ValueError, match=r"custom_gradient: bad_pair must return a pair \(outputs, grad_fn\)"):
        bad_pair(lamina.convert_to_tensor(np.ones(2, np.float32)))

    @ops.custom_gradient
    def wrong_count(x, y):
        return x + y, lambda g: (g,)
    t = lamina.convert_to_tensor(np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"custom_gradient: grad_fn returned 1 gradient\(s\), expected one per tensor"):
        with lamina.GradientTape() as tape:
            tape.watch(t)
            out = ops.sum(wrong_count(t, t))
        tape.gradient(out, t)

    @ops.custom_gradient
    def wrong_shape(x):
        return ops.sum(x), lambda g: ops.ones((5,))
    with pytest.raises(ValueError, match=r"custom_gradient: grad_fn's gradient 0 has shape \(5,\), but its argument "
                                         r"has shape \(2,\)"):
        with lamina.GradientTape() as tape:
            tape.watch(t)
            out = wrong_shape(t)
        tape.gradient(out, t)
    with pytest.raises(TypeError, match=r"custom_gradient: f must be callable"):
        ops.custom_gradient(5)


# ---- symbolic tensors ---------------------------------------------------------------------------

def test_symbolic_keras_tensors_are_a_clear_error():
    x = lamina.Input((3,))
    with pytest.raises(TypeError, match=r"scan: received a symbolic KerasTensor .*Call ops.scan inside a layer's "
                                        r"call\(\), or wrap it: layers.Lambda"):
        ops.scan(lambda c, v: (c, v), 0.0, x)
    with pytest.raises(TypeError, match=r"while_loop: received a symbolic KerasTensor"):
        ops.while_loop(lambda v: True, lambda v: v, x)
    with pytest.raises(TypeError, match=r"cond: received a symbolic KerasTensor"):
        ops.cond(x, lambda: 1, lambda: 2)
    # inside a Lambda layer the functions run on real tensors
    y = lamina.layers.Lambda(lambda t: ops.map(lambda r: ops.sum(r), t))(x)
    model = lamina.Model(x, y)
    data = f32(4, 3)
    np.testing.assert_allclose(model(data).numpy(), data.sum(1), rtol=1e-6)
