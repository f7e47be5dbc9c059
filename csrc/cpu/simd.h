// SIMD variants chosen at run time, shared by the kernel files. The module is compiled for the
// baseline x86-64; hot loops are also compiled for AVX2 and AVX-512 (with target attributes, or
// target_clones for GCC's load-time dispatch), so one build runs on any x86-64 CPU.
#pragma once
#include <cstdint>

#define LAMINA_INLINE inline __attribute__((always_inline))
#define LAMINA_LAMBDA __attribute__((always_inline))

#if defined(__x86_64__) && defined(__GNUC__)
#define LAMINA_X86 1
#define LAMINA_TARGET_AVX2 __attribute__((target("avx2,fma,bmi,bmi2,f16c")))
#define LAMINA_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,bmi,bmi2,f16c")))
#define LAMINA_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
#else
#define LAMINA_X86 0
#define LAMINA_CLONES
#endif

namespace lamina {
// The variant the explicit-dispatch kernels use: 0 generic, 1 AVX2, 2 AVX-512. Defaults to the
// best the CPU has; LAMINA_SIMD=generic|avx2|avx512 or _cpu.set_simd_isa() forces one
// (elementwise.cpp).
int simd_level();
// bfloat16 <-> float32 over n contiguous elements, as f32_to_bf16 / bf16_to_f32 (types.h) do one,
// vectorized and split across threads above kParallelGrain (memory.cpp).
void bf16_round_n(const float* s, uint16_t* d, int64_t n);
void bf16_widen_n(const uint16_t* s, float* d, int64_t n);
// The same on the calling thread (a row or a block of a kernel that has its own threads).
void bf16_round_row(const float* s, uint16_t* d, int64_t n);
void bf16_widen_row(const uint16_t* s, float* d, int64_t n);
}  // namespace lamina
