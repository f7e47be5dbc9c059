// The CUDA emulator's NCCL: the communicator and collective entry points, exported from
// `lamina.backend._cuda_emu` with the ABI of libnccl's (NCCL 2.30), so that a caller binding them
// with dlsym from this module's file runs its NCCL code path on machines without a GPU (CI), across
// real processes (mpiexec -n N, one rank a process) or threads of one process (one rank a thread).
//
// Written from nccl.h (NCCL 2.30.7) and NCCL's API documentation, without including the header
// (CI has no NCCL): ncclComm_t points to this file's struct, enums are int, ncclUniqueId is a
// struct of 128 chars passed by value, cudaStream_t is a pointer.
//
// The model:
//  - ncclGetUniqueId writes a magic, 16 random bytes, the POSIX shared-memory segment's name made
//    from them, and a checksum; ncclCommInitRank rejects (ncclInvalidArgument) an id that does not
//    carry all of them. The first rank to arrive creates the segment (O_EXCL), the others open it;
//    every rank maps it. Synchronisation: a process-shared, robust pthread mutex and condition
//    variable in the segment (CLOCK_MONOTONIC timed waits). The name is unlinked as soon as every
//    rank has joined (the mappings stay), so a job killed while it runs leaves nothing behind; when
//    the join fails, the last rank to leave (alive: peers' processes may have died) unlinks it.
//  - ncclCommInitRank blocks until all nranks ranks have joined. ncclInvalidArgument for nranks < 1,
//    a rank outside [0, nranks), a null comm pointer, a foreign id, a rank number claimed twice or
//    nranks different from the first rank's: the last two break the clique, so every rank waiting
//    in it returns ncclInvalidArgument too. A peer that does not come within LAMINA_EMU_NCCL_TIMEOUT
//    seconds (default 60, fractions allowed): ncclTimeout. A peer process that died, or a peer that
//    left its communicator, while others wait for it: ncclRemoteError (found at once, not after
//    the timeout). Either error breaks the clique: the communicator's later calls, and its peers',
//    return it, and ncclCommGetAsyncError reports it.
//  - Collectives run in phases through two bounded buffers in the segment (each rank has a slot in
//    each: a call descriptor and up to LAMINA_EMU_NCCL_CHUNK_BYTES bytes of data, default
//    max(64 KiB, 1 MiB / nranks), read by the segment's creator): a rank writes its descriptor and
//    its chunk into the phase's buffer, all ranks meet at a barrier, then every rank reads every
//    slot. Alternating buffers make one barrier a phase enough (a rank writes a buffer again only
//    after the next barrier, which all ranks reach after reading it). Large buffers take several
//    phases. Descriptors (collective, count, datatype, op, root, chunk) that differ between the
//    ranks of one phase: ncclInvalidUsage on every rank (all see the same descriptors), and the
//    communicator stays usable.
//  - ncclAllReduce: every rank reduces all ranks' values itself, in rank order 0, 1, ..., n-1, so
//    the result is the same on every rank whatever order they arrived in. Types: int8, uint8,
//    int32, uint32, int64, uint64 (sum and prod wrap around), float32 (accumulated in float),
//    float64, bfloat16 (accumulated in float, rounded to nearest even once). max / min of floats
//    propagate NaN. avg: float types only, the sum divided by nranks (bfloat16: in float, then
//    rounded). float16 and fp8: ncclInvalidArgument (the emulator does not reduce them;
//    ncclBroadcast copies any type). In place when sendbuff == recvbuff.
//  - ncclBroadcast: root's sendbuff to every rank's recvbuff; sendbuff is read on root only.
//  - count 0: success at once, no communication (as NCCL). Bad arguments (null comm or buffers,
//    datatype / op / root out of range) return ncclInvalidArgument before any communication.
//  - A collective has completed when it returns. With LAMINA_CUDA_EMULATOR_STREAMS=lazy (work
//    queued per stream, cuda_runtime.h) it first runs the work queued on its stream, then runs at
//    once: queued, it could wait for peers that wait for it, where a GPU would not (ncclGroupEnd
//    likewise runs its calls' streams first).
//  - ncclGroupStart / ncclGroupEnd (nesting allowed): the collectives of one thread between them
//    are checked when called and queued; the outermost ncclGroupEnd runs them in order and
//    returns the first error (it stops there). A call that failed its checks inside the group
//    makes ncclGroupEnd return that error and run nothing. One thread drives ONE rank of a
//    clique: a group holding calls for two communicators of one clique (one thread driving
//    several ranks, which real NCCL allows) is refused with ncclInvalidUsage. ncclCommInitRank
//    inside a group runs at once (it blocks, as outside).
//  - nccl_calls (lamina_emu_stats' 9th value) counts each ncclAllReduce / ncclBroadcast that
//    returned (or, queued in a group, ran with) ncclSuccess.
// LAMINA_CUDA_EMULATOR_SKIP_KERNELS=1: the collectives check their arguments, synchronise the
// ranks (one phase, descriptors compared), count, and move no data.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

