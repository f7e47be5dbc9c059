// Recurrent kernels.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common.h"

namespace py = pybind11;

namespace lamina {

void bind_rnn(py::module_& m) {}

}  // namespace lamina
