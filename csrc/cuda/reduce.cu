// Reductions over the middle axis of an (outer, R, inner) view: sum, mean, max, min, prod for
// float32 and bfloat16 (sums accumulate in double; a bfloat16 result is rounded once, bit for bit
// the widened path's), int32 and int64 (sums and products wrap in 64 bits, as the CPU's: exact in
// any order), any / all for bool.
#include <type_traits>

#include "bf16.cuh"
#include "gpu.h"

namespace lamina {
namespace gpu {

// How a storage type T is reduced: Acc the accumulator (double for float32 and bfloat16, whose
// elements widen exactly; for integers int64 for max / min and uint64 for sum / prod, so that sums
// and products wrap as the CPU's int64 accumulators do, in any order), load an element, and store
// a result (the mean divides by R; bfloat16 results round once, as the widened path's float32
// result cast to bfloat16).
template <int OP, class T>
struct RT {  // float32
  using Acc = double;
  __device__ static Acc load(T v) { return double(v); }
  __device__ static T store(Acc a, int64_t R) { return float(OP == R_MEAN ? a / double(R) : a); }
  __device__ static Acc identity() {
    if (OP == R_SUM || OP == R_MEAN) return 0.0;
    if (OP == R_PROD) return 1.0;
    return OP == R_MAX ? -INFINITY : INFINITY;
  }
};
template <int OP>
struct RT<OP, uint16_t> : RT<OP, float> {  // bfloat16
  using Acc = double;
  __device__ static Acc load(uint16_t v) { return double(bf16_to_f32(v)); }
  __device__ static uint16_t store(Acc a, int64_t R) { return f32_to_bf16(RT<OP, float>::store(a, R)); }
};
template <int OP, class T>
struct RTInt {  // int32, int64
  static constexpr bool kOrder = OP == R_MAX || OP == R_MIN;
  using Acc = typename std::conditional<kOrder, long long, unsigned long long>::type;
  __device__ static Acc load(T v) { return Acc((long long)v); }
  __device__ static T store(Acc a, int64_t) { return T((long long)a); }
  __device__ static Acc identity() {
    if (OP == R_SUM) return Acc(0);
    if (OP == R_PROD) return Acc(1);
    const long long lo = sizeof(T) == 4 ? -2147483648LL : (-9223372036854775807LL - 1);
    const long long hi = sizeof(T) == 4 ? 2147483647LL : 9223372036854775807LL;
    return Acc(OP == R_MAX ? lo : hi);
  }
};
template <int OP>
struct RT<OP, int32_t> : RTInt<OP, int32_t> {};
template <int OP>
struct RT<OP, int64_t> : RTInt<OP, int64_t> {};

template <int OP, class A>
__device__ __forceinline__ A combine(A a, A b) {
  if (OP == R_SUM || OP == R_MEAN) return a + b;
  if (OP == R_PROD) return a * b;
  if (OP == R_MAX) return (a > b || a != a) ? a : b;
  return (a < b || a != a) ? a : b;  // R_MIN
}

// inner == 1: one block of 256 threads per row, a tree in shared memory.
template <int OP, class T>
__global__ void reduce_rows(const T* x, T* y, int64_t rows, int64_t R) {
  using Tr = RT<OP, T>;
  using A = typename Tr::Acc;
  __shared__ A part[256];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * R;
    A acc = Tr::identity();
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x) acc = combine<OP>(acc, Tr::load(xr[r]));
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (int(threadIdx.x) < s) part[threadIdx.x] = combine<OP>(part[threadIdx.x], part[threadIdx.x + s]);
      __syncthreads();
    }
    if (threadIdx.x == 0) y[row] = Tr::store(part[0], R);
    __syncthreads();
  }
}

// inner > 1: one thread per output (o, i), reading along R with stride inner (coalesced over i).
template <int OP, class T>
__global__ void reduce_cols(const T* x, T* y, int64_t outer, int64_t R, int64_t inner) {
  using Tr = RT<OP, T>;
  const int64_t n = outer * inner;
  GRID_STRIDE(j, n) {
    const int64_t o = j / inner, i = j % inner;
    const T* xr = x + o * R * inner + i;
    typename Tr::Acc acc = Tr::identity();
    for (int64_t r = 0; r < R; ++r) acc = combine<OP>(acc, Tr::load(xr[r * inner]));
    y[j] = Tr::store(acc, R);
  }
}

__global__ void reduce_bool(const bool* x, bool* y, int64_t outer, int64_t R, int64_t inner, bool any) {
  const int64_t n = outer * inner;
  GRID_STRIDE(j, n) {
    const int64_t o = j / inner, i = j % inner;
    const bool* xr = x + o * R * inner + i;
    bool acc = !any;
    for (int64_t r = 0; r < R; ++r) acc = any ? (acc || xr[r * inner]) : (acc && xr[r * inner]);
    y[j] = acc;
  }
}

