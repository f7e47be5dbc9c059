"""The int8 inference kernels (csrc/cuda/quant.cu) on a device under test (tests/gpu/conftest.py)
against cpu:0: qgemm_packed_bytes / qgemm_pack (the packed layout, shared by every device), qmatmul,
qconv2d_forward, qconv2d_fused, qdepthwise2d, qdepthwise2d_fused and qembedding, called directly at
awkward sizes with each option (bias, relu, BatchNormalization, clamps, byte inputs and outputs,
NaN marks, saturation, int32 sums near their limit, the argument errors), and through the quantized
Dense, Conv2D, DepthwiseConv2D and Embedding layers and a fused MobileNet-style model.

The integer sums are exact and every float step is the CPU's, so the results equal the CPU's bit
for bit. The fused kernels' folded epilogue is one fused multiply-add, as the CPU's VNNI / AVX-512
code; where the CPU runs another int8 micro-kernel they agree within one float32 rounding."""
import importlib

import numpy as np
import pytest

import lamina

from device_calls import device_of as _device, same_error as _same_error
from lamina import layers
from lamina.backend import _cpu

_dm = importlib.import_module("lamina.backend.device")

F32, I32, I8 = 0, 1, 4
VNNI = _cpu.qgemm_kernel() == "vnni"
QKERNELS = ("qgemm_pack", "qmatmul", "qconv2d_forward", "qconv2d_fused", "qdepthwise2d", "qdepthwise2d_fused",
            "qembedding")


class _K:
    """Kernel calls on one device: numpy arrays become buffers there; outputs start as a sentinel
    (so that a value the kernel fails to write shows)."""

    def __init__(self, device):
        self.d = _device(device)
        self.k = self.d.kernels

    def buf(self, a):
        return self.d.from_numpy(np.ascontiguousarray(a))

    def out(self, shape, dtype=np.float32, fill=7):
        a = np.full(shape, fill, dtype)
        return self.buf(a.view(np.int8) if dtype == np.uint8 else a)  # bytes live in int8 buffers

    def get(self, b, shape, dtype=None):
        a = self.k.to_numpy(b, list(shape))
        return a.view(dtype) if dtype is not None else a

    def pack(self, w):
        K, N = w.shape
        packed = self.out(int(self.k.qgemm_packed_bytes(K, N)), np.int8, 99)
        colsum = self.out(N, np.int32, 12345)
        self.k.qgemm_pack(self.buf(w), K, N, packed, colsum)
        return packed, colsum


def _bits_equal(got, want):
    """The same values bit for bit (signed zeros too), NaN where the CPU has NaN (any payload)."""
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, want)
        return
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


def _fused_equal(got, want):
    """A fused kernel's output: the CPU's bit for bit where its micro-kernel is VNNI's (one fused
    multiply-add, as the GPU's), else within one rounding (bytes within one step)."""
    if VNNI:
        _bits_equal(got, want)
    elif got.dtype == np.uint8:
        assert np.abs(got.astype(int) - want.astype(int)).max(initial=0) <= 1
    else:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6 * max(1.0, float(np.nanmax(np.abs(want),
                                                                                               initial=0))))


def _rows(rng, M, K):
    """Float rows with the edge cases of the abs-max quantization: a zero row, a row whose largest
    value rounds others to 0, tiny values (huge scales), ties at .5 after scaling, a NaN row."""
    x = rng.standard_normal((M, K)).astype(np.float32)
    if M >= 6 and K >= 2:
        x[1] = 0.0
        x[2, 0] = 1e6
        x[3] *= np.float32(1e-30)
        x[4] = np.arange(K, dtype=np.float32) - K / 2  # integers: x * 127 / max lands on halves
        x[5, K // 2] = np.nan
    return x


def _weights(rng, K, N):
    w = rng.integers(-128, 128, (K, N)).astype(np.int8)
    if K and N:
        w[0, 0], w[-1, -1] = -128, 127
    return w


def test_the_gpu_runs_every_int8_kernel_itself(dev):
    if _device(dev).kind != "gpu":
        pytest.skip("the host-fallback devices run the CPU's kernels by design")
    assert set(QKERNELS) | {"qgemm_packed_bytes"} <= set(_device(dev).kernels.native)


# ---- qgemm_packed_bytes / qgemm_pack ------------------------------------------------------------

@pytest.mark.parametrize("K,N", [(1, 1), (3, 31), (4, 32), (5, 33), (70, 45), (129, 100), (0, 5), (6, 0)])
def test_packing_writes_the_cpus_layout(dev, K, N):
    w = _weights(np.random.default_rng(K * 7 + N), K, N)
    res = []
    for d in ("cpu:0", dev):
        kc = _K(d)
        assert int(kc.k.qgemm_packed_bytes(K, N)) == int(_cpu.qgemm_packed_bytes(K, N))
        packed, colsum = kc.pack(w)
        res.append((kc.get(packed, [packed.numel]), kc.get(colsum, [N])))
    _bits_equal(res[1][0], res[0][0])
    _bits_equal(res[1][1], res[0][1])
    np.testing.assert_array_equal(res[1][1], w.astype(np.int64).sum(0))


def test_packing_checks_its_arguments(dev):
    def call(d, K=4, N=3, wdt=np.int8, extra=0):
        kc = _K(d)
        kc.k.qgemm_pack(kc.buf(np.zeros(K * N if K >= 0 else 1, wdt)), K, N,
                        kc.out(int(_cpu.qgemm_packed_bytes(4, 3)) + extra, np.int8, 0), kc.out(3, np.int32, 0))
    _same_error(lambda d: call(d, wdt=np.float32), dev)
    _same_error(lambda d: call(d, extra=1), dev)
    _same_error(lambda d: call(d, K=-1), dev)


# ---- qmatmul --------------------------------------------------------------------------------------

def _qmatmul(d, x, w, ws, bias, relu):
    kc = _K(d)
    M, K = x.shape
    N = w.shape[1]
    packed, colsum = kc.pack(w)
    out = kc.out((M, N))
    kc.k.qmatmul(kc.buf(x), M, K, N, packed, colsum, kc.buf(ws), kc.buf(bias) if bias is not None else None, out,
                 relu)
    return kc.get(out, (M, N))


@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (37, 70, 45), (130, 33, 97), (65, 129, 64), (6, 3, 2), (3, 0, 5),
                                   (0, 8, 4), (5, 8, 0)])
