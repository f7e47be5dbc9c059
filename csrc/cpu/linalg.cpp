// matmul: batched, with numpy broadcasting of the batch dimensions, through sgemm.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>

#include "common.h"
#include "device.h"
#include "gemm.h"
#include "gemm_bf16.h"
#include "gemm_kernels.h"

namespace py = pybind11;

namespace lamina {

// a: (..., M, K) or (..., K, M) when trans_a; b: (..., K, N) or (..., N, K) when trans_b.
// out: (broadcast(batch_a, batch_b)..., M, N). Writes out = a @ b (+ out when accumulate).
static void matmul_bf16(const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os,
                        bool trans_a, bool trans_b, bool accumulate, const Buffer* bias);

static void matmul(const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os,
                   bool trans_a, bool trans_b, bool accumulate, const Buffer* bias) {
  if (a.dtype == BF16) return matmul_bf16(a, as, b, bs, o, os, trans_a, trans_b, accumulate, bias);
  const MatmulPlan p = plan_matmul(a, as, b, bs, o, os, trans_a, trans_b, bias);
  const int64_t M = p.M, N = p.N, K = p.K, batches = p.batches;
  const size_t nb = p.batch.size();
  const Shape& ob = p.batch;
  const std::vector<int64_t>& sa = p.sa;
  const std::vector<int64_t>& sb = p.sb;
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

// bfloat16 operands (mixed precision): products accumulated in float32 (bf16gemm), the bias added
// in float32, and the sum rounded once into a bfloat16 output (in the GEMM's micro-kernel), or
// written to a float32 one.
static void matmul_bf16(const Buffer& a, const Shape& as, const Buffer& b, const Shape& bs, Buffer& o, const Shape& os,
                        bool trans_a, bool trans_b, bool accumulate, const Buffer* bias) {
  const MatmulPlan p = plan_matmul(a, as, b, bs, o, os, trans_a, trans_b, bias, BF16);
  const int64_t M = p.M, N = p.N, batches = p.batches;
  const size_t nb = p.batch.size();
  const uint16_t* A = a.data<uint16_t>();
  const uint16_t* B = b.data<uint16_t>();
  const bool f32_out = o.dtype == F32, bias_bf16 = bias && bias->dtype == BF16;
  const int64_t lda = as.back(), ldb = bs.back();
  for (int64_t t = 0; t < batches; ++t) {
    int64_t rem = t, oa = 0, obb = 0;
    for (int64_t k = int64_t(nb) - 1; k >= 0; --k) {
      int64_t idx = rem % p.batch[k]; rem /= p.batch[k];
      oa += idx * p.sa[k]; obb += idx * p.sb[k];
    }
    if (f32_out) {
      bf16gemm(trans_a, trans_b, M, N, p.K, A + oa, lda, B + obb, ldb, accumulate, o.data<float>() + t * M * N, N);
    } else {
      BF16Output out;
      out.d = o.data<uint16_t>() + t * M * N;
      out.ldd = N;
      out.bias_f = bias && !bias_bf16 ? bias->data<float>() : nullptr;
      out.bias_b = bias_bf16 ? bias->data<uint16_t>() : nullptr;
      bf16gemm_out(trans_a, trans_b, M, N, p.K, A + oa, lda, B + obb, ldb, accumulate, nullptr, N, &out);
    }
  }
  if (bias && f32_out) {  // the bias on a float32 output
    float* C = o.data<float>();
    const int64_t rows = batches * M;
    parallel_for(rows, rows * N > kParallelGrain, [&](int64_t r) {
      float* c = C + r * N;
      for (int64_t j = 0; j < N; ++j) c[j] += bias_bf16 ? bf16_to_f32(bias->data<uint16_t>()[j]) : bias->data<float>()[j];
    });
  }
}

// ---- GEMM bindings: 2-D entry point for tests and benchmarks, and the kernel choice ----------

// c = alpha * op(a) @ op(b) + beta * c on row-major matrices; lda/ldb/ldc are row strides
// (-1: packed). beta == 0 never reads c.
static void gemm2d(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const Buffer& a, const Buffer& b,
                   float beta, Buffer& c, int64_t lda, int64_t ldb, int64_t ldc) {
  check_gemm(ta, tb, M, N, K, a, b, c, &lda, &ldb, &ldc);
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
  m.def("bf16_gemm_native", &bf16_gemm_native,
        "Whether bfloat16 matmuls run on bfloat16 instructions, AMX or AVX512-BF16 (else widened to float32)");
  m.def("bf16_gemm_path", &bf16_gemm_path, "The bfloat16 GEMM's path now: 'amx', 'avx512bf16' or 'widened'");
  m.def("_set_bf16_gemm", &set_bf16_gemm, py::arg("mode"),
        "Tests and benchmarks: -1 the best this CPU has (AMX, else AVX512-BF16), 0 always widen to float32, "
        "1 AVX512-BF16 if present (not AMX), 2 AMX if present");
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
