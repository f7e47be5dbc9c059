"""Fourier transforms under keras.ops's names: fft, fft2, ifft2, rfft, irfft, stft, istft.

Complex values are Keras's (real, imag) pairs of float32 tensors of one shape. The transforms
are kernels of any length (csrc/cpu/fft.cpp: mixed radix, Bluestein for large prime factors,
double precision inside) along the last axis (the last two for fft2 / ifft2), with numpy.fft's
conventions: forward transforms unnormalised, inverse ones scaled by 1 / n. Gradients are the
adjoint transforms; stft and istft are composed from framing, windows, rfft / irfft and
overlap-add, as Keras's numpy backend computes them through scipy.signal.
"""
import builtins
import math as _pymath

import numpy as np

from . import dtypes, validation
from .autodiff import needs_grad, record
from .device import device as _device_scope
from .manipulation import _copy, _strides, pad
from .math import (_as_tensor, add, broadcast_to, cast, check_same_device, cos, divide, greater, multiply, ones,
                   square, where, zeros)
from .rnn import _record_multi
from .tensor import convert_to_tensor, empty

__all__ = ["fft", "fft2", "ifft2", "rfft", "irfft", "stft", "istft"]

_F32 = dtypes.FLOAT32


# ---- argument checks ------------------------------------------------------------------------------

def _real(x, op, min_rank=1):
    x = _as_tensor(x, op)
    if x.dtype != _F32:
        x = cast(x, _F32)
    if x.ndim < min_rank:
        raise ValueError(f"{op}: input should have rank >= {min_rank}, received input.shape = {x.shape}")
    return x


def _complex_pair(x, op, min_rank=1):
    """(real, imag) float32 tensors of one shape on one device."""
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise ValueError(f"{op}: input `x` should be a tuple of two tensors - real and imaginary; received "
                         f"{type(x).__name__} {x!r:.80}")
    re, im = _as_tensor(x[0], op), _as_tensor(x[1], op)
    if re.shape != im.shape:
        raise ValueError(f"{op}: the real and imaginary parts should have the same shape, received "
                         f"x[0].shape = {re.shape} and x[1].shape = {im.shape}")
    check_same_device(op, re, im)
    re = re if re.dtype == _F32 else cast(re, _F32)
    im = im if im.dtype == _F32 else cast(im, _F32)
    if re.ndim < min_rank:
        raise ValueError(f"{op}: input should have rank >= {min_rank}, received input.shape = {re.shape}")
    return re, im


def _length(value, op, arg, minimum=1):
    v = validation.integer(value, op, arg)
    if v < minimum:
        raise ValueError(f"{op}: `{arg}` must be an integer >= {minimum}, received {arg}={v}")
    return v


def _axis_length(x, axis, op):
    n = x.shape[axis]
    if n == 0:
        raise ValueError(f"{op}: cannot transform an axis of length 0 (input shape {x.shape})")
    return n


# ---- complex-to-complex ---------------------------------------------------------------------------

def _c2c_raw(re, im, axis, inverse, scale):
    ax = axis % re.ndim
    outer = _pymath.prod(re.shape[:ax])
    inner = _pymath.prod(re.shape[ax + 1:])
    out_r = empty(re.shape, _F32, re.device)
    out_i = empty(re.shape, _F32, re.device)
    re.device.kernels.fft(re._buf, None if im is None else im._buf, outer, re.shape[ax], inner, bool(inverse),
                          float(scale), out_r._buf, out_i._buf)
    return out_r, out_i


def _c2c(re, im, axis, inverse, scale):
    """scale * (inverse) DFT along `axis`, differentiable: the adjoint of scale * F is scale * F^H."""
    out_r, out_i = _c2c_raw(re, im, axis, inverse, scale)
    if needs_grad(re, im):
        def bw(grads, need):
            gr, gi = grads
            gr = gr if gr is not None else zeros(re.shape, device=re.device)
            return _c2c_raw(gr, gi, axis, not inverse, scale)
        _record_multi((out_r, out_i), (re, im), bw)
    return out_r, out_i


def fft(x):
    """The DFT along the last axis of a complex tensor given as (real, imag); returns (real, imag)."""
    re, im = _complex_pair(x, "fft")
    _axis_length(re, -1, "fft")
    return _c2c(re, im, -1, False, 1.0)


def fft2(x):
    """The 2-D DFT over the last two axes of a complex tensor given as (real, imag)."""
    re, im = _complex_pair(x, "fft2", 2)
    _axis_length(re, -1, "fft2"), _axis_length(re, -2, "fft2")
    re, im = _c2c(re, im, -1, False, 1.0)
    return _c2c(re, im, -2, False, 1.0)


def ifft2(x):
    """The inverse 2-D DFT (scaled by 1 / (m n)) over the last two axes of (real, imag)."""
    re, im = _complex_pair(x, "ifft2", 2)
    m, n = _axis_length(re, -2, "ifft2"), _axis_length(re, -1, "ifft2")
    re, im = _c2c(re, im, -1, True, 1.0 / n)
    return _c2c(re, im, -2, True, 1.0 / m)


