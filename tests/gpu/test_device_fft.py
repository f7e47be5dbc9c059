"""The Fourier transforms (fft / fft2 / ifft2 / rfft / irfft / stft / istft; the fft, rfft and irfft
kernels, csrc/cuda/fft.cu on the GPU) on a device under test (tests/gpu/conftest.py) against cpu:0
and numpy.fft: powers of two, mixed radices (3, 5, 7, 11, 13), lengths with a large prime factor
(Bluestein), length 1, batches, axes other than the last (inner > 1), the inverse flag and scales,
real inputs (no imaginary part), cropping and zero-padding, empty batches, NaNs, gradients, and the
kernels' argument errors. Both devices compute in double precision from float32 inputs, so their
results agree to float32 rounding."""
import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.backend.tensor import empty

R = np.random.default_rng(23)


def _f(*shape):
    return R.normal(size=shape).astype(np.float32)


def _cat(pair):
    re, im = pair
    return ops.concatenate([re, im * 2.0], axis=-1)


# name -> (function of tensors, inputs, numpy's answer or None)
CASES = {
    "fft_pow2_4": (lambda re, im: _cat(ops.fft((re, im))), [_f(3, 4), _f(3, 4)]),
    "fft_pow2_32": (lambda re, im: _cat(ops.fft((re, im))), [_f(2, 32), _f(2, 32)]),
    "fft_pow2_256": (lambda re, im: _cat(ops.fft((re, im))), [_f(1, 256), _f(1, 256)]),
    "fft_len1": (lambda re, im: _cat(ops.fft((re, im))), [_f(3, 1), _f(3, 1)]),
    "fft_len2": (lambda re, im: _cat(ops.fft((re, im))), [_f(2, 2), _f(2, 2)]),
    "fft_radix3_5": (lambda re, im: _cat(ops.fft((re, im))), [_f(2, 15), _f(2, 15)]),
    "fft_radix_mixed_60": (lambda re, im: _cat(ops.fft((re, im))), [_f(2, 60), _f(2, 60)]),
    "fft_radix7_11_13": (lambda re, im: _cat(ops.fft((re, im))), [_f(1, 143), _f(1, 143)]),
    "fft_radix7_batch": (lambda re, im: _cat(ops.fft((re, im))), [_f(2, 3, 7), _f(2, 3, 7)]),
    "fft_bluestein_17": (lambda re, im: _cat(ops.fft((re, im))), [_f(3, 17), _f(3, 17)]),
    "fft_bluestein_34": (lambda re, im: _cat(ops.fft((re, im))), [_f(2, 34), _f(2, 34)]),
    "fft_bluestein_97": (lambda re, im: _cat(ops.fft((re, im))), [_f(1, 97), _f(1, 97)]),
    "fft_many_rows": (lambda re, im: _cat(ops.fft((re, im))), [_f(300, 6), _f(300, 6)]),
    "fft_real_part_only": (lambda re, im: ops.fft((re, im))[0], [_f(2, 12), _f(2, 12)]),
    "fft_imag_part_only": (lambda re, im: ops.fft((re, im))[1], [_f(2, 19), _f(2, 19)]),
    "fft2_square": (lambda re, im: _cat(ops.fft2((re, im))), [_f(2, 8, 8), _f(2, 8, 8)]),
    "fft2_odd": (lambda re, im: _cat(ops.fft2((re, im))), [_f(2, 5, 9), _f(2, 5, 9)]),
    "fft2_bluestein": (lambda re, im: _cat(ops.fft2((re, im))), [_f(17, 6), _f(17, 6)]),
    "ifft2_odd": (lambda re, im: _cat(ops.ifft2((re, im))), [_f(3, 6, 7), _f(3, 6, 7)]),
    "ifft2_bluestein": (lambda re, im: _cat(ops.ifft2((re, im))), [_f(2, 3, 23), _f(2, 3, 23)]),
    "fft2_ifft2_roundtrip": (lambda re, im: _cat(ops.ifft2(ops.fft2((re, im)))), [_f(4, 10), _f(4, 10)]),
    "rfft_even": (lambda x: _cat(ops.rfft(x)), [_f(3, 16)]),
    "rfft_odd": (lambda x: _cat(ops.rfft(x)), [_f(3, 21)]),
    "rfft_len1": (lambda x: _cat(ops.rfft(x)), [_f(4, 1)]),
    "rfft_bluestein": (lambda x: _cat(ops.rfft(x)), [_f(2, 3, 37)]),
    "rfft_pad": (lambda x: _cat(ops.rfft(x, fft_length=16)), [_f(3, 11)]),
    "rfft_crop": (lambda x: _cat(ops.rfft(x, fft_length=10)), [_f(3, 13)]),
    "rfft_crop_bluestein": (lambda x: _cat(ops.rfft(x, fft_length=19)), [_f(2, 25)]),
    "rfft_length1": (lambda x: _cat(ops.rfft(x, fft_length=1)), [_f(2, 5)]),
    "irfft_default": (lambda re, im: ops.irfft((re, im)), [_f(3, 9), _f(3, 9)]),
    "irfft_odd_length": (lambda re, im: ops.irfft((re, im), fft_length=15), [_f(2, 8), _f(2, 8)]),
    "irfft_pad_bins": (lambda re, im: ops.irfft((re, im), fft_length=24), [_f(2, 5), _f(2, 5)]),
    "irfft_crop_bins": (lambda re, im: ops.irfft((re, im), fft_length=8), [_f(2, 9), _f(2, 9)]),
    "irfft_bluestein_even": (lambda re, im: ops.irfft((re, im), fft_length=34), [_f(2, 18), _f(2, 18)]),
    "irfft_bluestein_odd": (lambda re, im: ops.irfft((re, im), fft_length=31), [_f(3, 16), _f(3, 16)]),
    "irfft_length1": (lambda re, im: ops.irfft((re, im), fft_length=1), [_f(2, 3), _f(2, 3)]),
    "irfft_length2": (lambda re, im: ops.irfft((re, im), fft_length=2), [_f(2, 2), _f(2, 2)]),
    "rfft_irfft_roundtrip": (lambda x: ops.irfft(ops.rfft(x), fft_length=18), [_f(2, 18)]),
    "stft_odd_length": (lambda x: _cat(ops.stft(x, 9, 5, 11, window="hamming")), [_f(2, 40)]),
    "istft_bluestein": (lambda x: ops.istft(ops.stft(x, 17, 6, 17), 17, 6, 17), [_f(1, 60)]),
}

