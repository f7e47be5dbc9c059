// int8 matrix products for quantized inference: see qgemm.h for the arithmetic and the packed
// weight layout.
//
// Driver: the rows of the input are cut into blocks of MB rows; a block is quantized into
// unsigned bytes (qa + 128) laid out [k group][row][4 bytes] per MR rows, so that one 32-bit
// broadcast feeds four k steps of a row to VNNI's vpdpbusd; the micro-kernel then walks the
// weight panels (QNR = 32 columns, two zmm of 16 int32 accumulators per row) with the block.
// Work items are (row block, range of panels), handed to threads dynamically.
// Convolutions (conv_windows): each image is quantized once into a padded copy; with C % 4 == 0
// the vector tiles read every window in place (tile_vnni_win, tile_avx2, tile_avxvnni), else
// each block's windows are copied (window_block: row after row for the VNNI tiles, into tiles for
// the others). A max pooling after the convolution takes each block's rows from a scratch block in
// cache (pool_block): the unpooled output never reaches memory.
// Kernels: "vnni" (AVX-512 VNNI + BW, 12 x 32 tile) where the CPU has it, else "avxvnni" (256-bit
// AVX-VNNI, 6 x 16 tiles), else "avx2" (vpmaddwd on 16-bit operands), else "generic" (portable C++);
// the same integer sums and the same float epilogue. LAMINA_QGEMM_KERNEL or set_qgemm_kernel
// switch them (tests run each one the CPU has).
#include "qgemm.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "common.h"
#include "quant_avx2.h"
#include "quant_checks.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <immintrin.h>
#define LAMINA_QX86 1
#define LAMINA_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))
#else
#define LAMINA_QX86 0
#endif

namespace lamina {
namespace qgemm {
namespace {

constexpr int MR = 12;       // rows per micro-tile
constexpr int64_t MB = 192;  // rows per work item (16 micro-tiles: a weight panel is read from L3 once per 16 tiles)

inline int64_t groups(int64_t K) { return (K + 3) / 4; }
inline int64_t panels(int64_t N) { return (N + QNR - 1) / QNR; }

// Keras's AbsMaxQuantizer(axis=-1) on one row: returns the scale and writes q + 128 as bytes.
float quantize_row_generic(const float* row, int64_t K, uint8_t* q) {
  float mx = 0.f;
  bool nan = false;
  for (int64_t k = 0; k < K; ++k) {
    const float v = std::fabs(row[k]);
    nan |= v != v;
    mx = v > mx ? v : mx;
  }
  const float scale = nan ? std::nanf("") : 127.f / (mx + 1e-7f);
  for (int64_t k = 0; k < K; ++k) {
    float v = std::nearbyint(row[k] * scale);  // round half to even, as jnp.round
    v = v > 127.f ? 127.f : v;
    v = v < -127.f ? -127.f : v;
    q[k] = uint8_t((v == v ? int(v) : 0) + 128);  // NaN rows: their NaN scale makes the outputs NaN
  }
  return scale;
}

#if LAMINA_QX86
// Keras's AbsMaxQuantizer(axis=-1) on one row, 16 floats at a time (roundscale to nearest even =
// nearbyint under the default mode), written straight into a tile: group g of the row at
// d[g * stride] (4 bytes each); a partial last group is padded with 128 (a zero after the shift).
LAMINA_VNNI float quantize_row_avx512_tile(const float* row, int64_t K, uint8_t* d, int64_t stride) {
  __m512 mx = _mm512_setzero_ps();
  __mmask16 nan = 0;
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 m = K - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - k)) - 1);
    const __m512 v = _mm512_abs_ps(_mm512_maskz_loadu_ps(m, row + k));
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    mx = _mm512_max_ps(mx, v);
  }
  const float m1 = _mm512_reduce_max_ps(mx);
  const float scale = nan ? std::nanf("") : 127.f / (m1 + 1e-7f);
  const __m512 vs = _mm512_set1_ps(scale), hi = _mm512_set1_ps(127.f), lo = _mm512_set1_ps(-127.f);
  const __m512i off = _mm512_set1_epi32(128);
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 m = K - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - k)) - 1);
    __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + k), vs),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    // lanes past K become 0 + 128 (the padding of a partial group)
    const __m512i qi = _mm512_add_epi32(_mm512_maskz_cvttps_epi32(m, v), off);
    alignas(16) uint32_t words[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(words), _mm512_cvtepi32_epi8(qi));
    const int64_t groups_here = std::min<int64_t>(4, (K - k + 3) / 4);
    uint8_t* dg = d + (k / 4) * stride;
    for (int64_t j = 0; j < groups_here; ++j) std::memcpy(dg + j * stride, &words[j], 4);
  }
  return scale;
}

// The same with AVX2, 8 floats at a time (the last K % 8 one by one, as quantize_row_generic).
__attribute__((target("avx2,fma"))) float quantize_row_avx2_tile(const float* row, int64_t K, uint8_t* d,
                                                                 int64_t stride) {
  const int64_t K8 = K / 8 * 8;
  const __m256 sign = _mm256_set1_ps(-0.f);
  __m256 mx = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  for (int64_t k = 0; k < K8; k += 8) {
    const __m256 v = _mm256_andnot_ps(sign, _mm256_loadu_ps(row + k));
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    mx = _mm256_max_ps(mx, v);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, mx);
  float m1 = 0.f;
  bool nan = _mm256_movemask_ps(bad) != 0;
  for (float v : lanes) m1 = v > m1 ? v : m1;
  for (int64_t k = K8; k < K; ++k) {
    const float v = std::fabs(row[k]);
    nan |= v != v;
    m1 = v > m1 ? v : m1;
  }
  const float scale = nan ? std::nanf("") : 127.f / (m1 + 1e-7f);
  const __m256 vs = _mm256_set1_ps(scale), hi = _mm256_set1_ps(127.f), lo = _mm256_set1_ps(-127.f);
  const __m256i off = _mm256_set1_epi32(128);
  for (int64_t k = 0; k < K8; k += 8) {
    __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(row + k), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);  // NaN -> -127 here; its NaN scale makes the outputs NaN
    const __m256i q = _mm256_add_epi32(_mm256_cvttps_epi32(v), off);
    const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    const __m128i b8 = _mm_packus_epi16(w16, w16);
    const int32_t w0 = _mm_cvtsi128_si32(b8), w1 = _mm_extract_epi32(b8, 1);
    std::memcpy(d + (k / 4) * stride, &w0, 4);
    std::memcpy(d + (k / 4 + 1) * stride, &w1, 4);
  }
  if (K8 < K) {  // the tail: whole groups, the last one padded with 128
    uint8_t tail[8] = {128, 128, 128, 128, 128, 128, 128, 128};
    for (int64_t k = K8; k < K; ++k) {
      float v = std::nearbyint(row[k] * scale);
      v = v > 127.f ? 127.f : v;
      v = v < -127.f ? -127.f : v;
      tail[k - K8] = uint8_t((v == v ? int(v) : 0) + 128);
    }
    for (int64_t g = 0; g * 4 < K - K8; ++g) std::memcpy(d + (K8 / 4 + g) * stride, tail + g * 4, 4);
  }
  return scale;
}
#endif

// n bytes from src to dst: short spans (a window row of a few channels) without a call.
#if LAMINA_QX86
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void copy_bytes_avx512(uint8_t* dst, const uint8_t* src,
                                                                                  int64_t n) {
  for (; n >= 64; n -= 64, src += 64, dst += 64) _mm512_storeu_si512(dst, _mm512_loadu_si512(src));
  if (n > 0) {
    const __mmask64 m = n >= 64 ? ~__mmask64(0) : (__mmask64(1) << n) - 1;
    _mm512_mask_storeu_epi8(dst, m, _mm512_maskz_loadu_epi8(m, src));
  }
}
#endif

#if LAMINA_QX86
// A window inside the image of at most 64 bytes, assembled in one register from its KH rows
// (masked loads: the lanes of other rows are not read) and stored whole: the byte-wise stores of
// a copy would stall the 4-byte reads of the tiles (no store forwarding between them).
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void window_avx512(uint8_t* buf, const uint8_t* first,
                                                                              int64_t row_stride, int64_t KH,
                                                                              int64_t span) {
  __m512i v = _mm512_set1_epi8(char(128));
  const __mmask64 m = (__mmask64(1) << span) - 1;
  for (int64_t kh = 0; kh < KH; ++kh)
    v = _mm512_mask_loadu_epi8(v, m << (kh * span), first + kh * row_stride - kh * span);
  _mm512_storeu_si512(buf, v);
}
#endif

