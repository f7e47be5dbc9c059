// Single-precision GEMM: a packed, cache-blocked driver (BLIS / GotoBLAS loop structure) over
// register micro-kernels chosen at run time from the CPU's features:
//   avx512  12 x 32 tile (gemm_avx512.cpp)
//   avx2     6 x 16 tile (gemm_avx2.cpp, AVX2 + FMA)
//   generic  4 x 8 tile, portable C++ auto-vectorised at the baseline ISA (this file)
// LAMINA_GEMM_KERNEL=avx512|avx2|generic forces one (read when the module loads); Python can
// query and switch with _cpu.gemm_kernel() / _cpu.set_gemm_kernel(name).
//
// Threads: C is cut into an im x in grid of blocks of whole register tiles (one per thread by
// default), chosen to balance the tiles and keep the packing each block repeats small, and the
// blocks are handed out dynamically; a thread runs the serial blocked GEMM on its block with its
// own packing buffers (thread-local, 64-byte aligned, grown once and reused). Small products run
// on the calling thread. M == 1 or N == 1 is a matrix-vector product, streamed without packing.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"
#include "gemm.h"
#include "gemm_kernels.h"

namespace lamina {
namespace gemm {
namespace {

// ---- generic kernel (portable, auto-vectorised at the baseline ISA) -------------------------
constexpr int GMR = 4, GNR = 8;

void pack_a_generic(bool trans, const float* a, int64_t lda, int64_t mc, int64_t kc, int mr, float* dst) {
  for (int64_t i0 = 0; i0 < mc; i0 += mr, dst += kc * mr) {
    const int valid = int(std::min<int64_t>(mr, mc - i0));
    for (int64_t k = 0; k < kc; ++k)
      for (int r = 0; r < mr; ++r)
        dst[k * mr + r] = r < valid ? (trans ? a[k * lda + i0 + r] : a[(i0 + r) * lda + k]) : 0.f;
  }
}

void pack_b_generic(bool trans, const float* b, int64_t ldb, int64_t kc, int64_t nc, int nr, float* dst) {
  for (int64_t j0 = 0; j0 < nc; j0 += nr, dst += kc * nr) {
    const int valid = int(std::min<int64_t>(nr, nc - j0));
    for (int64_t k = 0; k < kc; ++k)
      for (int c = 0; c < nr; ++c)
        dst[k * nr + c] = c < valid ? (trans ? b[(j0 + c) * ldb + k] : b[k * ldb + j0 + c]) : 0.f;
  }
}

template <int M>
void ukernel_generic(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc,
                     float alpha, float beta, int n) {
  float acc[M][GNR];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 16
    for (int j = 0; j < GNR; ++j) acc[i][j] = 0.f;
  for (int64_t k = 0; k < kc; ++k, a += GMR, b += GNR) {
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const float ai = a[i];
#pragma GCC unroll 16
      for (int j = 0; j < GNR; ++j) acc[i][j] += ai * b[j];
    }
  }
  for (int i = 0; i < M; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.f) for (int j = 0; j < n; ++j) ci[j] = alpha * acc[i][j];
    else for (int j = 0; j < n; ++j) ci[j] = alpha * acc[i][j] + beta * ci[j];
  }
}

void macro_generic(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                   float alpha, float beta, const Prefetch*) {
  using Fn = void (*)(int64_t, const float*, const float*, float*, int64_t, float, float, int);
  static const Fn rows[GMR + 1] = {nullptr, &ukernel_generic<1>, &ukernel_generic<2>, &ukernel_generic<3>,
                                   &ukernel_generic<4>};
  for (int64_t jr = 0; jr < nc; jr += GNR) {
    const int n = int(std::min<int64_t>(GNR, nc - jr));
    for (int64_t ir = 0; ir < mc; ir += GMR) {
      const int m = int(std::min<int64_t>(GMR, mc - ir));
      rows[m](kc, ap + ir * kc, bp + jr * kc, c + ir * ldc + jr, ldc, alpha, beta, n);
    }
  }
}

void axpy_rows_generic(int64_t kk, int64_t n, const float* x, const float* r, int64_t ld, float* y) {
  std::fill(y, y + n, 0.f);
  for (int64_t p = 0; p < kk; ++p) {
    const float xp = x[p];
    const float* rp = r + p * ld;
    for (int64_t j = 0; j < n; ++j) y[j] += xp * rp[j];
  }
}

void dot_rows_generic(int64_t n, int64_t kk, const float* r, int64_t ld, const float* x, float* y) {
  for (int64_t j = 0; j < n; ++j) {
    const float* rj = r + j * ld;
    float acc[8] = {};
    int64_t p = 0;
    for (; p + 8 <= kk; p += 8)
      for (int l = 0; l < 8; ++l) acc[l] += rj[p + l] * x[p + l];
    for (; p < kk; ++p) acc[0] += rj[p] * x[p];
    y[j] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  }
}

// ---- kernel choice ----------------------------------------------------------------------------
bool cpu_supports(const std::string& name) {
  if (name == "generic") return true;
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (name == "avx2") return avx2;
  if (name == "avx512") return avx2 && __builtin_cpu_supports("avx512f");
#endif
  return false;
}

const Kernel* compiled(const std::string& name) {
  if (name == "avx512") return avx512_kernel();
  if (name == "avx2") return avx2_kernel();
  if (name == "generic") return generic_kernel();
  return nullptr;
}

const char* const kNames[] = {"avx512", "avx2", "generic"};  // best first

const Kernel* usable(const std::string& name) {
  const Kernel* k = compiled(name);
  return k && cpu_supports(name) ? k : nullptr;
}

const Kernel* best() {
  for (const char* n : kNames)
    if (const Kernel* k = usable(n)) return k;
  return generic_kernel();
}

std::atomic<const Kernel*> g_active{nullptr};

const Kernel& active() {
  const Kernel* k = g_active.load(std::memory_order_acquire);
  if (!k) {
    k = best();
    g_active.store(k, std::memory_order_release);
  }
  return *k;
}

// Cache-block overrides for tuning (0 = the kernel's default).
std::atomic<int64_t> g_kc{0}, g_mc{0}, g_nc{0};

// The depth of the packed blocks. The AVX-512 kernel's 256 suits a 256-512 KB L2; with an L2 of
// 1 MB or more (Zen 4/5, recent Xeons) a 192 x 768 block of A (576 KB) still fits it, and the
// longer blocks load and store each C tile a third as often. Measured on Zen 5 (1 MB L2), kc =
// 768 against 256, median GFLOP/s, 1 / 2 threads: 2048^3 204 -> 233 / 425 -> 466, 1024^3 235 ->
// 242 / 474 -> 480, 128 x 3136 x 1024 219 -> 216 / 433 -> 443, 64 x 784 x 1024 210 -> 215 /
// 396 -> 421.
int64_t default_kc(const Kernel& kr) {
  static const long l2 = [] {
    long v = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
    v = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return v;
  }();
  if (kr.mr == 12 && kr.nr == 32 && l2 >= (1L << 20)) return 768;  // the AVX-512 tile
  return kr.kc;
}

std::string available_list() {
  std::string s;
  for (const char* n : kNames)
    if (usable(n)) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

// ---- per-thread packing buffers ---------------------------------------------------------------
struct PackBuffer {
  float* p = nullptr;
  size_t cap = 0;  // floats
  ~PackBuffer() { std::free(p); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      p = nullptr;
      cap = 0;
      size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p) throw std::bad_alloc();
      cap = bytes / sizeof(float);
    }
    return p;
  }
};
thread_local PackBuffer t_pack_a, t_pack_b, t_trans;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// rows x cols floats at p, rows ld floats apart, as a prefetch region.
Prefetch::Region region(const float* p, int64_t ld, int64_t rows, int64_t cols) {
  Prefetch::Region r;
  r.base = reinterpret_cast<const char*>(p);
  r.ld = ld * int64_t(sizeof(float));
  r.rows = rows;
  r.lines = (cols * int64_t(sizeof(float)) + 63) / 64 + 1;  // +1: rows need not start on a line
  return r;
}

