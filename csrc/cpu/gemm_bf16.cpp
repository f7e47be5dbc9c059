// bfloat16 GEMM with float32 accumulation, for mixed precision (matmul on bfloat16 operands):
//   C[M,N] = op(A)[M,K] @ op(B)[K,N] (+ C when accumulate), A and B bfloat16, C float32.
//
// On CPUs with AVX512-BF16 the micro-kernel is VDPBF16PS: each instruction multiplies 16 pairs of
// bfloat16 values and adds both products of a pair to a float32 lane, twice the multiply-adds of
// a float32 FMA. (Like every AVX512-BF16 instruction it treats denormal inputs as zero and flushes
// denormal results; products are exact in float32, sums round to nearest even.) Elsewhere the
// operands are widened to float32 and multiplied by sgemm: the same products, float32 sums.
//
// Structure as gemm.cpp's (BLIS): for each NC x KC block of op(B), packed into slivers of NR
// columns, and each MC x KC block of op(A), packed into slivers of MR rows, the MR x NR register
// tiles run over the block. Packed K comes in pairs: B sliver s holds, for each pair p, the 2*NR
// values B(2p, j), B(2p+1, j) interleaved by column j; A sliver s holds, for each pair p, one
// 32-bit word (A(i, 2p), A(i, 2p+1)) per row i. Past the edges (rows, columns, an odd K) zeros.
#include <immintrin.h>
#include <omp.h>
#if defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "common.h"
#include "gemm.h"
#include "gemm_bf16.h"

namespace lamina {
namespace {

constexpr int MR = 12, NR = 32;
constexpr int64_t KC = 1024, MC = 96, NC = 768;  // KC in elements (512 pairs); measured on Zen 5 (1 MB L2)

bool cpu_has_bf16() {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

std::atomic<int> g_use_bf16{-1};  // -1: the CPU decides; 0 / 1: set_bf16_gemm

// op(X)(r, k) of a bfloat16 matrix with row stride ld: trans ? x[k*ld + r] : x[r*ld + k].
inline uint16_t at(const uint16_t* x, bool trans, int64_t ld, int64_t r, int64_t k) {
  return trans ? x[k * ld + r] : x[r * ld + k];
}

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define LAMINA_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#endif

#ifdef LAMINA_BF16_TARGET
// 16 rows of 16 32-bit words transposed in registers: r[q] lane j = the old r[j] lane q.
LAMINA_BF16_TARGET inline void transpose16(__m512i* r) {
  __m512i t[16], u[16];
  for (int j = 0; j < 16; j += 2) {
    t[j] = _mm512_unpacklo_epi32(r[j], r[j + 1]);
    t[j + 1] = _mm512_unpackhi_epi32(r[j], r[j + 1]);
  }
  for (int j = 0; j < 16; j += 4) {  // u[j + m], 128-bit lane L: rows j..j+3 of column 4L + m
    u[j] = _mm512_unpacklo_epi64(t[j], t[j + 2]);
    u[j + 1] = _mm512_unpackhi_epi64(t[j], t[j + 2]);
    u[j + 2] = _mm512_unpacklo_epi64(t[j + 1], t[j + 3]);
    u[j + 3] = _mm512_unpackhi_epi64(t[j + 1], t[j + 3]);
  }
  for (int m = 0; m < 4; ++m) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x44), v1 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xEE);
    const __m512i v2 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x44);
    const __m512i v3 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xEE);
    r[m] = _mm512_shuffle_i32x4(v0, v2, 0x88);
    r[4 + m] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
    r[8 + m] = _mm512_shuffle_i32x4(v1, v3, 0x88);
    r[12 + m] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
  }
}

// w[q] lane i = pair p0 + q (elements 2 (p0 + q) and + 1 of the row, zeros past kc) of row i of
// src (rows ld apart), for rows i < rows (zeros above), q < 16: one 16 x 16 transpose of 32-bit
// words. Returns how many of the 16 pairs lie inside the kp = ceil(kc / 2) pairs.
LAMINA_BF16_TARGET inline int64_t transposed_pairs(const uint16_t* src, int64_t ld, int64_t rows, int64_t kc,
                                                   int64_t p0, __m512i* w) {
  const int64_t ne = std::min<int64_t>(32, kc - 2 * p0);
  const __mmask32 m = ne >= 32 ? ~__mmask32(0) : (__mmask32(1) << ne) - 1;
  for (int i = 0; i < 16; ++i)
    w[i] = i < rows ? _mm512_maskz_loadu_epi16(m, src + i * ld + 2 * p0) : _mm512_setzero_si512();
  transpose16(w);
  return std::min<int64_t>(16, (kc + 1) / 2 - p0);
}

// pack_a for op(A) = A (a row's pairs adjacent): 16 pairs of the sliver's rows at a time, one
// 16 x 16 transpose of 32-bit words (rows past the sliver's read as zeros), 12 words stored a pair.
LAMINA_BF16_TARGET void pack_a_rows(const uint16_t* a, int64_t lda, int64_t mc, int64_t kc, uint32_t* dst) {
  const int64_t kp = (kc + 1) / 2;
  for (int64_t s = 0; s < mc; s += MR, dst += kp * MR) {
    const int64_t rows = std::min<int64_t>(MR, mc - s);
    for (int64_t p0 = 0; p0 < kp; p0 += 16) {
      __m512i w[16];
      const int64_t np = transposed_pairs(a + s * lda, lda, rows, kc, p0, w);
      for (int64_t q = 0; q < np; ++q) _mm512_mask_storeu_epi32(dst + (p0 + q) * MR, __mmask16(0x0FFF), w[q]);
    }
  }
}

