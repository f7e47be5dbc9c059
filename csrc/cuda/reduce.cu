// Reductions over the middle axis of an (outer, R, inner) view: sum, mean, max, min, prod for
// float32 (sums accumulate in double), any / all for bool. Integer reductions run on the host.
#include "gpu.h"

namespace lamina {
namespace gpu {

template <int OP>
__device__ __forceinline__ double combine(double a, double b) {
  if (OP == R_SUM || OP == R_MEAN) return a + b;
  if (OP == R_PROD) return a * b;
  if (OP == R_MAX) return (a > b || a != a) ? a : b;
  return (a < b || a != a) ? a : b;  // R_MIN
}
template <int OP>
__device__ __forceinline__ double identity() {
  if (OP == R_SUM || OP == R_MEAN) return 0.0;
  if (OP == R_PROD) return 1.0;
  return OP == R_MAX ? -INFINITY : INFINITY;
}

// inner == 1: one block of 256 threads per row, a tree in shared memory.
template <int OP>
__global__ void reduce_rows(const float* x, float* y, int64_t rows, int64_t R) {
  __shared__ double part[256];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* xr = x + row * R;
    double acc = identity<OP>();
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x) acc = combine<OP>(acc, double(xr[r]));
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (int(threadIdx.x) < s) part[threadIdx.x] = combine<OP>(part[threadIdx.x], part[threadIdx.x + s]);
      __syncthreads();
    }
    if (threadIdx.x == 0) y[row] = float(OP == R_MEAN ? part[0] / double(R) : part[0]);
    __syncthreads();
  }
}

// inner > 1: one thread per output (o, i), reading along R with stride inner (coalesced over i).
template <int OP>
__global__ void reduce_cols(const float* x, float* y, int64_t outer, int64_t R, int64_t inner) {
  const int64_t n = outer * inner;
  GRID_STRIDE(j, n) {
    const int64_t o = j / inner, i = j % inner;
    const float* xr = x + o * R * inner + i;
    double acc = identity<OP>();
    for (int64_t r = 0; r < R; ++r) acc = combine<OP>(acc, double(xr[r * inner]));
    y[j] = float(OP == R_MEAN ? acc / double(R) : acc);
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
// over i), partials in double, then combined in part order: the same result on every run.
template <int OP>
__global__ void reduce_parts(const float* x, double* part, int64_t outer, int64_t R, int64_t inner, int64_t P,
                             int64_t per) {
  const int64_t n = outer * inner;
  GRID_STRIDE(t, n * P) {
    const int64_t p = t / n, j = t % n, o = j / inner, i = j % inner;
    const int64_t r0 = p * per, r1 = r0 + per < R ? r0 + per : R;
    const float* xr = x + o * R * inner + i;
    double acc = identity<OP>();
    for (int64_t r = r0; r < r1; ++r) acc = combine<OP>(acc, double(xr[r * inner]));
    part[t] = acc;
  }
}
template <int OP>
__global__ void reduce_finish(const double* part, float* y, int64_t n, int64_t P, int64_t R) {
  GRID_STRIDE(j, n) {
    double acc = identity<OP>();
    for (int64_t p = 0; p < P; ++p) acc = combine<OP>(acc, part[p * n + j]);
    y[j] = float(OP == R_MEAN ? acc / double(R) : acc);
  }
}

// Parts of at least 64 elements, at most 1024 parts, and at most 4M partial sums (32 MB).
int64_t parts_for(int64_t n, int64_t R) {
  int64_t P = R / 64;
  if (P > 1024) P = 1024;
  while (P > 1 && n * P > (int64_t(1) << 22)) P /= 2;
  return P < 1 ? 1 : P;
}

template <int OP>
static void run(Context& c, const float* x, float* y, int64_t outer, int64_t R, int64_t inner) {
  const int64_t n = outer * inner;
  if (inner > 1 && n < 32768 && parts_for(n, R) >= 4) {
    int64_t P = parts_for(n, R);
    const int64_t per = (R + P - 1) / P;
    P = (R + per - 1) / per;
    Buffer part(n * P, I64, c.index);  // 8-byte elements holding doubles
    reduce_parts<OP><<<grid_for(n * P), 256, 0, c.stream>>>(x, part.data<double>(), outer, R, inner, P, per);
    reduce_finish<OP><<<grid_for(n), 256, 0, c.stream>>>(part.data<double>(), y, n, P, R);
  } else if (inner == 1 && R >= 64) {
    const int64_t blocks = outer < 65535 * 4 ? outer : 65535 * 4;
    reduce_rows<OP><<<unsigned(blocks), 256, 0, c.stream>>>(x, y, outer, R);
  } else {
    reduce_cols<OP><<<grid_for(n), 256, 0, c.stream>>>(x, y, outer, R, inner);
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
  LAMINA_CHECK(xb.dtype != BOOL, "reduce: use any/all for bool tensors, or cast to int32 first");
  if (xb.dtype != F32) throw Unsupported("reduce: integer reductions run on the host");
  const float* x = xb.data<float>();
  float* y = yb.data<float>();
  switch (op) {
    case R_SUM: run<R_SUM>(c, x, y, outer, R, inner); break;
    case R_MEAN: run<R_MEAN>(c, x, y, outer, R, inner); break;
    case R_MAX: run<R_MAX>(c, x, y, outer, R, inner); break;
    case R_MIN: run<R_MIN>(c, x, y, outer, R, inner); break;
    case R_PROD: run<R_PROD>(c, x, y, outer, R, inner); break;
  }
  launched(c, "reduce");
}

}  // namespace gpu
}  // namespace lamina
