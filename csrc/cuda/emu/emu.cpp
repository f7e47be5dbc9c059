// The CUDA emulator's scheduler, runtime API and cuBLAS (see cuda_runtime.h for the model).
//
// Streams (LAMINA_CUDA_EMULATOR_STREAMS): "sync", the default, runs every kernel, copy and cuBLAS
// call when it is issued. "lazy" queues them per stream (a FIFO of items: work, event markers,
// waits for another stream's position) and runs them only when the host waits, as late as CUDA
// allows, so the bugs of asynchrony show: a host read without a wait, a kernel reading what a copy
// on another stream has not written (no cudaStreamWaitEvent), a pinned staging block rewritten
// before its copy ran. The queues are guarded by one mutex; queued work runs under one global
// recursive lock, on whichever host thread waits; a failure while it runs is the device's sticky
// error (cudaErrorLaunchFailure), returned by the next synchronising call or cudaGetLastError.
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
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
// LAMINA_CUDA_EMULATOR_STREAMS: "sync" (the default: work runs when it is issued), "lazy" (work
// is queued per stream and runs when the host waits; see cuda_runtime.h), or "lazy-early-copies"
// (lazy, except that a copy to the device runs as soon as its stream allows, ahead of kernels still
// queued on other streams: a buffer reused for a copy while queued kernels still read it shows).
int stream_mode() {  // 0 sync, 1 lazy, 2 lazy-early-copies
  static const int r = [] {
    const char* e = std::getenv("LAMINA_CUDA_EMULATOR_STREAMS");
    if (!e || !*e || std::string(e) == "sync") return 0;
    if (std::string(e) == "lazy") return 1;
    if (std::string(e) == "lazy-early-copies") return 2;
    std::fprintf(stderr, "CUDA emulator: LAMINA_CUDA_EMULATOR_STREAMS=%s: expected sync, lazy or lazy-early-copies\n",
                 e);
    std::abort();
  }();
  return r;
}
bool lazy_streams() { return stream_mode() != 0; }
void run_stream(void* stream);
// Runs work now (sync) or queues it on stream (lazy; nullptr: the current device's legacy
// default stream). Also cudnn_emu.cpp's convolutions.
void enqueue_work(void* stream, std::function<void()> work);
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

namespace {
// A launch's configuration as a device checks it; a bad one is reported by cudaGetLastError.
bool check_config(const LaunchConfig& cfg) {
  const dim3 g = cfg.grid, b = cfg.block;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (g.x == 0 || g.y == 0 || g.z == 0 || b.x == 0 || b.y == 0 || b.z == 0 || threads > 1024 || b.x > 1024 ||
      b.y > 1024 || b.z > 64 || g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
    S.last = cudaErrorInvalidConfiguration;
    return false;
  }
  if (cfg.shared != 0) {  // no dynamic shared memory (extern __shared__) in the emulator
    S.last = cudaErrorInvalidValue;
    return false;
  }
  return true;
}

// Runs a checked launch's CUDA threads; a thread's exception or a deadlock is raised.
void execute(const LaunchConfig& cfg, const std::function<void()>& body) {
  const dim3 g = cfg.grid, b = cfg.block;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (S.body != nullptr) throw std::runtime_error("CUDA emulator: a kernel launched from device code");
  const unsigned n = unsigned(threads);
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
}  // namespace

void run(const LaunchConfig& cfg, const std::function<void()>& body) {
  if (!check_config(cfg)) return;
  if (S.body != nullptr) throw std::runtime_error("CUDA emulator: a kernel launched from device code");
  ++g_stats.launches;
  if (skip_kernels()) return;  // timing the host's side alone
  execute(cfg, body);
}

void submit(const LaunchConfig& cfg, std::function<void()> body) {
  if (!lazy_streams()) return run(cfg, body);
  if (!check_config(cfg)) return;
  if (S.body != nullptr) throw std::runtime_error("CUDA emulator: a kernel launched from device code");
  ++g_stats.launches;
  if (skip_kernels()) return;
  enqueue_work(cfg.stream, [cfg, body = std::move(body)]() { execute(cfg, body); });
}

}  // namespace emu

// ---- streams and events ---------------------------------------------------------------------
// LAMINA_CUDA_EMULATOR_STREAMS=sync: streams and events are handles; everything runs when issued.
// lazy: each stream holds a FIFO of items; `executed` of its `issued` items have run. An event
// names a stream and a position in it: complete once that stream has run that far.
struct CUstream_st;
namespace emu {
namespace {
struct Item {
  std::function<void()> work;                // a kernel, copy or library call; empty: a marker or a wait
  std::shared_ptr<CUstream_st> wait_stream;  // a wait: runs that stream up to wait_seq first
  uint64_t wait_seq = 0;
};
}  // namespace
}  // namespace emu

