"""bfloat16 on a device under test (tests/gpu/conftest.py) equals bfloat16 on cpu:0: the casts and
element moves the device runs itself, matmul and conv2d (cuBLAS GemmStridedBatchedEx on a GPU), the
kernels that run on float32 copies, and a mixed precision model's training."""
import contextlib
import importlib

import numpy as np
import pytest

import lamina
from lamina import layers, ops
from lamina.backend.tensor import empty

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


RNN_KERNELS = ("lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "simple_rnn_forward",
               "simple_rnn_backward")


class _KernelSpy:
    """Records, per call of the named kernels of a kernel table, the dtype codes of the buffers at
    `positions(name)` (None ones skipped); and the calls the table widened to float32 copies or, on
    a GPU, ran on the host (KernelUnsupported)."""

    def __init__(self, table, names, positions):
        self.table, self.names, self.positions, self.seen, self.orig = table, names, positions, [], {}
        self.widened = {n: table.widened.get(n, 0) for n in names}
        self.fallbacks = getattr(getattr(table, "inner", None), "fallbacks", {})
        self.fell_back = {n: self.fallbacks.get(n, 0) for n in names}

    def __enter__(self):
        for n in self.names:
            k = self.orig[n] = getattr(self.table, n)

            def spy(*a, _k=k, _n=n):
                self.seen.append((_n, tuple(a[i].dtype for i in self.positions(_n) if a[i] is not None)))
                return _k(*a)
            setattr(self.table, n, spy)
        return self

    def __exit__(self, *exc):
        for n, k in self.orig.items():
            setattr(self.table, n, k)

    def check(self, gpu, expect):
        assert {s[0] for s in self.seen} == set(expect), self.seen
        assert all(code == _dm.BF16_CODE for s in self.seen for code in s[1]), self.seen  # not float32 copies
        for n in self.names:
            assert self.table.widened.get(n, 0) == self.widened[n], n
            if gpu and _dm._CUDA.cublas_status().startswith("loaded"):  # the CUDA kernel ran it, in bfloat16
                assert self.fallbacks.get(n, 0) == self.fell_back[n], (n, self.fallbacks)


def _rnn_positions(name):
    """x, kernel, recurrent kernel and (backward) the outputs: the buffers a bfloat16 call holds in bfloat16."""
    lstm, back = name.startswith("lstm"), name.endswith("backward")
    kr = (3, 4) if lstm else (2, 3)
    return (0,) + kr + (((13,) if lstm else (12,)) if back else ())


# The bfloat16 recurrences on both devices: bfloat16 product operands with float32 sums, gate maths
# and c float32, h rounded to bfloat16 every step (csrc/cpu/rnn.cpp, csrc/cuda/rnn.cu). The devices
# sum the products in different orders, so a rounded h may differ by one bfloat16 ulp (2^-8) at a
# step and the difference carries through the later steps (T = 5 here) and into the gradients: a
# tolerance of a few percent of the largest value (the one this test had when the GPU ran float32
# copies, a larger difference).
RNN_VARIANTS = {  # go_backwards, mask, dropout masks (None, or their dtype), states (None, or h0's / c0's dtype)
    "backwards": (True, False, None, None),
    "mask_dropout_states": (False, True, "float32", ("bfloat16", "float32")),
    "everything_bf16_masks": (True, True, "bfloat16", ("float32", "bfloat16")),
    "deferred": (False, True, "float32", ("bfloat16", "bfloat16")),
}


