// Recurrent kernels: whole-sequence, fused LSTM, GRU (reset_after) and tanh RNN, forward and
// backward, float32, and in bfloat16 (mixed precision).
//
// dtypes. Float32 throughout, except on bfloat16 x, kernel and recurrent kernel (all three
// bfloat16, else a TypeError; module.cpp lists the six kernels in BF16_KERNELS, so that
// backend/device.py passes bfloat16 buffers through): then every matrix product takes bfloat16
// operands and sums in float32 (bf16gemm, BF16PackedB: gemm_bf16.cpp; AVX512-BF16 where the CPU
// has it, else widened to float32 with the same products) -- x times the input dropout mask,
// rounded; h_{t-1} as the outputs hold it (bfloat16; h0 at the first step) times the recurrent
// dropout mask, rounded; the gate gradients, rounded (the GRU's recurrent ones, which differ in
// the candidate's column, for the recurrent products) -- while the gate maths, the LSTM's c, the
// bias and every sum stay float32 (the semantics of bfloat16 compute in Keras and PyTorch
// autocast). h, the output, is carried between steps as the outputs hold it: the GRU's z h_{t-1}
// term takes that bfloat16 value (h0 at the first step). Buffers then: h0, c0, bias, dropout
// masks, the incoming gradients dout / dh_last / dc_last and dx float32 or bfloat16 (each its
// own); out, h_last, c_last bfloat16; gates, saved c / saved rh (the GRU's h_{t-1} R_h + b_rh)
// and the deferred-gradient outputs (dgates, dgates_rec, h_prev: holding the rounded values the
// products read) float32; dh0, dc0 and the weight gradients float32 (autodiff casts them to a
// bfloat16 copy's dtype).
//
// Shapes (batch-major, as Keras): x (B, T, F); states (B, U); kernel (F, G*U); recurrent kernel
// (U, G*U); G = 4 for the LSTM (gates i, f, c, o), 3 for the GRU (z, r, h), 1 for the simple RNN.
// Bias: (G*U) for the LSTM and the RNN, (2, 3U) = [input bias; recurrent bias] for the GRU.
// Steps run in processing order s = 0..T-1 on time index t = s (t = T-1-s with go_backwards);
// outputs are written in processing order (Keras's: reversed time with go_backwards), and every
// per-step buffer kept for the backward pass (gates, c, ...) is indexed by t, like x.
//
// Forward: one GEMM x @ kernel over all B*T rows into the gate buffer (B, T, G*U); then per step
// one GEMM h_prev @ recurrent_kernel accumulated into gates[:, t] (the GRU's goes to a (B, 3U)
// scratch instead, since its candidate needs r * (h_prev @ R_h + b_h) apart from x_h), then one
// fused pass over the rows for the gate maths. It leaves the gate activations in the gate buffer
// for the backward pass, plus c_t (LSTM) or h_prev @ R_h + b_h (GRU) when asked to save them.
//
// Backward: reverse over the steps with fused gate derivatives, dgates per step, and one GEMM
// dgates @ R^T per step for dh_prev; then dR = H_prev^T @ dGates, dK = X^T @ dGates and
// dX = dGates @ K^T as single GEMMs over all steps, and db as column sums.
//
// Threads: the recurrences cut the batch into blocks of rows (12 with the AVX-512 GEMM kernel),
// which threads take from a queue and run through the whole sequence: rows are independent
// through the recurrence, so the threads never wait for each other within a sequence. Each block
// runs its per-step GEMMs with the recurrent kernel packed once per call for the GEMM
// micro-kernel (csrc/cpu/gemm_kernels.h), then its gate maths. The big GEMMs go through sgemm,
// outside any parallel region of this file.
//
// Options: a bool mask (B, T): a masked step carries the states through unchanged and outputs
// the previous h (Keras's semantics); input dropout (B, F), multiplied into x at every step;
// recurrent dropout (B, U), multiplied into h_prev before the recurrent GEMM only (the GRU's
// z * h_prev term and the LSTM's c use the undropped states, as in Keras).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "common.h"
#include "device.h"
#include "rnn_checks.h"
#include "cpu/gemm_kernels.h"
#include "gemm.h"
#include "gemm_bf16.h"
#include "simd.h"
#include "vmath.h"

namespace py = pybind11;

