// Device contexts, the caching allocator, buffers, argument checks, broadcasting plans, and the
// memory kernels (fill, copy, cast, copies between devices).
#include <cstdlib>
#include <cstring>
#include <vector>

#include <limits>

#include "gpu.h"

namespace lamina {
namespace gpu {

void check_cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clears a non-sticky error
  if (e == cudaErrorMemoryAllocation) throw AllocError(std::string("CUDA out of memory in ") + what);
  throw CudaError(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

// ---- devices --------------------------------------------------------------------------------
namespace {
std::mutex g_mu;
int g_split = 0;  // 0 until the first device is made
std::vector<std::unique_ptr<Context>>& contexts() {
  static auto* v = new std::vector<std::unique_ptr<Context>>();  // never destroyed (buffers outlive teardown)
  return *v;
}
int initial_split() {
  const char* env = std::getenv("LAMINA_VIRTUAL_GPUS");
  int n = env ? std::atoi(env) : 1;
  return n >= 1 ? n : 1;
}
bool launch_blocking() {
  const char* env = std::getenv("LAMINA_LAUNCH_BLOCKING");
  return env && std::strcmp(env, "0") != 0 && *env;
}
}  // namespace

int physical_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {  // no driver or no device: no GPUs
    cudaGetLastError();
    return 0;
  }
  return n;
}

int virtual_split() {
  std::lock_guard<std::mutex> g(g_mu);
  if (g_split == 0) g_split = initial_split();
  return g_split;
}

void set_virtual_split(int n) {
  LAMINA_CHECK(n >= 1 && n <= 64, "set_virtual_gpus: expected 1 to 64 virtual GPUs per physical GPU, received " << n);
  std::lock_guard<std::mutex> g(g_mu);
  bool any = false;
  for (auto& c : contexts()) any = any || c != nullptr;
  LAMINA_CHECK(!any || g_split == n, "set_virtual_gpus(" << n << "): GPU devices are already in use with " << g_split
                   << " virtual GPUs per physical GPU; set it before the first GPU tensor is made "
                      "(or with the LAMINA_VIRTUAL_GPUS environment variable)");
  g_split = n;
}

int device_count() { return physical_count() * virtual_split(); }

Context& context(int index) {
  const int split = virtual_split();
  const int count = physical_count() * split;
  LAMINA_CHECK(index >= 0 && index < count, "gpu:" << index << " does not exist: " << count
                   << " GPU device(s) (" << physical_count() << " physical x " << split << " virtual)");
  std::lock_guard<std::mutex> g(g_mu);
  auto& v = contexts();
  if (int(v.size()) <= index) v.resize(size_t(index) + 1);
  if (!v[size_t(index)]) {
    auto c = std::make_unique<Context>();
    c->index = index;
    c->physical = index / split;
    c->blocking = launch_blocking();
    LAMINA_CUDA_CHECK(cudaSetDevice(c->physical));
    LAMINA_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    LAMINA_CUDA_CHECK(cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking));
    v[size_t(index)] = std::move(c);
  }
  return *v[size_t(index)];
}

void synchronize(Context& c) {
  LAMINA_CUDA_CHECK(cudaSetDevice(c.physical));
  LAMINA_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  raise_failed_checks(c);
}

// ---- host-to-device copies through pinned staging blocks -------------------------------------
namespace {
// copy_from_host on stream `s` (c.stream or c.copy_stream)
void copy_from_host_on(Context& c, cudaStream_t s, void* dst, const void* src, size_t n) {
  if (n == 0) return;
  Context::Staging* block = nullptr;
  if (n <= kMaxStagedCopy) {
    std::lock_guard<std::mutex> g(c.staging_mu);
    for (auto& b : c.staging)  // the smallest idle block that holds n bytes
      if (!b.busy && b.size >= n && (!block || b.size < block->size) && cudaEventQuery(b.done) == cudaSuccess)
        block = &b;
    if (!block) {
      size_t size = size_t(1) << 18;
      while (size < n) size *= 2;
      if (c.staged_bytes + size <= kMaxStagingBytes) {
        Context::Staging b;
        b.size = size;
        if (cudaHostAlloc(&b.host, size, cudaHostAllocDefault) == cudaSuccess &&
            cudaEventCreateWithFlags(&b.done, cudaEventDisableTiming) == cudaSuccess) {
          // blocks are never moved while one is busy: room for all the byte limit allows (256 MB of
          // 256 KB blocks), so a pool grown while the device ran behind still takes larger blocks
          c.staging.reserve(kMaxStagingBytes >> 18);
          if (c.staging.size() < c.staging.capacity()) {
            c.staging.push_back(b);
            c.staged_bytes += size;
            block = &c.staging.back();
          }
        }
        if (!block) {  // no pinned memory to be had: the plain path
          cudaGetLastError();
          if (b.host) cudaFreeHost(b.host);
          if (b.done) cudaEventDestroy(b.done);
        }
      }
    }
    if (block) block->busy = true;
  }
  if (!block) {  // waits for the stream: the source may be reused once the call returns
    LAMINA_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s));
    return;
  }
  std::memcpy(block->host, src, n);
  cudaError_t e = cudaMemcpyAsync(dst, block->host, n, cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess) e = cudaEventRecord(block->done, s);
  {
    std::lock_guard<std::mutex> g(c.staging_mu);
    block->busy = false;
  }
  LAMINA_CUDA_CHECK(e);
}
}  // namespace

