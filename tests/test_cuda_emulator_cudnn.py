"""The CUDA emulator's cuDNN (csrc/cuda/emu/cudnn_emu.cpp): the legacy 2-d convolution entry points
`lamina.backend._cuda_emu` exports with libcudnn's ABI, called here directly through ctypes (loading
the module's file does not import it, so its types do not clash with the CUDA module's). Device
memory in the emulator is host memory, so numpy arrays' pointers are passed as device pointers.

Checked against a numpy reference written here from the definitions: forward, backward data and
backward filter, NCHW and NHWC (filters KCRS and KRSC), strides, dilations, pads, groups (depthwise
too), CONVOLUTION (flipped filter) and CROSS_CORRELATION, alpha/beta blending, beta = 0 over NaN,
bfloat16; the statuses of bad and unsupported arguments; the algorithm lists and workspaces."""
import ctypes
import importlib.util
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

# cudnnStatus_t, cudnnDataType_t, cudnnTensorFormat_t, cudnnConvolutionMode_t (cuDNN 9 headers)
SUCCESS, BAD_PARAM, NOT_SUPPORTED = 0, 2000, 3000
FLOAT, DOUBLE, HALF, BFLOAT16 = 0, 1, 2, 9
NCHW, NHWC, NCHW_VECT_C = 0, 1, 2
CONVOLUTION, CROSS_CORRELATION = 0, 1
NON_DETERMINISTIC, DETERMINISTIC = 0, 1
FWD_IMPLICIT_GEMM, FWD_IMPLICIT_PRECOMP_GEMM, FWD_FFT, FWD_ALGO_COUNT = 0, 1, 4, 8
BWD_ALGO_0, BWD_ALGO_1, BWD_DATA_ALGO_COUNT, BWD_FILTER_ALGO_COUNT = 0, 1, 6, 7


class AlgoPerf(ctypes.Structure):
    """cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t (one layout)."""
    _fields_ = [("algo", ctypes.c_int), ("status", ctypes.c_int), ("time", ctypes.c_float),
                ("memory", ctypes.c_size_t), ("determinism", ctypes.c_int), ("mathType", ctypes.c_int),
                ("reserved", ctypes.c_int * 3)]


_LIB = None


def _lib():
    global _LIB
    if _LIB is None:
        spec = importlib.util.find_spec("lamina.backend._cuda_emu")
        if spec is None or spec.origin is None:
            pytest.skip("the CUDA emulator is not built (-DLAMINA_CUDA_EMULATOR=OFF, or not Linux)")
        if os.environ.get("LAMINA_CUDA_EMULATOR_STREAMS", "sync") != "sync":
            pytest.skip("these calls hand numpy memory to the emulator's cuDNN, which must run them at once: "
                        "unset LAMINA_CUDA_EMULATOR_STREAMS (lazy streams would run them after the arrays are gone)")
        lib = ctypes.CDLL(spec.origin)
        if not hasattr(lib, "cudnnConvolutionForward"):
            pytest.skip("this _cuda_emu build has no cuDNN (csrc/cuda/emu/cudnn_emu.cpp): rebuild")
        P, I, Z = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        PP, PI, PZ = ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_size_t)
        sigs = {
            "cudnnGetVersion": (Z, []),
            "cudnnGetErrorString": (ctypes.c_char_p, [I]),
            "cudnnCreate": (I, [PP]), "cudnnDestroy": (I, [P]), "cudnnSetStream": (I, [P, P]),
            "cudnnCreateTensorDescriptor": (I, [PP]), "cudnnDestroyTensorDescriptor": (I, [P]),
            "cudnnSetTensor4dDescriptor": (I, [P, I, I, I, I, I, I]),
            "cudnnCreateFilterDescriptor": (I, [PP]), "cudnnDestroyFilterDescriptor": (I, [P]),
            "cudnnSetFilter4dDescriptor": (I, [P, I, I, I, I, I, I]),
            "cudnnCreateConvolutionDescriptor": (I, [PP]), "cudnnDestroyConvolutionDescriptor": (I, [P]),
            "cudnnSetConvolution2dDescriptor": (I, [P, I, I, I, I, I, I, I, I]),
            "cudnnSetConvolutionGroupCount": (I, [P, I]), "cudnnSetConvolutionMathType": (I, [P, I]),
            "cudnnGetConvolution2dForwardOutputDim": (I, [P, P, P, PI, PI, PI, PI]),
            "cudnnGetConvolutionForwardAlgorithm_v7": (I, [P, P, P, P, P, I, PI, P]),
            "cudnnGetConvolutionForwardWorkspaceSize": (I, [P, P, P, P, P, I, PZ]),
            "cudnnConvolutionForward": (I, [P, P, P, P, P, P, P, I, P, Z, P, P, P]),
            "cudnnGetConvolutionBackwardDataAlgorithm_v7": (I, [P, P, P, P, P, I, PI, P]),
            "cudnnGetConvolutionBackwardDataWorkspaceSize": (I, [P, P, P, P, P, I, PZ]),
            "cudnnConvolutionBackwardData": (I, [P, P, P, P, P, P, P, I, P, Z, P, P, P]),
            "cudnnGetConvolutionBackwardFilterAlgorithm_v7": (I, [P, P, P, P, P, I, PI, P]),
            "cudnnGetConvolutionBackwardFilterWorkspaceSize": (I, [P, P, P, P, P, I, PZ]),
            "cudnnConvolutionBackwardFilter": (I, [P, P, P, P, P, P, P, I, P, Z, P, P, P]),
            "lamina_emu_stats": (None, [ctypes.POINTER(ctypes.c_longlong), I]),
        }
        for name, (res, args) in sigs.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        _LIB = lib
    return _LIB


def _new(create):
    p = ctypes.c_void_p()
    assert create(ctypes.byref(p)) == SUCCESS
    return p


def cudnn_calls():
    out = (ctypes.c_longlong * 9)()
    _lib().lamina_emu_stats(out, 0)
    return out[7]


