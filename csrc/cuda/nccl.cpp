// NCCL, when the machine has it: loaded at run time (dlopen, as cublas.cpp loads cuBLAS), for the
// all-reduce of gradients between processes that each drive one GPU (distribute/multi_worker.py
// bootstraps the communicator over MPI: rank 0's unique id is broadcast, every rank joins).
// Collectives are queued on the device's stream, in order with its kernels: the host does not wait.
#include "nccl.h"

#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>

#include "dynlib.h"
#include "nccl_api.h"

namespace lamina {
namespace gpu {

namespace {
namespace api = nccl_api;

struct Lib {
  void* so = nullptr;
  std::string path, error;
  int version = 0;
#define LAMINA_NCCL_MEMBER(Fn, member, name) api::Fn member = nullptr;
  LAMINA_NCCL_ENTRY_POINTS(LAMINA_NCCL_MEMBER)
#undef LAMINA_NCCL_MEMBER
} g;
std::mutex g_mu;

struct CommEntry {
  api::Comm comm = nullptr;
  int device = 0, nranks = 0, rank = 0;
};
std::map<int64_t, CommEntry> g_comms;  // guarded by g_mu
int64_t g_next = 1;

bool bind(void* so, std::string& missing) {
  LAMINA_NCCL_ENTRY_POINTS(LAMINA_DLSYM_ENTRY)
  return true;
}

int version_of() {
  int v = 0;
  return g.get_version(&v) == api::kSuccess ? v : 0;
}

bool try_open(const std::string& name) {
  void* so = open_library(name, "NCCL", bind, [] {
    const int v = version_of();  // 2.7.0: the API used here
    return v < 20700 ? "is NCCL " + std::to_string(v) + "; lamina needs NCCL 2.7 or later" : std::string();
  }, g.error);
  if (!so) return false;
  g.so = so;
  g.path = name;
  g.version = version_of();
  return true;
}

std::string version_text(int v) {  // NCCL_VERSION(X, Y, Z): X * 10000 + Y * 100 + Z since 2.9
  const int major = v >= 10000 ? v / 10000 : v / 1000, rest = v >= 10000 ? v % 10000 : v % 1000;
  return std::to_string(major) + "." + std::to_string(rest / 100) + "." + std::to_string(rest % 100);
}

std::string result_text(int r) {
  const char* s = g.error_string ? g.error_string(r) : nullptr;
  return std::to_string(r) + (s ? std::string(" (") + s + ")" : std::string());
}

void require_loaded(const char* op) {
  if (!g.so) throw std::runtime_error(std::string(op) + ": NCCL is not loaded (" + g.error + ")");
}

int nccl_dtype(const char* op, DType dt) {
  switch (dt) {
    case F32: return api::kFloat32;
    case BF16: return api::kBfloat16;
    case I32: return api::kInt32;
    case I64: return api::kInt64;
    default:
      throw std::invalid_argument(std::string(op) + ": NCCL all-reduces float32, bfloat16, int32 and int64 "
                                                    "buffers, received " + dtype_name(dt));
  }
}

CommEntry entry_locked(const char* op, int64_t handle) {
  auto it = g_comms.find(handle);
  if (it == g_comms.end())
    throw std::invalid_argument(std::string(op) + ": no NCCL communicator " + std::to_string(handle) +
                                " (destroyed, or never made by nccl_comm_init)");
  return it->second;
}
}  // namespace

bool load_nccl(const std::string& path) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (g.so) return true;
  if (!path.empty()) return try_open(path);
  for (const char* n : {"libnccl.so.2", "libnccl.so"})
    if (try_open(n)) return true;
  return false;
}

std::string nccl_status() {
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g.so) return "not found (" + g.error + ")";
  return "loaded: " + g.path + " (NCCL " + version_text(g.version) + ")";
}

