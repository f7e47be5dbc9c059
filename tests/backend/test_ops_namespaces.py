"""lamina.ops's sub-namespaces (nn, numpy, linalg, image) against keras.ops's, and the ops added
with them (backend/numpy_more.py: cdist, corrcoef, fabs, view_as_real, vectorize;
backend/unsupported.py: eig, jvp, polar, view_as_complex)."""
import importlib
import types

import numpy as np
import pytest

import lamina
from lamina import ops
from keras_ref import keras_or_none
from opcheck import check_grad

RNG = np.random.default_rng(31)


def needs_keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    return keras


# ---- namespaces ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["nn", "numpy", "linalg", "image"])
def test_namespaces_are_modules_of_the_top_level_ops(name):
    space = getattr(ops, name)
    assert isinstance(space, types.ModuleType) and space.__all__
    for n in space.__all__:
        obj = getattr(space, n)
        assert callable(obj), n
        if name != "image":
            assert obj is getattr(ops, n), n         # the same objects as ops.<name>
    module = importlib.import_module(f"{ops.__name__}.{name}")
    assert module is space
    assert not set(ops.image.__all__) & set(dir(ops))       # image ops live only in ops.image, as in Keras


def test_namespaces_have_keras_names():
    keras = needs_keras()
    for name in ("nn", "numpy", "linalg", "image"):
        theirs = {n for n in dir(getattr(keras.ops, name)) if not n.startswith("_")}
        missing = theirs - set(dir(getattr(ops, name)))
        assert not missing, f"ops.{name} lacks {sorted(missing)}"
    missing = {n for n in dir(keras.ops) if not n.startswith("_")} - set(dir(ops))
    assert not missing, sorted(missing)


def test_import_forms():
    from lamina.ops.image import resize
    from lamina.ops.nn import ctc_decode, relu
    from lamina.ops.numpy import vectorize
    from lamina.ops.linalg import eig
    assert relu is ops.relu and ctc_decode is ops.ctc_decode and vectorize is ops.vectorize and eig is ops.eig
    assert resize is ops.image.resize


# ---- cdist, corrcoef, fabs, view_as_real ----------------------------------------------------------------------------

def np_cdist(x, y):
    return np.sqrt(((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1))


def test_cdist():
    x, y = RNG.standard_normal((2, 4, 3)).astype(np.float32), RNG.standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(ops.cdist(x, y).numpy(), np_cdist(x, y), rtol=1e-5)
    np.testing.assert_allclose(ops.cdist(x[0], y).numpy(), np_cdist(x[0], y), rtol=1e-5)
    check_grad(ops.cdist, np_cdist, [x, y], atol=2e-3, rtol=2e-3)
    # a zero distance: value 0 and gradient 0 (not NaN)
    p = lamina.convert_to_tensor(x[0])
    with lamina.GradientTape() as tape:
        tape.watch(p)
        d = ops.cdist(p, p)
        loss = ops.sum(d)
    g = tape.gradient(loss, p).numpy()
    assert np.all(np.diag(d.numpy()) == 0) and np.all(np.isfinite(g))
    want = np.zeros_like(x[0], np.float64)
    for i in range(4):            # d/dp_i of sum_j |p_i - p_j| + |p_j - p_i|
        diff = x[0][i] - np.delete(x[0], i, 0)
        want[i] = 2 * (diff / np.linalg.norm(diff, axis=1, keepdims=True)).sum(0)
    np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"cdist: inputs must have rank >= 2"):
        ops.cdist(x[0, 0], y)
    with pytest.raises(ValueError, match=r"cdist: the last dimension .* must match"):
        ops.cdist(x, y[:, :2])
    with pytest.raises(ValueError, match=r"cdist: the batch dimensions .* must broadcast"):
        ops.cdist(x, np.zeros((3, 5, 3), np.float32))