@pytest.mark.parametrize("variant", sorted(RNN_VARIANTS))
@pytest.mark.parametrize("op", ["lstm", "gru", "simple_rnn"])
def test_a_bfloat16_rnn_on_the_device_as_on_cpu(dev, op, variant):
    """ops.lstm / ops.gru / ops.simple_rnn on bfloat16 inputs and weights, with go_backwards, a mask,
    dropout masks and initial states of either dtype: outputs, last states and every gradient (x,
    the states, kernel, recurrent kernel, bias; deferred weight gradients too) agree within
    bfloat16's precision, and the device's kernels take the bfloat16 buffers themselves (on a GPU
    with cuBLAS, csrc/cuda/rnn.cu computes in bfloat16: none widened, none run on the host)."""
    from lamina.backend import autodiff
    d = _bf16_device(dev)
    back, use_mask, drop_dt, state_dts = RNN_VARIANTS[variant]
    r = np.random.default_rng(11)
    G = {"lstm": 4, "gru": 3, "simple_rnn": 1}[op]
    B, T, F, U = 3, 5, 7, 9
    bshape = (2, U * G) if op == "gru" else (U * G,)
    x, K, R_, b = (_round(r.normal(scale=s, size=sh)) for s, sh in
                   ((1.0, (B, T, F)), (0.3, (F, U * G)), (0.3, (U, U * G)), (0.2, bshape)))
    n_states = 2 if op == "lstm" else 1
    h0s = [_round(0.5 * r.normal(size=(B, U))) for _ in range(n_states)]
    mask = np.array([[0, 1, 1, 0, 1], [1, 1, 0, 0, 1], [1, 1, 1, 1, 1]], dtype=bool)
    in_drop = np.where(r.random((B, F)) > 0.3, 1.25, 0.0).astype(np.float32)  # bfloat16 values
    rec_drop = np.where(r.random((B, U)) > 0.25, 1.25, 0.0).astype(np.float32)
    res = []
    for where in ("cpu:0", d):
        vs = [lamina.Variable(lamina.convert_to_tensor(a, dtype="bfloat16").to(where)) for a in (x, K, R_, b)]
        states = [None] * n_states
        if state_dts:
            states = [lamina.Variable(lamina.convert_to_tensor(a, dtype=dt).to(where))
                      for a, dt in zip(h0s, state_dts)]
        kw = dict(go_backwards=back)
        if use_mask:
            kw["mask"] = lamina.convert_to_tensor(mask).to(where)
        if drop_dt:
            kw["input_dropout"] = lamina.convert_to_tensor(in_drop, dtype=drop_dt).to(where)
            kw["recurrent_dropout"] = lamina.convert_to_tensor(rec_drop, dtype=drop_dt).to(where)
        spy = _KernelSpy(vs[0].device.kernels, RNN_KERNELS, _rnn_positions) if where is d else None
        targets = vs + [s for s in states if s is not None]
        with spy or contextlib.nullcontext():
            with lamina.GradientTape() as tape:
                outs = getattr(ops, op)(vs[0], *states, *vs[1:], **kw)
                out = outs[0]
                loss = ops.sum(ops.cast(out, "float32") * ops.cast(out, "float32"))
                for k, o in enumerate(outs[1:]):  # the last states, weighted differently
                    loss = loss + (1.5 + k) * ops.sum(ops.cast(o, "float32"))
            deferral = (autodiff.deferred_weight_gradients([vs[0].device]) if variant == "deferred"
                        else contextlib.nullcontext())
            with deferral:
                grads = tape.gradient(loss, targets)
        assert all(t.dtype == "bfloat16" for t in outs) and out.device is vs[0].device
        assert all(g is not None for g in grads)
        if spy:
            spy.check(d.kind == "gpu", (op + "_forward", op + "_backward"))
        res.append([np.asarray(t.to("cpu:0").numpy(), np.float32) for t in (*outs, *grads)])
    names = [f"output {i}" for i in range(len(outs))] + ["dx", "dkernel", "drecurrent_kernel", "dbias"] + \
        [f"dstate {i}" for i in range(len(targets) - 4)]
    for what, w, g in zip(names, *res):
        np.testing.assert_allclose(g, w, rtol=3e-2, atol=3e-2 * np.abs(w).max(), err_msg=what)


ATTENTION_KERNELS = ("attention_forward", "attention_backward")
ATTENTION_CASES = {  # q, k, v shapes (B, T, N, H), bias, mask, causal
    "bias_causal_grouped": ((2, 6, 4, 8), (2, 7, 2, 8), (2, 7, 2, 5), True, False, True),
    "mask_grouped": ((2, 5, 6, 4), (2, 9, 2, 4), (2, 9, 2, 6), False, True, False),
    "mask_bias_causal": ((1, 8, 3, 8), (1, 6, 3, 8), (1, 6, 3, 8), True, True, True),
    "plain": ((2, 3, 2, 16), (2, 40, 2, 16), (2, 40, 2, 3), False, False, False),
}


def _attention_positions(name):
    """q, k, v, out and (backward) dout, dq, dk, dv: the buffers a bfloat16 call holds in bfloat16."""
    return (0, 1, 2, 5) + ((7, 8, 9, 10) if name == "attention_backward" else ())


def _attention_check(spy, d):
    """The attention kernels took the bfloat16 buffers themselves (none widened to float32 copies);
    on a GPU, its own kernels ran them with cuBLAS loaded, the host's kernels (on bfloat16 copies)
    without."""
    spy.check(d.kind == "gpu", ATTENTION_KERNELS)
    if d.kind == "gpu":
        native = _dm._CUDA.cublas_status().startswith("loaded")
        for n in ATTENTION_KERNELS:
            ran_on_host = spy.fallbacks.get(n, 0) != spy.fell_back[n]
            assert ran_on_host != native, (n, native, spy.fallbacks)


