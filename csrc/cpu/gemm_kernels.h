// Internal interface between the GEMM driver (gemm.cpp) and its instruction-set-specific parts
// (gemm_avx512.cpp, gemm_avx2.cpp). Not part of the kernel table seen by Python.
//
// Structure (BLIS / GotoBLAS): the driver loops over NC columns of C, KC steps of K and MC rows
// of C; for each (NC, KC) it packs op(B) into KC x NR slivers, for each MC block it packs op(A)
// into MR x KC slivers, and hands both to the kernel's macro-kernel, which walks the MR x NR
// register tiles of the block with its micro-kernel.
//
// Packed layouts (s = sliver index):
//   A: sliver s holds rows s*MR .. s*MR+MR-1 of the block as [k][MR]  (kc * MR floats)
//   B: sliver s holds cols s*NR .. s*NR+NR-1 of the block as [k][NR]  (kc * NR floats)
// Rows / columns past the edge of the block are zero. Packing absorbs the transposes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lamina {
namespace gemm {

// Packs op(A)[0:mc, 0:kc] where op(A)[i][p] = trans ? a[p*lda + i] : a[i*lda + p].
using PackAFn = void (*)(bool trans, const float* a, int64_t lda, int64_t mc, int64_t kc, int mr, float* dst);
// Packs op(B)[0:kc, 0:nc] where op(B)[p][j] = trans ? b[j*ldb + p] : b[p*ldb + j].
using PackBFn = void (*)(bool trans, const float* b, int64_t ldb, int64_t kc, int64_t nc, int nr, float* dst);
// Memory the next packing steps will read: up to two regions of `rows` rows of `lines` 64-byte
// cache lines, `ld` bytes apart. The macro-kernel prefetches them (into L2) a little at a time,
// between its micro-kernel calls, so that the packing finds them there instead of in DRAM.
struct Prefetch {
  struct Region {
    const char* base = nullptr;
    int64_t ld = 0, rows = 0, lines = 0;
  } region[2];
};

// Issues a Prefetch's cache lines in `parts` about equal shares, one share per step().
class PrefetchWalker {
 public:
  PrefetchWalker(const Prefetch* pf, int64_t parts) {
    if (!pf) return;
    int64_t total = 0;
    for (int r = 0; r < 2; ++r)
      if (pf->region[r].base && pf->region[r].rows > 0 && pf->region[r].lines > 0) {
        reg_[n_++] = pf->region[r];
        total += pf->region[r].rows * pf->region[r].lines;
      }
    per_ = parts > 0 ? (total + parts - 1) / parts : total;
  }
  void step() {
    for (int64_t n = per_; n > 0 && cur_ < n_; --n) {
      Prefetch::Region& r = reg_[cur_];
      __builtin_prefetch(r.base + 64 * line_, 0, 1);
      if (++line_ == r.lines) {
        line_ = 0;
        r.base += r.ld;
        if (--r.rows == 0) ++cur_;
      }
    }
  }

 private:
  Prefetch::Region reg_[2];
  int n_ = 0, cur_ = 0;
  int64_t per_ = 0, line_ = 0;
};

// C[0:mc, 0:nc] = alpha * Apacked @ Bpacked + beta * C  (beta == 0: C is not read); prefetches
// pf (may be null) along the way.
using MacroFn = void (*)(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c,
                         int64_t ldc, float alpha, float beta, const Prefetch* pf);

// Matrix-vector products (M == 1 or N == 1, where packing would cost more than the arithmetic):
//   axpy_rows: y[j] = sum_p x[p] * r[p*ld + j]   for j < n  (r: kk rows of n, contiguous in j)
//   dot_rows:  y[j] = sum_p r[j*ld + p] * x[p]   for j < n  (r: n rows of kk, contiguous in p)
using AxpyRowsFn = void (*)(int64_t kk, int64_t n, const float* x, const float* r, int64_t ld, float* y);
using DotRowsFn = void (*)(int64_t n, int64_t kk, const float* r, int64_t ld, const float* x, float* y);

struct Kernel {
  const char* name;
  int mr, nr;          // register tile
  int64_t kc, mc, nc;  // cache blocks (mc a multiple of mr, nc of nr)
  PackAFn pack_a;
  PackBFn pack_b;
  MacroFn macro;
  AxpyRowsFn axpy_rows;
  DotRowsFn dot_rows;
};

// Each returns nullptr when the kernel is not compiled for this target (e.g. non-x86 builds).
// They do not check the CPU: the driver does (cpu_supports_*).
const Kernel* avx512_kernel();
const Kernel* avx2_kernel();
const Kernel* generic_kernel();

// AVX2 packing routines (gemm_avx2.cpp), shared by the AVX2 and AVX-512 kernels.
void pack_a_avx2(bool trans, const float* a, int64_t lda, int64_t mc, int64_t kc, int mr, float* dst);
void pack_b_avx2(bool trans, const float* b, int64_t ldb, int64_t kc, int64_t nc, int nr, float* dst);

}  // namespace gemm

// Kernel choice, for the Python bindings (csrc/cpu/linalg.cpp).
std::string gemm_kernel_name();                      // the kernel sgemm uses now
std::vector<std::string> gemm_available_kernels();   // usable on this CPU, best first
void set_gemm_kernel(const std::string& name);       // ValueError if unknown or unsupported here
std::string gemm_kernel_from_env();                  // applies LAMINA_GEMM_KERNEL; returns a warning or ""
// Tuning: cache blocks (0 = the kernel's default) and work items per thread.
void set_gemm_blocking(int64_t kc, int64_t mc, int64_t nc, int items_per_thread);

}  // namespace lamina
