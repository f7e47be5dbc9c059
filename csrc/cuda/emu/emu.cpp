// The CUDA emulator's scheduler, runtime API and cuBLAS (see cuda_runtime.h for the model).
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_runtime.h"

namespace emu {
// What the emulated device was asked to do, for tests and profiles (lamina_emu_stats below).
struct Stats {
  std::atomic<long long> launches{0}, blocks{0}, threads{0}, fiber_blocks{0}, host_waits{0}, copies_to_host{0},
      cublas_calls{0}, cudnn_calls{0}, nccl_calls{0};
};
Stats g_stats;
void count_cudnn_call() { ++g_stats.cudnn_calls; }  // cudnn_emu.cpp's convolutions
void count_nccl_call() { ++g_stats.nccl_calls; }    // nccl_emu.cpp's collectives

namespace {

enum State { kReady, kBlockWait, kWarpWait, kDone };

constexpr size_t kStack = size_t(256) << 10;  // per CUDA thread; untouched pages cost nothing
constexpr size_t kGuard = 4096;

struct Fiber {
  ucontext_t ctx;
  char* mem = nullptr;  // guard page + stack
  State state = kDone;
  uint3 tid{0, 0, 0};
  int64_t ns = 0;  // host time run (profiles)
};

struct Sched {
  std::vector<Fiber> fibers;
  ucontext_t main;
  const std::function<void()>* body = nullptr;
  int current = -1;       // the fiber running, -1 on the host stack
  bool direct = false;    // threads run as plain calls (the kernel has no barrier)
  bool barrier = false;   // the probe thread took a barrier or shuffle
  std::vector<uint64_t> slots;  // shuffle values, one per thread of the block
  std::string error;      // a fiber's exception, raised by run()
  cudaError_t last = cudaSuccess;
  int device = 0;
  ~Sched() {
    for (auto& f : fibers)
      if (f.mem) munmap(f.mem, kStack + kGuard);
  }
};
thread_local Sched S;

// ---- profile (LAMINA_CUDA_EMULATOR_PROFILE=FILE) ----
const char* profile_path() {
  static const char* p = [] {
    const char* e = std::getenv("LAMINA_CUDA_EMULATOR_PROFILE");
    return e && *e ? e : nullptr;
  }();
  return p;
}
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
struct KernelProfile {
  long long launches = 0, threads = 0;
  int64_t total_ns = 0, longest_ns = 0;  // longest: one CUDA thread's host time (noisy on a busy host)
  double mean_ns = 0;                    // the largest mean host time a thread of one launch
  long long mean_threads = 0;            // the threads of that launch
  std::string mean_grid;
};
struct Profile {
  std::mutex mu;
  std::map<std::string, KernelProfile> kernels;
  ~Profile() {
    const char* path = profile_path();
    if (!path || kernels.empty()) return;
    std::vector<std::pair<std::string, KernelProfile>> v(kernels.begin(), kernels.end());
    std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second.mean_ns > b.second.mean_ns; });
    FILE* f = std::strcmp(path, "-") == 0 ? stderr : std::fopen(path, "w");
    if (!f) return;
    std::fprintf(f, "# CUDA emulator profile, per kernel, by the host time a CUDA thread of one launch takes on\n"
                    "# average (the launch that has the largest): few threads that each work long are a\n"
                    "# serial bottleneck on a GPU. longest: one thread's longest host time (noisy).\n");
    std::fprintf(f, "%-12s %-14s %-22s %-12s %-12s %-10s %-14s %s\n", "thread_us", "threads", "grid (block)",
                 "longest_us", "total_ms", "launches", "all_threads", "kernel");
    for (auto& [name, k] : v)
      std::fprintf(f, "%-12.2f %-14lld %-22s %-12.1f %-12.2f %-10lld %-14lld %s\n", k.mean_ns / 1e3, k.mean_threads,
                   k.mean_grid.c_str(), k.longest_ns / 1e3, k.total_ns / 1e6, k.launches, k.threads, name.c_str());
    if (f != stderr) std::fclose(f);
  }
};
Profile g_profile;
thread_local int64_t t_longest = 0;  // the launch's longest thread so far

