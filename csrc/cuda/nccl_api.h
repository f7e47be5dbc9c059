// The part of NCCL's C API that csrc/cuda/nccl.cpp calls, declared here so that lamina builds
// without NCCL's headers and loads the library at run time (dlopen). The communicator is an opaque
// pointer, enums are ints, the unique id a struct of 128 bytes passed by value: the same ABI as
// nccl.h's. csrc/cuda/check/nccl_api_check.cpp checks every declaration and value below against
// the real header wherever the build finds one (CMake: LAMINA_NCCL_INCLUDE_DIR).
#pragma once
#include <cstddef>

namespace lamina {
namespace gpu {
namespace nccl_api {

using Comm = void*;
using Stream = void*;  // cudaStream_t
constexpr int kUniqueIdBytes = 128;
struct UniqueId {
  char internal[kUniqueIdBytes];
};

constexpr int kSuccess = 0, kInProgress = 7;  // ncclResult_t
constexpr int kSum = 0;                      // ncclRedOp_t
constexpr int kInt32 = 2, kInt64 = 4, kFloat32 = 7, kFloat64 = 8, kBfloat16 = 9;  // ncclDataType_t

using GetVersionFn = int (*)(int*);
using GetErrorStringFn = const char* (*)(int);
using GetUniqueIdFn = int (*)(UniqueId*);
using CommInitRankFn = int (*)(Comm*, int nranks, UniqueId id, int rank);
using CommDestroyFn = int (*)(Comm);
using CommAbortFn = int (*)(Comm);
using CommGetAsyncErrorFn = int (*)(Comm, int*);
using AllReduceFn = int (*)(const void* send, void* recv, size_t count, int dtype, int op, Comm, Stream);
using BroadcastFn = int (*)(const void* send, void* recv, size_t count, int dtype, int root, Comm, Stream);
using GroupStartFn = int (*)();
using GroupEndFn = int (*)();

// Every entry point, with its NCCL name: X(type, member, name).
#define LAMINA_NCCL_ENTRY_POINTS(X)                               \
  X(GetVersionFn, get_version, ncclGetVersion)                    \
  X(GetErrorStringFn, error_string, ncclGetErrorString)           \
  X(GetUniqueIdFn, unique_id, ncclGetUniqueId)                    \
  X(CommInitRankFn, init_rank, ncclCommInitRank)                  \
  X(CommDestroyFn, destroy, ncclCommDestroy)                      \
  X(CommAbortFn, abort, ncclCommAbort)                            \
  X(CommGetAsyncErrorFn, async_error, ncclCommGetAsyncError)      \
  X(AllReduceFn, all_reduce, ncclAllReduce)                       \
  X(BroadcastFn, broadcast, ncclBroadcast)                        \
  X(GroupStartFn, group_start, ncclGroupStart)                    \
  X(GroupEndFn, group_end, ncclGroupEnd)

}  // namespace nccl_api
}  // namespace gpu
}  // namespace lamina
