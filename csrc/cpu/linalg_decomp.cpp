// Dense matrix decompositions and solvers, batched over leading dimensions: cholesky,
// solve_triangular, lu_factor, solve, inv, det, slogdet, qr (Householder), eigh (cyclic Jacobi)
// and svd (one-sided Jacobi).
//
// Every kernel takes float32 matrices stored row-major, `batch` of them back to back, copies
// each into double precision, works there and rounds the results once: float32 inputs get
// results as accurate as float32 can hold, at the cost of double-precision arithmetic (these are
// not the training hot path). Matrices of a batch run in parallel. An input the operation is not
// defined for (a singular matrix for solve / inv, an indefinite one for cholesky, NaN for eigh /
// svd) raises ValueError naming the op and the matrix of the batch; the others give numpy's
// values (det of a singular matrix is 0, slogdet (0, -inf)).
#include <pybind11/pybind11.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>

#include "common.h"
#include "device.h"
#include "linalg_checks.h"

namespace py = pybind11;

namespace lamina {

namespace {

using Vec = std::vector<double>;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- argument checks and the batch loop ------------------------------------------------------------

// The argument checks and messages: csrc/linalg_checks.h (shared with the CUDA module).
namespace la = linalg_args;

// Runs f(t) for every matrix t of the batch (in parallel when there are several). An exception
// cannot leave an OpenMP region: the first failure (lowest t) is kept and raised afterwards.
template <class F>
void for_each_matrix(int64_t batch, int64_t work_per_matrix, F f) {
  std::mutex mu;
  int64_t bad = -1;
  std::string msg;
  const bool par = batch > 1 && batch * work_per_matrix > (1 << 14);
#pragma omp parallel for schedule(dynamic) if (par)
  for (int64_t t = 0; t < batch; ++t) {
    try {
      f(t);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mu);
      if (bad < 0 || t < bad) {
        bad = t;
        msg = e.what();
      }
    }
  }
  if (bad >= 0) throw std::invalid_argument(msg);
}

[[noreturn]] void fail(const char* op, int64_t t, const std::string& what) {
  throw std::invalid_argument(la::matrix_error(op, t, what));
}

bool all_finite(const float* a, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(a[i])) return false;
  return true;
}

// ---- LU with partial pivoting ------------------------------------------------------------------------

// In place on the m x n row-major matrix A: P A = L U with L unit lower (below the diagonal of A)
// and U upper. piv[j] is the row swapped with row j at step j (LAPACK's ipiv, 0-based). Returns
// the parity of the row swaps (+1 or -1). A zero pivot column is skipped (U has a zero there).
int lu_inplace(double* A, int64_t m, int64_t n, int32_t* piv) {
  const int64_t k = std::min(m, n);
  int sign = 1;
  for (int64_t j = 0; j < k; ++j) {
    int64_t p = j;
    double best = std::fabs(A[j * n + j]);
    for (int64_t i = j + 1; i < m; ++i) {
      double v = std::fabs(A[i * n + j]);
      if (v > best) { best = v; p = i; }
    }
    piv[j] = int32_t(p);
    if (p != j) {
      std::swap_ranges(A + j * n, A + j * n + n, A + p * n);
      sign = -sign;
    }
    const double d = A[j * n + j];
    if (d == 0.0) continue;
    for (int64_t i = j + 1; i < m; ++i) {
      double l = A[i * n + j] / d;
      A[i * n + j] = l;
      if (l == 0.0) continue;
      double* ri = A + i * n;
      const double* rj = A + j * n;
      for (int64_t c = j + 1; c < n; ++c) ri[c] -= l * rj[c];
    }
  }
  return sign;
}

