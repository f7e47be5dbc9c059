// Convolution and pooling kernels, channels-last (NHWC; 1-D ops run as H = 1).
//
// conv2d: im2col into a bounded scratch buffer, one chunk of output rows at a time, then the
// shared sgemm:  out[rows, O] = col[rows, KH*KW*C] @ W[KH*KW*C, O]  (W is the Keras kernel
// (kh, kw, in, out) read as a matrix). The backward pass reuses the same chunks:
//   filter gradient  dW += col^T @ dout           (accumulated over chunks with beta = 1)
//   input gradient   dcol = dout @ W^T, then col2im written as a gather: each input row
//                    (n, ih) sums the column entries that read it, so threads never collide.
// A 1x1, stride-1, unpadded convolution needs no im2col: the input is already the GEMM operand.
// On AVX-512 and AVX2, layers with many input channels (C >= 16, O a multiple of 16) skip the column matrix:
// conv_direct.cpp's register tiles read the image itself (forward, filter gradient, and the input
// gradient of stride-1 layers as a convolution of dout with the flipped kernel).
// Threads (see "chunk scheduling"): with enough images, each thread runs whole chunks of its own
// block of images, GEMM included (one parallel region per call); otherwise chunks run in turn,
// im2col/col2im split across threads and the GEMM parallelising itself. Never nested.
//
// Pooling: max (first maximum on ties; NaN propagates, the first NaN being the argmax; the forward
// pass stores the argmax positions when a gradient will be needed, which makes the backward pass
// a plain scatter)
// and average (divides by the number of unpadded elements in the window, as Keras/TF do).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"
#include "device.h"
#include "conv_common.h"
#include "conv_direct.h"
#include "gemm.h"
#include "gemm_bf16.h"
#include "misc_checks.h"
#include "qgemm.h"
#include "quant_checks.h"
#include "simd.h"

namespace py = pybind11;

namespace lamina {

namespace {

// ---- profiling ----------------------------------------------------------------------------------

// Target size of one im2col chunk. Small enough to stay in L2/L3 between im2col and the GEMM.
int64_t g_chunk_bytes = int64_t(1) << 20;

// Seconds spent in each phase since the last reset (for benchmarks; a few clock reads per chunk).
// Under the batch schedule the phases are those of thread 0 (each thread runs the same mix).
struct Profile { double im2col = 0, col2im = 0, gemm = 0, total = 0, pool = 0, other = 0; int64_t calls = 0; };
Profile g_prof;
std::mutex g_prof_mu;  // devices run kernels on their own threads at the same time

void prof_add(double Profile::*field, double seconds) {
  std::lock_guard<std::mutex> lock(g_prof_mu);
  g_prof.*field += seconds;
}
void prof_call() {
  std::lock_guard<std::mutex> lock(g_prof_mu);
  g_prof.calls++;
}

struct Timer {
  double Profile::*field;
  double t0;
  explicit Timer(double Profile::*f) : field(f), t0(omp_get_wtime()) {}
  ~Timer() { prof_add(field, omp_get_wtime() - t0); }
};

// ---- geometry -----------------------------------------------------------------------------------
// ConvGeom / conv_geom and PoolGeom / pool_geom / window_bounds: csrc/conv_geom.h (shared with the
// CUDA module).

// Output rows are processed in chunks of whole "units": one unit is one output row (n, oh) of OW
// pixels. Returns the number of units per chunk for a column matrix of K floats per pixel.
int64_t units_per_chunk(const ConvGeom& g) {
  const int64_t unit_bytes = std::max<int64_t>(g.OW * g.K() * int64_t(sizeof(float)), 1);
  return std::max<int64_t>(1, g_chunk_bytes / unit_bytes);
}

// ---- im2col / col2im ------------------------------------------------------------------------------

// The column-matrix rows of output row (n, oh): dst[ow, (kh, kw, c)] = x[n, oh*sh - pt + kh*dh,
// ow*sw - pl + kw*dw, c] (0 outside) for ow in [0, OW). xn: image n. Compiled for AVX-512, AVX2 and
// the baseline (target_clones): the copies are short (KW * C floats), so their width matters.
template <class T>
inline void im2col_row_t(const ConvGeom& g, const T* xn, T* dst, int64_t oh) {
  const int64_t KWC = g.KW * g.C, C = g.C;
  for (int64_t ow = 0; ow < g.OW; ++ow) {
    const int64_t iw0 = ow * g.sw - g.pl;
    for (int64_t kh = 0; kh < g.KH; ++kh, dst += KWC) {
      const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
      if (ih < 0 || ih >= g.H) { std::memset(dst, 0, size_t(KWC) * sizeof(T)); continue; }
      const T* row = xn + ih * g.W * C;
      if (g.dw == 1) {  // the KW*C window row is contiguous in the input
        const int64_t lo = std::max<int64_t>(0, -iw0), hi = std::min<int64_t>(g.KW, g.W - iw0);
        if (hi <= lo) { std::memset(dst, 0, size_t(KWC) * sizeof(T)); continue; }
        if (lo > 0) std::memset(dst, 0, size_t(lo * C) * sizeof(T));
        const T* src = row + (iw0 + lo) * C;
        T* d = dst + lo * C;
        const int64_t m = (hi - lo) * C;
        for (int64_t j = 0; j < m; ++j) d[j] = src[j];
        if (hi < g.KW) std::memset(dst + hi * C, 0, size_t((g.KW - hi) * C) * sizeof(T));
      } else {
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const int64_t iw = iw0 + kw * g.dw;
          T* d = dst + kw * C;
          if (iw < 0 || iw >= g.W) { std::memset(d, 0, size_t(C) * sizeof(T)); continue; }
          const T* src = row + iw * C;
          for (int64_t c = 0; c < C; ++c) d[c] = src[c];
        }
      }
    }
  }
}

LAMINA_CLONES void im2col_row(const ConvGeom& g, const float* xn, float* dst, int64_t oh) {
  im2col_row_t(g, xn, dst, oh);
}
// bfloat16 (uint16 bits) images: the same element moves (mixed precision convolutions).
LAMINA_CLONES void im2col_row(const ConvGeom& g, const uint16_t* xn, uint16_t* dst, int64_t oh) {
  im2col_row_t(g, xn, dst, oh);
}

// col[(u - u0) * OW + ow, :] = im2col_row's rows for the output rows u = n * OH + oh in [u0, u1).
// `par`: split the rows across threads.
// T: float, or uint16_t for bfloat16 images.
template <class T>
void im2col(const ConvGeom& g, const T* x, T* col, int64_t u0, int64_t u1, bool par) {
  const int64_t K = g.K();
  par = par && (u1 - u0) * g.OW * K > kParallelGrain && (u1 - u0) > 1;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t u = u0; u < u1; ++u)
    im2col_row(g, x + (u / g.OH) * g.H * g.W * g.C, col + (u - u0) * g.OW * K, u % g.OH);
}

// dx[n, ih, iw, c] += sum of the col entries of rows [u0, u1) that im2col read from (n, ih, iw, c).
// Written as a gather over input rows (n, ih): with `par`, each thread owns whole rows of dx, so
// no two threads write the same element.
void col2im(const ConvGeom& g, const float* col, float* dx, int64_t u0, int64_t u1, bool par) {
  const int64_t K = g.K(), KWC = g.KW * g.C, C = g.C;
  const int64_t n0 = u0 / g.OH, n1 = (u1 - 1) / g.OH;  // images touched by the chunk
  const int64_t tasks = (n1 - n0 + 1) * g.H;
  par = par && (u1 - u0) * g.OW * K > kParallelGrain && tasks > 1;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t n = n0 + t / g.H, ih = t % g.H;
    // output rows of this image inside the chunk
    const int64_t oh_a = std::max<int64_t>(0, u0 - n * g.OH), oh_b = std::min<int64_t>(g.OH, u1 - n * g.OH);
    float* drow = dx + (n * g.H + ih) * g.W * C;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      const int64_t tt = ih + g.pt - kh * g.dh;
      if (tt < 0 || tt % g.sh) continue;
      const int64_t oh = tt / g.sh;
      if (oh < oh_a || oh >= oh_b) continue;
      const float* src_row = col + ((n * g.OH + oh - u0) * g.OW) * K + kh * KWC;
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const float* src = src_row + ow * K;
        const int64_t iw0 = ow * g.sw - g.pl;
        if (g.dw == 1) {
          const int64_t lo = std::max<int64_t>(0, -iw0), hi = std::min<int64_t>(g.KW, g.W - iw0);
          if (hi <= lo) continue;
          float* d = drow + (iw0 + lo) * C;
          const float* s = src + lo * C;
          const int64_t m = (hi - lo) * C;
#pragma omp simd
          for (int64_t j = 0; j < m; ++j) d[j] += s[j];
        } else {
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            const int64_t iw = iw0 + kw * g.dw;
            if (iw < 0 || iw >= g.W) continue;
            float* d = drow + iw * C;
            const float* s = src + kw * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) d[c] += s[c];
          }
        }
      }
    }
  }
}

