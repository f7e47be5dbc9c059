// AVX-512 part of the GEMM: a 12 x 32 micro-kernel (24 zmm accumulators, 2 zmm of B, A broadcast
// from the packed sliver), edges by masked loads/stores. Packing uses the AVX2 routines.
// Compiled per function through target attributes; the driver calls in only when the CPU has
// AVX-512F (and AVX2/FMA, which every AVX-512 CPU has).
#include "gemm_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <algorithm>

#define LAMINA_AVX512 __attribute__((target("avx512f,avx2,fma")))

namespace lamina {
namespace gemm {
namespace {

constexpr int MR = 12, NR = 32;

// C[0:M, 0:n] = alpha * sum_k A[k][0:M] B[k][0:n] + beta * C. NV = zmm columns used (n <= 16*NV).
template <int M, int NV>
LAMINA_AVX512 void ukernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc,
                           float alpha, float beta, int n, PrefetchWalker& pw) {
  __m512 acc[M][NV];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    if (NV > 1) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 31), _MM_HINT_T0);
  }
#define LAMINA_K_STEP                                                     \
  {                                                                       \
    __m512 b0 = _mm512_load_ps(b), b1 = NV > 1 ? _mm512_load_ps(b + 16) : b0; \
    _Pragma("GCC unroll 16") for (int i = 0; i < M; ++i) {                \
      __m512 ai = _mm512_set1_ps(a[i]);                                   \
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);                     \
      if (NV > 1) acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);         \
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
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __mmask16 m0 = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
  const __mmask16 m1 = n >= 32 ? __mmask16(0xFFFF) : n > 16 ? __mmask16((1u << (n - 16)) - 1) : __mmask16(0);
  if (beta == 0.f) {
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      float* ci = c + i * ldc;
      _mm512_mask_storeu_ps(ci, m0, _mm512_mul_ps(acc[i][0], va));
      if (NV > 1) _mm512_mask_storeu_ps(ci + 16, m1, _mm512_mul_ps(acc[i][1], va));
    }
  } else {
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      float* ci = c + i * ldc;
      _mm512_mask_storeu_ps(ci, m0, _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), _mm512_mul_ps(acc[i][0], va)));
      if (NV > 1)
        _mm512_mask_storeu_ps(ci + 16, m1,
                              _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), _mm512_mul_ps(acc[i][1], va)));
    }
  }
}

using UkernelFn = void (*)(int64_t, const float*, const float*, float*, int64_t, float, float, int, PrefetchWalker&);

template <int M>
constexpr UkernelFn pick(int nv) { return nv == 1 ? &ukernel<M, 1> : &ukernel<M, 2>; }

LAMINA_AVX512 void macro(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c,
                         int64_t ldc, float alpha, float beta, const Prefetch* pf) {
  static const UkernelFn edge[MR + 1][2] = {
      {nullptr, nullptr},         {pick<1>(1), pick<1>(2)},   {pick<2>(1), pick<2>(2)},
      {pick<3>(1), pick<3>(2)},   {pick<4>(1), pick<4>(2)},   {pick<5>(1), pick<5>(2)},
      {pick<6>(1), pick<6>(2)},   {pick<7>(1), pick<7>(2)},   {pick<8>(1), pick<8>(2)},
      {pick<9>(1), pick<9>(2)},   {pick<10>(1), pick<10>(2)}, {pick<11>(1), pick<11>(2)},
      {pick<12>(1), pick<12>(2)}};
  PrefetchWalker prefetch(pf, ((mc + MR - 1) / MR) * ((nc + NR - 1) / NR) * (kc / 4));
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int n = int(std::min<int64_t>(NR, nc - jr));
    const float* b = bp + jr * kc;
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int m = int(std::min<int64_t>(MR, mc - ir));
      const float* a = ap + ir * kc;
      float* ct = c + ir * ldc + jr;
      if (m == MR && n == NR) ukernel<MR, 2>(kc, a, b, ct, ldc, alpha, beta, n, prefetch);
      else edge[m][n > 16](kc, a, b, ct, ldc, alpha, beta, n, prefetch);
    }
  }
}

LAMINA_AVX512 inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
}

