"""The bfloat16 dtype: conversions (round to nearest even), promotion, ops on bfloat16 data
(float32 arithmetic, one rounding: exactly round_bf16 of the float32 result), gradients through
casts, and the kernel table that widens bfloat16 buffers."""
import numpy as np
import pytest

import lamina
from lamina import ops
import importlib

from lamina.backend import dtypes

from bf16_refs import PATHS, buf as _bf16_buf, read as _read, round_bf16, use_gemm_path

_device = importlib.import_module("lamina.backend.device")


def bf16(a):
    return lamina.convert_to_tensor(np.asarray(a, np.float32), dtype="bfloat16")


def test_conversion_rounds_to_nearest_even(rng):
    special = np.array([0.0, -0.0, 1.0, 1.00390625, 1.01171875, 1.0078125, 3.4e38, -3.4e38, 1e-40, -1e-42,
                        np.inf, -np.inf, 65504.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8], np.float32)
    x = np.concatenate([special, rng.normal(scale=100, size=1000).astype(np.float32)])
    t = bf16(x)
    assert t.dtype == "bfloat16" and t.shape == x.shape
    got = t.numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, round_bf16(x))
    # ties: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 and rounds to the even one (1)
    assert got[13] == 1.0 and got[14] == 1.0 + 2 ** -6
    n = bf16([np.nan]).numpy()
    assert np.isnan(n).all()


def test_casts_between_all_dtypes():
    x = bf16([-2.75, -0.0, 0.0, 1.5, 300.7])
    np.testing.assert_array_equal(ops.cast(x, "int32").numpy(), [-2, 0, 0, 1, 300])
    np.testing.assert_array_equal(ops.cast(x, "int64").numpy(), [-2, 0, 0, 1, 300])
    np.testing.assert_array_equal(ops.cast(x, "bool").numpy(), [True, False, False, True, True])
    np.testing.assert_array_equal(ops.cast(x, "float32").numpy(), round_bf16([-2.75, -0.0, 0.0, 1.5, 300.7]))
    i = lamina.convert_to_tensor(np.array([1, 257, -3, 1 << 20], np.int32))
    np.testing.assert_array_equal(ops.cast(i, "bfloat16").numpy(), round_bf16([1, 257, -3, 1 << 20]))
    b = lamina.convert_to_tensor(np.array([True, False]))
    np.testing.assert_array_equal(ops.cast(b, "bfloat16").numpy(), [1.0, 0.0])
    assert ops.cast(x, "bfloat16") is x
    z = ops.zeros((2, 3), dtype="bfloat16")
    assert z.dtype == "bfloat16" and (z.numpy() == 0).all()
    f = ops.full((2,), 3.14159, dtype="bfloat16")
    np.testing.assert_array_equal(f.numpy(), round_bf16([3.14159] * 2))


def test_ml_dtypes_arrays_keep_their_dtype():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    a = np.array([1.5, -2.25, 1e-3], dtype=ml_dtypes.bfloat16)
    t = lamina.convert_to_tensor(a)
    assert t.dtype == "bfloat16"
    np.testing.assert_array_equal(t.numpy(), a.astype(np.float32))
    assert dtypes.standardize(np.dtype(ml_dtypes.bfloat16)) == "bfloat16"


def test_promotion():
    x = bf16([1.0, 2.0])
    f = lamina.convert_to_tensor(np.array([0.5, 0.25], np.float32))
    assert (x + f).dtype == "float32" and (f * x).dtype == "float32"
    np.testing.assert_array_equal((x + f).numpy(), [1.5, 2.25])
    assert (x * 2.0).dtype == "bfloat16" and (1.0 - x).dtype == "bfloat16"  # Python floats are weak
    assert (x / 3).dtype == "bfloat16"
    assert dtypes.result_type("bfloat16", "float32") == "float32"
    assert dtypes.result_type("int32", "bfloat16") == "bfloat16"
    assert ops.matmul(bf16(np.ones((2, 3))), np.ones((3, 2), np.float32)).dtype == "float32"


def test_unsupported_float_dtypes_say_what_to_use():
    with pytest.raises(TypeError, match="bfloat16"):
        ops.cast(bf16([1.0]), "float16")
    with pytest.raises(TypeError, match="float32"):
        lamina.convert_to_tensor([1.0], dtype="float64")


CASES = [
    ("add", lambda a, b: a + b),
    ("multiply", lambda a, b: a * b),
    ("divide", lambda a, b: a / b),
    ("maximum", ops.maximum),
    ("exp", lambda a, b: ops.exp(a)),
    ("tanh", lambda a, b: ops.tanh(a)),
    ("sigmoid", lambda a, b: ops.sigmoid(a)),
    ("relu", lambda a, b: ops.relu(a)),
    ("square", lambda a, b: ops.square(b)),
    ("sum", lambda a, b: ops.sum(a, axis=1)),
    ("mean", lambda a, b: ops.mean(b, axis=0, keepdims=True)),
    ("max", lambda a, b: ops.max(a, axis=-1)),
    ("softmax", lambda a, b: ops.softmax(a, axis=-1)),
    ("log_softmax", lambda a, b: ops.log_softmax(b, axis=0)),
    ("matmul", lambda a, b: ops.matmul(a, ops.transpose(b))),
    ("where", lambda a, b: ops.where(a > 0, a, b)),
    ("clip", lambda a, b: ops.clip(a, -0.5, 0.5)),
    ("subtract_row", lambda a, b: a - b[0]),
    ("power", lambda a, b: ops.power(b, a)),
    ("mod", ops.mod), ("floor_divide", ops.floor_divide), ("arctan2", ops.arctan2), ("hypot", ops.hypot),
    ("scalar_mul", lambda a, b: a * 3.0), ("scalar_div", lambda a, b: 1.5 / b),
]