// pack_a for op(A) = A^T stored (op(A)(i, k) = a[k * lda + i]): rows k0 and k0 + 1 of a, the
// sliver's 12 values of each, interleaved by one permute.
LAMINA_BF16_TARGET void pack_a_cols(const uint16_t* a, int64_t lda, int64_t mc, int64_t kc, uint32_t* dst) {
  const int64_t kp = (kc + 1) / 2;
  alignas(64) uint16_t idx[32];
  for (int j = 0; j < 16; ++j) idx[2 * j] = uint16_t(j), idx[2 * j + 1] = uint16_t(32 + j);
  const __m512i il = _mm512_load_si512(idx);
  for (int64_t s = 0; s < mc; s += MR, dst += kp * MR) {
    const int64_t rows = std::min<int64_t>(MR, mc - s);
    const __mmask32 m = (__mmask32(1) << rows) - 1;
    for (int64_t p = 0; p < kp; ++p) {
      const uint16_t* r0 = a + 2 * p * lda + s;
      const __m512i x0 = _mm512_maskz_loadu_epi16(m, r0);
      const __m512i x1 = 2 * p + 1 < kc ? _mm512_maskz_loadu_epi16(m, r0 + lda) : _mm512_setzero_si512();
      _mm512_mask_storeu_epi32(dst + p * MR, __mmask16(0x0FFF), _mm512_permutex2var_epi16(x0, il, x1));
    }
  }
}

// pack_b for op(B) = B (rows of B along j), 8 pairs (16 rows) at a time: those rows read in one
// run each across every sliver (sliver by sliver down all of K, each step was a whole row ahead:
// a new page every step for wide operands), each sliver's 8 pairs written in one 1 KB run (pair by
// pair across the slivers, the writes went to as many streams 64 KB apart, one cache set), 32
// columns interleaved by two permutes.
LAMINA_BF16_TARGET void pack_b_rows(const uint16_t* b, int64_t ldb, int64_t kc, int64_t nc, uint16_t* dst) {
  const int64_t kp = (kc + 1) / 2;
  // (r0[j], r1[j]) for j = 0..15, then for j = 16..31 (indices from 32 read the second operand)
  alignas(64) uint16_t lo[32], hi[32];
  for (int j = 0; j < 16; ++j) {
    lo[2 * j] = uint16_t(j), lo[2 * j + 1] = uint16_t(32 + j);
    hi[2 * j] = uint16_t(16 + j), hi[2 * j + 1] = uint16_t(48 + j);
  }
  const __m512i ilo = _mm512_load_si512(lo), ihi = _mm512_load_si512(hi);
  constexpr int64_t PB = 8;  // pairs per sliver visit: 1 KB written in one run
  for (int64_t p0 = 0; p0 < kp; p0 += PB) {
    const int64_t p1 = std::min(kp, p0 + PB);
    uint16_t* d = dst + p0 * 2 * NR;
    for (int64_t s = 0; s < nc; s += NR, d += kp * 2 * NR) {
      const int64_t cols = std::min<int64_t>(NR, nc - s);
      const __mmask32 m = cols >= 32 ? ~__mmask32(0) : (__mmask32(1) << cols) - 1;
      uint16_t* dp = d;
      for (int64_t p = p0; p < p1; ++p, dp += 2 * NR) {
        const uint16_t* r0 = b + 2 * p * ldb + s;
        const __m512i x0 = _mm512_maskz_loadu_epi16(m, r0);
        const __m512i x1 = 2 * p + 1 < kc ? _mm512_maskz_loadu_epi16(m, r0 + ldb) : _mm512_setzero_si512();
        _mm512_storeu_si512(dp, _mm512_permutex2var_epi16(x0, ilo, x1));
        _mm512_storeu_si512(dp + NR, _mm512_permutex2var_epi16(x0, ihi, x1));
      }
    }
  }
}

// pack_b for op(B) = B^T stored (b's row j holds column j of op(B), its pairs adjacent): 16
// columns x 16 pairs at a time, one transpose of 32-bit words (columns past the block as zeros).
LAMINA_BF16_TARGET void pack_b_cols(const uint16_t* b, int64_t ldb, int64_t kc, int64_t nc, uint16_t* dst) {
  const int64_t kp = (kc + 1) / 2;
  for (int64_t s = 0; s < nc; s += NR, dst += kp * 2 * NR)
    for (int64_t h = 0; h < 2; ++h) {
      const int64_t j0 = s + 16 * h, cols = std::max<int64_t>(0, std::min<int64_t>(16, nc - j0));
      for (int64_t p0 = 0; p0 < kp; p0 += 16) {
        __m512i w[16];
        const int64_t np = transposed_pairs(b + j0 * ldb, ldb, cols, kc, p0, w);
        for (int64_t q = 0; q < np; ++q) _mm512_storeu_si512(dst + (p0 + q) * 2 * NR + 16 * h * 2, w[q]);
      }
    }
}

// A block [0:mc, 0:kc] into slivers of MR rows, (pairs) x MR words each.
void pack_a(bool ta, const uint16_t* a, int64_t lda, int64_t mc, int64_t kc, uint32_t* dst) {
  return ta ? pack_a_cols(a, lda, mc, kc, dst) : pack_a_rows(a, lda, mc, kc, dst);
}

// B block [0:kc, 0:nc] into slivers of NR columns, (pairs) x 2*NR halves each.
void pack_b(bool tb, const uint16_t* b, int64_t ldb, int64_t kc, int64_t nc, uint16_t* dst) {
  return tb ? pack_b_cols(b, ldb, kc, nc, dst) : pack_b_rows(b, ldb, kc, nc, dst);
}
#else  // no VDPBF16PS path to pack for: bf16_path() is 0 (operands widened, then sgemm)
void pack_a(bool, const uint16_t*, int64_t, int64_t, int64_t, uint32_t*) {}
void pack_b(bool, const uint16_t*, int64_t, int64_t, int64_t, uint16_t*) {}
#endif