inline void copy_bytes(uint8_t* dst, const uint8_t* src, int64_t n) {
#if LAMINA_QX86
  static const bool bw = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  if (bw) {
    copy_bytes_avx512(dst, src, n);
    return;
  }
#endif
  std::memcpy(dst, src, size_t(n));
}

// The output pixel (n, oh, ow) of each row of a convolution's product, row after row from row r
// (ImageRows): row-major, or, pooled, the PH x PW pixels of each pooled pixel in turn.
struct PixelWalk {
  int64_t PH, PW, POH, POW;
  int64_t n, ph, pw, qh, qw;  // pooled pixel (ph, pw) of image n; (qh, qw) inside its window
  PixelWalk(const ImageRows& g, int64_t r) : PH(g.PH), PW(g.PW), POH(g.OH / g.PH), POW(g.OW / g.PW) {
    const int64_t q = r % (PH * PW);
    int64_t p = r / (PH * PW);
    qh = q / PW, qw = q % PW;
    pw = POW > 0 ? p % POW : 0, p = POW > 0 ? p / POW : 0;
    ph = POH > 0 ? p % POH : 0, n = POH > 0 ? p / POH : 0;
  }
  int64_t oh() const { return ph * PH + qh; }
  int64_t ow() const { return pw * PW + qw; }
  void next() {
    if (++qw < PW) return;
    qw = 0;
    if (++qh < PH) return;
    qh = 0;
    if (++pw < POW) return;
    pw = 0;
    if (++ph < POH) return;
    ph = 0;
    ++n;
  }
};

// Rows [row0, row0 + m) of the windows of a byte image into [group][MR rows][4 bytes] tiles,
// padded with 128 (a zero after the shift) past K and past m; or, `rows_out`, row after row,
// G * 4 bytes each (the VNNI tiles read them in place: no transposition; dst holds 64 bytes more,
// as a window is stored whole and the next row overwrites its tail). The image is conv_windows'
// padded copy: every window lies inside it (pt = pl = 0), no bounds to check.
void window_block(const ImageRows& g, int64_t row0, int64_t m, int64_t K, uint8_t* dst, float* scales,
                  uint8_t* buf, bool rows_out) {
  const int64_t G = groups(K), C = g.C, span = g.KW * C, row_stride = g.dh * g.W * C;
  PixelWalk px(g, row0);
#if LAMINA_QX86
  static const bool bw = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  const bool fast = bw && g.dw == 1 && G * 4 <= 64 && span <= 64;
#endif
  std::memset(buf + K, 128, size_t(G * 4 - K));
  for (int64_t r0 = 0; r0 < m; r0 += MR) {
    uint8_t* tile = dst + r0 * G * 4;
    const int64_t rows = std::min<int64_t>(MR, m - r0);
    if (rows < MR && !rows_out) std::memset(tile, 128, size_t(MR * G * 4));
    for (int64_t i = 0; i < rows; ++i, px.next()) {
      const uint8_t* first = g.x + ((px.n * g.H + px.oh() * g.sh) * g.W + px.ow() * g.sw) * C;
      uint8_t* const row = rows_out ? tile + i * G * 4 : buf;  // where the window is assembled
      scales[r0 + i] = g.scale[px.n];
#if LAMINA_QX86
      if (fast) {
        window_avx512(row, first, row_stride, g.KH, span);  // K .. 64 stay 128
        if (rows_out) continue;
      } else
#endif
      {
        uint8_t* d = row;
        for (int64_t kh = 0; kh < g.KH; ++kh, d += span) {
          const uint8_t* src = first + kh * row_stride;
          if (g.dw == 1) copy_bytes(d, src, span);
          else
            for (int64_t kw = 0; kw < g.KW; ++kw) std::memcpy(d + kw * C, src + kw * g.dw * C, size_t(C));
        }
        if (rows_out) {
          std::memset(row + K, 128, size_t(G * 4 - K));
          continue;
        }
      }
      uint8_t* tr = tile + i * 4;
      for (int64_t gi = 0; gi < G; ++gi) std::memcpy(tr + gi * MR * 4, buf + gi * 4, 4);
    }
  }
}

// Quantizes rows [0, m) of a block into [group][MR rows][4 bytes] tiles (per MR rows), padding
// rows past m and k past K with 128 (= 0 after the shift; their products meet zero weights or
// are never stored).
void quantize_block(int kind, const float* a, int64_t lda, int64_t m, int64_t K, uint8_t* dst, float* scales,
                    uint8_t* rowbuf) {
  const int64_t G = groups(K);
  for (int64_t r0 = 0; r0 < m; r0 += MR) {
    uint8_t* tile = dst + r0 * G * 4;  // MR rows x G groups x 4 bytes
    const int64_t rows = std::min<int64_t>(MR, m - r0);
    if (rows < MR || K % 4) std::memset(tile, 128, size_t(MR * G * 4));
    for (int64_t i = 0; i < rows; ++i) {
      const float* row = a + (r0 + i) * lda;
      // group g of row i -> tile[g * MR * 4 + i * 4]
      uint8_t* d = tile + i * 4;
#if LAMINA_QX86
      if (kind == 1) {
        scales[r0 + i] = quantize_row_avx512_tile(row, K, d, MR * 4);
        continue;
      }
      if (kind == 2) {
        scales[r0 + i] = quantize_row_avx2_tile(row, K, d, MR * 4);
        continue;
      }
#endif
      scales[r0 + i] = quantize_row_generic(row, K, rowbuf);
      const int64_t full = K / 4;
      for (int64_t g = 0; g < full; ++g) std::memcpy(d + g * MR * 4, rowbuf + g * 4, 4);
      for (int64_t k = full * 4; k < K; ++k) d[full * MR * 4 + (k - full * 4)] = rowbuf[k];
    }
  }
}

// Rows [0, m) of a block of unsigned-byte activations into the same tiles, padded with 0 (their
// zero point).
void copy_block_u8(const uint8_t* a, int64_t lda, int64_t m, int64_t K, uint8_t* dst) {
  const int64_t G = groups(K), full = K / 4;
  for (int64_t r0 = 0; r0 < m; r0 += MR) {
    uint8_t* tile = dst + r0 * G * 4;
    const int64_t rows = std::min<int64_t>(MR, m - r0);
    if (rows < MR || K % 4) std::memset(tile, 0, size_t(MR * G * 4));
    for (int64_t i = 0; i < rows; ++i) {
      const uint8_t* row = a + (r0 + i) * lda;
      uint8_t* d = tile + i * 4;
      for (int64_t g = 0; g < full; ++g) std::memcpy(d + g * MR * 4, row + g * 4, 4);
      for (int64_t k = full * 4; k < K; ++k) d[full * MR * 4 + (k - full * 4)] = row[k];
    }
  }
}

// ---- generic micro-kernel --------------------------------------------------------------------------
// colsum: the block's columns' sums (the +128 shift of float rows) or null (byte activations).
void tile_generic(int64_t G, const uint8_t* a, const int8_t* b, int m, int n, const int32_t* colsum,
                  const float* a_scale, const Epilogue& e, int64_t row0, int64_t j0) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      int32_t acc = 0;
      for (int64_t g = 0; g < G; ++g) {
        const uint8_t* ag = a + g * MR * 4 + i * 4;
        const int8_t* bg = b + g * QNR * 4 + j * 4;
        acc += int32_t(ag[0]) * bg[0] + int32_t(ag[1]) * bg[1] + int32_t(ag[2]) * bg[2] + int32_t(ag[3]) * bg[3];
      }
      const int32_t r = colsum ? acc - 128 * colsum[j] : acc;
      epilogue_store(e, r, a_scale[i], row0 + i, j0 + j);
    }
  }
}

#if LAMINA_QX86
// The epilogue (qgemm.h) on 16 columns j0 .. j0 + 15 of one row (mask m): the per-column vectors
// are loaded once per tile.
struct EpiVec {
  __m512 ws, bias, A, D;  // or, folded, F in ws and G in bias
  __mmask16 m;
};

LAMINA_VNNI inline EpiVec epi_load(const Epilogue& e, int64_t j, __mmask16 m) {
  EpiVec v;
  v.m = m;
  if (e.F) {
    v.ws = _mm512_maskz_loadu_ps(m, e.F + j);
    v.bias = _mm512_maskz_loadu_ps(m, e.G + j);
    v.A = v.D = _mm512_setzero_ps();
    return v;
  }
  v.ws = _mm512_mask_loadu_ps(_mm512_set1_ps(1.f), m, e.w_scale + j);
  v.bias = e.bias ? _mm512_maskz_loadu_ps(m, e.bias + j) : _mm512_setzero_ps();
  v.A = e.A ? _mm512_maskz_loadu_ps(m, e.A + j) : _mm512_setzero_ps();
  v.D = e.A ? _mm512_maskz_loadu_ps(m, e.D + j) : _mm512_setzero_ps();
  return v;
}

