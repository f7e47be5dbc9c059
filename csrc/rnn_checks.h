// Argument checks of the recurrent kernels (lstm / gru / simple_rnn forward and backward), shared
// by the CPU module (csrc/cpu/rnn.cpp) and the CUDA module (csrc/cuda/rnn.cu): the same checks
// and messages on every device, over any buffer type with `numel` and `dtype`.
//
// Shapes (batch-major, as Keras): x (B, T, F); states (B, U); kernel (F, G*U); recurrent kernel
// (U, G*U); G = 4 for the LSTM (gates i, f, c, o), 3 for the GRU (z, r, h), 1 for the simple RNN.
// Bias: (G*U) for the LSTM and the RNN, (2, 3U) = [input bias; recurrent bias] for the GRU.
#pragma once
#include "checks.h"

namespace lamina {
namespace rnn_args {

enum Cell : int { LSTM = 0, GRU = 1, SIMPLE = 2 };
constexpr int kGates[3] = {4, 3, 1};
constexpr const char* kFwdName[3] = {"lstm", "gru", "simple_rnn"};
constexpr const char* kBwdName[3] = {"lstm_backward", "gru_backward", "simple_rnn_backward"};

// lstm_backward's / gru_backward's / simple_rnn_backward's `accumulate` bits
constexpr int64_t kAccKernel = 1, kAccRecurrent = 2, kAccBias = 4;

// The sizes of a call. Steps run in processing order s = 0..T-1 on time index t_of(s).
struct Dims {
  Cell cell = LSTM;
  int64_t B = 0, T = 0, F = 0, U = 0, G = 1, GU = 0;
  bool back = false;
  int64_t t_of(int64_t s) const { return back ? T - 1 - s : s; }
};

// Optional (pointer) buffer parameters are not deduced, so that callers may pass nullptr.
template <class T> struct NoDeduce { using type = T; };
template <class T> using Opt = const typename NoDeduce<T>::type*;

template <class Buf>
void check_opt(const char* op, const char* arg, const Buf* b, const Shape& s, DType dt) {
  if (b) check_buffer(op, arg, *b, s, dt);
}

// The dtype a float32-or-bfloat16 buffer is checked against: with compute dtype BF16 (a recurrent
// kernel on bfloat16 inputs and weights) either is taken, the buffer's own; otherwise float32.
template <class Buf>
DType either(DType dt, const Buf* b) { return dt == BF16 && b && b->dtype == BF16 ? BF16 : F32; }

// The compute dtype of a call: bfloat16 when x is (the kernel and recurrent kernel must then be
// too), else float32; a mix raises a TypeError naming the three dtypes.
template <class Buf>
DType compute_dtype(const char* op, const Buf& x, const Buf& K, const Buf& R) {
  const DType dt = x.dtype == BF16 ? BF16 : F32;
  if (K.dtype != dt || R.dtype != dt) {
    Msg os;
    os << op << ": expected inputs, kernel and recurrent_kernel of one dtype (float32, or bfloat16 to compute in "
       << "bfloat16), received inputs " << dtype_name(x.dtype) << ", kernel " << dtype_name(K.dtype)
       << ", recurrent_kernel " << dtype_name(R.dtype) << "; cast them to one dtype";
    throw TypeError(os.str());
  }
  return dt;
}

// Validates the inputs every forward and backward kernel shares. dt: the compute dtype, that of
// x, kernel and recurrent kernel; with BF16 the states, bias and dropout masks may be float32 or
// bfloat16 (the CPU's and the CUDA module's kernels alike: csrc/cpu/rnn.cpp's header comment).
template <class Buf>
Dims check_inputs(Cell cell, const char* op, const Buf& x, const Buf& h0, Opt<Buf> c0, const Buf& K, const Buf& R,
                  Opt<Buf> bias, Opt<Buf> mask, Opt<Buf> in_mask, Opt<Buf> rec_mask, int64_t B, int64_t T,
                  int64_t F, int64_t U, bool go_backwards, DType dt = F32) {
  LAMINA_CHECK(B >= 0 && T >= 0 && F >= 0 && U >= 0, op << ": expected non-negative sizes, received batch=" << B
               << ", timesteps=" << T << ", features=" << F << ", units=" << U);
  Dims a;
  a.cell = cell;
  a.B = B; a.T = T; a.F = F; a.U = U; a.G = kGates[cell]; a.GU = a.G * U;
  a.back = go_backwards;
  check_buffer(op, "inputs", x, {B, T, F}, dt);
  check_buffer(op, "initial h", h0, {B, U}, either(dt, &h0));
  if (cell == LSTM) {
    LAMINA_CHECK(c0 != nullptr, op << ": the LSTM needs an initial c state of shape " << shape_str({B, U}));
    check_buffer(op, "initial c", *c0, {B, U}, either(dt, c0));
  }
  check_buffer(op, "kernel", K, {F, a.GU}, dt);
  check_buffer(op, "recurrent_kernel", R, {U, a.GU}, dt);
  if (cell == GRU) check_opt(op, "bias", bias, {2, a.GU}, either(dt, bias));
  else check_opt(op, "bias", bias, {a.GU}, either(dt, bias));
  check_opt(op, "mask", mask, {B, T}, BOOL);
  check_opt(op, "input dropout mask", in_mask, {B, F}, either(dt, in_mask));
  check_opt(op, "recurrent dropout mask", rec_mask, {B, U}, either(dt, rec_mask));
  return a;
}

// Outputs, last h and last c in the compute dtype dt; the gates float32.
template <class Buf>
void check_fwd_outputs(const Dims& a, const char* op, const Buf& out, const Buf& h_last, Opt<Buf> c_last,
                       const Buf& gates, DType dt = F32) {
  check_buffer(op, "outputs", out, {a.B, a.T, a.U}, dt);
  check_buffer(op, "last h", h_last, {a.B, a.U}, dt);
  if (a.cell == LSTM) {
    LAMINA_CHECK(c_last != nullptr, op << ": the LSTM needs a buffer for the last c state");
    check_buffer(op, "last c", *c_last, {a.B, a.U}, dt);
  }
  check_buffer(op, "gates", gates, {a.B, a.T, a.GU}, F32);
}

// With compute dtype BF16: outputs in bfloat16, the incoming gradients and the inputs gradient
// float32 or bfloat16; every other gradient float32.
template <class Buf>
void check_bwd(const Dims& a, const char* op, const Buf& out, const Buf& gates, Opt<Buf> dout, Opt<Buf> dh_last,
               Opt<Buf> dc_last, Opt<Buf> dx, Opt<Buf> dh0, Opt<Buf> dc0, Opt<Buf> dK, Opt<Buf> dR,
               Opt<Buf> db, DType dt = F32) {
  check_buffer(op, "outputs", out, {a.B, a.T, a.U}, dt);
  check_buffer(op, "gates", gates, {a.B, a.T, a.GU}, F32);
  check_opt(op, "outputs gradient", dout, {a.B, a.T, a.U}, either(dt, dout));
  check_opt(op, "last h gradient", dh_last, {a.B, a.U}, either(dt, dh_last));
  check_opt(op, "last c gradient", dc_last, {a.B, a.U}, either(dt, dc_last));
  check_opt(op, "inputs gradient", dx, {a.B, a.T, a.F}, either(dt, dx));
  check_opt(op, "initial h gradient", dh0, {a.B, a.U}, F32);
  check_opt(op, "initial c gradient", dc0, {a.B, a.U}, F32);
  check_opt(op, "kernel gradient", dK, {a.F, a.GU}, F32);
  check_opt(op, "recurrent_kernel gradient", dR, {a.U, a.GU}, F32);
  if (a.cell == GRU) check_opt(op, "bias gradient", db, {2, a.GU}, F32);
  else check_opt(op, "bias gradient", db, {a.GU}, F32);
}

template <class Buf>
void check_accumulate(const char* op, int64_t accumulate, const Buf* dK, const Buf* dR, const Buf* db) {
  LAMINA_CHECK(accumulate >= 0 && accumulate <= (kAccKernel | kAccRecurrent | kAccBias),
               op << ": accumulate must combine the bits 1 (kernel), 2 (recurrent kernel) and 4 (bias), received "
                  << accumulate);
  const Buf* bufs[] = {dK, dR, db};
  const char* names[] = {"kernel", "recurrent kernel", "bias"};
  for (int i = 0; i < 3; ++i)
    LAMINA_CHECK(!(accumulate & (int64_t(1) << i)) || bufs[i],
                 op << ": accumulate asks to add into the " << names[i] << " gradient, but no buffer was given for it");
}

// Whether h_prev_out holds [H_prev X] side by side (B, T, U + F) rather than H_prev (B, T, U).
template <class Buf>
bool hprev_stacked(const Dims& a, const Buf* h_prev) { return h_prev && h_prev->numel != a.B * a.T * a.U; }

template <class Buf>
void check_saved(const Dims& a, const char* op, const Buf* dgates, const Buf* dgates_rec, const Buf* h_prev) {
  check_opt(op, "gate gradients out", dgates, {a.B, a.T, a.GU}, F32);
  LAMINA_CHECK(!dgates_rec || a.cell == GRU, op << ": only the GRU has separate recurrent gate gradients; pass None");
  check_opt(op, "recurrent gate gradients out", dgates_rec, {a.B, a.T, a.GU}, F32);
  if (hprev_stacked(a, h_prev)) check_opt(op, "h_prev out", h_prev, {a.B, a.T, a.U + a.F}, F32);
  else check_opt(op, "h_prev out", h_prev, {a.B, a.T, a.U}, F32);
}

}  // namespace rnn_args
}  // namespace lamina