// ---- direct convolution for short kernels ----------------------------------------------------------
//
// A convolution whose kernel has few rows (K = KH*KW*C <= 64: a first layer's 5x5x1 or 3x3x3) is
// a GEMM with a short inner dimension: im2col writes K floats per pixel for K multiply-adds
// per filter, and the GEMM loads and stores each C tile after only K steps. Here each pixel's
// filters are summed straight from the image instead, 16 or 32 filters at a time in registers,
// four pixels at once so that each weight row is loaded once per four pixels; the filter
// gradient likewise keeps a block of taps' sums in registers over a whole output row. The image
// is first copied into a zero-padded one (per thread), so the loops need no bounds checks.
// Measured on Zen 5, 2 threads, the MNIST convnet's first layer (128 x 28 x 28 x 1 -> 32, 5x5,
// same): forward 1.30 -> 0.54 ms, forward + filter gradient 3.62 -> 1.77 ms. The `split` schedule
// (conv_schedule(1), for tests) keeps im2col + GEMM.

constexpr int64_t kDirectMaxK = 64;
// Each thread copies one padded image: larger images go through im2col's bounded chunks instead.
constexpr int64_t kDirectMaxImageBytes = int64_t(16) << 20;


bool direct_small(const ConvGeom& g) {
  if (g.K() > kDirectMaxK || g.O % 16 != 0 || g.direct()) return false;
  return double(padded_rows(g)) * double(padded_cols(g)) * double(g.C) * sizeof(float) <=
         double(kDirectMaxImageBytes);
}

struct Padded {
  int64_t Hp, Wp;
  std::vector<int64_t> off;  // per kernel row k = (kh, kw, c): its offset from a pixel's window corner
};

Padded padded_geom(const ConvGeom& g) {
  Padded p;
  p.Hp = padded_rows(g);
  p.Wp = padded_cols(g);
  p.off.resize(size_t(g.K()));
  for (int64_t kh = 0, k = 0; kh < g.KH; ++kh)
    for (int64_t kw = 0; kw < g.KW; ++kw)
      for (int64_t c = 0; c < g.C; ++c, ++k) p.off[size_t(k)] = (kh * g.dh * p.Wp + kw * g.dw) * g.C + c;
  return p;
}

// xp = image n of x, zero-padded to (Hp, Wp, C) with the top/left padding in front.
void pad_image(const ConvGeom& g, const Padded& p, const float* xn, float* xp) {
  std::memset(xp, 0, size_t(p.Hp * p.Wp * g.C) * sizeof(float));
  for (int64_t ih = 0; ih < g.H; ++ih) {
    const int64_t r = ih + g.pt;
    if (r >= p.Hp) break;
    const int64_t cols = std::min(g.W, p.Wp - g.pl);
    if (cols > 0) std::memcpy(xp + (r * p.Wp + g.pl) * g.C, xn + ih * g.W * g.C, size_t(cols * g.C) * sizeof(float));
  }
}

// out row (n, oh) for filters [o0, o0 + OC): PX pixels at a time.
template <int OC>
LAMINA_CLONES void direct_forward_row(const ConvGeom& g, const Padded& p, const float* xp, const float* w, float* out,
                                      int64_t oh, int64_t o0) {
  const int64_t K = g.K(), O = g.O, C = g.C;
  const int64_t rowbase = oh * g.sh * p.Wp * C;
  constexpr int PX = 4;
  int64_t ow = 0;
  for (; ow + PX <= g.OW; ow += PX) {
    float acc[PX][OC];
    for (int q = 0; q < PX; ++q)
#pragma omp simd
      for (int o = 0; o < OC; ++o) acc[q][o] = 0.f;
    const float* base = xp + rowbase + ow * g.sw * C;
    for (int64_t k = 0; k < K; ++k) {
      const float* wr = w + k * O + o0;
      const float* xk = base + p.off[size_t(k)];
      for (int q = 0; q < PX; ++q) {
        const float xv = xk[q * g.sw * C];
#pragma omp simd
        for (int o = 0; o < OC; ++o) acc[q][o] += xv * wr[o];
      }
    }
    for (int q = 0; q < PX; ++q) {
      float* dst = out + (ow + q) * O + o0;
#pragma omp simd
      for (int o = 0; o < OC; ++o) dst[o] = acc[q][o];
    }
  }
  for (; ow < g.OW; ++ow) {
    float acc[OC];
#pragma omp simd
    for (int o = 0; o < OC; ++o) acc[o] = 0.f;
    const float* base = xp + rowbase + ow * g.sw * C;
    for (int64_t k = 0; k < K; ++k) {
      const float* wr = w + k * O + o0;
      const float xv = base[p.off[size_t(k)]];
#pragma omp simd
      for (int o = 0; o < OC; ++o) acc[o] += xv * wr[o];
    }
    float* dst = out + ow * O + o0;
#pragma omp simd
    for (int o = 0; o < OC; ++o) dst[o] = acc[o];
  }
}

// dw[k, o0:o0+OC] += sum over the pixels of output row (n, oh) of x(pixel, k) * dout(pixel), for
// kernel rows [k0, k0 + nk), nk <= TB, their sums held in registers over the row.
template <int OC, int TB>
LAMINA_CLONES void direct_filter_grad_row(const ConvGeom& g, const Padded& p, const float* xp, const float* drow,
                                          float* dw, int64_t oh, int64_t o0, int64_t k0, int64_t nk) {
  const int64_t O = g.O, C = g.C;
  const int64_t rowbase = oh * g.sh * p.Wp * C;
  float acc[TB][OC];
  for (int t = 0; t < TB; ++t)
#pragma omp simd
    for (int o = 0; o < OC; ++o) acc[t][o] = 0.f;
  int64_t off[TB];
  for (int t = 0; t < TB; ++t) off[t] = p.off[size_t(k0 + std::min<int64_t>(t, nk - 1))];
  for (int64_t ow = 0; ow < g.OW; ++ow) {
    const float* d = drow + ow * O + o0;
    const float* base = xp + rowbase + ow * g.sw * C;
    for (int t = 0; t < TB; ++t) {  // the taps past nk repeat the last one and are not stored
      const float xv = base[off[t]];
#pragma omp simd
      for (int o = 0; o < OC; ++o) acc[t][o] += xv * d[o];
    }
  }
  for (int t = 0; t < nk; ++t) {
    float* dst = dw + (k0 + t) * O + o0;
#pragma omp simd
    for (int o = 0; o < OC; ++o) dst[o] += acc[t][o];
  }
}

// out = conv(x, w) through the direct kernels; images split across threads.
void direct_forward(const ConvGeom& g, const float* x, const float* w, float* out) {
  const Padded p = padded_geom(g);
  const int nt = int(std::min<int64_t>(omp_get_max_threads(), g.N));
  const int64_t img = p.Hp * p.Wp * g.C;
  Scratch pad(img * std::max(nt, 1));
  const bool par = nt > 1 && !omp_in_parallel() && g.N * g.OH * g.OW * g.O * g.K() > kParallelGrain;
#pragma omp parallel for schedule(static) num_threads(std::max(nt, 1)) if (par)
  for (int64_t n = 0; n < g.N; ++n) {
    float* xp = pad.p + (par ? omp_get_thread_num() : 0) * img;
    pad_image(g, p, x + n * g.H * g.W * g.C, xp);
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      float* orow = out + (n * g.OH + oh) * g.OW * g.O;
      for (int64_t o0 = 0; o0 < g.O; o0 += g.O % 32 == 0 ? 32 : 16) {
        if (g.O % 32 == 0) direct_forward_row<32>(g, p, xp, w, orow, oh, o0);
        else direct_forward_row<16>(g, p, xp, w, orow, oh, o0);
      }
    }
  }
}