std::string nccl_unique_id() {
  std::lock_guard<std::mutex> lk(g_mu);
  require_loaded("nccl_unique_id");
  api::UniqueId id{};
  const int r = g.unique_id(&id);
  if (r != api::kSuccess) throw std::runtime_error("ncclGetUniqueId failed: " + result_text(r));
  return std::string(id.internal, api::kUniqueIdBytes);
}

int64_t nccl_comm_init(int device, int nranks, int rank, const std::string& id) {
  const char* op = "nccl_comm_init";
  {
    std::lock_guard<std::mutex> lk(g_mu);
    require_loaded(op);
  }
  LAMINA_CHECK(nranks >= 1 && rank >= 0 && rank < nranks,
               op << ": expected 0 <= rank < nranks, received rank " << rank << " of " << nranks);
  LAMINA_CHECK(id.size() == size_t(api::kUniqueIdBytes),
               op << ": expected the " << api::kUniqueIdBytes << " bytes of nccl_unique_id(), received "
                  << id.size());
  Context& c = context(device);
  LAMINA_CUDA_CHECK(cudaSetDevice(c.physical));  // NCCL binds the communicator to the current device
  api::UniqueId uid;
  std::memcpy(uid.internal, id.data(), api::kUniqueIdBytes);
  api::Comm comm = nullptr;
  const int r = g.init_rank(&comm, nranks, uid, rank);  // blocks until every rank has joined
  if (r != api::kSuccess)
    throw std::runtime_error("ncclCommInitRank (rank " + std::to_string(rank) + " of " + std::to_string(nranks) +
                             " on gpu:" + std::to_string(device) + ") failed: " + result_text(r));
  std::lock_guard<std::mutex> lk(g_mu);
  const int64_t h = g_next++;
  g_comms[h] = CommEntry{comm, device, nranks, rank};
  return h;
}

void nccl_all_reduce(int64_t handle, const std::vector<const Buffer*>& srcs, const std::vector<Buffer*>& dsts) {
  const char* op = "nccl_all_reduce";
  CommEntry e;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    require_loaded(op);
    e = entry_locked(op, handle);
  }
  LAMINA_CHECK(srcs.size() == dsts.size(),
               op << ": expected as many outputs as inputs, received " << srcs.size() << " and " << dsts.size());
  for (size_t i = 0; i < srcs.size(); ++i) {
    LAMINA_CHECK(srcs[i] && dsts[i], op << ": buffer " << i << " is None");
    LAMINA_CHECK(srcs[i]->device == e.device && dsts[i]->device == e.device,
                 op << ": buffer " << i << " is on gpu:" << srcs[i]->device << " / gpu:" << dsts[i]->device
                    << ", the communicator on gpu:" << e.device);
    LAMINA_CHECK(srcs[i]->numel == dsts[i]->numel && srcs[i]->dtype == dsts[i]->dtype,
                 op << ": buffer " << i << ": input and output differ in size or dtype");
    nccl_dtype(op, srcs[i]->dtype);
  }
  if (srcs.empty()) return;
  Context& c = op_device(op, {srcs[0]});
  auto check = [&](int r, const char* what) {
    if (r != api::kSuccess && r != api::kInProgress)
      throw std::runtime_error(std::string(what) + " (rank " + std::to_string(e.rank) + " of " +
                               std::to_string(e.nranks) + ") failed: " + result_text(r));
  };
  const bool group = srcs.size() > 1;
  if (group) check(g.group_start(), "ncclGroupStart");
  for (size_t i = 0; i < srcs.size(); ++i)
    check(g.all_reduce(srcs[i]->ptr, dsts[i]->ptr, size_t(srcs[i]->numel), nccl_dtype(op, srcs[i]->dtype), api::kSum,
                       e.comm, c.stream),
          "ncclAllReduce");
  if (group) check(g.group_end(), "ncclGroupEnd");
  launched(c, op);
}

void nccl_comm_destroy(int64_t handle) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_comms.find(handle);
  if (it == g_comms.end()) return;
  g.destroy(it->second.comm);
  g_comms.erase(it);
}

}  // namespace gpu
}  // namespace lamina
