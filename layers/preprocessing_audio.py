"""Audio layers, as Keras's: `MelSpectrogram` (a fixed mel-scale power or decibel spectrogram, from
ops.stft) and `STFTSpectrogram` (a short-time Fourier transform as a strided 1-D convolution
whose kernels, initialized by `initializers.STFT`, can be trained)."""
import math
import warnings

import numpy as np

from .. import initializers as _initializers
from .. import ops
from ..backend.settings import epsilon, standardize_data_format
from .convolutional import run_op
from .layer import InputSpec, Layer

_MEL_BREAK_FREQUENCY_HERTZ = 700.0
_MEL_HIGH_FREQUENCY_Q = 1127.0


def _hertz_to_mel(f):
    return _MEL_HIGH_FREQUENCY_Q * np.log(1.0 + f / _MEL_BREAK_FREQUENCY_HERTZ)


def linear_to_mel_weight_matrix(num_mel_bins=20, num_spectrogram_bins=129, sampling_rate=8000, lower_edge_hertz=125.0,
                                upper_edge_hertz=3800.0):
    """(num_spectrogram_bins, num_mel_bins) float32: triangular mel filters over the bins of an
    rfft from 0 Hz to sampling_rate / 2 (the 0 Hz bin gets no weight), as Keras and TensorFlow."""
    edges = np.linspace(_hertz_to_mel(np.float32(lower_edge_hertz)), _hertz_to_mel(np.float32(upper_edge_hertz)),
                        num_mel_bins + 2, dtype=np.float32)
    lower, center, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    freqs = np.linspace(0.0, sampling_rate / 2.0, num_spectrogram_bins, dtype=np.float32)[1:]
    mel = _hertz_to_mel(freqs)[:, None]
    weights = np.maximum(0.0, np.minimum((mel - lower) / (center - lower), (upper - mel) / (upper - center)))
    return np.pad(weights, ((1, 0), (0, 0))).astype(np.float32)


