// Matrix products: matmul (batched, broadcast batch dimensions, optional accumulate and bias) and
// the 2-D gemm, both on one tiled float32 kernel (64 x 64 tiles of C, 16-deep slices of K in
// shared memory, 4 x 4 results a thread). float32 throughout: no TF32.
#include <vector>

#include "gemm_tile.cuh"
#include "gpu.h"

namespace lamina {
namespace gpu {

constexpr int kBM = kTileM, kBN = kTileN, kMaxBatchDims = 6;

struct BatchMap {
  int nb = 0;
  int64_t dims[kMaxBatchDims];
  int64_t sa[kMaxBatchDims], sb[kMaxBatchDims];
};

template <bool TA, bool TB>
__global__ void __launch_bounds__(256) sgemm_tiled(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                                                   int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                                                   int64_t ldc, const float* bias, BatchMap bm, int64_t batches) {
  __shared__ TileSlices sh;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = int64_t(blockIdx.y) * kBM, n0 = int64_t(blockIdx.x) * kBN;
  for (int64_t z = blockIdx.z; z < batches; z += gridDim.z) {
    int64_t rem = z, oa = 0, ob = 0;
    for (int k = bm.nb - 1; k >= 0; --k) {
      const int64_t idx = rem % bm.dims[k];
      rem /= bm.dims[k];
      oa += idx * bm.sa[k];
      ob += idx * bm.sb[k];
    }
    float* Cz = C + z * M * ldc;
    float acc[4][4];
    gemm_tile<TA, TB>(A + oa, lda, B + ob, ldb, M, N, K, m0, n0, sh, acc);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t m = m0 + ty + 16 * i;
      if (m >= M) continue;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t n = n0 + tx + 16 * j;
        if (n >= N) continue;
        float v = alpha * acc[i][j];
        if (beta != 0.f) v += beta * Cz[m * ldc + n];  // beta == 0 never reads C
        if (bias) v += bias[n];
        Cz[m * ldc + n] = v;
      }
    }
  }
}

__global__ void add_bias_kernel(float* C, const float* bias, int64_t n, int64_t N) {
  GRID_STRIDE(i, n)
    C[i] += bias[i % N];
}

// The stride between consecutive batches of an operand when it is the same for every batch
// (the operand has every batch dimension, or none): -1 otherwise.
static int64_t uniform_stride(const BatchMap& bm, const int64_t* st) {
  if (bm.nb == 0) return 0;
  const int64_t s = st[bm.nb - 1];
  int64_t span = 1;
  for (int k = bm.nb - 1; k >= 0; --k) {
    if (bm.dims[k] != 1 && st[k] != s * span) return -1;
    span *= bm.dims[k];
  }
  return s;
}

static void launch(Context& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* bias,
                   const BatchMap& bm, int64_t batches) {
  if (M == 0 || N == 0 || batches == 0) return;
  const int64_t sa = uniform_stride(bm, bm.sa), sb = uniform_stride(bm, bm.sb);
  if (sa >= 0 && sb >= 0 && (batches == 1 || ldc == N) &&
      cublas_gemm(c, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, M * ldc, batches)) {
    if (bias) {
      const int64_t n = batches * M * N;  // matmul's output is packed (ldc == N)
      add_bias_kernel<<<grid_for(n), 256, 0, c.stream>>>(C, bias, n, N);
    }
    return;
  }
  LAMINA_CHECK((M + kBM - 1) / kBM <= 65535, "matmul: more than " << 65535 * kBM << " rows");
  dim3 grid(unsigned((N + kBN - 1) / kBN), unsigned((M + kBM - 1) / kBM), unsigned(batches < 65535 ? batches : 65535));
  auto s = c.stream;
  if (!ta && !tb) sgemm_tiled<false, false><<<grid, 256, 0, s>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, bm, batches);
  else if (ta && !tb) sgemm_tiled<true, false><<<grid, 256, 0, s>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, bm, batches);
  else if (!ta && tb) sgemm_tiled<false, true><<<grid, 256, 0, s>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, bm, batches);
  else sgemm_tiled<true, true><<<grid, 256, 0, s>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, bm, batches);
}

// out[r, j] = round(acc[r, j] + bias[j]): the float32 products of a bfloat16 matmul, its bias
// (float32 or bfloat16) added, written to a bfloat16 or float32 output.
template <class BiasT, class OutT>
__global__ void finish_bf16_kernel(const float* acc, const BiasT* bias, OutT* out, int64_t n, int64_t N) {
  GRID_STRIDE(i, n) {
    float v = acc[i];
    if (bias) {
      if constexpr (std::is_same<BiasT, uint16_t>::value) v += bf16_to_f32(bias[i % N]);
      else v += bias[i % N];
    }
    if constexpr (std::is_same<OutT, uint16_t>::value) out[i] = f32_to_bf16(v);
    else out[i] = v;
  }
}

__global__ void bf16_to_f32_kernel(const uint16_t* s, float* d, int64_t n) {
  GRID_STRIDE(i, n) d[i] = bf16_to_f32(s[i]);
}