// How the last K block of a product with a bfloat16 output is stored: the float32 sum (plus the
// partial sums of earlier K blocks, plus the output's own values when accumulating, plus the bias)
// rounded once into the output.
struct Final {
  uint16_t* d = nullptr;             // the tile's bfloat16 output
  int64_t ldd = 0;
  bool add_c = false;                // add the float32 partial sums in c (earlier K blocks)
  bool add_d = false;                // add the output's bfloat16 values (accumulate)
  const float* bias_f = nullptr;     // the tile's columns of a float32 bias, or
  const uint16_t* bias_b = nullptr;  // of a bfloat16 one
};

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
// GCC 12 warns, wrongly, about the undefined vectors inside the AVX-512 conversion intrinsics
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
LAMINA_BF16_TARGET inline __m512 load_bf16(__mmask16 m, const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
// Rounds 16 floats to bfloat16 as f32_to_bf16 does (nearest even; NaN stays a quiet NaN; denormals
// kept, unlike VCVTNEPS2BF16's) and stores the lanes of m.
LAMINA_BF16_TARGET inline void store_bf16(__mmask16 m, uint16_t* p, __m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(r));
}

// The MR x NR tile of a (kp pairs x MR words) @ b (kp pairs x 2 NR halves), rows 0:mr, columns
// 0:nr: added to (acc) or written over the float32 c, or, with fin, finished into bfloat16.
LAMINA_BF16_TARGET void micro(int64_t kp, const uint32_t* a, const uint16_t* b, float* c, int64_t ldc, int mr, int nr,
                              bool acc, const Final* fin) {
  __m512 c0[MR], c1[MR];
  for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 32);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(int(a[i]));
      c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
      c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
    }
    a += MR;
    b += 2 * NR;
  }
  const __mmask16 m0 = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? __mmask16(0xFFFF) : nr > 16 ? __mmask16((1u << (nr - 16)) - 1) : __mmask16(0);
  if (fin) {
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    if (fin->bias_f) {
      bias0 = _mm512_maskz_loadu_ps(m0, fin->bias_f);
      bias1 = _mm512_maskz_loadu_ps(m1, fin->bias_f + 16);
    } else if (fin->bias_b) {
      bias0 = load_bf16(m0, fin->bias_b);
      bias1 = load_bf16(m1, fin->bias_b + 16);
    }
    for (int i = 0; i < mr; ++i) {
      uint16_t* di = fin->d + i * fin->ldd;
      __m512 v0 = c0[i], v1 = c1[i];
      if (fin->add_c) {
        const float* ci = c + i * ldc;
        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, ci));
        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, ci + 16));
      }
      if (fin->add_d) {
        v0 = _mm512_add_ps(v0, load_bf16(m0, di));
        v1 = _mm512_add_ps(v1, load_bf16(m1, di + 16));
      }
      store_bf16(m0, di, _mm512_add_ps(v0, bias0));
      store_bf16(m1, di + 16, _mm512_add_ps(v1, bias1));
    }
    return;
  }
  for (int i = 0; i < mr; ++i) {
    float* ci = c + i * ldc;
    __m512 v0 = c0[i], v1 = c1[i];
    if (acc) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, ci));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, ci + 16));
    }
    _mm512_mask_storeu_ps(ci, m0, v0);
    _mm512_mask_storeu_ps(ci + 16, m1, v1);
  }
}
#pragma GCC diagnostic pop
#else
void micro(int64_t, const uint32_t*, const uint16_t*, float*, int64_t, int, int, bool, const Final*) {}
#endif

// ---- AMX (Intel's tile unit): TDPBF16PS -------------------------------------------------------------
// On CPUs with AMX-BF16 (Sapphire Rapids and later) one TDPBF16PS multiplies a 16 x 32 bfloat16 tile
// of A by a 32 x 16 tile of B (16 rows of column pairs) into a 16 x 16 float32 tile: 16 times the
// multiply-adds of a VDPBF16PS. Same numerics as VDPBF16PS (products exact, float32 sums rounded to
// nearest even, denormal inputs read as zero, denormal results flushed), summed in another order.
//
// Packing: op(A) blocks into strips of 16 rows, each strip a run of 16 x 32 chunks (row-major, 64
// bytes a row); op(B) blocks into strips of 16 columns, each a run of 16 x 16 x 2 chunks (row p of
// a chunk: (B(2p, j), B(2p + 1, j)) for its 16 columns j). Rows, columns and K past the edges are
// zeros, padded to 32 rows / 32 columns / 32 deep. The micro-kernel keeps a 32 x 32 block of C in
// four tiles (tmm0-3) and streams two A tiles (tmm4-5) and two B tiles (tmm6-7) per 32 of K.
constexpr int64_t AKC = 512, AMC = 128, ANC = 1024;  // multiples of 32: a B strip pair (32 KB) stays in L1

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && defined(__linux__)
#define LAMINA_AMX 1
#define LAMINA_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))