// acc: the corrected int32 sums; as: the row's a_scale.
LAMINA_VNNI inline void epi_store(const Epilogue& e, const EpiVec& p, __m512i acc, float as, int64_t row, int64_t j) {
  __m512 v;
  if (e.F) {
    v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(p.ws, _mm512_set1_ps(1.f / as)), p.bias);
  } else {
    v = _mm512_div_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(p.ws, _mm512_set1_ps(as)));
    if (e.bias) v = _mm512_add_ps(v, p.bias);
    if (e.A) v = _mm512_fmadd_ps(v, p.A, p.D);
  }
  if (e.lo > -INFINITY) {  // NaN kept: NaN < lo is false
    const __m512 lo = _mm512_set1_ps(e.lo);
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, lo, _CMP_LT_OQ), lo);
  }
  if (e.hi < INFINITY) {
    const __m512 hi = _mm512_set1_ps(e.hi);
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, hi, _CMP_GT_OQ), hi);
  }
  if (!e.out_u8) {
    _mm512_mask_storeu_ps(e.out_f + row * e.ldo + j, p.m, v);
    return;
  }
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & p.m;
  if (nan && e.flags) __atomic_store_n(e.flags + (e.flag_row0 + row) / e.rows_per_flag, 1, __ATOMIC_RELAXED);
  __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v, _mm512_set1_ps(e.out_mul)));  // round half to even
  q = _mm512_max_epi32(_mm512_maskz_mov_epi32(__mmask16(~nan), q), _mm512_setzero_si512());
  _mm512_mask_cvtusepi32_storeu_epi8(e.out_u8 + row * e.ldo + j, p.m, q);  // saturates at 255
}

// ---- AVX-512 VNNI micro-kernel: M rows x 32 columns ---------------------------------------------
// The tile's epilogue: the zero-point correction (colsum, or none for byte activations) and the
// Epilogue on M rows x n columns of int32 sums. Always inlined: a call would take the
// accumulators' address and keep them in memory through the whole product loop.
template <int M, bool HALF>
LAMINA_VNNI __attribute__((always_inline)) inline void tile_vnni_store(__m512i (&acc)[M][2], int n,
                                                                      const int32_t* colsum, const float* a_scale,
                                                                      const Epilogue& e, int64_t row0, int64_t j0) {
  const __mmask16 m0 = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
  const __mmask16 m1 = n >= 32 ? __mmask16(0xFFFF) : n > 16 ? __mmask16((1u << (n - 16)) - 1) : __mmask16(0);
  const __m512i c128 = _mm512_set1_epi32(128);
  const __m512i cs0 = colsum ? _mm512_mullo_epi32(_mm512_maskz_loadu_epi32(m0, colsum), c128) : _mm512_setzero_si512();
  const __m512i cs1 =
      colsum ? _mm512_mullo_epi32(_mm512_maskz_loadu_epi32(m1, colsum + 16), c128) : _mm512_setzero_si512();
  const EpiVec p0 = epi_load(e, j0, m0), p1 = epi_load(e, j0 + 16, m1);
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    epi_store(e, p0, _mm512_sub_epi32(acc[i][0], cs0), a_scale[i], row0 + i, j0);
    if (!HALF && n > 16) epi_store(e, p1, _mm512_sub_epi32(acc[i][1], cs1), a_scale[i], row0 + i, j0 + 16);
  }
}

// HALF: only the first 16 columns (n <= 16).
// DIRECT: `a` is the rows themselves (bytes, lda a multiple of 4, in 4-byte units `rs`), read in
// place instead of from a packed tile (byte activations with K % 4 == 0: no copy).
template <int M, bool HALF, bool DIRECT>
LAMINA_VNNI void tile_vnni(int64_t G, const uint8_t* a, int64_t rs, const int8_t* b, int n, const int32_t* colsum,
                           const float* a_scale, const Epilogue& e, int64_t row0, int64_t j0) {
  __m512i acc[M][2];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
  const int32_t* aw = reinterpret_cast<const int32_t*>(a);  // 4-byte groups (4-aligned)
  for (int64_t g = 0; g < G; ++g, aw += DIRECT ? 1 : MR, b += QNR * 4) {
    const __m512i b0 = _mm512_loadu_si512(b), b1 = HALF ? b0 : _mm512_loadu_si512(b + 64);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m512i ai = _mm512_set1_epi32(DIRECT ? aw[i * rs] : aw[i]);
      // vpdpbusd through inline asm: GCC 12 copies (and spills) the accumulators of the intrinsic
      __asm__("vpdpbusd %2, %1, %0" : "+v"(acc[i][0]) : "v"(ai), "v"(b0));
      if (!HALF) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc[i][1]) : "v"(ai), "v"(b1));
    }
  }
  tile_vnni_store<M, HALF>(acc, n, colsum, a_scale, e, row0, j0);
}

// The rows of a convolution read in place from a padded byte image (conv_windows): group g of row
// i's window (in the packed weights' (kh, kw, c) order) is the 4 bytes at rows[i] + 4 * offs[g].
// No copy of the windows into tiles; one loop (a nested loop over the window's rows made GCC keep
// the accumulators in memory).
template <int M, bool HALF>
LAMINA_VNNI void tile_vnni_win(int64_t G, const int64_t* offs, const uint8_t* const* rows, const int8_t* b, int n,
                               const int32_t* colsum, const float* a_scale, const Epilogue& e, int64_t row0,
                               int64_t j0) {
  __m512i acc[M][2];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
  const int32_t* p[M];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) p[i] = reinterpret_cast<const int32_t*>(rows[i]);
  for (int64_t g = 0; g < G; ++g, b += QNR * 4) {
    const __m512i b0 = _mm512_loadu_si512(b), b1 = HALF ? b0 : _mm512_loadu_si512(b + 64);
    const int64_t o = offs[g];
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m512i ai = _mm512_set1_epi32(p[i][o]);
      __asm__("vpdpbusd %2, %1, %0" : "+v"(acc[i][0]) : "v"(ai), "v"(b0));
      if (!HALF) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc[i][1]) : "v"(ai), "v"(b1));
    }
  }
  tile_vnni_store<M, HALF>(acc, n, colsum, a_scale, e, row0, j0);
}

using WinTileFn = void (*)(int64_t, const int64_t*, const uint8_t* const*, const int8_t*, int, const int32_t*,
                           const float*, const Epilogue&, int64_t, int64_t);
template <bool HALF>
constexpr std::array<WinTileFn, MR + 1> vnni_win_tiles() {
  return {nullptr,
          &tile_vnni_win<1, HALF>,  &tile_vnni_win<2, HALF>,  &tile_vnni_win<3, HALF>,  &tile_vnni_win<4, HALF>,
          &tile_vnni_win<5, HALF>,  &tile_vnni_win<6, HALF>,  &tile_vnni_win<7, HALF>,  &tile_vnni_win<8, HALF>,
          &tile_vnni_win<9, HALF>,  &tile_vnni_win<10, HALF>, &tile_vnni_win<11, HALF>, &tile_vnni_win<12, HALF>};
}
// [half][rows]
const std::array<WinTileFn, MR + 1> kVnniWinTiles[2] = {vnni_win_tiles<false>(), vnni_win_tiles<true>()};

using TileFn = void (*)(int64_t, const uint8_t*, int64_t, const int8_t*, int, const int32_t*, const float*,
                        const Epilogue&, int64_t, int64_t);
template <bool HALF, bool DIRECT>
constexpr std::array<TileFn, MR + 1> vnni_tiles() {
  return {nullptr,
          &tile_vnni<1, HALF, DIRECT>,  &tile_vnni<2, HALF, DIRECT>,  &tile_vnni<3, HALF, DIRECT>,
          &tile_vnni<4, HALF, DIRECT>,  &tile_vnni<5, HALF, DIRECT>,  &tile_vnni<6, HALF, DIRECT>,
          &tile_vnni<7, HALF, DIRECT>,  &tile_vnni<8, HALF, DIRECT>,  &tile_vnni<9, HALF, DIRECT>,
          &tile_vnni<10, HALF, DIRECT>, &tile_vnni<11, HALF, DIRECT>, &tile_vnni<12, HALF, DIRECT>};
}
// [direct][half][rows]
const std::array<TileFn, MR + 1> kVnniTiles[2][2] = {{vnni_tiles<false, false>(), vnni_tiles<true, false>()},
                                                     {vnni_tiles<false, true>(), vnni_tiles<true, true>()}};

