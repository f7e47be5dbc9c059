// Argument checks of the fused attention kernels (attention_forward / attention_backward), shared
// by the CPU module (csrc/cpu/attention.cpp) and the CUDA module (csrc/cuda/attention.cu): the same
// checks, in the same order, with the same messages on every device, over any buffer type with
// `numel` and `dtype`.
//
// Operands: q (B, Tq, N, H), k (B, Tk, Nkv, H), v (B, Tk, Nkv, Hv), out / dout (B, Tq, N, Hv), each
// read through (batch, time, head) element strides with a contiguous last dimension; dq, dk, dv
// with q's, k's and v's strides; bias (float32) and mask (bool) through 4 strides over the scores'
// (B, N, Tq, Tk) (0: broadcast); stats (B, N, Tq, 2) and dlogits (B, N, Tq, Tk) contiguous float32.
// The compute dtype is bfloat16 when q is (k, v, out, dout and the gradients must then be too).
#pragma once
#include <algorithm>
#include <utility>
#include <vector>

#include "checks.h"

namespace lamina {
namespace attention_args {

struct Strides3 {
  int64_t b = 0, t = 0, n = 0;
};

// Optional (pointer) buffer parameters are not deduced, so that callers may pass nullptr.
template <class T> struct NoDeduce { using type = T; };
template <class T> using Opt = const typename NoDeduce<T>::type*;

inline Strides3 strides3(const char* op, const char* name, const Shape& s) {
  LAMINA_CHECK(s.size() == 3, op << ": expected 3 element strides (batch, time, head) for " << name << ", received "
                                 << shape_str(s));
  LAMINA_CHECK(s[0] >= 0 && s[1] >= 0 && s[2] >= 0,
               op << ": the strides of " << name << " must be >= 0, received " << shape_str(s));
  return {s[0], s[1], s[2]};
}

// Checks that a (B, T, heads, D) operand with these strides lies inside its buffer and, when it
// is written, that no two elements share a place.
template <class Buf>
void check_operand(const char* op, const char* name, const Buf& buf, DType dt, int64_t B, int64_t T, int64_t heads,
                   int64_t D, const Strides3& s, bool written) {
  check_dtype(op, name, buf, dt);
  if (B == 0 || T == 0 || heads == 0 || D == 0) return;
  const int64_t last = (B - 1) * s.b + (T - 1) * s.t + (heads - 1) * s.n + (D - 1);
  LAMINA_CHECK(last < buf.numel, op << ": " << name << " of shape (" << B << ", " << T << ", " << heads << ", " << D
                                    << ") with strides (" << s.b << ", " << s.t << ", " << s.n << ", 1) reaches element "
                                    << last << " of a buffer of " << buf.numel);
  if (!written) return;
  // dimensions of size > 1 sorted by stride: each stride must pass the extent of the smaller ones
  std::vector<std::pair<int64_t, int64_t>> dims = {{1, D}, {s.n, heads}, {s.t, T}, {s.b, B}};
  std::sort(dims.begin(), dims.end());
  int64_t extent = 0;
  for (auto [stride, size] : dims) {
    if (size == 1) continue;
    LAMINA_CHECK(stride > extent,
                 op << ": the output " << name << " of shape (" << B << ", " << T << ", " << heads << ", " << D
                    << ") with strides (" << s.b << ", " << s.t << ", " << s.n << ", 1) has overlapping elements");
    extent += (size - 1) * stride;
  }
}

// bias (float32) or mask (bool) read through strides `st` over the scores' dims (B, N, Tq, Tk);
// the strides go to out[4].
template <class Buf>
void check_scores_operand(const char* op, const char* name, const Buf& buf, DType dt, const int64_t (&dims)[4],
                          const Shape& st, int64_t* out) {
  check_dtype(op, name, buf, dt);
  LAMINA_CHECK(st.size() == 4, op << ": expected 4 element strides (batch, head, query, key) for the " << name
                                  << ", received " << shape_str(st));
  int64_t last = 0;
  bool empty = false;
  for (int i = 0; i < 4; ++i) {
    LAMINA_CHECK(st[i] >= 0, op << ": the " << name << " strides must be >= 0, received " << shape_str(st));
    out[i] = st[i];
    empty = empty || dims[i] == 0;
    last += dims[i] > 0 ? (dims[i] - 1) * st[i] : 0;
  }
  LAMINA_CHECK(empty || last < buf.numel, op << ": the " << name << " read with strides " << shape_str(st)
                                             << " over the scores' shape (" << dims[0] << ", " << dims[1] << ", "
                                             << dims[2] << ", " << dims[3] << ") reaches element " << last
                                             << " of a buffer of " << buf.numel);
}

// The compute dtype: bfloat16 when the query is (key and value must then be too), else float32.
template <class Buf>
DType compute_dtype(const Buf& q) { return q.dtype == BF16 ? BF16 : F32; }

// A call's checked layout: the compute dtype and every operand's strides.
struct Layout {
  DType dt = F32;
  Strides3 q, k, v, o;           // o: out's and dout's
  int64_t bs[4] = {0, 0, 0, 0};  // bias strides over (B, N, Tq, Tk); 0 = broadcast
  int64_t ms[4] = {0, 0, 0, 0};  // mask strides
};

// The checks both kernels make first: sizes, then query, key, value, bias and mask.
template <class Buf>
Layout check_inputs(const char* op, const Buf& q, const Buf& k, const Buf& v, Opt<Buf> bias, Opt<Buf> mask, int64_t B,
                    int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H, int64_t Hv, const Shape& q_st,
                    const Shape& k_st, const Shape& v_st, const Shape& bias_st, const Shape& mask_st) {
  LAMINA_CHECK(B >= 0 && Tq >= 0 && Tk >= 0 && N >= 0 && Nkv >= 0 && H >= 0 && Hv >= 0,
               op << ": sizes must be >= 0, received B=" << B << ", Tq=" << Tq << ", Tk=" << Tk << ", N=" << N
                  << ", Nkv=" << Nkv << ", H=" << H << ", Hv=" << Hv);
  LAMINA_CHECK((N == 0 && Nkv == 0) || (Nkv > 0 && N % Nkv == 0),
               op << ": the query's " << N << " heads must be a multiple of the key/value's " << Nkv << " heads");
  Layout L;
  L.dt = compute_dtype(q);
  L.q = strides3(op, "query", q_st);
  L.k = strides3(op, "key", k_st);
  L.v = strides3(op, "value", v_st);
  check_operand(op, "query", q, L.dt, B, Tq, N, H, L.q, false);
  check_operand(op, "key", k, L.dt, B, Tk, Nkv, H, L.k, false);
  check_operand(op, "value", v, L.dt, B, Tk, Nkv, Hv, L.v, false);
  const int64_t dims[4] = {B, N, Tq, Tk};
  if (bias) check_scores_operand(op, "bias", *bias, F32, dims, bias_st, L.bs);
  if (mask) check_scores_operand(op, "mask", *mask, BOOL, dims, mask_st, L.ms);
  return L;
}

// attention_forward's checks: the inputs, then out (written) and stats.
template <class Buf>
Layout check_forward(const Buf& q, const Buf& k, const Buf& v, Opt<Buf> bias, Opt<Buf> mask, const Buf& out,
                     Opt<Buf> stats, int64_t B, int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H, int64_t Hv,
                     const Shape& q_st, const Shape& k_st, const Shape& v_st, const Shape& out_st,
                     const Shape& bias_st, const Shape& mask_st) {
  const char* op = "attention_forward";
  Layout L = check_inputs<Buf>(op, q, k, v, bias, mask, B, Tq, Tk, N, Nkv, H, Hv, q_st, k_st, v_st, bias_st, mask_st);
  L.o = strides3(op, "output", out_st);
  check_operand(op, "output", out, L.dt, B, Tq, N, Hv, L.o, true);
  if (stats) check_buffer(op, "stats", *stats, {B, N, Tq, 2}, F32);
  return L;
}

// attention_backward's checks: the inputs, out and dout (read through out's strides), stats, then
// the gradients asked for (written) and dlogits.
template <class Buf>
Layout check_backward(const Buf& q, const Buf& k, const Buf& v, Opt<Buf> bias, Opt<Buf> mask, const Buf& out,
                      const Buf& stats, const Buf& dout, Opt<Buf> dq, Opt<Buf> dk, Opt<Buf> dv, Opt<Buf> dlogits,
                      int64_t B, int64_t Tq, int64_t Tk, int64_t N, int64_t Nkv, int64_t H, int64_t Hv,
                      const Shape& q_st, const Shape& k_st, const Shape& v_st, const Shape& out_st,
                      const Shape& bias_st, const Shape& mask_st) {
  const char* op = "attention_backward";
  Layout L = check_inputs<Buf>(op, q, k, v, bias, mask, B, Tq, Tk, N, Nkv, H, Hv, q_st, k_st, v_st, bias_st, mask_st);
  L.o = strides3(op, "output", out_st);
  check_operand(op, "output", out, L.dt, B, Tq, N, Hv, L.o, false);
  check_operand(op, "output gradient", dout, L.dt, B, Tq, N, Hv, L.o, false);
  check_buffer(op, "stats", stats, {B, N, Tq, 2}, F32);
  if (dq) check_operand(op, "query gradient", *dq, L.dt, B, Tq, N, H, L.q, true);
  if (dk) check_operand(op, "key gradient", *dk, L.dt, B, Tk, Nkv, H, L.k, true);
  if (dv) check_operand(op, "value gradient", *dv, L.dt, B, Tk, Nkv, Hv, L.v, true);
  if (dlogits) check_buffer(op, "logits gradient", *dlogits, {B, N, Tq, Tk}, F32);
  return L;
}

}  // namespace attention_args
}  // namespace lamina
