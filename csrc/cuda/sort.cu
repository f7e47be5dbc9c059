// Sorting on the device, and the kernels built on a sort: sort_rows (sort, argsort, top-k),
// sparse_sort / sparse_segment_sum (IndexedSlices deduplication), random_shuffle; and
// random_categorical (an inverse CDF). Results are the CPU module's exactly (csrc/cpu/sorting.cpp,
// embedding.cpp, random.cpp).
//
// Every sort here orders (key, index) pairs, the index being the position in the row: each CPU
// comparator is a total order that breaks ties by the lower position, so mapping its values to
// 64-bit keys that compare the same way makes the answer unique, whatever the algorithm.
// sort_rows: float32 to keys with -0 == +0 and every NaN one key above +inf (ascending; the
// descending key is the complement, NaN first); integers with the sign bit flipped.
// random_shuffle: the CPU's 64-bit Philox keys. sparse_sort: the ids.
// The sort: one block sorts each tile of up to 2048 pairs in shared memory (bitonic); longer rows
// are then merged in passes of doubling run length, each pair placed by its rank in the other
// run (a binary search), and the last pass writes the first k positions of each row.
//
// sparse_segment_sum adds each segment's rows in position order (one thread per output element),
// as the CPU does, and checks the permutation on the device first (one wait, as sparse_sort's
// range check and count): the same error, at the same position, as the CPU's.
// random_categorical: exp(x - max) with glibc's exp (exp_glibc.cuh) and the running sums in
// order, in double, as random.cpp; each draw is lane e % 4 of Philox block e / 4.
#include <cstring>
#include <utility>

#include "../sort_checks.h"
#include "exp_glibc.cuh"
#include "philox.cuh"
#include "sort.h"