namespace emu {
bool skip_kernels();     // emu.cpp: LAMINA_CUDA_EMULATOR_SKIP_KERNELS
void count_nccl_call();  // emu.cpp: ++g_stats.nccl_calls (lamina_emu_stats)
// emu.cpp: with LAMINA_CUDA_EMULATOR_STREAMS=lazy, runs the work queued on stream (nothing in sync mode)
void run_stream(void* stream);
}  // namespace emu

#define LAMINA_NCCL_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

// ncclResult_t (nccl.h)
constexpr int kSuccess = 0, kSystemError = 2, kInternalError = 3, kInvalidArgument = 4, kInvalidUsage = 5,
              kRemoteError = 6, kTimeout = 8;
// ncclRedOp_t
constexpr int kSum = 0, kProd = 1, kMax = 2, kMin = 3, kAvg = 4, kNumOps = 5;
// ncclDataType_t
constexpr int kInt8 = 0, kUint8 = 1, kInt32 = 2, kUint32 = 3, kInt64 = 4, kUint64 = 5, kFloat16 = 6, kFloat32 = 7,
              kFloat64 = 8, kBfloat16 = 9, kFloat8e4m3 = 10, kFloat8e5m2 = 11, kNumTypes = 12;
// NCCL_VERSION(2, 30, 7): minor > 8, so X * 10000 + Y * 100 + Z
constexpr int kVersionCode = 2 * 10000 + 30 * 100 + 7;

constexpr size_t kIdBytes = 128;
constexpr char kIdMagic[8] = {'L', 'M', 'N', 'C', 'C', 'L', '\x01', '\0'};
constexpr size_t kIdRandomOff = 8, kIdRandomBytes = 16, kIdNameOff = 24, kIdNameBytes = 48, kIdCheckOff = 120;
constexpr char kNamePrefix[] = "/lamina-nccl-";

constexpr uint64_t kReadyMagic = 0x4c4d4e43434c5244ull;  // the segment is set up
constexpr uint64_t kCommMagic = 0x4c4d4e43434c434dull;   // a live communicator
constexpr int kJoining = 0, kReady = 1, kClosed = 2;      // Shared::state
constexpr int kAllReduce = 1, kBroadcast = 2;             // Desc::kind
constexpr size_t kAlign = 64;

uint64_t fnv1a(const unsigned char* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

void segment_name(const unsigned char* random, char* out /* kIdNameBytes */) {
  static const char hex[] = "0123456789abcdef";
  std::memset(out, 0, kIdNameBytes);
  std::memcpy(out, kNamePrefix, sizeof(kNamePrefix) - 1);
  char* q = out + sizeof(kNamePrefix) - 1;
  for (size_t i = 0; i < kIdRandomBytes; ++i) {
    *q++ = hex[random[i] >> 4];
    *q++ = hex[random[i] & 15];
  }
}

// The id's segment name, or false when ncclGetUniqueId did not make it.
bool parse_id(const unsigned char* id, char* name) {
  if (std::memcmp(id, kIdMagic, sizeof(kIdMagic)) != 0) return false;
  uint64_t check;
  std::memcpy(&check, id + kIdCheckOff, sizeof(check));
  if (check != fnv1a(id, kIdCheckOff)) return false;
  segment_name(id + kIdRandomOff, name);
  if (std::memcmp(name, id + kIdNameOff, kIdNameBytes) != 0) return false;
  for (size_t i = kIdNameOff + kIdNameBytes; i < kIdCheckOff; ++i)
    if (id[i] != 0) return false;
  return true;
}

// ---- the shared segment --------------------------------------------------------------------------
struct Shared {
  std::atomic<uint64_t> ready;  // kReadyMagic once the creator has set up what follows
  int32_t nranks;
  int32_t pad0;
  uint64_t slot_data;    // data bytes of one rank's slot in one buffer (a multiple of kAlign)
  uint64_t slot_stride;  // descriptor + data
  uint64_t ranks_off, slots_off, size;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  // under mu:
  int32_t state;   // kJoining, kReady, kClosed
  int32_t broken;  // the ncclResult_t that broke the clique, 0 while it is whole
  int32_t joined, attached, arrived;
  int32_t unlinked;  // the name is gone (unlinked once: a later segment of the same name is another's)
  uint64_t gen;  // barriers completed
};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "lock-free 64-bit atomics needed in shared memory");

