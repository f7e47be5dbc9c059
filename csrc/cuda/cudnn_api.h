// The part of cuDNN's C API that csrc/cuda/cudnn.cpp calls (the legacy convolution API, present in
// cuDNN 8 and 9), declared here so that lamina builds without cuDNN's headers and loads the library
// at run time (dlopen). Handles and descriptors are opaque pointers, enums are ints: the same ABI
// as cudnn.h's. csrc/cuda/check/cudnn_api_check.cpp checks every declaration and value below against the
// real header wherever the build finds one (CMake: LAMINA_CUDNN_INCLUDE_DIR).
#pragma once
#include <cstddef>

namespace lamina {
namespace gpu {
namespace cudnn_api {

using Handle = void*;
using TensorDesc = void*;
using FilterDesc = void*;
using ConvDesc = void*;
using Stream = void*;  // cudaStream_t

// cudnnStatus_t: only success is compared; other statuses are reported with GetErrorString.
constexpr int kStatusSuccess = 0;
// cudnnDataType_t
constexpr int kDataFloat = 0, kDataBfloat16 = 9;
// cudnnTensorFormat_t (filters: NHWC is the KRSC layout, k x h x w x c)
constexpr int kTensorNchw = 0, kTensorNhwc = 1;
// cudnnConvolutionMode_t
constexpr int kCrossCorrelation = 1;
// cudnnMathType_t
constexpr int kDefaultMath = 0, kTensorOpMath = 1, kFmaMath = 3;
// cudnnDeterminism_t
constexpr int kDeterministic = 1;

// cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionBwdDataAlgoPerf_t and
// cudnnConvolutionBwdFilterAlgoPerf_t share this layout.
struct AlgoPerf {
  int algo;
  int status;
  float time;
  size_t memory;
  int determinism;
  int mathType;
  int reserved[3];
};

using GetVersionFn = size_t (*)();
using GetErrorStringFn = const char* (*)(int);
using CreateFn = int (*)(Handle*);
using DestroyFn = int (*)(Handle);
using SetStreamFn = int (*)(Handle, Stream);
using CreateTensorDescFn = int (*)(TensorDesc*);
using SetTensor4dFn = int (*)(TensorDesc, int format, int dtype, int n, int c, int h, int w);
using DestroyTensorDescFn = int (*)(TensorDesc);
using CreateFilterDescFn = int (*)(FilterDesc*);
using SetFilter4dFn = int (*)(FilterDesc, int dtype, int format, int k, int c, int h, int w);
using DestroyFilterDescFn = int (*)(FilterDesc);
using CreateConvDescFn = int (*)(ConvDesc*);
using SetConv2dFn = int (*)(ConvDesc, int pad_h, int pad_w, int u, int v, int dilation_h, int dilation_w, int mode,
                            int compute_type);
using SetConvGroupCountFn = int (*)(ConvDesc, int);
using SetConvMathTypeFn = int (*)(ConvDesc, int);
using DestroyConvDescFn = int (*)(ConvDesc);
using GetConv2dForwardOutputDimFn = int (*)(ConvDesc, TensorDesc, FilterDesc, int*, int*, int*, int*);
using GetFwdAlgoFn = int (*)(Handle, TensorDesc x, FilterDesc w, ConvDesc, TensorDesc y, int requested,
                             int* returned, AlgoPerf*);
using GetFwdWorkspaceFn = int (*)(Handle, TensorDesc x, FilterDesc w, ConvDesc, TensorDesc y, int algo, size_t*);
using ConvForwardFn = int (*)(Handle, const void* alpha, TensorDesc, const void* x, FilterDesc, const void* w,
                              ConvDesc, int algo, void* workspace, size_t workspace_bytes, const void* beta,
                              TensorDesc, void* y);
using GetBwdDataAlgoFn = int (*)(Handle, FilterDesc w, TensorDesc dy, ConvDesc, TensorDesc dx, int requested,
                                 int* returned, AlgoPerf*);
using GetBwdDataWorkspaceFn = int (*)(Handle, FilterDesc w, TensorDesc dy, ConvDesc, TensorDesc dx, int algo,
                                      size_t*);
using ConvBwdDataFn = int (*)(Handle, const void* alpha, FilterDesc, const void* w, TensorDesc, const void* dy,
                              ConvDesc, int algo, void* workspace, size_t workspace_bytes, const void* beta,
                              TensorDesc, void* dx);
using GetBwdFilterAlgoFn = int (*)(Handle, TensorDesc x, TensorDesc dy, ConvDesc, FilterDesc dw, int requested,
                                   int* returned, AlgoPerf*);
using GetBwdFilterWorkspaceFn = int (*)(Handle, TensorDesc x, TensorDesc dy, ConvDesc, FilterDesc dw, int algo,
                                        size_t*);
using ConvBwdFilterFn = int (*)(Handle, const void* alpha, TensorDesc, const void* x, TensorDesc, const void* dy,
                                ConvDesc, int algo, void* workspace, size_t workspace_bytes, const void* beta,
                                FilterDesc, void* dw);

// Every entry point, with its cuDNN name: X(type, member, "cudnnName").
#define LAMINA_CUDNN_ENTRY_POINTS(X)                                                          \
  X(GetVersionFn, get_version, cudnnGetVersion)                                               \
  X(GetErrorStringFn, error_string, cudnnGetErrorString)                                      \
  X(CreateFn, create, cudnnCreate)                                                            \
  X(DestroyFn, destroy, cudnnDestroy)                                                         \
  X(SetStreamFn, set_stream, cudnnSetStream)                                                  \
  X(CreateTensorDescFn, create_tensor, cudnnCreateTensorDescriptor)                           \
  X(SetTensor4dFn, set_tensor4d, cudnnSetTensor4dDescriptor)                                  \
  X(DestroyTensorDescFn, destroy_tensor, cudnnDestroyTensorDescriptor)                        \
  X(CreateFilterDescFn, create_filter, cudnnCreateFilterDescriptor)                           \
  X(SetFilter4dFn, set_filter4d, cudnnSetFilter4dDescriptor)                                  \
  X(DestroyFilterDescFn, destroy_filter, cudnnDestroyFilterDescriptor)                        \
  X(CreateConvDescFn, create_conv, cudnnCreateConvolutionDescriptor)                          \
  X(SetConv2dFn, set_conv2d, cudnnSetConvolution2dDescriptor)                                 \
  X(SetConvGroupCountFn, set_groups, cudnnSetConvolutionGroupCount)                           \
  X(SetConvMathTypeFn, set_math, cudnnSetConvolutionMathType)                                 \
  X(DestroyConvDescFn, destroy_conv, cudnnDestroyConvolutionDescriptor)                       \
  X(GetConv2dForwardOutputDimFn, output_dim, cudnnGetConvolution2dForwardOutputDim)           \
  X(GetFwdAlgoFn, fwd_algos, cudnnGetConvolutionForwardAlgorithm_v7)                          \
  X(GetFwdWorkspaceFn, fwd_workspace, cudnnGetConvolutionForwardWorkspaceSize)                \
  X(ConvForwardFn, forward, cudnnConvolutionForward)                                          \
  X(GetBwdDataAlgoFn, bwd_data_algos, cudnnGetConvolutionBackwardDataAlgorithm_v7)            \
  X(GetBwdDataWorkspaceFn, bwd_data_workspace, cudnnGetConvolutionBackwardDataWorkspaceSize)  \
  X(ConvBwdDataFn, backward_data, cudnnConvolutionBackwardData)                               \
  X(GetBwdFilterAlgoFn, bwd_filter_algos, cudnnGetConvolutionBackwardFilterAlgorithm_v7)      \
  X(GetBwdFilterWorkspaceFn, bwd_filter_workspace, cudnnGetConvolutionBackwardFilterWorkspaceSize) \
  X(ConvBwdFilterFn, backward_filter, cudnnConvolutionBackwardFilter)

}  // namespace cudnn_api
}  // namespace gpu
}  // namespace lamina