namespace lamina {
namespace gpu {

using philox::Block;
using philox::Stream;

namespace {

constexpr int kTile = 2048;  // pairs one block sorts in shared memory
constexpr int kThreads = 256;

unsigned block_grid(int64_t blocks) { return unsigned(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks)); }

// (ka, ia) comes before (kb, ib): by key, then by index.
template <class I>
__host__ __device__ __forceinline__ bool before(uint64_t ka, I ia, uint64_t kb, I ib) {
  return ka < kb || (ka == kb && ia < ib);
}

// ---- keys ------------------------------------------------------------------------------------------
// Ascending keys: NaN above everything (all NaNs one key), -0 == +0.
__device__ __forceinline__ uint64_t ascending_key(float v) {
  if (v != v) return ~0ull;
  const float z = v == 0.f ? 0.f : v;
  uint32_t b;
  memcpy(&b, &z, 4);
  return uint64_t((b & 0x80000000u) ? ~b : (b | 0x80000000u));
}
__device__ __forceinline__ uint64_t ascending_key(int32_t v) { return uint64_t(int64_t(v)) ^ (1ull << 63); }
__device__ __forceinline__ uint64_t ascending_key(int64_t v) { return uint64_t(v) ^ (1ull << 63); }

// sort_rows: the value at (row, i); descending complements the key (larger first, NaN first).
template <class T>
struct ValueKey {
  const T* x;
  int64_t n;
  bool descending;
  __device__ uint64_t operator()(int64_t row, int64_t i) const {
    const uint64_t a = ascending_key(x[row * n + i]);
    return descending ? ~a : a;
  }
};

// random_shuffle: position r's 64-bit key, words 2 (r % 2) and the next of Philox block r / 2.
struct ShuffleKey {
  Stream s;
  __device__ uint64_t operator()(int64_t, int64_t r) const {
    const Block w = s.block(uint64_t(r / 2));
    const int j = int(r & 1) * 2;
    return (uint64_t(w.v[j]) << 32) | w.v[j + 1];
  }
};

// sparse_sort: the id at position i (checked to lie in [0, V) before the sort).
template <class I>
struct IdKey {
  const I* ids;
  __device__ uint64_t operator()(int64_t, int64_t i) const { return uint64_t(int64_t(ids[i])); }
};

// ---- the sort --------------------------------------------------------------------------------------
// Each block sorts tiles (row, t) of positions [t * kTile, t * kTile + len) of a row: P (a power of
// two >= len) pairs in shared memory, padded with pairs after every real one, by a bitonic network.
// One tile per row (out_idx set): writes the row's first k positions to out_idx (rows x k).
// Otherwise writes each sorted tile as a run of (key, position) to run_keys / run_idx (rows x n).
template <class KeyFn>
__global__ void __launch_bounds__(kThreads) tile_sort_kernel(KeyFn key, int64_t rows, int64_t n, int64_t tiles, int P,
                                                             int64_t k, int64_t* out_idx, uint64_t* run_keys,
                                                             int64_t* run_idx) {
  __shared__ uint64_t sk[kTile];
  __shared__ uint32_t si[kTile];
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int64_t t = blockIdx.x; t < rows * tiles; t += gridDim.x) {
    const int64_t row = t / tiles, start = (t - row * tiles) * kTile;
    const int len = int(n - start < kTile ? n - start : kTile);
    for (int i = tid; i < P; i += nt) {
      const bool real = i < len;
      sk[i] = real ? key(row, start + i) : ~0ull;
      si[i] = real ? uint32_t(i) : 0xffffffffu;
    }
    __syncthreads();
    for (int size = 2; size <= P; size <<= 1) {
      for (int stride = size >> 1; stride > 0; stride >>= 1) {
        for (int c = tid; c < P / 2; c += nt) {
          const int i = 2 * c - (c & (stride - 1)), j = i + stride;  // pairs (i, i + stride) within blocks of 2 stride
          const uint64_t ki = sk[i], kj = sk[j];
          const uint32_t ii = si[i], ij = si[j];
          const bool up = (i & size) == 0;
          if (up ? before(kj, ij, ki, ii) : before(ki, ii, kj, ij)) {
            sk[i] = kj;
            sk[j] = ki;
            si[i] = ij;
            si[j] = ii;
          }
        }
        __syncthreads();
      }
    }
    if (out_idx) {
      for (int i = tid; i < k; i += nt) out_idx[row * k + i] = int64_t(si[i]);
    } else {
      for (int i = tid; i < len; i += nt) {
        run_keys[row * n + start + i] = sk[i];
        run_idx[row * n + start + i] = start + int64_t(si[i]);
      }
    }
    __syncthreads();  // before the next tile overwrites shared memory
  }
}

// How many pairs of the sorted range [lo, hi) come before (key, id).
__device__ __forceinline__ int64_t count_before(const uint64_t* keys, const int64_t* idx, int64_t lo, int64_t hi,
                                                uint64_t key, int64_t id) {
  int64_t a = lo, b = hi;
  while (a < b) {
    const int64_t mid = a + (b - a) / 2;
    if (before(keys[mid], idx[mid], key, id)) a = mid + 1;
    else b = mid;
  }
  return a - lo;
}

// Merges runs [a0, a0 + width) and [a0 + width, a0 + 2 width) of each row: a pair's place is its
// offset in its run plus the number of pairs of the other run before it (pairs are distinct).
// out_idx set (the last pass): writes the positions of the first k places of each row there.
__global__ void merge_pass_kernel(const uint64_t* kin, const int64_t* iin, uint64_t* kout, int64_t* iout, int64_t rows,
                                  int64_t n, int64_t width, int64_t k, int64_t* out_idx) {
  GRID_STRIDE(g, rows * n) {
    const int64_t row = g / n, p = g - row * n;
    const uint64_t* rk = kin + row * n;
    const int64_t* ri = iin + row * n;
    const int64_t a0 = p / (2 * width) * (2 * width);
    const int64_t b0 = a0 + width < n ? a0 + width : n;
    const int64_t b1 = a0 + 2 * width < n ? a0 + 2 * width : n;
    const uint64_t key = kin[g];
    const int64_t id = iin[g];
    const int64_t pos = p < b0 ? p + count_before(rk, ri, b0, b1, key, id)
                               : p - (b0 - a0) + count_before(rk, ri, a0, b0, key, id);
    if (out_idx) {
      if (pos < k) out_idx[row * k + pos] = id;
    } else {
      kout[row * n + pos] = key;
      iout[row * n + pos] = id;
    }
  }
}

// out_idx (rows x k): the positions of the first k pairs (key(row, i), i) of each row of n, sorted.
template <class KeyFn>
void sort_positions(Context& c, int device, const char* op, KeyFn key, int64_t rows, int64_t n, int64_t k,
                    int64_t* out_idx) {
  if (rows == 0 || k == 0) return;
  const int64_t tiles = (n + kTile - 1) / kTile;
  int P = 1;
  while (P < n && P < kTile) P <<= 1;
  const int threads = P / 2 < 32 ? 32 : (P / 2 > kThreads ? kThreads : P / 2);
  if (tiles == 1) {
    tile_sort_kernel<KeyFn><<<block_grid(rows), threads, 0, c.stream>>>(key, rows, n, 1, P, k, out_idx, nullptr,
                                                                       nullptr);
    launched(c, op);
    return;
  }
  const int64_t total = rows * n;
  Buffer k0(total, I64, device), i0(total, I64, device), k1(total, I64, device), i1(total, I64, device);
  uint64_t *kin = k0.data<uint64_t>(), *kout = k1.data<uint64_t>();
  int64_t *iin = i0.data<int64_t>(), *iout = i1.data<int64_t>();
  tile_sort_kernel<KeyFn><<<block_grid(rows * tiles), threads, 0, c.stream>>>(key, rows, n, tiles, P, k, nullptr, kin,
                                                                             iin);
  launched(c, op);
  for (int64_t width = kTile; width < n; width *= 2) {
    int64_t* last = 2 * width >= n ? out_idx : nullptr;
    merge_pass_kernel<<<grid_for(total), kThreads, 0, c.stream>>>(kin, iin, kout, iout, rows, n, width, k, last);
    launched(c, op);
    std::swap(kin, kout);
    std::swap(iin, iout);
  }
}

// ---- sort_rows ---------------------------------------------------------------------------------------
template <class T>
__global__ void gather_values_kernel(const T* x, const int64_t* idx, int64_t n, int64_t k, int64_t total, T* v) {
  GRID_STRIDE(e, total) v[e] = x[(e / k) * n + idx[e]];
}

template <class T>
void sort_typed(Context& c, const Buffer& xb, int64_t outer, int64_t n, int64_t k, bool descending, Buffer& vb,
                Buffer& ib) {
  const T* x = xb.data<T>();
  int64_t* idx = ib.data<int64_t>();
  sort_positions(c, xb.device, "sort", ValueKey<T>{x, n, descending}, outer, n, k, idx);
  gather_values_kernel<T><<<grid_for(outer * k), kThreads, 0, c.stream>>>(x, idx, n, k, outer * k, vb.data<T>());
  launched(c, "sort");
}

// ---- random_shuffle ----------------------------------------------------------------------------------
// out[o, r, :] = x[o, perm[r], :], elements of E (the dtype's size).
template <class E>
__global__ void shuffle_rows_kernel(const E* x, const int64_t* perm, int64_t R, int64_t inner, int64_t total, E* o) {
  GRID_STRIDE(e, total) {
    const int64_t t = e / inner, cc = e - t * inner, oi = t / R, r = t - oi * R;
    o[e] = x[(oi * R + perm[r]) * inner + cc];
  }
}

template <class E>
void shuffle_rows(Context& c, const Buffer& xb, const int64_t* perm, int64_t R, int64_t inner, Buffer& ob) {
  shuffle_rows_kernel<E><<<grid_for(xb.numel), kThreads, 0, c.stream>>>(xb.data<E>(), perm, R, inner, xb.numel,
                                                                        ob.data<E>());
}

// ---- sparse_sort -------------------------------------------------------------------------------------
template <class I>
__global__ void range_check_kernel(const I* v, int64_t n, int64_t hi, unsigned long long* bad) {
  GRID_STRIDE(i, n)
    if (int64_t(v[i]) < 0 || int64_t(v[i]) >= hi) atomicMin(bad, (unsigned long long)i);
}

// nn_common.h's check_range on the device: the first id outside [0, hi) raises the CPU's error.
// Waits for the device.
void check_range(Context& c, const char* op, const char* what, const char* range_name, const Buffer& ids,
                 int64_t hi) {
  const int64_t n = ids.numel;
  if (n == 0) return;
  Buffer flag(1, I64, ids.device);
  LAMINA_CUDA_CHECK(cudaMemsetAsync(flag.ptr, 0xff, 8, c.stream));
  auto* bad = flag.data<unsigned long long>();
  if (ids.dtype == I32) range_check_kernel<<<grid_for(n), kThreads, 0, c.stream>>>(ids.data<int32_t>(), n, hi, bad);
  else range_check_kernel<<<grid_for(n), kThreads, 0, c.stream>>>(ids.data<int64_t>(), n, hi, bad);
  launched(c, op);
  unsigned long long i = 0;
  LAMINA_CUDA_CHECK(cudaMemcpyAsync(&i, bad, 8, cudaMemcpyDeviceToHost, c.stream));
  LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  if (i == ~0ull) return;
  int64_t v = 0;
  if (ids.dtype == I32) {
    int32_t w = 0;
    LAMINA_CUDA_CHECK(cudaMemcpyAsync(&w, ids.data<int32_t>() + i, 4, cudaMemcpyDeviceToHost, c.stream));
    LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));
    v = w;
  } else {
    LAMINA_CUDA_CHECK(cudaMemcpyAsync(&v, ids.data<int64_t>() + i, 8, cudaMemcpyDeviceToHost, c.stream));
    LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  }
  LAMINA_CHECK(false, op << ": " << what << " " << v << " at flat index " << i << " is out of range for " << hi << " "
                         << range_name << "; " << what << "s must lie in [0, " << hi << ")"
                         << (v < 0 ? " (negative values are not allowed)" : ""));
}