unsigned linear(const uint3& t) { return t.x + blockDim.x * (t.y + blockDim.y * t.z); }

// LAMINA_CUDA_EMULATOR_ORDER=reverse runs blocks, and a block's threads between barriers, last
// first: a kernel whose result depends on the order of threads without a barrier or atomic
// between them (a race on a device) then gives a different answer than in the default order.
bool reverse_order() {
  static const bool r = [] {
    const char* e = std::getenv("LAMINA_CUDA_EMULATOR_ORDER");
    return e && std::string(e) == "reverse";
  }();
  return r;
}
// LAMINA_CUDA_EMULATOR_SKIP_KERNELS=1: launches and cuBLAS calls return at once without running
// (results are garbage): what is left of a step's time is the host's own work, the floor of a
// GPU step's time. (Outside the anonymous namespace: cudnn_emu.cpp honours it too.)
}  // namespace
bool skip_kernels() {
  static const bool r = [] {
    const char* e = std::getenv("LAMINA_CUDA_EMULATOR_SKIP_KERNELS");
    return e && *e && std::string(e) != "0";
  }();
  return r;
}
namespace {
uint3 unflatten(unsigned t) { return uint3{t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)}; }

void fiber_entry() {
  Fiber& f = S.fibers[size_t(S.current)];
  try {
    (*S.body)();
  } catch (const std::exception& e) {
    if (S.error.empty()) S.error = e.what();
  } catch (...) {
    if (S.error.empty()) S.error = "an exception in a CUDA thread";
  }
  f.state = kDone;
  swapcontext(&f.ctx, &S.main);  // never resumed
}

void start_fiber(size_t i, const uint3& tid) {
  if (S.fibers.empty()) S.fibers.resize(1024);  // never reallocated: a suspended ucontext_t must not move
  Fiber& f = S.fibers[i];
  if (!f.mem) {
    void* m = mmap(nullptr, kStack + kGuard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) throw std::runtime_error("CUDA emulator: cannot map a thread stack");
    mprotect(m, kGuard, PROT_NONE);  // a stack overflow faults instead of writing into a neighbour
    f.mem = static_cast<char*>(m);
  }
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.mem + kGuard;
  f.ctx.uc_stack.ss_size = kStack;
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, fiber_entry, 0);
  f.state = kReady;
  f.tid = tid;
  f.ns = 0;
}

void resume(size_t i) {
  S.current = int(i);
  threadIdx = S.fibers[i].tid;
  if (profile_path()) {
    const int64_t t0 = now_ns();
    swapcontext(&S.main, &S.fibers[i].ctx);
    S.fibers[i].ns += now_ns() - t0;
  } else {
    swapcontext(&S.main, &S.fibers[i].ctx);
  }
  S.current = -1;
}

// Suspends the calling fiber in state st until the scheduler releases it.
void wait_as(State st, const char* what) {
  if (S.current < 0) {
    // A thread that runs as a plain call took a barrier: the probe thread (0) did not, having
    // left the kernel early. The emulator cannot suspend it.
    throw std::runtime_error(std::string("CUDA emulator: ") + what + " in a kernel whose thread (0,0,0) of block (" +
                             std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) + "," +
                             std::to_string(blockIdx.z) + ") returned without one; the emulator needs every thread "
                             "that uses a barrier to be scheduled as such: let thread 0 reach it too");
  }
  S.barrier = true;
  Fiber& f = S.fibers[size_t(S.current)];
  f.state = st;
  swapcontext(&f.ctx, &S.main);
  threadIdx = f.tid;
}