// AMX-TILE, AMX-BF16 (and AVX512-BF16, for the rest of the path) on the CPU, and the kernel's
// permission to use the tile data (Linux asks each process to request it once).
bool cpu_has_amx() {
  if (!cpu_has_bf16()) return false;
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  if (!(d & (1u << 24)) || !(d & (1u << 22))) return false;  // AMX-TILE, AMX-BF16
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

LAMINA_AMX_TARGET void amx_begin() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  // GCC sees no read of cfg's later bytes in LDTILECFG's operand and drops the stores above: a
  // compiler barrier keeps them (else every tile is left unconfigured and the first tile
  // instruction faults).
  __asm__ __volatile__("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}
LAMINA_AMX_TARGET void amx_end() { _tile_release(); }

// r[0:16] (16 x 16 32-bit words) transposed in place.

// op(A)[0:mc, 0:kc] -> strips of 16 rows (mc rounded up to 32), kq = ceil(kc / 32) chunks each.
LAMINA_AMX_TARGET void amx_pack_a(bool ta, const uint16_t* a, int64_t lda, int64_t mc, int64_t kc, uint16_t* dst) {
  const int64_t kq = (kc + 31) / 32, strips = (mc + 31) / 32 * 2;
  for (int64_t s = 0; s < strips; ++s)
    for (int64_t q = 0; q < kq; ++q) {
      uint16_t* d = dst + (s * kq + q) * 512;
      const int64_t k0 = q * 32, kw = std::min<int64_t>(32, kc - k0);
      if (ta) {  // op(A)(i, k) = a[k * lda + i]: words (k, k + 1) of the 16 rows, one register per pair, transposed
        const int64_t i0 = s * 16, rows = std::max<int64_t>(0, std::min<int64_t>(16, mc - i0));
        const __mmask16 m = rows >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rows) - 1);
        __m512i w[16];
        for (int p = 0; p < 16; ++p) {
          const int64_t k = 2 * p;
          const __m512i lo = k < kw ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, a + (k0 + k) * lda + i0))
                                    : _mm512_setzero_si512();
          const __m512i hi = k + 1 < kw
                                 ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, a + (k0 + k + 1) * lda + i0))
                                 : _mm512_setzero_si512();
          w[p] = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
        }
        transpose16(w);
        for (int i = 0; i < 16; ++i) _mm512_storeu_si512(d + i * 32, w[i]);
        continue;
      }
      for (int64_t i = 0; i < 16; ++i) {
        const int64_t r = s * 16 + i;
        uint16_t* di = d + i * 32;
        if (r >= mc) {
          std::memset(di, 0, 64);
        } else {
          const __mmask32 m = kw >= 32 ? ~__mmask32(0) : (__mmask32(1) << kw) - 1;
          _mm512_storeu_si512(di, _mm512_maskz_loadu_epi16(m, a + r * lda + k0));
        }
      }
    }
}

// op(B)[0:kc, 0:nc] -> strips of 16 columns (nc rounded up to 32), kq chunks of 16 pair rows each.
LAMINA_AMX_TARGET void amx_pack_b(bool tb, const uint16_t* b, int64_t ldb, int64_t kc, int64_t nc, uint16_t* dst) {
  const int64_t kq = (kc + 31) / 32, strips = (nc + 31) / 32 * 2;
  if (tb) {  // op(B)(k, j) = b[j * ldb + k]: a column's 32 k are 16 words; 16 columns transposed
    for (int64_t s = 0; s < strips; ++s)
      for (int64_t q = 0; q < kq; ++q) {
        uint16_t* d = dst + (s * kq + q) * 512;
        const int64_t j0 = s * 16, cols = std::max<int64_t>(0, std::min<int64_t>(16, nc - j0));
        const int64_t k0 = q * 32, kw = std::min<int64_t>(32, kc - k0);
        const __mmask32 mk = kw >= 32 ? ~__mmask32(0) : (__mmask32(1) << kw) - 1;
        __m512i w[16];
        for (int64_t j = 0; j < 16; ++j)
          w[j] = j < cols ? _mm512_maskz_loadu_epi16(mk, b + (j0 + j) * ldb + k0) : _mm512_setzero_si512();
        transpose16(w);
        for (int p = 0; p < 16; ++p) _mm512_storeu_si512(d + p * 32, w[p]);
      }
    return;
  }
  // rows k and k + 1 of 32 columns interleaved into the pair rows of two strips
  alignas(64) uint16_t lo_idx[32], hi_idx[32];
  for (int j = 0; j < 16; ++j) {
    lo_idx[2 * j] = uint16_t(j), lo_idx[2 * j + 1] = uint16_t(32 + j);
    hi_idx[2 * j] = uint16_t(16 + j), hi_idx[2 * j + 1] = uint16_t(48 + j);
  }
  const __m512i il = _mm512_load_si512(lo_idx), ih = _mm512_load_si512(hi_idx);
  for (int64_t s = 0; s < strips; s += 2)
    for (int64_t q = 0; q < kq; ++q) {
      uint16_t* d0 = dst + (s * kq + q) * 512;
      uint16_t* d1 = d0 + kq * 512;
      const int64_t j0 = s * 16, cols = std::max<int64_t>(0, std::min<int64_t>(32, nc - j0));
      const __mmask32 m = cols >= 32 ? ~__mmask32(0) : (__mmask32(1) << cols) - 1;
      for (int64_t p = 0; p < 16; ++p) {
        const int64_t k = q * 32 + 2 * p;
        __m512i r0 = _mm512_setzero_si512(), r1 = _mm512_setzero_si512();
        if (k < kc) r0 = _mm512_maskz_loadu_epi16(m, b + k * ldb + j0);
        if (k + 1 < kc) r1 = _mm512_maskz_loadu_epi16(m, b + (k + 1) * ldb + j0);
        _mm512_storeu_si512(d0 + p * 32, _mm512_permutex2var_epi16(r0, il, r1));
        _mm512_storeu_si512(d1 + p * 32, _mm512_permutex2var_epi16(r0, ih, r1));
      }
    }
}