namespace lamina {
namespace rnn_detail {

// Cell, kGates, kFwdName, kBwdName, kAcc*, Dims and the argument checks: csrc/rnn_checks.h (shared with
// the CUDA module).
using namespace ::lamina::rnn_args;

// The recurrences run on several threads from this many multiply-adds per step on (B * U * G*U).
constexpr double kMinParallelStepFma = double(1 << 17);



// ---- GEMM with a B operand packed once ------------------------------------------------------------

const gemm::Kernel& active_kernel() {
  const std::string n = gemm_kernel_name();
  const gemm::Kernel* k = n == "avx512" ? gemm::avx512_kernel() : n == "avx2" ? gemm::avx2_kernel() : nullptr;
  return k ? *k : *gemm::generic_kernel();
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// op(B) (K x N; op(B)[p][j] = trans ? b[j*ldb + p] : b[p*ldb + j]) packed once into the GEMM
// kernel's B slivers, for the recurrent kernel, which every step multiplies. gemm() then runs
// C = A @ op(B) + beta C on the calling thread, packing only A: the per-step products need no
// repacking of the weights and no thread team of their own.
class PackedB {
 public:
  PackedB(const gemm::Kernel& kr, bool trans, const float* b, int64_t ldb, int64_t K, int64_t N)
      : kr_(kr), K_(K), N_(N), KC_(kr.kc), NC_(round_up(kr.nc, kr.nr)), MC_(round_up(kr.mc, kr.mr)) {
    struct Job { const float* src; int64_t kc, w; int64_t dst; };
    std::vector<Job> jobs;
    int64_t total = 0;
    const int64_t chunk = 8 * kr.nr;  // columns packed per job
    for (int64_t pc = 0; pc < K; pc += KC_)
      for (int64_t jc = 0; jc < N; jc += NC_) {
        const int64_t kc = std::min(KC_, K - pc), nc = std::min(NC_, N - jc);
        offs_.push_back(total);
        for (int64_t j0 = 0; j0 < nc; j0 += chunk)
          jobs.push_back({trans ? b + (jc + j0) * ldb + pc : b + pc * ldb + jc + j0, kc, std::min(chunk, nc - j0),
                          total + j0 * kc});
        total += kc * round_up(nc, kr.nr);
      }
    if (total > 0) buf_.p = static_cast<float*>(host_alloc(size_t(total) * sizeof(float), &buf_.cap));
    const int64_t n = int64_t(jobs.size());
#pragma omp parallel for if (total > kParallelGrain && n > 1) schedule(static)
    for (int64_t i = 0; i < n; ++i) kr.pack_b(trans, jobs[i].src, ldb, jobs[i].kc, jobs[i].w, kr.nr, buf_.p + jobs[i].dst);
  }
  // floats of A-packing scratch gemm() needs
  int64_t a_scratch() const { return MC_ * std::min(KC_, std::max<int64_t>(K_, 1)); }
  // C[0:M, 0:N] = A[0:M, 0:K] @ op(B) + beta * C (A row-major with row stride lda; beta == 0 does
  // not read C). ap: a_scratch() floats.
  void gemm(int64_t M, const float* A, int64_t lda, float beta, float* C, int64_t ldc, float* ap) const {
    if (M <= 0 || N_ <= 0) return;
    if (K_ <= 0) {
      for (int64_t i = 0; i < M; ++i) {
        float* c = C + i * ldc;
        if (beta == 0.f) std::fill(c, c + N_, 0.f);
        else for (int64_t j = 0; j < N_; ++j) c[j] *= beta;
      }
      return;
    }
    size_t bi = 0;
    for (int64_t pc = 0; pc < K_; pc += KC_)
      for (int64_t jc = 0; jc < N_; jc += NC_) {
        const int64_t kc = std::min(KC_, K_ - pc), nc = std::min(NC_, N_ - jc);
        const float* bp = buf_.p + offs_[bi++];
        const float bk = pc == 0 ? beta : 1.f;
        for (int64_t ic = 0; ic < M; ic += MC_) {
          const int64_t mc = std::min(MC_, M - ic);
          kr_.pack_a(false, A + ic * lda + pc, lda, mc, kc, kr_.mr, ap);
          kr_.macro(mc, nc, kc, ap, bp, C + ic * ldc + jc, ldc, 1.f, bk, nullptr);
        }
      }
  }

 private:
  const gemm::Kernel& kr_;
  int64_t K_, N_, KC_, NC_, MC_;
  std::vector<int64_t> offs_;
  Scratch buf_{0};
};

// Rows per work item of the recurrences: the kernel's register-tile height, at least 8 rows.
// Threads take blocks of rows, each for the whole sequence, from a shared queue: a thread the OS
// deschedules (the cores are shared) holds up only its current block, and a block's packed
// h_prev (12 x U) stays in L1 for the step's GEMM (on one thread, 12-row blocks also ran the
// forward pass ~9% faster than one 64-row block: benchmarks/bench_rnn.py's shape).
int64_t chunk_rows(const gemm::Kernel& kr) { return round_up(8, kr.mr); }

// Rows per block when `parts` threads run the recurrence. A batch of at most 32 rows a thread is
// cut into one block per thread, so that each thread reads the recurrent kernel once a step and
// the threads get equal shares: a pipelined step's 32-row slices on one thread (12 + 12 + 8 rows
// before: 205 -> 199 ms a step, two devices sharing the L3 cache), and bench_rnn's 64 rows on two
// threads (12-row blocks gave one thread 36 rows and the other 28: forward 4.96 -> 4.66 ms).
// Larger batches: blocks of chunk_rows from a queue.
int64_t block_rows(const gemm::Kernel& kr, int64_t B, int parts) {
  if (B <= 32 * int64_t(parts)) return std::max<int64_t>(1, round_up((B + parts - 1) / parts, 4));
  return chunk_rows(kr);
}

// Threads for a recurrence over B rows in blocks of `rows`.
int row_parts(int64_t B, int64_t U, int64_t GU, int64_t rows) {
  if (double(B) * double(U) * double(GU) < kMinParallelStepFma) return 1;
  return int(std::max<int64_t>(1, std::min<int64_t>(num_threads(), (B + rows - 1) / rows)));
}

// ---- row kernels (one batch row of one step), compiled per ISA --------------------------------

// LSTM forward. z: the row's 4U pre-activations (x K + h R) in, the gate activations i, f, g, o
// out; c_new = f c_prev + i g, h_new = o tanh(c_new). c_prev and c_new may be the same row.
LAMINA_CLONES void lstm_fwd_row(float* z, const float* b, const float* cp, float* cn, float* hn, int64_t U) {
  float* zi = z; float* zf = z + U; float* zg = z + 2 * U; float* zo = z + 3 * U;
  const float* bi = b; const float* bf = b + U; const float* bg = b + 2 * U; const float* bo = b + 3 * U;
#pragma omp simd
  for (int64_t j = 0; j < U; ++j) {
    const float i = vm::sigmoid(zi[j] + bi[j]);
    const float f = vm::sigmoid(zf[j] + bf[j]);
    const float g = vm::tanh(zg[j] + bg[j]);
    const float o = vm::sigmoid(zo[j] + bo[j]);
    const float c = f * cp[j] + i * g;
    zi[j] = i; zf[j] = f; zg[j] = g; zo[j] = o;
    cn[j] = c;
    hn[j] = o * vm::tanh(c);
  }
}

// GRU forward (reset_after). gx: x K row (3U) in, z, r, hh out; gr: h_prev R row (3U);
// bx / br: input / recurrent bias. rh (may be null) keeps h_prev R_h + b_rh for the backward pass.
LAMINA_CLONES void gru_fwd_row(float* gx, const float* gr, const float* bx, const float* br, const float* hp,
                               float* hn, float* rh, int64_t U) {
#pragma omp simd
  for (int64_t j = 0; j < U; ++j) {
    const float z = vm::sigmoid(gx[j] + bx[j] + gr[j] + br[j]);
    const float r = vm::sigmoid(gx[U + j] + bx[U + j] + gr[U + j] + br[U + j]);
    const float rr = gr[2 * U + j] + br[2 * U + j];
    const float hh = vm::tanh(gx[2 * U + j] + bx[2 * U + j] + r * rr);
    gx[j] = z; gx[U + j] = r; gx[2 * U + j] = hh;
    hn[j] = z * hp[j] + (1.f - z) * hh;
  }
  if (rh) {
#pragma omp simd
    for (int64_t j = 0; j < U; ++j) rh[j] = gr[2 * U + j] + br[2 * U + j];
  }
}

// Simple RNN forward: z (x K + h R) in, a = tanh(z + b) out, h_new = a.
LAMINA_CLONES void rnn_fwd_row(float* z, const float* b, float* hn, int64_t U) {
#pragma omp simd
  for (int64_t j = 0; j < U; ++j) {
    const float a = vm::tanh(z[j] + b[j]);
    z[j] = a;
    hn[j] = a;
  }
}

// LSTM backward. act: i, f, g, o; c: c_t; cp: c_{t-1}; dh: the gradient of h_t in (zeroed: the
// path to h_{t-1} goes through the GEMM); dc: the gradient of c_t in, of c_{t-1} out; dz: the
// gradient of the 4U pre-activations.
LAMINA_CLONES void lstm_bwd_row(const float* act, const float* c, const float* cp, float* dh, float* dc,
                                float* dz, int64_t U) {
#pragma omp simd
  for (int64_t j = 0; j < U; ++j) {
    const float i = act[j], f = act[U + j], g = act[2 * U + j], o = act[3 * U + j];
    const float tc = vm::tanh(c[j]);
    const float h = dh[j];
    const float d = dc[j] + h * o * (1.f - tc * tc);
    dz[j] = d * g * i * (1.f - i);
    dz[U + j] = d * cp[j] * f * (1.f - f);
    dz[2 * U + j] = d * i * (1.f - g * g);
    dz[3 * U + j] = h * tc * o * (1.f - o);
    dc[j] = d * f;
    dh[j] = 0.f;
  }
}

// GRU backward. act: z, r, hh; rh: h_prev R_h + b_rh; hp: h_prev; dh: the gradient of h_t in, its
// direct part for h_{t-1} (dh z) out; dgx / dgr: gradients of the input / recurrent
// pre-activations (they differ in the candidate's column: dhh vs dhh r).
LAMINA_CLONES void gru_bwd_row(const float* act, const float* rh, const float* hp, float* dh, float* dgx, float* dgr,
                               int64_t U) {
#pragma omp simd
  for (int64_t j = 0; j < U; ++j) {
    const float z = act[j], r = act[U + j], hh = act[2 * U + j];
    const float h = dh[j];
    const float dzp = h * (hp[j] - hh) * z * (1.f - z);
    const float dhh = h * (1.f - z) * (1.f - hh * hh);
    const float drp = dhh * rh[j] * r * (1.f - r);
    dgx[j] = dzp; dgx[U + j] = drp; dgx[2 * U + j] = dhh;
    dgr[j] = dzp; dgr[U + j] = drp; dgr[2 * U + j] = dhh * r;
    dh[j] = h * z;
  }
}

LAMINA_CLONES void rnn_bwd_row(const float* act, float* dh, float* dz, int64_t U) {
#pragma omp simd
  for (int64_t j = 0; j < U; ++j) {
    const float a = act[j];
    dz[j] = dh[j] * (1.f - a * a);
    dh[j] = 0.f;
  }
}

LAMINA_CLONES void row_acc(float* y, const float* a, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] += a[j];
}
LAMINA_CLONES void row_acc_mul(float* y, const float* a, const float* m, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] += a[j] * m[j];
}
LAMINA_CLONES void row_mul(float* y, const float* a, const float* m, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] = a[j] * m[j];
}

inline void row_copy(float* y, const float* a, int64_t n) {
  if (y != a && n > 0) std::memcpy(y, a, size_t(n) * sizeof(float));
}

// out[j] = sum over rows of a[r, j] (a: rows x cols, row-major); added to out when accumulate
void col_sums(const float* a, int64_t rows, int64_t cols, float* out, bool accumulate) {
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
#pragma omp parallel for if (rows * cols > kParallelGrain && blocks > 1) schedule(static)
  for (int64_t k = 0; k < blocks; ++k) {
    const int64_t c0 = k * kBlock, w = std::min(kBlock, cols - c0);
    float* o = out + c0;
    if (!accumulate) std::fill(o, o + w, 0.f);
    for (int64_t r = 0; r < rows; ++r) row_acc(o, a + r * cols + c0, w);
  }
}

