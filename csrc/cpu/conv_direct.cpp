// Direct float32 convolution on AVX-512 and AVX2 for layers with many input channels (conv_direct.h),
// and Winograd products for stride-1 3 x 3 and 5 x 5 layers among them (further down). The tiles
// and transforms are written once for a vector of VW floats (conv_direct_kernels.inc) and built
// for both instruction sets; the drivers here call them through a table (Kernels).
//
// im2col + GEMM writes each output pixel's window (K = KH*KW*C floats) into a column matrix,
// and the GEMM then packs it again into register slivers: two extra passes over K floats per
// pixel. Here the register tile reads the image itself: PX output pixels times VW * NV filters in
// vector accumulators (6 x 64, 14 x 32 or 24 x 16 on AVX-512, 3 x 32 or 6 x 16 on AVX2; the widest
// the filters allow), and for each tap (kh, kw) and input channel c it broadcasts the PX pixels'
// inputs, straight from a zero-padded copy of the rows it needs, against one row of the kernel
// (kh, kw, c, :).
//
// Forward: the kernel is repacked into blocks of VW * NV filters; a pass takes a few taps and at
// most 64 channels (24 KB of weights, which stay in L1) over every pixel of a band of rows, the
// tiles running over the band's pixels in order (across its rows), adding into the output.
// Filter gradient: the same tile transposed, PX input channels of one tap times VW * NV filters
// summed over the pixels of a few output rows (whose dout stays in L1), added into the thread's
// own copy of dw. Input gradient (stride 1): the forward kernels on dout with the kernel flipped
// and its in/out swapped (conv.cpp).
//
// Measured on a 2-core Intel Xeon (AMX generation), the MNIST convnet's conv2 (batch 128, 14 x 14 x
// 32 -> 64, 5 x 5): forward 290 -> 320 GFLOP/s with the passes of several taps and the tiles across
// rows; against im2col + GEMM (benchmarks/README.md) forward, input and filter gradients each
// 15-25% faster. On that CPU a loop with one broadcast load per two FMAs ran at 70% of the FMA
// peak and one per four at 90%, hence the 6 x 64 tile for 64 filters.
//
// Work is cut into (image, band of output rows) units handed out dynamically; each unit copies
// its input rows, zero-padded, into the thread's scratch (bounded: a band is at most a few MB).
#include "conv_direct.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "conv_common.h"
#include "simd.h"

#if LAMINA_X86
#include <immintrin.h>
#endif

