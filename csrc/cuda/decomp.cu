// Dense matrix decompositions and solvers, batched: cholesky, solve_triangular, lu_factor, solve,
// inv, det, slogdet, qr (Householder), eigh (cyclic Jacobi) and svd (one-sided Jacobi). The
// algorithms of csrc/cpu/linalg_decomp.cpp step for step -- the same pivot choice and ties (the
// first row of the largest magnitude), Householder signs (LAPACK's), rotation order, convergence
// tests and stable sorts -- so that the factors, including the signs of eigenvectors and singular
// vectors, are the CPU's within float32 rounding.
//
// One thread block per matrix (a grid-stride loop over the batch), in double precision as the
// CPU: the block's arrays in its shared arena (32 KiB: a 64 x 64 matrix) while they fit, the
// rest in its slice of a global workspace; the threads share each step's inner loops, with
// __syncthreads between steps. Where the CPU's inner loop runs over independent elements, each
// element gets the CPU's operations in the CPU's order (LU updates, the forward substitutions,
// Householder reflections, rotations); the CPU's sequential scans and sums (LU pivot search,
// Cholesky and Householder pivots, the dot products of a reflection or a Jacobi pair, column
// norms) are done the same way by one thread. What differs: backward substitutions subtract in the
// reverse order, and nvcc may fuse a multiply and an add (double rounding, far below float32's).
//
// Matrices an op is not defined for (cholesky: not positive definite; solve_triangular, solve,
// inv: singular; eigh, svd: NaN or infinity) set a device flag: the lowest such matrix (atomicMin)
// and its detail. The host reads it after the launch (one wait on the stream) and raises the
// CPU's ValueError (csrc/linalg_checks.h).
#include <climits>

#include "../linalg_checks.h"
#include "decomp.h"

namespace lamina {
namespace gpu {
namespace {

namespace la = linalg_args;

constexpr int kShared = 4096;   // doubles in a block's shared arena (32 KiB)
constexpr int kMaxWarps = 8;    // blocks of at most 256 threads
constexpr unsigned kMaxBlocks = 1024;
constexpr int64_t kWorkspaceDoubles = int64_t(1) << 23;  // at most 64 MiB of global workspace a launch
constexpr unsigned long long kNoFailure = ~0ull;

// ---- launch shape and workspace ---------------------------------------------------------------------

// Threads a block: a multiple of 32, at least `work` up to 256.
int threads_for(int64_t work) {
  const int64_t t = (work + 31) / 32 * 32;
  return int(t < 32 ? 32 : (t > 256 ? 256 : t));
}

// Doubles an int array of n takes in an Arena.
__host__ __device__ __forceinline__ int64_t int_slots(int64_t n) { return (n + 1) / 2; }

// Blocks for `batch` matrices needing `per_block` workspace doubles each.
unsigned blocks_for(int64_t batch, int64_t per_block) {
  int64_t b = batch < int64_t(kMaxBlocks) ? batch : int64_t(kMaxBlocks);
  const int64_t fit = kWorkspaceDoubles / (per_block > 0 ? per_block : 1);
  if (b > fit) b = fit;
  return unsigned(b < 1 ? 1 : b);
}

// A matrix's arrays: in the block's shared arena while it has room, else in the block's slice of
// the global workspace (sized on the host as if every array were there). Every thread takes the
// same arrays in the same order, so all agree on where each is.
struct Arena {
  double* sh;
  int64_t left;
  double* g;
  __device__ double* take(int64_t n) {
    if (n <= left) {
      double* r = sh;
      sh += n;
      left -= n;
      return r;
    }
    double* r = g;
    g += n;
    return r;
  }
  __device__ int* take_int(int64_t n) { return reinterpret_cast<int*>(take(int_slots(n))); }
};

// The device side of the error flag: *flag = lowest failing matrix, detail[t] = what failed.
struct Fail {
  unsigned long long* flag;
  long long* detail;
  __device__ void report(int64_t t, long long d) const {  // one thread of the block
    detail[t] = d;
    atomicMin(flag, (unsigned long long)t);
  }
};

// The host side: set before the launch, read after it (waits for the stream).
struct FailFlag {
  Buffer flag, detail;
  FailFlag(Context& c, int device, int64_t batch) : flag(1, I64, device), detail(batch > 0 ? batch : 1, I64, device) {
    LAMINA_CUDA_CHECK(cudaMemsetAsync(flag.ptr, 0xff, 8, c.stream));
  }
  Fail dev() const { return Fail{flag.data<unsigned long long>(), detail.data<long long>()}; }
  // The lowest failing matrix (-1: none) and its detail.
  int64_t read(Context& c, long long* d) const {
    unsigned long long idx = 0;
    LAMINA_CUDA_CHECK(cudaMemcpyAsync(&idx, flag.ptr, 8, cudaMemcpyDeviceToHost, c.stream));
    LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));
    if (idx == kNoFailure) return -1;
    LAMINA_CUDA_CHECK(cudaMemcpy(d, detail.data<long long>() + idx, 8, cudaMemcpyDeviceToHost));
    return int64_t(idx);
  }
};

[[noreturn]] void raise_matrix_error(const char* op, int64_t t, const std::string& what) {
  throw std::invalid_argument(la::matrix_error(op, t, what));
}

// ---- block reductions (every thread of the block calls them; every thread gets the result) -----------

// The smallest of the threads' values; part: kMaxWarps long longs of shared memory.
__device__ long long block_min(long long v, long long* part) {
  for (int o = 16; o > 0; o >>= 1) {
    const long long u = __shfl_xor_sync(0xffffffffu, v, o);
    v = u < v ? u : v;
  }
  const int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if ((threadIdx.x & 31) == 0) part[w] = v;
  __syncthreads();
  v = part[0];
  for (int k = 1; k < nw; ++k) v = part[k] < v ? part[k] : v;
  __syncthreads();
  return v;
}

// ---- block building blocks (linalg_decomp.cpp's helpers) ---------------------------------------------

// The effective matrix of a triangular solve: a (row-major n x n) or its transpose.
template <class T>
struct Tri {
  const T* a;
  int64_t n;
  bool trans;
  __device__ __forceinline__ double operator()(int64_t i, int64_t j) const {
    return double(trans ? a[j * n + i] : a[i * n + j]);
  }
};

// X = M^-1 X for triangular M (lower or upper; unit: ones on its diagonal, not read); X is n x k
// row-major. Row by row in solving order: the row is divided by its diagonal entry, then
// subtracted from the rows still to solve (entries of M that are 0 skipped, as the CPU). Each row
// of a lower solve receives the CPU's operations in the CPU's order.
template <class Mat>
__device__ void block_trsm(const Mat& M, bool lower, bool unit, int64_t n, double* X, int64_t k) {
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t i = lower ? s : n - 1 - s;
    if (!unit) {
      const double d = M(i, i);
      for (int64_t c = tid; c < k; c += nt) X[i * k + c] /= d;
      __syncthreads();
    }
    const int64_t r0 = lower ? i + 1 : 0, rows = lower ? n - 1 - i : i;
    const int64_t work = rows * k;
    for (int64_t e = tid; e < work; e += nt) {
      const int64_t r = r0 + e / k, c = e - (e / k) * k;
      const double mri = M(r, i);
      if (mri != 0.0) X[r * k + c] -= mri * X[i * k + c];
    }
    __syncthreads();
  }
}