void run_block(unsigned n) {
  const uint3 zero{0, 0, 0};
  // The probe: thread 0 on a fiber. No barrier: the others run as plain calls.
  S.barrier = false;
  start_fiber(0, zero);
  resume(0);
  const bool prof = profile_path() != nullptr;
  if (S.fibers[0].state == kDone && !S.barrier) {
    if (prof) t_longest = std::max(t_longest, S.fibers[0].ns);
    if (!S.error.empty()) return;
    S.direct = true;
    const bool rev = reverse_order();
    for (unsigned k = 1; k < n; ++k) {
      threadIdx = unflatten(rev ? n - k : k);
      if (prof) {
        const int64_t t0 = now_ns();
        (*S.body)();
        t_longest = std::max(t_longest, now_ns() - t0);
      } else {
        (*S.body)();
      }
    }
    S.direct = false;
    return;
  }
  ++g_stats.fiber_blocks;
  for (unsigned t = 1; t < n; ++t) start_fiber(t, unflatten(t));
  const unsigned warps = (n + 31) / 32;
  const bool rev = reverse_order();
  for (;;) {
    bool ran = false;
    for (unsigned k = 0; k < n; ++k) {
      const unsigned t = rev ? n - 1 - k : k;
      if (S.fibers[t].state == kReady) {
        resume(t);
        ran = true;
      }
    }
    if (!S.error.empty()) return;  // the fibers left suspended are restarted by the next launch
    unsigned live = 0, at_block = 0;
    for (unsigned t = 0; t < n; ++t) {
      live += S.fibers[t].state != kDone;
      at_block += S.fibers[t].state == kBlockWait;
    }
    if (live == 0) {
      if (prof)
        for (unsigned t = 0; t < n; ++t) t_longest = std::max(t_longest, S.fibers[t].ns);
      return;
    }
    bool released = false;
    if (at_block == live) {
      for (unsigned t = 0; t < n; ++t)
        if (S.fibers[t].state == kBlockWait) S.fibers[t].state = kReady;
      released = true;
    } else {
      for (unsigned w = 0; w < warps; ++w) {
        unsigned lo = w * 32, hi = std::min(n, lo + 32), wl = 0, ww = 0;
        for (unsigned t = lo; t < hi; ++t) {
          wl += S.fibers[t].state != kDone;
          ww += S.fibers[t].state == kWarpWait;
        }
        if (wl && ww == wl) {
          for (unsigned t = lo; t < hi; ++t)
            if (S.fibers[t].state == kWarpWait) S.fibers[t].state = kReady;
          released = true;
        }
      }
    }
    if (!released && !ran) {
      S.error = "CUDA emulator: deadlock in block (" + std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) +
                "," + std::to_string(blockIdx.z) + "): " + std::to_string(at_block) + " of " + std::to_string(live) +
                " live threads wait at __syncthreads and the rest at a warp shuffle or __syncwarp of a warp "
                "some of whose threads are at __syncthreads";
      return;
    }
  }
}

}  // namespace

int lane_id() { return int(linear(threadIdx) % 32); }

void syncthreads() { wait_as(kBlockWait, "__syncthreads"); }

void syncwarp() { wait_as(kWarpWait, "__syncwarp"); }

uint64_t shuffle_bits(uint64_t mine, int src_lane, int) {
  const unsigned me = linear(threadIdx);
  S.slots[me] = mine;
  wait_as(kWarpWait, "a warp shuffle");  // every lane has put its value
  const unsigned src = (me / 32) * 32 + unsigned(src_lane);
  const unsigned n = blockDim.x * blockDim.y * blockDim.z;
  const uint64_t r = src < n && S.fibers[src].state != kDone ? S.slots[src] : mine;
  wait_as(kWarpWait, "a warp shuffle");  // every lane has read before the slots are reused
  return r;
}