namespace lamina {
namespace convdirect {
namespace {

// Padded input rows read by output rows [oh0, oh1).
int64_t band_rows(const ConvGeom& g, int64_t oh0, int64_t oh1) { return (oh1 - 1 - oh0) * g.sh + (g.KH - 1) * g.dh + 1; }

// A band's scratch is kept below this; a band holds at least one output row.
constexpr int64_t kBandBytes = int64_t(4) << 20;
// Input channels per pass of the forward tiles over a band (their weights stay in L1).
constexpr int64_t kChunkChannels = 64;
// Weights per pass of the forward tiles: 6,144 floats (24 KB), half of a 48 KB L1.
constexpr int64_t kChunkWeightFloats = 6144;
// Output rows per pass of the filter-gradient tiles (dout's rows stay in L1): about this many pixels.
constexpr int64_t kChunkPixels = 64;
struct Plan {
  int64_t Wp, R, nb, units, band_floats;
  int nt;
};

// Output rows per band: whole images when there are enough of them to share out, else bands small
// enough that every thread gets a few; bounded by the scratch size.
Plan plan(const ConvGeom& g) {
  Plan p;
  p.Wp = padded_cols(g);
  p.nt = omp_in_parallel() ? 1 : std::max(1, num_threads());
  const int64_t row_floats = p.Wp * g.C;
  int64_t R = g.OH;
  if (g.N < 4 * p.nt) R = std::max<int64_t>(1, (g.N * g.OH) / (4 * p.nt) / std::max<int64_t>(g.N, 1));
  R = std::min(R, g.OH);
  while (R > 1 && band_rows(g, 0, R) * row_floats * int64_t(sizeof(float)) > kBandBytes) R = (R + 1) / 2;
  p.R = std::max<int64_t>(R, 1);
  p.nb = (g.OH + p.R - 1) / p.R;
  p.units = g.N * p.nb;
  p.band_floats = band_rows(g, 0, p.R) * row_floats;
  if (p.units < 2 || double(g.N * g.OH * g.OW) * double(g.K()) * double(g.O) < double(kParallelGrain) * 64) p.nt = 1;
  p.nt = int(std::min<int64_t>(p.nt, p.units));
  return p;
}

// dst = padded input rows [r0, r0 + rows) of image xn (padded row r is input row r - pt).
void pad_band(const ConvGeom& g, int64_t Wp, const float* xn, int64_t r0, int64_t rows, float* dst) {
  const int64_t C = g.C, cols = std::min(g.W, Wp - g.pl);
  for (int64_t r = 0; r < rows; ++r) {
    float* d = dst + r * Wp * C;
    const int64_t ih = r0 + r - g.pt;
    if (ih < 0 || ih >= g.H || cols <= 0) {
      std::memset(d, 0, size_t(Wp * C) * sizeof(float));
      continue;
    }
    std::memset(d, 0, size_t(g.pl * C) * sizeof(float));
    std::memcpy(d + g.pl * C, xn + ih * g.W * C, size_t(cols * C) * sizeof(float));
    std::memset(d + (g.pl + cols) * C, 0, size_t((Wp - g.pl - cols) * C) * sizeof(float));
  }
}

// Near-equal tiles of at most `most`: 28 -> 14 + 14, 32 -> 11 + 11 + 10 (not 14 + 14 + 4).
int tile_size(int64_t n, int most) {
  const int64_t tiles = (n + most - 1) / most;
  return int((n + tiles - 1) / tiles);
}


// The kernels one instruction set provides (conv_direct_kernels.inc, included below once per set).
using FwdFn = void (*)(const float*, const int64_t*, const int64_t*, int64_t, int64_t, const float*, int64_t, int64_t,
                       float*, int64_t, bool);
using GradFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, int64_t, float*);
using InputsFn = void (*)(const float*, int64_t, int64_t, int, int64_t, int64_t, int64_t, float*);
using OutFn = void (*)(const float*, int64_t, float*, int64_t, int64_t, int, int);
using DoutFn = void (*)(const float*, int64_t, int64_t, int, int, float*, int64_t);
using WeightsFn = void (*)(const ConvGeom&, const float*, int64_t, float*);
struct Kernels {
  int vw;                          // floats a vector: channels per transform, filters per tile column
  int (*tile_nv)(int64_t O);       // vectors of filters a forward tile takes (the widest the filters allow)
  int (*grad_nv)(int64_t O);       // ... and a filter-gradient tile
  int (*tile_px)(int nv);          // its most pixels (or input channels for the filter gradient)
  FwdFn (*fwd_fn)(int nv, int px);
  GradFn (*grad_fn)(int nv, int px);
  InputsFn wino_inputs;
  OutFn wino_out[2], wino_kernel_out[2];  // [0]: F(2 x 2, 5 x 5), [1]: F(4 x 4, 3 x 3)
  DoutFn wino_dout[2];
  WeightsFn wino_weights[2];
};

// ---- Winograd F(m x m, r x r) for stride-1 3 x 3 and 5 x 5 layers --------------------------------
//
// Each m x m block of outputs ("tile") comes from a 6 x 6 block of padded input, m + r - 1 = 6:
// Y = A^T [(G g G^T) (.) (B^T d B)] A, with the interpolation points 0, 1, -1, 2, -2 and infinity
// (the same B^T for both sizes). Per tile and pair of channels that is 36 multiplies, against
// m^2 r^2 for the direct product: 2.8x fewer for 5 x 5 (m = 2), 4x for 3 x 3 (m = 4). The 36
// products run as 36 small GEMMs, (tiles x C) times (C x O) for each position of the 6 x 6 block,
// on the forward tiles; the transforms are vector adds over VW channels (or filters) at a time
// (conv_direct_kernels.inc). Work is shared out by (image, band of tile rows); a band's transformed inputs and
// products stay in L2. The input gradient is the forward pass on dout (conv.cpp), and the filter
// gradient sums each block's 36 products over the batch before transforming back (below).
// Rounding: about 1e-5 of the largest value against 1e-6 for the direct sums (float64 reference,
// the MNIST convnet's conv2), as in cuDNN's and oneDNN's Winograd convolutions. Non-finite values
// spread through a whole tile, as there: an inf or NaN in a 6 x 6 input block makes NaN of the
// block's m x m outputs, also those whose windows miss it (in exact arithmetic its terms cancel).
// Such inputs give NaN outputs, like any NaN in a window, just over a few more pixels.
// Measured on the 2-core Intel Xeon (benchmarks/README.md), conv2 of the MNIST convnet (batch
// 128): forward 8.7 -> 4.5 ms, input gradient 8.7 -> 5.5 ms, filter gradient 9.2 -> 5.7 ms. On
// a 2-core AMD Zen 3 (AVX2), where this layer went through im2col + GEMM before: forward 35 ->
// 8-12 ms, forward + both gradients 113 -> 25-36 ms.
// B^T, applied by bt6 below:
//   { 4,  0, -5,  0, 1, 0}
//   { 0, -4, -4,  1, 1, 0}
//   { 0,  4, -4, -1, 1, 0}
//   { 0, -2, -1,  2, 1, 0}
//   { 0,  2, -1, -2, 1, 0}
//   { 0,  4,  0, -5, 0, 1}
// A^T for m = 4 (its first two rows with the last column (0, 1) are m = 2's).
constexpr float kAT4[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
constexpr float kAT2[2][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 1}};
// G (6 x r): row j is p_j^k / prod_{l != j} (p_j - p_l) for the finite points, (0, ..., 0, 1) for infinity.
constexpr double kG5[6][5] = {{1. / 4, 0, 0, 0, 0},
                              {-1. / 6, -1. / 6, -1. / 6, -1. / 6, -1. / 6},
                              {-1. / 6, 1. / 6, -1. / 6, 1. / 6, -1. / 6},
                              {1. / 24, 1. / 12, 1. / 6, 1. / 3, 2. / 3},
                              {1. / 24, -1. / 12, 1. / 6, -1. / 3, 2. / 3},
                              {0, 0, 0, 0, 1}};
constexpr double kG3[6][3] = {{1. / 4, 0, 0},           {-1. / 6, -1. / 6, -1. / 6}, {-1. / 6, 1. / 6, -1. / 6},
                              {1. / 24, 1. / 12, 1. / 6}, {1. / 24, -1. / 12, 1. / 6}, {0, 0, 1}};

// The filter gradient sums, over the image, each M x M block of dout against the 6 x 6 input block
// under it: F(R x R, M x M), the kernel's R x R sums from 36 products per block, with the dout
// block transformed by G_M (6 x M, G's first M columns with the last row (0, ..., 0, 1)) and the
// sums brought back by A_R^T (R x 6). G_M = diag(kGs) E_M with E_M's rows (1, p, p^2, ...) of
// small integers, so the blocks go through E_M (exact multiplies, a few adds) and the scales
// kGs[i] kGs[j] are applied once to the 36 sums.
constexpr float kEd2[6][2] = {{1, 0}, {1, 1}, {1, -1}, {1, 2}, {1, -2}, {0, 1}};
constexpr float kEd4[6][4] = {{1, 0, 0, 0}, {1, 1, 1, 1}, {1, -1, 1, -1}, {1, 2, 4, 8}, {1, -2, 4, -8}, {0, 0, 0, 1}};
constexpr double kGs[6] = {1. / 4, -1. / 6, -1. / 6, 1. / 24, 1. / 24, 1};
constexpr float kAT5[5][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 0},
                              {0, 1, 1, 16, 16, 1}};
constexpr float kAT3[3][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 1}};

