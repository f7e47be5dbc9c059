// Discrete Fourier transforms of any length, batched:
// - fft: complex-to-complex along one axis of a tensor viewed as (outer, n, inner), forward or
//   inverse (unnormalised; the caller passes the scale), real input when the imaginary part is None;
// - rfft: real-to-complex along the last axis, input cropped / zero-padded to fft_length, the
//   fft_length // 2 + 1 non-negative frequencies out;
// - irfft: complex-to-real along the last axis from the non-negative frequencies of a Hermitian
//   spectrum (numpy.fft.irfft: the imaginary parts of the zero and Nyquist frequencies are ignored).
// Complex values travel as separate real and imaginary float32 buffers (Keras's (real, imag)
// pairs). Each row is transformed in double precision with double twiddles: mixed-radix
// Cooley-Tukey when every prime factor of the length is small, Bluestein's chirp-z algorithm
// (a power-of-two convolution) otherwise, so any length costs O(n log n).
#include <pybind11/pybind11.h>
#include <omp.h>

#include <cmath>
#include <complex>
#include <memory>
#include <vector>

#include "common.h"
#include "device.h"
#include "fft_checks.h"

namespace py = pybind11;

namespace lamina {

namespace {

using cd = std::complex<double>;
constexpr double kPi = 3.14159265358979323846;

struct FftPlan {
  int64_t n = 0;
  std::vector<int64_t> factors;   // Cooley-Tukey radices, product n
  std::vector<cd> w;              // w[k] = exp(-2 pi i k / n)
  // Bluestein: the convolution length m (a power of two), its plan, the chirp exp(-i pi t^2 / n)
  // and the transform of the conjugate chirp kernel.
  int64_t m = 0;
  std::unique_ptr<FftPlan> sub;
  std::vector<cd> chirp, kernel_hat;
};

void transform(const FftPlan& plan, cd* data, cd* scratch);

std::unique_ptr<FftPlan> make_plan(int64_t n) {
  auto plan = std::make_unique<FftPlan>();
  plan->n = n;
  bool smooth;
  plan->factors = fft_small_factors(n, &smooth);  // fft_checks.h, shared with the GPU
  if (smooth) {
    plan->w.resize(n);
    for (int64_t k = 0; k < n; ++k) {
      const double a = -2.0 * kPi * double(k) / double(n);
      plan->w[k] = cd(std::cos(a), std::sin(a));
    }
    return plan;
  }
  plan->factors.clear();
  const int64_t m = fft_bluestein_length(n);
  plan->m = m;
  plan->sub = make_plan(m);
  plan->chirp.resize(n);
  for (int64_t t = 0; t < n; ++t) {
    const int64_t t2 = int64_t((unsigned __int128)(t) * t % (unsigned __int128)(2 * n));  // exact angle reduction
    const double a = -kPi * double(t2) / double(n);
    plan->chirp[t] = cd(std::cos(a), std::sin(a));
  }
  std::vector<cd> b(m, cd(0, 0)), scratch(2 * m);
  b[0] = std::conj(plan->chirp[0]);
  for (int64_t t = 1; t < n; ++t) b[t] = b[m - t] = std::conj(plan->chirp[t]);
  transform(*plan->sub, b.data(), scratch.data());
  plan->kernel_hat = std::move(b);
  return plan;
}

// out[k] = sum_t in[t * s] w_n^(t k) for the n = product(factors) points starting at `in`, with
// stride s; w is the base table of length N and ws = N / n its stride. Decimation in time: the
// p = factors[0] interleaved subsequences are transformed into out[q m .. q m + m), then combined.
void dft_rec(const cd* in, int64_t s, cd* out, int64_t n, const int64_t* factors, const cd* w, int64_t N,
             int64_t ws) {
  if (n == 1) {
    out[0] = in[0];
    return;
  }
  const int64_t p = factors[0], m = n / p;
  for (int64_t q = 0; q < p; ++q) dft_rec(in + q * s, s * p, out + q * m, m, factors + 1, w, N, ws * p);
  cd tmp[kFftMaxRadix];
  for (int64_t k = 0; k < m; ++k) {
    tmp[0] = out[k];
    for (int64_t q = 1; q < p; ++q) tmp[q] = out[q * m + k] * w[q * k * ws];
    if (p == 2) {
      out[k] = tmp[0] + tmp[1];
      out[m + k] = tmp[0] - tmp[1];
    } else if (p == 4) {  // w_4 = -i
      const cd a = tmp[0] + tmp[2], b = tmp[0] - tmp[2], c = tmp[1] + tmp[3];
      const cd d = (tmp[1] - tmp[3]) * cd(0, -1);
      out[k] = a + c;
      out[m + k] = b + d;
      out[2 * m + k] = a - c;
      out[3 * m + k] = b - d;
    } else {
      for (int64_t r = 0; r < p; ++r) {
        cd acc = tmp[0];
        for (int64_t q = 1; q < p; ++q) acc += tmp[q] * w[(q * r % p) * m * ws];
        out[r * m + k] = acc;
      }
    }
  }
}

// Forward transform of plan.n points in place; scratch holds at least 2 * max(n, m) values.
void transform(const FftPlan& plan, cd* data, cd* scratch) {
  const int64_t n = plan.n;
  if (n <= 1) return;
  if (plan.m == 0) {
    std::copy(data, data + n, scratch);
    dft_rec(scratch, 1, data, n, plan.factors.data(), plan.w.data(), n, 1);
    return;
  }
  const int64_t m = plan.m;
  cd* a = scratch;
  cd* sub_scratch = scratch + m;  // the power-of-two sub-plan needs 2m more: scratch is 4m long
  for (int64_t t = 0; t < n; ++t) a[t] = data[t] * plan.chirp[t];
  std::fill(a + n, a + m, cd(0, 0));
  transform(*plan.sub, a, sub_scratch);
  for (int64_t k = 0; k < m; ++k) a[k] = std::conj(a[k] * plan.kernel_hat[k]);
  transform(*plan.sub, a, sub_scratch);  // inverse by conjugation
  const double inv_m = 1.0 / double(m);
  for (int64_t k = 0; k < n; ++k) data[k] = std::conj(a[k]) * inv_m * plan.chirp[k];
}

int64_t scratch_size(const FftPlan& plan) { return plan.m ? 4 * plan.m : 2 * std::max<int64_t>(plan.n, 1); }

// Runs row(r, buf, scratch) for rows r < rows in parallel, each thread with its own buffers.
template <class Row>
void for_each_row(int64_t rows, int64_t n, const FftPlan& plan, Row row) {
  const bool par = rows > 1 && rows * n > (1 << 12);
#pragma omp parallel if (par)
  {
    std::vector<cd> buf(std::max<int64_t>(n, 1)), scratch(scratch_size(plan));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) row(r, buf.data(), scratch.data());
  }
}

// ---- kernels -----------------------------------------------------------------------------------

// out = scale * DFT (inverse: e^{+2 pi i jk / n}) along the middle axis of (outer, n, inner).
void fft(const Buffer& xr, const Buffer* xi, int64_t outer, int64_t n, int64_t inner, bool inverse, double scale,
         Buffer& out_r, Buffer& out_i) {
  check_fft_args(xr, xi, outer, n, inner, out_r, out_i);  // fft_checks.h, shared with the GPU
  auto plan = make_plan(n);
  const float* R = xr.data<float>();
  const float* I = xi ? xi->data<float>() : nullptr;
  float* OR = out_r.data<float>();
  float* OI = out_i.data<float>();
  const double sgn = inverse ? -1.0 : 1.0;  // the inverse is the conjugate of the forward of the conjugate
  for_each_row(outer * inner, n, *plan, [&](int64_t r, cd* buf, cd* scratch) {
    const int64_t o = r / inner, i = r % inner;
    const int64_t base = o * n * inner + i;
    for (int64_t t = 0; t < n; ++t) buf[t] = cd(R[base + t * inner], I ? sgn * I[base + t * inner] : 0.0);
    transform(*plan, buf, scratch);
    for (int64_t t = 0; t < n; ++t) {
      OR[base + t * inner] = float(buf[t].real() * scale);
      OI[base + t * inner] = float(sgn * buf[t].imag() * scale);
    }
  });
}

// The fft_length // 2 + 1 non-negative frequencies of the DFT of each row of x (outer, n_in),
// cropped or zero-padded to fft_length, times scale.
void rfft(const Buffer& x, int64_t outer, int64_t n_in, int64_t fft_length, double scale, Buffer& out_r,
          Buffer& out_i) {
  check_rfft_args(x, outer, n_in, fft_length, out_r, out_i);
  const int64_t h = fft_length / 2 + 1;
  auto plan = make_plan(fft_length);
  const float* X = x.data<float>();
  float* OR = out_r.data<float>();
  float* OI = out_i.data<float>();
  const int64_t used = std::min(n_in, fft_length);
  for_each_row(outer, fft_length, *plan, [&](int64_t r, cd* buf, cd* scratch) {
    const float* row = X + r * n_in;
    for (int64_t t = 0; t < used; ++t) buf[t] = cd(row[t], 0.0);
    for (int64_t t = used; t < fft_length; ++t) buf[t] = cd(0.0, 0.0);
    transform(*plan, buf, scratch);
    for (int64_t k = 0; k < h; ++k) {
      OR[r * h + k] = float(buf[k].real() * scale);
      OI[r * h + k] = float(buf[k].imag() * scale);
    }
  });
}

// scale * the real inverse DFT of length fft_length of each Hermitian spectrum given by its first
// m_in frequencies (cropped or zero-padded to fft_length // 2 + 1), as numpy.fft.irfft (scale
// 1 / fft_length there).
void irfft(const Buffer& xr, const Buffer& xi, int64_t outer, int64_t m_in, int64_t fft_length, double scale,
           Buffer& out) {
  check_irfft_args(xr, xi, outer, m_in, fft_length, out);
  const int64_t n = fft_length, h = n / 2 + 1;
  auto plan = make_plan(n);
  const float* R = xr.data<float>();
  const float* I = xi.data<float>();
  float* O = out.data<float>();
  const int64_t used = std::min(m_in, h);
  for_each_row(outer, n, *plan, [&](int64_t r, cd* buf, cd* scratch) {
    std::fill(buf, buf + n, cd(0.0, 0.0));
    // conjugated spectrum (the inverse as a forward transform of the conjugate), made Hermitian
    for (int64_t k = 0; k < used; ++k) {
      const bool real_only = k == 0 || (n % 2 == 0 && k == n / 2);
      const cd v(R[r * m_in + k], real_only ? 0.0 : -double(I[r * m_in + k]));
      buf[k] = v;
      if (k > 0 && n - k != k) buf[n - k] = std::conj(v);
    }
    transform(*plan, buf, scratch);
    for (int64_t t = 0; t < n; ++t) O[r * n + t] = float(buf[t].real() * scale);
  });
}

}  // namespace

void bind_fft(py::module_& m) {
  def_kernel(m, "fft", &fft, py::arg("x_real"), py::arg("x_imag").none(true), py::arg("outer"), py::arg("n"),
             py::arg("inner"), py::arg("inverse"), py::arg("scale"), py::arg("out_real"), py::arg("out_imag"));
  def_kernel(m, "rfft", &rfft, py::arg("x"), py::arg("outer"), py::arg("n_in"), py::arg("fft_length"),
             py::arg("scale"), py::arg("out_real"), py::arg("out_imag"));
  def_kernel(m, "irfft", &irfft, py::arg("x_real"), py::arg("x_imag"), py::arg("outer"), py::arg("m_in"),
             py::arg("fft_length"), py::arg("scale"), py::arg("out"));
}

}  // namespace lamina
