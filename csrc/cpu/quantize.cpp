// Kernels of quantized (int8) inference, Keras 3's "int8" mode (layers' quantize("int8")):
//   qgemm_pack       int8 weights (K, N) -> the packed panels and column sums of qgemm.h
//   qmatmul          Dense: rows of the float input quantized on the fly, int8 x int8 products
//                    with int32 sums, out = sums / (w_scale * a_scale) + bias (qgemm.h)
//   qdepthwise2d     DepthwiseConv2D: each image quantized with one scale (abs max over the
//                    image), int8 taps summed in int32 per channel, the same float epilogue
//   qembedding       Embedding: rows of an int8 table divided by their scales
//   qdepthwise2d_fused  a DepthwiseConv2D with the BatchNormalization and ReLU after it, from float
//                    or byte activations to float or byte activations (fused groups of
//                    backend/quantization.py; the epilogue in qgemm.h)
// (Conv2D's qconv2d and qconv2d_fused live in conv.cpp, beside its im2col.) int8 buffers hold quantized weights
// only: these kernels and the copies are the only ones that take them.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "device.h"
#include "conv_common.h"
#include "qgemm.h"
#include "quant_avx2.h"
#include "quant_checks.h"
#include "simd.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace py = pybind11;

namespace lamina {

namespace {

using quant::QdwGeom;  // the checked geometry of a depthwise convolution (csrc/quant_checks.h)

void qgemm_pack(const Buffer& w, int64_t K, int64_t N, Buffer& packed, Buffer& colsum) {
  quant::check_pack(w, K, N, packed, colsum);
  qgemm::pack(w.data<int8_t>(), K, N, packed.data<int8_t>(), colsum.data<int32_t>());
}

void qmatmul(const Buffer& x, int64_t M, int64_t K, int64_t N, const Buffer& packed, const Buffer& colsum,
             const Buffer& w_scale, const Buffer* bias, Buffer& out, bool relu) {
  quant::check_qmatmul(x, M, K, N, packed, colsum, w_scale, bias, out);
  qgemm::matmul(x.data<float>(), K, M, K, N, packed.data<int8_t>(), colsum.data<int32_t>(), w_scale.data<float>(),
                bias ? bias->data<float>() : nullptr, out.data<float>(), N, true, relu);
}

// Per image n and input channel c, one scale (Keras's abs-max formula over the image's pixels of
// that channel: a depthwise output channel reads one input channel only):
//   x_scale[n, c] = 127 / (max_{h,w} |x[n, h, w, c]| + 1e-7),  qx = clip(round_half_even(x * x_scale), -127, 127)
//   y[n, oh, ow, c*DM + m] = float(sum_taps qx[n, ih, iw, c] * qw[kh, kw, c, m]) / (w_scale[c*DM + m] * x_scale[n, c]) + bias
// The per-row loops are compiled for AVX-512, AVX2 and the baseline (target_clones).

// mx[c] = max over the image's pixels of |x[p, c]|; nan[c] set when a NaN is seen.
LAMINA_CLONES void channel_abs_max(const float* x, int64_t pixels, int64_t C, float* mx, uint8_t* nan) {
  for (int64_t c = 0; c < C; ++c) { mx[c] = 0.f; nan[c] = 0; }
  for (int64_t p = 0; p < pixels; ++p) {
    const float* xp = x + p * C;
    for (int64_t c = 0; c < C; ++c) {
      const float v = std::fabs(xp[c]);
      nan[c] |= uint8_t(v != v);
      mx[c] = v > mx[c] ? v : mx[c];
    }
  }
}

LAMINA_CLONES void quantize_pixels(const float* x, int64_t pixels, int64_t C, const float* scale, int8_t* q) {
  for (int64_t p = 0; p < pixels; ++p) {
    const float* xp = x + p * C;
    int8_t* qp = q + p * C;
    for (int64_t c = 0; c < C; ++c) {
      float v = std::nearbyint(xp[c] * scale[c]);
      v = v > 127.f ? 127.f : v;
      v = v < -127.f ? -127.f : v;
      qp[c] = int8_t(v == v ? int(v) : 0);  // NaN channels: their NaN scale makes their outputs NaN
    }
  }
}

// Image n of x (pixels x C floats) quantized per channel (scale[c] as DepthwiseConv2D's
// quantization: Keras's abs-max over the image's pixels of that channel) into q.
void quantize_image_channels(const float* x, int64_t pixels, int64_t C, float* scale, int8_t* q) {
  std::vector<float> mx(static_cast<size_t>(C));
  std::vector<uint8_t> nan(static_cast<size_t>(C));
  channel_abs_max(x, pixels, C, mx.data(), nan.data());
  for (int64_t c = 0; c < C; ++c) scale[c] = nan[size_t(c)] ? std::nanf("") : 127.f / (mx[size_t(c)] + 1e-7f);
  quantize_pixels(x, pixels, C, scale, q);
}

// The int32 sums of output pixel (oh, ow) over its taps (acc: C * DM), from quantized inputs T
// (int8, or a fused group's bytes) and int8 or int32 weights WT.
template <class T, class WT>
inline void dw_sums(const QdwGeom& g, const T* qn, const WT* w, int64_t oh, int64_t ow, int32_t* __restrict acc) {
  const int64_t C = g.C, DM = g.DM, CO = C * DM;
  for (int64_t c = 0; c < CO; ++c) acc[c] = 0;
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
    if (ih < 0 || ih >= g.H) continue;
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      const int64_t iw = ow * g.sw - g.pl + kw * g.dw;
      if (iw < 0 || iw >= g.W) continue;
      const T* __restrict xp = qn + (ih * g.W + iw) * C;
      const WT* __restrict wp = w + (kh * g.KW + kw) * CO;
      if (DM == 1) {
        for (int64_t c = 0; c < C; ++c) acc[c] += int32_t(xp[c]) * int32_t(wp[c]);
      } else {
        for (int64_t c = 0; c < C; ++c)
          for (int64_t m = 0; m < DM; ++m) acc[c * DM + m] += int32_t(xp[c]) * int32_t(wp[c * DM + m]);
      }
    }
  }
}

