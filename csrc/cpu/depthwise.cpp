// Depthwise convolution, channels-last (NHWC; 1-D ops run as H = 1):
//
//   y[n, oh, ow, c*DM + m] = sum_{kh, kw} x[n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw, c] * w[kh, kw, c, m]
//
// (0 outside the input). The Keras kernel (KH, KW, C, DM), read as KH*KW taps of C*DM floats, lines
// up with the output's channels, so every loop runs innermost over contiguous channels:
//  * forward: one task per output row (n, oh). For each output pixel, a block of channels is
//    summed over the kernel taps in registers and stored once.
//  * input gradient: a gather, one task per input row (n, ih): each input pixel sums the
//    (output pixel, tap) pairs that read it, so threads write disjoint rows and dx is written once.
//  * kernel gradient: each thread sums its block of output rows into its own copy of dw (for each
//    tap, a channel block summed over the row's pixels in registers); the copies are added at the end.
// With DM > 1 input channel c feeds the DM outputs c*DM .. c*DM + DM - 1: the same loops run over
// channels with a short inner loop over m (MobileNet and Xception use DM = 1).
// The per-row functions are compiled for AVX-512, AVX2 and the baseline and picked at load time
// (target_clones); OpenMP's outlined loop bodies would not inherit a clone's target.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <algorithm>

#include "common.h"
#include "device.h"
#include "conv_common.h"
#include "simd.h"

namespace py = pybind11;

