"""backend/fft.py against numpy.fft and scipy.signal: fft, fft2, ifft2, rfft, irfft of many
lengths (powers of two, mixed radix, primes through Bluestein), stft / istft as Keras's numpy
backend computes them, gradients (the adjoint transforms) against finite differences, errors."""
import numpy as np
import pytest
import scipy.signal

import lamina
from lamina import ops
from opcheck import check_grad

T = lamina.convert_to_tensor
LENGTHS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16, 17, 30, 49, 64, 97, 100, 121, 128, 210, 1000, 1009, 4097]


def cplx(rng, shape):
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


def assert_complex_close(got, want, rtol=2e-6):
    g = got[0].numpy().astype(np.float64) + 1j * got[1].numpy()
    scale = max(np.abs(want).max(), 1e-30) if want.size else 1.0
    assert g.shape == want.shape
    np.testing.assert_allclose(g, want, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("n", LENGTHS)
def test_fft_any_length(n, rng):
    re, im = cplx(rng, (3, n))
    want = np.fft.fft(re.astype(np.float64) + 1j * im)
    assert_complex_close(ops.fft((re, im)), want)


@pytest.mark.parametrize("shape", [(8,), (2, 3, 10), (4, 1)])
def test_fft_batched(shape, rng):
    re, im = cplx(rng, shape)
    assert_complex_close(ops.fft((T(re), T(im))), np.fft.fft(re.astype(np.float64) + 1j * im))


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (2, 6, 7), (1, 17), (16, 1), (2, 2, 9, 12)])
def test_fft2_and_ifft2(shape, rng):
    re, im = cplx(rng, shape)
    z = re.astype(np.float64) + 1j * im
    assert_complex_close(ops.fft2((re, im)), np.fft.fft2(z))
    assert_complex_close(ops.ifft2((re, im)), np.fft.ifft2(z))
    back = ops.ifft2(ops.fft2((re, im)))
    np.testing.assert_allclose(back[0].numpy(), re, atol=2e-6)
    np.testing.assert_allclose(back[1].numpy(), im, atol=2e-6)


@pytest.mark.parametrize("n", LENGTHS)
def test_rfft_irfft_any_length(n, rng):
    x = rng.standard_normal((2, n)).astype(np.float32)
    want = np.fft.rfft(x.astype(np.float64))
    assert_complex_close(ops.rfft(x), want)
    re, im = want.real.astype(np.float32), want.imag.astype(np.float32)
    got = ops.irfft((re, im), n).numpy()
    np.testing.assert_allclose(got, np.fft.irfft(re.astype(np.float64) + 1j * im, n), atol=2e-6)
    np.testing.assert_allclose(got, x, atol=2e-5)


@pytest.mark.parametrize("n_in,fft_length", [(8, 12), (12, 8), (7, 7), (10, 5), (5, 16)])
def test_rfft_crops_and_pads(n_in, fft_length, rng):
    x = rng.standard_normal((3, n_in)).astype(np.float32)
    got = ops.rfft(x, fft_length)
    assert got[0].shape == (3, fft_length // 2 + 1)
    assert_complex_close(got, np.fft.rfft(x.astype(np.float64), fft_length))


@pytest.mark.parametrize("bins,fft_length", [(5, None), (5, 8), (5, 9), (5, 4), (3, 10), (9, 6), (2, 1)])
def test_irfft_crops_pads_and_ignores_edge_imaginary_parts(bins, fft_length, rng):
    re, im = cplx(rng, (2, bins))
    want = np.fft.irfft(re.astype(np.float64) + 1j * im, fft_length)
    got = ops.irfft((re, im), fft_length).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=3e-6)


def test_fft_special_values():
    re = np.array([1.0, np.inf, 0.0, 0.0, 0.0], np.float32)
    im = np.zeros(5, np.float32)
    r, i = ops.fft((re, im))
    with np.errstate(all="ignore"):
        want = np.fft.fft(re.astype(np.float64))
    # an infinite input spreads to every frequency (as inf or NaN: which one is not specified)
    assert not np.any(np.isfinite(r.numpy()) & np.isfinite(i.numpy()))
    assert not np.any(np.isfinite(want))
    x = np.array([0.0, np.nan, 1.0], np.float32)
    assert np.all(np.isnan(ops.rfft(x)[0].numpy()))


# ---- stft / istft: Keras's numpy backend (scipy.signal) as the oracle --------------------------------

