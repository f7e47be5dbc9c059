"""int8 kernels (csrc/cpu/qgemm.cpp, quantize.cpp, conv.cpp's qconv2d) against numpy int32
references, bit for bit, on every micro-kernel this CPU runs."""
import numpy as np
import pytest

import lamina
from lamina.backend import _cpu
from lamina.backend import quantization as q

from qgemm_refs import KERNELS, kernel, pack as _pack  # noqa: F401 (kernel: a fixture)


def _quantize_rows(x):
    """Keras's AbsMaxQuantizer(axis=-1) in numpy float32."""
    scale = (np.float32(127) / (np.abs(x).max(-1, keepdims=True) + np.float32(1e-7))).astype(np.float32)
    return np.clip(np.round(x * scale), -127, 127).astype(np.int32), scale


@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (1, 3, 5), (13, 17, 33), (29, 100, 70), (200, 64, 31), (7, 1029, 40),
                                   (193, 37, 64), (48, 4, 32)])
def test_qmatmul_is_bit_exact(kernel, M, K, N):
    rng = np.random.default_rng(M * 1000 + K + N)
    w = rng.integers(-128, 128, (K, N)).astype(np.int8)  # the whole int8 range: -128 meets negative q
    x = (rng.standard_normal((M, K)) * rng.random((M, 1)) * 10).astype(np.float32)
    x[0, : min(K, 3)] = 0.5                     # ties of round-half-even after scaling
    if M > 2:
        x[1] = 0.0                              # an all-zero row: scale 127 / 1e-7
    ws = (rng.random(N) + 0.5).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    packed, colsum = _pack(w)
    np.testing.assert_array_equal(_cpu.to_numpy(colsum, [N]), w.astype(np.int32).sum(0))
    out = _cpu.Buffer(M * N, 0)
    for b in (bias, None):
        _cpu.qmatmul(_cpu.from_numpy(x), M, K, N, packed, colsum, _cpu.from_numpy(ws),
                     None if b is None else _cpu.from_numpy(b), out)
        qx, sx = _quantize_rows(x)
        ref = (qx @ w.astype(np.int32)).astype(np.float32) / (ws[None, :] * sx)
        if b is not None:
            ref = ref + b
        np.testing.assert_array_equal(_cpu.to_numpy(out, [M, N]), ref)


def test_qmatmul_threads_give_the_same_bits():
    rng = np.random.default_rng(1)
    M, K, N = 300, 260, 200
    w = rng.integers(-127, 128, (K, N)).astype(np.int8)
    x = rng.standard_normal((M, K)).astype(np.float32)
    packed, colsum = _pack(w)
    ws = _cpu.from_numpy(np.ones(N, np.float32))
    outs = []
    before = lamina.config.get_num_threads()
    try:
        for t in (1, 2):
            lamina.config.set_num_threads(t)
            out = _cpu.Buffer(M * N, 0)
            _cpu.qmatmul(_cpu.from_numpy(x), M, K, N, packed, colsum, ws, None, out)
            outs.append(_cpu.to_numpy(out, [M, N]))
    finally:
        lamina.config.set_num_threads(before)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_nan_rows_give_nan_outputs_and_other_rows_are_unaffected():
    rng = np.random.default_rng(2)
    w = rng.integers(-127, 128, (8, 4)).astype(np.int8)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    x[1, 2] = np.nan
    packed, colsum = _pack(w)
    out = _cpu.Buffer(12, 0)
    _cpu.qmatmul(_cpu.from_numpy(x), 3, 8, 4, packed, colsum, _cpu.from_numpy(np.ones(4, np.float32)), None, out)
    o = _cpu.to_numpy(out, [3, 4])
    assert np.isnan(o[1]).all() and np.isfinite(o[[0, 2]]).all()