namespace lamina {

namespace {

// DwGeom / dw_geom: csrc/conv_geom.h (shared with the CUDA module).

// The i in [0, k) with 0 <= start + i*step < size, as [lo, hi) (contiguous: start + i*step grows with i).
LAMINA_INLINE void tap_range(int64_t start, int64_t step, int64_t k, int64_t size, int64_t& lo, int64_t& hi) {
  lo = start >= 0 ? 0 : (-start + step - 1) / step;
  hi = start >= size ? 0 : std::min<int64_t>(k, (size - 1 - start) / step + 1);
  if (hi < lo) hi = lo;
}

// ---- per-row kernels ----------------------------------------------------------------------------

// dst[c] = (or += when `add`) sum over the pairs (a, b) that pairs(f) passes to f of a[c] * b[c],
// for c in [c0, c0 + B): the block's sums stay in registers until the single store.
template <int64_t B, class Pairs>
LAMINA_INLINE void dot_block(float* dst, int64_t c0, bool add, const Pairs& pairs) {
  float acc[B] = {};
  pairs([&](const float* a, const float* b) LAMINA_LAMBDA {
#pragma omp simd
    for (int64_t j = 0; j < B; ++j) acc[j] += a[c0 + j] * b[c0 + j];
  });
  if (add) {
#pragma omp simd
    for (int64_t j = 0; j < B; ++j) dst[c0 + j] += acc[j];
  } else {
#pragma omp simd
    for (int64_t j = 0; j < B; ++j) dst[c0 + j] = acc[j];
  }
}

// dot_block over channels [0, C): blocks of 64 channels (4 AVX-512 / 8 AVX2 accumulators), then
// of 16 (C = 8 .. 1024 in MobileNet), 8 and 4 (MobileNet 0.25's first depthwise layer has 8
// channels: summed in memory one by one they took 8.1 ms of a 32-image batch, in a register 2.6),
// then the last few summed in place.
template <class Pairs>
LAMINA_INLINE void channel_dot(float* dst, int64_t C, bool add, const Pairs& pairs) {
  int64_t c0 = 0;
  for (; c0 + 64 <= C; c0 += 64) dot_block<64>(dst, c0, add, pairs);
  for (; c0 + 16 <= C; c0 += 16) dot_block<16>(dst, c0, add, pairs);
  if (c0 + 8 <= C) {
    dot_block<8>(dst, c0, add, pairs);
    c0 += 8;
  }
  if (c0 + 4 <= C) {
    dot_block<4>(dst, c0, add, pairs);
    c0 += 4;
  }
  if (c0 == C) return;
  const int64_t nb = C - c0;
  float* d = dst + c0;
  if (!add)
    for (int64_t j = 0; j < nb; ++j) d[j] = 0.f;
  pairs([&](const float* a, const float* b) LAMINA_LAMBDA {
    for (int64_t j = 0; j < nb; ++j) d[j] += a[c0 + j] * b[c0 + j];
  });
}

// The same with DM > 1: dst[c*DM + m] (+)= sum of a[c] * b[c*DM + m] (forward, kernel gradient).
template <class Pairs>
LAMINA_INLINE void channel_dot_dm(float* dst, int64_t C, int64_t DM, bool add, const Pairs& pairs) {
  if (!add)
    for (int64_t o = 0; o < C * DM; ++o) dst[o] = 0.f;
  pairs([&](const float* a, const float* b) LAMINA_LAMBDA {
    for (int64_t c = 0; c < C; ++c) {
      const float v = a[c];
#pragma omp simd
      for (int64_t m = 0; m < DM; ++m) dst[c * DM + m] += v * b[c * DM + m];
    }
  });
}

// Output row (n, oh): y[ow, :] for ow in [0, OW). xn: image n (H, W, C).
LAMINA_CLONES void forward_row(const DwGeom& g, const float* xn, const float* w, float* y, int64_t oh) {
  const int64_t C = g.C, CO = g.CO(), ih0 = oh * g.sh - g.pt;
  int64_t kh0, kh1;
  tap_range(ih0, g.dh, g.KH, g.H, kh0, kh1);
  for (int64_t ow = 0; ow < g.OW; ++ow, y += CO) {
    const int64_t iw0 = ow * g.sw - g.pl;
    int64_t kw0, kw1;
    tap_range(iw0, g.dw, g.KW, g.W, kw0, kw1);
    // (input pixel, kernel tap) for every tap of output pixel (oh, ow) inside the image
    auto taps = [&](auto&& f) LAMINA_LAMBDA {
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        const float* xr = xn + ((ih0 + kh * g.dh) * g.W + iw0) * C;
        const float* wr = w + kh * g.KW * CO;
        for (int64_t kw = kw0; kw < kw1; ++kw) f(xr + kw * g.dw * C, wr + kw * CO);
      }
    };
    if (g.DM == 1) channel_dot(y, C, false, taps);
    else channel_dot_dm(y, C, g.DM, false, taps);
  }
}

// Input-gradient row (n, ih): dx[iw, :] for iw in [0, W). dyn: output gradient of image n (OH, OW, CO).
LAMINA_CLONES void input_grad_row(const DwGeom& g, const float* dyn, const float* w, float* dx, int64_t ih) {
  const int64_t C = g.C, DM = g.DM, CO = g.CO();
  // Output pixel (oh, ow) reads input pixel (ih, iw) through tap (kh, kw) when
  // oh*sh = ih + pt - kh*dh and ow*sw = iw + pl - kw*dw; -1 when there is no such output.
  auto out_index = [](int64_t t, int64_t s, int64_t n) { return t < 0 || t % s ? -1 : (t / s < n ? t / s : -1); };
  for (int64_t iw = 0; iw < g.W; ++iw, dx += C) {
    // (output-gradient pixel, kernel tap) for every output that reads (ih, iw)
    auto taps = [&](auto&& f) LAMINA_LAMBDA {
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        const int64_t oh = out_index(ih + g.pt - kh * g.dh, g.sh, g.OH);
        if (oh < 0) continue;
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const int64_t ow = out_index(iw + g.pl - kw * g.dw, g.sw, g.OW);
          if (ow >= 0) f(dyn + (oh * g.OW + ow) * CO, w + (kh * g.KW + kw) * CO);
        }
      }
    };
    if (DM == 1) {
      channel_dot(dx, C, false, taps);
      continue;
    }
    for (int64_t c = 0; c < C; ++c) dx[c] = 0.f;  // dx[c] = sum over taps and m of dy[c*DM + m] * w[c*DM + m]
    taps([&](const float* a, const float* b) LAMINA_LAMBDA {
      for (int64_t c = 0; c < C; ++c) {
        float s = 0.f;
#pragma omp simd reduction(+ : s)
        for (int64_t m = 0; m < DM; ++m) s += a[c * DM + m] * b[c * DM + m];
        dx[c] += s;
      }
    });
  }
}

// Kernel-gradient contribution of output row (n, oh): dw[kh, kw, c*DM + m] += sum over ow of
// x[ih, iw, c] * dy[oh, ow, c*DM + m]. xn: image n; dyr: the output-gradient row (OW, CO).
LAMINA_CLONES void kernel_grad_row(const DwGeom& g, const float* xn, const float* dyr, float* dw, int64_t oh) {
  const int64_t C = g.C, CO = g.CO(), ih0 = oh * g.sh - g.pt;
  int64_t kh0, kh1;
  tap_range(ih0, g.dh, g.KH, g.H, kh0, kh1);
  for (int64_t kh = kh0; kh < kh1; ++kh) {
    const float* xr = xn + (ih0 + kh * g.dh) * g.W * C;
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      // the output pixels whose tap kw lands inside the row: iw = ow*sw + off in [0, W)
      const int64_t off = kw * g.dw - g.pl;
      int64_t ow0, ow1;
      tap_range(off, g.sw, g.OW, g.W, ow0, ow1);
      if (ow1 == ow0) continue;
      auto pixels = [&](auto&& f) LAMINA_LAMBDA {
        for (int64_t ow = ow0; ow < ow1; ++ow) f(xr + (ow * g.sw + off) * C, dyr + ow * CO);
      };
      float* t = dw + (kh * g.KW + kw) * CO;
      if (g.DM == 1) channel_dot(t, C, true, pixels);
      else channel_dot_dm(t, C, g.DM, true, pixels);
    }
  }
}