void copy_from_host(Context& c, void* dst, const void* src, size_t n) { copy_from_host_on(c, c.stream, dst, src, n); }

std::shared_ptr<Buffer> buffer_from_host(Context& c, int64_t n, DType dt, const void* src) {
  auto b = std::make_shared<Buffer>(n, dt, c.index, Buffer::InputTag{});
  const size_t nbytes = size_t(n) * dtype_size(dt);
  if (nbytes == 0) return b;
  copy_from_host_on(c, c.copy_stream, b->ptr, src, nbytes);
  // the device's stream runs nothing more until the copy is done; the host does not wait
  cudaEvent_t copied = nullptr;
  LAMINA_CUDA_CHECK(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming));
  cudaError_t e = cudaEventRecord(copied, c.copy_stream);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(c.stream, copied, 0);
  cudaEventDestroy(copied);  // released by CUDA once the wait is satisfied
  LAMINA_CUDA_CHECK(e);
  return b;
}

// ---- deferred checks ------------------------------------------------------------------------
namespace {
constexpr unsigned long long kNone = ~0ull;
constexpr int kRecordWords = 4;  // the check's number, its first bad index, that value, the value before it

// slot[0] = the first flat index whose value lies outside [lo, hi) (atomicMin; all ones if none)
template <class I>
__global__ void deferred_range_kernel(const I* v, int64_t n, int64_t lo, int64_t hi, unsigned long long* slot) {
  GRID_STRIDE(i, n)
    if (int64_t(v[i]) < lo || int64_t(v[i]) >= hi) atomicMin(slot, (unsigned long long)i);
}

// A failed check goes into the record unless an earlier one is there (stream order is queue order).
template <class I>
__global__ void deferred_record_kernel(const I* v, const unsigned long long* slot, unsigned long long number,
                                       unsigned long long* record) {
  const unsigned long long i = slot[0];
  if (i == kNone || record[0] != kNone) return;
  record[0] = number;
  record[1] = i;
  record[2] = (unsigned long long)(int64_t(v[i]));
  record[3] = i > 0 ? (unsigned long long)(int64_t(v[i - 1])) : 0ull;
}
}  // namespace

