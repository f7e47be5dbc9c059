// matmul: batched, with numpy broadcasting of the batch dimensions, through sgemm.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>

#include "common.h"
#include "device.h"
#include "gemm.h"
#include "gemm_kernels.h"

namespace py = pybind11;

namespace lamina {

// a: (..., M, K) or (..., K, M) when trans_a; b: (..., K, N) or (..., N, K) when trans_b.
// out: (broadcast(batch_a, batch_b)..., M, N). Writes out = a @ b (+ out when accumulate).
static void matmul(const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os,
                   bool trans_a, bool trans_b, bool accumulate, const Buffer* bias) {
  check_buffer("matmul", "a", a, as, F32);
  check_buffer("matmul", "b", b, bs, F32);
  check_buffer("matmul", "out", o, os, F32);
  LAMINA_CHECK(as.size() >= 2 && bs.size() >= 2 && os.size() >= 2, "matmul: operands need at least 2 dimensions");
  const int64_t M = trans_a ? as[as.size() - 1] : as[as.size() - 2];
  const int64_t K = trans_a ? as[as.size() - 2] : as[as.size() - 1];
  const int64_t Kb = trans_b ? bs[bs.size() - 1] : bs[bs.size() - 2];
  const int64_t N = trans_b ? bs[bs.size() - 2] : bs[bs.size() - 1];
  LAMINA_CHECK(K == Kb, "matmul: inner dimensions differ: a " << shape_str(as) << ", b " << shape_str(bs));
  if (bias) {
    check_dtype("matmul", "bias", *bias, F32);
    LAMINA_CHECK(bias->numel == N, "matmul: the bias holds " << bias->numel << " elements; expected one per output column ("
                                   << N << ")");
  }
  LAMINA_CHECK(os[os.size() - 2] == M && os[os.size() - 1] == N, "matmul: output shape " << shape_str(os) << " is not (..., " << M << ", " << N << ")");
  const size_t nb = os.size() - 2;
  Shape ob(os.begin(), os.begin() + nb);
  auto batch_strides = [&](const Shape& s) {
    size_t sb = s.size() - 2;
    std::vector<int64_t> st(nb, 0);
    int64_t mat = s[s.size() - 1] * s[s.size() - 2], stride = mat;
    for (size_t k = 0; k < sb; ++k) {
      size_t ok = nb - 1 - k, sk = sb - 1 - k;
      LAMINA_CHECK(s[sk] == ob[ok] || s[sk] == 1, "matmul: batch dimensions of " << shape_str(as) << " and " << shape_str(bs) << " do not broadcast");
      st[ok] = s[sk] == 1 ? 0 : stride;
      stride *= s[sk];
    }
    LAMINA_CHECK(sb <= nb, "matmul: operand " << shape_str(s) << " has more batch dimensions than the output");
    return st;
  };
  auto sa = batch_strides(as), sb = batch_strides(bs);
  int64_t batches = numel_of(ob);
  const float* A = a.data<float>(); const float* B = b.data<float>(); float* C = o.data<float>();
  const int64_t lda = as.back(), ldb = bs.back();
  for (int64_t t = 0; t < batches; ++t) {
    int64_t rem = t, oa = 0, obb = 0;
    for (int64_t k = int64_t(nb) - 1; k >= 0; --k) {
      int64_t idx = rem % ob[k]; rem /= ob[k];
      oa += idx * sa[k]; obb += idx * sb[k];
    }
    if (K == 0) {
      if (!accumulate) std::fill(C + t * M * N, C + (t + 1) * M * N, 0.f);
      continue;
    }
    sgemm(trans_a, trans_b, M, N, K, 1.f, A + oa, lda, B + obb, ldb, accumulate ? 1.f : 0.f, C + t * M * N, N);
  }
  if (bias) {  // a Dense layer's bias, added to every row of the product in the same call
    const float* bv = bias->data<float>();
    const int64_t rows = batches * M;
    parallel_for(rows, rows * N > kParallelGrain, [&](int64_t r) {
      float* c = C + r * N;
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) c[j] += bv[j];
    });
  }
}

// ---- GEMM bindings: 2-D entry point for tests and benchmarks, and the kernel choice ----------

// Checks that a buffer holds a rows x cols matrix with row stride ld (ld < 0: packed, ld = cols)
// and returns the stride.
static int64_t gemm_operand(const char* arg, const char* ld_name, const Buffer& buf, int64_t rows, int64_t cols,
                            int64_t ld, const char* layout) {
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

// c = alpha * op(a) @ op(b) + beta * c on row-major matrices; lda/ldb/ldc are row strides
// (-1: packed). beta == 0 never reads c.
static void gemm2d(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const Buffer& a, const Buffer& b,
                   float beta, Buffer& c, int64_t lda, int64_t ldb, int64_t ldc) {
  check_dtype("gemm", "a", a, F32); check_dtype("gemm", "b", b, F32); check_dtype("gemm", "c", c, F32);
  LAMINA_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: expected M, N, K >= 0, received M=" << M << ", N=" << N << ", K=" << K);
  lda = ta ? gemm_operand("a", "lda", a, K, M, lda, "K x M (trans_a)") : gemm_operand("a", "lda", a, M, K, lda, "M x K");
  ldb = tb ? gemm_operand("b", "ldb", b, N, K, ldb, "N x K (trans_b)") : gemm_operand("b", "ldb", b, K, N, ldb, "K x N");
  ldc = gemm_operand("c", "ldc", c, M, N, ldc, "M x N");
  sgemm(ta, tb, M, N, K, alpha, a.data<float>(), lda, b.data<float>(), ldb, beta, c.data<float>(), ldc);
}

void bind_linalg(py::module_& m) {
  def_kernel(m, "matmul", &matmul, py::arg("a"), py::arg("a_shape"), py::arg("b"), py::arg("b_shape"), py::arg("out"),
        py::arg("out_shape"), py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("accumulate") = false,
        py::arg("bias") = py::none(),
        "out (+)= op(a) @ op(b) over broadcast batch dimensions, plus bias (one value per column) when given");
  def_kernel(m, "gemm", &gemm2d, py::arg("trans_a"), py::arg("trans_b"), py::arg("M"), py::arg("N"), py::arg("K"),
        py::arg("alpha"), py::arg("a"), py::arg("b"), py::arg("beta"), py::arg("c"), py::arg("lda") = -1,
        py::arg("ldb") = -1, py::arg("ldc") = -1,
        "c = alpha * op(a) @ op(b) + beta * c (float32, row-major, lda/ldb/ldc row strides, -1 = packed)");
  m.def("gemm_kernel", &gemm_kernel_name, "Name of the GEMM micro-kernel in use: 'avx512', 'avx2' or 'generic'");
  m.def("gemm_kernels", &gemm_available_kernels, "GEMM kernels this CPU can run, best first");
  m.def("set_gemm_kernel", &set_gemm_kernel, py::arg("name"),
        "Selects the GEMM kernel ('avx512', 'avx2', 'generic'); ValueError if this CPU cannot run it");
  m.def("_set_gemm_blocking", &set_gemm_blocking, py::arg("kc") = 0, py::arg("mc") = 0, py::arg("nc") = 0,
        py::arg("items_per_thread") = 1, "Tuning only: GEMM cache blocks (0 = the kernel's default), work items per thread");
  const std::string warning = gemm_kernel_from_env();
  if (!warning.empty() && PyErr_WarnEx(PyExc_RuntimeWarning, warning.c_str(), 1) < 0) throw py::error_already_set();
}

}  // namespace lamina
