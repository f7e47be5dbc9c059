// The CUDA module's kernels as bindable calls (module.cpp's def_kernel): a kernel of the device table
// is called from Python as before, and bind_call can instead keep its converted arguments, so that a
// replayed step (models/replay.py) runs as one compiled Program from a single Python call -- the
// CPU module's scheme (csrc/device.h, csrc/cpu/program.cpp) for the GPU's Buffer. A GPU call only
// queues work on its device's stream, so a Program runs its calls in order on the calling thread.
#pragma once
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../program_io.h"
#include "gpu.h"

namespace lamina {
namespace gpu {

// An optional Buffer argument (Buffer* / const Buffer*): None or a Buffer, None checked first (see
// csrc/device.h's OptBuffer: pybind11's holder caster takes about 0.5 us to accept None).
struct OptBuffer {
  BufferPtr p;
};

}  // namespace gpu
}  // namespace lamina

namespace pybind11 {
namespace detail {
template <>
struct type_caster<lamina::gpu::OptBuffer> {
  PYBIND11_TYPE_CASTER(lamina::gpu::OptBuffer, const_name("Buffer | None"));
  bool load(handle src, bool convert) {
    if (src.is_none()) {
      value.p.reset();
      return true;
    }
    type_caster<lamina::gpu::BufferPtr> inner;
    if (!inner.load(src, convert)) return false;
    value.p = static_cast<lamina::gpu::BufferPtr&>(inner);
    return true;
  }
  static handle cast(const lamina::gpu::OptBuffer& v, return_value_policy policy, handle parent) {
    if (!v.p) return none().release();
    return type_caster<lamina::gpu::BufferPtr>::cast(v.p, policy, parent);
  }
};
}  // namespace detail
}  // namespace pybind11

namespace lamina {
namespace gpu {

template <class T>
using bdecay_t = std::remove_cv_t<std::remove_reference_t<T>>;

// How a kernel parameter is held in a bound call: Buffers as shared pointers (a required one raises
// on None), everything else by value.
template <class T, class D = bdecay_t<T>>
struct BindArg {
  using type = D;
  static const D& get(const D& v) { return v; }
  static void check(const char*, int, const D&) {}
};
template <class T>
struct BindArg<T, Buffer> {
  using type = BufferPtr;
  static Buffer& get(const BufferPtr& p) { return *p; }
  static void check(const char* name, int position, const BufferPtr& p) {
    if (!p)
      throw TypeError(std::string(name) + ": argument " + std::to_string(position) +
                      " must be a Buffer, received None");
  }
};
template <class T>
struct BindArg<T, Buffer*> {
  using type = OptBuffer;
  static Buffer* get(const OptBuffer& o) { return o.p.get(); }
  static void check(const char*, int, const OptBuffer&) {}
};
template <class T>
struct BindArg<T, const Buffer*> {
  using type = OptBuffer;
  static const Buffer* get(const OptBuffer& o) { return o.p.get(); }
  static void check(const char*, int, const OptBuffer&) {}
};

// A kernel call with its arguments kept: its buffer slots can be refilled before each run.
struct BoundCall {
  virtual ~BoundCall() = default;
  virtual void run() = 0;
  // Sets the integer argument at `position` (a random draw's seed or counter, new at every run);
  // false if that argument is not an integer.
  virtual bool set_int(int position, uint64_t value) = 0;
  std::vector<BufferPtr*> buffers;  // every buffer argument, in order
  const char* name = "";
};
using BoundCallPtr = std::shared_ptr<BoundCall>;

// Set on a thread by bind_call: the next kernel called binds instead of running.
extern thread_local BoundCallPtr* t_bind_target;
std::unordered_set<std::string>& bindable_kernels();

template <class R, class... Args>
struct BoundKernel : BoundCall {
  R (*fn)(Args...);
  std::tuple<typename BindArg<Args>::type...> args;

  BoundKernel(R (*f)(Args...), const char* n, typename BindArg<Args>::type... a) : fn(f), args(a...) {
    name = n;
    buffers = buffer_slots<BufferPtr, OptBuffer>(args);
  }

  void run() override {
    std::apply([this](const auto&... v) { fn(BindArg<Args>::get(v)...); }, args);
  }
  bool set_int(int position, uint64_t value) override {
    return set_tuple_int(args, position, value, std::index_sequence_for<Args...>{});
  }
};

template <class R, class... Args>
struct KernelCall {
  R (*fn)(Args...);
  const char* name;

  R operator()(typename BindArg<Args>::type... a) const {
    int position = 0;
    (BindArg<Args>::check(name, ++position, a), ...);
    if constexpr (std::is_void<R>::value) {
      if (t_bind_target) {  // bind_call: keep the converted arguments, run nothing
        *t_bind_target = std::make_shared<BoundKernel<R, Args...>>(fn, name, a...);
        return;
      }
    }
    return fn(BindArg<Args>::get(a)...);
  }
};

// Defines `fn` as the kernel `name`; those returning nothing can be bound into Programs.
template <class R, class... Args, class... Extra>
void def_kernel(pybind11::module_& m, const char* name, R (*fn)(Args...), const Extra&... extra) {
  m.def(name, KernelCall<R, Args...>{fn, name}, extra...);
  if constexpr (std::is_void<R>::value) bindable_kernels().insert(name);
}

}  // namespace gpu
}  // namespace lamina