// ---- AVX2 micro-kernel: 6 rows x 16 columns, on 16-bit operands -------------------------------
// No VNNI: vpmaddwd multiplies 16-bit pairs and sums each pair into a 32-bit lane, 16
// multiply-adds an instruction, at the rate of the two float FMA pipes' 8 each (vpmaddubsw on
// bytes needs a vpmaddwd after it, and a vpsignb before it for signed rows: no faster). So both
// operands are widened once: the row bytes (q + 128 with colsum, or a fused group's 0..255) to
// 16 bits, a block's rows one after another (G * 4 values each; windows in place: the padded
// image widened, ImageRows::x16), and each weight panel, per work item, from [group][32 columns][4 k] bytes to
// [group][k pair][32 columns][2 k] int16 (widen_panel): one 32-bit broadcast of a row's pair
// against two panel vectors of 8 columns each. Sums as VNNI's (int32, exact).
#define LAMINA_QAVX2 __attribute__((target("avx2,fma")))

// The epilogue on a vector of 8 sums (n < 8: the first n, one by one through `orig`). `e` is the
// caller's local copy of `orig`: byte stores may alias an Epilogue in memory, and the compiler
// would load its fields again after each.
__attribute__((target("avx2,fma"), always_inline)) inline void epi8_store(const Epilogue& e, const Epilogue& orig,
                                                                         __m256i acc, int n, float as, int64_t row,
                                                                         int64_t j) {
  if (n == 8) {  // eight columns at once: the folded epilogue (fused groups), or epi_store's steps
    __m256 v;
    if (e.F) {
      v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_mul_ps(_mm256_loadu_ps(e.F + j), _mm256_set1_ps(1.f / as)),
                          _mm256_loadu_ps(e.G + j));
    } else {
      v = _mm256_div_ps(_mm256_cvtepi32_ps(acc), _mm256_mul_ps(_mm256_loadu_ps(e.w_scale + j), _mm256_set1_ps(as)));
      if (e.bias) v = _mm256_add_ps(v, _mm256_loadu_ps(e.bias + j));
      if (e.A) v = _mm256_fmadd_ps(v, _mm256_loadu_ps(e.A + j), _mm256_loadu_ps(e.D + j));
    }
    const int64_t o = row * e.ldo + j;
    const bool nan = qavx2::store8_clamped(v, e.lo, e.hi, e.out_mul, e.out_u8 ? nullptr : e.out_f + o,
                                           e.out_u8 ? e.out_u8 + o : nullptr);
    if (nan && e.flags) __atomic_store_n(e.flags + (e.flag_row0 + row) / e.rows_per_flag, 1, __ATOMIC_RELAXED);
    return;
  }
  alignas(32) int32_t r[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(r), acc);
  for (int c = 0; c < n; ++c) epilogue_store(orig, r[c], as, row, j + c);
}

// An M x 16 tile's sums (a half panel; colsum: its column sums, 128 times each to take off, or
// null) through the epilogue, 8 columns at a time. LAMINA_TILE16_STORE ends a tile whose row i's
// sums are in lo<i> (columns 0-7) and hi<i> (8-15).
#define LAMINA_TILE16_SAVE(i)                                                                         \
  if constexpr (M > i) {                                                                              \
    _mm256_store_si256(reinterpret_cast<__m256i*>(sums[i]), lo##i);                                   \
    _mm256_store_si256(reinterpret_cast<__m256i*>(sums[i] + 8), hi##i);                               \
  }
#define LAMINA_TILE16_STORE                                                                           \
  {                                                                                                   \
    alignas(32) int32_t sums[6][16];                                                                  \
    LAMINA_TILE16_SAVE(0) LAMINA_TILE16_SAVE(1) LAMINA_TILE16_SAVE(2)                                 \
    LAMINA_TILE16_SAVE(3) LAMINA_TILE16_SAVE(4) LAMINA_TILE16_SAVE(5)                                 \
    store_tile16<M>(sums, colsum, n, a_scale, e, row0, j0);                                           \
  }
template <int M>
__attribute__((target("avx2,fma"), always_inline)) inline void store_tile16(const int32_t (*sums)[16],
                                                                           const int32_t* colsum, int n,
                                                                           const float* a_scale, const Epilogue& e,
                                                                           int64_t row0, int64_t j0) {
  const Epilogue c = e;
  alignas(32) int32_t cs[16] = {};
  if (colsum)
    for (int j = 0; j < n; ++j) cs[j] = 128 * colsum[j];
  const __m256i cs0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(cs));
  const __m256i cs1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(cs + 8));
  for (int i = 0; i < M; ++i) {
    const __m256i s0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(sums[i]));
    const __m256i s1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(sums[i] + 8));
    epi8_store(c, e, _mm256_sub_epi32(s0, cs0), std::min(n, 8), a_scale[i], row0 + i, j0);
    if (n > 8) epi8_store(c, e, _mm256_sub_epi32(s1, cs1), n - 8, a_scale[i], row0 + i, j0 + 8);
  }
}

// n bytes to 16 bits (zero-extended).
LAMINA_QAVX2 void widen_u8(const uint8_t* s, int64_t n, uint16_t* d) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i),
                        _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) d[i] = s[i];
}

// One packed panel (G groups of [32 columns][4 k], int8) as [group][k pair][32 columns][2 k] int16.
LAMINA_QAVX2 void widen_panel(const int8_t* b, int64_t G, int16_t* d) {
  // four columns' 16 bytes as (c0 k0 k1, c1 k0 k1, ..., c3 k0 k1 | c0 k2 k3, ...)
  const __m128i pairs = _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  for (int64_t g = 0; g < G; ++g, b += QNR * 4, d += QNR * 4)
    for (int c = 0; c < QNR; c += 4) {
      const __m128i v = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + c * 4)), pairs);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + c * 2), _mm_cvtepi8_epi16(v));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + QNR * 2 + c * 2), _mm_cvtepi8_epi16(_mm_srli_si128(v, 8)));
    }
}

// One row's k pair against the two vectors of 8 columns: broadcast, two vpmaddwd, two adds, in
// asm with named accumulators (as intrinsics GCC kept the 12 accumulators in memory).
#define LAMINA_AVX2W_ROW(i, P)                                                                        \
  if constexpr (M > i) {                                                                              \
    __m256i x, t;                                                                                     \
    __asm__("vpbroadcastd %[a], %[x]\n\tvpmaddwd %[b0], %[x], %[t]\n\tvpaddd %[t], %[lo], %[lo]\n\t"  \
            "vpmaddwd %[b1], %[x], %[x]\n\tvpaddd %[x], %[hi], %[hi]"                                 \
            : [lo] "+x"(lo##i), [hi] "+x"(hi##i), [x] "=&x"(x), [t] "=&x"(t)                          \
            : [a] "m"(p##i[o + P]), [b0] "x"(b0), [b1] "x"(b1));                                      \
  }
#define LAMINA_AVX2W_PAIR(P)                                                                          \
  {                                                                                                   \
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + P * QNR * 2));         \
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + P * QNR * 2 + 16));    \
    LAMINA_AVX2W_ROW(0, P) LAMINA_AVX2W_ROW(1, P) LAMINA_AVX2W_ROW(2, P)                              \
    LAMINA_AVX2W_ROW(3, P) LAMINA_AVX2W_ROW(4, P) LAMINA_AVX2W_ROW(5, P)                              \
  }

// M (<= 6) rows x 16 columns of a widened panel (b already at the half panel's first column).
// MODE: where row i's group g (four 16-bit values, two 32-bit pairs) is: 1 rows one after another
// (a + i rs + 4 g), 2 windows in place (rows[i] + 4 offs[g]).
template <int M, int MODE>
LAMINA_QAVX2 void tile_avx2(int64_t G, const uint16_t* a, int64_t rs, const uint16_t* const* rows,
                            const int64_t* offs, const int16_t* b, int n, const int32_t* colsum, const float* a_scale,
                            const Epilogue& e, int64_t row0, int64_t j0) {
  static_assert(M >= 1 && M <= 6, "tile_avx2: 1 to 6 rows");
  auto row_ptr = [&](int i) {
    return i >= M ? nullptr : reinterpret_cast<const int32_t*>(MODE == 2 ? rows[i] : a + i * rs);
  };
  const int32_t *p0 = row_ptr(0), *p1 = row_ptr(1), *p2 = row_ptr(2), *p3 = row_ptr(3), *p4 = row_ptr(4),
                *p5 = row_ptr(5);
  const __m256i z = _mm256_setzero_si256();
  __m256i lo0 = z, hi0 = z, lo1 = z, hi1 = z, lo2 = z, hi2 = z, lo3 = z, hi3 = z, lo4 = z, hi4 = z, lo5 = z, hi5 = z;
  for (int64_t g = 0; g < G; ++g, b += QNR * 4) {
    const int64_t o = MODE == 2 ? 2 * offs[g] : 2 * g;  // in pairs
    LAMINA_AVX2W_PAIR(0)
    LAMINA_AVX2W_PAIR(1)
  }
  LAMINA_TILE16_STORE
}
#undef LAMINA_AVX2W_ROW
#undef LAMINA_AVX2W_PAIR