// Solves A X = B (or A^T X = B) from the LU factors of the n x n matrix A; X overwrites the
// n x k row-major B.
void lu_solve(const double* LU, const int32_t* piv, int64_t n, double* B, int64_t k, bool transpose) {
  if (!transpose) {
    for (int64_t j = 0; j < n; ++j)
      if (piv[j] != j) std::swap_ranges(B + j * k, B + j * k + k, B + int64_t(piv[j]) * k);
    for (int64_t i = 0; i < n; ++i)  // L y = P b, L unit lower
      for (int64_t j = 0; j < i; ++j) {
        const double l = LU[i * n + j];
        if (l != 0.0)
          for (int64_t c = 0; c < k; ++c) B[i * k + c] -= l * B[j * k + c];
      }
    for (int64_t i = n - 1; i >= 0; --i) {  // U x = y
      for (int64_t j = i + 1; j < n; ++j) {
        const double u = LU[i * n + j];
        if (u != 0.0)
          for (int64_t c = 0; c < k; ++c) B[i * k + c] -= u * B[j * k + c];
      }
      const double d = LU[i * n + i];
      for (int64_t c = 0; c < k; ++c) B[i * k + c] /= d;
    }
  } else {
    // A^T = U^T L^T P: U^T y = b (forward), L^T z = y (backward, unit), x = P^T z
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < i; ++j) {
        const double u = LU[j * n + i];
        if (u != 0.0)
          for (int64_t c = 0; c < k; ++c) B[i * k + c] -= u * B[j * k + c];
      }
      const double d = LU[i * n + i];
      for (int64_t c = 0; c < k; ++c) B[i * k + c] /= d;
    }
    for (int64_t i = n - 1; i >= 0; --i)
      for (int64_t j = i + 1; j < n; ++j) {
        const double l = LU[j * n + i];
        if (l != 0.0)
          for (int64_t c = 0; c < k; ++c) B[i * k + c] -= l * B[j * k + c];
      }
    for (int64_t j = n - 1; j >= 0; --j)
      if (piv[j] != j) std::swap_ranges(B + j * k, B + j * k + k, B + int64_t(piv[j]) * k);
  }
}

void load(const float* src, int64_t n, double* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}
void store(const double* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = float(src[i]);
}

// Index of the first zero on the diagonal of an LU factorization, or -1.
int64_t zero_pivot(const double* LU, int64_t n) {
  for (int64_t j = 0; j < n; ++j)
    if (LU[j * n + j] == 0.0) return j;
  return -1;
}

// ---- Householder QR ------------------------------------------------------------------------------

// In place on the m x n row-major R: R = H_0 ... H_{k-1} R', k = min(m, n), with LAPACK's
// conventions (dgeqrf / dlarfg): H_j = I - tau_j v v^T, v_j = 1 and v below the diagonal of
// column j; R'_jj = -sign(alpha) ||x||, and H_j = I (tau_j = 0) when x is already zero below.
void householder_qr(double* R, int64_t m, int64_t n, double* tau) {
  const int64_t k = std::min(m, n);
  for (int64_t j = 0; j < k; ++j) {
    const double alpha = R[j * n + j];
    double xnorm2 = 0.0;
    for (int64_t i = j + 1; i < m; ++i) xnorm2 += R[i * n + j] * R[i * n + j];
    if (xnorm2 == 0.0) {
      tau[j] = 0.0;
      continue;
    }
    const double beta = -std::copysign(std::sqrt(alpha * alpha + xnorm2), alpha);
    tau[j] = (beta - alpha) / beta;
    const double scale = 1.0 / (alpha - beta);
    for (int64_t i = j + 1; i < m; ++i) R[i * n + j] *= scale;
    R[j * n + j] = beta;
    for (int64_t c = j + 1; c < n; ++c) {
      double w = R[j * n + c];
      for (int64_t i = j + 1; i < m; ++i) w += R[i * n + j] * R[i * n + c];
      w *= tau[j];
      R[j * n + c] -= w;
      for (int64_t i = j + 1; i < m; ++i) R[i * n + c] -= R[i * n + j] * w;
    }
  }
}

