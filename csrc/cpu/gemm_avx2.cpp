// AVX2 + FMA part of the GEMM: the packing routines (also used by the AVX-512 kernel) and a
// 6 x 16 micro-kernel (12 ymm accumulators, 2 ymm of B, 1 broadcast of A).
// Every function here is compiled for AVX2/FMA through a target attribute, the rest of the
// module stays at the baseline ISA; the driver calls in only when the CPU has AVX2 and FMA.
#include "gemm_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <algorithm>

#define LAMINA_AVX2 __attribute__((target("avx2,fma")))

namespace lamina {
namespace gemm {
namespace {

// Lanes [0, n) set (n in 0..8).
LAMINA_AVX2 inline __m256i lane_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// In place: r[i] holds row i of an 8 x 8 block; afterwards r[j] holds column j.
LAMINA_AVX2 inline void transpose8(__m256 r[8]) {
  __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Stores the first cw (1..8) lanes of v at p.
LAMINA_AVX2 inline void store_lanes(float* p, __m256 v, int cw) {
  if (cw == 8) _mm256_storeu_ps(p, v);
  else _mm256_maskstore_ps(p, lane_mask(cw), v);
}

// dst[s][k][u] = src[k*ld + s*w + u] for s*w + u < nu, else 0: rows of the source run along k,
// the packed index u is contiguous in the source (A transposed, B as stored).
LAMINA_AVX2 void pack_copy(const float* src, int64_t ld, int64_t nu, int64_t kc, int w, float* dst) {
  int64_t u0 = 0;
  // Whole slivers row by row: each source row is read in one contiguous run (the slivers' strips
  // in turn), which the hardware prefetchers follow, and each sliver's packed rows are written in
  // order. Sliver by sliver, every step of k jumped a whole row ahead (a new page each time for
  // wide operands): measured on Zen 4, 2 threads, 128 x 3136 x 1024 ~140 -> ~165 GFLOP/s and
  // A^T B at 3136 x 128 x 1024 ~155 -> ~180.
  if (w % 4 == 0 && nu >= 2 * w) {
    const int64_t full = nu / w;
    for (int64_t k = 0; k < kc; ++k) {
      const float* s = src + k * ld;
      float* d = dst + k * w;
      for (int64_t q = 0; q < full; ++q, s += w, d += kc * w) {
        int c = 0;
        for (; c + 8 <= w; c += 8) _mm256_storeu_ps(d + c, _mm256_loadu_ps(s + c));
        if (c < w) _mm_storeu_ps(d + c, _mm_loadu_ps(s + c));
      }
    }
    u0 = full * w;
    dst += full * kc * w;
  }
  for (; u0 < nu; u0 += w, dst += kc * w) {
    const int valid = int(std::min<int64_t>(w, nu - u0));
    const float* s = src + u0;
    if (valid == w && w % 8 == 0) {
      for (int64_t k = 0; k < kc; ++k, s += ld) {
        float* d = dst + k * w;
        for (int c = 0; c < w; c += 8) _mm256_storeu_ps(d + c, _mm256_loadu_ps(s + c));
      }
      continue;
    }
    for (int64_t k = 0; k < kc; ++k, s += ld) {
      float* d = dst + k * w;
      for (int c = 0; c < w; c += 8) {
        const int cw = std::min(8, w - c), vw = std::max(0, std::min(cw, valid - c));
        __m256 v = vw == 8 ? _mm256_loadu_ps(s + c)
                 : vw > 0  ? _mm256_maskload_ps(s + c, lane_mask(vw)) : _mm256_setzero_ps();
        store_lanes(d + c, v, cw);
      }
    }
  }
}

// dst[s][k][u] = src[(s*w + u)*ld + k] for s*w + u < nu, else 0: the source's rows run along the
// packed index u and are contiguous in k (A as stored, B transposed). 8 x 8 register transposes.
LAMINA_AVX2 void pack_transpose(const float* src, int64_t ld, int64_t nu, int64_t kc, int w, float* dst) {
  for (int64_t u0 = 0; u0 < nu; u0 += w, dst += kc * w) {
    const int valid = int(std::min<int64_t>(w, nu - u0));
    for (int c = 0; c < w; c += 8) {
      const int cw = std::min(8, w - c), vw = std::max(0, std::min(cw, valid - c));
      const float* rows[8];
      for (int r = 0; r < 8; ++r) rows[r] = vw > 0 ? src + (u0 + c + std::min(r, vw - 1)) * ld : src;
      float* d = dst + c;
      int64_t k = 0;
      if (vw > 0) {
        for (; k + 8 <= kc; k += 8) {
          __m256 r8[8];
          for (int r = 0; r < 8; ++r) r8[r] = r < vw ? _mm256_loadu_ps(rows[r] + k) : _mm256_setzero_ps();
          transpose8(r8);
          for (int kk = 0; kk < 8; ++kk) store_lanes(d + (k + kk) * w, r8[kk], cw);
        }
      }
      for (; k < kc; ++k)
        for (int r = 0; r < cw; ++r) d[k * w + r] = r < vw ? rows[r][k] : 0.f;
    }
  }
}

// ---- 6 x 16 micro-kernel -------------------------------------------------------------------
constexpr int MR = 6, NR = 16;

// C[0:M, 0:n] = alpha * sum_k A[k][0:M] B[k][0:n] + beta * C. NV = ymm columns used (n <= 8*NV).
template <int M, int NV>
LAMINA_AVX2 void ukernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc,
                         float alpha, float beta, int n, PrefetchWalker& pw) {
  __m256 acc[M][NV];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
#define LAMINA_K_STEP                                                     \
  {                                                                       \
    __m256 b0 = _mm256_load_ps(b), b1 = NV > 1 ? _mm256_load_ps(b + 8) : b0; \
    _Pragma("GCC unroll 16") for (int i = 0; i < M; ++i) {                \
      __m256 ai = _mm256_broadcast_ss(a + i);                             \
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);                     \
      if (NV > 1) acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);         \
    }                                                                     \
    a += MR;                                                              \
    b += NR;                                                              \
  }
  int64_t k = 0;
  for (; k + 4 <= kc; k += 4) {  // one share of the prefetches per 4 steps of k
    pw.step();
    LAMINA_K_STEP LAMINA_K_STEP LAMINA_K_STEP LAMINA_K_STEP
  }
  for (; k < kc; ++k) LAMINA_K_STEP
#undef LAMINA_K_STEP
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  if (n == 8 * NV) {
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      float* ci = c + i * ldc;
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) {
        __m256 r = _mm256_mul_ps(acc[i][v], va);
        if (beta != 0.f) r = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8 * v), r);
        _mm256_storeu_ps(ci + 8 * v, r);
      }
    }
    return;
  }
  for (int i = 0; i < M; ++i) {
    float* ci = c + i * ldc;
    for (int v = 0; v < NV; ++v) {
      const int cw = std::min(8, n - 8 * v);
      if (cw <= 0) break;
      const __m256i m = lane_mask(cw);
      __m256 r = _mm256_mul_ps(acc[i][v], va);
      if (beta != 0.f) r = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8 * v, m), r);
      _mm256_maskstore_ps(ci + 8 * v, m, r);
    }
  }
}