// Sum over a block of 256 threads into *out (one atomic a block).
__device__ __forceinline__ void block_add(unsigned long long m, unsigned long long* part, unsigned long long* out) {
  part[threadIdx.x] = m;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0 && part[0]) atomicAdd(out, part[0]);
}

// *count += the positions k >= 1 of perm whose id differs from position k - 1's.
template <class I>
__global__ void __launch_bounds__(kThreads) count_changes_kernel(const I* ids, const int64_t* perm, int64_t n,
                                                                  unsigned long long* count) {
  __shared__ unsigned long long part[kThreads];
  unsigned long long m = 0;
  GRID_STRIDE(k, n)
    if (k > 0 && ids[perm[k]] != ids[perm[k - 1]]) ++m;
  block_add(m, part, count);
}

template <class I>
void sort_ids(Context& c, const Buffer& ib, int64_t* perm, unsigned long long* count) {
  const int64_t n = ib.numel;
  const I* ids = ib.data<I>();
  sort_positions(c, ib.device, "IndexedSlices", IdKey<I>{ids}, 1, n, n, perm);
  count_changes_kernel<I><<<grid_for(n), kThreads, 0, c.stream>>>(ids, perm, n, count);
}

// ---- sparse_segment_sum ------------------------------------------------------------------------------
constexpr int kScanItems = 4, kScanBlock = kThreads * kScanItems;  // positions per scan block