// Q (m x qcols, row-major) = H_0 ... H_{k-1} applied to the first qcols columns of I_m.
void householder_q(const double* R, int64_t m, int64_t n, const double* tau, double* Q, int64_t qcols) {
  const int64_t k = std::min(m, n);
  std::fill(Q, Q + m * qcols, 0.0);
  for (int64_t i = 0; i < std::min(m, qcols); ++i) Q[i * qcols + i] = 1.0;
  for (int64_t j = k - 1; j >= 0; --j) {
    if (tau[j] == 0.0) continue;
    for (int64_t c = 0; c < qcols; ++c) {
      double w = Q[j * qcols + c];
      for (int64_t i = j + 1; i < m; ++i) w += R[i * n + j] * Q[i * qcols + c];
      w *= tau[j];
      if (w == 0.0) continue;
      Q[j * qcols + c] -= w;
      for (int64_t i = j + 1; i < m; ++i) Q[i * qcols + c] -= R[i * n + j] * w;
    }
  }
}

// ---- Jacobi rotations ----------------------------------------------------------------------------

// tan of the rotation angle that zeroes the off-diagonal entry: the smaller root of
// t^2 + 2 theta t - 1 = 0, without overflow for a huge theta.
double jacobi_t(double theta) {
  if (std::fabs(theta) > 1e150) return 0.5 / theta;
  return std::copysign(1.0, theta) / (std::fabs(theta) + std::sqrt(theta * theta + 1.0));
}

// Symmetric eigendecomposition of the n x n row-major A (overwritten) by cyclic Jacobi:
// w ascending, V (row-major, eigenvectors in its columns).
void jacobi_eigh(double* A, int64_t n, double* w, double* V) {
  std::fill(V, V + n * n, 0.0);
  for (int64_t i = 0; i < n; ++i) V[i * n + i] = 1.0;
  for (int sweep = 0; sweep < 100; ++sweep) {
    bool rotated = false;
    for (int64_t p = 0; p < n; ++p)
      for (int64_t q = p + 1; q < n; ++q) {
        const double apq = A[p * n + q];
        if (apq == 0.0) continue;
        const double app = A[p * n + p], aqq = A[q * n + q];
        if (std::fabs(apq) <= 1e-18 * (std::fabs(app) + std::fabs(aqq))) {  // negligible: drop it
          A[p * n + q] = A[q * n + p] = 0.0;
          continue;
        }
        rotated = true;
        const double t = jacobi_t((aqq - app) / (2.0 * apq));
        const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
        for (int64_t k = 0; k < n; ++k) {  // columns p, q
          const double akp = A[k * n + p], akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (int64_t k = 0; k < n; ++k) {  // rows p, q
          const double apk = A[p * n + k], aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        A[p * n + q] = A[q * n + p] = 0.0;
        for (int64_t k = 0; k < n; ++k) {
          const double vkp = V[k * n + p], vkq = V[k * n + q];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    if (!rotated) break;
  }
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return A[a * n + a] < A[b * n + b]; });
  Vec Vs(V, V + n * n);
  for (int64_t j = 0; j < n; ++j) {
    w[j] = A[order[j] * n + order[j]];
    for (int64_t k = 0; k < n; ++k) V[k * n + j] = Vs[k * n + order[j]];
  }
}

// SVD of a p x q matrix, p >= q, given column by column in G (q columns of length p,
// overwritten) by one-sided Jacobi (Hestenes): rotations of column pairs until all columns are
// orthogonal; then s_j = ||g_j|| (descending), u_j = g_j / s_j, and V accumulates the rotations.
// U (p x ucols, row-major, ucols = q or p) gets an orthonormal completion where s_j = 0 and for
// the columns beyond q. V is q x q row-major (singular vectors in its columns).
void jacobi_svd(double* G, int64_t p, int64_t q, double* s, double* U, int64_t ucols, double* V) {
  std::fill(V, V + q * q, 0.0);
  for (int64_t i = 0; i < q; ++i) V[i * q + i] = 1.0;
  Vec Vc(V, V + q * q);  // column-major copy: rotations touch columns
  for (int sweep = 0; sweep < 80; ++sweep) {
    bool rotated = false;
    for (int64_t a = 0; a < q; ++a)
      for (int64_t b = a + 1; b < q; ++b) {
        double* ga = G + a * p;
        double* gb = G + b * p;
        double alpha = 0, beta = 0, gamma = 0;
        for (int64_t k = 0; k < p; ++k) {
          alpha += ga[k] * ga[k];
          beta += gb[k] * gb[k];
          gamma += ga[k] * gb[k];
        }
        if (gamma == 0.0 || std::fabs(gamma) <= 1e-15 * std::sqrt(alpha * beta)) continue;
        rotated = true;
        const double t = jacobi_t((beta - alpha) / (2.0 * gamma));
        const double c = 1.0 / std::sqrt(t * t + 1.0), sn = t * c;
        for (int64_t k = 0; k < p; ++k) {
          const double x = ga[k], y = gb[k];
          ga[k] = c * x - sn * y;
          gb[k] = sn * x + c * y;
        }
        double* va = Vc.data() + a * q;
        double* vb = Vc.data() + b * q;
        for (int64_t k = 0; k < q; ++k) {
          const double x = va[k], y = vb[k];
          va[k] = c * x - sn * y;
          vb[k] = sn * x + c * y;
        }
      }
    if (!rotated) break;
  }
  Vec norms(q);
  for (int64_t j = 0; j < q; ++j) {
    double ss = 0;
    for (int64_t k = 0; k < p; ++k) ss += G[j * p + k] * G[j * p + k];
    norms[j] = std::sqrt(ss);
  }
  std::vector<int64_t> order(q);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return norms[a] > norms[b]; });
  std::fill(U, U + p * ucols, 0.0);
  std::vector<char> have(ucols, 0);
  int64_t known = 0;
  for (int64_t j = 0; j < q; ++j) {
    const int64_t o = order[j];
    s[j] = norms[o];
    for (int64_t k = 0; k < q; ++k) V[k * q + j] = Vc[o * q + k];
    if (norms[o] > 0.0) {
      for (int64_t k = 0; k < p; ++k) U[k * ucols + j] = G[o * p + k] / norms[o];
      have[j] = 1;
      ++known;
    }
  }
  if (known == ucols) return;
  // Orthonormal completion: the last p - known columns of the complete Q of the known columns.
  Vec K(p * std::max<int64_t>(known, 1), 0.0);
  int64_t c = 0;
  for (int64_t j = 0; j < ucols; ++j)
    if (have[j]) {
      for (int64_t k = 0; k < p; ++k) K[k * known + c] = U[k * ucols + j];
      ++c;
    }
  Vec Q(p * p), tau(std::max<int64_t>(known, 1));
  if (known > 0) {
    householder_qr(K.data(), p, known, tau.data());
    householder_q(K.data(), p, known, tau.data(), Q.data(), p);
  } else {
    for (int64_t i = 0; i < p; ++i)
      for (int64_t k = 0; k < p; ++k) Q[i * p + k] = i == k;
  }
  int64_t next = known;
  for (int64_t j = 0; j < ucols; ++j)
    if (!have[j]) {
      for (int64_t k = 0; k < p; ++k) U[k * ucols + j] = Q[k * p + next];
      ++next;
    }
}

