import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.backend.nn import embedding_lookup


def test_variables_are_watched_and_constants_are_not():
    v = lamina.Variable(np.array([1.0, 2.0], np.float32))
    c = lamina.convert_to_tensor(np.array([3.0, 4.0], np.float32))
    with lamina.GradientTape() as tape:
        y = ops.sum(v * c)
    gv, gc = tape.gradient(y, [v, c])
    np.testing.assert_allclose(gv.numpy(), [3.0, 4.0])
    assert gc is None


def test_watch_tensor_and_unconnected_zero():
    x = lamina.convert_to_tensor(np.array(3.0, np.float32))
    z = lamina.convert_to_tensor(np.array(1.0, np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(x)
        y = x * x * x
    gx, gz = tape.gradient(y, [x, z], unconnected_gradients="zero")
    assert float(gx) == pytest.approx(27.0)
    assert float(gz) == 0.0


def test_gradient_accumulates_over_reuse():
    v = lamina.Variable(np.array(2.0, np.float32))
    with lamina.GradientTape() as tape:
        y = v * v + v
    assert float(tape.gradient(y, v)) == pytest.approx(5.0)


def test_accumulated_gradients_do_not_leak_between_inputs():
    """The tape adds later gradients into a sum it made (in place), but never into one it has
    handed to an op's backward: add's backward passes one gradient to both its inputs, and each
    input then keeps accumulating on its own."""
    a0, b0 = np.array([1.0, -2.0, 0.5], np.float32), np.array([3.0, 0.25, -1.0], np.float32)
    a, b = lamina.Variable(a0), lamina.Variable(b0)
    with lamina.GradientTape() as tape:
        h = a + b                                  # h's gradient flows to a and b as one tensor
        y = ops.sum(h * h) + ops.sum(h * 3.0) + ops.sum(h)  # three uses of h: a sum the tape owns
        y = y + ops.sum(a * a) + ops.sum(a * 5.0)  # then a gets two more gradients, b none
    ga, gb = tape.gradient(y, [a, b])
    gh = 2 * (a0 + b0) + 3.0 + 1.0
    np.testing.assert_allclose(gb.numpy(), gh, rtol=1e-6)
    np.testing.assert_allclose(ga.numpy(), gh + 2 * a0 + 5.0, rtol=1e-6)


def test_sparse_gradients_add_into_an_owned_dense_sum():
    """A table read densely twice and by three lookups: the lookups' rows are scatter-added into the
    tape's dense sum in place; the result equals the numpy reference."""
    t0 = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    t = lamina.Variable(t0)
    ids = [np.array([0, 2, 2]), np.array([3]), np.array([1, 0])]
    with lamina.GradientTape() as tape:
        y = ops.sum(t * t) + ops.sum(t * 2.0)
        for i in ids:
            y = y + ops.sum(embedding_lookup(t, lamina.convert_to_tensor(i.astype(np.int32))) * 3.0)
    g = tape.gradient(y, t)
    want = 2 * t0 + 2.0
    for i in ids:
        np.add.at(want, i, 3.0)
    np.testing.assert_allclose(g.numpy(), want, rtol=1e-6)


def test_non_persistent_tape_single_use_and_persistent_reuse():
    v = lamina.Variable(np.array(2.0, np.float32))
    with lamina.GradientTape() as tape:
        y = v * v
    tape.gradient(y, v)
    with pytest.raises(RuntimeError, match="persistent"):
        tape.gradient(y, v)
    with lamina.GradientTape(persistent=True) as tape:
        y = v * v
        z = v * 3.0
    assert float(tape.gradient(y, v)) == pytest.approx(4.0)
    assert float(tape.gradient(z, v)) == pytest.approx(3.0)


def test_stop_recording_and_nested_structures():
    v = lamina.Variable(np.array(1.5, np.float32))
    w = lamina.Variable(np.array(2.0, np.float32))
    with lamina.GradientTape() as tape:
        a = v * w
        with tape.stop_recording():
            b = v * 10.0
        y = a + b
    g = tape.gradient(y, {"v": v, "pair": [w, v]})
    assert float(g["v"]) == pytest.approx(2.0)
    assert float(g["pair"][0]) == pytest.approx(1.5)


def test_no_recording_outside_tape():
    v = lamina.Variable(np.ones(2, np.float32))
    y = v * 2.0
    assert y._node is None


def test_output_gradients_seed():
    v = lamina.Variable(np.array([1.0, 2.0], np.float32))
    with lamina.GradientTape() as tape:
        y = v * 3.0
    g = tape.gradient(y, v, output_gradients=np.array([1.0, 10.0], np.float32))
    np.testing.assert_allclose(g.numpy(), [3.0, 30.0])


def test_non_trainable_variable_gets_no_gradient():
    v = lamina.Variable(np.array(1.0, np.float32), trainable=False)
    with lamina.GradientTape() as tape:
        y = v * 2.0
    assert tape.gradient(y, v) is None


def test_on_ready_reports_each_gradient_once_as_soon_as_it_is_final():
    """backprop's on_ready (data-parallel all-reduces start there): a layer's weights are reported
    before the earlier layers' backward runs, each source exactly once, with the gradient
    returned for it; unconnected sources get None at the end."""
    rng = np.random.default_rng(0)
    w1, w2, w3 = (lamina.Variable(rng.standard_normal(s).astype(np.float32)) for s in ((4, 5), (5, 3), (3, 2)))
    b2 = lamina.Variable(np.zeros(3, np.float32))
    unused = lamina.Variable(np.ones(2, np.float32))
    x = rng.standard_normal((6, 4)).astype(np.float32)
    events = []
    with lamina.GradientTape() as tape:
        h = ops.matmul(x, w1)
        h = ops.tanh(ops.matmul(h, w2) + b2)
        y = ops.sum(ops.matmul(h, w3) * ops.matmul(h, w3))
    with lamina.GradientTape() as tape2:  # the same, for the reference gradients
        h_ = ops.tanh(ops.matmul(ops.matmul(x, w1), w2) + b2)
        y_ = ops.sum(ops.matmul(h_, w3) * ops.matmul(h_, w3))
    sources = [w1, w2, b2, w3, unused, w3]
    grads = tape.gradient(y, sources, _on_ready=lambda i, g: events.append((i, g)))
    ref = tape2.gradient(y_, [w1, w2, b2, w3])
    assert sorted(i for i, _ in events) == list(range(len(sources)))
    order = [i for i, _ in events]
    assert order.index(3) < order.index(1) < order.index(0)      # w3 (used twice) before w2 before w1
    assert order.index(2) < order.index(0)
    assert order[-1] == 4 and events[-1][1] is None              # unconnected: last, None
    by_index = dict(events)
    for i, g in enumerate(grads):
        assert by_index[i] is g
    for g, r in zip(grads[:4], ref):
        np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-6)
    assert grads[5] is grads[3]


def test_on_ready_fires_before_the_earlier_ops_backward():
    w1 = lamina.Variable(np.full((3, 3), 0.5, np.float32))
    w2 = lamina.Variable(np.full((3, 3), 0.25, np.float32))
    x = np.ones((2, 3), np.float32)
    log = []
    with lamina.GradientTape() as tape:
        h = ops.matmul(x, w1)
        marked = ops.exp(h)           # its backward runs after w2's gradient is final
        y = ops.sum(ops.matmul(marked, w2))
    node = marked._node
    inner = node.backward

    def spy(g, needs):
        log.append("exp backward")
        return inner(g, needs)
    node.backward = spy
    tape.gradient(y, [w1, w2], _on_ready=lambda i, g: log.append(f"ready {i}"))
    assert log == ["ready 1", "exp backward", "ready 0"], log