struct RankInfo {  // one per rank, under mu
  int32_t claimed, pid, left, pad;
  uint64_t pidns;  // the process's pid namespace (its pid means something only in the same one)
};

struct Desc {  // a rank's call, at the start of its slot
  int32_t kind, dtype, op, root;
  uint64_t count, chunk;
  int32_t skip, pad;
};
static_assert(sizeof(Desc) <= kAlign, "descriptor larger than its place");

size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

double timeout_seconds() {
  const char* e = std::getenv("LAMINA_EMU_NCCL_TIMEOUT");
  if (e && *e) {
    char* end = nullptr;
    const double v = std::strtod(e, &end);
    if (end != e && *end == '\0' && v > 0 && std::isfinite(v)) return v;
  }
  return 60.0;
}

size_t chunk_bytes(int nranks) {
  const char* e = std::getenv("LAMINA_EMU_NCCL_CHUNK_BYTES");
  if (e && *e) {
    char* end = nullptr;
    const long long v = std::strtoll(e, &end, 10);
    if (end != e && *end == '\0' && v > 0) return round_up(size_t(v), kAlign);
  }
  size_t b = (size_t(1) << 20) / size_t(nranks);
  b = b / kAlign * kAlign;
  return b < (size_t(64) << 10) ? (size_t(64) << 10) : b;
}

timespec now_mono() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t;
}
timespec add_seconds(timespec t, double s) {
  const double whole = std::floor(s);
  t.tv_sec += time_t(whole);
  t.tv_nsec += long((s - whole) * 1e9);
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec += 1;
    t.tv_nsec -= 1000000000L;
  }
  return t;
}
bool before(const timespec& a, const timespec& b) {
  return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}
void nap() {
  timespec t{0, 500000};  // 0.5 ms
  nanosleep(&t, nullptr);
}

RankInfo* rank_info(Shared* sh) { return reinterpret_cast<RankInfo*>(reinterpret_cast<char*>(sh) + sh->ranks_off); }
char* slot(Shared* sh, int buffer, int rank) {
  return reinterpret_cast<char*>(sh) + sh->slots_off +
         (size_t(buffer) * size_t(sh->nranks) + size_t(rank)) * sh->slot_stride;
}

// Locks the segment's mutex; a holder that died is a peer gone: the clique is broken.
bool lock(Shared* sh) {
  const int r = pthread_mutex_lock(&sh->mu);
  if (r == EOWNERDEAD) {
    pthread_mutex_consistent(&sh->mu);
    if (!sh->broken) sh->broken = kRemoteError;
    pthread_cond_broadcast(&sh->cv);
    return true;
  }
  return r == 0;
}
void unlock(Shared* sh) { pthread_mutex_unlock(&sh->mu); }

// One timed wait slice (at most 50 ms, to look at the peers in between) with the mutex held.
void wait_slice(Shared* sh, const timespec& deadline) {
  timespec t = add_seconds(now_mono(), 0.05);
  if (before(deadline, t)) t = deadline;
  const int r = pthread_cond_timedwait(&sh->cv, &sh->mu, &t);
  if (r == EOWNERDEAD) {
    pthread_mutex_consistent(&sh->mu);
    if (!sh->broken) sh->broken = kRemoteError;
    pthread_cond_broadcast(&sh->cv);
  }
}

uint64_t pid_namespace() {
  static const uint64_t ns = [] {
    struct stat st;
    return stat("/proc/self/ns/pid", &st) == 0 ? uint64_t(st.st_ino) : uint64_t(0);
  }();
  return ns;
}