// flags[k] = 1 where position k starts a new id (k == 0, or an id above position k - 1's); *bad =
// the first k where perm[k] is not a position in [0, n) or (perm[k - 1], perm[k]) is not in
// (id, position) order: the CPU's checks, whose first failure is the error raised.
template <class I>
__global__ void segment_flags_kernel(const I* ids, const int64_t* perm, int64_t n, int32_t* flags,
                                     unsigned long long* bad) {
  GRID_STRIDE(k, n) {
    const int64_t p = perm[k];
    int32_t f = 0;
    if (p < 0 || p >= n) {
      atomicMin(bad, (unsigned long long)k);
    } else if (k == 0) {
      f = 1;
    } else {
      const int64_t q = perm[k - 1];
      if (q >= 0 && q < n) {  // (otherwise the first failure is at k - 1)
        const I a = ids[q], b = ids[p];
        if (a < b || (a == b && q < p)) f = a != b;
        else atomicMin(bad, (unsigned long long)k);
      }
    }
    flags[k] = f;
  }
}

// counts[b] = the flags of scan block b (positions [b kScanBlock, (b + 1) kScanBlock)).
__global__ void __launch_bounds__(kThreads) block_counts_kernel(const int32_t* flags, int64_t n, int64_t blocks,
                                                                int64_t* counts) {
  __shared__ int64_t part[kThreads];
  const int tid = threadIdx.x;
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    int64_t m = 0;
    for (int j = 0; j < kScanItems; ++j) {
      const int64_t k = b * kScanBlock + int64_t(tid) * kScanItems + j;
      if (k < n) m += flags[k];
    }
    part[tid] = m;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
      if (tid < s) part[tid] += part[tid + s];
      __syncthreads();
    }
    if (tid == 0) counts[b] = part[0];
    __syncthreads();
  }
}