@pytest.mark.parametrize("bias,relu", [(False, False), (True, True)])
def test_qmatmul_equals_the_cpu_bit_for_bit(dev, M, K, N, bias, relu):
    rng = np.random.default_rng(M * 1000 + K * 10 + N)
    x, w = _rows(rng, M, K), _weights(rng, K, N)
    ws = (rng.random(N) * 100 + 1).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32) if bias else None
    want = _qmatmul("cpu:0", x, w, ws, b, relu)
    _bits_equal(_qmatmul(dev, x, w, ws, b, relu), want)
    if relu and want.size:
        assert (want[~np.isnan(want)] >= 0).all()


@pytest.mark.parametrize("relu", [False, True])
def test_qmatmul_bias_and_relu_options_separately(dev, relu):
    rng = np.random.default_rng(4)
    x, w = _rows(rng, 9, 40), _weights(rng, 40, 35)
    ws = (rng.random(35) * 80 + 5).astype(np.float32)
    _bits_equal(_qmatmul(dev, x, w, ws, None, relu), _qmatmul("cpu:0", x, w, ws, None, relu))
    b = rng.standard_normal(35).astype(np.float32)
    _bits_equal(_qmatmul(dev, x, w, ws, b, False), _qmatmul("cpu:0", x, w, ws, b, False))


def test_qmatmul_sums_at_the_int32_limit(dev):
    """66000 terms of 127 * -128 (the shifted bytes' sums pass -2^31 and wrap, as VNNI's do, before
    the column-sum correction brings them back) and 127 * 127; one more term is refused."""
    K = 66000
    x = np.stack([np.ones(K, np.float32), -np.ones(K, np.float32)])
    w = np.stack([np.full(K, -128, np.int8), np.full(K, 127, np.int8)], axis=1)
    ws = np.ones(2, np.float32)
    want = _qmatmul("cpu:0", x, w, ws, None, False)
    got = _qmatmul(dev, x, w, ws, None, False)
    _bits_equal(got, want)
    np.testing.assert_allclose(got, [[-128.0 * K, 127.0 * K], [128.0 * K, -127.0 * K]], rtol=1e-6)
    err = _same_error(lambda d: _qmatmul(d, np.ones((1, K + 1), np.float32), np.ones((K + 1, 1), np.int8), ws[:1],
                                         None, False), dev)
    assert "at most 66000 terms" in str(err)


@pytest.mark.skipif(not VNNI, reason="the CPU's int8 micro-kernels quantize x * 0 = NaN (an infinite input with "
                                     "the scale 0 of its row) differently; the GPU follows VNNI's (-127)")
def test_qmatmul_infinite_inputs_as_the_cpus_vnni_kernel(dev):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((4, 9)).astype(np.float32), _weights(rng, 9, 5)
    x[0, 3], x[1, 0], x[1, 5], x[2, 8] = np.inf, -np.inf, np.inf, -np.inf
    ws = (rng.random(5) * 10 + 1).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    for relu in (False, True):
        _bits_equal(_qmatmul(dev, x, w, ws, b, relu), _qmatmul("cpu:0", x, w, ws, b, relu))


def test_qmatmul_checks_its_arguments(dev):
    rng = np.random.default_rng(3)
    x, w, ws = rng.standard_normal((3, 8)).astype(np.float32), _weights(rng, 8, 4), np.ones(4, np.float32)

    def call(d, M=3, K=8, N=4, xa=x, wsa=ws, bias=None, out_n=12, colsum_dtype=np.int32, packed_extra=0):
        kc = _K(d)
        packed, colsum = kc.pack(w)
        if packed_extra:
            packed = kc.out(packed.numel + packed_extra, np.int8, 0)
        if colsum_dtype is not np.int32:
            colsum = kc.out(4, colsum_dtype, 0)
        kc.k.qmatmul(kc.buf(xa), M, K, N, packed, colsum, kc.buf(wsa), None if bias is None else kc.buf(bias),
                     kc.out(out_n), False)
    _same_error(lambda d: call(d, M=-1), dev)
    _same_error(lambda d: call(d, xa=x.astype(np.int32)), dev)
    _same_error(lambda d: call(d, packed_extra=4), dev)
    _same_error(lambda d: call(d, colsum_dtype=np.int64), dev)
    _same_error(lambda d: call(d, wsa=ws[:3]), dev)
    _same_error(lambda d: call(d, bias=np.ones(5, np.float32)), dev)
    _same_error(lambda d: call(d, out_n=11), dev)