# numpy.fft's answers (float64) for the kernels' own conventions.
_NUMPY = {
    "fft_bluestein_97": lambda re, im: np.fft.fft(re + 1j * im),
    "fft_radix7_11_13": lambda re, im: np.fft.fft(re + 1j * im),
    "fft_pow2_256": lambda re, im: np.fft.fft(re + 1j * im),
    "fft2_odd": lambda re, im: np.fft.fft2(re + 1j * im),
    "ifft2_bluestein": lambda re, im: np.fft.ifft2(re + 1j * im),
    "rfft_crop_bluestein": lambda x: np.fft.rfft(x, n=19),
    "rfft_pad": lambda x: np.fft.rfft(x, n=16),
    "irfft_bluestein_odd": lambda re, im: np.fft.irfft(re + 1j * im, n=31),
    "irfft_crop_bins": lambda re, im: np.fft.irfft(re + 1j * im, n=8),
}


def _run(fn, inputs, device, grad):
    with lamina.device(device):
        ts = [lamina.Variable(x) if grad else lamina.convert_to_tensor(x) for x in inputs]
        if not grad:
            return fn(*ts).numpy()
        with lamina.GradientTape() as tape:
            out = fn(*ts)
            w = lamina.convert_to_tensor(np.linspace(-1, 1, int(np.prod(out.shape)), dtype=np.float32)
                                         .reshape(out.shape))
            loss = ops.sum(out * w)
        return [g.numpy() for g in tape.gradient(loss, ts)]


# stft / istft also go through other kernels (the window's cos among them), computed in float32
_LOOSE = ("stft_odd_length", "istft_bluestein")


def _close(got, want, rtol=1e-6, atol=4e-7):
    """Equal to float32 rounding: a few units in the last place, of the largest value for the
    values that cancel to near zero (a chain of transforms, as fft2's, rounds in between)."""
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(1.0, float(np.abs(want).max(initial=0))))


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_cpu(name, dev):
    fn, inputs = CASES[name]
    want = _run(fn, inputs, "cpu:0", grad=False)
    tol = dict(rtol=2e-5, atol=2e-6) if name in _LOOSE else {}
    _close(_run(fn, inputs, dev, grad=False), want, **tol)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_cpu(name, dev):
    fn, inputs = CASES[name]
    want = _run(fn, inputs, "cpu:0", grad=True)
    got = _run(fn, inputs, dev, grad=True)
    assert len(got) == len(want)
    tol = dict(rtol=2e-5, atol=2e-6) if name in _LOOSE else {}
    for g, w in zip(got, want):
        _close(g, w, **tol)