// ---- arguments --------------------------------------------------------------------------------

struct Args : Dims {
  const float *x, *h0, *c0, *K, *R, *bias;
  const bool* mask;        // (B, T) or null
  const float *in_mask, *rec_mask;  // (B, F), (B, U) or null
  bool on(int64_t b, int64_t t) const { return !mask || mask[b * T + t]; }
};

const float* fptr(const Buffer* b) { return b ? b->data<float>() : nullptr; }
float* fptr(Buffer* b) { return b ? b->data<float>() : nullptr; }

// Validates the inputs every forward and backward kernel shares (rnn_checks.h); fills the Args.
Args make_args(Cell cell, const char* op, const Buffer& x, const Buffer& h0, const Buffer* c0, const Buffer& K,
               const Buffer& R, const Buffer* bias, const Buffer* mask, const Buffer* in_mask,
               const Buffer* rec_mask, int64_t B, int64_t T, int64_t F, int64_t U, bool go_backwards) {
  Args a;
  static_cast<Dims&>(a) = check_inputs(cell, op, x, h0, c0, K, R, bias, mask, in_mask, rec_mask, B, T, F, U,
                                       go_backwards);
  a.x = x.data<float>(); a.h0 = h0.data<float>(); a.c0 = cell == LSTM ? c0->data<float>() : nullptr;
  a.K = K.data<float>(); a.R = R.data<float>(); a.bias = fptr(bias);
  a.mask = mask ? mask->data<bool>() : nullptr;
  a.in_mask = fptr(in_mask); a.rec_mask = fptr(rec_mask);
  return a;
}

// x with the input dropout mask applied (every step), into `dst` (B, T, F).
void apply_input_mask(const Args& a, float* dst) {
  const int64_t rows = a.B * a.T;
#pragma omp parallel for if (rows * a.F > kParallelGrain && rows > 1) schedule(static)
  for (int64_t r = 0; r < rows; ++r) row_mul(dst + r * a.F, a.x + r * a.F, a.in_mask + (r / a.T) * a.F, a.F);
}

// ---- forward ---------------------------------------------------------------------------------

// gates (B, T, GU): working buffer, holds the gate activations afterwards. cs (LSTM) / rh (GRU),
// (B, T, U): saved for the backward pass when given. c_last is the LSTM's running c when cs is
// not given.
void forward(const Args& a, float* out, float* h_last, float* c_last, float* gates, float* cs, float* rh) {
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = a.GU;
  // zero bias when there is none, so the row kernels need no branch
  Scratch zb(a.bias ? 0 : (a.cell == GRU ? 2 * GU : GU));
  if (!a.bias && zb.p) std::fill(zb.p, zb.p + (a.cell == GRU ? 2 * GU : GU), 0.f);
  const float* bias = a.bias ? a.bias : zb.p;

  // input projection for every step: one GEMM over B*T rows
  Scratch xe(a.in_mask ? B * T * F : 0);
  const float* xin = a.x;
  if (a.in_mask) {
    apply_input_mask(a, xe.p);
    xin = xe.p;
  }
  sgemm(false, false, B * T, GU, F, 1.f, xin, F, a.K, GU, 0.f, gates, GU);

  if (a.cell == LSTM && !cs) row_copy(c_last, a.c0, B * U);  // the running c
  // h_prev as the recurrent GEMM reads it: dropped-out copies when there is a recurrent mask
  Scratch hd(a.rec_mask ? B * U : 0);
  if (a.rec_mask) row_mul(hd.p, a.h0, a.rec_mask, B * U);
  Scratch gr(a.cell == GRU ? B * GU : 0);
  const gemm::Kernel& kr = active_kernel();
  const PackedB rp(kr, false, a.R, GU, U, GU);
  const int parts = T > 0 ? row_parts(B, U, GU, chunk_rows(kr)) : 1;
  const int64_t rows = block_rows(kr, B, parts), chunks = (B + rows - 1) / rows;
  Scratch aps(parts * rp.a_scratch());

#pragma omp parallel for schedule(dynamic, 1) num_threads(parts) if (parts > 1)
  for (int64_t ci = 0; ci < chunks; ++ci) {
    const int64_t b0 = ci * rows, b1 = std::min(B, b0 + rows);
    float* ap = aps.p + omp_get_thread_num() * rp.a_scratch();
    for (int64_t s = 0; s < T && b0 < b1; ++s) {
      const int64_t t = a.t_of(s), tp = s > 0 ? a.t_of(s - 1) : 0;
      // this thread's rows of h_prev @ R
      const float* A = a.rec_mask ? hd.p + b0 * U : (s == 0 ? a.h0 + b0 * U : out + (b0 * T + s - 1) * U);
      const int64_t lda = a.rec_mask || s == 0 ? U : T * U;
      if (a.cell == GRU) rp.gemm(b1 - b0, A, lda, 0.f, gr.p + b0 * GU, GU, ap);
      else rp.gemm(b1 - b0, A, lda, 1.f, gates + (b0 * T + t) * GU, T * GU, ap);
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t row = b * T + t;
        const float* hp = s == 0 ? a.h0 + b * U : out + (b * T + s - 1) * U;
        float* hn = out + (b * T + s) * U;
        float* z = gates + row * GU;
        const bool on = a.on(b, t);
        if (a.cell == LSTM) {
          const float* cp = cs ? (s == 0 ? a.c0 + b * U : cs + (b * T + tp) * U) : c_last + b * U;
          float* cn = cs ? cs + row * U : c_last + b * U;
          if (on) lstm_fwd_row(z, bias, cp, cn, hn, U);
          else { row_copy(cn, cp, U); row_copy(hn, hp, U); }
        } else if (a.cell == GRU) {
          if (on) gru_fwd_row(z, gr.p + b * GU, bias, bias + GU, hp, hn, rh ? rh + row * U : nullptr, U);
          else row_copy(hn, hp, U);
        } else {
          if (on) rnn_fwd_row(z, bias, hn, U);
          else row_copy(hn, hp, U);
        }
        if (a.rec_mask) row_mul(hd.p + b * U, hn, a.rec_mask + b * U, U);
      }
    }
  }
  // final states
  for (int64_t b = 0; b < B; ++b) {
    row_copy(h_last + b * U, T > 0 ? out + (b * T + T - 1) * U : a.h0 + b * U, U);
    if (a.cell == LSTM && cs) row_copy(c_last + b * U, T > 0 ? cs + (b * T + a.t_of(T - 1)) * U : a.c0 + b * U, U);
  }
}

// ---- backward --------------------------------------------------------------------------------