template <int M>
struct Wino;
template <>
struct Wino<2> {  // 5 x 5 kernels
  static constexpr int R = 5;
  static constexpr const float (&AT)[2][6] = kAT2;
  static constexpr const double (&G)[6][5] = kG5;
  static constexpr const float (&Ed)[6][2] = kEd2;
  static constexpr const float (&ATk)[5][6] = kAT5;
};
template <>
struct Wino<4> {  // 3 x 3 kernels
  static constexpr int R = 3;
  static constexpr const float (&AT)[4][6] = kAT4;
  static constexpr const double (&G)[6][3] = kG3;
  static constexpr const float (&Ed)[6][4] = kEd4;
  static constexpr const float (&ATk)[3][6] = kAT3;
};

// Tiles per band: their transformed inputs (36 x tiles x C floats) and products stay in L2.
constexpr int64_t kWinoTiles = 64;

struct WinoPlan {
  int64_t TH, TW, Hp, Wp, tr, nb, units;
  int nt;
};

WinoPlan wino_plan(const ConvGeom& g) {
  WinoPlan p;
  const int64_t m = g.KH == 5 ? 2 : 4;  // the drivers' M
  p.TH = (g.OH + m - 1) / m, p.TW = (g.OW + m - 1) / m;
  p.Wp = p.TW * m + g.KW - 1;
  p.nt = omp_in_parallel() ? 1 : std::max(1, num_threads());
  int64_t tr = std::max<int64_t>(1, std::min(p.TH, kWinoTiles / p.TW));  // tile rows per band
  if (g.N < 4 * p.nt) tr = std::max<int64_t>(1, std::min(tr, (g.N * p.TH) / (4 * p.nt) / std::max<int64_t>(g.N, 1)));
  p.tr = tr;
  p.nb = (p.TH + tr - 1) / tr;
  p.Hp = tr * m + g.KH - 1;
  p.units = g.N * p.nb;
  p.nt = int(std::min<int64_t>(p.nt, p.units));
  return p;
}

