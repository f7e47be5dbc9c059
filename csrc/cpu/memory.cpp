// Buffers, the caching host allocator, host<->numpy copies, fill, copy and cast.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "common.h"

namespace py = pybind11;

namespace lamina {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << s[i] << (s.size() == 1 ? "," : (i + 1 < s.size() ? ", " : ""));
  os << ")";
  return os.str();
}

void check_dtype(const char* op, const char* arg, const Buffer& b, DType dt) {
  if (b.dtype != dt) {
    std::ostringstream os;
    os << op << ": expected " << arg << " of dtype " << dtype_name(dt) << ", received " << dtype_name(b.dtype);
    throw TypeError(os.str());
  }
}

void check_buffer(const char* op, const char* arg, const Buffer& b, const Shape& s, DType dt) {
  check_dtype(op, arg, b, dt);
  for (auto d : s) LAMINA_CHECK(d >= 0, op << ": " << arg << " has a negative dimension in shape " << shape_str(s));
  LAMINA_CHECK(numel_of(s) == b.numel, op << ": " << arg << " holds " << b.numel
                                           << " elements but its shape " << shape_str(s) << " needs " << numel_of(s));
}

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

void* host_alloc(size_t nbytes, size_t* rounded) {
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
    std::lock_guard<std::mutex> g(c.mu);
    c.in_use -= r;
    throw std::bad_alloc();
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

Buffer::Buffer(int64_t n, DType dt) : numel(n), dtype(dt) {
  LAMINA_CHECK(n >= 0, "cannot allocate a buffer of " << n << " elements");
  ptr = host_alloc(size_t(n) * dtype_size(dt), &capacity);
}
Buffer::~Buffer() { host_free(ptr, capacity); }

// ---- threads -----------------------------------------------------------------------------------
int num_threads() { return omp_get_max_threads(); }
void set_num_threads(int n) {
  LAMINA_CHECK(n >= 1, "set_num_threads: expected a positive number of threads, received " << n);
  omp_set_num_threads(n);
}

// ---- copies --------------------------------------------------------------------------------
static DType dtype_of_array(const py::array& a) {
  auto dt = a.dtype();
  if (dt.is(py::dtype::of<float>())) return F32;
  if (dt.is(py::dtype::of<int32_t>())) return I32;
  if (dt.is(py::dtype::of<int64_t>())) return I64;
  if (dt.is(py::dtype::of<bool>())) return BOOL;
  throw TypeError("from_numpy: unsupported numpy dtype " + std::string(py::str(dt)) +
                  "; expected float32, int32, int64 or bool (convert with .astype first)");
}

static BufferPtr from_numpy(py::array a) {
  DType dt = dtype_of_array(a);
  LAMINA_CHECK(a.flags() & py::array::c_style, "from_numpy: expected a C-contiguous array");
  auto b = std::make_shared<Buffer>(int64_t(a.size()), dt);
  if (a.nbytes()) std::memcpy(b->ptr, a.data(), size_t(a.nbytes()));
  return b;
}

static py::array to_numpy(const Buffer& b, const Shape& shape) {
  LAMINA_CHECK(numel_of(shape) == b.numel, "to_numpy: shape " << shape_str(shape) << " does not match "
                                                               << b.numel << " elements");
  py::dtype dt = b.dtype == F32 ? py::dtype::of<float>() : b.dtype == I32 ? py::dtype::of<int32_t>()
                 : b.dtype == I64 ? py::dtype::of<int64_t>() : py::dtype::of<bool>();
  py::array out(dt, std::vector<py::ssize_t>(shape.begin(), shape.end()));
  if (b.numel) std::memcpy(out.mutable_data(), b.ptr, size_t(b.numel) * dtype_size(b.dtype));
  return out;
}

// Fill with a scalar, converted to the buffer's dtype.
static void fill(Buffer& b, double v) {
  int64_t n = b.numel;
  switch (b.dtype) {
    case F32: { float* p = b.data<float>(); float x = float(v);
#pragma omp parallel for if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) p[i] = x; break; }
    case I32: { int32_t* p = b.data<int32_t>(); int32_t x = int32_t(v); for (int64_t i = 0; i < n; ++i) p[i] = x; break; }
    case I64: { int64_t* p = b.data<int64_t>(); int64_t x = int64_t(v); for (int64_t i = 0; i < n; ++i) p[i] = x; break; }
    case BOOL: { std::memset(b.ptr, v != 0.0, size_t(n)); break; }
  }
}

static void copy(const Buffer& src, Buffer& dst) {
  LAMINA_CHECK(src.numel == dst.numel, "copy: source holds " << src.numel << " elements, destination " << dst.numel);
  check_dtype("copy", "destination", dst, src.dtype);
  size_t nbytes = size_t(src.numel) * dtype_size(src.dtype);
  if (src.ptr != dst.ptr && nbytes) std::memcpy(dst.ptr, src.ptr, nbytes);
}

template <class S, class D>
static void cast_loop(const S* s, D* d, int64_t n) {
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) d[i] = static_cast<D>(s[i]);
}
template <class S>
static void cast_from(const S* s, Buffer& dst, int64_t n) {
  switch (dst.dtype) {
    case F32: cast_loop(s, dst.data<float>(), n); break;
    case I32: cast_loop(s, dst.data<int32_t>(), n); break;
    case I64: cast_loop(s, dst.data<int64_t>(), n); break;
    case BOOL: { uint8_t* d = dst.data<uint8_t>(); for (int64_t i = 0; i < n; ++i) d[i] = s[i] != S(0); break; }
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
  }
}

void bind_memory(py::module_& m) {
  py::class_<Buffer, BufferPtr>(m, "Buffer")
      .def(py::init([](int64_t n, int dt) { return std::make_shared<Buffer>(n, DType(dt)); }), py::arg("numel"), py::arg("dtype") = 0)
      .def_readonly("numel", &Buffer::numel)
      .def_property_readonly("dtype", [](const Buffer& b) { return int(b.dtype); })
      .def_property_readonly("address", [](const Buffer& b) { return reinterpret_cast<uintptr_t>(b.ptr); });
  m.def("from_numpy", &from_numpy);
  m.def("to_numpy", &to_numpy);
  m.def("fill", &fill);
  m.def("copy", &copy);
  m.def("cast", &cast);
  m.def("empty_cache", &empty_cache);
  m.def("memory_stats", []() {
    HostCache& c = cache();
    std::lock_guard<std::mutex> g(c.mu);
    py::dict d;
    d["in_use"] = c.in_use; d["cached"] = c.cached; d["system_allocs"] = c.system_allocs;
    return d;
  });
  m.def("num_threads", &num_threads);
  m.def("set_num_threads", &set_num_threads);
}

}  // namespace lamina