@pytest.mark.parametrize("where", ["packed on cpu:0", "packed on the device"])
def test_a_packed_buffer_reads_the_same_on_every_device(dev, where):
    """Every device packs csrc/quant_checks.h's layout: packed weights copied between devices
    give the same products."""
    rng = np.random.default_rng(6)
    x, w = _rows(rng, 11, 37), _weights(rng, 37, 40)
    ws = (rng.random(40) * 30 + 3).astype(np.float32)
    src, dst = (_K("cpu:0"), _K(dev)) if where == "packed on cpu:0" else (_K(dev), _K("cpu:0"))
    packed, colsum = src.pack(w)
    moved = dst.buf(src.get(packed, [packed.numel])), dst.buf(src.get(colsum, [40]))
    out = dst.out((11, 40))
    dst.k.qmatmul(dst.buf(x), 11, 37, 40, moved[0], moved[1], dst.buf(ws), None, out, False)
    _bits_equal(dst.get(out, (11, 40)), _qmatmul("cpu:0", x, w, ws, None, False))


# ---- qconv2d_forward -------------------------------------------------------------------------------

CONVS = [  # (n, H, W, C), (KH, KW, O), strides, dilation, pads (top, bottom, left, right)
    ((2, 7, 9, 3), (3, 3, 5), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((1, 6, 5, 4), (1, 1, 33), (1, 1), (1, 1), (0, 0, 0, 0)),      # 1x1 stride 1: the image is the matrix
    ((2, 9, 6, 2), (3, 2, 7), (2, 1), (1, 2), (0, 1, 2, 0)),
    ((1, 2, 2, 3), (3, 3, 4), (1, 1), (1, 1), (2, 2, 2, 2)),       # windows all padding
    ((1, 5, 5, 20), (2, 2, 65), (2, 2), (1, 1), (0, 0, 0, 0)),     # K = 80, three column tiles
    ((2, 5, 4, 3), (1, 1, 6), (2, 2), (1, 1), (0, 1, 0, 1)),       # 1x1 that is not the image
    ((0, 4, 4, 3), (3, 3, 2), (1, 1), (1, 1), (1, 1, 1, 1)),       # no images
]


def _conv_out(xs, ks, strides, dilation, pads):
    n, H, W, _ = xs
    KH, KW, O = ks
    oh = (H + pads[0] + pads[1] - ((KH - 1) * dilation[0] + 1)) // strides[0] + 1
    ow = (W + pads[2] + pads[3] - ((KW - 1) * dilation[1] + 1)) // strides[1] + 1
    return (n, max(oh, 0), max(ow, 0), O)


def _image(rng, xs, nan_at=None):
    x = rng.uniform(-1, 1, xs).astype(np.float32)
    if x.size and x.shape[0] > 1:
        x[1] *= np.float32(3.5)  # images of different scales
    if nan_at is not None and x.size:
        x[nan_at] = np.nan
    return x


def _qconv(d, x, w, ws, bias, os, strides, dilation, pads, relu):
    kc = _K(d)
    packed, colsum = kc.pack(w.reshape(-1, w.shape[3]))
    out = kc.out(os)
    kc.k.qconv2d_forward(kc.buf(x), list(x.shape), list(w.shape), packed, colsum, kc.buf(ws),
                         None if bias is None else kc.buf(bias), out, list(os), list(strides), list(dilation),
                         list(pads), relu)
    return kc.get(out, os)


@pytest.mark.parametrize("case", range(len(CONVS)))
@pytest.mark.parametrize("bias,relu", [(False, False), (True, True), (True, False)])
def test_qconv2d_equals_the_cpu_bit_for_bit(dev, case, bias, relu):
    xs, (KH, KW, O), strides, dilation, pads = CONVS[case]
    rng = np.random.default_rng(case * 10 + 2 * bias + relu)
    x = _image(rng, xs, nan_at=(0, 1, 1, 0) if case == 0 else None)
    w = _weights(rng, KH * KW * xs[3], O).reshape(KH, KW, xs[3], O)
    ws = (rng.random(O) * 60 + 2).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32) if bias else None
    os = _conv_out(xs, (KH, KW, O), strides, dilation, pads)
    want = _qconv("cpu:0", x, w, ws, b, os, strides, dilation, pads, relu)
    _bits_equal(_qconv(dev, x, w, ws, b, os, strides, dilation, pads, relu), want)


def test_qconv2d_checks_its_arguments(dev):
    x = np.zeros((1, 4, 4, 3), np.float32)
    w = np.zeros((3, 3, 3, 4), np.int8)
    ws = np.ones(4, np.float32)
    os = (1, 2, 2, 4)

    def call(d, wshape=(3, 3, 3, 4), os_=os, wsa=ws, xa=x):
        kc = _K(d)
        packed, colsum = kc.pack(w.reshape(-1, 4))
        kc.k.qconv2d_forward(kc.buf(xa), list(xa.shape), list(wshape), packed, colsum, kc.buf(wsa), None,
                             kc.out(os_), list(os_), [1, 1], [1, 1], [0, 0, 0, 0], False)
    _same_error(lambda d: call(d, os_=(1, 3, 3, 4)), dev)
    _same_error(lambda d: call(d, wshape=(3, 3, 2, 4)), dev)
    _same_error(lambda d: call(d, wshape=(2, 2, 3, 4), os_=(1, 3, 3, 4)), dev)  # the packed kernel's size
    _same_error(lambda d: call(d, wsa=ws[:3]), dev)
    _same_error(lambda d: call(d, xa=x.astype(np.int32)), dev)


