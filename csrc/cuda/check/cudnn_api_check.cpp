// Compile-time check of csrc/cuda/cudnn_api.h against cuDNN's own header, built (by CMake) only
// where cudnn.h is found: every entry point's parameters and result have the header's ABI
// (pointers are pointers, enums are ints, sizes are size_t), every constant has the header's
// value, and the perf struct has the header's layout. It defines nothing: a mismatch fails the build.
#define CUDNN_IGNORE_DEPRECATED  // the legacy convolution API is deprecated (still there) in cuDNN 9
#include <cudnn.h>

#include <cstddef>

#include "../cudnn_api.h"
#include "abi.h"

namespace {
namespace api = lamina::gpu::cudnn_api;

LAMINA_CUDNN_ENTRY_POINTS(LAMINA_CHECK_ENTRY)

static_assert(api::kStatusSuccess == CUDNN_STATUS_SUCCESS, "cudnnStatus_t");
static_assert(api::kDataFloat == CUDNN_DATA_FLOAT && api::kDataBfloat16 == CUDNN_DATA_BFLOAT16, "cudnnDataType_t");
static_assert(api::kTensorNchw == CUDNN_TENSOR_NCHW && api::kTensorNhwc == CUDNN_TENSOR_NHWC, "cudnnTensorFormat_t");
static_assert(api::kCrossCorrelation == CUDNN_CROSS_CORRELATION, "cudnnConvolutionMode_t");
static_assert(api::kDefaultMath == CUDNN_DEFAULT_MATH && api::kTensorOpMath == CUDNN_TENSOR_OP_MATH &&
                  api::kFmaMath == CUDNN_FMA_MATH,
              "cudnnMathType_t");
static_assert(api::kDeterministic == CUDNN_DETERMINISTIC, "cudnnDeterminism_t");
static_assert(sizeof(cudnnTensorFormat_t) == sizeof(int) && sizeof(cudnnDataType_t) == sizeof(int) &&
                  sizeof(cudnnStatus_t) == sizeof(int),
              "cuDNN's enums are ints");

template <class P>
constexpr bool same_layout() {
  return sizeof(P) == sizeof(api::AlgoPerf) && offsetof(P, algo) == offsetof(api::AlgoPerf, algo) &&
         offsetof(P, status) == offsetof(api::AlgoPerf, status) && offsetof(P, time) == offsetof(api::AlgoPerf, time) &&
         offsetof(P, memory) == offsetof(api::AlgoPerf, memory) &&
         offsetof(P, determinism) == offsetof(api::AlgoPerf, determinism) &&
         offsetof(P, mathType) == offsetof(api::AlgoPerf, mathType) && sizeof(P::algo) == sizeof(int);
}
static_assert(same_layout<cudnnConvolutionFwdAlgoPerf_t>(), "cudnnConvolutionFwdAlgoPerf_t");
static_assert(same_layout<cudnnConvolutionBwdDataAlgoPerf_t>(), "cudnnConvolutionBwdDataAlgoPerf_t");
static_assert(same_layout<cudnnConvolutionBwdFilterAlgoPerf_t>(), "cudnnConvolutionBwdFilterAlgoPerf_t");
}  // namespace