// One output row (n, oh) of a quantized depthwise convolution: every output pixel's channels
// summed over the taps in int32, then scaled. acc: C * DM int32 scratch.
LAMINA_CLONES void dw_row(const QdwGeom& g, const int8_t* qn, const int8_t* w, int64_t oh, const float* den,
                          const float* bias, int32_t* acc, float* yrow) {
  const int64_t CO = g.C * g.DM;
  for (int64_t ow = 0; ow < g.OW; ++ow) {
    dw_sums(g, qn, w, oh, ow, acc);
    float* y = yrow + ow * CO;
    if (bias) {
      for (int64_t c = 0; c < CO; ++c) y[c] = float(acc[c]) / den[c] + bias[c];
    } else {
      for (int64_t c = 0; c < CO; ++c) y[c] = float(acc[c]) / den[c];
    }
  }
}

void qdepthwise2d(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws, const Buffer& scale_b,
                  const Buffer* bias_b, Buffer& ob, const Shape& os, const Shape& strides, const Shape& dilation,
                  const Shape& pads) {
  int64_t N = 0;
  const QdwGeom g = quant::check_qdepthwise2d(xb, xs, wb, ws, scale_b, bias_b, ob, os, strides, dilation, pads, &N);
  const int64_t H = g.H, W = g.W, C = g.C, DM = g.DM, OH = g.OH, OW = g.OW, CO = C * DM;
  const float* x = xb.data<float>();
  const int8_t* w = wb.data<int8_t>();
  const float* wsc = scale_b.data<float>();
  const float* bias = bias_b ? bias_b->data<float>() : nullptr;
  float* y = ob.data<float>();
  if (N * OH * OW * CO == 0) return;
  // 1. per (image, channel) scales and the quantized images
  const int64_t img = H * W * C;
  std::vector<float> den(static_cast<size_t>(N * CO));
  std::vector<int8_t> qx(static_cast<size_t>(N * img));
#pragma omp parallel for if (N * img > (1 << 16))
  for (int64_t n = 0; n < N; ++n) {
    std::vector<float> sc(static_cast<size_t>(C));
    quantize_image_channels(x + n * img, H * W, C, sc.data(), qx.data() + n * img);
    for (int64_t c = 0; c < C; ++c)
      for (int64_t m = 0; m < DM; ++m) den[size_t(n * CO + c * DM + m)] = wsc[c * DM + m] * sc[size_t(c)];
  }
  // 2. the taps, summed in int32 per output channel, one task per output row
#pragma omp parallel
  {
    std::vector<int32_t> acc(static_cast<size_t>(CO));
#pragma omp for schedule(static)
    for (int64_t row = 0; row < N * OH; ++row) {
      const int64_t n = row / OH, oh = row % OH;
      dw_row(g, qx.data() + n * img, w, oh, den.data() + n * CO, bias, acc.data(), y + row * OW * CO);
    }
  }
}