using Avx2Fn = void (*)(int64_t, const uint16_t*, int64_t, const uint16_t* const*, const int64_t*, const int16_t*,
                        int, const int32_t*, const float*, const Epilogue&, int64_t, int64_t);
template <int MODE>
constexpr std::array<Avx2Fn, 7> avx2_tiles() {
  return {nullptr, &tile_avx2<1, MODE>, &tile_avx2<2, MODE>, &tile_avx2<3, MODE>,
          &tile_avx2<4, MODE>, &tile_avx2<5, MODE>, &tile_avx2<6, MODE>};
}
const std::array<Avx2Fn, 7> kAvx2Tiles[2] = {avx2_tiles<1>(), avx2_tiles<2>()};

// `rows` (<= MR) rows x n (<= QNR) columns of a widened panel: 6-row, 16-column pieces.
void tile_avx2_mr(bool win, int64_t G, const uint16_t* a, int64_t rs, const uint16_t* const* rws,
                  const int64_t* offs, const int16_t* b, int rows, int n, const int32_t* colsum, const float* a_scale,
                  const Epilogue& e, int64_t row0, int64_t j0) {
  for (int c = 0; c * 16 < n; ++c)
    for (int r = 0; r < rows; r += 6) {
      const int m = std::min(6, rows - r);
      kAvx2Tiles[win][m](G, win ? nullptr : a + r * rs, rs, rws ? rws + r : nullptr, offs, b + c * 32,
                         std::min(16, n - c * 16), colsum ? colsum + c * 16 : nullptr, a_scale + r, e, row0 + r,
                         j0 + c * 16);
    }
}

// Few rows quantized from floats (fewer than kFewRows: widening each weight panel would cost more
// than it saves), read from a packed tile ([group][MR rows][4 bytes] of q + 128, q in [-127,
// 127]) with the weights as bytes: vpmaddubsw multiplies unsigned by signed bytes, two products an
// int16, so it takes the weights' magnitudes |w| (as unsigned bytes: -128 gives 128) against q
// carrying w's sign (vpsignb; |q| <= 127 fits a signed byte whatever the sign): |w| |q| <= 128 *
// 127, and two of them fit an int16. (The other way round, |q| against w carrying q's sign, turns
// w = -128 with q < 0 into -128 again: a wrong sum.) vpmaddwd by ones then sums the column's four
// k into its 32-bit lane, in column order: R rows x 32 columns, no correction sums.
constexpr int64_t kFewRows = 32;
template <int R>
LAMINA_QAVX2 void block_avx2_bytes(int64_t G, const uint8_t* a, const int8_t* b, int n, const float* a_scale,
                                   const Epilogue& e, int64_t row0, int64_t j0) {
  __m256i acc[R][4];
  for (int i = 0; i < R; ++i)
    for (int c = 0; c < 4; ++c) acc[i][c] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8(char(0x80));
  for (int64_t g = 0; g < G; ++g, b += QNR * 4) {
    __m256i q[R];
    for (int i = 0; i < R; ++i) {
      int32_t word;
      std::memcpy(&word, a + (g * MR + i) * 4, 4);
      q[i] = _mm256_xor_si256(_mm256_set1_epi32(word), flip);  // the signed q of each byte
    }
    for (int c = 0; c < 4; ++c) {
      const __m256i bw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32 * c));
      const __m256i bm = _mm256_abs_epi8(bw);
      for (int i = 0; i < R; ++i)
        acc[i][c] = _mm256_add_epi32(acc[i][c],
                                     _mm256_madd_epi16(_mm256_maddubs_epi16(bm, _mm256_sign_epi8(q[i], bw)), ones));
    }
  }
  const Epilogue ec = e;
  for (int i = 0; i < R; ++i)
    for (int c = 0; c * 8 < n; ++c)
      epi8_store(ec, e, acc[i][c], std::min(8, n - c * 8), a_scale[i], row0 + i, j0 + c * 8);
}

// The tile of `rows` rows (<= MR) and n (<= QNR) columns, as tile_vnni's: 2 rows a block.
LAMINA_QAVX2 void tile_avx2_bytes(int64_t G, const uint8_t* a, const int8_t* b, int rows, int n,
                                  const float* a_scale, const Epilogue& e, int64_t row0, int64_t j0) {
  for (int r0 = 0; r0 < rows; r0 += 2) {
    if (rows - r0 >= 2) block_avx2_bytes<2>(G, a + r0 * 4, b, n, a_scale + r0, e, row0 + r0, j0);
    else block_avx2_bytes<1>(G, a + r0 * 4, b, n, a_scale + r0, e, row0 + r0, j0);
  }
}

// A block's rows for the AVX2 tiles: m rows of G * 4 16-bit values, one after another (k past K: 0
// for bytes, 128 (a zero after the shift) for quantized floats).
void widen_rows_u8(const uint8_t* a, int64_t lda, int64_t m, int64_t K, uint16_t* d) {
  const int64_t Kp = groups(K) * 4;
  if (K == Kp && lda == K) return widen_u8(a, m * K, d);  // rows one after another already
  for (int64_t i = 0; i < m; ++i) {
    widen_u8(a + i * lda, K, d + i * Kp);
    std::fill(d + i * Kp + K, d + (i + 1) * Kp, uint16_t(0));
  }
}
void quantize_rows_avx2(const float* a, int64_t lda, int64_t m, int64_t K, uint16_t* d, float* scales,
                        uint8_t* rowbuf) {
  const int64_t Kp = groups(K) * 4;
  for (int64_t i = 0; i < m; ++i) {
    scales[i] = quantize_row_avx2_tile(a + i * lda, K, rowbuf, 4);  // whole groups, 128 past K
    widen_u8(rowbuf, Kp, d + i * Kp);
  }
}

// ---- AVX-VNNI micro-kernel (256-bit vpdpbusd: CPUs with AVX-VNNI and no AVX-512) -------------
// M (<= 6) rows x 16 columns (a half panel: b and colsum already offset to it), 12 accumulators:
// the sums of the VNNI tile, exact. MODE: where row i's group g is: 0 a packed tile (a + 4 (g MR
// + i)), 1 rows in place (a + 4 (i rs + g)), 2 windows in place (rows[i] + 4 offs[g]).
#define LAMINA_QAVXVNNI __attribute__((target("avx2,fma,avxvnni")))

// One row's two accumulators (lo: columns 0-7, hi: 8-15) in named variables: with arrays GCC kept
// them in memory through the product loop.
#define LAMINA_AVXVNNI_ROW(i)                                                                 \
  if constexpr (M > i) {                                                                      \
    const __m256i ai = _mm256_set1_epi32(p##i[o]);                                            \
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(lo##i) : "x"(ai), "x"(b0));                  \
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(hi##i) : "x"(ai), "x"(b1));                  \
  }

template <int M, int MODE>
LAMINA_QAVXVNNI void tile_avxvnni(int64_t G, const uint8_t* a, int64_t rs, const uint8_t* const* rows,
                                  const int64_t* offs, const int8_t* b, int n, const int32_t* colsum,
                                  const float* a_scale, const Epilogue& e, int64_t row0, int64_t j0) {
  static_assert(M >= 1 && M <= 6, "tile_avxvnni: 1 to 6 rows");
  auto row_ptr = [&](int i) {
    return i >= M ? nullptr
                  : reinterpret_cast<const int32_t*>(MODE == 2 ? rows[i] : MODE == 1 ? a + i * rs * 4 : a + i * 4);
  };
  const int32_t *p0 = row_ptr(0), *p1 = row_ptr(1), *p2 = row_ptr(2), *p3 = row_ptr(3), *p4 = row_ptr(4),
                *p5 = row_ptr(5);
  const __m256i z = _mm256_setzero_si256();
  __m256i lo0 = z, hi0 = z, lo1 = z, hi1 = z, lo2 = z, hi2 = z, lo3 = z, hi3 = z, lo4 = z, hi4 = z, lo5 = z, hi5 = z;
  for (int64_t g = 0; g < G; ++g, b += QNR * 4) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32));
    const int64_t o = MODE == 2 ? offs[g] : MODE == 1 ? g : g * MR;
    LAMINA_AVXVNNI_ROW(0) LAMINA_AVXVNNI_ROW(1) LAMINA_AVXVNNI_ROW(2)
    LAMINA_AVXVNNI_ROW(3) LAMINA_AVXVNNI_ROW(4) LAMINA_AVXVNNI_ROW(5)
  }
  LAMINA_TILE16_STORE
}
#undef LAMINA_AVXVNNI_ROW
#undef LAMINA_TILE16_SAVE
#undef LAMINA_TILE16_STORE