#if LAMINA_X86
// ---- the kernels per instruction set ----------------------------------------------------------------
// Register tiles, pixels (or channels) x NV vectors of filters: each broadcast input feeds NV
// multiply-adds. On the Intel Xeon measured (AMX generation), a loop with one broadcast load per
// two FMAs runs at 70% of the FMA peak, one per four at 90%; so 64 filters take 6 x 64 tiles
// there rather than 14 x 32. AVX2 has 16 ymm registers: 3 x 32 filters (12 accumulators, 4 of
// weights) where the filters allow, else 6 x 16 (as the GEMM's AVX2 kernel); the filter gradient
// 6 x 16 (grad_nv). Measured on a 2-core AMD Zen 3 (benchmarks/README.md), the MNIST convnet's
// conv2 at batch 128 with 3 x 32 against 6 x 16: direct forward 22.3 -> 17.8 ms, forward + both
// gradients 60.8 -> 52.2 ms.
namespace avx512 {
#define LAMINA_DV __attribute__((target("avx512f,avx2,fma")))
using vreg = __m512;
constexpr int VW = 16;
LAMINA_DV LAMINA_INLINE vreg vload(const float* p) { return _mm512_loadu_ps(p); }
LAMINA_DV LAMINA_INLINE void vstore(float* p, vreg v) { _mm512_storeu_ps(p, v); }
LAMINA_DV LAMINA_INLINE vreg vzero() { return _mm512_setzero_ps(); }
LAMINA_DV LAMINA_INLINE vreg vset1(float x) { return _mm512_set1_ps(x); }
LAMINA_DV LAMINA_INLINE vreg vadd(vreg a, vreg b) { return _mm512_add_ps(a, b); }
LAMINA_DV LAMINA_INLINE vreg vsub(vreg a, vreg b) { return _mm512_sub_ps(a, b); }
LAMINA_DV LAMINA_INLINE vreg vmul(vreg a, vreg b) { return _mm512_mul_ps(a, b); }
LAMINA_DV LAMINA_INLINE vreg vfmadd(vreg a, vreg b, vreg c) { return _mm512_fmadd_ps(a, b, c); }
LAMINA_DV LAMINA_INLINE vreg vfnmadd(vreg a, vreg b, vreg c) { return _mm512_fnmadd_ps(a, b, c); }
constexpr int kPx[5] = {0, 24, 14, 0, 6};  // 24, 28 and 24 accumulators of 32 zmm
int tile_nv(int64_t O) { return O % 64 == 0 ? 4 : O % 32 == 0 ? 2 : 1; }
int grad_nv(int64_t O) { return tile_nv(O); }
#include "conv_direct_kernels.inc"
#undef LAMINA_DV
}  // namespace avx512

namespace avx2 {
#define LAMINA_DV __attribute__((target("avx2,fma")))
using vreg = __m256;
constexpr int VW = 8;
LAMINA_DV LAMINA_INLINE vreg vload(const float* p) { return _mm256_loadu_ps(p); }
LAMINA_DV LAMINA_INLINE void vstore(float* p, vreg v) { _mm256_storeu_ps(p, v); }
LAMINA_DV LAMINA_INLINE vreg vzero() { return _mm256_setzero_ps(); }
LAMINA_DV LAMINA_INLINE vreg vset1(float x) { return _mm256_set1_ps(x); }
LAMINA_DV LAMINA_INLINE vreg vadd(vreg a, vreg b) { return _mm256_add_ps(a, b); }
LAMINA_DV LAMINA_INLINE vreg vsub(vreg a, vreg b) { return _mm256_sub_ps(a, b); }
LAMINA_DV LAMINA_INLINE vreg vmul(vreg a, vreg b) { return _mm256_mul_ps(a, b); }
LAMINA_DV LAMINA_INLINE vreg vfmadd(vreg a, vreg b, vreg c) { return _mm256_fmadd_ps(a, b, c); }
LAMINA_DV LAMINA_INLINE vreg vfnmadd(vreg a, vreg b, vreg c) { return _mm256_fnmadd_ps(a, b, c); }
constexpr int kPx[5] = {0, 12, 6, 0, 3};  // 12 accumulators of 16 ymm
int tile_nv(int64_t O) { return O % 32 == 0 ? 4 : 2; }  // O is a multiple of 16
// The filter gradient's tiles broadcast input channels against dout: 6 channels x 16 filters
// (measured on the Zen 3, forward + filter gradient of 3 x 3 layers, against 3 x 32: 256 -> 256
// channels at 14 x 14 53.4 / 57.5 ms, 512 -> 512 at 7 x 7 130.9 / 143.5; MNIST conv2 equal).
int grad_nv(int64_t) { return 2; }
#include "conv_direct_kernels.inc"
#undef LAMINA_DV
}  // namespace avx2