@pytest.mark.parametrize("name,fn", CASES, ids=[c[0] for c in CASES])
def test_ops_compute_in_float32_and_round_once(rng, name, fn):
    """Each op's float32 result on the same values, rounded to bfloat16 once."""
    a = round_bf16(rng.normal(size=(6, 9)))
    b = round_bf16(rng.uniform(0.5, 2.0, size=(6, 9)))
    want = fn(lamina.convert_to_tensor(a), lamina.convert_to_tensor(b))
    got = fn(bf16(a), bf16(b))
    assert got.dtype == "bfloat16", name
    np.testing.assert_array_equal(got.numpy(), round_bf16(want.numpy()))


def test_element_moves_are_exact(rng):
    a = round_bf16(rng.normal(size=(4, 5, 6)))
    t = bf16(a)
    np.testing.assert_array_equal(ops.transpose(t, (2, 0, 1)).numpy(), a.transpose(2, 0, 1))
    np.testing.assert_array_equal(t[1:, ::2, -3:].numpy(), a[1:, ::2, -3:])
    np.testing.assert_array_equal(ops.reshape(t, (20, 6)).numpy(), a.reshape(20, 6))
    np.testing.assert_array_equal(ops.concatenate([t, t], axis=1).numpy(), np.concatenate([a, a], axis=1))
    np.testing.assert_array_equal(ops.take(t, [3, 0, 0], axis=1).numpy(), a[:, [3, 0, 0]])
    np.testing.assert_array_equal(ops.broadcast_to(t[:1], (3, 5, 6)).numpy(), np.broadcast_to(a[:1], (3, 5, 6)))
    np.testing.assert_array_equal(ops.triu(t[0]).numpy(), np.triu(a[0]))
    np.testing.assert_array_equal(ops.stack([t[0], t[1]]).numpy(), np.stack([a[0], a[1]]))
    np.testing.assert_array_equal(ops.flip(t, axis=2).numpy(), a[:, :, ::-1])


def test_conv_and_pool_on_bfloat16(rng):
    x = round_bf16(rng.normal(size=(2, 7, 7, 3)))
    w = round_bf16(rng.normal(size=(3, 3, 3, 4)))
    want = ops.conv(lamina.convert_to_tensor(x), lamina.convert_to_tensor(w), padding="same")
    got = ops.conv(bf16(x), bf16(w), padding="same")
    assert got.dtype == "bfloat16"
    np.testing.assert_array_equal(got.numpy(), round_bf16(want.numpy()))
    for pool in (ops.max_pool, ops.average_pool):
        for kw in ({"pool_size": 2}, {"pool_size": 3, "strides": 2, "padding": "same"}):
            p = pool(bf16(x), **kw)
            assert p.dtype == "bfloat16"
            np.testing.assert_array_equal(p.numpy(), round_bf16(pool(lamina.convert_to_tensor(x), **kw).numpy()))


def test_gradients_through_casts_reach_float32_variables(rng):
    a = rng.normal(size=(5, 4)).astype(np.float32)
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    w = lamina.Variable(w0)
    x = bf16(a)
    with lamina.GradientTape() as tape:
        h = ops.tanh(ops.matmul(x, ops.cast(w, "bfloat16")))
        loss = ops.sum(ops.square(ops.cast(h, "float32")))
    g = tape.gradient(loss, w)
    assert g.dtype == "float32" and g.shape == w.shape
    # the float32 computation on the same (rounded) values
    with lamina.GradientTape() as tape:
        h = ops.tanh(ops.matmul(lamina.convert_to_tensor(round_bf16(a)), w))
        loss32 = ops.sum(ops.square(h))
    g32 = tape.gradient(loss32, w)
    np.testing.assert_allclose(g.numpy(), g32.numpy(), rtol=0.05, atol=0.05)


def test_gradient_of_a_bfloat16_tensor_is_bfloat16(rng):
    x = bf16(rng.normal(size=(3, 4)))
    with lamina.GradientTape() as tape:
        tape.watch(x)
        y = ops.sum(ops.cast(x[:, 1:3] * 2.0, "float32"))
    g = tape.gradient(y, x)
    assert g.dtype == "bfloat16"
    want = np.zeros((3, 4), np.float32)
    want[:, 1:3] = 2.0
    np.testing.assert_array_equal(g.numpy(), want)


