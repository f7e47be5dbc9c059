// The Fourier transforms' argument checks and length factorisation, shared by the device modules
// (csrc/cpu/fft.cpp, csrc/cuda/fft.cu): the same checks, messages and plans on every device.
#pragma once
#include <cstdint>
#include <vector>

#include "checks.h"
#include "types.h"

namespace lamina {

constexpr int64_t kFftMaxRadix = 13;  // larger prime factors go through Bluestein

// The Cooley-Tukey radices of n (4s first, then 2, 3, 5, 7, 11, 13), product n when *smooth
// (every prime factor of n is at most kFftMaxRadix); otherwise n takes Bluestein's algorithm.
inline std::vector<int64_t> fft_small_factors(int64_t n, bool* smooth) {
  std::vector<int64_t> f;
  int64_t r = n;
  for (int64_t p : {4, 2, 3, 5, 7, 11, 13}) {
    while (r % p == 0) {
      f.push_back(p);
      r /= p;
    }
  }
  *smooth = r == 1;
  return f;
}

// Bluestein's convolution length for n: the smallest power of two >= 2 n - 1.
inline int64_t fft_bluestein_length(int64_t n) {
  int64_t m = 1;
  while (m < 2 * n - 1) m <<= 1;
  return m;
}

template <class B>
void fft_check_f32(const char* op, const char* arg, const B& b, int64_t numel) {
  check_dtype(op, arg, b, F32);
  LAMINA_CHECK(b.numel == numel, op << ": " << arg << " holds " << b.numel << " elements, expected " << numel);
}

inline int64_t fft_count3(const char* op, int64_t a, int64_t b, int64_t c) {
  LAMINA_CHECK(a >= 0 && b >= 0 && c >= 0,
               op << ": expected non-negative sizes, received " << a << ", " << b << ", " << c);
  int64_t ab, r;
  LAMINA_CHECK(!__builtin_mul_overflow(a, b, &ab) && !__builtin_mul_overflow(ab, c, &r),
               op << ": size arithmetic overflows (" << a << " x " << b << " x " << c << ")");
  return r;
}

// fft: x_real, x_imag (optional), out_real, out_imag each hold the (outer, n, inner) view.
template <class B>
void check_fft_args(const B& xr, const B* xi, int64_t outer, int64_t n, int64_t inner, const B& out_r,
                    const B& out_i) {
  const char* op = "fft";
  const int64_t total = fft_count3(op, outer, n, inner);
  LAMINA_CHECK(n >= 1, op << ": the transform length must be at least 1, received " << n);
  fft_check_f32(op, "x_real", xr, total);
  if (xi) fft_check_f32(op, "x_imag", *xi, total);
  fft_check_f32(op, "out_real", out_r, total);
  fft_check_f32(op, "out_imag", out_i, total);
}

// rfft: x holds (outer, n_in), out_real and out_imag (outer, fft_length // 2 + 1).
template <class B>
void check_rfft_args(const B& x, int64_t outer, int64_t n_in, int64_t fft_length, const B& out_r, const B& out_i) {
  const char* op = "rfft";
  LAMINA_CHECK(fft_length >= 1, op << ": fft_length must be at least 1, received " << fft_length);
  const int64_t h = fft_length / 2 + 1;
  fft_check_f32(op, "x", x, fft_count3(op, outer, n_in, 1));
  fft_check_f32(op, "out_real", out_r, fft_count3(op, outer, h, 1));
  fft_check_f32(op, "out_imag", out_i, fft_count3(op, outer, h, 1));
}

// irfft: x_real and x_imag hold (outer, m_in), out (outer, fft_length).
template <class B>
void check_irfft_args(const B& xr, const B& xi, int64_t outer, int64_t m_in, int64_t fft_length, const B& out) {
  const char* op = "irfft";
  LAMINA_CHECK(fft_length >= 1, op << ": fft_length must be at least 1, received " << fft_length);
  fft_check_f32(op, "x_real", xr, fft_count3(op, outer, m_in, 1));
  fft_check_f32(op, "x_imag", xi, fft_count3(op, outer, m_in, 1));
  fft_check_f32(op, "out", out, fft_count3(op, outer, fft_length, 1));
}

}  // namespace lamina