// Operands from this size up are prefetched ahead of their packing (see gemm_serial).
constexpr double kPrefetchBytes = 8.0 * (1 << 20);
// ... and op(B) from this size up when at most two MC blocks of rows read it (measured on Zen 5,
// one core, 64 x 1024 x 1024 with the weight evicted by other weights: 0.93 -> 0.77 ms; with the
// weight in L3, within the noise).
constexpr double kPrefetchFewRowsBytes = 1.0 * (1 << 20);

// One thread: C[0:M, 0:N] = alpha op(A) op(B) + beta C, with M, N, K > 0. big_a / big_b: the
// whole operand (of which this may be a part) is large enough to prefetch.
void gemm_serial(const Kernel& kr, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, bool big_a, bool big_b) {
  int64_t KC = g_kc.load(std::memory_order_relaxed), MC = g_mc.load(std::memory_order_relaxed),
          NC = g_nc.load(std::memory_order_relaxed);
  // Large products on the AVX-512 tile with a 1 MB L2: blocks 1024 deep and 96 rows (the A
  // block stays 384 KB), half as many passes over each C tile. Measured on Zen 5, one thread,
  // alternating in one process: 2048^3 236 -> 243 GFLOP/s, 1024^3 242 -> 245; two threads
  // within 1%. Narrower products keep the defaults (128 x 3136 x 1024 lost 3% with them).
  const bool large = default_kc(kr) == 768 && M >= 512 && N >= 512 && K >= 1024;
  if (KC <= 0) {  // the default depth, split into equal blocks (no short last block: K = 800 -> 2 x 400)
    const int64_t base = large ? 1024 : default_kc(kr);
    const int64_t blocks = (K + base - 1) / base;
    KC = round_up((K + blocks - 1) / blocks, 4);
  }
  if (MC <= 0 && large) MC = 96;
  MC = round_up(MC > 0 ? MC : kr.mc, kr.mr);
  NC = round_up(NC > 0 ? NC : kr.nc, kr.nr);
  const int64_t kcb = std::min(KC, K), mcb = std::min(MC, round_up(M, kr.mr)), ncb = std::min(NC, round_up(N, kr.nr));
  float* ap = t_pack_a.get(size_t(mcb * kcb));
  float* bp = t_pack_b.get(size_t(kcb * ncb));
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      kr.pack_b(tb, tb ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, kc, nc, kr.nr, bp);
      const float beta_k = pc == 0 ? beta : 1.f;
      // Prefetch what the next packing steps read -- the next MC block of op(A) during each
      // macro-kernel, and in the last one also the next KC x NC block of op(B) -- when that
      // operand is big enough to come from DRAM (for operands that stay in L3, measured here,
      // prefetching only evicts the packed blocks from L2 and costs a few percent).
      const bool last_pc = pc + KC >= K;
      const int64_t npc = last_pc ? 0 : pc + KC, njc = last_pc ? jc + NC : jc;
      const bool more_b = njc < N;
      for (int64_t ic = 0; ic < M; ic += MC) {
        const int64_t mc = std::min(MC, M - ic);
        kr.pack_a(ta, ta ? A + pc * lda + ic : A + ic * lda + pc, lda, mc, kc, kr.mr, ap);
        Prefetch pf;
        const bool last_ic = ic + MC >= M;
        if (last_ic && more_b && big_b) {
          const int64_t nkc = std::min(KC, K - npc), nnc = std::min(NC, N - njc);
          pf.region[0] = region(tb ? B + njc * ldb + npc : B + npc * ldb + njc, ldb, tb ? nnc : nkc, tb ? nkc : nnc);
        }
        if (big_a && (!last_ic || more_b)) {  // the A block packed next: (ic + MC, pc), or (0, npc)
          const int64_t nic = last_ic ? 0 : ic + MC, pk = last_ic ? npc : pc;
          const int64_t nmc = std::min(MC, M - nic), nkc = std::min(KC, K - pk);
          pf.region[1] = region(ta ? A + pk * lda + nic : A + nic * lda + pk, lda, ta ? nkc : nmc, ta ? nmc : nkc);
        }
        kr.macro(mc, nc, kc, ap, bp, C + ic * ldc + jc, ldc, alpha, beta_k, &pf);
      }
    }
  }
}