// out, gates, cs / rh: what the forward pass left. dout (B, T, U), dh_last, dc_last: incoming
// gradients (null = zero). Gradients are written where their buffer is given; the weight
// gradients are added to what their buffers hold where `accumulate` says so (kAccKernel,
// kAccRecurrent, kAccBias), as autodiff does when one weight serves several calls.
// dg_out, dgr_out (GRU), hprev_out: where given, the gate gradients (B, T, GU) -- of the input
// and, for the GRU, of the recurrent pre-activations -- and H_prev (B, T, U), what the recurrent
// GEMM read at each step, or with hprev_x [H_prev X] (B, T, U + F) side by side, X with the
// input dropout applied: what dK = X^T dG and dR = H_prev^T dGr need, for a caller that forms the
// weight gradients later (deferred to the end of a pipelined backward pass; [H_prev X]^T dG gives
// both in one GEMM).
void backward(const Args& a, const float* out, const float* gates, const float* cs, const float* rh,
              const float* dout, const float* dh_last, const float* dc_last, float* dx, float* dh0, float* dc0,
              float* dK, float* dR, float* db, int64_t accumulate, float* dg_out, float* dgr_out, float* hprev_out,
              bool hprev_x) {
  const bool acc_k = accumulate & kAccKernel, acc_r = accumulate & kAccRecurrent, acc_b = accumulate & kAccBias;
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = a.GU;
  Scratch dg_s(dg_out ? 0 : B * T * GU), dgr_s(a.cell == GRU && !dgr_out ? B * T * GU : 0);
  float* const dgp = dg_out ? dg_out : dg_s.p;
  float* dgr = a.cell == GRU ? (dgr_out ? dgr_out : dgr_s.p) : dgp;  // gradient of the recurrent pre-activations
  // carries: hd, the direct part of dh_prev; hr, dgates @ R^T from the step after; dc
  Scratch hd(B * U), hr(B * U), dc(a.cell == LSTM ? B * U : 0);
  if (B * U > 0) {
    if (dh_last) row_copy(hd.p, dh_last, B * U); else std::fill(hd.p, hd.p + B * U, 0.f);
    if (a.cell == LSTM) {
      if (dc_last) row_copy(dc.p, dc_last, B * U); else std::fill(dc.p, dc.p + B * U, 0.f);
    }
  }
  const gemm::Kernel& kr = active_kernel();
  const PackedB rtp(kr, true, a.R, GU, GU, U);  // R^T (GU x U)
  const int parts = T > 0 ? row_parts(B, U, GU, chunk_rows(kr)) : 1;
  const int64_t rows = block_rows(kr, B, parts), chunks = (B + rows - 1) / rows;
  Scratch aps(parts * rtp.a_scratch());

#pragma omp parallel for schedule(dynamic, 1) num_threads(parts) if (parts > 1)
  for (int64_t ci = 0; ci < chunks; ++ci) {
    const int64_t b0 = ci * rows, b1 = std::min(B, b0 + rows);
    float* ap = aps.p + omp_get_thread_num() * rtp.a_scratch();
    for (int64_t s = T - 1; s >= 0 && b0 < b1; --s) {
      const int64_t t = a.t_of(s), tp = s > 0 ? a.t_of(s - 1) : 0;
      const bool has_rec = s < T - 1;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t row = b * T + t;
        float* h = hd.p + b * U;
        if (dout) row_acc(h, dout + (b * T + s) * U, U);
        if (has_rec) {
          if (a.rec_mask) row_acc_mul(h, hr.p + b * U, a.rec_mask + b * U, U);
          else row_acc(h, hr.p + b * U, U);
        }
        float* dz = dgp + row * GU;
        if (!a.on(b, t)) {  // the states passed through: dh and dc carry on unchanged
          std::fill(dz, dz + GU, 0.f);
          if (a.cell == GRU) std::fill(dgr + row * GU, dgr + (row + 1) * GU, 0.f);
          continue;
        }
        const float* act = gates + row * GU;
        if (a.cell == LSTM) {
          const float* cp = s == 0 ? a.c0 + b * U : cs + (b * T + tp) * U;
          lstm_bwd_row(act, cs + row * U, cp, h, dc.p + b * U, dz, U);
        } else if (a.cell == GRU) {
          const float* hp = s == 0 ? a.h0 + b * U : out + (b * T + s - 1) * U;
          gru_bwd_row(act, rh + row * U, hp, h, dz, dgr + row * GU, U);
        } else {
          rnn_bwd_row(act, h, dz, U);
        }
      }
      // this thread's rows of dh_prev = dgates @ R^T
      if (s > 0 || dh0) rtp.gemm(b1 - b0, dgr + (b0 * T + t) * GU, T * GU, 0.f, hr.p + b0 * U, U, ap);
    }
  }
  if (dh0) {
    row_copy(dh0, hd.p, B * U);
    if (T > 0) {
      if (a.rec_mask) row_acc_mul(dh0, hr.p, a.rec_mask, B * U);
      else row_acc(dh0, hr.p, B * U);
    }
  }
  if (dc0 && a.cell == LSTM) row_copy(dc0, dc.p, B * U);

  // weight gradients: single GEMMs over all B*T rows. dR = H_prev^T dG and dK = X^T dG share dG
  // (LSTM, RNN): then one GEMM [H_prev X]^T dG packs dG once and gives both.
  const bool fuse = dR && dK && dgr == dgp;
  const int64_t W = fuse ? U + F : U;  // row stride of the stacked [H_prev X] operand
  // H_prev (B, T, U), indexed by t like the gates: what the recurrent GEMM read at each step; in
  // rows of W floats, followed by the (masked) x row when `with_x`
  auto fill_hprev = [&](float* hx, int64_t W, bool with_x) {
#pragma omp parallel for if (B * T * W > kParallelGrain && B > 1) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < T; ++s) {
        const int64_t t = a.t_of(s);
        const float* src = s == 0 ? a.h0 + b * U : out + (b * T + s - 1) * U;
        float* dst = hx + (b * T + t) * W;
        if (a.rec_mask) row_mul(dst, src, a.rec_mask + b * U, U);
        else row_copy(dst, src, U);
        if (with_x) {
          const float* xr = a.x + (b * T + t) * F;
          if (a.in_mask) row_mul(dst + U, xr, a.in_mask + b * F, F);
          else row_copy(dst + U, xr, F);
        }
      }
  };
  if (hprev_out) fill_hprev(hprev_out, hprev_x ? U + F : U, hprev_x);
  if (dR) {
    Scratch hx(B * T * W);
    fill_hprev(hx.p, W, fuse);
    if (fuse) {
      Scratch c(W * GU);
      sgemm(true, false, W, GU, B * T, 1.f, hx.p, W, dgp, GU, 0.f, c.p, GU);
      if (acc_r) row_acc(dR, c.p, U * GU); else row_copy(dR, c.p, U * GU);
      if (acc_k) row_acc(dK, c.p + U * GU, F * GU); else row_copy(dK, c.p + U * GU, F * GU);
    } else {
      sgemm(true, false, U, GU, B * T, 1.f, hx.p, U, dgr, GU, acc_r ? 1.f : 0.f, dR, GU);
    }
  }
  if (dK && !fuse) {
    Scratch xe(a.in_mask ? B * T * F : 0);
    if (a.in_mask) apply_input_mask(a, xe.p);
    sgemm(true, false, F, GU, B * T, 1.f, a.in_mask ? xe.p : a.x, F, dgp, GU, acc_k ? 1.f : 0.f, dK, GU);
  }
  if (dx) {
    sgemm(false, true, B * T, F, GU, 1.f, dgp, GU, a.K, GU, 0.f, dx, F);
    if (a.in_mask) {
      const int64_t rows = B * T;
#pragma omp parallel for if (rows * F > kParallelGrain && rows > 1) schedule(static)
      for (int64_t r = 0; r < rows; ++r) row_mul(dx + r * F, dx + r * F, a.in_mask + (r / T) * F, F);
    }
  }
  if (db) {
    col_sums(dgp, B * T, GU, db, acc_b);
    if (a.cell == GRU) col_sums(dgr, B * T, GU, db + GU, acc_b);
  }
}

// ---- bfloat16 compute (all three cells) ----------------------------------------------------------
//
// x, kernel and recurrent kernel bfloat16: every matrix product takes bfloat16 operands and sums
// in float32 (bf16gemm / BF16PackedB, gemm_bf16.cpp); the gate maths, c and every sum stay
// float32, as forward() / backward() compute them, with the same row kernels. The operands: x
// (times the input dropout mask, rounded); h_{t-1} as the outputs hold it (bfloat16; h0 at the
// first step), times the recurrent dropout mask, rounded; the gate gradients, rounded (the bias
// gradient sums them unrounded).

// A float32-or-bfloat16 buffer read as float32: its own data, or a widened copy.
struct F32View {
  Scratch s;
  const float* p = nullptr;
  explicit F32View(const Buffer* b) : s(b && b->dtype == BF16 ? b->numel : 0) {
    if (!b) return;
    if (b->dtype != BF16) { p = b->data<float>(); return; }
    const uint16_t* src = b->data<uint16_t>();
    float* d = s.p;
    parallel_for(b->numel, b->numel > kParallelGrain, [&](int64_t i) { d[i] = bf16_to_f32(src[i]); });
    p = d;
  }
};

struct Args16 : Dims {
  const uint16_t *x, *K, *R;
  const float *h0, *c0, *bias, *in_mask, *rec_mask;  // float32 (views)
  const bool* mask;
  bool on(int64_t b, int64_t t) const { return !mask || mask[b * T + t]; }
};

