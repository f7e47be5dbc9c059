// int8 inference kernels (Keras 3's "int8" mode): the CPU's quantize.cpp, qgemm.cpp and conv.cpp's
// int8 parts, with the same arithmetic step for step (csrc/cpu/qgemm.h), so the results equal the
// CPU's bit for bit where the CPU's micro-kernel is VNNI's (see "Rounding" below).
//
// Packed weights: csrc/quant_checks.h's layout (the CPU's): panels of 32 columns, groups of 4 k,
// and the column sums beside them. A buffer packed on either device reads the same on the other.
//
// Products (qmatmul, qconv2d_forward, qconv2d_fused): a tiled GEMM, 64 x 64 outputs a block of 256
// threads (4 x 4 each), 32 k a step through shared memory. Its A operand is read through a loader:
//   RowsF     float rows (a Dense's input, a 1x1 convolution's image) quantized on the fly with one
//             scale per row (Keras's abs-max formula, found first by row_scale_kernel);
//   WindowsF  the windows of a convolution (its im2col rows, never stored), quantized with one scale
//             per window (qconv2d_forward) or per image (qconv2d_fused, image_absmax_kernel);
//   Bytes     a fused group's unsigned bytes, used as they are.
// As the CPU, quantized values enter as unsigned bytes q + 128 and the sums are corrected by
// 128 * colsum (uint32 sums, wrapping as vpdpbusd's do; the corrected sums are exact int32).
// The float epilogue is qgemm.h's: out = sum / (w_scale * a_scale) + bias (then max(., 0) for
// relu), or, folded, fma(sum, F * (1 / a_scale), G) clamped to [lo, hi] and stored as float or
// as bytes (NaN marks the image's flag), F and G folding the scales, bias and BatchNormalization
// (fold_kernel: bn_affine in double, then the float steps of fused_epilogue).
// Depthwise convolutions: the input quantized per image and channel (channel_absmax_kernel, then
// dw_quantize_kernel) or a fused group's bytes, one thread per output value summing its taps in
// int32, the CPU's epilogue.
//
// Rounding: round half to even (rintf), the CPU's nearbyint. Each multiply, divide and add is
// spelled out (__fmul_rn, __fdiv_rn, __fadd_rn, fmaf) so that nvcc contracts nothing the CPU
// does not: the folded epilogue is one fused multiply-add, as the CPU's VNNI and AVX-512 code
// (its portable "generic" micro-kernel rounds the product and the sum apart: results within one
// float32 rounding of these). A product x * scale that is NaN (an infinite input with the scale 0
// of an infinite row) quantizes to -127 as VNNI's max/min clamp makes it (the CPU's generic code
// gives 0); the depthwise quantization gives 0, as the CPU's for every kernel.
#include <algorithm>
#include <cmath>

#include "../quant_checks.h"
#include "quant.h"

namespace lamina {
namespace gpu {
namespace {

constexpr unsigned kFull = 0xffffffffu;

// ---- quantization (Keras's abs-max formula) --------------------------------------------------------

// The scale of values whose largest magnitude is mx (NaN where a value was NaN).
__device__ __forceinline__ float abs_max_scale(float mx, bool nan) {
  return nan ? NAN : __fdiv_rn(127.f, __fadd_rn(mx, 1e-7f));
}

// One value of a product's rows as the unsigned byte q + 128: q = clip(round(x * s), -127, 127),
// NaN -> -127 (VNNI's max-then-min clamp).
__device__ __forceinline__ int quant_u8(float x, float s) {
  float v = rintf(__fmul_rn(x, s));
  v = fminf(fmaxf(v, -127.f), 127.f);
  return int(v) + 128;
}

// One value of a depthwise input (quantize.cpp's quantize_pixels): NaN -> 0.
__device__ __forceinline__ int8_t quant_dw(float x, float s) {
  float v = rintf(__fmul_rn(x, s));
  v = v > 127.f ? 127.f : v;
  v = v < -127.f ? -127.f : v;
  return int8_t(v == v ? int(v) : 0);
}

__device__ __forceinline__ void warp_max_nan(float& mx, int& nan) {
  for (int o = 16; o > 0; o >>= 1) {
    mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, o));
    nan |= __shfl_xor_sync(kFull, nan, o);
  }
}

// A convolution's geometry on the device: input (N, H, W, C), window KH x KW, output OH x OW.
struct Geo {
  int64_t H, W, C, KH, KW, OH, OW, sh, sw, dh, dw, pt, pl;
};

Geo geo_of(const ConvGeom& g) {
  return Geo{g.H, g.W, g.C, g.KH, g.KW, g.OH, g.OW, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl};
}

// x[(n, ih, iw, c)] of window row `row` (n, oh, ow) at k = (kh, kw, c), or -1 outside the image.
__device__ __forceinline__ int64_t window_index(const Geo& g, int64_t row, int64_t k) {
  const int64_t ow = row % g.OW, t = row / g.OW, oh = t % g.OH, n = t / g.OH;
  const int64_t c = k % g.C, t2 = k / g.C, kw = t2 % g.KW, kh = t2 / g.KW;
  const int64_t ih = oh * g.sh - g.pt + kh * g.dh, iw = ow * g.sw - g.pl + kw * g.dw;
  if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) return -1;
  return ((n * g.H + ih) * g.W + iw) * g.C + c;
}