// ---- fused groups -------------------------------------------------------------------------------

// Output channel c of one output pixel: v = float(sum_taps qx * qw) * F[c] + G[c], where F and G
// fold the scales, the bias and the BatchNormalization (v = acc / (w_scale * x_scale) + bias,
// then * A + D), then clamped to [lo, hi] (NaN kept) and stored as float or bytes.
struct DwEpi {
  const float* F;
  const float* G;
  float lo, hi, out_mul;
  float* out_f;
  uint8_t* out_u8;
  int32_t* flag;  // this image's flag, or null
};

// One output row (n, oh) of a fused depthwise convolution (depth multiplier DM), from quantized
// input values T (int8 of a float input, or the bytes of a fused group), int32 sums.
template <class T>
LAMINA_CLONES void dw_row_fused(const QdwGeom& g, const T* qn, const int32_t* w32, int64_t oh, const DwEpi& e,
                                int32_t* acc, int64_t row_off) {
  const int64_t CO = g.C * g.DM;
  for (int64_t ow = 0; ow < g.OW; ++ow) {
    dw_sums(g, qn, w32, oh, ow, acc);
    const int64_t o = row_off + ow * CO;
    bool nan = false;
    if (e.out_u8) {
      uint8_t* __restrict y = e.out_u8 + o;
      for (int64_t c = 0; c < CO; ++c) {
        const float v = float(acc[c]) * e.F[c] + e.G[c];
        nan |= v != v;
        y[c] = qgemm::to_byte(qgemm::clamp_keep_nan(v, e.lo, e.hi), e.out_mul);
      }
    } else {
      float* __restrict y = e.out_f + o;
      for (int64_t c = 0; c < CO; ++c) y[c] = qgemm::clamp_keep_nan(float(acc[c]) * e.F[c] + e.G[c], e.lo, e.hi);
    }
    if (nan && e.flag) __atomic_store_n(e.flag, 1, __ATOMIC_RELAXED);
  }
}

#if defined(__x86_64__) || defined(_M_X64)
// dw_row_fused for byte input and depth multiplier 1 with AVX-512: 16 channels a vector, the
// bytes widened to float and multiplied by the int8 weights held as floats (wf). Every product
// and partial sum is an integer below 2^24 (at most 517 taps of 255 * 127), so the float sums
// equal the int32 ones.
#define LAMINA_DW_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

// The epilogue of DwEpi on 16 channels (mask m) of one output pixel at offset o.
LAMINA_DW_TARGET inline void dw_store(const DwEpi& e, __m512 acc, __mmask16 m, int64_t c0, int64_t o, bool& nan) {
  __m512 v = _mm512_fmadd_ps(acc, _mm512_maskz_loadu_ps(m, e.F + c0), _mm512_maskz_loadu_ps(m, e.G + c0));
  if (e.lo > -INFINITY) {
    const __m512 lo = _mm512_set1_ps(e.lo);
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, lo, _CMP_LT_OQ), lo);
  }
  if (e.hi < INFINITY) {
    const __m512 hi = _mm512_set1_ps(e.hi);
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, hi, _CMP_GT_OQ), hi);
  }
  if (e.out_u8) {
    const __mmask16 bad = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & m;
    nan |= bad != 0;
    __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v, _mm512_set1_ps(e.out_mul)));
    q = _mm512_max_epi32(_mm512_maskz_mov_epi32(__mmask16(~bad), q), _mm512_setzero_si512());
    _mm512_mask_cvtusepi32_storeu_epi8(e.out_u8 + o, m, q);
  } else {
    _mm512_mask_storeu_ps(e.out_f + o, m, v);
  }
}