// Below this many multiply-adds the product runs on one thread.
constexpr double kMinParallelFma = double(1 << 18);
// Work items handed out per thread (more: better balance when a core is shared with other
// processes, at the price of packing the operands again for each item).
std::atomic<int> g_items_per_thread{1};
// Items are not made smaller than this many multiply-adds (about 10 us on one core).
constexpr double kMinItemFma = double(1 << 21);

struct Grid { int im = 1, in = 1; };

// Cuts C into an im x in grid of work items: about `items` of them, of whole register tiles,
// minimising the largest item's multiply-adds plus the packing it does for its rows of A and
// columns of B (each item packs its own).
Grid choose_grid(int items, int64_t M, int64_t N, const Kernel& kr) {
  Grid best;
  double best_cost = -1;
  const int64_t tiles_m = (M + kr.mr - 1) / kr.mr, tiles_n = (N + kr.nr - 1) / kr.nr;
  for (int im = 1; im <= items; ++im) {
    if (items % im) continue;
    const int in = items / im;
    const double rows = double((tiles_m + im - 1) / im) * kr.mr, cols = double((tiles_n + in - 1) / in) * kr.nr;
    const double cost = rows * cols + 16.0 * (rows + cols);
    if (best_cost < 0 || cost < best_cost) { best_cost = cost; best.im = im; best.in = in; }
  }
  return best;
}