// One thread: counts become exclusive offsets; stats[2] = the number of segments; starts[u] = n.
__global__ void scan_counts_kernel(int64_t* counts, int64_t blocks, int64_t n, int64_t u, int64_t* starts,
                                   int64_t* stats) {
  int64_t acc = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t v = counts[b];
    counts[b] = acc;
    acc += v;
  }
  stats[2] = acc;
  starts[u] = n;
}

// starts[j] = the position where segment j begins (j < u); stats[1] = where segment u begins, if any.
__global__ void __launch_bounds__(kThreads) place_starts_kernel(const int32_t* flags, const int64_t* offsets, int64_t n,
                                                                int64_t blocks, int64_t u, int64_t* starts,
                                                                int64_t* stats) {
  __shared__ int64_t part[kThreads];
  const int tid = threadIdx.x;
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int64_t k0 = b * kScanBlock + int64_t(tid) * kScanItems;
    int64_t m = 0;
    for (int j = 0; j < kScanItems; ++j)
      if (k0 + j < n) m += flags[k0 + j];
    part[tid] = m;
    __syncthreads();
    if (tid == 0) {  // exclusive prefix over the block's threads
      int64_t acc = offsets[b];
      for (int t = 0; t < kThreads; ++t) {
        const int64_t v = part[t];
        part[t] = acc;
        acc += v;
      }
    }
    __syncthreads();
    int64_t seg = part[tid];
    for (int j = 0; j < kScanItems; ++j) {
      const int64_t k = k0 + j;
      if (k < n && flags[k]) {
        if (seg < u) starts[seg] = k;
        else if (seg == u) stats[1] = k;
        ++seg;
      }
    }
    __syncthreads();
  }
}

template <class I>
__global__ void segment_ids_kernel(const I* ids, const int64_t* perm, const int64_t* starts, int64_t u, int64_t* out) {
  GRID_STRIDE(j, u) out[j] = int64_t(ids[perm[starts[j]]]);
}

// out[j, d] = the sum of values[perm[m], d] over the positions m of segment j, in order, from 0.
__global__ void segment_sum_kernel(const float* vals, int64_t D, const int64_t* perm, const int64_t* starts, int64_t u,
                                   float* out) {
  GRID_STRIDE(e, u * D) {
    const int64_t j = e / D, d = e - j * D;
    float acc = 0.f;
    for (int64_t m = starts[j]; m < starts[j + 1]; ++m) acc += vals[perm[m] * D + d];
    out[e] = acc;
  }
}