// The values a row scale is taken over: float rows, or a convolution's windows (0 outside).
struct RowsAt {
  const float* x;
  int64_t lda;
  __device__ float operator()(int64_t row, int64_t k) const { return x[row * lda + k]; }
};
struct WindowsAt {
  const float* x;
  Geo g;
  __device__ float operator()(int64_t row, int64_t k) const {
    const int64_t i = window_index(g, row, k);
    return i < 0 ? 0.f : x[i];
  }
};

// scale[row] = the abs-max scale of row `row` (len values), one warp a row.
template <class S>
__global__ void row_scale_kernel(S src, int64_t rows, int64_t len, float* scale) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; row < rows; row += warps) {
    float mx = 0.f;
    int nan = 0;
    for (int64_t k = lane; k < len; k += 32) {
      const float v = fabsf(src(row, k));
      nan |= v != v;
      mx = v > mx ? v : mx;
    }
    warp_max_nan(mx, nan);
    if (lane == 0) scale[row] = abs_max_scale(mx, nan != 0);
  }
}

// stats[2n] = the bits of max |x| over image n (per values), stats[2n + 1] = 1 where one is NaN;
// stats zeroed first. Blocks of 256: grid.x splits an image, grid.y walks the images.
__global__ void image_absmax_kernel(const float* x, int64_t images, int64_t per, unsigned* stats) {
  __shared__ float s_mx[8];
  __shared__ int s_nan[8];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t n = blockIdx.y; n < images; n += gridDim.y) {
    const float* xn = x + n * per;
    float mx = 0.f;
    int nan = 0;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < per; i += int64_t(gridDim.x) * blockDim.x) {
      const float v = fabsf(xn[i]);
      nan |= v != v;
      mx = v > mx ? v : mx;
    }
    warp_max_nan(mx, nan);
    if (lane == 0) {
      s_mx[warp] = mx;
      s_nan[warp] = nan;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < 8; ++w) {
        mx = fmaxf(mx, s_mx[w]);
        nan |= s_nan[w];
      }
      atomicMax(stats + 2 * n, __float_as_uint(mx));  // magnitudes >= 0: their bits order as they do
      if (nan) atomicMax(stats + 2 * n + 1, 1u);
    }
    __syncthreads();
  }
}

// stats[2(n * C + c)] / [+1] = image n's channel c's max |x| bits / NaN mark over its P pixels
// (stats zeroed first). Blocks of 256 = 32 channels x 8 pixel lanes; grid (channel blocks, pixel
// parts, images).
__global__ void channel_absmax_kernel(const float* x, int64_t N, int64_t P, int64_t C, unsigned* stats) {
  const int64_t c = int64_t(blockIdx.x) * 32 + (threadIdx.x & 31);
  if (c >= C) return;
  const int64_t lanes = int64_t(gridDim.y) * 8;
  for (int64_t n = blockIdx.z; n < N; n += gridDim.z) {
    float mx = 0.f;
    int nan = 0;
    for (int64_t p = int64_t(blockIdx.y) * 8 + (threadIdx.x >> 5); p < P; p += lanes) {
      const float v = fabsf(x[(n * P + p) * C + c]);
      nan |= v != v;
      mx = v > mx ? v : mx;
    }
    atomicMax(stats + 2 * (n * C + c), __float_as_uint(mx));
    if (nan) atomicMax(stats + 2 * (n * C + c) + 1, 1u);
  }
}

__global__ void stats_scale_kernel(const unsigned* stats, int64_t n, float* scale) {
  GRID_STRIDE(i, n) scale[i] = abs_max_scale(__uint_as_float(stats[2 * i]), stats[2 * i + 1] != 0);
}

// ---- the packed weights --------------------------------------------------------------------------

__global__ void pack_kernel(const int8_t* w, int64_t K, int64_t N, int64_t G, int64_t bytes, int8_t* packed) {
  GRID_STRIDE(b, bytes) {
    const int64_t p = b / (G * 128), r = b - p * G * 128, g = r >> 7, c = (r & 127) >> 2, t = r & 3;
    const int64_t k = 4 * g + t, j = p * quant::kPanel + c;
    packed[b] = k < K && j < N ? w[k * N + j] : int8_t(0);
  }
}