// lu_inplace: P A = L U in place on the m x n row-major A; piv (when given) gets the row swapped
// with row j at step j. Returns the parity of the swaps. The pivot is the CPU's scan, by one
// thread: the first row of the largest |A[i, j]|, i >= j (NaN never wins; a NaN at (j, j) keeps
// row j). sp: 2 long longs of shared memory (a step's pivot, two steps' worth).
__device__ int block_lu(double* A, int64_t m, int64_t n, int* piv, long long* sp) {
  const int tid = threadIdx.x, nt = blockDim.x;
  const int64_t k = m < n ? m : n;
  int sign = 1;
  for (int64_t j = 0; j < k; ++j) {
    if (tid == 0) {
      int64_t p = j;
      double best = fabs(A[j * n + j]);
      for (int64_t i = j + 1; i < m; ++i) {
        const double v = fabs(A[i * n + j]);
        if (v > best) {
          best = v;
          p = i;
        }
      }
      sp[j & 1] = p;
      if (piv) piv[j] = int(p);
    }
    __syncthreads();
    const int64_t p = sp[j & 1];
    if (p != j) {
      sign = -sign;
      for (int64_t c = tid; c < n; c += nt) {
        const double x = A[j * n + c];
        A[j * n + c] = A[p * n + c];
        A[p * n + c] = x;
      }
      __syncthreads();
    }
    const double d = A[j * n + j];
    if (d == 0.0) continue;
    for (int64_t i = j + 1 + tid; i < m; i += nt) A[i * n + j] = A[i * n + j] / d;
    __syncthreads();
    const int64_t w = n - j - 1, work = (m - j - 1) * w;
    for (int64_t e = tid; e < work; e += nt) {
      const int64_t i = j + 1 + e / w, c = j + 1 + (e - (e / w) * w);
      const double l = A[i * n + j];
      if (l != 0.0) A[i * n + c] -= l * A[j * n + c];
    }
    __syncthreads();
  }
  return sign;
}

// The first zero on the diagonal of the n x n LU factors (-1: none).
__device__ int64_t block_zero_pivot(const double* LU, int64_t n, long long* part) {
  long long z = LLONG_MAX;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    if (LU[j * n + j] == 0.0) {
      z = j;
      break;
    }
  z = block_min(z, part);
  return z == LLONG_MAX ? -1 : int64_t(z);
}

// lu_solve: X (n x k) = A^-1 X (transpose: A^-T X) from the LU factors and pivots of A.
__device__ void block_lu_solve(const double* LU, const int* piv, int64_t n, double* X, int64_t k, bool transpose) {
  const int tid = threadIdx.x, nt = blockDim.x;
  if (!transpose) {
    for (int64_t c = tid; c < k; c += nt)
      for (int64_t j = 0; j < n; ++j) {
        const int64_t p = piv[j];
        if (p != j) {
          const double x = X[j * k + c];
          X[j * k + c] = X[p * k + c];
          X[p * k + c] = x;
        }
      }
    __syncthreads();
    block_trsm(Tri<double>{LU, n, false}, true, true, n, X, k);    // L y = P b
    block_trsm(Tri<double>{LU, n, false}, false, false, n, X, k);  // U x = y
  } else {
    block_trsm(Tri<double>{LU, n, true}, true, false, n, X, k);  // U^T y = b
    block_trsm(Tri<double>{LU, n, true}, false, true, n, X, k);  // L^T z = y
    for (int64_t c = tid; c < k; c += nt)                          // x = P^T z
      for (int64_t j = n - 1; j >= 0; --j) {
        const int64_t p = piv[j];
        if (p != j) {
          const double x = X[j * k + c];
          X[j * k + c] = X[p * k + c];
          X[p * k + c] = x;
        }
      }
    __syncthreads();
  }
}