@pytest.mark.parametrize("case", sorted(ATTENTION_CASES))
def test_bfloat16_attention_on_the_device_as_on_cpu(dev, case):
    """ops.dot_product_attention on bfloat16 query, key and value (a float32 bias, a boolean mask,
    causal, grouped heads): the CPU computes in bfloat16 (bfloat16 product operands with float32
    sums, csrc/cpu/attention.cpp), and so does a GPU's attention kernel itself (cuBLAS's bfloat16
    products, csrc/cuda/attention.cu) on the bfloat16 buffers, never on float32 copies; without
    cuBLAS the host's kernel runs it. Outputs and gradients agree within bfloat16's precision."""
    d = _bf16_device(dev)
    qs, ks, vs_, with_bias, with_mask, causal = ATTENTION_CASES[case]
    r = np.random.default_rng(12)
    q, k, v = (_round(r.normal(size=sh)) for sh in (qs, ks, vs_))
    B, T, N, S = qs[0], qs[1], qs[2], ks[1]
    bias = r.normal(scale=0.5, size=(N, T, S)).astype(np.float32) if with_bias else None
    mask = None
    if with_mask:
        mask = r.random((B, 1, T, S)) > 0.3
        mask[0, 0, 1] = False  # a fully masked row
    res = []
    for where in ("cpu:0", d):
        vs = [lamina.Variable(lamina.convert_to_tensor(a, dtype="bfloat16").to(where)) for a in (q, k, v)]
        vb = lamina.Variable(lamina.convert_to_tensor(bias).to(where)) if with_bias else None
        vm = lamina.convert_to_tensor(mask).to(where) if with_mask else None
        spy = _KernelSpy(vs[0].device.kernels, ATTENTION_KERNELS, _attention_positions) if where is d else None
        with spy or contextlib.nullcontext():
            with lamina.GradientTape() as tape:
                out = ops.dot_product_attention(*vs, bias=vb, mask=vm, is_causal=causal)
                loss = ops.sum(ops.cast(out, "float32") * ops.cast(out, "float32"))
            assert out.dtype == "bfloat16" and out.device is vs[0].device
            grads = tape.gradient(loss, vs + ([vb] if with_bias else []))
        assert all(g.dtype == "bfloat16" for g in grads[:3])
        if spy:
            _attention_check(spy, d)
        res.append([np.asarray(t.to("cpu:0").numpy(), np.float32) for t in (out, *grads)])
    for what, w, g in zip(("output", "dq", "dk", "dv", "dbias"), *res):
        np.testing.assert_allclose(g, w, rtol=3e-2, atol=3e-2 * np.abs(w).max() + 1e-6, err_msg=what)
        if what != "dbias":  # rounded once: bfloat16 values
            np.testing.assert_array_equal(g, _round(g))


def _attention_kernels(where, q, k, v, bias, mask, causal, need=(True, True, True), dlogits=True, pad=2):
    """attention_forward then attention_backward called directly on bfloat16 q, k, v (numpy, (B, T,
    N, H)), a float32 bias (N, T, S) and a boolean mask (B, 1, T, S) (each or None), into an output
    padded to depth Hv + pad (7.0 there) with an output gradient of the same layout; dq, dk, dv (those
    in `need`, filled with 5.0 first) bfloat16, the stats and dlogits float32. Returns the arrays of
    out, stats, dq, dk, dv, dlogits (None where not asked for) as float32."""
    d = lamina.get_device(where) if isinstance(where, str) else where
    kern = d.kernels
    B, T, N, H = q.shape
    S, K, Hv = k.shape[1], k.shape[2], v.shape[3]
    st = lambda a: [a.shape[1] * a.shape[2] * a.shape[3], a.shape[2] * a.shape[3], a.shape[3]]  # noqa: E731
    with lamina.device(d):
        qt, kt, vt = (lamina.convert_to_tensor(a, dtype="bfloat16") for a in (q, k, v))
        out = lamina.convert_to_tensor(np.full((B, T, N, Hv + pad), 7.0, np.float32), dtype="bfloat16")
        stats = empty((B, N, T, 2), "float32", d)
        bt = lamina.convert_to_tensor(bias) if bias is not None else None
        mt = lamina.convert_to_tensor(mask) if mask is not None else None
        b_st = [0, T * S, S, 1] if bias is not None else [0] * 4
        m_st = [T * S, 0, S, 1] if mask is not None else [0] * 4
        out_st = [T * N * (Hv + pad), N * (Hv + pad), Hv + pad]
        dims = (B, T, S, N, K, H, Hv)
        strides = (st(q), st(k), st(v), out_st, b_st, m_st)
        buf = lambda t: t._buf if t is not None else None  # noqa: E731
        kern.attention_forward(qt._buf, kt._buf, vt._buf, buf(bt), buf(mt), out._buf, stats._buf, *dims, 0.4, causal,
                               *strides)
        g = lamina.convert_to_tensor(np.linspace(-1, 1, B * T * N * (Hv + pad), dtype=np.float32)
                                     .reshape(B, T, N, Hv + pad), dtype="bfloat16")
        grads = [lamina.convert_to_tensor(np.full(a.shape, 5.0, np.float32), dtype="bfloat16") if n else None
                 for a, n in zip((q, k, v), need)]
        dl = empty((B, N, T, S), "float32", d) if dlogits else None
        kern.attention_backward(qt._buf, kt._buf, vt._buf, buf(bt), buf(mt), out._buf, stats._buf, g._buf,
                                *(buf(t) for t in grads), buf(dl), *dims, 0.4, causal, *strides)
        return [None if t is None else np.asarray(t.to("cpu:0").numpy(), np.float32)
                for t in (out, stats, *grads, dl)]


