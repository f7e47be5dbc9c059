"""MelSpectrogram and STFTSpectrogram (layers/preprocessing_audio.py): the layer harness, what a
pure tone gives, outputs equal to Keras's, and argument errors."""
import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.layers.preprocessing_audio import linear_to_mel_weight_matrix
from keras_ref import keras_or_none
from layer_harness import run_layer_test


def _tone(freq, rate, n, batch=1):
    t = np.arange(n) / rate
    return np.tile(np.sin(2 * np.pi * freq * t).astype(np.float32), (batch, 1))


def test_mel_filter_bank():
    m = linear_to_mel_weight_matrix(10, 129, 8000, 125.0, 3800.0)
    assert m.shape == (129, 10) and m.dtype == np.float32
    assert (m[0] == 0).all() and (m >= 0).all() and m.max() <= 1
    peaks = m.argmax(axis=0)
    assert (np.diff(peaks) > 0).all()   # filters in order of frequency
    hz = peaks * 4000 / 128
    assert 125 < hz[0] < hz[-1] < 3800


def test_mel_spectrogram_of_a_tone_peaks_at_its_band():
    rate = 8000
    layer = layers.MelSpectrogram(fft_length=256, sequence_stride=128, sampling_rate=rate, num_mel_bins=20,
                                  power_to_db=False)
    for f in (300.0, 1500.0):
        spec = layer(_tone(f, rate, 4000)).numpy()
        assert spec.shape == (1, 20, 4000 // 128 + 1)
        band = spec[0, :, 5:-5].mean(axis=1).argmax()
        want = linear_to_mel_weight_matrix(20, 129, rate, 20.0, 4000)[int(round(f / rate * 256))].argmax()
        assert abs(int(band) - int(want)) <= 1


def test_mel_spectrogram_decibels_floor_and_reference():
    x = _tone(440.0, 16000, 8000, batch=2)
    x[1] *= 0.01
    db = layers.MelSpectrogram(num_mel_bins=32, fft_length=512, sequence_stride=256, top_db=60.0)(x).numpy()
    assert db.max() - db.min() <= 60.0 + 1e-4   # floored at the batch's largest value minus top_db
    ref = layers.MelSpectrogram(num_mel_bins=32, fft_length=512, sequence_stride=256, top_db=1000.0,
                                ref_power=10.0)(x).numpy()
    plain = layers.MelSpectrogram(num_mel_bins=32, fft_length=512, sequence_stride=256, top_db=1000.0)(x).numpy()
    np.testing.assert_allclose(plain - ref, 10.0, atol=1e-4)
    # the quiet signal's power is 10^-4 of the loud one's: its strongest band is 40 dB lower
    assert plain[0].max() - plain[1].max() == pytest.approx(40.0, abs=0.01)


def test_stft_spectrogram_of_a_tone():
    rate, n = 1024, 2048
    x = _tone(128.0, rate, n)[..., None]   # (1, time, 1)
    layer = layers.STFTSpectrogram(mode="magnitude", frame_length=128, frame_step=64, window=None, scaling=None)
    mag = layer(x).numpy()
    assert mag.shape == (1, (n - 128) // 64 + 1, 65)
    assert (mag[0].argmax(axis=1) == 128 * 128 // rate).all()
    np.testing.assert_allclose(mag[0, :, 16], 64.0, rtol=1e-3)   # |DFT| of a unit sine: N / 2


@pytest.mark.parametrize("kw,shape,expected", [
    ({"mode": "log", "frame_length": 32}, (2, 100, 3), (2, 5, 3 * 17)),
    ({"mode": "stft", "frame_length": 16, "frame_step": 4, "padding": "same", "expand_dims": True},
     (2, 40, 2), (2, 10, 18, 2)),
    ({"mode": "psd", "frame_length": 16, "data_format": "channels_first"}, (2, 3, 40), (2, 27, 4)),
])
def test_stft_spectrogram_harness(kw, shape, expected):
    run_layer_test(layers.STFTSpectrogram, kw, shape, expected_output_shape=expected,
                   expected_num_trainable_weights=2)


def test_mel_spectrogram_harness():
    run_layer_test(layers.MelSpectrogram, {"fft_length": 64, "sequence_stride": 16, "num_mel_bins": 8,
                                           "sampling_rate": 8000}, (2, 200), expected_output_shape=(2, 8, 13),
                   expected_num_trainable_weights=0)


def test_in_a_model_that_trains_and_saves(tmp_path):
    rng = np.random.default_rng(0)
    x = np.stack([_tone(f, 1000, 400)[0] for f in rng.uniform(50, 450, 32)])[..., None]
    y = (x.std(axis=1) > 0).astype(np.float32)
    model = lamina.Sequential([lamina.Input((400, 1)), layers.STFTSpectrogram(frame_length=32, mode="log"),
                               layers.GlobalAveragePooling1D(), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    path = str(tmp_path / "stft.keras")
    model.save(path)
    again = lamina.models.load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_argument_errors():
    with pytest.raises(ValueError, match="fft_length` must be greater than or equal to `sequence_length`"):
        layers.MelSpectrogram(fft_length=256, sequence_length=512)
    with pytest.raises(ValueError, match="min_freq < max_freq <= sampling_rate / 2"):
        layers.MelSpectrogram(sampling_rate=8000, max_freq=6000)
    with pytest.raises(ValueError, match=r"expected audio of shape \(batch, samples\)"):
        layers.MelSpectrogram(fft_length=64)(np.zeros((2, 3, 100), np.float32))
    with pytest.raises(ValueError, match="frame_step` should be a positive integer not greater than"):
        layers.STFTSpectrogram(frame_length=64, frame_step=65)
    with pytest.raises(ValueError, match="fft_length` should be an integer not less than"):
        layers.STFTSpectrogram(frame_length=64, fft_length=32)
    with pytest.warns(UserWarning, match="power of two"):
        layers.STFTSpectrogram(frame_length=64, fft_length=100)
    with pytest.raises(ValueError, match="mode must be one of"):
        layers.STFTSpectrogram(mode="phase")
    with pytest.raises(ValueError, match="unknown window 'kaiser'"):
        layers.STFTSpectrogram(window="kaiser")


@pytest.mark.parametrize("kw", [{}, {"fft_length": 512, "sequence_stride": 128, "num_mel_bins": 40,
                                     "sampling_rate": 8000},
                                {"fft_length": 256, "sequence_length": 200, "window": "hamming", "power_to_db": False,
                                 "mag_exp": 1.0, "max_freq": 3000, "min_freq": 100.0, "sampling_rate": 8000}])
def test_mel_spectrogram_equals_keras(kw):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    x = np.random.default_rng(1).standard_normal((2, 4000)).astype(np.float32)
    want = np.asarray(keras.layers.MelSpectrogram(**kw)(x))
    got = layers.MelSpectrogram(**kw)(x).numpy()
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())
    assert tuple(keras.layers.MelSpectrogram(**kw).compute_output_shape((None, 4000))) == \
        layers.MelSpectrogram(**kw).compute_output_shape((None, 4000))


@pytest.mark.parametrize("kw", [{"mode": m} for m in ("log", "magnitude", "psd", "real", "imag", "angle", "stft")] + [
    {"frame_length": 100, "frame_step": 30, "fft_length": 128, "padding": "same", "expand_dims": True},
    {"frame_length": 64, "window": "hamming", "periodic": True, "scaling": "spectrum", "data_format": "channels_first"},
    {"frame_length": 64, "expand_dims": True, "data_format": "channels_first", "mode": "psd"}])
def test_stft_spectrogram_equals_keras(kw):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    pytest.importorskip("scipy")   # Keras's window functions
    x = np.random.default_rng(2).standard_normal((2, 1000, 3)).astype(np.float32)
    if kw.get("data_format") == "channels_first":
        x = x.transpose(0, 2, 1)
    theirs, ours = keras.layers.STFTSpectrogram(**kw), layers.STFTSpectrogram(**kw)
    want, got = np.asarray(theirs(x)), ours(x).numpy()
    assert got.shape == want.shape == tuple(ours.compute_output_shape(x.shape))
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    if kw.get("mode") == "angle":   # the same angle (mod 2 pi) where the bin's magnitude makes it well defined
        # (not the 0 and Nyquist bins: their imaginary part is 0, which Keras's float32 sin misses by 1e-4)
        mag = np.asarray(keras.layers.STFTSpectrogram(mode="magnitude")(x))
        bins = np.arange(mag.shape[-1]) % 129
        strong = (mag > 1e-2 * mag.max()) & (bins != 0) & (bins != 128)
        got, want = np.exp(1j * got[strong]), np.exp(1j * want[strong])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    cfg = ours.get_config()
    for key, value in theirs.get_config().items():
        if key not in ("name", "dtype", "trainable"):
            assert cfg[key] == value, key