// AVX-512 where the CPU (and set_simd_isa) allows it, else AVX2; usable() asks for one of them.
const Kernels& kernels() { return simd_level() >= 2 ? avx512::kKernels : avx2::kKernels; }

template <int M>
void wino_forward_m(const Kernels& k, const ConvGeom& g, const float* x, const float* w, float* out) {
  constexpr int mi = M == 2 ? 0 : 1;
  const WinoPlan p = wino_plan(g);
  const int64_t C = g.C, O = g.O, Wp = p.Wp;
  const int nv = k.tile_nv(O);
  const int64_t bw = k.vw * nv, nob = O / bw, maxt = p.tr * p.TW;
  Scratch u(36 * C * O);
  k.wino_weights[mi](g, w, bw, u.p);
  std::vector<int64_t> poff(static_cast<size_t>(maxt));
  for (int64_t i = 0; i < maxt; ++i) poff[size_t(i)] = i * C;
  const int64_t zero = 0;
  const int px = k.tile_px(nv);
  const int64_t band_floats = p.Hp * Wp * C, v_floats = 36 * maxt * C, m_floats = 36 * maxt * O;
  Scratch buf((band_floats + v_floats + m_floats) * p.nt);
#pragma omp parallel for schedule(dynamic, 1) num_threads(p.nt) if (p.nt > 1)
  for (int64_t un = 0; un < p.units; ++un) {
    const int64_t n = un / p.nb, ty0 = (un % p.nb) * p.tr, ty1 = std::min(p.TH, ty0 + p.tr);
    float* band = buf.p + (p.nt > 1 ? omp_get_thread_num() : 0) * (band_floats + v_floats + m_floats);
    float* v = band + band_floats;
    float* pr = v + v_floats;
    const int64_t rows = (ty1 - ty0) * M + g.KH - 1, tiles = (ty1 - ty0) * p.TW;
    pad_band(g, Wp, x + n * g.H * g.W * C, ty0 * M, rows, band);
    for (int64_t t = 0; t < tiles; ++t) k.wino_inputs(band, Wp, C, M, p.TW, t, tiles, v);
    for (int64_t pos = 0; pos < 36; ++pos)  // P[pos] (tiles x O) = V[pos] (tiles x C) U[pos] (C x O)
      for (int64_t q = 0; q < tiles; q += px) {
        const FwdFn f = k.fwd_fn(nv, int(std::min<int64_t>(px, tiles - q)));
        for (int64_t ob = 0; ob < nob; ++ob)
          f(v + pos * tiles * C, poff.data() + q, &zero, 1, C, u.p + (pos * nob + ob) * C * bw, 0, bw,
            pr + (pos * tiles + q) * O + ob * bw, O, false);
      }
    for (int64_t t = 0; t < tiles; ++t) {  // the outputs A^T P A
      const int64_t oy = (ty0 + t / p.TW) * M, ox = (t % p.TW) * M;
      const int mh = int(std::min<int64_t>(M, g.OH - oy)), mw = int(std::min<int64_t>(M, g.OW - ox));
      float* o = out + ((n * g.OH + oy) * g.OW + ox) * O;
      for (int64_t c = 0; c < O; c += k.vw)
        k.wino_out[mi](pr + t * O + c, tiles * O, o + c, g.OW * O, O, mh, mw);
    }
  }
}