// dw = filter gradient through the direct kernels: each thread sums its images into its own
// block (thread 0 into dw), then the blocks are added.
void direct_filter_grad(const ConvGeom& g, const float* x, const float* dout, float* dw) {
  const Padded p = padded_geom(g);
  const int nt = int(std::min<int64_t>(omp_get_max_threads(), g.N));
  const int64_t img = p.Hp * p.Wp * g.C, wn = g.K() * g.O;
  const bool par = nt > 1 && !omp_in_parallel() && g.N * g.OH * g.OW * g.O * g.K() > kParallelGrain;
  const int teams = par ? nt : 1;
  Scratch pad(img * teams), partial(wn * teams);
  std::fill(partial.p, partial.p + wn * teams, 0.f);
  constexpr int TB = 6;
#pragma omp parallel for schedule(static) num_threads(teams) if (par)
  for (int64_t n = 0; n < g.N; ++n) {
    const int tid = par ? omp_get_thread_num() : 0;
    float* xp = pad.p + tid * img;
    float* mine = partial.p + tid * wn;
    pad_image(g, p, x + n * g.H * g.W * g.C, xp);
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const float* drow = dout + (n * g.OH + oh) * g.OW * g.O;
      for (int64_t o0 = 0; o0 < g.O; o0 += g.O % 32 == 0 ? 32 : 16)
        for (int64_t k0 = 0; k0 < g.K(); k0 += TB) {
          const int64_t nk = std::min<int64_t>(TB, g.K() - k0);
          if (g.O % 32 == 0) direct_filter_grad_row<32, TB>(g, p, xp, drow, mine, oh, o0, k0, nk);
          else direct_filter_grad_row<16, TB>(g, p, xp, drow, mine, oh, o0, k0, nk);
        }
    }
  }
  std::copy(partial.p, partial.p + wn, dw);
  for (int t = 1; t < teams; ++t) {
    const float* q = partial.p + t * wn;
    for (int64_t i = 0; i < wn; ++i) dw[i] += q[i];
  }
}

// ---- chunk scheduling -----------------------------------------------------------------------------
//
// Two ways to spread a convolution over T threads:
//  * split: chunks run one after another; im2col/col2im split each chunk's rows across threads
//    and the GEMM parallelises itself. Works for any batch size, but costs a few parallel
//    regions (thread barriers) per chunk.
//  * batch: one parallel region; each thread takes a contiguous block of images and runs its own
//    chunks (im2col, GEMM, col2im) with no barrier. The GEMM, called inside the region, runs on
//    the calling thread (nested parallelism is off). Each chunk stays in the cache of the core
//    that produced it, and there is a single barrier per call. Measured here, on 2 cores shared
//    with other processes, every barrier can cost a scheduler time slice: the split schedule
//    spent 50-450 ms per MNIST conv2 forward in barriers where the batch schedule spent ~2 ms.
// `batch` is used when there are enough images to keep the threads balanced.
int g_schedule = 0;  // 0 = automatic, 1 = always split, 2 = batch whenever possible
// conv_direct.cpp's kernels for layers with many input channels (off: im2col + GEMM, for comparisons)
bool g_direct_wide = true;

bool batch_schedule(const ConvGeom& g) {
  const int nt = omp_get_max_threads();
  if (nt <= 1 || g.N < 2 || g_schedule == 1) return false;
  if (omp_in_parallel() || omp_get_max_active_levels() > 1) return false;  // GEMM would nest
  if (g_schedule == 2) return true;
  return g.N >= 2 * nt || (g.N >= nt && g.N % nt == 0);
}

// Runs chunk(u0, u1, col, tid, inner_par) over all output rows. Under the batch schedule,
// begin(tid, n0, n1) runs first on each thread with its block of images [n0, n1).
template <class Begin, class Chunk>
void run_chunks(const ConvGeom& g, bool batch, Begin begin, Chunk chunk) {
  const int64_t units = g.N * g.OH, per = units_per_chunk(g), K = g.K();
  if (!batch) {
    Scratch col(std::min(units, per) * g.OW * K);
    for (int64_t u0 = 0; u0 < units; u0 += per) chunk(u0, std::min(units, u0 + per), col.p, 0, true);
    return;
  }
  const int nt = int(std::min<int64_t>(omp_get_max_threads(), g.N));
  const int64_t per_thread = std::min(per, ((g.N + nt - 1) / nt) * g.OH) * g.OW * K;
  Scratch col(per_thread * nt);  // allocated outside the region: nothing may throw inside
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    const int64_t n0 = g.N * tid / team, n1 = g.N * (tid + 1) / team;
    float* mine = col.p + tid * per_thread;
    begin(tid, n0, n1);
    for (int64_t u0 = n0 * g.OH; u0 < n1 * g.OH; u0 += per) chunk(u0, std::min(n1 * g.OH, u0 + per), mine, tid, false);
  }
}

// ---- bfloat16 (mixed precision) ------------------------------------------------------------------
// Convolutions of bfloat16 images and kernels: im2col moves bfloat16 elements, bf16gemm sums the
// products in float32 (on AVX512-BF16 where the CPU has it), and each result is rounded once into
// its bfloat16 output (or written to a float32 one). The gradients likewise, summed in float32.

// dst (bfloat16 or float32) = src (float32), n elements.
static void store_rounded(const float* src, Buffer& dst, int64_t n) {
  if (dst.dtype == F32) {
    if (dst.data<float>() != src && n) std::memcpy(dst.ptr, src, size_t(n) * sizeof(float));
    return;
  }
  bf16_round_n(src, dst.data<uint16_t>(), n);
}

void conv2d_forward(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws, Buffer& ob, const Shape& os,
                    const Shape& strides, const Shape& dilation, const Shape& pads);
void conv2d_backward(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws, const Buffer& gb,
                     const Shape& gs, Buffer* dxb, Buffer* dwb, const Shape& strides, const Shape& dilation,
                     const Shape& pads);

// A float32 copy of a bfloat16 buffer (exact).
static std::unique_ptr<Buffer> widened(const Buffer& b) {
  auto w = std::make_unique<Buffer>(b.numel, F32, b.device);
  bf16_widen_n(b.data<uint16_t>(), w->data<float>(), b.numel);
  return w;
}

// Layers float32 runs as Winograd products (3 x 3 and 5 x 5 at stride 1, convdirect::winograd_usable)
// take them on float32 copies unless the bfloat16 products run on AMX: VDPBF16PS multiplies at twice
// float32's rate, the Winograd products are 2.25-4x fewer (the MNIST convnet's conv2 under
// mixed_bfloat16 trained slower than in float32 on Zen 4, 0.93x). Float32 products of the bfloat16
// values are exact, so the result is as close or closer, rounded once.
static bool bf16_as_winograd(const ConvGeom& g) {
  return g_schedule != 1 && g_direct_wide && convdirect::winograd_usable(g) && std::strcmp(bf16_gemm_path(), "amx");
}

static void conv2d_forward_bf16(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws, Buffer& ob,
                                const Shape& os, const Shape& strides, const Shape& dilation, const Shape& pads) {
  const char* op = "conv2d";
  check_conv_buffers(op, BF16, xb, xs, wb, ws, ob, os, "output");
  const ConvGeom g = conv_geom(op, xs, ws, os, strides, dilation, pads);
  const uint16_t* x = xb.data<uint16_t>();
  const uint16_t* w = wb.data<uint16_t>();
  const int64_t K = g.K(), rows = g.N * g.OH * g.OW, O = g.O;
  if (rows == 0 || O == 0) return;
  const bool f32_out = ob.dtype == F32;
  // a short window (a first layer's 5x5x1): float32's direct kernel; or its Winograd products
  if ((direct_small(g) && g_schedule != 1) || bf16_as_winograd(g)) {
    auto xf = widened(xb), wf = widened(wb);
    std::unique_ptr<Buffer> of = f32_out ? nullptr : std::make_unique<Buffer>(ob.numel, F32, ob.device);
    conv2d_forward(*xf, xs, *wf, ws, f32_out ? ob : *of, os, strides, dilation, pads);
    if (!f32_out) store_rounded(of->data<float>(), ob, ob.numel);
    return;
  }
  if (K == 0) {  // no input channels: zeros
    if (f32_out) zero_fill(ob.data<float>(), rows * O);
    else std::memset(ob.ptr, 0, size_t(rows * O) * sizeof(uint16_t));
    return;
  }
  // rows [r0, r0 + m) of the output from their bfloat16 im2col rows: summed in float32 and written
  // (a bfloat16 output rounded once, in the GEMM)
  auto product = [&](const uint16_t* cols, int64_t r0, int64_t m) {
    if (f32_out) return bf16gemm(false, false, m, O, K, cols, K, w, O, false, ob.data<float>() + r0 * O, O);
    BF16Output out;
    out.d = ob.data<uint16_t>() + r0 * O;
    out.ldd = O;
    bf16gemm_out(false, false, m, O, K, cols, K, w, O, false, nullptr, O, &out);
  };
  if (g.direct()) return product(x, 0, rows);
  run_chunks(g, batch_schedule(g), [](int, int64_t, int64_t) {},
             [&](int64_t u0, int64_t u1, float* col, int, bool par) {
               uint16_t* c16 = reinterpret_cast<uint16_t*>(col);  // the float scratch holds twice as many
               im2col(g, x, c16, u0, u1, par);
               product(c16, u0 * g.OW, (u1 - u0) * g.OW);
             });
}