void defer_check(Context& c, const Buffer& ints, CheckError kind,
                 std::function<std::string(int64_t, int64_t, int64_t)> message,
                 const std::function<void(unsigned long long*)>& flag) {
  LAMINA_CHECK(ints.dtype == I32 || ints.dtype == I64, "defer_check: expected int32 or int64 values");
  if (ints.numel == 0) return;
  {
    std::lock_guard<std::mutex> g(c.check_mu);
    if (!c.check_slots) {
      LAMINA_CUDA_CHECK(cudaSetDevice(c.physical));
      void* p = nullptr;
      const size_t bytes = sizeof(unsigned long long) * (kCheckSlots + kRecordWords);
      LAMINA_CUDA_CHECK(cudaMalloc(&p, bytes));
      LAMINA_CUDA_CHECK(cudaMemsetAsync(p, 0xff, bytes, c.stream));
      c.check_slots = static_cast<unsigned long long*>(p);
    }
  }
  if (c.pending_checks.size() >= kMaxPendingChecks) synchronize(c);  // raises a failed one
  std::lock_guard<std::mutex> g(c.check_mu);
  // a slot is taken again only by a later check, whose kernels run after this one's record kernel
  unsigned long long* slot = c.check_slots + c.check_turn++ % kCheckSlots;
  unsigned long long* record = c.check_slots + kCheckSlots;
  const auto number = (unsigned long long)c.pending_checks.size();
  LAMINA_CUDA_CHECK(cudaMemsetAsync(slot, 0xff, sizeof(unsigned long long), c.stream));
  flag(slot);
  if (ints.dtype == I32) deferred_record_kernel<<<1, 1, 0, c.stream>>>(ints.data<int32_t>(), slot, number, record);
  else deferred_record_kernel<<<1, 1, 0, c.stream>>>(ints.data<int64_t>(), slot, number, record);
  LAMINA_CUDA_CHECK(cudaGetLastError());
  c.pending_checks.push_back(Context::PendingCheck{std::move(message), kind == CheckError::Index});
}

void defer_range_check(Context& c, const Buffer& ints, int64_t lo, int64_t hi,
                       std::function<std::string(int64_t, int64_t)> message, CheckError kind) {
  const int64_t n = ints.numel;
  defer_check(c, ints, kind, [message = std::move(message)](int64_t i, int64_t v, int64_t) { return message(i, v); },
              [&](unsigned long long* slot) {
                if (ints.dtype == I32)
                  deferred_range_kernel<<<grid_for(n), 256, 0, c.stream>>>(ints.data<int32_t>(), n, lo, hi, slot);
                else
                  deferred_range_kernel<<<grid_for(n), 256, 0, c.stream>>>(ints.data<int64_t>(), n, lo, hi, slot);
              });
}

void raise_failed_checks(Context& c) {
  std::vector<Context::PendingCheck> pending;
  unsigned long long record[kRecordWords];
  {
    std::lock_guard<std::mutex> g(c.check_mu);
    if (c.pending_checks.empty()) return;
    pending.swap(c.pending_checks);
    // the stream has been waited for: the record holds the earliest failure, if any
    unsigned long long* rec = c.check_slots + kCheckSlots;
    LAMINA_CUDA_CHECK(cudaMemcpy(record, rec, sizeof record, cudaMemcpyDeviceToHost));
    if (record[0] == kNone) return;
    LAMINA_CUDA_CHECK(cudaMemsetAsync(rec, 0xff, sizeof record, c.stream));  // before any later check's kernels
  }
  LAMINA_CHECK(record[0] < pending.size(), "deferred checks: the device recorded check " << record[0] << " of "
                                                                                          << pending.size());
  const Context::PendingCheck& failed = pending[size_t(record[0])];
  const std::string msg = failed.message(int64_t(record[1]), int64_t(record[2]), int64_t(record[3]));
  if (failed.index_error) throw std::out_of_range(msg);  // IndexError
  throw std::invalid_argument(msg);
}

// ---- the caching allocator: per device, size classes as the CPU's; a freed block is reused by
// later kernels of the same stream, which run after every kernel that used it before. ---------
namespace {
size_t round_size(size_t n) {
  if (n <= 4096) return (n + 255) & ~size_t(255);
  size_t p = 4096;
  while (p * 2 < n) p *= 2;
  size_t step = p / 8;
  return (n + step - 1) / step * step;
}
void release_cached(Context& c) {  // with c.mu held: the pool's free blocks and the idle input blocks
  bool idle_inputs = false;
  for (auto& blk : c.input_blocks) idle_inputs = idle_inputs || !blk.used;
  if (c.free_blocks.empty() && !idle_inputs) return;
  cudaSetDevice(c.physical);
  cudaStreamSynchronize(c.stream);
  cudaStreamSynchronize(c.copy_stream);
  for (auto& kv : c.free_blocks) cudaFree(kv.second);
  c.free_blocks.clear();
  std::vector<Context::InputBlock> kept;
  for (auto& blk : c.input_blocks) {
    if (blk.used) {
      kept.push_back(blk);
      continue;
    }
    cudaFree(blk.ptr);
    if (blk.released) cudaEventDestroy(blk.released);
  }
  c.input_blocks.swap(kept);
  c.cached = 0;
}
constexpr size_t kMaxBytes = size_t(1) << 44;
}  // namespace

