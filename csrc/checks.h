// Argument checks shared by every device module, over any buffer type with `numel` and `dtype`
// (the CPU's Buffer, the CUDA module's): the same checks and messages on every device.
#pragma once
#include <algorithm>

#include "types.h"

namespace lamina {

template <class B>
void check_dtype(const char* op, const char* arg, const B& b, DType dt) {
  if (b.dtype != dt) {
    Msg os;
    os << op << ": expected " << arg << " of dtype " << dtype_name(dt) << ", received " << dtype_name(b.dtype);
    throw TypeError(os.str());
  }
}

// A buffer holds exactly the elements a shape describes, with the expected dtype.
template <class B>
void check_buffer(const char* op, const char* arg, const B& b, const Shape& s, DType dt) {
  check_dtype(op, arg, b, dt);
  for (auto d : s) LAMINA_CHECK(d >= 0, op << ": " << arg << " has a negative dimension in shape " << shape_str(s));
  LAMINA_CHECK(numel_of(s) == b.numel, op << ": " << arg << " holds " << b.numel << " elements but its shape "
                                           << shape_str(s) << " needs " << numel_of(s));
}

// A buffer holding an (outer, R, inner) view of dtype dt: the ops over one axis (nn kernels).
template <class B>
void check_view(const char* op, const char* arg, const B& b, int64_t outer, int64_t R, int64_t inner, DType dt) {
  LAMINA_CHECK(outer >= 0 && R >= 0 && inner >= 0,
               op << ": invalid view (" << outer << ", " << R << ", " << inner << ") for " << arg);
  check_dtype(op, arg, b, dt);
  LAMINA_CHECK(b.numel == outer * R * inner, op << ": " << arg << " holds " << b.numel << " elements, expected "
                                                << outer << " x " << R << " x " << inner);
}

// The reductions and scans over one axis: x holds an (outer, R, inner) view, y holds y_numel.
template <class B>
void check_extents(const char* op, const B& xb, int64_t outer, int64_t R, int64_t inner, const B& yb, int64_t y_numel) {
  LAMINA_CHECK(outer >= 0 && R >= 0 && inner >= 0,
               op << ": extents (outer, R, inner) = (" << outer << ", " << R << ", " << inner << ") must be non-negative");
  LAMINA_CHECK(xb.numel == outer * R * inner, op << ": input holds " << xb.numel << " elements, but (outer, R, inner) = ("
                                                 << outer << ", " << R << ", " << inner << ") needs " << outer * R * inner);
  LAMINA_CHECK(yb.numel == y_numel, op << ": output holds " << yb.numel << " elements, expected " << y_numel);
}

// A buffer of exactly n elements of dtype dt.
template <class B>
void check_count(const char* op, const char* arg, const B& b, int64_t n, DType dt) {
  check_dtype(op, arg, b, dt);
  LAMINA_CHECK(n >= 0, op << ": negative size " << n << " for " << arg);
  LAMINA_CHECK(b.numel == n, op << ": " << arg << " holds " << b.numel << " elements, expected " << n);
}

// matmul's shapes: a (..., M, K) or (..., K, M) when trans_a; b (..., K, N) or (..., N, K) when
// trans_b; out (broadcast(batch_a, batch_b)..., M, N). sa / sb: each operand's element stride per
// output batch dimension (0 where it is broadcast).
struct MatmulPlan {
  int64_t M = 0, N = 0, K = 0, batches = 1;
  Shape batch;                   // the output's batch dimensions
  std::vector<int64_t> sa, sb;   // per batch dimension
};

// `dt`: the operands' dtype. float32 products are float32; bfloat16 operands (where a module has
// a bfloat16 matmul) give a float32 or bfloat16 output and take a bias of either.
template <class B>
MatmulPlan plan_matmul(const B& a, const Shape& as, const B& b, const Shape& bs, const B& o, const Shape& os,
                       bool trans_a, bool trans_b, const B* bias, DType dt = F32) {
  check_buffer("matmul", "a", a, as, dt);
  check_buffer("matmul", "b", b, bs, dt);
  check_buffer("matmul", "out", o, os, dt == BF16 && o.dtype == F32 ? F32 : dt);
  LAMINA_CHECK(as.size() >= 2 && bs.size() >= 2 && os.size() >= 2, "matmul: operands need at least 2 dimensions");
  MatmulPlan p;
  p.M = trans_a ? as[as.size() - 1] : as[as.size() - 2];
  p.K = trans_a ? as[as.size() - 2] : as[as.size() - 1];
  const int64_t Kb = trans_b ? bs[bs.size() - 1] : bs[bs.size() - 2];
  p.N = trans_b ? bs[bs.size() - 2] : bs[bs.size() - 1];
  LAMINA_CHECK(p.K == Kb, "matmul: inner dimensions differ: a " << shape_str(as) << ", b " << shape_str(bs));
  if (bias) {
    check_dtype("matmul", "bias", *bias, dt == BF16 && bias->dtype == F32 ? F32 : dt);
    LAMINA_CHECK(bias->numel == p.N, "matmul: the bias holds " << bias->numel
                                         << " elements; expected one per output column (" << p.N << ")");
  }
  LAMINA_CHECK(os[os.size() - 2] == p.M && os[os.size() - 1] == p.N,
               "matmul: output shape " << shape_str(os) << " is not (..., " << p.M << ", " << p.N << ")");
  const size_t nb = os.size() - 2;
  p.batch.assign(os.begin(), os.begin() + nb);
  auto strides = [&](const Shape& s) {
    const size_t sb = s.size() - 2;
    LAMINA_CHECK(sb <= nb, "matmul: operand " << shape_str(s) << " has more batch dimensions than the output");
    std::vector<int64_t> st(nb, 0);
    int64_t stride = s[s.size() - 1] * s[s.size() - 2];
    for (size_t k = 0; k < sb; ++k) {
      const size_t ok = nb - 1 - k, sk = sb - 1 - k;
      LAMINA_CHECK(s[sk] == p.batch[ok] || s[sk] == 1, "matmul: batch dimensions of " << shape_str(as) << " and "
                                                                                    << shape_str(bs) << " do not broadcast");
      st[ok] = s[sk] == 1 ? 0 : stride;
      stride *= s[sk];
    }
    return st;
  };
  p.sa = strides(as);
  p.sb = strides(bs);
  p.batches = numel_of(p.batch);
  return p;
}

// gemm's operand: a rows x cols matrix with row stride ld (ld < 0: packed, ld = cols) in `buf`;
// returns the stride.
template <class B>
int64_t gemm_operand(const char* arg, const char* ld_name, const B& buf, int64_t rows, int64_t cols, int64_t ld,
                     const char* layout) {
  if (ld < 0) {
    LAMINA_CHECK(buf.numel == rows * cols, "gemm: " << arg << " is stored " << layout << " = " << rows << " x " << cols
                 << " and needs " << rows * cols << " elements, but its buffer holds " << buf.numel
                 << "; check M, N, K and the transpose flags, or pass " << ld_name << " for a strided matrix");
    return cols;
  }
  LAMINA_CHECK(ld >= std::max<int64_t>(cols, 1), "gemm: " << ld_name << " = " << ld << " is smaller than the width "
               << cols << " of " << arg << " (stored " << layout << " = " << rows << " x " << cols
               << "); the row stride must be at least the row length");
  const int64_t need = rows > 0 && cols > 0 ? (rows - 1) * ld + cols : 0;
  LAMINA_CHECK(buf.numel >= need, "gemm: " << arg << " (stored " << layout << " = " << rows << " x " << cols << ", "
               << ld_name << " = " << ld << ") needs at least " << need << " elements, but its buffer holds "
               << buf.numel << "; check M, N, K, " << ld_name << " and the transpose flags");
  return ld;
}

// gemm's checks: returns the three row strides.
template <class B>
void check_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const B& a, const B& b, const B& c, int64_t* lda,
                int64_t* ldb, int64_t* ldc) {
  check_dtype("gemm", "a", a, F32); check_dtype("gemm", "b", b, F32); check_dtype("gemm", "c", c, F32);
  LAMINA_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: expected M, N, K >= 0, received M=" << M << ", N=" << N << ", K=" << K);
  *lda = ta ? gemm_operand("a", "lda", a, K, M, *lda, "K x M (trans_a)") : gemm_operand("a", "lda", a, M, K, *lda, "M x K");
  *ldb = tb ? gemm_operand("b", "ldb", b, N, K, *ldb, "N x K (trans_b)") : gemm_operand("b", "ldb", b, K, N, *ldb, "K x N");
  *ldc = gemm_operand("c", "ldc", c, M, N, *ldc, "M x N");
}

}  // namespace lamina