// Few outputs over a long axis (a bias gradient's sum over a batch): one thread per output would
// walk R elements alone, so the axis is cut into P parts, one thread per (part, output) (coalesced
// over i), partials in the accumulator type, then combined in part order: the same result on
// every run.
template <int OP, class T>
__global__ void reduce_parts(const T* x, typename RT<OP, T>::Acc* part, int64_t outer, int64_t R, int64_t inner,
                             int64_t P, int64_t per) {
  using Tr = RT<OP, T>;
  const int64_t n = outer * inner;
  GRID_STRIDE(t, n * P) {
    const int64_t p = t / n, j = t % n, o = j / inner, i = j % inner;
    const int64_t r0 = p * per, r1 = r0 + per < R ? r0 + per : R;
    const T* xr = x + o * R * inner + i;
    typename Tr::Acc acc = Tr::identity();
    for (int64_t r = r0; r < r1; ++r) acc = combine<OP>(acc, Tr::load(xr[r * inner]));
    part[t] = acc;
  }
}
template <int OP, class T>
__global__ void reduce_finish(const typename RT<OP, T>::Acc* part, T* y, int64_t n, int64_t P, int64_t R) {
  using Tr = RT<OP, T>;
  GRID_STRIDE(j, n) {
    typename Tr::Acc acc = Tr::identity();
    for (int64_t p = 0; p < P; ++p) acc = combine<OP>(acc, part[p * n + j]);
    y[j] = Tr::store(acc, R);
  }
}

// Parts of at least 64 elements, at most 1024 parts, and at most 4M partial sums (32 MB).
int64_t parts_for(int64_t n, int64_t R) {
  int64_t P = R / 64;
  if (P > 1024) P = 1024;
  while (P > 1 && n * P > (int64_t(1) << 22)) P /= 2;
  return P < 1 ? 1 : P;
}

template <int OP, class T>
static void run(Context& c, const T* x, T* y, int64_t outer, int64_t R, int64_t inner) {
  using A = typename RT<OP, T>::Acc;
  static_assert(sizeof(A) == 8, "partials are 8-byte elements");
  const int64_t n = outer * inner;
  if (inner > 1 && n < 32768 && parts_for(n, R) >= 4) {
    int64_t P = parts_for(n, R);
    const int64_t per = (R + P - 1) / P;
    P = (R + per - 1) / per;
    Buffer part(n * P, I64, c.index);  // 8-byte elements holding the accumulators
    reduce_parts<OP, T><<<grid_for(n * P), 256, 0, c.stream>>>(x, part.data<A>(), outer, R, inner, P, per);
    reduce_finish<OP, T><<<grid_for(n), 256, 0, c.stream>>>(part.data<A>(), y, n, P, R);
  } else if (inner == 1 && R >= 64) {
    const int64_t blocks = outer < 65535 * 4 ? outer : 65535 * 4;
    reduce_rows<OP, T><<<unsigned(blocks), 256, 0, c.stream>>>(x, y, outer, R);
  } else {
    reduce_cols<OP, T><<<grid_for(n), 256, 0, c.stream>>>(x, y, outer, R, inner);
  }
}

template <class T>
static void run_op(Context& c, int op, const Buffer& xb, int64_t outer, int64_t R, int64_t inner, Buffer& yb) {
  const T* x = xb.data<T>();
  T* y = yb.data<T>();
  switch (op) {
    case R_SUM: run<R_SUM>(c, x, y, outer, R, inner); break;
    case R_MEAN:
      if constexpr (std::is_integral<T>::value && !std::is_same<T, uint16_t>::value)
        LAMINA_CHECK(false, "reduce: mean needs a float32 tensor (or a bfloat16 one); cast integer tensors to "
                            "float32 first");
      else run<R_MEAN>(c, x, y, outer, R, inner);
      break;
    case R_MAX: run<R_MAX>(c, x, y, outer, R, inner); break;
    case R_MIN: run<R_MIN>(c, x, y, outer, R, inner); break;
    case R_PROD: run<R_PROD>(c, x, y, outer, R, inner); break;
  }
}

void reduce(int op, const Buffer& xb, int64_t outer, int64_t R, int64_t inner, Buffer& yb) {
  LAMINA_CHECK(outer >= 0 && R >= 0 && inner >= 0, "reduce: extents (outer, R, inner) = (" << outer << ", " << R << ", "
                                                       << inner << ") must be non-negative");
  LAMINA_CHECK(xb.numel == outer * R * inner, "reduce: input holds " << xb.numel << " elements, but (outer, R, inner) = ("
                                                  << outer << ", " << R << ", " << inner << ") needs " << outer * R * inner);
  LAMINA_CHECK(yb.numel == outer * inner, "reduce: output holds " << yb.numel << " elements, expected " << outer * inner);
  LAMINA_CHECK(op >= R_SUM && op <= R_ALL, "reduce: unknown op code " << op);
  if ((op == R_MAX || op == R_MIN) && R == 0 && outer * inner > 0)
    LAMINA_CHECK(false, "reduce: cannot take the max/min over an empty axis (a zero-size reduction has no identity)");
  Context& c = op_device("reduce", {&xb, &yb});
  if (outer * inner == 0) return;
  if (op == R_ANY || op == R_ALL) {
    check_dtype("reduce", "x", xb, BOOL);
    check_dtype("reduce", "out", yb, BOOL);
    reduce_bool<<<grid_for(outer * inner), 256, 0, c.stream>>>(xb.data<bool>(), yb.data<bool>(), outer, R, inner,
                                                               op == R_ANY);
    return launched(c, "reduce");
  }
  check_dtype("reduce", "out", yb, xb.dtype);
  switch (xb.dtype) {
    case F32: run_op<float>(c, op, xb, outer, R, inner, yb); break;
    case BF16: run_op<uint16_t>(c, op, xb, outer, R, inner, yb); break;
    case I32: run_op<int32_t>(c, op, xb, outer, R, inner, yb); break;
    case I64: run_op<int64_t>(c, op, xb, outer, R, inner, yb); break;
    default: LAMINA_CHECK(false, "reduce: use any/all for bool tensors, or cast to int32 first");
  }
  launched(c, "reduce");
}

}  // namespace gpu
}  // namespace lamina