void empty_cache() {
  std::lock_guard<std::mutex> g(g_mu);
  for (auto& c : contexts())
    if (c) {
      std::lock_guard<std::mutex> h(c->mu);
      release_cached(*c);
    }
}

Buffer::Buffer(int64_t n, DType dt, int dev) : numel(n), dtype(dt), device(dev) {
  LAMINA_CHECK(n >= 0, "cannot allocate a buffer of " << n << " elements");
  Context& c = context(dev);
  if (uint64_t(n) > kMaxBytes / dtype_size(dt))
    throw AllocError("cannot allocate a buffer of " + std::to_string(n) + " " + dtype_name(dt) + " elements on gpu:" +
                     std::to_string(dev) + ": more than the 16 TiB a buffer may hold");
  size_t r = round_size(n == 0 ? 256 : size_t(n) * dtype_size(dt));
  std::lock_guard<std::mutex> g(c.mu);
  auto it = c.free_blocks.find(r);
  if (it != c.free_blocks.end()) {
    ptr = it->second;
    c.free_blocks.erase(it);
    c.cached -= r;
  } else {
    cudaSetDevice(c.physical);
    cudaError_t e = cudaMalloc(&ptr, r);
    if (e == cudaErrorMemoryAllocation) {  // give the pool back and try once more
      cudaGetLastError();
      release_cached(c);
      e = cudaMalloc(&ptr, r);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      ptr = nullptr;
      throw AllocError("cannot allocate a buffer of " + std::to_string(n) + " " + dtype_name(dt) + " elements (" +
                       std::to_string(r) + " bytes) on gpu:" + std::to_string(dev) + ": " + cudaGetErrorString(e) +
                       "; " + std::to_string(c.in_use) + " bytes are in use on this device");
    }
    c.system_allocs++;
  }
  capacity = r;
  ctx = &c;
  c.in_use += r;
}

Buffer::Buffer(int64_t n, DType dt, int dev, InputTag) : numel(n), dtype(dt), device(dev), input(true) {
  LAMINA_CHECK(n >= 0, "cannot allocate a buffer of " << n << " elements");
  Context& c = context(dev);
  if (uint64_t(n) > kMaxBytes / dtype_size(dt))
    throw AllocError("cannot allocate a buffer of " + std::to_string(n) + " " + dtype_name(dt) + " elements on gpu:" +
                     std::to_string(dev) + ": more than the 16 TiB a buffer may hold");
  const size_t r = round_size(n == 0 ? 256 : size_t(n) * dtype_size(dt));
  std::lock_guard<std::mutex> g(c.mu);
  Context::InputBlock* pick = nullptr;  // the smallest free block of r bytes whose last users have run
  for (auto& blk : c.input_blocks)
    if (!blk.used && blk.size == r && (!blk.released || cudaEventQuery(blk.released) == cudaSuccess)) {
      pick = &blk;
      break;
    }
  if (!pick) {
    cudaSetDevice(c.physical);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, r);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_cached(c);
      e = cudaMalloc(&p, r);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw AllocError("cannot allocate a buffer of " + std::to_string(n) + " " + dtype_name(dt) + " elements (" +
                       std::to_string(r) + " bytes) on gpu:" + std::to_string(dev) + ": " + cudaGetErrorString(e) +
                       "; " + std::to_string(c.in_use) + " bytes are in use on this device");
    }
    c.system_allocs++;
    c.input_blocks.push_back(Context::InputBlock{p, r, nullptr, false});
    pick = &c.input_blocks.back();
  }
  if (pick->cached) c.cached -= r;  // an idle block in use again
  pick->cached = false;
  pick->used = true;
  ptr = pick->ptr;
  capacity = r;
  ctx = &c;
  c.in_use += r;
}