// Whether another process of this pid namespace has exited: gone, or a zombie its parent has not
// reaped yet. One of another namespace (or an unknown one) counts as alive.
bool process_gone(const RankInfo& info) {
  const pid_t pid = pid_t(info.pid);
  if (pid <= 0 || pid == getpid() || info.pidns == 0 || info.pidns != pid_namespace()) return false;
  if (kill(pid, 0) == -1) return errno == ESRCH;
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", int(pid));
  FILE* f = std::fopen(path, "r");
  if (!f) return false;
  char buf[512];
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // "pid (comm) S ...": comm may hold spaces and parentheses
  return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

// A peer that left its communicator, or whose process has exited (mutex held).
bool peer_gone(Shared* sh, int me) {
  RankInfo* ri = rank_info(sh);
  for (int r = 0; r < sh->nranks; ++r) {
    if (r == me || !ri[r].claimed) continue;
    if (ri[r].left || process_gone(ri[r])) return true;
  }
  return false;
}

void break_clique(Shared* sh, int why) {  // mutex held
  if (!sh->broken) sh->broken = why;
  pthread_cond_broadcast(&sh->cv);
}

// A rank that is done with the segment (mutex held): true when it must unlink the name, being the
// last -- the last alive: the processes of the ranks still attached may have died without detaching.
bool detach(Shared* sh, int rank, bool attached) {
  RankInfo* ri = rank_info(sh);
  if (attached) {
    ri[rank].left = 1;
    --sh->attached;
  }
  pthread_cond_broadcast(&sh->cv);
  const int self = attached ? rank : -1;  // one that did not join may share a rank number with one that did
  for (int r = 0; r < sh->nranks && sh->attached > 0; ++r)
    if (r != self && ri[r].claimed && !ri[r].left && !process_gone(ri[r])) return false;
  sh->state = kClosed;
  const bool unlink_name = !sh->unlinked;
  sh->unlinked = 1;
  return unlink_name;
}

// Creates the id's segment (the first rank) or opens and maps it once its creator has set it up.
int open_segment(const char* name, int nranks, const timespec& deadline, Shared** out, size_t* out_size) {
  for (;;) {
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) {  // the creator
      const size_t data = chunk_bytes(nranks);
      const size_t ranks_off = round_up(sizeof(Shared), kAlign);
      const size_t slots_off = round_up(ranks_off + size_t(nranks) * sizeof(RankInfo), kAlign);
      const size_t stride = kAlign + data;
      const size_t size = slots_off + 2 * size_t(nranks) * stride;
      if (ftruncate(fd, off_t(size)) != 0) {
        close(fd);
        shm_unlink(name);
        return kSystemError;
      }
      void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      close(fd);
      if (m == MAP_FAILED) {
        shm_unlink(name);
        return kSystemError;
      }
      Shared* sh = static_cast<Shared*>(m);  // zero-filled by ftruncate
      pthread_mutexattr_t ma;
      pthread_mutexattr_init(&ma);
      pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
      pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
      pthread_condattr_t ca;
      pthread_condattr_init(&ca);
      pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
      pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
      const bool ok = pthread_mutex_init(&sh->mu, &ma) == 0 && pthread_cond_init(&sh->cv, &ca) == 0;
      pthread_mutexattr_destroy(&ma);
      pthread_condattr_destroy(&ca);
      if (!ok) {
        munmap(m, size);
        shm_unlink(name);
        return kSystemError;
      }
      sh->nranks = nranks;
      sh->slot_data = data;
      sh->slot_stride = stride;
      sh->ranks_off = ranks_off;
      sh->slots_off = slots_off;
      sh->size = size;
      sh->state = kJoining;
      sh->ready.store(kReadyMagic, std::memory_order_release);
      *out = sh;
      *out_size = size;
      return kSuccess;
    }
    if (errno != EEXIST) return kSystemError;
    fd = shm_open(name, O_RDWR, 0);
    if (fd < 0) {
      if (errno != ENOENT) return kSystemError;
      if (!before(now_mono(), deadline)) return kTimeout;
      continue;  // unlinked in between: create it anew
    }
    struct stat st;
    for (;;) {  // the creator sizes the file before anything else
      if (fstat(fd, &st) != 0) {
        close(fd);
        return kSystemError;
      }
      if (st.st_size > 0) break;
      if (!before(now_mono(), deadline)) {
        close(fd);
        return kTimeout;
      }
      nap();
    }
    const size_t size = size_t(st.st_size);
    if (size < sizeof(Shared)) {
      close(fd);
      return kInternalError;
    }
    void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return kSystemError;
    Shared* sh = static_cast<Shared*>(m);
    while (sh->ready.load(std::memory_order_acquire) != kReadyMagic) {
      if (!before(now_mono(), deadline)) {
        munmap(m, size);
        return kTimeout;
      }
      nap();
    }
    if (sh->size != size) {
      munmap(m, size);
      return kInternalError;
    }
    *out = sh;
    *out_size = size;
    return kSuccess;
  }
}

}  // namespace

