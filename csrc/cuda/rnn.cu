// Recurrent kernels on the GPU: whole-sequence fused LSTM, GRU (reset_after) and tanh RNN, forward
// and backward, float32. The CPU module's csrc/cpu/rnn.cpp with the same names, arguments, checks
// (csrc/rnn_checks.h) and results; its header comment describes the layouts and options.
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
#include <cstdint>

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

// ---- small elementwise kernels --------------------------------------------------------------------

// C (M x N, row stride ldc) = beta * C; beta == 0 writes zeros (a product over K == 0).
__global__ void scale_kernel(float* C, int64_t M, int64_t N, int64_t ldc, float beta) {
  GRID_STRIDE(i, M * N) {
    float* p = C + (i / N) * ldc + i % N;
    *p = beta == 0.f ? 0.f : beta * *p;
  }
}

// y (rows, F) = x * m[row / T] (the input dropout mask per batch row); y may be x.
__global__ void mul_rows_kernel(const float* x, const float* m, float* y, int64_t rows, int64_t T, int64_t F) {
  GRID_STRIDE(i, rows * F) {
    const int64_t r = i / F, j = i % F;
    y[i] = x[i] * m[(r / T) * F + j];
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

// H_prev (B, T, U) into dst rows of W floats, indexed by t like the gates: what the recurrent
// product read at step s (h0 or out[:, s-1]), times the recurrent dropout mask.
__global__ void fill_hprev_kernel(const float* h0, const float* out, const float* rec, float* dst, int64_t B,
                                  int64_t T, int64_t U, int64_t W, bool back) {
  GRID_STRIDE(i, B * T * U) {
    const int64_t b = i / (T * U), rem = i % (T * U), s = rem / U, j = rem % U;
    const int64_t t = back ? T - 1 - s : s;
    float v = s == 0 ? h0[b * U + j] : out[(b * T + s - 1) * U + j];
    if (rec) v *= rec[b * U + j];
    dst[(b * T + t) * W + j] = v;
  }
}

// X (B*T rows, times the input dropout mask) into columns [U, U + F) of dst rows of W floats.
__global__ void fill_x_kernel(const float* x, const float* in, float* dst, int64_t rows, int64_t T, int64_t F,
                              int64_t U, int64_t W) {
  GRID_STRIDE(i, rows * F) {
    const int64_t r = i / F, j = i % F;
    float v = x[i];
    if (in) v *= in[(r / T) * F + j];
    dst[r * W + U + j] = v;
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

// LSTM forward. z: pre-activations x K + h R (4U a row) in, activations i, f, g, o out (unmasked
// rows); cp / cn: c_{t-1} / c_t (may be the same buffer); hn: the step's output; hd (null without
// a recurrent mask): h_t * rec for the next step's product.
__global__ void lstm_fwd_step(float* z, int64_t zld, const float* bias, const float* hp, int64_t hpld,
                              const float* cp, int64_t cpld, float* cn, int64_t cnld, float* hn, int64_t hnld,
                              const uint8_t* m, int64_t mld, const float* rec, float* hd, int64_t B, int64_t U) {
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
      h = hp[b * hpld + j];
    }
    cn[b * cnld + j] = c;
    hn[b * hnld + j] = h;
    if (hd) hd[i] = h * rec[i];
  }
}

// GRU forward (reset_after). gx: x K row (3U) in, z, r, hh out; gr: h_prev R (B, 3U); bx / br:
// input / recurrent bias (null: zero); rh (may be null): h_prev R_h + b_rh for the backward.
__global__ void gru_fwd_step(float* gx, int64_t gld, const float* gr, const float* bx, const float* br,
                             const float* hp, int64_t hpld, float* hn, int64_t hnld, float* rh, int64_t rhld,
                             const uint8_t* m, int64_t mld, const float* rec, float* hd, int64_t B, int64_t U) {
  GRID_STRIDE(i, B * U) {
    const int64_t b = i / U, j = i % U;
    const float hprev = hp[b * hpld + j];
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
    hn[b * hnld + j] = h;
    if (hd) hd[i] = h * rec[i];
  }
}

// Simple RNN forward: z (x K + h R) in, a = tanh(z + b) out, h_t = a.
__global__ void rnn_fwd_step(float* z, int64_t zld, const float* bias, const float* hp, int64_t hpld, float* hn,
                             int64_t hnld, const uint8_t* m, int64_t mld, const float* rec, float* hd, int64_t B,
                             int64_t U) {
  GRID_STRIDE(i, B * U) {
    const int64_t b = i / U, j = i % U;
    float h;
    if (!m || m[b * mld]) {
      float* zr = z + b * zld;
      h = tanhf(zr[j] + (bias ? bias[j] : 0.f));
      zr[j] = h;
    } else {
      h = hp[b * hpld + j];
    }
    hn[b * hnld + j] = h;
    if (hd) hd[i] = h * rec[i];
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
__global__ void gru_bwd_step(const float* act, int64_t ald, const float* rh, int64_t rhld, const float* hp,
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
    const float dzp = h * (hp[b * hpld + j] - hh) * z * (1.f - z);
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

void copy_d2d(Context& c, float* dst, const float* src, int64_t n) {
  if (n > 0) LAMINA_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * sizeof(float), cudaMemcpyDeviceToDevice, c.stream));
}

void zero(Context& c, float* dst, int64_t n) {
  if (n > 0) LAMINA_CUDA_CHECK(cudaMemsetAsync(dst, 0, size_t(n) * sizeof(float), c.stream));
}

// rows of `width` floats: dst (row stride dld) = src (row stride sld)
void copy_rows(Context& c, float* dst, int64_t dld, const float* src, int64_t sld, int64_t rows, int64_t width) {
  if (rows <= 0 || width <= 0) return;
  LAMINA_CUDA_CHECK(cudaMemcpy2DAsync(dst, size_t(dld) * sizeof(float), src, size_t(sld) * sizeof(float),
                                      size_t(width) * sizeof(float), size_t(rows), cudaMemcpyDeviceToDevice, c.stream));
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

// ---- forward -------------------------------------------------------------------------------------

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
  const float* bias = p.bias;

  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = a.t_of(s), tp = s > 0 ? a.t_of(s - 1) : 0;
    const float* A = hdp ? hdp : (s == 0 ? p.h0 : out + (s - 1) * U);
    const int64_t lda = hdp || s == 0 ? U : T * U;
    float* z = gates + t * GU;
    if (a.cell == GRU) prod(c, false, false, B, GU, U, A, lda, p.R, GU, 0.f, gr.data<float>(), GU);
    else prod(c, false, false, B, GU, U, A, lda, p.R, GU, 1.f, z, T * GU);
    if (U == 0) continue;
    const float* hp = s == 0 ? p.h0 : out + (s - 1) * U;
    const int64_t hpld = s == 0 ? U : T * U;
    float* hn = out + s * U;
    const uint8_t* m = p.mask ? p.mask + t : nullptr;
    if (a.cell == LSTM) {
      const float* cp = cs ? (s == 0 ? p.c0 : cs + tp * U) : c_last;
      const int64_t cpld = cs && s > 0 ? T * U : U;
      float* cn = cs ? cs + t * U : c_last;
      const int64_t cnld = cs ? T * U : U;
      lstm_fwd_step<<<g, 256, 0, st>>>(z, T * GU, bias, hp, hpld, cp, cpld, cn, cnld, hn, T * U, m, T, p.rec_mask, hdp,
                                       B, U);
    } else if (a.cell == GRU) {
      gru_fwd_step<<<g, 256, 0, st>>>(z, T * GU, gr.data<float>(), bias, bias ? bias + GU : nullptr, hp, hpld, hn,
                                      T * U, rh ? rh + t * U : nullptr, T * U, m, T, p.rec_mask, hdp, B, U);
    } else {
      rnn_fwd_step<<<g, 256, 0, st>>>(z, T * GU, bias, hp, hpld, hn, T * U, m, T, p.rec_mask, hdp, B, U);
    }
  }
  // final states
  if (T > 0) copy_rows(c, h_last, U, out + (T - 1) * U, T * U, B, U);
  else copy_d2d(c, h_last, p.h0, B * U);
  if (a.cell == LSTM && cs) {
    if (T > 0) copy_rows(c, c_last, U, cs + a.t_of(T - 1) * U, T * U, B, U);
    else copy_d2d(c, c_last, p.c0, B * U);
  }
}

// ---- backward ------------------------------------------------------------------------------------

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
    const int64_t t = a.t_of(s), tp = s > 0 ? a.t_of(s - 1) : 0;
    const float* hrs = s < T - 1 ? hr : nullptr;
    const float* ds = dout ? dout + s * U : nullptr;
    const uint8_t* m = p.mask ? p.mask + t : nullptr;
    if (U > 0) {
      if (a.cell == LSTM) {
        const float* cp = s == 0 ? p.c0 : cs + tp * U;
        lstm_bwd_step<<<g, 256, 0, st>>>(gates + t * GU, T * GU, cs + t * U, T * U, cp, s == 0 ? U : T * U, hd, ds,
                                         T * U, hrs, p.rec_mask, dc, dgp + t * GU, T * GU, m, T, B, U);
      } else if (a.cell == GRU) {
        const float* hp = s == 0 ? p.h0 : out + (s - 1) * U;
        gru_bwd_step<<<g, 256, 0, st>>>(gates + t * GU, T * GU, rh + t * U, T * U, hp, s == 0 ? U : T * U, hd, ds,
                                        T * U, hrs, p.rec_mask, dgp + t * GU, dgr + t * GU, T * GU, m, T, B, U);
      } else {
        rnn_bwd_step<<<g, 256, 0, st>>>(gates + t * GU, T * GU, hd, ds, T * U, hrs, p.rec_mask, dgp + t * GU, T * GU,
                                        m, T, B, U);
      }
    }
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
    fill_hprev_kernel<<<grid_for(rows * U), 256, 0, st>>>(p.h0, out, p.rec_mask, hsrc, B, T, U, ldh, a.back);
  if (hprev_out && hprev_x && rows * F > 0)
    fill_x_kernel<<<grid_for(rows * F), 256, 0, st>>>(p.x, p.in_mask, hprev_out, rows, T, F, U, W);
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

}  // namespace

// ---- bound entry points --------------------------------------------------------------------------

void lstm_forward(const Buffer& x, const Buffer& h0, const Buffer& c0, const Buffer& K, const Buffer& R,
                  const Buffer* bias, const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B,
                  int64_t T, int64_t F, int64_t U, bool go_backwards, Buffer& out, Buffer& h_last, Buffer& c_last,
                  Buffer& gates, Buffer* cs) {
  const char* op = kFwdName[LSTM];
  const Dims a = check_inputs(LSTM, op, x, h0, &c0, K, R, bias, mask, in_mask, rec_mask, B, T, F, U, go_backwards);
  check_fwd_outputs(a, op, out, h_last, &c_last, gates);
  check_opt(op, "saved c states", cs, {B, T, U}, F32);
  Context& c = op_device(op, {&x, &h0, &c0, &K, &R, bias, mask, in_mask, rec_mask, &out, &h_last, &c_last, &gates, cs});
  forward(c, a, inputs(x, h0, &c0, K, R, bias, mask, in_mask, rec_mask), out.data<float>(), h_last.data<float>(),
          c_last.data<float>(), gates.data<float>(), fp(cs), nullptr);
  launched(c, op);
}

void gru_forward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* bias,
                 const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T, int64_t F,
                 int64_t U, bool go_backwards, Buffer& out, Buffer& h_last, Buffer& gates, Buffer* rh) {
  const char* op = kFwdName[GRU];
  const Dims a = check_inputs(GRU, op, x, h0, nullptr, K, R, bias, mask, in_mask, rec_mask, B, T, F, U, go_backwards);
  check_fwd_outputs(a, op, out, h_last, nullptr, gates);
  check_opt(op, "saved recurrent candidates", rh, {B, T, U}, F32);
  Context& c = op_device(op, {&x, &h0, &K, &R, bias, mask, in_mask, rec_mask, &out, &h_last, &gates, rh});
  forward(c, a, inputs(x, h0, nullptr, K, R, bias, mask, in_mask, rec_mask), out.data<float>(), h_last.data<float>(),
          nullptr, gates.data<float>(), nullptr, fp(rh));
  launched(c, op);
}