def test_kernel_argument_errors():
    w = np.zeros((4, 4), np.int8)
    packed, colsum = _pack(w)
    with pytest.raises(ValueError, match="qmatmul: input holds 12 elements, expected 16"):
        _cpu.qmatmul(_cpu.from_numpy(np.zeros(12, np.float32)), 4, 4, 4, packed, colsum,
                     _cpu.from_numpy(np.ones(4, np.float32)), None, _cpu.Buffer(16, 0))
    with pytest.raises(TypeError, match="qgemm_pack"):
        _cpu.qgemm_pack(_cpu.from_numpy(np.zeros(16, np.float32)), 4, 4, packed, colsum)
    with pytest.raises(ValueError, match="set_qgemm_kernel: expected 'vnni', 'avxvnni', 'avx2' or 'generic'"):
        _cpu.set_qgemm_kernel("avx9")
    with pytest.raises(TypeError, match="int8 tensors hold quantized weights"):
        _cpu.binary(0, _cpu.from_numpy(np.zeros(4, np.int8)), [4], _cpu.from_numpy(np.zeros(4, np.int8)), [4],
                    _cpu.Buffer(4, 4), [4])


def _conv_ref(x, w, ws, bias, stride, pad, per="window"):
    """numpy reference of qconv2d: im2col rows quantized one by one."""
    n, h, wd, c = x.shape
    kh, kw, _, o = w.shape
    xp = np.pad(x, ((0, 0), (pad[0], pad[1]), (pad[2], pad[3]), (0, 0)))
    oh = (h + pad[0] + pad[1] - kh) // stride + 1
    ow = (wd + pad[2] + pad[3] - kw) // stride + 1
    cols = np.stack([xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :].reshape(n, -1)
                     for i in range(oh) for j in range(ow)], 1).reshape(-1, kh * kw * c)
    qx, sx = _quantize_rows(cols)
    ref = (qx @ w.reshape(-1, o).astype(np.int32)).astype(np.float32) / (ws[None, :] * sx) + bias
    return ref.reshape(n, oh, ow, o)


@pytest.mark.parametrize("kh,stride,pad", [(3, 1, (1, 1, 1, 1)), (3, 2, (0, 1, 0, 1)), (1, 1, (0, 0, 0, 0)),
                                           (5, 1, (2, 2, 2, 2))])
def test_qconv2d_is_bit_exact(kernel, kh, stride, pad):
    rng = np.random.default_rng(kh * 10 + stride)
    x = rng.standard_normal((2, 9, 8, 5)).astype(np.float32)
    w = rng.integers(-127, 128, (kh, kh, 5, 7)).astype(np.int8)
    ws = (rng.random(7) + 0.5).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    ref = _conv_ref(x, w, ws, bias, stride, pad)
    packed, colsum = _pack(w.reshape(-1, 7))
    out = _cpu.Buffer(ref.size, 0)
    _cpu.qconv2d_forward(_cpu.from_numpy(x), list(x.shape), list(w.shape), packed, colsum, _cpu.from_numpy(ws),
                         _cpu.from_numpy(bias), out, list(ref.shape), [stride, stride], [1, 1], list(pad))
    np.testing.assert_array_equal(_cpu.to_numpy(out, list(ref.shape)), ref)


@pytest.mark.parametrize("dm,stride", [(1, 1), (2, 2)])
def test_qdepthwise2d_is_bit_exact(dm, stride):
    rng = np.random.default_rng(dm + stride)
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    w = rng.integers(-127, 128, (3, 3, 3, dm)).astype(np.int8)
    ws = (rng.random(3 * dm) + 0.5).astype(np.float32)
    bias = rng.standard_normal(3 * dm).astype(np.float32)
    s = (np.float32(127) / (np.abs(x).max((1, 2)) + np.float32(1e-7))).astype(np.float32)  # (image, channel)
    qx = np.clip(np.round(x * s[:, None, None, :]), -127, 127).astype(np.int32)
    xp = np.pad(qx, ((0, 0), (1, 1), (1, 1), (0, 0)))
    oh, ow = (7 + 2 - 3) // stride + 1, (6 + 2 - 3) // stride + 1
    acc = np.zeros((2, oh, ow, 3, dm), np.int64)
    for i in range(3):
        for j in range(3):
            patch = xp[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]
            acc += patch[..., None] * w[i, j].astype(np.int32)[None, None, None]
    den = ws.reshape(3, dm)[None] * s[:, :, None]                                       # (image, c, m)
    ref = acc.reshape(2, oh, ow, 3 * dm).astype(np.float32) / den.reshape(2, 1, 1, 3 * dm) + bias
    out = _cpu.Buffer(ref.size, 0)
    _cpu.qdepthwise2d(_cpu.from_numpy(x), list(x.shape), _cpu.from_numpy(w), list(w.shape), _cpu.from_numpy(ws),
                      _cpu.from_numpy(bias), out, list(ref.shape), [stride, stride], [1, 1], [1, 1, 1, 1])
    np.testing.assert_array_equal(_cpu.to_numpy(out, list(ref.shape)), ref)