def test_bfloat16_variables_update_in_place():
    v = lamina.Variable(np.array([1.0, 2.0, 3.0], np.float32), dtype="bfloat16")
    assert v.dtype == "bfloat16"
    v.assign_add(np.array([0.5, 0.25, 1e-3], np.float32))
    np.testing.assert_array_equal(v.numpy(), round_bf16([1.5, 2.25, 3.001]))
    v.assign([7.0, 8.0, 9.0])
    np.testing.assert_array_equal(v.numpy(), [7.0, 8.0, 9.0])


def test_widening_table_counts_and_passes_float32_through():
    before = _device.BF16_STATE.enabled
    assert not before  # the fixture put the tables back after the previous test
    x = lamina.convert_to_tensor(np.ones(3, np.float32))
    y = x + 1.0
    assert not _device.BF16_STATE.enabled
    t = bf16([1.0, 2.0])
    assert _device.BF16_STATE.enabled
    table = t.device.kernels
    assert isinstance(table, _device.WideningTable)
    n = table.widened.get("cumulative", 0)  # a kernel without a bfloat16 version
    ops.cumsum(t)
    assert table.widened["cumulative"] == n + 1
    ops.cumsum(y)  # float32: straight through
    assert table.widened["cumulative"] == n + 1
    ops.sum(t)  # reduce takes bfloat16 itself
    assert "reduce" not in table.widened
    ops.exp(t)  # unary takes bfloat16 itself
    assert "unary" not in table.widened
    ops.transpose(ops.reshape(t, (2, 1)))  # element moves take bfloat16 themselves
    assert "strided_copy" not in table.widened


def test_virtual_devices_and_copies_keep_bfloat16():
    a = round_bf16(np.linspace(-3, 3, 12).reshape(3, 4))
    t = bf16(a)
    with lamina.device("cpu:1"):
        u = ops.exp(t.to("cpu:1"))
    assert u.device.name == "cpu:1" and u.dtype == "bfloat16"
    np.testing.assert_array_equal(u.numpy(), round_bf16(np.exp(a)))
    back = u.to("cpu:0")
    np.testing.assert_array_equal(back.numpy(), u.numpy())


def test_host_fallback_table_keeps_bfloat16():
    """A device table without its own kernels (KernelTable) moves bfloat16 buffers to the host and
    back as bfloat16 (from_numpy with the dtype code)."""
    from lamina.backend import _cpu
    k = _device.KernelTable(_cpu, host=_cpu, native=())
    b = _cpu.Buffer(4, 5, 0)
    k.fill(b, 1.25)
    out = _cpu.Buffer(4, 5, 0)
    k.broadcast_to(b, [4], out, [4])
    assert out.dtype == 5
    np.testing.assert_array_equal(dtypes.bf16_bits_to_float32(_cpu.to_numpy(out, [4])), [1.25] * 4)
    with pytest.raises(TypeError, match="uint16"):
        _cpu.from_numpy(np.ones(3, np.float32), 0, 5)


def test_random_draws_in_bfloat16_are_float32_draws_rounded_and_stay_below_maxval():
    a = lamina.random.uniform((2000,), 0.0, 1.0, dtype="bfloat16", seed=3)
    b = lamina.random.uniform((2000,), 0.0, 1.0, seed=3)
    assert a.dtype == "bfloat16"
    got, ref = a.numpy(), round_bf16(b.numpy())
    assert got.max() < 1.0 and got.min() >= 0.0
    below = ref < 1.0
    np.testing.assert_array_equal(got[below], ref[below])
    assert (got[~below] == np.float32(1.0 - 2 ** -8)).all()
    n = lamina.random.normal((100,), dtype="bfloat16", seed=1)
    np.testing.assert_array_equal(n.numpy(), round_bf16(lamina.random.normal((100,), seed=1).numpy()))
    with pytest.raises(TypeError, match="randint"):
        lamina.random.randint((2,), 0, 3, dtype="bfloat16")


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("M,N,K,ta,tb,batch", [
    (1, 1, 1, False, False, ()), (5, 7, 3, False, False, ()), (13, 33, 17, False, False, ()),
    (40, 50, 2500, False, True, ()), (3, 100, 2100, True, False, ()),
    (12, 32, 512, False, False, ()), (25, 70, 1031, True, False, ()), (30, 45, 64, False, True, ()),
    (19, 40, 9, True, True, ()), (70, 130, 90, False, False, ()), (4, 300, 700, False, True, ()),
    (300, 3, 40, True, False, ()), (6, 10, 12, False, False, (3,)), (6, 10, 12, True, True, (2, 3)),
    (260, 600, 1100, False, False, ()), (129, 520, 513, True, True, ()), (64, 96, 1024, False, True, ()),
])
@pytest.mark.parametrize("out", ["bfloat16", "float32"])
@pytest.mark.parametrize("acc", [True, False], ids=["accumulate", "overwrite"])
def test_bf16_matmul_kernel(rng, path, M, N, K, ta, tb, batch, out, acc):
    from lamina.backend import _cpu
    a = round_bf16(rng.normal(size=batch + ((K, M) if ta else (M, K))))
    b = round_bf16(rng.normal(size=batch + ((N, K) if tb else (K, N))))
    bias = round_bf16(rng.normal(size=(N,)))
    c0 = round_bf16(rng.normal(size=batch + (M, N)))
    A = np.swapaxes(a, -1, -2) if ta else a
    B = np.swapaxes(b, -1, -2) if tb else b
    ref = np.matmul(A.astype(np.float64), B.astype(np.float64)) + bias + (c0 if acc else 0)
    scale = np.matmul(np.abs(A).astype(np.float64), np.abs(B).astype(np.float64)) + np.abs(bias) + np.abs(c0)
    code = 5 if out == "bfloat16" else 0
    o = _bf16_buf(c0) if code == 5 else _cpu.from_numpy(c0.astype(np.float32))
    use_gemm_path(path)
    try:
        assert _cpu.bf16_gemm_native() == (path != "widened")
        _cpu.matmul(_bf16_buf(a), list(a.shape), _bf16_buf(b), list(b.shape), o, list(c0.shape), ta, tb, acc,
                    _bf16_buf(bias))
    finally:
        _cpu._set_bf16_gemm(-1)
    got = _read(o, c0.shape)
    tol = 1e-5 * scale + (2.0 ** -8 * np.abs(ref) if code == 5 else 0)
    assert (np.abs(got - ref) <= tol + 1e-30).all(), np.abs(got - ref).max()


