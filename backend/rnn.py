"""Recurrent ops: whole-sequence fused LSTM / GRU / simple RNN, with gradients.

Each op runs a whole sequence in one C++ kernel (csrc/cpu/rnn.cpp): the input projection of all
steps as one GEMM, then per step one GEMM with the recurrent kernel and a fused pass for the gate
maths. Inputs are batch-major (batch, timesteps, features); weights have Keras's layouts:

    lstm        kernel (F, 4U), recurrent_kernel (U, 4U), bias (4U,)    gates i, f, c, o
    gru         kernel (F, 3U), recurrent_kernel (U, 3U), bias (2, 3U)  gates z, r, h (reset_after)
    simple_rnn  kernel (F, U),  recurrent_kernel (U, U),  bias (U,)     h = tanh(x K + h R + b)

Options, as Keras's RNN layers: `mask` (batch, timesteps), bool: a masked step keeps the states
and outputs the previous h; `go_backwards`: the sequence is processed from its last step, and
the outputs come in processing order (reversed time), as Keras returns them; `input_dropout`
(batch, features) and `recurrent_dropout` (batch, units): masks (already scaled, e.g. 0 or
1 / (1 - rate)) multiplied into x at every step and into h_prev before the recurrent matmul.

Gradients flow to the inputs, the initial states, the kernel, the recurrent kernel and the bias
(not to the masks). The ops have several outputs: one backward kernel call serves them all.

dtypes: float32; each op computes in bfloat16 when its inputs, kernel and recurrent kernel are
all bfloat16 (mixed precision: the layer passes the weights' bfloat16 copies): on the CPU the
matrix products take bfloat16 operands and sum in float32, the gate maths, the LSTM's c and the
GRU's saved h R_h + b_h stay float32 (csrc/cpu/rnn.cpp), and the outputs and last states come
back in bfloat16 (h, the output, is carried between steps in bfloat16); the gradients are
float32, cast by autodiff where a bfloat16 tensor needs its own dtype. A mix of float32 and
bfloat16 among those three computes in float32. The CUDA module's kernels compute in bfloat16
the same way (bfloat16 operands on cuBLAS's GemmStridedBatchedEx, csrc/cuda/rnn.cu); without
cuBLAS a bfloat16 call runs on the host (backend/device.py's fallback).

Inside `with autodiff.deferred_weight_gradients(devices):` a backward pass of an op on one of
those devices leaves the kernel and recurrent kernel gradients as products formed when read
(StackedProducts below: [H_prev X]^T @ dGates, one GEMM per call for both; the GRU's as two
sparse.OuterProducts): the backward kernel then does only what the earlier layers wait for, and
the weight-gradient GEMMs of every call run when the gradient is read, at the end of the pass --
so a pipelined step's last device hands its input gradients to the device before it sooner and
fills the pipeline's tail with the deferred GEMMs ("zero-bubble" pipelining, models/trainer.py).
"""
from . import dtypes, validation
from .autodiff import needs_grad, record, weight_gradients_deferred
from .manipulation import reshape as _reshape
from .math import _as_tensor, cast as _cast, check_same_device, multiply as _mul, not_equal, zeros
from .sparse import OuterProducts
from .tensor import Tensor, empty

__all__ = ["lstm", "gru", "simple_rnn"]

_F32 = dtypes.FLOAT32


# ---- several outputs, one backward ---------------------------------------------------------------

