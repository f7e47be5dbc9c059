// Row gathers and scatter-adds: embedding lookup, its dense gradient, IndexedSlices densified or
// added into a dense tensor (embedding_scatter_add), and take / take_grad along an axis.
//
// Embedding ids are checked on the device without a wait (gpu.h's deferred checks): the first
// out-of-range flat index is found with atomicMin, and the host's next wait raises the CPU's error
// naming the same id and position; meanwhile bad ids gather NaN and scatter nothing. take's
// indices are checked the same way (IndexError, as the CPU's); a bad index gathers zeros.
// Scatter-adds use float atomicAdd: rows that repeat are summed in no fixed order (within rounding
// of the CPU's ordered sums).
#include "../misc_checks.h"
#include "../strided.h"
#include "gpu.h"

namespace lamina {
namespace gpu {

namespace {

void require_int(const char* op, const char* arg, const Buffer& b) {
  if (b.dtype != I32 && b.dtype != I64) {
    Msg os;
    os << op << ": expected " << arg << " of dtype int32 or int64, received " << dtype_name(b.dtype);
    throw TypeError(os.str());
  }
}

// embedding.cpp's check_range (csrc/cpu/nn_common.h), deferred (gpu.h's defer_range_check): ids must
// lie in [0, hi); the call does not wait, and the host's next wait on the device raises the CPU's
// ValueError (same message) for the first id outside.
void defer_range(Context& c, const char* op, const char* what, const char* range_name, const Buffer& b, int64_t hi) {
  defer_range_check(c, b, 0, hi, [op = std::string(op), what = std::string(what), range = std::string(range_name),
                                  hi](int64_t bad, int64_t v) {
    Msg os;
    os << op << ": " << what << " " << v << " at flat index " << bad << " is out of range for " << hi << " " << range
       << "; " << what << "s must lie in [0, " << hi << ")" << (v < 0 ? " (negative values are not allowed)" : "");
    return os.str();
  });
}

// out[k] = table[ids[k / D] * D + k % D]; NaN for an id outside [0, V) (its deferred check raises)
template <class I>
__global__ void gather_rows_kernel(const float* t, const I* ids, int64_t n, int64_t D, int64_t V, float* o) {
  GRID_STRIDE(k, n * D) {
    const int64_t i = k / D, id = int64_t(ids[i]);
    o[k] = id >= 0 && id < V ? t[id * D + (k - i * D)] : NAN;
  }
}

// out[ids[k / D] * D + k % D] += values[k]; an id outside [0, V) adds nothing (its deferred check raises)
template <class I>
__global__ void scatter_rows_kernel(const float* v, const I* ids, int64_t n, int64_t D, int64_t V, float* o) {
  GRID_STRIDE(k, n * D) {
    const int64_t i = k / D, id = int64_t(ids[i]);
    if (id >= 0 && id < V) atomicAdd(o + id * D + (k - i * D), v[k]);
  }
}

struct ScatterNames {
  const char *op, *shape, *ids, *values, *rows;
};

// embedding.cpp's checked_scatter_add: out (V, D)[ids[n], :] += values[n, :] (out zeroed first when zero).
void checked_scatter_add(const ScatterNames& nm, Buffer& ob, int64_t V, int64_t D, const Buffer& ib, const Buffer& vb,
                         bool zero) {
  const char* op = nm.op;
  LAMINA_CHECK(V >= 0 && D >= 0, op << ": invalid " << nm.shape << " " << V << " x " << D);
  require_int(op, nm.ids, ib);
  const int64_t n = ib.numel;
  check_count(op, nm.values, vb, n * D, F32);
  check_count(op, "out", ob, V * D, F32);
  Context& c = op_device(op, {&ob, &ib, &vb});
  defer_range(c, op, "id", nm.rows, ib, V);
  if (zero && ob.numel) LAMINA_CUDA_CHECK(cudaMemsetAsync(ob.ptr, 0, size_t(ob.numel) * sizeof(float), c.stream));
  if (n * D > 0) {
    if (ib.dtype == I32)
      scatter_rows_kernel<<<grid_for(n * D), 256, 0, c.stream>>>(vb.data<float>(), ib.data<int32_t>(), n, D, V,
                                                                 ob.data<float>());
    else
      scatter_rows_kernel<<<grid_for(n * D), 256, 0, c.stream>>>(vb.data<float>(), ib.data<int64_t>(), n, D, V,
                                                                 ob.data<float>());
  }
  launched(c, op);
}

// ---- take along an axis ---------------------------------------------------------------------------
// out[o, j, c] = x[o, idx[j], c] (negative indices count from the end), elements of `bytes` bytes.
template <class T, class I>
__global__ void take_kernel(const T* x, int64_t n, int64_t inner, const I* idx, int64_t m, T* out, int64_t total) {
  GRID_STRIDE(k, total) {
    const int64_t c = k % inner, r = k / inner, o = r / m, j = r - o * m;
    int64_t i = int64_t(idx[j]);
    if (i < 0) i += n;
    out[k] = i >= 0 && i < n ? x[(o * n + i) * inner + c] : T(0);  // outside: its deferred check raises
  }
}

template <class I>
__global__ void take_grad_kernel(const float* g, int64_t n, int64_t inner, const I* idx, int64_t m, float* gx,
                                 int64_t total) {
  GRID_STRIDE(k, total) {
    const int64_t c = k % inner, r = k / inner, o = r / m, j = r - o * m;
    int64_t i = int64_t(idx[j]);
    if (i < 0) i += n;
    if (i >= 0 && i < n) atomicAdd(gx + (o * n + i) * inner + c, g[k]);
  }
}


// Indices outside [-n, n): the CPU kernel raises IndexError (misc_checks::index_out_of_bounds); on
// the device the check is deferred and raises the same error at the host's next wait.
void check_indices(Context& c, const char* op, const Buffer& idx, int64_t n) {
  misc_checks::check_index_dtype(op, idx);
  defer_range_check(c, idx, -n, n, [op = std::string(op), n](int64_t j, int64_t v) {
    return misc_checks::index_out_of_bounds(op.c_str(), v, j, n);
  }, CheckError::Index);
}

template <class T>
void launch_take(Context& c, const Buffer& x, int64_t n, int64_t inner, const Buffer& idx, Buffer& out) {
  const int64_t m = idx.numel, total = out.numel;
  if (idx.dtype == I32)
    take_kernel<<<grid_for(total), 256, 0, c.stream>>>(x.data<T>(), n, inner, idx.data<int32_t>(), m, out.data<T>(), total);
  else
    take_kernel<<<grid_for(total), 256, 0, c.stream>>>(x.data<T>(), n, inner, idx.data<int64_t>(), m, out.data<T>(), total);
}

}  // namespace

void embedding(const Buffer& table, int64_t V, int64_t D, const Buffer& ids, Buffer& out) {
  const char* op = "embedding_lookup";
  LAMINA_CHECK(V >= 0 && D >= 0, op << ": invalid table size " << V << " x " << D);
  check_count(op, "table", table, V * D, F32);
  require_int(op, "ids", ids);
  const int64_t n = ids.numel;
  check_count(op, "out", out, n * D, F32);
  Context& c = op_device(op, {&table, &ids, &out});
  defer_range(c, op, "id", "rows in the embedding table", ids, V);
  if (n * D == 0) return;
  if (ids.dtype == I32)
    gather_rows_kernel<<<grid_for(n * D), 256, 0, c.stream>>>(table.data<float>(), ids.data<int32_t>(), n, D, V,
                                                              out.data<float>());
  else
    gather_rows_kernel<<<grid_for(n * D), 256, 0, c.stream>>>(table.data<float>(), ids.data<int64_t>(), n, D, V,
                                                              out.data<float>());
  launched(c, op);
}

void embedding_grad(const Buffer& g, const Buffer& ids, int64_t V, int64_t D, Buffer& out) {
  static const ScatterNames names{"embedding_lookup_grad", "table size", "ids", "grad", "rows in the embedding table"};
  checked_scatter_add(names, out, V, D, ids, g, true);
}

void embedding_scatter_add(Buffer& out, int64_t V, int64_t D, const Buffer& ids, const Buffer& values, bool zero) {
  static const ScatterNames names{"IndexedSlices", "dense shape", "indices", "values", "rows (dense_shape[0])"};
  checked_scatter_add(names, out, V, D, ids, values, zero);
}

void take(const Buffer& x, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, Buffer& out) {
  const char* op = "take";
  misc_checks::check_take(x, outer, n, inner, idx, out);
  Context& c = op_device(op, {&x, &idx, &out});
  check_indices(c, op, idx, n);
  if (out.numel == 0) return;
  switch (dtype_size(x.dtype)) {
    case 1: launch_take<uint8_t>(c, x, n, inner, idx, out); break;
    case 2: launch_take<uint16_t>(c, x, n, inner, idx, out); break;
    case 4: launch_take<uint32_t>(c, x, n, inner, idx, out); break;
    default: launch_take<unsigned long long>(c, x, n, inner, idx, out); break;
  }
  launched(c, op);
}

void take_grad(const Buffer& g, int64_t outer, int64_t n, int64_t inner, const Buffer& idx, Buffer& gx) {
  const char* op = "take_grad";
  misc_checks::check_take_grad(g, outer, n, inner, idx, gx);
  const int64_t m = idx.numel;
  Context& c = op_device(op, {&g, &idx, &gx});
  check_indices(c, op, idx, n);
  if (gx.numel) LAMINA_CUDA_CHECK(cudaMemsetAsync(gx.ptr, 0, size_t(gx.numel) * sizeof(float), c.stream));
  if (g.numel) {
    if (idx.dtype == I32)
      take_grad_kernel<<<grid_for(g.numel), 256, 0, c.stream>>>(g.data<float>(), n, inner, idx.data<int32_t>(), m,
                                                                gx.data<float>(), g.numel);
    else
      take_grad_kernel<<<grid_for(g.numel), 256, 0, c.stream>>>(g.data<float>(), n, inner, idx.data<int64_t>(), m,
                                                                gx.data<float>(), g.numel);
  }
  launched(c, op);
}

}  // namespace gpu
}  // namespace lamina