static void conv2d_backward_bf16(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws,
                                 const Buffer& gb, const Shape& gs, Buffer* dxb, Buffer* dwb, const Shape& strides,
                                 const Shape& dilation, const Shape& pads) {
  const char* op = "conv2d_backward";
  check_conv_buffers(op, BF16, xb, xs, wb, ws, gb, gs, "output gradient", true, dxb, dwb);
  const ConvGeom g = conv_geom(op, xs, ws, gs, strides, dilation, pads);
  if (!dxb && !dwb) return;
  const uint16_t* x = xb.data<uint16_t>();
  const uint16_t* w = wb.data<uint16_t>();
  const uint16_t* dout = gb.data<uint16_t>();
  const int64_t K = g.K(), rows = g.N * g.OH * g.OW, O = g.O, wn = K * O;
  if (K == 0) return;
  // float32 sums: in the outputs themselves when they are float32, else in scratch, rounded at the end
  Scratch dxs(dxb && dxb->dtype == BF16 ? xb.numel : 0), dws(dwb && dwb->dtype == BF16 ? wn : 0);
  float* dx = dxb ? (dxb->dtype == BF16 ? dxs.p : dxb->data<float>()) : nullptr;
  float* dw = dwb ? (dwb->dtype == BF16 ? dws.p : dwb->data<float>()) : nullptr;
  auto finish = [&] {
    if (dxb) store_rounded(dx, *dxb, xb.numel);
    if (dwb) store_rounded(dw, *dwb, wn);
  };
  if (rows == 0 || O == 0) {  // nothing flows back
    if (dx) zero_fill(dx, xb.numel);
    if (dw) zero_fill(dw, wn);
    return finish();
  }
  // a short window, or a Winograd layer: float32's kernels on float32 copies
  if ((direct_small(g) && g_schedule != 1) || bf16_as_winograd(g)) {
    auto xf = widened(xb), wf = widened(wb), gf = widened(gb);
    std::unique_ptr<Buffer> dxf = dxb ? std::make_unique<Buffer>(xb.numel, F32, xb.device) : nullptr;
    std::unique_ptr<Buffer> dwf = dwb ? std::make_unique<Buffer>(wn, F32, wb.device) : nullptr;
    conv2d_backward(*xf, xs, *wf, ws, *gf, gs, dxf.get(), dwf.get(), strides, dilation, pads);
    if (dxb) std::memcpy(dx, dxf->data<float>(), size_t(xb.numel) * sizeof(float));
    if (dwb) std::memcpy(dw, dwf->data<float>(), size_t(wn) * sizeof(float));
    return finish();
  }
  if (g.direct()) {
    if (dw) bf16gemm(true, false, K, O, rows, x, K, dout, O, false, dw, O);
    if (dx) bf16gemm(false, true, rows, K, O, dout, O, w, O, false, dx, K);
    return finish();
  }
  const bool batch = batch_schedule(g);
  const int nt = batch ? int(std::min<int64_t>(omp_get_max_threads(), g.N)) : 1;
  Scratch partial(dw && nt > 1 ? (nt - 1) * wn : 0);  // threads 1.. sum their images' dw here
  std::vector<char> started(size_t(nt), 0);
  if (dx && !batch) zero_fill(dx, xb.numel);
  const int64_t HWC = g.H * g.W * g.C;
  run_chunks(g, batch,
             [&](int, int64_t n0, int64_t n1) { if (dx) zero_fill(dx + n0 * HWC, (n1 - n0) * HWC, false); },
             [&](int64_t u0, int64_t u1, float* col, int tid, bool par) {
               const int64_t m = (u1 - u0) * g.OW;
               const uint16_t* dchunk = dout + u0 * g.OW * O;
               if (dw) {
                 float* dst = tid == 0 ? dw : partial.p + (tid - 1) * wn;
                 uint16_t* c16 = reinterpret_cast<uint16_t*>(col);
                 im2col(g, x, c16, u0, u1, par);
                 bf16gemm(true, false, K, O, m, c16, K, dchunk, O, started[size_t(tid)] != 0, dst, O);
                 started[size_t(tid)] = 1;
               }
               if (dx) {  // the float32 column gradient, in the same scratch (its bfloat16 columns are used)
                 bf16gemm(false, true, m, K, O, dchunk, O, w, O, false, col, K);
                 col2im(g, col, dx, u0, u1, par);
               }
             });
  if (dw) {
    if (!started[0]) zero_fill(dw, wn, false);
    for (int t = 1; t < nt; ++t) {
      if (!started[size_t(t)]) continue;
      const float* p = partial.p + (t - 1) * wn;
      for (int64_t i = 0; i < wn; ++i) dw[i] += p[i];
    }
  }
  finish();
}

// ---- conv kernels -------------------------------------------------------------------------------

// out = conv(x, w): x (N, H, W, C), w (KH, KW, C, O), out (N, OH, OW, O).
// pads = (top, bottom, left, right).
void conv2d_forward(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws, Buffer& ob, const Shape& os,
                    const Shape& strides, const Shape& dilation, const Shape& pads) {
  if (xb.dtype == BF16) return conv2d_forward_bf16(xb, xs, wb, ws, ob, os, strides, dilation, pads);
  const char* op = "conv2d";
  check_conv_buffers(op, F32, xb, xs, wb, ws, ob, os, "output");
  const ConvGeom g = conv_geom(op, xs, ws, os, strides, dilation, pads);
  const float* x = xb.data<float>();
  const float* w = wb.data<float>();
  float* out = ob.data<float>();
  const int64_t K = g.K(), rows = g.N * g.OH * g.OW, O = g.O;
  prof_call();
  if (rows == 0 || O == 0) return;
  if (K == 0) { Timer t(&Profile::other); zero_fill(out, rows * O); return; }
  if (g.direct()) {
    Timer t(&Profile::gemm);
    sgemm(false, false, rows, O, K, 1.f, x, K, w, O, 0.f, out, O);
    return;
  }
  Timer total(&Profile::total);
  if (direct_small(g) && g_schedule != 1) {
    Timer t(&Profile::gemm);
    direct_forward(g, x, w, out);
    return;
  }
  if (g_schedule != 1 && g_direct_wide && convdirect::usable(g)) {  // many input channels: no im2col matrix
    Timer t(&Profile::gemm);
    convdirect::forward(g, x, w, out);
    return;
  }
  run_chunks(g, batch_schedule(g), [](int, int64_t, int64_t) {},
             [&](int64_t u0, int64_t u1, float* col, int tid, bool par) {
               const double t0 = omp_get_wtime();
               im2col(g, x, col, u0, u1, par);
               const double t1 = omp_get_wtime();
               sgemm(false, false, (u1 - u0) * g.OW, O, K, 1.f, col, K, w, O, 0.f, out + u0 * g.OW * O, O);
               if (tid == 0) { prof_add(&Profile::im2col, t1 - t0); prof_add(&Profile::gemm, omp_get_wtime() - t1); }
             });
}

