// Programs: a replayed step or model call (models/replay.py) as one call from Python. Each kernel
// call of the recording is bound once (bind_call: its arguments converted and kept, nothing run);
// a run swaps in the new batch's buffers and fresh output buffers wherever the recording had its
// own, runs the calls in order on their devices (inline ones with the GIL released once, queued
// ones on their workers, as the Python calls would have), and returns the fresh buffers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <unordered_set>

#include "device.h"
#include "program_io.h"
#include "program_bind.h"

namespace py = pybind11;

namespace lamina {

thread_local BoundCallPtr* t_bind_target = nullptr;

namespace {
std::unordered_set<std::string>& bindable() {
  static std::unordered_set<std::string> names;
  return names;
}

struct Program {
  std::vector<BoundCallPtr> calls;
  std::vector<int> device;    // each call's device
  std::vector<int> devices;   // the distinct ones
  ProgramIO<BufferPtr> io;
  DrawPatches<BoundCallPtr> draws;

  Program(std::vector<BoundCallPtr> c, const std::vector<BufferPtr>& in, const std::vector<BufferPtr>& out,
          const std::vector<std::tuple<int64_t, int, int64_t>>& draw_args)
      : calls(std::move(c)), io(in, out), draws(calls, draw_args) {
    for (size_t i = 0; i < calls.size(); ++i) {
      LAMINA_CHECK(calls[i], "Program: expected bound calls, received None");
      int dev = -1;
      for (BufferPtr* p : calls[i]->buffers) {
        if (!*p) continue;
        if (dev < 0) dev = (*p)->device;
        LAMINA_CHECK((*p)->device == dev, "Program: call " << i << " (" << calls[i]->name
                                                            << ") has buffers on different devices");
        io.add(p);
      }
      LAMINA_CHECK(dev >= 0, "Program: call " << i << " (" << calls[i]->name << ") has no buffer argument");
      device_context(dev);  // checks the index
      device.push_back(dev);
      bool seen = false;
      for (int d : devices) seen = seen || d == dev;
      if (!seen) devices.push_back(dev);
    }
    io.done();
  }

  // run() from host arrays to host arrays: each input copied to a new buffer on its device,
  // each output read back with its shape (predict_on_batch's numpy in, numpy out).
  std::vector<py::array> run_host(const std::vector<py::array>& arrays, const std::vector<Shape>& shapes) {
    io.check_host(arrays.size(), shapes.size());
    std::vector<BufferPtr> in;
    in.reserve(arrays.size());
    for (size_t k = 0; k < arrays.size(); ++k) in.push_back(from_numpy(arrays[k], io.inputs[k].device));
    std::vector<BufferPtr> made = run(in, {});
    std::vector<py::array> out;
    out.reserve(made.size());
    for (size_t k = 0; k < made.size(); ++k) out.push_back(to_numpy(*made[k], shapes[k]));
    return out;
  }

  std::vector<BufferPtr> run(const std::vector<BufferPtr>& in, const std::vector<uint64_t>& drawn) {
    draws.apply(calls, drawn);
    auto filled = io.fill(in);
    bool all_inline = true;
    for (int d : devices) all_inline = all_inline && device_context(d).inline_exec.load();
    if (all_inline) {
      py::gil_scoped_release nogil;
      int current = -1;
      for (size_t i = 0; i < calls.size(); ++i) {
        if (device[i] != current) {
          current = device[i];
          use_device_threads(device_context(current));
        }
        calls[i]->run_inline();
      }
    } else {
      for (size_t i = 0; i < calls.size(); ++i) {
        DeviceContext& ctx = device_context(device[i]);
        if (ctx.inline_exec) {
          py::gil_scoped_release nogil;
          use_device_threads(ctx);
          calls[i]->run_inline();
        } else {
          calls[i]->run_queued(ctx);
        }
      }
    }
    return std::move(filled->made);
  }
};
}  // namespace

void register_bindable(const char* name) { bindable().insert(name); }

void bind_program(py::module_& m) {
  bind_program_api<Program, BoundCall, BufferPtr>(m, &bindable, []() -> BoundCallPtr*& { return t_bind_target; });
}

}  // namespace lamina
