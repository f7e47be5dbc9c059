// Recurrent kernels on the GPU: whole-sequence fused LSTM, GRU (reset_after) and tanh RNN, forward
// and backward, float32, and in bfloat16 (mixed precision). The CPU module's csrc/cpu/rnn.cpp with
// the same names, arguments, checks (csrc/rnn_checks.h) and results; its header comment describes
// the layouts, the options and the bfloat16 contract (the buffers' dtypes, the roundings).
//
// Forward: one product x @ kernel over all B*T rows into the gate buffer (B, T, G*U) (x times the
// input dropout mask first, when there is one); then per step one product h_prev @ R accumulated
// into gates[:, t] (the GRU's into a (B, 3U) scratch: its candidate needs r * (h_prev R_h + b_h)
// apart from x_h), and one fused kernel over (row, unit) for the gate maths, the mask and the
// states (each thread owns its unit of its row in every buffer it writes).
// Backward: reverse over the steps, one fused kernel for the gate gradients and one product
// dgates @ R^T for the gradient of h_prev a step; then dR = H_prev^T dG, dK = X^T dG and
// dX = dG K^T as single products over all B*T rows, and db as column sums.
// Products go through gemm_f32 (cuBLAS when loaded) on the device's stream, so everything a call
// does is ordered on that stream: the scratch buffers (stream-ordered pool) need no waiting.
//
// bfloat16 (x, kernel and recurrent kernel bfloat16; forward16 / backward16): the CPU's contract.
// Every product takes bfloat16 operands and sums in float32 (cublas_gemm_bf16, cuBLAS's
// GemmStridedBatchedEx with a float32 C) -- x times the input dropout mask, rounded; h_{t-1} as
// the bfloat16 outputs hold it (h0 at the first step) times the recurrent dropout mask, rounded;
// the gate gradients, rounded (the GRU's recurrent ones for the recurrent products) -- while the
// gate maths, c, the bias and every sum stay float32, in the same step kernels (templated on the
// element type of h: the bfloat16 ones round h as they write it). h0, c0, bias, dropout masks and
// the incoming gradients may be float32 or bfloat16 (bfloat16 ones are widened to float32 copies
// first); out, h_last, c_last bfloat16; dx float32 or bfloat16; gates, saved c / rh, the other
// gradients and the deferred-gradient outputs float32. Without cuBLAS's GemmStridedBatchedEx (or
// with sizes beyond its 32-bit arguments) a bfloat16 call throws Unsupported before queuing any
// work, and the host runs it (backend/device.py).
#include <climits>
#include <cstdint>
#include <memory>
#include <string>

#include "../rnn_checks.h"
#include "gpu.h"