// householder_qr on the m x n row-major R: tau (min(m, n)); W: n doubles; sc: 8 doubles of
// shared memory (one step's scalars, two steps' worth so that a step without a reflection needs
// no second barrier).
__device__ void block_householder_qr(double* R, int64_t m, int64_t n, double* tau, double* W, double* sc) {
  const int tid = threadIdx.x, nt = blockDim.x;
  const int64_t k = m < n ? m : n;
  for (int64_t j = 0; j < k; ++j) {
    double* s = sc + 4 * (j & 1);
    if (tid == 0) {
      const double alpha = R[j * n + j];
      double xnorm2 = 0.0;
      for (int64_t i = j + 1; i < m; ++i) xnorm2 += R[i * n + j] * R[i * n + j];
      if (xnorm2 == 0.0) {
        tau[j] = 0.0;
        s[0] = 0.0;
      } else {
        const double beta = -copysign(sqrt(alpha * alpha + xnorm2), alpha);
        tau[j] = (beta - alpha) / beta;
        s[0] = 1.0;
        s[1] = beta;
        s[2] = 1.0 / (alpha - beta);
      }
    }
    __syncthreads();
    if (s[0] == 0.0) continue;
    const double beta = s[1], scale = s[2], tj = tau[j];
    for (int64_t i = j + 1 + tid; i < m; i += nt) R[i * n + j] *= scale;
    if (tid == 0) R[j * n + j] = beta;
    __syncthreads();
    for (int64_t c = j + 1 + tid; c < n; c += nt) {
      double w = R[j * n + c];
      for (int64_t i = j + 1; i < m; ++i) w += R[i * n + j] * R[i * n + c];
      W[c] = w * tj;
    }
    __syncthreads();
    const int64_t cols = n - j - 1, work = (m - j) * cols;
    for (int64_t e = tid; e < work; e += nt) {
      const int64_t i = j + e / cols, c = j + 1 + (e - (e / cols) * cols);
      const double w = W[c];
      if (i == j) R[j * n + c] -= w;
      else R[i * n + c] -= R[i * n + j] * w;
    }
    __syncthreads();
  }
}

// householder_q: Q (m x qcols, row-major) = H_0 ... H_{k-1} applied to the first qcols columns
// of I_m; W: qcols doubles.
__device__ void block_householder_q(const double* R, int64_t m, int64_t n, const double* tau, double* Q, int64_t qc,
                                    double* W) {
  const int tid = threadIdx.x, nt = blockDim.x;
  const int64_t k = m < n ? m : n;
  for (int64_t e = tid; e < m * qc; e += nt) Q[e] = e / qc == e - (e / qc) * qc ? 1.0 : 0.0;
  __syncthreads();
  for (int64_t j = k - 1; j >= 0; --j) {
    const double tj = tau[j];
    if (tj == 0.0) continue;
    for (int64_t c = tid; c < qc; c += nt) {
      double w = Q[j * qc + c];
      for (int64_t i = j + 1; i < m; ++i) w += R[i * n + j] * Q[i * qc + c];
      W[c] = w * tj;
    }
    __syncthreads();
    const int64_t work = (m - j) * qc;
    for (int64_t e = tid; e < work; e += nt) {
      const int64_t i = j + e / qc, c = e - (e / qc) * qc;
      const double w = W[c];
      if (w == 0.0) continue;
      if (i == j) Q[j * qc + c] -= w;
      else Q[i * qc + c] -= R[i * n + j] * w;
    }
    __syncthreads();
  }
}

// jacobi_t: tan of the rotation angle, the smaller root of t^2 + 2 theta t - 1 = 0.
__device__ __forceinline__ double jacobi_t(double theta) {
  if (fabs(theta) > 1e150) return 0.5 / theta;
  return copysign(1.0, theta) / (fabs(theta) + sqrt(theta * theta + 1.0));
}

// ---- kernels (one matrix at a time per block; a barrier after each, before its arrays are reused) ---

__global__ void __launch_bounds__(256) cholesky_kernel(const float* a, int64_t batch, int64_t n, bool upper,
                                                       float* out, double* ws, int64_t per_block, Fail fail) {
  __shared__ double sh[kShared];
  __shared__ double sd[2];
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int64_t t = blockIdx.x; t < batch; t += gridDim.x) {
    Arena ar{sh, kShared, ws + blockIdx.x * per_block};
    double* L = ar.take(n * n);
    const float* A = a + t * n * n;
    // the lower triangle read (upper: the upper one, transposed), i >= j
    auto at = [&](int64_t i, int64_t j) { return double(upper ? A[j * n + i] : A[i * n + j]); };
    bool ok = true;
    for (int64_t j = 0; j < n; ++j) {
      if (tid == 0) {
        double d = at(j, j);
        for (int64_t k = 0; k < j; ++k) d -= L[j * n + k] * L[j * n + k];
        sd[j & 1] = d;
      }
      __syncthreads();
      const double d = sd[j & 1];
      if (!(d > 0.0)) {
        if (tid == 0) fail.report(t, 2 * j + (isnan(d) ? 1 : 0));
        ok = false;
        break;
      }
      const double ljj = sqrt(d);
      if (tid == 0) L[j * n + j] = ljj;
      for (int64_t i = j + 1 + tid; i < n; i += nt) {
        double v = at(i, j);
        for (int64_t k = 0; k < j; ++k) v -= L[i * n + k] * L[j * n + k];
        L[i * n + j] = v / ljj;
      }
      __syncthreads();
    }
    if (ok) {
      float* O = out + t * n * n;
      for (int64_t e = tid; e < n * n; e += nt) {
        const int64_t i = e / n, j = e - i * n;
        O[e] = float(upper ? (j >= i ? L[j * n + i] : 0.0) : (i >= j ? L[i * n + j] : 0.0));
      }
    }
    __syncthreads();
  }
}