// M == 1 or N == 1: a matrix-vector product, streamed without packing. The vector is gathered
// into a contiguous buffer when strided; the output (a row or a column of C) is split among
// threads when large.
void gemv(const Kernel& kr, int T, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const bool row = M == 1;  // C is one row: y = op(A)[0, :] @ op(B); else one column: y = op(A) @ op(B)[:, 0]
  const int64_t n = row ? N : M, ystride = row ? 1 : ldc;
  const float* r = row ? B : A;
  const int64_t ld = row ? ldb : lda;
  const bool axpy = row ? !tb : ta;  // rows of r run along y (axpy) or along K (dot)
  const float* xs = row ? A : B;
  const int64_t xstride = row ? (ta ? lda : 1) : (tb ? 1 : ldb);
  const float* x = xs;
  if (xstride != 1) {
    float* xb = t_pack_a.get(size_t(K));
    for (int64_t p = 0; p < K; ++p) xb[p] = xs[p * xstride];
    x = xb;
  }
  auto part = [&](int64_t j0, int64_t j1) {
    float* y = t_pack_b.get(size_t(j1 - j0));
    if (axpy) kr.axpy_rows(K, j1 - j0, x, r + j0, ld, y);
    else kr.dot_rows(j1 - j0, K, r + j0 * ld, ld, x, y);
    float* c = C + j0 * ystride;
    if (beta == 0.f) for (int64_t j = 0; j < j1 - j0; ++j) c[j * ystride] = alpha * y[j];
    else for (int64_t j = 0; j < j1 - j0; ++j) c[j * ystride] = alpha * y[j] + beta * c[j * ystride];
  };
  const int parts = int(std::min<int64_t>(T, (n + 63) / 64));
  if (parts <= 1) {
    part(0, n);
    return;
  }
  std::atomic<bool> failed{false};
#pragma omp parallel for num_threads(parts)
  for (int t = 0; t < parts; ++t) {
    const int64_t j0 = std::min(n, (n + 63) / 64 * t / parts * 64), j1 = std::min(n, (n + 63) / 64 * (t + 1) / parts * 64);
    try {
      if (j0 < j1) part(j0, j1);
    } catch (...) {
      failed = true;
    }
  }
  if (failed) throw std::bad_alloc();
}

}  // namespace

const Kernel* generic_kernel() {
  static const Kernel k{"generic", GMR, GNR, 256, 128, 2048, &pack_a_generic, &pack_b_generic, &macro_generic,
                               &axpy_rows_generic, &dot_rows_generic};
  return &k;
}

}  // namespace gemm

// ---- public entry points ------------------------------------------------------------------------
std::string gemm_kernel_name() { return gemm::active().name; }

std::vector<std::string> gemm_available_kernels() {
  std::vector<std::string> v;
  for (const char* n : gemm::kNames)
    if (gemm::usable(n)) v.push_back(n);
  return v;
}

void set_gemm_kernel(const std::string& name) {
  const gemm::Kernel* k = gemm::compiled(name);
  LAMINA_CHECK(name == "avx512" || name == "avx2" || name == "generic",
               "set_gemm_kernel: expected one of 'avx512', 'avx2', 'generic', received '" << name << "'");
  LAMINA_CHECK(k && gemm::cpu_supports(name), "set_gemm_kernel: the '" << name << "' kernel "
               << (k ? "needs CPU features this machine lacks" : "is not compiled into this build")
               << "; available here: " << gemm::available_list());
  gemm::g_active.store(k, std::memory_order_release);
}

std::string gemm_kernel_from_env() {
  const char* env = std::getenv("LAMINA_GEMM_KERNEL");
  if (!env || !*env) return "";
  try {
    set_gemm_kernel(env);
  } catch (const std::exception& e) {
    return std::string("LAMINA_GEMM_KERNEL=") + env + " ignored (" + e.what() + "); using '" +
           gemm::active().name + "'";
  }
  return "";
}

