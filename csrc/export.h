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

inline DType dtype_of_array(const pybind11::array& a) {
  auto dt = a.dtype();
  if (dt.is(pybind11::dtype::of<float>())) return F32;
  if (dt.is(pybind11::dtype::of<int32_t>())) return I32;
  if (dt.is(pybind11::dtype::of<int64_t>())) return I64;
  if (dt.is(pybind11::dtype::of<bool>())) return BOOL;
  if (dt.is(pybind11::dtype::of<int8_t>())) return I8;
  throw TypeError("from_numpy: unsupported numpy dtype " + std::string(pybind11::str(dt)) +
                  "; expected float32, int32, int64 or bool (convert with .astype first)");
}

inline pybind11::dtype numpy_dtype(DType d) {
  switch (d) {
    case F32: return pybind11::dtype::of<float>();
    case I32: return pybind11::dtype::of<int32_t>();
    case I64: return pybind11::dtype::of<int64_t>();
    case I8: return pybind11::dtype::of<int8_t>();
    default: return pybind11::dtype::of<bool>();
  }
}

}  // namespace lamina