// ---- kernels ------------------------------------------------------------------------------------

// out = depthwise_conv(x, w): x (N, H, W, C), w (KH, KW, C, DM), out (N, OH, OW, C*DM) with output
// channel c*DM + m. pads = (top, bottom, left, right).
void depthwise_conv2d_forward(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws, Buffer& ob,
                              const Shape& os, const Shape& strides, const Shape& dilation, const Shape& pads) {
  const char* op = "depthwise_conv2d";
  check_conv_buffers(op, F32, xb, xs, wb, ws, ob, os, "output");
  const DwGeom g = dw_geom(op, xs, ws, os, strides, dilation, pads);
  const float* x = xb.data<float>();
  const float* w = wb.data<float>();
  float* out = ob.data<float>();
  const int64_t rows = g.N * g.OH, HWC = g.H * g.W * g.C, row = g.OW * g.CO();
  if (ob.numel == 0) return;
  const bool par = ob.numel * g.KH * g.KW > kParallelGrain && rows > 1;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t u = 0; u < rows; ++u) forward_row(g, x + (u / g.OH) * HWC, w, out + u * row, u % g.OH);
}

// Gradients of depthwise_conv2d_forward: dx (input's shape) and/or dw (kernel's shape), either
// may be None.
void depthwise_conv2d_backward(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws,
                               const Buffer& gb, const Shape& gs, Buffer* dxb, Buffer* dwb, const Shape& strides,
                               const Shape& dilation, const Shape& pads) {
  const char* op = "depthwise_conv2d_backward";
  check_conv_buffers(op, F32, xb, xs, wb, ws, gb, gs, "output gradient", true, dxb, dwb);
  const DwGeom g = dw_geom(op, xs, ws, gs, strides, dilation, pads);
  const float* x = xb.data<float>();
  const float* w = wb.data<float>();
  const float* dy = gb.data<float>();
  const int64_t work = gb.numel * g.KH * g.KW;
  if (dxb && dxb->numel > 0) {  // every element is written (0 where no output reads it)
    float* dx = dxb->data<float>();
    const int64_t rows = g.N * g.H, img = g.OH * g.OW * g.CO();
    const bool par = std::max(work, dxb->numel) > kParallelGrain && rows > 1;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t t = 0; t < rows; ++t) input_grad_row(g, dy + (t / g.H) * img, w, dx + t * g.W * g.C, t % g.H);
  }
  if (dwb && dwb->numel > 0) {
    float* dw = dwb->data<float>();
    const int64_t rows = g.N * g.OH, wn = dwb->numel, HWC = g.H * g.W * g.C, row = g.OW * g.CO();
    const int nt = work > kParallelGrain ? int(std::min<int64_t>(omp_get_max_threads(), rows)) : 1;
    if (nt <= 1) {
      zero_fill(dw, wn);
      for (int64_t u = 0; u < rows; ++u) kernel_grad_row(g, x + (u / g.OH) * HWC, dy + u * row, dw, u % g.OH);
      return;
    }
    Scratch partial(nt * wn);  // one copy of dw per thread; allocated outside the region (nothing may throw inside)
#pragma omp parallel num_threads(nt)
    {
      const int tid = omp_get_thread_num(), team = omp_get_num_threads();
      float* mine = partial.p + tid * wn;
      zero_fill(mine, wn, false);
      for (int64_t u = rows * tid / team; u < rows * (tid + 1) / team; ++u)
        kernel_grad_row(g, x + (u / g.OH) * HWC, dy + u * row, mine, u % g.OH);
#pragma omp barrier
#pragma omp for schedule(static)
      for (int64_t i = 0; i < wn; ++i) {
        float s = 0.f;
        for (int t = 0; t < team; ++t) s += partial.p[t * wn + i];
        dw[i] = s;
      }
    }
  }
}

}  // namespace

void bind_depthwise(py::module_& m) {
  def_kernel(m, "depthwise_conv2d_forward", &depthwise_conv2d_forward, py::arg("x"), py::arg("x_shape"), py::arg("w"),
        py::arg("w_shape"), py::arg("out"), py::arg("out_shape"), py::arg("strides"), py::arg("dilation"),
        py::arg("pads"));
  def_kernel(m, "depthwise_conv2d_backward", &depthwise_conv2d_backward, py::arg("x"), py::arg("x_shape"), py::arg("w"),
        py::arg("w_shape"), py::arg("grad"), py::arg("grad_shape"), py::arg("dx").none(true), py::arg("dw").none(true),
        py::arg("strides"), py::arg("dilation"), py::arg("pads"));
}

}  // namespace lamina