def test_corrcoef_fabs_view_as_real():
    x = RNG.standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_allclose(ops.corrcoef(x).numpy(), np.corrcoef(x), atol=1e-5)
    assert ops.corrcoef(x[0]).shape == () and float(ops.corrcoef(x[0])) == pytest.approx(1.0)
    check_grad(ops.corrcoef, np.corrcoef, [x], atol=2e-3, rtol=2e-3)
    ints = np.array([[1, 2, 4], [3, 1, 0]])
    np.testing.assert_allclose(ops.corrcoef(ints).numpy(), np.corrcoef(ints), atol=1e-6)
    with pytest.raises(ValueError, match=r"corrcoef: expected a 1-D or 2-D tensor"):
        ops.corrcoef(np.zeros((2, 2, 2)))
    f = ops.fabs(np.array([-1, 2], np.int32))
    assert f.dtype == "float32" and f.numpy().tolist() == [1.0, 2.0]
    np.testing.assert_array_equal(ops.fabs(x).numpy(), np.fabs(x))
    r = ops.view_as_real(x)
    assert r.shape == (3, 8, 2)
    np.testing.assert_array_equal(r.numpy()[..., 0], x)
    np.testing.assert_array_equal(r.numpy()[..., 1], 0)


def test_keras_parity():
    keras = needs_keras()
    x, y = RNG.standard_normal((2, 4, 3)).astype(np.float32), RNG.standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(ops.cdist(x, y).numpy(), np.asarray(keras.ops.cdist(x, y)), rtol=1e-5)
    np.testing.assert_allclose(ops.corrcoef(x[0]).numpy(), np.asarray(keras.ops.corrcoef(x[0])), atol=1e-5)
    np.testing.assert_array_equal(ops.fabs(x).numpy(), np.asarray(keras.ops.fabs(x)))
    v = ops.vectorize(lambda a, b: ops.sum(a * b), signature="(n),(n)->()")(x, y[:, :4])
    w = keras.ops.vectorize(lambda a, b: keras.ops.sum(a * b), signature="(n),(n)->()")(x, y[:, :4])
    np.testing.assert_allclose(v.numpy(), np.asarray(w), rtol=1e-5)


# ---- vectorize ---------------------------------------------------------------------------------------------------

def test_vectorize_scalars_broadcasting_and_excluded():
    def clipped(a, b):
        return ops.where(a > b, a - b, b)        # branches per element; any Python is allowed
    vf = ops.vectorize(clipped)
    a = np.array([[1.0, 5.0, 3.0]], np.float32)
    b = np.array([[2.0], [0.5]], np.float32)
    np.testing.assert_allclose(vf(a, b).numpy(), np.vectorize(lambda p, q: p - q if p > q else q)(a, b))
    calls = []

    def scaled(v, factor, offset=0.0):
        calls.append(factor)
        return v * factor + offset
    vs = ops.vectorize(scaled, excluded={1, "offset"})
    np.testing.assert_allclose(vs([1.0, 2.0], 3.0, offset=1.0).numpy(), [4.0, 7.0])
    assert calls == [3.0, 3.0]
    # outputs of any (fixed) shape, several outputs
    pair = ops.vectorize(lambda v: (v * 2, ops.stack([v, -v])))([1.0, 2.0, 3.0])
    assert pair[0].shape == (3,) and pair[1].shape == (3, 2)
    np.testing.assert_allclose(pair[1].numpy(), [[1, -1], [2, -2], [3, -3]])
    # gradients flow through the slices
    t = lamina.convert_to_tensor(np.array([0.5, 1.5], np.float32))
    with lamina.GradientTape() as tape:
        tape.watch(t)
        loss = ops.sum(ops.vectorize(lambda v: v * v * v)(t))
    np.testing.assert_allclose(tape.gradient(loss, t).numpy(), 3 * np.array([0.5, 1.5]) ** 2, rtol=1e-6)


