// For the compile-time checks of lamina's declarations of a library's C API against the library's
// own header (cudnn_api_check.cpp, nccl_api_check.cpp): a function type reduced to the classes of
// its result and parameters as the calling convention sees them (any pointer, an enum or int, a
// size, a float, or a struct passed by value that a check names with `abi`).
#pragma once
#include <tuple>
#include <type_traits>

namespace lamina_abi {

template <class T, class = void>
struct abi { using type = T; };
template <class T>
struct abi<T*, void> { using type = const void*; };
template <class T>
struct abi<T, typename std::enable_if<std::is_enum<T>::value>::type> { using type = int; };
template <>
struct abi<unsigned, void> { using type = int; };

template <class F>
struct sig;
template <class R, class... A>
struct sig<R (*)(A...)> {
  using type = std::tuple<typename abi<typename std::remove_cv<R>::type>::type,
                          typename abi<typename std::remove_cv<A>::type>::type...>;
};

}  // namespace lamina_abi

// static_assert that lamina's api::Fn has the ABI of the library's `name`.
#define LAMINA_CHECK_ENTRY(Fn, member, name)                                                                    \
  static_assert(std::is_same<lamina_abi::sig<decltype(&::name)>::type, lamina_abi::sig<api::Fn>::type>::value, \
                "lamina's " #Fn " does not match the library header's " #name);