__global__ void colsum_kernel(const int8_t* w, int64_t K, int64_t N, int32_t* colsum) {
  GRID_STRIDE(j, N) {
    int32_t s = 0;
    for (int64_t k = 0; k < K; ++k) s += w[k * N + j];
    colsum[j] = s;
  }
}

// ---- the product ---------------------------------------------------------------------------------
// Loaders of the A operand: q(row, k) the unsigned byte of (row, k) (row < M, k < K), a_scale(row).
// kShifted: the bytes are q + 128 (the sums take the column-sum correction).
struct RowsF {
  const float* x;
  int64_t lda;
  const float* scale;  // per row
  static constexpr bool kShifted = true;
  __device__ int q(int64_t row, int64_t k) const { return quant_u8(x[row * lda + k], scale[row]); }
  __device__ float a_scale(int64_t row) const { return scale[row]; }
};
struct WindowsF {
  const float* x;
  Geo g;
  const float* scale;   // per window (rows_per_scale 1) or per image (OH * OW)
  int64_t rows_per_scale;
  static constexpr bool kShifted = true;
  __device__ int q(int64_t row, int64_t k) const {
    const int64_t i = window_index(g, row, k);
    return i < 0 ? 128 : quant_u8(x[i], scale[row / rows_per_scale]);
  }
  __device__ float a_scale(int64_t row) const { return scale[row / rows_per_scale]; }
};
struct Bytes {
  const uint8_t* x;
  int64_t lda;
  float as;  // 1 / step
  static constexpr bool kShifted = false;
  __device__ int q(int64_t row, int64_t k) const { return x[row * lda + k]; }
  __device__ float a_scale(int64_t) const { return as; }
};

// Epilogues: (row, column, the int32 sum, the row's a_scale) -> the output.
struct PlainEpi {  // qmatmul / qconv2d: r / (w_scale * a_scale) + bias, relu
  const float* ws;
  const float* bias;
  bool relu;
  float* out;
  int64_t ldo;
  __device__ void operator()(int64_t row, int64_t j, int32_t r, float as) const {
    float v = __fdiv_rn(float(r), __fmul_rn(ws[j], as));
    if (bias) v = __fadd_rn(v, bias[j]);
    if (relu) v = v < 0.f ? 0.f : v;  // NaN kept
    out[row * ldo + j] = v;
  }
};

// The clamp to [lo, hi] (NaN kept) and a byte's q = clamp(round(v * out_mul), 0, 255), NaN -> 0.
__device__ __forceinline__ float clamp_keep_nan(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}
__device__ __forceinline__ uint8_t to_byte(float v, float out_mul) {
  const float q = rintf(__fmul_rn(v, out_mul));
  return uint8_t(int(q > 0.f ? (q < 255.f ? q : 255.f) : 0.f));
}

struct Store {  // where a fused group's values go: float, or bytes with the images' NaN flags
  float lo, hi, out_mul;
  float* out_f;
  uint8_t* out_u8;
  int32_t* flags;
  __device__ void operator()(int64_t o, float v, int64_t image) const {
    v = clamp_keep_nan(v, lo, hi);
    if (out_u8) {
      if (v != v && flags) atomicExch(flags + image, 1);
      out_u8[o] = to_byte(v, out_mul);
    } else {
      out_f[o] = v;
    }
  }
};

struct FoldEpi {  // the fused groups: fma(r, F * (1 / a_scale), G), then Store
  const float* F;
  const float* G;
  Store st;
  int64_t ldo, rows_per_flag;
  __device__ void operator()(int64_t row, int64_t j, int32_t r, float as) const {
    const float v = fmaf(float(r), __fmul_rn(F[j], __fdiv_rn(1.f, as)), G[j]);
    st(row * ldo + j, v, row / rows_per_flag);
  }
};

constexpr int TM = 64, TN = 64, TK = 32;