// A 32 x 32 block of C from kq chunks of two A strips (a0, a1) and two B strips (b0, b1): started
// from the float32 values at cin (row stride ldin floats), or from zero where cin is null; written
// to c (row stride ldc).
LAMINA_AMX_TARGET void amx_block(int64_t kq, const uint16_t* a0, const uint16_t* a1, const uint16_t* b0,
                                 const uint16_t* b1, const float* cin, int64_t ldin, float* c, int64_t ldc) {
  const int64_t st = ldc * int64_t(sizeof(float)), sti = ldin * int64_t(sizeof(float));
  if (cin) {
    _tile_loadd(0, cin, sti);
    _tile_loadd(1, cin + 16, sti);
    _tile_loadd(2, cin + 16 * ldin, sti);
    _tile_loadd(3, cin + 16 * ldin + 16, sti);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int64_t q = 0; q < kq; ++q) {
    _tile_loadd(4, a0 + q * 512, 64);
    _tile_loadd(6, b0 + q * 512, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, b1 + q * 512, 64);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, a1 + q * 512, 64);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, st);
  _tile_stored(1, c + 16, st);
  _tile_stored(2, c + 16 * ldc, st);
  _tile_stored(3, c + 16 * ldc + 16, st);
}

// The rows x cols corner of a finished float32 block (tmp, 32 floats a row) into bfloat16, as
// micro()'s Final: plus the output's own values (add_d) and the bias, rounded once. (The partial
// sums of earlier K blocks are already in tmp.)
LAMINA_AMX_TARGET void amx_finish(const float* tmp, int rows, int cols, const Final& fin) {
  const __mmask16 m0 = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? __mmask16(0xFFFF) : cols > 16 ? __mmask16((1u << (cols - 16)) - 1) : __mmask16(0);
  __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
  if (fin.bias_f) {
    bias0 = _mm512_maskz_loadu_ps(m0, fin.bias_f);
    bias1 = _mm512_maskz_loadu_ps(m1, fin.bias_f + 16);
  } else if (fin.bias_b) {
    bias0 = load_bf16(m0, fin.bias_b);
    bias1 = load_bf16(m1, fin.bias_b + 16);
  }
  for (int i = 0; i < rows; ++i) {
    uint16_t* di = fin.d + i * fin.ldd;
    __m512 v0 = _mm512_load_ps(tmp + i * 32), v1 = _mm512_load_ps(tmp + i * 32 + 16);
    if (fin.add_d) {
      v0 = _mm512_add_ps(v0, load_bf16(m0, di));
      v1 = _mm512_add_ps(v1, load_bf16(m1, di + 16));
    }
    store_bf16(m0, di, _mm512_add_ps(v0, bias0));
    store_bf16(m1, di + 16, _mm512_add_ps(v1, bias1));
  }
}

// C's rows x cols corner into tmp (32 floats a row), zeros past it.
LAMINA_AMX_TARGET void amx_edge_in(const float* c, int64_t ldc, int rows, int cols, float* tmp) {
  const __mmask16 m0 = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? __mmask16(0xFFFF) : cols > 16 ? __mmask16((1u << (cols - 16)) - 1) : __mmask16(0);
  for (int i = 0; i < 32; ++i) {
    const bool in = i < rows;
    _mm512_store_ps(tmp + i * 32, in ? _mm512_maskz_loadu_ps(m0, c + i * ldc) : _mm512_setzero_ps());
    _mm512_store_ps(tmp + i * 32 + 16, in ? _mm512_maskz_loadu_ps(m1, c + i * ldc + 16) : _mm512_setzero_ps());
  }
}

// tmp's rows x cols corner (32 floats a row) into C.
void amx_edge_out(const float* tmp, int rows, int cols, float* c, int64_t ldc) {
  for (int i = 0; i < rows; ++i) std::memcpy(c + i * ldc, tmp + i * 32, size_t(cols) * sizeof(float));
}

struct AmxPacks {
  std::vector<uint16_t> a, b;
};
thread_local AmxPacks t_amx;

// serial()'s contract on AMX: one thread's C[0:M, 0:N] (=|+=) op(A) @ op(B), or with `out` the
// product finished into bfloat16 (C then holds the partial sums of the AKC-deep K blocks before
// the last; null when K <= AKC).
void amx_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
                const uint16_t* B, int64_t ldb, bool accumulate, float* C, int64_t ldc, const BF16Output* out) {
  AmxPacks& pk = t_amx;
  const int64_t kqb = (std::min(AKC, K) + 31) / 32;
  pk.a.resize(size_t((std::min(AMC, M) + 31) / 32 * 32 * kqb * 32));
  pk.b.resize(size_t((std::min(ANC, N) + 31) / 32 * 32 * kqb * 32));
  alignas(64) float tmp[32 * 32];
  amx_begin();
  for (int64_t jc = 0; jc < N; jc += ANC) {
    const int64_t nc = std::min(ANC, N - jc);
    for (int64_t pc = 0; pc < K; pc += AKC) {
      const int64_t kc = std::min(AKC, K - pc), kq = (kc + 31) / 32;
      amx_pack_b(tb, tb ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, kc, nc, pk.b.data());
      const bool last = pc + AKC >= K, fin = out && last;
      const bool acc = pc > 0 || (accumulate && !out);
      for (int64_t ic = 0; ic < M; ic += AMC) {
        const int64_t mc = std::min(AMC, M - ic);
        amx_pack_a(ta, ta ? A + pc * lda + ic : A + ic * lda + pc, lda, mc, kc, pk.a.data());
        for (int64_t jr = 0; jr < nc; jr += 32) {
          const uint16_t* b0 = pk.b.data() + (jr / 16) * kq * 512;
          const int cols = int(std::min<int64_t>(32, nc - jr));
          for (int64_t ir = 0; ir < mc; ir += 32) {
            const uint16_t* a0 = pk.a.data() + (ir / 16) * kq * 512;
            const int rows = int(std::min<int64_t>(32, mc - ir));
            const int64_t row = ic + ir, col = jc + jr;
            float* c = C ? C + row * ldc + col : nullptr;
            const bool full = rows == 32 && cols == 32;
            if (full && !fin) {
              amx_block(kq, a0, a0 + kq * 512, b0, b0 + kq * 512, acc ? c : nullptr, ldc, c, ldc);
              continue;
            }
            if (acc && !full) amx_edge_in(c, ldc, rows, cols, tmp);  // zeros past the edges
            // the block into tmp: from C's values (or partial sums), read in place when whole
            amx_block(kq, a0, a0 + kq * 512, b0, b0 + kq * 512, !acc ? nullptr : full ? c : tmp, full ? ldc : 32,
                      tmp, 32);
            if (fin) {
              Final f;
              f.d = out->d + row * out->ldd + col;
              f.ldd = out->ldd;
              f.add_d = accumulate;
              f.bias_f = out->bias_f ? out->bias_f + col : nullptr;
              f.bias_b = out->bias_b ? out->bias_b + col : nullptr;
              amx_finish(tmp, rows, cols, f);
            } else {
              amx_edge_out(tmp, rows, cols, c, ldc);
            }
          }
        }
      }
    }
  }
  amx_end();
}

