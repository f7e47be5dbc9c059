// The buffers of a compiled Program (models/replay.py's replayed steps): the CPU module's
// (csrc/cpu/program.cpp) and the CUDA module's (csrc/cuda/module.cpp) both keep, for the
// recording's own input and output buffers, where their bound calls hold them, and swap in each
// run's inputs and fresh outputs there. Templated over the module's buffer pointer type.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "checks.h"

namespace lamina {

template <class BufferPtrT>
struct ProgramIO {
  using BufferT = typename BufferPtrT::element_type;
  struct Spec {
    int64_t numel;
    DType dtype;
    int device;
  };
  struct Slot {
    BufferPtrT* where;
    bool fresh;  // a fresh output buffer (else an input)
    int index;
  };
  std::vector<BufferPtrT> in0, out0;  // the recording's buffers, while the calls are added
  std::vector<Slot> slots;
  std::vector<Spec> inputs, fresh;

  ProgramIO(const std::vector<BufferPtrT>& in, const std::vector<BufferPtrT>& out) : in0(in), out0(out) {
    for (auto& b : in) {
      LAMINA_CHECK(b, "Program: expected input Buffers, received None");
      inputs.push_back(Spec{b->numel, b->dtype, b->device});
    }
    for (auto& b : out) {
      LAMINA_CHECK(b, "Program: expected output Buffers, received None");
      fresh.push_back(Spec{b->numel, b->dtype, b->device});
    }
  }

  // A bound call's buffer argument: a slot to refill if it holds one of the recording's inputs or
  // outputs (an input that is also an output, a model returning its input, stays the input).
  void add(BufferPtrT* p) {
    for (size_t k = 0; k < in0.size(); ++k)
      if (p->get() == in0[k].get()) return slots.push_back({p, false, int(k)});
    for (size_t k = 0; k < out0.size(); ++k)
      if (p->get() == out0[k].get()) return slots.push_back({p, true, int(k)});
  }
  // After the last add: the program keeps no reference to the recording's buffers.
  void done() {
    in0.clear();
    out0.clear();
  }

  void check_inputs(const std::vector<BufferPtrT>& in) const {
    LAMINA_CHECK(in.size() == inputs.size(), "Program.run: expected " << inputs.size() << " input buffers, received "
                                                                      << in.size());
    for (size_t k = 0; k < in.size(); ++k) {
      LAMINA_CHECK(in[k], "Program.run: input " << k << " is None; expected a Buffer");
      const Spec& s = inputs[k];
      LAMINA_CHECK(in[k]->numel == s.numel && in[k]->dtype == s.dtype && in[k]->device == s.device,
                   "Program.run: input " << k << " holds " << in[k]->numel << " elements of dtype code "
                                         << int(in[k]->dtype) << " on device " << in[k]->device << "; the program was "
                                         << "recorded with " << s.numel << " of dtype code " << int(s.dtype)
                                         << " on device " << s.device);
    }
  }

  // run_host's argument counts.
  void check_host(size_t arrays, size_t shapes) const {
    LAMINA_CHECK(arrays == inputs.size(), "Program.run_host: expected " << inputs.size() << " arrays, received "
                                                                        << arrays);
    LAMINA_CHECK(shapes == fresh.size(), "Program.run_host: expected " << fresh.size() << " output shapes, received "
                                                                       << shapes);
  }

  // Fresh output buffers, and every slot filled with this run's buffers; `Fill`'s destructor empties
  // the slots again (the program keeps no reference to its caller's buffers between runs).
  struct Fill {
    ProgramIO* io;
    std::vector<BufferPtrT> made;
    ~Fill() {
      for (const Slot& s : io->slots) s.where->reset();
    }
  };
  std::unique_ptr<Fill> fill(const std::vector<BufferPtrT>& in) {
    check_inputs(in);
    auto f = std::make_unique<Fill>();
    f->io = this;
    f->made.reserve(fresh.size());
    for (const Spec& s : fresh) f->made.push_back(std::make_shared<BufferT>(s.numel, s.dtype, s.device));
    for (const Slot& s : slots) *s.where = s.fresh ? f->made[size_t(s.index)] : in[size_t(s.index)];
    return f;
  }
};

// A Program's random draws: each run's draws (seeds and counters, flattened) go into the integer
// arguments of the bound calls that took the recording's draws (models/replay.py's _Drawn), so a
// replayed step draws what the step would have. `args`: (call, argument position, draw index).
template <class BoundCallPtrT>
struct DrawPatches {
  struct Patch {
    size_t call;
    int position;
    size_t draw;
  };
  std::vector<Patch> patches;
  size_t count = 0;  // draws a run takes

  DrawPatches(const std::vector<BoundCallPtrT>& calls, const std::vector<std::tuple<int64_t, int, int64_t>>& args) {
    for (const auto& [call, position, draw] : args) {
      LAMINA_CHECK(call >= 0 && size_t(call) < calls.size() && draw >= 0,
                   "Program: draw argument (" << call << ", " << position << ", " << draw << ") is out of range");
      LAMINA_CHECK(calls[size_t(call)] && calls[size_t(call)]->set_int(position, 0),
                   "Program: argument " << position << " of call " << call << " is not an integer");
      patches.push_back({size_t(call), position, size_t(draw)});
      count = std::max(count, size_t(draw) + 1);
    }
  }
  void apply(const std::vector<BoundCallPtrT>& calls, const std::vector<uint64_t>& draws) const {
    LAMINA_CHECK(draws.size() == count, "Program.run: expected " << count << " random draws (seeds and counters), "
                                                                 << "received " << draws.size());
    for (const Patch& p : patches) calls[p.call]->set_int(p.position, draws[p.draw]);
  }
};

// The buffer slots of a bound call's argument tuple, in order: its Buffers, its optional Buffers
// (OptT, holding one as `.p`, maybe empty) and its lists of Buffers; other arguments hold none.
template <class BufferPtrT, class OptT, class Tuple>
std::vector<BufferPtrT*> buffer_slots(Tuple& args) {
  std::vector<BufferPtrT*> out;
  std::apply([&out](auto&... v) {
    auto one = [&out](auto& a) {
      using T = std::remove_reference_t<decltype(a)>;
      if constexpr (std::is_same<T, BufferPtrT>::value) out.push_back(&a);
      else if constexpr (std::is_same<T, OptT>::value) out.push_back(&a.p);
      else if constexpr (std::is_same<T, std::vector<BufferPtrT>>::value)
        for (auto& p : a) out.push_back(&p);
    };
    (one(v), ...);
  }, args);
  return out;
}

// set_int of a bound call's argument tuple: the integer argument at `position` takes `value`.
template <size_t... I, class Tuple>
bool set_tuple_int(Tuple& args, int position, uint64_t value, std::index_sequence<I...>) {
  bool done = false;
  auto assign = [&](auto& slot) {
    using T = std::remove_reference_t<decltype(slot)>;
    if constexpr (std::is_integral<T>::value && !std::is_same<T, bool>::value) {
      slot = T(value);
      done = true;
    }
  };
  ((I == size_t(position) ? assign(std::get<I>(args)) : void()), ...);
  return done;
}

}  // namespace lamina
