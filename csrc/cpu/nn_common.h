// Helpers the nn kernel files share (nn.cpp: softmax and the losses, norm.cpp: batch and layer
// normalisation, embedding.cpp: embedding and sparse rows): integer id checks and the walk over
// the lanes of an (outer, R, inner) view.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "common.h"

namespace lamina {
namespace nn_common {

using Unit = std::integral_constant<int64_t, 1>;
constexpr int64_t kMaxBlocks = 64;

inline void require_int(const char* op, const char* arg, const Buffer& b) {
  if (b.dtype != I32 && b.dtype != I64) {
    Msg os;
    os << op << ": expected " << arg << " of dtype int32 or int64, received " << dtype_name(b.dtype);
    throw TypeError(os.str());
  }
}

// Index of the first value outside [0, hi), or -1.
template <class L>
inline int64_t first_out_of_range(const L* v, int64_t n, int64_t hi) {
  for (int64_t i = 0; i < n; ++i)
    if (v[i] < 0 || int64_t(v[i]) >= hi) return i;
  return -1;
}

inline int64_t label_at(const Buffer& b, int64_t i) {
  return b.dtype == I32 ? int64_t(b.data<int32_t>()[i]) : b.data<int64_t>()[i];
}

// Checks integer class ids / row ids lie in [0, hi) before any parallel work starts.
inline void check_range(const char* op, const char* what, const char* range_name, const Buffer& b, int64_t hi) {
  int64_t bad = b.dtype == I32 ? first_out_of_range(b.data<int32_t>(), b.numel, hi)
                               : first_out_of_range(b.data<int64_t>(), b.numel, hi);
  if (bad >= 0) {
    int64_t v = label_at(b, bad);
    LAMINA_CHECK(false, op << ": " << what << " " << v << " at flat index " << bad << " is out of range for "
                           << hi << " " << range_name << "; " << what << "s must lie in [0, " << hi << ")"
                           << (v < 0 ? " (negative values are not allowed)" : ""));
  }
}

// body(lane, base, stride) for each of the outer*inner lanes of an (outer, R, inner) view; the
// stride is a compile-time 1 when inner == 1 so contiguous rows vectorise.
template <class Body>
inline void for_each_lane(int64_t outer, int64_t R, int64_t inner, Body body) {
  const int64_t n = outer * inner;
  const bool par = n > 1 && n * std::max<int64_t>(R, 1) > kParallelGrain;
  if (inner == 1) parallel_for(n, par, [&](int64_t l) { body(l, l * R, Unit()); });
  else parallel_for(n, par, [&](int64_t l) { body(l, (l / inner) * R * inner + l % inner, inner); });
}

// The dtype a float kernel takes a buffer in: bfloat16 when it is one, float32 otherwise (so
// any other dtype fails the check with "expected ... float32").
inline DType float_dtype(const Buffer& b) { return b.dtype == BF16 ? BF16 : F32; }

// Calls f(T()) with the element type of float data: float, or uint16_t (bfloat16 bits, read and
// written through ld / st).
template <class F>
inline void with_float_type(DType dt, F&& f) {
  if (dt == BF16) f(uint16_t());
  else f(float());
}

// for_each_lane for lane code written on float32 whose buffers may be bfloat16 (softmax's: its
// SIMD sums group a lane's elements by vector position, so the code must see float32 data laid
// out as a float32 buffer would be): body(in, out, stride) with in / out arrays of float
// pointers to the lane's first element. Float32 buffers are passed as they are. A lane of
// bfloat16 buffers is copied into float32 scratch first (exact), the body writes float32
// scratch, and each output is rounded once into its buffer: the same bits as the float32 code on
// widened copies. Contiguous lanes (inner == 1) keep a float32 buffer's offset modulo 64 bytes
// in the scratch, so vector loops split them alike; strided lanes (inner > 1) go in blocks of
// 16 lanes, every buffer through scratch of stride 16 (any stride above 1 takes the same loop
// as the float32 buffers' stride `inner`).
template <size_t NI, size_t NO, class Body>
void for_each_float_lane(int64_t outer, int64_t R, int64_t inner, const std::array<const Buffer*, NI>& in,
                         const std::array<Buffer*, NO>& out, Body body) {
  bool bf16 = false;
  for (const Buffer* b : in) bf16 = bf16 || b->dtype == BF16;
  for (const Buffer* b : out) bf16 = bf16 || b->dtype == BF16;
  if (!bf16) {
    for_each_lane(outer, R, inner, [&](int64_t, int64_t base, auto st) {
      std::array<const float*, NI> li;
      std::array<float*, NO> lo;
      for (size_t k = 0; k < NI; ++k) li[k] = in[k]->template data<float>() + base;
      for (size_t k = 0; k < NO; ++k) lo[k] = out[k]->template data<float>() + base;
      body(li, lo, st);
    });
    return;
  }
  constexpr int64_t kAlign = 16;  // floats in 64 bytes
  constexpr size_t kBufs = NI + NO;
  auto load = [](const Buffer* b, int64_t i) {
    return b->dtype == BF16 ? ld(b->template data<uint16_t>(), i) : b->template data<float>()[i];
  };
  auto store = [](Buffer* b, int64_t i, float v) {
    if (b->dtype == BF16) st(b->template data<uint16_t>(), i, v);
    else b->template data<float>()[i] = v;
  };
  auto aligned = [](std::vector<float>& v) {
    return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t(63));
  };
  if (inner == 1) {
    const int64_t n = outer;
    const int64_t slot = (R + 2 * kAlign - 1) / kAlign * kAlign;
    const bool par = n > 1 && n * std::max<int64_t>(R, 1) > kParallelGrain;
    run_parallel(par, [&](int threads, int t) {
      std::vector<float> mem(size_t(kBufs * slot + kAlign));
      float* s = aligned(mem);
      std::array<const float*, NI> li;
      std::array<float*, NO> lo;
      for (int64_t l = n * t / threads, l1 = n * (t + 1) / threads; l < l1; ++l) {
        const int64_t base = l * R, off = base % kAlign;
        for (size_t k = 0; k < NI; ++k) {
          if (in[k]->dtype == BF16) {
            float* d = s + k * slot + off;
            const uint16_t* src = in[k]->template data<uint16_t>() + base;
            for (int64_t r = 0; r < R; ++r) d[r] = ld(src, r);
            li[k] = d;
          } else {
            li[k] = in[k]->template data<float>() + base;
          }
        }
        for (size_t k = 0; k < NO; ++k)
          lo[k] = out[k]->dtype == BF16 ? s + (NI + k) * slot + off : out[k]->template data<float>() + base;
        body(li, lo, Unit());
        for (size_t k = 0; k < NO; ++k)
          if (out[k]->dtype == BF16) {
            uint16_t* dst = out[k]->template data<uint16_t>() + base;
            for (int64_t r = 0; r < R; ++r) st(dst, r, lo[k][r]);
          }
      }
    });
    return;
  }
  constexpr int64_t W = 16;  // lanes per block, and the scratch stride
  const int64_t nb = (inner + W - 1) / W, tasks = outer * nb;
  const int64_t slot = R * W;
  const bool par = tasks > 1 && outer * inner * std::max<int64_t>(R, 1) > kParallelGrain;
  run_parallel(par, [&](int threads, int t) {
    std::vector<float> mem(size_t(kBufs * slot + kAlign));
    float* s = aligned(mem);
    std::array<const float*, NI> li;
    std::array<float*, NO> lo;
    for (int64_t task = tasks * t / threads, t1 = tasks * (t + 1) / threads; task < t1; ++task) {
      const int64_t o = task / nb, i0 = (task % nb) * W, w = std::min(W, inner - i0);
      const int64_t base = o * R * inner + i0;
      for (size_t k = 0; k < NI; ++k)
        for (int64_t r = 0; r < R; ++r)
          for (int64_t j = 0; j < w; ++j) s[k * slot + r * W + j] = load(in[k], base + r * inner + j);
      int64_t stride = W;
      asm("" : "+r"(stride));  // a run-time stride, as the float32 buffers' `inner`
      for (int64_t j = 0; j < w; ++j) {
        for (size_t k = 0; k < NI; ++k) li[k] = s + k * slot + j;
        for (size_t k = 0; k < NO; ++k) lo[k] = s + (NI + k) * slot + j;
        body(li, lo, stride);
      }
      for (size_t k = 0; k < NO; ++k)
        for (int64_t r = 0; r < R; ++r)
          for (int64_t j = 0; j < w; ++j) store(out[k], base + r * inner + j, s[(NI + k) * slot + r * W + j]);
    }
  });
}

}  // namespace nn_common
}  // namespace lamina