// out (M x N) = the epilogue of the int32 sums of A (M x K, through the loader) and the packed
// weights; colsum: the correction of shifted loaders.
template <class L, class E>
__global__ void __launch_bounds__(256) qgemm_kernel(L ld, const int8_t* __restrict__ packed,
                                                    const int32_t* __restrict__ colsum, int64_t M, int64_t K,
                                                    int64_t N, E ep) {
  __shared__ int As[TK][TM + 1];
  __shared__ int Bs[TK][TN];
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int64_t G = (K + 3) / 4, P = (N + quant::kPanel - 1) / quant::kPanel;
  const int64_t n0 = int64_t(blockIdx.x) * TN;
  const int64_t mtiles = (M + TM - 1) / TM;
  for (int64_t mt = blockIdx.y; mt < mtiles; mt += gridDim.y) {
    const int64_t m0 = mt * TM;
    unsigned acc[4][4];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) acc[i][j] = 0u;
    for (int64_t k0 = 0; k0 < K; k0 += TK) {
      for (int r = 0; r < 8; ++r) {
        const int e = tid + 256 * r;
        // A: row m, k kk (consecutive threads read consecutive k of a row)
        const int m = e >> 5, kk = e & 31;
        const int64_t row = m0 + m, k = k0 + kk;
        As[kk][m] = row < M && k < K ? ld.q(row, k) : 0;
        // B: two panels of 8 groups, 1024 contiguous bytes each
        const int pl = e >> 10, off = e & 1023, gg = off >> 7, w = off & 127;
        const int64_t p = n0 / quant::kPanel + pl, g = k0 / 4 + gg;
        Bs[gg * 4 + (w & 3)][pl * quant::kPanel + (w >> 2)] = p < P && g < G ? int(packed[(p * G + g) * 128 + w]) : 0;
      }
      __syncthreads();
#pragma unroll 4
      for (int kk = 0; kk < TK; ++kk) {
        int a[4], b[4];
        for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
        for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) acc[i][j] += unsigned(a[i] * b[j]);
      }
      __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
      const int64_t row = m0 + ty + 16 * i;
      if (row >= M) continue;
      const float as = ld.a_scale(row);
      for (int j = 0; j < 4; ++j) {
        const int64_t col = n0 + tx + 16 * j;
        if (col >= N) continue;
        const unsigned s = L::kShifted ? acc[i][j] - 128u * unsigned(colsum[col]) : acc[i][j];
        ep(row, col, int32_t(s), as);
      }
    }
  }
}

template <class L, class E>
void run_qgemm(Context& c, const L& ld, const Buffer& packed, const int32_t* colsum, int64_t M, int64_t K, int64_t N,
               const E& ep) {
  const int64_t mt = (M + TM - 1) / TM, nt = (N + TN - 1) / TN;
  const dim3 grid(unsigned(nt), unsigned(mt < 65535 ? mt : 65535));
  qgemm_kernel<L, E><<<grid, 256, 0, c.stream>>>(ld, packed.data<int8_t>(), colsum, M, K, N, ep);
}

// scale[row] of `rows` rows of len values read through src.
template <class S>
void row_scales(Context& c, const S& src, int64_t rows, int64_t len, float* scale) {
  row_scale_kernel<S><<<grid_for(rows * 32), 256, 0, c.stream>>>(src, rows, len, scale);
}

// ---- fused epilogue: F and G ---------------------------------------------------------------------
// F[c] = A / w_scale, G[c] = bias * A + D with A, D the BatchNormalization's (qgemm.cpp's
// bn_affine, in double; 1 and 0 without one): fused_epilogue's steps.
__global__ void fold_kernel(int64_t C, const float* ws, const float* bias, const float* mean, const float* var,
                            const float* gamma, const float* beta, double eps, float* F, float* G) {
  GRID_STRIDE(c, C) {
    float A = 1.f, D = 0.f;
    if (mean) {
      const double a = (gamma ? double(gamma[c]) : 1.0) / sqrt(__dadd_rn(double(var[c]), eps));
      A = float(a);
      D = float(__dsub_rn(beta ? double(beta[c]) : 0.0, __dmul_rn(double(mean[c]), a)));
    }
    G[c] = __fadd_rn(bias ? __fmul_rn(bias[c], A) : 0.f, D);
    F[c] = __fdiv_rn(A, ws[c]);
  }
}

// The checked epilogue of a fused kernel, F and G computed on the device into fg (2 * C floats).
struct Fused {
  Store st;
  const float* F = nullptr;
  const float* G = nullptr;
};

Fused fused_epilogue(Context& c, int64_t C, const Buffer& w_scale, const Buffer* bias,
                     const Buffer* bn_mean, const Buffer* bn_var, const Buffer* bn_gamma, const Buffer* bn_beta,
                     double bn_eps, double lo, double hi, Buffer& out, double out_step, Buffer* flags, Buffer& fg) {
  Fused f;
  float* F = fg.data<float>();
  float* G = F + C;
  auto p = [](const Buffer* b) { return b ? b->data<float>() : nullptr; };
  fold_kernel<<<grid_for(C), 256, 0, c.stream>>>(C, w_scale.data<float>(), p(bias), p(bn_mean), p(bn_var),
                                                p(bn_gamma), p(bn_beta), bn_eps, F, G);
  f.F = F;
  f.G = G;
  f.st.lo = float(lo);
  f.st.hi = float(hi);
  f.st.out_mul = 1.f;
  f.st.out_f = nullptr;
  f.st.out_u8 = nullptr;
  if (out_step > 0) {
    f.st.out_u8 = reinterpret_cast<uint8_t*>(out.data<int8_t>());
    f.st.out_mul = float(1.0 / out_step);
  } else {
    f.st.out_f = out.data<float>();
  }
  f.st.flags = flags ? flags->data<int32_t>() : nullptr;
  return f;
}

