"""Checks an op against a numpy reference: forward values, and gradients against central
finite differences of the reference computed in float64."""
import numpy as np

import lamina
from lamina import ops


def check_forward(fn, ref, inputs, atol=1e-5, rtol=1e-5, **kw):
    got = fn(*[lamina.convert_to_tensor(x) for x in inputs], **kw)
    want = ref(*inputs, **kw)
    got_np = [g.numpy() for g in got] if isinstance(got, (list, tuple)) else got.numpy()
    if isinstance(want, (list, tuple)):
        assert len(got_np) == len(want)
        for g, w in zip(got_np, want):
            _close(g, w, atol, rtol)
    else:
        _close(got_np, want, atol, rtol)
    return got


def _close(g, w, atol, rtol):
    w = np.asarray(w)
    assert g.shape == w.shape, f"shape {g.shape} != reference {w.shape}"
    if w.dtype.kind == "f":
        np.testing.assert_allclose(g, w.astype(g.dtype if g.dtype.kind == "f" else w.dtype), atol=atol, rtol=rtol)
    else:
        np.testing.assert_array_equal(g, w)


def numeric_grad(ref, inputs, weights, wrt, eps=1e-4, **kw):
    """d sum(ref(*inputs) * weights) / d inputs[wrt], by central differences in float64."""
    xs = [np.array(x, dtype=np.float64) if np.asarray(x).dtype.kind == "f" else np.asarray(x) for x in inputs]
    x = xs[wrt]
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = _weighted(ref(*xs, **kw), weights)
        x[i] = old - eps
        fm = _weighted(ref(*xs, **kw), weights)
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def _weighted(y, weights):
    if isinstance(y, (list, tuple)):
        return sum(float(np.sum(np.asarray(a, np.float64) * w)) for a, w in zip(y, weights))
    return float(np.sum(np.asarray(y, np.float64) * weights))


def check_grad(fn, ref, inputs, wrt=None, atol=1e-3, rtol=1e-3, seed=0, eps=1e-4, **kw):
    """Compares lamina's gradients of sum(fn(inputs) * W) with finite differences of the reference."""
    rng = np.random.default_rng(seed)
    if wrt is None:
        wrt = [i for i, x in enumerate(inputs) if np.asarray(x).dtype.kind == "f"]
    ts = [lamina.convert_to_tensor(np.asarray(x)) for x in inputs]
    with lamina.GradientTape() as tape:
        for i in wrt:
            tape.watch(ts[i])
        y = fn(*ts, **kw)
        ys = list(y) if isinstance(y, (list, tuple)) else [y]
        weights = [rng.standard_normal(t.shape).astype(np.float32) for t in ys]
        loss = None
        for t, w in zip(ys, weights):
            term = ops.sum(t * w)
            loss = term if loss is None else loss + term
    grads = tape.gradient(loss, [ts[i] for i in wrt])
    ws = weights if isinstance(y, (list, tuple)) else weights[0]
    for i, g in zip(wrt, grads):
        want = numeric_grad(ref, inputs, ws, i, eps=eps, **kw)
        assert g is not None, f"no gradient for input {i}"
        np.testing.assert_allclose(g.numpy(), want, atol=atol, rtol=rtol, err_msg=f"gradient of input {i}")