using AvxVnniFn = void (*)(int64_t, const uint8_t*, int64_t, const uint8_t* const*, const int64_t*, const int8_t*, int,
                           const int32_t*, const float*, const Epilogue&, int64_t, int64_t);
template <int MODE>
constexpr std::array<AvxVnniFn, 7> avxvnni_tiles() {
  return {nullptr, &tile_avxvnni<1, MODE>, &tile_avxvnni<2, MODE>, &tile_avxvnni<3, MODE>,
          &tile_avxvnni<4, MODE>, &tile_avxvnni<5, MODE>, &tile_avxvnni<6, MODE>};
}
const std::array<AvxVnniFn, 7> kAvxVnniTiles[3] = {avxvnni_tiles<0>(), avxvnni_tiles<1>(), avxvnni_tiles<2>()};

// `rows` (<= MR) rows x n (<= QNR) columns of a panel, as tile_vnni's: 6-row, 16-column pieces.
void tile_avxvnni_mr(int mode, int64_t G, const uint8_t* a, int64_t rs, const uint8_t* const* rws,
                     const int64_t* offs, const int8_t* b, int rows, int n, const int32_t* colsum,
                     const float* a_scale, const Epilogue& e, int64_t row0, int64_t j0) {
  for (int c = 0; c * 16 < n; ++c)
    for (int r = 0; r < rows; r += 6) {
      const int m = std::min(6, rows - r);
      const uint8_t* ar = mode == 1 ? a + r * rs * 4 : a + r * 4;
      kAvxVnniTiles[mode][m](G, ar, rs, rws ? rws + r : nullptr, offs, b + c * 64, std::min(16, n - c * 16),
                             colsum ? colsum + c * 16 : nullptr, a_scale + r, e, row0 + r, j0 + c * 16);
    }
}

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool cpu_has_vnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

// CPUID leaf 7.1, EAX bit 4 (GCC 12's __builtin_cpu_supports("avxvnni") misses it on Zen 5)
bool cpu_has_avxvnni() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return cpu_has_avx2() && __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 4) & 1);
}
#else
bool cpu_has_vnni() { return false; }
bool cpu_has_avx2() { return false; }
bool cpu_has_avxvnni() { return false; }
#endif

// AVXVNNI: the AVX2 layout and quantizers, the AVX-VNNI tiles
enum Kind : int { GENERIC = 0, VNNI = 1, AVX2 = 2, AVXVNNI = 3 };
std::atomic<int> g_kind{-1};

int active_kind() {
  int k = g_kind.load(std::memory_order_acquire);
  if (k < 0) {
    k = cpu_has_vnni() ? VNNI : cpu_has_avxvnni() ? AVXVNNI : cpu_has_avx2() ? AVX2 : GENERIC;
    if (const char* env = std::getenv("LAMINA_QGEMM_KERNEL")) {
      if (std::string(env) == "generic") k = GENERIC;
      if (std::string(env) == "avx2" && cpu_has_avx2()) k = AVX2;
      if (std::string(env) == "avxvnni" && cpu_has_avxvnni()) k = AVXVNNI;
    }
    g_kind.store(k, std::memory_order_release);
  }
  return k;
}

// Thread-local scratch for a quantized row block.
struct Scratch {
  std::vector<uint8_t> q, row;
  std::vector<float> scales;
  std::vector<const uint8_t*> rows;  // windows read in place: each row's first byte
  std::vector<int64_t> offs;         // ... and each group's offset from it (4-byte units)
  std::vector<float> pooled;         // a pooled block's rows before the pooling
  std::vector<uint16_t> q16;         // AVX2: the block's rows widened, one after another
  std::vector<const uint16_t*> rows16;  // ... and windows in place in the widened image
  std::vector<int16_t> b16;          // ... and the current weight panel widened
};
thread_local Scratch t_scratch;

// The input of a product: float rows (quantized on the fly) or unsigned bytes with one step.
struct Input {
  const ImageRows* img = nullptr;  // rows gathered from an image (f unused)
  const float* f = nullptr;
  const uint8_t* u8 = nullptr;
  int64_t lda = 0;
  float u8_scale = 1.f;  // 1 / step: the bytes' a_scale
};

// The pooled rows of a block (ImageRows): out row r0p + i = the maximum of rows Q i .. Q i + Q - 1
// of `v` (m rows of ldv floats, columns [j0, j1)); NaN if any of them is NaN, as max pooling.
// Always inlined: compiled for the ISA of each caller (pool_block_avx2 below, the generic one).
__attribute__((always_inline)) inline void pool_block(const float* v, int64_t ldv, int64_t m, int64_t Q, int64_t j0,
                                                      int64_t j1, float* out, int64_t ldo, int64_t r0p) {
  for (int64_t i = 0; i * Q < m; ++i) {
    float* o = out + (r0p + i) * ldo;
    const float* first = v + i * Q * ldv;
#pragma omp simd
    for (int64_t j = j0; j < j1; ++j) o[j] = first[j];
    for (int64_t q = 1; q < Q; ++q) {
      const float* r = first + q * ldv;
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) {
        const float x = r[j], cur = o[j];
        o[j] = (x > cur) | ((x != x) & (cur == cur)) ? x : cur;
      }
    }
  }
}

void pool_block_generic(const float* v, int64_t ldv, int64_t m, int64_t Q, int64_t j0, int64_t j1, float* out,
                        int64_t ldo, int64_t r0p) {
  pool_block(v, ldv, m, Q, j0, j1, out, ldo, r0p);
}

#if LAMINA_QX86
__attribute__((target("avx2,fma"))) void pool_block_avx2(const float* v, int64_t ldv, int64_t m, int64_t Q,
                                                          int64_t j0, int64_t j1, float* out, int64_t ldo,
                                                          int64_t r0p) {
  pool_block(v, ldv, m, Q, j0, j1, out, ldo, r0p);
}

LAMINA_VNNI void pool_block_avx512(const float* v, int64_t ldv, int64_t m, int64_t Q, int64_t j0, int64_t j1,
                                   float* out, int64_t ldo, int64_t r0p) {
  for (int64_t i = 0; i * Q < m; ++i) {
    float* o = out + (r0p + i) * ldo;
    const float* first = v + i * Q * ldv;
    for (int64_t j = j0; j < j1; j += 16) {
      const __mmask16 k = j1 - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (j1 - j)) - 1);
      __m512 cur = _mm512_maskz_loadu_ps(k, first + j);
      for (int64_t q = 1; q < Q; ++q) {
        const __m512 x = _mm512_maskz_loadu_ps(k, first + q * ldv + j);
        // x where x > cur, or where x is the first NaN
        const __mmask16 take = _mm512_cmp_ps_mask(x, cur, _CMP_GT_OQ) |
                               (_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(cur, cur, _CMP_ORD_Q));
        cur = _mm512_mask_mov_ps(cur, take, x);
      }
      _mm512_mask_storeu_ps(o + j, k, cur);
    }
  }
}
#endif

