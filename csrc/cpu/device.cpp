// CPU device contexts (device.h): cpu:0 runs kernels on the calling thread; every other cpu:N
// has its own worker thread and queue, and its own team size, so that virtual devices run at
// the same time on separate cores. Also the cross-device copy and the Python-facing controls.
#include <pybind11/pybind11.h>
#include <omp.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "device.h"

namespace py = pybind11;

namespace lamina {

namespace {
constexpr int kMaxDevices = 256;
constexpr size_t kMaxQueued = 4096;  // calls waiting on one device before the caller blocks

std::atomic<DeviceContext*> g_contexts[kMaxDevices];
std::atomic<int64_t> g_busy_ns[kMaxDevices];  // time each worker spent running kernels
std::mutex g_contexts_mu;
std::atomic<int> g_default_threads{0};  // LAMINA_NUM_THREADS / set_num_threads; 0 = OpenMP's default
std::atomic<int> g_per_device{0};       // LAMINA_CPU_THREADS_PER_DEVICE / set_cpu_threads_per_device
bool g_blocking = std::getenv("LAMINA_LAUNCH_BLOCKING") && std::atoi(std::getenv("LAMINA_LAUNCH_BLOCKING")) > 0;
int g_omp_default = omp_get_max_threads();

int threads_for(const DeviceContext& c) {
  int t = c.threads.load(std::memory_order_relaxed);
  if (t <= 0) t = g_per_device.load(std::memory_order_relaxed);
  if (t <= 0) t = g_default_threads.load(std::memory_order_relaxed);
  return t > 0 ? t : g_omp_default;
}

void worker_loop(DeviceContext* c) {
  for (;;) {
    std::function<void()> task;
    bool failed;
    {
      std::unique_lock<std::mutex> lk(c->mu);
      c->work_cv.wait(lk, [c] { return !c->queue.empty(); });
      task = std::move(c->queue.front());
      c->queue.pop_front();
      failed = bool(c->error);
    }
    if (!failed) {  // after a failure the device skips queued work until the error is raised
      use_device_threads(*c);
      const auto t0 = std::chrono::steady_clock::now();
      try {
        task();
      } catch (...) {
        std::lock_guard<std::mutex> lk(c->mu);
        if (!c->error) c->error = std::current_exception();
      }
      g_busy_ns[c->index].fetch_add(
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count(),
          std::memory_order_relaxed);
    }
    task = nullptr;  // drop the call's buffers before it counts as done
    {
      std::lock_guard<std::mutex> lk(c->mu);
      c->completed.fetch_add(1, std::memory_order_release);
    }
    c->done_cv.notify_all();
  }
}

std::string device_name(int index) { return "cpu:" + std::to_string(index); }
}  // namespace

DeviceContext::DeviceContext(int i) : index(i), inline_exec(i == 0 || g_blocking) {}

DeviceContext& device_context(int index) {
  if (index < 0 || index >= kMaxDevices)
    throw std::invalid_argument("device index " + std::to_string(index) + " is out of range: CPU devices are cpu:0 to cpu:" +
                                std::to_string(kMaxDevices - 1));
  DeviceContext* c = g_contexts[index].load(std::memory_order_acquire);
  if (c) return *c;
  std::lock_guard<std::mutex> g(g_contexts_mu);
  c = g_contexts[index].load(std::memory_order_acquire);
  if (!c) {
    c = new DeviceContext(index);  // never freed: workers may outlive static teardown
    g_contexts[index].store(c, std::memory_order_release);
  }
  return *c;
}

void raise_pending(DeviceContext& c) {
  std::exception_ptr e;
  {
    std::lock_guard<std::mutex> lk(c.mu);
    std::swap(e, c.error);
  }
  if (e) std::rethrow_exception(e);
}

int64_t submit(DeviceContext& c, std::function<void()> task) {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(c.mu);
      if (c.error) {
        lk.unlock();
        raise_pending(c);
      }
      if (!c.worker_started) {
        std::thread(worker_loop, &c).detach();
        c.worker_started = true;
      }
      if (c.queue.size() < kMaxQueued) {
        c.queue.push_back(std::move(task));
        int64_t seq = ++c.submitted;
        lk.unlock();
        c.work_cv.notify_one();
        return seq;
      }
    }
    // The queue is full: let the device catch up (without the GIL, so the worker's buffers can
    // be released and other Python threads run).
    py::gil_scoped_release nogil;
    std::unique_lock<std::mutex> lk(c.mu);
    c.done_cv.wait(lk, [&c] { return c.queue.size() < kMaxQueued / 2 || bool(c.error); });
  }
}

void wait_for(DeviceContext& c, int64_t seq) {
  if (c.completed.load(std::memory_order_acquire) < seq) {
    py::gil_scoped_release nogil;
    std::unique_lock<std::mutex> lk(c.mu);
    c.done_cv.wait(lk, [&c, seq] { return c.completed.load(std::memory_order_acquire) >= seq; });
  }
  raise_pending(c);
}

static void synchronize(DeviceContext& c) {
  int64_t seq;
  {
    std::lock_guard<std::mutex> lk(c.mu);
    seq = c.submitted;
  }
  wait_for(c, seq);
}

void set_asynchronous(DeviceContext& c, bool asynchronous) {
  if (asynchronous || g_blocking) {
    c.inline_exec.store(!asynchronous || g_blocking);
    return;
  }
  synchronize(c);  // queued calls run before any inline one
  c.inline_exec.store(true);
}

void wait_buffer(const Buffer& b) {
  DeviceContext& c = device_context(b.device);
  if (!c.inline_exec) wait_for(c, b.last_use.load(std::memory_order_relaxed));
}

