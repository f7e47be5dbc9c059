// Shared definitions for every kernel file: dtypes, the Buffer type, argument checks, threads.
#pragma once
#include <omp.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "checks.h"
#include "types.h"

namespace lamina {

// Host memory comes from a caching allocator: freed blocks are kept in size classes and handed
// out again, so steady-state training never returns memory to the OS nor page-faults it back in.
void* host_alloc(size_t nbytes, size_t* rounded);
void host_free(void* p, size_t rounded);

// A float scratch block of at least one float from the caching allocator: steady-state calls get
// the same block back (no page faults).
struct Scratch {
  float* p = nullptr;
  size_t cap = 0;
  explicit Scratch(int64_t n) {
    p = static_cast<float*>(host_alloc(size_t(n > 1 ? n : 1) * sizeof(float), &cap));
  }
  ~Scratch() { host_free(p, cap); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// A block of device memory holding `numel` elements of `dtype` on device `device` (the index N
// of cpu:N). Tensors own one (shared between a tensor and its reshapes); kernels read and write
// through it. `last_use` is the sequence number of the last queued kernel that touched it on
// its device (device.h): reading it on the host waits for that kernel only.
struct Buffer {
  void* ptr = nullptr;
  int64_t numel = 0;
  DType dtype = F32;
  size_t capacity = 0;  // bytes actually reserved (rounded size class)
  int device = 0;
  std::atomic<int64_t> last_use{0};
  Buffer(int64_t n, DType dt, int dev = 0);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  template <class T> T* data() { return static_cast<T*>(ptr); }
  template <class T> const T* data() const { return static_cast<const T*>(ptr); }
};
using BufferPtr = std::shared_ptr<Buffer>;


// Threads: the team size of the calling thread's parallel loops. Each device sets it for its
// own kernels (device.h); LAMINA_NUM_THREADS sets the default, all cores otherwise.
int num_threads();
void set_num_threads(int n);
// Elements as float: float32 itself, or bfloat16 (uint16 bits; mixed precision), rounded once on
// store. Kernels templated on the element type read and write through these.
inline float ld(const float* p, int64_t i) { return p[i]; }
inline float ld(const uint16_t* p, int64_t i) { return bf16_to_f32(p[i]); }
inline void st(float* p, int64_t i, float v) { p[i] = v; }
inline void st(uint16_t* p, int64_t i, float v) { p[i] = f32_to_bf16(v); }

// Elements below which a loop runs on one thread (thread start-up costs more than it saves).
constexpr int64_t kParallelGrain = 1 << 15;

// Loops that run on a team only when `par`. An `omp parallel if (false)` region still makes and
// tears down a team of one in libgomp (about 0.3 us, more than a small kernel's whole work), so
// these take the plain path when par is false: run_parallel calls body(threads, thread) on a
// team or body(1, 0) here; parallel_for calls f(i) for i in [0, n), split statically on a team.
template <class Body>
inline void run_parallel(bool par, Body&& body) {
  if (!par) {
    body(1, 0);
    return;
  }
#pragma omp parallel
  body(omp_get_num_threads(), omp_get_thread_num());
}

template <class F>
inline void parallel_for(int64_t n, bool par, F&& f) {
  if (!par || n <= 1) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace lamina