LAMINA_CLONES void row_round(uint16_t* y, const float* a, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] = f32_to_bf16(a[j]);
}
LAMINA_CLONES void row_widen(float* y, const uint16_t* a, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] = bf16_to_f32(a[j]);
}
// y = bf16(a * m) with a bfloat16 (widened) or float32
LAMINA_CLONES void row_round_mul(uint16_t* y, const uint16_t* a, const float* m, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] = f32_to_bf16(bf16_to_f32(a[j]) * m[j]);
}
LAMINA_CLONES void row_round_mulf(uint16_t* y, const float* a, const float* m, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] = f32_to_bf16(a[j] * m[j]);
}
inline void row_copy16(uint16_t* y, const uint16_t* a, int64_t n) {
  if (y != a && n > 0) std::memcpy(y, a, size_t(n) * sizeof(uint16_t));
}

// The recurrent product's operand for batch row b at step s: h_{t-1} (out's row s-1, or h0 at
// s = 0), times the recurrent dropout mask, rounded to bfloat16. Forward and backward use this.
inline void h_operand(const Args16& a, const uint16_t* out, int64_t b, int64_t s, uint16_t* dst) {
  const int64_t U = a.U;
  if (s == 0) {
    if (a.rec_mask) row_round_mulf(dst, a.h0 + b * U, a.rec_mask + b * U, U);
    else row_round(dst, a.h0 + b * U, U);
  } else {
    const uint16_t* h = out + (b * a.T + s - 1) * U;
    if (a.rec_mask) row_round_mul(dst, h, a.rec_mask + b * U, U);
    else row_copy16(dst, h, U);
  }
}

// x times the input dropout mask, rounded, into dst (B*T rows of `ld` elements).
void x_operand(const Args16& a, uint16_t* dst, int64_t ld) {
  const int64_t rows = a.B * a.T, F = a.F;
#pragma omp parallel for if (rows * F > kParallelGrain && rows > 1) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    if (a.in_mask) row_round_mul(dst + r * ld, a.x + r * F, a.in_mask + (r / a.T) * F, F);
    else row_copy16(dst + r * ld, a.x + r * F, F);
  }
}

// As forward(), for every cell (parametrized on a.cell the same way); out, h_last and the LSTM's
// c_last bfloat16. The GRU's h_{t-1} in z h_{t-1} is the state as the outputs hold it (widened;
// h0 at the first step), like the recurrent product's operand: h is the GRU's only state, carried
// in bfloat16 between steps as the LSTM's h is; rh (h_{t-1} R_h + b_rh) float32.
void forward_bf16(const Args16& a, uint16_t* out, uint16_t* h_last, uint16_t* c_last, float* gates, float* cs,
                  float* rh) {
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = a.GU;
  const bool lstm = a.cell == LSTM, gru = a.cell == GRU;
  const int64_t nb = gru ? 2 * GU : GU;  // the GRU's bias: [input; recurrent]
  Scratch zb(a.bias ? 0 : nb);
  if (!a.bias && zb.p) std::fill(zb.p, zb.p + nb, 0.f);
  const float* bias = a.bias ? a.bias : zb.p;

  // input projection for every step
  Scratch xe(a.in_mask ? (B * T * F + 1) / 2 : 0);  // bfloat16 pairs
  const uint16_t* xin = a.x;
  if (a.in_mask) {
    uint16_t* d = reinterpret_cast<uint16_t*>(xe.p);
    x_operand(a, d, F);
    xin = d;
  }
  bf16gemm(false, false, B * T, GU, F, xin, F, a.K, GU, false, gates, GU);

  Scratch cr(lstm && !cs ? B * U : 0);  // the LSTM's running c (float32) when the steps' are not kept
  if (lstm && !cs) row_copy(cr.p, a.c0, B * U);
  Scratch hb_s((B * U + 1) / 2);  // h_prev operands (bfloat16), B x U
  uint16_t* hb = reinterpret_cast<uint16_t*>(hb_s.p);
  for (int64_t b = 0; b < B && T > 0; ++b) h_operand(a, out, b, 0, hb + b * U);
  Scratch gr(gru ? B * GU : 0);  // the GRU's h_prev @ R, apart from x K (see forward())
  const BF16PackedB rp(false, a.R, GU, U, GU);
  const gemm::Kernel& kr = active_kernel();
  const int parts = T > 0 ? row_parts(B, U, GU, chunk_rows(kr)) : 1;
  const int64_t rows = block_rows(kr, B, parts), chunks = (B + rows - 1) / rows;
  const int64_t hsw = gru ? 2 * U : U;
  Scratch hs(parts * hsw);  // each thread's h row in float32 (the GRU's: and its h_prev, widened)

#pragma omp parallel for schedule(dynamic, 1) num_threads(parts) if (parts > 1)
  for (int64_t ci = 0; ci < chunks; ++ci) {
    const int64_t b0 = ci * rows, b1 = std::min(B, b0 + rows);
    float* hrow = hs.p + omp_get_thread_num() * hsw;
    for (int64_t s = 0; s < T && b0 < b1; ++s) {
      const int64_t t = a.t_of(s), tp = s > 0 ? a.t_of(s - 1) : 0;
      if (gru) rp.gemm(b1 - b0, hb + b0 * U, U, false, gr.p + b0 * GU, GU);
      else rp.gemm(b1 - b0, hb + b0 * U, U, true, gates + (b0 * T + t) * GU, T * GU);
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t row = b * T + t;
        uint16_t* hn = out + (b * T + s) * U;
        float* z = gates + row * GU;
        const bool on = a.on(b, t);
        if (lstm) {
          const float* cp = cs ? (s == 0 ? a.c0 + b * U : cs + (b * T + tp) * U) : cr.p + b * U;
          float* cn = cs ? cs + row * U : cr.p + b * U;
          if (on) lstm_fwd_row(z, bias, cp, cn, hrow, U);
          else row_copy(cn, cp, U);
        } else if (gru) {
          if (on) {
            const float* hp = a.h0 + b * U;
            if (s > 0) {
              row_widen(hrow + U, out + (b * T + s - 1) * U, U);
              hp = hrow + U;
            }
            gru_fwd_row(z, gr.p + b * GU, bias, bias + GU, hp, hrow, rh ? rh + row * U : nullptr, U);
          }
        } else if (on) {
          rnn_fwd_row(z, bias, hrow, U);
        }
        if (on) row_round(hn, hrow, U);
        else if (s == 0) row_round(hn, a.h0 + b * U, U);
        else row_copy16(hn, out + (b * T + s - 1) * U, U);
        if (s + 1 < T) h_operand(a, out, b, s + 1, hb + b * U);
      }
    }
  }
  for (int64_t b = 0; b < B; ++b) {
    if (T > 0) row_copy16(h_last + b * U, out + (b * T + T - 1) * U, U);
    else row_round(h_last + b * U, a.h0 + b * U, U);
    if (lstm)
      row_round(c_last + b * U, cs ? (T > 0 ? cs + (b * T + a.t_of(T - 1)) * U : a.c0 + b * U) : cr.p + b * U, U);
  }
}

