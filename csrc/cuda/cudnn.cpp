// cuDNN's convolutions, when the machine has it: loaded at run time (dlopen, as cublas.cpp loads
// cuBLAS), through the legacy convolution API of cuDNN 8 and 9 (declared in cudnn_api.h).
//
// Per device and convolution geometry, a plan: the tensor, filter and convolution descriptors
// (NHWC images, KRSC kernels, cross-correlation, float32 compute), and per direction (forward,
// backward data, backward filter) the algorithm: the first of cuDNN's heuristic list
// (Get*Algorithm_v7) that is deterministic -- the same result on every run, as lamina's own
// kernels -- and whose workspace cuDNN sizes under the plan's math type. Float32 runs FMA math
// (no TF32) unless set_allow_tf32(True); bfloat16 may use tensor cores (float32 sums).
// Workspaces come from the device's caching allocator. Any failure (no such algorithm, a status
// other than success) makes that direction of that plan fall back to lamina's kernels, and is
// reported by cudnn_status().
#include "cudnn.h"

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "cudnn_api.h"
#include "dynlib.h"

namespace lamina {
namespace gpu {

namespace {
namespace api = cudnn_api;

struct Lib {
  void* so = nullptr;
  std::string path, error, failure;
  size_t version = 0;
#define LAMINA_CUDNN_MEMBER(Fn, member, name) api::Fn member = nullptr;
  LAMINA_CUDNN_ENTRY_POINTS(LAMINA_CUDNN_MEMBER)
#undef LAMINA_CUDNN_MEMBER
  api::Handle handles[256] = {};  // per virtual device
  bool disabled = false;
} g;
std::mutex g_mu;
std::atomic<int64_t> g_calls{0}, g_refused{0};

constexpr int kFwd = 0, kBwdData = 1, kBwdFilter = 2;

// LAMINA_CUDNN_DETERMINISTIC=0 lets a plan take cuDNN's first algorithm even where it is not
// deterministic (atomics: results that differ in the last bits from run to run).
bool deterministic_only() {
  static const bool on = [] {
    const char* e = std::getenv("LAMINA_CUDNN_DETERMINISTIC");
    return !(e && std::string(e) == "0");
  }();
  return on;
}
constexpr size_t kMaxWorkspace = size_t(1) << 30;

bool bind(void* so, std::string& missing) {
  LAMINA_CUDNN_ENTRY_POINTS(LAMINA_DLSYM_ENTRY)
  return true;
}

bool try_open(const std::string& name) {
  void* so = open_library(name, "cuDNN", bind, [] {
    const size_t v = g.get_version();  // cuDNN 8 encodes 8.9.7 as 8907, cuDNN 9 9.1.0 as 90100
    return v < 8000 ? "is cuDNN " + std::to_string(v) + "; lamina needs cuDNN 8 or later" : std::string();
  }, g.error);
  if (!so) return false;
  g.so = so;
  g.path = name;
  g.version = g.get_version();
  return true;
}

std::string version_text(size_t v) {
  const size_t major = v >= 90000 ? v / 10000 : v / 1000, rest = v >= 90000 ? v % 10000 : v % 1000;
  return std::to_string(major) + "." + std::to_string(rest / 100) + "." + std::to_string(rest % 100);
}

std::string status_text(int st) {
  const char* s = g.error_string ? g.error_string(st) : nullptr;
  return std::to_string(st) + (s ? std::string(" (") + s + ")" : std::string());
}

struct Plan {
  api::TensorDesc x = nullptr, y = nullptr;
  api::FilterDesc w = nullptr;
  api::ConvDesc conv = nullptr;
  bool ok = false;  // descriptors made and cuDNN agrees on the output size
  bool chosen[3] = {false, false, false};
  int algo[3] = {-1, -1, -1};  // -1: no usable algorithm (lamina's kernels run that direction)
  size_t workspace[3] = {0, 0, 0};
  ~Plan() {
    if (x) g.destroy_tensor(x);
    if (y) g.destroy_tensor(y);
    if (w) g.destroy_filter(w);
    if (conv) g.destroy_conv(conv);
  }
};
// Guarded by g_mu; never destroyed (a plan's descriptors must not be freed after cuDNN's own
// teardown at exit).
auto& g_plans = *new std::map<std::vector<int64_t>, std::unique_ptr<Plan>>();

// Records why cuDNN did not run a call (the latest reason is reported by cudnn_status).
void note_failure(const std::string& what) { g.failure = what; }

api::Handle handle_locked(Context& c) {
  if (!g.so || g.disabled || c.index < 0 || c.index >= 256) return nullptr;
  api::Handle& h = g.handles[c.index];
  if (!h) {
    int st = g.create(&h);
    if (st != api::kStatusSuccess) {
      h = nullptr;
      note_failure("cudnnCreate failed with status " + status_text(st));
      return nullptr;
    }
    st = g.set_stream(h, c.stream);
    if (st != api::kStatusSuccess) {
      g.destroy(h);
      h = nullptr;
      note_failure("cudnnSetStream failed with status " + status_text(st));
      return nullptr;
    }
  }
  return h;
}

// The math type a plan runs: FMA for float32 (TF32 only when allowed), tensor cores for bfloat16.
int math_type(const CudnnConv& k) { return k.bf16 || allow_tf32() ? api::kTensorOpMath : api::kFmaMath; }

Plan* plan_locked(Context& c, const CudnnConv& k) {
  const int math = math_type(k);
  std::vector<int64_t> key{c.index, k.N, k.H, k.W, k.C, k.KH, k.KW, k.O, k.OH, k.OW, k.sh, k.sw, k.dh, k.dw,
                           k.pt, k.pl, k.groups, k.bf16, math};
  auto it = g_plans.find(key);
  if (it != g_plans.end()) return it->second.get();
  auto p = std::make_unique<Plan>();
  const int dt = k.bf16 ? api::kDataBfloat16 : api::kDataFloat;
  auto step = [&](int st, const char* what) {
    if (st != api::kStatusSuccess) note_failure(std::string(what) + " failed with status " + status_text(st));
    return st == api::kStatusSuccess;
  };
  bool ok = step(g.create_tensor(&p->x), "cudnnCreateTensorDescriptor") &&
            step(g.create_tensor(&p->y), "cudnnCreateTensorDescriptor") &&
            step(g.create_filter(&p->w), "cudnnCreateFilterDescriptor") &&
            step(g.create_conv(&p->conv), "cudnnCreateConvolutionDescriptor");
  ok = ok && step(g.set_tensor4d(p->x, api::kTensorNhwc, dt, int(k.N), int(k.C), int(k.H), int(k.W)),
                  "cudnnSetTensor4dDescriptor (input)");
  ok = ok && step(g.set_tensor4d(p->y, api::kTensorNhwc, dt, int(k.N), int(k.O), int(k.OH), int(k.OW)),
                  "cudnnSetTensor4dDescriptor (output)");
  ok = ok && step(g.set_filter4d(p->w, dt, api::kTensorNhwc, int(k.O), int(k.C / k.groups), int(k.KH), int(k.KW)),
                  "cudnnSetFilter4dDescriptor");
  ok = ok && step(g.set_conv2d(p->conv, int(k.pt), int(k.pl), int(k.sh), int(k.sw), int(k.dh), int(k.dw),
                               api::kCrossCorrelation, api::kDataFloat),
                  "cudnnSetConvolution2dDescriptor");
  ok = ok && step(g.set_groups(p->conv, int(k.groups)), "cudnnSetConvolutionGroupCount");
  ok = ok && step(g.set_math(p->conv, math), "cudnnSetConvolutionMathType");
  if (ok) {
    int n = 0, ch = 0, h = 0, w = 0;
    ok = step(g.output_dim(p->conv, p->x, p->w, &n, &ch, &h, &w), "cudnnGetConvolution2dForwardOutputDim");
    if (ok && (n != k.N || ch != k.O || h != k.OH || w != k.OW)) {
      note_failure("cuDNN's output size " + std::to_string(h) + "x" + std::to_string(w) + " differs from " +
                   std::to_string(k.OH) + "x" + std::to_string(k.OW));
      ok = false;
    }
  }
  p->ok = ok;
  Plan* raw = p.get();
  g_plans.emplace(std::move(key), std::move(p));
  return raw;
}

const char* direction_name(int dir) {
  return dir == kFwd ? "forward" : dir == kBwdData ? "backward data" : "backward filter";
}

// Chooses the plan's algorithm for `dir` (once): the first deterministic one of cuDNN's list whose
// workspace it sizes under the plan's math type, within kMaxWorkspace.
bool choose_locked(api::Handle h, Plan& p, int dir) {
  if (p.chosen[dir]) return p.algo[dir] >= 0;
  p.chosen[dir] = true;
  api::AlgoPerf perf[16] = {};
  int count = 0, st;
  if (dir == kFwd) st = g.fwd_algos(h, p.x, p.w, p.conv, p.y, 16, &count, perf);
  else if (dir == kBwdData) st = g.bwd_data_algos(h, p.w, p.y, p.conv, p.x, 16, &count, perf);
  else st = g.bwd_filter_algos(h, p.x, p.y, p.conv, p.w, 16, &count, perf);
  if (st != api::kStatusSuccess) {
    note_failure(std::string("cuDNN's ") + direction_name(dir) + " algorithm query failed with status " +
                 status_text(st));
    return false;
  }
  for (int i = 0; i < count && i < 16; ++i) {
    const api::AlgoPerf& r = perf[i];
    if (r.status != api::kStatusSuccess || (deterministic_only() && r.determinism != api::kDeterministic)) continue;
    size_t ws = 0;
    if (dir == kFwd) st = g.fwd_workspace(h, p.x, p.w, p.conv, p.y, r.algo, &ws);
    else if (dir == kBwdData) st = g.bwd_data_workspace(h, p.w, p.y, p.conv, p.x, r.algo, &ws);
    else st = g.bwd_filter_workspace(h, p.x, p.y, p.conv, p.w, r.algo, &ws);
    if (st != api::kStatusSuccess || ws > kMaxWorkspace) continue;
    p.algo[dir] = r.algo;
    p.workspace[dir] = ws;
    return true;
  }
  note_failure(std::string("cuDNN offered no ") + (deterministic_only() ? "deterministic " : "") +
               direction_name(dir) + " algorithm (" +
               std::to_string(count) + " listed)");
  return false;
}

bool fits_int(int64_t v) { return v >= 0 && v <= 2147483647; }

// Runs one direction: out = op(a, b) through the plan's algorithm, or false (nothing kept).
bool run(Context& c, const CudnnConv& k, int dir, const void* a, const void* b, void* out) {
  api::Handle h;
  Plan* p;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    h = handle_locked(c);
    p = h ? plan_locked(c, k) : nullptr;
    if (!p || !p->ok || !choose_locked(h, *p, dir)) {
      ++g_refused;
      return false;
    }
  }
  const size_t ws = p->workspace[dir];
  Buffer work(int64_t((ws + 3) / 4), F32, c.index);
  const float one = 1.f, zero = 0.f;
  int st;
  if (dir == kFwd)
    st = g.forward(h, &one, p->x, a, p->w, b, p->conv, p->algo[dir], ws ? work.ptr : nullptr, ws, &zero, p->y, out);
  else if (dir == kBwdData)
    st = g.backward_data(h, &one, p->w, b, p->y, a, p->conv, p->algo[dir], ws ? work.ptr : nullptr, ws, &zero, p->x,
                         out);
  else
    st = g.backward_filter(h, &one, p->x, a, p->y, b, p->conv, p->algo[dir], ws ? work.ptr : nullptr, ws, &zero,
                           p->w, out);
  if (st != api::kStatusSuccess) {
    std::lock_guard<std::mutex> lk(g_mu);
    note_failure(std::string("cuDNN's ") + direction_name(dir) + " convolution failed with status " + status_text(st));
    p->algo[dir] = -1;  // lamina's kernels run this direction of this geometry from now on
    ++g_refused;
    return false;
  }
  ++g_calls;
  return true;
}
}  // namespace

bool load_cudnn(const std::string& path) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (g.so) return true;
  if (!path.empty()) return try_open(path);
  for (const char* n : {"libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"})
    if (try_open(n)) return true;
  return false;
}