// BF16PackedB::gemm on AMX: C[0:M, 0:N] (=|+=) A[0:M, 0:K] @ op(B), op(B) packed whole by amx_pack_b
// (one block, kq = ceil(K / 32) chunks a strip), on the calling thread.
void amx_rows(int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda, const uint16_t* bp, bool accumulate,
              float* C, int64_t ldc) {
  AmxPacks& pk = t_amx;
  const int64_t kq = (K + 31) / 32;
  pk.a.resize(size_t((std::min(AMC, M) + 31) / 32 * 32 * kq * 32));
  alignas(64) float tmp[32 * 32];
  amx_begin();
  for (int64_t ic = 0; ic < M; ic += AMC) {
    const int64_t mc = std::min(AMC, M - ic);
    amx_pack_a(false, A + ic * lda, lda, mc, K, pk.a.data());
    for (int64_t jr = 0; jr < N; jr += 32) {
      const uint16_t* b0 = bp + (jr / 16) * kq * 512;
      const int cols = int(std::min<int64_t>(32, N - jr));
      for (int64_t ir = 0; ir < mc; ir += 32) {
        const uint16_t* a0 = pk.a.data() + (ir / 16) * kq * 512;
        const int rows = int(std::min<int64_t>(32, mc - ir));
        float* c = C + (ic + ir) * ldc + jr;
        if (rows == 32 && cols == 32) {
          amx_block(kq, a0, a0 + kq * 512, b0, b0 + kq * 512, accumulate ? c : nullptr, ldc, c, ldc);
          continue;
        }
        if (accumulate) amx_edge_in(c, ldc, rows, cols, tmp);
        amx_block(kq, a0, a0 + kq * 512, b0, b0 + kq * 512, accumulate ? tmp : nullptr, 32, tmp, 32);
        amx_edge_out(tmp, rows, cols, c, ldc);
      }
    }
  }
  amx_end();
}
#else
bool cpu_has_amx() { return false; }
void amx_pack_b(bool, const uint16_t*, int64_t, int64_t, int64_t, uint16_t*) {}
void amx_rows(int64_t, int64_t, int64_t, const uint16_t*, int64_t, const uint16_t*, bool, float*, int64_t) {}
void amx_serial(bool, bool, int64_t, int64_t, int64_t, const uint16_t*, int64_t, const uint16_t*, int64_t, bool,
                float*, int64_t, const BF16Output*) {}
#endif

// std::allocator on 64-byte boundaries: each packed B sliver (a multiple of 64 bytes) starts on a
// cache line, so the micro-kernel's and the packing's 64-byte vectors never straddle two lines.
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U>
  bool operator==(const Aligned64<U>&) const { return true; }
  template <class U>
  bool operator!=(const Aligned64<U>&) const { return false; }
};

struct Packs {
  std::vector<uint32_t, Aligned64<uint32_t>> a;
  std::vector<uint16_t, Aligned64<uint16_t>> b;
  std::vector<float> wide;  // BF16PackedB without AVX512-BF16: A's rows in float32
};
thread_local Packs t_packs;

// One thread's part: C[0:M, 0:N] (=|+=) op(A) @ op(B); or, with `out` (its d and bias at row 0 and
// column 0 of this part), the product finished into bfloat16 (C then holds the partial sums of
// the K blocks before the last; null when K fits one block).
void serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda, const uint16_t* B,
            int64_t ldb, bool accumulate, float* C, int64_t ldc, const BF16Output* out) {
  Packs& pk = t_packs;
  // K in equal blocks of at most KC, even (K = 3136: 4 x 784, not 3 x 1024 + 64)
  const int64_t kblocks = (K + KC - 1) / KC, KB = ((K + kblocks - 1) / kblocks + 1) / 2 * 2;
  const int64_t kcb = std::min(KB, K), kpb = (kcb + 1) / 2;
  // up to 2 MC rows in one block: each packed B sliver then serves every row (as 96 + 32 rows, a
  // B block larger than L2 came from L3 again for the second)
  const int64_t MB = M <= 2 * MC ? (M + MR - 1) / MR * MR : MC;
  pk.a.resize(size_t(((std::min(MB, M) + MR - 1) / MR) * MR * kpb));
  pk.b.resize(size_t(((std::min(NC, N) + NR - 1) / NR) * NR * 2 * kpb));
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    for (int64_t pc = 0; pc < K; pc += KB) {
      const int64_t kc = std::min(KB, K - pc), kp = (kc + 1) / 2;
      pack_b(tb, tb ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, kc, nc, pk.b.data());
      const bool last = pc + KB >= K;
      const bool acc = pc > 0 || (accumulate && !out);
      for (int64_t ic = 0; ic < M; ic += MB) {
        const int64_t mc = std::min(MB, M - ic);
        pack_a(ta, ta ? A + pc * lda + ic : A + ic * lda + pc, lda, mc, kc, pk.a.data());
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const uint16_t* bs = pk.b.data() + (jr / NR) * kp * 2 * NR;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const uint32_t* as = pk.a.data() + (ir / MR) * kp * MR;
            const int64_t row = ic + ir, col = jc + jr;
            Final fin;
            if (out && last) {
              fin.d = out->d + row * out->ldd + col;
              fin.ldd = out->ldd;
              fin.add_c = pc > 0;
              fin.add_d = accumulate;
              fin.bias_f = out->bias_f ? out->bias_f + col : nullptr;
              fin.bias_b = out->bias_b ? out->bias_b + col : nullptr;
            }
            micro(kp, as, bs, C ? C + row * ldc + col : nullptr, ldc, int(std::min<int64_t>(MR, mc - ir)),
                  int(std::min<int64_t>(NR, nc - jr)), acc, out && last ? &fin : nullptr);
          }
        }
      }
    }
  }
}