// As backward(), for every cell. out bfloat16; dout, dh_last, dc_last float32 (views); dx float32
// or, with dx16, bfloat16; the other gradients float32. The GRU's recurrent gate gradients (dGr)
// are rounded for the recurrent products (dh_prev = dGr R^T, dR = H_prev^T dGr) as the input ones
// for theirs (dx = dG K^T, dK = X^T dG); the bias gradient sums both unrounded. dg_out (and the
// GRU's dgr_out), where given, end with the gate gradients rounded to bfloat16's values and
// hprev_out with the operands' values (float32 buffers), so that weight gradients formed from them
// later multiply what this call would.
void backward_bf16(const Args16& a, const uint16_t* out, const float* gates, const float* cs, const float* rh,
                   const float* dout, const float* dh_last, const float* dc_last, float* dx, uint16_t* dx16,
                   float* dh0, float* dc0, float* dK, float* dR, float* db, int64_t accumulate, float* dg_out,
                   float* dgr_out, float* hprev_out, bool hprev_x) {
  const bool acc_k = accumulate & kAccKernel, acc_r = accumulate & kAccRecurrent, acc_b = accumulate & kAccBias;
  const int64_t B = a.B, T = a.T, F = a.F, U = a.U, GU = a.GU;
  const bool lstm = a.cell == LSTM, gru = a.cell == GRU;
  const int64_t n16 = (B * T * GU + 1) / 2;  // floats holding B*T*GU bfloat16 values
  Scratch dg_s(dg_out ? 0 : B * T * GU), dg16_s(n16);
  Scratch dgr_s(gru && !dgr_out ? B * T * GU : 0), dgr16_s(gru ? n16 : 0);
  float* const dgp = dg_out ? dg_out : dg_s.p;
  uint16_t* const dg16 = reinterpret_cast<uint16_t*>(dg16_s.p);
  // the gradient of the recurrent pre-activations: the GRU's own, the others' the same as dgp
  float* const dgr = gru ? (dgr_out ? dgr_out : dgr_s.p) : dgp;
  uint16_t* const dgr16 = gru ? reinterpret_cast<uint16_t*>(dgr16_s.p) : dg16;
  Scratch hd(B * U), hr(B * U), dc(lstm ? B * U : 0);
  if (B * U > 0) {
    if (dh_last) row_copy(hd.p, dh_last, B * U); else std::fill(hd.p, hd.p + B * U, 0.f);
    if (lstm) {
      if (dc_last) row_copy(dc.p, dc_last, B * U); else std::fill(dc.p, dc.p + B * U, 0.f);
    }
  }
  const BF16PackedB rtp(true, a.R, GU, GU, U);  // R^T (GU x U)
  const gemm::Kernel& kr = active_kernel();
  const int parts = T > 0 ? row_parts(B, U, GU, chunk_rows(kr)) : 1;
  const int64_t rows = block_rows(kr, B, parts), chunks = (B + rows - 1) / rows;
  Scratch hs(gru ? parts * U : 0);  // the GRU: each thread's h_prev row, widened

#pragma omp parallel for schedule(dynamic, 1) num_threads(parts) if (parts > 1)
  for (int64_t ci = 0; ci < chunks; ++ci) {
    const int64_t b0 = ci * rows, b1 = std::min(B, b0 + rows);
    float* hrow = gru ? hs.p + omp_get_thread_num() * U : nullptr;
    for (int64_t s = T - 1; s >= 0 && b0 < b1; --s) {
      const int64_t t = a.t_of(s), tp = s > 0 ? a.t_of(s - 1) : 0;
      const bool has_rec = s < T - 1;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t row = b * T + t;
        float* h = hd.p + b * U;
        if (dout) row_acc(h, dout + (b * T + s) * U, U);
        if (has_rec) {
          if (a.rec_mask) row_acc_mul(h, hr.p + b * U, a.rec_mask + b * U, U);
          else row_acc(h, hr.p + b * U, U);
        }
        float* dz = dgp + row * GU;
        uint16_t* dz16 = dg16 + row * GU;
        if (!a.on(b, t)) {  // the states passed through: dh and dc carry on unchanged
          std::fill(dz, dz + GU, 0.f);
          std::fill(dz16, dz16 + GU, uint16_t(0));
          if (gru) {
            std::fill(dgr + row * GU, dgr + (row + 1) * GU, 0.f);
            std::fill(dgr16 + row * GU, dgr16 + (row + 1) * GU, uint16_t(0));
          }
          continue;
        }
        const float* act = gates + row * GU;
        if (lstm) {
          const float* cp = s == 0 ? a.c0 + b * U : cs + (b * T + tp) * U;
          lstm_bwd_row(act, cs + row * U, cp, h, dc.p + b * U, dz, U);
        } else if (gru) {
          const float* hp = a.h0 + b * U;
          if (s > 0) {
            row_widen(hrow, out + (b * T + s - 1) * U, U);
            hp = hrow;
          }
          gru_bwd_row(act, rh + row * U, hp, h, dz, dgr + row * GU, U);
          row_round(dgr16 + row * GU, dgr + row * GU, GU);
        } else {
          rnn_bwd_row(act, h, dz, U);
        }
        row_round(dz16, dz, GU);
      }
      // this thread's rows of dh_prev = dGr @ R^T
      if (s > 0 || dh0) rtp.gemm(b1 - b0, dgr16 + (b0 * T + t) * GU, T * GU, false, hr.p + b0 * U, U);
    }
  }
  if (dh0) {
    row_copy(dh0, hd.p, B * U);
    if (T > 0) {
      if (a.rec_mask) row_acc_mul(dh0, hr.p, a.rec_mask, B * U);
      else row_acc(dh0, hr.p, B * U);
    }
  }
  if (dc0 && lstm) row_copy(dc0, dc.p, B * U);

  // weight gradients: [H_prev X]^T dG as one GEMM when both are wanted and share dG (see backward())
  const bool fuse = dR && dK && !gru;
  auto fill_hx = [&](uint16_t* hx, int64_t W, bool with_h, bool with_x) {
    if (with_h) {
#pragma omp parallel for if (B * T * U > kParallelGrain && B > 1) schedule(static)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t s = 0; s < T; ++s) h_operand(a, out, b, s, hx + (b * T + a.t_of(s)) * W);
    }
    if (with_x) x_operand(a, hx + (with_h ? U : 0), W);
  };
  const int64_t BT = B * T;
  if (hprev_out) {
    const int64_t W = hprev_x ? U + F : U;
    Scratch hx_s((BT * W + 1) / 2);
    uint16_t* hx = reinterpret_cast<uint16_t*>(hx_s.p);
    fill_hx(hx, W, true, hprev_x);
#pragma omp parallel for if (BT * W > kParallelGrain && BT > 1) schedule(static)
    for (int64_t r = 0; r < BT; ++r) row_widen(hprev_out + r * W, hx + r * W, W);
  }
  if (fuse) {
    const int64_t W = U + F;
    Scratch hx_s((BT * W + 1) / 2);
    uint16_t* hx = reinterpret_cast<uint16_t*>(hx_s.p);
    fill_hx(hx, W, true, true);
    Scratch c(W * GU);
    bf16gemm(true, false, W, GU, BT, hx, W, dg16, GU, false, c.p, GU);
    if (acc_r) row_acc(dR, c.p, U * GU); else row_copy(dR, c.p, U * GU);
    if (acc_k) row_acc(dK, c.p + U * GU, F * GU); else row_copy(dK, c.p + U * GU, F * GU);
  } else {
    if (dR) {  // H_prev^T dGr
      Scratch hx_s((BT * U + 1) / 2);
      uint16_t* hx = reinterpret_cast<uint16_t*>(hx_s.p);
      fill_hx(hx, U, true, false);
      bf16gemm(true, false, U, GU, BT, hx, U, dgr16, GU, acc_r, dR, GU);
    }
    if (dK) {  // X^T dG
      Scratch hx_s((BT * F + 1) / 2);
      uint16_t* hx = reinterpret_cast<uint16_t*>(hx_s.p);
      fill_hx(hx, F, false, true);
      bf16gemm(true, false, F, GU, BT, hx, F, dg16, GU, acc_k, dK, GU);
    }
  }
  if (dx || dx16) {
    Scratch xs(dx ? 0 : BT * F);
    float* d = dx ? dx : xs.p;
    bf16gemm(false, true, BT, F, GU, dg16, GU, a.K, GU, false, d, F);
#pragma omp parallel for if (BT * F > kParallelGrain && BT > 1) schedule(static)
    for (int64_t r = 0; r < BT; ++r) {
      if (a.in_mask) row_mul(d + r * F, d + r * F, a.in_mask + (r / T) * F, F);
      if (dx16) row_round(dx16 + r * F, d + r * F, F);
    }
  }
  if (db) {  // before dg_out / dgr_out take the rounded values
    col_sums(dgp, BT, GU, db, acc_b);
    if (gru) col_sums(dgr, BT, GU, db + GU, acc_b);
  }
  if (dg_out || dgr_out) {  // the gate gradients as the products read them
#pragma omp parallel for if (BT * GU > kParallelGrain && BT > 1) schedule(static)
    for (int64_t r = 0; r < BT; ++r) {
      if (dg_out) row_widen(dg_out + r * GU, dg16 + r * GU, GU);
      if (dgr_out && gru) row_widen(dgr_out + r * GU, dgr16 + r * GU, GU);
    }
  }
}