struct CUstream_st : std::enable_shared_from_this<CUstream_st> {
  int device = 0;
  bool blocking = false;  // made without cudaStreamNonBlocking: ordered with the legacy default stream
  bool legacy = false;    // a device's legacy default stream (cudaStream_t nullptr)
  // lazy mode, under Streams::mu
  std::deque<emu::Item> items;
  uint64_t issued = 0, executed = 0;
};
struct CUevent_st {
  int device = 0;
  std::shared_ptr<CUstream_st> stream;  // lazy mode: the stream of its latest record (none: complete)
  uint64_t seq = 0;                     // complete once that stream has run its first seq items
};

namespace emu {
namespace {
constexpr size_t kMaxQueued = 100000;  // a stream holding more runs its oldest half

struct Streams {
  std::mutex mu;  // the queues, this registry, the errors
  std::vector<std::shared_ptr<CUstream_st>> live;         // cudaStreamCreate's, oldest first
  std::map<int, std::shared_ptr<CUstream_st>> legacy;     // the legacy default stream of each device
  std::map<int, std::string> errors;                      // a device's sticky error (queued work that failed)
  std::recursive_mutex exec;                              // held while queued work runs
};
Streams& streams() {
  static Streams* s = new Streams();  // never destroyed: buffers may record events during teardown
  return *s;
}
thread_local std::string t_error_text;  // cudaGetErrorString's text of the latest error taken

CUstream_st* resolve_locked(cudaStream_t s) {
  if (s) return s;
  auto& l = streams().legacy[S.device];
  if (!l) {
    l = std::make_shared<CUstream_st>();
    l->device = S.device;
    l->blocking = true;
    l->legacy = true;
  }
  return l.get();
}

void wait_item_locked(CUstream_st* s, const std::shared_ptr<CUstream_st>& on) {
  Item w;
  w.wait_stream = on;
  w.wait_seq = on->issued;
  s->items.push_back(std::move(w));
  ++s->issued;
}

// Queues an item on s (the legacy default stream and blocking streams of its device wait for
// each other's earlier work, as CUDA's). Returns true when s's queue must be cut down.
bool push_locked(CUstream_st* s, Item&& it) {
  Streams& g = streams();
  if (s->legacy) {
    for (auto& o : g.live)
      if (o->blocking && o->device == s->device && o->executed < o->issued) wait_item_locked(s, o);
  } else if (s->blocking) {
    auto l = g.legacy.find(s->device);
    if (l != g.legacy.end() && l->second->executed < l->second->issued) wait_item_locked(s, l->second);
  }
  s->items.push_back(std::move(it));
  ++s->issued;
  return s->items.size() > kMaxQueued;
}

void record_error(int device, const std::string& what) {
  std::lock_guard<std::mutex> lk(streams().mu);
  std::string& e = streams().errors[device];
  if (e.empty()) e = what;
}

// Runs s's items until its first `target` have run (the waits among them run their streams first).
void run_until(CUstream_st* s, uint64_t target) {
  Streams& g = streams();
  std::lock_guard<std::recursive_mutex> ex(g.exec);
  for (;;) {
    Item it;
    {
      std::lock_guard<std::mutex> lk(g.mu);
      if (s->executed >= target || s->items.empty()) return;
      it = std::move(s->items.front());
      s->items.pop_front();
    }
    if (it.wait_stream) {
      run_until(it.wait_stream.get(), it.wait_seq);
    } else if (it.work) {
      try {
        it.work();
      } catch (const std::exception& e) {
        record_error(s->device, e.what());
      } catch (...) {
        record_error(s->device, "an exception in queued work");
      }
    }
    std::lock_guard<std::mutex> lk(g.mu);
    ++s->executed;
  }
}

// Queues it on stream; *seq: the stream's position after it. Cuts a long queue down.
CUstream_st* push(cudaStream_t stream, Item&& it, uint64_t* seq = nullptr) {
  Streams& g = streams();
  CUstream_st* s;
  uint64_t cut = 0;
  {
    std::lock_guard<std::mutex> lk(g.mu);
    s = resolve_locked(stream);
    if (push_locked(s, std::move(it))) cut = s->executed + s->items.size() / 2;
    if (seq) *seq = s->issued;
  }
  if (cut) run_until(s, cut);
  return s;
}

// Runs every item queued now on the streams of `device` (-1: all devices), newest stream first
// (any order the queued waits allow is CUDA's; this one is the adversarial one).
void run_streams(int device) {
  Streams& g = streams();
  std::vector<std::pair<std::shared_ptr<CUstream_st>, uint64_t>> todo;
  {
    std::lock_guard<std::mutex> lk(g.mu);
    for (auto it = g.live.rbegin(); it != g.live.rend(); ++it)
      if (device < 0 || (*it)->device == device) todo.emplace_back(*it, (*it)->issued);
    for (auto& kv : g.legacy)  // made with their device: the oldest
      if (device < 0 || kv.first == device) todo.emplace_back(kv.second, kv.second->issued);
  }
  std::lock_guard<std::recursive_mutex> ex(g.exec);
  for (auto& [s, target] : todo) run_until(s.get(), target);
}

// The device's sticky error, once (a synchronising call returns it).
cudaError_t take_error(int device) {
  std::lock_guard<std::mutex> lk(streams().mu);
  auto it = streams().errors.find(device);
  if (it == streams().errors.end()) return cudaSuccess;
  t_error_text = "unspecified launch failure: " + it->second;
  streams().errors.erase(it);
  return cudaErrorLaunchFailure;
}
bool has_error(int device) {
  std::lock_guard<std::mutex> lk(streams().mu);
  return streams().errors.count(device) != 0;
}
}  // namespace

void enqueue_work(void* stream, std::function<void()> work) {
  if (!lazy_streams()) {
    work();
    return;
  }
  Item it;
  it.work = std::move(work);
  push(static_cast<cudaStream_t>(stream), std::move(it));
}

// nccl_emu.cpp: a collective runs its stream's queued work first, then runs at once.
void run_stream(void* stream) {
  if (!lazy_streams()) return;
  CUstream_st* s;
  uint64_t target;
  {
    std::lock_guard<std::mutex> lk(streams().mu);
    s = resolve_locked(static_cast<cudaStream_t>(stream));
    target = s->issued;
  }
  run_until(s, target);
}
}  // namespace emu

