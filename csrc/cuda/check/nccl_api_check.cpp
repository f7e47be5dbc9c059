// Compile-time check of csrc/cuda/nccl_api.h against NCCL's own header, built (by CMake) only where
// nccl.h is found: every entry point's parameters and result have the header's ABI (pointers are
// pointers, enums are ints, sizes are size_t, the unique id a 128-byte struct by value), and every
// constant has the header's value. It defines nothing: a mismatch fails the build.
#include <nccl.h>

#include <cstddef>
#include <tuple>
#include <type_traits>

#include "../nccl_api.h"

namespace {
namespace api = lamina::gpu::nccl_api;

// A parameter's calling-convention class: any pointer -> const void*, an enum or int -> int, the
// unique id (either declaration) -> a 128-byte marker.
struct IdBytes {};
template <class T, class = void>
struct abi { using type = T; };
template <class T>
struct abi<T*, void> { using type = const void*; };
template <class T>
struct abi<T, typename std::enable_if<std::is_enum<T>::value>::type> { using type = int; };
template <>
struct abi<ncclUniqueId, void> { using type = IdBytes; };
template <>
struct abi<api::UniqueId, void> { using type = IdBytes; };

template <class F>
struct sig;
template <class R, class... A>
struct sig<R (*)(A...)> {
  using type = std::tuple<typename abi<typename std::remove_cv<R>::type>::type,
                          typename abi<typename std::remove_cv<A>::type>::type...>;
};

#define LAMINA_CHECK_ENTRY(Fn, member, nccl_name)                                                  \
  static_assert(std::is_same<sig<decltype(&::nccl_name)>::type, sig<api::Fn>::type>::value,        \
                "csrc/cuda/nccl_api.h: " #Fn " does not match nccl.h's " #nccl_name);
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
