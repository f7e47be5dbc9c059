"""bfloat16 on a device under test (tests/gpu/conftest.py) equals bfloat16 on cpu:0: the casts and
element moves the device runs itself, matmul (cuBLAS GemmStridedBatchedEx on a GPU), the
kernels that run on float32 copies, and a mixed precision model's training."""
import importlib

import numpy as np
import pytest

import lamina
from lamina import layers, ops

_dm = importlib.import_module("lamina.backend.device")
R = np.random.default_rng(5)


def _bf16_device(dev):
    """The device with bfloat16 enabled: GPU devices are switched by enable_bfloat16; the
    host-fallback pair is not registered, so it gets its widening table here."""
    _dm.enable_bfloat16()
    return dev if dev.kind == "gpu" else _dm.Device(dev.kind, dev.index, _dm._widened(dev.kernels))


def _round(a):
    return lamina.convert_to_tensor(np.asarray(a, np.float32), dtype="bfloat16").numpy()


CASES = {
    "matmul": lambda a, b: ops.matmul(a, ops.transpose(b)),
    "batched_matmul": lambda a, b: ops.matmul(ops.reshape(a, (2, 3, 8)), ops.reshape(b, (2, 8, 3))),
    "add_mul": lambda a, b: a * b + 2.0,
    "exp_tanh": lambda a, b: ops.exp(ops.tanh(a)),
    "sum_mean": lambda a, b: ops.sum(a, axis=0) + ops.mean(b, axis=0),
    "softmax": lambda a, b: ops.softmax(a, axis=-1),
    "moves": lambda a, b: ops.concatenate([ops.transpose(a)[::2], ops.broadcast_to(b[:1], (4, 8))[:, ::2]], axis=1),
    "where": lambda a, b: ops.where(a > 0, a, b),
    "cast_int": lambda a, b: ops.cast(a * 4.0, "int32"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bfloat16_ops_match_cpu(name, dev):
    d = _bf16_device(dev)
    a = _round(R.normal(size=(6, 8)))
    b = _round(R.normal(size=(6, 8)))
    fn = CASES[name]
    want = fn(lamina.convert_to_tensor(a, dtype="bfloat16"), lamina.convert_to_tensor(b, dtype="bfloat16"))
    ta = lamina.convert_to_tensor(a, dtype="bfloat16").to(d)
    tb = lamina.convert_to_tensor(b, dtype="bfloat16").to(d)
    got = fn(ta, tb)
    assert got.device is d and got.dtype == want.dtype
    g, w = got.to("cpu:0").numpy(), want.numpy()
    if "matmul" in name:  # the device may sum in another order: within one bfloat16 rounding
        np.testing.assert_allclose(g, w, rtol=2 ** -7, atol=1e-3)
    else:
        np.testing.assert_array_equal(g, w)


def test_a_mixed_precision_model_trains_on_the_device_as_on_cpu(dev):
    d = _bf16_device(dev)
    lamina.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        x = R.normal(size=(64, 10)).astype(np.float32)
        y = R.integers(0, 3, 64)
        models = []
        for where in ("cpu:0", d):
            with lamina.device(where):
                m = lamina.Sequential([lamina.Input((10,)), layers.Dense(16, activation="relu"),
                                       layers.Dense(3, dtype="float32")])
            m.compile(optimizer=lamina.optimizers.SGD(0.05),
                      loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True))
            models.append(m)
        models[1].set_weights(models[0].get_weights())
        for m in models:
            m.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
        for w0, w1 in zip(models[0].get_weights(), models[1].get_weights()):
            np.testing.assert_allclose(w1, w0, rtol=2e-2, atol=2e-3)
        assert models[1].layers[0].kernel.device is d
    finally:
        lamina.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("op", ["lstm", "gru", "simple_rnn"])
def test_a_bfloat16_rnn_on_the_device_as_on_cpu(dev, op):
    """ops.lstm / ops.gru / ops.simple_rnn on bfloat16 inputs and weights: the CPU computes in
    bfloat16 (bfloat16 product operands, csrc/cpu/rnn.cpp); a GPU runs its float32 kernels on float32
    copies (backend/device.py's widening table). Outputs and gradients agree within bfloat16's precision."""
    d = _bf16_device(dev)
    r = np.random.default_rng(11)
    G = {"lstm": 4, "gru": 3, "simple_rnn": 1}[op]
    bshape = (2, 9 * G) if op == "gru" else (9 * G,)
    x, K, R_, b = (_round(r.normal(scale=s, size=sh)) for s, sh in
                   ((1.0, (3, 5, 7)), (0.3, (7, 9 * G)), (0.3, (9, 9 * G)), (0.2, bshape)))
    states = (None, None) if op == "lstm" else (None,)
    res = []
    for where in ("cpu:0", d):
        vs = [lamina.Variable(lamina.convert_to_tensor(a, dtype="bfloat16").to(where)) for a in (x, K, R_, b)]
        with lamina.GradientTape() as tape:
            outs = getattr(ops, op)(*vs[:1], *states, *vs[1:], go_backwards=True)
            out = outs[0]
            loss = ops.sum(ops.cast(out, "float32") * ops.cast(out, "float32")) + ops.sum(ops.cast(outs[-1], "float32"))
        assert all(t.dtype == "bfloat16" for t in outs) and out.device is vs[0].device
        grads = tape.gradient(loss, vs)
        res.append([t.to("cpu:0").numpy() for t in (*outs, *grads)])
    for w, g in zip(*res):
        np.testing.assert_allclose(g, w, rtol=3e-2, atol=3e-2 * np.abs(w).max())


def test_bfloat16_attention_on_the_device_as_on_cpu(dev):
    """ops.dot_product_attention on bfloat16 query, key and value: the CPU computes in bfloat16
    (bfloat16 product operands, csrc/cpu/attention.cpp); a device without an attention kernel runs
    the host's (a GPU: on float32 copies, its BF16_KERNELS lacking it). Outputs and gradients agree
    within bfloat16's precision."""
    d = _bf16_device(dev)
    r = np.random.default_rng(12)
    q, k, v = (_round(r.normal(size=sh)) for sh in ((2, 6, 4, 8), (2, 7, 2, 8), (2, 7, 2, 5)))
    bias = r.normal(scale=0.5, size=(4, 6, 7)).astype(np.float32)
    res = []
    for where in ("cpu:0", d):
        vs = [lamina.Variable(lamina.convert_to_tensor(a, dtype="bfloat16").to(where)) for a in (q, k, v)]
        vb = lamina.Variable(lamina.convert_to_tensor(bias).to(where))
        with lamina.GradientTape() as tape:
            out = ops.dot_product_attention(*vs, bias=vb, is_causal=True)
            loss = ops.sum(ops.cast(out, "float32") * ops.cast(out, "float32"))
        assert out.dtype == "bfloat16" and out.device is vs[0].device
        grads = tape.gradient(loss, vs + [vb])
        res.append([t.to("cpu:0").numpy() for t in (out, *grads)])
    for w, g in zip(*res):
        w, g = (np.asarray(a, np.float32) for a in (w, g))
        np.testing.assert_allclose(g, w, rtol=3e-2, atol=3e-2 * np.abs(w).max())