__global__ void __launch_bounds__(256) solve_triangular_kernel(const float* a, const float* b, int64_t batch, int64_t n,
                                                               int64_t k, bool lower, bool transpose, float* out,
                                                               double* ws, int64_t per_block, Fail fail) {
  __shared__ double sh[kShared];
  __shared__ long long part[kMaxWarps];
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int64_t t = blockIdx.x; t < batch; t += gridDim.x) {
    const float* A = a + t * n * n;
    long long z = LLONG_MAX;
    for (int64_t i = tid; i < n; i += nt)
      if (A[i * n + i] == 0.f) {
        z = i;
        break;
      }
    z = block_min(z, part);
    if (z != LLONG_MAX) {
      if (tid == 0) fail.report(t, z);
    } else {
      Arena ar{sh, kShared, ws + blockIdx.x * per_block};
      double* X = ar.take(n * k);
      const float* B = b + t * n * k;
      for (int64_t e = tid; e < n * k; e += nt) X[e] = B[e];
      __syncthreads();
      // the effective matrix M = A or A^T: lower when exactly one of (lower, transpose) holds
      block_trsm(Tri<float>{A, n, transpose}, lower != transpose, false, n, X, k);
      float* O = out + t * n * k;
      for (int64_t e = tid; e < n * k; e += nt) O[e] = float(X[e]);
    }
    __syncthreads();
  }
}

__global__ void __launch_bounds__(256) lu_factor_kernel(const float* a, int64_t batch, int64_t m, int64_t n, float* lu,
                                                        int32_t* piv, double* ws, int64_t per_block) {
  __shared__ double sh[kShared];
  __shared__ long long sp[2];
  const int tid = threadIdx.x, nt = blockDim.x;
  const int64_t k = m < n ? m : n;
  for (int64_t t = blockIdx.x; t < batch; t += gridDim.x) {
    Arena ar{sh, kShared, ws + blockIdx.x * per_block};
    double* A = ar.take(m * n);
    const float* src = a + t * m * n;
    for (int64_t e = tid; e < m * n; e += nt) A[e] = src[e];
    __syncthreads();
    block_lu(A, m, n, piv + t * k, sp);
    float* O = lu + t * m * n;
    for (int64_t e = tid; e < m * n; e += nt) O[e] = float(A[e]);
    __syncthreads();
  }
}

// det (out[t]) or, logdet, slogdet (sign in out[t], log|det| in out2[t]) from the LU factors.
__global__ void __launch_bounds__(256) det_kernel(const float* a, int64_t batch, int64_t n, bool logdet, float* out,
                                                  float* out2, double* ws, int64_t per_block) {
  __shared__ double sh[kShared];
  __shared__ long long sp[2];
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int64_t t = blockIdx.x; t < batch; t += gridDim.x) {
    Arena ar{sh, kShared, ws + blockIdx.x * per_block};
    double* A = ar.take(n * n);
    const float* src = a + t * n * n;
    for (int64_t e = tid; e < n * n; e += nt) A[e] = src[e];
    __syncthreads();
    const int sign = block_lu(A, n, n, nullptr, sp);
    if (tid == 0) {
      if (!logdet) {
        double d = sign;
        for (int64_t j = 0; j < n; ++j) d *= A[j * n + j];
        out[t] = float(d);
      } else {
        double sg = sign, lad = 0.0;
        for (int64_t j = 0; j < n; ++j) {
          const double u = A[j * n + j];
          if (u < 0) sg = -sg;
          lad += log(fabs(u));
        }
        if (isnan(lad)) sg = __longlong_as_double(0x7ff8000000000000LL);
        else if (isinf(lad) && lad < 0) sg = 0.0;
        out[t] = float(sg);
        out2[t] = float(lad);
      }
    }
    __syncthreads();
  }
}

// solve (identity == false: X = A^-1 B or A^-T B) and inv (identity: X = A^-1).
__global__ void __launch_bounds__(256) lu_solve_kernel(const float* a, const float* b, int64_t batch, int64_t n,
                                                       int64_t k, bool transpose, bool identity, float* out, double* ws,
                                                       int64_t per_block, Fail fail) {
  __shared__ double sh[kShared];
  __shared__ long long sp[2];
  __shared__ long long part[kMaxWarps];
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int64_t t = blockIdx.x; t < batch; t += gridDim.x) {
    Arena ar{sh, kShared, ws + blockIdx.x * per_block};
    double* A = ar.take(n * n);
    double* X = ar.take(n * k);
    int* piv = ar.take_int(n);
    const float* src = a + t * n * n;
    for (int64_t e = tid; e < n * n; e += nt) A[e] = src[e];
    if (identity) {
      for (int64_t e = tid; e < n * k; e += nt) X[e] = e / k == e - (e / k) * k ? 1.0 : 0.0;
    } else {
      const float* B = b + t * n * k;
      for (int64_t e = tid; e < n * k; e += nt) X[e] = B[e];
    }
    __syncthreads();
    block_lu(A, n, n, piv, sp);
    const int64_t z = block_zero_pivot(A, n, part);
    if (z >= 0) {
      if (tid == 0) fail.report(t, z);
    } else {
      block_lu_solve(A, piv, n, X, k, transpose);
      float* O = out + t * n * k;
      for (int64_t e = tid; e < n * k; e += nt) O[e] = float(X[e]);
    }
    __syncthreads();
  }
}