def _record_multi(outputs, inputs, backward, accumulates=False):
    """Records an op with several outputs (the autodiff Node has one): `backward(grads, needs)`
    receives one gradient per output (None for an output that got none) and `needs` for every
    listed input (None inputs included, never needed), and returns one gradient per input. With
    `accumulates=True` it is called as `backward(grads, needs, acc)`: acc, per input, an owned
    gradient the op may add its own into (see autodiff.Node).

    All the inputs hang off a private zero-size "hub" tensor; each output records a node whose
    only input is the hub. Backprop visits a node after everything computed from it, so the
    outputs' backward functions run first: they park their gradients in a shared slot and hand
    the hub a zero-size token, then the hub's backward runs the op's backward once with all of
    them."""
    present = [i for i, t in enumerate(inputs) if t is not None]
    ts = tuple(inputs[i] for i in present)
    if not needs_grad(*ts):
        return
    n_out = len(outputs)
    dev = outputs[0].device
    hub = empty((0,), _F32, dev)
    slot = {"grads": [None] * n_out}

    def hub_bw(g, needs, acc=None):
        grads, slot["grads"] = slot["grads"], [None] * n_out
        full, acc_full = [False] * len(inputs), [None] * len(inputs)
        for i, n, a in zip(present, needs, acc or (None,) * len(present)):
            full[i], acc_full[i] = n, a
        res = backward(grads, full, acc_full) if accumulates else backward(grads, full)
        return tuple(res[i] for i in present)
    record(hub, ts, hub_bw, accumulates=accumulates)

    for k, out in enumerate(outputs):
        def out_bw(g, needs, k=k):
            grads = slot["grads"]
            if grads[k] is not None:  # left over from an interrupted backward pass
                grads = slot["grads"] = [None] * n_out
            first = all(x is None for x in grads)
            grads[k] = g
            return (empty((0,), _F32, dev) if first else None,)
        record(out, (hub,), out_bw)


# ---- argument checks ---------------------------------------------------------------------------------

def _compute_dtype(x, K, R, *rest):
    """bfloat16 when the inputs and both kernels are bfloat16 (mixed precision: the products take
    bfloat16 operands, gates, states and sums stay float32, outputs and last states come back in
    bfloat16), the arguments as given; otherwise float32, with every bfloat16 argument (None
    stays None) cast up, since the kernels take bfloat16 buffers only when computing in it."""
    args = (x, K, R) + rest
    if x.dtype == K.dtype == R.dtype == dtypes.BFLOAT16:
        return dtypes.BFLOAT16, args
    return _F32, tuple(t if t is None else _cast(t, _F32) for t in args)


def _f32(op, name, t):
    if t.dtype not in dtypes.FLOATS:  # bfloat16: see the module docstring
        raise TypeError(f"{op}: expected {name} of dtype float32, received {t.dtype} with shape {t.shape}; "
                        f"cast it with ops.cast(x, 'float32')")


def _prepare(op, G, inputs, states, kernel, recurrent_kernel, bias, mask, input_dropout, recurrent_dropout):
    """Validates and converts the arguments; returns (x, states, kernel, rk, bias, mask, dropouts, dims)."""
    x = _as_tensor(inputs)
    _f32(op, "inputs", x)
    if x.ndim != 3:
        raise ValueError(f"{op}: expected inputs of shape (batch, timesteps, features), received shape {x.shape}")
    B, T, F = x.shape
    R = _as_tensor(recurrent_kernel)
    _f32(op, "recurrent_kernel", R)
    if R.ndim != 2 or R.shape[1] != G * R.shape[0]:
        raise ValueError(f"{op}: expected recurrent_kernel of shape (units, {G} * units), received shape "
                         f"{R.shape}; its first dimension sets the number of units")
    U = R.shape[0]
    K = _as_tensor(kernel)
    _f32(op, "kernel", K)
    if K.shape != (F, G * U):
        raise ValueError(f"{op}: expected kernel of shape (features, {G} * units) = {(F, G * U)} for inputs of "
                         f"shape {x.shape} and recurrent_kernel of shape {R.shape}, received kernel of shape "
                         f"{K.shape}")
    if bias is not None:
        bias = _as_tensor(bias)
        _f32(op, "bias", bias)
        want = (2, G * U) if op == "gru" else (G * U,)
        if bias.shape != want:
            extra = " ([input bias; recurrent bias], reset_after=True)" if op == "gru" else ""
            raise ValueError(f"{op}: expected bias of shape {want}{extra} for {U} units, received shape {bias.shape}")
    st = []
    for name, s in states:
        if s is not None:
            s = _as_tensor(s)
            _f32(op, name, s)
            if s.shape != (B, U):
                raise ValueError(f"{op}: expected {name} of shape (batch, units) = {(B, U)} for inputs of shape "
                                 f"{x.shape} and {U} units, received shape {s.shape}")
        st.append(s)
    if mask is not None:
        mask = _as_tensor(mask)
        if mask.shape != (B, T):
            raise ValueError(f"{op}: expected mask of shape (batch, timesteps) = {(B, T)} for inputs of shape "
                             f"{x.shape}, received shape {mask.shape}")
        if mask.dtype != dtypes.BOOL:
            mask = not_equal(mask, 0)
    drops = []
    for name, d, n in (("input_dropout", input_dropout, F), ("recurrent_dropout", recurrent_dropout, U)):
        if d is not None:
            d = _as_tensor(d)
            _f32(op, name, d)
            if d.shape != (B, n):
                what = "features" if n == F else "units"
                raise ValueError(f"{op}: expected {name} mask of shape (batch, {what}) = {(B, n)} for inputs of "
                                 f"shape {x.shape} and {U} units, received shape {d.shape}")
        drops.append(d)
    check_same_device(op, x, K, R, *(t for t in (bias, mask, *st, *drops) if t is not None))
    # what the op allocates, before anything is: the states (zeros when not given) and the last
    # states (B, U); the outputs (B, T, U) and the gates (B, T, G * U), the largest
    for shape in ((B, U), (B, T, G * U)):
        validation.check_alloc(op, shape, _F32, x.device)
    return x, st, K, R, bias, mask, drops, (B, T, F, U)