// ---- kernels -------------------------------------------------------------------------------------------

// Cholesky factor of each n x n matrix from its lower triangle (upper: from its upper triangle,
// giving U with A = U^T U); the other triangle of the output is zero.
void cholesky(const Buffer& a, int64_t batch, int64_t n, bool upper, Buffer& out) {
  const char* op = "cholesky";
  la::check_cholesky(a, batch, n, out);
  for_each_matrix(batch, n * n * n, [&](int64_t t) {
    const float* A = a.data<float>() + t * n * n;
    float* O = out.data<float>() + t * n * n;
    Vec L(n * n, 0.0);
    auto at = [&](int64_t i, int64_t j) { return double(upper ? A[j * n + i] : A[i * n + j]); };  // i >= j
    for (int64_t j = 0; j < n; ++j) {
      double d = at(j, j);
      for (int64_t k = 0; k < j; ++k) d -= L[j * n + k] * L[j * n + k];
      if (!(d > 0.0)) fail(op, t, la::not_positive_definite(j, std::isnan(d)));
      const double ljj = std::sqrt(d);
      L[j * n + j] = ljj;
      for (int64_t i = j + 1; i < n; ++i) {
        double v = at(i, j);
        for (int64_t k = 0; k < j; ++k) v -= L[i * n + k] * L[j * n + k];
        L[i * n + j] = v / ljj;
      }
    }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) O[i * n + j] = float(upper ? L[j * n + i] : L[i * n + j]);
  });
}

