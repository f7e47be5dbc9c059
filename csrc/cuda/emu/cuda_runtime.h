// The CUDA emulator's <cuda_runtime.h>: lets g++ compile csrc/cuda/*.cu (after
// csrc/cuda/emu/rewrite.py turns each `kernel<<<grid, block, shared, stream>>>(args)` into an
// emu::launch call) into `lamina.backend._cuda_emu`, a module with the CUDA module's functions
// whose kernels run on the CPU. It is a test tool: with LAMINA_CUDA_EMULATOR=1 the gpu:N devices
// use it, so tests/gpu checks every CUDA kernel's logic (indexing, barriers, warp shuffles,
// atomics, launch limits) on machines without a GPU. It says nothing about speed, and a data
// race between threads shows only where the emulator's thread order exposes it.
//
// The model: one host thread runs a launch's blocks one after another. Each block's CUDA threads
// run as fibers (ucontext) when the kernel calls __syncthreads or a warp shuffle, switched at each
// barrier; kernels without barriers run thread by thread as plain calls.
// LAMINA_CUDA_EMULATOR_ORDER=reverse runs blocks and threads last first (races show as differences).
// LAMINA_CUDA_EMULATOR_PROFILE=FILE writes, at exit, each kernel's launches, CUDA threads and its
// longest thread (host time): a kernel whose single thread works long is a serial bottleneck on
// a GPU, whatever the emulator's own speed. LAMINA_CUDA_EMULATOR_SKIP_KERNELS=1 runs no kernel
// (results are garbage): what a step then takes is the host's own work, the floor of a GPU step. __shared__ arrays are
// static (one copy per host thread, reused by each block). Memory is host memory. A copy to the
// device from pageable host memory (not cudaHostAlloc's) counts as a host wait, as CUDA's waits
// for the stream.
//
// Streams, LAMINA_CUDA_EMULATOR_STREAMS:
//  - sync (the default): streams and events are synchronous: a kernel, copy or library call has
//    run when it returns.
//  - lazy: work is queued per stream (the legacy default stream too, one per device) and runs as
//    late as CUDA allows, so a missing dependency between streams or a host read without a wait
//    shows. Queued: kernel launches (the configuration is checked at the launch and reported by
//    cudaGetLastError; the arguments are copied then), cudaMemcpyAsync, cudaMemcpy2DAsync,
//    cudaMemcpyPeerAsync, cudaMemsetAsync, the emulator's cuBLAS calls and cuDNN convolutions
//    (scalars read at the call, data at execution). A copy from pageable host memory snapshots
//    the source at the call; from pinned memory (cudaHostAlloc) it reads the source when it runs.
//    A copy to pageable host memory runs its stream first; to pinned memory it lands when it
//    runs. cudaEventRecord queues a marker (the event is complete once it ran);
//    cudaStreamWaitEvent queues a wait that first runs the event's stream up to its marker.
//    Work runs only when the host waits: cudaStreamSynchronize (the stream), cudaEventSynchronize
//    (the event's stream up to the marker), cudaDeviceSynchronize (every stream of the device),
//    cudaMemcpy / cudaMemset / cudaFree / cudaFreeHost (every stream), an NCCL collective (its
//    stream; the collective itself runs at once), or a stream holding more than 100,000 items
//    (its oldest half). Streams that must all run go newest first. A kernel's exception or
//    deadlock becomes a sticky cudaErrorLaunchFailure of its device, returned by the next
//    synchronising call or cudaGetLastError (cudaGetErrorString gives the emulator's message).
//  - lazy-early-copies: lazy, except that a cudaMemcpyAsync to the device runs its stream at once
//    (the copy ahead of kernels still queued on other streams), so a buffer a copy overwrites while
//    queued kernels still read it shows (lazy runs copies late, which hides that).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#define LAMINA_CUDA_EMULATED 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __constant__
#define __shared__ static thread_local

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
constexpr int warpSize = 32;

// ---- the runtime API (host memory; streams synchronous or lazy, see above) -------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorNotReady = 600,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;
constexpr unsigned cudaStreamNonBlocking = 1, cudaEventDisableTiming = 2;
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int multiProcessorCount, major, minor, warpSize, maxThreadsPerBlock;
};

cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaMalloc(void** p, size_t n);
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind k, cudaStream_t s = nullptr);
cudaError_t cudaMemcpyPeerAsync(void* dst, int dd, const void* src, int sd, size_t n, cudaStream_t s = nullptr);
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind k, cudaStream_t s = nullptr);
constexpr unsigned cudaHostAllocDefault = 0;
cudaError_t cudaHostAlloc(void** p, size_t n, unsigned flags);
cudaError_t cudaMallocHost(void** p, size_t n);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemset(void* p, int v, size_t n);
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t s = nullptr);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaDeviceSynchronize();