Buffer::~Buffer() {
  if (!ptr) return;
  Context& c = *ctx;
  std::lock_guard<std::mutex> g(c.mu);
  if (input) {  // reusable once what the stream queued before now has run
    for (auto& blk : c.input_blocks)
      if (blk.ptr == ptr) {
        if (!blk.released) cudaEventCreateWithFlags(&blk.released, cudaEventDisableTiming);
        if (blk.released) cudaEventRecord(blk.released, c.stream);
        blk.used = false;
        blk.cached = true;
        break;
      }
    c.in_use -= capacity;
    c.cached += capacity;
    return;
  }
  c.free_blocks.emplace(capacity, ptr);
  c.in_use -= capacity;
  c.cached += capacity;
}

// ---- checks ------------------------------------------------------------------------------------

template <class Bufs>
static Context& op_device_of(const char* op, const Bufs& bufs) {
  int dev = -1;
  for (const Buffer* b : bufs) {
    if (!b) continue;
    if (dev < 0) dev = b->device;
    LAMINA_CHECK(b->device == dev, op << ": its buffers are on different devices (gpu:" << dev << " and gpu:"
                                      << b->device << "); copy them to one device first (tensor.to(...))");
  }
  Context& c = context(dev < 0 ? 0 : dev);
  LAMINA_CUDA_CHECK(cudaSetDevice(c.physical));
  return c;
}

Context& op_device(const char* op, std::initializer_list<const Buffer*> bufs) { return op_device_of(op, bufs); }
Context& op_device(const char* op, const std::vector<const Buffer*>& bufs) { return op_device_of(op, bufs); }

void launched(Context& c, const char* op) {
  c.launches++;
  check_cuda(cudaGetLastError(), op);
  if (c.blocking) check_cuda(cudaStreamSynchronize(c.stream), op);
}

Bcast make_bcast(const char* op, std::initializer_list<const Shape*> ins, const Shape& out) {
  Bcast p;
  if (int(out.size()) > kMaxDims)
    throw Unsupported(std::string(op) + ": more than " + std::to_string(kMaxDims) + " dimensions");
  p.ndim = int(out.size());
  for (int d = 0; d < p.ndim; ++d) p.dims[d] = out[size_t(d)];
  int k = 0;
  for (const Shape* s : ins) {
    const int off = p.ndim - int(s->size());
    LAMINA_CHECK(off >= 0, op << ": operand shape " << shape_str(*s) << " has more dimensions than the output "
                              << shape_str(out));
    int64_t stride = 1;
    for (int d = p.ndim - 1; d >= 0; --d) {
      const int sd = d - off;
      const int64_t n = sd >= 0 ? (*s)[size_t(sd)] : 1;
      LAMINA_CHECK(n == out[size_t(d)] || n == 1, op << ": operand shape " << shape_str(*s)
                                                     << " does not broadcast to " << shape_str(out));
      p.st[k][d] = (n == 1) ? 0 : stride;
      stride *= n;
    }
    ++k;
  }
  return p;
}

// ---- fill, copy, cast --------------------------------------------------------------------------
template <class T>
__global__ void fill_kernel(T* p, int64_t n, T v) {
  GRID_STRIDE(i, n) p[i] = v;
}

void fill(Buffer& b, double v) {
  Context& c = op_device("fill", {&b});
  const int64_t n = b.numel;
  if (n == 0) return;
  auto s = c.stream;
  switch (b.dtype) {
    case F32: fill_kernel<<<grid_for(n), 256, 0, s>>>(b.data<float>(), n, float(v)); break;
    case I32: fill_kernel<<<grid_for(n), 256, 0, s>>>(b.data<int32_t>(), n, int32_t(v)); break;
    case I64: fill_kernel<<<grid_for(n), 256, 0, s>>>(b.data<int64_t>(), n, int64_t(v)); break;
    case BOOL: LAMINA_CUDA_CHECK(cudaMemsetAsync(b.ptr, v != 0.0, size_t(n), s)); break;
    case BF16: fill_kernel<<<grid_for(n), 256, 0, s>>>(b.data<uint16_t>(), n, f32_to_bf16(float(v))); break;
    case I8: throw TypeError("fill: int8 buffers hold quantized weights and are written by copies only");
  }
  launched(c, "fill");
}

