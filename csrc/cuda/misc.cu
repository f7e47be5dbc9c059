// Losses on dense targets (categorical and binary cross-entropy, nn.cpp), one_hot, take_along_axis
// and its gradient, count_nonzero / nonzero, triangles, arange / linspace (manipulation.cpp) and
// batch_transpose (conv.cpp): the CPU kernels' names, arguments, checks (csrc/misc_checks.h) and
// formulas.
//
// - The cross-entropies work on lanes of an (outer, K, inner) view, one warp per lane (as nn.cu's
//   sparse one); binary cross-entropy is elementwise. Nothing waits for the device.
// - take_along_axis checks its indices on the device (one wait, as take does); an index outside
//   [-n, n) makes the call run on the host, which raises the CPU's IndexError. Its gradient sums
//   without atomics, in the CPU's order (ascending j for each output element), so results are
//   the CPU's bit for bit and do not change from run to run. It does not check the indices again
//   (the forward pass did, with a wait; a second check would wait on every backward pass): an
//   index outside [-n, n) adds nothing.
// - count_nonzero returns its count to Python (one wait); nonzero needs the count to check its
//   outputs (one wait between its counting and its writing passes), and writes the coordinates in
//   row-major order, as the CPU does.
// - arange / linspace compute start + i * step in double with separate roundings (no fused
//   multiply-add), the CPU's arithmetic, so values are equal bit for bit.
#include <cmath>

#include "../misc_checks.h"
#include "misc.h"
#include "warp.cuh"