// Rows [r0, r1) x panels [p0, p1).
void run_item(int kind, const Input& in, int64_t r0, int64_t r1, int64_t K, int64_t N, int64_t p0, int64_t p1,
              const int8_t* packed, const int32_t* colsum, const Epilogue& e_out) {
  const int64_t G = groups(K), m = r1 - r0;
  Scratch& s = t_scratch;
  const int64_t tiles = (m + MR - 1) / MR;
  s.q.resize(size_t(tiles * MR * G * 4));
  s.scales.resize(size_t(tiles * MR));
  s.row.resize(size_t(K + 64));
  // pooled (ImageRows): the epilogue writes the block's rows into scratch, pooled from there
  const int64_t Q = in.img ? in.img->PH * in.img->PW : 1;
  Epilogue pe;
  int64_t rbase = r0;  // the epilogue's row of the block's row 0
  if (Q > 1) {
    pe = e_out;
    s.pooled.resize(size_t(m * N));
    pe.out_f = s.pooled.data();
    pe.out_u8 = nullptr;
    pe.ldo = N;
    rbase = 0;
  }
  const Epilogue& e = Q > 1 ? pe : e_out;
  // byte rows of whole 4-byte groups feed the VNNI tiles in place
  const bool vnni = kind == VNNI || kind == AVXVNNI;  // tiles that read rows in place
  const bool direct = in.u8 && vnni && K % 4 == 0 && in.lda % 4 == 0;
  const bool win = in.img && in.img->Wp > 0;  // a padded image: every window read in place
  // the AVX2 tiles' rows widened (s.q16), but for a few float rows (tile_avx2_bytes)
  const bool few = kind == AVX2 && in.f && m < kFewRows, rows16 = kind == AVX2 && !win && !few;
  if (rows16) s.q16.resize(size_t(m * G * 4));
  if (in.u8) {
#if LAMINA_QX86
    if (rows16) widen_rows_u8(in.u8 + r0 * in.lda, in.lda, m, K, s.q16.data());
    else
#endif
    if (!direct) copy_block_u8(in.u8 + r0 * in.lda, in.lda, m, K, s.q.data());
    std::fill(s.scales.begin(), s.scales.end(), in.u8_scale);
    colsum = nullptr;
  } else if (win) {
    const ImageRows& g = *in.img;
    const bool wide = kind == AVX2;  // the AVX2 tiles read the 16-bit image (g.x16), the others the bytes
    if (wide) s.rows16.resize(size_t(tiles * MR));
    else s.rows.resize(size_t(tiles * MR));
    PixelWalk px(g, r0);
    for (int64_t i = 0; i < m; ++i, px.next()) {
      const int64_t at = ((px.n * g.Hp + px.oh() * g.sh) * g.Wp + px.ow() * g.sw) * g.C;
      if (wide) s.rows16[size_t(i)] = g.x16 + at;
      else s.rows[size_t(i)] = g.x + at;
      s.scales[size_t(i)] = g.scale[px.n];
    }
    // group k of a window: segment (window row) k / SG, group k % SG of it
    const int64_t SG = g.KW * g.C / 4, ss = g.dh * g.Wp * g.C / 4;
    s.offs.resize(size_t(G));
    for (int64_t k = 0; k < G; ++k) s.offs[size_t(k)] = k / SG * ss + k % SG;
  } else if (in.img) {  // windows copied: row after row for the VNNI tiles, else into tiles
    if (vnni || rows16) s.q.resize(s.q.size() + 64);
    window_block(*in.img, r0, m, K, s.q.data(), s.scales.data(), s.row.data(), vnni || rows16);
#if LAMINA_QX86
    if (rows16) widen_u8(s.q.data(), m * G * 4, s.q16.data());
#endif
  } else {
#if LAMINA_QX86
    if (rows16) quantize_rows_avx2(in.f + r0 * in.lda, in.lda, m, K, s.q16.data(), s.scales.data(), s.row.data());
    else
#endif
    quantize_block(kind == AVXVNNI ? AVX2 : kind, in.f + r0 * in.lda, in.lda, m, K, s.q.data(), s.scales.data(),
                   s.row.data());
  }
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t j0 = p * QNR;
    const int n = int(std::min<int64_t>(QNR, N - j0));
    const int8_t* b = packed + p * G * QNR * 4;
#if LAMINA_QX86
    if (kind == AVX2 && !few) {
      s.b16.resize(size_t(G * QNR * 4));
      widen_panel(b, G, s.b16.data());
    }
#endif
    const int32_t* cs = colsum ? colsum + j0 : nullptr;
    for (int64_t t = 0; t < tiles; ++t) {
      const int rows = int(std::min<int64_t>(MR, m - t * MR));
      const uint8_t* at = s.q.data() + t * MR * G * 4;
      const float* as = s.scales.data() + t * MR;
      const int64_t row0 = rbase + t * MR;
#if LAMINA_QX86
      if (kind == VNNI) {
        if (win)
          kVnniWinTiles[n <= 16][rows](G, s.offs.data(), s.rows.data() + t * MR, b, n, cs, as, e, row0, j0);
        else if (in.img)  // the windows row after row (window_block)
          kVnniTiles[1][n <= 16][rows](G, at, G, b, n, cs, as, e, row0, j0);
        else if (direct)
          kVnniTiles[1][n <= 16][rows](G, in.u8 + (r0 + t * MR) * in.lda, in.lda / 4, b, n, cs, as, e, row0, j0);
        else
          kVnniTiles[0][n <= 16][rows](G, at, 0, b, n, cs, as, e, row0, j0);
        continue;
      }
      if (kind == AVXVNNI) {
        if (win)
          tile_avxvnni_mr(2, G, nullptr, 0, s.rows.data() + t * MR, s.offs.data(), b, rows, n, cs, as, e, row0, j0);
        else if (in.img)
          tile_avxvnni_mr(1, G, at, G, nullptr, nullptr, b, rows, n, cs, as, e, row0, j0);
        else if (direct)
          tile_avxvnni_mr(1, G, in.u8 + (r0 + t * MR) * in.lda, in.lda / 4, nullptr, nullptr, b, rows, n, cs, as, e,
                          row0, j0);
        else
          tile_avxvnni_mr(0, G, at, 0, nullptr, nullptr, b, rows, n, cs, as, e, row0, j0);
        continue;
      }
      if (few) {
        tile_avx2_bytes(G, at, b, rows, n, as, e, row0, j0);
        continue;
      }
      if (kind == AVX2) {
        tile_avx2_mr(win, G, win ? nullptr : s.q16.data() + t * MR * G * 4, G * 4,
                     win ? s.rows16.data() + t * MR : nullptr, s.offs.data(), s.b16.data(), rows, n, cs, as, e, row0,
                     j0);
        continue;
      }
#endif
      tile_generic(G, at, b, rows, n, cs, as, e, row0, j0);
    }
  }
  if (Q > 1) {
    const int64_t j0 = p0 * QNR, j1 = std::min(N, p1 * QNR);
#if LAMINA_QX86
    if (kind == VNNI) return pool_block_avx512(pe.out_f, N, m, Q, j0, j1, e_out.out_f, e_out.ldo, r0 / Q);
    if (kind != GENERIC) return pool_block_avx2(pe.out_f, N, m, Q, j0, j1, e_out.out_f, e_out.ldo, r0 / Q);
#endif
    pool_block_generic(pe.out_f, N, m, Q, j0, j1, e_out.out_f, e_out.ldo, r0 / Q);
  }
}

void run(const Input& in, int64_t M, int64_t K, int64_t N, const int8_t* packed, const int32_t* colsum,
         const Epilogue& e, bool parallel) {
  if (M <= 0 || N <= 0) return;
  quant::check_inner(K);
  const int kind = active_kind();
  // pooled rows come in groups of Q: a block holds whole groups
  const int64_t Q = in.img ? in.img->PH * in.img->PW : 1, B = std::max<int64_t>(MB / Q, 1) * Q;
  const int64_t row_blocks = (M + B - 1) / B, P = panels(N);
  const double work = double(M) * double(N) * double(K);
  const int T = parallel && !omp_in_parallel() && work >= double(1 << 20) ? num_threads() : 1;
  // enough row blocks for every thread: split rows only; else also split the panels
  const int64_t pchunks = row_blocks >= 2 * T ? 1 : std::min<int64_t>(P, (2 * T + row_blocks - 1) / row_blocks);
  const int64_t items = row_blocks * pchunks;
  if (T <= 1 || items <= 1) {
    for (int64_t rb = 0; rb < row_blocks; ++rb)
      run_item(kind, in, rb * B, std::min(M, (rb + 1) * B), K, N, 0, P, packed, colsum, e);
    return;
  }
  std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1) num_threads(T)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t rb = it / pchunks, pc = it % pchunks;
    const int64_t p0 = P * pc / pchunks, p1 = P * (pc + 1) / pchunks;
    try {
      if (p0 < p1) run_item(kind, in, rb * B, std::min(M, (rb + 1) * B), K, N, p0, p1, packed, colsum, e);
    } catch (...) {
      failed = true;
    }
  }
  if (failed) throw std::bad_alloc();
}

}  // namespace

// The layout is csrc/quant_checks.h's, shared with the CUDA module.
static_assert(QNR == quant::kPanel, "qgemm: the packed panels are quant::kPanel columns wide");
int64_t packed_bytes(int64_t K, int64_t N) { return quant::packed_bytes(K, N); }

void pack(const int8_t* qw, int64_t K, int64_t N, int8_t* packed, int32_t* colsum) {
  const int64_t G = groups(K), P = panels(N);
  std::memset(packed, 0, size_t(packed_bytes(K, N)));
  for (int64_t j = 0; j < N; ++j) colsum[j] = 0;
  for (int64_t k = 0; k < K; ++k) {
    const int8_t* row = qw + k * N;
    for (int64_t j = 0; j < N; ++j) {
      const int64_t p = j / QNR, c = j % QNR;
      packed[((p * G) + k / 4) * QNR * 4 + c * 4 + k % 4] = row[j];
      colsum[j] += row[j];
    }
  }
  (void)P;
}