// ---- the runtime API ------------------------------------------------------------------------
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
// A launch's error first, else the current device's sticky error (lazy mode: queued work that
// failed while another call ran it), as CUDA reports asynchronous errors.
cudaError_t cudaGetLastError() {
  cudaError_t e = emu::S.last;
  emu::S.last = cudaSuccess;
  if (e == cudaSuccess && emu::lazy_streams()) e = emu::take_error(emu::S.device);
  return e;
}
cudaError_t cudaPeekAtLastError() {
  if (emu::S.last == cudaSuccess && emu::lazy_streams() && emu::has_error(emu::S.device)) return cudaErrorLaunchFailure;
  return emu::S.last;
}
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
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
    case cudaErrorLaunchFailure:  // with the emulator's message of the latest one this thread took
      return emu::t_error_text.empty() ? "unspecified launch failure" : emu::t_error_text.c_str();
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
  if (emu::lazy_streams()) emu::run_streams(-1);  // CUDA synchronises the device first
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind k) {
  cudaError_t e = cudaSuccess;
  if (emu::lazy_streams()) {  // after every queued item, as a synchronous copy runs
    emu::run_streams(-1);
    e = emu::take_error(emu::S.device);
  }
  if (k == cudaMemcpyDeviceToHost) ++emu::g_stats.copies_to_host;
  if (n) std::memmove(dst, src, n);
  return e;
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

// Lazy mode: queues a copy on stream. From pageable host memory the source's `src_bytes` are
// read now (CUDA stages them before it returns); from pinned memory when the copy runs. To
// pageable host memory the call runs the stream to the copy's end (CUDA's returns once the copy
// is done); to pinned memory the bytes land when it runs. copy(dst, src) does the copy.
cudaError_t queue_copy(void* dst, size_t dst_bytes, const void* src, size_t src_bytes, cudaMemcpyKind k,
                       cudaStream_t stream, std::function<void(void*, const void*)> copy) {
  const bool from_host = k == cudaMemcpyHostToDevice || k == cudaMemcpyHostToHost;
  const bool to_host = k == cudaMemcpyDeviceToHost || k == cudaMemcpyHostToHost;
  emu::Item it;
  if (from_host && !pinned(src, src_bytes)) {
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src),
                                                      static_cast<const char*>(src) + src_bytes);
    it.work = [dst, staged, copy]() { copy(dst, staged->data()); };
  } else {
    it.work = [dst, src, copy]() { copy(dst, src); };
  }
  uint64_t seq = 0;
  CUstream_st* s = emu::push(stream, std::move(it), &seq);
  if (to_host && !pinned(dst, dst_bytes)) {
    emu::run_until(s, seq);
    return emu::take_error(s->device);
  }
  return cudaSuccess;
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
  if (emu::lazy_streams()) emu::run_streams(-1);  // CUDA synchronises the device first
  {
    std::lock_guard<std::mutex> g(g_pinned_mu);
    g_pinned.erase(static_cast<const char*>(p));
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind k, cudaStream_t s) {
  // from pageable memory to the device, CUDA waits for the stream first
  if (k == cudaMemcpyHostToDevice && n && !pinned(src, n)) ++emu::g_stats.host_waits;
  if (!emu::lazy_streams()) return cudaMemcpy(dst, src, n, k);
  if (k == cudaMemcpyDeviceToHost) ++emu::g_stats.copies_to_host;
  if (n == 0) return cudaSuccess;
  const cudaError_t e = queue_copy(dst, n, src, n, k, s, [n](void* d, const void* from) { std::memmove(d, from, n); });
  if (e == cudaSuccess && k == cudaMemcpyHostToDevice && emu::stream_mode() == 2) emu::run_stream(s);
  return e;
}
cudaError_t cudaMemcpyPeerAsync(void* dst, int, const void* src, int, size_t n, cudaStream_t s) {
  if (!emu::lazy_streams()) return cudaMemcpy(dst, src, n, cudaMemcpyDefault);
  if (n == 0) return cudaSuccess;
  return queue_copy(dst, n, src, n, cudaMemcpyDeviceToDevice, s,
                    [n](void* d, const void* from) { std::memmove(d, from, n); });
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind k, cudaStream_t s) {
  if (width > dpitch || width > spitch) return emu::S.last = cudaErrorInvalidValue;
  auto copy = [dpitch, spitch, width, height](void* d, const void* from) {
    for (size_t r = 0; r < height; ++r)
      std::memmove(static_cast<char*>(d) + r * dpitch, static_cast<const char*>(from) + r * spitch, width);
  };
  if (!emu::lazy_streams()) {
    copy(dst, src);
    return cudaSuccess;
  }
  if (width == 0 || height == 0) return cudaSuccess;
  return queue_copy(dst, (height - 1) * dpitch + width, src, (height - 1) * spitch + width, k, s, copy);
}
cudaError_t cudaMemset(void* p, int v, size_t n) {
  cudaError_t e = cudaSuccess;
  if (emu::lazy_streams()) {  // after every queued item, as a synchronous memset runs
    emu::run_streams(-1);
    e = emu::take_error(emu::S.device);
  }
  if (n) std::memset(p, v, n);
  return e;
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t s) {
  if (!emu::lazy_streams()) return cudaMemset(p, v, n);
  if (n) emu::enqueue_work(s, [p, v, n]() { std::memset(p, v, n); });
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  auto st = std::make_shared<CUstream_st>();
  st->device = emu::S.device;
  st->blocking = (flags & cudaStreamNonBlocking) == 0;
  std::lock_guard<std::mutex> lk(emu::streams().mu);
  emu::streams().live.push_back(st);
  *s = st.get();
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (!s) return cudaSuccess;
  if (emu::lazy_streams()) emu::run_stream(s);  // CUDA finishes a destroyed stream's work
  std::lock_guard<std::mutex> lk(emu::streams().mu);
  auto& live = emu::streams().live;
  for (auto it = live.begin(); it != live.end(); ++it)
    if (it->get() == s) {
      live.erase(it);  // events recorded on it keep it
      break;
    }
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  ++emu::g_stats.host_waits;
  if (!emu::lazy_streams()) return cudaSuccess;
  CUstream_st* st;
  uint64_t target;
  {
    std::lock_guard<std::mutex> lk(emu::streams().mu);
    st = emu::resolve_locked(s);
    target = st->issued;
  }
  emu::run_until(st, target);
  return emu::take_error(st->device);
}
cudaError_t cudaStreamQuery(cudaStream_t s) {
  if (!emu::lazy_streams()) return cudaSuccess;
  std::lock_guard<std::mutex> lk(emu::streams().mu);
  CUstream_st* st = emu::resolve_locked(s);
  return st->executed < st->issued ? cudaErrorNotReady : cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  if (!emu::lazy_streams()) return cudaSuccess;
  if (!e) return cudaErrorInvalidValue;
  std::shared_ptr<CUstream_st> on;
  {
    std::lock_guard<std::mutex> lk(emu::streams().mu);
    if (!e->stream || e->stream->executed >= e->seq) return cudaSuccess;  // never recorded, or complete
    on = e->stream;
  }
  emu::Item w;
  w.wait_stream = on;
  w.wait_seq = e->seq;
  emu::push(s, std::move(w));
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new CUevent_st();
  (*e)->device = emu::S.device;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!emu::lazy_streams()) return cudaSuccess;
  if (!e) return cudaErrorInvalidValue;
  uint64_t seq = 0;
  CUstream_st* st = emu::push(s, emu::Item(), &seq);  // a marker
  std::lock_guard<std::mutex> lk(emu::streams().mu);
  e->stream = st->shared_from_this();
  e->seq = seq;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  ++emu::g_stats.host_waits;
  if (!emu::lazy_streams()) return cudaSuccess;
  if (!e) return cudaErrorInvalidValue;
  std::shared_ptr<CUstream_st> on;
  uint64_t seq;
  {
    std::lock_guard<std::mutex> lk(emu::streams().mu);
    on = e->stream;
    seq = e->seq;
  }
  if (!on) return cudaSuccess;
  emu::run_until(on.get(), seq);
  return emu::take_error(on->device);
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
  if (!emu::lazy_streams()) return cudaSuccess;
  if (!e) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lk(emu::streams().mu);
  return !e->stream || e->stream->executed >= e->seq ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  if (e) {
    std::lock_guard<std::mutex> lk(emu::streams().mu);  // a record may be assigning its stream
    e->stream.reset();
  }
  delete e;  // a queued wait keeps its stream and position
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  ++emu::g_stats.host_waits;
  if (!emu::lazy_streams()) return cudaSuccess;
  emu::run_streams(emu::S.device);
  return emu::take_error(emu::S.device);
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
// The products run on the handle's stream (queued in lazy mode): alpha and beta are read at the
// call (CUBLAS_POINTER_MODE_HOST), the matrices when the product runs.
LAMINA_EMU_EXPORT int cublasSgemm_v2(void* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* A,
                                     int lda, const float* B, int ldb, const float* beta, float* C, int ldc) {
  if (!valid(ta, tb, m, n, k, lda, ldb, ldc)) return kStatusInvalid;
  ++emu::g_stats.cublas_calls;
  if (emu::skip_kernels()) return 0;
  const float al = *alpha, be = *beta;
  emu::enqueue_work(static_cast<EmuHandle*>(h)->stream, [=]() {
    gemm(ta, tb, m, n, k, al, A, kR32F, lda, B, kR32F, ldb, be, C, kR32F, ldc);
  });
  return 0;
}
LAMINA_EMU_EXPORT int cublasSgemmStridedBatched(void* h, int ta, int tb, int m, int n, int k, const float* alpha,
                                                const float* A, int lda, long long sa, const float* B, int ldb,
                                                long long sb, const float* beta, float* C, int ldc, long long sc,
                                                int batches) {
  if (!valid(ta, tb, m, n, k, lda, ldb, ldc) || batches < 0) return kStatusInvalid;
  ++emu::g_stats.cublas_calls;
  if (emu::skip_kernels()) return 0;
  const float al = *alpha, be = *beta;
  emu::enqueue_work(static_cast<EmuHandle*>(h)->stream, [=]() {
    for (int i = 0; i < batches; ++i)
      gemm(ta, tb, m, n, k, al, A + i * sa, kR32F, lda, B + i * sb, kR32F, ldb, be, C + i * sc, kR32F, ldc);
  });
  return 0;
}
LAMINA_EMU_EXPORT int cublasGemmStridedBatchedEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha,
                                                 const void* A, int at, int lda, long long sa, const void* B, int bt,
                                                 int ldb, long long sb, const void* beta, void* C, int ct, int ldc,
                                                 long long sc, int batches, int compute, int) {
  const int kCompute32F = 68;
  if (!valid(ta, tb, m, n, k, lda, ldb, ldc) || batches < 0 || compute != kCompute32F) return kStatusInvalid;
  for (int t : {at, bt, ct})
    if (t != kR32F && t != kR16BF) return kStatusInvalid;
  ++emu::g_stats.cublas_calls;
  if (emu::skip_kernels()) return 0;
  const size_t ea = at == kR16BF ? 2 : 4, eb = bt == kR16BF ? 2 : 4, ec = ct == kR16BF ? 2 : 4;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  emu::enqueue_work(static_cast<EmuHandle*>(h)->stream, [=]() {
    for (int i = 0; i < batches; ++i)
      gemm(ta, tb, m, n, k, al, static_cast<const char*>(A) + i * sa * ea, at, lda,
           static_cast<const char*>(B) + i * sb * eb, bt, ldb, be, static_cast<char*>(C) + i * sc * ec, ct, ldc);
  });
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
// The error a launch raised (sync mode) or the next synchronising call returned (lazy mode), "" if none.
std::string launch_failure(const std::function<void()>& launch) {
  try {
    launch();
  } catch (const std::exception& e) {
    return e.what();
  }
  const cudaError_t e = cudaDeviceSynchronize();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

// LAMINA_CUDA_EMULATOR_STREAMS=lazy: work runs as late as CUDA allows, so what a program forgot
// to wait for shows.
std::string lazy_streams_check() {
  using emu::LaunchConfig;
  if (!emu::lazy_streams()) return "needs LAMINA_CUDA_EMULATOR_STREAMS=lazy";
  constexpr int n = 64;
  constexpr size_t bytes = n * sizeof(int);
  cudaStream_t a = nullptr, b = nullptr;  // b is the newer
  cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking);
  cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking);
  void *vsrc, *vbuf, *vout;
  cudaMalloc(&vsrc, bytes);
  cudaMalloc(&vbuf, bytes);
  cudaMalloc(&vout, bytes);
  int *src = static_cast<int*>(vsrc), *buf = static_cast<int*>(vbuf), *out = static_cast<int*>(vout);
  int* pin = nullptr;
  cudaHostAlloc(reinterpret_cast<void**>(&pin), bytes, cudaHostAllocDefault);
  std::vector<int> page(n);
  auto fill = [](int* p, int v) { p[threadIdx.x] = v; };
  auto times10 = [](const int* in, int* o) { o[threadIdx.x] = in[threadIdx.x] * 10; };
  std::string err;
  auto expect = [&](bool ok, const char* what) {
    if (!ok && err.empty()) err = what;
  };
  emu::launch(LaunchConfig(1, n, 0, a), fill, src, 7);
  emu::launch(LaunchConfig(1, n, 0, a), fill, buf, 1);
  expect(src[0] != 7 && cudaStreamQuery(a) == cudaErrorNotReady, "a kernel ran before its stream was waited for");
  expect(cudaStreamSynchronize(a) == cudaSuccess && src[n - 1] == 7 && buf[0] == 1, "cudaStreamSynchronize");
  expect(cudaStreamQuery(a) == cudaSuccess, "cudaStreamQuery: an idle stream not ready");

  // A copy on a, a kernel on b that reads its destination: without a wait it reads the old data.
  cudaMemcpyAsync(buf, src, bytes, cudaMemcpyDeviceToDevice, a);
  emu::launch(LaunchConfig(1, n, 0, b), times10, buf, out);
  cudaStreamSynchronize(b);
  expect(out[0] == 10, "a kernel saw a copy of another stream it did not wait for");
  expect(cudaStreamQuery(a) == cudaErrorNotReady, "a stream nobody waited for ran");
  cudaStreamSynchronize(a);
  // With an event recorded after the copy and cudaStreamWaitEvent (the event destroyed at once,
  // as CUDA allows), it reads the copy.
  emu::launch(LaunchConfig(1, n, 0, a), fill, buf, 1);
  cudaMemcpyAsync(buf, src, bytes, cudaMemcpyDeviceToDevice, a);
  cudaEvent_t e = nullptr;
  cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
  cudaEventRecord(e, a);
  expect(cudaEventQuery(e) == cudaErrorNotReady, "cudaEventQuery: complete before its stream ran");
  cudaStreamWaitEvent(b, e, 0);
  cudaEventDestroy(e);
  emu::launch(LaunchConfig(1, n, 0, b), times10, buf, out);
  cudaStreamSynchronize(b);
  expect(out[0] == 70 && out[n - 1] == 70, "cudaStreamWaitEvent: the kernel did not see the copy it waited for");
  cudaEventCreate(&e);
  expect(cudaEventQuery(e) == cudaSuccess, "cudaEventQuery: an event never recorded is not complete");
  emu::launch(LaunchConfig(1, n, 0, a), fill, out, 3);
  cudaEventRecord(e, a);
  emu::launch(LaunchConfig(1, n, 0, a), fill, out, 4);
  expect(cudaEventSynchronize(e) == cudaSuccess && out[0] == 3 && cudaEventQuery(e) == cudaSuccess,
         "cudaEventSynchronize: did not run its stream up to the event, and no further");
  cudaStreamSynchronize(a);
  cudaEventDestroy(e);

  // From pinned memory the copy reads the source when it runs; from pageable memory at the call.
  for (int i = 0; i < n; ++i) pin[i] = 1, page[size_t(i)] = 2;
  cudaMemcpyAsync(buf, pin, bytes, cudaMemcpyHostToDevice, a);
  cudaMemcpyAsync(out, page.data(), bytes, cudaMemcpyHostToDevice, a);
  for (int i = 0; i < n; ++i) pin[i] = 3, page[size_t(i)] = 4;
  cudaStreamSynchronize(a);
  expect(buf[0] == 3, "a copy from pinned memory read its source before it ran");
  expect(out[0] == 2, "a copy from pageable memory did not take its source at the call");
  // To pinned memory the bytes land when the copy runs; to pageable memory the call waits.
  for (int i = 0; i < n; ++i) pin[i] = 0;
  cudaMemcpyAsync(pin, src, bytes, cudaMemcpyDeviceToHost, a);
  expect(pin[0] == 0 && pin[n - 1] == 0, "a copy to pinned memory landed before its stream ran");
  cudaStreamSynchronize(a);
  expect(pin[0] == 7, "a copy to pinned memory did not land");
  emu::launch(LaunchConfig(1, n, 0, a), fill, buf, 9);
  cudaMemcpyAsync(page.data(), buf, bytes, cudaMemcpyDeviceToHost, a);
  expect(page[0] == 9 && page[size_t(n) - 1] == 9, "a copy to pageable memory returned before it ran");

  // A launch's arguments are copied at the launch; a bad configuration is reported by it.
  {
    int v = 5;
    emu::launch(LaunchConfig(1, n, 0, a), fill, out, v);
    v = 6;
  }
  emu::launch(LaunchConfig(1, 2048, 0, a), fill, out, 8);
  expect(cudaGetLastError() == cudaErrorInvalidConfiguration, "a bad configuration not reported by its launch");
  cudaStreamSynchronize(a);
  expect(out[0] == 5, "a queued launch did not keep its arguments' values");

  // A kernel that fails runs later: the next synchronising call returns it, once.
  emu::launch(LaunchConfig(1, 32, 0, a), [](int) {
    if (threadIdx.x < 16) __syncthreads();
    else __syncwarp();
  }, 0);
  expect(cudaGetLastError() == cudaSuccess, "a queued kernel failed at its launch");
  const cudaError_t failed = cudaStreamSynchronize(a);
  expect(failed == cudaErrorLaunchFailure && std::string(cudaGetErrorString(failed)).find("deadlock") != std::string::npos,
         "a queued kernel's deadlock not returned by cudaStreamSynchronize");
  expect(cudaStreamSynchronize(a) == cudaSuccess, "a kernel's error returned twice");

  // Streams that must all run go newest first: b reads buf before a's copy writes it.
  emu::launch(LaunchConfig(1, n, 0, a), fill, buf, 1);
  cudaStreamSynchronize(a);
  cudaMemcpyAsync(buf, src, bytes, cudaMemcpyDeviceToDevice, a);
  emu::launch(LaunchConfig(1, n, 0, b), times10, buf, out);
  cudaDeviceSynchronize();
  expect(out[0] == 10 && buf[0] == 7, "cudaDeviceSynchronize: streams not run newest first");

  // The legacy default stream (nullptr) and blocking streams (cudaStreamCreate's) wait for each
  // other's earlier work; non-blocking streams do not.
  cudaStream_t blocking = nullptr;
  cudaStreamCreate(&blocking);
  emu::launch(LaunchConfig(1, n, 0, a), fill, buf, 1);
  cudaStreamSynchronize(a);
  cudaMemcpyAsync(buf, src, bytes, cudaMemcpyDeviceToDevice, blocking);
  emu::launch(LaunchConfig(1, n, 0, nullptr), times10, buf, out);
  cudaStreamSynchronize(nullptr);
  expect(out[0] == 70, "the legacy default stream did not wait for a blocking stream");
  emu::launch(LaunchConfig(1, n, 0, a), fill, buf, 1);
  cudaStreamSynchronize(a);
  cudaMemcpyAsync(buf, src, bytes, cudaMemcpyDeviceToDevice, a);
  emu::launch(LaunchConfig(1, n, 0, nullptr), times10, buf, out);
  cudaStreamSynchronize(nullptr);
  expect(out[0] == 10, "the legacy default stream waited for a non-blocking stream");
  cudaStreamSynchronize(a);
  emu::launch(LaunchConfig(1, n, 0, nullptr), fill, buf, 2);
  emu::launch(LaunchConfig(1, n, 0, blocking), times10, buf, out);
  cudaStreamSynchronize(blocking);
  expect(out[0] == 20, "a blocking stream did not wait for the legacy default stream");
  cudaStreamDestroy(blocking);

  // cuBLAS: alpha at the call, the matrices when the product runs.
  void* handle = nullptr;
  cublasCreate_v2(&handle);
  cublasSetStream_v2(handle, a);
  float* m = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&m), 3 * sizeof(float));
  m[0] = 2.f, m[1] = 3.f;
  float alpha = 1.f, beta = 0.f;
  cublasSgemm_v2(handle, 0, 0, 1, 1, 1, &alpha, m, 1, m + 1, 1, &beta, m + 2, 1);
  alpha = 100.f;
  m[0] = 4.f;
  cudaStreamSynchronize(a);
  expect(m[2] == 12.f, "cublasSgemm: not run on its stream with the call's alpha and the run's matrices");

  // A stream of more than 100,000 items runs its oldest half.
  cudaMemsetAsync(buf, 0x11, sizeof(int), a);
  for (int i = 0; i < 100000; ++i) cudaMemsetAsync(out, 0, sizeof(int), a);
  expect(buf[0] == 0x11111111 && cudaStreamQuery(a) == cudaErrorNotReady, "a long queue was not cut down");

  cudaFree(m);  // runs every stream first
  expect(cudaStreamQuery(a) == cudaSuccess, "cudaFree did not run the queued work");
  delete static_cast<EmuHandle*>(handle);
  cudaFree(vsrc);
  cudaFree(vbuf);
  cudaFree(vout);
  cudaFreeHost(pin);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
  return err;
}