std::string cudnn_status() {
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g.so) return "not found (" + g.error + "): convolutions run lamina's own kernels";
  std::string s = g.disabled ? "disabled (set_use_cudnn(False)), " : "";
  s += "loaded: " + g.path + " (cuDNN " + version_text(g.version) + ")";
  s += deterministic_only() ? ", deterministic algorithms" : ", any algorithm (LAMINA_CUDNN_DETERMINISTIC=0)";
  if (!g.failure.empty()) s += "; latest refusal: " + g.failure;
  return s;
}

void set_use_cudnn(bool on) {
  std::lock_guard<std::mutex> lk(g_mu);
  g.disabled = !on;
}

std::pair<int64_t, int64_t> cudnn_counts() { return {g_calls.load(), g_refused.load()}; }

std::vector<std::vector<int64_t>> cudnn_plans() {
  std::lock_guard<std::mutex> lk(g_mu);
  std::vector<std::vector<int64_t>> out;
  for (const auto& kv : g_plans) {
    std::vector<int64_t> row(kv.first.begin(), kv.first.end());
    const Plan& p = *kv.second;
    row.push_back(p.ok);
    for (int d = 0; d < 3; ++d) {
      row.push_back(p.chosen[d] ? p.algo[d] : -2);
      row.push_back(int64_t(p.workspace[d]));
    }
    out.push_back(std::move(row));
  }
  return out;
}