using UkernelFn = void (*)(int64_t, const float*, const float*, float*, int64_t, float, float, int, PrefetchWalker&);

template <int M>
constexpr UkernelFn pick(int nv) { return nv == 1 ? &ukernel<M, 1> : &ukernel<M, 2>; }

LAMINA_AVX2 void macro(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                       float alpha, float beta, const Prefetch* pf) {
  static const UkernelFn edge[MR + 1][2] = {
      {nullptr, nullptr}, {pick<1>(1), pick<1>(2)}, {pick<2>(1), pick<2>(2)}, {pick<3>(1), pick<3>(2)},
      {pick<4>(1), pick<4>(2)}, {pick<5>(1), pick<5>(2)}, {pick<6>(1), pick<6>(2)}};
  PrefetchWalker prefetch(pf, ((mc + MR - 1) / MR) * ((nc + NR - 1) / NR) * (kc / 4));
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int n = int(std::min<int64_t>(NR, nc - jr));
    const float* b = bp + jr * kc;
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int m = int(std::min<int64_t>(MR, mc - ir));
      const float* a = ap + ir * kc;
      float* ct = c + ir * ldc + jr;
      if (m == MR && n == NR) ukernel<MR, 2>(kc, a, b, ct, ldc, alpha, beta, n, prefetch);
      else edge[m][n > 8](kc, a, b, ct, ldc, alpha, beta, n, prefetch);
    }
  }
}

template <int NV, bool FULL>
LAMINA_AVX2 inline void axpy_row(__m256* acc, const __m256i* m, float xv, const float* rp) {
  const __m256 xp = _mm256_set1_ps(xv);
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v)
    acc[v] = _mm256_fmadd_ps(xp, FULL ? _mm256_loadu_ps(rp + 8 * v) : _mm256_maskload_ps(rp + 8 * v, m[v]), acc[v]);
}