// Writes NaN over every value of each image n (per values) whose flag is set.
__global__ void poison_kernel(float* out, int64_t images, int64_t per, const int32_t* flags) {
  GRID_STRIDE(i, images * per) if (flags[i / per]) out[i] = NAN;
}

// ---- depthwise ---------------------------------------------------------------------------------
struct DwGeo {
  int64_t N, H, W, C, KH, KW, DM, OH, OW, sh, sw, dh, dw, pt, pl;
};

__global__ void dw_quantize_kernel(const float* x, int64_t total, int64_t C, int64_t per_image, const float* scale,
                                   int8_t* q) {
  GRID_STRIDE(i, total) q[i] = quant_dw(x[i], scale[(i / per_image) * C + i % C]);
}

// Per (image, channel) scales of x (stats: 2 * N * C scratch) into scale, and qx: x quantized.
void dw_quantize(Context& c, const DwGeo& g, const float* x, Buffer& stats, float* scale, int8_t* qx) {
  const int64_t P = g.H * g.W, NC = g.N * g.C, total = g.N * P * g.C;
  LAMINA_CUDA_CHECK(cudaMemsetAsync(stats.ptr, 0, size_t(2 * NC) * sizeof(unsigned), c.stream));
  const int64_t cb = (g.C + 31) / 32, parts = std::min<int64_t>(std::max<int64_t>((P + 255) / 256, 1), 64);
  const dim3 grid(unsigned(cb), unsigned(parts), unsigned(std::min<int64_t>(g.N, 65535)));
  channel_absmax_kernel<<<grid, 256, 0, c.stream>>>(x, g.N, P, g.C, stats.data<unsigned>());
  stats_scale_kernel<<<grid_for(NC), 256, 0, c.stream>>>(stats.data<unsigned>(), NC, scale);
  dw_quantize_kernel<<<grid_for(total), 256, 0, c.stream>>>(x, total, g.C, P * g.C, scale, qx);
}

// The int32 sum of output value (n, oh, ow, co) over its taps.
template <class T>
__device__ __forceinline__ int32_t dw_sum(const DwGeo& g, const T* x, const int8_t* w, int64_t n, int64_t oh,
                                          int64_t ow, int64_t co) {
  const int64_t c = co / g.DM, CO = g.C * g.DM;
  int32_t acc = 0;
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
    if (ih < 0 || ih >= g.H) continue;
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      const int64_t iw = ow * g.sw - g.pl + kw * g.dw;
      if (iw < 0 || iw >= g.W) continue;
      acc += int32_t(x[((n * g.H + ih) * g.W + iw) * g.C + c]) * int32_t(w[(kh * g.KW + kw) * CO + co]);
    }
  }
  return acc;
}

// qdepthwise2d: y = float(sum) / (w_scale * x_scale[n, c]) + bias
__global__ void dw_plain_kernel(DwGeo g, const int8_t* qx, const int8_t* w, const float* scale, const float* ws,
                                const float* bias, float* out) {
  const int64_t CO = g.C * g.DM;
  GRID_STRIDE(i, g.N * g.OH * g.OW * CO) {
    const int64_t co = i % CO, t = i / CO, ow = t % g.OW, t2 = t / g.OW, oh = t2 % g.OH, n = t2 / g.OH;
    const int32_t acc = dw_sum(g, qx, w, n, oh, ow, co);
    float v = __fdiv_rn(float(acc), __fmul_rn(ws[co], scale[n * g.C + co / g.DM]));
    if (bias) v = __fadd_rn(v, bias[co]);
    out[i] = v;
  }
}

// qdepthwise2d_fused: v = fma(sum, F', G) with F' = F / x_scale[n, c] (float input: scale given)
// or F * step (bytes: scale null), then Store.
template <class T>
__global__ void dw_fused_kernel(DwGeo g, const T* x, const int8_t* w, const float* scale, float step, const float* F,
                                const float* G, Store st) {
  const int64_t CO = g.C * g.DM;
  GRID_STRIDE(i, g.N * g.OH * g.OW * CO) {
    const int64_t co = i % CO, t = i / CO, ow = t % g.OW, t2 = t / g.OW, oh = t2 % g.OH, n = t2 / g.OH;
    const int32_t acc = dw_sum(g, x, w, n, oh, ow, co);
    const float f = scale ? __fdiv_rn(F[co], scale[n * g.C + co / g.DM]) : __fmul_rn(F[co], step);
    st(i, fmaf(float(acc), f, G[co]), n);
  }
}