// Quantized (int8) convolution for inference: the weights (kh, kw, in, out) packed by qgemm_pack
// as a (kh*kw*in, out) matrix, each im2col row (one output pixel's window) quantized like a row of
// a quantized Dense's input (qgemm.h), int32 sums, out = sums / (w_scale * row scale) + bias.
void qconv2d_forward(const Buffer& xb, const Shape& xs, const Shape& ws, const Buffer& packed, const Buffer& colsum,
                     const Buffer& w_scale, const Buffer* bias, Buffer& ob, const Shape& os, const Shape& strides,
                     const Shape& dilation, const Shape& pads, bool relu) {
  const ConvGeom g = quant::check_qconv2d(xb, xs, ws, packed, colsum, w_scale, bias, ob, os, strides, dilation, pads);
  const int64_t K = g.K(), rows = g.N * g.OH * g.OW, O = g.O;
  const float* x = xb.data<float>();
  float* out = ob.data<float>();
  if (rows == 0 || O == 0) return;
  const int8_t* pk = packed.data<int8_t>();
  const int32_t* cs = colsum.data<int32_t>();
  const float* sc = w_scale.data<float>();
  const float* bs = bias ? bias->data<float>() : nullptr;
  if (g.direct()) {
    qgemm::matmul(x, K, rows, K, O, pk, cs, sc, bs, out, O, true, relu);
    return;
  }
  run_chunks(g, batch_schedule(g), [](int, int64_t, int64_t) {},
             [&](int64_t u0, int64_t u1, float* col, int, bool par) {
               im2col(g, x, col, u0, u1, par);
               qgemm::matmul(col, K, (u1 - u0) * g.OW, K, O, pk, cs, sc, bs, out + u0 * g.OW * O, O, true, relu);
             });
}

// A Conv2D (+ BatchNormalization + clamp) of a fused quantized group (qgemm.h's epilogue; the
// arguments as quantize.cpp's qdepthwise2d_fused): a float input quantized once per image, each
// window read from its bytes, or per row for a 1x1 stride-1 unpadded convolution (whose input is
// the product's matrix), or bytes (x_step > 0; such a convolution only); float or byte output.
// `pool` (window = strides, padding "valid"; empty or (1, 1) for none): a MaxPooling2D after the
// group, taken over each window's rows before they are stored (float input and output; out is
// the pooled shape).
void qconv2d_fused(const Buffer& xb, const Shape& xs, double x_step, const Shape& ws, const Buffer& packed,
                   const Buffer& colsum, const Buffer& w_scale, const Buffer* bias, const Buffer* bn_mean,
                   const Buffer* bn_var, const Buffer* bn_gamma, const Buffer* bn_beta, double bn_eps, double lo,
                   double hi, Buffer& ob, const Shape& os, double out_step, Buffer* flags, const Shape& strides,
                   const Shape& dilation, const Shape& pads, const Shape& pool) {
  const char* op = "qconv2d_fused";
  const bool pooled = quant::check_qpool(op, pool, x_step, out_step);
  const ConvGeom g = quant::check_qconv2d_fused(xb, xs, x_step, ws, packed, colsum, os, strides, dilation, pads, pool);
  const int64_t K = g.K(), rows = g.N * g.OH * g.OW, O = g.O;
  const int64_t out_rows = pooled ? os[0] * os[1] * os[2] : rows;
  std::vector<float> A, D;
  qgemm::Epilogue e = qgemm::fused_epilogue(op, O, w_scale, bias, bn_mean, bn_var, bn_gamma, bn_beta, bn_eps, lo, hi,
                                            ob, out_rows * O, out_step, flags, g.N, A, D);
  e.rows_per_flag = std::max<int64_t>(1, g.OH * g.OW);
  if (out_rows == 0 || O == 0) return;
  const int8_t* pk = packed.data<int8_t>();
  const int32_t* cs = colsum.data<int32_t>();
  if (x_step > 0) {
    qgemm::matmul_u8(reinterpret_cast<const uint8_t*>(xb.data<int8_t>()), K, float(x_step), rows, K, O, pk, e, true);
    if (e.flags && e.out_f) qgemm::poison_images(e.out_f, g.N, g.OH * g.OW * O, e.flags);
    return;
  }
  const float* x = xb.data<float>();
  if (g.direct() && !pooled) {
    qgemm::matmul_epi(x, K, rows, K, O, pk, cs, e, true);
    return;
  }
  // the image quantized once (one scale per image), each window read from its bytes: no im2col matrix
  qgemm::ImageRows img;
  img.H = g.H, img.W = g.W, img.C = g.C, img.KH = g.KH, img.KW = g.KW, img.OH = g.OH, img.OW = g.OW;
  img.sh = g.sh, img.sw = g.sw, img.dh = g.dh, img.dw = g.dw, img.pt = g.pt, img.pl = g.pl;
  if (pooled) img.PH = pool[0], img.PW = pool[1];
  qgemm::conv_windows(x, g.N, img, K, O, pk, cs, e, true);
}

// Gradients of conv2d_forward: dx (input's shape) and/or dw (kernel's shape), either may be None.
void conv2d_backward(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws, const Buffer& gb,
                     const Shape& gs, Buffer* dxb, Buffer* dwb, const Shape& strides, const Shape& dilation,
                     const Shape& pads) {
  if (xb.dtype == BF16) return conv2d_backward_bf16(xb, xs, wb, ws, gb, gs, dxb, dwb, strides, dilation, pads);
  const char* op = "conv2d_backward";
  check_conv_buffers(op, F32, xb, xs, wb, ws, gb, gs, "output gradient", true, dxb, dwb);
  const ConvGeom g = conv_geom(op, xs, ws, gs, strides, dilation, pads);
  if (!dxb && !dwb) return;
  const float* x = xb.data<float>();
  const float* w = wb.data<float>();
  const float* dout = gb.data<float>();
  float* dx = dxb ? dxb->data<float>() : nullptr;
  float* dw = dwb ? dwb->data<float>() : nullptr;
  const int64_t K = g.K(), rows = g.N * g.OH * g.OW, O = g.O;
  prof_call();
  if (K == 0) return;  // no input channels: both gradients are empty
  if (rows == 0 || O == 0) {  // nothing flows back
    Timer t(&Profile::other);
    if (dx) zero_fill(dx, xb.numel);
    if (dw) zero_fill(dw, wb.numel);
    return;
  }
  if (g.direct()) {
    Timer t(&Profile::gemm);
    if (dw) sgemm(true, false, K, O, rows, 1.f, x, K, dout, O, 0.f, dw, O);
    if (dx) sgemm(false, true, rows, K, O, 1.f, dout, O, w, O, 0.f, dx, K);
    return;
  }
  Timer total(&Profile::total);
  if (dw && direct_small(g) && g_schedule != 1) {  // the filter gradient straight from the image
    {
      Timer t(&Profile::gemm);
      direct_filter_grad(g, x, dout, dw);
    }
    dw = nullptr;
    if (!dx) return;
  }
  if (g_schedule != 1 && g_direct_wide) {  // many input channels (conv_direct.h): no im2col / col2im
    if (dw && convdirect::usable(g)) {
      Timer t(&Profile::gemm);
      convdirect::filter_grad(g, x, dout, dw);
      dw = nullptr;
    }
    if (dx && convdirect::usable_for_input_grad(g)) {
      // dx = conv(dout, w flipped, in/out swapped), stride 1: the forward kernel
      Timer t(&Profile::gemm);
      Scratch wt(K * O);
      convdirect::flip_kernel(g, w, wt.p);
      convdirect::forward(convdirect::transposed(g), dout, wt.p, dx);
      dx = nullptr;
    }
    if (!dw && !dx) return;
  }
  const bool batch = batch_schedule(g);
  const int nt = batch ? int(std::min<int64_t>(omp_get_max_threads(), g.N)) : 1;
  // Under the batch schedule each thread sums its images' filter gradient in its own block
  // (thread 0 writes dw directly); the blocks are added at the end.
  // With more kernel rows than filters (K > O) the filter gradient is formed transposed,
  // dW^T (O x K) = dout^T @ col, every thread in its own block, and transposed into dw at the end:
  // the GEMM then packs the wide im2col chunk as its B operand, row by row, instead of its
  // transpose as A (measured on one Zen 5 core, 327 rows of the MNIST convnet's conv2: 177 ->
  // 216 GFLOP/s; 288 x 2000 x 64: 177 -> 203).
  const int64_t wn = K * O;
  const bool dwt = dw && K > O;
  Scratch partial(dwt ? nt * wn : (dw && nt > 1 ? (nt - 1) * wn : 0));
  std::vector<char> started(size_t(nt), 0);
  if (dx && !batch) { Timer t(&Profile::col2im); zero_fill(dx, xb.numel); }
  const int64_t HWC = g.H * g.W * g.C;
  run_chunks(g, batch,
             [&](int, int64_t n0, int64_t n1) { if (dx) zero_fill(dx + n0 * HWC, (n1 - n0) * HWC, false); },
             [&](int64_t u0, int64_t u1, float* col, int tid, bool par) {
               const int64_t m = (u1 - u0) * g.OW;
               const float* dchunk = dout + u0 * g.OW * O;
               double t_im = 0, t_gemm = 0, t_col = 0, t0;
               if (dw) {
                 float* dst = dwt ? partial.p + tid * wn : tid == 0 ? dw : partial.p + (tid - 1) * wn;
                 t0 = omp_get_wtime();
                 im2col(g, x, col, u0, u1, par);
                 t_im += omp_get_wtime() - t0;
                 t0 = omp_get_wtime();
                 if (dwt) sgemm(true, false, O, K, m, 1.f, dchunk, O, col, K, started[tid] ? 1.f : 0.f, dst, K);
                 else sgemm(true, false, K, O, m, 1.f, col, K, dchunk, O, started[tid] ? 1.f : 0.f, dst, O);
                 t_gemm += omp_get_wtime() - t0;
                 started[tid] = 1;
               }
               if (dx) {
                 t0 = omp_get_wtime();
                 sgemm(false, true, m, K, O, 1.f, dchunk, O, w, O, 0.f, col, K);
                 t_gemm += omp_get_wtime() - t0;
                 t0 = omp_get_wtime();
                 col2im(g, col, dx, u0, u1, par);
                 t_col += omp_get_wtime() - t0;
               }
               if (tid == 0) { prof_add(&Profile::im2col, t_im); prof_add(&Profile::gemm, t_gemm); prof_add(&Profile::col2im, t_col); }
             });
  if (dwt) {  // dw[k, o] = sum over the threads' blocks of dW^T[o, k]
    Timer t(&Profile::other);
    zero_fill(dw, wn, false);
    for (int t = 0; t < nt; ++t) {
      if (!started[t]) continue;
      const float* p = partial.p + t * wn;
      for (int64_t k = 0; k < K; ++k) {
        float* d = dw + k * O;
        for (int64_t o = 0; o < O; ++o) d[o] += p[o * K + k];
      }
    }
  } else if (dw && nt > 1) {
    Timer t(&Profile::other);
    if (!started[0]) zero_fill(dw, wn, false);
    for (int t = 1; t < nt; ++t) {
      if (!started[t]) continue;
      const float* p = partial.p + (t - 1) * wn;
#pragma omp simd
      for (int64_t i = 0; i < wn; ++i) dw[i] += p[i];
    }
  }
}

