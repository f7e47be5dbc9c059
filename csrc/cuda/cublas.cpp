// cuBLAS, when the machine has it: loaded at run time (dlopen), so the module builds without its
// headers and imports without it (matmul then runs lamina's own tiled kernel, linalg.cu). The
// few entry points used are declared here from cuBLAS's stable C API. TF32 is off unless
// set_allow_tf32(True): float32 products are float32.
#include <dlfcn.h>

#include <mutex>
#include <string>

#include "gpu.h"

namespace lamina {
namespace gpu {

namespace {
using Handle = void*;
using CreateFn = int (*)(Handle*);
using SetStreamFn = int (*)(Handle, cudaStream_t);
using SetMathFn = int (*)(Handle, int);
using SgemmFn = int (*)(Handle, int, int, int, int, int, const float*, const float*, int, const float*, int,
                        const float*, float*, int);
using SgemmBatchedFn = int (*)(Handle, int, int, int, int, int, const float*, const float*, int, long long,
                               const float*, int, long long, const float*, float*, int, long long, int);
// cublasGemmStridedBatchedEx: mixed-precision products (bfloat16 operands, float32 compute).
using GemmExBatchedFn = int (*)(Handle, int, int, int, int, int, const void*, const void*, int, int, long long,
                                const void*, int, int, long long, const void*, void*, int, int, long long, int, int,
                                int);
constexpr int kOpN = 0, kOpT = 1, kDefaultMath = 0, kTf32Math = 3;
// cudaDataType / cublasComputeType_t / cublasGemmAlgo_t values of the stable C API
constexpr int kR32F = 0, kR16BF = 14, kCompute32F = 68, kGemmDefault = -1;

struct Lib {
  void* so = nullptr;
  std::string path, error;
  CreateFn create = nullptr;
  SetStreamFn set_stream = nullptr;
  SetMathFn set_math = nullptr;
  SgemmFn sgemm = nullptr;
  SgemmBatchedFn sgemm_batched = nullptr;
  GemmExBatchedFn gemm_ex_batched = nullptr;  // optional: without it bfloat16 products run on the host
  Handle handles[256] = {};  // per virtual device
  bool tf32 = false;
  bool disabled = false;
} g;
std::mutex g_mu;

bool bind(void* so) {
  g.create = reinterpret_cast<CreateFn>(dlsym(so, "cublasCreate_v2"));
  g.set_stream = reinterpret_cast<SetStreamFn>(dlsym(so, "cublasSetStream_v2"));
  g.set_math = reinterpret_cast<SetMathFn>(dlsym(so, "cublasSetMathMode"));
  g.sgemm = reinterpret_cast<SgemmFn>(dlsym(so, "cublasSgemm_v2"));
  g.sgemm_batched = reinterpret_cast<SgemmBatchedFn>(dlsym(so, "cublasSgemmStridedBatched"));
  g.gemm_ex_batched = reinterpret_cast<GemmExBatchedFn>(dlsym(so, "cublasGemmStridedBatchedEx"));
  return g.create && g.set_stream && g.set_math && g.sgemm && g.sgemm_batched;
}
}  // namespace

bool load_cublas(const std::string& path) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (g.so) return true;
  const char* names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so"};
  if (!path.empty()) {
    void* so = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!so) { g.error = dlerror(); return false; }
    if (!bind(so)) { g.error = path + " lacks the cuBLAS entry points"; dlclose(so); return false; }
    g.so = so;
    g.path = path;
    return true;
  }
  for (const char* n : names) {
    void* so = dlopen(n, RTLD_NOW | RTLD_LOCAL);
    if (!so) { g.error = dlerror(); continue; }
    if (bind(so)) { g.so = so; g.path = n; return true; }
    dlclose(so);
  }
  return false;
}