def _buf(t):
    return t._buf if t is not None else None


class StackedProducts:
    """A deferred kernel or recurrent-kernel gradient of an LSTM or simple RNN: rows [U:] or [:U]
    of sum_i HX_i^T @ dG_i, with HX_i = [H_prev X] (rows_i, U + F) and dG_i (rows_i, G*U) kept by
    each call's backward kernel. The kernel and recurrent-kernel gradients of the same calls share
    one GEMM per call (the stacked product is formed once, for whichever is read first, and kept
    with the first call's job). Like sparse.OuterProducts, internal to backprop: gradients of
    several calls merge by collecting the calls, and whatever leaves backprop is dense."""

    __slots__ = ("part", "jobs", "U", "F", "GU")
    _is_outer_products = True

    def __init__(self, part, jobs, U, F, GU):
        self.part, self.jobs, self.U, self.F, self.GU = part, list(jobs), U, F, GU

    @property
    def shape(self):
        return (self.U, self.GU) if self.part == "recurrent" else (self.F, self.GU)

    @property
    def device(self):
        return self.jobs[0].hx.device

    @property
    def dtype(self):
        return _F32

    @property
    def ndim(self):
        return 2

    def merge(self, other):
        """The sum of two such gradients of the same weight (None when they cannot merge)."""
        if (type(other) is not StackedProducts or other.part != self.part
                or (other.U, other.F, other.GU) != (self.U, self.F, self.GU)):
            return None
        return StackedProducts(self.part, self.jobs + other.jobs, self.U, self.F, self.GU)

    def _stacked(self):
        key = tuple(id(j) for j in self.jobs)
        cache = self.jobs[0].cache  # the kernel's and the recurrent kernel's gradients find it here
        if key not in cache:
            W = self.U + self.F
            out = empty((W, self.GU), _F32, self.device)
            k = self.device.kernels
            for i, job in enumerate(self.jobs if W * self.GU else ()):
                rows = job.hx.shape[0]
                k.gemm(True, False, W, self.GU, rows, 1.0, job.hx._buf, job.dg._buf, 0.0 if i == 0 else 1.0, out._buf,
                       W, self.GU, self.GU)
            cache[key] = out
        return cache[key]

    def to_dense(self):
        st = self._stacked()
        return _rows(st, 0, self.U) if self.part == "recurrent" else _rows(st, self.U, self.U + self.F)

    def add_into(self, out):
        out.device.kernels.axpby(1.0, self.to_dense()._buf, 1.0, out._buf)


class _Job:
    """One call's [H_prev X] (rows, U + F) and gate gradients (rows, G*U), and the stacked
    products formed from the job lists it starts."""

    __slots__ = ("hx", "dg", "cache")

    def __init__(self, hx, dg):
        self.hx, self.dg, self.cache = hx, dg, {}


