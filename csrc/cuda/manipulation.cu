// strided_copy: dst view (=|+=) src view, both (offset, strides) over one shape: transposes,
// slices, concatenation, padding and their gradients. A destination view that touches an element
// twice runs on the host (its result depends on the order of the writes).
#include "../strided.h"
#include "bf16.cuh"
#include "gpu.h"

namespace lamina {
namespace gpu {

struct View {
  int nd = 0;
  int64_t dims[kMaxDims], ss[kMaxDims], ds[kMaxDims];
};

template <class T, bool ACC>
__global__ void strided_kernel(const T* src, T* dst, int64_t total, View v) {
  GRID_STRIDE(i, total) {
    int64_t r = i, so = 0, dof = 0;
    for (int k = v.nd - 1; k >= 0; --k) {
      const int64_t c = r % v.dims[k];
      r /= v.dims[k];
      so += c * v.ss[k];
      dof += c * v.ds[k];
    }
    if constexpr (!ACC) dst[dof] = src[so];
    else if constexpr (std::is_same<T, uint16_t>::value)  // bfloat16: a float32 sum rounded once (the CPU's BF16Acc)
      dst[dof] = narrow<uint16_t>(wide(dst[dof]) + wide(src[so]));
    else dst[dof] += src[so];
  }
}

void strided_copy(const Buffer& src, int64_t soff, const Shape& sst, Buffer& dst, int64_t doff, const Shape& dst_st,
                  const Shape& shape, bool accumulate) {
  const char* op = "strided_copy";
  LAMINA_CHECK(sst.size() == shape.size() && dst_st.size() == shape.size(),
               op << ": shape " << shape_str(shape) << " needs " << shape.size() << " strides per side, received source strides "
                  << shape_str(sst) << " and destination strides " << shape_str(dst_st));
  check_dtype(op, "destination", dst, src.dtype);
  numel_checked(op, shape);
  check_view(op, "source", src.numel, soff, sst, shape);
  check_view(op, "destination", dst.numel, doff, dst_st, shape);
  StridedPlan p = make_strided_plan(shape, sst, dst_st);
  Context& c = op_device(op, {&src, &dst});
  if (p.total == 0) return;
  LAMINA_CHECK(src.ptr != dst.ptr, op << ": source and destination are the same buffer");
  if (accumulate && (src.dtype == BOOL || src.dtype == I8))
    throw TypeError(std::string("strided_copy: cannot accumulate ") + dtype_name(src.dtype) +
                    " tensors; expected float32, int32 or int64");
  if (int(p.dims.size()) > kMaxDims || !non_overlapping(p.dims, p.ds))
    throw Unsupported("strided_copy: this view runs on the host");
  View v;
  v.nd = int(p.dims.size());
  for (int k = 0; k < v.nd; ++k) {
    v.dims[k] = p.dims[size_t(k)];
    v.ss[k] = p.ss[size_t(k)];
    v.ds[k] = p.ds[size_t(k)];
  }
  const unsigned g = grid_for(p.total);
  auto s = c.stream;
  if (accumulate) {
    switch (src.dtype) {
      case F32: strided_kernel<float, true><<<g, 256, 0, s>>>(src.data<float>() + soff, dst.data<float>() + doff, p.total, v); break;
      case BF16: strided_kernel<uint16_t, true><<<g, 256, 0, s>>>(src.data<uint16_t>() + soff, dst.data<uint16_t>() + doff, p.total, v); break;
      case I32: strided_kernel<int32_t, true><<<g, 256, 0, s>>>(src.data<int32_t>() + soff, dst.data<int32_t>() + doff, p.total, v); break;
      default: strided_kernel<int64_t, true><<<g, 256, 0, s>>>(src.data<int64_t>() + soff, dst.data<int64_t>() + doff, p.total, v); break;
    }
  } else {
    switch (dtype_size(src.dtype)) {
      case 1: strided_kernel<uint8_t, false><<<g, 256, 0, s>>>(src.data<uint8_t>() + soff, dst.data<uint8_t>() + doff, p.total, v); break;
      case 2: strided_kernel<uint16_t, false><<<g, 256, 0, s>>>(src.data<uint16_t>() + soff, dst.data<uint16_t>() + doff, p.total, v); break;
      case 4: strided_kernel<uint32_t, false><<<g, 256, 0, s>>>(src.data<uint32_t>() + soff, dst.data<uint32_t>() + doff, p.total, v); break;
      default: strided_kernel<uint64_t, false><<<g, 256, 0, s>>>(src.data<uint64_t>() + soff, dst.data<uint64_t>() + doff, p.total, v); break;
    }
  }
  launched(c, op);
}

}  // namespace gpu
}  // namespace lamina