namespace lamina {
namespace gpu {
namespace {

using namespace ::lamina::rnn_args;

struct In {
  const float *x, *h0, *c0, *K, *R, *bias;
  const uint8_t* mask;              // (B, T) bool or null
  const float *in_mask, *rec_mask;  // (B, F), (B, U) or null
};

const float* fp(const Buffer* b) { return b ? b->data<float>() : nullptr; }
float* fp(Buffer* b) { return b ? b->data<float>() : nullptr; }

In inputs(const Buffer& x, const Buffer& h0, const Buffer* c0, const Buffer& K, const Buffer& R, const Buffer* bias,
          const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask) {
  In p;
  p.x = x.data<float>(); p.h0 = h0.data<float>(); p.c0 = fp(c0);
  p.K = K.data<float>(); p.R = R.data<float>(); p.bias = fp(bias);
  p.mask = mask ? mask->data<uint8_t>() : nullptr;
  p.in_mask = fp(in_mask); p.rec_mask = fp(rec_mask);
  return p;
}

__device__ __forceinline__ float sigm(float v) { return 1.f / (1.f + expf(-v)); }

// Element access to float32 and bfloat16 (uint16_t) buffers; values are float32 in registers and
// rounded (nearest, ties to even: types.h, as the CPU) where stored to bfloat16.
__device__ __forceinline__ float ld(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const uint16_t* p, int64_t i) { return bf16_to_f32(p[i]); }
__device__ __forceinline__ void st(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st(uint16_t* p, int64_t i, float v) { p[i] = f32_to_bf16(v); }
// v as a buffer of p's element type holds it
__device__ __forceinline__ float held(float v, const float*) { return v; }
__device__ __forceinline__ float held(float v, const uint16_t*) { return bf16_to_f32(f32_to_bf16(v)); }

// ---- small elementwise kernels --------------------------------------------------------------------

// C (M x N, row stride ldc) = beta * C; beta == 0 writes zeros (a product over K == 0).
__global__ void scale_kernel(float* C, int64_t M, int64_t N, int64_t ldc, float beta) {
  GRID_STRIDE(i, M * N) {
    float* p = C + (i / N) * ldc + i % N;
    *p = beta == 0.f ? 0.f : beta * *p;
  }
}

// y (rows, F) = x * m[row / T] (the input dropout mask per batch row); y may be x.
template <class X, class Y>
__global__ void mul_rows_kernel(const X* x, const float* m, Y* y, int64_t rows, int64_t T, int64_t F) {
  GRID_STRIDE(i, rows * F) {
    const int64_t r = i / F, j = i % F;
    st(y, i, ld(x, i) * m[(r / T) * F + j]);
  }
}

// bfloat16 helpers: y = x widened; y = x (times m where given) rounded; p rounded in place to
// bfloat16's values (float32 buffers holding what a product read).
__global__ void widen_kernel(const uint16_t* x, float* y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = bf16_to_f32(x[i]);
}
__global__ void round_mul_kernel(const float* x, const float* m, uint16_t* y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = f32_to_bf16(m ? x[i] * m[i] : x[i]);
}
__global__ void held_kernel(float* p, int64_t n) {
  GRID_STRIDE(i, n) p[i] = held(p[i], static_cast<const uint16_t*>(nullptr));
}
// rows of `width` floats (row stride sld) rounded into rows of dst (row stride dld)
__global__ void round_rows_kernel(const float* src, int64_t sld, uint16_t* dst, int64_t dld, int64_t rows,
                                  int64_t width) {
  GRID_STRIDE(i, rows * width) {
    const int64_t r = i / width, j = i % width;
    dst[r * dld + j] = f32_to_bf16(src[r * sld + j]);
  }
}

__global__ void mul_kernel(const float* a, const float* m, float* y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = a[i] * m[i];
}

// dh0 = hd + hr * rec (hr: the gradient through the first step's product; null when T == 0)
__global__ void dh0_kernel(const float* hd, const float* hr, const float* rec, float* dh0, int64_t n) {
  GRID_STRIDE(i, n) {
    float v = hd[i];
    if (hr) v += rec ? hr[i] * rec[i] : hr[i];
    dh0[i] = v;
  }
}

// H_prev (B, T, U) into dst rows of W elements, indexed by t like the gates: what the recurrent
// product read at step s (h0 or out[:, s-1]), times the recurrent dropout mask (rnd: rounded to
// bfloat16's values, as the bfloat16 products read it, into a float32 dst).
template <class O, class D>
__global__ void fill_hprev_kernel(const float* h0, const O* out, const float* rec, D* dst, int64_t B, int64_t T,
                                  int64_t U, int64_t W, bool back, bool rnd) {
  GRID_STRIDE(i, B * T * U) {
    const int64_t b = i / (T * U), rem = i % (T * U), s = rem / U, j = rem % U;
    const int64_t t = back ? T - 1 - s : s;
    float v = s == 0 ? h0[b * U + j] : ld(out, (b * T + s - 1) * U + j);
    if (rec) v *= rec[b * U + j];
    if (rnd) v = held(v, static_cast<const uint16_t*>(nullptr));
    st(dst, (b * T + t) * W + j, v);
  }
}

// X (B*T rows, times the input dropout mask) into columns [U, U + F) of dst rows of W elements
// (rnd: as fill_hprev_kernel's).
template <class X, class D>
__global__ void fill_x_kernel(const X* x, const float* in, D* dst, int64_t rows, int64_t T, int64_t F, int64_t U,
                              int64_t W, bool rnd) {
  GRID_STRIDE(i, rows * F) {
    const int64_t r = i / F, j = i % F;
    float v = ld(x, i);
    if (in) v *= in[(r / T) * F + j];
    if (rnd) v = held(v, static_cast<const uint16_t*>(nullptr));
    st(dst, r * W + U + j, v);
  }
}

// out[j] += sum over rows of a[r, j] (a: rows x cols); out zeroed first unless accumulating.
// Blocks of 32 x 8 threads: 32 columns, 8 row lanes striding over the block's rows; the block's
// partial sums go to out with one atomicAdd a column.
__global__ void col_sums_kernel(const float* a, int64_t rows, int64_t cols, float* out) {
  __shared__ float part[8][33];
  const int64_t col = int64_t(blockIdx.x) * 32 + threadIdx.x;
  float s = 0.f;
  if (col < cols)
    for (int64_t r = int64_t(blockIdx.y) * 8 + threadIdx.y; r < rows; r += int64_t(gridDim.y) * 8) s += a[r * cols + col];
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float t = 0.f;
    for (int k = 0; k < 8; ++k) t += part[k][threadIdx.x];
    atomicAdd(out + col, t);
  }
}

// ---- step kernels: one thread per (batch row b, unit j) -----------------------------------------
// Row pointers come as (base, row stride): the step's slice of a (B, T, n) buffer is base + t * n
// with stride T * n; a (B, n) buffer has stride n. m: the mask at the step (stride T) or null.
// HP / H: the element types of h_prev (h0 float32, or the outputs) and of the step's output and
// operand (float, or bfloat16 in uint16_t: h is rounded as it is stored, and the next product's
// operand is the rounded h times the recurrent mask, rounded).

// LSTM forward. z: pre-activations x K + h R (4U a row) in, activations i, f, g, o out (unmasked
// rows); cp / cn: c_{t-1} / c_t (may be the same buffer); hn: the step's output; hd (null without
// a recurrent mask): h_t * rec for the next step's product.
template <class HP, class H>
__global__ void lstm_fwd_step(float* z, int64_t zld, const float* bias, const HP* hp, int64_t hpld,
                              const float* cp, int64_t cpld, float* cn, int64_t cnld, H* hn, int64_t hnld,
                              const uint8_t* m, int64_t mld, const float* rec, H* hd, int64_t B, int64_t U) {
  GRID_STRIDE(i, B * U) {
    const int64_t b = i / U, j = i % U;
    float c, h;
    if (!m || m[b * mld]) {
      float* zr = z + b * zld;
      const float ig = sigm(zr[j] + (bias ? bias[j] : 0.f));
      const float fg = sigm(zr[U + j] + (bias ? bias[U + j] : 0.f));
      const float gg = tanhf(zr[2 * U + j] + (bias ? bias[2 * U + j] : 0.f));
      const float og = sigm(zr[3 * U + j] + (bias ? bias[3 * U + j] : 0.f));
      c = fg * cp[b * cpld + j] + ig * gg;
      h = og * tanhf(c);
      zr[j] = ig; zr[U + j] = fg; zr[2 * U + j] = gg; zr[3 * U + j] = og;
    } else {  // masked: the states carry through, the output repeats h_prev
      c = cp[b * cpld + j];
      h = ld(hp, b * hpld + j);
    }
    cn[b * cnld + j] = c;
    h = held(h, hn);
    st(hn, b * hnld + j, h);
    if (hd) st(hd, i, h * rec[i]);
  }
}

// GRU forward (reset_after). gx: x K row (3U) in, z, r, hh out; gr: h_prev R (B, 3U); bx / br:
// input / recurrent bias (null: zero); rh (may be null): h_prev R_h + b_rh for the backward.
template <class HP, class H>
__global__ void gru_fwd_step(float* gx, int64_t gld, const float* gr, const float* bx, const float* br,
                             const HP* hp, int64_t hpld, H* hn, int64_t hnld, float* rh, int64_t rhld,
                             const uint8_t* m, int64_t mld, const float* rec, H* hd, int64_t B, int64_t U) {
  GRID_STRIDE(i, B * U) {
    const int64_t b = i / U, j = i % U;
    const float hprev = ld(hp, b * hpld + j);
    float h;
    if (!m || m[b * mld]) {
      float* g = gx + b * gld;
      const float* q = gr + b * 3 * U;
      const float z = sigm(g[j] + (bx ? bx[j] : 0.f) + q[j] + (br ? br[j] : 0.f));
      const float r = sigm(g[U + j] + (bx ? bx[U + j] : 0.f) + q[U + j] + (br ? br[U + j] : 0.f));
      const float rr = q[2 * U + j] + (br ? br[2 * U + j] : 0.f);
      const float hh = tanhf(g[2 * U + j] + (bx ? bx[2 * U + j] : 0.f) + r * rr);
      g[j] = z; g[U + j] = r; g[2 * U + j] = hh;
      h = z * hprev + (1.f - z) * hh;
      if (rh) rh[b * rhld + j] = rr;
    } else {
      h = hprev;
    }
    h = held(h, hn);
    st(hn, b * hnld + j, h);
    if (hd) st(hd, i, h * rec[i]);
  }
}

// Simple RNN forward: z (x K + h R) in, a = tanh(z + b) out, h_t = a.
template <class HP, class H>
__global__ void rnn_fwd_step(float* z, int64_t zld, const float* bias, const HP* hp, int64_t hpld, H* hn,
                             int64_t hnld, const uint8_t* m, int64_t mld, const float* rec, H* hd, int64_t B,
                             int64_t U) {
  GRID_STRIDE(i, B * U) {
    const int64_t b = i / U, j = i % U;
    float h;
    if (!m || m[b * mld]) {
      float* zr = z + b * zld;
      h = tanhf(zr[j] + (bias ? bias[j] : 0.f));
      zr[j] = h;
    } else {
      h = ld(hp, b * hpld + j);
    }
    h = held(h, hn);
    st(hn, b * hnld + j, h);
    if (hd) st(hd, i, h * rec[i]);
  }
}

// The gradient of h_t: the carried direct part hd, plus the step's output gradient, plus the
// gradient through the next step's product (hr, times the recurrent dropout mask).
__device__ __forceinline__ float grad_h(const float* hd, const float* dout, int64_t dold, const float* hr,
                                        const float* rec, int64_t i, int64_t b, int64_t j) {
  float h = hd[i];
  if (dout) h += dout[b * dold + j];
  if (hr) h += rec ? hr[i] * rec[i] : hr[i];
  return h;
}

// LSTM backward. act: i, f, g, o; c / cp: c_t / c_{t-1}; hd: the carried gradient of h (zeroed:
// the path to h_{t-1} goes through the product); dc: the gradient of c_t in, of c_{t-1} out; dz:
// the gradient of the 4U pre-activations (zero on masked rows, where hd and dc carry through).
__global__ void lstm_bwd_step(const float* act, int64_t ald, const float* c, int64_t cld, const float* cp,
                              int64_t cpld, float* hd, const float* dout, int64_t dold, const float* hr,
                              const float* rec, float* dc, float* dz, int64_t dzld, const uint8_t* m, int64_t mld,
                              int64_t B, int64_t U) {
  GRID_STRIDE(i, B * U) {
    const int64_t b = i / U, j = i % U;
    const float h = grad_h(hd, dout, dold, hr, rec, i, b, j);
    float* d = dz + b * dzld;
    if (m && !m[b * mld]) {
      d[j] = 0.f; d[U + j] = 0.f; d[2 * U + j] = 0.f; d[3 * U + j] = 0.f;
      hd[i] = h;
      continue;
    }
    const float* a = act + b * ald;
    const float ig = a[j], fg = a[U + j], gg = a[2 * U + j], og = a[3 * U + j];
    const float tc = tanhf(c[b * cld + j]);
    const float dd = dc[i] + h * og * (1.f - tc * tc);
    d[j] = dd * gg * ig * (1.f - ig);
    d[U + j] = dd * cp[b * cpld + j] * fg * (1.f - fg);
    d[2 * U + j] = dd * ig * (1.f - gg * gg);
    d[3 * U + j] = h * tc * og * (1.f - og);
    dc[i] = dd * fg;
    hd[i] = 0.f;
  }
}

// GRU backward. act: z, r, hh; rh: h_prev R_h + b_rh; hp: h_prev; hd: the gradient of h_t in,
// its direct part for h_{t-1} (dh z) out; dgx / dgr: gradients of the input / recurrent
// pre-activations (they differ in the candidate's column: dhh vs dhh r).
template <class HP>
__global__ void gru_bwd_step(const float* act, int64_t ald, const float* rh, int64_t rhld, const HP* hp,
                             int64_t hpld, float* hd, const float* dout, int64_t dold, const float* hr,
                             const float* rec, float* dgx, float* dgr, int64_t dld, const uint8_t* m, int64_t mld,
                             int64_t B, int64_t U) {
  GRID_STRIDE(i, B * U) {
    const int64_t b = i / U, j = i % U;
    const float h = grad_h(hd, dout, dold, hr, rec, i, b, j);
    float* gx = dgx + b * dld;
    float* gq = dgr + b * dld;
    if (m && !m[b * mld]) {
      gx[j] = 0.f; gx[U + j] = 0.f; gx[2 * U + j] = 0.f;
      gq[j] = 0.f; gq[U + j] = 0.f; gq[2 * U + j] = 0.f;
      hd[i] = h;
      continue;
    }
    const float* a = act + b * ald;
    const float z = a[j], r = a[U + j], hh = a[2 * U + j];
    const float dzp = h * (ld(hp, b * hpld + j) - hh) * z * (1.f - z);
    const float dhh = h * (1.f - z) * (1.f - hh * hh);
    const float drp = dhh * rh[b * rhld + j] * r * (1.f - r);
    gx[j] = dzp; gx[U + j] = drp; gx[2 * U + j] = dhh;
    gq[j] = dzp; gq[U + j] = drp; gq[2 * U + j] = dhh * r;
    hd[i] = h * z;
  }
}

__global__ void rnn_bwd_step(const float* act, int64_t ald, float* hd, const float* dout, int64_t dold,
                             const float* hr, const float* rec, float* dz, int64_t dzld, const uint8_t* m,
                             int64_t mld, int64_t B, int64_t U) {
  GRID_STRIDE(i, B * U) {
    const int64_t b = i / U, j = i % U;
    const float h = grad_h(hd, dout, dold, hr, rec, i, b, j);
    if (m && !m[b * mld]) {
      dz[b * dzld + j] = 0.f;
      hd[i] = h;
      continue;
    }
    const float a = act[b * ald + j];
    dz[b * dzld + j] = h * (1.f - a * a);
    hd[i] = 0.f;
  }
}

// ---- host helpers ------------------------------------------------------------------------------

// C (M x N, row stride ldc) = op(A) op(B) + beta C on the stream (C = beta C when K == 0).
void prod(Context& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (beta != 1.f) scale_kernel<<<grid_for(M * N), 256, 0, c.stream>>>(C, M, N, ldc, beta);
    return;
  }
  gemm_f32(c, ta, tb, M, N, K, 1.f, A, lda, B, ldb, beta, C, ldc);
}

// As prod, A and B bfloat16: float32 products and sums into the float32 C (cuBLAS's
// GemmStridedBatchedEx; require_bf16 checked it and the sizes before the call queued anything).
void prod16(Context& c, const char* op, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const uint16_t* A,
            int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (beta != 1.f) scale_kernel<<<grid_for(M * N), 256, 0, c.stream>>>(C, M, N, ldc, beta);
    return;
  }
  if (!cublas_gemm_bf16(c, ta, tb, M, N, K, A, lda, 0, B, ldb, 0, beta, C, false, ldc, 0, 1))
    throw Unsupported(std::string(op) + ": bfloat16 products need cuBLAS (GemmStridedBatchedEx)");
}

// Unsupported (the host runs the call) where the bfloat16 products cannot run on c's device: no
// cuBLAS GemmStridedBatchedEx, or sizes / leading dimensions beyond its 32-bit arguments. Checked
// before anything is queued.
void require_bf16(Context& c, const char* op, const Dims& a) {
  const int64_t sizes[] = {a.B * a.T, a.T * a.GU, a.T * a.U, a.GU, a.U + a.F};
  for (int64_t v : sizes)
    if (v > INT_MAX)
      throw Unsupported(std::string(op) + ": a bfloat16 recurrence of these sizes exceeds cuBLAS's 32-bit "
                                          "arguments; it runs on the host");
  if (!cublas_bf16_available(c))
    throw Unsupported(std::string(op) + ": bfloat16 recurrences need cuBLAS (GemmStridedBatchedEx); this one runs "
                                        "on the host");
}

void copy_d2d(Context& c, float* dst, const float* src, int64_t n) {
  if (n > 0) LAMINA_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * sizeof(float), cudaMemcpyDeviceToDevice, c.stream));
}