std::string cublas_status() {
  std::lock_guard<std::mutex> lk(g_mu);
  if (g.disabled) return "disabled (set_use_cublas(False))";
  return g.so ? "loaded: " + g.path : "not found (" + g.error + "): matmul runs lamina's own kernel";
}

void set_use_cublas(bool on) {
  std::lock_guard<std::mutex> lk(g_mu);
  g.disabled = !on;
}

void set_allow_tf32(bool on) {
  std::lock_guard<std::mutex> lk(g_mu);
  g.tf32 = on;
  for (Handle h : g.handles)
    if (h) g.set_math(h, on ? kTf32Math : kDefaultMath);
}

bool allow_tf32() { return g.tf32; }

// The handle of a device (made on first use, bound to its stream), or nullptr without cuBLAS.
static Handle handle_for(Context& c) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g.so || g.disabled || c.index >= 256) return nullptr;
  Handle& h = g.handles[c.index];
  if (!h) {
    if (g.create(&h) != 0) { h = nullptr; return nullptr; }
    g.set_stream(h, c.stream);
    g.set_math(h, g.tf32 ? kTf32Math : kDefaultMath);
  }
  return h;
}

// Row-major C (M x N, row stride ldc) = alpha op(A) op(B) + beta C, `batches` products whose
// operands are `sa`, `sb`, `sc` elements apart: cuBLAS is column-major, so it computes
// C^T = op(B)^T op(A)^T. Returns false (nothing queued) where cuBLAS is not there or the sizes
// do not fit its 32-bit arguments.
bool cublas_gemm(Context& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, int64_t sa, const float* B, int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc,
                 int64_t sc, int64_t batches) {
  const int64_t lim = 2147483647;
  if (M > lim || N > lim || K > lim || lda > lim || ldb > lim || ldc > lim || batches > lim) return false;
  if (K == 0) return false;  // lamina's kernel writes beta C (+ bias) without reading A and B
  Handle h = handle_for(c);
  if (!h) return false;
  int st;
  if (batches == 1)
    st = g.sgemm(h, tb ? kOpT : kOpN, ta ? kOpT : kOpN, int(N), int(M), int(K), &alpha, B, int(ldb), A, int(lda), &beta,
                 C, int(ldc));
  else
    st = g.sgemm_batched(h, tb ? kOpT : kOpN, ta ? kOpT : kOpN, int(N), int(M), int(K), &alpha, B, int(ldb), sb, A,
                         int(lda), sa, &beta, C, int(ldc), sc, int(batches));
  if (st != 0) throw CudaError("cuBLAS sgemm failed with status " + std::to_string(st));
  return true;
}

bool cublas_bf16_available(Context& c) { return handle_for(c) != nullptr && g.gemm_ex_batched != nullptr; }

bool cublas_gemm_bf16(Context& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
                      int64_t sa, const void* B, int64_t ldb, int64_t sb, float beta, void* C, bool c_bf16,
                      int64_t ldc, int64_t sc, int64_t batches) {
  const int64_t lim = 2147483647;
  if (M > lim || N > lim || K > lim || lda > lim || ldb > lim || ldc > lim || batches > lim || K == 0) return false;
  Handle h = handle_for(c);
  if (!h || !g.gemm_ex_batched) return false;
  const float alpha = 1.f;
  // row-major C = A B is column-major C^T = B^T A^T: cuBLAS gets (B, A) with N and M swapped
  const int st = g.gemm_ex_batched(h, tb ? kOpT : kOpN, ta ? kOpT : kOpN, int(N), int(M), int(K), &alpha, B, kR16BF,
                                   int(ldb), sb, A, kR16BF, int(lda), sa, &beta, C, c_bf16 ? kR16BF : kR32F, int(ldc),
                                   sc, int(batches), kCompute32F, kGemmDefault);
  if (st != 0) throw CudaError("cuBLAS GemmStridedBatchedEx (bfloat16) failed with status " + std::to_string(st));
  return true;
}

}  // namespace gpu
}  // namespace lamina