// y[0:n] = sum_p x[p] r[p*ld + 0:n] for n <= 8 * NV: NV vectors of y, U partial sums over p
// (narrow outputs are not one chain of dependent multiply-adds); FULL: every vector whole.
template <int NV, int U, bool FULL>
LAMINA_AVX2 void axpy_block(int64_t kk, int64_t n, const float* x, const float* r, int64_t ld, float* y) {
  __m256i m[NV];
  __m256 acc[U][NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) m[v] = lane_mask(int(std::max<int64_t>(0, std::min<int64_t>(8, n - 8 * v))));
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[u][v] = _mm256_setzero_ps();
  int64_t p = 0;
  for (; p + U <= kk; p += U)
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) axpy_row<NV, FULL>(acc[u], m, x[p + u], r + (p + u) * ld);
  for (; p < kk; ++p) axpy_row<NV, FULL>(acc[0], m, x[p], r + p * ld);
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    __m256 s = acc[0][v];
#pragma GCC unroll 8
    for (int u = 1; u < U; ++u) s = _mm256_add_ps(s, acc[u][v]);
    if (FULL) _mm256_storeu_ps(y + 8 * v, s);
    else _mm256_maskstore_ps(y + 8 * v, m[v], s);
  }
}

// y[j] = sum_p x[p] r[p*ld + j]: up to 64 columns of y in registers while streaming down the rows.
LAMINA_AVX2 void axpy_rows(int64_t kk, int64_t n, const float* x, const float* r, int64_t ld, float* y) {
  for (int64_t j = 0; j < n; j += 64) {
    const int64_t cols = std::min<int64_t>(64, n - j);
    const float* rj = r + j;
    switch ((cols + 7) / 8) {
      case 1: axpy_block<1, 8, false>(kk, cols, x, rj, ld, y + j); break;
      case 2: axpy_block<2, 4, false>(kk, cols, x, rj, ld, y + j); break;
      case 3: axpy_block<3, 2, false>(kk, cols, x, rj, ld, y + j); break;
      case 4: axpy_block<4, 2, false>(kk, cols, x, rj, ld, y + j); break;
      case 5: axpy_block<5, 1, false>(kk, cols, x, rj, ld, y + j); break;
      case 6: axpy_block<6, 1, false>(kk, cols, x, rj, ld, y + j); break;
      case 7: axpy_block<7, 1, false>(kk, cols, x, rj, ld, y + j); break;
      default:
        if (cols == 64) axpy_block<8, 1, true>(kk, cols, x, rj, ld, y + j);
        else axpy_block<8, 1, false>(kk, cols, x, rj, ld, y + j);
        break;
    }
  }
}

LAMINA_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// y[j] = sum_p r[j*ld + p] x[p]: four rows at a time, two accumulators each.
LAMINA_AVX2 void dot_rows(int64_t n, int64_t kk, const float* r, int64_t ld, const float* x, float* y) {
  for (int64_t j = 0; j < n; j += 4) {
    const int rows = int(std::min<int64_t>(4, n - j));
    const float* rp[4];
    for (int i = 0; i < 4; ++i) rp[i] = r + (j + std::min(i, rows - 1)) * ld;
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 16 <= kk; p += 16) {
      const __m256 x0 = _mm256_loadu_ps(x + p), x1 = _mm256_loadu_ps(x + p + 8);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        acc[i][0] = _mm256_fmadd_ps(_mm256_loadu_ps(rp[i] + p), x0, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(_mm256_loadu_ps(rp[i] + p + 8), x1, acc[i][1]);
      }
    }
    for (; p < kk; p += 8) {
      const __m256i m = lane_mask(int(std::min<int64_t>(8, kk - p)));
      const __m256 x0 = _mm256_maskload_ps(x + p, m);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) acc[i][0] = _mm256_fmadd_ps(_mm256_maskload_ps(rp[i] + p, m), x0, acc[i][0]);
    }
    for (int i = 0; i < rows; ++i) y[j + i] = hsum(_mm256_add_ps(acc[i][0], acc[i][1]));
  }
}

}  // namespace

void pack_a_avx2(bool trans, const float* a, int64_t lda, int64_t mc, int64_t kc, int mr, float* dst) {
  if (trans) pack_copy(a, lda, mc, kc, mr, dst);
  else pack_transpose(a, lda, mc, kc, mr, dst);
}

void pack_b_avx2(bool trans, const float* b, int64_t ldb, int64_t kc, int64_t nc, int nr, float* dst) {
  if (trans) pack_transpose(b, ldb, nc, kc, nr, dst);
  else pack_copy(b, ldb, nc, kc, nr, dst);
}

const Kernel* avx2_kernel() {
  static const Kernel k{"avx2", MR, NR, 256, 96, 2048, &pack_a_avx2, &pack_b_avx2, &macro, &axpy_rows, &dot_rows};
  return &k;
}

}  // namespace gemm
}  // namespace lamina

#else  // not x86-64: no AVX2 kernel

namespace lamina {
namespace gemm {
const Kernel* avx2_kernel() { return nullptr; }
void pack_a_avx2(bool, const float*, int64_t, int64_t, int64_t, int, float*) {}
void pack_b_avx2(bool, const float*, int64_t, int64_t, int64_t, int, float*) {}
}  // namespace gemm
}  // namespace lamina
#endif
