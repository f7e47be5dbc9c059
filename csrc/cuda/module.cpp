// The compiled module `lamina.backend._cuda`: the CUDA device table. The kernels keep the CPU
// module's names and arguments (backend/device.py's KERNEL_TABLE); a table entry this module does
// not define, or a call it answers with KernelUnsupported, runs the CPU kernel on host copies
// (backend/device.py's GPU table), so every op works on gpu:N while kernels move to the GPU.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <tuple>

#include "../export.h"
#include "../program_io.h"
#include "../program_bind.h"
#include "decomp.h"
#include "cudnn.h"
#include "nccl.h"
#include "gpu.h"
#include "bind.h"
#include "quant.h"
#include "sort.h"
#include "attention.h"
#include "misc.h"
#include "optim_more.h"
#include "fft.h"

namespace py = pybind11;
using namespace lamina;
using gpu::Buffer;
using gpu::BufferPtr;

namespace {

BufferPtr from_numpy(py::array a, int device, int dtype) {
  DType dt = checked_dtype_of_array(a, dtype);
  LAMINA_CHECK(a.flags() & py::array::c_style, "from_numpy: expected a C-contiguous array");
  gpu::Context& c = gpu::context(device);
  const void* src = a.data();
  const int64_t n = int64_t(a.size());
  py::gil_scoped_release nogil;
  LAMINA_CUDA_CHECK(cudaSetDevice(c.physical));
  // On the copy stream through a pinned staging block: returns without waiting for the device (the
  // array may go at once), and the copy runs while the kernels queued before it do.
  return gpu::buffer_from_host(c, n, dt, src);
}

py::array to_numpy(const Buffer& b, const Shape& shape) {
  LAMINA_CHECK(numel_of(shape) == b.numel, "to_numpy: shape " << shape_str(shape) << " does not match " << b.numel
                                                               << " elements");
  py::array out(numpy_dtype(b.dtype), std::vector<py::ssize_t>(shape.begin(), shape.end()));
  gpu::Context& c = gpu::context(b.device);
  void* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    LAMINA_CUDA_CHECK(cudaSetDevice(c.physical));
    if (b.numel)
      LAMINA_CUDA_CHECK(cudaMemcpyAsync(dst, b.ptr, size_t(b.numel) * dtype_size(b.dtype), cudaMemcpyDeviceToHost, c.stream));
    LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));  // also raises an earlier kernel's error
  }
  gpu::raise_failed_checks(c);  // and an earlier deferred check's (a label out of range)
  return out;
}

py::dict memory_dict(gpu::Context& c) {
  std::lock_guard<std::mutex> g(c.mu);
  py::dict d;
  d["in_use"] = c.in_use;
  d["cached"] = c.cached;
  d["system_allocs"] = c.system_allocs;
  return d;
}

// ---- Programs: a replayed step's kernel calls, bound once, run from one Python call -------------
// csrc/cpu/program.cpp's Program for this module's Buffers: `calls` in order; each run puts the
// run's input buffers and fresh output buffers in place of the recording's own (`inputs`,
// `outputs`) and queues the calls with the GIL released (each only queues work on its stream).
struct Program {
  std::vector<gpu::BoundCallPtr> calls;
  ProgramIO<BufferPtr> io;
  DrawPatches<gpu::BoundCallPtr> draws;

  Program(std::vector<gpu::BoundCallPtr> c, const std::vector<BufferPtr>& in, const std::vector<BufferPtr>& out,
          const std::vector<std::tuple<int64_t, int, int64_t>>& draw_args)
      : calls(std::move(c)), io(in, out), draws(calls, draw_args) {
    for (size_t i = 0; i < calls.size(); ++i) {
      LAMINA_CHECK(calls[i], "Program: expected bound calls, received None");
      bool any = false;
      for (BufferPtr* p : calls[i]->buffers) {
        any = any || *p;
        if (*p) io.add(p);
      }
      LAMINA_CHECK(any, "Program: call " << i << " (" << calls[i]->name << ") has no buffer argument");
    }
    io.done();
  }

  std::vector<BufferPtr> run(const std::vector<BufferPtr>& in, const std::vector<uint64_t>& drawn) {
    draws.apply(calls, drawn);
    auto filled = io.fill(in);
    {
      py::gil_scoped_release nogil;
      for (auto& call : calls) call->run();
    }
    return std::move(filled->made);
  }

  // run() from host arrays to host arrays (predict_on_batch's numpy in, numpy out)
  std::vector<py::array> run_host(const std::vector<py::array>& arrays, const std::vector<Shape>& shapes) {
    io.check_host(arrays.size(), shapes.size());
    std::vector<BufferPtr> in;
    in.reserve(arrays.size());
    for (size_t k = 0; k < arrays.size(); ++k) in.push_back(from_numpy(arrays[k], io.inputs[k].device, -1));
    std::vector<BufferPtr> made = run(in, {});
    std::vector<py::array> out;
    out.reserve(made.size());
    for (size_t k = 0; k < made.size(); ++k) out.push_back(to_numpy(*made[k], shapes[k]));
    return out;
  }
};