ATTENTION_KERNEL_CASES = {  # q, k, v shapes, bias, mask, causal, gradients asked for (dq, dk, dv), dlogits
    "all": ((2, 6, 4, 3), (2, 6, 2, 3), (2, 6, 2, 5), True, True, True, (True, True, True), True),
    "dk_only": ((1, 5, 3, 4), (1, 7, 1, 4), (1, 7, 1, 4), False, True, False, (False, True, False), False),
    "dq_dv_dlogits": ((2, 4, 2, 6), (2, 3, 2, 6), (2, 3, 2, 2), True, False, True, (True, False, True), True),
    "dlogits_only": ((1, 3, 2, 4), (1, 5, 2, 4), (1, 5, 2, 4), True, False, False, (False, False, False), True),
    "no_keys": ((2, 3, 2, 4), (2, 0, 2, 4), (2, 0, 2, 3), False, False, False, (True, True, True), False),
}


@pytest.mark.parametrize("chunk_bytes", [0, 600, 60])
@pytest.mark.parametrize("case", sorted(ATTENTION_KERNEL_CASES))
def test_bfloat16_attention_kernels_on_the_device_as_on_cpu(dev, case, chunk_bytes, monkeypatch):
    """The bfloat16 attention kernels called directly, on cpu:0 and the device: only some
    gradients, dlogits alone, no keys, a padded output (its padding left as it was), the scores a
    row at a time (LAMINA_ATTENTION_CHUNK_BYTES); out, the stats, dq, dk, dv and dlogits within
    bfloat16's precision, the bfloat16 ones rounded, the gradients not asked for not written. A GPU
    runs them itself with cuBLAS, else the host's kernels run them."""
    if chunk_bytes:
        monkeypatch.setenv("LAMINA_ATTENTION_CHUNK_BYTES", str(chunk_bytes))
    d = _bf16_device(dev)
    qs, ks, vs_, with_bias, with_mask, causal, need, dlogits = ATTENTION_KERNEL_CASES[case]
    r = np.random.default_rng(16)
    q, k, v = (_round(r.normal(size=sh)) for sh in (qs, ks, vs_))
    B, T, N, S = qs[0], qs[1], qs[2], ks[1]
    bias = r.normal(scale=0.5, size=(N, T, S)).astype(np.float32) if with_bias else None
    mask = None
    if with_mask:
        mask = r.random((B, 1, T, S)) > 0.3
        mask[0, 0, 1] = False  # a fully masked row
    want = _attention_kernels("cpu:0", q, k, v, bias, mask, causal, need, dlogits)
    with _KernelSpy(d.kernels, ATTENTION_KERNELS, _attention_positions) as spy:
        got = _attention_kernels(d, q, k, v, bias, mask, causal, need, dlogits)
    _attention_check(spy, d)
    Hv = vs_[3]
    assert (got[0][..., Hv:] == 7.0).all()  # the output's padding is not written
    for what, w, g in zip(("out", "stats", "dq", "dk", "dv", "dlogits"), want, got):
        if w is None:
            assert g is None
            continue
        np.testing.assert_allclose(g, w, rtol=3e-2, atol=3e-2 * np.abs(w).max(initial=0) + 1e-6, err_msg=what)
        if what in ("out", "dq", "dk", "dv"):
            np.testing.assert_array_equal(g, _round(g))
    if S == 0:
        assert not got[0][..., :Hv].any() and not got[2].any()  # no keys: zeros, as the CPU


# conv2d on bfloat16: a GPU runs it itself (bfloat16 im2col, cuBLAS GemmStridedBatchedEx with float32
# sums, one rounding: csrc/cuda/conv.cu), the CPU likewise (csrc/cpu/conv.cpp). Two float32 sums in
# different orders, each rounded once to bfloat16, differ by at most one bfloat16 ulp (2^-7 relative).
CONV_CASES = {  # input shape, kernel shape, strides, padding, dilation
    "same": ((2, 7, 6, 3), (3, 3, 3, 4), 1, "same", 1),
    "valid": ((2, 7, 6, 3), (3, 3, 3, 4), 1, "valid", 1),
    "stride2": ((2, 9, 8, 3), (3, 3, 3, 5), 2, "same", 1),
    "dilation2": ((2, 9, 9, 3), (3, 3, 3, 4), 1, "same", 2),
    "1x1": ((2, 5, 6, 6), (1, 1, 6, 5), 1, "valid", 1),  # no im2col: the input is the product's operand
    "1x1_stride2": ((2, 5, 6, 6), (1, 1, 6, 5), 2, "valid", 1),
    "first_layer": ((2, 10, 10, 1), (5, 5, 1, 4), 1, "same", 1),
    "odd_channels": ((3, 6, 7, 5), (3, 2, 5, 7), (2, 1), "valid", 1),
    "conv1d": ((2, 11, 3), (3, 3, 5), 1, "same", 2),
}
CONV_KERNELS = ("conv2d_forward", "conv2d_backward")