void run(const LaunchConfig& cfg, const std::function<void()>& body) {
  const dim3 g = cfg.grid, b = cfg.block;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (g.x == 0 || g.y == 0 || g.z == 0 || b.x == 0 || b.y == 0 || b.z == 0 || threads > 1024 || b.x > 1024 ||
      b.y > 1024 || b.z > 64 || g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
    S.last = cudaErrorInvalidConfiguration;
    return;
  }
  if (cfg.shared != 0) {  // no dynamic shared memory (extern __shared__) in the emulator
    S.last = cudaErrorInvalidValue;
    return;
  }
  if (S.body != nullptr) throw std::runtime_error("CUDA emulator: a kernel launched from device code");
  if (skip_kernels()) {  // timing the host's side alone
    ++g_stats.launches;
    return;
  }
  const unsigned n = unsigned(threads);
  ++g_stats.launches;
  g_stats.blocks += (long long)g.x * g.y * g.z;
  g_stats.threads += (long long)g.x * g.y * g.z * n;
  S.body = &body;
  S.error.clear();
  S.slots.assign(n, 0);
  const dim3 saved_block = blockDim, saved_grid = gridDim;
  blockDim = b;
  gridDim = g;
  const bool rev = reverse_order();
  const int64_t started = profile_path() ? now_ns() : 0;
  t_longest = 0;
  try {
    for (unsigned z = 0; z < g.z && S.error.empty(); ++z)
      for (unsigned y = 0; y < g.y && S.error.empty(); ++y)
        for (unsigned x = 0; x < g.x && S.error.empty(); ++x) {
          blockIdx = rev ? uint3{g.x - 1 - x, g.y - 1 - y, g.z - 1 - z} : uint3{x, y, z};
          run_block(n);
        }
  } catch (const std::exception& e) {  // from a thread run as a plain call (direct mode)
    if (S.error.empty()) S.error = e.what();
    S.direct = false;
  }
  S.body = nullptr;
  if (profile_path()) {
    std::lock_guard<std::mutex> lk(g_profile.mu);
    KernelProfile& k = g_profile.kernels[cfg.name];
    const long long nthreads = (long long)g.x * g.y * g.z * n;
    const int64_t took = now_ns() - started;
    k.launches++;
    k.threads += nthreads;
    k.total_ns += took;
    k.longest_ns = std::max(k.longest_ns, t_longest);
    const double mean = double(took) / double(nthreads);
    if (mean > k.mean_ns) {
      k.mean_ns = mean;
      k.mean_threads = nthreads;
      k.mean_grid = std::to_string(g.x) + "x" + std::to_string(g.y) + "x" + std::to_string(g.z) + " (" +
                    std::to_string(b.x) + "x" + std::to_string(b.y) + "x" + std::to_string(b.z) + ")";
    }
  }
  blockDim = saved_block;
  gridDim = saved_grid;
  if (!S.error.empty()) {
    for (auto& f : S.fibers) f.state = kDone;
    std::string e;
    e.swap(S.error);
    throw std::runtime_error(e);
  }
}

}  // namespace emu

// ---- the runtime API ------------------------------------------------------------------------
struct CUstream_st {
  int device;
};
struct CUevent_st {
  int device;
};

namespace {
int physical_gpus() {
  const char* env = std::getenv("LAMINA_EMULATED_GPUS");
  int n = env ? std::atoi(env) : 1;
  return n < 0 ? 0 : n;
}
}  // namespace

cudaError_t cudaGetDeviceCount(int* n) {
  *n = physical_gpus();
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
  if (d < 0 || d >= physical_gpus()) return emu::S.last = cudaErrorInvalidDevice;
  emu::S.device = d;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = emu::S.device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d < 0 || d >= physical_gpus()) return cudaErrorInvalidDevice;
  std::memset(p, 0, sizeof(*p));
  std::snprintf(p->name, sizeof(p->name), "CUDA emulator on the CPU (lamina)");
  p->totalGlobalMem = size_t(16) << 30;
  p->multiProcessorCount = 4;
  p->major = 9;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  cudaError_t e = emu::S.last;
  emu::S.last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return emu::S.last; }
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    default: return "cudaErrorUnknown";
  }
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNotReady: return "device not ready";
    default: return "unknown error";
  }
}
cudaError_t cudaMalloc(void** p, size_t n) {
  *p = std::aligned_alloc(256, (n + 255) / 256 * 256);
  if (!*p) return emu::S.last = cudaErrorMemoryAllocation;
  // Fresh device memory holds garbage: NaN bit patterns, so a kernel that reads before it
  // writes shows in tests instead of reading zeros.
  std::memset(*p, 0xff, n);
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind k) {
  if (k == cudaMemcpyDeviceToHost) ++emu::g_stats.copies_to_host;
  if (n) std::memmove(dst, src, n);
  return cudaSuccess;
}
namespace {
std::mutex g_pinned_mu;
std::map<const char*, size_t> g_pinned;  // cudaHostAlloc's blocks: start -> size
bool pinned(const void* p, size_t n) {
  std::lock_guard<std::mutex> g(g_pinned_mu);
  const char* c = static_cast<const char*>(p);
  auto it = g_pinned.upper_bound(c);
  if (it == g_pinned.begin()) return false;
  --it;
  return c >= it->first && c + n <= it->first + it->second;
}
}  // namespace

