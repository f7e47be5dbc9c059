// Argument checks and error messages of the dense decompositions and solvers (cholesky,
// solve_triangular, lu_factor, solve, inv, det, slogdet, qr, eigh, svd), shared by the CPU module
// (csrc/cpu/linalg_decomp.cpp) and the CUDA module (csrc/cuda/decomp.cu): the same checks and
// messages on every device, over any buffer type with `numel` and `dtype`.
//
// Every kernel takes float32 matrices, `batch` of them back to back, row-major. A matrix the
// operation is not defined for raises ValueError naming the op and the matrix of the batch
// (matrix_error with one of the `what` texts below); the lowest such matrix is named.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "checks.h"
#include "types.h"

namespace lamina {
namespace linalg_args {

// batch * m * n, checked: non-negative sizes, no overflow.
inline int64_t checked_count(const char* op, int64_t batch, int64_t m, int64_t n) {
  LAMINA_CHECK(batch >= 0 && m >= 0 && n >= 0,
               op << ": expected non-negative sizes, received batch=" << batch << ", m=" << m << ", n=" << n);
  int64_t mn, r;
  LAMINA_CHECK(!__builtin_mul_overflow(m, n, &mn) && !__builtin_mul_overflow(mn, batch, &r),
               op << ": size arithmetic overflows (" << batch << " x " << m << " x " << n << ")");
  return r;
}

template <class B>
void check_f32(const char* op, const char* arg, const B& b, int64_t numel) {
  check_dtype(op, arg, b, F32);
  LAMINA_CHECK(b.numel == numel, op << ": " << arg << " holds " << b.numel << " elements, expected " << numel);
}

// ---- each kernel's arguments ---------------------------------------------------------------------

template <class B>
void check_cholesky(const B& a, int64_t batch, int64_t n, const B& out) {
  const char* op = "cholesky";
  const int64_t total = checked_count(op, batch, n, n);
  check_f32(op, "a", a, total);
  check_f32(op, "out", out, total);
}

// solve_triangular and solve: a (batch, n, n), b and out (batch, n, k).
template <class B>
void check_system(const char* op, const B& a, const B& b, int64_t batch, int64_t n, int64_t k, const B& out) {
  check_f32(op, "a", a, checked_count(op, batch, n, n));
  const int64_t total = checked_count(op, batch, n, k);
  check_f32(op, "b", b, total);
  check_f32(op, "out", out, total);
}

template <class B>
void check_lu_factor(const B& a, int64_t batch, int64_t m, int64_t n, const B& lu, const B& piv) {
  const char* op = "lu_factor";
  const int64_t total = checked_count(op, batch, m, n);
  check_f32(op, "a", a, total);
  check_f32(op, "lu", lu, total);
  const int64_t k = std::min(m, n);
  check_dtype(op, "piv", piv, I32);
  LAMINA_CHECK(piv.numel == batch * k, op << ": piv holds " << piv.numel << " elements, expected " << batch * k);
}

template <class B>
void check_inv(const B& a, int64_t batch, int64_t n, const B& out) {
  const char* op = "inv";
  const int64_t total = checked_count(op, batch, n, n);
  check_f32(op, "a", a, total);
  check_f32(op, "out", out, total);
}

template <class B>
void check_det(const B& a, int64_t batch, int64_t n, const B& out) {
  const char* op = "det";
  check_f32(op, "a", a, checked_count(op, batch, n, n));
  check_f32(op, "out", out, batch);
}

template <class B>
void check_slogdet(const B& a, int64_t batch, int64_t n, const B& sign, const B& logabsdet) {
  const char* op = "slogdet";
  check_f32(op, "a", a, checked_count(op, batch, n, n));
  check_f32(op, "sign", sign, batch);
  check_f32(op, "logabsdet", logabsdet, batch);
}

// q (batch, m, qc), r (batch, rr, n): qc = rr = m when complete, else min(m, n).
template <class B>
void check_qr(const B& a, int64_t batch, int64_t m, int64_t n, bool complete, const B& q, const B& r) {
  const char* op = "qr";
  const int64_t k = std::min(m, n);
  const int64_t qc = complete ? m : k, rr = complete ? m : k;
  check_f32(op, "a", a, checked_count(op, batch, m, n));
  check_f32(op, "q", q, checked_count(op, batch, m, qc));
  check_f32(op, "r", r, checked_count(op, batch, rr, n));
}

template <class B>
void check_eigh(const B& a, int64_t batch, int64_t n, const B& w, const B& v) {
  const char* op = "eigh";
  const int64_t total = checked_count(op, batch, n, n);
  check_f32(op, "a", a, total);
  check_f32(op, "w", w, batch * n);
  check_f32(op, "v", v, total);
}

// s (batch, k), k = min(m, n); u (batch, m, m or k) and vt (batch, n or k, n) for full_matrices
// or not, both or neither.
template <class B>
void check_svd(const B& a, int64_t batch, int64_t m, int64_t n, bool full_matrices, const B* u, const B& s,
               const B* vt) {
  const char* op = "svd";
  const int64_t k = std::min(m, n);
  check_f32(op, "a", a, checked_count(op, batch, m, n));
  check_f32(op, "s", s, checked_count(op, batch, k, 1));
  LAMINA_CHECK((u == nullptr) == (vt == nullptr), op << ": pass both u and vt, or neither");
  const int64_t uc = full_matrices ? m : k, vr = full_matrices ? n : k;
  if (u) {
    check_f32(op, "u", *u, checked_count(op, batch, m, uc));
    check_f32(op, "vt", *vt, checked_count(op, batch, vr, n));
  }
}

// ---- matrices the operation is not defined for -----------------------------------------------------

// "<op>: matrix <t> of the batch <what>"
inline std::string matrix_error(const char* op, int64_t t, const std::string& what) {
  Msg os;
  os << op << ": matrix " << t << " of the batch " << what;
  return os.str();
}

// cholesky: the first leading minor (order j + 1) whose pivot is not positive (nan: it is NaN).
inline std::string not_positive_definite(int64_t j, bool nan) {
  Msg os;
  os << "is not positive definite: the leading minor of order " << j + 1 << " is not positive"
     << (nan ? " (the matrix holds NaN)" : "");
  return os.str();
}

// solve_triangular: the first zero on the diagonal.
inline std::string zero_diagonal(int64_t i) {
  Msg os;
  os << "is singular: diagonal entry " << i << " is 0";
  return os.str();
}

// solve and inv: the first zero pivot of the LU factorization.
inline std::string singular_pivot(int64_t z) {
  Msg os;
  os << "is singular: pivot " << z << " of its LU factorization is 0";
  return os.str();
}

constexpr const char* kEighNotFinite = "holds NaN or infinity; its eigenvalues are not defined";
constexpr const char* kSvdNotFinite = "holds NaN or infinity; its singular values are not defined";

}  // namespace linalg_args
}  // namespace lamina