// y[0:n] = sum_p x[p] r[p*ld + 0:n] for n <= 16 * NV: NV vectors of y, U partial sums over p
// (the rows p = u mod U) so that narrow outputs (a classifier's 10 columns) are not one chain
// of dependent multiply-adds.
template <int NV, int U>
LAMINA_AVX512 void axpy_block(int64_t kk, int64_t n, const float* x, const float* r, int64_t ld, float* y) {
  __mmask16 m[NV];
  __m512 acc[U][NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) m[v] = tail_mask(n - 16 * v);
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[u][v] = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + U <= kk; p += U) {
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) {
      const float* rp = r + (p + u) * ld;
      const __m512 xp = _mm512_set1_ps(x[p + u]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[u][v] = _mm512_fmadd_ps(xp, _mm512_maskz_loadu_ps(m[v], rp + 16 * v), acc[u][v]);
    }
  }
  for (; p < kk; ++p) {
    const __m512 xp = _mm512_set1_ps(x[p]);
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[0][v] = _mm512_fmadd_ps(xp, _mm512_maskz_loadu_ps(m[v], r + p * ld + 16 * v), acc[0][v]);
  }
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    __m512 s = acc[0][v];
#pragma GCC unroll 8
    for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[u][v]);
    _mm512_mask_storeu_ps(y + 16 * v, m[v], s);
  }
}

// y[j] = sum_p x[p] r[p*ld + j]: up to 128 columns of y in registers while streaming down the rows.
LAMINA_AVX512 void axpy_rows(int64_t kk, int64_t n, const float* x, const float* r, int64_t ld, float* y) {
  for (int64_t j = 0; j < n; j += 128) {
    const int64_t cols = std::min<int64_t>(128, n - j);
    const float* rj = r + j;
    switch ((cols + 15) / 16) {
      case 1: axpy_block<1, 8>(kk, cols, x, rj, ld, y + j); break;
      case 2: axpy_block<2, 4>(kk, cols, x, rj, ld, y + j); break;
      case 3: axpy_block<3, 2>(kk, cols, x, rj, ld, y + j); break;
      case 4: axpy_block<4, 2>(kk, cols, x, rj, ld, y + j); break;
      case 5: axpy_block<5, 1>(kk, cols, x, rj, ld, y + j); break;
      case 6: axpy_block<6, 1>(kk, cols, x, rj, ld, y + j); break;
      case 7: axpy_block<7, 1>(kk, cols, x, rj, ld, y + j); break;
      default: axpy_block<8, 1>(kk, cols, x, rj, ld, y + j); break;
    }
  }
}

// Sum of the 16 lanes (through memory: GCC 12's _mm512_reduce_add_ps, shuffle and cast
// intrinsics trip -Wmaybe-uninitialized).
LAMINA_AVX512 inline float hsum(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  __m256 h = _mm256_add_ps(_mm256_load_ps(t), _mm256_load_ps(t + 8));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// y[j] = sum_p r[j*ld + p] x[p]: four rows at a time, two accumulators each.
LAMINA_AVX512 void dot_rows(int64_t n, int64_t kk, const float* r, int64_t ld, const float* x, float* y) {
  for (int64_t j = 0; j < n; j += 4) {
    const int rows = int(std::min<int64_t>(4, n - j));
    const float* rp[4];
    for (int i = 0; i < 4; ++i) rp[i] = r + (j + std::min(i, rows - 1)) * ld;
    __m512 acc[4][2];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kk; p += 32) {
      const __mmask16 m0 = tail_mask(kk - p), m1 = tail_mask(kk - p - 16);
      const __m512 x0 = _mm512_maskz_loadu_ps(m0, x + p), x1 = _mm512_maskz_loadu_ps(m1, x + p + 16);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        acc[i][0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, rp[i] + p), x0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, rp[i] + p + 16), x1, acc[i][1]);
      }
    }
    for (int i = 0; i < rows; ++i) y[j + i] = hsum(_mm512_add_ps(acc[i][0], acc[i][1]));
  }
}

}  // namespace

const Kernel* avx512_kernel() {
  static const Kernel k{"avx512", MR, NR, 256, 192, 4096, &pack_a_avx2, &pack_b_avx2, &macro, &axpy_rows, &dot_rows};
  return &k;
}

}  // namespace gemm
}  // namespace lamina

#else  // not x86-64: no AVX-512 kernel

namespace lamina {
namespace gemm {
const Kernel* avx512_kernel() { return nullptr; }
}  // namespace gemm
}  // namespace lamina
#endif