# ---- real transforms ------------------------------------------------------------------------------

def _rfft_raw(x, n, scale=1.0):
    h = n // 2 + 1
    lead = x.shape[:-1]
    out_r = empty(lead + (h,), _F32, x.device)
    out_i = empty(lead + (h,), _F32, x.device)
    x.device.kernels.rfft(x._buf, _pymath.prod(lead), x.shape[-1], n, float(scale), out_r._buf, out_i._buf)
    return out_r, out_i


def _irfft_raw(re, im, n, scale):
    lead = re.shape[:-1]
    out = empty(lead + (n,), _F32, re.device)
    re.device.kernels.irfft(re._buf, im._buf, _pymath.prod(lead), re.shape[-1], n, float(scale), out._buf)
    return out


def _bin_weights(n, device, double_inner):
    """Per-frequency weights of the n // 2 + 1 bins: the zero frequency and (n even) the Nyquist
    one count once, the others twice (double_inner) or half (not double_inner)."""
    h = n // 2 + 1
    w = np.full(h, 2.0 if double_inner else 0.5, np.float32)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return convert_to_tensor(w, device=device)


def _fit_last(t, length):
    """t cropped or zero-padded along its last axis to `length`."""
    cur = t.shape[-1]
    if cur == length:
        return t
    if cur > length:
        return t[..., :length]
    return pad(t, [(0, 0)] * (t.ndim - 1) + [(0, length - cur)])


def rfft(x, fft_length=None):
    """The non-negative frequencies (fft_length // 2 + 1 of them) of the DFT of a real signal along
    the last axis, cropped or zero-padded to fft_length (default: its length); (real, imag)."""
    x = _real(x, "rfft")
    n = x.shape[-1] if fft_length is None else _length(fft_length, "rfft", "fft_length")
    if n == 0:
        raise ValueError(f"rfft: cannot transform an axis of length 0 (input shape {x.shape}); pass fft_length")
    out_r, out_i = _rfft_raw(x, n)
    if needs_grad(x):
        n_in = x.shape[-1]

        def bw(grads, need):
            gr, gi = grads
            w = _bin_weights(n, x.device, double_inner=False)
            gr = zeros(out_r.shape, device=x.device) if gr is None else gr
            gi = zeros(out_r.shape, device=x.device) if gi is None else gi
            # Re(F^H P^T ybar) = n * irfft(ybar with the inner bins halved)
            g = _irfft_raw(multiply(gr, w), multiply(gi, w), n, 1.0)
            return (_fit_last(g, n_in),)
        _record_multi((out_r, out_i), (x,), bw)
    return out_r, out_i


def irfft(x, fft_length=None):
    """The real signal of length fft_length (default 2 * (bins - 1)) whose DFT has the given
    non-negative frequencies (real, imag) along the last axis (cropped or zero-padded to
    fft_length // 2 + 1), as numpy.fft.irfft: scaled by 1 / fft_length, the imaginary parts of
    the zero and Nyquist frequencies ignored."""
    re, im = _complex_pair(x, "irfft")
    m = re.shape[-1]
    if fft_length is None:
        n = 2 * (m - 1)
        if n < 1:
            raise ValueError(f"irfft: cannot infer fft_length from {m} frequency bin(s) (input shape {re.shape}); "
                             "pass fft_length")
    else:
        n = _length(fft_length, "irfft", "fft_length")
    out = _irfft_raw(re, im, n, 1.0 / n)
    if needs_grad(re, im):
        def bw(g, need):
            gr, gi = _rfft_raw(g, n, 1.0 / n)
            w = _bin_weights(n, g.device, double_inner=True)
            return _fit_last(multiply(gr, w), m), _fit_last(multiply(gi, w), m)
        record(out, (re, im), bw)
    return out


# ---- stft / istft ---------------------------------------------------------------------------------

def _frames(x, length, stride):
    """(..., n) -> (..., frames, length): overlapping windows every `stride` samples; the gradient
    adds the frames back where they came from (overlap-add)."""
    n = x.shape[-1]
    count = 1 + (n - length) // stride
    shape = x.shape[:-1] + (count, length)
    view = list(_strides(x.shape)[:-1]) + [stride, 1]
    out = empty(shape, _F32, x.device)
    if out.size:
        _copy(x, 0, view, out, 0, _strides(shape), shape)
    if needs_grad(x):
        record(out, (x,), lambda g, need: (_overlap_add(g, stride, n),))
    return out


def _overlap_add(frames, stride, n=None):
    """(..., frames, length) -> (..., n): the sum of the frames placed every `stride` samples
    (n defaults to length + stride * (frames - 1)); the gradient frames the output gradient."""
    count, length = frames.shape[-2:]
    n = length + stride * (count - 1) if n is None else n
    shape = frames.shape[:-2] + (n,)
    out = zeros(shape, device=frames.device)
    view = list(_strides(shape)[:-1]) + [stride, 1]
    if frames.size:
        _copy(frames, 0, _strides(frames.shape), out, 0, view, frames.shape, accumulate=True)
    if needs_grad(frames):
        record(out, (frames,), lambda g, need: (_frames(g, length, stride)[..., :count, :],))
    return out