// ---- the communicator ------------------------------------------------------------------------------
struct ncclComm {
  uint64_t magic = kCommMagic;
  int rank = 0, nranks = 0;
  Shared* sh = nullptr;
  size_t size = 0;
  char name[kIdNameBytes] = {};
  double timeout = 60;
  uint64_t phase = 0;  // barriers passed (the same on every rank of a whole clique)
  int async_error = kSuccess;
};

namespace {

bool valid_comm(const ncclComm* c) { return c != nullptr && c->magic == kCommMagic; }

// All ranks meet; ncclSuccess, or why the clique is broken.
int barrier(ncclComm* c) {
  Shared* sh = c->sh;
  if (!lock(sh)) return c->async_error = kSystemError;
  int r = sh->broken;
  if (!r) {
    const uint64_t g = sh->gen;
    if (++sh->arrived == sh->nranks) {
      sh->arrived = 0;
      ++sh->gen;
      pthread_cond_broadcast(&sh->cv);
    } else {
      const timespec deadline = add_seconds(now_mono(), c->timeout);
      while (sh->gen == g && !sh->broken) {
        wait_slice(sh, deadline);
        if (sh->gen != g || sh->broken) break;
        if (peer_gone(sh, c->rank))
          break_clique(sh, kRemoteError);
        else if (!before(now_mono(), deadline))
          break_clique(sh, kTimeout);
      }
    }
    r = sh->gen != g ? kSuccess : sh->broken;
  }
  unlock(sh);
  if (r == kSuccess)
    ++c->phase;
  else
    c->async_error = r;
  return r;
}

size_t elem_size(int dtype) {
  switch (dtype) {
    case kInt8: case kUint8: case kFloat8e4m3: case kFloat8e5m2: return 1;
    case kFloat16: case kBfloat16: return 2;
    case kInt32: case kUint32: case kFloat32: return 4;
    default: return 8;
  }
}
bool is_float(int dtype) {
  return dtype == kFloat16 || dtype == kFloat32 || dtype == kFloat64 || dtype == kBfloat16 || dtype == kFloat8e4m3 ||
         dtype == kFloat8e5m2;
}

// ---- reductions ------------------------------------------------------------------------------------
template <typename T>
struct Plain {
  using Acc = T;
  static Acc load(const void* p, size_t i) { return static_cast<const T*>(p)[i]; }
  static void store(void* p, size_t i, Acc v) { static_cast<T*>(p)[i] = v; }
};
struct BF16 {
  using Acc = float;
  static float load(const void* p, size_t i) {
    const uint32_t bits = uint32_t(static_cast<const uint16_t*>(p)[i]) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  static void store(void* p, size_t i, float v) {  // round to nearest even; NaN stays (quiet) NaN
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u)
      bits |= 0x00400000u;
    else
      bits += 0x7fffu + ((bits >> 16) & 1u);
    static_cast<uint16_t*>(p)[i] = uint16_t(bits >> 16);
  }
};

// Integers wrap around (computed unsigned, at least as wide as unsigned int: no promotion to a
// signed int that could overflow).
template <typename A>
using Wide = std::conditional_t<(sizeof(A) < sizeof(unsigned)), unsigned, std::make_unsigned_t<A>>;

template <typename A, int OP>
inline A apply(A a, A b) {
  if constexpr (OP == kSum || OP == kAvg) {
    if constexpr (std::is_integral_v<A>)
      return A(Wide<A>(a) + Wide<A>(b));
    else
      return a + b;
  } else if constexpr (OP == kProd) {
    if constexpr (std::is_integral_v<A>)
      return A(Wide<A>(a) * Wide<A>(b));
    else
      return a * b;
  } else if constexpr (OP == kMax) {
    if constexpr (std::is_floating_point_v<A>) {
      if (a != a) return a;
      if (b != b) return b;
    }
    return a < b ? b : a;
  } else {
    if constexpr (std::is_floating_point_v<A>) {
      if (a != a) return a;
      if (b != b) return b;
    }
    return b < a ? b : a;
  }
}

template <class D, int OP>
void combine_op(const char* const* src, int n, size_t len, void* dst) {
  using A = typename D::Acc;
  for (size_t i = 0; i < len; ++i) {
    A acc = D::load(src[0], i);
    for (int r = 1; r < n; ++r) acc = apply<A, OP>(acc, D::load(src[r], i));
    if constexpr (OP == kAvg) acc = acc / A(n);
    D::store(dst, i, acc);
  }
}
template <class D>
void combine_type(int op, const char* const* src, int n, size_t len, void* dst) {
  switch (op) {
    case kSum: return combine_op<D, kSum>(src, n, len, dst);
    case kProd: return combine_op<D, kProd>(src, n, len, dst);
    case kMax: return combine_op<D, kMax>(src, n, len, dst);
    case kMin: return combine_op<D, kMin>(src, n, len, dst);
    case kAvg:
      if constexpr (std::is_floating_point_v<typename D::Acc>) return combine_op<D, kAvg>(src, n, len, dst);
      return;  // refused by check_call
  }
}
void combine(int dtype, int op, const char* const* src, int n, size_t len, void* dst) {
  switch (dtype) {
    case kInt8: return combine_type<Plain<int8_t>>(op, src, n, len, dst);
    case kUint8: return combine_type<Plain<uint8_t>>(op, src, n, len, dst);
    case kInt32: return combine_type<Plain<int32_t>>(op, src, n, len, dst);
    case kUint32: return combine_type<Plain<uint32_t>>(op, src, n, len, dst);
    case kInt64: return combine_type<Plain<int64_t>>(op, src, n, len, dst);
    case kUint64: return combine_type<Plain<uint64_t>>(op, src, n, len, dst);
    case kFloat32: return combine_type<Plain<float>>(op, src, n, len, dst);
    case kFloat64: return combine_type<Plain<double>>(op, src, n, len, dst);
    case kBfloat16: return combine_type<BF16>(op, src, n, len, dst);
  }
}

// ---- collectives -----------------------------------------------------------------------------------
struct Call {
  int kind;
  const void* send;
  void* recv;
  size_t count;
  int dtype, op, root;
  ncclComm* comm;
  void* stream;  // cudaStream_t
};

// NCCL's argument checks, before any communication.
int check_call(const Call& k) {
  if (!valid_comm(k.comm)) return kInvalidArgument;
  if (k.dtype < 0 || k.dtype >= kNumTypes) return kInvalidArgument;
  if (k.kind == kAllReduce) {
    if (k.op < 0 || k.op >= kNumOps) return kInvalidArgument;
    if (k.dtype == kFloat16 || k.dtype == kFloat8e4m3 || k.dtype == kFloat8e5m2) return kInvalidArgument;
    if (k.op == kAvg && !is_float(k.dtype)) return kInvalidArgument;
  } else if (k.root < 0 || k.root >= k.comm->nranks) {
    return kInvalidArgument;
  }
  if (k.count == 0) return kSuccess;
  if (k.recv == nullptr) return kInvalidArgument;
  if (k.send == nullptr && (k.kind == kAllReduce || k.comm->rank == k.root)) return kInvalidArgument;
  return kSuccess;
}

int run_call(const Call& k) {
  ncclComm* c = k.comm;
  if (c->async_error) return c->async_error;
  if (k.count == 0) {
    emu::count_nccl_call();
    return kSuccess;
  }
  Shared* sh = c->sh;
  const int n = c->nranks, me = c->rank;
  const bool skip = emu::skip_kernels();
  const size_t es = elem_size(k.dtype);
  const size_t per_chunk = size_t(sh->slot_data) / es;
  const uint64_t chunks = skip ? 1 : (k.count + per_chunk - 1) / per_chunk;
  const bool contributes = k.kind == kAllReduce || me == k.root;
  std::vector<const char*> src(static_cast<size_t>(n));
  for (uint64_t ch = 0; ch < chunks; ++ch) {
    const int buffer = int(c->phase & 1);
    char* mine = slot(sh, buffer, me);
    Desc d;
    std::memset(&d, 0, sizeof(d));
    d.kind = k.kind;
    d.dtype = k.dtype;
    d.op = k.kind == kAllReduce ? k.op : -1;
    d.root = k.kind == kBroadcast ? k.root : -1;
    d.count = k.count;
    d.chunk = ch;
    d.skip = skip;
    std::memcpy(mine, &d, sizeof(d));
    const size_t off = size_t(ch) * per_chunk;
    const size_t len = skip ? 0 : (k.count - off < per_chunk ? k.count - off : per_chunk);
    if (len && contributes) std::memcpy(mine + kAlign, static_cast<const char*>(k.send) + off * es, len * es);
    const int r = barrier(c);
    if (r) return r;
    for (int q = 0; q < n; ++q)  // every rank sees the same descriptors, so all decide alike
      if (std::memcmp(slot(sh, buffer, q), &d, sizeof(d)) != 0) return kInvalidUsage;
    if (!len) continue;
    char* out = static_cast<char*>(k.recv) + off * es;
    if (k.kind == kAllReduce) {
      for (int q = 0; q < n; ++q) src[size_t(q)] = slot(sh, buffer, q) + kAlign;
      combine(k.dtype, k.op, src.data(), n, len, out);
    } else if (me != k.root) {
      std::memcpy(out, slot(sh, buffer, k.root) + kAlign, len * es);
    } else if (k.send != k.recv) {
      std::memmove(out, static_cast<const char*>(k.send) + off * es, len * es);
    }
  }
  emu::count_nccl_call();
  return kSuccess;
}

// ---- groups (per thread) ---------------------------------------------------------------------------
thread_local int t_group_depth = 0;
thread_local int t_group_error = kSuccess;
thread_local std::vector<Call> t_group;

int submit(const Call& k) {
  const int r = check_call(k);
  if (t_group_depth > 0) {
    if (r) {
      if (!t_group_error) t_group_error = r;
      return r;
    }
    for (const Call& q : t_group)
      if (q.comm != k.comm && std::strcmp(q.comm->name, k.comm->name) == 0) {
        // one thread driving two ranks of one clique: the emulator runs a group's calls in order
        if (!t_group_error) t_group_error = kInvalidUsage;
        return kInvalidUsage;
      }
    t_group.push_back(k);
    return kSuccess;
  }
  if (r) return r;
  emu::run_stream(k.stream);
  return run_call(k);
}

void release(ncclComm* c, bool abort) {
  // calls of this thread's open group for it can no longer run
  for (size_t i = 0; i < t_group.size();)
    if (t_group[i].comm == c)
      t_group.erase(t_group.begin() + std::ptrdiff_t(i));
    else
      ++i;
  bool last = false;
  if (lock(c->sh)) {
    if (abort) break_clique(c->sh, kRemoteError);
    last = detach(c->sh, c->rank, true);
    unlock(c->sh);
  }
  if (last) shm_unlink(c->name);
  munmap(c->sh, c->size);
  c->magic = 0;
  delete c;
}

}  // namespace

