// Broadcasting iteration: inputs are aligned to the output shape (numpy rules), adjacent
// dimensions are merged where possible, and the innermost loop gets stride 0 or 1 per input.
// Host-side planning only (no threads), shared by every device module; the CPU loops that walk
// a plan are in csrc/cpu/broadcast_loops.h.
#pragma once
#include <algorithm>

#include "common.h"

namespace lamina {

struct BroadcastPlan {
  // After merging: dims[k] and, for each input j, strides[j][k] (in elements, 0 = broadcast).
  std::vector<int64_t> dims;
  std::vector<std::vector<int64_t>> strides;
  int64_t total = 1;
};

inline BroadcastPlan make_plan(const std::vector<const Shape*>& ins, const Shape& out, const char* op) {
  const size_t nd = out.size();
  const size_t ni = ins.size();
  for (auto d : out) LAMINA_CHECK(d >= 0, op << ": output shape " << shape_str(out) << " has a negative dimension");
  std::vector<std::vector<int64_t>> st(ni, std::vector<int64_t>(nd, 0));
  for (size_t j = 0; j < ni; ++j) {
    const Shape& s = *ins[j];
    LAMINA_CHECK(s.size() <= nd, op << ": operand of shape " << shape_str(s) << " cannot broadcast to "
                                    << shape_str(out) << " (it has more dimensions)");
    int64_t stride = 1;
    for (size_t k = 0; k < s.size(); ++k) {
      size_t ok = nd - 1 - k, sk = s.size() - 1 - k;
      int64_t d = s[sk];
      LAMINA_CHECK(d == out[ok] || d == 1, op << ": operand of shape " << shape_str(s)
                                              << " cannot broadcast to " << shape_str(out));
      st[j][ok] = (d == 1 && out[ok] != 1) ? 0 : stride;
      stride *= d;
    }
  }
  BroadcastPlan p;
  for (auto d : out) p.total *= d;
  // Drop size-1 dims, then merge dim k into k+1 when every input is contiguous across them.
  std::vector<int64_t> dims;
  std::vector<std::vector<int64_t>> strides(ni);
  for (size_t k = 0; k < nd; ++k) {
    if (out[k] == 1) continue;
    if (!dims.empty()) {
      bool merge = true;
      for (size_t j = 0; j < ni; ++j)
        if (strides[j].back() != st[j][k] * out[k]) { merge = false; break; }
      if (merge) {
        dims.back() *= out[k];
        for (size_t j = 0; j < ni; ++j) strides[j].back() = st[j][k];
        continue;
      }
    }
    dims.push_back(out[k]);
    for (size_t j = 0; j < ni; ++j) strides[j].push_back(st[j][k]);
  }
  if (dims.empty()) {
    dims.push_back(1);
    for (size_t j = 0; j < ni; ++j) strides[j].push_back(0);
  }
  p.dims = dims;
  p.strides = strides;
  return p;
}

}  // namespace lamina