def _window(window, sequence_length, fft_length, device, op):
    """The analysis window padded (centred) to fft_length, or ones when window is None."""
    if window is None:
        return ones((fft_length,), device=device)
    if isinstance(window, str):
        if window not in ("hann", "hamming"):
            raise ValueError(f'{op}: if a string is passed to `window`, it must be one of "hann", "hamming"; '
                             f"received window={window!r}")
        from .manipulation import arange
        with _device_scope(device):   # scipy.signal.get_window's periodic windows
            c = cos(multiply(arange(sequence_length, dtype=_F32), 2.0 * _pymath.pi / sequence_length))
        a = 0.5 if window == "hann" else 0.54
        win = add(multiply(c, -(1.0 - a)), a)
    else:
        win = _as_tensor(window, op)
        win = win if win.dtype == _F32 else cast(win, _F32)
        if win.ndim != 1 or win.shape[0] != sequence_length:
            raise ValueError(f"{op}: the shape of `window` must be equal to [sequence_length] = [{sequence_length}]; "
                             f"received window shape {win.shape}")
        if win.device is not device:
            raise ValueError(f"{op}: the window is on {win.device.name} but the input is on {device.name}; move it "
                             f"with window.to('{device.name}')")
    l_pad = (fft_length - sequence_length) // 2
    r_pad = fft_length - sequence_length - l_pad
    return pad(win, [(l_pad, r_pad)]) if l_pad or r_pad else win


def _stft_args(op, sequence_length, sequence_stride, fft_length):
    if isinstance(sequence_stride, bool) or not isinstance(sequence_stride, (int, np.integer)) or sequence_stride <= 0:
        raise ValueError(f"{op}: `sequence_stride` must be a positive integer. Received: "
                         f"sequence_stride={sequence_stride!r}")
    sl = _length(sequence_length, op, "sequence_length")
    fl = _length(fft_length, op, "fft_length")
    if fl < sl:
        raise ValueError(f"{op}: `fft_length` must equal or larger than `sequence_length`. Received: "
                         f"sequence_length={sl}, fft_length={fl}")
    return sl, int(sequence_stride), fl


def stft(x, sequence_length, sequence_stride, fft_length, window="hann", center=True):
    """Short-time Fourier transform along the last axis: frames of fft_length samples every
    sequence_stride (after reflect-padding fft_length // 2 on both sides when center), times the
    window (sequence_length long, zero-padded to fft_length; "hann", "hamming", a tensor or None),
    then rfft. Returns (real, imag) of shape (..., frames, fft_length // 2 + 1)."""
    sl, stride, fl = _stft_args("stft", sequence_length, sequence_stride, fft_length)
    x = _real(x, "stft")
    if center:
        half = fl // 2
        if half > x.shape[-1] - 1:
            raise ValueError(f"stft: center=True reflect-pads {half} samples on each side, which needs a signal "
                             f"longer than {half} samples; received shape {x.shape}")
        if half:
            x = pad(x, [(0, 0)] * (x.ndim - 1) + [(half, half)], mode="reflect")
    if x.shape[-1] < fl:
        raise ValueError(f"stft: the signal ({x.shape[-1]} samples{' after padding' if center else ''}) is shorter "
                         f"than fft_length={fl}; there is no frame to transform")
    frames = _frames(x, fl, stride)
    win = _window(window, sl, fl, x.device, "stft")
    return rfft(multiply(frames, win), fl)


def istft(x, sequence_length, sequence_stride, fft_length, length=None, window="hann", center=True):
    """Inverse of stft: irfft of each frame, times the window, overlap-added and divided by the
    overlap-added squared window where that is above 1e-10 (scipy.signal.istft, as Keras);
    then the centre padding is cut and the result cropped or zero-padded to `length` when given."""
    sl, stride, fl = _stft_args("istft", sequence_length, sequence_stride, fft_length)
    re, im = _complex_pair(x, "istft", 2)
    count = re.shape[-2]
    if count == 0:
        raise ValueError(f"istft: the input has no frames (shape {re.shape})")
    frames = irfft((re, im), fl)
    win = _window(window, sl, fl, re.device, "istft")
    y = _overlap_add(multiply(frames, win), stride)
    total = y.shape[-1]
    norm = _overlap_add(broadcast_to(square(win), (count, fl)), stride)
    ok = greater(norm, 1e-10)
    y = where(ok, divide(y, where(ok, norm, 1.0)), y)
    if window is None:
        y = multiply(y, fl / stride)   # Keras divides scipy's result by the stride, not by the window's sum
    start = fl // 2 if center else 0
    if length is not None:
        length = _length(length, "istft", "length", 0)
        end = start + length
    else:
        end = total - fl // 2 if center else total
    out = y[..., start:builtins.min(end, total)]
    if length is not None and out.shape[-1] < length:
        out = pad(out, [(0, 0)] * (out.ndim - 1) + [(0, length - out.shape[-1])])
    return out

