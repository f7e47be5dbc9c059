// cuDNN for convolutions, when the machine has it (cudnn.cpp): loaded at run time, so the module
// builds without it and runs without it (its convolutions then take conv.cu's im2col + GEMM path).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gpu.h"

namespace lamina {
namespace gpu {

bool load_cudnn(const std::string& path);  // the default names, or a path; true when loaded
std::string cudnn_status();
void set_use_cudnn(bool on);  // false: convolutions take lamina's own kernels (tests, comparisons)
// (convolution calls cuDNN ran, calls it refused or failed, which lamina's kernels then ran)
// since the library was loaded.
std::pair<int64_t, int64_t> cudnn_counts();
// One row per plan: its key (device, N, H, W, C, KH, KW, O, OH, OW, sh, sw, dh, dw, pt, pl, groups,
// bf16, math type), whether cuDNN took the geometry, then per direction (forward, backward data,
// backward filter) the algorithm (-1: none usable, -2: not asked yet) and its workspace bytes.
std::vector<std::vector<int64_t>> cudnn_plans();

// A 2-D convolution in cuDNN's terms: NHWC images x (N, H, W, C) and y (N, OH, OW, O), the
// kernel in cuDNN's KRSC layout (O, KH, KW, C / groups), float32 or (bf16) bfloat16 throughout;
// padding pt rows above and pl columns left (cuDNN pads both sides alike).
struct CudnnConv {
  int64_t N, H, W, C, KH, KW, O, OH, OW, sh, sw, dh, dw, pt, pl, groups;
  bool bf16;
};

// Whether cuDNN can take this convolution on c's device: loaded and enabled, every size within
// its int arguments, and padding cuDNN can express (the output size with pt and pl on both sides
// is OH x OW; TensorFlow-style "same" padding with one more row below than above is not).
bool cudnn_can_run(Context& c, const CudnnConv& g);
// y = conv(x, w); dx = the input gradient of dy; dw = the kernel gradient (KRSC). Each queues the
// call on c's stream and returns true, or returns false having written nothing the caller keeps
// (no deterministic algorithm, or cuDNN refused: the reason is in cudnn_status()), and the caller
// runs its own kernels.
bool cudnn_conv_forward(Context& c, const CudnnConv& g, const void* x, const void* w, void* y);
bool cudnn_conv_backward_data(Context& c, const CudnnConv& g, const void* dy, const void* w, void* dx);
bool cudnn_conv_backward_filter(Context& c, const CudnnConv& g, const void* x, const void* dy, void* dw);

}  // namespace gpu
}  // namespace lamina