class _ConvSpy:
    """Records the dtype codes of the buffers the conv kernels of a kernel table receive (x, kernel,
    output or output gradient, and the gradients given), and the calls the table widened or, on a
    GPU, ran on the host (KernelUnsupported)."""

    def __init__(self, table):
        self.table, self.seen, self.orig = table, [], {}
        self.widened = {n: table.widened.get(n, 0) for n in CONV_KERNELS}
        inner = getattr(table, "inner", None)
        self.fallbacks = getattr(inner, "fallbacks", {})
        self.fell_back = {n: self.fallbacks.get(n, 0) for n in CONV_KERNELS}

    def __enter__(self):
        for n in CONV_KERNELS:
            k = self.orig[n] = getattr(self.table, n)

            def spy(*a, _k=k, _n=n):
                bufs = (a[0], a[2], a[4]) + ((a[6], a[7]) if _n == "conv2d_backward" else ())
                self.seen.append((_n, tuple(b.dtype for b in bufs if b is not None)))
                return _k(*a)
            setattr(self.table, n, spy)
        return self

    def __exit__(self, *exc):
        for n, k in self.orig.items():
            setattr(self.table, n, k)

    def check(self, gpu):
        assert {s[0] for s in self.seen} == set(CONV_KERNELS), self.seen
        assert all(code == _dm.BF16_CODE for s in self.seen for code in s[1]), self.seen  # not float32 copies
        for n in CONV_KERNELS:
            assert self.table.widened.get(n, 0) == self.widened[n], n
            if gpu and _dm._CUDA.cublas_status().startswith("loaded"):  # the CUDA kernel ran it
                assert self.fallbacks.get(n, 0) == self.fell_back[n], (n, self.fallbacks)


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_bfloat16_conv_on_the_device_as_on_cpu(dev, case):
    """ops.conv on bfloat16 inputs and kernels, and its gradients, on the device as on cpu:0; the
    device's conv kernels take the bfloat16 buffers themselves (none widened to float32 copies)."""
    d = _bf16_device(dev)
    xs, ks, strides, padding, dilation = CONV_CASES[case]
    r = np.random.default_rng(13)
    x, w = _round(r.normal(size=xs)), _round(r.normal(scale=0.4, size=ks))
    conv = lambda a, b: ops.conv(a, b, strides=strides, padding=padding, dilation_rate=dilation)  # noqa: E731
    res, c = [], None
    for where in ("cpu:0", d):
        vs = [lamina.Variable(lamina.convert_to_tensor(a, dtype="bfloat16").to(where)) for a in (x, w)]
        if c is None:  # the loss's weights (the output gradient: the same on both devices)
            c = r.normal(size=conv(*vs).shape).astype(np.float32)
        spy = _ConvSpy(vs[0].device.kernels) if where is d else None
        with spy or contextlib.nullcontext():
            with lamina.GradientTape() as tape:
                y = conv(*vs)
                loss = ops.sum(ops.cast(y, "float32") * lamina.convert_to_tensor(c).to(where))
            grads = tape.gradient(loss, vs)
        assert y.dtype == "bfloat16" and y.device is vs[0].device
        assert all(g.dtype == "bfloat16" for g in grads)
        if spy:
            spy.check(d.kind == "gpu")
        res.append([np.asarray(t.to("cpu:0").numpy(), np.float32) for t in (y, *grads)])
    for what, want, got in zip(("output", "input gradient", "kernel gradient"), *res):
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-3 * np.abs(want).max() + 1e-6, err_msg=what)