def _rows(t, a, b):
    """Rows a:b of the 2-D t, copied."""
    from .manipulation import slice as _slice
    return _slice(t, (a, 0), (b - a, t.shape[1]))


def _deferred(n, first, res, x, in_mask, dev, B, T, F, U, GU, separate_rec):
    """For a deferred backward pass: the buffers the backward kernel fills for forming the weight
    gradients later -- (dgates, dgates_rec or None, h_prev) -- and res[first], res[first + 1]
    (kernel and recurrent kernel gradients) set to products formed when read. None when the
    weights need no gradient or their device's are not deferred. separate_rec (the GRU): the recurrent
    kernel's gate gradients differ from the kernel's, so the two are OuterProducts of their own;
    otherwise one StackedProducts GEMM per call serves both."""
    if not weight_gradients_deferred(dev) or not (n[first] or n[first + 1]):
        return None
    rows = B * T
    dg = empty((B, T, GU), _F32, dev)
    g2 = Tensor(dg._buf, (rows, GU), _F32, dev)
    if not separate_rec:
        hx = empty((B, T, U + F), _F32, dev)
        job = _Job(Tensor(hx._buf, (rows, U + F), _F32, dev), g2)
        for i, part in ((first, "kernel"), (first + 1, "recurrent")):
            if n[i]:
                res[i] = StackedProducts(part, [job], U, F, GU)
        return dg, None, hx
    dgr = empty((B, T, GU), _F32, dev)
    hp = empty((B, T, U), _F32, dev) if n[first + 1] else None
    if n[first]:
        xm = x if in_mask is None else _mul(x, _reshape(in_mask, (B, 1, F)))
        if x.dtype == dtypes.BFLOAT16:  # the operand the kernel's products read: rounded, as float32 values
            xm = _cast(_cast(xm, dtypes.BFLOAT16), _F32)
        res[first] = OuterProducts([(Tensor(xm._buf, (rows, F), _F32, dev), g2)], (F, GU))
    if n[first + 1]:
        res[first + 1] = OuterProducts([(Tensor(hp._buf, (rows, U), _F32, dev),
                                          Tensor(dgr._buf, (rows, GU), _F32, dev))], (U, GU))
    return dg, dgr, hp


def _zeros_state(s, B, U, dev):
    return s if s is not None else zeros((B, U), _F32, dev)


def _maybe(cond, shape, dev):
    return empty(shape, _F32, dev) if cond else None


# ---- ops ---------------------------------------------------------------------------------------------

def _weight_grads(res, n, acc, first, shapes, dev, bias_only=False):
    """Fills res[first:first+3], the kernel, recurrent kernel and bias gradients (only the bias
    with bias_only): an owned accumulator from autodiff where there is one (the kernel adds into
    it), else a new buffer where needed. Returns the kernel's `accumulate` bits (1 kernel, 2
    recurrent kernel, 4 bias)."""
    bits = 0
    for j, shape in enumerate(shapes):
        if bias_only and j < 2:
            continue
        i = first + j
        if n[i] and acc[i] is not None:
            res[i] = acc[i]
            bits |= 1 << j
        else:
            res[i] = _maybe(n[i], shape, dev)
    return bits