@pytest.mark.parametrize("name", sorted(_NUMPY))
def test_forward_matches_numpy(name, dev):
    fn, inputs = CASES[name]
    ref = _NUMPY[name](*[x.astype(np.float64) for x in inputs])
    got = _run(fn, inputs, dev, grad=False)
    if np.iscomplexobj(ref):
        ref = np.concatenate([ref.real, ref.imag * 2.0], axis=-1)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(ref).max()))


# ---- the kernels called directly: options the ops do not reach, edge cases and errors ----------

def _device(d):
    return lamina.get_device(d) if isinstance(d, str) else d


def _fft_kernel(device, xr, xi, outer, n, inner, inverse, scale):
    d = _device(device)
    with lamina.device(d):
        tr = lamina.convert_to_tensor(xr)
        ti = None if xi is None else lamina.convert_to_tensor(xi)
        out_r, out_i = empty(xr.shape, "float32", d), empty(xr.shape, "float32", d)
        d.kernels.fft(tr._buf, None if ti is None else ti._buf, outer, n, inner, inverse, scale, out_r._buf,
                      out_i._buf)
        return out_r.numpy(), out_i.numpy()


def _rfft_kernel(device, x, fft_length, scale):
    d = _device(device)
    outer, n_in = x.shape
    h = fft_length // 2 + 1
    with lamina.device(d):
        t = lamina.convert_to_tensor(x)
        out_r, out_i = empty((outer, h), "float32", d), empty((outer, h), "float32", d)
        d.kernels.rfft(t._buf, outer, n_in, fft_length, scale, out_r._buf, out_i._buf)
        return out_r.numpy(), out_i.numpy()


def _irfft_kernel(device, xr, xi, fft_length, scale):
    d = _device(device)
    outer, m_in = xr.shape
    with lamina.device(d):
        tr, ti = lamina.convert_to_tensor(xr), lamina.convert_to_tensor(xi)
        out = empty((outer, fft_length), "float32", d)
        d.kernels.irfft(tr._buf, ti._buf, outer, m_in, fft_length, scale, out._buf)
        return out.numpy()


@pytest.mark.parametrize("n", [1, 8, 12, 13, 29])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("real", [False, True])
def test_fft_kernel_middle_axis(n, inverse, real, dev):
    """The transform along the middle axis of (outer, n, inner), forward or inverse (the
    conjugate's), with a scale, from a complex or a real (x_imag None) input."""
    xr, xi = _f(2, n, 3), None if real else _f(2, n, 3)
    args = (2, n, 3, inverse, 0.75)
    want = _fft_kernel("cpu:0", xr, xi, *args)
    got = _fft_kernel(dev, xr, xi, *args)
    for g, w in zip(got, want):
        _close(g, w)
    z = xr.astype(np.float64) + (0 if real else 1j * xi.astype(np.float64))
    ref = 0.75 * (np.fft.ifft(z, axis=1) * n if inverse else np.fft.fft(z, axis=1))
    np.testing.assert_allclose(got[0], ref.real, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(got[1], ref.imag, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("fft_length", [1, 2, 6, 7, 16, 17, 40])
def test_rfft_kernel_lengths(fft_length, dev):
    x = _f(3, 9)  # cropped below 9, zero-padded above
    want = _rfft_kernel("cpu:0", x, fft_length, -1.5)
    got = _rfft_kernel(dev, x, fft_length, -1.5)
    for g, w in zip(got, want):
        _close(g, w)
    ref = -1.5 * np.fft.rfft(x.astype(np.float64), n=fft_length)
    np.testing.assert_allclose(got[0] + 1j * got[1], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("fft_length", [1, 2, 3, 8, 9, 17, 18, 40])
def test_irfft_kernel_lengths(fft_length, dev):
    """Bins cropped or zero-padded to fft_length // 2 + 1, the imaginary parts of the zero and
    Nyquist bins ignored."""
    xr, xi = _f(2, 6), _f(2, 6)
    want = _irfft_kernel("cpu:0", xr, xi, fft_length, 0.5)
    got = _irfft_kernel(dev, xr, xi, fft_length, 0.5)
    _close(got, want)
    ref = 0.5 * fft_length * np.fft.irfft(xr.astype(np.float64) + 1j * xi.astype(np.float64), n=fft_length)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(ref).max()))


def test_empty_inputs(dev):
    """No rows (and rows of no samples or bins): nothing to transform, no error."""
    for d in ("cpu:0", dev):
        r, i = _fft_kernel(d, _f(0, 5, 2), _f(0, 5, 2), 0, 5, 2, False, 1.0)
        assert r.shape == (0, 5, 2) and i.shape == (0, 5, 2)
        r, i = _fft_kernel(d, _f(2, 17, 0), None, 2, 17, 0, True, 1.0)
        assert r.shape == (2, 17, 0)
    _close(np.concatenate(_rfft_kernel(dev, _f(3, 0), 6, 1.0)), np.zeros((6, 4), np.float32))
    _close(_irfft_kernel(dev, _f(2, 0), _f(2, 0), 5, 1.0), np.zeros((2, 5), np.float32))
    with lamina.device(dev):
        re, im = ops.fft((np.zeros((0, 6), np.float32), np.zeros((0, 6), np.float32)))
        assert re.shape == (0, 6) and im.shape == (0, 6)
        assert ops.rfft(np.zeros((0, 7), np.float32))[0].shape == (0, 4)
        assert ops.irfft((np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32))).shape == (0, 6)