template <class I>
void segment_sum_typed(Context& c, const Buffer& ib, const Buffer& vb, int64_t D, const Buffer& pb, int64_t u,
                       Buffer& oib, Buffer& ovb) {
  const char* op = "sparse_deduplicate";
  const int64_t n = ib.numel, blocks = (n + kScanBlock - 1) / kScanBlock;
  const I* ids = ib.data<I>();
  const int64_t* perm = pb.data<int64_t>();
  Buffer flags(n, I32, ib.device), counts(blocks, I64, ib.device), starts(u + 1, I64, ib.device),
      stats(3, I64, ib.device);
  int64_t* st = stats.data<int64_t>();
  LAMINA_CUDA_CHECK(cudaMemsetAsync(st, 0xff, 3 * sizeof(int64_t), c.stream));
  segment_flags_kernel<I><<<grid_for(n), kThreads, 0, c.stream>>>(ids, perm, n, flags.data<int32_t>(),
                                                                   reinterpret_cast<unsigned long long*>(st));
  block_counts_kernel<<<block_grid(blocks), kThreads, 0, c.stream>>>(flags.data<int32_t>(), n, blocks,
                                                                     counts.data<int64_t>());
  scan_counts_kernel<<<1, 1, 0, c.stream>>>(counts.data<int64_t>(), blocks, n, u, starts.data<int64_t>(), st);
  place_starts_kernel<<<block_grid(blocks), kThreads, 0, c.stream>>>(flags.data<int32_t>(), counts.data<int64_t>(), n,
                                                                     blocks, u, starts.data<int64_t>(), st);
  launched(c, op);
  uint64_t h[3];
  LAMINA_CUDA_CHECK(cudaMemcpyAsync(h, st, sizeof h, cudaMemcpyDeviceToHost, c.stream));
  LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  const uint64_t bad = h[0], over = h[1];  // ~0: none
  // the CPU's loop stops at the first failure: a (u + 1)-th segment, a position, or the order
  LAMINA_CHECK(!(over < bad), op << ": more than " << u << " distinct ids");
  if (bad != ~0ull) {
    int64_t p = 0;
    LAMINA_CUDA_CHECK(cudaMemcpyAsync(&p, perm + bad, 8, cudaMemcpyDeviceToHost, c.stream));
    LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));
    LAMINA_CHECK(p >= 0 && p < n, op << ": perm[" << bad << "] = " << p << " is not a position in [0, " << n << ")");
    LAMINA_CHECK(false, op << ": perm is not sorted by (id, position) at " << bad << "; build it with sparse_sort");
  }
  LAMINA_CHECK(int64_t(h[2]) == u, op << ": " << h[2] << " distinct ids, outputs sized for " << u);
  if (u == 0) return;
  segment_ids_kernel<I><<<grid_for(u), kThreads, 0, c.stream>>>(ids, perm, starts.data<int64_t>(), u,
                                                                 oib.data<int64_t>());
  if (D > 0)
    segment_sum_kernel<<<grid_for(u * D), kThreads, 0, c.stream>>>(vb.data<float>(), D, perm, starts.data<int64_t>(),
                                                                   u, ovb.data<float>());
  launched(c, op);
}

// ---- random_categorical ------------------------------------------------------------------------------
__device__ __forceinline__ bool finite_f32(float v) {
  uint32_t b;
  memcpy(&b, &v, 4);
  return (b & 0x7f800000u) != 0x7f800000u;
}

// std::max(m, v) as random.cpp calls it: keeps m unless m < v (a NaN never enters).
__device__ __forceinline__ float max_of(float m, float v) { return m < v ? v : m; }