# ---- fused groups: qconv2d_fused, qdepthwise2d_fused -----------------------------------------------------

def _bn(rng, C, parts="all"):
    mean = rng.standard_normal(C).astype(np.float32) * np.float32(0.3)
    var = (rng.random(C) + 0.2).astype(np.float32)
    gamma = (rng.standard_normal(C) * 0.5 + 1).astype(np.float32)
    beta = (rng.standard_normal(C) * 0.5).astype(np.float32)
    if parts == "none":
        return None, None, None, None
    if parts == "mean_var":
        return mean, var, None, None
    return mean, var, gamma, beta


FUSED_CONVS = [  # name, input kind, (n, H, W, C), (KH, KW, O), strides, pads, bias, bn, (lo, hi), out_step
    ("floats 1x1, float out", "float", (2, 4, 5, 6), (1, 1, 9), (1, 1), (0, 0, 0, 0), True, "all", (-np.inf, np.inf), 0),
    ("floats 3x3 padded, bytes out", "float", (2, 6, 7, 3), (3, 3, 16), (1, 1), (1, 1, 1, 1), False, "all", (0, 6),
     6 / 255),
    ("floats strided, clamp, float out", "float", (3, 9, 8, 4), (3, 2, 33), (2, 1), (1, 0, 0, 1), True, "mean_var",
     (-1.5, 2.0), 0),
    ("floats, no normalization", "float", (1, 5, 5, 5), (3, 3, 7), (2, 2), (1, 1, 1, 1), True, "none",
     (0, np.inf), 0),
    ("bytes 1x1, bytes out", "bytes", (2, 3, 5, 40), (1, 1, 24), (1, 1), (0, 0, 0, 0), False, "all", (0, 6), 6 / 255),
    ("bytes 1x1, float out", "bytes", (3, 2, 3, 8), (1, 1, 70), (1, 1), (0, 0, 0, 0), True, "all", (-np.inf, np.inf),
     0),
    ("bytes 1x1, saturating bytes out", "bytes", (1, 4, 4, 13), (1, 1, 5), (1, 1), (0, 0, 0, 0), True, "none",
     (0, np.inf), 0.01),
]
X_STEP = 6 / 255


def _fused_args(kc, extras, lo, hi, out, os, out_step, flags):
    """The kernels' arguments from bias to flags: extras = (bias, (mean, var, gamma, beta))."""
    b, (mean, var, gamma, beta) = extras
    opt = (lambda a: None if a is None else kc.buf(a))
    return (opt(b), opt(mean), opt(var), opt(gamma), opt(beta), 1e-3, float(lo), float(hi), out, list(os),
            float(out_step), flags)


def _fused_conv(d, kind, x, w, ws, extras, lo, hi, os, out_step, strides, pads, flags0):
    kc = _K(d)
    packed, colsum = kc.pack(w.reshape(-1, w.shape[3]))
    out = kc.out(os, np.uint8 if out_step > 0 else np.float32, 77)
    flags = kc.buf(flags0) if flags0 is not None else None
    xb = kc.buf(x.view(np.int8)) if kind == "bytes" else kc.buf(x)
    x_step = X_STEP if kind == "bytes" else 0.0
    kc.k.qconv2d_fused(xb, list(x.shape), x_step, list(w.shape), packed, colsum, kc.buf(ws),
                       *_fused_args(kc, extras, lo, hi, out, os, out_step, flags),
                       list(strides), [1, 1], list(pads))
    res = kc.get(out, os, np.uint8 if out_step > 0 else None)
    return res, (kc.get(flags, [len(flags0)]) if flags0 is not None else None)


@pytest.mark.parametrize("case", [c[0] for c in FUSED_CONVS])
def test_qconv2d_fused_equals_the_cpu(dev, case):
    name, kind, xs, (KH, KW, O), strides, pads, bias, bn, (lo, hi), out_step = next(c for c in FUSED_CONVS
                                                                                       if c[0] == case)
    rng = np.random.default_rng(len(name))
    if kind == "bytes":
        x = rng.integers(0, 256, xs).astype(np.uint8)
    else:
        x = _image(rng, xs, nan_at=(1, 2, 3, 1) if out_step > 0 else None)  # a NaN image: marked, its bytes 0
    w = _weights(rng, KH * KW * xs[3], O).reshape(KH, KW, xs[3], O)
    ws = (rng.random(O) * 60 + 20).astype(np.float32)
    extras = (rng.standard_normal(O).astype(np.float32) if bias else None, _bn(rng, O, bn))
    os = _conv_out(xs, (KH, KW, O), strides, (1, 1), pads)
    flags0 = np.zeros(xs[0], np.int32) if (out_step > 0 or kind == "bytes") else None
    if kind == "bytes" and out_step == 0:
        flags0[1] = 1  # an image an earlier group marked: its float output is NaN
    want, wflags = _fused_conv("cpu:0", kind, x, w, ws, extras, lo, hi, os, out_step, strides, pads, flags0)
    got, gflags = _fused_conv(dev, kind, x, w, ws, extras, lo, hi, os, out_step, strides, pads, flags0)
    _fused_equal(got, want)
    if flags0 is not None:
        np.testing.assert_array_equal(gflags, wflags)
    if name.startswith("floats 3x3"):
        np.testing.assert_array_equal(wflags, [0, 1])  # the NaN image: marked, its bytes 0
        np.testing.assert_array_equal(want[1], 0)
    if "saturating" in name:
        assert (want == 255).mean() > 0.2 and (want == 0).any()