__global__ void __launch_bounds__(256) qr_kernel(const float* a, int64_t batch, int64_t m, int64_t n, int64_t qc,
                                                 int64_t rr, float* q, float* r, double* ws, int64_t per_block) {
  __shared__ double sh[kShared];
  __shared__ double sc[8];
  const int tid = threadIdx.x, nt = blockDim.x;
  const int64_t k = m < n ? m : n;
  for (int64_t t = blockIdx.x; t < batch; t += gridDim.x) {
    Arena ar{sh, kShared, ws + blockIdx.x * per_block};
    double* R = ar.take(m * n);
    double* tau = ar.take(k > 0 ? k : 1);
    double* W = ar.take(n > qc ? n : (qc > 0 ? qc : 1));
    double* Q = ar.take(m * qc);
    const float* src = a + t * m * n;
    for (int64_t e = tid; e < m * n; e += nt) R[e] = src[e];
    __syncthreads();
    block_householder_qr(R, m, n, tau, W, sc);
    block_householder_q(R, m, n, tau, Q, qc, W);
    float* Qo = q + t * m * qc;
    for (int64_t e = tid; e < m * qc; e += nt) Qo[e] = float(Q[e]);
    float* Ro = r + t * rr * n;
    for (int64_t e = tid; e < rr * n; e += nt) {
      const int64_t i = e / n, j = e - i * n;
      Ro[e] = j >= i ? float(R[i * n + j]) : 0.f;
    }
    __syncthreads();
  }
}

// jacobi_eigh on each symmetric matrix read from its lower triangle.
__global__ void __launch_bounds__(256) eigh_kernel(const float* a, int64_t batch, int64_t n, float* w, float* v,
                                                   double* ws, int64_t per_block, Fail fail) {
  __shared__ double sh[kShared];
  __shared__ long long part[kMaxWarps];
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int64_t t = blockIdx.x; t < batch; t += gridDim.x) {
    Arena ar{sh, kShared, ws + blockIdx.x * per_block};
    double* A = ar.take(n * n);
    double* V = ar.take(n * n);
    int* order = ar.take_int(n);
    const float* src = a + t * n * n;
    long long bad = 0;
    for (int64_t e = tid; e < n * n; e += nt) {
      const int64_t i = e / n, j = e - i * n;
      V[e] = i == j ? 1.0 : 0.0;
      if (j > i) continue;
      const float x = src[e];
      if (!isfinite(x)) bad = 1;
      A[i * n + j] = A[j * n + i] = x;
    }
    bad = -block_min(-bad, part);
    if (bad) {
      if (tid == 0) fail.report(t, 0);
      __syncthreads();
      continue;
    }
    for (int sweep = 0; sweep < 100; ++sweep) {
      bool rotated = false;
      for (int64_t p = 0; p < n; ++p)
        for (int64_t q = p + 1; q < n; ++q) {
          const double apq = A[p * n + q], app = A[p * n + p], aqq = A[q * n + q];
          __syncthreads();  // every thread has read them before any writes
          if (apq == 0.0) continue;
          if (fabs(apq) <= 1e-18 * (fabs(app) + fabs(aqq))) {  // negligible: drop it
            // (no thread reads either entry again before a barrier: the next pair is another one,
            // and with a single pair, n = 2, the sweep has rotated nothing and ends the loop)
            if (tid == 0) A[p * n + q] = A[q * n + p] = 0.0;
            continue;
          }
          rotated = true;
          const double th = jacobi_t((aqq - app) / (2.0 * apq));
          const double c = 1.0 / sqrt(th * th + 1.0), s = th * c;
          for (int64_t k = tid; k < n; k += nt) {  // columns p, q (and V's)
            const double akp = A[k * n + p], akq = A[k * n + q];
            A[k * n + p] = c * akp - s * akq;
            A[k * n + q] = s * akp + c * akq;
            const double vkp = V[k * n + p], vkq = V[k * n + q];
            V[k * n + p] = c * vkp - s * vkq;
            V[k * n + q] = s * vkp + c * vkq;
          }
          __syncthreads();
          for (int64_t k = tid; k < n; k += nt) {  // rows p, q; A[p, q] = A[q, p] = 0 (the CPU's end state)
            const double apk = A[p * n + k], aqk = A[q * n + k];
            A[p * n + k] = k == q ? 0.0 : c * apk - s * aqk;
            A[q * n + k] = k == p ? 0.0 : s * apk + c * aqk;
          }
          __syncthreads();
        }
      if (!rotated) break;
    }
    __syncthreads();
    // stable sort by eigenvalue, ascending: the rank of each diagonal entry
    for (int64_t i = tid; i < n; i += nt) {
      const double di = A[i * n + i];
      int64_t rank = 0;
      for (int64_t j = 0; j < n; ++j) {
        const double dj = A[j * n + j];
        if (dj < di || (j < i && !(di < dj))) ++rank;
      }
      order[rank] = int(i);
    }
    __syncthreads();
    float* wo = w + t * n;
    float* vo = v + t * n * n;
    for (int64_t j = tid; j < n; j += nt) wo[j] = float(A[int64_t(order[j]) * (n + 1)]);
    for (int64_t e = tid; e < n * n; e += nt) {
      const int64_t i = e / n, j = e - i * n;
      vo[e] = float(V[i * n + order[j]]);
    }
    __syncthreads();
  }
}