@pytest.mark.parametrize("n", [8, 17])
def test_nan_spreads_over_its_row(n, dev):
    xr, xi = _f(3, n), _f(3, n)
    xr[1, 2] = np.nan
    want = _fft_kernel("cpu:0", xr, xi, 3, n, 1, False, 1.0)
    got = _fft_kernel(dev, xr, xi, 3, n, 1, False, 1.0)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        assert np.isnan(g[1]).all() and not np.isnan(g[[0, 2]]).any()
        _close(g[[0, 2]], w[[0, 2]])


def test_many_rows(dev):
    """More rows than blocks in one grid: the blocks stride over the rows."""
    xr, xi = _f(66000, 4), _f(66000, 4)
    want = _fft_kernel("cpu:0", xr, xi, 66000, 4, 1, False, 1.0)
    got = _fft_kernel(dev, xr, xi, 66000, 4, 1, False, 1.0)
    for g, w in zip(got, want):
        _close(g, w)


def test_kernel_argument_errors(dev):
    """The kernels' checks (csrc/fft_checks.h) raise the CPU's errors on the device."""
    d = _device(dev)
    with lamina.device(d):
        x = lamina.convert_to_tensor(_f(2, 6))
        xi = lamina.convert_to_tensor(np.zeros((2, 6), np.int32))
        o1, o2 = empty((2, 6), "float32", d), empty((2, 6), "float32", d)
        small = empty((2, 3), "float32", d)
        k = d.kernels
        with pytest.raises(ValueError, match="fft: the transform length must be at least 1, received 0"):
            k.fft(x._buf, None, 12, 0, 1, False, 1.0, o1._buf, o2._buf)
        with pytest.raises(ValueError, match="fft: expected non-negative sizes, received -2, 6, 1"):
            k.fft(x._buf, None, -2, 6, 1, False, 1.0, o1._buf, o2._buf)
        with pytest.raises(TypeError, match="fft: expected x_imag of dtype float32, received int32"):
            k.fft(x._buf, xi._buf, 2, 6, 1, False, 1.0, o1._buf, o2._buf)
        with pytest.raises(ValueError, match="fft: out_imag holds 6 elements, expected 12"):
            k.fft(x._buf, None, 2, 6, 1, False, 1.0, o1._buf, small._buf)
        with pytest.raises(ValueError, match="rfft: fft_length must be at least 1, received 0"):
            k.rfft(x._buf, 2, 6, 0, 1.0, o1._buf, o2._buf)
        with pytest.raises(ValueError, match="rfft: out_real holds 12 elements, expected 8"):
            k.rfft(x._buf, 2, 6, 6, 1.0, o1._buf, o2._buf)
        with pytest.raises(ValueError, match="irfft: fft_length must be at least 1, received -3"):
            k.irfft(x._buf, x._buf, 2, 6, -3, 1.0, o1._buf)
        with pytest.raises(TypeError, match="irfft: expected x_imag of dtype float32, received int32"):
            k.irfft(x._buf, xi._buf, 2, 6, 10, 1.0, o1._buf)
        with pytest.raises(ValueError, match="irfft: out holds 12 elements, expected 20"):
            k.irfft(x._buf, x._buf, 2, 6, 10, 1.0, o1._buf)
        # the device still works after the errors
        r, i = ops.fft((x, x))
        np.testing.assert_allclose(r.numpy(), np.fft.fft(_np(x) * (1 + 1j)).real, rtol=1e-5, atol=1e-5)


def _np(t):
    return t.numpy().astype(np.float64)
