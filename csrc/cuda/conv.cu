// Convolution, depthwise convolution and pooling, channels-last (NHWC; 1-D ops run as H = 1), float32;
// conv2d also on bfloat16 (below). The same kernels, arguments, checks and results as
// csrc/cpu/conv.cpp and depthwise.cpp; the geometry (output sizes, argument checks) is
// csrc/conv_geom.h, shared with them.
//
// conv2d: the output rows (n, oh) are taken in chunks whose im2col matrix stays under kChunkBytes
// (and kMaxRows GEMM rows); per chunk, im2col into a scratch Buffer, then gemm_f32 (cuBLAS when
// loaded):  out[rows, O] = col[rows, KH*KW*C] @ W[KH*KW*C, O]. Backward, per chunk:
//   dW (+)= col^T @ dout          (beta = 0 for the first chunk, 1 after)
//   dcol = dout @ W^T, then col2im as a gather: each thread owns one element of dx and adds the
//          column entries of the chunk that read it (no atomics; dx is zeroed first).
// A 1x1, stride-1, unpadded convolution needs no im2col: the input is already the GEMM operand.
// Where cuDNN is loaded (cudnn.cpp), conv2d's other convolutions run on it instead (its
// deterministic algorithms; the kernel transposed to and from cuDNN's (O, KH, KW, C) layout), unless
// it cannot express the padding (one more row or column after than before) or refuses the call.
//
// conv2d on bfloat16 images and kernels where cuDNN is loaded: a bfloat16 output, input gradient and
// kernel gradient come from cuDNN's bfloat16 configuration (float32 sums, each rounded once), as
// float32 conv2d's; float32 outputs or gradients take the path below.
//
// conv2d on bfloat16 images and kernels (mixed precision; the CPU's conv2d_forward_bf16 /
// conv2d_backward_bf16 contract): im2col moves bfloat16 elements into a bfloat16 column buffer,
// the products run on cuBLAS GemmStridedBatchedEx (bfloat16 operands, float32 compute and
// float32 results), and each result is rounded once into its bfloat16 output (round_bf16_kernel)
// or written to a float32 one. Backward: dW = col^T @ dout summed in float32 (across chunks too:
// beta = 1 on a float32 C, the kernel gradient itself when float32, else scratch), and
// dcol = dout @ W^T in float32, gathered by col2im into float32 sums (dx itself when float32, else
// scratch); each rounded once at the end. x, the kernel and the output gradient are bfloat16, the
// output and the gradients bfloat16 or float32 (else TypeError, as on the CPU). Without cuBLAS (or
// its GemmStridedBatchedEx), or with K or O beyond its 32-bit sizes: Unsupported, before anything
// is queued (the host's kernel runs it).
//
// depthwise_conv2d: one thread per output element (forward) and per input element (dx, a gather);
// dw: blocks of 32 output channels x 8 pixel lanes, the pixels split into S slices, each slice's
// sums written to its own row of a scratch buffer and the S rows summed by a second kernel (no
// atomics: the same result on every run).
//
// Pooling: one thread per output element (forward: max keeps the first maximum, NaN propagating
// with the first NaN as the argmax, indices ih * W + iw, -1 and 0 for windows entirely in the
// padding; average divides by the window's unpadded element count), and one thread per input
// element backward (a gather over the windows that cover it: average adds g / count; max adds g
// where the window's stored argmax is this element, as the CPU's scatter does for the indices its
// forward pass writes, which always lie inside their window).
//
// Pooling takes float32 or bfloat16 images (as the CPU's pool2d_*_bf16: max pooling keeps the
// maximum's own bfloat16 bits, averages and gradients sum in float32 and round once; bf16.cuh).
// depthwise_conv2d takes float32 and bfloat16 buffers, in any mix (mixed precision: float32
// products and sums on the widened values, each output rounded once -- the bits of
// backend/device.py's WideningTable, which runs the CPU's on float32 copies).
//
// Indices are 32-bit where every offset a kernel forms fits (the common case), else 64-bit.
#include <algorithm>
#include <climits>

#include "../conv_geom.h"
#include "bf16.cuh"
#include "cudnn.h"
#include "gpu.h"