cudaError_t cudaHostAlloc(void** p, size_t n, unsigned) {
  *p = std::aligned_alloc(4096, (n + 4095) / 4096 * 4096);
  if (!*p) return emu::S.last = cudaErrorMemoryAllocation;
  std::lock_guard<std::mutex> g(g_pinned_mu);
  g_pinned[static_cast<const char*>(*p)] = n;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t n) { return cudaHostAlloc(p, n, 0); }
cudaError_t cudaFreeHost(void* p) {
  {
    std::lock_guard<std::mutex> g(g_pinned_mu);
    g_pinned.erase(static_cast<const char*>(p));
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind k, cudaStream_t) {
  // from pageable memory to the device, CUDA waits for the stream first
  if (k == cudaMemcpyHostToDevice && n && !pinned(src, n)) ++emu::g_stats.host_waits;
  return cudaMemcpy(dst, src, n, k);
}
cudaError_t cudaMemcpyPeerAsync(void* dst, int, const void* src, int, size_t n, cudaStream_t) {
  return cudaMemcpy(dst, src, n, cudaMemcpyDefault);
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind, cudaStream_t) {
  if (width > dpitch || width > spitch) return emu::S.last = cudaErrorInvalidValue;
  for (size_t r = 0; r < height; ++r)
    std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int v, size_t n) {
  if (n) std::memset(p, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) { return cudaMemset(p, v, n); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new CUstream_st{emu::S.device};
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  ++emu::g_stats.host_waits;
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new CUevent_st{emu::S.device};
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) {
  ++emu::g_stats.host_waits;
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  ++emu::g_stats.host_waits;
  return cudaSuccess;
}

// ---- cuBLAS: the entry points csrc/cuda/cublas.cpp binds with dlsym, column-major as cuBLAS's.
// Exported from this module, so `load_cublas(<this module's file>)` loads them through the same
// code path as the real library. Sums in double; bfloat16 outputs rounded to nearest even. -----
namespace {
struct EmuHandle {
  cudaStream_t stream = nullptr;
  int math = 0;
};
constexpr int kR32F = 0, kR16BF = 14;

float load(const void* p, int type, long long i) {
  if (type == kR16BF) {
    uint32_t bits = uint32_t(static_cast<const uint16_t*>(p)[i]) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  return static_cast<const float*>(p)[i];
}
void store(void* p, int type, long long i, float v) {
  if (type == kR16BF) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u)
      bits = (bits | 0x00400000u);  // NaN stays NaN
    else
      bits += 0x7fffu + ((bits >> 16) & 1u);
    static_cast<uint16_t*>(p)[i] = uint16_t(bits >> 16);
    return;
  }
  static_cast<float*>(p)[i] = v;
}
// C = alpha op(A) op(B) + beta C, column-major, one product.
void gemm(int ta, int tb, int m, int n, int k, float alpha, const void* A, int at, int lda, const void* B, int bt,
          int ldb, float beta, void* C, int ct, int ldc) {
  if (emu::skip_kernels()) return;
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double s = 0;
      for (int p = 0; p < k; ++p) {
        const float a = load(A, at, ta ? (long long)p + (long long)i * lda : (long long)i + (long long)p * lda);
        const float b = load(B, bt, tb ? (long long)j + (long long)p * ldb : (long long)p + (long long)j * ldb);
        s += double(a) * double(b);
      }
      const long long ci = (long long)i + (long long)j * ldc;
      double v = double(alpha) * s;
      if (beta != 0.f) v += double(beta) * double(load(C, ct, ci));
      store(C, ct, ci, float(v));
    }
}
bool valid(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc) {
  if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1) || m < 0 || n < 0 || k < 0) return false;
  if (lda < std::max(1, ta ? k : m) || ldb < std::max(1, tb ? n : k) || ldc < std::max(1, m)) return false;
  return true;
}
constexpr int kStatusInvalid = 7;  // CUBLAS_STATUS_INVALID_VALUE
}  // namespace