// ---- pooling ------------------------------------------------------------------------------------

// Per-row forward kernels, compiled for AVX-512, AVX2 and the baseline and picked at load time
// (target_clones; OpenMP's outlined loop bodies would not inherit a clone's target).
//
// Average pooling with windows that overlap along the row (sw < pw) is separable: the window
// rows of each input column are summed once into `cols` (W * C floats, per thread), then each
// output pixel adds its pw column sums (a different order of additions than row by row: equal
// within float rounding). Max pooling reduces each window as a whole: separable max measured
// slower on InceptionV3's first pool (147x147x64, memory-bound), and this keeps the first
// maximum and its argmax exactly as before.

// a[c] = max(a[c], s[c]) keeping a[c] on ties, NaN propagating (a NaN in a[c] stays, a NaN in
// s[c] replaces a number; compares, not branches, so that it vectorises); or a[c] += s[c].
template <bool Max>
LAMINA_INLINE void fold(float* a, const float* s, int64_t C) {
  if (Max) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float v = s[c], cur = a[c];
      a[c] = (v > cur) | ((v != v) & (cur == cur)) ? v : cur;
    }
  } else {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) a[c] += s[c];
  }
}

// One output row: y[ow, :] for ow in [0, OW); xn: the image (H, W, C); [h0, h1): the rows of the
// row's windows (not empty). Average pooling multiplies each sum by 1 / (its unpadded element count).
template <bool Max>
LAMINA_INLINE void pool_row(const PoolGeom& g, const float* xn, float* y, float* cols, int64_t h0, int64_t h1) {
  const int64_t C = g.C;
  const bool separable = !Max && g.sw < g.pw;
  if (separable) {
    const int64_t cw0 = std::max<int64_t>(-g.pl, 0), cw1 = std::min<int64_t>((g.OW - 1) * g.sw - g.pl + g.pw, g.W);
    for (int64_t iw = cw0; iw < cw1; ++iw) {
      float* a = cols + iw * C;
      const float* s = xn + (h0 * g.W + iw) * C;
      for (int64_t c = 0; c < C; ++c) a[c] = s[c];
      for (int64_t ih = h0 + 1; ih < h1; ++ih) fold<Max>(a, xn + (ih * g.W + iw) * C, C);
    }
  }
  for (int64_t ow = 0; ow < g.OW; ++ow, y += C) {
    const int64_t ws = ow * g.sw - g.pl, w0 = std::max<int64_t>(ws, 0), w1 = std::min<int64_t>(ws + g.pw, g.W);
    if (w1 <= w0) {  // a window entirely in the padding (not produced by "same")
      for (int64_t c = 0; c < C; ++c) y[c] = 0.f;
      continue;
    }
    if (separable) {
      for (int64_t c = 0; c < C; ++c) y[c] = cols[w0 * C + c];
      for (int64_t iw = w0 + 1; iw < w1; ++iw) fold<Max>(y, cols + iw * C, C);
    } else {
      const float* first = xn + (h0 * g.W + w0) * C;
      for (int64_t c = 0; c < C; ++c) y[c] = first[c];
      for (int64_t ih = h0; ih < h1; ++ih)
        for (int64_t iw = ih == h0 ? w0 + 1 : w0; iw < w1; ++iw) fold<Max>(y, xn + (ih * g.W + iw) * C, C);
    }
    if (!Max) {
      const float inv = 1.f / float((h1 - h0) * (w1 - w0));
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) y[c] *= inv;
    }
  }
}

// Output row (n, oh) of max pooling; with `idx`, also the position ih * W + iw of each first
// maximum (window by window, so the forward pass of training stays as it was).
// Max pooling with the argmax indices, on float32 or bfloat16 (uint16 bits) images: the rows of
// max_pool_row that keep indices (the maximum of bfloat16 values is one of them: no rounding).
// Always inlined, so that it is compiled for each ISA of the clones that call it (as an out-of-line
// template it ran at the baseline ISA, scalar: ~2x slower on the MNIST convnet's pooling).
template <class T>
__attribute__((always_inline)) inline void max_pool_idx_row(const PoolGeom& g, const T* xn, T* y, int32_t* idx,
                                                            int64_t oh) {
  const int64_t C = g.C, hs = oh * g.sh - g.pt;
  const int64_t h0 = std::max<int64_t>(hs, 0), h1 = std::min<int64_t>(hs + g.ph, g.H);
  if (h1 <= h0) {  // the whole row of windows lies in the padding
    for (int64_t o = 0; o < g.OW * C; ++o) { y[o] = T(0); idx[o] = -1; }
    return;
  }
  for (int64_t ow = 0; ow < g.OW; ++ow, y += C, idx += C) {
    const int64_t ws = ow * g.sw - g.pl, w0 = std::max<int64_t>(ws, 0), w1 = std::min<int64_t>(ws + g.pw, g.W);
    if (w1 <= w0) {
      for (int64_t c = 0; c < C; ++c) { y[c] = T(0); idx[c] = -1; }
      continue;
    }
    const T* first = xn + (h0 * g.W + w0) * C;
    const int32_t p0 = int32_t(h0 * g.W + w0);
    for (int64_t c = 0; c < C; ++c) { y[c] = first[c]; idx[c] = p0; }
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) {
        const T* s = xn + (ih * g.W + iw) * C;
        const int32_t p = int32_t(ih * g.W + iw);
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {  // branch-free (masks) so that it vectorises
          const float v = ld(s, c), cur = ld(y, c);
          // strictly greater, or the first NaN (a NaN already in y stays: first NaN wins)
          const bool take = (v > cur) | ((v != v) & (cur == cur));
          const int32_t gt = -int32_t(take);
          y[c] = take ? s[c] : y[c];
          idx[c] = (idx[c] & ~gt) | (p & gt);
        }
      }
  }
}