def _positive_int(who, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{who}: `{name}` must be a positive integer, received {name}={value!r}")
    return int(value)


class MelSpectrogram(Layer):
    """Audio (batch, samples) or (samples,) to mel spectrograms (batch, num_mel_bins, frames):
    |stft|^mag_exp (frames of `sequence_length` samples every `sequence_stride`, centered, zero
    padded to `fft_length`, `window`ed), times the mel filter bank from `min_freq` to `max_freq`
    (sampling_rate / 2 by default), then, with `power_to_db`, 10 log10(max(power, min_power) /
    ref_power) floored at the largest value of the batch minus `top_db`. No weights."""

    def __init__(self, fft_length=2048, sequence_stride=512, sequence_length=None, window="hann", sampling_rate=16000,
                 num_mel_bins=128, min_freq=20.0, max_freq=None, power_to_db=True, top_db=80.0, mag_exp=2.0,
                 min_power=1e-10, ref_power=1.0, **kwargs):
        super().__init__(**kwargs)
        who = "MelSpectrogram"
        self.fft_length = _positive_int(who, "fft_length", fft_length)
        self.sequence_stride = _positive_int(who, "sequence_stride", sequence_stride)
        self.sequence_length = _positive_int(who, "sequence_length", sequence_length or fft_length)
        if self.fft_length < self.sequence_length:
            raise ValueError(f"{who}: `fft_length` must be greater than or equal to `sequence_length`; received "
                             f"sequence_length={self.sequence_length}, fft_length={self.fft_length}")
        self.window = window
        self.sampling_rate = _positive_int(who, "sampling_rate", sampling_rate)
        self.num_mel_bins = _positive_int(who, "num_mel_bins", num_mel_bins)
        self.min_freq = min_freq
        self.max_freq = max_freq or int(sampling_rate / 2)
        if not 0 <= self.min_freq < self.max_freq <= self.sampling_rate / 2:
            raise ValueError(f"{who}: needs 0 <= min_freq < max_freq <= sampling_rate / 2; received "
                             f"min_freq={min_freq}, max_freq={self.max_freq}, sampling_rate={sampling_rate}")
        self.power_to_db = bool(power_to_db)
        self.top_db, self.mag_exp, self.min_power, self.ref_power = top_db, mag_exp, min_power, ref_power
        self._mel = None

    def _matrix(self):
        if self._mel is None:
            self._mel = ops.convert_to_tensor(linear_to_mel_weight_matrix(
                self.num_mel_bins, self.fft_length // 2 + 1, self.sampling_rate, self.min_freq, self.max_freq))
        return self._mel

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if x.ndim not in (1, 2):
            raise ValueError(f"MelSpectrogram '{self.name}': expected audio of shape (batch, samples) or (samples,), "
                             f"received shape {tuple(x.shape)}")
        real, imag = run_op(self, ops.stft, x, self.sequence_length, self.sequence_stride, self.fft_length,
                            window=self.window, center=True)
        spec = ops.power(ops.sqrt(ops.add(ops.square(real), ops.square(imag))), self.mag_exp)
        mel = ops.tensordot(spec, self._matrix(), axes=1)
        if self.power_to_db:
            db = ops.multiply(ops.log10(ops.maximum(mel, self.min_power)), 10.0)
            db = ops.subtract(db, 10.0 * math.log10(max(abs(self.ref_power), self.min_power)))
            mel = ops.maximum(db, ops.subtract(ops.max(db), self.top_db))
        return ops.swapaxes(mel, -1, -2)

    def compute_output_shape(self, input_shape):
        n = input_shape[-1]
        frames = None if n is None else n // self.sequence_stride + 1   # centered: fft_length // 2 on each side
        return tuple(input_shape[:-1]) + (self.num_mel_bins, frames)

    def get_config(self):
        return {**super().get_config(), "fft_length": self.fft_length, "sequence_stride": self.sequence_stride,
                "sequence_length": self.sequence_length, "window": self.window, "sampling_rate": self.sampling_rate,
                "num_mel_bins": self.num_mel_bins, "min_freq": self.min_freq, "max_freq": self.max_freq,
                "power_to_db": self.power_to_db, "top_db": self.top_db, "mag_exp": self.mag_exp,
                "min_power": self.min_power, "ref_power": self.ref_power}


_MODES = ("log", "magnitude", "psd", "real", "imag", "angle", "stft")


class STFTSpectrogram(Layer):
    """Signals (batch, time, channels) (or (batch, channels, time), channels_first) to
    spectrograms, computed as a 1-D convolution with stride `frame_step` (frame_length // 2 by
    default) of kernels (frame_length, 1, fft_length // 2 + 1) holding the windowed DFT's real and
    imaginary parts (trainable weights `real_kernel` / `imag_kernel`, from `initializers.STFT`).

    `mode`: "log" (log magnitude, the default), "magnitude", "psd" (power, the inner bins doubled),
    "real", "imag", "angle", or "stft" (real and imaginary parts stacked on the frequency axis).
    Output (batch, frames, channels * bins), or (batch, frames, bins, channels) with
    `expand_dims`; channels_first puts channels before frames."""

    def __init__(self, mode="log", frame_length=256, frame_step=None, fft_length=None, window="hann", periodic=False,
                 scaling="density", padding="valid", expand_dims=False, data_format=None, **kwargs):
        who = "STFTSpectrogram"
        frame_length = _positive_int(who, "frame_length", frame_length)
        if frame_step is not None and (isinstance(frame_step, bool) or not isinstance(frame_step, (int, np.integer))
                                       or not 1 <= frame_step <= frame_length):
            raise ValueError(f"{who}: `frame_step` should be a positive integer not greater than `frame_length`; "
                             f"received frame_step={frame_step!r}, frame_length={frame_length}")
        if fft_length is not None and (isinstance(fft_length, bool) or not isinstance(fft_length, (int, np.integer))
                                       or fft_length < frame_length):
            raise ValueError(f"{who}: `fft_length` should be an integer not less than `frame_length`; received "
                             f"fft_length={fft_length!r}, frame_length={frame_length}")
        if fft_length is not None and fft_length & -fft_length != fft_length:
            warnings.warn(f"{who}: `fft_length` is recommended to be a power of two, received fft_length={fft_length}",
                          stacklevel=2)
        if mode not in _MODES:
            raise ValueError(f"{who}: mode must be one of {', '.join(_MODES)}; received mode={mode!r}")
        if padding not in ("valid", "same"):
            raise ValueError(f"{who}: padding must be 'valid' or 'same', received padding={padding!r}")
        self._initializers = {side: _initializers.STFT(side, window, scaling, periodic) for side in ("real", "imag")}
        super().__init__(**kwargs)
        self.mode, self.frame_length, self.frame_step = mode, frame_length, frame_step
        self._frame_step = frame_step or frame_length // 2
        self.fft_length = fft_length
        self._fft_length = fft_length or 2 ** int(math.ceil(math.log2(frame_length)))
        self.window, self.periodic, self.scaling, self.padding = window, periodic, scaling, padding
        self.expand_dims = bool(expand_dims)
        self.data_format = standardize_data_format(data_format, who)
        self.input_spec = InputSpec(ndim=3)

    def build(self, input_shape):
        shape = (self.frame_length, 1, self._fft_length // 2 + 1)
        if self.mode != "imag":
            self.real_kernel = self.add_weight(name="real_kernel", shape=shape, initializer=self._initializers["real"])
        if self.mode != "real":
            self.imag_kernel = self.add_weight(name="imag_kernel", shape=shape, initializer=self._initializers["imag"])

    def _conv(self, x, kernel, channels):
        """x (batch * channels, time, 1) -> (batch, channels, bins, frames)."""
        y = run_op(self, ops.conv, x, kernel, strides=self._frame_step, padding=self.padding)
        return ops.transpose(ops.reshape(y, (-1, channels) + tuple(y.shape[1:])), (0, 1, 3, 2))

    def _arrange(self, out):
        """(batch, channels, bins, frames) to the output layout."""
        B, C, F, T = out.shape
        if self.data_format == "channels_last":
            return ops.transpose(out, (0, 3, 2, 1)) if self.expand_dims else \
                ops.transpose(ops.reshape(out, (B, C * F, T)), (0, 2, 1))
        return ops.transpose(out, (0, 1, 3, 2)) if self.expand_dims else ops.reshape(out, (B, C * F, T))

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if self.data_format == "channels_last":
            x = ops.transpose(x, (0, 2, 1))
        channels = x.shape[1]
        x = ops.reshape(x, (-1, x.shape[2], 1))
        real = self._conv(x, self.real_kernel, channels) if self.mode != "imag" else None
        imag = self._conv(x, self.imag_kernel, channels) if self.mode != "real" else None
        if self.mode in ("real", "imag"):
            return self._arrange(real if self.mode == "real" else imag)
        if self.mode == "angle":
            return self._arrange(ops.arctan2(imag, real))
        if self.mode == "stft":
            return self._arrange(ops.concatenate([real, imag], axis=2))
        power = ops.add(ops.square(real), ops.square(imag))
        if self.mode == "psd":
            return self._arrange(ops.add(power, ops.pad(power[:, :, 1:-1, :], ((0, 0), (0, 0), (1, 1), (0, 0)))))
        magnitude = self._arrange(ops.sqrt(ops.maximum(power, epsilon())))
        return magnitude if self.mode == "magnitude" else ops.log(ops.maximum(magnitude, epsilon()))

    def compute_output_shape(self, input_shape):
        last = self.data_format == "channels_last"
        B, C, T = (input_shape[0], input_shape[2], input_shape[1]) if last else tuple(input_shape)
        bins = (self._fft_length // 2 + 1) * (2 if self.mode == "stft" else 1)
        if T is None:
            frames = None
        elif self.padding == "same":
            frames = -(-T // self._frame_step)
        else:
            frames = max((T - self.frame_length) // self._frame_step + 1, 0)
        if self.expand_dims:
            return (B, frames, bins, C) if last else (B, C, frames, bins)
        feats = None if C is None else C * bins
        return (B, frames, feats) if last else (B, feats, frames)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "frame_length": self.frame_length,
                "frame_step": self.frame_step, "fft_length": self.fft_length, "window": self.window,
                "periodic": self.periodic, "scaling": self.scaling, "padding": self.padding,
                "data_format": self.data_format, "expand_dims": self.expand_dims}