def test_vectorize_signature():
    matvec = ops.vectorize(lambda m, v: ops.matmul(m, v), signature="(n,k),(k)->(n)")
    m, v = RNG.standard_normal((4, 2, 3)).astype(np.float32), RNG.standard_normal((5, 1, 3)).astype(np.float32)
    out = matvec(m, v)
    assert out.shape == (5, 4, 2)
    np.testing.assert_allclose(out.numpy(), np.einsum("bnk,ak->abn", m, v[:, 0]), rtol=1e-5)
    minmax = ops.vectorize(lambda r: (ops.min(r), ops.max(r)), signature="(n)->(),()")
    lo, hi = minmax(m)
    np.testing.assert_allclose(lo.numpy(), m.min(-1))
    np.testing.assert_allclose(hi.numpy(), m.max(-1))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.vectorize(3), ValueError, r"expected argument `pyfunc` to be a callable"),
    (lambda: ops.vectorize(abs, excluded={1.5}), TypeError, r"`excluded` must be a set of argument positions"),
    (lambda: ops.vectorize(abs, signature="(n->m)"), ValueError, r"not a valid generalized ufunc signature"),
    (lambda: ops.vectorize(lambda a: a)([1.0], scale=2), TypeError,
     r"keyword arguments \['scale'\] are not vectorized"),
    (lambda: ops.vectorize(lambda a, b: a, signature="(n),(n)->(n)")(np.ones(3), np.ones(4)), ValueError,
     r"inconsistent size for core dimension 'n'"),
    (lambda: ops.vectorize(lambda a: a, signature="(n,m)->(n)")(np.ones(3)), ValueError,
     r"does not have the core dimensions"),
    (lambda: ops.vectorize(lambda a: ops.sum(a), signature="(n)->(n)")(np.ones((2, 3))), ValueError,
     r"output 0 of shape \(\) does not have the core dimensions \('n',\)"),
    (lambda: ops.vectorize(lambda a, b: a)(np.ones(3), np.ones(4)), ValueError, r"do not broadcast together"),
    (lambda: ops.vectorize(lambda a: a)(np.ones((0, 3))), ValueError, r"empty loop shape"),
    (lambda: ops.vectorize(lambda a: ops.ones((int(a.numpy()) + 1,)))(np.arange(2.0)), ValueError,
     r"every call must return the same shapes"),
])
def test_vectorize_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---- what lamina cannot represent -----------------------------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda: ops.eig(np.eye(2, dtype=np.float32)), r"eig: .*complex eigenvalues.*use ops.eigh"),
    (lambda: ops.linalg.eig(np.eye(2, dtype=np.float32)), r"eig: "),
    (lambda: ops.polar(np.ones(2), np.zeros(2)), r"polar: .*complex tensor.*ops.cos\(angle\)"),
    (lambda: ops.nn.polar(np.ones(2), np.zeros(2)), r"polar: "),
    (lambda: ops.view_as_complex(np.ones((3, 2))), r"view_as_complex: .*complex tensor"),
    (lambda: ops.jvp(ops.sin, (np.float32(0.1),), (np.float32(0.2),)), r"jvp: .*forward-mode.*reverse mode only"),
    (lambda: ops.linalg.jvp(ops.sin, (np.float32(0.1),), (np.float32(0.2),)), r"jvp: "),
])
def test_unrepresentable_ops_raise_clear_errors(call, match):
    with pytest.raises(NotImplementedError, match=match):
        call()


def test_view_as_real_refuses_complex_data():
    with pytest.raises(TypeError, match="omplex"):
        ops.view_as_real(np.array([1 + 2j]))


def test_op_parameters_are_named_as_keras_names_them():
    """Every op Keras builds an Operation for takes Keras's parameters under Keras's names, in
    Keras's order (layers/_keras_ops.py, from Keras); lamina may add parameters after them."""
    import inspect
    from lamina import ops
    from lamina.layers._keras_ops import OPS
    extra_ok = {"amax": ("initial",), "amin": ("initial",), "full": ("device",), "convert_to_tensor": ("device",)}
    wrong = []
    for name, [(family, _, keras_params, _)] in OPS.items():
        space = getattr(ops, family) if family in ("nn", "numpy", "linalg", "image") else ops
        fn = getattr(space, name, None)
        if fn is None:
            wrong.append(f"{name}: missing")
            continue
        ours = [p for p in inspect.signature(getattr(fn, "__wrapped__", fn)).parameters if p != "kwargs"]
        ours = [p for p in ours if p not in extra_ok.get(name, ())]
        if ours[:len(keras_params)] != list(keras_params) and name != "convert_to_tensor":
            wrong.append(f"{name}: keras {keras_params}, lamina {tuple(ours)}")
    assert not wrong, "\n".join(wrong)


def test_convert_to_tensor_takes_keras_sparse_and_ragged_flags():
    from lamina import ops
    assert ops.convert_to_tensor([1.0], sparse=False, ragged=False).shape == (1,)
    with pytest.raises(ValueError, match="sparse=True is not supported: lamina's tensors are dense"):
        ops.convert_to_tensor([1.0], sparse=True)
    assert ops.prod([[1, 2], [3, 4]], axis=1, dtype="float32").dtype == "float32"