DwGeo dw_geo(const quant::QdwGeom& q, int64_t N) {
  return DwGeo{N, q.H, q.W, q.C, q.KH, q.KW, q.DM, q.OH, q.OW, q.sh, q.sw, q.dh, q.dw, q.pt, q.pl};
}

// ---- embedding ---------------------------------------------------------------------------------
template <class I>
__global__ void qembedding_kernel(const int8_t* t, const float* s, const I* ids, int64_t n, int64_t D, int64_t V,
                                  float* o) {
  GRID_STRIDE(k, n * D) {
    const int64_t i = k / D, r = int64_t(ids[i]);
    o[k] = r >= 0 && r < V ? __fdiv_rn(float(t[r * D + (k - i * D)]), s[r]) : NAN;  // outside: its deferred check raises
  }
}

}  // namespace

int64_t qgemm_packed_bytes(int64_t K, int64_t N) { return quant::packed_bytes(K, N); }

void qgemm_pack(const Buffer& w, int64_t K, int64_t N, Buffer& packed, Buffer& colsum) {
  const char* op = "qgemm_pack";
  quant::check_pack(w, K, N, packed, colsum);
  Context& c = op_device(op, {&w, &packed, &colsum});
  const int64_t bytes = packed.numel;
  if (bytes > 0)
    pack_kernel<<<grid_for(bytes), 256, 0, c.stream>>>(w.data<int8_t>(), K, N, (K + 3) / 4, bytes,
                                                       packed.data<int8_t>());
  if (N > 0) colsum_kernel<<<grid_for(N), 256, 0, c.stream>>>(w.data<int8_t>(), K, N, colsum.data<int32_t>());
  launched(c, op);
}

void qmatmul(const Buffer& x, int64_t M, int64_t K, int64_t N, const Buffer& packed, const Buffer& colsum,
             const Buffer& w_scale, const Buffer* bias, Buffer& out, bool relu) {
  const char* op = "qmatmul";
  quant::check_qmatmul(x, M, K, N, packed, colsum, w_scale, bias, out);
  Context& c = op_device(op, {&x, &packed, &colsum, &w_scale, bias, &out});
  if (M <= 0 || N <= 0) return;
  quant::check_inner(K);
  Buffer scale(M, F32, x.device);
  row_scales(c, RowsAt{x.data<float>(), K}, M, K, scale.data<float>());
  const PlainEpi ep{w_scale.data<float>(), bias ? bias->data<float>() : nullptr, relu, out.data<float>(), N};
  run_qgemm(c, RowsF{x.data<float>(), K, scale.data<float>()}, packed, colsum.data<int32_t>(), M, K, N, ep);
  launched(c, op);
}

void qconv2d_forward(const Buffer& x, const Shape& xs, const Shape& ws, const Buffer& packed, const Buffer& colsum,
                     const Buffer& w_scale, const Buffer* bias, Buffer& out, const Shape& os, const Shape& strides,
                     const Shape& dilation, const Shape& pads, bool relu) {
  const char* op = "qconv2d";
  const ConvGeom g = quant::check_qconv2d(x, xs, ws, packed, colsum, w_scale, bias, out, os, strides, dilation, pads);
  Context& c = op_device(op, {&x, &packed, &colsum, &w_scale, bias, &out});
  const int64_t K = g.K(), rows = g.N * g.OH * g.OW, O = g.O;
  if (rows == 0 || O == 0) return;
  quant::check_inner(K);
  // each window (im2col row) quantized with its own scale, as the CPU's rows of im2col
  Buffer scale(rows, F32, x.device);
  const PlainEpi ep{w_scale.data<float>(), bias ? bias->data<float>() : nullptr, relu, out.data<float>(), O};
  if (g.direct()) {
    row_scales(c, RowsAt{x.data<float>(), K}, rows, K, scale.data<float>());
    run_qgemm(c, RowsF{x.data<float>(), K, scale.data<float>()}, packed, colsum.data<int32_t>(), rows, K, O, ep);
  } else {
    const Geo geo = geo_of(g);
    row_scales(c, WindowsAt{x.data<float>(), geo}, rows, K, scale.data<float>());
    run_qgemm(c, WindowsF{x.data<float>(), geo, scale.data<float>(), 1}, packed, colsum.data<int32_t>(), rows, K, O,
              ep);
  }
  launched(c, op);
}