void set_gemm_blocking(int64_t kc, int64_t mc, int64_t nc, int items_per_thread) {
  LAMINA_CHECK(kc >= 0 && mc >= 0 && nc >= 0, "set_gemm_blocking: expected block sizes >= 0 (0 = default), received kc="
                                                 << kc << ", mc=" << mc << ", nc=" << nc);
  gemm::g_kc = kc;
  gemm::g_mc = mc;
  gemm::g_nc = nc;
  gemm::g_items_per_thread = std::max(1, items_per_thread);
}

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {  // C = beta * C, A and B not read
    for (int64_t i = 0; i < M; ++i) {
      float* c = C + i * ldc;
      if (beta == 0.f) std::fill(c, c + N, 0.f);
      else if (beta != 1.f) for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
    return;
  }
  const gemm::Kernel& kr = gemm::active();
  if (N > 1 && N <= kr.mr && 2 * N <= kr.nr && M >= 2 * N) {
    // Few columns (a classifier's 10 outputs; at most one tile's height) would fill a fraction of
    // each register tile's width: computed transposed, C^T = op(B)^T op(A)^T, the N rows fill
    // its height instead, then C = C^T transposed (+ beta C). Measured on Zen 5, one core:
    // 32 x 784 x 10 11.5 -> 8.2 us, 128 x 3136 x 10 116 -> 86 us, 4096 x 256 x 3 261 -> 142 us.
    float* ct = gemm::t_trans.get(size_t(M * N));
    sgemm(!tb, !ta, N, M, K, alpha, B, ldb, A, lda, 0.f, ct, M);
    for (int64_t i = 0; i < M; ++i) {
      float* c = C + i * ldc;
      if (beta == 0.f) for (int64_t j = 0; j < N; ++j) c[j] = ct[j * M + i];
      else for (int64_t j = 0; j < N; ++j) c[j] = ct[j * M + i] + beta * c[j];
    }
    return;
  }
  const double fma = double(M) * double(N) * double(K);
  int T = omp_in_parallel() || fma < gemm::kMinParallelFma ? 1 : num_threads();
  int items = T;
  if (M == 1 || N == 1) {
    gemm::gemv(kr, T, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (T > 1) {
    const int per = std::max(1, gemm::g_items_per_thread.load(std::memory_order_relaxed));
    items = int(std::max<double>(T, std::min<double>(double(T) * per, fma / gemm::kMinItemFma)));
  }
  const gemm::Grid g = items > 1 ? gemm::choose_grid(items, M, N, kr) : gemm::Grid{};
  const int blocks = g.im * g.in;
  const bool big_a = double(M) * double(K) * sizeof(float) >= gemm::kPrefetchBytes;
  // B read by few rows of A (a small batch times a weight matrix): its packing is a large share of
  // the product, and the weight often comes from DRAM (the other layers' weights evicted it), so
  // it is prefetched from a smaller size up.
  const double b_bytes = double(K) * double(N) * sizeof(float);
  const bool big_b = b_bytes >= gemm::kPrefetchBytes || (M <= 2 * kr.mc && b_bytes >= gemm::kPrefetchFewRowsBytes);
  if (blocks == 1) {
    gemm::gemm_serial(kr, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, big_a, big_b);
    return;
  }
  const int64_t tiles_m = (M + kr.mr - 1) / kr.mr, tiles_n = (N + kr.nr - 1) / kr.nr;
  std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::min(T, blocks))
  for (int w = 0; w < blocks; ++w) {
    const int bi = w / g.in, bj = w % g.in;
    const int64_t r0 = std::min(M, tiles_m * bi / g.im * kr.mr), r1 = std::min(M, tiles_m * (bi + 1) / g.im * kr.mr);
    const int64_t c0 = std::min(N, tiles_n * bj / g.in * kr.nr), c1 = std::min(N, tiles_n * (bj + 1) / g.in * kr.nr);
    if (r0 >= r1 || c0 >= c1) continue;
    try {
      gemm::gemm_serial(kr, ta, tb, r1 - r0, c1 - c0, K, alpha, ta ? A + r0 : A + r0 * lda, lda,
                        tb ? B + c0 * ldb : B + c0, ldb, beta, C + r0 * ldc + c0, ldc, big_a, big_b);
    } catch (...) {
      failed = true;
    }
  }
  if (failed) throw std::bad_alloc();
}

}  // namespace lamina
