// Matrix products: matmul (batched, broadcast batch dimensions, optional accumulate and bias) and
// the 2-D gemm, both on one tiled float32 kernel (64 x 64 tiles of C, 16-deep slices of K in
// shared memory, 4 x 4 results a thread). float32 throughout: no TF32.
#include <vector>

#include "gpu.h"

namespace lamina {
namespace gpu {

constexpr int kBM = 64, kBN = 64, kBK = 16, kMaxBatchDims = 6;

struct BatchMap {
  int nb = 0;
  int64_t dims[kMaxBatchDims];
  int64_t sa[kMaxBatchDims], sb[kMaxBatchDims];
};

template <bool TA, bool TB>
__global__ void __launch_bounds__(256) sgemm_tiled(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                                                   int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                                                   int64_t ldc, const float* bias, BatchMap bm, int64_t batches) {
  __shared__ float As[kBK][kBM + 4];
  __shared__ float Bs[kBK][kBN + 4];
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
    const float* Az = A + oa;
    const float* Bz = B + ob;
    float* Cz = C + z * M * ldc;
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < K; k0 += kBK) {
      for (int l = threadIdx.x; l < kBM * kBK; l += 256) {
        int mm, kk;
        if (TA) { mm = l % kBM; kk = l / kBM; } else { kk = l % kBK; mm = l / kBK; }
        const int64_t gm = m0 + mm, gk = k0 + kk;
        float v = 0.f;
        if (gm < M && gk < K) v = TA ? Az[gk * lda + gm] : Az[gm * lda + gk];
        As[kk][mm] = v;
      }
      for (int l = threadIdx.x; l < kBN * kBK; l += 256) {
        int nn, kk;
        if (TB) { kk = l % kBK; nn = l / kBK; } else { nn = l % kBN; kk = l / kBN; }
        const int64_t gn = n0 + nn, gk = k0 + kk;
        float v = 0.f;
        if (gn < N && gk < K) v = TB ? Bz[gn * ldb + gk] : Bz[gk * ldb + gn];
        Bs[kk][nn] = v;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kBK; ++kk) {
        float a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
      __syncthreads();
    }
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
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
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

void matmul(const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os,
            bool trans_a, bool trans_b, bool accumulate, const Buffer* bias) {
  check_buffer("matmul", "a", a, as, F32);
  check_buffer("matmul", "b", b, bs, F32);
  check_buffer("matmul", "out", o, os, F32);
  LAMINA_CHECK(as.size() >= 2 && bs.size() >= 2 && os.size() >= 2, "matmul: operands need at least 2 dimensions");
  const int64_t M = trans_a ? as[as.size() - 1] : as[as.size() - 2];
  const int64_t K = trans_a ? as[as.size() - 2] : as[as.size() - 1];
  const int64_t Kb = trans_b ? bs[bs.size() - 1] : bs[bs.size() - 2];
  const int64_t N = trans_b ? bs[bs.size() - 2] : bs[bs.size() - 1];
  LAMINA_CHECK(K == Kb, "matmul: inner dimensions differ: a " << shape_str(as) << ", b " << shape_str(bs));
  if (bias) {
    check_dtype("matmul", "bias", *bias, F32);
    LAMINA_CHECK(bias->numel == N, "matmul: the bias holds " << bias->numel
                                       << " elements; expected one per output column (" << N << ")");
  }
  LAMINA_CHECK(os[os.size() - 2] == M && os[os.size() - 1] == N,
               "matmul: output shape " << shape_str(os) << " is not (..., " << M << ", " << N << ")");
  const size_t nb = os.size() - 2;
  if (nb > size_t(kMaxBatchDims)) throw Unsupported("matmul: more than 6 batch dimensions");
  BatchMap bm;
  bm.nb = int(nb);
  for (size_t k = 0; k < nb; ++k) bm.dims[k] = os[k];
  auto strides = [&](const Shape& s, int64_t* st) {
    const size_t sb = s.size() - 2;
    LAMINA_CHECK(sb <= nb, "matmul: operand " << shape_str(s) << " has more batch dimensions than the output");
    for (size_t k = 0; k < nb; ++k) st[k] = 0;
    int64_t stride = s[s.size() - 1] * s[s.size() - 2];
    for (size_t k = 0; k < sb; ++k) {
      const size_t ok = nb - 1 - k, sk = sb - 1 - k;
      LAMINA_CHECK(s[sk] == os[ok] || s[sk] == 1, "matmul: batch dimensions of " << shape_str(as) << " and "
                                                                                  << shape_str(bs) << " do not broadcast");
      st[ok] = s[sk] == 1 ? 0 : stride;
      stride *= s[sk];
    }
  };
  strides(as, bm.sa);
  strides(bs, bm.sb);
  Context& c = op_device("matmul", {&a, &b, &o, bias});
  int64_t batches = 1;
  for (size_t k = 0; k < nb; ++k) batches *= os[k];
  launch(c, trans_a, trans_b, M, N, K, 1.f, a.data<float>(), as.back(), b.data<float>(), bs.back(),
         accumulate ? 1.f : 0.f, o.data<float>(), N, bias ? bias->data<float>() : nullptr, bm, batches);
  launched(c, "matmul");
}

static int64_t gemm_operand(const char* arg, const char* ld_name, const Buffer& buf, int64_t rows, int64_t cols,
                            int64_t ld, const char* layout) {
  if (ld < 0) {
    LAMINA_CHECK(buf.numel == rows * cols, "gemm: " << arg << " is stored " << layout << " = " << rows << " x " << cols
                 << " and needs " << rows * cols << " elements, but its buffer holds " << buf.numel
                 << "; check M, N, K and the transpose flags, or pass " << ld_name << " for a strided matrix");
    return cols;
  }
  LAMINA_CHECK(ld >= (cols > 1 ? cols : 1), "gemm: " << ld_name << " = " << ld << " is smaller than the width " << cols
               << " of " << arg << " (stored " << layout << " = " << rows << " x " << cols
               << "); the row stride must be at least the row length");
  const int64_t need = rows > 0 && cols > 0 ? (rows - 1) * ld + cols : 0;
  LAMINA_CHECK(buf.numel >= need, "gemm: " << arg << " (stored " << layout << " = " << rows << " x " << cols << ", "
               << ld_name << " = " << ld << ") needs at least " << need << " elements, but its buffer holds "
               << buf.numel << "; check M, N, K, " << ld_name << " and the transpose flags");
  return ld;
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const Buffer& a, const Buffer& b,
          double beta, Buffer& c, int64_t lda, int64_t ldb, int64_t ldc) {
  check_dtype("gemm", "a", a, F32); check_dtype("gemm", "b", b, F32); check_dtype("gemm", "c", c, F32);
  LAMINA_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: expected M, N, K >= 0, received M=" << M << ", N=" << N << ", K=" << K);
  lda = ta ? gemm_operand("a", "lda", a, K, M, lda, "K x M (trans_a)") : gemm_operand("a", "lda", a, M, K, lda, "M x K");
  ldb = tb ? gemm_operand("b", "ldb", b, N, K, ldb, "N x K (trans_b)") : gemm_operand("b", "ldb", b, K, N, ldb, "K x N");
  ldc = gemm_operand("c", "ldc", c, M, N, ldc, "M x N");
  Context& ctx = op_device("gemm", {&a, &b, &c});
  BatchMap bm;
  launch(ctx, ta, tb, M, N, K, float(alpha), a.data<float>(), lda, b.data<float>(), ldb, float(beta), c.data<float>(),
         ldc, nullptr, bm, 1);
  launched(ctx, "gemm");
}

}  // namespace gpu
}  // namespace lamina