#define LAMINA_EMU_EXPORT extern "C" __attribute__((visibility("default")))
LAMINA_EMU_EXPORT int cublasCreate_v2(void** h) {
  *h = new EmuHandle();
  return 0;
}
LAMINA_EMU_EXPORT int cublasSetStream_v2(void* h, cudaStream_t s) {
  static_cast<EmuHandle*>(h)->stream = s;
  return 0;
}
LAMINA_EMU_EXPORT int cublasSetMathMode(void* h, int mode) {
  static_cast<EmuHandle*>(h)->math = mode;
  return 0;
}
LAMINA_EMU_EXPORT int cublasSgemm_v2(void*, int ta, int tb, int m, int n, int k, const float* alpha, const float* A,
                                     int lda, const float* B, int ldb, const float* beta, float* C, int ldc) {
  if (!valid(ta, tb, m, n, k, lda, ldb, ldc)) return kStatusInvalid;
  ++emu::g_stats.cublas_calls;
  gemm(ta, tb, m, n, k, *alpha, A, kR32F, lda, B, kR32F, ldb, *beta, C, kR32F, ldc);
  return 0;
}
LAMINA_EMU_EXPORT int cublasSgemmStridedBatched(void*, int ta, int tb, int m, int n, int k, const float* alpha,
                                                const float* A, int lda, long long sa, const float* B, int ldb,
                                                long long sb, const float* beta, float* C, int ldc, long long sc,
                                                int batches) {
  if (!valid(ta, tb, m, n, k, lda, ldb, ldc) || batches < 0) return kStatusInvalid;
  ++emu::g_stats.cublas_calls;
  for (int i = 0; i < batches; ++i)
    gemm(ta, tb, m, n, k, *alpha, A + i * sa, kR32F, lda, B + i * sb, kR32F, ldb, *beta, C + i * sc, kR32F, ldc);
  return 0;
}
LAMINA_EMU_EXPORT int cublasGemmStridedBatchedEx(void*, int ta, int tb, int m, int n, int k, const void* alpha,
                                                 const void* A, int at, int lda, long long sa, const void* B, int bt,
                                                 int ldb, long long sb, const void* beta, void* C, int ct, int ldc,
                                                 long long sc, int batches, int compute, int) {
  const int kCompute32F = 68;
  if (!valid(ta, tb, m, n, k, lda, ldb, ldc) || batches < 0 || compute != kCompute32F) return kStatusInvalid;
  for (int t : {at, bt, ct})
    if (t != kR32F && t != kR16BF) return kStatusInvalid;
  ++emu::g_stats.cublas_calls;
  const size_t ea = at == kR16BF ? 2 : 4, eb = bt == kR16BF ? 2 : 4, ec = ct == kR16BF ? 2 : 4;
  for (int i = 0; i < batches; ++i)
    gemm(ta, tb, m, n, k, *static_cast<const float*>(alpha), static_cast<const char*>(A) + i * sa * ea, at, lda,
         static_cast<const char*>(B) + i * sb * eb, bt, ldb, *static_cast<const float*>(beta),
         static_cast<char*>(C) + i * sc * ec, ct, ldc);
  return 0;
}