def lstm(inputs, h0, c0, kernel, recurrent_kernel, bias, mask=None, go_backwards=False, input_dropout=None,
         recurrent_dropout=None):
    """Runs an LSTM (Keras's gates i, f, c, o; sigmoid / tanh) over a whole sequence.

    inputs (B, T, F); h0, c0 (B, U) or None (zeros); kernel (F, 4U); recurrent_kernel (U, 4U);
    bias (4U,) or None. Returns (outputs (B, T, U) in processing order, last h (B, U), last c
    (B, U)). See the module docstring for mask, go_backwards and the dropout masks."""
    op = "lstm"
    x, (h0, c0), K, R, bias, mask, (dx_m, dr_m), (B, T, F, U) = _prepare(
        op, 4, inputs, (("h0", h0), ("c0", c0)), kernel, recurrent_kernel, bias, mask, input_dropout,
        recurrent_dropout)
    cdt, (x, K, R, h0, c0, bias, dx_m, dr_m) = _compute_dtype(x, K, R, h0, c0, bias, dx_m, dr_m)
    dev = x.device
    k = dev.kernels
    h_init, c_init = _zeros_state(h0, B, U, dev), _zeros_state(c0, B, U, dev)
    grad = needs_grad(*(t for t in (x, h0, c0, K, R, bias) if t is not None))
    out, h, c = empty((B, T, U), cdt, dev), empty((B, U), cdt, dev), empty((B, U), cdt, dev)
    gates = empty((B, T, 4 * U), _F32, dev)
    cs = _maybe(grad, (B, T, U), dev)
    back = bool(go_backwards)
    ob = out._buf  # the backward closure must not hold `out` itself (out -> node -> closure cycle)
    k.lstm_forward(x._buf, h_init._buf, c_init._buf, K._buf, R._buf, _buf(bias), _buf(mask), _buf(dx_m),
                   _buf(dr_m), B, T, F, U, back, out._buf, h._buf, c._buf, gates._buf, _buf(cs))
    if grad:
        def backward(grads, n, acc):
            g_out, g_h, g_c = grads
            res = [empty(x.shape, x.dtype, dev) if n[0] else None, _maybe(n[1], (B, U), dev),
                   _maybe(n[2], (B, U), dev), None, None, None]
            keep = _deferred(n, 3, res, x, dx_m, dev, B, T, F, U, 4 * U, False)
            bits = _weight_grads(res, n, acc, 3, (K.shape, R.shape, bias.shape if bias is not None else ()), dev,
                                 bias_only=keep is not None)
            wk, wr = (None, None) if keep else (res[3], res[4])
            dg, _, hp = keep or (None, None, None)
            k.lstm_backward(x._buf, h_init._buf, c_init._buf, K._buf, R._buf, _buf(mask), _buf(dx_m), _buf(dr_m),
                            B, T, F, U, back, ob, gates._buf, cs._buf, _buf(g_out), _buf(g_h), _buf(g_c),
                            _buf(res[0]), _buf(res[1]), _buf(res[2]), _buf(wk), _buf(wr), _buf(res[5]),
                            bits, _buf(dg), None, _buf(hp))
            return tuple(res)
        _record_multi((out, h, c), (x, h0, c0, K, R, bias), backward, accumulates=True)
    return out, h, c


def gru(inputs, h0, kernel, recurrent_kernel, bias, mask=None, go_backwards=False, input_dropout=None,
        recurrent_dropout=None):
    """Runs a GRU (Keras's reset_after=True variant, gates z, r, h) over a whole sequence.

    inputs (B, T, F); h0 (B, U) or None (zeros); kernel (F, 3U); recurrent_kernel (U, 3U);
    bias (2, 3U) = [input bias; recurrent bias] or None:
        z = sigmoid(x K_z + b_z + h R_z + b'_z), r = sigmoid(x K_r + b_r + h R_r + b'_r),
        hh = tanh(x K_h + b_h + r * (h R_h + b'_h)),  h_new = z * h + (1 - z) * hh.
    Returns (outputs (B, T, U) in processing order, last h (B, U))."""
    op = "gru"
    x, (h0,), K, R, bias, mask, (dx_m, dr_m), (B, T, F, U) = _prepare(
        op, 3, inputs, (("h0", h0),), kernel, recurrent_kernel, bias, mask, input_dropout, recurrent_dropout)
    cdt, (x, K, R, h0, bias, dx_m, dr_m) = _compute_dtype(x, K, R, h0, bias, dx_m, dr_m)
    dev = x.device
    k = dev.kernels
    h_init = _zeros_state(h0, B, U, dev)
    grad = needs_grad(*(t for t in (x, h0, K, R, bias) if t is not None))
    out, h = empty((B, T, U), cdt, dev), empty((B, U), cdt, dev)
    gates = empty((B, T, 3 * U), _F32, dev)
    rh = _maybe(grad, (B, T, U), dev)
    back = bool(go_backwards)
    ob = out._buf
    k.gru_forward(x._buf, h_init._buf, K._buf, R._buf, _buf(bias), _buf(mask), _buf(dx_m), _buf(dr_m), B, T, F, U,
                  back, out._buf, h._buf, gates._buf, _buf(rh))
    if grad:
        def backward(grads, n, acc):
            g_out, g_h = grads
            res = [empty(x.shape, x.dtype, dev) if n[0] else None, _maybe(n[1], (B, U), dev), None, None, None]
            keep = _deferred(n, 2, res, x, dx_m, dev, B, T, F, U, 3 * U, True)
            bits = _weight_grads(res, n, acc, 2, (K.shape, R.shape, bias.shape if bias is not None else ()), dev,
                                 bias_only=keep is not None)
            wk, wr = (None, None) if keep else (res[2], res[3])
            dg, dgr, hp = keep or (None, None, None)
            k.gru_backward(x._buf, h_init._buf, K._buf, R._buf, _buf(mask), _buf(dx_m), _buf(dr_m), B, T, F, U, back,
                           ob, gates._buf, rh._buf, _buf(g_out), _buf(g_h), _buf(res[0]), _buf(res[1]), _buf(wk),
                           _buf(wr), _buf(res[4]), bits, _buf(dg), _buf(dgr), _buf(hp))
            return tuple(res)
        _record_multi((out, h), (x, h0, K, R, bias), backward, accumulates=True)
    return out, h


