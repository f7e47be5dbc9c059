// Buffers, the caching host allocator, host<->numpy copies, fill, copy and cast.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <type_traits>

#include "common.h"
#include "device.h"
#include "export.h"
#include "simd.h"

namespace py = pybind11;

namespace lamina {

// ---- caching allocator ---------------------------------------------------------------------
namespace {
struct HostCache {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;  // rounded size -> block
  size_t in_use = 0, cached = 0, system_allocs = 0;
};
HostCache& cache() {
  static HostCache* c = new HostCache();  // never destroyed: buffers may outlive static teardown
  return *c;
}
size_t round_size(size_t n) {
  if (n <= 4096) return (n + 63) & ~size_t(63);
  // Above 4 KiB: eight size classes per power of two (at most 12.5% waste).
  size_t p = 4096;
  while (p * 2 < n) p *= 2;
  size_t step = p / 8;
  return (n + step - 1) / step * step;
}
}  // namespace

// The largest block the allocator hands out: far beyond any real buffer, and small enough that
// the size classes cannot overflow.
constexpr size_t kMaxBytes = size_t(1) << 48;

void* host_alloc(size_t nbytes, size_t* rounded) {
  if (nbytes > kMaxBytes)
    throw AllocError("cannot allocate " + std::to_string(nbytes) + " bytes: more than the " +
                     std::to_string(kMaxBytes >> 40) + " TiB a buffer may hold");
  size_t r = round_size(nbytes == 0 ? 64 : nbytes);
  *rounded = r;
  HostCache& c = cache();
  {
    std::lock_guard<std::mutex> g(c.mu);
    auto it = c.free_blocks.find(r);
    if (it != c.free_blocks.end()) {
      void* p = it->second;
      c.free_blocks.erase(it);
      c.cached -= r;
      c.in_use += r;
      return p;
    }
    c.in_use += r;
    c.system_allocs++;
  }
  void* p = std::aligned_alloc(64, r);
  if (!p) {
    {
      std::lock_guard<std::mutex> g(c.mu);
      c.in_use -= r;
    }
    throw AllocError("cannot allocate " + std::to_string(nbytes) + " bytes: the system refused (out of memory)");
  }
  return p;
}

void host_free(void* p, size_t rounded) {
  if (!p) return;
  HostCache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  c.free_blocks.emplace(rounded, p);
  c.in_use -= rounded;
  c.cached += rounded;
}

static void empty_cache() {
  HostCache& c = cache();
  std::lock_guard<std::mutex> g(c.mu);
  for (auto& kv : c.free_blocks) std::free(kv.second);
  c.free_blocks.clear();
  c.cached = 0;
}

Buffer::Buffer(int64_t n, DType dt, int dev) : numel(n), dtype(dt), device(dev) {
  LAMINA_CHECK(n >= 0, "cannot allocate a buffer of " << n << " elements");
  if (uint64_t(n) > kMaxBytes / dtype_size(dt))  // checked before multiplying: no overflow
    throw AllocError("cannot allocate a buffer of " + std::to_string(n) + " " + dtype_name(dt) + " elements (" +
                     std::to_string(n) + " x " + std::to_string(dtype_size(dt)) + " bytes) on cpu:" +
                     std::to_string(dev) + ": more than the 256 TiB a buffer may hold");
  try {
    ptr = host_alloc(size_t(n) * dtype_size(dt), &capacity);
  } catch (const AllocError& e) {
    throw AllocError("cannot allocate a buffer of " + std::to_string(n) + " " + dtype_name(dt) + " elements on cpu:" +
                     std::to_string(dev) + ": " + e.what());
  }
}
Buffer::~Buffer() { host_free(ptr, capacity); }

// ---- copies --------------------------------------------------------------------------------
BufferPtr from_numpy(py::array a, int device, int dtype) {
  DType dt = checked_dtype_of_array(a, dtype);
  LAMINA_CHECK(a.flags() & py::array::c_style, "from_numpy: expected a C-contiguous array");
  device_context(device);  // checks the index
  auto b = std::make_shared<Buffer>(int64_t(a.size()), dt, device);
  if (a.nbytes()) std::memcpy(b->ptr, a.data(), size_t(a.nbytes()));
  return b;
}

py::array to_numpy(const Buffer& b, const Shape& shape) {
  LAMINA_CHECK(numel_of(shape) == b.numel, "to_numpy: shape " << shape_str(shape) << " does not match "
                                                               << b.numel << " elements");
  py::array out(numpy_dtype(b.dtype), std::vector<py::ssize_t>(shape.begin(), shape.end()));
  wait_buffer(b);  // the kernels that wrote it, on an asynchronous device
  if (b.numel) std::memcpy(out.mutable_data(), b.ptr, size_t(b.numel) * dtype_size(b.dtype));
  return out;
}

// A numpy array over the buffer's own memory (no copy), keeping the buffer alive: for handing
// host buffers to other libraries (MPI). Waits for the kernels that last touched the buffer;
// the caller must not queue kernels on it while the view is in use.
static py::array host_view(const BufferPtr& b, const Shape& shape) {
  LAMINA_CHECK(b, "host_view: expected a Buffer");
  LAMINA_CHECK(numel_of(shape) == b->numel, "host_view: shape " << shape_str(shape) << " does not match "
                                                                 << b->numel << " elements");
  wait_buffer(*b);
  py::dtype dt = numpy_dtype(b->dtype);
  auto* keep = new BufferPtr(b);
  py::capsule owner(keep, [](void* p) { delete static_cast<BufferPtr*>(p); });
  return py::array(dt, std::vector<py::ssize_t>(shape.begin(), shape.end()), b->ptr, owner);
}

// Fill with a scalar, converted to the buffer's dtype.
static void fill(Buffer& b, double v) {
  int64_t n = b.numel;
  switch (b.dtype) {
    case F32: { float* p = b.data<float>(); float x = float(v);
      parallel_for(n, n > kParallelGrain, [&](int64_t i) { p[i] = x; }); break; }
    case I32: { int32_t* p = b.data<int32_t>(); int32_t x = int32_t(v); for (int64_t i = 0; i < n; ++i) p[i] = x; break; }
    case I64: { int64_t* p = b.data<int64_t>(); int64_t x = int64_t(v); for (int64_t i = 0; i < n; ++i) p[i] = x; break; }
    case BOOL: { std::memset(b.ptr, v != 0.0, size_t(n)); break; }
    case BF16: {
      uint16_t* p = b.data<uint16_t>();
      const uint16_t x = f32_to_bf16(float(v));
      for (int64_t i = 0; i < n; ++i) p[i] = x;
      break;
    }
    case I8: throw TypeError("fill: int8 buffers hold quantized weights and are written by copies only");
  }
}

static void copy(const Buffer& src, Buffer& dst) {
  LAMINA_CHECK(src.numel == dst.numel, "copy: source holds " << src.numel << " elements, destination " << dst.numel);
  check_dtype("copy", "destination", dst, src.dtype);
  size_t nbytes = size_t(src.numel) * dtype_size(src.dtype);
  if (src.ptr != dst.ptr && nbytes) std::memcpy(dst.ptr, src.ptr, nbytes);
}

LAMINA_CLONES void bf16_round_row(const float* s, uint16_t* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
}
LAMINA_CLONES void bf16_widen_row(const uint16_t* s, float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
}

namespace {
// f(first, count) over [0, n) in one run per thread (one run below kParallelGrain)
template <class F>
void chunks(int64_t n, F&& f) {
  run_parallel(n > kParallelGrain, [&](int nt, int tid) {
    const int64_t a = n * tid / nt, b = n * (tid + 1) / nt;
    if (b > a) f(a, b - a);
  });
}
}  // namespace

void bf16_round_n(const float* s, uint16_t* d, int64_t n) {
  chunks(n, [&](int64_t a, int64_t c) { bf16_round_row(s + a, d + a, c); });
}
void bf16_widen_n(const uint16_t* s, float* d, int64_t n) {
  chunks(n, [&](int64_t a, int64_t c) { bf16_widen_row(s + a, d + a, c); });
}

template <class S, class D>
static void cast_loop(const S* s, D* d, int64_t n) {
  parallel_for(n, n > kParallelGrain, [&](int64_t i) { d[i] = static_cast<D>(s[i]); });
}
template <class S>
static void cast_from(const S* s, Buffer& dst, int64_t n) {
  switch (dst.dtype) {
    case F32: cast_loop(s, dst.data<float>(), n); break;
    case I32: cast_loop(s, dst.data<int32_t>(), n); break;
    case I64: cast_loop(s, dst.data<int64_t>(), n); break;
    case BOOL: { uint8_t* d = dst.data<uint8_t>(); for (int64_t i = 0; i < n; ++i) d[i] = s[i] != S(0); break; }
    case BF16: { uint16_t* d = dst.data<uint16_t>();
      if constexpr (std::is_same_v<S, float>) bf16_round_n(s, d, n);
      else parallel_for(n, n > kParallelGrain, [&](int64_t i) { d[i] = f32_to_bf16(float(s[i])); });
      break; }
    case I8: throw TypeError("cast: int8 buffers hold quantized weights; they are not cast");
  }
}
// From bfloat16: through float32, which holds every bfloat16 value exactly.
static void cast_from_bf16(const uint16_t* s, Buffer& dst, int64_t n) {
  switch (dst.dtype) {
    case F32: bf16_widen_n(s, dst.data<float>(), n); break;
    case I32: { int32_t* d = dst.data<int32_t>(); for (int64_t i = 0; i < n; ++i) d[i] = int32_t(bf16_to_f32(s[i])); break; }
    case I64: { int64_t* d = dst.data<int64_t>(); for (int64_t i = 0; i < n; ++i) d[i] = int64_t(bf16_to_f32(s[i])); break; }
    case BOOL: { uint8_t* d = dst.data<uint8_t>(); for (int64_t i = 0; i < n; ++i) d[i] = (s[i] & 0x7fffu) != 0; break; }
    case BF16: if (s != dst.data<uint16_t>() && n) std::memcpy(dst.ptr, s, size_t(n) * 2); break;
    case I8: throw TypeError("cast: int8 buffers hold quantized weights; they are not cast");
  }
}
static void cast(const Buffer& src, Buffer& dst) {
  LAMINA_CHECK(src.numel == dst.numel, "cast: source holds " << src.numel << " elements, destination " << dst.numel);
  int64_t n = src.numel;
  switch (src.dtype) {
    case F32: cast_from(src.data<float>(), dst, n); break;
    case I32: cast_from(src.data<int32_t>(), dst, n); break;
    case I64: cast_from(src.data<int64_t>(), dst, n); break;
    case BOOL: cast_from(src.data<uint8_t>(), dst, n); break;
    case BF16: cast_from_bf16(src.data<uint16_t>(), dst, n); break;
    case I8: throw TypeError("cast: int8 buffers hold quantized weights; they are not cast");
  }
}

void bind_memory(py::module_& m) {
  py::class_<Buffer, BufferPtr>(m, "Buffer")
      .def(py::init([](int64_t n, int dt, int device) {
             LAMINA_CHECK(dt >= F32 && dt <= kLastDType, "Buffer: unknown dtype code " << dt);
             device_context(device);  // checks the index
             return std::make_shared<Buffer>(n, DType(dt), device);
           }), py::arg("numel"), py::arg("dtype") = 0, py::arg("device") = 0)
      .def_readonly("numel", &Buffer::numel)
      .def_readonly("device", &Buffer::device)
      .def_property_readonly("dtype", [](const Buffer& b) { return int(b.dtype); })
      .def_property_readonly("address", [](const Buffer& b) { return reinterpret_cast<uintptr_t>(b.ptr); });
  m.def("from_numpy", &from_numpy, py::arg("array"), py::arg("device") = 0, py::arg("dtype") = -1);
  m.def("to_numpy", &to_numpy);
  m.def("host_view", &host_view, py::arg("buffer"), py::arg("shape"));
  def_kernel(m, "fill", &fill);
  def_kernel(m, "copy", &copy);
  def_kernel(m, "cast", &cast);
  m.def("empty_cache", &empty_cache);
  m.def("memory_stats", []() {
    HostCache& c = cache();
    std::lock_guard<std::mutex> g(c.mu);
    py::dict d;
    d["in_use"] = c.in_use; d["cached"] = c.cached; d["system_allocs"] = c.system_allocs;
    return d;
  });
}

}  // namespace lamina