def test_bf16_matmul_through_ops_and_dense(rng):
    from lamina.backend import _cpu
    a = round_bf16(rng.normal(size=(40, 64)))
    w = round_bf16(rng.normal(size=(64, 24)))
    got = ops.matmul(bf16(a), bf16(w))
    assert got.dtype == "bfloat16"
    np.testing.assert_allclose(got.numpy(), a @ w, rtol=2 ** -7, atol=1e-4)
    table = got.device.kernels
    assert "matmul" in table.native_bf16 and "matmul" not in table.widened
    assert _cpu.matmul.__name__ == "matmul"
    with pytest.raises(TypeError, match="matmul"):
        _cpu.matmul(_bf16_buf(a), [40, 64], _cpu.from_numpy(w), [64, 24], _cpu.Buffer(40 * 24, 0, 0), [40, 24],
                    False, False, False)


def test_gradients_through_the_widened_kernels(rng):
    """conv, bias + relu, depthwise conv, pooling, clip, softmax: each kernel's float32 outputs are
    rounded back into bfloat16 buffers (its inputs need not be); the gradients equal float32's
    within bfloat16's precision."""
    x0 = round_bf16(rng.normal(size=(2, 6, 6, 3)))
    w0 = round_bf16(rng.normal(size=(3, 3, 3, 4)) * 0.3)
    d0 = round_bf16(rng.normal(size=(3, 3, 4, 1)) * 0.3)
    b0 = round_bf16(rng.normal(size=(4,)) * 0.1)

    def run(dtype):
        vs = [lamina.Variable(a) for a in (x0, w0, d0, b0)]
        with lamina.GradientTape() as tape:
            x, w, d, b = [ops.cast(v, dtype) for v in vs]
            h = ops.relu(ops.conv(x, w, padding="same") + b)
            h = ops.depthwise_conv(h, d, padding="same")
            h = ops.clip(ops.max_pool(h, 2) + ops.average_pool(h, 2), -1.5, 1.5)
            out = ops.softmax(ops.reshape(h, (2, -1)), axis=-1)
            loss = ops.sum(ops.cast(out, "float32") * np.linspace(-1, 1, out.shape[1], dtype=np.float32))
        return [g.numpy() for g in tape.gradient(loss, vs)]
    for g16, g32 in zip(run("bfloat16"), run("float32")):
        assert np.abs(g32).max() > 0
        np.testing.assert_allclose(g16, g32, rtol=0.1, atol=0.05 * np.abs(g32).max())


def _conv_in_both(x0, w0, **conv_args):
    """{dtype: (output, input gradient, kernel gradient)} of ops.conv on x0, w0 cast to bfloat16 and
    to float32 (the loss: half the sum of the float32 output)."""
    outs = {}
    for dt in ("bfloat16", "float32"):
        vx, vw = lamina.Variable(x0), lamina.Variable(w0)
        with lamina.GradientTape() as tape:
            y = ops.conv(ops.cast(vx, dt), ops.cast(vw, dt), **conv_args)
            loss = ops.sum(ops.cast(y, "float32") * np.float32(0.5))
        gx, gw = tape.gradient(loss, [vx, vw])
        outs[dt] = (y.numpy().astype(np.float32), gx.numpy(), gw.numpy())
    return outs


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("shape,kernel,strides,padding,dilation", [
    ((2, 9, 9, 3), (3, 3, 3, 5), 1, "same", 1), ((3, 8, 7, 4), (5, 5, 4, 6), 2, "valid", 1),
    ((2, 6, 6, 8), (1, 1, 8, 16), 1, "valid", 1), ((1, 10, 10, 2), (3, 3, 2, 3), 1, "same", 2),
    ((16, 12, 12, 5), (3, 3, 5, 32), 1, "same", 1), ((4, 12, 12, 1), (5, 5, 1, 32), 1, "same", 1),
    ((2, 14, 14, 16), (5, 5, 16, 32), 1, "same", 1), ((2, 16, 16, 32), (3, 3, 32, 16), 1, "same", 1),
])
def test_bf16_conv_kernels_sum_in_float32(rng, path, shape, kernel, strides, padding, dilation):
    """conv2d forward and both gradients on bfloat16 data: the float32 results on the same values,
    rounded once (within float32 summation order)."""
    from lamina.backend import _cpu
    x0 = round_bf16(rng.normal(size=shape))
    w0 = round_bf16(rng.normal(size=kernel) * 0.3)
    use_gemm_path(path)
    try:
        outs = _conv_in_both(x0, w0, strides=strides, padding=padding, dilation_rate=dilation)
        table = lamina.convert_to_tensor(x0).device.kernels
        assert "conv2d_forward" not in table.widened and "conv2d_backward" not in table.widened
    finally:
        _cpu._set_bf16_gemm(-1)
    for got, want in zip(outs["bfloat16"], outs["float32"]):
        tol = 2.0 ** -8 * np.abs(want) + 1e-5 * (np.abs(want).max() + 1)
        assert (np.abs(got - want) <= tol).all(), np.abs(got - want).max()