LAMINA_DW_TARGET inline __m512 dw_load(const uint8_t* p, __mmask16 m) {
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p)));
}

// dw_row_fused for byte input and depth multiplier 1 with AVX-512: 16 channels a vector, the
// bytes widened to float and multiplied by the int8 weights held as floats (wf). Every product
// and partial sum is an integer below 2^24 (at most 517 taps of 255 * 127), so the float sums
// equal the int32 ones. Four output pixels at a time where their windows lie inside the row
// (four independent sums: one would wait on each multiply-add), one at a time at the edges.
// Few channels (C = 16 / P for P = 2, 4, 8, 16), stride and dilation 1 along the row: P pixels
// share a vector (their taps lie side by side in memory), wf16 / e16 hold the weights and the
// epilogue's F and G repeated P times.
LAMINA_DW_TARGET void dw_row_u8_avx512(const QdwGeom& g, const uint8_t* qn, const float* wf, int64_t oh,
                                       const DwEpi& e, int64_t row_off, const float* wf16, const DwEpi* e16) {
  const int64_t C = g.C;
  const int64_t kh0 = std::max<int64_t>(0, (g.pt - oh * g.sh + g.dh - 1) / g.dh);
  const int64_t kh1 = std::min<int64_t>(g.KH, (g.H + g.pt - oh * g.sh + g.dh - 1) / g.dh);
  const int64_t step = g.sw * C, reach = (g.KW - 1) * g.dw;  // input offset between neighbours; window span - 1
  bool nan = false;
  int64_t ow = 0;
  const int64_t span = wf16 ? 4 * (16 / C) : 0;  // pixels of four shared vectors
  while (ow < g.OW) {
    if (wf16 && ow + span <= g.OW && ow - g.pl >= 0 && ow - g.pl + span - 1 + reach < g.W) {
      __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
        const uint8_t* xr = qn + (ih * g.W + ow - g.pl) * C;
        const float* wr = wf16 + kh * g.KW * 16;
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const uint8_t* xp = xr + kw * C;
          const __m512 w = _mm512_loadu_ps(wr + kw * 16);
          a0 = _mm512_fmadd_ps(dw_load(xp, 0xFFFF), w, a0);
          a1 = _mm512_fmadd_ps(dw_load(xp + 16, 0xFFFF), w, a1);
          a2 = _mm512_fmadd_ps(dw_load(xp + 32, 0xFFFF), w, a2);
          a3 = _mm512_fmadd_ps(dw_load(xp + 48, 0xFFFF), w, a3);
        }
      }
      const int64_t o = row_off + ow * C;
      dw_store(*e16, a0, 0xFFFF, 0, o, nan);
      dw_store(*e16, a1, 0xFFFF, 0, o + 16, nan);
      dw_store(*e16, a2, 0xFFFF, 0, o + 32, nan);
      dw_store(*e16, a3, 0xFFFF, 0, o + 48, nan);
      ow += span;
      continue;
    }
    const int64_t base_w = ow * g.sw - g.pl;
    if (ow + 4 <= g.OW && base_w >= 0 && base_w + 3 * g.sw + reach < g.W) {
      for (int64_t c0 = 0; c0 < C; c0 += 16) {
        const __mmask16 m = C - c0 >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (C - c0)) - 1);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t kh = kh0; kh < kh1; ++kh) {
          const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
          const uint8_t* xr = qn + (ih * g.W + base_w) * C + c0;
          const float* wr = wf + kh * g.KW * C + c0;
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            const uint8_t* xp = xr + kw * g.dw * C;
            const __m512 w = _mm512_maskz_loadu_ps(m, wr + kw * C);
            a0 = _mm512_fmadd_ps(dw_load(xp, m), w, a0);
            a1 = _mm512_fmadd_ps(dw_load(xp + step, m), w, a1);
            a2 = _mm512_fmadd_ps(dw_load(xp + 2 * step, m), w, a2);
            a3 = _mm512_fmadd_ps(dw_load(xp + 3 * step, m), w, a3);
          }
        }
        const int64_t o = row_off + ow * C + c0;
        dw_store(e, a0, m, c0, o, nan);
        dw_store(e, a1, m, c0, o + C, nan);
        dw_store(e, a2, m, c0, o + 2 * C, nan);
        dw_store(e, a3, m, c0, o + 3 * C, nan);
      }
      ow += 4;
      continue;
    }
    const int64_t kw0 = std::max<int64_t>(0, (-base_w + g.dw - 1) / g.dw);
    const int64_t kw1 = std::min<int64_t>(g.KW, (g.W - base_w + g.dw - 1) / g.dw);
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const __mmask16 m = C - c0 >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (C - c0)) - 1);
      __m512 acc = _mm512_setzero_ps();
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
        const uint8_t* xr = qn + ih * g.W * C + c0;
        const float* wr = wf + kh * g.KW * C + c0;
        for (int64_t kw = kw0; kw < kw1; ++kw)
          acc = _mm512_fmadd_ps(dw_load(xr + (base_w + kw * g.dw) * C, m), _mm512_maskz_loadu_ps(m, wr + kw * C), acc);
      }
      dw_store(e, acc, m, c0, row_off + ow * C + c0, nan);
    }
    ++ow;
  }
  if (nan && e.flag) __atomic_store_n(e.flag, 1, __ATOMIC_RELAXED);
}

