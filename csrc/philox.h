// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): the one
// definition both device modules draw from (csrc/cpu/random.cpp, csrc/cuda/random.cu), so a seed
// gives the same words on every device. A draw is keyed by (seed, counter): the 64-bit seed is the
// key, the 64-bit counter (one per call) fills counter words 2-3, and words 0-1 hold the index of a
// block of four outputs (plus a retry number, for truncated_normal).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PHILOX_HD __host__ __device__ __forceinline__
#else
#define PHILOX_HD inline
#endif

namespace lamina {
namespace philox {

struct Block {
  uint32_t v[4];
};

// the high 32 bits of a * b
PHILOX_HD uint32_t mulhi(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return uint32_t((uint64_t(a) * b) >> 32);
#endif
}

PHILOX_HD Block philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    const uint32_t hi0 = mulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = mulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Block{{c0, c1, c2, c3}};
}

// One generator call: key = seed, counter words 2-3 = the call's counter.
struct Stream {
  uint32_t k0, k1, c2, c3;
  PHILOX_HD Stream(uint64_t seed, uint64_t counter)
      : k0(uint32_t(seed)), k1(uint32_t(seed >> 32)), c2(uint32_t(counter)), c3(uint32_t(counter >> 32)) {}
  // Block `b` (< 2^40) of retry `attempt` (< 2^24).
  PHILOX_HD Block block(uint64_t b, uint32_t attempt = 0) const {
    return philox4x32_10(uint32_t(b), uint32_t(b >> 32) | (attempt << 8), c2, c3, k0, k1);
  }
};

}  // namespace philox
}  // namespace lamina