// The emulator's counters since the last call with reset != 0: launches, blocks, CUDA threads,
// blocks run as fibers (kernels with barriers), host waits (stream / event / device
// synchronisations), copies to the host, cuBLAS calls, cuDNN convolutions (cudnn_emu.cpp), NCCL
// collectives (nccl_emu.cpp). Read with ctypes (tests, profiles): out holds 9 values.
LAMINA_EMU_EXPORT void lamina_emu_stats(long long* out, int reset) {
  emu::Stats& s = emu::g_stats;
  std::atomic<long long>* v[] = {&s.launches, &s.blocks, &s.threads, &s.fiber_blocks, &s.host_waits,
                                 &s.copies_to_host, &s.cublas_calls, &s.cudnn_calls, &s.nccl_calls};
  for (int i = 0; i < 9; ++i) out[i] = reset ? v[i]->exchange(0) : v[i]->load();
}

// ---- the emulator's own checks (tests/test_cuda_emulator.py, through ctypes) --------------------
namespace {
std::string selftest(int which) {
  using emu::LaunchConfig;
  switch (which) {
    case 0: {  // warp shuffles: every lane gets its warp's sum; partial last warp
      std::vector<int> out(80, -1);
      emu::launch(LaunchConfig(1, 80), [&](int* o) {
        int v = int(threadIdx.x);
        for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
        o[threadIdx.x] = v;
      }, out.data());
      for (int t = 0; t < 80; ++t) {
        const int w = t / 32, lo = w * 32, hi = std::min(80, lo + 32);
        int want = 0;
        if (w < 2) for (int u = lo; u < hi; ++u) want += u;
        if (w < 2 && out[t] != want) return "warp sum: lane " + std::to_string(t) + " got " + std::to_string(out[t]);
      }
      return "";
    }
    case 1: {  // __syncthreads orders shared memory: each thread reads another's write
      std::vector<float> out(256, -1.f);
      emu::launch(LaunchConfig(3, 256), [&](float* o) {
        __shared__ float s[256];
        s[threadIdx.x] = float(threadIdx.x + blockIdx.x);
        __syncthreads();
        const float v = s[255 - threadIdx.x];
        __syncthreads();
        if (blockIdx.x == 2) o[threadIdx.x] = v;
      }, out.data());
      for (int t = 0; t < 256; ++t)
        if (out[size_t(t)] != float(255 - t + 2)) return "barrier: thread " + std::to_string(t) + " read " + std::to_string(out[size_t(t)]);
      return "";
    }
    case 2: {  // more than 1024 threads a block: nothing runs, cudaGetLastError says why
      int ran = 0;
      emu::launch(LaunchConfig(1, 2048), [&](int* r) { *r = 1; }, &ran);
      const cudaError_t e = cudaGetLastError();
      if (e != cudaErrorInvalidConfiguration || ran) return "2048 threads: error " + std::to_string(int(e));
      return cudaGetLastError() == cudaSuccess ? "" : "the error was not cleared";
    }
    case 3: {  // a deadlock (half a warp at __syncthreads, half at __syncwarp) is raised, and the next launch works
      try {
        emu::launch(LaunchConfig(1, 32), [&](int) {
          if (threadIdx.x < 16) __syncthreads();
          else __syncwarp();
        }, 0);
        return "no deadlock reported";
      } catch (const std::exception& e) {
        if (std::string(e.what()).find("deadlock") == std::string::npos) return std::string("deadlock: ") + e.what();
      }
      return selftest(1);
    }
    case 4: {  // thread 0 leaves, thread 1 takes a barrier: a clear error, and the next launch works
      try {
        emu::launch(LaunchConfig(1, 64), [&](int) {
          if (threadIdx.x == 0) return;
          __syncthreads();
        }, 0);
        return "no error for a barrier thread 0 skipped";
      } catch (const std::exception& e) {
        if (std::string(e.what()).find("let thread 0 reach it") == std::string::npos) return std::string("early exit: ") + e.what();
      }
      return selftest(0);
    }
  }
  return "no such check";
}
}  // namespace

// Runs the emulator's check `which` (0..4); returns 0 and an empty message when it passes.
LAMINA_EMU_EXPORT int lamina_emu_selftest(int which, char* message, int size) {
  std::string m;
  try {
    m = selftest(which);
  } catch (const std::exception& e) {
    m = std::string("exception: ") + e.what();
  }
  std::snprintf(message, size_t(size), "%s", m.c_str());
  return m.empty() ? 0 : 1;
}