// X = A^-1 B (transpose: A^-T B) for triangular A (lower or upper; only that triangle is read),
// A: (batch, n, n), B and X: (batch, n, k).
void solve_triangular(const Buffer& a, const Buffer& b, int64_t batch, int64_t n, int64_t k, bool lower,
                      bool transpose, Buffer& out) {
  const char* op = "solve_triangular";
  la::check_system(op, a, b, batch, n, k, out);
  for_each_matrix(batch, n * n * std::max<int64_t>(k, 1), [&](int64_t t) {
    const float* A = a.data<float>() + t * n * n;
    for (int64_t i = 0; i < n; ++i)
        if (A[i * n + i] == 0.f) fail(op, t, la::zero_diagonal(i));
    // the effective matrix M = A or A^T; M is lower when exactly one of (lower, transpose) holds
    auto M = [&](int64_t i, int64_t j) { return double(transpose ? A[j * n + i] : A[i * n + j]); };
    const bool m_lower = lower != transpose;
    Vec X(n * k);
    load(b.data<float>() + t * n * k, n * k, X.data());
    for (int64_t s = 0; s < n; ++s) {
      const int64_t i = m_lower ? s : n - 1 - s;
      double* xi = X.data() + i * k;
      const int64_t j0 = m_lower ? 0 : i + 1, j1 = m_lower ? i : n;
      for (int64_t j = j0; j < j1; ++j) {
        const double mij = M(i, j);
        if (mij == 0.0) continue;
        const double* xj = X.data() + j * k;
        for (int64_t c = 0; c < k; ++c) xi[c] -= mij * xj[c];
      }
      const double d = M(i, i);
      for (int64_t c = 0; c < k; ++c) xi[c] /= d;
    }
    store(X.data(), n * k, out.data<float>() + t * n * k);
  });
}

// LU factorization with partial pivoting of each m x n matrix (scipy.linalg.lu_factor): lu holds
// U and, below the diagonal, L (unit diagonal); piv (int32, min(m, n) per matrix) the row swaps.
void lu_factor(const Buffer& a, int64_t batch, int64_t m, int64_t n, Buffer& lu, Buffer& piv) {
  la::check_lu_factor(a, batch, m, n, lu, piv);
  const int64_t k = std::min(m, n);
  for_each_matrix(batch, m * n * k, [&](int64_t t) {
    Vec A(m * n);
    load(a.data<float>() + t * m * n, m * n, A.data());
    lu_inplace(A.data(), m, n, piv.data<int32_t>() + t * k);
    store(A.data(), m * n, lu.data<float>() + t * m * n);
  });
}

// X = A^-1 B (transpose: A^-T B) by LU with partial pivoting; A: (batch, n, n), B, X: (batch, n, k).
void solve(const Buffer& a, const Buffer& b, int64_t batch, int64_t n, int64_t k, bool transpose, Buffer& out) {
  const char* op = "solve";
  la::check_system(op, a, b, batch, n, k, out);
  for_each_matrix(batch, n * n * (n + k), [&](int64_t t) {
    Vec A(n * n), X(n * k);
    std::vector<int32_t> piv(n);
    load(a.data<float>() + t * n * n, n * n, A.data());
    lu_inplace(A.data(), n, n, piv.data());
    const int64_t z = zero_pivot(A.data(), n);
    if (z >= 0) fail(op, t, la::singular_pivot(z));
    load(b.data<float>() + t * n * k, n * k, X.data());
    lu_solve(A.data(), piv.data(), n, X.data(), k, transpose);
    store(X.data(), n * k, out.data<float>() + t * n * k);
  });
}