template <int M>
void wino_filter_grad_m(const Kernels& k, const ConvGeom& g, const float* x, const float* dout, float* dw) {
  constexpr int R = Wino<M>::R, mi = M == 2 ? 0 : 1;
  const WinoPlan p = wino_plan(g);
  const int64_t C = g.C, O = g.O, Wp = p.Wp, maxt = p.tr * p.TW, wn = 36 * C * O;
  const int nv = k.grad_nv(O);
  const int64_t bw = k.vw * nv;
  const int pc = tile_size(C, k.tile_px(nv));
  const int64_t band_floats = p.Hp * Wp * C, v_floats = 36 * maxt * C, d_floats = 36 * maxt * O;
  // each thread sums the 36 products of its blocks, S[pos][c][o], in its own block of `sums`
  Scratch buf((band_floats + v_floats + d_floats) * p.nt), sums(wn * p.nt);
  zero_fill(sums.p, wn * p.nt);
  // static: each thread sums a fixed run of blocks, so the total does not depend on timing (a
  // dynamic split gave run-to-run differences in the last bits)
#pragma omp parallel for schedule(static) num_threads(p.nt) if (p.nt > 1)
  for (int64_t un = 0; un < p.units; ++un) {
    const int tid = p.nt > 1 ? omp_get_thread_num() : 0;
    const int64_t n = un / p.nb, ty0 = (un % p.nb) * p.tr, ty1 = std::min(p.TH, ty0 + p.tr);
    float* band = buf.p + tid * (band_floats + v_floats + d_floats);
    float* v = band + band_floats;
    float* dd = v + v_floats;
    float* mine = sums.p + tid * wn;
    const int64_t rows = (ty1 - ty0) * M + g.KH - 1, tiles = (ty1 - ty0) * p.TW;
    pad_band(g, Wp, x + n * g.H * g.W * C, ty0 * M, rows, band);
    for (int64_t t = 0; t < tiles; ++t) {
      k.wino_inputs(band, Wp, C, M, p.TW, t, tiles, v);
      const int64_t oy = (ty0 + t / p.TW) * M, ox = (t % p.TW) * M;
      const int mh = int(std::min<int64_t>(M, g.OH - oy)), mw = int(std::min<int64_t>(M, g.OW - ox));
      const float* d = dout + ((n * g.OH + oy) * g.OW + ox) * O;
      for (int64_t o = 0; o < O; o += k.vw) k.wino_dout[mi](d + o, g.OW * O, O, mh, mw, dd + t * O + o, tiles * O);
    }
    for (int64_t pos = 0; pos < 36; ++pos)  // S[pos] (C x O) += V[pos]^T (C x tiles) D[pos] (tiles x O)
      for (int64_t c0 = 0; c0 < C; c0 += pc) {
        const GradFn f = k.grad_fn(nv, int(std::min<int64_t>(pc, C - c0)));
        for (int64_t o0 = 0; o0 < O; o0 += bw)
          f(v + pos * tiles * C + c0, 0, C, dd + pos * tiles * O + o0, 0, O, 1, tiles, mine + pos * C * O + c0 * O + o0);
      }
  }
  for (int t = 1; t < p.nt; ++t) {
    const float* q = sums.p + t * wn;
#pragma omp simd
    for (int64_t i = 0; i < wn; ++i) sums.p[i] += q[i];
  }
  for (int64_t pos = 0; pos < 36; ++pos) {  // G_M's row scales
    const float sc = float(kGs[pos / 6] * kGs[pos % 6]);
    float* q = sums.p + pos * C * O;
#pragma omp simd
    for (int64_t i = 0; i < C * O; ++i) q[i] *= sc;
  }
  for (int64_t c = 0; c < C; ++c)  // dw[kh][kw][c][o] = (A^T S A)[kh][kw]
    for (int64_t o = 0; o < O; o += k.vw)
      k.wino_kernel_out[mi](sums.p + c * O + o, C * O, dw + c * O + o, R * C * O, C * O, R, R);
}
#endif

}  // namespace

bool g_winograd = true;