void copy(const Buffer& src, Buffer& dst) {
  LAMINA_CHECK(src.numel == dst.numel, "copy: source holds " << src.numel << " elements, destination " << dst.numel);
  check_dtype("copy", "destination", dst, src.dtype);
  if (src.device != dst.device) return copy_between(src, dst);
  Context& c = op_device("copy", {&src, &dst});
  size_t nbytes = size_t(src.numel) * dtype_size(src.dtype);
  if (src.ptr != dst.ptr && nbytes)
    LAMINA_CUDA_CHECK(cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, cudaMemcpyDeviceToDevice, c.stream));
  launched(c, "copy");
}

// Between two devices: the copy runs on the source's stream after the destination's earlier
// work, and the destination's later work waits for it (both pools stay in stream order).
void copy_between(const Buffer& src, Buffer& dst) {
  LAMINA_CHECK(src.numel == dst.numel, "copy_between: source holds " << src.numel << " elements, destination "
                                                                      << dst.numel);
  check_dtype("copy_between", "destination", dst, src.dtype);
  Context& cs = context(src.device);
  Context& cd = context(dst.device);
  size_t nbytes = size_t(src.numel) * dtype_size(src.dtype);
  if (&cs == &cd) return copy(src, dst);
  cudaEvent_t before, after;
  LAMINA_CUDA_CHECK(cudaSetDevice(cd.physical));
  LAMINA_CUDA_CHECK(cudaEventCreateWithFlags(&before, cudaEventDisableTiming));
  LAMINA_CUDA_CHECK(cudaEventRecord(before, cd.stream));
  LAMINA_CUDA_CHECK(cudaSetDevice(cs.physical));
  LAMINA_CUDA_CHECK(cudaEventCreateWithFlags(&after, cudaEventDisableTiming));
  LAMINA_CUDA_CHECK(cudaStreamWaitEvent(cs.stream, before, 0));
  if (nbytes) {
    if (cs.physical == cd.physical)
      LAMINA_CUDA_CHECK(cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, cudaMemcpyDeviceToDevice, cs.stream));
    else
      LAMINA_CUDA_CHECK(cudaMemcpyPeerAsync(dst.ptr, cd.physical, src.ptr, cs.physical, nbytes, cs.stream));
  }
  LAMINA_CUDA_CHECK(cudaEventRecord(after, cs.stream));
  LAMINA_CUDA_CHECK(cudaSetDevice(cd.physical));
  LAMINA_CUDA_CHECK(cudaStreamWaitEvent(cd.stream, after, 0));
  cudaEventDestroy(before);  // released once they complete
  cudaEventDestroy(after);
  launched(cs, "copy_between");
}

// bfloat16 is held as uint16_t bits: these read and write it through float32.
template <class S>
__device__ __forceinline__ float as_float(S v) { return float(v); }
template <>
__device__ __forceinline__ float as_float<uint16_t>(uint16_t v) { return bf16_to_f32(v); }

template <class S>
__global__ void cast_to_bf16_kernel(const S* s, uint16_t* d, int64_t n) {
  GRID_STRIDE(i, n) d[i] = f32_to_bf16(as_float(s[i]));
}


// A float to an integer as x86's truncating conversions (cvttss2si, cvttps2dq, vcvttps2qq: the
// CPU's static_cast) give it: toward zero where it fits, else -- out of range, or NaN -- the
// "integer indefinite" value, the type's minimum. (A GPU's own conversion saturates instead.)
template <class D>
__device__ __forceinline__ D x86_float_to_int(float v) {
  constexpr float lim = sizeof(D) == 4 ? 2147483648.0f : 9223372036854775808.0f;  // 2^31, 2^63
  return (v >= -lim && v < lim) ? static_cast<D>(v) : std::numeric_limits<D>::min();
}

