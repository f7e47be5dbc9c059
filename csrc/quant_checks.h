// Shared by the CPU module (csrc/cpu/quantize.cpp, qgemm.cpp, conv.cpp) and csrc/cuda/quant.cu for
// the int8 inference kernels (qgemm_pack, qmatmul, qconv2d_forward, qconv2d_fused, qdepthwise2d,
// qdepthwise2d_fused, qembedding): the packed weight layout and the argument checks, with the same
// messages on every device, over any buffer type with `numel` and `dtype`. Checks that read the
// data (qembedding's ids) stay with each device.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "checks.h"
#include "conv_geom.h"

namespace lamina {
namespace quant {

// Optional (pointer) buffer parameters are not deduced, so that callers may pass nullptr.
template <class T> struct NoDeduce { using type = T; };
template <class T> using Opt = const typename NoDeduce<T>::type*;

// ---- the packed weights (qgemm_pack) -------------------------------------------------------------
// An int8 (K, N) weight matrix is packed into column panels of kPanel columns and groups of 4 k:
// panel p, group g holds qw[4g .. 4g+3, p*kPanel .. p*kPanel+kPanel-1] as [column][4 bytes], zero
// padded (byte ((p * G + g) * kPanel + c) * 4 + t is qw[4g + t, p*kPanel + c], G = ceil(K / 4)),
// beside the N int32 column sums of qw. Every device packs this layout, so a packed buffer means
// the same on each.
constexpr int kPanel = 32;
inline int64_t packed_bytes(int64_t K, int64_t N) { return (N + kPanel - 1) / kPanel * ((K + 3) / 4) * kPanel * 4; }

// int32 sums of int8 products hold at most this many terms (255 * 127 * 66000 < 2^31).
inline void check_inner(int64_t K) {
  LAMINA_CHECK(K <= 66000, "qmatmul: the inner dimension is " << K << "; int32 accumulation of int8 products holds "
                               "at most 66000 terms");
}

template <class B>
void check_vec(const char* op, const char* what, const B& b, int64_t n, DType dt) {
  check_dtype(op, what, b, dt);
  LAMINA_CHECK(b.numel == n, op << ": " << what << " holds " << b.numel << " elements, expected " << n);
}

template <class B>
void check_pack(const B& w, int64_t K, int64_t N, const B& packed, const B& colsum) {
  const char* op = "qgemm_pack";
  LAMINA_CHECK(K >= 0 && N >= 0, op << ": negative size K=" << K << ", N=" << N);
  check_vec(op, "weights", w, K * N, I8);
  check_vec(op, "packed weights", packed, packed_bytes(K, N), I8);
  check_vec(op, "column sums", colsum, N, I32);
}

template <class B>
void check_qmatmul(const B& x, int64_t M, int64_t K, int64_t N, const B& packed, const B& colsum, const B& w_scale,
                   Opt<B> bias, const B& out) {
  const char* op = "qmatmul";
  LAMINA_CHECK(M >= 0 && K >= 0 && N >= 0, op << ": negative size M=" << M << ", K=" << K << ", N=" << N);
  check_vec(op, "input", x, M * K, F32);
  check_vec(op, "packed weights", packed, packed_bytes(K, N), I8);
  check_vec(op, "column sums", colsum, N, I32);
  check_vec(op, "kernel scale", w_scale, N, F32);
  if (bias) check_vec(op, "bias", *bias, N, F32);
  check_vec(op, "output", out, M * N, F32);
}

// ---- convolutions (conv.cpp) ----------------------------------------------------------------------
template <class B>
void check_packed_kernel(const char* op, const Shape& ws, int64_t K, int64_t O, const B& packed) {
  check_dtype(op, "packed kernel", packed, I8);
  LAMINA_CHECK(packed.numel == packed_bytes(K, O), op << ": the packed kernel holds " << packed.numel
                   << " bytes, expected " << packed_bytes(K, O) << " for kernel shape " << shape_str(ws));
}

template <class B>
ConvGeom check_qconv2d(const B& x, const Shape& xs, const Shape& ws, const B& packed, const B& colsum,
                       const B& w_scale, Opt<B> bias, const B& out, const Shape& os, const Shape& strides,
                       const Shape& dilation, const Shape& pads) {
  const char* op = "qconv2d";
  check_buffer(op, "input", x, xs, F32);
  check_buffer(op, "output", out, os, F32);
  const ConvGeom g = conv_geom(op, xs, ws, os, strides, dilation, pads);
  const int64_t O = g.O;
  check_packed_kernel(op, ws, g.K(), O, packed);
  check_dtype(op, "column sums", colsum, I32);
  check_dtype(op, "kernel scale", w_scale, F32);
  LAMINA_CHECK(colsum.numel == O && w_scale.numel == O && (!bias || bias->numel == O),
               op << ": expected " << O << " column sums, scales and biases");
  if (bias) check_dtype(op, "bias", *bias, F32);
  return g;
}

// A fused group's input: float32 (x_step 0) or bytes standing for byte * x_step.
inline void check_x_step(const char* op, double x_step) {
  LAMINA_CHECK(x_step >= 0 && std::isfinite(x_step), op << ": x_step must be 0 (a float32 input) or the positive step "
                                                           "of a byte input, received " << x_step);
}

// The max pooling a fused convolution may end with (window = strides = pool, padding "valid"):
// empty or (1, 1) for none; returns whether there is one. A pooled group reads and writes float32.
inline bool check_qpool(const char* op, const Shape& pool, double x_step, double out_step) {
  if (pool.empty()) return false;
  LAMINA_CHECK(pool.size() == 2 && pool[0] >= 1 && pool[1] >= 1,
               op << ": pool must be empty or two window sizes of at least 1, received " << shape_str(pool));
  if (pool[0] * pool[1] == 1) return false;
  LAMINA_CHECK(x_step == 0 && out_step == 0,
               op << ": a pooled convolution reads and writes float32 (x_step and out_step 0), received x_step="
                  << x_step << ", out_step=" << out_step);
  return true;
}

// qconv2d_fused's geometry, input and packed kernel (its epilogue: check_fused_epilogue). With a
// pool (check_qpool), os is the pooled output's shape: (N, OH / pool[0], OW / pool[1], O) for the
// convolution's OH x OW; the geometry returned is the convolution's.
template <class B>
ConvGeom check_qconv2d_fused(const B& x, const Shape& xs, double x_step, const Shape& ws, const B& packed,
                             const B& colsum, const Shape& os, const Shape& strides, const Shape& dilation,
                             const Shape& pads, const Shape& pool = {}) {
  const char* op = "qconv2d_fused";
  Shape cs = os;  // the convolution's output shape
  const bool pooled = pool.size() == 2 && pool[0] * pool[1] > 1;
  if (pooled && xs.size() == 4 && ws.size() == 4 && os.size() == 4 && strides.size() == 2 && dilation.size() == 2 &&
      pads.size() == 4 && strides[0] >= 1 && strides[1] >= 1 && dilation[0] >= 1 && dilation[1] >= 1) {
    cs = {xs[0], window_out_len(xs[1] + pads[0] + pads[1], ws[0], strides[0], dilation[0]),
          window_out_len(xs[2] + pads[2] + pads[3], ws[1], strides[1], dilation[1]), ws[3]};
    LAMINA_CHECK(os[0] == cs[0] && os[1] == cs[1] / pool[0] && os[2] == cs[2] / pool[1] && os[3] == cs[3],
                 op << ": output shape " << shape_str(os) << " does not match the convolution's output "
                    << shape_str(cs) << " max-pooled by " << shape_str(pool) << "; expected (" << cs[0] << ", "
                    << cs[1] / pool[0] << ", " << cs[2] / pool[1] << ", " << cs[3] << ")");
  }
  const ConvGeom g = conv_geom(op, xs, ws, cs, strides, dilation, pads);
  const int64_t K = g.K(), O = g.O;
  check_x_step(op, x_step);
  check_buffer(op, "input", x, xs, x_step > 0 ? I8 : F32);
  LAMINA_CHECK(x_step <= 0 || g.direct(), op << ": a byte input takes a 1x1, stride-1, unpadded convolution only; "
                                                "kernel shape " << shape_str(ws) << ", input " << shape_str(xs));
  check_packed_kernel(op, ws, K, O, packed);
  check_dtype(op, "column sums", colsum, I32);
  LAMINA_CHECK(colsum.numel == O, op << ": expected " << O << " column sums, received " << colsum.numel);
  return g;
}

// The epilogue of a fused quantized convolution (qgemm.h's Epilogue): C output channels, w_scale,
// bias, the BatchNormalization's mean / variance / gamma / beta (C each, or null: no
// BatchNormalization; gamma and beta may be null alone), the clamp [lo, hi], out (`out_numel`
// float32 values, or an int8 buffer of bytes when out_step > 0), flags (`images` int32, or null).
template <class B>
void check_fused_epilogue(const char* op, int64_t C, const B& w_scale, Opt<B> bias, Opt<B> bn_mean, Opt<B> bn_var,
                          Opt<B> bn_gamma, Opt<B> bn_beta, double lo, double hi, const B& out, int64_t out_numel,
                          double out_step, Opt<B> flags, int64_t images) {
  check_vec(op, "kernel scale", w_scale, C, F32);
  if (bias) check_vec(op, "bias", *bias, C, F32);
  LAMINA_CHECK(!bn_mean == !bn_var, op << ": the BatchNormalization's mean and variance come together");
  LAMINA_CHECK(bn_mean || (!bn_gamma && !bn_beta), op << ": gamma or beta given without a mean and variance");
  for (const B* b : {bn_mean, bn_var, bn_gamma, bn_beta})
    if (b) check_vec(op, "BatchNormalization parameter", *b, C, F32);
  LAMINA_CHECK(!(lo > hi), op << ": the clamp's bounds are reversed: lo=" << lo << ", hi=" << hi);
  LAMINA_CHECK(out_step >= 0 && std::isfinite(out_step), op << ": out_step must be 0 (float32 output) or the positive "
                                                               "step of a byte output, received " << out_step);
  LAMINA_CHECK(out_step == 0 || lo >= 0, op << ": a byte output holds values >= 0 only; its clamp starts at " << lo);
  check_vec(op, "output", out, out_numel, out_step > 0 ? I8 : F32);
  if (flags) check_vec(op, "flags", *flags, images, I32);
}

// ---- depthwise convolutions (quantize.cpp) --------------------------------------------------------
struct QdwGeom {
  int64_t H, W, C, KH, KW, DM, OH, OW, sh, sw, dh, dw, pt, pl;
};

// The checked geometry of a depthwise convolution: input (n, h, w, c), kernel (kh, kw, c, dm),
// output (n, oh, ow, c * dm); *N receives the batch.
inline QdwGeom dw_geometry(const char* op, const Shape& xs, const Shape& ws, const Shape& os, const Shape& strides,
                           const Shape& dilation, const Shape& pads, int64_t* N) {
  LAMINA_CHECK(xs.size() == 4 && ws.size() == 4 && os.size() == 4,
               op << ": expected rank-4 input, kernel and output shapes, received " << shape_str(xs) << ", "
                  << shape_str(ws) << ", " << shape_str(os));
  check_pair(op, "strides", strides, 1);
  check_pair(op, "dilation", dilation, 1);
  LAMINA_CHECK(pads.size() == 4, op << ": expected 4 padding values (top, bottom, left, right)");
  for (auto p : pads) LAMINA_CHECK(p >= 0, op << ": padding must be non-negative, received " << p);
  const int64_t H = xs[1], W = xs[2], C = xs[3], KH = ws[0], KW = ws[1], DM = ws[3];
  *N = xs[0];
  LAMINA_CHECK(*N >= 0 && H >= 0 && W >= 0 && ws[2] == C && KH >= 1 && KW >= 1 && DM >= 1,
               op << ": kernel shape " << shape_str(ws) << " does not fit input " << shape_str(xs));
  const int64_t OH = window_out_len(H + pads[0] + pads[1], KH, strides[0], dilation[0]);
  const int64_t OW = window_out_len(W + pads[2] + pads[3], KW, strides[1], dilation[1]);
  LAMINA_CHECK(os[0] == *N && os[1] == OH && os[2] == OW && os[3] == C * DM,
               op << ": output shape " << shape_str(os) << " does not match; expected (" << *N << ", " << OH << ", "
                  << OW << ", " << C * DM << ")");
  return QdwGeom{H, W, C, KH, KW, DM, OH, OW, strides[0], strides[1], dilation[0], dilation[1], pads[0], pads[2]};
}

template <class B>
QdwGeom check_qdepthwise2d(const B& x, const Shape& xs, const B& w, const Shape& ws, const B& w_scale, Opt<B> bias,
                           const B& out, const Shape& os, const Shape& strides, const Shape& dilation,
                           const Shape& pads, int64_t* N) {
  const char* op = "qdepthwise2d";
  const QdwGeom g = dw_geometry(op, xs, ws, os, strides, dilation, pads, N);
  const int64_t CO = g.C * g.DM;
  check_vec(op, "input", x, *N * g.H * g.W * g.C, F32);
  check_vec(op, "kernel", w, g.KH * g.KW * g.C * g.DM, I8);
  check_vec(op, "kernel scale", w_scale, CO, F32);
  if (bias) check_vec(op, "bias", *bias, CO, F32);
  check_vec(op, "output", out, *N * g.OH * g.OW * CO, F32);
  return g;
}

// qdepthwise2d_fused's geometry, input and kernel (its epilogue: check_fused_epilogue).
template <class B>
QdwGeom check_qdepthwise2d_fused(const B& x, const Shape& xs, double x_step, const B& w, const Shape& ws,
                                 const Shape& os, const Shape& strides, const Shape& dilation, const Shape& pads,
                                 int64_t* N) {
  const char* op = "qdepthwise2d_fused";
  const QdwGeom g = dw_geometry(op, xs, ws, os, strides, dilation, pads, N);
  check_x_step(op, x_step);
  check_vec(op, "input", x, *N * g.H * g.W * g.C, x_step > 0 ? I8 : F32);
  check_vec(op, "kernel", w, g.KH * g.KW * g.C * g.DM, I8);
  return g;
}

// ---- qembedding (quantize.cpp) ------------------------------------------------------------------
template <class B>
void check_qembedding(const B& table, int64_t V, int64_t D, const B& scale, const B& ids, const B& out) {
  const char* op = "qembedding";
  check_vec(op, "table", table, V * D, I8);
  check_vec(op, "scale", scale, V, F32);
  LAMINA_CHECK(ids.dtype == I32 || ids.dtype == I64, op << ": expected int32 or int64 ids, received "
                                                        << dtype_name(ids.dtype));
  check_vec(op, "output", out, ids.numel * D, F32);
}

// The error of an id outside the table's rows.
inline std::string qembedding_id_message(int64_t id, int64_t position, int64_t V) {
  Msg os;
  os << "qembedding: id " << id << " at position " << position << " is outside the table's " << V << " rows";
  return os.str();
}

}  // namespace quant
}  // namespace lamina