@pytest.mark.parametrize("path", ["avx512bf16", "widened"])
@pytest.mark.parametrize("shape,kernel", [((2, 14, 14, 16), (5, 5, 16, 32)), ((2, 16, 16, 32), (3, 3, 32, 16))])
def test_bf16_winograd_layers_run_float32s_products_rounded_once(rng, path, shape, kernel):
    """Where float32 runs Winograd products (3 x 3 / 5 x 5, stride 1, channels in 16s) and the
    bfloat16 products are not on AMX, a bfloat16 convolution takes float32's kernels on the exact
    float32 values: its output is the float32 output rounded once, and its gradients are float32's."""
    from lamina.backend import _cpu
    x0 = round_bf16(rng.normal(size=shape))
    w0 = round_bf16(rng.normal(size=kernel) * 0.3)
    use_gemm_path(path)
    try:
        outs = _conv_in_both(x0, w0, padding="same")
    finally:
        _cpu._set_bf16_gemm(-1)
    np.testing.assert_array_equal(outs["bfloat16"][0], round_bf16(outs["float32"][0]))
    # the gradients: float32's sums on the same values, each rounded once to bfloat16 (dx, dw
    # of bfloat16 tensors) before the casts' gradients widen them back
    np.testing.assert_array_equal(outs["bfloat16"][1], round_bf16(outs["float32"][1]))
    np.testing.assert_array_equal(outs["bfloat16"][2], round_bf16(outs["float32"][2]))


@pytest.mark.parametrize("name", ["exp", "log", "tanh", "sigmoid", "gelu", "silu", "softplus", "elu", "selu", "abs",
                                  "sqrt", "sin", "floor", "round", "negative", "square", "erf", "leaky_relu"])
def test_activations_on_bfloat16_match_float32_rounded(rng, name):
    """unary and its gradient take bfloat16 blocks: the float32 results, rounded once."""
    fn = getattr(ops, name, None) or getattr(lamina.activations, name)
    a = round_bf16(rng.uniform(0.1, 3.0, size=(3000,)) * rng.choice([-1, 1], size=3000))
    if name in ("log", "sqrt"):
        a = np.abs(a)
    want = fn(lamina.convert_to_tensor(a))
    got = fn(bf16(a))
    assert got.dtype == "bfloat16"
    np.testing.assert_array_equal(got.numpy(), round_bf16(want.numpy()))
    assert "unary" not in got.device.kernels.widened
    va = lamina.Variable(a)
    grads = []
    for dt in ("bfloat16", "float32"):
        with lamina.GradientTape() as tape:
            y = fn(ops.cast(va, dt))
            loss = ops.sum(ops.cast(y, "float32"))
        grads.append(tape.gradient(loss, va).numpy())
    # within bfloat16's precision of the largest gradient (a gradient from the saved output, as
    # tanh's 1 - y^2 near y = 1, or one made of several rounded ops, as erf's, loses digits)
    np.testing.assert_allclose(grads[0], grads[1], rtol=2 ** -6, atol=2 ** -6 * np.abs(grads[1]).max())


def test_bfloat16_nan_inf_and_sign_tests():
    x = bf16([np.nan, np.inf, -np.inf, -0.0, 1.5, -2.0])
    np.testing.assert_array_equal(ops.isnan(x).numpy(), [True, False, False, False, False, False])
    np.testing.assert_array_equal(ops.isinf(x).numpy(), [False, True, True, False, False, False])
    np.testing.assert_array_equal(ops.isfinite(x).numpy(), [False, False, False, True, True, True])
    np.testing.assert_array_equal(ops.signbit(x).numpy(), np.signbit(np.array([np.nan, np.inf, -np.inf, -0.0, 1.5, -2.0])))