void zero(Context& c, float* dst, int64_t n) {
  if (n > 0) LAMINA_CUDA_CHECK(cudaMemsetAsync(dst, 0, size_t(n) * sizeof(float), c.stream));
}

// rows of `width` elements of type E: dst (row stride dld) = src (row stride sld)
template <class E>
void copy_rows(Context& c, E* dst, int64_t dld, const E* src, int64_t sld, int64_t rows, int64_t width) {
  if (rows <= 0 || width <= 0) return;
  LAMINA_CUDA_CHECK(cudaMemcpy2DAsync(dst, size_t(dld) * sizeof(E), src, size_t(sld) * sizeof(E),
                                      size_t(width) * sizeof(E), size_t(rows), cudaMemcpyDeviceToDevice, c.stream));
}

// dst (rows of width, stride dld) = src (stride sld) rounded to bfloat16
void round_rows(Context& c, uint16_t* dst, int64_t dld, const float* src, int64_t sld, int64_t rows, int64_t width) {
  if (rows > 0 && width > 0)
    round_rows_kernel<<<grid_for(rows * width), 256, 0, c.stream>>>(src, sld, dst, dld, rows, width);
}

// out[0:cols] (+)= column sums of a (rows x cols)
void col_sums(Context& c, const float* a, int64_t rows, int64_t cols, float* out, bool accumulate) {
  if (cols <= 0) return;
  if (!accumulate) zero(c, out, cols);
  if (rows <= 0) return;
  int64_t gy = (rows + 127) / 128;  // at least 16 rows a thread
  gy = gy < 1 ? 1 : (gy > 1024 ? 1024 : gy);
  dim3 grid(unsigned((cols + 31) / 32), unsigned(gy));
  col_sums_kernel<<<grid, dim3(32, 8), 0, c.stream>>>(a, rows, cols, out);
}