namespace lamina {
namespace gpu {

using namespace misc_checks;

namespace {

__device__ __forceinline__ float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }


// ---- categorical cross-entropy on dense targets ----------------------------------------------------
// logits: loss = sum_k t_k (lse - x_k), aux = lse; probabilities: q = x / sum(x) clipped to
// [eps, 1 - eps], loss = -sum_k t_k log(q_k), aux = sum(x).
__global__ void xent_dense_kernel(const float* x, const float* t, int64_t outer, int64_t K, int64_t inner, bool logits,
                                  float eps, float* loss, float* aux) {
  WARP_LANES(lane, outer * inner) {
    const int64_t base = (lane / inner) * K * inner + lane % inner;
    const float* xr = x + base;
    const float* tr = t + base;
    float acc = 0.f;
    if (logits) {
      const float lse = lane_lse(xr, K, inner, _l);
      for (int64_t k = _l; k < K; k += 32) acc += tr[k * inner] * (lse - xr[k * inner]);
      acc = warp_sum(acc);
      if (_l == 0) { aux[lane] = lse; loss[lane] = acc; }
    } else {
      float s = 0.f;
      for (int64_t k = _l; k < K; k += 32) s += xr[k * inner];
      s = warp_sum(s);
      const float inv = 1.f / s;
      for (int64_t k = _l; k < K; k += 32) acc -= tr[k * inner] * logf(clampf(xr[k * inner] * inv, eps, 1.f - eps));
      acc = warp_sum(acc);
      if (_l == 0) { aux[lane] = s; loss[lane] = acc; }
    }
  }
}

__global__ void xent_dense_grad_kernel(const float* x, const float* t, const float* aux, const float* g, int64_t outer,
                                       int64_t K, int64_t inner, bool logits, float eps, float* dx, float* dt) {
  WARP_LANES(lane, outer * inner) {
    const int64_t base = (lane / inner) * K * inner + lane % inner;
    const float* xr = x + base;
    const float* tr = t + base;
    const float gl = g[lane];
    if (logits) {
      const float lse = aux[lane];
      if (dx) {
        float tsum = 0.f;
        for (int64_t k = _l; k < K; k += 32) tsum += tr[k * inner];
        tsum = warp_sum(tsum);
        for (int64_t k = _l; k < K; k += 32)
          dx[base + k * inner] = gl * (expf(xr[k * inner] - lse) * tsum - tr[k * inner]);
      }
      if (dt)
        for (int64_t k = _l; k < K; k += 32) dt[base + k * inner] = gl * (lse - xr[k * inner]);
    } else {
      const float inv = 1.f / aux[lane];
      if (dx) {
        // loss = -sum t log(clip(q)), q = x / sum(x): d/dq_k = -t_k / q_k inside the clip range.
        float dot = 0.f;
        for (int64_t k = _l; k < K; k += 32) {
          const float q = xr[k * inner] * inv;
          const float d = (q >= eps && q <= 1.f - eps) ? -tr[k * inner] / q : 0.f;
          dot += d * q;
        }
        dot = warp_sum(dot);
        for (int64_t k = _l; k < K; k += 32) {
          const float q = xr[k * inner] * inv;
          const float d = (q >= eps && q <= 1.f - eps) ? -tr[k * inner] / q : 0.f;
          dx[base + k * inner] = gl * inv * (d - dot);
        }
      }
      if (dt)
        for (int64_t k = _l; k < K; k += 32)
          dt[base + k * inner] = -gl * logf(clampf(xr[k * inner] * inv, eps, 1.f - eps));
    }
  }
}

// ---- binary cross-entropy (elementwise) --------------------------------------------------------------
__global__ void bce_kernel(const float* t, const float* x, bool logits, float eps, float* o, int64_t n) {
  GRID_STRIDE(i, n) {
    const float v = x[i], tv = t[i];
    if (logits) {
      const float pos = v < 0.f ? 0.f : v;  // std::max(v, 0.f): a NaN stays
      o[i] = pos - v * tv + log1pf(expf(-fabsf(v)));
    } else {
      const float c = clampf(v, eps, 1.f - eps);
      o[i] = -(tv * logf(c) + (1.f - tv) * logf(1.f - c));
    }
  }
}

__global__ void bce_grad_kernel(const float* t, const float* x, const float* g, bool logits, float eps, float* dx,
                                float* dt, int64_t n) {
  GRID_STRIDE(i, n) {
    const float v = x[i], tv = t[i], gv = g[i];
    if (logits) {
      if (dx) dx[i] = gv * (1.f / (1.f + expf(-v)) - tv);
      if (dt) dt[i] = -gv * v;
    } else {
      const float c = clampf(v, eps, 1.f - eps);
      if (dx) dx[i] = (v >= eps && v <= 1.f - eps) ? gv * ((1.f - tv) / (1.f - c) - tv / c) : 0.f;
      if (dt) dt[i] = -gv * (logf(c) - logf(1.f - c));
    }
  }
}

// ---- one_hot: out[o, ids[o, i], i] = 1 (out zeroed first); ids outside [0, K) leave a zero row ----------
template <class T, class L>
__global__ void one_hot_kernel(const L* ids, int64_t outer, int64_t K, int64_t inner, T* out) {
  GRID_STRIDE(l, outer * inner) {
    const int64_t v = int64_t(ids[l]);
    if (v >= 0 && v < K) out[((l / inner) * K + v) * inner + l % inner] = T(1);
  }
}

template <class T>
void launch_one_hot(Context& c, const Buffer& ids, int64_t outer, int64_t K, int64_t inner, Buffer& out) {
  const int64_t n = outer * inner;
  if (ids.dtype == I32)
    one_hot_kernel<T, int32_t><<<grid_for(n), 256, 0, c.stream>>>(ids.data<int32_t>(), outer, K, inner, out.data<T>());
  else
    one_hot_kernel<T, int64_t><<<grid_for(n), 256, 0, c.stream>>>(ids.data<int64_t>(), outer, K, inner, out.data<T>());
}

// ---- take_along_axis: out[o, j, c] = x[o, idx[o, j, c], c] ----------------------------------------------
template <class T, class I>
__global__ void take_along_kernel(const T* x, int64_t n, int64_t inner, const I* idx, int64_t m, T* out,
                                  int64_t total) {
  GRID_STRIDE(k, total) {
    const int64_t c = k % inner, o = (k / inner) / m;
    int64_t i = int64_t(idx[k]);
    if (i < 0) i += n;
    out[k] = i >= 0 && i < n ? x[(o * n + i) * inner + c] : T(0);  // outside: its deferred check raises
  }
}

template <class T>
void launch_take_along(Context& c, const Buffer& x, int64_t n, int64_t inner, const Buffer& idx, int64_t m,
                       Buffer& out) {
  const int64_t total = out.numel;
  if (idx.dtype == I32)
    take_along_kernel<T, int32_t><<<grid_for(total), 256, 0, c.stream>>>(x.data<T>(), n, inner, idx.data<int32_t>(), m,
                                                                          out.data<T>(), total);
  else
    take_along_kernel<T, int64_t><<<grid_for(total), 256, 0, c.stream>>>(x.data<T>(), n, inner, idx.data<int64_t>(), m,
                                                                          out.data<T>(), total);
}

// The gradient: gx = 0 (zeroed before), then gx[o, idx[o, j, c], c] += g[o, j, c], each output
// element summed over ascending j (the CPU's order). A column is one (o, c): its n outputs and its
// m indices. Many columns: one thread per column adds its m gradients in order.
template <class I>
__global__ void take_along_grad_columns(const float* g, int64_t outer, int64_t n, int64_t inner, const I* idx,
                                        int64_t m, float* gx) {
  GRID_STRIDE(col, outer * inner) {
    const int64_t o = col / inner, c = col - o * inner;
    float* d = gx + o * n * inner + c;
    const int64_t base = o * m * inner + c;
    for (int64_t j = 0; j < m; ++j) {
      int64_t i = int64_t(idx[base + j * inner]);
      if (i < 0) i += n;
      if (i >= 0 && i < n) d[i * inner] += g[base + j * inner];
    }
  }
}

// Few columns and long index runs: a block per column. Thread t owns the outputs i with
// i % 256 == t; the block reads the indices in tiles of 256 (through shared memory), and each
// thread adds the tile's entries that fall on its outputs in ascending j.
constexpr int kAlongThreads = 256;
template <class I>
__global__ void __launch_bounds__(kAlongThreads) take_along_grad_blocks(const float* g, int64_t outer, int64_t n,
                                                                        int64_t inner, const I* idx, int64_t m,
                                                                        float* gx) {
  __shared__ long long s_row[kAlongThreads];
  __shared__ float s_val[kAlongThreads];
  const int t = threadIdx.x;
  for (int64_t col = blockIdx.x; col < outer * inner; col += gridDim.x) {
    const int64_t o = col / inner, c = col - o * inner;
    float* d = gx + o * n * inner + c;
    const int64_t base = o * m * inner + c;
    for (int64_t j0 = 0; j0 < m; j0 += kAlongThreads) {
      const int64_t j = j0 + t;
      long long row = -1;
      float val = 0.f;
      if (j < m) {
        int64_t i = int64_t(idx[base + j * inner]);
        if (i < 0) i += n;
        if (i >= 0 && i < n) { row = (long long)i; val = g[base + j * inner]; }
      }
      s_row[t] = row;
      s_val[t] = val;
      __syncthreads();
      const int cnt = int(m - j0 < kAlongThreads ? m - j0 : kAlongThreads);
      for (int e = 0; e < cnt; ++e) {
        const long long r = s_row[e];
        if (r >= 0 && int(r % kAlongThreads) == t) d[r * inner] += s_val[e];
      }
      __syncthreads();  // the tile is read before the next one overwrites it
    }
  }
}

// ---- count_nonzero / nonzero ---------------------------------------------------------------------------
template <class T>
__device__ __forceinline__ bool nz(T v) { return v != T(0); }
// uint16_t: bfloat16 bits (the only 2-byte dtype); nonzero as its float32 value: -0 is zero, NaN is not
template <>
__device__ __forceinline__ bool nz(uint16_t v) { return (v & 0x7fffu) != 0; }

template <class T>
__global__ void count_kernel(const T* x, int64_t n, unsigned long long* total) {
  long long cnt = 0;
  GRID_STRIDE(i, n) cnt += nz(x[i]) ? 1 : 0;
  for (int o = 16; o > 0; o >>= 1) cnt += __shfl_xor_sync(0xffffffffu, cnt, o);
  if (threadIdx.x % 32 == 0 && cnt) atomicAdd(total, (unsigned long long)cnt);
}

// nonzero works on chunks of kChunk elements, a block per chunk, kPer consecutive elements per thread.
constexpr int kScanThreads = 256, kPer = 4, kChunk = kScanThreads * kPer;

// Inclusive prefix sum of v over the block's 256 threads (every thread of the block must call it).
__device__ long long block_inclusive_scan(long long v, long long* buf) {
  const int t = threadIdx.x;
  buf[t] = v;
  __syncthreads();
  for (int off = 1; off < kScanThreads; off <<= 1) {
    const long long a = t >= off ? buf[t - off] : 0;
    __syncthreads();
    buf[t] += a;
    __syncthreads();
  }
  const long long r = buf[t];
  __syncthreads();  // buf is read before a later call overwrites it
  return r;
}

// counts[b] = non-zero elements of chunk b
template <class T>
__global__ void __launch_bounds__(kScanThreads) chunk_count_kernel(const T* x, int64_t n, int64_t chunks,
                                                                   long long* counts) {
  __shared__ long long buf[kScanThreads];
  for (int64_t b = blockIdx.x; b < chunks; b += gridDim.x) {
    const int64_t a = b * kChunk + int64_t(threadIdx.x) * kPer;
    long long cnt = 0;
    for (int e = 0; e < kPer; ++e) cnt += (a + e < n && nz(x[a + e])) ? 1 : 0;
    const long long s = block_inclusive_scan(cnt, buf);
    if (threadIdx.x == kScanThreads - 1) counts[b] = s;
  }
}

// counts[0..chunks) -> exclusive prefix sums in place, counts[chunks] = the total (one block).
__global__ void __launch_bounds__(kScanThreads) chunk_offsets_kernel(long long* counts, int64_t chunks) {
  __shared__ long long buf[kScanThreads];
  long long carry = 0;
  for (int64_t b0 = 0; b0 < chunks; b0 += kScanThreads) {
    const int64_t b = b0 + threadIdx.x;
    const long long v = b < chunks ? counts[b] : 0;
    const long long s = block_inclusive_scan(v, buf);
    if (b < chunks) counts[b] = carry + s - v;
    // the tile's total, from the last thread's inclusive sum (every thread reads it back)
    if (threadIdx.x == kScanThreads - 1) buf[0] = s;
    __syncthreads();
    carry += buf[0];
    __syncthreads();
  }
  if (threadIdx.x == 0) counts[chunks] = carry;
}

struct NonzeroOuts {
  int nd = 0;
  int64_t dims[kMaxDims];
  long long* out[kMaxDims];
};

// Each non-zero element's coordinates, at its row-major rank among the non-zero elements.
template <class T>
__global__ void __launch_bounds__(kScanThreads) nonzero_write_kernel(const T* x, int64_t n, int64_t chunks,
                                                                     const long long* offsets, NonzeroOuts p) {
  __shared__ long long buf[kScanThreads];
  for (int64_t b = blockIdx.x; b < chunks; b += gridDim.x) {
    const int64_t a = b * kChunk + int64_t(threadIdx.x) * kPer;
    long long cnt = 0;
    for (int e = 0; e < kPer; ++e) cnt += (a + e < n && nz(x[a + e])) ? 1 : 0;
    long long pos = offsets[b] + block_inclusive_scan(cnt, buf) - cnt;
    for (int e = 0; e < kPer; ++e) {
      const int64_t i = a + e;
      if (i >= n || !nz(x[i])) continue;
      int64_t rem = i;
      for (int k = p.nd - 1; k >= 0; --k) {
        const int64_t q = rem / p.dims[k];
        p.out[k][pos] = (long long)(rem - q * p.dims[k]);
        rem = q;
      }
      ++pos;
    }
  }
}

template <class T>
void launch_count(Context& c, const Buffer& x, unsigned long long* total) {
  count_kernel<T><<<grid_for(x.numel), 256, 0, c.stream>>>(x.data<T>(), x.numel, total);
}

// ---- triangles: lower keeps j <= i + k, upper keeps j >= i + k (k already clamped) ------------------------
template <class T>
__global__ void tri_kernel(const T* x, int64_t rows, int64_t cols, int64_t k, bool upper, T* out, int64_t total) {
  GRID_STRIDE(e, total) {
    const int64_t r = e / cols, j = e - r * cols, i = r % rows;
    const bool keep = upper ? j >= i + k : j <= i + k;
    out[e] = keep ? x[e] : T(0);
  }
}

// ---- ranges: start + i * step in double, each operation rounded on its own (no fused multiply-add) -------
template <class T>
__global__ void arange_kernel(T* o, int64_t n, double start, double step) {
  GRID_STRIDE(i, n) o[i] = T(__dadd_rn(start, __dmul_rn(double(i), step)));
}

// Integer outputs are floored (numpy 2); the last value is exactly `stop` with the endpoint.
template <class T, bool FLOOR>
__global__ void linspace_kernel(T* o, int64_t n, double start, double stop, double step, bool endpoint) {
  GRID_STRIDE(i, n) {
    const double v = (endpoint && n > 1 && i == n - 1) ? stop : __dadd_rn(start, __dmul_rn(double(i), step));
    o[i] = FLOOR ? T(floor(v)) : T(v);
  }
}

// ---- batch_transpose: 32 x 32 tiles through shared memory (both sides coalesced) --------------------------
constexpr int kTile = 32;
__global__ void __launch_bounds__(256) batch_transpose_kernel(const float* x, int64_t B, int64_t R, int64_t S,
                                                              float* o) {
  __shared__ float tile[kTile][kTile + 1];
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;  // 8 rows of 32
  const int64_t rt = (R + kTile - 1) / kTile, st = (S + kTile - 1) / kTile, tiles = B * rt * st;
  for (int64_t tt = blockIdx.x; tt < tiles; tt += gridDim.x) {
    const int64_t b = tt / (rt * st), r0 = (tt / st) % rt * kTile, s0 = tt % st * kTile;
    const float* xb = x + b * R * S;
    float* ob = o + b * R * S;
    for (int y = ty; y < kTile; y += 8) {
      const int64_t r = r0 + y, s = s0 + tx;
      if (r < R && s < S) tile[y][tx] = xb[r * S + s];
    }
    __syncthreads();
    for (int y = ty; y < kTile; y += 8) {
      const int64_t s = s0 + y, r = r0 + tx;
      if (s < S && r < R) ob[s * R + r] = tile[tx][y];
    }
    __syncthreads();  // the tile is read before the next one overwrites it
  }
}

unsigned block_grid(int64_t blocks) {
  return unsigned(blocks < 1 ? 1 : (blocks > 65535 * 4 ? 65535 * 4 : blocks));
}

}  // namespace

// ---- losses ----------------------------------------------------------------------------------------------
void xent_dense(const Buffer& x, const Buffer& t, int64_t outer, int64_t K, int64_t inner, bool logits, double eps,
                Buffer& loss, Buffer& aux) {
  const char* op = "categorical_crossentropy";
  check_xent_dense(x, t, outer, K, inner, loss, aux);
  Context& c = op_device(op, {&x, &t, &loss, &aux});
  if (outer * inner == 0) return;
  xent_dense_kernel<<<warp_grid(outer * inner), 256, 0, c.stream>>>(x.data<float>(), t.data<float>(), outer, K, inner,
                                                                    logits, float(eps), loss.data<float>(),
                                                                    aux.data<float>());
  launched(c, op);
}

void xent_dense_grad(const Buffer& x, const Buffer& t, const Buffer& aux, const Buffer& g, int64_t outer, int64_t K,
                     int64_t inner, bool logits, double eps, Buffer* dx, Buffer* dt) {
  const char* op = "categorical_crossentropy_grad";
  check_xent_dense_grad(x, t, aux, g, outer, K, inner, dx, dt);
  Context& c = op_device(op, {&x, &t, &aux, &g, dx, dt});
  if (outer * inner * K == 0 || (!dx && !dt)) return;
  xent_dense_grad_kernel<<<warp_grid(outer * inner), 256, 0, c.stream>>>(
      x.data<float>(), t.data<float>(), aux.data<float>(), g.data<float>(), outer, K, inner, logits, float(eps),
      dx ? dx->data<float>() : nullptr, dt ? dt->data<float>() : nullptr);
  launched(c, op);
}

void bce(const Buffer& t, const Buffer& x, bool logits, double eps, Buffer& out) {
  const char* op = "binary_crossentropy";
  check_bce(t, x, out);
  Context& c = op_device(op, {&t, &x, &out});
  const int64_t n = t.numel;
  if (n == 0) return;
  bce_kernel<<<grid_for(n), 256, 0, c.stream>>>(t.data<float>(), x.data<float>(), logits, float(eps),
                                                out.data<float>(), n);
  launched(c, op);
}

void bce_grad(const Buffer& t, const Buffer& x, const Buffer& g, bool logits, double eps, Buffer* dx, Buffer* dt) {
  const char* op = "binary_crossentropy_grad";
  check_bce_grad(t, x, g, dx, dt);
  Context& c = op_device(op, {&t, &x, &g, dx, dt});
  const int64_t n = t.numel;
  if (n == 0 || (!dx && !dt)) return;
  bce_grad_kernel<<<grid_for(n), 256, 0, c.stream>>>(t.data<float>(), x.data<float>(), g.data<float>(), logits,
                                                     float(eps), dx ? dx->data<float>() : nullptr,
                                                     dt ? dt->data<float>() : nullptr, n);
  launched(c, op);
}

void one_hot(const Buffer& ids, int64_t outer, int64_t K, int64_t inner, Buffer& out) {
  const char* op = "one_hot";
  check_one_hot(ids, outer, K, inner, out);
  Context& c = op_device(op, {&ids, &out});
  // As the CPU: the output is zeroed, then an output dtype without ones to write raises.
  if (out.numel) LAMINA_CUDA_CHECK(cudaMemsetAsync(out.ptr, 0, size_t(out.numel) * dtype_size(out.dtype), c.stream));
  switch (out.dtype) {
    case F32: case I32: case I64: case BOOL: break;
    case I8: case BF16: one_hot_dtype_error(out.dtype);
  }
  if (outer * inner == 0 || K == 0) return;
  switch (out.dtype) {
    case F32: launch_one_hot<float>(c, ids, outer, K, inner, out); break;
    case I32: launch_one_hot<int32_t>(c, ids, outer, K, inner, out); break;
    case I64: launch_one_hot<int64_t>(c, ids, outer, K, inner, out); break;
    default: launch_one_hot<uint8_t>(c, ids, outer, K, inner, out); break;
  }
  launched(c, op);
}

// ---- indexing --------------------------------------------------------------------------------------------
void take_along_axis(const Buffer& x, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, int64_t m,
                     Buffer& out) {
  const char* op = "take_along_axis";
  check_take_along(x, outer, n, inner, idx, m, out);
  Context& c = op_device(op, {&x, &idx, &out});
  check_index_dtype(op, idx);
  // The CPU's IndexError, deferred to the host's next wait (gpu.h); bad indices gather zeros.
  defer_range_check(c, idx, -n, n, [n](int64_t j, int64_t v) {
    return index_out_of_bounds("take_along_axis", v, j, n);
  }, CheckError::Index);
  if (out.numel == 0) return;
  switch (dtype_size(x.dtype)) {
    case 1: launch_take_along<uint8_t>(c, x, n, inner, idx, m, out); break;
    case 2: launch_take_along<uint16_t>(c, x, n, inner, idx, m, out); break;
    case 4: launch_take_along<uint32_t>(c, x, n, inner, idx, m, out); break;
    default: launch_take_along<unsigned long long>(c, x, n, inner, idx, m, out); break;
  }
  launched(c, op);
}

void take_along_axis_grad(const Buffer& g, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, int64_t m,
                          Buffer& gx) {
  const char* op = "take_along_axis_grad";
  check_take_along_grad(g, outer, n, inner, idx, m, gx);
  Context& c = op_device(op, {&g, &idx, &gx});
  check_index_dtype(op, idx);
  if (gx.numel == 0) return;  // no columns, or no outputs in them (then every index is out of range)
  LAMINA_CUDA_CHECK(cudaMemsetAsync(gx.ptr, 0, size_t(gx.numel) * sizeof(float), c.stream));
  if (m == 0) return;
  const int64_t cols = outer * inner;
  // A block per column where there are too few columns to fill the device and the index runs are
  // long; a thread per column otherwise.
  const bool by_blocks = cols < 2048 && m > 64;
  if (idx.dtype == I32) {
    if (by_blocks)
      take_along_grad_blocks<int32_t><<<block_grid(cols), kAlongThreads, 0, c.stream>>>(
          g.data<float>(), outer, n, inner, idx.data<int32_t>(), m, gx.data<float>());
    else
      take_along_grad_columns<int32_t><<<grid_for(cols), 256, 0, c.stream>>>(g.data<float>(), outer, n, inner,
                                                                             idx.data<int32_t>(), m, gx.data<float>());
  } else {
    if (by_blocks)
      take_along_grad_blocks<int64_t><<<block_grid(cols), kAlongThreads, 0, c.stream>>>(
          g.data<float>(), outer, n, inner, idx.data<int64_t>(), m, gx.data<float>());
    else
      take_along_grad_columns<int64_t><<<grid_for(cols), 256, 0, c.stream>>>(g.data<float>(), outer, n, inner,
                                                                             idx.data<int64_t>(), m, gx.data<float>());
  }
  launched(c, op);
}

int64_t count_nonzero(const Buffer& x) {
  const char* op = "count_nonzero";
  Context& c = op_device(op, {&x});
  if (x.numel == 0) return 0;
  Buffer acc(1, I64, x.device);
  auto* total = acc.data<unsigned long long>();
  LAMINA_CUDA_CHECK(cudaMemsetAsync(acc.ptr, 0, 8, c.stream));
  switch (x.dtype) {
    case F32: launch_count<float>(c, x, total); break;
    case I32: launch_count<int32_t>(c, x, total); break;
    case I64: launch_count<int64_t>(c, x, total); break;
    case BF16: launch_count<uint16_t>(c, x, total); break;
    default: launch_count<uint8_t>(c, x, total); break;  // bool, int8
  }
  launched(c, op);
  unsigned long long r = 0;
  LAMINA_CUDA_CHECK(cudaMemcpyAsync(&r, total, 8, cudaMemcpyDeviceToHost, c.stream));
  LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  return int64_t(r);
}

void nonzero(const Buffer& x, const Shape& shape, const std::vector<BufferPtr>& outs) {
  const char* op = "nonzero";
  Context& c = op_device(op, {&x});
  for (const BufferPtr& o : outs) op_device(op, {&x, o.get()});
  check_nonzero(x, shape, outs.size());
  if (int(shape.size()) > kMaxDims)
    throw Unsupported(std::string(op) + ": more than " + std::to_string(kMaxDims) + " dimensions");
  const int64_t n = x.numel;
  if (n == 0) {
    for (const BufferPtr& o : outs) check_nonzero_out(o.get(), 0);
    return;
  }
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  Buffer counts(chunks + 1, I64, x.device);
  long long* cp = counts.data<long long>();
  const unsigned grid = block_grid(chunks);
  switch (x.dtype) {
    case F32: chunk_count_kernel<float><<<grid, kScanThreads, 0, c.stream>>>(x.data<float>(), n, chunks, cp); break;
    case I32: chunk_count_kernel<int32_t><<<grid, kScanThreads, 0, c.stream>>>(x.data<int32_t>(), n, chunks, cp); break;
    case I64: chunk_count_kernel<int64_t><<<grid, kScanThreads, 0, c.stream>>>(x.data<int64_t>(), n, chunks, cp); break;
    case BF16: chunk_count_kernel<uint16_t><<<grid, kScanThreads, 0, c.stream>>>(x.data<uint16_t>(), n, chunks, cp); break;
    default: chunk_count_kernel<uint8_t><<<grid, kScanThreads, 0, c.stream>>>(x.data<uint8_t>(), n, chunks, cp); break;
  }
  chunk_offsets_kernel<<<1, kScanThreads, 0, c.stream>>>(cp, chunks);
  launched(c, op);
  long long count = 0;
  LAMINA_CUDA_CHECK(cudaMemcpyAsync(&count, cp + chunks, 8, cudaMemcpyDeviceToHost, c.stream));
  LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  NonzeroOuts p;
  p.nd = int(shape.size());
  for (int k = 0; k < p.nd; ++k) {
    const Buffer* o = outs[size_t(k)].get();
    check_nonzero_out(o, int64_t(count));
    p.dims[k] = shape[size_t(k)];
    p.out[k] = o->data<long long>();
  }
  if (count == 0) return;
  switch (x.dtype) {
    case F32: nonzero_write_kernel<float><<<grid, kScanThreads, 0, c.stream>>>(x.data<float>(), n, chunks, cp, p); break;
    case I32: nonzero_write_kernel<int32_t><<<grid, kScanThreads, 0, c.stream>>>(x.data<int32_t>(), n, chunks, cp, p); break;
    case I64: nonzero_write_kernel<int64_t><<<grid, kScanThreads, 0, c.stream>>>(x.data<int64_t>(), n, chunks, cp, p); break;
    case BF16: nonzero_write_kernel<uint16_t><<<grid, kScanThreads, 0, c.stream>>>(x.data<uint16_t>(), n, chunks, cp, p); break;
    default: nonzero_write_kernel<uint8_t><<<grid, kScanThreads, 0, c.stream>>>(x.data<uint8_t>(), n, chunks, cp, p); break;
  }
  launched(c, op);
}

void tri(const Buffer& x, int64_t batch, int64_t rows, int64_t cols, int64_t k, bool upper, Buffer& out) {
  const char* op = upper ? "triu" : "tril";
  check_tri(x, batch, rows, cols, upper, out);
  Context& c = op_device(op, {&x, &out});
  const int64_t total = x.numel;
  if (total == 0) return;
  k = tri_clamped_k(k, rows, cols);
  const unsigned gr = grid_for(total);
  switch (dtype_size(x.dtype)) {
    case 1: tri_kernel<uint8_t><<<gr, 256, 0, c.stream>>>(x.data<uint8_t>(), rows, cols, k, upper, out.data<uint8_t>(), total); break;
    case 2: tri_kernel<uint16_t><<<gr, 256, 0, c.stream>>>(x.data<uint16_t>(), rows, cols, k, upper, out.data<uint16_t>(), total); break;
    case 4: tri_kernel<uint32_t><<<gr, 256, 0, c.stream>>>(x.data<uint32_t>(), rows, cols, k, upper, out.data<uint32_t>(), total); break;
    default:
      tri_kernel<unsigned long long><<<gr, 256, 0, c.stream>>>(x.data<unsigned long long>(), rows, cols, k, upper,
                                                               out.data<unsigned long long>(), total);
      break;
  }
  launched(c, op);
}

void arange(Buffer& out, double start, double step) {
  const char* op = "arange";
  Context& c = op_device(op, {&out});
  const int64_t n = out.numel;
  switch (out.dtype) {
    case F32: case I32: case I64: break;
    case BOOL: case I8: case BF16: range_dtype_error(op, out.dtype);
  }
  if (n == 0) return;
  const unsigned gr = grid_for(n);
  switch (out.dtype) {
    case F32: arange_kernel<float><<<gr, 256, 0, c.stream>>>(out.data<float>(), n, start, step); break;
    case I32: arange_kernel<int32_t><<<gr, 256, 0, c.stream>>>(out.data<int32_t>(), n, start, step); break;
    default: arange_kernel<int64_t><<<gr, 256, 0, c.stream>>>(out.data<int64_t>(), n, start, step); break;
  }
  launched(c, op);
}

void linspace(Buffer& out, double start, double stop, bool endpoint) {
  const char* op = "linspace";
  Context& c = op_device(op, {&out});
  const int64_t n = out.numel;
  if (n == 0) return;
  switch (out.dtype) {
    case F32: case I32: case I64: break;
    case BOOL: case I8: case BF16: range_dtype_error(op, out.dtype);
  }
  const double step = linspace_step(n, start, stop, endpoint);
  const unsigned gr = grid_for(n);
  switch (out.dtype) {
    case F32: linspace_kernel<float, false><<<gr, 256, 0, c.stream>>>(out.data<float>(), n, start, stop, step, endpoint); break;
    case I32: linspace_kernel<int32_t, true><<<gr, 256, 0, c.stream>>>(out.data<int32_t>(), n, start, stop, step, endpoint); break;
    default: linspace_kernel<int64_t, true><<<gr, 256, 0, c.stream>>>(out.data<int64_t>(), n, start, stop, step, endpoint); break;
  }
  launched(c, op);
}

void batch_transpose(const Buffer& x, int64_t B, int64_t R, int64_t S, Buffer& out) {
  const char* op = "batch_transpose";
  check_batch_transpose(x, B, R, S, out);
  Context& c = op_device(op, {&x, &out});
  if (x.numel == 0) return;
  const int64_t tiles = B * ((R + kTile - 1) / kTile) * ((S + kTile - 1) / kTile);
  batch_transpose_kernel<<<block_grid(tiles), 256, 0, c.stream>>>(x.data<float>(), B, R, S, out.data<float>());
  launched(c, op);
}

}  // namespace gpu
}  // namespace lamina
