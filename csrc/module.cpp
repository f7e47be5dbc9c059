// The compiled module `lamina.backend._cpu`: one fixed table of kernel functions (listed in
// backend/device.py's KERNEL_TABLE). Each kernel family lives in csrc/cpu/<family>.cpp and
// registers its functions here, bound with def_kernel (device.h) so each call runs on its device.
#include <pybind11/pybind11.h>

#include "common.h"
#include "export.h"

namespace py = pybind11;

namespace lamina {
void bind_device(py::module_& m);
void bind_memory(py::module_& m);
void bind_elementwise(py::module_& m);
void bind_reduce(py::module_& m);
void bind_linalg(py::module_& m);
void bind_linalg_decomp(py::module_& m);
void bind_fft(py::module_& m);
void bind_manipulation(py::module_& m);
void bind_nn(py::module_& m);
void bind_norm(py::module_& m);
void bind_embedding(py::module_& m);
void bind_conv(py::module_& m);
void bind_depthwise(py::module_& m);
void bind_random(py::module_& m);
void bind_optim(py::module_& m);
void bind_rnn(py::module_& m);
void bind_sorting(py::module_& m);
void bind_quantize(py::module_& m);
void bind_attention(py::module_& m);
void bind_program(py::module_& m);
}  // namespace lamina

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "lamina CPU kernels";
  py::register_exception<lamina::TypeError>(m, "KernelTypeError", PyExc_TypeError);
  py::register_exception<lamina::AllocError>(m, "KernelMemoryError", PyExc_MemoryError);
  lamina::export_op_codes(m);  // the op codes, as {name: code} dicts (backend/math.py reads them)
  // The kernels that take bfloat16 buffers themselves (backend/device.py widens the others').
  m.attr("BF16_KERNELS") = pybind11::make_tuple("fill", "copy", "cast", "strided_copy", "take", "take_along_axis",
                                                "tri", "broadcast_to", "where", "matmul",
                                                "conv2d_forward", "conv2d_backward", "bias_relu", "bias_relu_grad",
                                                "pool2d_forward", "pool2d_backward", "unary", "unary_grad", "binary",
                                                "batch_norm_train", "batch_norm_train_grad", "lstm_forward",
                                                "lstm_backward", "gru_forward", "gru_backward",
                                                "simple_rnn_forward", "simple_rnn_backward", "attention_forward",
                                                "attention_backward", "softmax", "softmax_grad", "layer_norm",
                                                "layer_norm_grad", "reduce", "count_nonzero", "nonzero");
  lamina::bind_device(m);
  lamina::bind_program(m);
  lamina::bind_memory(m);
  lamina::bind_elementwise(m);
  lamina::bind_reduce(m);
  lamina::bind_linalg(m);
  lamina::bind_linalg_decomp(m);
  lamina::bind_fft(m);
  lamina::bind_manipulation(m);
  lamina::bind_nn(m);
  lamina::bind_norm(m);
  lamina::bind_embedding(m);
  lamina::bind_conv(m);
  lamina::bind_depthwise(m);
  lamina::bind_random(m);
  lamina::bind_optim(m);
  lamina::bind_rnn(m);
  lamina::bind_sorting(m);
  lamina::bind_quantize(m);
  lamina::bind_attention(m);
}