// A float32-or-bfloat16 buffer read as float32: its own data, or a float32 copy widened on the stream.
struct F32View {
  std::unique_ptr<Buffer> w;
  const float* p = nullptr;
  F32View(Context& c, const Buffer* b) {
    if (!b) return;
    if (b->dtype != BF16) {
      p = b->data<float>();
      return;
    }
    w.reset(new Buffer(b->numel, F32, c.index));
    if (b->numel > 0)
      widen_kernel<<<grid_for(b->numel), 256, 0, c.stream>>>(b->data<uint16_t>(), w->data<float>(), b->numel);
    p = w->data<float>();
  }
};

// ---- forward -------------------------------------------------------------------------------------

// Step s's gate maths (after its products): h_prev hp (row stride hpld) of HP elements, the output
// and the next product's operand hd (null without a recurrent mask) of H elements. crun: the
// LSTM's running c when the steps' are not kept (cs null).
template <class HP, class H>
void fwd_step(Context& c, const Dims& a, int64_t s, float* gates, const float* gr, const float* bias, const HP* hp,
              int64_t hpld, const float* c0, float* cs, float* crun, float* rh, H* out, const uint8_t* mask,
              const float* rec, H* hd) {
  const int64_t B = a.B, T = a.T, U = a.U, GU = a.GU;
  const int64_t t = a.t_of(s), tp = s > 0 ? a.t_of(s - 1) : 0;
  const unsigned g = grid_for(B * U);
  auto st = c.stream;
  float* z = gates + t * GU;
  H* hn = out + s * U;
  const uint8_t* m = mask ? mask + t : nullptr;
  if (a.cell == LSTM) {
    const float* cp = cs ? (s == 0 ? c0 : cs + tp * U) : crun;
    const int64_t cpld = cs && s > 0 ? T * U : U;
    float* cn = cs ? cs + t * U : crun;
    const int64_t cnld = cs ? T * U : U;
    lstm_fwd_step<HP, H><<<g, 256, 0, st>>>(z, T * GU, bias, hp, hpld, cp, cpld, cn, cnld, hn, T * U, m, T, rec, hd,
                                            B, U);
  } else if (a.cell == GRU) {
    gru_fwd_step<HP, H><<<g, 256, 0, st>>>(z, T * GU, gr, bias, bias ? bias + GU : nullptr, hp, hpld, hn, T * U,
                                           rh ? rh + t * U : nullptr, T * U, m, T, rec, hd, B, U);
  } else {
    rnn_fwd_step<HP, H><<<g, 256, 0, st>>>(z, T * GU, bias, hp, hpld, hn, T * U, m, T, rec, hd, B, U);
  }
}

// gates (B, T, GU): working buffer, the gate activations afterwards. cs (LSTM) / rh (GRU),
// (B, T, U): saved for the backward pass when given. c_last is the LSTM's running c without cs.
void forward(Context& c, const Dims& a, const In& p, float* out, float* h_last, float* c_last, float* gates, float* cs,
             float* rh) {
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = a.GU;
  if (B == 0) return;
  const int dev = c.index;
  auto st = c.stream;
  const unsigned g = grid_for(B * U);

  // input projection for every step: one product over B*T rows
  Buffer xe(p.in_mask ? B * T * F : 0, F32, dev);
  const float* xin = p.x;
  if (p.in_mask) {
    if (B * T * F > 0)
      mul_rows_kernel<<<grid_for(B * T * F), 256, 0, st>>>(p.x, p.in_mask, xe.data<float>(), B * T, T, F);
    xin = xe.data<float>();
  }
  prod(c, false, false, B * T, GU, F, xin, F, p.K, GU, 0.f, gates, GU);

  if (a.cell == LSTM && !cs) copy_d2d(c, c_last, p.c0, B * U);  // the running c
  // h_prev as the recurrent product reads it: dropped-out copies when there is a recurrent mask
  Buffer hd(p.rec_mask ? B * U : 0, F32, dev);
  float* hdp = p.rec_mask ? hd.data<float>() : nullptr;
  if (hdp && B * U > 0) mul_kernel<<<g, 256, 0, st>>>(p.h0, p.rec_mask, hdp, B * U);
  Buffer gr(a.cell == GRU ? B * GU : 0, F32, dev);

  for (int64_t s = 0; s < T; ++s) {
    const float* A = hdp ? hdp : (s == 0 ? p.h0 : out + (s - 1) * U);
    const int64_t lda = hdp || s == 0 ? U : T * U;
    if (a.cell == GRU) prod(c, false, false, B, GU, U, A, lda, p.R, GU, 0.f, gr.data<float>(), GU);
    else prod(c, false, false, B, GU, U, A, lda, p.R, GU, 1.f, gates + a.t_of(s) * GU, T * GU);
    if (U == 0) continue;
    fwd_step(c, a, s, gates, gr.data<float>(), p.bias, s == 0 ? p.h0 : out + (s - 1) * U, s == 0 ? U : T * U, p.c0,
             cs, c_last, rh, out, p.mask, p.rec_mask, hdp);
  }
  // final states
  if (T > 0) copy_rows(c, h_last, U, out + (T - 1) * U, T * U, B, U);
  else copy_d2d(c, h_last, p.h0, B * U);
  if (a.cell == LSTM && cs) {
    if (T > 0) copy_rows(c, c_last, U, cs + a.t_of(T - 1) * U, T * U, B, U);
    else copy_d2d(c, c_last, p.c0, B * U);
  }
}

// The bfloat16 computation's inputs: x, kernel and recurrent kernel bfloat16; h0, c0, bias and the
// dropout masks float32 (views of float32-or-bfloat16 buffers).
struct In16 {
  const uint16_t *x, *K, *R;
  const float *h0, *c0, *bias, *in_mask, *rec_mask;
  const uint8_t* mask;
};

