// The compiled module `lamina.backend._cpu`: one fixed table of kernel functions. Each kernel
// family lives in csrc/cpu/<family>.cpp and registers its functions here.
#include <pybind11/pybind11.h>

#include <cstdlib>

#include "common.h"

namespace py = pybind11;

namespace lamina {
void bind_memory(py::module_& m);
void bind_elementwise(py::module_& m);
void bind_reduce(py::module_& m);
void bind_linalg(py::module_& m);
void bind_manipulation(py::module_& m);
void bind_nn(py::module_& m);
void bind_conv(py::module_& m);
void bind_depthwise(py::module_& m);
void bind_random(py::module_& m);
void bind_optim(py::module_& m);
void bind_rnn(py::module_& m);
void bind_sorting(py::module_& m);
}  // namespace lamina

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "lamina CPU kernels";
  py::register_exception<lamina::TypeError>(m, "KernelTypeError", PyExc_TypeError);
  if (const char* env = std::getenv("LAMINA_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) lamina::set_num_threads(n);
  }
  lamina::bind_memory(m);
  lamina::bind_elementwise(m);
  lamina::bind_reduce(m);
  lamina::bind_linalg(m);
  lamina::bind_manipulation(m);
  lamina::bind_nn(m);
  lamina::bind_conv(m);
  lamina::bind_depthwise(m);
  lamina::bind_random(m);
  lamina::bind_optim(m);
  lamina::bind_rnn(m);
  lamina::bind_sorting(m);
}