// matmul's batch dimensions as the kernels take them.
static BatchMap batch_map(const MatmulPlan& p) {
  BatchMap bm;
  bm.nb = int(p.batch.size());
  for (int k = 0; k < bm.nb; ++k) {
    bm.dims[k] = p.batch[size_t(k)];
    bm.sa[k] = p.sa[size_t(k)];
    bm.sb[k] = p.sb[size_t(k)];
  }
  return bm;
}

// bfloat16 operands (mixed precision): cuBLAS GemmStridedBatchedEx with float32 compute; without
// cuBLAS, or with batch strides it cannot take, the host's kernel (Unsupported).
static void matmul_bf16(const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os,
                        bool trans_a, bool trans_b, bool accumulate, const Buffer* bias) {
  const MatmulPlan p = plan_matmul(a, as, b, bs, o, os, trans_a, trans_b, bias, BF16);
  if (p.batch.size() > size_t(kMaxBatchDims)) throw Unsupported("matmul: more than 6 batch dimensions");
  const BatchMap bm = batch_map(p);
  const int64_t sa = uniform_stride(bm, bm.sa), sb = uniform_stride(bm, bm.sb);
  if (sa < 0 || sb < 0) throw Unsupported("matmul: bfloat16 operands with these batch strides run on the host");
  Context& c = op_device("matmul", {&a, &b, &o, bias});
  const int64_t M = p.M, N = p.N, total = p.batches * M * N;
  if (total == 0) return;
  const bool out_bf16 = o.dtype == BF16;
  const bool direct = !bias || !out_bf16;  // else: float32 products, then bias and one rounding
  Buffer tmp(direct ? 0 : total, F32, o.device);
  if (!direct && accumulate) bf16_to_f32_kernel<<<grid_for(total), 256, 0, c.stream>>>(o.data<uint16_t>(), tmp.data<float>(), total);
  void* C = direct ? o.ptr : tmp.ptr;
  if (!cublas_gemm_bf16(c, trans_a, trans_b, M, N, p.K, a.ptr, as.back(), sa, b.ptr, bs.back(), sb,
                        accumulate ? 1.f : 0.f, C, direct && out_bf16, N, M * N, p.batches))
    throw Unsupported("matmul: bfloat16 products need cuBLAS (GemmStridedBatchedEx); this one runs on the host");
  if (bias) {
    const int64_t n = total;
    if (out_bf16) {  // from tmp
      if (bias->dtype == BF16) finish_bf16_kernel<<<grid_for(n), 256, 0, c.stream>>>(tmp.data<float>(), bias->data<uint16_t>(), o.data<uint16_t>(), n, N);
      else finish_bf16_kernel<<<grid_for(n), 256, 0, c.stream>>>(tmp.data<float>(), bias->data<float>(), o.data<uint16_t>(), n, N);
    } else {  // in place on the float32 output
      if (bias->dtype == BF16) finish_bf16_kernel<<<grid_for(n), 256, 0, c.stream>>>(o.data<float>(), bias->data<uint16_t>(), o.data<float>(), n, N);
      else add_bias_kernel<<<grid_for(n), 256, 0, c.stream>>>(o.data<float>(), bias->data<float>(), n, N);
    }
  }
  launched(c, "matmul");
}

void matmul(const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os,
            bool trans_a, bool trans_b, bool accumulate, const Buffer* bias) {
  if (a.dtype == BF16) return matmul_bf16(a, as, b, bs, o, os, trans_a, trans_b, accumulate, bias);
  const MatmulPlan p = plan_matmul(a, as, b, bs, o, os, trans_a, trans_b, bias);
  if (p.batch.size() > size_t(kMaxBatchDims)) throw Unsupported("matmul: more than 6 batch dimensions");
  const BatchMap bm = batch_map(p);
  Context& c = op_device("matmul", {&a, &b, &o, bias});
  launch(c, trans_a, trans_b, p.M, p.N, p.K, 1.f, a.data<float>(), as.back(), b.data<float>(), bs.back(),
         accumulate ? 1.f : 0.f, o.data<float>(), p.N, bias ? bias->data<float>() : nullptr, bm, p.batches);
  launched(c, "matmul");
}

void gemm_f32(Context& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  BatchMap bm;
  launch(c, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nullptr, bm, 1);
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const Buffer& a, const Buffer& b,
          double beta, Buffer& c, int64_t lda, int64_t ldb, int64_t ldc) {
  check_gemm(ta, tb, M, N, K, a, b, c, &lda, &ldb, &ldc);
  Context& ctx = op_device("gemm", {&a, &b, &c});
  BatchMap bm;
  launch(ctx, ta, tb, M, N, K, float(alpha), a.data<float>(), lda, b.data<float>(), ldb, float(beta), c.data<float>(),
         ldc, nullptr, bm, 1);
  launched(ctx, "gemm");
}

}  // namespace gpu
}  // namespace lamina