// As forward(), in bfloat16 (the CPU's forward_bf16): out, h_last and the LSTM's c_last bfloat16.
// The products' h_prev operand: h0 (times the recurrent mask) rounded at the first step; then the
// outputs themselves, or, with a recurrent mask, the step kernels' rounded h times the mask,
// rounded. The GRU's z h_{t-1} takes h_{t-1} as the outputs hold it (h0, float32, at the first step).
void forward16(Context& c, const char* op, const Dims& a, const In16& p, uint16_t* out, uint16_t* h_last,
               uint16_t* c_last, float* gates, float* cs, float* rh) {
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = a.GU;
  if (B == 0) return;
  const int dev = c.index;
  auto st = c.stream;
  const bool lstm = a.cell == LSTM;

  Buffer xe(p.in_mask ? B * T * F : 0, BF16, dev);  // x times the input dropout mask, rounded
  const uint16_t* xin = p.x;
  if (p.in_mask) {
    if (B * T * F > 0)
      mul_rows_kernel<<<grid_for(B * T * F), 256, 0, st>>>(p.x, p.in_mask, xe.data<uint16_t>(), B * T, T, F);
    xin = xe.data<uint16_t>();
  }
  prod16(c, op, false, false, B * T, GU, F, xin, F, p.K, GU, 0.f, gates, GU);

  Buffer cr(lstm && !cs ? B * U : 0, F32, dev);  // the LSTM's running c (float32) when the steps' are not kept
  float* crun = cr.data<float>();
  if (lstm && !cs) copy_d2d(c, crun, p.c0, B * U);
  Buffer hb(T > 0 ? B * U : 0, BF16, dev);  // the product's h_prev operand (step 0; every step with a recurrent mask)
  uint16_t* hbp = hb.data<uint16_t>();
  if (T > 0 && B * U > 0) round_mul_kernel<<<grid_for(B * U), 256, 0, st>>>(p.h0, p.rec_mask, hbp, B * U);
  Buffer gr(a.cell == GRU ? B * GU : 0, F32, dev);
  uint16_t* hd = p.rec_mask ? hbp : nullptr;

  for (int64_t s = 0; s < T; ++s) {
    const bool own = p.rec_mask || s == 0;
    const uint16_t* A = own ? hbp : out + (s - 1) * U;
    const int64_t lda = own ? U : T * U;
    if (a.cell == GRU) prod16(c, op, false, false, B, GU, U, A, lda, p.R, GU, 0.f, gr.data<float>(), GU);
    else prod16(c, op, false, false, B, GU, U, A, lda, p.R, GU, 1.f, gates + a.t_of(s) * GU, T * GU);
    if (U == 0) continue;
    if (s == 0)
      fwd_step(c, a, s, gates, gr.data<float>(), p.bias, p.h0, U, p.c0, cs, crun, rh, out, p.mask, p.rec_mask, hd);
    else
      fwd_step(c, a, s, gates, gr.data<float>(), p.bias, static_cast<const uint16_t*>(out + (s - 1) * U), T * U,
               p.c0, cs, crun, rh, out, p.mask, p.rec_mask, hd);
  }
  // final states: h_last as the outputs hold it (h0 rounded without steps), c_last rounded
  if (T > 0) copy_rows(c, h_last, U, out + (T - 1) * U, T * U, B, U);
  else round_rows(c, h_last, U, p.h0, U, B, U);
  if (lstm) {
    if (!cs) round_rows(c, c_last, U, crun, U, B, U);
    else if (T > 0) round_rows(c, c_last, U, cs + a.t_of(T - 1) * U, T * U, B, U);
    else round_rows(c, c_last, U, p.c0, U, B, U);
  }
}

// ---- backward ------------------------------------------------------------------------------------

// Step s's gate gradients into dgp (and the GRU's recurrent ones into dgr); hd, dc carried; hrs:
// the gradient through the next step's product (null at the last step); hp: h_prev for the GRU.
template <class HP>
void bwd_step(Context& c, const Dims& a, int64_t s, const float* gates, const float* cs, const float* rh,
              const HP* hp, int64_t hpld, const float* dout, const float* hrs, float* hd, float* dc, float* dgp,
              float* dgr, const float* c0, const float* rec, const uint8_t* mask) {
  const int64_t B = a.B, T = a.T, U = a.U, GU = a.GU;
  const int64_t t = a.t_of(s), tp = s > 0 ? a.t_of(s - 1) : 0;
  const unsigned g = grid_for(B * U);
  auto st = c.stream;
  const float* ds = dout ? dout + s * U : nullptr;
  const uint8_t* m = mask ? mask + t : nullptr;
  if (a.cell == LSTM) {
    const float* cp = s == 0 ? c0 : cs + tp * U;
    lstm_bwd_step<<<g, 256, 0, st>>>(gates + t * GU, T * GU, cs + t * U, T * U, cp, s == 0 ? U : T * U, hd, ds, T * U,
                                     hrs, rec, dc, dgp + t * GU, T * GU, m, T, B, U);
  } else if (a.cell == GRU) {
    gru_bwd_step<HP><<<g, 256, 0, st>>>(gates + t * GU, T * GU, rh + t * U, T * U, hp, hpld, hd, ds, T * U, hrs, rec,
                                        dgp + t * GU, dgr + t * GU, T * GU, m, T, B, U);
  } else {
    rnn_bwd_step<<<g, 256, 0, st>>>(gates + t * GU, T * GU, hd, ds, T * U, hrs, rec, dgp + t * GU, T * GU, m, T, B, U);
  }
}

// As the CPU's backward (csrc/cpu/rnn.cpp): out, gates, cs / rh from the forward pass; dout,
// dh_last, dc_last the incoming gradients (null: zero); gradients written where a buffer is
// given, the weight gradients added into theirs per `accumulate`; dg_out / dgr_out / hprev_out
// (hprev_x: [H_prev X] side by side) kept for weight gradients formed later.
void backward(Context& c, const Dims& a, const In& p, const float* out, const float* gates, const float* cs,
              const float* rh, const float* dout, const float* dh_last, const float* dc_last, float* dx, float* dh0,
              float* dc0, float* dK, float* dR, float* db, int64_t accumulate, float* dg_out, float* dgr_out,
              float* hprev_out, bool hprev_x) {
  const bool acc_k = accumulate & kAccKernel, acc_r = accumulate & kAccRecurrent, acc_b = accumulate & kAccBias;
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = a.GU;
  const int dev = c.index;
  auto st = c.stream;
  const unsigned g = grid_for(B * U);
  Buffer dg_s(dg_out ? 0 : B * T * GU, F32, dev), dgr_s(a.cell == GRU && !dgr_out ? B * T * GU : 0, F32, dev);
  float* const dgp = dg_out ? dg_out : dg_s.data<float>();
  float* const dgr = a.cell == GRU ? (dgr_out ? dgr_out : dgr_s.data<float>()) : dgp;
  // carries: hd, the direct part of dh_prev; hr, dgates @ R^T from the step after; dc
  Buffer hd_b(B * U, F32, dev), hr_b(B * U, F32, dev), dc_b(a.cell == LSTM ? B * U : 0, F32, dev);
  float *hd = hd_b.data<float>(), *hr = hr_b.data<float>(), *dc = dc_b.data<float>();
  if (dh_last) copy_d2d(c, hd, dh_last, B * U); else zero(c, hd, B * U);
  if (a.cell == LSTM) {
    if (dc_last) copy_d2d(c, dc, dc_last, B * U); else zero(c, dc, B * U);
  }

  for (int64_t s = T - 1; s >= 0 && B > 0; --s) {
    const int64_t t = a.t_of(s);
    if (U > 0)
      bwd_step(c, a, s, gates, cs, rh, s == 0 ? p.h0 : out + (s - 1) * U, s == 0 ? U : T * U, dout,
               s < T - 1 ? hr : nullptr, hd, dc, dgp, dgr, p.c0, p.rec_mask, p.mask);
    // dh_prev through the product: dgates @ R^T
    if (s > 0 || dh0) prod(c, false, true, B, U, GU, dgr + t * GU, T * GU, p.R, GU, 0.f, hr, U);
  }
  if (dh0 && B * U > 0)
    dh0_kernel<<<g, 256, 0, st>>>(hd, T > 0 ? hr : nullptr, p.rec_mask, dh0, B * U);
  if (dc0 && a.cell == LSTM) copy_d2d(c, dc0, dc, B * U);

  // weight gradients: single products over all B*T rows
  const int64_t rows = B * T;
  const int64_t W = hprev_out && hprev_x ? U + F : U;
  Buffer hs(!hprev_out && dR ? rows * U : 0, F32, dev);
  float* const hsrc = hprev_out ? hprev_out : hs.data<float>();
  const int64_t ldh = hprev_out ? W : U;
  if ((hprev_out || dR) && rows * U > 0)
    fill_hprev_kernel<<<grid_for(rows * U), 256, 0, st>>>(p.h0, out, p.rec_mask, hsrc, B, T, U, ldh, a.back, false);
  if (hprev_out && hprev_x && rows * F > 0)
    fill_x_kernel<<<grid_for(rows * F), 256, 0, st>>>(p.x, p.in_mask, hprev_out, rows, T, F, U, W, false);
  if (dR) prod(c, true, false, U, GU, rows, hsrc, ldh, dgr, GU, acc_r ? 1.f : 0.f, dR, GU);
  if (dK) {
    Buffer xe(p.in_mask && !(hprev_out && hprev_x) ? rows * F : 0, F32, dev);
    const float* xsrc = p.x;
    int64_t ldx = F;
    if (hprev_out && hprev_x) {
      xsrc = hprev_out + U;
      ldx = W;
    } else if (p.in_mask) {
      if (rows * F > 0) mul_rows_kernel<<<grid_for(rows * F), 256, 0, st>>>(p.x, p.in_mask, xe.data<float>(), rows, T, F);
      xsrc = xe.data<float>();
    }
    prod(c, true, false, F, GU, rows, xsrc, ldx, dgp, GU, acc_k ? 1.f : 0.f, dK, GU);
  }
  if (dx) {
    prod(c, false, true, rows, F, GU, dgp, GU, p.K, GU, 0.f, dx, F);
    if (p.in_mask && rows * F > 0) mul_rows_kernel<<<grid_for(rows * F), 256, 0, st>>>(dx, p.in_mask, dx, rows, T, F);
  }
  if (db) {
    col_sums(c, dgp, rows, GU, db, acc_b);
    if (a.cell == GRU) col_sums(c, dgr, rows, GU, db + GU, acc_b);
  }
}