void use_device_threads(const DeviceContext& c) {
  const int want = threads_for(c);
  if (omp_get_max_threads() != want) omp_set_num_threads(want);
}

int num_threads() { return omp_get_max_threads(); }

void set_num_threads(int n) {
  LAMINA_CHECK(n >= 1, "set_num_threads: expected a positive number of threads, received " << n);
  g_default_threads.store(n);
  omp_set_num_threads(n);
}

int kernel_device(const char* name, const std::vector<Buffer*>& bufs) {
  LAMINA_CHECK(!bufs.empty(), name << ": expected at least one buffer argument");
  const int dev = bufs[0]->device;
  for (Buffer* b : bufs)
    LAMINA_CHECK(b->device == dev, name << ": its buffers are on different devices (" << device_name(dev) << " and "
                                        << device_name(b->device) << "); copy one with tensor.to(device) first");
  return dev;
}

void KernelBuffers::missing(const char* name) const {
  throw TypeError(std::string(name) + ": argument " + std::to_string(position) + " must be a Buffer, received None");
}

// Copies src (on one CPU device) into dst (on another, or the same) in the order of both
// devices' queues: the copy runs after the kernels queued before it on src's device, and the
// kernels queued after it on dst's device wait for it.
static void copy_between(const BufferPtr& src, const BufferPtr& dst) {
  LAMINA_CHECK(src && dst, "copy_between: expected two buffers");
  LAMINA_CHECK(src->numel == dst->numel, "copy_between: source holds " << src->numel << " elements, destination "
                                                                        << dst->numel);
  check_dtype("copy_between", "destination", *dst, src->dtype);
  DeviceContext& a = device_context(src->device);
  DeviceContext& b = device_context(dst->device);
  const size_t nbytes = size_t(src->numel) * dtype_size(src->dtype);
  auto run = [src, dst, nbytes]() {
    if (nbytes && src->ptr != dst->ptr) std::memcpy(dst->ptr, src->ptr, nbytes);
  };
  if (&a == &b && !a.inline_exec) {
    const int64_t seq = submit(a, run);
    src->last_use = seq;
    dst->last_use = seq;
    return;
  }
  if (a.inline_exec || b.inline_exec || &a == &b) {
    // One side runs on this thread: wait for the other's pending use of its buffer, copy now.
    wait_buffer(*src);
    wait_buffer(*dst);
    py::gil_scoped_release nogil;
    run();
    return;
  }
  wait_buffer(*dst);  // dst is normally new; if not, its earlier readers must be done
  const int64_t sa = submit(a, run);
  src->last_use = sa;
  DeviceContext* pa = &a;
  const int dst_index = b.index;
  const int64_t sb = submit(b, [pa, sa, dst_index]() {
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lk(pa->mu);
    pa->done_cv.wait(lk, [pa, sa] { return pa->completed.load(std::memory_order_acquire) >= sa; });
    g_busy_ns[dst_index].fetch_sub(  // waiting for the other device is idle time, not work
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count(),
        std::memory_order_relaxed);
    if (pa->error) throw std::runtime_error("copy_between: the source device " + device_name(pa->index) + " failed");
  });
  dst->last_use = sb;
}

void bind_device(py::module_& m) {
  if (const char* env = std::getenv("LAMINA_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) set_num_threads(n);
  }
  if (const char* env = std::getenv("LAMINA_CPU_THREADS_PER_DEVICE")) {
    int n = std::atoi(env);
    if (n > 0) g_per_device.store(n);
  }
  m.def("num_threads", &num_threads, "Team size of the calling thread's kernels.");
  m.def("set_num_threads", &set_num_threads, "Default team size of every device's kernels.");
  m.def("set_cpu_threads_per_device", [](int n) {
    LAMINA_CHECK(n >= 0, "set_cpu_threads_per_device: expected a number of threads >= 1 (or 0 for the default), received " << n);
    g_per_device.store(n);
  }, py::arg("threads"));
  m.def("cpu_threads_per_device", []() { return g_per_device.load(); });
  m.def("set_device_threads", [](int index, int n) {
    LAMINA_CHECK(n >= 0, "set_device_threads: expected a number of threads >= 1 (or 0 for the default), received " << n);
    device_context(index).threads.store(n);
  }, py::arg("device"), py::arg("threads"));
  m.def("device_threads", [](int index) { return threads_for(device_context(index)); }, py::arg("device"),
        "Team size the device's kernels run with.");
  m.def("synchronize", [](int index) { synchronize(device_context(index)); }, py::arg("device"), "Waits until every kernel queued on the device has run; raises a queued kernel's error.");
  m.def("set_asynchronous", [](int index, bool on) {
    DeviceContext& c = device_context(index);
    const bool was = !c.inline_exec.load();
    set_asynchronous(c, on);
    return was;
  }, py::arg("device"), py::arg("asynchronous"),
     "Runs the device's kernels on its own worker thread (True) or on the calling thread (False); returns the previous setting.");
  m.def("device_stats", [](int index) {
    DeviceContext& c = device_context(index);
    std::lock_guard<std::mutex> lk(c.mu);
    py::dict d;
    d["submitted"] = c.submitted;
    d["completed"] = c.completed.load();
    d["queued"] = c.queue.size();
    d["asynchronous"] = !c.inline_exec;
    d["threads"] = threads_for(c);
    d["busy_seconds"] = double(g_busy_ns[index].load()) * 1e-9;  // running queued kernels (worker only)
    return d;
  }, py::arg("device"));
  m.def("copy_between", &copy_between, py::arg("src"), py::arg("dst"));
}

}  // namespace lamina