// Without AVX512-BF16: op(A) and op(B) widened to float32, then sgemm.
void widened(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda, const uint16_t* B,
             int64_t ldb, bool accumulate, float* C, int64_t ldc) {
  std::vector<float> a(size_t(M * K)), b(size_t(K * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) a[size_t(i * K + k)] = bf16_to_f32(at(A, ta, lda, i, k));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < N; ++j) b[size_t(k * N + j)] = bf16_to_f32(at(B, !tb, ldb, j, k));
  sgemm(false, false, M, N, K, 1.f, a.data(), K, b.data(), N, accumulate ? 1.f : 0.f, C, ldc);
}

}  // namespace

namespace {
// 0: widened to float32, 1: AVX512-BF16, 2: AMX (see set_bf16_gemm)
int bf16_path() {
  const int v = g_use_bf16.load(std::memory_order_relaxed);
  static const bool has = cpu_has_bf16();
  static const bool amx = has && cpu_has_amx();
  if (v == 0 || !has) return 0;
  if (v == 1) return 1;
  return amx ? 2 : 1;
}
}  // namespace

BF16PackedB::BF16PackedB(bool tb, const uint16_t* b, int64_t ldb, int64_t K, int64_t N)
    : K_(std::max<int64_t>(K, 0)), N_(std::max<int64_t>(N, 0)), path_(bf16_path()), native_(path_ > 0) {
  if (K_ == 0 || N_ == 0) return;
  if (path_ == 2) {  // AMX: op(B) whole, in strips of 16 columns (amx_pack_b)
    const int64_t total = (N_ + 31) / 32 * 32 * ((K_ + 31) / 32 * 32);
    buf_ = host_alloc(size_t(total) * sizeof(uint16_t), &cap_);
    amx_pack_b(tb, b, ldb, K_, N_, static_cast<uint16_t*>(buf_));
    return;
  }
  if (!native_) {
    buf_ = host_alloc(size_t(K_ * N_) * sizeof(float), &cap_);
    float* w = static_cast<float*>(buf_);
    for (int64_t k = 0; k < K_; ++k)
      for (int64_t j = 0; j < N_; ++j) w[k * N_ + j] = bf16_to_f32(at(b, !tb, ldb, j, k));
    return;
  }
  // blocks in the order gemm() walks them: NC columns, then KC rows (as serial())
  struct Job { int64_t jc, pc, dst; };
  std::vector<Job> jobs;
  int64_t total = 0;
  for (int64_t jc = 0; jc < N_; jc += NC)
    for (int64_t pc = 0; pc < K_; pc += KC) {
      const int64_t kc = std::min(KC, K_ - pc), nc = std::min(NC, N_ - jc);
      offs_.push_back(total);
      jobs.push_back({jc, pc, total});
      total += ((nc + NR - 1) / NR) * NR * 2 * ((kc + 1) / 2);
    }
  buf_ = host_alloc(size_t(total) * sizeof(uint16_t), &cap_);
  uint16_t* dst = static_cast<uint16_t*>(buf_);
  const int64_t n = int64_t(jobs.size());
#pragma omp parallel for if (total > kParallelGrain && n > 1 && !omp_in_parallel()) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const Job& j = jobs[size_t(i)];
    pack_b(tb, tb ? b + j.jc * ldb + j.pc : b + j.pc * ldb + j.jc, ldb, std::min(KC, K_ - j.pc),
           std::min(NC, N_ - j.jc), dst + j.dst);
  }
}

BF16PackedB::~BF16PackedB() {
  if (buf_) host_free(buf_, cap_);
}