#define LAMINA_DW_AVX2 __attribute__((target("avx2,fma")))

// The epilogue of DwEpi on 8 channels (c0 .. c0 + 7) of one output pixel at offset o, as dw_store.
LAMINA_DW_AVX2 inline void dw_store8(const DwEpi& e, __m256 acc, int64_t c0, int64_t o, bool& nan) {
  const __m256 v = _mm256_fmadd_ps(acc, _mm256_loadu_ps(e.F + c0), _mm256_loadu_ps(e.G + c0));
  nan |= qavx2::store8_clamped(v, e.lo, e.hi, e.out_mul, e.out_u8 ? nullptr : e.out_f + o,
                               e.out_u8 ? e.out_u8 + o : nullptr);
}

LAMINA_DW_AVX2 inline __m256 dw_load8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// dw_row_u8_avx512 for AVX2 CPUs and C a multiple of 8: 8 channels a vector, the same float sums
// (exact, as there), four output pixels at a time inside the row, one at a time at its edges.
LAMINA_DW_AVX2 void dw_row_u8_avx2(const QdwGeom& g, const uint8_t* qn, const float* wf, int64_t oh, const DwEpi& e,
                                   int64_t row_off) {
  const int64_t C = g.C;
  const int64_t kh0 = std::max<int64_t>(0, (g.pt - oh * g.sh + g.dh - 1) / g.dh);
  const int64_t kh1 = std::min<int64_t>(g.KH, (g.H + g.pt - oh * g.sh + g.dh - 1) / g.dh);
  const int64_t step = g.sw * C, reach = (g.KW - 1) * g.dw;
  bool nan = false;
  int64_t ow = 0;
  while (ow < g.OW) {
    const int64_t base_w = ow * g.sw - g.pl;
    if (ow + 4 <= g.OW && base_w >= 0 && base_w + 3 * g.sw + reach < g.W) {
      for (int64_t c0 = 0; c0 < C; c0 += 8) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t kh = kh0; kh < kh1; ++kh) {
          const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
          const uint8_t* xr = qn + (ih * g.W + base_w) * C + c0;
          const float* wr = wf + kh * g.KW * C + c0;
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            const uint8_t* xp = xr + kw * g.dw * C;
            const __m256 w = _mm256_loadu_ps(wr + kw * C);
            a0 = _mm256_fmadd_ps(dw_load8(xp), w, a0);
            a1 = _mm256_fmadd_ps(dw_load8(xp + step), w, a1);
            a2 = _mm256_fmadd_ps(dw_load8(xp + 2 * step), w, a2);
            a3 = _mm256_fmadd_ps(dw_load8(xp + 3 * step), w, a3);
          }
        }
        const int64_t o = row_off + ow * C + c0;
        dw_store8(e, a0, c0, o, nan);
        dw_store8(e, a1, c0, o + C, nan);
        dw_store8(e, a2, c0, o + 2 * C, nan);
        dw_store8(e, a3, c0, o + 3 * C, nan);
      }
      ow += 4;
      continue;
    }
    const int64_t kw0 = std::max<int64_t>(0, (-base_w + g.dw - 1) / g.dw);
    const int64_t kw1 = std::min<int64_t>(g.KW, (g.W - base_w + g.dw - 1) / g.dw);
    for (int64_t c0 = 0; c0 < C; c0 += 8) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
        const uint8_t* xr = qn + ih * g.W * C + c0;
        const float* wr = wf + kh * g.KW * C + c0;
        for (int64_t kw = kw0; kw < kw1; ++kw)
          acc = _mm256_fmadd_ps(dw_load8(xr + (base_w + kw * g.dw) * C), _mm256_loadu_ps(wr + kw * C), acc);
      }
      dw_store8(e, acc, c0, row_off + ow * C + c0, nan);
    }
    ++ow;
  }
  if (nan && e.flag) __atomic_store_n(e.flag, 1, __ATOMIC_RELAXED);
}