def simple_rnn(inputs, h0, kernel, recurrent_kernel, bias, mask=None, go_backwards=False, input_dropout=None,
               recurrent_dropout=None):
    """Runs a fully connected tanh RNN, h_new = tanh(x K + h R + b), over a whole sequence.

    inputs (B, T, F); h0 (B, U) or None (zeros); kernel (F, U); recurrent_kernel (U, U); bias (U,)
    or None. Returns (outputs (B, T, U) in processing order, last h (B, U))."""
    op = "simple_rnn"
    x, (h0,), K, R, bias, mask, (dx_m, dr_m), (B, T, F, U) = _prepare(
        op, 1, inputs, (("h0", h0),), kernel, recurrent_kernel, bias, mask, input_dropout, recurrent_dropout)
    cdt, (x, K, R, h0, bias, dx_m, dr_m) = _compute_dtype(x, K, R, h0, bias, dx_m, dr_m)
    dev = x.device
    k = dev.kernels
    h_init = _zeros_state(h0, B, U, dev)
    grad = needs_grad(*(t for t in (x, h0, K, R, bias) if t is not None))
    out, h = empty((B, T, U), cdt, dev), empty((B, U), cdt, dev)
    gates = empty((B, T, U), _F32, dev)
    back = bool(go_backwards)
    ob = out._buf
    k.simple_rnn_forward(x._buf, h_init._buf, K._buf, R._buf, _buf(bias), _buf(mask), _buf(dx_m), _buf(dr_m), B, T,
                         F, U, back, out._buf, h._buf, gates._buf)
    if grad:
        def backward(grads, n, acc):
            g_out, g_h = grads
            res = [empty(x.shape, x.dtype, dev) if n[0] else None, _maybe(n[1], (B, U), dev), None, None, None]
            keep = _deferred(n, 2, res, x, dx_m, dev, B, T, F, U, U, False)
            bits = _weight_grads(res, n, acc, 2, (K.shape, R.shape, bias.shape if bias is not None else ()), dev,
                                 bias_only=keep is not None)
            wk, wr = (None, None) if keep else (res[2], res[3])
            dg, _, hp = keep or (None, None, None)
            k.simple_rnn_backward(x._buf, h_init._buf, K._buf, R._buf, _buf(mask), _buf(dx_m), _buf(dr_m), B, T, F, U,
                                  back, ob, gates._buf, _buf(g_out), _buf(g_h), _buf(res[0]), _buf(res[1]), _buf(wk),
                                  _buf(wr), _buf(res[4]), bits, _buf(dg), None, _buf(hp))
            return tuple(res)
        _record_multi((out, h), (x, h0, K, R, bias), backward, accumulates=True)
    return out, h