// ---- the entry points ------------------------------------------------------------------------------
typedef struct {
  char internal[kIdBytes];
} ncclUniqueId;
static_assert(sizeof(ncclUniqueId) == 128, "ncclUniqueId is 128 bytes");

LAMINA_NCCL_EXPORT int ncclGetVersion(int* version) {
  if (!version) return kInvalidArgument;
  *version = kVersionCode;
  return kSuccess;
}

LAMINA_NCCL_EXPORT const char* ncclGetErrorString(int result) {
  switch (result) {
    case 0: return "no error";
    case 1: return "unhandled cuda error";
    case 2: return "unhandled system error";
    case 3: return "internal error (CUDA emulator's NCCL)";
    case 4: return "invalid argument";
    case 5: return "invalid usage";
    case 6: return "remote process exited or there was a network error";
    case 7: return "NCCL operation in progress";
    case 8: return "operation timed out";
  }
  return "unknown result code";
}

LAMINA_NCCL_EXPORT int ncclGetUniqueId(ncclUniqueId* id) {
  if (!id) return kInvalidArgument;
  unsigned char b[kIdBytes] = {};
  std::memcpy(b, kIdMagic, sizeof(kIdMagic));
  size_t got = 0;
  while (got < kIdRandomBytes) {
    const ssize_t r = getrandom(b + kIdRandomOff + got, kIdRandomBytes - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return kSystemError;
    }
    got += size_t(r);
  }
  segment_name(b + kIdRandomOff, reinterpret_cast<char*>(b + kIdNameOff));
  const uint64_t check = fnv1a(b, kIdCheckOff);
  std::memcpy(b + kIdCheckOff, &check, sizeof(check));
  std::memcpy(id->internal, b, kIdBytes);
  return kSuccess;
}