// The workspace doubles of one svd matrix (svd_kernel's arrays, in its order).
__host__ __device__ __forceinline__ int64_t svd_slots(int64_t p, int64_t q, int64_t pc, bool vectors) {
  int64_t s = p * q + q * q + q + int_slots(q);
  if (vectors) s += p * pc + p * q + p * p + (q > 0 ? q : 1) + (p > 0 ? p : 1);
  return s;
}

// jacobi_svd on the tall one of A and A^T (p x q, p >= q), then svd's outputs.
__global__ void __launch_bounds__(256) svd_kernel(const float* a, int64_t batch, int64_t m, int64_t n, int64_t uc,
                                                  int64_t vr, float* u, float* s, float* vt, double* ws,
                                                  int64_t per_block, Fail fail) {
  __shared__ double sh[kShared];
  __shared__ double dots[6];
  __shared__ long long ipart[kMaxWarps];
  __shared__ double sc[8];
  const int tid = threadIdx.x, nt = blockDim.x;
  const bool tall = m >= n;
  const int64_t p = tall ? m : n, q = tall ? n : m;
  const int64_t pc = tall ? uc : vr;  // columns of the tall factor
  for (int64_t t = blockIdx.x; t < batch; t += gridDim.x) {
    Arena ar{sh, kShared, ws + blockIdx.x * per_block};
    double* G = ar.take(p * q);   // q columns of length p
    double* Vc = ar.take(q * q);  // the rotations, column-major
    double* norms = ar.take(q);
    int* order = ar.take_int(q);
    const float* A = a + t * m * n;
    long long bad = 0;
    for (int64_t e = tid; e < m * n; e += nt) {
      const int64_t i = e / n, j = e - i * n;
      const float x = A[e];
      if (!isfinite(x)) bad = 1;
      if (tall) G[j * p + i] = x;  // columns of A
      else G[i * p + j] = x;       // columns of A^T = rows of A
    }
    for (int64_t e = tid; e < q * q; e += nt) Vc[e] = e / q == e - (e / q) * q ? 1.0 : 0.0;
    bad = -block_min(-bad, ipart);
    if (bad) {
      if (tid == 0) fail.report(t, 0);
      __syncthreads();
      continue;
    }
    int64_t pair = 0;
    for (int sweep = 0; sweep < 80; ++sweep) {
      bool rotated = false;
      for (int64_t ca = 0; ca < q; ++ca)
        for (int64_t cb = ca + 1; cb < q; ++cb, ++pair) {
          double* ga = G + ca * p;
          double* gb = G + cb * p;
          // the dot products in the CPU's order, by one thread (two pairs' worth of slots: a pair
          // without a rotation has no barrier after its reads)
          double* d3 = dots + 3 * (pair & 1);
          if (tid == 0) {
            double alpha = 0, beta = 0, gamma = 0;
            for (int64_t k = 0; k < p; ++k) {
              alpha += ga[k] * ga[k];
              beta += gb[k] * gb[k];
              gamma += ga[k] * gb[k];
            }
            d3[0] = alpha;
            d3[1] = beta;
            d3[2] = gamma;
          }
          __syncthreads();
          const double alpha = d3[0], beta = d3[1], gamma = d3[2];
          if (gamma == 0.0 || fabs(gamma) <= 1e-15 * sqrt(alpha * beta)) continue;
          rotated = true;
          const double th = jacobi_t((beta - alpha) / (2.0 * gamma));
          const double c = 1.0 / sqrt(th * th + 1.0), sn = th * c;
          for (int64_t k = tid; k < p; k += nt) {
            const double x = ga[k], y = gb[k];
            ga[k] = c * x - sn * y;
            gb[k] = sn * x + c * y;
          }
          double* va = Vc + ca * q;
          double* vb = Vc + cb * q;
          for (int64_t k = tid; k < q; k += nt) {
            const double x = va[k], y = vb[k];
            va[k] = c * x - sn * y;
            vb[k] = sn * x + c * y;
          }
          __syncthreads();
        }
      if (!rotated) break;
    }
    __syncthreads();
    for (int64_t j = tid; j < q; j += nt) {
      double ss = 0;
      for (int64_t k = 0; k < p; ++k) ss += G[j * p + k] * G[j * p + k];
      norms[j] = sqrt(ss);
    }
    __syncthreads();
    // stable sort by norm, descending: the rank of each column
    for (int64_t i = tid; i < q; i += nt) {
      const double ni = norms[i];
      int64_t rank = 0;
      for (int64_t j = 0; j < q; ++j) {
        const double nj = norms[j];
        if (nj > ni || (j < i && !(ni > nj))) ++rank;
      }
      order[rank] = int(i);
    }
    __syncthreads();
    float* so = s + t * q;
    for (int64_t j = tid; j < q; j += nt) so[j] = float(norms[order[j]]);
    if (u) {
      double* P = ar.take(p * pc);
      double* K = ar.take(p * q);
      double* Q = ar.take(p * p);
      double* tau = ar.take(q > 0 ? q : 1);
      double* W = ar.take(p > 0 ? p : 1);
      // the columns with a non-zero norm come first (sorted descending): u_j = g_j / s_j
      int64_t known = 0;
      for (int64_t j = 0; j < q; ++j) known += norms[j] > 0.0;
      for (int64_t e = tid; e < p * known; e += nt) {
        const int64_t i = e / known, j = e - i * known;
        const int64_t o = order[j];
        P[i * pc + j] = G[o * p + i] / norms[o];
      }
      __syncthreads();
      if (known < pc) {  // orthonormal completion: the last columns of the complete Q of the known ones
        for (int64_t e = tid; e < p * known; e += nt) {
          const int64_t i = e / known, j = e - i * known;
          K[e] = P[i * pc + j];
        }
        __syncthreads();
        if (known > 0) {
          block_householder_qr(K, p, known, tau, W, sc);
          block_householder_q(K, p, known, tau, Q, p, W);
        } else {
          for (int64_t e = tid; e < p * p; e += nt) Q[e] = e / p == e - (e / p) * p ? 1.0 : 0.0;
          __syncthreads();
        }
        const int64_t rest = pc - known;
        for (int64_t e = tid; e < p * rest; e += nt) {
          const int64_t i = e / rest, j = known + (e - (e / rest) * rest);
          P[i * pc + j] = Q[i * p + j];
        }
        __syncthreads();
      }
      float* Uo = u + t * m * uc;
      float* Vo = vt + t * vr * n;
      if (tall) {  // A = P S V^T: u = P, vt = V^T
        for (int64_t e = tid; e < m * uc; e += nt) Uo[e] = float(P[e]);
        for (int64_t e = tid; e < n * n; e += nt) {
          const int64_t i = e / n, j = e - i * n;
          Vo[e] = float(Vc[int64_t(order[i]) * q + j]);
        }
      } else {  // A^T = P S V^T, so A = V S P^T: u = V, vt = P^T
        for (int64_t e = tid; e < m * m; e += nt) {
          const int64_t i = e / m, j = e - i * m;
          Uo[e] = float(Vc[int64_t(order[j]) * q + i]);
        }
        for (int64_t e = tid; e < vr * n; e += nt) {
          const int64_t i = e / n, j = e - i * n;
          Vo[e] = float(P[j * pc + i]);
        }
      }
    }
    __syncthreads();
  }
}