// The vector paths run with the VNNI (AVX-512) or AVX2 / AVX-VNNI GEMM kernel (set_qgemm_kernel("generic")
// switches both to their portable forms, for tests).
bool dw_kernel_fast() { return qgemm::kernel_name() == "vnni"; }
bool dw_kernel_avx2() { return qgemm::kernel_name() == "avx2" || qgemm::kernel_name() == "avxvnni"; }
#define LAMINA_DW_AVX512 1
#else
bool dw_kernel_fast() { return false; }
bool dw_kernel_avx2() { return false; }
#define LAMINA_DW_AVX512 0
#endif

// A DepthwiseConv2D (+ BatchNormalization + clamp) of a fused group: float input (quantized per
// image and channel, as qdepthwise2d) or bytes (x_step > 0: value = byte * x_step); float output
// or bytes (out_step > 0). flags: the images' NaN marks (set here where a byte output would be NaN;
// read where a byte input meets a float output, whose marked images become NaN).
void qdepthwise2d_fused(const Buffer& xb, const Shape& xs, double x_step, const Buffer& wb, const Shape& ws,
                        const Buffer& scale_b, const Buffer* bias_b, const Buffer* bn_mean, const Buffer* bn_var,
                        const Buffer* bn_gamma, const Buffer* bn_beta, double bn_eps, double lo, double hi, Buffer& ob,
                        const Shape& os, double out_step, Buffer* flags, const Shape& strides, const Shape& dilation,
                        const Shape& pads) {
  const char* op = "qdepthwise2d_fused";
  int64_t N = 0;
  const QdwGeom g = quant::check_qdepthwise2d_fused(xb, xs, x_step, wb, ws, os, strides, dilation, pads, &N);
  const int64_t H = g.H, W = g.W, C = g.C, KH = g.KH, KW = g.KW, DM = g.DM, OH = g.OH, OW = g.OW, CO = C * DM;
  std::vector<float> A, D;
  const qgemm::Epilogue ep = qgemm::fused_epilogue(op, CO, scale_b, bias_b, bn_mean, bn_var, bn_gamma, bn_beta,
                                                   bn_eps, lo, hi, ob, N * OH * OW * CO, out_step, flags, N, A, D);
  if (N * OH * OW * CO == 0) return;
  const int8_t* w = wb.data<int8_t>();
  std::vector<int32_t> w32(w, w + KH * KW * CO);
  const int64_t img = H * W * C;
  // F (per image for a float input: its channels' scales) and G, as DwEpi says
  std::vector<float> F(static_cast<size_t>((x_step > 0 ? 1 : N) * CO)), G(static_cast<size_t>(CO));
  for (int64_t c = 0; c < CO; ++c) {  // ep.F = A / w_scale, ep.G = bias * A + D
    G[size_t(c)] = ep.G[c];
    if (x_step > 0) F[size_t(c)] = ep.F[c] * float(x_step);
  }
  std::vector<int8_t> qx;
  if (x_step <= 0) {  // per (image, channel) scales, as qdepthwise2d
    const float* x = xb.data<float>();
    qx.resize(static_cast<size_t>(N * img));
#pragma omp parallel for if (N * img > (1 << 16))
    for (int64_t n = 0; n < N; ++n) {
      std::vector<float> sc(static_cast<size_t>(C));
      quantize_image_channels(x + n * img, H * W, C, sc.data(), qx.data() + n * img);
      for (int64_t c = 0; c < C; ++c)
        for (int64_t m = 0; m < DM; ++m) {
          const int64_t co = c * DM + m;
          F[size_t(n * CO + co)] = ep.F[co] / sc[size_t(c)];
        }
    }
  }
  int32_t* fl = flags ? flags->data<int32_t>() : nullptr;
  const uint8_t* xu = x_step > 0 ? reinterpret_cast<const uint8_t*>(xb.data<int8_t>()) : nullptr;
  const bool par = N * OH * OW * CO * KH * KW > (1 << 15);
  const int64_t R = N * OH;
  const bool fast = xu && DM == 1 && KH * KW <= 512 && dw_kernel_fast();
  const bool fast8 = xu && DM == 1 && KH * KW <= 512 && C % 8 == 0 && dw_kernel_avx2();
  std::vector<float> wf(fast || fast8 ? w32.begin() : w32.end(), w32.end());
  // few channels: P = 16 / C pixels a vector (dw_row_u8_avx512)
  const bool shared = fast && C < 16 && 16 % C == 0 && strides[1] == 1 && dilation[1] == 1;
  std::vector<float> wf16, F16, G16;
  if (shared) {
    wf16.resize(size_t(KH * KW * 16));
    F16.resize(16);
    G16.resize(16);
    for (int64_t i = 0; i < 16; ++i) {
      F16[size_t(i)] = F[size_t(i % C)];
      G16[size_t(i)] = G[size_t(i % C)];
      for (int64_t t = 0; t < KH * KW; ++t) wf16[size_t(t * 16 + i)] = wf[size_t(t * C + i % C)];
    }
  }
  run_parallel(par, [&](int T, int t) {
    std::vector<int32_t> acc(static_cast<size_t>(CO));
    for (int64_t row = R * t / T; row < R * (t + 1) / T; ++row) {
      const int64_t n = row / OH, oh = row % OH;
      DwEpi e{F.data() + (x_step > 0 ? 0 : n * CO), G.data(), ep.lo, ep.hi, ep.out_mul, ep.out_f, ep.out_u8,
              fl ? fl + n : nullptr};
#if LAMINA_DW_AVX512
      if (fast) {
        DwEpi e16 = e;
        e16.F = F16.data();
        e16.G = G16.data();
        dw_row_u8_avx512(g, xu + n * img, wf.data(), oh, e, row * OW * CO, shared ? wf16.data() : nullptr, &e16);
        continue;
      }
      if (fast8) {
        dw_row_u8_avx2(g, xu + n * img, wf.data(), oh, e, row * OW * CO);
        continue;
      }
#endif
      if (xu) dw_row_fused<uint8_t>(g, xu + n * img, w32.data(), oh, e, acc.data(), row * OW * CO);
      else dw_row_fused<int8_t>(g, qx.data() + n * img, w32.data(), oh, e, acc.data(), row * OW * CO);
    }
  });
  if (xu && fl && ep.out_f) qgemm::poison_images(ep.out_f, N, OH * OW * CO, fl);
}

