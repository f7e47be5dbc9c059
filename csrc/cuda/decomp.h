// Dense decompositions and solvers on the GPU (decomp.cu): the CPU module's linalg_decomp.cpp
// kernels, with the same names, arguments, checks (csrc/linalg_checks.h) and algorithms.
#pragma once
#include "gpu.h"

namespace lamina {
namespace gpu {

void cholesky(const Buffer& a, int64_t batch, int64_t n, bool upper, Buffer& out);
void solve_triangular(const Buffer& a, const Buffer& b, int64_t batch, int64_t n, int64_t k, bool lower,
                      bool transpose, Buffer& out);
void lu_factor(const Buffer& a, int64_t batch, int64_t m, int64_t n, Buffer& lu, Buffer& piv);
void solve(const Buffer& a, const Buffer& b, int64_t batch, int64_t n, int64_t k, bool transpose, Buffer& out);
void inv(const Buffer& a, int64_t batch, int64_t n, Buffer& out);
void det(const Buffer& a, int64_t batch, int64_t n, Buffer& out);
void slogdet(const Buffer& a, int64_t batch, int64_t n, Buffer& sign, Buffer& logabsdet);
void qr(const Buffer& a, int64_t batch, int64_t m, int64_t n, bool complete, Buffer& q, Buffer& r);
void eigh(const Buffer& a, int64_t batch, int64_t n, Buffer& w, Buffer& v);
void svd(const Buffer& a, int64_t batch, int64_t m, int64_t n, bool full_matrices, Buffer* u, Buffer& s, Buffer* vt);

}  // namespace gpu
}  // namespace lamina