def test_bfloat16_conv_transpose_on_the_device_as_on_cpu(dev):
    """ops.conv_transpose on bfloat16: conv2d_backward's input gradient, with the output buffer also
    passed as its (unread) input, and its gradients through conv2d_forward and conv2d_backward."""
    d = _bf16_device(dev)
    r = np.random.default_rng(14)
    x, w = _round(r.normal(size=(2, 5, 4, 3))), _round(r.normal(scale=0.4, size=(3, 3, 6, 3)))
    res, c = [], None
    for where in ("cpu:0", d):
        vs = [lamina.Variable(lamina.convert_to_tensor(a, dtype="bfloat16").to(where)) for a in (x, w)]
        if c is None:
            c = r.normal(size=ops.conv_transpose(*vs, strides=2, padding="same").shape).astype(np.float32)
        with lamina.GradientTape() as tape:
            y = ops.conv_transpose(*vs, strides=2, padding="same")
            loss = ops.sum(ops.cast(y, "float32") * lamina.convert_to_tensor(c).to(where))
        grads = tape.gradient(loss, vs)
        assert y.dtype == "bfloat16" and y.device is vs[0].device
        res.append([np.asarray(t.to("cpu:0").numpy(), np.float32) for t in (y, *grads)])
    for want, got in zip(*res):
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-3 * np.abs(want).max() + 1e-6)


def _conv_call(where, kernel, arrays, dtypes, *args):
    """Calls the device's conv kernel `kernel` directly on buffers holding `arrays` (None: absent) of
    `dtypes`; returns the arrays of the buffers afterwards (the outputs written in place)."""
    ts = [None if a is None else lamina.convert_to_tensor(a, dtype=dt).to(where) for a, dt in zip(arrays, dtypes)]
    kern = (ts[0].device).kernels
    shapes = [None if a is None else list(np.shape(a)) for a in arrays]
    bufs = [None if t is None else t._buf for t in ts]
    if kernel == "conv2d_forward":
        kern.conv2d_forward(bufs[0], shapes[0], bufs[1], shapes[1], bufs[2], shapes[2], *args)
    else:
        kern.conv2d_backward(bufs[0], shapes[0], bufs[1], shapes[1], bufs[2], shapes[2], bufs[3], bufs[4], *args)
    return [None if t is None else np.asarray(t.to("cpu:0").numpy(), np.float32) for t in ts]


@pytest.mark.parametrize("geometry", ["stride2", "1x1"])
def test_bfloat16_conv_kernels_with_float32_outputs_on_the_device_as_on_cpu(dev, geometry):
    """The kernels' contract (csrc/cpu/conv.cpp's conv2d_*_bf16): bfloat16 x, kernel and output
    gradient; the output and each gradient bfloat16 or float32 (float32 sums, rounded once where
    bfloat16); a float32 kernel with a bfloat16 input, or a bfloat16 kernel with a float32 input, is a
    TypeError on every device."""
    d = _bf16_device(dev)
    r = np.random.default_rng(15)
    if geometry == "stride2":
        xs, ws, os_ = (2, 7, 6, 3), (3, 3, 3, 4), (2, 4, 3, 4)
        geo = ([2, 2], [1, 1], [1, 1, 1, 1])
    else:
        xs, ws, os_ = (2, 5, 3, 6), (1, 1, 6, 5), (2, 5, 3, 5)
        geo = ([1, 1], [1, 1], [0, 0, 0, 0])
    x, w, g = _round(r.normal(size=xs)), _round(r.normal(scale=0.4, size=ws)), _round(r.normal(size=os_))
    z = np.zeros
    calls = [  # kernel, arrays, dtypes: the outputs float32, bfloat16, or one of each
        ("conv2d_forward", (x, w, z(os_)), ("bfloat16", "bfloat16", "float32")),
        ("conv2d_forward", (x, w, z(os_)), ("bfloat16", "bfloat16", "bfloat16")),
        ("conv2d_backward", (x, w, g, z(xs), z(ws)), ("bfloat16",) * 3 + ("float32", "float32")),
        ("conv2d_backward", (x, w, g, z(xs), z(ws)), ("bfloat16",) * 3 + ("float32", "bfloat16")),
        ("conv2d_backward", (x, w, g, z(xs), z(ws)), ("bfloat16",) * 3 + ("bfloat16", "float32")),
        ("conv2d_backward", (x, w, g, None, z(ws)), ("bfloat16",) * 3 + (None, "float32")),
        ("conv2d_backward", (x, w, g, z(xs), None), ("bfloat16",) * 3 + ("float32", None)),
    ]
    for kernel, arrays, dts in calls:
        want, got = (_conv_call(where, kernel, arrays, dts, *geo) for where in ("cpu:0", d))
        for i in range(3 if kernel == "conv2d_backward" else 2, len(arrays)):
            if arrays[i] is None:
                continue
            np.testing.assert_allclose(got[i], want[i], rtol=1e-2, atol=1e-3 * np.abs(want[i]).max() + 1e-6,
                                       err_msg=f"{kernel} {dts}: output {i}")
            if dts[i] == "bfloat16":  # rounded: bfloat16 values
                np.testing.assert_array_equal(got[i], _round(got[i]))
    for dts in (("bfloat16", "float32", "bfloat16"), ("float32", "bfloat16", "float32")):
        for where in ("cpu:0", d):
            with pytest.raises(TypeError, match="dtype"):
                _conv_call(where, "conv2d_forward", (x, w, z(os_)), dts, *geo)