LAMINA_CLONES void max_pool_row(const PoolGeom& g, const float* xn, float* y, int32_t* idx, int64_t oh) {
  const int64_t C = g.C, hs = oh * g.sh - g.pt;
  const int64_t h0 = std::max<int64_t>(hs, 0), h1 = std::min<int64_t>(hs + g.ph, g.H);
  if (!idx && h1 <= h0) {
    for (int64_t o = 0; o < g.OW * C; ++o) y[o] = 0.f;
    return;
  }
  if (!idx) return pool_row<true>(g, xn, y, nullptr, h0, h1);
  max_pool_idx_row(g, xn, y, idx, oh);
}
LAMINA_CLONES void max_pool_row_bf16(const PoolGeom& g, const uint16_t* xn, uint16_t* y, int32_t* idx, int64_t oh) {
  max_pool_idx_row(g, xn, y, idx, oh);
}

// Output row (n, oh) of average pooling; cols: the thread's scratch row when separable.
LAMINA_CLONES void avg_pool_row(const PoolGeom& g, const float* xn, float* y, float* cols, int64_t oh) {
  const int64_t hs = oh * g.sh - g.pt;
  const int64_t h0 = std::max<int64_t>(hs, 0), h1 = std::min<int64_t>(hs + g.ph, g.H);
  if (h1 <= h0) {
    for (int64_t o = 0; o < g.OW * g.C; ++o) y[o] = 0.f;
    return;
  }
  pool_row<false>(g, xn, y, cols, h0, h1);
}

// out = max / mean over each window; for max, `idx` (same shape as out, int32) receives the
// position ih * W + iw of the first maximum when given. One task per output row (n, oh).
void pool2d_forward(int mode, const Buffer& xb, const Shape& xs, Buffer& ob, const Shape& os, const Shape& window,
                    const Shape& strides, const Shape& pads, Buffer* idxb);
void pool2d_backward(int mode, const Shape& xs, const Buffer& gb, const Shape& gs, Buffer& dxb,
                     const Shape& window, const Shape& strides, const Shape& pads, const Buffer* idxb);

// Pooling of bfloat16 images: max pooling on the bfloat16 values themselves (its maximum is one of
// them), its gradient summed in float32 and rounded once; average pooling on float32 copies.
static void pool2d_forward_bf16(int mode, const Buffer& xb, const Shape& xs, Buffer& ob, const Shape& os,
                                const Shape& window, const Shape& strides, const Shape& pads, Buffer* idxb) {
  const char* op = mode == POOL_MAX ? "max_pool" : "average_pool";
  check_buffer(op, "input", xb, xs, BF16);
  check_buffer(op, "output", ob, os, BF16);
  if (idxb) check_buffer(op, "indices", *idxb, os, I32);
  if (mode != POOL_MAX) {
    auto xf = widened(xb);
    Buffer of(ob.numel, F32, ob.device);
    pool2d_forward(mode, *xf, xs, of, os, window, strides, pads, idxb);
    return store_rounded(of.data<float>(), ob, ob.numel);
  }
  const PoolGeom g = pool_geom(op, xs, os, window, strides, pads);
  if (ob.numel == 0) return;
  std::vector<int32_t> own(idxb ? 0 : size_t(ob.numel));  // indices nobody asked for: kept here
  int32_t* idx = idxb ? idxb->data<int32_t>() : own.data();
  const uint16_t* x = xb.data<uint16_t>();
  uint16_t* out = ob.data<uint16_t>();
  const int64_t units = g.N * g.OH, HWC = g.H * g.W * g.C, row = g.OW * g.C;
  const bool par = ob.numel * g.ph * g.pw > kParallelGrain && units > 1;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t u = 0; u < units; ++u) max_pool_row_bf16(g, x + (u / g.OH) * HWC, out + u * row, idx + u * row, u % g.OH);
}

static void pool2d_backward_bf16(int mode, const Shape& xs, const Buffer& gb, const Shape& gs, Buffer& dxb,
                                 const Shape& window, const Shape& strides, const Shape& pads, const Buffer* idxb) {
  const char* op = mode == POOL_MAX ? "max_pool_backward" : "average_pool_backward";
  check_buffer(op, "output gradient", gb, gs, BF16);
  check_buffer(op, "input gradient", dxb, xs, BF16);
  auto gf = widened(gb);
  Buffer dxf(dxb.numel, F32, dxb.device);
  pool2d_backward(mode, xs, *gf, gs, dxf, window, strides, pads, idxb);  // float32 sums
  store_rounded(dxf.data<float>(), dxb, dxb.numel);
}

void pool2d_forward(int mode, const Buffer& xb, const Shape& xs, Buffer& ob, const Shape& os, const Shape& window,
                    const Shape& strides, const Shape& pads, Buffer* idxb) {
  const char* op = mode == POOL_MAX ? "max_pool" : "average_pool";
  LAMINA_CHECK(mode == POOL_MAX || mode == POOL_AVG, "pool2d: unknown mode " << mode);
  if (xb.dtype == BF16) return pool2d_forward_bf16(mode, xb, xs, ob, os, window, strides, pads, idxb);
  check_buffer(op, "input", xb, xs, F32);
  check_buffer(op, "output", ob, os, F32);
  if (idxb) check_buffer(op, "indices", *idxb, os, I32);
  const PoolGeom g = pool_geom(op, xs, os, window, strides, pads);
  const float* x = xb.data<float>();
  float* out = ob.data<float>();
  int32_t* idx = idxb ? idxb->data<int32_t>() : nullptr;
  const int64_t units = g.N * g.OH, HWC = g.H * g.W * g.C, row = g.OW * g.C;
  if (ob.numel == 0) return;
  Timer tm(&Profile::pool);
  const bool par = ob.numel * g.ph * g.pw > kParallelGrain && units > 1;
  if (mode == POOL_MAX) {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t u = 0; u < units; ++u)
      max_pool_row(g, x + (u / g.OH) * HWC, out + u * row, idx ? idx + u * row : nullptr, u % g.OH);
    return;
  }
  const int nt = par ? omp_get_max_threads() : 1;
  const int64_t per = g.sw < g.pw ? g.W * g.C : 0;
  Scratch cols(nt * per);  // one row of column sums per thread (allocated outside the region)
#pragma omp parallel for schedule(static) if (par) num_threads(nt)
  for (int64_t u = 0; u < units; ++u)
    avg_pool_row(g, x + (u / g.OH) * HWC, out + u * row, cols.p + omp_get_thread_num() * per, u % g.OH);
}

// Max pooling's gradient for windows that tile the image exactly (strides = window, no padding,
// OH * ph = H, OW * pw = W: every input pixel lies in exactly one window), image n's channels
// [c0, c1): each input pixel gets its window's gradient where it holds the argmax, else 0, in one
// vectorised pass that writes dx once (no zeroing first, no scattered additions).
LAMINA_CLONES void max_pool_grad_tiled(const PoolGeom& g, const float* gn, const int32_t* idn, float* dxn, int64_t c0,
                                       int64_t c1) {
  const int64_t C = g.C;
  for (int64_t oh = 0; oh < g.OH; ++oh)
    for (int64_t ow = 0; ow < g.OW; ++ow) {
      const float* gg = gn + (oh * g.OW + ow) * C;
      const int32_t* id = idn + (oh * g.OW + ow) * C;
      for (int64_t ih = oh * g.ph; ih < (oh + 1) * g.ph; ++ih)
        for (int64_t iw = ow * g.pw; iw < (ow + 1) * g.pw; ++iw) {
          const int32_t p = int32_t(ih * g.W + iw);
          float* d = dxn + p * C;
#pragma omp simd
          for (int64_t c = c0; c < c1; ++c) d[c] = id[c] == p ? gg[c] : 0.f;
        }
    }
}