// The bfloat16 kernels' arguments: x, kernel and recurrent kernel bfloat16 (checked), the rest
// float32 views (owned by `views`).
struct Views16 {
  std::unique_ptr<F32View> h0, c0, bias, in_mask, rec_mask;
};
Args16 make_args16(Cell cell, const char* op, const Buffer& x, const Buffer& h0, const Buffer* c0, const Buffer& K,
                   const Buffer& R, const Buffer* bias, const Buffer* mask, const Buffer* in_mask,
                   const Buffer* rec_mask, int64_t B, int64_t T, int64_t F, int64_t U, bool go_backwards,
                   Views16& v) {
  Args16 a;
  static_cast<Dims&>(a) = check_inputs(cell, op, x, h0, c0, K, R, bias, mask, in_mask, rec_mask, B, T, F, U,
                                       go_backwards, BF16);
  v.h0.reset(new F32View(&h0)); v.c0.reset(new F32View(cell == LSTM ? c0 : nullptr)); v.bias.reset(new F32View(bias));
  v.in_mask.reset(new F32View(in_mask)); v.rec_mask.reset(new F32View(rec_mask));
  a.x = x.data<uint16_t>(); a.K = K.data<uint16_t>(); a.R = R.data<uint16_t>();
  a.h0 = v.h0->p; a.c0 = v.c0->p; a.bias = v.bias->p; a.in_mask = v.in_mask->p; a.rec_mask = v.rec_mask->p;
  a.mask = mask ? mask->data<bool>() : nullptr;
  return a;
}

// ---- bound entry points -----------------------------------------------------------------------

void lstm_forward(const Buffer& x, const Buffer& h0, const Buffer& c0, const Buffer& K, const Buffer& R,
                  const Buffer* bias, const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B,
                  int64_t T, int64_t F, int64_t U, bool go_backwards, Buffer& out, Buffer& h_last, Buffer& c_last,
                  Buffer& gates, Buffer* cs) {
  const char* op = kFwdName[LSTM];
  if (compute_dtype(op, x, K, R) == BF16) {
    Views16 v;
    const Args16 a = make_args16(LSTM, op, x, h0, &c0, K, R, bias, mask, in_mask, rec_mask, B, T, F, U, go_backwards,
                                 v);
    check_fwd_outputs(a, op, out, h_last, &c_last, gates, BF16);
    check_opt(op, "saved c states", cs, {B, T, U}, F32);
    return forward_bf16(a, out.data<uint16_t>(), h_last.data<uint16_t>(), c_last.data<uint16_t>(),
                        gates.data<float>(), fptr(cs), nullptr);
  }
  Args a = make_args(LSTM, op, x, h0, &c0, K, R, bias, mask, in_mask, rec_mask, B, T, F, U, go_backwards);
  check_fwd_outputs(a, op, out, h_last, &c_last, gates);
  check_opt(op, "saved c states", cs, {B, T, U}, F32);
  forward(a, out.data<float>(), h_last.data<float>(), c_last.data<float>(), gates.data<float>(), fptr(cs), nullptr);
}

void gru_forward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* bias,
                 const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T, int64_t F,
                 int64_t U, bool go_backwards, Buffer& out, Buffer& h_last, Buffer& gates, Buffer* rh) {
  const char* op = kFwdName[GRU];
  if (compute_dtype(op, x, K, R) == BF16) {
    Views16 v;
    const Args16 a = make_args16(GRU, op, x, h0, nullptr, K, R, bias, mask, in_mask, rec_mask, B, T, F, U,
                                 go_backwards, v);
    check_fwd_outputs(a, op, out, h_last, nullptr, gates, BF16);
    check_opt(op, "saved recurrent candidates", rh, {B, T, U}, F32);
    return forward_bf16(a, out.data<uint16_t>(), h_last.data<uint16_t>(), nullptr, gates.data<float>(), nullptr,
                        fptr(rh));
  }
  Args a = make_args(GRU, op, x, h0, nullptr, K, R, bias, mask, in_mask, rec_mask, B, T, F, U, go_backwards);
  check_fwd_outputs(a, op, out, h_last, nullptr, gates);
  check_opt(op, "saved recurrent candidates", rh, {B, T, U}, F32);
  forward(a, out.data<float>(), h_last.data<float>(), nullptr, gates.data<float>(), nullptr, fptr(rh));
}

void simple_rnn_forward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* bias,
                        const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T,
                        int64_t F, int64_t U, bool go_backwards, Buffer& out, Buffer& h_last, Buffer& gates) {
  const char* op = kFwdName[SIMPLE];
  if (compute_dtype(op, x, K, R) == BF16) {
    Views16 v;
    const Args16 a = make_args16(SIMPLE, op, x, h0, nullptr, K, R, bias, mask, in_mask, rec_mask, B, T, F, U,
                                 go_backwards, v);
    check_fwd_outputs(a, op, out, h_last, nullptr, gates, BF16);
    return forward_bf16(a, out.data<uint16_t>(), h_last.data<uint16_t>(), nullptr, gates.data<float>(), nullptr,
                        nullptr);
  }
  Args a = make_args(SIMPLE, op, x, h0, nullptr, K, R, bias, mask, in_mask, rec_mask, B, T, F, U, go_backwards);
  check_fwd_outputs(a, op, out, h_last, nullptr, gates);
  forward(a, out.data<float>(), h_last.data<float>(), nullptr, gates.data<float>(), nullptr, nullptr);
}

void lstm_backward(const Buffer& x, const Buffer& h0, const Buffer& c0, const Buffer& K, const Buffer& R,
                   const Buffer* mask, const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T, int64_t F,
                   int64_t U, bool go_backwards, const Buffer& out, const Buffer& gates, const Buffer& cs,
                   const Buffer* dout, const Buffer* dh_last, const Buffer* dc_last, Buffer* dx, Buffer* dh0,
                   Buffer* dc0, Buffer* dK, Buffer* dR, Buffer* db, int64_t accumulate, Buffer* dgates,
                   Buffer* dgates_rec, Buffer* h_prev) {
  const char* op = kBwdName[LSTM];
  if (compute_dtype(op, x, K, R) == BF16) {
    Views16 v;
    const Args16 a = make_args16(LSTM, op, x, h0, &c0, K, R, nullptr, mask, in_mask, rec_mask, B, T, F, U,
                                 go_backwards, v);
    check_bwd(a, op, out, gates, dout, dh_last, dc_last, dx, dh0, dc0, dK, dR, db, BF16);
    check_accumulate(op, accumulate, dK, dR, db);
    check_saved(a, op, dgates, dgates_rec, h_prev);
    check_buffer(op, "saved c states", cs, {B, T, U}, F32);
    const F32View g_out(dout), g_h(dh_last), g_c(dc_last);
    const bool dx16 = dx && dx->dtype == BF16;
    return backward_bf16(a, out.data<uint16_t>(), gates.data<float>(), cs.data<float>(), nullptr, g_out.p, g_h.p,
                         g_c.p, dx16 ? nullptr : fptr(dx), dx16 ? dx->data<uint16_t>() : nullptr, fptr(dh0),
                         fptr(dc0), fptr(dK), fptr(dR), fptr(db), accumulate, fptr(dgates), nullptr, fptr(h_prev),
                         hprev_stacked(a, h_prev));
  }
  Args a = make_args(LSTM, op, x, h0, &c0, K, R, nullptr, mask, in_mask, rec_mask, B, T, F, U, go_backwards);
  check_bwd(a, op, out, gates, dout, dh_last, dc_last, dx, dh0, dc0, dK, dR, db);
  check_accumulate(op, accumulate, dK, dR, db);
  check_saved(a, op, dgates, dgates_rec, h_prev);
  check_buffer(op, "saved c states", cs, {B, T, U}, F32);
  backward(a, out.data<float>(), gates.data<float>(), cs.data<float>(), nullptr, fptr(dout), fptr(dh_last),
           fptr(dc_last), fptr(dx), fptr(dh0), fptr(dc0), fptr(dK), fptr(dR), fptr(db), accumulate, fptr(dgates),
           nullptr, fptr(h_prev), hprev_stacked(a, h_prev));
}