def test_qembedding_divides_rows_by_their_scales_and_checks_ids():
    rng = np.random.default_rng(3)
    t = rng.integers(-127, 128, (10, 6)).astype(np.int8)
    s = (rng.random(10) + 0.1).astype(np.float32)
    ids = np.array([[0, 9], [3, 3]], np.int64)
    out = _cpu.Buffer(24, 0)
    _cpu.qembedding(_cpu.from_numpy(t), 10, 6, _cpu.from_numpy(s), _cpu.from_numpy(ids.reshape(-1)), out)
    np.testing.assert_array_equal(_cpu.to_numpy(out, [2, 2, 6]), t[ids].astype(np.float32) / s[ids][..., None])
    with pytest.raises(ValueError, match="id 10 at position 1 is outside the table's 10 rows"):
        _cpu.qembedding(_cpu.from_numpy(t), 10, 6, _cpu.from_numpy(s), _cpu.from_numpy(np.array([1, 10])),
                        _cpu.Buffer(12, 0))


def test_int8_weight_round_trips_and_validates():
    w = q.Int8Weight(np.array([[1, -2], [127, -128]], np.int8), "kernel", path="d/kernel")
    assert w.shape == (2, 2) and w.dtype == "int8" and not w.trainable and w.path == "d/kernel"
    np.testing.assert_array_equal(w.numpy(), [[1, -2], [127, -128]])
    w.assign(np.array([[0, 0], [5, 5]]))
    assert w.version == 1 and w.numpy().tolist() == [[0, 0], [5, 5]]
    with pytest.raises(ValueError, match=r"values must lie in \[-128, 127\]"):
        w.assign(np.array([[0, 0], [300, 0]]))
    with pytest.raises(ValueError, match="expected a value of shape"):
        w.assign(np.zeros((3,), np.int8))
    with pytest.raises(TypeError, match="expected integer values"):
        w.assign(np.full((2, 2), 0.5, np.float32))
    # array-convertible as a Keras int8 variable: ops see its integer values, never float garbage
    np.testing.assert_array_equal(np.asarray(w), [[0, 0], [5, 5]])
    assert np.asarray(w).dtype == np.int8 and lamina.ops.convert_to_numpy(w).dtype == np.int8
    np.testing.assert_array_equal(lamina.ops.add(w, 1.0).numpy(), [[1, 1], [6, 6]])
    with pytest.raises(TypeError, match="expected float32 operands"):
        lamina.ops.matmul(np.ones((1, 2), np.float32), w)  # an integer operand, refused as any


def test_fused_relu_equals_relu_after_the_product_and_keeps_nan(kernel):
    rng = np.random.default_rng(5)
    M, K, N = 30, 40, 37
    w = rng.integers(-127, 128, (K, N)).astype(np.int8)
    x = rng.standard_normal((M, K)).astype(np.float32)
    x[3, 1] = np.nan
    packed, colsum = _pack(w)
    ws, b = _cpu.from_numpy((rng.random(N) + 0.5).astype(np.float32)), _cpu.from_numpy(rng.standard_normal(N).astype(np.float32))
    plain, fused = _cpu.Buffer(M * N, 0), _cpu.Buffer(M * N, 0)
    _cpu.qmatmul(_cpu.from_numpy(x), M, K, N, packed, colsum, ws, b, plain)
    _cpu.qmatmul(_cpu.from_numpy(x), M, K, N, packed, colsum, ws, b, fused, True)
    p, f = _cpu.to_numpy(plain, [M, N]), _cpu.to_numpy(fused, [M, N])
    ref = np.where(p < 0, 0, p)
    np.testing.assert_array_equal(f, ref)
    assert np.isnan(f[3]).all() and (f >= 0)[np.isfinite(f)].all() and (f == 0).any()