template <class D>
__global__ void cast_from_bf16_kernel(const uint16_t* s, D* d, int64_t n) {
  GRID_STRIDE(i, n) {
    if constexpr (std::is_same<D, bool>::value) d[i] = (s[i] & 0x7fffu) != 0;
    else if constexpr (std::is_integral<D>::value) d[i] = x86_float_to_int<D>(bf16_to_f32(s[i]));
    else d[i] = static_cast<D>(bf16_to_f32(s[i]));
  }
}

template <class S, class D>
__global__ void cast_kernel(const S* s, D* d, int64_t n) {
  GRID_STRIDE(i, n) {
    if constexpr (std::is_same<D, bool>::value) d[i] = s[i] != S(0);
    else if constexpr (std::is_same<S, float>::value && std::is_integral<D>::value) d[i] = x86_float_to_int<D>(s[i]);
    else d[i] = static_cast<D>(s[i]);
  }
}

template <class S>
static void cast_from(const S* s, Buffer& dst, int64_t n, cudaStream_t st) {
  switch (dst.dtype) {
    case F32: cast_kernel<<<grid_for(n), 256, 0, st>>>(s, dst.data<float>(), n); break;
    case I32: cast_kernel<<<grid_for(n), 256, 0, st>>>(s, dst.data<int32_t>(), n); break;
    case I64: cast_kernel<<<grid_for(n), 256, 0, st>>>(s, dst.data<int64_t>(), n); break;
    case BOOL: cast_kernel<<<grid_for(n), 256, 0, st>>>(s, dst.data<bool>(), n); break;
    case BF16: cast_to_bf16_kernel<<<grid_for(n), 256, 0, st>>>(s, dst.data<uint16_t>(), n); break;
    case I8: throw TypeError("cast: int8 buffers hold quantized weights; they are not cast");
  }
}

static void cast_from_bf16(const uint16_t* s, Buffer& dst, int64_t n, cudaStream_t st) {
  switch (dst.dtype) {
    case F32: cast_from_bf16_kernel<<<grid_for(n), 256, 0, st>>>(s, dst.data<float>(), n); break;
    case BOOL: cast_from_bf16_kernel<<<grid_for(n), 256, 0, st>>>(s, dst.data<bool>(), n); break;
    case BF16:
      if (s != dst.data<uint16_t>()) LAMINA_CUDA_CHECK(cudaMemcpyAsync(dst.ptr, s, size_t(n) * 2, cudaMemcpyDeviceToDevice, st));
      break;
    case I32: cast_from_bf16_kernel<<<grid_for(n), 256, 0, st>>>(s, dst.data<int32_t>(), n); break;
    case I64: cast_from_bf16_kernel<<<grid_for(n), 256, 0, st>>>(s, dst.data<int64_t>(), n); break;
    case I8: throw TypeError("cast: int8 buffers hold quantized weights; they are not cast");
  }
}

void cast(const Buffer& src, Buffer& dst) {
  LAMINA_CHECK(src.numel == dst.numel, "cast: source holds " << src.numel << " elements, destination " << dst.numel);
  Context& c = op_device("cast", {&src, &dst});
  const int64_t n = src.numel;
  if (n == 0) return;
  // float -> integer: x86's results (x86_float_to_int), so both devices give the same numbers
  switch (src.dtype) {
    case F32: cast_from(src.data<float>(), dst, n, c.stream); break;
    case I32: cast_from(src.data<int32_t>(), dst, n, c.stream); break;
    case I64: cast_from(src.data<int64_t>(), dst, n, c.stream); break;
    case BOOL: cast_from(src.data<bool>(), dst, n, c.stream); break;
    case BF16: cast_from_bf16(src.data<uint16_t>(), dst, n, c.stream); break;
    case I8: throw TypeError("cast: int8 buffers hold quantized weights; they are not cast");
  }
  launched(c, "cast");
}

}  // namespace gpu
}  // namespace lamina
