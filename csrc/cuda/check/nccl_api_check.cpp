// Compile-time check of csrc/cuda/nccl_api.h against NCCL's own header, built (by CMake) only where
// nccl.h is found: every entry point's parameters and result have the header's ABI (pointers are
// pointers, enums are ints, sizes are size_t, the unique id a 128-byte struct by value), and every
// constant has the header's value. It defines nothing: a mismatch fails the build.
#include <nccl.h>

#include <cstddef>

#include "../nccl_api.h"
#include "abi.h"

// The unique id, passed by value: both declarations are the same 128-byte class.
namespace lamina_abi {
struct IdBytes {};
template <>
struct abi<ncclUniqueId, void> { using type = IdBytes; };
template <>
struct abi<lamina::gpu::nccl_api::UniqueId, void> { using type = IdBytes; };
}  // namespace lamina_abi

namespace {
namespace api = lamina::gpu::nccl_api;

LAMINA_NCCL_ENTRY_POINTS(LAMINA_CHECK_ENTRY)

static_assert(sizeof(ncclUniqueId) == sizeof(api::UniqueId) && api::kUniqueIdBytes == NCCL_UNIQUE_ID_BYTES,
              "ncclUniqueId");
static_assert(api::kSuccess == ncclSuccess && api::kInProgress == ncclInProgress, "ncclResult_t");
static_assert(api::kSum == ncclSum, "ncclRedOp_t");
static_assert(api::kInt32 == ncclInt32 && api::kInt64 == ncclInt64 && api::kFloat32 == ncclFloat32 &&
                  api::kFloat64 == ncclFloat64 && api::kBfloat16 == ncclBfloat16,
              "ncclDataType_t");
static_assert(sizeof(ncclResult_t) == sizeof(int) && sizeof(ncclDataType_t) == sizeof(int) &&
                  sizeof(ncclRedOp_t) == sizeof(int),
              "NCCL's enums are ints");
}  // namespace