namespace lamina {
namespace gpu {

namespace {

constexpr int64_t kChunkBytes = int64_t(256) << 20;  // im2col scratch per chunk (one output row at least)
constexpr int64_t kMaxRows = int64_t(1) << 21;       // GEMM rows per call (the tiled kernel takes 65535 * 64)

bool fits32(std::initializer_list<int64_t> ns) {
  for (int64_t n : ns)
    if (n >= INT_MAX / 2) return false;
  return true;
}

template <class T>
__device__ __forceinline__ T imax(T a, T b) { return a > b ? a : b; }
template <class T>
__device__ __forceinline__ T imin(T a, T b) { return a < b ? a : b; }

// The geometry as the kernels take it (plain values).
struct CG {
  int64_t N, H, W, C, KH, KW, O, OH, OW, sh, sw, dh, dw, pt, pl;
};
CG cg_of(const ConvGeom& g) {
  return CG{g.N, g.H, g.W, g.C, g.KH, g.KW, g.O, g.OH, g.OW, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl};
}

// ---- conv2d: im2col / col2im ---------------------------------------------------------------------

// col[(u - u0) * OW + ow, (kh, kw, c)] = x[n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw, c] (0 outside)
// for the output rows u = n * OH + oh in [u0, u0 + units). T: float, or uint16_t (bfloat16 bits).
template <class I, class T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ col, CG g, int64_t u0, int64_t total) {
  const I C = I(g.C), KW = I(g.KW), KH = I(g.KH), OW = I(g.OW), OH = I(g.OH), H = I(g.H), W = I(g.W);
  GRID_STRIDE(i64, total) {
    I i = I(i64);
    const I c = i % C;
    i /= C;
    const I kw = i % KW;
    i /= KW;
    const I kh = i % KH;
    i /= KH;
    const I ow = i % OW;
    const I u = I(u0) + i / OW;
    const I n = u / OH, oh = u % OH;
    const I ih = oh * I(g.sh) - I(g.pt) + kh * I(g.dh);
    const I iw = ow * I(g.sw) - I(g.pl) + kw * I(g.dw);
    T v = T(0);  // +0 (a bfloat16 zero is all bits clear)
    if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = x[((n * H + ih) * W + iw) * C + c];
    col[i64] = v;
  }
}

// dx[n, ih, iw, c] += the col entries of output rows [u0, u1) that im2col read from (n, ih, iw, c),
// for the images n0 .. that the chunk touches (`total` elements of dx from image n0 on).
template <class I>
__global__ void col2im_kernel(const float* __restrict__ col, float* __restrict__ dx, CG g, int64_t u0, int64_t u1,
                              int64_t n0, int64_t total) {
  const I C = I(g.C), KW = I(g.KW), KH = I(g.KH), OW = I(g.OW), OH = I(g.OH), H = I(g.H), W = I(g.W);
  const I sh = I(g.sh), sw = I(g.sw), dh = I(g.dh), dw = I(g.dw), K = KH * KW * C;
  GRID_STRIDE(i64, total) {
    I i = I(i64);
    const I c = i % C;
    i /= C;
    const I iw = i % W;
    i /= W;
    const I ih = i % H;
    const I n = I(n0) + i / H;
    // this image's output rows inside the chunk: [oa, ob)
    const I oa = imax(I(0), I(u0) - n * OH), ob = imin(OH, I(u1) - n * OH);
    float s = 0.f;
    for (I kh = 0; kh < KH; ++kh) {
      const I th = ih + I(g.pt) - kh * dh;
      if (th < 0 || th % sh) continue;
      const I oh = th / sh;
      if (oh < oa || oh >= ob) continue;
      const float* crow = col + ((n * OH + oh - I(u0)) * OW) * K + kh * KW * C + c;
      for (I kw = 0; kw < KW; ++kw) {
        const I tw = iw + I(g.pl) - kw * dw;
        if (tw < 0 || tw % sw) continue;
        const I ow = tw / sw;
        if (ow >= OW) continue;
        s += crow[ow * K + kw * C];
      }
    }
    dx[i64 + int64_t(n0) * g.H * g.W * g.C] += s;
  }
}

// Output rows (n, oh) per chunk: the chunk's scratch (row_bytes per GEMM row, an output pixel:
// float32's im2col row by default) under kChunkBytes and its GEMM rows under kMaxRows, one row at least.
int64_t units_per_chunk(const ConvGeom& g, int64_t row_bytes = -1) {
  if (row_bytes < 0) row_bytes = g.K() * int64_t(sizeof(float));
  const int64_t unit_bytes = std::max<int64_t>(g.OW * row_bytes, 1);
  int64_t u = std::max<int64_t>(1, kChunkBytes / unit_bytes);
  u = std::min<int64_t>(u, std::max<int64_t>(1, kMaxRows / std::max<int64_t>(g.OW, 1)));
  return std::min<int64_t>(u, g.N * g.OH);
}

// The largest row / column coordinate (or its magnitude) a kernel forms.
int64_t conv_span(const ConvGeom& g) {
  return std::max(g.OH * g.sh + g.KH * g.dh + g.pt + g.H, g.OW * g.sw + g.KW * g.dw + g.pl + g.W);
}

template <class T>
void im2col(Context& c, const ConvGeom& g, const T* x, T* col, int64_t u0, int64_t u1) {
  const int64_t total = (u1 - u0) * g.OW * g.K();
  if (total == 0) return;
  const CG k = cg_of(g);
  if (fits32({total, g.N * g.H * g.W * g.C, g.N * g.OH, conv_span(g)}))
    im2col_kernel<int, T><<<grid_for(total), 256, 0, c.stream>>>(x, col, k, u0, total);
  else
    im2col_kernel<int64_t, T><<<grid_for(total), 256, 0, c.stream>>>(x, col, k, u0, total);
}

void col2im(Context& c, const ConvGeom& g, const float* col, float* dx, int64_t u0, int64_t u1) {
  const int64_t n0 = u0 / g.OH, n1 = (u1 - 1) / g.OH + 1;  // images touched by the chunk
  const int64_t total = (n1 - n0) * g.H * g.W * g.C;
  if (total == 0) return;
  const CG k = cg_of(g);
  if (fits32({total, (u1 - u0) * g.OW * g.K(), g.N * g.OH, g.N * g.H, conv_span(g)}))
    col2im_kernel<int><<<grid_for(total), 256, 0, c.stream>>>(col, dx, k, u0, u1, n0, total);
  else
    col2im_kernel<int64_t><<<grid_for(total), 256, 0, c.stream>>>(col, dx, k, u0, u1, n0, total);
}

void zero(Context& c, Buffer& b) {
  if (b.numel) LAMINA_CUDA_CHECK(cudaMemsetAsync(b.ptr, 0, size_t(b.numel) * dtype_size(b.dtype), c.stream));
}

void zero_f32(Context& c, float* p, int64_t n) {
  if (n > 0) LAMINA_CUDA_CHECK(cudaMemsetAsync(p, 0, size_t(n) * sizeof(float), c.stream));
}

// ---- bfloat16 conv2d: one rounding, and the products on cuBLAS -----------------------------------

// dst[i] = src[i] rounded to bfloat16 (nearest, ties to even: types.h's f32_to_bf16, as the CPU).
__global__ void round_bf16_kernel(const float* __restrict__ src, uint16_t* __restrict__ dst, int64_t n) {
  GRID_STRIDE(i, n) dst[i] = f32_to_bf16(src[i]);
}

void round_into(Context& c, const float* src, uint16_t* dst, int64_t n) {
  if (n > 0) round_bf16_kernel<<<grid_for(n), 256, 0, c.stream>>>(src, dst, n);
}

// A chunk length below `total`, rounded down to a multiple of 8 (when at least 8): later chunks'
// bfloat16 rows then start 16-byte aligned, as cuBLAS's fastest kernels like (it takes any alignment).
int64_t aligned8(int64_t n, int64_t total) { return n < total && n >= 8 ? n - n % 8 : std::min(n, total); }

// GEMM rows per call (of `rows`) where each row needs row_bytes of scratch: under kChunkBytes and kMaxRows.
int64_t rows_per_chunk(int64_t rows, int64_t row_bytes) {
  return aligned8(std::min(kMaxRows, std::max<int64_t>(1, kChunkBytes / std::max<int64_t>(row_bytes, 1))), rows);
}

// Unsupported (the host runs the call) where cuBLAS's bfloat16 GEMM cannot run on c's device or
// the products' sizes exceed its 32-bit arguments; checked before any work is queued.
void require_bf16_gemm(Context& c, const char* op, const ConvGeom& g) {
  if (g.K() > INT_MAX || g.O > INT_MAX)
    throw Unsupported(std::string(op) + ": a bfloat16 convolution with kh*kw*in_channels = " + std::to_string(g.K()) +
                      " and " + std::to_string(g.O) + " output channels runs on the host");
  if (!cublas_bf16_available(c))
    throw Unsupported(std::string(op) + ": bfloat16 convolutions need cuBLAS (GemmStridedBatchedEx); this one runs "
                                        "on the host");
}

// Row-major C (M x N, float32, leading dimension ldc) = op(A) op(B) + beta C, A and B bfloat16:
// float32 products and sums (cublas_gemm_bf16 with a float32 C).
void gemm_bf16(Context& c, const char* op, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (!cublas_gemm_bf16(c, ta, tb, M, N, K, A, lda, 0, B, ldb, 0, beta, C, false, ldc, 0, 1))
    throw Unsupported(std::string(op) + ": bfloat16 products need cuBLAS (GemmStridedBatchedEx); this one runs on "
                                        "the host");
}

// ---- cuDNN (cudnn.cpp), where loaded ------------------------------------------------------------

// dst[j * R + i] = src[i * Cn + j]: an R x Cn matrix transposed through 32 x 32 shared tiles (a
// kernel between lamina's (KH, KW, C, O) layout and cuDNN's (O, KH, KW, C)).
template <class T>
__global__ void transpose_kernel(const T* __restrict__ src, T* __restrict__ dst, int64_t R, int64_t Cn) {
  __shared__ T tile[32][33];
  const int64_t r0 = int64_t(blockIdx.y) * 32, c0 = int64_t(blockIdx.x) * 32;
  for (int i = threadIdx.y; i < 32; i += 8) {
    const int64_t r = r0 + i, col = c0 + threadIdx.x;
    if (r < R && col < Cn) tile[i][threadIdx.x] = src[r * Cn + col];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += 8) {
    const int64_t col = c0 + i, r = r0 + threadIdx.x;
    if (r < R && col < Cn) dst[col * R + r] = tile[threadIdx.x][i];
  }
}

// Whether an R x Cn transpose fits the grid (R / 32 blocks down, the y limit).
bool transposable(int64_t R, int64_t Cn) { return (R + 31) / 32 <= 65535 && (Cn + 31) / 32 <= INT_MAX; }

template <class T>
void transpose(Context& c, const T* src, T* dst, int64_t R, int64_t Cn) {
  if (R == 0 || Cn == 0) return;
  const dim3 grid(unsigned((Cn + 31) / 32), unsigned((R + 31) / 32));
  transpose_kernel<T><<<grid, dim3(32, 8), 0, c.stream>>>(src, dst, R, Cn);
}

CudnnConv cudnn_geom(const ConvGeom& g, bool bf16) {
  return CudnnConv{g.N, g.H, g.W, g.C, g.KH, g.KW, g.O, g.OH, g.OW, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, 1, bf16};
}

// A convolution cuDNN takes: im2col would copy the input (1x1 stride-1 unpadded convolutions are
// a plain GEMM already and stay on it).
bool use_cudnn(Context& c, const ConvGeom& g, const CudnnConv& k) {
  return !g.direct() && transposable(g.K(), g.O) && cudnn_can_run(c, k);
}

// ---- depthwise ----------------------------------------------------------------------------------

struct DG {
  int64_t N, H, W, C, KH, KW, DM, OH, OW, sh, sw, dh, dw, pt, pl;
};
DG dg_of(const DwGeom& g) {
  return DG{g.N, g.H, g.W, g.C, g.KH, g.KW, g.DM, g.OH, g.OW, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl};
}
int64_t dw_span(const DwGeom& g) {
  return std::max(g.OH * g.sh + g.KH * g.dh + g.pt + g.H, g.OW * g.sw + g.KW * g.dw + g.pl + g.W);
}

// y[n, oh, ow, c*DM + m] = sum over taps inside the image of x[n, ih, iw, c] * w[kh, kw, c, m].
template <class I, class A>
__global__ void dw_forward_kernel(const A x, const A w, const A y, DG g, int64_t total) {
  const I C = I(g.C), DM = I(g.DM), CO = C * DM, OW = I(g.OW), OH = I(g.OH), H = I(g.H), W = I(g.W);
  const I KH = I(g.KH), KW = I(g.KW);
  GRID_STRIDE(i64, total) {
    I i = I(i64);
    const I co = i % CO;
    i /= CO;
    const I ow = i % OW;
    i /= OW;
    const I oh = i % OH;
    const I n = i / OH;
    const I c = co / DM;
    const I ih0 = oh * I(g.sh) - I(g.pt), iw0 = ow * I(g.sw) - I(g.pl);
    const I xn = n * H * W * C + c;
    float s = 0.f;
    for (I kh = 0; kh < KH; ++kh) {
      const I ih = ih0 + kh * I(g.dh);
      if (ih < 0 || ih >= H) continue;
      for (I kw = 0; kw < KW; ++kw) {
        const I iw = iw0 + kw * I(g.dw);
        if (iw < 0 || iw >= W) continue;
        s += x.ld(xn + (ih * W + iw) * C) * w.ld((kh * KW + kw) * CO + co);
      }
    }
    y.st(i64, s);
  }
}

// dx[n, ih, iw, c] = sum over (output pixel, tap) pairs that read it, and m, of dy[.., c*DM + m] * w[kh, kw, c, m].
template <class I, class A>
__global__ void dw_input_grad_kernel(const A dy, const A w, const A dx, DG g, int64_t total) {
  const I C = I(g.C), DM = I(g.DM), CO = C * DM, OW = I(g.OW), OH = I(g.OH), H = I(g.H), W = I(g.W);
  const I KH = I(g.KH), KW = I(g.KW), sh = I(g.sh), sw = I(g.sw);
  GRID_STRIDE(i64, total) {
    I i = I(i64);
    const I c = i % C;
    i /= C;
    const I iw = i % W;
    i /= W;
    const I ih = i % H;
    const I n = i / H;
    float s = 0.f;
    for (I kh = 0; kh < KH; ++kh) {
      const I th = ih + I(g.pt) - kh * I(g.dh);
      if (th < 0 || th % sh) continue;
      const I oh = th / sh;
      if (oh >= OH) continue;
      for (I kw = 0; kw < KW; ++kw) {
        const I tw = iw + I(g.pl) - kw * I(g.dw);
        if (tw < 0 || tw % sw) continue;
        const I ow = tw / sw;
        if (ow >= OW) continue;
        const I d = ((n * OH + oh) * OW + ow) * CO + c * DM, wk = (kh * KW + kw) * CO + c * DM;
        for (I m = 0; m < DM; ++m) s += dy.ld(d + m) * w.ld(wk + m);
      }
    }
    dx.st(i64, s);
  }
}

// Partial kernel gradient: block (tap, 32-channel tile, slice) sums, over the pixels p = slice*8 + ty
// + k*8*S of the batch, x[pixel's input for the tap, co / DM] * dy[p, co] into part[slice, tap, co].
constexpr int kDwLanes = 8;
template <class A>
__global__ void __launch_bounds__(256) dw_kernel_grad_kernel(const A x, const A dy, float* __restrict__ part, DG g,
                                                             int64_t ctiles) {
  __shared__ float red[kDwLanes][32];
  const int64_t CO = g.C * g.DM, taps = g.KH * g.KW, P = g.N * g.OH * g.OW;
  const int64_t tap = blockIdx.x / ctiles, co = (blockIdx.x % ctiles) * 32 + threadIdx.x;
  const int64_t kh = tap / g.KW, kw = tap % g.KW;
  const int64_t S = gridDim.y;
  float s = 0.f;
  if (co < CO) {
    const int64_t c = co / g.DM;
    for (int64_t p = int64_t(blockIdx.y) * kDwLanes + threadIdx.y; p < P; p += S * kDwLanes) {
      const int64_t ow = p % g.OW, t = p / g.OW, oh = t % g.OH, n = t / g.OH;
      const int64_t ih = oh * g.sh - g.pt + kh * g.dh, iw = ow * g.sw - g.pl + kw * g.dw;
      if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
      s += x.ld(((n * g.H + ih) * g.W + iw) * g.C + c) * dy.ld(p * CO + co);
    }
  }
  red[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && co < CO) {
    float t = 0.f;
    for (int l = 0; l < kDwLanes; ++l) t += red[l][threadIdx.x];
    part[(int64_t(blockIdx.y) * taps + tap) * CO + co] = t;
  }
}

// dw[j] = sum over the S slices of part[s, j].
template <class A>
__global__ void sum_slices_kernel(const float* __restrict__ part, const A dw, int64_t n, int64_t S) {
  GRID_STRIDE(j, n) {
    float t = 0.f;
    for (int64_t s = 0; s < S; ++s) t += part[s * n + j];
    dw.st(j, t);
  }
}

// ---- pooling ------------------------------------------------------------------------------------

int64_t pool_span(const PoolGeom& g) {
  return std::max(g.OH * g.sh + g.ph + g.pt + g.H, g.OW * g.sw + g.pw + g.pl + g.W);
}

// Valid window bounds of output pixel (oh, ow), as window_bounds.
template <class I>
__device__ __forceinline__ void bounds(const PoolGeom& g, I oh, I ow, I& h0, I& h1, I& w0, I& w1) {
  const I hs = oh * I(g.sh) - I(g.pt), ws = ow * I(g.sw) - I(g.pl);
  h0 = imax(hs, I(0));
  h1 = imin(hs + I(g.ph), I(g.H));
  w0 = imax(ws, I(0));
  w1 = imin(ws + I(g.pw), I(g.W));
}

// S: the images' storage, float or uint16_t (bfloat16: compared and summed as float32; a maximum
// is the element's own bits, an average rounded once).
template <class I, bool Max, class S>
__global__ void pool_forward_kernel(const S* __restrict__ x, S* __restrict__ y, int32_t* __restrict__ idx,
                                    PoolGeom g, int64_t total) {
  const I C = I(g.C), OW = I(g.OW), OH = I(g.OH), H = I(g.H), W = I(g.W);
  GRID_STRIDE(i64, total) {
    I i = I(i64);
    const I c = i % C;
    i /= C;
    const I ow = i % OW;
    i /= OW;
    const I oh = i % OH;
    const I n = i / OH;
    I h0, h1, w0, w1;
    bounds(g, oh, ow, h0, h1, w0, w1);
    if (h1 <= h0 || w1 <= w0) {  // the window lies in the padding
      y[i64] = narrow<S>(0.f);
      if (idx) idx[i64] = -1;
      continue;
    }
    const S* xn = x + n * H * W * C + c;
    if (Max) {
      float cur = wide(xn[(h0 * W + w0) * C]);
      int32_t best = int32_t(h0 * W + w0);
      for (I ih = h0; ih < h1; ++ih)
        for (I iw = w0; iw < w1; ++iw) {
          const float v = wide(xn[(ih * W + iw) * C]);
          // strictly greater, or the first NaN (a NaN already held stays: the first NaN wins)
          if (v > cur || (v != v && cur == cur)) {
            cur = v;
            best = int32_t(ih * W + iw);
          }
        }
      if constexpr (std::is_same<S, float>::value) y[i64] = cur;
      else y[i64] = xn[I(best) * C];  // the maximum's own bits (as the CPU copies them)
      if (idx) idx[i64] = best;
    } else {
      float s = 0.f;
      for (I ih = h0; ih < h1; ++ih)
        for (I iw = w0; iw < w1; ++iw) s += wide(xn[(ih * W + iw) * C]);
      y[i64] = narrow<S>(s * (1.f / float((h1 - h0) * (w1 - w0))));
    }
  }
}

// dx[n, ih, iw, c] = sum over the windows (oh, ow) that cover (ih, iw), in row-major order, of
// g / (window count) (average) or g where idx == ih * W + iw (max).
// S: the gradients' storage, float or uint16_t (bfloat16: summed in float32, rounded once).
template <class I, bool Max, class S>
__global__ void pool_backward_kernel(const S* __restrict__ gr, const int32_t* __restrict__ idx,
                                     S* __restrict__ dx, PoolGeom g, int64_t total) {
  const I C = I(g.C), OW = I(g.OW), OH = I(g.OH), H = I(g.H), W = I(g.W);
  const I sh = I(g.sh), sw = I(g.sw);
  GRID_STRIDE(i64, total) {
    I i = I(i64);
    const I c = i % C;
    i /= C;
    const I iw = i % W;
    i /= W;
    const I ih = i % H;
    const I n = i / H;
    // windows whose rows [oh*sh - pt, oh*sh - pt + ph) hold ih: oh in [ceil((ih+pt-ph+1)/sh), (ih+pt)/sh]
    const I th = ih + I(g.pt), tw = iw + I(g.pl);
    const I oh0 = th - I(g.ph) + 1 <= 0 ? I(0) : (th - I(g.ph) + sh) / sh, oh1 = imin(OH - 1, th / sh);
    const I ow0 = tw - I(g.pw) + 1 <= 0 ? I(0) : (tw - I(g.pw) + sw) / sw, ow1 = imin(OW - 1, tw / sw);
    const int32_t me = int32_t(ih * W + iw);
    float s = 0.f;
    for (I oh = oh0; oh <= oh1; ++oh)
      for (I ow = ow0; ow <= ow1; ++ow) {
        const I o = ((n * OH + oh) * OW + ow) * C + c;
        if (Max) {
          if (idx[o] == me) s += wide(gr[o]);
        } else {
          I h0, h1, w0, w1;
          bounds(g, oh, ow, h0, h1, w0, w1);
          s += wide(gr[o]) * (1.f / float((h1 - h0) * (w1 - w0)));
        }
      }
    dx[i64] = narrow<S>(s);
  }
}

}  // namespace

// ---- argument checks shared by the convolutions ------------------------------------------------

namespace {

// A depthwise convolution's buffers, checked as on the CPU (conv_geom.h), each float32 or bfloat16
// (any mix, as backend/device.py's float32 copies take them); true when one is bfloat16.
bool check_dw_buffers(const char* op, const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws,
                      const Buffer& ob, const Shape& os, const char* o_name, const Buffer* dxb = nullptr,
                      const Buffer* dwb = nullptr) {
  check_buffer(op, "input", xb, xs, float_dtype(xb));
  check_buffer(op, "kernel", wb, ws, float_dtype(wb));
  check_buffer(op, o_name, ob, os, float_dtype(ob));
  if (dxb) check_buffer(op, "input gradient", *dxb, xs, float_dtype(*dxb));
  if (dwb) check_buffer(op, "kernel gradient", *dwb, ws, float_dtype(*dwb));
  bool any = false;
  for (const Buffer* b : {&xb, &wb, &ob, dxb, dwb}) any = any || (b && b->dtype == BF16);
  return any;
}

}  // namespace

// ---- conv2d on bfloat16 (mixed precision) ----------------------------------------------------------

namespace {

// x, w bfloat16; out bfloat16 or float32.
void conv2d_forward_bf16(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws, Buffer& ob,
                         const Shape& os, const Shape& strides, const Shape& dilation, const Shape& pads) {
  const char* op = "conv2d";
  check_conv_buffers(op, BF16, xb, xs, wb, ws, ob, os, "output");
  const ConvGeom g = conv_geom(op, xs, ws, os, strides, dilation, pads);
  Context& c = op_device(op, {&xb, &wb, &ob});
  const int64_t K = g.K(), rows = g.N * g.OH * g.OW, O = g.O;
  if (rows == 0 || O == 0) return;
  if (K == 0) {  // no input channels: zeros
    zero(c, ob);
    return launched(c, op);
  }
  const bool f32_out = ob.dtype == F32;
  const uint16_t* x = xb.data<uint16_t>();
  const uint16_t* w = wb.data<uint16_t>();
  if (!f32_out) {  // cuDNN: bfloat16 in and out, float32 sums (its bfloat16 configuration)
    const CudnnConv k = cudnn_geom(g, true);
    if (use_cudnn(c, g, k)) {
      Buffer wt(wb.numel, BF16, c.index);
      transpose(c, w, wt.data<uint16_t>(), K, O);
      if (cudnn_conv_forward(c, k, x, wt.ptr, ob.ptr)) return launched(c, op);
    }
  }
  require_bf16_gemm(c, op, g);
  // the output rows [r0, r0 + m) from their bfloat16 im2col rows a (m x K): float32 sums, written to
  // a float32 output, or into acc (m x O) and rounded once into the bfloat16 one
  auto product = [&](const uint16_t* a, int64_t r0, int64_t m, float* acc) {
    if (f32_out) return gemm_bf16(c, op, false, false, m, O, K, a, K, w, O, 0.f, ob.data<float>() + r0 * O, O);
    gemm_bf16(c, op, false, false, m, O, K, a, K, w, O, 0.f, acc, O);
    round_into(c, acc, ob.data<uint16_t>() + r0 * O, m * O);
  };
  if (g.direct()) {
    const int64_t step = rows_per_chunk(rows, f32_out ? 0 : O * int64_t(sizeof(float)));
    Buffer acc(f32_out ? 0 : step * O, F32, c.index);
    for (int64_t r0 = 0; r0 < rows; r0 += step)
      product(x + r0 * K, r0, std::min(step, rows - r0), acc.data<float>());
    return launched(c, op);
  }
  // per chunk: its bfloat16 im2col rows, and (a bfloat16 output) their float32 products
  const int64_t row_bytes = K * int64_t(sizeof(uint16_t)) + (f32_out ? 0 : O * int64_t(sizeof(float)));
  const int64_t units = g.N * g.OH, per = aligned8(units_per_chunk(g, row_bytes), units);
  Buffer col(per * g.OW * K, BF16, c.index);
  Buffer acc(f32_out ? 0 : per * g.OW * O, F32, c.index);
  for (int64_t u0 = 0; u0 < units; u0 += per) {
    const int64_t u1 = std::min(units, u0 + per);
    im2col(c, g, x, col.data<uint16_t>(), u0, u1);
    product(col.data<uint16_t>(), u0 * g.OW, (u1 - u0) * g.OW, acc.data<float>());
  }
  launched(c, op);
}

// x, w and the output gradient bfloat16; dx and dw (either may be absent) bfloat16 or float32.
void conv2d_backward_bf16(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws, const Buffer& gb,
                          const Shape& gs, Buffer* dxb, Buffer* dwb, const Shape& strides, const Shape& dilation,
                          const Shape& pads) {
  const char* op = "conv2d_backward";
  check_conv_buffers(op, BF16, xb, xs, wb, ws, gb, gs, "output gradient", true, dxb, dwb);
  const ConvGeom g = conv_geom(op, xs, ws, gs, strides, dilation, pads);
  if (!dxb && !dwb) return;
  Context& c = op_device(op, {&xb, &wb, &gb, dxb, dwb});
  const int64_t K = g.K(), rows = g.N * g.OH * g.OW, O = g.O, wn = K * O;
  if (K == 0) return;  // no input channels: both gradients are empty
  if (rows == 0 || O == 0) {  // nothing flows back
    if (dxb) zero(c, *dxb);
    if (dwb) zero(c, *dwb);
    return launched(c, op);
  }
  // x is read only for dw: transposed convolutions pass their output as x and as dx (dx alone)
  const uint16_t* x = xb.data<uint16_t>();
  const uint16_t* w = wb.data<uint16_t>();
  const uint16_t* dout = gb.data<uint16_t>();
  const CudnnConv k = cudnn_geom(g, true);
  if (((dxb && dxb->dtype == BF16) || (dwb && dwb->dtype == BF16)) && use_cudnn(c, g, k)) {
    // cuDNN takes the bfloat16 gradients (float32 sums, one rounding); float32 ones stay below
    if (dxb && dxb->dtype == BF16) {
      Buffer wt(wb.numel, BF16, c.index);
      transpose(c, w, wt.data<uint16_t>(), K, O);
      if (cudnn_conv_backward_data(c, k, dout, wt.ptr, dxb->ptr)) dxb = nullptr;
    }
    if (dwb && dwb->dtype == BF16) {
      Buffer dwt(wn, BF16, c.index);
      if (cudnn_conv_backward_filter(c, k, x, dout, dwt.ptr)) {
        transpose(c, dwt.data<uint16_t>(), dwb->data<uint16_t>(), O, K);
        dwb = nullptr;
      }
    }
    if (!dxb && !dwb) return launched(c, op);
  }
  require_bf16_gemm(c, op, g);
  const bool dx16 = dxb && dxb->dtype == BF16, dw16 = dwb && dwb->dtype == BF16;
  // dw's float32 sums: in dw itself when float32, else in scratch rounded once at the end
  Buffer dws(dw16 ? wn : 0, F32, c.index);
  float* dw = dwb ? (dw16 ? dws.data<float>() : dwb->data<float>()) : nullptr;
  if (g.direct()) {
    // a bfloat16 dx: each chunk's float32 rows in scratch, rounded into their rows of dx
    const int64_t step = rows_per_chunk(rows, dx16 ? K * int64_t(sizeof(float)) : 0);
    Buffer dxs(dx16 ? step * K : 0, F32, c.index);
    for (int64_t r0 = 0; r0 < rows; r0 += step) {
      const int64_t m = std::min(step, rows - r0);
      if (dw) gemm_bf16(c, op, true, false, K, O, m, x + r0 * K, K, dout + r0 * O, O, r0 ? 1.f : 0.f, dw, O);
      if (dxb) {
        float* dst = dx16 ? dxs.data<float>() : dxb->data<float>() + r0 * K;
        gemm_bf16(c, op, false, true, m, K, O, dout + r0 * O, O, w, O, 0.f, dst, K);
        if (dx16) round_into(c, dst, dxb->data<uint16_t>() + r0 * K, m * K);
      }
    }
    if (dw16) round_into(c, dw, dwb->data<uint16_t>(), wn);
    return launched(c, op);
  }
  // dx's float32 sums: in dx itself when float32, else in scratch rounded once at the end
  Buffer dxs(dx16 ? xb.numel : 0, F32, c.index);
  float* dx = dxb ? (dx16 ? dxs.data<float>() : dxb->data<float>()) : nullptr;
  // one scratch per chunk: the bfloat16 im2col rows (dw), then the float32 column gradient (dx)
  const int64_t units = g.N * g.OH, per = aligned8(units_per_chunk(g, K * int64_t(sizeof(float))), units);
  Buffer col(per * g.OW * K, F32, c.index);
  float* cp = col.data<float>();
  uint16_t* c16 = col.data<uint16_t>();
  if (dx) zero_f32(c, dx, xb.numel);  // col2im adds each chunk's share
  for (int64_t u0 = 0; u0 < units; u0 += per) {
    const int64_t u1 = std::min(units, u0 + per), m = (u1 - u0) * g.OW;
    const uint16_t* dchunk = dout + u0 * g.OW * O;
    if (dw) {
      im2col(c, g, x, c16, u0, u1);
      gemm_bf16(c, op, true, false, K, O, m, c16, K, dchunk, O, u0 ? 1.f : 0.f, dw, O);
    }
    if (dx) {  // stream order: the dw product has read the bfloat16 columns before these overwrite them
      gemm_bf16(c, op, false, true, m, K, O, dchunk, O, w, O, 0.f, cp, K);
      col2im(c, g, cp, dx, u0, u1);
    }
  }
  if (dx16) round_into(c, dx, dxb->data<uint16_t>(), xb.numel);
  if (dw16) round_into(c, dw, dwb->data<uint16_t>(), wn);
  launched(c, op);
}

}  // namespace

// ---- conv2d -------------------------------------------------------------------------------------

// A bfloat16 input takes conv2d_forward_bf16 (its kernel and output then checked as there); else
// every buffer is float32 (a TypeError otherwise, as on the CPU).
void conv2d_forward(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws, Buffer& ob, const Shape& os,
                    const Shape& strides, const Shape& dilation, const Shape& pads) {
  if (xb.dtype == BF16) return conv2d_forward_bf16(xb, xs, wb, ws, ob, os, strides, dilation, pads);
  const char* op = "conv2d";
  check_conv_buffers(op, F32, xb, xs, wb, ws, ob, os, "output");
  const ConvGeom g = conv_geom(op, xs, ws, os, strides, dilation, pads);
  Context& c = op_device(op, {&xb, &wb, &ob});
  const float* x = xb.data<float>();
  const float* w = wb.data<float>();
  float* out = ob.data<float>();
  const int64_t K = g.K(), rows = g.N * g.OH * g.OW, O = g.O;
  if (rows == 0 || O == 0) return;
  if (K == 0) {
    zero(c, ob);
    return launched(c, op);
  }
  if (g.direct()) {
    for (int64_t r0 = 0; r0 < rows; r0 += kMaxRows) {
      const int64_t m = std::min(kMaxRows, rows - r0);
      gemm_f32(c, false, false, m, O, K, 1.f, x + r0 * K, K, w, O, 0.f, out + r0 * O, O);
    }
    return launched(c, op);
  }
  const CudnnConv k = cudnn_geom(g, false);
  if (use_cudnn(c, g, k)) {  // cuDNN takes the kernel as (O, KH, KW, C)
    Buffer wt(wb.numel, F32, c.index);
    transpose(c, w, wt.data<float>(), K, O);
    if (cudnn_conv_forward(c, k, x, wt.ptr, out)) return launched(c, op);
  }
  const int64_t units = g.N * g.OH, per = units_per_chunk(g);
  Buffer col(per * g.OW * K, F32, c.index);
  for (int64_t u0 = 0; u0 < units; u0 += per) {
    const int64_t u1 = std::min(units, u0 + per);
    im2col(c, g, x, col.data<float>(), u0, u1);
    gemm_f32(c, false, false, (u1 - u0) * g.OW, O, K, 1.f, col.data<float>(), K, w, O, 0.f, out + u0 * g.OW * O, O);
  }
  launched(c, op);
}

void conv2d_backward(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws, const Buffer& gb,
                     const Shape& gs, Buffer* dxb, Buffer* dwb, const Shape& strides, const Shape& dilation,
                     const Shape& pads) {
  if (xb.dtype == BF16) return conv2d_backward_bf16(xb, xs, wb, ws, gb, gs, dxb, dwb, strides, dilation, pads);
  const char* op = "conv2d_backward";
  check_conv_buffers(op, F32, xb, xs, wb, ws, gb, gs, "output gradient", true, dxb, dwb);
  const ConvGeom g = conv_geom(op, xs, ws, gs, strides, dilation, pads);
  if (!dxb && !dwb) return;
  Context& c = op_device(op, {&xb, &wb, &gb, dxb, dwb});
  // x is read only for dw: transposed convolutions pass their output as x and as dx (dx alone).
  const float* x = xb.data<float>();
  const float* w = wb.data<float>();
  const float* dout = gb.data<float>();
  float* dx = dxb ? dxb->data<float>() : nullptr;
  float* dw = dwb ? dwb->data<float>() : nullptr;
  const int64_t K = g.K(), rows = g.N * g.OH * g.OW, O = g.O;
  if (K == 0) return;  // no input channels: both gradients are empty
  if (rows == 0 || O == 0) {  // nothing flows back
    if (dxb) zero(c, *dxb);
    if (dwb) zero(c, *dwb);
    return launched(c, op);
  }
  if (g.direct()) {
    for (int64_t r0 = 0; r0 < rows; r0 += kMaxRows) {
      const int64_t m = std::min(kMaxRows, rows - r0);
      if (dw) gemm_f32(c, true, false, K, O, m, 1.f, x + r0 * K, K, dout + r0 * O, O, r0 ? 1.f : 0.f, dw, O);
      if (dx) gemm_f32(c, false, true, m, K, O, 1.f, dout + r0 * O, O, w, O, 0.f, dx + r0 * K, K);
    }
    return launched(c, op);
  }
  const CudnnConv k = cudnn_geom(g, false);
  if (use_cudnn(c, g, k)) {  // kernels in cuDNN's (O, KH, KW, C) layout, transposed on the way
    if (dx) {
      Buffer wt(wb.numel, F32, c.index);
      transpose(c, w, wt.data<float>(), K, O);
      if (cudnn_conv_backward_data(c, k, dout, wt.ptr, dx)) dx = nullptr;
    }
    if (dw) {
      Buffer dwt(dwb->numel, F32, c.index);
      if (cudnn_conv_backward_filter(c, k, x, dout, dwt.ptr)) {
        transpose(c, dwt.data<float>(), dw, O, K);
        dw = nullptr;
      }
    }
    if (!dx && !dw) return launched(c, op);  // else lamina's kernels run what cuDNN did not
  }
  const int64_t units = g.N * g.OH, per = units_per_chunk(g);
  Buffer col(per * g.OW * K, F32, c.index);
  float* cp = col.data<float>();
  if (dx) zero_f32(c, dx, dxb->numel);  // col2im adds each chunk's share
  for (int64_t u0 = 0; u0 < units; u0 += per) {
    const int64_t u1 = std::min(units, u0 + per), m = (u1 - u0) * g.OW;
    const float* dchunk = dout + u0 * g.OW * O;
    if (dw) {
      im2col(c, g, x, cp, u0, u1);
      gemm_f32(c, true, false, K, O, m, 1.f, cp, K, dchunk, O, u0 ? 1.f : 0.f, dw, O);
    }
    if (dx) {
      gemm_f32(c, false, true, m, K, O, 1.f, dchunk, O, w, O, 0.f, cp, K);
      col2im(c, g, cp, dx, u0, u1);
    }
  }
  launched(c, op);
}

// ---- depthwise_conv2d ---------------------------------------------------------------------------

void depthwise_conv2d_forward(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws, Buffer& ob,
                              const Shape& os, const Shape& strides, const Shape& dilation, const Shape& pads) {
  const char* op = "depthwise_conv2d";
  const bool bf16 = check_dw_buffers(op, xb, xs, wb, ws, ob, os, "output");
  const DwGeom g = dw_geom(op, xs, ws, os, strides, dilation, pads);
  Context& c = op_device(op, {&xb, &wb, &ob});
  const int64_t total = ob.numel;
  if (total == 0) return;
  const DG k = dg_of(g);
  auto run = [&](auto acc) {
    using A = decltype(acc);
    if (fits32({total, xb.numel, wb.numel, dw_span(g)}))
      dw_forward_kernel<int, A><<<grid_for(total), 256, 0, c.stream>>>(acc_of<A>(xb), acc_of<A>(wb), acc_of<A>(ob), k,
                                                                       total);
    else
      dw_forward_kernel<int64_t, A><<<grid_for(total), 256, 0, c.stream>>>(acc_of<A>(xb), acc_of<A>(wb),
                                                                           acc_of<A>(ob), k, total);
  };
  if (bf16) run(AnyAcc{});
  else run(F32Acc{});
  launched(c, op);
}

namespace {
template <class A>
void depthwise_backward_as(Context& c, const char* op, const DwGeom& g, const Buffer& xb, const Buffer& wb,
                           const Buffer& gb, Buffer* dxb, Buffer* dwb, const Shape& ws) {
  const DG k = dg_of(g);
  if (dxb && dxb->numel > 0) {  // every element is written (0 where no output reads it)
    const int64_t total = dxb->numel;
    if (fits32({total, gb.numel, wb.numel, dw_span(g)}))
      dw_input_grad_kernel<int, A><<<grid_for(total), 256, 0, c.stream>>>(acc_of<A>(gb), acc_of<A>(wb),
                                                                          acc_of<A>(*dxb), k, total);
    else
      dw_input_grad_kernel<int64_t, A><<<grid_for(total), 256, 0, c.stream>>>(acc_of<A>(gb), acc_of<A>(wb),
                                                                              acc_of<A>(*dxb), k, total);
  }
  if (dwb && dwb->numel > 0) {
    const int64_t CO = g.CO(), taps = g.KH * g.KW, P = g.N * g.OH * g.OW, wn = dwb->numel;
    const int64_t ctiles = (CO + 31) / 32, blocks = taps * ctiles;
    LAMINA_CHECK(blocks <= INT_MAX, op << ": a kernel of shape " << shape_str(ws) << " is too large");
    // about 2048 blocks in all (a few per SM), each slice at least 32 x 8 pixels deep
    int64_t S = std::max<int64_t>(1, 2048 / blocks);
    S = std::min<int64_t>(S, std::max<int64_t>(1, P / (kDwLanes * 32)));
    S = std::min<int64_t>(S, 65535);
    Buffer part(S * wn, F32, c.index);
    if (P > 0)
      dw_kernel_grad_kernel<A><<<dim3(unsigned(blocks), unsigned(S)), dim3(32, kDwLanes), 0, c.stream>>>(
          acc_of<A>(xb), acc_of<A>(gb), part.data<float>(), k, ctiles);
    else
      zero(c, part);
    sum_slices_kernel<A><<<grid_for(wn), 256, 0, c.stream>>>(part.data<float>(), acc_of<A>(*dwb), wn, S);
  }
}
}  // namespace

void depthwise_conv2d_backward(const Buffer& xb, const Shape& xs, const Buffer& wb, const Shape& ws,
                               const Buffer& gb, const Shape& gs, Buffer* dxb, Buffer* dwb, const Shape& strides,
                               const Shape& dilation, const Shape& pads) {
  const char* op = "depthwise_conv2d_backward";
  const bool bf16 = check_dw_buffers(op, xb, xs, wb, ws, gb, gs, "output gradient", dxb, dwb);
  const DwGeom g = dw_geom(op, xs, ws, gs, strides, dilation, pads);
  Context& c = op_device(op, {&xb, &wb, &gb, dxb, dwb});
  if (bf16) depthwise_backward_as<AnyAcc>(c, op, g, xb, wb, gb, dxb, dwb, ws);
  else depthwise_backward_as<F32Acc>(c, op, g, xb, wb, gb, dxb, dwb, ws);
  launched(c, op);
}



// ---- pooling ------------------------------------------------------------------------------------

// Images (input and output): float32, or bfloat16 both (as the CPU's pool2d_forward_bf16).
void pool2d_forward(int mode, const Buffer& xb, const Shape& xs, Buffer& ob, const Shape& os, const Shape& window,
                    const Shape& strides, const Shape& pads, Buffer* idxb) {
  const char* op = mode == POOL_MAX ? "max_pool" : "average_pool";
  LAMINA_CHECK(mode == POOL_MAX || mode == POOL_AVG, "pool2d: unknown mode " << mode);
  const DType dt = float_dtype(xb);
  check_buffer(op, "input", xb, xs, dt);
  check_buffer(op, "output", ob, os, dt);
  if (idxb) check_buffer(op, "indices", *idxb, os, I32);
  const PoolGeom g = pool_geom(op, xs, os, window, strides, pads);
  Context& c = op_device(op, {&xb, &ob, idxb});
  const int64_t total = ob.numel;
  if (total == 0) return;
  int32_t* idx = idxb ? idxb->data<int32_t>() : nullptr;
  const bool small = fits32({total, xb.numel, pool_span(g)});
  const unsigned grid = grid_for(total);
  with_float_type(dt, [&](auto ts) {
    using S = decltype(ts);
    const S* x = xb.data<S>();
    S* y = ob.data<S>();
    if (mode == POOL_MAX) {
      if (small) pool_forward_kernel<int, true, S><<<grid, 256, 0, c.stream>>>(x, y, idx, g, total);
      else pool_forward_kernel<int64_t, true, S><<<grid, 256, 0, c.stream>>>(x, y, idx, g, total);
    } else {
      if (small) pool_forward_kernel<int, false, S><<<grid, 256, 0, c.stream>>>(x, y, nullptr, g, total);
      else pool_forward_kernel<int64_t, false, S><<<grid, 256, 0, c.stream>>>(x, y, nullptr, g, total);
    }
  });
  launched(c, op);
}

void pool2d_backward(int mode, const Shape& xs, const Buffer& gb, const Shape& gs, Buffer& dxb, const Shape& window,
                     const Shape& strides, const Shape& pads, const Buffer* idxb) {
  const char* op = mode == POOL_MAX ? "max_pool_backward" : "average_pool_backward";
  LAMINA_CHECK(mode == POOL_MAX || mode == POOL_AVG, "pool2d: unknown mode " << mode);
  const DType dt = float_dtype(gb);  // the gradients: float32, or bfloat16 both (as the CPU's)
  check_buffer(op, "output gradient", gb, gs, dt);
  check_buffer(op, "input gradient", dxb, xs, dt);
  LAMINA_CHECK(mode != POOL_MAX || idxb, op << ": needs the argmax indices written by the forward pass");
  if (idxb) check_buffer(op, "indices", *idxb, gs, I32);
  const PoolGeom g = pool_geom(op, xs, gs, window, strides, pads);
  Context& c = op_device(op, {&gb, &dxb, idxb});
  const int64_t total = dxb.numel;
  if (total == 0) return;
  const bool small = fits32({total, gb.numel, pool_span(g)});
  const unsigned grid = grid_for(total);
  with_float_type(dt, [&](auto ts) {
    using S = decltype(ts);
    const S* gr = gb.data<S>();
    S* dx = dxb.data<S>();
    if (mode == POOL_MAX) {
      const int32_t* idx = idxb->data<int32_t>();
      if (small) pool_backward_kernel<int, true, S><<<grid, 256, 0, c.stream>>>(gr, idx, dx, g, total);
      else pool_backward_kernel<int64_t, true, S><<<grid, 256, 0, c.stream>>>(gr, idx, dx, g, total);
    } else {
      if (small) pool_backward_kernel<int, false, S><<<grid, 256, 0, c.stream>>>(gr, nullptr, dx, g, total);
      else pool_backward_kernel<int64_t, false, S><<<grid, 256, 0, c.stream>>>(gr, nullptr, dx, g, total);
    }
  });
  launched(c, op);
}

}  // namespace gpu
}  // namespace lamina