void inv(const Buffer& a, int64_t batch, int64_t n, Buffer& out) {
  const char* op = "inv";
  la::check_inv(a, batch, n, out);
  for_each_matrix(batch, n * n * n, [&](int64_t t) {
    Vec A(n * n), X(n * n, 0.0);
    std::vector<int32_t> piv(n);
    load(a.data<float>() + t * n * n, n * n, A.data());
    lu_inplace(A.data(), n, n, piv.data());
    const int64_t z = zero_pivot(A.data(), n);
    if (z >= 0) fail(op, t, la::singular_pivot(z));
    for (int64_t i = 0; i < n; ++i) X[i * n + i] = 1.0;
    lu_solve(A.data(), piv.data(), n, X.data(), n, false);
    store(X.data(), n * n, out.data<float>() + t * n * n);
  });
}

// det (out: batch values) from the LU factors, in double (so only the float32 result can overflow).
void det(const Buffer& a, int64_t batch, int64_t n, Buffer& out) {
  la::check_det(a, batch, n, out);
  for_each_matrix(batch, n * n * n, [&](int64_t t) {
    Vec A(n * n);
    std::vector<int32_t> piv(n);
    load(a.data<float>() + t * n * n, n * n, A.data());
    double d = lu_inplace(A.data(), n, n, piv.data());
    for (int64_t j = 0; j < n; ++j) d *= A[j * n + j];
    out.data<float>()[t] = float(d);
  });
}

// sign and log|det| of each matrix; a singular one gives (0, -inf) as numpy.
void slogdet(const Buffer& a, int64_t batch, int64_t n, Buffer& sign, Buffer& logabsdet) {
  la::check_slogdet(a, batch, n, sign, logabsdet);
  for_each_matrix(batch, n * n * n, [&](int64_t t) {
    Vec A(n * n);
    std::vector<int32_t> piv(n);
    load(a.data<float>() + t * n * n, n * n, A.data());
    double sg = lu_inplace(A.data(), n, n, piv.data()), la = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      const double u = A[j * n + j];
      if (u < 0) sg = -sg;
      la += std::log(std::fabs(u));
    }
    if (std::isnan(la)) sg = kNaN;
    else if (la == -kInf) sg = 0.0;
    sign.data<float>()[t] = float(sg);
    logabsdet.data<float>()[t] = float(la);
  });
}

// Householder QR of each m x n matrix: complete: q (m, m), r (m, n); reduced: q (m, k),
// r (k, n), k = min(m, n). Signs as LAPACK (numpy.linalg.qr).
void qr(const Buffer& a, int64_t batch, int64_t m, int64_t n, bool complete, Buffer& q, Buffer& r) {
  la::check_qr(a, batch, m, n, complete, q, r);
  const int64_t k = std::min(m, n);
  const int64_t qc = complete ? m : k, rr = complete ? m : k;
  for_each_matrix(batch, m * n * std::max(m, n), [&](int64_t t) {
    Vec R(m * n), tau(std::max<int64_t>(k, 1)), Q(m * qc);
    load(a.data<float>() + t * m * n, m * n, R.data());
    householder_qr(R.data(), m, n, tau.data());
    householder_q(R.data(), m, n, tau.data(), Q.data(), qc);
    store(Q.data(), m * qc, q.data<float>() + t * m * qc);
    float* O = r.data<float>() + t * rr * n;
    for (int64_t i = 0; i < rr; ++i)
      for (int64_t j = 0; j < n; ++j) O[i * n + j] = j >= i ? float(R[i * n + j]) : 0.f;
  });
}

// Eigenvalues (ascending, w: (batch, n)) and eigenvectors (columns of v: (batch, n, n)) of each
// symmetric matrix, read from its lower triangle as numpy.linalg.eigh.
void eigh(const Buffer& a, int64_t batch, int64_t n, Buffer& w, Buffer& v) {
  const char* op = "eigh";
  la::check_eigh(a, batch, n, w, v);
  for_each_matrix(batch, n * n * n, [&](int64_t t) {
    const float* src = a.data<float>() + t * n * n;
    Vec A(n * n), W(n), V(n * n);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        if (!std::isfinite(src[i * n + j])) fail(op, t, la::kEighNotFinite);
        A[i * n + j] = A[j * n + i] = src[i * n + j];
      }
    jacobi_eigh(A.data(), n, W.data(), V.data());
    store(W.data(), n, w.data<float>() + t * n);
    store(V.data(), n * n, v.data<float>() + t * n * n);
  });
}

