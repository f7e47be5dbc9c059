// Fused scaled dot-product attention (keras.ops.dot_product_attention) on the GPU, forward and
// backward: the CPU module's attention_forward / attention_backward (csrc/cpu/attention.cpp), same
// arguments, checks (csrc/attention_checks.h) and results within float32 rounding.
//
// Q (B, Tq, N, H), K (B, Tk, Nkv, H), V (B, Tk, Nkv, Hv), O (B, Tq, N, Hv) are read and written in
// place through their (batch, time, head) element strides; query head n uses key/value head n / G,
// G = N / Nkv. The scores of a chunk of (batch, head, query row) -- all of them unless they would
// pass kChunkBytes (LAMINA_ATTENTION_CHUNK_BYTES overrides it), then whole batches, else heads of one
// batch, else query rows of one head -- are formed in a scratch Buffer, one (rows x Tk) matrix per
// (batch, head), and every key is computed (the CPU skips blocks of causally masked keys only where
// that gives the full width's result, attention.cpp's header):
//   forward:  S = scale Q K^T                              batched product
//             S = keep ? S + bias : -0.7 * float32 max     one warp per row: logits, the row's max,
//             P = exp(S - max) / sum                       exp, sum, P, and stats = (max, 1 / sum)
//             O = P V                                      batched product, straight into O's rows
//   backward: S = scale Q K^T, dP = dO V^T                 batched products
//             P = exp(S - max) * inv (the saved stats), dS = keep ? P * (dP - rowsum(dO * O)) : 0,
//             dlogits = dS                                 one warp per row
//             dV += P^T dO, dK += scale dS^T Q, dQ = scale dS K
// dK and dV are zeroed first and accumulate (float32) over the chunks and over the G query heads of
// each key/value head, one head of each group per product, so that no product writes a place twice.
// The products batch over (batch, key/value head) at a fixed head-in-group g: through cuBLAS
// (strided batches: one call per batch or per key/value head, whichever are fewer) when it is
// loaded, else one launch of a tiled kernel over all of them.
//
// bfloat16 (Q, K, V, O, dO, dQ, dK, dV all bfloat16; the bias, stats and dlogits float32), as the
// CPU's mixed precision (attention.cpp's header): every product takes bfloat16 operands with float32
// sums (cuBLAS's GemmStridedBatchedEx, cublas_gemm_bf16), the logits (the products' sums scaled
// after, in float32), the softmax, its statistics, dP, dS and rowsum(dO * O) float32; the row
// kernels (templated over the storage type, bf16.cuh) also write P and dS rounded to bfloat16, the
// operands of P V, P^T dO, dS K and dS^T Q. O is rounded once from P V's sums (a bfloat16 C), dQ
// once from scale * dS K (float32 sums in a scratch), dK and dV accumulate in float32 scratch over
// the chunks and heads and are rounded once at the end (dK scaled then). Without cuBLAS's bfloat16
// products (or with sizes beyond its 32-bit arguments) a bfloat16 call throws Unsupported before
// queuing anything: the host runs it.
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

#include "../attention_checks.h"
#include "attention.h"
#include "bf16.cuh"
#include "gemm_tile.cuh"
#include "warp.cuh"