void qconv2d_fused(const Buffer& x, const Shape& xs, double x_step, const Shape& ws, const Buffer& packed,
                   const Buffer& colsum, const Buffer& w_scale, const Buffer* bias, const Buffer* bn_mean,
                   const Buffer* bn_var, const Buffer* bn_gamma, const Buffer* bn_beta, double bn_eps, double lo,
                   double hi, Buffer& out, const Shape& os, double out_step, Buffer* flags, const Shape& strides,
                   const Shape& dilation, const Shape& pads, const Shape& pool) {
  const char* op = "qconv2d_fused";
  const bool pooled = quant::check_qpool(op, pool, x_step, out_step);
  const ConvGeom g = quant::check_qconv2d_fused(x, xs, x_step, ws, packed, colsum, os, strides, dilation, pads, pool);
  const int64_t K = g.K(), rows = g.N * g.OH * g.OW, O = g.O;
  if (pooled) {  // the group's output, then its max pooling (window = strides, "valid") into out
    quant::check_fused_epilogue(op, O, w_scale, bias, bn_mean, bn_var, bn_gamma, bn_beta, lo, hi, out,
                                os[0] * os[1] * os[2] * O, out_step, flags, g.N);
    op_device(op, {&x, &packed, &colsum, &w_scale, bias, bn_mean, bn_var, bn_gamma, bn_beta, &out, flags});
    if (out.numel == 0) return;
    const Shape cs{g.N, g.OH, g.OW, O};
    Buffer full(rows * O, F32, x.device);
    qconv2d_fused(x, xs, x_step, ws, packed, colsum, w_scale, bias, bn_mean, bn_var, bn_gamma, bn_beta, bn_eps, lo,
                  hi, full, cs, out_step, flags, strides, dilation, pads, Shape{});
    pool2d_forward(POOL_MAX, full, cs, out, os, pool, pool, Shape{0, 0, 0, 0}, nullptr);
    return;
  }
  quant::check_fused_epilogue(op, O, w_scale, bias, bn_mean, bn_var, bn_gamma, bn_beta, lo, hi, out, rows * O,
                              out_step, flags, g.N);
  Context& c = op_device(op, {&x, &packed, &colsum, &w_scale, bias, bn_mean, bn_var, bn_gamma, bn_beta, &out, flags});
  if (rows == 0 || O == 0) return;
  quant::check_inner(K);
  Buffer fg(2 * O, F32, x.device);
  const Fused f = fused_epilogue(c, O, w_scale, bias, bn_mean, bn_var, bn_gamma, bn_beta, bn_eps, lo, hi, out,
                                 out_step, flags, fg);
  const FoldEpi ep{f.F, f.G, f.st, O, g.OH * g.OW > 1 ? g.OH * g.OW : 1};
  if (x_step > 0) {  // bytes standing for byte * x_step: a_scale = 1 / step, no correction
    const Bytes ld{reinterpret_cast<const uint8_t*>(x.data<int8_t>()), K, 1.f / float(x_step)};
    run_qgemm(c, ld, packed, nullptr, rows, K, O, ep);
    if (f.st.flags && f.st.out_f)
      poison_kernel<<<grid_for(rows * O), 256, 0, c.stream>>>(f.st.out_f, g.N, g.OH * g.OW * O, f.st.flags);
    launched(c, op);
    return;
  }
  Buffer scale(g.direct() ? rows : g.N, F32, x.device);
  if (g.direct()) {  // one scale per row, as qconv2d
    row_scales(c, RowsAt{x.data<float>(), K}, rows, K, scale.data<float>());
    run_qgemm(c, RowsF{x.data<float>(), K, scale.data<float>()}, packed, colsum.data<int32_t>(), rows, K, O, ep);
  } else {  // one scale per image (the CPU quantizes the image once and reads its windows)
    const int64_t per = g.H * g.W * g.C;
    Buffer stats(2 * g.N, I32, x.device);
    LAMINA_CUDA_CHECK(cudaMemsetAsync(stats.ptr, 0, size_t(2 * g.N) * sizeof(unsigned), c.stream));
    const int64_t parts = std::min<int64_t>(std::max<int64_t>((per + 4095) / 4096, 1), 1024);
    const dim3 grid(unsigned(parts), unsigned(std::min<int64_t>(g.N, 65535)));
    image_absmax_kernel<<<grid, 256, 0, c.stream>>>(x.data<float>(), g.N, per, stats.data<unsigned>());
    stats_scale_kernel<<<grid_for(g.N), 256, 0, c.stream>>>(stats.data<unsigned>(), g.N, scale.data<float>());
    run_qgemm(c, WindowsF{x.data<float>(), geo_of(g), scale.data<float>(), g.OH * g.OW}, packed,
              colsum.data<int32_t>(), rows, K, O, ep);
  }
  launched(c, op);
}

