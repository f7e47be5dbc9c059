// The Python side of a kernel module's compiled Programs (models/replay.py), the same for the CPU
// module (csrc/cpu/program.cpp) and the CUDA module (csrc/cuda/module.cpp): BoundCall, bindable,
// bind_call and Program. `bindable` returns the names def_kernel registered; `target` returns the
// calling thread's bind target (the module's thread_local: set, the next kernel called binds).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <tuple>
#include <unordered_set>
#include <vector>

#include "checks.h"

namespace lamina {

template <class ProgramT, class BoundCallT, class BufferPtrT>
void bind_program_api(pybind11::module_& m, std::unordered_set<std::string>& (*bindable)(),
                      std::shared_ptr<BoundCallT>*& (*target)()) {
  namespace py = pybind11;
  using CallPtr = std::shared_ptr<BoundCallT>;
  using DrawArgs = std::vector<std::tuple<int64_t, int, int64_t>>;
  // module_local: two modules built from the same sources (_cuda, _cuda_emu) register the same C++ types
  py::class_<BoundCallT, CallPtr>(m, "BoundCall", py::module_local())
      .def_property_readonly("name", [](const BoundCallT& c) { return std::string(c.name); })
      .def_property_readonly("num_buffers", [](const BoundCallT& c) { return c.buffers.size(); });
  m.def("bindable", [bindable](const std::string& name) { return bindable().count(name) > 0; }, py::arg("name"),
        "Whether the kernel of that name can be bound (bind_call): a kernel of the device table that returns nothing.");
  m.def("bind_call", [bindable, target](const std::string& name, py::object fn, py::tuple args, py::dict kwargs) {
    LAMINA_CHECK(bindable().count(name), "bind_call: '" << name << "' is not a kernel that can be bound");
    CallPtr out;
    target() = &out;
    try {
      fn(*args, **kwargs);
    } catch (...) {
      target() = nullptr;
      throw;
    }
    target() = nullptr;
    LAMINA_CHECK(out, "bind_call: calling '" << name << "' did not reach a kernel; pass the kernel function itself");
    return out;
  }, py::arg("name"), py::arg("fn"), py::arg("args"), py::arg("kwargs"),
     "Converts a kernel call's arguments and keeps them, without running it: a step of a Program.");
  py::class_<ProgramT>(m, "Program", py::module_local())
      .def(py::init<std::vector<CallPtr>, const std::vector<BufferPtrT>&, const std::vector<BufferPtrT>&,
                    const DrawArgs&>(),
           py::arg("calls"), py::arg("inputs"), py::arg("outputs"), py::arg("draws") = DrawArgs(),
           "Bound calls to run in order; `inputs` and `outputs` are the recording's own buffers: each run "
           "puts its inputs in place of the first and fresh buffers in place of the second. `draws`: "
           "(call, argument position, k): that integer argument takes the run's k-th draw.")
      .def("run", &ProgramT::run, py::arg("inputs"), py::arg("draws") = std::vector<uint64_t>(),
           "Runs the calls (on a GPU: queues them) on these input buffers, with these random draws (seeds "
           "and counters), and returns the fresh output buffers, in order.")
      .def("run1", [](ProgramT& p, const BufferPtrT& in) {
             LAMINA_CHECK(p.io.fresh.size() == 1, "Program.run1: the program makes " << p.io.fresh.size()
                                                                                 << " outputs; use run()");
             return p.run({in}, {})[0];
           }, py::arg("input"), "run() for one input buffer and one output: returns the output buffer.")
      .def("run_host", &ProgramT::run_host, py::arg("arrays"), py::arg("shapes"),
           "run() on copies of these C-contiguous numpy arrays; returns the outputs as numpy arrays of these shapes.");
}

}  // namespace lamina