namespace lamina {
namespace gpu {
namespace {

using attention_args::Layout;
using attention_args::Strides3;

// Keras's (jax.nn.dot_product_attention's) masked logit, as attention.cpp's kMasked.
constexpr float kMasked = float(-0.7 * double(std::numeric_limits<float>::max()));

// Scratch for the scores of one chunk (all the buffers of a call together).
constexpr int64_t kChunkBytes = int64_t(256) << 20;

int64_t chunk_bytes() {
  if (const char* e = std::getenv("LAMINA_ATTENTION_CHUNK_BYTES")) {
    const long long v = std::atoll(e);
    if (v > 0) return int64_t(v);
  }
  return kChunkBytes;
}

// ---- batched products ----------------------------------------------------------------------------

// One operand of a grid of I x J products: matrix (i, j) starts at p + i * si + j * sj, its rows
// ld elements apart (row-major).
struct Mat {
  const float* p;
  int64_t ld, si, sj;
};
struct OutMat {
  float* p;
  int64_t ld, si, sj;
};

constexpr int kBM = kTileM, kBN = kTileN;

// C(i, j) = alpha op(A(i, j)) op(B(i, j)) + beta C(i, j) (beta 0 never reads C) for every (i, j):
// gemm_tile.cuh's 64 x 64 tiles (as linalg.cu's sgemm_tiled), grid-stride over the tiles and the products.
template <bool TA, bool TB>
__global__ void __launch_bounds__(256) grid_gemm(int64_t M, int64_t N, int64_t K, float alpha, Mat A, Mat B,
                                                 float beta, OutMat C, int64_t I, int64_t J) {
  __shared__ TileSlices sh;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  for (int64_t z = blockIdx.z; z < I * J; z += gridDim.z) {
    const int64_t i = z / J, j = z % J;
    const float* Az = A.p + i * A.si + j * A.sj;
    const float* Bz = B.p + i * B.si + j * B.sj;
    float* Cz = C.p + i * C.si + j * C.sj;
    for (int64_t m0 = int64_t(blockIdx.y) * kBM; m0 < M; m0 += int64_t(gridDim.y) * kBM)
      for (int64_t n0 = int64_t(blockIdx.x) * kBN; n0 < N; n0 += int64_t(gridDim.x) * kBN) {
        float acc[4][4];
        gemm_tile<TA, TB>(Az, A.ld, Bz, B.ld, M, N, K, m0, n0, sh, acc);
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int64_t m = m0 + ty + 16 * r;
          if (m >= M) continue;
#pragma unroll
          for (int s = 0; s < 4; ++s) {
            const int64_t n = n0 + tx + 16 * s;
            if (n >= N) continue;
            float v = alpha * acc[r][s];
            if (beta != 0.f) v += beta * Cz[m * C.ld + n];
            Cz[m * C.ld + n] = v;
          }
        }
      }
  }
}

unsigned cap_grid(int64_t n, int64_t cap) { return unsigned(n < 1 ? 1 : (n > cap ? cap : n)); }

// The grid of products through cuBLAS: one strided-batched call per i batching j, or per j
// batching i, whichever are fewer. False (nothing queued) where cuBLAS is not there, the sizes do
// not fit it, or a leading dimension is below what it takes.
bool cublas_grid(Context& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const Mat& A,
                 const Mat& B, float beta, const OutMat& C, int64_t I, int64_t J) {
  auto at_least = [](int64_t ld, int64_t w) { return ld >= (w > 1 ? w : 1); };
  if (K == 0 || !at_least(A.ld, ta ? M : K) || !at_least(B.ld, tb ? K : N) || !at_least(C.ld, N)) return false;
  const bool over_i = I <= J;  // loop over i, batch j
  const int64_t calls = over_i ? I : J, batches = over_i ? J : I;
  for (int64_t x = 0; x < calls; ++x) {
    const int64_t i = over_i ? x : 0, j = over_i ? 0 : x;
    const bool ok = cublas_gemm(c, ta, tb, M, N, K, alpha, A.p + i * A.si + j * A.sj, A.ld, over_i ? A.sj : A.si,
                                B.p + i * B.si + j * B.sj, B.ld, over_i ? B.sj : B.si, beta,
                                C.p + i * C.si + j * C.sj, C.ld, over_i ? C.sj : C.si, batches);
    if (!ok) {
      if (x == 0) return false;
      throw CudaError("attention: cuBLAS refused a product of a batch it had accepted the first of");
    }
  }
  return true;
}

// C(i, j) = alpha op(A(i, j)) op(B(i, j)) + beta C(i, j) for i < I, j < J; op(A) is M x K (A is
// K x M when ta), op(B) K x N (N x K when tb). The C matrices must not overlap.
void grid_products(Context& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const Mat& A,
                   const Mat& B, float beta, const OutMat& C, int64_t I, int64_t J) {
  if (M == 0 || N == 0 || I <= 0 || J <= 0) return;
  if (cublas_grid(c, ta, tb, M, N, K, alpha, A, B, beta, C, I, J)) return;
  const dim3 grid(cap_grid((N + kBN - 1) / kBN, 65535), cap_grid((M + kBM - 1) / kBM, 65535), cap_grid(I * J, 65535));
  auto s = c.stream;
  if (!ta && !tb) grid_gemm<false, false><<<grid, 256, 0, s>>>(M, N, K, alpha, A, B, beta, C, I, J);
  else if (ta && !tb) grid_gemm<true, false><<<grid, 256, 0, s>>>(M, N, K, alpha, A, B, beta, C, I, J);
  else if (!ta && tb) grid_gemm<false, true><<<grid, 256, 0, s>>>(M, N, K, alpha, A, B, beta, C, I, J);
  else grid_gemm<true, true><<<grid, 256, 0, s>>>(M, N, K, alpha, A, B, beta, C, I, J);
}

// bfloat16 operands (as Mat) and a float32 or bfloat16 C (as OutMat, its element type E).
struct Mat16 {
  const uint16_t* p;
  int64_t ld, si, sj;
};
template <class E>
struct OutMatT {
  E* p;
  int64_t ld, si, sj;
};

// Zeroes the I x J matrices (M x N) of C: a product over no terms.
template <class E>
__global__ void zero_grid(OutMatT<E> C, int64_t M, int64_t N, int64_t I, int64_t J) {
  const int64_t total = I * J * M * N;
  GRID_STRIDE(x, total) {
    const int64_t n = x % N, m = x / N % M, z = x / (N * M), i = z / J, j = z % J;
    C.p[i * C.si + j * C.sj + m * C.ld + n] = E{};
  }
}

// C(i, j) = op(A(i, j)) op(B(i, j)) + beta C(i, j) (beta 0 or 1), A and B bfloat16, float32 sums,
// C float32 or bfloat16 (rounded once): cuBLAS's strided batches as cublas_grid. require_bf16
// checked the sizes and cublas_bf16_available before anything was queued.
template <class E>
void grid_products16(Context& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const Mat16& A, const Mat16& B,
                     float beta, const OutMatT<E>& C, int64_t I, int64_t J) {
  if (M == 0 || N == 0 || I <= 0 || J <= 0) return;
  if (K == 0) {
    if (beta == 0.f) zero_grid<E><<<grid_for(I * J * M * N), 256, 0, c.stream>>>(C, M, N, I, J);
    return;
  }
  constexpr bool c16 = std::is_same<E, uint16_t>::value;
  const bool over_i = I <= J;
  const int64_t calls = over_i ? I : J, batches = over_i ? J : I;
  for (int64_t x = 0; x < calls; ++x) {
    const int64_t i = over_i ? x : 0, j = over_i ? 0 : x;
    if (!cublas_gemm_bf16(c, ta, tb, M, N, K, A.p + i * A.si + j * A.sj, A.ld, over_i ? A.sj : A.si,
                          B.p + i * B.si + j * B.sj, B.ld, over_i ? B.sj : B.si, beta, C.p + i * C.si + j * C.sj, c16,
                          C.ld, over_i ? C.sj : C.si, batches))
      throw CudaError("attention: cuBLAS refused a bfloat16 product it was checked to take");
  }
}

// Unsupported (the host runs the call) where the bfloat16 products cannot run on c's device: no
// cuBLAS GemmStridedBatchedEx, a size or leading dimension beyond its 32-bit arguments, or an
// operand's rows closer together than its width (cuBLAS takes no such leading dimension). Checked
// before anything is queued.
void require_bf16(Context& c, const char* op, const attention_args::Layout& L, int64_t B, int64_t Tq, int64_t Tk,
                  int64_t N, int64_t Nkv, int64_t H, int64_t Hv) {
  const int64_t sizes[] = {B, Tq, Tk, N, Nkv, H, Hv, L.q.t, L.k.t, L.v.t, L.o.t, N * H, Nkv * H, Nkv * Hv};
  for (int64_t v : sizes)
    if (v > 2147483647)
      throw Unsupported(std::string(op) + ": a bfloat16 attention of these sizes exceeds cuBLAS's 32-bit arguments; "
                                          "it runs on the host");
  auto at_least = [](int64_t ld, int64_t w) { return ld >= (w > 1 ? w : 1); };
  if (!at_least(L.q.t, H) || !at_least(L.k.t, H) || !at_least(L.v.t, Hv) || !at_least(L.o.t, Hv))
    throw Unsupported(std::string(op) + ": a bfloat16 attention whose time stride is below its head size runs on "
                                        "the host");
  if (!cublas_bf16_available(c))
    throw Unsupported(std::string(op) + ": bfloat16 attention needs cuBLAS (GemmStridedBatchedEx); this one runs on "
                                        "the host");
}

// ---- rows of the scores --------------------------------------------------------------------------

// Where a chunk's score rows are and what masks them. Row r of the chunk (r < bc * nc * rc, rows
// Tk floats apart) is query row r0 + r % rc of head n0 + r / rc % nc of batch b0 + r / (rc * nc).
struct Rows {
  const float* bias;
  int64_t bs[4];
  const uint8_t* mask;
  int64_t ms[4];
  int causal;
  int64_t N, Tq, Tk;
  int64_t b0, n0, r0, nc, rc;
};

__device__ __forceinline__ void row_pos(const Rows& m, int64_t r, int64_t& b, int64_t& n, int64_t& t) {
  t = m.r0 + r % m.rc;
  n = m.n0 + r / m.rc % m.nc;
  b = m.b0 + r / (m.rc * m.nc);
}

// Key j's logit of a row (bias row br, mask row mr, either may be null; query position t) from
// its scaled product v, and whether the key is kept (the mask's and the causal one's).
__device__ __forceinline__ float row_logit(const Rows& m, const float* br, const uint8_t* mr, int64_t j, int64_t t,
                                           float v, bool& keep) {
  keep = !m.causal || j <= t;
  if (mr) keep = keep && mr[j * m.ms[3]] != 0;
  if (br) v += br[j * m.bs[3]];
  return keep ? v : kMasked;
}

// the largest of the warp's values, NaN-ignoring as the CPU's row_max (std::max)
__device__ __forceinline__ float warp_max_num(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// One warp per row (grid-stride): the row's bias and mask rows.
#define ROW_WARPS(r, rows)                                                                           \
  const int lane = threadIdx.x % 32;                                                                 \
  for (int64_t r = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < (rows);                \
       r += int64_t(gridDim.x) * (blockDim.x / 32))

// Forward: S (the scaled products; bfloat16: the unscaled sums, scaled here) becomes the softmax
// of the logits, P = softmax(logits) written to P (float32: S itself; bfloat16: rounded, same
// layout); stats (optional) gets each row's max and 1 / sum (0 and 0 over no keys, as the CPU).
template <class E>
__global__ void __launch_bounds__(256) softmax_rows(float* S, int64_t rows, Rows m, float* stats, float scale, E* P) {
  ROW_WARPS(r, rows) {
    int64_t b, n, t;
    row_pos(m, r, b, n, t);
    float* s = S + r * m.Tk;
    E* pr = P + r * m.Tk;
    const float* br = m.bias ? m.bias + b * m.bs[0] + n * m.bs[1] + t * m.bs[2] : nullptr;
    const uint8_t* mr = m.mask ? m.mask + b * m.ms[0] + n * m.ms[1] + t * m.ms[2] : nullptr;
    float mx = -INFINITY;
    for (int64_t j = lane; j < m.Tk; j += 32) {
      bool keep;
      float x = s[j];
      if constexpr (std::is_same<E, uint16_t>::value) x *= scale;
      const float v = row_logit(m, br, mr, j, t, x, keep);
      s[j] = v;
      mx = fmaxf(mx, v);
    }
    mx = warp_max_num(mx);
    float sum = 0.f;
    for (int64_t j = lane; j < m.Tk; j += 32) {
      const float e = expf(s[j] - mx);
      s[j] = e;
      sum += e;
    }
    sum = warp_sum(sum);
    const float inv = 1.f / sum;
    for (int64_t j = lane; j < m.Tk; j += 32) pr[j] = narrow<E>(s[j] * inv);
    if (stats && lane == 0) {
      float* st = stats + ((b * m.N + n) * m.Tq + t) * 2;
      st[0] = m.Tk ? mx : 0.f;
      st[1] = m.Tk ? inv : 0.f;
    }
  }
}

// Backward: from S (the scaled products; bfloat16: the unscaled sums, scaled here), P = exp(logits
// - max) * inv from the saved stats, written to P; from D (dP = dO V^T), dS = keep ? P * (dP -
// rowsum(dO * O)) : 0, written to DS and copied to dl (optional, the (B, N, Tq, Tk) logits
// gradient, float32). P and DS are S and D themselves in float32, bfloat16 buffers (rounded) else.
template <class E>
__global__ void __launch_bounds__(256) dsoftmax_rows(const float* S, const float* D, int64_t rows, Rows m,
                                                     const float* stats, const E* o, const E* dout, Strides3 os,
                                                     int64_t Hv, float* dl, float scale, E* P, E* DS) {
  ROW_WARPS(r, rows) {
    int64_t b, n, t;
    row_pos(m, r, b, n, t);
    const float* s = S + r * m.Tk;
    const float* d = D + r * m.Tk;
    E* pr = P + r * m.Tk;
    E* dsr = DS + r * m.Tk;
    const float* br = m.bias ? m.bias + b * m.bs[0] + n * m.bs[1] + t * m.bs[2] : nullptr;
    const uint8_t* mr = m.mask ? m.mask + b * m.ms[0] + n * m.ms[1] + t * m.ms[2] : nullptr;
    const int64_t row = (b * m.N + n) * m.Tq + t;
    const float shift = stats[2 * row], inv = stats[2 * row + 1];
    const E* orow = o + b * os.b + t * os.t + n * os.n;
    const E* gorow = dout + b * os.b + t * os.t + n * os.n;
    float dsum = 0.f;
    for (int64_t h = lane; h < Hv; h += 32) dsum += wide(gorow[h]) * wide(orow[h]);
    dsum = warp_sum(dsum);
    float* dlr = dl ? dl + row * m.Tk : nullptr;
    for (int64_t j = lane; j < m.Tk; j += 32) {
      bool keep;
      float x = s[j];
      if constexpr (std::is_same<E, uint16_t>::value) x *= scale;
      const float v = row_logit(m, br, mr, j, t, x, keep);
      const float p = expf(v - shift) * inv;
      const float ds = keep ? p * (d[j] - dsum) : 0.f;
      pr[j] = narrow<E>(p);
      dsr[j] = narrow<E>(ds);
      if (dlr) dlr[j] = ds;
    }
  }
}

// Zeroes a (B, T, heads, D) operand through its strides (the key and value gradients, which the
// chunks accumulate into).
__global__ void zero_operand(float* p, int64_t B, int64_t T, int64_t heads, int64_t D, Strides3 s) {
  const int64_t total = B * T * heads * D;
  GRID_STRIDE(i, total) {
    int64_t r = i / D;
    const int64_t d = i % D, h = r % heads;
    r /= heads;
    const int64_t t = r % T, b = r / T;
    p[b * s.b + t * s.t + h * s.n + d] = 0.f;
  }
}

// dst (bfloat16, a (B, T, heads, D) operand through its strides) = scale * src (float32, contiguous
// (B, T, heads, D)), rounded once: the key and value gradients' float32 sums.
__global__ void round_operand(uint16_t* dst, const float* src, float scale, int64_t B, int64_t T, int64_t heads,
                              int64_t D, Strides3 s) {
  const int64_t total = B * T * heads * D;
  GRID_STRIDE(i, total) {
    int64_t r = i / D;
    const int64_t d = i % D, h = r % heads;
    r /= heads;
    const int64_t t = r % T, b = r / T;
    dst[b * s.b + t * s.t + h * s.n + d] = f32_to_bf16(src[i] * scale);
  }
}

unsigned row_grid(int64_t rows) { return cap_grid((rows + 7) / 8, 65535 * 8); }

// ---- chunks --------------------------------------------------------------------------------------

// The largest chunk's extents (batches, heads, query rows) for `buffers` score buffers under
// chunk_bytes() together: whole batches if one fits, else heads of one batch, else rows of one head.
struct Plan {
  int64_t bc, nc, rc;
};

Plan plan_chunks(int64_t B, int64_t N, int64_t Tq, int64_t Tk, int buffers) {
  const int64_t cap = std::max<int64_t>(1, chunk_bytes() / int64_t(sizeof(float)) / buffers);
  const int64_t per_n = Tq * Tk, per_b = N * per_n;
  if (per_b <= cap) return {std::min(B, cap / std::max<int64_t>(per_b, 1)), N, Tq};
  if (per_n <= cap) return {1, cap / per_n, Tq};
  return {1, 1, std::max<int64_t>(1, cap / Tk)};
}

// Runs body(b0, bc, n0, nc, r0, rc) over the chunks of plan p.
template <class Body>
void for_chunks(const Plan& p, int64_t B, int64_t N, int64_t Tq, Body body) {
  for (int64_t b0 = 0; b0 < B; b0 += p.bc)
    for (int64_t n0 = 0; n0 < N; n0 += p.nc)
      for (int64_t r0 = 0; r0 < Tq; r0 += p.rc)
        body(b0, std::min(p.bc, B - b0), n0, std::min(p.nc, N - n0), r0, std::min(p.rc, Tq - r0));
}

// The heads n0 <= n < n0 + nc with n % G == g: key/value heads [ka, ka + J), query heads ka * G + g
// + G * j. J <= 0 when there are none.
struct Group {
  int64_t ka, J, nf;  // nf: the first query head
};
Group group_of(int64_t n0, int64_t nc, int64_t G, int64_t g) {
  const int64_t ka = (n0 - g + G - 1) / G, kb = (n0 + nc - g + G - 1) / G;
  return {ka, kb - ka, ka * G + g};
}

Rows make_rows(const Buffer* bias, const Buffer* mask, const Layout& L, bool causal, int64_t N, int64_t Tq, int64_t Tk) {
  Rows m{};
  m.bias = bias ? bias->data<float>() : nullptr;
  m.mask = mask ? mask->data<uint8_t>() : nullptr;
  for (int i = 0; i < 4; ++i) {
    m.bs[i] = L.bs[i];
    m.ms[i] = L.ms[i];
  }
  m.causal = causal ? 1 : 0;
  m.N = N;
  m.Tq = Tq;
  m.Tk = Tk;
  return m;
}

// ---- bfloat16 ------------------------------------------------------------------------------------

Mat16 op16(const uint16_t* p, int64_t ld, int64_t si, int64_t sj) { return Mat16{p, ld, si, sj}; }

// attention_forward on bfloat16 Q, K, V, O (require_bf16 passed): S = Q K^T's float32 sums, the
// softmax rows scaling them and writing P rounded, O = P V rounded once.
void forward_bf16(Context& c, const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* bias,
                  const Buffer* mask, Buffer& out, Buffer* stats, const attention_args::Layout& L, int64_t B,
                  int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H, int64_t Hv, double scale, bool causal) {
  const int64_t G = N / Nkv;
  const Plan p = plan_chunks(B, N, Tq, Tk, 2);  // the float32 sums and P (half as wide): under two buffers
  const int64_t chunk = p.bc * p.nc * p.rc * Tk;
  Buffer sbuf(chunk, F32, out.device), pbuf(chunk, BF16, out.device);
  float* S = sbuf.data<float>();
  uint16_t* P = pbuf.data<uint16_t>();
  const uint16_t* qp = q.data<uint16_t>();
  const uint16_t* kp = k.data<uint16_t>();
  const uint16_t* vp = v.data<uint16_t>();
  uint16_t* outp = out.data<uint16_t>();
  Rows m = make_rows(bias, mask, L, causal, N, Tq, Tk);
  for_chunks(p, B, N, Tq, [&](int64_t b0, int64_t bc, int64_t n0, int64_t nc, int64_t r0, int64_t rc) {
    const int64_t hs = rc * Tk;
    for (int64_t g = 0; g < G; ++g) {  // S = Q K^T (float32 sums; scaled by the rows)
      const Group gr = group_of(n0, nc, G, g);
      grid_products16(c, false, true, rc, Tk, H, op16(qp + b0 * L.q.b + gr.nf * L.q.n + r0 * L.q.t, L.q.t, L.q.b, G * L.q.n),
                      op16(kp + b0 * L.k.b + gr.ka * L.k.n, L.k.t, L.k.b, L.k.n), 0.f,
                      OutMatT<float>{S + (gr.nf - n0) * hs, Tk, nc * hs, G * hs}, bc, gr.J);
    }
    m.b0 = b0, m.n0 = n0, m.r0 = r0, m.nc = nc, m.rc = rc;
    const int64_t rows = bc * nc * rc;
    softmax_rows<uint16_t><<<row_grid(rows), 256, 0, c.stream>>>(S, rows, m, stats ? stats->data<float>() : nullptr,
                                                                  float(scale), P);
    for (int64_t g = 0; g < G; ++g) {  // O = P V, rounded once
      const Group gr = group_of(n0, nc, G, g);
      grid_products16(c, false, false, rc, Hv, Tk, op16(P + (gr.nf - n0) * hs, Tk, nc * hs, G * hs),
                      op16(vp + b0 * L.v.b + gr.ka * L.v.n, L.v.t, L.v.b, L.v.n), 0.f,
                      OutMatT<uint16_t>{outp + b0 * L.o.b + gr.nf * L.o.n + r0 * L.o.t, L.o.t, L.o.b, G * L.o.n}, bc,
                      gr.J);
    }
  });
}

// attention_backward on bfloat16 (require_bf16 passed): P and dS rounded to bfloat16 by the rows;
// the float32 sums of dS K (each chunk writes its rows), dS^T Q and P^T dO (accumulated over the
// chunks and heads) in float32 scratch, rounded once at the end (dQ and dK scaled then).
void backward_bf16(Context& c, const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* bias,
                   const Buffer* mask, const Buffer& out, const Buffer& stats, const Buffer& dout, Buffer* dq,
                   Buffer* dk, Buffer* dv, Buffer* dlogits, const attention_args::Layout& L, int64_t B, int64_t Tq,
                   int64_t Tk, int64_t N, int64_t Nkv, int64_t H, int64_t Hv, double scale, bool causal) {
  const int64_t G = N / Nkv;
  const int dev = q.device;
  const Plan p = plan_chunks(B, N, Tq, Tk, 3);  // S, dP (float32), P and dS (bfloat16)
  const int64_t chunk = p.bc * p.nc * p.rc * Tk;
  Buffer sbuf(chunk, F32, dev), dbuf(chunk, F32, dev), pbuf(chunk, BF16, dev), dsbuf(chunk, BF16, dev);
  // float32 sums, contiguous (B, T, heads, D): dQ's (each chunk writes its rows), dK's and dV's
  // (zeroed, then accumulated)
  Buffer qacc(dq ? B * Tq * N * H : 0, F32, dev), kacc(dk ? B * Tk * Nkv * H : 0, F32, dev),
      vacc(dv ? B * Tk * Nkv * Hv : 0, F32, dev);
  float* S = sbuf.data<float>();
  float* D = dbuf.data<float>();
  uint16_t* Pb = pbuf.data<uint16_t>();
  uint16_t* DSb = dsbuf.data<uint16_t>();
  float* dQa = dq ? qacc.data<float>() : nullptr;
  float* dKa = dk ? kacc.data<float>() : nullptr;
  float* dVa = dv ? vacc.data<float>() : nullptr;
  if (dKa && kacc.numel > 0)
    LAMINA_CUDA_CHECK(cudaMemsetAsync(dKa, 0, size_t(kacc.numel) * sizeof(float), c.stream));
  if (dVa && vacc.numel > 0)
    LAMINA_CUDA_CHECK(cudaMemsetAsync(dVa, 0, size_t(vacc.numel) * sizeof(float), c.stream));
  const uint16_t* qp = q.data<uint16_t>();
  const uint16_t* kp = k.data<uint16_t>();
  const uint16_t* vp = v.data<uint16_t>();
  const uint16_t* gp = dout.data<uint16_t>();
  Rows m = make_rows(bias, mask, L, causal, N, Tq, Tk);
  for_chunks(p, B, N, Tq, [&](int64_t b0, int64_t bc, int64_t n0, int64_t nc, int64_t r0, int64_t rc) {
    const int64_t hs = rc * Tk;
    for (int64_t g = 0; g < G; ++g) {  // S = Q K^T, dP = dO V^T (float32 sums)
      const Group gr = group_of(n0, nc, G, g);
      const Mat16 dO = op16(gp + b0 * L.o.b + gr.nf * L.o.n + r0 * L.o.t, L.o.t, L.o.b, G * L.o.n);
      grid_products16(c, false, true, rc, Tk, H, op16(qp + b0 * L.q.b + gr.nf * L.q.n + r0 * L.q.t, L.q.t, L.q.b, G * L.q.n),
                      op16(kp + b0 * L.k.b + gr.ka * L.k.n, L.k.t, L.k.b, L.k.n), 0.f,
                      OutMatT<float>{S + (gr.nf - n0) * hs, Tk, nc * hs, G * hs}, bc, gr.J);
      grid_products16(c, false, true, rc, Tk, Hv, dO, op16(vp + b0 * L.v.b + gr.ka * L.v.n, L.v.t, L.v.b, L.v.n), 0.f,
                      OutMatT<float>{D + (gr.nf - n0) * hs, Tk, nc * hs, G * hs}, bc, gr.J);
    }
    m.b0 = b0, m.n0 = n0, m.r0 = r0, m.nc = nc, m.rc = rc;
    const int64_t rows = bc * nc * rc;
    dsoftmax_rows<uint16_t><<<row_grid(rows), 256, 0, c.stream>>>(
        S, D, rows, m, stats.data<float>(), out.data<uint16_t>(), gp, L.o, Hv,
        dlogits ? dlogits->data<float>() : nullptr, float(scale), Pb, DSb);
    for (int64_t g = 0; g < G; ++g) {
      const Group gr = group_of(n0, nc, G, g);
      const Mat16 P = op16(Pb + (gr.nf - n0) * hs, Tk, nc * hs, G * hs), dS = op16(DSb + (gr.nf - n0) * hs, Tk, nc * hs, G * hs);
      const Mat16 Q = op16(qp + b0 * L.q.b + gr.nf * L.q.n + r0 * L.q.t, L.q.t, L.q.b, G * L.q.n);
      if (dVa)  // dV += P^T dO
        grid_products16(c, true, false, Tk, Hv, rc, P,
                        op16(gp + b0 * L.o.b + gr.nf * L.o.n + r0 * L.o.t, L.o.t, L.o.b, G * L.o.n), 1.f,
                        OutMatT<float>{dVa + b0 * Tk * Nkv * Hv + gr.ka * Hv, Nkv * Hv, Tk * Nkv * Hv, Hv}, bc, gr.J);
      if (dKa)  // dK += dS^T Q (scaled when rounded)
        grid_products16(c, true, false, Tk, H, rc, dS, Q, 1.f,
                        OutMatT<float>{dKa + b0 * Tk * Nkv * H + gr.ka * H, Nkv * H, Tk * Nkv * H, H}, bc, gr.J);
      if (dQa)  // dQ = dS K (scaled when rounded)
        grid_products16(c, false, false, rc, H, Tk, dS, op16(kp + b0 * L.k.b + gr.ka * L.k.n, L.k.t, L.k.b, L.k.n), 0.f,
                        OutMatT<float>{dQa + b0 * Tq * N * H + gr.nf * H + r0 * N * H, N * H, Tq * N * H, G * H}, bc,
                        gr.J);
    }
  });
  const float sc = float(scale);
  if (dQa && qacc.numel > 0)
    round_operand<<<grid_for(qacc.numel), 256, 0, c.stream>>>(dq->data<uint16_t>(), dQa, sc, B, Tq, N, H, L.q);
  if (dKa && kacc.numel > 0)
    round_operand<<<grid_for(kacc.numel), 256, 0, c.stream>>>(dk->data<uint16_t>(), dKa, sc, B, Tk, Nkv, H, L.k);
  if (dVa && vacc.numel > 0)
    round_operand<<<grid_for(vacc.numel), 256, 0, c.stream>>>(dv->data<uint16_t>(), dVa, 1.f, B, Tk, Nkv, Hv, L.v);
}

}  // namespace

void attention_forward(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* bias, const Buffer* mask,
                       Buffer& out, Buffer* stats, int64_t B, int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H,
                       int64_t Hv, double scale, bool causal, const Shape& q_strides, const Shape& k_strides,
                       const Shape& v_strides, const Shape& out_strides, const Shape& bias_strides,
                       const Shape& mask_strides) {
  const char* op = "attention_forward";
  const Layout L = attention_args::check_forward<Buffer>(q, k, v, bias, mask, out, stats, B, Tq, Tk, N, Nkv, H, Hv,
                                                         q_strides, k_strides, v_strides, out_strides, bias_strides,
                                                         mask_strides);
  Context& c = op_device(op, {&q, &k, &v, bias, mask, &out, stats});
  if (B == 0 || N == 0 || Tq == 0) return;
  if (L.dt == BF16) {
    require_bf16(c, op, L, B, Tq, Tk, N, Nkv, H, Hv);
    forward_bf16(c, q, k, v, bias, mask, out, stats, L, B, Tq, Tk, N, Nkv, H, Hv, scale, causal);
    launched(c, op);
    return;
  }
  const int64_t G = N / Nkv;
  const Plan p = plan_chunks(B, N, Tq, Tk, 1);
  Buffer sbuf(p.bc * p.nc * p.rc * Tk, F32, out.device);
  float* S = sbuf.data<float>();
  const float* qp = q.data<float>();
  const float* kp = k.data<float>();
  const float* vp = v.data<float>();
  float* outp = out.data<float>();
  Rows m = make_rows(bias, mask, L, causal, N, Tq, Tk);
  for_chunks(p, B, N, Tq, [&](int64_t b0, int64_t bc, int64_t n0, int64_t nc, int64_t r0, int64_t rc) {
    const int64_t hs = rc * Tk;  // one head's scores
    for (int64_t g = 0; g < G; ++g) {  // S = scale Q K^T
      const Group gr = group_of(n0, nc, G, g);
      grid_products(c, false, true, rc, Tk, H, float(scale),
                    Mat{qp + b0 * L.q.b + gr.nf * L.q.n + r0 * L.q.t, L.q.t, L.q.b, G * L.q.n},
                    Mat{kp + b0 * L.k.b + gr.ka * L.k.n, L.k.t, L.k.b, L.k.n}, 0.f,
                    OutMat{S + (gr.nf - n0) * hs, Tk, nc * hs, G * hs}, bc, gr.J);
    }
    m.b0 = b0, m.n0 = n0, m.r0 = r0, m.nc = nc, m.rc = rc;
    const int64_t rows = bc * nc * rc;
    softmax_rows<float><<<row_grid(rows), 256, 0, c.stream>>>(S, rows, m, stats ? stats->data<float>() : nullptr,
                                                               1.f, S);
    for (int64_t g = 0; g < G; ++g) {  // O = P V
      const Group gr = group_of(n0, nc, G, g);
      grid_products(c, false, false, rc, Hv, Tk, 1.f, Mat{S + (gr.nf - n0) * hs, Tk, nc * hs, G * hs},
                    Mat{vp + b0 * L.v.b + gr.ka * L.v.n, L.v.t, L.v.b, L.v.n}, 0.f,
                    OutMat{outp + b0 * L.o.b + gr.nf * L.o.n + r0 * L.o.t, L.o.t, L.o.b, G * L.o.n}, bc, gr.J);
    }
  });
  launched(c, op);
}

void attention_backward(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* bias, const Buffer* mask,
                        const Buffer& out, const Buffer& stats, const Buffer& dout, Buffer* dq, Buffer* dk, Buffer* dv,
                        Buffer* dlogits, int64_t B, int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H,
                        int64_t Hv, double scale, bool causal, const Shape& q_strides, const Shape& k_strides,
                        const Shape& v_strides, const Shape& out_strides, const Shape& bias_strides,
                        const Shape& mask_strides) {
  const char* op = "attention_backward";
  const Layout L = attention_args::check_backward<Buffer>(q, k, v, bias, mask, out, stats, dout, dq, dk, dv, dlogits,
                                                          B, Tq, Tk, N, Nkv, H, Hv, q_strides, k_strides, v_strides,
                                                          out_strides, bias_strides, mask_strides);
  Context& c = op_device(op, {&q, &k, &v, bias, mask, &out, &stats, &dout, dq, dk, dv, dlogits});
  if (B == 0 || Nkv == 0 || !(dq || dk || dv || dlogits)) return;
  if (L.dt == BF16) {
    require_bf16(c, op, L, B, Tq, Tk, N, Nkv, H, Hv);
    backward_bf16(c, q, k, v, bias, mask, out, stats, dout, dq, dk, dv, dlogits, L, B, Tq, Tk, N, Nkv, H, Hv, scale,
                  causal);
    launched(c, op);
    return;
  }
  const int64_t G = N / Nkv;
  float* dKp = dk ? dk->data<float>() : nullptr;
  float* dVp = dv ? dv->data<float>() : nullptr;
  if (dKp && Tk * H > 0)
    zero_operand<<<grid_for(B * Tk * Nkv * H), 256, 0, c.stream>>>(dKp, B, Tk, Nkv, H, L.k);
  if (dVp && Tk * Hv > 0)
    zero_operand<<<grid_for(B * Tk * Nkv * Hv), 256, 0, c.stream>>>(dVp, B, Tk, Nkv, Hv, L.v);
  const Plan p = plan_chunks(B, N, Tq, Tk, 2);
  const int64_t chunk = p.bc * p.nc * p.rc * Tk;
  Buffer sbuf(chunk, F32, q.device), dbuf(chunk, F32, q.device);
  float* S = sbuf.data<float>();
  float* D = dbuf.data<float>();
  const float* qp = q.data<float>();
  const float* kp = k.data<float>();
  const float* vp = v.data<float>();
  const float* gp = dout.data<float>();
  float* dQp = dq ? dq->data<float>() : nullptr;
  Rows m = make_rows(bias, mask, L, causal, N, Tq, Tk);
  const float sc = float(scale);
  for_chunks(p, B, N, Tq, [&](int64_t b0, int64_t bc, int64_t n0, int64_t nc, int64_t r0, int64_t rc) {
    const int64_t hs = rc * Tk;
    for (int64_t g = 0; g < G; ++g) {  // S = scale Q K^T, dP = dO V^T
      const Group gr = group_of(n0, nc, G, g);
      const OutMat s{S + (gr.nf - n0) * hs, Tk, nc * hs, G * hs}, d{D + (gr.nf - n0) * hs, Tk, nc * hs, G * hs};
      grid_products(c, false, true, rc, Tk, H, sc,
                    Mat{qp + b0 * L.q.b + gr.nf * L.q.n + r0 * L.q.t, L.q.t, L.q.b, G * L.q.n},
                    Mat{kp + b0 * L.k.b + gr.ka * L.k.n, L.k.t, L.k.b, L.k.n}, 0.f, s, bc, gr.J);
      grid_products(c, false, true, rc, Tk, Hv, 1.f,
                    Mat{gp + b0 * L.o.b + gr.nf * L.o.n + r0 * L.o.t, L.o.t, L.o.b, G * L.o.n},
                    Mat{vp + b0 * L.v.b + gr.ka * L.v.n, L.v.t, L.v.b, L.v.n}, 0.f, d, bc, gr.J);
    }
    m.b0 = b0, m.n0 = n0, m.r0 = r0, m.nc = nc, m.rc = rc;
    const int64_t rows = bc * nc * rc;
    dsoftmax_rows<float><<<row_grid(rows), 256, 0, c.stream>>>(S, D, rows, m, stats.data<float>(), out.data<float>(),
                                                               gp, L.o, Hv, dlogits ? dlogits->data<float>() : nullptr,
                                                               1.f, S, D);
    for (int64_t g = 0; g < G; ++g) {
      const Group gr = group_of(n0, nc, G, g);
      const Mat P{S + (gr.nf - n0) * hs, Tk, nc * hs, G * hs}, dS{D + (gr.nf - n0) * hs, Tk, nc * hs, G * hs};
      if (dVp)  // dV += P^T dO
        grid_products(c, true, false, Tk, Hv, rc, 1.f, P,
                      Mat{gp + b0 * L.o.b + gr.nf * L.o.n + r0 * L.o.t, L.o.t, L.o.b, G * L.o.n}, 1.f,
                      OutMat{dVp + b0 * L.v.b + gr.ka * L.v.n, L.v.t, L.v.b, L.v.n}, bc, gr.J);
      if (dKp)  // dK += scale dS^T Q
        grid_products(c, true, false, Tk, H, rc, sc, dS,
                      Mat{qp + b0 * L.q.b + gr.nf * L.q.n + r0 * L.q.t, L.q.t, L.q.b, G * L.q.n}, 1.f,
                      OutMat{dKp + b0 * L.k.b + gr.ka * L.k.n, L.k.t, L.k.b, L.k.n}, bc, gr.J);
      if (dQp)  // dQ = scale dS K
        grid_products(c, false, false, rc, H, Tk, sc, dS, Mat{kp + b0 * L.k.b + gr.ka * L.k.n, L.k.t, L.k.b, L.k.n},
                      0.f, OutMat{dQp + b0 * L.q.b + gr.nf * L.q.n + r0 * L.q.t, L.q.t, L.q.b, G * L.q.n}, bc, gr.J);
    }
  });
  launched(c, op);
}

}  // namespace gpu
}  // namespace lamina