// As backward(), in bfloat16 (the CPU's backward_bf16). out bfloat16; dout, dh_last, dc_last
// float32 (views); dx float32 or, dx16, bfloat16; the other gradients float32. The gate gradients
// are rounded for the products (the GRU's recurrent ones for dh_prev = dGr R^T and dR = H_prev^T
// dGr, the input ones for dx = dG K^T and dK = X^T dG); the bias gradient sums them unrounded;
// dg_out / dgr_out end with the rounded values and hprev_out with the operands' values.
void backward16(Context& c, const char* op, const Dims& a, const In16& p, const uint16_t* out, const float* gates,
                const float* cs, const float* rh, const float* dout, const float* dh_last, const float* dc_last,
                float* dx, uint16_t* dx16, float* dh0, float* dc0, float* dK, float* dR, float* db,
                int64_t accumulate, float* dg_out, float* dgr_out, float* hprev_out, bool hprev_x) {
  const bool acc_k = accumulate & kAccKernel, acc_r = accumulate & kAccRecurrent, acc_b = accumulate & kAccBias;
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = a.GU;
  const bool gru = a.cell == GRU;
  const int dev = c.index;
  auto st = c.stream;
  const unsigned g = grid_for(B * U);
  const int64_t rows = B * T;
  Buffer dg_s(dg_out ? 0 : rows * GU, F32, dev), dgr_s(gru && !dgr_out ? rows * GU : 0, F32, dev);
  float* const dgp = dg_out ? dg_out : dg_s.data<float>();
  float* const dgr = gru ? (dgr_out ? dgr_out : dgr_s.data<float>()) : dgp;
  Buffer dg16_b(rows * GU, BF16, dev), dgr16_b(gru ? rows * GU : 0, BF16, dev);  // the products' operands
  uint16_t* const dg16 = dg16_b.data<uint16_t>();
  uint16_t* const dgr16 = gru ? dgr16_b.data<uint16_t>() : dg16;
  Buffer hd_b(B * U, F32, dev), hr_b(B * U, F32, dev), dc_b(a.cell == LSTM ? B * U : 0, F32, dev);
  float *hd = hd_b.data<float>(), *hr = hr_b.data<float>(), *dc = dc_b.data<float>();
  if (dh_last) copy_d2d(c, hd, dh_last, B * U); else zero(c, hd, B * U);
  if (a.cell == LSTM) {
    if (dc_last) copy_d2d(c, dc, dc_last, B * U); else zero(c, dc, B * U);
  }

  for (int64_t s = T - 1; s >= 0 && B > 0; --s) {
    const int64_t t = a.t_of(s);
    if (U > 0) {
      const float* hrs = s < T - 1 ? hr : nullptr;
      if (s == 0)
        bwd_step(c, a, s, gates, cs, rh, p.h0, U, dout, hrs, hd, dc, dgp, dgr, p.c0, p.rec_mask, p.mask);
      else
        bwd_step(c, a, s, gates, cs, rh, out + (s - 1) * U, T * U, dout, hrs, hd, dc, dgp, dgr, p.c0, p.rec_mask,
                 p.mask);
      round_rows(c, dg16 + t * GU, T * GU, dgp + t * GU, T * GU, B, GU);
      if (gru) round_rows(c, dgr16 + t * GU, T * GU, dgr + t * GU, T * GU, B, GU);
    }
    if (s > 0 || dh0) prod16(c, op, false, true, B, U, GU, dgr16 + t * GU, T * GU, p.R, GU, 0.f, hr, U);
  }
  if (dh0 && B * U > 0)
    dh0_kernel<<<g, 256, 0, st>>>(hd, T > 0 ? hr : nullptr, p.rec_mask, dh0, B * U);
  if (dc0 && a.cell == LSTM) copy_d2d(c, dc0, dc, B * U);

  // weight gradients: single products over all B*T rows, on the operands the steps' products read
  if (hprev_out) {
    const int64_t W = hprev_x ? U + F : U;
    if (rows * U > 0)
      fill_hprev_kernel<<<grid_for(rows * U), 256, 0, st>>>(p.h0, out, p.rec_mask, hprev_out, B, T, U, W, a.back,
                                                            true);
    if (hprev_x && rows * F > 0)
      fill_x_kernel<<<grid_for(rows * F), 256, 0, st>>>(p.x, p.in_mask, hprev_out, rows, T, F, U, W, true);
  }
  if (dR) {  // H_prev^T dGr
    Buffer hs(rows * U, BF16, dev);
    if (rows * U > 0)
      fill_hprev_kernel<<<grid_for(rows * U), 256, 0, st>>>(p.h0, out, p.rec_mask, hs.data<uint16_t>(), B, T, U, U,
                                                            a.back, false);
    prod16(c, op, true, false, U, GU, rows, hs.data<uint16_t>(), U, dgr16, GU, acc_r ? 1.f : 0.f, dR, GU);
  }
  if (dK) {  // X^T dG
    Buffer xe(p.in_mask ? rows * F : 0, BF16, dev);
    const uint16_t* xsrc = p.x;
    if (p.in_mask) {
      if (rows * F > 0)
        mul_rows_kernel<<<grid_for(rows * F), 256, 0, st>>>(p.x, p.in_mask, xe.data<uint16_t>(), rows, T, F);
      xsrc = xe.data<uint16_t>();
    }
    prod16(c, op, true, false, F, GU, rows, xsrc, F, dg16, GU, acc_k ? 1.f : 0.f, dK, GU);
  }
  if (dx || dx16) {  // dG K^T (times the input mask), rounded once into a bfloat16 dx
    Buffer xs(dx ? 0 : rows * F, F32, dev);
    float* d = dx ? dx : xs.data<float>();
    prod16(c, op, false, true, rows, F, GU, dg16, GU, p.K, GU, 0.f, d, F);
    if (p.in_mask && rows * F > 0) mul_rows_kernel<<<grid_for(rows * F), 256, 0, st>>>(d, p.in_mask, d, rows, T, F);
    if (dx16) round_rows(c, dx16, F, d, F, rows, F);
  }
  if (db) {  // before dg_out / dgr_out take the rounded values
    col_sums(c, dgp, rows, GU, db, acc_b);
    if (gru) col_sums(c, dgr, rows, GU, db + GU, acc_b);
  }
  if (dg_out && rows * GU > 0) held_kernel<<<grid_for(rows * GU), 256, 0, st>>>(dg_out, rows * GU);
  if (dgr_out && gru && rows * GU > 0) held_kernel<<<grid_for(rows * GU), 256, 0, st>>>(dgr_out, rows * GU);
}