# ---- bfloat16 and layouts --------------------------------------------------------------------------
def to_bf16(a):
    """float32 -> bfloat16 bits (uint16), round to nearest even."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def to_layout(a, fmt):
    """(n, c, h, w) array -> memory of that format (filters: (k, c, r, s) -> KCRS / KRSC)."""
    return np.ascontiguousarray(a if fmt == NCHW else a.transpose(0, 2, 3, 1))


def from_layout(a, fmt):
    return a if fmt == NCHW else a.transpose(0, 3, 1, 2)


def encode(a, fmt, dtype):
    a = to_layout(np.asarray(a, np.float32), fmt)
    return to_bf16(a) if dtype == BFLOAT16 else a


def decode(buf, fmt, dtype):
    a = from_bf16(buf) if dtype == BFLOAT16 else buf
    return np.asarray(from_layout(a, fmt), np.float64)


# ---- numpy reference (float64), canonical (n, c, h, w) / (k, c, r, s) ------------------------------
def out_dim(size, pad, k, dil, stride):
    return (size + 2 * pad - ((k - 1) * dil + 1)) // stride + 1


def _taps(x_shape, w, pad, stride, dil, groups, mode):
    """Yields (group, r, s, the input window (slices) of tap (r, s), the stored filter tap)."""
    n, c, h, wd = x_shape
    k, cg, R, S = w.shape
    oh, ow = out_dim(h, pad[0], R, dil[0], stride[0]), out_dim(wd, pad[1], S, dil[1], stride[1])
    for g in range(groups):
        for r in range(R):
            for s in range(S):
                rows = slice(r * dil[0], r * dil[0] + (oh - 1) * stride[0] + 1, stride[0])
                cols = slice(s * dil[1], s * dil[1] + (ow - 1) * stride[1] + 1, stride[1])
                wr, ws = (R - 1 - r, S - 1 - s) if mode == CONVOLUTION else (r, s)
                yield g, rows, cols, w[:, :, wr, ws], (wr, ws)


def ref_forward(x, w, pad, stride, dil, groups, mode):
    n, c, h, wd = x.shape
    k, cg, R, S = w.shape
    kg = k // groups
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh, ow = out_dim(h, pad[0], R, dil[0], stride[0]), out_dim(wd, pad[1], S, dil[1], stride[1])
    y = np.zeros((n, k, oh, ow))
    for g, rows, cols, tap, _ in _taps(x.shape, w, pad, stride, dil, groups, mode):
        patch = xp[:, g * cg:(g + 1) * cg, rows, cols]
        y[:, g * kg:(g + 1) * kg] += np.einsum("nchw,kc->nkhw", patch, tap[g * kg:(g + 1) * kg])
    return y


def ref_backward_data(dy, w, x_shape, pad, stride, dil, groups, mode):
    n, c, h, wd = x_shape
    k, cg, R, S = w.shape
    kg = k // groups
    dxp = np.zeros((n, c, h + 2 * pad[0], wd + 2 * pad[1]))
    for g, rows, cols, tap, _ in _taps(x_shape, w, pad, stride, dil, groups, mode):
        dxp[:, g * cg:(g + 1) * cg, rows, cols] += np.einsum("nkhw,kc->nchw", dy[:, g * kg:(g + 1) * kg],
                                                             tap[g * kg:(g + 1) * kg])
    return dxp[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + wd]


def ref_backward_filter(x, dy, w_shape, pad, stride, dil, groups, mode):
    k, cg, R, S = w_shape
    kg = k // groups
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    dw = np.zeros(w_shape)
    for g, rows, cols, _, (wr, ws) in _taps(x.shape, np.zeros(w_shape), pad, stride, dil, groups, mode):
        patch = xp[:, g * cg:(g + 1) * cg, rows, cols]
        dw[g * kg:(g + 1) * kg, :, wr, ws] += np.einsum("nkhw,nchw->kc", dy[:, g * kg:(g + 1) * kg], patch)
    return dw


# ---- a convolution problem set up through the emulator ---------------------------------------------
class Problem:
    """Descriptors of x (n, c, h, w), the filter (k, c // groups, r, s) and y, as a caller sets them."""

    def __init__(self, x_shape, w_shape, pad=(0, 0), stride=(1, 1), dil=(1, 1), groups=1, mode=CROSS_CORRELATION,
                 x_fmt=NCHW, w_fmt=NCHW, y_fmt=None, dtype=FLOAT, math=0, y_shape=None, compute=FLOAT,
                 check=True):
        L = _lib()
        self.x_shape, self.w_shape = tuple(x_shape), tuple(w_shape)
        self.pad, self.stride, self.dil, self.groups, self.mode = pad, stride, dil, groups, mode
        self.x_fmt, self.w_fmt, self.y_fmt = x_fmt, w_fmt, x_fmt if y_fmt is None else y_fmt
        self.dtype = dtype
        self.handle = _new(L.cudnnCreate)
        self.xd = _new(L.cudnnCreateTensorDescriptor)
        self.yd = _new(L.cudnnCreateTensorDescriptor)
        self.wd = _new(L.cudnnCreateFilterDescriptor)
        self.cd = _new(L.cudnnCreateConvolutionDescriptor)
        st = [L.cudnnSetTensor4dDescriptor(self.xd, x_fmt, dtype, *x_shape),
              L.cudnnSetFilter4dDescriptor(self.wd, dtype, w_fmt, *w_shape),
              L.cudnnSetConvolution2dDescriptor(self.cd, pad[0], pad[1], stride[0], stride[1], dil[0], dil[1], mode,
                                                compute),
              L.cudnnSetConvolutionGroupCount(self.cd, groups),
              L.cudnnSetConvolutionMathType(self.cd, math)]
        assert st == [SUCCESS] * 5, st
        if y_shape is None:
            dims = [ctypes.c_int() for _ in range(4)]
            st = L.cudnnGetConvolution2dForwardOutputDim(self.cd, self.xd, self.wd, *[ctypes.byref(d) for d in dims])
            assert st == SUCCESS, st
            y_shape = tuple(d.value for d in dims)
        self.y_shape = tuple(y_shape)
        st = L.cudnnSetTensor4dDescriptor(self.yd, self.y_fmt, dtype, *self.y_shape)
        assert st == SUCCESS or not check, st

    def close(self):
        L = _lib()
        assert L.cudnnDestroyTensorDescriptor(self.xd) == SUCCESS
        assert L.cudnnDestroyTensorDescriptor(self.yd) == SUCCESS
        assert L.cudnnDestroyFilterDescriptor(self.wd) == SUCCESS
        assert L.cudnnDestroyConvolutionDescriptor(self.cd) == SUCCESS
        assert L.cudnnDestroy(self.handle) == SUCCESS

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # the three operations' (query, workspace size, run) and their descriptor order
    def algos(self, op, requested=16):
        L = _lib()
        results = (AlgoPerf * max(requested, 1))()
        count = ctypes.c_int(-1)
        fn, descs = {"fwd": (L.cudnnGetConvolutionForwardAlgorithm_v7, (self.xd, self.wd, self.cd, self.yd)),
                     "bwd_data": (L.cudnnGetConvolutionBackwardDataAlgorithm_v7, (self.wd, self.yd, self.cd, self.xd)),
                     "bwd_filter": (L.cudnnGetConvolutionBackwardFilterAlgorithm_v7,
                                    (self.xd, self.yd, self.cd, self.wd))}[op]
        st = fn(self.handle, *descs, requested, ctypes.byref(count), results)
        return st, [results[i] for i in range(max(count.value, 0))]

    def workspace_size(self, op, algo):
        L = _lib()
        size = ctypes.c_size_t(12345)
        fn, descs = {"fwd": (L.cudnnGetConvolutionForwardWorkspaceSize, (self.xd, self.wd, self.cd, self.yd)),
                     "bwd_data": (L.cudnnGetConvolutionBackwardDataWorkspaceSize, (self.wd, self.yd, self.cd, self.xd)),
                     "bwd_filter": (L.cudnnGetConvolutionBackwardFilterWorkspaceSize,
                                    (self.xd, self.yd, self.cd, self.wd))}[op]
        st = fn(self.handle, *descs, algo, ctypes.byref(size))
        return st, size.value

    def run(self, op, a, b, out, algo, workspace=None, workspace_bytes=None, alpha=1.0, beta=0.0, handle=None):
        """op's call on buffers (numpy arrays in memory layout, or None for a null pointer); out is
        updated in place. a, b: fwd (x, w), bwd_data (w, dy), bwd_filter (x, dy)."""
        L = _lib()
        ptr = lambda arr: None if arr is None else arr.ctypes.data  # noqa: E731
        al, be = ctypes.c_float(alpha), ctypes.c_float(beta)
        ws_bytes = (0 if workspace is None else workspace.nbytes) if workspace_bytes is None else workspace_bytes
        h = self.handle if handle is None else handle
        if op == "fwd":
            return L.cudnnConvolutionForward(h, ctypes.byref(al), self.xd, ptr(a), self.wd, ptr(b), self.cd, algo,
                                             ptr(workspace), ws_bytes, ctypes.byref(be), self.yd, ptr(out))
        if op == "bwd_data":
            return L.cudnnConvolutionBackwardData(h, ctypes.byref(al), self.wd, ptr(a), self.yd, ptr(b), self.cd, algo,
                                                  ptr(workspace), ws_bytes, ctypes.byref(be), self.xd, ptr(out))
        return L.cudnnConvolutionBackwardFilter(h, ctypes.byref(al), self.xd, ptr(a), self.yd, ptr(b), self.cd, algo,
                                                ptr(workspace), ws_bytes, ctypes.byref(be), self.wd, ptr(out))


def _workspace(p, op, algo):
    st, size = p.workspace_size(op, algo)
    assert st == SUCCESS, st
    return np.zeros(max(size, 1), np.uint8) if size else None


# ---- numerics ----------------------------------------------------------------------------------------
# (x shape, k, (r, s), pad, stride, dilation, groups, mode, x format, filter format)
CASES = [
    ((2, 3, 7, 6), 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, CROSS_CORRELATION, NCHW, NCHW),
    ((2, 3, 7, 6), 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, CROSS_CORRELATION, NHWC, NHWC),
    ((2, 3, 7, 6), 4, (3, 2), (2, 0), (2, 1), (1, 2), 1, CONVOLUTION, NCHW, NCHW),
    ((2, 3, 7, 6), 4, (3, 2), (2, 0), (2, 1), (1, 2), 1, CONVOLUTION, NHWC, NHWC),
    ((1, 4, 8, 7), 6, (2, 3), (0, 2), (2, 2), (2, 1), 2, CROSS_CORRELATION, NHWC, NHWC),
    ((1, 4, 8, 7), 6, (2, 3), (0, 2), (2, 2), (2, 1), 2, CONVOLUTION, NCHW, NCHW),
    ((2, 3, 6, 6), 6, (3, 3), (1, 1), (1, 1), (1, 1), 3, CROSS_CORRELATION, NHWC, NHWC),   # depthwise, x2
    ((2, 4, 6, 5), 4, (3, 3), (2, 1), (2, 1), (2, 2), 4, CONVOLUTION, NCHW, NCHW),         # depthwise
    ((2, 4, 6, 5), 8, (1, 1), (0, 0), (2, 2), (1, 1), 4, CROSS_CORRELATION, NHWC, NHWC),   # 1x1, strided
    ((2, 2, 5, 5), 3, (5, 5), (2, 2), (1, 1), (1, 1), 1, CONVOLUTION, NHWC, NCHW),         # mixed layouts
    ((3, 2, 4, 9), 2, (2, 4), (1, 2), (1, 2), (1, 2), 1, CROSS_CORRELATION, NCHW, NHWC),   # mixed layouts
]


def _case_id(case):
    xs, k, rs, pad, stride, dil, g, mode, xf, wf = case
    fmt = {NCHW: "nchw", NHWC: "nhwc"}
    return (f"{fmt[xf]}-w{fmt[wf]}-k{k}-f{rs[0]}x{rs[1]}-p{pad[0]}{pad[1]}-s{stride[0]}{stride[1]}"
            f"-d{dil[0]}{dil[1]}-g{g}-{'conv' if mode == CONVOLUTION else 'xcorr'}")


def _problem(case, dtype=FLOAT, **kw):
    xs, k, rs, pad, stride, dil, g, mode, xf, wf = case
    return Problem(xs, (k, xs[1] // g) + rs, pad, stride, dil, g, mode, xf, wf, dtype=dtype, **kw)


def _data(p, rng, dtype):
    """Random x, w, dy (canonical float64, bfloat16-exact for bfloat16)."""
    def r(shape):
        a = rng.standard_normal(shape).astype(np.float32)
        return from_bf16(to_bf16(a)).astype(np.float64) if dtype == BFLOAT16 else a.astype(np.float64)
    return r(p.x_shape), r(p.w_shape), r(p.y_shape)


def _check(got, want, dtype):
    if dtype == BFLOAT16:  # the same double sum rounded to float then bfloat16: one bfloat16 step at most
        np.testing.assert_allclose(got, want, rtol=2 ** -7, atol=1e-6)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("op", ["fwd", "bwd_data", "bwd_filter"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_convolution_matches_numpy(case, op):
    rng = np.random.default_rng(zlib.crc32((_case_id(case) + op).encode()))
    with _problem(case) as p:
        x, w, dy = _data(p, rng, FLOAT)
        args = (p.pad, p.stride, p.dil, p.groups, p.mode)
        for algo in ([FWD_IMPLICIT_PRECOMP_GEMM, FWD_IMPLICIT_GEMM] if op == "fwd" else [BWD_ALGO_0, BWD_ALGO_1]):
            before = cudnn_calls()
            if op == "fwd":
                want = ref_forward(x, w, *args)
                a, b, out_shape, out_fmt = encode(x, p.x_fmt, FLOAT), encode(w, p.w_fmt, FLOAT), p.y_shape, p.y_fmt
            elif op == "bwd_data":
                want = ref_backward_data(dy, w, p.x_shape, *args)
                a, b, out_shape, out_fmt = encode(w, p.w_fmt, FLOAT), encode(dy, p.y_fmt, FLOAT), p.x_shape, p.x_fmt
            else:
                want = ref_backward_filter(x, dy, p.w_shape, *args)
                a, b, out_shape, out_fmt = encode(x, p.x_fmt, FLOAT), encode(dy, p.y_fmt, FLOAT), p.w_shape, p.w_fmt
            # beta = 0: the output is not read (NaN there stays out of the result)
            out = encode(np.full(out_shape, np.nan), out_fmt, FLOAT)
            assert p.run(op, a, b, out, algo, _workspace(p, op, algo)) == SUCCESS
            _check(decode(out, out_fmt, FLOAT), want, FLOAT)
            # alpha and beta blend with what the output holds
            prior = rng.standard_normal(out_shape)
            out = encode(prior, out_fmt, FLOAT)
            assert p.run(op, a, b, out, algo, _workspace(p, op, algo), alpha=-0.75, beta=1.5) == SUCCESS
            _check(decode(out, out_fmt, FLOAT), -0.75 * want + 1.5 * prior.astype(np.float32), FLOAT)
            assert cudnn_calls() - before == 2


@pytest.mark.parametrize("case", [CASES[3], CASES[5], CASES[9]], ids=_case_id)
def test_the_three_operations_are_adjoint(case):
    """<conv(x, w), dy> = <x, backward_data(dy, w)> = <w, backward_filter(x, dy)>: the emulator's three
    calls agree with each other, whatever the reference says."""
    rng = np.random.default_rng(7)
    with _problem(case) as p:
        x, w, dy = _data(p, rng, FLOAT)
        y = encode(np.zeros(p.y_shape), p.y_fmt, FLOAT)
        dx = encode(np.zeros(p.x_shape), p.x_fmt, FLOAT)
        dw = encode(np.zeros(p.w_shape), p.w_fmt, FLOAT)
        xe, we, dye = encode(x, p.x_fmt, FLOAT), encode(w, p.w_fmt, FLOAT), encode(dy, p.y_fmt, FLOAT)
        assert p.run("fwd", xe, we, y, FWD_IMPLICIT_GEMM) == SUCCESS
        assert p.run("bwd_data", we, dye, dx, BWD_ALGO_0) == SUCCESS
        assert p.run("bwd_filter", xe, dye, dw, BWD_ALGO_0) == SUCCESS
        a = np.sum(decode(y, p.y_fmt, FLOAT) * dy)
        b = np.sum(x * decode(dx, p.x_fmt, FLOAT))
        c = np.sum(w * decode(dw, p.w_fmt, FLOAT))
        assert abs(a - b) <= 1e-5 * (1 + abs(a)) and abs(a - c) <= 1e-5 * (1 + abs(a)), (a, b, c)


@pytest.mark.parametrize("op", ["fwd", "bwd_data", "bwd_filter"])
@pytest.mark.parametrize("case", [CASES[1], CASES[5], CASES[6]], ids=_case_id)
def test_bfloat16_data_computes_in_float(case, op):
    rng = np.random.default_rng(11)
    with _problem(case, dtype=BFLOAT16) as p:
        x, w, dy = _data(p, rng, BFLOAT16)
        args = (p.pad, p.stride, p.dil, p.groups, p.mode)
        if op == "fwd":
            want, a, b = ref_forward(x, w, *args), encode(x, p.x_fmt, BFLOAT16), encode(w, p.w_fmt, BFLOAT16)
            out_shape, out_fmt = p.y_shape, p.y_fmt
        elif op == "bwd_data":
            want = ref_backward_data(dy, w, p.x_shape, *args)
            a, b = encode(w, p.w_fmt, BFLOAT16), encode(dy, p.y_fmt, BFLOAT16)
            out_shape, out_fmt = p.x_shape, p.x_fmt
        else:
            want = ref_backward_filter(x, dy, p.w_shape, *args)
            a, b = encode(x, p.x_fmt, BFLOAT16), encode(dy, p.y_fmt, BFLOAT16)
            out_shape, out_fmt = p.w_shape, p.w_fmt
        # NaN bits: with beta = 0 the output is not read
        out = np.full(to_layout(np.zeros(out_shape), out_fmt).shape, 0xFFC1, np.uint16)
        algo = FWD_IMPLICIT_GEMM if op == "fwd" else BWD_ALGO_0
        assert p.run(op, a, b, out, algo) == SUCCESS
        got = decode(out, out_fmt, BFLOAT16)
        _check(got, want, BFLOAT16)
        # rounded to nearest even from the float result: exactly bfloat16(float32(sum)) almost everywhere
        exact = from_bf16(to_bf16(want.astype(np.float32))).astype(np.float64)
        assert np.mean(got == exact) > 0.95
        # alpha, beta with a bfloat16 prior
        prior = from_bf16(to_bf16(rng.standard_normal(out_shape).astype(np.float32))).astype(np.float64)
        out = encode(prior, out_fmt, BFLOAT16)
        assert p.run(op, a, b, out, algo, alpha=2.0, beta=-1.0) == SUCCESS
        _check(decode(out, out_fmt, BFLOAT16), 2.0 * want - prior, BFLOAT16)


def test_bfloat16_rounding_is_to_nearest_even_and_keeps_nan():
    """A 1x1 convolution of one channel with weight 1 stores x (float) as bfloat16: ties go to even."""
    L = _lib()
    vals = np.array([1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 1.0 + 2 ** -9, -(1.0 + 2 ** -8), np.nan, np.inf], np.float32)
    with Problem((1, 1, 1, len(vals)), (1, 1, 1, 1)) as p:
        y = np.zeros(len(vals), np.float32)
        assert p.run("fwd", vals, np.ones(1, np.float32), y, FWD_IMPLICIT_GEMM) == SUCCESS
        np.testing.assert_array_equal(y, vals)
    # bfloat16 data, float compute: alpha scales exact bfloat16 inputs into ties
    xs = from_bf16(to_bf16(np.array([1.0, 1.0 + 2 ** -7, 3.0, -1.0], np.float32)))
    with Problem((1, 1, 1, 4), (1, 1, 1, 1), dtype=BFLOAT16) as p:
        y = np.zeros(4, np.uint16)
        alpha = 1.0 + 2 ** -8  # 1*(1+2^-8) ties between 1 and 1+2^-7 -> 1 (even); (1+2^-7)(1+2^-8) rounds up
        assert p.run("fwd", to_bf16(xs), to_bf16(np.ones(1, np.float32)), y, FWD_IMPLICIT_GEMM, alpha=alpha) == SUCCESS
        want = to_bf16((xs.astype(np.float64) * alpha).astype(np.float32))
        np.testing.assert_array_equal(y, want)
        assert from_bf16(y)[0] == 1.0
    assert L.cudnnGetErrorString(SUCCESS) == b"CUDNN_STATUS_SUCCESS"


# ---- algorithm lists and workspaces ------------------------------------------------------------------
def test_forward_algorithms_listed_with_their_workspaces():
    with _problem(CASES[2], math=1) as p:  # CUDNN_TENSOR_OP_MATH
        st, perf = p.algos("fwd")
        assert st == SUCCESS and len(perf) == FWD_ALGO_COUNT
        assert [q.algo for q in perf[:2]] == [FWD_IMPLICIT_PRECOMP_GEMM, FWD_IMPLICIT_GEMM]
        assert [q.status for q in perf[:2]] == [SUCCESS, SUCCESS]
        assert perf[0].memory > 0 and perf[1].memory == 0
        assert all(q.status == NOT_SUPPORTED and q.memory == 0 for q in perf[2:])
        assert sorted(q.algo for q in perf) == list(range(FWD_ALGO_COUNT))
        assert all(q.determinism == DETERMINISTIC and q.mathType == 1 for q in perf)
        for q in perf:
            st, size = p.workspace_size("fwd", q.algo)
            assert st == q.status and (st != SUCCESS or size == q.memory), (q.algo, st, size)
        st, perf1 = p.algos("fwd", requested=1)
        assert st == SUCCESS and len(perf1) == 1 and perf1[0].algo == FWD_IMPLICIT_PRECOMP_GEMM
        assert p.algos("fwd", requested=0)[0] == BAD_PARAM


@pytest.mark.parametrize("op,count", [("bwd_data", BWD_DATA_ALGO_COUNT), ("bwd_filter", BWD_FILTER_ALGO_COUNT)])
def test_backward_algorithms_list_a_nondeterministic_one_first(op, count):
    with _problem(CASES[4]) as p:
        st, perf = p.algos(op)
        assert st == SUCCESS and len(perf) == count
        assert (perf[0].algo, perf[0].status, perf[0].determinism) == (BWD_ALGO_0, SUCCESS, NON_DETERMINISTIC)
        assert (perf[1].algo, perf[1].status, perf[1].determinism) == (BWD_ALGO_1, SUCCESS, DETERMINISTIC)
        assert perf[1].memory > 0
        assert all(q.status == NOT_SUPPORTED for q in perf[2:])
        assert all(q.mathType == 0 for q in perf)
        for q in perf:
            st, size = p.workspace_size(op, q.algo)
            assert st == q.status and (st != SUCCESS or size == q.memory), (q.algo, st, size)
        # the first deterministic algorithm that runs is ALGO_1
        assert next(q.algo for q in perf if q.status == SUCCESS and q.determinism == DETERMINISTIC) == BWD_ALGO_1


@pytest.mark.parametrize("op,algo", [("fwd", FWD_IMPLICIT_PRECOMP_GEMM), ("bwd_data", BWD_ALGO_1),
                                     ("bwd_filter", BWD_ALGO_1)])
def test_workspace_checked_and_overwritten(op, algo):
    rng = np.random.default_rng(3)
    with _problem(CASES[0]) as p:
        x, w, dy = _data(p, rng, FLOAT)
        a, b, out_shape, out_fmt = {"fwd": (x, w, p.y_shape, p.y_fmt), "bwd_data": (w, dy, p.x_shape, p.x_fmt),
                                    "bwd_filter": (x, dy, p.w_shape, p.w_fmt)}[op]
        fa = encode(a, p.w_fmt if op == "bwd_data" else p.x_fmt, FLOAT)
        fb = encode(b, p.w_fmt if op == "fwd" else p.y_fmt, FLOAT)
        st, size = p.workspace_size(op, algo)
        assert st == SUCCESS and size > 0
        out = np.zeros(out_shape, np.float32)
        before = out.copy()
        calls = cudnn_calls()
        assert p.run(op, fa, fb, out, algo, None, size) == BAD_PARAM  # null workspace
        assert p.run(op, fa, fb, out, algo, np.zeros(size, np.uint8), size - 1) == BAD_PARAM  # too small
        assert p.run(op, fa, fb, out, algo, np.zeros(size - 1, np.uint8)) == BAD_PARAM
        np.testing.assert_array_equal(out, before)  # a failed call writes nothing
        assert cudnn_calls() == calls  # and is not counted
        ws = np.zeros(size + 64, np.uint8)
        assert p.run(op, fa, fb, out, algo, ws) == SUCCESS  # more than needed is fine
        assert cudnn_calls() == calls + 1
        assert np.all(ws[:size] == 0xFF)  # scratch the call overwrote
        assert np.all(np.isfinite(out))
        # a workspace that overlaps the output: the result is garbage, as on a device
        ws = np.zeros(size + out.nbytes, np.uint8)
        aliased = ws[:out.nbytes].view(np.float32).reshape(out.shape)
        assert p.run(op, fa, fb, aliased, algo, ws) == SUCCESS
        assert np.isnan(aliased).any()


def test_algorithms_that_need_no_workspace_take_a_null_one():
    with _problem(CASES[1]) as p:
        x, w, dy = _data(p, np.random.default_rng(5), FLOAT)
        y = np.zeros(p.y_shape, np.float32)
        assert p.run("fwd", encode(x, NHWC, FLOAT), encode(w, NHWC, FLOAT), y, FWD_IMPLICIT_GEMM, None, 0) == SUCCESS
        dx = np.zeros(p.x_shape, np.float32)
        assert p.run("bwd_data", encode(w, NHWC, FLOAT), encode(dy, NHWC, FLOAT), dx, BWD_ALGO_0, None, 0) == SUCCESS


@pytest.mark.parametrize("op", ["fwd", "bwd_data", "bwd_filter"])
def test_algorithms_outside_the_enum_or_not_run(op):
    rng = np.random.default_rng(9)
    with _problem(CASES[0]) as p:
        x, w, dy = _data(p, rng, FLOAT)
        fa = encode(w if op == "bwd_data" else x, NCHW, FLOAT)
        fb = encode(w if op == "fwd" else dy, NCHW, FLOAT)
        out = np.zeros({"fwd": p.y_shape, "bwd_data": p.x_shape, "bwd_filter": p.w_shape}[op], np.float32)
        count = {"fwd": FWD_ALGO_COUNT, "bwd_data": BWD_DATA_ALGO_COUNT, "bwd_filter": BWD_FILTER_ALGO_COUNT}[op]
        ws = np.zeros(1 << 16, np.uint8)
        for algo in (-1, count, 99):
            assert p.workspace_size(op, algo)[0] == BAD_PARAM
            assert p.run(op, fa, fb, out, algo, ws) == BAD_PARAM
        for algo in range(2, count):
            assert p.workspace_size(op, algo)[0] == NOT_SUPPORTED
            assert p.run(op, fa, fb, out, algo, ws) == NOT_SUPPORTED


# ---- statuses ----------------------------------------------------------------------------------------
def test_library_and_handle():
    L = _lib()
    assert L.cudnnGetVersion() // 10000 == 9
    assert L.cudnnGetErrorString(BAD_PARAM) == b"CUDNN_STATUS_BAD_PARAM"
    assert L.cudnnGetErrorString(NOT_SUPPORTED) == b"CUDNN_STATUS_NOT_SUPPORTED"
    assert L.cudnnCreate(None) == BAD_PARAM
    h = _new(L.cudnnCreate)
    assert L.cudnnSetStream(h, None) == SUCCESS
    assert L.cudnnSetStream(h, ctypes.c_void_p(0x1234)) == SUCCESS
    assert L.cudnnSetStream(None, None) == BAD_PARAM
    assert L.cudnnDestroy(h) == SUCCESS
    assert L.cudnnDestroy(None) == BAD_PARAM
    assert ctypes.sizeof(AlgoPerf) == 48


def test_tensor_and_filter_descriptor_statuses():
    L = _lib()
    t = _new(L.cudnnCreateTensorDescriptor)
    f = _new(L.cudnnCreateFilterDescriptor)
    try:
        for setter, d, fmt_first in ((L.cudnnSetTensor4dDescriptor, t, True), (L.cudnnSetFilter4dDescriptor, f, False)):
            def call(fmt, dtype, *dims):
                return setter(d, fmt, dtype, *dims) if fmt_first else setter(d, dtype, fmt, *dims)
            assert call(NCHW, FLOAT, 2, 3, 4, 5) == SUCCESS
            assert call(NHWC, BFLOAT16, 2, 3, 4, 5) == SUCCESS
            for dims in ((0, 3, 4, 5), (2, -1, 4, 5), (2, 3, 0, 5), (2, 3, 4, -5)):
                assert call(NCHW, FLOAT, *dims) == BAD_PARAM, dims
            assert call(7, FLOAT, 2, 3, 4, 5) == BAD_PARAM  # format outside the enum
            assert call(NCHW, 99, 2, 3, 4, 5) == BAD_PARAM  # data type outside the enum
            assert call(NCHW_VECT_C, FLOAT, 2, 4, 4, 5) == NOT_SUPPORTED
            for dtype in (DOUBLE, HALF, 3):
                assert call(NCHW, dtype, 2, 3, 4, 5) == NOT_SUPPORTED, dtype
            assert call(NCHW, FLOAT, 1 << 16, 1 << 16, 1, 1) == NOT_SUPPORTED  # over 2^31 - 1 elements
            assert setter(None, FLOAT, NCHW, 1, 1, 1, 1) == BAD_PARAM
        # a descriptor of the other kind is refused
        assert L.cudnnSetTensor4dDescriptor(f, NCHW, FLOAT, 1, 1, 1, 1) == BAD_PARAM
        assert L.cudnnSetFilter4dDescriptor(t, FLOAT, NCHW, 1, 1, 1, 1) == BAD_PARAM
    finally:
        assert L.cudnnDestroyTensorDescriptor(t) == SUCCESS
        assert L.cudnnDestroyFilterDescriptor(f) == SUCCESS


def test_convolution_descriptor_statuses():
    L = _lib()
    c = _new(L.cudnnCreateConvolutionDescriptor)
    try:
        ok = [1, 1, 1, 1, 1, 1, CROSS_CORRELATION, FLOAT]
        assert L.cudnnSetConvolution2dDescriptor(c, *ok) == SUCCESS
        for i, bad in ((0, -1), (1, -1), (2, 0), (3, -2), (4, 0), (5, -1), (6, 2), (7, 99)):
            args = list(ok)
            args[i] = bad
            assert L.cudnnSetConvolution2dDescriptor(c, *args) == BAD_PARAM, args
        assert L.cudnnSetConvolution2dDescriptor(None, *ok) == BAD_PARAM
        assert L.cudnnSetConvolutionGroupCount(c, 0) == BAD_PARAM
        assert L.cudnnSetConvolutionGroupCount(c, 3) == SUCCESS
        assert L.cudnnSetConvolutionMathType(c, 4) == BAD_PARAM
        assert L.cudnnSetConvolutionMathType(c, -1) == BAD_PARAM
        for m in range(4):
            assert L.cudnnSetConvolutionMathType(c, m) == SUCCESS
        assert L.cudnnSetConvolutionGroupCount(None, 1) == BAD_PARAM
    finally:
        assert L.cudnnDestroyConvolutionDescriptor(c) == SUCCESS


def test_output_dim():
    L = _lib()
    dims = [ctypes.c_int() for _ in range(4)]
    refs = [ctypes.byref(d) for d in dims]
    for case in CASES:
        with _problem(case) as p:
            assert L.cudnnGetConvolution2dForwardOutputDim(p.cd, p.xd, p.wd, *refs) == SUCCESS
            xs, k, (r, s), pad, stride, dil = case[:6]
            want = (xs[0], k, out_dim(xs[2], pad[0], r, dil[0], stride[0]),
                    out_dim(xs[3], pad[1], s, dil[1], stride[1]))
            assert tuple(d.value for d in dims) == want
            null_c = (refs[0], None, refs[2], refs[3])
            assert L.cudnnGetConvolution2dForwardOutputDim(p.cd, p.xd, p.wd, *null_c) == BAD_PARAM
            assert L.cudnnGetConvolution2dForwardOutputDim(p.cd, p.xd, None, *refs) == BAD_PARAM
            assert L.cudnnGetConvolution2dForwardOutputDim(p.cd, p.wd, p.xd, *refs) == BAD_PARAM  # swapped kinds
    # x's channels must be the filter's times the group count
    with Problem((1, 4, 5, 5), (2, 2, 3, 3), groups=2) as p:
        assert L.cudnnGetConvolution2dForwardOutputDim(p.cd, p.xd, p.wd, *refs) == SUCCESS
        assert L.cudnnSetConvolutionGroupCount(p.cd, 1) == SUCCESS
        assert L.cudnnGetConvolution2dForwardOutputDim(p.cd, p.xd, p.wd, *refs) == BAD_PARAM
    # the dilated filter must fit the padded input
    with Problem((1, 1, 5, 5), (1, 1, 3, 3), pad=(0, 0), dil=(2, 2)) as p:
        assert L.cudnnGetConvolution2dForwardOutputDim(p.cd, p.xd, p.wd, *refs) == SUCCESS
        assert tuple(d.value for d in dims) == (1, 1, 1, 1)
        assert L.cudnnSetConvolution2dDescriptor(p.cd, 0, 0, 1, 1, 3, 1, CROSS_CORRELATION, FLOAT) == SUCCESS
        assert L.cudnnGetConvolution2dForwardOutputDim(p.cd, p.xd, p.wd, *refs) == BAD_PARAM
        assert L.cudnnSetConvolution2dDescriptor(p.cd, 1, 0, 1, 1, 3, 1, CROSS_CORRELATION, FLOAT) == SUCCESS
        assert L.cudnnGetConvolution2dForwardOutputDim(p.cd, p.xd, p.wd, *refs) == SUCCESS
    # descriptors created but never set
    t, f = _new(L.cudnnCreateTensorDescriptor), _new(L.cudnnCreateFilterDescriptor)
    c = _new(L.cudnnCreateConvolutionDescriptor)
    assert L.cudnnGetConvolution2dForwardOutputDim(c, t, f, *refs) == BAD_PARAM
    assert L.cudnnSetConvolution2dDescriptor(c, 0, 0, 1, 1, 1, 1, CROSS_CORRELATION, FLOAT) == SUCCESS
    assert L.cudnnGetConvolution2dForwardOutputDim(c, t, f, *refs) == BAD_PARAM
    assert (L.cudnnDestroyTensorDescriptor(t), L.cudnnDestroyFilterDescriptor(f),
            L.cudnnDestroyConvolutionDescriptor(c)) == (SUCCESS,) * 3


@pytest.mark.parametrize("op", ["fwd", "bwd_data", "bwd_filter"])
def test_problem_statuses(op):
    """Each call (query, workspace size, run) checks the whole problem the same way."""
    L = _lib()

    def statuses(p):
        st_q = p.algos(op)[0]
        st_w = p.workspace_size(op, 0)[0]
        a = np.zeros(4096, np.float32)
        st_r = p.run(op, a, a, np.zeros(4096, np.float32), 0, np.zeros(1 << 16, np.uint8))
        return st_q, st_w, st_r

    def p_(**kw):
        base = dict(x_shape=(2, 4, 6, 6), w_shape=(6, 2, 3, 3), groups=2)
        base.update(kw)
        return Problem(**base, check=False)

    with p_() as p:
        assert statuses(p) == (SUCCESS,) * 3
    with p_(w_shape=(5, 2, 3, 3)) as p:  # k not a multiple of the group count
        assert statuses(p) == (BAD_PARAM,) * 3
    with p_(y_shape=(2, 6, 4, 5)) as p:  # y's width not the convolution's
        assert statuses(p) == (NOT_SUPPORTED,) * 3
    with p_(y_shape=(2, 6, 5, 4)) as p:
        assert statuses(p) == (NOT_SUPPORTED,) * 3
    with p_(y_shape=(2, 5, 4, 4)) as p:  # y's channels not k
        assert statuses(p) == (BAD_PARAM,) * 3
    with p_(y_shape=(1, 6, 4, 4)) as p:  # y's images not x's
        assert statuses(p) == (BAD_PARAM,) * 3
    with p_(compute=HALF) as p:  # FLOAT data computes in FLOAT only
        assert statuses(p) == (NOT_SUPPORTED,) * 3
    with p_(dtype=BFLOAT16, compute=BFLOAT16) as p:  # so does BFLOAT16 data (PSEUDO_BFLOAT16_CONFIG)
        assert statuses(p) == (NOT_SUPPORTED,) * 3
    with p_() as p:  # mismatched data types
        assert L.cudnnSetTensor4dDescriptor(p.yd, NCHW, BFLOAT16, 2, 6, 4, 4) == SUCCESS
        assert statuses(p) == (BAD_PARAM,) * 3
    with p_() as p:
        assert L.cudnnSetFilter4dDescriptor(p.wd, BFLOAT16, NCHW, 6, 2, 3, 3) == SUCCESS
        assert statuses(p) == (BAD_PARAM,) * 3
    with p_() as p:  # x's channels not the filter's times the group count
        assert L.cudnnSetConvolutionGroupCount(p.cd, 3) == SUCCESS
        assert statuses(p) == (BAD_PARAM,) * 3


@pytest.mark.parametrize("op", ["fwd", "bwd_data", "bwd_filter"])
def test_null_pointers_and_wrong_descriptors(op):
    rng = np.random.default_rng(1)
    with Problem((1, 2, 4, 4), (3, 2, 3, 3), pad=(1, 1)) as p:
        x, w, dy = _data(p, rng, FLOAT)
        fa = encode(w if op == "bwd_data" else x, NCHW, FLOAT)
        fb = encode(w if op == "fwd" else dy, NCHW, FLOAT)
        out = np.zeros({"fwd": p.y_shape, "bwd_data": p.x_shape, "bwd_filter": p.w_shape}[op], np.float32)
        assert p.run(op, fa, fb, out, 0) == SUCCESS
        assert p.run(op, None, fb, out, 0) == BAD_PARAM
        assert p.run(op, fa, None, out, 0) == BAD_PARAM
        assert p.run(op, fa, fb, None, 0) == BAD_PARAM
        assert p.run(op, fa, fb, out, 0, handle=p.xd) == BAD_PARAM  # not a handle
        L = _lib()
        al = ctypes.c_float(1)
        if op == "fwd":  # null alpha / beta; a filter descriptor for x
            assert L.cudnnConvolutionForward(p.handle, None, p.xd, fa.ctypes.data, p.wd, fb.ctypes.data, p.cd, 0, None,
                                             0, ctypes.byref(al), p.yd, out.ctypes.data) == BAD_PARAM
            assert L.cudnnConvolutionForward(p.handle, ctypes.byref(al), p.xd, fa.ctypes.data, p.wd, fb.ctypes.data,
                                             p.cd, 0, None, 0, None, p.yd, out.ctypes.data) == BAD_PARAM
            assert L.cudnnConvolutionForward(p.handle, ctypes.byref(al), p.wd, fa.ctypes.data, p.wd, fb.ctypes.data,
                                             p.cd, 0, None, 0, ctypes.byref(al), p.yd, out.ctypes.data) == BAD_PARAM
        st, _ = p.algos(op)
        assert st == SUCCESS
        results = (AlgoPerf * 8)()
        count = ctypes.c_int()
        q = {"fwd": (L.cudnnGetConvolutionForwardAlgorithm_v7, (p.xd, p.wd, p.cd, p.yd)),
             "bwd_data": (L.cudnnGetConvolutionBackwardDataAlgorithm_v7, (p.wd, p.yd, p.cd, p.xd)),
             "bwd_filter": (L.cudnnGetConvolutionBackwardFilterAlgorithm_v7, (p.xd, p.yd, p.cd, p.wd))}[op]
        assert q[0](p.handle, *q[1], 8, None, results) == BAD_PARAM
        assert q[0](p.handle, *q[1], 8, ctypes.byref(count), None) == BAD_PARAM
        assert q[0](None, *q[1], 8, ctypes.byref(count), results) == BAD_PARAM
        assert q[0](p.handle, *q[1], -3, ctypes.byref(count), results) == BAD_PARAM
        swapped = (q[1][2], q[1][1], q[1][0], q[1][3])  # conv descriptor in a tensor's place
        assert q[0](p.handle, *swapped, 8, ctypes.byref(count), results) == BAD_PARAM


def test_counter_counts_convolutions_only():
    """lamina_emu_stats' 8th value (of 9): one per convolution run; queries and failed calls do not count."""
    rng = np.random.default_rng(2)
    with _problem(CASES[0]) as p:
        x, w, dy = _data(p, rng, FLOAT)
        before = cudnn_calls()
        p.algos("fwd"), p.algos("bwd_data"), p.algos("bwd_filter"), p.workspace_size("fwd", 1)
        assert cudnn_calls() == before
        xe, we, dye = encode(x, NCHW, FLOAT), encode(w, NCHW, FLOAT), encode(dy, NCHW, FLOAT)
        assert p.run("fwd", xe, we, np.zeros(p.y_shape, np.float32), FWD_IMPLICIT_GEMM) == SUCCESS
        assert p.run("bwd_data", we, dye, np.zeros(p.x_shape, np.float32), BWD_ALGO_0) == SUCCESS
        assert p.run("bwd_filter", xe, dye, np.zeros(p.w_shape, np.float32), BWD_ALGO_0) == SUCCESS
        assert p.run("fwd", xe, we, np.zeros(p.y_shape, np.float32), FWD_FFT) == NOT_SUPPORTED
        assert cudnn_calls() == before + 3
        out = (ctypes.c_longlong * 9)()
        _lib().lamina_emu_stats(out, 1)  # reset
        _lib().lamina_emu_stats(out, 0)
        assert out[7] == 0


def test_skipping_kernels_skips_convolutions():
    """LAMINA_CUDA_EMULATOR_SKIP_KERNELS=1 (read once per process): a convolution checks, counts, and
    computes nothing."""
    _lib()
    code = (
        "import sys; sys.path[:0] = [%r]\n"
        "import numpy as np, test_cuda_emulator_cudnn as t\n"
        "with t.Problem((1, 1, 3, 3), (1, 1, 1, 1)) as p:\n"
        "    y = np.full(9, 7.0, np.float32)\n"
        "    print(p.run('fwd', np.ones(9, np.float32), np.ones(1, np.float32), y, 0), y[0], t.cudnn_calls())\n"
        "    print(p.run('fwd', np.ones(9, np.float32), np.ones(1, np.float32), y, 99))\n" % os.path.dirname(__file__))
    env = dict(os.environ, LAMINA_CUDA_EMULATOR_SKIP_KERNELS="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0].split() == ["0", "7.0", "1"], r.stdout
    assert lines[1].strip() == str(BAD_PARAM)