// A global workspace of `blocks` slices of per_block doubles.
struct Workspace {
  Buffer buf;
  Workspace(unsigned blocks, int64_t per_block, int device)
      : buf(int64_t(blocks) * (per_block > 0 ? per_block : 1), I64, device) {}
  double* ptr() const { return reinterpret_cast<double*>(buf.ptr); }
};

}  // namespace

// ---- launchers ---------------------------------------------------------------------------------------

void cholesky(const Buffer& a, int64_t batch, int64_t n, bool upper, Buffer& out) {
  const char* op = "cholesky";
  la::check_cholesky(a, batch, n, out);
  Context& c = op_device(op, {&a, &out});
  if (batch == 0) return;
  const int64_t per = n * n;
  const unsigned blocks = blocks_for(batch, per);
  Workspace ws(blocks, per, a.device);
  FailFlag ff(c, a.device, batch);
  cholesky_kernel<<<blocks, threads_for(n), 0, c.stream>>>(a.data<float>(), batch, n, upper, out.data<float>(),
                                                           ws.ptr(), per, ff.dev());
  launched(c, op);
  long long d = 0;
  const int64_t t = ff.read(c, &d);
  if (t >= 0) raise_matrix_error(op, t, la::not_positive_definite(d >> 1, d & 1));
}

void solve_triangular(const Buffer& a, const Buffer& b, int64_t batch, int64_t n, int64_t k, bool lower,
                      bool transpose, Buffer& out) {
  const char* op = "solve_triangular";
  la::check_system(op, a, b, batch, n, k, out);
  Context& c = op_device(op, {&a, &b, &out});
  if (batch == 0) return;
  const int64_t per = n * k;
  const unsigned blocks = blocks_for(batch, per);
  Workspace ws(blocks, per, a.device);
  FailFlag ff(c, a.device, batch);
  solve_triangular_kernel<<<blocks, threads_for(n * (k > 1 ? k : 1)), 0, c.stream>>>(
      a.data<float>(), b.data<float>(), batch, n, k, lower, transpose, out.data<float>(), ws.ptr(), per, ff.dev());
  launched(c, op);
  long long d = 0;
  const int64_t t = ff.read(c, &d);
  if (t >= 0) raise_matrix_error(op, t, la::zero_diagonal(d));
}

void lu_factor(const Buffer& a, int64_t batch, int64_t m, int64_t n, Buffer& lu, Buffer& piv) {
  const char* op = "lu_factor";
  la::check_lu_factor(a, batch, m, n, lu, piv);
  Context& c = op_device(op, {&a, &lu, &piv});
  if (batch == 0) return;
  const int64_t per = m * n;
  const unsigned blocks = blocks_for(batch, per);
  Workspace ws(blocks, per, a.device);
  lu_factor_kernel<<<blocks, threads_for(m * n), 0, c.stream>>>(a.data<float>(), batch, m, n, lu.data<float>(),
                                                                piv.data<int32_t>(), ws.ptr(), per);
  launched(c, op);
}