// dx = gradient of pool2d_forward for output gradient g. Max pooling sends each output's
// gradient to the argmax position stored by the forward pass in `idx` (required for max).
// Work is split into (image, channel block) tasks, which write disjoint parts of dx.
void pool2d_backward(int mode, const Shape& xs, const Buffer& gb, const Shape& gs, Buffer& dxb,
                     const Shape& window, const Shape& strides, const Shape& pads, const Buffer* idxb) {
  const char* op = mode == POOL_MAX ? "max_pool_backward" : "average_pool_backward";
  LAMINA_CHECK(mode == POOL_MAX || mode == POOL_AVG, "pool2d: unknown mode " << mode);
  if (gb.dtype == BF16) return pool2d_backward_bf16(mode, xs, gb, gs, dxb, window, strides, pads, idxb);
  check_buffer(op, "output gradient", gb, gs, F32);
  check_buffer(op, "input gradient", dxb, xs, F32);
  LAMINA_CHECK(mode != POOL_MAX || idxb, op << ": needs the argmax indices written by the forward pass");
  if (idxb) check_buffer(op, "indices", *idxb, gs, I32);
  const PoolGeom g = pool_geom(op, xs, gs, window, strides, pads);
  const float* gr = gb.data<float>();
  float* dx = dxb.data<float>();
  const int32_t* idx = idxb ? idxb->data<int32_t>() : nullptr;
  const int64_t C = g.C, HW = g.H * g.W;
  Timer tm(&Profile::pool);
  const int nt = omp_get_max_threads();
  const int64_t cblocks = g.N >= nt ? 1 : std::min<int64_t>(std::max<int64_t>(C, 1), (nt + g.N - 1) / g.N);
  // With whole images per task, each task zeroes its image's gradient just before adding into
  // it (the image is then still in cache: one pass over dx instead of two); with images split
  // by channels, dx is zeroed first. Max pooling over windows that tile the image writes every
  // element of dx itself (max_pool_grad_tiled) and zeroes nothing.
  const bool tiled = mode == POOL_MAX && g.sh == g.ph && g.sw == g.pw && g.pt == 0 && g.pl == 0 &&
                     g.OH * g.ph == g.H && g.OW * g.pw == g.W;
  if (!tiled && (cblocks > 1 || gb.numel == 0 || C == 0)) zero_fill(dx, dxb.numel);
  if (gb.numel == 0 || C == 0) return;
  const int64_t tasks = g.N * cblocks;
  const bool par = (gb.numel * (mode == POOL_MAX ? 1 : g.ph * g.pw) > kParallelGrain || dxb.numel > kParallelGrain) &&
                   tasks > 1;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t n = t / cblocks, cb = t % cblocks;
    const int64_t c0 = C * cb / cblocks, c1 = C * (cb + 1) / cblocks;
    float* dxn = dx + n * HW * C;
    if (tiled) {
      const int64_t o = n * g.OH * g.OW * C;
      max_pool_grad_tiled(g, gr + o, idx + o, dxn, c0, c1);
      continue;
    }
    if (cblocks == 1) std::memset(dxn, 0, size_t(HW * C) * sizeof(float));
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const int64_t o = ((n * g.OH + oh) * g.OW + ow) * C;
        const float* gg = gr + o;
        if (mode == POOL_MAX) {
          const int32_t* id = idx + o;
          for (int64_t c = c0; c < c1; ++c) {
            const int64_t p = id[c];
            if (p >= 0 && p < HW) dxn[p * C + c] += gg[c];
          }
          continue;
        }
        int64_t h0, h1, w0, w1;
        window_bounds(g, oh, ow, h0, h1, w0, w1);
        if (h1 <= h0 || w1 <= w0) continue;
        const float inv = 1.f / float((h1 - h0) * (w1 - w0));
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) {
            float* d = dxn + (ih * g.W + iw) * C;
#pragma omp simd
            for (int64_t c = c0; c < c1; ++c) d[c] += gg[c] * inv;
          }
      }
  }
}

// out[b, s, r] = x[b, r, s]: the layout change between channels_first and channels_last.
void batch_transpose(const Buffer& xb, int64_t B, int64_t R, int64_t S, Buffer& ob) {
  misc_checks::check_batch_transpose(xb, B, R, S, ob);
  const float* x = xb.data<float>();
  float* o = ob.data<float>();
  constexpr int64_t T = 32;
  const int64_t rt = (R + T - 1) / T, st = (S + T - 1) / T, tiles = B * rt * st;
  const bool par = xb.numel > kParallelGrain && tiles > 1;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t b = t / (rt * st), r0 = (t / st) % rt * T, s0 = t % st * T;
    const float* xb_ = x + b * R * S;
    float* ob_ = o + b * R * S;
    const int64_t r1 = std::min(R, r0 + T), s1 = std::min(S, s0 + T);
    for (int64_t s = s0; s < s1; ++s)
      for (int64_t r = r0; r < r1; ++r) ob_[s * R + r] = xb_[r * S + s];
  }
}

}  // namespace

void bind_conv(py::module_& m) {
  def_kernel(m, "conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("x_shape"), py::arg("w"), py::arg("w_shape"),
        py::arg("out"), py::arg("out_shape"), py::arg("strides"), py::arg("dilation"), py::arg("pads"));
  def_kernel(m, "qconv2d_forward", &qconv2d_forward, py::arg("x"), py::arg("x_shape"), py::arg("w_shape"),
             py::arg("packed"), py::arg("colsum"), py::arg("w_scale"), py::arg("bias").none(true), py::arg("out"),
             py::arg("out_shape"), py::arg("strides"), py::arg("dilation"), py::arg("pads"), py::arg("relu") = false);
  def_kernel(m, "qconv2d_fused", &qconv2d_fused, py::arg("x"), py::arg("x_shape"), py::arg("x_step"),
             py::arg("w_shape"), py::arg("packed"), py::arg("colsum"), py::arg("w_scale"), py::arg("bias").none(true),
             py::arg("bn_mean").none(true), py::arg("bn_var").none(true), py::arg("bn_gamma").none(true),
             py::arg("bn_beta").none(true), py::arg("bn_eps"), py::arg("lo"), py::arg("hi"), py::arg("out"),
             py::arg("out_shape"), py::arg("out_step"), py::arg("flags").none(true), py::arg("strides"),
             py::arg("dilation"), py::arg("pads"), py::arg("pool") = Shape{});
  def_kernel(m, "conv2d_backward", &conv2d_backward, py::arg("x"), py::arg("x_shape"), py::arg("w"), py::arg("w_shape"),
        py::arg("grad"), py::arg("grad_shape"), py::arg("dx").none(true), py::arg("dw").none(true), py::arg("strides"),
        py::arg("dilation"), py::arg("pads"));
  def_kernel(m, "pool2d_forward", &pool2d_forward, py::arg("mode"), py::arg("x"), py::arg("x_shape"), py::arg("out"),
        py::arg("out_shape"), py::arg("pool_size"), py::arg("strides"), py::arg("pads"),
        py::arg("indices").none(true) = nullptr);
  def_kernel(m, "pool2d_backward", &pool2d_backward, py::arg("mode"), py::arg("x_shape"), py::arg("grad"),
        py::arg("grad_shape"), py::arg("dx"), py::arg("pool_size"), py::arg("strides"), py::arg("pads"),
        py::arg("indices").none(true) = nullptr);
  def_kernel(m, "batch_transpose", &batch_transpose);
  m.def("conv_profile", [](bool reset) {
    std::lock_guard<std::mutex> lock(g_prof_mu);
    py::dict d;
    d["im2col"] = g_prof.im2col; d["col2im"] = g_prof.col2im; d["gemm"] = g_prof.gemm;
    d["total"] = g_prof.total; d["pool"] = g_prof.pool; d["other"] = g_prof.other; d["calls"] = g_prof.calls;
    if (reset) g_prof = Profile();
    return d;
  }, py::arg("reset") = false, "Seconds spent in im2col, col2im, GEMM and pooling since the last reset.");
  m.def("conv_schedule", [](int mode) {
    int old = g_schedule;
    if (mode >= 0) g_schedule = mode;
    return old;
  }, py::arg("mode") = -1, "0: automatic, 1: split chunks across threads, 2: batch-parallel when possible; returns the previous value.");
  m.def("conv_direct_wide", [](int enable) {
    const bool old = g_direct_wide;
    if (enable >= 0) g_direct_wide = enable != 0;
    return old;
  }, py::arg("enable") = -1,
     "1: layers with many input channels use the direct AVX-512 or AVX2 kernels where the CPU has them (the "
     "default), 0: im2col + GEMM; returns the previous setting.");
  m.def("conv_winograd", [](int enable) {
    const bool old = convdirect::g_winograd;
    if (enable >= 0) convdirect::g_winograd = enable != 0;
    return old;
  }, py::arg("enable") = -1,
     "1: stride-1 3x3 and 5x5 layers with channels in multiples of 16 (16 tiles an image or more, "
     "in x out channels at most 256 x 256) "
     "run the forward pass and both gradients as Winograd products on AVX-512 or AVX2 (the default), 0: the "
     "direct kernels; returns the previous setting.");
  m.def("conv_chunk_bytes", [](int64_t n) {
    int64_t old = g_chunk_bytes;
    if (n > 0) g_chunk_bytes = n;
    return old;
  }, py::arg("nbytes") = 0, "Sets the im2col chunk target (bytes) when nbytes > 0; returns the previous value.");
}

}  // namespace lamina
