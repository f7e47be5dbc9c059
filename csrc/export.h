// What every device module exports the same way: the op-code tables (as {name: code} dicts) and
// the numpy dtype of each dtype code.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "opcodes.h"
#include "types.h"

namespace lamina {

inline void export_op_codes(pybind11::module_& m) {
#define LAMINA_EXPORT_CODE(name) d[#name] = int(lamina::name);
#define LAMINA_EXPORT_TABLE(NAME, LIST) \
  {                                     \
    pybind11::dict d;                   \
    LIST(LAMINA_EXPORT_CODE)            \
    m.attr(NAME) = d;                   \
  }
  LAMINA_EXPORT_TABLE("BINARY_OPS", LAMINA_BINARY_OPS)
  LAMINA_EXPORT_TABLE("UNARY_OPS", LAMINA_UNARY_OPS)
  LAMINA_EXPORT_TABLE("GRAD_OPS", LAMINA_GRAD_OPS)
  LAMINA_EXPORT_TABLE("REDUCE_OPS", LAMINA_REDUCE_OPS)
  LAMINA_EXPORT_TABLE("SCAN_OPS", LAMINA_SCAN_OPS)
#undef LAMINA_EXPORT_TABLE
#undef LAMINA_EXPORT_CODE
}

// `as` (a dtype code, or -1) is what the caller says the array holds: BF16 data comes as uint16 bits
// (numpy has no bfloat16), which is never inferred.
inline DType dtype_of_array(const pybind11::array& a, int as = -1) {
  auto dt = a.dtype();
  if (as == BF16) {
    if (!dt.is(pybind11::dtype::of<uint16_t>()))
      throw TypeError("from_numpy: bfloat16 data comes as a uint16 array of its bits, received " +
                      std::string(pybind11::str(dt)));
    return BF16;
  }
  if (dt.is(pybind11::dtype::of<float>())) return F32;
  if (dt.is(pybind11::dtype::of<int32_t>())) return I32;
  if (dt.is(pybind11::dtype::of<int64_t>())) return I64;
  if (dt.is(pybind11::dtype::of<bool>())) return BOOL;
  if (dt.is(pybind11::dtype::of<int8_t>())) return I8;
  throw TypeError("from_numpy: unsupported numpy dtype " + std::string(pybind11::str(dt)) +
                  "; expected float32, int32, int64 or bool (convert with .astype first)");
}

// The array from_numpy(..., dtype) would take: dtype_of_array's, when it is the one asked for.
inline DType checked_dtype_of_array(const pybind11::array& a, int as) {
  DType d = dtype_of_array(a, as);
  if (as >= 0 && int(d) != as)
    throw TypeError(std::string("from_numpy: asked for ") + dtype_name(DType(as)) + ", the array holds " +
                    dtype_name(d));
  return d;
}

inline pybind11::dtype numpy_dtype(DType d) {
  switch (d) {
    case F32: return pybind11::dtype::of<float>();
    case I32: return pybind11::dtype::of<int32_t>();
    case I64: return pybind11::dtype::of<int64_t>();
    case I8: return pybind11::dtype::of<int8_t>();
    case BF16: return pybind11::dtype::of<uint16_t>();  // the bits (numpy has no bfloat16)
    default: return pybind11::dtype::of<bool>();
  }
}

}  // namespace lamina