def test_bfloat16_strided_accumulation_on_the_device_as_on_cpu(dev):
    """strided_copy's += on bfloat16 (slices' and concatenations' gradients under mixed precision):
    a float32 sum rounded once per element, as the CPU's, and on a GPU in its own kernel."""
    d = _bf16_device(dev)
    src, dst = _round(R.normal(size=(4, 6))), _round(R.normal(size=(5, 6)) * 100.0)

    def run(device):
        s = lamina.convert_to_tensor(src, dtype="bfloat16").to(device)
        t = lamina.convert_to_tensor(dst, dtype="bfloat16").to(device)
        # rows 1..4 of dst, columns reversed, += src; then dst[j, i] += src[j, 2] (a zero source stride)
        device.kernels.strided_copy(s._buf, 0, [6, 1], t._buf, 6 + 5, [6, -1], [4, 6], True)
        device.kernels.strided_copy(s._buf, 2, [0, 6], t._buf, 0, [1, 6], [4, 4], True)
        return t.to("cpu:0").numpy()

    inner = getattr(d.kernels, "inner", None)
    before = dict(getattr(inner, "fallbacks", {}))
    got, want = run(d), run(lamina.get_device("cpu:0"))
    np.testing.assert_array_equal(got, want)
    expect = dst.copy()
    expect[1:5, ::-1] = _round(expect[1:5, ::-1] + src)
    expect[:4, :4] = _round(expect[:4, :4] + src[:4, 2:3])  # dst[j, i] += src[j, 2]
    np.testing.assert_array_equal(got, expect)
    if dev.kind == "gpu":
        assert getattr(inner, "fallbacks", {}).get("strided_copy", 0) == before.get("strided_copy", 0)


def test_bfloat16_nonzero_on_the_device_as_on_cpu(dev):
    """count_nonzero / nonzero take bfloat16 buffers themselves (no float32 copy): -0 is zero, NaN
    and the smallest subnormal are not, as numpy says of the float32 values."""
    d = _bf16_device(dev)
    x = _round(R.normal(size=(3, 5, 7)))
    x[x > 0.4] = 0.0
    x[0, 1, :3] = [-0.0, np.nan, 1e-40]
    x[2, 4, 6] = -np.inf
    widened = dict(d.kernels.widened)
    for device in (d, lamina.get_device("cpu:0")):
        t = lamina.convert_to_tensor(x, dtype="bfloat16").to(device)
        assert int(ops.count_nonzero(t)) == np.count_nonzero(x)
        for got, want in zip(ops.nonzero(t), np.nonzero(x)):
            np.testing.assert_array_equal(got.numpy(), want)
    assert {n: d.kernels.widened.get(n, 0) for n in ("count_nonzero", "nonzero")} == \
        {n: widened.get(n, 0) for n in ("count_nonzero", "nonzero")}


def _dw_call(where, kernel, arrays, dtypes, *geo):
    """depthwise_conv2d_forward / _backward on buffers holding `arrays` (None: absent) of `dtypes`;
    the arrays of the buffers afterwards (outputs written in place)."""
    ts = [None if a is None else lamina.convert_to_tensor(a, dtype=dt).to(where) for a, dt in zip(arrays, dtypes)]
    k = ts[0].device.kernels
    shapes = [None if a is None else list(np.shape(a)) for a in arrays]
    bufs = [None if t is None else t._buf for t in ts]
    if kernel == "forward":
        k.depthwise_conv2d_forward(bufs[0], shapes[0], bufs[1], shapes[1], bufs[2], shapes[2], *geo)
    else:
        k.depthwise_conv2d_backward(bufs[0], shapes[0], bufs[1], shapes[1], bufs[2], shapes[2], bufs[3], bufs[4], *geo)
    return [None if t is None else np.asarray(t.to("cpu:0").numpy(), np.float32) for t in ts]


