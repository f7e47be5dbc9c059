// AVX2 pieces shared by the int8 kernels of qgemm.cpp and quantize.cpp.
#pragma once
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include <cstdint>

namespace lamina {
namespace qavx2 {

// The last steps of qgemm.h's epilogue on 8 outputs: v clamped to [lo, hi] (NaN kept), then
// stored as 8 floats at out_f or, when out_u8 is given, as 8 bytes round_half_even(v * out_mul)
// saturated to 0..255 (NaN as 0). Returns whether a byte lane was NaN (the caller marks its image).
// max / min return their second operand where either is NaN (and where both are zeros): with v
// second, NaN stays NaN and -0 stays -0, as a compare-and-blend clamp. A NaN or out-of-range lane
// converts to INT_MIN, and the unsigned saturating packs take every negative lane to 0.
__attribute__((target("avx2,fma"), always_inline)) inline bool store8_clamped(__m256 v, float lo, float hi,
                                                                                float out_mul, float* out_f,
                                                                                uint8_t* out_u8) {
  v = _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), v));
  if (!out_u8) {
    _mm256_storeu_ps(out_f, v);
    return false;
  }
  const __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(v, _mm256_set1_ps(out_mul)));
  const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out_u8), _mm_packus_epi16(w16, w16));
  return _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0;
}

}  // namespace qavx2
}  // namespace lamina
#endif