def test_comparisons_of_bfloat16_values(rng):
    a = round_bf16(rng.normal(size=(5, 7)))
    b = round_bf16(rng.normal(size=(7,)))
    a[0, :3] = b[:3]
    for op, ref in ((ops.greater_equal, np.greater_equal), (ops.less, np.less), (ops.equal, np.equal),
                    (ops.not_equal, np.not_equal)):
        got = op(bf16(a), bf16(b))
        assert got.dtype == "bool"
        np.testing.assert_array_equal(got.numpy(), ref(a, b))
    with pytest.raises(TypeError, match="bfloat16"):
        ops.nextafter(bf16(a), bf16(b))


@pytest.mark.parametrize("shape,axis", [((16, 6, 6, 8), -1), ((4, 8, 5, 5), 1), ((64, 12), -1)])
def test_batch_norm_on_bfloat16_data(rng, shape, axis):
    """Statistics in float32 from the bfloat16 values; y and dx rounded once."""
    from lamina.backend import nn as _nn
    x0 = round_bf16(rng.normal(size=shape) * 3 + 1)
    C = shape[axis]
    gamma, beta = rng.uniform(0.5, 2, C).astype(np.float32), rng.normal(size=C).astype(np.float32)
    w = round_bf16(rng.normal(size=shape))
    res = {}
    for dt in ("bfloat16", "float32"):
        vx, vg, vb = lamina.Variable(x0), lamina.Variable(gamma), lamina.Variable(beta)
        with lamina.GradientTape() as tape:
            y, mean, var = _nn.batch_norm_train(ops.cast(vx, dt), vg, vb, axis=axis, epsilon=1e-3)
            loss = ops.sum(ops.cast(y, "float32") * w)
        res[dt] = [y.numpy(), mean.numpy(), var.numpy()] + [g.numpy() for g in tape.gradient(loss, [vx, vg, vb])]
        assert y.dtype == dt and mean.dtype == "float32"
    y16, m16, v16, dx16, dg16, db16 = res["bfloat16"]
    y32, m32, v32, dx32, dg32, db32 = res["float32"]
    np.testing.assert_array_equal(m16, m32)
    np.testing.assert_array_equal(v16, v32)
    # y = A x + D rounded once (A x + D may fuse into one FMA on one path and not the other: a
    # value near 0 can then differ by its last float32 bits before rounding)
    assert (np.abs(y16 - y32) <= 2 ** -8 * np.abs(y32) + 1e-6 * np.abs(y32).max()).all()
    np.testing.assert_allclose(dx16, dx32, rtol=2 ** -7, atol=2 ** -7 * np.abs(dx32).max())
    np.testing.assert_allclose(dg16, dg32, rtol=2 ** -6, atol=1e-3 * np.abs(dg32).max())
    np.testing.assert_allclose(db16, db32, rtol=1e-5)


def test_saturate_cast_to_and_from_bfloat16():
    x = lamina.convert_to_tensor(np.array([3.4e38, -3.4e38, 1.5, np.nan], np.float32))
    got = ops.saturate_cast(x, "bfloat16")
    assert got.dtype == "bfloat16"
    big = np.float32(3.3895313892515355e38)
    np.testing.assert_array_equal(got.numpy()[:3], [big, -big, 1.5])
    assert np.isnan(got.numpy()[3])
    u = ops.saturate_cast(bf16([300.0, -5.0, 7.9]), "uint8")
    np.testing.assert_array_equal(u.numpy(), [255, 0, 7])


def test_image_ops_keep_bfloat16(rng):
    img = round_bf16(rng.random((2, 8, 8, 3)))
    for fn in (lambda x: ops.image.resize(x, (5, 5)), ops.image.rgb_to_hsv, ops.image.hsv_to_rgb,
               ops.image.rgb_to_grayscale, lambda x: ops.image.affine_transform(
                   x, np.array([1, 0.1, 0, 0, 1, 0, 0, 0], np.float32))):
        want = fn(lamina.convert_to_tensor(img)).numpy()
        got = fn(bf16(img))
        assert got.dtype == "bfloat16"  # not rounded to integers as an integer image would be
        np.testing.assert_allclose(got.numpy(), want, rtol=2 ** -6, atol=2 ** -6)
    mixed = ops.concatenate([bf16(img[0]), lamina.convert_to_tensor(img[1])], axis=0)
    assert mixed.dtype == "float32"


class _WidenedOnly:
    """_cpu as a module whose kernels take no bfloat16 buffers but fill, copy and cast: a
    WideningTable over it runs every other kernel on float32 copies, rounded back (the path
    softmax and layer norm took before their bfloat16 versions)."""
    BF16_KERNELS = ("fill", "copy", "cast")

    def __getattr__(self, name):
        from lamina.backend import _cpu
        return getattr(_cpu, name)


def _widened_table():
    from lamina.backend import _cpu
    return _device.WideningTable(_WidenedOnly(), buffer_type=_cpu.Buffer)


def _bits(b, n):
    from lamina.backend import _cpu
    return _cpu.to_numpy(b, [n]).view(np.uint16 if b.dtype == 5 else np.uint32)


def _empty(n, dtype):
    from lamina.backend import _cpu
    return _cpu.Buffer(n, 5 if dtype == "bfloat16" else 0, 0)