@pytest.mark.parametrize("geometry", ["stride2_dm2", "dilated"])
def test_bfloat16_depthwise_on_the_device_as_on_cpu(dev, geometry):
    """Depthwise convolutions take bfloat16 buffers themselves on a GPU (no float32 copies), in any
    mix with float32 ones: float32 sums of the widened values, each output rounded once -- the bits of
    the device's float32 kernel on float32 copies (what the widening table ran before), and cpu:0's
    within its summation order."""
    d = _bf16_device(dev)
    r = np.random.default_rng(21)
    if geometry == "stride2_dm2":
        xs, ws, os_, geo = (2, 7, 6, 3), (3, 3, 3, 2), (2, 4, 3, 6), ([2, 2], [1, 1], [1, 1, 1, 1])
    else:
        xs, ws, os_, geo = (1, 9, 8, 4), (3, 2, 4, 1), (1, 5, 6, 4), ([1, 1], [2, 2], [0, 0, 0, 0])
    x, w, g = _round(r.normal(size=xs)), _round(r.normal(scale=0.4, size=ws)), _round(r.normal(size=os_))
    z = np.zeros
    bf, f = "bfloat16", "float32"
    calls = [
        ("forward", (x, w, z(os_)), (bf, bf, bf)),
        ("forward", (x, w, z(os_)), (bf, f, f)),
        ("forward", (x, w, z(os_)), (f, bf, bf)),
        ("backward", (x, w, g, z(xs), z(ws)), (bf,) * 5),
        ("backward", (x, w, g, z(xs), z(ws)), (bf, bf, bf, f, bf)),
        ("backward", (x, w, g, None, z(ws)), (f, bf, f, None, bf)),
        ("backward", (x, w, g, z(xs), None), (bf, f, bf, bf, None)),
    ]
    widened = dict(d.kernels.widened)
    fell_back = dict(getattr(getattr(d.kernels, "inner", None), "fallbacks", {}))
    for kernel, arrays, dts in calls:
        got = _dw_call(d, kernel, arrays, dts, *geo)
        # the device's float32 kernel on the same (bfloat16) values, rounded where the output is bfloat16
        wide = _dw_call(d, kernel, arrays, tuple(dt and f for dt in dts), *geo)
        cpu = _dw_call("cpu:0", kernel, arrays, dts, *geo)
        for i in range(2 if kernel == "forward" else 3, len(arrays)):
            if arrays[i] is not None:
                want = _round(wide[i]) if dts[i] == bf else wide[i]
                np.testing.assert_array_equal(got[i], want, err_msg=f"{kernel} {dts}: output {i}")
                np.testing.assert_allclose(got[i], cpu[i], rtol=1e-2, atol=1e-3 * np.abs(cpu[i]).max() + 1e-6)
    if dev.kind == "gpu":
        names = ("depthwise_conv2d_forward", "depthwise_conv2d_backward")
        assert {n: d.kernels.widened.get(n, 0) for n in names} == {n: widened.get(n, 0) for n in names}
        assert all(d.kernels.inner.fallbacks.get(n, 0) == fell_back.get(n, 0) for n in names)
    with pytest.raises(TypeError, match="dtype"):
        _dw_call(d, "forward", (x, w, z(os_)), (bf, "int32", bf), *geo)


def test_bfloat16_dropout_on_the_device_as_on_cpu(dev):
    """dropout, its mask and its gradient take bfloat16 buffers themselves on a GPU, in any mix with
    float32: the float32 kernel's values rounded once (the same draws: the CPU's Philox stream)."""
    d = _bf16_device(dev)
    x = _round(R.normal(size=(5, 37)))
    bf, f = "bfloat16", "float32"

    def run(where, kernel, dts, n=x.size):
        t = [lamina.convert_to_tensor(x, dtype=dt).to(where) for dt in dts]
        k = t[0].device.kernels if t else lamina.get_device(where).kernels
        mask = lamina.convert_to_tensor(np.zeros(x.shape, bool)).to(where)
        if kernel == "dropout":
            k.dropout(t[0]._buf, 123, 7, 0.3, t[1]._buf, mask._buf)
            return [np.asarray(t[1].to("cpu:0").numpy(), np.float32), mask.to("cpu:0").numpy()]
        if kernel == "dropout_mask":
            k.dropout_mask(123, 7, 0.3, t[0]._buf)
            return [np.asarray(t[0].to("cpu:0").numpy(), np.float32)]
        mask = lamina.convert_to_tensor(x > 0).to(where)
        k.dropout_grad(t[0]._buf, mask._buf, 1 / 0.7, t[1]._buf)
        return [np.asarray(t[1].to("cpu:0").numpy(), np.float32)]

    widened = dict(d.kernels.widened)
    for kernel, dts in [("dropout", (bf, bf)), ("dropout", (bf, f)), ("dropout", (f, bf)), ("dropout_mask", (bf,)),
                        ("dropout_grad", (bf, bf)), ("dropout_grad", (f, bf)), ("dropout_grad", (bf, f))]:
        got = run(d, kernel, dts)
        want = run("cpu:0", kernel, tuple(f for _ in dts))  # cpu:0 in float32 on the same values
        out_dtype = dts[-1]
        np.testing.assert_array_equal(got[0], _round(want[0]) if out_dtype == bf else want[0], err_msg=f"{kernel} {dts}")
        if kernel == "dropout":
            np.testing.assert_array_equal(got[1], want[1])
    if dev.kind == "gpu":
        names = ("dropout", "dropout_mask", "dropout_grad")
        assert {n: d.kernels.widened.get(n, 0) for n in names} == {n: widened.get(n, 0) for n in names}
