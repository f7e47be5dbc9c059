// The definitions every device module shares (the CPU one and the CUDA one): dtype codes,
// shapes, and the errors that pybind11 turns into Python's ValueError / TypeError / MemoryError.
#pragma once
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace lamina {

// I8 holds quantized weights (int8 inference) only: the copies and the quantized kernels
// (quantize.cpp) are the only ones that take it.
enum DType : int { F32 = 0, I32 = 1, I64 = 2, BOOL = 3, I8 = 4 };

inline size_t dtype_size(DType d) { return d == I64 ? 8 : (d == BOOL || d == I8 ? 1 : 4); }
inline const char* dtype_name(DType d) {
  switch (d) {
    case F32: return "float32"; case I32: return "int32"; case I64: return "int64"; case BOOL: return "bool";
    case I8: return "int8";
  }
  return "?";
}

using Shape = std::vector<int64_t>;

inline int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

inline std::string shape_str(const Shape& s) {
  std::ostringstream os;
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
      std::ostringstream _os; _os << msg;                        \
      throw std::invalid_argument(_os.str());                    \
    }                                                            \
  } while (0)

}  // namespace lamina
