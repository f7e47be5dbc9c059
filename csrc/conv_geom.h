// Geometry of the convolution and pooling kernels (channels-last, NHWC), shared by the device
// modules (csrc/cpu/conv.cpp, csrc/cpu/depthwise.cpp, csrc/cuda/conv.cu): the same argument checks,
// messages and output sizes on every device.
#pragma once
#include <algorithm>
#include <cstdint>

#include "checks.h"
#include "types.h"

namespace lamina {

// A convolution's buffers, as every device checks them: input and kernel of the compute dtype dt,
// the third (o_name: the output, or the output gradient of a backward pass) shaped as given, and a
// backward pass's input and kernel gradients where given. Computing in bfloat16, the output and
// the gradients may also be float32 (the sums unrounded); the output gradient may not.
template <class B>
void check_conv_buffers(const char* op, DType dt, const B& xb, const Shape& xs, const B& wb, const Shape& ws,
                        const B& ob, const Shape& os, const char* o_name, bool backward = false,
                        const B* dxb = nullptr, const B* dwb = nullptr) {
  auto either = [dt](const B& b) { return dt == BF16 && b.dtype == F32 ? F32 : dt; };
  check_buffer(op, "input", xb, xs, dt);
  check_buffer(op, "kernel", wb, ws, dt);
  check_buffer(op, o_name, ob, os, backward ? dt : either(ob));
  if (dxb) check_buffer(op, "input gradient", *dxb, xs, either(*dxb));
  if (dwb) check_buffer(op, "kernel gradient", *dwb, ws, either(*dwb));
}

// Checks a (height, width) argument such as strides or dilation: 2 values, each >= lo.
inline void check_pair(const char* op, const char* what, const Shape& v, int64_t lo) {
  LAMINA_CHECK(v.size() == 2, op << ": expected 2 " << what << " values (height, width), received " << v.size());
  LAMINA_CHECK(v[0] >= lo && v[1] >= lo, op << ": " << what << " must be >= " << lo << ", received "
                                            << shape_str(v));
}

// Output length of a window of k taps spaced `dilation` apart, sliding by `stride` over an input
// of `padded` elements (padding included); 0 when the window is longer than the input.
inline int64_t window_out_len(int64_t padded, int64_t k, int64_t stride, int64_t dilation) {
  const int64_t eff = (k - 1) * dilation + 1;
  return padded >= eff ? (padded - eff) / stride + 1 : 0;
}

// ---- convolution ----

struct ConvGeom {
  int64_t N, H, W, C;       // input
  int64_t KH, KW, O;        // kernel (KH, KW, C, O)
  int64_t OH, OW;           // output
  int64_t sh, sw, dh, dw;   // strides, dilation
  int64_t pt, pl;           // padding before (top, left)
  int64_t K() const { return KH * KW * C; }
  bool direct() const {     // the input itself is the im2col matrix
    return KH == 1 && KW == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && OH == H && OW == W;
  }
};

inline ConvGeom conv_geom(const char* op, const Shape& xs, const Shape& ws, const Shape& os, const Shape& strides,
                          const Shape& dilation, const Shape& pads) {
  LAMINA_CHECK(xs.size() == 4, op << ": expected an input of shape (batch, height, width, channels), received "
                                  << shape_str(xs));
  LAMINA_CHECK(ws.size() == 4, op << ": expected a kernel of shape (kh, kw, in_channels, out_channels), received "
                                  << shape_str(ws));
  LAMINA_CHECK(os.size() == 4, op << ": expected an output of rank 4, received " << shape_str(os));
  check_pair(op, "strides", strides, 1);
  check_pair(op, "dilation", dilation, 1);
  LAMINA_CHECK(pads.size() == 4, op << ": expected 4 padding values (top, bottom, left, right)");
  for (auto p : pads) LAMINA_CHECK(p >= 0, op << ": padding must be non-negative, received " << p);
  for (auto d : xs) LAMINA_CHECK(d >= 0, op << ": negative dimension in input shape " << shape_str(xs));
  for (auto d : ws) LAMINA_CHECK(d >= 0, op << ": negative dimension in kernel shape " << shape_str(ws));
  ConvGeom g{xs[0], xs[1], xs[2], xs[3], ws[0], ws[1], ws[3], os[1], os[2],
             strides[0], strides[1], dilation[0], dilation[1], pads[0], pads[2]};
  LAMINA_CHECK(ws[2] == xs[3], op << ": the input has " << xs[3] << " channels (shape " << shape_str(xs)
                                  << ") but the kernel expects " << ws[2] << " (kernel shape " << shape_str(ws) << ")");
  LAMINA_CHECK(g.KH >= 1 && g.KW >= 1, op << ": the kernel window must be at least 1x1, received kernel shape "
                                          << shape_str(ws));
  const int64_t oh = window_out_len(g.H + pads[0] + pads[1], g.KH, g.sh, g.dh);
  const int64_t ow = window_out_len(g.W + pads[2] + pads[3], g.KW, g.sw, g.dw);
  LAMINA_CHECK(os[0] == g.N && os[1] == oh && os[2] == ow && os[3] == g.O,
               op << ": output shape " << shape_str(os) << " does not match input " << shape_str(xs) << ", kernel "
                  << shape_str(ws) << " and padding; expected (" << g.N << ", " << oh << ", " << ow << ", " << g.O << ")");
  return g;
}

// ---- depthwise convolution ----

struct DwGeom {
  int64_t N, H, W, C;       // input
  int64_t KH, KW, DM;       // kernel (KH, KW, C, DM)
  int64_t OH, OW;           // output (N, OH, OW, C * DM)
  int64_t sh, sw, dh, dw;   // strides, dilation
  int64_t pt, pl;           // padding before (top, left)
  int64_t CO() const { return C * DM; }
};

inline DwGeom dw_geom(const char* op, const Shape& xs, const Shape& ws, const Shape& os, const Shape& strides,
                      const Shape& dilation, const Shape& pads) {
  LAMINA_CHECK(xs.size() == 4, op << ": expected an input of shape (batch, height, width, channels), received "
                                  << shape_str(xs));
  LAMINA_CHECK(ws.size() == 4, op << ": expected a kernel of shape (kh, kw, in_channels, depth_multiplier), "
                                  << "received " << shape_str(ws));
  LAMINA_CHECK(os.size() == 4, op << ": expected an output of rank 4, received " << shape_str(os));
  check_pair(op, "strides", strides, 1);
  check_pair(op, "dilation", dilation, 1);
  LAMINA_CHECK(pads.size() == 4, op << ": expected 4 padding values (top, bottom, left, right)");
  for (auto p : pads) LAMINA_CHECK(p >= 0, op << ": padding must be non-negative, received " << p);
  for (auto d : xs) LAMINA_CHECK(d >= 0, op << ": negative dimension in input shape " << shape_str(xs));
  for (auto d : ws) LAMINA_CHECK(d >= 0, op << ": negative dimension in kernel shape " << shape_str(ws));
  LAMINA_CHECK(ws[2] == xs[3], op << ": the input has " << xs[3] << " channels (shape " << shape_str(xs)
                                  << ") but the kernel expects " << ws[2] << " (kernel shape " << shape_str(ws) << ")");
  LAMINA_CHECK(ws[0] >= 1 && ws[1] >= 1, op << ": the kernel window must be at least 1x1, received kernel shape "
                                             << shape_str(ws));
  DwGeom g{xs[0], xs[1], xs[2], xs[3], ws[0], ws[1], ws[3], 0, 0,
           strides[0], strides[1], dilation[0], dilation[1], pads[0], pads[2]};
  g.OH = window_out_len(g.H + pads[0] + pads[1], g.KH, g.sh, g.dh);
  g.OW = window_out_len(g.W + pads[2] + pads[3], g.KW, g.sw, g.dw);
  LAMINA_CHECK(os[0] == g.N && os[1] == g.OH && os[2] == g.OW && os[3] == g.CO(),
               op << ": output shape " << shape_str(os) << " does not match input " << shape_str(xs) << ", kernel "
                  << shape_str(ws) << " and padding; expected (" << g.N << ", " << g.OH << ", " << g.OW << ", "
                  << g.CO() << ")");
  return g;
}

// ---- pooling ----

enum PoolMode : int { POOL_MAX = 0, POOL_AVG = 1 };

struct PoolGeom {
  int64_t N, H, W, C, OH, OW, ph, pw, sh, sw, pt, pl;
};

inline PoolGeom pool_geom(const char* op, const Shape& xs, const Shape& os, const Shape& window,
                          const Shape& strides, const Shape& pads) {
  LAMINA_CHECK(xs.size() == 4, op << ": expected an input of shape (batch, height, width, channels), received "
                                  << shape_str(xs));
  LAMINA_CHECK(os.size() == 4, op << ": expected an output of rank 4, received " << shape_str(os));
  check_pair(op, "pool_size", window, 1);
  check_pair(op, "strides", strides, 1);
  LAMINA_CHECK(pads.size() == 4, op << ": expected 4 padding values (top, bottom, left, right)");
  for (auto p : pads) LAMINA_CHECK(p >= 0, op << ": padding must be non-negative, received " << p);
  for (auto d : xs) LAMINA_CHECK(d >= 0, op << ": negative dimension in input shape " << shape_str(xs));
  PoolGeom g{xs[0], xs[1], xs[2], xs[3], os[1], os[2], window[0], window[1], strides[0], strides[1], pads[0], pads[2]};
  const int64_t hh = g.H + pads[0] + pads[1], ww = g.W + pads[2] + pads[3];
  const int64_t oh = hh >= g.ph ? (hh - g.ph) / g.sh + 1 : 0, ow = ww >= g.pw ? (ww - g.pw) / g.sw + 1 : 0;
  LAMINA_CHECK(os[0] == g.N && os[1] == oh && os[2] == ow && os[3] == g.C,
               op << ": output shape " << shape_str(os) << " does not match input " << shape_str(xs)
                  << " and the window; expected (" << g.N << ", " << oh << ", " << ow << ", " << g.C << ")");
  LAMINA_CHECK(g.H * g.W < (int64_t(1) << 31), op << ": an image of " << g.H << "x" << g.W << " is too large");
  return g;
}

// Valid (unpadded) window bounds of output pixel (oh, ow): rows [h0, h1), columns [w0, w1).
inline void window_bounds(const PoolGeom& g, int64_t oh, int64_t ow, int64_t& h0, int64_t& h1, int64_t& w0,
                          int64_t& w1) {
  const int64_t hs = oh * g.sh - g.pt, ws = ow * g.sw - g.pl;
  h0 = std::max<int64_t>(hs, 0); h1 = std::min<int64_t>(hs + g.ph, g.H);
  w0 = std::max<int64_t>(ws, 0); w1 = std::min<int64_t>(ws + g.pw, g.W);
}

}  // namespace lamina