// The bfloat16 inputs: float32 views of h0, c0, bias and the dropout masks (owned here).
struct Views16 {
  F32View h0, c0, bias, in_mask, rec_mask;
  In16 p;
  Views16(Context& c, const Buffer& x, const Buffer& h0_, const Buffer* c0_, const Buffer& K, const Buffer& R,
          const Buffer* bias_, const Buffer* mask, const Buffer* in_mask_, const Buffer* rec_mask_)
      : h0(c, &h0_), c0(c, c0_), bias(c, bias_), in_mask(c, in_mask_), rec_mask(c, rec_mask_) {
    p.x = x.data<uint16_t>(); p.K = K.data<uint16_t>(); p.R = R.data<uint16_t>();
    p.h0 = h0.p; p.c0 = c0.p; p.bias = bias.p; p.in_mask = in_mask.p; p.rec_mask = rec_mask.p;
    p.mask = mask ? mask->data<uint8_t>() : nullptr;
  }
};

uint16_t* hp16(Buffer* b) { return b ? b->data<uint16_t>() : nullptr; }

}  // namespace

// ---- bound entry points --------------------------------------------------------------------------
// A bfloat16 x (compute_dtype) takes the bfloat16 computation: its checks (the CPU's, dt = BF16),
// then Unsupported without cuBLAS's bfloat16 GEMM before any work, then the float32 views.

void lstm_forward(const Buffer& x, const Buffer& h0, const Buffer& c0, const Buffer& K, const Buffer& R,
                  const Buffer* bias, const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B,
                  int64_t T, int64_t F, int64_t U, bool go_backwards, Buffer& out, Buffer& h_last, Buffer& c_last,
                  Buffer& gates, Buffer* cs) {
  const char* op = kFwdName[LSTM];
  const DType dt = compute_dtype(op, x, K, R);
  const Dims a =
      check_inputs(LSTM, op, x, h0, &c0, K, R, bias, mask, in_mask, rec_mask, B, T, F, U, go_backwards, dt);
  check_fwd_outputs(a, op, out, h_last, &c_last, gates, dt);
  check_opt(op, "saved c states", cs, {B, T, U}, F32);
  Context& c = op_device(op, {&x, &h0, &c0, &K, &R, bias, mask, in_mask, rec_mask, &out, &h_last, &c_last, &gates, cs});
  if (dt == BF16) {
    require_bf16(c, op, a);
    const Views16 v(c, x, h0, &c0, K, R, bias, mask, in_mask, rec_mask);
    forward16(c, op, a, v.p, hp16(&out), hp16(&h_last), hp16(&c_last), gates.data<float>(), fp(cs), nullptr);
    return launched(c, op);
  }
  forward(c, a, inputs(x, h0, &c0, K, R, bias, mask, in_mask, rec_mask), out.data<float>(), h_last.data<float>(),
          c_last.data<float>(), gates.data<float>(), fp(cs), nullptr);
  launched(c, op);
}

void gru_forward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* bias,
                 const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T, int64_t F,
                 int64_t U, bool go_backwards, Buffer& out, Buffer& h_last, Buffer& gates, Buffer* rh) {
  const char* op = kFwdName[GRU];
  const DType dt = compute_dtype(op, x, K, R);
  const Dims a =
      check_inputs(GRU, op, x, h0, nullptr, K, R, bias, mask, in_mask, rec_mask, B, T, F, U, go_backwards, dt);
  check_fwd_outputs(a, op, out, h_last, nullptr, gates, dt);
  check_opt(op, "saved recurrent candidates", rh, {B, T, U}, F32);
  Context& c = op_device(op, {&x, &h0, &K, &R, bias, mask, in_mask, rec_mask, &out, &h_last, &gates, rh});
  if (dt == BF16) {
    require_bf16(c, op, a);
    const Views16 v(c, x, h0, nullptr, K, R, bias, mask, in_mask, rec_mask);
    forward16(c, op, a, v.p, hp16(&out), hp16(&h_last), nullptr, gates.data<float>(), nullptr, fp(rh));
    return launched(c, op);
  }
  forward(c, a, inputs(x, h0, nullptr, K, R, bias, mask, in_mask, rec_mask), out.data<float>(), h_last.data<float>(),
          nullptr, gates.data<float>(), nullptr, fp(rh));
  launched(c, op);
}

void simple_rnn_forward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* bias,
                        const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T,
                        int64_t F, int64_t U, bool go_backwards, Buffer& out, Buffer& h_last, Buffer& gates) {
  const char* op = kFwdName[SIMPLE];
  const DType dt = compute_dtype(op, x, K, R);
  const Dims a = check_inputs(SIMPLE, op, x, h0, nullptr, K, R, bias, mask, in_mask, rec_mask, B, T, F, U,
                              go_backwards, dt);
  check_fwd_outputs(a, op, out, h_last, nullptr, gates, dt);
  Context& c = op_device(op, {&x, &h0, &K, &R, bias, mask, in_mask, rec_mask, &out, &h_last, &gates});
  if (dt == BF16) {
    require_bf16(c, op, a);
    const Views16 v(c, x, h0, nullptr, K, R, bias, mask, in_mask, rec_mask);
    forward16(c, op, a, v.p, hp16(&out), hp16(&h_last), nullptr, gates.data<float>(), nullptr, nullptr);
    return launched(c, op);
  }
  forward(c, a, inputs(x, h0, nullptr, K, R, bias, mask, in_mask, rec_mask), out.data<float>(), h_last.data<float>(),
          nullptr, gates.data<float>(), nullptr, nullptr);
  launched(c, op);
}

