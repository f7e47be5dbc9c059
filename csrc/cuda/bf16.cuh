// bfloat16 data in the CUDA kernels (mixed precision): held as uint16_t bits (the top 16 bits of a
// float32), read as float32 and written rounded once, to nearest even (types.h's bf16_to_f32 /
// f32_to_bf16, as the CPU's ld / st). Kernels templated over their storage type S (float, or
// uint16_t for bfloat16) load through wide(), compute in compute_t<S> (float for bfloat16) and store
// through narrow<S>(): on float32 data both are the identity, so the float32 code is unchanged, and
// bfloat16 data gives the float32 kernel's results on the widened values, rounded once -- the same
// bits as backend/device.py's WideningTable (float32 copies, the float32 kernel, rounded back).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "gpu.h"

namespace lamina {
namespace gpu {

template <class S> struct Compute { using type = S; };
template <> struct Compute<uint16_t> { using type = float; };
template <class S> using compute_t = typename Compute<S>::type;

// An element's value for the arithmetic: itself, or a bfloat16 element widened (exact).
template <class S>
__host__ __device__ __forceinline__ S wide(S v) { return v; }
__host__ __device__ __forceinline__ float wide(uint16_t v) { return bf16_to_f32(v); }

// A result stored as an element of S: itself, or rounded to bfloat16 (nearest, ties to even).
template <class S>
__host__ __device__ __forceinline__ S narrow(compute_t<S> v) {
  if constexpr (std::is_same<S, uint16_t>::value) return f32_to_bf16(v);
  else return v;
}

// The storage a float kernel takes a buffer in (the CPU's nn_common float_dtype): bfloat16 when it
// is one, float32 otherwise (so any other dtype fails a check with "expected ... float32").
inline DType float_dtype(const Buffer& b) { return b.dtype == BF16 ? BF16 : F32; }

// f(S()) with the storage type of float data: float, or uint16_t for bfloat16.
template <class F>
inline void with_float_type(DType dt, F&& f) {
  if (dt == BF16) f(uint16_t());
  else f(float());
}

// A float buffer of a kernel that takes float32 and bfloat16 in any mix (depthwise convolutions,
// dropout): F32Acc when every buffer of the call is float32, AnyAcc when one is bfloat16 (loads
// widened, stores rounded once, so the results are the float32 kernel's on the widened values,
// rounded once -- the bits of backend/device.py's float32 copies).
struct F32Acc {
  float* p;
  __device__ __forceinline__ float ld(int64_t i) const { return p[i]; }
  __device__ __forceinline__ void st(int64_t i, float v) const { p[i] = v; }
};
struct AnyAcc {
  void* p;
  bool bf16;
  __device__ __forceinline__ float ld(int64_t i) const {
    return bf16 ? bf16_to_f32(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
  }
  __device__ __forceinline__ void st(int64_t i, float v) const {
    if (bf16) static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
    else static_cast<float*>(p)[i] = v;
  }
};
template <class A> inline A acc_of(const Buffer& b);
template <> inline F32Acc acc_of<F32Acc>(const Buffer& b) { return F32Acc{b.data<float>()}; }
template <> inline AnyAcc acc_of<AnyAcc>(const Buffer& b) { return AnyAcc{b.ptr, b.dtype == BF16}; }

// f(F32Acc()) when none of `bufs` is bfloat16, else f(AnyAcc()).
template <class F>
inline void with_float_access(std::initializer_list<const Buffer*> bufs, F&& f) {
  for (const Buffer* b : bufs)
    if (b && b->dtype == BF16) return f(AnyAcc{});
  f(F32Acc{});
}

}  // namespace gpu
}  // namespace lamina