void gru_backward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* mask,
                  const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T, int64_t F, int64_t U,
                  bool go_backwards, const Buffer& out, const Buffer& gates, const Buffer& rh, const Buffer* dout,
                  const Buffer* dh_last, Buffer* dx, Buffer* dh0, Buffer* dK, Buffer* dR, Buffer* db,
                  int64_t accumulate, Buffer* dgates, Buffer* dgates_rec, Buffer* h_prev) {
  const char* op = kBwdName[GRU];
  if (compute_dtype(op, x, K, R) == BF16) {
    Views16 v;
    const Args16 a = make_args16(GRU, op, x, h0, nullptr, K, R, nullptr, mask, in_mask, rec_mask, B, T, F, U,
                                 go_backwards, v);
    check_bwd(a, op, out, gates, dout, dh_last, nullptr, dx, dh0, nullptr, dK, dR, db, BF16);
    check_accumulate(op, accumulate, dK, dR, db);
    check_saved(a, op, dgates, dgates_rec, h_prev);
    check_buffer(op, "saved recurrent candidates", rh, {B, T, U}, F32);
    const F32View g_out(dout), g_h(dh_last);
    const bool dx16 = dx && dx->dtype == BF16;
    return backward_bf16(a, out.data<uint16_t>(), gates.data<float>(), nullptr, rh.data<float>(), g_out.p, g_h.p,
                         nullptr, dx16 ? nullptr : fptr(dx), dx16 ? dx->data<uint16_t>() : nullptr, fptr(dh0),
                         nullptr, fptr(dK), fptr(dR), fptr(db), accumulate, fptr(dgates), fptr(dgates_rec),
                         fptr(h_prev), hprev_stacked(a, h_prev));
  }
  Args a = make_args(GRU, op, x, h0, nullptr, K, R, nullptr, mask, in_mask, rec_mask, B, T, F, U, go_backwards);
  check_bwd(a, op, out, gates, dout, dh_last, nullptr, dx, dh0, nullptr, dK, dR, db);
  check_accumulate(op, accumulate, dK, dR, db);
  check_saved(a, op, dgates, dgates_rec, h_prev);
  check_buffer(op, "saved recurrent candidates", rh, {B, T, U}, F32);
  backward(a, out.data<float>(), gates.data<float>(), nullptr, rh.data<float>(), fptr(dout), fptr(dh_last), nullptr,
           fptr(dx), fptr(dh0), nullptr, fptr(dK), fptr(dR), fptr(db), accumulate, fptr(dgates), fptr(dgates_rec),
           fptr(h_prev), hprev_stacked(a, h_prev));
}

void simple_rnn_backward(const Buffer& x, const Buffer& h0, const Buffer& K, const Buffer& R, const Buffer* mask,
                         const Buffer* in_mask, const Buffer* rec_mask, int64_t B, int64_t T, int64_t F, int64_t U,
                         bool go_backwards, const Buffer& out, const Buffer& gates, const Buffer* dout,
                         const Buffer* dh_last, Buffer* dx, Buffer* dh0, Buffer* dK, Buffer* dR, Buffer* db,
                         int64_t accumulate, Buffer* dgates, Buffer* dgates_rec, Buffer* h_prev) {
  const char* op = kBwdName[SIMPLE];
  if (compute_dtype(op, x, K, R) == BF16) {
    Views16 v;
    const Args16 a = make_args16(SIMPLE, op, x, h0, nullptr, K, R, nullptr, mask, in_mask, rec_mask, B, T, F, U,
                                 go_backwards, v);
    check_bwd(a, op, out, gates, dout, dh_last, nullptr, dx, dh0, nullptr, dK, dR, db, BF16);
    check_accumulate(op, accumulate, dK, dR, db);
    check_saved(a, op, dgates, dgates_rec, h_prev);
    const F32View g_out(dout), g_h(dh_last);
    const bool dx16 = dx && dx->dtype == BF16;
    return backward_bf16(a, out.data<uint16_t>(), gates.data<float>(), nullptr, nullptr, g_out.p, g_h.p, nullptr,
                         dx16 ? nullptr : fptr(dx), dx16 ? dx->data<uint16_t>() : nullptr, fptr(dh0), nullptr,
                         fptr(dK), fptr(dR), fptr(db), accumulate, fptr(dgates), nullptr, fptr(h_prev),
                         hprev_stacked(a, h_prev));
  }
  Args a = make_args(SIMPLE, op, x, h0, nullptr, K, R, nullptr, mask, in_mask, rec_mask, B, T, F, U, go_backwards);
  check_bwd(a, op, out, gates, dout, dh_last, nullptr, dx, dh0, nullptr, dK, dR, db);
  check_accumulate(op, accumulate, dK, dR, db);
  check_saved(a, op, dgates, dgates_rec, h_prev);
  backward(a, out.data<float>(), gates.data<float>(), nullptr, nullptr, fptr(dout), fptr(dh_last), nullptr,
           fptr(dx), fptr(dh0), nullptr, fptr(dK), fptr(dR), fptr(db), accumulate, fptr(dgates), fptr(dgates_rec),
           fptr(h_prev), hprev_stacked(a, h_prev));
}

}  // namespace rnn_detail

void bind_rnn(py::module_& m) {
  using namespace rnn_detail;
  def_kernel(m, "lstm_forward", &lstm_forward,
        "lstm_forward(x, h0, c0, kernel, recurrent_kernel, bias|None, mask|None, input_dropout|None, "
        "recurrent_dropout|None, B, T, F, U, go_backwards, out, h_last, c_last, gates, saved_c|None) (float32; or x, "
        "kernel, recurrent_kernel, out, h_last, c_last bfloat16 to compute in bfloat16, with h0, c0, bias and the "
        "dropout masks float32 or bfloat16; gates and saved_c float32)");
  def_kernel(m, "lstm_backward", &lstm_backward,
        "lstm_backward(x, h0, c0, kernel, recurrent_kernel, mask, input_dropout, recurrent_dropout, B, T, F, U, "
        "go_backwards, out, gates, saved_c, dout, dh_last, dc_last, dx, dh0, dc0, dkernel, drecurrent_kernel, dbias, "
        "accumulate, dgates_out, None, h_prev_out) (None for absent incoming gradients, for gradients not wanted "
        "and for what is not to be kept; accumulate: bits 1 / 2 / 4 add the kernel / recurrent kernel / bias "
        "gradient to what its buffer holds; dgates_out (B, T, 4U) and h_prev_out (B, T, U), or (B, T, U + F) for "
        "[h_prev x] side by side: the gate gradients and what the GEMMs read, from which the weight gradients can "
        "be formed later; with bfloat16 x, kernel, recurrent_kernel and out: dout, dh_last, dc_last and dx float32 "
        "or bfloat16, the other gradients float32)");
  def_kernel(m, "gru_forward", &gru_forward,
        "gru_forward(x, h0, kernel, recurrent_kernel, bias|None, mask|None, input_dropout|None, "
        "recurrent_dropout|None, B, T, F, U, go_backwards, out, h_last, gates, saved_rh|None) (float32; or x, kernel, "
        "recurrent_kernel, out, h_last bfloat16 to compute in bfloat16, with h0, bias and the dropout masks float32 "
        "or bfloat16; gates and saved_rh float32)");
  def_kernel(m, "gru_backward", &gru_backward,
        "gru_backward(x, h0, kernel, recurrent_kernel, mask, input_dropout, recurrent_dropout, B, T, F, U, "
        "go_backwards, out, gates, saved_rh, dout, dh_last, dx, dh0, dkernel, drecurrent_kernel, dbias, accumulate, "
        "dgates_out, dgates_rec_out, h_prev_out) (as lstm_backward's; dgates_rec_out (B, T, 3U): the recurrent "
        "pre-activations' gate gradients)");
  def_kernel(m, "simple_rnn_forward", &simple_rnn_forward,
        "simple_rnn_forward(x, h0, kernel, recurrent_kernel, bias|None, mask|None, input_dropout|None, "
        "recurrent_dropout|None, B, T, F, U, go_backwards, out, h_last, gates) (dtypes as gru_forward's)");
  def_kernel(m, "simple_rnn_backward", &simple_rnn_backward,
        "simple_rnn_backward(x, h0, kernel, recurrent_kernel, mask, input_dropout, recurrent_dropout, B, T, F, U, "
        "go_backwards, out, gates, dout, dh_last, dx, dh0, dkernel, drecurrent_kernel, dbias, accumulate, dgates_out, "
        "None, h_prev_out) (as lstm_backward's)");
}

}  // namespace lamina