@pytest.mark.parametrize("xs,ks,pads,pool", [((2, 9, 11, 4), (3, 3, 8), (1, 1, 1, 1), (2, 2)),
                                             ((3, 8, 7, 3), (5, 5, 40), (2, 2, 2, 2), (3, 2))])
def test_qconv2d_fused_with_max_pooling_equals_the_cpu(dev, xs, ks, pads, pool):
    """A group that ends in a MaxPooling2D (window = strides, "valid"): the pooled output, with a NaN image."""
    rng = np.random.default_rng(sum(xs))
    x = _image(rng, xs, nan_at=(1, 2, 3, 1))
    KH, KW, O = ks
    w = _weights(rng, KH * KW * xs[3], O).reshape(KH, KW, xs[3], O)
    ws = (rng.random(O) * 60 + 20).astype(np.float32)
    extras = (rng.standard_normal(O).astype(np.float32), _bn(rng, O, "none"))
    n, oh, ow, _ = _conv_out(xs, ks, (1, 1), (1, 1), pads)
    os = (n, oh // pool[0], ow // pool[1], O)
    res = []
    for d in ("cpu:0", dev):
        kc = _K(d)
        packed, colsum = kc.pack(w.reshape(-1, O))
        out = kc.out(os, np.float32, 77)
        kc.k.qconv2d_fused(kc.buf(x), list(xs), 0.0, list(w.shape), packed, colsum, kc.buf(ws),
                           *_fused_args(kc, extras, 0.0, np.inf, out, os, 0.0, None), [1, 1], [1, 1], list(pads),
                           list(pool))
        res.append(kc.get(out, os))
    want, got = res
    assert np.isnan(want[1]).all() and np.isfinite(want[[0] + list(range(2, n))]).all()
    _fused_equal(got, want)


DW_CASES = [  # (n, H, W, C), (KH, KW, DM), strides, dilation, pads
    ((2, 7, 9, 3), (3, 3, 1), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((2, 6, 5, 4), (3, 2, 3), (2, 1), (1, 2), (0, 1, 2, 0)),
    ((1, 5, 23, 8), (3, 3, 1), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((3, 4, 4, 17), (2, 2, 2), (2, 2), (1, 1), (0, 0, 0, 0)),
    ((1, 0, 3, 2), (1, 1, 1), (1, 1), (1, 1), (1, 1, 0, 0)),      # an empty image padded: outputs from no taps
    ((0, 4, 4, 3), (3, 3, 1), (1, 1), (1, 1), (1, 1, 1, 1)),
]


def _dw_out(xs, ks, strides, dilation, pads):
    n, H, W, C = xs
    KH, KW, DM = ks
    _, oh, ow, _ = _conv_out(xs, (KH, KW, 1), strides, dilation, pads)
    return (n, oh, ow, C * DM)


def _qdw(d, x, w, ws, bias, os, strides, dilation, pads):
    kc = _K(d)
    out = kc.out(os)
    kc.k.qdepthwise2d(kc.buf(x), list(x.shape), kc.buf(w), list(w.shape), kc.buf(ws),
                      None if bias is None else kc.buf(bias), out, list(os), list(strides), list(dilation), list(pads))
    return kc.get(out, os)


@pytest.mark.parametrize("case", range(len(DW_CASES)))
@pytest.mark.parametrize("bias", [False, True])
def test_qdepthwise2d_equals_the_cpu_bit_for_bit(dev, case, bias):
    xs, (KH, KW, DM), strides, dilation, pads = DW_CASES[case]
    rng = np.random.default_rng(case * 3 + bias)
    x = _image(rng, xs)
    if case == 0:
        x[0, 2, 3, 1] = np.nan   # channel 1 of image 0: NaN (its scale is NaN)
        x[1, :, :, 2] = 0.0      # channel 2 of image 1: zeros
        x[1, 0, 0, 0] = 1e5      # one large value: the rest of its channel rounds to 0
    w = rng.integers(-128, 128, (KH, KW, xs[3], DM)).astype(np.int8)
    ws = (rng.random(xs[3] * DM) * 60 + 2).astype(np.float32)
    b = rng.standard_normal(xs[3] * DM).astype(np.float32) if bias else None
    os = _dw_out(xs, (KH, KW, DM), strides, dilation, pads)
    _bits_equal(_qdw(dev, x, w, ws, b, os, strides, dilation, pads), _qdw("cpu:0", x, w, ws, b, os, strides,
                                                                           dilation, pads))


FUSED_DW = [  # name, input kind, case of DW_CASES, bias, bn, (lo, hi), out_step
    ("floats, float out", "float", 0, True, "all", (-np.inf, np.inf), 0),
    ("floats, depth multiplier, bytes out", "float", 1, False, "all", (0, 6), 6 / 255),
    ("bytes, bytes out", "bytes", 2, False, "all", (0, 6), 6 / 255),
    ("bytes, depth multiplier, float out, marked image", "bytes", 3, True, "mean_var", (-2.0, 3.0), 0),
    ("bytes, saturating bytes out", "bytes", 0, True, "none", (0, np.inf), 0.01),
    ("floats, empty image", "float", 4, True, "all", (0, 6), 0),
]


def _fused_dw(d, kind, x, w, ws, extras, lo, hi, os, out_step, strides, dilation, pads, flags0):
    kc = _K(d)
    out = kc.out(os, np.uint8 if out_step > 0 else np.float32, 77)
    flags = kc.buf(flags0) if flags0 is not None else None
    xb = kc.buf(x.view(np.int8)) if kind == "bytes" else kc.buf(x)
    x_step = X_STEP if kind == "bytes" else 0.0
    kc.k.qdepthwise2d_fused(xb, list(x.shape), x_step, kc.buf(w), list(w.shape), kc.buf(ws),
                            *_fused_args(kc, extras, lo, hi, out, os, out_step, flags), list(strides),
                            list(dilation), list(pads))
    res = kc.get(out, os, np.uint8 if out_step > 0 else None)
    return res, (kc.get(flags, [len(flags0)]) if flags0 is not None else None)


@pytest.mark.parametrize("case", [c[0] for c in FUSED_DW])
def test_qdepthwise2d_fused_equals_the_cpu(dev, case):
    name, kind, dwc, bias, bn, (lo, hi), out_step = next(c for c in FUSED_DW if c[0] == case)
    xs, (KH, KW, DM), strides, dilation, pads = DW_CASES[dwc]
    rng = np.random.default_rng(len(name) + 100)
    if kind == "bytes":
        x = rng.integers(0, 256, xs).astype(np.uint8)
    else:
        x = _image(rng, xs, nan_at=(0, 1, 2, 0) if out_step > 0 else None)
    CO = xs[3] * DM
    w = rng.integers(-128, 128, (KH, KW, xs[3], DM)).astype(np.int8)
    ws = (rng.random(CO) * 60 + 20).astype(np.float32)
    extras = (rng.standard_normal(CO).astype(np.float32) if bias else None, _bn(rng, CO, bn))
    os = _dw_out(xs, (KH, KW, DM), strides, dilation, pads)
    flags0 = np.zeros(xs[0], np.int32) if (out_step > 0 or kind == "bytes") else None
    if "marked image" in name:
        flags0[1] = 1
    want, wflags = _fused_dw("cpu:0", kind, x, w, ws, extras, lo, hi, os, out_step, strides, dilation, pads, flags0)
    got, gflags = _fused_dw(dev, kind, x, w, ws, extras, lo, hi, os, out_step, strides, dilation, pads, flags0)
    _fused_equal(got, want)
    if flags0 is not None:
        np.testing.assert_array_equal(gflags, wflags)
    if "marked image" in name:
        assert np.isnan(want[1]).all() and not np.isnan(want[[0, 2]]).any()
    if "saturating" in name:
        assert (want == 255).mean() > 0.2


def test_fused_kernels_check_their_arguments(dev):
    x = np.zeros((1, 4, 4, 3), np.float32)
    w = np.zeros((3, 3, 3, 4), np.int8)
    dw = np.zeros((3, 3, 3, 1), np.int8)
    ones4, ones3 = np.ones(4, np.float32), np.ones(3, np.float32)

    def conv(d, x_=x, x_step=0.0, lo=0.0, hi=6.0, out_step=0.0, out_dtype=np.float32, mean=None, var=None,
             gamma=None, flags=None):
        kc = _K(d)
        packed, colsum = kc.pack(w.reshape(-1, 4))
        opt = (lambda a: None if a is None else kc.buf(a))
        kc.k.qconv2d_fused(kc.buf(x_), list(x_.shape), x_step, list(w.shape), packed, colsum, kc.buf(ones4), None,
                           opt(mean), opt(var), opt(gamma), None, 1e-3, lo, hi, kc.out((1, 4, 4, 4), out_dtype),
                           [1, 4, 4, 4], out_step, opt(flags), [1, 1], [1, 1], [1, 1, 1, 1])

    def depthwise(d, x_=x, x_step=0.0, lo=-np.inf, hi=np.inf, out_step=0.0, out_dtype=np.float32, wsa=ones3):
        kc = _K(d)
        kc.k.qdepthwise2d_fused(kc.buf(x_), list(x_.shape), x_step, kc.buf(dw), list(dw.shape), kc.buf(wsa), None,
                                None, None, None, None, 0.0, lo, hi, kc.out((1, 4, 4, 3), out_dtype), [1, 4, 4, 3],
                                out_step, None, [1, 1], [1, 1], [1, 1, 1, 1])
    _same_error(lambda d: conv(d, x_=np.zeros((1, 4, 4, 3), np.int8), x_step=X_STEP), dev)  # bytes into a 3x3
    _same_error(lambda d: conv(d, lo=-1.0, out_step=X_STEP, out_dtype=np.int8), dev)
    _same_error(lambda d: conv(d, lo=2.0, hi=1.0), dev)
    _same_error(lambda d: conv(d, out_dtype=np.int8), dev)
    _same_error(lambda d: conv(d, x_step=-1.0), dev)
    _same_error(lambda d: conv(d, mean=ones4), dev)
    _same_error(lambda d: conv(d, gamma=ones4), dev)
    _same_error(lambda d: conv(d, flags=np.zeros(2, np.int32)), dev)
    _same_error(lambda d: conv(d, out_step=np.inf), dev)
    _same_error(lambda d: depthwise(d, x_step=np.nan), dev)
    _same_error(lambda d: depthwise(d, x_=np.zeros((1, 4, 4, 3), np.int8)), dev)  # bytes without a step
    _same_error(lambda d: depthwise(d, wsa=ones4), dev)
    _same_error(lambda d: depthwise(d, out_step=X_STEP, out_dtype=np.int8, lo=-1.0), dev)


# ---- qembedding ----------------------------------------------------------------------------------

def _qemb(d, table, scale, ids, D):
    kc = _K(d)
    out = kc.out(ids.shape + (D,))
    kc.k.qembedding(kc.buf(table), table.shape[0], D, kc.buf(scale), kc.buf(ids), out)
    return kc.get(out, ids.shape + (D,))


@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("V,D,ids_shape", [(10, 7, (3, 4)), (1, 33, (5,)), (6, 0, (4,)), (6, 3, (0,))])
def test_qembedding_equals_the_cpu_bit_for_bit(dev, id_dtype, V, D, ids_shape):
    rng = np.random.default_rng(V + D)
    table = rng.integers(-128, 128, (V, D)).astype(np.int8)
    scale = (rng.random(V) * 100 + 0.5).astype(np.float32)
    if V > 2:
        scale[1] = np.float32(3.0)  # values / 3: rounded quotients
    ids = rng.integers(0, V, ids_shape).astype(id_dtype)
    want = _qemb("cpu:0", table, scale, ids, D)
    _bits_equal(_qemb(dev, table, scale, ids, D), want)


def test_qembedding_ids_outside_the_table_raise_the_cpus_error(dev):
    """The CPU raises in the call; a GPU at the next read (a deferred check): the same message."""
    table = np.arange(12, dtype=np.int8).reshape(4, 3)
    scale = np.ones(4, np.float32)
    for ids in (np.array([0, 3, 4, 1], np.int32), np.array([[2, -1]], np.int64)):
        _same_error(lambda d: _qemb(d, table, scale, ids, 3), dev)
        np.testing.assert_array_equal(_qemb(dev, table, scale, np.array([3, 0], np.int32), 3), table[[3, 0]])
    kc = _K(dev)
    with pytest.raises(ValueError, match="expected int32 or int64 ids"):
        kc.k.qembedding(kc.buf(table), 4, 3, kc.buf(scale), kc.buf(np.zeros(2, np.float32)), kc.out((2, 3)))


# ---- the quantized layers and a fused model ------------------------------------------------------------

def _layer_model(kind, device):
    with lamina.device(device):
        if kind == "dense_relu":
            m = lamina.Sequential([lamina.Input((13,)), layers.Dense(37, activation="relu"), layers.Dense(5)])
        elif kind == "dense_3d":
            m = lamina.Sequential([lamina.Input((4, 9)), layers.Dense(6, use_bias=False)])
        elif kind == "conv":
            m = lamina.Sequential([lamina.Input((9, 8, 3)), layers.Conv2D(6, 3, padding="same", activation="relu"),
                                   layers.Conv2D(5, (2, 3), strides=(2, 1), dilation_rate=1),
                                   layers.Conv2D(4, 1)])
        elif kind == "depthwise":
            m = lamina.Sequential([lamina.Input((7, 9, 4)),
                                   layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2),
                                   layers.DepthwiseConv2D((2, 3), strides=2, activation="relu", use_bias=False)])
        else:  # embedding
            m = lamina.Sequential([lamina.Input((6,), dtype="int32"), layers.Embedding(20, 7),
                                   layers.Dense(3)])
    return m


def _input(kind, rng):
    shapes = {"dense_relu": (8, 13), "dense_3d": (3, 4, 9), "conv": (2, 9, 8, 3), "depthwise": (3, 7, 9, 4)}
    if kind == "embedding":
        return rng.integers(0, 20, (5, 6)).astype(np.int32)
    x = rng.standard_normal(shapes[kind]).astype(np.float32)
    x[0, ..., 0] = 0.0
    return x


def _q_fallbacks(device):
    fb = getattr(_device(device).kernels, "fallbacks", {})
    return {k: v for k, v in fb.items() if k in QKERNELS}


@pytest.mark.parametrize("kind", ["dense_relu", "dense_3d", "conv", "depthwise", "embedding"])
def test_quantized_layers_predict_as_on_cpu(dev, kind):
    lamina.utils.set_random_seed(3)
    ref, other = _layer_model(kind, "cpu:0"), _layer_model(kind, dev)
    other.set_weights(ref.get_weights())
    ref.quantize("int8")
    other.quantize("int8")
    for a, b in zip(other.weights, ref.weights):  # the int8 weights and their scales
        assert a.device is _device(dev)
        _bits_equal(np.asarray(a.numpy()), np.asarray(b.numpy()))
    x = _input(kind, np.random.default_rng(9))
    before = _q_fallbacks(dev)
    # the model's predict runs its convolutions as fused groups (qconv2d_fused, qdepthwise2d_fused);
    # the layers called one by one run qconv2d_forward / qdepthwise2d
    got = other.predict(x, verbose=0)
    one_by_one = []
    for m in (other, ref):
        y = lamina.convert_to_tensor(x)
        for layer in m.layers:
            y = layer(y)
        one_by_one.append(np.asarray(y.numpy()))
    if _device(dev).kind == "gpu":
        assert _q_fallbacks(dev) == before  # the device ran its own kernels
    _fused_equal(got, ref.predict(x, verbose=0))
    _bits_equal(one_by_one[0], one_by_one[1])


def _mobile(device, seed=0):
    """A small MobileNet-style graph (tests/models/test_quantized_groups.py): fused
    conv / depthwise + BatchNormalization + ReLU6 groups with byte activations between them."""
    lamina.utils.set_random_seed(seed)
    with lamina.device(device):
        inp = lamina.Input((12, 12, 3))
        x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        x = layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
        x = layers.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        x = layers.Conv2D(16, 1, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        x = layers.DepthwiseConv2D(3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        x = layers.Conv2D(12, 1)(x)
        x = layers.BatchNormalization()(x)
        f = layers.ReLU(6.0)(x)
        out = layers.Dense(5)(layers.GlobalAveragePooling2D()(f))
        model = lamina.Model(inp, out)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.standard_normal(c).astype(np.float32) * 0.3)
            layer.moving_variance.assign((rng.random(c) + 0.3).astype(np.float32))
            layer.gamma.assign((rng.random(c) + 0.5).astype(np.float32))
            layer.beta.assign((rng.random(c) * 0.8).astype(np.float32))
    return model


def test_a_fused_quantized_model_predicts_as_on_cpu(dev):
    ref, other = _mobile("cpu:0"), _mobile(dev)
    other.set_weights(ref.get_weights())
    ref.quantize("int8")
    other.quantize("int8")
    assert any(g.byte_out for g in other._quantized_groups().values())  # groups pass bytes on
    x = np.random.default_rng(4).uniform(-1, 1, (3, 12, 12, 3)).astype(np.float32)
    x[1, 5, 5, 0] = np.nan
    before = _q_fallbacks(dev)
    got = other.predict(x, verbose=0)
    if _device(dev).kind == "gpu":
        assert _q_fallbacks(dev) == before
    want = ref.predict(x, verbose=0)
    assert np.isnan(want[1]).all() and np.isfinite(want[[0, 2]]).all()
    _fused_equal(got, want)
    x2 = np.random.default_rng(5).uniform(-2, 2, (3, 12, 12, 3)).astype(np.float32)  # a second call: replayed
    _fused_equal(np.asarray(other(x2).numpy()), np.asarray(ref(x2).numpy()))
    _fused_equal(np.asarray(other(x).numpy()), want)


def test_a_quantized_model_on_the_device_takes_host_inputs_and_cpu_tensors(dev):
    """A layer runs where its weights are: inputs from the host or another device come to it, so
    a packed buffer is always read on the device that packed it."""
    lamina.utils.set_random_seed(1)
    model = _layer_model("dense_relu", dev)
    model.quantize("int8")
    x = np.random.default_rng(2).standard_normal((4, 13)).astype(np.float32)
    with lamina.device("cpu:0"):
        on_cpu = lamina.convert_to_tensor(x)
    y = model(on_cpu)
    assert y.device is _device(dev)
    _bits_equal(np.asarray(y.numpy()), model.predict(x, verbose=0))


@pytest.mark.gpu
def test_the_int8_kernels_queue_without_waiting_for_the_device():
    """No host wait in any of the calls (the embedding's ids are checked on the device); counted
    by the CUDA emulator."""
    if not _dm.CUDA_EMULATED:
        pytest.skip("wait counts are read from the CUDA emulator (LAMINA_CUDA_EMULATOR=1)")
    kc = _K("gpu:0")
    rng = np.random.default_rng(0)
    w = _weights(rng, 27, 8)
    x, ws = kc.buf(_image(rng, (2, 5, 5, 3))), kc.buf(np.ones(8, np.float32))
    dw, ws3 = kc.buf(np.ones((3, 3, 3, 1), np.int8)), kc.buf(np.ones(3, np.float32))
    table, scale, ids = kc.buf(np.ones((4, 3), np.int8)), kc.buf(np.ones(4, np.float32)), kc.buf(np.arange(4))
    outs = [kc.out((2, 5, 5, 8)), kc.out((2, 5, 5, 8)), kc.out((2, 5, 5, 3)), kc.out((2, 5, 5, 3)), kc.out((4, 3)),
            kc.out((50, 8))]
    wb = kc.buf(w)
    packed, colsum = kc.out(int(kc.k.qgemm_packed_bytes(27, 8)), np.int8, 0), kc.out(8, np.int32, 0)
    packed3 = kc.out(int(kc.k.qgemm_packed_bytes(3, 8)), np.int8, 0)
    geo = ([1, 1], [1, 1], [1, 1, 1, 1])
    _dm.cuda_emulator_stats(reset=True)
    kc.k.qgemm_pack(wb, 27, 8, packed, colsum)
    kc.k.qconv2d_forward(x, [2, 5, 5, 3], [3, 3, 3, 8], packed, colsum, ws, None, outs[0], [2, 5, 5, 8], *geo, True)
    kc.k.qconv2d_fused(x, [2, 5, 5, 3], 0.0, [3, 3, 3, 8], packed, colsum, ws, None, None, None, None, None, 0.0, 0.0,
                       6.0, outs[1], [2, 5, 5, 8], 0.0, None, *geo)
    kc.k.qdepthwise2d(x, [2, 5, 5, 3], dw, [3, 3, 3, 1], ws3, None, outs[2], [2, 5, 5, 3], *geo)
    kc.k.qdepthwise2d_fused(x, [2, 5, 5, 3], 0.0, dw, [3, 3, 3, 1], ws3, None, None, None, None, None, 0.0, -np.inf,
                            np.inf, outs[3], [2, 5, 5, 3], 0.0, None, *geo)
    kc.k.qembedding(table, 4, 3, scale, ids, outs[4])
    kc.k.qmatmul(x, 50, 3, 8, packed3, colsum, ws, None, outs[5], False)
    stats = _dm.cuda_emulator_stats(reset=True)
    assert stats["launches"] > 10
    assert stats["host_waits"] == 0 and stats["copies_to_host"] == 0
