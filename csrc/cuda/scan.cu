// argmax / argmin and cumulative sums and products along the middle axis of an (outer, R, inner)
// view (csrc/cpu/reduce.cpp's rules): argreduce takes the first index of the extreme (the first
// NaN for float32, like numpy); scans accumulate float32 in double and integers in int64
// (wrapping like the output type). One thread per lane (o, i) reads along R with stride inner
// (coalesced across lanes); argreduce over a long last axis (inner == 1) uses a warp per row.
#include "gpu.h"

namespace lamina {
namespace gpu {
namespace {

template <class T>
__device__ __forceinline__ bool is_nan(T v) {
  return v != v;  // false for integers
}

// (v, i) beats (bv, bi): bi < 0 marks "nothing yet"; a NaN beats any number; an equal value
// beats only at a lower index.
template <bool MAX, class T>
__device__ __forceinline__ bool beats(T v, int64_t i, T bv, int64_t bi) {
  if (bi < 0) return true;
  if (is_nan(v)) return !is_nan(bv) || i < bi;
  if (is_nan(bv)) return false;
  if (MAX ? v > bv : v < bv) return true;
  return v == bv && i < bi;
}

template <bool MAX, class T>
__global__ void arg_lanes(const T* x, int64_t* y, int64_t outer, int64_t R, int64_t inner) {
  GRID_STRIDE(l, outer * inner) {
    const T* xr = x + (l / inner) * R * inner + l % inner;
    T best = xr[0];
    int64_t bi = 0;
    for (int64_t r = 1; r < R; ++r) {
      const T v = xr[r * inner];
      if (beats<MAX>(v, r, best, bi)) { best = v; bi = r; }
    }
    y[l] = bi;
  }
}

// inner == 1: one warp per row, each lane over r = lane, lane + 32, ..., then the warp's best.
template <bool MAX, class T>
__global__ void arg_rows(const T* x, int64_t* y, int64_t rows, int64_t R) {
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + w; row < rows; row += int64_t(gridDim.x) * (blockDim.x / 32)) {
    const T* xr = x + row * R;
    T best = xr[0];
    int64_t bi = -1;
    for (int64_t r = lane; r < R; r += 32) {
      const T v = xr[r];
      if (beats<MAX>(v, r, best, bi)) { best = v; bi = r; }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const T ov = __shfl_xor_sync(0xffffffffu, best, o);
      const long long oi = __shfl_xor_sync(0xffffffffu, (long long)bi, o);
      if (oi >= 0 && beats<MAX>(ov, int64_t(oi), best, bi)) { best = ov; bi = oi; }
    }
    if (lane == 0) y[row] = bi;
  }
}

template <bool MAX, class T>
void arg_run(Context& c, const T* x, int64_t* y, int64_t outer, int64_t R, int64_t inner) {
  if (inner == 1 && R >= 64) {
    int64_t b = (outer + 7) / 8;
    b = b > 65535 * 4 ? 65535 * 4 : b;
    arg_rows<MAX, T><<<unsigned(b), 256, 0, c.stream>>>(x, y, outer, R);
  } else {
    arg_lanes<MAX, T><<<grid_for(outer * inner), 256, 0, c.stream>>>(x, y, outer, R, inner);
  }
}

template <int OP, class T, class A>
__global__ void scan_lanes(const T* x, T* y, int64_t outer, int64_t R, int64_t inner, bool reverse) {
  GRID_STRIDE(l, outer * inner) {
    const int64_t base = (l / inner) * R * inner + l % inner;
    A acc = OP == S_SUM ? A(0) : A(1);
    for (int64_t k = 0; k < R; ++k) {
      const int64_t off = base + (reverse ? R - 1 - k : k) * inner;
      if (OP == S_SUM) acc += A(x[off]);
      else acc *= A(x[off]);
      y[off] = T(acc);
    }
  }
}

template <int OP, class T, class A>
void scan_run(Context& c, const T* x, T* y, int64_t outer, int64_t R, int64_t inner, bool reverse) {
  scan_lanes<OP, T, A><<<grid_for(outer * inner), 256, 0, c.stream>>>(x, y, outer, R, inner, reverse);
}

// dL/dx_r = P_(r-1) S_r, P_(r-1) = x_0 ... x_(r-1), S_r = g_r + x_(r+1) S_(r+1) (in double).
__global__ void cumprod_grad_lanes(const float* x, const float* g, float* out, int64_t outer, int64_t R, int64_t inner) {
  GRID_STRIDE(l, outer * inner) {
    const int64_t base = (l / inner) * R * inner + l % inner;
    double p = 1.0, s = 0.0;
    for (int64_t r = 0; r < R; ++r) {  // out = exclusive prefix product
      const int64_t off = base + r * inner;
      out[off] = float(p);
      p *= double(x[off]);
    }
    for (int64_t r = R - 1; r >= 0; --r) {
      const int64_t off = base + r * inner;
      const double xn = r + 1 < R ? double(x[off + inner]) : 0.0;
      s = double(g[off]) + xn * s;
      out[off] = float(double(out[off]) * s);
    }
  }
}

}  // namespace

void argreduce(bool is_max, const Buffer& xb, int64_t outer, int64_t R, int64_t inner, Buffer& yb) {
  const char* op = is_max ? "argmax" : "argmin";
  check_extents(op, xb, outer, R, inner, yb, outer * inner);
  check_dtype(op, "out", yb, I64);
  Context& c = op_device(op, {&xb, &yb});
  if (outer * inner == 0) return;
  LAMINA_CHECK(R > 0, op << ": cannot reduce an empty axis");
  int64_t* y = yb.data<int64_t>();
  auto run = [&](auto* x) {
    if (is_max) arg_run<true>(c, x, y, outer, R, inner);
    else arg_run<false>(c, x, y, outer, R, inner);
  };
  switch (xb.dtype) {
    case F32: run(xb.data<float>()); break;
    case I32: run(xb.data<int32_t>()); break;
    case I64: run(xb.data<int64_t>()); break;
    case BOOL: run(xb.data<uint8_t>()); break;
    case I8: throw TypeError(std::string(op) + ": int8 tensors hold quantized weights and take no arithmetic");
    case BF16: throw TypeError(std::string(op) + ": this kernel takes no bfloat16 (the device table runs it on float32 copies)");
  }
  launched(c, op);
}

void cumulative(int op, const Buffer& xb, int64_t outer, int64_t R, int64_t inner, Buffer& yb, bool reverse) {
  check_extents("cumulative", xb, outer, R, inner, yb, outer * R * inner);
  check_dtype("cumulative", "out", yb, xb.dtype);
  LAMINA_CHECK(op == S_SUM || op == S_PROD, "cumulative: unknown op code " << op << "; expected 0 (sum) or 1 (prod)");
  LAMINA_CHECK(xb.dtype == F32 || xb.dtype == I32 || xb.dtype == I64,
               "cumulative: bool tensors need a cast to int64 first");
  Context& c = op_device("cumulative", {&xb, &yb});
  if (outer * R * inner == 0) return;
  // Integers accumulate in uint64 (two's complement wrapping, as the CPU's int64 does in practice).
  switch (xb.dtype) {
    case F32:
      if (op == S_SUM) scan_run<S_SUM, float, double>(c, xb.data<float>(), yb.data<float>(), outer, R, inner, reverse);
      else scan_run<S_PROD, float, double>(c, xb.data<float>(), yb.data<float>(), outer, R, inner, reverse);
      break;
    case I32:
      if (op == S_SUM)
        scan_run<S_SUM, int32_t, uint64_t>(c, xb.data<int32_t>(), yb.data<int32_t>(), outer, R, inner, reverse);
      else scan_run<S_PROD, int32_t, uint64_t>(c, xb.data<int32_t>(), yb.data<int32_t>(), outer, R, inner, reverse);
      break;
    default:
      if (op == S_SUM)
        scan_run<S_SUM, int64_t, uint64_t>(c, xb.data<int64_t>(), yb.data<int64_t>(), outer, R, inner, reverse);
      else scan_run<S_PROD, int64_t, uint64_t>(c, xb.data<int64_t>(), yb.data<int64_t>(), outer, R, inner, reverse);
      break;
  }
  launched(c, "cumulative");
}

void cumprod_grad(const Buffer& xb, const Buffer& gb, int64_t outer, int64_t R, int64_t inner, Buffer& ob) {
  check_extents("cumprod_grad", xb, outer, R, inner, ob, outer * R * inner);
  check_dtype("cumprod_grad", "x", xb, F32);
  check_dtype("cumprod_grad", "grad", gb, F32);
  check_dtype("cumprod_grad", "out", ob, F32);
  LAMINA_CHECK(gb.numel == xb.numel, "cumprod_grad: grad holds " << gb.numel << " elements, x " << xb.numel);
  Context& c = op_device("cumprod_grad", {&xb, &gb, &ob});
  if (outer * R * inner == 0) return;
  cumprod_grad_lanes<<<grid_for(outer * inner), 256, 0, c.stream>>>(xb.data<float>(), gb.data<float>(),
                                                                    ob.data<float>(), outer, R, inner);
  launched(c, "cumprod_grad");
}

}  // namespace gpu
}  // namespace lamina