namespace {

void lu_solve_launch(const char* op, const Buffer& a, const Buffer* b, int64_t batch, int64_t n, int64_t k,
                     bool transpose, Buffer& out) {
  Context& c = op_device(op, {&a, b, &out});
  if (batch == 0) return;
  const int64_t per = n * n + n * k + int_slots(n);
  const unsigned blocks = blocks_for(batch, per);
  Workspace ws(blocks, per, a.device);
  FailFlag ff(c, a.device, batch);
  lu_solve_kernel<<<blocks, threads_for(n * (n > k ? n : k)), 0, c.stream>>>(
      a.data<float>(), b ? b->data<float>() : nullptr, batch, n, k, transpose, b == nullptr, out.data<float>(),
      ws.ptr(), per, ff.dev());
  launched(c, op);
  long long d = 0;
  const int64_t t = ff.read(c, &d);
  if (t >= 0) raise_matrix_error(op, t, la::singular_pivot(d));
}

void det_launch(const char* op, const Buffer& a, int64_t batch, int64_t n, bool logdet, Buffer& out, Buffer* out2) {
  Context& c = op_device(op, {&a, &out, out2});
  if (batch == 0) return;
  const int64_t per = n * n;
  const unsigned blocks = blocks_for(batch, per);
  Workspace ws(blocks, per, a.device);
  det_kernel<<<blocks, threads_for(n * n), 0, c.stream>>>(a.data<float>(), batch, n, logdet, out.data<float>(),
                                                          out2 ? out2->data<float>() : nullptr, ws.ptr(), per);
  launched(c, op);
}

}  // namespace

void solve(const Buffer& a, const Buffer& b, int64_t batch, int64_t n, int64_t k, bool transpose, Buffer& out) {
  la::check_system("solve", a, b, batch, n, k, out);
  lu_solve_launch("solve", a, &b, batch, n, k, transpose, out);
}

void inv(const Buffer& a, int64_t batch, int64_t n, Buffer& out) {
  la::check_inv(a, batch, n, out);
  lu_solve_launch("inv", a, nullptr, batch, n, n, false, out);
}

void det(const Buffer& a, int64_t batch, int64_t n, Buffer& out) {
  la::check_det(a, batch, n, out);
  det_launch("det", a, batch, n, false, out, nullptr);
}

void slogdet(const Buffer& a, int64_t batch, int64_t n, Buffer& sign, Buffer& logabsdet) {
  la::check_slogdet(a, batch, n, sign, logabsdet);
  det_launch("slogdet", a, batch, n, true, sign, &logabsdet);
}

void qr(const Buffer& a, int64_t batch, int64_t m, int64_t n, bool complete, Buffer& q, Buffer& r) {
  const char* op = "qr";
  la::check_qr(a, batch, m, n, complete, q, r);
  Context& c = op_device(op, {&a, &q, &r});
  if (batch == 0) return;
  const int64_t k = std::min(m, n);
  const int64_t qc = complete ? m : k, rr = complete ? m : k;
  const int64_t per = m * n + std::max<int64_t>(k, 1) + std::max<int64_t>(std::max(n, qc), 1) + m * qc;
  const unsigned blocks = blocks_for(batch, per);
  Workspace ws(blocks, per, a.device);
  qr_kernel<<<blocks, threads_for(m * std::max(n, qc)), 0, c.stream>>>(a.data<float>(), batch, m, n, qc, rr,
                                                                       q.data<float>(), r.data<float>(), ws.ptr(), per);
  launched(c, op);
}

void eigh(const Buffer& a, int64_t batch, int64_t n, Buffer& w, Buffer& v) {
  const char* op = "eigh";
  la::check_eigh(a, batch, n, w, v);
  Context& c = op_device(op, {&a, &w, &v});
  if (batch == 0) return;
  const int64_t per = 2 * n * n + int_slots(n);
  const unsigned blocks = blocks_for(batch, per);
  Workspace ws(blocks, per, a.device);
  FailFlag ff(c, a.device, batch);
  eigh_kernel<<<blocks, threads_for((n + 1) / 2), 0, c.stream>>>(a.data<float>(), batch, n, w.data<float>(),
                                                                 v.data<float>(), ws.ptr(), per, ff.dev());
  launched(c, op);
  long long d = 0;
  const int64_t t = ff.read(c, &d);
  if (t >= 0) raise_matrix_error(op, t, la::kEighNotFinite);
}

void svd(const Buffer& a, int64_t batch, int64_t m, int64_t n, bool full_matrices, Buffer* u, Buffer& s, Buffer* vt) {
  const char* op = "svd";
  la::check_svd(a, batch, m, n, full_matrices, u, s, vt);
  Context& c = op_device(op, {&a, u, &s, vt});
  if (batch == 0) return;
  const int64_t k = std::min(m, n);
  const int64_t uc = full_matrices ? m : k, vr = full_matrices ? n : k;
  const bool tall = m >= n;
  const int64_t p = tall ? m : n, q = tall ? n : m, pc = tall ? uc : vr;
  const int64_t per = svd_slots(p, q, pc, u != nullptr);
  const unsigned blocks = blocks_for(batch, per);
  Workspace ws(blocks, per, a.device);
  FailFlag ff(c, a.device, batch);
  svd_kernel<<<blocks, threads_for((p + 1) / 2), 0, c.stream>>>(a.data<float>(), batch, m, n, uc, vr,
                                                      u ? u->data<float>() : nullptr, s.data<float>(),
                                                      vt ? vt->data<float>() : nullptr, ws.ptr(), per, ff.dev());
  launched(c, op);
  long long d = 0;
  const int64_t t = ff.read(c, &d);
  if (t >= 0) raise_matrix_error(op, t, la::kSvdNotFinite);
}

}  // namespace gpu
}  // namespace lamina