void lstm_backward(const Buffer& x, const Buffer& h0, const Buffer& c0, const Buffer& K, const Buffer& R,
                   const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T, int64_t F,
                   int64_t U, bool go_backwards, const Buffer& out, const Buffer& gates, const Buffer& cs,
                   const Buffer* dout, const Buffer* dh_last, const Buffer* dc_last, Buffer* dx, Buffer* dh0,
                   Buffer* dc0, Buffer* dK, Buffer* dR, Buffer* db, int64_t accumulate, Buffer* dgates,
                   Buffer* dgates_rec, Buffer* h_prev) {
  const char* op = kBwdName[LSTM];
  const DType dt = compute_dtype(op, x, K, R);
  const Dims a =
      check_inputs(LSTM, op, x, h0, &c0, K, R, nullptr, mask, in_mask, rec_mask, B, T, F, U, go_backwards, dt);
  check_bwd(a, op, out, gates, dout, dh_last, dc_last, dx, dh0, dc0, dK, dR, db, dt);
  check_accumulate(op, accumulate, dK, dR, db);
  check_saved(a, op, dgates, dgates_rec, h_prev);
  check_buffer(op, "saved c states", cs, {B, T, U}, F32);
  Context& c = op_device(op, {&x, &h0, &c0, &K, &R, mask, in_mask, rec_mask, &out, &gates, &cs, dout, dh_last, dc_last,
                              dx, dh0, dc0, dK, dR, db, dgates, dgates_rec, h_prev});
  if (dt == BF16) {
    require_bf16(c, op, a);
    const Views16 v(c, x, h0, &c0, K, R, nullptr, mask, in_mask, rec_mask);
    const F32View g_out(c, dout), g_h(c, dh_last), g_c(c, dc_last);
    const bool dx16 = dx && dx->dtype == BF16;
    backward16(c, op, a, v.p, out.data<uint16_t>(), gates.data<float>(), cs.data<float>(), nullptr, g_out.p, g_h.p,
               g_c.p, dx16 ? nullptr : fp(dx), dx16 ? hp16(dx) : nullptr, fp(dh0), fp(dc0), fp(dK), fp(dR), fp(db),
               accumulate, fp(dgates), nullptr, fp(h_prev), hprev_stacked(a, h_prev));
    return launched(c, op);
  }
  backward(c, a, inputs(x, h0, &c0, K, R, nullptr, mask, in_mask, rec_mask), out.data<float>(), gates.data<float>(),
           cs.data<float>(), nullptr, fp(dout), fp(dh_last), fp(dc_last), fp(dx), fp(dh0), fp(dc0), fp(dK), fp(dR),
           fp(db), accumulate, fp(dgates), nullptr, fp(h_prev), hprev_stacked(a, h_prev));
  launched(c, op);
}

void gru_backward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* mask,
                  const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T, int64_t F, int64_t U,
                  bool go_backwards, const Buffer& out, const Buffer& gates, const Buffer& rh, const Buffer* dout,
                  const Buffer* dh_last, Buffer* dx, Buffer* dh0, Buffer* dK, Buffer* dR, Buffer* db,
                  int64_t accumulate, Buffer* dgates, Buffer* dgates_rec, Buffer* h_prev) {
  const char* op = kBwdName[GRU];
  const DType dt = compute_dtype(op, x, K, R);
  const Dims a = check_inputs(GRU, op, x, h0, nullptr, K, R, nullptr, mask, in_mask, rec_mask, B, T, F, U,
                              go_backwards, dt);
  check_bwd(a, op, out, gates, dout, dh_last, nullptr, dx, dh0, nullptr, dK, dR, db, dt);
  check_accumulate(op, accumulate, dK, dR, db);
  check_saved(a, op, dgates, dgates_rec, h_prev);
  check_buffer(op, "saved recurrent candidates", rh, {B, T, U}, F32);
  Context& c = op_device(op, {&x, &h0, &K, &R, mask, in_mask, rec_mask, &out, &gates, &rh, dout, dh_last, dx, dh0, dK,
                              dR, db, dgates, dgates_rec, h_prev});
  if (dt == BF16) {
    require_bf16(c, op, a);
    const Views16 v(c, x, h0, nullptr, K, R, nullptr, mask, in_mask, rec_mask);
    const F32View g_out(c, dout), g_h(c, dh_last);
    const bool dx16 = dx && dx->dtype == BF16;
    backward16(c, op, a, v.p, out.data<uint16_t>(), gates.data<float>(), nullptr, rh.data<float>(), g_out.p, g_h.p,
               nullptr, dx16 ? nullptr : fp(dx), dx16 ? hp16(dx) : nullptr, fp(dh0), nullptr, fp(dK), fp(dR), fp(db),
               accumulate, fp(dgates), fp(dgates_rec), fp(h_prev), hprev_stacked(a, h_prev));
    return launched(c, op);
  }
  backward(c, a, inputs(x, h0, nullptr, K, R, nullptr, mask, in_mask, rec_mask), out.data<float>(),
           gates.data<float>(), nullptr, rh.data<float>(), fp(dout), fp(dh_last), nullptr, fp(dx), fp(dh0), nullptr,
           fp(dK), fp(dR), fp(db), accumulate, fp(dgates), fp(dgates_rec), fp(h_prev), hprev_stacked(a, h_prev));
  launched(c, op);
}

void simple_rnn_backward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* mask,
                         const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T, int64_t F, int64_t U,
                         bool go_backwards, const Buffer& out, const Buffer& gates, const Buffer* dout,
                         const Buffer* dh_last, Buffer* dx, Buffer* dh0, Buffer* dK, Buffer* dR, Buffer* db,
                         int64_t accumulate, Buffer* dgates, Buffer* dgates_rec, Buffer* h_prev) {
  const char* op = kBwdName[SIMPLE];
  const DType dt = compute_dtype(op, x, K, R);
  const Dims a = check_inputs(SIMPLE, op, x, h0, nullptr, K, R, nullptr, mask, in_mask, rec_mask, B, T, F, U,
                              go_backwards, dt);
  check_bwd(a, op, out, gates, dout, dh_last, nullptr, dx, dh0, nullptr, dK, dR, db, dt);
  check_accumulate(op, accumulate, dK, dR, db);
  check_saved(a, op, dgates, dgates_rec, h_prev);
  Context& c = op_device(op, {&x, &h0, &K, &R, mask, in_mask, rec_mask, &out, &gates, dout, dh_last, dx, dh0, dK, dR,
                              db, dgates, dgates_rec, h_prev});
  if (dt == BF16) {
    require_bf16(c, op, a);
    const Views16 v(c, x, h0, nullptr, K, R, nullptr, mask, in_mask, rec_mask);
    const F32View g_out(c, dout), g_h(c, dh_last);
    const bool dx16 = dx && dx->dtype == BF16;
    backward16(c, op, a, v.p, out.data<uint16_t>(), gates.data<float>(), nullptr, nullptr, g_out.p, g_h.p, nullptr,
               dx16 ? nullptr : fp(dx), dx16 ? hp16(dx) : nullptr, fp(dh0), nullptr, fp(dK), fp(dR), fp(db),
               accumulate, fp(dgates), fp(dgates_rec), fp(h_prev), hprev_stacked(a, h_prev));
    return launched(c, op);
  }
  backward(c, a, inputs(x, h0, nullptr, K, R, nullptr, mask, in_mask, rec_mask), out.data<float>(),
           gates.data<float>(), nullptr, nullptr, fp(dout), fp(dh_last), nullptr, fp(dx), fp(dh0), nullptr, fp(dK),
           fp(dR), fp(db), accumulate, fp(dgates), fp(dgates_rec), fp(h_prev), hprev_stacked(a, h_prev));
  launched(c, op);
}

}  // namespace gpu
}  // namespace lamina