void matmul(const float* a, int64_t lda, int64_t M, int64_t K, int64_t N, const int8_t* packed,
            const int32_t* colsum, const float* w_scale, const float* bias, float* out, int64_t ldo, bool parallel,
            bool relu) {
  Epilogue e;
  e.w_scale = w_scale;
  e.bias = bias;
  if (relu) e.lo = 0.f;
  e.out_f = out;
  e.ldo = ldo;
  matmul_epi(a, lda, M, K, N, packed, colsum, e, parallel);
}

void matmul_epi(const float* a, int64_t lda, int64_t M, int64_t K, int64_t N, const int8_t* packed,
                const int32_t* colsum, const Epilogue& e, bool parallel) {
  Input in;
  in.f = a;
  in.lda = lda;
  run(in, M, K, N, packed, colsum, e, parallel);
}

namespace {
// Each image quantized with one abs-max scale (Keras's formula over the whole image) into a padded
// layout: image n's row h at q + ((n * Hp + pt + h) * Wp + pl) * C as q + 128, 128 (a zero after
// the shift) around it (pb rows below, pr columns to the right). With q16, the same image in 16 bits
// there instead (the AVX2 tiles' operands), and q is not written.
void quantize_images_padded(int kind, const float* x, int64_t images, const ImageRows& g, int64_t pb, int64_t pr,
                            uint8_t* q, uint16_t* q16, float* scale, bool parallel) {
  const int64_t per_image = g.H * g.W * g.C, row = g.W * g.C, prow = g.Wp * g.C;
  parallel_for(images, parallel && images > 1 && images * per_image > (1 << 16), [&](int64_t n) {
    uint8_t* img = q16 ? nullptr : q + n * g.Hp * prow;
    uint16_t* img16 = q16 ? q16 + n * g.Hp * prow : nullptr;
    const float* src = x + n * per_image;
    if (img16) {
      std::fill(img16, img16 + g.pt * prow, uint16_t(128));
      std::fill(img16 + (g.pt + g.H) * prow, img16 + (g.pt + g.H + pb) * prow, uint16_t(128));
    } else {
      std::memset(img, 128, size_t(g.pt * prow));
      std::memset(img + (g.pt + g.H) * prow, 128, size_t(pb * prow));
    }
    // the image quantized whole into scratch (the vector forms write whole 4-byte groups), then
    // copied row by row
    Scratch& s = t_scratch;
    s.row.resize(size_t(per_image + 64));
    uint8_t* qi = s.row.data();
#if LAMINA_QX86
    if (kind == VNNI) scale[n] = quantize_row_avx512_tile(src, per_image, qi, 4);
    else if (kind == AVX2 || kind == AVXVNNI) scale[n] = quantize_row_avx2_tile(src, per_image, qi, 4);
    else
#endif
      scale[n] = quantize_row_generic(src, per_image, qi);
    for (int64_t h = 0; h < g.H; ++h) {
#if LAMINA_QX86
      if (img16) {
        uint16_t* d = img16 + (g.pt + h) * prow;
        std::fill(d, d + g.pl * g.C, uint16_t(128));
        widen_u8(qi + h * row, row, d + g.pl * g.C);
        std::fill(d + (g.pl + g.W) * g.C, d + (g.pl + g.W + pr) * g.C, uint16_t(128));
        continue;
      }
#endif
      uint8_t* d = img + (g.pt + h) * prow;
      std::memset(d, 128, size_t(g.pl * g.C));
      std::memcpy(d + g.pl * g.C, qi + h * row, size_t(row));
      std::memset(d + (g.pl + g.W) * g.C, 128, size_t(pr * g.C));
    }
  });
}
}  // namespace

void conv_windows(const float* x, int64_t images, const ImageRows& geometry, int64_t K, int64_t N,
                  const int8_t* packed, const int32_t* colsum, const Epilogue& e, bool parallel) {
  ImageRows g = geometry;
  LAMINA_CHECK(K == g.KH * g.KW * g.C, "qconv2d: the windows' geometry does not match the kernel's size");
  LAMINA_CHECK(g.PH >= 1 && g.PW >= 1 && (g.PH * g.PW == 1 || (e.out_f && !e.out_u8)),
               "qconv2d: a pooled convolution writes float32");
  const int64_t M = images * (g.OH / g.PH) * (g.OW / g.PW) * g.PH * g.PW;
  if (M <= 0 || N <= 0) return;
  // the images quantized once, padded so that every window lies inside: no bounds checks per window
  const int64_t Hp = std::max(g.H + g.pt, (g.OH - 1) * g.sh + (g.KH - 1) * g.dh + 1);
  const int64_t Wp = std::max(g.W + g.pl, (g.OW - 1) * g.sw + (g.KW - 1) * g.dw + 1);
  g.Hp = Hp, g.Wp = Wp;
  std::vector<float> scales(static_cast<size_t>(images));
  const int kind = active_kind();
  const bool in_place = kind != GENERIC && g.C % 4 == 0 && g.dw == 1;
  // the AVX2 tiles read their windows in place in 16 bits: the image quantized straight to them
  const bool wide = LAMINA_QX86 && in_place && kind == AVX2;
  const size_t size = size_t(images * Hp * Wp * g.C);
  std::unique_ptr<uint8_t[]> q(wide ? nullptr : new uint8_t[size]);
  std::unique_ptr<uint16_t[]> q16(wide ? new uint16_t[size] : nullptr);
  quantize_images_padded(kind, x, images, g, Hp - g.H - g.pt, Wp - g.W - g.pl, q.get(), q16.get(), scales.data(),
                         parallel);
  g.x = q.get();
  g.x16 = q16.get();
  g.scale = scales.data();
  if (!in_place) {
    // windows copied from the padded image (an image of Hp x Wp with no padding) by window_block
    g.H = Hp, g.W = Wp, g.pt = g.pl = 0;
    g.Hp = g.Wp = 0;
  }  // else each window read in place by the tiles
  Input in;
  in.img = &g;
  run(in, M, K, N, packed, colsum, e, parallel);
}

void matmul_u8(const uint8_t* a, int64_t lda, float a_step, int64_t M, int64_t K, int64_t N, const int8_t* packed,
               const Epilogue& e, bool parallel) {
  Input in;
  in.u8 = a;
  in.lda = lda;
  in.u8_scale = 1.f / a_step;
  run(in, M, K, N, packed, nullptr, e, parallel);
}

void bn_affine(const float* mean, const float* var, const float* gamma, const float* beta, double eps, int64_t C,
               float* A, float* D) {
  for (int64_t c = 0; c < C; ++c) {
    const double a = (gamma ? gamma[c] : 1.0) / std::sqrt(double(var[c]) + eps);
    A[c] = float(a);
    D[c] = float((beta ? beta[c] : 0.0) - double(mean[c]) * a);
  }
}

void poison_images(float* out, int64_t images, int64_t per_image, const int32_t* flags) {
  for (int64_t n = 0; n < images; ++n)
    if (flags[n]) std::fill(out + n * per_image, out + (n + 1) * per_image, std::nanf(""));
}

std::string kernel_name() {
  const int k = active_kind();
  return k == VNNI ? "vnni" : k == AVXVNNI ? "avxvnni" : k == AVX2 ? "avx2" : "generic";
}

void set_kernel(const std::string& name) {
  LAMINA_CHECK(name == "vnni" || name == "avxvnni" || name == "avx2" || name == "generic",
               "set_qgemm_kernel: expected 'vnni', 'avxvnni', 'avx2' or 'generic', received '" << name << "'");
  const std::string available = std::string(cpu_has_vnni() ? "'vnni', " : "") +
                                (cpu_has_avxvnni() ? "'avxvnni', " : "") + (cpu_has_avx2() ? "'avx2', " : "") +
                                "'generic'";
  LAMINA_CHECK(name != "vnni" || cpu_has_vnni(), "set_qgemm_kernel: this CPU lacks AVX-512 VNNI; available: "
                                                     << available);
  LAMINA_CHECK(name != "avxvnni" || cpu_has_avxvnni(), "set_qgemm_kernel: this CPU lacks AVX-VNNI; available: "
                                                           << available);
  LAMINA_CHECK(name != "avx2" || cpu_has_avx2(), "set_qgemm_kernel: this CPU lacks AVX2; available: " << available);
  g_kind.store(name == "vnni" ? VNNI : name == "avxvnni" ? AVXVNNI : name == "avx2" ? AVX2 : GENERIC,
               std::memory_order_release);
}

}  // namespace qgemm
}  // namespace lamina