// One block per row b: m = the largest logit; cum[b, k] = the running sum, in order, of the
// positive weights exp(x[b, k] - m) (glibc's exp, in double); total[b] = the sum; last[b] = the
// last class of positive weight (-1: none). The weights are computed in parallel, the sums by one
// thread in random.cpp's order.
__global__ void __launch_bounds__(kThreads) categorical_cdf_kernel(const float* x, int64_t B, int64_t K, double* cum,
                                                                   double* total, int64_t* last) {
  __shared__ float part[kThreads];
  const int tid = threadIdx.x;
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    const float* row = x + b * K;
    double* cr = cum + b * K;
    float m = -INFINITY;
    for (int64_t k = tid; k < K; k += kThreads) m = max_of(m, row[k]);
    part[tid] = m;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
      if (tid < s) part[tid] = max_of(part[tid], part[tid + s]);
      __syncthreads();
    }
    m = part[0];  // the largest number (its sign of zero may differ from the CPU's: no weight changes)
    const bool finite = finite_f32(m);
    for (int64_t k = tid; k < K; k += kThreads) cr[k] = finite ? glibc_math::exp(double(row[k]) - double(m)) : 0.0;
    __syncthreads();
    if (tid == 0) {
      double acc = 0.0;
      int64_t l = -1;
      for (int64_t k = 0; k < K; ++k) {
        const double p = cr[k];
        if (p > 0.0) {
          acc = philox::dadd(acc, p);
          l = k;
        }
        cr[k] = acc;
      }
      total[b] = acc;
      last[b] = l;
    }
    __syncthreads();
  }
}

// out[b, j] (e = b S + j): the first class whose running sum exceeds u * total, u = lane e % 4 of
// Philox block e / 4 times 2^-32 (std::upper_bound, capped at the last class of positive weight).
template <class T>
__global__ void categorical_draw_kernel(Stream s, const double* cum, const double* total, const int64_t* last,
                                        int64_t B, int64_t K, int64_t S, T* o) {
  GRID_STRIDE(e, B * S) {
    const int64_t b = e / S;
    const double acc = total[b];
    const int64_t l = last[b];
    int64_t k = 0;
    if (l >= 0 && acc > 0.0) {
      const Block w = s.block(uint64_t(e / 4));
      const double t = philox::dmul(philox::dmul(double(w.v[e % 4]), 2.3283064365386963e-10), acc);
      const double* cr = cum + b * K;
      int64_t lo = 0, hi = K;
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (t < cr[mid]) hi = mid;
        else lo = mid + 1;
      }
      k = lo > l ? l : lo;
    }
    o[e] = T(k);
  }
}

__global__ void glibc_exp_kernel(const double* x, int64_t n, double* y) {
  GRID_STRIDE(i, n) y[i] = glibc_math::exp(x[i]);
}

}  // namespace

void glibc_exp(const Buffer& x, Buffer& out) {
  const char* op = "_glibc_exp";
  check_dtype(op, "x", x, I64);
  check_count(op, "out", out, x.numel, I64);
  Context& c = op_device(op, {&x, &out});
  if (x.numel == 0) return;
  glibc_exp_kernel<<<grid_for(x.numel), kThreads, 0, c.stream>>>(x.data<double>(), x.numel, out.data<double>());
  launched(c, op);
}

void sort_rows(const Buffer& xb, int64_t outer, int64_t n, int64_t k, bool descending, Buffer& vb, Buffer& ib) {
  sort_args::check_sort_rows(xb, outer, n, k, vb, ib);
  Context& c = op_device("sort", {&xb, &vb, &ib});
  if (outer * k == 0) return;
  switch (xb.dtype) {
    case F32: sort_typed<float>(c, xb, outer, n, k, descending, vb, ib); break;
    case I32: sort_typed<int32_t>(c, xb, outer, n, k, descending, vb, ib); break;
    default: sort_typed<int64_t>(c, xb, outer, n, k, descending, vb, ib); break;  // I64 (checked)
  }
}

