// Shared definitions for every kernel file: dtypes, the Buffer type, argument checks, threads.
#pragma once
#include <omp.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace lamina {

// I8 holds quantized weights (int8 inference) only: the copies and the quantized kernels
// (quantize.cpp) are the only ones that take it.
enum DType : int { F32 = 0, I32 = 1, I64 = 2, BOOL = 3, I8 = 4 };

inline size_t dtype_size(DType d) { return d == I64 ? 8 : (d == BOOL || d == I8 ? 1 : 4); }
inline const char* dtype_name(DType d) {
  switch (d) {
    case F32: return "float32"; case I32: return "int32"; case I64: return "int64"; case BOOL: return "bool";
    case I8: return "int8";
  }
  return "?";
}

using Shape = std::vector<int64_t>;

inline int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s);

// Host memory comes from a caching allocator: freed blocks are kept in size classes and handed
// out again, so steady-state training never returns memory to the OS nor page-faults it back in.
void* host_alloc(size_t nbytes, size_t* rounded);
void host_free(void* p, size_t rounded);

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

// Argument checks raise ValueError / TypeError in Python (pybind11 translates these).
struct TypeError : std::runtime_error { using std::runtime_error::runtime_error; };
// An allocation that cannot be made (too large, or the system refused): MemoryError in Python.
struct AllocError : std::runtime_error { using std::runtime_error::runtime_error; };

#define LAMINA_CHECK(cond, msg)                                   \
  do {                                                           \
    if (!(cond)) {                                               \
      std::ostringstream _os; _os << msg;                        \
      throw std::invalid_argument(_os.str());                    \
    }                                                            \
  } while (0)

// Checks that a buffer holds exactly the elements a shape describes, with the expected dtype.
void check_buffer(const char* op, const char* arg, const Buffer& b, const Shape& s, DType dt);
void check_dtype(const char* op, const char* arg, const Buffer& b, DType dt);

// Threads: the team size of the calling thread's parallel loops. Each device sets it for its
// own kernels (device.h); LAMINA_NUM_THREADS sets the default, all cores otherwise.
int num_threads();
void set_num_threads(int n);
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