void BF16PackedB::gemm(int64_t M, const uint16_t* A, int64_t lda, bool accumulate, float* C, int64_t ldc) const {
  if (M <= 0 || N_ <= 0) return;
  if (K_ <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N_, 0.f);
    return;
  }
  if (path_ == 2) return amx_rows(M, N_, K_, A, lda, static_cast<const uint16_t*>(buf_), accumulate, C, ldc);
  Packs& pk = t_packs;
  if (!native_) {  // A's rows widened, then sgemm (single-threaded inside a parallel region)
    std::vector<float>& a = pk.wide;
    a.resize(size_t(M * K_));
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < K_; ++k) a[size_t(i * K_ + k)] = bf16_to_f32(A[i * lda + k]);
    sgemm(false, false, M, N_, K_, 1.f, a.data(), K_, static_cast<const float*>(buf_), N_, accumulate ? 1.f : 0.f,
          C, ldc);
    return;
  }
  const int64_t kpb = (std::min(KC, K_) + 1) / 2;
  pk.a.resize(size_t(((std::min(MC, M) + MR - 1) / MR) * MR * kpb));
  const uint16_t* packed = static_cast<const uint16_t*>(buf_);
  size_t bi = 0;
  for (int64_t jc = 0; jc < N_; jc += NC) {
    const int64_t nc = std::min(NC, N_ - jc);
    for (int64_t pc = 0; pc < K_; pc += KC) {
      const int64_t kc = std::min(KC, K_ - pc), kp = (kc + 1) / 2;
      const uint16_t* bp = packed + offs_[bi++];
      const bool acc = pc > 0 || accumulate;
      for (int64_t ic = 0; ic < M; ic += MC) {
        const int64_t mc = std::min(MC, M - ic);
        pack_a(false, A + ic * lda + pc, lda, mc, kc, pk.a.data());
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const uint16_t* bs = bp + (jr / NR) * kp * 2 * NR;
          for (int64_t ir = 0; ir < mc; ir += MR)
            micro(kp, pk.a.data() + (ir / MR) * kp * MR, bs, C + (ic + ir) * ldc + jc + jr, ldc,
                  int(std::min<int64_t>(MR, mc - ir)), int(std::min<int64_t>(NR, nc - jr)), acc, nullptr);
        }
      }
    }
  }
}


bool bf16_gemm_native() { return bf16_path() > 0; }

const char* bf16_gemm_path() {
  static const char* const names[] = {"widened", "avx512bf16", "amx"};
  return names[bf16_path()];
}

void set_bf16_gemm(int mode) {
  g_use_bf16.store(mode < 0 || mode > 2 ? -1 : mode, std::memory_order_relaxed);
}

void bf16gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda, const uint16_t* B,
              int64_t ldb, bool accumulate, float* C, int64_t ldc) {
  bf16gemm_out(ta, tb, M, N, K, A, lda, B, ldb, accumulate, C, ldc, nullptr);
}

void bf16gemm_out(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda,
                  const uint16_t* B, int64_t ldb, bool accumulate, float* C, int64_t ldc, const BF16Output* out) {
  if (M <= 0 || N <= 0) return;
  const int path = bf16_path();
  const bool fused = out && K > 0 && path > 0;  // finished into bfloat16 by the micro-kernel
  std::unique_ptr<float[]> own;  // float32 sums the caller has no room for
  if (out && !fused) {           // float32 sums, then the bias and one rounding here
    own.reset(new float[size_t(M * N)]);
    if (accumulate)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) own[size_t(i * N + j)] = bf16_to_f32(out->d[i * out->ldd + j]);
    bf16gemm_out(ta, tb, M, N, K, A, lda, B, ldb, accumulate, own.get(), N, nullptr);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        float v = own[size_t(i * N + j)];
        if (out->bias_f) v += out->bias_f[j];
        else if (out->bias_b) v += bf16_to_f32(out->bias_b[j]);
        out->d[i * out->ldd + j] = f32_to_bf16(v);
      }
    return;
  }
  // the partial sums of the K blocks before the last (from the caching allocator: a fresh block
  // of 16 MB for 2048 x 2048 page-faulted in on every call)
  const bool partial = fused && K > (path == 2 ? AKC : KC) && !C;
  Scratch sums(partial ? M * N : 0);
  if (partial) {
    C = sums.p;
    ldc = N;
  }
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.f);
    return;
  }
  if (path == 0) return widened(ta, tb, M, N, K, A, lda, B, ldb, accumulate, C, ldc);
  const auto run = path == 2 ? amx_serial : serial;
  const double fma = double(M) * double(N) * double(K);
  const int T = omp_in_parallel() || fma < double(1 << 18) * (path == 2 ? 4 : 1) ? 1 : num_threads();
  if (T <= 1) return run(ta, tb, M, N, K, A, lda, B, ldb, accumulate, C, ldc, out);
  // Items: T slices of whole register tiles (AMX: 32 x 32 blocks) along the longer side of C.
  const int64_t mr = path == 2 ? 32 : MR, nr = path == 2 ? 32 : NR;
  const bool by_rows = (M + mr - 1) / mr >= (N + nr - 1) / nr;
  const int64_t tiles = by_rows ? (M + mr - 1) / mr : (N + nr - 1) / nr, step = by_rows ? mr : nr;
  const int items = int(std::min<int64_t>(T, tiles));
  std::atomic<bool> failed{false};
#pragma omp parallel for num_threads(items) schedule(static)
  for (int t = 0; t < items; ++t) {
    const int64_t lo = tiles * t / items * step, hi = std::min(by_rows ? M : N, tiles * (t + 1) / items * step);
    if (lo >= hi) continue;
    try {
      BF16Output part;
      if (out) {
        part = *out;
        if (by_rows) {
          part.d = out->d + lo * out->ldd;
        } else {
          part.d = out->d + lo;
          if (out->bias_f) part.bias_f = out->bias_f + lo;
          if (out->bias_b) part.bias_b = out->bias_b + lo;
        }
      }
      const BF16Output* po = out ? &part : nullptr;
      if (by_rows)
        run(ta, tb, hi - lo, N, K, ta ? A + lo : A + lo * lda, lda, B, ldb, accumulate,
               C ? C + lo * ldc : nullptr, ldc, po);
      else
        run(ta, tb, M, hi - lo, K, A, lda, tb ? B + lo * ldb : B + lo, ldb, accumulate, C ? C + lo : nullptr,
               ldc, po);
    } catch (...) {
      failed = true;
    }
  }
  if (failed) throw std::bad_alloc();
}

}  // namespace lamina