bool winograd_usable(const ConvGeom& g) {
  if (!(g_winograd && usable(g) && g.KH == g.KW && (g.KH == 5 || g.KH == 3) && g.sh == 1 && g.sw == 1 &&
        g.dh == 1 && g.dw == 1 && g.C % 16 == 0 && g.pt < g.KH && g.pl < g.KW))
    return false;
  // Each unit of work reads the whole transformed kernel (36 C O floats, 36 / 9 times a 3 x 3
  // kernel's size) and the filter gradient adds into a block of that size: with few tiles an
  // image (7 x 7 images of a 3 x 3 layer) or a large C O the direct kernels win. Measured on the
  // Intel Xeon (benchmarks/README.md): 256 x 256 channels still gain (16 tiles: forward 13.3 ->
  // 10.2 ms, filter gradient 14.3 -> 9.8), 512 x 512 lose (filter gradient 20.0 -> 26.4 ms).
  const int64_t m = g.KH == 5 ? 2 : 4;
  return ((g.OH + m - 1) / m) * ((g.OW + m - 1) / m) >= 16 && g.C * g.O <= 256 * 256;
}

bool usable(const ConvGeom& g) {
#if LAMINA_X86
  if (simd_level() < 1 || g.direct() || g.O % 16 != 0 || g.C < 16) return false;
  if (g.N <= 0 || g.OH <= 0 || g.OW <= 0) return false;
  return band_rows(g, 0, 1) * padded_cols(g) * g.C * int64_t(sizeof(float)) <= kBandBytes;
#else
  (void)g;
  return false;
#endif
}

bool usable_for_input_grad(const ConvGeom& g) {
  if (g.sh != 1 || g.sw != 1 || g.pt > (g.KH - 1) * g.dh || g.pl > (g.KW - 1) * g.dw) return false;
  if (g.H <= 0 || g.W <= 0) return false;
  return usable(transposed(g));
}

ConvGeom transposed(const ConvGeom& g) {
  ConvGeom t = g;
  t.H = g.OH, t.W = g.OW, t.C = g.O;
  t.O = g.C, t.OH = g.H, t.OW = g.W;
  t.pt = (g.KH - 1) * g.dh - g.pt;
  t.pl = (g.KW - 1) * g.dw - g.pl;
  return t;
}

void flip_kernel(const ConvGeom& g, const float* w, float* wt) {
  const int64_t C = g.C, O = g.O;
  for (int64_t kh = 0; kh < g.KH; ++kh)
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      const float* src = w + ((g.KH - 1 - kh) * g.KW + (g.KW - 1 - kw)) * C * O;
      float* dst = wt + (kh * g.KW + kw) * O * C;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t o = 0; o < O; ++o) dst[o * C + c] = src[c * O + o];
    }
}

void forward(const ConvGeom& g, const float* x, const float* w, float* out) {
#if LAMINA_X86
  const Kernels& k = kernels();
  if (winograd_usable(g)) return g.KH == 5 ? wino_forward_m<2>(k, g, x, w, out) : wino_forward_m<4>(k, g, x, w, out);
  const Plan p = plan(g);
  const int64_t C = g.C, O = g.O, Wp = p.Wp, K = g.K(), ntaps = g.KH * g.KW;
  const int nv = k.tile_nv(O);
  const int64_t bw = k.vw * nv, cb = std::min(C, kChunkChannels);
  // taps per pass: their weights (tb * cb * bw floats) stay in L1 while the band's tiles go by
  const int64_t tb = std::max<int64_t>(1, std::min(ntaps, kChunkWeightFloats / (cb * bw)));
  // the kernel's columns in blocks of bw filters, each block's rows contiguous
  Scratch wpk(K * O);
  for (int64_t o0 = 0; o0 < O; o0 += bw)
    for (int64_t r = 0; r < K; ++r) std::memcpy(wpk.p + o0 * K + r * bw, w + r * O + o0, size_t(bw) * sizeof(float));
  std::vector<int64_t> toff(static_cast<size_t>(ntaps));
  for (int64_t kh = 0; kh < g.KH; ++kh)
    for (int64_t kw = 0; kw < g.KW; ++kw) toff[size_t(kh * g.KW + kw)] = (kh * g.dh * Wp + kw * g.dw) * C;
  // each band pixel's offset in the padded band: tiles run over the band's pixels in order, across
  // its rows, so that every tile but the last is full
  const int64_t bandpix = p.R * g.OW;
  std::vector<int64_t> poff(static_cast<size_t>(bandpix));
  for (int64_t q = 0; q < bandpix; ++q) poff[size_t(q)] = ((q / g.OW) * g.sh * Wp + (q % g.OW) * g.sw) * C;
  const int px = k.tile_px(nv);
  Scratch buf(p.band_floats * p.nt);
  const int64_t* to = toff.data();
  const int64_t* po = poff.data();
#pragma omp parallel for schedule(dynamic, 1) num_threads(p.nt) if (p.nt > 1)
  for (int64_t u = 0; u < p.units; ++u) {
    const int64_t n = u / p.nb, oh0 = (u % p.nb) * p.R, oh1 = std::min(g.OH, oh0 + p.R);
    float* band = buf.p + (p.nt > 1 ? omp_get_thread_num() : 0) * p.band_floats;
    pad_band(g, Wp, x + n * g.H * g.W * C, oh0 * g.sh, band_rows(g, oh0, oh1), band);
    float* obase = out + (n * g.OH + oh0) * g.OW * O;
    const int64_t pix = (oh1 - oh0) * g.OW;
    for (int64_t t0 = 0; t0 < ntaps; t0 += tb)
      for (int64_t c0 = 0; c0 < C; c0 += cb) {
        const int64_t nt = std::min(tb, ntaps - t0), cn = std::min(cb, C - c0);
        const bool add = t0 + c0 > 0;
        for (int64_t q = 0; q < pix; q += px) {
          const FwdFn f = k.fwd_fn(nv, int(std::min<int64_t>(px, pix - q)));
          for (int64_t o0 = 0; o0 < O; o0 += bw)
            f(band + c0, po + q, to + t0, nt, cn, wpk.p + o0 * K + (t0 * C + c0) * bw, C * bw, bw,
              obase + q * O + o0, O, add);
        }
      }
  }
#else
  (void)g, (void)x, (void)w, (void)out;
#endif
}

