// Discrete Fourier transforms on the GPU (fft.cu): the CPU module's fft, rfft and irfft
// (csrc/cpu/fft.cpp) with the same arguments, checks (csrc/fft_checks.h) and algorithms.
#pragma once
#include "gpu.h"

namespace lamina {
namespace gpu {

// out = scale * DFT (inverse: e^{+2 pi i jk / n}) along the middle axis of (outer, n, inner);
// x_imag may be null (a real input).
void fft(const Buffer& xr, const Buffer* xi, int64_t outer, int64_t n, int64_t inner, bool inverse, double scale,
         Buffer& out_r, Buffer& out_i);
// The fft_length // 2 + 1 non-negative frequencies of each row of x (outer, n_in), cropped or
// zero-padded to fft_length, times scale.
void rfft(const Buffer& x, int64_t outer, int64_t n_in, int64_t fft_length, double scale, Buffer& out_r,
          Buffer& out_i);
// scale * the real inverse DFT of length fft_length of each Hermitian spectrum given by its first
// m_in frequencies (numpy.fft.irfft's conventions).
void irfft(const Buffer& xr, const Buffer& xi, int64_t outer, int64_t m_in, int64_t fft_length, double scale,
           Buffer& out);

}  // namespace gpu
}  // namespace lamina
