// The definitions every device module shares (the CPU one and the CUDA one): dtype codes,
// shapes, and the errors that pybind11 turns into Python's ValueError / TypeError / MemoryError.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace lamina {

// I8 holds quantized weights (int8 inference) only: the copies and the quantized kernels
// (quantize.cpp) are the only ones that take it. BF16 (bfloat16, mixed precision) is held as the
// top 16 bits of a float32: fill, copy, cast and the kernels that only move elements take it;
// the Python side runs every other kernel on float32 copies (backend/device.py, WideningTable).
enum DType : int { F32 = 0, I32 = 1, I64 = 2, BOOL = 3, I8 = 4, BF16 = 5 };
constexpr int kLastDType = BF16;

inline size_t dtype_size(DType d) {
  return d == I64 ? 8 : (d == BOOL || d == I8 ? 1 : (d == BF16 ? 2 : 4));
}
inline const char* dtype_name(DType d) {
  switch (d) {
    case F32: return "float32"; case I32: return "int32"; case I64: return "int64"; case BOOL: return "bool";
    case I8: return "int8"; case BF16: return "bfloat16";
  }
  return "?";
}

#ifdef __CUDACC__
#define LAMINA_HD __host__ __device__ inline
#else
#define LAMINA_HD inline
#endif

// bfloat16 <-> float32. Rounding to nearest, ties to even (as TensorFlow, JAX and PyTorch
// round); a NaN stays a (quiet) NaN and infinities stay infinite.
LAMINA_HD float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
LAMINA_HD uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;  // a NaN stays a (quiet) NaN
  return uint16_t(nan ? ((u >> 16) | 0x40u) : rounded);  // a select, so loops of it vectorize
}

using Shape = std::vector<int64_t>;

inline int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

// Builds error messages: `Msg() << "x " << n` as an ostringstream would print them (integers in
// decimal, floating point as %g, bools as 1 / 0), without iostreams. On the H200 machine of
// session 12, formatting a number through an ostringstream inside these modules crashed the
// process (a second copy of libstdc++'s locale facets, it seems); std::to_string and snprintf
// do not touch locales.
struct Msg {
  std::string s;
  Msg& operator<<(const char* v) { s += v ? v : "(null)"; return *this; }
  Msg& operator<<(const std::string& v) { s += v; return *this; }
  Msg& operator<<(char v) { s += v; return *this; }
  template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, char>, int> = 0>
  Msg& operator<<(T v) {
    if constexpr (std::is_same_v<T, bool>) s += v ? "1" : "0";
    else if constexpr (std::is_signed_v<T>) s += std::to_string(static_cast<long long>(v));
    else s += std::to_string(static_cast<unsigned long long>(v));
    return *this;
  }
  template <class T, std::enable_if_t<std::is_enum_v<T>, int> = 0>  // as its number (not as a char)
  Msg& operator<<(T v) { return *this << static_cast<long long>(v); }
  template <class T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
  Msg& operator<<(T v) {
    char b[40];
    std::snprintf(b, sizeof b, "%g", static_cast<double>(v));
    s += b;
    return *this;
  }
  template <class T>
  Msg& operator<<(const T*) = delete;  // no addresses in messages (a pointer would print as a bool)
  const std::string& str() const { return s; }
};

inline std::string shape_str(const Shape& s) {
  Msg os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << s[i] << (s.size() == 1 ? "," : (i + 1 < s.size() ? ", " : ""));
  os << ")";
  return os.str();
}

// Argument checks raise ValueError / TypeError in Python (pybind11 translates these).
struct TypeError : std::runtime_error { using std::runtime_error::runtime_error; };
// An allocation that cannot be made (too large, or the system refused): MemoryError in Python.
struct AllocError : std::runtime_error { using std::runtime_error::runtime_error; };

#define LAMINA_CHECK(cond, msg)                                   \
  do {                                                           \
    if (!(cond)) {                                               \
      Msg _os; _os << msg;                                       \
      throw std::invalid_argument(_os.str());                    \
    }                                                            \
  } while (0)

}  // namespace lamina