bool cudnn_can_run(Context& c, const CudnnConv& k) {
  {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g.so || g.disabled || c.index < 0 || c.index >= 256) return false;
  }
  for (int64_t v : {k.N, k.H, k.W, k.C, k.KH, k.KW, k.O, k.OH, k.OW, k.sh, k.sw, k.dh, k.dw, k.pt, k.pl, k.groups})
    if (!fits_int(v)) return false;
  if (k.groups < 1 || k.C % k.groups || k.O % k.groups || k.N * k.OH * k.OW == 0 || k.C == 0 || k.O == 0) return false;
  for (int64_t n : {k.N * k.H * k.W * k.C, k.N * k.OH * k.OW * k.O, k.O * k.KH * k.KW * (k.C / k.groups)})
    if (!fits_int(n)) return false;
  // cuDNN's output size, with pt rows and pl columns of padding on both sides
  const int64_t eh = (k.KH - 1) * k.dh + 1, ew = (k.KW - 1) * k.dw + 1;
  const int64_t hh = k.H + 2 * k.pt - eh, ww = k.W + 2 * k.pl - ew;
  return hh >= 0 && ww >= 0 && hh / k.sh + 1 == k.OH && ww / k.sw + 1 == k.OW;
}

bool cudnn_conv_forward(Context& c, const CudnnConv& k, const void* x, const void* w, void* y) {
  return run(c, k, kFwd, x, w, y);
}
bool cudnn_conv_backward_data(Context& c, const CudnnConv& k, const void* dy, const void* w, void* dx) {
  return run(c, k, kBwdData, dy, w, dx);
}
bool cudnn_conv_backward_filter(Context& c, const CudnnConv& k, const void* x, const void* dy, void* dw) {
  return run(c, k, kBwdFilter, x, dy, dw);
}

}  // namespace gpu
}  // namespace lamina