// ---- device intrinsics ---------------------------------------------------------------------
namespace emu {
void syncthreads();
void syncwarp();
// Lane `src` of the calling thread's warp gets the value every lane put in (all lanes of the warp
// that have not exited take part, as __shfl_*_sync with a full mask requires).
uint64_t shuffle_bits(uint64_t mine, int src_lane, int width);
int lane_id();
}  // namespace emu

inline void __syncthreads() { emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::syncwarp(); }
inline void __threadfence() {}

namespace emu {
// v from lane `src` of the calling thread's segment of `width` lanes (own value outside it).
template <class T>
inline T shuffle(T v, int src, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type the emulator lacks");
  const int lane = lane_id();
  if (src < 0 || src / width != lane / width) src = lane;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = shuffle_bits(bits, src, width);
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}
}  // namespace emu

template <class T>
inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
  return emu::shuffle(v, (emu::lane_id() / width) * width + ((src % width) + width) % width, width);
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  return emu::shuffle(v, emu::lane_id() ^ mask, width);
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  return emu::shuffle(v, emu::lane_id() + int(delta), width);
}
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
  return emu::shuffle(v, emu::lane_id() - int(delta), width);
}

// One host thread runs a launch: atomics are plain read-modify-writes.
template <class T> inline T atomicAdd(T* p, T v) { T o = *p; *p = o + v; return o; }
template <class T> inline T atomicSub(T* p, T v) { T o = *p; *p = o - v; return o; }
template <class T> inline T atomicMin(T* p, T v) { T o = *p; if (v < o) *p = v; return o; }
template <class T> inline T atomicMax(T* p, T v) { T o = *p; if (v > o) *p = v; return o; }
template <class T> inline T atomicExch(T* p, T v) { T o = *p; *p = v; return o; }
template <class T> inline T atomicCAS(T* p, T cmp, T v) { T o = *p; if (o == cmp) *p = v; return o; }
template <class T> inline T atomicOr(T* p, T v) { T o = *p; *p = o | v; return o; }
template <class T> inline T atomicAnd(T* p, T v) { T o = *p; *p = o & v; return o; }

// Rounding-mode intrinsics: the emulator is compiled with -ffp-contract=off, so these are the
// plain IEEE operations (round to nearest), as on the device.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fma_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz(unsigned(x)) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
template <class To, class From>
inline To emu_bits(From v) {
  static_assert(sizeof(To) == sizeof(From), "bit cast of different sizes");
  To r;
  std::memcpy(&r, &v, sizeof(To));
  return r;
}
inline double __longlong_as_double(long long v) { return emu_bits<double>(v); }
inline long long __double_as_longlong(double v) { return emu_bits<long long>(v); }
inline float __int_as_float(int v) { return emu_bits<float>(v); }
inline int __float_as_int(float v) { return emu_bits<int>(v); }
inline float __uint_as_float(unsigned v) { return emu_bits<float>(v); }
inline unsigned __float_as_uint(float v) { return emu_bits<unsigned>(v); }
// CUDA's global math overloads of device code
using std::isfinite;
using std::isinf;
using std::isnan;
using std::signbit;
// CUDA's min/max overloads of device code
using std::max;
using std::min;

// ---- launches -------------------------------------------------------------------------------
namespace emu {
struct LaunchConfig {
  dim3 grid, block;
  size_t shared;
  cudaStream_t stream;
  const char* name = "kernel";  // the kernel's expression in the source (rewrite.py), for profiles
  LaunchConfig(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = nullptr) : grid(g), block(b), shared(s), stream(st) {}
  LaunchConfig named(const char* n) const {
    LaunchConfig c = *this;
    c.name = n;
    return c;
  }
};
// Runs body once per CUDA thread of every block (sets threadIdx, blockIdx, blockDim, gridDim).
// An invalid configuration runs nothing and is reported by cudaGetLastError, as on a device.
void run(const LaunchConfig& cfg, const std::function<void()>& body);
// A launch: checks the configuration (cudaGetLastError reports a bad one), then runs body at once
// (LAMINA_CUDA_EMULATOR_STREAMS=sync) or queues it on cfg.stream (lazy).
void submit(const LaunchConfig& cfg, std::function<void()> body);

// `kernel<<<cfg>>>(args)` becomes `emu::launch(LaunchConfig(cfg), [=](auto&... a) { kernel(a...); }, args)`
// (rewrite.py): the arguments are evaluated once and copied by value with the kernel (a queued
// launch runs after the caller's locals are gone), and each CUDA thread gets its own copies.
template <class K, class... Args>
void launch(const LaunchConfig& cfg, K kernel, Args&&... args) {
  auto values = std::make_shared<std::tuple<std::decay_t<Args>...>>(std::forward<Args>(args)...);
  submit(cfg, [kernel, values]() {
    std::apply([&](auto... copies) { kernel(copies...); }, *values);
  });
}
}  // namespace emu
