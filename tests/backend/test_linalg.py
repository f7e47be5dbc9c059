"""matmul's gradients: the weight gradient formed once from every use."""
import numpy as np

from lamina import ops
def test_a_weight_used_several_times_gets_one_dense_gradient_formed_at_the_end():
    # matmul's weight gradient is kept as a_i^T g_i pairs (sparse.OuterProducts) while backprop
    # accumulates, and formed by one GEMM over all the rows: the result is the plain sum.
    import lamina
    from lamina.backend import sparse
    rng = np.random.default_rng(0)
    w = lamina.Variable(rng.normal(size=(5, 3)).astype(np.float32))
    xs = [rng.normal(size=s).astype(np.float32) for s in ((4, 5), (2, 6, 5), (1, 5))]
    with lamina.GradientTape() as tape:
        loss = sum(ops.sum(ops.square(ops.matmul(x, w))) for x in xs)
        loss = loss + ops.sum(w * 2.0)       # a dense contribution too
    g = tape.gradient(loss, w)
    assert isinstance(g, lamina.Tensor) and not sparse.is_outer_products(g)
    wn = w.numpy().astype(np.float64)
    expect = sum(2 * x.reshape(-1, 5).T @ (x.reshape(-1, 5) @ wn) for x in xs) + 2.0
    np.testing.assert_allclose(g.numpy(), expect, rtol=1e-5, atol=1e-5)
    # and it flows on as a dense gradient when the weight is itself computed
    v = lamina.Variable(rng.normal(size=(5, 3)).astype(np.float32))
    with lamina.GradientTape() as tape:
        w2 = v * 3.0
        loss = ops.sum(ops.matmul(xs[0], w2)) + ops.sum(ops.matmul(xs[2], w2))
    expect = 3.0 * (xs[0].sum(0, keepdims=True).T + xs[2].sum(0, keepdims=True).T) @ np.ones((1, 3))
    np.testing.assert_allclose(tape.gradient(loss, v).numpy(), expect, rtol=1e-5)