# (outer, R, inner): the last axis (inner == 1: odd, one-element and parallel sizes) and inner
# axes (strided lanes: fewer and more than the kernels' blocks of 16 lanes, and odd counts)
LANE_SHAPES = [(1, 1, 1), (3, 7, 1), (5, 33, 1), (4, 257, 1), (2, 1000, 1), (300, 64, 1), (64, 515, 1),
               (3, 5, 4), (2, 17, 9), (1, 64, 33), (7, 3, 100), (2, 1, 5), (40, 30, 37)]


@pytest.mark.parametrize("outer,R,inner", LANE_SHAPES)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_kernels_on_bfloat16_equal_the_widened_path(rng, outer, R, inner, log):
    """softmax / log_softmax and their gradients take bfloat16 buffers themselves (any mix with
    float32 ones): bit for bit the float32 kernel on the widened values, rounded once."""
    from lamina.backend import _cpu
    assert {"softmax", "softmax_grad"} <= set(_cpu.BF16_KERNELS)
    n = outer * R * inner
    x = round_bf16(rng.normal(size=n) * 4)
    if n > 3:
        x[:3] = [-np.inf, 80.0, -80.0]  # exp's under- and overflow, a masked position
    w = round_bf16(rng.normal(size=n))
    wide = _widened_table()
    for xdt, ydt in (("bfloat16", "bfloat16"), ("bfloat16", "float32"), ("float32", "bfloat16")):
        xb = _bf16_buf(x, xdt == "bfloat16")
        got, want = _empty(n, ydt), _empty(n, ydt)
        _cpu.softmax(xb, outer, R, inner, log, got)
        wide.softmax(xb, outer, R, inner, log, want)
        np.testing.assert_array_equal(_bits(got, n), _bits(want, n))
        for gdt, odt in (("bfloat16", "bfloat16"), ("float32", "float32"), ("float32", "bfloat16"),
                         ("bfloat16", "float32")):
            gb = _bf16_buf(w, gdt == "bfloat16")
            got_o, want_o = _empty(n, odt), _empty(n, odt)
            _cpu.softmax_grad(got, gb, outer, R, inner, log, got_o)
            wide.softmax_grad(got, gb, outer, R, inner, log, want_o)
            np.testing.assert_array_equal(_bits(got_o, n), _bits(want_o, n))
    assert wide.widened["softmax"] == 3 and wide.widened["softmax_grad"] == 11  # one call all float32


@pytest.mark.parametrize("outer,R,inner", LANE_SHAPES)
@pytest.mark.parametrize("params", [True, False], ids=["gamma_beta", "no_params"])
def test_layer_norm_kernels_on_bfloat16_equal_the_widened_path(rng, outer, R, inner, params):
    """layer_norm and its gradient read bfloat16 x and grad and write bfloat16 y and dx (any mix
    with float32; gamma, beta, mean, rstd and the parameter gradients float32): bit for bit the
    float32 kernel on the widened values, rounded once."""
    from lamina.backend import _cpu
    assert {"layer_norm", "layer_norm_grad"} <= set(_cpu.BF16_KERNELS)
    n, lanes = outer * R * inner, outer * inner
    x = round_bf16(rng.normal(size=n) * 3 + 1)
    w = round_bf16(rng.normal(size=n))
    gamma = _cpu.from_numpy(rng.uniform(0.5, 2, R).astype(np.float32)) if params else None
    beta = _cpu.from_numpy(rng.normal(size=R).astype(np.float32)) if params else None
    wide = _widened_table()
    xb = _bf16_buf(x)
    for ydt in ("float32", "bfloat16"):
        outs = []
        for k in (_cpu, wide):
            y, mean, rstd = _empty(n, ydt), _empty(lanes, "float32"), _empty(lanes, "float32")
            k.layer_norm(xb, gamma, beta, outer, R, inner, 1e-3, y, mean, rstd)
            outs.append([_bits(y, n), _bits(mean, lanes), _bits(rstd, lanes)])
        for a, b in zip(*outs):
            np.testing.assert_array_equal(a, b)
    for gdt in ("bfloat16", "float32"):
        gb = _bf16_buf(w, gdt == "bfloat16")
        for dxdt in ("bfloat16", "float32", None):
            outs = []
            for k in (_cpu, wide):
                dx = _empty(n, dxdt) if dxdt else None
                dg, db = (_empty(R, "float32"), _empty(R, "float32")) if params else (None, None)
                k.layer_norm_grad(xb, gamma, mean, rstd, gb, outer, R, inner, dx, dg, db)
                outs.append([_bits(b, b.numel) for b in (dx, dg, db) if b is not None])
            for a, b in zip(*outs):
                np.testing.assert_array_equal(a, b)
    assert "layer_norm" in wide.widened and "layer_norm_grad" in wide.widened