void simple_rnn_forward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* bias,
                        const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T,
                        int64_t F, int64_t U, bool go_backwards, Buffer& out, Buffer& h_last, Buffer& gates) {
  const char* op = kFwdName[SIMPLE];
  const Dims a = check_inputs(SIMPLE, op, x, h0, nullptr, K, R, bias, mask, in_mask, rec_mask, B, T, F, U,
                              go_backwards);
  check_fwd_outputs(a, op, out, h_last, nullptr, gates);
  Context& c = op_device(op, {&x, &h0, &K, &R, bias, mask, in_mask, rec_mask, &out, &h_last, &gates});
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
  const Dims a = check_inputs(LSTM, op, x, h0, &c0, K, R, nullptr, mask, in_mask, rec_mask, B, T, F, U, go_backwards);
  check_bwd(a, op, out, gates, dout, dh_last, dc_last, dx, dh0, dc0, dK, dR, db);
  check_accumulate(op, accumulate, dK, dR, db);
  check_saved(a, op, dgates, dgates_rec, h_prev);
  check_buffer(op, "saved c states", cs, {B, T, U}, F32);
  Context& c = op_device(op, {&x, &h0, &c0, &K, &R, mask, in_mask, rec_mask, &out, &gates, &cs, dout, dh_last, dc_last,
                              dx, dh0, dc0, dK, dR, db, dgates, dgates_rec, h_prev});
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
  const Dims a = check_inputs(GRU, op, x, h0, nullptr, K, R, nullptr, mask, in_mask, rec_mask, B, T, F, U,
                              go_backwards);
  check_bwd(a, op, out, gates, dout, dh_last, nullptr, dx, dh0, nullptr, dK, dR, db);
  check_accumulate(op, accumulate, dK, dR, db);
  check_saved(a, op, dgates, dgates_rec, h_prev);
  check_buffer(op, "saved recurrent candidates", rh, {B, T, U}, F32);
  Context& c = op_device(op, {&x, &h0, &K, &R, mask, in_mask, rec_mask, &out, &gates, &rh, dout, dh_last, dx, dh0, dK,
                              dR, db, dgates, dgates_rec, h_prev});
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
  const Dims a = check_inputs(SIMPLE, op, x, h0, nullptr, K, R, nullptr, mask, in_mask, rec_mask, B, T, F, U,
                              go_backwards);
  check_bwd(a, op, out, gates, dout, dh_last, nullptr, dx, dh0, nullptr, dK, dR, db);
  check_accumulate(op, accumulate, dK, dR, db);
  check_saved(a, op, dgates, dgates_rec, h_prev);
  Context& c = op_device(op, {&x, &h0, &K, &R, mask, in_mask, rec_mask, &out, &gates, dout, dh_last, dx, dh0, dK, dR,
                              db, dgates, dgates_rec, h_prev});
  backward(c, a, inputs(x, h0, nullptr, K, R, nullptr, mask, in_mask, rec_mask), out.data<float>(),
           gates.data<float>(), nullptr, nullptr, fp(dout), fp(dh_last), nullptr, fp(dx), fp(dh0), nullptr, fp(dK),
           fp(dR), fp(db), accumulate, fp(dgates), fp(dgates_rec), fp(h_prev), hprev_stacked(a, h_prev));
  launched(c, op);
}

}  // namespace gpu
}  // namespace lamina
