// Kernels of quantized (int8) inference, Keras 3's "int8" mode (layers' quantize("int8")):
//   qgemm_pack       int8 weights (K, N) -> the packed panels and column sums of qgemm.h
//   qmatmul          Dense: rows of the float input quantized on the fly, int8 x int8 products
//                    with int32 sums, out = sums / (w_scale * a_scale) + bias (qgemm.h)
//   qdepthwise2d     DepthwiseConv2D: each image quantized with one scale (abs max over the
//                    image), int8 taps summed in int32 per channel, the same float epilogue
//   qembedding       Embedding: rows of an int8 table divided by their scales
// (Conv2D's qconv2d lives in conv.cpp, beside its im2col.) int8 buffers hold quantized weights
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
#include "simd.h"

namespace py = pybind11;

namespace lamina {

namespace {

void check_vec(const char* op, const char* what, const Buffer& b, int64_t n, DType dt) {
  check_dtype(op, what, b, dt);
  LAMINA_CHECK(b.numel == n, op << ": " << what << " holds " << b.numel << " elements, expected " << n);
}

void qgemm_pack(const Buffer& w, int64_t K, int64_t N, Buffer& packed, Buffer& colsum) {
  const char* op = "qgemm_pack";
  LAMINA_CHECK(K >= 0 && N >= 0, op << ": negative size K=" << K << ", N=" << N);
  check_vec(op, "weights", w, K * N, I8);
  check_vec(op, "packed weights", packed, qgemm::packed_bytes(K, N), I8);
  check_vec(op, "column sums", colsum, N, I32);
  qgemm::pack(w.data<int8_t>(), K, N, packed.data<int8_t>(), colsum.data<int32_t>());
}

void qmatmul(const Buffer& x, int64_t M, int64_t K, int64_t N, const Buffer& packed, const Buffer& colsum,
             const Buffer& w_scale, const Buffer* bias, Buffer& out, bool relu) {
  const char* op = "qmatmul";
  LAMINA_CHECK(M >= 0 && K >= 0 && N >= 0, op << ": negative size M=" << M << ", K=" << K << ", N=" << N);
  check_vec(op, "input", x, M * K, F32);
  check_vec(op, "packed weights", packed, qgemm::packed_bytes(K, N), I8);
  check_vec(op, "column sums", colsum, N, I32);
  check_vec(op, "kernel scale", w_scale, N, F32);
  if (bias) check_vec(op, "bias", *bias, N, F32);
  check_vec(op, "output", out, M * N, F32);
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

struct QdwGeom {
  int64_t H, W, C, KH, KW, DM, OH, OW, sh, sw, dh, dw, pt, pl;
};

// One output row (n, oh) of a quantized depthwise convolution: every output pixel's channels
// summed over the taps in int32, then scaled. acc: C * DM int32 scratch.
LAMINA_CLONES void dw_row(const QdwGeom& g, const int8_t* qn, const int8_t* w, int64_t oh, const float* den,
                          const float* bias, int32_t* acc, float* yrow) {
  const int64_t C = g.C, DM = g.DM, CO = C * DM;
  for (int64_t ow = 0; ow < g.OW; ++ow) {
    for (int64_t c = 0; c < CO; ++c) acc[c] = 0;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
      if (ih < 0 || ih >= g.H) continue;
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t iw = ow * g.sw - g.pl + kw * g.dw;
        if (iw < 0 || iw >= g.W) continue;
        const int8_t* xp = qn + (ih * g.W + iw) * C;
        const int8_t* wp = w + (kh * g.KW + kw) * CO;
        if (DM == 1) {
          for (int64_t c = 0; c < C; ++c) acc[c] += int32_t(xp[c]) * int32_t(wp[c]);
        } else {
          for (int64_t c = 0; c < C; ++c)
            for (int64_t m = 0; m < DM; ++m) acc[c * DM + m] += int32_t(xp[c]) * int32_t(wp[c * DM + m]);
        }
      }
    }
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
  const char* op = "qdepthwise2d";
  LAMINA_CHECK(xs.size() == 4 && ws.size() == 4 && os.size() == 4,
               op << ": expected rank-4 input, kernel and output shapes, received " << shape_str(xs) << ", "
                  << shape_str(ws) << ", " << shape_str(os));
  check_pair(op, "strides", strides, 1);
  check_pair(op, "dilation", dilation, 1);
  LAMINA_CHECK(pads.size() == 4, op << ": expected 4 padding values (top, bottom, left, right)");
  for (auto p : pads) LAMINA_CHECK(p >= 0, op << ": padding must be non-negative, received " << p);
  const int64_t N = xs[0], H = xs[1], W = xs[2], C = xs[3], KH = ws[0], KW = ws[1], DM = ws[3];
  LAMINA_CHECK(ws[2] == C && KH >= 1 && KW >= 1 && DM >= 1,
               op << ": kernel shape " << shape_str(ws) << " does not fit input " << shape_str(xs));
  const int64_t OH = window_out_len(H + pads[0] + pads[1], KH, strides[0], dilation[0]);
  const int64_t OW = window_out_len(W + pads[2] + pads[3], KW, strides[1], dilation[1]);
  const int64_t CO = C * DM;
  LAMINA_CHECK(os[0] == N && os[1] == OH && os[2] == OW && os[3] == CO,
               op << ": output shape " << shape_str(os) << " does not match; expected (" << N << ", " << OH << ", "
                  << OW << ", " << CO << ")");
  check_vec(op, "input", xb, N * H * W * C, F32);
  check_vec(op, "kernel", wb, KH * KW * C * DM, I8);
  check_vec(op, "kernel scale", scale_b, CO, F32);
  if (bias_b) check_vec(op, "bias", *bias_b, CO, F32);
  check_vec(op, "output", ob, N * OH * OW * CO, F32);
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
    std::vector<float> mx(static_cast<size_t>(C)), sc(static_cast<size_t>(C));
    std::vector<uint8_t> nan(static_cast<size_t>(C));
    channel_abs_max(x + n * img, H * W, C, mx.data(), nan.data());
    for (int64_t c = 0; c < C; ++c) sc[size_t(c)] = nan[size_t(c)] ? std::nanf("") : 127.f / (mx[size_t(c)] + 1e-7f);
    quantize_pixels(x + n * img, H * W, C, sc.data(), qx.data() + n * img);
    for (int64_t c = 0; c < C; ++c)
      for (int64_t m = 0; m < DM; ++m) den[size_t(n * CO + c * DM + m)] = wsc[c * DM + m] * sc[size_t(c)];
  }
  // 2. the taps, summed in int32 per output channel, one task per output row
  const QdwGeom g{H, W, C, KH, KW, DM, OH, OW, strides[0], strides[1], dilation[0], dilation[1], pads[0], pads[2]};
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

// out[i, :] = float(table[ids[i], :]) / scale[ids[i]]; an id outside [0, V) is an error.
void qembedding(const Buffer& table, int64_t V, int64_t D, const Buffer& scale, const Buffer& ids, Buffer& out) {
  const char* op = "qembedding";
  check_vec(op, "table", table, V * D, I8);
  check_vec(op, "scale", scale, V, F32);
  LAMINA_CHECK(ids.dtype == I32 || ids.dtype == I64, op << ": expected int32 or int64 ids, received "
                                                        << dtype_name(ids.dtype));
  check_vec(op, "output", out, ids.numel * D, F32);
  const int8_t* t = table.data<int8_t>();
  const float* s = scale.data<float>();
  float* o = out.data<float>();
  const int64_t n = ids.numel;
  auto id_at = [&](int64_t i) -> int64_t {
    return ids.dtype == I32 ? int64_t(ids.data<int32_t>()[i]) : ids.data<int64_t>()[i];
  };
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = id_at(i);
    LAMINA_CHECK(r >= 0 && r < V, op << ": id " << r << " at position " << i << " is outside the table's "
                                     << V << " rows");
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

void bind_quantize(py::module_& m) {
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
  m.def("qgemm_kernel", &qgemm::kernel_name, "The int8 GEMM micro-kernel in use: 'vnni' or 'generic'");
  m.def("set_qgemm_kernel", &qgemm::set_kernel, py::arg("name"));
}

}  // namespace lamina
