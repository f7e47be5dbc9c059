// Opening a CUDA library at run time (cuDNN, NCCL): dlopen, then every entry point by dlsym.
#pragma once
#include <dlfcn.h>

#include <string>

namespace lamina {
namespace gpu {

// Binds one entry point of an entry-point list (LAMINA_CUDNN_ENTRY_POINTS, LAMINA_NCCL_ENTRY_POINTS)
// inside a `bool bind(void* so, std::string& missing)` whose scope has the library struct `g` and
// the API namespace `api`: a missing one is named and bind returns false.
#define LAMINA_DLSYM_ENTRY(Fn, member, name)                 \
  g.member = reinterpret_cast<api::Fn>(dlsym(so, #name));    \
  if (!g.member) {                                           \
    missing = #name;                                         \
    return false;                                            \
  }

// dlopen(name), then bind(so, missing) and refuse() (a reason to turn the library down, e.g. its
// version, or ""): the handle, or nullptr with `error` saying why (the library closed again).
template <class Bind, class Refuse>
void* open_library(const std::string& name, const char* what, Bind bind, Refuse refuse, std::string& error) {
  void* so = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!so) {
    const char* e = dlerror();
    error = e ? e : name + ": dlopen failed";
    return nullptr;
  }
  std::string missing;
  if (!bind(so, missing)) {
    error = name + " lacks " + what + "'s " + missing;
    dlclose(so);
    return nullptr;
  }
  const std::string why = refuse();
  if (!why.empty()) {
    error = name + " " + why;
    dlclose(so);
    return nullptr;
  }
  return so;
}

}  // namespace gpu
}  // namespace lamina