def stft_ref(x, sequence_length, sequence_stride, fft_length, window="hann", center=True):
    if center:
        pad_width = [(0, 0)] * (x.ndim - 1) + [(fft_length // 2, fft_length // 2)]
        x = np.pad(x, pad_width, mode="reflect")
    l_pad = (fft_length - sequence_length) // 2
    r_pad = fft_length - sequence_length - l_pad
    if window is not None:
        win = scipy.signal.get_window(window, sequence_length) if isinstance(window, str) else np.asarray(window)
        win = np.pad(win, [[l_pad, r_pad]])
    else:
        win = np.ones(fft_length)
    z = scipy.signal.stft(x, fs=1.0, window=win, nperseg=fft_length, noverlap=fft_length - sequence_stride,
                          nfft=fft_length, boundary=None, padded=False)[-1]
    z = z / np.sqrt(1.0 / win.sum() ** 2)
    return np.swapaxes(z, -2, -1)


def istft_ref(z, sequence_length, sequence_stride, fft_length, length=None, window="hann", center=True):
    expected_output_len = fft_length + sequence_stride * (z.shape[-2] - 1)
    l_pad = (fft_length - sequence_length) // 2
    r_pad = fft_length - sequence_length - l_pad
    if window is not None:
        win = scipy.signal.get_window(window, sequence_length) if isinstance(window, str) else np.asarray(window)
        win = np.pad(win, [[l_pad, r_pad]])
    else:
        win = np.ones(fft_length)
    with np.testing.suppress_warnings() as sup:
        sup.filter(UserWarning)
        x = scipy.signal.istft(z, fs=1.0, window=win, nperseg=fft_length, noverlap=fft_length - sequence_stride,
                               nfft=fft_length, boundary=False, time_axis=-2, freq_axis=-1)[-1]
    x = x / win.sum() if window is not None else x / sequence_stride
    start = 0 if center is False else fft_length // 2
    if length is not None:
        end = start + length
    elif center is True:
        end = -(fft_length // 2)
    else:
        end = expected_output_len
    return x[..., start:end]


STFT_CASES = [  # sequence_length, sequence_stride, fft_length, window, center
    (16, 4, 16, "hann", True),
    (16, 8, 32, "hamming", True),
    (15, 5, 15, "hann", False),
    (10, 3, 12, None, True),
    (12, 6, 12, None, False),
    (9, 4, 16, "hann", False),
]


@pytest.mark.parametrize("case", STFT_CASES)
@pytest.mark.parametrize("shape", [(64,), (2, 3, 50)])
def test_stft_matches_keras_numpy_backend(case, shape, rng):
    sl, stride, fl, window, center = case
    x = rng.standard_normal(shape).astype(np.float32)
    want = stft_ref(x.astype(np.float64), sl, stride, fl, window, center)
    got = ops.stft(x, sl, stride, fl, window=window, center=center)
    assert_complex_close(got, want, 3e-6)


def test_stft_with_a_window_tensor(rng):
    x = rng.standard_normal((40,)).astype(np.float32)
    w = rng.uniform(0.2, 1.0, 10).astype(np.float32)
    want = stft_ref(x.astype(np.float64), 10, 3, 14, w.astype(np.float64), True)
    assert_complex_close(ops.stft(x, 10, 3, 14, window=T(w)), want, 3e-6)


@pytest.mark.parametrize("case", STFT_CASES)
def test_istft_matches_keras_numpy_backend_and_inverts_stft(case, rng):
    sl, stride, fl, window, center = case
    x = rng.standard_normal((2, 60)).astype(np.float32)
    z = stft_ref(x.astype(np.float64), sl, stride, fl, window, center)
    zr, zi = z.real.astype(np.float32), z.imag.astype(np.float32)
    want = istft_ref(zr.astype(np.float64) + 1j * zi, sl, stride, fl, None, window, center)
    got = ops.istft((zr, zi), sl, stride, fl, window=window, center=center).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
    for length in (10, want.shape[-1]):
        w = istft_ref(zr.astype(np.float64) + 1j * zi, sl, stride, fl, length, window, center)
        np.testing.assert_allclose(ops.istft((zr, zi), sl, stride, fl, length=length, window=window,
                                             center=center).numpy(), w, atol=2e-5, rtol=1e-5)


def test_istft_round_trip_and_length_padding(rng):
    x = rng.standard_normal((3, 80)).astype(np.float32)
    z = ops.stft(x, 16, 4, 16)
    y = ops.istft(z, 16, 4, 16, length=80).numpy()
    np.testing.assert_allclose(y, x, atol=2e-5)
    longer = ops.istft(z, 16, 4, 16, length=100).numpy()   # beyond the signal: zeros
    assert longer.shape == (3, 100)
    np.testing.assert_allclose(longer[:, :80], x, atol=2e-5)


def test_stft_errors():
    x = np.ones(32, np.float32)
    with pytest.raises(ValueError, match=r"`sequence_stride` must be a positive integer.*sequence_stride=0"):
        ops.stft(x, 8, 0, 8)
    with pytest.raises(ValueError, match=r"`fft_length` must equal or larger than `sequence_length`"):
        ops.stft(x, 16, 4, 8)
    with pytest.raises(ValueError, match=r'must be one of "hann", "hamming".*blackman'):
        ops.stft(x, 8, 4, 8, window="blackman")
    with pytest.raises(ValueError, match=r"shape of `window` must be equal to \[sequence_length\] = \[8\].*\(5,\)"):
        ops.stft(x, 8, 4, 8, window=np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"stft: the signal \(6 samples\) is shorter than fft_length=8"):
        ops.stft(np.ones(6, np.float32), 8, 4, 8, center=False)
    with pytest.raises(ValueError, match=r"istft: input should have rank >= 2"):
        ops.istft((np.ones(5, np.float32), np.ones(5, np.float32)), 8, 4, 8)


def test_fft_errors():
    with pytest.raises(ValueError, match=r"fft: input `x` should be a tuple of two tensors"):
        ops.fft(np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"fft: the real and imaginary parts should have the same shape.*\(4,\).*\(5,\)"):
        ops.fft((np.ones(4, np.float32), np.ones(5, np.float32)))
    with pytest.raises(ValueError, match=r"fft2: input should have rank >= 2, received input.shape = \(4,\)"):
        ops.fft2((np.ones(4, np.float32), np.ones(4, np.float32)))
    with pytest.raises(ValueError, match=r"fft: cannot transform an axis of length 0"):
        ops.fft((np.ones((2, 0), np.float32), np.ones((2, 0), np.float32)))
    with pytest.raises(ValueError, match=r"irfft: cannot infer fft_length from 1 frequency bin"):
        ops.irfft((np.ones(1, np.float32), np.ones(1, np.float32)))
    with pytest.raises(ValueError, match=r"rfft: `fft_length` must be an integer >= 1, received fft_length=0"):
        ops.rfft(np.ones(4, np.float32), 0)
    with pytest.raises(TypeError, match=r"rfft: fft_length must be an integer, received 4.0"):
        ops.rfft(np.ones(4, np.float32), 4.0)


# ---- gradients: the adjoint transforms ---------------------------------------------------------------

def _pair_ref(f):
    """A numpy reference on (real, imag) pairs, returning (real, imag)."""
    def ref(re, im, **kw):
        z = f(re + 1j * im, **kw)
        return z.real, z.imag
    return ref


@pytest.mark.parametrize("n", [4, 6, 7, 17])
def test_fft_gradients(n, rng):
    re, im = rng.standard_normal((2, n)), rng.standard_normal((2, n))
    check_grad(lambda a, b: ops.fft((a, b)), _pair_ref(np.fft.fft), [re, im])


@pytest.mark.parametrize("shape", [(3, 4), (2, 5, 3)])
def test_fft2_ifft2_gradients(shape, rng):
    re, im = rng.standard_normal(shape), rng.standard_normal(shape)
    check_grad(lambda a, b: ops.fft2((a, b)), _pair_ref(np.fft.fft2), [re, im])
    check_grad(lambda a, b: ops.ifft2((a, b)), _pair_ref(np.fft.ifft2), [re, im])


def test_fft_gradient_of_one_output(rng):
    re, im = rng.standard_normal((5,)), rng.standard_normal((5,))
    check_grad(lambda a, b: ops.fft((a, b))[1], lambda a, b: np.fft.fft(a + 1j * b).imag, [re, im])


@pytest.mark.parametrize("n_in,fft_length", [(8, None), (7, None), (8, 12), (12, 8), (9, 9), (6, 11)])
def test_rfft_gradients(n_in, fft_length, rng):
    x = rng.standard_normal((2, n_in))

    def ref(a):
        z = np.fft.rfft(a, fft_length)
        return z.real, z.imag

    check_grad(lambda a: ops.rfft(a, fft_length), ref, [x])


@pytest.mark.parametrize("bins,fft_length", [(5, None), (5, 9), (5, 6), (4, 12), (3, 5)])
def test_irfft_gradients(bins, fft_length, rng):
    re, im = rng.standard_normal((2, bins)), rng.standard_normal((2, bins))
    check_grad(lambda a, b: ops.irfft((a, b), fft_length), lambda a, b: np.fft.irfft(a + 1j * b, fft_length),
               [re, im])


@pytest.mark.parametrize("center", [True, False])
def test_stft_gradients(center, rng):
    x = rng.standard_normal((2, 30))

    def ref(a):
        z = stft_ref(a, 8, 3, 10, "hann", center)
        return z.real, z.imag

    check_grad(lambda a: ops.stft(a, 8, 3, 10, center=center), ref, [x])


def test_istft_gradients(rng):
    z = stft_ref(rng.standard_normal((40,)), 8, 4, 8, "hann", True)
    check_grad(lambda a, b: ops.istft((a, b), 8, 4, 8, length=40),
               lambda a, b: istft_ref(a + 1j * b, 8, 4, 8, 40), [z.real, z.imag])