def test_softmax_and_layer_norm_ops_run_natively_on_bfloat16(rng):
    """Through ops and the tape: the kernels take the bfloat16 buffers (no widened calls), and
    the values are the float32 ops' on the same values, rounded once."""
    from lamina.backend import nn as _nn
    x0 = round_bf16(rng.normal(size=(4, 6, 19)) * 2)
    w = round_bf16(rng.normal(size=(4, 6, 19)))
    gamma, beta = rng.uniform(0.5, 2, 19).astype(np.float32), rng.normal(size=19).astype(np.float32)
    res = {}
    for dt in ("bfloat16", "float32"):
        vx = lamina.Variable(x0)
        with lamina.GradientTape() as tape:
            x = ops.cast(vx, dt)
            s = ops.softmax(x, axis=-1)
            ls = ops.log_softmax(x, axis=1)
            ln = _nn.layer_norm(x, gamma, beta, axis=-1)
            loss = ops.sum(ops.cast(s, "float32") * w) + ops.sum(ops.cast(ls, "float32") * w) + \
                ops.sum(ln * w)
        res[dt] = (s, ls, ln, tape.gradient(loss, vx))
    s16, ls16, ln16, _ = res["bfloat16"]
    assert s16.dtype == ls16.dtype == "bfloat16" and ln16.dtype == "float32"
    table = s16.device.kernels
    assert not {"softmax", "softmax_grad", "layer_norm", "layer_norm_grad"} & set(table.widened)
    np.testing.assert_array_equal(s16.numpy(), round_bf16(res["float32"][0].numpy()))
    np.testing.assert_array_equal(ls16.numpy(), round_bf16(res["float32"][1].numpy()))
    np.testing.assert_array_equal(ln16.numpy(), res["float32"][2].numpy())
    g16, g32 = res["bfloat16"][3].numpy(), res["float32"][3].numpy()
    np.testing.assert_allclose(g16, g32, rtol=2 ** -6, atol=2 ** -6 * np.abs(g32).max())


def test_bfloat16_softmax_and_layer_norm_reject_other_dtypes():
    from lamina.backend import _cpu
    x = _bf16_buf(np.ones(6, np.float32))
    i = _cpu.from_numpy(np.ones(6, np.int32))
    with pytest.raises(TypeError, match="softmax: expected out of dtype float32, received int32"):
        _cpu.softmax(x, 2, 3, 1, False, i)
    with pytest.raises(TypeError, match="layer_norm: expected x of dtype float32, received int32"):
        _cpu.layer_norm(i, None, None, 2, 3, 1, 1e-3, x, _cpu.Buffer(2, 0, 0), _cpu.Buffer(2, 0, 0))
    with pytest.raises(TypeError, match="layer_norm: expected mean of dtype float32, received bfloat16"):
        _cpu.layer_norm(x, None, None, 2, 3, 1, 1e-3, x, _bf16_buf(np.ones(2)), _cpu.Buffer(2, 0, 0))


@pytest.mark.parametrize("n", [5, 1024, 1500, 70_001])
def test_same_shape_binary_ops_on_bfloat16_round_the_float32_result_once(rng, n):
    """Same-shape add, subtract, multiply, maximum and minimum take a blocked path (widened and rounded
    by vectorized rows, split across threads when large): bit for bit the float32 results, rounded once,
    NaN, infinities, signed zeros and tiny values included."""
    a = round_bf16(rng.normal(size=n) * 10.0 ** rng.integers(-40, 38, n))
    b = round_bf16(rng.normal(size=n) * 10.0 ** rng.integers(-40, 38, n))
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -3e-39], np.float32)
    k = min(n, len(specials))
    a[:k], b[-k:] = specials[:k], specials[:k]
    a, b = round_bf16(a), round_bf16(b)
    with np.errstate(all="ignore"):
        for fn in (ops.add, ops.subtract, ops.multiply, ops.maximum, ops.minimum):
            want = round_bf16(fn(lamina.convert_to_tensor(a), lamina.convert_to_tensor(b)).numpy())
            got = fn(bf16(a), bf16(b))
            assert got.dtype == "bfloat16"
            np.testing.assert_array_equal(got.numpy(), want, err_msg=fn.__name__)


@pytest.mark.parametrize("xs,ys", [((7, 5), (5,)), ((3, 4, 40), (1, 40)), ((2, 300, 64), (1, 1, 64)),
                                   ((5, 3, 7), (3, 7)), ((600, 1000), (1000,)), ((4, 2000), (2000,))])
def test_bfloat16_rows_plus_a_broadcast_row_round_the_float32_result_once(rng, xs, ys):
    """x (op) y with y along x's last dimensions (a bias) takes a blocked path for add, subtract and
    multiply: bit for bit the float32 results rounded once; y first, and a y longer than a block, too."""
    x = round_bf16(rng.normal(size=xs) * 10.0 ** rng.integers(-30, 30, xs))
    y = round_bf16(rng.normal(size=ys))
    x.flat[:3] = [np.nan, np.inf, -0.0]
    with np.errstate(all="ignore"):
        for fn in (ops.add, ops.subtract, ops.multiply):
            for a, b in ((x, y), (y, x)):
                want = round_bf16(fn(lamina.convert_to_tensor(a), lamina.convert_to_tensor(b)).numpy())
                got = fn(bf16(a), bf16(b))
                assert got.dtype == "bfloat16" and got.shape == want.shape
                np.testing.assert_array_equal(got.numpy(), want, err_msg=fn.__name__)