// out[i, :] = float(table[ids[i], :]) / scale[ids[i]]; an id outside [0, V) is an error.
void qembedding(const Buffer& table, int64_t V, int64_t D, const Buffer& scale, const Buffer& ids, Buffer& out) {
  quant::check_qembedding(table, V, D, scale, ids, out);
  const int8_t* t = table.data<int8_t>();
  const float* s = scale.data<float>();
  float* o = out.data<float>();
  const int64_t n = ids.numel;
  auto id_at = [&](int64_t i) -> int64_t {
    return ids.dtype == I32 ? int64_t(ids.data<int32_t>()[i]) : ids.data<int64_t>()[i];
  };
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = id_at(i);
    if (r < 0 || r >= V) throw std::invalid_argument(quant::qembedding_id_message(r, i, V));
  }
#pragma omp parallel for if (n * D > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = id_at(i);
    const int8_t* row = t + r * D;
    const float sc = s[r];
    float* dst = o + i * D;
    for (int64_t d = 0; d < D; ++d) dst[d] = float(row[d]) / sc;
  }
}

}  // namespace

namespace qgemm {

Epilogue fused_epilogue(const char* op, int64_t C, const Buffer& w_scale, const Buffer* bias, const Buffer* bn_mean,
                        const Buffer* bn_var, const Buffer* bn_gamma, const Buffer* bn_beta, double bn_eps, double lo,
                        double hi, Buffer& out, int64_t out_numel, double out_step, Buffer* flags, int64_t images,
                        std::vector<float>& A, std::vector<float>& D) {
  quant::check_fused_epilogue(op, C, w_scale, bias, bn_mean, bn_var, bn_gamma, bn_beta, lo, hi, out, out_numel, out_step,
                              flags, images);
  Epilogue e;
  e.w_scale = w_scale.data<float>();
  e.bias = bias ? bias->data<float>() : nullptr;
  // folded: F = A / w_scale, G = bias * A + D (A = 1, D = 0 without a normalization)
  A.assign(size_t(C), 1.f);
  D.assign(size_t(C), 0.f);
  if (bn_mean)
    bn_affine(bn_mean->data<float>(), bn_var->data<float>(), bn_gamma ? bn_gamma->data<float>() : nullptr,
              bn_beta ? bn_beta->data<float>() : nullptr, bn_eps, C, A.data(), D.data());
  for (int64_t c = 0; c < C; ++c) {
    const float a = A[size_t(c)];
    D[size_t(c)] = (e.bias ? e.bias[c] * a : 0.f) + D[size_t(c)];
    A[size_t(c)] = a / e.w_scale[c];
  }
  e.F = A.data();
  e.G = D.data();
  e.lo = float(lo);
  e.hi = float(hi);
  if (out_step > 0) {
    e.out_u8 = reinterpret_cast<uint8_t*>(out.data<int8_t>());
    e.out_mul = float(1.0 / out_step);
  } else {
    e.out_f = out.data<float>();
  }
  e.ldo = C;
  e.flags = flags ? flags->data<int32_t>() : nullptr;
  return e;
}

}  // namespace qgemm