LAMINA_NCCL_EXPORT int ncclCommInitRank(ncclComm** comm, int nranks, ncclUniqueId id, int rank) {
  if (!comm || nranks < 1 || rank < 0 || rank >= nranks) return kInvalidArgument;
  char name[kIdNameBytes];
  if (!parse_id(reinterpret_cast<const unsigned char*>(id.internal), name)) return kInvalidArgument;
  const double timeout = timeout_seconds();
  const timespec deadline = add_seconds(now_mono(), timeout);
  Shared* sh = nullptr;
  size_t size = 0;
  int r = open_segment(name, nranks, deadline, &sh, &size);
  if (r) return r;
  if (!lock(sh)) {
    munmap(sh, size);
    return kSystemError;
  }
  RankInfo* ri = rank_info(sh);
  bool joined = false, unlink_name = false;
  if (sh->broken) {
    r = sh->broken;
  } else if (sh->state != kJoining) {
    r = kInvalidUsage;  // this id's communicator is complete (or has come and gone): a straggler breaks nothing
  } else if (sh->nranks != nranks || ri[rank].claimed) {
    r = kInvalidArgument;
    break_clique(sh, kInvalidArgument);
  } else {
    ri[rank].claimed = 1;
    ri[rank].pid = int32_t(getpid());
    ri[rank].pidns = pid_namespace();
    joined = true;
    ++sh->attached;
    if (++sh->joined == sh->nranks) {  // all here: the name has served its purpose
      sh->state = kReady;
      unlink_name = !sh->unlinked;
      sh->unlinked = 1;
      pthread_cond_broadcast(&sh->cv);
    }
    while (sh->state == kJoining && !sh->broken) {
      wait_slice(sh, deadline);
      if (sh->state != kJoining || sh->broken) break;
      if (peer_gone(sh, rank))
        break_clique(sh, kRemoteError);
      else if (!before(now_mono(), deadline))
        break_clique(sh, kTimeout);
    }
    r = sh->state == kReady ? kSuccess : sh->broken;
  }
  if (r == kSuccess) {
    unlock(sh);
    if (unlink_name) shm_unlink(name);
    ncclComm* c = new ncclComm();
    c->rank = rank;
    c->nranks = nranks;
    c->sh = sh;
    c->size = size;
    std::memcpy(c->name, name, sizeof(name));
    c->timeout = timeout;
    *comm = c;
    return kSuccess;
  }
  if (detach(sh, rank, joined)) unlink_name = true;
  unlock(sh);
  if (unlink_name) shm_unlink(name);
  munmap(sh, size);
  return r;
}