int64_t sparse_sort(const Buffer& ib, int64_t V, Buffer& pb) {
  const char* op = "IndexedSlices";
  sort_args::check_sparse_sort(ib, V, pb);
  Context& c = op_device(op, {&ib, &pb});
  check_range(c, op, "id", "rows (dense_shape[0])", ib, V);
  const int64_t n = ib.numel;
  if (n == 0) return 0;
  Buffer count(1, I64, ib.device);
  auto* cnt = count.data<unsigned long long>();
  LAMINA_CUDA_CHECK(cudaMemsetAsync(cnt, 0, 8, c.stream));
  if (ib.dtype == I32) sort_ids<int32_t>(c, ib, pb.data<int64_t>(), cnt);
  else sort_ids<int64_t>(c, ib, pb.data<int64_t>(), cnt);
  launched(c, op);
  unsigned long long changes = 0;
  LAMINA_CUDA_CHECK(cudaMemcpyAsync(&changes, cnt, 8, cudaMemcpyDeviceToHost, c.stream));
  LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  return int64_t(changes) + 1;
}

void sparse_segment_sum(const Buffer& ib, const Buffer& vb, int64_t D, const Buffer& pb, Buffer& oib, Buffer& ovb) {
  const char* op = "sparse_deduplicate";
  const int64_t u = sort_args::check_segment_sum(ib, vb, D, pb, oib, ovb);
  Context& c = op_device(op, {&ib, &vb, &pb, &oib, &ovb});
  if (ib.numel == 0) {
    LAMINA_CHECK(u == 0, op << ": 0 distinct ids, outputs sized for " << u);
    return;
  }
  if (ib.dtype == I32) segment_sum_typed<int32_t>(c, ib, vb, D, pb, u, oib, ovb);
  else segment_sum_typed<int64_t>(c, ib, vb, D, pb, u, oib, ovb);
}

void random_categorical(const Buffer& lb, int64_t B, int64_t K, uint64_t seed, uint64_t counter, int64_t S,
                        Buffer& out) {
  const char* op = "categorical";
  sort_args::check_categorical(lb, B, K, S, out);
  Context& c = op_device(op, {&lb, &out});
  if (B * S == 0) return;
  Buffer cum(B * K, I64, lb.device), total(B, I64, lb.device), last(B, I64, lb.device);  // cum, total: doubles
  categorical_cdf_kernel<<<block_grid(B), kThreads, 0, c.stream>>>(lb.data<float>(), B, K, cum.data<double>(),
                                                                    total.data<double>(), last.data<int64_t>());
  const Stream s(seed, counter);
  if (out.dtype == I32)
    categorical_draw_kernel<int32_t><<<grid_for(B * S), kThreads, 0, c.stream>>>(
        s, cum.data<double>(), total.data<double>(), last.data<int64_t>(), B, K, S, out.data<int32_t>());
  else
    categorical_draw_kernel<int64_t><<<grid_for(B * S), kThreads, 0, c.stream>>>(
        s, cum.data<double>(), total.data<double>(), last.data<int64_t>(), B, K, S, out.data<int64_t>());
  launched(c, op);
}

void random_shuffle(const Buffer& xb, int64_t outer, int64_t R, int64_t inner, uint64_t seed, uint64_t counter,
                    Buffer& ob) {
  const char* op = "shuffle";
  sort_args::check_shuffle(xb, outer, R, inner, ob);
  Context& c = op_device(op, {&xb, &ob});
  if (xb.numel == 0) return;
  Buffer perm(R, I64, xb.device);
  int64_t* p = perm.data<int64_t>();
  sort_positions(c, xb.device, op, ShuffleKey{Stream(seed, counter)}, 1, R, R, p);
  switch (dtype_size(xb.dtype)) {
    case 1: shuffle_rows<uint8_t>(c, xb, p, R, inner, ob); break;
    case 2: shuffle_rows<uint16_t>(c, xb, p, R, inner, ob); break;
    case 4: shuffle_rows<uint32_t>(c, xb, p, R, inner, ob); break;
    default: shuffle_rows<uint64_t>(c, xb, p, R, inner, ob); break;
  }
  launched(c, op);
}

}  // namespace gpu
}  // namespace lamina