void bind_quantize(py::module_& m) {
  def_kernel(m, "qdepthwise2d_fused", &qdepthwise2d_fused, py::arg("x"), py::arg("x_shape"), py::arg("x_step"),
             py::arg("w"), py::arg("w_shape"), py::arg("w_scale"), py::arg("bias").none(true),
             py::arg("bn_mean").none(true), py::arg("bn_var").none(true), py::arg("bn_gamma").none(true),
             py::arg("bn_beta").none(true), py::arg("bn_eps"), py::arg("lo"), py::arg("hi"), py::arg("out"),
             py::arg("out_shape"), py::arg("out_step"), py::arg("flags").none(true), py::arg("strides"),
             py::arg("dilation"), py::arg("pads"));
  def_kernel(m, "qgemm_pack", &qgemm_pack, py::arg("weights"), py::arg("K"), py::arg("N"), py::arg("packed"),
             py::arg("colsum"));
  def_kernel(m, "qmatmul", &qmatmul, py::arg("x"), py::arg("M"), py::arg("K"), py::arg("N"), py::arg("packed"),
             py::arg("colsum"), py::arg("w_scale"), py::arg("bias").none(true), py::arg("out"), py::arg("relu") = false);
  def_kernel(m, "qdepthwise2d", &qdepthwise2d, py::arg("x"), py::arg("x_shape"), py::arg("w"), py::arg("w_shape"),
             py::arg("w_scale"), py::arg("bias").none(true), py::arg("out"), py::arg("out_shape"), py::arg("strides"),
             py::arg("dilation"), py::arg("pads"));
  def_kernel(m, "qembedding", &qembedding, py::arg("table"), py::arg("V"), py::arg("D"), py::arg("scale"),
             py::arg("ids"), py::arg("out"));
  m.def("qgemm_packed_bytes", &qgemm::packed_bytes, py::arg("K"), py::arg("N"));
  m.def("qgemm_kernel", &qgemm::kernel_name,
        "The int8 GEMM micro-kernel in use: 'vnni', 'avxvnni', 'avx2' or 'generic'");
  m.def("set_qgemm_kernel", &qgemm::set_kernel, py::arg("name"));
}

}  // namespace lamina
