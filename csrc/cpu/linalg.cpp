// matmul: batched, with numpy broadcasting of the batch dimensions, through sgemm.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common.h"
#include "gemm.h"

namespace py = pybind11;

namespace lamina {

// a: (..., M, K) or (..., K, M) when trans_a; b: (..., K, N) or (..., N, K) when trans_b.
// out: (broadcast(batch_a, batch_b)..., M, N). Writes out = a @ b (+ out when accumulate).
static void matmul(const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os,
                   bool trans_a, bool trans_b, bool accumulate) {
  check_buffer("matmul", "a", a, as, F32);
  check_buffer("matmul", "b", b, bs, F32);
  check_buffer("matmul", "out", o, os, F32);
  LAMINA_CHECK(as.size() >= 2 && bs.size() >= 2 && os.size() >= 2, "matmul: operands need at least 2 dimensions");
  const int64_t M = trans_a ? as[as.size() - 1] : as[as.size() - 2];
  const int64_t K = trans_a ? as[as.size() - 2] : as[as.size() - 1];
  const int64_t Kb = trans_b ? bs[bs.size() - 1] : bs[bs.size() - 2];
  const int64_t N = trans_b ? bs[bs.size() - 2] : bs[bs.size() - 1];
  LAMINA_CHECK(K == Kb, "matmul: inner dimensions differ: a " << shape_str(as) << ", b " << shape_str(bs));
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
}

// Plain 2-D GEMM entry point for tests and benchmarks.
static void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const Buffer& a, const Buffer& b, float beta, Buffer& c) {
  check_dtype("gemm", "a", a, F32); check_dtype("gemm", "b", b, F32); check_dtype("gemm", "c", c, F32);
  LAMINA_CHECK(a.numel == M * K && b.numel == K * N && c.numel == M * N, "gemm: buffer sizes do not match M, N, K");
  sgemm(ta, tb, M, N, K, alpha, a.data<float>(), ta ? M : K, b.data<float>(), tb ? K : N, beta, c.data<float>(), N);
}

void bind_linalg(py::module_& m) {
  m.def("matmul", &matmul, py::arg("a"), py::arg("a_shape"), py::arg("b"), py::arg("b_shape"), py::arg("out"),
        py::arg("out_shape"), py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("accumulate") = false);
  m.def("gemm", &gemm);
}

}  // namespace lamina
