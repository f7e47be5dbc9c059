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
// loaded, else one launch of a tiled kernel over all of them. float32 only: bfloat16 throws
// Unsupported (the host computes it in bfloat16).
#include <cmath>
#include <cstdlib>
#include <limits>

#include "../attention_checks.h"
#include "attention.h"
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

// Forward: S (the scaled products) becomes P = softmax(logits); stats (optional) gets each row's
// max and 1 / sum (0 and 0 over no keys, as the CPU).
__global__ void __launch_bounds__(256) softmax_rows(float* S, int64_t rows, Rows m, float* stats) {
  ROW_WARPS(r, rows) {
    int64_t b, n, t;
    row_pos(m, r, b, n, t);
    float* s = S + r * m.Tk;
    const float* br = m.bias ? m.bias + b * m.bs[0] + n * m.bs[1] + t * m.bs[2] : nullptr;
    const uint8_t* mr = m.mask ? m.mask + b * m.ms[0] + n * m.ms[1] + t * m.ms[2] : nullptr;
    float mx = -INFINITY;
    for (int64_t j = lane; j < m.Tk; j += 32) {
      bool keep;
      const float v = row_logit(m, br, mr, j, t, s[j], keep);
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
    for (int64_t j = lane; j < m.Tk; j += 32) s[j] *= inv;
    if (stats && lane == 0) {
      float* st = stats + ((b * m.N + n) * m.Tq + t) * 2;
      st[0] = m.Tk ? mx : 0.f;
      st[1] = m.Tk ? inv : 0.f;
    }
  }
}

// Backward: S (the scaled products) becomes P = exp(logits - max) * inv from the saved stats, D
// (dP = dO V^T) becomes dS = keep ? P * (dP - rowsum(dO * O)) : 0, copied to dl (optional, the
// (B, N, Tq, Tk) logits gradient).
__global__ void __launch_bounds__(256) dsoftmax_rows(float* S, float* D, int64_t rows, Rows m, const float* stats,
                                                     const float* o, const float* dout, Strides3 os, int64_t Hv,
                                                     float* dl) {
  ROW_WARPS(r, rows) {
    int64_t b, n, t;
    row_pos(m, r, b, n, t);
    float* s = S + r * m.Tk;
    float* d = D + r * m.Tk;
    const float* br = m.bias ? m.bias + b * m.bs[0] + n * m.bs[1] + t * m.bs[2] : nullptr;
    const uint8_t* mr = m.mask ? m.mask + b * m.ms[0] + n * m.ms[1] + t * m.ms[2] : nullptr;
    const int64_t row = (b * m.N + n) * m.Tq + t;
    const float shift = stats[2 * row], inv = stats[2 * row + 1];
    const float* orow = o + b * os.b + t * os.t + n * os.n;
    const float* gorow = dout + b * os.b + t * os.t + n * os.n;
    float dsum = 0.f;
    for (int64_t h = lane; h < Hv; h += 32) dsum += gorow[h] * orow[h];
    dsum = warp_sum(dsum);
    float* dlr = dl ? dl + row * m.Tk : nullptr;
    for (int64_t j = lane; j < m.Tk; j += 32) {
      bool keep;
      const float v = row_logit(m, br, mr, j, t, s[j], keep);
      const float p = expf(v - shift) * inv;
      s[j] = p;
      const float ds = keep ? p * (d[j] - dsum) : 0.f;
      d[j] = ds;
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
  if (L.dt == BF16) throw Unsupported("attention_forward: bfloat16 attention runs on the host (float32 on the GPU)");
  Context& c = op_device(op, {&q, &k, &v, bias, mask, &out, stats});
  if (B == 0 || N == 0 || Tq == 0) return;
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
    softmax_rows<<<row_grid(rows), 256, 0, c.stream>>>(S, rows, m, stats ? stats->data<float>() : nullptr);
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
  if (L.dt == BF16) throw Unsupported("attention_backward: bfloat16 attention runs on the host (float32 on the GPU)");
  Context& c = op_device(op, {&q, &k, &v, bias, mask, &out, &stats, &dout, dq, dk, dv, dlogits});
  if (B == 0 || Nkv == 0 || !(dq || dk || dv || dlogits)) return;
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
    dsoftmax_rows<<<row_grid(rows), 256, 0, c.stream>>>(S, D, rows, m, stats.data<float>(), out.data<float>(), gp,
                                                        L.o, Hv, dlogits ? dlogits->data<float>() : nullptr);
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