// Singular values (descending, s: (batch, k), k = min(m, n)) and, when u and vt are given, the
// singular vectors: u (batch, m, m or k), vt (batch, n or k, n) for full_matrices or not.
void svd(const Buffer& a, int64_t batch, int64_t m, int64_t n, bool full_matrices, Buffer* u, Buffer& s,
         Buffer* vt) {
  const char* op = "svd";
  la::check_svd(a, batch, m, n, full_matrices, u, s, vt);
  const int64_t k = std::min(m, n);
  const int64_t uc = full_matrices ? m : k, vr = full_matrices ? n : k;
  for_each_matrix(batch, m * n * k * 8, [&](int64_t t) {
    const float* A = a.data<float>() + t * m * n;
    if (!all_finite(A, m * n)) fail(op, t, la::kSvdNotFinite);
    const bool tall = m >= n;
    const int64_t p = tall ? m : n, q = tall ? n : m;  // work on the tall one of A and A^T
    Vec G(p * q);  // q columns of length p
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        if (tall) G[j * p + i] = A[i * n + j];  // columns of A
        else G[i * p + j] = A[i * n + j];       // columns of A^T = rows of A
      }
    const int64_t pc = tall ? uc : vr;  // columns of the tall factor
    Vec S(q), P(p * std::max<int64_t>(pc, 1)), V(q * q);
    jacobi_svd(G.data(), p, q, S.data(), P.data(), pc, V.data());
    store(S.data(), q, s.data<float>() + t * k);
    if (!u) return;
    float* Uo = u->data<float>() + t * m * uc;
    float* Vo = vt->data<float>() + t * vr * n;
    if (tall) {  // A = P S V^T: u = P, vt = V^T
      store(P.data(), m * uc, Uo);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) Vo[i * n + j] = float(V[j * q + i]);
    } else {  // A^T = P S V^T, so A = V S P^T: u = V, vt = P^T
      store(V.data(), m * m, Uo);
      for (int64_t i = 0; i < vr; ++i)
        for (int64_t j = 0; j < n; ++j) Vo[i * n + j] = float(P[j * pc + i]);
    }
  });
}

}  // namespace

void bind_linalg_decomp(py::module_& m) {
  def_kernel(m, "cholesky", &cholesky, py::arg("a"), py::arg("batch"), py::arg("n"), py::arg("upper"), py::arg("out"));
  def_kernel(m, "solve_triangular", &solve_triangular, py::arg("a"), py::arg("b"), py::arg("batch"), py::arg("n"),
             py::arg("k"), py::arg("lower"), py::arg("transpose"), py::arg("out"));
  def_kernel(m, "lu_factor", &lu_factor, py::arg("a"), py::arg("batch"), py::arg("m"), py::arg("n"), py::arg("lu"),
             py::arg("piv"));
  def_kernel(m, "solve", &solve, py::arg("a"), py::arg("b"), py::arg("batch"), py::arg("n"), py::arg("k"),
             py::arg("transpose"), py::arg("out"));
  def_kernel(m, "inv", &inv, py::arg("a"), py::arg("batch"), py::arg("n"), py::arg("out"));
  def_kernel(m, "det", &det, py::arg("a"), py::arg("batch"), py::arg("n"), py::arg("out"));
  def_kernel(m, "slogdet", &slogdet, py::arg("a"), py::arg("batch"), py::arg("n"), py::arg("sign"),
             py::arg("logabsdet"));
  def_kernel(m, "qr", &qr, py::arg("a"), py::arg("batch"), py::arg("m"), py::arg("n"), py::arg("complete"),
             py::arg("q"), py::arg("r"));
  def_kernel(m, "eigh", &eigh, py::arg("a"), py::arg("batch"), py::arg("n"), py::arg("w"), py::arg("v"));
  def_kernel(m, "svd", &svd, py::arg("a"), py::arg("batch"), py::arg("m"), py::arg("n"), py::arg("full_matrices"),
             py::arg("u").none(true), py::arg("s"), py::arg("vt").none(true));
}

}  // namespace lamina
