// Per-device contexts and the kernel binding that routes every call to its device.
//
// A device module (the CPU one here, the CUDA one later) keeps one DeviceContext per device
// index: its queue of kernel calls, its thread count and its errors. A kernel is bound with
// def_kernel: the binding finds the device from its Buffer arguments (all must be on one
// device), then either runs the kernel at once on the calling thread with the GIL released
// (an "inline" device: cpu:0), or queues it on the device's own worker thread and returns (every
// other device), so work on cpu:0 and cpu:1 runs at the same time. A queued call keeps its
// buffers alive and stamps them with its sequence number, so a host read of a buffer waits only
// for the kernel that last touched it. An error raised by a queued kernel is raised again by
// the next call on that device (or the next wait), as CUDA reports asynchronous errors.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common.h"
#include "program_io.h"

namespace lamina {

// An optional Buffer argument of a kernel (Buffer* / const Buffer*): None or a Buffer. pybind11's
// own holder caster accepts None only after looking for the type in other modules (a failed
// attribute lookup and its error message, about 0.5 us per None); this caster checks None first.
struct OptBuffer {
  BufferPtr p;
};

}  // namespace lamina

namespace pybind11 {
namespace detail {
template <>
struct type_caster<lamina::OptBuffer> {
  PYBIND11_TYPE_CASTER(lamina::OptBuffer, const_name("Buffer | None"));
  bool load(handle src, bool convert) {
    if (src.is_none()) {
      value.p.reset();
      return true;
    }
    type_caster<lamina::BufferPtr> inner;
    if (!inner.load(src, convert)) return false;
    value.p = static_cast<lamina::BufferPtr&>(inner);
    return true;
  }
  static handle cast(const lamina::OptBuffer& v, return_value_policy policy, handle parent) {
    if (!v.p) return none().release();
    return type_caster<lamina::BufferPtr>::cast(v.p, policy, parent);
  }
};
}  // namespace detail
}  // namespace pybind11

namespace lamina {

struct DeviceContext {
  explicit DeviceContext(int i);
  int index;
  std::atomic<bool> inline_exec;  // runs kernels on the calling thread (cpu:0 unless set otherwise)
  std::atomic<int> threads{0};  // team size of this device's kernels; 0 = the process default
  std::mutex mu;
  std::condition_variable work_cv, done_cv;
  std::deque<std::function<void()>> queue;
  int64_t submitted = 0;             // guarded by mu
  std::atomic<int64_t> completed{0};
  std::exception_ptr error;          // the first failure of a queued kernel, guarded by mu
  bool worker_started = false;
};

DeviceContext& device_context(int index);
// Queues `task` on the device's worker; returns its sequence number (1, 2, ...).
int64_t submit(DeviceContext& ctx, std::function<void()> task);
// Blocks (GIL released) until the device has finished the call numbered `seq`; raises a queued error.
void wait_for(DeviceContext& ctx, int64_t seq);
// Switches the device between queued (its own worker) and inline execution; switching to
// inline first waits for the queue to drain.
void set_asynchronous(DeviceContext& ctx, bool asynchronous);
// Raises (and clears) the error a queued kernel left, if any.
void raise_pending(DeviceContext& ctx);
// Sets the calling thread's team size for this device's kernels.
void use_device_threads(const DeviceContext& ctx);
// Waits until the host can read `b` (the last queued kernel that touched it has finished).
void wait_buffer(const Buffer& b);
// A new buffer on `device` holding a copy of a C-contiguous numpy array (memory.cpp).
BufferPtr from_numpy(pybind11::array a, int device, int dtype = -1);
// A numpy copy of a buffer viewed with `shape` (waits for the kernels writing it).
pybind11::array to_numpy(const Buffer& b, const Shape& shape);

// ---- def_kernel ---------------------------------------------------------------------------------
// Python passes Buffers as shared pointers; the kernel receives references (or pointers, for an
// optional buffer). Everything else is copied by value into a queued call.
template <class T>
using kdecay_t = std::remove_cv_t<std::remove_reference_t<T>>;

template <class T, class D = kdecay_t<T>>
struct KernelArg {
  using type = D;
  static constexpr bool required = false;
  static const D& get(const D& v) { return v; }
};
template <class T>
struct KernelArg<T, Buffer> {
  using type = BufferPtr;
  static constexpr bool required = true;  // a Buffer& argument: None is an error
  static Buffer& get(const BufferPtr& p) { return *p; }
};
template <class T>
struct KernelArg<T, Buffer*> {
  using type = OptBuffer;
  static constexpr bool required = false;
  static Buffer* get(const OptBuffer& o) { return o.p.get(); }
};
template <class T>
struct KernelArg<T, const Buffer*> {
  using type = OptBuffer;
  static constexpr bool required = false;
  static const Buffer* get(const OptBuffer& o) { return o.p.get(); }
};

struct KernelBuffers {
  std::vector<Buffer*> all;
  int position = 0;
  void add(const char* name, bool required, const BufferPtr& p) {
    ++position;
    if (p) all.push_back(p.get());
    else if (required) missing(name);
  }
  void add(const char*, bool, const OptBuffer& o) {
    ++position;
    if (o.p) all.push_back(o.p.get());
  }
  void add(const char* name, bool, const std::vector<BufferPtr>& v) {
    ++position;
    for (auto& p : v) {
      if (!p) missing(name);
      all.push_back(p.get());
    }
  }
  template <class T> void add(const char*, bool, const T&) { ++position; }
  [[noreturn]] void missing(const char* name) const;
};

// The device every buffer of a call is on; raises when they differ or there is none.
int kernel_device(const char* name, const std::vector<Buffer*>& bufs);

// ---- bound calls (replayed programs, models/replay.py) -------------------------------------------
// A kernel call with its arguments converted once and kept, to be run again without Python: a
// replayed step or model call is a list of them (Program, csrc/cpu/program.cpp), whose buffer
// arguments can be swapped for each run's own (the batch, the fresh outputs).
struct BoundCall {
  virtual ~BoundCall() = default;
  // Runs the call on this thread (the device runs inline; the GIL is released by the caller).
  virtual void run_inline() = 0;
  // Queues a copy of the call on the device's worker (GIL held) and stamps its buffers.
  virtual void run_queued(DeviceContext& ctx) = 0;
  // Sets the integer argument at `position` (a random draw's seed or counter, new at every run);
  // false if that argument is not an integer.
  virtual bool set_int(int position, uint64_t value) = 0;
  std::vector<BufferPtr*> buffers;  // every buffer argument, in order: the slots a run may refill
  const char* name = "";
};
using BoundCallPtr = std::shared_ptr<BoundCall>;

// Set on a thread by bind_call (program.cpp): the next kernel called binds instead of running.
extern thread_local BoundCallPtr* t_bind_target;
// Names of the kernels bound with def_kernel that return nothing (the ones that can be bound).
void register_bindable(const char* name);

template <class R, class... Args>
struct BoundKernel : BoundCall {
  R (*fn)(Args...);
  std::tuple<typename KernelArg<Args>::type...> args;

