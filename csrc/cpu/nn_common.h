// Helpers the nn kernel files share (nn.cpp: softmax and the losses, norm.cpp: batch and layer
// normalisation, embedding.cpp: embedding and sparse rows): integer id checks and the walk over
// the lanes of an (outer, R, inner) view.
#pragma once
#include <algorithm>
#include <type_traits>

#include "common.h"

namespace lamina {
namespace nn_common {

using Unit = std::integral_constant<int64_t, 1>;
constexpr int64_t kMaxBlocks = 64;

inline void require_int(const char* op, const char* arg, const Buffer& b) {
  if (b.dtype != I32 && b.dtype != I64) {
    Msg os;
    os << op << ": expected " << arg << " of dtype int32 or int64, received " << dtype_name(b.dtype);
    throw TypeError(os.str());
  }
}

// Index of the first value outside [0, hi), or -1.
template <class L>
inline int64_t first_out_of_range(const L* v, int64_t n, int64_t hi) {
  for (int64_t i = 0; i < n; ++i)
    if (v[i] < 0 || int64_t(v[i]) >= hi) return i;
  return -1;
}

inline int64_t label_at(const Buffer& b, int64_t i) {
  return b.dtype == I32 ? int64_t(b.data<int32_t>()[i]) : b.data<int64_t>()[i];
}

// Checks integer class ids / row ids lie in [0, hi) before any parallel work starts.
inline void check_range(const char* op, const char* what, const char* range_name, const Buffer& b, int64_t hi) {
  int64_t bad = b.dtype == I32 ? first_out_of_range(b.data<int32_t>(), b.numel, hi)
                               : first_out_of_range(b.data<int64_t>(), b.numel, hi);
  if (bad >= 0) {
    int64_t v = label_at(b, bad);
    LAMINA_CHECK(false, op << ": " << what << " " << v << " at flat index " << bad << " is out of range for "
                           << hi << " " << range_name << "; " << what << "s must lie in [0, " << hi << ")"
                           << (v < 0 ? " (negative values are not allowed)" : ""));
  }
}

// body(lane, base, stride) for each of the outer*inner lanes of an (outer, R, inner) view; the
// stride is a compile-time 1 when inner == 1 so contiguous rows vectorise.
template <class Body>
inline void for_each_lane(int64_t outer, int64_t R, int64_t inner, Body body) {
  const int64_t n = outer * inner;
  const bool par = n > 1 && n * std::max<int64_t>(R, 1) > kParallelGrain;
  if (inner == 1) parallel_for(n, par, [&](int64_t l) { body(l, l * R, Unit()); });
  else parallel_for(n, par, [&](int64_t l) { body(l, (l / inner) * R * inner + l % inner, inner); });
}

}  // namespace nn_common
}  // namespace lamina