LAMINA_NCCL_EXPORT int ncclCommDestroy(ncclComm* comm) {
  if (!comm) return kSuccess;
  if (!valid_comm(comm)) return kInvalidArgument;
  release(comm, false);
  return kSuccess;
}

LAMINA_NCCL_EXPORT int ncclCommAbort(ncclComm* comm) {
  if (!comm) return kSuccess;
  if (!valid_comm(comm)) return kInvalidArgument;
  release(comm, true);
  return kSuccess;
}

LAMINA_NCCL_EXPORT int ncclCommCount(const ncclComm* comm, int* count) {
  if (!valid_comm(comm) || !count) return kInvalidArgument;
  *count = comm->nranks;
  return kSuccess;
}

LAMINA_NCCL_EXPORT int ncclCommUserRank(const ncclComm* comm, int* rank) {
  if (!valid_comm(comm) || !rank) return kInvalidArgument;
  *rank = comm->rank;
  return kSuccess;
}

LAMINA_NCCL_EXPORT int ncclCommGetAsyncError(ncclComm* comm, int* async_error) {
  if (!valid_comm(comm) || !async_error) return kInvalidArgument;
  if (!comm->async_error && lock(comm->sh)) {  // a peer's abort, death or timeout breaks this rank too
    comm->async_error = comm->sh->broken;
    unlock(comm->sh);
  }
  *async_error = comm->async_error;
  return kSuccess;
}

LAMINA_NCCL_EXPORT int ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, int datatype, int op,
                                     ncclComm* comm, void* stream) {
  return submit(Call{kAllReduce, sendbuff, recvbuff, count, datatype, op, -1, comm, stream});
}

LAMINA_NCCL_EXPORT int ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, int datatype, int root,
                                     ncclComm* comm, void* stream) {
  return submit(Call{kBroadcast, sendbuff, recvbuff, count, datatype, -1, root, comm, stream});
}

LAMINA_NCCL_EXPORT int ncclGroupStart() {
  if (t_group_depth++ == 0) {
    t_group.clear();
    t_group_error = kSuccess;
  }
  return kSuccess;
}

LAMINA_NCCL_EXPORT int ncclGroupEnd() {
  if (t_group_depth == 0) return kInvalidUsage;
  if (--t_group_depth > 0) return kSuccess;
  std::vector<Call> calls;
  calls.swap(t_group);
  const int queued_error = t_group_error;
  t_group_error = kSuccess;
  if (queued_error) return queued_error;
  for (const Call& k : calls) emu::run_stream(k.stream);
  for (const Call& k : calls) {
    const int r = run_call(k);
    if (r) return r;
  }
  return kSuccess;
}