std::string selftest(int which) {
  using emu::LaunchConfig;
  switch (which) {
    case 0: {  // warp shuffles: every lane gets its warp's sum; partial last warp
      std::vector<int> out(80, -1);
      emu::launch(LaunchConfig(1, 80), [](int* o) {
        int v = int(threadIdx.x);
        for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
        o[threadIdx.x] = v;
      }, out.data());
      cudaDeviceSynchronize();
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
      emu::launch(LaunchConfig(3, 256), [](float* o) {
        __shared__ float s[256];
        s[threadIdx.x] = float(threadIdx.x + blockIdx.x);
        __syncthreads();
        const float v = s[255 - threadIdx.x];
        __syncthreads();
        if (blockIdx.x == 2) o[threadIdx.x] = v;
      }, out.data());
      cudaDeviceSynchronize();
      for (int t = 0; t < 256; ++t)
        if (out[size_t(t)] != float(255 - t + 2)) return "barrier: thread " + std::to_string(t) + " read " + std::to_string(out[size_t(t)]);
      return "";
    }
    case 2: {  // more than 1024 threads a block: nothing runs, cudaGetLastError says why
      int ran = 0;
      emu::launch(LaunchConfig(1, 2048), [](int* r) { *r = 1; }, &ran);
      const cudaError_t e = cudaGetLastError();
      cudaDeviceSynchronize();
      if (e != cudaErrorInvalidConfiguration || ran) return "2048 threads: error " + std::to_string(int(e));
      return cudaGetLastError() == cudaSuccess ? "" : "the error was not cleared";
    }
    case 3: {  // a deadlock (half a warp at __syncthreads, half at __syncwarp) is raised, and the next launch works
      const std::string e = launch_failure([] {
        emu::launch(LaunchConfig(1, 32), [](int) {
          if (threadIdx.x < 16) __syncthreads();
          else __syncwarp();
        }, 0);
      });
      if (e.empty()) return "no deadlock reported";
      if (e.find("deadlock") == std::string::npos) return "deadlock: " + e;
      return selftest(1);
    }
    case 4: {  // thread 0 leaves, thread 1 takes a barrier: a clear error, and the next launch works
      const std::string e = launch_failure([] {
        emu::launch(LaunchConfig(1, 64), [](int) {
          if (threadIdx.x == 0) return;
          __syncthreads();
        }, 0);
      });
      if (e.empty()) return "no error for a barrier thread 0 skipped";
      if (e.find("let thread 0 reach it") == std::string::npos) return "early exit: " + e;
      return selftest(0);
    }
    case 5:
      return lazy_streams_check();
  }
  return "no such check";
}
}  // namespace

// Runs the emulator's check `which` (0..4 in either stream mode, 5: LAMINA_CUDA_EMULATOR_STREAMS=lazy
// only); returns 0 and an empty message when it passes.
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