void bind_program(py::module_& m) {
  bind_program_api<Program, gpu::BoundCall, BufferPtr>(m, &gpu::bindable_kernels,
                                                      []() -> gpu::BoundCallPtr*& { return gpu::t_bind_target; });
}

}  // namespace

namespace lamina {
namespace gpu {
thread_local BoundCallPtr* t_bind_target = nullptr;
std::unordered_set<std::string>& bindable_kernels() {
  static std::unordered_set<std::string> names;
  return names;
}
}  // namespace gpu
}  // namespace lamina

#ifndef LAMINA_CUDA_MODULE
#define LAMINA_CUDA_MODULE _cuda  // _cuda_emu: the same sources built for the CPU (csrc/cuda/emu)
#endif

PYBIND11_MODULE(LAMINA_CUDA_MODULE, m) {
  m.doc() = "lamina CUDA kernels";
  py::register_exception<TypeError>(m, "KernelTypeError", PyExc_TypeError);
  py::register_exception<AllocError>(m, "KernelMemoryError", PyExc_MemoryError);
  py::register_exception<gpu::CudaError>(m, "CudaError", PyExc_RuntimeError);
  py::register_exception<gpu::Unsupported>(m, "KernelUnsupported", PyExc_NotImplementedError);
  export_op_codes(m);
  bind_program(m);
  // The kernels that take bfloat16 buffers themselves (backend/device.py widens the others').
  // conv2d: bfloat16 operands through cuDNN or cuBLAS (conv.cu); depthwise and dropout: float32 maths
  // on bfloat16 loads, in any mix with float32 buffers (bf16.cuh's AnyAcc).
  // The recurrent kernels: bfloat16 product operands through cuBLAS, float32 gate maths (rnn.cu).
  // Elementwise ops, softmax, norms, pooling, bias + ReLU: float32 maths on bfloat16 loads, each
  // output rounded once (bf16.cuh), so their results are the widened path's bit for bit.
  m.attr("BF16_KERNELS") = py::make_tuple("fill", "copy", "cast", "strided_copy", "take", "take_along_axis", "tri",
                                          "broadcast_to", "where", "matmul", "conv2d_forward", "conv2d_backward",
                                          "bias_relu", "bias_relu_grad", "pool2d_forward", "pool2d_backward", "unary",
                                          "unary_grad", "binary", "batch_norm_train", "batch_norm_train_grad",
                                          "lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
                                          "simple_rnn_forward", "simple_rnn_backward", "softmax", "softmax_grad",
                                          "layer_norm", "layer_norm_grad", "attention_forward",
                                          "attention_backward", "reduce", "count_nonzero", "nonzero",
                                          "depthwise_conv2d_forward", "depthwise_conv2d_backward", "dropout",
                                          "dropout_mask", "dropout_grad");

  // ---- devices ----
  m.def("device_count", &gpu::device_count, "GPU devices (virtual): physical GPUs x virtual GPUs per physical GPU.");
  m.def("physical_device_count", &gpu::physical_count, "Physical GPUs the CUDA driver reports (0 without a driver).");
  m.def("virtual_gpus", &gpu::virtual_split, "Virtual GPU devices per physical GPU.");
  m.def("set_virtual_gpus", &gpu::set_virtual_split, py::arg("n"),
        "Splits each physical GPU into n virtual devices (own stream and memory pool); before the first GPU tensor.");
  m.def("device_name", [](int index) {
    gpu::Context& c = gpu::context(index);
    cudaDeviceProp p;
    LAMINA_CUDA_CHECK(cudaGetDeviceProperties(&p, c.physical));
    return std::string(p.name);
  }, py::arg("device"));
  m.def("synchronize", [](int index) {
    gpu::Context& c = gpu::context(index);
    py::gil_scoped_release nogil;
    gpu::synchronize(c);
  }, py::arg("device"), "Waits until every kernel queued on the device has run; raises a kernel's error.");
  m.def("set_asynchronous", [](int index, bool on) {
    gpu::Context& c = gpu::context(index);
    bool before = !c.blocking;
    if (!on) gpu::synchronize(c);
    c.blocking = !on;
    return before;
  }, py::arg("device"), py::arg("asynchronous"),
     "False: waits for each kernel before its call returns (a kernel's error is raised by its call).");
  m.def("device_stats", [](int index) {
    gpu::Context& c = gpu::context(index);
    cudaSetDevice(c.physical);
    cudaError_t q = cudaStreamQuery(c.stream);
    if (q != cudaErrorNotReady) gpu::check_cuda(q, "device_stats");
    py::dict d;
    d["submitted"] = c.launches;
    d["busy"] = q == cudaErrorNotReady;
    d["asynchronous"] = !c.blocking;
    d["threads"] = 0;
    d["physical"] = c.physical;
    return d;
  }, py::arg("device"));
  m.def("device_threads", [](int index) { gpu::context(index); return 0; }, py::arg("device"),
        "GPU devices have no CPU thread team: 0.");
  m.def("set_device_threads", [](int index, int) {
    LAMINA_CHECK(false, "gpu:" << index << " has no CPU thread team to size; set_threads applies to cpu devices");
  }, py::arg("device"), py::arg("threads"));
  m.def("memory_stats", []() {
    py::dict total, per;
    size_t in_use = 0, cached = 0, allocs = 0;
    const int n = gpu::device_count();
    for (int i = 0; i < n; ++i) {
      py::dict d = memory_dict(gpu::context(i));
      in_use += d["in_use"].cast<size_t>();
      cached += d["cached"].cast<size_t>();
      allocs += d["system_allocs"].cast<size_t>();
      per[py::int_(i)] = d;
    }
    total["in_use"] = in_use;
    total["cached"] = cached;
    total["system_allocs"] = allocs;
    total["devices"] = per;
    return total;
  });
  m.def("empty_cache", &gpu::empty_cache);

  // ---- buffers and copies ----
  // module_local: the nvcc-built module and the emulator's (the same sources) can both be imported
  py::class_<Buffer, BufferPtr>(m, "Buffer", py::module_local())
      .def(py::init([](int64_t n, int dt, int device) {
             LAMINA_CHECK(dt >= F32 && dt <= kLastDType, "Buffer: unknown dtype code " << dt);
             return std::make_shared<Buffer>(n, DType(dt), device);
           }), py::arg("numel"), py::arg("dtype") = 0, py::arg("device") = 0)
      .def_readonly("numel", &Buffer::numel)
      .def_readonly("device", &Buffer::device)
      .def_property_readonly("dtype", [](const Buffer& b) { return int(b.dtype); })
      .def_property_readonly("address", [](const Buffer& b) { return reinterpret_cast<uintptr_t>(b.ptr); });
  m.def("from_numpy", &from_numpy, py::arg("array"), py::arg("device") = 0, py::arg("dtype") = -1);
  m.def("to_numpy", &to_numpy, py::arg("buffer"), py::arg("shape"));
  m.def("host_view", [](const BufferPtr&, const Shape&) -> py::array {
    throw TypeError("host_view: a GPU buffer has no host memory to view; copy it with to_numpy");
  }, py::arg("buffer"), py::arg("shape"));
  // bindable: a model-parallel or pipelined step's copies between GPUs run inside its Program
  gpu::def_kernel(m, "copy_between", &gpu::copy_between, py::arg("src"), py::arg("dst"));
  gpu::def_kernel(m, "fill", &gpu::fill);
  gpu::def_kernel(m, "copy", &gpu::copy);
  gpu::def_kernel(m, "cast", &gpu::cast);

  // ---- kernels (same names and arguments as the CPU module's) ----
  gpu::def_kernel(m, "binary", &gpu::binary);
  gpu::def_kernel(m, "unary", &gpu::unary, py::arg("op"), py::arg("x"), py::arg("out"), py::arg("alpha") = 0.0);
  gpu::def_kernel(m, "unary_grad", &gpu::unary_grad, py::arg("op"), py::arg("saved"), py::arg("grad"), py::arg("out"),
        py::arg("alpha") = 0.0);
  gpu::def_kernel(m, "where", &gpu::where);
  gpu::def_kernel(m, "broadcast_to", &gpu::broadcast_to);
  gpu::def_kernel(m, "clip", &gpu::clip);
  gpu::def_kernel(m, "clip_grad", &gpu::clip_grad);
  gpu::def_kernel(m, "axpby", &gpu::axpby);
  gpu::def_kernel(m, "reduce", &gpu::reduce);
  gpu::def_kernel(m, "strided_copy", &gpu::strided_copy, py::arg("src"), py::arg("src_offset"), py::arg("src_strides"),
        py::arg("dst"), py::arg("dst_offset"), py::arg("dst_strides"), py::arg("shape"), py::arg("accumulate") = false);
  gpu::def_kernel(m, "matmul", &gpu::matmul, py::arg("a"), py::arg("a_shape"), py::arg("b"), py::arg("b_shape"), py::arg("out"),
        py::arg("out_shape"), py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("accumulate") = false,
        py::arg("bias") = py::none());
  gpu::def_kernel(m, "gemm", &gpu::gemm, py::arg("trans_a"), py::arg("trans_b"), py::arg("M"), py::arg("N"), py::arg("K"),
        py::arg("alpha"), py::arg("a"), py::arg("b"), py::arg("beta"), py::arg("c"), py::arg("lda") = -1,
        py::arg("ldb") = -1, py::arg("ldc") = -1);
  gpu::def_kernel(m, "softmax", &gpu::softmax);
  gpu::def_kernel(m, "softmax_grad", &gpu::softmax_grad);
  gpu::def_kernel(m, "xent_sparse", &gpu::xent_sparse);
  gpu::def_kernel(m, "xent_sparse_grad", &gpu::xent_sparse_grad);
  gpu::def_kernel(m, "bias_relu", &gpu::bias_relu);
  gpu::def_kernel(m, "bias_relu_grad", &gpu::bias_relu_grad);
  gpu::def_kernel(m, "sgd", &gpu::sgd);
  gpu::def_kernel(m, "adam", &gpu::adam);
  gpu::def_kernel(m, "adam_multi", &gpu::adam_multi);
  gpu::def_kernel(m, "sgd_multi", &gpu::sgd_multi);
  gpu::def_kernel(m, "weight_decay", &gpu::weight_decay);
  // ---- recurrent layers (rnn.cu): same positional arguments as the CPU module's ----
  gpu::def_kernel(m, "lstm_forward", &gpu::lstm_forward, py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("kernel"),
        py::arg("recurrent_kernel"), py::arg("bias").none(true), py::arg("mask").none(true),
        py::arg("input_dropout").none(true), py::arg("recurrent_dropout").none(true), py::arg("B"), py::arg("T"),
        py::arg("F"), py::arg("U"), py::arg("go_backwards"), py::arg("out"), py::arg("h_last"), py::arg("c_last"),
        py::arg("gates"), py::arg("saved_c").none(true));
  gpu::def_kernel(m, "lstm_backward", &gpu::lstm_backward, py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("kernel"),
        py::arg("recurrent_kernel"), py::arg("mask").none(true), py::arg("input_dropout").none(true),
        py::arg("recurrent_dropout").none(true), py::arg("B"), py::arg("T"), py::arg("F"), py::arg("U"),
        py::arg("go_backwards"), py::arg("out"), py::arg("gates"), py::arg("saved_c"), py::arg("dout").none(true),
        py::arg("dh_last").none(true), py::arg("dc_last").none(true), py::arg("dx").none(true),
        py::arg("dh0").none(true), py::arg("dc0").none(true), py::arg("dkernel").none(true),
        py::arg("drecurrent_kernel").none(true), py::arg("dbias").none(true), py::arg("accumulate"),
        py::arg("dgates_out").none(true), py::arg("dgates_rec_out").none(true), py::arg("h_prev_out").none(true));
  gpu::def_kernel(m, "gru_forward", &gpu::gru_forward, py::arg("x"), py::arg("h0"), py::arg("kernel"), py::arg("recurrent_kernel"),
        py::arg("bias").none(true), py::arg("mask").none(true), py::arg("input_dropout").none(true),
        py::arg("recurrent_dropout").none(true), py::arg("B"), py::arg("T"), py::arg("F"), py::arg("U"),
        py::arg("go_backwards"), py::arg("out"), py::arg("h_last"), py::arg("gates"), py::arg("saved_rh").none(true));
  gpu::def_kernel(m, "gru_backward", &gpu::gru_backward, py::arg("x"), py::arg("h0"), py::arg("kernel"),
        py::arg("recurrent_kernel"), py::arg("mask").none(true), py::arg("input_dropout").none(true),
        py::arg("recurrent_dropout").none(true), py::arg("B"), py::arg("T"), py::arg("F"), py::arg("U"),
        py::arg("go_backwards"), py::arg("out"), py::arg("gates"), py::arg("saved_rh"), py::arg("dout").none(true),
        py::arg("dh_last").none(true), py::arg("dx").none(true), py::arg("dh0").none(true),
        py::arg("dkernel").none(true), py::arg("drecurrent_kernel").none(true), py::arg("dbias").none(true),
        py::arg("accumulate"), py::arg("dgates_out").none(true), py::arg("dgates_rec_out").none(true),
        py::arg("h_prev_out").none(true));
  gpu::def_kernel(m, "simple_rnn_forward", &gpu::simple_rnn_forward, py::arg("x"), py::arg("h0"), py::arg("kernel"),
        py::arg("recurrent_kernel"), py::arg("bias").none(true), py::arg("mask").none(true),
        py::arg("input_dropout").none(true), py::arg("recurrent_dropout").none(true), py::arg("B"), py::arg("T"),
        py::arg("F"), py::arg("U"), py::arg("go_backwards"), py::arg("out"), py::arg("h_last"), py::arg("gates"));
  gpu::def_kernel(m, "simple_rnn_backward", &gpu::simple_rnn_backward, py::arg("x"), py::arg("h0"), py::arg("kernel"),
        py::arg("recurrent_kernel"), py::arg("mask").none(true), py::arg("input_dropout").none(true),
        py::arg("recurrent_dropout").none(true), py::arg("B"), py::arg("T"), py::arg("F"), py::arg("U"),
        py::arg("go_backwards"), py::arg("out"), py::arg("gates"), py::arg("dout").none(true),
        py::arg("dh_last").none(true), py::arg("dx").none(true), py::arg("dh0").none(true),
        py::arg("dkernel").none(true), py::arg("drecurrent_kernel").none(true), py::arg("dbias").none(true),
        py::arg("accumulate"), py::arg("dgates_out").none(true), py::arg("dgates_rec_out").none(true),
        py::arg("h_prev_out").none(true));
  // ---- convolution and pooling (conv.cu) ----
  gpu::def_kernel(m, "conv2d_forward", &gpu::conv2d_forward, py::arg("x"), py::arg("x_shape"), py::arg("w"), py::arg("w_shape"),
        py::arg("out"), py::arg("out_shape"), py::arg("strides"), py::arg("dilation"), py::arg("pads"));
  gpu::def_kernel(m, "conv2d_backward", &gpu::conv2d_backward, py::arg("x"), py::arg("x_shape"), py::arg("w"), py::arg("w_shape"),
        py::arg("grad"), py::arg("grad_shape"), py::arg("dx").none(true), py::arg("dw").none(true), py::arg("strides"),
        py::arg("dilation"), py::arg("pads"));
  gpu::def_kernel(m, "depthwise_conv2d_forward", &gpu::depthwise_conv2d_forward, py::arg("x"), py::arg("x_shape"), py::arg("w"),
        py::arg("w_shape"), py::arg("out"), py::arg("out_shape"), py::arg("strides"), py::arg("dilation"),
        py::arg("pads"));
  gpu::def_kernel(m, "depthwise_conv2d_backward", &gpu::depthwise_conv2d_backward, py::arg("x"), py::arg("x_shape"), py::arg("w"),
        py::arg("w_shape"), py::arg("grad"), py::arg("grad_shape"), py::arg("dx").none(true), py::arg("dw").none(true),
        py::arg("strides"), py::arg("dilation"), py::arg("pads"));
  gpu::def_kernel(m, "pool2d_forward", &gpu::pool2d_forward, py::arg("mode"), py::arg("x"), py::arg("x_shape"), py::arg("out"),
        py::arg("out_shape"), py::arg("pool_size"), py::arg("strides"), py::arg("pads"),
        py::arg("indices").none(true) = nullptr);
  gpu::def_kernel(m, "pool2d_backward", &gpu::pool2d_backward, py::arg("mode"), py::arg("x_shape"), py::arg("grad"),
        py::arg("grad_shape"), py::arg("dx"), py::arg("pool_size"), py::arg("strides"), py::arg("pads"),
        py::arg("indices").none(true) = nullptr);
  // ---- normalisation (norm.cu), argmax / scans (scan.cu), RMSprop / Adagrad (optim_extra.cu) ----
  gpu::def_kernel(m, "batch_norm_train", &gpu::batch_norm_train);
  gpu::def_kernel(m, "batch_norm_train_grad", &gpu::batch_norm_train_grad);
  gpu::def_kernel(m, "batch_norm_infer", &gpu::batch_norm_infer, py::arg("x"), py::arg("mean"), py::arg("variance"),
        py::arg("scale").none(true), py::arg("offset").none(true), py::arg("outer"), py::arg("C"), py::arg("inner"),
        py::arg("eps"), py::arg("out"), py::arg("lo") = -INFINITY, py::arg("hi") = INFINITY);
  gpu::def_kernel(m, "batch_norm_infer_grad", &gpu::batch_norm_infer_grad);
  gpu::def_kernel(m, "layer_norm", &gpu::layer_norm);
  gpu::def_kernel(m, "layer_norm_grad", &gpu::layer_norm_grad);
  gpu::def_kernel(m, "argreduce", &gpu::argreduce);
  gpu::def_kernel(m, "cumulative", &gpu::cumulative, py::arg("op"), py::arg("x"), py::arg("outer"), py::arg("R"), py::arg("inner"),
        py::arg("out"), py::arg("reverse") = false);
  gpu::def_kernel(m, "cumprod_grad", &gpu::cumprod_grad);
  gpu::def_kernel(m, "rmsprop", &gpu::rmsprop);
  gpu::def_kernel(m, "adagrad", &gpu::adagrad);
  // ---- random draws and dropout (random.cu), embedding and take (embedding.cu) ----
  gpu::def_kernel(m, "random_uniform", &gpu::random_uniform);
  gpu::def_kernel(m, "random_normal", &gpu::random_normal);
  m.def("_host_random_uniform", &gpu::host_random_uniform, py::arg("seed"), py::arg("counter"), py::arg("lo"),
        py::arg("hi"), py::arg("n"), "random_uniform's numbers computed on the host with the device's arithmetic.");
  m.def("_host_random_normal", &gpu::host_random_normal, py::arg("seed"), py::arg("counter"), py::arg("mean"),
        py::arg("stddev"), py::arg("truncated"), py::arg("n"),
        "random_normal's numbers computed on the host with the device's arithmetic (glibc's logf / sincosf).");
  gpu::def_kernel(m, "random_randint", &gpu::random_randint);
  gpu::def_kernel(m, "random_gamma", &gpu::random_gamma);
  gpu::def_kernel(m, "random_binomial", &gpu::random_binomial);
  gpu::def_kernel(m, "dropout", &gpu::dropout);
  gpu::def_kernel(m, "dropout_mask", &gpu::dropout_mask);
  gpu::def_kernel(m, "dropout_grad", &gpu::dropout_grad);
  gpu::def_kernel(m, "embedding", &gpu::embedding);
  gpu::def_kernel(m, "embedding_grad", &gpu::embedding_grad);
  gpu::def_kernel(m, "embedding_scatter_add", &gpu::embedding_scatter_add);
  gpu::def_kernel(m, "take", &gpu::take);
  gpu::def_kernel(m, "take_grad", &gpu::take_grad);
  // ---- Fourier transforms (fft.cu) ----
  gpu::def_kernel(m, "fft", &gpu::fft, py::arg("x_real"), py::arg("x_imag").none(true), py::arg("outer"), py::arg("n"),
        py::arg("inner"), py::arg("inverse"), py::arg("scale"), py::arg("out_real"), py::arg("out_imag"));
  gpu::def_kernel(m, "rfft", &gpu::rfft, py::arg("x"), py::arg("outer"), py::arg("n_in"), py::arg("fft_length"), py::arg("scale"),
        py::arg("out_real"), py::arg("out_imag"));
  gpu::def_kernel(m, "irfft", &gpu::irfft, py::arg("x_real"), py::arg("x_imag"), py::arg("outer"), py::arg("m_in"),
        py::arg("fft_length"), py::arg("scale"), py::arg("out"));
  // ---- fused optimizer updates (optim_more.cu): row gradients, Adadelta ... Adafactor; positional as the CPU's ----
  gpu::def_kernel(m, "sgd_sparse", &gpu::sgd_sparse);
  gpu::def_kernel(m, "adam_sparse", &gpu::adam_sparse);
  gpu::def_kernel(m, "rmsprop_sparse", &gpu::rmsprop_sparse);
  gpu::def_kernel(m, "adagrad_sparse", &gpu::adagrad_sparse);
  gpu::def_kernel(m, "adadelta", &gpu::adadelta);
  gpu::def_kernel(m, "adadelta_sparse", &gpu::adadelta_sparse);
  gpu::def_kernel(m, "adamax", &gpu::adamax);
  gpu::def_kernel(m, "adamax_sparse", &gpu::adamax_sparse);
  gpu::def_kernel(m, "nadam", &gpu::nadam);
  gpu::def_kernel(m, "nadam_sparse", &gpu::nadam_sparse);
  gpu::def_kernel(m, "ftrl", &gpu::ftrl);
  gpu::def_kernel(m, "ftrl_sparse", &gpu::ftrl_sparse);
  gpu::def_kernel(m, "lion", &gpu::lion);
  gpu::def_kernel(m, "lion_sparse", &gpu::lion_sparse);
  gpu::def_kernel(m, "lamb", &gpu::lamb);
  gpu::def_kernel(m, "lamb_sparse", &gpu::lamb_sparse);
  gpu::def_kernel(m, "adafactor", &gpu::adafactor);
  gpu::def_kernel(m, "adafactor_sparse", &gpu::adafactor_sparse);
  // ---- dense-target losses, one_hot, take_along_axis, nonzero, triangles, ranges, batch_transpose (misc.cu) ----
  gpu::def_kernel(m, "xent_dense", &gpu::xent_dense);
  gpu::def_kernel(m, "xent_dense_grad", &gpu::xent_dense_grad);
  gpu::def_kernel(m, "bce", &gpu::bce);
  gpu::def_kernel(m, "bce_grad", &gpu::bce_grad);
  gpu::def_kernel(m, "one_hot", &gpu::one_hot);
  gpu::def_kernel(m, "take_along_axis", &gpu::take_along_axis);
  gpu::def_kernel(m, "take_along_axis_grad", &gpu::take_along_axis_grad);
  gpu::def_kernel(m, "count_nonzero", &gpu::count_nonzero);
  gpu::def_kernel(m, "nonzero", &gpu::nonzero);
  gpu::def_kernel(m, "tri", &gpu::tri);
  gpu::def_kernel(m, "arange", &gpu::arange);
  gpu::def_kernel(m, "linspace", &gpu::linspace);
  gpu::def_kernel(m, "batch_transpose", &gpu::batch_transpose);
  // ---- fused scaled dot-product attention (attention.cu) ----
  gpu::def_kernel(m, "attention_forward", &gpu::attention_forward, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("bias").none(true), py::arg("mask").none(true), py::arg("out"), py::arg("stats").none(true),
        py::arg("B"), py::arg("Tq"), py::arg("Tk"), py::arg("N"), py::arg("Nkv"), py::arg("H"), py::arg("Hv"),
        py::arg("scale"), py::arg("causal"), py::arg("q_strides"), py::arg("k_strides"), py::arg("v_strides"),
        py::arg("out_strides"), py::arg("bias_strides"), py::arg("mask_strides"));
  gpu::def_kernel(m, "attention_backward", &gpu::attention_backward, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("bias").none(true), py::arg("mask").none(true), py::arg("out"), py::arg("stats"), py::arg("dout"),
        py::arg("dq").none(true), py::arg("dk").none(true), py::arg("dv").none(true), py::arg("dlogits").none(true),
        py::arg("B"), py::arg("Tq"), py::arg("Tk"), py::arg("N"), py::arg("Nkv"), py::arg("H"), py::arg("Hv"),
        py::arg("scale"), py::arg("causal"), py::arg("q_strides"), py::arg("k_strides"), py::arg("v_strides"),
        py::arg("out_strides"), py::arg("bias_strides"), py::arg("mask_strides"));
  // ---- sorting, IndexedSlices deduplication, categorical draws and shuffles (sort.cu) ----
  gpu::def_kernel(m, "sort_rows", &gpu::sort_rows);
  gpu::def_kernel(m, "sparse_sort", &gpu::sparse_sort);
  gpu::def_kernel(m, "sparse_segment_sum", &gpu::sparse_segment_sum);
  gpu::def_kernel(m, "random_categorical", &gpu::random_categorical);
  gpu::def_kernel(m, "random_shuffle", &gpu::random_shuffle);
  m.def("_glibc_exp", &gpu::glibc_exp, py::arg("x"), py::arg("out"),
        "glibc's exp computed on the device (random_categorical's weights), on float64 bits held in int64 buffers.");
  // ---- dense decompositions and solvers (decomp.cu): the CPU's linalg_decomp.cpp arguments ----
  gpu::def_kernel(m, "cholesky", &gpu::cholesky, py::arg("a"), py::arg("batch"), py::arg("n"), py::arg("upper"), py::arg("out"));
  gpu::def_kernel(m, "solve_triangular", &gpu::solve_triangular, py::arg("a"), py::arg("b"), py::arg("batch"), py::arg("n"),
        py::arg("k"), py::arg("lower"), py::arg("transpose"), py::arg("out"));
  gpu::def_kernel(m, "lu_factor", &gpu::lu_factor, py::arg("a"), py::arg("batch"), py::arg("m"), py::arg("n"), py::arg("lu"),
        py::arg("piv"));
  gpu::def_kernel(m, "solve", &gpu::solve, py::arg("a"), py::arg("b"), py::arg("batch"), py::arg("n"), py::arg("k"),
        py::arg("transpose"), py::arg("out"));
  gpu::def_kernel(m, "inv", &gpu::inv, py::arg("a"), py::arg("batch"), py::arg("n"), py::arg("out"));
  gpu::def_kernel(m, "det", &gpu::det, py::arg("a"), py::arg("batch"), py::arg("n"), py::arg("out"));
  gpu::def_kernel(m, "slogdet", &gpu::slogdet, py::arg("a"), py::arg("batch"), py::arg("n"), py::arg("sign"),
        py::arg("logabsdet"));
  gpu::def_kernel(m, "qr", &gpu::qr, py::arg("a"), py::arg("batch"), py::arg("m"), py::arg("n"), py::arg("complete"), py::arg("q"),
        py::arg("r"));
  gpu::def_kernel(m, "eigh", &gpu::eigh, py::arg("a"), py::arg("batch"), py::arg("n"), py::arg("w"), py::arg("v"));
  gpu::def_kernel(m, "svd", &gpu::svd, py::arg("a"), py::arg("batch"), py::arg("m"), py::arg("n"), py::arg("full_matrices"),
        py::arg("u").none(true), py::arg("s"), py::arg("vt").none(true));
  // ---- int8 inference (quant.cu): quantize.cpp's and conv.cpp's kernels, the same packed layout ----
  gpu::def_kernel(m, "qgemm_packed_bytes", &gpu::qgemm_packed_bytes, py::arg("K"), py::arg("N"));
  gpu::def_kernel(m, "qgemm_pack", &gpu::qgemm_pack, py::arg("weights"), py::arg("K"), py::arg("N"), py::arg("packed"),
        py::arg("colsum"));
  gpu::def_kernel(m, "qmatmul", &gpu::qmatmul, py::arg("x"), py::arg("M"), py::arg("K"), py::arg("N"), py::arg("packed"),
        py::arg("colsum"), py::arg("w_scale"), py::arg("bias").none(true), py::arg("out"), py::arg("relu") = false);
  gpu::def_kernel(m, "qconv2d_forward", &gpu::qconv2d_forward, py::arg("x"), py::arg("x_shape"), py::arg("w_shape"),
        py::arg("packed"), py::arg("colsum"), py::arg("w_scale"), py::arg("bias").none(true), py::arg("out"),
        py::arg("out_shape"), py::arg("strides"), py::arg("dilation"), py::arg("pads"), py::arg("relu") = false);
  gpu::def_kernel(m, "qconv2d_fused", &gpu::qconv2d_fused, py::arg("x"), py::arg("x_shape"), py::arg("x_step"),
        py::arg("w_shape"), py::arg("packed"), py::arg("colsum"), py::arg("w_scale"), py::arg("bias").none(true),
        py::arg("bn_mean").none(true), py::arg("bn_var").none(true), py::arg("bn_gamma").none(true),
        py::arg("bn_beta").none(true), py::arg("bn_eps"), py::arg("lo"), py::arg("hi"), py::arg("out"),
        py::arg("out_shape"), py::arg("out_step"), py::arg("flags").none(true), py::arg("strides"),
        py::arg("dilation"), py::arg("pads"), py::arg("pool") = Shape{});
  gpu::def_kernel(m, "qdepthwise2d", &gpu::qdepthwise2d, py::arg("x"), py::arg("x_shape"), py::arg("w"), py::arg("w_shape"),
        py::arg("w_scale"), py::arg("bias").none(true), py::arg("out"), py::arg("out_shape"), py::arg("strides"),
        py::arg("dilation"), py::arg("pads"));
  gpu::def_kernel(m, "qdepthwise2d_fused", &gpu::qdepthwise2d_fused, py::arg("x"), py::arg("x_shape"), py::arg("x_step"),
        py::arg("w"), py::arg("w_shape"), py::arg("w_scale"), py::arg("bias").none(true),
        py::arg("bn_mean").none(true), py::arg("bn_var").none(true), py::arg("bn_gamma").none(true),
        py::arg("bn_beta").none(true), py::arg("bn_eps"), py::arg("lo"), py::arg("hi"), py::arg("out"),
        py::arg("out_shape"), py::arg("out_step"), py::arg("flags").none(true), py::arg("strides"),
        py::arg("dilation"), py::arg("pads"));
  gpu::def_kernel(m, "qembedding", &gpu::qembedding, py::arg("table"), py::arg("V"), py::arg("D"), py::arg("scale"),
        py::arg("ids"), py::arg("out"));
  m.def("load_cublas", &gpu::load_cublas, py::arg("path") = "",
        "Loads cuBLAS (the default names, or a path); matmul uses it from then on. True when loaded.");
  m.def("cublas_status", &gpu::cublas_status);
  m.def("set_use_cublas", &gpu::set_use_cublas, py::arg("enabled"),
        "False: matmul runs lamina's own kernel even where cuBLAS is loaded (tests, comparisons).");
  m.def("load_cudnn", &gpu::load_cudnn, py::arg("path") = "",
        "Loads cuDNN (the default names, or a path); convolutions use it from then on. True when loaded.");
  m.def("cudnn_status", &gpu::cudnn_status);
  m.def("set_use_cudnn", &gpu::set_use_cudnn, py::arg("enabled"),
        "False: convolutions run lamina's own kernels even where cuDNN is loaded (tests, comparisons).");
  m.def("cudnn_plans", &gpu::cudnn_plans,
        "Per convolution geometry: its key, whether cuDNN took it, and per direction the algorithm and workspace.");
  m.def("cudnn_counts", &gpu::cudnn_counts,
        "(convolution calls cuDNN ran, calls it refused that lamina's kernels ran) since it was loaded.");
  m.def("load_nccl", &gpu::load_nccl, py::arg("path") = "",
        "Loads NCCL (the default names, or a path). True when loaded.");
  m.def("nccl_status", &gpu::nccl_status);
  m.def("nccl_unique_id", []() { return py::bytes(gpu::nccl_unique_id()); },
        "Rank 0's communicator id (128 bytes) for nccl_comm_init on every rank.");
  m.def("nccl_comm_init", [](int device, int nranks, int rank, py::bytes id) {
          std::string s = id;
          py::gil_scoped_release nogil;  // waits for every rank to join
          return gpu::nccl_comm_init(device, nranks, rank, s);
        }, py::arg("device"), py::arg("nranks"), py::arg("rank"), py::arg("unique_id"));
  m.def("nccl_all_reduce", [](int64_t comm, const std::vector<BufferPtr>& srcs, const std::vector<BufferPtr>& dsts) {
          std::vector<const Buffer*> s;
          std::vector<Buffer*> d;
          for (const auto& b : srcs) s.push_back(b.get());
          for (const auto& b : dsts) d.push_back(b.get());
          py::gil_scoped_release nogil;
          gpu::nccl_all_reduce(comm, s, d);
        }, py::arg("comm"), py::arg("srcs"), py::arg("dsts"),
        "dsts[i] = the sum of srcs[i] over the communicator's ranks, queued on the device's stream.");
  m.def("nccl_comm_destroy", &gpu::nccl_comm_destroy, py::arg("comm"));
  m.def("set_allow_tf32", &gpu::set_allow_tf32, py::arg("enabled"),
        "True lets float32 matmul round its inputs to TF32 on tensor cores (faster, ~1e-3 relative error).");
  m.def("allow_tf32", &gpu::allow_tf32);
  m.def("sum_squares", [](const Buffer& x) {
    return gpu::sum_squares(x);
  });
}
