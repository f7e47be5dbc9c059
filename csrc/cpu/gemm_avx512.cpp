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
                           float alpha, float beta, int n) {
  __m512 acc[M][NV];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m512 b0 = _mm512_load_ps(b), b1 = NV > 1 ? _mm512_load_ps(b + 16) : b0;
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      if (NV > 1) acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += MR;
    b += NR;
  }
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

using UkernelFn = void (*)(int64_t, const float*, const float*, float*, int64_t, float, float, int);

template <int M>
constexpr UkernelFn pick(int nv) { return nv == 1 ? &ukernel<M, 1> : &ukernel<M, 2>; }

LAMINA_AVX512 void macro(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c,
                         int64_t ldc, float alpha, float beta) {
  static const UkernelFn edge[MR + 1][2] = {
      {nullptr, nullptr},         {pick<1>(1), pick<1>(2)},   {pick<2>(1), pick<2>(2)},
      {pick<3>(1), pick<3>(2)},   {pick<4>(1), pick<4>(2)},   {pick<5>(1), pick<5>(2)},
      {pick<6>(1), pick<6>(2)},   {pick<7>(1), pick<7>(2)},   {pick<8>(1), pick<8>(2)},
      {pick<9>(1), pick<9>(2)},   {pick<10>(1), pick<10>(2)}, {pick<11>(1), pick<11>(2)},
      {pick<12>(1), pick<12>(2)}};
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int n = int(std::min<int64_t>(NR, nc - jr));
    const float* b = bp + jr * kc;
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int m = int(std::min<int64_t>(MR, mc - ir));
      const float* a = ap + ir * kc;
      float* ct = c + ir * ldc + jr;
      if (m == MR && n == NR) ukernel<MR, 2>(kc, a, b, ct, ldc, alpha, beta, n);
      else edge[m][n > 16](kc, a, b, ct, ldc, alpha, beta, n);
    }
  }
}

}  // namespace

const Kernel* avx512_kernel() {
  static const Kernel k{"avx512", MR, NR, 256, 192, 4096, &pack_a_avx2, &pack_b_avx2, &macro};
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