  BoundKernel(R (*f)(Args...), const char* n, typename KernelArg<Args>::type... a) : fn(f), args(a...) {
    name = n;
    buffers = buffer_slots<BufferPtr, OptBuffer>(args);
  }

  void run_inline() override {
    std::apply([this](const auto&... v) { fn(KernelArg<Args>::get(v)...); }, args);
  }
  bool set_int(int position, uint64_t value) override {
    return set_tuple_int(args, position, value, std::index_sequence_for<Args...>{});
  }
  void run_queued(DeviceContext& ctx) override {
    auto fn_ = fn;
    auto args_ = args;
    const int64_t seq = submit(ctx, [fn_, args_]() {
      std::apply([fn_](const auto&... v) { fn_(KernelArg<Args>::get(v)...); }, args_);
    });
    for (BufferPtr* p : buffers)
      if (*p) (*p)->last_use.store(seq, std::memory_order_relaxed);
  }
};

template <class R, class... Args>
struct KernelCall {
  R (*fn)(Args...);
  const char* name;

  R operator()(typename KernelArg<Args>::type... a) const {
    if constexpr (std::is_void_v<R>) {
      if (t_bind_target) {  // bind_call: keep the converted arguments, run nothing
        *t_bind_target = std::make_shared<BoundKernel<R, Args...>>(fn, name, a...);
        return;
      }
    }
    KernelBuffers bufs;
    (bufs.add(name, KernelArg<Args>::required, a), ...);
    DeviceContext& ctx = device_context(kernel_device(name, bufs.all));
    if constexpr (std::is_void_v<R>) {
      if (!ctx.inline_exec) {
        auto fn_ = fn;
        auto args = std::make_tuple(a...);
        int64_t seq = submit(ctx, [fn_, args]() {
          std::apply([fn_](const auto&... v) { fn_(KernelArg<Args>::get(v)...); }, args);
        });
        for (Buffer* b : bufs.all) b->last_use.store(seq, std::memory_order_relaxed);
        return;
      }
    } else {
      for (Buffer* b : bufs.all) wait_buffer(*b);  // a result for the host: wait for its inputs
    }
    pybind11::gil_scoped_release nogil;
    use_device_threads(ctx);
    return fn(KernelArg<Args>::get(a)...);
  }
};

// Binds `fn` as a kernel of the device table; `extra` are pybind11 argument annotations.
template <class R, class... Args, class... Extra>
void def_kernel(pybind11::module_& m, const char* name, R (*fn)(Args...), const Extra&... extra) {
  m.def(name, KernelCall<R, Args...>{fn, name}, extra...);
  if constexpr (std::is_void_v<R>) register_bindable(name);
}

}  // namespace lamina