void qdepthwise2d(const Buffer& x, const Shape& xs, const Buffer& w, const Shape& ws, const Buffer& w_scale,
                  const Buffer* bias, Buffer& out, const Shape& os, const Shape& strides, const Shape& dilation,
                  const Shape& pads) {
  const char* op = "qdepthwise2d";
  int64_t N = 0;
  const quant::QdwGeom q = quant::check_qdepthwise2d(x, xs, w, ws, w_scale, bias, out, os, strides, dilation, pads, &N);
  Context& c = op_device(op, {&x, &w, &w_scale, bias, &out});
  const DwGeo g = dw_geo(q, N);
  const int64_t total = N * g.OH * g.OW * g.C * g.DM;
  if (total == 0) return;
  Buffer stats(2 * N * g.C, I32, x.device), scale(N * g.C, F32, x.device), qx(x.numel, I8, x.device);
  dw_quantize(c, g, x.data<float>(), stats, scale.data<float>(), qx.data<int8_t>());
  dw_plain_kernel<<<grid_for(total), 256, 0, c.stream>>>(g, qx.data<int8_t>(), w.data<int8_t>(), scale.data<float>(),
                                                          w_scale.data<float>(), bias ? bias->data<float>() : nullptr,
                                                          out.data<float>());
  launched(c, op);
}

void qdepthwise2d_fused(const Buffer& x, const Shape& xs, double x_step, const Buffer& w, const Shape& ws,
                        const Buffer& w_scale, const Buffer* bias, const Buffer* bn_mean, const Buffer* bn_var,
                        const Buffer* bn_gamma, const Buffer* bn_beta, double bn_eps, double lo, double hi,
                        Buffer& out, const Shape& os, double out_step, Buffer* flags, const Shape& strides,
                        const Shape& dilation, const Shape& pads) {
  const char* op = "qdepthwise2d_fused";
  int64_t N = 0;
  const quant::QdwGeom q = quant::check_qdepthwise2d_fused(x, xs, x_step, w, ws, os, strides, dilation, pads, &N);
  const int64_t CO = q.C * q.DM, total = N * q.OH * q.OW * CO;
  quant::check_fused_epilogue(op, CO, w_scale, bias, bn_mean, bn_var, bn_gamma, bn_beta, lo, hi, out, total, out_step,
                              flags, N);
  Context& c = op_device(op, {&x, &w, &w_scale, bias, bn_mean, bn_var, bn_gamma, bn_beta, &out, flags});
  if (total == 0) return;
  const DwGeo g = dw_geo(q, N);
  Buffer fg(2 * CO, F32, x.device);
  const Fused f = fused_epilogue(c, CO, w_scale, bias, bn_mean, bn_var, bn_gamma, bn_beta, bn_eps, lo, hi, out,
                                 out_step, flags, fg);
  if (x_step > 0) {  // bytes: value = byte * x_step
    dw_fused_kernel<uint8_t><<<grid_for(total), 256, 0, c.stream>>>(
        g, reinterpret_cast<const uint8_t*>(x.data<int8_t>()), w.data<int8_t>(), nullptr, float(x_step), f.F, f.G,
        f.st);
    if (f.st.flags && f.st.out_f)
      poison_kernel<<<grid_for(total), 256, 0, c.stream>>>(f.st.out_f, N, q.OH * q.OW * CO, f.st.flags);
  } else {  // per (image, channel) scales, as qdepthwise2d
    Buffer stats(2 * N * g.C, I32, x.device), scale(N * g.C, F32, x.device), qx(x.numel, I8, x.device);
    dw_quantize(c, g, x.data<float>(), stats, scale.data<float>(), qx.data<int8_t>());
    dw_fused_kernel<int8_t><<<grid_for(total), 256, 0, c.stream>>>(g, qx.data<int8_t>(), w.data<int8_t>(),
                                                                    scale.data<float>(), 0.f, f.F, f.G, f.st);
  }
  launched(c, op);
}

void qembedding(const Buffer& table, int64_t V, int64_t D, const Buffer& scale, const Buffer& ids, Buffer& out) {
  const char* op = "qembedding";
  quant::check_qembedding(table, V, D, scale, ids, out);
  Context& c = op_device(op, {&table, &scale, &ids, &out});
  // ids outside [0, V): the CPU's error at the host's next wait (gpu.h's deferred checks)
  defer_range_check(c, ids, 0, V, [V](int64_t position, int64_t id) {
    return quant::qembedding_id_message(id, position, V);
  });
  const int64_t n = ids.numel;
  if (n * D > 0) {
    if (ids.dtype == I32)
      qembedding_kernel<<<grid_for(n * D), 256, 0, c.stream>>>(table.data<int8_t>(), scale.data<float>(),
                                                               ids.data<int32_t>(), n, D, V, out.data<float>());
    else
      qembedding_kernel<<<grid_for(n * D), 256, 0, c.stream>>>(table.data<int8_t>(), scale.data<float>(),
                                                               ids.data<int64_t>(), n, D, V, out.data<float>());
  }
  launched(c, op);
}

}  // namespace gpu
}  // namespace lamina