void filter_grad(const ConvGeom& g, const float* x, const float* dout, float* dw) {
#if LAMINA_X86
  const Kernels& k = kernels();
  if (winograd_usable(g))
    return g.KH == 5 ? wino_filter_grad_m<2>(k, g, x, dout, dw) : wino_filter_grad_m<4>(k, g, x, dout, dw);
  const Plan p = plan(g);
  const int64_t C = g.C, O = g.O, Wp = p.Wp, wn = g.K() * O;
  const int nv = k.grad_nv(O);
  const int pc = tile_size(C, k.tile_px(nv));
  // thread 0 sums into dw, the others into their own blocks, added at the end
  Scratch buf(p.band_floats * p.nt), partial(p.nt > 1 ? (p.nt - 1) * wn : 0);
  zero_fill(dw, wn);
  if (p.nt > 1) zero_fill(partial.p, (p.nt - 1) * wn);
  // static, as wino_filter_grad_m: the same sums whatever the timing
#pragma omp parallel for schedule(static) num_threads(p.nt) if (p.nt > 1)
  for (int64_t u = 0; u < p.units; ++u) {
    const int tid = p.nt > 1 ? omp_get_thread_num() : 0;
    const int64_t n = u / p.nb, oh0 = (u % p.nb) * p.R, oh1 = std::min(g.OH, oh0 + p.R);
    float* band = buf.p + tid * p.band_floats;
    float* mine = tid == 0 ? dw : partial.p + (tid - 1) * wn;
    pad_band(g, Wp, x + n * g.H * g.W * C, oh0 * g.sh, band_rows(g, oh0, oh1), band);
    // a few output rows at a time (their dout stays in L1) through every tap and channel tile
    const int64_t rows = std::max<int64_t>(1, kChunkPixels / g.OW);
    for (int64_t r0 = oh0; r0 < oh1; r0 += rows) {
      const int64_t rn = std::min(rows, oh1 - r0);
      const float* d = dout + (n * g.OH + r0) * g.OW * O;
      const float* ar = band + (r0 - oh0) * g.sh * Wp * C;
      for (int64_t kh = 0; kh < g.KH; ++kh)
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const float* at = ar + (kh * g.dh * Wp + kw * g.dw) * C;
          float* dt = mine + (kh * g.KW + kw) * C * O;
          for (int64_t c0 = 0; c0 < C; c0 += pc) {
            const GradFn f = k.grad_fn(nv, int(std::min<int64_t>(pc, C - c0)));
            for (int64_t o0 = 0; o0 < O; o0 += k.vw * nv)
              f(at + c0, g.sh * Wp * C, g.sw * C, d + o0, g.OW * O, O, rn, g.OW, dt + c0 * O + o0);
          }
        }
    }
  }
  for (int t = 1; t < p.nt; ++t) {
    const float* q = partial.p + (t - 1) * wn;
#pragma omp simd
    for (int64_t i = 0; i < wn; ++i) dw[i] += q[i];
  }
#else
  (void)g, (void)x, (void)dout, (void)dw;
#endif
}

}  // namespace convdirect
}  // namespace lamina
